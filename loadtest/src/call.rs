//! One simulated call: what it should do ([`CallPlan`]), what happens while it runs
//! ([`CallProgress`]), and what it measured ([`CallOutcome`]). [`simulate_call`] posts the voice
//! webhook and hands over to the Media Streams or ConversationRelay caller.
//!
//! The caller is polite by default: it speaks a turn once the agent has been quiet for
//! [`QUIET`] (audio played out and every mark echoed, or the relay reply "spoken"), and a
//! barge-in turn starts once the agent has been audible for [`BARGE_AFTER`] while it is still
//! talking. Per-turn latency is measured from the end of the caller's turn (Media Streams: the
//! last speech frame sent; ConversationRelay: the `prompt` sent) to the first agent audio frame
//! (or `text` token) after it.

use std::fmt;
use std::time::Duration;

use serde_json::Value;
use switchboard_twilio::signature;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// How long the agent must have been silent before the caller says its next turn.
pub const QUIET: Duration = Duration::from_millis(500);
/// How long a barge-in turn lets the agent talk before talking over it.
pub const BARGE_AFTER: Duration = Duration::from_millis(400);
/// The server's default `stt.endpointing_ms`.
pub const DEFAULT_ENDPOINTING: Duration = Duration::from_millis(300);
/// Longest wait for the first agent audio (or text) after the call connected.
pub const GREETING_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest wait for the server to close the socket after the caller hung up.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(15);

pub(crate) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The server under test and the secrets to talk to it.
#[derive(Clone, Debug)]
pub struct Target {
    base_url: String,
    public_url: String,
    auth_token: Option<String>,
    operator_token: Option<String>,
    http: reqwest::Client,
}

impl Target {
    /// The server at `base_url` (`http://host:port`), unsigned requests, open operator API.
    pub fn new(base_url: impl Into<String>) -> Target {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let base_url = base_url.into().trim_end_matches('/').to_owned();
        Target {
            public_url: base_url.clone(),
            base_url,
            auth_token: None,
            operator_token: None,
            http: reqwest::Client::builder()
                .tcp_nodelay(true)
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
        }
    }

    /// The URL Twilio knows the server by (`server.public_url`), which Twilio signs; defaults to
    /// the base URL.
    pub fn with_public_url(mut self, url: impl Into<String>) -> Target {
        self.public_url = url.into().trim_end_matches('/').to_owned();
        self
    }

    /// Sign the webhook and the WebSocket upgrade with this Twilio auth token (empty = unsigned).
    pub fn with_twilio_auth_token(mut self, token: impl Into<String>) -> Target {
        self.auth_token = Some(token.into()).filter(|t| !t.is_empty());
        self
    }

    /// Bearer token for `/api/v1/*` (`operator.token`; empty = none).
    pub fn with_operator_token(mut self, token: impl Into<String>) -> Target {
        self.operator_token = Some(token.into()).filter(|t| !t.is_empty());
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A request to the operator API, with the bearer token when one is set.
    pub(crate) fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self
            .http
            .request(method, format!("{}{path}", self.base_url));
        match &self.operator_token {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }

    /// `GET /api/v1/calls/{sid}`: `Ok(None)` when the server knows no such call.
    pub async fn call_detail(&self, sid: &str) -> Result<Option<Value>, String> {
        let resp = self
            .api(reqwest::Method::GET, &format!("/api/v1/calls/{sid}"))
            .send()
            .await
            .map_err(|e| format!("GET /api/v1/calls/{sid}: {e}"))?;
        match resp.status().as_u16() {
            404 => Ok(None),
            200 => resp
                .json()
                .await
                .map(Some)
                .map_err(|e| format!("GET /api/v1/calls/{sid}: {e}")),
            other => Err(format!("GET /api/v1/calls/{sid} answered {other}")),
        }
    }

    /// `POST /api/v1/calls/{sid}/crash`; the HTTP status (202 = crashing).
    pub async fn crash(&self, sid: &str) -> Result<u16, String> {
        self.api(reqwest::Method::POST, &format!("/api/v1/calls/{sid}/crash"))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| format!("POST /api/v1/calls/{sid}/crash: {e}"))
    }
}

