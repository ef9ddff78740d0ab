//! Clients of `GET /api/v1/calls/events` (server-sent events): each holds one connection for the
//! whole run and counts what it receives, to show that many dashboards watching do not slow the
//! calls down.
//!
//! Losses are counted three ways: a client the server disconnected during the run (Switchboard
//! drops an SSE client that falls behind rather than slow anything down), `call_ended` events of
//! this run's calls that a client which stayed connected never received, and whatever the stream
//! itself admits to (an event named `lagged`, `dropped` or `overflow`, a JSON payload with a
//! numeric `dropped`, `lagged` or `missed` field, gaps in numeric `id:`s).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use serde_json::Value;
use tokio::sync::watch;

use crate::call::Target;

/// What the SSE clients saw, added up.
#[derive(Default, Debug)]
pub(crate) struct SseTotals {
    pub connected: AtomicU64,
    pub events: AtomicU64,
    pub dropped: AtomicU64,
    pub disconnects: AtomicU64,
    /// `call_ended` events of this run's calls, over the clients that stayed connected.
    pub ended_seen: AtomicU64,
    /// Clients connected from before the first call to the end of the run.
    pub stayed: AtomicU64,
    pub errors: std::sync::Mutex<Vec<String>>,
}

impl SseTotals {
    fn error(&self, e: String) {
        if let Ok(mut errors) = self.errors.lock()
            && errors.len() < 5
            && !errors.contains(&e)
        {
            errors.push(e);
        }
    }
}

/// Starts `n` clients; they stop when `stop` turns true.
/// `sid_prefix` picks this run's calls out of the stream.
pub(crate) fn spawn_clients(
    target: &Target,
    n: usize,
    sid_prefix: &str,
    stop: watch::Receiver<bool>,
) -> (Arc<SseTotals>, Vec<tokio::task::JoinHandle<()>>) {
    let totals = Arc::new(SseTotals::default());
    let handles = (0..n)
        .map(|_| {
            let target = target.clone();
            let totals = totals.clone();
            let stop = stop.clone();
            let prefix = sid_prefix.to_owned();
            tokio::spawn(client(target, totals, prefix, stop))
        })
        .collect();
    (totals, handles)
}

async fn client(
    target: Target,
    totals: Arc<SseTotals>,
    sid_prefix: String,
    mut stop: watch::Receiver<bool>,
) {
    let req = target
        .api(reqwest::Method::GET, "/api/v1/calls/events")
        .header("accept", "text/event-stream")
        .timeout(std::time::Duration::from_secs(24 * 3600));
    let resp = match req.send().await {
        Ok(resp) if resp.status().is_success() => resp,
        Ok(resp) => {
            return totals.error(format!(
                "GET /api/v1/calls/events answered {}",
                resp.status()
            ));
        }
        Err(e) => return totals.error(format!("GET /api/v1/calls/events: {e}")),
    };
    totals.connected.fetch_add(1, Ordering::Relaxed);
    let mut body = resp.bytes_stream();
    let mut parser = Parser {
        sid_prefix,
        ..Parser::default()
    };
    loop {
        tokio::select! {
            _ = stop.changed() => {
                totals.stayed.fetch_add(1, Ordering::Relaxed);
                totals.ended_seen.fetch_add(parser.ended_seen, Ordering::Relaxed);
                return;
            }
            chunk = body.next() => match chunk {
                Some(Ok(bytes)) => {
                    let (events, dropped) = parser.feed(&bytes);
                    totals.events.fetch_add(events, Ordering::Relaxed);
                    totals.dropped.fetch_add(dropped, Ordering::Relaxed);
                }
                Some(Err(e)) => {
                    totals.disconnects.fetch_add(1, Ordering::Relaxed);
                    return totals.error(format!("event stream broke: {e}"));
                }
                None => {
                    if !*stop.borrow() {
                        totals.disconnects.fetch_add(1, Ordering::Relaxed);
                        totals.error("the server ended the event stream during the run".into());
                    }
                    return;
                }
            }
        }
    }
}

/// An incremental `text/event-stream` reader: whole lines only, events end at a blank line.
#[derive(Default)]
struct Parser {
    sid_prefix: String,
    /// `call_ended` events whose `call_sid` starts with `sid_prefix`.
    ended_seen: u64,
    pending: Vec<u8>,
    name: String,
    data: String,
    has_data: bool,
    last_id: Option<u64>,
}

impl Parser {
    /// Feeds bytes; returns (events completed, drops admitted).
    fn feed(&mut self, bytes: &[u8]) -> (u64, u64) {
        self.pending.extend_from_slice(bytes);
        let (mut events, mut dropped) = (0, 0);
        while let Some(nl) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if self.has_data || !self.name.is_empty() {
                    events += 1;
                    dropped += self.dispatch();
                }
                self.name.clear();
                self.data.clear();
                self.has_data = false;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => self.name = value.to_owned(),
                "data" => {
                    if self.has_data {
                        self.data.push('\n');
                    }
                    self.data.push_str(value);
                    self.has_data = true;
                }
                "id" => {
                    if let Ok(id) = value.parse::<u64>() {
                        if let Some(last) = self.last_id
                            && id > last + 1
                        {
                            dropped += id - last - 1;
                        }
                        self.last_id = Some(id);
                    }
                }
                _ => {}
            }
        }
        (events, dropped)
    }

    fn dispatch(&mut self) -> u64 {
        let named = matches!(self.name.as_str(), "lagged" | "dropped" | "overflow");
        let data = serde_json::from_str::<Value>(&self.data).ok();
        if self.name == "call_ended"
            && data.as_ref().is_some_and(|v| {
                v["call_sid"]
                    .as_str()
                    .is_some_and(|s| s.starts_with(&self.sid_prefix))
            })
        {
            self.ended_seen += 1;
        }
        let counted = data
            .map(|v| {
                ["dropped", "lagged", "missed"]
                    .iter()
                    .filter_map(|k| v[*k].as_u64())
                    .sum::<u64>()
            })
            .unwrap_or(0);
        match (named, counted) {
            (true, 0) => 1,
            (_, n) => n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_events_across_chunks_and_admitted_drops() {
        let mut p = Parser::default();
        assert_eq!(
            p.feed(b"id: 1\ndata: {\"call_sid\":\"CA1\"}\n\n: keep-alive\n\nid: 2\nda"),
            (1, 0)
        );
        assert_eq!(p.feed(b"ta: {}\n\nid: 5\ndata: {}\n\n"), (2, 2));
        assert_eq!(p.feed(b"event: lagged\ndata: {\"dropped\":7}\n\n"), (1, 7));
        assert_eq!(p.feed(b"event: lagged\ndata: oops\r\n\r\n"), (1, 1));
        p.sid_prefix = "CA0001".into();
        p.feed(b"event: call_ended\ndata: {\"call_sid\":\"CA0001ff\"}\n\n");
        p.feed(b"event: call_ended\ndata: {\"call_sid\":\"CA0002ff\"}\n\n");
        assert_eq!(p.ended_seen, 1);
    }
}
