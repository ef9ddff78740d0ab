//! Stable stand-in for the cargo-fuzz targets: replays every seed in `fuzz/corpus/<target>/`
//! and thousands of deterministic mutations of each through the same checks the fuzz targets
//! run (`fuzz/checks.rs`). A panic anywhere fails the test.
//!
//! Seeds named `ok-*` must be accepted and seeds named `bad-*` rejected by the target's parser
//! (the server-to-Twilio parser for names containing `outbound` or `to_twilio`), so the corpus
//! cannot silently rot into "everything is rejected".

#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::{Path, PathBuf};

use switchboard_twilio::{audio, media, relay};

const MUTATIONS_PER_SEED: usize = 3000;

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir: PathBuf = [env!("CARGO_MANIFEST_DIR"), "fuzz", "corpus", target]
        .iter()
        .collect();
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            (file_name(&path), std::fs::read(&path).unwrap())
        })
        .collect();
    out.sort();
    assert!(out.len() >= 5, "corpus {target} is nearly empty");
    out
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// xorshift64*: deterministic, so a failure reproduces with the same seed index.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Bytes that change the meaning of JSON or of a RIFF header when dropped in anywhere.
const INTERESTING: &[&[u8]] = &[
    b"\"",
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"0",
    b"-1",
    b"1e999",
    b"null",
    b"true",
    b"\\u0000",
    b"\\ud800",
    b"\xff",
    b"\x00",
    b"\xc3",
    b"=",
    b"/",
    b"\"event\":\"media\"",
    b"\"type\":\"setup\"",
    b"data",
    b"fmt ",
    b"\xff\xff\xff\xff",
    b"\x01\x00",
];

fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..=rng.below(3) {
        let len = data.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = rng.next() as u8;
            }
            2 => data.truncate(rng.below(len + 1)),
            3 => {
                let bytes = INTERESTING[rng.below(INTERESTING.len())];
                let at = rng.below(len + 1);
                data.splice(at..at, bytes.iter().copied());
            }
            4 if len > 0 => {
                let from = rng.below(len);
                let to = (from + 1 + rng.below(16)).min(len);
                data.drain(from..to);
            }
            5 if len > 0 => {
                let from = rng.below(len);
                let to = (from + 1 + rng.below(64)).min(len);
                let copy = data[from..to].to_vec();
                let at = rng.below(len + 1);
                data.splice(at..at, copy);
            }
            6 => {
                // Splice the tail of another seed in: mixes structure between frames.
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            _ if len >= 4 => {
                // Overwrite a little-endian u32 (RIFF sizes, counters' digits).
                let i = rng.below(len - 3);
                data[i..i + 4].copy_from_slice(&(rng.next() as u32).to_le_bytes());
            }
            _ => data.push(rng.next() as u8),
        }
    }
    data
}

fn run(target: &str, check: fn(&[u8]), accepts: fn(&str, &[u8]) -> bool) {
    let seeds = seeds(target);
    for (name, seed) in &seeds {
        check(seed);
        if name.starts_with("ok-") {
            assert!(accepts(name, seed), "{target}/{name} should be accepted");
        } else if name.starts_with("bad-") {
            assert!(!accepts(name, seed), "{target}/{name} should be rejected");
        }
    }
    let mut accepted = 0usize;
    for (index, (name, seed)) in seeds.iter().enumerate() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (index as u64 + 1));
        for round in 0..MUTATIONS_PER_SEED {
            let other = &seeds[rng.below(seeds.len())].1;
            let input = mutate(&mut rng, seed, other);
            let outcome = std::panic::catch_unwind(|| check(&input));
            if outcome.is_err() {
                panic!(
                    "{target}/{name} mutation {round} panicked on {:?}",
                    String::from_utf8_lossy(&input)
                );
            }
            accepted += usize::from(accepts(name, &input));
        }
    }
    // Mutations must still reach the accepting paths, or the round trips were never exercised.
    assert!(accepted > 0, "no mutation of {target} was accepted");
}

fn is_outbound(seed_name: &str) -> bool {
    seed_name.contains("outbound") || seed_name.contains("to_twilio")
}

fn text(data: &[u8]) -> &str {
    std::str::from_utf8(data).unwrap_or("")
}

#[test]
fn media_inbound_corpus() {
    run("media_inbound", checks::media_inbound, |name, d| {
        if is_outbound(name) {
            media::parse_outbound(text(d)).is_ok()
        } else {
            media::parse_inbound(text(d)).is_ok()
        }
    });
}

#[test]
fn relay_inbound_corpus() {
    run("relay_inbound", checks::relay_inbound, |name, d| {
        if is_outbound(name) {
            relay::parse_relay_outbound(text(d)).is_ok()
        } else {
            relay::parse_relay_inbound(text(d)).is_ok()
        }
    });
}

#[test]
fn wav_corpus() {
    run("wav", checks::wav, |_, d| audio::parse_wav(d).is_ok());
}
