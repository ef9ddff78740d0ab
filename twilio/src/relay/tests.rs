use super::*;

const FIXTURE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/fixtures/twilio/conversationrelay_messages.jsonl"
));

/// Each fixture line with its direction and the `msg` object re-serialised as its own text.
fn fixture_messages() -> Vec<(String, String)> {
    FIXTURE
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["direction"].as_str().unwrap().to_owned(),
                v["msg"].to_string(),
            )
        })
        .collect()
}

#[test]
fn every_fixture_line_parses_and_round_trips() {
    let messages = fixture_messages();
    assert_eq!(messages.len(), 11, "fixture changed: review the tests");
    for (direction, text) in messages {
        match direction.as_str() {
            "from_twilio" => {
                let parsed = parse_relay_inbound(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
                assert_eq!(parse_relay_inbound(&parsed.to_json()).unwrap(), parsed);
                // A simulated Twilio must send what Twilio sends (minus fields we do not model).
                let mut theirs: serde_json::Value = serde_json::from_str(&text).unwrap();
                if let Some(obj) = theirs.as_object_mut() {
                    obj.remove("extraField");
                }
                let ours: serde_json::Value = serde_json::from_str(&parsed.to_json()).unwrap();
                assert_eq!(ours, theirs);
            }
            "to_twilio" => {
                let parsed = parse_relay_outbound(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
                // Our serialisation must be the same JSON object Twilio's examples show.
                let ours: serde_json::Value = serde_json::from_str(&parsed.to_json()).unwrap();
                let theirs: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert_eq!(ours, theirs);
            }
            other => panic!("unknown direction {other}"),
        }
    }
}

#[test]
fn fixture_setup_has_the_expected_fields() {
    let (_, setup) = &fixture_messages()[0];
    let RelayInbound::Setup(s) = parse_relay_inbound(setup).unwrap() else {
        panic!("not setup")
    };
    assert_eq!(s.session_id, "VX3808c8bfc80b383891e28f18d8609ff0");
    assert_eq!(s.call_sid, "CAcd760b1a71b2d557efcf785870e6f09e");
    assert_eq!(s.from.as_deref(), Some("+41791234567"));
    assert_eq!(s.to.as_deref(), Some("+14087153333"));
    assert_eq!(s.parent_call_sid.as_deref(), Some(""));
    assert_eq!(s.call_status.as_deref(), Some("RINGING"));
    assert_eq!(s.call_type.as_deref(), Some("PSTN"));
    assert!(s.custom_parameters.is_empty());
}

#[test]
fn fixture_outbound_values_match() {
    let outs: Vec<_> = fixture_messages()
        .into_iter()
        .filter(|(d, _)| d == "to_twilio")
        .map(|(_, t)| parse_relay_outbound(&t).unwrap())
        .collect();
    assert_eq!(
        outs[0],
        RelayOutbound::Text {
            token: "hello, world!".into(),
            last: false,
            lang: Some("en".into()),
            interruptible: Some(true),
            preemptible: Some(true)
        }
    );
    assert_eq!(
        outs[4],
        RelayOutbound::End {
            handoff_data: Some("some-handoff-data".into())
        }
    );
}

#[test]
fn prompt_last_defaults_to_true() {
    assert_eq!(
        parse_relay_inbound(r#"{"type":"prompt","voicePrompt":"hi"}"#).unwrap(),
        RelayInbound::Prompt {
            voice_prompt: "hi".into(),
            lang: None,
            last: true
        }
    );
    let partial = parse_relay_inbound(r#"{"type":"prompt","voicePrompt":"h","last":false}"#);
    assert!(matches!(
        partial,
        Ok(RelayInbound::Prompt { last: false, .. })
    ));
    let stringly = parse_relay_inbound(r#"{"type":"prompt","voicePrompt":"h","last":"false"}"#);
    assert_eq!(stringly.unwrap_err().reason(), "wrong_type");
}

#[test]
fn interrupt_duration_accepts_number_or_numeric_string() {
    for text in [
        r#"{"type":"interrupt","utteranceUntilInterrupt":"Hello","durationUntilInterruptMs":1234}"#,
        r#"{"type":"interrupt","utteranceUntilInterrupt":"Hello","durationUntilInterruptMs":"1234"}"#,
    ] {
        assert_eq!(
            parse_relay_inbound(text).unwrap(),
            RelayInbound::Interrupt {
                utterance_until_interrupt: "Hello".into(),
                duration_until_interrupt_ms: Some(1234)
            }
        );
    }
    let bad =
        r#"{"type":"interrupt","utteranceUntilInterrupt":"x","durationUntilInterruptMs":"12ms"}"#;
    assert_eq!(
        parse_relay_inbound(bad).unwrap_err().reason(),
        "bad_counter"
    );
    let neg = r#"{"type":"interrupt","utteranceUntilInterrupt":"x","durationUntilInterruptMs":-1}"#;
    assert_eq!(parse_relay_inbound(neg).unwrap_err().reason(), "wrong_type");
    let absent = r#"{"type":"interrupt","utteranceUntilInterrupt":"x"}"#;
    assert!(matches!(
        parse_relay_inbound(absent),
        Ok(RelayInbound::Interrupt {
            duration_until_interrupt_ms: None,
            ..
        })
    ));
}

#[test]
fn rejections_carry_stable_reasons() {
    let reason = |t: &str| parse_relay_inbound(t).unwrap_err().reason();
    assert_eq!(reason("{"), "not_json");
    assert_eq!(reason(r#"["setup"]"#), "not_json");
    assert_eq!(reason(r#"{"type":"media"}"#), "unknown_event");
    assert_eq!(reason(r#"{"voicePrompt":"x"}"#), "missing_field");
    assert_eq!(
        reason(r#"{"type":"setup","sessionId":"VX1"}"#),
        "missing_field"
    );
    assert_eq!(
        reason(r#"{"type":"setup","sessionId":"VX1","callSid":5}"#),
        "wrong_type"
    );
    assert_eq!(
        reason(r#"{"type":"setup","sessionId":"VX1","callSid":"CA1","customParameters":{"a":1}}"#),
        "wrong_type"
    );
    assert_eq!(reason(&" ".repeat(MAX_RELAY_FRAME_BYTES + 1)), "oversized");
    assert_eq!(
        parse_relay_inbound(r#"{"type":"dtmf"}"#)
            .unwrap_err()
            .to_string(),
        r#"field "digit" missing"#
    );
}

#[test]
fn outbound_serialises_to_twilio_field_names() {
    let json = RelayOutbound::Play {
        source: "https://x/a.mp3".into(),
        loop_count: Some(2),
        interruptible: None,
        preemptible: Some(false),
    }
    .to_json();
    assert_eq!(
        json,
        r#"{"type":"play","source":"https://x/a.mp3","loop":2,"preemptible":false}"#
    );
    let json = RelayOutbound::Language {
        tts_language: Some("fr-FR".into()),
        transcription_language: None,
    }
    .to_json();
    assert_eq!(json, r#"{"type":"language","ttsLanguage":"fr-FR"}"#);
    assert_eq!(
        RelayOutbound::End { handoff_data: None }.to_json(),
        r#"{"type":"end"}"#
    );
    assert_eq!(
        RelayOutbound::SendDigits {
            digits: "12#".into()
        }
        .to_json(),
        r#"{"type":"sendDigits","digits":"12#"}"#
    );
}

#[test]
fn outbound_round_trips() {
    let all = [
        RelayOutbound::Text {
            token: "Hi \"there\"\n".into(),
            last: true,
            lang: None,
            interruptible: Some(false),
            preemptible: None,
        },
        RelayOutbound::Play {
            source: "https://x/a.mp3".into(),
            loop_count: None,
            interruptible: Some(true),
            preemptible: Some(true),
        },
        RelayOutbound::SendDigits {
            digits: "w1".into(),
        },
        RelayOutbound::Language {
            tts_language: None,
            transcription_language: Some("de-DE".into()),
        },
        RelayOutbound::End {
            handoff_data: Some(r#"{"reason":"transfer"}"#.into()),
        },
    ];
    for m in all {
        assert_eq!(parse_relay_outbound(&m.to_json()).unwrap(), m);
    }
}

#[test]
fn null_means_absent() {
    let text = r#"{"type":"setup","sessionId":"VX1","callSid":"CA1","parentCallSid":null,"customParameters":null}"#;
    let RelayInbound::Setup(s) = parse_relay_inbound(text).unwrap() else {
        panic!("not setup")
    };
    assert_eq!(s.parent_call_sid, None);
    assert!(s.custom_parameters.is_empty());
    let required_null = r#"{"type":"setup","sessionId":null,"callSid":"CA1"}"#;
    assert_eq!(
        parse_relay_inbound(required_null).unwrap_err(),
        FrameError::MissingField("sessionId")
    );
}
