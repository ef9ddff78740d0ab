//! Twilio Media Streams frames (PROTOCOLS.md §3): typed inbound frames parsed from Twilio's JSON,
//! allocation-light writers for the server's outbound frames, and the reverse direction (parse
//! outbound, serialise inbound) for a load generator that plays Twilio's side.
//!
//! Not here: binary frames and ordering rules ("media before start", a second `start`) — those
//! belong to the connection that sees the sequence, not to a single-frame parser.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;

use crate::error::{FrameError, echo};
use crate::json::{
    List, Nested, RawMap, Scalar, parse_object, req_counter, req_obj, req_str, req_string,
    req_uint, string_map, write_str,
};

/// Inbound frames longer than this are rejected as `oversized` before any parsing.
///
/// A real `media` frame is about 330 bytes and a `start` grows with `customParameters`; 64 KiB
/// leaves room for generous parameters while bounding the work one frame can cost.
pub const MAX_INBOUND_FRAME_BYTES: usize = 64 * 1024;

/// Outbound frames (server → Twilio) longer than this are rejected by [`parse_outbound`].
///
/// The server may send whole seconds of audio in one `media` frame (8000 bytes of mu-law is
/// about 10.7 KB of base64), so the limit is far above the inbound one: 1 MiB is ~98 s of audio.
pub const MAX_OUTBOUND_FRAME_BYTES: usize = 1024 * 1024;

/// Bytes of one 20 ms inbound mu-law frame at 8 kHz.
pub const FRAME_BYTES: usize = 160;

/// A frame Twilio sends on a Media Streams WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundFrame {
    Connected {
        protocol: String,
        version: String,
    },
    Start(Start),
    Media(Media),
    Dtmf {
        sequence_number: u64,
        stream_sid: String,
        track: String,
        digit: String,
    },
    /// The echo of a mark the server sent: all audio queued before it has played (or was cleared).
    Mark {
        sequence_number: u64,
        stream_sid: String,
        name: String,
    },
    Stop {
        sequence_number: u64,
        stream_sid: String,
        account_sid: String,
        call_sid: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub sequence_number: u64,
    pub stream_sid: String,
    pub account_sid: String,
    pub call_sid: String,
    /// Absent `tracks` parses as empty.
    pub tracks: Vec<String>,
    /// The `<Parameter>`s of the TwiML `<Stream>`; absent parses as empty.
    pub custom_parameters: BTreeMap<String, String>,
    pub media_format: MediaFormat,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFormat {
    /// `audio/x-mulaw` for every stream Twilio documents; kept as text so a caller can decide.
    pub encoding: String,
    pub sample_rate: u32,
    pub channels: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub sequence_number: u64,
    pub stream_sid: String,
    pub track: String,
    pub chunk: u64,
    /// Milliseconds since the stream started.
    pub timestamp_ms: u64,
    /// Decoded mu-law bytes: a positive multiple of [`FRAME_BYTES`].
    pub payload: Vec<u8>,
}

/// A frame the server sends to Twilio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboundFrame {
    /// Decoded mu-law; any length (the server may send more than one 20 ms frame at once).
    Media {
        stream_sid: String,
        payload: Vec<u8>,
    },
    Mark {
        stream_sid: String,
        name: String,
    },
    Clear {
        stream_sid: String,
    },
}

