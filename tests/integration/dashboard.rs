//! The operator dashboard in a real browser: Debian's headless Chromium driven through
//! chromedriver (WebDriver) against the real server. Simulated ConversationRelay calls appear
//! in the page, move between state columns as the event stream says, show their timeline and
//! transcript on click, and disappear when hung up. Saves a screenshot (set
//! `SWITCHBOARD_DASHBOARD_SCREENSHOT=docs/dashboard.png` to write it there as well).
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`apt-get install chromium
//! chromium-driver`; `.ci/run` installs them); without them the test fails and says so.

use std::path::Path;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use switchboard::config::TwilioMode;

use crate::common::*;
use crate::history::{Ws, relay, relay_send, relay_setup, relay_turn, wait_ended};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const PATIENCE: Duration = Duration::from_secs(20);

/// chromedriver on a free port; killed on drop.
struct Driver {
    child: std::process::Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver() -> Driver {
    init();
    for tool in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: the dashboard test drives a real browser; install it with \
             `apt-get install -y --no-install-recommends chromium chromium-driver` (.ci/run does)"
        );
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = std::process::Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let status = format!("{}/status", driver.url);
    for _ in 0..200 {
        if reqwest::get(&status)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return driver;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("chromedriver did not answer on {}", driver.url);
}

async fn browser(driver: &Driver, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1500,860",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session through chromedriver")
}

/// Waits until `css` matches something.
async fn wait_for(c: &Client, css: &str) {
    if let Err(e) = c
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css(css))
        .await
    {
        let html = c.source().await.unwrap_or_default();
        panic!("{css} never appeared ({e}); page:\n{html}");
    }
}

/// Waits until `css` matches nothing.
async fn wait_gone(c: &Client, css: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !c.find_all(Locator::Css(css)).await.unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{css} never went away"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn text_of(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn prompt(ws: &mut Ws, text: &str) {
    relay_send(
        ws,
        json!({"type":"prompt","voicePrompt":text,"lang":"en-US","last":true}),
    )
    .await;
    relay_turn(ws).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_follows_live_calls_in_a_real_browser() {
    let driver = start_driver().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&sqlite_url(dir.path(), "dash.db"));
    config.twilio.mode = TwilioMode::Relay;
    config.chaos.enabled = true;
    config.operator.sse_heartbeat_ms = 500;
    let app = spawn_app(config).await;
    let (status, body) = app.poll_readyz(Duration::from_secs(30), true).await;
    assert_eq!(status, 200, "server ready: {body}");
    let db = app.state.database().unwrap();
    for (phone, name) in [
        ("+15550100001", "Ana Souza"),
        ("+15550100002", "Bruno Lima"),
        ("+15550100003", "Carla Mendes"),
    ] {
        sqlx::query("INSERT INTO customers (phone_e164, name, status, created_at_ms, updated_at_ms) VALUES ($1, $2, 'active', 1, 1)")
            .bind(phone)
            .bind(name)
            .execute(db.pool())
            .await
            .unwrap();
    }

    let profile = tempfile::tempdir().unwrap();
    let c = browser(&driver, profile.path()).await;
    c.goto(&format!("{}/", app.base_url)).await.unwrap();
    wait_for(&c, "#link.live").await;
    assert_eq!(text_of(&c, "#col-conversing h2 .n").await, "0");

    // A known caller: in the page as soon as it starts, then on to conversing.
    let mut ana = relay(&app).await;
    relay_setup(&mut ana, "CAdash1", "+15550100001").await;
    relay_turn(&mut ana).await;
    wait_for(&c, "#col-enriched [data-sid='CAdash1']").await;
    let card = text_of(&c, "[data-sid='CAdash1']").await;
    assert!(
        card.contains("Ana Souza") && card.contains("+15550****01"),
        "{card}"
    );
    prompt(&mut ana, "Can I move my delivery to Friday?").await;
    wait_for(&c, "#col-conversing [data-sid='CAdash1']").await;
    wait_gone(&c, "#col-enriched [data-sid='CAdash1']").await;

    // More calls for the picture: a new caller asked for their name, a restarted call, one
    // that has only been greeted.
    let mut stranger = relay(&app).await;
    relay_setup(&mut stranger, "CAdash2", "+15550199999").await;
    relay_turn(&mut stranger).await;
    let mut bruno = relay(&app).await;
    relay_setup(&mut bruno, "CAdash3", "+15550100002").await;
    relay_turn(&mut bruno).await;
    prompt(&mut bruno, "What tasks are open on my account?").await;
    let crash = app
        .client
        .post(format!("{}/api/v1/calls/CAdash3/crash", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(crash.status(), 202);
    prompt(&mut bruno, "Are you still there?").await;
    let mut carla = relay(&app).await;
    relay_setup(&mut carla, "CAdash4", "+15550100003").await;
    relay_turn(&mut carla).await;
    wait_for(&c, "#col-awaiting_name [data-sid='CAdash2']").await;
    wait_for(&c, "#col-conversing [data-sid='CAdash3'] .restart").await;
    wait_for(&c, "#col-enriched [data-sid='CAdash4']").await;

    // Counters refresh from /api/v1/stats every 2 s.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while text_of(&c, "#c-active").await != "4" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "active calls counter"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A click shows the call's timeline and transcript.
    c.find(Locator::Css("[data-sid='CAdash1']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(&c, "#timeline tr").await;
    let timeline = text_of(&c, "#timeline").await;
    assert!(
        timeline.contains("connected → greeting") && timeline.contains("enriched → conversing"),
        "{timeline}"
    );
    let transcript = text_of(&c, "#transcript").await;
    assert!(
        transcript.contains("Can I move my delivery to Friday?"),
        "{transcript}"
    );

    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let saved = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    std::fs::write(&saved, &png).unwrap();
    if let Ok(path) = std::env::var("SWITCHBOARD_DASHBOARD_SCREENSHOT") {
        std::fs::write(Path::new(env!("CARGO_MANIFEST_DIR")).join(path), &png).unwrap();
    }

    // Hung up: the call finalizes, ends, and leaves the page.
    let hangup = app
        .client
        .post(format!("{}/api/v1/calls/CAdash1/hangup", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(hangup.status(), 202);
    wait_ended(&app, "CAdash1").await;
    wait_gone(&c, "[data-sid='CAdash1']").await;
    for ws in [&mut ana, &mut stranger, &mut bruno, &mut carla] {
        let _ = futures::SinkExt::close(ws).await;
    }
    for sid in ["CAdash2", "CAdash3", "CAdash4"] {
        wait_ended(&app, sid).await;
    }
    wait_gone(&c, ".call").await;
    c.close().await.unwrap();
}
