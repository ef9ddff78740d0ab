//! Customer history for operators: a customer's past conversations, newest first, a page at a
//! time with short excerpts (`GET /api/v1/customers/{id}/conversations`), and erasing everything
//! stored about a customer (`DELETE /api/v1/customers/{id}`): their calls, the messages and state
//! events of those calls, facts, tasks and the customer row itself. Calls are matched by
//! customer id and by the customer's phone number, so calls made before the caller became a
//! customer are erased too.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Row;

use crate::http::AppState;

/// Conversations per page unless `limit` says otherwise, and the most a page may hold.
pub const DEFAULT_PAGE: i64 = 20;
pub const MAX_PAGE: i64 = 100;
/// Messages shown per conversation, and characters per excerpt line.
const EXCERPT_MESSAGES: i64 = 3;
const EXCERPT_CHARS: usize = 200;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the database is unavailable: {e}"),
    )
}

fn customer_id(raw: &str) -> Result<i64, String> {
    raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        format!("path parameter `id` must be a positive integer customer id, got {raw:?}")
    })
}

#[derive(Deserialize)]
pub struct PageQuery {
    limit: Option<String>,
    before: Option<String>,
}

/// A page cursor: the `started_at_ms` and `call_sid` of the last conversation shown.
fn parse_cursor(raw: &str) -> Option<(i64, String)> {
    let (ms, sid) = raw.split_once(':')?;
    let ms = ms.parse::<i64>().ok()?;
    (!sid.is_empty()).then(|| (ms, sid.to_owned()))
}

fn excerpt(text: &str) -> (String, bool) {
    if text.chars().count() <= EXCERPT_CHARS {
        (text.to_owned(), false)
    } else {
        (
            format!("{}…", text.chars().take(EXCERPT_CHARS).collect::<String>()),
            true,
        )
    }
}

