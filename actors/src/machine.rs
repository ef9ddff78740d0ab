//! The call state machine: one per live call, pure. `handle(now, event) -> Vec<Effect>` owns every
//! decision about the call; it never performs I/O, reads a clock or draws a random number. The call
//! actor feeds it events and executes the effects it returns, so every path is testable without
//! sockets and a call can be replayed from its event log.
//!
//! Every (state, event) pair has a defined outcome; the table is in ARCHITECTURE.md. Events that
//! make no sense in a state are answered with [`Effect::Ignored`] (the actor records and counts
//! them) and never panic.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::domain::*;

mod prompt;
mod speech;
#[cfg(test)]
mod tests;

pub use prompt::{context_block, format_date};
pub use speech::split_speakable;

/// The states of a call (DESIGN.md §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    Connected,
    Greeting,
    AwaitingName,
    Enriched,
    Conversing,
    Finalizing,
    Ended,
}

impl CallState {
    pub const ALL: [CallState; 7] = [
        CallState::Connected,
        CallState::Greeting,
        CallState::AwaitingName,
        CallState::Enriched,
        CallState::Conversing,
        CallState::Finalizing,
        CallState::Ended,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallState::Connected => "connected",
            CallState::Greeting => "greeting",
            CallState::AwaitingName => "awaiting_name",
            CallState::Enriched => "enriched",
            CallState::Conversing => "conversing",
            CallState::Finalizing => "finalizing",
            CallState::Ended => "ended",
        }
    }

    /// States in which the caller is being talked to.
    fn is_live(self) -> bool {
        matches!(
            self,
            CallState::Greeting
                | CallState::AwaitingName
                | CallState::Enriched
                | CallState::Conversing
        )
    }
}

/// Timers the machine asks for. Each carries a generation; a timer whose generation is no longer
/// current when it fires is stale and ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerKind {
    /// How long the greeting may wait for the customer's context to personalise it.
    GreetingWait,
    /// The caller has said nothing for a while.
    Silence,
    /// Finalizing must end even if persistence or the goodbye line never confirms.
    FinalizeDeadline,
    /// The CRM must answer by then, or the call goes on as "context timed out".
    ContextDeadline,
    /// The LLM turn must finish by then, or it is treated as failed.
    LlmDeadline,
    /// The name extractor must answer by then, or the answer counts as "no name".
    NameDeadline,
    /// The agent has been quiet too long while a reply is being prepared: say a filler line.
    Filler,
}

/// An armed timer, kept in the machine so a restarted actor can re-arm it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArmedTimer {
    pub kind: TimerKind,
    pub generation: u64,
    pub deadline_ms: Millis,
}

/// Everything that can happen to a call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// Media Streams `start` or ConversationRelay `setup`.
    CallStarted(Box<CallStart>),
    /// The transport says the greeting finished (relay mode with a TwiML welcome greeting).
    GreetingPlayed,
    /// The CRM prefetch answered (found, possibly partial, or not found).
    ContextArrived(ContextResult),
    ContextFailed {
        reason: String,
    },
    ContextTimedOut,
    /// Voice activity detected on the inbound audio (before any transcript).
    CallerStartedSpeaking,
    CallerUtterance {
        text: String,
        is_final: bool,
    },
    /// ConversationRelay: the caller interrupted; `heard` is what they heard of the agent's turn.
    AgentInterrupted {
        heard: Option<String>,
    },
    LlmToken {
        turn: u64,
        text: String,
    },
    LlmDone {
        turn: u64,
    },
    LlmFailed {
        turn: u64,
        reason: String,
    },
    /// The model asked for a tool (fragments already assembled).
    LlmToolCall {
        turn: u64,
        call: ToolCallRequest,
    },
    /// A tool answered (always, even on error: `content` is then a JSON `error`).
    ToolResult {
        turn: u64,
        id: String,
        content: String,
        ok: bool,
    },
    NameCaptured {
        attempt: u32,
        name: String,
    },
    NameNotFound {
        attempt: u32,
    },
    Dtmf {
        digit: String,
    },
    /// Twilio echoed a mark we sent: everything queued before it has played.
    MarkEchoed {
        name: String,
    },
    OperatorHangup,
    StreamStopped,
    /// The call cannot go on (restart budget exhausted, outbound queue stuck...).
    Fatal {
        reason: String,
    },
    TimerFired {
        kind: TimerKind,
        generation: u64,
    },
    /// Persistence confirmed the call record and transcript are written.
    Persisted,
}

impl Event {
    /// A stable name for transition records and counters.
    pub fn name(&self) -> &'static str {
        match self {
            Event::CallStarted(_) => "call_started",
            Event::GreetingPlayed => "greeting_played",
            Event::ContextArrived(ContextResult::Found(_)) => "context_found",
            Event::ContextArrived(ContextResult::NotFound) => "context_not_found",
            Event::ContextFailed { .. } => "context_failed",
            Event::ContextTimedOut => "context_timed_out",
            Event::CallerStartedSpeaking => "caller_started_speaking",
            Event::CallerUtterance { is_final: true, .. } => "caller_utterance",
            Event::CallerUtterance {
                is_final: false, ..
            } => "caller_partial_utterance",
            Event::AgentInterrupted { .. } => "agent_interrupted",
            Event::LlmToken { .. } => "llm_token",
            Event::LlmDone { .. } => "llm_done",
            Event::LlmFailed { .. } => "llm_failed",
            Event::LlmToolCall { .. } => "llm_tool_call",
            Event::ToolResult { .. } => "tool_result",
            Event::NameCaptured { .. } => "name_captured",
            Event::NameNotFound { .. } => "name_not_found",
            Event::Dtmf { .. } => "dtmf",
            Event::MarkEchoed { .. } => "mark_echoed",
            Event::OperatorHangup => "operator_hangup",
            Event::StreamStopped => "stream_stopped",
            Event::Fatal { .. } => "fatal",
            Event::TimerFired {
                kind: TimerKind::GreetingWait,
                ..
            } => "greeting_wait_elapsed",
            Event::TimerFired {
                kind: TimerKind::Silence,
                ..
            } => "silence_timeout",
            Event::TimerFired {
                kind: TimerKind::FinalizeDeadline,
                ..
            } => "finalize_deadline",
            Event::TimerFired {
                kind: TimerKind::ContextDeadline,
                ..
            } => "context_deadline",
            Event::TimerFired {
                kind: TimerKind::LlmDeadline,
                ..
            } => "llm_deadline",
            Event::TimerFired {
                kind: TimerKind::NameDeadline,
                ..
            } => "name_deadline",
            Event::TimerFired {
                kind: TimerKind::Filler,
                ..
            } => "filler_due",
            Event::Persisted => "persisted",
        }
    }
}

/// What kind of agent speech a segment belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpeechKind {
    /// The opening line; `personalized` carries the name when it greets a known caller.
    Greeting { personalized: Option<String> },
    /// A fixed line of the agent (ask for the name, nice to meet you, apologies, goodbye).
    Line,
    /// Part of an LLM reply.
    Reply,
}

/// One piece of agent speech to send. Media Streams: synthesise `text` (or play the greeting
/// audio), send it, then send a mark named `mark`. ConversationRelay: send `text` as a `text`
/// token with `last`; `mark` is unused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Speech {
    pub turn: u64,
    pub mark: String,
    pub text: String,
    pub kind: SpeechKind,
    pub last: bool,
}

