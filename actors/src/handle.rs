//! A call's durable handle and the live-call registry.
//!
//! The handle outlives any one call actor: it owns the call's event journal, its latest snapshot
//! and its outbound queue to the socket writer. Everything addressed to a call — frames parsed by
//! the socket reader, CRM results, LLM tokens, timers — goes through [`CallHandle::send`], which
//! numbers the event, journals it and casts it to the current actor. When an actor fails, the
//! supervisor starts a new one from the snapshot and replays the journal past the snapshot, so no
//! event is lost while the caller stays on the line.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tracing::Instrument;

use dashmap::DashMap;
use ractor::ActorRef;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};

use crate::call::CallMsg;
use crate::domain::*;
use crate::machine::{CallMachine, CallState, Event, Speech, SpeechKind};
use crate::ports::SpeechSynth;

/// Events kept for replay; past this the actor is hopelessly behind and the call is ended.
pub const JOURNAL_LIMIT: usize = 4096;

/// What the socket writer sends to Twilio.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outbound {
    /// mu-law 8 kHz audio of any length; the writer cuts it into frames.
    Audio(Arc<[u8]>),
    Mark(String),
    Clear,
    /// ConversationRelay `text` token.
    Text {
        token: String,
        last: bool,
    },
    /// End the call and close the socket.
    Close {
        reason: String,
    },
    /// Not sent: the writer records that a turn's first agent output goes out now.
    Stamp(TurnStamp),
}

/// Marks, in the outbound queue, the first output of a measured turn.
#[derive(Clone)]
pub struct TurnStamp {
    clock: Arc<TurnClock>,
    turn: u64,
}

impl TurnStamp {
    /// The writer reached the turn's first output.
    pub fn record(&self) {
        self.clock.first_output_sent(self.turn);
    }
}

impl std::fmt::Debug for TurnStamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TurnStamp({})", self.turn)
    }
}

impl PartialEq for TurnStamp {
    fn eq(&self, other: &Self) -> bool {
        self.turn == other.turn && Arc::ptr_eq(&self.clock, &other.clock)
    }
}

impl Eq for TurnStamp {}

/// One agent turn's latencies, from the end of the caller's speech (the final transcript, or the
/// relay `prompt`): first LLM token, first TTS byte, first agent output handed to the socket.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TurnLatency {
    pub turn: u64,
    pub first_token_ms: Option<f64>,
    pub first_tts_byte_ms: Option<f64>,
    pub first_output_ms: f64,
}

/// Stamps the current turn's latencies and exports them as histograms. Only the turn that
/// answers a caller utterance is measured (greetings and fillers-only turns are not).
pub struct TurnClock {
    transport: &'static str,
    inner: Mutex<TurnClockInner>,
}

#[derive(Default)]
struct TurnClockInner {
    speech_end: Option<std::time::Instant>,
    turn: Option<u64>,
    first_token: Option<f64>,
    first_tts: Option<f64>,
    recent: VecDeque<TurnLatency>,
}

/// Latencies kept per call for operators.
const RECENT_TURNS: usize = 16;

