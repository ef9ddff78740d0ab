//! `GET /twilio/media`: the Media Streams WebSocket (PROTOCOLS.md §3). The reader turns frames
//! into call events (the caller's number comes from `start.customParameters.From`, the call sid
//! from `start.callSid`); the writer turns the call's outbound queue into `media` (whole 20 ms
//! frames of mu-law, up to `twilio.media_message_ms` per message, the last frame padded with
//! silence), `mark` and `clear` messages.
//!
//! The caller's audio goes to the call's speech-to-text session (Deepgram's live API, or its
//! local stand-in), opened at `start` and owned by this socket, not by the call actor, so a
//! restarted actor loses no speech. Its transcripts become `CallerUtterance` events; the local
//! voice-activity detector still gives barge-in before the recognizer says anything.
//!
//! Bad input never ends the call: non-JSON, binary frames, unknown events, `media` before
//! `start`, a second `start`, bad base64, unaligned payloads, oversized and mistyped messages are
//! dropped and counted by reason. A socket that closes without `stop` is treated as `stop`. A
//! client that stops reading fills the bounded outbound queue and the call is ended.

use std::sync::{Arc, OnceLock};
use tracing::Instrument;

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use fastwebsockets::upgrade::{IncomingUpgrade, UpgradeFut};
use switchboard_actors::machine::Event;
use switchboard_actors::ports::SttEvent;
use switchboard_actors::{CallHandle, CallSid, CallStart, Outbound, Transport};
use switchboard_twilio::audio::MULAW_SILENCE;
use switchboard_twilio::media::{self, FRAME_BYTES, InboundFrame};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::socket::{self, Incoming, WsWrite};
use super::vad::{Vad, VadEvent};
use super::{caller, reject};
use crate::http::AppState;

const T: &str = "media";

pub async fn media_ws(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    upgrade: IncomingUpgrade,
) -> Response {
    if let Err(denied) = super::auth::check_upgrade(&app, &headers, &uri) {
        return *denied;
    }
    socket::accept(upgrade, T, move |fut| session(app, fut))
}

