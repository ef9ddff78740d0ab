//! The Persistence actor: batches conversation messages and state transitions into multi-row
//! writes, flushed when the batch reaches `batch_max` rows, every `flush_interval`, and at once
//! when a call finalizes. A failed write keeps the batch and retries with exponential backoff.
//!
//! Rows never travel through the actor's mailbox: callers append them to a shared buffer through
//! [`PersistenceHandle`] and only nudge the actor. A mailbox dies with its actor; the buffer does
//! not, so a restarted Persistence actor finds every row still pending. Rows are removed from the
//! buffer only after the store confirmed them. Writes are idempotent on (call sid, seq), so a
//! retried batch never duplicates.
//!
//! Spilling: when the store fails, or the buffer holds more than `max_buffered` rows, everything
//! buffered is appended to the [`SpillJournal`] (synced) and only then forgotten; a call record
//! that reached the journal counts as persisted. The journal is replayed into the store before
//! anything else once the store answers again, and on the first flush after a start. If the
//! journal fails too (disk full), rows stay in memory, the error is logged and counted, and
//! nothing is dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::time::Instant;

use crate::domain::*;
use crate::handle::LiveCalls;
use crate::machine::Event;
use crate::ports::{ConversationStore, JournalEntry, PersistRecord, SpillJournal};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// After a journal error, the next journal attempt waits this long (keeps the error loud, not a flood).
const JOURNAL_RETRY: Duration = Duration::from_secs(1);

pub enum PersistenceMsg {
    /// Something was appended (a full batch or a call record): write now.
    Nudge,
    Tick,
    /// Flush everything now (graceful shutdown, tests); answers how many rows are still unwritten.
    Flush(RpcReplyPort<usize>),
}

#[derive(Default, Debug)]
pub struct PersistenceStats {
    pub rows_written: AtomicU64,
    pub batches_written: AtomicU64,
    pub largest_batch: AtomicU64,
    pub write_failures: AtomicU64,
    pub records_written: AtomicU64,
    /// Rows and call records appended to the journal.
    pub spilled: AtomicU64,
    /// Journal entries written to the store on replay.
    pub replayed: AtomicU64,
    /// Failed journal operations (append, load, clear).
    pub journal_errors: AtomicU64,
}

/// Rows waiting to be written. Shared with a restarted actor so nothing is lost with it.
#[derive(Default)]
pub struct Pending {
    rows: Vec<PersistRecord>,
    records: Vec<CallRecord>,
    failures: u32,
    retry_at: Option<Instant>,
    /// The journal may hold entries not yet in the store (true at start: replay once).
    journal_dirty: bool,
    journal_retry_at: Option<Instant>,
}

impl Pending {
    /// A buffer that first replays whatever the journal holds from an earlier run.
    pub fn replaying() -> Self {
        Pending {
            journal_dirty: true,
            ..Pending::default()
        }
    }
}

#[derive(Clone)]
pub struct PersistenceArgs {
    pub store: Arc<dyn ConversationStore>,
    pub calls: LiveCalls,
    pub batch_max: usize,
    pub flush_interval: Duration,
    /// More buffered rows than this are spilled to the journal.
    pub max_buffered: usize,
    pub journal: Option<Arc<dyn SpillJournal>>,
    pub pending: Arc<Mutex<Pending>>,
    pub stats: Arc<PersistenceStats>,
}

impl PersistenceArgs {
    /// Rows and call records not yet written.
    pub fn backlog(&self) -> usize {
        let p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.rows.len() + p.records.len()
    }
}

pub struct PersistenceActor;

/// How call actors hand rows to persistence: straight into the shared buffer, then a nudge.
#[derive(Clone)]
pub struct PersistenceHandle {
    pub(crate) pending: Arc<Mutex<Pending>>,
    pub(crate) actor: crate::runtime::Shared<PersistenceMsg>,
    pub(crate) batch_max: usize,
    pub(crate) max_buffered: usize,
    /// Call records still being summarized (not yet handed to `finalize`).
    pub(crate) summarizing: Arc<std::sync::atomic::AtomicUsize>,
}

