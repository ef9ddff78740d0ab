//! Lenient JSON building blocks for the WebSocket parsers, and a fast JSON string writer.
//!
//! The parsers deserialize into structs whose leaves are [`Scalar`]s: every value is accepted and
//! remembers its JSON kind, so a wrong type becomes a precise [`FrameError`] naming the field
//! instead of an opaque serde message. Strings borrow from the frame whenever they hold no escapes.
//!
//! JSON `null` counts as absent everywhere: a serializer that writes `null` for "no value" means
//! the same as one that leaves the field out (a required field that is `null` is "missing").

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::error::{FrameError, echo};

/// One JSON value, kept only as far as the parsers need it.
#[derive(Debug, Default)]
pub(crate) enum Scalar<'a> {
    #[default]
    Absent,
    Str(Cow<'a, str>),
    UInt(u64),
    /// A negative or fractional number: never valid where this crate expects a number.
    OtherNumber,
    Bool(bool),
    Object,
    Array,
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Scalar<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar::UInt(v))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Scalar::OtherNumber)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Scalar::OtherNumber)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Absent)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Absent)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Object)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Array)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A nested JSON object deserialized into `T`, or a note that the field held something else.
#[derive(Debug, Default)]
pub(crate) enum Nested<T> {
    #[default]
    Absent,
    Value(T),
    WrongType,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Nested<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Nested<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Nested::Value)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Nested::WrongType)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Nested::WrongType)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Nested::WrongType)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Nested::WrongType)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Nested::WrongType)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Nested::WrongType)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Nested::Absent)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Nested::Absent)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A JSON array of arbitrary values, or a note that the field held something else.
#[derive(Debug, Default)]
pub(crate) enum List<'a> {
    #[default]
    Absent,
    Items(Vec<Scalar<'a>>),
    WrongType,
}

impl<'de: 'a, 'a> Deserialize<'de> for List<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Scalar::deserialize_list(d)? {
            Ok(items) => Ok(List::Items(items)),
            Err(()) => Ok(List::WrongType),
        }
    }
}

impl<'a> Scalar<'a> {
    fn deserialize_list<'de: 'a, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Result<Vec<Self>, ()>, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Result<Vec<Scalar<'a>>, ()>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                // Bounded by the frame size limit, so an attacker cannot make this large.
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Scalar<'a>>()? {
                    items.push(item);
                }
                Ok(Ok(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Err(()))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Err(()))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Err(()))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Err(()))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Err(()))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Err(()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Ok(Vec::new()))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Ok(Vec::new()))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A JSON object of arbitrary values (for `customParameters`).
pub(crate) type RawMap<'a> = Nested<BTreeMap<String, Scalar<'a>>>;

/// Parses a whole frame into the lenient struct `T`.
///
/// Going through [`Nested`] matters: a derived struct would also accept a JSON array as a
/// positional struct. Only syntax errors, EOF, duplicate keys or a non-object top level can fail
/// here, all of which mean "this is not the JSON object we expect".
pub(crate) fn parse_object<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, FrameError> {
    match serde_json::from_str::<Nested<T>>(text) {
        Ok(Nested::Value(t)) => Ok(t),
        Ok(_) => Err(FrameError::NotJson("top level is not an object".to_owned())),
        Err(e) => Err(FrameError::NotJson(e.to_string())),
    }
}

// === field extraction ===

pub(crate) fn req_obj<T>(v: Nested<T>, field: &'static str) -> Result<T, FrameError> {
    match v {
        Nested::Value(t) => Ok(t),
        Nested::Absent => Err(FrameError::MissingField(field)),
        Nested::WrongType => Err(FrameError::WrongType {
            field,
            expected: "an object",
        }),
    }
}

pub(crate) fn opt_obj<T>(v: Nested<T>, field: &'static str) -> Result<Option<T>, FrameError> {
    match v {
        Nested::Value(t) => Ok(Some(t)),
        Nested::Absent => Ok(None),
        Nested::WrongType => Err(FrameError::WrongType {
            field,
            expected: "an object",
        }),
    }
}

pub(crate) fn opt_str<'a>(
    v: Scalar<'a>,
    field: &'static str,
) -> Result<Option<Cow<'a, str>>, FrameError> {
    match v {
        Scalar::Absent => Ok(None),
        Scalar::Str(s) => Ok(Some(s)),
        _ => Err(FrameError::WrongType {
            field,
            expected: "a string",
        }),
    }
}

