//! The call actor: a thin shell around the call machine. It feeds each event to the machine,
//! stores the snapshot, and executes the effects by messaging the shared actors, the speaker
//! and the socket writer. It owns no socket, so it can fail and be replaced mid-call.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tracing::Instrument;

use crate::handle::{CallHandle, NoticeKind, TransitionNotice};
use crate::machine::{CallMachine, CallState, Effect, Event};
use crate::ports::PersistRecord;
use crate::runtime::Services;
use crate::{crm::CrmMsg, llm::LlmMsg, names::NamesMsg};

pub enum CallMsg {
    /// An event from the journal; `id` orders it and lets a restarted actor skip what it applied;
    /// `at` is when it was sent (a final transcript starts the turn's clock from then).
    Event {
        id: u64,
        event: Event,
        at: std::time::Instant,
    },
    /// Chaos: fail for real (only reachable when chaos is enabled).
    Crash { reason: String },
}

pub struct CallActor;

pub struct CallArgs {
    pub machine: CallMachine,
    pub handle: Arc<CallHandle>,
    pub services: Arc<Services>,
    /// Started from a snapshot after a failure: re-arm timers and re-send what may be unsaved.
    pub restored: bool,
}

pub struct CallActorState {
    machine: CallMachine,
    handle: Arc<CallHandle>,
    services: Arc<Services>,
}

impl Actor for CallActor {
    type Msg = CallMsg;
    type State = CallActorState;
    type Arguments = CallArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<CallMsg>,
        args: CallArgs,
    ) -> Result<CallActorState, ActorProcessingErr> {
        let state = CallActorState {
            machine: args.machine,
            handle: args.handle,
            services: args.services,
        };
        if args.restored {
            state.handle.span.in_scope(|| resume(&state));
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<CallMsg>,
        msg: CallMsg,
        st: &mut CallActorState,
    ) -> Result<(), ActorProcessingErr> {
        let span = st.handle.span.clone();
        span.in_scope(|| on_message(&myself, msg, st))
    }
}

/// One message, inside the call's span (synchronous: nothing here waits).
fn on_message(
    myself: &ActorRef<CallMsg>,
    msg: CallMsg,
    st: &mut CallActorState,
) -> Result<(), ActorProcessingErr> {
    match msg {
        CallMsg::Crash { reason } => {
            // The actor fails the way any failed handler does: ractor stops it and tells the
            // supervisor. Not a panic: with RUST_BACKTRACE set, the panic hook would symbolize a
            // backtrace (~190 MB of debug info loaded, ~0.4 s of CPU) for a failure we asked for.
            tracing::warn!(%reason, "chaos: call actor failing on purpose");
            return Err(format!("chaos crash requested: {reason}").into());
        }
        CallMsg::Event { id, event, at } => {
            if id <= st.machine.applied_event_id() {
                return Ok(()); // replayed, already applied before the snapshot
            }
            let now = st.services.clock.now_ms();
            match &event {
                // In journal order, so the previous turn's queued tokens and speech cannot bind
                // the new clock; from the moment the edge sent it, so the journal and the mailbox
                // are in the measured time.
                Event::CallerUtterance { is_final: true, .. } => {
                    st.handle.turns.caller_finished_at(at)
                }
                Event::LlmToken { turn, .. } => st.handle.turns.first_token(*turn),
                _ => {}
            }
            let effects = st.machine.handle(now, event);
            st.machine.set_applied_event_id(id);
            st.handle.store_snapshot(Arc::new(st.machine.clone()));
            for effect in effects {
                execute(st, effect);
            }
            if st.machine.state() == CallState::Ended {
                // The call record (the next call's "last call") is written: drop the cached context.
                if let Some(phone) = st.machine.call_start().and_then(|c| c.caller.e164.clone()) {
                    let _ = st.services.crm.cast(CrmMsg::Invalidate { phone });
                }
                st.handle.mark_ended();
                st.services.calls.remove(&st.handle.sid);
                myself.stop(Some("call ended".into()));
            }
        }
    }
    Ok(())
}

/// After a restart: timers died with the old actor, and persistence may not have received the
/// last effects. Re-arm the timers with their remaining time and re-send every message and
/// transition; writes are idempotent on (call sid, seq), so nothing is duplicated.
fn resume(st: &CallActorState) {
    let now = st.services.clock.now_ms();
    for timer in st.machine.armed_timers() {
        let after = timer.deadline_ms.saturating_sub(now);
        arm(st, timer.kind, timer.generation, after);
    }
    let sid = &st.handle.sid;
    for message in st.machine.conversation() {
        st.services.persistence.append(PersistRecord::Message {
            call_sid: sid.clone(),
            message: message.clone(),
        });
    }
    for transition in st.machine.transitions() {
        st.services.persistence.append(PersistRecord::Transition {
            call_sid: sid.clone(),
            transition: transition.clone(),
        });
    }
}

