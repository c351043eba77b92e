//! Request bodies to validated events: one JSON object, a JSON array, or NDJSON lines.
//!
//! Strings are read as slices of the shared body wherever JSON needs no unescaping, so
//! no string is copied unless it contains escapes. The first parse tracks no paths.
//! Only when it fails is the input parsed again to name the field at fault.

mod raw;
mod validate;

use bytes::Bytes;
use bytestring::ByteString;
use platform::Timestamp;

use crate::model::{Level, LogEvent};
use raw::{JsonStr, RawEvent};
use validate::{FieldError, validate};

/// Bodies at least this large whose kept events use less than half of them are copied
/// out, so that queued events never pin much more memory than their own text.
const DETACH_MIN_BODY: usize = 4096;

const JSON_WHITESPACE: [char; 4] = [' ', '\t', '\n', '\r'];

/// The encoding of a request body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFormat {
    /// One JSON object, or a JSON array of them.
    Json,
    /// One JSON object per line (`application/x-ndjson`); blank lines are skipped.
    Ndjson,
}

/// A body that cannot be accepted; `field` is the JSON path or `line N` at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidInput {
    pub field: Option<String>,
    pub message: String,
}

impl InvalidInput {
    fn body(message: impl Into<String>) -> Self {
        InvalidInput {
            field: None,
            message: message.into(),
        }
    }

    fn at(field: impl Into<String>, message: impl Into<String>) -> Self {
        InvalidInput {
            field: Some(field.into()),
            message: message.into(),
        }
    }
}

/// The events of a valid body.
#[derive(Debug, Default)]
pub struct ParsedBody {
    /// Events at or above the minimum level, in body order.
    pub events: Vec<LogEvent>,
    /// Events below the minimum level, validated and dropped.
    pub filtered: usize,
}

/// Parses and validates a whole body; any invalid event rejects all of them.
///
/// Events without a timestamp get `receipt`; events below `min_level` are counted in
/// `filtered` and dropped.
pub fn parse_body(
    body: Bytes,
    format: BodyFormat,
    receipt: Timestamp,
    min_level: Level,
) -> Result<ParsedBody, InvalidInput> {
    let text = utf8_body(body, format)?;
    let mut collector = Collector {
        body: &text,
        receipt,
        min_level,
        parsed: ParsedBody::default(),
        kept_bytes: 0,
    };
    match format {
        BodyFormat::Json => parse_json(&text, &mut collector)?,
        BodyFormat::Ndjson => parse_ndjson(&text, &mut collector)?,
    }

    let kept_bytes = collector.kept_bytes;
    let mut parsed = collector.parsed;
    if parsed.events.is_empty() && parsed.filtered == 0 {
        return Err(InvalidInput::body(
            "the batch is empty; send at least one event",
        ));
    }
    if text.len() >= DETACH_MIN_BODY && kept_bytes * 2 < text.len() {
        for event in &mut parsed.events {
            *event = event.detached();
        }
    }
    Ok(parsed)
}

/// Checks the whole body is UTF-8 without copying it; nothing is ever truncated.
fn utf8_body(body: Bytes, format: BodyFormat) -> Result<ByteString, InvalidInput> {
    let bytes = body.clone();
    ByteString::try_from(body).map_err(|error| {
        let offset = error.valid_up_to();
        match format {
            BodyFormat::Json => InvalidInput::body(format!(
                "the request body is not valid UTF-8 (invalid byte at offset {offset})"
            )),
            BodyFormat::Ndjson => {
                let line = bytes[..offset].iter().filter(|&&b| b == b'\n').count() + 1;
                InvalidInput::at(
                    format!("line {line}"),
                    format!("line {line} is not valid UTF-8"),
                )
            }
        }
    })
}

/// Accumulates validated events, dropping those below the minimum level.
struct Collector<'b> {
    body: &'b ByteString,
    receipt: Timestamp,
    min_level: Level,
    parsed: ParsedBody,
    kept_bytes: usize,
}

impl Collector<'_> {
    /// Validates one event; `locate` turns a field error into one that names its place.
    fn add(
        &mut self,
        raw: RawEvent<JsonStr<'_>>,
        locate: impl FnOnce(FieldError) -> InvalidInput,
    ) -> Result<(), InvalidInput> {
        let event = validate(raw, self.body, self.receipt).map_err(locate)?;
        if event.level < self.min_level {
            self.parsed.filtered += 1;
        } else {
            self.kept_bytes += event.text_len();
            self.parsed.events.push(event);
        }
        Ok(())
    }
}

