//! Ports: the small traits through which shared actors reach storage and providers. The server
//! implements them with sqlx and reqwest; `testing` implements them in memory. Nothing here does
//! I/O itself.

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::domain::*;

/// Why a port call failed, in words an operator can act on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct PortError {
    pub kind: PortErrorKind,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortErrorKind {
    /// The backend is down or unreachable; retrying later may work.
    Unavailable,
    /// The backend did not answer in time.
    Timeout,
    /// The request was refused as invalid; retrying will not help.
    Rejected,
}

impl std::fmt::Display for PortErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PortErrorKind::Unavailable => "unavailable",
            PortErrorKind::Timeout => "timed out",
            PortErrorKind::Rejected => "rejected",
        })
    }
}

impl PortError {
    pub fn unavailable(message: impl Into<String>) -> Self {
        PortError {
            kind: PortErrorKind::Unavailable,
            message: message.into(),
        }
    }
    pub fn timeout(message: impl Into<String>) -> Self {
        PortError {
            kind: PortErrorKind::Timeout,
            message: message.into(),
        }
    }
    pub fn rejected(message: impl Into<String>) -> Self {
        PortError {
            kind: PortErrorKind::Rejected,
            message: message.into(),
        }
    }
}

/// A customer row as the CRM knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomerRow {
    pub id: i64,
    pub name: Option<String>,
    pub phone_e164: String,
    pub status: String,
}

/// Customer lookups for the prefetch. Each method is one query; the Crm actor runs the dependent
/// ones concurrently under one deadline.
#[async_trait]
pub trait CrmStore: Send + Sync + 'static {
    async fn customer_by_phone(&self, phone_e164: &str) -> Result<Option<CustomerRow>, PortError>;
    async fn recent_facts(&self, customer_id: i64, limit: u32) -> Result<Vec<String>, PortError>;
    async fn last_call(&self, customer_id: i64) -> Result<Option<LastCall>, PortError>;
    async fn pending_tasks(
        &self,
        customer_id: i64,
        limit: u32,
    ) -> Result<Vec<TaskSummary>, PortError>;
    async fn recent_summaries(
        &self,
        customer_id: i64,
        limit: u32,
    ) -> Result<Vec<String>, PortError>;
}

/// One row for the conversation store.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PersistRecord {
    Message {
        call_sid: CallSid,
        message: ConversationMessage,
    },
    Transition {
        call_sid: CallSid,
        transition: Transition,
    },
}

impl PersistRecord {
    pub fn call_sid(&self) -> &CallSid {
        match self {
            PersistRecord::Message { call_sid, .. }
            | PersistRecord::Transition { call_sid, .. } => call_sid,
        }
    }
}

/// Where conversations and call records are written. Writes must be idempotent on
/// `(call_sid, seq)`: the persistence actor retries whole batches.
#[async_trait]
pub trait ConversationStore: Send + Sync + 'static {
    async fn write_batch(&self, batch: &[PersistRecord]) -> Result<(), PortError>;
    async fn write_call_record(&self, record: &CallRecord) -> Result<(), PortError>;
}

/// What the persistence actor spills to its journal: a conversation row, or a call record whose
/// rows were spilled before it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "entry", rename_all = "snake_case")]
pub enum JournalEntry {
    Row(PersistRecord),
    Record(Box<CallRecord>),
}

/// An append-only local journal where the persistence actor spills what it cannot keep in memory
/// (database down or slow). `append` returns only once the entries are durable (synced); the
/// actor forgets rows only after the store or the journal confirmed them. Everything in the
/// journal is written to the store when the database is back and on the next start, then the
/// journal is cleared. Replaying twice is harmless: store writes are idempotent.
#[async_trait]
pub trait SpillJournal: Send + Sync + 'static {
    /// Append and sync. An error (disk full, permissions) means nothing can be assumed written.
    async fn append(&self, entries: &[JournalEntry]) -> Result<(), PortError>;
    /// Every entry appended since the last `clear`, in order. A torn last entry (hard kill in
    /// the middle of an append) is skipped.
    async fn load(&self) -> Result<Vec<JournalEntry>, PortError>;
    /// Forget everything (called after all loaded entries were written to the store).
    async fn clear(&self) -> Result<(), PortError>;
}

