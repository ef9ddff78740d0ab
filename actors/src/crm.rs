//! The Crm actor: customer-context prefetch. One lookup by phone, then the four dependent queries
//! concurrently, all under one deadline; what finishes in time is kept (a partial context is a
//! normal result). Lookups run as tasks gated by an in-flight limit: past it, new lookups are
//! answered at once with "context failed: overloaded" instead of queueing without bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::time::{Instant, timeout_at};

use crate::domain::*;
use crate::handle::LiveCalls;
use crate::machine::Event;
use crate::ports::{CrmStore, PortError};

pub const FACTS_LIMIT: u32 = 10;
pub const TASKS_LIMIT: u32 = 5;
pub const SUMMARIES_LIMIT: u32 = 5;

pub enum CrmMsg {
    Prefetch { call_sid: CallSid, phone: String },
}

#[derive(Default, Debug)]
pub struct CrmStats {
    pub lookups: AtomicU64,
    pub found: AtomicU64,
    pub not_found: AtomicU64,
    pub partial: AtomicU64,
    pub failed: AtomicU64,
    pub timed_out: AtomicU64,
    pub shed: AtomicU64,
}

#[derive(Clone)]
pub struct CrmArgs {
    pub store: Arc<dyn CrmStore>,
    pub calls: LiveCalls,
    pub timeout: Duration,
    pub max_in_flight: usize,
    pub in_flight: Arc<AtomicUsize>,
    pub stats: Arc<CrmStats>,
}

pub struct CrmActor;

impl Actor for CrmActor {
    type Msg = CrmMsg;
    type State = CrmArgs;
    type Arguments = CrmArgs;

    async fn pre_start(
        &self,
        _me: ActorRef<CrmMsg>,
        args: CrmArgs,
    ) -> Result<CrmArgs, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _me: ActorRef<CrmMsg>,
        msg: CrmMsg,
        st: &mut CrmArgs,
    ) -> Result<(), ActorProcessingErr> {
        let CrmMsg::Prefetch { call_sid, phone } = msg;
        st.stats.lookups.fetch_add(1, Ordering::Relaxed);
        let in_flight = st.in_flight.load(Ordering::Acquire);
        if in_flight >= st.max_in_flight {
            st.stats.shed.fetch_add(1, Ordering::Relaxed);
            let reason = format!("CRM overloaded: {in_flight} lookups in flight");
            st.calls.deliver(&call_sid, Event::ContextFailed { reason });
            return Ok(());
        }
        st.in_flight.fetch_add(1, Ordering::AcqRel);
        let args = st.clone();
        tokio::spawn(async move {
            let event = prefetch(args.store.as_ref(), &phone, args.timeout).await;
            args.in_flight.fetch_sub(1, Ordering::AcqRel);
            let counter = match &event {
                Event::ContextArrived(ContextResult::Found(c)) if c.partial => &args.stats.partial,
                Event::ContextArrived(ContextResult::Found(_)) => &args.stats.found,
                Event::ContextArrived(ContextResult::NotFound) => &args.stats.not_found,
                Event::ContextTimedOut => &args.stats.timed_out,
                _ => &args.stats.failed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            args.calls.deliver(&call_sid, event);
        });
        Ok(())
    }
}

/// Load a caller's context under one deadline. Returns the event to deliver to the call.
pub async fn prefetch(store: &dyn CrmStore, phone: &str, timeout: Duration) -> Event {
    let deadline = Instant::now() + timeout;
    let customer = match timeout_at(deadline, store.customer_by_phone(phone)).await {
        Err(_) => return Event::ContextTimedOut,
        Ok(Err(e)) => {
            return Event::ContextFailed {
                reason: e.to_string(),
            };
        }
        Ok(Ok(None)) => return Event::ContextArrived(ContextResult::NotFound),
        Ok(Ok(Some(c))) => c,
    };
    let id = customer.id;
    let (facts, last_call, tasks, summaries) = tokio::join!(
        timeout_at(deadline, store.recent_facts(id, FACTS_LIMIT)),
        timeout_at(deadline, store.last_call(id)),
        timeout_at(deadline, store.pending_tasks(id, TASKS_LIMIT)),
        timeout_at(deadline, store.recent_summaries(id, SUMMARIES_LIMIT)),
    );
    let mut missing = Vec::new();
    let facts = keep(&mut missing, "facts", facts).unwrap_or_default();
    let last_call = keep(&mut missing, "last_call", last_call).flatten();
    let pending_tasks = keep(&mut missing, "pending_tasks", tasks).unwrap_or_default();
    let recent_summaries = keep(&mut missing, "recent_summaries", summaries).unwrap_or_default();
    Event::ContextArrived(ContextResult::Found(Box::new(CustomerContext {
        customer_id: id,
        name: customer.name,
        phone: customer.phone_e164,
        status: customer.status,
        facts,
        last_call,
        pending_tasks,
        recent_summaries,
        partial: !missing.is_empty(),
        missing,
    })))
}

/// Keep a dependent query's result, or note why it is missing.
fn keep<T>(
    missing: &mut Vec<String>,
    name: &str,
    r: Result<Result<T, PortError>, tokio::time::error::Elapsed>,
) -> Option<T> {
    match r {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            missing.push(format!("{name} ({e})"));
            None
        }
        Err(_) => {
            missing.push(format!("{name} (timed out)"));
            None
        }
    }
}
