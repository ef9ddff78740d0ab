//! Persistence throughput: 1,000 concurrent simulated calls append conversation messages through
//! the real persistence actor and the real SQL adapter (`SqlStore::write_batch`, multi-row
//! INSERTs); reports the sustained rows per second written and the batch sizes reached.
//!
//! ```sh
//! cargo run --release --example persistence_bench -- sqlite
//! createdb -h 127.0.0.1 -U postgres sb_bench_persist
//! cargo run --release --example persistence_bench -- postgres postgres://postgres@127.0.0.1:5432/sb_bench_persist
//! ```
//! Optional environment: CALLS (1000), MESSAGES per call (100), INTERVAL_MS between one call's
//! messages (0 = as fast as possible), BATCH_MAX (500), FLUSH_MS (50).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use switchboard::journal::FileJournal;
use switchboard::storage::{ConnectOptions, Database};
use switchboard::store::{DbCell, SqlStore};
use switchboard_actors::ports::{PersistRecord, SystemClock};
use switchboard_actors::testing::{ScriptedLlm, SilenceSpeech};
use switchboard_actors::*;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let backend = args.first().map(String::as_str).unwrap_or("sqlite");
    let dir = tempfile::tempdir().expect("tempdir");
    let url = match backend {
        "sqlite" => format!("sqlite://{}", dir.path().join("bench.db").display()),
        _ => args
            .get(1)
            .cloned()
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/sb_bench_persist".into()),
    };
    let calls = env("CALLS", 1000) as usize;
    let messages = env("MESSAGES", 100);
    let interval = Duration::from_millis(env("INTERVAL_MS", 0));
    let batch_max = env("BATCH_MAX", 500) as usize;
    let flush = Duration::from_millis(env("FLUSH_MS", 50));

    let db = Database::connect(
        &url,
        &ConnectOptions {
            max_connections: 8,
            connect_timeout: Duration::from_secs(5),
        },
    )
    .await
    .expect("database");
    db.migrate().await.expect("migrations");
    let run = format!("B{}", std::process::id());
    let cell = DbCell::default();
    cell.set(db.clone());
    let store = Arc::new(SqlStore::new(cell));
    let ports = Ports {
        crm: store.clone(),
        conversations: store.clone(),
        names: store,
        tasks: Arc::new(switchboard_actors::testing::MemoryTasks::default()),
        llm: Arc::new(ScriptedLlm::new("ok", Duration::ZERO)),
        speech: Arc::new(SilenceSpeech),
        greeting: GreetingSource {
            audio: None,
            relay_spoken_by_twilio: false,
            fallback_audio: None,
        },
        clock: Arc::new(SystemClock),
        journal: Some(Arc::new(FileJournal::new(&dir.path().join("journal")))),
    };
    let config = RuntimeConfig {
        batch_max,
        flush_interval: flush,
        max_buffered_rows: 10_000_000,
        ..RuntimeConfig::default()
    };
    let rt = Arc::new(Runtime::start(config, ports).await.expect("runtime"));
    let text = "I would like to know where my order is, it was supposed to arrive on Tuesday.";
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(calls);
    for c in 0..calls {
        let rt = rt.clone();
        let sid = CallSid(format!("{run}C{c:05}"));
        // Paced calls start spread over one interval, as real calls do (not all in step).
        let offset = interval * c as u32 / calls as u32;
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(offset).await;
            for seq in 0..messages {
                rt.services.persistence.append(PersistRecord::Message {
                    call_sid: sid.clone(),
                    message: ConversationMessage {
                        seq,
                        role: if seq.is_multiple_of(2) {
                            Role::Caller
                        } else {
                            Role::Agent
                        },
                        text: text.into(),
                        interrupted: false,
                        at_ms: 1_700_000_000_000 + seq,
                        turn: None,
                    },
                });
                if interval.is_zero() {
                    tokio::task::yield_now().await;
                } else {
                    tokio::time::sleep(interval).await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("call task");
    }
    let offered = started.elapsed();
    while rt.persistence_backlog() > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let left = rt.flush().await;
    let elapsed = started.elapsed();
    let s = &rt.stats.persistence;
    let rows = s.rows_written.load(Ordering::Relaxed);
    let batches = s.batches_written.load(Ordering::Relaxed).max(1);
    let like = format!("{run}C%");
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE call_sid LIKE $1")
        .bind(like)
        .fetch_one(db.pool())
        .await
        .expect("count");
    println!(
        "backend={backend} calls={calls} messages_per_call={messages} interval_ms={} batch_max={batch_max} flush_ms={}",
        interval.as_millis(),
        flush.as_millis()
    );
    println!(
        "rows_written={rows} stored={stored} unwritten={left} spilled={} elapsed_s={:.2} (appends done at {:.2}s)",
        s.spilled.load(Ordering::Relaxed),
        elapsed.as_secs_f64(),
        offered.as_secs_f64()
    );
    println!(
        "sustained_rows_per_s={:.0} batches={batches} mean_batch={:.1} largest_batch={} write_failures={}",
        rows as f64 / elapsed.as_secs_f64(),
        rows as f64 / batches as f64,
        s.largest_batch.load(Ordering::Relaxed),
        s.write_failures.load(Ordering::Relaxed)
    );
    assert_eq!(
        stored as u64,
        calls as u64 * messages,
        "every message stored"
    );
}
