//! What a load run found: the per-call records, the once-a-second timeline, server figures, the
//! persistence check and the SSE clients' counts; printed as a human summary, written as JSON
//! ([`RunReport::to_json`]) and drawn as a PNG ([`RunReport::write_chart`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::call::{CallOutcome, Transport};
use crate::scenario::{CallerKind, Mix};

/// One placed call and what the persistence check found for it.
#[derive(Clone, Debug)]
pub struct CallRecord {
    pub outcome: CallOutcome,
    pub kind: CallerKind,
    pub chaos: bool,
    pub stored: Option<StoredCheck>,
}

/// The call's stored record, read back after the run.
#[derive(Clone, Debug, Default)]
pub struct StoredCheck {
    /// `GET /api/v1/calls/{sid}` answered with the ended call.
    pub stored: bool,
    pub restarts: Option<u64>,
    pub turns_checked: u64,
    /// Caller turns said but not found among the stored caller lines.
    pub turns_missing: Vec<String>,
    pub problem: Option<String>,
}

/// The persistence check, added up.
#[derive(Clone, Debug, Default)]
pub struct Persistence {
    /// Why the check did not run.
    pub skipped: Option<String>,
    pub calls_checked: u64,
    pub calls_not_stored: u64,
    pub turns_checked: u64,
    pub turns_missing: u64,
    pub examples: Vec<String>,
}

impl Persistence {
    pub(crate) fn skipped(why: &str) -> Persistence {
        Persistence {
            skipped: Some(why.to_owned()),
            ..Persistence::default()
        }
    }

    pub(crate) fn note_example(&mut self, e: String) {
        if self.examples.len() < 10 {
            self.examples.push(e);
        }
    }
}

/// What became of `--chaos-fraction`.
#[derive(Clone, Debug)]
pub struct ChaosNote {
    pub requested_fraction: f64,
    pub effective_fraction: f64,
    pub note: String,
}

/// One second of the run.
#[derive(Clone, Debug)]
pub struct Sample {
    pub t_s: f64,
    pub active: u64,
    pub completed: u64,
    pub failed: u64,
    pub rss_kb: Option<u64>,
    /// Server CPU used over the last second (cores).
    pub cpu_cores: Option<f64>,
}

#[derive(Clone, Debug)]
pub struct ServerStats {
    pub pid: Option<u32>,
    pub cpu_s: Option<f64>,
    pub rss_kb_start: Option<u64>,
    pub rss_kb_peak: Option<u64>,
    pub peak_active: u64,
}

#[derive(Clone, Debug)]
pub struct SseReport {
    pub clients: usize,
    /// Clients connected from start to end of the run.
    pub stayed: u64,
    /// `call_ended` events of this run's calls the clients that stayed should have received...
    pub call_ended_expected: u64,
    /// ...and did.
    pub call_ended_seen: u64,
    pub connected: u64,
    pub events: u64,
    pub dropped: u64,
    pub disconnects: u64,
    pub errors: Vec<String>,
}

/// Everything a run measured.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub target: String,
    pub concurrency: usize,
    pub ramp_per_sec: f64,
    pub hold: Duration,
    pub mix: Mix,
    pub chaos: ChaosNote,
    pub elapsed: Duration,
    pub started: Instant,
    pub calls: Vec<CallRecord>,
    pub timeline: Vec<Sample>,
    pub server: ServerStats,
    pub server_side: ServerSide,
    /// The load generator's own CPU time (user + system) over the calls, from /proc: on a
    /// shared machine, what it took from the server.
    pub generator_cpu_s: Option<f64>,
    pub persistence: Persistence,
    pub sse: Option<SseReport>,
}

/// What the server measured itself (`GET /api/v1/stats`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServerSide {
    /// p99 time from `start` to the first greeting frame on the socket.
    pub first_audio_p99_ms: Option<f64>,
    /// Each answered turn, from the caller's final transcript reaching the call to the reply's
    /// first audio on the socket: the server's own part, without the recognizer's.
    pub turn: Option<Stats>,
}

