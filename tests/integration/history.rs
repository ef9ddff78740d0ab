//! Customer history over the real server on both backends: past conversations newest first, a
//! page at a time with excerpts; malformed parameters named in a 400; deleting a customer erases
//! their calls, messages, state events, facts and tasks and nothing of anyone else's. And the
//! finalizing path end to end: the LLM's summary of one call is in the prompt of the next call
//! from the same number.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard::store::{DbCell, SqlStore};
use switchboard_actors::ports::ConversationStore;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;
use crate::persistence::{message, record, transition};

async fn ready_app(url: &str, f: impl FnOnce(&mut switchboard::config::Config)) -> TestApp {
    let mut config = test_config(url);
    config.cache.max_entries = 0;
    f(&mut config);
    let app = spawn_app(config).await;
    let (status, body) = app.poll_readyz(Duration::from_secs(30), true).await;
    assert_eq!(status, 200, "server ready: {body}");
    app
}

async fn customer(app: &TestApp, phone: &str, name: &str) -> i64 {
    let db = app.state.database().unwrap();
    sqlx::query_scalar("INSERT INTO customers (phone_e164, name, status, created_at_ms, updated_at_ms) VALUES ($1, $2, 'active', 1, 1) RETURNING id")
        .bind(phone)
        .bind(name)
        .fetch_one(db.pool())
        .await
        .unwrap()
}

