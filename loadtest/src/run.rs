//! A load run: ramp up to the target concurrency (`ramp_per_sec` new calls a second), hold it for
//! `hold` by placing a new call in each slot as soon as its previous one ends, then let the last
//! calls finish. Meanwhile: the server is sampled once a second (CPU, RSS, active calls) and a
//! progress line goes to stderr; SSE clients follow `/api/v1/calls/events`. Afterwards every
//! call's stored record is read back (the persistence check) and a [`RunReport`] is built.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use hdrhistogram::Histogram;
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::call::{CallProgress, Target, simulate_call};
use crate::report::{
    CallRecord, ChaosNote, Persistence, RunReport, Sample, ServerSide, ServerStats, SseReport,
    Stats, StoredCheck,
};
use crate::scenario::Mix;
use crate::{proc, sse};

/// How to run.
#[derive(Clone, Debug)]
pub struct Options {
    pub target: Target,
    /// Concurrent calls to reach and hold.
    pub concurrency: usize,
    /// New calls per second while ramping up.
    pub ramp_per_sec: f64,
    /// How long to hold the target concurrency after the ramp (each slot places calls back to
    /// back until then). Zero: each slot places one call.
    pub hold: Duration,
    pub mix: Mix,
    /// The server's process, to sample CPU time and RSS from /proc.
    pub server_pid: Option<u32>,
    /// `/api/v1/calls/events` connections held during the run.
    pub sse_clients: usize,
    /// Read every call's stored transcript back after the run.
    pub persistence_check: bool,
    /// A progress line on stderr once a second.
    pub progress: bool,
    /// Part of every call sid, so runs do not collide.
    pub run_id: u32,
}

/// Counters the calls update while they run, for the progress line.
struct Live {
    active: AtomicI64,
    completed: AtomicU64,
    failed: AtomicU64,
    turns: Mutex<Histogram<u64>>,
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 10 min, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).unwrap_or_else(|_| {
        Histogram::new(3)
            .unwrap_or_else(|_| unreachable!("3 significant digits is a valid precision"))
    })
}

