//! Storing captured names through the Names actor: a store that fails for a while (database
//! down or too busy) loses no name, the newest name for a phone is the one that lands, and a
//! store that refuses a name is not asked again.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ractor::{Actor, ActorRef};
use switchboard_actors::LiveCalls;
use switchboard_actors::names::{NameStats, NamesActor, NamesArgs, NamesMsg};
use switchboard_actors::ports::PortError;
use switchboard_actors::testing::MemoryNames;

const PHONE: &str = "+5511999990002";

async fn names_actor(store: Arc<MemoryNames>) -> (ActorRef<NamesMsg>, Arc<NameStats>) {
    let stats = Arc::new(NameStats::default());
    let (actor, _) = Actor::spawn(
        None,
        NamesActor,
        NamesArgs {
            store,
            calls: LiveCalls::new(),
            llm: None,
            llm_deadline: Duration::from_secs(1),
            caches: None,
            stats: stats.clone(),
            store_retry_base: Duration::from_millis(10),
        },
    )
    .await
    .expect("names actor");
    (actor, stats)
}

fn store(actor: &ActorRef<NamesMsg>, name: &str) {
    actor
        .cast(NamesMsg::Store {
            phone: PHONE.into(),
            name: name.into(),
        })
        .expect("cast");
}

async fn until(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

fn count(n: &std::sync::atomic::AtomicU64) -> u64 {
    n.load(Ordering::Relaxed)
}

#[tokio::test]
async fn a_name_is_stored_once_the_database_answers_again() {
    let names = Arc::new(MemoryNames::failing([
        PortError::timeout("store name: no database connection available in time"),
        PortError::unavailable("database down"),
        PortError::unavailable("database down"),
    ]));
    let (actor, stats) = names_actor(names.clone()).await;
    store(&actor, "Ana Souza");
    until("the name is stored", || count(&stats.stored) == 1).await;
    assert_eq!(names.stored(), vec![(PHONE.into(), "Ana Souza".into())]);
    assert_eq!(names.attempts().len(), 4, "three failures, then the write");
    assert_eq!(count(&stats.store_retries), 3);
    assert_eq!(count(&stats.store_dropped), 0);
    assert_eq!(count(&stats.store_pending), 0);
}

#[tokio::test]
async fn the_newest_name_for_a_phone_is_the_one_that_lands() {
    let names = Arc::new(MemoryNames::failing([
        PortError::unavailable("database down"),
        PortError::unavailable("database down"),
    ]));
    let (actor, stats) = names_actor(names.clone()).await;
    store(&actor, "Bob");
    store(&actor, "Robert Lang");
    until("a name is stored", || count(&stats.stored) == 1).await;
    assert_eq!(
        names.stored(),
        vec![(PHONE.into(), "Robert Lang".into())],
        "the older name never overwrites the newer one: {:?}",
        names.attempts()
    );
    assert_eq!(count(&stats.store_pending), 0);
}

#[tokio::test]
async fn a_name_the_store_refuses_is_not_retried() {
    let names = Arc::new(MemoryNames::failing([PortError::rejected(
        "value too long",
    )]));
    let (actor, stats) = names_actor(names.clone()).await;
    store(&actor, "Ana Souza");
    until("the name is dropped", || count(&stats.store_dropped) == 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        names.attempts().len(),
        1,
        "asked once: {:?}",
        names.attempts()
    );
    assert!(names.stored().is_empty());
    assert_eq!(count(&stats.store_pending), 0);
    // The next name for the phone is written as usual.
    store(&actor, "Ana Lima");
    until("the next name is stored", || count(&stats.stored) == 1).await;
    assert_eq!(names.stored(), vec![(PHONE.into(), "Ana Lima".into())]);
}
