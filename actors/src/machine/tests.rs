//! Table-driven tests of the call machine: every state × event, then the behaviours a caller
//! would notice (late context, barge-in, name capture, timers, finalizing). Time is simulated.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;

const T0: Millis = 1_700_000_000_000;

fn start(transport: Transport, phone: Option<&str>) -> Box<CallStart> {
    Box::new(CallStart {
        call_sid: CallSid("CA0001".into()),
        stream_sid: Some("MZ0001".into()),
        caller: Caller {
            raw: phone.unwrap_or("anonymous").into(),
            e164: phone.map(str::to_owned),
        },
        called: Some("+15557654321".into()),
        direction: "inbound".into(),
        transport,
        custom_parameters: BTreeMap::new(),
    })
}

fn customer(name: Option<&str>) -> ContextResult {
    ContextResult::Found(Box::new(CustomerContext {
        customer_id: 42,
        name: name.map(str::to_owned),
        phone: "+15551234567".into(),
        status: "active".into(),
        facts: vec!["Prefers email".into()],
        pending_tasks: vec![TaskSummary {
            title: "Send invoice".into(),
            due_at_ms: Some(T0),
            priority: 1,
        }],
        ..Default::default()
    }))
}

/// A machine plus a simulated shell that remembers what the machine asked for.
struct Sim {
    m: CallMachine,
    now: Millis,
    effects: Vec<Effect>,
    /// Marks sent and not yet echoed, as Twilio would hold them.
    pending_marks: Vec<String>,
}

impl Sim {
    fn new() -> Self {
        Sim::with(MachineConfig::default())
    }
    fn with(config: MachineConfig) -> Self {
        Sim {
            m: CallMachine::new(Arc::new(config), T0),
            now: T0,
            effects: Vec::new(),
            pending_marks: Vec::new(),
        }
    }
    fn send(&mut self, e: Event) -> Vec<Effect> {
        self.now += 10;
        let fx = self.m.handle(self.now, e);
        for e in &fx {
            match e {
                Effect::Speak(s) if !s.mark.is_empty() => self.pending_marks.push(s.mark.clone()),
                // `clear` drops queued audio; its marks come back at once and are not "played".
                Effect::ClearPlayback => self.pending_marks.clear(),
                _ => {}
            }
        }
        self.effects.extend(fx.iter().cloned());
        fx
    }
    /// Twilio finishes playing what is queued now (not what the machine says in response).
    fn play_all(&mut self) {
        for mark in std::mem::take(&mut self.pending_marks) {
            self.send(Event::MarkEchoed { name: mark });
        }
    }
    fn last_turn(&self) -> u64 {
        self.m.generating_turn().expect("an LLM turn is streaming")
    }
    fn state(&self) -> CallState {
        self.m.state()
    }
}

fn spoken(fx: &[Effect]) -> Vec<String> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Speak(s) => Some(s.text.clone()),
            _ => None,
        })
        .collect()
}

fn persisted(fx: &[Effect]) -> Vec<(Role, String, bool)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::PersistMessage(m) => Some((m.role, m.text.clone(), m.interrupted)),
            _ => None,
        })
        .collect()
}

fn ignored(fx: &[Effect]) -> bool {
    fx.iter().any(|e| matches!(e, Effect::Ignored { .. }))
}

/// Drive a fresh media-stream call into `state` along the usual path.
fn machine_in(state: CallState) -> Sim {
    let mut s = Sim::new();
    match state {
        CallState::Connected => {}
        CallState::Greeting => {
            s.send(Event::CallStarted(start(
                Transport::MediaStream,
                Some("+15551234567"),
            )));
            s.send(Event::ContextArrived(ContextResult::NotFound));
        }
        CallState::AwaitingName => {
            s = machine_in(CallState::Greeting);
            s.play_all();
        }
        CallState::Enriched => {
            s.send(Event::CallStarted(start(
                Transport::MediaStream,
                Some("+15551234567"),
            )));
            s.send(Event::ContextArrived(customer(Some("Ana Souza"))));
            // The greeting, then the welcome by name that follows it.
            s.play_all();
            s.play_all();
        }
        CallState::Conversing => {
            s = machine_in(CallState::Enriched);
            s.send(Event::CallerUtterance {
                text: "What are my open tasks?".into(),
                is_final: true,
            });
        }
        CallState::Finalizing => {
            s = machine_in(CallState::Conversing);
            s.send(Event::StreamStopped);
        }
        CallState::Ended => {
            s = machine_in(CallState::Finalizing);
            s.send(Event::Persisted);
        }
    }
    assert_eq!(s.state(), state, "setup reached the wrong state");
    s.effects.clear();
    s
}

