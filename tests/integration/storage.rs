//! Migrations and storage behaviour on a fresh SQLite file and a fresh PostgreSQL database.

use sqlx::Row;
use switchboard::storage::{Backend, ConnectOptions, Database, StorageError};

use crate::common::{PgTestDb, migrated, run_bin, sqlite_url};

const TABLES: &[&str] = &[
    "customers",
    "customer_facts",
    "tasks",
    "calls",
    "messages",
    "call_events",
];

async fn table_names(db: &Database) -> Vec<String> {
    let sql = match db.backend() {
        Backend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
        Backend::Postgres => {
            "SELECT table_name::TEXT FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name"
        }
    };
    sqlx::query_scalar(sql)
        .fetch_all(db.pool())
        .await
        .expect("list tables")
}

/// Applies migrations twice, checks the tables, and round-trips rows through both directions.
async fn exercise_schema(db: &Database) {
    let first = db.migrate().await.expect("migrations apply");
    assert_eq!(first.len(), 1, "one migration applied on a fresh database");
    let second = db.migrate().await.expect("second run succeeds");
    assert!(
        second.is_empty(),
        "second run is a no-op, applied {second:?}"
    );
    db.readiness().await.expect("ready after migrations");

    let tables = table_names(db).await;
    for table in TABLES {
        assert!(
            tables.iter().any(|t| t == table),
            "{table} missing from {tables:?}"
        );
    }

    // Customers: E.164 unique, times as BIGINT milliseconds.
    let at_ms: i64 = 1_763_683_200_123;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO customers (phone_e164, name, status, created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, $4) RETURNING id",
    )
    .bind("+12025550100")
    .bind("Ada Lovelace")
    .bind("vip")
    .bind(at_ms)
    .fetch_one(db.pool())
    .await
    .expect("insert customer");
    let duplicate = sqlx::query(
        "INSERT INTO customers (phone_e164, created_at_ms, updated_at_ms) VALUES ($1, $2, $2)",
    )
    .bind("+12025550100")
    .bind(at_ms)
    .execute(db.pool())
    .await;
    assert!(duplicate.is_err(), "phone_e164 is unique");

    let row = sqlx::query("SELECT name, status, created_at_ms FROM customers WHERE id = $1")
        .bind(id)
        .fetch_one(db.pool())
        .await
        .expect("read customer");
    assert_eq!(
        row.try_get::<String, _>("name").ok().as_deref(),
        Some("Ada Lovelace")
    );
    assert_eq!(row.try_get::<i64, _>("created_at_ms").ok(), Some(at_ms));

    // Facts, tasks and calls cascade with their customer.
    sqlx::query(
        "INSERT INTO customer_facts (customer_id, fact, created_at_ms) VALUES ($1, $2, $3)",
    )
    .bind(id)
    .bind("Prefers mornings")
    .bind(at_ms)
    .execute(db.pool())
    .await
    .expect("insert fact");
    sqlx::query(
        "INSERT INTO tasks (customer_id, title, status, priority, due_at_ms, created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(id)
    .bind("Send quote")
    .bind("pending")
    .bind(2i32)
    .bind(Option::<i64>::None)
    .bind(at_ms)
    .execute(db.pool())
    .await
    .expect("insert task");
    let priority: i32 = sqlx::query_scalar("SELECT priority FROM tasks WHERE customer_id = $1")
        .bind(id)
        .fetch_one(db.pool())
        .await
        .expect("read task");
    assert_eq!(priority, 2);

    // Messages are keyed by (call sid, seq): a retried batch cannot duplicate a row.
    for interrupted in [false, true] {
        let seq = i64::from(interrupted);
        sqlx::query(
            "INSERT INTO messages (call_sid, seq, role, text, interrupted, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind("CA0123")
        .bind(seq)
        .bind("agent")
        .bind("Hello")
        .bind(i32::from(interrupted))
        .bind(at_ms + seq)
        .execute(db.pool())
        .await
        .expect("insert message");
    }
    let retried = sqlx::query(
        "INSERT INTO messages (call_sid, seq, role, text, interrupted, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (call_sid, seq) DO NOTHING",
    )
    .bind("CA0123")
    .bind(0i64)
    .bind("agent")
    .bind("Hello")
    .bind(0i32)
    .bind(at_ms)
    .execute(db.pool())
    .await
    .expect("idempotent retry");
    assert_eq!(retried.rows_affected(), 0);
    let rows = sqlx::query(
        "SELECT interrupted, created_at_ms FROM messages WHERE call_sid = $1 ORDER BY seq",
    )
    .bind("CA0123")
    .fetch_all(db.pool())
    .await
    .expect("read messages");
    let read: Vec<(bool, i64)> = rows
        .iter()
        .map(|r| {
            (
                r.try_get::<i64, _>("interrupted").expect("flag column") != 0,
                r.try_get::<i64, _>("created_at_ms").expect("time column"),
            )
        })
        .collect();
    assert_eq!(read, vec![(false, at_ms), (true, at_ms + 1)]);

    sqlx::query("DELETE FROM customers WHERE id = $1")
        .bind(id)
        .execute(db.pool())
        .await
        .expect("delete customer");
    let facts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM customer_facts")
        .fetch_one(db.pool())
        .await
        .expect("count facts");
    assert_eq!(facts, 0, "facts cascade (foreign keys are enforced)");
}

#[tokio::test]
async fn sqlite_fresh_file_in_missing_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_url(&dir.path().join("nested/folder"), "switchboard.db");
    let db = Database::connect(&url, &ConnectOptions::default())
        .await
        .expect("connects and creates the folder and file");
    assert!(dir.path().join("nested/folder/switchboard.db").is_file());
    assert_eq!(db.backend(), Backend::Sqlite);

    let not_ready = db.readiness().await.expect_err("nothing migrated yet");
    assert!(
        not_ready.0.contains("migrations not applied"),
        "{not_ready}"
    );

    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(db.pool())
        .await
        .expect("journal_mode");
    assert_eq!(journal.to_lowercase(), "wal");
    let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(db.pool())
        .await
        .expect("foreign_keys");
    assert_eq!(foreign_keys, 1);

    exercise_schema(&db).await;
    db.close().await;
}

