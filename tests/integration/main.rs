//! One integration-test binary (one link step) with a module per area.
//! Both database backends run here: SQLite in temp folders, PostgreSQL in per-test databases.

#[path = "../common/mod.rs"]
mod common;

mod config;
mod conversation;
mod dashboard;
mod demo;
mod history;
mod http;
mod loadtest;
mod operator;
mod persistence;
mod prefetch;
mod seed;
mod storage;
mod twilio;
