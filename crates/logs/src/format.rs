//! Records as JSON, written by hand into a byte buffer. The stdout sink writes every
//! accepted event this way, and `GET /logs/recent` every event it returns. Strings are
//! scanned for characters to escape eight bytes per step and copied whole when they have
//! none, and a timestamp already formatted is reused.

use platform::Timestamp;
use platform::time::RFC3339_LEN;

use crate::model::{Fields, Level, RecordRef};

/// Writes records as JSON objects with the fields in the order of the API: `source`,
/// `level`, `message`, `fields`, `timestamp`, `received_at`, `sequence`.
///
/// It remembers the last `timestamp` and `received_at` it formatted: the events of one
/// batch share `received_at`, and events sent without a timestamp share that too.
#[derive(Debug, Default)]
pub(crate) struct RecordWriter {
    timestamp: FormattedTime,
    received_at: FormattedTime,
}

impl RecordWriter {
    /// Appends one record as a JSON object.
    pub(crate) fn write(&mut self, out: &mut Vec<u8>, record: RecordRef<'_>) {
        let event = record.event;
        out.extend_from_slice(b"{\"source\":");
        push_string(out, &event.source);
        out.extend_from_slice(b",\"level\":");
        out.extend_from_slice(quoted_level(event.level));
        out.extend_from_slice(b",\"message\":");
        push_string(out, &event.message);
        out.extend_from_slice(b",\"fields\":");
        push_fields(out, &event.fields);
        out.extend_from_slice(b",\"timestamp\":");
        self.timestamp.push(out, event.timestamp);
        out.extend_from_slice(b",\"received_at\":");
        self.received_at.push(out, record.received_at);
        out.extend_from_slice(b",\"sequence\":");
        push_u64(out, record.sequence);
        out.push(b'}');
    }
}

fn quoted_level(level: Level) -> &'static [u8] {
    match level {
        Level::Debug => b"\"DEBUG\"",
        Level::Info => b"\"INFO\"",
        Level::Warn => b"\"WARN\"",
        Level::Error => b"\"ERROR\"",
    }
}

/// The text of the timestamp formatted last.
#[derive(Debug)]
struct FormattedTime {
    /// `None` until a timestamp is formatted.
    instant: Option<Timestamp>,
    text: [u8; RFC3339_LEN],
}

impl Default for FormattedTime {
    fn default() -> Self {
        FormattedTime {
            instant: None,
            text: [0; RFC3339_LEN],
        }
    }
}

impl FormattedTime {
    /// Appends the timestamp as a JSON string, formatting it only when it changed.
    fn push(&mut self, out: &mut Vec<u8>, timestamp: Timestamp) {
        if self.instant != Some(timestamp) {
            if timestamp.write_rfc3339(&mut self.text).is_none() {
                // Years outside 0000–9999 take the general formatter and are not kept.
                push_string(out, &timestamp.to_string());
                return;
            }
            self.instant = Some(timestamp);
        }
        out.push(b'"');
        out.extend_from_slice(&self.text);
        out.push(b'"');
    }
}

/// Appends `value` in decimal.
fn push_u64(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// For each byte, the character after the backslash that escapes it, or 0 when the byte
/// stands for itself. JSON escapes `"`, `\` and the control characters below U+0020,
/// five of them in a short form and the rest as `\u00XX`.
const ESCAPES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = b'u';
        byte += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Eight copies of one byte.
const fn repeated(byte: u8) -> u64 {
    u64::from_ne_bytes([byte; 8])
}

/// True when any of the eight bytes of `word` needs escaping. Subtracting 0x20 from every
/// byte sets the high bit of a byte below 0x20, and XOR turns a quote or a backslash into
/// a zero byte, which subtracting 1 detects the same way. Borrows make other high bits
/// wrong only above a byte that matched, so the mask is zero exactly when none did.
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = repeated(0x01);
    const HIGH: u64 = repeated(0x80);
    let below_space = word.wrapping_sub(repeated(0x20));
    let quote = word ^ repeated(b'"');
    let backslash = word ^ repeated(b'\\');
    let zero_quote = quote.wrapping_sub(ONES) & !quote;
    let zero_backslash = backslash.wrapping_sub(ONES) & !backslash;
    (below_space | zero_quote | zero_backslash) & !word & HIGH != 0
}

/// Appends `fields` as a JSON object of strings. Records written as JSON and the Postgres
/// sink's `jsonb` column both use this text.
pub(crate) fn push_fields(out: &mut Vec<u8>, fields: &Fields) {
    out.push(b'{');
    for (index, (name, value)) in fields.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        push_string(out, name);
        out.push(b':');
        push_string(out, value);
    }
    out.push(b'}');
}

/// Appends `text` as a JSON string.
pub(crate) fn push_string(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    match first_escape(bytes) {
        None => out.extend_from_slice(bytes),
        Some(first) => push_escaped(out, bytes, first),
    }
    out.push(b'"');
}

/// Finds the first byte that needs escaping, testing eight bytes per step.
fn first_escape(bytes: &[u8]) -> Option<usize> {
    if bytes.len() < 8 {
        return first_escape_in(bytes, 0);
    }
    let mut words = bytes.chunks_exact(8);
    for (index, chunk) in words.by_ref().enumerate() {
        if needs_escape(word_at(chunk)) {
            return first_escape_in(bytes, index * 8);
        }
    }
    // The last few bytes are tested with the eight that end the string, which overlap
    // bytes already tested.
    let rest = words.remainder().len();
    if rest > 0 && needs_escape(word_at(&bytes[bytes.len() - 8..])) {
        return first_escape_in(bytes, bytes.len() - rest);
    }
    None
}

