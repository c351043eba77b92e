//! The JSON of message envelopes and deliveries, written straight into a response body.
//!
//! Pulls and batch publishes return up to 1000 envelopes. Writing them field by field
//! skips the generic serializer's per-field calls, and the attributes, kept as JSON
//! text, go out unchanged.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use platform::Timestamp;
use serde::Deserialize;
use uuid::Uuid;

use crate::model::{Attributes, Delivery, Message, Payload, Priority, payload_base64};

/// Returns `{"messages":[...]}` with every message.
pub fn messages_body(messages: &[Arc<Message>]) -> Vec<u8> {
    let mut out = body_with_capacity(messages.iter().map(|message| &**message));
    out.extend_from_slice(b"{\"messages\":[");
    for (index, message) in messages.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.push(b'{');
        write_fields(&mut out, message);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    out
}

/// Returns `{"messages":[...]}` with every delivery: the envelope plus its ack id and
/// attempt.
pub fn deliveries_body(deliveries: &[Delivery]) -> Vec<u8> {
    let mut out = body_with_capacity(deliveries.iter().map(|delivery| &*delivery.message));
    out.extend_from_slice(b"{\"messages\":[");
    for (index, delivery) in deliveries.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.push(b'{');
        write_fields(&mut out, &delivery.message);
        out.extend_from_slice(b",\"ack_id\":");
        write_id(&mut out, delivery.ack_id);
        // Writing into a Vec cannot fail.
        let _ = write!(out, ",\"delivery_attempt\":{}}}", delivery.delivery_attempt);
    }
    out.extend_from_slice(b"]}");
    out
}

/// Returns one envelope as a JSON object.
pub fn message_body(message: &Message) -> Vec<u8> {
    let mut out = body_with_capacity(std::iter::once(message));
    out.push(b'{');
    write_fields(&mut out, message);
    out.push(b'}');
    out
}

/// Allocates about the size of the envelopes at once, so the body is not copied as it
/// grows.
fn body_with_capacity<'a>(messages: impl Iterator<Item = &'a Message>) -> Vec<u8> {
    let size: usize = messages
        .map(|message| 320 + message.payload.as_base64().len() + message.attributes.as_json().len())
        .sum();
    Vec::with_capacity(size + 16)
}

/// Writes the envelope's fields, in the order clients have always seen them.
fn write_fields(out: &mut Vec<u8>, message: &Message) {
    out.extend_from_slice(b"\"message_id\":");
    write_id(out, message.message_id);
    out.extend_from_slice(b",\"tenant_id\":");
    write_string(out, &message.tenant_id);
    out.extend_from_slice(b",\"project_id\":");
    write_string(out, &message.project_id);
    out.extend_from_slice(b",\"topic\":");
    write_string(out, &message.topic);
    out.extend_from_slice(b",\"key\":");
    write_string(out, &message.key);
    out.extend_from_slice(b",\"priority\":\"");
    out.extend_from_slice(message.priority.as_str().as_bytes());
    out.extend_from_slice(b"\",\"published_at\":\"");
    let _ = write!(out, "{}", message.published_at);
    out.extend_from_slice(b"\",\"attributes\":");
    out.extend_from_slice(message.attributes.as_json().as_bytes());
    out.extend_from_slice(b",\"payload_base64\":\"");
    // The base64 alphabet needs no escaping.
    out.extend_from_slice(message.payload.as_base64().as_bytes());
    out.push(b'"');
}

fn write_id(out: &mut Vec<u8>, id: Uuid) {
    let mut buffer = Uuid::encode_buffer();
    out.push(b'"');
    out.extend_from_slice(id.hyphenated().encode_lower(&mut buffer).as_bytes());
    out.push(b'"');
}

/// Writes a JSON string, escaping only when the text needs it.
fn write_string(out: &mut Vec<u8>, text: &str) {
    let plain = text
        .bytes()
        .all(|byte| byte >= 0x20 && byte != b'"' && byte != b'\\');
    if plain {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, text);
    }
}

/// An envelope read back from JSON, as the Postgres store keeps the messages of an
/// idempotent publish.
#[derive(Deserialize)]
struct StoredEnvelope {
    message_id: Uuid,
    tenant_id: String,
    project_id: String,
    topic: String,
    key: String,
    priority: Priority,
    published_at: Timestamp,
    attributes: BTreeMap<String, String>,
    payload_base64: String,
}