async fn session(app: AppState, fut: UpgradeFut) {
    let (mut read, write) = match socket::connect(fut).await {
        Ok(halves) => halves,
        Err(e) => {
            tracing::warn!(error = %e, "media stream handshake failed");
            return;
        }
    };
    let (control_tx, control_rx) = mpsc::channel(8);
    let (out_tx, out_rx) = mpsc::channel(socket::OUTBOUND_QUEUE);
    let stream_sid: Arc<OnceLock<String>> = Arc::new(OnceLock::new());
    let started_at: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let writer = app.calls().threads.spawn(
        writer(
            write,
            out_rx,
            control_rx,
            stream_sid.clone(),
            started_at.clone(),
            message_bytes(&app),
        )
        .in_current_span(),
    );
    let mut call: Option<Arc<CallHandle>> = None;
    let mut stt_audio: Option<mpsc::Sender<Vec<u8>>> = None;
    let mut vad = Vad::default();
    let stt_config = &app.config().stt;
    let mut stt_batch = SttBatch::new(stt_config.endpointing_ms, stt_config.audio_message_ms);
    let mut stt_task: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        let text = match socket::next(&mut read, &control_tx).await {
            Incoming::Text(text) => text,
            Incoming::Binary => {
                reject(T, "binary_frame");
                continue;
            }
            Incoming::Closed => break,
        };
        let frame = match media::parse_inbound(&text) {
            Ok(frame) => frame,
            Err(e) => {
                reject(T, e.reason());
                tracing::debug!(error = %e, "media frame rejected");
                continue;
            }
        };
        match frame {
            InboundFrame::Connected { .. } => {}
            InboundFrame::Start(start) => {
                if call.is_some() {
                    reject(T, "second_start");
                    continue;
                }
                let _ = started_at.set(Instant::now());
                let _ = stream_sid.set(start.stream_sid.clone());
                socket::name_call(&start.call_sid);
                let region = app.phone_region();
                let from = start
                    .custom_parameters
                    .get("From")
                    .cloned()
                    .unwrap_or_default();
                let direction = start
                    .custom_parameters
                    .get("Direction")
                    .cloned()
                    .unwrap_or_else(|| "inbound".into());
                let call_start = CallStart {
                    call_sid: CallSid(start.call_sid.clone()),
                    stream_sid: Some(start.stream_sid.clone()),
                    caller: caller(&from, region),
                    called: start.custom_parameters.get("To").cloned(),
                    direction,
                    transport: Transport::MediaStream,
                    custom_parameters: start.custom_parameters,
                };
                match app.runtime().start_call(call_start, out_tx.clone()).await {
                    Ok(handle) => {
                        let session = app.calls().stt.open(&start.call_sid);
                        stt_audio = Some(session.audio);
                        stt_task = Some(app.calls().threads.spawn(
                            transcripts(session.events, Arc::downgrade(&handle)).in_current_span(),
                        ));
                        call = Some(handle);
                    }
                    Err(e) => {
                        reject(T, "call_not_started");
                        tracing::warn!(error = %e, "call not started");
                        let _ = out_tx.try_send(Outbound::Close {
                            reason: e.to_string(),
                        });
                    }
                }
            }
            InboundFrame::Media(m) => {
                let Some(h) = &call else {
                    reject(T, "media_before_start");
                    continue;
                };
                if vad.feed(&m.payload) == Some(VadEvent::SpeechStarted) {
                    let _ = h.send(Event::CallerStartedSpeaking);
                }
                if let Some(stt) = &stt_audio
                    && let Some(chunk) = stt_batch.push(m.payload, vad.quiet_frames())
                    && stt.try_send(chunk).is_err()
                {
                    // The recognizer is behind (or gone): this audio is not transcribed.
                    metrics::counter!("switchboard_stt_audio_dropped_total").increment(1);
                }
            }
            InboundFrame::Dtmf { digit, .. } => match &call {
                Some(h) => {
                    let _ = h.send(Event::Dtmf { digit });
                }
                None => reject(T, "dtmf_before_start"),
            },
            InboundFrame::Mark { name, .. } => match &call {
                Some(h) => {
                    let _ = h.send(Event::MarkEchoed { name });
                }
                None => reject(T, "mark_before_start"),
            },
            // Twilio sends nothing after `stop`.
            InboundFrame::Stop { .. } => break,
        }
    }
    // The caller hung up (`stop`, or the socket closed without one). What they said last may
    // still be in the recognizer: send the rest of the audio, close the session (Deepgram
    // `CloseStream` makes it finalize what it heard) and let its last transcripts reach the
    // call before the call is told the stream stopped, so the last words are kept.
    let drain = app.calls().stt.closing_grace() + STT_DRAIN_MARGIN;
    if let Some(stt) = &stt_audio
        && let Some(rest) = stt_batch.flush()
        // Nothing more is read from the caller: wait for room rather than drop the last words.
        && !matches!(tokio::time::timeout(drain, stt.send(rest)).await, Ok(Ok(())))
    {
        metrics::counter!("switchboard_stt_audio_dropped_total").increment(1);
    }
    drop(stt_audio);
    if let Some(task) = stt_task
        && tokio::time::timeout(drain, task).await.is_err()
    {
        tracing::warn!(
            "speech-to-text did not finish within {} ms of the hang-up; its last words are lost",
            drain.as_millis()
        );
    }
    if let Some(h) = &call {
        let _ = h.send(Event::StreamStopped);
    }
    drop(out_tx);
    drop(control_tx);
    let _ = writer.await;
}

/// After a hang-up, how much longer than the recognizer's own closing grace the edge waits for
/// its last transcripts to reach the call (they pass through the forwarding task).
const STT_DRAIN_MARGIN: std::time::Duration = std::time::Duration::from_millis(500);

/// Quiet audio that goes to the recognizer frame by frame after speech: its endpointing
/// window (`stt.endpointing_ms`) and this much more, for a recognizer that decides a little
/// behind the audio.
const STT_ENDPOINT_MARGIN_MS: u64 = 200;

/// What goes to the speech-to-text session, and when. The result a turn waits for comes after
/// the caller stops: the recognizer's endpointing counts quiet audio. So quiet frames after
/// speech go at once (the first one with any speech held before it) until the endpointing
/// window and a margin are past; voiced frames go in messages of `stt.audio_message_ms`
/// (200 ms; barge-in never waits for them: the edge's own detector gives it), and so does
/// longer silence, which is most of a call. About a fifth of the socket writes of one message
/// per frame, and no turn waits longer for its transcript. (Deepgram's `UtteranceEnd`, a
/// fallback for lines too noisy for endpointing, can come up to `audio_message_ms` later.)
struct SttBatch {
    pending: Vec<u8>,
    /// Audio held back at most, in bytes (whole frames).
    batch_bytes: usize,
    /// Quiet frames in a row sent one by one.
    at_once_frames: u32,
}

