//! Micro-benchmarks of the call runtime's hot paths: the pure `handle()` per event, and a full
//! actor round trip (event into the call's handle → applied by the actor → snapshot stored).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use switchboard_actors::machine::{CallMachine, CallState, Effect, Event, MachineConfig};
use switchboard_actors::testing::{MemoryCrm, MemoryCustomer, MemoryPorts, ScriptedLlm};
use switchboard_actors::*;

fn start(transport: Transport) -> Box<CallStart> {
    Box::new(CallStart {
        call_sid: CallSid("CAbench".into()),
        stream_sid: None,
        caller: Caller {
            raw: "+15551234567".into(),
            e164: Some("+15551234567".into()),
        },
        called: None,
        direction: "inbound".into(),
        transport,
        custom_parameters: BTreeMap::new(),
    })
}

fn marks(fx: &[Effect]) -> Vec<String> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Speak(s) if !s.mark.is_empty() => Some(s.mark.clone()),
            _ => None,
        })
        .collect()
}

/// A media-stream machine in Conversing, with a known customer.
fn conversing() -> CallMachine {
    let mut m = CallMachine::new(Arc::new(MachineConfig::default()), 0);
    m.handle(1, Event::CallStarted(start(Transport::MediaStream)));
    let fx = m.handle(
        2,
        Event::ContextArrived(ContextResult::Found(Box::new(CustomerContext {
            customer_id: 1,
            name: Some("Ana".into()),
            phone: "+15551234567".into(),
            status: "active".into(),
            facts: vec!["fact one".into(), "fact two".into()],
            ..Default::default()
        }))),
    );
    for mark in marks(&fx) {
        m.handle(3, Event::MarkEchoed { name: mark });
    }
    m.handle(
        4,
        Event::CallerUtterance {
            text: "hello".into(),
            is_final: true,
        },
    );
    assert_eq!(m.state(), CallState::Conversing);
    m
}

fn bench_machine(c: &mut Criterion) {
    let mut g = c.benchmark_group("machine");
    g.bench_function("dtmf_event", |b| {
        let mut m = conversing();
        let mut t = 10;
        b.iter(|| {
            t += 1;
            black_box(m.handle(t, Event::Dtmf { digit: "5".into() }));
        })
    });
    g.bench_function("llm_token_event", |b| {
        let mut m = conversing();
        let turn = m.generating_turn().expect("turn");
        let mut t = 10;
        b.iter(|| {
            t += 1;
            black_box(m.handle(
                t,
                Event::LlmToken {
                    turn,
                    text: "word ".into(),
                },
            ));
        })
    });
    // A whole turn: caller utterance, 12 tokens in 3 sentences, done, 3 mark echoes (17 events).
    g.bench_function("full_turn_17_events", |b| {
        b.iter_batched(
            conversing,
            |mut m| {
                let turn = m.generating_turn().expect("turn");
                let mut all = Vec::new();
                for tok in [
                    "Sure, ",
                    "I can ",
                    "help. ",
                    "Your ",
                    "plan ",
                    "renews ",
                    "soon. ",
                    "Anything ",
                    "else ",
                    "I ",
                    "can ",
                    "do?",
                ] {
                    all.extend(m.handle(
                        20,
                        Event::LlmToken {
                            turn,
                            text: tok.into(),
                        },
                    ));
                }
                all.extend(m.handle(21, Event::LlmDone { turn }));
                for mark in marks(&all) {
                    m.handle(22, Event::MarkEchoed { name: mark });
                }
                black_box(m.handle(
                    23,
                    Event::CallerUtterance {
                        text: "thanks".into(),
                        is_final: true,
                    },
                ))
            },
            criterion::BatchSize::SmallInput,
        )
    });
    g.bench_function("snapshot_clone", |b| {
        let m = conversing();
        b.iter(|| black_box(Arc::new(m.clone())))
    });
    g.finish();
}

fn bench_actor(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let (runtime, handle) = rt.block_on(async {
        let crm = MemoryCrm::with([MemoryCustomer {
            id: 1,
            name: Some("Ana".into()),
            phone: "+15551234567".into(),
            status: "active".into(),
            ..Default::default()
        }]);
        let mem = MemoryPorts::new(crm, ScriptedLlm::new("ok", Duration::from_millis(1)));
        let runtime = Runtime::start(RuntimeConfig::default(), mem.ports())
            .await
            .expect("runtime");
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        let handle = runtime
            .start_call(*start(Transport::MediaStream), tx)
            .await
            .expect("call");
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        (runtime, handle)
    });
    // An event the machine records and ignores: measures the shell (journal, cast, snapshot).
    c.bench_function("actor/event_round_trip", |b| {
        b.to_async(&rt).iter(|| {
            let handle = handle.clone();
            async move {
                let before = handle.snapshot().applied_event_id();
                handle
                    .send(Event::MarkEchoed {
                        name: "unknown".into(),
                    })
                    .expect("send");
                while handle.snapshot().applied_event_id() == before {
                    tokio::task::yield_now().await;
                }
            }
        })
    });
    drop(runtime);
}

criterion_group!(benches, bench_machine, bench_actor);
criterion_main!(benches);
