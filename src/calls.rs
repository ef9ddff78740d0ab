//! Assembles the call runtime from the configuration: the SQL adapters (over a database cell
//! that is filled once the database is connected), the LLM and TTS clients — pointed at the
//! local stand-ins when no provider URL is configured — and the greeting audio, rendered once at
//! start (from `twilio.greeting_wav`, or synthesized from `twilio.welcome_greeting`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use switchboard_actors::machine::MachineConfig;
use switchboard_actors::phone::{self, Region};
use switchboard_actors::ports::{SpeechRecognizer, SpeechSynth, SystemClock};
use switchboard_actors::{GreetingSource, Ports, Runtime, RuntimeConfig};
use switchboard_providers::deepgram::{DeepgramConfig, DeepgramStt};
use switchboard_providers::elevenlabs::{ElevenLabsConfig, ElevenLabsSpeech};
use switchboard_providers::openai::{OpenAiChat, OpenAiChatConfig};
use switchboard_providers::speech::{OpenAiSpeech, OpenAiSpeechConfig};
use switchboard_providers::standins::{StandinConfig, Standins, spawn_standins};

use crate::config::{Config, TtsProvider, TwilioMode};
use crate::redis_cache::RedisContextCache;
use crate::store::{DbCell, SqlStore};
use switchboard_actors::cache::SharedContextCache;

/// The running call runtime and what it was built from.
pub struct CallService {
    pub runtime: Runtime,
    /// Where the call actors, the shared actors and the socket writers run.
    pub threads: CallThreads,
    pub db: DbCell,
    pub region: Region,
    /// The local provider stand-ins, when no provider URL is configured.
    pub standins: Option<Standins>,
    /// Speech to text for Media Streams calls (one session per call, opened by the edge).
    pub stt: Arc<dyn SpeechRecognizer>,
}

#[derive(Debug, thiserror::Error)]
pub enum CallServiceError {
    #[error("twilio.greeting_wav {path}: {reason}")]
    Greeting { path: String, reason: String },
    #[error("cannot start the local provider stand-ins: {0}")]
    Standins(std::io::Error),
    #[error("cannot build the provider clients: {0}")]
    Providers(String),
    #[error("{0}")]
    Runtime(String),
    #[error("cannot start the calls' threads: {0}")]
    Threads(std::io::Error),
}

/// The live calls' own tokio runtime (`server.call_threads` workers), or the server's when that
/// is 0.
///
/// The server's workers read every caller's audio: 50 frames a second per call, and at a
/// thousand calls that queue is long whenever the machine is busy. A reply's path — the final
/// transcript reaching the call actor, the LLM and TTS streams, the socket writer — is a few
/// messages per turn; on threads of its own it does not wait behind those reads, and a thread
/// that is mostly idle is scheduled promptly when it wakes.
pub struct CallThreads {
    /// Owned only when the calls have threads of their own; shut down (without waiting) on drop.
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
}

impl CallThreads {
    /// `threads` workers named `switchboard-calls`; 0 = the current runtime. Must be called
    /// inside a tokio runtime.
    pub fn new(threads: usize) -> std::io::Result<Self> {
        if threads == 0 {
            return Ok(Self {
                runtime: None,
                handle: tokio::runtime::Handle::current(),
            });
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("switchboard-calls")
            .enable_all()
            .build()?;
        Ok(Self {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    /// Run `task` on the calls' runtime.
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(task)
    }

    /// The calls' runtime, for clients that start their own tasks there.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// Run `task` on the calls' runtime and wait for its output (start-up work whose
    /// connections and tasks must live there).
    async fn run<F>(&self, task: F) -> Result<F::Output, CallServiceError>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.spawn(task)
            .await
            .map_err(|e| CallServiceError::Runtime(e.to_string()))
    }
}

impl Drop for CallThreads {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Dropping a runtime blocks, which is not allowed inside another one.
            runtime.shutdown_background();
        }
    }
}

