//! Provider adapters for Switchboard: the HTTP clients that reach LLM and text-to-speech vendors,
//! and local stand-ins that speak the same public protocols.
//!
//! # Layout
//! - [`sse`]: incremental server-sent-events decoder (pure).
//! - [`chat`]: what one streamed chat-completion chunk means; tool-call assembly (pure).
//! - [`openai`]: [`openai::OpenAiChat`], the `LlmClient` for any OpenAI-compatible server.
//! - [`speech`]: [`speech::OpenAiSpeech`], the `SpeechSynth` for `/audio/speech`, and the
//!   24 kHz → 8 kHz resampler.
//! - [`standins`]: a small loopback server speaking OpenAI-compatible chat and speech, for the
//!   demo, end-to-end tests and load tests.
//!
//! **Architecture Invariant:** the production code paths are the same against a vendor and
//! against the stand-ins; the stand-ins are reached over a real socket, never by a shortcut.
//! **Architecture Invariant:** an API key never reaches a log line or a `Debug` output.

#![forbid(unsafe_code)]

pub mod chat;
pub mod openai;
pub mod speech;
pub mod sse;
pub mod standins;

mod http;

/// A pooled HTTP client configured as the adapters want it (installs ring's rustls provider if
/// none is installed yet, so this never panics). Share one between [`openai::OpenAiChat`] and
/// [`speech::OpenAiSpeech`] with their `with_client` constructors.
pub fn http_client() -> Result<reqwest::Client, switchboard_actors::ports::PortError> {
    http::build_client()
}
