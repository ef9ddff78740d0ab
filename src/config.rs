//! Configuration: owns loading the layered settings (embedded `config/default.toml`, then the
//! `--config` file, then `SWITCHBOARD__SECTION__KEY` environment variables) and validating them.
//! It never opens sockets or the database; a loaded [`Config`] is always valid.
//!
//! Every key must exist in `config/default.toml`: the defaults are the schema. A key that is not
//! there is a typo and an error; a value whose type differs from the default's is an error; values
//! from environment variables are parsed as the type of their default.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The embedded base layer. Compiled in so the binary needs no files next to it.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");
/// Prefix of environment variables that override single keys: `SWITCHBOARD__DATABASE__URL`.
pub const ENV_PREFIX: &str = "SWITCHBOARD__";
/// Environment variable naming the config file when `--config` is not given.
pub const CONFIG_FILE_ENV: &str = "SWITCHBOARD_CONFIG";

/// Keys whose values are never shown, not even in error messages.
const SECRET_KEYS: &[&str] = &[
    "twilio.auth_token",
    "llm.api_key",
    "operator.token",
    "tts.api_key",
    "stt.api_key",
];
/// Keys holding URLs that may carry a password; shown with the password masked.
const URL_KEYS: &[&str] = &[
    "database.url",
    "cache.redis_url",
    "llm.base_url",
    "tts.base_url",
    "stt.base_url",
    "log.otlp_endpoint",
];

/// Inclusive ranges of the numeric keys.
const RANGES: &[(&str, i64, i64)] = &[
    ("server.call_threads", 0, 64),
    ("database.max_connections", 1, 1000),
    ("database.connect_timeout_ms", 100, 600_000),
    ("prefetch.timeout_ms", 1, 60_000),
    ("supervisor.max_restarts", 0, 100),
    ("supervisor.restart_window_s", 1, 86_400),
    ("persistence.batch_max", 1, 10_000),
    ("persistence.flush_ms", 1, 60_000),
    ("persistence.max_buffered_rows", 1, 10_000_000),
    ("persistence.summary_timeout_ms", 100, 60_000),
    ("greeting.personalize_within_ms", 0, 10_000),
    ("greeting.relay_personalize_within_ms", 0, 10_000),
    ("cache.ttl_s", 1, 86_400),
    ("cache.max_entries", 0, 10_000_000),
    ("llm.first_token_timeout_ms", 100, 120_000),
    ("llm.timeout_ms", 1_000, 600_000),
    ("tts.timeout_ms", 100, 120_000),
    ("twilio.media_message_ms", 20, 1_000),
    ("stt.endpointing_ms", 10, 10_000),
    ("stt.utterance_end_ms", 1_000, 10_000),
    ("stt.audio_message_ms", 20, 250),
    ("conversation.filler_after_ms", 0, 60_000),
    ("conversation.max_fillers", 0, 10),
    ("conversation.max_tool_rounds", 0, 10),
    ("conversation.max_prompt_tokens", 0, 1_000_000),
    ("conversation.tool_timeout_ms", 10, 60_000),
    ("conversation.silence_timeout_ms", 0, 600_000),
    ("operator.sse_heartbeat_ms", 10, 600_000),
    ("operator.sse_client_queue", 1, 1_000_000),
];

/// Keys (within `RANGES`) counted in whole 20 ms audio frames: a multiple of 20.
const WHOLE_FRAMES: &[&str] = &["twilio.media_message_ms", "stt.audio_message_ms"];

/// Keys that take one of a fixed set of values.
const CHOICES: &[(&str, &[&str])] = &[
    ("log.format", &["text", "json"]),
    ("twilio.mode", &["media", "relay"]),
    ("tts.provider", &["openai", "elevenlabs"]),
];

// === Config tree ===

