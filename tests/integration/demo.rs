//! `switchboard demo`, the README's first command, run as a newcomer would (the real binary, the
//! embedded defaults, an empty folder), with `--exit-after-calls` so it ends on its own.

use crate::common::*;

#[test]
fn the_demo_places_every_kind_of_call_and_prints_their_walk_through_the_states() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = run_bin(
        &["demo", "--exit-after-calls"],
        // A free port instead of 8080, so a running server or a parallel test does not collide.
        &[("SWITCHBOARD__SERVER__BIND", "127.0.0.1:0")],
        dir.path(),
    );
    assert_eq!(
        run.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    let out = &run.stdout;
    for expected in [
        // The returning customer is greeted by name from the seeded CRM.
        "[returning customer] state greeting -> enriched",
        "[returning customer] agent said: Welcome back,",
        // The new caller gives a name that the agent then uses.
        "[        new caller] state awaiting_name -> conversing on name_captured",
        "[        new caller] agent said: Nice to meet you, Jordan Rivera!",
        // The barge-in talks over the agent.
        "[          barge-in] said (over the agent):",
        // The crashed call is restarted and still finishes.
        "[ crash and restart] crash requested (the call's actor is failing)",
        "(restarts: 1)",
        "[ crash and restart] state finalizing -> ended",
        "dashboard:  http://127.0.0.1:",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    // The demo's database is in the folder it ran in, with the calls stored.
    assert!(dir.path().join("data").join("switchboard.db").exists());
}
