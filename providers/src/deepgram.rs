//! Live speech to text through Deepgram's streaming API (`/v1/listen` over a WebSocket), behind
//! the actors' `SpeechRecognizer` port.
//!
//! Owns one WebSocket per call: mu-law audio out as binary frames, `KeepAlive` while the caller's
//! audio pauses, `CloseStream` when the call's audio sender is dropped, and reconnection with a
//! short backoff when the socket drops. What Deepgram says comes back through [`parse_message`]
//! and [`TranscriptAssembler`] (both pure) as `SttEvent`s. Each connection is split: the
//! session's task sends, a `Reader` task reads (on another runtime when one is given, so the
//! transcripts are heard however busy the sender's runtime is).
//! Never here: voice-activity detection of our own, audio conversion, or any retry of a refused
//! key (a 401/403 at the handshake is final).

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::stream::SplitStream;
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use switchboard_actors::ports::{SpeechRecognizer, SttEvent, SttSession};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::chat::truncate_chars;
use crate::http::{redacted, shown_url};

/// Deepgram closes a stream that got neither audio nor `KeepAlive` for 10 s; its docs ask for a
/// `KeepAlive` every 3-5 s of silence.
const KEEPALIVE_AFTER: Duration = Duration::from_secs(5);
/// After `CloseStream`, how long we wait for the last results and the server's close.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Backoff before reconnect attempt `n` (1-based): 100 ms, 200 ms, 400 ms, ... capped at 2 s.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Events waiting for the call to read them; past this the socket reader waits (backpressure).
const EVENT_QUEUE: usize = 64;
/// Most audio sent in one message when frames queued up (400 ms of 8 kHz mu-law).
const MAX_AUDIO_MESSAGE: usize = 3200;
/// The socket's read buffer (see `connect`).
const READ_BUFFER: usize = 4 * 1024;
/// Largest message we accept from the server (results are a few KiB).
const MAX_SERVER_MESSAGE: usize = 1024 * 1024;

/// How to reach Deepgram and what to ask it for.
#[derive(Clone)]
pub struct DeepgramConfig {
    /// `https://api.deepgram.com` (→ `wss://`), `http://127.0.0.1:PORT` (→ `ws://`), or a
    /// `ws://`/`wss://` URL. A trailing `/v1` is accepted; `/v1/listen` is added.
    pub base_url: String,
    /// Sent as `Authorization: Token <key>`; `None` sends no header (stand-ins).
    pub api_key: Option<String>,
    /// E.g. `nova-3`, `nova-2-phonecall`.
    pub model: String,
    /// BCP-47 tag such as `en-US`; `None` lets the model's default apply.
    pub language: Option<String>,
    /// Silence (ms) after which Deepgram marks a result `speech_final`.
    pub endpointing_ms: u32,
    /// Gap after the last word (ms) before Deepgram sends `UtteranceEnd`; Deepgram's minimum
    /// is 1000.
    pub utterance_end_ms: u32,
    /// TCP + TLS + WebSocket handshake, per attempt.
    pub connect_timeout: Duration,
    /// Reconnect attempts after a dropped or failed connection before the session reports
    /// `Failed`. A connection that delivered results resets the count.
    pub max_reconnects: u32,
    /// Audio chunks buffered between the call and the socket (a Media Streams frame is 20 ms,
    /// so 250 chunks are 5 s): covers the handshake and a reconnect.
    pub audio_queue: usize,
}

impl Default for DeepgramConfig {
    fn default() -> Self {
        DeepgramConfig {
            base_url: "https://api.deepgram.com".into(),
            api_key: None,
            model: "nova-3".into(),
            language: Some("en-US".into()),
            endpointing_ms: 300,
            utterance_end_ms: 1000,
            connect_timeout: Duration::from_secs(5),
            max_reconnects: 3,
            audio_queue: 250,
        }
    }
}

impl fmt::Debug for DeepgramConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeepgramConfig")
            .field("base_url", &shown_url(&self.base_url))
            .field("api_key", &format_args!("{}", redacted(&self.api_key)))
            .field("model", &self.model)
            .field("language", &self.language)
            .field("endpointing_ms", &self.endpointing_ms)
            .field("utterance_end_ms", &self.utterance_end_ms)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_reconnects", &self.max_reconnects)
            .field("audio_queue", &self.audio_queue)
            .finish()
    }
}

