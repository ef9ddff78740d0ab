//! `switchboard seed`: realistic, deterministic demo data on both backends.

use std::collections::HashSet;

use switchboard::seed::{SeedOptions, seed};
use switchboard::storage::Database;

use crate::common::{PgTestDb, migrated, run_bin, sqlite_url};

async fn count(db: &Database, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(db.pool())
        .await
        .expect("count query")
}

async fn check_seeded(db: &Database, customers: i64) {
    assert_eq!(count(db, "SELECT COUNT(*) FROM customers").await, customers);
    let phones: Vec<String> = sqlx::query_scalar("SELECT phone_e164 FROM customers")
        .fetch_all(db.pool())
        .await
        .expect("phones");
    let unique: HashSet<_> = phones.iter().collect();
    assert_eq!(unique.len(), phones.len());
    assert!(phones.iter().all(|p| p.len() == 12 && p.starts_with("+1")));
    assert!(count(db, "SELECT COUNT(DISTINCT language) FROM customers").await >= 5);
    assert!(count(db, "SELECT COUNT(*) FROM customer_facts").await > customers / 2);
    assert!(count(db, "SELECT COUNT(*) FROM tasks WHERE status = 'pending'").await > 0);
    assert!(count(db, "SELECT COUNT(*) FROM tasks WHERE status = 'done'").await > 0);
    assert!(count(db, "SELECT COUNT(*) FROM calls WHERE summary IS NOT NULL").await > 0);
    assert!(count(db, "SELECT COUNT(*) FROM messages").await > 0);
    // Every call belongs to a seeded customer and uses their number.
    assert_eq!(
        count(
            db,
            "SELECT COUNT(*) FROM calls c JOIN customers u ON u.id = c.customer_id WHERE c.phone <> u.phone_e164"
        )
        .await,
        0
    );
}

async fn names(db: &Database) -> Vec<Option<String>> {
    sqlx::query_scalar("SELECT name FROM customers ORDER BY id LIMIT 50")
        .fetch_all(db.pool())
        .await
        .expect("names")
}

#[tokio::test]
async fn seeds_sqlite_deterministically_and_appends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = migrated(&sqlite_url(dir.path(), "a.db")).await;
    let b = migrated(&sqlite_url(dir.path(), "b.db")).await;
    let options = SeedOptions {
        customers: 300,
        seed: 7,
        progress: false,
    };
    let report = seed(&a, &options).await.expect("seed a");
    assert_eq!(report.customers, 300);
    seed(&b, &options).await.expect("seed b");
    check_seeded(&a, 300).await;
    assert_eq!(names(&a).await, names(&b).await, "same seed, same data");

    // Seeding again appends new customers with new phone numbers.
    seed(
        &a,
        &SeedOptions {
            customers: 100,
            seed: 8,
            progress: false,
        },
    )
    .await
    .expect("second seed");
    check_seeded(&a, 400).await;
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn seeds_postgres() {
    let pg = PgTestDb::create().await;
    let db = migrated(&pg.url).await;
    seed(
        &db,
        &SeedOptions {
            customers: 300,
            seed: 7,
            progress: false,
        },
    )
    .await
    .expect("seed");
    check_seeded(&db, 300).await;
    // The identity sequence moved past the explicit ids: a normal insert still works.
    sqlx::query(
        "INSERT INTO customers (phone_e164, created_at_ms, updated_at_ms) VALUES ($1, 0, 0)",
    )
    .bind("+19995550000")
    .execute(db.pool())
    .await
    .expect("insert after seed");
    db.close().await;
}

#[test]
fn binary_seed_prints_a_summary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = run_bin(&["seed", "--customers", "50"], &[], dir.path());
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert!(run.stdout.contains("50 customers"), "{}", run.stdout);
}
