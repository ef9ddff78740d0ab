//! The Persistence actor: batches conversation messages and state transitions into multi-row
//! writes, flushed when the batch reaches `batch_max` rows, every `flush_interval`, and at once
//! when a call finalizes. A failed write keeps the batch and retries with exponential backoff.
//!
//! Rows never travel through the actor's mailbox: callers append them to a shared buffer through
//! [`PersistenceHandle`] and only nudge the actor. A mailbox dies with its actor; the buffer does
//! not, so a restarted Persistence actor finds every row still pending. Rows are removed from the
//! buffer only after the store confirmed them. Writes are idempotent on (call sid, seq), so a
//! retried batch never duplicates.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::time::Instant;

use crate::domain::*;
use crate::handle::LiveCalls;
use crate::machine::Event;
use crate::ports::{ConversationStore, PersistRecord};

const MAX_BACKOFF: Duration = Duration::from_secs(5);

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
}

/// Rows waiting to be written. Shared with a restarted actor so nothing is lost with it.
#[derive(Default)]
pub struct Pending {
    rows: Vec<PersistRecord>,
    records: Vec<CallRecord>,
    failures: u32,
    retry_at: Option<Instant>,
}

#[derive(Clone)]
pub struct PersistenceArgs {
    pub store: Arc<dyn ConversationStore>,
    pub calls: LiveCalls,
    pub batch_max: usize,
    pub flush_interval: Duration,
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
}

impl PersistenceHandle {
    pub fn append(&self, row: PersistRecord) {
        let full = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            p.rows.push(row);
            p.rows.len() == self.batch_max
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
/// everything and back off. `force` ignores the backoff (shutdown).
async fn flush(st: &PersistenceArgs, force: bool) {
    loop {
        let batch: Vec<PersistRecord> = {
            let p = st.pending.lock().unwrap_or_else(|e| e.into_inner());
            if !force && p.retry_at.is_some_and(|t| Instant::now() < t) {
                return;
            }
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
                let n = batch.len() as u64;
                st.stats.rows_written.fetch_add(n, Ordering::Relaxed);
                st.stats.batches_written.fetch_add(1, Ordering::Relaxed);
                st.stats.largest_batch.fetch_max(n, Ordering::Relaxed);
                let mut p = st.pending.lock().unwrap_or_else(|e| e.into_inner());
                p.rows.drain(..batch.len());
                p.failures = 0;
                p.retry_at = None;
            }
            Err(e) => {
                let mut p = st.pending.lock().unwrap_or_else(|e| e.into_inner());
                backoff(&mut p, st, &e.to_string());
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
                let mut p = st.pending.lock().unwrap_or_else(|e| e.into_inner());
                backoff(&mut p, st, &e.to_string());
                return;
            }
        }
    }
}

fn backoff(p: &mut Pending, st: &PersistenceArgs, error: &str) {
    p.failures += 1;
    st.stats.write_failures.fetch_add(1, Ordering::Relaxed);
    let delay =
        Duration::from_millis(50u64.saturating_mul(1 << p.failures.min(16))).min(MAX_BACKOFF);
    p.retry_at = Some(Instant::now() + delay);
    tracing::warn!(
        error,
        pending_rows = p.rows.len(),
        retry_in_ms = delay.as_millis() as u64,
        "conversation write failed; will retry"
    );
}
