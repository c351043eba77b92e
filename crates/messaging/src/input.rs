//! Checks of client input: publish fields, topic names, ids, ack ids and ranges.

use std::collections::BTreeMap;
use std::time::Duration;

use uuid::Uuid;

use crate::model::{
    MAX_ATTRIBUTE_NAME_LEN, MAX_ATTRIBUTE_VALUE_LEN, MAX_ATTRIBUTES, MAX_BATCH, MAX_DELAY_S,
    MAX_ID_LEN, MAX_IDEMPOTENCY_KEY_LEN, MAX_KEY_LEN, Priority, Topic, payload_base64,
};
use crate::service::Error;

/// Fields of one message to publish as the client sent them; `None` or empty means absent.
#[derive(Clone, Debug, Default)]
pub struct PublishInput {
    pub tenant_id: Option<String>,
    pub project_id: Option<String>,
    pub key: Option<String>,
    pub payload_base64: Option<String>,
    pub priority: Option<String>,
    pub attributes: Option<BTreeMap<String, String>>,
    pub delay_s: Option<u64>,
}

/// A publish request that passed every check.
#[derive(Clone, Debug)]
pub(crate) struct CheckedPublish {
    pub tenant_id: String,
    pub project_id: String,
    pub key: String,
    /// The payload as the client sent it, which decodes without error.
    pub payload_text: String,
    pub priority: Priority,
    pub attributes: BTreeMap<String, String>,
    pub delay: Duration,
}

/// The path of a field of a published message, built only when an error names it.
#[derive(Clone, Copy)]
struct Field<'a> {
    /// Position in a batch; `None` for a single publish.
    index: Option<usize>,
    name: &'a str,
}

impl Field<'_> {
    /// Returns `messages[3].priority` in a batch and `priority` alone.
    fn path(self) -> String {
        match self.index {
            Some(index) => format!("messages[{index}].{}", self.name),
            None => self.name.to_string(),
        }
    }
}

/// Checks one message; `index` is its position in a batch, which error paths name
/// (`messages[3].priority`).
pub(crate) fn check_publish(
    input: PublishInput,
    index: Option<usize>,
    max_payload: usize,
) -> Result<CheckedPublish, Error> {
    let field = |name| Field { index, name };
    let tenant_id = required_id(field("tenant_id"), input.tenant_id)?;
    let project_id = required_id(field("project_id"), input.project_id)?;
    let key = checked_text(field("key"), input.key.unwrap_or_default(), MAX_KEY_LEN)?;
    let payload_text = input.payload_base64.unwrap_or_default();
    check_payload(field("payload_base64"), &payload_text, max_payload)?;
    let priority = match input.priority.filter(|text| !text.is_empty()) {
        Some(text) => parse_priority(&field("priority").path(), &text)?,
        None => Priority::Normal,
    };
    let attributes = checked_attributes(field("attributes"), input.attributes.unwrap_or_default())?;
    let delay = match input.delay_s {
        Some(value) if value > MAX_DELAY_S => {
            return Err(out_of_range(&field("delay_s").path(), value, MAX_DELAY_S));
        }
        value => Duration::from_secs(value.unwrap_or(0)),
    };

    Ok(CheckedPublish {
        tenant_id,
        project_id,
        key,
        payload_text,
        priority,
        attributes,
        delay,
    })
}

/// Checks a topic name from the path.
pub(crate) fn parse_topic(name: &str) -> Result<Topic, Error> {
    Topic::parse(name).map_err(|message| Error::invalid("topic", message))
}

/// Parses a message id from the path; one that cannot exist is not found.
pub(crate) fn parse_message_id(topic: &Topic, text: &str) -> Result<Uuid, Error> {
    platform::ids::parse_id(text).ok_or_else(|| Error::message_not_found(topic, text))
}

/// Parses an ack id; `None` when absent or empty.
pub(crate) fn optional_ack_id(text: Option<&str>) -> Result<Option<Uuid>, Error> {
    match text.filter(|text| !text.is_empty()) {
        None => Ok(None),
        Some(text) => platform::ids::parse_id(text).map(Some).ok_or_else(|| {
            Error::invalid(
                "ack_id",
                format!("ack_id {text:?} is not an ack id; use the ack_id of the delivery returned by the pull"),
            )
        }),
    }
}

