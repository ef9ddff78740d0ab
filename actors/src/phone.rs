//! Phone numbers: owns the [`E164`] newtype and the normalisation of raw caller ids into it, with
//! the `phonenumber` crate (libphonenumber's metadata, compiled in). It never looks anything up:
//! a number that parses here may still belong to no customer.
//!
//! # What becomes an [`E164`]
//! Caller ids arrive as `+15550123456` (Twilio), `(555) 012-3456`, `+1-555-012-3456`,
//! `15550123456`, `0044 20 7946 0000`, but also `anonymous`, `restricted`, `client:alice` and
//! `sip:bob@example.com`. Only the first kind is normalised; the rest stay opaque caller ids that
//! never match a customer. The rules, in order:
//!
//! 1. The raw text may hold only digits, one leading `+`, spaces and the separators `-().`/`;
//!    anything else (a letter, `:` or `@`) means it is not a phone number. That alone rejects
//!    `anonymous`, `client:...`, `sip:...`, extensions (`x12`) and vanity numbers (`1-800-FLOWERS`).
//! 2. At most 15 digits after a leading `+` (the E.164 limit); at most 18 without one, leaving room
//!    for an international prefix (`011` + 15). The result itself never has more than 15.
//! 3. Readings, first acceptable one wins:
//!    - With a leading `+`: the digits exactly as written, then with a national prefix after the
//!      country code dropped (`+33 (0)6 ...`). Never with the default region's conventions: see
//!      [`LITERAL_READING_REGION`] for the phonenumber 0.3.10 behaviour this works around.
//!    - Without `+`: the number in the default region (`(555) 012-3456`, and `15550123456` since
//!      `1` is the US national prefix); then the digits after the region's country code, as
//!      written and without the region's national prefix (the library over-strips some, e.g.
//!      Russian `8 800 ...`); then, if it starts with `00`, as `+` and the rest (the ITU
//!      international prefix, which regions such as the US do not use); then, if it does not start
//!      with `0`, as `+` and the digits (`5517999991292` → `+5517999991292`). So a digit string
//!      that fits the default region's numbering plan is read as local even if it would also be
//!      valid abroad: a number without `+` is local first. (Every `+` reading here is read the
//!      same two ways as a number written with `+`.)
//! 4. A reading is acceptable if libphonenumber calls it valid **or** if its national number
//!    matches the general pattern of its country code's numbering plan (right length, right
//!    leading digits) although no assigned range contains it. The second half exists because
//!    `+1 555 01xx xxxx` — area code 555 — is how fictional US numbers are written in docs and
//!    tests, and libphonenumber calls them invalid; a caller id that looks like a real number must
//!    still reach the CRM lookup, where it simply finds no one. The seed data's `+1 NPA 555 XXXX`
//!    numbers (real area codes, 555 exchange) are valid anyway. Numbers too short or too long for
//!    their country, or with an unknown country code (`+999...`), are rejected.

use std::fmt;
use std::str::FromStr;

use phonenumber::country::Id;
use phonenumber::metadata::DATABASE;
use phonenumber::{Mode, PhoneNumber};
use serde::{Deserialize, Serialize};

use crate::domain::Caller;

/// The most digits an E.164 number has (country code included).
const MAX_E164_DIGITS: usize = 15;
/// The most digits accepted without a leading `+`: 15 plus a three-digit international prefix.
const MAX_DIGITS_WITHOUT_PLUS: usize = MAX_E164_DIGITS + 3;

/// A phone number in E.164 form: `+`, country code and subscriber number, at most 15 digits.
/// Only [`E164::parse`] (and deserializing, which checks the same way) makes one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct E164(String);

/// The region whose national conventions apply to numbers written without a country code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Region(Id);

/// Why a raw caller id is not a phone number. Messages never repeat the number (caller ids are
/// personal data and these errors may be logged).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("caller id is empty")]
    Empty,
    #[error("caller id is not a phone number: it contains {0:?}")]
    NotANumber(char),
    #[error("caller id has {digits} digits, more than a phone number can have")]
    TooLong { digits: usize },
    #[error("caller id is not a number in any numbering plan")]
    Invalid,
    #[error(
        "unknown phone region {0:?}: expected a two-letter ISO 3166 country code such as \"US\""
    )]
    UnknownRegion(String),
}