/// The whole configuration. Field names mirror the TOML sections and keys one to one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub log: LogConfig,
    pub database: DatabaseConfig,
    pub twilio: TwilioConfig,
    pub llm: LlmConfig,
    pub tts: TtsConfig,
    pub stt: SttConfig,
    pub conversation: ConversationConfig,
    pub operator: OperatorConfig,
    pub chaos: ChaosConfig,
    pub prefetch: PrefetchConfig,
    pub supervisor: SupervisorConfig,
    pub persistence: PersistenceConfig,
    pub greeting: GreetingConfig,
    pub cache: CacheConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Listener address; port 0 picks a free port (tests).
    pub bind: SocketAddr,
    /// Base URL Twilio reaches this server at, without a trailing slash requirement.
    pub public_url: String,
    /// Worker threads of the calls' own runtime; 0 = the calls share the server's runtime.
    pub call_threads: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A level or a tracing filter; `RUST_LOG` overrides it.
    pub level: String,
    /// OTLP/HTTP collector base URL (`http://host:4318`); spans go to `{url}/v1/traces`. Empty = off.
    pub otlp_endpoint: String,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` or `postgres://...`; may carry a password, so Debug masks it.
    pub url: String,
    pub max_connections: u32,
    pub connect_timeout_ms: u64,
}

impl DatabaseConfig {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TwilioMode {
    /// `<Connect><Stream>`: Media Streams, raw audio both ways.
    Media,
    /// `<ConversationRelay>`: Twilio does speech-to-text and text-to-speech.
    Relay,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {
    pub auth_token: Secret,
    pub validate_signatures: bool,
    pub mode: TwilioMode,
    /// Empty path = no recorded greeting.
    pub greeting_wav: PathBuf,
    pub welcome_greeting: String,
    pub relay_language: String,
    pub relay_voice: String,
    /// Two-letter region for caller ids without a country code.
    pub default_region: String,
    /// Most agent audio in one outbound `media` message, in ms (a multiple of 20).
    pub media_message_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    /// Empty = the built-in local stand-in.
    pub base_url: String,
    pub api_key: Secret,
    pub model: String,
    pub first_token_timeout_ms: u64,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TtsConfig {
    pub provider: TtsProvider,
    /// Empty = same as `llm.base_url` (openai) or the stand-in (elevenlabs).
    pub base_url: String,
    /// Empty = `llm.api_key` (openai).
    pub api_key: Secret,
    /// Played when synthesizing a line fails (rendered once at start).
    pub fallback_line: String,
    pub model: String,
    pub voice: String,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TtsProvider {
    /// OpenAI-compatible `/audio/speech` (PCM 24 kHz, resampled to 8 kHz mu-law).
    Openai,
    /// ElevenLabs-style streaming `/v1/text-to-speech/{voice}/stream` with `ulaw_8000` output.
    Elevenlabs,
}

/// Speech to text for Media Streams calls (Deepgram's live API).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SttConfig {
    /// Empty = the built-in local stand-in.
    pub base_url: String,
    pub api_key: Secret,
    pub model: String,
    pub language: String,
    pub endpointing_ms: u64,
    pub utterance_end_ms: u64,
    /// Most caller audio in one message to the recognizer, in ms (a multiple of 20).
    pub audio_message_ms: u64,
}

/// How the agent converses: tools, the context window, fillers, silence.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversationConfig {
    pub tools: bool,
    pub tool_timeout_ms: u64,
    pub max_tool_rounds: u32,
    pub max_prompt_tokens: usize,
    pub filler: String,
    pub filler_after_ms: u64,
    pub max_fillers: u32,
    pub silence_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    /// Unset = operator API open.
    pub token: Secret,
    /// The token also guards `/metrics` (false: scrapers need no token).
    pub protect_metrics: bool,
    /// The token also guards the dashboard page at `/` (its data routes are under `/api/v1/*`).
    pub protect_dashboard: bool,
    /// Interval of `event: heartbeat` on `/api/v1/calls/events`.
    pub sse_heartbeat_ms: u64,
    /// Events queued for one SSE client; a client that falls this far behind is dropped.
    pub sse_client_queue: usize,
}

impl OperatorConfig {
    pub fn sse_heartbeat(&self) -> Duration {
        Duration::from_millis(self.sse_heartbeat_ms)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChaosConfig {
    pub enabled: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefetchConfig {
    pub parallel: bool,
    pub timeout_ms: u64,
}

impl PrefetchConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisorConfig {
    pub max_restarts: u32,
    pub restart_window_s: u64,
}

impl SupervisorConfig {
    pub fn restart_window(&self) -> Duration {
        Duration::from_secs(self.restart_window_s)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersistenceConfig {
    pub batch_max: usize,
    pub flush_ms: u64,
    pub journal_path: PathBuf,
    pub max_buffered_rows: usize,
    pub summary_timeout_ms: u64,
}

impl PersistenceConfig {
    pub fn flush_interval(&self) -> Duration {
        Duration::from_millis(self.flush_ms)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GreetingConfig {
    /// Media Streams: how long the greeting audio may wait for the caller's context.
    pub personalize_within_ms: u64,
    /// ConversationRelay: the same, while Twilio speaks its own welcome greeting.
    pub relay_personalize_within_ms: u64,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    pub ttl_s: u64,
    /// 0 disables the in-memory cache.
    pub max_entries: usize,
    /// Empty = no shared cache; may carry a password, so Debug masks it.
    pub redis_url: String,
}

impl CacheConfig {
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl_s)
    }
}

impl fmt::Debug for CacheConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheConfig")
            .field("ttl_s", &self.ttl_s)
            .field("max_entries", &self.max_entries)
            .field("redis_url", &redact_url(&self.redis_url))
            .finish()
    }
}

// === Secret ===

/// A credential. `Debug` and `Display` print `***` (or `<unset>` when empty), so a secret cannot
/// reach a log line by accident; call [`Secret::expose`] at the one place that needs the value.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The raw value. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when a non-empty value is configured.
    pub fn is_set(&self) -> bool {
        !self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_set() { "***" } else { "<unset>" })
    }
}

/// Masks the password of a `scheme://user:password@host/...` URL; other strings pass unchanged.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &userinfo[..colon],
            &rest[at..]
        ),
        None => url.to_owned(),
    }
}

