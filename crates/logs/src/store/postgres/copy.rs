//! Events encoded in the binary format of `COPY ... FROM STDIN (FORMAT binary)`. Postgres
//! loads such rows with less work than an INSERT, and parses no text but the JSON of
//! `fields`.

use std::sync::Arc;

use platform::Timestamp;

use crate::format::push_fields;
use crate::model::{Batch, RecordRef};

/// The statement the rows are sent to; the columns are in the order `push_row` writes.
pub(super) const COPY_EVENTS: &str = "COPY logs.events \
     (origin, sequence, source, severity, message, fields, event_time, received_at) \
     FROM STDIN (FORMAT binary)";

/// The signature, the flags (no OIDs) and the length of the header extension (none).
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// A field count of -1 ends the data.
const TRAILER: [u8; 2] = (-1i16).to_be_bytes();
const COLUMNS: i16 = 8;
/// The version byte that starts a binary `jsonb` value; the JSON text follows.
const JSONB_VERSION: u8 = 1;
/// Microseconds from the Unix epoch to 2000-01-01T00:00:00Z, where Postgres counts from.
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Writes every event of `batches`, framed as a whole `COPY` input.
pub(super) fn encode(batches: &[Arc<Batch>], out: &mut Vec<u8>) {
    out.extend_from_slice(HEADER);
    for batch in batches {
        for record in batch.records() {
            push_row(out, batch, record);
        }
    }
    out.extend_from_slice(&TRAILER);
}

fn push_row(out: &mut Vec<u8>, batch: &Batch, record: RecordRef<'_>) {
    let event = record.event;
    out.extend_from_slice(&COLUMNS.to_be_bytes());
    push_field(out, batch.origin.as_bytes());
    // Sequences start at 1 and grow by one per event, so they stay far below i64::MAX.
    push_field(out, &(record.sequence as i64).to_be_bytes());
    push_field(out, event.source.as_bytes());
    push_field(out, &event.level.severity_number().to_be_bytes());
    push_field(out, event.message.as_bytes());
    push_fields_jsonb(out, record);
    push_field(out, &postgres_micros(event.timestamp).to_be_bytes());
    push_field(out, &postgres_micros(record.received_at).to_be_bytes());
}

/// Writes one field: its length in bytes, then the bytes.
fn push_field(out: &mut Vec<u8>, value: &[u8]) {
    out.extend_from_slice(&field_len(value.len()).to_be_bytes());
    out.extend_from_slice(value);
}

/// Writes `fields` as a `jsonb` value, whose length is known only once it is written.
fn push_fields_jsonb(out: &mut Vec<u8>, record: RecordRef<'_>) {
    let length_at = out.len();
    out.extend_from_slice(&[0; 4]);
    out.push(JSONB_VERSION);
    push_fields(out, &record.event.fields);
    let length = field_len(out.len() - length_at - 4);
    out[length_at..length_at + 4].copy_from_slice(&length.to_be_bytes());
}

/// Converts a field's length to the format's 32-bit length. The request body limit keeps
/// every field far below the 1 GiB that Postgres allows.
fn field_len(len: usize) -> i32 {
    i32::try_from(len).expect("a field shorter than 2 GiB")
}

fn postgres_micros(timestamp: Timestamp) -> i64 {
    timestamp.unix_micros() - POSTGRES_EPOCH_MICROS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Fields, Level, LogEvent, Text};

    /// Reads the fields of the next row, advancing `rest`.
    fn read_row<'a>(rest: &mut &'a [u8]) -> Vec<&'a [u8]> {
        let count = i16::from_be_bytes([rest[0], rest[1]]);
        *rest = &rest[2..];
        (0..count)
            .map(|_| {
                let len = i32::from_be_bytes(rest[..4].try_into().expect("four bytes"));
                let value = &rest[4..4 + len as usize];
                *rest = &rest[4 + len as usize..];
                value
            })
            .collect()
    }

    #[test]
    fn rows_follow_the_binary_layout() {
        let at = Timestamp::parse("2000-01-01T00:00:01.000002Z").expect("valid");
        let origin = uuid::Uuid::now_v7();
        let batch = Arc::new(Batch {
            origin,
            received_at: at,
            first_sequence: 41,
            events: vec![LogEvent {
                source: Text::from("api"),
                level: Level::Warn,
                message: Text::from("slow"),
                fields: Fields::from_pairs(vec![(Text::from("k"), Text::from("a\"b"))]),
                timestamp: Timestamp::EPOCH,
            }],
        });
        let mut out = Vec::new();
        encode(&[batch], &mut out);

        assert!(out.starts_with(b"PGCOPY\n\xff\r\n\0"));
        assert_eq!(
            out.len(),
            HEADER.len() + 2 + 8 * 4 + 16 + 8 + 3 + 2 + 4 + 13 + 8 + 8 + 2
        );
        let mut rest = &out[HEADER.len()..];
        let row = read_row(&mut rest);
        assert_eq!(row.len(), 8);
        assert_eq!(row[0], origin.as_bytes());
        assert_eq!(row[1], 41i64.to_be_bytes());
        assert_eq!(row[2], b"api");
        assert_eq!(row[3], 13i16.to_be_bytes());
        assert_eq!(row[4], b"slow");
        assert_eq!(row[5], b"\x01{\"k\":\"a\\\"b\"}");
        assert_eq!(row[6], (-POSTGRES_EPOCH_MICROS).to_be_bytes());
        assert_eq!(row[7], 1_000_002i64.to_be_bytes());
        assert_eq!(rest, TRAILER);
    }
}