/// What the machine asks its shell to do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Effect {
    Speak(Speech),
    /// Drop all queued agent audio (Media Streams `clear`).
    ClearPlayback,
    FetchContext {
        phone: String,
    },
    StartLlm {
        turn: u64,
        request: LlmRequest,
    },
    CancelLlm {
        turn: u64,
    },
    /// Run a tool for the caller and answer with [`Event::ToolResult`].
    RunTool {
        turn: u64,
        call: ToolCallRequest,
        scope: crate::tools::ToolScope,
    },
    ExtractName {
        attempt: u32,
        utterance: String,
    },
    StoreName {
        name: String,
        phone: Option<String>,
    },
    PersistMessage(ConversationMessage),
    RecordTransition(Transition),
    StartTimer {
        kind: TimerKind,
        generation: u64,
        after_ms: u64,
    },
    /// Write the call record (and summary); answer with [`Event::Persisted`].
    Finalize(Box<CallRecord>),
    /// The call is over: close the transport (relay `end`, media socket close).
    CloseStream,
    /// The event made no sense in this state; it was recorded and ignored.
    Ignored {
        event: &'static str,
        state: CallState,
        reason: &'static str,
    },
}

/// Lines and limits of the agent. Defaults are English; deployments override them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineConfig {
    pub system_prompt: String,
    pub greeting: String,
    /// `{name}` is replaced by the caller's name. The greeting itself when the caller is known
    /// at start (or within the greeting's wait); otherwise said right after the generic greeting
    /// to a caller known by the time it has played.
    pub personal_greeting: String,
    pub ask_name: String,
    pub ask_name_again: String,
    pub nice_to_meet_you: String,
    pub welcome_back_after_asking: String,
    pub llm_apology: String,
    pub still_there: String,
    pub goodbye_silence: String,
    pub fatal_apology: String,
    /// Said when the model ends the call (`end_call`).
    pub goodbye: String,
    /// Said while a reply takes long (slow model, tools running).
    pub filler: String,
    /// Quiet time while a reply is prepared before the filler is said (0: never).
    pub filler_after_ms: u64,
    /// Fillers per agent turn at most (then the LLM deadline brings the apology).
    pub max_fillers: u32,
    /// Offer the tools ([`crate::tools`]) to the model.
    pub offer_tools: bool,
    /// Tool round trips per agent turn at most; past it the model is asked to answer without.
    pub max_tool_rounds: u32,
    /// Estimated-token budget of a request's conversation part (0: no limit). The oldest turns
    /// are dropped first; the system prompt and the latest caller line always stay.
    pub max_prompt_tokens: usize,
    /// How long a Media Streams greeting may wait for the context to personalise it (0: never
    /// wait). The caller hears nothing meanwhile, so the default is 0: the generic greeting plays
    /// at once and a caller known by the time it has played hears `personal_greeting` next.
    pub greeting_wait_ms: u64,
    /// The same for ConversationRelay, where Twilio speaks its own welcome greeting meanwhile:
    /// a wait costs the caller nothing and lets a known caller be greeted by name without a
    /// second greeting.
    pub relay_greeting_wait_ms: u64,
    pub max_name_attempts: u32,
    pub silence_timeout_ms: u64,
    pub finalize_deadline_ms: u64,
    /// Upper bound on waiting for the CRM (a little above the prefetch deadline).
    pub context_deadline_ms: u64,
    pub llm_deadline_ms: u64,
    pub name_deadline_ms: u64,
}

impl Default for MachineConfig {
    fn default() -> Self {
        MachineConfig {
            system_prompt: "You are a friendly, concise phone agent for Switchboard. Answer in one or two short sentences suitable for speech.".into(),
            greeting: "Thanks for calling Switchboard.".into(),
            personal_greeting: "Welcome back, {name}! How can I help you today?".into(),
            ask_name: "May I have your name, please?".into(),
            ask_name_again: "Sorry, I didn't catch your name. Could you tell me again?".into(),
            nice_to_meet_you: "Nice to meet you, {name}! How can I help you today?".into(),
            welcome_back_after_asking: "Oh, I see it's you, {name}. Welcome back! How can I help you today?".into(),
            llm_apology: "Sorry, I'm having trouble answering right now. Could you say that again?".into(),
            still_there: "Are you still there?".into(),
            goodbye_silence: "I haven't heard anything, so I'll end the call now. Goodbye!".into(),
            fatal_apology: "I'm sorry, we're having technical difficulties. Please call back in a few minutes. Goodbye.".into(),
            goodbye: "Thanks for calling. Goodbye!".into(),
            filler: "One moment, please.".into(),
            filler_after_ms: 1_500,
            max_fillers: 2,
            offer_tools: true,
            max_tool_rounds: 3,
            max_prompt_tokens: 3_000,
            greeting_wait_ms: 0,
            relay_greeting_wait_ms: 100,
            max_name_attempts: 2,
            silence_timeout_ms: 10_000,
            finalize_deadline_ms: 10_000,
            context_deadline_ms: 2_500,
            llm_deadline_ms: 20_000,
            name_deadline_ms: 3_000,
        }
    }
}

/// A piece of agent speech already sent, waiting for (or having received) its mark echo.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Segment {
    mark: String,
    text: String,
    echoed: bool,
}

/// One tool call and its result, as kept for the prompt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolExchange {
    /// The `Tool` line of the conversation that records it.
    pub message_seq: u64,
    pub call: ToolCallRequest,
    pub result: String,
    pub ok: bool,
}

/// What happens when an agent turn has been fully played.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum AfterTurn {
    GreetingPlayed,
    AwaitCaller,
    /// A goodbye or apology line: finalize once it has played.
    Finalize,
}

/// The agent's current turn of speech.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct AgentTurn {
    turn: u64,
    kind: SpeechKind,
    after: AfterTurn,
    segments: Vec<Segment>,
    /// Generated text not yet cut into a speakable segment (media mode).
    pending: String,
    /// The LLM is still streaming this turn (or its tools are running).
    generating: bool,
    /// Tool calls of this turn whose results have not arrived.
    #[serde(default)]
    awaiting_tools: Vec<String>,
    /// The current LLM stream ended (with tool calls still running).
    #[serde(default)]
    stream_done: bool,
    /// The model called `end_call`: say goodbye and finish once the turn is over.
    #[serde(default)]
    end_call: bool,
    #[serde(default)]
    tool_rounds: u32,
    /// The current LLM stream called at least one tool: its end starts a follow-up request.
    #[serde(default)]
    called_tools: bool,
    #[serde(default)]
    fillers: u32,
}

impl AgentTurn {
    /// A turn that has just begun: nothing pending, no tool calls, no fillers yet.
    fn new(
        turn: u64,
        kind: SpeechKind,
        after: AfterTurn,
        segments: Vec<Segment>,
        generating: bool,
    ) -> Self {
        AgentTurn {
            turn,
            kind,
            after,
            segments,
            pending: String::new(),
            generating,
            awaiting_tools: Vec::new(),
            stream_done: false,
            end_call: false,
            tool_rounds: 0,
            called_tools: false,
            fillers: 0,
        }
    }

    fn full_text(&self) -> String {
        let mut text = join_segments(self.segments.iter().map(|s| s.text.as_str()));
        if !self.pending.trim().is_empty() {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(self.pending.trim());
        }
        text
    }

    fn heard_text(&self) -> String {
        join_segments(
            self.segments
                .iter()
                .filter(|s| s.echoed)
                .map(|s| s.text.as_str()),
        )
    }

    fn fully_played(&self) -> bool {
        !self.generating && self.pending.trim().is_empty() && self.segments.iter().all(|s| s.echoed)
    }
}

fn join_segments<'a>(parts: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for part in parts {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(part);
    }
    out
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Finishing {
    persisted: bool,
    requested: bool,
    /// The goodbye/apology line whose mark must echo before the stream is closed.
    waiting_for_mark: Option<String>,
    outcome: String,
}

