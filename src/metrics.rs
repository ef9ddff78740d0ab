//! Metrics: the process-wide Prometheus recorder behind the `metrics` facade, rendered at
//! `GET /metrics`. Gauges that describe live state (calls per state, persistence backlog) are
//! sampled from the runtime at render time, so the hot path never updates them.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use switchboard_actors::machine::CallState;

use crate::http::AppState;

/// The recorder, installed on first use (once per process: tests start many servers).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (an embedding application's): then ours
        // still renders whatever is recorded through it, which is nothing; say so.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!(
                "a metrics recorder was already installed; /metrics shows only sampled gauges"
            );
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
    for (outcome, v) in [
        ("found", &s.crm.found),
        ("not_found", &s.crm.not_found),
        ("partial", &s.crm.partial),
        ("failed", &s.crm.failed),
        ("timed_out", &s.crm.timed_out),
        ("shed", &s.crm.shed),
    ] {
        metrics::gauge!("switchboard_prefetch_results", "outcome" => outcome)
            .set(v.load(Relaxed) as f64);
    }
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
    for (name, v) in [
        ("hits", &s.cache.hits),
        ("misses", &s.cache.misses),
        ("bypassed", &s.cache.bypassed),
        ("shared_hits", &s.cache.shared_hits),
        ("shared_misses", &s.cache.shared_misses),
        ("shared_errors", &s.cache.shared_errors),
        ("invalidations", &s.cache.invalidations),
        ("evictions", &s.cache.evictions),
        ("stale_puts", &s.cache.stale_puts),
    ] {
        metrics::gauge!("switchboard_context_cache", "event" => name).set(v.load(Relaxed) as f64);
    }
    metrics::gauge!("switchboard_context_cache_entries").set(runtime.caches.memory.len() as f64);
    for (outcome, v) in [
        ("asked", &s.names.llm_asked),
        ("named", &s.names.llm_named),
        ("no_name", &s.names.llm_no_name),
    ] {
        metrics::gauge!("switchboard_llm_name_extractions", "outcome" => outcome)
            .set(v.load(Relaxed) as f64);
    }
    let mut text = handle.render();
    render_prefetch_histogram(&mut text, runtime);
    text
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
