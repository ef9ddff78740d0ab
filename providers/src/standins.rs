//! Local stand-ins for the LLM, TTS and STT vendors: one small HTTP server on loopback speaking
//! the same public protocols — OpenAI-compatible streaming chat completions and `/audio/speech`,
//! ElevenLabs-compatible `/v1/text-to-speech/{voice_id}/stream` (mu-law 8 kHz), and a
//! Deepgram-compatible live `/v1/listen` WebSocket ([`listen`]).
//!
//! They are what the demo, the end-to-end tests and the load tests talk to when no API key is
//! set, through the same production clients. Replies are deterministic (an echo of the caller,
//! or scripted text and tool calls); latencies are configurable; fault switches make the failures
//! the clients must survive (HTTP 500/429, a non-SSE body, a garbage event, no `[DONE]`, a stall
//! before the first token). Every request body is recorded, and streams whose client hung up
//! before the end are counted — that is how tests prove that cancellation closes the connection.
//! The chat stand-in answers a request whose last message is a `tool` result with text, so a
//! two-step tool round trip ends.
//! Never here: authentication, or anything a vendor's client would not see.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use serde_json::{Value, json};
use tokio::sync::watch;

mod listen;

pub use listen::SttRequest;

/// Request bodies kept for [`Standins::requests`]; older ones are dropped so a load test does
/// not grow memory without bound.
const MAX_RECORDED: usize = 4096;

/// Longest text `/audio/speech` accepts, as OpenAI documents.
const MAX_SPEECH_INPUT_CHARS: usize = 4096;

/// What the stand-in answers and how fast.
#[derive(Clone, Debug)]
pub struct StandinConfig {
    /// Time to first token: from the request to the first content (or tool-call) chunk.
    pub ttft: Duration,
    /// Between content chunks.
    pub token_delay: Duration,
    pub reply: ReplyScript,
    /// Synthetic speech lasts this many milliseconds per character of input.
    pub speech_ms_per_char: u32,
    /// Before the speech response is sent.
    pub speech_latency: Duration,
    /// Answer every speech request (OpenAI and ElevenLabs) with this status and the vendor's
    /// error body.
    pub speech_status: Option<u16>,
    pub fault: Fault,
    /// What the STT stand-in hears in audio that is not scripted caller speech
    /// (`switchboard_twilio::scripted`): these lines in turn, cycling; empty → `"hello"`.
    pub stt_script: Vec<String>,
    /// Close each STT session's first connection abruptly (no close frame) after this many
    /// utterances; later connections of the session (same `extra=call_sid:..`) are left alone.
    pub stt_drop_after_utterances: Option<u32>,
    /// Before each final STT result.
    pub stt_final_delay: Duration,
    /// Refuse every `/v1/listen` handshake with this status and a Deepgram-style error body
    /// (401 → `INVALID_AUTH`).
    pub stt_status: Option<u16>,
}

impl Default for StandinConfig {
    fn default() -> Self {
        StandinConfig {
            ttft: Duration::from_millis(150),
            token_delay: Duration::from_millis(20),
            reply: ReplyScript::default(),
            speech_ms_per_char: 60,
            speech_latency: Duration::from_millis(100),
            speech_status: None,
            fault: Fault::None,
            stt_script: Vec::new(),
            stt_drop_after_utterances: None,
            stt_final_delay: Duration::from_millis(50),
            stt_status: None,
        }
    }
}

impl StandinConfig {
    /// No artificial latency at all: for tests that only check content.
    pub fn instant() -> Self {
        StandinConfig {
            ttft: Duration::ZERO,
            token_delay: Duration::ZERO,
            speech_latency: Duration::ZERO,
            stt_final_delay: Duration::ZERO,
            ..Self::default()
        }
    }
}

