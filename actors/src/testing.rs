//! In-memory implementations of the ports, for tests and benchmarks: a CRM with configurable
//! delays and failures, a conversation store that can be switched off, a scripted LLM that
//! records cancellations, and a speech synthesiser producing silence whose length follows the
//! text. They keep the same contracts as the real adapters (idempotent writes on (sid, seq)).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};

use crate::domain::*;
use crate::ports::*;
use crate::runtime::Ports;

/// One customer of the in-memory CRM.
#[derive(Clone, Debug, Default)]
pub struct MemoryCustomer {
    pub id: i64,
    pub name: Option<String>,
    pub phone: String,
    pub status: String,
    pub facts: Vec<String>,
    pub tasks: Vec<TaskSummary>,
    pub last_call: Option<LastCall>,
}

#[derive(Default)]
pub struct MemoryCrm {
    pub customers: Mutex<HashMap<String, MemoryCustomer>>,
    /// Delay per query name ("customer_by_phone", "recent_facts", ...).
    pub delays: Mutex<HashMap<&'static str, Duration>>,
    /// Queries that fail with "unavailable".
    pub failing: Mutex<Vec<&'static str>>,
    pub queries: AtomicU64,
}

impl MemoryCrm {
    pub fn with(customers: impl IntoIterator<Item = MemoryCustomer>) -> Self {
        let crm = MemoryCrm::default();
        {
            let mut map = crm.customers.lock().unwrap_or_else(|p| p.into_inner());
            for c in customers {
                map.insert(c.phone.clone(), c);
            }
        }
        crm
    }

    pub fn delay(&self, query: &'static str, d: Duration) {
        self.delays
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(query, d);
    }

    pub fn fail(&self, query: &'static str) {
        self.failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(query);
    }

    async fn step(&self, query: &'static str) -> Result<(), PortError> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        let delay = self
            .delays
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(query)
            .copied();
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        if self
            .failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&query)
        {
            return Err(PortError::unavailable(format!(
                "{query}: database unreachable"
            )));
        }
        Ok(())
    }

    fn by_id(&self, id: i64) -> Option<MemoryCustomer> {
        self.customers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .find(|c| c.id == id)
            .cloned()
    }
}

#[async_trait]
impl CrmStore for MemoryCrm {
    async fn customer_by_phone(&self, phone: &str) -> Result<Option<CustomerRow>, PortError> {
        self.step("customer_by_phone").await?;
        let map = self.customers.lock().unwrap_or_else(|p| p.into_inner());
        Ok(map.get(phone).map(|c| CustomerRow {
            id: c.id,
            name: c.name.clone(),
            phone_e164: c.phone.clone(),
            status: c.status.clone(),
        }))
    }
    async fn recent_facts(&self, id: i64, limit: u32) -> Result<Vec<String>, PortError> {
        self.step("recent_facts").await?;
        Ok(self
            .by_id(id)
            .map(|c| c.facts.into_iter().take(limit as usize).collect())
            .unwrap_or_default())
    }
    async fn last_call(&self, id: i64) -> Result<Option<LastCall>, PortError> {
        self.step("last_call").await?;
        Ok(self.by_id(id).and_then(|c| c.last_call))
    }
    async fn pending_tasks(&self, id: i64, limit: u32) -> Result<Vec<TaskSummary>, PortError> {
        self.step("pending_tasks").await?;
        Ok(self
            .by_id(id)
            .map(|c| c.tasks.into_iter().take(limit as usize).collect())
            .unwrap_or_default())
    }
    async fn recent_summaries(&self, id: i64, _limit: u32) -> Result<Vec<String>, PortError> {
        self.step("recent_summaries").await?;
        Ok(self
            .by_id(id)
            .and_then(|c| c.last_call)
            .and_then(|l| l.summary)
            .into_iter()
            .collect())
    }
}

/// A conversation store in memory; `set_down(true)` makes every write fail like a dead database.
#[derive(Default)]
pub struct MemoryConversations {
    pub messages: Mutex<BTreeMap<(CallSid, u64), ConversationMessage>>,
    pub transitions: Mutex<BTreeMap<(CallSid, u64), Transition>>,
    pub records: Mutex<HashMap<CallSid, CallRecord>>,
    pub batches: Mutex<Vec<usize>>,
    pub down: AtomicBool,
    /// Writes attempted, including duplicates (idempotency is checked against this).
    pub rows_attempted: AtomicU64,
}

