//! The operator API (`/api/v1/calls...`): live calls from the registry, one call's history and
//! transcript (from its live snapshot, or from the database once it has ended), the live stream
//! of transitions (`/api/v1/calls/events`, server-sent events), the dashboard's counters
//! (`/api/v1/stats`), graceful hangup, and the chaos route that makes a call's actor fail for real
//! (only with `chaos.enabled`).
//!
//! Every route requires the operator token when one is configured: `Authorization: Bearer`, a
//! `?token=` query parameter, or the cookie the dashboard sets (a browser's `EventSource` cannot
//! send headers). Calls never wait for an operator: SSE clients read a broadcast through their own
//! bounded queue, and one that falls behind is disconnected.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Row;
use subtle::ConstantTimeEq;
use switchboard_actors::machine::{CallMachine, CallState, Event};
use switchboard_actors::{
    CallHandle, CallSid, ContextStatus, LiveCalls, NoticeKind, TransitionNotice, mask_phone,
};
use tokio::sync::{broadcast, mpsc};

use crate::http::AppState;
use crate::storage::now_ms;

/// The cookie a visit to `/?token=...` sets, so the dashboard's `fetch` and `EventSource` calls
/// carry the token without putting it in every URL.
pub const TOKEN_COOKIE: &str = "switchboard_operator_token";

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

// === Authentication ===

/// Which surface a request is for: the token may be switched off for `/metrics` and `/`.
fn guarded(app: &AppState, path: &str) -> bool {
    let operator = &app.config().operator;
    if !operator.token.is_set() {
        return false;
    }
    match path {
        "/metrics" => operator.protect_metrics,
        "/" => operator.protect_dashboard,
        _ => true,
    }
}

/// The token as the request presents it: bearer header, `?token=`, or the dashboard cookie.
fn presented_tokens(headers: &HeaderMap, uri: &Uri) -> Vec<String> {
    let mut tokens = Vec::new();
    if let Some(bearer) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        tokens.push(bearer.to_owned());
    }
    if let Some(token) = query_token(uri) {
        tokens.push(token);
    }
    for cookies in headers.get_all(header::COOKIE) {
        let Ok(cookies) = cookies.to_str() else {
            continue;
        };
        for pair in cookies.split(';') {
            if let Some((name, value)) = pair.trim().split_once('=')
                && name == TOKEN_COOKIE
            {
                tokens.push(percent_decode(value));
            }
        }
    }
    tokens
}

fn query_token(uri: &Uri) -> Option<String> {
    let Query(params) = Query::<HashMap<String, String>>::try_from_uri(uri).ok()?;
    params.get("token").cloned()
}

/// True when any presented token equals `operator.token`; each comparison is constant-time.
fn token_matches(expected: &str, presented: &[String]) -> bool {
    presented.iter().fold(false, |ok, t| {
        ok | bool::from(t.as_bytes().ct_eq(expected.as_bytes()))
    })
}

/// Guards `/api/v1/*`, `/` and `/metrics` with `operator.token` (open when no token is set;
/// `/` and `/metrics` follow `operator.protect_dashboard` / `operator.protect_metrics`).
pub async fn require_operator(
    State(app): State<AppState>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    if !guarded(&app, &path) {
        return next.run(request).await;
    }
    let presented = presented_tokens(&headers, request.uri());
    if !token_matches(app.config().operator.token.expose(), &presented) {
        let message = "missing or wrong operator token: send `Authorization: Bearer <operator.token>`, \
                       or open the dashboard once as /?token=<operator.token>";
        return error(StatusCode::UNAUTHORIZED, message);
    }
    // The dashboard opened as `/?token=...`: keep the token in a cookie and drop it from the URL,
    // so it does not stay in the address bar or the browser history.
    if path == "/" && query_token(request.uri()).is_some() {
        let cookie = format!(
            "{TOKEN_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
            percent_encode(app.config().operator.token.expose())
        );
        return (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, "/".to_owned()),
                (header::SET_COOKIE, cookie),
            ],
        )
            .into_response();
    }
    next.run(request).await
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Deserialize)]
pub struct ListQuery {
    state: Option<String>,
}

fn parse_state(s: &str) -> Option<CallState> {
    CallState::ALL
        .into_iter()
        .find(|c| c.as_str() == s || c.as_str().replace('_', "-") == s)
}

