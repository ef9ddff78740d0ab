//! The Names actor and the rule-based name extractor. Extraction is pure and fast, so it runs in
//! the actor; storing a name runs as a task through the `NameStore` port.
//!
//! Rules, in order: a self-introduction phrase in English, Portuguese, Spanish, French or German
//! followed by one to three name-like words; or, since the caller was just asked for their name, a
//! bare answer of one to three name-like words. Precision matters more than recall: "I'm calling
//! about my order" and "this is urgent" are not names, and anything unsure is "no name".
//!
//! A name is accepted only if every word is made of letters (any script), with inner apostrophes,
//! hyphens or a trailing period (initials); no digits, markup or emoji; at most 3 words and
//! [`MAX_NAME_CHARS`] characters. Words are capitalised for speech ("bob stone" → "Bob Stone").

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::domain::*;
use crate::handle::LiveCalls;
use crate::machine::Event;
use crate::ports::NameStore;

pub const MAX_NAME_CHARS: usize = 60;
const MAX_NAME_WORDS: usize = 3;

pub enum NamesMsg {
    Extract {
        call_sid: CallSid,
        attempt: u32,
        utterance: String,
    },
    Store {
        phone: String,
        name: String,
    },
}

#[derive(Clone)]
pub struct NamesArgs {
    pub store: Arc<dyn NameStore>,
    pub calls: LiveCalls,
}

pub struct NamesActor;

impl Actor for NamesActor {
    type Msg = NamesMsg;
    type State = NamesArgs;
    type Arguments = NamesArgs;

    async fn pre_start(
        &self,
        _me: ActorRef<NamesMsg>,
        args: NamesArgs,
    ) -> Result<NamesArgs, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _me: ActorRef<NamesMsg>,
        msg: NamesMsg,
        st: &mut NamesArgs,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            NamesMsg::Extract {
                call_sid,
                attempt,
                utterance,
            } => {
                let event = match extract_name(&utterance) {
                    Some(name) => Event::NameCaptured { attempt, name },
                    None => Event::NameNotFound { attempt },
                };
                st.calls.deliver(&call_sid, event);
            }
            NamesMsg::Store { phone, name } => {
                let store = st.store.clone();
                tokio::spawn(async move {
                    if let Err(e) = store.store_name(&phone, &name).await {
                        tracing::warn!(phone = %mask_phone(&phone), error = %e, "captured name not stored");
                    }
                });
            }
        }
        Ok(())
    }
}

/// Phrases that introduce a name, lower-case, longest first within a language.
const INTRODUCERS: &[&str] = &[
    // English
    "my name is",
    "my name's",
    "the name is",
    "the name's",
    "you can call me",
    "call me",
    "this is",
    "i am",
    "i'm",
    "im",
    "it is",
    "it's",
    "its",
    "name is",
    // Portuguese
    "meu nome é",
    "meu nome e",
    "o meu nome é",
    "me chamo",
    "eu me chamo",
    "pode me chamar de",
    "aqui é",
    "eu sou o",
    "eu sou a",
    "eu sou",
    "sou o",
    "sou a",
    // Spanish
    "mi nombre es",
    "me llamo",
    "yo me llamo",
    "habla",
    "aquí habla",
    "soy",
    // French
    "je m'appelle",
    "je m’appelle",
    "mon nom est",
    "moi c'est",
    "c'est",
    "je suis",
    // German
    "ich heiße",
    "ich heisse",
    "mein name ist",
    "hier ist",
    "ich bin",
];