/// The sample events of the table, by row name.
fn sample_events() -> Vec<(&'static str, Event)> {
    vec![
        (
            "call_started",
            Event::CallStarted(start(Transport::MediaStream, Some("+15550000000"))),
        ),
        ("greeting_played", Event::GreetingPlayed),
        (
            "context_found",
            Event::ContextArrived(customer(Some("Ana Souza"))),
        ),
        (
            "context_not_found",
            Event::ContextArrived(ContextResult::NotFound),
        ),
        (
            "context_failed",
            Event::ContextFailed {
                reason: "database unreachable".into(),
            },
        ),
        ("context_timed_out", Event::ContextTimedOut),
        ("caller_started_speaking", Event::CallerStartedSpeaking),
        (
            "caller_utterance",
            Event::CallerUtterance {
                text: "hello there".into(),
                is_final: true,
            },
        ),
        (
            "caller_partial",
            Event::CallerUtterance {
                text: "hel".into(),
                is_final: false,
            },
        ),
        (
            "agent_interrupted",
            Event::AgentInterrupted {
                heard: Some("Thanks".into()),
            },
        ),
        (
            "llm_token_stale",
            Event::LlmToken {
                turn: 999,
                text: "x".into(),
            },
        ),
        ("llm_done_stale", Event::LlmDone { turn: 999 }),
        (
            "llm_failed_stale",
            Event::LlmFailed {
                turn: 999,
                reason: "x".into(),
            },
        ),
        (
            "name_captured",
            Event::NameCaptured {
                attempt: 1,
                name: "Bob".into(),
            },
        ),
        ("name_not_found", Event::NameNotFound { attempt: 1 }),
        ("dtmf", Event::Dtmf { digit: "5".into() }),
        (
            "mark_unknown",
            Event::MarkEchoed {
                name: "nobody-sent-this".into(),
            },
        ),
        ("operator_hangup", Event::OperatorHangup),
        ("stream_stopped", Event::StreamStopped),
        (
            "fatal",
            Event::Fatal {
                reason: "restart budget exhausted".into(),
            },
        ),
        (
            "timer_stale",
            Event::TimerFired {
                kind: TimerKind::Silence,
                generation: 999,
            },
        ),
        ("persisted", Event::Persisted),
        (
            "llm_tool_call_stale",
            Event::LlmToolCall {
                turn: 999,
                call: tool_call("call_x", "get_pending_tasks", "{}"),
            },
        ),
        (
            "tool_result_unknown",
            Event::ToolResult {
                turn: 999,
                id: "call_nobody".into(),
                content: "{}".into(),
                ok: true,
            },
        ),
    ]
}

fn tool_call(id: &str, name: &str, arguments: &str) -> ToolCallRequest {
    ToolCallRequest {
        id: id.into(),
        name: name.into(),
        arguments: arguments.into(),
    }
}

use CallState::{
    AwaitingName as Aw, Connected as Co, Conversing as Cv, Ended as En, Enriched as Er,
    Finalizing as Fi, Greeting as Gr,
};

/// Expected state after the event, per starting state (Co, Gr, Aw, Er, Cv, Fi, En), and whether
/// the event is ignored ("i") or handled ("h") there.
fn table() -> Vec<(&'static str, [CallState; 7], &'static str)> {
    vec![
        ("call_started", [Gr, Gr, Aw, Er, Cv, Fi, En], "hiiiiii"),
        ("greeting_played", [Co, Aw, Aw, Er, Cv, Fi, En], "ihiiiii"),
        ("context_found", [Co, Gr, Er, Er, Cv, Fi, En], "ihhhhhi"),
        ("context_not_found", [Co, Gr, Aw, Er, Cv, Fi, En], "ihhhhhi"),
        ("context_failed", [Co, Gr, Aw, Er, Cv, Fi, En], "ihhhhhi"),
        ("context_timed_out", [Co, Gr, Aw, Er, Cv, Fi, En], "ihhhhhi"),
        (
            "caller_started_speaking",
            [Co, Aw, Aw, Er, Cv, Fi, En],
            "ihhhhii",
        ),
        ("caller_utterance", [Co, Aw, Aw, Cv, Cv, Fi, En], "ihhhhhi"),
        ("caller_partial", [Co, Aw, Aw, Er, Cv, Fi, En], "ihhhhii"),
        ("agent_interrupted", [Co, Aw, Aw, Er, Cv, Fi, En], "ihhihii"),
        ("llm_token_stale", [Co, Gr, Aw, Er, Cv, Fi, En], "iiiiiii"),
        ("llm_done_stale", [Co, Gr, Aw, Er, Cv, Fi, En], "iiiiiii"),
        ("llm_failed_stale", [Co, Gr, Aw, Er, Cv, Fi, En], "iiiiiii"),
        ("name_captured", [Co, Gr, Cv, Er, Cv, Fi, En], "iihiiii"),
        ("name_not_found", [Co, Gr, Aw, Er, Cv, Fi, En], "iihiiii"),
        ("dtmf", [Co, Gr, Aw, Er, Cv, Fi, En], "ihhhhii"),
        ("mark_unknown", [Co, Gr, Aw, Er, Cv, Fi, En], "iiiiiii"),
        ("operator_hangup", [Fi, Fi, Fi, Fi, Fi, Fi, En], "hhhhhii"),
        ("stream_stopped", [Fi, Fi, Fi, Fi, Fi, Fi, En], "hhhhhii"),
        ("fatal", [Fi, Fi, Fi, Fi, Fi, Fi, En], "hhhhhii"),
        ("timer_stale", [Co, Gr, Aw, Er, Cv, Fi, En], "iiiiiii"),
        ("persisted", [Co, Gr, Aw, Er, Cv, En, En], "iiiiihi"),
        (
            "llm_tool_call_stale",
            [Co, Gr, Aw, Er, Cv, Fi, En],
            "iiiiiii",
        ),
        (
            "tool_result_unknown",
            [Co, Gr, Aw, Er, Cv, Fi, En],
            "iiiiiii",
        ),
    ]
}