/// What the chat stand-in says.
#[derive(Clone, Debug, Default)]
pub struct ReplyScript {
    /// Always this text. `None`: `"You said: <first 8 words of the last user message>. How else
    /// can I help?"`.
    pub fixed_text: Option<String>,
    /// Checked in order when the request's last message is the user's; the first whose trigger
    /// occurs in it (ignoring case) is answered with that tool call instead of text. A request
    /// ending with a `tool` message is answered `"Done. <start of the tool result>"`.
    pub tool_calls: Vec<ScriptedToolCall>,
}

#[derive(Clone, Debug)]
pub struct ScriptedToolCall {
    pub trigger: String,
    pub name: String,
    /// Sent verbatim in fragments: may be deliberately invalid JSON, for tests.
    pub arguments: String,
}

/// Failures the chat endpoint can be told to produce (speech has its own latency knob).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    #[default]
    None,
    /// Answer every chat request with this status and an OpenAI-style error body.
    Status(u16),
    /// Answer 200 with an HTML page, as a misconfigured proxy would.
    NotSse,
    /// Replace the event after the first content chunk with invalid JSON.
    GarbageEvent,
    /// Send the first half of the reply, then close the stream without `[DONE]`.
    NoDone,
    /// Send headers and the role chunk, then nothing until the client gives up.
    StallBeforeFirstToken,
    /// Like `StallBeforeFirstToken` for the first `n` chat requests this server receives, then
    /// answer normally: a slow start that a retry recovers from.
    StallFirstRequests(u64),
}

/// A running stand-in server.
pub struct Standins {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    server: Option<tokio::task::JoinHandle<()>>,
}

struct Shared {
    config: Mutex<StandinConfig>,
    requests: Mutex<VecDeque<Value>>,
    speech_requests: Mutex<VecDeque<Value>>,
    elevenlabs_requests: Mutex<VecDeque<Value>>,
    stt_requests: Mutex<VecDeque<SttRequest>>,
    /// `type` of every text message STT clients sent (`KeepAlive`, `CloseStream`, ...).
    stt_control_messages: Mutex<VecDeque<String>>,
    /// STT sessions (by `extra=call_sid:..`) that have connected at least once.
    stt_sessions: Mutex<std::collections::HashSet<String>>,
    stt_connections: AtomicU64,
    stt_refused: AtomicU64,
    stt_dropped: AtomicU64,
    stt_closed_streams: AtomicU64,
    stt_script_cursor: AtomicU64,
    closed_early: AtomicU64,
    completions: AtomicU64,
    /// Chat requests received, for `StallFirstRequests`.
    chat_requests: AtomicU64,
    /// TCP connections accepted: shows whether clients reuse connections.
    connections: Arc<AtomicU64>,
    shutdown: watch::Receiver<bool>,
}

/// Starts the stand-ins on `bind` (use port 0 for a free port).
pub async fn spawn_standins(bind: SocketAddr, config: StandinConfig) -> std::io::Result<Standins> {
    let listener = tokio::net::TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        config: Mutex::new(config),
        requests: Mutex::new(VecDeque::new()),
        speech_requests: Mutex::new(VecDeque::new()),
        elevenlabs_requests: Mutex::new(VecDeque::new()),
        stt_requests: Mutex::new(VecDeque::new()),
        stt_control_messages: Mutex::new(VecDeque::new()),
        stt_sessions: Mutex::new(std::collections::HashSet::new()),
        stt_connections: AtomicU64::new(0),
        stt_refused: AtomicU64::new(0),
        stt_dropped: AtomicU64::new(0),
        stt_closed_streams: AtomicU64::new(0),
        stt_script_cursor: AtomicU64::new(0),
        closed_early: AtomicU64::new(0),
        completions: AtomicU64::new(0),
        chat_requests: AtomicU64::new(0),
        connections: Arc::new(AtomicU64::new(0)),
        shutdown: shutdown_rx.clone(),
    });
    let app = Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/audio/speech", post(speech))
        .route(
            "/v1/text-to-speech/{voice_id}/stream",
            post(elevenlabs_speech),
        )
        .route("/v1/text-to-speech/{voice_id}", post(elevenlabs_speech))
        .route("/v1/listen", get(listen::listen))
        .with_state(shared.clone());
    let accepted = shared.connections.clone();
    let listener = listener.tap_io(move |tcp| {
        accepted.fetch_add(1, Ordering::SeqCst);
        // Tokens are tiny writes; Nagle would hold them back like a slow model.
        let _ = tcp.set_nodelay(true);
    });
    let mut signal = shutdown_rx;
    let server = tokio::spawn(async move {
        let stop = async move {
            // Ends on `shutdown()` and when the `Standins` is dropped (sender gone).
            let _ = signal.wait_for(|stop| *stop).await;
        };
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::warn!(%error, "stand-in server stopped with an error");
        }
    });
    tracing::info!(%addr, "stand-ins (chat, speech, live STT) listening");
    Ok(Standins {
        addr,
        shared,
        shutdown,
        server: Some(server),
    })
}

