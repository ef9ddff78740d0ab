//! The LLM prompt: the system prompt with a `[CUSTOMER CONTEXT]` block rebuilt from the call's
//! current context on every request, then the conversation turns. Pure.

use std::fmt::Write as _;

use super::CallMachine;
use crate::domain::*;

pub(super) fn build_request(m: &CallMachine) -> LlmRequest {
    let mut system = m.config.system_prompt.clone();
    system.push_str("\n\n");
    system.push_str(&context_block(
        m.customer(),
        m.customer_name(),
        m.name_source(),
        m.context_status(),
        m.call_start().map(|s| &s.caller),
    ));
    let mut messages = Vec::with_capacity(m.conversation().len() + 1);
    messages.push(ChatMessage {
        role: "system".into(),
        content: system,
    });
    for msg in m.conversation() {
        let role = match msg.role {
            Role::Caller => "user",
            Role::Agent => "assistant",
            Role::System | Role::Tool => "system",
        };
        let content = if msg.interrupted {
            format!("{} [interrupted by the caller]", msg.text)
        } else {
            msg.text.clone()
        };
        messages.push(ChatMessage {
            role: role.into(),
            content,
        });
    }
    LlmRequest { messages }
}

/// The `[CUSTOMER CONTEXT]` block: who the caller is, as far as we know right now.
pub fn context_block(
    customer: Option<&CustomerContext>,
    name: Option<&str>,
    name_source: Option<NameSource>,
    status: &ContextStatus,
    caller: Option<&Caller>,
) -> String {
    let mut b = String::from("[CUSTOMER CONTEXT]\n");
    match customer {
        Some(c) => {
            let _ = writeln!(b, "customer_id: {}", c.customer_id);
            let _ = writeln!(
                b,
                "name: {}",
                name.or(c.name.as_deref()).unwrap_or("unknown")
            );
            let _ = writeln!(b, "phone: {}", c.phone);
            let _ = writeln!(b, "status: {}", c.status);
            if !c.facts.is_empty() {
                b.push_str("facts:\n");
                for f in &c.facts {
                    let _ = writeln!(b, "- {f}");
                }
            }
            if let Some(last) = &c.last_call {
                let _ = writeln!(
                    b,
                    "last_call: {} ({}): {}",
                    format_date(last.started_at_ms),
                    last.outcome.as_deref().unwrap_or("no outcome"),
                    last.summary.as_deref().unwrap_or("no summary")
                );
            }
            if !c.pending_tasks.is_empty() {
                b.push_str("pending_tasks:\n");
                for t in &c.pending_tasks {
                    match t.due_at_ms {
                        Some(due) => {
                            let _ = writeln!(b, "- {} (due {})", t.title, format_date(due));
                        }
                        None => {
                            let _ = writeln!(b, "- {}", t.title);
                        }
                    }
                }
            }
            if c.partial {
                let _ = writeln!(
                    b,
                    "note: context is partial (missing: {})",
                    c.missing.join(", ")
                );
            }
        }
        None => {
            b.push_str("The caller is not a known customer.\n");
            if let Some(caller) = caller {
                let _ = writeln!(
                    b,
                    "caller_id: {}",
                    caller.e164.as_deref().unwrap_or(&caller.raw)
                );
            }
            if let Some(n) = name {
                let _ = writeln!(b, "name: {n}");
            }
            let _ = writeln!(b, "context: {}", status.label());
        }
    }
    if let Some(src) = name_source {
        let _ = writeln!(b, "name_source: {}", src.as_str());
    }
    b.push_str("[/CUSTOMER CONTEXT]");
    b
}

/// `YYYY-MM-DD` (UTC) for epoch milliseconds, without a date library (civil-from-days).
pub fn format_date(ms: Millis) -> String {
    let days = (ms / 86_400_000) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
