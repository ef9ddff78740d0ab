//! `switchboard-loadtest`: simulates concurrent Twilio Media Streams calls against a running
//! server over the real protocols — the signed voice webhook, then the media WebSocket with
//! `connected`, `start`, 160-byte mu-law frames every 20 ms in real time (correct sequence
//! numbers, chunks and timestamps), marks echoed only once the audio queued before them has
//! "played" (as Twilio does), and `stop`. It reports time to first greeting audio (client- and
//! server-side), late inbound frames on the client (so an overloaded client is not blamed on the
//! server), and the server's CPU and memory sampled from /proc.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Parser;
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::json;
use switchboard_twilio::media::{self, InboundFrame, Media, MediaFormat, OutboundFrame, Start};
use switchboard_twilio::signature;
use tokio::sync::Mutex;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "switchboard-loadtest",
    about = "Simulated Twilio calls against a running Switchboard server"
)]
struct Args {
    /// Base URL of the server (http://host:port).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Concurrent calls to hold.
    #[arg(long, default_value_t = 100)]
    calls: usize,
    /// New calls started per second while ramping up.
    #[arg(long, default_value_t = 200)]
    ramp_per_sec: u32,
    /// How long each call stays on the line, in seconds.
    #[arg(long, default_value_t = 10)]
    hold_s: u64,
    /// Twilio auth token: sign the webhook and the WebSocket upgrade (as Twilio does).
    #[arg(long, default_value = "")]
    auth_token: String,
    /// The server's public URL (what Twilio signs); defaults to --url.
    #[arg(long)]
    public_url: Option<String>,
    /// PID of the server, to sample its CPU time and RSS from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Caller numbers: `+1`, this area code, then 555-0000 plus the call's index: valid North
    /// American numbers, so every call's CRM lookup runs (they are new callers unless seeded).
    #[arg(long, default_value = "202")]
    area_code: String,
    /// Write the JSON report here.
    #[arg(long)]
    report: Option<std::path::PathBuf>,
}

#[derive(Default)]
struct Totals {
    completed: AtomicU64,
    failed: AtomicU64,
    late_frames: AtomicU64,
    frames_sent: AtomicU64,
    media_received: AtomicU64,
    marks_echoed: AtomicU64,
}

struct Shared {
    args: Args,
    totals: Totals,
    first_audio: Mutex<Histogram<u64>>,
    failures: Mutex<Vec<String>>,
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let shared = Arc::new(Shared {
        args: args.clone(),
        totals: Totals::default(),
        first_audio: Mutex::new(
            Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
        ),
        failures: Mutex::new(Vec::new()),
    });
    let cpu_before = args.server_pid.and_then(proc_cpu_ticks);
    let wall = Instant::now();
    let run_id = std::process::id();
    let mut tasks = Vec::with_capacity(args.calls);
    let gap = Duration::from_secs_f64(1.0 / f64::from(args.ramp_per_sec.max(1)));
    let progress = tokio::spawn(progress(shared.clone()));
    let mut peak_rss_kb = 0;
    for i in 0..args.calls {
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            let sid = format!("CA{run_id:08x}{i:024x}");
            if let Err(e) = call(shared.clone(), &sid, i).await {
                shared.totals.failed.fetch_add(1, Ordering::Relaxed);
                let mut f = shared.failures.lock().await;
                if f.len() < 20 {
                    f.push(format!("{sid}: {e}"));
                }
            } else {
                shared.totals.completed.fetch_add(1, Ordering::Relaxed);
            }
        }));
        tokio::time::sleep(gap).await;
    }
    // Sample the server's memory while every call is up (the middle of the hold).
    if let Some(pid) = args.server_pid {
        tokio::time::sleep(Duration::from_secs(args.hold_s / 2)).await;
        peak_rss_kb = proc_rss_kb(pid).unwrap_or(0);
    }
    for t in tasks {
        let _ = t.await;
    }
    progress.abort();
    let elapsed = wall.elapsed().as_secs_f64();
    let cpu_s = match (cpu_before, args.server_pid.and_then(proc_cpu_ticks)) {
        (Some(a), Some(b)) => Some((b - a) as f64 / 100.0),
        _ => None,
    };
    let server_p99_ms = server_first_audio_p99(&args.url).await;
    let h = shared.first_audio.lock().await;
    let t = &shared.totals;
    let report = json!({
        "calls": args.calls,
        "completed": t.completed.load(Ordering::Relaxed),
        "failed": t.failed.load(Ordering::Relaxed),
        "hold_s": args.hold_s,
        "elapsed_s": elapsed,
        "first_audio_ms_client": {"p50": h.value_at_quantile(0.5) as f64 / 1000.0, "p99": h.value_at_quantile(0.99) as f64 / 1000.0, "max": h.max() as f64 / 1000.0},
        "first_audio_ms_server_p99": server_p99_ms,
        "frames_sent": t.frames_sent.load(Ordering::Relaxed),
        "late_frames_client": t.late_frames.load(Ordering::Relaxed),
        "media_frames_received": t.media_received.load(Ordering::Relaxed),
        "marks_echoed": t.marks_echoed.load(Ordering::Relaxed),
        "server_cpu_s": cpu_s,
        "server_cpu_cores_avg": cpu_s.map(|c| c / elapsed),
        "server_rss_kb_mid_hold": peak_rss_kb,
        "server_rss_kb_per_call": if args.calls > 0 { peak_rss_kb / args.calls as u64 } else { 0 },
        "failures": *shared.failures.lock().await,
    });
    println!(
        "\n{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    if let Some(path) = &args.report {
        let _ = std::fs::write(
            path,
            serde_json::to_string_pretty(&report).unwrap_or_default(),
        );
    }
    if t.failed.load(Ordering::Relaxed) > 0 {
        std::process::exit(1);
    }
}

