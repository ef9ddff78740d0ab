//! Metrics: the process-wide Prometheus recorder behind the `metrics` facade, rendered at
//! `GET /metrics`. Gauges that describe live state (calls per state, persistence backlog) are
//! sampled from the runtime at render time, so the hot path never updates them.
//!
//! Prometheus summaries are cumulative and their quantiles are computed by the exporter over a
//! recent window, so the whole-process percentiles behind `/api/v1/stats` (the dashboard's p95,
//! the load generator's server-side p99s) come from in-process HDR histograms instead: the
//! recorder is wrapped so that every value recorded into one of [`Tracked`]'s histograms also
//! lands in its HDR histogram.

use std::sync::{Arc, Mutex, OnceLock};

use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use serde::Serialize;
use switchboard_actors::machine::CallState;

use crate::http::AppState;

/// The histograms kept whole-process in HDR form as well (all label values together).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tracked {
    /// `switchboard_time_to_first_audio_seconds`, recorded by the media edge: `start` parsed →
    /// the first greeting message (up to `twilio.media_message_ms` of audio) flushed to the
    /// socket.
    TimeToFirstAudio,
    /// `switchboard_turn_first_audio_seconds`, recorded by the call's turn clock: the caller's
    /// final transcript sent to the call → the socket writer reaching the reply's first audio
    /// (or text), everything before it flushed. The speech-to-text provider's own delay is not
    /// in it; the server's work and its round trips to the LLM and TTS are.
    TurnFirstAudio,
}

impl Tracked {
    const ALL: [Tracked; 2] = [Tracked::TimeToFirstAudio, Tracked::TurnFirstAudio];

    pub fn metric_name(self) -> &'static str {
        match self {
            Tracked::TimeToFirstAudio => "switchboard_time_to_first_audio_seconds",
            Tracked::TurnFirstAudio => "switchboard_turn_first_audio_seconds",
        }
    }

    /// Microseconds, 1 µs to 10 min, 3 significant digits (~45 KiB each).
    fn histogram(self) -> &'static Mutex<hdrhistogram::Histogram<u64>> {
        static H: OnceLock<[Mutex<hdrhistogram::Histogram<u64>>; 2]> = OnceLock::new();
        let all = H.get_or_init(|| {
            std::array::from_fn(|_| {
                // Valid bounds (low >= 1, high >= 2 * low, sigfig <= 5): cannot fail.
                let h = hdrhistogram::Histogram::new_with_bounds(1, 600_000_000, 3)
                    .expect("constant histogram bounds are valid");
                Mutex::new(h)
            })
        });
        &all[self as usize]
    }

    fn record(self, seconds: f64) {
        if !seconds.is_finite() || seconds < 0.0 {
            return;
        }
        let micros = (seconds * 1e6).round() as u64;
        let mut h = self
            .histogram()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        h.saturating_record(micros.max(1));
    }

    /// Everything recorded since the process started, in milliseconds.
    pub fn percentiles(self) -> Percentiles {
        let h = self
            .histogram()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = h.len();
        let at = |q: f64| (count > 0).then(|| h.value_at_quantile(q) as f64 / 1e3);
        Percentiles {
            count,
            p50: at(0.5),
            p95: at(0.95),
            p99: at(0.99),
            max: (count > 0).then(|| h.max() as f64 / 1e3),
        }
    }
}

/// Percentiles of a tracked histogram since the process started, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

/// The Prometheus recorder, plus a copy of the [`Tracked`] histograms' values into HDR ones.
struct Tee {
    prometheus: PrometheusRecorder,
}

struct TeeHistogram(Histogram, Tracked);

impl HistogramFn for TeeHistogram {
    fn record(&self, value: f64) {
        self.0.record(value);
        self.1.record(value);
    }
}

impl Recorder for Tee {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.prometheus.describe_counter(key, unit, description);
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.prometheus.describe_gauge(key, unit, description);
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.prometheus.describe_histogram(key, unit, description);
    }
    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.prometheus.register_counter(key, metadata)
    }
    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.prometheus.register_gauge(key, metadata)
    }
    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        let inner = self.prometheus.register_histogram(key, metadata);
        match Tracked::ALL
            .into_iter()
            .find(|t| t.metric_name() == key.name())
        {
            Some(tracked) => Histogram::from_arc(Arc::new(TeeHistogram(inner, tracked))),
            None => inner,
        }
    }
}

/// The recorder, installed on first use (once per process: tests start many servers).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let prometheus = PrometheusBuilder::new().build_recorder();
        let handle = prometheus.handle();
        let recorder = Tee { prometheus };
        // Another recorder may already be installed (an embedding application's): then ours
        // still renders whatever is recorded through it, which is nothing; say so.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!(
                "a metrics recorder was already installed; /metrics shows only sampled gauges"
            );
        }
        // Shown from the start, before the first operator connects or is dropped.
        metrics::gauge!("switchboard_sse_clients").increment(0.0);
        for reason in ["slow", "lagged"] {
            metrics::counter!("switchboard_sse_clients_dropped_total", "reason" => reason)
                .increment(0);
        }
        handle
    })
}

