use super::*;

fn notice(from: CallState, to: CallState) -> TransitionNotice {
    TransitionNotice {
        call_sid: CallSid("CAunit".into()),
        kind: NoticeKind::Transition,
        from,
        to,
        event: "test".into(),
        at_ms: 1_700_000_000_000,
        restarts: 0,
    }
}

/// What the feed sends for one transition.
fn encoded(from: CallState, to: CallState) -> Bytes {
    let mut text = String::new();
    for event in live_events(&notice(from, to), None) {
        event.encode_into(&mut text);
    }
    Bytes::from(text)
}

#[test]
fn a_transition_is_encoded_as_server_sent_events() {
    let text = encoded(CallState::Finalizing, CallState::Ended);
    let text = std::str::from_utf8(&text).unwrap();
    let frames: Vec<&str> = text.split_terminator("\n\n").collect();
    assert_eq!(frames.len(), 2, "{text}");
    assert!(
        frames[0].starts_with("event: transition\ndata: {"),
        "{text}"
    );
    assert!(
        frames[1].starts_with("event: call_ended\ndata: {"),
        "{text}"
    );
    let data: Value = serde_json::from_str(frames[1].split_once("data: ").unwrap().1).unwrap();
    assert_eq!(data["call_sid"], "CAunit");
}

#[tokio::test]
async fn a_client_behind_the_broadcast_is_dropped_as_lagged() {
    let (tx, rx) = broadcast::channel(2);
    for _ in 0..5 {
        tx.send(encoded(CallState::Greeting, CallState::Enriched))
            .unwrap();
    }
    let (queue, _reader) = mpsc::channel(16);
    let why = forward_events(LiveCalls::new(), rx, queue, Duration::from_secs(60)).await;
    assert_eq!(why, Some(DropReason::Lagged));
}

#[tokio::test]
async fn a_client_whose_queue_is_full_is_dropped_as_slow() {
    let (tx, rx) = broadcast::channel(16);
    for _ in 0..3 {
        tx.send(encoded(CallState::Greeting, CallState::Enriched))
            .unwrap();
    }
    let (queue, mut reader) = mpsc::channel(2);
    let why = forward_events(LiveCalls::new(), rx, queue, Duration::from_secs(60)).await;
    assert_eq!(why, Some(DropReason::Slow));
    // What was queued is still delivered, then the stream ends.
    for _ in 0..2 {
        let queued = reader.recv().await.unwrap();
        assert!(queued.starts_with(b"event: transition\n"));
    }
    assert!(reader.recv().await.is_none());
}

#[tokio::test]
async fn a_client_that_leaves_ends_its_forwarder_without_a_drop() {
    let (_tx, rx) = broadcast::channel::<Bytes>(16);
    let (queue, reader) = mpsc::channel(2);
    drop(reader);
    let why = forward_events(LiveCalls::new(), rx, queue, Duration::from_secs(60)).await;
    assert_eq!(why, None);
}

#[test]
fn the_end_of_a_call_is_a_transition_then_call_ended() {
    let events = live_events(&notice(CallState::Finalizing, CallState::Ended), None);
    let names: Vec<_> = events.iter().map(|e| e.name).collect();
    assert_eq!(names, ["transition", "call_ended"]);
    assert_eq!(events[1].data["call_sid"], "CAunit");
}

#[test]
fn a_restart_is_its_own_event_and_keeps_the_state() {
    let mut restart = notice(CallState::Conversing, CallState::Conversing);
    restart.kind = NoticeKind::Restart;
    restart.restarts = 2;
    restart.event = "actor restarted after: boom".into();
    let events = live_events(&restart, None);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].name, "call_restarted");
    assert_eq!(events[0].data["state"], "conversing");
    assert_eq!(events[0].data["restarts"], 2);
    assert_eq!(events[0].data["event"], "actor restarted after: boom");
}

#[test]
fn tokens_survive_the_cookie_and_compare_exactly() {
    let token = "s3cret/with;odd=chars é";
    assert_eq!(percent_decode(&percent_encode(token)), token);
    assert!(
        percent_encode(token)
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b))
    );
    assert!(token_matches("abc", &["x".into(), "abc".into()]));
    assert!(!token_matches(
        "abc",
        &["abcd".into(), "ab".into(), String::new()]
    ));
    assert!(!token_matches("abc", &[]));
}
