//! The Crm actor: customer-context prefetch. One lookup by phone, then the four dependent queries
//! concurrently, all under one deadline; what finishes in time is kept (a partial context is a
//! normal result). Lookups run as tasks gated by an in-flight limit: past it, new lookups are
//! answered at once with "context failed: overloaded" instead of queueing without bound.
//!
//! In front of the store sits the context cache (see [`crate::cache`]): the memory tier is read
//! in the actor itself (a hit is answered at once, without a task), the shared tier (Redis) in
//! the lookup task under a short budget taken from the same deadline. Complete found contexts are
//! cached; "not found", partial and failed lookups are not.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::time::{Instant, timeout_at};

use crate::cache::{ContextCaches, LatencyHistogram};
use crate::domain::*;
use crate::handle::LiveCalls;
use crate::machine::Event;
use crate::ports::{CrmStore, PortError};

pub const FACTS_LIMIT: u32 = 10;
pub const TASKS_LIMIT: u32 = 5;
pub const SUMMARIES_LIMIT: u32 = 5;

pub enum CrmMsg {
    /// Load the caller's context and deliver it to the call. `bypass_cache` skips both cache
    /// tiers (the result still refreshes them).
    Prefetch {
        call_sid: CallSid,
        phone: String,
        bypass_cache: bool,
    },
    /// Drop a phone's cached context (name captured, call ended, tasks changed).
    Invalidate { phone: String },
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
    /// Time from the lookup request to the result, for lookups answered by a cache tier.
    pub latency_cached: LatencyHistogram,
    /// The same for lookups that went to the store (whatever their outcome).
    pub latency_store: LatencyHistogram,
}

#[derive(Clone)]
pub struct CrmArgs {
    pub store: Arc<dyn CrmStore>,
    pub calls: LiveCalls,
    pub timeout: Duration,
    pub max_in_flight: usize,
    pub in_flight: Arc<AtomicUsize>,
    pub stats: Arc<CrmStats>,
    pub caches: ContextCaches,
    /// Longest the shared cache tier may take before the lookup goes on to the store.
    pub shared_timeout: Duration,
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
        let (call_sid, phone, bypass_cache) = match msg {
            CrmMsg::Prefetch {
                call_sid,
                phone,
                bypass_cache,
            } => (call_sid, phone, bypass_cache),
            CrmMsg::Invalidate { phone } => {
                let caches = st.caches.clone();
                // The memory tier at once (before any later message is handled), Redis after.
                caches.memory.invalidate(&phone);
                tokio::spawn(async move { caches.invalidate(&phone).await });
                return Ok(());
            }
        };
        let started = Instant::now();
        st.stats.lookups.fetch_add(1, Ordering::Relaxed);
        let cache_stats = &st.caches.stats;
        if bypass_cache {
            cache_stats.bypassed.fetch_add(1, Ordering::Relaxed);
        } else if st.caches.memory.enabled() {
            if let Some(context) = st.caches.memory.get(&phone) {
                cache_stats.hits.fetch_add(1, Ordering::Relaxed);
                st.stats.found.fetch_add(1, Ordering::Relaxed);
                st.stats.latency_cached.observe(started.elapsed());
                let context = Box::new(CustomerContext::clone(&context));
                st.calls.deliver(
                    &call_sid,
                    Event::ContextArrived(ContextResult::Found(context)),
                );
                return Ok(());
            }
            cache_stats.misses.fetch_add(1, Ordering::Relaxed);
        }
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
            let (event, cached) = lookup(&args, &phone, bypass_cache, started).await;
            args.in_flight.fetch_sub(1, Ordering::AcqRel);
            let counter = match &event {
                Event::ContextArrived(ContextResult::Found(c)) if c.partial => &args.stats.partial,
                Event::ContextArrived(ContextResult::Found(_)) => &args.stats.found,
                Event::ContextArrived(ContextResult::NotFound) => &args.stats.not_found,
                Event::ContextTimedOut => &args.stats.timed_out,
                _ => &args.stats.failed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            let latency = if cached {
                &args.stats.latency_cached
            } else {
                &args.stats.latency_store
            };
            latency.observe(started.elapsed());
            args.calls.deliver(&call_sid, event);
        });
        Ok(())
    }
}

/// One lookup past the memory tier: the shared tier (unless bypassed), then the store, all under
/// the prefetch deadline. Returns the event and whether a cache tier answered.
async fn lookup(
    args: &CrmArgs,
    phone: &str,
    bypass_cache: bool,
    started: Instant,
) -> (Event, bool) {
    let deadline = started + args.timeout;
    let caches = &args.caches;
    let ticket = caches.memory.ticket();
    if let (Some(shared), false) = (&caches.shared, bypass_cache) {
        let budget = (started + args.shared_timeout).min(deadline);
        match timeout_at(budget, shared.get(phone)).await {
            Ok(Ok(Some(context))) => {
                caches.stats.shared_hits.fetch_add(1, Ordering::Relaxed);
                let context = Arc::new(context);
                // Only the memory tier: the shared one already has it.
                let _ = caches.memory.put(phone, context.clone(), ticket);
                let found = Box::new(CustomerContext::clone(&context));
                return (Event::ContextArrived(ContextResult::Found(found)), true);
            }
            Ok(Ok(None)) => {
                caches.stats.shared_misses.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(e)) => {
                caches.stats.shared_errors.fetch_add(1, Ordering::Relaxed);
                // Debug only: the adapter itself warns, at a bounded rate, during an outage.
                tracing::debug!(error = %e, "shared context cache unavailable; asking the store");
            }
            Err(_) => {
                caches.stats.shared_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    budget_ms = args.shared_timeout.as_millis() as u64,
                    "shared context cache too slow; asking the store"
                );
            }
        }
    }
    let event = prefetch_until(args.store.as_ref(), phone, deadline).await;
    if let Event::ContextArrived(ContextResult::Found(context)) = &event
        && !context.partial
    {
        caches.store(phone, Arc::new(CustomerContext::clone(context)), ticket);
    }
    (event, false)
}

/// Load a caller's context under one deadline. Returns the event to deliver to the call.
pub async fn prefetch(store: &dyn CrmStore, phone: &str, timeout: Duration) -> Event {
    prefetch_until(store, phone, Instant::now() + timeout).await
}

/// [`prefetch`] with an absolute deadline.
pub async fn prefetch_until(store: &dyn CrmStore, phone: &str, deadline: Instant) -> Event {
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
