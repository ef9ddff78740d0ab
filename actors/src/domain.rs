//! Domain values shared by the machine, the actors and the edges: call identity, caller, customer
//! context, chat messages. Plain data: no I/O, no clocks.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch (UTC). The machine never reads a clock: time is passed in.
pub type Millis = u64;

/// Twilio's call sid (`CA` + 32 hex). Kept opaque: older calls and other vendors use other shapes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CallSid(pub String);

impl fmt::Display for CallSid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for CallSid {
    fn from(s: &str) -> Self {
        CallSid(s.to_owned())
    }
}

/// Which Twilio socket carries the call: audio frames (we do speech) or text (Twilio does speech).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    MediaStream,
    Relay,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::MediaStream => "media",
            Transport::Relay => "relay",
        }
    }
}

/// Who is calling. `e164` is set only when the raw caller id is a real phone number; `anonymous`,
/// `client:alice` and garbage stay opaque and never match a customer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    pub raw: String,
    pub e164: Option<String>,
}

impl Caller {
    /// The caller id with the middle digits hidden, safe for logs and dashboards
    /// (`+5517999991292` → `+55179****92`).
    pub fn masked(&self) -> String {
        mask_phone(&self.raw)
    }
}

/// Hide all but the first six and last two characters of a phone-like string.
pub fn mask_phone(raw: &str) -> String {
    let chars: Vec<char> = raw.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len().min(4));
    }
    let head: String = chars[..6].iter().collect();
    let tail: String = chars[chars.len() - 2..].iter().collect();
    format!("{head}****{tail}")
}

/// Everything the edge knows when the call starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallStart {
    pub call_sid: CallSid,
    pub stream_sid: Option<String>,
    pub caller: Caller,
    pub called: Option<String>,
    pub direction: String,
    pub transport: Transport,
    pub custom_parameters: BTreeMap<String, String>,
}

impl CallStart {
    /// A name handed over by the call's own parameters (outbound calls to a known lead).
    pub fn parameter_name(&self) -> Option<&str> {
        ["CustomerName", "customer_name", "LeadName", "Name"]
            .iter()
            .find_map(|k| self.custom_parameters.get(*k))
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
    }
}

/// A customer's context as loaded by the CRM prefetch. `partial` is true when some of the
/// dependent queries failed or missed the deadline; `missing` names them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerContext {
    pub customer_id: i64,
    pub name: Option<String>,
    pub phone: String,
    pub status: String,
    pub facts: Vec<String>,
    pub last_call: Option<LastCall>,
    pub pending_tasks: Vec<TaskSummary>,
    pub recent_summaries: Vec<String>,
    pub partial: bool,
    pub missing: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastCall {
    pub summary: Option<String>,
    pub outcome: Option<String>,
    pub started_at_ms: Millis,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSummary {
    pub title: String,
    pub due_at_ms: Option<Millis>,
    pub priority: i32,
}

/// The result of a prefetch, as delivered to the call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContextResult {
    Found(Box<CustomerContext>),
    NotFound,
}

/// Where the call stands with its customer context; shown to operators.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", content = "detail", rename_all = "snake_case")]
pub enum ContextStatus {
    /// The caller id is not a phone number: nothing to look up.
    NotApplicable,
    Pending,
    Found {
        partial: bool,
    },
    NotFound,
    TimedOut,
    Failed(String),
}

impl ContextStatus {
    pub fn label(&self) -> String {
        match self {
            ContextStatus::NotApplicable => "not applicable".into(),
            ContextStatus::Pending => "pending".into(),
            ContextStatus::Found { partial: false } => "found".into(),
            ContextStatus::Found { partial: true } => "found (partial)".into(),
            ContextStatus::NotFound => "not found".into(),
            ContextStatus::TimedOut => "timed out".into(),
            ContextStatus::Failed(reason) => format!("failed: {reason}"),
        }
    }
}

/// Which source gave the caller's name (recorded on the call).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NameSource {
    CallParameters,
    Crm,
    Captured,
}

