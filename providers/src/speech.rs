//! Text to speech through an OpenAI-compatible `/audio/speech` endpoint, delivered as what the
//! phone leg plays: G.711 mu-law, 8 kHz mono (PROTOCOLS.md §5, §6).
//!
//! Owns the request, its deadline, and the audio conversion: raw 16-bit little-endian 24 kHz PCM
//! → band-limited resampling to 8 kHz (rubato's FFT resampler, whose anti-aliasing filter keeps
//! everything above 4 kHz out of the telephone band) → mu-law via `switchboard_twilio::audio`.
//! Never here: playback, framing into 20 ms frames, or caching.

use std::cell::RefCell;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};
use serde_json::json;
use switchboard_actors::ports::{PortError, SpeechSynth};
use switchboard_twilio::audio::encode_mulaw;

use crate::http::{build_client, join_url, redacted, shown_url, status_error, transport_error};

/// Sample rate of `response_format: "pcm"` on OpenAI-compatible speech endpoints.
pub const VENDOR_PCM_RATE: usize = 24_000;
/// The telephone rate.
pub const PHONE_RATE: usize = 8_000;

#[derive(Clone)]
pub struct OpenAiSpeechConfig {
    /// E.g. `https://api.openai.com/v1`; `/audio/speech` is added.
    pub base_url: String,
    pub api_key: Option<String>,
    /// E.g. `gpt-4o-mini-tts`, `tts-1`.
    pub model: String,
    /// E.g. `alloy`.
    pub voice: String,
    /// The whole synthesis: request, audio download and conversion.
    pub timeout: Duration,
}

impl fmt::Debug for OpenAiSpeechConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiSpeechConfig")
            .field("base_url", &shown_url(&self.base_url))
            .field("api_key", &format_args!("{}", redacted(&self.api_key)))
            .field("model", &self.model)
            .field("voice", &self.voice)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The `SpeechSynth` adapter. Cheap to clone; clones share the connection pool.
#[derive(Clone)]
pub struct OpenAiSpeech {
    client: reqwest::Client,
    config: OpenAiSpeechConfig,
    url: String,
    /// `url` without credentials or query, for messages and logs.
    shown_url: String,
}

impl fmt::Debug for OpenAiSpeech {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiSpeech")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl OpenAiSpeech {
    pub fn new(config: OpenAiSpeechConfig) -> Result<Self, PortError> {
        Ok(Self::with_client(config, build_client()?))
    }

    /// Shares `client`'s connection pool (e.g. with [`crate::openai::OpenAiChat`]).
    pub fn with_client(config: OpenAiSpeechConfig, client: reqwest::Client) -> Self {
        let url = join_url(&config.base_url, "audio/speech");
        let shown_url = shown_url(&url);
        OpenAiSpeech {
            client,
            config,
            url,
            shown_url,
        }
    }

    /// The raw 24 kHz PCM bytes for `text`.
    async fn fetch_pcm(&self, text: &str) -> Result<bytes::Bytes, PortError> {
        let body = json!({
            "model": self.config.model,
            "input": text,
            "voice": self.config.voice,
            "response_format": "pcm",
        });
        let mut request = self.client.post(&self.url).json(&body);
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key);
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport_error("TTS", &self.shown_url, e))?;
        if !response.status().is_success() {
            return Err(status_error("TTS", response).await);
        }
        response.bytes().await.map_err(|e| {
            PortError::unavailable(format!("TTS audio from {} broke off: {e}", self.shown_url))
        })
    }
}

#[async_trait]
impl SpeechSynth for OpenAiSpeech {
    async fn synthesize(&self, text: &str) -> Result<Vec<u8>, PortError> {
        // tokio's clock, so paused-time tests see the deadline too.
        let pcm = tokio::time::timeout(self.config.timeout, self.fetch_pcm(text))
            .await
            .map_err(|_| {
                PortError::timeout(format!(
                    "TTS at {} did not deliver audio within {} ms",
                    self.shown_url,
                    self.config.timeout.as_millis()
                ))
            })??;
        // Resampling a long sentence is milliseconds of pure CPU: keep it off the async workers
        // that are pacing other calls' audio.
        tokio::task::spawn_blocking(move || pcm24k_to_mulaw8k(&pcm))
            .await
            .map_err(|e| PortError::unavailable(format!("TTS audio conversion failed: {e}")))
    }
}

