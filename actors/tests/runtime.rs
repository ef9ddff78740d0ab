//! Actor-level tests: whole calls through the real actors and supervisor, on in-memory ports,
//! with a simulated Twilio that "plays" outbound audio and echoes marks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use switchboard_actors::machine::{CallState, Event, MachineConfig};
use switchboard_actors::testing::{MemoryCrm, MemoryCustomer, MemoryPorts, ScriptedLlm};
use switchboard_actors::*;
use switchboard_actors::{ports, testing};
use tokio::sync::mpsc;

const ANA: &str = "+5511999990001";

fn crm() -> MemoryCrm {
    MemoryCrm::with([MemoryCustomer {
        id: 7,
        name: Some("Ana Souza".into()),
        phone: ANA.into(),
        status: "active".into(),
        facts: vec!["Has a premium plan".into()],
        tasks: vec![TaskSummary {
            title: "Renew contract".into(),
            due_at_ms: None,
            priority: 1,
        }],
        last_call: None,
    }])
}

fn config(max_restarts: usize) -> RuntimeConfig {
    RuntimeConfig {
        machine: MachineConfig {
            greeting_wait_ms: 2_000,
            silence_timeout_ms: 60_000,
            ..MachineConfig::default()
        },
        max_restarts,
        flush_interval: Duration::from_millis(10),
        ..RuntimeConfig::default()
    }
}

fn start(sid: &str, phone: &str) -> CallStart {
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

/// Plays Twilio's side of the outbound queue: every mark is echoed after `play` (the audio before
/// it "played"). Returns a receiver of everything the server sent.
fn simulate_twilio(
    handle: Arc<CallHandle>,
    mut rx: mpsc::Receiver<Outbound>,
    play: Duration,
) -> mpsc::UnboundedReceiver<Outbound> {
    let (seen_tx, seen_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            let _ = seen_tx.send(frame.clone());
            match frame {
                Outbound::Mark(name) => {
                    let h = handle.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(play).await;
                        let _ = h.send(Event::MarkEchoed { name });
                    });
                }
                Outbound::Close { .. } => return,
                _ => {}
            }
        }
    });
    seen_rx
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