/// Which of Twilio's two WebSocket protocols the call uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Media Streams: audio both ways; the server does speech to text and text to speech.
    Media,
    /// ConversationRelay: Twilio does speech both ways; text travels on the socket.
    Relay,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Media => "media",
            Transport::Relay => "relay",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Transport::Media => "/twilio/media",
            Transport::Relay => "/twilio/relay",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing the caller says.
#[derive(Clone, Debug)]
pub struct Turn {
    pub text: String,
    /// Start talking while the agent is still speaking (its previous reply, or the greeting for
    /// the first turn), instead of waiting for it to finish. Media Streams expects a `clear`.
    pub barge_in: bool,
}

/// What one simulated call does.
#[derive(Clone, Debug)]
pub struct CallPlan {
    /// `CA` + 32 hex digits, unique per call.
    pub call_sid: String,
    pub transport: Transport,
    /// The caller's number (`From`).
    pub from: String,
    pub turns: Vec<Turn>,
    /// Crash the call's actor (`POST /api/v1/calls/{sid}/crash`, needs `chaos.enabled`) right
    /// after the caller finishes this turn (0-based), while the agent works on its reply.
    pub crash_after_turn: Option<usize>,
    /// Stay on the line, silent, until the call has lasted this long (after the last reply).
    pub min_duration: Duration,
    /// Longest wait for the agent's reply to one turn.
    pub reply_timeout: Duration,
    /// Media Streams: the quiet audio after a turn that the server's recognizer needs before it
    /// ends the utterance (the server's `stt.endpointing_ms`). The reply cannot start before the
    /// caller has sent that much silence, so [`TurnOutcome::after_endpoint`] is measured from the
    /// frame that completes it.
    pub endpointing: Duration,
    /// Media Streams: after each agent turn, read what the agent said from the operator API
    /// (`CallProgress::AgentSaid`). One request per turn, so off for load runs. Relay calls get
    /// the text from the socket anyway.
    pub agent_text: bool,
}

impl CallPlan {
    pub fn new(call_sid: impl Into<String>, transport: Transport, from: impl Into<String>) -> Self {
        CallPlan {
            call_sid: call_sid.into(),
            transport,
            from: from.into(),
            turns: Vec::new(),
            crash_after_turn: None,
            min_duration: Duration::ZERO,
            reply_timeout: Duration::from_secs(20),
            endpointing: DEFAULT_ENDPOINTING,
            agent_text: false,
        }
    }

    /// Adds a turn said after the agent has finished.
    pub fn say(mut self, text: impl Into<String>) -> Self {
        self.turns.push(Turn {
            text: text.into(),
            barge_in: false,
        });
        self
    }

    /// Adds a turn said over the agent.
    pub fn barge_in(mut self, text: impl Into<String>) -> Self {
        self.turns.push(Turn {
            text: text.into(),
            barge_in: true,
        });
        self
    }
}

/// What happens during a call, in order, for a progress display.
#[derive(Clone, Debug, PartialEq)]
pub enum CallProgress {
    /// The WebSocket is up. `twiml` is the transport the webhook's TwiML named (`None`: neither);
    /// when it differs from the plan's, the plan's endpoint was used anyway.
    Connected {
        transport: Transport,
        twiml: Option<Transport>,
    },
    /// The first agent audio frame (relay: text token) arrived, this long after `start`/`setup`.
    GreetingAudio { after: Duration },
    /// The caller started saying turn `turn`.
    Said {
        turn: usize,
        text: String,
        barge_in: bool,
    },
    /// The caller started talking over the agent, who had been audible this long.
    BargedIn { turn: usize, agent_heard: Duration },
    /// Media Streams: the server sent `clear` (it stopped the agent's audio).
    Cleared,
    /// The first agent audio (or text) after the caller finished turn `turn`.
    AgentReplied { turn: usize, latency: Duration },
    /// A whole agent line: the reply to `turn`, or (`None`) the greeting and anything before
    /// the first turn.
    AgentSaid { turn: Option<usize>, text: String },
    /// The chaos crash was requested; `status` is the HTTP answer (202 = crashing).
    CrashRequested { turn: usize, status: Option<u16> },
    /// The caller hung up and the server closed the call's socket.
    HungUp,
}

