//! The agent's tools: the CRM lookups offered to the model (`get_customer_by_phone`,
//! `get_customer_facts`, `get_last_call`, `get_pending_tasks`), `create_task`, and `end_call`.
//!
//! The call machine decides when a tool runs (once per tool-call id, whatever happens to the
//! turn); this module says what each tool is (its JSON schema, offered in every request with
//! tools) and runs one through the ports under a deadline. A tool never fails silently: bad
//! arguments, an unknown name, a slow or dead database all come back as a JSON `error` result
//! the model can read and recover from. `end_call` is not run here: the machine ends the call.
//!
//! Privacy: lookups are scoped to the caller. A `customer_id` other than the caller's own is
//! refused, and `get_customer_by_phone` only answers for the caller's own number.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};

use crate::domain::*;
use crate::ports::{CrmStore, NewTask, TaskStore};

pub const GET_CUSTOMER_BY_PHONE: &str = "get_customer_by_phone";
pub const GET_CUSTOMER_FACTS: &str = "get_customer_facts";
pub const GET_LAST_CALL: &str = "get_last_call";
pub const GET_PENDING_TASKS: &str = "get_pending_tasks";
pub const CREATE_TASK: &str = "create_task";
pub const END_CALL: &str = "end_call";

pub const NAMES: [&str; 6] = [
    GET_CUSTOMER_BY_PHONE,
    GET_CUSTOMER_FACTS,
    GET_LAST_CALL,
    GET_PENDING_TASKS,
    CREATE_TASK,
    END_CALL,
];

/// Longest tool result kept (in the conversation and sent back to the model).
pub const MAX_RESULT_CHARS: usize = 2_000;

/// OpenAI `tools` array entries for every tool.
pub fn definitions() -> &'static [Value] {
    static DEFS: OnceLock<Vec<Value>> = OnceLock::new();
    DEFS.get_or_init(|| {
        let customer_id = json!({
            "type": "object",
            "properties": {
                "customer_id": {
                    "type": "integer",
                    "description": "The caller's customer id (from [CUSTOMER CONTEXT]); defaults to the caller."
                }
            }
        });
        let f = |name: &str, description: &str, parameters: Value| {
            json!({
                "type": "function",
                "function": { "name": name, "description": description, "parameters": parameters }
            })
        };
        vec![
            f(
                GET_CUSTOMER_BY_PHONE,
                "Look up the caller's customer record by their phone number (E.164).",
                json!({
                    "type": "object",
                    "properties": { "phone": { "type": "string", "description": "E.164, e.g. +14155550100; defaults to the caller's number" } }
                }),
            ),
            f(
                GET_CUSTOMER_FACTS,
                "Recent facts known about the customer (preferences, equipment, history).",
                customer_id.clone(),
            ),
            f(
                GET_LAST_CALL,
                "The summary and outcome of the customer's previous call.",
                customer_id.clone(),
            ),
            f(
                GET_PENDING_TASKS,
                "The customer's open tasks (callbacks, visits, orders), soonest first.",
                customer_id,
            ),
            f(
                CREATE_TASK,
                "Create a follow-up task for the customer (a callback, a visit, a reminder).",
                json!({
                    "type": "object",
                    "properties": {
                        "title": { "type": "string", "description": "What needs doing, in a short sentence." },
                        "priority": { "type": "integer", "minimum": 1, "maximum": 5, "description": "1 is most urgent; default 3." },
                        "due_in_days": { "type": "integer", "minimum": 0, "maximum": 365 }
                    },
                    "required": ["title"]
                }),
            ),
            f(
                END_CALL,
                "End the call politely once the caller has nothing more to ask.",
                json!({ "type": "object", "properties": { "reason": { "type": "string" } } }),
            ),
        ]
    })
}

/// Who is calling: what the tools may look at.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ToolScope {
    pub customer_id: Option<i64>,
    pub phone: Option<String>,
}

/// What the tools run against.
#[derive(Clone)]
pub struct ToolPorts {
    pub crm: Arc<dyn CrmStore>,
    pub tasks: Arc<dyn TaskStore>,
    /// A tool that takes longer answers with a timeout error.
    pub deadline: Duration,
}

/// A tool's answer: JSON text for the model, and whether it succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolOutcome {
    pub content: String,
    pub ok: bool,
}

