//! The operator API (`/api/v1/calls...`): live calls from the registry, one call's history and
//! transcript (from its live snapshot, or from the database once it has ended), graceful hangup,
//! and the chaos route that makes a call's actor fail for real (only with `chaos.enabled`).
//! Every route requires `Authorization: Bearer <operator.token>` when a token is configured.

use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Row;
use subtle::ConstantTimeEq;
use switchboard_actors::machine::{CallMachine, CallState, Event};
use switchboard_actors::{CallHandle, CallSid, ContextStatus, mask_phone};

use crate::http::AppState;
use crate::storage::now_ms;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// Constant-time bearer check against `operator.token` (open when no token is configured).
pub async fn require_operator(
    State(app): State<AppState>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    let token = &app.config().operator.token;
    if token.is_set() {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let ok: bool = given.as_bytes().ct_eq(token.expose().as_bytes()).into();
        if !ok {
            return error(
                StatusCode::UNAUTHORIZED,
                "missing or wrong operator token (Authorization: Bearer <operator.token>)",
            );
        }
    }
    next.run(request).await
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
    json!({
        "status": status.label(),
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

/// `GET /api/v1/calls[?state=...]`
pub async fn list_calls(State(app): State<AppState>, Query(q): Query<ListQuery>) -> Response {
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