impl Standins {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The OpenAI-style base URL, e.g. `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The vendor root, e.g. `http://127.0.0.1:PORT`: the `base_url` for
    /// [`crate::deepgram::DeepgramConfig`] and [`crate::elevenlabs::ElevenLabsConfig`].
    pub fn root_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Chat request bodies received, oldest first (the last 4096).
    pub fn requests(&self) -> Vec<Value> {
        lock(&self.shared.requests).iter().cloned().collect()
    }

    /// Speech request bodies received, oldest first (the last 4096).
    pub fn speech_requests(&self) -> Vec<Value> {
        lock(&self.shared.speech_requests).iter().cloned().collect()
    }

    /// ElevenLabs requests received, oldest first (the last 4096): `{"voice_id",
    /// "output_format", "api_key" (the `xi-api-key` header or null), "body"}`.
    pub fn elevenlabs_requests(&self) -> Vec<Value> {
        lock(&self.shared.elevenlabs_requests)
            .iter()
            .cloned()
            .collect()
    }

    /// `/v1/listen` handshakes received (accepted or refused), oldest first (the last 4096).
    pub fn stt_requests(&self) -> Vec<SttRequest> {
        lock(&self.shared.stt_requests).iter().cloned().collect()
    }

    /// The query of every `/v1/listen` handshake, oldest first.
    pub fn stt_queries(&self) -> Vec<Vec<(String, String)>> {
        lock(&self.shared.stt_requests)
            .iter()
            .map(|r| r.query.clone())
            .collect()
    }

    /// STT WebSocket connections accepted so far.
    pub fn stt_connections(&self) -> u64 {
        self.shared.stt_connections.load(Ordering::SeqCst)
    }

    /// `/v1/listen` handshakes refused (bad query or `stt_status`).
    pub fn stt_refused(&self) -> u64 {
        self.shared.stt_refused.load(Ordering::SeqCst)
    }

    /// STT connections closed abruptly by `stt_drop_after_utterances`.
    pub fn stt_dropped(&self) -> u64 {
        self.shared.stt_dropped.load(Ordering::SeqCst)
    }

    /// STT streams ended by the client's `CloseStream` (flushed, `Metadata` sent, closed).
    pub fn stt_closed_streams(&self) -> u64 {
        self.shared.stt_closed_streams.load(Ordering::SeqCst)
    }

    /// The `type` of every text message STT clients sent, oldest first (the last 4096).
    pub fn stt_control_messages(&self) -> Vec<String> {
        lock(&self.shared.stt_control_messages)
            .iter()
            .cloned()
            .collect()
    }