fn context_json(status: &ContextStatus, m: &CallMachine) -> Value {
    // How long after the call started the context stopped being pending (found, not found,
    // failed or timed out); null while it is still pending.
    let ready_after_ms = m
        .context_settled_at_ms()
        .map(|at| at.saturating_sub(m.started_at_ms()));
    json!({
        "status": status.label(),
        "ready_after_ms": ready_after_ms,
        "source": m.name_source().map(|s| s.as_str()),
        "partial": m.customer().is_some_and(|c| c.partial),
        "missing": m.customer().map(|c| c.missing.clone()).unwrap_or_default(),
        "customer_id": m.customer().map(|c| c.customer_id),
    })
}

fn summary(h: &CallHandle, now: i64) -> Value {
    let m = h.snapshot();
    let caller = m
        .call_start()
        .map(|s| s.caller.masked())
        .unwrap_or_default();
    json!({
        "call_sid": h.sid.0,
        "caller": caller,
        "state": m.state().as_str(),
        "since_ms": m.entered_at_ms(),
        "time_in_state_ms": (now as u64).saturating_sub(m.entered_at_ms()),
        "duration_ms": (now as u64).saturating_sub(m.started_at_ms()),
        "customer_name": m.customer_name(),
        "context": m.context_status().label(),
        "restarts": m.restarts(),
        "transport": h.transport.as_str(),
    })
}

/// `GET /api/v1/calls[?state=...]`. Unknown parameters are ignored; a malformed one is a 400
/// that names it.
pub async fn list_calls(
    State(app): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(rejection) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("malformed query string: {}", rejection.body_text()),
            );
        }
    };
    let filter = match q.state.as_deref() {
        None => None,
        Some(s) => match parse_state(s) {
            Some(state) => Some(state),
            None => {
                let allowed: Vec<_> = CallState::ALL.iter().map(|s| s.as_str()).collect();
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "query parameter `state` must be one of {}, got {s:?}",
                        allowed.join(", ")
                    ),
                );
            }
        },
    };
    let now = now_ms();
    let mut calls: Vec<Value> = app
        .runtime()
        .calls
        .handles()
        .iter()
        .filter(|h| filter.is_none_or(|f| h.snapshot().state() == f))
        .map(|h| summary(h, now))
        .collect();
    calls.sort_by(|a, b| a["call_sid"].as_str().cmp(&b["call_sid"].as_str()));
    Json(json!({ "count": calls.len(), "calls": calls })).into_response()
}

/// `GET /api/v1/calls/{sid}`: live from the snapshot, else from the database.
pub async fn call_detail(State(app): State<AppState>, Path(sid): Path<String>) -> Response {
    let sid = CallSid(sid);
    if let Some(h) = app.runtime().calls.get(&sid) {
        let m = h.snapshot();
        let mut v = summary(&h, now_ms());
        v["live"] = json!(true);
        v["name_source"] = json!(m.name_source().map(|s| s.as_str()));
        v["context"] = context_json(m.context_status(), &m);
        v["history"] = json!(m.transitions().iter().map(|t| json!({"from": t.from.as_str(), "to": t.to.as_str(), "event": t.event, "at_ms": t.at_ms})).collect::<Vec<_>>());
        v["transcript"] = json!(m.conversation().iter().map(|c| json!({"seq": c.seq, "role": c.role.as_str(), "text": c.text, "interrupted": c.interrupted, "at_ms": c.at_ms})).collect::<Vec<_>>());
        v["turns"] = json!(h.turns.recent());
        v["stream_events"] = json!(
            h.stream_events()
                .iter()
                .map(|(e, err)| json!({"event": e, "error": err}))
                .collect::<Vec<_>>()
        );
        return Json(v).into_response();
    }
    match stored_call(&app, &sid).await {
        Ok(Some(v)) => Json(v).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no call with sid {}", sid.0)),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "call {} is not live and the database is unavailable: {e}",
                sid.0
            ),
        ),
    }
}

