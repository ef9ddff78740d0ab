//! The Deepgram-compatible live STT stand-in: `GET /v1/listen` upgraded to a WebSocket.
//!
//! The query is checked as Deepgram checks it (`encoding=mulaw` and `sample_rate=8000` are
//! required here, anything else is an HTTP 400 before the upgrade). Binary frames are mu-law;
//! [`Recognizer`] (pure) runs energy-based speech detection per 20 ms frame and answers with
//! `SpeechStarted`, interim `Results` every ~300 ms of speech, and after `endpointing` ms of
//! silence a final `Results` (`is_final`, `speech_final`) followed by `UtteranceEnd`. All of that
//! is counted in audio time, so a client may send faster than real time and get the same
//! answers. The words come from scripted caller audio (`switchboard_twilio::scripted`), else from
//! `StandinConfig::stt_script`, else "hello".
//! Text frames: `KeepAlive` (nothing), `Finalize` (flush the utterance), `CloseStream` (flush,
//! `Metadata`, close).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fastwebsockets::upgrade::{IncomingUpgrade, UpgradeFut};
use fastwebsockets::{FragmentCollector, Frame, OpCode, Payload};
use serde_json::{Value, json};
use switchboard_twilio::audio::frame_energy;
use switchboard_twilio::scripted;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Shared, lock, record_bounded};

/// 20 ms of 8 kHz mu-law.
const FRAME_BYTES: usize = 160;
const FRAME_MS: u64 = 20;
/// RMS above which a frame counts as speech (the edge's barge-in VAD uses the same level).
const VOICED_RMS: f32 = 520.0;
/// Interim results while speech lasts, in audio time.
const INTERIM_EVERY_MS: u64 = 300;
/// Silence that ends an utterance when the query has no `endpointing`.
const DEFAULT_ENDPOINTING_MS: u64 = 300;
/// Audio after which undecodable speech counts as real speech (a whole scripted message is at
/// most ~260 ms, so a decoder that started mid-message has found a complete copy by then).
const SCRIPTED_WITHIN_MS: u64 = 600;
/// Longest utterance kept for decoding; the rest is counted but not stored.
const MAX_UTTERANCE_BYTES: usize = 8000 * 60;

/// One `/v1/listen` handshake as the stand-in saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SttRequest {
    /// Query pairs in order.
    pub query: Vec<(String, String)>,
    /// The `Authorization` header, if any (e.g. `Token dg-...`).
    pub authorization: Option<String>,
}

impl SttRequest {
    /// The first value of `key` in the query.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// What the query asks for, validated.
#[derive(Clone, Debug)]
struct ListenOptions {
    model: String,
    interim_results: bool,
    vad_events: bool,
    /// `None`: `endpointing=false`.
    endpointing_ms: Option<u64>,
    utterance_end: bool,
    /// The session key for the drop fault: Deepgram's `extra=call_sid:...`, else "".
    session: String,
}

fn deepgram_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"err_code": code, "err_msg": message, "request_id": "standin"});
    (status, axum::Json(body)).into_response()
}

