//! Keyset pagination for lists ordered newest first: `page_size` and an opaque
//! `page_token` that encodes the last item returned.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::extract::Params;
use crate::time::Timestamp;

/// Default number of items per page.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Largest number of items per page.
pub const MAX_PAGE_SIZE: usize = 1000;

/// The position after which the next page starts: the sort key of the last item sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Creation time of the last item, in microseconds since the epoch.
    #[serde(rename = "t")]
    pub created_at_micros: i64,
    /// Id of the last item, which breaks ties between equal times.
    #[serde(rename = "i")]
    pub id: String,
}

impl Cursor {
    /// Builds the cursor of an item.
    pub fn after(created_at: Timestamp, id: impl Into<String>) -> Self {
        Cursor {
            created_at_micros: created_at.unix_micros(),
            id: id.into(),
        }
    }

    /// Returns the creation time as a timestamp.
    pub fn created_at(&self) -> Timestamp {
        Timestamp::from_unix_micros(self.created_at_micros).unwrap_or(Timestamp::EPOCH)
    }

    /// Encodes the cursor as an opaque token.
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(json)
    }

    /// Decodes a token made by `encode`.
    pub fn decode(token: &str) -> Option<Self> {
        let json = URL_SAFE_NO_PAD.decode(token).ok()?;
        serde_json::from_slice(&json).ok()
    }

    /// True when an item sorts after this cursor in newest-first order.
    pub fn precedes(&self, created_at: Timestamp, id: &str) -> bool {
        let micros = created_at.unix_micros();
        micros < self.created_at_micros
            || (micros == self.created_at_micros && id < self.id.as_str())
    }
}

/// Page size and start position of a list request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRequest {
    /// Items per page, 1 to 1000.
    pub size: usize,
    /// Start position of the page, `None` for the first page.
    pub after: Option<Cursor>,
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest {
            size: DEFAULT_PAGE_SIZE,
            after: None,
        }
    }
}

impl PageRequest {
    /// Reads `page_size` and `page_token` from the query.
    pub fn from_params(params: &Params) -> Result<Self, ApiError> {
        let size = params
            .integer("page_size", 1..=MAX_PAGE_SIZE)?
            .unwrap_or(DEFAULT_PAGE_SIZE);
        let after = match params.text("page_token") {
            None => None,
            Some(token) => Some(Cursor::decode(token).ok_or_else(|| {
                ApiError::invalid_field(
                    "page_token",
                    "page_token is not a token this service issued; pass next_page_token from the previous page unchanged",
                )
            })?),
        };
        Ok(PageRequest { size, after })
    }
}

/// One page of results.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    /// Items, newest first.
    pub items: Vec<T>,
    /// Token of the next page, present only when another page exists.
    pub next: Option<Cursor>,
}

impl<T> Page<T> {
    /// Cuts `size + 1` fetched items down to a page: the extra item, if present, proves
    /// that another page exists.
    pub fn from_overfetch(mut items: Vec<T>, size: usize, key: impl Fn(&T) -> Cursor) -> Self {
        let more = items.len() > size;
        items.truncate(size);
        let next = if more { items.last().map(key) } else { None };
        Page { items, next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips() {
        let cursor = Cursor {
            created_at_micros: 1_700_000_000_123_456,
            id: "asset-7".into(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
    }

    #[test]
    fn garbage_token_is_rejected() {
        let params = Params::parse("page_token=not-a-token").expect("valid");
        let error = PageRequest::from_params(&params).unwrap_err();
        assert_eq!(error.field(), Some("page_token"));
    }

    #[test]
    fn page_size_out_of_range_is_rejected() {
        for size in ["0", "1001", "-1", "ten"] {
            let params = Params::parse(&format!("page_size={size}")).expect("valid");
            let error = PageRequest::from_params(&params).unwrap_err();
            assert_eq!(error.field(), Some("page_size"), "size {size}");
        }
    }

    #[test]
    fn overfetch_sets_next_only_when_more() {
        let key = |n: &i64| Cursor {
            created_at_micros: *n,
            id: n.to_string(),
        };
        let full = Page::from_overfetch(vec![5, 4, 3], 2, key);
        assert_eq!(full.items, vec![5, 4]);
        assert_eq!(full.next.map(|c| c.created_at_micros), Some(4));
        let last = Page::from_overfetch(vec![2, 1], 2, key);
        assert_eq!(last.next, None);
    }

    #[test]
    fn precedes_breaks_ties_by_id() {
        let cursor = Cursor {
            created_at_micros: 10,
            id: "m".into(),
        };
        let at = Timestamp::from_unix_micros(10).expect("valid");
        assert!(cursor.precedes(at, "a"));
        assert!(!cursor.precedes(at, "z"));
    }
}
