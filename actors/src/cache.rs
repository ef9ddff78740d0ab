//! The customer-context cache in front of the CRM store: an in-memory map keyed by E.164 phone,
//! bounded in size and in age, and an optional shared tier (Redis in the server) behind the
//! [`SharedContextCache`] port.
//!
//! What is cached: only a *complete* found context. Not cached:
//! - "not found": a new caller who gives their name must be found on their next call, on every
//!   node, and the lookup that answers "not found" is one indexed query anyway;
//! - partial, failed or timed-out lookups: they are degraded answers, the next call retries.
//!
//! Invalidation ([`ContextCaches::invalidate`]) drops a phone from both tiers. The Crm actor is
//! told to invalidate when a name is captured (after it is stored), when a call ends (its summary
//! became the "last call"), and by `Runtime::invalidate_context` (task changes, operators). A
//! lookup that was already in flight when the phone was invalidated does not put its (possibly
//! stale) result into the memory tier: every lookup takes a [`Ticket`] first.
//!
//! Bypass: a lookup with `bypass_cache` reads neither tier (it still refreshes both with what it
//! found). Calls ask for it with the custom parameter `context_cache=bypass` (see
//! [`bypass_requested`]).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::*;
use crate::ports::{Clock, PortError};

/// The shared (fleet-wide) tier of the context cache. Implementations bound every call by their
/// own short timeout; an error is a miss for the caller, never a failed lookup.
#[async_trait]
pub trait SharedContextCache: Send + Sync + 'static {
    async fn get(&self, phone_e164: &str) -> Result<Option<CustomerContext>, PortError>;
    async fn put(
        &self,
        phone_e164: &str,
        context: &CustomerContext,
        ttl: Duration,
    ) -> Result<(), PortError>;
    async fn invalidate(&self, phone_e164: &str) -> Result<(), PortError>;
}

/// Upper bounds (seconds) of the prefetch latency histogram buckets.
pub const LATENCY_BUCKETS_S: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A latency histogram of atomics (the actors crate has no metrics facade; the server renders
/// it as a Prometheus histogram).
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Observations at or below each bound of [`LATENCY_BUCKETS_S`] (not cumulative).
    pub buckets: [AtomicU64; LATENCY_BUCKETS_S.len()],
    /// Observations above the last bound.
    pub over: AtomicU64,
    pub count: AtomicU64,
    pub sum_micros: AtomicU64,
}

impl LatencyHistogram {
    pub fn observe(&self, elapsed: Duration) {
        let s = elapsed.as_secs_f64();
        match LATENCY_BUCKETS_S.iter().position(|b| s <= *b) {
            Some(i) => self.buckets[i].fetch_add(1, Ordering::Relaxed),
            None => self.over.fetch_add(1, Ordering::Relaxed),
        };
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// Cumulative counts per bound (Prometheus `le` buckets), then the total count.
    pub fn cumulative(&self) -> (Vec<(f64, u64)>, u64) {
        let mut total = 0;
        let mut out = Vec::with_capacity(LATENCY_BUCKETS_S.len());
        for (b, n) in LATENCY_BUCKETS_S.iter().zip(&self.buckets) {
            total += n.load(Ordering::Relaxed);
            out.push((*b, total));
        }
        (out, total + self.over.load(Ordering::Relaxed))
    }
}

/// Cache counters, exported by the server's `/metrics`.
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Lookups answered by the memory tier.
    pub hits: AtomicU64,
    /// Lookups the memory tier could not answer (bypassed lookups are not counted).
    pub misses: AtomicU64,
    /// Lookups that skipped the cache on request.
    pub bypassed: AtomicU64,
    pub shared_hits: AtomicU64,
    pub shared_misses: AtomicU64,
    /// Shared-tier calls that failed or timed out (the lookup went on to the store).
    pub shared_errors: AtomicU64,
    pub invalidations: AtomicU64,
    /// Entries dropped to stay within the size bound.
    pub evictions: AtomicU64,
    /// Results not cached because their phone was invalidated while they were loading.
    pub stale_puts: AtomicU64,
}

/// Taken before a lookup; a result is cached only if its phone was not invalidated since.
#[derive(Clone, Copy, Debug)]
pub struct Ticket(u64);

struct Entry {
    context: Arc<CustomerContext>,
    expires_at_ms: Millis,
    /// Insertion number; the eviction queue holds it to skip superseded positions.
    seq: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    /// Insertion order for eviction (oldest first); may hold superseded `(phone, seq)` pairs.
    order: VecDeque<(String, u64)>,
    /// Phone → (sequence number, time) of its last invalidation, for in-flight lookups.
    invalidated: HashMap<String, (u64, Millis)>,
    seq: u64,
}

/// How long an invalidation is remembered for lookups in flight (longer than any deadline).
const INVALIDATION_MEMORY_MS: Millis = 5 * 60 * 1000;
const INVALIDATION_PRUNE_AT: usize = 4096;