/// Runs the load and returns its report (the caller prints or writes it).
pub async fn run(opts: Options) -> RunReport {
    let target = opts.target.clone();
    let mut mix = opts.mix.clone();
    let operator_api = probe_operator_api(&target).await;
    let chaos = probe_chaos(&target, mix.chaos_fraction, opts.run_id).await;
    mix.chaos_fraction = chaos.effective_fraction;
    if opts.progress {
        eprintln!("chaos: {}", chaos.note);
        if let Err(why) = &operator_api {
            eprintln!("operator API: {why}");
        }
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let sid_prefix = format!("CA{:08x}", opts.run_id);
    let (sse_totals, sse_handles) =
        sse::spawn_clients(&target, opts.sse_clients, &sid_prefix, stop_rx.clone());
    if opts.sse_clients > 0 {
        // Let the dashboards connect before the calls start.
        let deadline = Instant::now() + Duration::from_secs(10);
        while (sse_totals.connected.load(Ordering::Relaxed) as usize) < opts.sse_clients
            && sse_totals
                .errors
                .lock()
                .map(|e| e.is_empty())
                .unwrap_or(true)
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let live = Arc::new(Live {
        active: AtomicI64::new(0),
        completed: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        turns: Mutex::new(histogram()),
    });
    let started = Instant::now();
    let cpu_start = opts.server_pid.and_then(proc::cpu_seconds);
    let generator_cpu_start = proc::cpu_seconds(std::process::id());
    let rss_start = opts.server_pid.and_then(proc::rss_kb);
    let sampler = tokio::spawn(sample(
        live.clone(),
        opts.server_pid,
        started,
        opts.progress,
        stop_rx.clone(),
    ));

    let gap = Duration::from_secs_f64(1.0 / opts.ramp_per_sec.max(0.001));
    let ramp_end = started + gap * opts.concurrency as u32;
    let hold_until = ramp_end + opts.hold;
    let next_index = Arc::new(AtomicU64::new(0));
    let records = Arc::new(Mutex::new(Vec::new()));
    let mut slots = Vec::with_capacity(opts.concurrency);
    for slot in 0..opts.concurrency {
        let (target, mix, live, next_index, records) = (
            target.clone(),
            mix.clone(),
            live.clone(),
            next_index.clone(),
            records.clone(),
        );
        let run_id = opts.run_id;
        let hold = opts.hold;
        slots.push(tokio::spawn(async move {
            tokio::time::sleep_until(started + gap * slot as u32).await;
            loop {
                let index = next_index.fetch_add(1, Ordering::Relaxed);
                let planned = mix.plan(run_id, index);
                live.active.fetch_add(1, Ordering::Relaxed);
                let l = live.clone();
                let outcome = simulate_call(&target, planned.plan, move |p| {
                    if let CallProgress::AgentReplied { latency, .. } = p
                        && let Ok(mut h) = l.turns.lock()
                    {
                        let _ = h.record((latency.as_micros() as u64).max(1));
                    }
                })
                .await;
                live.active.fetch_sub(1, Ordering::Relaxed);
                if outcome.completed() {
                    live.completed.fetch_add(1, Ordering::Relaxed);
                } else {
                    live.failed.fetch_add(1, Ordering::Relaxed);
                }
                if let Ok(mut r) = records.lock() {
                    r.push(CallRecord {
                        outcome,
                        kind: planned.kind,
                        chaos: planned.chaos,
                        stored: None,
                    });
                }
                if hold.is_zero() || Instant::now() >= hold_until {
                    break;
                }
            }
        }));
    }
    for slot in slots {
        let _ = slot.await;
    }
    let elapsed = started.elapsed();
    let cpu_end = opts.server_pid.and_then(proc::cpu_seconds);
    let generator_cpu_s = generator_cpu_start
        .zip(proc::cpu_seconds(std::process::id()))
        .map(|(a, b)| b - a);
    if opts.sse_clients > 0 {
        // The last calls' `call_ended` events are on their way.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let _ = stop_tx.send(true);
    let timeline = sampler.await.unwrap_or_default();
    for h in sse_handles {
        let _ = h.await;
    }
    let server_side = server_side(&target).await;

    let mut calls = std::mem::take(&mut *records.lock().unwrap_or_else(|e| e.into_inner()));
    calls.sort_by_key(|c| c.outcome.started_at);
    let persistence = match (&operator_api, opts.persistence_check) {
        (_, false) => Persistence::skipped("not requested (--no-persistence-check)"),
        (Err(why), true) => Persistence::skipped(why),
        (Ok(()), true) => {
            if opts.progress {
                eprintln!(
                    "persistence check: reading {} stored calls back",
                    calls.len()
                );
            }
            check_persistence(&target, &mut calls).await
        }
    };
    let rss_peak = timeline.iter().filter_map(|s| s.rss_kb).max();
    let peak_active = timeline.iter().map(|s| s.active).max().unwrap_or(0);
    let server = ServerStats {
        pid: opts.server_pid,
        cpu_s: cpu_start.zip(cpu_end).map(|(a, b)| b - a),
        rss_kb_start: rss_start,
        rss_kb_peak: rss_peak,
        peak_active,
    };
    let connected_calls = calls.iter().filter(|c| c.outcome.connected).count() as u64;
    let stayed = sse_totals.stayed.load(Ordering::Relaxed);
    let sse = (opts.sse_clients > 0).then(|| SseReport {
        clients: opts.sse_clients,
        stayed,
        call_ended_expected: stayed * connected_calls,
        call_ended_seen: sse_totals.ended_seen.load(Ordering::Relaxed),
        connected: sse_totals.connected.load(Ordering::Relaxed),
        events: sse_totals.events.load(Ordering::Relaxed),
        dropped: sse_totals.dropped.load(Ordering::Relaxed),
        disconnects: sse_totals.disconnects.load(Ordering::Relaxed),
        errors: sse_totals
            .errors
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default(),
    });
    RunReport {
        target: target.base_url().to_owned(),
        concurrency: opts.concurrency,
        ramp_per_sec: opts.ramp_per_sec,
        hold: opts.hold,
        mix,
        chaos,
        elapsed,
        started,
        calls,
        timeline,
        server,
        server_side,
        generator_cpu_s,
        persistence,
        sse,
    }
}

/// Once a second: active calls, totals, server RSS and CPU; a progress line on stderr.
async fn sample(
    live: Arc<Live>,
    pid: Option<u32>,
    started: Instant,
    progress: bool,
    mut stop: watch::Receiver<bool>,
) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_cpu = pid.and_then(proc::cpu_seconds);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return samples,
        }
        let cpu = pid.and_then(proc::cpu_seconds);
        let cpu_cores = match (last_cpu, cpu) {
            (Some(a), Some(b)) if !samples.is_empty() => Some(b - a),
            _ => None,
        };
        last_cpu = cpu;
        let (turns, p99) = live
            .turns
            .lock()
            .map(|h| (h.len(), h.value_at_quantile(0.99) as f64 / 1000.0))
            .unwrap_or((0, 0.0));
        let s = Sample {
            t_s: started.elapsed().as_secs_f64(),
            active: live.active.load(Ordering::Relaxed).max(0) as u64,
            completed: live.completed.load(Ordering::Relaxed),
            failed: live.failed.load(Ordering::Relaxed),
            rss_kb: pid.and_then(proc::rss_kb),
            cpu_cores,
        };
        if progress {
            let server = match (s.rss_kb, s.cpu_cores) {
                (Some(rss), Some(cpu)) => {
                    format!(" | server {:.0} MB, {cpu:.2} cores", rss as f64 / 1024.0)
                }
                (Some(rss), None) => format!(" | server {:.0} MB", rss as f64 / 1024.0),
                _ => String::new(),
            };
            let p99 = if turns > 0 {
                format!("{p99:.0} ms")
            } else {
                "-".into()
            };
            eprintln!(
                "[{:>4.0}s] active {} completed {} failed {} | turns {turns}, p99 {p99}{server}",
                s.t_s, s.active, s.completed, s.failed
            );
        }
        samples.push(s);
    }
}

