//! HTTP plumbing shared by the vendor adapters: the pooled client, base-URL joining, and turning
//! a failed response or transport error into a `PortError` an operator can act on. Never logs or
//! formats a request's headers (they carry the API key).

use std::time::Duration;

use switchboard_actors::ports::PortError;

use crate::chat::{error_message, truncate_chars};

/// Builds the one pooled client an adapter keeps for its lifetime (connections are reused across
/// calls, so a turn does not pay a TCP + TLS handshake).
pub fn build_client() -> Result<reqwest::Client, PortError> {
    // reqwest built with `rustls-no-provider` panics when no process-wide crypto provider is
    // installed. The binary installs ring's at start; do it here too when it did not (tests,
    // tools), so constructing an adapter can never panic. Losing the race to another installer
    // is fine: any installed provider will do.
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    reqwest::Client::builder()
        .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(90))
        .build()
        .map_err(|e| PortError::unavailable(format!("could not build the HTTP client: {e}")))
}

/// `{base_url}/{path}` with exactly one slash between them.
pub fn join_url(base_url: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base_url.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// A transport error (connect refused, reset, DNS) as an outage.
pub fn transport_error(what: &str, url: &str, error: reqwest::Error) -> PortError {
    // The URL is already in our message once.
    let error = error.without_url();
    if error.is_timeout() {
        return PortError::timeout(format!("{what} at {url} timed out: {error}"));
    }
    // The Display of a reqwest error names the URL but never headers; walk the sources for the
    // useful part ("Connection refused").
    let mut detail = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(inner) = source {
        detail.push_str(": ");
        detail.push_str(&inner.to_string());
        source = inner.source();
    }
    PortError::unavailable(format!(
        "{what} at {url} unreachable ({detail}); check the base_url and that the server is up"
    ))
}

/// A non-success status as a `PortError`, with a short excerpt of the body. 429 and 5xx are
/// outages (retry later); other 4xx mean our request or credentials are wrong.
pub async fn status_error(what: &str, response: reqwest::Response) -> PortError {
    let status = response.status();
    // Rate limiters say when to come back; worth passing on to whoever reads the error.
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(|v| format!(" (retry after {v} s)"))
        .unwrap_or_default();
    let excerpt = body_excerpt(response).await;
    let message = format!("{what} returned HTTP {status}: {excerpt}{retry_after}");
    if status.as_u16() == 429 || status.is_server_error() {
        PortError::unavailable(message)
    } else if status.as_u16() == 401 || status.as_u16() == 403 {
        PortError::rejected(format!("{message} (check the API key)"))
    } else {
        PortError::rejected(format!("{message} (check the model name and base_url)"))
    }
}

/// The first 4 KiB of an error response's body (lossy UTF-8), read for at most 500 ms: this
/// runs only on a path that already failed, so it does not wait long for the explanation.
pub async fn error_body(mut response: reqwest::Response) -> String {
    const MAX_BYTES: usize = 4096;
    let mut body = Vec::new();
    let read = async {
        while body.len() < MAX_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(500), read).await;
    body.truncate(MAX_BYTES);
    String::from_utf8_lossy(&body).into_owned()
}

/// The start of a body, preferring an OpenAI-style `error.message`. Reads at most a few KiB and
/// gives up quickly: this runs only on a path that already failed.
pub async fn body_excerpt(response: reqwest::Response) -> String {
    let text = error_body(response).await;
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(&text)
        && let Some(error) = value.get("error")
    {
        return error_message(error);
    }
    let mut excerpt: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if excerpt.is_empty() {
        excerpt = "(empty body)".to_owned();
    }
    truncate_chars(&mut excerpt, 200);
    excerpt
}

/// A URL fit for messages and logs: no `user:password@`, no query string (some proxies take
/// keys there). Unparseable input is cut at the first `?` and `@` is hidden the same way.
pub fn shown_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            let had_query = parsed.query().is_some();
            parsed.set_query(None);
            let mut shown = parsed.to_string();
            if had_query {
                shown.push_str("?…");
            }
            shown
        }
        Err(_) => {
            let without_query = url.split('?').next().unwrap_or_default();
            match without_query.rsplit_once('@') {
                Some((_, host_and_path)) => format!("…@{host_and_path}"),
                None => without_query.to_owned(),
            }
        }
    }
}

/// Hides a secret in `Debug` output while saying whether one is set.
pub fn redacted(secret: &Option<String>) -> &'static str {
    match secret {
        Some(_) => "Some(<redacted>)",
        None => "None",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_url_hides_credentials_and_query() {
        assert_eq!(
            shown_url("https://user:sk-pass@proxy.example/v1/chat/completions?key=sk-q"),
            "https://proxy.example/v1/chat/completions?…"
        );
        assert_eq!(
            shown_url("http://127.0.0.1:8000/v1/audio/speech"),
            "http://127.0.0.1:8000/v1/audio/speech"
        );
        assert_eq!(shown_url("not a url@x?key=1"), "…@x");
    }

    #[test]
    fn join_url_has_one_slash() {
        assert_eq!(
            join_url("http://h/v1/", "/chat/completions"),
            "http://h/v1/chat/completions"
        );
        assert_eq!(
            join_url("http://h/v1", "audio/speech"),
            "http://h/v1/audio/speech"
        );
    }
}