/// Vendor PCM bytes (16-bit little-endian mono, 24 kHz) to 8 kHz mu-law. A dangling odd byte
/// (a truncated last sample) is dropped.
pub fn pcm24k_to_mulaw8k(pcm: &[u8]) -> Vec<u8> {
    let samples: Vec<i16> = pcm
        .chunks_exact(2)
        .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
        .collect();
    let resampled = resample_24k_to_8k(&samples);
    let mut mulaw = Vec::with_capacity(resampled.len());
    encode_mulaw(&resampled, &mut mulaw);
    mulaw
}

/// Resamples a whole clip from 24 kHz to 8 kHz: `ceil(n / 3)` samples, anti-aliased, with the
/// resampler's start-up delay trimmed and the tail flushed (no lost or padded audio).
pub fn resample_24k_to_8k(samples: &[i16]) -> Vec<i16> {
    if samples.is_empty() {
        return Vec::new();
    }
    match resample_with_rubato(samples) {
        Ok(resampled) => resampled,
        Err(reason) => {
            // Not reachable with these fixed rates and a well-formed buffer; if rubato ever
            // refuses, a call keeps its voice through a crude 3-tap average rather than going
            // silent.
            tracing::error!(%reason, "resampler failed; using a 3-tap average instead");
            samples
                .chunks(3)
                .map(|c| (c.iter().map(|&s| i32::from(s)).sum::<i32>() / c.len() as i32) as i16)
                .collect()
        }
    }
}

fn resample_with_rubato(samples: &[i16]) -> Result<Vec<i16>, String> {
    let input: Vec<f32> = samples.iter().map(|&s| f32::from(s) / 32768.0).collect();
    let adapter = InterleavedSlice::new(&input, 1, input.len()).map_err(|e| e.to_string())?;
    // Building the resampler plans its FFTs and computes its filter: more CPU than resampling a
    // short line. Each thread keeps one (`process_all` resets it before every clip).
    thread_local! {
        static RESAMPLER: RefCell<Option<Fft<f32>>> = const { RefCell::new(None) };
    }
    let output = RESAMPLER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let resampler = match &mut *slot {
            Some(resampler) => resampler,
            empty @ None => empty.insert(new_resampler()?),
        };
        resampler
            .process_all(&adapter, input.len(), None)
            .map_err(|e| e.to_string())
    })?;
    Ok(output.take_data().into_iter().map(to_i16).collect())
}

fn new_resampler() -> Result<Fft<f32>, String> {
    // 768-frame chunks in 4 sub-chunks of 192: FFTs of 384 and 128 points (3 x 2^7, 2^7),
    // which rustfft does with fast radix kernels. rubato's default split of 1024 frames gave
    // 516- and 172-point FFTs (factor 43, Rader's algorithm) at ~1.8x the CPU per clip.
    Fft::<f32>::new_custom(
        VENDOR_PCM_RATE,
        PHONE_RATE,
        768,
        4,
        1,
        rubato::WindowFunction::BlackmanHarris2,
        FixedSync::Input,
    )
    .map_err(|e| e.to_string())
}