impl MemoryConversations {
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::Release);
    }
    pub fn transcript(&self, sid: &CallSid) -> Vec<ConversationMessage> {
        let map = self.messages.lock().unwrap_or_else(|p| p.into_inner());
        map.range((sid.clone(), 0)..=(sid.clone(), u64::MAX))
            .map(|(_, m)| m.clone())
            .collect()
    }
    pub fn record(&self, sid: &CallSid) -> Option<CallRecord> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(sid)
            .cloned()
    }
    pub fn states(&self, sid: &CallSid) -> Vec<crate::machine::CallState> {
        let map = self.transitions.lock().unwrap_or_else(|p| p.into_inner());
        map.range((sid.clone(), 0)..=(sid.clone(), u64::MAX))
            .map(|(_, t)| t.to)
            .collect()
    }
}

#[async_trait]
impl ConversationStore for MemoryConversations {
    async fn write_batch(&self, batch: &[PersistRecord]) -> Result<(), PortError> {
        if self.down.load(Ordering::Acquire) {
            return Err(PortError::unavailable("database is down"));
        }
        self.rows_attempted
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.batches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(batch.len());
        let mut messages = self.messages.lock().unwrap_or_else(|p| p.into_inner());
        let mut transitions = self.transitions.lock().unwrap_or_else(|p| p.into_inner());
        for row in batch {
            match row {
                PersistRecord::Message { call_sid, message } => {
                    messages
                        .entry((call_sid.clone(), message.seq))
                        .or_insert_with(|| message.clone());
                }
                PersistRecord::Transition {
                    call_sid,
                    transition,
                } => {
                    transitions
                        .entry((call_sid.clone(), transition.seq))
                        .or_insert_with(|| transition.clone());
                }
            }
        }
        Ok(())
    }
    async fn write_call_record(&self, record: &CallRecord) -> Result<(), PortError> {
        if self.down.load(Ordering::Acquire) {
            return Err(PortError::unavailable("database is down"));
        }
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(record.call_sid.clone(), record.clone());
        Ok(())
    }
}

/// A journal in memory; `set_full(true)` makes appends fail like a full disk.
#[derive(Default)]
pub struct MemoryJournal {
    pub entries: Mutex<Vec<JournalEntry>>,
    pub full: AtomicBool,
    pub appends: AtomicU64,
}

impl MemoryJournal {
    pub fn set_full(&self, full: bool) {
        self.full.store(full, Ordering::Release);
    }
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl SpillJournal for MemoryJournal {
    async fn append(&self, entries: &[JournalEntry]) -> Result<(), PortError> {
        if self.full.load(Ordering::Acquire) {
            return Err(PortError::unavailable(
                "No space left on device (os error 28)",
            ));
        }
        self.appends.fetch_add(1, Ordering::Relaxed);
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(entries);
        Ok(())
    }
    async fn load(&self) -> Result<Vec<JournalEntry>, PortError> {
        Ok(self
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone())
    }
    async fn clear(&self) -> Result<(), PortError> {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        Ok(())
    }
}

#[derive(Default)]
pub struct MemoryNames {
    pub stored: Mutex<Vec<(String, String)>>,
    /// What the next writes fail with, in order (a database down, busy or refusing).
    pub failures: Mutex<VecDeque<PortError>>,
    /// Every write attempted, failed ones included.
    pub attempts: Mutex<Vec<(String, String)>>,
}

impl MemoryNames {
    /// A store whose next writes fail with `failures`, in order, then succeed.
    pub fn failing(failures: impl IntoIterator<Item = PortError>) -> Self {
        MemoryNames {
            failures: Mutex::new(failures.into_iter().collect()),
            ..MemoryNames::default()
        }
    }