impl PersistenceHandle {
    pub fn append(&self, row: PersistRecord) {
        let full = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            p.rows.push(row);
            p.rows.len() == self.batch_max || p.rows.len() == self.max_buffered + 1
        };
        if full {
            let _ = self.actor.cast(PersistenceMsg::Nudge);
        }
    }

    /// Queue the call record; the call gets `Persisted` once it (and the rows before it) are written.
    pub fn finalize(&self, record: Box<CallRecord>) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .records
            .push(*record);
        let _ = self.actor.cast(PersistenceMsg::Nudge);
    }

    pub fn backlog(&self) -> usize {
        let p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.rows.len() + p.records.len()
    }

    pub fn actor(&self) -> ractor::ActorRef<PersistenceMsg> {
        self.actor.actor()
    }

    /// Call records whose summary is still being written (shutdown waits for them).
    pub fn summarizing(&self) -> usize {
        self.summarizing.load(Ordering::Acquire)
    }
}

impl Actor for PersistenceActor {
    type Msg = PersistenceMsg;
    type State = PersistenceArgs;
    type Arguments = PersistenceArgs;

    async fn pre_start(
        &self,
        me: ActorRef<PersistenceMsg>,
        args: PersistenceArgs,
    ) -> Result<PersistenceArgs, ActorProcessingErr> {
        me.send_interval(args.flush_interval, || PersistenceMsg::Tick);
        Ok(args)
    }

    async fn handle(
        &self,
        _me: ActorRef<PersistenceMsg>,
        msg: PersistenceMsg,
        st: &mut PersistenceArgs,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            PersistenceMsg::Nudge | PersistenceMsg::Tick => flush(st, false).await,
            PersistenceMsg::Flush(reply) => {
                flush(st, true).await;
                let _ = reply.send(st.backlog());
            }
        }
        Ok(())
    }
}

/// Write what is pending, `batch_max` rows at a time, then the call records. On failure keep
/// everything, back off, and spill it to the journal. `force` ignores the backoff (shutdown).
async fn flush(st: &PersistenceArgs, force: bool) {
    let (backing_off, dirty) = {
        let p = st.pending.lock().unwrap_or_else(|e| e.into_inner());
        (
            p.retry_at.is_some_and(|t| Instant::now() < t),
            p.journal_dirty,
        )
    };
    if backing_off && !force {
        // The store is failing: keep memory (and a hard kill's loss) small.
        spill(st, true).await;
        return;
    }
    if dirty
        && st.journal.is_some()
        && let Err(e) = replay(st).await
    {
        fail(st, &e);
        spill(st, true).await;
        return;
    }
    loop {
        let batch: Vec<PersistRecord> = {
            let p = st.pending.lock().unwrap_or_else(|e| e.into_inner());
            if p.rows.is_empty() {
                break;
            }
            // Copied, not drained: if this actor dies mid-write, the rows are still pending for
            // its successor. Only this actor touches `rows` while it writes.
            let n = p.rows.len().min(st.batch_max);
            p.rows[..n].to_vec()
        };
        match st.store.write_batch(&batch).await {
            Ok(()) => {
                count_batch(st, batch.len());
                {
                    let mut p = st.pending.lock().unwrap_or_else(|e| e.into_inner());
                    p.rows.drain(..batch.len());
                    p.failures = 0;
                    p.retry_at = None;
                }
                // A slow store: whatever piled up beyond the bound goes to the journal.
                spill(st, false).await;
            }
            Err(e) => {
                fail(st, &e.to_string());
                spill(st, true).await;
                return;
            }
        }
    }
    loop {
        let record = {
            let p = st.pending.lock().unwrap_or_else(|e| e.into_inner());
            match p.records.first() {
                Some(r) => r.clone(),
                None => return,
            }
        };
        match st.store.write_call_record(&record).await {
            Ok(()) => {
                st.pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .records
                    .remove(0);
                st.stats.records_written.fetch_add(1, Ordering::Relaxed);
                st.calls.deliver(&record.call_sid, Event::Persisted);
            }
            Err(e) => {
                fail(st, &e.to_string());
                spill(st, true).await;
                return;
            }
        }
    }
}

fn count_batch(st: &PersistenceArgs, n: usize) {
    let n = n as u64;
    st.stats.rows_written.fetch_add(n, Ordering::Relaxed);
    st.stats.batches_written.fetch_add(1, Ordering::Relaxed);
    st.stats.largest_batch.fetch_max(n, Ordering::Relaxed);
}

