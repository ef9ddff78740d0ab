//! Twilio wire formats for Switchboard: everything about the bytes Twilio sends and expects.
//!
//! **Architecture Invariant: pure.** This crate does no I/O: no sockets, no files, no clocks, no
//! tokio. Every parser takes text or bytes that came from the network and returns a typed value or
//! an error with a stable snake_case `reason()` label for a metrics counter; none of them panics.
//!
//! # Layout
//! - [`media`] — Media Streams WebSocket frames (inbound parse, fast outbound writers, and the
//!   reverse direction for a load generator that plays Twilio).
//! - [`relay`] — ConversationRelay WebSocket messages, both directions.
//! - [`signature`] — `X-Twilio-Signature` computation and validation, signed WebSocket URLs.
//! - [`twiml`] — voice webhook and stream-status forms in, TwiML out.
//! - [`scripted`] — text carried in loud mu-law audio, for simulated callers and the STT stand-in.
//! - [`audio`] — G.711 mu-law, frame energy, and WAV parsing for greeting files.
//! - [`FrameError`] — the rejection type shared by the two WebSocket protocols.
#![forbid(unsafe_code)]

pub mod audio;
mod error;
mod json;
pub mod media;
pub mod relay;
pub mod scripted;
pub mod signature;
pub mod twiml;

pub use error::FrameError;
