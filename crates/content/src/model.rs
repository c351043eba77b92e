//! Content items, their review states and history, and the rules for input fields.

use std::collections::BTreeMap;
use std::fmt;

use platform::Timestamp;
use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde::{Deserialize, Serialize};

/// Maximum length of `content_id`, in characters.
pub const MAX_CONTENT_ID_LEN: usize = 256;
/// Maximum length of `tenant_id`, `project_id` and `reviewer`, in characters.
pub const MAX_ID_LEN: usize = 256;
/// Maximum length of `filename`, in characters.
pub const MAX_FILENAME_LEN: usize = 1024;
/// Maximum length of `mime_type`, in characters. RFC 6838 allows 127 for the type and
/// for the subtype, and parameters may follow.
pub const MAX_MIME_TYPE_LEN: usize = 512;
/// Maximum length of a review reason, in characters.
pub const MAX_REASON_LEN: usize = 4096;
/// Maximum number of entries in `labels` and in `attributes`, each.
pub const MAX_MAP_ENTRIES: usize = 64;
/// Maximum length of a key or value in `labels` and `attributes`, in bytes.
pub const MAX_MAP_TEXT_LEN: usize = 1024;

/// The review state of an item; mirrors `cassandra.ugc.v1.ContentState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentState {
    Pending,
    Approved,
    Rejected,
    Archived,
}

impl ContentState {
    /// Every state, in review order.
    pub const ALL: [ContentState; 4] = [
        ContentState::Pending,
        ContentState::Approved,
        ContentState::Rejected,
        ContentState::Archived,
    ];

    /// Parses the lowercase name or the protobuf name (`CONTENT_STATE_APPROVED`), in any case.
    pub fn parse(text: &str) -> Option<Self> {
        let lower = text.trim().to_ascii_lowercase();
        let name = lower.strip_prefix("content_state_").unwrap_or(&lower);
        ContentState::ALL
            .into_iter()
            .find(|state| state.as_str() == name)
    }

    /// Returns the lowercase name used in JSON and in Postgres.
    pub fn as_str(self) -> &'static str {
        match self {
            ContentState::Pending => "pending",
            ContentState::Approved => "approved",
            ContentState::Rejected => "rejected",
            ContentState::Archived => "archived",
        }
    }

    /// Archived items never change state again, nor their reason.
    pub fn is_final(self) -> bool {
        self == ContentState::Archived
    }

    /// Checks whether an item in this state may move to `next`. Staying in the same state
    /// is allowed for every state but `archived`, and only updates the reason.
    pub fn can_move_to(self, next: ContentState) -> bool {
        use ContentState::*;
        match (self, next) {
            (from, to) if from == to => !from.is_final(),
            (Pending, Approved | Rejected | Archived) => true,
            // A decision can be overturned, and a decided item can be archived.
            (Approved, Rejected | Archived) | (Rejected, Approved | Archived) => true,
            _ => false,
        }
    }
}

impl fmt::Display for ContentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One piece of user-generated content and its review state.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ContentItem {
    pub content_id: String,
    pub tenant_id: String,
    pub project_id: String,
    pub filename: String,
    pub mime_type: String,
    pub size_bytes: i64,
    pub state: ContentState,
    /// Reason given by the latest review; empty before the first review or when the latest
    /// review gave none.
    pub reason: String,
    pub submitted_at: Timestamp,
    pub updated_at: Timestamp,
    pub labels: BTreeMap<String, String>,
    pub attributes: BTreeMap<String, String>,
}

/// One review decision as kept in an item's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Review {
    pub from: ContentState,
    pub to: ContentState,
    pub reason: String,
    pub reviewer: String,
    pub reviewed_at: Timestamp,
}

/// Filters of a list request; `None` matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContentFilter {
    pub tenant_id: Option<String>,
    pub project_id: Option<String>,
    pub state: Option<ContentState>,
}

impl ContentFilter {
    /// True when the item passes every filter.
    pub fn matches(&self, item: &ContentItem) -> bool {
        self.tenant_id
            .as_ref()
            .is_none_or(|id| *id == item.tenant_id)
            && self
                .project_id
                .as_ref()
                .is_none_or(|id| *id == item.project_id)
            && self.state.is_none_or(|state| state == item.state)
    }
}

/// True for the characters a `content_id` may contain: RFC 3986 unreserved characters
/// (`A-Z a-z 0-9 - . _ ~`), which mean the same in a URL path segment whether or not a
/// client or proxy percent-encodes them.
///
/// Everything else is rejected. `/`, `?`, `#` and `%` change how the path is split or
/// decoded, and many proxies decode or reject `%2F`. Clients percent-encode spaces,
/// control characters and non-ASCII text in different ways.
pub fn is_content_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')
}