// === impl Region ===

impl Region {
    pub const US: Region = Region(Id::US);

    /// The two-letter code, e.g. `"US"`.
    pub fn as_str(&self) -> &str {
        self.0.as_ref()
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_ref())
    }
}

impl FromStr for Region {
    type Err = PhoneError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_region(s)
    }
}

/// Parse a two-letter region code from configuration (`"US"`, `"br"`); the error names the bad
/// value. Only regions with phone metadata are accepted.
pub fn parse_region(code: &str) -> Result<Region, PhoneError> {
    let upper = code.trim().to_ascii_uppercase();
    // `Id` also parses names that are not two letters long (none today, but the guard is cheap).
    if upper.len() != 2 || !upper.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(PhoneError::UnknownRegion(code.to_owned()));
    }
    let id: Id = upper
        .parse()
        .map_err(|_| PhoneError::UnknownRegion(code.to_owned()))?;
    if DATABASE.by_id(id.as_ref()).is_none() {
        return Err(PhoneError::UnknownRegion(code.to_owned()));
    }
    Ok(Region(id))
}

// === impl E164 ===

impl E164 {
    /// Normalise a raw caller id; see the module documentation for the rules.
    pub fn parse(raw: &str, default_region: Region) -> Result<E164, PhoneError> {
        let text = raw.trim();
        if text.is_empty() {
            return Err(PhoneError::Empty);
        }
        let (has_plus, body) = match text.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if let Some(bad) = body.chars().find(|c| !is_number_char(*c)) {
            return Err(PhoneError::NotANumber(bad));
        }
        let digits: String = body.chars().filter(char::is_ascii_digit).collect();
        if digits.is_empty() {
            return Err(PhoneError::Invalid);
        }
        let limit = if has_plus {
            MAX_E164_DIGITS
        } else {
            MAX_DIGITS_WITHOUT_PLUS
        };
        if digits.len() > limit {
            return Err(PhoneError::TooLong {
                digits: digits.len(),
            });
        }

        let mut readings: Vec<(Option<Id>, String)> = Vec::with_capacity(10);
        if has_plus {
            push_international(&mut readings, &digits);
        } else {
            readings.push((Some(default_region.0), digits.clone()));
            // phonenumber 0.3.10 strips the national prefix even when that leaves a number that
            // fits no plan (Russian `8 800 123 45 67`, toll-free, became `+7 001234567`), and
            // can strip it twice; so also read the digits after the region's country code, as
            // written and without one national prefix.
            if let Some(plan) = DATABASE.by_id(default_region.0.as_ref()) {
                let code = plan.country_code();
                push_international(&mut readings, &format!("{code}{digits}"));
                if let Some(rest) = plan.national_prefix().and_then(|p| digits.strip_prefix(p)) {
                    push_international(&mut readings, &format!("{code}{rest}"));
                }
            }
            if let Some(international) = digits.strip_prefix("00") {
                push_international(&mut readings, international);
            } else if !digits.starts_with('0') {
                push_international(&mut readings, &digits);
            }
        }
        for (region, candidate) in readings {
            let Ok(number) = phonenumber::parse(region, &candidate) else {
                continue;
            };
            if !is_acceptable(&number) {
                continue;
            }
            let e164 = number.format().mode(Mode::E164).to_string();
            let e164_digits = e164.chars().filter(char::is_ascii_digit).count();
            if e164_digits > MAX_E164_DIGITS {
                return Err(PhoneError::TooLong {
                    digits: e164_digits,
                });
            }
            return Ok(E164(e164));
        }
        Err(PhoneError::Invalid)
    }