fn options(query: &[(String, String)]) -> Result<ListenOptions, String> {
    let get = |key: &str| {
        query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    match get("encoding") {
        Some("mulaw") => {}
        Some(other) => {
            return Err(format!(
                "the stand-in only transcribes encoding=mulaw, not {other:?}"
            ));
        }
        None => return Err("encoding is required (raw mu-law audio: encoding=mulaw)".into()),
    }
    match get("sample_rate") {
        Some("8000") => {}
        Some(other) => return Err(format!("sample_rate must be 8000, not {other:?}")),
        None => return Err("sample_rate is required with encoding".into()),
    }
    if let Some(channels) = get("channels")
        && channels != "1"
    {
        return Err(format!("channels must be 1, not {channels:?}"));
    }
    let flag = |key: &str| get(key) == Some("true");
    let endpointing_ms = match get("endpointing") {
        None => Some(DEFAULT_ENDPOINTING_MS),
        Some("false") => None,
        Some(ms) => Some(
            ms.parse::<u64>()
                .map_err(|_| format!("endpointing must be a number of ms or false, not {ms:?}"))?,
        ),
    };
    if let Some(ms) = get("utterance_end_ms") {
        ms.parse::<u64>()
            .map_err(|_| format!("utterance_end_ms must be a number, not {ms:?}"))?;
    }
    let session = query
        .iter()
        .filter(|(k, _)| k == "extra")
        .find_map(|(_, v)| v.strip_prefix("call_sid:"))
        .unwrap_or_default()
        .to_owned();
    Ok(ListenOptions {
        model: get("model").unwrap_or("nova-3").to_owned(),
        interim_results: flag("interim_results"),
        vad_events: flag("vad_events"),
        endpointing_ms,
        utterance_end: get("utterance_end_ms").is_some(),
        session,
    })
}

pub(super) async fn listen(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
    upgrade: IncomingUpgrade,
) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    record_bounded(
        &shared.stt_requests,
        SttRequest {
            query: query.clone(),
            authorization,
        },
    );
    let config = lock(&shared.config).clone();
    if let Some(code) = config.stt_status {
        shared.stt_refused.fetch_add(1, Ordering::SeqCst);
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let (err_code, message) = match code {
            401 | 403 => ("INVALID_AUTH", "Invalid credentials."),
            _ => ("STANDIN_FAULT", "stand-in fault injected"),
        };
        return deepgram_error(status, err_code, message);
    }
    let options = match options(&query) {
        Ok(options) => options,
        Err(message) => {
            shared.stt_refused.fetch_add(1, Ordering::SeqCst);
            return deepgram_error(StatusCode::BAD_REQUEST, "INVALID_QUERY_PARAMETER", &message);
        }
    };
    // The drop fault hits each session's first connection only, so the reconnect succeeds.
    let first_of_session = lock(&shared.stt_sessions).insert(options.session.clone());
    let drop_after = config
        .stt_drop_after_utterances
        .filter(|_| first_of_session);
    match upgrade.upgrade() {
        Ok((response, fut)) => {
            shared.stt_connections.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(shared, options, drop_after, fut));
            response.map(axum::body::Body::new).into_response()
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            format!("websocket upgrade failed: {e}\n"),
        )
            .into_response(),
    }
}

async fn serve(
    shared: Arc<Shared>,
    options: ListenOptions,
    drop_after: Option<u32>,
    fut: UpgradeFut,
) {
    let Ok(mut ws) = fut.await else { return };
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    ws.set_max_message_size(1024 * 1024);
    let mut ws = FragmentCollector::new(ws);
    let mut shutdown = shared.shutdown.clone();
    let mut recognizer = Recognizer::new(options);
    let mut utterances: u32 = 0;
    loop {
        let frame = tokio::select! {
            frame = ws.read_frame() => frame,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let Ok(frame) = frame else { break };
        let replies = match frame.opcode {
            OpCode::Binary => {
                let mut next_line = || next_script_line(&shared);
                recognizer.push(&frame.payload, &mut next_line)
            }
            OpCode::Text => {
                let kind = serde_json::from_slice::<Value>(&frame.payload)
                    .ok()
                    .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_owned))
                    .unwrap_or_default();
                record_bounded(&shared.stt_control_messages, kind.clone());
                let mut next_line = || next_script_line(&shared);
                match kind.as_str() {
                    "CloseStream" => {
                        let replies = recognizer.close(&mut next_line);
                        let delay = lock(&shared.config).stt_final_delay;
                        if send_replies(&mut ws, replies, delay).await.is_err() {
                            return;
                        }
                        let _ = ws.write_frame(Frame::close(1000, b"")).await;
                        shared.stt_closed_streams.fetch_add(1, Ordering::SeqCst);
                        // Wait (briefly) for the client's close echo, as a server does.
                        let _ = tokio::time::timeout(
                            std::time::Duration::from_secs(2),
                            ws.read_frame(),
                        )
                        .await;
                        return;
                    }
                    "Finalize" => recognizer.finalize(&mut next_line),
                    // KeepAlive needs no answer; unknown types are ignored.
                    _ => Vec::new(),
                }
            }
            OpCode::Close => break,
            _ => Vec::new(),
        };
        let ended = replies
            .iter()
            .filter(|reply| {
                matches!(
                    reply,
                    Reply::Final {
                        speech_final: true,
                        ..
                    }
                )
            })
            .count() as u32;
        let delay = lock(&shared.config).stt_final_delay;
        if send_replies(&mut ws, replies, delay).await.is_err() {
            return;
        }
        utterances += ended;
        if let Some(limit) = drop_after
            && ended > 0
            && utterances >= limit
        {
            // The fault: vanish without a close frame, as a crashed server or a cut link would.
            // The TCP side ends with a FIN, and what the client still sends is read and thrown
            // away until it hangs up: closing with unread data would send a reset, and a reset
            // makes the client's kernel discard the results above before the client reads them.
            shared.stt_dropped.fetch_add(1, Ordering::SeqCst);
            let mut io = ws.into_inner();
            let _ = io.shutdown().await;
            let mut sink = [0u8; 4096];
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
                while io.read(&mut sink).await.is_ok_and(|n| n > 0) {}
            })
            .await;
            return;
        }
    }
}