#[test]
fn every_state_and_event_has_a_defined_outcome() {
    let events = sample_events();
    let table = table();
    assert_eq!(events.len(), table.len(), "every sample event has a row");
    for (row, (name, expected_states, handled)) in table.iter().enumerate() {
        let (event_name, event) = &events[row];
        assert_eq!(name, event_name);
        for (col, from) in CallState::ALL.iter().enumerate() {
            let mut sim = machine_in(*from);
            let before = sim.m.ignored_events();
            let fx = sim.send(event.clone());
            assert_eq!(
                sim.state(),
                expected_states[col],
                "{name} in {from:?}: wrong next state (effects: {fx:?})"
            );
            let was_ignored = ignored(&fx);
            let expect_ignored = handled.as_bytes()[col] == b'i';
            assert_eq!(
                was_ignored, expect_ignored,
                "{name} in {from:?}: ignored={was_ignored} (effects: {fx:?})"
            );
            assert_eq!(sim.m.ignored_events() - before, u64::from(was_ignored));
            // A transition, when there is one, is recorded with the event that caused it.
            if sim.state() != *from {
                let t = fx.iter().find_map(|e| match e {
                    Effect::RecordTransition(t) => Some(t.clone()),
                    _ => None,
                });
                let t = t.unwrap_or_else(|| panic!("{name} in {from:?}: transition not recorded"));
                assert_eq!(t.from, *from);
            }
        }
    }
}

#[test]
fn greeting_starts_at_once_for_a_caller_without_a_phone_number() {
    let mut s = Sim::new();
    let fx = s.send(Event::CallStarted(start(Transport::MediaStream, None)));
    assert_eq!(spoken(&fx), vec!["Thanks for calling Switchboard."]);
    assert!(
        !fx.iter().any(|e| matches!(e, Effect::FetchContext { .. })),
        "anonymous never matches a customer"
    );
    assert_eq!(s.m.context_status(), &ContextStatus::NotApplicable);
}

/// A Media Streams call from a number starts: the generic greeting at once (it never waits for
/// the database). Returns the call start's effects.
fn start_greeted_at_once(s: &mut Sim) -> Vec<Effect> {
    let fx = s.send(Event::CallStarted(start(
        Transport::MediaStream,
        Some("+15551234567"),
    )));
    assert_eq!(
        spoken(&fx),
        vec!["Thanks for calling Switchboard."],
        "the greeting does not wait for the database"
    );
    fx
}

#[test]
fn a_media_greeting_never_waits_and_a_known_caller_is_welcomed_by_name_next() {
    let mut s = Sim::new();
    let fx = start_greeted_at_once(&mut s);
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::FetchContext { phone } if phone == "+15551234567"))
    );
    assert!(
        !s.m.armed_timers()
            .iter()
            .any(|t| t.kind == TimerKind::GreetingWait)
    );
    // The context arrives while the greeting plays: nothing is said over it.
    let fx = s.send(Event::ContextArrived(customer(Some("Ana Souza"))));
    assert!(spoken(&fx).is_empty());
    let before = s.effects.len();
    s.play_all();
    assert_eq!(s.state(), CallState::Enriched);
    assert_eq!(
        spoken(&s.effects[before..]),
        vec!["Welcome back, Ana Souza! How can I help you today?"],
        "greeted by name where a new caller is asked for theirs"
    );
    s.play_all();
    assert!(
        s.m.armed_timers()
            .iter()
            .any(|t| t.kind == TimerKind::Silence),
        "then the caller's turn"
    );
}

#[test]
fn a_known_caller_who_talks_over_the_greeting_is_answered_not_welcomed() {
    let mut s = Sim::new();
    s.send(Event::CallStarted(start(
        Transport::MediaStream,
        Some("+15551234567"),
    )));
    s.send(Event::ContextArrived(customer(Some("Ana Souza"))));
    let fx = s.send(Event::CallerUtterance {
        text: "Hi, it's about my invoice".into(),
        is_final: true,
    });
    assert_eq!(s.state(), CallState::Conversing);
    assert!(
        !spoken(&fx).iter().any(|t| t.starts_with("Welcome back")),
        "{fx:?}"
    );
    assert!(s.m.generating_turn().is_some(), "the LLM answers");
}

#[test]
fn greeting_waits_a_little_for_context_then_goes_generic() {
    // Opt-in for Media Streams (`greeting.personalize_within_ms`).
    let mut s = Sim::with(MachineConfig {
        greeting_wait_ms: 100,
        ..MachineConfig::default()
    });
    let fx = s.send(Event::CallStarted(start(
        Transport::MediaStream,
        Some("+15551234567"),
    )));
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::FetchContext { phone } if phone == "+15551234567"))
    );
    assert!(
        spoken(&fx).is_empty(),
        "waits up to greeting_wait_ms for a personal greeting"
    );
    let generation = fx
        .iter()
        .find_map(|e| match e {
            Effect::StartTimer {
                kind: TimerKind::GreetingWait,
                generation,
                after_ms: 100,
            } => Some(*generation),
            _ => None,
        })
        .expect("greeting wait timer armed");
    let fx = s.send(Event::TimerFired {
        kind: TimerKind::GreetingWait,
        generation,
    });
    assert_eq!(spoken(&fx), vec!["Thanks for calling Switchboard."]);
    // Context arriving after the greeting started: no second greeting, the name is used next.
    let fx = s.send(Event::ContextArrived(customer(Some("Ana Souza"))));
    assert!(spoken(&fx).is_empty());
    s.play_all();
    assert_eq!(
        s.state(),
        CallState::Enriched,
        "known caller is not asked for a name"
    );
}

#[test]
fn a_relay_greeting_waits_for_the_context_and_names_the_caller() {
    // Twilio speaks its own welcome greeting meanwhile, so relay waits by default.
    let mut s = Sim::new();
    let fx = s.send(Event::CallStarted(start(
        Transport::Relay,
        Some("+15551234567"),
    )));
    assert!(spoken(&fx).is_empty());
    let fx = s.send(Event::ContextArrived(customer(Some("Ana Souza"))));
    assert_eq!(
        spoken(&fx),
        vec!["Welcome back, Ana Souza! How can I help you today?"]
    );
    assert_eq!(s.m.name_source(), Some(NameSource::Crm));
    // The wait timer is stale now.
    let fx = s.send(Event::TimerFired {
        kind: TimerKind::GreetingWait,
        generation: 1,
    });
    assert!(ignored(&fx));
}