impl SttBatch {
    fn new(endpointing_ms: u64, message_ms: u64) -> Self {
        SttBatch {
            pending: Vec::new(),
            batch_bytes: whole_frame_bytes(message_ms),
            at_once_frames: (endpointing_ms + STT_ENDPOINT_MARGIN_MS).div_ceil(20) as u32,
        }
    }

    /// `quiet_frames`: quiet frames in a row up to and including `frame` (0: it is voiced).
    fn push(&mut self, frame: Vec<u8>, quiet_frames: u32) -> Option<Vec<u8>> {
        let at_once = quiet_frames > 0 && quiet_frames <= self.at_once_frames;
        if at_once && self.pending.is_empty() {
            return Some(frame);
        }
        if self.pending.capacity() == 0 {
            self.pending.reserve_exact(self.batch_bytes);
        }
        self.pending.extend_from_slice(&frame);
        (at_once || self.pending.len() >= self.batch_bytes)
            .then(|| std::mem::take(&mut self.pending))
    }

    fn flush(&mut self) -> Option<Vec<u8>> {
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }
}

/// Turns the recognizer's events into call events until the session or the call ends.
async fn transcripts(mut events: mpsc::Receiver<SttEvent>, call: std::sync::Weak<CallHandle>) {
    while let Some(event) = events.recv().await {
        let Some(h) = call.upgrade() else { return };
        let sent = match event {
            SttEvent::SpeechStarted => h.send(Event::CallerStartedSpeaking),
            SttEvent::Partial(text) => h.send(Event::CallerUtterance {
                text,
                is_final: false,
            }),
            SttEvent::Utterance(text) => {
                metrics::counter!("switchboard_stt_utterances_total").increment(1);
                h.send(Event::CallerUtterance {
                    text,
                    is_final: true,
                })
            }
            SttEvent::Reconnecting { reason } => {
                metrics::counter!("switchboard_stt_reconnects_total").increment(1);
                tracing::warn!(%reason, "speech-to-text connection lost; reconnecting");
                Ok(())
            }
            SttEvent::Failed { reason } => {
                metrics::counter!("switchboard_stt_failures_total").increment(1);
                tracing::error!(%reason, "speech-to-text gave up; the call goes on without transcripts");
                Ok(())
            }
        };
        if sent.is_err() {
            return; // the call has ended
        }
    }
}

/// Most audio per outbound `media` message (`twilio.media_message_ms`).
fn message_bytes(app: &AppState) -> usize {
    whole_frame_bytes(app.config().twilio.media_message_ms)
}

/// Bytes of mu-law in `ms` of audio, a multiple of 20 in a loaded configuration (the message
/// sizes `twilio.media_message_ms` and `stt.audio_message_ms`): whole 160-byte frames.
fn whole_frame_bytes(ms: u64) -> usize {
    (ms / 20) as usize * FRAME_BYTES
}

