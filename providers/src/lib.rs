//! Provider adapters for Switchboard: the HTTP clients that reach LLM and text-to-speech vendors,
//! and local stand-ins that speak the same public protocols.
//!
//! # Layout
//! - [`sse`]: incremental server-sent-events decoder (pure).
//! - [`chat`]: what one streamed chat-completion chunk means; tool-call assembly (pure).
//! - [`openai`]: [`openai::OpenAiChat`], the `LlmClient` for any OpenAI-compatible server.
//! - [`speech`]: [`speech::OpenAiSpeech`], the `SpeechSynth` for `/audio/speech`, and the
//!   24 kHz → 8 kHz resampler.
//! - [`deepgram`]: [`deepgram::DeepgramStt`], the `SpeechRecognizer` for Deepgram's live
//!   `/v1/listen` WebSocket (message parsing and utterance assembly are pure).
//! - [`elevenlabs`]: [`elevenlabs::ElevenLabsSpeech`], the `SpeechSynth` for ElevenLabs'
//!   streaming text to speech (mu-law 8 kHz straight from the vendor).
//! - [`standins`]: a small loopback server speaking OpenAI-compatible chat and speech,
//!   Deepgram-compatible live STT and ElevenLabs-compatible TTS, for the demo, end-to-end tests
//!   and load tests.
//!
//! **Architecture Invariant:** the production code paths are the same against a vendor and
//! against the stand-ins; the stand-ins are reached over a real socket, never by a shortcut.
//! **Architecture Invariant:** an API key never reaches a log line or a `Debug` output.

//! # Wiring
//!
//! ```no_run
//! # async fn wire() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use switchboard_providers::openai::{OpenAiChat, OpenAiChatConfig};
//! use switchboard_providers::speech::{OpenAiSpeech, OpenAiSpeechConfig};
//! use switchboard_providers::standins::{StandinConfig, spawn_standins};
//!
//! // No API key: answer with the local stand-ins over loopback.
//! let standins = spawn_standins("127.0.0.1:0".parse()?, StandinConfig::default()).await?;
//! let http = switchboard_providers::http_client()?;
//! let llm = OpenAiChat::with_client(
//!     OpenAiChatConfig {
//!         base_url: standins.base_url(),
//!         api_key: None,
//!         model: "gpt-4o-mini".into(),
//!         first_token_timeout: Duration::from_millis(1500),
//!         overall_timeout: Duration::from_secs(20),
//!         max_tokens: Some(300),
//!         temperature: None,
//!     },
//!     http.clone(),
//! );
//! let speech = OpenAiSpeech::with_client(
//!     OpenAiSpeechConfig {
//!         base_url: standins.base_url(),
//!         api_key: None,
//!         model: "gpt-4o-mini-tts".into(),
//!         voice: "alloy".into(),
//!         timeout: Duration::from_secs(5),
//!     },
//!     http,
//! );
//! # let _ = (llm, speech);
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

pub mod chat;
pub mod deepgram;
pub mod elevenlabs;
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
