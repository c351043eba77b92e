//! Messages, priorities, topic names, topic statistics and the limits on client input.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use platform::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Maximum length of a topic name a client chooses. A dead-letter topic adds its suffix
/// on top.
pub const MAX_TOPIC_LEN: usize = 249;
/// Suffix of the topic that receives a topic's undeliverable messages.
pub const DEAD_LETTER_SUFFIX: &str = ".dead-letter";
/// Maximum length of `tenant_id` and `project_id`, in characters.
pub const MAX_ID_LEN: usize = 256;
/// Maximum length of a message `key`, in characters.
pub const MAX_KEY_LEN: usize = 256;
/// Maximum number of attributes on one published message.
pub const MAX_ATTRIBUTES: usize = 64;
/// Maximum length of an attribute name, in bytes.
pub const MAX_ATTRIBUTE_NAME_LEN: usize = 256;
/// Maximum length of an attribute value, in bytes.
pub const MAX_ATTRIBUTE_VALUE_LEN: usize = 1024;
/// Maximum number of messages in one publish batch, and of ids in one ack batch.
pub const MAX_BATCH: usize = 1000;
/// Maximum number of messages one pull returns.
pub const MAX_PULL: usize = 1000;
/// Number of messages a pull returns at most when it names no `limit`.
pub const DEFAULT_PULL: usize = 10;
/// Maximum long-poll wait, in milliseconds.
pub const MAX_WAIT_MS: u64 = 30_000;
/// Maximum lease a pull or a lease change may request, in seconds (12 hours).
pub const MAX_LEASE_S: u64 = 43_200;
/// Maximum publish or nack delay, in seconds (7 days).
pub const MAX_DELAY_S: u64 = 604_800;
/// Maximum length of an `Idempotency-Key` header, in bytes.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// Attribute added to a dead-lettered message: the topic it failed in.
pub const SOURCE_TOPIC_ATTRIBUTE: &str = "dead_letter.source_topic";
/// Attribute added to a dead-lettered message: how many deliveries failed.
pub const DELIVERY_ATTEMPTS_ATTRIBUTE: &str = "dead_letter.delivery_attempts";

/// Delivery priority; mirrors `cassandra.messaging.v1.MessagePriority`. Pulls hand out
/// higher priorities first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    Normal,
    High,
}

impl Priority {
    /// Every priority, lowest first.
    pub const ALL: [Priority; 3] = [Priority::Low, Priority::Normal, Priority::High];

    /// Parses the lowercase name or the protobuf name (`MESSAGE_PRIORITY_HIGH`), in any
    /// case. `MESSAGE_PRIORITY_UNSPECIFIED` is the protobuf default and means normal.
    pub fn parse(text: &str) -> Option<Self> {
        let lower = text.trim().to_ascii_lowercase();
        let name = lower.strip_prefix("message_priority_").unwrap_or(&lower);
        if name == "unspecified" && lower != name {
            return Some(Priority::Normal);
        }
        Priority::ALL
            .into_iter()
            .find(|priority| priority.as_str() == name)
    }