impl TurnClock {
    pub fn new(transport: Transport) -> Self {
        TurnClock {
            transport: transport.as_str(),
            inner: Mutex::new(TurnClockInner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TurnClockInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The caller finished an utterance (its final transcript was sent to the call at `at`): the
    /// next agent turn is measured from then.
    pub fn caller_finished_at(&self, at: std::time::Instant) {
        let mut c = self.lock();
        c.speech_end = Some(at);
        c.turn = None;
        c.first_token = None;
        c.first_tts = None;
    }

    /// Binds `turn` as the measured one if the caller just finished and none is bound yet.
    fn bind(c: &mut TurnClockInner, turn: u64) -> Option<f64> {
        let start = c.speech_end?;
        match c.turn {
            None => c.turn = Some(turn),
            Some(t) if t != turn => return None,
            Some(_) => {}
        }
        Some(start.elapsed().as_secs_f64() * 1000.0)
    }

    pub fn first_token(&self, turn: u64) {
        let mut c = self.lock();
        if c.first_token.is_none()
            && let Some(ms) = Self::bind(&mut c, turn)
        {
            c.first_token = Some(ms);
            metrics::histogram!("switchboard_turn_first_token_seconds", "transport" => self.transport)
                .record(ms / 1000.0);
        }
    }

    /// The agent speaks in `turn` (binds it when it is the first answer to the caller).
    pub fn speaking(&self, turn: u64) {
        let mut c = self.lock();
        let _ = Self::bind(&mut c, turn);
    }

    pub fn first_tts_byte(&self, turn: u64) {
        let mut c = self.lock();
        if c.turn == Some(turn)
            && c.first_tts.is_none()
            && let Some(ms) = Self::bind(&mut c, turn)
        {
            c.first_tts = Some(ms);
            metrics::histogram!("switchboard_turn_first_tts_byte_seconds", "transport" => self.transport)
                .record(ms / 1000.0);
        }
    }

    /// True when `turn` is measured and its first output has not gone out yet.
    pub fn wants_stamp(&self, turn: u64) -> bool {
        let c = self.lock();
        c.speech_end.is_some() && c.turn == Some(turn)
    }

    fn first_output_sent(&self, turn: u64) {
        let mut c = self.lock();
        if c.turn != Some(turn) {
            return;
        }
        let Some(start) = c.speech_end.take() else {
            return;
        };
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        metrics::histogram!("switchboard_turn_first_audio_seconds", "transport" => self.transport)
            .record(ms / 1000.0);
        let latency = TurnLatency {
            turn,
            first_token_ms: c.first_token.take(),
            first_tts_byte_ms: c.first_tts.take(),
            first_output_ms: ms,
        };
        c.turn = None;
        if c.recent.len() == RECENT_TURNS {
            c.recent.pop_front();
        }
        c.recent.push_back(latency);
    }

    /// The latest measured turns, oldest first.
    pub fn recent(&self) -> Vec<TurnLatency> {
        self.lock().recent.iter().cloned().collect()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    #[error("call {0} has ended")]
    Ended(CallSid),
    #[error(
        "call {0}: {JOURNAL_LIMIT} events are waiting for the call actor; it is not keeping up"
    )]
    JournalFull(CallSid),
}

struct Inbox {
    next_id: u64,
    /// Events not yet applied, with when each was sent.
    journal: VecDeque<(u64, Event, std::time::Instant)>,
    actor: Option<ActorRef<CallMsg>>,
}

/// A job for the call's speaker task.
struct SpeakJob {
    clear_generation: u64,
    speech: Speech,
}

pub struct CallHandle {
    pub sid: CallSid,
    pub transport: Transport,
    inbox: Mutex<Inbox>,
    applied: AtomicU64,
    snapshot: RwLock<Arc<CallMachine>>,
    outbound: mpsc::Sender<Outbound>,
    speaker: mpsc::UnboundedSender<SpeakJob>,
    clear_generation: AtomicU64,
    /// Held while deciding whether audio is stale and queueing it, so a `clear` can never be
    /// overtaken by audio it was meant to drop.
    playback_lock: Mutex<()>,
    ended: AtomicBool,
    outbound_stuck: AtomicBool,
    /// Twilio stream status callbacks seen for this call (event, error).
    stream_events: Mutex<Vec<(String, Option<String>)>>,
    /// Per-turn latencies.
    pub turns: Arc<TurnClock>,
    /// The call's tracing span (`call{call_sid, transport}`): the call actor, its speaker, its
    /// tool and summary tasks log inside it, so every line names the call. A root span (no
    /// parent) at ERROR level, so it is never filtered out while anything about the call is
    /// logged; with OpenTelemetry it is the call's trace.
    pub span: tracing::Span,
}

impl CallHandle {
    /// A handle for a new call. Spawns the call's speaker task (speech synthesis in order).
    pub fn new(
        machine: CallMachine,
        sid: CallSid,
        transport: Transport,
        outbound: mpsc::Sender<Outbound>,
        speech: Arc<dyn SpeechSynth>,
        greeting: GreetingSource,
    ) -> Arc<Self> {
        let (speaker_tx, speaker_rx) = mpsc::unbounded_channel();
        let span = tracing::error_span!(
            parent: None,
            "call",
            call_sid = %sid,
            transport = transport.as_str()
        );
        let handle = Arc::new(CallHandle {
            sid,
            transport,
            inbox: Mutex::new(Inbox {
                next_id: 0,
                journal: VecDeque::new(),
                actor: None,
            }),
            applied: AtomicU64::new(0),
            snapshot: RwLock::new(Arc::new(machine)),
            outbound,
            speaker: speaker_tx,
            clear_generation: AtomicU64::new(0),
            playback_lock: Mutex::new(()),
            ended: AtomicBool::new(false),
            outbound_stuck: AtomicBool::new(false),
            stream_events: Mutex::new(Vec::new()),
            turns: Arc::new(TurnClock::new(transport)),
            span: span.clone(),
        });
        tokio::spawn(
            speaker_loop(Arc::downgrade(&handle), speaker_rx, speech, greeting).instrument(span),
        );
        handle
    }

    /// Deliver an event to the call: journal it, then cast it to the current actor (if any).
    pub fn send(&self, event: Event) -> Result<(), SendError> {
        if self.ended.load(Ordering::Acquire) {
            return Err(SendError::Ended(self.sid.clone()));
        }
        let mut inbox = self.inbox.lock().unwrap_or_else(|p| p.into_inner());
        let applied = self.applied.load(Ordering::Acquire);
        while inbox.journal.front().is_some_and(|(id, ..)| *id <= applied) {
            inbox.journal.pop_front();
        }
        if inbox.journal.len() >= JOURNAL_LIMIT {
            return Err(SendError::JournalFull(self.sid.clone()));
        }
        inbox.next_id += 1;
        let id = inbox.next_id;
        let at = std::time::Instant::now();
        inbox.journal.push_back((id, event.clone(), at));
        if let Some(actor) = &inbox.actor {
            // A failed cast means the actor just died: the event stays journaled for its successor.
            let _ = actor.cast(CallMsg::Event { id, event, at });
        }
        Ok(())
    }

    /// Make `actor` the call's actor and replay every journaled event it has not applied.
    pub fn attach(&self, actor: ActorRef<CallMsg>) {
        let mut inbox = self.inbox.lock().unwrap_or_else(|p| p.into_inner());
        let applied = self.applied.load(Ordering::Acquire);
        for (id, event, at) in inbox.journal.iter().filter(|(id, ..)| *id > applied) {
            let _ = actor.cast(CallMsg::Event {
                id: *id,
                event: event.clone(),
                at: *at,
            });
        }
        inbox.actor = Some(actor);
    }

    /// Forget a failed actor: events are journaled until a new one is attached.
    pub fn detach(&self) {
        let mut inbox = self.inbox.lock().unwrap_or_else(|p| p.into_inner());
        inbox.actor = None;
    }

    pub fn actor(&self) -> Option<ActorRef<CallMsg>> {
        self.inbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .actor
            .clone()
    }

    /// The latest snapshot: the machine as it was after the last applied event.
    pub fn snapshot(&self) -> Arc<CallMachine> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn store_snapshot(&self, machine: Arc<CallMachine>) {
        let applied = machine.applied_event_id();
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = machine;
        self.applied.store(applied, Ordering::Release);
    }

    /// Events journaled and not yet applied (for tests and operators).
    pub fn backlog(&self) -> usize {
        let applied = self.applied.load(Ordering::Acquire);
        self.inbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .journal
            .iter()
            .filter(|(id, ..)| *id > applied)
            .count()
    }

    /// Record a Twilio stream status callback (`stream-started`, `stream-error`...) on the call.
    pub fn record_stream_event(&self, event: &str, error: Option<&str>) {
        let mut events = self.stream_events.lock().unwrap_or_else(|p| p.into_inner());
        if events.len() < 32 {
            events.push((event.to_owned(), error.map(str::to_owned)));
        }
    }

    pub fn stream_events(&self) -> Vec<(String, Option<String>)> {
        self.stream_events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn is_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    pub(crate) fn mark_ended(&self) {
        self.ended.store(true, Ordering::Release);
    }

    /// True once the socket writer stopped taking frames (the client is not reading).
    pub fn outbound_stuck(&self) -> bool {
        self.outbound_stuck.load(Ordering::Acquire)
    }

    pub(crate) fn speak(&self, speech: Speech) {
        let job = SpeakJob {
            clear_generation: self.clear_generation.load(Ordering::Acquire),
            speech,
        };
        let _ = self.speaker.send(job);
    }

    /// Drop queued agent audio: stale speaker jobs are skipped and Twilio gets `clear`.
    pub(crate) fn clear_playback(&self) {
        self.clear_generation.fetch_add(1, Ordering::AcqRel);
        let _guard = self.playback_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.push_outbound(Outbound::Clear);
    }

    /// Queue a frame for the writer without ever waiting: a full queue means the client stopped
    /// reading, and the call is ended instead of growing memory.
    pub(crate) fn push_outbound(&self, frame: Outbound) -> bool {
        match self.outbound.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if !self.outbound_stuck.swap(true, Ordering::AcqRel) {
                    tracing::warn!(call_sid = %self.sid, "outbound queue full: the client is not reading; ending the call");
                    let _ = self.send(Event::Fatal {
                        reason: "outbound queue full".into(),
                    });
                }
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// Renders agent speech in order for one call and queues it for the socket writer.
/// How the generic greeting is voiced.
#[derive(Clone, Default)]
pub struct GreetingSource {
    /// Pre-rendered mu-law 8 kHz audio for the generic greeting (Media Streams).
    pub audio: Option<Arc<[u8]>>,
    /// ConversationRelay speaks the TwiML `welcomeGreeting` itself: do not send ours as text.
    pub relay_spoken_by_twilio: bool,
    /// Pre-rendered short apology played when synthesis of a line fails (Media Streams).
    pub fallback_audio: Option<Arc<[u8]>>,
}

async fn speaker_loop(
    handle: std::sync::Weak<CallHandle>,
    mut jobs: mpsc::UnboundedReceiver<SpeakJob>,
    speech: Arc<dyn SpeechSynth>,
    greeting: GreetingSource,
) {
    let greeting_audio = greeting.audio.clone();
    let mut fallback_turn: Option<u64> = None;
    while let Some(job) = jobs.recv().await {
        let Some(h) = handle.upgrade() else { return };
        if job.clear_generation < h.clear_generation.load(Ordering::Acquire) {
            continue;
        }
        let s = job.speech;
        match h.transport {
            Transport::Relay => {
                let generic_greeting = s.kind == SpeechKind::Greeting { personalized: None };
                if generic_greeting && greeting.relay_spoken_by_twilio {
                    continue;
                }
                if !s.text.is_empty() && h.turns.wants_stamp(s.turn) {
                    h.push_outbound(Outbound::Stamp(TurnStamp {
                        clock: h.turns.clone(),
                        turn: s.turn,
                    }));
                }
                if !s.text.is_empty() || s.last {
                    h.push_outbound(Outbound::Text {
                        token: s.text,
                        last: s.last,
                    });
                }
            }
            Transport::MediaStream => {
                let audio: Option<Arc<[u8]>> = match (&s.kind, &greeting_audio) {
                    (SpeechKind::Greeting { personalized: None }, Some(audio)) => {
                        Some(audio.clone())
                    }
                    _ => {
                        let turns = h.turns.clone();
                        drop(h);
                        let rendered = speech.synthesize(&s.text).await;
                        match rendered {
                            Ok(bytes) => {
                                turns.first_tts_byte(s.turn);
                                Some(Arc::from(bytes))
                            }
                            Err(e) => {
                                metrics::counter!("switchboard_tts_failures_total").increment(1);
                                tracing::warn!(error = %e, "speech synthesis failed; the fallback line plays instead");
                                // At most once per turn, so a dead TTS does not repeat it per sentence.
                                if fallback_turn != Some(s.turn) {
                                    fallback_turn = Some(s.turn);
                                    greeting.fallback_audio.clone()
                                } else {
                                    None
                                }
                            }
                        }
                    }
                };
                let Some(h) = handle.upgrade() else { return };
                let _guard = h.playback_lock.lock().unwrap_or_else(|p| p.into_inner());
                if job.clear_generation < h.clear_generation.load(Ordering::Acquire) {
                    continue;
                }
                if let Some(audio) = audio {
                    if h.turns.wants_stamp(s.turn) {
                        h.push_outbound(Outbound::Stamp(TurnStamp {
                            clock: h.turns.clone(),
                            turn: s.turn,
                        }));
                    }
                    h.push_outbound(Outbound::Audio(audio));
                }
                // The mark goes out even when synthesis failed, so the call never waits forever.
                h.push_outbound(Outbound::Mark(s.mark));
            }
        }
    }
}

/// A state change, or a restart of the call's actor, as published to operators.
#[derive(Clone, Debug, Serialize)]
pub struct TransitionNotice {
    pub call_sid: CallSid,
    /// `Restart`: the supervisor replaced the call's failed actor; the call stays in its state
    /// (`from == to`), `event` says what failed and `restarts` is the new count.
    pub kind: NoticeKind,
    pub from: CallState,
    pub to: CallState,
    pub event: String,
    pub at_ms: Millis,
    pub restarts: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    Transition,
    Restart,
}

/// All live calls of this process, by call sid, plus a broadcast of every transition.
#[derive(Clone)]
pub struct LiveCalls {
    calls: Arc<DashMap<CallSid, Arc<CallHandle>>>,
    transitions: broadcast::Sender<TransitionNotice>,
}

impl Default for LiveCalls {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveCalls {
    pub fn new() -> Self {
        let (transitions, _) = broadcast::channel(4096);
        LiveCalls {
            calls: Arc::new(DashMap::new()),
            transitions,
        }
    }

    pub fn get(&self, sid: &CallSid) -> Option<Arc<CallHandle>> {
        self.calls.get(sid).map(|h| h.value().clone())
    }

    pub(crate) fn insert(&self, handle: Arc<CallHandle>) -> bool {
        use dashmap::mapref::entry::Entry;
        match self.calls.entry(handle.sid.clone()) {
            Entry::Occupied(_) => false,
            Entry::Vacant(v) => {
                v.insert(handle);
                true
            }
        }
    }

    pub(crate) fn remove(&self, sid: &CallSid) {
        self.calls.remove(sid);
    }

    /// Deliver an event to a live call; false when the call is gone.
    pub fn deliver(&self, sid: &CallSid, event: Event) -> bool {
        match self.get(sid) {
            Some(handle) => handle.send(event).is_ok(),
            None => false,
        }
    }

    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Every live call's handle (operators read their snapshots).
    pub fn handles(&self) -> Vec<Arc<CallHandle>> {
        self.calls.iter().map(|e| e.value().clone()).collect()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<TransitionNotice> {
        self.transitions.subscribe()
    }

    pub(crate) fn publish(&self, notice: TransitionNotice) {
        // No subscriber is fine; a lagging one loses old notices, never slows a call.
        let _ = self.transitions.send(notice);
    }
}
