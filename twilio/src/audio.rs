//! Audio helpers for the telephone leg (PROTOCOLS.md §6): G.711 mu-law encode/decode, frame
//! energy for voice-activity detection, and WAV parsing for greeting files.
//!
//! # Encoder convention
//! Encoding follows the ITU-T G.191 reference (one's complement for negative input), through the
//! `audio-codec-algorithms` crate, which is tested against G.191's output for every 16-bit input.
//! So `-1` encodes to `0x7F` (which decodes to 0), where Sun/CPython `audioop.lin2ulaw` gives
//! `0x7E` (which decodes to -8); the two differ only on such boundary cases of negative input.
//! Decoding is the same table in both conventions.
//!
//! Never here: resampling or mixing (another module's job), and any file or device I/O.

use audio_codec_algorithms::encode_ulaw;

/// Bytes (= samples) of one 20 ms frame of 8 kHz mu-law.
pub const SAMPLES_PER_FRAME: usize = 160;

/// The mu-law byte for silence (the positive zero; `0x7F` is the negative zero).
pub const MULAW_SILENCE: u8 = 0xFF;

/// G.711 mu-law decode: bits are stored inverted; sign, 3-bit segment, 4-bit step; bias 0x84.
const fn decode_one(byte: u8) -> i16 {
    let u = !byte;
    let segment = (u >> 4) & 0x07;
    let step = (u & 0x0F) as i32;
    let magnitude = (((step << 3) + 0x84) << segment) - 0x84;
    // At most (15 << 3 + 0x84) << 7 - 0x84 = 32124, so the cast cannot truncate.
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

const fn build_decode_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = decode_one(i as u8);
        i += 1;
    }
    table
}

/// Linear 16-bit value of every mu-law byte, built at compile time.
pub static MULAW_DECODE: [i16; 256] = build_decode_table();

/// The square of every mu-law byte's linear value (at most 32124² < 2³²), for [`frame_energy`].
static MULAW_SQUARED: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let s = decode_one(i as u8) as i32;
        table[i] = (s * s) as u32;
        i += 1;
    }
    table
};

/// The linear value of one mu-law byte.
#[inline]
pub fn decode_sample(byte: u8) -> i16 {
    MULAW_DECODE[usize::from(byte)]
}

/// The mu-law byte for one linear sample (G.191 convention, see the module docs).
#[inline]
pub fn encode_sample(sample: i16) -> u8 {
    MULAW_ENCODE[usize::from(sample as u16)]
}

/// The mu-law byte of every 16-bit sample, from `audio-codec-algorithms` (64 KiB, built on first
/// use): every line of agent speech is encoded sample by sample, and a lookup is several times
/// cheaper than the reference algorithm's segment search.
static MULAW_ENCODE: std::sync::LazyLock<Box<[u8; 65536]>> = std::sync::LazyLock::new(|| {
    let mut table = Box::new([0u8; 65536]);
    for (i, byte) in table.iter_mut().enumerate() {
        *byte = encode_ulaw(i as u16 as i16);
    }
    table
});

/// Appends the linear samples of `mulaw` to `out` (reuse `out` across frames).
pub fn decode_mulaw(mulaw: &[u8], out: &mut Vec<i16>) {
    out.extend(mulaw.iter().map(|&b| decode_sample(b)));
}

/// Appends the mu-law encoding of `pcm` to `out` (reuse `out` across frames).
pub fn encode_mulaw(pcm: &[i16], out: &mut Vec<u8>) {
    let table: &[u8; 65536] = &MULAW_ENCODE;
    out.extend(pcm.iter().map(|&s| table[usize::from(s as u16)]));
}

/// Root-mean-square level of a mu-law frame in the linear domain (0.0 ..= 32124.0); 0.0 for an
/// empty frame. Cheap enough to run on every 20 ms frame for a voice-activity detector.
pub fn frame_energy(mulaw: &[u8]) -> f32 {
    if mulaw.is_empty() {
        return 0.0;
    }
    // 32124² × any realistic frame length fits a u64 many times over.
    let sum: u64 = mulaw
        .iter()
        .map(|&b| u64::from(MULAW_SQUARED[usize::from(b)]))
        .sum();
    ((sum as f64 / mulaw.len() as f64).sqrt()) as f32
}

// === WAV ===

/// Sample encodings this crate reads from WAV files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WavFormat {
    /// Format tag 7, 8 bits per sample.
    MuLaw,
    /// Format tag 1, 16-bit little-endian signed.
    Pcm16,
}

/// A parsed WAV file: its format and the raw bytes of its `data` chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wav {
    pub format: WavFormat,
    pub sample_rate: u32,
    pub channels: u16,
    pub data: Vec<u8>,
}

/// Why a WAV file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WavError {
    #[error("not a RIFF/WAVE file")]
    NotWave,
    #[error("RIFF header claims {claimed} bytes but the file has {actual}: truncated")]
    Truncated { claimed: usize, actual: usize },
    #[error("chunk {id:?} claims {size} bytes but only {available} remain")]
    ChunkPastEnd {
        id: String,
        size: u32,
        available: usize,
    },
    #[error("no \"fmt \" chunk")]
    MissingFmt,
    #[error("no \"data\" chunk")]
    MissingData,
    #[error("\"fmt \" chunk is malformed: {0}")]
    BadFmt(&'static str),
    #[error(
        "unsupported WAV encoding: format tag {tag}, {bits} bits per sample (need mu-law 8-bit or PCM 16-bit)"
    )]
    UnsupportedFormat { tag: u16, bits: u16 },
    #[error("sample rate is {0} Hz; only 8000 Hz is accepted (resample the file first)")]
    UnsupportedRate(u32),
    #[error("{0} channels; only mono is accepted (mix the file down first)")]
    UnsupportedChannels(u16),
}