#[test]
fn call_parameters_name_wins_and_greets_at_once() {
    let mut s = Sim::new();
    let mut st = start(Transport::MediaStream, Some("+15551234567"));
    st.custom_parameters
        .insert("CustomerName".into(), "Lead Lucy".into());
    let fx = s.send(Event::CallStarted(st));
    assert_eq!(
        spoken(&fx),
        vec!["Welcome back, Lead Lucy! How can I help you today?"]
    );
    s.send(Event::ContextArrived(customer(Some("Someone Else"))));
    assert_eq!(s.m.customer_name(), Some("Lead Lucy"));
    assert_eq!(s.m.name_source(), Some(NameSource::CallParameters));
}

#[test]
fn late_context_in_awaiting_name_skips_the_question() {
    let mut s = machine_in(CallState::Greeting);
    // Context said "not found" first... then a refreshed lookup finds the customer.
    s.play_all();
    assert_eq!(s.state(), CallState::AwaitingName);
    let fx = s.send(Event::ContextArrived(customer(Some("Ana Souza"))));
    assert_eq!(s.state(), CallState::Enriched);
    assert!(
        fx.contains(&Effect::ClearPlayback),
        "the pending name question is dropped"
    );
    assert_eq!(
        spoken(&fx),
        vec!["Oh, I see it's you, Ana Souza. Welcome back! How can I help you today?"]
    );
}

#[test]
fn late_context_in_conversing_reaches_the_next_llm_request() {
    let mut s = machine_in(CallState::AwaitingName);
    s.send(Event::NameNotFound { attempt: 1 });
    s.send(Event::CallerUtterance {
        text: "I just want to ask about my bill".into(),
        is_final: true,
    });
    s.send(Event::NameNotFound { attempt: 2 });
    s.send(Event::CallerUtterance {
        text: "no".into(),
        is_final: true,
    });
    s.send(Event::NameNotFound { attempt: 3 });
    assert_eq!(s.state(), CallState::Conversing);
    let before = s.m.llm_request();
    assert!(
        before.messages[0]
            .content
            .contains("The caller is not a known customer.")
    );
    s.send(Event::ContextArrived(customer(Some("Ana Souza"))));
    assert_eq!(s.state(), CallState::Conversing);
    let turn = s.last_turn();
    s.send(Event::LlmDone { turn });
    let fx = s.send(Event::CallerUtterance {
        text: "So what's pending?".into(),
        is_final: true,
    });
    let request = fx
        .iter()
        .find_map(|e| match e {
            Effect::StartLlm { request, .. } => Some(request.clone()),
            _ => None,
        })
        .expect("a new LLM request");
    let system = &request.messages[0].content;
    assert!(
        system.contains("[CUSTOMER CONTEXT]\ncustomer_id: 42\nname: Ana Souza"),
        "{system}"
    );
    assert!(
        system.contains("- Send invoice (due 2023-11-14)"),
        "{system}"
    );
}

#[test]
fn late_context_while_greeting_plays_and_in_finalizing_is_kept_without_speaking() {
    let mut s = machine_in(CallState::Greeting);
    let fx = s.send(Event::ContextArrived(customer(Some("Ana Souza"))));
    assert!(
        spoken(&fx).is_empty(),
        "the greeting already playing is not restarted"
    );
    s.play_all();
    assert_eq!(s.state(), CallState::Enriched);

    let mut s = machine_in(CallState::Finalizing);
    let fx = s.send(Event::ContextArrived(customer(Some("Ana Souza"))));
    assert!(spoken(&fx).is_empty() && !ignored(&fx));
    assert_eq!(
        s.m.customer().map(|c| c.customer_id),
        Some(42),
        "recorded on the call"
    );
}

#[test]
fn late_context_in_enriched_updates_the_context() {
    let mut s = machine_in(CallState::Enriched);
    let fx = s.send(Event::ContextFailed {
        reason: "late failure".into(),
    });
    assert!(!ignored(&fx));
    assert_eq!(
        s.m.context_status(),
        &ContextStatus::Found { partial: false },
        "a found context is not downgraded"
    );
}

#[test]
fn context_failure_is_visible_and_the_call_proceeds_as_unknown() {
    let mut s = Sim::new();
    start_greeted_at_once(&mut s);
    let fx = s.send(Event::ContextFailed {
        reason: "database unreachable".into(),
    });
    assert_eq!(s.m.context_status().label(), "failed: database unreachable");
    assert_eq!(
        persisted(&fx),
        vec![(
            Role::System,
            "context: failed: database unreachable".to_string(),
            false
        )],
        "the call record says why it went on as unknown"
    );
    s.play_all();
    assert_eq!(s.state(), CallState::AwaitingName);
}

#[test]
fn name_capture_stores_the_name_and_moves_on() {
    let mut s = machine_in(CallState::AwaitingName);
    let fx = s.send(Event::CallerUtterance {
        text: "my name is Bob Stone".into(),
        is_final: true,
    });
    assert!(fx.contains(&Effect::ExtractName {
        attempt: 1,
        utterance: "my name is Bob Stone".into()
    }));
    let fx = s.send(Event::NameCaptured {
        attempt: 1,
        name: "Bob Stone".into(),
    });
    assert!(fx.contains(&Effect::StoreName {
        name: "Bob Stone".into(),
        phone: Some("+15551234567".into())
    }));
    assert_eq!(
        spoken(&fx),
        vec!["Nice to meet you, Bob Stone! How can I help you today?"]
    );
    assert_eq!(s.state(), CallState::Conversing);
    assert_eq!(s.m.name_source(), Some(NameSource::Captured));
}

