//! The serde shapes of an event as sent, read without copying strings where possible.

use std::borrow::Cow;
use std::fmt;

use bytestring::ByteString;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::model::{MAX_FIELDS, Text};

/// An event as sent, before validation. `S` is [`JsonStr`] on the fast path and `String`
/// when the input is parsed again to name the field at fault.
#[derive(Deserialize)]
#[serde(expecting = "a log event object")]
pub(super) struct RawEvent<S> {
    pub(super) source: Option<S>,
    pub(super) level: Option<S>,
    pub(super) message: Option<S>,
    pub(super) fields: Option<RawFields<S>>,
    pub(super) timestamp: Option<S>,
}

/// The `fields` object as name-value pairs in body order.
pub(super) struct RawFields<S>(pub(super) Vec<(S, S)>);

impl<'de, S: Deserialize<'de>> Deserialize<'de> for RawFields<S> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PairsVisitor<S>(std::marker::PhantomData<S>);

        impl<'de, S: Deserialize<'de>> Visitor<'de> for PairsVisitor<S> {
            type Value = RawFields<S>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of string values")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0).min(MAX_FIELDS));
                while let Some(pair) = map.next_entry::<S, S>()? {
                    pairs.push(pair);
                }
                Ok(RawFields(pairs))
            }
        }

        deserializer.deserialize_map(PairsVisitor(std::marker::PhantomData))
    }
}

/// A JSON string borrowed from the body when it has no escapes, owned otherwise.
pub(super) struct JsonStr<'a>(pub(super) Cow<'a, str>);

impl JsonStr<'_> {
    /// True when the string contains U+0000. JSON forbids raw control characters inside
    /// strings, so only the escape `\u0000` makes one, and only a string with escapes
    /// is owned; a borrowed string is never scanned.
    pub(super) fn has_nul(&self) -> bool {
        match &self.0 {
            Cow::Borrowed(_) => false,
            Cow::Owned(text) => text.contains('\0'),
        }
    }

    pub(super) fn into_text(self, body: &ByteString) -> Text {
        match self.0 {
            Cow::Borrowed(part) => Text::slice_of(body, part),
            Cow::Owned(text) => Text::from(text),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for JsonStr<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;

        impl<'de> Visitor<'de> for StrVisitor {
            type Value = Cow<'de, str>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(text))
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(text.to_string()))
            }

            fn visit_string<E: de::Error>(self, text: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(text))
            }
        }

        deserializer.deserialize_str(StrVisitor).map(JsonStr)
    }
}