impl DeepgramConfig {
    /// The `ws(s)://.../v1/listen?...` URL for one call (the call SID travels as Deepgram
    /// `extra` metadata, so the vendor's logs can be matched to our calls).
    pub fn listen_url(&self, call_sid: &str) -> Result<String, String> {
        let base = self.base_url.trim().trim_end_matches('/');
        let (scheme, rest) = base
            .split_once("://")
            .ok_or_else(|| format!("base_url {:?} has no scheme", shown_url(base)))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "https" | "wss" => "wss",
            "http" | "ws" => "ws",
            other => return Err(format!("base_url scheme {other:?} is not http(s) or ws(s)")),
        };
        let path = if rest.ends_with("/v1") {
            "/listen"
        } else {
            "/v1/listen"
        };
        let mut url = reqwest::Url::parse(&format!("{scheme}://{rest}{path}"))
            .map_err(|e| format!("base_url {:?} is not a URL: {e}", shown_url(base)))?;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("model", &self.model)
                .append_pair("encoding", "mulaw")
                .append_pair("sample_rate", "8000")
                .append_pair("channels", "1")
                .append_pair("interim_results", "true")
                .append_pair("vad_events", "true")
                .append_pair("utterance_end_ms", &self.utterance_end_ms.to_string())
                .append_pair("endpointing", &self.endpointing_ms.to_string())
                .append_pair("smart_format", "true");
            if let Some(language) = &self.language {
                query.append_pair("language", language);
            }
            if !call_sid.is_empty() {
                query.append_pair("extra", &format!("call_sid:{call_sid}"));
            }
        }
        Ok(url.into())
    }
}

// === parsing (pure) ===

/// What one text frame from Deepgram means to us.
#[derive(Clone, Debug, PartialEq)]
pub enum ServerMessage {
    /// `Results`: the first alternative's transcript of a segment.
    Results {
        transcript: String,
        is_final: bool,
        speech_final: bool,
    },
    SpeechStarted,
    UtteranceEnd,
    /// The summary sent before Deepgram closes the stream.
    Metadata,
    /// `{"type":"Error", ...}` (or an `err_msg` body), with its description.
    Error(String),
    /// Valid JSON of a type we do not use.
    Unknown(String),
    /// Not a JSON object.
    Garbage,
}

/// Reads one text frame. Missing fields take their neutral value; nothing here can panic.
pub fn parse_message(text: &str) -> ServerMessage {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return ServerMessage::Garbage;
    };
    if !value.is_object() {
        return ServerMessage::Garbage;
    }
    let flag = |name: &str| value.get(name).and_then(Value::as_bool).unwrap_or(false);
    match value.get("type").and_then(Value::as_str) {
        Some("Results") => ServerMessage::Results {
            transcript: value
                .pointer("/channel/alternatives/0/transcript")
                .and_then(Value::as_str)
                .unwrap_or("")
                .trim()
                .to_owned(),
            is_final: flag("is_final"),
            speech_final: flag("speech_final"),
        },
        Some("SpeechStarted") => ServerMessage::SpeechStarted,
        Some("UtteranceEnd") => ServerMessage::UtteranceEnd,
        Some("Metadata") => ServerMessage::Metadata,
        Some("Error") => ServerMessage::Error(error_text(&value)),
        Some(other) => ServerMessage::Unknown(other.to_owned()),
        None if value.get("err_msg").is_some() => ServerMessage::Error(error_text(&value)),
        None => ServerMessage::Unknown(String::new()),
    }
}

/// The useful words of a Deepgram error object (`description`, `message`, `err_msg`).
fn error_text(value: &Value) -> String {
    let mut parts = Vec::new();
    for key in ["err_code", "variant", "description", "message", "err_msg"] {
        if let Some(text) = value.get(key).and_then(Value::as_str)
            && !text.is_empty()
            && !parts.contains(&text)
        {
            parts.push(text);
        }
    }
    let mut text = if parts.is_empty() {
        "no description".to_owned()
    } else {
        parts.join(": ")
    };
    truncate_chars(&mut text, 200);
    text
}

/// Turns Deepgram's segments into utterances: final segments accumulate until `speech_final`
/// or `UtteranceEnd`, interim ones only update the partial text.
#[derive(Debug, Default)]
pub struct TranscriptAssembler {
    finals: Vec<String>,
}

impl TranscriptAssembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// The events one server message produces (often none).
    pub fn on_message(&mut self, message: ServerMessage) -> Vec<SttEvent> {
        match message {
            ServerMessage::SpeechStarted => vec![SttEvent::SpeechStarted],
            ServerMessage::Results {
                transcript,
                is_final,
                speech_final,
            } => {
                let mut events = Vec::new();
                if is_final {
                    if !transcript.is_empty() {
                        self.finals.push(transcript);
                        if !speech_final {
                            events.push(SttEvent::Partial(self.finals.join(" ")));
                        }
                    }
                    if speech_final && let Some(utterance) = self.take() {
                        events.push(SttEvent::Utterance(utterance));
                    }
                } else if !transcript.is_empty() {
                    let mut so_far = self.finals.clone();
                    so_far.push(transcript);
                    events.push(SttEvent::Partial(so_far.join(" ")));
                }
                events
            }
            ServerMessage::UtteranceEnd => self.flush().into_iter().collect(),
            ServerMessage::Metadata
            | ServerMessage::Error(_)
            | ServerMessage::Unknown(_)
            | ServerMessage::Garbage => Vec::new(),
        }
    }

    /// The pending final segments as one utterance, if any (the stream ended or dropped before
    /// Deepgram marked the end of speech: what was said is still what was said).
    pub fn flush(&mut self) -> Option<SttEvent> {
        self.take().map(SttEvent::Utterance)
    }

    fn take(&mut self) -> Option<String> {
        if self.finals.is_empty() {
            return None;
        }
        let utterance = self.finals.join(" ");
        self.finals.clear();
        Some(utterance)
    }
}

