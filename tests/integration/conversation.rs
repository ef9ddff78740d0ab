//! Conversations end to end (issue #6): the real server over real sockets, with the provider
//! stand-ins speaking the vendors' public protocols — a Media Streams caller whose speech goes
//! through the Deepgram-compatible STT and comes back as synthesized audio, tool calls that reach
//! the database, and the faults the agent must survive (an STT socket dropping mid-call, bad tool
//! calls from the model, a TTS that stops answering in time).

use std::time::Duration;

use futures::SinkExt;
use serde_json::{Value, json};
use switchboard_providers::standins::{
    ReplyScript, ScriptedToolCall, StandinConfig, Standins, spawn_standins,
};
use switchboard_twilio::media::OutboundFrame;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;
use crate::history::{relay, relay_send, relay_setup, relay_turn};
use crate::twilio::{
    KNOWN, Ws, api, app, media_frame, metric, play_greeting_once_known, read_until, start_frame,
    wait_state, ws_connect,
};

/// Stand-ins of our own, so a test can script them and change them mid-call.
async fn standins(config: StandinConfig) -> Standins {
    spawn_standins("127.0.0.1:0".parse().unwrap(), config)
        .await
        .expect("stand-ins")
}

fn use_standins(c: &mut switchboard::config::Config, s: &Standins) {
    c.llm.base_url = s.base_url();
    c.tts.base_url = s.base_url();
    c.stt.base_url = s.root_url();
}

/// The caller says `text`: scripted speech (loud mu-law carrying the text) then 800 ms of
/// silence, as 20 ms Media Streams frames. Sent faster than real time: the recognizer counts
/// end of speech in audio time.
async fn say(ws: &mut Ws, sid: &str, seq: &mut u64, text: &str) {
    let mut audio = switchboard_twilio::scripted::encode(text);
    audio.extend(std::iter::repeat_n(0xFF, 8 * 800));
    for chunk in audio.chunks(160) {
        *seq += 1;
        ws.send(Message::Text(media_frame(*seq, sid, chunk.to_vec()).into()))
            .await
            .expect("media");
    }
}

/// Plays Twilio until the agent has finished speaking a turn whose text we cannot see (media
/// mode): reads frames, echoing marks, until the call reaches `state` and the socket is quiet.
async fn play_until_state(app: &TestApp, ws: &mut Ws, sid: &str, state: &str) {
    for _ in 0..200 {
        let v = api(app, &format!("/api/v1/calls/{sid}")).await;
        if v["state"] == state {
            return;
        }
        let _ = tokio::time::timeout(
            Duration::from_millis(100),
            read_until(ws, true, sid, |f| matches!(f, OutboundFrame::Mark { .. })),
        )
        .await;
    }
    panic!(
        "{sid} never reached {state}: {}",
        api(app, &format!("/api/v1/calls/{sid}")).await
    );
}