    pub fn stored(&self) -> Vec<(String, String)> {
        self.stored
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn attempts(&self) -> Vec<(String, String)> {
        self.attempts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[async_trait]
impl NameStore for MemoryNames {
    async fn store_name(&self, phone: &str, name: &str) -> Result<i64, PortError> {
        self.attempts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((phone.to_owned(), name.to_owned()));
        let failure = self
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front();
        if let Some(e) = failure {
            return Err(e);
        }
        let mut stored = self.stored.lock().unwrap_or_else(|p| p.into_inner());
        stored.push((phone.to_owned(), name.to_owned()));
        Ok(stored.len() as i64)
    }
}

/// Tasks created by the `create_task` tool, in memory.
#[derive(Default)]
pub struct MemoryTasks {
    pub created: Mutex<Vec<crate::ports::NewTask>>,
}

#[async_trait]
impl crate::ports::TaskStore for MemoryTasks {
    async fn create_task(&self, task: &crate::ports::NewTask) -> Result<i64, PortError> {
        let mut created = self.created.lock().unwrap_or_else(|p| p.into_inner());
        created.push(task.clone());
        Ok(created.len() as i64)
    }
}

/// An LLM that answers every request with the same reply, word by word.
pub struct ScriptedLlm {
    pub reply: String,
    pub token_delay: Duration,
    /// Tool calls to answer with, one entry per request (front first); an empty queue means
    /// the text reply.
    pub tool_script: Mutex<VecDeque<Vec<ToolCallRequest>>>,
    pub requests: Mutex<Vec<LlmRequest>>,
    /// Streams dropped before they finished (barge-in cancellations reach here).
    pub dropped: Arc<AtomicU64>,
}

impl ScriptedLlm {
    pub fn new(reply: &str, token_delay: Duration) -> Self {
        ScriptedLlm {
            reply: reply.into(),
            token_delay,
            tool_script: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }
}

struct DropWatch {
    finished: bool,
    dropped: Arc<AtomicU64>,
}

impl Drop for DropWatch {
    fn drop(&mut self) {
        if !self.finished {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl LlmClient for ScriptedLlm {
    fn stream(&self, request: LlmRequest) -> BoxStream<'static, Result<String, PortError>> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(request);
        let words: Vec<String> = self.reply.split_inclusive(' ').map(str::to_owned).collect();
        let delay = self.token_delay;
        let count = words.len();
        let watch = Arc::new(Mutex::new(DropWatch {
            finished: false,
            dropped: self.dropped.clone(),
        }));
        stream::iter(words.into_iter().enumerate())
            .then(move |(i, w)| {
                let watch = watch.clone();
                async move {
                    tokio::time::sleep(delay).await;
                    if i + 1 == count {
                        watch.lock().unwrap_or_else(|p| p.into_inner()).finished = true;
                    }
                    Ok(w)
                }
            })
            .boxed()
    }

    fn stream_with_tools(
        &self,
        request: LlmRequest,
    ) -> BoxStream<'static, Result<crate::ports::LlmPiece, PortError>> {
        let calls = self
            .tool_script
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front();
        match calls {
            Some(calls) if !calls.is_empty() && request.tools => {
                self.requests
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(request);
                let delay = self.token_delay;
                stream::iter(calls)
                    .then(move |c| async move {
                        tokio::time::sleep(delay).await;
                        Ok(crate::ports::LlmPiece::ToolCall(c))
                    })
                    .boxed()
            }
            _ => self
                .stream(request)
                .map(|p| p.map(crate::ports::LlmPiece::Text))
                .boxed(),
        }
    }
}

/// "Speech": 8 bytes of mu-law silence (1 ms) per character.
pub struct SilenceSpeech;

#[async_trait]
impl SpeechSynth for SilenceSpeech {
    async fn synthesize(&self, text: &str) -> Result<Vec<u8>, PortError> {
        Ok(vec![0xFF; text.chars().count() * 8])
    }
}

/// In-memory ports bundle, with handles to inspect them.
pub struct MemoryPorts {
    pub crm: Arc<MemoryCrm>,
    pub conversations: Arc<MemoryConversations>,
    pub names: Arc<MemoryNames>,
    pub tasks: Arc<MemoryTasks>,
    pub llm: Arc<ScriptedLlm>,
}

impl MemoryPorts {
    pub fn new(crm: MemoryCrm, llm: ScriptedLlm) -> Self {
        MemoryPorts {
            crm: Arc::new(crm),
            conversations: Arc::new(MemoryConversations::default()),
            names: Arc::new(MemoryNames::default()),
            tasks: Arc::new(MemoryTasks::default()),
            llm: Arc::new(llm),
        }
    }

    pub fn ports(&self) -> Ports {
        Ports {
            crm: self.crm.clone(),
            conversations: self.conversations.clone(),
            names: self.names.clone(),
            tasks: self.tasks.clone(),
            llm: self.llm.clone(),
            speech: Arc::new(SilenceSpeech),
            greeting: crate::handle::GreetingSource {
                audio: Some(Arc::from(vec![0xFFu8; 1600])),
                relay_spoken_by_twilio: false,
                fallback_audio: None,
            },
            clock: Arc::new(SystemClock),
            journal: None,
        }
    }
}
