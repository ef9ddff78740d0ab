//! The Media Streams caller: `connected`, `start`, then one 160-byte mu-law frame every 20 ms in
//! real time — scripted speech ([`switchboard_twilio::scripted::encode`]) while the caller talks,
//! silence (0xFF) otherwise — and `stop` to hang up. It plays the agent's audio back as Twilio
//! does: a mark is echoed only once the audio queued before it has played, and `clear` drops the
//! queued audio and echoes every pending mark at once.
//!
//! One task per call drives everything from one `select!` over the socket and a 20 ms tick, so
//! a thousand calls cost a thousand tasks, not three thousand.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::json;
use switchboard_twilio::media::{self, InboundFrame, Media, MediaFormat, OutboundFrame, Start};
use switchboard_twilio::scripted;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;

use crate::call::{
    BARGE_AFTER, CLOSE_TIMEOUT, CallError, CallOutcome, CallPlan, CallProgress, GREETING_TIMEOUT,
    QUIET, Target, Ws, agent_lines, read_live_details,
};

const FRAME: usize = 160;
const FRAME_TIME: Duration = Duration::from_millis(20);
/// A frame sent later than this after its slot counts as late.
const LATE: Duration = Duration::from_millis(10);

enum Phase {
    /// Waiting for the first agent audio.
    Greeting,
    /// The agent talks (or just did); the caller's next turn is `turn`.
    Listening { turn: usize },
    /// The caller is saying turn `turn`; `pos` bytes of `audio` sent.
    Speaking {
        turn: usize,
        audio: Vec<u8>,
        pos: usize,
    },
    /// Turn `turn` was said (last frame sent at `since`); waiting for the agent's audio.
    /// `quiet_sent`: silent frames sent since; `endpoint_at`: when the one that completed the
    /// recognizer's endpointing window was sent.
    AwaitReply {
        turn: usize,
        since: Instant,
        quiet_sent: u32,
        endpoint_at: Option<Instant>,
    },
    /// Every turn answered; silent until the call's minimum duration.
    Lingering,
    /// `stop` sent at `since`; waiting for the server to close the socket.
    HangingUp { since: Instant },
}

/// Twilio's side of playback: what is queued and which marks wait for it.
struct Playback {
    /// When the audio received so far will have finished playing.
    until: Instant,
    /// When the audio now playing started (after the last silence).
    since: Instant,
    /// Marks in the order received, each with the time it is due to be echoed.
    marks: VecDeque<(String, Instant)>,
}

impl Playback {
    fn audible(&self, now: Instant) -> bool {
        self.until > now
    }

    fn quiet(&self, now: Instant) -> bool {
        self.marks.is_empty() && now >= self.until + QUIET
    }
}