// === Errors ===

/// Where a value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File(PathBuf),
    Env(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("in the built-in config/default.toml"),
            Origin::File(path) => write!(f, "in {}", path.display()),
            Origin::Env(var) => write!(f, "from environment variable {var}"),
        }
    }
}

/// A configuration problem. Each message is one line naming the key, the value and what is
/// allowed, so an operator can fix it without reading code.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message} at line {line}, column {column}")]
    Syntax {
        path: PathBuf,
        message: String,
        line: usize,
        column: usize,
    },
    #[error("unknown configuration key {key} {origin} (known keys{scope}: {known})")]
    UnknownKey {
        key: String,
        origin: Origin,
        scope: String,
        known: String,
    },
    #[error(
        "environment variable {var} must name a section and a key, like SWITCHBOARD__DATABASE__URL"
    )]
    EnvShape { var: String },
    #[error("environment variable {var} is not valid UTF-8")]
    EnvNotUnicode { var: String },
    #[error("{key} must be {expected}, got {got} ({origin})")]
    WrongType {
        key: String,
        expected: &'static str,
        got: String,
        origin: Origin,
    },
    #[error("{key} must be {rule}, got {got} ({origin})")]
    Invalid {
        key: String,
        rule: String,
        got: String,
        origin: Origin,
    },
    #[error("configuration value {key} is invalid: {message}")]
    Deserialize { key: String, message: String },
}

// === Loading ===

impl Config {
    /// The embedded defaults alone, as a base for tests and tools.
    pub fn defaults() -> Config {
        // The embedded file is covered by the `defaults_are_valid` test; failing here is a build bug.
        Self::load_from(None, std::iter::empty::<(String, String)>())
            .expect("embedded config/default.toml is valid")
    }