impl NameSource {
    pub fn as_str(self) -> &'static str {
        match self {
            NameSource::CallParameters => "call_parameters",
            NameSource::Crm => "crm",
            NameSource::Captured => "captured",
        }
    }
}

/// Who said a line of the conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Caller,
    Agent,
    System,
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Caller => "caller",
            Role::Agent => "agent",
            Role::System => "system",
            Role::Tool => "tool",
        }
    }
}

/// One line of the conversation as stored: `(call_sid, seq)` is its identity, so a retried write
/// never duplicates it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationMessage {
    pub seq: u64,
    pub role: Role,
    pub text: String,
    /// The agent was cut off: `text` is only what the caller heard.
    pub interrupted: bool,
    pub at_ms: Millis,
    /// The agent turn this line belongs to (agent lines only; each turn is stored at most once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn: Option<u64>,
}

/// A chat message in an LLM request (OpenAI roles and JSON shape).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
    /// An assistant message that called tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ChatToolCall>>,
    /// A `tool` message: the result of this call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
            ..ChatMessage::default()
        }
    }
}

/// A tool call as it appears in an assistant message (`{"id", "type": "function", "function"}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatToolCall {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub function: ChatFunctionCall,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatFunctionCall {
    pub name: String,
    /// JSON text, exactly as the model produced it.
    pub arguments: String,
}

/// A complete tool call from the model (fragments already assembled).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCallRequest {
    pub id: String,
    pub name: String,
    /// JSON text as the model produced it; may be invalid (the tool answers with an error).
    pub arguments: String,
}

/// What the call asks the LLM for: a system prompt (with the `[CUSTOMER CONTEXT]` block) and turns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LlmRequest {
    pub messages: Vec<ChatMessage>,
    /// Offer the call's tools ([`crate::tools::definitions`]).
    #[serde(default)]
    pub tools: bool,
}

impl LlmRequest {
    /// A plain request without tools.
    pub fn plain(messages: Vec<ChatMessage>) -> Self {
        LlmRequest {
            messages,
            tools: false,
        }
    }
}

/// A recorded state transition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub seq: u64,
    pub from: crate::machine::CallState,
    pub to: crate::machine::CallState,
    pub event: String,
    pub at_ms: Millis,
}

/// The call record written at finalizing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    pub call_sid: CallSid,
    pub caller: Caller,
    pub called: Option<String>,
    pub customer_id: Option<i64>,
    pub customer_name: Option<String>,
    pub direction: String,
    pub transport: Transport,
    pub started_at_ms: Millis,
    pub ended_at_ms: Millis,
    pub outcome: String,
    pub final_state: crate::machine::CallState,
    pub restarts: u32,
    pub name_source: Option<NameSource>,
    /// The whole conversation, for the summary written at finalizing.
    pub transcript: Vec<ConversationMessage>,
    /// A short summary of the conversation (the LLM's, or [`fallback_summary`]); it becomes the
    /// "last call" context of the customer's next call. Filled in after the machine built the
    /// record, by the call actor's finalizing task.
    #[serde(default)]
    pub summary: Option<String>,
}

/// A summary that needs no LLM: who called, how it ended, and the caller's first request.
pub fn fallback_summary(r: &CallRecord) -> String {
    let who = r
        .customer_name
        .clone()
        .unwrap_or_else(|| "An unknown caller".into());
    let first = r
        .transcript
        .iter()
        .find(|m| m.role == Role::Caller)
        .map(|m| m.text.as_str());
    let turns = r
        .transcript
        .iter()
        .filter(|m| m.role == Role::Caller)
        .count();
    match first {
        Some(first) => {
            let first: String = first.chars().take(160).collect();
            format!(
                "{who} called ({turns} caller turns, {}). First request: \"{first}\"",
                r.outcome
            )
        }
        None => format!("{who} called and said nothing ({}).", r.outcome),
    }
}
