//! The customer-context cache and the LLM name fallback, through the real actors on in-memory
//! ports: cache hits skip the store, invalidation (call end, name capture, the runtime API) and
//! bypass reach it again, a failing shared tier falls through to the store, and a name the rules
//! are unsure of is settled by the LLM.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use switchboard_actors::cache::SharedContextCache;
use switchboard_actors::machine::{CallState, Event, MachineConfig};
use switchboard_actors::ports::PortError;
use switchboard_actors::testing::{MemoryCrm, MemoryCustomer, MemoryPorts, ScriptedLlm};
use switchboard_actors::*;
use tokio::sync::mpsc;

const ANA: &str = "+5511999990001";
const NEW: &str = "+5511999990002";

fn crm() -> MemoryCrm {
    MemoryCrm::with([MemoryCustomer {
        id: 7,
        name: Some("Ana Souza".into()),
        phone: ANA.into(),
        status: "active".into(),
        facts: vec!["Has a premium plan".into()],
        tasks: vec![],
        last_call: None,
    }])
}

fn config() -> RuntimeConfig {
    RuntimeConfig {
        machine: MachineConfig {
            greeting_wait_ms: 2_000,
            silence_timeout_ms: 60_000,
            ..MachineConfig::default()
        },
        flush_interval: Duration::from_millis(10),
        ..RuntimeConfig::default()
    }
}

fn start(sid: &str, phone: &str, params: &[(&str, &str)]) -> CallStart {
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
        custom_parameters: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// Echo every mark at once, so greetings "play" instantly.
fn echo_marks(handle: Arc<CallHandle>, mut rx: mpsc::Receiver<Outbound>) {
    tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            match frame {
                Outbound::Mark(name) => {
                    let _ = handle.send(Event::MarkEchoed { name });
                }
                Outbound::Close { .. } => return,
                _ => {}
            }
        }
    });
}

