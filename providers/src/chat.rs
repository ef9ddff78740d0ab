//! What one OpenAI-compatible streaming chunk means (PROTOCOLS.md §5), and tool-call assembly.
//!
//! Owns the interpretation of an SSE event's `data`: text pieces, tool-call fragments, the finish
//! reason, usage, the `[DONE]` sentinel, and `error` bodies. Tolerant of what real servers add
//! (`obfuscation`, `x_groq`, `reasoning_content`, `usage: null`, `content: null`). Pure: never
//! does I/O and never panics on input, whatever the server sent.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// One meaningful piece of a streamed chat completion.
#[derive(Clone, Debug, PartialEq)]
pub enum Delta {
    /// A non-empty piece of the assistant's reply.
    Text(String),
    ToolCallFragment(ToolCallFragment),
    Finish(FinishReason),
    Usage(Usage),
    /// `data: [DONE]`: the server ended the stream properly.
    Done,
}

/// A fragment of a streamed tool call; concatenate `arguments` per `index`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolCallFragment {
    pub index: u32,
    /// Present on the first fragment of a call.
    pub id: Option<String>,
    /// Present on the first fragment of a call.
    pub name: Option<String>,
    pub arguments: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
    /// Anything else a compatible server invents (kept, not rejected).
    Other(String),
}

impl FinishReason {
    fn parse(reason: &str) -> Self {
        match reason {
            "stop" => FinishReason::Stop,
            "length" => FinishReason::Length,
            "tool_calls" | "function_call" => FinishReason::ToolCalls,
            "content_filter" => FinishReason::ContentFilter,
            other => FinishReason::Other(other.to_owned()),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

/// A chunk that is not a usable completion chunk.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// The server put an `error` object in the stream (OpenAI does this mid-stream).
    #[error("LLM reported an error mid-stream: {message}")]
    Api { message: String },
    /// The event's data is not the JSON we expect; `reason` is short and safe to log.
    #[error("LLM sent an unreadable stream event ({reason})")]
    InvalidJson { reason: String },
}

// === impl ChunkParser ===

/// Interprets SSE event data, one event at a time.
#[derive(Debug, Default)]
pub struct ChunkParser {
    done: bool,
}

#[derive(Deserialize)]
struct RawChunk {
    #[serde(default)]
    choices: Option<Vec<RawChoice>>,
    #[serde(default)]
    usage: Option<RawUsage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct RawChoice {
    #[serde(default)]
    delta: Option<RawDelta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct RawDelta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<RawToolCall>>,
}

#[derive(Deserialize)]
struct RawToolCall {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<RawFunction>,
}

#[derive(Deserialize)]
struct RawFunction {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct RawUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    total_tokens: Option<u64>,
}

impl ChunkParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// True once `[DONE]` was seen.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The deltas in one event's data, in stream order (a chunk can carry text, a finish reason
    /// and usage at once, as Groq's last chunk does).
    pub fn parse(&mut self, data: &str) -> Result<Vec<Delta>, ChunkError> {
        let trimmed = data.trim();
        if trimmed == "[DONE]" {
            self.done = true;
            return Ok(vec![Delta::Done]);
        }
        let chunk: RawChunk =
            serde_json::from_str(trimmed).map_err(|e| ChunkError::InvalidJson {
                reason: short_reason(&e),
            })?;
        if let Some(error) = chunk.error.filter(|e| !e.is_null()) {
            return Err(ChunkError::Api {
                message: error_message(&error),
            });
        }
        let mut deltas = Vec::new();
        // With n = 1 (all we ever ask for) the only choice is the first.
        if let Some(choice) = chunk.choices.unwrap_or_default().into_iter().next() {
            if let Some(delta) = choice.delta {
                if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                    deltas.push(Delta::Text(text));
                }
                for (position, call) in delta.tool_calls.unwrap_or_default().into_iter().enumerate()
                {
                    let (name, arguments) = match call.function {
                        Some(f) => (f.name, f.arguments.unwrap_or_default()),
                        None => (None, String::new()),
                    };
                    deltas.push(Delta::ToolCallFragment(ToolCallFragment {
                        // Some servers omit `index` when they send whole calls; position is
                        // then the only identity there is.
                        index: call.index.unwrap_or(position as u32),
                        id: call.id.filter(|id| !id.is_empty()),
                        name: name.filter(|n| !n.is_empty()),
                        arguments,
                    }));
                }
            }
            if let Some(reason) = choice.finish_reason {
                deltas.push(Delta::Finish(FinishReason::parse(&reason)));
            }
        }
        if let Some(usage) = chunk.usage {
            deltas.push(Delta::Usage(Usage {
                prompt_tokens: usage.prompt_tokens.unwrap_or(0),
                completion_tokens: usage.completion_tokens.unwrap_or(0),
                total_tokens: usage.total_tokens.unwrap_or(0),
            }));
        }
        Ok(deltas)
    }
}

/// serde's message for the first problem, cut short: enough to debug, never the whole payload.
fn short_reason(error: &serde_json::Error) -> String {
    let mut reason = format!("{error}");
    truncate_chars(&mut reason, 120);
    reason
}

/// The readable part of an `error` value: `{"message": ..}`, or a bare string.
pub(crate) fn error_message(error: &Value) -> String {
    let mut message = match error {
        Value::String(s) => s.clone(),
        Value::Object(map) => match map.get("message").and_then(Value::as_str) {
            Some(m) => m.to_owned(),
            None => error.to_string(),
        },
        other => other.to_string(),
    };
    truncate_chars(&mut message, 300);
    message
}

pub(crate) fn truncate_chars(text: &mut String, max_chars: usize) {
    if let Some((cut, _)) = text.char_indices().nth(max_chars) {
        text.truncate(cut);
        text.push('…');
    }
}

// === impl ToolCallAssembler ===

/// A complete tool call, assembled from its fragments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The raw JSON text the model produced; may be invalid, see [`ToolCall::arguments_json`].
    pub arguments: String,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ToolCallError {
    #[error("tool call #{index} never named its function; the model's output is unusable")]
    MissingName { index: u32 },
    #[error("tool call {name} has arguments that are not a JSON object ({reason})")]
    InvalidArguments { name: String, reason: String },
    #[error("the model called unknown tool {name:?}; known tools: {known}")]
    UnknownTool { name: String, known: String },
}

impl ToolCall {
    /// The arguments parsed as a JSON object. An empty string counts as `{}`: OpenAI itself
    /// sends `""` first, and some servers never send more for a call without parameters.
    pub fn arguments_json(&self) -> Result<Value, ToolCallError> {
        if self.arguments.trim().is_empty() {
            return Ok(Value::Object(Default::default()));
        }
        let invalid = |reason: String| ToolCallError::InvalidArguments {
            name: self.name.clone(),
            reason,
        };
        match serde_json::from_str::<Value>(&self.arguments) {
            Ok(value @ Value::Object(_)) => Ok(value),
            Ok(_) => Err(invalid("not an object".to_owned())),
            Err(e) => Err(invalid(short_reason(&e))),
        }
    }

