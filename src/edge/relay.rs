//! `GET /twilio/relay`: the ConversationRelay WebSocket (PROTOCOLS.md §4). Twilio does speech
//! both ways: `setup` starts the call, `prompt` is what the caller said, `interrupt` says how much
//! of the agent's turn the caller heard. The writer streams the agent's reply as `text` tokens as
//! the LLM produces them (`last: true` ends the turn) and `end`s the session when the call is over.
//! The same call actor and state machine serve both transports.

use std::sync::Arc;
use tracing::Instrument;

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use fastwebsockets::upgrade::{IncomingUpgrade, UpgradeFut};
use switchboard_actors::machine::Event;
use switchboard_actors::{CallHandle, CallSid, CallStart, Outbound, Transport};
use switchboard_twilio::relay::{self, RelayInbound, RelayOutbound};
use tokio::sync::mpsc;

use super::socket::{self, Incoming, WsWrite};
use super::{caller, reject};
use crate::http::AppState;

const T: &str = "relay";

pub async fn relay_ws(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    upgrade: IncomingUpgrade,
) -> Response {
    if let Err(denied) = super::auth::check_upgrade(&app, &headers, &uri) {
        return *denied;
    }
    socket::accept(upgrade, T, move |fut| session(app, fut))
}

async fn session(app: AppState, fut: UpgradeFut) {
    let (mut read, write) = match socket::connect(fut).await {
        Ok(halves) => halves,
        Err(e) => {
            tracing::warn!(error = %e, "relay handshake failed");
            return;
        }
    };
    let (control_tx, control_rx) = mpsc::channel(8);
    let (out_tx, out_rx) = mpsc::channel(socket::OUTBOUND_QUEUE);
    let writer = app
        .calls()
        .threads
        .spawn(writer(write, out_rx, control_rx).in_current_span());
    let mut call: Option<Arc<CallHandle>> = None;
    loop {
        let text = match socket::next(&mut read, &control_tx).await {
            Incoming::Text(text) => text,
            Incoming::Binary => {
                reject(T, "binary_frame");
                continue;
            }
            Incoming::Closed => break,
        };
        let msg = match relay::parse_relay_inbound(&text) {
            Ok(msg) => msg,
            Err(e) => {
                reject(T, e.reason());
                tracing::debug!(error = %e, "relay message rejected");
                continue;
            }
        };
        let event = match msg {
            RelayInbound::Setup(setup) => {
                if call.is_some() {
                    reject(T, "second_setup");
                    continue;
                }
                socket::name_call(&setup.call_sid);
                let from = setup.from.clone().unwrap_or_default();
                let call_start = CallStart {
                    call_sid: CallSid(setup.call_sid.clone()),
                    stream_sid: Some(setup.session_id.clone()),
                    caller: caller(&from, app.phone_region()),
                    called: setup.to.clone(),
                    direction: setup.direction.clone().unwrap_or_else(|| "inbound".into()),
                    transport: Transport::Relay,
                    custom_parameters: setup.custom_parameters.clone(),
                };
                match app.runtime().start_call(call_start, out_tx.clone()).await {
                    Ok(handle) => call = Some(handle),
                    Err(e) => {
                        reject(T, "call_not_started");
                        tracing::warn!(error = %e, "call not started");
                        let _ = out_tx.try_send(Outbound::Close {
                            reason: e.to_string(),
                        });
                    }
                }
                continue;
            }
            RelayInbound::Prompt {
                voice_prompt, last, ..
            } => Event::CallerUtterance {
                text: voice_prompt,
                is_final: last,
            },
            RelayInbound::Dtmf { digit } => Event::Dtmf { digit },
            RelayInbound::Interrupt {
                utterance_until_interrupt,
                ..
            } => Event::AgentInterrupted {
                heard: Some(utterance_until_interrupt),
            },
            RelayInbound::Error { description } => {
                tracing::warn!(%description, "ConversationRelay reported an error");
                metrics::counter!("switchboard_relay_errors_total").increment(1);
                continue;
            }
        };
        match &call {
            Some(h) => {
                let _ = h.send(event);
            }
            None => reject(T, "message_before_setup"),
        }
    }
    if let Some(h) = &call {
        let _ = h.send(Event::StreamStopped);
    }
    drop(out_tx);
    drop(control_tx);
    let _ = writer.await;
}

async fn writer(
    mut ws: WsWrite,
    mut out: mpsc::Receiver<Outbound>,
    mut control: mpsc::Receiver<fastwebsockets::Frame<'static>>,
) {
    while let Some(msg) = socket::next_outbound(&mut ws, &mut out, &mut control).await {
        let json = match msg {
            Outbound::Text { token, last } => Some(
                RelayOutbound::Text {
                    token,
                    last,
                    lang: None,
                    interruptible: None,
                    preemptible: None,
                }
                .to_json(),
            ),
            Outbound::Close { reason } => {
                let end = RelayOutbound::End {
                    handoff_data: Some(format!(
                        "{{\"reason\":{}}}",
                        serde_json::Value::String(reason)
                    )),
                };
                socket::send_text(&mut ws, &end.to_json()).await;
                socket::close(&mut ws, "call ended").await;
                return;
            }
            Outbound::Stamp(stamp) => {
                // Stamped once what came before it is on the socket.
                if !socket::flush(&mut ws).await {
                    return;
                }
                stamp.record();
                None
            }
            // Audio, marks and clear belong to Media Streams.
            Outbound::Audio(_) | Outbound::Mark(_) | Outbound::Clear => None,
        };
        if let Some(json) = json
            && !socket::queue_text(&mut ws, &json).await
        {
            return;
        }
        // Tokens that queued up while one was being written leave in one TCP write.
        if out.is_empty() && !socket::flush(&mut ws).await {
            return;
        }
    }
}