/// Reads a JSON array of envelopes, as `messages_body` writes them inside its object.
pub fn read_messages(json: &[u8]) -> Result<Vec<Message>, String> {
    let stored: Vec<StoredEnvelope> =
        serde_json::from_slice(json).map_err(|error| error.to_string())?;
    stored
        .into_iter()
        .map(|envelope| {
            // Checked again because the text goes to clients as it is.
            payload_base64::decode(&envelope.payload_base64).map_err(|error| error.to_string())?;
            Ok(Message {
                message_id: envelope.message_id,
                tenant_id: envelope.tenant_id.into(),
                project_id: envelope.project_id.into(),
                topic: envelope.topic.into(),
                key: envelope.key.into(),
                priority: envelope.priority,
                published_at: envelope.published_at,
                attributes: Attributes::from_map(&envelope.attributes),
                payload: Payload::from_valid_text(envelope.payload_base64),
            })
        })
        .collect()
}

/// Returns the JSON array of envelopes that `read_messages` reads.
pub fn messages_array(messages: &[Arc<Message>]) -> Vec<u8> {
    let mut body = messages_body(messages);
    // `{"messages":` before the array and `}` after it.
    body.truncate(body.len() - 1);
    body.split_off(b"{\"messages\":".len())
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn sample(key: &str, tenant: &str) -> Message {
        let attributes = BTreeMap::from([
            ("b".to_string(), "2".to_string()),
            ("a".to_string(), "quote \" here".to_string()),
        ]);
        Message {
            message_id: Uuid::from_u128(1),
            tenant_id: tenant.into(),
            project_id: "p".into(),
            topic: "orders".into(),
            key: key.into(),
            priority: Priority::High,
            published_at: Timestamp::EPOCH,
            attributes: Attributes::from_map(&attributes),
            payload: Payload::from_bytes(b"hi"),
        }
    }

    #[test]
    fn envelope_has_contract_fields() {
        let body = message_body(&sample("k", "t"));
        let json: Value = serde_json::from_slice(&body).expect("valid JSON");

        assert_eq!(json["message_id"], "00000000-0000-0000-0000-000000000001");
        assert_eq!(json["tenant_id"], "t");
        assert_eq!(json["topic"], "orders");
        assert_eq!(json["key"], "k");
        assert_eq!(json["priority"], "high");
        assert_eq!(json["published_at"], "1970-01-01T00:00:00.000000Z");
        assert_eq!(json["attributes"]["a"], "quote \" here");
        assert_eq!(json["attributes"]["b"], "2");
        assert_eq!(json["payload_base64"], "aGk=");
    }

    #[test]
    fn strings_are_escaped() {
        let body = message_body(&sample("line\nbreak \\ \"q\"", "tab\there"));
        let json: Value = serde_json::from_slice(&body).expect("valid JSON");

        assert_eq!(json["key"], "line\nbreak \\ \"q\"");
        assert_eq!(json["tenant_id"], "tab\there");
    }

    #[test]
    fn deliveries_add_ack_id_and_attempt() {
        let delivery = Delivery {
            message: Arc::new(sample("", "t")),
            ack_id: Uuid::from_u128(2),
            delivery_attempt: 3,
        };
        let body = deliveries_body(&[delivery.clone(), delivery]);
        let json: Value = serde_json::from_slice(&body).expect("valid JSON");

        let messages = json["messages"].as_array().expect("array");
        assert_eq!(messages.len(), 2);
        assert_eq!(
            messages[1]["ack_id"],
            "00000000-0000-0000-0000-000000000002"
        );
        assert_eq!(messages[1]["delivery_attempt"], 3);
        assert_eq!(messages[1]["payload_base64"], "aGk=");
    }

    #[test]
    fn stored_array_reads_back() {
        let messages = vec![Arc::new(sample("k", "t")), Arc::new(sample("", "u"))];
        let array = messages_array(&messages);
        let back = read_messages(&array).expect("readable");

        assert_eq!(back.len(), 2);
        assert_eq!(back[0], *messages[0]);
        assert_eq!(back[1], *messages[1]);
    }
}
