//! A small voice-activity detector on inbound mu-law frames: speech starts after a few loud
//! frames in a row and ends after a run of quiet ones. It lets the edge report "caller started
//! speaking" (barge-in) within ~60 ms, before any speech-to-text result.

use switchboard_twilio::audio::frame_energy;

/// RMS (of 32768) above which a 20 ms frame counts as voiced (about -36 dBFS).
pub const VOICED_RMS: f32 = 520.0;
/// Voiced frames in a row before speech is declared (60 ms).
pub const START_FRAMES: u32 = 3;
/// Quiet frames in a row before speech is over (400 ms).
pub const END_FRAMES: u32 = 20;

#[derive(Debug, Default)]
pub struct Vad {
    speaking: bool,
    voiced_run: u32,
    quiet_run: u32,
}

#[derive(Debug, PartialEq, Eq)]
pub enum VadEvent {
    SpeechStarted,
    SpeechEnded,
}

impl Vad {
    pub fn feed(&mut self, mulaw: &[u8]) -> Option<VadEvent> {
        let voiced = frame_energy(mulaw) >= VOICED_RMS;
        if voiced {
            self.voiced_run += 1;
            self.quiet_run = 0;
        } else {
            self.quiet_run += 1;
            self.voiced_run = 0;
        }
        if !self.speaking && self.voiced_run >= START_FRAMES {
            self.speaking = true;
            return Some(VadEvent::SpeechStarted);
        }
        if self.speaking && self.quiet_run >= END_FRAMES {
            self.speaking = false;
            return Some(VadEvent::SpeechEnded);
        }
        None
    }

    pub fn speaking(&self) -> bool {
        self.speaking
    }

    /// Quiet frames in a row up to now.
    pub fn quiet_frames(&self) -> u32 {
        self.quiet_run
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(amplitude: f32) -> Vec<u8> {
        let samples: Vec<i16> = (0..160)
            .map(|i| (amplitude * (i as f32 * 0.3).sin()) as i16)
            .collect();
        let mut out = Vec::new();
        switchboard_twilio::audio::encode_mulaw(&samples, &mut out);
        out
    }

    #[test]
    fn speech_starts_after_three_loud_frames_and_ends_after_silence() {
        let mut vad = Vad::default();
        let silence = vec![0xFFu8; 160];
        let loud = tone(8000.0);
        assert_eq!(vad.feed(&silence), None);
        assert_eq!(vad.feed(&loud), None);
        assert_eq!(vad.feed(&loud), None);
        assert_eq!(vad.feed(&loud), Some(VadEvent::SpeechStarted));
        for _ in 0..END_FRAMES - 1 {
            assert_eq!(vad.feed(&silence), None);
        }
        assert_eq!(vad.feed(&silence), Some(VadEvent::SpeechEnded));
    }

    #[test]
    fn line_noise_is_not_speech() {
        let mut vad = Vad::default();
        let hiss = tone(150.0);
        for _ in 0..100 {
            assert_eq!(vad.feed(&hiss), None);
        }
    }
}
