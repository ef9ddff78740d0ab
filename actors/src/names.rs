//! The Names actor and the rule-based name extractor. Extraction is pure and fast, so it runs in
//! the actor; storing a name runs as a task through the `NameStore` port.
//!
//! Rules, in order (details and the reason for each next to the code):
//! - The reply is looked at only if it has at most 200 characters and none of the characters
//!   speech never produces (angle, square and curly brackets, `=`, `;`, backslash, `|`,
//!   backtick, `$`, `%`, `#`, `*`, `^`, `&`, `@`, `_`): markup, SQL, emails or typed
//!   garbage yields no name at all.
//! - A self-introduction in English, Portuguese, Spanish, French, German, Italian or romanised
//!   Japanese, followed by the name. *Strong* phrases ("my name is", "me llamo", "je
//!   m'appelle", "ich heiße") count anywhere in the reply. *Weak* ones ("I'm", "this is",
//!   "it's", "soy", "je suis", "ich bin") count only at its start, after greetings and fillers,
//!   and only if the name is not an everyday word ("I'm fine", "this is urgent", "soy
//!   cliente"), is capitalised when the transcript capitalises, and is followed by nothing or a
//!   clean continuation ("and", "calling", "here").
//! - Otherwise, since the caller was just asked for their name, a bare answer of one to three
//!   name-like words ("Maria Silva.", "Tom here", "Tanaka desu").
//! - A single word that is both a first name and an everyday word ("Bill", "Hope") is a name only
//!   after a strong phrase; alone or after a weak one it is "unsure" (see [`NameGuess`]).
//!
//! Precision matters more than recall: "I'm calling about my order" and "this is urgent" are not
//! names, and anything unsure is "no name".
//!
//! A name is accepted only if every word is made of letters (any script), with inner apostrophes
//! or hyphens, or is an initial ("F."); no digits, markup or emoji. A name ends at the first word
//! that is not one (so "my name is John 😀" gives "John"). It has one to three name words, plus
//! lower-case particles between them ("João da Silva", "María de la Cruz"), and at most
//! [`MAX_NAME_CHARS`] characters, else there is no name (a 500-character "name" is rejected, not
//! cut). Titles are dropped ("Dr. Smith" → "Smith"). Words are capitalised for speech ("bob
//! stone" → "Bob Stone"); mixed-case words keep their casing ("McDonald"); curly apostrophes
//! become straight ones.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::backoff;
use crate::cache::ContextCaches;
use crate::domain::*;
use crate::handle::LiveCalls;
use crate::machine::Event;
use crate::ports::{LlmClient, NameStore, PortError, PortErrorKind};

pub const MAX_NAME_CHARS: usize = 60;
const MAX_NAME_WORDS: usize = 3;

pub enum NamesMsg {
    Extract {
        call_sid: CallSid,
        attempt: u32,
        utterance: String,
    },
    /// Store a captured name for a phone. A write that fails for a reason that may pass (the
    /// database down or too busy) is retried with backoff until it lands; if another name for
    /// the same phone comes meanwhile, the newest is the one written.
    Store { phone: String, name: String },
    /// A store attempt finished (sent by the task that ran it).
    Stored {
        phone: String,
        name: String,
        result: Result<(), PortError>,
    },
    /// The backoff after a failed store is over: write the phone's newest name again.
    Retry { phone: String },
}

#[derive(Clone)]
pub struct NamesArgs {
    pub store: Arc<dyn NameStore>,
    pub calls: LiveCalls,
    /// Asked when the rules are unsure (see [`ask_llm_for_name`]); `None`: unsure is no name.
    pub llm: Option<Arc<dyn LlmClient>>,
    /// How long the LLM may take to answer; past it the reply counts as no name.
    pub llm_deadline: Duration,
    /// Dropped for a phone once its captured name is stored.
    pub caches: Option<ContextCaches>,
    pub stats: Arc<NameStats>,
    /// The first wait after a failed store; it doubles with each failure, up to
    /// [`STORE_RETRY_MAX`].
    pub store_retry_base: Duration,
}

/// How often the LLM was asked for a name, and what came of it (exported by `/metrics`).
#[derive(Debug, Default)]
pub struct NameStats {
    pub llm_asked: AtomicU64,
    /// The LLM's answer passed the acceptance rules and became the captured name.
    pub llm_named: AtomicU64,
    /// "NONE", an answer that failed the rules, an error or the deadline.
    pub llm_no_name: AtomicU64,
    /// Captured names stored.
    pub stored: AtomicU64,
    /// Store attempts that failed and will be retried.
    pub store_retries: AtomicU64,
    /// Captured names given up on: the store refused them as invalid, or too many names were
    /// waiting to be retried.
    pub store_dropped: AtomicU64,
    /// Phones whose newest captured name is not stored yet (being written or waiting to retry).
    pub store_pending: AtomicU64,
}

/// The longest wait between two attempts to store a captured name.
pub const STORE_RETRY_MAX: Duration = Duration::from_secs(30);
/// The default for [`NamesArgs::store_retry_base`].
pub const STORE_RETRY_BASE: Duration = Duration::from_millis(200);
/// Phones whose name may wait to be stored at once; past this a new one is dropped (and logged),
/// so a database that stays down cannot grow the actor without bound.
const MAX_PENDING_STORES: usize = 100_000;

/// A phone's newest captured name, not stored yet. Each has exactly one store task running or
/// one `Retry` on its way, never both: a `Retry` comes only after a failed store.
struct PendingName {
    name: String,
    /// Failed attempts since the last success (or since the name changed).
    failures: u32,
}

pub struct NamesState {
    args: NamesArgs,
    pending: HashMap<String, PendingName>,
}

/// The default for [`NamesArgs::llm_deadline`]: well inside the machine's name deadline.
pub const LLM_NAME_DEADLINE: Duration = Duration::from_millis(1500);

pub struct NamesActor;

