//! The CallSupervisor: spawns one call actor per call, linked to itself, and restarts a failed
//! one from the call's last snapshot (replaying the events it had not applied) while the caller
//! stays on the line. A restart budget (`max_restarts` within `restart_window`) stops crash loops:
//! past it the call is finalized gracefully with an apology. The supervisor never stops because a
//! child stopped.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::mpsc;

use crate::call::{CallActor, CallArgs, CallMsg};
use crate::domain::*;
use crate::handle::{CallHandle, NoticeKind, Outbound, TransitionNotice};
use crate::machine::{CallMachine, Event};
use crate::runtime::Services;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StartCallError {
    #[error("call {0} is already live on this node")]
    AlreadyLive(CallSid),
    #[error("could not start the call actor: {0}")]
    Spawn(String),
}

pub enum SupervisorMsg {
    StartCall {
        start: Box<CallStart>,
        outbound: mpsc::Sender<Outbound>,
        reply: RpcReplyPort<Result<Arc<CallHandle>, StartCallError>>,
    },
    /// Chaos: make the call's actor fail. Answers false when the call is not live.
    Crash {
        call_sid: CallSid,
        reply: RpcReplyPort<bool>,
    },
}

pub struct CallSupervisor;

pub struct SupervisorState {
    services: Arc<Services>,
    max_restarts: usize,
    restart_window: Duration,
    children: HashMap<ActorId, CallSid>,
    history: HashMap<CallSid, VecDeque<Millis>>,
    gave_up: HashMap<CallSid, u32>,
}

pub struct SupervisorArgs {
    pub services: Arc<Services>,
    pub max_restarts: usize,
    pub restart_window: Duration,
}

impl Actor for CallSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        _me: ActorRef<SupervisorMsg>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        Ok(SupervisorState {
            services: args.services,
            max_restarts: args.max_restarts,
            restart_window: args.restart_window,
            children: HashMap::new(),
            history: HashMap::new(),
            gave_up: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        me: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        st: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::StartCall {
                start,
                outbound,
                reply,
            } => {
                let result = start_call(&me, st, start, outbound).await;
                let _ = reply.send(result);
            }
            SupervisorMsg::Crash { call_sid, reply } => {
                let actor = st.services.calls.get(&call_sid).and_then(|h| h.actor());
                let found = match actor {
                    Some(actor) => actor
                        .cast(CallMsg::Crash {
                            reason: "operator chaos request".into(),
                        })
                        .is_ok(),
                    None => false,
                };
                let _ = reply.send(found);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        me: ActorRef<SupervisorMsg>,
        evt: SupervisionEvent,
        st: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                if let Some(sid) = st.children.remove(&cell.get_id()) {
                    st.history.remove(&sid);
                    st.gave_up.remove(&sid);
                }
            }
            SupervisionEvent::ActorFailed(cell, err) => {
                let Some(sid) = st.children.remove(&cell.get_id()) else {
                    return Ok(());
                };
                let Some(handle) = st.services.calls.get(&sid) else {
                    return Ok(());
                };
                handle.detach();
                tracing::warn!(call_sid = %sid, error = %err, "call actor failed");
                restart(&me, st, handle, err.to_string()).await;
            }
            _ => {}
        }
        Ok(())
    }
}

async fn start_call(
    me: &ActorRef<SupervisorMsg>,
    st: &mut SupervisorState,
    start: Box<CallStart>,
    outbound: mpsc::Sender<Outbound>,
) -> Result<Arc<CallHandle>, StartCallError> {
    let s = &st.services;
    let sid = start.call_sid.clone();
    let machine = CallMachine::new(s.machine_config.clone(), s.clock.now_ms());
    let handle = CallHandle::new(
        machine.clone(),
        sid.clone(),
        start.transport,
        outbound,
        s.speech.clone(),
        s.greeting.clone(),
    );
    if !s.calls.insert(handle.clone()) {
        return Err(StartCallError::AlreadyLive(sid));
    }
    let args = CallArgs {
        machine,
        handle: handle.clone(),
        services: s.clone(),
        restored: false,
    };
    match Actor::spawn_linked(None, CallActor, args, me.get_cell()).await {
        Ok((actor, _)) => {
            st.children.insert(actor.get_id(), sid);
            handle.attach(actor);
            let _ = handle.send(Event::CallStarted(start));
            Ok(handle)
        }
        Err(e) => {
            s.calls.remove(&sid);
            Err(StartCallError::Spawn(e.to_string()))
        }
    }
}

async fn restart(
    me: &ActorRef<SupervisorMsg>,
    st: &mut SupervisorState,
    handle: Arc<CallHandle>,
    failure: String,
) {
    let sid = handle.sid.clone();
    let now = st.services.clock.now_ms();
    let window = st.restart_window.as_millis() as Millis;
    let history = st.history.entry(sid.clone()).or_default();
    while history
        .front()
        .is_some_and(|t| now.saturating_sub(*t) > window)
    {
        history.pop_front();
    }
    let within_budget = history.len() < st.max_restarts;
    if within_budget {
        history.push_back(now);
    }
    let gave_up_count = st.gave_up.get(&sid).copied().unwrap_or(0);
    if !within_budget && gave_up_count >= 2 {
        // Even the graceful finalization keeps failing: end the call without an actor.
        tracing::error!(call_sid = %sid, "call actor keeps failing while finalizing; ending the call");
        force_end(st, &handle);
        return;
    }
    let mut machine: CallMachine = (*handle.snapshot()).clone();
    machine.record_restart();
    handle.store_snapshot(Arc::new(machine.clone()));
    let args = CallArgs {
        machine,
        handle: handle.clone(),
        services: st.services.clone(),
        restored: true,
    };
    match Actor::spawn_linked(None, CallActor, args, me.get_cell()).await {
        Ok((actor, _)) => {
            st.children.insert(actor.get_id(), sid.clone());
            handle.attach(actor);
            let snapshot = handle.snapshot();
            tracing::info!(call_sid = %sid, restarts = snapshot.restarts(), "call actor restarted from snapshot");
            metrics::counter!("switchboard_call_restarts_total").increment(1);
            st.services.calls.publish(TransitionNotice {
                call_sid: sid.clone(),
                kind: NoticeKind::Restart,
                from: snapshot.state(),
                to: snapshot.state(),
                event: format!("actor restarted after: {failure}"),
                at_ms: now,
                restarts: snapshot.restarts(),
            });
            if !within_budget {
                *st.gave_up.entry(sid).or_default() += 1;
                let _ = handle.send(Event::Fatal {
                    reason: "restart budget exhausted".into(),
                });
            }
        }
        Err(e) => {
            tracing::error!(call_sid = %sid, error = %e, "could not restart call actor; ending the call");
            force_end(st, &handle);
        }
    }
}

/// Last resort: write what the snapshot holds and hang up, with no call actor at all.
fn force_end(st: &SupervisorState, handle: &Arc<CallHandle>) {
    let s = &st.services;
    let mut machine: CallMachine = (*handle.snapshot()).clone();
    let now = s.clock.now_ms();
    let effects = machine.handle(now, Event::StreamStopped);
    for effect in effects {
        if let crate::machine::Effect::Finalize(mut record) = effect {
            record.outcome = "technical failure".into();
            for message in &record.transcript {
                s.persistence.append(crate::ports::PersistRecord::Message {
                    call_sid: handle.sid.clone(),
                    message: message.clone(),
                });
            }
            s.persistence.finalize(record);
        }
    }
    handle.mark_ended();
    s.calls.remove(&handle.sid);
    handle.push_outbound(Outbound::Close {
        reason: "call failed".into(),
    });
}