/// Parses an ack id that must be present.
pub(crate) fn required_ack_id(text: Option<&str>) -> Result<Uuid, Error> {
    optional_ack_id(text)?.ok_or_else(|| {
        Error::invalid(
            "ack_id",
            "ack_id is required; use the ack_id of the delivery returned by the pull",
        )
    })
}

/// Checks an `Idempotency-Key` header value; `None` when absent or empty.
pub(crate) fn idempotency_key(value: Option<&str>) -> Result<Option<String>, Error> {
    let Some(key) = value.filter(|key| !key.is_empty()) else {
        return Ok(None);
    };
    if key.len() > MAX_IDEMPOTENCY_KEY_LEN {
        return Err(Error::invalid(
            "Idempotency-Key",
            format!("Idempotency-Key is longer than {MAX_IDEMPOTENCY_KEY_LEN} bytes"),
        ));
    }
    if !key
        .bytes()
        .all(|byte| byte.is_ascii_graphic() || byte == b' ')
    {
        return Err(Error::invalid(
            "Idempotency-Key",
            "Idempotency-Key must be printable ASCII",
        ));
    }
    Ok(Some(key.to_string()))
}

/// Checks the size of a batch: 1 to `MAX_BATCH` items.
pub fn check_batch_len(field: &str, len: usize) -> Result<(), Error> {
    if len == 0 {
        return Err(Error::invalid(
            field,
            format!("{field} is empty; send 1 to {MAX_BATCH} items"),
        ));
    }
    if len > MAX_BATCH {
        return Err(Error::invalid(
            field,
            format!("{field} has {len} items; at most {MAX_BATCH} are allowed per request"),
        ));
    }
    Ok(())
}

/// Checks an optional number of seconds against `0..=max`.
pub(crate) fn seconds(
    field: &str,
    value: Option<u64>,
    max: u64,
) -> Result<Option<Duration>, Error> {
    match value {
        None => Ok(None),
        Some(value) if value <= max => Ok(Some(Duration::from_secs(value))),
        Some(value) => Err(out_of_range(field, value, max)),
    }
}

fn out_of_range(field: &str, value: u64, max: u64) -> Error {
    Error::invalid(
        field,
        format!("{field} must be from 0 to {max} seconds, not {value}"),
    )
}

fn parse_priority(field: &str, text: &str) -> Result<Priority, Error> {
    Priority::parse(text).ok_or_else(|| {
        Error::invalid(
            field,
            format!("{field} {text:?} is not a priority; use low, normal or high"),
        )
    })
}

fn check_payload(field: Field<'_>, text: &str, max_payload: usize) -> Result<(), Error> {
    let too_large = |size: usize| {
        let field = field.path();
        Error::invalid(
            &field,
            format!("{field} decodes to {size} bytes; the limit is {max_payload} bytes"),
        )
    };
    // The estimate is at most two bytes above the real size, so only a payload near the
    // limit needs decoding to tell.
    let estimate = payload_base64::decoded_len_estimate(text);
    if estimate > max_payload + 2 {
        return Err(too_large(estimate));
    }
    // Checking is cheaper than decoding; only text that fails is decoded, for the reason.
    let size = match payload_base64::checked_len(text) {
        Some(size) => size,
        None => payload_base64::decode(text)
            .map_err(|error| {
                let field = field.path();
                Error::invalid(
                    &field,
                    format!(
                        "{field} is not valid standard base64: {}",
                        payload_base64::describe(&error)
                    ),
                )
            })?
            .len(),
    };
    if size > max_payload {
        return Err(too_large(size));
    }
    Ok(())
}

fn required_id(field: Field<'_>, value: Option<String>) -> Result<String, Error> {
    match value.filter(|text| !text.is_empty()) {
        Some(text) => checked_text(field, text, MAX_ID_LEN),
        None => {
            let field = field.path();
            Err(Error::invalid(&field, format!("{field} is required")))
        }
    }
}

fn checked_text(field: Field<'_>, text: String, max_chars: usize) -> Result<String, Error> {
    // Byte length bounds the character count, so short ASCII text needs no count.
    if text.len() > max_chars && text.chars().count() > max_chars {
        let field = field.path();
        return Err(Error::invalid(
            &field,
            format!("{field} is longer than {max_chars} characters"),
        ));
    }
    if text.chars().any(char::is_control) {
        let field = field.path();
        return Err(Error::invalid(
            &field,
            format!("{field} contains control characters"),
        ));
    }
    Ok(text)
}