impl Actor for NamesActor {
    type Msg = NamesMsg;
    type State = NamesState;
    type Arguments = NamesArgs;

    async fn pre_start(
        &self,
        _me: ActorRef<NamesMsg>,
        args: NamesArgs,
    ) -> Result<NamesState, ActorProcessingErr> {
        Ok(NamesState {
            args,
            pending: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        me: ActorRef<NamesMsg>,
        msg: NamesMsg,
        st: &mut NamesState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            NamesMsg::Extract {
                call_sid,
                attempt,
                utterance,
            } => {
                let args = &st.args;
                let event = match (extract_name_detailed(&utterance), &args.llm) {
                    (NameGuess::Found(name), _) => Event::NameCaptured { attempt, name },
                    (NameGuess::Unsure, Some(llm)) => {
                        // The rules will not vouch for it: ask the LLM, off the actor.
                        let (llm, calls, deadline) =
                            (llm.clone(), args.calls.clone(), args.llm_deadline);
                        let stats = args.stats.clone();
                        stats.llm_asked.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(async move {
                            let event =
                                match ask_llm_for_name(llm.as_ref(), &utterance, deadline).await {
                                    Some(name) => {
                                        stats.llm_named.fetch_add(1, Ordering::Relaxed);
                                        Event::NameCaptured { attempt, name }
                                    }
                                    None => {
                                        stats.llm_no_name.fetch_add(1, Ordering::Relaxed);
                                        Event::NameNotFound { attempt }
                                    }
                                };
                            calls.deliver(&call_sid, event);
                        });
                        return Ok(());
                    }
                    _ => Event::NameNotFound { attempt },
                };
                args.calls.deliver(&call_sid, event);
            }
            NamesMsg::Store { phone, name } => st.store(&me, phone, name),
            NamesMsg::Stored {
                phone,
                name,
                result,
            } => st.stored(&me, phone, name, result),
            NamesMsg::Retry { phone } => st.write(&me, phone),
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _me: ActorRef<NamesMsg>,
        st: &mut NamesState,
    ) -> Result<(), ActorProcessingErr> {
        if !st.pending.is_empty() {
            tracing::error!(
                names = st.pending.len(),
                "the names actor stopped with captured names not stored yet; they are lost"
            );
        }
        st.args
            .stats
            .store_pending
            .fetch_sub(st.pending.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

impl NamesState {
    fn store(&mut self, me: &ActorRef<NamesMsg>, phone: String, name: String) {
        if let Some(p) = self.pending.get_mut(&phone) {
            // A write for this phone is running or waiting to retry: it writes the newest name.
            if p.name != name {
                p.name = name;
                p.failures = 0;
            }
            return;
        }
        if self.pending.len() >= MAX_PENDING_STORES {
            self.args
                .stats
                .store_dropped
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                phone = %mask_phone(&phone),
                waiting = self.pending.len(),
                "captured name not stored: too many names already wait for the store"
            );
            return;
        }
        self.args
            .stats
            .store_pending
            .fetch_add(1, Ordering::Relaxed);
        self.pending
            .insert(phone.clone(), PendingName { name, failures: 0 });
        self.write(me, phone);
    }

    /// Start a store task for the phone's pending name; it answers with `Stored`.
    fn write(&mut self, me: &ActorRef<NamesMsg>, phone: String) {
        let Some(name) = self.pending.get(&phone).map(|p| p.name.clone()) else {
            return;
        };
        let (store, caches, me) = (
            self.args.store.clone(),
            self.args.caches.clone(),
            me.clone(),
        );
        tokio::spawn(async move {
            let result = store.store_name(&phone, &name).await.map(|_| ());
            if result.is_ok()
                && let Some(caches) = caches
            {
                // After the write, so no lookup that started before it can be cached again.
                caches.invalidate(&phone).await;
            }
            let _ = me.cast(NamesMsg::Stored {
                phone,
                name,
                result,
            });
        });
    }

    fn stored(
        &mut self,
        me: &ActorRef<NamesMsg>,
        phone: String,
        name: String,
        result: Result<(), PortError>,
    ) {
        let stats = &self.args.stats;
        let Some(p) = self.pending.get_mut(&phone) else {
            return;
        };
        let newer = p.name != name;
        match result {
            Ok(()) => {
                stats.stored.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) if e.kind == PortErrorKind::Rejected => {
                stats.store_dropped.fetch_add(1, Ordering::Relaxed);
                tracing::error!(phone = %mask_phone(&phone), error = %e, "captured name refused by the store; not retried");
            }
            Err(e) if !newer => {
                stats.store_retries.fetch_add(1, Ordering::Relaxed);
                p.failures += 1;
                let delay = backoff::delay(self.args.store_retry_base, p.failures, STORE_RETRY_MAX);
                tracing::warn!(
                    phone = %mask_phone(&phone),
                    error = %e,
                    attempt = p.failures,
                    retry_in_ms = delay.as_millis() as u64,
                    "captured name not stored yet; will retry"
                );
                me.send_after(delay, move || NamesMsg::Retry { phone });
                return;
            }
            // Failed, but a newer name has come meanwhile: write that one at once.
            Err(_) => {}
        }
        if newer {
            self.write(me, phone);
        } else {
            self.pending.remove(&phone);
            stats.store_pending.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The longest reply looked at. Answers to "what's your name?" are short; a long one is a story,
/// and scanning it for a name invites false positives.
const MAX_UTTERANCE_CHARS: usize = 200;
/// Lower-case connecting words allowed *between* name words ("João da Silva", "Ludwig van
/// Beethoven", "María de la Cruz"); at most this many in a row. They do not count as name words.
const MAX_PARTICLES_IN_A_ROW: usize = 2;

/// Characters that never occur in a transcript of speech (see [`extract_name_detailed`]).
const CODE_CHARS: &[char] = &[
    '<', '>', '{', '}', '[', ']', '=', ';', '\\', '|', '`', '$', '%', '#', '*', '^', '&', '@', '_',
];

/// What the reply says about the caller's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameGuess {
    /// A name, capitalised for speech.
    Found(String),
    /// Nothing name-like.
    NotFound,
    /// Something name-like that the rules will not vouch for: a single word that is also an
    /// everyday word ("it's Will", a bare "Hope"), or a weak introduction ("I'm ...") followed by a
    /// lower-case word in a transcript that capitalises names. A later fallback (the LLM, or asking
    /// again) may decide; [`extract_name`] treats it as no name.
    Unsure,
}

/// How much an introduction phrase promises that a name follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Strength {
    /// "my name is", "me llamo": whatever follows is meant as a name, so it is trusted anywhere
    /// in the reply ("I'm calling about my bill, my name is Rachel") and needs no casing evidence.
    Strong,
    /// "I'm", "this is", "it's", "soy", "je suis", "ich bin": just as often followed by a state
    /// or a reason ("I'm fine", "this is urgent"), so only trusted at the start of the reply and
    /// with the extra checks in [`take_name`].
    Weak,
}

/// Languages whose introductions may put an article before the name ("aqui é o Carlos", "soy la
/// señora Rodríguez", "ich bin die Anna").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lang {
    En,
    Pt,
    Es,
    Fr,
    De,
    It,
    Ja,
}

impl Lang {
    fn articles(self) -> &'static [&'static str] {
        match self {
            Lang::Pt => &["o", "a"],
            Lang::Es => &["el", "la"],
            Lang::De => &["der", "die"],
            Lang::En | Lang::Fr | Lang::It | Lang::Ja => &[],
        }
    }
}

/// Phrases that introduce a name, lower-case with straight apostrophes. Longer phrases are tried
/// first, so "o meu nome é" wins over "meu nome é".
const INTRODUCERS: &[(&str, Strength, Lang)] = &[
    ("my name is", Strength::Strong, Lang::En),
    ("my name's", Strength::Strong, Lang::En),
    ("my first name is", Strength::Strong, Lang::En),
    ("my full name is", Strength::Strong, Lang::En),
    ("the name is", Strength::Strong, Lang::En),
    ("the name's", Strength::Strong, Lang::En),
    ("you can call me", Strength::Strong, Lang::En),
    ("call me", Strength::Strong, Lang::En),
    ("name's", Strength::Weak, Lang::En),
    ("this is", Strength::Weak, Lang::En),
    ("it is", Strength::Weak, Lang::En),
    ("it's", Strength::Weak, Lang::En),
    ("its", Strength::Weak, Lang::En),
    ("i am", Strength::Weak, Lang::En),
    ("i'm", Strength::Weak, Lang::En),
    ("im", Strength::Weak, Lang::En),
    ("meu nome é", Strength::Strong, Lang::Pt),
    ("meu nome e", Strength::Strong, Lang::Pt),
    ("o meu nome é", Strength::Strong, Lang::Pt),
    ("o meu nome e", Strength::Strong, Lang::Pt),
    ("me chamo", Strength::Strong, Lang::Pt),
    ("eu me chamo", Strength::Strong, Lang::Pt),
    ("pode me chamar de", Strength::Strong, Lang::Pt),
    ("aqui quem fala é", Strength::Weak, Lang::Pt),
    ("quem fala é", Strength::Weak, Lang::Pt),
    ("aqui é", Strength::Weak, Lang::Pt),
    ("aqui e", Strength::Weak, Lang::Pt),
    ("eu sou", Strength::Weak, Lang::Pt),
    ("sou", Strength::Weak, Lang::Pt),
    ("é", Strength::Weak, Lang::Pt),
    ("mi nombre es", Strength::Strong, Lang::Es),
    ("me llamo", Strength::Strong, Lang::Es),
    ("yo me llamo", Strength::Strong, Lang::Es),
    ("aquí habla", Strength::Weak, Lang::Es),
    ("aqui habla", Strength::Weak, Lang::Es),
    ("le habla", Strength::Weak, Lang::Es),
    ("habla", Strength::Weak, Lang::Es),
    ("yo soy", Strength::Weak, Lang::Es),
    ("soy", Strength::Weak, Lang::Es),
    ("je m'appelle", Strength::Strong, Lang::Fr),
    ("mon nom est", Strength::Strong, Lang::Fr),
    ("moi c'est", Strength::Weak, Lang::Fr),
    ("c'est", Strength::Weak, Lang::Fr),
    ("je suis", Strength::Weak, Lang::Fr),
    ("ich heiße", Strength::Strong, Lang::De),
    ("ich heisse", Strength::Strong, Lang::De),
    ("mein name ist", Strength::Strong, Lang::De),
    ("hier spricht", Strength::Weak, Lang::De),
    ("hier ist", Strength::Weak, Lang::De),
    ("ich bin", Strength::Weak, Lang::De),
    ("mi chiamo", Strength::Strong, Lang::It),
    ("il mio nome è", Strength::Strong, Lang::It),
    ("il mio nome e", Strength::Strong, Lang::It),
    ("io sono", Strength::Weak, Lang::It),
    ("sono", Strength::Weak, Lang::It),
    ("watashi no namae wa", Strength::Strong, Lang::Ja),
    ("watashi wa", Strength::Weak, Lang::Ja),
];

/// Greetings, acknowledgements and hesitations that may come before the answer ("uh yeah, it's
/// Bob", "bom dia, aqui é a Lúcia") or between an introduction and the name ("my name is uh
/// Logan"). Two-word greetings are listed word by word: "good" and "morning" are both skipped.
const FILLERS: &[&str] = &[
    "hi",
    "hello",
    "hey",
    "oh",
    "yes",
    "yeah",
    "yep",
    "yup",
    "sure",
    "well",
    "um",
    "umm",
    "uh",
    "uhm",
    "er",
    "erm",
    "ah",
    "hmm",
    "ok",
    "okay",
    "so",
    "no",
    "good",
    "morning",
    "afternoon",
    "evening",
    "olá",
    "ola",
    "oi",
    "sim",
    "bom",
    "boa",
    "dia",
    "tarde",
    "noite",
    "hola",
    "sí",
    "si",
    "buenos",
    "buenas",
    "días",
    "dias",
    "tardes",
    "noches",
    "bueno",
    "pues",
    "bonjour",
    "bonsoir",
    "salut",
    "oui",
    "allô",
    "allo",
    "euh",
    "alors",
    "hallo",
    "ja",
    "guten",
    "tag",
    "morgen",
    "abend",
    "nein",
    "also",
    "äh",
    "ähm",
    "buongiorno",
    "buonasera",
    "ciao",
    "pronto",
    "moshi",
    "hai",
    "ano",
    "eto",
    "mhm",
    "uh-huh",
    "mm-hmm",
];

/// Words that are never (part of) a name here, whatever introduces them: function words,
/// pronouns, negations, numbers, and the everyday words callers put after "I'm", "this is",
/// "it's", "soy", "je suis" or "ich bin" instead of a name ("I'm fine", "this is urgent", "soy
/// cliente", "ich bin Kunde"). Lower-case. A name that is also one of these is lost; that is the
/// price of precision.
const NOT_NAMES: &[&str] = &[
    // English function words, pronouns, question words
    "a",
    "an",
    "the",
    "this",
    "that",
    "these",
    "those",
    "it",
    "its",
    "it's",
    "is",
    "was",
    "are",
    "be",
    "been",
    "am",
    "i",
    "i'm",
    "i'd",
    "i've",
    "i'll",
    "me",
    "my",
    "mine",
    "you",
    "your",
    "we",
    "our",
    "they",
    "their",
    "he",
    "she",
    "him",
    "her",
    "his",
    "us",
    "what",
    "who",
    "why",
    "how",
    "when",
    "where",
    "which",
    "not",
    "no",
    "none",
    "nobody",
    "nothing",
    "nope",
    "never",
    "to",
    "for",
    "of",
    "and",
    "or",
    "but",
    "in",
    "on",
    "at",
    "by",
    "with",
    "from",
    "about",
    "into",
    "over",
    "after",
    "before",
    "as",
    "if",
    "so",
    "because",
    "than",
    "then",
    "there",
    "here",
    "do",
    "does",
    "did",
    "don't",
    "doesn't",
    "didn't",
    "can",
    "can't",
    "could",
    "would",
    "should",
    "will",
    "won't",
    "shall",
    "may",
    "might",
    "must",
    "have",
    "has",
    "had",
    "get",
    "got",
    "just",
    "also",
    "still",
    "again",
    "already",
    "very",
    "so",
    "really",
    "too",
    "quite",
    "all",
    "any",
    "some",
    "every",
    "each",
    "one",
    "two",
    "three",
    "four",
    "five",
    "first",
    "second",
    "third",
    "last",
    "next",
    "other",
    "another",
    "same",
    // English replies that are not names
    "yes",
    "yeah",
    "ok",
    "okay",
    "please",
    "thanks",
    "thank",
    "sorry",
    "pardon",
    "hello",
    "hi",
    "hey",
    "well",
    "um",
    "uh",
    "er",
    "like",
    "sure",
    "right",
    "fine",
    "good",
    "great",
    "alright",
    "bad",
    "terrible",
    "busy",
    "happy",
    "glad",
    "ready",
    "back",
    "later",
    "now",
    "today",
    "tomorrow",
    "tonight",
    "soon",
    "asap",
    "whatever",
    "speaking",
    "wrong",
    "number",
    "name",
    "named",
    "called",
    "email",
    "phone",
    "call",
    "calling",
    "customer",
    "client",
    "member",
    "person",
    "human",
    "agent",
    "someone",
    "somebody",
    "anyone",
    "everyone",
    "myself",
    "yourself",
    // English states and reasons ("I'm ...", "this is ...", "it's ...")
    "urgent",
    "important",
    "serious",
    "complicated",
    "broken",
    "ridiculous",
    "crazy",
    "awful",
    "frustrated",
    "frustrating",
    "upset",
    "angry",
    "annoyed",
    "mad",
    "pissed",
    "confused",
    "worried",
    "afraid",
    "interested",
    "new",
    "old",
    "late",
    "early",
    "hurry",
    "sick",
    "tired",
    "done",
    "finished",
    "lost",
    "stuck",
    "sure",
    "unsure",
    "certain",
    "problem",
    "issue",
    "question",
    "complaint",
    "order",
    "bill",
    "billing",
    "invoice",
    "payment",
    "account",
    "delivery",
    "refund",
    "subscription",
    "help",
    "support",
    "service",
    "mother",
    "father",
    "husband",
    "wife",
    "son",
    "daughter",
    "company",
    "behalf",
    "long",
    "story",
    "time",
    "mistake",
    "emergency",
    "nonsense",
    "unacceptable",
    "impossible",
    "true",
    "false",
    "correct",
    "open",
    "closed",
    "free",
    "available",
    "unavailable",
    "private",
    "confidential",
    "anonymous",
    "unknown",
    "huh",
    "know",
    "sé",
    "sei",
    "sais",
    "weiß",
    "guess",
    "think",
    "believe",
    "actually",
    "basically",
    "honestly",
    "regarding",
    "concerning",
    "wondering",
    "hoping",
    "trying",
    "looking",
    "having",
    "going",
    "raining",
    "working",
    "taking",
    // Portuguese
    "eu",
    "você",
    "voce",
    "ele",
    "ela",
    "nós",
    "nos",
    "meu",
    "minha",
    "seu",
    "sua",
    "o",
    "a",
    "os",
    "as",
    "um",
    "uma",
    "de",
    "do",
    "da",
    "dos",
    "das",
    "em",
    "no",
    "na",
    "com",
    "para",
    "pra",
    "por",
    "sobre",
    "que",
    "não",
    "nao",
    "sim",
    "muito",
    "bem",
    "tudo",
    "obrigado",
    "obrigada",
    "cliente",
    "titular",
    "aqui",
    "estou",
    "ligando",
    "conta",
    "fatura",
    "pedido",
    "problema",
    "empresa",
    "urgente",
    "importante",
    "nome",
    "senhor",
    "senhora",
    // Spanish
    "yo",
    "tú",
    "tu",
    "usted",
    "mi",
    "el",
    "la",
    "los",
    "las",
    "un",
    "una",
    "del",
    "al",
    "en",
    "con",
    "para",
    "por",
    "sobre",
    "que",
    "qué",
    "sí",
    "bien",
    "muy",
    "gracias",
    "cliente",
    "nuevo",
    "nueva",
    "aquí",
    "estoy",
    "llamando",
    "cuenta",
    "factura",
    "problema",
    "urgente",
    "nombre",
    "señor",
    "señora",
    "teléfono",
    // French
    "je",
    "moi",
    "vous",
    "il",
    "elle",
    "mon",
    "ma",
    "le",
    "les",
    "une",
    "des",
    "du",
    "au",
    "aux",
    "en",
    "pour",
    "avec",
    "sur",
    "oui",
    "non",
    "merci",
    "très",
    "bien",
    "client",
    "cliente",
    "désolé",
    "désolée",
    "desole",
    "retard",
    "pressé",
    "pressée",
    "fatigué",
    "fatiguée",
    "occupé",
    "occupée",
    "énervé",
    "énervée",
    "perdu",
    "perdue",
    "malade",
    "content",
    "contente",
    "prêt",
    "prête",
    "là",
    "urgent",
    "facture",
    "commande",
    "nom",
    "monsieur",
    "madame",
    "appelle",
    "ici",
    "pas",
    "ne",
    // German
    "ich",
    "du",
    "sie",
    "er",
    "es",
    "wir",
    "mein",
    "meine",
    "der",
    "die",
    "das",
    "ein",
    "eine",
    "nicht",
    "kein",
    "keine",
    "sehr",
    "gut",
    "ja",
    "nein",
    "danke",
    "bitte",
    "kunde",
    "kundin",
    "hier",
    "wegen",
    "für",
    "mit",
    "am",
    "im",
    "um",
    "verärgert",
    "sicher",
    "alles",
    "kaputt",
    "rechnung",
    "bestellung",
    "name",
    "herr",
    "frau",
    // Italian
    "io",
    "il",
    "lo",
    "gli",
    "di",
    "molto",
    "arrabbiato",
    "arrabbiata",
    "grazie",
    "cliente",
    // Placeholders that leak from systems, and SQL
    "null",
    "nil",
    "undefined",
    "nan",
    "n/a",
    "na",
    "test",
    "drop",
    "table",
    "select",
    "insert",
    "delete",
    "update",
    "union",
    "script",
    "alert",
    // Japanese (romanised)
    "watashi",
    "desu",
    "daijoubu",
    "sou",
    "hai",
    "iie",
    "chotto",
    "matte",
    "kudasai",
    "arigatou",
    "sumimasen",
];

/// First names that are also everyday words. After "my name is" they are names ("My name is
/// Hope"); alone or after "it's" / "I'm" they are [`NameGuess::Unsure`] ("Bill" may be about a
/// bill, "I'm Mark" may be a mis-heard "I'm marked").
const NAME_OR_WORD: &[&str] = &[
    "bill", "will", "mark", "rose", "hope", "grace", "faith", "joy", "may", "june", "april",
    "august", "sunny", "frank", "pat", "sue", "rich", "guy", "jack", "ray", "dawn", "summer",
    "autumn", "hunter", "ruby", "pearl", "lily", "daisy", "holly", "ivy", "amber", "crystal",
    "destiny", "honey", "king", "earl", "chase", "lane", "rod", "drew", "penny", "sky", "storm",
];

/// Titles dropped before a name ("Dr. Smith" is stored as "Smith": the title is how the caller
/// is addressed, not part of the name, and the agent will say it back with its own manners).
const TITLES: &[&str] = &[
    "mr",
    "mrs",
    "ms",
    "mx",
    "miss",
    "dr",
    "doctor",
    "prof",
    "professor",
    "sir",
    "dame",
    "senhor",
    "senhora",
    "sr",
    "sra",
    "srta",
    "dona",
    "dom",
    "doutor",
    "doutora",
    "señor",
    "señora",
    "señorita",
    "don",
    "doña",
    "doctora",
    "monsieur",
    "madame",
    "mademoiselle",
    "mme",
    "mlle",
    "m",
    "docteur",
    "herr",
    "frau",
    "doktor",
    "signor",
    "signora",
    "signorina",
    "dott",
];

/// Lower-case connecting words allowed between name words.
const PARTICLES: &[&str] = &[
    "da", "de", "do", "dos", "das", "del", "della", "di", "du", "des", "la", "le", "van", "von",
    "der", "den", "ter", "ten", "bin", "ibn", "al", "el",
];

/// Words (or phrases) that may follow a name and end it cleanly: "I'm Bob and ...", "this is
/// Maria Silva calling ...", "Tom here", "Pedro al habla", "Tanaka desu". After a weak
/// introduction anything else following the name makes it [`NameGuess::Unsure`].
const NAME_ENDERS: &[&str] = &[
    "and",
    "but",
    "from",
    "calling",
    "speaking",
    "here",
    "please",
    "thanks",
    "thank",
    "i",
    "i'm",
    "i've",
    "i'd",
    "so",
    "e",
    "mas",
    "falando",
    "aqui",
    "y",
    "pero",
    "al habla",
    "et",
    "mais",
    "à l'appareil",
    "und",
    "aber",
    "am apparat",
    "desu",
    "to moushimasu",
    "to mōshimasu",
    "to iimasu",
];

/// Extract a caller's name from their answer to "may I have your name?", or `None` when unsure.
pub fn extract_name(utterance: &str) -> Option<String> {
    match extract_name_detailed(utterance) {
        NameGuess::Found(name) => Some(name),
        NameGuess::NotFound | NameGuess::Unsure => None,
    }
}

/// The instruction for [`ask_llm_for_name`]: a short, structured request.
pub const LLM_NAME_PROMPT: &str = "You read one line of a phone call transcript. The caller was just asked for their name. \
Reply with only the caller's name exactly as they said it, or NONE if they did not clearly say their name. \
No other words, no punctuation.";

/// When the rules are unsure: ask the LLM for the name in `utterance`, within `deadline`. The
/// reply is accepted only under [`accept_llm_name`]; a timeout, an error or "NONE" is `None`.
pub async fn ask_llm_for_name(
    llm: &dyn LlmClient,
    utterance: &str,
    deadline: Duration,
) -> Option<String> {
    let request = LlmRequest::plain(vec![
        ChatMessage::new("system", LLM_NAME_PROMPT),
        ChatMessage::new(
            "user",
            utterance
                .chars()
                .take(MAX_UTTERANCE_CHARS)
                .collect::<String>(),
        ),
    ]);
    let collect = async {
        let mut stream = llm.stream(request);
        let mut reply = String::new();
        while let Some(piece) = stream.next().await {
            reply.push_str(&piece.ok()?);
            if reply.chars().count() > 4 * MAX_NAME_CHARS {
                return None; // an essay, not a name
            }
        }
        Some(reply)
    };
    match tokio::time::timeout(deadline, collect).await {
        Ok(Some(reply)) => accept_llm_name(&reply, utterance),
        Ok(None) => None,
        Err(_) => {
            tracing::debug!(
                deadline_ms = deadline.as_millis() as u64,
                "LLM name extraction timed out"
            );
            None
        }
    }
}

/// The LLM's answer as a name, under the same acceptance rules as the rule-based extractor (name
/// words only, at most three plus particles, at most [`MAX_NAME_CHARS`], no markup or digits),
/// and only if every word of it was said in `utterance`: the model may pick the name, never
/// invent one (nor be talked into one by the caller).
pub fn accept_llm_name(reply: &str, utterance: &str) -> Option<String> {
    let reply = reply
        .trim()
        .trim_matches(|c: char| matches!(c, '"' | '\'' | '.' | '!' | '“' | '”' | '«' | '»'))
        .trim();
    if reply.is_empty()
        || reply.eq_ignore_ascii_case("none")
        || reply.contains(CODE_CHARS)
        || reply.contains(['\n', '\r'])
        || reply.chars().count() > MAX_NAME_CHARS
    {
        return None;
    }
    let said: Vec<String> = tokenize(utterance).into_iter().map(|t| t.lower).collect();
    let tokens = tokenize(reply);
    let mut words = Vec::new();
    let mut name_words = 0;
    for (i, t) in tokens.iter().enumerate() {
        if words.is_empty() && is_title(&t.lower) {
            continue;
        }
        if !is_name_word(&t.word) || !said.contains(&t.lower) {
            return None;
        }
        if !is_particle_word(t) {
            if NOT_NAMES.contains(&t.lower.as_str()) && !NAME_OR_WORD.contains(&t.lower.as_str()) {
                return None;
            }
            name_words += 1;
        }
        words.push(i);
    }
    if name_words == 0 || name_words > MAX_NAME_WORDS {
        return None;
    }
    match finish(&tokens, &words) {
        NameGuess::Found(name) => Some(name),
        _ => None,
    }
}

/// One word of the reply.
struct Token {
    /// As spoken, without surrounding punctuation, curly apostrophes made straight.
    word: String,
    /// `word` in lower case, for matching.
    lower: String,
    /// The word ended a clause (`Bob,` `Bob.`), so a name cannot run past it. Initials
    /// ("F.") and titles ("Dr.") do not end clauses.
    ends_clause: bool,
}

fn tokenize(text: &str) -> Vec<Token> {
    text.split_whitespace()
        .map(|raw| {
            let raw = raw.replace(['’', '‘'], "'");
            let mut word = trim_punct(&raw).to_owned();
            if is_initial(&raw) {
                // Keep an initial's period: "John F. Kennedy".
                word.push('.');
            }
            let lower = word.to_lowercase();
            let ends_clause = raw.ends_with(['.', ',', '!', '?', ';', ':'])
                && !is_initial(&raw)
                && !is_title(&lower);
            Token {
                word,
                lower,
                ends_clause,
            }
        })
        .collect()
}

/// [`extract_name`] with the reason when there is no name: see [`NameGuess`].
pub fn extract_name_detailed(utterance: &str) -> NameGuess {
    let text = utterance.trim();
    if text.is_empty() || text.chars().count() > MAX_UTTERANCE_CHARS {
        return NameGuess::NotFound;
    }
    // Speech transcripts hold no markup or code characters; a reply with any is typed or
    // injected input ("<b>Bob</b>", "x'; DROP TABLE users;"), not a name to say back.
    if text.contains(CODE_CHARS) {
        return NameGuess::NotFound;
    }
    let tokens = tokenize(text);
    let start = skip_fillers(&tokens, 0);
    let mut best = NameGuess::NotFound;

    // A weak introduction counts only at the start; a strong one anywhere, first found first.
    for at in start..tokens.len() {
        let Some((len, strength, lang)) = match_introducer(&tokens[at..]) else {
            continue;
        };
        if strength == Strength::Weak && at != start {
            continue;
        }
        match take_name(&tokens, at + len, strength, lang) {
            NameGuess::Found(name) => return NameGuess::Found(name),
            NameGuess::Unsure => best = NameGuess::Unsure,
            NameGuess::NotFound => {}
        }
    }
    if best == NameGuess::Unsure {
        return best;
    }
    // A bare answer: after any fillers, the rest is the name, optionally closed by an ender that
    // is a clean ending on its own ("Tom here", "Tanaka desu").
    let guess = take_bare(&tokens, start);
    if guess != NameGuess::NotFound {
        return guess;
    }
    best
}

/// The longest introducer phrase at the start of `tokens`: (its length in words, strength,
/// language).
fn match_introducer(tokens: &[Token]) -> Option<(usize, Strength, Lang)> {
    INTRODUCERS
        .iter()
        .filter_map(|(phrase, strength, lang)| {
            let len = phrase_len_at(tokens, phrase)?;
            // "I'm, uh, ..." is fine, but "Sarah Connor. This is..." must not chain a sentence
            // end inside a phrase: a phrase may end a clause only on its last word.
            if tokens[..len - 1].iter().any(|t| t.ends_clause) {
                return None;
            }
            Some((len, *strength, *lang))
        })
        .max_by_key(|(len, _, _)| *len)
}

/// How many tokens `phrase` covers at the start of `tokens`, if it is there.
fn phrase_len_at(tokens: &[Token], phrase: &str) -> Option<usize> {
    let words: Vec<&str> = phrase.split(' ').collect();
    if words.len() > tokens.len() {
        return None;
    }
    tokens
        .iter()
        .zip(&words)
        .all(|(t, w)| t.lower == *w)
        .then_some(words.len())
}

fn skip_fillers(tokens: &[Token], mut at: usize) -> usize {
    while at < tokens.len() && FILLERS.contains(&tokens[at].lower.as_str()) {
        at += 1;
    }
    at
}

/// A name ender at `at`, as the number of tokens it covers.
fn ender_len_at(tokens: &[Token], at: usize) -> Option<usize> {
    NAME_ENDERS
        .iter()
        .filter_map(|e| phrase_len_at(&tokens[at..], e))
        .max()
}

/// The name words read from `at`: skips fillers, one article (for languages that use one) and
/// titles, then takes name words and particles. Returns the name's token range.
fn read_name(tokens: &[Token], mut at: usize, lang: Lang) -> (usize, Vec<usize>) {
    at = skip_fillers(tokens, at);
    if at < tokens.len() && lang.articles().contains(&tokens[at].lower.as_str()) {
        at += 1;
    }
    while at < tokens.len() && is_title(&tokens[at].lower) {
        at += 1;
    }
    let mut words = Vec::new();
    let mut i = at;
    while i < tokens.len() {
        let t = &tokens[i];
        if !words.is_empty() && ender_len_at(tokens, i).is_some() {
            break;
        }
        if is_particle_here(tokens, i) && !words.is_empty() {
            // Take the particles only if a name word follows them.
            let mut j = i;
            while j < tokens.len() && j - i < MAX_PARTICLES_IN_A_ROW && is_particle_here(tokens, j)
            {
                j += 1;
            }
            if j < tokens.len() && is_name_candidate(&tokens[j], false) {
                words.extend(i..j);
                i = j;
                continue;
            }
            break;
        }
        if !is_name_candidate(t, words.is_empty()) {
            break;
        }
        words.push(i);
        i += 1;
        if t.ends_clause {
            break;
        }
    }
    (i, words)
}

/// A lower-case particle between name words (a capitalised "De" or "Van" is a name word).
fn is_particle_here(tokens: &[Token], i: usize) -> bool {
    let t = &tokens[i];
    PARTICLES.contains(&t.lower.as_str()) && t.word == t.lower && !t.ends_clause
}

/// A word that can be part of a name: letters only (see [`is_name_word`]), not a known
/// non-name. An English "-ing" word of six letters or more cannot start a name ("I'm
/// wondering", "it's raining"); names like "Manning" are surnames and come second.
fn is_name_candidate(t: &Token, first: bool) -> bool {
    if !is_name_word(&t.word) {
        return false;
    }
    // Name-or-word ("Will", "Bill") is judged later by strength; it is a candidate here.
    if NOT_NAMES.contains(&t.lower.as_str()) && !NAME_OR_WORD.contains(&t.lower.as_str()) {
        return false;
    }
    if first && t.lower.is_ascii() && t.lower.len() >= 6 && t.lower.ends_with("ing") {
        return false;
    }
    true
}

fn take_name(tokens: &[Token], at: usize, strength: Strength, lang: Lang) -> NameGuess {
    let (end, words) = read_name(tokens, at, lang);
    let names: Vec<&Token> = words
        .iter()
        .map(|&i| &tokens[i])
        .filter(|t| !is_particle_word(t))
        .collect();
    if names.is_empty() {
        return NameGuess::NotFound;
    }
    if names.len() > MAX_NAME_WORDS {
        return NameGuess::NotFound;
    }
    if strength == Strength::Weak {
        // "I'm Mark" / "it's Will": a single word that is also an everyday word.
        if names.len() == 1 && NAME_OR_WORD.contains(&names[0].lower.as_str()) {
            return NameGuess::Unsure;
        }
        // A transcript that capitalises (an upper-case letter outside the name) capitalises
        // names too; "I'm pissed off" has lower-case words where the name would be.
        let cased = tokens
            .iter()
            .enumerate()
            .any(|(i, t)| !words.contains(&i) && t.word.chars().any(char::is_uppercase));
        if cased
            && names
                .iter()
                .any(|t| !t.word.chars().next().is_some_and(char::is_uppercase))
        {
            return NameGuess::Unsure;
        }
        // After "I'm Bob" comes an end, a pause, or a known continuation ("and", "calling");
        // anything else ("I'm pissed off at you") means the words were not a name.
        let last_ends_clause = words.last().is_some_and(|&i| tokens[i].ends_clause);
        if end < tokens.len() && !last_ends_clause && ender_len_at(tokens, end).is_none() {
            return NameGuess::Unsure;
        }
    }
    finish(tokens, &words)
}

fn take_bare(tokens: &[Token], at: usize) -> NameGuess {
    if at >= tokens.len() {
        return NameGuess::NotFound;
    }
    let (end, words) = read_name(tokens, at, Lang::En);
    // All of the reply must be the name, except one closing ender ("Tom here", "Tanaka desu").
    let complete = end == tokens.len()
        || ender_len_at(tokens, end).is_some_and(|len| end + len == tokens.len());
    if !complete {
        return NameGuess::NotFound;
    }
    let names: Vec<&Token> = words
        .iter()
        .map(|&i| &tokens[i])
        .filter(|t| !is_particle_word(t))
        .collect();
    if names.is_empty() || names.len() > MAX_NAME_WORDS {
        return NameGuess::NotFound;
    }
    if names.len() == 1 && NAME_OR_WORD.contains(&names[0].lower.as_str()) {
        return NameGuess::Unsure;
    }
    finish(tokens, &words)
}

/// A title, with or without its period ("Dr." / "dr", French "M.").
fn is_title(lower: &str) -> bool {
    TITLES.contains(&lower.trim_end_matches('.'))
}

fn is_particle_word(t: &Token) -> bool {
    PARTICLES.contains(&t.lower.as_str()) && t.word == t.lower
}

/// Join the name words, capitalised, particles kept lower-case; enforce [`MAX_NAME_CHARS`].
fn finish(tokens: &[Token], words: &[usize]) -> NameGuess {
    let name = words
        .iter()
        .map(|&i| {
            let t = &tokens[i];
            if is_particle_word(t) {
                t.word.clone()
            } else {
                capitalize(&t.word)
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    if name.chars().count() > MAX_NAME_CHARS {
        return NameGuess::NotFound;
    }
    NameGuess::Found(name)
}

fn trim_punct(w: &str) -> &str {
    w.trim_matches(|c: char| {
        matches!(
            c,
            ',' | '.' | '!' | '?' | ';' | ':' | '"' | '“' | '”' | '„' | '«' | '»' | '¿' | '¡'
        )
    })
}

fn is_initial(w: &str) -> bool {
    let letters: Vec<char> = w.chars().filter(|c| c.is_alphabetic()).collect();
    letters.len() == 1 && w.ends_with('.')
}

/// Letters (any script) with inner apostrophes or hyphens; a single letter may carry a period
/// (an initial, "F."). No digits, markup, symbols or emoji.
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
            .all(|c| c.is_alphabetic() || c == '\'' || c == '-')
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
        start_of_part = matches!(c, '-' | '\'');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{NameGuess, accept_llm_name, extract_name, extract_name_detailed};

    #[test]
    fn llm_answers_pass_the_same_acceptance_rules() {
        assert_eq!(
            accept_llm_name("Will", "it's Will").as_deref(),
            Some("Will")
        );
        assert_eq!(
            accept_llm_name(" \"hope.\"\n", "hope").as_deref(),
            Some("Hope")
        );
        assert_eq!(
            accept_llm_name("maria da silva", "uh it's maria da silva").as_deref(),
            Some("Maria da Silva")
        );
        for (reply, utterance) in [
            ("NONE", "it's Will"),
            ("none.", "it's Will"),
            ("", "it's Will"),
            ("Robert", "it's Will"),             // never said
            ("<b>Will</b>", "it's <b>Will</b>"), // markup
            ("Will 2", "it's Will 2"),           // digits
            ("The caller's name is Will", "it's Will"),
            ("Will Will Will Will", "Will Will Will Will"), // too many words
        ] {
            assert_eq!(
                accept_llm_name(reply, utterance),
                None,
                "{reply:?} / {utterance:?}"
            );
        }
        let long = "a".repeat(70);
        assert_eq!(accept_llm_name(&long, &long), None);
    }

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

    #[test]
    fn everyday_words_that_are_names_need_a_strong_introduction() {
        assert_eq!(extract_name("My name is Hope.").as_deref(), Some("Hope"));
        assert_eq!(extract_name("call me Will").as_deref(), Some("Will"));
        assert_eq!(extract_name_detailed("Hope"), NameGuess::Unsure);
        assert_eq!(extract_name_detailed("it's Will"), NameGuess::Unsure);
        assert_eq!(extract_name("it's Will"), None);
        assert_eq!(extract_name("Bill Evans").as_deref(), Some("Bill Evans"));
    }

    #[test]
    fn weak_introductions_need_casing_and_a_clean_ending() {
        // A capitalising transcript with a lower-case "name".
        assert_eq!(
            extract_name_detailed("This is outrageous."),
            NameGuess::Unsure
        );
        assert_eq!(extract_name_detailed("Hi, I'm alice."), NameGuess::Unsure);
        // All lower case (speech-to-text): no casing evidence either way.
        assert_eq!(extract_name("hi i'm alice").as_deref(), Some("Alice"));
        assert_eq!(
            extract_name("i'm bob calling about my order").as_deref(),
            Some("Bob")
        );
        // A strong phrase needs neither.
        assert_eq!(
            extract_name("Hi, my name is alice.").as_deref(),
            Some("Alice")
        );
    }

    #[test]
    fn stated_limits() {
        // Trailing emoji or digits end the name; inside a word they reject it.
        assert_eq!(extract_name("my name is John 😀").as_deref(), Some("John"));
        assert_eq!(extract_name("my name is John2"), None);
        // Any code character rejects the whole reply, even around a real name.
        assert_eq!(extract_name("my name is <b>John</b>"), None);
        assert_eq!(extract_name("my name is John; DROP TABLE customers"), None);
        // Names are at most 60 characters and 3 words (particles not counted).
        let long = format!("my name is {}", "Bartholomew".repeat(6));
        assert_eq!(extract_name(&long), None);
        assert_eq!(extract_name("Anna Maria Luisa Ferreira"), None);
        assert_eq!(
            extract_name("me llamo María de la Cruz Ortega").as_deref(),
            Some("María de la Cruz Ortega")
        );
        // The title goes, the initial stays.
        assert_eq!(
            extract_name("This is Dr. John F. Kennedy.").as_deref(),
            Some("John F. Kennedy")
        );
    }
}
