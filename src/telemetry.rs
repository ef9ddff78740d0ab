//! Telemetry: owns the process-wide tracing subscriber (human-readable text or JSON lines on
//! stdout, level from `log.level`, overridden by `RUST_LOG`), the phone-number mask every log
//! line goes through, and, in builds with the `otel` feature, the OpenTelemetry export of spans
//! to `log.otlp_endpoint`. It never decides what to log.
//!
//! Phone numbers are masked in the writer, after formatting, so no call site can leak one:
//! `+` (or `%2B`) followed by 8 or more digits (`+5517999991292` → `+55179****92`, also written
//! `+1 (415) 555-0101`), and bare runs of 8 to 15 digits right after a key that names a number
//! (`from=14155550101`, `"caller":"14155550101"`).

use std::borrow::Cow;
use std::io::{self, IsTerminal, Write};

use switchboard_actors::mask_phone;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogConfig, LogFormat};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("RUST_LOG is not a valid tracing filter: {0}")]
    BadRustLog(String),
    #[error("log.level is not a valid tracing filter: {0}")]
    BadLevel(String),
    #[error(
        "log.otlp_endpoint is set, but this build has no OpenTelemetry export; rebuild with `cargo build --release --features otel` or leave log.otlp_endpoint empty"
    )]
    OtelNotBuilt,
    #[error("cannot set up the OpenTelemetry exporter for {endpoint}: {reason}")]
    Otel { endpoint: String, reason: String },
}

type BoxedLayer<S> = Box<dyn Layer<S> + Send + Sync>;

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
    type Filtered = tracing_subscriber::layer::Layered<EnvFilter, tracing_subscriber::Registry>;
    let writer = MaskPhones(io::stdout);
    let fmt: BoxedLayer<Filtered> = match log.format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(io::stdout().is_terminal())
            .with_writer(writer)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(writer)
            .boxed(),
    };
    let mut layers: Vec<BoxedLayer<Filtered>> = vec![fmt];
    if !log.otlp_endpoint.is_empty() {
        layers.push(otel::layer(&log.otlp_endpoint)?);
    }
    // `try_init` fails only when a subscriber is already installed; keeping that one is right.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(layers)
        .try_init();
    Ok(())
}

/// Panics are logged like everything else (an ERROR line in the current span, through the phone
/// mask), not written raw to stderr, where a caller's number in a panic message would escape the
/// mask. The backtrace is included when `RUST_BACKTRACE` asks for one. Installed by the binary
/// (not by tests, whose harness reports panics itself).
pub fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(a panic without a message)");
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed");
        let backtrace = std::backtrace::Backtrace::capture();
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            tracing::error!(%location, thread, %backtrace, "panic: {message}");
        } else {
            tracing::error!(%location, thread, "panic: {message}");
        }
    }));
}

/// Sends spans still batched for the collector (blocking; at shutdown). No-op without OTel.
pub fn flush() {
    otel::flush();
}

// === Phone-number masking ===

/// A [`MakeWriter`] whose writers mask phone numbers in everything written through them.
#[derive(Debug, Clone, Copy)]
pub struct MaskPhones<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for MaskPhones<M> {
    type Writer = MaskingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        MaskingWriter(self.0.make_writer())
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        MaskingWriter(self.0.make_writer_for(meta))
    }
}

/// Masks each buffer before passing it on. The fmt layer writes a whole formatted event per
/// call, so a number is never split across two writes.
#[derive(Debug)]
pub struct MaskingWriter<W>(pub W);