    /// Checks the name against the tools offered and parses the arguments: what a caller does
    /// before running a tool.
    pub fn validate(&self, known_tools: &[&str]) -> Result<Value, ToolCallError> {
        if !known_tools.contains(&self.name.as_str()) {
            return Err(ToolCallError::UnknownTool {
                name: self.name.clone(),
                known: known_tools.join(", "),
            });
        }
        self.arguments_json()
    }
}

/// Concatenates tool-call fragments per `index` (which need not start at 0).
#[derive(Debug, Default)]
pub struct ToolCallAssembler {
    calls: BTreeMap<u32, PartialCall>,
}

#[derive(Debug, Default)]
struct PartialCall {
    id: Option<String>,
    name: Option<String>,
    arguments: String,
}

impl ToolCallAssembler {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, fragment: &ToolCallFragment) {
        let call = self.calls.entry(fragment.index).or_default();
        if call.id.is_none() {
            call.id.clone_from(&fragment.id);
        }
        if call.name.is_none() {
            call.name.clone_from(&fragment.name);
        }
        call.arguments.push_str(&fragment.arguments);
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// The calls in index order. A call without an id gets `call_<index>` (some local servers
    /// send none); a call without a name is unusable and fails.
    pub fn finish(self) -> Result<Vec<ToolCall>, ToolCallError> {
        self.calls
            .into_iter()
            .map(|(index, call)| {
                let name = call.name.ok_or(ToolCallError::MissingName { index })?;
                Ok(ToolCall {
                    id: call.id.unwrap_or_else(|| format!("call_{index}")),
                    name,
                    arguments: call.arguments,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseDecoder;

    /// Frames a fixture as a server would, feeds it through the SSE decoder in odd-sized reads,
    /// and collects what the parser makes of it.
    /// A fixture framed as a server sends it (PROTOCOLS.md §5).
    fn fixture_wire(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../../shared/fixtures/openai/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut wire = String::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            wire.push_str("data: ");
            wire.push_str(line);
            wire.push_str("\n\n");
        }
        wire.push_str("data: [DONE]\n\n");
        wire.into_bytes()
    }

    fn replay_fixture(name: &str, read_size: usize) -> Vec<Delta> {
        let wire = fixture_wire(name);
        let mut decoder = SseDecoder::new();
        let mut parser = ChunkParser::new();
        let mut deltas = Vec::new();
        for read in wire.chunks(read_size) {
            for event in decoder.feed(read).expect("fixture lines are short") {
                deltas.extend(parser.parse(&event.data).expect("fixture chunks are valid"));
            }
        }
        assert!(parser.is_done());
        assert!(!decoder.has_partial_event());
        deltas
    }

    fn text_of(deltas: &[Delta]) -> String {
        deltas
            .iter()
            .filter_map(|d| match d {
                Delta::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }

    fn tool_calls_of(deltas: &[Delta]) -> Vec<ToolCall> {
        let mut assembler = ToolCallAssembler::new();
        for delta in deltas {
            if let Delta::ToolCallFragment(f) = delta {
                assembler.push(f);
            }
        }
        assembler.finish().expect("named calls")
    }

    const ODD_READS: [usize; 5] = [1, 3, 7, 61, 4096];

    #[test]
    fn fixture_gpt4o_text() {
        for read in ODD_READS {
            let deltas = replay_fixture("gpt4o_text.chunks.txt", read);
            assert_eq!(text_of(&deltas), "POST_TOOL");
            assert!(tool_calls_of(&deltas).is_empty());
            assert!(deltas.contains(&Delta::Finish(FinishReason::Stop)));
            assert!(deltas.contains(&Delta::Usage(Usage {
                prompt_tokens: 86,
                completion_tokens: 2,
                total_tokens: 88
            })));
            assert_eq!(deltas.last(), Some(&Delta::Done));
        }
    }

    #[test]
    fn fixture_gpt4o_tool_call() {
        for read in ODD_READS {
            let deltas = replay_fixture("gpt4o_tool_call.chunks.txt", read);
            assert_eq!(text_of(&deltas), "PRE_TOOL");
            let calls = tool_calls_of(&deltas);
            assert_eq!(
                calls,
                vec![ToolCall {
                    id: "call_NZa7xqfefoaMI2YYHowVXVlU".into(),
                    name: "weather".into(),
                    arguments: "{}".into(),
                }]
            );
            assert_eq!(calls[0].arguments_json(), Ok(serde_json::json!({})));
            assert!(deltas.contains(&Delta::Finish(FinishReason::ToolCalls)));
            assert!(deltas.contains(&Delta::Usage(Usage {
                prompt_tokens: 58,
                completion_tokens: 12,
                total_tokens: 70
            })));
        }
    }

    #[test]
    fn fixture_groq_tool_call_whole_in_one_chunk() {
        for read in ODD_READS {
            let deltas = replay_fixture("groq_tool_call.chunks.txt", read);
            // `content: null` in the first chunk is no text.
            assert_eq!(text_of(&deltas), "");
            assert_eq!(
                tool_calls_of(&deltas),
                vec![ToolCall {
                    id: "tk85n1k4m".into(),
                    name: "weather".into(),
                    arguments: "{}".into(),
                }]
            );
            // Groq puts usage on the finish chunk, with float timing fields we ignore.
            let finish = deltas
                .iter()
                .position(|d| *d == Delta::Finish(FinishReason::ToolCalls))
                .expect("finish");
            assert_eq!(
                deltas[finish + 1],
                Delta::Usage(Usage {
                    prompt_tokens: 210,
                    completion_tokens: 15,
                    total_tokens: 225
                })
            );
        }
    }

    #[test]
    fn every_two_way_split_of_every_fixture_gives_the_same_deltas() {
        for name in [
            "gpt4o_text.chunks.txt",
            "gpt4o_tool_call.chunks.txt",
            "groq_tool_call.chunks.txt",
        ] {
            let whole = replay_fixture(name, usize::MAX);
            let wire = fixture_wire(name);
            for split in 0..=wire.len() {
                let mut decoder = SseDecoder::new();
                let mut parser = ChunkParser::new();
                let mut deltas = Vec::new();
                for part in [&wire[..split], &wire[split..]] {
                    for event in decoder.feed(part).expect("short lines") {
                        deltas.extend(parser.parse(&event.data).expect("valid"));
                    }
                }
                assert_eq!(deltas, whole, "{name} split at byte {split}");
            }
        }
    }

    #[test]
    fn fragments_assemble_per_index_not_starting_at_zero() {
        let mut parser = ChunkParser::new();
        let events = [
            r#"{"choices":[{"delta":{"tool_calls":[{"index":3,"id":"a","type":"function","function":{"name":"lookup","arguments":""}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":5,"id":"b","type":"function","function":{"name":"hangup","arguments":"{\"why\""}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":3,"function":{"arguments":"{\"q\":"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":3,"function":{"arguments":"\"née\"}"}},{"index":5,"function":{"arguments":":\"done\"}"}}]}}]}"#,
            r#"{"choices":[{"delta":{},"finish_reason":"tool_calls"}]}"#,
        ];
        let mut assembler = ToolCallAssembler::new();
        for event in events {
            for delta in parser.parse(event).expect("valid") {
                if let Delta::ToolCallFragment(f) = delta {
                    assembler.push(&f);
                }
            }
        }
        let calls = assembler.finish().expect("named");
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].name, "lookup");
        assert_eq!(
            calls[0].arguments_json(),
            Ok(serde_json::json!({"q": "née"}))
        );
        assert_eq!(calls[1].id, "b");
        assert_eq!(
            calls[1].arguments_json(),
            Ok(serde_json::json!({"why": "done"}))
        );
    }

    #[test]
    fn invalid_tool_arguments_and_unknown_tool_are_errors() {
        let broken = ToolCall {
            id: "x".into(),
            name: "lookup".into(),
            arguments: "{\"q\": ".into(),
        };
        assert!(matches!(
            broken.arguments_json(),
            Err(ToolCallError::InvalidArguments { .. })
        ));
        let not_object = ToolCall {
            arguments: "[1]".into(),
            ..broken.clone()
        };
        assert!(not_object.arguments_json().is_err());
        let unknown = ToolCall {
            name: "format_disk".into(),
            arguments: "{}".into(),
            ..broken
        };
        let err = unknown.validate(&["lookup", "hangup"]).unwrap_err();
        assert!(err.to_string().contains("format_disk"), "{err}");
        assert!(err.to_string().contains("lookup, hangup"), "{err}");
    }

    #[test]
    fn call_without_name_fails_to_assemble() {
        let mut assembler = ToolCallAssembler::new();
        assembler.push(&ToolCallFragment {
            index: 0,
            id: None,
            name: None,
            arguments: "{}".into(),
        });
        assert_eq!(
            assembler.finish(),
            Err(ToolCallError::MissingName { index: 0 })
        );
    }

    #[test]
    fn error_object_is_an_error() {
        let mut parser = ChunkParser::new();
        let err = parser
            .parse(r#"{"error":{"message":"The server had an error while processing your request.","type":"server_error","code":null}}"#)
            .unwrap_err();
        assert_eq!(
            err,
            ChunkError::Api {
                message: "The server had an error while processing your request.".into()
            }
        );
        // Some servers send the error as a bare string.
        assert!(matches!(
            parser.parse(r#"{"error":"model overloaded"}"#),
            Err(ChunkError::Api { message }) if message == "model overloaded"
        ));
        // `error: null` is no error.
        assert_eq!(parser.parse(r#"{"error":null,"choices":[]}"#), Ok(vec![]));
    }

    #[test]
    fn garbage_json_is_an_error_with_a_short_reason() {
        let mut parser = ChunkParser::new();
        let garbage = format!("{{\"choices\": [{}", "x".repeat(10_000));
        match parser.parse(&garbage) {
            Err(ChunkError::InvalidJson { reason }) => assert!(reason.chars().count() <= 121),
            other => panic!("expected InvalidJson, got {other:?}"),
        }
        assert!(parser.parse("not json at all").is_err());
        assert!(parser.parse(r#"{"choices": "wrong type"}"#).is_err());
    }

    #[test]
    fn extra_fields_and_nulls_are_ignored() {
        let mut parser = ChunkParser::new();
        let deltas = parser
            .parse(r#"{"id":"x","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi","reasoning_content":"hmm","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"abc","x_groq":{"id":"q"}}"#)
            .expect("valid");
        assert_eq!(deltas, vec![Delta::Text("Hi".into())]);
        assert_eq!(parser.parse(r#"{"choices":null}"#), Ok(vec![]));
        assert_eq!(
            parser.parse(r#"{"choices":[{"delta":{},"finish_reason":"eos"}]}"#),
            Ok(vec![Delta::Finish(FinishReason::Other("eos".into()))])
        );
    }

    #[test]
    fn done_sentinel() {
        let mut parser = ChunkParser::new();
        assert!(!parser.is_done());
        assert_eq!(parser.parse(" [DONE] "), Ok(vec![Delta::Done]));
        assert!(parser.is_done());
    }
}