/// The in-memory tier: at most `max_entries` contexts, each for at most `ttl`. `max_entries = 0`
/// disables it.
pub struct ContextCache {
    ttl: Duration,
    max_entries: usize,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
}

impl ContextCache {
    pub fn new(ttl: Duration, max_entries: usize, clock: Arc<dyn Clock>) -> Self {
        ContextCache {
            ttl,
            max_entries,
            clock,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn enabled(&self) -> bool {
        self.max_entries > 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh cached context for this phone.
    pub fn get(&self, phone: &str) -> Option<Arc<CustomerContext>> {
        if !self.enabled() {
            return None;
        }
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        match inner.entries.get(phone) {
            Some(e) if e.expires_at_ms > now => Some(e.context.clone()),
            Some(_) => {
                inner.entries.remove(phone);
                None
            }
            None => None,
        }
    }

    pub fn ticket(&self) -> Ticket {
        Ticket(self.lock().seq)
    }

    /// Cache a context found by a lookup that took `ticket` before it started. Returns false
    /// (and caches nothing) when the cache is off, the context is partial, or the phone was
    /// invalidated since the ticket was taken.
    pub fn put(&self, phone: &str, context: Arc<CustomerContext>, ticket: Ticket) -> PutOutcome {
        if !self.enabled() || context.partial {
            return PutOutcome::NotCached;
        }
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        if inner
            .invalidated
            .get(phone)
            .is_some_and(|(seq, _)| *seq > ticket.0)
        {
            return PutOutcome::Stale;
        }
        inner.seq += 1;
        let seq = inner.seq;
        let expires_at_ms = now + self.ttl.as_millis() as Millis;
        inner.entries.insert(
            phone.to_owned(),
            Entry {
                context,
                expires_at_ms,
                seq,
            },
        );
        inner.order.push_back((phone.to_owned(), seq));
        let mut evicted = 0;
        while inner.entries.len() > self.max_entries {
            let Some((oldest, seq)) = inner.order.pop_front() else {
                break;
            };
            if inner.entries.get(&oldest).is_some_and(|e| e.seq == seq) {
                inner.entries.remove(&oldest);
                evicted += 1;
            }
        }
        // Superseded positions pile up when the same phones are cached again and again.
        if inner.order.len() > 2 * self.max_entries.max(16) {
            let Inner { entries, order, .. } = &mut *inner;
            order.retain(|(p, s)| entries.get(p).is_some_and(|e| e.seq == *s));
        }
        PutOutcome::Cached { evicted }
    }

    /// Forget this phone, and keep lookups already in flight from caching it again.
    pub fn invalidate(&self, phone: &str) {
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        inner.seq += 1;
        let seq = inner.seq;
        inner.entries.remove(phone);
        inner.invalidated.insert(phone.to_owned(), (seq, now));
        if inner.invalidated.len() > INVALIDATION_PRUNE_AT {
            inner
                .invalidated
                .retain(|_, (_, at)| now.saturating_sub(*at) < INVALIDATION_MEMORY_MS);
        }
    }

    /// Contexts held now (expired ones included until they are looked up or evicted).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    Cached { evicted: usize },
    NotCached,
    Stale,
}

/// Both tiers and their counters, shared by the Crm and Names actors and the runtime.
#[derive(Clone)]
pub struct ContextCaches {
    pub memory: Arc<ContextCache>,
    pub shared: Option<Arc<dyn SharedContextCache>>,
    pub stats: Arc<CacheStats>,
}

impl ContextCaches {
    /// Only the memory tier.
    pub fn memory_only(memory: ContextCache) -> Self {
        ContextCaches {
            memory: Arc::new(memory),
            shared: None,
            stats: Arc::default(),
        }
    }

    /// Drop a phone from both tiers. A shared-tier failure is logged and counted; its entry then
    /// lives until its TTL.
    pub async fn invalidate(&self, phone: &str) {
        self.stats.invalidations.fetch_add(1, Ordering::Relaxed);
        self.memory.invalidate(phone);
        if let Some(shared) = &self.shared
            && let Err(e) = shared.invalidate(phone).await
        {
            self.stats.shared_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(phone = %mask_phone(phone), error = %e, "shared context cache: invalidation failed");
        }
    }

    /// Cache a complete context found by the store in both tiers (the shared one in the
    /// background: the call does not wait for it).
    pub fn store(&self, phone: &str, context: Arc<CustomerContext>, ticket: Ticket) {
        if context.partial {
            return;
        }
        match self.memory.put(phone, context.clone(), ticket) {
            PutOutcome::Cached { evicted } if evicted > 0 => {
                self.stats
                    .evictions
                    .fetch_add(evicted as u64, Ordering::Relaxed);
            }
            PutOutcome::Stale => {
                self.stats.stale_puts.fetch_add(1, Ordering::Relaxed);
                return;
            }
            _ => {}
        }
        if let Some(shared) = self.shared.clone() {
            let phone = phone.to_owned();
            let ttl = self.memory.ttl();
            let stats = self.stats.clone();
            tokio::spawn(async move {
                if let Err(e) = shared.put(&phone, &context, ttl).await {
                    stats.shared_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(phone = %mask_phone(&phone), error = %e, "shared context cache: put failed");
                }
            });
        }
    }
}

/// The custom call parameter that asks for a fresh context: `context_cache=bypass`.
pub const BYPASS_PARAMETER: &str = "context_cache";

/// Whether the call's own parameters ask to skip the cache (`context_cache=bypass`, any case).
pub fn bypass_requested(start: &CallStart) -> bool {
    start.custom_parameters.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case(BYPASS_PARAMETER) && v.trim().eq_ignore_ascii_case("bypass")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[derive(Default)]
    struct ManualClock(AtomicU64);
    impl Clock for ManualClock {
        fn now_ms(&self) -> Millis {
            self.0.load(Ordering::Relaxed)
        }
    }
    impl ManualClock {
        fn advance(&self, ms: u64) {
            self.0.fetch_add(ms, Ordering::Relaxed);
        }
    }

    fn ctx(id: i64) -> Arc<CustomerContext> {
        Arc::new(CustomerContext {
            customer_id: id,
            name: Some(format!("C{id}")),
            ..Default::default()
        })
    }

    fn cache(ttl_s: u64, max: usize) -> (ContextCache, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::default());
        (
            ContextCache::new(Duration::from_secs(ttl_s), max, clock.clone()),
            clock,
        )
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let (c, clock) = cache(300, 10);
        let t = c.ticket();
        assert!(matches!(c.put("+1", ctx(1), t), PutOutcome::Cached { .. }));
        clock.advance(299_999);
        assert_eq!(c.get("+1").unwrap().customer_id, 1);
        clock.advance(1);
        assert!(c.get("+1").is_none());
        assert!(c.is_empty(), "an expired entry is dropped when looked up");
    }

    #[test]
    fn the_size_bound_evicts_the_oldest() {
        let (c, _) = cache(300, 3);
        for i in 0..5 {
            let t = c.ticket();
            c.put(&format!("+{i}"), ctx(i), t);
        }
        assert_eq!(c.len(), 3);
        assert!(c.get("+0").is_none() && c.get("+1").is_none());
        assert!(c.get("+4").is_some());
        // Re-putting a phone refreshes its place: "+2" survives the next insert, "+3" does not.
        let t = c.ticket();
        c.put("+2", ctx(2), t);
        let t = c.ticket();
        assert_eq!(c.put("+9", ctx(9), t), PutOutcome::Cached { evicted: 1 });
        assert!(c.get("+2").is_some() && c.get("+3").is_none());
        // Repeated puts of one phone do not grow the eviction queue without bound.
        for _ in 0..1000 {
            let t = c.ticket();
            c.put("+9", ctx(9), t);
        }
        assert!(c.lock().order.len() <= 2 * 16 + 1);
    }

    #[test]
    fn invalidation_drops_the_entry_and_a_lookup_already_in_flight() {
        let (c, _) = cache(300, 10);
        let t = c.ticket();
        c.put("+1", ctx(1), t);
        let in_flight = c.ticket();
        c.invalidate("+1");
        assert!(c.get("+1").is_none());
        assert_eq!(c.put("+1", ctx(1), in_flight), PutOutcome::Stale);
        assert!(c.get("+1").is_none());
        // Other phones are not affected, and a lookup that starts afterwards caches again.
        assert!(matches!(
            c.put("+2", ctx(2), in_flight),
            PutOutcome::Cached { .. }
        ));
        let after = c.ticket();
        assert!(matches!(
            c.put("+1", ctx(1), after),
            PutOutcome::Cached { .. }
        ));
    }

    #[test]
    fn partial_contexts_and_a_disabled_cache_store_nothing() {
        let (c, _) = cache(300, 10);
        let partial = Arc::new(CustomerContext {
            partial: true,
            ..Default::default()
        });
        assert_eq!(c.put("+1", partial, c.ticket()), PutOutcome::NotCached);
        let (off, _) = cache(300, 0);
        assert_eq!(off.put("+1", ctx(1), off.ticket()), PutOutcome::NotCached);
        assert!(off.get("+1").is_none());
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = LatencyHistogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(10));
        let (buckets, count) = h.cumulative();
        assert_eq!(count, 3);
        assert_eq!(buckets[0], (0.0005, 1));
        assert_eq!(buckets.last().unwrap().1, 2);
    }

    #[test]
    fn bypass_is_a_call_parameter() {
        let mut start = CallStart {
            call_sid: CallSid("CA1".into()),
            stream_sid: None,
            caller: Caller {
                raw: "+1".into(),
                e164: None,
            },
            called: None,
            direction: "inbound".into(),
            transport: Transport::MediaStream,
            custom_parameters: Default::default(),
        };
        assert!(!bypass_requested(&start));
        start
            .custom_parameters
            .insert("Context_Cache".into(), " Bypass ".into());
        assert!(bypass_requested(&start));
    }
}
