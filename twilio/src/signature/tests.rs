use super::*;

const VECTORS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/fixtures/twilio/signature_vectors.json"
));

struct Vector {
    token: String,
    url: String,
    params: Vec<(String, String)>,
    expected: String,
    body: Option<String>,
}

fn vectors() -> Vec<Vector> {
    let doc: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
    doc["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| Vector {
            token: v["auth_token"].as_str().unwrap().into(),
            url: v["url_signed"].as_str().unwrap().into(),
            params: v["params"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect(),
            expected: v["expected"].as_str().unwrap().into(),
            body: v.get("body").and_then(|b| b.as_str()).map(str::to_owned),
        })
        .collect()
}

fn canonical() -> Vector {
    vectors().remove(0)
}

#[test]
fn every_vector_computes_and_validates() {
    let all = vectors();
    assert_eq!(all.len(), 6, "fixture changed: review the tests");
    for v in all {
        assert_eq!(
            compute(&v.token, &v.url, &v.params),
            v.expected,
            "{}",
            v.url
        );
        assert!(
            validate(&v.token, &v.url, &v.params, &v.expected),
            "{}",
            v.url
        );
        if let Some(body) = &v.body {
            assert!(validate_json_body(
                &v.token,
                &v.url,
                body.as_bytes(),
                &v.expected
            ));
        }
    }
}

#[test]
fn body_hashes_match_the_fixture() {
    let doc: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
    for v in doc["vectors"].as_array().unwrap() {
        if let (Some(body), Some(hex)) = (v["body"].as_str(), v["body_sha256_hex"].as_str()) {
            assert_eq!(body_sha256_hex(body.as_bytes()), hex);
        }
    }
}

#[test]
fn port_quirk_both_directions() {
    let v = canonical();
    // Signed without a port; the server reconstructs the URL with :443.
    let with_port = v.url.replace("mycompany.com/", "mycompany.com:443/");
    assert!(validate(&v.token, &with_port, &v.params, &v.expected));
    // Signed with :443 (vector 2); the server reconstructs the URL without it.
    let signed_with_port = &vectors()[1];
    let without = signed_with_port.url.replace(":443", "");
    assert!(validate(
        &signed_with_port.token,
        &without,
        &signed_with_port.params,
        &signed_with_port.expected
    ));
    // Signed with :80 over http (vector 3); the request came in with no port.
    let http = &vectors()[2];
    let without = http.url.replace(":80", "");
    assert!(validate(
        &http.token,
        &without,
        &http.params,
        &http.expected
    ));
    // Like the official validators, any port on the received URL is also tried removed...
    let other_port = v.url.replace("mycompany.com/", "mycompany.com:8443/");
    assert!(validate(&v.token, &other_port, &v.params, &v.expected));
    // ...but a signature over a non-default port never matches a URL without it.
    let signed_8443 = compute(&v.token, &other_port, &v.params);
    assert!(!validate(&v.token, &v.url, &v.params, &signed_8443));
    assert!(!validate(&v.token, &with_port, &v.params, &signed_8443));
}

#[test]
fn json_body_with_port_added_only() {
    let v = &vectors()[5];
    let without = v.url.replace(":443", "");
    assert!(validate_json_body(&v.token, &without, b"{}", &v.expected));
}

#[test]
fn tampering_is_rejected() {
    let v = canonical();
    assert!(!validate("54321", &v.url, &v.params, &v.expected));
    assert!(!validate(
        &v.token,
        &v.url.replace("foo=1", "foo=2"),
        &v.params,
        &v.expected
    ));
    assert!(!validate(
        &v.token,
        &v.url.replace("https", "http"),
        &v.params,
        &v.expected
    ));
    let mut params = v.params.clone();
    params[0].1.push('0');
    assert!(!validate(&v.token, &v.url, &params, &v.expected));
    let mut params = v.params.clone();
    params.push(("Extra".into(), "1".into()));
    assert!(!validate(&v.token, &v.url, &params, &v.expected));
    let mut sig = v.expected.clone().into_bytes();
    sig[3] = if sig[3] == b'A' { b'B' } else { b'A' };
    assert!(!validate(
        &v.token,
        &v.url,
        &v.params,
        std::str::from_utf8(&sig).unwrap()
    ));
    assert!(!validate(&v.token, &v.url, &v.params, ""));
    assert!(!validate(&v.token, &v.url, &v.params, "not base64!"));
    assert!(!validate(&v.token, &v.url, &v.params, &v.expected[..20]));
}

#[test]
fn json_body_tampering_is_rejected() {
    let v = &vectors()[3];
    let body = v.body.as_deref().unwrap();
    assert!(!validate_json_body(
        &v.token,
        &v.url,
        b"{\"property\": \"other\"}",
        &v.expected
    ));
    assert!(!validate_json_body(
        &v.token,
        &v.url,
        body.as_bytes(),
        &canonical().expected
    ));
    // The body matches the hash, but the hash in the URL was not what Twilio signed.
    let other = "{}";
    let forged_url = v.url.replace(
        &body_sha256_hex(body.as_bytes()),
        &body_sha256_hex(other.as_bytes()),
    );
    assert!(!validate_json_body(
        &v.token,
        &forged_url,
        other.as_bytes(),
        &v.expected
    ));
    // No bodySHA256 in the URL at all.
    let url = "https://mycompany.com/myapp.php";
    let none: &[(&str, &str)] = &[];
    let sig = compute(&v.token, url, none);
    assert!(!validate_json_body(&v.token, url, b"", &sig));
}