async fn stored_transcript(app: &TestApp, sid: &str) -> Vec<(String, String)> {
    for _ in 0..500 {
        let v = api(app, &format!("/api/v1/calls/{sid}")).await;
        if v["live"] == false {
            return v["transcript"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    (
                        m["role"].as_str().unwrap().to_owned(),
                        m["text"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{sid} was never stored");
}

/// A Media Streams call from `from`, after `start`.
async fn media_call(app: &TestApp, sid: &str, from: &str) -> Ws {
    let mut ws = ws_connect(app, "/twilio/media", None)
        .await
        .expect("connect");
    ws.send(Message::Text(start_frame(sid, from).into()))
        .await
        .unwrap();
    ws
}

async fn hang_up(ws: &mut Ws, sid: &str) {
    let stop = json!({"event":"stop","sequenceNumber":"999","streamSid":format!("MZ{sid}"),"stop":{"accountSid":"AC1","callSid":sid}});
    let _ = ws.send(Message::Text(stop.to_string().into())).await;
}

/// A known caller, once enriched, says `text` and hangs up at once: no silence after the words,
/// so the recognizer has not ended the utterance when `stop` arrives. The words must still be
/// in the stored transcript.
async fn last_words_are_kept(app: &TestApp, sid: &str, text: &str) {
    let mut ws = media_call(app, sid, KNOWN).await;
    play_until_state(app, &mut ws, sid, "enriched").await;
    let mut seq = 1;
    for chunk in switchboard_twilio::scripted::encode(text).chunks(160) {
        seq += 1;
        ws.send(Message::Text(media_frame(seq, sid, chunk.to_vec()).into()))
            .await
            .expect("media");
    }
    hang_up(&mut ws, sid).await;
    let transcript = stored_transcript(app, sid).await;
    assert!(
        transcript
            .iter()
            .any(|(role, said)| role == "caller" && said == text),
        "the last words are in the stored transcript: {transcript:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn words_spoken_just_before_the_hang_up_are_kept() {
    let (app, _dir) = app(|_| {}).await;
    last_words_are_kept(&app, "CAlastwords", "Please cancel my order").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_recognizers_last_words_after_the_hang_up_are_kept() {
    // The recognizer takes 2.5 s to send each final result: longer than the edge once waited
    // after a hang-up (1.5 s), shorter than the session's closing grace (5 s).
    let s = standins(StandinConfig {
        stt_final_delay: Duration::from_millis(2500),
        ..StandinConfig::instant()
    })
    .await;
    let (app, _dir) = app(|c| use_standins(c, &s)).await;
    last_words_are_kept(&app, "CAslowstt", "Where is my refund").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_media_call_hears_the_caller_through_stt_and_answers_with_audio() {
    let (app, _dir) = app(|_| {}).await;
    let sid = "CAspeech1";
    let new_caller = "+15550100777";
    let mut ws = media_call(&app, sid, new_caller).await;
    // Greeting, then "May I have your name?": play both.
    play_until_state(&app, &mut ws, sid, "awaiting_name").await;
    read_until(&mut ws, true, sid, |f| {
        matches!(f, OutboundFrame::Mark { .. })
    })
    .await;
    let mut seq = 1;
    say(&mut ws, sid, &mut seq, "My name is Alice Walker").await;
    play_until_state(&app, &mut ws, sid, "conversing").await;
    let call = api(&app, &format!("/api/v1/calls/{sid}")).await;
    assert_eq!(call["customer_name"], "Alice Walker", "{call}");
    // Let "Nice to meet you" play out, then ask a question: the answer comes back as audio.
    tokio::time::sleep(Duration::from_millis(300)).await;
    say(&mut ws, sid, &mut seq, "What are my open tasks").await;
    let reply = read_until(&mut ws, true, sid, |f| {
        matches!(f, OutboundFrame::Media { .. })
    })
    .await;
    let OutboundFrame::Media { payload, .. } = reply else {
        unreachable!()
    };
    assert!(
        !payload.is_empty() && payload.len() <= 1600 && payload.len() % 160 == 0,
        "whole frames, at most 200 ms per message: {}",
        payload.len()
    );
    // Wait until the reply is in the transcript, then hang up.
    for _ in 0..300 {
        let v = api(&app, &format!("/api/v1/calls/{sid}")).await;
        let replied = v["transcript"].as_array().is_some_and(|t| {
            t.iter().any(|m| {
                m["text"]
                    .as_str()
                    .is_some_and(|x| x.starts_with("You said: What are my open tasks"))
            })
        });
        if replied {
            break;
        }
        let _ = tokio::time::timeout(
            Duration::from_millis(100),
            read_until(&mut ws, true, sid, |f| {
                matches!(f, OutboundFrame::Mark { .. })
            }),
        )
        .await;
    }
    hang_up(&mut ws, sid).await;
    let transcript = stored_transcript(&app, sid).await;
    let caller: Vec<&str> = transcript
        .iter()
        .filter(|(r, _)| r == "caller")
        .map(|(_, t)| t.as_str())
        .collect();
    assert_eq!(
        caller,
        vec!["My name is Alice Walker", "What are my open tasks"]
    );
    assert!(
        transcript
            .iter()
            .any(|(r, t)| r == "agent" && t.starts_with("You said: What are my open tasks")),
        "{transcript:?}"
    );
    // The new caller became a customer under the name they said.
    let db = app.state.database().unwrap();
    let name: String = sqlx::query_scalar("SELECT name FROM customers WHERE phone_e164 = $1")
        .bind(new_caller)
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(name, "Alice Walker");
    // Per-turn latency was measured end to end for the answer.
    assert!(metric(&app, "switchboard_turn_first_audio_seconds_count").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_stt_socket_that_drops_mid_call_reconnects_and_the_call_goes_on() {
    let s = standins(StandinConfig {
        stt_drop_after_utterances: Some(1),
        ..StandinConfig::instant()
    })
    .await;
    let (app, _dir) = app(|c| use_standins(c, &s)).await;
    let sid = "CAsttdrop";
    let mut ws = media_call(&app, sid, KNOWN).await;
    play_until_state(&app, &mut ws, sid, "enriched").await;
    let mut seq = 1;
    say(&mut ws, sid, &mut seq, "First question please").await;
    play_until_state(&app, &mut ws, sid, "conversing").await;
    // The stand-in drops the socket after that utterance; the adapter reconnects.
    for _ in 0..300 {
        if s.stt_connections() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(s.stt_connections() >= 2, "reconnected");
    assert!(metric(&app, "switchboard_stt_reconnects_total").await >= 1.0);
    say(&mut ws, sid, &mut seq, "Second question please").await;
    for _ in 0..300 {
        let v = api(&app, &format!("/api/v1/calls/{sid}")).await;
        let heard = v["transcript"]
            .as_array()
            .is_some_and(|t| t.iter().any(|m| m["text"] == "Second question please"));
        if heard {
            hang_up(&mut ws, sid).await;
            return;
        }
        let _ = tokio::time::timeout(
            Duration::from_millis(50),
            read_until(&mut ws, true, sid, |f| {
                matches!(f, OutboundFrame::Mark { .. })
            }),
        )
        .await;
    }
    panic!("the second utterance was never heard");
}

fn tool_script() -> StandinConfig {
    StandinConfig {
        reply: ReplyScript {
            fixed_text: None,
            tool_calls: vec![
                ScriptedToolCall {
                    trigger: "call me back".into(),
                    name: "create_task".into(),
                    arguments:
                        r#"{"title":"Call the customer back about the renewal","priority":2}"#
                            .into(),
                },
                ScriptedToolCall {
                    trigger: "broken".into(),
                    name: "create_task".into(),
                    arguments: r#"{"title": "unterminated"#.into(),
                },
                ScriptedToolCall {
                    trigger: "mystery".into(),
                    name: "launch_rockets".into(),
                    arguments: "{}".into(),
                },
            ],
        },
        ..StandinConfig::instant()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_call_round_trip_creates_a_task_and_the_model_answers_with_the_result() {
    let s = standins(tool_script()).await;
    let (app, _dir) = app(|c| {
        use_standins(c, &s);
        c.twilio.mode = switchboard::config::TwilioMode::Relay;
    })
    .await;
    let mut ws = relay(&app).await;
    relay_setup(&mut ws, "CAtool1", KNOWN).await;
    let greeting = relay_turn(&mut ws).await;
    assert!(greeting.contains("Ana Souza"), "{greeting}");
    relay_send(&mut ws, json!({"type":"prompt","voicePrompt":"Could you call me back tomorrow?","lang":"en-US","last":true})).await;
    let answer = relay_turn(&mut ws).await;
    assert!(answer.starts_with("Done."), "{answer}");
    assert!(
        answer.contains("task_id"),
        "the model saw the tool's result: {answer}"
    );
    let db = app.state.database().unwrap();
    let titles: Vec<String> = sqlx::query_scalar(
        "SELECT t.title FROM tasks t JOIN customers c ON c.id = t.customer_id WHERE c.phone_e164 = $1 ORDER BY t.id",
    )
    .bind(KNOWN)
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert_eq!(
        titles,
        vec![
            "Renew the contract",
            "Call the customer back about the renewal"
        ],
        "the task was created once, for the caller"
    );
    // What the model was sent: the tools, then its own call and the result.
    let requests = s.requests();
    assert!(
        requests[0]["tools"]
            .as_array()
            .is_some_and(|t| t.len() == 6)
    );
    let follow_up = requests.last().unwrap();
    let messages = follow_up["messages"].as_array().unwrap();
    let tool = messages
        .iter()
        .find(|m| m["role"] == "tool")
        .expect("tool message");
    let assistant = messages
        .iter()
        .find(|m| m["tool_calls"].is_array())
        .expect("assistant tool call");
    assert_eq!(tool["tool_call_id"], assistant["tool_calls"][0]["id"]);
    drop(ws);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tool_calls_get_error_results_and_the_call_goes_on() {
    let s = standins(tool_script()).await;
    let (app, _dir) = app(|c| {
        use_standins(c, &s);
        c.twilio.mode = switchboard::config::TwilioMode::Relay;
    })
    .await;
    let mut ws = relay(&app).await;
    relay_setup(&mut ws, "CAtool2", KNOWN).await;
    relay_turn(&mut ws).await;
    relay_send(
        &mut ws,
        json!({"type":"prompt","voicePrompt":"This one is broken","lang":"en-US","last":true}),
    )
    .await;
    let answer = relay_turn(&mut ws).await;
    assert!(answer.contains("not valid JSON"), "{answer}");
    relay_send(
        &mut ws,
        json!({"type":"prompt","voicePrompt":"Solve the mystery","lang":"en-US","last":true}),
    )
    .await;
    let answer = relay_turn(&mut ws).await;
    assert!(answer.contains("unknown tool"), "{answer}");
    // Nothing was written by either, and the call is still up and answering.
    let db = app.state.database().unwrap();
    let tasks: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tasks")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(tasks, 1, "only the seeded task");
    relay_send(
        &mut ws,
        json!({"type":"prompt","voicePrompt":"Hello again","lang":"en-US","last":true}),
    )
    .await;
    assert!(
        relay_turn(&mut ws)
            .await
            .starts_with("You said: Hello again")
    );
    let v: Value = api(&app, "/api/v1/calls/CAtool2").await;
    assert_eq!(v["state"], "conversing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tts_that_times_out_plays_the_fallback_line_instead_of_silence() {
    let s = standins(StandinConfig::instant()).await;
    let (app, _dir) = app(|c| {
        use_standins(c, &s);
        c.tts.timeout_ms = 300;
    })
    .await;
    // Started: the greeting and the fallback line are rendered. Now the TTS becomes too slow.
    s.set_config(StandinConfig {
        speech_latency: Duration::from_secs(3),
        ..StandinConfig::instant()
    });
    let sid = "CAttsslow";
    let mut ws = media_call(&app, sid, KNOWN).await;
    // The greeting was rendered at start and plays at once; the welcome by name that follows
    // it cannot be synthesized in time: the fallback audio plays instead.
    play_greeting_once_known(&app, &mut ws, sid).await;
    let first = read_until(&mut ws, true, sid, |f| {
        matches!(f, OutboundFrame::Media { .. })
    })
    .await;
    assert!(matches!(first, OutboundFrame::Media { .. }));
    assert!(metric(&app, "switchboard_tts_failures_total").await >= 1.0);
    // Its mark still comes, so the call moves on instead of waiting for a line that never came.
    read_until(&mut ws, true, sid, |f| {
        matches!(f, OutboundFrame::Mark { .. })
    })
    .await;
    wait_state(&app, sid, "enriched").await;
    hang_up(&mut ws, sid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_barge_in_closes_the_llm_stream_at_the_provider() {
    let s = standins(StandinConfig {
        token_delay: Duration::from_millis(150),
        reply: ReplyScript {
            fixed_text: Some(
                "Let me read you the whole list of everything on your account, one item at a time, slowly."
                    .into(),
            ),
            tool_calls: Vec::new(),
        },
        ..StandinConfig::instant()
    })
    .await;
    let (app, _dir) = app(|c| {
        use_standins(c, &s);
        c.twilio.mode = switchboard::config::TwilioMode::Relay;
    })
    .await;
    let mut ws = relay(&app).await;
    relay_setup(&mut ws, "CAbarge", KNOWN).await;
    relay_turn(&mut ws).await;
    relay_send(
        &mut ws,
        json!({"type":"prompt","voicePrompt":"What is on my account?","lang":"en-US","last":true}),
    )
    .await;
    // The first tokens arrive; the caller interrupts.
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), futures::StreamExt::next(&mut ws))
            .await
            .expect("a token in time")
            .expect("open")
            .expect("frame");
        if let Message::Text(t) = msg
            && t.contains("\"text\"")
        {
            break;
        }
    }
    relay_send(
        &mut ws,
        json!({"type":"interrupt","utteranceUntilInterrupt":"Let me","durationUntilInterruptMs":400}),
    )
    .await;
    // The stand-in sees its HTTP stream closed before the end: the tokens stop being paid for.
    for _ in 0..200 {
        if s.closed_early() >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        s.closed_early(),
        1,
        "the stream was cancelled at the provider"
    );
    let v = api(&app, "/api/v1/calls/CAbarge").await;
    let last = v["transcript"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["interrupted"], true, "{last}");
    assert_eq!(last["text"], "Let me");
}