/// Checks the form of a `content_id`, returning why it is not acceptable.
///
/// `.` and `..` are rejected as whole ids because URL normalisation removes them as path
/// segments before a request reaches the service.
pub fn check_content_id(id: &str) -> Result<(), String> {
    if id.chars().count() > MAX_CONTENT_ID_LEN {
        return Err(format!(
            "content_id is longer than {MAX_CONTENT_ID_LEN} characters"
        ));
    }
    if let Some(bad) = id.chars().find(|c| !is_content_id_char(*c)) {
        return Err(format!(
            "content_id contains {bad:?}; use only letters A-Z and a-z, digits, '-', '.', '_' and '~' so the id can be used in a URL path"
        ));
    }
    if id == "." || id == ".." {
        return Err(format!(
            "content_id {id:?} is a relative path segment; choose another id"
        ));
    }
    Ok(())
}

/// A size in bytes from a request: a non-negative integer that fits Postgres `bigint`.
///
/// Deserialization rejects negative numbers, fractions, numbers past `i64::MAX` and
/// non-numbers with a message that names what is expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizeBytes(pub i64);

const SIZE_EXPECTED: &str = "a non-negative integer of at most 9223372036854775807";

impl<'de> Deserialize<'de> for SizeBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;

        impl Visitor<'_> for SizeVisitor {
            type Value = SizeBytes;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(SIZE_EXPECTED)
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<SizeBytes, E> {
                if value < 0 {
                    return Err(E::invalid_value(Unexpected::Signed(value), &self));
                }
                Ok(SizeBytes(value))
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<SizeBytes, E> {
                i64::try_from(value)
                    .map(SizeBytes)
                    .map_err(|_| E::invalid_value(Unexpected::Unsigned(value), &self))
            }
        }

        deserializer.deserialize_i64(SizeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ContentState::*;

    #[test]
    fn parse_accepts_both_spellings() {
        assert_eq!(ContentState::parse("approved"), Some(Approved));
        assert_eq!(
            ContentState::parse("CONTENT_STATE_APPROVED"),
            Some(Approved)
        );
        assert_eq!(
            ContentState::parse("Content_State_Archived"),
            Some(Archived)
        );
        assert_eq!(ContentState::parse("REJECTED"), Some(Rejected));
        assert_eq!(ContentState::parse("flagged"), None);
        assert_eq!(ContentState::parse("content_state_unspecified"), None);
        assert_eq!(ContentState::parse(""), None);
    }

    #[test]
    fn legal_moves_match_review_rules() {
        let legal = [
            (Pending, Approved),
            (Pending, Rejected),
            (Pending, Archived),
            (Approved, Rejected),
            (Rejected, Approved),
            (Approved, Archived),
            (Rejected, Archived),
            (Pending, Pending),
            (Approved, Approved),
            (Rejected, Rejected),
        ];
        for from in ContentState::ALL {
            for to in ContentState::ALL {
                let expected = legal.contains(&(from, to));
                assert_eq!(from.can_move_to(to), expected, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn archived_accepts_nothing() {
        for to in ContentState::ALL {
            assert!(!Archived.can_move_to(to), "archived -> {to}");
        }
    }

    #[test]
    fn content_id_allows_unreserved_only() {
        for id in ["asset-42", "a.b_c~d", "0190b2f2-7c4e-7a51", "...", "A"] {
            assert_eq!(check_content_id(id), Ok(()), "{id}");
        }
        for id in ["a/b", "a b", "a%20b", "a?b", "a#b", "é", "a\nb", ".", ".."] {
            assert!(check_content_id(id).is_err(), "{id:?}");
        }
        assert!(check_content_id(&"x".repeat(MAX_CONTENT_ID_LEN)).is_ok());
        assert!(check_content_id(&"x".repeat(MAX_CONTENT_ID_LEN + 1)).is_err());
    }

    #[test]
    fn size_bytes_accepts_non_negative_integers() {
        let parse = |text: &str| serde_json::from_str::<SizeBytes>(text);
        assert_eq!(parse("0").expect("zero"), SizeBytes(0));
        assert_eq!(
            parse("9223372036854775807").expect("i64::MAX"),
            SizeBytes(i64::MAX)
        );
        for bad in ["-1", "1.5", "1.0", "9223372036854775808", "\"10\"", "true"] {
            let error = parse(bad).expect_err(bad);
            assert!(
                error.to_string().contains("non-negative integer"),
                "{bad}: {error}"
            );
        }
    }
}
