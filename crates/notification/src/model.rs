//! Deliveries, the channels they go out on, and the limits on notification input.

use std::fmt;

use platform::Timestamp;
use serde::Serialize;
use uuid::Uuid;

/// Maximum number of entries in the `data` object of one request.
pub const MAX_DATA_ENTRIES: usize = 64;
/// Maximum length of a key in `data`, in characters.
pub const MAX_DATA_KEY_LEN: usize = 128;
/// Maximum length of a value in `data`, in characters. A number counts by its JSON text.
pub const MAX_DATA_VALUE_LEN: usize = 4096;

/// The channel a notification is sent on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Webhook,
    InApp,
}

impl Channel {
    /// Every channel, in the order error messages list them.
    pub const ALL: [Channel; 3] = [Channel::Email, Channel::Webhook, Channel::InApp];

    /// Parses the lowercase name in any case (`email`, `IN_APP`).
    pub fn parse(text: &str) -> Option<Self> {
        let lower = text.trim().to_ascii_lowercase();
        Channel::ALL
            .into_iter()
            .find(|channel| channel.as_str() == lower)
    }

    /// Returns the lowercase name used in JSON and in Postgres.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webhook => "webhook",
            Channel::InApp => "in_app",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of a delivery: handed to its sender (pending) or sent. Responses and
/// history contain only sent deliveries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Sent,
}

impl DeliveryStatus {
    /// Parses the lowercase name stored in Postgres.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(DeliveryStatus::Pending),
            "sent" => Some(DeliveryStatus::Sent),
            _ => None,
        }
    }

    /// Returns the lowercase name used in JSON and in Postgres.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Sent => "sent",
        }
    }
}

/// One rendered notification for one recipient.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Delivery {
    pub id: Uuid,
    pub channel: Channel,
    pub recipient: String,
    pub template: String,
    pub subject: String,
    pub body: String,
    pub status: DeliveryStatus,
    /// When the sender succeeded; while pending, when the request was accepted.
    pub sent_at: Timestamp,
}

#[cfg(test)]
impl Delivery {
    /// Builds a sent in-app welcome delivery with `body`, for unit tests.
    pub(crate) fn example(body: &str) -> Delivery {
        Delivery {
            id: platform::ids::new_id(),
            channel: Channel::InApp,
            recipient: "user-1".to_string(),
            template: "welcome_email".to_string(),
            subject: "Welcome to CassandraNet".to_string(),
            body: body.to_string(),
            status: DeliveryStatus::Sent,
            sent_at: Timestamp::EPOCH,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_parse_ignores_case() {
        assert_eq!(Channel::parse("email"), Some(Channel::Email));
        assert_eq!(Channel::parse("WEBHOOK"), Some(Channel::Webhook));
        assert_eq!(Channel::parse("In_App"), Some(Channel::InApp));
        assert_eq!(Channel::parse("sms"), None);
        assert_eq!(Channel::parse("in-app"), None);
    }

    #[test]
    fn channel_serializes_lowercase() {
        let json = serde_json::to_value(Channel::InApp).expect("serializable");
        assert_eq!(json, "in_app");
    }

    #[test]
    fn status_round_trips() {
        for status in [DeliveryStatus::Pending, DeliveryStatus::Sent] {
            assert_eq!(DeliveryStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(DeliveryStatus::parse("failed"), None);
    }
}
