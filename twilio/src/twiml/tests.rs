use super::*;

use quick_xml::Reader;
use quick_xml::events::Event;

/// Every element of an XML document as (name, [(attribute, unescaped value)]), in order.
/// Fails the test if the document is not well-formed.
fn elements(xml: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut reader = Reader::from_str(xml);
    let mut out = Vec::new();
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) | Event::Empty(e) => {
                let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
                let attrs = e
                    .attributes()
                    .map(|a| {
                        let a = a.expect("valid attribute");
                        (
                            String::from_utf8(a.key.as_ref().to_vec()).unwrap(),
                            a.unescape_value().expect("valid escape").into_owned(),
                        )
                    })
                    .collect();
                out.push((name, attrs));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    out
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn voice_webhook_reads_fields_and_ignores_unknown() {
    let body = b"AccountSid=AC1&ApiVersion=2010-04-01&CallSid=CA1&CallStatus=ringing&Called=%2B15557654321\
&Caller=%2B15551234567&Direction=inbound&From=%2B15551234567&FromCity=SF&To=%2B15557654321\
&CallerName=&ForwardedFrom=%2B15550000000";
    let w = VoiceWebhook::from_pairs(&parse_form(body)).unwrap();
    assert_eq!(
        w,
        VoiceWebhook {
            call_sid: "CA1".into(),
            account_sid: "AC1".into(),
            from: "+15551234567".into(),
            to: "+15557654321".into(),
            call_status: "ringing".into(),
            direction: "inbound".into(),
            api_version: Some("2010-04-01".into()),
            forwarded_from: Some("+15550000000".into()),
            caller_name: None,
            parent_call_sid: None,
        }
    );
}

#[test]
fn voice_webhook_names_the_missing_field() {
    let form = pairs(&[
        ("CallSid", "CA1"),
        ("AccountSid", "AC1"),
        ("From", "anonymous"),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
    ]);
    let err = VoiceWebhook::from_pairs(&form).unwrap_err();
    assert_eq!(err, FormError::MissingField("To"));
    assert_eq!(err.reason(), "missing_field");
    assert_eq!(err.to_string(), "form field \"To\" missing");
    let empty_sid = pairs(&[("CallSid", ""), ("AccountSid", "AC1")]);
    assert_eq!(
        VoiceWebhook::from_pairs(&empty_sid).unwrap_err(),
        FormError::MissingField("CallSid")
    );
}

#[test]
fn stream_status_parses_each_event() {
    for (event, expected) in [
        ("stream-started", StreamEvent::Started),
        ("stream-stopped", StreamEvent::Stopped),
        ("stream-error", StreamEvent::Error),
        ("stream-paused", StreamEvent::Other("stream-paused".into())),
    ] {
        let form = pairs(&[
            ("AccountSid", "AC1"),
            ("CallSid", "CA1"),
            ("StreamSid", "MZ1"),
            ("StreamEvent", event),
            ("StreamError", "Stream connection failed"),
            ("Timestamp", "2025-01-01T00:00:00Z"),
        ]);
        let s = StreamStatus::from_pairs(&form).unwrap();
        assert_eq!(s.stream_event, expected);
        assert_eq!(s.stream_sid, "MZ1");
        assert_eq!(s.stream_error.as_deref(), Some("Stream connection failed"));
    }
    let missing = pairs(&[("CallSid", "CA1"), ("StreamEvent", "stream-started")]);
    assert_eq!(
        StreamStatus::from_pairs(&missing).unwrap_err(),
        FormError::MissingField("StreamSid")
    );
}

#[test]
fn parse_form_keeps_repeats_and_decodes_plus() {
    assert_eq!(
        parse_form(b"a=1&a=2&b=x+y%21&c"),
        pairs(&[("a", "1"), ("a", "2"), ("b", "x y!"), ("c", "")])
    );
}

#[test]
fn connect_stream_is_exact() {
    let xml = connect_stream(
        "wss://example.com/twilio/media",
        Some("https://example.com/twilio/stream-status"),
        &[("CallSid", "CA1"), ("From", "+15551234567")],
    );
    assert_eq!(
        xml,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Connect>\
<Stream url=\"wss://example.com/twilio/media\" statusCallback=\"https://example.com/twilio/stream-status\">\
<Parameter name=\"CallSid\" value=\"CA1\"/><Parameter name=\"From\" value=\"+15551234567\"/>\
</Stream></Connect></Response>"
    );
    let no_callback = connect_stream("wss://h/twilio/media", None, &[]);
    assert!(!no_callback.contains("statusCallback"));
    assert_eq!(
        elements(&no_callback)[2],
        (
            "Stream".to_string(),
            vec![("url".to_string(), "wss://h/twilio/media".to_string())]
        )
    );
}

#[test]
fn hostile_values_are_escaped_and_parse_back() {
    let hostile = "+1 <script>&\"'";
    let weird = "tab\there\nnul\u{0}end";
    let xml = connect_stream(
        "wss://h/twilio/media",
        None,
        &[("From", hostile), ("CallerName", weird)],
    );
    assert!(
        xml.contains("value=\"+1 &lt;script&gt;&amp;&quot;&apos;\""),
        "{xml}"
    );
    let els = elements(&xml);
    let params: Vec<_> = els.iter().filter(|(n, _)| n == "Parameter").collect();
    assert_eq!(params[0].1[1], ("value".to_string(), hostile.to_string()));
    // Tab and newline survive as character references; NUL cannot exist in XML and is dropped.
    assert_eq!(params[1].1[1].1, "tab\there\nnulend");
}

#[test]
fn conversation_relay_twiml() {
    let xml = connect_conversation_relay(
        "wss://h/twilio/relay",
        Some("Hi! Ask me anything & I'll \"try\"."),
        Some("en-US"),
        None,
        &[("From", "+1 <script>&\"'")],
    );
    assert!(xml.starts_with(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Connect><ConversationRelay url=\"wss://h/twilio/relay\" welcomeGreeting=\""
    ));
    assert!(!xml.contains("voice="));
    let els = elements(&xml);
    let names: Vec<_> = els.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["Response", "Connect", "ConversationRelay", "Parameter"]
    );
    assert_eq!(
        els[2].1,
        vec![
            ("url".to_string(), "wss://h/twilio/relay".to_string()),
            (
                "welcomeGreeting".to_string(),
                "Hi! Ask me anything & I'll \"try\".".to_string()
            ),
            ("language".to_string(), "en-US".to_string()),
        ]
    );
    assert_eq!(els[3].1[1].1, "+1 <script>&\"'");
}
