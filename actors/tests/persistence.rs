//! The persistence actor with in-memory ports: spilling to the journal when the store is down or
//! the buffer is over its bound, replaying the journal when the store is back and at start, a
//! full journal (nothing dropped, errors counted), and the finalizing summary's deadline.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use switchboard_actors::machine::CallState;
use switchboard_actors::ports::{
    ConversationStore, JournalEntry, PersistRecord, PortError, SpillJournal,
};
use switchboard_actors::testing::{
    MemoryConversations, MemoryCrm, MemoryJournal, MemoryPorts, ScriptedLlm,
};
use switchboard_actors::*;

fn message(sid: &str, seq: u64, text: &str) -> PersistRecord {
    PersistRecord::Message {
        call_sid: CallSid(sid.into()),
        message: ConversationMessage {
            seq,
            role: Role::Caller,
            text: text.into(),
            interrupted: false,
            at_ms: 1_700_000_000_000 + seq,
            turn: None,
        },
    }
}

fn record(sid: &str) -> CallRecord {
    CallRecord {
        call_sid: CallSid(sid.into()),
        caller: Caller {
            raw: "+15550100001".into(),
            e164: Some("+15550100001".into()),
        },
        called: None,
        customer_id: None,
        customer_name: Some("Ana".into()),
        direction: "inbound".into(),
        transport: Transport::Relay,
        started_at_ms: 1,
        ended_at_ms: 2,
        outcome: "caller hung up".into(),
        final_state: CallState::Ended,
        restarts: 0,
        name_source: None,
        transcript: vec![],
        summary: Some("Ana asked about her invoice.".into()),
    }
}

/// A store that takes `delay` per batch (a slow database).
struct SlowStore {
    inner: Arc<MemoryConversations>,
    delay: Duration,
}

#[async_trait]
impl ConversationStore for SlowStore {
    async fn write_batch(&self, batch: &[PersistRecord]) -> Result<(), PortError> {
        tokio::time::sleep(self.delay).await;
        self.inner.write_batch(batch).await
    }
    async fn write_call_record(&self, record: &CallRecord) -> Result<(), PortError> {
        self.inner.write_call_record(record).await
    }
}

async fn runtime(
    mem: &MemoryPorts,
    store: Option<Arc<dyn ConversationStore>>,
    journal: Arc<MemoryJournal>,
    batch_max: usize,
    max_buffered_rows: usize,
) -> Runtime {
    let mut ports = mem.ports();
    if let Some(store) = store {
        ports.conversations = store;
    }
    ports.journal = Some(journal as Arc<dyn SpillJournal>);
    let config = RuntimeConfig {
        batch_max,
        max_buffered_rows,
        flush_interval: Duration::from_millis(10),
        ..RuntimeConfig::default()
    };
    Runtime::start(config, ports).await.expect("runtime starts")
}

