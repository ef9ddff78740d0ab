//! Property tests of the call machine: random event sequences from a simulated shell (which
//! knows what marks, timers and LLM turns are outstanding, like the real one) never panic the
//! machine, persist every accepted caller utterance and agent reply exactly once, and every call
//! that receives `stop` ends in Ended after Finalizing.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use switchboard_actors::machine::{
    CallMachine, CallState, Effect, Event, MachineConfig, TimerKind,
};
use switchboard_actors::*;

#[derive(Clone, Debug)]
enum Action {
    Start {
        relay: bool,
        phone: bool,
        parameter_name: bool,
    },
    ContextFound {
        with_name: bool,
    },
    ContextNotFound,
    ContextFailed,
    StartedSpeaking,
    Utterance {
        text: u8,
        is_final: bool,
    },
    EchoOldestMark,
    EchoAllMarks,
    Clear,
    LlmToken {
        text: u8,
    },
    LlmDone,
    LlmFailed,
    StaleLlmToken,
    NameCaptured,
    NameNotFound,
    Dtmf,
    FireArmedTimer {
        pick: u8,
    },
    FireStaleTimer,
    UnknownMark,
    Interrupt {
        heard_all: bool,
    },
    GreetingPlayed,
    Hangup,
    Fatal,
    Persisted,
    SecondStart,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(relay, phone, parameter_name)| {
            Action::Start {
                relay,
                phone,
                parameter_name,
            }
        }),
        any::<bool>().prop_map(|with_name| Action::ContextFound { with_name }),
        Just(Action::ContextNotFound),
        Just(Action::ContextFailed),
        Just(Action::StartedSpeaking),
        (any::<u8>(), any::<bool>())
            .prop_map(|(text, is_final)| Action::Utterance { text, is_final }),
        Just(Action::EchoOldestMark),
        Just(Action::EchoAllMarks),
        Just(Action::Clear),
        any::<u8>().prop_map(|text| Action::LlmToken { text }),
        Just(Action::LlmDone),
        Just(Action::LlmFailed),
        Just(Action::StaleLlmToken),
        Just(Action::NameCaptured),
        Just(Action::NameNotFound),
        Just(Action::Dtmf),
        any::<u8>().prop_map(|pick| Action::FireArmedTimer { pick }),
        Just(Action::FireStaleTimer),
        Just(Action::UnknownMark),
        any::<bool>().prop_map(|heard_all| Action::Interrupt { heard_all }),
        Just(Action::GreetingPlayed),
        Just(Action::Hangup),
        Just(Action::Fatal),
        Just(Action::Persisted),
        Just(Action::SecondStart),
    ]
}

const UTTERANCES: &[&str] = &[
    "my name is Zoe",
    "what are my tasks?",
    "",
    "   ",
    "I'm calling about my order",
    "yes",
    "🙂 ok",
];
const TOKENS: &[&str] = &[
    "Hello", " there. ", "How can ", "I help?", "\n", "Done! ", "ok",
];

struct Shell {
    m: CallMachine,
    now: u64,
    pending_marks: Vec<String>,
    persisted: Vec<ConversationMessage>,
    transitions: Vec<switchboard_actors::Transition>,
    finalize_requested: bool,
    last_turn: u64,
}

impl Shell {
    fn new() -> Self {
        Shell {
            m: CallMachine::new(Arc::new(MachineConfig::default()), 1_000),
            now: 1_000,
            pending_marks: Vec::new(),
            persisted: Vec::new(),
            transitions: Vec::new(),
            finalize_requested: false,
            last_turn: 0,
        }
    }

    fn apply(&mut self, event: Event) -> Result<Vec<Effect>, TestCaseError> {
        self.now += 7;
        let accepted_utterance = match &event {
            Event::CallerUtterance {
                text,
                is_final: true,
            } if !text.trim().is_empty() => Some(text.trim().to_owned()),
            _ => None,
        };
        let fx = self.m.handle(self.now, event);
        let ignored = fx.iter().any(|e| matches!(e, Effect::Ignored { .. }));
        for e in &fx {
            match e {
                Effect::Speak(s) if !s.mark.is_empty() => self.pending_marks.push(s.mark.clone()),
                Effect::ClearPlayback => self.pending_marks.clear(),
                Effect::PersistMessage(m) => {
                    prop_assert_eq!(
                        m.seq,
                        self.persisted.len() as u64,
                        "message seqs are contiguous"
                    );
                    prop_assert_eq!(
                        m.role == Role::Agent,
                        m.turn.is_some(),
                        "agent lines carry their turn"
                    );
                    if let Some(turn) = m.turn {
                        let again = self.persisted.iter().any(|p| p.turn == Some(turn));
                        prop_assert!(!again, "agent turn {} persisted twice", turn);
                    }
                    self.persisted.push(m.clone());
                }
                Effect::RecordTransition(t) => {
                    if let Some(prev) = self.transitions.last() {
                        prop_assert_eq!(prev.to, t.from);
                        prop_assert_eq!(prev.seq + 1, t.seq);
                    }
                    prop_assert!(
                        t.to != CallState::Ended || t.from == CallState::Finalizing,
                        "Ended only after Finalizing"
                    );
                    self.transitions.push(t.clone());
                }
                Effect::Finalize(_) => {
                    prop_assert!(!self.finalize_requested, "finalize requested once");
                    self.finalize_requested = true;
                }
                Effect::StartLlm { turn, .. } => self.last_turn = *turn,
                _ => {}
            }
        }
        if let Some(text) = accepted_utterance.filter(|_| !ignored) {
            let stored = fx
                .iter()
                .filter(|e| matches!(e, Effect::PersistMessage(m) if m.role == Role::Caller && m.text == text))
                .count();
            prop_assert_eq!(stored, 1, "an accepted utterance is persisted exactly once");
        }
        prop_assert_eq!(
            self.m.conversation(),
            &self.persisted[..],
            "the machine's conversation is what was persisted"
        );
        Ok(fx)
    }

