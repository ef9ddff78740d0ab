//! The production speech adapter against the stand-in server over loopback: audio length,
//! request shape, timeouts and errors.

use std::time::Duration;

use switchboard_actors::ports::{PortErrorKind, SpeechSynth};
use switchboard_providers::speech::{OpenAiSpeech, OpenAiSpeechConfig};
use switchboard_providers::standins::{StandinConfig, Standins, spawn_standins};

async fn standins(config: StandinConfig) -> Standins {
    spawn_standins("127.0.0.1:0".parse().expect("addr"), config)
        .await
        .expect("bind loopback")
}

fn speech(standins: &Standins, timeout: Duration) -> OpenAiSpeech {
    OpenAiSpeech::new(OpenAiSpeechConfig {
        base_url: standins.base_url(),
        api_key: Some("sk-test-not-real".into()),
        model: "tts-standin".into(),
        voice: "alloy".into(),
        timeout,
    })
    .expect("client")
}

#[tokio::test]
async fn synthesis_returns_mulaw_8k_whose_length_follows_the_text() {
    let standins = standins(StandinConfig {
        speech_ms_per_char: 50,
        ..StandinConfig::instant()
    })
    .await;
    let tts = speech(&standins, Duration::from_secs(10));
    let text = "Thanks for calling, how can I help you today?"; // 45 characters
    let mulaw = tts.synthesize(text).await.expect("audio");
    let duration_ms = 45 * 50;
    assert_eq!(mulaw.len(), 8 * duration_ms, "8 samples per ms of speech");
    // A 200 Hz tone, not silence: plenty of bytes away from the two zero codes.
    let loud = mulaw.iter().filter(|&&b| b != 0xFF && b != 0x7F).count();
    assert!(
        loud > mulaw.len() / 2,
        "{loud} of {} non-silent",
        mulaw.len()
    );

    let requests = standins.speech_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["input"], text);
    assert_eq!(requests[0]["response_format"], "pcm");
    assert_eq!(requests[0]["voice"], "alloy");
    assert_eq!(requests[0]["model"], "tts-standin");

    // Multibyte text counts characters, not bytes.
    let mulaw = tts.synthesize("Grüße").await.expect("audio");
    assert_eq!(mulaw.len(), 8 * 5 * 50);
    standins.shutdown().await;
}

#[tokio::test]
async fn a_slow_tts_is_a_timeout() {
    let standins = standins(StandinConfig {
        speech_latency: Duration::from_secs(5),
        ..StandinConfig::instant()
    })
    .await;
    let tts = speech(&standins, Duration::from_millis(200));
    let started = tokio::time::Instant::now();
    let error = tts.synthesize("hello").await.expect_err("must time out");
    assert_eq!(error.kind, PortErrorKind::Timeout, "{error}");
    assert!(error.message.contains("200 ms"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(3));
    standins.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_tts_is_unavailable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let tts = OpenAiSpeech::new(OpenAiSpeechConfig {
        base_url: format!("http://127.0.0.1:{port}/v1"),
        api_key: None,
        model: "tts-1".into(),
        voice: "alloy".into(),
        timeout: Duration::from_secs(5),
    })
    .expect("client");
    let error = tts.synthesize("hello").await.expect_err("nothing listens");
    assert_eq!(error.kind, PortErrorKind::Unavailable, "{error}");
}

#[tokio::test]
async fn empty_text_gives_empty_audio() {
    let standins = standins(StandinConfig::instant()).await;
    let tts = speech(&standins, Duration::from_secs(5));
    assert_eq!(tts.synthesize("").await.expect("audio"), Vec::<u8>::new());
    standins.shutdown().await;
}

#[tokio::test]
async fn a_tts_500_is_unavailable_naming_the_status() {
    let standins = standins(StandinConfig {
        speech_status: Some(500),
        ..StandinConfig::instant()
    })
    .await;
    let tts = speech(&standins, Duration::from_secs(5));
    let error = tts.synthesize("hello").await.expect_err("must fail");
    assert_eq!(error.kind, PortErrorKind::Unavailable, "{error}");
    assert!(error.message.contains("500"), "{error}");
    standins.shutdown().await;
}
