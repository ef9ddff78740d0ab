//! Scripted caller speech: text carried inside loud mu-law audio, so a simulated caller can "say"
//! a sentence that the speech-to-text stand-in hears back exactly.
//!
//! The load generator and the end-to-end tests send this audio through the real path (Twilio
//! Media Streams frames → the server → the STT WebSocket), so nothing in between knows it is not
//! speech: every byte is a loud sample (segments 6 and 7 of G.711, about ±16,000 to ±32,000), so
//! energy-based voice-activity detection sees speech for the whole utterance.
//!
//! Layout of one message: an 8-byte sync word, the text length (16 bits), the UTF-8 bytes, and a
//! one-byte checksum; every data byte is sent as two nibble symbols. The message is repeated until
//! the audio lasts as long as the utterance would take to say, so a decoder that missed the start
//! finds a whole copy later. Sync bytes (`0x10`/`0x90`) never occur among the data symbols
//! (`0x00..=0x0F` and `0x80..=0x8F`), so a sync word cannot be faked by data.

/// Bytes per millisecond of 8 kHz mu-law audio.
const BYTES_PER_MS: usize = 8;
const SYNC: [u8; 8] = [0x10, 0x90, 0x10, 0x90, 0x10, 0x90, 0x10, 0x90];
/// Longest text one message carries.
pub const MAX_TEXT_BYTES: usize = 1024;

/// How long a person takes to say `text`: 65 ms per character (about 150 words a minute), at
/// least 400 ms.
pub fn spoken_duration_ms(text: &str) -> u32 {
    (text.chars().count() as u32 * 65).max(400)
}

/// The audio of a caller saying `text` (truncated to [`MAX_TEXT_BYTES`] on a character
/// boundary), lasting [`spoken_duration_ms`] rounded up to whole 20 ms frames.
pub fn encode(text: &str) -> Vec<u8> {
    encode_for(text, spoken_duration_ms(text))
}

/// Like [`encode`], lasting at least `duration_ms` (and always at least one whole message).
pub fn encode_for(text: &str, duration_ms: u32) -> Vec<u8> {
    let mut end = text.len().min(MAX_TEXT_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let bytes = &text.as_bytes()[..end];
    let mut message = Vec::with_capacity(SYNC.len() + 2 * (bytes.len() + 3));
    message.extend_from_slice(&SYNC);
    let len = bytes.len() as u16;
    let mut checksum: u8 = 0;
    let push = |message: &mut Vec<u8>, byte: u8| {
        // Alternate signs so the audio has no DC offset.
        message.push(byte >> 4);
        message.push(0x80 | (byte & 0x0F));
    };
    for b in len.to_be_bytes() {
        push(&mut message, b);
    }
    for &b in bytes {
        checksum = checksum.wrapping_add(b);
        push(&mut message, b);
    }
    push(&mut message, checksum);

    let frame = 160;
    let wanted = (duration_ms as usize * BYTES_PER_MS).max(message.len());
    let total = wanted.div_ceil(frame) * frame;
    let mut audio = Vec::with_capacity(total);
    while audio.len() < total {
        let room = total - audio.len();
        audio.extend_from_slice(&message[..room.min(message.len())]);
    }
    audio
}

/// The text in `audio`, from the first whole, intact message found; `None` when there is none
/// (real speech, silence, or a cut-off utterance shorter than one message).
pub fn decode(audio: &[u8]) -> Option<String> {
    let mut from = 0;
    while let Some(pos) = find_sync(&audio[from..]) {
        let start = from + pos + SYNC.len();
        if let Some(text) = read_message(&audio[start..]) {
            return Some(text);
        }
        from += pos + 1;
    }
    None
}

fn find_sync(audio: &[u8]) -> Option<usize> {
    audio.windows(SYNC.len()).position(|w| w == SYNC)
}

fn read_message(data: &[u8]) -> Option<String> {
    let byte_at = |i: usize| -> Option<u8> {
        let hi = *data.get(2 * i)?;
        let lo = *data.get(2 * i + 1)?;
        if hi > 0x0F || !(0x80..=0x8F).contains(&lo) {
            return None;
        }
        Some((hi << 4) | (lo & 0x0F))
    };
    let len = u16::from_be_bytes([byte_at(0)?, byte_at(1)?]) as usize;
    if len > MAX_TEXT_BYTES {
        return None;
    }
    let mut bytes = Vec::with_capacity(len);
    let mut checksum: u8 = 0;
    for i in 0..len {
        let b = byte_at(2 + i)?;
        checksum = checksum.wrapping_add(b);
        bytes.push(b);
    }
    if byte_at(2 + len)? != checksum {
        return None;
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_text_and_lasts_as_long_as_speech() {
        let text = "My name is Zoë Müller, and I'd like to check my order.";
        let audio = encode(text);
        assert_eq!(decode(&audio).as_deref(), Some(text));
        assert_eq!(audio.len() % 160, 0);
        assert!(audio.len() >= spoken_duration_ms(text) as usize * BYTES_PER_MS);
    }

    #[test]
    fn decodes_from_the_middle_of_an_utterance() {
        let audio = encode("Where is my package?");
        // A decoder that started listening late still finds a whole later copy.
        assert_eq!(
            decode(&audio[37..]).as_deref(),
            Some("Where is my package?")
        );
    }

    #[test]
    fn every_byte_is_loud() {
        let audio = encode("hello");
        let energy = crate::audio::frame_energy(&audio[..160]);
        let silence = crate::audio::frame_energy(&[0xFF; 160]);
        assert!(energy > 10_000.0, "energy {energy}");
        assert!(silence < 10.0);
    }

    #[test]
    fn silence_noise_and_corruption_decode_to_nothing() {
        assert_eq!(decode(&[0xFF; 1600]), None);
        assert_eq!(decode(&[]), None);
        // One copy of "abc": sync (8) + length (4) + text (6) + checksum (2) = 20 bytes.
        let mut one = encode_for("abc", 0)[..20].to_vec();
        assert_eq!(decode(&one).as_deref(), Some("abc"));
        one[19] ^= 0x01; // break the checksum
        assert_eq!(decode(&one), None);
        assert_eq!(
            decode(&encode("abc")[..19]),
            None,
            "a cut-off copy is not a message"
        );
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        let text = "é".repeat(MAX_TEXT_BYTES); // 2 bytes per char
        let decoded = decode(&encode_for(&text, 0)).unwrap();
        assert_eq!(decoded.len(), MAX_TEXT_BYTES);
        assert!(text.starts_with(&decoded));
    }
}
