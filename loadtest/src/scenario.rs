//! Who calls and what they say. Every call's plan is a pure function of the run's seed and the
//! call's index, so a run can be repeated exactly.
//!
//! - **New callers** call from numbers no seeded customer has (`+1 555 NXX XXXX`: the fictional
//!   555 area code with a valid exchange, offset per run so a caller who gave their name in an
//!   earlier run is not "returning" in the next), and answer the name question first:
//!   "My name is <First Last>".
//! - **Returning callers** call from a seeded customer's number ([`demo_phone`]) and go straight
//!   to their questions.
//! - **Chaos** calls have their actor crashed after one of their turns.
//! - **Barge-in**: each turn after the first talks over the agent's previous reply with the
//!   given probability (the first turn answers the greeting and is never a barge-in).

use std::time::Duration;

use crate::call::{CallPlan, Transport, Turn};

/// Which transports a run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportMix {
    Media,
    Relay,
    /// Every other call.
    Mixed,
}

/// The mix of calls in a run.
#[derive(Clone, Debug)]
pub struct Mix {
    pub transport: TransportMix,
    /// Caller turns per call (new callers: the name is the first).
    pub turns: usize,
    pub returning_fraction: f64,
    pub chaos_fraction: f64,
    /// Probability that a turn after the first barges in.
    pub barge_in_fraction: f64,
    /// Customers seeded with `switchboard seed --customers N` (returning callers pick from them).
    pub seeded_customers: u64,
    /// Each call stays on the line at least this long.
    pub min_duration: Duration,
    /// Seed for the choices; also offsets the new callers' numbers.
    pub seed: u64,
    /// Per-turn reply timeout.
    pub reply_timeout: Duration,
    /// The server's `stt.endpointing_ms` ([`CallPlan::endpointing`]).
    pub endpointing: Duration,
}

/// What kind of caller a plan plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CallerKind {
    New,
    Returning,
}

impl CallerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CallerKind::New => "new",
            CallerKind::Returning => "returning",
        }
    }
}

const FIRST_NAMES: &[&str] = &[
    "Ana", "Bruno", "Chloe", "Daniel", "Elena", "Felix", "Grace", "Hugo", "Irene", "Jonas",
    "Keiko", "Lucas", "Maria", "Nadia", "Oscar", "Priya", "Rafael", "Sofia", "Tomas", "Yara",
];
const LAST_NAMES: &[&str] = &[
    "Souza", "Becker", "Martin", "Rossi", "Tanaka", "Garcia", "Novak", "Silva", "Dubois",
    "Schmidt", "Moreau", "Costa", "Walker", "Lopez", "Fischer", "Bianchi", "Kowalski", "Ortega",
];
const QUESTIONS: &[&str] = &[
    "Where is my order?",
    "I would like to change my delivery address.",
    "Can you check my last invoice?",
    "What are your opening hours on Saturday?",
    "I want to upgrade my plan.",
    "Is my contract up for renewal?",
    "Can someone call me back tomorrow morning?",
    "My package arrived damaged.",
    "How do I reset my password?",
    "Do you deliver to Canada?",
];

