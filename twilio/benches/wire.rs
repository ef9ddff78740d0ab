//! Per-frame costs on the hot paths: 50 inbound and 50 outbound Media Streams frames per second
//! per call, for thousands of calls. Run: `cargo bench -p switchboard-twilio --bench wire`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use switchboard_twilio::{audio, media, signature};

const SID: &str = "MZ18ad3ab5a668481ce02b83e7395059f0";

fn inbound_media_frame() -> String {
    media::InboundFrame::Media(media::Media {
        sequence_number: 1234,
        stream_sid: SID.into(),
        track: "inbound".into(),
        chunk: 1233,
        timestamp_ms: 24660,
        payload: (0..160u8).collect(),
    })
    .to_json()
}

fn bench(c: &mut Criterion) {
    let text = inbound_media_frame();
    let mut g = c.benchmark_group("media");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_inbound 20ms frame", |b| {
        b.iter(|| media::parse_inbound(black_box(&text)))
    });
    let mulaw = vec![0xffu8; 160];
    let mut buf = String::with_capacity(512);
    g.bench_function("write_media 20ms frame", |b| {
        b.iter(|| {
            buf.clear();
            media::write_media(&mut buf, black_box(SID), black_box(&mulaw));
            buf.len()
        })
    });
    g.bench_function("write_mark", |b| {
        b.iter(|| {
            buf.clear();
            media::write_mark(&mut buf, black_box(SID), black_box("turn-17"));
            buf.len()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("audio");
    let mut pcm = Vec::with_capacity(160);
    g.bench_function("decode_mulaw 160", |b| {
        b.iter(|| {
            pcm.clear();
            audio::decode_mulaw(black_box(&mulaw), &mut pcm);
        })
    });
    let samples: Vec<i16> = (0..160).map(|i| (i * 200 - 16000) as i16).collect();
    let mut out = Vec::with_capacity(160);
    g.bench_function("encode_mulaw 160", |b| {
        b.iter(|| {
            out.clear();
            audio::encode_mulaw(black_box(&samples), &mut out);
        })
    });
    g.bench_function("frame_energy 160", |b| {
        b.iter(|| audio::frame_energy(black_box(&mulaw)))
    });
    g.finish();

    let params: Vec<(String, String)> = (0..20)
        .map(|i| (format!("Field{i}"), format!("value-{i}")))
        .collect();
    c.bench_function("signature validate 20 fields", |b| {
        b.iter(|| {
            signature::validate(
                "12345",
                black_box("https://example.com/twilio/voice"),
                &params,
                black_box("RSOYDt4T1cUTdK1PDd93/VVr8B8="),
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