#[test]
fn name_capture_gives_up_after_the_configured_tries_and_answers_the_caller() {
    let mut s = machine_in(CallState::AwaitingName);
    s.send(Event::CallerUtterance {
        text: "I'm calling about my order".into(),
        is_final: true,
    });
    let fx = s.send(Event::NameNotFound { attempt: 1 });
    assert_eq!(
        spoken(&fx),
        vec!["Sorry, I didn't catch your name. Could you tell me again?"]
    );
    s.send(Event::CallerUtterance {
        text: "it's urgent".into(),
        is_final: true,
    });
    let fx = s.send(Event::NameNotFound { attempt: 2 });
    assert_eq!(s.state(), CallState::Conversing);
    assert!(
        fx.iter().any(|e| matches!(e, Effect::StartLlm { .. })),
        "the last answer gets a reply"
    );
    assert_eq!(s.m.customer_name(), None);
}

#[test]
fn llm_reply_is_cut_into_sentences_and_persisted_once_played() {
    let mut s = machine_in(CallState::Conversing);
    let turn = s.last_turn();
    let mut said = Vec::new();
    for tok in ["You have ", "one task. ", "It is due ", "Tuesday."] {
        said.extend(spoken(&s.send(Event::LlmToken {
            turn,
            text: tok.into(),
        })));
    }
    assert_eq!(
        said,
        vec!["You have one task."],
        "the first sentence goes out before the reply is done"
    );
    let fx = s.send(Event::LlmDone { turn });
    assert_eq!(spoken(&fx), vec!["It is due Tuesday."]);
    assert!(
        persisted(&fx).is_empty(),
        "not persisted before it was heard"
    );
    s.play_all();
    let agent: Vec<_> =
        s.m.conversation()
            .iter()
            .filter(|m| m.role == Role::Agent)
            .map(|m| (m.text.clone(), m.interrupted))
            .collect();
    assert_eq!(
        agent.last(),
        Some(&("You have one task. It is due Tuesday.".to_string(), false))
    );
}

#[test]
fn barge_in_clears_playback_cancels_the_llm_and_keeps_only_what_was_heard() {
    let mut s = machine_in(CallState::Conversing);
    let turn = s.last_turn();
    let fx = s.send(Event::LlmToken {
        turn,
        text: "First sentence. Second sentence. Third".into(),
    });
    let marks: Vec<String> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::Speak(sp) => Some(sp.mark.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(marks.len(), 2);
    s.send(Event::MarkEchoed {
        name: marks[0].clone(),
    });
    let fx = s.send(Event::CallerStartedSpeaking);
    assert!(fx.contains(&Effect::ClearPlayback));
    assert!(fx.contains(&Effect::CancelLlm { turn }));
    assert_eq!(
        persisted(&fx),
        vec![(Role::Agent, "First sentence.".to_string(), true)]
    );
    // Twilio echoes the pending mark after `clear`: it was not played and is ignored.
    let fx = s.send(Event::MarkEchoed {
        name: marks[1].clone(),
    });
    assert!(ignored(&fx));
    // Tokens still in flight from the cancelled stream are dropped.
    assert!(ignored(&s.send(Event::LlmToken {
        turn,
        text: "late".into()
    })));
}

#[test]
fn relay_interrupt_records_what_twilio_says_was_heard() {
    let mut s = Sim::new();
    s.send(Event::CallStarted(start(
        Transport::Relay,
        Some("+15551234567"),
    )));
    s.send(Event::ContextArrived(customer(Some("Ana Souza"))));
    assert_eq!(
        s.state(),
        CallState::Enriched,
        "relay: the greeting counts as played once sent"
    );
    s.send(Event::CallerUtterance {
        text: "hi".into(),
        is_final: true,
    });
    let turn = s.last_turn();
    let fx = s.send(Event::LlmToken {
        turn,
        text: "Hello Ana, ".into(),
    });
    assert_eq!(
        fx.iter()
            .filter(|e| matches!(e, Effect::Speak(sp) if !sp.last))
            .count(),
        1,
        "tokens stream as text"
    );
    s.send(Event::LlmToken {
        turn,
        text: "how are you today?".into(),
    });
    let fx = s.send(Event::AgentInterrupted {
        heard: Some("Hello Ana,".into()),
    });
    assert!(fx.contains(&Effect::CancelLlm { turn }));
    assert_eq!(
        persisted(&fx),
        vec![(Role::Agent, "Hello Ana,".to_string(), true)]
    );
}

#[test]
fn relay_reply_ends_with_a_last_token_and_is_persisted_on_the_next_caller_turn() {
    let mut s = Sim::new();
    s.send(Event::CallStarted(start(Transport::Relay, None)));
    s.send(Event::CallerUtterance {
        text: "I'm Carla".into(),
        is_final: true,
    });
    s.send(Event::NameCaptured {
        attempt: 1,
        name: "Carla".into(),
    });
    s.send(Event::CallerUtterance {
        text: "what time is it".into(),
        is_final: true,
    });
    let turn = s.last_turn();
    s.send(Event::LlmToken {
        turn,
        text: "It is noon.".into(),
    });
    let fx = s.send(Event::LlmDone { turn });
    assert!(fx.iter().any(|e| matches!(e, Effect::Speak(sp) if sp.last)));
    let count = |s: &Sim| {
        s.m.conversation()
            .iter()
            .filter(|m| m.text == "It is noon.")
            .count()
    };
    assert_eq!(
        count(&s),
        0,
        "Twilio may still be speaking it: an interrupt could still cut it"
    );
    s.send(Event::CallerUtterance {
        text: "thanks".into(),
        is_final: true,
    });
    assert_eq!(count(&s), 1, "heard in full once the caller answered");
    s.send(Event::StreamStopped);
    assert_eq!(count(&s), 1);
}

#[test]
fn relay_interrupt_after_the_reply_was_generated_still_cuts_it() {
    let mut s = Sim::new();
    s.send(Event::CallStarted(start(Transport::Relay, None)));
    s.send(Event::CallerUtterance {
        text: "I'm Carla".into(),
        is_final: true,
    });
    s.send(Event::NameCaptured {
        attempt: 1,
        name: "Carla".into(),
    });
    s.send(Event::CallerUtterance {
        text: "tell me a story".into(),
        is_final: true,
    });
    let turn = s.last_turn();
    s.send(Event::LlmToken {
        turn,
        text: "Once upon a time there was a phone.".into(),
    });
    s.send(Event::LlmDone { turn });
    let fx = s.send(Event::AgentInterrupted {
        heard: Some("Once upon a time".into()),
    });
    assert_eq!(
        persisted(&fx),
        vec![(Role::Agent, "Once upon a time".to_string(), true)]
    );
}

#[test]
fn llm_failure_before_any_token_gets_an_apology() {
    let mut s = machine_in(CallState::Conversing);
    let turn = s.last_turn();
    let fx = s.send(Event::LlmFailed {
        turn,
        reason: "HTTP 500".into(),
    });
    assert_eq!(spoken(&fx), vec![MachineConfig::default().llm_apology]);
    assert_eq!(s.state(), CallState::Conversing);
}

#[test]
fn silence_prompts_once_then_says_goodbye_and_finalizes() {
    let mut s = machine_in(CallState::Enriched);
    let gen_of = |fx: &[Effect]| {
        fx.iter().find_map(|e| match e {
            Effect::StartTimer {
                kind: TimerKind::Silence,
                generation,
                ..
            } => Some(*generation),
            _ => None,
        })
    };
    let s1 =
        s.m.armed_timers()
            .iter()
            .find(|t| t.kind == TimerKind::Silence)
            .map(|t| t.generation)
            .expect("armed after greeting");
    let fx = s.send(Event::TimerFired {
        kind: TimerKind::Silence,
        generation: s1,
    });
    assert_eq!(spoken(&fx), vec!["Are you still there?"]);
    let marks: Vec<_> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::Speak(sp) => Some(sp.mark.clone()),
            _ => None,
        })
        .collect();
    let fx = s.send(Event::MarkEchoed {
        name: marks[0].clone(),
    });
    let s2 = gen_of(&fx).expect("re-armed after the prompt played");
    // The first timer is stale now.
    assert!(ignored(&s.send(Event::TimerFired {
        kind: TimerKind::Silence,
        generation: s1
    })));
    let fx = s.send(Event::TimerFired {
        kind: TimerKind::Silence,
        generation: s2,
    });
    assert_eq!(s.state(), CallState::Finalizing);
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::Finalize(r) if r.outcome == "caller silent"))
    );
    let goodbye_mark = fx
        .iter()
        .find_map(|e| match e {
            Effect::Speak(sp) => Some(sp.mark.clone()),
            _ => None,
        })
        .expect("goodbye");
    s.send(Event::Persisted);
    assert_eq!(
        s.state(),
        CallState::Finalizing,
        "waits for the goodbye to play before hanging up"
    );
    let fx = s.send(Event::MarkEchoed { name: goodbye_mark });
    assert_eq!(s.state(), CallState::Ended);
    assert!(fx.contains(&Effect::CloseStream));
}

