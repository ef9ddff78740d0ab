//! The Twilio edge end to end: the real server on a random port, driven over real HTTP and real
//! WebSockets the way Twilio drives it (a client library that is not the server's own), with the
//! local LLM/TTS stand-ins and a real SQLite database.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard_twilio::media::{InboundFrame, Media, MediaFormat, OutboundFrame, Start};
use switchboard_twilio::signature;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::common::*;
use crate::history::{relay_send, relay_setup, relay_turn};

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub const KNOWN: &str = "+15550100001";
const TOKEN: &str = "12345";

pub async fn app(f: impl FnOnce(&mut switchboard::config::Config)) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(&sqlite_url(dir.path(), "calls.db"));
    config.chaos.enabled = true;
    config.supervisor.max_restarts = 5;
    f(&mut config);
    let app = spawn_app(config).await;
    let (status, body) = app.poll_readyz(Duration::from_secs(30), true).await;
    assert_eq!(status, 200, "server ready: {body}");
    seed_customer(&app, KNOWN, "Ana Souza").await;
    (app, dir)
}

pub async fn seed_customer(app: &TestApp, phone: &str, name: &str) {
    let db = app.state.database().expect("database");
    sqlx::query("INSERT INTO customers (phone_e164, name, status, created_at_ms, updated_at_ms) VALUES ($1, $2, 'active', 1, 1)")
        .bind(phone)
        .bind(name)
        .execute(db.pool())
        .await
        .expect("seed customer");
    sqlx::query("INSERT INTO tasks (customer_id, title, status, priority, due_at_ms, created_at_ms, updated_at_ms) SELECT id, 'Renew the contract', 'pending', 1, 1900000000000, 1, 1 FROM customers WHERE phone_e164 = $1")
        .bind(phone)
        .execute(db.pool())
        .await
        .expect("seed task");
}

pub async fn ws_connect(
    app: &TestApp,
    path: &str,
    signed: Option<&str>,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let url = format!("ws://{}{path}", app.addr);
    let mut request = url.into_client_request()?;
    if let Some(token) = signed {
        let public = &app.state.config().server.public_url;
        let signed_url =
            signature::upgrade_url(public, Some(&app.addr.to_string()), path).expect("url");
        let sig = signature::compute(token, &signed_url, &[] as &[(&str, &str)]);
        request
            .headers_mut()
            .insert("x-twilio-signature", sig.parse().expect("header"));
    }
    let (ws, _) = tokio_tungstenite::connect_async(request).await?;
    Ok(ws)
}

pub fn start_frame(call_sid: &str, from: &str) -> String {
    let mut params = BTreeMap::new();
    params.insert("CallSid".to_string(), call_sid.to_string());
    params.insert("From".to_string(), from.to_string());
    params.insert("To".to_string(), "+15557654321".to_string());
    InboundFrame::Start(Start {
        sequence_number: 1,
        stream_sid: format!("MZ{call_sid}"),
        account_sid: "AC00000000000000000000000000000000".into(),
        call_sid: call_sid.into(),
        tracks: vec!["inbound".into()],
        custom_parameters: params,
        media_format: MediaFormat {
            encoding: "audio/x-mulaw".into(),
            sample_rate: 8000,
            channels: 1,
        },
    })
    .to_json()
}

pub fn media_frame(seq: u64, call_sid: &str, payload: Vec<u8>) -> String {
    InboundFrame::Media(Media {
        sequence_number: seq,
        stream_sid: format!("MZ{call_sid}"),
        track: "inbound".into(),
        chunk: seq,
        timestamp_ms: seq * 20,
        payload,
    })
    .to_json()
}

fn loud_frame() -> Vec<u8> {
    let samples: Vec<i16> = (0..160)
        .map(|i| (9000.0 * (i as f32 * 0.35).sin()) as i16)
        .collect();
    let mut out = Vec::new();
    switchboard_twilio::audio::encode_mulaw(&samples, &mut out);
    out
}

/// Read server messages until `pred` matches one (returns it) — as Twilio, echoing marks when
/// `echo_marks` is set. Fails after a generous timeout.
pub async fn read_until(
    ws: &mut Ws,
    echo_marks: bool,
    call_sid: &str,
    mut pred: impl FnMut(&OutboundFrame) -> bool,
) -> OutboundFrame {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("server answered in time");
        let msg = msg.expect("socket open").expect("frame");
        let Message::Text(text) = msg else { continue };
        let frame = switchboard_twilio::media::parse_outbound(&text)
            .expect("server sends valid Twilio frames");
        if echo_marks && let OutboundFrame::Mark { name, .. } = &frame {
            echo_mark(ws, call_sid, name.clone()).await;
        }
        if pred(&frame) {
            return frame;
        }
    }
}

