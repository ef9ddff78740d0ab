//! The production chat client against the stand-in server over a real loopback socket: the
//! happy path, cancellation, and every failure the issue lists.

use std::time::Duration;

use futures::StreamExt;
use switchboard_actors::domain::{ChatMessage, LlmRequest};
use switchboard_actors::ports::{LlmClient, PortError, PortErrorKind};
use switchboard_providers::chat::{Delta, ToolCallAssembler, ToolCallError};
use switchboard_providers::openai::{OpenAiChat, OpenAiChatConfig};
use switchboard_providers::standins::{
    Fault, ReplyScript, ScriptedToolCall, StandinConfig, Standins, spawn_standins,
};

async fn standins(config: StandinConfig) -> Standins {
    spawn_standins("127.0.0.1:0".parse().expect("addr"), config)
        .await
        .expect("bind loopback")
}

fn client(standins: &Standins, first_token: Duration, overall: Duration) -> OpenAiChat {
    OpenAiChat::new(OpenAiChatConfig {
        base_url: standins.base_url(),
        api_key: Some("sk-test-not-real".into()),
        model: "standin-model".into(),
        first_token_timeout: first_token,
        overall_timeout: overall,
        max_tokens: Some(64),
        temperature: None,
    })
    .expect("client")
}

fn default_client(standins: &Standins) -> OpenAiChat {
    client(standins, Duration::from_secs(5), Duration::from_secs(10))
}

fn ask(text: &str) -> LlmRequest {
    LlmRequest::plain(vec![
        ChatMessage::new("system", "You are a phone agent."),
        ChatMessage::new("user", text),
    ])
}

/// All items of a stream, with a generous bound so a bug hangs no test run.
async fn collect<T>(stream: futures::stream::BoxStream<'static, T>) -> Vec<T> {
    tokio::time::timeout(Duration::from_secs(20), stream.collect::<Vec<_>>())
        .await
        .expect("stream ended within 20 s")
}

fn split(items: Vec<Result<String, PortError>>) -> (String, Option<PortError>) {
    let mut text = String::new();
    let mut error = None;
    for item in items {
        match item {
            Ok(piece) => {
                assert!(error.is_none(), "text after an error");
                text.push_str(&piece);
            }
            Err(e) => error = Some(e),
        }
    }
    (text, error)
}

#[tokio::test]
async fn streamed_text_assembles_the_reply_and_request_is_openai_shaped() {
    let standins = standins(StandinConfig::instant()).await;
    let llm = default_client(&standins);
    let items =
        collect(llm.stream(ask("my boiler is making a loud banging noise again today"))).await;
    assert!(items.len() > 5, "one piece per word, got {}", items.len());
    let (text, error) = split(items);
    assert_eq!(error, None);
    assert_eq!(
        text,
        "You said: my boiler is making a loud banging noise. How else can I help?"
    );
    let requests = standins.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["model"], "standin-model");
    assert_eq!(requests[0]["stream"], true);
    assert_eq!(requests[0]["stream_options"]["include_usage"], true);
    assert_eq!(requests[0]["max_tokens"], 64);
    assert_eq!(
        requests[0]["messages"][1]["content"],
        "my boiler is making a loud banging noise again today"
    );
    standins.shutdown().await;
}

#[tokio::test]
async fn events_end_with_finish_usage_and_done_and_connections_are_reused() {
    let standins = standins(StandinConfig::instant()).await;
    let llm = default_client(&standins);
    for _ in 0..3 {
        let items = collect(llm.stream_events(ask("hello"))).await;
        let deltas: Vec<Delta> = items.into_iter().map(|i| i.expect("no error")).collect();
        assert_eq!(deltas.last(), Some(&Delta::Done));
        assert!(deltas.iter().any(|d| matches!(d, Delta::Usage(_))));
        assert!(deltas.iter().any(|d| matches!(d, Delta::Finish(_))));
    }
    assert_eq!(standins.completed(), 3);
    assert_eq!(
        standins.closed_early(),
        0,
        "a finished stream is not a hang-up"
    );
    standins.shutdown().await;
}