/// Stores a captured name: updates the customer with that phone, or creates a `lead`.
#[async_trait]
pub trait NameStore: Send + Sync + 'static {
    async fn store_name(&self, phone_e164: &str, name: &str) -> Result<i64, PortError>;
}

/// A piece of a streamed answer: text, or a complete tool call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LlmPiece {
    Text(String),
    ToolCall(ToolCallRequest),
}

/// A streaming chat completion: text pieces until the stream ends. Dropping the stream must
/// stop the request (that is how barge-in cancels it).
pub trait LlmClient: Send + Sync + 'static {
    fn stream(&self, request: LlmRequest) -> BoxStream<'static, Result<String, PortError>>;

    /// Text and complete tool calls, offering the tools when `request.tools` is set. The default
    /// is a client without tool support: text only.
    fn stream_with_tools(
        &self,
        request: LlmRequest,
    ) -> BoxStream<'static, Result<LlmPiece, PortError>> {
        use futures::StreamExt;
        self.stream(request)
            .map(|piece| piece.map(LlmPiece::Text))
            .boxed()
    }
}

/// A task created for a customer by the `create_task` tool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTask {
    pub customer_id: i64,
    pub title: String,
    /// 1 (highest) to 5.
    pub priority: i32,
    pub due_at_ms: Option<Millis>,
}

/// Where the `create_task` tool writes.
#[async_trait]
pub trait TaskStore: Send + Sync + 'static {
    /// Returns the new task's id.
    async fn create_task(&self, task: &NewTask) -> Result<i64, PortError>;
}

/// Text to speech: G.711 mu-law, 8 kHz mono.
#[async_trait]
pub trait SpeechSynth: Send + Sync + 'static {
    async fn synthesize(&self, text: &str) -> Result<Vec<u8>, PortError>;
}

/// What a live speech-to-text session reports (the shape of Deepgram's live API: speech started,
/// interim and final transcripts, utterance end).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SttEvent {
    /// The recognizer heard speech begin.
    SpeechStarted,
    /// The utterance so far (final segments plus the current interim one).
    Partial(String),
    /// The caller finished an utterance: every final segment of it, joined.
    Utterance(String),
    /// The connection dropped and is being re-established; audio sent meanwhile is lost.
    Reconnecting { reason: String },
    /// The recognizer gave up (reconnects exhausted, credentials refused): the call goes on
    /// without speech input.
    Failed { reason: String },
}

/// One call's live transcription session.
pub struct SttSession {
    /// Raw G.711 mu-law, 8 kHz mono, in any chunk size. Send with `try_send`: a full queue means
    /// the recognizer is behind and the chunk is dropped (the caller counts it). Dropping the
    /// sender ends the session gracefully.
    pub audio: tokio::sync::mpsc::Sender<Vec<u8>>,
    /// Ends when the session is over.
    pub events: tokio::sync::mpsc::Receiver<SttEvent>,
}

/// Streaming speech to text for Media Streams calls. `open` never blocks: the connection is made
/// in the background and audio sent before it is up is buffered (bounded).
pub trait SpeechRecognizer: Send + Sync + 'static {
    fn open(&self, call_sid: &str) -> SttSession;

    /// The longest a session goes on once its audio sender is dropped: its last transcripts
    /// come within this, then its events end. A hang-up waits this long for the last words.
    fn closing_grace(&self) -> std::time::Duration;
}

/// Wall-clock milliseconds for the shell (the machine itself never reads a clock).
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> Millis;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as Millis)
            .unwrap_or(0)
    }
}

/// The shared (fleet-wide) tier of the customer-context cache; defined next to the cache.
pub use crate::cache::SharedContextCache;
