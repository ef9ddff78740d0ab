//! The production Deepgram client against the Deepgram-compatible stand-in over loopback:
//! scripted caller speech in, speech-started / partial / utterance events out, reconnection after
//! a dropped socket, refusals, and a graceful close. Audio goes out faster than real time; the
//! stand-in counts silence in audio time, so nothing here depends on the machine's speed.

use std::time::Duration;

use switchboard_actors::ports::{SpeechRecognizer, SttEvent, SttSession};
use switchboard_providers::deepgram::{DeepgramConfig, DeepgramStt};
use switchboard_providers::standins::{StandinConfig, Standins, spawn_standins};
use switchboard_twilio::scripted;
use tokio::sync::mpsc;

/// A generous bound so a bug hangs no test run; never a latency assertion.
const PATIENCE: Duration = Duration::from_secs(20);

async fn standins(config: StandinConfig) -> Standins {
    spawn_standins("127.0.0.1:0".parse().expect("addr"), config)
        .await
        .expect("bind loopback")
}

fn stt_at(base_url: String) -> DeepgramStt {
    DeepgramStt::new(DeepgramConfig {
        base_url,
        api_key: Some("dg-test-not-real".into()),
        connect_timeout: Duration::from_secs(2),
        max_reconnects: 2,
        ..DeepgramConfig::default()
    })
}

fn stt(standins: &Standins) -> DeepgramStt {
    stt_at(standins.root_url())
}

/// A caller saying `text`, then 600 ms of silence.
fn said(text: &str) -> Vec<u8> {
    let mut audio = scripted::encode(text);
    audio.extend(std::iter::repeat_n(0xFF, 8 * 600));
    audio
}

/// Sends `audio` in 20 ms Media Streams frames, as fast as the queue takes them.
async fn send(audio_tx: &mpsc::Sender<Vec<u8>>, audio: &[u8]) {
    for frame in audio.chunks(160) {
        audio_tx
            .send(frame.to_vec())
            .await
            .expect("session still open");
    }
}

/// Events until `done` says stop (inclusive).
async fn events_until(
    events: &mut mpsc::Receiver<SttEvent>,
    mut done: impl FnMut(&SttEvent) -> bool,
) -> Vec<SttEvent> {
    let mut seen = Vec::new();
    let collect = async {
        while let Some(event) = events.recv().await {
            let stop = done(&event);
            seen.push(event);
            if stop {
                return;
            }
        }
    };
    if tokio::time::timeout(PATIENCE, collect).await.is_err() {
        panic!("no matching event within {PATIENCE:?}; saw {seen:?}");
    }
    seen
}

/// Every event until the session's stream ends.
async fn all_events(events: &mut mpsc::Receiver<SttEvent>) -> Vec<SttEvent> {
    let mut seen = Vec::new();
    let collect = async {
        while let Some(event) = events.recv().await {
            seen.push(event);
        }
    };
    if tokio::time::timeout(PATIENCE, collect).await.is_err() {
        panic!("the event stream did not end within {PATIENCE:?}; saw {seen:?}");
    }
    seen
}

fn utterances(events: &[SttEvent]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match e {
            SttEvent::Utterance(text) => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

/// Waits for a counter the stand-in updates after the client already moved on.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let wait = async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    if tokio::time::timeout(PATIENCE, wait).await.is_err() {
        panic!("{what} never happened");
    }
}

/// The session sent `CloseStream` (and nothing else of the kind) and the stand-in closed the
/// stream, after `connections` connections in all.
async fn assert_closed_gracefully(standins: &Standins, connections: u64) {
    eventually("the stand-in closing the stream", || {
        standins.stt_closed_streams() == 1
    })
    .await;
    assert_eq!(standins.stt_control_messages(), ["CloseStream"]);
    assert_eq!(standins.stt_connections(), connections);
}

#[tokio::test]
async fn a_scripted_utterance_is_heard_exactly_once_with_partials_first() {
    let standins = standins(StandinConfig::instant()).await;
    let SttSession {
        audio,
        events: mut heard,
    } = stt(&standins).open("CA-one");
    let text = "I need to change my delivery address";
    send(&audio, &said(text)).await;
    let events = events_until(&mut heard, |e| matches!(e, SttEvent::Utterance(_))).await;

    assert_eq!(events.first(), Some(&SttEvent::SpeechStarted), "{events:?}");
    let partials: Vec<&String> = events
        .iter()
        .filter_map(|e| match e {
            SttEvent::Partial(p) => Some(p),
            _ => None,
        })
        .collect();
    assert!(!partials.is_empty(), "{events:?}");
    assert!(
        partials.iter().all(|p| text.starts_with(p.as_str())),
        "partials are the start of what was said: {partials:?}"
    );
    assert_eq!(utterances(&events), [text]);

    // The graceful end: no second copy of the utterance, and the stream ends.
    drop(audio);
    let rest = all_events(&mut heard).await;
    assert!(utterances(&rest).is_empty(), "{rest:?}");

    // The handshake asked for phone audio the way Deepgram wants it.
    let requests = standins.stt_requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(
        request.authorization.as_deref(),
        Some("Token dg-test-not-real")
    );
    for (key, value) in [
        ("encoding", "mulaw"),
        ("sample_rate", "8000"),
        ("channels", "1"),
        ("interim_results", "true"),
        ("vad_events", "true"),
        ("endpointing", "300"),
        ("utterance_end_ms", "1000"),
        ("smart_format", "true"),
        ("model", "nova-3"),
        ("language", "en-US"),
        ("extra", "call_sid:CA-one"),
    ] {
        assert_eq!(
            request.param(key),
            Some(value),
            "{key} in {:?}",
            request.query
        );
    }
    standins.shutdown().await;
}