async fn progress(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        let t = &shared.totals;
        eprintln!(
            "completed {} failed {} frames sent {} late {} media received {}",
            t.completed.load(Ordering::Relaxed),
            t.failed.load(Ordering::Relaxed),
            t.frames_sent.load(Ordering::Relaxed),
            t.late_frames.load(Ordering::Relaxed),
            t.media_received.load(Ordering::Relaxed)
        );
    }
}

/// One simulated call, as Twilio would place it.
async fn call(shared: Arc<Shared>, sid: &str, i: usize) -> Result<(), String> {
    let a = &shared.args;
    let base = a.url.trim_end_matches('/');
    let public = a.public_url.clone().unwrap_or_else(|| base.to_owned());
    let from = format!("+1{}{}", a.area_code, 5_550_000 + i % 4_000_000);
    // 1. The voice webhook (signed), as Twilio calls it when the call arrives.
    let fields = [
        ("CallSid", sid),
        ("AccountSid", "AC0000"),
        ("From", from.as_str()),
        ("To", "+15557654321"),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
    ];
    let body: String = fields
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let client = reqwest::Client::new();
    let mut req = client
        .post(format!("{base}/twilio/voice"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if !a.auth_token.is_empty() {
        let url = format!("{}/twilio/voice", public.trim_end_matches('/'));
        req = req.header(
            "X-Twilio-Signature",
            signature::compute(&a.auth_token, &url, &fields),
        );
    }
    let resp = req.send().await.map_err(|e| format!("webhook: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("webhook answered {}", resp.status()));
    }
    // 2. The media stream.
    let ws_url = format!("{}/twilio/media", base.replacen("http", "ws", 1));
    let mut request = ws_url.into_client_request().map_err(|e| e.to_string())?;
    if !a.auth_token.is_empty() {
        let signed =
            signature::websocket_url(&public, "/twilio/media").map_err(|e| e.to_string())?;
        let sig = signature::compute(&a.auth_token, &signed, &[] as &[(&str, &str)]);
        request.headers_mut().insert(
            "x-twilio-signature",
            sig.parse().map_err(|_| "signature header")?,
        );
    }
    let (ws, _) = tokio_tungstenite::connect_async_with_config(request, None, true)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut tx, mut rx) = ws.split();
    let stream_sid = format!("MZ{}", &sid[2..]);
    let send = |m: String| Message::Text(m.into());
    tx.send(send(
        json!({"event":"connected","protocol":"Call","version":"1.0.0"}).to_string(),
    ))
    .await
    .map_err(|e| e.to_string())?;
    let mut params = BTreeMap::new();
    params.insert("CallSid".to_string(), sid.to_string());
    params.insert("From".to_string(), from.clone());
    params.insert("To".to_string(), "+15557654321".to_string());
    let start = InboundFrame::Start(Start {
        sequence_number: 1,
        stream_sid: stream_sid.clone(),
        account_sid: "AC0000".into(),
        call_sid: sid.into(),
        tracks: vec!["inbound".into()],
        custom_parameters: params,
        media_format: MediaFormat {
            encoding: "audio/x-mulaw".into(),
            sample_rate: 8000,
            channels: 1,
        },
    });
    let started = Instant::now();
    tx.send(send(start.to_json()))
        .await
        .map_err(|e| e.to_string())?;
    let tx = Arc::new(Mutex::new(tx));
    // 3. Twilio's playback: marks echo when the audio queued before them has played.
    let reader = {
        let tx = tx.clone();
        let stream_sid = stream_sid.clone();
        let shared = shared.clone();
        async move {
            let mut first = true;
            let mut play_until = Instant::now();
            let mut closed_by_server = false;
            while let Some(msg) = rx.next().await {
                let Ok(Message::Text(text)) = msg else {
                    if matches!(msg, Ok(Message::Close(_)) | Err(_)) {
                        closed_by_server = true;
                        break;
                    }
                    continue;
                };
                match media::parse_outbound(&text) {
                    Ok(OutboundFrame::Media { payload, .. }) => {
                        if first {
                            first = false;
                            let us = started.elapsed().as_micros() as u64;
                            let _ = shared.first_audio.lock().await.record(us.max(1));
                        }
                        shared.totals.media_received.fetch_add(1, Ordering::Relaxed);
                        let now = Instant::now();
                        play_until =
                            play_until.max(now) + Duration::from_micros(payload.len() as u64 * 125);
                    }
                    Ok(OutboundFrame::Mark { name, .. }) => {
                        let at = play_until;
                        let tx = tx.clone();
                        let stream_sid = stream_sid.clone();
                        shared.totals.marks_echoed.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(async move {
                            tokio::time::sleep_until(at).await;
                            let echo = InboundFrame::Mark {
                                sequence_number: 0,
                                stream_sid,
                                name,
                            }
                            .to_json();
                            let _ = tx.lock().await.send(Message::Text(echo.into())).await;
                        });
                    }
                    Ok(OutboundFrame::Clear { .. }) => play_until = Instant::now(),
                    Err(e) => return Err(format!("server sent an invalid frame: {e}")),
                }
            }
            Ok(closed_by_server)
        }
    };
    let reader = tokio::spawn(reader_boxed(reader));
    // 4. The caller's audio: a 160-byte frame every 20 ms, in real time.
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let frames = a.hold_s * 50;
    let silence = vec![0xFFu8; 160];
    let mut expected = Instant::now();
    for n in 0..frames {
        tick.tick().await;
        if expected.elapsed() > Duration::from_millis(10) {
            shared.totals.late_frames.fetch_add(1, Ordering::Relaxed);
        }
        expected += Duration::from_millis(20);
        let frame = InboundFrame::Media(Media {
            sequence_number: n + 2,
            stream_sid: stream_sid.clone(),
            track: "inbound".into(),
            chunk: n + 1,
            timestamp_ms: n * 20,
            payload: silence.clone(),
        });
        tx.lock()
            .await
            .send(send(frame.to_json()))
            .await
            .map_err(|e| format!("send media: {e}"))?;
        shared.totals.frames_sent.fetch_add(1, Ordering::Relaxed);
    }
    // 5. Hang up: `stop`, then the server finalizes and closes the socket.
    let stop = InboundFrame::Stop {
        sequence_number: frames + 2,
        stream_sid: stream_sid.clone(),
        account_sid: "AC0000".into(),
        call_sid: sid.into(),
    };
    tx.lock()
        .await
        .send(send(stop.to_json()))
        .await
        .map_err(|e| format!("send stop: {e}"))?;
    match tokio::time::timeout(Duration::from_secs(15), reader).await {
        Ok(Ok(Ok(true))) => Ok(()),
        Ok(Ok(Ok(false))) => Err("socket ended without a close from the server".into()),
        Ok(Ok(Err(e))) => Err(e),
        Ok(Err(e)) => Err(format!("reader task: {e}")),
        Err(_) => Err("server did not close the socket within 15 s of stop".into()),
    }
}

async fn reader_boxed(
    f: impl std::future::Future<Output = Result<bool, String>>,
) -> Result<bool, String> {
    f.await
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Server-side p99 time to first audio (ms) from its /metrics summary.
async fn server_first_audio_p99(base: &str) -> Option<f64> {
    let text = reqwest::get(format!("{}/metrics", base.trim_end_matches('/')))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with("switchboard_time_to_first_audio_seconds{quantile=\"0.99\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|s| s * 1000.0)
}

/// utime + stime of a process, in clock ticks (100 per second on Linux).
fn proc_cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn proc_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