impl fmt::Display for CallProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
        match self {
            CallProgress::Connected { transport, twiml } => match twiml {
                Some(t) if t != transport => write!(
                    f,
                    "connected ({transport}; the TwiML named {t}, connected to {transport} anyway)"
                ),
                _ => write!(f, "connected ({transport})"),
            },
            CallProgress::GreetingAudio { after } => {
                write!(f, "greeting audio received after {:.1} ms", ms(after))
            }
            CallProgress::Said { text, barge_in, .. } => {
                let over = if *barge_in { " (over the agent)" } else { "" };
                write!(f, "said{over}: {text}")
            }
            CallProgress::BargedIn { agent_heard, .. } => {
                write!(f, "barged in after {:.0} ms of the agent", ms(agent_heard))
            }
            CallProgress::Cleared => f.write_str("the server cleared the agent's audio"),
            CallProgress::AgentReplied { latency, .. } => {
                write!(f, "agent answered after {:.1} ms", ms(latency))
            }
            CallProgress::AgentSaid { text, .. } => write!(f, "agent said: {text}"),
            CallProgress::CrashRequested { status, .. } => match status {
                Some(202) => f.write_str("crash requested (the call's actor is failing)"),
                Some(s) => write!(f, "crash requested, refused with HTTP {s}"),
                None => f.write_str("crash requested, the request failed"),
            },
            CallProgress::HungUp => f.write_str("hung up"),
        }
    }
}

/// Why a call failed. `kind` is a stable label for counting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallError {
    pub kind: &'static str,
    pub detail: String,
}