/// `GET /api/v1/calls`: is the operator API readable with the token given?
async fn probe_operator_api(target: &Target) -> Result<(), String> {
    match target.api(reqwest::Method::GET, "/api/v1/calls").send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) if r.status().as_u16() == 401 => Err(
            "the operator API wants a token (--operator-token): no context-ready times, restarts or persistence check"
                .into(),
        ),
        Ok(r) => Err(format!("GET /api/v1/calls answered {}", r.status())),
        Err(e) => Err(format!("GET /api/v1/calls: {e}")),
    }
}

/// Asks to crash a call that does not exist: 404 means chaos is on and we may use it.
async fn probe_chaos(target: &Target, requested: f64, run_id: u32) -> ChaosNote {
    let off = |note: String| ChaosNote {
        requested_fraction: requested,
        effective_fraction: 0.0,
        note,
    };
    if requested <= 0.0 {
        return off("off (--chaos-fraction 0)".into());
    }
    let probe = format!("CA{run_id:08x}{:024x}", u64::MAX);
    match target.crash(&probe).await {
        Ok(404) => ChaosNote {
            requested_fraction: requested,
            effective_fraction: requested,
            note: format!(
                "{:.0}% of calls have their actor crashed mid-call (chaos is enabled on the server)",
                requested * 100.0
            ),
        },
        Ok(403) => off(format!(
            "off: the server has chaos disabled (set chaos.enabled = true to crash {:.0}% of calls)",
            requested * 100.0
        )),
        Ok(401) => off("off: the operator API wants a token (--operator-token)".into()),
        Ok(other) => off(format!("off: the chaos route answered {other}")),
        Err(e) => off(format!("off: {e}")),
    }
}