#[tokio::test]
async fn scripted_tool_call_arrives_in_fragments_and_assembles() {
    let standins = standins(StandinConfig {
        reply: ReplyScript {
            fixed_text: None,
            tool_calls: vec![
                ScriptedToolCall {
                    trigger: "appointment".into(),
                    name: "book_appointment".into(),
                    arguments: r#"{"day":"Tuesday","time":"10:30","note":"boiler – noisy"}"#.into(),
                },
                ScriptedToolCall {
                    trigger: "broken".into(),
                    name: "book_appointment".into(),
                    arguments: r#"{"day":"Tues"#.into(),
                },
                ScriptedToolCall {
                    trigger: "delete".into(),
                    name: "delete_everything".into(),
                    arguments: "{}".into(),
                },
            ],
        },
        ..StandinConfig::instant()
    })
    .await;
    let llm = default_client(&standins);
    let known = ["book_appointment", "hangup"];

    let assemble = |items: Vec<Result<Delta, PortError>>| {
        let mut assembler = ToolCallAssembler::new();
        let mut fragments = 0;
        for item in items {
            if let Delta::ToolCallFragment(f) = item.expect("no error") {
                fragments += 1;
                assembler.push(&f);
            }
        }
        (fragments, assembler.finish().expect("named"))
    };

    let tools = [serde_json::json!({"type": "function", "function": {
        "name": "book_appointment",
        "description": "Books a visit",
        "parameters": {"type": "object", "properties": {"day": {"type": "string"}}},
    }})];
    let (fragments, calls) =
        assemble(collect(llm.stream_events_with_tools(ask("I need an appointment"), &tools)).await);
    assert_eq!(
        standins.requests()[0]["tools"][0]["function"]["name"],
        "book_appointment"
    );
    assert!(fragments > 3, "streamed in fragments, got {fragments}");
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].validate(&known).expect("valid call"),
        serde_json::json!({"day": "Tuesday", "time": "10:30", "note": "boiler – noisy"})
    );

    let (_, calls) = assemble(collect(llm.stream_events(ask("broken please"))).await);
    assert!(matches!(
        calls[0].validate(&known),
        Err(ToolCallError::InvalidArguments { .. })
    ));

    let (_, calls) = assemble(collect(llm.stream_events(ask("delete my account"))).await);
    assert!(matches!(
        calls[0].validate(&known),
        Err(ToolCallError::UnknownTool { .. })
    ));

    // The text port yields no text for a tool-call answer, and no error either.
    let (text, error) = split(collect(llm.stream(ask("an appointment"))).await);
    assert_eq!((text.as_str(), error), ("", None));
    standins.shutdown().await;
}

#[tokio::test]
async fn dropping_the_stream_after_the_first_token_closes_the_connection() {
    let standins = standins(StandinConfig {
        ttft: Duration::from_millis(10),
        token_delay: Duration::from_millis(200),
        reply: fixed_reply_long(),
        ..StandinConfig::instant()
    })
    .await;
    let llm = default_client(&standins);
    let mut stream = llm.stream(ask("hello"));
    let first = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("first token in time");
    assert!(matches!(first, Some(Ok(_))), "{first:?}");
    assert_eq!(standins.closed_early(), 0);
    drop(stream); // barge-in

    // The stand-in notices when it next writes (or reads EOF): well within a few token delays.
    wait_for_closed_early(&standins, 1).await;
    assert_eq!(standins.completed(), 0);
    standins.shutdown().await;
}