async fn stored_call(app: &AppState, sid: &CallSid) -> Result<Option<Value>, String> {
    let db = app.database().ok_or("database not connected yet")?;
    let pool = db.pool();
    let row = sqlx::query(
        "SELECT call_sid, customer_id, phone, direction, transport, started_at_ms, ended_at_ms, outcome, summary, \
         final_state, restarts, name_source FROM calls WHERE call_sid = $1",
    )
    .bind(sid.0.clone())
    .fetch_optional(pool)
    .await
    .map_err(|e| e.to_string())?;
    let history = sqlx::query("SELECT from_state, to_state, event, at_ms FROM call_events WHERE call_sid = $1 ORDER BY seq")
        .bind(sid.0.clone())
        .fetch_all(pool)
        .await
        .map_err(|e| e.to_string())?;
    let transcript = sqlx::query("SELECT seq, role, text, interrupted, created_at_ms FROM messages WHERE call_sid = $1 ORDER BY seq")
        .bind(sid.0.clone())
        .fetch_all(pool)
        .await
        .map_err(|e| e.to_string())?;
    if row.is_none() && history.is_empty() && transcript.is_empty() {
        return Ok(None);
    }
    let get = |r: &sqlx::any::AnyRow, c: &str| -> Value {
        if let Ok(v) = r.try_get::<Option<i64>, _>(c) {
            return json!(v);
        }
        if let Ok(v) = r.try_get::<Option<String>, _>(c) {
            return json!(v);
        }
        if let Ok(v) = r.try_get::<Option<bool>, _>(c) {
            return json!(v);
        }
        Value::Null
    };
    let mut v = json!({ "call_sid": sid.0, "live": false });
    if let Some(r) = &row {
        for c in [
            "customer_id",
            "direction",
            "transport",
            "started_at_ms",
            "ended_at_ms",
            "outcome",
            "summary",
            "final_state",
            "restarts",
            "name_source",
        ] {
            v[c] = get(r, c);
        }
        v["caller"] = json!(
            r.try_get::<String, _>("phone")
                .map(|p| mask_phone(&p))
                .unwrap_or_default()
        );
        v["state"] = v["final_state"].clone();
    }
    v["history"] = json!(history.iter().map(|r| json!({"from": get(r, "from_state"), "to": get(r, "to_state"), "event": get(r, "event"), "at_ms": get(r, "at_ms")})).collect::<Vec<_>>());
    v["transcript"] = json!(transcript
        .iter()
        .map(|r| {
            let interrupted = r.try_get::<bool, _>("interrupted").or_else(|_| r.try_get::<i64, _>("interrupted").map(|i| i != 0)).unwrap_or(false);
            json!({"seq": get(r, "seq"), "role": get(r, "role"), "text": get(r, "text"), "interrupted": interrupted, "at_ms": get(r, "created_at_ms")})
        })
        .collect::<Vec<_>>());
    Ok(Some(v))
}

/// `POST /api/v1/calls/{sid}/hangup`: end gracefully (the call still finalizes and persists).
pub async fn hangup(State(app): State<AppState>, Path(sid): Path<String>) -> Response {
    let sid = CallSid(sid);
    match app.runtime().calls.get(&sid) {
        Some(h) => match h.send(Event::OperatorHangup) {
            Ok(()) => (
                StatusCode::ACCEPTED,
                Json(json!({"call_sid": sid.0, "status": "finalizing"})),
            )
                .into_response(),
            Err(e) => error(StatusCode::CONFLICT, e.to_string()),
        },
        None => error(
            StatusCode::NOT_FOUND,
            format!("no live call with sid {}", sid.0),
        ),
    }
}

/// `POST /api/v1/calls/{sid}/crash`: chaos only — the call's actor panics; the supervisor restarts it.
pub async fn crash(State(app): State<AppState>, Path(sid): Path<String>) -> Response {
    if !app.config().chaos.enabled {
        return error(
            StatusCode::FORBIDDEN,
            "chaos is disabled; set chaos.enabled = true to crash calls on purpose",
        );
    }
    let sid = CallSid(sid);
    if app.runtime().crash_call(&sid).await {
        (
            StatusCode::ACCEPTED,
            Json(json!({"call_sid": sid.0, "status": "crashing"})),
        )
            .into_response()
    } else {
        error(
            StatusCode::NOT_FOUND,
            format!("no live call with sid {}", sid.0),
        )
    }
}

#[derive(Deserialize)]
pub struct InvalidateContextQuery {
    phone: String,
}