/// A small deterministic generator (SplitMix64): the plans need no cryptographic randomness
/// and no extra crate.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64, stream: u64) -> Rng {
        let mut r = Rng(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        r.next();
        r
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// A call's plan and the scenario it plays.
#[derive(Clone, Debug)]
pub struct Planned {
    pub plan: CallPlan,
    pub kind: CallerKind,
    pub chaos: bool,
}

impl Mix {
    /// The plan of call number `index` of a run identified by `run_id` (part of the call sid).
    pub fn plan(&self, run_id: u32, index: u64) -> Planned {
        let mut rng = Rng::new(self.seed, index);
        let transport = match self.transport {
            TransportMix::Media => Transport::Media,
            TransportMix::Relay => Transport::Relay,
            TransportMix::Mixed if index.is_multiple_of(2) => Transport::Media,
            TransportMix::Mixed => Transport::Relay,
        };
        let returning = self.seeded_customers > 0 && rng.chance(self.returning_fraction);
        let (kind, from) = if returning {
            let n = rng.below(self.seeded_customers);
            match demo_phone(n) {
                Some(phone) => (CallerKind::Returning, phone),
                None => (CallerKind::New, new_caller_phone(self.seed, index)),
            }
        } else {
            (CallerKind::New, new_caller_phone(self.seed, index))
        };
        let mut turns = Vec::with_capacity(self.turns);
        for i in 0..self.turns {
            let text = if i == 0 && kind == CallerKind::New {
                format!(
                    "My name is {} {}.",
                    rng.pick(FIRST_NAMES),
                    rng.pick(LAST_NAMES)
                )
            } else {
                rng.pick(QUESTIONS).to_owned()
            };
            let barge_in = i > 0 && rng.chance(self.barge_in_fraction);
            turns.push(Turn { text, barge_in });
        }
        let chaos = !turns.is_empty() && rng.chance(self.chaos_fraction);
        let crash_after_turn = chaos.then(|| rng.below(turns.len() as u64) as usize);
        let mut plan = CallPlan::new(call_sid(run_id, index), transport, from);
        plan.turns = turns;
        plan.crash_after_turn = crash_after_turn;
        plan.min_duration = self.min_duration;
        plan.reply_timeout = self.reply_timeout;
        plan.endpointing = self.endpointing;
        Planned { plan, kind, chaos }
    }
}

/// `CA` + 32 hex digits: the run id, then the call's index.
pub fn call_sid(run_id: u32, index: u64) -> String {
    format!("CA{run_id:08x}{index:024x}")
}

/// A new caller's number: `+1 555 NXX XXXX` (N = 2..9), offset by the run's seed. There are
/// 8,000,000 of them, and none is a [`demo_phone`] (those use real area codes).
pub fn new_caller_phone(seed: u64, index: u64) -> String {
    const SPAN: u64 = 800 * 10_000;
    let n = (seed.wrapping_mul(7_919).wrapping_add(index)) % SPAN;
    format!("+1555{}{:04}", 200 + n / 10_000, n % 10_000)
}

/// The phone number `switchboard seed` gives the customer with 0-based index `n`.
///
/// **Coupling:** a copy of `switchboard::seed::demo_phone` (src/seed.rs) and its `AREA_CODES`
/// table — the load generator talks to the server only over the network and does not link it.
/// If the seed's numbering changes, change this too; the test `simulated_calls_of_every_kind_complete_and_are_persisted`
/// in tests/integration/loadtest.rs fails when the two disagree.
pub fn demo_phone(n: u64) -> Option<String> {
    let areas = AREA_CODES.len() as u64;
    if n >= areas * LINES_PER_AREA {
        return None;
    }
    let area = AREA_CODES[(n % areas) as usize];
    let mut line = n / areas;
    if line >= 1212 {
        line += 1; // 555-1212 is directory assistance.
    }
    Some(format!("+1{area}555{line:04}"))
}

/// 555-0000 to 555-9999 without 555-1212.
const LINES_PER_AREA: u64 = 9_999;

/// Real US and Canadian area codes (copied from src/seed.rs, in the same order).
const AREA_CODES: &[u16] = &[
    201, 202, 203, 205, 206, 207, 208, 209, 210, 212, 213, 214, 215, 216, 217, 218, 219, 224, 225,
    228, 229, 231, 234, 239, 240, 248, 251, 252, 253, 254, 256, 260, 262, 267, 269, 270, 276, 281,
    301, 302, 303, 304, 305, 307, 308, 309, 310, 312, 313, 314, 315, 316, 317, 318, 319, 320, 321,
    323, 325, 330, 334, 336, 337, 339, 347, 351, 352, 360, 361, 385, 386, 401, 402, 404, 405, 406,
    407, 408, 409, 410, 412, 413, 414, 415, 416, 417, 419, 423, 424, 425, 432, 434, 435, 440, 443,
    469, 478, 479, 480, 484, 501, 502, 503, 504, 505, 507, 508, 509, 510, 512, 513, 514, 515, 516,
    517, 518, 520, 530, 540, 541, 551, 559, 561, 562, 563, 567, 570, 571, 573, 574, 575, 580, 585,
    586, 601, 602, 603, 604, 605, 606, 607, 608, 609, 610, 612, 614, 615, 616, 617, 618, 619, 620,
    623, 626, 630, 631, 636, 641, 646, 650, 651, 660, 661, 662, 678, 701, 702, 703, 704, 706, 707,
    708, 712, 713, 714, 715, 716, 717, 718, 719, 720, 724, 727, 731, 732, 734, 740, 754, 757, 760,
    763, 765, 770, 772, 773, 774, 775, 781, 785, 786, 801, 802, 803, 804, 805, 806, 808, 810, 812,
    813, 814, 815, 816, 817, 818, 828, 830, 831, 832, 843, 845, 847, 848, 850, 856, 857, 858, 859,
    860, 862, 863, 864, 865, 870, 872, 878, 901, 903, 904, 905, 906, 907, 908, 909, 910, 912, 913,
    914, 915, 916, 917, 918, 919, 920, 925, 928, 931, 936, 937, 940, 941, 947, 949, 951, 952, 954,
    956, 970, 971, 972, 973, 978, 979, 980, 985, 989,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_phones_follow_the_seed_formula() {
        assert_eq!(demo_phone(0).as_deref(), Some("+12015550000"));
        assert_eq!(demo_phone(1).as_deref(), Some("+12025550000"));
        let areas = AREA_CODES.len() as u64;
        assert_eq!(demo_phone(areas).as_deref(), Some("+12015550001"));
        assert_eq!(demo_phone(areas * 1212).as_deref(), Some("+12015551213"));
        assert_eq!(demo_phone(areas * LINES_PER_AREA), None);
    }

    #[test]
    fn new_callers_never_use_a_demo_number() {
        for i in 0..1000 {
            let p = new_caller_phone(42, i);
            assert!(p.starts_with("+1555"), "{p}");
            assert_eq!(p.len(), 12);
            let exchange: u32 = p[5..8].parse().unwrap();
            assert!((200..=999).contains(&exchange));
        }
    }

    #[test]
    fn plans_are_deterministic_and_mixed() {
        let mix = Mix {
            transport: TransportMix::Mixed,
            turns: 3,
            returning_fraction: 0.3,
            chaos_fraction: 0.05,
            barge_in_fraction: 0.2,
            seeded_customers: 1000,
            min_duration: Duration::ZERO,
            seed: 7,
            reply_timeout: Duration::from_secs(20),
            endpointing: Duration::from_millis(300),
        };
        let a = mix.plan(1, 5);
        let b = mix.plan(1, 5);
        assert_eq!(a.plan.from, b.plan.from);
        assert_eq!(a.plan.turns.len(), 3);
        let plans: Vec<Planned> = (0..1000).map(|i| mix.plan(1, i)).collect();
        let returning = plans
            .iter()
            .filter(|p| p.kind == CallerKind::Returning)
            .count();
        assert!((200..400).contains(&returning), "{returning}");
        assert!(plans.iter().any(|p| p.chaos));
        assert!(plans.iter().all(|p| !p.plan.turns[0].barge_in));
        for p in plans.iter().filter(|p| p.kind == CallerKind::New) {
            assert!(p.plan.turns[0].text.starts_with("My name is "));
        }
        assert_eq!(plans[0].plan.transport, Transport::Media);
        assert_eq!(plans[1].plan.transport, Transport::Relay);
    }
}
