//! The properties every fuzz target checks, shared by the cargo-fuzz targets (nightly) and the
//! stable corpus test (`twilio/tests/corpus.rs`), so both always check the same things.
//!
//! Each check takes arbitrary bytes, must not panic, and asserts that whatever a parser accepts
//! serialises back to text the same parser reads as the same value.

// Each fuzz binary calls only its own check.
#![allow(dead_code)]

use switchboard_twilio::{audio, media, relay};

/// Media Streams: both directions' parsers, and the serialise → parse round trip.
pub fn media_inbound(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match media::parse_inbound(text) {
        Ok(frame) => {
            let again = media::parse_inbound(&frame.to_json());
            assert_eq!(again.as_ref(), Ok(&frame), "inbound round trip of {text:?}");
        }
        Err(e) => assert!(!e.reason().is_empty() && !e.to_string().is_empty()),
    }
    if let Ok(frame) = media::parse_outbound(text) {
        let again = media::parse_outbound(&frame.to_json());
        assert_eq!(
            again.as_ref(),
            Ok(&frame),
            "outbound round trip of {text:?}"
        );
    }
}

/// ConversationRelay: both directions' parsers, and the serialise → parse round trip.
pub fn relay_inbound(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match relay::parse_relay_inbound(text) {
        Ok(msg) => {
            let again = relay::parse_relay_inbound(&msg.to_json());
            assert_eq!(again.as_ref(), Ok(&msg), "inbound round trip of {text:?}");
        }
        Err(e) => assert!(!e.reason().is_empty() && !e.to_string().is_empty()),
    }
    if let Ok(msg) = relay::parse_relay_outbound(text) {
        let again = relay::parse_relay_outbound(&msg.to_json());
        assert_eq!(again.as_ref(), Ok(&msg), "outbound round trip of {text:?}");
    }
}

/// WAV: parsing and conversion; whatever converts is one byte per sample.
pub fn wav(data: &[u8]) {
    let parsed = audio::parse_wav(data);
    if let Ok(wav) = &parsed {
        assert!(wav.data.len() <= data.len());
    }
    if let Ok(mulaw) = audio::wav_to_mulaw_8k(data) {
        let Ok(wav) = parsed else {
            panic!("converted a file that does not parse")
        };
        let expected = match wav.format {
            audio::WavFormat::MuLaw => wav.data.len(),
            audio::WavFormat::Pcm16 => wav.data.len() / 2,
        };
        assert_eq!(mulaw.len(), expected);
    }
}
