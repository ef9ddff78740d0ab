//! The rejection type shared by the Media Streams and ConversationRelay parsers.

/// Why a WebSocket text frame was rejected.
///
/// [`FrameError::reason`] is a short, stable label meant for a metrics counter; the `Display`
/// text says what exactly was wrong and is meant for a log line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The text is longer than the parser's documented limit; it was not parsed at all.
    #[error("frame of {len} bytes is over the {max}-byte limit")]
    Oversized { len: usize, max: usize },
    /// The text is not a single well-formed JSON object.
    #[error("frame is not a JSON object: {0}")]
    NotJson(String),
    /// The `event` (Media Streams) or `type` (ConversationRelay) is not one this crate knows.
    #[error("unknown {field} {value:?}")]
    UnknownEvent { field: &'static str, value: String },
    /// A required field is absent.
    #[error("field \"{0}\" missing")]
    MissingField(&'static str),
    /// A field has the wrong JSON type (a number where a string belongs, or the reverse).
    #[error("field \"{field}\" should be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    /// A base64 field does not decode.
    #[error("{0} is not valid base64")]
    BadBase64(&'static str),
    /// A decoded inbound media payload is empty or not whole 20 ms frames (160 bytes).
    #[error("media.payload decodes to {0} bytes, not a positive multiple of 160")]
    UnalignedPayload(usize),
    /// A counter string (`sequenceNumber`, `chunk`, `timestamp`, ...) is not a decimal integer.
    #[error("field \"{field}\" is not a decimal integer: {value:?}")]
    BadCounter { field: &'static str, value: String },
}

/// The longest value echoed back inside an error message; network input can be arbitrarily long
/// and error messages end up in logs.
const MAX_ECHOED_CHARS: usize = 40;

impl FrameError {
    /// A stable snake_case label for a metrics counter.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Oversized { .. } => "oversized",
            Self::NotJson(_) => "not_json",
            Self::UnknownEvent { .. } => "unknown_event",
            Self::MissingField(_) => "missing_field",
            Self::WrongType { .. } => "wrong_type",
            Self::BadBase64(_) => "bad_base64",
            Self::UnalignedPayload(_) => "unaligned_payload",
            Self::BadCounter { .. } => "bad_counter",
        }
    }

    /// Every label [`FrameError::reason`] can return, so a metrics registry can pre-create them.
    pub const REASONS: [&'static str; 8] = [
        "oversized",
        "not_json",
        "unknown_event",
        "missing_field",
        "wrong_type",
        "bad_base64",
        "unaligned_payload",
        "bad_counter",
    ];
}

/// Copies at most [`MAX_ECHOED_CHARS`] characters of untrusted text for an error message.
pub(crate) fn echo(value: &str) -> String {
    match value.char_indices().nth(MAX_ECHOED_CHARS) {
        Some((cut, _)) => format!("{}…", value.get(..cut).unwrap_or_default()),
        None => value.to_owned(),
    }
}