    /// Streams whose client disconnected before the stream's end.
    pub fn closed_early(&self) -> u64 {
        self.shared.closed_early.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Streams delivered to their end.
    pub fn completed(&self) -> u64 {
        self.shared.completions.load(Ordering::SeqCst)
    }

    /// Changes the behaviour for requests that arrive from now on.
    pub fn set_config(&self, config: StandinConfig) {
        *lock(&self.shared.config) = config;
    }

    pub fn set_fault(&self, fault: Fault) {
        lock(&self.shared.config).fault = fault;
    }

    /// Stops accepting, ends stalled streams, and waits (briefly) for open responses to finish.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(mut server) = self.server.take()
            && tokio::time::timeout(Duration::from_secs(2), &mut server)
                .await
                .is_err()
        {
            server.abort();
        }
    }
}

impl std::fmt::Debug for Standins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Standins")
            .field("addr", &self.addr)
            .field("closed_early", &self.closed_early())
            .field("completed", &self.completed())
            .finish_non_exhaustive()
    }
}

impl Drop for Standins {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// A poisoned lock only means a handler panicked mid-update of a test record; the data is
/// still the best we have.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn record(list: &Mutex<VecDeque<Value>>, body: Value) {
    record_bounded(list, body);
}

fn record_bounded<T>(list: &Mutex<VecDeque<T>>, item: T) {
    let mut list = lock(list);
    if list.len() == MAX_RECORDED {
        list.pop_front();
    }
    list.push_back(item);
}

fn openai_error(status: StatusCode, message: &str, kind: &str) -> Response {
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": null}});
    (status, axum::Json(body)).into_response()
}

// === chat completions ===

/// What one completion will say.
enum Answer {
    Text(String),
    ToolCall(ScriptedToolCall),
}

/// The request's last message when it is a tool result: the text to answer with.
fn tool_result_answer(body: &Value) -> Option<String> {
    let last = body.get("messages")?.as_array()?.last()?;
    if last.get("role").and_then(Value::as_str) != Some("tool") {
        return None;
    }
    // Content is a string, or (newer clients) an array of `{"type":"text","text":..}` parts.
    let content = match last.get("content") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    };
    let excerpt: String = content.chars().take(80).collect();
    Some(format!("Done. {excerpt}").trim_end().to_owned())
}

/// Whether the request ends with the user speaking (only then may a scripted tool call fire).
fn ends_with_user(body: &Value) -> bool {
    body.get("messages")
        .and_then(Value::as_array)
        .and_then(|messages| messages.last())
        .and_then(|m| m.get("role"))
        .and_then(Value::as_str)
        == Some("user")
}

