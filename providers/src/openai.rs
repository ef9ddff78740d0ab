//! The LLM client for any OpenAI-compatible `/chat/completions` server (OpenAI, vLLM,
//! llama.cpp server, Ollama, Groq, the stand-ins), streaming.
//!
//! Owns the request, the deadlines and the stream's lifetime: one pooled `reqwest::Client`; a
//! first-token deadline with one retry while nothing was forwarded yet; an overall deadline; and
//! cancellation by drop — the returned stream owns the response body, so dropping it (barge-in)
//! closes the HTTP stream at once. Framing and chunk meaning live in [`crate::sse`] and
//! [`crate::chat`]. Never logs the API key or message contents.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use serde_json::{Value, json};
use switchboard_actors::domain::{LlmRequest, ToolCallRequest};
use switchboard_actors::ports::{LlmClient, LlmPiece, PortError};
use tokio::time::{Instant, timeout_at};

use crate::chat::{ChunkError, ChunkParser, Delta, ToolCallAssembler};
use crate::http::{build_client, join_url, redacted, shown_url, status_error, transport_error};
use crate::sse::SseDecoder;

/// How to reach one OpenAI-compatible chat server.
#[derive(Clone)]
pub struct OpenAiChatConfig {
    /// E.g. `https://api.openai.com/v1`, `http://127.0.0.1:8000/v1`; `/chat/completions` is added.
    pub base_url: String,
    /// Sent as `Authorization: Bearer`; local servers usually need none.
    pub api_key: Option<String>,
    pub model: String,
    /// From sending the request to the first text piece (or tool-call fragment). Missed once:
    /// the request is retried; missed twice: `Timeout`.
    pub first_token_timeout: Duration,
    /// The whole answer, retries included.
    pub overall_timeout: Duration,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
}

impl fmt::Debug for OpenAiChatConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiChatConfig")
            .field("base_url", &shown_url(&self.base_url))
            .field("api_key", &format_args!("{}", redacted(&self.api_key)))
            .field("model", &self.model)
            .field("first_token_timeout", &self.first_token_timeout)
            .field("overall_timeout", &self.overall_timeout)
            .field("max_tokens", &self.max_tokens)
            .field("temperature", &self.temperature)
            .finish()
    }
}

/// Streaming chat client. Cheap to clone; clones share the connection pool.
#[derive(Clone, Debug)]
pub struct OpenAiChat {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    config: OpenAiChatConfig,
    url: String,
    /// `url` without credentials or query, for messages and logs.
    shown_url: String,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl OpenAiChat {
    /// A client with its own connection pool.
    pub fn new(config: OpenAiChatConfig) -> Result<Self, PortError> {
        Ok(Self::with_client(config, build_client()?))
    }

    /// A client sharing `client`'s connection pool (e.g. with [`crate::speech::OpenAiSpeech`]).
    pub fn with_client(config: OpenAiChatConfig, client: reqwest::Client) -> Self {
        let url = join_url(&config.base_url, "chat/completions");
        let shown_url = shown_url(&url);
        OpenAiChat {
            inner: Arc::new(Inner {
                client,
                config,
                url,
                shown_url,
            }),
        }
    }

    pub fn config(&self) -> &OpenAiChatConfig {
        &self.inner.config
    }

    /// The JSON body sent for `request`.
    pub fn request_body(&self, request: &LlmRequest) -> Value {
        let config = &self.inner.config;
        let mut body = json!({
            "model": config.model,
            "messages": request.messages,
            "stream": true,
            "stream_options": { "include_usage": true },
        });
        if let Some(max_tokens) = config.max_tokens {
            body["max_tokens"] = json!(max_tokens);
        }
        if let Some(temperature) = config.temperature {
            body["temperature"] = json!(temperature);
        }
        body
    }

    /// Every delta of the answer, ending with [`Delta::Done`], or an error as the last item.
    /// Dropping the stream aborts the HTTP request.
    pub fn stream_events(
        &self,
        request: LlmRequest,
    ) -> BoxStream<'static, Result<Delta, PortError>> {
        self.stream_events_with_tools(request, &[])
    }

