//! SQL adapters: the actors' ports (`CrmStore`, `ConversationStore`, `NameStore`) over the one
//! `Database` (SQLite or PostgreSQL through sqlx's `Any` driver, one code path). Until the
//! database is connected and migrated every call answers "unavailable", which the runtime treats
//! like any outage (context failed, rows kept and retried).

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use sqlx::Row;
use switchboard_actors::ports::{
    ConversationStore, CrmStore, CustomerRow, NameStore, NewTask, PersistRecord, PortError,
    TaskStore,
};
use switchboard_actors::{CallRecord, LastCall, TaskSummary};

use crate::storage::{Database, now_ms};

/// Rows per multi-row INSERT: 6 parameters a row stays far below both backends' limits.
const ROWS_PER_INSERT: usize = 500;

/// Where the adapters find the database once it is connected. Shared with the HTTP state.
#[derive(Clone, Default)]
pub struct DbCell(Arc<RwLock<Option<Database>>>);

impl DbCell {
    pub fn set(&self, db: Database) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(db);
    }

    pub fn get(&self) -> Option<Database> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn db(&self) -> Result<Database, PortError> {
        self.get()
            .ok_or_else(|| PortError::unavailable("database not connected yet"))
    }
}

fn db_error(what: &str, e: sqlx::Error) -> PortError {
    match e {
        sqlx::Error::PoolTimedOut => {
            PortError::timeout(format!("{what}: no database connection available in time"))
        }
        sqlx::Error::Io(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => PortError::unavailable(format!("{what}: {e}")),
        sqlx::Error::Database(db)
            if db.message().contains("locked") || db.message().contains("busy") =>
        {
            PortError::unavailable(format!("{what}: {db}"))
        }
        other => PortError::unavailable(format!("{what}: {other}")),
    }
}

fn to_ms(v: Option<i64>) -> Option<u64> {
    v.and_then(|x| u64::try_from(x).ok())
}

/// The SQL implementation of every storage port.
#[derive(Clone)]
pub struct SqlStore {
    db: DbCell,
}

impl SqlStore {
    pub fn new(db: DbCell) -> Self {
        SqlStore { db }
    }
}

#[async_trait]
impl CrmStore for SqlStore {
    async fn customer_by_phone(&self, phone: &str) -> Result<Option<CustomerRow>, PortError> {
        let db = self.db.db()?;
        let row =
            sqlx::query("SELECT id, name, phone_e164, status FROM customers WHERE phone_e164 = $1")
                .bind(phone)
                .fetch_optional(db.pool())
                .await
                .map_err(|e| db_error("customer lookup", e))?;
        row.map(|r| {
            Ok(CustomerRow {
                id: r
                    .try_get("id")
                    .map_err(|e| db_error("customer lookup", e))?,
                name: r
                    .try_get("name")
                    .map_err(|e| db_error("customer lookup", e))?,
                phone_e164: r
                    .try_get("phone_e164")
                    .map_err(|e| db_error("customer lookup", e))?,
                status: r
                    .try_get("status")
                    .map_err(|e| db_error("customer lookup", e))?,
            })
        })
        .transpose()
    }

    async fn recent_facts(&self, customer_id: i64, limit: u32) -> Result<Vec<String>, PortError> {
        let db = self.db.db()?;
        sqlx::query_scalar("SELECT fact FROM customer_facts WHERE customer_id = $1 ORDER BY created_at_ms DESC LIMIT $2")
            .bind(customer_id)
            .bind(i64::from(limit))
            .fetch_all(db.pool())
            .await
            .map_err(|e| db_error("facts", e))
    }

    async fn last_call(&self, customer_id: i64) -> Result<Option<LastCall>, PortError> {
        let db = self.db.db()?;
        let row = sqlx::query(
            "SELECT summary, outcome, started_at_ms FROM calls \
             WHERE customer_id = $1 AND ended_at_ms IS NOT NULL ORDER BY started_at_ms DESC LIMIT 1",
        )
        .bind(customer_id)
        .fetch_optional(db.pool())
        .await
        .map_err(|e| db_error("last call", e))?;
        row.map(|r| {
            let started: i64 = r
                .try_get("started_at_ms")
                .map_err(|e| db_error("last call", e))?;
            Ok(LastCall {
                summary: r.try_get("summary").map_err(|e| db_error("last call", e))?,
                outcome: r.try_get("outcome").map_err(|e| db_error("last call", e))?,
                started_at_ms: to_ms(Some(started)).unwrap_or(0),
            })
        })
        .transpose()
    }

    async fn pending_tasks(
        &self,
        customer_id: i64,
        limit: u32,
    ) -> Result<Vec<TaskSummary>, PortError> {
        let db = self.db.db()?;
        // Undated tasks sort after dated ones on both backends.
        let rows = sqlx::query(
            "SELECT title, due_at_ms, priority FROM tasks WHERE customer_id = $1 AND status = 'pending' \
             ORDER BY CASE WHEN due_at_ms IS NULL THEN 1 ELSE 0 END, due_at_ms, priority DESC LIMIT $2",
        )
        .bind(customer_id)
        .bind(i64::from(limit))
        .fetch_all(db.pool())
        .await
        .map_err(|e| db_error("pending tasks", e))?;
        rows.into_iter()
            .map(|r| {
                let priority: i32 = r
                    .try_get("priority")
                    .map_err(|e| db_error("pending tasks", e))?;
                Ok(TaskSummary {
                    title: r
                        .try_get("title")
                        .map_err(|e| db_error("pending tasks", e))?,
                    due_at_ms: to_ms(
                        r.try_get("due_at_ms")
                            .map_err(|e| db_error("pending tasks", e))?,
                    ),
                    priority,
                })
            })
            .collect()
    }

    async fn recent_summaries(
        &self,
        customer_id: i64,
        limit: u32,
    ) -> Result<Vec<String>, PortError> {
        let db = self.db.db()?;
        sqlx::query_scalar(
            "SELECT summary FROM calls WHERE customer_id = $1 AND summary IS NOT NULL \
             ORDER BY started_at_ms DESC LIMIT $2",
        )
        .bind(customer_id)
        .bind(i64::from(limit))
        .fetch_all(db.pool())
        .await
        .map_err(|e| db_error("recent summaries", e))
    }
}

#[async_trait]
impl ConversationStore for SqlStore {
    async fn write_batch(&self, batch: &[PersistRecord]) -> Result<(), PortError> {
        let db = self.db.db()?;
        let mut messages = Vec::new();
        let mut events = Vec::new();
        for row in batch {
            match row {
                PersistRecord::Message { call_sid, message } => messages.push((call_sid, message)),
                PersistRecord::Transition {
                    call_sid,
                    transition,
                } => events.push((call_sid, transition)),
            }
        }
        // Placeholders by hand: sqlx's `QueryBuilder<Any>` writes `?`, which PostgreSQL rejects;
        // SQLite gets `?` (binding thousands of `$N` names is quadratic there), PostgreSQL `$N`.
        let sqlite = db.backend() == crate::storage::Backend::Sqlite;
        let mut tx = db
            .pool()
            .begin()
            .await
            .map_err(|e| db_error("conversation write", e))?;
        for chunk in messages.chunks(ROWS_PER_INSERT) {
            let sql = multi_row_insert(
                "INSERT INTO messages (call_sid, seq, role, text, interrupted, created_at_ms) VALUES ",
                chunk.len(),
                6,
                sqlite,
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (sid, m) in chunk {
                q = q
                    .bind(sid.0.clone())
                    .bind(m.seq as i64)
                    .bind(m.role.as_str())
                    .bind(m.text.clone())
                    .bind(i32::from(m.interrupted))
                    .bind(m.at_ms as i64);
            }
            q.execute(&mut *tx)
                .await
                .map_err(|e| db_error("message write", e))?;
        }
        for chunk in events.chunks(ROWS_PER_INSERT) {
            let sql = multi_row_insert(
                "INSERT INTO call_events (call_sid, seq, from_state, to_state, event, at_ms) VALUES ",
                chunk.len(),
                6,
                sqlite,
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (sid, t) in chunk {
                q = q
                    .bind(sid.0.clone())
                    .bind(t.seq as i64)
                    .bind(t.from.as_str())
                    .bind(t.to.as_str())
                    .bind(t.event.clone())
                    .bind(t.at_ms as i64);
            }
            q.execute(&mut *tx)
                .await
                .map_err(|e| db_error("state event write", e))?;
        }
        tx.commit()
            .await
            .map_err(|e| db_error("conversation write", e))
    }

    async fn write_call_record(&self, r: &CallRecord) -> Result<(), PortError> {
        let db = self.db.db()?;
        let summary = r.summary.clone().unwrap_or_else(|| fallback_summary(r));
        let mut tx = db
            .pool()
            .begin()
            .await
            .map_err(|e| db_error("call record", e))?;
        sqlx::query(
            "INSERT INTO calls (call_sid, customer_id, phone, to_number, direction, transport, started_at_ms, \
             ended_at_ms, outcome, summary, final_state, restarts, name_source) \
             VALUES ($1, COALESCE((SELECT id FROM customers WHERE id = $2), (SELECT id FROM customers WHERE phone_e164 = $3)), $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (call_sid) DO UPDATE SET customer_id = excluded.customer_id, ended_at_ms = excluded.ended_at_ms, \
             outcome = excluded.outcome, summary = excluded.summary, final_state = excluded.final_state, \
             restarts = excluded.restarts, name_source = excluded.name_source",
        )
        .bind(r.call_sid.0.clone())
        .bind(r.customer_id)
        .bind(r.caller.e164.clone().unwrap_or_else(|| r.caller.raw.clone()))
        .bind(r.called.clone())
        .bind(r.direction.clone())
        .bind(r.transport.as_str())
        .bind(r.started_at_ms as i64)
        .bind(r.ended_at_ms as i64)
        .bind(r.outcome.clone())
        .bind(summary)
        .bind(r.final_state.as_str())
        .bind(i32::try_from(r.restarts).unwrap_or(i32::MAX))
        .bind(r.name_source.map(|s| s.as_str()))
        .execute(&mut *tx)
        .await
        .map_err(|e| db_error("call record", e))?;
        // A customer erased since the call started (a journal replayed later) is not referenced:
        // a foreign-key error would make the record, and the journal behind it, fail forever.
        // The customer may have been created during the call (a captured name): the call row
        // found it by phone above, and this touches whichever customer the row points at.
        sqlx::query("UPDATE customers SET updated_at_ms = $1 WHERE id = (SELECT customer_id FROM calls WHERE call_sid = $2)")
            .bind(r.ended_at_ms as i64)
            .bind(r.call_sid.0.clone())
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error("customer update", e))?;
        tx.commit().await.map_err(|e| db_error("call record", e))
    }
}

/// `head` followed by `rows` tuples of `columns` placeholders and an idempotent conflict clause.
fn multi_row_insert(head: &str, rows: usize, columns: usize, sqlite: bool) -> String {
    use std::fmt::Write;
    let mut sql = String::with_capacity(head.len() + rows * columns * 6 + 40);
    sql.push_str(head);
    let mut n = 0;
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..columns {
            if c > 0 {
                sql.push_str(", ");
            }
            n += 1;
            if sqlite {
                sql.push('?');
            } else {
                let _ = write!(sql, "${n}");
            }
        }
        sql.push(')');
    }
    sql.push_str(" ON CONFLICT (call_sid, seq) DO NOTHING");
    sql
}

/// A summary that needs no LLM (kept here for callers of the old path).
pub use switchboard_actors::fallback_summary;

#[async_trait]
impl NameStore for SqlStore {
    async fn store_name(&self, phone: &str, name: &str) -> Result<i64, PortError> {
        let db = self.db.db()?;
        let now = now_ms();
        // One statement, so two concurrent calls from the same new number create one customer.
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO customers (phone_e164, name, status, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, 'lead', $3, $3) \
             ON CONFLICT (phone_e164) DO UPDATE SET name = excluded.name, updated_at_ms = excluded.updated_at_ms \
             RETURNING id",
        )
        .bind(phone)
        .bind(name)
        .bind(now)
        .fetch_one(db.pool())
        .await
        .map_err(|e| db_error("store name", e))?;
        Ok(id)
    }
}

#[async_trait]
impl TaskStore for SqlStore {
    async fn create_task(&self, task: &NewTask) -> Result<i64, PortError> {
        let db = self.db.db()?;
        let now = now_ms();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO tasks (customer_id, title, status, priority, due_at_ms, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, 'pending', $3, $4, $5, $5) RETURNING id",
        )
        .bind(task.customer_id)
        .bind(&task.title)
        .bind(task.priority)
        .bind(task.due_at_ms.map(|d| d as i64))
        .bind(now)
        .fetch_one(db.pool())
        .await
        .map_err(|e| db_error("create task", e))?;
        Ok(id)
    }
}
