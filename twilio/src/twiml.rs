//! Twilio's HTTP side (PROTOCOLS.md §1): the voice webhook and stream-status callback forms in,
//! TwiML out. Every attribute value is XML-escaped, since caller ids and custom parameters come
//! from the network.
//!
//! Never here: HTTP handling or deciding what to answer — the server picks, this module spells it.

use std::fmt::Write as _;

/// Why a webhook form was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("form field {0:?} missing")]
    MissingField(&'static str),
}

impl FormError {
    /// A stable snake_case label for a metrics counter.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingField(_) => "missing_field",
        }
    }
}

/// Decodes an `application/x-www-form-urlencoded` body into pairs, keeping order and repeated
/// keys (the signature needs both). Never fails: malformed escapes decode leniently.
pub fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// The fields of Twilio's voice webhook (`POST /twilio/voice`) this runtime uses.
///
/// Required fields must be present (`CallSid` and `AccountSid` also non-empty); optional fields
/// that arrive empty become `None`, because a form cannot tell "empty" from "not known".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoiceWebhook {
    pub call_sid: String,
    pub account_sid: String,
    /// E.164, `client:name`, `anonymous`, or whatever the carrier sent: opaque here.
    pub from: String,
    pub to: String,
    /// `queued|ringing|in-progress|completed|busy|failed|no-answer|canceled`.
    pub call_status: String,
    /// `inbound|outbound-api|outbound-dial`.
    pub direction: String,
    pub api_version: Option<String>,
    pub forwarded_from: Option<String>,
    pub caller_name: Option<String>,
    pub parent_call_sid: Option<String>,
}

/// The first value of `name` among `pairs`.
fn field<'a, K: AsRef<str>, V: AsRef<str>>(pairs: &'a [(K, V)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k.as_ref() == name)
        .map(|(_, v)| v.as_ref())
}

fn required<K: AsRef<str>, V: AsRef<str>>(
    pairs: &[(K, V)],
    name: &'static str,
) -> Result<String, FormError> {
    field(pairs, name)
        .map(str::to_owned)
        .ok_or(FormError::MissingField(name))
}

fn required_non_empty<K: AsRef<str>, V: AsRef<str>>(
    pairs: &[(K, V)],
    name: &'static str,
) -> Result<String, FormError> {
    field(pairs, name)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .ok_or(FormError::MissingField(name))
}

fn optional<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)], name: &str) -> Option<String> {
    field(pairs, name)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

impl VoiceWebhook {
    /// Reads the webhook from decoded form pairs; unknown fields are ignored.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Result<Self, FormError> {
        Ok(Self {
            call_sid: required_non_empty(pairs, "CallSid")?,
            account_sid: required_non_empty(pairs, "AccountSid")?,
            from: required(pairs, "From")?,
            to: required(pairs, "To")?,
            call_status: required(pairs, "CallStatus")?,
            direction: required(pairs, "Direction")?,
            api_version: optional(pairs, "ApiVersion"),
            forwarded_from: optional(pairs, "ForwardedFrom"),
            caller_name: optional(pairs, "CallerName"),
            parent_call_sid: optional(pairs, "ParentCallSid"),
        })
    }
}

/// What a stream-status callback reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    Started,
    Stopped,
    Error,
    /// A value this crate does not know yet, kept rather than rejected.
    Other(String),
}

/// The stream-status callback form (`POST /twilio/stream-status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStatus {
    pub stream_sid: String,
    pub stream_event: StreamEvent,
    pub stream_error: Option<String>,
    pub call_sid: String,
    pub account_sid: String,
    /// As sent; Twilio's format for it is not documented, so it is not interpreted here.
    pub timestamp: Option<String>,
}

impl StreamStatus {
    /// Reads the callback from decoded form pairs; unknown fields are ignored.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Result<Self, FormError> {
        let stream_event = match field(pairs, "StreamEvent") {
            None => return Err(FormError::MissingField("StreamEvent")),
            Some("stream-started") => StreamEvent::Started,
            Some("stream-stopped") => StreamEvent::Stopped,
            Some("stream-error") => StreamEvent::Error,
            Some(other) => StreamEvent::Other(other.to_owned()),
        };
        Ok(Self {
            stream_sid: required_non_empty(pairs, "StreamSid")?,
            stream_event,
            stream_error: optional(pairs, "StreamError"),
            call_sid: required_non_empty(pairs, "CallSid")?,
            account_sid: required_non_empty(pairs, "AccountSid")?,
            timestamp: optional(pairs, "Timestamp"),
        })
    }
}

// === TwiML ===

const XML_HEADER: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

/// Appends `value` escaped for a double-quoted XML attribute.
///
/// Besides the five markup characters, tab/newline/CR become character references (a parser
/// would otherwise normalise them to spaces) and the control characters XML 1.0 cannot carry at
/// all are dropped, so hostile caller data can never make the document malformed.
fn push_attr(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => {}
            c => out.push(c),
        }
    }
}

fn push_named_attr(out: &mut String, name: &str, value: &str) {
    let _ = write!(out, " {name}=\"");
    push_attr(out, value);
    out.push('"');
}

fn push_parameters(out: &mut String, params: &[(&str, &str)]) {
    for (name, value) in params {
        out.push_str("<Parameter");
        push_named_attr(out, "name", name);
        push_named_attr(out, "value", value);
        out.push_str("/>");
    }
}

/// `<Connect><Stream>` for a bidirectional media stream.
///
/// `stream_url` must be the `wss://` URL without a query string (see
/// [`crate::signature::websocket_url`]); per-call data travels as `params`, which Twilio hands
/// back in `start.customParameters`.
pub fn connect_stream(
    stream_url: &str,
    status_callback_url: Option<&str>,
    params: &[(&str, &str)],
) -> String {
    let mut out = String::with_capacity(256);
    out.push_str(XML_HEADER);
    out.push_str("<Response><Connect><Stream");
    push_named_attr(&mut out, "url", stream_url);
    if let Some(callback) = status_callback_url {
        push_named_attr(&mut out, "statusCallback", callback);
    }
    out.push('>');
    push_parameters(&mut out, params);
    out.push_str("</Stream></Connect></Response>");
    out
}

/// `<Connect><ConversationRelay>`; `None` attributes are left out so Twilio's defaults apply.
pub fn connect_conversation_relay(
    url: &str,
    welcome_greeting: Option<&str>,
    language: Option<&str>,
    voice: Option<&str>,
    params: &[(&str, &str)],
) -> String {
    let mut out = String::with_capacity(256);
    out.push_str(XML_HEADER);
    out.push_str("<Response><Connect><ConversationRelay");
    push_named_attr(&mut out, "url", url);
    for (name, value) in [
        ("welcomeGreeting", welcome_greeting),
        ("language", language),
        ("voice", voice),
    ] {
        if let Some(value) = value {
            push_named_attr(&mut out, name, value);
        }
    }
    out.push('>');
    push_parameters(&mut out, params);
    out.push_str("</ConversationRelay></Connect></Response>");
    out
}

#[cfg(test)]
mod tests;
