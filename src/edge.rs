//! The Twilio edge: the voice webhook (TwiML), the stream-status callback, and the two WebSocket
//! transports (Media Streams and ConversationRelay). Twilio's JSON stays here: frames are parsed
//! by `switchboard_twilio` and become domain events for the call's handle at this boundary. The
//! socket's reader and writer are tasks of their own, not the call actor, so the actor can fail
//! and be replaced while the socket stays open.

pub mod auth;
pub mod media;
pub mod relay;
pub mod socket;
pub mod vad;
pub mod webhook;

use switchboard_actors::{Caller, phone};

/// Count a rejected inbound frame by reason (`switchboard_rejected_frames_total{reason}`).
pub fn reject(transport: &'static str, reason: &'static str) {
    metrics::counter!("switchboard_rejected_frames_total", "transport" => transport, "reason" => reason).increment(1);
}

/// The caller as the runtime sees it: E.164 when the raw caller id is a real number.
pub fn caller(raw: &str, region: phone::Region) -> Caller {
    phone::caller_from_raw(raw, region)
}
