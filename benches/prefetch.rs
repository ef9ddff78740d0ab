//! Prefetch latency: `LOOKUPS` lookups of random seeded customers, all started at once
//! (`CONCURRENCY` in flight), through the real SQL adapter and `crm::prefetch` (customer by phone,
//! then facts, last call, pending tasks and summaries concurrently, one 2 s deadline), then the
//! same phones through the context cache.
//!
//! ```sh
//! SWITCHBOARD_BENCH_DB=sqlite:///tmp/1m.db cargo bench --bench prefetch
//! SWITCHBOARD_BENCH_DB=postgres://postgres@127.0.0.1:5432/sb_bench cargo bench --bench prefetch
//! # optional: the Redis tier too
//! SWITCHBOARD_BENCH_REDIS=redis://127.0.0.1:6379 ...
//! ```
//!
//! Passes:
//! - `store, first pass`: the context cache is empty and these phones were never read by this
//!   process (the database's own page cache may hold some pages: the OS cache is not dropped);
//! - `store, second pass`: the same phones again, straight from the store (database warm);
//! - `store, one at a time`: the same phones sequentially (no queueing for connections);
//! - `memory cache`: the same phones through `ContextCache::get` (what a Crm-actor hit costs);
//! - `redis cache`: through the Redis tier's `get` (JSON decode included), when configured.
//!
//! Latency is measured per lookup from the moment all of them are released, so it includes the
//! wait for a pooled connection (`BENCH_POOL`, default 8 like `database.max_connections`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard::redis_cache::RedisContextCache;
use switchboard::storage::{ConnectOptions, Database};
use switchboard::store::{DbCell, SqlStore};
use switchboard_actors::cache::{ContextCache, SharedContextCache};
use switchboard_actors::crm;
use switchboard_actors::machine::Event;
use switchboard_actors::ports::SystemClock;
use switchboard_actors::{ContextResult, CustomerContext};
use tokio::sync::Barrier;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// p50, p99, max in milliseconds.
fn report(label: &str, mut samples: Vec<Duration>, wall: Duration, extra: &str) {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_secs_f64() * 1e3
    };
    println!(
        "| {label} | {} | {:.3} | {:.3} | {:.3} | {:.0} | {extra} |",
        samples.len(),
        at(0.50),
        at(0.99),
        at(1.0),
        wall.as_secs_f64() * 1e3,
    );
}

