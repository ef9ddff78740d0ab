//! Persistence on both real backends: batching by size and by time through the real SQL adapter,
//! idempotent retries, a 100 KB message stored whole, the database made unavailable in the middle
//! of 100 concurrent calls (SQLite: the file locked by another connection; PostgreSQL: a separate
//! throwaway server started by the test on its own port and stopped mid-run) with every message
//! arriving afterwards, and the journal replayed by the next server after a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use switchboard::journal::FileJournal;
use switchboard::storage::Database;
use switchboard::store::{DbCell, SqlStore};
use switchboard_actors::machine::CallState;
use switchboard_actors::ports::{
    ConversationStore, JournalEntry, PersistRecord, SpillJournal, SystemClock,
};
use switchboard_actors::testing::{ScriptedLlm, SilenceSpeech};
use switchboard_actors::*;

use crate::common::*;

pub fn message(sid: &str, seq: u64, text: &str) -> PersistRecord {
    PersistRecord::Message {
        call_sid: CallSid(sid.into()),
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
    }
}

pub fn transition(sid: &str, seq: u64) -> PersistRecord {
    PersistRecord::Transition {
        call_sid: CallSid(sid.into()),
        transition: Transition {
            seq,
            from: CallState::Greeting,
            to: CallState::Conversing,
            event: "test".into(),
            at_ms: 1_700_000_000_000 + seq,
        },
    }
}

pub fn record(sid: &str, phone: &str) -> CallRecord {
    CallRecord {
        call_sid: CallSid(sid.into()),
        caller: Caller {
            raw: phone.into(),
            e164: Some(phone.into()),
        },
        called: Some("+15557654321".into()),
        customer_id: None,
        customer_name: None,
        direction: "inbound".into(),
        transport: Transport::Relay,
        started_at_ms: 1_700_000_000_000,
        ended_at_ms: 1_700_000_060_000,
        outcome: "caller hung up".into(),
        final_state: CallState::Ended,
        restarts: 0,
        name_source: None,
        transcript: vec![],
        summary: Some(format!("summary of {sid}")),
    }
}

async fn count(db: &Database, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(db.pool())
        .await
        .expect("count")
}

/// The call runtime on the real SQL adapter and the real file journal.
async fn runtime(
    db: Option<Database>,
    journal: &Path,
    batch_max: usize,
    flush: Duration,
) -> (Runtime, DbCell) {
    init();
    let cell = DbCell::default();
    if let Some(db) = db {
        cell.set(db);
    }
    let store = Arc::new(SqlStore::new(cell.clone()));
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
        journal: Some(Arc::new(FileJournal::new(journal))),
    };
    let config = RuntimeConfig {
        batch_max,
        flush_interval: flush,
        ..RuntimeConfig::default()
    };
    (Runtime::start(config, ports).await.expect("runtime"), cell)
}

async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    patience: Duration,
    mut f: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + patience;
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never happened within {patience:?}: {what}");
}

// === batching by size and by time ===

