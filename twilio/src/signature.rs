//! `X-Twilio-Signature` (PROTOCOLS.md §2): computing and validating Twilio's request signatures
//! for form webhooks, JSON-bodied webhooks and WebSocket upgrades, and building the exact URL
//! that Twilio signed.
//!
//! Never here: reading headers or bodies, or deciding whether validation is switched on — the
//! server passes in the strings it received.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha1 = Hmac<Sha1>;

/// Why a public base URL or request target cannot make a signed URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("public URL {0:?} must start with http://, https://, ws:// or wss://")]
    UnsupportedScheme(String),
    #[error("public URL {0:?} has no host")]
    MissingHost(String),
    #[error("public URL {0:?} must not carry a query string or fragment")]
    HasQueryOrFragment(String),
    #[error("request target {0:?} must start with '/'")]
    BadRequestTarget(String),
}

/// The raw HMAC-SHA1 of Twilio's signing string, fed piecewise so no concatenation is built.
fn mac<K: AsRef<str>, V: AsRef<str>>(auth_token: &str, url: &str, params: &[(K, V)]) -> HmacSha1 {
    // Sorting (name, value) pairs byte-wise groups each name's values in sorted order, and
    // dedup then drops repeated identical pairs: exactly Twilio's "sorted(set(values))" per name.
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    // HMAC takes keys of any length, so this cannot fail; the fallback only satisfies the type.
    let mut mac = HmacSha1::new_from_slice(auth_token.as_bytes())
        .unwrap_or_else(|_| HmacSha1::new(&Default::default()));
    mac.update(url.as_bytes());
    for (name, value) in pairs {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

/// The `X-Twilio-Signature` Twilio would send for a request to `url` with these form fields.
///
/// `url` is used exactly as given (scheme, host, port, path, query); no port variants are tried.
pub fn compute<K: AsRef<str>, V: AsRef<str>>(
    auth_token: &str,
    url: &str,
    params: &[(K, V)],
) -> String {
    BASE64.encode(mac(auth_token, url, params).finalize().into_bytes())
}

/// Whether `signature` is Twilio's signature for a request to `url` with these form fields.
///
/// Like Twilio's own validators, accepts the URL as given, with its port removed, or with the
/// scheme's default port added (`:443` for https/wss, `:80` for http/ws), because proxies and
/// frameworks disagree on whether the port is part of "the URL". The comparison is constant-time.
pub fn validate<K: AsRef<str>, V: AsRef<str>>(
    auth_token: &str,
    url: &str,
    params: &[(K, V)],
    signature: &str,
) -> bool {
    let Ok(expected) = BASE64.decode(signature.as_bytes()) else {
        return false;
    };
    url_candidates(url).iter().flatten().any(|candidate| {
        mac(auth_token, candidate, params)
            .verify_slice(&expected)
            .is_ok()
    })
}

/// Validates a JSON-bodied webhook: the signature covers `url` (which carries
/// `?bodySHA256=<hex>`) with no form fields, and the `bodySHA256` value must equal the hex
/// SHA-256 of `raw_body`. Both must hold.
pub fn validate_json_body(auth_token: &str, url: &str, raw_body: &[u8], signature: &str) -> bool {
    let no_params: &[(&str, &str)] = &[];
    let signature_ok = validate(auth_token, url, no_params, signature);
    let body_ok = query_value(url, "bodySHA256").is_some_and(|claimed| {
        let claimed = claimed.to_ascii_lowercase();
        claimed
            .as_bytes()
            .ct_eq(body_sha256_hex(raw_body).as_bytes())
            .into()
    });
    signature_ok & body_ok
}

/// Lowercase hex SHA-256 of a request body, as Twilio puts it in `bodySHA256`.
pub fn body_sha256_hex(body: &[u8]) -> String {
    use std::fmt::Write as _;
    Sha256::digest(body)
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The first value of query parameter `name`, undecoded (Twilio's hex needs no decoding).
fn query_value<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    let query = url.split_once('?')?.1;
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The URL as given, plus the one variant Twilio's validators also try: port removed when the
/// URL has one, default port added when it has none (and the scheme has a default).
fn url_candidates(url: &str) -> [Option<String>; 2] {
    [Some(url.to_owned()), port_variant(url)]
}

fn default_port(scheme: &str) -> Option<&'static str> {
    match scheme.to_ascii_lowercase().as_str() {
        "https" | "wss" => Some("443"),
        "http" | "ws" => Some("80"),
        _ => None,
    }
}

fn port_variant(url: &str) -> Option<String> {
    let (scheme, after_scheme) = url.split_once("://")?;
    let authority_len = after_scheme
        .find(['/', '?', '#'])
        .unwrap_or(after_scheme.len());
    let (authority, rest) = after_scheme.split_at_checked(authority_len)?;
    // The host starts after any `user:password@`, whose ':' is not a port separator.
    let host_start = authority.rfind('@').map_or(0, |at| at + 1);
    let host_port = authority.get(host_start..)?;
    let port_colon = match host_port.rfind(':') {
        // In `[::1]` the colons belong to the IPv6 address; a port comes after the `]`.
        Some(i) if !host_port.get(i..)?.contains(']') => Some(i),
        _ => None,
    };
    let scheme_and_host_end = scheme.len() + 3 + host_start;
    match port_colon {
        Some(i) => {
            let port = host_port.get(i + 1..)?;
            if !port.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let head = url.get(..scheme_and_host_end + i)?;
            Some(format!("{head}{rest}"))
        }
        None => {
            let port = default_port(scheme)?;
            let head = url.get(..scheme.len() + 3 + authority.len())?;
            Some(format!("{head}:{port}{rest}"))
        }
    }
}

// === signed WebSocket URLs ===

/// Splits a configured public URL into its WebSocket scheme and the rest (`host[:port][/path]`).
fn ws_scheme_and_rest(public_base_url: &str) -> Result<(&'static str, &str), UrlError> {
    let (scheme, rest) = public_base_url
        .split_once("://")
        .ok_or_else(|| UrlError::UnsupportedScheme(public_base_url.to_owned()))?;
    let ws = match scheme.to_ascii_lowercase().as_str() {
        "https" | "wss" => "wss",
        "http" | "ws" => "ws",
        _ => return Err(UrlError::UnsupportedScheme(public_base_url.to_owned())),
    };
    if rest.contains(['?', '#']) {
        return Err(UrlError::HasQueryOrFragment(public_base_url.to_owned()));
    }
    if rest.is_empty() || rest.starts_with('/') {
        return Err(UrlError::MissingHost(public_base_url.to_owned()));
    }
    Ok((ws, rest))
}

/// The WebSocket URL for `route_path` under the configured public base URL — the value for the
/// TwiML `<Stream url>` / `<ConversationRelay url>`, and therefore the URL Twilio signs.
///
/// `https` becomes `wss` and `http` becomes `ws`; the base's host, port and path are kept
/// exactly, and one `/` joins base and route whether or not the base ends with one:
/// `https://host` and `https://host/` both give `wss://host/twilio/media` for `/twilio/media`.
/// The route itself is kept exactly, trailing slash included: Twilio signs it as written.
pub fn websocket_url(public_base_url: &str, route_path: &str) -> Result<String, UrlError> {
    let (ws, rest) = ws_scheme_and_rest(public_base_url)?;
    let base = rest.strip_suffix('/').unwrap_or(rest);
    let route = route_path.strip_prefix('/').unwrap_or(route_path);
    Ok(format!("{ws}://{base}/{route}"))
}

/// The URL Twilio signed for a WebSocket upgrade the server received.
///
/// The scheme comes from the configured public URL (never from the client). The host is
/// `forwarded_host` when given — the first entry of `X-Forwarded-Host`, else `Host`, as the
/// server saw them — otherwise the public URL's host. `request_target` is the request's path and
/// query exactly as received. Passing `None` for the host is the stricter choice: a client then
/// cannot choose which host's signature is checked.
pub fn upgrade_url(
    public_base_url: &str,
    forwarded_host: Option<&str>,
    request_target: &str,
) -> Result<String, UrlError> {
    let (ws, rest) = ws_scheme_and_rest(public_base_url)?;
    if !request_target.starts_with('/') {
        return Err(UrlError::BadRequestTarget(request_target.to_owned()));
    }
    let configured_host = rest.split_once('/').map_or(rest, |(host, _)| host);
    let host = forwarded_host
        .and_then(|h| h.split(',').next())
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .unwrap_or(configured_host);
    Ok(format!("{ws}://{host}{request_target}"))
}

#[cfg(test)]
mod tests;
