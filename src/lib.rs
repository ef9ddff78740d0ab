//! Switchboard server crate.