/// Reads the greeting up to its mark and echoes the mark ("played") only once the CRM has named
/// the caller: a real greeting lasts seconds, the lookup milliseconds, but a test plays the
/// greeting as fast as it reads it. Then the caller is welcomed by name, not asked for it.
pub async fn play_greeting_once_known(app: &TestApp, ws: &mut Ws, call_sid: &str) {
    let mark = read_until(ws, false, call_sid, |f| {
        matches!(f, OutboundFrame::Mark { .. })
    })
    .await;
    echo_once_known(app, ws, call_sid, mark).await;
}

/// Echoes `mark` once the CRM has named the caller (see [`play_greeting_once_known`]).
pub async fn echo_once_known(app: &TestApp, ws: &mut Ws, call_sid: &str, mark: OutboundFrame) {
    let OutboundFrame::Mark { name, .. } = mark else {
        panic!("not a mark: {mark:?}")
    };
    for _ in 0..500 {
        if api(app, &format!("/api/v1/calls/{call_sid}")).await["customer_name"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    echo_mark(ws, call_sid, name).await;
}

/// Tell the server, as Twilio does, that the audio before mark `name` has played.
async fn echo_mark(ws: &mut Ws, call_sid: &str, name: String) {
    let echo = InboundFrame::Mark {
        sequence_number: 99,
        stream_sid: format!("MZ{call_sid}"),
        name,
    }
    .to_json();
    ws.send(Message::Text(echo.into()))
        .await
        .expect("echo mark");
}

pub async fn api(app: &TestApp, path: &str) -> Value {
    app.client
        .get(format!("{}{path}", app.base_url))
        .send()
        .await
        .expect("api")
        .json()
        .await
        .expect("json")
}

pub async fn wait_state(app: &TestApp, sid: &str, state: &str) -> Value {
    for _ in 0..300 {
        let v = api(app, &format!("/api/v1/calls/{sid}")).await;
        if v["state"] == state {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "call {sid} never reached {state}: {}",
        api(app, &format!("/api/v1/calls/{sid}")).await
    );
}

pub async fn metric(app: &TestApp, needle: &str) -> f64 {
    let text = app
        .client
        .get(format!("{}/metrics", app.base_url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|l| l.starts_with(needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voice_webhook_answers_twiml_with_escaped_parameters() {
    let (app, _dir) = app(|c| c.server.public_url = "https://calls.example.com".into()).await;
    let body = "CallSid=CA1&AccountSid=AC1&From=%2B1555%20%3Cscript%3E%26%22&To=%2B15557654321&CallStatus=ringing&Direction=inbound&Unknown=x";
    let resp = app
        .client
        .post(format!(
            "{}/twilio/voice?CustomerName=Lucy%20Lead",
            app.base_url
        ))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/xml")
    );
    let xml = resp.text().await.unwrap();
    assert!(xml.contains(r#"<Stream url="wss://calls.example.com/twilio/media" statusCallback="https://calls.example.com/twilio/stream-status">"#), "{xml}");
    assert!(
        xml.contains(r#"<Parameter name="From" value="+1555 &lt;script&gt;&amp;&quot;"/>"#),
        "{xml}"
    );
    assert!(
        xml.contains(r#"<Parameter name="CustomerName" value="Lucy Lead"/>"#),
        "{xml}"
    );
    assert!(xml.contains(r#"<Parameter name="Direction" value="inbound"/>"#));
    let missing = app
        .client
        .post(format!("{}/twilio/voice", app.base_url))
        .body("From=x")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_mode_answers_conversation_relay_twiml() {
    let (app, _dir) = app(|c| {
        c.server.public_url = "https://calls.example.com".into();
        c.twilio.mode = switchboard::config::TwilioMode::Relay;
        c.twilio.welcome_greeting = "Hi! How can I help?".into();
    })
    .await;
    let body = "CallSid=CA2&AccountSid=AC1&From=%2B15550100001&To=%2B15557654321&CallStatus=ringing&Direction=inbound";
    let xml = app
        .client
        .post(format!("{}/twilio/voice", app.base_url))
        .body(body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(xml.contains(r#"<ConversationRelay url="wss://calls.example.com/twilio/relay" welcomeGreeting="Hi! How can I help?""#), "{xml}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_are_required_on_webhooks_and_websocket_upgrades() {
    let (app, _dir) = app(|c| {
        c.twilio.auth_token = switchboard::config::Secret::new(TOKEN);
        c.twilio.validate_signatures = true;
    })
    .await;
    let public = app.state.config().server.public_url.clone();
    let fields = [
        ("CallSid", "CA3"),
        ("AccountSid", "AC1"),
        ("From", KNOWN),
        ("To", "+15557654321"),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
    ];
    let body = fields
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace('+', "%2B")))
        .collect::<Vec<_>>()
        .join("&");
    let host = app.addr.to_string();
    let scheme = public.split("://").next().unwrap();
    let url = format!("{scheme}://{host}/twilio/voice");
    let good = signature::compute(TOKEN, &url, &fields);
    let post = |sig: Option<String>| {
        let mut req = app
            .client
            .post(format!("{}/twilio/voice", app.base_url))
            .body(body.clone());
        if let Some(sig) = sig {
            req = req.header("X-Twilio-Signature", sig);
        }
        req.send()
    };
    assert_eq!(post(Some(good.clone())).await.unwrap().status(), 200);
    assert_eq!(post(None).await.unwrap().status(), 403);
    let tampered = signature::compute(TOKEN, &url, &[("CallSid", "CA4")]);
    assert_eq!(post(Some(tampered)).await.unwrap().status(), 403);
    // WebSocket upgrades: unsigned is refused before any call exists; signed is accepted.
    assert!(
        ws_connect(&app, "/twilio/media", None).await.is_err(),
        "unsigned upgrade refused"
    );
    assert!(
        ws_connect(&app, "/twilio/media", Some("wrong-token"))
            .await
            .is_err(),
        "badly signed upgrade refused"
    );
    let mut ws = ws_connect(&app, "/twilio/media", Some(TOKEN))
        .await
        .expect("signed upgrade accepted");
    ws.send(Message::Text(start_frame("CAsigned", KNOWN).into()))
        .await
        .unwrap();
    read_until(&mut ws, false, "CAsigned", |f| {
        matches!(f, OutboundFrame::Media { .. })
    })
    .await;
    assert_eq!(
        api(&app, "/api/v1/calls").await["count"],
        1,
        "only the signed socket created a call"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_media_stream_call_from_connected_to_stop() {
    let (app, _dir) = app(|_| {}).await;
    let mut ws = ws_connect(&app, "/twilio/media", None)
        .await
        .expect("connect");
    ws.send(Message::Text(
        json!({"event":"connected","protocol":"Call","version":"1.0.0"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    ws.send(Message::Text(start_frame("CAmedia1", KNOWN).into()))
        .await
        .unwrap();
    // The greeting streams as mu-law in messages of up to 200 ms (`twilio.media_message_ms`),
    // whole 160-byte frames each, then a mark.
    let mut sizes = Vec::new();
    let greeting_mark = read_until(&mut ws, false, "CAmedia1", |f| match f {
        OutboundFrame::Media {
            stream_sid,
            payload,
        } => {
            assert_eq!(stream_sid, "MZCAmedia1");
            sizes.push(payload.len());
            false
        }
        OutboundFrame::Mark { .. } => true,
        OutboundFrame::Clear { .. } => false,
    })
    .await;
    echo_once_known(&app, &mut ws, "CAmedia1", greeting_mark).await;
    let (last, full) = sizes.split_last().expect("greeting audio before its mark");
    assert!(
        !full.is_empty(),
        "a greeting longer than one message: {sizes:?}"
    );
    assert!(full.iter().all(|&n| n == 1600), "{sizes:?}");
    assert!(*last > 0 && *last <= 1600 && last % 160 == 0, "{sizes:?}");
    let call = wait_state(&app, "CAmedia1", "enriched").await;
    assert_eq!(
        call["customer_name"], "Ana Souza",
        "the caller's number reached the CRM lookup"
    );
    assert_eq!(call["caller"], "+15550****01");
    // The greeting did not wait for the CRM; the caller it found is welcomed by name next.
    read_until(&mut ws, true, "CAmedia1", |f| {
        matches!(f, OutboundFrame::Mark { .. })
    })
    .await;
    ws.send(Message::Text(json!({"event":"dtmf","sequenceNumber":"5","streamSid":"MZCAmedia1","dtmf":{"track":"inbound_track","digit":"7"}}).to_string().into())).await.unwrap();
    ws.send(Message::Text(json!({"event":"stop","sequenceNumber":"6","streamSid":"MZCAmedia1","stop":{"accountSid":"AC1","callSid":"CAmedia1"}}).to_string().into())).await.unwrap();
    // The server finalizes and closes the socket.
    let closed = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(Ok(msg)) = ws.next().await {
            if matches!(msg, Message::Close(_)) {
                return true;
            }
        }
        true
    })
    .await
    .expect("socket closed by the server");
    assert!(closed);
    wait_state(&app, "CAmedia1", "ended").await;
    // The last transition row is written on the flush after the call record (which waits for the
    // LLM's summary of the call), so give it time on a loaded machine.
    let mut stored = api(&app, "/api/v1/calls/CAmedia1").await;
    for _ in 0..500 {
        if stored["history"]
            .as_array()
            .is_some_and(|h| h.last().is_some_and(|t| t["to"] == "ended"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        stored = api(&app, "/api/v1/calls/CAmedia1").await;
    }
    assert_eq!(stored["live"], false);
    assert_eq!(stored["outcome"], "caller hung up");
    let texts: Vec<String> = stored["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        texts,
        vec![
            "Hello, thanks for calling Switchboard.",
            "Welcome back, Ana Souza! How can I help you today?",
            "caller pressed 7"
        ]
    );
    let states: Vec<&str> = stored["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["to"].as_str().unwrap())
        .collect();
    assert_eq!(states, vec!["greeting", "enriched", "finalizing", "ended"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barge_in_sends_clear_and_keeps_only_what_was_heard() {
    // The other settings than the defaults: the calls share the server's runtime, and every
    // 20 ms frame leaves in a message of its own.
    let (app, _dir) = app(|c| {
        c.server.call_threads = 0;
        c.twilio.media_message_ms = 20;
    })
    .await;
    let mut ws = ws_connect(&app, "/twilio/media", None).await.unwrap();
    ws.send(Message::Text(start_frame("CAbarge", "+15550100999").into()))
        .await
        .unwrap();
    // Unknown caller: greeting, then "May I have your name?" — play the greeting only.
    read_until(&mut ws, true, "CAbarge", |f| {
        if let OutboundFrame::Media { payload, .. } = f {
            assert_eq!(payload.len(), 160, "one frame per message");
        }
        matches!(f, OutboundFrame::Mark { .. })
    })
    .await;
    read_until(&mut ws, false, "CAbarge", |f| {
        matches!(f, OutboundFrame::Mark { .. })
    })
    .await;
    wait_state(&app, "CAbarge", "awaiting_name").await;
    // The caller talks over the question (loud audio, 100 ms).
    for seq in 0..5 {
        ws.send(Message::Text(
            media_frame(10 + seq, "CAbarge", loud_frame()).into(),
        ))
        .await
        .unwrap();
    }
    read_until(&mut ws, false, "CAbarge", |f| {
        matches!(f, OutboundFrame::Clear { .. })
    })
    .await;
    let call = api(&app, "/api/v1/calls/CAbarge").await;
    let texts: Vec<&str> = call["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        vec!["Hello, thanks for calling Switchboard."],
        "the unheard question is not in the transcript"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_are_counted_and_the_call_goes_on() {
    let (app, _dir) = app(|_| {}).await;
    let before = metric(&app, "switchboard_rejected_frames_total").await;
    let mut ws = ws_connect(&app, "/twilio/media", None).await.unwrap();
    let sid = "CAbad";
    ws.send(Message::Text(media_frame(1, sid, vec![0xFF; 160]).into()))
        .await
        .unwrap(); // media before start
    ws.send(Message::Text(start_frame(sid, KNOWN).into()))
        .await
        .unwrap();
    let bad: Vec<Message> = vec![
        Message::Text("not json at all".into()),
        Message::Binary(vec![1, 2, 3].into()),
        Message::Text(json!({"event":"surprise"}).to_string().into()),
        Message::Text(start_frame(sid, KNOWN).into()), // a second start
        Message::Text(json!({"event":"media","sequenceNumber":"3","streamSid":"MZCAbad","media":{"track":"inbound","chunk":"1","timestamp":"5","payload":"***not base64***"}}).to_string().into()),
        Message::Text(media_frame(4, sid, vec![0xFF; 100]).into()), // not 160-aligned
        Message::Text(json!({"event":"media","sequenceNumber":5,"streamSid":"MZCAbad","media":{"track":"inbound","chunk":"1","timestamp":"5","payload":""}}).to_string().into()), // number where a string belongs
        Message::Text(format!("{{\"event\":\"media\",\"pad\":\"{}\"}}", "x".repeat(70 * 1024)).into()), // oversized
    ];
    let n = bad.len() as f64 + 1.0;
    for m in bad {
        ws.send(m).await.unwrap();
    }
    // The call is still alive and reacts to a good frame: the greeting's mark echo moves it on.
    read_until(&mut ws, true, sid, |f| {
        matches!(f, OutboundFrame::Mark { .. })
    })
    .await;
    wait_state(&app, sid, "enriched").await;
    let after = metric(&app, "switchboard_rejected_frames_total").await;
    assert!(
        after - before >= n,
        "every bad frame counted: {before} -> {after}"
    );
    // A socket that closes without `stop` still ends the call through finalizing.
    drop(ws);
    let stored = wait_state(&app, sid, "ended").await;
    assert_eq!(stored["outcome"], "caller hung up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_call_streams_tokens_and_survives_crashes() {
    let (app, _dir) = app(|c| c.twilio.mode = switchboard::config::TwilioMode::Relay).await;
    let mut ws = ws_connect(&app, "/twilio/relay", None).await.unwrap();
    let sid = "CArelay";
    relay_setup(&mut ws, sid, KNOWN).await;
    let greeting = relay_turn(&mut ws).await;
    assert_eq!(
        greeting,
        "Welcome back, Ana Souza! How can I help you today?"
    );
    let mut replies = Vec::new();
    for turn in 0..4 {
        relay_send(&mut ws, json!({"type":"prompt","voicePrompt":format!("question number {turn}"),"lang":"en-US","last":true})).await;
        if turn >= 1 {
            // Crash the call's actor mid-turn, through the chaos route.
            let resp = app
                .client
                .post(format!("{}/api/v1/calls/{sid}/crash", app.base_url))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 202);
        }
        replies.push(relay_turn(&mut ws).await);
    }
    for (turn, reply) in replies.iter().enumerate() {
        assert!(
            reply.contains(&format!("question number {turn}")),
            "turn {turn} answered: {reply}"
        );
    }
    let live = api(&app, &format!("/api/v1/calls/{sid}")).await;
    assert_eq!(live["restarts"], 3);
    assert_eq!(live["state"], "conversing");
    ws.close(None).await.unwrap();
    let stored = wait_state(&app, sid, "ended").await;
    assert_eq!(stored["restarts"], 3, "restarts recorded in the database");
    let lines: Vec<(String, String)> = stored["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_string(),
                m["text"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let callers: Vec<&str> = lines
        .iter()
        .filter(|(r, _)| r == "caller")
        .map(|(_, t)| t.as_str())
        .collect();
    assert_eq!(
        callers,
        vec![
            "question number 0",
            "question number 1",
            "question number 2",
            "question number 3"
        ]
    );
    assert_eq!(
        lines.iter().filter(|(r, _)| r == "agent").count(),
        5,
        "greeting + 4 replies, none lost or doubled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_interrupt_keeps_what_the_caller_heard() {
    let (app, _dir) = app(|c| c.twilio.mode = switchboard::config::TwilioMode::Relay).await;
    let mut ws = ws_connect(&app, "/twilio/relay", None).await.unwrap();
    let sid = "CAinterrupt";
    relay_setup(&mut ws, sid, KNOWN).await;
    relay_turn(&mut ws).await;
    relay_send(
        &mut ws,
        json!({"type":"prompt","voicePrompt":"tell me everything","last":true}),
    )
    .await;
    relay_turn(&mut ws).await;
    relay_send(&mut ws, json!({"type":"interrupt","utteranceUntilInterrupt":"You said","durationUntilInterruptMs":"450"})).await;
    relay_send(&mut ws, json!({"type":"dtmf","digit":"1"})).await;
    for _ in 0..100 {
        let v = api(&app, &format!("/api/v1/calls/{sid}")).await;
        let t = v["transcript"].as_array().unwrap().clone();
        if t.iter().any(|m| m["text"] == "caller pressed 1") {
            let agent = t.iter().rev().find(|m| m["role"] == "agent").unwrap();
            assert_eq!(
                (
                    agent["text"].as_str().unwrap(),
                    agent["interrupted"].as_bool().unwrap()
                ),
                ("You said", true)
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("dtmf never recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_api_refuses_chaos_when_disabled_and_knows_unknown_calls() {
    let (app, _dir) = app(|c| c.chaos.enabled = false).await;
    let resp = app
        .client
        .post(format!("{}/api/v1/calls/CAnope/crash", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = app
        .client
        .get(format!("{}/api/v1/calls/CAnope", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("CAnope"));
    let resp = app
        .client
        .get(format!("{}/api/v1/calls?state=dancing", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("`state`"));
}