// === raw shapes ===
//
// Every field of every event lives in one flat struct so a frame is walked exactly once; the
// `event` then picks which fields are required.

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawFrame<'a> {
    #[serde(default, borrow)]
    event: Scalar<'a>,
    #[serde(default, borrow)]
    sequence_number: Scalar<'a>,
    #[serde(default, borrow)]
    stream_sid: Scalar<'a>,
    #[serde(default, borrow)]
    protocol: Scalar<'a>,
    #[serde(default, borrow)]
    version: Scalar<'a>,
    #[serde(default, borrow)]
    start: Nested<RawStart<'a>>,
    #[serde(default, borrow)]
    media: Nested<RawMedia<'a>>,
    #[serde(default, borrow)]
    dtmf: Nested<RawDtmf<'a>>,
    #[serde(default, borrow)]
    mark: Nested<RawMark<'a>>,
    #[serde(default, borrow)]
    stop: Nested<RawStop<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawStart<'a> {
    #[serde(default, borrow)]
    stream_sid: Scalar<'a>,
    #[serde(default, borrow)]
    account_sid: Scalar<'a>,
    #[serde(default, borrow)]
    call_sid: Scalar<'a>,
    #[serde(default, borrow)]
    tracks: List<'a>,
    #[serde(default, borrow)]
    custom_parameters: RawMap<'a>,
    #[serde(default, borrow)]
    media_format: Nested<RawMediaFormat<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMediaFormat<'a> {
    #[serde(default, borrow)]
    encoding: Scalar<'a>,
    #[serde(default, borrow)]
    sample_rate: Scalar<'a>,
    #[serde(default, borrow)]
    channels: Scalar<'a>,
}

#[derive(Deserialize)]
struct RawMedia<'a> {
    #[serde(default, borrow)]
    track: Scalar<'a>,
    #[serde(default, borrow)]
    chunk: Scalar<'a>,
    #[serde(default, borrow)]
    timestamp: Scalar<'a>,
    #[serde(default, borrow)]
    payload: Scalar<'a>,
}

#[derive(Deserialize)]
struct RawDtmf<'a> {
    #[serde(default, borrow)]
    track: Scalar<'a>,
    #[serde(default, borrow)]
    digit: Scalar<'a>,
}

#[derive(Deserialize)]
struct RawMark<'a> {
    #[serde(default, borrow)]
    name: Scalar<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawStop<'a> {
    #[serde(default, borrow)]
    account_sid: Scalar<'a>,
    #[serde(default, borrow)]
    call_sid: Scalar<'a>,
}

fn check_size(text: &str, max: usize) -> Result<(), FrameError> {
    if text.len() > max {
        return Err(FrameError::Oversized {
            len: text.len(),
            max,
        });
    }
    Ok(())
}

fn event_name<'a>(event: Scalar<'a>) -> Result<std::borrow::Cow<'a, str>, FrameError> {
    req_str(event, "event")
}

fn unknown_event(name: &str) -> FrameError {
    FrameError::UnknownEvent {
        field: "event",
        value: echo(name),
    }
}

fn decode_base64(text: &str, field: &'static str) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    BASE64
        .decode_vec(text, &mut out)
        .map_err(|_| FrameError::BadBase64(field))?;
    Ok(out)
}

// === impl InboundFrame ===

