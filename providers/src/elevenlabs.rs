//! Text to speech through ElevenLabs' streaming endpoint, asked directly for what the phone leg
//! plays: `POST {base_url}/v1/text-to-speech/{voice_id}/stream?output_format=ulaw_8000`, whose
//! body is raw G.711 mu-law at 8 kHz (no container, no resampling on our side).
//!
//! Owns the request, its deadline and error reporting. The audio arrives in chunks; they are
//! collected into one clip, because the port hands the speaker a whole sentence.
//! Never here: playback, framing into 20 ms frames, or caching.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use switchboard_actors::ports::{PortError, SpeechSynth};

use crate::chat::truncate_chars;
use crate::http::{build_client, error_body, redacted, shown_url, transport_error};

/// The output format the phone leg needs.
pub const OUTPUT_FORMAT: &str = "ulaw_8000";

#[derive(Clone)]
pub struct ElevenLabsConfig {
    /// E.g. `https://api.elevenlabs.io` (a trailing `/v1` is accepted).
    pub base_url: String,
    /// Sent as `xi-api-key`; `None` sends no key (stand-ins).
    pub api_key: Option<String>,
    /// The voice, e.g. `21m00Tcm4TlvDq8ikWAM`.
    pub voice_id: String,
    /// E.g. `eleven_flash_v2_5` (lowest latency), `eleven_multilingual_v2`.
    pub model_id: String,
    /// The whole synthesis: request and the complete audio download.
    pub timeout: Duration,
}

impl Default for ElevenLabsConfig {
    fn default() -> Self {
        ElevenLabsConfig {
            base_url: "https://api.elevenlabs.io".into(),
            api_key: None,
            voice_id: "21m00Tcm4TlvDq8ikWAM".into(),
            model_id: "eleven_flash_v2_5".into(),
            timeout: Duration::from_secs(10),
        }
    }
}

impl fmt::Debug for ElevenLabsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElevenLabsConfig")
            .field("base_url", &shown_url(&self.base_url))
            .field("api_key", &format_args!("{}", redacted(&self.api_key)))
            .field("voice_id", &self.voice_id)
            .field("model_id", &self.model_id)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl ElevenLabsConfig {
    /// `{base}/v1/text-to-speech/{voice_id}/stream?output_format=ulaw_8000`, with the voice id
    /// escaped as one path segment.
    pub fn stream_url(&self) -> Result<reqwest::Url, PortError> {
        let base = self.base_url.trim().trim_end_matches('/');
        let mut url = reqwest::Url::parse(base).map_err(|e| {
            PortError::rejected(format!(
                "ElevenLabs base_url {:?} is not a URL: {e}",
                shown_url(base)
            ))
        })?;
        let has_v1 = url.path().trim_end_matches('/').ends_with("/v1");
        {
            let mut segments = url.path_segments_mut().map_err(|_| {
                PortError::rejected(format!(
                    "ElevenLabs base_url {:?} cannot take a path",
                    shown_url(base)
                ))
            })?;
            segments.pop_if_empty();
            if !has_v1 {
                segments.push("v1");
            }
            segments.extend(["text-to-speech", self.voice_id.as_str(), "stream"]);
        }
        url.query_pairs_mut()
            .append_pair("output_format", OUTPUT_FORMAT);
        Ok(url)
    }
}

/// The `SpeechSynth` adapter for ElevenLabs. Cheap to clone; clones share the connection pool.
#[derive(Clone)]
pub struct ElevenLabsSpeech {
    client: reqwest::Client,
    config: ElevenLabsConfig,
    /// `None` when the base URL is unusable: every synthesis then says so.
    url: Result<reqwest::Url, PortError>,
    shown_url: String,
}

impl fmt::Debug for ElevenLabsSpeech {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElevenLabsSpeech")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ElevenLabsSpeech {
    pub fn new(config: ElevenLabsConfig) -> Result<Self, PortError> {
        let speech = Self::with_client(config, build_client()?);
        speech.url.clone()?;
        Ok(speech)
    }

    /// Shares `client`'s connection pool (e.g. with [`crate::openai::OpenAiChat`]).
    pub fn with_client(config: ElevenLabsConfig, client: reqwest::Client) -> Self {
        let url = config.stream_url();
        let shown_url = match &url {
            Ok(url) => shown_url(url.as_str()),
            Err(_) => shown_url(&config.base_url),
        };
        ElevenLabsSpeech {
            client,
            config,
            url,
            shown_url,
        }
    }

    async fn fetch(&self, text: &str) -> Result<Vec<u8>, PortError> {
        let url = self.url.clone()?;
        let body = json!({"text": text, "model_id": self.config.model_id});
        let mut request = self
            .client
            .post(url)
            .header(reqwest::header::ACCEPT, "audio/basic")
            .json(&body);
        if let Some(key) = &self.config.api_key {
            request = request.header("xi-api-key", key);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| transport_error("ElevenLabs TTS", &self.shown_url, e))?;
        if !response.status().is_success() {
            return Err(status_error(&self.shown_url, response).await);
        }
        let mut audio = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => audio.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => {
                    return Err(PortError::unavailable(format!(
                        "ElevenLabs TTS audio from {} broke off after {} bytes: {e}",
                        self.shown_url,
                        audio.len()
                    )));
                }
            }
        }
        if audio.is_empty() && !text.trim().is_empty() {
            return Err(PortError::unavailable(format!(
                "ElevenLabs TTS at {} returned no audio",
                self.shown_url
            )));
        }
        Ok(audio)
    }
}