/// `POST /api/v1/customers/cache/invalidate?phone=%2B14155550101`: drop a caller's cached
/// customer context on this node and in the shared (Redis) tier, so the next call reads the
/// database. For whoever changes CRM data behind Switchboard's back (tasks, facts, the customer).
/// The number may be written any way a caller id can be (`+1 415 555 0101`, national with the
/// configured region); a `+` in a query string must be sent as `%2B`.
pub async fn invalidate_context(
    State(app): State<AppState>,
    Query(q): Query<InvalidateContextQuery>,
) -> Response {
    let caller = switchboard_actors::phone::caller_from_raw(q.phone.trim(), app.phone_region());
    let Some(phone) = caller.e164 else {
        return error(StatusCode::BAD_REQUEST, "phone is not a phone number");
    };
    app.runtime().invalidate_context(&phone).await;
    (
        StatusCode::OK,
        Json(json!({"phone": mask_phone(&phone), "invalidated": true})),
    )
        .into_response()
}

// === Live events (server-sent events) ===

/// One SSE frame: its `event:` name and JSON data.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveEvent {
    pub name: &'static str,
    pub data: Value,
}

/// Why an SSE client was disconnected (the `reason` of `switchboard_sse_clients_dropped_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Its own queue was full: the client is not reading fast enough.
    Slow,
    /// The transition broadcast overwrote notices it had not received yet.
    Lagged,
}

impl DropReason {
    fn as_str(self) -> &'static str {
        match self {
            DropReason::Slow => "slow",
            DropReason::Lagged => "lagged",
        }
    }
}

/// The SSE frames for one transition: `call_started` (before the transition out of
/// `connected`), `transition`, and `call_ended` (after the transition into `ended`). Live call
/// details (masked caller, customer name, transport, context) come from the call's snapshot when
/// the call is still registered.
pub fn live_events(notice: &TransitionNotice, handle: Option<&CallHandle>) -> Vec<LiveEvent> {
    if notice.kind == NoticeKind::Restart {
        return vec![LiveEvent {
            name: "call_restarted",
            data: json!({
                "call_sid": notice.call_sid.0,
                "state": notice.to.as_str(),
                "event": notice.event,
                "at_ms": notice.at_ms,
                "restarts": notice.restarts,
            }),
        }];
    }
    let mut transition = json!({
        "call_sid": notice.call_sid.0,
        "from": notice.from.as_str(),
        "to": notice.to.as_str(),
        "event": notice.event,
        "at_ms": notice.at_ms,
        "restarts": notice.restarts,
    });
    let mut out = Vec::with_capacity(2);
    if let Some(h) = handle {
        let m = h.snapshot();
        transition["caller"] = json!(m.call_start().map(|s| s.caller.masked()));
        transition["customer_name"] = json!(m.customer_name());
        transition["transport"] = json!(h.transport.as_str());
        transition["context"] = json!(m.context_status().label());
        if notice.from == CallState::Connected {
            // The list entry as of this transition, so a client can add the call before later
            // transitions move it on.
            let mut started = summary(h, notice.at_ms as i64);
            started["state"] = json!(notice.to.as_str());
            started["since_ms"] = json!(notice.at_ms);
            started["time_in_state_ms"] = json!(0);
            out.push(LiveEvent {
                name: "call_started",
                data: started,
            });
        }
    }
    out.push(LiveEvent {
        name: "transition",
        data: transition,
    });
    if notice.to == CallState::Ended {
        out.push(LiveEvent {
            name: "call_ended",
            data: json!({
                "call_sid": notice.call_sid.0,
                "at_ms": notice.at_ms,
                "event": notice.event,
                "restarts": notice.restarts,
            }),
        });
    }
    out
}

impl LiveEvent {
    /// The event as SSE text: `event: NAME\ndata: JSON\n\n`.
    pub fn encode_into(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = write!(out, "event: {}\ndata: {}\n\n", self.name, self.data);
    }
}

/// The event stream every SSE client reads: each transition (or restart) becomes its SSE text
/// once, here, gathered for up to `FEED_BATCH`, and the batch is shared by all clients (a
/// reference-counted `Bytes`): a thousand clients cost one serialization per transition and a
/// thousand queue pushes and socket writes per batch, not per transition. Started with the
/// first client.
pub fn event_feed(app: &AppState) -> broadcast::Receiver<Bytes> {
    app.event_feed(|| {
        let (tx, _) = broadcast::channel(FEED_CAPACITY);
        let calls = app.runtime().calls.clone();
        tokio::spawn(feed(calls.clone(), calls.subscribe(), tx.clone()));
        tx
    })
}