async fn send_replies<S>(
    ws: &mut FragmentCollector<S>,
    replies: Vec<Reply>,
    final_delay: std::time::Duration,
) -> Result<(), fastwebsockets::WebSocketError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    for reply in replies {
        let message = match reply {
            Reply::Final { message, .. } => {
                if !final_delay.is_zero() {
                    tokio::time::sleep(final_delay).await;
                }
                message
            }
            Reply::Send(message) => message,
        };
        let text = message.to_string().into_bytes();
        ws.write_frame(Frame::text(Payload::Owned(text))).await?;
    }
    Ok(())
}

fn next_script_line(shared: &Shared) -> String {
    let script = lock(&shared.config).stt_script.clone();
    if script.is_empty() {
        return "hello".to_owned();
    }
    let n = shared.stt_script_cursor.fetch_add(1, Ordering::SeqCst);
    script[(n % script.len() as u64) as usize].clone()
}

// === the recognizer (pure) ===

/// A message for the client. Finals wait `stt_final_delay` first.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Reply {
    Send(Value),
    Final { message: Value, speech_final: bool },
}

struct Utterance {
    start_ms: u64,
    audio: Vec<u8>,
    /// Audio in this utterance (speech and the pauses inside it).
    audio_ms: u64,
    silence_ms: u64,
    since_interim_ms: u64,
    /// Fixed once known, so interim and final results agree.
    text: Option<String>,
}

/// Energy-based endpointing over mu-law, counted in audio time.
struct Recognizer {
    options: ListenOptions,
    carry: Vec<u8>,
    /// Audio consumed so far.
    audio_ms: u64,
    speech: Option<Utterance>,
}

impl Recognizer {
    fn new(options: ListenOptions) -> Self {
        Recognizer {
            options,
            carry: Vec::new(),
            audio_ms: 0,
            speech: None,
        }
    }

    fn push(&mut self, mut audio: &[u8], next_line: &mut dyn FnMut() -> String) -> Vec<Reply> {
        let mut replies = Vec::new();
        // Complete the frame left over from the last message, then take whole frames straight
        // from this one (a message of whole frames copies nothing).
        if !self.carry.is_empty() {
            let wanted = (FRAME_BYTES - self.carry.len()).min(audio.len());
            self.carry.extend_from_slice(&audio[..wanted]);
            audio = &audio[wanted..];
            if self.carry.len() < FRAME_BYTES {
                return replies;
            }
            let frame = std::mem::take(&mut self.carry);
            self.frame(&frame, next_line, &mut replies);
        }
        let mut frames = audio.chunks_exact(FRAME_BYTES);
        for frame in &mut frames {
            self.frame(frame, next_line, &mut replies);
        }
        self.carry.extend_from_slice(frames.remainder());
        replies
    }

