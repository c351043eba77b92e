//! The JSON forms of an ingest body: one sample object, or an array of them.
//!
//! Batches are read straight into borrowed strings, so a well-formed batch costs a few
//! allocations beyond one per labelled sample. Only a rejected body is read a second time,
//! with paths tracked, to name the field at fault (`[3].value`).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

use platform::ApiError;
use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, Visitor};

/// A parsed ingest body.
pub enum IngestBody<'a> {
    /// One sample object.
    One(RawSample<Text<'a>>),
    /// An array of samples.
    Batch(Vec<RawSample<Text<'a>>>),
}

/// A sample as the client sent it; `None` means absent or `null`.
#[derive(Debug, Deserialize)]
#[serde(expecting = "a sample object")]
pub struct RawSample<S> {
    pub namespace: Option<S>,
    pub name: Option<S>,
    pub value: Option<f64>,
    pub labels: Option<RawLabels<S>>,
    pub timestamp: Option<S>,
}

/// Labels in the order sent, duplicates included: JSON objects may repeat a key, and a
/// map type would keep only the last value.
#[derive(Debug)]
pub struct RawLabels<S>(pub Vec<(S, S)>);

impl<'de, S: Deserialize<'de>> Deserialize<'de> for RawLabels<S> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries<S>(PhantomData<S>);

        impl<'de, S: Deserialize<'de>> Visitor<'de> for Entries<S> {
            type Value = RawLabels<S>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of string values")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(4).min(64));
                while let Some(entry) = map.next_entry::<S, S>()? {
                    entries.push(entry);
                }
                Ok(RawLabels(entries))
            }
        }

        deserializer.deserialize_map(Entries(PhantomData))
    }
}

/// A JSON string, borrowed from the body unless it contained escapes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Text<'a>(pub Cow<'a, str>);

impl Deref for Text<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Text<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;

        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(value)))
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(value.to_string())))
            }

            fn visit_string<E: de::Error>(self, value: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(value)))
            }
        }

        deserializer.deserialize_str(TextVisitor)
    }
}

/// Parses an ingest body: an object is one sample, an array a batch.
pub fn parse(bytes: &[u8]) -> Result<IngestBody<'_>, ApiError> {
    let first = bytes.iter().copied().find(|b| !b.is_ascii_whitespace());
    match first {
        Some(b'[') => match serde_json::from_slice(bytes) {
            Ok(samples) => Ok(IngestBody::Batch(samples)),
            Err(_) => Err(rejection::<Vec<RawSample<String>>>(bytes)),
        },
        Some(b'{') => match serde_json::from_slice(bytes) {
            Ok(sample) => Ok(IngestBody::One(sample)),
            Err(_) => Err(rejection::<RawSample<String>>(bytes)),
        },
        _ => match platform::extract::parse_json::<serde_json::Value>(bytes) {
            Ok(_) => Err(ApiError::invalid_argument(
                "the body must be a sample object or an array of sample objects",
            )),
            Err(error) => Err(error),
        },
    }
}

/// Builds the error for a body that failed to parse, naming the field at fault.
fn rejection<T: DeserializeOwned>(bytes: &[u8]) -> ApiError {
    if let Some(field) = out_of_range_number::<T>(bytes) {
        return ApiError::invalid_field(
            field.clone(),
            format!("{field} must be a finite number within the range of a 64-bit float"),
        );
    }
    match platform::extract::parse_json::<T>(bytes) {
        Err(error) => error,
        // The borrowing and the owned forms accept the same documents.
        Ok(_) => ApiError::invalid_argument("the request body could not be read as samples"),
    }
}

/// Finds the path of a number too large for `f64` (`1e999`), if that is what failed.
///
/// serde_json reports such a number as a syntax error and exposes no error code, so the
/// message is the only way to tell it from malformed JSON.
fn out_of_range_number<T: DeserializeOwned>(bytes: &[u8]) -> Option<String> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let error = serde_path_to_error::deserialize::<_, T>(&mut deserializer).err()?;
    let path = error.path().to_string();
    let out_of_range = error.inner().to_string().starts_with("number out of range");
    (out_of_range && path != ".").then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(body: &str) -> ApiError {
        match parse(body.as_bytes()) {
            Ok(_) => panic!("{body} was accepted"),
            Err(error) => error,
        }
    }

    #[test]
    fn object_is_one_sample_and_array_a_batch() {
        let body =
            br#"{"namespace": "ns", "name": "n", "value": 1.5, "labels": {"b": "2", "a": "1"}}"#;
        let Ok(IngestBody::One(sample)) = parse(body) else {
            panic!("one sample");
        };
        assert_eq!(sample.value, Some(1.5));
        let labels = sample.labels.expect("labels").0;
        assert_eq!(labels[0].0.as_ref(), "b");
        assert!(
            matches!(labels[0].0.0, Cow::Borrowed(_)),
            "unescaped text is borrowed"
        );

        let Ok(IngestBody::Batch(samples)) = parse(b" [{}, {\"value\": 2}]") else {
            panic!("a batch");
        };
        assert_eq!(samples.len(), 2);
    }

    #[test]
    fn escaped_text_is_decoded() {
        let Ok(IngestBody::One(sample)) = parse(br#"{"name": "a\u0041\n"}"#) else {
            panic!("one sample");
        };
        assert_eq!(sample.name.as_deref(), Some("aA\n"));
    }

    #[test]
    fn duplicate_labels_are_kept() {
        let Ok(IngestBody::One(sample)) = parse(br#"{"labels": {"a": "1", "a": "2"}}"#) else {
            panic!("one sample");
        };
        assert_eq!(sample.labels.expect("labels").0.len(), 2);
    }

    #[test]
    fn wrong_types_name_their_path() {
        let cases = [
            (r#"{"value": "1"}"#, Some("value")),
            (r#"{"value": true}"#, Some("value")),
            (r#"{"namespace": 5}"#, Some("namespace")),
            (r#"{"labels": {"route": 5}}"#, Some("labels.route")),
            (r#"{"labels": ["x"]}"#, Some("labels")),
            (r#"[{}, {}, {}, {"value": "high"}]"#, Some("[3].value")),
            (r#"[{}, 7]"#, Some("[1]")),
            (r#"{"value": 1e999}"#, Some("value")),
            (r#"[{"value": -1e400}]"#, Some("[0].value")),
            (r#"{"value": "#, None),
            ("42", None),
            ("", None),
        ];
        for (body, field) in cases {
            let error = error_of(body);
            assert_eq!(
                error.status(),
                axum::http::StatusCode::BAD_REQUEST,
                "{body}"
            );
            assert_eq!(error.field(), field, "{body}: {}", error.message());
        }
    }
}
