//! The ConversationRelay caller: `setup`, then a `prompt` (`last: true`) per caller turn, an
//! `interrupt` before a barge-in turn, and hanging up by closing the socket.
//!
//! Twilio speaks the agent's `text` tokens and transcribes the caller, so nothing on the socket
//! says how long either takes; the caller paces itself as a person would: the agent's line
//! "plays" at [`scripted::spoken_duration_ms`] per character from its first token, the caller
//! waits for it to finish (plus [`QUIET`]), then "talks" for the spoken duration of its turn
//! before the `prompt` goes out — which is when Twilio would send it.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use switchboard_twilio::relay::{self, RelayInbound, RelayOutbound, Setup};
use switchboard_twilio::scripted;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;

use crate::call::{
    BARGE_AFTER, CLOSE_TIMEOUT, CallError, CallOutcome, CallPlan, CallProgress, GREETING_TIMEOUT,
    QUIET, Target, Ws, read_live_details,
};

enum Phase {
    Greeting,
    Listening {
        turn: usize,
    },
    /// The caller is talking; the prompt goes out at `until`.
    Speaking {
        turn: usize,
        until: Instant,
    },
    AwaitReply {
        turn: usize,
        since: Instant,
    },
    Lingering,
    HangingUp {
        since: Instant,
    },
}

/// The agent's speech as Twilio would play it.
struct Voice {
    /// The line being received (tokens until one with `last: true`).
    line: String,
    open: bool,
    /// When the current line started playing.
    since: Instant,
    /// When everything received so far will have been spoken.
    until: Instant,
}

impl Voice {
    fn audible(&self, now: Instant) -> bool {
        self.until > now
    }

    fn quiet(&self, now: Instant) -> bool {
        !self.open && now >= self.until + QUIET
    }
}

fn speech_time(text: &str) -> Duration {
    // 65 ms per character, the scripted caller's pace, without its 400 ms floor per token.
    Duration::from_millis(text.chars().count() as u64 * 65)
}