fn parse_json(text: &str, collector: &mut Collector<'_>) -> Result<(), InvalidInput> {
    let start = text.trim_start_matches(JSON_WHITESPACE);
    match start.as_bytes().first() {
        Some(b'{') => {
            let raw: RawEvent<JsonStr<'_>> =
                serde_json::from_str(text).map_err(|error| object_failure(text, &error))?;
            collector.add(raw, |error| InvalidInput::at(error.field, error.message))
        }
        Some(b'[') => {
            let raws: Vec<RawEvent<JsonStr<'_>>> =
                serde_json::from_str(text).map_err(|error| array_failure(text, &error))?;
            collector.parsed.events.reserve(raws.len());
            for (index, raw) in raws.into_iter().enumerate() {
                collector.add(raw, |error| {
                    InvalidInput::at(format!("[{index}].{}", error.field), error.message)
                })?;
            }
            Ok(())
        }
        Some(_) => Err(InvalidInput::body(
            "the body must be a JSON object or an array of objects",
        )),
        None => Err(InvalidInput::body(
            "the request body is empty; send a JSON object or an array of objects",
        )),
    }
}

fn parse_ndjson(text: &str, collector: &mut Collector<'_>) -> Result<(), InvalidInput> {
    for (index, line) in text.split('\n').enumerate() {
        let number = index + 1;
        let line = line.trim_matches(JSON_WHITESPACE);
        if line.is_empty() {
            continue;
        }
        let at_line = |message: String| {
            InvalidInput::at(
                format!("line {number}"),
                format!("line {number}: {message}"),
            )
        };
        if !line.starts_with('{') {
            return Err(at_line("each line must be a JSON object".into()));
        }
        let raw: RawEvent<JsonStr<'_>> =
            serde_json::from_str(line).map_err(|error| at_line(line_failure(line, &error)))?;
        collector.add(raw, |error| at_line(error.message))?;
    }
    Ok(())
}

/// Explains why one object failed the fast parse, naming the field at fault.
fn object_failure(text: &str, error: &serde_json::Error) -> InvalidInput {
    match platform::extract::parse_json::<RawEvent<String>>(text.as_bytes()) {
        Err(api) => InvalidInput {
            field: api.field().map(str::to_string),
            message: api.message().to_string(),
        },
        // Only the fast parse rejects some inputs, such as a repeated member name.
        Ok(_) => InvalidInput::body(format!("the body is invalid: {error}")),
    }
}

/// Explains why an array failed the fast parse, naming the first item at fault.
fn array_failure(text: &str, error: &serde_json::Error) -> InvalidInput {
    let items = match platform::extract::parse_json::<Vec<serde_json::Value>>(text.as_bytes()) {
        Ok(items) => items,
        Err(api) => {
            return InvalidInput {
                field: api.field().map(str::to_string),
                message: api.message().to_string(),
            };
        }
    };
    for (index, item) in items.into_iter().enumerate() {
        let prefix = format!("[{index}]");
        if let Err(api) = platform::extract::from_value::<RawEvent<String>>(item, &prefix) {
            return InvalidInput {
                field: Some(api.field().map_or(prefix, str::to_string)),
                message: api.message().to_string(),
            };
        }
    }
    InvalidInput::body(format!("the body is invalid: {error}"))
}

