//! Telemetry: owns the process-wide tracing subscriber (human-readable text or JSON lines on
//! stdout, level from `log.level`, overridden by `RUST_LOG`). It never decides what to log.

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("RUST_LOG is not a valid tracing filter: {0}")]
    BadRustLog(String),
    #[error("log.level is not a valid tracing filter: {0}")]
    BadLevel(String),
}

/// Installs the global subscriber. Calling it again (tests) keeps the first one.
pub fn init(log: &LogConfig) -> Result<(), TelemetryError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(value) if !value.trim().is_empty() => EnvFilter::builder()
            .parse(&value)
            .map_err(|e| TelemetryError::BadRustLog(e.to_string()))?,
        _ => EnvFilter::builder()
            .parse(&log.level)
            .map_err(|e| TelemetryError::BadLevel(e.to_string()))?,
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // `try_init` fails only when a subscriber is already installed; keeping that one is right.
    let _ = match log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    Ok(())
}
