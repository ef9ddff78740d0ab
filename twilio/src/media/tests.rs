use super::*;

const SID: &str = "MZ18ad3ab5a668481ce02b83e7395059f0";

fn payload_b64(len: usize) -> String {
    BASE64.encode(vec![0xffu8; len])
}

fn media_json(payload: &str) -> String {
    format!(
        r#"{{"event":"media","sequenceNumber":"4","streamSid":"{SID}","media":{{"track":"inbound","chunk":"2","timestamp":"5","payload":"{payload}"}}}}"#
    )
}

fn reason(text: &str) -> &'static str {
    match parse_inbound(text) {
        Ok(frame) => panic!("accepted {frame:?}"),
        Err(e) => e.reason(),
    }
}

#[test]
fn parses_connected() {
    let f = parse_inbound(r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#).unwrap();
    assert_eq!(
        f,
        InboundFrame::Connected {
            protocol: "Call".into(),
            version: "1.0.0".into()
        }
    );
}

#[test]
fn parses_a_real_start_frame_with_unknown_fields() {
    let text = r#"{"event":"start","sequenceNumber":"1","start":{"accountSid":"AC123","streamSid":"MZ1","callSid":"CA9","tracks":["inbound","outbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},"customParameters":{"From":"+15551234567","CallSid":"CA9"},"futureField":{"x":[1,2]}},"streamSid":"MZ1","extra":true}"#;
    let InboundFrame::Start(s) = parse_inbound(text).unwrap() else {
        panic!("not a start")
    };
    assert_eq!(s.sequence_number, 1);
    assert_eq!(s.stream_sid, "MZ1");
    assert_eq!(s.account_sid, "AC123");
    assert_eq!(s.call_sid, "CA9");
    assert_eq!(s.tracks, ["inbound", "outbound"]);
    assert_eq!(
        s.custom_parameters.get("From").map(String::as_str),
        Some("+15551234567")
    );
    assert_eq!(
        s.media_format,
        MediaFormat {
            encoding: "audio/x-mulaw".into(),
            sample_rate: 8000,
            channels: 1
        }
    );
}

#[test]
fn start_falls_back_to_the_inner_stream_sid() {
    let text = r#"{"event":"start","sequenceNumber":"1","start":{"accountSid":"AC1","streamSid":"MZ-inner","callSid":"CA1","mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#;
    let InboundFrame::Start(s) = parse_inbound(text).unwrap() else {
        panic!("not a start")
    };
    assert_eq!(s.stream_sid, "MZ-inner");
    assert!(s.tracks.is_empty() && s.custom_parameters.is_empty());
}

#[test]
fn parses_media_and_decodes_payload() {
    let bytes: Vec<u8> = (0..=255u8).cycle().take(320).collect();
    let InboundFrame::Media(m) = parse_inbound(&media_json(&BASE64.encode(&bytes))).unwrap() else {
        panic!("not media")
    };
    assert_eq!((m.sequence_number, m.chunk, m.timestamp_ms), (4, 2, 5));
    assert_eq!(m.track, "inbound");
    assert_eq!(m.stream_sid, SID);
    assert_eq!(m.payload, bytes);
}

#[test]
fn media_payload_with_escaped_slashes_still_decodes() {
    // JSON encoders may write `/` as `\/`; base64 uses `/`.
    let bytes = vec![0xffu8; 160];
    let b64 = BASE64.encode(&bytes).replace('/', "\\/");
    assert!(parse_inbound(&media_json(&b64)).is_ok());
}

#[test]
fn parses_dtmf_mark_stop() {
    assert_eq!(
        parse_inbound(r#"{"event":"dtmf","streamSid":"MZ1","sequenceNumber":"5","dtmf":{"track":"inbound_track","digit":"1"}}"#)
            .unwrap(),
        InboundFrame::Dtmf { sequence_number: 5, stream_sid: "MZ1".into(), track: "inbound_track".into(), digit: "1".into() }
    );
    assert_eq!(
        parse_inbound(r#"{"event":"mark","sequenceNumber":"7","streamSid":"MZ1","mark":{"name":"greeting-end"}}"#).unwrap(),
        InboundFrame::Mark { sequence_number: 7, stream_sid: "MZ1".into(), name: "greeting-end".into() }
    );
    assert_eq!(
        parse_inbound(r#"{"event":"stop","sequenceNumber":"9","streamSid":"MZ1","stop":{"accountSid":"AC1","callSid":"CA1"}}"#)
            .unwrap(),
        InboundFrame::Stop { sequence_number: 9, stream_sid: "MZ1".into(), account_sid: "AC1".into(), call_sid: "CA1".into() }
    );
}

#[test]
fn rejections_carry_stable_reasons() {
    assert_eq!(reason("not json"), "not_json");
    assert_eq!(reason("[1,2]"), "not_json");
    assert_eq!(reason(r#"{"event":"media""#), "not_json");
    assert_eq!(reason(r#"{"event":"hello"}"#), "unknown_event");
    assert_eq!(reason(r#"{"protocol":"Call"}"#), "missing_field");
    assert_eq!(reason(r#"{"event":7}"#), "wrong_type");
    assert_eq!(reason(&media_json("!!!!")), "bad_base64");
    assert_eq!(reason(&media_json(&payload_b64(159))), "unaligned_payload");
    assert_eq!(reason(&media_json("")), "unaligned_payload");
    // Counters are strings: a number is not coerced.
    assert_eq!(
        reason(&media_json(&payload_b64(160)).replace(r#""chunk":"2""#, r#""chunk":2"#)),
        "wrong_type"
    );
    assert_eq!(
        reason(&media_json(&payload_b64(160)).replace(r#""chunk":"2""#, r#""chunk":"2x""#)),
        "bad_counter"
    );
    assert_eq!(
        reason(&media_json(&payload_b64(160)).replace(r#""chunk":"2""#, r#""chunk":"-2""#)),
        "bad_counter"
    );
    // ...and numbers are numbers: a string sample rate is not coerced either.
    let start = r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ1","start":{"accountSid":"AC1","callSid":"CA1","mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":"8000","channels":1}}}"#;
    assert_eq!(reason(start), "wrong_type");
    let oversized = format!(
        r#"{{"event":"connected","protocol":"{}"}}"#,
        "x".repeat(MAX_INBOUND_FRAME_BYTES)
    );
    assert_eq!(reason(&oversized), "oversized");
}

#[test]
fn errors_name_the_field() {
    let text = r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ1","start":{"accountSid":"AC1","mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#;
    assert_eq!(
        parse_inbound(text).unwrap_err().to_string(),
        r#"field "start.callSid" missing"#
    );
    assert_eq!(
        parse_inbound(&media_json("%%%%")).unwrap_err().to_string(),
        "media.payload is not valid base64"
    );
    let no_payload = media_json("").replace(r#","payload":"""#, "");
    assert_eq!(
        parse_inbound(&no_payload).unwrap_err(),
        FrameError::MissingField("media.payload")
    );
}

#[test]
fn unknown_event_in_error_is_truncated() {
    let e = parse_inbound(&format!(r#"{{"event":"{}"}}"#, "e".repeat(10_000))).unwrap_err();
    assert_eq!(e.reason(), "unknown_event");
    assert!(e.to_string().len() < 100, "{e}");
}

#[test]
fn every_reason_is_listed() {
    for r in [
        "oversized",
        "not_json",
        "unknown_event",
        "missing_field",
        "wrong_type",
        "bad_base64",
        "unaligned_payload",
        "bad_counter",
    ] {
        assert!(FrameError::REASONS.contains(&r));
    }
}

#[test]
fn writers_produce_what_twilio_expects() {
    let mut buf = String::new();
    write_media(&mut buf, SID, &[0xff, 0x7f, 0x00]);
    assert_eq!(
        buf,
        format!(r#"{{"event":"media","streamSid":"{SID}","media":{{"payload":"/38A"}}}}"#)
    );
    buf.clear();
    write_mark(&mut buf, "MZ\"1", "turn-3\\x");
    assert_eq!(
        buf,
        r#"{"event":"mark","streamSid":"MZ\"1","mark":{"name":"turn-3\\x"}}"#
    );
    buf.clear();
    write_clear(&mut buf, SID);
    assert_eq!(buf, format!(r#"{{"event":"clear","streamSid":"{SID}"}}"#));
    let v: serde_json::Value = serde_json::from_str(&buf).unwrap();
    assert_eq!(v["event"], "clear");
}

#[test]
fn writers_append_to_the_buffer() {
    let mut buf = String::from("x");
    write_clear(&mut buf, "MZ");
    assert!(buf.starts_with("x{"));
}

#[test]
fn outbound_round_trips() {
    let frames = [
        OutboundFrame::Media {
            stream_sid: SID.into(),
            payload: (0..8000u32).map(|i| (i % 251) as u8).collect(),
        },
        OutboundFrame::Media {
            stream_sid: SID.into(),
            payload: vec![],
        },
        OutboundFrame::Mark {
            stream_sid: SID.into(),
            name: "a \"quoted\" mark\n".into(),
        },
        OutboundFrame::Clear {
            stream_sid: SID.into(),
        },
    ];
    for f in frames {
        assert_eq!(parse_outbound(&f.to_json()).unwrap(), f);
    }
    assert_eq!(
        parse_outbound(r#"{"event":"connected"}"#)
            .unwrap_err()
            .reason(),
        "unknown_event"
    );
    assert_eq!(
        parse_outbound(r#"{"event":"clear"}"#).unwrap_err().reason(),
        "missing_field"
    );
}

#[test]
fn inbound_round_trips_through_to_json() {
    let frames = [
        InboundFrame::Connected {
            protocol: "Call".into(),
            version: "1.0.0".into(),
        },
        InboundFrame::Start(Start {
            sequence_number: 1,
            stream_sid: SID.into(),
            account_sid: "AC1".into(),
            call_sid: "CA1".into(),
            tracks: vec!["inbound".into()],
            custom_parameters: [
                ("From".to_string(), "+1 <script>&\"'".to_string()),
                ("To".into(), "+1555".into()),
            ]
            .into_iter()
            .collect(),
            media_format: MediaFormat {
                encoding: "audio/x-mulaw".into(),
                sample_rate: 8000,
                channels: 1,
            },
        }),
        InboundFrame::Media(Media {
            sequence_number: u64::MAX,
            stream_sid: SID.into(),
            track: "inbound".into(),
            chunk: 2,
            timestamp_ms: 40,
            payload: (0..160u8).collect(),
        }),
        InboundFrame::Dtmf {
            sequence_number: 3,
            stream_sid: SID.into(),
            track: "inbound_track".into(),
            digit: "#".into(),
        },
        InboundFrame::Mark {
            sequence_number: 4,
            stream_sid: SID.into(),
            name: "m".into(),
        },
        InboundFrame::Stop {
            sequence_number: 5,
            stream_sid: SID.into(),
            account_sid: "AC1".into(),
            call_sid: "CA1".into(),
        },
    ];
    for f in frames {
        let json = f.to_json();
        assert_eq!(parse_inbound(&json).unwrap(), f, "{json}");
    }
}

#[test]
fn to_json_uses_twilio_types() {
    let f = InboundFrame::Media(Media {
        sequence_number: 4,
        stream_sid: SID.into(),
        track: "inbound".into(),
        chunk: 2,
        timestamp_ms: 5,
        payload: vec![0xff; 160],
    });
    let v: serde_json::Value = serde_json::from_str(&f.to_json()).unwrap();
    assert_eq!(v["sequenceNumber"], "4");
    assert_eq!(v["media"]["chunk"], "2");
    assert_eq!(v["media"]["timestamp"], "5");
    assert!(v["media"]["payload"].is_string());
}

#[test]
fn size_limit_is_inclusive() {
    let frame = r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#;
    let at_limit = format!(
        "{frame}{}",
        " ".repeat(MAX_INBOUND_FRAME_BYTES - frame.len())
    );
    assert_eq!(at_limit.len(), MAX_INBOUND_FRAME_BYTES);
    assert!(parse_inbound(&at_limit).is_ok());
    let over = format!("{at_limit} ");
    assert_eq!(
        parse_inbound(&over),
        Err(FrameError::Oversized {
            len: MAX_INBOUND_FRAME_BYTES + 1,
            max: MAX_INBOUND_FRAME_BYTES
        })
    );
}

#[test]
fn null_means_absent() {
    assert_eq!(
        parse_inbound(r#"{"event":null}"#),
        Err(FrameError::MissingField("event"))
    );
    let text = r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ1","start":{"accountSid":"AC1","callSid":"CA1","tracks":null,"customParameters":null,"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#;
    let InboundFrame::Start(s) = parse_inbound(text).unwrap() else {
        panic!("not a start")
    };
    assert!(s.tracks.is_empty() && s.custom_parameters.is_empty());
    let no_media = r#"{"event":"media","sequenceNumber":"1","streamSid":"MZ1","media":null}"#;
    assert_eq!(
        parse_inbound(no_media),
        Err(FrameError::MissingField("media"))
    );
}
