use super::*;

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/fixtures/audio/",
            $name
        ))
        .as_slice()
    };
}

/// CPython `audioop.lin2ulaw` on these inputs gives `ff ad 8e 0e 80 00 7e` (PROTOCOLS.md §6).
const CPYTHON_INPUT: [i16; 7] = [0, 0x1234, 0x4567, -0x4567, 0x7fff, -0x8000, -1];
const CPYTHON_OUTPUT: [u8; 7] = [0xff, 0xad, 0x8e, 0x0e, 0x80, 0x00, 0x7e];

#[test]
fn encoder_is_g191_and_differs_from_cpython_only_at_minus_one() {
    let mut out = Vec::new();
    encode_mulaw(&CPYTHON_INPUT, &mut out);
    assert_eq!(out[..6], CPYTHON_OUTPUT[..6]);
    // The chosen convention: G.191 maps -1 to 0x7F (negative zero); CPython gives 0x7E.
    assert_eq!(out[6], 0x7f);
    assert_ne!(out[6], CPYTHON_OUTPUT[6]);
    assert_eq!(encode_sample(0), MULAW_SILENCE);
}

#[test]
fn the_encode_table_is_the_reference_encoder_for_every_sample() {
    for s in i16::MIN..=i16::MAX {
        assert_eq!(
            encode_sample(s),
            audio_codec_algorithms::encode_ulaw(s),
            "sample {s}"
        );
    }
}

#[test]
fn decode_table_matches_g711() {
    assert_eq!(decode_sample(0x00), -32124);
    assert_eq!(decode_sample(0x7f), 0);
    assert_eq!(decode_sample(0x80), 32124);
    assert_eq!(decode_sample(0xff), 0);
    for b in 0..=255u8 {
        assert_eq!(
            MULAW_DECODE[usize::from(b)],
            audio_codec_algorithms::decode_ulaw(b),
            "{b:#04x}"
        );
    }
}

#[test]
fn every_byte_survives_decode_then_encode() {
    // 0x7F and 0xFF both mean zero; zero encodes to 0xFF.
    for b in 0..=255u8 {
        let back = encode_sample(decode_sample(b));
        let expected = if b == 0x7f { 0xff } else { b };
        assert_eq!(back, expected, "{b:#04x}");
    }
}

#[test]
fn encoding_error_stays_within_one_step() {
    // mu-law's quantisation step doubles per segment: 8 near zero, 1024 at the top.
    for s in i16::MIN..=i16::MAX {
        let err = (i32::from(decode_sample(encode_sample(s))) - i32::from(s)).abs();
        let bound = (i32::from(s).abs() / 16).max(8) + 8;
        let clip = i32::from(s).abs() > 32124;
        assert!(clip || err <= bound, "sample {s}: error {err}");
    }
}

#[test]
fn decode_and_encode_append() {
    let mut pcm = vec![7];
    decode_mulaw(&[0xff, 0x80], &mut pcm);
    assert_eq!(pcm, [7, 0, 32124]);
    let mut mu = vec![1];
    encode_mulaw(&[0, -32124], &mut mu);
    assert_eq!(mu, [1, 0xff, 0x00]);
}

#[test]
fn frame_energy_is_rms() {
    assert_eq!(frame_energy(&[]), 0.0);
    assert_eq!(frame_energy(&[MULAW_SILENCE; 160]), 0.0);
    assert_eq!(frame_energy(&[0x80; 160]), 32124.0);
    // Half full-scale positive, half full-scale negative: RMS is still full scale.
    let mixed: Vec<u8> = [0x80u8, 0x00].repeat(80);
    assert_eq!(frame_energy(&mixed), 32124.0);
    // One loud sample in 160: sqrt(32124² / 160).
    let mut one = [MULAW_SILENCE; 160];
    one[0] = 0x80;
    assert!((frame_energy(&one) - 32124.0 / 160f32.sqrt()).abs() < 0.01);
    let loud = frame_energy(&fixture!("dog.wav")[58..58 + 160 * 50]);
    assert!(loud > frame_energy(&[0xfe; 160]));
}

// === WAV fixtures ===