fn last_user_message(body: &Value) -> String {
    body.get("messages")
        .and_then(Value::as_array)
        .and_then(|messages| {
            messages
                .iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        })
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

fn choose_answer(script: &ReplyScript, last_user: &str) -> Answer {
    let lowered = last_user.to_lowercase();
    if let Some(call) = script
        .tool_calls
        .iter()
        .find(|c| !c.trigger.is_empty() && lowered.contains(&c.trigger.to_lowercase()))
    {
        return Answer::ToolCall(call.clone());
    }
    if let Some(text) = &script.fixed_text {
        return Answer::Text(text.clone());
    }
    let words: Vec<&str> = last_user.split_whitespace().take(8).collect();
    if words.is_empty() {
        Answer::Text("Hello! How can I help?".to_owned())
    } else {
        Answer::Text(format!(
            "You said: {}. How else can I help?",
            words.join(" ")
        ))
    }
}

/// One word per piece, the space leading as in real tokenizers: "You", " said:", ...
fn word_pieces(text: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    for (i, word) in text.split(' ').enumerate() {
        if i == 0 {
            if !word.is_empty() {
                pieces.push(word.to_owned());
            }
        } else {
            pieces.push(format!(" {word}"));
        }
    }
    pieces
}

/// Up to 8 characters per piece, split on character boundaries.
fn argument_pieces(arguments: &str) -> Vec<String> {
    let chars: Vec<char> = arguments.chars().collect();
    chars.chunks(8).map(|c| c.iter().collect()).collect()
}

async fn chat_completions(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(e) => {
            return openai_error(
                StatusCode::BAD_REQUEST,
                &format!("request body is not JSON: {e}"),
                "invalid_request_error",
            );
        }
    };
    record(&shared.requests, request.clone());
    let number = shared.chat_requests.fetch_add(1, Ordering::SeqCst) + 1;
    let mut config = lock(&shared.config).clone();
    if let Fault::StallFirstRequests(n) = config.fault {
        config.fault = if number <= n {
            Fault::StallBeforeFirstToken
        } else {
            Fault::None
        };
    }
    match config.fault {
        Fault::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let kind = if code == 429 {
                "rate_limit_exceeded"
            } else {
                "server_error"
            };
            let mut response = openai_error(status, "stand-in fault injected", kind);
            if code == 429 {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            }
            return response;
        }
        Fault::NotSse => {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body>Gateway says hi</body></html>",
            )
                .into_response();
        }
        _ => {}
    }
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("standin")
        .to_owned();
    let answer = match tool_result_answer(&request) {
        Some(text) => Answer::Text(text),
        None if ends_with_user(&request) => {
            choose_answer(&config.reply, &last_user_message(&request))
        }
        None => {
            // Only a user turn may trigger a scripted tool call.
            let script = ReplyScript {
                tool_calls: Vec::new(),
                ..config.reply.clone()
            };
            choose_answer(&script, &last_user_message(&request))
        }
    };
    let streaming = request.get("stream").and_then(Value::as_bool) == Some(true);
    if !streaming {
        return non_streaming(&model, answer);
    }
    let include_usage = request
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let steps = stream_script(&config, &model, answer, include_usage);
    let body = Body::from_stream(sse_body(shared, steps));
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/event-stream; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

const COMPLETION_ID: &str = "chatcmpl-standin";
const CREATED: u64 = 1_700_000_000;

fn usage_json(answer_len: usize) -> Value {
    // Deterministic pseudo-counts: a token is about four characters.
    let completion = (answer_len as u64).div_ceil(4);
    json!({"prompt_tokens": 20, "completion_tokens": completion, "total_tokens": 20 + completion})
}

fn non_streaming(model: &str, answer: Answer) -> Response {
    let (message, finish, len) = match answer {
        Answer::Text(text) => {
            let len = text.len();
            (json!({"role": "assistant", "content": text}), "stop", len)
        }
        Answer::ToolCall(call) => (
            json!({"role": "assistant", "content": null, "tool_calls": [{
                "id": "call_standin_0", "type": "function",
                "function": {"name": call.name, "arguments": call.arguments}
            }]}),
            "tool_calls",
            call.arguments.len(),
        ),
    };
    axum::Json(json!({
        "id": COMPLETION_ID,
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": usage_json(len),
    }))
    .into_response()
}

/// One step of a streamed answer.
enum StreamStep {
    Send {
        delay: Duration,
        bytes: Bytes,
    },
    /// Wait until the client hangs up or the server shuts down.
    Stall,
}

fn chunk_event(model: &str, delta: Value, finish_reason: Option<&str>) -> Bytes {
    let chunk = json!({
        "id": COMPLETION_ID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "system_fingerprint": "fp_standin",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
    });
    Bytes::from(format!("data: {chunk}\n\n"))
}