const WAVE_FORMAT_PCM: u16 = 1;
const WAVE_FORMAT_MULAW: u16 = 7;
const WAVE_FORMAT_EXTENSIBLE: u16 = 0xFFFE;

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

struct Fmt {
    format: WavFormat,
    sample_rate: u32,
    channels: u16,
}

fn parse_fmt(body: &[u8]) -> Result<Fmt, WavError> {
    if body.len() < 16 {
        return Err(WavError::BadFmt("shorter than 16 bytes"));
    }
    let short = WavError::BadFmt("shorter than 16 bytes");
    let mut tag = u16_at(body, 0).ok_or(short.clone())?;
    let channels = u16_at(body, 2).ok_or(short.clone())?;
    let sample_rate = u32_at(body, 4).ok_or(short.clone())?;
    let bits = u16_at(body, 14).ok_or(short)?;
    if tag == WAVE_FORMAT_EXTENSIBLE {
        // The real tag is the first two bytes of the SubFormat GUID at offset 24.
        tag =
            u16_at(body, 24).ok_or(WavError::BadFmt("extensible format shorter than 40 bytes"))?;
    }
    if channels == 0 {
        return Err(WavError::BadFmt("zero channels"));
    }
    if sample_rate == 0 {
        return Err(WavError::BadFmt("zero sample rate"));
    }
    let format = match (tag, bits) {
        (WAVE_FORMAT_MULAW, 8) => WavFormat::MuLaw,
        (WAVE_FORMAT_PCM, 16) => WavFormat::Pcm16,
        (tag, bits) => return Err(WavError::UnsupportedFormat { tag, bits }),
    };
    Ok(Fmt {
        format,
        sample_rate,
        channels,
    })
}

/// Parses a WAV file by walking its RIFF chunks: `fmt ` (16, 18 or 40 bytes), `fact`, `LIST`
/// and unknown chunks are handled or skipped by size, and an odd-sized chunk is followed by a
/// pad byte. A missing final pad byte is tolerated (many writers omit it); a chunk claiming more
/// bytes than the file holds is an error.
pub fn parse_wav(bytes: &[u8]) -> Result<Wav, WavError> {
    if bytes.get(0..4) != Some(b"RIFF") || bytes.get(8..12) != Some(b"WAVE") {
        return Err(WavError::NotWave);
    }
    let riff_size = u32_at(bytes, 4).ok_or(WavError::NotWave)?;
    let end = usize::try_from(riff_size)
        .ok()
        .and_then(|s| s.checked_add(8))
        .unwrap_or(usize::MAX);
    if end > bytes.len() {
        return Err(WavError::Truncated {
            claimed: end,
            actual: bytes.len(),
        });
    }
    let mut fmt = None;
    let mut data = None;
    let mut pos = 12usize;
    while let (Some(id), Some(size)) = (bytes.get(pos..pos + 4), u32_at(bytes, pos + 4)) {
        let body_start = pos + 8;
        let available = end.saturating_sub(body_start);
        let body = usize::try_from(size)
            .ok()
            .filter(|&s| s <= available)
            .and_then(|s| bytes.get(body_start..body_start + s))
            .ok_or_else(|| WavError::ChunkPastEnd {
                id: String::from_utf8_lossy(id).into_owned(),
                size,
                available,
            })?;
        match id {
            b"fmt " if fmt.is_none() => fmt = Some(parse_fmt(body)?),
            b"data" if data.is_none() => data = Some(body),
            // `fact`, `LIST`, `cue `, ... carry nothing playback needs.
            _ => {}
        }
        pos = body_start + body.len() + (body.len() & 1);
        if pos + 8 > end {
            break;
        }
    }
    let fmt = fmt.ok_or(WavError::MissingFmt)?;
    let data = data.ok_or(WavError::MissingData)?;
    Ok(Wav {
        format: fmt.format,
        sample_rate: fmt.sample_rate,
        channels: fmt.channels,
        data: data.to_vec(),
    })
}

/// Reads a WAV file as 8 kHz mono mu-law, ready to send to Twilio: mu-law is taken as is,
/// 16-bit PCM is encoded (a trailing half sample is dropped). Other rates and channel counts
/// are rejected, since resampling and mixing are not this crate's job.
pub fn wav_to_mulaw_8k(bytes: &[u8]) -> Result<Vec<u8>, WavError> {
    let wav = parse_wav(bytes)?;
    if wav.sample_rate != 8000 {
        return Err(WavError::UnsupportedRate(wav.sample_rate));
    }
    if wav.channels != 1 {
        return Err(WavError::UnsupportedChannels(wav.channels));
    }
    Ok(match wav.format {
        WavFormat::MuLaw => wav.data,
        WavFormat::Pcm16 => wav
            .data
            .as_chunks::<2>()
            .0
            .iter()
            .map(|&pair| encode_sample(i16::from_le_bytes(pair)))
            .collect(),
    })
}

#[cfg(test)]
mod tests;