fn memory() -> MemoryPorts {
    MemoryPorts::new(MemoryCrm::default(), ScriptedLlm::new("ok", Duration::ZERO))
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_store_spills_to_the_journal_and_the_journal_is_replayed_when_it_is_back() {
    let mem = memory();
    let journal = Arc::new(MemoryJournal::default());
    let rt = runtime(&mem, None, journal.clone(), 500, 10_000).await;
    mem.conversations.set_down(true);
    let sid = CallSid("CAdown".into());
    for seq in 0..50 {
        rt.services
            .persistence
            .append(message("CAdown", seq, "hello"));
    }
    rt.services.persistence.finalize(Box::new(record("CAdown")));
    // While the store is down, everything moves to the journal and leaves memory.
    eventually("spilled", || {
        journal.len() == 51 && rt.persistence_backlog() == 0
    })
    .await;
    assert!(mem.conversations.transcript(&sid).is_empty());
    mem.conversations.set_down(false);
    eventually("replayed", || {
        mem.conversations.transcript(&sid).len() == 50 && journal.is_empty()
    })
    .await;
    let stored = mem
        .conversations
        .record(&sid)
        .expect("call record replayed");
    assert_eq!(
        stored.summary.as_deref(),
        Some("Ana asked about her invoice.")
    );
    assert_eq!(rt.stats.persistence.replayed.load(Ordering::Relaxed), 51);
    assert_eq!(rt.shutdown().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_store_keeps_memory_bounded_by_spilling_the_overflow() {
    let mem = memory();
    let journal = Arc::new(MemoryJournal::default());
    let slow = Arc::new(SlowStore {
        inner: mem.conversations.clone(),
        delay: Duration::from_millis(200),
    });
    let rt = runtime(&mem, Some(slow), journal.clone(), 10, 20).await;
    for seq in 0..200 {
        rt.services.persistence.append(message("CAslow", seq, "x"));
    }
    // After the first slow batch the actor finds 190 rows (> 20) and spills them.
    eventually("overflow spilled", || {
        rt.stats.persistence.spilled.load(Ordering::Relaxed) > 0
    })
    .await;
    // Then the journal drains into the store; every row arrives exactly once.
    eventually("all written", || {
        mem.conversations
            .transcript(&CallSid("CAslow".into()))
            .len()
            == 200
            && journal.is_empty()
            && rt.persistence_backlog() == 0
    })
    .await;
    let largest = rt.stats.persistence.largest_batch.load(Ordering::Relaxed);
    assert!(largest <= 10, "batches never exceed batch_max: {largest}");
    assert_eq!(rt.shutdown().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_left_by_a_previous_run_is_replayed_at_start() {
    let mem = memory();
    let journal = Arc::new(MemoryJournal::default());
    let left: Vec<JournalEntry> = (0..30)
        .map(|seq| JournalEntry::Row(message("CAearlier", seq, "from the last run")))
        .chain([JournalEntry::Record(Box::new(record("CAearlier")))])
        .collect();
    journal.append(&left).await.unwrap();
    let rt = runtime(&mem, None, journal.clone(), 500, 10_000).await;
    let sid = CallSid("CAearlier".into());
    eventually("replayed at start", || {
        mem.conversations.transcript(&sid).len() == 30
            && mem.conversations.record(&sid).is_some()
            && journal.is_empty()
    })
    .await;
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_journal_is_counted_and_nothing_is_dropped() {
    let mem = memory();
    let journal = Arc::new(MemoryJournal::default());
    journal.set_full(true);
    let rt = runtime(&mem, None, journal.clone(), 500, 5).await;
    mem.conversations.set_down(true);
    for seq in 0..20 {
        rt.services
            .persistence
            .append(message("CAfull", seq, "kept"));
    }
    eventually("journal error counted", || {
        rt.stats.persistence.journal_errors.load(Ordering::Relaxed) > 0
    })
    .await;
    assert_eq!(
        rt.persistence_backlog(),
        20,
        "rows stay in memory, none dropped"
    );
    mem.conversations.set_down(false);
    eventually("written once the store is back", || {
        mem.conversations
            .transcript(&CallSid("CAfull".into()))
            .len()
            == 20
    })
    .await;
    assert_eq!(rt.shutdown().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_with_the_store_down_leaves_everything_in_the_journal() {
    let mem = memory();
    let journal = Arc::new(MemoryJournal::default());
    let rt = runtime(&mem, None, journal.clone(), 500, 10_000).await;
    mem.conversations.set_down(true);
    for seq in 0..7 {
        rt.services
            .persistence
            .append(message("CAbye", seq, "late"));
    }
    assert_eq!(rt.shutdown().await, 0, "nothing left unwritten");
    assert_eq!(journal.len(), 7);
}

#[tokio::test]
async fn the_summary_comes_from_the_llm_or_falls_back_at_its_deadline() {
    let mut r = record("CAsum");
    r.summary = None;
    r.transcript = vec![ConversationMessage {
        seq: 1,
        role: Role::Caller,
        text: "I want to move my delivery to Friday".into(),
        interrupted: false,
        at_ms: 1,
        turn: None,
    }];
    let llm = ScriptedLlm::new("Ana wants her delivery moved to Friday.", Duration::ZERO);
    let s = summary::summarize(&llm, &r, Duration::from_secs(2)).await;
    assert_eq!(s, "Ana wants her delivery moved to Friday.");
    let asked = llm.requests.lock().unwrap()[0].messages[1].content.clone();
    assert!(
        asked.contains("caller: I want to move my delivery to Friday"),
        "{asked}"
    );
    let stalled = ScriptedLlm::new("too late", Duration::from_secs(5));
    let s = summary::summarize(&stalled, &r, Duration::from_millis(100)).await;
    assert_eq!(s, fallback_summary(&r));
    assert!(s.contains("I want to move my delivery to Friday"), "{s}");
}