fn arm(st: &CallActorState, kind: crate::machine::TimerKind, generation: u64, after_ms: u64) {
    let handle = Arc::downgrade(&st.handle);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(after_ms)).await;
        if let Some(handle) = handle.upgrade() {
            let _ = handle.send(Event::TimerFired { kind, generation });
        }
    });
}

fn execute(st: &CallActorState, effect: Effect) {
    let sid = &st.handle.sid;
    let s = &st.services;
    match effect {
        Effect::Speak(speech) => {
            st.handle.turns.speaking(speech.turn);
            st.handle.speak(speech)
        }
        Effect::RunTool { turn, call, scope } => {
            // Off the actor: a slow tool never blocks the call. The result always comes back
            // (an error result at worst) and is journaled like any event, so a restarted actor
            // gets it too; the machine never asks for the same tool-call id twice.
            let ports = s.tools.clone();
            let handle = Arc::downgrade(&st.handle);
            let now = s.clock.now_ms();
            tracing::info!(tool = %call.name, "tool call");
            tokio::spawn(async move {
                let outcome = crate::tools::run(&ports, &call, &scope, now).await;
                metrics::counter!("switchboard_tool_calls_total", "tool" => crate::tools::NAMES.iter().find(|n| **n == call.name).copied().unwrap_or("unknown"), "ok" => if outcome.ok { "true" } else { "false" }).increment(1);
                if let Some(handle) = handle.upgrade() {
                    let _ = handle.send(Event::ToolResult {
                        turn,
                        id: call.id,
                        content: outcome.content,
                        ok: outcome.ok,
                    });
                }
            }.in_current_span());
        }
        Effect::ClearPlayback => st.handle.clear_playback(),
        Effect::FetchContext { phone } => {
            let bypass_cache = st
                .machine
                .call_start()
                .is_some_and(crate::cache::bypass_requested);
            let _ = s.crm.cast(CrmMsg::Prefetch {
                call_sid: sid.clone(),
                phone,
                bypass_cache,
            });
        }
        Effect::StartLlm { turn, request } => {
            let _ = s.llm.cast(LlmMsg::Start {
                call_sid: sid.clone(),
                turn,
                request,
            });
        }
        Effect::CancelLlm { turn } => {
            let _ = s.llm.cast(LlmMsg::Cancel {
                call_sid: sid.clone(),
                turn,
            });
        }
        Effect::ExtractName { attempt, utterance } => {
            let _ = s.names.cast(NamesMsg::Extract {
                call_sid: sid.clone(),
                attempt,
                utterance,
            });
        }
        Effect::StoreName { name, phone } => {
            if let Some(phone) = phone {
                let _ = s.names.cast(NamesMsg::Store { phone, name });
            }
        }
        Effect::PersistMessage(message) => {
            s.persistence.append(PersistRecord::Message {
                call_sid: sid.clone(),
                message,
            });
        }
        Effect::RecordTransition(transition) => {
            tracing::info!(from = transition.from.as_str(), to = transition.to.as_str(), event = %transition.event, "call state changed");
            s.calls.publish(TransitionNotice {
                call_sid: sid.clone(),
                kind: NoticeKind::Transition,
                from: transition.from,
                to: transition.to,
                event: transition.event.clone(),
                at_ms: transition.at_ms,
                restarts: st.machine.restarts(),
            });
            s.persistence.append(PersistRecord::Transition {
                call_sid: sid.clone(),
                transition,
            });
        }
        Effect::StartTimer {
            kind,
            generation,
            after_ms,
        } => arm(st, kind, generation, after_ms),
        Effect::Finalize(mut record) => {
            if record.call_sid.0.is_empty() {
                record.call_sid = sid.clone();
            }
            // The summary may take the LLM a moment: off the call actor, under a deadline. The
            // task outlives a crash of this actor; shutdown waits for it before the last flush.
            let persistence = s.persistence.clone();
            let llm = s.summary_llm.clone();
            let deadline = s.summary_deadline;
            persistence
                .summarizing
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            tokio::spawn(
                async move {
                    if record.summary.is_none() {
                        let summary =
                            crate::summary::summarize(llm.as_ref(), &record, deadline).await;
                        record.summary = Some(summary);
                    }
                    persistence.finalize(record);
                    persistence
                        .summarizing
                        .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
                }
                .in_current_span(),
            );
        }
        Effect::CloseStream => {
            st.handle.push_outbound(crate::handle::Outbound::Close {
                reason: "call ended".into(),
            });
        }
        Effect::Ignored {
            event,
            state,
            reason,
        } => {
            tracing::debug!(event, state = state.as_str(), reason, "event ignored");
        }
    }
}