#[tokio::test]
async fn two_utterances_in_one_session_come_out_in_order() {
    let standins = standins(StandinConfig::instant()).await;
    let SttSession {
        audio,
        events: mut heard,
    } = stt(&standins).open("CA-two");
    let first = "Hi, this is Ana calling about my order";
    let second = "It was supposed to arrive on Monday";
    let mut speech = said(first);
    speech.extend(said(second));
    send(&audio, &speech).await;
    drop(audio);
    let events = all_events(&mut heard).await;
    assert_eq!(utterances(&events), [first, second], "{events:?}");
    let started = events
        .iter()
        .filter(|e| **e == SttEvent::SpeechStarted)
        .count();
    assert_eq!(started, 2, "{events:?}");
    assert_eq!(standins.stt_connections(), 1);
    standins.shutdown().await;
}

#[tokio::test]
async fn unscripted_speech_is_heard_as_the_next_script_line() {
    let standins = standins(StandinConfig {
        stt_script: vec!["what are your opening hours".into()],
        ..StandinConfig::instant()
    })
    .await;
    let SttSession {
        audio,
        events: mut heard,
    } = stt(&standins).open("CA-real");
    // Loud audio that carries no scripted message: a full-scale square wave for 1 s.
    let mut speech: Vec<u8> = (0..8000)
        .map(|i| if i % 16 < 8 { 0x00 } else { 0x80 })
        .collect();
    speech.extend(std::iter::repeat_n(0xFF, 8 * 600));
    send(&audio, &speech).await;
    let events = events_until(&mut heard, |e| matches!(e, SttEvent::Utterance(_))).await;
    assert_eq!(utterances(&events), ["what are your opening hours"]);
    standins.shutdown().await;
}

#[tokio::test]
async fn a_dropped_socket_reconnects_and_the_next_utterance_still_arrives() {
    let standins = standins(StandinConfig {
        stt_drop_after_utterances: Some(1),
        ..StandinConfig::instant()
    })
    .await;
    let SttSession {
        audio,
        events: mut heard,
    } = stt(&standins).open("CA-drop");
    let first = "Where is my parcel";
    let second = "The tracking number ends in four two";
    send(&audio, &said(first)).await;
    let events = events_until(&mut heard, |e| matches!(e, SttEvent::Reconnecting { .. })).await;
    assert_eq!(utterances(&events), [first], "{events:?}");
    let Some(SttEvent::Reconnecting { reason }) = events.last() else {
        panic!("{events:?}")
    };
    assert!(!reason.is_empty());

    send(&audio, &said(second)).await;
    let events = events_until(&mut heard, |e| matches!(e, SttEvent::Utterance(_))).await;
    assert_eq!(utterances(&events), [second], "{events:?}");
    assert!(
        !events.iter().any(|e| matches!(e, SttEvent::Failed { .. })),
        "{events:?}"
    );
    assert_eq!(standins.stt_dropped(), 1);
    assert_eq!(standins.stt_connections(), 2);
    standins.shutdown().await;
}

#[tokio::test]
async fn a_wrong_encoding_is_refused_at_the_handshake() {
    use tokio_tungstenite::tungstenite::Error;

    let standins = standins(StandinConfig::instant()).await;
    let url = format!(
        "ws://{}/v1/listen?encoding=linear16&sample_rate=8000&channels=1",
        standins.addr()
    );
    match tokio_tungstenite::connect_async(url).await {
        Err(Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 400);
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                .into_owned();
            assert!(body.contains("linear16"), "{body}");
        }
        Ok(_) => panic!("linear16 must be refused"),
        Err(other) => panic!("expected HTTP 400, got {other}"),
    }
    let url = format!("ws://{}/v1/listen?encoding=mulaw", standins.addr());
    assert!(matches!(
        tokio_tungstenite::connect_async(url).await,
        Err(Error::Http(r)) if r.status().as_u16() == 400
    ));
    assert_eq!(standins.stt_refused(), 2);
    assert_eq!(standins.stt_connections(), 0);
    standins.shutdown().await;
}