/// The server's own percentiles (ms) from `GET /api/v1/stats`, which counts everything since the
/// server started (a fresh server per run gives the run's). Without the operator API, the first
/// audio p99 falls back to the `/metrics` summary, whose quantiles cover a recent window only.
pub async fn server_side(target: &Target) -> ServerSide {
    let stats = async {
        let response = target
            .api(reqwest::Method::GET, "/api/v1/stats")
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json::<Value>().await.ok()
    }
    .await;
    let percentiles = |key: &str| {
        let v = stats.as_ref()?.get(key)?;
        Stats::from_server(v)
    };
    let first_audio = percentiles("time_to_first_audio_ms");
    let turn = percentiles("turn_first_audio_ms");
    let first_audio_p99_ms = match &first_audio {
        Some(s) => Some(s.p99),
        None => metrics_first_audio_p99(target).await,
    };
    ServerSide {
        first_audio_p99_ms,
        turn,
    }
}

/// Server-side p99 time to first audio (ms) from its /metrics summary, if it still exports one.
async fn metrics_first_audio_p99(target: &Target) -> Option<f64> {
    let text = target
        .http()
        .get(format!("{}/metrics", target.base_url()))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with("switchboard_time_to_first_audio_seconds{quantile=\"0.99\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .filter(|v| v.is_finite())
        .map(|s| s * 1000.0)
}

/// The persistence check: reads every connected call back from `GET /api/v1/calls/{sid}` once
/// it is no longer live (waiting up to 30 s per call) and looks for each caller turn that was
/// said among its stored caller lines. Fills in each record's `stored`.
pub async fn check_persistence(target: &Target, calls: &mut [CallRecord]) -> Persistence {
    let checks: Vec<(usize, StoredCheck)> = futures::stream::iter(
        calls
            .iter()
            .enumerate()
            .filter(|(_, c)| c.outcome.connected)
            .map(|(i, c)| {
                let said: Vec<String> = c
                    .outcome
                    .turns
                    .iter()
                    .filter(|t| t.said)
                    .map(|t| t.text.clone())
                    .collect();
                let sid = c.outcome.call_sid.clone();
                async move { (i, check_one(target, &sid, &said).await) }
            }),
    )
    .buffer_unordered(16)
    .collect()
    .await;
    let mut p = Persistence::default();
    for (i, check) in checks {
        p.calls_checked += 1;
        if !check.stored {
            p.calls_not_stored += 1;
            p.note_example(format!(
                "{}: {}",
                calls[i].outcome.call_sid,
                check.problem.as_deref().unwrap_or("not stored")
            ));
        }
        p.turns_checked += check.turns_checked;
        p.turns_missing += check.turns_missing.len() as u64;
        for t in &check.turns_missing {
            p.note_example(format!(
                "{}: caller turn {t:?} missing from the stored transcript",
                calls[i].outcome.call_sid
            ));
        }
        calls[i].stored = Some(check);
    }
    p
}

async fn check_one(target: &Target, sid: &str, said: &[String]) -> StoredCheck {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut check = StoredCheck::default();
    loop {
        let detail = target.call_detail(sid).await;
        let done = Instant::now() >= deadline;
        match detail {
            Ok(Some(v)) if v["live"] == false => {
                let callers: Vec<String> = v["transcript"]
                    .as_array()
                    .map(|lines| {
                        lines
                            .iter()
                            .filter(|l| l["role"] == "caller")
                            .filter_map(|l| l["text"].as_str())
                            .map(normalize)
                            .collect()
                    })
                    .unwrap_or_default();
                check.stored = true;
                check.restarts = v["restarts"].as_u64();
                check.turns_checked = said.len() as u64;
                check.turns_missing = said
                    .iter()
                    .filter(|t| {
                        let t = normalize(t);
                        !callers.iter().any(|c| c.contains(&t))
                    })
                    .cloned()
                    .collect();
                // Rows are written in batches: give a late flush a moment before calling a
                // turn missing.
                if check.turns_missing.is_empty() || done {
                    return check;
                }
            }
            Ok(Some(_)) => check.problem = Some("still live 30 s after the run".into()),
            Ok(None) => check.problem = Some("the server does not know the call".into()),
            Err(e) => check.problem = Some(e),
        }
        if done {
            check.turns_checked = said.len() as u64;
            if !check.stored {
                check.turns_missing = said.to_vec();
            }
            return check;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn normalize(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}