/// Explains why one NDJSON line failed the fast parse, naming the field inside it.
fn line_failure(line: &str, error: &serde_json::Error) -> String {
    if error.is_syntax() || error.is_eof() {
        return format!("not valid JSON (column {})", error.column());
    }
    match platform::extract::parse_json::<RawEvent<String>>(line.as_bytes()) {
        Err(api) => api.message().to_string(),
        Ok(_) => format!("invalid event: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt() -> Timestamp {
        Timestamp::parse("2030-01-01T00:00:00Z").expect("valid")
    }

    fn parse(format: BodyFormat, body: &str) -> Result<ParsedBody, InvalidInput> {
        parse_body(
            Bytes::copy_from_slice(body.as_bytes()),
            format,
            receipt(),
            Level::Info,
        )
    }

    fn reject(format: BodyFormat, body: &str) -> InvalidInput {
        parse(format, body).expect_err("invalid body")
    }

    #[test]
    fn plain_strings_share_the_body() {
        let body = Bytes::from_static(br#"{"source":"api","message":"hi","fields":{"k":"v"}}"#);
        let parsed =
            parse_body(body.clone(), BodyFormat::Json, receipt(), Level::Info).expect("valid");
        let event = &parsed.events[0];
        let range = body.as_ptr_range();
        assert!(range.contains(&event.source.as_ptr()));
        assert!(range.contains(&event.message.as_ptr()));
        assert_eq!(event.fields.get("k"), Some("v"));
    }

    #[test]
    fn escaped_strings_are_unescaped() {
        let parsed = parse(
            BodyFormat::Json,
            r#"{"source":"a\"b","message":"line\nbreak \u00e9"}"#,
        )
        .expect("valid");
        assert_eq!(parsed.events[0].source.as_str(), "a\"b");
        assert_eq!(parsed.events[0].message.as_str(), "line\nbreak é");
    }

    #[test]
    fn defaults_level_and_timestamp() {
        let parsed = parse(
            BodyFormat::Json,
            r#"{"source":"a","message":"m","level":""}"#,
        )
        .expect("valid");
        assert_eq!(parsed.events[0].level, Level::Info);
        assert_eq!(parsed.events[0].timestamp, receipt());
        assert!(parsed.events[0].fields.is_empty());
    }

    #[test]
    fn filters_below_min_level_after_validating() {
        let body = "{\"source\":\"a\",\"message\":\"m\",\"level\":\"debug\"}\n\
                    {\"source\":\"a\",\"message\":\"m\",\"level\":\"error\"}\n";
        let parsed = parse_body(
            Bytes::copy_from_slice(body.as_bytes()),
            BodyFormat::Ndjson,
            receipt(),
            Level::Warn,
        )
        .expect("valid");
        assert_eq!(parsed.events.len(), 1);
        assert_eq!(parsed.filtered, 1);

        let bad = "{\"source\":\"a\",\"message\":\"m\",\"level\":\"debug\",\"fields\":{\"k\":1}}";
        let error = parse_body(
            Bytes::copy_from_slice(bad.as_bytes()),
            BodyFormat::Ndjson,
            receipt(),
            Level::Warn,
        )
        .expect_err("filtered events are validated too");
        assert_eq!(error.field.as_deref(), Some("line 1"));
    }

    #[test]
    fn ndjson_counts_every_line() {
        let body = "\n{\"source\":\"a\",\"message\":\"m\"}\r\n  \n{\"source\":\"a\"}\n";
        let error = reject(BodyFormat::Ndjson, body);
        assert_eq!(error.field.as_deref(), Some("line 4"));
        assert_eq!(error.message, "line 4: message is required");
    }

    #[test]
    fn ndjson_names_field_inside_line() {
        let body = "{\"source\":\"a\",\"message\":\"m\",\"fields\":{\"k\":5}}";
        let error = reject(BodyFormat::Ndjson, body);
        assert_eq!(error.field.as_deref(), Some("line 1"));
        assert!(error.message.contains("fields.k"), "{}", error.message);
    }

    #[test]
    fn ndjson_syntax_error_names_line() {
        let body = "{\"source\":\"a\",\"message\":\"m\"}\n{\"source\": }";
        let error = reject(BodyFormat::Ndjson, body);
        assert_eq!(error.field.as_deref(), Some("line 2"));
        assert!(
            error.message.contains("not valid JSON"),
            "{}",
            error.message
        );

        let error = reject(BodyFormat::Ndjson, "[1, 2]");
        assert_eq!(error.field.as_deref(), Some("line 1"));
    }

    #[test]
    fn array_errors_name_the_item() {
        let body =
            r#"[{"source":"a","message":"m"},{"source":"a","message":"m","fields":{"k":true}}]"#;
        assert_eq!(
            reject(BodyFormat::Json, body).field.as_deref(),
            Some("[1].fields.k")
        );
        let body = r#"[{"source":"a","message":"m"},{"message":"m"}]"#;
        assert_eq!(
            reject(BodyFormat::Json, body).field.as_deref(),
            Some("[1].source")
        );
        let body = r#"[{"source":"a","message":"m"}, 7]"#;
        assert_eq!(reject(BodyFormat::Json, body).field.as_deref(), Some("[1]"));
    }

    #[test]
    fn object_errors_name_the_field() {
        let cases = [
            (r#"{"source":5,"message":"m"}"#, Some("source")),
            (
                r#"{"source":"a","message":"m","fields":{"k":null}}"#,
                Some("fields.k"),
            ),
            (
                r#"{"source":"a","message":"m","fields":[]}"#,
                Some("fields"),
            ),
            (
                r#"{"source":"a","message":"m","level":"loud"}"#,
                Some("level"),
            ),
            (
                r#"{"source":"a","message":"m","timestamp":"soon"}"#,
                Some("timestamp"),
            ),
            (r#"{"source":"a","message":"a\u0000b"}"#, Some("message")),
            (
                r#"{"source":"a","message":"m","fields":{"":"v"}}"#,
                Some("fields"),
            ),
            (r#"{"source":"a\u0001","message":"m"}"#, Some("source")),
            (r#"{"source":"a","message":"m""#, None),
            (r#""text""#, None),
            ("", None),
        ];
        for (body, field) in cases {
            assert_eq!(
                reject(BodyFormat::Json, body).field.as_deref(),
                field,
                "{body}"
            );
        }
    }

    #[test]
    fn empty_batches_are_invalid() {
        for (format, body) in [
            (BodyFormat::Json, "[]"),
            (BodyFormat::Json, " [ ] "),
            (BodyFormat::Ndjson, ""),
            (BodyFormat::Ndjson, "\n \r\n\n"),
        ] {
            let error = reject(format, body);
            assert!(
                error.message.contains("empty"),
                "{body:?}: {}",
                error.message
            );
        }
    }

    #[test]
    fn invalid_utf8_is_rejected() {
        let body =
            Bytes::from_static(b"{\"source\":\"a\",\"message\":\"m\"}\n{\"source\":\"\xff\"}");
        let error = parse_body(body.clone(), BodyFormat::Ndjson, receipt(), Level::Info)
            .expect_err("invalid");
        assert_eq!(error.field.as_deref(), Some("line 2"));
        let error =
            parse_body(body, BodyFormat::Json, receipt(), Level::Info).expect_err("invalid");
        assert!(error.message.contains("UTF-8"), "{}", error.message);
    }

    #[test]
    fn nul_characters_are_rejected() {
        let escaped = [
            (r#"{"source":"a","message":"a\u0000b"}"#, "message"),
            (r#"{"source":"\u0000","message":"m"}"#, "source"),
            (
                r#"{"source":"a","message":"m","fields":{"k\u0000":"v"}}"#,
                "fields.k\0",
            ),
            (
                r#"{"source":"a","message":"m","fields":{"k":"\u0000"}}"#,
                "fields.k",
            ),
        ];
        for (body, field) in escaped {
            let error = reject(BodyFormat::Json, body);
            assert_eq!(error.field.as_deref(), Some(field), "{body}");
            assert!(error.message.contains("NUL"), "{}", error.message);
        }
        // A raw NUL byte is a control character, which JSON strings cannot contain.
        let raw = "{\"source\":\"a\",\"message\":\"a\0b\"}";
        assert_eq!(reject(BodyFormat::Json, raw).field, None);
    }

    #[test]
    fn long_input_is_shortened_in_messages() {
        let body = format!(
            r#"{{"source":"a","message":"m","level":"{}"}}"#,
            "x".repeat(500)
        );
        let error = reject(BodyFormat::Json, &body);
        assert!(error.message.len() < 200, "{}", error.message);
    }

    #[test]
    fn sparse_bodies_are_copied_out() {
        let padding = " ".repeat(DETACH_MIN_BODY);
        let body = format!(r#"{padding}{{"source":"a","message":"m"}}"#);
        let bytes = Bytes::from(body);
        let parsed =
            parse_body(bytes.clone(), BodyFormat::Json, receipt(), Level::Info).expect("valid");
        assert!(
            !bytes
                .as_ptr_range()
                .contains(&parsed.events[0].source.as_ptr())
        );
    }
}