// === the adapter ===

/// The `SpeechRecognizer` for Deepgram's live API. Cheap to clone; clones share the TLS setup.
#[derive(Clone)]
pub struct DeepgramStt {
    inner: Arc<Inner>,
}

struct Inner {
    config: DeepgramConfig,
    /// Built on the first `wss://` connection, then shared by every session.
    tls: OnceLock<Result<Arc<rustls::ClientConfig>, String>>,
    /// Where each session connects and reads Deepgram's results (`None`: where it was opened).
    results_on: Option<tokio::runtime::Handle>,
}

impl fmt::Debug for DeepgramStt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeepgramStt")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl DeepgramStt {
    pub fn new(config: DeepgramConfig) -> Self {
        Self::build(config, None)
    }

    /// Sessions that send the audio from the runtime they are opened on (`open` spawns there)
    /// but connect and read Deepgram's results on `results`: its workers then hear a transcript
    /// as soon as it arrives, however busy the opener's workers are with audio.
    pub fn reading_results_on(config: DeepgramConfig, results: tokio::runtime::Handle) -> Self {
        Self::build(config, Some(results))
    }

    fn build(config: DeepgramConfig, results_on: Option<tokio::runtime::Handle>) -> Self {
        DeepgramStt {
            inner: Arc::new(Inner {
                config,
                tls: OnceLock::new(),
                results_on,
            }),
        }
    }

    pub fn config(&self) -> &DeepgramConfig {
        &self.inner.config
    }
}

impl SpeechRecognizer for DeepgramStt {
    fn open(&self, call_sid: &str) -> SttSession {
        let (audio_tx, audio_rx) = mpsc::channel(self.inner.config.audio_queue.max(1));
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let session = Session {
            inner: self.inner.clone(),
            call_sid: call_sid.to_owned(),
            audio: audio_rx,
            events: events_tx,
            assembler: TranscriptAssembler::new(),
        };
        tokio::spawn(session.run());
        SttSession {
            audio: audio_tx,
            events: events_rx,
        }
    }

    fn closing_grace(&self) -> Duration {
        CLOSE_GRACE
    }
}

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Why a connection attempt failed.
enum ConnectError {
    /// Retrying will not help (credentials refused, request rejected, bad URL).
    Fatal(String),
    Retryable(String),
}

/// How a connected socket ended.
enum Ended {
    /// CloseStream sent and the stream closed (or the grace ran out): the session is over.
    Finished,
    /// Nobody reads the events any more.
    ConsumerGone,
    /// The socket dropped; `heard` says whether the server delivered anything first.
    Dropped { reason: String, heard: bool },
}

struct Session {
    inner: Arc<Inner>,
    call_sid: String,
    audio: mpsc::Receiver<Vec<u8>>,
    events: mpsc::Sender<SttEvent>,
    assembler: TranscriptAssembler,
}

impl Session {
    async fn run(mut self) {
        let max_reconnects = self.inner.config.max_reconnects;
        let mut failures: u32 = 0;
        loop {
            let reason = match self.connect().await {
                Ok(socket) => match self.pump(socket).await {
                    Ended::Finished | Ended::ConsumerGone => break,
                    Ended::Dropped { reason, heard } => {
                        if heard {
                            failures = 0;
                        }
                        // Segments of the lost connection will never be completed by the next.
                        if let Some(utterance) = self.assembler.flush()
                            && !self.emit(utterance).await
                        {
                            break;
                        }
                        reason
                    }
                },
                Err(ConnectError::Fatal(reason)) => {
                    tracing::warn!(call_sid = %self.call_sid, %reason, "Deepgram refused the stream");
                    let _ = self.events.send(SttEvent::Failed { reason }).await;
                    break;
                }
                Err(ConnectError::Retryable(reason)) => reason,
            };
            // The call hung up meanwhile: nothing left to transcribe.
            if self.audio.is_closed() && self.audio.is_empty() {
                break;
            }
            failures += 1;
            if failures > max_reconnects {
                let reason = format!("{reason} (gave up after {max_reconnects} reconnects)");
                tracing::warn!(call_sid = %self.call_sid, %reason, "Deepgram stream failed");
                let _ = self.events.send(SttEvent::Failed { reason }).await;
                break;
            }
            tracing::info!(call_sid = %self.call_sid, %reason, attempt = failures, "Deepgram stream reconnecting");
            if !self
                .emit(SttEvent::Reconnecting {
                    reason: reason.clone(),
                })
                .await
            {
                break;
            }
            tokio::time::sleep(backoff(failures)).await;
        }
        // Dropping `events` here ends the call's event stream.
    }