impl<W: Write> Write for MaskingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(&mask_phone_numbers(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Keys after which a bare run of 8 to 15 digits is taken for a phone number.
const PHONE_KEYS: &[&str] = &[
    "from",
    "to",
    "caller",
    "called",
    "callerid",
    "caller_id",
    "phone",
    "phone_number",
    "number",
    "msisdn",
    "e164",
];

/// `text` with every phone number masked (see the module docs); borrowed when there is none.
pub fn mask_phone_numbers(text: &[u8]) -> Cow<'_, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < text.len() {
        let prefix = if text[i] == b'+' {
            1
        } else if text[i..].len() >= 3 && text[i..i + 3].eq_ignore_ascii_case(b"%2B") {
            3
        } else {
            0
        };
        let after_digit = i > 0 && text[i - 1].is_ascii_digit();
        if prefix > 0 && !after_digit {
            let (end, digits) = scan_international(text, i + prefix);
            if digits.len() >= 8 {
                let masked = mask_phone(&format!("+{digits}"));
                let out = out.get_or_insert_with(|| Vec::with_capacity(text.len()));
                out.extend_from_slice(&text[copied..i]);
                out.extend_from_slice(&text[i..i + prefix]);
                out.extend_from_slice(&masked.as_bytes()[1..]);
                copied = end;
                i = end;
                continue;
            }
        }
        if text[i].is_ascii_digit() {
            let end = i + text[i..].iter().take_while(|b| b.is_ascii_digit()).count();
            let after_ansi = i > 0 && text[i - 1] == b'm' && ansi_start(text, i - 1).is_some();
            let standalone = (i == 0 || after_ansi || !is_word_byte(text[i - 1]))
                && (end == text.len() || !is_word_byte(text[end]));
            if standalone && (8..=15).contains(&(end - i)) && follows_phone_key(text, i) {
                let digits = std::str::from_utf8(&text[i..end]).unwrap_or_default();
                let out = out.get_or_insert_with(|| Vec::with_capacity(text.len()));
                out.extend_from_slice(&text[copied..i]);
                out.extend_from_slice(mask_phone(digits).as_bytes());
                copied = end;
            }
            i = end;
            continue;
        }
        i += 1;
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut out) => {
            out.extend_from_slice(&text[copied..]);
            Cow::Owned(out)
        }
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Digits of an international number starting at `start` (after the `+`), and where it ends.
/// A first group of 8 or more digits is the whole number (E.164 as Twilio sends it); a shorter
/// one (a country code written apart) may go on in groups separated by one space, `-`, `.`,
/// `(` or `)`, up to 15 digits.
fn scan_international(text: &[u8], start: usize) -> (usize, String) {
    let group = |from: usize| {
        text[from..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let first = group(start);
    let mut digits: String = String::from_utf8_lossy(&text[start..start + first]).into_owned();
    let mut end = start + first;
    if first == 0 || first >= 8 {
        return (end, digits);
    }
    loop {
        // Up to two separators between groups: "1 (415) 555-0101".
        let mut j = end;
        let mut separators = 0;
        while j < text.len()
            && separators < 2
            && matches!(text[j], b' ' | b'-' | b'.' | b'(' | b')')
        {
            j += 1;
            separators += 1;
        }
        if separators == 0 && !(j < text.len() && text[j].is_ascii_digit()) {
            break;
        }
        let n = group(j);
        if n == 0 || digits.len() + n > 15 {
            break;
        }
        digits.push_str(&String::from_utf8_lossy(&text[j..j + n]));
        end = j + n;
        // A closing parenthesis right after a group belongs to the number.
        if end < text.len() && text[end] == b')' && text[..end].contains(&b'(') {
            end += 1;
        }
    }
    (end, digits)
}

/// Whether the digits at `at` come right after `from=`, `"caller":"`, `phone: ` and the like,
/// looking past quotes, `=`, `:`, spaces and ANSI colour codes.
fn follows_phone_key(text: &[u8], at: usize) -> bool {
    let mut j = at;
    let mut punctuation = 0;
    loop {
        if j == 0 {
            return false;
        }
        let b = text[j - 1];
        if matches!(b, b'=' | b':' | b'"' | b'\'' | b' ') {
            punctuation += 1;
            if punctuation > 4 {
                return false;
            }
            j -= 1;
        } else if b == b'm'
            && let Some(start) = ansi_start(text, j - 1)
        {
            j = start;
        } else {
            break;
        }
    }
    if punctuation == 0 {
        return false;
    }
    let mut key_start = text[..j]
        .iter()
        .rposition(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
        .map_or(0, |p| p + 1);
    // A colour code right before the key (`ESC[3mfrom`): its `3m` is not part of the key.
    if key_start >= 2 && text[key_start - 1] == b'[' && text[key_start - 2] == 0x1b {
        let params = text[key_start..j]
            .iter()
            .take_while(|b| b.is_ascii_digit() || **b == b';')
            .count();
        if text.get(key_start + params) == Some(&b'm') {
            key_start += params + 1;
        }
    }
    let key = String::from_utf8_lossy(&text[key_start..j]).to_ascii_lowercase();
    PHONE_KEYS.contains(&key.as_str())
}

/// Start of an ANSI SGR sequence (`ESC [ digits/; m`) ending with the `m` at `m_at`.
fn ansi_start(text: &[u8], m_at: usize) -> Option<usize> {
    let mut k = m_at;
    while k > 0 && (text[k - 1].is_ascii_digit() || text[k - 1] == b';') && m_at - k < 12 {
        k -= 1;
    }
    (k >= 2 && text[k - 1] == b'[' && text[k - 2] == 0x1b).then(|| k - 2)
}

#[cfg(feature = "otel")]
mod otel {
    use std::sync::OnceLock;
    use std::time::Duration;

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
    use tracing_subscriber::Layer;

    use super::TelemetryError;

    static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

    /// `{endpoint}/v1/traces`, unless the endpoint already names the traces path.
    fn traces_url(endpoint: &str) -> String {
        let base = endpoint.trim_end_matches('/');
        if base.ends_with("/v1/traces") {
            base.to_owned()
        } else {
            format!("{base}/v1/traces")
        }
    }

    pub fn layer<S>(endpoint: &str) -> Result<Box<dyn Layer<S> + Send + Sync>, TelemetryError>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
    {
        let failed = |reason: String| TelemetryError::Otel {
            endpoint: crate::config::redact_url(endpoint),
            reason,
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(traces_url(endpoint))
            .with_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| failed(e.to_string()))?;
        // Calls are short: send finished spans within a second rather than the default five.
        let batch = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_scheduled_delay(Duration::from_secs(1))
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(batch)
            .with_resource(Resource::builder().with_service_name("switchboard").build())
            .build();
        let tracer = provider.tracer("switchboard");
        let _ = PROVIDER.set(provider);
        Ok(tracing_opentelemetry::layer().with_tracer(tracer).boxed())
    }

    pub fn flush() {
        if let Some(provider) = PROVIDER.get()
            && let Err(error) = provider.force_flush()
        {
            tracing::warn!(%error, "spans not exported at shutdown");
        }
    }
}

#[cfg(not(feature = "otel"))]
mod otel {
    use super::TelemetryError;

    pub fn layer<S: tracing::Subscriber>(
        _endpoint: &str,
    ) -> Result<Box<dyn tracing_subscriber::Layer<S> + Send + Sync>, TelemetryError> {
        Err(TelemetryError::OtelNotBuilt)
    }

    pub fn flush() {}
}

#[cfg(test)]
mod tests;