/// The state of one call. Cheap to clone: the actor keeps a clone as its snapshot after every event.
#[derive(Clone, Debug)]
pub struct CallMachine {
    config: Arc<MachineConfig>,
    state: CallState,
    entered_at_ms: Millis,
    started_at_ms: Millis,
    start: Option<Arc<CallStart>>,
    context: ContextStatus,
    /// When the prefetch answered (found, not found, failed or timed out).
    context_settled_at_ms: Option<Millis>,
    customer: Option<Arc<CustomerContext>>,
    name: Option<String>,
    name_source: Option<NameSource>,
    name_attempts: u32,
    last_name_utterance: Option<String>,
    asked_name: bool,
    greeting_started: bool,
    /// The greeting that started named the caller.
    greeted_by_name: bool,
    /// Shared with snapshots: cloning the machine is O(1); appending copies only when a snapshot
    /// still holds the old list.
    conversation: Arc<Vec<ConversationMessage>>,
    next_message_seq: u64,
    transitions: Arc<Vec<Transition>>,
    next_transition_seq: u64,
    /// Every tool exchange of the call, linked to its `Tool` line in the conversation.
    tool_log: Arc<Vec<ToolExchange>>,
    /// Tool calls started and not answered yet: (turn, call).
    tools_running: Vec<(u64, ToolCallRequest)>,
    /// Every tool call started, as (turn, tool round, id): a tool call is run at most once.
    /// Keyed by turn and round too, because some local servers number calls `call_0`, `call_1`
    /// in every response.
    tool_ids_seen: Vec<(u64, u32, String)>,
    next_turn: u64,
    next_mark: u64,
    agent: Option<AgentTurn>,
    timer_generation: u64,
    armed: Vec<ArmedTimer>,
    silence_prompts: u32,
    finishing: Finishing,
    restarts: u32,
    ignored_events: u64,
    /// Id of the last event applied (set by the shell; used to replay the journal after a restart).
    applied_event_id: u64,
}

impl CallMachine {
    pub fn new(config: Arc<MachineConfig>, now: Millis) -> Self {
        CallMachine {
            config,
            state: CallState::Connected,
            entered_at_ms: now,
            started_at_ms: now,
            start: None,
            context: ContextStatus::Pending,
            context_settled_at_ms: None,
            customer: None,
            name: None,
            name_source: None,
            name_attempts: 0,
            last_name_utterance: None,
            asked_name: false,
            greeting_started: false,
            greeted_by_name: false,
            conversation: Arc::new(Vec::new()),
            next_message_seq: 0,
            transitions: Arc::new(Vec::new()),
            next_transition_seq: 0,
            tool_log: Arc::new(Vec::new()),
            tools_running: Vec::new(),
            tool_ids_seen: Vec::new(),
            next_turn: 0,
            next_mark: 0,
            agent: None,
            timer_generation: 0,
            armed: Vec::new(),
            silence_prompts: 0,
            finishing: Finishing::default(),
            restarts: 0,
            ignored_events: 0,
            applied_event_id: 0,
        }
    }

    // === read access for the shell and operators ===

    pub fn state(&self) -> CallState {
        self.state
    }
    pub fn entered_at_ms(&self) -> Millis {
        self.entered_at_ms
    }
    pub fn started_at_ms(&self) -> Millis {
        self.started_at_ms
    }
    pub fn call_start(&self) -> Option<&CallStart> {
        self.start.as_deref()
    }
    pub fn context_status(&self) -> &ContextStatus {
        &self.context
    }
    /// When the customer context stopped being pending (`None` while it is, or when no lookup
    /// was made).
    pub fn context_settled_at_ms(&self) -> Option<Millis> {
        self.context_settled_at_ms
    }
    pub fn customer(&self) -> Option<&CustomerContext> {
        self.customer.as_deref()
    }
    pub fn customer_name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    pub fn name_source(&self) -> Option<NameSource> {
        self.name_source
    }
    pub fn conversation(&self) -> &[ConversationMessage] {
        &self.conversation
    }
    pub fn transitions(&self) -> &[Transition] {
        &self.transitions
    }
    /// Every tool exchange so far (call, result), in order.
    pub fn tool_log(&self) -> &[ToolExchange] {
        &self.tool_log
    }
    pub fn armed_timers(&self) -> &[ArmedTimer] {
        &self.armed
    }
    pub fn restarts(&self) -> u32 {
        self.restarts
    }
    pub fn ignored_events(&self) -> u64 {
        self.ignored_events
    }
    pub fn applied_event_id(&self) -> u64 {
        self.applied_event_id
    }
    pub fn set_applied_event_id(&mut self, id: u64) {
        self.applied_event_id = id;
    }
    /// Called by the supervisor on the snapshot it restarts from.
    pub fn record_restart(&mut self) {
        self.restarts += 1;
    }
    /// The LLM turn currently streaming, if any (a restarted actor re-requests it).
    pub fn generating_turn(&self) -> Option<u64> {
        self.agent.as_ref().filter(|a| a.generating).map(|a| a.turn)
    }
    /// The request for the next LLM turn: system prompt with the `[CUSTOMER CONTEXT]` block, then turns.
    pub fn llm_request(&self) -> LlmRequest {
        prompt::build_request(self)
    }

    // === the transition function ===

    /// Apply one event at time `now` and return what must be done.
    pub fn handle(&mut self, now: Millis, event: Event) -> Vec<Effect> {
        let mut fx = Vec::new();
        let name = event.name();
        match event {
            Event::CallStarted(start) => self.on_call_started(now, start, &mut fx),
            Event::GreetingPlayed => match self.state {
                CallState::Greeting => self.greeting_done(now, name, true, &mut fx),
                _ => self.ignore(name, "greeting is not playing", &mut fx),
            },
            Event::ContextArrived(result) => self.on_context(now, name, result, &mut fx),
            Event::ContextFailed { reason } => {
                self.on_context_unavailable(now, name, ContextStatus::Failed(reason), &mut fx)
            }
            Event::ContextTimedOut => {
                self.on_context_unavailable(now, name, ContextStatus::TimedOut, &mut fx)
            }
            Event::CallerStartedSpeaking => self.on_caller_speech(now, name, &mut fx),
            Event::CallerUtterance { text, is_final } => {
                self.on_utterance(now, name, text, is_final, &mut fx)
            }
            Event::AgentInterrupted { heard } => self.on_relay_interrupt(now, name, heard, &mut fx),
            Event::LlmToken { turn, text } => self.on_llm_token(turn, name, text, &mut fx),
            Event::LlmDone { turn } => self.on_llm_done(now, turn, name, &mut fx),
            Event::LlmFailed { turn, reason: _ } => self.on_llm_failed(now, turn, name, &mut fx),
            Event::LlmToolCall { turn, call } => self.on_tool_call(now, turn, name, call, &mut fx),
            Event::ToolResult {
                turn,
                id,
                content,
                ok,
            } => self.on_tool_result(now, turn, name, id, content, ok, &mut fx),
            Event::NameCaptured {
                attempt: _,
                name: captured,
            } => self.on_name_captured(now, name, captured, &mut fx),
            Event::NameNotFound { attempt: _ } => self.on_name_not_found(now, name, &mut fx),
            Event::Dtmf { digit } => self.on_dtmf(now, name, digit, &mut fx),
            Event::MarkEchoed { name: mark } => self.on_mark(now, name, &mark, &mut fx),
            Event::OperatorHangup => self.begin_finalizing(now, name, "operator hangup", &mut fx),
            Event::StreamStopped => self.begin_finalizing(now, name, "caller hung up", &mut fx),
            Event::Fatal { reason: _ } => self.on_fatal(now, name, &mut fx),
            Event::TimerFired { kind, generation } => {
                self.on_timer(now, name, kind, generation, &mut fx)
            }
            Event::Persisted => self.on_persisted(now, name, &mut fx),
        }
        fx
    }