/// Start `n` futures, release them together, and return the wall time until all finished.
async fn run_concurrently<F, Fut>(n: usize, f: F) -> Duration
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(n + 1));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let fut = f(i);
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            fut.await;
        }));
    }
    barrier.wait().await;
    let started = Instant::now();
    for t in tasks {
        t.await.expect("lookup task");
    }
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Ok(url) = std::env::var("SWITCHBOARD_BENCH_DB") else {
        eprintln!("prefetch bench: set SWITCHBOARD_BENCH_DB to a seeded database URL; skipping");
        return;
    };
    let lookups = env_usize("BENCH_LOOKUPS", 1000);
    let pool = env_usize("BENCH_POOL", 8) as u32;
    let db = Database::connect(
        &url,
        &ConnectOptions {
            max_connections: pool,
            connect_timeout: Duration::from_secs(10),
        },
    )
    .await
    .expect("database connects");
    let max_id: i64 = sqlx::query_scalar("SELECT MAX(id) FROM customers")
        .fetch_one(db.pool())
        .await
        .expect("customers are seeded");
    // Random customers (a fixed LCG: the same phones every run).
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut phones = Vec::with_capacity(lookups);
    while phones.len() < lookups {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let id = 1 + (x >> 33) as i64 % max_id;
        let phone: Option<String> =
            sqlx::query_scalar("SELECT phone_e164 FROM customers WHERE id = $1")
                .bind(id)
                .fetch_optional(db.pool())
                .await
                .expect("phone query");
        if let Some(p) = phone {
            phones.push(p);
        }
    }
    let cell = DbCell::default();
    cell.set(db.clone());
    let store = Arc::new(SqlStore::new(cell));
    let phones = Arc::new(phones);
    println!(
        "prefetch bench: {url_kind}, {max_id} customers, {lookups} concurrent lookups, pool {pool}",
        url_kind = url.split(':').next().unwrap_or("?"),
    );
    println!("| pass | lookups | p50 ms | p99 ms | max ms | wall ms | notes |");
    println!("|---|---|---|---|---|---|---|");

    let memory = Arc::new(ContextCache::new(
        Duration::from_secs(300),
        1_000_000,
        Arc::new(SystemClock),
    ));
    for pass in ["store, first pass", "store, second pass"] {
        let samples = Arc::new(std::sync::Mutex::new(Vec::with_capacity(lookups)));
        let outcomes = Arc::new(std::sync::Mutex::new((0usize, 0usize, 0usize)));
        let wall = run_concurrently(lookups, |i| {
            let (store, phones, samples, outcomes, memory) = (
                store.clone(),
                phones.clone(),
                samples.clone(),
                outcomes.clone(),
                memory.clone(),
            );
            async move {
                let t = Instant::now();
                let ticket = memory.ticket();
                let event = crm::prefetch(store.as_ref(), &phones[i], Duration::from_secs(2)).await;
                let elapsed = t.elapsed();
                samples.lock().unwrap().push(elapsed);
                let mut o = outcomes.lock().unwrap();
                match event {
                    Event::ContextArrived(ContextResult::Found(c)) if !c.partial => {
                        o.0 += 1;
                        let _ = memory.put(&phones[i], Arc::new(*c), ticket);
                    }
                    Event::ContextArrived(ContextResult::Found(_)) => o.1 += 1,
                    _ => o.2 += 1,
                }
            }
        })
        .await;
        let (found, partial, other) = *outcomes.lock().unwrap();
        let samples = std::mem::take(&mut *samples.lock().unwrap());
        report(
            pass,
            samples,
            wall,
            &format!("{found} found, {partial} partial, {other} not found/failed/timed out"),
        );
    }

    // The same phones one at a time: the latency of one lookup when nothing queues.
    let started = Instant::now();
    let mut samples = Vec::with_capacity(lookups);
    for phone in phones.iter() {
        let t = Instant::now();
        let event = crm::prefetch(store.as_ref(), phone, Duration::from_secs(2)).await;
        samples.push(t.elapsed());
        assert!(matches!(
            event,
            Event::ContextArrived(ContextResult::Found(_))
        ));
    }
    report(
        "store, one at a time",
        samples,
        started.elapsed(),
        "sequential, database warm",
    );

    let samples = Arc::new(std::sync::Mutex::new(Vec::with_capacity(lookups)));
    let wall = run_concurrently(lookups, |i| {
        let (phones, samples, memory) = (phones.clone(), samples.clone(), memory.clone());
        async move {
            let t = Instant::now();
            let hit = memory
                .get(&phones[i])
                .map(|c| Box::new(CustomerContext::clone(&c)));
            samples.lock().unwrap().push(t.elapsed());
            assert!(hit.is_some(), "every phone was cached by the store passes");
        }
    })
    .await;
    let samples = std::mem::take(&mut *samples.lock().unwrap());
    report("memory cache", samples, wall, "ContextCache::get + clone");

    if let Ok(redis_url) = std::env::var("SWITCHBOARD_BENCH_REDIS") {
        let redis = Arc::new(
            RedisContextCache::new(&redis_url, Duration::from_millis(500)).expect("redis url"),
        );
        for phone in phones.iter() {
            if let Some(c) = memory.get(phone) {
                redis
                    .put(phone, &c, Duration::from_secs(300))
                    .await
                    .expect("redis put");
            }
        }
        let samples = Arc::new(std::sync::Mutex::new(Vec::with_capacity(lookups)));
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let wall = run_concurrently(lookups, |i| {
            let (phones, samples, redis, hits) =
                (phones.clone(), samples.clone(), redis.clone(), hits.clone());
            async move {
                let t = Instant::now();
                if let Ok(Some(_)) = redis.get(&phones[i]).await {
                    hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                samples.lock().unwrap().push(t.elapsed());
            }
        })
        .await;
        let samples = std::mem::take(&mut *samples.lock().unwrap());
        let hits = hits.load(std::sync::atomic::Ordering::Relaxed);
        report(
            "redis cache",
            samples,
            wall,
            &format!("{hits} hits, one multiplexed connection"),
        );
        for phone in phones.iter() {
            let _ = redis.invalidate(phone).await;
        }
    }
}