impl CallError {
    pub(crate) fn new(kind: &'static str, detail: impl Into<String>) -> CallError {
        CallError {
            kind,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

/// What happened to one caller turn.
#[derive(Clone, Debug)]
pub struct TurnOutcome {
    pub text: String,
    /// The plan asked for a barge-in.
    pub barge_in: bool,
    /// The caller did talk over the agent (a barge-in turn whose agent stopped first is said
    /// normally).
    pub talked_over_agent: bool,
    /// The caller finished saying it (media: last frame sent; relay: `prompt` sent).
    pub said: bool,
    /// Media Streams: a `clear` arrived while this turn was said or awaited its reply.
    pub clear_received: bool,
    /// End of the caller's turn → first agent audio/text after it.
    pub latency: Option<Duration>,
    /// Media Streams: the caller frame that completed [`CallPlan::endpointing`] of silence after
    /// the turn was sent → the first agent audio after it. This is the server's share of the
    /// turn (recognizer, model, speech, sockets): unlike `latency` less the endpointing window,
    /// it does not count a load generator that sent that silence late.
    pub after_endpoint: Option<Duration>,
    /// When that reply arrived.
    pub replied_at: Option<Instant>,
    /// The agent's reply (relay: from the socket; media: with `CallPlan::agent_text`).
    pub agent_text: Option<String>,
}

/// Everything one call measured.
#[derive(Clone, Debug)]
pub struct CallOutcome {
    pub call_sid: String,
    pub transport: Transport,
    pub from: String,
    /// `None`: the call ran its whole plan and the server closed it cleanly.
    pub error: Option<CallError>,
    /// The WebSocket was opened (so the server knows the call).
    pub connected: bool,
    pub started_at: Instant,
    pub duration: Duration,
    /// `start`/`setup` sent → first agent audio frame (relay: text token).
    pub first_audio: Option<Duration>,
    pub first_audio_at: Option<Instant>,
    pub turns: Vec<TurnOutcome>,
    /// HTTP status of the chaos crash request, if one was made.
    pub crash_status: Option<u16>,
    /// From `GET /api/v1/calls/{sid}` just before hanging up (None: not readable).
    pub restarts: Option<u64>,
    /// The customer context's `ready_after_ms` from the same request (None: the field is absent).
    pub context_ready_ms: Option<f64>,
    /// `context.status` (`found`, `not_found`, `failed: ...`).
    pub context_status: Option<String>,
    pub customer_name: Option<String>,
    /// The TwiML named the other transport.
    pub twiml_mismatch: bool,
    pub frames_sent: u64,
    /// Caller frames sent more than 10 ms after their 20 ms slot (the load generator fell behind).
    pub late_frames: u64,
    /// Agent audio received, in 20 ms frames (media; the server may send several per message),
    /// or relay text messages.
    pub audio_frames_received: u64,
    pub marks_echoed: u64,
    pub clears_received: u64,
}

impl CallOutcome {
    fn new(plan: &CallPlan) -> CallOutcome {
        CallOutcome {
            call_sid: plan.call_sid.clone(),
            transport: plan.transport,
            from: plan.from.clone(),
            error: None,
            connected: false,
            started_at: Instant::now(),
            duration: Duration::ZERO,
            first_audio: None,
            first_audio_at: None,
            turns: plan
                .turns
                .iter()
                .map(|t| TurnOutcome {
                    text: t.text.clone(),
                    barge_in: t.barge_in,
                    talked_over_agent: false,
                    said: false,
                    clear_received: false,
                    latency: None,
                    after_endpoint: None,
                    replied_at: None,
                    agent_text: None,
                })
                .collect(),
            crash_status: None,
            restarts: None,
            context_ready_ms: None,
            context_status: None,
            customer_name: None,
            twiml_mismatch: false,
            frames_sent: 0,
            late_frames: 0,
            audio_frames_received: 0,
            marks_echoed: 0,
            clears_received: 0,
        }
    }

    pub fn completed(&self) -> bool {
        self.error.is_none()
    }

    /// Turns that got an agent reply.
    pub fn replied_turns(&self) -> usize {
        self.turns.iter().filter(|t| t.latency.is_some()).count()
    }
}

/// Places one call as Twilio would and plays the caller in `plan`, reporting progress to
/// `events` as it goes. Never panics on anything the server does; every failure ends up in
/// [`CallOutcome::error`].
pub async fn simulate_call(
    target: &Target,
    plan: CallPlan,
    mut events: impl FnMut(CallProgress),
) -> CallOutcome {
    let mut out = CallOutcome::new(&plan);
    let result = async {
        let twiml = webhook(target, &plan).await?;
        let twiml_transport = twiml_transport(&twiml);
        let path = match (twiml_transport, twiml_url_path(&twiml)) {
            (Some(t), Some(path)) if t == plan.transport => path,
            _ => plan.transport.path().to_owned(),
        };
        out.twiml_mismatch = twiml_transport.is_some_and(|t| t != plan.transport);
        let ws = connect(target, &path).await?;
        out.connected = true;
        events(CallProgress::Connected {
            transport: plan.transport,
            twiml: twiml_transport,
        });
        match plan.transport {
            Transport::Media => crate::media::run(target, &plan, ws, &mut events, &mut out).await,
            Transport::Relay => crate::relay::run(target, &plan, ws, &mut events, &mut out).await,
        }
    }
    .await;
    out.error = result.err();
    out.duration = out.started_at.elapsed();
    out
}

/// The voice webhook, signed as Twilio signs it; returns the TwiML.
async fn webhook(target: &Target, plan: &CallPlan) -> Result<String, CallError> {
    let fields = [
        ("CallSid", plan.call_sid.as_str()),
        ("AccountSid", "AC00000000000000000000000000000000"),
        ("From", plan.from.as_str()),
        ("To", "+14155550100"),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
        ("ApiVersion", "2010-04-01"),
    ];
    let body: String = fields
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let mut req = target
        .http()
        .post(format!("{}/twilio/voice", target.base_url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some(token) = &target.auth_token {
        let url = format!("{}/twilio/voice", target.public_url);
        req = req.header(
            "X-Twilio-Signature",
            signature::compute(token, &url, &fields),
        );
    }
    let resp = req
        .send()
        .await
        .map_err(|e| CallError::new("webhook", e.to_string()))?;
    let status = resp.status();
    let text = resp
        .text()
        .await
        .map_err(|e| CallError::new("webhook", e.to_string()))?;
    if !status.is_success() {
        return Err(CallError::new(
            "webhook",
            format!("answered {status}: {}", text.trim()),
        ));
    }
    Ok(text)
}

/// Which transport the TwiML connects the call to.
pub(crate) fn twiml_transport(twiml: &str) -> Option<Transport> {
    if twiml.contains("<ConversationRelay") {
        Some(Transport::Relay)
    } else if twiml.contains("<Stream") {
        Some(Transport::Media)
    } else {
        None
    }
}

/// The path of the WebSocket URL in the TwiML (`wss://host/twilio/media` → `/twilio/media`).
pub(crate) fn twiml_url_path(twiml: &str) -> Option<String> {
    let start = twiml.find(" url=\"")? + 6;
    let url = &twiml[start..start + twiml[start..].find('"')?];
    let url = url.replace("&amp;", "&");
    let after_scheme = url.split_once("://")?.1;
    let path = &after_scheme[after_scheme.find('/')?..];
    Some(path.to_owned())
}

/// Opens the call's WebSocket on the base URL's host, signing the upgrade as Twilio does.
async fn connect(target: &Target, path: &str) -> Result<Ws, CallError> {
    let ws_base = target.base_url.replacen("http", "ws", 1);
    let mut request = format!("{ws_base}{path}")
        .into_client_request()
        .map_err(|e| CallError::new("connect", e.to_string()))?;
    if let Some(token) = &target.auth_token {
        let host = target
            .base_url
            .split_once("://")
            .map_or("", |(_, rest)| rest.split('/').next().unwrap_or(rest));
        let signed = signature::upgrade_url(&target.public_url, Some(host), path)
            .map_err(|e| CallError::new("connect", e.to_string()))?;
        let sig = signature::compute(token, &signed, &[] as &[(&str, &str)]);
        let value = sig
            .parse()
            .map_err(|_| CallError::new("connect", "signature is not a header value"))?;
        request.headers_mut().insert("x-twilio-signature", value);
    }
    // tungstenite zero-fills its read buffer up to capacity on every read: 4 KiB instead of the
    // 128 KiB default keeps thousands of simulated callers from spending their CPU on memset.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4 * 1024);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true)
        .await
        .map_err(|e| CallError::new("connect", e.to_string()))?;
    Ok(ws)
}

/// Reads the call's live record just before hanging up: restarts, context status and the
/// context's `ready_after_ms` (looked up as `context.ready_after_ms`, then top-level
/// `context_ready_after_ms`; absent on servers that do not report it).
pub(crate) async fn read_live_details(target: &Target, out: &mut CallOutcome) {
    let Ok(Some(v)) = target.call_detail(&out.call_sid).await else {
        return;
    };
    out.restarts = v["restarts"].as_u64();
    out.context_status = v["context"]["status"]
        .as_str()
        .or_else(|| v["context"].as_str())
        .map(str::to_owned);
    out.context_ready_ms = v["context"]["ready_after_ms"]
        .as_f64()
        .or_else(|| v["context_ready_after_ms"].as_f64());
    out.customer_name = v["customer_name"].as_str().map(str::to_owned);
}

/// Agent lines of the live transcript from index `seen` on (Media Streams, `agent_text`).
pub(crate) async fn agent_lines(target: &Target, sid: &str) -> Vec<String> {
    let Ok(Some(v)) = target.call_detail(sid).await else {
        return Vec::new();
    };
    v["transcript"]
        .as_array()
        .map(|lines| {
            lines
                .iter()
                .filter(|l| l["role"] == "agent")
                .filter_map(|l| l["text"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_transport_and_path_from_twiml() {
        let media = r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="wss://calls.example.com/twilio/media" statusCallback="https://calls.example.com/twilio/stream-status"><Parameter name="CallSid" value="CA1"/></Stream></Connect></Response>"#;
        assert_eq!(twiml_transport(media), Some(Transport::Media));
        assert_eq!(twiml_url_path(media).as_deref(), Some("/twilio/media"));
        let relay = r#"<Response><Connect><ConversationRelay url="wss://h:8443/base/twilio/relay" welcomeGreeting="Hi"></ConversationRelay></Connect></Response>"#;
        assert_eq!(twiml_transport(relay), Some(Transport::Relay));
        assert_eq!(twiml_url_path(relay).as_deref(), Some("/base/twilio/relay"));
        assert_eq!(twiml_transport("<Response><Say>x</Say></Response>"), None);
    }
}
