//! The Switchboard call runtime.
//!
//! # Layout
//! - [`domain`]: plain values (call sid, caller, customer context, messages).
//! - [`machine`]: the pure per-call state machine — every decision about a call.
//! - [`ports`]: the small traits through which shared actors reach storage and providers.
//! - [`handle`]: a call's durable handle (event journal, snapshot, outbound queue) and the
//!   live-call registry; it outlives any one call actor.
//! - [`call`]: the call actor, a thin shell that feeds the machine and executes its effects.
//! - [`supervisor`]: spawns call actors and restarts failed ones from their snapshot.
//! - [`crm`], [`llm`], [`persistence`], [`names`]: the shared actors.
//! - [`tools`]: the tools offered to the model (CRM lookups, `create_task`, `end_call`).
//! - [`cache`]: the customer-context cache in front of the CRM store (memory tier, shared-tier port).
//! - [`runtime`]: wires the shared actors and the supervisor together.
//! - [`testing`]: in-memory implementations of the ports, for tests and benchmarks.
//!
//! **Architecture Invariant:** this crate does no direct I/O: no sockets, files or databases (it
//! does not depend on sqlx or reqwest). Everything slow is behind a port and answers with a message.

pub mod backoff;
pub mod cache;
pub mod call;
pub mod crm;
pub mod domain;
pub mod handle;
pub mod llm;
pub mod machine;
pub mod names;
pub mod persistence;
pub mod phone;
pub mod ports;
pub mod runtime;
pub mod summary;
pub mod supervisor;
pub mod testing;
pub mod tools;

pub use domain::*;
pub use handle::{CallHandle, GreetingSource, LiveCalls, NoticeKind, Outbound, TransitionNotice};
pub use machine::{CallMachine, CallState, Effect, Event, MachineConfig};
pub use runtime::{Ports, Runtime, RuntimeConfig};