/// Waits (up to 5 s) until the stand-in has seen `n` streams closed by the client.
async fn wait_for_closed_early(standins: &Standins, n: u64) {
    let noticed = tokio::time::timeout(Duration::from_secs(5), async {
        while standins.closed_early() < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        noticed.is_ok(),
        "the stand-in saw {} of {n} client hang-ups",
        standins.closed_early()
    );
}

fn fixed_reply_long() -> ReplyScript {
    ReplyScript {
        fixed_text: Some("one two three four five six seven eight nine ten eleven twelve".into()),
        tool_calls: vec![],
    }
}

#[tokio::test]
async fn http_500_and_429_are_errors_naming_the_status() {
    for (code, words) in [
        (500, "500 Internal Server Error"),
        (429, "429 Too Many Requests"),
    ] {
        let standins = standins(StandinConfig {
            fault: Fault::Status(code),
            ..StandinConfig::instant()
        })
        .await;
        let llm = default_client(&standins);
        let (text, error) = split(collect(llm.stream(ask("hello"))).await);
        assert_eq!(text, "");
        let error = error.expect("an error");
        assert_eq!(error.kind, PortErrorKind::Unavailable, "{error}");
        assert!(error.message.contains(words), "{error}");
        // The body's OpenAI-style message is quoted, the key never is.
        assert!(error.message.contains("stand-in fault injected"), "{error}");
        assert!(!error.message.contains("sk-test"), "{error}");
        assert_eq!(
            standins.requests().len(),
            1,
            "status errors are not retried here"
        );
        if code == 429 {
            assert!(error.message.contains("retry after 1 s"), "{error}");
        }
        standins.shutdown().await;
    }
}

#[tokio::test]
async fn a_body_that_is_not_sse_is_an_error() {
    let standins = standins(StandinConfig {
        fault: Fault::NotSse,
        ..StandinConfig::instant()
    })
    .await;
    let llm = default_client(&standins);
    let (text, error) = split(collect(llm.stream(ask("hello"))).await);
    assert_eq!(text, "");
    let error = error.expect("an error");
    assert!(error.message.contains("text/html"), "{error}");
    assert!(error.message.contains("text/event-stream"), "{error}");
    standins.shutdown().await;
}

#[tokio::test]
async fn garbage_json_in_one_event_is_an_error_after_the_text_before_it() {
    let standins = standins(StandinConfig {
        fault: Fault::GarbageEvent,
        ..StandinConfig::instant()
    })
    .await;
    let llm = default_client(&standins);
    let (text, error) = split(collect(llm.stream(ask("hello there"))).await);
    assert_eq!(text, "You");
    let error = error.expect("an error");
    assert_eq!(error.kind, PortErrorKind::Unavailable);
    assert!(error.message.contains("unreadable stream event"), "{error}");
    standins.shutdown().await;
}

#[tokio::test]
async fn a_stream_without_done_yields_the_text_so_far_then_an_error() {
    let standins = standins(StandinConfig {
        fault: Fault::NoDone,
        reply: fixed_reply_long(),
        ..StandinConfig::instant()
    })
    .await;
    let llm = default_client(&standins);
    let (text, error) = split(collect(llm.stream(ask("hello"))).await);
    assert_eq!(text, "one two three four five six");
    let error = error.expect("an error");
    assert_eq!(error.kind, PortErrorKind::Unavailable);
    assert!(error.message.contains("without [DONE]"), "{error}");
    standins.shutdown().await;
}

#[tokio::test]
async fn a_stalled_first_token_is_retried_once_then_times_out() {
    let standins = standins(StandinConfig {
        fault: Fault::StallBeforeFirstToken,
        ..StandinConfig::instant()
    })
    .await;
    let llm = client(
        &standins,
        Duration::from_millis(200),
        Duration::from_secs(10),
    );
    let started = tokio::time::Instant::now();
    let (text, error) = split(collect(llm.stream(ask("hello"))).await);
    let elapsed = started.elapsed();
    assert_eq!(text, "");
    let error = error.expect("an error");
    assert_eq!(error.kind, PortErrorKind::Timeout, "{error}");
    assert!(error.message.contains("first token"), "{error}");
    assert_eq!(
        standins.requests().len(),
        2,
        "one request and exactly one retry"
    );
    // Neither abandoned attempt is left streaming on the server.
    wait_for_closed_early(&standins, 2).await;
    assert!(
        elapsed >= Duration::from_millis(400),
        "two deadlines, {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    standins.shutdown().await;
}

#[tokio::test]
async fn the_overall_deadline_ends_a_slow_answer() {
    // The first-token deadline is longer than the overall one: the overall deadline wins and
    // nothing is retried.
    let standins = standins(StandinConfig {
        ttft: Duration::from_secs(3),
        ..StandinConfig::instant()
    })
    .await;
    let llm = client(
        &standins,
        Duration::from_secs(2),
        Duration::from_millis(300),
    );
    let (text, error) = split(collect(llm.stream(ask("hello"))).await);
    assert_eq!(text, "");
    let error = error.expect("an error");
    assert_eq!(error.kind, PortErrorKind::Timeout);
    assert!(error.message.contains("overall deadline"), "{error}");
    assert_eq!(standins.requests().len(), 1);
    standins.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    // Bind then drop: nothing listens on that port any more.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let llm = OpenAiChat::new(OpenAiChatConfig {
        base_url: format!("http://127.0.0.1:{port}/v1"),
        api_key: None,
        model: "m".into(),
        first_token_timeout: Duration::from_secs(2),
        overall_timeout: Duration::from_secs(5),
        max_tokens: None,
        temperature: None,
    })
    .expect("client");
    let (_, error) = split(collect(llm.stream(ask("hello"))).await);
    let error = error.expect("an error");
    assert_eq!(error.kind, PortErrorKind::Unavailable, "{error}");
    assert!(error.message.contains("unreachable"), "{error}");
}