/// Words that cannot start or be part of a name in an introduction ("I'm calling", "this is
/// urgent", "soy cliente").
const NOT_NAMES: &[&str] = &[
    "a",
    "an",
    "the",
    "calling",
    "call",
    "looking",
    "interested",
    "here",
    "there",
    "fine",
    "good",
    "great",
    "ok",
    "okay",
    "not",
    "sorry",
    "just",
    "urgent",
    "trying",
    "having",
    "going",
    "very",
    "so",
    "really",
    "from",
    "with",
    "about",
    "in",
    "on",
    "at",
    "your",
    "my",
    "sure",
    "busy",
    "happy",
    "glad",
    "ready",
    "back",
    "again",
    "still",
    "also",
    "the",
    "customer",
    "client",
    "cliente",
    "calling",
    "phoning",
    "ringing",
    "wondering",
    "hoping",
    "afraid",
    "confused",
    "angry",
    "upset",
    "new",
    "old",
    "one",
    "two",
    "yes",
    "no",
    "hello",
    "hi",
    "hey",
    "thanks",
    "thank",
    "please",
    "well",
    "um",
    "uh",
    "er",
    "like",
    "because",
    "regarding",
    "concerning",
    "important",
    "me",
    "you",
    "we",
    "they",
    "it",
    "is",
    "was",
    "what",
    "who",
    "why",
    "how",
    "when",
    "where",
    "need",
    "want",
    "would",
    "could",
    "can",
    "to",
    "for",
    "of",
    "and",
    "or",
    "but",
    "that",
    "this",
    "those",
    "these",
    "problem",
    "issue",
    "order",
    "bill",
    "billing",
    "account",
    "help",
    "support",
    "speaking",
    "talking",
    "um",
    "muito",
    "com",
    "para",
    "sobre",
    "de",
    "do",
    "da",
    "um",
    "uma",
    "ligando",
    "cliente",
    "bem",
    "aqui",
    "sim",
    "não",
    "nao",
    "obrigado",
    "obrigada",
    "estou",
    "llamando",
    "sobre",
    "para",
    "bien",
    "aquí",
    "sí",
    "gracias",
    "muy",
    "con",
    "por",
    "un",
    "una",
    "el",
    "la",
    "en",
    "appelle",
    "pour",
    "avec",
    "bien",
    "oui",
    "non",
    "merci",
    "très",
    "un",
    "une",
    "le",
    "les",
    "en",
    "au",
    "client",
    "cliente",
    "kunde",
    "hier",
    "wegen",
    "für",
    "mit",
    "gut",
    "ja",
    "nein",
    "danke",
    "sehr",
    "ein",
    "eine",
    "der",
    "die",
    "das",
    "am",
    "im",
    "anrufen",
    "name",
    "nome",
    "nombre",
    "nom",
    "called",
    "named",
    "mr",
    "mrs",
    "ms",
    "dr",
    "sir",
    "madam",
    "senhor",
    "senhora",
    "señor",
    "señora",
    "monsieur",
    "madame",
    "herr",
    "frau",
    "guess",
    "think",
    "believe",
    "afraid",
    "actually",
    "basically",
    "interested",
];

/// Titles that may precede a name and are dropped.
const TITLES: &[&str] = &[
    "mr", "mr.", "mrs", "mrs.", "ms", "ms.", "dr", "dr.", "miss", "senhor", "senhora", "señor",
    "señora", "sr", "sr.", "sra", "sra.", "monsieur", "madame", "herr", "frau",
];

/// Words that end a name in an introduction ("I'm Bob and I need...").
const NAME_ENDERS: &[&str] = &[
    "and", "e", "y", "et", "und", "but", "mas", "pero", "mais", "aber", "from", "de", "da", "do",
    "von", "calling", "here", "speaking", "please", "thanks",
];

/// Extract a caller's name from their answer to "may I have your name?", or `None` when unsure.
pub fn extract_name(utterance: &str) -> Option<String> {
    let text = utterance.trim();
    if text.is_empty() || text.chars().count() > 200 {
        return None;
    }
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower.split_whitespace().collect();
    let original: Vec<&str> = text.split_whitespace().collect();
    if words.len() != original.len() {
        return None;
    }
    // Greetings and fillers before the introduction ("hi, my name is...") are skipped.
    for start in 0..words.len().min(4) {
        for intro in INTRODUCERS {
            let intro_words: Vec<&str> = intro.split_whitespace().collect();
            let end = start + intro_words.len();
            if end > words.len() {
                continue;
            }
            let matches = words[start..end]
                .iter()
                .zip(&intro_words)
                .all(|(w, i)| trim_punct(w) == *i);
            if matches && words[..start].iter().all(|w| is_filler(trim_punct(w))) {
                return take_name(&original[end..], true);
            }
        }
    }
    // A bare answer: the whole utterance is the name ("Maria Silva." / "it's bob").
    if words.len() <= MAX_NAME_WORDS && words.iter().all(|w| !is_filler(trim_punct(w))) {
        return take_name(&original, false);
    }
    None
}