/// Reads the first eight bytes of `chunk` as one word.
fn word_at(chunk: &[u8]) -> u64 {
    u64::from_ne_bytes(chunk[..8].try_into().expect("eight bytes"))
}

fn first_escape_in(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len()).find(|&index| ESCAPES[usize::from(bytes[index])] != 0)
}

/// Appends `bytes` with each byte from `first` on escaped where JSON needs it.
fn push_escaped(out: &mut Vec<u8>, bytes: &[u8], first: usize) {
    out.extend_from_slice(&bytes[..first]);
    // `copied` is where the bytes not yet appended start.
    let mut copied = first;
    for (index, &byte) in bytes.iter().enumerate().skip(first) {
        let escape = ESCAPES[usize::from(byte)];
        if escape == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[copied..index]);
        out.push(b'\\');
        out.push(escape);
        if escape == b'u' {
            out.extend_from_slice(b"00");
            out.push(HEX_DIGITS[usize::from(byte >> 4)]);
            out.push(HEX_DIGITS[usize::from(byte & 0x0f)]);
        }
        copied = index + 1;
    }
    out.extend_from_slice(&bytes[copied..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Fields, LogEvent, Text};

    #[test]
    fn strings_match_serde_json() {
        let mut samples: Vec<String> = [
            "",
            "plain",
            "exactly8",
            "sixteen bytes ok",
            "quote \" inside",
            "back\\slash",
            "tab\tnew\nline\rfeed\u{0c}bell\u{07}back\u{08}",
            "\u{0}\u{1f} edges \u{7f} and \u{80}",
            "é, ✓ and 🎉 are not escaped",
            "\"\"\"\"\"\"\"\"\"",
            "trailing control\u{01}",
        ]
        .iter()
        .map(|text| text.to_string())
        .collect();
        // Every ASCII character at every offset of an eight-byte word.
        for byte in 0u8..0x80 {
            for offset in 0..9 {
                let mut text = "x".repeat(offset);
                text.push(char::from(byte));
                text.push_str("yyyyyyyy");
                samples.push(text);
            }
        }
        for sample in samples {
            let mut out = Vec::new();
            push_string(&mut out, &sample);
            let expected = serde_json::to_string(&sample).expect("serializes");
            assert_eq!(
                String::from_utf8(out).expect("utf-8"),
                expected,
                "{sample:?}"
            );
        }
    }

    #[test]
    fn numbers_are_decimal() {
        for value in [0, 7, 10, 99, 12_345, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, value);
            assert_eq!(out, value.to_string().as_bytes());
        }
    }

    fn formatted(timestamp: Timestamp) -> String {
        let mut out = Vec::new();
        FormattedTime::default().push(&mut out, timestamp);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn timestamps_match_display() {
        let samples = [
            "1970-01-01T00:00:00Z",
            "1999-12-31T23:59:59.999999Z",
            "2000-02-29T12:00:00.000001Z",
            "2024-05-01T14:00:00.123456+02:00",
            "2100-03-01T00:00:00.5Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999Z",
            // UTC is a year earlier, so the general formatter writes it.
            "0000-01-01T00:30:00+01:00",
        ];
        for sample in samples {
            let timestamp = Timestamp::parse(sample).expect("valid");
            assert_eq!(formatted(timestamp), format!("\"{timestamp}\""), "{sample}");
        }
        // Steps of about 37 days and 1 µs short of a second cover every month, leap days
        // and sub-second digits.
        let mut micros: i64 = 0;
        for _ in 0..2_000 {
            let timestamp = Timestamp::from_unix_micros(micros).expect("in range");
            assert_eq!(formatted(timestamp), format!("\"{timestamp}\""));
            micros += 3_214_567_999_999;
        }
    }

    #[test]
    fn reused_text_follows_the_timestamp() {
        let mut time = FormattedTime::default();
        let mut out = Vec::new();
        for sample in [
            "2030-01-01T00:00:00Z",
            "2030-01-01T00:00:00Z",
            "2031-01-01T00:00:00Z",
        ] {
            time.push(&mut out, Timestamp::parse(sample).expect("valid"));
        }
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "\"2030-01-01T00:00:00.000000Z\"\"2030-01-01T00:00:00.000000Z\"\
             \"2031-01-01T00:00:00.000000Z\""
        );
    }

    #[test]
    fn record_has_every_field_in_order() {
        let at = Timestamp::parse("2030-01-02T03:04:05.678901Z").expect("valid");
        let event = LogEvent {
            source: Text::from("api"),
            level: Level::Warn,
            message: Text::from("slow \"query\""),
            fields: Fields::from_pairs(vec![
                (Text::from("route"), Text::from("/x")),
                (Text::from("a"), Text::from("1")),
            ]),
            timestamp: at,
        };
        let record = RecordRef {
            event: &event,
            received_at: at,
            sequence: 7,
        };
        let mut out = Vec::new();
        RecordWriter::default().write(&mut out, record);
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "{\"source\":\"api\",\"level\":\"WARN\",\"message\":\"slow \\\"query\\\"\",\
             \"fields\":{\"a\":\"1\",\"route\":\"/x\"},\
             \"timestamp\":\"2030-01-02T03:04:05.678901Z\",\
             \"received_at\":\"2030-01-02T03:04:05.678901Z\",\"sequence\":7}"
        );
    }
}