#[async_trait]
impl SpeechSynth for ElevenLabsSpeech {
    async fn synthesize(&self, text: &str) -> Result<Vec<u8>, PortError> {
        // tokio's clock, so paused-time tests see the deadline too.
        tokio::time::timeout(self.config.timeout, self.fetch(text))
            .await
            .map_err(|_| {
                PortError::timeout(format!(
                    "ElevenLabs TTS at {} did not deliver audio within {} ms",
                    self.shown_url,
                    self.config.timeout.as_millis()
                ))
            })?
    }
}

/// A non-success status as a `PortError` naming the status and ElevenLabs' own explanation
/// (`detail.message`, or a validation error's `msg`). 429 and 5xx are outages.
async fn status_error(shown_url: &str, response: reqwest::Response) -> PortError {
    let status = response.status();
    let excerpt = error_text(&error_body(response).await);
    let message = format!("ElevenLabs TTS at {shown_url} returned HTTP {status}: {excerpt}");
    match status.as_u16() {
        429 | 500..=599 => PortError::unavailable(message),
        401 | 403 => PortError::rejected(format!("{message} (check the API key)")),
        _ => PortError::rejected(format!("{message} (check the voice_id and model_id)")),
    }
}

/// The explanation in an ElevenLabs error body, else the start of the body. Pure.
pub fn error_text(body: &str) -> String {
    let mut text = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|value| detail_message(&value))
        .unwrap_or_else(|| body.split_whitespace().collect::<Vec<_>>().join(" "));
    if text.is_empty() {
        text = "(empty body)".to_owned();
    }
    truncate_chars(&mut text, 200);
    text
}

fn detail_message(value: &Value) -> Option<String> {
    let detail = value.get("detail")?;
    match detail {
        Value::String(text) => Some(text.clone()),
        Value::Object(_) => {
            let message = detail.get("message").and_then(Value::as_str);
            let status = detail.get("status").and_then(Value::as_str);
            match (status, message) {
                (Some(status), Some(message)) => Some(format!("{status}: {message}")),
                (None, Some(message)) => Some(message.to_owned()),
                (Some(status), None) => Some(status.to_owned()),
                (None, None) => None,
            }
        }
        // FastAPI validation errors: [{"loc": [...], "msg": "...", "type": "..."}]
        Value::Array(items) => {
            let messages: Vec<&str> = items
                .iter()
                .filter_map(|item| item.get("msg").and_then(Value::as_str))
                .collect();
            (!messages.is_empty()).then(|| messages.join("; "))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_url_has_the_voice_and_format() {
        let config = ElevenLabsConfig {
            voice_id: "abc DEF".into(),
            ..ElevenLabsConfig::default()
        };
        assert_eq!(
            config.stream_url().unwrap().as_str(),
            "https://api.elevenlabs.io/v1/text-to-speech/abc%20DEF/stream?output_format=ulaw_8000"
        );
        let local = ElevenLabsConfig {
            base_url: "http://127.0.0.1:9/v1/".into(),
            voice_id: "v".into(),
            ..ElevenLabsConfig::default()
        };
        assert_eq!(
            local.stream_url().unwrap().as_str(),
            "http://127.0.0.1:9/v1/text-to-speech/v/stream?output_format=ulaw_8000"
        );
        let bad = ElevenLabsConfig {
            base_url: "not a url".into(),
            ..ElevenLabsConfig::default()
        };
        assert!(bad.stream_url().is_err());
        assert!(ElevenLabsSpeech::new(bad).is_err());
    }

    #[test]
    fn error_bodies_are_explained() {
        assert_eq!(
            error_text(r#"{"detail":{"status":"invalid_api_key","message":"Invalid API key"}}"#),
            "invalid_api_key: Invalid API key"
        );
        assert_eq!(
            error_text(
                r#"{"detail":[{"loc":["body","text"],"msg":"field required","type":"value_error.missing"}]}"#
            ),
            "field required"
        );
        assert_eq!(error_text(r#"{"detail":"Not Found"}"#), "Not Found");
        assert_eq!(
            error_text("<html>\n  Bad   gateway </html>"),
            "<html> Bad gateway </html>"
        );
        assert_eq!(error_text(""), "(empty body)");
        assert_eq!(error_text(&"x".repeat(500)).chars().count(), 201); // 200 + ellipsis
    }

    #[test]
    fn debug_never_shows_the_key() {
        let config = ElevenLabsConfig {
            api_key: Some("xi-secret-123".into()),
            ..ElevenLabsConfig::default()
        };
        assert!(!format!("{config:?}").contains("xi-secret"));
        let speech = ElevenLabsSpeech::new(config).expect("client");
        assert!(!format!("{speech:?}").contains("xi-secret"));
    }
}