    fn frame(&mut self, frame: &[u8], next_line: &mut dyn FnMut() -> String, out: &mut Vec<Reply>) {
        let voiced = frame_energy(frame) > VOICED_RMS;
        let frame_start = self.audio_ms;
        self.audio_ms += FRAME_MS;
        match &mut self.speech {
            None if voiced => {
                if self.options.vad_events {
                    out.push(Reply::Send(json!({
                        "type": "SpeechStarted",
                        "channel": [0, 1],
                        "timestamp": seconds(frame_start),
                    })));
                }
                self.speech = Some(Utterance {
                    start_ms: frame_start,
                    audio: frame.to_vec(),
                    audio_ms: FRAME_MS,
                    silence_ms: 0,
                    since_interim_ms: FRAME_MS,
                    text: None,
                });
            }
            None => {}
            Some(utterance) => {
                utterance.audio_ms += FRAME_MS;
                if voiced {
                    utterance.silence_ms = 0;
                    if utterance.audio.len() < MAX_UTTERANCE_BYTES {
                        utterance.audio.extend_from_slice(frame);
                    }
                } else {
                    utterance.silence_ms += FRAME_MS;
                }
                utterance.since_interim_ms += FRAME_MS;
                if let Some(endpointing) = self.options.endpointing_ms
                    && utterance.silence_ms >= endpointing.max(FRAME_MS)
                {
                    self.end_utterance(true, false, next_line, out);
                    return;
                }
                if self.options.interim_results
                    && voiced
                    && utterance.since_interim_ms >= INTERIM_EVERY_MS
                {
                    utterance.since_interim_ms = 0;
                    let spoken_ms = utterance.audio_ms - utterance.silence_ms;
                    if let Some(text) = interim_text(utterance, next_line) {
                        let words = leading_words(&text, spoken_ms);
                        let message = self.results(&words, false, false, false);
                        out.push(Reply::Send(message));
                    }
                }
            }
        }
        // Without endpointing, a long pause still ends the utterance (as UtteranceEnd would).
        if self.options.endpointing_ms.is_none()
            && let Some(utterance) = &self.speech
            && utterance.silence_ms >= 1000
        {
            self.end_utterance(false, false, next_line, out);
        }
    }

    /// `Finalize`: the current utterance now, as a final (not speech-final) result.
    fn finalize(&mut self, next_line: &mut dyn FnMut() -> String) -> Vec<Reply> {
        let mut out = Vec::new();
        if self.speech.is_some() {
            self.end_utterance(false, true, next_line, &mut out);
        }
        out
    }

    /// `CloseStream`: what is left, then the summary `Metadata`.
    fn close(&mut self, next_line: &mut dyn FnMut() -> String) -> Vec<Reply> {
        let rest = std::mem::take(&mut self.carry);
        let mut out = self.push_partial(&rest, next_line);
        out.extend(self.finalize(next_line));
        out.push(Reply::Send(json!({
            "type": "Metadata",
            "transaction_key": "deprecated",
            "request_id": "standin",
            "sha256": "",
            "created": "1970-01-01T00:00:00.000Z",
            "duration": seconds(self.audio_ms),
            "channels": 1,
        })));
        out
    }

    /// A trailing partial frame counts like a short frame.
    fn push_partial(&mut self, rest: &[u8], next_line: &mut dyn FnMut() -> String) -> Vec<Reply> {
        let mut out = Vec::new();
        if !rest.is_empty() {
            self.frame(rest, next_line, &mut out);
        }
        out
    }

    fn end_utterance(
        &mut self,
        speech_final: bool,
        from_finalize: bool,
        next_line: &mut dyn FnMut() -> String,
        out: &mut Vec<Reply>,
    ) {
        let Some(mut utterance) = self.speech.take() else {
            return;
        };
        let text = match utterance.text.take() {
            Some(text) => text,
            None => scripted::decode(&utterance.audio).unwrap_or_else(&mut *next_line),
        };
        let start = utterance.start_ms;
        let duration = utterance.audio_ms;
        let mut message = self.results(&text, true, speech_final, from_finalize);
        message["start"] = json!(seconds(start));
        message["duration"] = json!(seconds(duration));
        out.push(Reply::Final {
            message,
            speech_final,
        });
        if self.options.utterance_end && !from_finalize {
            out.push(Reply::Send(json!({
                "type": "UtteranceEnd",
                "channel": [0, 1],
                "last_word_end": seconds(start + duration - utterance.silence_ms),
            })));
        }
    }