/// The runtime limits and agent lines that follow from the configuration.
pub fn runtime_config(config: &Config) -> RuntimeConfig {
    let prefetch = &config.prefetch;
    // `prefetch.parallel = false` is the old blocking behaviour: the greeting waits for the
    // context, bounded by the prefetch deadline.
    let greeting = &config.greeting;
    let (greeting_wait_ms, relay_greeting_wait_ms) = if prefetch.parallel {
        (
            greeting.personalize_within_ms,
            greeting.relay_personalize_within_ms,
        )
    } else {
        (prefetch.timeout_ms, prefetch.timeout_ms)
    };
    let conversation = &config.conversation;
    let machine = MachineConfig {
        greeting: config.twilio.welcome_greeting.trim().to_owned(),
        greeting_wait_ms,
        relay_greeting_wait_ms,
        context_deadline_ms: prefetch.timeout_ms + 500,
        llm_deadline_ms: config.llm.timeout_ms + 1_000,
        filler: conversation.filler.trim().to_owned(),
        filler_after_ms: conversation.filler_after_ms,
        max_fillers: conversation.max_fillers,
        max_tool_rounds: conversation.max_tool_rounds,
        max_prompt_tokens: conversation.max_prompt_tokens,
        offer_tools: conversation.tools,
        silence_timeout_ms: conversation.silence_timeout_ms,
        ..MachineConfig::default()
    };
    RuntimeConfig {
        machine,
        prefetch_timeout: prefetch.timeout(),
        max_restarts: config.supervisor.max_restarts as usize,
        restart_window: config.supervisor.restart_window(),
        batch_max: config.persistence.batch_max,
        flush_interval: config.persistence.flush_interval(),
        cache_ttl: config.cache.ttl(),
        cache_max_entries: config.cache.max_entries,
        max_buffered_rows: config.persistence.max_buffered_rows,
        summary_deadline: Duration::from_millis(config.persistence.summary_timeout_ms),
        tool_deadline: Duration::from_millis(conversation.tool_timeout_ms),
        ..RuntimeConfig::default()
    }
}

pub async fn start(config: &Config) -> Result<CallService, CallServiceError> {
    // The first phone parse loads libphonenumber's metadata (~100 ms): not during a call.
    phone::warm_up();
    let region = phone::parse_region(&config.twilio.default_region).unwrap_or(Region::US);
    let db = DbCell::default();
    let store = Arc::new(SqlStore::new(db.clone()));
    let llm_base = config.llm.base_url.trim().trim_end_matches('/').to_owned();
    let tts_base = match config.tts.base_url.trim().trim_end_matches('/') {
        "" => llm_base.clone(),
        url => url.to_owned(),
    };
    let stt_base = config.stt.base_url.trim().trim_end_matches('/').to_owned();
    let elevenlabs = config.tts.provider == TtsProvider::Elevenlabs;
    let needs_standins = llm_base.is_empty() || tts_base.is_empty() || stt_base.is_empty();
    let standins = if needs_standins {
        let s = spawn_standins(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            StandinConfig::default(),
        )
        .await
        .map_err(CallServiceError::Standins)?;
        tracing::info!(base_url = %s.base_url(), "no provider URL configured: using the local stand-ins");
        Some(s)
    } else {
        None
    };
    let standin_url = standins
        .as_ref()
        .map(Standins::base_url)
        .unwrap_or_default();
    let or_standin = |url: &str| {
        if url.is_empty() {
            standin_url.clone()
        } else {
            url.to_owned()
        }
    };
    let api_key = Some(config.llm.api_key.expose().to_owned()).filter(|k| !k.is_empty());
    // reqwest is built without a bundled TLS provider; the binary installs ring's, and so does
    // this for embedders (a no-op when one is installed).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .build()
        .map_err(|e| CallServiceError::Providers(e.to_string()))?;
    let llm = OpenAiChat::with_client(
        OpenAiChatConfig {
            base_url: or_standin(&llm_base),
            api_key: api_key.clone(),
            model: config.llm.model.clone(),
            first_token_timeout: Duration::from_millis(config.llm.first_token_timeout_ms),
            overall_timeout: Duration::from_millis(config.llm.timeout_ms),
            max_tokens: Some(300),
            temperature: None,
        },
        http.clone(),
    );
    let tts_key = Some(config.tts.api_key.expose().to_owned()).filter(|k| !k.is_empty());
    let speech: Arc<dyn SpeechSynth> = if elevenlabs {
        let base = config.tts.base_url.trim().trim_end_matches('/');
        Arc::new(ElevenLabsSpeech::with_client(
            ElevenLabsConfig {
                base_url: or_standin(base),
                api_key: tts_key,
                voice_id: config.tts.voice.clone(),
                model_id: config.tts.model.clone(),
                timeout: Duration::from_millis(config.tts.timeout_ms),
            },
            http.clone(),
        ))
    } else {
        Arc::new(OpenAiSpeech::with_client(
            OpenAiSpeechConfig {
                base_url: or_standin(&tts_base),
                api_key: tts_key.or(api_key),
                model: config.tts.model.clone(),
                voice: config.tts.voice.clone(),
                timeout: Duration::from_millis(config.tts.timeout_ms),
            },
            http.clone(),
        ))
    };
    let threads =
        CallThreads::new(config.server.call_threads).map_err(CallServiceError::Threads)?;
    let stt_config = DeepgramConfig {
        base_url: or_standin(&stt_base),
        api_key: Some(config.stt.api_key.expose().to_owned()).filter(|k| !k.is_empty()),
        model: config.stt.model.clone(),
        language: Some(config.stt.language.clone()).filter(|l| !l.trim().is_empty()),
        endpointing_ms: config.stt.endpointing_ms as u32,
        utterance_end_ms: config.stt.utterance_end_ms as u32,
        ..DeepgramConfig::default()
    };
    // Each session sends audio from the media reader's runtime, where it is opened, and reads
    // the transcripts on the calls' runtime: a turn's transcript does not wait behind the
    // caller frames the server's workers read.
    let stt = Arc::new(DeepgramStt::reading_results_on(
        stt_config,
        threads.handle().clone(),
    ));
    // Rendered from the calls' runtime: a provider connection opened now (an HTTP/2 one is
    // shared by every later request to that host) is then driven there too.
    let (greeting_audio, fallback_audio) = {
        let (config, speech) = (config.clone(), speech.clone());
        threads
            .run(async move {
                (
                    greeting_audio(&config, speech.as_ref()).await,
                    fallback_audio(&config, speech.as_ref()).await,
                )
            })
            .await?
    };
    let greeting_audio = greeting_audio?;
    let relay = config.twilio.mode == TwilioMode::Relay;
    let ports = Ports {
        crm: store.clone(),
        conversations: store.clone(),
        names: store.clone(),
        tasks: store,
        llm: Arc::new(llm),
        speech,
        greeting: GreetingSource {
            audio: greeting_audio,
            relay_spoken_by_twilio: relay && !config.twilio.welcome_greeting.trim().is_empty(),
            fallback_audio,
        },
        clock: Arc::new(SystemClock),
        journal: Some(Arc::new(crate::journal::FileJournal::new(
            &config.persistence.journal_path,
        ))),
    };
    let runtime_config = runtime_config(config);
    let shared_cache = shared_context_cache(config, runtime_config.shared_cache_timeout);
    // Spawned from the calls' runtime, the actors and every task they start run there.
    let runtime = threads
        .run(Runtime::start_with_shared_cache(
            runtime_config,
            ports,
            shared_cache,
        ))
        .await?
        .map_err(|e| CallServiceError::Runtime(e.to_string()))?;
    Ok(CallService {
        runtime,
        threads,
        db,
        region,
        standins,
        stt,
    })
}