fn is_filler(w: &str) -> bool {
    matches!(
        w,
        "hi" | "hello"
            | "hey"
            | "oh"
            | "yes"
            | "yeah"
            | "sure"
            | "well"
            | "um"
            | "uh"
            | "olá"
            | "ola"
            | "oi"
            | "hola"
            | "bonjour"
            | "salut"
            | "hallo"
            | "sim"
            | "sí"
            | "si"
            | "oui"
            | "ja"
            | "ok"
            | "okay"
            | "so"
    )
}

fn trim_punct(w: &str) -> &str {
    w.trim_matches(|c: char| matches!(c, ',' | '.' | '!' | '?' | ';' | ':' | '"' | '“' | '”'))
}

fn take_name(rest: &[&str], introduced: bool) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for (i, raw) in rest.iter().enumerate() {
        let ends_sentence = raw.ends_with(['.', ',', '!', '?', ';']) && !is_initial(raw);
        let w = trim_punct(raw);
        let lw = w.to_lowercase();
        if i == 0 && TITLES.contains(&lw.as_str()) {
            continue;
        }
        if NAME_ENDERS.contains(&lw.as_str()) && !parts.is_empty() {
            break;
        }
        if NOT_NAMES.contains(&lw.as_str()) || !is_name_word(w) {
            if parts.is_empty() {
                return None;
            }
            // A bare answer must be all name; an introduction may go on after the name.
            if !introduced {
                return None;
            }
            break;
        }
        parts.push(capitalize(w));
        if parts.len() > MAX_NAME_WORDS {
            return None;
        }
        if ends_sentence {
            break;
        }
    }
    if parts.is_empty() {
        return None;
    }
    let name = parts.join(" ");
    if name.chars().count() > MAX_NAME_CHARS {
        return None;
    }
    Some(name)
}

fn is_initial(w: &str) -> bool {
    let letters: Vec<char> = w.chars().filter(|c| c.is_alphabetic()).collect();
    letters.len() == 1 && w.ends_with('.')
}

fn is_name_word(w: &str) -> bool {
    let w = w.strip_suffix('.').unwrap_or(w);
    let mut chars = w.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    if !first.is_alphabetic() {
        return false;
    }
    let last = w.chars().last().unwrap_or(first);
    last.is_alphabetic()
        && w.chars()
            .all(|c| c.is_alphabetic() || c == '\'' || c == '-' || c == '’')
}

/// Title-case a word that came all lower- or all upper-case (speech-to-text output); keep a
/// word's own mixed casing ("McDonald", "O'Brien") as it is.
fn capitalize(w: &str) -> String {
    let has_lower = w.chars().any(char::is_lowercase);
    let has_upper = w.chars().any(char::is_uppercase);
    if has_lower && has_upper {
        return w.to_owned();
    }
    let mut out = String::with_capacity(w.len());
    let mut start_of_part = true;
    for c in w.chars() {
        if start_of_part {
            out.extend(c.to_uppercase());
        } else {
            out.extend(c.to_lowercase());
        }
        start_of_part = matches!(c, '-' | '\'' | '’');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::extract_name;

    #[test]
    fn introductions_in_five_languages() {
        for (utterance, name) in [
            ("my name is Bob Stone", "Bob Stone"),
            ("Hi, I'm Alice.", "Alice"),
            ("this is maria silva calling about my bill", "Maria Silva"),
            ("call me Jo", "Jo"),
            ("it's Dave", "Dave"),
            ("meu nome é João Pereira", "João Pereira"),
            ("me llamo Lucía", "Lucía"),
            ("je m'appelle Camille Martin", "Camille Martin"),
            ("ich heiße Jürgen", "Jürgen"),
            ("Maria Silva.", "Maria Silva"),
            ("O'Brien", "O'Brien"),
        ] {
            assert_eq!(
                extract_name(utterance).as_deref(),
                Some(name),
                "{utterance}"
            );
        }
    }

    #[test]
    fn things_that_are_not_names() {
        for utterance in [
            "I'm calling about my order",
            "this is urgent",
            "I need help with my bill",
            "yes",
            "my number is 555 1234",
            "<script>alert(1)</script>",
            "Robert'); DROP TABLE customers;--",
            "😀😀",
            "I'm not sure",
            "soy cliente",
        ] {
            assert_eq!(extract_name(utterance), None, "{utterance}");
        }
        assert_eq!(extract_name(&"a".repeat(500)), None);
    }
}