/// Percentiles of a set of millisecond values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    pub count: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Stats {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Stats> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        // Nearest rank.
        let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Some(Stats {
            count: v.len(),
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            max: v[v.len() - 1],
        })
    }

    /// The server's `{count, p50, p95, p99, max}` (`/api/v1/stats`); `None` when it counted nothing.
    pub fn from_server(v: &Value) -> Option<Stats> {
        let count = v.get("count")?.as_u64().filter(|&n| n > 0)?;
        let f = |k: &str| v.get(k)?.as_f64();
        Some(Stats {
            count: count as usize,
            p50: f("p50")?,
            p95: f("p95")?,
            p99: f("p99")?,
            max: f("max")?,
        })
    }

    fn json(s: &Option<Stats>) -> Value {
        match s {
            Some(s) => {
                json!({"count": s.count, "p50": round(s.p50), "p95": round(s.p95), "p99": round(s.p99), "max": round(s.max)})
            }
            None => Value::Null,
        }
    }

    fn line(s: &Option<Stats>) -> String {
        match s {
            Some(s) => format!(
                "p50 {} · p95 {} · p99 {} · max {} ms (n={})",
                ms(s.p50),
                ms(s.p95),
                ms(s.p99),
                ms(s.max),
                s.count
            ),
            None => "n/a".into(),
        }
    }
}

/// Upper bounds (ms) of the per-turn latency histogram buckets; the last bucket is open.
const BUCKETS_MS: &[f64] = &[
    10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
];

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn ms(x: f64) -> String {
    if x < 10.0 {
        format!("{x:.2}")
    } else if x < 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.0}")
    }
}

fn as_ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Per-second latency series for the chart and the JSON timeline.
#[derive(Clone, Debug, Default)]
pub(crate) struct SecondSeries {
    pub t_s: f64,
    pub first_audio: Option<Stats>,
    pub turns: Option<Stats>,
}

impl RunReport {
    pub fn placed(&self) -> usize {
        self.calls.len()
    }

    pub fn completed(&self) -> usize {
        self.calls.iter().filter(|c| c.outcome.completed()).count()
    }

    pub fn failed(&self) -> usize {
        self.placed() - self.completed()
    }

    pub fn first_audio(&self) -> Option<Stats> {
        Stats::of(
            self.calls
                .iter()
                .filter_map(|c| c.outcome.first_audio.map(as_ms)),
        )
    }

    pub fn turn_latency(&self, transport: Option<Transport>) -> Option<Stats> {
        Stats::of(
            self.calls
                .iter()
                .filter(|c| transport.is_none_or(|t| c.outcome.transport == t))
                .flat_map(|c| c.outcome.turns.iter().filter_map(|t| t.latency.map(as_ms))),
        )
    }

    /// Media Streams turns, from the caller frame that completed the recognizer's endpointing
    /// window to the first agent audio: the server's share of a turn
    /// ([`crate::TurnOutcome::after_endpoint`]).
    pub fn after_endpoint(&self) -> Option<Stats> {
        Stats::of(self.calls.iter().flat_map(|c| {
            c.outcome
                .turns
                .iter()
                .filter_map(|t| t.after_endpoint.map(as_ms))
        }))
    }

    pub fn context_ready(&self) -> Option<Stats> {
        Stats::of(self.calls.iter().filter_map(|c| c.outcome.context_ready_ms))
    }