pub(crate) fn req_str<'a>(v: Scalar<'a>, field: &'static str) -> Result<Cow<'a, str>, FrameError> {
    opt_str(v, field)?.ok_or(FrameError::MissingField(field))
}

pub(crate) fn req_string(v: Scalar<'_>, field: &'static str) -> Result<String, FrameError> {
    req_str(v, field).map(Cow::into_owned)
}

pub(crate) fn opt_string(v: Scalar<'_>, field: &'static str) -> Result<Option<String>, FrameError> {
    opt_str(v, field).map(|s| s.map(Cow::into_owned))
}

pub(crate) fn opt_bool(v: Scalar<'_>, field: &'static str) -> Result<Option<bool>, FrameError> {
    match v {
        Scalar::Absent => Ok(None),
        Scalar::Bool(b) => Ok(Some(b)),
        _ => Err(FrameError::WrongType {
            field,
            expected: "a boolean",
        }),
    }
}

/// A JSON number holding a non-negative integer (fractions and negatives are the wrong type).
pub(crate) fn opt_uint(v: Scalar<'_>, field: &'static str) -> Result<Option<u64>, FrameError> {
    match v {
        Scalar::Absent => Ok(None),
        Scalar::UInt(n) => Ok(Some(n)),
        _ => Err(FrameError::WrongType {
            field,
            expected: "a non-negative integer number",
        }),
    }
}

pub(crate) fn req_uint(v: Scalar<'_>, field: &'static str) -> Result<u64, FrameError> {
    opt_uint(v, field)?.ok_or(FrameError::MissingField(field))
}

/// Parses ASCII decimal digits only: `u64::from_str` would also take a leading `+`.
pub(crate) fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A counter that Twilio sends as a JSON string of decimal digits; a JSON number is rejected
/// rather than coerced, because it means the sender is not speaking Twilio's format.
pub(crate) fn req_counter(v: Scalar<'_>, field: &'static str) -> Result<u64, FrameError> {
    let s = match v {
        Scalar::Absent => return Err(FrameError::MissingField(field)),
        Scalar::Str(s) => s,
        _ => {
            return Err(FrameError::WrongType {
                field,
                expected: "a string",
            });
        }
    };
    parse_decimal(&s).ok_or_else(|| FrameError::BadCounter {
        field,
        value: echo(&s),
    })
}

/// A string-to-string object; any non-string value is the wrong type.
pub(crate) fn string_map(
    v: RawMap<'_>,
    field: &'static str,
) -> Result<BTreeMap<String, String>, FrameError> {
    let Some(raw) = opt_obj(v, field)? else {
        return Ok(BTreeMap::new());
    };
    raw.into_iter()
        .map(|(k, v)| match v {
            Scalar::Str(s) => Ok((k, s.into_owned())),
            _ => Err(FrameError::WrongType {
                field,
                expected: "an object of strings",
            }),
        })
        .collect()
}

// === writing ===

/// Appends `s` as a JSON string literal (with quotes), escaping per RFC 8259.
pub(crate) fn write_str(buf: &mut String, s: &str) {
    buf.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => continue,
        };
        // Escaped bytes are ASCII, so `start..i` always falls on char boundaries.
        buf.push_str(s.get(start..i).unwrap_or_default());
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            buf.push_str("\\u00");
            buf.push(char::from(HEX[usize::from(b >> 4)]));
            buf.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            buf.push_str(escape);
        }
        start = i + 1;
    }
    buf.push_str(s.get(start..).unwrap_or_default());
    buf.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_str_escapes_quotes_backslashes_and_controls() {
        let mut buf = String::new();
        write_str(&mut buf, "a\"b\\c\nd\u{1}é");
        assert_eq!(buf, r#""a\"b\\c\nd\u0001é""#);
        let back: String = serde_json::from_str(&buf).unwrap();
        assert_eq!(back, "a\"b\\c\nd\u{1}é");
    }

    #[test]
    fn decimal_counters_take_digits_only() {
        assert_eq!(parse_decimal("0"), Some(0));
        assert_eq!(parse_decimal("18446744073709551615"), Some(u64::MAX));
        for bad in [
            "",
            "+1",
            "-1",
            " 1",
            "1.0",
            "1e3",
            "18446744073709551616",
            "٣",
        ] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
    }
}