#[tokio::test]
async fn a_retry_after_a_stalled_first_attempt_delivers_the_whole_answer() {
    let standins = standins(StandinConfig {
        fault: Fault::StallFirstRequests(1),
        ..StandinConfig::instant()
    })
    .await;
    let llm = client(
        &standins,
        Duration::from_millis(200),
        Duration::from_secs(10),
    );
    let (text, error) = split(collect(llm.stream(ask("are you there"))).await);
    assert_eq!(error, None);
    assert_eq!(text, "You said: are you there. How else can I help?");
    assert_eq!(standins.requests().len(), 2);
    standins.shutdown().await;
}

#[tokio::test]
async fn the_overall_deadline_cuts_a_slow_stream_after_the_text_so_far() {
    let standins = standins(StandinConfig {
        ttft: Duration::ZERO,
        token_delay: Duration::from_millis(300),
        reply: fixed_reply_long(),
        ..StandinConfig::instant()
    })
    .await;
    // Twelve words take 3.3 s; the answer is cut after about a third of them.
    let llm = client(
        &standins,
        Duration::from_secs(2),
        Duration::from_millis(1000),
    );
    let (text, error) = split(collect(llm.stream(ask("hello"))).await);
    let error = error.expect("an error");
    assert_eq!(error.kind, PortErrorKind::Timeout, "{error}");
    assert!(text.starts_with("one"), "{text:?}");
    assert!(!text.contains("twelve"), "{text:?}");
    assert_eq!(standins.requests().len(), 1, "no retry once tokens flowed");
    standins.shutdown().await;
}

#[tokio::test]
async fn non_streaming_requests_get_a_plain_json_completion() {
    let standins = standins(StandinConfig::instant()).await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let response = reqwest::Client::new()
        .post(format!("{}/chat/completions", standins.base_url()))
        .json(&serde_json::json!({
            "model": "m",
            "messages": [{"role": "user", "content": "hi there"}],
        }))
        .send()
        .await
        .expect("response");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "You said: hi there. How else can I help?"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    standins.shutdown().await;
}

#[tokio::test]
async fn dropping_the_stream_while_waiting_for_the_first_token_closes_the_connection() {
    let standins = standins(StandinConfig {
        fault: Fault::StallBeforeFirstToken,
        ..StandinConfig::instant()
    })
    .await;
    let llm = default_client(&standins);
    let mut stream = llm.stream(ask("hello"));
    let nothing = tokio::time::timeout(Duration::from_millis(300), stream.next()).await;
    assert!(nothing.is_err(), "the stand-in stalls: no item yet");
    assert_eq!(standins.requests().len(), 1, "the request is in flight");
    drop(stream); // the caller barged in before the agent said anything

    wait_for_closed_early(&standins, 1).await;
    standins.shutdown().await;
}
