//! Twilio ConversationRelay messages (PROTOCOLS.md §4): Twilio does speech-to-text and
//! text-to-speech and exchanges text with the server. Parses what Twilio sends, serialises what
//! the server sends, and the reverse of both for a simulated Twilio.
//!
//! Never here: session rules (a `prompt` before `setup`), which belong to the connection.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{FrameError, echo};
use crate::json::{
    RawMap, Scalar, opt_bool, opt_string, parse_decimal, parse_object, req_str, req_string,
    string_map,
};

/// Relay messages longer than this are rejected as `oversized` before parsing.
///
/// A long spoken prompt is a few KB; 64 KiB matches the Media Streams limit.
pub const MAX_RELAY_FRAME_BYTES: usize = 64 * 1024;

/// A message Twilio sends on a ConversationRelay WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayInbound {
    /// Boxed: it is many times larger than the other messages and arrives once per session.
    Setup(Box<Setup>),
    /// What the caller said. `last` is `false` only for partial prompts; absent means `true`.
    Prompt {
        voice_prompt: String,
        lang: Option<String>,
        last: bool,
    },
    Dtmf {
        digit: String,
    },
    /// The caller spoke over the agent. `duration_until_interrupt_ms` arrives as a number or a
    /// numeric string; it is optional so an interrupt is never lost to a missing detail.
    Interrupt {
        utterance_until_interrupt: String,
        duration_until_interrupt_ms: Option<u64>,
    },
    Error {
        description: String,
    },
}

/// The first message of a session. Optional fields keep Twilio's value as sent, including
/// empty strings (`"parentCallSid":""` for a call with no parent).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Setup {
    pub session_id: String,
    pub call_sid: String,
    pub account_sid: Option<String>,
    pub parent_call_sid: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub forwarded_from: Option<String>,
    pub caller_name: Option<String>,
    pub direction: Option<String>,
    pub call_type: Option<String>,
    pub call_status: Option<String>,
    pub custom_parameters: BTreeMap<String, String>,
}

/// A message the server sends to Twilio. Serialises (serde) to Twilio's exact field names;
/// `None` fields are omitted so Twilio applies its defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum RelayOutbound {
    /// A piece of the agent's reply to speak; `last: true` ends the turn.
    Text {
        token: String,
        last: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        lang: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        interruptible: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        preemptible: Option<bool>,
    },
    /// Play audio from a URL.
    Play {
        source: String,
        #[serde(rename = "loop", skip_serializing_if = "Option::is_none")]
        loop_count: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        interruptible: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        preemptible: Option<bool>,
    },
    SendDigits {
        digits: String,
    },
    Language {
        #[serde(skip_serializing_if = "Option::is_none")]
        tts_language: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        transcription_language: Option<String>,
    },
    /// End the session; `handoff_data` reaches the next TwiML step.
    End {
        #[serde(skip_serializing_if = "Option::is_none")]
        handoff_data: Option<String>,
    },
}

// === parsing ===

/// Every field of every message type in one flat struct, so a message is walked once.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRelay<'a> {
    #[serde(default, borrow, rename = "type")]
    kind: Scalar<'a>,
    // setup
    #[serde(default, borrow)]
    session_id: Scalar<'a>,
    #[serde(default, borrow)]
    call_sid: Scalar<'a>,
    #[serde(default, borrow)]
    account_sid: Scalar<'a>,
    #[serde(default, borrow)]
    parent_call_sid: Scalar<'a>,
    #[serde(default, borrow)]
    from: Scalar<'a>,
    #[serde(default, borrow)]
    to: Scalar<'a>,
    #[serde(default, borrow)]
    forwarded_from: Scalar<'a>,
    #[serde(default, borrow)]
    caller_name: Scalar<'a>,
    #[serde(default, borrow)]
    direction: Scalar<'a>,
    #[serde(default, borrow)]
    call_type: Scalar<'a>,
    #[serde(default, borrow)]
    call_status: Scalar<'a>,
    #[serde(default, borrow)]
    custom_parameters: RawMap<'a>,
    // prompt
    #[serde(default, borrow)]
    voice_prompt: Scalar<'a>,
    #[serde(default, borrow)]
    lang: Scalar<'a>,
    #[serde(default, borrow)]
    last: Scalar<'a>,
    // dtmf
    #[serde(default, borrow)]
    digit: Scalar<'a>,
    // interrupt
    #[serde(default, borrow)]
    utterance_until_interrupt: Scalar<'a>,
    #[serde(default, borrow)]
    duration_until_interrupt_ms: Scalar<'a>,
    // error
    #[serde(default, borrow)]
    description: Scalar<'a>,
    // outbound (parsed only by a simulated Twilio)
    #[serde(default, borrow)]
    token: Scalar<'a>,
    #[serde(default, borrow)]
    interruptible: Scalar<'a>,
    #[serde(default, borrow)]
    preemptible: Scalar<'a>,
    #[serde(default, borrow)]
    source: Scalar<'a>,
    #[serde(default, borrow, rename = "loop")]
    loop_count: Scalar<'a>,
    #[serde(default, borrow)]
    digits: Scalar<'a>,
    #[serde(default, borrow)]
    tts_language: Scalar<'a>,
    #[serde(default, borrow)]
    transcription_language: Scalar<'a>,
    #[serde(default, borrow)]
    handoff_data: Scalar<'a>,
}

