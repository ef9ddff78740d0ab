//! `switchboard demo`: everything on the embedded defaults in one command — SQLite, seeded CRM
//! data, the local provider stand-ins (chat, speech-to-text, text-to-speech), the server, and a
//! handful of simulated Twilio calls placed over the real protocols by the load generator's
//! library: a returning customer, a new caller who gives their name, a caller who talks over the
//! agent, and a call whose actor is crashed and restarted mid-call. Each call's walk through the
//! states is printed as it happens (from the server's own transition stream), with what the
//! simulated caller and the agent said. Then the server and dashboard stay up until Ctrl-C.
//!
//! Owns nothing but the orchestration: the server, the seed and the simulated calls are the same
//! code paths `serve`, `seed` and `switchboard-loadtest` run.

use std::io::Write as _;
use std::time::Duration;

use switchboard_actors::{NoticeKind, TransitionNotice};
use switchboard_loadtest::{CallPlan, CallProgress, Target, Transport, simulate_call};

use crate::config::Config;
use crate::http::{ServeError, Server};
use crate::seed::{SeedOptions, demo_phone};

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("the database did not become ready: {0}")]
    Database(String),
    #[error(transparent)]
    Seed(#[from] crate::seed::SeedError),
    #[error("{failed} of {total} demo calls failed (see above)")]
    Calls { failed: usize, total: usize },
}

/// Customers seeded into an empty database.
const DEMO_CUSTOMERS: u64 = 1_000;