#[tokio::test]
async fn refused_credentials_fail_at_once_without_retrying() {
    let standins = standins(StandinConfig {
        stt_status: Some(401),
        ..StandinConfig::instant()
    })
    .await;
    let SttSession {
        audio: _audio,
        events: mut heard,
    } = stt(&standins).open("CA-auth");
    let events = all_events(&mut heard).await;
    match events.as_slice() {
        [SttEvent::Failed { reason }] => {
            assert!(reason.contains("401"), "{reason}");
            assert!(reason.contains("Invalid credentials"), "{reason}");
            assert!(
                !reason.contains("dg-test-not-real"),
                "the key leaked: {reason}"
            );
        }
        other => panic!("expected one Failed, got {other:?}"),
    }
    assert_eq!(standins.stt_requests().len(), 1, "no retry");
    standins.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_server_fails_after_the_retries() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let SttSession {
        audio,
        events: mut heard,
    } = stt_at(format!("http://127.0.0.1:{port}")).open("CA-down");
    let events = all_events(&mut heard).await;
    let reconnecting = events
        .iter()
        .filter(|e| matches!(e, SttEvent::Reconnecting { .. }))
        .count();
    assert_eq!(reconnecting, 2, "max_reconnects = 2: {events:?}");
    match events.last() {
        Some(SttEvent::Failed { reason }) => {
            assert!(reason.contains(&format!("127.0.0.1:{port}")), "{reason}");
            assert!(reason.contains("2 reconnects"), "{reason}");
        }
        other => panic!("expected Failed last, got {other:?}"),
    }
    // Audio sent to a failed session is not an error for the caller, just unheard.
    let _ = audio.try_send(vec![0xFF; 160]);
}

#[tokio::test]
async fn dropping_the_audio_sender_sends_close_stream_and_flushes_what_was_said() {
    let standins = standins(StandinConfig::instant()).await;
    let SttSession {
        audio,
        events: mut heard,
    } = stt(&standins).open("CA-close");
    let text = "Cancel my subscription please";
    // The caller hangs up mid-sentence: no trailing silence, so no end of speech yet.
    send(&audio, &scripted::encode(text)).await;
    drop(audio);
    let events = all_events(&mut heard).await;
    assert_eq!(utterances(&events), [text], "{events:?}");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, SttEvent::Reconnecting { .. } | SttEvent::Failed { .. })),
        "{events:?}"
    );
    assert_closed_gracefully(&standins, 1).await;
    standins.shutdown().await;
}

#[tokio::test]
async fn a_quiet_line_is_kept_open_with_keep_alive() {
    let standins = standins(StandinConfig::instant()).await;
    let SttSession {
        audio,
        events: mut heard,
    } = stt(&standins).open("CA-quiet");
    send(&audio, &[0xFF; 1600]).await;
    // Nothing to send for a while (the agent is talking, or the caller is on mute).
    eventually("a KeepAlive", || {
        standins
            .stt_control_messages()
            .iter()
            .any(|m| m == "KeepAlive")
    })
    .await;
    drop(audio);
    let events = all_events(&mut heard).await;
    assert!(events.is_empty(), "silence says nothing: {events:?}");
    standins.shutdown().await;
}

#[tokio::test]
async fn results_read_on_another_runtime_survive_a_drop_and_keep_the_last_words() {
    // The server's layout: the session is opened (and sends audio) on one runtime and reads
    // Deepgram's results on the calls' runtime.
    let results = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("results runtime");
    let standins = standins(StandinConfig {
        stt_drop_after_utterances: Some(1),
        ..StandinConfig::instant()
    })
    .await;
    let stt = DeepgramStt::reading_results_on(
        DeepgramConfig {
            base_url: standins.root_url(),
            connect_timeout: Duration::from_secs(2),
            max_reconnects: 2,
            ..DeepgramConfig::default()
        },
        results.handle().clone(),
    );
    let SttSession {
        audio,
        events: mut heard,
    } = stt.open("CA-split");
    let first = "Where is my parcel";
    let last = "And please call me back tomorrow";
    send(&audio, &said(first)).await;
    let events = events_until(&mut heard, |e| matches!(e, SttEvent::Reconnecting { .. })).await;
    assert_eq!(utterances(&events), [first], "{events:?}");

    // The caller hangs up mid-sentence on the second connection.
    send(&audio, &scripted::encode(last)).await;
    drop(audio);
    let events = all_events(&mut heard).await;
    assert_eq!(utterances(&events), [last], "{events:?}");
    assert!(
        !events.iter().any(|e| matches!(e, SttEvent::Failed { .. })),
        "{events:?}"
    );
    assert_closed_gracefully(&standins, 2).await;
    standins.shutdown().await;
    results.shutdown_background();
}