#[test]
fn params_order_does_not_matter_and_names_sort_bytewise() {
    let v = canonical();
    let mut reversed = v.params.clone();
    reversed.reverse();
    assert_eq!(compute(&v.token, &v.url, &reversed), v.expected);
    // Byte-wise: "Z" (0x5A) sorts before "a" (0x61).
    let mixed = [("a", "1"), ("Z", "2")];
    let signed = compute("t", "https://x/", &mixed);
    let by_hand = BASE64.encode({
        let mut m = HmacSha1::new_from_slice(b"t").unwrap();
        m.update(b"https://x/Z2a1");
        m.finalize().into_bytes()
    });
    assert_eq!(signed, by_hand);
}

#[test]
fn repeated_keys_are_deduplicated_and_sorted() {
    let url = "https://x/hook";
    let repeated = [("B", "2"), ("A", "z"), ("A", "y"), ("A", "z")];
    let expected = BASE64.encode({
        let mut m = HmacSha1::new_from_slice(b"tok").unwrap();
        m.update(b"https://x/hookAyAzB2");
        m.finalize().into_bytes()
    });
    assert_eq!(compute("tok", url, &repeated), expected);
    assert!(validate("tok", url, &repeated, &expected));
    // Dropping the duplicate changes nothing; dropping a distinct value does.
    assert!(validate(
        "tok",
        url,
        &[("A", "y"), ("A", "z"), ("B", "2")],
        &expected
    ));
    assert!(!validate("tok", url, &[("A", "z"), ("B", "2")], &expected));
}

#[test]
fn port_variants() {
    assert_eq!(
        port_variant("https://h.com/p?q=1").as_deref(),
        Some("https://h.com:443/p?q=1")
    );
    assert_eq!(
        port_variant("wss://h.com/p").as_deref(),
        Some("wss://h.com:443/p")
    );
    assert_eq!(port_variant("ws://h.com").as_deref(), Some("ws://h.com:80"));
    assert_eq!(
        port_variant("https://h.com:8443/p").as_deref(),
        Some("https://h.com/p")
    );
    assert_eq!(
        port_variant("https://u:pw@h.com/p").as_deref(),
        Some("https://u:pw@h.com:443/p")
    );
    assert_eq!(
        port_variant("https://u:pw@h.com:1/p").as_deref(),
        Some("https://u:pw@h.com/p")
    );
    assert_eq!(
        port_variant("https://[::1]/p").as_deref(),
        Some("https://[::1]:443/p")
    );
    assert_eq!(
        port_variant("https://[::1]:9/p").as_deref(),
        Some("https://[::1]/p")
    );
    assert_eq!(port_variant("ftp://h.com/p"), None);
    assert_eq!(port_variant("no scheme"), None);
    assert_eq!(port_variant("https://h.com:x/p"), None);
}

#[test]
fn websocket_url_from_public_base() {
    for base in ["https://voice.example.com", "https://voice.example.com/"] {
        assert_eq!(
            websocket_url(base, "/twilio/media").unwrap(),
            "wss://voice.example.com/twilio/media"
        );
    }
    assert_eq!(
        websocket_url("http://localhost:8080", "/twilio/relay").unwrap(),
        "ws://localhost:8080/twilio/relay"
    );
    assert_eq!(
        websocket_url("https://h.com/prefix/", "/twilio/media").unwrap(),
        "wss://h.com/prefix/twilio/media"
    );
    // A trailing slash on the route is kept: Twilio signs it.
    assert_eq!(
        websocket_url("https://h.com", "/twilio/media/").unwrap(),
        "wss://h.com/twilio/media/"
    );
    assert!(matches!(
        websocket_url("ftp://h.com", "/x"),
        Err(UrlError::UnsupportedScheme(_))
    ));
    assert!(matches!(
        websocket_url("h.com", "/x"),
        Err(UrlError::UnsupportedScheme(_))
    ));
    assert!(matches!(
        websocket_url("https://", "/x"),
        Err(UrlError::MissingHost(_))
    ));
    assert!(matches!(
        websocket_url("https://h.com/?a=1", "/x"),
        Err(UrlError::HasQueryOrFragment(_))
    ));
}

#[test]
fn websocket_upgrade_signature_trailing_slash_matters() {
    let token = "12345";
    let none: &[(&str, &str)] = &[];
    let signed_url = websocket_url("https://voice.example.com/", "/twilio/media").unwrap();
    let sig = compute(token, &signed_url, none);

    let received = upgrade_url("https://voice.example.com", None, "/twilio/media").unwrap();
    assert_eq!(received, "wss://voice.example.com/twilio/media");
    assert!(validate(token, &received, none, &sig));
    // Port quirk applies to wss too.
    assert!(validate(
        token,
        "wss://voice.example.com:443/twilio/media",
        none,
        &sig
    ));

    let with_slash = upgrade_url("https://voice.example.com", None, "/twilio/media/").unwrap();
    assert!(!validate(token, &with_slash, none, &sig));
    let slash_sig = compute(token, "wss://voice.example.com/twilio/media/", none);
    assert!(validate(token, &with_slash, none, &slash_sig));
}

#[test]
fn upgrade_url_takes_host_from_proxy_and_scheme_from_config() {
    assert_eq!(
        upgrade_url(
            "https://public.example",
            Some("edge.example, inner"),
            "/twilio/media"
        )
        .unwrap(),
        "wss://edge.example/twilio/media"
    );
    assert_eq!(
        upgrade_url(
            "https://public.example/base",
            Some(" "),
            "/twilio/relay?x=1"
        )
        .unwrap(),
        "wss://public.example/twilio/relay?x=1"
    );
    assert_eq!(
        upgrade_url("http://127.0.0.1:3000", None, "/twilio/media").unwrap(),
        "ws://127.0.0.1:3000/twilio/media"
    );
    assert!(matches!(
        upgrade_url("https://h", None, "twilio/media"),
        Err(UrlError::BadRequestTarget(_))
    ));
}