    /// Loads defaults < `file` < the process environment (`SWITCHBOARD__*`).
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut env = Vec::new();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str() else { continue };
            if !name.starts_with(ENV_PREFIX) {
                continue;
            }
            let value = value
                .into_string()
                .map_err(|_| ConfigError::EnvNotUnicode {
                    var: name.to_owned(),
                })?;
            env.push((name.to_owned(), value));
        }
        Self::load_from(file, env)
    }

    /// Loads defaults < `file` < the given `(NAME, value)` environment pairs. Pairs whose name does
    /// not start with [`ENV_PREFIX`] are ignored, so the whole environment may be passed in.
    pub fn load_from<I, K, V>(file: Option<&Path>, env: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut layers = Layers::defaults();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
                path: path.to_owned(),
                source,
            })?;
            let table = parse_toml(&text, path)?;
            layers.overlay_table(table, &Origin::File(path.to_owned()))?;
        }
        let mut vars: Vec<(String, String)> = env
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        vars.sort();
        for (name, value) in vars {
            layers.overlay_env(&name, &value)?;
        }
        layers.validate()?;
        layers.into_config()
    }
}

fn parse_toml(text: &str, path: &Path) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>().map_err(|err| {
        let offset = err.span().map(|s| s.start).unwrap_or(0).min(text.len());
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ConfigError::Syntax {
            path: path.to_owned(),
            message: err.message().trim().replace('\n', " "),
            line,
            column,
        }
    })
}

/// The merged table plus where each key's value came from.
struct Layers {
    table: toml::Table,
    origins: HashMap<String, Origin>,
}

impl Layers {
    fn defaults() -> Layers {
        // Parsing the embedded defaults is covered by tests; a failure is a build bug.
        let table = DEFAULT_TOML
            .parse::<toml::Table>()
            .expect("embedded config/default.toml parses");
        Layers {
            table,
            origins: HashMap::new(),
        }
    }

    fn origin(&self, key: &str) -> Origin {
        self.origins.get(key).cloned().unwrap_or(Origin::Default)
    }

    fn overlay_table(&mut self, over: toml::Table, origin: &Origin) -> Result<(), ConfigError> {
        overlay(&mut self.table, over, "", origin, &mut self.origins)
    }