/// Encoded transitions kept for clients that are momentarily behind.
const FEED_CAPACITY: usize = 4096;

/// How long the feed gathers transitions before it hands them to the clients together: at most
/// this much later on a dashboard, and at most 20 wake-ups and socket writes per client per
/// second however many calls are changing state.
const FEED_BATCH: Duration = Duration::from_millis(50);
/// A batch is sent early once it holds this many bytes.
const FEED_BATCH_MAX: usize = 64 * 1024;

async fn feed(
    calls: LiveCalls,
    mut notices: broadcast::Receiver<TransitionNotice>,
    tx: broadcast::Sender<Bytes>,
) {
    let encode = |received: Result<TransitionNotice, broadcast::error::RecvError>,
                  text: &mut String|
     -> bool {
        match received {
            Ok(notice) => {
                let handle = calls.get(&notice.call_sid);
                for event in live_events(&notice, handle.as_deref()) {
                    event.encode_into(text);
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                // Every client missed these: tell them to reload the list.
                metrics::counter!("switchboard_sse_feed_missed_total").increment(missed);
                tracing::warn!(
                    missed,
                    "operator event feed fell behind the transition broadcast"
                );
                LiveEvent {
                    name: "resync",
                    data: json!({ "missed": missed, "at_ms": now_ms() }),
                }
                .encode_into(text);
            }
            Err(broadcast::error::RecvError::Closed) => return false,
        }
        true
    };
    loop {
        let mut text = String::new();
        if !encode(notices.recv().await, &mut text) {
            return;
        }
        let deadline = tokio::time::Instant::now() + FEED_BATCH;
        while text.len() < FEED_BATCH_MAX {
            match tokio::time::timeout_at(deadline, notices.recv()).await {
                Ok(received) => {
                    if !encode(received, &mut text) {
                        let _ = tx.send(Bytes::from(text));
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        // No receivers is fine: the feed waits for the next client.
        let _ = tx.send(Bytes::from(text));
    }
}

/// Moves the shared feed into one client's bounded queue, with a heartbeat every `heartbeat`.
/// Never waits on the client: a full queue ends the client (`DropReason::Slow`), and so does a
/// feed that overwrote events it had not received yet (`DropReason::Lagged`). Returns why it
/// stopped (`None`: the client went away).
pub async fn forward_events(
    calls: LiveCalls,
    mut feed: broadcast::Receiver<Bytes>,
    queue: mpsc::Sender<Bytes>,
    heartbeat: Duration,
) -> Option<DropReason> {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let frames = tokio::select! {
            received = feed.recv() => match received {
                Ok(frames) => frames,
                Err(broadcast::error::RecvError::Lagged(_)) => return Some(DropReason::Lagged),
                Err(broadcast::error::RecvError::Closed) => return None,
            },
            _ = ticks.tick() => {
                let mut text = String::new();
                LiveEvent {
                    name: "heartbeat",
                    data: json!({ "at_ms": now_ms(), "active_calls": calls.len() }),
                }
                .encode_into(&mut text);
                Bytes::from(text)
            }
            () = queue.closed() => return None,
        };
        match queue.try_send(frames) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => return Some(DropReason::Slow),
            Err(mpsc::error::TrySendError::Closed(_)) => return None,
        }
    }
}

/// Counts a connected SSE client while alive (`switchboard_sse_clients`).
struct ConnectedClient;

impl ConnectedClient {
    fn new() -> Self {
        metrics::gauge!("switchboard_sse_clients").increment(1.0);
        ConnectedClient
    }
}

impl Drop for ConnectedClient {
    fn drop(&mut self) {
        metrics::gauge!("switchboard_sse_clients").decrement(1.0);
    }
}

/// Most bytes of queued events written to a client in one go.
const SSE_WRITE_MAX: usize = 64 * 1024;

/// `GET /api/v1/calls/events`: `call_started`, `transition`, `call_ended`, `call_restarted`,
/// `heartbeat` (and `resync` if the server's feed fell behind: reload the list), each with JSON
/// data. A client that falls `operator.sse_client_queue` events behind is disconnected (a
/// browser's `EventSource` reconnects by itself; reload the list then). Events that queued up
/// while the last write was in flight leave in one write.
pub async fn call_events(State(app): State<AppState>) -> Response {
    let operator = &app.config().operator;
    let calls = app.runtime().calls.clone();
    // Subscribe before answering: every transition after the response headers is delivered.
    let feed = event_feed(&app);
    let (tx, rx) = mpsc::channel(operator.sse_client_queue);
    let heartbeat = operator.sse_heartbeat();
    tokio::spawn(async move {
        let _connected = ConnectedClient::new();
        if let Some(reason) = forward_events(calls, feed, tx, heartbeat).await {
            metrics::counter!("switchboard_sse_clients_dropped_total", "reason" => reason.as_str())
                .increment(1);
            tracing::info!(
                reason = reason.as_str(),
                "operator event stream disconnected: the client fell behind"
            );
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let first = rx.recv().await?;
        let mut chunk = first.to_vec();
        while chunk.len() < SSE_WRITE_MAX {
            match rx.try_recv() {
                Ok(more) => chunk.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(chunk)), rx))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

// === Dashboard counters ===

/// Process-wide call counters kept by [`observe_calls`] from the transition broadcast.
#[derive(Debug, Default)]
pub struct CallTotals {
    pub started: AtomicU64,
    pub ended: AtomicU64,
    /// Restarts of calls that have ended (live calls' restarts are read from their snapshots).
    pub restarts_of_ended: AtomicU64,
    /// Notices the observer missed because it fell behind the broadcast.
    pub missed: AtomicU64,
}

/// Follows every transition: counts `switchboard_call_transitions_total{from,to}`, call starts,
/// ends and restarts. Runs until the broadcast closes; never slows a call (it is one more
/// broadcast receiver).
pub async fn observe_calls(calls: LiveCalls, totals: Arc<CallTotals>) {
    let mut notices = calls.subscribe();
    loop {
        match notices.recv().await {
            Ok(notice) if notice.kind == NoticeKind::Restart => {}
            Ok(notice) => {
                metrics::counter!(
                    "switchboard_call_transitions_total",
                    "from" => notice.from.as_str(),
                    "to" => notice.to.as_str()
                )
                .increment(1);
                if notice.from == CallState::Connected {
                    totals.started.fetch_add(1, Ordering::Relaxed);
                }
                if notice.to == CallState::Ended {
                    totals.ended.fetch_add(1, Ordering::Relaxed);
                    totals
                        .restarts_of_ended
                        .fetch_add(u64::from(notice.restarts), Ordering::Relaxed);
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                totals.missed.fetch_add(n, Ordering::Relaxed);
                tracing::warn!(
                    missed = n,
                    "call observer fell behind the transition broadcast"
                );
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// `GET /api/v1/stats`: the dashboard's counters.
pub async fn stats(State(app): State<AppState>) -> Response {
    use std::sync::atomic::Ordering::Relaxed;
    let runtime = app.runtime();
    let mut by_state: serde_json::Map<String, Value> = CallState::ALL
        .iter()
        .map(|s| (s.as_str().to_owned(), json!(0)))
        .collect();
    let mut live_restarts = 0u64;
    let handles = runtime.calls.handles();
    for h in &handles {
        let m = h.snapshot();
        live_restarts += u64::from(m.restarts());
        if let Some(n) = by_state.get_mut(m.state().as_str()) {
            *n = json!(n.as_u64().unwrap_or(0) + 1);
        }
    }
    let totals = app.call_totals();
    let s = &runtime.stats;
    let lookups = s.crm.lookups.load(Relaxed);
    let hits = s.cache.hits.load(Relaxed) + s.cache.shared_hits.load(Relaxed);
    let hit_rate = (lookups > 0).then(|| hits as f64 / lookups as f64);
    use crate::metrics::Tracked;
    Json(json!({
        "at_ms": now_ms(),
        "active_calls": handles.len(),
        "calls_by_state": by_state,
        "calls_started": totals.started.load(Relaxed),
        "calls_ended": totals.ended.load(Relaxed),
        "restarts": {
            "total": totals.restarts_of_ended.load(Relaxed) + live_restarts,
            "live_calls": live_restarts,
        },
        "prefetch": {
            "lookups": lookups,
            "cache_hits": hits,
            "hit_rate": hit_rate,
        },
        "time_to_first_audio_ms": Tracked::TimeToFirstAudio.percentiles(),
        "turn_first_audio_ms": Tracked::TurnFirstAudio.percentiles(),
    }))
    .into_response()
}

#[cfg(test)]
mod tests;