async fn writer(
    mut ws: WsWrite,
    mut out: mpsc::Receiver<Outbound>,
    mut control: mpsc::Receiver<fastwebsockets::Frame<'static>>,
    stream_sid: Arc<OnceLock<String>>,
    started_at: Arc<OnceLock<Instant>>,
    message_bytes: usize,
) {
    let mut buf = String::with_capacity(512);
    let mut tail = Vec::new();
    let mut first_audio_sent = false;
    while let Some(msg) = socket::next_outbound(&mut ws, &mut out, &mut control).await {
        let sid = stream_sid.get().map_or("", String::as_str);
        let ok = match msg {
            Outbound::Audio(audio) => {
                let mut ok = true;
                // Up to `message_bytes` of audio per message, whole frames (the last one padded
                // with silence). The clip goes into the socket's buffer and leaves in a few
                // writes (see the flush below); the call's first message is flushed on its own,
                // so the greeting starts at once.
                for chunk in audio.chunks(message_bytes) {
                    buf.clear();
                    let padding = chunk.len().next_multiple_of(FRAME_BYTES) - chunk.len();
                    if padding == 0 {
                        media::write_media(&mut buf, sid, chunk);
                    } else {
                        tail.clear();
                        tail.extend_from_slice(chunk);
                        tail.resize(chunk.len() + padding, MULAW_SILENCE);
                        media::write_media(&mut buf, sid, &tail);
                    }
                    if !socket::queue_text(&mut ws, &buf).await {
                        ok = false;
                        break;
                    }
                    if !first_audio_sent {
                        first_audio_sent = true;
                        if !socket::flush(&mut ws).await {
                            ok = false;
                            break;
                        }
                        // Server-side time to first greeting audio: `start` parsed → first
                        // media message handed to the socket.
                        if let Some(t0) = started_at.get() {
                            metrics::histogram!(
                                crate::metrics::Tracked::TimeToFirstAudio.metric_name()
                            )
                            .record(t0.elapsed().as_secs_f64());
                        }
                    }
                }
                ok
            }
            Outbound::Mark(name) => {
                buf.clear();
                media::write_mark(&mut buf, sid, &name);
                socket::queue_text(&mut ws, &buf).await
            }
            Outbound::Clear => {
                buf.clear();
                media::write_clear(&mut buf, sid);
                socket::queue_text(&mut ws, &buf).await
            }
            Outbound::Text { .. } => true,
            Outbound::Stamp(stamp) => {
                // Stamped once what came before it is on the socket.
                let ok = socket::flush(&mut ws).await;
                stamp.record();
                ok
            }
            Outbound::Close { reason } => {
                socket::close(&mut ws, &reason).await;
                return;
            }
        };
        // Send what is buffered once nothing else is waiting: a clip, its mark and whatever
        // the call queued behind them leave together, and nothing waits for a later message.
        if !ok || (out.is_empty() && !socket::flush(&mut ws).await) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_after_speech_goes_at_once_and_speech_and_long_silence_in_batches() {
        // Endpointing 300 ms: 300 + 200 ms of quiet go frame by frame.
        let mut batch = SttBatch::new(300, 100);
        let window = 25;
        let frame = |b: u8| vec![b; FRAME_BYTES];
        // Quiet within the window (the recognizer's endpointing counts this audio): every frame
        // at once.
        assert_eq!(batch.push(frame(1), 1), Some(frame(1)));
        assert_eq!(batch.push(frame(2), window), Some(frame(2)));
        // Speech: held until 100 ms are together, then all five in order.
        for i in 0..4 {
            assert_eq!(batch.push(frame(10 + i), 0), None);
        }
        let five = batch.push(frame(14), 0).unwrap();
        assert_eq!(five.len(), 5 * FRAME_BYTES);
        assert_eq!((five[0], five[4 * FRAME_BYTES]), (10, 14));
        // The caller stops: the first quiet frame takes the held speech with it, at once.
        assert_eq!(batch.push(frame(20), 0), None);
        assert_eq!(batch.push(frame(21), 0), None);
        let tail = batch.push(frame(22), 1).unwrap();
        assert_eq!(tail.len(), 3 * FRAME_BYTES);
        assert_eq!((tail[0], tail[2 * FRAME_BYTES]), (20, 22));
        // Past the window: batches of five.
        for i in 0..4 {
            assert_eq!(batch.push(frame(30 + i), window + 1 + u32::from(i)), None);
        }
        let silence = batch.push(frame(34), window + 5).unwrap();
        assert_eq!(silence.len(), 5 * FRAME_BYTES);
        // Speech after long silence: the waiting silence leads the next batch.
        assert_eq!(batch.push(frame(40), window + 6), None);
        for _ in 0..3 {
            assert_eq!(batch.push(frame(41), 0), None);
        }
        let resumed = batch.push(frame(42), 0).unwrap();
        assert_eq!((resumed[0], resumed[4 * FRAME_BYTES]), (40, 42));
        // Hang-up: whatever is left is sent.
        assert_eq!(batch.push(frame(50), 0), None);
        assert_eq!(batch.flush(), Some(frame(50)));
        assert_eq!(batch.flush(), None);
    }

    #[test]
    fn the_window_and_the_message_size_follow_the_configuration() {
        let mut batch = SttBatch::new(1000, 200);
        // 1,000 + 200 ms = 60 frames.
        assert!(batch.push(vec![0xFF; FRAME_BYTES], 60).is_some());
        // Past it, 200 ms messages: the tenth frame sends all ten.
        for i in 61..70 {
            assert!(
                batch.push(vec![0xFF; FRAME_BYTES], i).is_none(),
                "frame {i}"
            );
        }
        let message = batch
            .push(vec![0xFF; FRAME_BYTES], 70)
            .expect("200 ms together");
        assert_eq!(message.len(), 10 * FRAME_BYTES);
        // Speech too.
        for _ in 0..9 {
            assert!(batch.push(vec![0x10; FRAME_BYTES], 0).is_none());
        }
        assert_eq!(
            batch.push(vec![0x10; FRAME_BYTES], 0).map(|m| m.len()),
            Some(1600)
        );
    }
}