async fn call(rt: &Runtime, sid: &str, phone: &str, params: &[(&str, &str)]) -> Arc<CallHandle> {
    let (tx, rx) = mpsc::channel(256);
    let h = rt
        .start_call(start(sid, phone, params), tx)
        .await
        .expect("call");
    echo_marks(h.clone(), rx);
    h
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn hang_up(rt: &Runtime, h: &Arc<CallHandle>) {
    h.send(Event::StreamStopped).unwrap();
    let sid = h.sid.clone();
    wait_for("the call to end", || rt.calls.get(&sid).is_none()).await;
}

fn customer_queries(mem: &MemoryPorts) -> u64 {
    mem.crm.queries.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_call_is_served_from_the_cache_until_a_call_ends() {
    let mem = MemoryPorts::new(crm(), ScriptedLlm::new("ok", Duration::ZERO));
    let rt = Runtime::start(config(), mem.ports()).await.unwrap();
    let first = call(&rt, "CA1", ANA, &[]).await;
    wait_for("enriched", || {
        first.snapshot().state() == CallState::Enriched
    })
    .await;
    let queries = customer_queries(&mem);
    assert_eq!(queries, 5, "one customer lookup and four dependent queries");

    let second = call(&rt, "CA2", ANA, &[]).await;
    wait_for("enriched", || {
        second.snapshot().state() == CallState::Enriched
    })
    .await;
    assert_eq!(second.snapshot().customer_name(), Some("Ana Souza"));
    assert_eq!(
        customer_queries(&mem),
        queries,
        "the second lookup never reached the store"
    );
    assert_eq!(rt.stats.cache.hits.load(Ordering::Relaxed), 1);
    assert_eq!(rt.stats.cache.misses.load(Ordering::Relaxed), 1);
    assert_eq!(rt.stats.crm.latency_cached.count.load(Ordering::Relaxed), 1);
    assert_eq!(rt.stats.crm.latency_store.count.load(Ordering::Relaxed), 1);

    // Asked for explicitly, a call bypasses the cache.
    let fresh = call(&rt, "CA3", ANA, &[("context_cache", "bypass")]).await;
    wait_for("enriched", || {
        fresh.snapshot().state() == CallState::Enriched
    })
    .await;
    assert_eq!(customer_queries(&mem), queries + 5);
    assert_eq!(rt.stats.cache.bypassed.load(Ordering::Relaxed), 1);

    // A call that ends wrote a new "last call": the next call reads the store again.
    hang_up(&rt, &first).await;
    wait_for("the invalidation", || rt.caches.memory.get(ANA).is_none()).await;
    let after = call(&rt, "CA4", ANA, &[]).await;
    wait_for("enriched", || {
        after.snapshot().state() == CallState::Enriched
    })
    .await;
    assert_eq!(customer_queries(&mem), queries + 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_invalidates_on_request() {
    let mem = MemoryPorts::new(crm(), ScriptedLlm::new("ok", Duration::ZERO));
    let rt = Runtime::start(config(), mem.ports()).await.unwrap();
    let first = call(&rt, "CA1", ANA, &[]).await;
    wait_for("enriched", || {
        first.snapshot().state() == CallState::Enriched
    })
    .await;
    wait_for("cached", || rt.caches.memory.get(ANA).is_some()).await;
    // A task changed: the caller's context is stale.
    rt.invalidate_context(ANA).await;
    assert!(rt.caches.memory.get(ANA).is_none());
    assert_eq!(rt.stats.cache.invalidations.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_and_partial_results_are_not_cached() {
    let mem = MemoryPorts::new(crm(), ScriptedLlm::new("ok", Duration::ZERO));
    mem.crm.fail("recent_facts");
    let rt = Runtime::start(config(), mem.ports()).await.unwrap();
    let a = call(&rt, "CA1", ANA, &[]).await;
    let b = call(&rt, "CA2", NEW, &[]).await;
    wait_for("enriched", || a.snapshot().state() == CallState::Enriched).await;
    wait_for("not found", || {
        *b.snapshot().context_status() == ContextStatus::NotFound
    })
    .await;
    assert!(
        rt.caches.memory.is_empty(),
        "partial and not-found are never cached"
    );
}

/// A shared tier in memory that can be made to fail like an unreachable Redis.
#[derive(Default)]
struct MemoryShared {
    map: Mutex<HashMap<String, CustomerContext>>,
    down: AtomicBool,
    puts: AtomicU64,
}

#[async_trait]
impl SharedContextCache for MemoryShared {
    async fn get(&self, phone: &str) -> Result<Option<CustomerContext>, PortError> {
        if self.down.load(Ordering::Relaxed) {
            return Err(PortError::unavailable("redis: connection refused"));
        }
        Ok(self.map.lock().unwrap().get(phone).cloned())
    }
    async fn put(&self, phone: &str, c: &CustomerContext, _ttl: Duration) -> Result<(), PortError> {
        if self.down.load(Ordering::Relaxed) {
            return Err(PortError::unavailable("redis: connection refused"));
        }
        self.puts.fetch_add(1, Ordering::Relaxed);
        self.map.lock().unwrap().insert(phone.into(), c.clone());
        Ok(())
    }
    async fn invalidate(&self, phone: &str) -> Result<(), PortError> {
        if self.down.load(Ordering::Relaxed) {
            return Err(PortError::unavailable("redis: connection refused"));
        }
        self.map.lock().unwrap().remove(phone);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_tier_serves_other_nodes_and_an_outage_falls_through_to_the_store() {
    let shared = Arc::new(MemoryShared::default());
    // Node A loads from the store and fills the shared tier.
    let mem_a = MemoryPorts::new(crm(), ScriptedLlm::new("ok", Duration::ZERO));
    let node_a = Runtime::start_with_shared_cache(config(), mem_a.ports(), Some(shared.clone()))
        .await
        .unwrap();
    let a = call(&node_a, "CA1", ANA, &[]).await;
    wait_for("enriched", || a.snapshot().state() == CallState::Enriched).await;
    wait_for("the shared put", || {
        shared.puts.load(Ordering::Relaxed) == 1
    })
    .await;

    // Node B (empty memory tier) is answered by the shared tier without touching its store.
    let mem_b = MemoryPorts::new(crm(), ScriptedLlm::new("ok", Duration::ZERO));
    let node_b = Runtime::start_with_shared_cache(config(), mem_b.ports(), Some(shared.clone()))
        .await
        .unwrap();
    let b = call(&node_b, "CB1", ANA, &[]).await;
    wait_for("enriched", || b.snapshot().state() == CallState::Enriched).await;
    assert_eq!(customer_queries(&mem_b), 0);
    assert_eq!(node_b.stats.cache.shared_hits.load(Ordering::Relaxed), 1);

    // Redis goes down: node C still finds the caller, from its store.
    shared.down.store(true, Ordering::Relaxed);
    let mem_c = MemoryPorts::new(crm(), ScriptedLlm::new("ok", Duration::ZERO));
    let node_c = Runtime::start_with_shared_cache(config(), mem_c.ports(), Some(shared.clone()))
        .await
        .unwrap();
    let c = call(&node_c, "CC1", ANA, &[]).await;
    wait_for("enriched", || c.snapshot().state() == CallState::Enriched).await;
    assert_eq!(c.snapshot().customer_name(), Some("Ana Souza"));
    assert_eq!(customer_queries(&mem_c), 5);
    assert!(node_c.stats.cache.shared_errors.load(Ordering::Relaxed) >= 1);

    // Back up: an invalidation on node A clears the shared tier for everyone.
    shared.down.store(false, Ordering::Relaxed);
    node_a.invalidate_context(ANA).await;
    assert!(shared.map.lock().unwrap().is_empty());
}

async fn capture_name(llm_reply: &str, utterance: &str) -> (Arc<CallHandle>, MemoryPorts, Runtime) {
    let mem = MemoryPorts::new(crm(), ScriptedLlm::new(llm_reply, Duration::ZERO));
    let rt = Runtime::start(config(), mem.ports()).await.unwrap();
    let h = call(&rt, "CA1", NEW, &[]).await;
    wait_for("the name question", || {
        h.snapshot().state() == CallState::AwaitingName
    })
    .await;
    h.send(Event::CallerUtterance {
        text: utterance.into(),
        is_final: true,
    })
    .unwrap();
    (h, mem, rt)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsure_name_is_settled_by_the_llm_and_stored() {
    // "it's Will" is unsure for the rules ("will" is an everyday word).
    let (h, mem, rt) = capture_name("Will", "it's Will").await;
    wait_for("conversing", || {
        h.snapshot().state() == CallState::Conversing
    })
    .await;
    assert_eq!(h.snapshot().customer_name(), Some("Will"));
    assert_eq!(h.snapshot().name_source(), Some(NameSource::Captured));
    wait_for("the stored name", || {
        !mem.names.stored.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(
        mem.names.stored.lock().unwrap()[0],
        (NEW.to_owned(), "Will".to_owned())
    );
    // The request was short and structured: the instruction, then the reply itself.
    let request = mem.llm.requests.lock().unwrap()[0].clone();
    assert_eq!(request.messages.len(), 2);
    assert!(request.messages[0].content.contains("NONE"));
    assert_eq!(request.messages[1].content, "it's Will");
    assert_eq!(rt.stats.names.llm_asked.load(Ordering::Relaxed), 1);
    assert_eq!(rt.stats.names.llm_named.load(Ordering::Relaxed), 1);
    // The stored name invalidated the phone's context.
    wait_for("the invalidation", || {
        rt.stats.cache.invalidations.load(Ordering::Relaxed) == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_llm_answer_that_was_not_said_is_no_name() {
    // The model "answers" with a name the caller never said: rejected, the caller is asked again.
    let (h, mem, rt) = capture_name("Robert", "it's Will").await;
    wait_for("the llm request", || {
        !mem.llm.requests.lock().unwrap().is_empty()
    })
    .await;
    wait_for("the rejection", || {
        rt.stats.names.llm_no_name.load(Ordering::Relaxed) == 1
    })
    .await;
    assert_eq!(h.snapshot().customer_name(), None);
    assert!(mem.names.stored.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sure_answer_never_asks_the_llm() {
    let (h, mem, _rt) = capture_name("Robert", "my name is Maria Silva").await;
    wait_for("conversing", || {
        h.snapshot().state() == CallState::Conversing
    })
    .await;
    assert_eq!(h.snapshot().customer_name(), Some("Maria Silva"));
    assert!(mem.llm.requests.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_llm_is_no_name_within_the_deadline() {
    let mem = MemoryPorts::new(crm(), ScriptedLlm::new("Will", Duration::from_secs(5)));
    let rt = Runtime::start(
        RuntimeConfig {
            llm_name_deadline: Duration::from_millis(100),
            ..config()
        },
        mem.ports(),
    )
    .await
    .unwrap();
    let h = call(&rt, "CA1", NEW, &[]).await;
    wait_for("the name question", || {
        h.snapshot().state() == CallState::AwaitingName
    })
    .await;
    let asked = h.snapshot().conversation().len();
    h.send(Event::CallerUtterance {
        text: "it's Will".into(),
        is_final: true,
    })
    .unwrap();
    // Within the LLM deadline (not the 5 s reply) the caller is asked again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(h.snapshot().customer_name(), None);
    assert!(
        h.snapshot().conversation().len() > asked + 1,
        "the agent asked again: {:?}",
        h.snapshot().conversation()
    );
}