    fn results(
        &self,
        transcript: &str,
        is_final: bool,
        speech_final: bool,
        from_finalize: bool,
    ) -> Value {
        let words: Vec<Value> = transcript
            .split_whitespace()
            .map(|word| {
                let bare: String = word
                    .chars()
                    .filter(|c| c.is_alphanumeric() || *c == '\'')
                    .collect::<String>()
                    .to_lowercase();
                json!({"word": bare, "start": 0.0, "end": 0.0, "confidence": 0.99, "punctuated_word": word})
            })
            .collect();
        let start = self.speech.as_ref().map_or(self.audio_ms, |u| u.start_ms);
        json!({
            "type": "Results",
            "channel_index": [0, 1],
            "duration": seconds(self.audio_ms.saturating_sub(start)),
            "start": seconds(start),
            "is_final": is_final,
            "speech_final": speech_final,
            "from_finalize": from_finalize,
            "channel": {"alternatives": [{
                "transcript": transcript,
                "confidence": 0.99,
                "words": words,
            }]},
            "metadata": {
                "request_id": "standin",
                "model_info": {"name": self.options.model, "version": "standin", "arch": "standin"},
                "model_uuid": "00000000-0000-0000-0000-000000000000",
            },
        })
    }
}

/// The utterance's text, if it can be known yet: scripted audio decodes as soon as one whole
/// message arrived; audio that still does not decode after [`SCRIPTED_WITHIN_MS`] is real speech
/// and gets the next script line.
fn interim_text(
    utterance: &mut Utterance,
    next_line: &mut dyn FnMut() -> String,
) -> Option<String> {
    if utterance.text.is_none() {
        utterance.text = match scripted::decode(&utterance.audio) {
            Some(text) => Some(text),
            None if utterance.audio_ms >= SCRIPTED_WITHIN_MS => Some(next_line()),
            None => None,
        };
    }
    utterance.text.clone()
}

/// The first words of `text`, as many as a caller says in `spoken_ms` (at least one).
fn leading_words(text: &str, spoken_ms: u64) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let expected = u64::from(scripted::spoken_duration_ms(text)).max(1);
    let count =
        ((words.len() as u64 * spoken_ms).div_ceil(expected) as usize).clamp(1, words.len().max(1));
    words[..count.min(words.len())].join(" ")
}

fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(endpointing: u64) -> ListenOptions {
        ListenOptions {
            model: "nova-3".into(),
            interim_results: true,
            vad_events: true,
            endpointing_ms: Some(endpointing),
            utterance_end: true,
            session: String::new(),
        }
    }

    fn kinds(replies: &[Reply]) -> Vec<String> {
        replies
            .iter()
            .map(|reply| match reply {
                Reply::Send(m) | Reply::Final { message: m, .. } => {
                    let kind = m["type"].as_str().unwrap_or("?").to_owned();
                    if kind == "Results" {
                        format!("Results(final={})", m["is_final"])
                    } else {
                        kind
                    }
                }
            })
            .collect()
    }

    #[test]
    fn scripted_speech_is_heard_word_for_word_in_audio_time() {
        let text = "I need to change my delivery address";
        let mut audio = scripted::encode(text);
        audio.extend(std::iter::repeat_n(0xFF, 8 * 600));
        let mut recognizer = Recognizer::new(options(300));
        let mut lines = || "unused".to_owned();
        let mut replies = Vec::new();
        // Odd chunk sizes: frames are reassembled.
        for chunk in audio.chunks(77) {
            replies.extend(recognizer.push(chunk, &mut lines));
        }
        let kinds = kinds(&replies);
        assert_eq!(kinds.first().map(String::as_str), Some("SpeechStarted"));
        assert!(
            kinds
                .iter()
                .filter(|k| *k == "Results(final=false)")
                .count()
                >= 2,
            "{kinds:?}"
        );
        assert_eq!(
            &kinds[kinds.len() - 2..],
            ["Results(final=true)", "UtteranceEnd"]
        );
        let Reply::Final {
            message,
            speech_final,
        } = &replies[replies.len() - 2]
        else {
            panic!("final expected");
        };
        assert!(speech_final);
        assert_eq!(message["channel"]["alternatives"][0]["transcript"], text);
        assert_eq!(message["speech_final"], true);
        // Interim text grows word by word and is always a prefix of the final text.
        let interims: Vec<String> = replies
            .iter()
            .filter_map(|r| match r {
                Reply::Send(m) if m["is_final"] == false => {
                    m["channel"]["alternatives"][0]["transcript"]
                        .as_str()
                        .map(str::to_owned)
                }
                _ => None,
            })
            .collect();
        assert!(
            interims.iter().all(|t| text.starts_with(t.as_str())),
            "{interims:?}"
        );
        assert!(
            interims.windows(2).all(|w| w[0].len() <= w[1].len()),
            "{interims:?}"
        );
    }

    #[test]
    fn real_speech_takes_script_lines_and_silence_says_nothing() {
        let mut recognizer = Recognizer::new(options(200));
        let mut n = 0;
        let mut lines = || {
            n += 1;
            format!("line {n}")
        };
        assert!(recognizer.push(&[0xFF; 8000], &mut lines).is_empty());
        // A loud tone that is not scripted audio: 0x00/0x80 alternate (±32124).
        let tone: Vec<u8> = (0..8000)
            .map(|i| if i % 2 == 0 { 0x00 } else { 0x80 })
            .collect();
        let mut replies = recognizer.push(&tone, &mut lines);
        replies.extend(recognizer.push(&[0xFF; 1600], &mut lines));
        let finals: Vec<&Value> = replies
            .iter()
            .filter_map(|r| match r {
                Reply::Final { message, .. } => Some(message),
                _ => None,
            })
            .collect();
        assert_eq!(finals.len(), 1);
        assert_eq!(
            finals[0]["channel"]["alternatives"][0]["transcript"],
            "line 1"
        );
    }

    #[test]
    fn close_flushes_the_utterance_and_ends_with_metadata() {
        let mut recognizer = Recognizer::new(options(300));
        let mut lines = || "unused".to_owned();
        let audio = scripted::encode("where is my parcel");
        let _ = recognizer.push(&audio[..audio.len() - 50], &mut lines);
        let replies = recognizer.close(&mut lines);
        let kinds = kinds(&replies);
        assert_eq!(kinds, ["Results(final=true)", "Metadata"]);
        let Reply::Final {
            message,
            speech_final,
        } = &replies[0]
        else {
            panic!("final expected")
        };
        assert!(!speech_final);
        assert_eq!(message["from_finalize"], true);
        assert_eq!(
            message["channel"]["alternatives"][0]["transcript"],
            "where is my parcel"
        );
    }

    #[test]
    fn the_query_is_checked_like_deepgram() {
        let q = |s: &str| -> Vec<(String, String)> {
            s.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (k.to_owned(), v.to_owned())
                })
                .collect()
        };
        assert!(super::options(&q("encoding=mulaw&sample_rate=8000")).is_ok());
        assert!(super::options(&q("encoding=linear16&sample_rate=8000")).is_err());
        assert!(super::options(&q("encoding=mulaw&sample_rate=16000")).is_err());
        assert!(super::options(&q("sample_rate=8000")).is_err());
        assert!(super::options(&q("encoding=mulaw")).is_err());
        assert!(super::options(&q("encoding=mulaw&sample_rate=8000&channels=2")).is_err());
        assert!(super::options(&q("encoding=mulaw&sample_rate=8000&endpointing=soon")).is_err());
        let parsed = super::options(&q(
            "encoding=mulaw&sample_rate=8000&endpointing=false&extra=call_sid:CA9",
        ))
        .expect("valid");
        assert_eq!(parsed.endpointing_ms, None);
        assert_eq!(parsed.session, "CA9");
        assert!(!parsed.interim_results && !parsed.vad_events && !parsed.utterance_end);
    }

    #[test]
    fn leading_words_follow_the_audio() {
        let text = "one two three four";
        assert_eq!(leading_words(text, 0), "one");
        assert_eq!(leading_words(text, 10_000), text);
        let half = u64::from(scripted::spoken_duration_ms(text)) / 2;
        assert_eq!(leading_words(text, half), "one two");
        assert_eq!(leading_words("", 500), "");
    }
}