#[test]
fn fatal_apologises_persists_and_ends_after_the_apology_played() {
    let mut s = machine_in(CallState::Conversing);
    let turn = s.last_turn();
    let fx = s.send(Event::Fatal {
        reason: "restart budget exhausted".into(),
    });
    assert!(fx.contains(&Effect::CancelLlm { turn }));
    assert_eq!(spoken(&fx), vec![MachineConfig::default().fatal_apology]);
    let record = fx
        .iter()
        .find_map(|e| match e {
            Effect::Finalize(r) => Some(r.clone()),
            _ => None,
        })
        .expect("finalize");
    assert_eq!(record.outcome, "technical failure");
    assert!(
        record
            .transcript
            .iter()
            .any(|m| m.text == MachineConfig::default().fatal_apology)
    );
    s.send(Event::Persisted);
    s.play_all();
    assert_eq!(s.state(), CallState::Ended);
}

#[test]
fn finalize_deadline_ends_the_call_even_without_confirmation() {
    let mut s = machine_in(CallState::Conversing);
    let fx = s.send(Event::OperatorHangup);
    let generation = fx
        .iter()
        .find_map(|e| match e {
            Effect::StartTimer {
                kind: TimerKind::FinalizeDeadline,
                generation,
                ..
            } => Some(*generation),
            _ => None,
        })
        .expect("deadline armed");
    let fx = s.send(Event::TimerFired {
        kind: TimerKind::FinalizeDeadline,
        generation,
    });
    assert_eq!(s.state(), CallState::Ended);
    assert!(fx.contains(&Effect::CloseStream));
}

#[test]
fn the_call_record_carries_what_operators_need() {
    let mut s = machine_in(CallState::Conversing);
    let fx = s.send(Event::StreamStopped);
    let r = fx
        .iter()
        .find_map(|e| match e {
            Effect::Finalize(r) => Some(r.clone()),
            _ => None,
        })
        .expect("record");
    assert_eq!(r.customer_id, Some(42));
    assert_eq!(r.name_source, Some(NameSource::Crm));
    assert_eq!(r.outcome, "caller hung up");
    assert_eq!(r.call_sid.0, "CA0001");
    assert!(
        r.transcript
            .iter()
            .any(|m| m.role == Role::Caller && m.text == "What are my open tasks?")
    );
    let states: Vec<_> = s.m.transitions().iter().map(|t| t.to).collect();
    assert_eq!(
        states,
        vec![
            CallState::Greeting,
            CallState::Enriched,
            CallState::Conversing,
            CallState::Finalizing
        ]
    );
}

