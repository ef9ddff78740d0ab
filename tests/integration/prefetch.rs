//! Customer-context prefetch against real databases: every case runs on a fresh SQLite file and
//! a fresh PostgreSQL database with the same seeded rows.
//!
//! - a known customer with facts, tasks and a past call: direct `crm::prefetch`, and a live call
//!   whose LLM prompt carries the `[CUSTOMER CONTEXT]` block;
//! - an unknown caller; a database that is not connected (failed, with the reason);
//! - partial results when one query fails for real (its table renamed away);
//! - the deadline: a store that is too slow answers "timed out" at the deadline, and a live call
//!   proceeds as unknown with `context: timed out` in its prompt;
//! - the cache: a second call is a hit, a task change plus `Runtime::invalidate_context` and a
//!   finished call are seen by the next call, and a new caller who gave their name is greeted by
//!   it on their next call (name capture invalidates);
//! - an unsure name settled by the LLM (the local stand-in answering with a fixed reply);
//! - two concurrent `store_name` calls for the same new number create one customer;
//! - the Redis tier (`SWITCHBOARD_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`, which
//!   `.ci/run` starts): round trip, two nodes sharing a context, and an unreachable Redis that
//!   costs a miss, not the lookup.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use switchboard::redis_cache::RedisContextCache;
use switchboard::storage::Database;
use switchboard::store::{DbCell, SqlStore};
use switchboard_actors::cache::SharedContextCache;
use switchboard_actors::machine::{CallState, Event};
use switchboard_actors::ports::{CrmStore, CustomerRow, NameStore, PortError};
use switchboard_actors::testing::{MemoryCrm, MemoryPorts, ScriptedLlm};
use switchboard_actors::{
    CallHandle, CallSid, CallStart, Caller, ContextResult, CustomerContext, LastCall, Outbound,
    Runtime, RuntimeConfig, TaskSummary, Transport, crm,
};
use switchboard_providers::standins::{ReplyScript, StandinConfig};
use tokio::sync::mpsc;

use crate::common::{TestApp, migrated, spawn_app, test_config};

const ANA: &str = "+14155550101";
const NEWCOMER: &str = "+14155550199";
const DAY_MS: i64 = 86_400_000;
const NOW_MS: i64 = 1_763_683_200_000;

/// Ana: two facts, two pending tasks and a done one, one past call with a summary.
async fn seed(db: &Database) -> i64 {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO customers (phone_e164, name, status, created_at_ms, updated_at_ms) \
         VALUES ($1, 'Ana Souza', 'vip', $2, $2) RETURNING id",
    )
    .bind(ANA)
    .bind(NOW_MS - 30 * DAY_MS)
    .fetch_one(db.pool())
    .await
    .expect("customer");
    for (i, fact) in ["Prefers email over phone", "Premium plan since 2021"]
        .iter()
        .enumerate()
    {
        sqlx::query(
            "INSERT INTO customer_facts (customer_id, fact, created_at_ms) VALUES ($1, $2, $3)",
        )
        .bind(id)
        .bind(*fact)
        .bind(NOW_MS - i as i64 * DAY_MS)
        .execute(db.pool())
        .await
        .expect("fact");
    }
    for (title, status, due) in [
        ("Renew contract", "pending", Some(NOW_MS + 3 * DAY_MS)),
        ("Send invoice copy", "pending", None),
        ("Old onboarding call", "done", Some(NOW_MS - 9 * DAY_MS)),
    ] {
        sqlx::query(
            "INSERT INTO tasks (customer_id, title, status, priority, due_at_ms, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, 1, $4, $5, $5)",
        )
        .bind(id)
        .bind(title)
        .bind(status)
        .bind(due)
        .bind(NOW_MS - 10 * DAY_MS)
        .execute(db.pool())
        .await
        .expect("task");
    }
    sqlx::query(
        "INSERT INTO calls (call_sid, customer_id, phone, direction, started_at_ms, ended_at_ms, outcome, summary) \
         VALUES ('CApast', $1, $2, 'inbound', $3, $4, 'completed', 'Asked about the renewal price.')",
    )
    .bind(id)
    .bind(ANA)
    .bind(NOW_MS - 2 * DAY_MS)
    .bind(NOW_MS - 2 * DAY_MS + 60_000)
    .execute(db.pool())
    .await
    .expect("past call");
    id
}