    /// Returns the lowercase name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
        }
    }

    /// Returns the rank stored in Postgres. A higher rank is delivered first.
    pub fn rank(self) -> i16 {
        match self {
            Priority::Low => 0,
            Priority::Normal => 1,
            Priority::High => 2,
        }
    }

    /// Returns the priority of a stored rank.
    pub fn from_rank(rank: i16) -> Option<Self> {
        Priority::ALL
            .into_iter()
            .find(|priority| priority.rank() == rank)
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A valid topic name: `[A-Za-z0-9._-]{1,249}`, optionally followed by `.dead-letter`.
/// Cloning shares the name, which every message of the topic carries.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic(Arc<str>);

impl Topic {
    /// Checks a name. The error describes what is wrong with it.
    pub fn parse(name: &str) -> Result<Topic, String> {
        let base = name.strip_suffix(DEAD_LETTER_SUFFIX).unwrap_or(name);
        if base.is_empty() {
            return Err(format!("topic {name:?} is empty before the suffix"));
        }
        if base.len() > MAX_TOPIC_LEN {
            return Err(format!(
                "topic is {} characters long; the limit is {MAX_TOPIC_LEN} (plus {DEAD_LETTER_SUFFIX:?} for a dead-letter topic)",
                base.len()
            ));
        }
        if let Some(bad) = base
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(format!(
                "topic {name:?} contains {bad:?}; use only letters, digits, '.', '_' and '-'"
            ));
        }
        if base == "." || base == ".." {
            return Err(format!("topic {name:?} is reserved for paths"));
        }
        Ok(Topic(Arc::from(name)))
    }

    /// Returns the name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Returns the shared name, for messages of this topic.
    pub fn shared(&self) -> Arc<str> {
        self.0.clone()
    }

    /// True for a dead-letter topic, whose messages are never dead-lettered again.
    pub fn is_dead_letter(&self) -> bool {
        self.0.ends_with(DEAD_LETTER_SUFFIX)
    }

    /// Returns the topic that receives this topic's undeliverable messages, or `None`
    /// for a dead-letter topic.
    pub fn dead_letter(&self) -> Option<Topic> {
        (!self.is_dead_letter())
            .then(|| Topic(Arc::from(format!("{}{DEAD_LETTER_SUFFIX}", self.0))))
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A published message: the envelope clients see. Messages are shared through `Arc`, so
/// the store, an idempotency record and a response hold one copy, and the names that
/// repeat from message to message (topic, tenant, project) are shared as well.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub message_id: Uuid,
    pub tenant_id: Arc<str>,
    pub project_id: Arc<str>,
    pub topic: Arc<str>,
    pub key: Box<str>,
    pub priority: Priority,
    pub published_at: Timestamp,
    pub attributes: Attributes,
    pub payload: Payload,
}

/// A payload as its base64 text (standard alphabet, padded), the form every response
/// carries. Keeping the text means a message is encoded once, not on every delivery; it
/// takes a third more memory than the bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload(Box<str>);

impl Payload {
    /// Encodes bytes.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Payload(payload_base64::encode(bytes).into_boxed_str())
    }

    /// Keeps text that `payload_base64::decode` accepted, adding the padding a client
    /// may leave out. Decoding rejects stray bits after the last byte, so the result is
    /// exactly the encoding of the decoded bytes.
    pub fn from_valid_text(mut text: String) -> Self {
        while !text.len().is_multiple_of(4) {
            text.push('=');
        }
        Payload(text.into_boxed_str())
    }

    /// Returns the padded base64 text.
    pub fn as_base64(&self) -> &str {
        &self.0
    }

    /// Decodes the payload. The text was checked when the message was published or
    /// encoded from bytes, so it always decodes.
    pub fn to_bytes(&self) -> Vec<u8> {
        payload_base64::decode(&self.0).unwrap_or_default()
    }
}

/// One delivery of a message to one consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub message: Arc<Message>,
    /// Names this delivery; ack, nack and lease changes must present it.
    pub ack_id: Uuid,
    /// 1 on the first delivery, counting every delivery of the message in this topic.
    pub delivery_attempt: u32,
}

/// Attributes of a message: a JSON object of strings, kept as its compact text with the
/// names in byte order. Responses and the Postgres store write that text as it is, and
/// it takes one allocation instead of two per entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes(Option<Arc<str>>);

impl Attributes {
    /// Encodes a map; an empty map takes no allocation.
    pub fn from_map(map: &BTreeMap<String, String>) -> Self {
        if map.is_empty() {
            return Attributes(None);
        }
        // A map of strings always serializes.
        let text = serde_json::to_string(map).unwrap_or_else(|_| "{}".to_string());
        Attributes(Some(Arc::from(text)))
    }

    /// Returns the compact JSON text.
    pub fn as_json(&self) -> &str {
        self.0.as_deref().unwrap_or("{}")
    }

    /// Decodes the attributes into a map.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        match &self.0 {
            None => BTreeMap::new(),
            // The text was written from a map, so it always reads back.
            Some(text) => serde_json::from_str(text).unwrap_or_default(),
        }
    }
}

/// Message counts of one topic at one instant, as the stores compute them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TopicCounts {
    /// Visible now: never delivered, released by a nack, or with an expired lease.
    pub ready: u64,
    /// Held by a consumer whose lease has not ended.
    pub leased: u64,
    /// Published or nacked with a delay that has not passed.
    pub delayed: u64,
    /// Publish time of the oldest ready message.
    pub oldest_ready: Option<Timestamp>,
}

impl TopicCounts {
    /// Counts every message in the topic.
    pub fn total(&self) -> u64 {
        self.ready + self.leased + self.delayed
    }
}

/// The statistics of a topic returned to clients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TopicStats {
    pub ready: u64,
    pub leased: u64,
    pub delayed: u64,
    /// Messages waiting in the topic's dead-letter topic; 0 for a dead-letter topic.
    pub dead_lettered: u64,
    /// Age of the oldest ready message by publish time; 0 when none is ready.
    pub oldest_ready_age_ms: u64,
}

/// A topic in the topic list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TopicSummary {
    pub topic: String,
    #[serde(flatten)]
    pub stats: TopicStats,
}