    fn event_for(&mut self, a: &Action) -> Option<Event> {
        let turn = self.m.generating_turn();
        Some(match a.clone() {
            Action::Start { .. } | Action::SecondStart => {
                let (relay, phone, parameter_name) = match a {
                    Action::Start {
                        relay,
                        phone,
                        parameter_name,
                    } => (*relay, *phone, *parameter_name),
                    _ => (false, true, false),
                };
                let mut custom_parameters = BTreeMap::new();
                if parameter_name {
                    custom_parameters.insert("CustomerName".to_string(), "Pat".to_string());
                }
                Event::CallStarted(Box::new(CallStart {
                    call_sid: CallSid("CAprop".into()),
                    stream_sid: None,
                    caller: Caller {
                        raw: "+15551230000".into(),
                        e164: phone.then(|| "+15551230000".to_string()),
                    },
                    called: None,
                    direction: "inbound".into(),
                    transport: if relay {
                        Transport::Relay
                    } else {
                        Transport::MediaStream
                    },
                    custom_parameters,
                }))
            }
            Action::ContextFound { with_name } => {
                Event::ContextArrived(ContextResult::Found(Box::new(CustomerContext {
                    customer_id: 1,
                    name: with_name.then(|| "Kim".to_string()),
                    phone: "+15551230000".into(),
                    status: "active".into(),
                    ..Default::default()
                })))
            }
            Action::ContextNotFound => Event::ContextArrived(ContextResult::NotFound),
            Action::ContextFailed => Event::ContextFailed {
                reason: "db down".into(),
            },
            Action::StartedSpeaking => Event::CallerStartedSpeaking,
            Action::Utterance { text, is_final } => Event::CallerUtterance {
                text: UTTERANCES[text as usize % UTTERANCES.len()].into(),
                is_final,
            },
            Action::EchoOldestMark => {
                if self.pending_marks.is_empty() {
                    return None;
                }
                Event::MarkEchoed {
                    name: self.pending_marks.remove(0),
                }
            }
            Action::EchoAllMarks => {
                let mark = self.pending_marks.pop()?;
                Event::MarkEchoed { name: mark }
            }
            Action::Clear => {
                // A stray `clear` echo: Twilio returns pending marks after the server's clear.
                let mark = self.pending_marks.first()?.clone();
                Event::MarkEchoed { name: mark }
            }
            Action::LlmToken { text } => Event::LlmToken {
                turn: turn?,
                text: TOKENS[text as usize % TOKENS.len()].into(),
            },
            Action::LlmDone => Event::LlmDone { turn: turn? },
            Action::LlmFailed => Event::LlmFailed {
                turn: turn?,
                reason: "500".into(),
            },
            Action::StaleLlmToken => Event::LlmToken {
                turn: self.last_turn.saturating_sub(1),
                text: "stale".into(),
            },
            Action::NameCaptured => Event::NameCaptured {
                attempt: 1,
                name: "Zoe".into(),
            },
            Action::NameNotFound => Event::NameNotFound { attempt: 1 },
            Action::Dtmf => Event::Dtmf { digit: "4".into() },
            Action::FireArmedTimer { pick } => {
                let armed = self.m.armed_timers();
                if armed.is_empty() {
                    return None;
                }
                let t = armed[pick as usize % armed.len()];
                Event::TimerFired {
                    kind: t.kind,
                    generation: t.generation,
                }
            }
            Action::FireStaleTimer => Event::TimerFired {
                kind: TimerKind::Silence,
                generation: 0,
            },
            Action::UnknownMark => Event::MarkEchoed {
                name: "bogus".into(),
            },
            Action::Interrupt { heard_all } => Event::AgentInterrupted {
                heard: if heard_all { None } else { Some("Hel".into()) },
            },
            Action::GreetingPlayed => Event::GreetingPlayed,
            Action::Hangup => Event::OperatorHangup,
            Action::Fatal => Event::Fatal {
                reason: "budget".into(),
            },
            Action::Persisted => {
                if !self.finalize_requested {
                    return None;
                }
                Event::Persisted
            }
        })
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_calls_keep_the_machine_invariants(actions in prop::collection::vec(action(), 0..60)) {
        let mut shell = Shell::new();
        for a in &actions {
            if let Some(event) = shell.event_for(a) {
                shell.apply(event)?;
            }
        }
        // The caller hangs up; once persistence confirms, the call is over (no deadline needed:
        // nobody is left to hear a goodbye).
        shell.apply(Event::StreamStopped)?;
        prop_assert!(shell.finalize_requested, "stop always finalizes");
        if shell.m.state() != CallState::Ended {
            shell.apply(Event::Persisted)?;
        }
        prop_assert_eq!(shell.m.state(), CallState::Ended);
        let states: Vec<_> = shell.transitions.iter().map(|t| t.to).collect();
        prop_assert_eq!(&states[states.len() - 2..], &[CallState::Finalizing, CallState::Ended][..]);
        // Nothing is accepted after the end.
        let fx = shell.apply(Event::CallerUtterance { text: "hello?".into(), is_final: true })?;
        let all_ignored = fx.iter().all(|e| matches!(e, Effect::Ignored { .. }));
        prop_assert!(all_ignored, "an utterance after the end is ignored");
        // Every agent reply stored once: no two agent messages share a sequence number, and the
        // store holds exactly what the machine holds.
        prop_assert_eq!(shell.m.conversation().len(), shell.persisted.len());
    }
}
