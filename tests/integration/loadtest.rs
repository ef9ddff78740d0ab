//! The load generator's library (`switchboard-loadtest`) against the real server, as CI's check
//! that simulated calls of every kind run end to end: Media Streams and ConversationRelay, new
//! callers who give their name, returning callers from `switchboard seed`, a barge-in on each
//! transport and a call whose actor is crashed through the chaos route. Afterwards every caller
//! turn must be found in the stored transcripts.

use std::time::Duration;

use switchboard_loadtest::report::CallRecord;
use switchboard_loadtest::run::{check_persistence, server_side};
use switchboard_loadtest::scenario::{CallerKind, demo_phone, new_caller_phone};
use switchboard_loadtest::{CallPlan, CallProgress, Target, Transport, simulate_call};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_calls_of_every_kind_complete_and_are_persisted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_url(dir.path(), "load.db");
    let seeded = run_bin(
        &["seed", "--customers", "5"],
        &[("SWITCHBOARD__DATABASE__URL", url.as_str())],
        dir.path(),
    );
    assert_eq!(seeded.code, Some(0), "seed: {}", seeded.stderr);
    let mut config = test_config(&url);
    config.chaos.enabled = true;
    config.supervisor.max_restarts = 5;
    let app = spawn_app(config).await;
    let (status, body) = app.poll_readyz(Duration::from_secs(30), true).await;
    assert_eq!(status, 200, "server ready: {body}");
    let target = Target::new(&app.base_url);

    let sid = |n: u64| switchboard_loadtest::scenario::call_sid(0x10ad, n);
    let returning = |n: u64| demo_phone(n).expect("a demo number");
    let new = |n: u64| new_caller_phone(0x10ad, n);
    let mut chaos = CallPlan::new(sid(5), Transport::Relay, returning(2))
        .say("Can you check my last invoice?")
        .say("Thanks, that is all.");
    chaos.crash_after_turn = Some(0);
    let plans = vec![
        (
            CallerKind::New,
            CallPlan::new(sid(0), Transport::Media, new(0))
                .say("My name is Ana Souza.")
                .say("Where is my order?"),
        ),
        (
            CallerKind::Returning,
            CallPlan::new(sid(1), Transport::Media, returning(0))
                .say("I would like to change my delivery address.")
                .barge_in("Actually, can you check my last invoice?"),
        ),
        (
            CallerKind::New,
            CallPlan::new(sid(2), Transport::Relay, new(2))
                .say("My name is Bruno Becker.")
                .say("What are your opening hours on Saturday?"),
        ),
        (
            CallerKind::Returning,
            CallPlan::new(sid(3), Transport::Relay, returning(1))
                .say("I want to upgrade my plan to the largest one you have.")
                .barge_in("Is my contract up for renewal?"),
        ),
        (
            CallerKind::New,
            CallPlan::new(sid(4), Transport::Media, new(4)).say("My name is Chloe Martin."),
        ),
        (CallerKind::Returning, chaos),
    ];
    let calls = plans.into_iter().map(|(kind, plan)| {
        let target = target.clone();
        async move {
            let mut progress = Vec::new();
            let outcome = simulate_call(&target, plan, |p| progress.push(p)).await;
            (kind, outcome, progress)
        }
    });
    let results = futures::future::join_all(calls).await;

    let mut records = Vec::new();
    for (kind, outcome, progress) in results {
        let sid = &outcome.call_sid;
        assert!(
            outcome.completed(),
            "{sid} ({:?}) failed: {:?}; progress: {progress:?}",
            outcome.transport,
            outcome.error
        );
        assert!(outcome.first_audio.is_some(), "{sid}: no greeting");
        assert!(
            progress
                .iter()
                .any(|p| matches!(p, CallProgress::GreetingAudio { .. })),
            "{sid}: greeting reported"
        );
        assert_eq!(progress.last(), Some(&CallProgress::HungUp), "{sid}");
        for (i, turn) in outcome.turns.iter().enumerate() {
            assert!(turn.said, "{sid}: turn {i} said");
            assert!(
                turn.latency.is_some(),
                "{sid}: turn {i} ({:?}) got an agent reply",
                turn.text
            );
            if outcome.transport == Transport::Media {
                // The reply comes only after the caller sent the recognizer's endpointing
                // silence, and the server's part is measured from that frame.
                let server_part = turn.after_endpoint.unwrap_or_else(|| {
                    panic!("{sid}: turn {i} answered before the endpointing silence was sent")
                });
                assert!(
                    Some(server_part) < turn.latency,
                    "{sid}: turn {i}: {server_part:?} after the endpoint frame, {:?} after the turn",
                    turn.latency
                );
            }
            if turn.barge_in {
                assert!(turn.talked_over_agent, "{sid}: turn {i} barged in");
                if outcome.transport == Transport::Media {
                    assert!(turn.clear_received, "{sid}: the barge-in got a clear");
                }
            }
        }
        if outcome.transport == Transport::Relay {
            // The relay caller reads the agent's words from the socket.
            assert!(
                outcome.turns.iter().all(|t| t.agent_text.is_some()),
                "{sid}: relay replies have text"
            );
        }
        if kind == CallerKind::Returning {
            // The loadtest's copy of the seed's numbering agrees with `switchboard seed`.
            assert_eq!(
                outcome.context_status.as_deref(),
                Some("found"),
                "{sid} from {} is a seeded customer",
                outcome.from
            );
        }
        records.push(CallRecord {
            outcome,
            kind,
            chaos: false,
            stored: None,
        });
    }
    let chaos_call = records
        .iter()
        .find(|r| r.outcome.crash_status.is_some())
        .expect("the chaos call");
    assert_eq!(chaos_call.outcome.crash_status, Some(202));
    assert!(
        chaos_call.outcome.restarts.is_some_and(|r| r >= 1),
        "the crashed call's actor was restarted: {:?}",
        chaos_call.outcome.restarts
    );

    // The server timed its own part of those turns; the generator reads it from /api/v1/stats
    // (process-wide: the other tests' servers count in it too).
    let own = server_side(&target).await;
    let turns = own.turn.expect("the server reports its part of the turns");
    assert!(turns.count >= 11, "{turns:?}");
    assert!(turns.p50 > 0.0 && turns.p50 <= turns.p99, "{turns:?}");
    assert!(own.first_audio_p99_ms.is_some_and(|ms| ms > 0.0));

    let persistence = check_persistence(&target, &mut records).await;
    assert_eq!(persistence.calls_checked, 6);
    assert_eq!(
        (persistence.calls_not_stored, persistence.turns_missing),
        (0, 0),
        "every call stored with every caller turn: {:?}",
        persistence.examples
    );
    assert_eq!(persistence.turns_checked, 11);
}
