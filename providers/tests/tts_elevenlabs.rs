//! The ElevenLabs adapter against the ElevenLabs-compatible stand-in over loopback: audio
//! length, request shape, errors and timeouts.

use std::time::Duration;

use switchboard_actors::ports::{PortErrorKind, SpeechSynth};
use switchboard_providers::elevenlabs::{ElevenLabsConfig, ElevenLabsSpeech};
use switchboard_providers::standins::{StandinConfig, Standins, spawn_standins};

async fn standins(config: StandinConfig) -> Standins {
    spawn_standins("127.0.0.1:0".parse().expect("addr"), config)
        .await
        .expect("bind loopback")
}

fn tts(standins: &Standins, timeout: Duration) -> ElevenLabsSpeech {
    ElevenLabsSpeech::new(ElevenLabsConfig {
        base_url: standins.root_url(),
        api_key: Some("xi-test-not-real".into()),
        voice_id: "voice-standin".into(),
        model_id: "eleven_flash_v2_5".into(),
        timeout,
    })
    .expect("client")
}

#[tokio::test]
async fn audio_is_mulaw_8k_and_its_length_follows_the_text() {
    let standins = standins(StandinConfig {
        speech_ms_per_char: 50,
        ..StandinConfig::instant()
    })
    .await;
    let tts = tts(&standins, Duration::from_secs(10));
    let text = "Thanks for calling, how can I help you today?"; // 45 characters
    let mulaw = tts.synthesize(text).await.expect("audio");
    assert_eq!(mulaw.len(), 8 * 45 * 50, "8 bytes per ms of speech");
    let loud = mulaw.iter().filter(|&&b| b != 0xFF && b != 0x7F).count();
    assert!(
        loud > mulaw.len() / 2,
        "{loud} of {} non-silent",
        mulaw.len()
    );

    let short = tts.synthesize("Grüße").await.expect("audio");
    assert_eq!(short.len(), 8 * 5 * 50, "characters, not bytes");

    let requests = standins.elevenlabs_requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0]["voice_id"], "voice-standin");
    assert_eq!(requests[0]["output_format"], "ulaw_8000");
    assert_eq!(requests[0]["api_key"], "xi-test-not-real");
    assert_eq!(requests[0]["body"]["text"], text);
    assert_eq!(requests[0]["body"]["model_id"], "eleven_flash_v2_5");
    standins.shutdown().await;
}

#[tokio::test]
async fn a_server_error_is_unavailable_and_names_the_status() {
    let standins = standins(StandinConfig {
        speech_status: Some(500),
        ..StandinConfig::instant()
    })
    .await;
    let error = tts(&standins, Duration::from_secs(5))
        .synthesize("hello")
        .await
        .expect_err("500 is an error");
    assert_eq!(error.kind, PortErrorKind::Unavailable, "{error}");
    assert!(error.message.contains("500"), "{error}");
    assert!(error.message.contains("stand-in fault injected"), "{error}");
    standins.shutdown().await;
}

#[tokio::test]
async fn a_refused_key_is_rejected_and_says_so() {
    let standins = standins(StandinConfig {
        speech_status: Some(401),
        ..StandinConfig::instant()
    })
    .await;
    let error = tts(&standins, Duration::from_secs(5))
        .synthesize("hello")
        .await
        .expect_err("401 is an error");
    assert_eq!(error.kind, PortErrorKind::Rejected, "{error}");
    assert!(error.message.contains("401"), "{error}");
    assert!(error.message.contains("Invalid API key"), "{error}");
    assert!(error.message.contains("check the API key"), "{error}");
    assert!(
        !error.message.contains("xi-test-not-real"),
        "the key leaked: {error}"
    );
    standins.shutdown().await;
}

#[tokio::test]
async fn a_slow_tts_is_a_timeout() {
    let standins = standins(StandinConfig {
        speech_latency: Duration::from_secs(5),
        ..StandinConfig::instant()
    })
    .await;
    let error = tts(&standins, Duration::from_millis(200))
        .synthesize("hello")
        .await
        .expect_err("must time out");
    assert_eq!(error.kind, PortErrorKind::Timeout, "{error}");
    assert!(error.message.contains("200 ms"), "{error}");
    standins.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_tts_is_unavailable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let tts = ElevenLabsSpeech::new(ElevenLabsConfig {
        base_url: format!("http://127.0.0.1:{port}"),
        ..ElevenLabsConfig::default()
    })
    .expect("client");
    let error = tts.synthesize("hello").await.expect_err("nobody listens");
    assert_eq!(error.kind, PortErrorKind::Unavailable, "{error}");
    assert!(error.message.contains(&port.to_string()), "{error}");
}