fn stream_script(
    config: &StandinConfig,
    model: &str,
    answer: Answer,
    include_usage: bool,
) -> Vec<StreamStep> {
    let send = |delay: Duration, bytes: Bytes| StreamStep::Send { delay, bytes };
    let mut steps = vec![send(
        Duration::ZERO,
        chunk_event(model, json!({"role": "assistant", "content": ""}), None),
    )];
    if config.fault == Fault::StallBeforeFirstToken {
        steps.push(StreamStep::Stall);
        return steps;
    }
    let (mut content, finish, len) = match answer {
        Answer::Text(text) => {
            let pieces = word_pieces(&text)
                .into_iter()
                .map(|piece| chunk_event(model, json!({"content": piece}), None))
                .collect::<Vec<_>>();
            (pieces, "stop", text.len())
        }
        Answer::ToolCall(call) => {
            let mut pieces = vec![chunk_event(
                model,
                json!({"tool_calls": [{"index": 0, "id": "call_standin_0", "type": "function",
                    "function": {"name": call.name, "arguments": ""}}]}),
                None,
            )];
            for piece in argument_pieces(&call.arguments) {
                pieces.push(chunk_event(
                    model,
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                    None,
                ));
            }
            (pieces, "tool_calls", call.arguments.len())
        }
    };
    if config.fault == Fault::GarbageEvent && content.len() >= 2 {
        content[1] = Bytes::from_static(b"data: {\"choices\": [{\"delta\": {\"content\": \n\n");
    }
    if config.fault == Fault::NoDone {
        let keep = content.len().div_ceil(2);
        content.truncate(keep);
    }
    for (i, bytes) in content.into_iter().enumerate() {
        let delay = if i == 0 {
            config.ttft
        } else {
            config.token_delay
        };
        steps.push(send(delay, bytes));
    }
    if config.fault == Fault::NoDone {
        return steps;
    }
    steps.push(send(
        config.token_delay,
        chunk_event(model, json!({}), Some(finish)),
    ));
    if include_usage {
        let usage = json!({
            "id": COMPLETION_ID, "object": "chat.completion.chunk", "created": CREATED,
            "model": model, "choices": [], "usage": usage_json(len),
        });
        steps.push(send(
            Duration::ZERO,
            Bytes::from(format!("data: {usage}\n\n")),
        ));
    }
    steps.push(send(
        Duration::ZERO,
        Bytes::from_static(b"data: [DONE]\n\n"),
    ));
    steps
}

/// Counts the stream as closed early when it is dropped before its last step: hyper drops a
/// response body when the client's connection goes away.
struct EndGuard {
    shared: Arc<Shared>,
    finished: bool,
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        if self.finished {
            self.shared.completions.fetch_add(1, Ordering::SeqCst);
        } else {
            self.shared.closed_early.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn sse_body(
    shared: Arc<Shared>,
    steps: Vec<StreamStep>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let shutdown = shared.shutdown.clone();
    let guard = EndGuard {
        shared,
        finished: false,
    };
    let state = (VecDeque::from(steps), guard);
    futures::stream::unfold(state, move |(mut steps, mut guard)| {
        let mut shutdown = shutdown.clone();
        async move {
            match steps.pop_front() {
                Some(StreamStep::Send { delay, bytes }) => {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    Some((Ok(bytes), (steps, guard)))
                }
                Some(StreamStep::Stall) => {
                    let _ = shutdown.wait_for(|stop| *stop).await;
                    None // the guard drops unfinished: the client never got an end
                }
                None => {
                    guard.finished = true;
                    drop(guard); // counts the completion now, not whenever hyper frees the body
                    None
                }
            }
        }
    })
}

// === speech ===

async fn speech(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(e) => {
            return openai_error(
                StatusCode::BAD_REQUEST,
                &format!("request body is not JSON: {e}"),
                "invalid_request_error",
            );
        }
    };
    record(&shared.speech_requests, request.clone());
    let config = lock(&shared.config).clone();
    if let Some(code) = config.speech_status {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return openai_error(status, "stand-in fault injected", "server_error");
    }
    let Some(input) = request.get("input").and_then(Value::as_str) else {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "`input` (the text to speak) is required",
            "invalid_request_error",
        );
    };
    // OpenAI's own limit; it also bounds the audio a load test can make us allocate.
    if input.chars().count() > MAX_SPEECH_INPUT_CHARS {
        return openai_error(
            StatusCode::BAD_REQUEST,
            &format!("`input` is longer than {MAX_SPEECH_INPUT_CHARS} characters"),
            "invalid_request_error",
        );
    }
    let format = request
        .get("response_format")
        .and_then(Value::as_str)
        .unwrap_or("mp3");
    if format != "pcm" {
        return openai_error(
            StatusCode::BAD_REQUEST,
            &format!("the stand-in only produces response_format \"pcm\", not {format:?}"),
            "invalid_request_error",
        );
    }
    if !config.speech_latency.is_zero() {
        tokio::time::sleep(config.speech_latency).await;
    }
    let duration_ms = input.chars().count() as u64 * u64::from(config.speech_ms_per_char);
    let pcm = synthetic_pcm(duration_ms);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "audio/pcm")],
        Body::from(pcm),
    )
        .into_response()
}