/// A resampled value (±1.0 full scale) as a 16-bit sample, rounded half away from zero. `as`
/// saturates out-of-range values; adding ±0.5 and truncating avoids a libm `roundf` call per
/// sample.
#[inline]
fn to_i16(s: f32) -> i16 {
    let x = s * 32768.0;
    (x + 0.5f32.copysign(x)) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq_hz: f32, samples: usize, amplitude: f32) -> Vec<i16> {
        (0..samples)
            .map(|n| {
                let t = n as f32 / VENDOR_PCM_RATE as f32;
                (amplitude * (2.0 * std::f32::consts::PI * freq_hz * t).sin()) as i16
            })
            .collect()
    }

    fn rms(samples: &[i16]) -> f64 {
        let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
        (sum / samples.len().max(1) as f64).sqrt()
    }

    #[test]
    fn length_is_a_third() {
        for n in [1, 2, 3, 100, 1023, 1024, 1025, 24_000, 24_001, 50_000] {
            let out = resample_24k_to_8k(&vec![0i16; n]);
            assert_eq!(out.len(), n.div_ceil(3), "input of {n} samples");
        }
        assert!(resample_24k_to_8k(&[]).is_empty());
    }

    #[test]
    fn one_khz_keeps_its_frequency_and_level() {
        let input = tone(1000.0, 24_000, 10_000.0); // one second
        let out = resample_24k_to_8k(&input);
        assert_eq!(out.len(), 8000);
        // Skip the edges, where the filter rings; count sign changes over the middle 0.8 s.
        let middle = &out[800..7200];
        let crossings = middle
            .windows(2)
            .filter(|w| (w[0] < 0) != (w[1] < 0))
            .count();
        // 1 kHz = 2000 crossings per second; 0.8 s → 1600.
        assert!((1590..=1610).contains(&crossings), "{crossings} crossings");
        let ratio = rms(middle) / rms(&input[2400..21_600]);
        assert!((0.95..1.05).contains(&ratio), "level ratio {ratio}");
    }

    #[test]
    fn five_khz_above_the_new_nyquist_is_removed() {
        let input = tone(5000.0, 24_000, 10_000.0);
        let out = resample_24k_to_8k(&input);
        let ratio = rms(&out[800..7200]) / rms(&input);
        // Without a filter it would alias to 3 kHz at full level; demand at least 40 dB down.
        assert!(ratio < 0.01, "5 kHz kept {ratio} of its level");
    }

    #[test]
    fn a_reused_resampler_carries_nothing_from_one_line_to_the_next() {
        // This thread's resampler is built by the first call and reused by the others.
        let first = tone(1000.0, 7_000, 8000.0);
        let loud = tone(3000.0, 12_345, 30000.0);
        let once = resample_24k_to_8k(&first);
        let _ = resample_24k_to_8k(&loud);
        assert_eq!(resample_24k_to_8k(&first), once);
        // A short line after a long one: no tail of the long one, no padding.
        let short = resample_24k_to_8k(&first[..300]);
        assert_eq!(short.len(), 100);
        assert!(short.iter().all(|s| s.unsigned_abs() < 9000), "{short:?}");
    }

    #[test]
    fn samples_round_to_nearest_and_saturate() {
        assert_eq!(to_i16(0.0), 0);
        assert_eq!(to_i16(1.4 / 32768.0), 1);
        assert_eq!(to_i16(1.6 / 32768.0), 2);
        assert_eq!(to_i16(-1.6 / 32768.0), -2);
        assert_eq!(to_i16(1.5), i16::MAX);
        assert_eq!(to_i16(-1.5), i16::MIN);
    }

    #[test]
    fn odd_byte_count_drops_the_dangling_byte() {
        let mut pcm = Vec::new();
        for s in tone(200.0, 2400, 3000.0) {
            pcm.extend_from_slice(&s.to_le_bytes());
        }
        pcm.push(0x7f);
        let mulaw = pcm24k_to_mulaw8k(&pcm);
        assert_eq!(mulaw.len(), 800);
        assert!(pcm24k_to_mulaw8k(&[0x01]).is_empty());
    }

    #[test]
    fn silence_stays_silence() {
        let mulaw = pcm24k_to_mulaw8k(&[0u8; 4800]);
        assert_eq!(mulaw.len(), 800);
        assert!(mulaw.iter().all(|&b| b == 0xFF || b == 0x7F), "{mulaw:?}");
    }

    #[test]
    fn debug_never_shows_the_key() {
        let config = OpenAiSpeechConfig {
            base_url: "https://api.openai.com/v1".into(),
            api_key: Some("sk-secret-456".into()),
            model: "tts-1".into(),
            voice: "alloy".into(),
            timeout: Duration::from_secs(5),
        };
        assert!(!format!("{config:?}").contains("sk-secret"));
        let speech = OpenAiSpeech::new(config).expect("client");
        assert!(!format!("{speech:?}").contains("sk-secret"));
    }
}