/// Sample live gauges, then render everything in Prometheus text format.
pub fn render(app: &AppState) -> String {
    let handle = handle();
    let runtime = app.runtime();
    let mut per_state = [0u64; CallState::ALL.len()];
    for call in runtime.calls.handles() {
        let state = call.snapshot().state();
        if let Some(i) = CallState::ALL.iter().position(|s| *s == state) {
            per_state[i] += 1;
        }
    }
    for (state, n) in CallState::ALL.iter().zip(per_state) {
        metrics::gauge!("switchboard_active_calls", "state" => state.as_str()).set(n as f64);
    }
    metrics::gauge!("switchboard_persistence_backlog_rows")
        .set(runtime.persistence_backlog() as f64);
    let s = &runtime.stats;
    use std::sync::atomic::Ordering::Relaxed;
    labelled_gauges(
        "switchboard_prefetch_results",
        "outcome",
        [
            ("found", &s.crm.found),
            ("not_found", &s.crm.not_found),
            ("partial", &s.crm.partial),
            ("failed", &s.crm.failed),
            ("timed_out", &s.crm.timed_out),
            ("shed", &s.crm.shed),
        ],
    );
    metrics::gauge!("switchboard_persistence_rows_written")
        .set(s.persistence.rows_written.load(Relaxed) as f64);
    metrics::gauge!("switchboard_persistence_largest_batch")
        .set(s.persistence.largest_batch.load(Relaxed) as f64);
    metrics::gauge!("switchboard_persistence_write_failures")
        .set(s.persistence.write_failures.load(Relaxed) as f64);
    metrics::gauge!("switchboard_persistence_batches_written")
        .set(s.persistence.batches_written.load(Relaxed) as f64);
    metrics::gauge!("switchboard_persistence_spilled")
        .set(s.persistence.spilled.load(Relaxed) as f64);
    metrics::gauge!("switchboard_persistence_replayed")
        .set(s.persistence.replayed.load(Relaxed) as f64);
    let batches = s.persistence.batches_written.load(Relaxed);
    if batches > 0 {
        metrics::gauge!("switchboard_persistence_mean_batch_rows")
            .set(s.persistence.rows_written.load(Relaxed) as f64 / batches as f64);
    }

    labelled_gauges(
        "switchboard_context_cache",
        "event",
        [
            ("hits", &s.cache.hits),
            ("misses", &s.cache.misses),
            ("bypassed", &s.cache.bypassed),
            ("shared_hits", &s.cache.shared_hits),
            ("shared_misses", &s.cache.shared_misses),
            ("shared_errors", &s.cache.shared_errors),
            ("invalidations", &s.cache.invalidations),
            ("evictions", &s.cache.evictions),
            ("stale_puts", &s.cache.stale_puts),
        ],
    );
    metrics::gauge!("switchboard_context_cache_entries").set(runtime.caches.memory.len() as f64);
    labelled_gauges(
        "switchboard_llm_name_extractions",
        "outcome",
        [
            ("asked", &s.names.llm_asked),
            ("named", &s.names.llm_named),
            ("no_name", &s.names.llm_no_name),
        ],
    );
    labelled_gauges(
        "switchboard_name_stores",
        "outcome",
        [
            ("stored", &s.names.stored),
            ("retried", &s.names.store_retries),
            ("dropped", &s.names.store_dropped),
        ],
    );
    metrics::gauge!("switchboard_name_stores_pending")
        .set(s.names.store_pending.load(Relaxed) as f64);
    let mut text = handle.render();
    render_prefetch_histogram(&mut text, runtime);
    text
}

/// One gauge per counter of the runtime, each labelled `label` = its name.
fn labelled_gauges<const N: usize>(
    name: &'static str,
    label: &'static str,
    counters: [(&'static str, &std::sync::atomic::AtomicU64); N],
) {
    for (value, v) in counters {
        metrics::gauge!(name, label => value)
            .set(v.load(std::sync::atomic::Ordering::Relaxed) as f64);
    }
}

/// `switchboard_prefetch_seconds`: prefetch latency from the lookup request to its result, by
/// where the answer came from (`source="cache"` or `"store"`), sampled from the runtime's atomics.
fn render_prefetch_histogram(out: &mut String, runtime: &switchboard_actors::Runtime) {
    use std::fmt::Write;
    use std::sync::atomic::Ordering::Relaxed;
    let _ = writeln!(
        out,
        "# HELP switchboard_prefetch_seconds Customer-context prefetch latency."
    );
    let _ = writeln!(out, "# TYPE switchboard_prefetch_seconds histogram");
    for (source, h) in [
        ("cache", &runtime.stats.crm.latency_cached),
        ("store", &runtime.stats.crm.latency_store),
    ] {
        let (buckets, count) = h.cumulative();
        for (le, n) in buckets {
            let _ = writeln!(
                out,
                "switchboard_prefetch_seconds_bucket{{source=\"{source}\",le=\"{le}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "switchboard_prefetch_seconds_bucket{{source=\"{source}\",le=\"+Inf\"}} {count}"
        );
        let sum = h.sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "switchboard_prefetch_seconds_sum{{source=\"{source}\"}} {sum}"
        );
        let _ = writeln!(
            out,
            "switchboard_prefetch_seconds_count{{source=\"{source}\"}} {count}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracked_histograms_also_land_in_their_hdr_histogram_and_others_do_not() {
        let tee = Tee {
            prometheus: PrometheusBuilder::new().build_recorder(),
        };
        // Values no other test records: the HDR histograms are process-wide.
        metrics::with_local_recorder(&tee, || {
            metrics::histogram!(Tracked::TurnFirstAudio.metric_name(), "transport" => "relay")
                .record(477.0);
            metrics::histogram!("switchboard_turn_first_token_seconds", "transport" => "relay")
                .record(555.0);
        });
        let turn = Tracked::TurnFirstAudio.percentiles();
        assert!(turn.count >= 1);
        let max = turn.max.expect("recorded");
        assert!((max - 477_000.0).abs() < 477.0, "{turn:?}"); // 3 significant digits
        for tracked in Tracked::ALL {
            let max = tracked.percentiles().max.unwrap_or(0.0);
            assert!(
                max < 500_000.0,
                "{tracked:?} got an untracked value: {max} ms"
            );
        }
    }
}