/// Runs the demo. With `exit_after_calls` the server stops once the calls are done (tests, CI);
/// otherwise it stays up until `shutdown` resolves.
pub async fn run(
    mut config: Config,
    exit_after_calls: bool,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DemoError> {
    // The crashed-and-restarted call needs the chaos route; the demo is never production.
    config.chaos.enabled = true;
    let server = Server::bind(config).await?;
    let addr = server.local_addr();
    let state = server.state().clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async move {
        tokio::select! {
            _ = shutdown => {}
            _ = stop_rx => {}
        }
    }));
    let base = format!("http://{addr}");
    println!("switchboard demo: server on {base} (SQLite, local provider stand-ins)");

    let mut db = None;
    for _ in 0..300 {
        if let Some(d) = state.database() {
            db = Some(d);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let db = db.ok_or_else(|| DemoError::Database(format!("{:?}", state.database_status())))?;
    let customers: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM customers")
        .fetch_one(db.pool())
        .await
        .map_err(|e| DemoError::Database(e.to_string()))?;
    if customers == 0 {
        println!("seeding {DEMO_CUSTOMERS} demo customers ...");
        crate::seed::seed(
            &db,
            &SeedOptions {
                customers: DEMO_CUSTOMERS,
                seed: 42,
                progress: false,
            },
        )
        .await?;
    }
    let name_of = |phone: String| {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, Option<String>>(
                "SELECT name FROM customers WHERE phone_e164 = $1",
            )
            .bind(phone)
            .fetch_optional(db.pool())
            .await
            .ok()
            .flatten()
            .flatten()
        }
    };
    let returning = demo_phone(0).unwrap_or_default();
    let interrupter = demo_phone(1).unwrap_or_default();
    let crashed = demo_phone(2).unwrap_or_default();
    // A number no seed uses (555-01xx is reserved for fiction), fresh for every run.
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let newcomer = format!("+1415555{:04}", 100 + stamp % 100);
    sqlx::query("DELETE FROM customers WHERE phone_e164 = $1")
        .bind(&newcomer)
        .execute(db.pool())
        .await
        .map_err(|e| DemoError::Database(e.to_string()))?;

    let sid = |n: u32| format!("CA{:024x}{n:08x}", stamp);
    let plans = vec![
        (
            "returning customer",
            name_of(returning.clone()).await,
            CallPlan::new(sid(1), Transport::Media, &returning)
                .say("What tasks are still open on my account?")
                .say("Thanks, that's all. Goodbye."),
        ),
        (
            "new caller",
            None,
            CallPlan::new(sid(2), Transport::Media, &newcomer)
                .say("My name is Jordan Rivera")
                .say("Can someone call me back about pricing?"),
        ),
        (
            "barge-in",
            name_of(interrupter.clone()).await,
            CallPlan::new(sid(3), Transport::Relay, &interrupter)
                .say("Tell me everything about my last call")
                .barge_in("Sorry, actually just my open tasks please"),
        ),
        ("crash and restart", name_of(crashed.clone()).await, {
            let mut plan = CallPlan::new(sid(4), Transport::Media, &crashed)
                .say("Do I have anything pending?")
                .say("Great, thank you.");
            plan.crash_after_turn = Some(0);
            plan
        }),
    ];
    let labels: Vec<(String, &'static str)> = plans
        .iter()
        .map(|(label, _, plan)| (plan.call_sid.clone(), *label))
        .collect();

    // The server's own view: every state transition of the demo calls as it happens.
    let mut transitions = state.runtime().calls.subscribe();
    let printer = tokio::spawn(async move {
        loop {
            match transitions.recv().await {
                Ok(TransitionNotice {
                    call_sid,
                    kind,
                    from,
                    to,
                    event,
                    restarts,
                    ..
                }) => {
                    let label = labels
                        .iter()
                        .find(|(sid, _)| *sid == call_sid.0)
                        .map_or("call", |(_, l)| *l);
                    if kind == NoticeKind::Restart {
                        line(
                            label,
                            &format!(
                                "call actor restarted by its supervisor (restarts: {restarts}); still {}",
                                to.as_str()
                            ),
                        );
                        continue;
                    }
                    let restarted = if restarts > 0 {
                        format!(" (restarts: {restarts})")
                    } else {
                        String::new()
                    };
                    line(
                        label,
                        &format!(
                            "state {} -> {} on {event}{restarted}",
                            from.as_str(),
                            to.as_str()
                        ),
                    );
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });

    let token = state.config().operator.token.expose().to_owned();
    let mut target = Target::new(&base)
        .with_public_url(state.config().server.public_url.clone())
        .with_twilio_auth_token(state.config().twilio.auth_token.expose().to_owned());
    if !token.is_empty() {
        target = target.with_operator_token(token.clone());
    }
    let mut calls = Vec::new();
    for (i, (label, known_as, mut plan)) in plans.into_iter().enumerate() {
        plan.agent_text = true;
        let who = match known_as {
            Some(name) => format!("{} ({name}, in the CRM)", plan.from),
            None => format!("{} (not in the CRM)", plan.from),
        };
        line(
            label,
            &format!("calling from {who} over {}", plan.transport),
        );
        let target = target.clone();
        calls.push(tokio::spawn(async move {
            // Staggered a little so the printed walks are easy to follow.
            tokio::time::sleep(Duration::from_millis(400 * i as u64)).await;
            let outcome = simulate_call(&target, plan, |p| progress(label, &p)).await;
            (label, outcome)
        }));
    }
    let total = calls.len();
    let mut failed = 0;
    for call in calls {
        let Ok((label, outcome)) = call.await else {
            failed += 1;
            continue;
        };
        match &outcome.error {
            None => line(
                label,
                &format!(
                    "done: {} turns answered, first greeting audio after {:.1} ms",
                    outcome.replied_turns(),
                    outcome
                        .first_audio
                        .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
                ),
            ),
            Some(e) => {
                failed += 1;
                line(label, &format!("FAILED: {e}"));
            }
        }
    }
    // Let the last transitions (finalizing -> ended) print.
    tokio::time::sleep(Duration::from_millis(500)).await;
    printer.abort();
    println!();
    let query = if token.is_empty() {
        String::new()
    } else {
        "?token=<operator.token>".to_owned()
    };
    println!("dashboard:  {base}/{query}");
    println!("live calls: {base}/api/v1/calls    events: {base}/api/v1/calls/events");
    println!("metrics:    {base}/metrics");
    let _ = std::io::stdout().flush();
    if exit_after_calls {
        let _ = stop_tx.send(());
    } else {
        println!("the server stays up; Ctrl-C to stop");
    }
    serving
        .await
        .map_err(|e| DemoError::Database(e.to_string()))??;
    if failed > 0 {
        return Err(DemoError::Calls { failed, total });
    }
    Ok(())
}

fn progress(label: &str, p: &CallProgress) {
    line(label, &p.to_string());
}

fn line(label: &str, text: &str) {
    println!("[{label:>18}] {text}");
}