fn store_for(db: &Database) -> SqlStore {
    let cell = DbCell::default();
    cell.set(db.clone());
    SqlStore::new(cell)
}

macro_rules! on_both_backends {
    ($case:ident) => {
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let dir = tempfile::tempdir().expect("tempdir");
                super::$case(&crate::common::sqlite_url(dir.path(), "prefetch.db")).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let pg = crate::common::PgTestDb::create().await;
                super::$case(&pg.url).await;
            }
        }
    };
}

// === direct prefetch ===

async fn known_unknown_and_disconnected(url: &str) {
    let db = migrated(url).await;
    let id = seed(&db).await;
    let store = store_for(&db);
    let Event::ContextArrived(ContextResult::Found(c)) =
        crm::prefetch(&store, ANA, Duration::from_secs(2)).await
    else {
        panic!("Ana is found");
    };
    assert_eq!(c.customer_id, id);
    assert_eq!(c.name.as_deref(), Some("Ana Souza"));
    assert_eq!(c.status, "vip");
    assert_eq!(
        c.facts,
        ["Prefers email over phone", "Premium plan since 2021"],
        "newest first"
    );
    let titles: Vec<&str> = c.pending_tasks.iter().map(|t| t.title.as_str()).collect();
    assert_eq!(
        titles,
        ["Renew contract", "Send invoice copy"],
        "pending only, dated first"
    );
    assert_eq!(
        c.last_call,
        Some(LastCall {
            summary: Some("Asked about the renewal price.".into()),
            outcome: Some("completed".into()),
            started_at_ms: (NOW_MS - 2 * DAY_MS) as u64,
        })
    );
    assert_eq!(c.recent_summaries, ["Asked about the renewal price."]);
    assert!(!c.partial && c.missing.is_empty());

    assert_eq!(
        crm::prefetch(&store, NEWCOMER, Duration::from_secs(2)).await,
        Event::ContextArrived(ContextResult::NotFound)
    );

    // Database down (here: never connected): failed, with the reason, at once.
    let down = SqlStore::new(DbCell::default());
    let t = Instant::now();
    match crm::prefetch(&down, ANA, Duration::from_secs(2)).await {
        Event::ContextFailed { reason } => {
            assert!(reason.contains("not connected"), "{reason}")
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_millis(500));
}
on_both_backends!(known_unknown_and_disconnected);

async fn one_failing_query_gives_a_partial_context(url: &str) {
    let db = migrated(url).await;
    seed(&db).await;
    // This test's own database: the tasks query now fails for real.
    sqlx::query("ALTER TABLE tasks RENAME TO tasks_moved")
        .execute(db.pool())
        .await
        .expect("rename");
    let store = store_for(&db);
    let Event::ContextArrived(ContextResult::Found(c)) =
        crm::prefetch(&store, ANA, Duration::from_secs(2)).await
    else {
        panic!("Ana is still found");
    };
    assert!(c.partial);
    assert_eq!(c.missing.len(), 1, "{:?}", c.missing);
    assert!(
        c.missing[0].starts_with("pending_tasks ("),
        "{:?}",
        c.missing
    );
    assert!(c.pending_tasks.is_empty());
    assert_eq!(c.facts.len(), 2, "the other queries are kept");
    assert!(c.last_call.is_some());
}
on_both_backends!(one_failing_query_gives_a_partial_context);

/// The SQL store with one query slowed down.
struct Slow {
    inner: SqlStore,
    query: &'static str,
    delay: Duration,
}

impl Slow {
    async fn pause(&self, query: &str) {
        if query == self.query {
            tokio::time::sleep(self.delay).await;
        }
    }
}

#[async_trait]
impl CrmStore for Slow {
    async fn customer_by_phone(&self, phone: &str) -> Result<Option<CustomerRow>, PortError> {
        self.pause("customer_by_phone").await;
        self.inner.customer_by_phone(phone).await
    }
    async fn recent_facts(&self, id: i64, limit: u32) -> Result<Vec<String>, PortError> {
        self.pause("recent_facts").await;
        self.inner.recent_facts(id, limit).await
    }
    async fn last_call(&self, id: i64) -> Result<Option<LastCall>, PortError> {
        self.pause("last_call").await;
        self.inner.last_call(id).await
    }
    async fn pending_tasks(&self, id: i64, limit: u32) -> Result<Vec<TaskSummary>, PortError> {
        self.pause("pending_tasks").await;
        self.inner.pending_tasks(id, limit).await
    }
    async fn recent_summaries(&self, id: i64, limit: u32) -> Result<Vec<String>, PortError> {
        self.pause("recent_summaries").await;
        self.inner.recent_summaries(id, limit).await
    }
}

async fn nothing_waits_past_the_deadline(url: &str) {
    let db = migrated(url).await;
    seed(&db).await;
    let deadline = Duration::from_millis(200);
    let slow_lookup = Slow {
        inner: store_for(&db),
        query: "customer_by_phone",
        delay: Duration::from_secs(5),
    };
    let t = Instant::now();
    assert_eq!(
        crm::prefetch(&slow_lookup, ANA, deadline).await,
        Event::ContextTimedOut
    );
    let took = t.elapsed();
    assert!(
        took >= deadline && took < deadline + Duration::from_millis(150),
        "{took:?}"
    );
    // A slow dependent query: the context arrives at the deadline, partial.
    let slow_facts = Slow {
        inner: store_for(&db),
        query: "recent_facts",
        delay: Duration::from_secs(5),
    };
    let t = Instant::now();
    let Event::ContextArrived(ContextResult::Found(c)) =
        crm::prefetch(&slow_facts, ANA, deadline).await
    else {
        panic!("found, partially");
    };
    assert!(t.elapsed() < deadline + Duration::from_millis(150));
    assert_eq!(c.missing, ["facts (timed out)"]);
    assert_eq!(c.pending_tasks.len(), 2);

    // In a live call: the caller is treated as unknown and the prompt says why.
    let mem = MemoryPorts::new(
        MemoryCrm::default(),
        ScriptedLlm::new("Happy to help.", Duration::ZERO),
    );
    let mut ports = mem.ports();
    ports.crm = Arc::new(slow_lookup);
    let rt = Runtime::start(
        RuntimeConfig {
            prefetch_timeout: deadline,
            ..RuntimeConfig::default()
        },
        ports,
    )
    .await
    .expect("runtime");
    let (h, _sent) = call_on(&rt, "CAslow", ANA).await;
    wait_for("the name question", || {
        h.snapshot().state() == CallState::AwaitingName
    })
    .await;
    wait_for("the deadline", || {
        h.snapshot().context_status().label() == "timed out"
    })
    .await;
    say(&h, "my name is Ana Souza");
    wait_for("conversing", || {
        h.snapshot().state() == CallState::Conversing
    })
    .await;
    say(&h, "what do I owe?");
    wait_for("an LLM request", || {
        !mem.llm.requests.lock().unwrap().is_empty()
    })
    .await;
    let prompt = mem.llm.requests.lock().unwrap()[0].messages[0]
        .content
        .clone();
    assert!(
        prompt.contains("not a known customer") && prompt.contains("context: timed out"),
        "{prompt}"
    );
}
on_both_backends!(nothing_waits_past_the_deadline);

// === live calls through the real server ===

fn call_start(sid: &str, phone: &str) -> CallStart {
    CallStart {
        call_sid: CallSid(sid.into()),
        stream_sid: Some(format!("MZ{sid}")),
        caller: Caller {
            raw: phone.into(),
            e164: Some(phone.into()),
        },
        called: Some("+15550000000".into()),
        direction: "inbound".into(),
        transport: Transport::MediaStream,
        custom_parameters: BTreeMap::new(),
    }
}

/// Start a call on the runtime (Twilio's side played here: every mark is echoed at once).
async fn call_on(
    rt: &Runtime,
    sid: &str,
    phone: &str,
) -> (Arc<CallHandle>, mpsc::UnboundedReceiver<Outbound>) {
    let (tx, mut rx) = mpsc::channel(1024);
    let h = rt
        .start_call(call_start(sid, phone), tx)
        .await
        .expect("call starts");
    let (seen_tx, seen_rx) = mpsc::unbounded_channel();
    let handle = h.clone();
    tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            let _ = seen_tx.send(frame.clone());
            match frame {
                Outbound::Mark(name) => {
                    let _ = handle.send(Event::MarkEchoed { name });
                }
                Outbound::Close { .. } => return,
                _ => {}
            }
        }
    });
    (h, seen_rx)
}