async fn batches_by_size_then_by_time(url: &str) {
    let db = migrated(url).await;
    let dir = tempfile::tempdir().unwrap();
    // Size: a full batch (50 rows) is written at once; the flush timer (60 s) never fires here.
    let (rt, _) = runtime(Some(db.clone()), dir.path(), 50, Duration::from_secs(60)).await;
    for seq in 0..50 {
        rt.services
            .persistence
            .append(message("CAsize", seq, "row"));
    }
    eventually("a full batch written", Duration::from_secs(10), || async {
        count(
            &db,
            "SELECT COUNT(*) FROM messages WHERE call_sid = 'CAsize'",
        )
        .await
            == 50
    })
    .await;
    assert_eq!(
        rt.stats.persistence.batches_written.load(Ordering::Relaxed),
        1
    );
    assert_eq!(
        rt.stats.persistence.largest_batch.load(Ordering::Relaxed),
        50
    );
    // Fewer rows than a batch wait for the timer (or shutdown).
    for seq in 50..60 {
        rt.services
            .persistence
            .append(message("CAsize", seq, "row"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        rt.persistence_backlog(),
        10,
        "a partial batch waits for flush_ms"
    );
    assert_eq!(rt.shutdown().await, 0, "shutdown flushes the partial batch");
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM messages WHERE call_sid = 'CAsize'"
        )
        .await,
        60
    );

    // Time: batch_max is never reached; the 100 ms timer writes the rows as one batch.
    let (rt, _) = runtime(
        Some(db.clone()),
        dir.path(),
        10_000,
        Duration::from_millis(100),
    )
    .await;
    for seq in 0..30 {
        rt.services
            .persistence
            .append(message("CAtime", seq, "row"));
    }
    rt.services.persistence.append(transition("CAtime", 1));
    eventually("written by the timer", Duration::from_secs(10), || async {
        count(
            &db,
            "SELECT COUNT(*) FROM messages WHERE call_sid = 'CAtime'",
        )
        .await
            == 30
    })
    .await;
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM call_events WHERE call_sid = 'CAtime'"
        )
        .await,
        1
    );
    assert_eq!(
        rt.stats.persistence.largest_batch.load(Ordering::Relaxed),
        31,
        "one multi-row batch"
    );
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_by_size_and_by_time_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    batches_by_size_then_by_time(&sqlite_url(dir.path(), "b.db")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_by_size_and_by_time_on_postgres() {
    let pg = PgTestDb::create().await;
    batches_by_size_then_by_time(&pg.url).await;
}

// === idempotent retries and whole messages ===

async fn retries_never_duplicate_and_big_messages_stay_whole(url: &str) {
    let db = migrated(url).await;
    let cell = DbCell::default();
    cell.set(db.clone());
    let store = SqlStore::new(cell);
    let big = "é".repeat(50 * 1024) + "END"; // 100 KB of UTF-8
    assert!(big.len() > 100 * 1024);
    let batch: Vec<PersistRecord> = (0..20)
        .map(|s| message("CAretry", s, &format!("line {s}")))
        .chain([message("CAretry", 20, &big), transition("CAretry", 1)])
        .collect();
    store.write_batch(&batch).await.unwrap();
    // A retried batch (the first attempt's commit was not acknowledged) and an overlapping one.
    store.write_batch(&batch).await.unwrap();
    store.write_batch(&batch[10..]).await.unwrap();
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM messages WHERE call_sid = 'CAretry'"
        )
        .await,
        21
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM call_events WHERE call_sid = 'CAretry'"
        )
        .await,
        1
    );
    let stored: String =
        sqlx::query_scalar("SELECT text FROM messages WHERE call_sid = 'CAretry' AND seq = 20")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(stored, big, "a 100 KB message is stored whole");
    // The call record too is an upsert: writing it twice keeps one row.
    let r = record("CAretry", "+15550199999");
    store.write_call_record(&r).await.unwrap();
    store.write_call_record(&r).await.unwrap();
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM calls WHERE call_sid = 'CAretry'").await,
        1
    );
    let summary: String =
        sqlx::query_scalar("SELECT summary FROM calls WHERE call_sid = 'CAretry'")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(
        summary, "summary of CAretry",
        "the record's own summary is stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_never_duplicate_and_big_messages_stay_whole_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    retries_never_duplicate_and_big_messages_stay_whole(&sqlite_url(dir.path(), "r.db")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_never_duplicate_and_big_messages_stay_whole_on_postgres() {
    let pg = PgTestDb::create().await;
    retries_never_duplicate_and_big_messages_stay_whole(&pg.url).await;
}

#[tokio::test]
async fn the_file_journal_round_trips_and_skips_a_torn_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let journal = FileJournal::new(&dir.path().join("j"));
    assert!(
        journal.load().await.unwrap().is_empty(),
        "a missing journal is empty"
    );
    let big = "x".repeat(100 * 1024);
    let entries = vec![
        JournalEntry::Row(message("CAj", 1, &big)),
        JournalEntry::Row(transition("CAj", 2)),
        JournalEntry::Record(Box::new(record("CAj", "+15550100001"))),
    ];
    journal.append(&entries).await.unwrap();
    // A hard kill in the middle of the next append leaves half a line.
    std::fs::OpenOptions::new()
        .append(true)
        .open(journal.path())
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"entry\":\"row\",\"kind\":\"mess"))
        .unwrap();
    assert_eq!(journal.load().await.unwrap(), entries);
    journal.clear().await.unwrap();
    assert!(journal.load().await.unwrap().is_empty());
}

// === the database unavailable in the middle of 100 live calls ===

const CALLS: usize = 100;
const LINES: u64 = 20;