    /// Like [`OpenAiChat::stream_events`], offering `tools` (OpenAI's `tools` array entries,
    /// `{"type": "function", "function": {"name", "description", "parameters"}}`). Assemble the
    /// fragments with [`crate::chat::ToolCallAssembler`] and check each call with
    /// [`crate::chat::ToolCall::validate`].
    pub fn stream_events_with_tools(
        &self,
        request: LlmRequest,
        tools: &[Value],
    ) -> BoxStream<'static, Result<Delta, PortError>> {
        let mut body = self.request_body(&request);
        if !tools.is_empty() {
            body["tools"] = Value::Array(tools.to_vec());
        }
        let state = EventStream {
            inner: self.inner.clone(),
            body,
            overall_deadline: Instant::now() + self.inner.config.overall_timeout,
            retried: false,
            attempt: None,
            pending: VecDeque::new(),
            finished: false,
        };
        stream::unfold(state, |mut state| async move {
            let item = state.next_item().await?;
            Some((item, state))
        })
        .boxed()
    }
}

impl LlmClient for OpenAiChat {
    /// The text pieces of the answer. Tool-call fragments are not text and are skipped here;
    /// callers that offer tools use [`OpenAiChat::stream_events`].
    fn stream(&self, request: LlmRequest) -> BoxStream<'static, Result<String, PortError>> {
        self.stream_events(request)
            .filter_map(|item| async move {
                match item {
                    Ok(Delta::Text(text)) => Some(Ok(text)),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                }
            })
            .boxed()
    }

    /// Text pieces, and each tool call once its fragments are complete (at the end of the
    /// stream, when the server says `[DONE]`). The tools of [`switchboard_actors::tools`] are
    /// offered when `request.tools` is set. A call the server sent without an id gets a unique
    /// one, so a later round's `call_0` is never mistaken for one that already ran.
    fn stream_with_tools(
        &self,
        request: LlmRequest,
    ) -> BoxStream<'static, Result<LlmPiece, PortError>> {
        let tools: &[Value] = if request.tools {
            switchboard_actors::tools::definitions()
        } else {
            &[]
        };
        let events = self.stream_events_with_tools(request, tools);
        struct Calls {
            assembler: ToolCallAssembler,
            /// Every fragment index seen (the assembler finishes calls in index order).
            indices: BTreeSet<u32>,
            with_id: HashSet<u32>,
        }
        let calls = Calls {
            assembler: ToolCallAssembler::new(),
            indices: BTreeSet::new(),
            with_id: HashSet::new(),
        };
        stream::unfold(
            (
                events,
                Some(calls),
                VecDeque::<Result<LlmPiece, PortError>>::new(),
            ),
            |(mut events, mut calls, mut ready)| async move {
                loop {
                    if let Some(item) = ready.pop_front() {
                        return Some((item, (events, calls, ready)));
                    }
                    let c = calls.as_mut()?;
                    match events.next().await {
                        Some(Ok(Delta::Text(text))) => ready.push_back(Ok(LlmPiece::Text(text))),
                        Some(Ok(Delta::ToolCallFragment(fragment))) => {
                            c.indices.insert(fragment.index);
                            if fragment.id.as_deref().is_some_and(|id| !id.is_empty()) {
                                c.with_id.insert(fragment.index);
                            }
                            c.assembler.push(&fragment);
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            calls = None;
                            ready.push_back(Err(e));
                        }
                        None => {
                            let Calls {
                                assembler,
                                indices,
                                with_id,
                            } = calls.take()?;
                            match assembler.finish() {
                                Ok(done) => {
                                    for (index, mut call) in indices.into_iter().zip(done) {
                                        if !with_id.contains(&index) {
                                            call.id = unique_call_id();
                                        }
                                        ready.push_back(Ok(LlmPiece::ToolCall(ToolCallRequest {
                                            id: call.id,
                                            name: call.name,
                                            arguments: call.arguments,
                                        })));
                                    }
                                }
                                Err(e) => ready.push_back(Err(PortError::rejected(e.to_string()))),
                            }
                        }
                    }
                }
            },
        )
        .boxed()
    }
}

