//! Request signatures on everything Twilio sends: the webhooks (form fields) and both WebSocket
//! upgrades (no fields), checked against the URL Twilio requested (PROTOCOLS.md §2). The scheme
//! comes from `server.public_url`; the host from `X-Forwarded-Host`, else `Host`, else the public
//! URL. A bad or missing signature is answered 403 with a log line naming the reason, before any
//! call is created.

use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use switchboard_twilio::signature;

use crate::http::AppState;

/// The 403 answer for a request that failed the check (boxed: a `Response` is large).
pub type Denied = Box<Response>;

fn host(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(axum::http::header::HOST))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn target(uri: &Uri) -> &str {
    uri.path_and_query().map_or("/", |pq| pq.as_str())
}

fn forbidden(reason: &str, what: &str) -> Denied {
    tracing::warn!(
        reason,
        request = what,
        "rejected Twilio request: bad signature"
    );
    metrics::counter!("switchboard_rejected_requests_total", "reason" => "bad_signature")
        .increment(1);
    Box::new((StatusCode::FORBIDDEN, format!("forbidden: {reason}\n")).into_response())
}

/// `Ok` when signatures are off, or when the request carries a valid signature.
fn check(
    app: &AppState,
    headers: &HeaderMap,
    url: Result<String, signature::UrlError>,
    params: &[(String, String)],
    what: &str,
) -> Result<(), Denied> {
    let twilio = &app.config().twilio;
    if !twilio.validate_signatures || !twilio.auth_token.is_set() {
        return Ok(());
    }
    let Some(sig) = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
    else {
        return Err(forbidden("missing X-Twilio-Signature header", what));
    };
    let url = url.map_err(|e| forbidden(&format!("cannot rebuild the signed URL: {e}"), what))?;
    if signature::validate(twilio.auth_token.expose(), &url, params, sig) {
        Ok(())
    } else {
        Err(forbidden(&format!("signature does not match {url}"), what))
    }
}

/// A form-encoded webhook (`/twilio/voice`, `/twilio/stream-status`).
pub fn check_form(
    app: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    params: &[(String, String)],
) -> Result<(), Denied> {
    let public = &app.config().server.public_url;
    let url = http_url(public, host(headers), target(uri));
    check(app, headers, url, params, uri.path())
}

/// A WebSocket upgrade (`/twilio/media`, `/twilio/relay`): the signed URL is the `wss://` one.
pub fn check_upgrade(app: &AppState, headers: &HeaderMap, uri: &Uri) -> Result<(), Denied> {
    let public = &app.config().server.public_url;
    let url = signature::upgrade_url(public, host(headers), target(uri));
    check(app, headers, url, &[], uri.path())
}

/// `scheme://host/target` for an HTTP webhook, scheme from the public URL.
fn http_url(public: &str, host: Option<&str>, target: &str) -> Result<String, signature::UrlError> {
    let (scheme, rest) = public
        .split_once("://")
        .ok_or_else(|| signature::UrlError::UnsupportedScheme(public.to_owned()))?;
    let configured_host = rest.split('/').next().unwrap_or(rest);
    let host = host.unwrap_or(configured_host);
    Ok(format!("{scheme}://{host}{target}"))
}