#[tokio::test]
async fn postgres_fresh_database() {
    let pg = PgTestDb::create().await;
    let db = Database::connect(&pg.url, &ConnectOptions::default())
        .await
        .expect("connects to PostgreSQL");
    assert_eq!(db.backend(), Backend::Postgres);
    exercise_schema(&db).await;
    db.close().await;
}

#[tokio::test]
async fn sqlite_folder_that_cannot_be_created_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blocker = dir.path().join("occupied");
    std::fs::write(&blocker, b"a file, not a folder").expect("write");
    let url = sqlite_url(&blocker.join("sub"), "x.db");
    let err = Database::connect(&url, &ConnectOptions::default())
        .await
        .expect_err("a file is in the way");
    assert!(matches!(err, StorageError::CreateFolder { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("cannot create the database folder"),
        "{message}"
    );
    assert!(message.contains("database.url"), "{message}");
}

#[tokio::test]
async fn sqlite_and_postgres_report_the_same_times() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = migrated(&sqlite_url(dir.path(), "t.db")).await;
    let pg = PgTestDb::create().await;
    let postgres = migrated(&pg.url).await;
    for db in [&sqlite, &postgres] {
        sqlx::query(
            "INSERT INTO call_events (call_sid, seq, from_state, to_state, event, at_ms) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind("CA1")
        .bind(0i64)
        .bind("connected")
        .bind("greeting")
        .bind("start")
        .bind(i64::MAX - 1)
        .execute(db.pool())
        .await
        .expect("insert event");
    }
    let mut seen = Vec::new();
    for db in [&sqlite, &postgres] {
        let at: i64 = sqlx::query_scalar("SELECT at_ms FROM call_events WHERE call_sid = $1")
            .bind("CA1")
            .fetch_one(db.pool())
            .await
            .expect("read event");
        seen.push(at);
    }
    assert_eq!(seen, vec![i64::MAX - 1, i64::MAX - 1]);
    sqlite.close().await;
    postgres.close().await;
}

#[test]
fn binary_migrate_creates_sqlite_file_and_is_idempotent() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The default URL is relative (data/switchboard.db): it lands in the working directory.
    let first = run_bin(&["migrate"], &[], dir.path());
    assert_eq!(first.code, Some(0), "stderr: {}", first.stderr);
    assert!(first.stdout.contains("1 applied now"), "{}", first.stdout);
    assert!(dir.path().join("data/switchboard.db").is_file());
    let second = run_bin(&["migrate"], &[], dir.path());
    assert_eq!(second.code, Some(0), "stderr: {}", second.stderr);
    assert!(
        second.stdout.contains("0 applied now, 1 in total"),
        "{}",
        second.stdout
    );
}

#[tokio::test]
async fn binary_migrate_against_postgres() {
    let pg = PgTestDb::create().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = pg.url.clone();
    let cwd = dir.path().to_owned();
    let run = tokio::task::spawn_blocking(move || {
        run_bin(&["migrate"], &[("SWITCHBOARD__DATABASE__URL", &url)], &cwd)
    })
    .await
    .expect("join");
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    let db = Database::connect(&pg.url, &ConnectOptions::default())
        .await
        .expect("connect");
    let tables = table_names(&db).await;
    for table in TABLES {
        assert!(
            tables.iter().any(|t| t == table),
            "{table} missing from {tables:?}"
        );
    }
    db.readiness().await.expect("migrated database is ready");
    db.close().await;
}

#[test]
fn binary_migrate_with_unusable_folder_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("data"), b"not a folder").expect("write");
    let run = run_bin(&["migrate"], &[], dir.path());
    assert_eq!(run.code, Some(1), "stderr: {}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("cannot create the database folder data"),
        "{}",
        run.stderr
    );
}