/// Base64 text for payloads: standard alphabet, padding optional on input and always
/// written on output.
pub mod payload_base64 {
    use base64::Engine;
    use base64::engine::DecodePaddingMode;
    use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};

    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );

    /// Encodes with padding.
    pub fn encode(bytes: &[u8]) -> String {
        STANDARD.encode(bytes)
    }

    /// Writes the padded encoding into `out`, which is exactly as long as the encoding.
    pub fn encode_slice(bytes: &[u8], out: &mut [u8]) {
        // The length matches, so the only possible error cannot occur.
        let _ = STANDARD.encode_slice(bytes, out);
    }

    /// Decodes standard base64 with or without padding.
    pub fn decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
        LENIENT.decode(text)
    }

    /// Describes why text failed to decode, in words for an API client, because the
    /// decoder's own message gives symbols as numbers.
    pub fn describe(error: &base64::DecodeError) -> String {
        use base64::DecodeError::*;

        match error {
            InvalidByte(offset, b'=') => {
                format!("the padding = at offset {offset} is not at the end of the text")
            }
            InvalidByte(offset, byte) => format!(
                "the character {:?} at offset {offset} is not in the standard alphabet A-Z a-z 0-9 + /",
                char::from(*byte)
            ),
            InvalidLastSymbol(offset, byte) => format!(
                "the last symbol {:?} at offset {offset} carries bits past the end of the data",
                char::from(*byte)
            ),
            InvalidLength(length) => {
                format!("a length of {length} cannot encode whole bytes; the text is cut short")
            }
            InvalidPadding => "the = padding is misplaced or of the wrong length".to_owned(),
        }
    }

    /// Decodes like `decode`, appending the bytes to `out`.
    pub fn decode_into(text: &str, out: &mut Vec<u8>) -> Result<(), base64::DecodeError> {
        LENIENT.decode_vec(text, out)
    }

    /// Marks bytes outside the standard alphabet.
    const INVALID: u8 = 0xff;

    /// The value of each byte in the standard alphabet.
    const VALUES: [u8; 256] = {
        let mut values = [INVALID; 256];
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut index = 0;
        while index < alphabet.len() {
            values[alphabet[index] as usize] = index as u8;
            index += 1;
        }
        values
    };

    /// Returns the decoded length of text that `decode` accepts, checking it without
    /// decoding: publishing keeps the text, so the bytes are not needed. `None` means
    /// `decode` may reject it; call `decode` for the reason.
    pub fn checked_len(text: &str) -> Option<usize> {
        let bytes = text.as_bytes();
        let padding = bytes
            .iter()
            .rev()
            .take(2)
            .take_while(|byte| **byte == b'=')
            .count();
        let symbols = &bytes[..bytes.len() - padding];

        let partial = symbols.len() % 4;
        // Padding may be left out in part or whole, and one symbol cannot end a group.
        if partial == 1 || padding > (4 - partial) % 4 {
            return None;
        }
        // Values are below 64, so one merged high bit marks a byte outside the alphabet,
        // and the loop needs no branch per byte.
        let merged = symbols
            .iter()
            .fold(0, |merged, byte| merged | VALUES[usize::from(*byte)]);
        if merged & 0x80 != 0 {
            return None;
        }

        // The bits of the last symbol past the last byte must be zero.
        let unused_mask = match partial {
            2 => 0x0f,
            3 => 0x03,
            _ => 0,
        };
        let last = symbols.last().map_or(0, |byte| VALUES[usize::from(*byte)]);
        if last & unused_mask != 0 {
            return None;
        }
        Some(symbols.len() / 4 * 3 + partial.saturating_sub(1))
    }

    /// Upper bound of the decoded size of `text`, to reject oversized payloads before
    /// decoding them.
    pub fn decoded_len_estimate(text: &str) -> usize {
        base64::decoded_len_estimate(text.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_accepts_both_spellings() {
        assert_eq!(Priority::parse("high"), Some(Priority::High));
        assert_eq!(
            Priority::parse("MESSAGE_PRIORITY_HIGH"),
            Some(Priority::High)
        );
        assert_eq!(Priority::parse("Message_Priority_Low"), Some(Priority::Low));
        assert_eq!(Priority::parse("NORMAL"), Some(Priority::Normal));
        assert_eq!(
            Priority::parse("MESSAGE_PRIORITY_UNSPECIFIED"),
            Some(Priority::Normal)
        );
        assert_eq!(Priority::parse("unspecified"), None);
        assert_eq!(Priority::parse("urgent"), None);
        assert_eq!(Priority::parse(""), None);
    }

    #[test]
    fn priority_ranks_round_trip() {
        for priority in Priority::ALL {
            assert_eq!(Priority::from_rank(priority.rank()), Some(priority));
        }
        assert_eq!(Priority::from_rank(7), None);
        assert!(Priority::High > Priority::Normal);
        assert!(Priority::Normal > Priority::Low);
    }

    #[test]
    fn topic_names_follow_pattern() {
        for good in ["orders", "a", "A.b_c-9", &"x".repeat(MAX_TOPIC_LEN)] {
            assert!(Topic::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "with space",
            "slash/inside",
            "colon:inside",
            "ümlaut",
            ".",
            "..",
            &"x".repeat(MAX_TOPIC_LEN + 1),
        ] {
            assert!(Topic::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dead_letter_topic_may_pass_length_limit() {
        let base = Topic::parse(&"x".repeat(MAX_TOPIC_LEN)).expect("valid");
        let dead = base.dead_letter().expect("base is not a dead-letter topic");
        assert_eq!(
            dead.as_str().len(),
            MAX_TOPIC_LEN + DEAD_LETTER_SUFFIX.len()
        );
        assert!(dead.is_dead_letter());
        assert_eq!(dead.dead_letter(), None);
        assert_eq!(Topic::parse(dead.as_str()), Ok(dead));
        assert!(Topic::parse(".dead-letter").is_err());
    }

    #[test]
    fn payload_padding_is_optional_on_input() {
        assert_eq!(payload_base64::decode("aGk=").expect("padded"), b"hi");
        assert_eq!(payload_base64::decode("aGk").expect("unpadded"), b"hi");
        assert_eq!(payload_base64::decode("").expect("empty"), b"");
        assert!(payload_base64::decode("a-b_").is_err());
        assert!(payload_base64::decode("a").is_err());
    }

    #[test]
    fn decode_errors_are_described_in_words() {
        let describe = |text: &str| {
            payload_base64::describe(&payload_base64::decode(text).expect_err("invalid"))
        };

        assert_eq!(
            describe("!!!!"),
            "the character '!' at offset 0 is not in the standard alphabet A-Z a-z 0-9 + /"
        );
        assert_eq!(
            describe("aGl"),
            "the last symbol 'l' at offset 2 carries bits past the end of the data"
        );
        assert_eq!(
            describe("aGk=a"),
            "the padding = at offset 3 is not at the end of the text"
        );
        assert_eq!(
            describe("a"),
            "a length of 1 cannot encode whole bytes; the text is cut short"
        );
        assert_eq!(payload_base64::encode(b"hi"), "aGk=");
    }

    #[test]
    fn attributes_are_compact_sorted_json() {
        let map = BTreeMap::from([
            ("source".to_string(), "bench".to_string()),
            ("kind".to_string(), "event".to_string()),
        ]);
        let attributes = Attributes::from_map(&map);

        assert_eq!(attributes.as_json(), r#"{"kind":"event","source":"bench"}"#);
        assert_eq!(attributes.to_map(), map);
    }

    #[test]
    fn empty_attributes_are_an_empty_object() {
        let empty = Attributes::from_map(&BTreeMap::new());

        assert_eq!(empty, Attributes::default());
        assert_eq!(empty.as_json(), "{}");
        assert!(empty.to_map().is_empty());
    }

    #[test]
    fn payload_text_is_padded_encoding() {
        for len in 0..12 {
            let bytes: Vec<u8> = (0..len).map(|byte| (byte * 37 + 11) as u8).collect();
            let padded = payload_base64::encode(&bytes);
            let unpadded = padded.trim_end_matches('=').to_string();

            let payload = Payload::from_valid_text(unpadded);
            assert_eq!(payload.as_base64(), padded);
            assert_eq!(payload, Payload::from_bytes(&bytes));
        }
    }

    #[test]
    fn checked_len_agrees_with_decode() {
        // Every string of up to six symbols over values with and without low bits set,
        // padding and a byte outside the alphabet.
        let symbols = [b'A', b'B', b'Q', b'g', b'/', b'=', b'-'];
        let mut texts = vec![String::new()];
        for _ in 0..6 {
            let longer: Vec<String> = texts
                .iter()
                .filter(|text| text.len() == texts.last().map_or(0, String::len))
                .flat_map(|text| {
                    symbols
                        .iter()
                        .map(move |symbol| format!("{text}{}", *symbol as char))
                })
                .collect();
            texts.extend(longer);
        }
        for text in &texts {
            let decoded = payload_base64::decode(text).map(|bytes| bytes.len()).ok();
            assert_eq!(payload_base64::checked_len(text), decoded, "{text:?}");
        }
    }
}
