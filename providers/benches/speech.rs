//! What one agent line costs the server after the TTS vendor answered: 24 kHz PCM from an
//! OpenAI-compatible `/audio/speech` → 8 kHz mu-law for the phone (resampling + G.711), and the
//! mu-law encode on its own. Run: `cargo bench -p switchboard-providers --bench speech`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use switchboard_providers::speech::pcm24k_to_mulaw8k;
use switchboard_providers::standins::synthetic_pcm;
use switchboard_twilio::audio::encode_mulaw;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("tts");
    // What the TTS stand-in serves in the load tests: 3 s of 24 kHz 16-bit PCM.
    let line = synthetic_pcm(3000);
    g.throughput(Throughput::Elements(1));
    g.bench_function("pcm24k_to_mulaw8k 3 s line", |b| {
        b.iter(|| pcm24k_to_mulaw8k(black_box(&line)))
    });
    let samples: Vec<i16> = (0..24_000)
        .map(|i| ((i * 37) % 65_536 - 32_768) as i16)
        .collect();
    g.throughput(Throughput::Elements(samples.len() as u64));
    g.bench_function("encode_mulaw 3 s at 8 kHz", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(samples.len());
            encode_mulaw(black_box(&samples), &mut out);
            out
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
