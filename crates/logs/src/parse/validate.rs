//! Rules for one event: required fields, levels, timestamps, fields and input limits.

use std::borrow::Cow;
use std::fmt;

use bytestring::ByteString;
use platform::Timestamp;

use super::raw::{JsonStr, RawEvent, RawFields};
use crate::model::{Fields, Level, LogEvent, MAX_FIELD_NAME_LEN, MAX_FIELDS, MAX_SOURCE_LEN, Text};

/// Maximum length of client input quoted in an error message, in characters.
const MAX_ECHO_CHARS: usize = 64;

/// A validation failure inside one event, before its place in the body is known.
pub(super) struct FieldError {
    pub(super) field: String,
    pub(super) message: String,
}

impl FieldError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Checks one event and builds it; a missing level is INFO and a missing timestamp is
/// `receipt`. Text borrowed from the body stays a slice of `body`.
pub(super) fn validate(
    raw: RawEvent<JsonStr<'_>>,
    body: &ByteString,
    receipt: Timestamp,
) -> Result<LogEvent, FieldError> {
    let source = required_text("source", raw.source, body)?;
    if source.len() > MAX_SOURCE_LEN {
        return Err(FieldError::new(
            "source",
            format!("source is longer than {MAX_SOURCE_LEN} bytes"),
        ));
    }
    if source.chars().any(char::is_control) {
        return Err(FieldError::new(
            "source",
            "source contains control characters",
        ));
    }

    let message = required_text("message", raw.message, body)?;

    let level = match non_empty(raw.level) {
        None => Level::Info,
        Some(text) => Level::parse(&text).ok_or_else(|| {
            FieldError::new(
                "level",
                format!("level must be {}, not {}", Level::EXPECTED, Echo(&text)),
            )
        })?,
    };

    let timestamp = match non_empty(raw.timestamp) {
        None => receipt,
        Some(text) => Timestamp::parse(&text).map_err(|_| {
            FieldError::new(
                "timestamp",
                format!(
                    "timestamp must be an RFC 3339 date-time such as 2024-05-01T12:00:00Z, not {}",
                    Echo(&text)
                ),
            )
        })?,
    };

    let fields = match raw.fields {
        None => Fields::default(),
        Some(RawFields(pairs)) => checked_fields(pairs, body)?,
    };

    Ok(LogEvent {
        source,
        level,
        message,
        fields,
        timestamp,
    })
}

fn checked_fields(
    pairs: Vec<(JsonStr<'_>, JsonStr<'_>)>,
    body: &ByteString,
) -> Result<Fields, FieldError> {
    if pairs.len() > MAX_FIELDS {
        return Err(FieldError::new(
            "fields",
            format!(
                "fields has {} entries; at most {MAX_FIELDS} are allowed",
                pairs.len()
            ),
        ));
    }
    let mut texts = Vec::with_capacity(pairs.len());
    for (name, value) in pairs {
        if name.0.is_empty() {
            return Err(FieldError::new(
                "fields",
                "fields must not contain an empty name",
            ));
        }
        if name.0.len() > MAX_FIELD_NAME_LEN {
            return Err(FieldError::new(
                "fields",
                format!("field names are limited to {MAX_FIELD_NAME_LEN} bytes"),
            ));
        }
        if name.has_nul() || value.has_nul() {
            // Built only here: the path costs an allocation per field.
            let path = format!("fields.{}", name.0);
            reject_nul(&path, &name.0)?;
            reject_nul(&path, &value.0)?;
        }
        texts.push((name.into_text(body), value.into_text(body)));
    }
    Ok(Fields::from_pairs(texts))
}

fn required_text(
    field: &str,
    value: Option<JsonStr<'_>>,
    body: &ByteString,
) -> Result<Text, FieldError> {
    match value.filter(|text| !text.0.is_empty()) {
        Some(text) => {
            if text.has_nul() {
                reject_nul(field, &text.0)?;
            }
            Ok(text.into_text(body))
        }
        None => Err(FieldError::new(field, format!("{field} is required"))),
    }
}

fn non_empty<'a>(value: Option<JsonStr<'a>>) -> Option<Cow<'a, str>> {
    value.map(|text| text.0).filter(|text| !text.is_empty())
}

/// Postgres text and jsonb cannot hold U+0000, so no store accepts it.
fn reject_nul(field: &str, text: &str) -> Result<(), FieldError> {
    if text.contains('\0') {
        return Err(FieldError::new(
            field,
            format!("{field} contains a NUL character (\\u0000), which cannot be stored"),
        ));
    }
    Ok(())
}

/// Quotes client input in a message, shortened to a readable length.
struct Echo<'a>(&'a str);

impl fmt::Display for Echo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(MAX_ECHO_CHARS) {
            Some((cut, _)) => write!(f, "{:?}…", &self.0[..cut]),
            None => write!(f, "{:?}", self.0),
        }
    }
}