/// The first `heard` of `line`, cut back to a word boundary: what the caller heard of it.
fn heard_prefix(line: &str, heard: Duration) -> String {
    let chars = (heard.as_millis() / 65) as usize;
    let prefix: String = line.chars().take(chars).collect();
    if prefix.len() == line.len() {
        return prefix;
    }
    match prefix.rfind(' ') {
        Some(i) => prefix[..i].to_owned(),
        None => String::new(),
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
    let socket_err =
        |e: tokio_tungstenite::tungstenite::Error| CallError::new("socket", e.to_string());
    let setup = RelayInbound::Setup(Box::new(Setup {
        session_id: format!("VX{}", sid.trim_start_matches("CA")),
        call_sid: sid.to_owned(),
        account_sid: Some("AC00000000000000000000000000000000".into()),
        from: Some(plan.from.clone()),
        to: Some("+14155550100".into()),
        direction: Some("inbound".into()),
        call_type: Some("PSTN".into()),
        call_status: Some("RINGING".into()),
        ..Setup::default()
    }));
    tx.send(text(setup.to_json())).await.map_err(socket_err)?;
    let started = Instant::now();
    out.started_at = started;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut voice = Voice {
        line: String::new(),
        open: false,
        since: started,
        until: started,
    };
    let mut phase = Phase::Greeting;
    let mut last_replied: Option<usize> = None;
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
                                "the server closed the session after {:.1} s, before the caller hung up",
                                started.elapsed().as_secs_f64()
                            ))),
                        };
                    }
                    Some(Ok(_)) => continue,
                };
                match relay::parse_relay_outbound(&text) {
                    Ok(RelayOutbound::Text { token, last, .. }) => {
                        out.audio_frames_received += 1;
                        if out.first_audio.is_none() {
                            out.first_audio = Some(now - started);
                            out.first_audio_at = Some(now);
                            events(CallProgress::GreetingAudio { after: now - started });
                        }
                        if !voice.open {
                            voice.open = true;
                            voice.line.clear();
                            if !voice.audible(now) {
                                voice.since = now;
                                voice.until = now;
                            }
                        }
                        voice.until += speech_time(&token);
                        voice.line.push_str(&token);
                        match phase {
                            Phase::Greeting => phase = Phase::Listening { turn: 0 },
                            Phase::AwaitReply { turn, since } => {
                                let latency = now - since;
                                out.turns[turn].latency = Some(latency);
                                out.turns[turn].replied_at = Some(now);
                                events(CallProgress::AgentReplied { turn, latency });
                                last_replied = Some(turn);
                                phase = Phase::Listening { turn: turn + 1 };
                            }
                            _ => {}
                        }
                        if last {
                            voice.open = false;
                            let line = voice.line.trim().to_owned();
                            if let Some(t) = last_replied {
                                out.turns[t].agent_text.get_or_insert_with(|| line.clone());
                            }
                            events(CallProgress::AgentSaid { turn: last_replied, text: line });
                        }
                    }
                    Ok(RelayOutbound::End { .. }) => {
                        if !matches!(phase, Phase::HangingUp { .. }) {
                            return Err(CallError::new("server_hung_up", format!(
                                "the server ended the session after {:.1} s, before the caller hung up",
                                started.elapsed().as_secs_f64()
                            )));
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        return Err(CallError::new("invalid_frame", format!("the server sent an invalid message: {e}")));
                    }
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                match &mut phase {
                    Phase::Greeting => {
                        if now - started > GREETING_TIMEOUT {
                            return Err(CallError::new("no_greeting", format!(
                                "no agent text within {} s of setup", GREETING_TIMEOUT.as_secs()
                            )));
                        }
                    }
                    Phase::Listening { turn } => {
                        let turn = *turn;
                        let quiet = voice.quiet(now);
                        if turn >= plan.turns.len() {
                            if quiet {
                                phase = Phase::Lingering;
                            }
                            continue;
                        }
                        let wanted = &plan.turns[turn];
                        let heard = now - voice.since;
                        let barge = wanted.barge_in
                            && voice.audible(now)
                            && heard >= BARGE_AFTER
                            && voice.until > now + Duration::from_millis(200);
                        if barge {
                            // Twilio stops speaking and says how much was heard.
                            let interrupt = RelayInbound::Interrupt {
                                utterance_until_interrupt: heard_prefix(&voice.line, heard),
                                duration_until_interrupt_ms: Some(heard.as_millis() as u64),
                            };
                            tx.send(text(interrupt.to_json())).await.map_err(socket_err)?;
                            voice.until = now;
                            out.turns[turn].talked_over_agent = true;
                            events(CallProgress::BargedIn { turn, agent_heard: heard });
                        }
                        if barge || quiet {
                            events(CallProgress::Said { turn, text: wanted.text.clone(), barge_in: barge });
                            let talk = Duration::from_millis(scripted::spoken_duration_ms(&wanted.text).into());
                            phase = Phase::Speaking { turn, until: now + talk };
                        }
                    }
                    Phase::Speaking { turn, until } => {
                        if now >= *until {
                            let turn = *turn;
                            let prompt = RelayInbound::Prompt {
                                voice_prompt: plan.turns[turn].text.clone(),
                                lang: Some("en-US".into()),
                                last: true,
                            };
                            tx.send(text(prompt.to_json())).await.map_err(socket_err)?;
                            out.turns[turn].said = true;
                            phase = Phase::AwaitReply { turn, since: Instant::now() };
                            if plan.crash_after_turn == Some(turn) {
                                let status = target.crash(sid).await.ok();
                                out.crash_status = status;
                                events(CallProgress::CrashRequested { turn, status });
                            }
                        }
                    }
                    Phase::AwaitReply { turn, since } => {
                        if now - *since > plan.reply_timeout {
                            return Err(CallError::new("no_reply", format!(
                                "turn {} ({:?}): no agent text within {} s of the prompt",
                                *turn, plan.turns[*turn].text, plan.reply_timeout.as_secs()
                            )));
                        }
                    }
                    Phase::Lingering => {
                        if now - started >= plan.min_duration {
                            read_live_details(target, out).await;
                            // Hanging up: Twilio closes the socket.
                            tx.send(Message::Close(None)).await.map_err(socket_err)?;
                            phase = Phase::HangingUp { since: Instant::now() };
                        }
                    }
                    Phase::HangingUp { since } => {
                        if now - *since > CLOSE_TIMEOUT {
                            return Err(CallError::new("close_timeout", format!(
                                "the server did not close the socket within {} s of the caller's close",
                                CLOSE_TIMEOUT.as_secs()
                            )));
                        }
                    }
                }
            }
        }
    }
}

fn text(s: String) -> Message {
    Message::Text(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heard_part_ends_on_a_word() {
        let line = "Nice to meet you, Ana! How can I help?";
        assert_eq!(
            heard_prefix(line, Duration::from_millis(65 * 10)),
            "Nice to"
        );
        assert_eq!(heard_prefix(line, Duration::from_secs(60)), line);
        assert_eq!(heard_prefix(line, Duration::ZERO), "");
    }
}