/// Writes everything the journal holds to the store, then clears the journal. A store error is
/// returned (the caller backs off); a journal error is logged and counted, and the journal is
/// left for the next start.
async fn replay(st: &PersistenceArgs) -> Result<(), String> {
    let Some(journal) = &st.journal else {
        return Ok(());
    };
    let entries = match journal.load().await {
        Ok(entries) => entries,
        Err(e) => {
            journal_error(
                st,
                "cannot read the persistence journal; it will be replayed on the next start",
                &e.to_string(),
            );
            st.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .journal_dirty = false;
            return Ok(());
        }
    };
    if !entries.is_empty() {
        let total = entries.len();
        let mut rows = Vec::new();
        let mut records = Vec::new();
        for entry in entries {
            match entry {
                JournalEntry::Row(row) => rows.push(row),
                JournalEntry::Record(record) => records.push(record),
            }
        }
        for chunk in rows.chunks(st.batch_max) {
            st.store
                .write_batch(chunk)
                .await
                .map_err(|e| format!("journal replay: {e}"))?;
            count_batch(st, chunk.len());
        }
        for record in &records {
            st.store
                .write_call_record(record)
                .await
                .map_err(|e| format!("journal replay: {e}"))?;
            st.stats.records_written.fetch_add(1, Ordering::Relaxed);
        }
        // Counted as soon as the store has it all, whether or not the journal clears.
        st.stats.replayed.fetch_add(total as u64, Ordering::Relaxed);
        if let Err(e) = journal.clear().await {
            // Everything is in the store; replaying it again later is harmless (idempotent).
            journal_error(
                st,
                "cannot clear the persistence journal after replaying it",
                &e.to_string(),
            );
        }
        tracing::info!(
            entries = total,
            "persistence journal replayed into the database"
        );
    }
    let mut p = st.pending.lock().unwrap_or_else(|e| e.into_inner());
    p.journal_dirty = false;
    p.failures = 0;
    p.retry_at = None;
    Ok(())
}

/// Appends everything buffered to the journal when the store is `failing` or the buffer is over
/// its bound, and forgets it once the journal confirmed. Spilled call records count as persisted.
async fn spill(st: &PersistenceArgs, failing: bool) {
    let Some(journal) = &st.journal else {
        return;
    };
    let (entries, rows, records) = {
        let p = st.pending.lock().unwrap_or_else(|e| e.into_inner());
        let buffered = p.rows.len() + p.records.len();
        if buffered == 0
            || !(failing || buffered > st.max_buffered)
            || p.journal_retry_at.is_some_and(|t| Instant::now() < t)
        {
            return;
        }
        let entries: Vec<JournalEntry> = p
            .rows
            .iter()
            .cloned()
            .map(JournalEntry::Row)
            .chain(
                p.records
                    .iter()
                    .cloned()
                    .map(|r| JournalEntry::Record(Box::new(r))),
            )
            .collect();
        (entries, p.rows.len(), p.records.len())
    };
    match journal.append(&entries).await {
        Ok(()) => {
            let done: Vec<CallRecord> = {
                let mut p = st.pending.lock().unwrap_or_else(|e| e.into_inner());
                // Only the actor removes rows; handles only push at the end.
                p.rows.drain(..rows);
                p.journal_dirty = true;
                p.journal_retry_at = None;
                p.records.drain(..records).collect()
            };
            st.stats
                .spilled
                .fetch_add(entries.len() as u64, Ordering::Relaxed);
            tracing::warn!(
                rows,
                records,
                "conversation rows spilled to the journal; they are written when the database is back"
            );
            for record in done {
                st.calls.deliver(&record.call_sid, Event::Persisted);
            }
        }
        Err(e) => {
            st.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .journal_retry_at = Some(Instant::now() + JOURNAL_RETRY);
            journal_error(
                st,
                "cannot spill to the persistence journal; rows stay in memory until the database or the journal accepts them",
                &e.to_string(),
            );
        }
    }
}

fn journal_error(st: &PersistenceArgs, what: &'static str, error: &str) {
    st.stats.journal_errors.fetch_add(1, Ordering::Relaxed);
    let p = st.pending.lock().unwrap_or_else(|e| e.into_inner());
    tracing::error!(
        error,
        buffered_rows = p.rows.len(),
        buffered_records = p.records.len(),
        "{what}"
    );
}

fn fail(st: &PersistenceArgs, error: &str) {
    let mut p = st.pending.lock().unwrap_or_else(|e| e.into_inner());
    backoff(&mut p, st, error);
}

fn backoff(p: &mut Pending, st: &PersistenceArgs, error: &str) {
    p.failures += 1;
    st.stats.write_failures.fetch_add(1, Ordering::Relaxed);
    let delay = crate::backoff::delay(FIRST_BACKOFF, p.failures, MAX_BACKOFF);
    p.retry_at = Some(Instant::now() + delay);
    tracing::warn!(
        error,
        pending_rows = p.rows.len(),
        retry_in_ms = delay.as_millis() as u64,
        "conversation write failed; will retry"
    );
}
