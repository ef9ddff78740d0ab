//! Property tests for the WebSocket parsers: arbitrary text and arbitrary JSON shaped like real
//! frames never panic a parser, and every valid frame survives serialise → parse unchanged.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{Map, Value};
use switchboard_twilio::media::{
    self, InboundFrame, Media, MediaFormat, OutboundFrame, Start, parse_inbound, parse_outbound,
};
use switchboard_twilio::relay::{
    RelayInbound, RelayOutbound, Setup, parse_relay_inbound, parse_relay_outbound,
};

/// Field names the parsers look at, so generated objects hit real code paths.
const KEYS: &[&str] = &[
    "event",
    "sequenceNumber",
    "streamSid",
    "protocol",
    "version",
    "start",
    "media",
    "dtmf",
    "mark",
    "stop",
    "accountSid",
    "callSid",
    "tracks",
    "customParameters",
    "mediaFormat",
    "encoding",
    "sampleRate",
    "channels",
    "track",
    "chunk",
    "timestamp",
    "payload",
    "digit",
    "name",
    "type",
    "sessionId",
    "voicePrompt",
    "lang",
    "last",
    "utteranceUntilInterrupt",
    "durationUntilInterruptMs",
    "description",
    "token",
    "source",
    "loop",
    "digits",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(KEYS).prop_map(str::to_owned),
        1 => "[a-zA-Z]{0,6}",
    ]
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[0-9]{0,25}".prop_map(Value::String),
        any::<String>().prop_map(Value::String),
        proptest::collection::vec(any::<u8>(), 0..400)
            .prop_map(|b| Value::String(base64_encode(&b))),
    ];
    leaf.prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(key(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn base64_encode(bytes: &[u8]) -> String {
    // Through the crate's own writer, so the property does not need the base64 crate.
    let mut buf = String::new();
    media::write_media(&mut buf, "", bytes);
    let v: Value = serde_json::from_str(&buf).unwrap_or_default();
    v["media"]["payload"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A JSON object with a real `event`/`type` and arbitrary known-or-unknown fields.
fn frame_like() -> impl Strategy<Value = String> {
    let events = proptest::sample::select(
        &[
            "connected",
            "start",
            "media",
            "dtmf",
            "mark",
            "stop",
            "clear",
            "setup",
            "prompt",
            "interrupt",
            "error",
            "text",
            "play",
            "sendDigits",
            "language",
            "end",
        ][..],
    );
    (
        events,
        any::<bool>(),
        proptest::collection::btree_map(key(), any_json(), 0..10),
    )
        .prop_map(|(event, relay, fields)| {
            let mut obj: Map<String, Value> = fields.into_iter().collect();
            obj.insert(
                if relay { "type" } else { "event" }.to_owned(),
                Value::from(event),
            );
            Value::Object(obj).to_string()
        })
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let _ = parse_inbound(&text);
        let _ = parse_outbound(&text);
        let _ = parse_relay_inbound(&text);
        let _ = parse_relay_outbound(&text);
    }

    #[test]
    fn frame_shaped_json_never_panics_and_accepted_frames_round_trip(text in frame_like()) {
        if let Ok(f) = parse_inbound(&text) {
            prop_assert_eq!(parse_inbound(&f.to_json()), Ok(f));
        }
        if let Ok(f) = parse_outbound(&text) {
            prop_assert_eq!(parse_outbound(&f.to_json()), Ok(f));
        }
        if let Ok(m) = parse_relay_inbound(&text) {
            prop_assert_eq!(parse_relay_inbound(&m.to_json()), Ok(m));
        }
        if let Ok(m) = parse_relay_outbound(&text) {
            prop_assert_eq!(parse_relay_outbound(&m.to_json()), Ok(m));
        }
    }

    #[test]
    fn inbound_frames_round_trip(frame in inbound_frame()) {
        let json = frame.to_json();
        prop_assert_eq!(parse_inbound(&json), Ok(frame));
    }

    #[test]
    fn outbound_frames_round_trip(frame in outbound_frame()) {
        let json = frame.to_json();
        // What the server writes is always valid JSON with the right event.
        let v: Value = serde_json::from_str(&json).unwrap();
        prop_assert!(v["event"].is_string());
        prop_assert_eq!(parse_outbound(&json), Ok(frame));
    }

    #[test]
    fn relay_inbound_round_trips(msg in relay_inbound()) {
        prop_assert_eq!(parse_relay_inbound(&msg.to_json()), Ok(msg));
    }

    #[test]
    fn relay_outbound_round_trips(msg in relay_outbound()) {
        prop_assert_eq!(parse_relay_outbound(&msg.to_json()), Ok(msg));
    }
}

fn s() -> impl Strategy<Value = String> {
    any::<String>()
}

fn params() -> impl Strategy<Value = BTreeMap<String, String>> {
    proptest::collection::btree_map(s(), s(), 0..4)
}

fn inbound_frame() -> impl Strategy<Value = InboundFrame> {
    prop_oneof![
        (s(), s()).prop_map(|(protocol, version)| InboundFrame::Connected { protocol, version }),
        (
            any::<u64>(),
            s(),
            s(),
            s(),
            proptest::collection::vec(s(), 0..3),
            params(),
            (s(), any::<u32>(), any::<u16>())
        )
            .prop_map(
                |(
                    sequence_number,
                    stream_sid,
                    account_sid,
                    call_sid,
                    tracks,
                    custom_parameters,
                    (encoding, sample_rate, channels),
                )| {
                    InboundFrame::Start(Start {
                        sequence_number,
                        stream_sid,
                        account_sid,
                        call_sid,
                        tracks,
                        custom_parameters,
                        media_format: MediaFormat {
                            encoding,
                            sample_rate,
                            channels,
                        },
                    })
                }
            ),
        (
            any::<u64>(),
            s(),
            s(),
            any::<u64>(),
            any::<u64>(),
            1usize..4,
            any::<u8>()
        )
            .prop_map(
                |(sequence_number, stream_sid, track, chunk, timestamp_ms, frames, fill)| {
                    let payload = (0..frames * 160)
                        .map(|i| fill.wrapping_add(i as u8))
                        .collect();
                    InboundFrame::Media(Media {
                        sequence_number,
                        stream_sid,
                        track,
                        chunk,
                        timestamp_ms,
                        payload,
                    })
                }
            ),
        (any::<u64>(), s(), s(), s()).prop_map(|(sequence_number, stream_sid, track, digit)| {
            InboundFrame::Dtmf {
                sequence_number,
                stream_sid,
                track,
                digit,
            }
        }),
        (any::<u64>(), s(), s()).prop_map(|(sequence_number, stream_sid, name)| {
            InboundFrame::Mark {
                sequence_number,
                stream_sid,
                name,
            }
        }),
        (any::<u64>(), s(), s(), s()).prop_map(
            |(sequence_number, stream_sid, account_sid, call_sid)| {
                InboundFrame::Stop {
                    sequence_number,
                    stream_sid,
                    account_sid,
                    call_sid,
                }
            }
        ),
    ]
}

fn outbound_frame() -> impl Strategy<Value = OutboundFrame> {
    prop_oneof![
        (s(), proptest::collection::vec(any::<u8>(), 0..2000)).prop_map(|(stream_sid, payload)| {
            OutboundFrame::Media {
                stream_sid,
                payload,
            }
        }),
        (s(), s()).prop_map(|(stream_sid, name)| OutboundFrame::Mark { stream_sid, name }),
        s().prop_map(|stream_sid| OutboundFrame::Clear { stream_sid }),
    ]
}

fn opt_s() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(s())
}

fn relay_inbound() -> impl Strategy<Value = RelayInbound> {
    prop_oneof![
        (
            (s(), s(), opt_s(), opt_s(), opt_s(), opt_s()),
            (opt_s(), opt_s(), opt_s(), opt_s(), opt_s(), params())
        )
            .prop_map(
                |(
                    (session_id, call_sid, account_sid, parent_call_sid, from, to),
                    (
                        forwarded_from,
                        caller_name,
                        direction,
                        call_type,
                        call_status,
                        custom_parameters,
                    ),
                )| {
                    RelayInbound::Setup(Box::new(Setup {
                        session_id,
                        call_sid,
                        account_sid,
                        parent_call_sid,
                        from,
                        to,
                        forwarded_from,
                        caller_name,
                        direction,
                        call_type,
                        call_status,
                        custom_parameters,
                    }))
                }
            ),
        (s(), opt_s(), any::<bool>()).prop_map(|(voice_prompt, lang, last)| RelayInbound::Prompt {
            voice_prompt,
            lang,
            last
        }),
        s().prop_map(|digit| RelayInbound::Dtmf { digit }),
        (s(), proptest::option::of(any::<u64>())).prop_map(
            |(utterance_until_interrupt, duration_until_interrupt_ms)| {
                RelayInbound::Interrupt {
                    utterance_until_interrupt,
                    duration_until_interrupt_ms,
                }
            }
        ),
        s().prop_map(|description| RelayInbound::Error { description }),
    ]
}

fn opt_bool() -> impl Strategy<Value = Option<bool>> {
    proptest::option::of(any::<bool>())
}

fn relay_outbound() -> impl Strategy<Value = RelayOutbound> {
    prop_oneof![
        (s(), any::<bool>(), opt_s(), opt_bool(), opt_bool()).prop_map(
            |(token, last, lang, interruptible, preemptible)| RelayOutbound::Text {
                token,
                last,
                lang,
                interruptible,
                preemptible
            }
        ),
        (
            s(),
            proptest::option::of(any::<u32>()),
            opt_bool(),
            opt_bool()
        )
            .prop_map(|(source, loop_count, interruptible, preemptible)| {
                RelayOutbound::Play {
                    source,
                    loop_count,
                    interruptible,
                    preemptible,
                }
            }),
        s().prop_map(|digits| RelayOutbound::SendDigits { digits }),
        (opt_s(), opt_s()).prop_map(|(tts_language, transcription_language)| {
            RelayOutbound::Language {
                tts_language,
                transcription_language,
            }
        }),
        opt_s().prop_map(|handoff_data| RelayOutbound::End { handoff_data }),
    ]
}