    fn failures_by_kind(&self) -> BTreeMap<&'static str, usize> {
        let mut m = BTreeMap::new();
        for c in &self.calls {
            if let Some(e) = &c.outcome.error {
                *m.entry(e.kind).or_default() += 1;
            }
        }
        m
    }

    fn failure_examples(&self) -> Vec<String> {
        let mut seen = BTreeMap::new();
        for c in &self.calls {
            if let Some(e) = &c.outcome.error {
                seen.entry(e.kind).or_insert_with(Vec::new);
                let list = seen.get_mut(e.kind).expect("just inserted");
                if list.len() < 3 {
                    list.push(format!("{}: {e}", c.outcome.call_sid));
                }
            }
        }
        seen.into_values().flatten().collect()
    }

    fn turn_counts(&self) -> Value {
        let turns = || self.calls.iter().flat_map(|c| c.outcome.turns.iter());
        let media_turns = || {
            self.calls
                .iter()
                .filter(|c| c.outcome.transport == Transport::Media)
                .flat_map(|c| c.outcome.turns.iter())
        };
        json!({
            "planned": turns().count(),
            "said": turns().filter(|t| t.said).count(),
            "replied": turns().filter(|t| t.latency.is_some()).count(),
            "barge_in_planned": turns().filter(|t| t.barge_in).count(),
            "talked_over_agent": turns().filter(|t| t.talked_over_agent).count(),
            "media_talked_over_agent": media_turns().filter(|t| t.talked_over_agent).count(),
            "media_clear_received": media_turns().filter(|t| t.talked_over_agent && t.clear_received).count(),
        })
    }

    fn latency_histogram(&self) -> Vec<(Option<f64>, usize)> {
        let mut counts = vec![0usize; BUCKETS_MS.len() + 1];
        for c in &self.calls {
            for t in &c.outcome.turns {
                if let Some(l) = t.latency.map(as_ms) {
                    let i = BUCKETS_MS
                        .iter()
                        .position(|b| l <= *b)
                        .unwrap_or(BUCKETS_MS.len());
                    counts[i] += 1;
                }
            }
        }
        counts
            .into_iter()
            .enumerate()
            .map(|(i, n)| (BUCKETS_MS.get(i).copied(), n))
            .collect()
    }

    fn scenarios(&self) -> Value {
        let of = |f: &dyn Fn(&CallRecord) -> bool| {
            let calls: Vec<&CallRecord> = self.calls.iter().filter(|c| f(c)).collect();
            json!({
                "calls": calls.len(),
                "completed": calls.iter().filter(|c| c.outcome.completed()).count(),
                "recognized": calls.iter().filter(|c| c.outcome.context_status.as_deref().is_some_and(|s| s.starts_with("found"))).count(),
            })
        };
        let chaos: Vec<&CallRecord> = self.calls.iter().filter(|c| c.chaos).collect();
        let restarts = |c: &CallRecord| {
            c.outcome
                .restarts
                .into_iter()
                .chain(c.stored.as_ref().and_then(|s| s.restarts))
                .max()
        };
        json!({
            "new": of(&|c| c.kind == CallerKind::New),
            "returning": of(&|c| c.kind == CallerKind::Returning),
            "media": of(&|c| c.outcome.transport == Transport::Media),
            "relay": of(&|c| c.outcome.transport == Transport::Relay),
            "chaos": {
                "calls": chaos.len(),
                "completed": chaos.iter().filter(|c| c.outcome.completed()).count(),
                "crash_accepted": chaos.iter().filter(|c| c.outcome.crash_status == Some(202)).count(),
                "restarted": chaos.iter().filter(|c| restarts(c).is_some_and(|r| r >= 1)).count(),
            },
        })
    }

    pub(crate) fn per_second(&self) -> Vec<SecondSeries> {
        let secs = self.elapsed.as_secs() as usize + 1;
        let mut first: Vec<Vec<f64>> = vec![Vec::new(); secs];
        let mut turns: Vec<Vec<f64>> = vec![Vec::new(); secs];
        let idx = |at: Instant| {
            (at.saturating_duration_since(self.started).as_secs() as usize).min(secs - 1)
        };
        for c in &self.calls {
            if let (Some(at), Some(d)) = (c.outcome.first_audio_at, c.outcome.first_audio) {
                first[idx(at)].push(as_ms(d));
            }
            for t in &c.outcome.turns {
                if let (Some(at), Some(d)) = (t.replied_at, t.latency) {
                    turns[idx(at)].push(as_ms(d));
                }
            }
        }
        first
            .into_iter()
            .zip(turns)
            .enumerate()
            .map(|(i, (f, t))| SecondSeries {
                t_s: i as f64,
                first_audio: Stats::of(f),
                turns: Stats::of(t),
            })
            .collect()
    }

    fn server_json(&self) -> Value {
        let s = &self.server;
        let secs = self.elapsed.as_secs_f64();
        let per_call_kb = match (s.rss_kb_start, s.rss_kb_peak) {
            (Some(a), Some(b)) if s.peak_active > 0 => Some(b.saturating_sub(a) / s.peak_active),
            _ => None,
        };
        json!({
            "pid": s.pid,
            "cpu_s": s.cpu_s.map(round),
            "cpu_cores_avg": s.cpu_s.map(|c| round(c / secs.max(0.001))),
            "cpu_ms_per_call": s.cpu_s.filter(|_| self.placed() > 0).map(|c| round(c * 1000.0 / self.placed() as f64)),
            "rss_kb_start": s.rss_kb_start,
            "rss_kb_peak": s.rss_kb_peak,
            "peak_active_calls": s.peak_active,
            "rss_kb_per_active_call": per_call_kb,
        })
    }

    /// The JSON report (`--report FILE`).
    pub fn to_json(&self) -> Value {
        let sum =
            |f: &dyn Fn(&CallOutcome) -> u64| self.calls.iter().map(|c| f(&c.outcome)).sum::<u64>();
        let series = self.per_second();
        let timeline: Vec<Value> = self
            .timeline
            .iter()
            .map(|s| {
                let sec = series.get(s.t_s.floor() as usize);
                let f = sec.and_then(|x| x.first_audio.clone());
                let t = sec.and_then(|x| x.turns.clone());
                json!({
                    "t_s": round(s.t_s),
                    "active": s.active,
                    "completed": s.completed,
                    "failed": s.failed,
                    "rss_kb": s.rss_kb,
                    "cpu_cores": s.cpu_cores.map(round),
                    "first_audio_p50_ms": f.as_ref().map(|x| round(x.p50)),
                    "first_audio_p99_ms": f.as_ref().map(|x| round(x.p99)),
                    "turn_p50_ms": t.as_ref().map(|x| round(x.p50)),
                    "turn_p99_ms": t.as_ref().map(|x| round(x.p99)),
                })
            })
            .collect();
        let p = &self.persistence;
        json!({
            "target": self.target,
            "concurrency": self.concurrency,
            "ramp_per_sec": self.ramp_per_sec,
            "hold_s": self.hold.as_secs_f64(),
            "transport": self.mix.transport,
            "turns_per_call": self.mix.turns,
            "returning_fraction": self.mix.returning_fraction,
            "barge_in_fraction": self.mix.barge_in_fraction,
            "seeded_customers": self.mix.seeded_customers,
            "elapsed_s": round(self.elapsed.as_secs_f64()),
            "calls": {
                "placed": self.placed(),
                "completed": self.completed(),
                "failed": self.failed(),
                "failures_by_kind": self.failures_by_kind(),
                "failure_examples": self.failure_examples(),
                "twiml_named_other_transport": self.calls.iter().filter(|c| c.outcome.twiml_mismatch).count(),
                "scenarios": self.scenarios(),
            },
            "first_audio_ms": {
                "client": Stats::json(&self.first_audio()),
                "server_p99": self.server_side.first_audio_p99_ms.map(round),
            },
            "context_ready_ms": Stats::json(&self.context_ready()),
            "turn_latency_ms": {
                "all": Stats::json(&self.turn_latency(None)),
                "media": Stats::json(&self.turn_latency(Some(Transport::Media))),
                "relay": Stats::json(&self.turn_latency(Some(Transport::Relay))),
                "media_after_endpoint": Stats::json(&self.after_endpoint()),
                "server_side": Stats::json(&self.server_side.turn),
                "histogram": self.latency_histogram().iter().map(|(le, n)| json!({"le_ms": le, "count": n})).collect::<Vec<_>>(),
            },
            "turns": self.turn_counts(),
            "frames": {
                "sent": sum(&|c| c.frames_sent),
                "late_client": sum(&|c| c.late_frames),
                "agent_audio_received": sum(&|c| c.audio_frames_received),
                "marks_echoed": sum(&|c| c.marks_echoed),
                "clears_received": sum(&|c| c.clears_received),
            },
            "generator": {
                "cpu_s": self.generator_cpu_s.map(round),
                "cpu_cores_avg": self.generator_cpu_s.map(|c| round(c / self.elapsed.as_secs_f64().max(0.001))),
            },
            "server": self.server_json(),
            "persistence": {
                "skipped": p.skipped,
                "calls_checked": p.calls_checked,
                "calls_not_stored": p.calls_not_stored,
                "turns_checked": p.turns_checked,
                "turns_missing": p.turns_missing,
                "examples": p.examples,
            },
            "sse": self.sse.as_ref().map(|s| json!({
                "clients": s.clients, "connected": s.connected, "stayed_connected": s.stayed,
                "events": s.events,
                "call_ended_expected": s.call_ended_expected, "call_ended_seen": s.call_ended_seen,
                "call_ended_missed": s.call_ended_expected.saturating_sub(s.call_ended_seen),
                "dropped_admitted": s.dropped, "disconnected_by_server": s.disconnects,
                "errors": s.errors,
            })),
            "chaos": {
                "requested_fraction": self.chaos.requested_fraction,
                "effective_fraction": self.chaos.effective_fraction,
                "note": self.chaos.note,
            },
            "timeline": timeline,
        })
    }

    /// The human summary printed on stdout.
    pub fn summary(&self) -> String {
        let j = self.to_json();
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Switchboard load run against {}: {} concurrent calls (ramp {}/s, hold {} s), {} caller turns per call, transport {}, {:.1} s",
            self.target,
            self.concurrency,
            self.ramp_per_sec,
            self.hold.as_secs(),
            self.mix.turns,
            j["transport"].as_str().unwrap_or("?"),
            self.elapsed.as_secs_f64()
        );
        let sc = &j["calls"]["scenarios"];
        let _ = writeln!(
            s,
            "calls         {} placed, {} completed, {} failed",
            self.placed(),
            self.completed(),
            self.failed()
        );
        let _ = writeln!(
            s,
            "              new {} · returning {} (recognized {}) · media {} · relay {}",
            sc["new"]["calls"],
            sc["returning"]["calls"],
            sc["returning"]["recognized"],
            sc["media"]["calls"],
            sc["relay"]["calls"]
        );
        let _ = writeln!(
            s,
            "chaos         {}; {} calls crashed ({} accepted, {} restarted, {} completed)",
            self.chaos.note,
            sc["chaos"]["calls"],
            sc["chaos"]["crash_accepted"],
            sc["chaos"]["restarted"],
            sc["chaos"]["completed"]
        );
        let server_p99 = self
            .server_side
            .first_audio_p99_ms
            .map(|v| format!("; server p99 {} ms", ms(v)))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "first audio   client {}{server_p99}",
            Stats::line(&self.first_audio())
        );
        let ctx = match self.context_ready() {
            Some(_) => Stats::line(&self.context_ready()),
            None => "n/a (the server does not report context.ready_after_ms, or the operator API was not readable)".into(),
        };
        let _ = writeln!(s, "context ready {ctx}");
        let t = &j["turns"];
        let _ = writeln!(
            s,
            "turns         {} said, {} answered; barge-in: {} planned, {} talked over the agent; media: {} of {} barge-ins got a clear",
            t["said"],
            t["replied"],
            t["barge_in_planned"],
            t["talked_over_agent"],
            t["media_clear_received"],
            t["media_talked_over_agent"]
        );
        let _ = writeln!(s, "turn latency  {}", Stats::line(&self.turn_latency(None)));
        for transport in [Transport::Media, Transport::Relay] {
            if let Some(st) = self.turn_latency(Some(transport)) {
                let _ = writeln!(s, "  {:<11} {}", transport.as_str(), Stats::line(&Some(st)));
            }
        }
        if let Some(st) = self.after_endpoint() {
            let _ = writeln!(
                s,
                "  server part {} (media: from the caller frame that completed the recognizer's endpointing silence)",
                Stats::line(&Some(st))
            );
        }
        if self.server_side.turn.is_some() {
            let _ = writeln!(
                s,
                "  server side {} (the server's own clock: final transcript → first reply audio on the socket)",
                Stats::line(&self.server_side.turn)
            );
        }
        let hist: Vec<String> = self
            .latency_histogram()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(le, n)| match le {
                Some(le) => format!("≤{le} ms: {n}"),
                None => format!(">{} ms: {n}", BUCKETS_MS[BUCKETS_MS.len() - 1]),
            })
            .collect();
        if !hist.is_empty() {
            let _ = writeln!(s, "  histogram   {}", hist.join(" · "));
        }
        let f = &j["frames"];
        let sent = f["sent"].as_u64().unwrap_or(0);
        let late = f["late_client"].as_u64().unwrap_or(0);
        let _ = writeln!(
            s,
            "frames        {sent} caller frames sent, {late} late on the client ({:.2} %); {} agent frames/tokens received, {} marks echoed",
            if sent > 0 {
                late as f64 * 100.0 / sent as f64
            } else {
                0.0
            },
            f["agent_audio_received"],
            f["marks_echoed"]
        );
        if let Some(cores) = j["generator"]["cpu_cores_avg"].as_f64() {
            let _ = writeln!(
                s,
                "generator     CPU {} s ({cores} cores avg): this load generator's own, beside the server",
                j["generator"]["cpu_s"]
            );
        }
        let sv = &j["server"];
        if self.server.pid.is_some() {
            let mb = |v: &Value| {
                v.as_u64()
                    .map_or("?".into(), |kb| format!("{:.0} MB", kb as f64 / 1024.0))
            };
            let _ = writeln!(
                s,
                "server        CPU {} s ({} cores avg, {} ms per call); RSS {} → peak {} ({} KB per active call at {} active)",
                sv["cpu_s"],
                sv["cpu_cores_avg"],
                sv["cpu_ms_per_call"],
                mb(&sv["rss_kb_start"]),
                mb(&sv["rss_kb_peak"]),
                sv["rss_kb_per_active_call"],
                sv["peak_active_calls"]
            );
        } else {
            let _ = writeln!(s, "server        not sampled (no --server-pid)");
        }
        let p = &self.persistence;
        match &p.skipped {
            Some(why) => {
                let _ = writeln!(s, "persistence   skipped: {why}");
            }
            None => {
                let _ = writeln!(
                    s,
                    "persistence   {} calls read back ({} not stored), {} caller turns checked, {} missing",
                    p.calls_checked, p.calls_not_stored, p.turns_checked, p.turns_missing
                );
                for e in p.examples.iter().take(5) {
                    let _ = writeln!(s, "              {e}");
                }
            }
        }
        if let Some(sse) = &self.sse {
            let _ = writeln!(
                s,
                "sse           {} clients, {} connected ({} for the whole run, {} disconnected by the server), {} events received; call_ended: {} of {} received ({} missed), {} drops admitted by the stream{}",
                sse.clients,
                sse.connected,
                sse.stayed,
                sse.disconnects,
                sse.events,
                sse.call_ended_seen,
                sse.call_ended_expected,
                sse.call_ended_expected.saturating_sub(sse.call_ended_seen),
                sse.dropped,
                if sse.errors.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", sse.errors.join("; "))
                }
            );
        }
        let by_kind = self.failures_by_kind();
        if !by_kind.is_empty() {
            let kinds: Vec<String> = by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
            let _ = writeln!(s, "failures      {}", kinds.join(" · "));
            for e in self.failure_examples() {
                let _ = writeln!(s, "              {e}");
            }
        }
        s
    }

    /// Draws the run as a PNG (`--chart FILE`).
    pub fn write_chart(&self, path: &std::path::Path) -> Result<(), String> {
        crate::chart::draw(self, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s = Stats::of((1..=100).map(f64::from)).unwrap();
        assert_eq!(
            (s.p50, s.p95, s.p99, s.max, s.count),
            (50.0, 95.0, 99.0, 100.0, 100)
        );
        assert_eq!(Stats::of([7.0]).unwrap().p99, 7.0);
        assert!(Stats::of([]).is_none());
    }

    #[test]
    fn server_percentiles_are_read_as_the_stats_endpoint_writes_them() {
        let v = serde_json::json!({"count": 3, "p50": 1.5, "p95": 2.0, "p99": 2.25, "max": 2.5});
        assert_eq!(
            Stats::from_server(&v),
            Some(Stats {
                count: 3,
                p50: 1.5,
                p95: 2.0,
                p99: 2.25,
                max: 2.5
            })
        );
        // Nothing counted yet: the server writes nulls.
        let empty =
            serde_json::json!({"count": 0, "p50": null, "p95": null, "p99": null, "max": null});
        assert_eq!(Stats::from_server(&empty), None);
        assert_eq!(Stats::from_server(&serde_json::json!({})), None);
    }
}