/// An id for a tool call the server did not name: unique in this process.
fn unique_call_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("call_sb{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

// === impl EventStream ===

/// The state behind one `stream_events` call, driven by `stream::unfold`.
struct EventStream {
    inner: Arc<Inner>,
    body: Value,
    overall_deadline: Instant,
    /// The one retry after a missed first-token deadline was used.
    retried: bool,
    attempt: Option<Attempt>,
    /// Deltas parsed but not yet handed out (one network read can hold several events).
    pending: VecDeque<Delta>,
    /// `[DONE]` or an error was handed out: nothing follows.
    finished: bool,
}

/// One HTTP request in flight. Dropping it drops the body stream, which closes the connection.
struct Attempt {
    body: Option<BoxStream<'static, reqwest::Result<Bytes>>>,
    sse: SseDecoder,
    parser: ChunkParser,
    first_token_deadline: Instant,
    /// A text piece, tool-call fragment or finish reason arrived: the model is answering.
    answering: bool,
}

enum Step {
    Deltas(Vec<Delta>),
    Failed(PortError),
    FirstTokenMissed,
}

impl EventStream {
    async fn next_item(&mut self) -> Option<Result<Delta, PortError>> {
        loop {
            if let Some(delta) = self.pending.pop_front() {
                if delta == Delta::Done {
                    self.drain_for_reuse();
                    self.finish();
                }
                return Some(Ok(delta));
            }
            if self.finished {
                return None;
            }
            match self.step().await {
                Step::Deltas(deltas) => self.pending.extend(deltas),
                Step::Failed(error) => {
                    self.finish();
                    return Some(Err(error));
                }
                Step::FirstTokenMissed if !self.retried => {
                    // Nothing was forwarded (the deadline only runs until the first token), so
                    // a second request cannot duplicate words the caller already heard.
                    self.retried = true;
                    self.attempt = None;
                    tracing::warn!(
                        url = %self.inner.shown_url,
                        timeout_ms = self.inner.config.first_token_timeout.as_millis() as u64,
                        "LLM first token late; retrying once"
                    );
                }
                Step::FirstTokenMissed => {
                    self.finish();
                    return Some(Err(PortError::timeout(format!(
                        "LLM at {} sent no first token within {} ms, twice; the model server \
                         is overloaded or stuck",
                        self.inner.shown_url,
                        self.inner.config.first_token_timeout.as_millis()
                    ))));
                }
            }
        }
    }

    /// After `[DONE]` the body usually has only its terminating chunk left, but that may arrive
    /// in a later packet. Reading it in the background lets the connection go back to the pool
    /// (the next turn skips a handshake) without making the caller wait for it.
    fn drain_for_reuse(&mut self) {
        let Some(mut body) = self.attempt.as_mut().and_then(|a| a.body.take()) else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let drain = async {
                    let mut left = 64 * 1024usize;
                    while let Some(Ok(chunk)) = body.next().await {
                        left = left.saturating_sub(chunk.len());
                        if left == 0 {
                            break; // a server that keeps talking after [DONE] loses its connection
                        }
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
            });
        }
    }

    fn finish(&mut self) {
        self.finished = true;
        self.pending.clear();
        // Drop the body now rather than with the stream: the connection goes back to the pool
        // (after `[DONE]`) or is closed (after an error) without waiting for the caller.
        self.attempt = None;
    }

    /// Waits for the next piece of progress under whichever deadline applies.
    async fn step(&mut self) -> Step {
        let overall_deadline = self.overall_deadline;
        let attempt = match &mut self.attempt {
            Some(attempt) => attempt,
            None => self.attempt.insert(Attempt {
                body: None,
                sse: SseDecoder::new(),
                parser: ChunkParser::new(),
                first_token_deadline: Instant::now() + self.inner.config.first_token_timeout,
                answering: false,
            }),
        };
        let deadline = if attempt.answering {
            overall_deadline
        } else {
            attempt.first_token_deadline.min(overall_deadline)
        };
        match timeout_at(deadline, attempt.advance(&self.inner, &self.body)).await {
            Ok(step) => step,
            Err(_) if Instant::now() >= overall_deadline => {
                Step::Failed(PortError::timeout(format!(
                    "LLM at {} did not finish within the overall deadline of {} ms",
                    self.inner.shown_url,
                    self.inner.config.overall_timeout.as_millis()
                )))
            }
            Err(_) => Step::FirstTokenMissed,
        }
    }
}