/// Parses one text frame from Twilio.
///
/// An empty media payload is rejected as `unaligned_payload` along with any other length that is
/// not whole 160-byte frames: Twilio never sends one, and downstream audio code relies on whole
/// 20 ms frames.
pub fn parse_inbound(text: &str) -> Result<InboundFrame, FrameError> {
    check_size(text, MAX_INBOUND_FRAME_BYTES)?;
    let raw: RawFrame<'_> = parse_object(text)?;
    let event = event_name(raw.event)?;
    let frame = match &*event {
        "connected" => InboundFrame::Connected {
            protocol: req_string(raw.protocol, "protocol")?,
            version: req_string(raw.version, "version")?,
        },
        "start" => {
            let sequence_number = req_counter(raw.sequence_number, "sequenceNumber")?;
            let start = req_obj(raw.start, "start")?;
            // Twilio puts the sid both at the top level and inside `start`; either will do.
            let stream_sid = match raw.stream_sid {
                Scalar::Absent => req_string(start.stream_sid, "start.streamSid")?,
                top => req_string(top, "streamSid")?,
            };
            let tracks = match start.tracks {
                List::Absent => Vec::new(),
                List::WrongType => {
                    return Err(FrameError::WrongType {
                        field: "start.tracks",
                        expected: "an array of strings",
                    });
                }
                List::Items(items) => items
                    .into_iter()
                    .map(|t| req_string(t, "start.tracks"))
                    .collect::<Result<_, _>>()?,
            };
            let format = req_obj(start.media_format, "start.mediaFormat")?;
            let media_format = MediaFormat {
                encoding: req_string(format.encoding, "start.mediaFormat.encoding")?,
                sample_rate: narrow(
                    req_uint(format.sample_rate, "start.mediaFormat.sampleRate")?,
                    "start.mediaFormat.sampleRate",
                )?,
                channels: narrow(
                    req_uint(format.channels, "start.mediaFormat.channels")?,
                    "start.mediaFormat.channels",
                )?,
            };
            InboundFrame::Start(Start {
                sequence_number,
                stream_sid,
                account_sid: req_string(start.account_sid, "start.accountSid")?,
                call_sid: req_string(start.call_sid, "start.callSid")?,
                tracks,
                custom_parameters: string_map(start.custom_parameters, "start.customParameters")?,
                media_format,
            })
        }
        "media" => {
            let sequence_number = req_counter(raw.sequence_number, "sequenceNumber")?;
            let stream_sid = req_string(raw.stream_sid, "streamSid")?;
            let media = req_obj(raw.media, "media")?;
            let track = req_string(media.track, "media.track")?;
            let chunk = req_counter(media.chunk, "media.chunk")?;
            let timestamp_ms = req_counter(media.timestamp, "media.timestamp")?;
            let payload =
                decode_base64(&req_str(media.payload, "media.payload")?, "media.payload")?;
            if payload.is_empty() || payload.len() % FRAME_BYTES != 0 {
                return Err(FrameError::UnalignedPayload(payload.len()));
            }
            InboundFrame::Media(Media {
                sequence_number,
                stream_sid,
                track,
                chunk,
                timestamp_ms,
                payload,
            })
        }
        "dtmf" => {
            let sequence_number = req_counter(raw.sequence_number, "sequenceNumber")?;
            let stream_sid = req_string(raw.stream_sid, "streamSid")?;
            let dtmf = req_obj(raw.dtmf, "dtmf")?;
            InboundFrame::Dtmf {
                sequence_number,
                stream_sid,
                track: req_string(dtmf.track, "dtmf.track")?,
                digit: req_string(dtmf.digit, "dtmf.digit")?,
            }
        }
        "mark" => {
            let sequence_number = req_counter(raw.sequence_number, "sequenceNumber")?;
            let stream_sid = req_string(raw.stream_sid, "streamSid")?;
            let mark = req_obj(raw.mark, "mark")?;
            InboundFrame::Mark {
                sequence_number,
                stream_sid,
                name: req_string(mark.name, "mark.name")?,
            }
        }
        "stop" => {
            let sequence_number = req_counter(raw.sequence_number, "sequenceNumber")?;
            let stream_sid = req_string(raw.stream_sid, "streamSid")?;
            let stop = req_obj(raw.stop, "stop")?;
            InboundFrame::Stop {
                sequence_number,
                stream_sid,
                account_sid: req_string(stop.account_sid, "stop.accountSid")?,
                call_sid: req_string(stop.call_sid, "stop.callSid")?,
            }
        }
        other => return Err(unknown_event(other)),
    };
    Ok(frame)
}

fn narrow<T: TryFrom<u64>>(n: u64, field: &'static str) -> Result<T, FrameError> {
    T::try_from(n).map_err(|_| FrameError::WrongType {
        field,
        expected: "a smaller integer",
    })
}

impl InboundFrame {
    /// Serialises the frame exactly as Twilio would send it (counters as strings, payload as
    /// base64), for a simulated Twilio.
    pub fn to_json(&self) -> String {
        let mut buf = String::with_capacity(256);
        self.write_json(&mut buf);
        buf
    }

