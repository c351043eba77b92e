//! Batches in the binary `COPY` format, the cheapest way to hand Postgres many rows.
//!
//! A `COPY` writes its rows to the table in groups (one WAL record per heap page instead
//! of one per row) and reads each field in its binary form, with no array to unpack.

use platform::Timestamp;

use super::rows::{KeyCache, key_of};
use crate::model::{Topic, payload_base64};
use crate::store::NewMessage;

/// The fixed start of binary `COPY` data: signature, flags, header extension length.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// Marks the end of the rows.
const TRAILER: [u8; 2] = (-1i16).to_be_bytes();
/// Fields per row, as `sql::COPY_MESSAGES` lists them.
const FIELDS: i16 = 13;
/// Microseconds from the Unix epoch to 2000-01-01, the epoch of Postgres timestamps.
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Version byte in front of binary `jsonb`.
const JSONB_VERSION: u8 = 1;

/// Encodes the rows of a batch for `sql::COPY_MESSAGES`.
pub(super) fn encode(topic: &Topic, messages: &[NewMessage]) -> Vec<u8> {
    let topic_key = key_of(topic.as_str());
    let per_row: usize = 200 + topic.as_str().len();
    let payloads: usize = messages
        .iter()
        .map(|new| new.message.payload.as_base64().len())
        .sum();
    let mut out = Vec::with_capacity(HEADER.len() + messages.len() * per_row + payloads);
    out.extend_from_slice(HEADER);

    let (mut tenant_keys, mut project_keys) = (KeyCache::default(), KeyCache::default());
    for new in messages {
        let message = &new.message;
        out.extend_from_slice(&FIELDS.to_be_bytes());
        field(&mut out, message.message_id.as_bytes());
        field(&mut out, &topic_key.to_be_bytes());
        field(&mut out, topic.as_str().as_bytes());
        field(&mut out, &tenant_keys.key(&message.tenant_id).to_be_bytes());
        field(&mut out, message.tenant_id.as_bytes());
        field(
            &mut out,
            &project_keys.key(&message.project_id).to_be_bytes(),
        );
        field(&mut out, message.project_id.as_bytes());
        field(&mut out, message.key.as_bytes());
        field(&mut out, &message.priority.rank().to_be_bytes());
        field(
            &mut out,
            &postgres_micros(message.published_at).to_be_bytes(),
        );
        json_field(&mut out, message.attributes.as_json());
        payload_field(&mut out, message.payload.as_base64());
        field(&mut out, &postgres_micros(new.visible_at).to_be_bytes());
    }
    out.extend_from_slice(&TRAILER);
    out
}

/// Writes one field: its length, then its bytes.
fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    // Every field is bounded far below 2 GiB by the input limits.
    let len = i32::try_from(bytes.len()).unwrap_or(i32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Writes a `jsonb` field: the version byte, then the JSON text.
fn json_field(out: &mut Vec<u8>, json: &str) {
    let len = i32::try_from(json.len() + 1).unwrap_or(i32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.push(JSONB_VERSION);
    out.extend_from_slice(json.as_bytes());
}

/// Writes a `bytea` field, decoding the payload text in place and filling in the length
/// afterwards.
fn payload_field(out: &mut Vec<u8>, base64: &str) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    // The text was checked when the message was published.
    if payload_base64::decode_into(base64, out).is_err() {
        out.truncate(start + 4);
    }
    let len = i32::try_from(out.len() - start - 4).unwrap_or(i32::MAX);
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

fn postgres_micros(at: Timestamp) -> i64 {
    at.unix_micros() - POSTGRES_EPOCH_MICROS
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::model::{Attributes, Message, Payload, Priority};

    fn read_i16(bytes: &[u8]) -> i16 {
        i16::from_be_bytes([bytes[0], bytes[1]])
    }

    fn read_i32(bytes: &[u8]) -> usize {
        i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize
    }

    #[test]
    fn rows_follow_binary_copy_layout() {
        let topic = Topic::parse("orders").expect("valid");
        let published_at =
            Timestamp::from_unix_micros(POSTGRES_EPOCH_MICROS + 5).expect("in range");
        let message = Message {
            message_id: uuid::Uuid::from_u128(7),
            tenant_id: "t".into(),
            project_id: "p".into(),
            topic: "orders".into(),
            key: "".into(),
            priority: Priority::High,
            published_at,
            attributes: Attributes::from_map(&BTreeMap::from([("a".to_string(), "b".to_string())])),
            payload: Payload::from_bytes(b"hi"),
        };
        let new = NewMessage {
            message: Arc::new(message),
            visible_at: published_at,
        };
        let data = encode(&topic, &[new]);

        assert!(data.starts_with(HEADER));
        assert!(data.ends_with(&TRAILER));
        let mut rest = &data[HEADER.len()..data.len() - TRAILER.len()];
        assert_eq!(read_i16(rest), FIELDS);
        rest = &rest[2..];
        let mut fields = Vec::new();
        while !rest.is_empty() {
            let len = read_i32(rest);
            fields.push(rest[4..4 + len].to_vec());
            rest = &rest[4 + len..];
        }
        assert_eq!(fields.len(), FIELDS as usize);
        assert_eq!(fields[0], uuid::Uuid::from_u128(7).as_bytes());
        assert_eq!(fields[1], key_of("orders").to_be_bytes());
        assert_eq!(fields[2], b"orders");
        assert_eq!(fields[7], b"");
        assert_eq!(fields[8], 2i16.to_be_bytes());
        assert_eq!(fields[9], 5i64.to_be_bytes());
        assert_eq!(fields[10], b"\x01{\"a\":\"b\"}");
        assert_eq!(fields[11], b"hi");
    }

    #[test]
    fn keys_never_change() {
        // Stored rows hold these keys, so the function must never change.
        assert_eq!(key_of("orders"), 2_023_957_755_765_852_388);
        assert_ne!(key_of("orders"), key_of("orders.dead-letter"));
    }
}
