//! `switchboard-loadtest`: simulated Twilio calls against a running Switchboard server, over the
//! real protocols, at real-time cadence. It talks to the server only over the network.
//!
//! One call is [`simulate_call`]: it posts the signed voice webhook, connects to the WebSocket the
//! TwiML names (Media Streams or ConversationRelay) and plays a scripted caller described by a
//! [`CallPlan`]: the caller waits for the agent to finish speaking, says each [`Turn`] (Media
//! Streams: [`switchboard_twilio::scripted`] audio in 20 ms frames, which the server's
//! speech-to-text stand-in hears back as text; ConversationRelay: a `prompt`), optionally talks
//! over the agent (barge-in), optionally has the call's actor crashed through the chaos route,
//! and hangs up. Progress is reported as [`CallProgress`] events while the call runs; the
//! [`CallOutcome`] holds every measurement. `switchboard demo` uses this to show a few calls.
//!
//! A load run ([`run::run`]) places many such calls: it ramps to a target concurrency and holds
//! it, mixes scenarios ([`scenario`]), samples the server from /proc, follows `/api/v1/calls/events`
//! with SSE clients, checks afterwards that every caller turn was persisted, and writes a summary,
//! a JSON report and a PNG chart ([`report`]).
//!
//! # Layout
//! - [`call`] — the public types of one simulated call and [`simulate_call`]; the webhook, TwiML
//!   and operator-API requests both transports share.
//! - `media` — the Media Streams caller (frames, marks played back in real time, `clear`).
//! - `relay` — the ConversationRelay caller (`setup`, `prompt`, `interrupt`, close).
//! - [`scenario`] — who calls and what they say: new callers, returning (seeded) callers, chaos.
//! - [`run`] — a load run: ramp and hold, live statistics, progress on stderr.
//! - `sse` — the `/api/v1/calls/events` clients.
//! - [`report`] — the human summary, the JSON report and the PNG chart (`chart`).
//! - `proc` — the server's CPU time and RSS from /proc.
//!
//! **Invariant:** nothing here links the server: the simulated Twilio shares no code with it
//! beyond the pure wire formats of `switchboard-twilio`.

pub mod call;
mod chart;
mod media;
mod proc;
mod relay;
pub mod report;
pub mod run;
pub mod scenario;
mod sse;

pub use call::{
    CallError, CallOutcome, CallPlan, CallProgress, Target, Transport, Turn, TurnOutcome,
    simulate_call,
};
