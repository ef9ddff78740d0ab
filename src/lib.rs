//! Switchboard: answers Twilio phone calls for AI voice agents.
//!
//! Layout
//! - [`config`]: layered configuration (defaults < file < environment) and validation.
//! - [`storage`]: SQLite/PostgreSQL pool, embedded migrations, readiness.
//! - [`http`]: the listener, router, shared state, health routes, graceful shutdown.
//! - [`seed`]: deterministic demo CRM data.
//! - [`telemetry`]: the tracing subscriber.
//! - [`cli`]: the `switchboard` command line (the binary is a one-line `main`).

pub mod cli;
pub mod config;
pub mod http;
pub mod seed;
pub mod storage;
pub mod telemetry;