    /// `+` followed by digits, e.g. `"+15550123456"`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A region whose metadata has no national prefix: parsing a `+` number "in" it strips nothing.
/// phonenumber 0.3.10 strips a national prefix even from a number written with `+` — the default
/// region's (with region US, `+5511961234567` became `+55961234567`) or, with no region, the
/// number's own (`+78001234567`, a Russian toll-free number, became `+7001234567`).
/// libphonenumber proper keeps the digits after a `+` as they are unless stripping is needed to
/// make the number fit; so we read them literally first (here), then as the library does, for
/// people who write `+33 (0)6 ...`. A test checks that Spain still has no national prefix.
pub const LITERAL_READING_REGION: &str = "ES";
const LITERAL_READING_ID: Id = Id::ES;

/// `+digits` read literally, then with the library's national-prefix stripping.
fn push_international(readings: &mut Vec<(Option<Id>, String)>, digits: &str) {
    let plus = format!("+{digits}");
    readings.push((Some(LITERAL_READING_ID), plus.clone()));
    readings.push((None, plus));
}

/// Separators people and systems put in phone numbers. No letters: `x`/`ext` extensions and vanity
/// numbers are not caller ids.
fn is_number_char(c: char) -> bool {
    c.is_ascii_digit() || c.is_whitespace() || matches!(c, '-' | '(' | ')' | '.' | '/')
}

/// Valid, or at least shaped like a number of its country code's plan (see the module docs).
fn is_acceptable(number: &PhoneNumber) -> bool {
    if number.extension().is_some() {
        return false;
    }
    if number.is_valid() {
        return true;
    }
    let national = number.national().to_string();
    // The descriptor's own `is_match` only anchors the start (so `+1 555 012 34567`, eleven
    // national digits, would match a ten-digit plan); require the match to cover the whole number.
    DATABASE
        .by_code(&number.code().value())
        .is_some_and(|plans| {
            plans.iter().any(|plan| {
                plan.descriptors()
                    .general()
                    .national_number()
                    .find(&national)
                    .is_some_and(|m| m.start() == 0 && m.end() == national.len())
            })
        })
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for E164 {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<E164> for String {
    fn from(number: E164) -> String {
        number.0
    }
}

/// Deserializing accepts only a number already in canonical E.164 form, so a stored value that
/// was edited by hand cannot smuggle in `anonymous` or `(555) 012-3456`.
impl TryFrom<String> for E164 {
    type Error = PhoneError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        // The region is irrelevant: canonical form starts with `+`.
        let parsed = E164::parse(&value, Region::US)?;
        if parsed.0 != value {
            return Err(PhoneError::Invalid);
        }
        Ok(parsed)
    }
}

/// The caller as the call sees it: the raw id kept as it came, `e164` only for real numbers.
pub fn caller_from_raw(raw: &str, default_region: Region) -> Caller {
    Caller {
        raw: raw.to_owned(),
        e164: E164::parse(raw, default_region).ok().map(E164::into_string),
    }
}

/// Load the phone metadata now rather than during the first call. The first parse in a process
/// deserializes libphonenumber's whole database: measured (2-core dev VM, 3 runs) at 65–120 ms
/// in a release build and 480–750 ms in a debug build, against 10–50 µs for a later `+1` parse.
/// The first number of each further country still compiles that country's patterns (~2–5 ms
/// release); warming every country was measured at 0.6 s release / 4.5 s debug and some
/// patterns were compiled again later anyway, so only the database and the North American plan
/// (the seed data's, `+1`, in both `+` and national form) are warmed. Call once at start.
pub fn warm_up() {
    // The results do not matter; the side effects (loaded database, compiled patterns) do.
    let _ = E164::parse("+1 650 253 0000", Region::US);
    let _ = E164::parse("(650) 253-0000", Region::US);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The literal reading of `+` numbers relies on this region having no national prefix.
    #[test]
    fn literal_reading_region_strips_nothing() {
        let plan = DATABASE.by_id(LITERAL_READING_REGION);
        assert!(plan.is_some_and(|m| m.national_prefix().is_none()
            && m.national_prefix_for_parsing().is_none()
            && m.national_prefix_transform_rule().is_none()));
        assert_eq!(LITERAL_READING_ID.as_ref(), LITERAL_READING_REGION);
    }
}