fn parse_raw(text: &str) -> Result<RawRelay<'_>, FrameError> {
    if text.len() > MAX_RELAY_FRAME_BYTES {
        return Err(FrameError::Oversized {
            len: text.len(),
            max: MAX_RELAY_FRAME_BYTES,
        });
    }
    parse_object(text)
}

fn unknown_type(name: &str) -> FrameError {
    FrameError::UnknownEvent {
        field: "type",
        value: echo(name),
    }
}

/// A duration that some renderings send as a JSON number and others as a numeric string.
fn number_or_numeric_string(v: Scalar<'_>, field: &'static str) -> Result<Option<u64>, FrameError> {
    match v {
        Scalar::Absent => Ok(None),
        Scalar::UInt(n) => Ok(Some(n)),
        Scalar::Str(s) => parse_decimal(&s)
            .map(Some)
            .ok_or_else(|| FrameError::BadCounter {
                field,
                value: echo(&s),
            }),
        _ => Err(FrameError::WrongType {
            field,
            expected: "a non-negative integer or a numeric string",
        }),
    }
}

/// Parses one text message from Twilio.
pub fn parse_relay_inbound(text: &str) -> Result<RelayInbound, FrameError> {
    let raw = parse_raw(text)?;
    let kind = req_str(raw.kind, "type")?;
    Ok(match &*kind {
        "setup" => RelayInbound::Setup(Box::new(Setup {
            session_id: req_string(raw.session_id, "sessionId")?,
            call_sid: req_string(raw.call_sid, "callSid")?,
            account_sid: opt_string(raw.account_sid, "accountSid")?,
            parent_call_sid: opt_string(raw.parent_call_sid, "parentCallSid")?,
            from: opt_string(raw.from, "from")?,
            to: opt_string(raw.to, "to")?,
            forwarded_from: opt_string(raw.forwarded_from, "forwardedFrom")?,
            caller_name: opt_string(raw.caller_name, "callerName")?,
            direction: opt_string(raw.direction, "direction")?,
            call_type: opt_string(raw.call_type, "callType")?,
            call_status: opt_string(raw.call_status, "callStatus")?,
            custom_parameters: string_map(raw.custom_parameters, "customParameters")?,
        })),
        "prompt" => RelayInbound::Prompt {
            voice_prompt: req_string(raw.voice_prompt, "voicePrompt")?,
            lang: opt_string(raw.lang, "lang")?,
            last: opt_bool(raw.last, "last")?.unwrap_or(true),
        },
        "dtmf" => RelayInbound::Dtmf {
            digit: req_string(raw.digit, "digit")?,
        },
        "interrupt" => RelayInbound::Interrupt {
            utterance_until_interrupt: req_string(
                raw.utterance_until_interrupt,
                "utteranceUntilInterrupt",
            )?,
            duration_until_interrupt_ms: number_or_numeric_string(
                raw.duration_until_interrupt_ms,
                "durationUntilInterruptMs",
            )?,
        },
        "error" => RelayInbound::Error {
            description: req_string(raw.description, "description")?,
        },
        other => return Err(unknown_type(other)),
    })
}