    /// Appends the frame's JSON to `buf` (see [`InboundFrame::to_json`]).
    pub fn write_json(&self, buf: &mut String) {
        match self {
            Self::Connected { protocol, version } => {
                buf.push_str(r#"{"event":"connected","protocol":"#);
                write_str(buf, protocol);
                buf.push_str(r#","version":"#);
                write_str(buf, version);
                buf.push('}');
            }
            Self::Start(s) => {
                buf.push_str(r#"{"event":"start","#);
                write_counter(buf, "sequenceNumber", s.sequence_number);
                buf.push_str(r#","start":{"accountSid":"#);
                write_str(buf, &s.account_sid);
                buf.push_str(r#","streamSid":"#);
                write_str(buf, &s.stream_sid);
                buf.push_str(r#","callSid":"#);
                write_str(buf, &s.call_sid);
                buf.push_str(r#","tracks":["#);
                for (i, t) in s.tracks.iter().enumerate() {
                    if i > 0 {
                        buf.push(',');
                    }
                    write_str(buf, t);
                }
                buf.push_str(r#"],"customParameters":{"#);
                for (i, (k, v)) in s.custom_parameters.iter().enumerate() {
                    if i > 0 {
                        buf.push(',');
                    }
                    write_str(buf, k);
                    buf.push(':');
                    write_str(buf, v);
                }
                buf.push_str(r#"},"mediaFormat":{"encoding":"#);
                write_str(buf, &s.media_format.encoding);
                buf.push_str(&format!(
                    r#","sampleRate":{},"channels":{}}}}},"streamSid":"#,
                    s.media_format.sample_rate, s.media_format.channels
                ));
                write_str(buf, &s.stream_sid);
                buf.push('}');
            }
            Self::Media(m) => {
                buf.reserve(160 + m.payload.len() / 3 * 4);
                buf.push_str(r#"{"event":"media","#);
                write_counter(buf, "sequenceNumber", m.sequence_number);
                buf.push_str(r#","streamSid":"#);
                write_str(buf, &m.stream_sid);
                buf.push_str(r#","media":{"track":"#);
                write_str(buf, &m.track);
                buf.push(',');
                write_counter(buf, "chunk", m.chunk);
                buf.push(',');
                write_counter(buf, "timestamp", m.timestamp_ms);
                buf.push_str(r#","payload":""#);
                BASE64.encode_string(&m.payload, buf);
                buf.push_str("\"}}");
            }
            Self::Dtmf {
                sequence_number,
                stream_sid,
                track,
                digit,
            } => {
                buf.push_str(r#"{"event":"dtmf","#);
                write_counter(buf, "sequenceNumber", *sequence_number);
                buf.push_str(r#","streamSid":"#);
                write_str(buf, stream_sid);
                buf.push_str(r#","dtmf":{"track":"#);
                write_str(buf, track);
                buf.push_str(r#","digit":"#);
                write_str(buf, digit);
                buf.push_str("}}");
            }
            Self::Mark {
                sequence_number,
                stream_sid,
                name,
            } => {
                buf.push_str(r#"{"event":"mark","#);
                write_counter(buf, "sequenceNumber", *sequence_number);
                buf.push_str(r#","streamSid":"#);
                write_str(buf, stream_sid);
                buf.push_str(r#","mark":{"name":"#);
                write_str(buf, name);
                buf.push_str("}}");
            }
            Self::Stop {
                sequence_number,
                stream_sid,
                account_sid,
                call_sid,
            } => {
                buf.push_str(r#"{"event":"stop","#);
                write_counter(buf, "sequenceNumber", *sequence_number);
                buf.push_str(r#","streamSid":"#);
                write_str(buf, stream_sid);
                buf.push_str(r#","stop":{"accountSid":"#);
                write_str(buf, account_sid);
                buf.push_str(r#","callSid":"#);
                write_str(buf, call_sid);
                buf.push_str("}}");
            }
        }
    }
}

/// Twilio's counters are JSON strings holding decimal integers.
fn write_counter(buf: &mut String, name: &str, value: u64) {
    use std::fmt::Write as _;
    // Writing into a String cannot fail.
    let _ = write!(buf, r#""{name}":"{value}""#);
}

// === outbound writers ===

/// Appends a `media` frame carrying `mulaw` (raw mu-law bytes, base64-encoded here) to `buf`.
///
/// Appends rather than replaces so one buffer can be reused: `buf.clear()` before each frame.
pub fn write_media(buf: &mut String, stream_sid: &str, mulaw: &[u8]) {
    buf.reserve(64 + stream_sid.len() + mulaw.len().div_ceil(3) * 4);
    buf.push_str(r#"{"event":"media","streamSid":"#);
    write_str(buf, stream_sid);
    buf.push_str(r#","media":{"payload":""#);
    BASE64.encode_string(mulaw, buf);
    buf.push_str("\"}}");
}

/// Appends a `mark` frame to `buf`; Twilio echoes `name` back once the audio before it has played.
pub fn write_mark(buf: &mut String, stream_sid: &str, name: &str) {
    buf.push_str(r#"{"event":"mark","streamSid":"#);
    write_str(buf, stream_sid);
    buf.push_str(r#","mark":{"name":"#);
    write_str(buf, name);
    buf.push_str("}}");
}

/// Appends a `clear` frame to `buf`: Twilio drops queued audio and echoes every pending mark.
pub fn write_clear(buf: &mut String, stream_sid: &str) {
    buf.push_str(r#"{"event":"clear","streamSid":"#);
    write_str(buf, stream_sid);
    buf.push('}');
}

// === impl OutboundFrame ===

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawOutbound<'a> {
    #[serde(default, borrow)]
    event: Scalar<'a>,
    #[serde(default, borrow)]
    stream_sid: Scalar<'a>,
    #[serde(default, borrow)]
    media: Nested<RawOutboundMedia<'a>>,
    #[serde(default, borrow)]
    mark: Nested<RawMark<'a>>,
}

#[derive(Deserialize)]
struct RawOutboundMedia<'a> {
    #[serde(default, borrow)]
    payload: Scalar<'a>,
}

/// Parses one text frame the server sent to Twilio (for a simulated Twilio).
pub fn parse_outbound(text: &str) -> Result<OutboundFrame, FrameError> {
    check_size(text, MAX_OUTBOUND_FRAME_BYTES)?;
    let raw: RawOutbound<'_> = parse_object(text)?;
    let event = event_name(raw.event)?;
    let stream_sid = || req_string(raw.stream_sid, "streamSid");
    match &*event {
        "media" => {
            let stream_sid = stream_sid()?;
            let media = req_obj(raw.media, "media")?;
            let payload =
                decode_base64(&req_str(media.payload, "media.payload")?, "media.payload")?;
            Ok(OutboundFrame::Media {
                stream_sid,
                payload,
            })
        }
        "mark" => {
            let stream_sid = stream_sid()?;
            let mark = req_obj(raw.mark, "mark")?;
            Ok(OutboundFrame::Mark {
                stream_sid,
                name: req_string(mark.name, "mark.name")?,
            })
        }
        "clear" => Ok(OutboundFrame::Clear {
            stream_sid: stream_sid()?,
        }),
        other => Err(unknown_event(other)),
    }
}

impl OutboundFrame {
    pub fn to_json(&self) -> String {
        let mut buf = String::new();
        self.write_json(&mut buf);
        buf
    }

    /// Appends the frame's JSON to `buf` with the same writers the server uses.
    pub fn write_json(&self, buf: &mut String) {
        match self {
            Self::Media {
                stream_sid,
                payload,
            } => write_media(buf, stream_sid, payload),
            Self::Mark { stream_sid, name } => write_mark(buf, stream_sid, name),
            Self::Clear { stream_sid } => write_clear(buf, stream_sid),
        }
    }
}

#[cfg(test)]
mod tests;
