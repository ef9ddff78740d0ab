//! Shared helpers for integration tests: start the real server on a random port, make fresh
//! SQLite files and fresh PostgreSQL databases, and run the real binary.
//!
//! PostgreSQL tests use `SWITCHBOARD_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/test`)
//! as an admin connection and create one database per test with a random name, dropped on `Drop`,
//! so parallel tests and repeated runs never collide. If PostgreSQL does not answer, they fail
//! with a message that says how to start it. Set `TEST_LOG=1` to see the server's logs.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use switchboard::config::{Config, LogFormat};
use switchboard::http::{AppState, ServeError, Server};
use switchboard::storage::{ConnectOptions, Database};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Process-wide set-up every test needs: the rustls provider (reqwest has none built in) and,
/// with `TEST_LOG` set, a log subscriber.
pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    if std::env::var_os("TEST_LOG").is_some() {
        let mut config = Config::defaults();
        config.log.format = LogFormat::Text;
        config.log.level = "debug".to_owned();
        let _ = switchboard::telemetry::init(&config.log);
    }
}

/// Defaults with a random local port and the given database.
pub fn test_config(database_url: &str) -> Config {
    let mut config = Config::defaults();
    config.server.bind = SocketAddr::from(([127, 0, 0, 1], 0));
    config.database.url = database_url.to_owned();
    config.database.max_connections = 4;
    // Each server its own journal: parallel tests must never replay each other's rows.
    config.persistence.journal_path =
        std::env::temp_dir().join(format!("sb-journal-{}", unique_suffix()));
    config
}

/// `sqlite://` URL of a file inside `dir` (the file does not need to exist).
pub fn sqlite_url(dir: &Path, file: &str) -> String {
    format!("sqlite://{}", dir.join(file).display())
}

/// A running server. Stop it with [`TestApp::stop`] to check it shuts down cleanly.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base_url: String,
    pub client: reqwest::Client,
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), ServeError>>>,
}

/// Starts the real server (router, background database connector) on `config.server.bind`.
pub async fn spawn_app(config: Config) -> TestApp {
    init();
    let server = Server::bind(config).await.expect("server binds");
    let addr = server.local_addr();
    let state = server.state().clone();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    TestApp {
        addr,
        base_url: format!("http://{addr}"),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("reqwest client"),
        state,
        shutdown: Some(tx),
        handle: Some(handle),
    }
}

impl TestApp {
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base_url))
            .send()
            .await
            .expect("request reaches the server")
    }

    /// Polls `/readyz` until it answers 200 or `patience` passes; returns the last status and body.
    pub async fn poll_readyz(
        &self,
        patience: Duration,
        until_ready: bool,
    ) -> (u16, serde_json::Value) {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let response = self.get("/readyz").await;
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.expect("readyz answers JSON");
            let done = if until_ready {
                status == 200
            } else {
                status == 503
                    && body["reason"]
                        .as_str()
                        .is_some_and(|r| r.contains("attempt"))
            };
            if done || tokio::time::Instant::now() >= deadline {
                return (status, body);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Triggers graceful shutdown and returns how `run` ended.
    pub async fn stop(mut self) -> Result<(), ServeError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.handle.take() {
            Some(handle) => handle.await.expect("server task does not panic"),
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Connects and migrates a database for direct storage tests.
pub async fn migrated(url: &str) -> Database {
    let db = Database::connect(url, &ConnectOptions::default())
        .await
        .expect("database connects");
    db.migrate().await.expect("migrations apply");
    db
}

// === PostgreSQL ===

/// A fresh PostgreSQL database, dropped when this value is dropped.
pub struct PgTestDb {
    pub url: String,
    pub name: String,
    admin_url: String,
}

pub fn pg_admin_url() -> String {
    std::env::var("SWITCHBOARD_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned())
}

/// Replaces the database name in a `postgres://.../NAME?params` URL.
pub fn with_database_name(url: &str, name: &str) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let (base, query) = match url.find('?') {
        Some(q) => (&url[..q], &url[q..]),
        None => (url, ""),
    };
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    format!("{}/{name}{query}", &base[..host_end])
}

fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!(
        "{}_{:x}_{}",
        std::process::id(),
        nanos & 0xffff_ffff,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl PgTestDb {
    pub async fn create() -> PgTestDb {
        init();
        let admin_url = pg_admin_url();
        let admin = Database::connect(
            &admin_url,
            &ConnectOptions {
                max_connections: 1,
                connect_timeout: Duration::from_secs(5),
            },
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL tests need a server at {admin_url} (set SWITCHBOARD_TEST_PG_URL, or run `bash .ci/run`, which starts it): {e}"
            )
        });
        let name = format!("sb_test_{}", unique_suffix());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(admin.pool())
            .await
            .expect("CREATE DATABASE");
        admin.close().await;
        PgTestDb {
            url: with_database_name(&admin_url, &name),
            name,
            admin_url,
        }
    }
}

impl Drop for PgTestDb {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside a tokio test runtime; use a thread with its own runtime to block.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(admin) = Database::connect(&admin_url, &ConnectOptions::default()).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(admin.pool())
                    .await;
                    admin.close().await;
                }
            });
        })
        .join();
    }
}

// === The real binary ===

/// Output of one run of the `switchboard` binary.
pub struct BinRun {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `switchboard ARGS` with the given extra environment, in `cwd`, with every inherited
/// `SWITCHBOARD_*` variable removed so the host environment cannot leak in.
pub fn run_bin(args: &[&str], env: &[(&str, &str)], cwd: &Path) -> BinRun {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command.args(args).current_dir(cwd);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SWITCHBOARD") {
            command.env_remove(name);
        }
    }
    command.env_remove("RUST_LOG");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().expect("switchboard binary runs");
    BinRun {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Asserts a run failed with exit code 2 and exactly one non-empty stderr line, no panic.
pub fn assert_one_line_config_error(run: &BinRun) -> String {
    assert_eq!(run.code, Some(2), "exit code; stderr: {}", run.stderr);
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "one stderr line, got: {}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(
        !run.stderr.to_lowercase().contains("backtrace"),
        "{}",
        run.stderr
    );
    lines[0].to_owned()
}