/// `GET /api/v1/customers/{id}/conversations?limit=N&before=CURSOR`
pub async fn conversations(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let id = match customer_id(&id) {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let limit = match q.limit.as_deref() {
        None => DEFAULT_PAGE,
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "query parameter `limit` must be an integer between 1 and {MAX_PAGE}, got {raw:?}"
                    ),
                );
            }
        },
    };
    let cursor = match q.before.as_deref() {
        None | Some("") => None,
        Some(raw) => match parse_cursor(raw) {
            Some(c) => Some(c),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "query parameter `before` must be a cursor from `next_before` (STARTED_AT_MS:CALL_SID), got {raw:?}"
                    ),
                );
            }
        },
    };
    let Some(db) = app.database() else {
        return unavailable("not connected yet");
    };
    let pool = db.pool();
    let phone: Option<String> =
        match sqlx::query_scalar("SELECT phone_e164 FROM customers WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await
        {
            Ok(p) => p,
            Err(e) => return unavailable(e),
        };
    let Some(phone) = phone else {
        return error(StatusCode::NOT_FOUND, format!("no customer with id {id}"));
    };
    // Keyset pagination: newest first, ties broken by call sid, so pages never overlap or skip
    // while new calls arrive.
    let (before_ms, before_sid) = cursor.unwrap_or((i64::MAX, String::new()));
    let rows = sqlx::query(
        "SELECT call_sid, direction, transport, started_at_ms, ended_at_ms, outcome, summary, final_state, restarts, name_source \
         FROM calls WHERE (customer_id = $1 OR phone = $2) AND ended_at_ms IS NOT NULL \
         AND (started_at_ms < $3 OR (started_at_ms = $3 AND call_sid < $4)) \
         ORDER BY started_at_ms DESC, call_sid DESC LIMIT $5",
    )
    .bind(id)
    .bind(phone)
    .bind(before_ms)
    .bind(before_sid)
    .bind(limit + 1)
    .fetch_all(pool)
    .await;
    let mut rows = match rows {
        Ok(rows) => rows,
        Err(e) => return unavailable(e),
    };
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let sid: String = r.try_get("call_sid").unwrap_or_default();
        let started: i64 = r.try_get("started_at_ms").unwrap_or(0);
        let ended: Option<i64> = r.try_get("ended_at_ms").unwrap_or(None);
        let lines = sqlx::query(
            "SELECT seq, role, text FROM messages WHERE call_sid = $1 ORDER BY seq LIMIT $2",
        )
        .bind(sid.clone())
        .bind(EXCERPT_MESSAGES)
        .fetch_all(pool)
        .await;
        let count: Result<i64, _> =
            sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE call_sid = $1")
                .bind(sid.clone())
                .fetch_one(pool)
                .await;
        let (lines, count) = match (lines, count) {
            (Ok(l), Ok(c)) => (l, c),
            (Err(e), _) | (_, Err(e)) => return unavailable(e),
        };
        let excerpt: Vec<Value> = lines
            .iter()
            .map(|m| {
                let (text, cut) = excerpt(&m.try_get::<String, _>("text").unwrap_or_default());
                json!({"seq": m.try_get::<i64, _>("seq").unwrap_or(0), "role": m.try_get::<String, _>("role").unwrap_or_default(), "text": text, "excerpt_cut": cut})
            })
            .collect();
        out.push(json!({
            "call_sid": sid,
            "started_at_ms": started,
            "ended_at_ms": ended,
            "duration_ms": ended.map(|e| e.saturating_sub(started)),
            "direction": r.try_get::<String, _>("direction").unwrap_or_default(),
            "transport": r.try_get::<String, _>("transport").unwrap_or_default(),
            "outcome": r.try_get::<Option<String>, _>("outcome").unwrap_or(None),
            "summary": r.try_get::<Option<String>, _>("summary").unwrap_or(None),
            "final_state": r.try_get::<Option<String>, _>("final_state").unwrap_or(None),
            "restarts": r.try_get::<i64, _>("restarts").or_else(|_| r.try_get::<i32, _>("restarts").map(i64::from)).unwrap_or(0),
            "name_source": r.try_get::<Option<String>, _>("name_source").unwrap_or(None),
            "message_count": count,
            "excerpt": excerpt,
        }));
    }
    let next = if more {
        out.last().map(|c| {
            format!(
                "{}:{}",
                c["started_at_ms"],
                c["call_sid"].as_str().unwrap_or_default()
            )
        })
    } else {
        None
    };
    Json(
        json!({ "customer_id": id, "count": out.len(), "conversations": out, "next_before": next }),
    )
    .into_response()
}

/// `DELETE /api/v1/customers/{id}`: 204 once everything is gone, 404 if there is no such customer.
pub async fn delete_customer(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    let id = match customer_id(&id) {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let Some(db) = app.database() else {
        return unavailable("not connected yet");
    };
    match erase(db.pool(), id).await {
        Ok(Some(phone)) => {
            // A cached context would still greet them by name: drop it.
            app.runtime().invalidate_context(&phone).await;
            tracing::info!(customer_id = id, "customer data deleted on request");
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no customer with id {id}")),
        Err(e) => unavailable(e),
    }
}

/// Deletes the customer and everything stored about them in one transaction; returns their phone
/// number, or `None` if there is no such customer.
pub async fn erase(pool: &sqlx::AnyPool, id: i64) -> Result<Option<String>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let phone: Option<String> =
        sqlx::query_scalar("SELECT phone_e164 FROM customers WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(phone) = phone else {
        return Ok(None);
    };
    // Messages and state events have no foreign key (they are written while the call is live):
    // delete them through the customer's calls first.
    for table in ["messages", "call_events"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE call_sid IN (SELECT call_sid FROM calls WHERE customer_id = $1 OR phone = $2)"
        )))
        .bind(id)
        .bind(phone.clone())
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("DELETE FROM calls WHERE customer_id = $1 OR phone = $2")
        .bind(id)
        .bind(phone.clone())
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM customer_facts WHERE customer_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM tasks WHERE customer_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM customers WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(phone))
}
