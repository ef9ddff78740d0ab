//! `switchboard-loadtest`: simulated Twilio callers against a running Switchboard server (see the
//! library's docs for what one call does). Ramps to `--calls` concurrent calls, holds them for
//! `--hold-s`, prints a summary on stdout and progress on stderr, and optionally writes a JSON
//! report and a PNG chart. Exit code 1 when a call failed or a caller turn was not persisted.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use switchboard_loadtest::Target;
use switchboard_loadtest::call::DEFAULT_ENDPOINTING;
use switchboard_loadtest::run::{self, Options};
use switchboard_loadtest::scenario::{Mix, TransportMix};

#[derive(Parser, Debug)]
#[command(
    name = "switchboard-loadtest",
    about = "Simulated Twilio calls against a running Switchboard server"
)]
struct Args {
    /// Base URL of the server (http://host:port).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The server's public URL (server.public_url, what Twilio signs); defaults to --url.
    #[arg(long)]
    public_url: Option<String>,
    /// Twilio auth token: sign the webhook and the WebSocket upgrade (as Twilio does).
    #[arg(long, default_value = "")]
    auth_token: String,
    /// Operator API token (operator.token): chaos crashes, context-ready times, the
    /// persistence check and the SSE clients use /api/v1.
    #[arg(long, default_value = "")]
    operator_token: String,
    /// Concurrent calls to ramp up to and hold.
    #[arg(long, default_value_t = 100)]
    calls: usize,
    /// New calls started per second while ramping up.
    #[arg(long, default_value_t = 50.0)]
    ramp_per_sec: f64,
    /// Hold the target concurrency this long after the ramp, placing a new call in each slot as
    /// soon as its previous one ends. 0: each slot places one call (--calls calls in all).
    #[arg(long, default_value_t = 0)]
    hold_s: u64,
    /// media (Media Streams), relay (ConversationRelay) or mixed (every other call). The webhook
    /// is posted either way; a call uses its transport's endpoint even if the TwiML names the
    /// other (the server serves both).
    #[arg(long, value_enum, default_value_t = TransportMix::Media)]
    transport: TransportMix,
    /// Caller turns per call. New callers give their name first ("My name is ...").
    #[arg(long, default_value_t = 3)]
    turns: usize,
    /// Fraction of calls from seeded customers' numbers (returning callers).
    #[arg(long, default_value_t = 0.3)]
    returning_fraction: f64,
    /// How many customers `switchboard seed --customers N` loaded (returning callers pick among
    /// their numbers). 0: every caller is new.
    #[arg(long, default_value_t = 1000)]
    seeded_customers: u64,
    /// Fraction of calls whose actor is crashed mid-call through POST /api/v1/calls/{sid}/crash.
    /// Needs chaos.enabled = true on the server; checked at start, and off (with a note) if not.
    #[arg(long, default_value_t = 0.05)]
    chaos_fraction: f64,
    /// Probability that a caller turn after the first talks over the agent's reply.
    #[arg(long, default_value_t = 0.2)]
    barge_in_fraction: f64,
    /// Each call stays on the line (silent after its last turn) at least this long.
    #[arg(long, default_value_t = 0)]
    min_call_s: u64,
    /// Longest wait for the agent's reply to one caller turn.
    #[arg(long, default_value_t = 20)]
    reply_timeout_s: u64,
    /// The server's `stt.endpointing_ms`: the silence after a caller turn before the recognizer
    /// ends it. The server's share of a turn is measured from the frame that completes it.
    #[arg(long, default_value_t = DEFAULT_ENDPOINTING.as_millis() as u64)]
    endpointing_ms: u64,
    /// Seed for the scenario choices and the new callers' numbers (default: from the clock, so
    /// new callers are new on every run).
    #[arg(long)]
    seed: Option<u64>,
    /// PID of the server, to sample its CPU time and RSS from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Hold this many GET /api/v1/calls/events (SSE) connections during the run.
    #[arg(long, default_value_t = 0)]
    sse_clients: usize,
    /// Skip reading every call's stored transcript back after the run.
    #[arg(long)]
    no_persistence_check: bool,
    /// Write the JSON report here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Draw latency, server RSS and active calls over the run into this PNG.
    #[arg(long)]
    chart: Option<PathBuf>,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let seed = args.seed.unwrap_or(now.as_secs());
    let run_id = (now.as_millis() as u32) ^ std::process::id();
    let mut target = Target::new(&args.url)
        .with_twilio_auth_token(args.auth_token.clone())
        .with_operator_token(args.operator_token.clone());
    if let Some(public) = &args.public_url {
        target = target.with_public_url(public.clone());
    }
    let fraction = |name: &str, v: f64| {
        if !(0.0..=1.0).contains(&v) {
            eprintln!("--{name} must be between 0 and 1, got {v}");
            std::process::exit(2);
        }
        v
    };
    let mix = Mix {
        transport: args.transport,
        turns: args.turns,
        returning_fraction: fraction("returning-fraction", args.returning_fraction),
        chaos_fraction: fraction("chaos-fraction", args.chaos_fraction),
        barge_in_fraction: fraction("barge-in-fraction", args.barge_in_fraction),
        seeded_customers: args.seeded_customers,
        min_duration: Duration::from_secs(args.min_call_s),
        seed,
        reply_timeout: Duration::from_secs(args.reply_timeout_s),
        endpointing: Duration::from_millis(args.endpointing_ms),
    };
    if !args.quiet {
        eprintln!(
            "{} concurrent {:?} calls against {} (ramp {}/s, hold {} s), {} turns each, {:.0}% returning, {:.0}% barge-in turns, seed {seed}",
            args.calls,
            args.transport,
            args.url,
            args.ramp_per_sec,
            args.hold_s,
            args.turns,
            args.returning_fraction * 100.0,
            args.barge_in_fraction * 100.0
        );
    }
    let report = run::run(Options {
        target,
        concurrency: args.calls,
        ramp_per_sec: args.ramp_per_sec,
        hold: Duration::from_secs(args.hold_s),
        mix,
        server_pid: args.server_pid,
        sse_clients: args.sse_clients,
        persistence_check: !args.no_persistence_check,
        progress: !args.quiet,
        run_id,
    })
    .await;
    println!("{}", report.summary());
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&report.to_json()).unwrap_or_default();
        if let Err(e) = std::fs::write(path, json) {
            eprintln!("writing {}: {e}", path.display());
        }
    }
    if let Some(path) = &args.chart
        && let Err(e) = report.write_chart(path)
    {
        eprintln!("{e}");
    }
    if report.failed() > 0 || report.persistence.turns_missing > 0 {
        std::process::exit(1);
    }
}
