//! Switchboard: answers Twilio phone calls for AI voice agents.
//!
//! Layout
//! - [`config`]: layered configuration (defaults < file < environment) and validation.
//! - [`storage`]: SQLite/PostgreSQL pool, embedded migrations, readiness.
//! - [`http`]: the listener, router, shared state, health routes, graceful shutdown.
//! - [`seed`]: deterministic demo CRM data.
//! - [`telemetry`]: the tracing subscriber.
//! - [`cli`]: the `switchboard` command line (the binary is a one-line `main`).
//! - [`calls`]: assembles the call runtime (actors crate) from the configuration.
//! - [`store`]: the SQL adapters behind the runtime's storage ports.
//! - [`edge`]: the Twilio edge: webhook, signatures, Media Streams and ConversationRelay sockets.
//! - [`operator`]: the operator API over live calls and stored ones.
//! - [`metrics`]: Prometheus metrics at `/metrics`.
//! - [`dashboard`]: the operator dashboard page at `/` (embedded HTML, JS and CSS).
//! - [`demo`]: `switchboard demo` — server, stand-ins, seed and a few simulated calls.
//! - [`redis_cache`]: the shared (Redis) tier of the customer-context cache.
//! - [`journal`]: the append-only file persistence spills to when the database cannot keep up.
//! - [`history`]: past conversations of a customer, and deleting a customer's data.

pub mod calls;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod demo;
pub mod edge;
pub mod history;
pub mod http;
pub mod journal;
pub mod metrics;
pub mod operator;
pub mod redis_cache;
pub mod seed;
pub mod storage;
pub mod store;
pub mod telemetry;