fn checked_attributes(
    field: Field<'_>,
    attributes: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, Error> {
    if attributes.len() > MAX_ATTRIBUTES {
        let field = field.path();
        return Err(Error::invalid(
            &field,
            format!(
                "{field} has {} entries; at most {MAX_ATTRIBUTES} are allowed",
                attributes.len()
            ),
        ));
    }
    for (name, value) in &attributes {
        if name.is_empty() {
            let field = field.path();
            return Err(Error::invalid(
                &field,
                format!("{field} names must not be empty"),
            ));
        }
        let entry = || format!("{}.{name}", field.path());
        if name.len() > MAX_ATTRIBUTE_NAME_LEN {
            return Err(Error::invalid(
                entry(),
                format!("attribute names are limited to {MAX_ATTRIBUTE_NAME_LEN} bytes"),
            ));
        }
        if value.len() > MAX_ATTRIBUTE_VALUE_LEN {
            return Err(Error::invalid(
                entry(),
                format!("attribute values are limited to {MAX_ATTRIBUTE_VALUE_LEN} bytes"),
            ));
        }
    }
    Ok(attributes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> PublishInput {
        PublishInput {
            tenant_id: Some("t".into()),
            project_id: Some("p".into()),
            ..PublishInput::default()
        }
    }

    fn field_of(error: Error) -> String {
        match error {
            Error::Invalid { field, .. } => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn defaults_fill_optional_fields() {
        let checked = check_publish(valid(), None, 16).expect("valid");
        assert_eq!(checked.priority, Priority::Normal);
        assert!(checked.payload_text.is_empty());
        assert!(checked.attributes.is_empty());
        assert_eq!(checked.delay, Duration::ZERO);
    }

    #[test]
    fn errors_carry_batch_prefix() {
        let input = PublishInput {
            priority: Some("urgent".into()),
            ..valid()
        };
        let error = check_publish(input, Some(3), 16).unwrap_err();
        assert_eq!(field_of(error), "messages[3].priority");
    }

    #[test]
    fn payload_limit_counts_decoded_bytes() {
        let exactly = payload_base64::encode(&[7u8; 16]);
        let input = PublishInput {
            payload_base64: Some(exactly.clone()),
            ..valid()
        };
        assert_eq!(
            check_publish(input, None, 16)
                .expect("at limit")
                .payload_text,
            exactly
        );

        let over = payload_base64::encode(&[7u8; 17]);
        let input = PublishInput {
            payload_base64: Some(over),
            ..valid()
        };
        assert_eq!(
            field_of(check_publish(input, None, 16).unwrap_err()),
            "payload_base64"
        );
    }

    #[test]
    fn attribute_bounds_name_entry() {
        let mut attributes = BTreeMap::new();
        attributes.insert("k".to_string(), "v".repeat(MAX_ATTRIBUTE_VALUE_LEN + 1));
        let input = PublishInput {
            attributes: Some(attributes),
            ..valid()
        };
        assert_eq!(
            field_of(check_publish(input, None, 16).unwrap_err()),
            "attributes.k"
        );

        let many = (0..=MAX_ATTRIBUTES)
            .map(|i| (format!("k{i}"), String::new()))
            .collect();
        let input = PublishInput {
            attributes: Some(many),
            ..valid()
        };
        assert_eq!(
            field_of(check_publish(input, None, 16).unwrap_err()),
            "attributes"
        );
    }

    #[test]
    fn idempotency_key_rules() {
        assert_eq!(idempotency_key(None).expect("absent"), None);
        assert_eq!(idempotency_key(Some("")).expect("empty"), None);
        assert_eq!(
            idempotency_key(Some("order-17")).expect("valid"),
            Some("order-17".into())
        );
        assert!(idempotency_key(Some(&"k".repeat(MAX_IDEMPOTENCY_KEY_LEN + 1))).is_err());
        assert!(idempotency_key(Some("tab\there")).is_err());
    }

    #[test]
    fn batch_length_bounds() {
        assert!(check_batch_len("messages", 0).is_err());
        assert!(check_batch_len("messages", 1).is_ok());
        assert!(check_batch_len("messages", MAX_BATCH).is_ok());
        assert!(check_batch_len("messages", MAX_BATCH + 1).is_err());
    }
}