/// The four fixtures: name, bytes, and the `data` size declared in each header.
fn fixtures() -> [(&'static str, &'static [u8], usize); 4] {
    [
        ("bird.wav", fixture!("bird.wav"), 0xd30a),
        ("cat.wav", fixture!("cat.wav"), 0x0001_0caa),
        ("dog.wav", fixture!("dog.wav"), 0xda69),
        ("elephant.wav", fixture!("elephant.wav"), 0xca92),
    ]
}

#[test]
fn fixtures_parse_with_exact_data_lengths() {
    for (name, bytes, data_len) in fixtures() {
        let wav = parse_wav(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(wav.format, WavFormat::MuLaw, "{name}");
        assert_eq!((wav.sample_rate, wav.channels), (8000, 1), "{name}");
        assert_eq!(wav.data.len(), data_len, "{name}");
        // 18-byte fmt + 12-byte fact put the data at offset 58.
        assert_eq!(wav.data, bytes[58..58 + data_len], "{name}");
        assert_eq!(wav_to_mulaw_8k(bytes).unwrap(), wav.data, "{name}");
    }
}

#[test]
fn dog_has_odd_data_and_a_pad_byte() {
    let bytes = fixture!("dog.wav");
    let wav = parse_wav(bytes).unwrap();
    assert_eq!(wav.data.len(), 55913);
    assert_eq!(wav.data.len() % 2, 1);
    // The file is header + data + one pad byte.
    assert_eq!(bytes.len(), 58 + 55913 + 1);
    assert_eq!(wav.data[..4], [0xfe, 0xfe, 0xfd, 0xfe]);
}

// === hand-made WAVs ===

fn chunk(id: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut c = id.to_vec();
    c.extend((body.len() as u32).to_le_bytes());
    c.extend(body);
    if body.len() % 2 == 1 {
        c.push(0);
    }
    c
}

fn fmt_body(tag: u16, channels: u16, rate: u32, bits: u16) -> Vec<u8> {
    let block_align = channels * bits / 8;
    let mut b = Vec::new();
    b.extend(tag.to_le_bytes());
    b.extend(channels.to_le_bytes());
    b.extend(rate.to_le_bytes());
    b.extend((rate * u32::from(block_align)).to_le_bytes());
    b.extend(block_align.to_le_bytes());
    b.extend(bits.to_le_bytes());
    b
}

fn riff(chunks: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = chunks.concat();
    let mut f = b"RIFF".to_vec();
    f.extend(((body.len() + 4) as u32).to_le_bytes());
    f.extend(b"WAVE");
    f.extend(body);
    f
}

#[test]
fn pcm16_is_encoded_to_mulaw() {
    let samples: [i16; 5] = [0, 0x1234, -0x4567, 0x7fff, -0x8000];
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let file = riff(&[
        chunk(b"fmt ", &fmt_body(1, 1, 8000, 16)),
        chunk(b"LIST", b"INFOISFT\x05\0\0\0test\0"),
        chunk(b"data", &data),
    ]);
    let wav = parse_wav(&file).unwrap();
    assert_eq!(wav.format, WavFormat::Pcm16);
    assert_eq!(wav.data, data);
    assert_eq!(
        wav_to_mulaw_8k(&file).unwrap(),
        [0xff, 0xad, 0x0e, 0x80, 0x00]
    );
}

#[test]
fn unknown_odd_chunks_and_extensible_fmt_are_walked() {
    let mut ext = fmt_body(0xfffe, 1, 8000, 8);
    ext.extend(22u16.to_le_bytes()); // cbSize
    ext.extend(8u16.to_le_bytes()); // valid bits
    ext.extend(4u32.to_le_bytes()); // channel mask
    ext.extend(7u16.to_le_bytes()); // SubFormat GUID starts with the real tag
    ext.extend([0u8; 14]);
    let file = riff(&[
        chunk(b"junk", b"odd"),
        chunk(b"fmt ", &ext),
        chunk(b"data", &[1, 2, 3]),
    ]);
    let wav = parse_wav(&file).unwrap();
    assert_eq!(
        (wav.format, wav.data.as_slice()),
        (WavFormat::MuLaw, &[1u8, 2, 3][..])
    );
}

#[test]
fn missing_final_pad_byte_is_tolerated() {
    let mut file = riff(&[
        chunk(b"fmt ", &fmt_body(7, 1, 8000, 8)),
        chunk(b"data", &[9; 3]),
    ]);
    file.pop();
    let size = (file.len() - 8) as u32;
    file[4..8].copy_from_slice(&size.to_le_bytes());
    assert_eq!(parse_wav(&file).unwrap().data, [9, 9, 9]);
}

#[test]
fn malformed_files_error() {
    let good = fixture!("dog.wav");
    // Truncated anywhere: never a panic, always an error.
    for cut in [0, 3, 11, 12, 20, 40, 57, 58, 1000, good.len() - 2] {
        assert!(parse_wav(&good[..cut]).is_err(), "cut at {cut}");
    }
    assert_eq!(parse_wav(b"RIFX\0\0\0\0WAVE"), Err(WavError::NotWave));
    assert!(matches!(
        parse_wav(&good[..1000]),
        Err(WavError::Truncated { .. })
    ));

    // A chunk whose size runs past the end of the RIFF body.
    let mut past = riff(&[
        chunk(b"fmt ", &fmt_body(7, 1, 8000, 8)),
        chunk(b"data", &[0; 4]),
    ]);
    let n = past.len();
    past[n - 8..n - 4].copy_from_slice(&1000u32.to_le_bytes());
    assert!(
        matches!(parse_wav(&past), Err(WavError::ChunkPastEnd { ref id, size: 1000, available: 4 }) if id == "data")
    );
    let mut huge = past.clone();
    huge[n - 8..n - 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        parse_wav(&huge),
        Err(WavError::ChunkPastEnd { .. })
    ));

    let no_data = riff(&[
        chunk(b"fmt ", &fmt_body(7, 1, 8000, 8)),
        chunk(b"fact", &[0; 4]),
    ]);
    assert_eq!(parse_wav(&no_data), Err(WavError::MissingData));
    let no_fmt = riff(&[chunk(b"data", &[0; 4])]);
    assert_eq!(parse_wav(&no_fmt), Err(WavError::MissingFmt));
    let short_fmt = riff(&[chunk(b"fmt ", &[7, 0, 1, 0]), chunk(b"data", &[0; 4])]);
    assert!(matches!(parse_wav(&short_fmt), Err(WavError::BadFmt(_))));
    let alaw = riff(&[
        chunk(b"fmt ", &fmt_body(6, 1, 8000, 8)),
        chunk(b"data", &[0; 4]),
    ]);
    assert_eq!(
        parse_wav(&alaw),
        Err(WavError::UnsupportedFormat { tag: 6, bits: 8 })
    );
    let pcm8 = riff(&[
        chunk(b"fmt ", &fmt_body(1, 1, 8000, 8)),
        chunk(b"data", &[0; 4]),
    ]);
    assert!(matches!(
        parse_wav(&pcm8),
        Err(WavError::UnsupportedFormat { tag: 1, bits: 8 })
    ));
    let zero_channels = riff(&[
        chunk(b"fmt ", &fmt_body(7, 0, 8000, 8)),
        chunk(b"data", &[0; 4]),
    ]);
    assert!(matches!(
        parse_wav(&zero_channels),
        Err(WavError::BadFmt(_))
    ));
}

#[test]
fn conversion_rejects_other_rates_and_channels() {
    let rate = riff(&[
        chunk(b"fmt ", &fmt_body(1, 1, 16000, 16)),
        chunk(b"data", &[0; 4]),
    ]);
    assert_eq!(
        wav_to_mulaw_8k(&rate),
        Err(WavError::UnsupportedRate(16000))
    );
    let stereo = riff(&[
        chunk(b"fmt ", &fmt_body(7, 2, 8000, 8)),
        chunk(b"data", &[0; 4]),
    ]);
    assert_eq!(
        wav_to_mulaw_8k(&stereo),
        Err(WavError::UnsupportedChannels(2))
    );
    assert!(
        wav_to_mulaw_8k(&stereo)
            .unwrap_err()
            .to_string()
            .contains("mono")
    );
}