impl Attempt {
    /// Sends the request if not sent yet, then reads until at least one delta or an end.
    async fn advance(&mut self, inner: &Inner, body: &Value) -> Step {
        let stream = match &mut self.body {
            Some(stream) => stream,
            None => match connect(inner, body).await {
                Ok(stream) => self.body.insert(stream),
                Err(error) => return Step::Failed(error),
            },
        };
        loop {
            let chunk = match stream.next().await {
                Some(Ok(chunk)) => chunk,
                Some(Err(error)) => {
                    return Step::Failed(PortError::unavailable(format!(
                        "LLM stream from {} broke off: {error}",
                        inner.shown_url
                    )));
                }
                None => {
                    return Step::Failed(PortError::unavailable(format!(
                        "LLM stream from {} ended without [DONE]; the server closed the \
                         connection mid-answer",
                        inner.shown_url
                    )));
                }
            };
            let events = match self.sse.feed(&chunk) {
                Ok(events) => events,
                Err(error) => return Step::Failed(PortError::unavailable(error.to_string())),
            };
            let mut deltas = Vec::new();
            for event in events {
                match self.parser.parse(&event.data) {
                    Ok(parsed) => deltas.extend(parsed),
                    Err(error @ ChunkError::Api { .. }) => {
                        return Step::Failed(PortError::unavailable(error.to_string()));
                    }
                    Err(error @ ChunkError::InvalidJson { .. }) => {
                        return Step::Failed(PortError::unavailable(format!(
                            "{error}; is {} an OpenAI-compatible server?",
                            inner.shown_url
                        )));
                    }
                }
                if self.parser.is_done() {
                    break; // anything after [DONE] is not part of the answer
                }
            }
            if deltas.iter().any(|d| {
                matches!(
                    d,
                    Delta::Text(_) | Delta::ToolCallFragment(_) | Delta::Finish(_) | Delta::Done
                )
            }) {
                self.answering = true;
            }
            if !deltas.is_empty() {
                return Step::Deltas(deltas);
            }
        }
    }
}

/// Sends the request and checks that a stream of events is coming back.
async fn connect(
    inner: &Inner,
    body: &Value,
) -> Result<BoxStream<'static, reqwest::Result<Bytes>>, PortError> {
    let mut request = inner
        .client
        .post(&inner.url)
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .json(body);
    if let Some(key) = &inner.config.api_key {
        request = request.bearer_auth(key);
    }
    let response = request
        .send()
        .await
        .map_err(|e| transport_error("LLM", &inner.shown_url, e))?;
    if !response.status().is_success() {
        return Err(status_error("LLM", response).await);
    }
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if !content_type.starts_with("text/event-stream") {
        let shown = if content_type.is_empty() {
            "no content type".to_owned()
        } else {
            content_type
        };
        let excerpt = crate::http::body_excerpt(response).await;
        return Err(PortError::unavailable(format!(
            "LLM at {} answered with {shown} instead of text/event-stream: {excerpt}; the \
             server may not support streaming",
            inner.shown_url
        )));
    }
    Ok(response.bytes_stream().boxed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_key() {
        let config = OpenAiChatConfig {
            // A proxy URL with credentials in it is just as secret.
            base_url: "https://bob:sk-secret-in-url@proxy.example/v1".into(),
            api_key: Some("sk-secret-123".into()),
            model: "gpt-4o-mini".into(),
            first_token_timeout: Duration::from_secs(2),
            overall_timeout: Duration::from_secs(20),
            max_tokens: Some(200),
            temperature: None,
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("sk-secret"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
        let client = OpenAiChat::new(config).expect("client");
        let shown = format!("{client:?}");
        assert!(!shown.contains("sk-secret"), "{shown}");
    }

    #[test]
    fn body_has_streaming_fields_and_optional_ones_only_when_set() {
        let config = OpenAiChatConfig {
            base_url: "http://127.0.0.1:1/v1/".into(),
            api_key: None,
            model: "m".into(),
            first_token_timeout: Duration::from_secs(1),
            overall_timeout: Duration::from_secs(1),
            max_tokens: None,
            temperature: Some(0.5),
        };
        let client = OpenAiChat::new(config).expect("client");
        assert_eq!(client.inner.url, "http://127.0.0.1:1/v1/chat/completions");
        let body = client.request_body(&LlmRequest::plain(vec![
            switchboard_actors::domain::ChatMessage::new("user", "hi"),
        ]));
        assert_eq!(body["stream"], json!(true));
        assert_eq!(body["stream_options"]["include_usage"], json!(true));
        assert_eq!(body["messages"][0]["role"], json!("user"));
        assert_eq!(body["temperature"], json!(0.5));
        assert!(body.get("max_tokens").is_none());
    }
}