    /// Sends one event; `false` when the call stopped listening.
    async fn emit(&self, event: SttEvent) -> bool {
        self.events.send(event).await.is_ok()
    }

    /// Connects where the results are read (`results_on`), so that runtime's reactor drives
    /// the socket and wakes its reader.
    async fn connect(&self) -> Result<Socket, ConnectError> {
        let (inner, call_sid) = (self.inner.clone(), self.call_sid.clone());
        self.inner
            .spawn_reading(async move { inner.connect(&call_sid).await })
            .await
            .unwrap_or_else(|e| {
                Err(ConnectError::Fatal(format!(
                    "the runtime that reads Deepgram's results is gone: {e}"
                )))
            })
    }

    /// Moves audio out from here while a `Reader` moves results in, until the stream ends.
    async fn pump(&mut self, socket: Socket) -> Ended {
        let (mut sink, stream) = socket.split();
        let (control, control_rx) = watch::channel(Reading::Open);
        let reader = Reader {
            stream,
            events: self.events.clone(),
            assembler: std::mem::take(&mut self.assembler),
            call_sid: self.call_sid.clone(),
            heard: false,
        };
        let mut reading = self.inner.spawn_reading(reader.run(control_rx));
        let mut last_sent = Instant::now();
        // Set once CloseStream went out: from then on only the reader works, until its deadline.
        let mut closing = false;
        let (read_end, heard) = loop {
            let keepalive_at = last_sent + KEEPALIVE_AFTER;
            let sent = tokio::select! {
                chunk = self.audio.recv(), if !closing => match chunk {
                    Some(mut chunk) => {
                        // Frames that queued up while the last send was in flight go out as
                        // one message: no delay when the socket keeps up, far fewer writes
                        // when it does not.
                        while chunk.len() < MAX_AUDIO_MESSAGE {
                            match self.audio.try_recv() {
                                Ok(more) => chunk.extend_from_slice(&more),
                                Err(_) => break,
                            }
                        }
                        sink.send(Message::binary(chunk))
                            .await
                            .map_err(|e| format!("sending audio failed: {e}"))
                    }
                    None => {
                        closing = true;
                        let _ = control.send(Reading::CloseBy(Instant::now() + CLOSE_GRACE));
                        sink.send(Message::text(r#"{"type":"CloseStream"}"#))
                            .await
                            .map_err(|e| format!("sending CloseStream failed: {e}"))
                    }
                },
                _ = tokio::time::sleep_until(keepalive_at), if !closing => {
                    sink.send(Message::text(r#"{"type":"KeepAlive"}"#))
                        .await
                        .map_err(|e| format!("sending KeepAlive failed: {e}"))
                }
                done = &mut reading => break self.take_reader(done),
            };
            match sent {
                Ok(()) => last_sent = Instant::now(),
                Err(reason) => {
                    // The reader may be mid-results: let it hand back what it assembled.
                    let _ = control.send(Reading::Stop);
                    let (_, heard) = self.take_reader(reading.await);
                    if closing {
                        return self.finish().await;
                    }
                    return Ended::Dropped { reason, heard };
                }
            }
        };
        match read_end {
            ReadEnd::Finished => {
                // The stream ended, or the grace ran out and we close it ourselves.
                let _ = sink.close().await;
                self.finish().await
            }
            ReadEnd::ConsumerGone => {
                let _ = sink.close().await;
                Ended::ConsumerGone
            }
            // The stream may end before the reader saw the CloseStream deadline.
            ReadEnd::Dropped(_) | ReadEnd::Stopped if closing => self.finish().await,
            ReadEnd::Dropped(reason) => Ended::Dropped { reason, heard },
            ReadEnd::Stopped => Ended::Dropped {
                reason: "reading Deepgram's results stopped".into(),
                heard,
            },
        }
    }

    /// Takes the assembler back from a finished reader; says how it ended and whether the
    /// server delivered anything.
    fn take_reader(
        &mut self,
        done: Result<(ReadEnd, TranscriptAssembler, bool), tokio::task::JoinError>,
    ) -> (ReadEnd, bool) {
        match done {
            Ok((end, assembler, heard)) => {
                self.assembler = assembler;
                (end, heard)
            }
            // It panicked or its runtime shut down: what it assembled is lost.
            Err(e) => (
                ReadEnd::Dropped(format!("reading Deepgram's results failed: {e}")),
                false,
            ),
        }
    }

    /// The stream is over: whatever final segments are pending form the last utterance.
    async fn finish(&mut self) -> Ended {
        if let Some(utterance) = self.assembler.flush() {
            let _ = self.events.send(utterance).await;
        }
        Ended::Finished
    }
}

/// What the audio side tells the `Reader`.
#[derive(Clone, Copy)]
enum Reading {
    Open,
    /// CloseStream went out: read the last results until the stream ends or this deadline.
    CloseBy(Instant),
    /// Sending failed: hand back what was assembled now.
    Stop,
}

/// How a `Reader` ended.
enum ReadEnd {
    /// The stream ended after CloseStream, or the grace ran out.
    Finished,
    ConsumerGone,
    /// The socket closed or broke.
    Dropped(String),
    /// Told to stop.
    Stopped,
}

/// The receiving half of one connection: Deepgram's results in, the call's events out.
struct Reader {
    stream: SplitStream<Socket>,
    events: mpsc::Sender<SttEvent>,
    assembler: TranscriptAssembler,
    call_sid: String,
    /// The server delivered something on this connection.
    heard: bool,
}

impl Reader {
    async fn run(
        mut self,
        mut control: watch::Receiver<Reading>,
    ) -> (ReadEnd, TranscriptAssembler, bool) {
        let end = self.read(&mut control).await;
        (end, self.assembler, self.heard)
    }

    async fn read(&mut self, control: &mut watch::Receiver<Reading>) -> ReadEnd {
        let mut close_by: Option<Instant> = None;
        loop {
            tokio::select! {
                changed = control.changed() => {
                    if changed.is_err() {
                        return ReadEnd::Stopped;
                    }
                    match *control.borrow_and_update() {
                        Reading::Open => {}
                        Reading::CloseBy(deadline) => close_by = Some(deadline),
                        Reading::Stop => return ReadEnd::Stopped,
                    }
                }
                _ = sleep_until_opt(close_by) => {
                    tracing::debug!(call_sid = %self.call_sid, "Deepgram did not close within the grace period");
                    return ReadEnd::Finished;
                }
                message = self.stream.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        let parsed = parse_message(text.as_str());
                        match &parsed {
                            ServerMessage::Error(description) => {
                                tracing::warn!(call_sid = %self.call_sid, %description, "Deepgram reported an error");
                            }
                            ServerMessage::Garbage => {
                                tracing::debug!(call_sid = %self.call_sid, "ignored a Deepgram frame that is not JSON");
                            }
                            ServerMessage::Results { .. } | ServerMessage::SpeechStarted | ServerMessage::UtteranceEnd => self.heard = true,
                            _ => {}
                        }
                        for event in self.assembler.on_message(parsed) {
                            if self.events.send(event).await.is_err() {
                                return ReadEnd::ConsumerGone;
                            }
                        }
                    }
                    // After CloseStream, tungstenite answers the close; drain until the end.
                    Some(Ok(Message::Close(_))) if close_by.is_some() => {}
                    Some(Ok(Message::Close(frame))) => return ReadEnd::Dropped(closed_reason(frame.as_ref())),
                    Some(Ok(_)) => {} // binary, ping, pong: nothing for us
                    Some(Err(_)) | None if close_by.is_some() => return ReadEnd::Finished,
                    Some(Err(error)) => return ReadEnd::Dropped(format!("the connection to Deepgram broke: {error}")),
                    None => return ReadEnd::Dropped("Deepgram closed the connection".into()),
                }
            }
        }
    }
}

impl Inner {
    /// Runs `task` where results are read: on `results_on`, or else where the session runs.
    fn spawn_reading<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.results_on {
            Some(results) => results.spawn(task),
            None => tokio::spawn(task),
        }
    }

    async fn connect(&self, call_sid: &str) -> Result<Socket, ConnectError> {
        let config = &self.config;
        let url = config.listen_url(call_sid).map_err(ConnectError::Fatal)?;
        let shown = shown_url(&url);
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| ConnectError::Fatal(format!("Deepgram URL {shown} is invalid: {e}")))?;
        if let Some(key) = &config.api_key {
            let value = HeaderValue::from_str(&format!("Token {key}")).map_err(|_| {
                ConnectError::Fatal("the Deepgram API key is not a valid header value".into())
            })?;
            request.headers_mut().insert(header::AUTHORIZATION, value);
        }
        let connector = if url.starts_with("wss://") {
            Connector::Rustls(self.tls_config().map_err(ConnectError::Fatal)?)
        } else {
            Connector::Plain
        };
        // A 4 KiB read buffer, not tungstenite's 128 KiB default: every read zero-fills the
        // buffer up to its capacity, which at 128 KiB was a fifth of the server's CPU and
        // ~128 KiB of RSS per call in a 500-call load test (Deepgram's results are a few
        // hundred bytes of JSON; a longer one still arrives, the buffer grows for it).
        let ws_config = tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .max_message_size(Some(MAX_SERVER_MESSAGE))
            .max_frame_size(Some(MAX_SERVER_MESSAGE));
        let attempt = tokio_tungstenite::connect_async_tls_with_config(
            request,
            Some(ws_config),
            true,
            Some(connector),
        );
        match tokio::time::timeout(config.connect_timeout, attempt).await {
            Err(_) => Err(ConnectError::Retryable(format!(
                "Deepgram at {shown} did not complete the handshake within {} ms",
                config.connect_timeout.as_millis()
            ))),
            Ok(Ok((socket, _response))) => Ok(socket),
            Ok(Err(error)) => Err(handshake_error(&shown, error)),
        }
    }

    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        self.tls
            .get_or_init(|| {
                // Same rule as the HTTP client: ring's provider unless one is installed already.
                if rustls::crypto::CryptoProvider::get_default().is_none() {
                    let _ = rustls::crypto::ring::default_provider().install_default();
                }
                use rustls_platform_verifier::ConfigVerifierExt;
                rustls::ClientConfig::with_platform_verifier()
                    .map(Arc::new)
                    .map_err(|e| format!("could not set up TLS for Deepgram: {e}"))
            })
            .clone()
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn backoff(attempt: u32) -> Duration {
    switchboard_actors::backoff::delay(BACKOFF_BASE, attempt, BACKOFF_MAX)
}

fn closed_reason(frame: Option<&CloseFrame>) -> String {
    match frame {
        Some(frame) if !frame.reason.is_empty() => format!(
            "Deepgram closed the stream ({}: {})",
            u16::from(frame.code),
            frame.reason.as_str()
        ),
        Some(frame) => format!("Deepgram closed the stream ({})", u16::from(frame.code)),
        None => "Deepgram closed the stream".to_owned(),
    }
}

/// A failed handshake: refused credentials and rejected requests are final, the rest is an
/// outage worth retrying.
fn handshake_error(shown_url: &str, error: tungstenite::Error) -> ConnectError {
    match error {
        tungstenite::Error::Http(response) => {
            let status = response.status();
            let excerpt = response
                .body()
                .as_deref()
                .map(body_excerpt)
                .unwrap_or_else(|| "(empty body)".to_owned());
            let message =
                format!("Deepgram at {shown_url} refused the stream: HTTP {status}: {excerpt}");
            match status.as_u16() {
                401 | 403 => ConnectError::Fatal(format!("{message} (check the API key)")),
                408 | 429 => ConnectError::Retryable(message),
                400..=499 => ConnectError::Fatal(format!(
                    "{message} (check the model, language and base_url)"
                )),
                _ => ConnectError::Retryable(message),
            }
        }
        tungstenite::Error::Url(error) => {
            ConnectError::Fatal(format!("Deepgram URL {shown_url} is unusable: {error}"))
        }
        tungstenite::Error::Tls(error) => {
            ConnectError::Retryable(format!("TLS with Deepgram at {shown_url} failed: {error}"))
        }
        error => ConnectError::Retryable(format!(
            "Deepgram at {shown_url} unreachable ({error}); check the base_url and that the server is up"
        )),
    }
}

/// Deepgram's `err_msg`, or the start of the body.
fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(4096)]);
    if let Ok(value) = serde_json::from_str::<Value>(&text)
        && value.is_object()
    {
        return error_text(&value);
    }
    let mut excerpt: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if excerpt.is_empty() {
        excerpt = "(empty body)".to_owned();
    }
    truncate_chars(&mut excerpt, 200);
    excerpt
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Results` message as Deepgram documents it, extra fields included.
    fn results(transcript: &str, is_final: bool, speech_final: bool) -> String {
        serde_json::json!({
            "type": "Results",
            "channel_index": [0, 1],
            "duration": 1.02,
            "start": 3.5,
            "is_final": is_final,
            "speech_final": speech_final,
            "from_finalize": false,
            "channel": {"alternatives": [
                {"transcript": transcript, "confidence": 0.98, "languages": ["en"],
                 "words": [{"word": "x", "start": 3.5, "end": 3.9, "confidence": 0.9,
                            "punctuated_word": "X", "speaker": 0}]},
                {"transcript": "the second alternative is ignored", "confidence": 0.4, "words": []}
            ]},
            "metadata": {"request_id": "8c8ebea9", "model_info": {"name": "nova-3", "version": "2024", "arch": "nova-3"},
                         "model_uuid": "1234", "extra": {"call_sid": "CA1"}},
            "new_field_from_the_future": {"x": 1}
        })
        .to_string()
    }

    fn feed(assembler: &mut TranscriptAssembler, frames: &[String]) -> Vec<SttEvent> {
        frames
            .iter()
            .flat_map(|frame| assembler.on_message(parse_message(frame)))
            .collect()
    }

    #[test]
    fn parses_every_documented_message() {
        assert_eq!(
            parse_message(&results(" I need to change ", false, false)),
            ServerMessage::Results {
                transcript: "I need to change".into(),
                is_final: false,
                speech_final: false
            }
        );
        assert_eq!(
            parse_message(r#"{"type":"SpeechStarted","channel":[0,1],"timestamp":9.54}"#),
            ServerMessage::SpeechStarted
        );
        assert_eq!(
            parse_message(r#"{"type":"UtteranceEnd","channel":[0,1],"last_word_end":2.395}"#),
            ServerMessage::UtteranceEnd
        );
        assert_eq!(
            parse_message(
                r#"{"type":"Metadata","transaction_key":"deprecated","request_id":"8c8e","sha256":"e3b0","created":"2024-08-29T22:37:55.202Z","duration":0.0,"channels":0}"#
            ),
            ServerMessage::Metadata
        );
        assert_eq!(
            parse_message(
                r#"{"type":"Error","variant":"SchemaError","description":"request schema is invalid","message":"invalid request"}"#
            ),
            ServerMessage::Error("SchemaError: request schema is invalid: invalid request".into())
        );
        assert_eq!(
            parse_message(r#"{"err_code":"INVALID_AUTH","err_msg":"Invalid credentials."}"#),
            ServerMessage::Error("INVALID_AUTH: Invalid credentials.".into())
        );
        assert_eq!(
            parse_message(r#"{"type":"TurnInfo","event":"Update"}"#),
            ServerMessage::Unknown("TurnInfo".into())
        );
    }

    #[test]
    fn garbage_and_odd_shapes_never_panic() {
        for frame in [
            "",
            "not json",
            "[1,2,3]",
            "null",
            "\"Results\"",
            "{\"type\":",
            r#"{"type":"Results"}"#,
            r#"{"type":"Results","channel":{"alternatives":[]}}"#,
            r#"{"type":"Results","channel":{"alternatives":[{"transcript":42}]},"is_final":"yes"}"#,
            r#"{"type":7}"#,
        ] {
            let message = parse_message(frame);
            let events = TranscriptAssembler::new().on_message(message);
            assert!(events.is_empty(), "{frame:?} gave {events:?}");
        }
        assert_eq!(parse_message("[1]"), ServerMessage::Garbage);
        assert_eq!(
            parse_message(r#"{"type":"Results"}"#),
            ServerMessage::Results {
                transcript: String::new(),
                is_final: false,
                speech_final: false
            }
        );
    }

    #[test]
    fn interim_results_are_partials_and_speech_final_ends_the_utterance() {
        let mut assembler = TranscriptAssembler::new();
        let events = feed(
            &mut assembler,
            &[
                r#"{"type":"SpeechStarted","channel":[0,1],"timestamp":0.2}"#.into(),
                results("I need", false, false),
                results("I need to change", false, false),
                results("I need to change my delivery address", true, true),
                // Deepgram may still send UtteranceEnd afterwards: no second utterance.
                r#"{"type":"UtteranceEnd","channel":[0,1],"last_word_end":2.3}"#.into(),
            ],
        );
        assert_eq!(
            events,
            vec![
                SttEvent::SpeechStarted,
                SttEvent::Partial("I need".into()),
                SttEvent::Partial("I need to change".into()),
                SttEvent::Utterance("I need to change my delivery address".into()),
            ]
        );
    }

    #[test]
    fn final_segments_accumulate_until_utterance_end() {
        let mut assembler = TranscriptAssembler::new();
        let events = feed(
            &mut assembler,
            &[
                results("my order", false, false),
                results("my order number", true, false),
                results("is", false, false),
                results("is twelve", true, false),
                results("", true, false), // empty final segment: skipped
                r#"{"type":"UtteranceEnd","channel":[0,1],"last_word_end":4.0}"#.into(),
                r#"{"type":"UtteranceEnd","channel":[0,1],"last_word_end":4.0}"#.into(),
            ],
        );
        assert_eq!(
            events,
            vec![
                SttEvent::Partial("my order".into()),
                SttEvent::Partial("my order number".into()),
                SttEvent::Partial("my order number is".into()),
                SttEvent::Partial("my order number is twelve".into()),
                SttEvent::Utterance("my order number is twelve".into()),
            ]
        );
    }

    #[test]
    fn empty_transcripts_produce_nothing() {
        let mut assembler = TranscriptAssembler::new();
        let events = feed(
            &mut assembler,
            &[
                results("", false, false),
                results("   ", true, true),
                r#"{"type":"UtteranceEnd","channel":[0,1],"last_word_end":1.0}"#.into(),
            ],
        );
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(assembler.flush(), None);
    }

    #[test]
    fn speech_final_joins_earlier_finals_and_flush_takes_the_rest() {
        let mut assembler = TranscriptAssembler::new();
        let events = feed(
            &mut assembler,
            &[
                results("hello", true, false),
                results("there", true, true),
                results("and then", true, false),
            ],
        );
        assert_eq!(
            events,
            vec![
                SttEvent::Partial("hello".into()),
                SttEvent::Utterance("hello there".into()),
                SttEvent::Partial("and then".into()),
            ]
        );
        assert_eq!(
            assembler.flush(),
            Some(SttEvent::Utterance("and then".into()))
        );
        assert_eq!(assembler.flush(), None);
    }

    #[test]
    fn listen_url_asks_for_phone_audio_and_maps_schemes() {
        let config = DeepgramConfig {
            base_url: "https://api.deepgram.com/".into(),
            language: Some("en-US".into()),
            ..DeepgramConfig::default()
        };
        let url = config.listen_url("CA123").expect("url");
        assert!(
            url.starts_with("wss://api.deepgram.com/v1/listen?"),
            "{url}"
        );
        for pair in [
            "model=nova-3",
            "encoding=mulaw",
            "sample_rate=8000",
            "channels=1",
            "interim_results=true",
            "vad_events=true",
            "utterance_end_ms=1000",
            "endpointing=300",
            "smart_format=true",
            "language=en-US",
            "extra=call_sid%3ACA123",
        ] {
            assert!(url.contains(pair), "{pair} missing in {url}");
        }
        let local = DeepgramConfig {
            base_url: "http://127.0.0.1:9/v1".into(),
            language: None,
            ..DeepgramConfig::default()
        };
        let url = local.listen_url("").expect("url");
        assert!(url.starts_with("ws://127.0.0.1:9/v1/listen?"), "{url}");
        assert!(
            !url.contains("language=") && !url.contains("extra="),
            "{url}"
        );
        let ws = DeepgramConfig {
            base_url: "wss://dg.internal".into(),
            ..DeepgramConfig::default()
        };
        assert!(
            ws.listen_url("x")
                .unwrap()
                .starts_with("wss://dg.internal/v1/listen?")
        );
        let bad = DeepgramConfig {
            base_url: "ftp://x".into(),
            ..DeepgramConfig::default()
        };
        assert!(bad.listen_url("x").is_err());
        assert!(
            DeepgramConfig {
                base_url: "api.deepgram.com".into(),
                ..DeepgramConfig::default()
            }
            .listen_url("x")
            .is_err()
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(3), Duration::from_millis(400));
        assert_eq!(backoff(30), BACKOFF_MAX);
    }

    #[test]
    fn handshake_refusals_are_classified() {
        let refused = |status: u16, body: &str| {
            let response = tungstenite::http::Response::builder()
                .status(status)
                .body(Some(body.as_bytes().to_vec()))
                .expect("response");
            handshake_error(
                "wss://dg/v1/listen?…",
                tungstenite::Error::Http(Box::new(response)),
            )
        };
        match refused(
            401,
            r#"{"err_code":"INVALID_AUTH","err_msg":"Invalid credentials."}"#,
        ) {
            ConnectError::Fatal(reason) => {
                assert!(
                    reason.contains("401") && reason.contains("Invalid credentials"),
                    "{reason}"
                );
                assert!(reason.contains("API key"), "{reason}");
            }
            ConnectError::Retryable(reason) => panic!("401 must be fatal: {reason}"),
        }
        assert!(matches!(refused(403, ""), ConnectError::Fatal(_)));
        assert!(
            matches!(refused(400, "bad encoding"), ConnectError::Fatal(r) if r.contains("bad encoding"))
        );
        assert!(matches!(refused(429, ""), ConnectError::Retryable(_)));
        assert!(
            matches!(refused(503, "<html> down </html>"), ConnectError::Retryable(r) if r.contains("503"))
        );
    }

    #[test]
    fn the_tls_setup_for_wss_builds_once_and_is_shared() {
        let stt = DeepgramStt::new(DeepgramConfig::default());
        let first = stt.inner.tls_config().expect("TLS config");
        let again = stt.clone().inner.tls_config().expect("TLS config");
        assert!(Arc::ptr_eq(&first, &again));
    }

    #[test]
    fn debug_never_shows_the_key() {
        let config = DeepgramConfig {
            api_key: Some("dg-secret-789".into()),
            ..DeepgramConfig::default()
        };
        assert!(!format!("{config:?}").contains("dg-secret"));
        let stt = DeepgramStt::new(config);
        assert!(!format!("{stt:?}").contains("dg-secret"));
    }
}
