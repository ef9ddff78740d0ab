//! The shared tier of the customer-context cache on Redis (`cache.redis_url`): one key per phone,
//! `switchboard:context:v1:<E.164>`, holding the context as JSON with the cache TTL (`SET .. EX`).
//!
//! Redis is an optimisation, never a dependency: the connection is made lazily and re-made in the
//! background by the `redis` crate's connection manager, every command is bounded by a short
//! response timeout, and any error is returned to the Crm actor, which counts it and asks the
//! database instead. Errors are logged at most once per [`LOG_EVERY`] so an outage does not flood
//! the log.
//!
//! Known limit: a node whose lookup was in flight while another node invalidated the phone may
//! write the older context back; it then lives at most one TTL (the memory tier of the node that
//! invalidated is protected by tickets; Redis has no such guard).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use switchboard_actors::CustomerContext;
use switchboard_actors::cache::SharedContextCache;
use switchboard_actors::ports::PortError;

use crate::storage::now_ms;

/// Key prefix; the version changes if the stored JSON changes shape.
pub const KEY_PREFIX: &str = "switchboard:context:v1:";
/// At most one warning per this long while Redis fails.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

pub struct RedisContextCache {
    manager: ConnectionManager,
    timeout: Duration,
    last_logged_ms: AtomicU64,
}

impl RedisContextCache {
    /// A lazily connected cache: nothing is sent until the first lookup, so a Redis that is down
    /// at start-up delays nothing. `timeout` bounds every command (and each connection attempt,
    /// at least 250 ms).
    pub fn new(url: &str, timeout: Duration) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("cache.redis_url: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(timeout.max(Duration::from_millis(250))))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(2));
        let manager = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| format!("cache.redis_url: {e}"))?;
        Ok(RedisContextCache {
            manager,
            timeout,
            last_logged_ms: AtomicU64::new(0),
        })
    }

    fn key(phone: &str) -> String {
        format!("{KEY_PREFIX}{phone}")
    }

    /// Turn a Redis error or a timeout into a port error, logging at most once per [`LOG_EVERY`].
    fn fail(&self, what: &str, error: String) -> PortError {
        let now = now_ms() as u64;
        let last = self.last_logged_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= LOG_EVERY.as_millis() as u64
            && self
                .last_logged_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(%error, "redis context cache: {what} failed; lookups fall through to the database");
        }
        PortError::unavailable(format!("redis {what}: {error}"))
    }

    async fn bounded<T>(
        &self,
        what: &str,
        op: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, PortError> {
        match tokio::time::timeout(self.timeout, op).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.fail(what, e.to_string())),
            Err(_) => Err(self.fail(
                what,
                format!("no answer within {} ms", self.timeout.as_millis()),
            )),
        }
    }
}

#[async_trait]
impl SharedContextCache for RedisContextCache {
    async fn get(&self, phone: &str) -> Result<Option<CustomerContext>, PortError> {
        let mut conn = self.manager.clone();
        let raw: Option<String> = self.bounded("get", conn.get(Self::key(phone))).await?;
        match raw {
            None => Ok(None),
            Some(json) => match serde_json::from_str(&json) {
                Ok(context) => Ok(Some(context)),
                // Another version's shape, or garbage: a miss (the store's answer replaces it).
                Err(e) => {
                    tracing::debug!(error = %e, "redis context cache: unreadable entry ignored");
                    Ok(None)
                }
            },
        }
    }

    async fn put(
        &self,
        phone: &str,
        context: &CustomerContext,
        ttl: Duration,
    ) -> Result<(), PortError> {
        let json =
            serde_json::to_string(context).map_err(|e| PortError::rejected(e.to_string()))?;
        let mut conn = self.manager.clone();
        self.bounded(
            "set",
            conn.set_ex::<_, _, ()>(Self::key(phone), json, ttl.as_secs().max(1)),
        )
        .await
    }

    async fn invalidate(&self, phone: &str) -> Result<(), PortError> {
        let mut conn = self.manager.clone();
        self.bounded("del", conn.del::<_, ()>(Self::key(phone)))
            .await
    }
}