// === ElevenLabs speech ===

/// ElevenLabs' error shape: `{"detail": {"status", "message"}}`.
fn elevenlabs_error(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = json!({"detail": {"status": kind, "message": message}});
    (status, axum::Json(body)).into_response()
}

#[derive(serde::Deserialize)]
struct ElevenLabsQuery {
    output_format: Option<String>,
}

async fn elevenlabs_speech(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(voice_id): axum::extract::Path<String>,
    axum::extract::Query(query): axum::extract::Query<ElevenLabsQuery>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let api_key = headers
        .get("xi-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    record(
        &shared.elevenlabs_requests,
        json!({
            "voice_id": voice_id,
            "output_format": query.output_format,
            "api_key": api_key,
            "body": request,
        }),
    );
    let config = lock(&shared.config).clone();
    if !config.speech_latency.is_zero() {
        tokio::time::sleep(config.speech_latency).await;
    }
    if let Some(code) = config.speech_status {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return match code {
            401 => elevenlabs_error(status, "invalid_api_key", "Invalid API key"),
            _ => elevenlabs_error(status, "standin_fault", "stand-in fault injected"),
        };
    }
    let Some(text) = request.get("text").and_then(Value::as_str) else {
        let body = json!({"detail": [{"loc": ["body", "text"], "msg": "field required", "type": "value_error.missing"}]});
        return (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response();
    };
    // ElevenLabs caps a request's text too; it also bounds what a load test can make us allocate.
    if text.chars().count() > MAX_SPEECH_INPUT_CHARS {
        return elevenlabs_error(
            StatusCode::BAD_REQUEST,
            "text_too_long",
            &format!("text is longer than {MAX_SPEECH_INPUT_CHARS} characters"),
        );
    }
    let format = query.output_format.as_deref().unwrap_or("mp3_44100_128");
    if format != "ulaw_8000" {
        return elevenlabs_error(
            StatusCode::BAD_REQUEST,
            "invalid_output_format",
            &format!("the stand-in only produces output_format ulaw_8000, not {format:?}"),
        );
    }
    let duration_ms = text.chars().count() as u64 * u64::from(config.speech_ms_per_char);
    let audio = synthetic_mulaw(duration_ms);
    // Streamed in 100 ms pieces, as the vendor streams audio while it is generated.
    let pieces: Vec<Result<Bytes, std::io::Error>> = audio
        .chunks(800)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "audio/basic")],
        Body::from_stream(futures::stream::iter(pieces)),
    )
        .into_response()
}

/// The 200 Hz tone of [`synthetic_pcm`] at 8 kHz, G.711 mu-law, `duration_ms` long.
pub fn synthetic_mulaw(duration_ms: u64) -> Vec<u8> {
    let samples: Vec<i16> = (0..duration_ms as usize * 8)
        .map(|n| {
            let t = n as f32 / 8_000.0;
            (2000.0 * (2.0 * std::f32::consts::PI * 200.0 * t).sin()) as i16
        })
        .collect();
    let mut mulaw = Vec::with_capacity(samples.len());
    switchboard_twilio::audio::encode_mulaw(&samples, &mut mulaw);
    mulaw
}

