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
    // Newest first, so the budget keeps the latest turns; each line becomes one or two messages.
    let budget = m.config.max_prompt_tokens;
    let mut kept: Vec<Vec<ChatMessage>> = Vec::new();
    let mut used = 0usize;
    let mut dropped = 0usize;
    for msg in m.conversation().iter().rev() {
        let group = messages_for(m, msg);
        let cost: usize = group.iter().map(estimate_tokens).sum();
        // The latest line always stays, whatever its size: it is what the model must answer.
        if budget > 0 && used + cost > budget && !kept.is_empty() {
            dropped = m.conversation().len() - kept.len();
            break;
        }
        used += cost;
        kept.push(group);
    }
    let mut messages = Vec::with_capacity(kept.len() + 2);
    messages.push(ChatMessage::new("system", system));
    if dropped > 0 {
        messages.push(ChatMessage::new(
            "system",
            format!(
                "({dropped} earlier lines of this call are omitted to fit the context window.)"
            ),
        ));
    }
    for group in kept.into_iter().rev() {
        messages.extend(group);
    }
    LlmRequest {
        messages,
        tools: m.config.offer_tools,
    }
}

/// A rough token count (about four characters a token, plus the message framing): models
/// differ in tokenizers, and the budget only has to stop a long call from growing unbounded.
pub(super) fn estimate_tokens(message: &ChatMessage) -> usize {
    let calls: usize = message
        .tool_calls
        .iter()
        .flatten()
        .map(|c| c.function.name.len() + c.function.arguments.len() + c.id.len())
        .sum();
    (message.content.len() + calls).div_ceil(4) + 4
}

/// The chat messages for one conversation line: a tool line becomes the assistant's call and
/// the tool's answer, as the API expects.
fn messages_for(m: &CallMachine, msg: &ConversationMessage) -> Vec<ChatMessage> {
    if msg.role == Role::Tool
        && let Some(x) = m.tool_log().iter().find(|x| x.message_seq == msg.seq)
    {
        return vec![
            ChatMessage {
                role: "assistant".into(),
                content: String::new(),
                tool_calls: Some(vec![ChatToolCall {
                    id: x.call.id.clone(),
                    kind: "function".into(),
                    function: ChatFunctionCall {
                        name: x.call.name.clone(),
                        arguments: if x.call.arguments.trim().is_empty() {
                            "{}".into()
                        } else {
                            x.call.arguments.clone()
                        },
                    },
                }]),
                tool_call_id: None,
            },
            ChatMessage {
                role: "tool".into(),
                content: x.result.clone(),
                tool_calls: None,
                tool_call_id: Some(x.call.id.clone()),
            },
        ];
    }
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
    vec![ChatMessage::new(role, content)]
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
