//! Twilio wire formats.
