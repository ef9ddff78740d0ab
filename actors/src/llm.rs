//! The Llm actor: starts streaming completions as tasks and forwards every piece of text, and
//! every complete tool call, to the call as an event. Cancelling a turn aborts its task, which drops the stream and so closes the
//! provider connection. Concurrent streams are capped; past the cap a turn fails at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use futures::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::AbortHandle;

use crate::domain::*;
use crate::handle::LiveCalls;
use crate::machine::Event;
use crate::ports::{LlmClient, LlmPiece};

pub enum LlmMsg {
    Start {
        call_sid: CallSid,
        turn: u64,
        request: LlmRequest,
    },
    Cancel {
        call_sid: CallSid,
        turn: u64,
    },
}

#[derive(Default, Debug)]
pub struct LlmStats {
    pub started: AtomicU64,
    pub cancelled: AtomicU64,
    pub failed: AtomicU64,
    pub shed: AtomicU64,
}

#[derive(Clone)]
pub struct LlmArgs {
    pub client: Arc<dyn LlmClient>,
    pub calls: LiveCalls,
    pub max_streams: usize,
    /// Live streams; shared so a restarted actor can still cancel them.
    pub streams: Arc<DashMap<(CallSid, u64), AbortHandle>>,
    pub stats: Arc<LlmStats>,
}

pub struct LlmActor;

impl Actor for LlmActor {
    type Msg = LlmMsg;
    type State = LlmArgs;
    type Arguments = LlmArgs;

    async fn pre_start(
        &self,
        _me: ActorRef<LlmMsg>,
        args: LlmArgs,
    ) -> Result<LlmArgs, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _me: ActorRef<LlmMsg>,
        msg: LlmMsg,
        st: &mut LlmArgs,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            LlmMsg::Start {
                call_sid,
                turn,
                request,
            } => {
                if st.streams.len() >= st.max_streams {
                    st.stats.shed.fetch_add(1, Ordering::Relaxed);
                    let reason = format!("LLM overloaded: {} streams open", st.streams.len());
                    st.calls
                        .deliver(&call_sid, Event::LlmFailed { turn, reason });
                    return Ok(());
                }
                st.stats.started.fetch_add(1, Ordering::Relaxed);
                let args = st.clone();
                let key = (call_sid.clone(), turn);
                // The task waits until it is registered, so it can never finish (and unregister)
                // before it was registered.
                let (registered_tx, registered_rx) = tokio::sync::oneshot::channel::<()>();
                let task = tokio::spawn(async move {
                    let _ = registered_rx.await;
                    let mut stream = args.client.stream_with_tools(request);
                    let mut outcome = Event::LlmDone { turn };
                    while let Some(piece) = stream.next().await {
                        let event = match piece {
                            Ok(LlmPiece::Text(text)) if text.is_empty() => continue,
                            Ok(LlmPiece::Text(text)) => Event::LlmToken { turn, text },
                            Ok(LlmPiece::ToolCall(call)) => Event::LlmToolCall { turn, call },
                            Err(e) => {
                                args.stats.failed.fetch_add(1, Ordering::Relaxed);
                                outcome = Event::LlmFailed {
                                    turn,
                                    reason: e.to_string(),
                                };
                                break;
                            }
                        };
                        if !args.calls.deliver(&call_sid, event) {
                            break; // the call is gone: stop paying for tokens
                        }
                    }
                    drop(stream);
                    args.streams.remove(&(call_sid.clone(), turn));
                    args.calls.deliver(&call_sid, outcome);
                });
                st.streams.insert(key, task.abort_handle());
                let _ = registered_tx.send(());
            }
            LlmMsg::Cancel { call_sid, turn } => {
                if let Some((_, abort)) = st.streams.remove(&(call_sid, turn)) {
                    st.stats.cancelled.fetch_add(1, Ordering::Relaxed);
                    abort.abort();
                }
            }
        }
        Ok(())
    }
}