fn agent_replies(h: &CallHandle) -> usize {
    h.snapshot()
        .conversation()
        .iter()
        .filter(|m| m.role == Role::Agent && m.text.starts_with("Sure thing"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_caller_is_greeted_by_name_and_the_whole_call_is_persisted() {
    let mem = MemoryPorts::new(
        crm(),
        ScriptedLlm::new(
            "Sure thing, your contract renewal is pending.",
            Duration::from_millis(2),
        ),
    );
    let rt = Runtime::start(config(3), mem.ports())
        .await
        .expect("runtime");
    let (tx, rx) = mpsc::channel(256);
    let h = rt.start_call(start("CA1", ANA), tx).await.expect("call");
    let _seen = simulate_twilio(h.clone(), rx, Duration::from_millis(5));
    wait_for("enriched", || h.snapshot().state() == CallState::Enriched).await;
    assert_eq!(h.snapshot().customer_name(), Some("Ana Souza"));
    h.send(Event::CallerUtterance {
        text: "What's pending on my account?".into(),
        is_final: true,
    })
    .unwrap();
    wait_for("the agent reply", || agent_replies(&h) == 1).await;
    // The LLM saw the customer's context.
    let prompt = mem.llm.requests.lock().unwrap()[0].messages[0]
        .content
        .clone();
    assert!(
        prompt.contains("name: Ana Souza") && prompt.contains("- Renew contract"),
        "{prompt}"
    );
    h.send(Event::StreamStopped).unwrap();
    let sid = CallSid("CA1".into());
    wait_for("the call record", || {
        mem.conversations.record(&sid).is_some()
    })
    .await;
    wait_for("the call to leave the registry", || {
        rt.calls.get(&sid).is_none()
    })
    .await;
    let transcript = mem.conversations.transcript(&sid);
    let lines: Vec<_> = transcript
        .iter()
        .map(|m| (m.role, m.text.as_str()))
        .collect();
    assert_eq!(
        lines,
        vec![
            (
                Role::Agent,
                "Welcome back, Ana Souza! How can I help you today?"
            ),
            (Role::Caller, "What's pending on my account?"),
            (Role::Agent, "Sure thing, your contract renewal is pending."),
        ]
    );
    // The Finalizing → Ended row is written on the flush after the call record.
    wait_for("the last transition", || {
        mem.conversations.states(&sid).last() == Some(&CallState::Ended)
    })
    .await;
    assert_eq!(
        mem.conversations.states(&sid),
        vec![
            CallState::Greeting,
            CallState::Enriched,
            CallState::Conversing,
            CallState::Finalizing,
            CallState::Ended
        ]
    );
    let record = mem.conversations.record(&sid).unwrap();
    assert_eq!(
        (record.customer_id, record.restarts, record.outcome.as_str()),
        (Some(7), 0, "caller hung up")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_under_the_budget_lose_and_duplicate_nothing() {
    let mem = MemoryPorts::new(
        crm(),
        ScriptedLlm::new(
            "Sure thing, I can help with that right away.",
            Duration::from_millis(3),
        ),
    );
    let rt = Runtime::start(config(3), mem.ports())
        .await
        .expect("runtime");
    let (tx, rx) = mpsc::channel(256);
    let sid = CallSid("CA2".into());
    let h = rt.start_call(start("CA2", ANA), tx).await.expect("call");
    let _seen = simulate_twilio(h.clone(), rx, Duration::from_millis(5));
    wait_for("enriched", || h.snapshot().state() == CallState::Enriched).await;
    let mut crashes = 0;
    for turn in 0..6 {
        h.send(Event::CallerUtterance {
            text: format!("question number {turn}"),
            is_final: true,
        })
        .unwrap();
        // Crash mid-turn (tokens streaming, marks in flight) on three of the turns.
        if turn % 2 == 1 {
            tokio::time::sleep(Duration::from_millis(8)).await;
            assert!(rt.crash_call(&sid).await, "the call is live");
            crashes += 1;
            wait_for("the restart", || h.snapshot().restarts() == crashes).await;
        }
        wait_for("the agent reply", || agent_replies(&h) == turn + 1).await;
    }
    assert_eq!(
        h.snapshot().state(),
        CallState::Conversing,
        "the caller stayed on the line"
    );
    h.send(Event::StreamStopped).unwrap();
    wait_for("the call record", || {
        mem.conversations.record(&sid).is_some()
    })
    .await;
    assert_eq!(mem.conversations.record(&sid).unwrap().restarts, 3);
    let transcript = mem.conversations.transcript(&sid);
    let seqs: Vec<u64> = transcript.iter().map(|m| m.seq).collect();
    assert_eq!(
        seqs,
        (0..transcript.len() as u64).collect::<Vec<_>>(),
        "no gap in the stored sequence"
    );
    let callers: Vec<_> = transcript
        .iter()
        .filter(|m| m.role == Role::Caller)
        .map(|m| m.text.clone())
        .collect();
    assert_eq!(
        callers,
        (0..6)
            .map(|t| format!("question number {t}"))
            .collect::<Vec<_>>(),
        "every turn once, in order"
    );
    for (i, m) in transcript.iter().enumerate().skip(1) {
        if m.role == Role::Caller {
            let reply = &transcript[i + 1];
            assert_eq!(
                (reply.role, reply.text.as_str()),
                (Role::Agent, "Sure thing, I can help with that right away.")
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_restart_budget_the_call_apologises_and_is_finalized() {
    let mem = MemoryPorts::new(
        crm(),
        ScriptedLlm::new("Sure thing.", Duration::from_millis(1)),
    );
    let rt = Runtime::start(config(2), mem.ports())
        .await
        .expect("runtime");
    let (tx, rx) = mpsc::channel(256);
    let sid = CallSid("CA3".into());
    let h = rt.start_call(start("CA3", ANA), tx).await.expect("call");
    let mut seen = simulate_twilio(h.clone(), rx, Duration::from_millis(2));
    wait_for("enriched", || h.snapshot().state() == CallState::Enriched).await;
    h.send(Event::CallerUtterance {
        text: "hello".into(),
        is_final: true,
    })
    .unwrap();
    for n in 1..=2 {
        assert!(rt.crash_call(&sid).await);
        wait_for("the restart", || h.snapshot().restarts() == n).await;
    }
    assert!(rt.crash_call(&sid).await);
    wait_for("the call record", || {
        mem.conversations.record(&sid).is_some()
    })
    .await;
    let record = mem.conversations.record(&sid).unwrap();
    assert_eq!(record.outcome, "technical failure");
    assert_eq!(record.restarts, 3);
    let transcript = mem.conversations.transcript(&sid);
    assert!(
        transcript
            .iter()
            .any(|m| m.role == Role::Caller && m.text == "hello"),
        "nothing said before is lost"
    );
    assert_eq!(
        transcript.last().map(|m| m.text.clone()),
        Some(MachineConfig::default().fatal_apology)
    );
    // The apology is played before the socket is closed.
    let mut frames = Vec::new();
    while let Ok(Some(f)) = tokio::time::timeout(Duration::from_secs(5), seen.recv()).await {
        let close = matches!(f, Outbound::Close { .. });
        frames.push(f);
        if close {
            break;
        }
    }
    assert!(
        matches!(frames.last(), Some(Outbound::Close { .. })),
        "the call was hung up"
    );
    wait_for("the call to leave the registry", || {
        rt.calls.get(&sid).is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_crm_is_shed_instead_of_queueing_without_bound() {
    let slow = crm();
    slow.delay("customer_by_phone", Duration::from_millis(400));
    let mem = MemoryPorts::new(slow, ScriptedLlm::new("ok", Duration::from_millis(1)));
    let mut cfg = config(3);
    cfg.max_prefetch_in_flight = 4;
    let rt = Runtime::start(cfg, mem.ports()).await.expect("runtime");
    let mut handles = Vec::new();
    for i in 0..40 {
        let (tx, rx) = mpsc::channel(256);
        let h = rt
            .start_call(start(&format!("CAshed{i}"), ANA), tx)
            .await
            .expect("call");
        handles.push((h.clone(), simulate_twilio(h, rx, Duration::from_millis(1))));
    }
    wait_for("all calls to have an answer from the CRM", || {
        handles
            .iter()
            .all(|(h, _)| *h.snapshot().context_status() != ContextStatus::Pending)
    })
    .await;
    let overloaded = handles
        .iter()
        .filter(|(h, _)| matches!(h.snapshot().context_status(), ContextStatus::Failed(r) if r.starts_with("CRM overloaded")))
        .count();
    assert_eq!(
        overloaded, 36,
        "only max_prefetch_in_flight lookups run at once"
    );
    assert_eq!(rt.stats.crm.shed.load(Ordering::Relaxed), 36);
    // The shed calls were greeted anyway (generic greeting), without waiting for the slow CRM.
    assert!(
        handles
            .iter()
            .all(|(h, _)| h.snapshot().state() != CallState::Connected)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_shared_actor_is_restarted_and_calls_keep_working() {
    let mem = MemoryPorts::new(
        crm(),
        ScriptedLlm::new("Sure thing.", Duration::from_millis(1)),
    );
    let rt = Runtime::start(config(3), mem.ports())
        .await
        .expect("runtime");
    let before = rt.services.names.actor().get_id();
    rt.services.names.actor().kill();
    wait_for("a new Names actor", || {
        rt.services.names.actor().get_id() != before
    })
    .await;
    let (tx, rx) = mpsc::channel(256);
    let h = rt
        .start_call(start("CA5", "+15550001111"), tx)
        .await
        .expect("call");
    let _seen = simulate_twilio(h.clone(), rx, Duration::from_millis(2));
    wait_for("awaiting name", || {
        h.snapshot().state() == CallState::AwaitingName
    })
    .await;
    h.send(Event::CallerUtterance {
        text: "my name is Carla Dias".into(),
        is_final: true,
    })
    .unwrap();
    wait_for("conversing", || {
        h.snapshot().state() == CallState::Conversing
    })
    .await;
    assert_eq!(h.snapshot().customer_name(), Some("Carla Dias"));
    wait_for("the name stored", || {
        mem.names.stored.lock().unwrap().len() == 1
    })
    .await;
}

/// A store whose first write panics: the Persistence actor dies mid-write.
struct PanicOnce {
    inner: Arc<testing::MemoryConversations>,
    armed: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl ports::ConversationStore for PanicOnce {
    async fn write_batch(&self, batch: &[ports::PersistRecord]) -> Result<(), ports::PortError> {
        if self.armed.swap(false, Ordering::AcqRel) {
            panic!("storage driver bug");
        }
        self.inner.write_batch(batch).await
    }
    async fn write_call_record(&self, record: &CallRecord) -> Result<(), ports::PortError> {
        self.inner.write_call_record(record).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_persistence_actor_dying_mid_write_loses_no_row() {
    let mem = MemoryPorts::new(
        crm(),
        ScriptedLlm::new("Sure thing.", Duration::from_millis(1)),
    );
    let mut ports = mem.ports();
    ports.conversations = Arc::new(PanicOnce {
        inner: mem.conversations.clone(),
        armed: true.into(),
    });
    let rt = Runtime::start(config(3), ports).await.expect("runtime");
    let before = rt.services.persistence.actor().get_id();
    let (tx, rx) = mpsc::channel(256);
    let sid = CallSid("CA7".into());
    let h = rt.start_call(start("CA7", ANA), tx).await.expect("call");
    let _seen = simulate_twilio(h.clone(), rx, Duration::from_millis(2));
    wait_for("enriched", || h.snapshot().state() == CallState::Enriched).await;
    h.send(Event::CallerUtterance {
        text: "hello".into(),
        is_final: true,
    })
    .unwrap();
    wait_for("reply", || agent_replies(&h) == 1).await;
    h.send(Event::StreamStopped).unwrap();
    wait_for("the call record", || {
        mem.conversations.record(&sid).is_some()
    })
    .await;
    assert_ne!(
        rt.services.persistence.actor().get_id(),
        before,
        "the actor was replaced"
    );
    assert_eq!(mem.conversations.transcript(&sid).len(), 3);
    wait_for("the last transition", || {
        mem.conversations.states(&sid).last() == Some(&CallState::Ended)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_written_while_the_database_is_down_arrive_once_it_is_back() {
    let mem = MemoryPorts::new(
        crm(),
        ScriptedLlm::new("Sure thing.", Duration::from_millis(1)),
    );
    let rt = Runtime::start(config(3), mem.ports())
        .await
        .expect("runtime");
    mem.conversations.set_down(true);
    let (tx, rx) = mpsc::channel(256);
    let sid = CallSid("CA6".into());
    let h = rt.start_call(start("CA6", ANA), tx).await.expect("call");
    let _seen = simulate_twilio(h.clone(), rx, Duration::from_millis(2));
    wait_for("enriched", || h.snapshot().state() == CallState::Enriched).await;
    for i in 0..3 {
        h.send(Event::CallerUtterance {
            text: format!("turn {i}"),
            is_final: true,
        })
        .unwrap();
        wait_for("reply", || agent_replies(&h) == i + 1).await;
    }
    assert!(
        mem.conversations.transcript(&sid).is_empty(),
        "nothing could be written yet"
    );
    assert!(rt.persistence_backlog() > 0);
    mem.conversations.set_down(false);
    h.send(Event::StreamStopped).unwrap();
    wait_for("the call record", || {
        mem.conversations.record(&sid).is_some()
    })
    .await;
    let transcript = mem.conversations.transcript(&sid);
    assert_eq!(
        transcript.iter().filter(|m| m.role == Role::Caller).count(),
        3
    );
    assert_eq!(transcript.len(), 7, "greeting + 3 turns × (caller, agent)");
    assert_eq!(rt.flush().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_gets_its_call_ended_instead_of_growing_memory() {
    let mem = MemoryPorts::new(
        crm(),
        ScriptedLlm::new("Sure thing.", Duration::from_millis(1)),
    );
    let mut cfg = config(3);
    cfg.machine.finalize_deadline_ms = 300;
    let rt = Runtime::start(cfg, mem.ports()).await.expect("runtime");
    // A writer that never drains: room for two frames only.
    let (tx, _never_read) = mpsc::channel(2);
    let sid = CallSid("CAstuck".into());
    let h = rt
        .start_call(start("CAstuck", ANA), tx)
        .await
        .expect("call");
    // The greeting's audio and mark fill the queue (nobody plays them, so no mark comes back).
    wait_for("the greeting to be queued", || {
        *h.snapshot().context_status() != ContextStatus::Pending
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The caller talks over it: `clear` cannot be queued any more.
    let _ = h.send(Event::CallerUtterance {
        text: "are you there?".into(),
        is_final: true,
    });
    wait_for("the call to be ended", || {
        mem.conversations.record(&sid).is_some()
    })
    .await;
    assert!(h.outbound_stuck(), "the full queue was noticed");
    assert_eq!(
        mem.conversations.record(&sid).unwrap().outcome,
        "technical failure"
    );
    wait_for("the call to leave the registry", || {
        rt.calls.get(&sid).is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_call_runs_once_through_the_ports_and_the_model_answers_with_its_result() {
    let llm = ScriptedLlm::new("Sure thing, I created that task.", Duration::from_millis(2));
    llm.tool_script
        .lock()
        .unwrap()
        .push_back(vec![ToolCallRequest {
            id: "call_a".into(),
            name: "create_task".into(),
            arguments: r#"{"title":"Call Ana back about the renewal","priority":2}"#.into(),
        }]);
    let mem = MemoryPorts::new(crm(), llm);
    let rt = Runtime::start(config(3), mem.ports())
        .await
        .expect("runtime");
    let (tx, rx) = mpsc::channel(256);
    let h = rt
        .start_call(start("CA-tools", ANA), tx)
        .await
        .expect("call");
    let _seen = simulate_twilio(h.clone(), rx, Duration::from_millis(5));
    wait_for("enriched", || h.snapshot().state() == CallState::Enriched).await;
    h.send(Event::CallerUtterance {
        text: "Please have someone call me back about the renewal.".into(),
        is_final: true,
    })
    .unwrap();
    wait_for("the agent reply", || agent_replies(&h) == 1).await;
    let created = mem.tasks.created.lock().unwrap().clone();
    assert_eq!(created.len(), 1, "the tool ran exactly once");
    assert_eq!(created[0].customer_id, 7, "for the caller");
    assert_eq!(created[0].title, "Call Ana back about the renewal");
    assert_eq!(created[0].priority, 2);
    // The second request carried the tool's result back to the model.
    let requests = mem.llm.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2);
    let result = requests[1]
        .messages
        .iter()
        .find(|m| m.role == "tool")
        .expect("a tool message");
    assert_eq!(result.tool_call_id.as_deref(), Some("call_a"));
    assert!(
        result.content.contains("\"created\":true"),
        "{}",
        result.content
    );
    let tool_lines = h
        .snapshot()
        .conversation()
        .iter()
        .filter(|m| m.role == Role::Tool)
        .count();
    assert_eq!(tool_lines, 1, "the exchange is in the transcript");
    h.send(Event::StreamStopped).unwrap();
}