#[test]
fn words_transcribed_after_the_hang_up_are_kept_but_not_answered() {
    // The caller spoke, then hung up before a slow recognizer delivered the transcript.
    let mut s = machine_in(CallState::Conversing);
    s.send(Event::StreamStopped);
    assert_eq!(s.state(), CallState::Finalizing);
    let fx = s.send(Event::CallerUtterance {
        text: " Please cancel my order ".into(),
        is_final: true,
    });
    assert_eq!(
        persisted(&fx),
        vec![(Role::Caller, "Please cancel my order".to_owned(), false)]
    );
    assert!(spoken(&fx).is_empty() && llm_requests(&fx).is_empty());
    assert_eq!(s.state(), CallState::Finalizing);
    // A partial is only a guess at what is being said: nothing to keep.
    let fx = s.send(Event::CallerUtterance {
        text: "Please".into(),
        is_final: false,
    });
    assert!(persisted(&fx).is_empty() && ignored(&fx));
}

#[test]
fn dtmf_is_kept_in_the_transcript() {
    let mut s = machine_in(CallState::Conversing);
    let fx = s.send(Event::Dtmf { digit: "7".into() });
    assert_eq!(
        persisted(&fx),
        vec![(Role::System, "caller pressed 7".to_string(), false)]
    );
    assert!(ignored(&s.send(Event::Dtmf { digit: "x".into() })));
}

#[test]
fn sentences_split_on_ends_followed_by_space_not_inside_numbers() {
    let mut p = String::from("It costs 3.50 dollars. Anything else? Yes");
    assert_eq!(
        split_speakable(&mut p, false),
        vec!["It costs 3.50 dollars.", "Anything else?"]
    );
    assert_eq!(p, " Yes");
    assert_eq!(split_speakable(&mut p, true), vec!["Yes"]);
    let mut cjk = String::from("こんにちは。元気ですか");
    assert_eq!(split_speakable(&mut cjk, false), vec!["こんにちは。"]);
}

#[test]
fn dates_format_as_utc_days() {
    assert_eq!(format_date(0), "1970-01-01");
    assert_eq!(format_date(951_782_400_000), "2000-02-29");
    assert_eq!(format_date(T0), "2023-11-14");
}

// === tools, fillers and the context window ===

fn runs(fx: &[Effect]) -> Vec<(String, crate::tools::ToolScope)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::RunTool { call, scope, .. } => Some((call.name.clone(), scope.clone())),
            _ => None,
        })
        .collect()
}