    // === event handlers ===

    fn on_call_started(&mut self, now: Millis, start: Box<CallStart>, fx: &mut Vec<Effect>) {
        if self.state != CallState::Connected {
            return self.ignore("call_started", "the call has already started", fx);
        }
        self.started_at_ms = now;
        let phone = start.caller.e164.clone();
        let parameter_name = start.parameter_name().map(str::to_owned);
        self.start = Some(Arc::from(start));
        self.transition(now, CallState::Greeting, "call_started", fx);
        match phone {
            Some(phone) => {
                fx.push(Effect::FetchContext { phone });
                let after = self.config.context_deadline_ms;
                self.arm_timer(now, TimerKind::ContextDeadline, after, fx);
            }
            None => self.context = ContextStatus::NotApplicable,
        }
        if let Some(name) = parameter_name {
            self.name = Some(name);
            self.name_source = Some(NameSource::CallParameters);
        }
        // Relay's greeting is our text, while Twilio's own welcome greeting (if any) is already
        // playing; a Media Streams greeting is the first thing the caller hears.
        let wait_ms = if self.is_relay() {
            self.config.relay_greeting_wait_ms
        } else {
            self.config.greeting_wait_ms
        };
        if self.context == ContextStatus::Pending && self.name.is_none() && wait_ms > 0 {
            self.arm_timer(now, TimerKind::GreetingWait, wait_ms, fx);
        } else {
            self.start_greeting(fx);
        }
    }

    fn on_context(
        &mut self,
        now: Millis,
        name: &'static str,
        result: ContextResult,
        fx: &mut Vec<Effect>,
    ) {
        if self.state == CallState::Ended {
            return self.ignore(name, "the call has ended", fx);
        }
        if self.state == CallState::Connected {
            return self.ignore(name, "no context was requested yet", fx);
        }
        self.disarm(TimerKind::ContextDeadline);
        self.context_settled_at_ms.get_or_insert(now);
        match result {
            ContextResult::Found(customer) => {
                self.context = ContextStatus::Found {
                    partial: customer.partial,
                };
                let crm_name = customer.name.clone().filter(|n| !n.trim().is_empty());
                self.customer = Some(Arc::from(customer));
                if self.name.is_none()
                    && let Some(n) = crm_name
                {
                    self.name = Some(n);
                    self.name_source = Some(NameSource::Crm);
                }
            }
            ContextResult::NotFound => self.context = ContextStatus::NotFound,
        }
        match self.state {
            CallState::Greeting if !self.greeting_started => {
                self.disarm(TimerKind::GreetingWait);
                self.start_greeting(fx);
            }
            CallState::AwaitingName if self.name.is_some() => {
                // The question is moot: stop asking and greet the caller by name.
                self.interrupt_agent(now, fx);
                let line = self.fill(&self.config.welcome_back_after_asking);
                self.transition(now, CallState::Enriched, name, fx);
                self.say(now, line, AfterTurn::AwaitCaller, fx);
            }
            // Greeting (playing), Enriched, Conversing: the context is kept and goes into the next
            // LLM request. Finalizing: recorded on the call record only.
            _ => {}
        }
    }

    fn on_context_unavailable(
        &mut self,
        now: Millis,
        name: &'static str,
        status: ContextStatus,
        fx: &mut Vec<Effect>,
    ) {
        if matches!(self.state, CallState::Connected | CallState::Ended) {
            return self.ignore(name, "no context is pending", fx);
        }
        self.disarm(TimerKind::ContextDeadline);
        if self.context == ContextStatus::Pending {
            self.context_settled_at_ms = Some(now);
            // Stored with the transcript, so the call's record says why it went on as unknown.
            let line = format!("context: {}", status.label());
            self.context = status;
            self.push_message(now, Role::System, line, false, fx);
        }
        if self.state == CallState::Greeting && !self.greeting_started {
            self.disarm(TimerKind::GreetingWait);
            self.start_greeting(fx);
        }
    }

    fn on_caller_speech(&mut self, now: Millis, name: &'static str, fx: &mut Vec<Effect>) {
        if !self.state.is_live() {
            return self.ignore(name, "the caller is not being talked to", fx);
        }
        self.disarm(TimerKind::Silence);
        if self.agent_is_audible() {
            self.barge_in(now, fx);
        }
    }

    fn on_utterance(
        &mut self,
        now: Millis,
        name: &'static str,
        text: String,
        is_final: bool,
        fx: &mut Vec<Effect>,
    ) {
        let text = text.trim().to_owned();
        if self.state == CallState::Finalizing && is_final && !text.is_empty() {
            // Said before the hang-up, transcribed after it (a slow recognizer): nobody answers
            // any more, but what the caller said is kept.
            self.push_message(now, Role::Caller, text, false, fx);
            return;
        }
        if !self.state.is_live() {
            return self.ignore(name, "the caller is not being talked to", fx);
        }
        if text.is_empty() {
            return self.ignore(name, "empty utterance", fx);
        }
        self.disarm(TimerKind::Silence);
        if self.agent_is_audible() {
            self.barge_in(now, fx);
        }
        if !is_final {
            return;
        }
        // Relay mode has no marks: a turn still open when the caller answers was heard in full.
        self.close_agent_turn(now, fx);
        self.silence_prompts = 0;
        self.push_message(now, Role::Caller, text.clone(), false, fx);
        match self.state {
            CallState::Greeting => {
                // The caller talked before the greeting: it counts as played, and what they said
                // is taken as their first answer.
                self.greeting_done(now, name, false, fx);
                self.after_greeting_utterance(now, name, text, fx);
            }
            _ => self.after_greeting_utterance(now, name, text, fx),
        }
    }

    fn after_greeting_utterance(
        &mut self,
        now: Millis,
        name: &'static str,
        text: String,
        fx: &mut Vec<Effect>,
    ) {
        match self.state {
            CallState::AwaitingName => {
                self.name_attempts += 1;
                self.last_name_utterance = Some(text.clone());
                fx.push(Effect::ExtractName {
                    attempt: self.name_attempts,
                    utterance: text,
                });
                let after = self.config.name_deadline_ms;
                self.arm_timer(now, TimerKind::NameDeadline, after, fx);
            }
            CallState::Enriched => {
                self.transition(now, CallState::Conversing, name, fx);
                self.request_reply(now, fx);
            }
            CallState::Conversing => self.request_reply(now, fx),
            _ => {}
        }
    }