/// 100 concurrent calls each append `LINES` messages over about two seconds, then their call
/// record; `outage` runs meanwhile (starting after the first lines) and returns once the
/// database is back. Then every message and record must be in the database exactly once.
async fn hundred_calls_through_an_outage<F: std::future::Future<Output = ()>>(
    db: Database,
    journal: &Path,
    prefix: &str,
    down: Arc<std::sync::atomic::AtomicBool>,
    outage: F,
) {
    let (rt, _) = runtime(Some(db.clone()), journal, 500, Duration::from_millis(50)).await;
    let rt = Arc::new(rt);
    let mut calls = Vec::new();
    for c in 0..CALLS {
        let rt = rt.clone();
        let sid = format!("{prefix}{c:03}");
        let down = down.clone();
        calls.push(tokio::spawn(async move {
            for seq in 0..LINES {
                // The second half of every call is spoken while the database is down (the
                // outage lasts longer than these 1.5 s), however slowly the outage began.
                while seq == LINES / 4 && !down.load(Ordering::Acquire) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                rt.services.persistence.append(message(
                    &sid,
                    seq,
                    &format!("{sid} says line {seq}"),
                ));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            rt.services
                .persistence
                .finalize(Box::new(record(&sid, "+15550188888")));
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    outage.await;
    for call in calls {
        call.await.unwrap();
    }
    let like = format!("{prefix}%");
    eventually("every message arrived", Duration::from_secs(60), || {
        let db = db.clone();
        let like = like.clone();
        async move {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE call_sid LIKE $1")
                .bind(like.clone())
                .fetch_one(db.pool())
                .await
                .unwrap_or(0);
            let r: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM calls WHERE call_sid LIKE $1")
                .bind(like)
                .fetch_one(db.pool())
                .await
                .unwrap_or(0);
            n == (CALLS as i64) * (LINES as i64) && r == CALLS as i64
        }
    })
    .await;
    let s = &rt.stats.persistence;
    assert!(
        s.write_failures.load(Ordering::Relaxed) > 0,
        "the outage was noticed"
    );
    assert!(
        s.spilled.load(Ordering::Relaxed) > 0,
        "rows went to the journal during the outage"
    );
    // The replayed rows are visible in the database a moment before the actor counts them.
    eventually(
        "the journal was replayed",
        Duration::from_secs(10),
        || async { s.replayed.load(Ordering::Relaxed) > 0 },
    )
    .await;
    let rt = Arc::into_inner(rt).expect("calls finished");
    assert_eq!(rt.shutdown().await, 0);
    assert!(
        FileJournal::read_entries(&journal.join(switchboard::journal::JOURNAL_FILE))
            .unwrap()
            .is_empty(),
        "journal cleared"
    );
}

/// How long the database stays down (`SWITCHBOARD_TEST_OUTAGE_S`, default 3; the issue's
/// scenario is 30).
fn outage() -> Duration {
    Duration::from_secs(
        std::env::var("SWITCHBOARD_TEST_OUTAGE_S")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_locked_mid_run_every_message_arrives_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path(), "locked.db");
    let db = migrated(&url).await;
    let locker = migrated(&url).await;
    let journal = dir.path().join("journal");
    let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = down.clone();
    hundred_calls_through_an_outage(db, &journal, "CAlock", down, async move {
        // Another connection holds the write lock: every write waits busy_timeout, then fails.
        let mut conn = locker.pool().acquire().await.unwrap();
        sqlx::query("BEGIN EXCLUSIVE").execute(&mut *conn).await.unwrap();
        sqlx::query("INSERT INTO customers (phone_e164, name, status, created_at_ms, updated_at_ms) VALUES ('+15550000001', 'lock', 'lead', 1, 1)").execute(&mut *conn).await.unwrap();
        flag.store(true, Ordering::Release);
        tokio::time::sleep(outage().max(Duration::from_secs(6))).await;
        sqlx::query("ROLLBACK").execute(&mut *conn).await.unwrap();
    })
    .await;
}

// === a throwaway PostgreSQL server the test can stop ===

/// A PostgreSQL cluster in a temp folder on its own port (initdb + pg_ctl from
/// /usr/lib/postgresql/*/bin), stopped with `-m immediate` like a crash.
pub struct PgCluster {
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    _dir: tempfile::TempDir,
}

fn pg_bin() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries in /usr/lib/postgresql")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("pg_ctl").exists())
        .collect();
    dirs.sort();
    dirs.pop().expect("pg_ctl under /usr/lib/postgresql/*/bin")
}

fn as_postgres(cmd: &str) -> std::process::Output {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let mut c = if root {
        let mut c = std::process::Command::new("su");
        c.args(["postgres", "-c", cmd]);
        c
    } else {
        let mut c = std::process::Command::new("sh");
        c.args(["-c", cmd]);
        c
    };
    c.output().expect("run a PostgreSQL tool")
}

impl PgCluster {
    pub fn start() -> PgCluster {
        let bin = pg_bin();
        let dir = tempfile::Builder::new()
            .prefix("sb-pgcluster")
            .tempdir()
            .unwrap();
        let _ = std::process::Command::new("chown")
            .args(["postgres", &dir.path().display().to_string()])
            .output();
        let data = dir.path().join("data");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let out = as_postgres(&format!(
            "{}/initdb -D {} -U postgres --auth=trust -E UTF8",
            bin.display(),
            data.display()
        ));
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let c = PgCluster {
            port,
            bin,
            data,
            _dir: dir,
        };
        c.up();
        c
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn up(&self) {
        let out = as_postgres(&format!(
            "{}/pg_ctl -D {} -o '-p {} -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off' -w -l {}/log start",
            self.bin.display(),
            self.data.display(),
            self.port,
            self.data.display()
        ));
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn down(&self) {
        let out = as_postgres(&format!(
            "{}/pg_ctl -D {} -m immediate -w stop",
            self.bin.display(),
            self.data.display()
        ));
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = as_postgres(&format!(
            "{}/pg_ctl -D {} -m immediate stop",
            self.bin.display(),
            self.data.display()
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_mid_run_every_message_arrives_afterwards() {
    let cluster = Arc::new(PgCluster::start());
    // A short pool checkout timeout (the server's is database.connect_timeout_ms): a write
    // waiting for a connection gives up within the outage instead of outlasting it.
    let options = switchboard::storage::ConnectOptions {
        max_connections: 4,
        connect_timeout: Duration::from_millis(500),
    };
    let db = Database::connect(&cluster.url(), &options).await.unwrap();
    db.migrate().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let c = cluster.clone();
    let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = down.clone();
    hundred_calls_through_an_outage(db, &dir.path().join("journal"), "CApg", down, async move {
        let c2 = c.clone();
        tokio::task::spawn_blocking(move || c2.down())
            .await
            .unwrap();
        flag.store(true, Ordering::Release);
        tokio::time::sleep(outage()).await;
        tokio::task::spawn_blocking(move || c.up()).await.unwrap();
    })
    .await;
}

// === end to end: the real server ===

fn relay_config(url: &str, journal: &Path) -> switchboard::config::Config {
    let mut config = test_config(url);
    config.twilio.mode = switchboard::config::TwilioMode::Relay;
    config.cache.max_entries = 0;
    config.persistence.journal_path = journal.to_owned();
    config
}

/// A known customer, so the call goes straight to conversation (no name question).
async fn known(app: &TestApp, phone: &str) {
    let db = app.state.database().expect("database");
    sqlx::query("INSERT INTO customers (phone_e164, name, status, created_at_ms, updated_at_ms) VALUES ($1, 'Dana Known', 'active', 1, 1)")
        .bind(phone)
        .execute(db.pool())
        .await
        .expect("seed customer");
}

async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_during_a_postgres_outage_is_journaled_and_replayed_by_the_next_server() {
    use crate::history::{relay, relay_send, relay_setup, relay_turn, wait_ended};
    let cluster = Arc::new(PgCluster::start());
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let config = relay_config(&cluster.url(), &journal);
    let app = spawn_app(config.clone()).await;
    assert_eq!(app.poll_readyz(Duration::from_secs(30), true).await.0, 200);
    known(&app, "+15550166666").await;
    let mut ws = relay(&app).await;
    relay_setup(&mut ws, "CAoutage", "+15550166666").await;
    relay_turn(&mut ws).await;
    relay_send(&mut ws, serde_json::json!({"type":"prompt","voicePrompt":"first question before the outage","last":true})).await;
    relay_turn(&mut ws).await;
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.down()).await.unwrap();
    // The call goes on while the database is down.
    relay_send(&mut ws, serde_json::json!({"type":"prompt","voicePrompt":"second question during the outage","last":true})).await;
    let reply = relay_turn(&mut ws).await;
    assert!(reply.contains("second question"), "{reply}");
    ws.close(None).await.unwrap();
    wait_ended(&app, "CAoutage").await;
    assert_eq!(app.stop().await.ok(), Some(()), "graceful shutdown");
    let spilled =
        FileJournal::read_entries(&journal.join(switchboard::journal::JOURNAL_FILE)).unwrap();
    assert!(
        spilled
            .iter()
            .any(|e| matches!(e, JournalEntry::Record(r) if r.call_sid.0 == "CAoutage")),
        "the call record waits in the journal"
    );
    // The database comes back; the next server replays the journal at start.
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.up()).await.unwrap();
    let app = spawn_app(config).await;
    assert_eq!(app.poll_readyz(Duration::from_secs(30), true).await.0, 200);
    let mut stored = Value::Null;
    for _ in 0..500 {
        stored = app
            .get("/api/v1/calls/CAoutage")
            .await
            .json()
            .await
            .unwrap_or(Value::Null);
        if stored["outcome"].is_string()
            && stored["history"]
                .as_array()
                .is_some_and(|h| h.last().is_some_and(|t| t["to"] == "ended"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let callers: Vec<&str> = stored["transcript"]
        .as_array()
        .expect("transcript")
        .iter()
        .filter(|m| m["role"] == "caller")
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        callers,
        vec![
            "first question before the outage",
            "second question during the outage"
        ],
        "{stored}"
    );
    assert_eq!(
        stored["history"].as_array().unwrap().last().unwrap()["to"],
        "ended",
        "{stored}"
    );
    assert!(stored["summary"].is_string());
    assert!(
        FileJournal::read_entries(&journal.join(switchboard::journal::JOURNAL_FILE))
            .unwrap()
            .is_empty(),
        "journal cleared after replay"
    );
}

use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_journal_disk_is_loud_and_the_call_still_finishes() {
    use crate::history::{relay, relay_send, relay_setup, relay_turn, wait_ended};
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    std::fs::create_dir_all(&journal).unwrap();
    // Every write to /dev/full fails with ENOSPC ("No space left on device").
    std::os::unix::fs::symlink(
        "/dev/full",
        journal.join(switchboard::journal::JOURNAL_FILE),
    )
    .unwrap();
    // And no database at all (nothing listens on this port), so every row must spill.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = spawn_app(relay_config(
        &format!("postgres://postgres@127.0.0.1:{port}/none"),
        &journal,
    ))
    .await;
    let before = metric(&app, "switchboard_journal_errors_total").await;
    let mut ws = relay(&app).await;
    relay_setup(&mut ws, "CAdiskfull", "+15550155555").await;
    relay_turn(&mut ws).await;
    relay_send(
        &mut ws,
        serde_json::json!({"type":"prompt","voicePrompt":"is anyone keeping this?","last":true}),
    )
    .await;
    relay_turn(&mut ws).await;
    ws.close(None).await.unwrap();
    wait_ended(&app, "CAdiskfull").await;
    let after = metric(&app, "switchboard_journal_errors_total").await;
    assert!(
        after > before,
        "journal errors counted: {before} -> {after}"
    );
    assert!(
        app.state.runtime().persistence_backlog() > 0,
        "the rows are kept in memory, not dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_kb_relay_prompt_is_rejected_by_the_frame_limit_and_never_truncated() {
    use crate::history::{relay, relay_send, relay_setup, relay_turn, wait_ended};
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(relay_config(
        &sqlite_url(dir.path(), "big.db"),
        &dir.path().join("journal"),
    ))
    .await;
    assert_eq!(app.poll_readyz(Duration::from_secs(30), true).await.0, 200);
    let before = metric(&app, "switchboard_rejected_frames_total").await;
    known(&app, "+15550144444").await;
    let mut ws = relay(&app).await;
    relay_setup(&mut ws, "CAbig", "+15550144444").await;
    relay_turn(&mut ws).await;
    let big = "word ".repeat(20 * 1024); // 100 KB
    relay_send(
        &mut ws,
        serde_json::json!({"type":"prompt","voicePrompt":big,"last":true}),
    )
    .await;
    relay_send(
        &mut ws,
        serde_json::json!({"type":"prompt","voicePrompt":"a normal question","last":true}),
    )
    .await;
    let reply = relay_turn(&mut ws).await;
    assert!(
        reply.contains("a normal question"),
        "the call goes on: {reply}"
    );
    assert!(
        metric(&app, "switchboard_rejected_frames_total").await > before,
        "the oversized frame was counted"
    );
    ws.close(None).await.unwrap();
    wait_ended(&app, "CAbig").await;
    let mut stored = Value::Null;
    for _ in 0..200 {
        stored = app
            .get("/api/v1/calls/CAbig")
            .await
            .json()
            .await
            .unwrap_or(Value::Null);
        if stored["outcome"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let texts: Vec<&str> = stored["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert!(texts.contains(&"a normal question"), "{texts:?}");
    assert!(
        texts.iter().all(|t| !t.starts_with("word word")),
        "no part of the rejected message was stored: {texts:?}"
    );
}