/// Parses one text message the server sent (for a simulated Twilio).
pub fn parse_relay_outbound(text: &str) -> Result<RelayOutbound, FrameError> {
    let raw = parse_raw(text)?;
    let kind = req_str(raw.kind, "type")?;
    Ok(match &*kind {
        "text" => RelayOutbound::Text {
            token: req_string(raw.token, "token")?,
            last: opt_bool(raw.last, "last")?.ok_or(FrameError::MissingField("last"))?,
            lang: opt_string(raw.lang, "lang")?,
            interruptible: opt_bool(raw.interruptible, "interruptible")?,
            preemptible: opt_bool(raw.preemptible, "preemptible")?,
        },
        "play" => RelayOutbound::Play {
            source: req_string(raw.source, "source")?,
            loop_count: match raw.loop_count {
                Scalar::Absent => None,
                Scalar::UInt(n) => Some(u32::try_from(n).map_err(|_| FrameError::WrongType {
                    field: "loop",
                    expected: "a 32-bit count",
                })?),
                _ => {
                    return Err(FrameError::WrongType {
                        field: "loop",
                        expected: "a non-negative integer",
                    });
                }
            },
            interruptible: opt_bool(raw.interruptible, "interruptible")?,
            preemptible: opt_bool(raw.preemptible, "preemptible")?,
        },
        "sendDigits" => RelayOutbound::SendDigits {
            digits: req_string(raw.digits, "digits")?,
        },
        "language" => RelayOutbound::Language {
            tts_language: opt_string(raw.tts_language, "ttsLanguage")?,
            transcription_language: opt_string(
                raw.transcription_language,
                "transcriptionLanguage",
            )?,
        },
        "end" => RelayOutbound::End {
            handoff_data: opt_string(raw.handoff_data, "handoffData")?,
        },
        other => return Err(unknown_type(other)),
    })
}

// === serialising ===

impl RelayOutbound {
    /// The JSON text to send to Twilio.
    pub fn to_json(&self) -> String {
        // Only strings, bools and integers inside: serde_json cannot fail on them.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Twilio's rendering of [`RelayInbound`], for a simulated Twilio.
#[derive(Serialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
enum InboundWire<'a> {
    Setup {
        session_id: &'a str,
        call_sid: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        account_sid: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        parent_call_sid: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        from: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        to: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        forwarded_from: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        caller_name: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        direction: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        call_type: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        call_status: Option<&'a str>,
        custom_parameters: &'a BTreeMap<String, String>,
    },
    Prompt {
        voice_prompt: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        lang: Option<&'a str>,
        last: bool,
    },
    Dtmf {
        digit: &'a str,
    },
    Interrupt {
        utterance_until_interrupt: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        duration_until_interrupt_ms: Option<u64>,
    },
    Error {
        description: &'a str,
    },
}

impl RelayInbound {
    /// Serialises the message as Twilio sends it, for a simulated Twilio.
    pub fn to_json(&self) -> String {
        let wire = match self {
            Self::Setup(s) => InboundWire::Setup {
                session_id: &s.session_id,
                call_sid: &s.call_sid,
                account_sid: s.account_sid.as_deref(),
                parent_call_sid: s.parent_call_sid.as_deref(),
                from: s.from.as_deref(),
                to: s.to.as_deref(),
                forwarded_from: s.forwarded_from.as_deref(),
                caller_name: s.caller_name.as_deref(),
                direction: s.direction.as_deref(),
                call_type: s.call_type.as_deref(),
                call_status: s.call_status.as_deref(),
                custom_parameters: &s.custom_parameters,
            },
            Self::Prompt {
                voice_prompt,
                lang,
                last,
            } => InboundWire::Prompt {
                voice_prompt,
                lang: lang.as_deref(),
                last: *last,
            },
            Self::Dtmf { digit } => InboundWire::Dtmf { digit },
            Self::Interrupt {
                utterance_until_interrupt,
                duration_until_interrupt_ms,
            } => InboundWire::Interrupt {
                utterance_until_interrupt,
                duration_until_interrupt_ms: *duration_until_interrupt_ms,
            },
            Self::Error { description } => InboundWire::Error { description },
        };
        // Only strings, bools, integers and a string map inside: serde_json cannot fail on them.
        serde_json::to_string(&wire).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
