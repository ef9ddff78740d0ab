//! The real server over a real socket: health, readiness with and without a database, shutdown.

use std::time::Duration;

use crate::common::{PgTestDb, run_bin, spawn_app, sqlite_url, test_config};

#[tokio::test]
async fn healthz_and_readyz_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = spawn_app(test_config(&sqlite_url(&dir.path().join("db"), "s.db"))).await;

    let health = app.get("/healthz").await;
    assert_eq!(health.status().as_u16(), 200);
    assert_eq!(health.text().await.expect("body"), "ok");

    let (status, body) = app.poll_readyz(Duration::from_secs(30), true).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ready"], true);
    assert_eq!(body["backend"], "sqlite");
    assert!(app.state.database().is_some());

    app.stop().await.expect("graceful shutdown");
}

#[tokio::test]
async fn readyz_on_postgres() {
    let pg = PgTestDb::create().await;
    let app = spawn_app(test_config(&pg.url)).await;
    let (status, body) = app.poll_readyz(Duration::from_secs(30), true).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["backend"], "postgres");
    app.stop().await.expect("graceful shutdown");
}

#[tokio::test]
async fn postgres_down_keeps_serving_and_readyz_says_why() {
    // Nothing listens on port 1: every connection attempt is refused.
    let mut config = test_config("postgres://postgres@127.0.0.1:1/test");
    config.database.connect_timeout_ms = 500;
    let app = spawn_app(config).await;

    assert_eq!(app.get("/healthz").await.status().as_u16(), 200);
    let (status, body) = app.poll_readyz(Duration::from_secs(30), false).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ready"], false);
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("database unreachable"), "{reason}");
    assert!(reason.contains("retrying"), "{reason}");

    app.stop().await.expect("shutdown while still retrying");
}

#[tokio::test]
async fn binary_serve_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe port");
        probe.local_addr().expect("addr").port()
    };
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("serve")
        .current_dir(dir.path())
        .env("SWITCHBOARD__SERVER__BIND", format!("127.0.0.1:{port}"))
        .env_remove("SWITCHBOARD_CONFIG")
        .env_remove("SWITCHBOARD__DATABASE__URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("serve starts");

    crate::common::init();
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/readyz");
    let mut ready = false;
    for _ in 0..600 {
        if let Ok(response) = client.get(&url).send().await
            && response.status().as_u16() == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("wait");
    assert!(
        ready,
        "server became ready; stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(0), "clean exit after SIGTERM");
    assert!(
        dir.path().join("data/switchboard.db").is_file(),
        "embedded database created"
    );
}

#[test]
fn binary_serve_reports_a_port_in_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let addr = taken.local_addr().expect("addr").to_string();
    let run = run_bin(
        &["serve"],
        &[("SWITCHBOARD__SERVER__BIND", &addr)],
        dir.path(),
    );
    assert_eq!(run.code, Some(1), "stderr: {}", run.stderr);
    assert!(
        run.stderr.contains(&format!("cannot listen on {addr}")),
        "{}",
        run.stderr
    );
}