pub(crate) async fn run(
    target: &Target,
    plan: &CallPlan,
    ws: Ws,
    events: &mut impl FnMut(CallProgress),
    out: &mut CallOutcome,
) -> Result<(), CallError> {
    let (mut tx, mut rx) = ws.split();
    let sid = plan.call_sid.as_str();
    let stream_sid = format!("MZ{}", sid.trim_start_matches("CA"));
    let socket_err =
        |e: tokio_tungstenite::tungstenite::Error| CallError::new("socket", e.to_string());
    tx.send(text(
        json!({"event":"connected","protocol":"Call","version":"1.0.0"}).to_string(),
    ))
    .await
    .map_err(socket_err)?;
    let mut params = BTreeMap::new();
    params.insert("CallSid".to_owned(), sid.to_owned());
    params.insert("From".to_owned(), plan.from.clone());
    params.insert("To".to_owned(), "+14155550100".to_owned());
    params.insert("Direction".to_owned(), "inbound".to_owned());
    let start = InboundFrame::Start(Start {
        sequence_number: 1,
        stream_sid: stream_sid.clone(),
        account_sid: "AC00000000000000000000000000000000".into(),
        call_sid: sid.into(),
        tracks: vec!["inbound".into()],
        custom_parameters: params,
        media_format: MediaFormat {
            encoding: "audio/x-mulaw".into(),
            sample_rate: 8000,
            channels: 1,
        },
    });
    tx.send(text(start.to_json())).await.map_err(socket_err)?;
    let started = Instant::now();
    out.started_at = started;

    let mut seq: u64 = 2;
    let mut chunk: u64 = 0;
    let mut tick = tokio::time::interval(FRAME_TIME);
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut slot = Instant::now();
    let mut play = Playback {
        until: started,
        since: started,
        marks: VecDeque::new(),
    };
    let mut phase = Phase::Greeting;
    let mut agent_lines_seen = 0;
    let mut last_replied: Option<usize> = None;
    let mut lines_fetched_for: Option<Option<usize>> = None;
    let silence = [0xFFu8; FRAME];
    let mut buf = String::with_capacity(512);
    loop {
        tokio::select! {
            msg = rx.next() => {
                let now = Instant::now();
                let text = match msg {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                        return match phase {
                            Phase::HangingUp { .. } => {
                                events(CallProgress::HungUp);
                                Ok(())
                            }
                            _ => Err(CallError::new("server_hung_up", format!(
                                "the server closed the call after {:.1} s, before the caller hung up",
                                started.elapsed().as_secs_f64()
                            ))),
                        };
                    }
                    Some(Ok(_)) => continue,
                };
                match media::parse_outbound(&text) {
                    Ok(OutboundFrame::Media { payload, .. }) => {
                        // Counted in 20 ms frames, however many the server put in one message.
                        out.audio_frames_received += payload.len().div_ceil(FRAME).max(1) as u64;
                        if out.first_audio.is_none() {
                            out.first_audio = Some(now - started);
                            out.first_audio_at = Some(now);
                            events(CallProgress::GreetingAudio { after: now - started });
                        }
                        if !play.audible(now) {
                            play.since = now;
                            play.until = now;
                        }
                        play.until += Duration::from_micros(payload.len() as u64 * 125);
                        match phase {
                            Phase::Greeting => phase = Phase::Listening { turn: 0 },
                            Phase::AwaitReply { turn, since, endpoint_at, .. } => {
                                let latency = now - since;
                                let t = &mut out.turns[turn];
                                t.latency = Some(latency);
                                t.after_endpoint = endpoint_at.map(|e| now.saturating_duration_since(e));
                                t.replied_at = Some(now);
                                events(CallProgress::AgentReplied { turn, latency });
                                last_replied = Some(turn);
                                phase = Phase::Listening { turn: turn + 1 };
                            }
                            _ => {}
                        }
                    }
                    Ok(OutboundFrame::Mark { name, .. }) => {
                        play.marks.push_back((name, play.until.max(now)));
                    }
                    Ok(OutboundFrame::Clear { .. }) => {
                        out.clears_received += 1;
                        play.until = now;
                        // Twilio echoes every pending mark at once on `clear`.
                        while let Some((name, _)) = play.marks.pop_front() {
                            echo_mark(&mut tx, &stream_sid, &mut seq, name, out).await?;
                        }
                        if let Phase::Speaking { turn, .. } | Phase::AwaitReply { turn, .. } = phase {
                            out.turns[turn].clear_received = true;
                        }
                        events(CallProgress::Cleared);
                    }
                    Err(e) => {
                        return Err(CallError::new("invalid_frame", format!("the server sent an invalid frame: {e}")));
                    }
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                // Marks whose audio has played.
                while play.marks.front().is_some_and(|(_, due)| *due <= now) {
                    if let Some((name, _)) = play.marks.pop_front() {
                        echo_mark(&mut tx, &stream_sid, &mut seq, name, out).await?;
                    }
                }
                // What the caller does now.
                match &mut phase {
                    Phase::Greeting => {
                        if now - started > GREETING_TIMEOUT {
                            return Err(CallError::new("no_greeting", format!(
                                "no agent audio within {} s of start", GREETING_TIMEOUT.as_secs()
                            )));
                        }
                    }
                    Phase::Listening { turn } => {
                        let turn = *turn;
                        let quiet = play.quiet(now);
                        if quiet && plan.agent_text && lines_fetched_for != Some(last_replied) {
                            lines_fetched_for = Some(last_replied);
                            let lines = agent_lines(target, sid).await;
                            for line in lines.iter().skip(agent_lines_seen) {
                                if let Some(t) = last_replied {
                                    out.turns[t].agent_text.get_or_insert_with(|| line.clone());
                                }
                                events(CallProgress::AgentSaid { turn: last_replied, text: line.clone() });
                            }
                            agent_lines_seen = agent_lines_seen.max(lines.len());
                        }
                        if turn >= plan.turns.len() {
                            if quiet {
                                phase = Phase::Lingering;
                            }
                        } else {
                            let wanted = &plan.turns[turn];
                            let heard = now - play.since;
                            let barge = wanted.barge_in
                                && play.audible(now)
                                && heard >= BARGE_AFTER
                                && play.until > now + Duration::from_millis(200);
                            if barge || quiet {
                                if barge {
                                    out.turns[turn].talked_over_agent = true;
                                    events(CallProgress::BargedIn { turn, agent_heard: heard });
                                }
                                events(CallProgress::Said { turn, text: wanted.text.clone(), barge_in: barge });
                                phase = Phase::Speaking { turn, audio: scripted::encode(&wanted.text), pos: 0 };
                            }
                        }
                    }
                    Phase::AwaitReply { turn, since, .. } => {
                        if now - *since > plan.reply_timeout {
                            return Err(CallError::new("no_reply", format!(
                                "turn {} ({:?}): no agent audio within {} s of the caller's speech",
                                *turn, plan.turns[*turn].text, plan.reply_timeout.as_secs()
                            )));
                        }
                    }
                    Phase::Lingering => {
                        if now - started >= plan.min_duration {
                            read_live_details(target, out).await;
                            let stop = InboundFrame::Stop {
                                sequence_number: seq,
                                stream_sid: stream_sid.clone(),
                                account_sid: "AC00000000000000000000000000000000".into(),
                                call_sid: sid.into(),
                            };
                            tx.send(text(stop.to_json())).await.map_err(socket_err)?;
                            phase = Phase::HangingUp { since: Instant::now() };
                            continue;
                        }
                    }
                    Phase::HangingUp { since } => {
                        if now - *since > CLOSE_TIMEOUT {
                            return Err(CallError::new("close_timeout", format!(
                                "the server did not close the socket within {} s of stop", CLOSE_TIMEOUT.as_secs()
                            )));
                        }
                        continue;
                    }
                    Phase::Speaking { .. } => {}
                }
                // The caller's frame for this slot: speech or silence.
                let (payload, finished) = match &mut phase {
                    Phase::Speaking { turn, audio, pos } => {
                        let end = (*pos + FRAME).min(audio.len());
                        let frame = audio[*pos..end].to_vec();
                        *pos = end;
                        (frame, (end >= audio.len()).then_some(*turn))
                    }
                    _ => (silence.to_vec(), None),
                };
                if now.saturating_duration_since(slot) > LATE {
                    out.late_frames += 1;
                }
                slot += FRAME_TIME;
                chunk += 1;
                let frame = InboundFrame::Media(Media {
                    sequence_number: seq,
                    stream_sid: stream_sid.clone(),
                    track: "inbound".into(),
                    chunk,
                    timestamp_ms: (now - started).as_millis() as u64,
                    payload,
                });
                seq += 1;
                buf.clear();
                frame.write_json(&mut buf);
                tx.send(text(buf.clone())).await.map_err(socket_err)?;
                out.frames_sent += 1;
                if let Phase::AwaitReply { quiet_sent, endpoint_at, .. } = &mut phase {
                    *quiet_sent += 1;
                    if endpoint_at.is_none() && FRAME_TIME * *quiet_sent >= plan.endpointing {
                        *endpoint_at = Some(Instant::now());
                    }
                }
                if let Some(turn) = finished {
                    let since = Instant::now();
                    out.turns[turn].said = true;
                    phase = Phase::AwaitReply { turn, since, quiet_sent: 0, endpoint_at: None };
                    if plan.crash_after_turn == Some(turn) {
                        let status = target.crash(sid).await.ok();
                        out.crash_status = status;
                        events(CallProgress::CrashRequested { turn, status });
                    }
                }
            }
        }
    }
}

fn text(s: String) -> Message {
    Message::Text(s.into())
}

async fn echo_mark(
    tx: &mut futures::stream::SplitSink<Ws, Message>,
    stream_sid: &str,
    seq: &mut u64,
    name: String,
    out: &mut CallOutcome,
) -> Result<(), CallError> {
    let echo = InboundFrame::Mark {
        sequence_number: *seq,
        stream_sid: stream_sid.to_owned(),
        name,
    }
    .to_json();
    *seq += 1;
    out.marks_echoed += 1;
    tx.send(text(echo))
        .await
        .map_err(|e| CallError::new("socket", e.to_string()))
}