fn say(h: &CallHandle, text: &str) {
    h.send(Event::CallerUtterance {
        text: text.into(),
        is_final: true,
    })
    .expect("call is live");
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn ready_app(url: &str) -> TestApp {
    let app = spawn_app(test_config(url)).await;
    let (status, body) = app.poll_readyz(Duration::from_secs(20), true).await;
    assert_eq!(status, 200, "{body}");
    app.state
        .calls()
        .standins
        .as_ref()
        .expect("stand-ins")
        .set_config(StandinConfig::instant());
    app
}

/// The system prompt of the last chat request the stand-in received.
fn last_prompt(app: &TestApp) -> String {
    let requests = app.state.calls().standins.as_ref().unwrap().requests();
    let last = requests.last().expect("a chat request");
    last["messages"][0]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn hang_up(rt: &Runtime, h: &CallHandle) {
    h.send(Event::StreamStopped).expect("call is live");
    let sid = h.sid.clone();
    wait_for("the call to end", || rt.calls.get(&sid).is_none()).await;
}

async fn the_cache_serves_repeat_callers_until_something_changes(url: &str) {
    let app = ready_app(url).await;
    let db = migrated(url).await;
    let id = seed(&db).await;
    let rt = app.state.runtime();

    let (first, _s1) = call_on(rt, "CA1", ANA).await;
    wait_for("enriched", || {
        first.snapshot().state() == CallState::Enriched
    })
    .await;
    say(&first, "What is pending on my account?");
    wait_for("the reply", || {
        !app.state
            .calls()
            .standins
            .as_ref()
            .unwrap()
            .requests()
            .is_empty()
    })
    .await;
    let prompt = last_prompt(&app);
    for expected in [
        "[CUSTOMER CONTEXT]",
        "name: Ana Souza",
        "- Prefers email over phone",
        "- Renew contract",
        "- Send invoice copy",
        "Asked about the renewal price.",
    ] {
        assert!(
            prompt.contains(expected),
            "{expected} missing from {prompt}"
        );
    }
    assert!(
        !prompt.contains("Old onboarding call"),
        "done tasks stay out"
    );
    let cache = &rt.stats.cache;
    assert_eq!(cache.misses.load(Ordering::Relaxed), 1);

    // A second call while the first is live: served from memory.
    let (second, _s2) = call_on(rt, "CA2", ANA).await;
    wait_for("enriched", || {
        second.snapshot().state() == CallState::Enriched
    })
    .await;
    assert_eq!(cache.hits.load(Ordering::Relaxed), 1);

    // A task changes: whoever changed it invalidates, and the next call sees it.
    sqlx::query("UPDATE tasks SET title = 'Renew contract (signed copy received)' WHERE customer_id = $1 AND title = 'Renew contract'")
        .bind(id)
        .execute(db.pool())
        .await
        .expect("task update");
    rt.invalidate_context(ANA).await;
    let (third, _s3) = call_on(rt, "CA3", ANA).await;
    wait_for("enriched", || {
        third.snapshot().state() == CallState::Enriched
    })
    .await;
    assert_eq!(
        cache.misses.load(Ordering::Relaxed),
        2,
        "read from the store"
    );
    say(&third, "Anything new?");
    wait_for("the reply", || {
        last_prompt(&app).contains("signed copy received")
    })
    .await;

    // A call that ends becomes the next call's "last call": the cache is dropped for it.
    for h in [&first, &second, &third] {
        hang_up(rt, h).await;
    }
    wait_for("the invalidation", || rt.caches.memory.get(ANA).is_none()).await;
    let (fourth, _s4) = call_on(rt, "CA4", ANA).await;
    wait_for("enriched", || {
        fourth.snapshot().state() == CallState::Enriched
    })
    .await;
    assert_eq!(cache.misses.load(Ordering::Relaxed), 3);
    hang_up(rt, &fourth).await;
}
on_both_backends!(the_cache_serves_repeat_callers_until_something_changes);

async fn a_new_caller_who_gave_their_name_is_known_next_time(url: &str) {
    let app = ready_app(url).await;
    let rt = app.state.runtime();
    let (first, _s1) = call_on(rt, "CAnew1", NEWCOMER).await;
    wait_for("the name question", || {
        first.snapshot().state() == CallState::AwaitingName
    })
    .await;
    say(&first, "my name is Zoe Quinn");
    wait_for("conversing", || {
        first.snapshot().state() == CallState::Conversing
    })
    .await;
    wait_for("the stored name", || {
        rt.stats.cache.invalidations.load(Ordering::Relaxed) >= 1
    })
    .await;
    let (second, _s2) = call_on(rt, "CAnew2", NEWCOMER).await;
    wait_for("enriched", || {
        second.snapshot().state() == CallState::Enriched
    })
    .await;
    assert_eq!(second.snapshot().customer_name(), Some("Zoe Quinn"));
    for h in [&first, &second] {
        hang_up(rt, h).await;
    }
}
on_both_backends!(a_new_caller_who_gave_their_name_is_known_next_time);

async fn an_unsure_name_is_settled_by_the_llm(url: &str) {
    let app = ready_app(url).await;
    let standins = app.state.calls().standins.as_ref().unwrap();
    standins.set_config(StandinConfig {
        reply: ReplyScript {
            fixed_text: Some("Will".into()),
            ..ReplyScript::default()
        },
        ..StandinConfig::instant()
    });
    let rt = app.state.runtime();
    let (h, _s) = call_on(rt, "CAwill", NEWCOMER).await;
    wait_for("the name question", || {
        h.snapshot().state() == CallState::AwaitingName
    })
    .await;
    // "Will" is also an everyday word: the rules are unsure and the LLM decides.
    say(&h, "it's Will");
    wait_for("conversing", || {
        h.snapshot().state() == CallState::Conversing
    })
    .await;
    assert_eq!(h.snapshot().customer_name(), Some("Will"));
    let request = &standins.requests()[0];
    assert!(
        request["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("NONE"),
        "{request}"
    );
    assert_eq!(request["messages"][1]["content"], "it's Will");
    // Stored like any captured name.
    let db = migrated(url).await;
    let mut name = None;
    for _ in 0..200 {
        name = sqlx::query_scalar::<_, Option<String>>(
            "SELECT name FROM customers WHERE phone_e164 = $1",
        )
        .bind(NEWCOMER)
        .fetch_optional(db.pool())
        .await
        .expect("query")
        .flatten();
        if name.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(name.as_deref(), Some("Will"));
    hang_up(rt, &h).await;
}
on_both_backends!(an_unsure_name_is_settled_by_the_llm);

async fn concurrent_names_for_one_new_number_make_one_customer(url: &str) {
    let db = migrated(url).await;
    let store = store_for(&db);
    let names = ["Zoe Quinn", "Zoë Quinn", "Zoe Q", "Z Quinn", "Zoe", "Quinn"];
    let ids = futures::future::join_all(names.iter().map(|n| store.store_name(NEWCOMER, n))).await;
    let ids: Vec<i64> = ids.into_iter().map(|r| r.expect("stored")).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM customers WHERE phone_e164 = $1")
        .bind(NEWCOMER)
        .fetch_one(db.pool())
        .await
        .expect("count");
    assert_eq!(rows, 1);
    let status: String = sqlx::query_scalar("SELECT status FROM customers WHERE phone_e164 = $1")
        .bind(NEWCOMER)
        .fetch_one(db.pool())
        .await
        .expect("status");
    assert_eq!(status, "lead");
}
on_both_backends!(concurrent_names_for_one_new_number_make_one_customer);

// === the Redis tier ===

fn redis_url() -> String {
    std::env::var("SWITCHBOARD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A phone number no other test (or run) uses, so tests can share one Redis.
fn unique_phone() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        % 10_000_000;
    format!("+1646{n:07}")
}

#[tokio::test]
async fn redis_round_trip_and_an_unreachable_redis_fails_fast() {
    let cache = RedisContextCache::new(&redis_url(), Duration::from_millis(500)).expect("url");
    let phone = unique_phone();
    let context = CustomerContext {
        customer_id: 42,
        name: Some("Ana Souza".into()),
        phone: phone.clone(),
        status: "vip".into(),
        facts: vec!["Prefers email".into()],
        ..CustomerContext::default()
    };
    assert_eq!(
        cache
            .get(&phone)
            .await
            .expect("redis answers (start it: bash .ci/run)"),
        None
    );
    cache
        .put(&phone, &context, Duration::from_secs(60))
        .await
        .expect("put");
    assert_eq!(cache.get(&phone).await.expect("get"), Some(context));
    cache.invalidate(&phone).await.expect("del");
    assert_eq!(cache.get(&phone).await.expect("get"), None);

    // Nothing listens on port 1: an error, quickly, never a hang.
    let dead =
        RedisContextCache::new("redis://127.0.0.1:1", Duration::from_millis(100)).expect("url");
    let t = Instant::now();
    assert!(dead.get(&phone).await.is_err());
    assert!(
        dead.put(&phone, &CustomerContext::default(), Duration::from_secs(1))
            .await
            .is_err()
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

async fn app_with_redis(url: &str, redis: &str) -> TestApp {
    let mut config = test_config(url);
    config.cache.redis_url = redis.to_owned();
    let app = spawn_app(config).await;
    let (status, body) = app.poll_readyz(Duration::from_secs(20), true).await;
    assert_eq!(status, 200, "{body}");
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_contexts_through_redis_and_survive_its_outage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = crate::common::sqlite_url(dir.path(), "shared.db");
    let node_a = app_with_redis(&url, &redis_url()).await;
    let node_b = app_with_redis(&url, &redis_url()).await;
    let db = migrated(&url).await;
    let phone = unique_phone();
    sqlx::query(
        "INSERT INTO customers (phone_e164, name, status, created_at_ms, updated_at_ms) VALUES ($1, 'Ana Souza', 'vip', 0, 0)",
    )
    .bind(&phone)
    .execute(db.pool())
    .await
    .expect("customer");
    node_a.state.runtime().invalidate_context(&phone).await; // a leftover from an earlier run

    let (a, _sa) = call_on(node_a.state.runtime(), "CAnodeA", &phone).await;
    wait_for("enriched on A", || {
        a.snapshot().state() == CallState::Enriched
    })
    .await;
    // The put to Redis happens beside the call; B's lookup must find it.
    let b_rt = node_b.state.runtime();
    let mut b_call = None;
    for i in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (b, sb) = call_on(b_rt, &format!("CAnodeB{i}"), &phone).await;
        wait_for("enriched on B", || {
            b.snapshot().state() == CallState::Enriched
        })
        .await;
        if b_rt.stats.cache.shared_hits.load(Ordering::Relaxed) == 1 {
            b_call = Some((b, sb));
            break;
        }
        hang_up(b_rt, &b).await;
    }
    let (b, _sb) = b_call.expect("node B was answered by Redis");
    assert_eq!(b.snapshot().customer_name(), Some("Ana Souza"));

    // Redis unreachable: a third node still finds the caller, in the database.
    let node_c = app_with_redis(&url, "redis://127.0.0.1:1").await;
    let c_rt = node_c.state.runtime();
    let (c, _sc) = call_on(c_rt, "CAnodeC", &phone).await;
    wait_for("enriched on C", || {
        c.snapshot().state() == CallState::Enriched
    })
    .await;
    assert!(c_rt.stats.cache.shared_errors.load(Ordering::Relaxed) >= 1);
    assert_eq!(c_rt.stats.cache.shared_hits.load(Ordering::Relaxed), 0);

    // The metrics show it.
    let metrics = node_c.get("/metrics").await.text().await.expect("metrics");
    assert!(
        metrics.contains("switchboard_context_cache{event=\"shared_errors\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchboard_prefetch_seconds_bucket{source=\"store\",le=\"+Inf\"} 1"),
        "{metrics}"
    );
    for (rt, h) in [(node_a.state.runtime(), &a), (b_rt, &b), (c_rt, &c)] {
        hang_up(rt, h).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_can_invalidate_a_cached_context() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = crate::common::sqlite_url(dir.path(), "api.db");
    let app = ready_app(&url).await;
    let db = migrated(&url).await;
    seed(&db).await;
    let rt = app.state.runtime();
    let (h, _s) = call_on(rt, "CAapi", ANA).await;
    wait_for("enriched", || h.snapshot().state() == CallState::Enriched).await;
    wait_for("cached", || rt.caches.memory.get(ANA).is_some()).await;
    let post = |q: &str| {
        app.client
            .post(format!(
                "{}/api/v1/customers/cache/invalidate?{q}",
                app.base_url
            ))
            .send()
    };
    // Written the way people write numbers; the region (US) fills in the country.
    let response = post("phone=(415)%20555-0101").await.expect("request");
    assert_eq!(response.status(), 200);
    assert!(rt.caches.memory.get(ANA).is_none());
    let response = post("phone=not-a-number").await.expect("request");
    assert_eq!(response.status(), 400);
    hang_up(rt, &h).await;
}