/// A quiet 200 Hz tone, 24 kHz 16-bit little-endian mono, `duration_ms` long.
pub fn synthetic_pcm(duration_ms: u64) -> Vec<u8> {
    // 200 Hz at 24 kHz repeats every 120 samples: one period, computed once, copied out (load
    // tests synthesize thousands of seconds of this beside the server they measure).
    static PERIOD: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
        (0..120)
            .flat_map(|n| {
                let t = n as f32 / 24_000.0;
                let sample = (2000.0 * (2.0 * std::f32::consts::PI * 200.0 * t).sin()) as i16;
                sample.to_le_bytes()
            })
            .collect()
    });
    let bytes = duration_ms as usize * 24 * 2;
    let mut pcm = Vec::with_capacity(bytes);
    while pcm.len() < bytes {
        let n = (bytes - pcm.len()).min(PERIOD.len());
        pcm.extend_from_slice(&PERIOD[..n]);
    }
    pcm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_reply_uses_first_eight_words() {
        let answer = choose_answer(
            &ReplyScript::default(),
            "one two three four five six seven eight nine ten",
        );
        match answer {
            Answer::Text(text) => assert_eq!(
                text,
                "You said: one two three four five six seven eight. How else can I help?"
            ),
            Answer::ToolCall(_) => panic!("no tools scripted"),
        }
    }

    #[test]
    fn trigger_word_selects_tool_call_ignoring_case() {
        let script = ReplyScript {
            fixed_text: Some("fixed".into()),
            tool_calls: vec![ScriptedToolCall {
                trigger: "weather".into(),
                name: "get_weather".into(),
                arguments: "{\"city\":\"Paris\"}".into(),
            }],
        };
        assert!(matches!(
            choose_answer(&script, "What's the WEATHER like?"),
            Answer::ToolCall(c) if c.name == "get_weather"
        ));
        assert!(matches!(choose_answer(&script, "hello"), Answer::Text(t) if t == "fixed"));
    }

    #[test]
    fn pieces_rejoin_exactly() {
        let text = "You said: héllo  wörld. How else?";
        assert_eq!(word_pieces(text).concat(), text);
        let args = "{\"city\":\"Zürich\",\"days\":3}";
        assert_eq!(argument_pieces(args).concat(), args);
    }

    #[test]
    fn a_tool_result_is_answered_with_text_and_only_a_user_turn_triggers_tools() {
        let request = json!({"messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "What's the weather?"},
            {"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 degrees in Paris"}
        ]});
        assert_eq!(
            tool_result_answer(&request).as_deref(),
            Some("Done. Sunny, 21 degrees in Paris")
        );
        assert!(!ends_with_user(&request));
        let long = json!({"messages": [{"role": "tool", "tool_call_id": "c", "content": "x".repeat(200)}]});
        assert_eq!(
            tool_result_answer(&long).unwrap().len(),
            "Done. ".len() + 80
        );
        let user_last = json!({"messages": [{"role": "user", "content": "hi"}]});
        assert_eq!(tool_result_answer(&user_last), None);
        assert!(ends_with_user(&user_last));
        assert_eq!(tool_result_answer(&json!({"messages": "nope"})), None);
        assert_eq!(
            tool_result_answer(&json!({"messages": [{"role": "tool", "content": null}]}))
                .as_deref(),
            Some("Done.")
        );
    }

    #[test]
    fn synthetic_mulaw_length_follows_duration() {
        assert_eq!(synthetic_mulaw(1000).len(), 8000);
        assert!(synthetic_mulaw(0).is_empty());
    }

    #[test]
    fn synthetic_speech_length_follows_duration() {
        assert_eq!(synthetic_pcm(1000).len(), 48_000);
        assert!(synthetic_pcm(0).is_empty());
    }
}
