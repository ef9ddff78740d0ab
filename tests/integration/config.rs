//! Configuration layering and validation, in-process and through the real binary.

use std::io::Write;

use switchboard::config::{Config, Secret};

use crate::common::{assert_one_line_config_error, run_bin};

fn write_file(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    let mut file = std::fs::File::create(&path).expect("create config file");
    file.write_all(text.as_bytes()).expect("write config file");
    path
}

#[test]
fn file_overrides_defaults_and_env_overrides_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_file(
        &dir,
        "switchboard.toml",
        "[prefetch]\ntimeout_ms = 3000\nparallel = false\n[server]\nbind = \"0.0.0.0:9000\"\n",
    );
    let config = Config::load_from(
        Some(&file),
        [
            ("SWITCHBOARD__PREFETCH__TIMEOUT_MS", "2500"),
            ("SWITCHBOARD__CHAOS__ENABLED", "true"),
            ("SWITCHBOARD__DATABASE__URL", "postgres://u@h:5432/db"),
            ("UNRELATED", "ignored"),
        ],
    )
    .expect("config loads");
    assert_eq!(config.prefetch.timeout_ms, 2500, "env wins over file");
    assert!(!config.prefetch.parallel, "file wins over defaults");
    assert_eq!(config.server.bind.to_string(), "0.0.0.0:9000");
    assert!(config.chaos.enabled, "booleans parse from env");
    assert_eq!(config.database.url, "postgres://u@h:5432/db");
    assert_eq!(
        config.supervisor.max_restarts, 3,
        "untouched keys keep defaults"
    );
}

#[test]
fn range_errors_name_key_value_and_range() {
    let err = Config::load_from(None, [("SWITCHBOARD__PREFETCH__TIMEOUT_MS", "0")])
        .expect_err("0 is out of range")
        .to_string();
    assert!(
        err.starts_with("prefetch.timeout_ms must be between 1 and 60000, got 0"),
        "{err}"
    );
    assert!(err.contains("SWITCHBOARD__PREFETCH__TIMEOUT_MS"), "{err}");
}

/// `key` (set through the environment variable `env`) refuses `not_whole` as not whole 20 ms
/// frames, and `too_long` with an error naming `range`.
fn assert_whole_frames_in_range(
    env: &str,
    key: &str,
    not_whole: &str,
    too_long: &str,
    range: &str,
) {
    let err = Config::load_from(None, [(env, not_whole)])
        .expect_err("not whole 20 ms frames")
        .to_string();
    assert!(
        err.starts_with(&format!("{key} must be a multiple of 20")),
        "{err}"
    );
    let err = Config::load_from(None, [(env, too_long)])
        .expect_err("past the range")
        .to_string();
    assert!(err.contains(range), "{err}");
}

#[test]
fn outbound_media_messages_hold_whole_frames() {
    let config = Config::load_from(None, [("SWITCHBOARD__TWILIO__MEDIA_MESSAGE_MS", "1000")])
        .expect("one second per message is allowed");
    assert_eq!(config.twilio.media_message_ms, 1000);
    // 2 s: past the one second Twilio is known to play.
    assert_whole_frames_in_range(
        "SWITCHBOARD__TWILIO__MEDIA_MESSAGE_MS",
        "twilio.media_message_ms",
        "30",
        "2000",
        "between 20 and 1000",
    );
}

#[test]
fn recognizer_messages_hold_whole_frames_within_deepgrams_advice() {
    let config = Config::load_from(None, Vec::<(String, String)>::new()).expect("defaults load");
    assert_eq!(config.stt.audio_message_ms, 200);
    // 500 ms: past the 250 ms Deepgram recommends.
    assert_whole_frames_in_range(
        "SWITCHBOARD__STT__AUDIO_MESSAGE_MS",
        "stt.audio_message_ms",
        "110",
        "500",
        "between 20 and 250",
    );
}