fn llm_requests(fx: &[Effect]) -> Vec<LlmRequest> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::StartLlm { request, .. } => Some(request.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_tool_call_runs_for_the_caller_and_its_result_goes_back_to_the_model() {
    let mut s = machine_in(CallState::Conversing);
    let turn = s.last_turn();
    let fx = s.send(Event::LlmToolCall {
        turn,
        call: tool_call("call_1", "get_pending_tasks", "{}"),
    });
    let ran = runs(&fx);
    assert_eq!(ran.len(), 1);
    assert_eq!(ran[0].0, "get_pending_tasks");
    assert_eq!(ran[0].1.customer_id, Some(42), "scoped to the caller");
    // The stream ends while the tool runs: the turn waits, nothing is said or finished.
    let fx = s.send(Event::LlmDone { turn });
    assert!(spoken(&fx).is_empty());
    assert!(llm_requests(&fx).is_empty());
    assert_eq!(s.m.generating_turn(), Some(turn));
    let fx = s.send(Event::ToolResult {
        turn,
        id: "call_1".into(),
        content: r#"{"tasks":[{"title":"Send invoice"}]}"#.into(),
        ok: true,
    });
    let tool_line = persisted(&fx);
    assert_eq!(tool_line.len(), 1);
    assert_eq!(tool_line[0].0, Role::Tool);
    assert!(tool_line[0].1.starts_with("get_pending_tasks({}) -> "));
    let follow_up = llm_requests(&fx);
    assert_eq!(
        follow_up.len(),
        1,
        "the model is asked again with the result"
    );
    let msgs = &follow_up[0].messages;
    let n = msgs.len();
    assert_eq!(msgs[n - 2].role, "assistant");
    assert_eq!(
        msgs[n - 2].tool_calls.as_ref().unwrap()[0].function.name,
        "get_pending_tasks"
    );
    assert_eq!(msgs[n - 1].role, "tool");
    assert_eq!(msgs[n - 1].tool_call_id.as_deref(), Some("call_1"));
    assert!(msgs[n - 1].content.contains("Send invoice"));
    // The follow-up answers in the same turn.
    s.send(Event::LlmToken {
        turn,
        text: "You need to send an invoice.".into(),
    });
    let fx = s.send(Event::LlmDone { turn });
    assert_eq!(spoken(&fx), vec!["You need to send an invoice."]);
    s.play_all();
    assert_eq!(s.m.tool_log().len(), 1);
}

#[test]
fn a_tool_result_after_a_barge_in_is_kept_and_the_tool_never_runs_twice() {
    let mut s = machine_in(CallState::Conversing);
    let turn = s.last_turn();
    let call = tool_call("call_7", "create_task", r#"{"title":"Call back"}"#);
    assert_eq!(
        runs(&s.send(Event::LlmToolCall {
            turn,
            call: call.clone(),
        }))
        .len(),
        1
    );
    // The same call delivered again (a retried stream) is not run again.
    let fx = s.send(Event::LlmToolCall {
        turn,
        call: call.clone(),
    });
    assert!(runs(&fx).is_empty());
    assert!(ignored(&fx));
    // The caller talks over the agent while the tool runs.
    let fx = s.send(Event::CallerStartedSpeaking);
    assert!(fx.contains(&Effect::CancelLlm { turn }));
    let fx = s.send(Event::ToolResult {
        turn,
        id: "call_7".into(),
        content: r#"{"created":true,"task_id":9}"#.into(),
        ok: true,
    });
    assert_eq!(persisted(&fx).len(), 1, "the late result is kept");
    assert!(llm_requests(&fx).is_empty(), "no follow-up for a dead turn");
    let fx = s.send(Event::CallerUtterance {
        text: "Did you create it?".into(),
        is_final: true,
    });
    let next = llm_requests(&fx);
    assert_eq!(next.len(), 1);
    assert!(
        next[0]
            .messages
            .iter()
            .any(|m| m.tool_call_id.as_deref() == Some("call_7") && m.content.contains("task_id")),
        "the next request carries the result"
    );
    // The late result is not a reason to run anything again: the next turn starts clean.
    assert!(runs(&s.effects).len() == 1, "ran once in the whole call");
}

#[test]
fn end_call_says_the_reply_then_finalizes() {
    let mut s = machine_in(CallState::Conversing);
    let turn = s.last_turn();
    s.send(Event::LlmToken {
        turn,
        text: "Glad I could help. Goodbye!".into(),
    });
    let fx = s.send(Event::LlmToolCall {
        turn,
        call: tool_call("call_end", "end_call", "{}"),
    });
    assert!(runs(&fx).is_empty(), "end_call is the machine's own");
    s.send(Event::LlmDone { turn });
    assert_eq!(s.state(), CallState::Conversing, "not before it was heard");
    s.play_all();
    assert_eq!(s.state(), CallState::Finalizing);
    let agent: Vec<_> =
        s.m.conversation()
            .iter()
            .filter(|m| m.role == Role::Agent)
            .map(|m| m.text.clone())
            .collect();
    assert_eq!(agent.last().unwrap(), "Glad I could help. Goodbye!");
}

#[test]
fn end_call_without_words_says_goodbye() {
    let mut s = machine_in(CallState::Conversing);
    let turn = s.last_turn();
    s.send(Event::LlmToolCall {
        turn,
        call: tool_call("call_end", "end_call", ""),
    });
    let fx = s.send(Event::LlmDone { turn });
    assert_eq!(spoken(&fx), vec!["Thanks for calling. Goodbye!"]);
    assert_eq!(s.state(), CallState::Finalizing);
}

#[test]
fn a_slow_reply_gets_a_filler_that_counts_as_part_of_the_turn() {
    let mut s = machine_in(CallState::Enriched);
    s.send(Event::CallerUtterance {
        text: "What are my open tasks?".into(),
        is_final: true,
    });
    let turn = s.last_turn();
    let generation = s
        .effects
        .iter()
        .rev()
        .find_map(|e| match e {
            Effect::StartTimer {
                kind: TimerKind::Filler,
                generation,
                after_ms,
            } => {
                assert_eq!(*after_ms, MachineConfig::default().filler_after_ms);
                Some(*generation)
            }
            _ => None,
        })
        .expect("a filler timer is armed with the request");
    let fx = s.send(Event::TimerFired {
        kind: TimerKind::Filler,
        generation,
    });
    assert_eq!(spoken(&fx), vec!["One moment, please."]);
    s.send(Event::LlmToken {
        turn,
        text: "You have one task.".into(),
    });
    s.send(Event::LlmDone { turn });
    s.play_all();
    let agent =
        s.m.conversation()
            .iter()
            .rfind(|m| m.role == Role::Agent)
            .unwrap();
    assert_eq!(agent.text, "One moment, please. You have one task.");
    // Once the reply speaks, a filler timer that still fires is stale.
    let fx = s.send(Event::TimerFired {
        kind: TimerKind::Filler,
        generation,
    });
    assert!(ignored(&fx));
}

#[test]
fn the_context_window_drops_old_turns_but_never_the_system_prompt() {
    let config = MachineConfig {
        max_prompt_tokens: 200,
        ..MachineConfig::default()
    };
    let mut s = Sim::new();
    s.m = CallMachine::new(Arc::new(config), T0);
    s.send(Event::CallStarted(start(
        Transport::Relay,
        Some("+15551234567"),
    )));
    s.send(Event::ContextArrived(customer(Some("Ana Souza"))));
    let mut last = None;
    for i in 0..40 {
        let fx = s.send(Event::CallerUtterance {
            text: format!("Question number {i}: tell me something about my account please."),
            is_final: true,
        });
        if let Some(r) = llm_requests(&fx).pop() {
            let turn = s.last_turn();
            s.send(Event::LlmToken {
                turn,
                text: format!("Answer number {i} with a few words of detail."),
            });
            s.send(Event::LlmDone { turn });
            last = Some(r);
        }
    }
    let request = last.expect("requests were made");
    assert_eq!(request.messages[0].role, "system");
    assert!(request.messages[0].content.contains("[CUSTOMER CONTEXT]"));
    assert!(request.messages[1].content.contains("omitted"));
    let body: usize = request.messages[2..]
        .iter()
        .map(super::prompt::estimate_tokens)
        .sum();
    assert!(body <= 200, "conversation part is {body} tokens");
    let newest = request.messages.last().unwrap();
    assert_eq!(newest.role, "user");
    assert!(newest.content.starts_with("Question number 39"));
}