/// `n` ended calls from `phone`, one minute apart, each with three messages and an event.
async fn calls(app: &TestApp, prefix: &str, phone: &str, n: u64) {
    let cell = DbCell::default();
    cell.set(app.state.database().unwrap());
    let store = SqlStore::new(cell);
    for i in 0..n {
        let sid = format!("{prefix}{i:02}");
        let long = format!("call {i}: {}", "very long words ".repeat(40));
        store
            .write_batch(&[
                message(&sid, 0, &long),
                message(&sid, 1, "agent line"),
                message(&sid, 2, "caller line"),
                transition(&sid, 1),
            ])
            .await
            .unwrap();
        let mut r = record(&sid, phone);
        r.started_at_ms += i * 60_000;
        r.ended_at_ms = r.started_at_ms + 30_000;
        store.write_call_record(&r).await.unwrap();
    }
}

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    let r = app.get(path).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn conversations_paginate_newest_first(url: &str) {
    let app = ready_app(url, |_| {}).await;
    let ana = customer(&app, "+15550100001", "Ana").await;
    let bob = customer(&app, "+15550100002", "Bob").await;
    calls(&app, "CAana", "+15550100001", 5).await;
    calls(&app, "CAbob", "+15550100002", 1).await;
    let (status, page1) = get(
        &app,
        &format!("/api/v1/customers/{ana}/conversations?limit=2"),
    )
    .await;
    assert_eq!(status, 200, "{page1}");
    let sids = |v: &Value| {
        v["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["call_sid"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(sids(&page1), vec!["CAana04", "CAana03"], "newest first");
    let first = &page1["conversations"][0];
    assert_eq!(first["message_count"], 3);
    assert_eq!(first["duration_ms"], 30_000);
    assert_eq!(first["summary"], "summary of CAana04");
    assert_eq!(first["excerpt"].as_array().unwrap().len(), 3);
    assert_eq!(
        first["excerpt"][0]["excerpt_cut"], true,
        "long lines are cut in excerpts only"
    );
    let cursor = page1["next_before"].as_str().unwrap().to_owned();
    let (_, page2) = get(
        &app,
        &format!("/api/v1/customers/{ana}/conversations?limit=2&before={cursor}"),
    )
    .await;
    assert_eq!(sids(&page2), vec!["CAana02", "CAana01"]);
    let cursor = page2["next_before"].as_str().unwrap().to_owned();
    let (_, page3) = get(
        &app,
        &format!("/api/v1/customers/{ana}/conversations?limit=2&before={cursor}"),
    )
    .await;
    assert_eq!(sids(&page3), vec!["CAana00"]);
    assert_eq!(page3["next_before"], Value::Null, "last page");
    let (_, all) = get(&app, &format!("/api/v1/customers/{bob}/conversations")).await;
    assert_eq!(sids(&all), vec!["CAbob00"], "only this customer's calls");
    // The stored transcript of an ended call is whole (the excerpt was cut, the message is not).
    let (_, call) = get(&app, "/api/v1/calls/CAana04").await;
    assert!(call["transcript"][0]["text"].as_str().unwrap().len() > 600);
    for (path, param) in [
        (
            format!("/api/v1/customers/{ana}/conversations?limit=0"),
            "`limit`",
        ),
        (
            format!("/api/v1/customers/{ana}/conversations?limit=ten"),
            "`limit`",
        ),
        (
            format!("/api/v1/customers/{ana}/conversations?before=yesterday"),
            "`before`",
        ),
        ("/api/v1/customers/abc/conversations".to_owned(), "`id`"),
    ] {
        let (status, body) = get(&app, &path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(param),
            "{path}: {body}"
        );
    }
    let (status, _) = get(&app, "/api/v1/customers/999999/conversations").await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_paginate_newest_first_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    conversations_paginate_newest_first(&sqlite_url(dir.path(), "h.db")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_paginate_newest_first_on_postgres() {
    let pg = PgTestDb::create().await;
    conversations_paginate_newest_first(&pg.url).await;
}

async fn deleting_a_customer_erases_their_data(url: &str) {
    let app = ready_app(url, |_| {}).await;
    let ana = customer(&app, "+15550100001", "Ana").await;
    let bob = customer(&app, "+15550100002", "Bob").await;
    calls(&app, "CAana", "+15550100001", 3).await;
    calls(&app, "CAbob", "+15550100002", 2).await;
    let db = app.state.database().unwrap();
    for id in [ana, bob] {
        sqlx::query("INSERT INTO customer_facts (customer_id, fact, created_at_ms) VALUES ($1, 'likes tea', 1)").bind(id).execute(db.pool()).await.unwrap();
        sqlx::query("INSERT INTO tasks (customer_id, title, status, priority, created_at_ms, updated_at_ms) VALUES ($1, 'call back', 'pending', 1, 1, 1)").bind(id).execute(db.pool()).await.unwrap();
    }
    let delete = |id: i64| {
        app.client
            .delete(format!("{}/api/v1/customers/{id}", app.base_url))
            .send()
    };
    assert_eq!(delete(ana).await.unwrap().status(), 204);
    assert_eq!(delete(ana).await.unwrap().status(), 404, "already gone");
    let n = |sql: String| {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
                .fetch_one(db.pool())
                .await
                .unwrap()
        }
    };
    assert_eq!(
        n("SELECT COUNT(*) FROM messages WHERE call_sid LIKE 'CAana%'".into()).await,
        0
    );
    assert_eq!(
        n("SELECT COUNT(*) FROM call_events WHERE call_sid LIKE 'CAana%'".into()).await,
        0
    );
    assert_eq!(
        n("SELECT COUNT(*) FROM calls WHERE call_sid LIKE 'CAana%'".into()).await,
        0
    );
    assert_eq!(
        n(format!(
            "SELECT COUNT(*) FROM customer_facts WHERE customer_id = {ana}"
        ))
        .await,
        0
    );
    assert_eq!(
        n(format!(
            "SELECT COUNT(*) FROM tasks WHERE customer_id = {ana}"
        ))
        .await,
        0
    );
    assert_eq!(
        n(format!("SELECT COUNT(*) FROM customers WHERE id = {ana}")).await,
        0
    );
    // Bob is untouched.
    assert_eq!(
        n("SELECT COUNT(*) FROM messages WHERE call_sid LIKE 'CAbob%'".into()).await,
        6
    );
    assert_eq!(
        n("SELECT COUNT(*) FROM calls WHERE call_sid LIKE 'CAbob%'".into()).await,
        2
    );
    assert_eq!(
        n(format!(
            "SELECT COUNT(*) FROM customer_facts WHERE customer_id = {bob}"
        ))
        .await,
        1
    );
    let (status, _) = get(&app, "/api/v1/calls/CAana00").await;
    assert_eq!(status, 404, "the erased call is not served any more");
    let r = app
        .client
        .delete(format!("{}/api/v1/customers/x1", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_customer_erases_their_data_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    deleting_a_customer_erases_their_data(&sqlite_url(dir.path(), "d.db")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_customer_erases_their_data_on_postgres() {
    let pg = PgTestDb::create().await;
    deleting_a_customer_erases_their_data(&pg.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_requires_the_operator_token() {
    let dir = tempfile::tempdir().unwrap();
    let app = ready_app(&sqlite_url(dir.path(), "t.db"), |c| {
        c.operator.token = switchboard::config::Secret::new("s3cret")
    })
    .await;
    assert_eq!(
        app.get("/api/v1/customers/1/conversations").await.status(),
        401
    );
    let r = app
        .client
        .delete(format!("{}/api/v1/customers/1", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

// === the summary becomes the next call's context ===

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn relay(app: &TestApp) -> Ws {
    tokio_tungstenite::connect_async(format!("ws://{}/twilio/relay", app.addr))
        .await
        .expect("relay socket")
        .0
}

pub async fn relay_send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into()))
        .await
        .expect("send");
}

pub async fn relay_setup(ws: &mut Ws, sid: &str, from: &str) {
    relay_send(ws, json!({"type":"setup","sessionId":format!("VX{sid}"),"callSid":sid,"accountSid":"AC1","from":from,"to":"+15557654321","direction":"inbound","customParameters":{}})).await;
}

/// Says `text` as the caller (one whole `prompt`) and returns the agent's reply.
pub async fn relay_ask(ws: &mut Ws, text: &str) -> String {
    relay_send(
        ws,
        json!({"type":"prompt","voicePrompt":text,"lang":"en-US","last":true}),
    )
    .await;
    relay_turn(ws).await
}

/// Reads `text` tokens until one with `last: true`; returns the whole turn.
pub async fn relay_turn(ws: &mut Ws) -> String {
    let mut turn = String::new();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("in time")
            .expect("open")
            .expect("frame");
        let Message::Text(text) = msg else { continue };
        let v: Value = serde_json::from_str(&text).expect("json");
        if v["type"] == "text" {
            turn.push_str(v["token"].as_str().unwrap_or(""));
            if v["last"] == true {
                return turn;
            }
        }
    }
}

/// Waits until the call is no longer live (it finalized and ended).
pub async fn wait_ended(app: &TestApp, sid: &str) {
    let sid = switchboard_actors::CallSid(sid.into());
    for _ in 0..1000 {
        if app.state.runtime().calls.get(&sid).is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("call {sid} never ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_llm_summary_of_a_call_is_in_the_next_calls_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let app = ready_app(&sqlite_url(dir.path(), "s.db"), |c| {
        c.twilio.mode = switchboard::config::TwilioMode::Relay
    })
    .await;
    let ana = customer(&app, "+15550100001", "Ana Souza").await;
    let mut ws = relay(&app).await;
    relay_setup(&mut ws, "CAfirst", "+15550100001").await;
    relay_turn(&mut ws).await;
    relay_send(
        &mut ws,
        json!({"type":"prompt","voicePrompt":"Please move my delivery to Friday","last":true}),
    )
    .await;
    relay_turn(&mut ws).await;
    ws.close(None).await.unwrap();
    wait_ended(&app, "CAfirst").await;
    let (_, stored) = get(&app, "/api/v1/calls/CAfirst").await;
    let summary = stored["summary"]
        .as_str()
        .expect("a summary is stored")
        .to_owned();
    let standins = app
        .state
        .calls()
        .standins
        .as_ref()
        .expect("local stand-ins");
    let asked = standins.requests();
    let summary_request = asked
        .iter()
        .find(|r| r["messages"][0]["content"] == switchboard_actors::summary::SUMMARY_PROMPT)
        .expect("the LLM was asked for a summary");
    assert!(
        summary_request["messages"][1]["content"]
            .as_str()
            .unwrap()
            .contains("caller: Please move my delivery to Friday"),
        "{summary_request}"
    );
    assert!(
        summary.starts_with("You said:"),
        "the stand-in LLM wrote the summary (not the fallback): {summary}"
    );
    let db = app.state.database().unwrap();
    let updated: i64 = sqlx::query_scalar("SELECT updated_at_ms FROM customers WHERE id = $1")
        .bind(ana)
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert!(updated > 1, "the customer's updated_at_ms moved");
    // The next call from the same number: the summary is "last call" context in the LLM prompt.
    let mut ws = relay(&app).await;
    relay_setup(&mut ws, "CAsecond", "+15550100001").await;
    relay_turn(&mut ws).await;
    relay_send(
        &mut ws,
        json!({"type":"prompt","voicePrompt":"Did you change it?","last":true}),
    )
    .await;
    relay_turn(&mut ws).await;
    let asked = standins.requests();
    let turn = asked
        .iter()
        .rev()
        .find(|r| {
            r.to_string().contains("Did you change it?")
                && r["messages"][0]["content"] != switchboard_actors::summary::SUMMARY_PROMPT
        })
        .expect("the second call's LLM request");
    let system = turn["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.contains("last_call:") && system.contains(&summary),
        "the first call's summary is in the prompt: {system}"
    );
    let (_, history) = get(&app, &format!("/api/v1/customers/{ana}/conversations")).await;
    assert_eq!(history["conversations"][0]["call_sid"], "CAfirst");
    assert_eq!(history["conversations"][0]["summary"], summary.as_str());
}