    fn overlay_env(&mut self, var: &str, raw: &str) -> Result<(), ConfigError> {
        let path: Vec<String> = var[ENV_PREFIX.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        if path.len() < 2 || path.iter().any(String::is_empty) {
            return Err(ConfigError::EnvShape {
                var: var.to_owned(),
            });
        }
        let key = path.join(".");
        let origin = Origin::Env(var.to_owned());
        let (parent, leaf) = path.split_at(path.len() - 1);
        let mut table = &mut self.table;
        let mut scope = String::new();
        for section in parent {
            if !matches!(table.get(section), Some(toml::Value::Table(_))) {
                return Err(unknown_key(&key, &origin, &scope, table));
            }
            match table.get_mut(section) {
                Some(toml::Value::Table(inner)) => table = inner,
                _ => unreachable!("checked just above"),
            }
            scope = if scope.is_empty() {
                section.clone()
            } else {
                format!("{scope}.{section}")
            };
        }
        let Some(existing) = table.get_mut(&leaf[0]) else {
            return Err(unknown_key(&key, &origin, &scope, table));
        };
        let value = match existing {
            toml::Value::String(_) => toml::Value::String(raw.to_owned()),
            toml::Value::Integer(_) => match raw.trim().parse::<i64>() {
                Ok(n) => toml::Value::Integer(n),
                Err(_) => {
                    return Err(ConfigError::WrongType {
                        got: shown(&key, &toml::Value::String(raw.to_owned())),
                        key,
                        expected: "an integer",
                        origin,
                    });
                }
            },
            toml::Value::Boolean(_) => match raw.trim().to_ascii_lowercase().as_str() {
                "true" => toml::Value::Boolean(true),
                "false" => toml::Value::Boolean(false),
                _ => {
                    return Err(ConfigError::WrongType {
                        got: shown(&key, &toml::Value::String(raw.to_owned())),
                        key,
                        expected: "true or false",
                        origin,
                    });
                }
            },
            toml::Value::Table(_) => {
                return Err(ConfigError::EnvShape {
                    var: var.to_owned(),
                });
            }
            other => {
                return Err(ConfigError::WrongType {
                    got: shown(&key, &toml::Value::String(raw.to_owned())),
                    key,
                    expected: type_name(other),
                    origin,
                });
            }
        };
        *existing = value;
        self.origins.insert(key, origin);
        Ok(())
    }

    fn get(&self, key: &str) -> Option<&toml::Value> {
        let mut parts = key.split('.');
        let mut value = self.table.get(parts.next()?)?;
        for part in parts {
            value = value.as_table()?.get(part)?;
        }
        Some(value)
    }

    fn invalid(&self, key: &str, rule: impl Into<String>) -> ConfigError {
        let got = self
            .get(key)
            .map_or_else(|| "nothing".to_owned(), |v| shown(key, v));
        ConfigError::Invalid {
            key: key.to_owned(),
            rule: rule.into(),
            got,
            origin: self.origin(key),
        }
    }

    fn str_of(&self, key: &str) -> &str {
        self.get(key).and_then(toml::Value::as_str).unwrap_or("")
    }

    /// Range, choice and format checks on the merged values, before they become typed.
    fn validate(&self) -> Result<(), ConfigError> {
        for &(key, min, max) in RANGES {
            if let Some(n) = self.get(key).and_then(toml::Value::as_integer)
                && !(min..=max).contains(&n)
            {
                return Err(ConfigError::Invalid {
                    key: key.to_owned(),
                    rule: format!("between {min} and {max}"),
                    got: n.to_string(),
                    origin: self.origin(key),
                });
            }
        }
        for &(key, allowed) in CHOICES {
            let value = self.str_of(key);
            if !allowed.contains(&value) {
                let list = allowed
                    .iter()
                    .map(|a| format!("\"{a}\""))
                    .collect::<Vec<_>>()
                    .join(" or ");
                return Err(self.invalid(key, format!("one of {list}")));
            }
        }
        if self.str_of("server.bind").parse::<SocketAddr>().is_err() {
            return Err(self.invalid(
                "server.bind",
                "an IP address and port such as \"127.0.0.1:8080\"",
            ));
        }
        if switchboard_actors::phone::parse_region(self.str_of("twilio.default_region")).is_err() {
            return Err(self.invalid(
                "twilio.default_region",
                "a two-letter region code such as \"US\"",
            ));
        }
        for key in WHOLE_FRAMES {
            if let Some(ms) = self.get(key).and_then(toml::Value::as_integer)
                && ms % 20 != 0
            {
                return Err(self.invalid(key, "a multiple of 20 (whole 20 ms frames)"));
            }
        }
        let otlp = self.str_of("log.otlp_endpoint");
        if !otlp.is_empty() && !has_scheme(otlp, &["http://", "https://"]) {
            return Err(self.invalid(
                "log.otlp_endpoint",
                "empty, or an OTLP/HTTP collector URL such as \"http://127.0.0.1:4318\"",
            ));
        }
        if !has_scheme(self.str_of("server.public_url"), &["http://", "https://"]) {
            return Err(self.invalid(
                "server.public_url",
                "a URL starting with http:// or https://",
            ));
        }
        let level = self.str_of("log.level");
        if level.trim().is_empty()
            || tracing_subscriber::EnvFilter::builder()
                .parse(level)
                .is_err()
        {
            return Err(self.invalid(
                "log.level",
                "a level (trace, debug, info, warn, error) or a tracing filter such as \"switchboard=debug,info\"",
            ));
        }
        if !has_scheme(
            self.str_of("database.url"),
            &["sqlite:", "postgres://", "postgresql://"],
        ) {
            return Err(self.invalid(
                "database.url",
                "a URL starting with sqlite:, postgres:// or postgresql://",
            ));
        }
        let llm = self.str_of("llm.base_url");
        if !llm.is_empty() && !has_scheme(llm, &["http://", "https://"]) {
            return Err(self.invalid(
                "llm.base_url",
                "empty or a URL starting with http:// or https://",
            ));
        }
        if self.str_of("llm.model").trim().is_empty() {
            return Err(self.invalid("llm.model", "a model name"));
        }
        let redis = self.str_of("cache.redis_url");
        if !redis.is_empty() && !has_scheme(redis, &["redis://", "rediss://"]) {
            return Err(self.invalid(
                "cache.redis_url",
                "empty or a URL starting with redis:// or rediss://",
            ));
        }
        if self.str_of("twilio.welcome_greeting").trim().is_empty() {
            return Err(self.invalid("twilio.welcome_greeting", "a non-empty sentence"));
        }
        let wav = self.str_of("twilio.greeting_wav");
        if !wav.is_empty() && !Path::new(wav).is_file() {
            return Err(self.invalid(
                "twilio.greeting_wav",
                "empty or the path of an existing WAV file",
            ));
        }
        if self.str_of("persistence.journal_path").trim().is_empty() {
            return Err(self.invalid("persistence.journal_path", "a folder path"));
        }
        Ok(())
    }

    fn into_config(self) -> Result<Config, ConfigError> {
        serde_path_to_error::deserialize(toml::Value::Table(self.table)).map_err(|err| {
            ConfigError::Deserialize {
                key: err.path().to_string(),
                message: err.inner().to_string().replace('\n', " "),
            }
        })
    }
}

fn overlay(
    base: &mut toml::Table,
    over: toml::Table,
    scope: &str,
    origin: &Origin,
    origins: &mut HashMap<String, Origin>,
) -> Result<(), ConfigError> {
    for (name, value) in over {
        let key = if scope.is_empty() {
            name.clone()
        } else {
            format!("{scope}.{name}")
        };
        let Some(existing) = base.get_mut(&name) else {
            return Err(unknown_key(&key, origin, scope, base));
        };
        match (existing, value) {
            (toml::Value::Table(inner), toml::Value::Table(value)) => {
                overlay(inner, value, &key, origin, origins)?;
            }
            (existing, value) => {
                if std::mem::discriminant(existing) != std::mem::discriminant(&value) {
                    return Err(ConfigError::WrongType {
                        expected: type_name(existing),
                        got: shown(&key, &value),
                        key,
                        origin: origin.clone(),
                    });
                }
                *existing = value;
                origins.insert(key, origin.clone());
            }
        }
    }
    Ok(())
}

fn unknown_key(key: &str, origin: &Origin, scope: &str, table: &toml::Table) -> ConfigError {
    ConfigError::UnknownKey {
        key: key.to_owned(),
        origin: origin.clone(),
        scope: if scope.is_empty() {
            String::new()
        } else {
            format!(" in [{scope}]")
        },
        known: table.keys().cloned().collect::<Vec<_>>().join(", "),
    }
}

fn type_name(value: &toml::Value) -> &'static str {
    match value {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a number",
        toml::Value::Boolean(_) => "true or false",
        toml::Value::Datetime(_) => "a date-time",
        toml::Value::Array(_) => "a list",
        toml::Value::Table(_) => "a [section] table",
    }
}

/// A value as it may appear in an error message: secrets masked, URL passwords masked.
fn shown(key: &str, value: &toml::Value) -> String {
    if SECRET_KEYS.contains(&key) {
        return "***".to_owned();
    }
    match value {
        toml::Value::String(s) if URL_KEYS.contains(&key) => format!("{:?}", redact_url(s)),
        toml::Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

fn has_scheme(value: &str, schemes: &[&str]) -> bool {
    let lower = value.to_ascii_lowercase();
    schemes.iter().any(|s| lower.starts_with(s)) && schemes.iter().all(|s| lower != *s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let config = Config::defaults();
        assert_eq!(config.server.bind.port(), 8080);
        assert_eq!(config.prefetch.timeout_ms, 2000);
        assert_eq!(config.database.url, "sqlite://data/switchboard.db");
    }

    #[test]
    fn redacts_url_passwords() {
        assert_eq!(
            redact_url("postgres://app:hunter2@db:5432/x?sslmode=require"),
            "postgres://app:***@db:5432/x?sslmode=require"
        );
        assert_eq!(redact_url("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(redact_url("sqlite://data/x.db"), "sqlite://data/x.db");
    }
}
