//! The operator dashboard at `GET /`: one self-contained HTML page (vanilla JS and CSS, compiled
//! into the binary) that shows live calls by state from `/api/v1/calls` and the event stream
//! `/api/v1/calls/events`, a call's timeline and transcript from `/api/v1/calls/{sid}`, and the
//! counters of `/api/v1/stats`. It owns no state and no routes of its own besides the page; it
//! never needs a build step.

use axum::http::header;
use axum::response::IntoResponse;

/// The page, embedded at compile time.
pub const PAGE: &str = include_str!("dashboard/index.html");

/// `GET /`
pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Everything the page needs is inline or same-origin: nothing else may load.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
}