#[test]
fn enum_and_type_errors_are_precise() {
    let err = Config::load_from(None, [("SWITCHBOARD__LOG__FORMAT", "xml")])
        .expect_err("xml is not a format")
        .to_string();
    assert!(
        err.starts_with(r#"log.format must be one of "text" or "json", got "xml""#),
        "{err}"
    );
    let err = Config::load_from(None, [("SWITCHBOARD__PREFETCH__TIMEOUT_MS", "soon")])
        .expect_err("not a number")
        .to_string();
    assert!(
        err.starts_with(r#"prefetch.timeout_ms must be an integer, got "soon""#),
        "{err}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_file(&dir, "bad.toml", "[chaos]\nenabled = \"yes\"\n");
    let err = Config::load_from(Some(&file), Vec::<(String, String)>::new())
        .expect_err("string for bool")
        .to_string();
    assert!(
        err.starts_with(r#"chaos.enabled must be true or false, got "yes""#),
        "{err}"
    );
}

#[test]
fn unknown_keys_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_file(&dir, "typo.toml", "[prefetch]\ntimout_ms = 10\n");
    let err = Config::load_from(Some(&file), Vec::<(String, String)>::new())
        .expect_err("typo")
        .to_string();
    assert!(
        err.contains("unknown configuration key prefetch.timout_ms"),
        "{err}"
    );
    assert!(err.contains("timeout_ms"), "lists the known keys: {err}");
    let err = Config::load_from(None, [("SWITCHBOARD__DATABSE__URL", "sqlite://x.db")])
        .expect_err("typo in env")
        .to_string();
    assert!(
        err.contains("unknown configuration key databse.url"),
        "{err}"
    );
}

#[test]
fn secrets_never_show_in_debug_or_errors() {
    let config = Config::load_from(
        None,
        [
            ("SWITCHBOARD__TWILIO__AUTH_TOKEN", "tw-secret-123"),
            ("SWITCHBOARD__LLM__API_KEY", "sk-secret-456"),
            ("SWITCHBOARD__OPERATOR__TOKEN", "op-secret-789"),
            (
                "SWITCHBOARD__DATABASE__URL",
                "postgres://app:db-pass-000@h/db",
            ),
        ],
    )
    .expect("config loads");
    let debug = format!("{config:?}");
    for secret in [
        "tw-secret-123",
        "sk-secret-456",
        "op-secret-789",
        "db-pass-000",
    ] {
        assert!(!debug.contains(secret), "{secret} leaked in {debug}");
    }
    assert_eq!(config.twilio.auth_token.expose(), "tw-secret-123");
    assert_eq!(Secret::new("x").to_string(), "***");

    let err = Config::load_from(
        None,
        [("SWITCHBOARD__DATABASE__URL", "mysql://app:db-pass-000@h/db")],
    )
    .expect_err("unsupported scheme")
    .to_string();
    assert!(!err.contains("db-pass-000"), "{err}");
}

#[test]
fn binary_missing_config_file_is_one_line_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = run_bin(
        &["migrate", "--config", "/nonexistent/switchboard.toml"],
        &[],
        dir.path(),
    );
    let line = assert_one_line_config_error(&run);
    assert!(
        line.contains("cannot read config file /nonexistent/switchboard.toml"),
        "{line}"
    );

    let run = run_bin(
        &["serve"],
        &[("SWITCHBOARD_CONFIG", "/nonexistent/other.toml")],
        dir.path(),
    );
    let line = assert_one_line_config_error(&run);
    assert!(line.contains("/nonexistent/other.toml"), "{line}");
}

#[test]
fn binary_unknown_key_malformed_value_and_bad_toml_are_one_line_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let typo = write_file(&dir, "typo.toml", "[server]\nbnd = \"127.0.0.1:1\"\n");
    let run = run_bin(
        &["serve", "--config", &typo.display().to_string()],
        &[],
        dir.path(),
    );
    let line = assert_one_line_config_error(&run);
    assert!(line.contains("server.bnd"), "{line}");

    let run = run_bin(
        &["migrate"],
        &[("SWITCHBOARD__PREFETCH__TIMEOUT_MS", "0")],
        dir.path(),
    );
    let line = assert_one_line_config_error(&run);
    assert!(
        line.contains("prefetch.timeout_ms must be between 1 and 60000, got 0"),
        "{line}"
    );

    let broken = write_file(&dir, "broken.toml", "[server\nbind = 1\n");
    let run = run_bin(
        &["migrate", "--config", &broken.display().to_string()],
        &[],
        dir.path(),
    );
    let line = assert_one_line_config_error(&run);
    assert!(
        line.contains("not valid TOML") && line.contains("line 1"),
        "{line}"
    );
}