impl ToolOutcome {
    fn ok(value: Value) -> Self {
        ToolOutcome {
            content: truncate(value.to_string()),
            ok: true,
        }
    }
    fn error(message: impl Into<String>) -> Self {
        ToolOutcome {
            content: json!({ "error": message.into() }).to_string(),
            ok: false,
        }
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_RESULT_CHARS {
        let mut end = MAX_RESULT_CHARS;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Runs one tool call. `now_ms` dates created tasks.
pub async fn run(
    ports: &ToolPorts,
    call: &ToolCallRequest,
    scope: &ToolScope,
    now_ms: Millis,
) -> ToolOutcome {
    match tokio::time::timeout(ports.deadline, run_inner(ports, call, scope, now_ms)).await {
        Ok(outcome) => outcome,
        Err(_) => ToolOutcome::error(format!(
            "{} timed out after {} ms",
            call.name,
            ports.deadline.as_millis()
        )),
    }
}

async fn run_inner(
    ports: &ToolPorts,
    call: &ToolCallRequest,
    scope: &ToolScope,
    now_ms: Millis,
) -> ToolOutcome {
    if !NAMES.contains(&call.name.as_str()) {
        return ToolOutcome::error(format!(
            "unknown tool {:?}; the tools are {}",
            call.name,
            NAMES.join(", ")
        ));
    }
    let args: Value = if call.arguments.trim().is_empty() {
        json!({})
    } else {
        match serde_json::from_str(&call.arguments) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => return ToolOutcome::error("arguments must be a JSON object"),
            Err(e) => return ToolOutcome::error(format!("arguments are not valid JSON: {e}")),
        }
    };
    let customer = match call.name.as_str() {
        GET_CUSTOMER_BY_PHONE | CREATE_TASK | END_CALL => None,
        _ => match customer_id(&args, scope) {
            Ok(id) => Some(id),
            Err(e) => return e,
        },
    };
    let crm = &ports.crm;
    let result = match (call.name.as_str(), customer) {
        (GET_CUSTOMER_BY_PHONE, _) => {
            let Some(own) = scope.phone.as_deref() else {
                return ToolOutcome::error("the caller's number is unknown (withheld or not a phone number)");
            };
            let asked = args.get("phone").and_then(Value::as_str).unwrap_or(own);
            if asked != own {
                return ToolOutcome::error("only the caller's own number can be looked up");
            }
            crm.customer_by_phone(own).await.map(|row| match row {
                Some(c) => json!({ "found": true, "customer_id": c.id, "name": c.name, "status": c.status }),
                None => json!({ "found": false }),
            })
        }
        (GET_CUSTOMER_FACTS, Some(id)) => crm
            .recent_facts(id, 10)
            .await
            .map(|facts| json!({ "customer_id": id, "facts": facts })),
        (GET_LAST_CALL, Some(id)) => crm.last_call(id).await.map(|last| match last {
            Some(l) => json!({ "customer_id": id, "found": true, "summary": l.summary, "outcome": l.outcome, "started_at": crate::machine::format_date(l.started_at_ms) }),
            None => json!({ "customer_id": id, "found": false }),
        }),
        (GET_PENDING_TASKS, Some(id)) => crm.pending_tasks(id, 10).await.map(|tasks| {
            let tasks: Vec<Value> = tasks
                .iter()
                .map(|t| json!({ "title": t.title, "priority": t.priority, "due": t.due_at_ms.map(crate::machine::format_date) }))
                .collect();
            json!({ "customer_id": id, "tasks": tasks })
        }),
        (CREATE_TASK, _) => {
            let Some(id) = scope.customer_id else {
                return ToolOutcome::error("the caller is not a known customer yet; ask for their name first");
            };
            let title = args
                .get("title")
                .and_then(Value::as_str)
                .map(str::trim)
                .unwrap_or("");
            if title.is_empty() || title.chars().count() > 200 {
                return ToolOutcome::error("`title` is required (1 to 200 characters)");
            }
            let priority = match args.get("priority") {
                None | Some(Value::Null) => 3,
                Some(v) => match v.as_i64() {
                    Some(p @ 1..=5) => p as i32,
                    _ => return ToolOutcome::error("`priority` must be an integer from 1 to 5"),
                },
            };
            let due_at_ms = match args.get("due_in_days") {
                None | Some(Value::Null) => None,
                Some(v) => match v.as_u64() {
                    Some(d @ 0..=365) => Some(now_ms + d * 86_400_000),
                    _ => return ToolOutcome::error("`due_in_days` must be an integer from 0 to 365"),
                },
            };
            let task = NewTask {
                customer_id: id,
                title: title.to_owned(),
                priority,
                due_at_ms,
            };
            ports
                .tasks
                .create_task(&task)
                .await
                .map(|task_id| json!({ "created": true, "task_id": task_id, "title": task.title, "priority": priority }))
        }
        (END_CALL, _) => Ok(json!({ "ending": true })),
        _ => return ToolOutcome::error("no customer record to read"),
    };
    match result {
        Ok(value) => ToolOutcome::ok(value),
        Err(e) => ToolOutcome::error(format!("{} failed: {e}", call.name)),
    }
}

#[allow(clippy::result_large_err)]
fn customer_id(args: &Value, scope: &ToolScope) -> Result<i64, ToolOutcome> {
    let Some(own) = scope.customer_id else {
        return Err(ToolOutcome::error(
            "the caller is not a known customer; there is no record to read",
        ));
    };
    match args.get("customer_id") {
        None | Some(Value::Null) => Ok(own),
        Some(v) if v.as_i64() == Some(own) => Ok(own),
        Some(v) if v.as_i64().is_some() => Err(ToolOutcome::error(
            "only the caller's own customer record can be read",
        )),
        Some(_) => Err(ToolOutcome::error("`customer_id` must be an integer")),
    }
}
