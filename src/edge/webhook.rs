//! `POST /twilio/voice` and `POST /twilio/stream-status`. The voice webhook answers TwiML that
//! connects the call to this server: `<Connect><Stream>` (Media Streams) or
//! `<Connect><ConversationRelay>`, with `CallSid`, `From`, `To`, `Direction` and any outbound
//! lead parameters (the webhook URL's query string) as `<Parameter>`s — the stream URL itself
//! never carries a query string.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use switchboard_actors::CallSid;
use switchboard_twilio::{signature, twiml};

use crate::config::TwilioMode;
use crate::http::AppState;

/// Webhook fields Twilio sets itself; a query parameter with one of these names is not a lead
/// parameter and is not forwarded.
const RESERVED: &[&str] = &[
    "CallSid",
    "From",
    "To",
    "Direction",
    "AccountSid",
    "CallStatus",
    "ApiVersion",
];
const MAX_LEAD_PARAMETERS: usize = 16;

pub async fn voice(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let fields = twiml::parse_form(&body);
    if let Err(denied) = super::auth::check_form(&app, &headers, &uri, &fields) {
        return *denied;
    }
    let hook = match twiml::VoiceWebhook::from_pairs(&fields) {
        Ok(hook) => hook,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("bad voice webhook: {e}\n")).into_response();
        }
    };
    let lead: Vec<(String, String)> = uri
        .query()
        .map(|q| twiml::parse_form(q.as_bytes()))
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| !RESERVED.contains(&k.as_str()))
        .take(MAX_LEAD_PARAMETERS)
        .collect();
    let mut params: Vec<(&str, &str)> = vec![
        ("CallSid", &hook.call_sid),
        ("From", &hook.from),
        ("To", &hook.to),
        ("Direction", &hook.direction),
    ];
    params.extend(lead.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let config = app.config();
    let public = config.server.public_url.trim_end_matches('/');
    let body = match config.twilio.mode {
        TwilioMode::Media => {
            let url = match signature::websocket_url(public, "/twilio/media") {
                Ok(url) => url,
                Err(e) => return misconfigured(e),
            };
            let status = format!("{public}/twilio/stream-status");
            twiml::connect_stream(&url, Some(&status), &params)
        }
        TwilioMode::Relay => {
            let url = match signature::websocket_url(public, "/twilio/relay") {
                Ok(url) => url,
                Err(e) => return misconfigured(e),
            };
            let t = &config.twilio;
            let nonempty = |s: &str| Some(s.trim()).filter(|s| !s.is_empty()).map(str::to_owned);
            twiml::connect_conversation_relay(
                &url,
                nonempty(&t.welcome_greeting).as_deref(),
                nonempty(&t.relay_language).as_deref(),
                nonempty(&t.relay_voice).as_deref(),
                &params,
            )
        }
    };
    tracing::info!(call_sid = %hook.call_sid, from = %switchboard_actors::mask_phone(&hook.from), "voice webhook answered");
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], body).into_response()
}

fn misconfigured(e: signature::UrlError) -> Response {
    tracing::error!(error = %e, "server.public_url cannot be turned into a wss:// URL");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("server.public_url is not usable: {e}\n"),
    )
        .into_response()
}

pub async fn stream_status(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let fields = twiml::parse_form(&body);
    if let Err(denied) = super::auth::check_form(&app, &headers, &uri, &fields) {
        return *denied;
    }
    let status = match twiml::StreamStatus::from_pairs(&fields) {
        Ok(status) => status,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("bad stream status callback: {e}\n"),
            )
                .into_response();
        }
    };
    let event = match &status.stream_event {
        twiml::StreamEvent::Started => "stream-started".to_owned(),
        twiml::StreamEvent::Stopped => "stream-stopped".to_owned(),
        twiml::StreamEvent::Error => "stream-error".to_owned(),
        twiml::StreamEvent::Other(other) => other.clone(),
    };
    let sid = CallSid(status.call_sid.clone());
    let live = app
        .runtime()
        .calls
        .get(&sid)
        .map(|h| h.record_stream_event(&event, status.stream_error.as_deref()))
        .is_some();
    tracing::info!(call_sid = %sid, stream_sid = %status.stream_sid, event, error = status.stream_error.as_deref().unwrap_or(""), live, "stream status");
    StatusCode::NO_CONTENT.into_response()
}
