//! The call summary written at finalizing: one or two sentences from the LLM, under a deadline,
//! or [`fallback_summary`] when the LLM fails, is slow, or there is nothing to summarize. The
//! summary is stored on the call record and becomes the "last call" context of the customer's
//! next call.

use std::time::Duration;

use futures::StreamExt;

use crate::domain::*;
use crate::ports::LlmClient;

/// The most transcript text sent to the LLM (the end of the call is kept).
const MAX_TRANSCRIPT_CHARS: usize = 8_000;
/// The longest summary stored.
const MAX_SUMMARY_CHARS: usize = 600;

pub const SUMMARY_PROMPT: &str = "Summarize this phone call in one or two short sentences for the agent who takes this customer's next call: what the caller wanted and how it was left. Reply with the summary only.";

/// The request for a summary of `record`'s conversation.
pub fn summary_request(record: &CallRecord) -> LlmRequest {
    let mut lines = String::new();
    for m in &record.transcript {
        lines.push_str(m.role.as_str());
        lines.push_str(": ");
        lines.push_str(&m.text);
        lines.push('\n');
    }
    let skip = lines.chars().count().saturating_sub(MAX_TRANSCRIPT_CHARS);
    let lines: String = lines.chars().skip(skip).collect();
    let who = record.customer_name.as_deref().unwrap_or("unknown caller");
    LlmRequest::plain(vec![
        ChatMessage::new("system", SUMMARY_PROMPT),
        ChatMessage::new(
            "user",
            format!("Caller: {who}. Outcome: {}.\n{lines}", record.outcome),
        ),
    ])
}

/// The LLM's summary within `deadline`, else the fallback. Never fails.
pub async fn summarize(llm: &dyn LlmClient, record: &CallRecord, deadline: Duration) -> String {
    if !record.transcript.iter().any(|m| m.role == Role::Caller) {
        return fallback_summary(record);
    }
    let mut stream = llm.stream(summary_request(record));
    let collect = async {
        let mut text = String::new();
        while let Some(piece) = stream.next().await {
            text.push_str(&piece?);
        }
        Ok::<_, crate::ports::PortError>(text)
    };
    match tokio::time::timeout(deadline, collect).await {
        Ok(Ok(text)) if !text.trim().is_empty() => {
            let text = text.trim();
            if text.chars().count() > MAX_SUMMARY_CHARS {
                let cut: String = text.chars().take(MAX_SUMMARY_CHARS).collect();
                format!("{cut}…")
            } else {
                text.to_owned()
            }
        }
        Ok(Ok(_)) => fallback_summary(record),
        Ok(Err(e)) => {
            tracing::warn!(call_sid = %record.call_sid, error = %e, "summary LLM failed; using the fallback summary");
            fallback_summary(record)
        }
        Err(_) => {
            tracing::warn!(call_sid = %record.call_sid, deadline_ms = deadline.as_millis() as u64, "summary LLM missed its deadline; using the fallback summary");
            fallback_summary(record)
        }
    }
}