    fn on_relay_interrupt(
        &mut self,
        now: Millis,
        name: &'static str,
        heard: Option<String>,
        fx: &mut Vec<Effect>,
    ) {
        let Some(mut agent) = self.agent.take() else {
            return self.ignore(name, "the agent was not speaking", fx);
        };
        if agent.generating {
            fx.push(Effect::CancelLlm { turn: agent.turn });
            agent.generating = false;
            self.disarm(TimerKind::LlmDeadline);
        }
        let was_greeting = agent.after == AfterTurn::GreetingPlayed;
        let full = agent.full_text();
        let heard = heard
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|| full.clone());
        let interrupted = heard != full;
        self.finish_turn(now, agent, heard, interrupted, fx);
        if was_greeting {
            self.greeting_done(now, name, false, fx);
        }
    }

    fn on_llm_token(&mut self, turn: u64, name: &'static str, text: String, fx: &mut Vec<Effect>) {
        let relay = self.is_relay();
        let Some(agent) = self
            .agent
            .as_mut()
            .filter(|a| a.turn == turn && a.generating)
        else {
            return self.ignore(name, "no such LLM turn is streaming", fx);
        };
        if relay {
            self.armed.retain(|t| t.kind != TimerKind::Filler);
            let Some(agent) = self.agent.as_mut() else {
                return;
            };
            let mark = String::new();
            agent.segments.push(Segment {
                mark: mark.clone(),
                text: text.clone(),
                echoed: true,
            });
            fx.push(Effect::Speak(Speech {
                turn,
                mark,
                text,
                kind: SpeechKind::Reply,
                last: false,
            }));
            return;
        }
        agent.pending.push_str(&text);
        let pieces = split_speakable(&mut agent.pending, false);
        if !pieces.is_empty() {
            self.disarm(TimerKind::Filler);
        }
        for piece in pieces {
            self.emit_segment(turn, piece, SpeechKind::Reply, false, fx);
        }
    }

    fn on_llm_done(&mut self, now: Millis, turn: u64, name: &'static str, fx: &mut Vec<Effect>) {
        let Some(agent) = self
            .agent
            .as_mut()
            .filter(|a| a.turn == turn && a.generating)
        else {
            return self.ignore(name, "no such LLM turn is streaming", fx);
        };
        if agent.stream_done {
            return self.ignore(name, "the stream already ended", fx);
        }
        if !agent.awaiting_tools.is_empty() {
            // Tools are running: the turn goes on when their results are in.
            agent.stream_done = true;
            self.flush_pending(turn, fx);
            self.arm_filler(now, fx);
            return;
        }
        if agent.called_tools {
            return self.follow_up(now, fx);
        }
        agent.generating = false;
        self.armed
            .retain(|t| t.kind != TimerKind::LlmDeadline && t.kind != TimerKind::Filler);
        self.finish_reply_speech(turn, fx);
        self.maybe_complete_turn(now, fx);
    }

    fn on_llm_failed(&mut self, now: Millis, turn: u64, name: &'static str, fx: &mut Vec<Effect>) {
        let Some(agent) = self
            .agent
            .as_mut()
            .filter(|a| a.turn == turn && a.generating)
        else {
            return self.ignore(name, "no such LLM turn is streaming", fx);
        };
        agent.generating = false;
        agent.pending.clear();
        self.armed.retain(|t| t.kind != TimerKind::LlmDeadline);
        let spoke_nothing = agent.segments.is_empty();
        if spoke_nothing {
            self.agent = None;
            let line = self.config.llm_apology.clone();
            self.say(now, line, AfterTurn::AwaitCaller, fx);
        } else {
            self.maybe_complete_turn(now, fx);
        }
    }

    fn on_tool_call(
        &mut self,
        now: Millis,
        turn: u64,
        name: &'static str,
        call: ToolCallRequest,
        fx: &mut Vec<Effect>,
    ) {
        let Some(round) = self
            .agent
            .as_ref()
            .filter(|a| a.turn == turn && a.generating && !a.stream_done)
            .map(|a| a.tool_rounds)
        else {
            return self.ignore(name, "no such LLM turn is streaming", fx);
        };
        let key = (turn, round, call.id.clone());
        if self.tool_ids_seen.contains(&key) {
            return self.ignore(name, "this tool call already ran", fx);
        }
        self.tool_ids_seen.push(key);
        if call.name == crate::tools::END_CALL {
            if let Some(agent) = self.agent.as_mut() {
                agent.end_call = true;
                agent.called_tools = true;
            }
            let content = serde_json::json!({ "ending": true }).to_string();
            self.record_tool(now, call, content, true, fx);
            return;
        }
        if let Some(agent) = self.agent.as_mut() {
            agent.called_tools = true;
            agent.awaiting_tools.push(call.id.clone());
        }
        self.tools_running.push((turn, call.clone()));
        let scope = crate::tools::ToolScope {
            customer_id: self.customer.as_ref().map(|c| c.customer_id),
            phone: self.phone().map(str::to_owned),
        };
        fx.push(Effect::RunTool { turn, call, scope });
    }

    #[allow(clippy::too_many_arguments)]
    fn on_tool_result(
        &mut self,
        now: Millis,
        turn: u64,
        name: &'static str,
        id: String,
        content: String,
        ok: bool,
        fx: &mut Vec<Effect>,
    ) {
        let Some(idx) = self
            .tools_running
            .iter()
            .position(|(t, c)| *t == turn && c.id == id)
        else {
            return self.ignore(name, "no such tool call is running", fx);
        };
        let (_, call) = self.tools_running.remove(idx);
        // Kept in the context whatever became of the turn (a barge-in does not lose it).
        self.record_tool(now, call, content, ok, fx);
        let Some(agent) = self
            .agent
            .as_mut()
            .filter(|a| a.turn == turn && a.generating)
        else {
            return;
        };
        agent.awaiting_tools.retain(|t| *t != id);
        if agent.awaiting_tools.is_empty() && agent.stream_done {
            self.follow_up(now, fx);
        }
    }

    fn record_tool(
        &mut self,
        now: Millis,
        call: ToolCallRequest,
        result: String,
        ok: bool,
        fx: &mut Vec<Effect>,
    ) {
        let seq = self.next_message_seq;
        let args = if call.arguments.trim().is_empty() {
            "{}"
        } else {
            call.arguments.as_str()
        };
        let line = format!("{}({args}) -> {result}", call.name);
        self.push_message(now, Role::Tool, line, false, fx);
        Arc::make_mut(&mut self.tool_log).push(ToolExchange {
            message_seq: seq,
            call,
            result,
            ok,
        });
    }

    /// The stream of this turn ended after calling tools and every result is in: ask the model
    /// again with the results (or finish, when it asked to end the call).
    fn follow_up(&mut self, now: Millis, fx: &mut Vec<Effect>) {
        let max_rounds = self.config.max_tool_rounds;
        let Some(agent) = self.agent.as_mut() else {
            return;
        };
        let turn = agent.turn;
        agent.stream_done = false;
        agent.called_tools = false;
        agent.tool_rounds += 1;
        if agent.end_call {
            agent.generating = false;
            agent.after = AfterTurn::Finalize;
            let spoke = !agent.segments.is_empty() || !agent.pending.trim().is_empty();
            self.armed
                .retain(|t| t.kind != TimerKind::LlmDeadline && t.kind != TimerKind::Filler);
            if !spoke {
                self.agent = None;
                let line = self.config.goodbye.clone();
                self.say(now, line, AfterTurn::Finalize, fx);
                return self.begin_finalizing(now, "agent_ended_call", "agent ended the call", fx);
            }
            self.finish_reply_speech(turn, fx);
            return self.maybe_complete_turn(now, fx);
        }
        let offer_tools = agent.tool_rounds < max_rounds;
        self.flush_pending(turn, fx);
        let mut request = prompt::build_request(self);
        request.tools = offer_tools && self.config.offer_tools;
        fx.push(Effect::StartLlm { turn, request });
        let after = self.config.llm_deadline_ms;
        self.arm_timer(now, TimerKind::LlmDeadline, after, fx);
        self.arm_filler(now, fx);
    }

    /// Media mode: speak the text generated so far that forms whole sentences.
    fn flush_pending(&mut self, turn: u64, fx: &mut Vec<Effect>) {
        if self.is_relay() {
            return;
        }
        let Some(agent) = self.agent.as_mut() else {
            return;
        };
        let pieces = split_speakable(&mut agent.pending, false);
        for piece in pieces {
            self.emit_segment(turn, piece, SpeechKind::Reply, false, fx);
        }
    }

    /// The reply's generation is over: relay gets the closing `last` token; media speaks
    /// everything still pending, the last piece marked as last.
    fn finish_reply_speech(&mut self, turn: u64, fx: &mut Vec<Effect>) {
        if self.is_relay() {
            fx.push(Effect::Speak(Speech {
                turn,
                mark: String::new(),
                text: String::new(),
                kind: SpeechKind::Reply,
                last: true,
            }));
            return;
        }
        let Some(agent) = self.agent.as_mut() else {
            return;
        };
        let rest = split_speakable(&mut agent.pending, true);
        let count = rest.len();
        for (i, piece) in rest.into_iter().enumerate() {
            self.emit_segment(turn, piece, SpeechKind::Reply, i + 1 == count, fx);
        }
    }

    fn arm_filler(&mut self, now: Millis, fx: &mut Vec<Effect>) {
        let allowed = self
            .agent
            .as_ref()
            .is_some_and(|a| a.generating && a.fillers < self.config.max_fillers);
        if allowed && self.config.filler_after_ms > 0 {
            let after = self.config.filler_after_ms;
            self.arm_timer(now, TimerKind::Filler, after, fx);
        }
    }

    /// A reply is taking long: say the filler as part of the turn, so the caller hears something.
    fn say_filler(&mut self, now: Millis, fx: &mut Vec<Effect>) {
        let relay = self.is_relay();
        let filler = self.config.filler.clone();
        let Some(agent) = self.agent.as_mut().filter(|a| a.generating) else {
            return;
        };
        agent.fillers += 1;
        let turn = agent.turn;
        if relay {
            agent.segments.push(Segment {
                mark: String::new(),
                text: filler.clone(),
                echoed: true,
            });
            fx.push(Effect::Speak(Speech {
                turn,
                mark: String::new(),
                text: format!("{filler} "),
                kind: SpeechKind::Line,
                last: false,
            }));
        } else {
            self.emit_segment(turn, filler, SpeechKind::Line, false, fx);
        }
        self.arm_filler(now, fx);
    }

    fn on_name_captured(
        &mut self,
        now: Millis,
        name: &'static str,
        captured: String,
        fx: &mut Vec<Effect>,
    ) {
        if self.state != CallState::AwaitingName {
            return self.ignore(name, "no name was being asked for", fx);
        }
        self.disarm(TimerKind::NameDeadline);
        self.name = Some(captured.clone());
        self.name_source = Some(NameSource::Captured);
        fx.push(Effect::StoreName {
            name: captured,
            phone: self.phone().map(str::to_owned),
        });
        self.transition(now, CallState::Conversing, name, fx);
        let line = self.fill(&self.config.nice_to_meet_you);
        self.say(now, line, AfterTurn::AwaitCaller, fx);
    }

    fn on_name_not_found(&mut self, now: Millis, name: &'static str, fx: &mut Vec<Effect>) {
        if self.state != CallState::AwaitingName {
            return self.ignore(name, "no name was being asked for", fx);
        }
        self.disarm(TimerKind::NameDeadline);
        if !self.asked_name {
            self.asked_name = true;
            let line = self.config.ask_name.clone();
            self.say(now, line, AfterTurn::AwaitCaller, fx);
        } else if self.name_attempts >= self.config.max_name_attempts {
            // Move on without a name; the last answer may well be a real question.
            self.transition(now, CallState::Conversing, name, fx);
            self.request_reply(now, fx);
        } else {
            let line = self.config.ask_name_again.clone();
            self.say(now, line, AfterTurn::AwaitCaller, fx);
        }
    }

    fn on_dtmf(&mut self, now: Millis, name: &'static str, digit: String, fx: &mut Vec<Effect>) {
        if !self.state.is_live() {
            return self.ignore(name, "the caller is not being talked to", fx);
        }
        let digit: String = digit
            .chars()
            .filter(|c| c.is_ascii_digit() || *c == '*' || *c == '#')
            .take(1)
            .collect();
        if digit.is_empty() {
            return self.ignore(name, "not a DTMF digit", fx);
        }
        self.push_message(
            now,
            Role::System,
            format!("caller pressed {digit}"),
            false,
            fx,
        );
    }

    fn on_mark(&mut self, now: Millis, name: &'static str, mark: &str, fx: &mut Vec<Effect>) {
        if self.finishing.waiting_for_mark.as_deref() == Some(mark) {
            self.finishing.waiting_for_mark = None;
            return self.maybe_end(now, name, fx);
        }
        let Some(agent) = self.agent.as_mut() else {
            return self.ignore(name, "no agent speech is playing", fx);
        };
        let Some(seg) = agent
            .segments
            .iter_mut()
            .find(|s| s.mark == mark && !s.echoed)
        else {
            return self.ignore(name, "a mark nobody is waiting for", fx);
        };
        seg.echoed = true;
        self.maybe_complete_turn(now, fx);
    }

    fn on_fatal(&mut self, now: Millis, name: &'static str, fx: &mut Vec<Effect>) {
        if matches!(self.state, CallState::Finalizing | CallState::Ended) {
            return self.ignore(name, "the call is already ending", fx);
        }
        if self.state.is_live() {
            self.interrupt_agent(now, fx);
            let line = self.config.fatal_apology.clone();
            self.say(now, line, AfterTurn::Finalize, fx);
        }
        self.begin_finalizing(now, name, "technical failure", fx);
    }

    fn on_timer(
        &mut self,
        now: Millis,
        name: &'static str,
        kind: TimerKind,
        generation: u64,
        fx: &mut Vec<Effect>,
    ) {
        let armed = self
            .armed
            .iter()
            .position(|t| t.kind == kind && t.generation == generation);
        let Some(idx) = armed else {
            return self.ignore(name, "stale timer", fx);
        };
        self.armed.remove(idx);
        match kind {
            TimerKind::GreetingWait => {
                if self.state == CallState::Greeting && !self.greeting_started {
                    self.start_greeting(fx);
                }
            }
            TimerKind::Silence => {
                if !self.state.is_live() || self.agent_is_audible() {
                    return;
                }
                if self.silence_prompts == 0 {
                    self.silence_prompts = 1;
                    let line = self.config.still_there.clone();
                    self.say(now, line, AfterTurn::AwaitCaller, fx);
                } else {
                    let line = self.config.goodbye_silence.clone();
                    self.say(now, line, AfterTurn::Finalize, fx);
                    self.begin_finalizing(now, name, "caller silent", fx);
                }
            }
            TimerKind::ContextDeadline => {
                self.on_context_unavailable(now, name, ContextStatus::TimedOut, fx);
            }
            TimerKind::NameDeadline => self.on_name_not_found(now, name, fx),
            TimerKind::Filler => self.say_filler(now, fx),
            TimerKind::LlmDeadline => {
                if let Some(turn) = self.generating_turn() {
                    fx.push(Effect::CancelLlm { turn });
                    self.on_llm_failed(now, turn, name, fx);
                }
            }
            TimerKind::FinalizeDeadline => {
                if self.state == CallState::Finalizing {
                    self.finishing.waiting_for_mark = None;
                    self.finishing.persisted = true;
                    self.maybe_end(now, name, fx);
                }
            }
        }
    }

    fn on_persisted(&mut self, now: Millis, name: &'static str, fx: &mut Vec<Effect>) {
        if self.state != CallState::Finalizing {
            return self.ignore(name, "nothing was being finalized", fx);
        }
        self.finishing.persisted = true;
        self.maybe_end(now, name, fx);
    }

    // === building blocks ===

    fn ignore(&mut self, event: &'static str, reason: &'static str, fx: &mut Vec<Effect>) {
        self.ignored_events += 1;
        fx.push(Effect::Ignored {
            event,
            state: self.state,
            reason,
        });
    }

    fn transition(&mut self, now: Millis, to: CallState, event: &str, fx: &mut Vec<Effect>) {
        if self.state == to {
            return;
        }
        let t = Transition {
            seq: self.next_transition_seq,
            from: self.state,
            to,
            event: event.to_owned(),
            at_ms: now,
        };
        self.next_transition_seq += 1;
        self.state = to;
        self.entered_at_ms = now;
        Arc::make_mut(&mut self.transitions).push(t.clone());
        fx.push(Effect::RecordTransition(t));
    }

    fn is_relay(&self) -> bool {
        self.start
            .as_ref()
            .is_some_and(|s| s.transport == Transport::Relay)
    }

    fn phone(&self) -> Option<&str> {
        self.start.as_ref().and_then(|s| s.caller.e164.as_deref())
    }

    fn fill(&self, template: &str) -> String {
        template.replace("{name}", self.name.as_deref().unwrap_or("there"))
    }

    fn new_turn(&mut self) -> u64 {
        self.next_turn += 1;
        self.next_turn
    }

    fn new_mark(&mut self, turn: u64) -> String {
        self.next_mark += 1;
        format!("t{turn}-m{}", self.next_mark)
    }

    fn start_greeting(&mut self, fx: &mut Vec<Effect>) {
        if self.greeting_started {
            return;
        }
        self.greeting_started = true;
        let personalized = self.name.clone();
        self.greeted_by_name = personalized.is_some();
        let text = match &personalized {
            Some(_) => self.fill(&self.config.personal_greeting),
            None => self.config.greeting.clone(),
        };
        let turn = self.new_turn();
        let relay = self.is_relay();
        let mark = if relay {
            String::new()
        } else {
            self.new_mark(turn)
        };
        self.agent = Some(AgentTurn::new(
            turn,
            SpeechKind::Greeting {
                personalized: personalized.clone(),
            },
            AfterTurn::GreetingPlayed,
            vec![Segment {
                mark: mark.clone(),
                text: text.clone(),
                echoed: relay,
            }],
            false,
        ));
        fx.push(Effect::Speak(Speech {
            turn,
            mark,
            text,
            kind: SpeechKind::Greeting { personalized },
            last: true,
        }));
        if relay {
            // No marks in relay mode: the greeting counts as played once it is handed to Twilio.
            let now = self.entered_at_ms;
            self.greeting_done(now, "greeting_sent", true, fx);
        }
    }

    /// The greeting is over (played, or the caller talked over it). `ask_name`: the caller is
    /// not talking, so speak next: ask an unknown caller for their name, or welcome a known one
    /// by name if the greeting did not.
    fn greeting_done(&mut self, now: Millis, event: &str, ask_name: bool, fx: &mut Vec<Effect>) {
        if self.state != CallState::Greeting {
            return;
        }
        if self
            .agent
            .as_ref()
            .is_some_and(|a| a.after == AfterTurn::GreetingPlayed)
        {
            if let Some(agent) = self.agent.as_mut() {
                agent.after = AfterTurn::AwaitCaller;
            }
            self.maybe_complete_turn(now, fx);
        }
        self.disarm(TimerKind::GreetingWait);
        self.greeting_started = true;
        if self.name.is_some() {
            self.transition(now, CallState::Enriched, event, fx);
            if ask_name && !self.greeted_by_name {
                // The generic greeting played while the context was on its way (it never waits
                // for it unless configured to): greet the caller by name now, where a new caller
                // is asked for theirs.
                let line = self.fill(&self.config.personal_greeting);
                self.say(now, line, AfterTurn::AwaitCaller, fx);
            } else if !self.agent_is_audible() {
                self.arm_silence(now, fx);
            }
        } else {
            self.transition(now, CallState::AwaitingName, event, fx);
            if ask_name {
                self.asked_name = true;
                let line = self.config.ask_name.clone();
                self.say(now, line, AfterTurn::AwaitCaller, fx);
            }
        }
    }

    /// Speak a fixed line as its own agent turn. A goodbye/apology line (`finalize`) is persisted
    /// at once: the stream is closed when its mark echoes (or at the finalize deadline).
    fn say(&mut self, now: Millis, text: String, after: AfterTurn, fx: &mut Vec<Effect>) {
        self.close_agent_turn(now, fx);
        let turn = self.new_turn();
        let relay = self.is_relay();
        let mark = if relay {
            String::new()
        } else {
            self.new_mark(turn)
        };
        fx.push(Effect::Speak(Speech {
            turn,
            mark: mark.clone(),
            text: text.clone(),
            kind: SpeechKind::Line,
            last: true,
        }));
        self.disarm(TimerKind::Silence);
        if after == AfterTurn::Finalize {
            self.push_turn_message(now, Role::Agent, text, false, Some(turn), fx);
            if !relay {
                self.finishing.waiting_for_mark = Some(mark);
            }
            return;
        }
        self.agent = Some(AgentTurn::new(
            turn,
            SpeechKind::Line,
            after,
            vec![Segment {
                mark,
                text,
                echoed: relay,
            }],
            false,
        ));
        if relay {
            self.maybe_complete_turn(now, fx);
        }
    }

    fn emit_segment(
        &mut self,
        turn: u64,
        text: String,
        kind: SpeechKind,
        last: bool,
        fx: &mut Vec<Effect>,
    ) {
        let mark = self.new_mark(turn);
        if let Some(agent) = self.agent.as_mut() {
            agent.segments.push(Segment {
                mark: mark.clone(),
                text: text.clone(),
                echoed: false,
            });
        }
        fx.push(Effect::Speak(Speech {
            turn,
            mark,
            text,
            kind,
            last,
        }));
    }

    fn request_reply(&mut self, now: Millis, fx: &mut Vec<Effect>) {
        self.close_agent_turn(now, fx);
        let turn = self.new_turn();
        let request = prompt::build_request(self);
        self.agent = Some(AgentTurn::new(
            turn,
            SpeechKind::Reply,
            AfterTurn::AwaitCaller,
            Vec::new(),
            true,
        ));
        self.disarm(TimerKind::Silence);
        fx.push(Effect::StartLlm { turn, request });
        let after = self.config.llm_deadline_ms;
        self.arm_timer(now, TimerKind::LlmDeadline, after, fx);
        self.arm_filler(now, fx);
    }

    /// Is agent speech playing or about to play (so caller speech is a barge-in)?
    fn agent_is_audible(&self) -> bool {
        match &self.agent {
            None => false,
            Some(a) if self.is_relay() => a.generating,
            Some(a) => a.generating || a.segments.iter().any(|s| !s.echoed),
        }
    }

    /// The caller talks over the agent: stop generating, drop queued audio, keep what was heard.
    fn barge_in(&mut self, now: Millis, fx: &mut Vec<Effect>) {
        let was_greeting = self
            .agent
            .as_ref()
            .is_some_and(|a| a.after == AfterTurn::GreetingPlayed);
        self.interrupt_agent(now, fx);
        if was_greeting && self.state == CallState::Greeting {
            self.greeting_done(now, "barge_in", false, fx);
        }
    }

    fn interrupt_agent(&mut self, now: Millis, fx: &mut Vec<Effect>) {
        let Some(mut agent) = self.agent.take() else {
            return;
        };
        if agent.generating {
            fx.push(Effect::CancelLlm { turn: agent.turn });
            agent.generating = false;
            self.disarm(TimerKind::LlmDeadline);
        }
        if !self.is_relay() && agent.segments.iter().any(|s| !s.echoed) {
            fx.push(Effect::ClearPlayback);
        }
        let heard = if self.is_relay() {
            agent.full_text()
        } else {
            agent.heard_text()
        };
        let complete = heard == agent.full_text() && agent.pending.trim().is_empty();
        self.finish_turn(now, agent, heard, !complete, fx);
    }

    fn maybe_complete_turn(&mut self, now: Millis, fx: &mut Vec<Effect>) {
        if self.is_relay() {
            // ConversationRelay never says when Twilio finished speaking: a generated turn stays
            // open (and interruptible) until the caller's next prompt, an `interrupt`, or the
            // end of the call, which close it with what was heard.
            let Some(agent) = self.agent.as_mut().filter(|a| !a.generating) else {
                return;
            };
            let after = std::mem::replace(&mut agent.after, AfterTurn::AwaitCaller);
            match after {
                AfterTurn::GreetingPlayed => self.greeting_done(now, "greeting_played", true, fx),
                AfterTurn::AwaitCaller => self.arm_silence(now, fx),
                AfterTurn::Finalize => {
                    self.begin_finalizing(now, "agent_ended_call", "agent ended the call", fx)
                }
            }
            return;
        }
        let done = self.agent.as_ref().is_some_and(AgentTurn::fully_played);
        if !done {
            return;
        }
        let Some(agent) = self.agent.take() else {
            return;
        };
        let after = agent.after;
        let text = agent.full_text();
        self.finish_turn(now, agent, text, false, fx);
        match after {
            AfterTurn::GreetingPlayed => self.greeting_done(now, "greeting_played", true, fx),
            AfterTurn::AwaitCaller => self.arm_silence(now, fx),
            AfterTurn::Finalize => {
                self.begin_finalizing(now, "agent_ended_call", "agent ended the call", fx)
            }
        }
    }

    /// Close the agent turn, if any, as heard so far (relay: all of it).
    fn close_agent_turn(&mut self, now: Millis, fx: &mut Vec<Effect>) {
        let Some(mut agent) = self.agent.take() else {
            return;
        };
        if agent.generating {
            fx.push(Effect::CancelLlm { turn: agent.turn });
            agent.generating = false;
            self.disarm(TimerKind::LlmDeadline);
        }
        let full = agent.full_text();
        let heard = if self.is_relay() {
            full.clone()
        } else {
            agent.heard_text()
        };
        let interrupted = heard != full;
        self.finish_turn(now, agent, heard, interrupted, fx);
    }

    fn finish_turn(
        &mut self,
        now: Millis,
        agent: AgentTurn,
        heard: String,
        interrupted: bool,
        fx: &mut Vec<Effect>,
    ) {
        if heard.trim().is_empty() {
            return;
        }
        self.push_turn_message(now, Role::Agent, heard, interrupted, Some(agent.turn), fx);
    }

    fn push_message(
        &mut self,
        now: Millis,
        role: Role,
        text: String,
        interrupted: bool,
        fx: &mut Vec<Effect>,
    ) {
        self.push_turn_message(now, role, text, interrupted, None, fx);
    }

    fn push_turn_message(
        &mut self,
        now: Millis,
        role: Role,
        text: String,
        interrupted: bool,
        turn: Option<u64>,
        fx: &mut Vec<Effect>,
    ) {
        let msg = ConversationMessage {
            seq: self.next_message_seq,
            role,
            text,
            interrupted,
            at_ms: now,
            turn,
        };
        self.next_message_seq += 1;
        Arc::make_mut(&mut self.conversation).push(msg.clone());
        fx.push(Effect::PersistMessage(msg));
    }

    fn arm_timer(&mut self, now: Millis, kind: TimerKind, after_ms: u64, fx: &mut Vec<Effect>) {
        self.disarm(kind);
        self.timer_generation += 1;
        let generation = self.timer_generation;
        self.armed.push(ArmedTimer {
            kind,
            generation,
            deadline_ms: now + after_ms,
        });
        fx.push(Effect::StartTimer {
            kind,
            generation,
            after_ms,
        });
    }

    fn disarm(&mut self, kind: TimerKind) {
        self.armed.retain(|t| t.kind != kind);
    }

    fn arm_silence(&mut self, now: Millis, fx: &mut Vec<Effect>) {
        if self.state.is_live()
            && self.state != CallState::Greeting
            && self.config.silence_timeout_ms > 0
        {
            let after = self.config.silence_timeout_ms;
            self.arm_timer(now, TimerKind::Silence, after, fx);
        }
    }

    fn begin_finalizing(
        &mut self,
        now: Millis,
        event: &'static str,
        outcome: &str,
        fx: &mut Vec<Effect>,
    ) {
        match self.state {
            CallState::Finalizing
                if event == "stream_stopped" && self.finishing.waiting_for_mark.is_some() =>
            {
                // The caller hung up during the goodbye line: no mark will come back.
                self.finishing.waiting_for_mark = None;
                return self.maybe_end(now, event, fx);
            }
            CallState::Finalizing | CallState::Ended => {
                return self.ignore(event, "the call is already ending", fx);
            }
            CallState::Connected => {
                // Nothing was said and nothing is owed: end at once.
                self.finishing.outcome = outcome.to_owned();
                self.transition(now, CallState::Finalizing, event, fx);
                self.request_finalize(now, fx);
                return;
            }
            _ => {}
        }
        if event == "stream_stopped" {
            // The caller is gone: no mark will ever come back.
            self.finishing.waiting_for_mark = None;
        }
        self.close_agent_turn(now, fx);
        self.armed.clear();
        self.finishing.outcome = outcome.to_owned();
        self.transition(now, CallState::Finalizing, event, fx);
        self.request_finalize(now, fx);
    }

    fn request_finalize(&mut self, now: Millis, fx: &mut Vec<Effect>) {
        if self.finishing.requested {
            return;
        }
        self.finishing.requested = true;
        let transcript = self.conversation.to_vec();
        let start = self.start.as_deref();
        let record = CallRecord {
            call_sid: start
                .map(|s| s.call_sid.clone())
                .unwrap_or_else(|| CallSid(String::new())),
            caller: start.map(|s| s.caller.clone()).unwrap_or(Caller {
                raw: String::new(),
                e164: None,
            }),
            called: start.and_then(|s| s.called.clone()),
            customer_id: self.customer.as_ref().map(|c| c.customer_id),
            customer_name: self.name.clone(),
            direction: start
                .map(|s| s.direction.clone())
                .unwrap_or_else(|| "inbound".into()),
            transport: start.map(|s| s.transport).unwrap_or(Transport::MediaStream),
            started_at_ms: self.started_at_ms,
            ended_at_ms: now,
            outcome: self.finishing.outcome.clone(),
            final_state: CallState::Ended,
            restarts: self.restarts,
            name_source: self.name_source,
            transcript,
            summary: None,
        };
        fx.push(Effect::Finalize(Box::new(record)));
        let after = self.config.finalize_deadline_ms;
        self.arm_timer(now, TimerKind::FinalizeDeadline, after, fx);
    }

    fn maybe_end(&mut self, now: Millis, event: &str, fx: &mut Vec<Effect>) {
        if self.state != CallState::Finalizing {
            return;
        }
        if self.finishing.persisted && self.finishing.waiting_for_mark.is_none() {
            self.close_agent_turn(now, fx);
            self.armed.clear();
            self.transition(now, CallState::Ended, event, fx);
            fx.push(Effect::CloseStream);
        }
    }
}