/// The TTS fallback line, rendered now so it can play when synthesis fails mid-call.
async fn fallback_audio(config: &Config, speech: &dyn SpeechSynth) -> Option<Arc<[u8]>> {
    let line = config.tts.fallback_line.trim();
    if line.is_empty() || config.twilio.mode == TwilioMode::Relay {
        return None;
    }
    match speech.synthesize(line).await {
        Ok(audio) if !audio.is_empty() => Some(Arc::from(audio)),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "TTS fallback line not pre-rendered; a failed line is skipped");
            None
        }
    }
}

/// The Redis tier of the context cache when `cache.redis_url` is set. A URL the client refuses
/// (e.g. `rediss://`: this build has no TLS for Redis) turns the tier off with an error in the
/// log; the server still starts, on the memory tier and the database.
fn shared_context_cache(config: &Config, timeout: Duration) -> Option<Arc<dyn SharedContextCache>> {
    let url = config.cache.redis_url.trim();
    if url.is_empty() {
        return None;
    }
    match RedisContextCache::new(url, timeout) {
        Ok(cache) => {
            tracing::info!("shared context cache on Redis");
            Some(Arc::new(cache))
        }
        Err(error) => {
            tracing::error!(%error, "shared context cache disabled");
            None
        }
    }
}

/// The generic greeting as mu-law 8 kHz audio, ready before the first call: a recorded WAV, or
/// one synthesis of the greeting text. A broken WAV stops start-up; a failed synthesis only
/// means each call synthesizes its greeting itself.
async fn greeting_audio(
    config: &Config,
    speech: &dyn SpeechSynth,
) -> Result<Option<Arc<[u8]>>, CallServiceError> {
    let path = &config.twilio.greeting_wav;
    if !path.as_os_str().is_empty() {
        let err = |reason: String| CallServiceError::Greeting {
            path: path.display().to_string(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let audio =
            switchboard_twilio::audio::wav_to_mulaw_8k(&bytes).map_err(|e| err(e.to_string()))?;
        return Ok(Some(Arc::from(audio)));
    }
    if config.twilio.mode == TwilioMode::Relay {
        return Ok(None);
    }
    match speech
        .synthesize(config.twilio.welcome_greeting.trim())
        .await
    {
        Ok(audio) if !audio.is_empty() => Ok(Some(Arc::from(audio))),
        Ok(_) => Ok(None),
        Err(e) => {
            tracing::warn!(error = %e, "greeting not pre-rendered; each call will synthesize it");
            Ok(None)
        }
    }
}
