//! UGC Service rules: validation, timestamps, review states and the review history.

use std::collections::BTreeMap;
use std::sync::Arc;

use platform::SharedClock;
use platform::pagination::{Page, PageRequest};

use crate::model::{
    self, ContentFilter, ContentItem, ContentState, MAX_FILENAME_LEN, MAX_ID_LEN, MAX_MAP_ENTRIES,
    MAX_MAP_TEXT_LEN, MAX_MIME_TYPE_LEN, MAX_REASON_LEN, Review, SizeBytes,
};
use crate::store::{ContentStore, InsertOutcome, ReviewChange, ReviewOutcome, StoreError};

/// How often a review re-reads after losing a race before it gives up.
const MAX_REVIEW_ATTEMPTS: usize = 8;

/// Errors of UGC Service operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input field is missing or invalid.
    #[error("{message}")]
    Invalid { field: String, message: String },
    /// No item has this id.
    #[error("content {0:?} not found")]
    NotFound(String),
    /// An item with this client-chosen id exists already.
    #[error("content {0:?} already exists; choose another content_id")]
    AlreadyExists(String),
    /// The review rules forbid this move.
    #[error("cannot move content {id:?} from {from} to {to}")]
    IllegalTransition {
        id: String,
        from: ContentState,
        to: ContentState,
    },
    /// Reviewers kept changing the item while this review was retried.
    #[error("content {0:?} was reviewed concurrently too often; retry the request")]
    Contended(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Error {
    fn invalid(field: &str, message: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// Fields of a new item as the client sent them; `None` or empty means absent.
#[derive(Clone, Debug, Default)]
pub struct NewContent {
    pub content_id: Option<String>,
    pub tenant_id: Option<String>,
    pub project_id: Option<String>,
    pub filename: Option<String>,
    pub mime_type: Option<String>,
    pub size_bytes: Option<SizeBytes>,
    pub labels: Option<BTreeMap<String, String>>,
    pub attributes: Option<BTreeMap<String, String>>,
}

/// A review decision as the client sent it.
#[derive(Clone, Debug, Default)]
pub struct ReviewRequest {
    pub state: Option<String>,
    pub reason: Option<String>,
    pub reviewer: Option<String>,
}

/// The UGC Service: every content rule lives here, over any store.
pub struct ContentService {
    store: Arc<dyn ContentStore>,
    clock: SharedClock,
}

impl ContentService {
    /// Creates the service over a store and a clock.
    pub fn new(store: Arc<dyn ContentStore>, clock: SharedClock) -> Self {
        ContentService { store, clock }
    }

    /// Validates and stores a new item in state `pending` with an empty reason.
    pub async fn create(&self, input: NewContent) -> Result<ContentItem, Error> {
        let content_id = required("content_id", input.content_id)?;
        model::check_content_id(&content_id)
            .map_err(|message| Error::invalid("content_id", message))?;
        let tenant_id = checked_text(
            "tenant_id",
            required("tenant_id", input.tenant_id)?,
            MAX_ID_LEN,
        )?;
        let project_id = checked_text(
            "project_id",
            required("project_id", input.project_id)?,
            MAX_ID_LEN,
        )?;
        let filename = checked_text(
            "filename",
            required("filename", input.filename)?,
            MAX_FILENAME_LEN,
        )?;
        let mime_type = checked_mime_type(input.mime_type.unwrap_or_default())?;
        let labels = checked_map("labels", input.labels.unwrap_or_default())?;
        let attributes = checked_map("attributes", input.attributes.unwrap_or_default())?;

        let now = self.clock.now();
        let item = ContentItem {
            content_id,
            tenant_id,
            project_id,
            filename,
            mime_type,
            size_bytes: input.size_bytes.map_or(0, |size| size.0),
            state: ContentState::Pending,
            reason: String::new(),
            submitted_at: now,
            updated_at: now,
            labels,
            attributes,
        };
        if self.store.insert(&item).await? == InsertOutcome::AlreadyExists {
            return Err(Error::AlreadyExists(item.content_id));
        }
        tracing::debug!(content_id = %item.content_id, tenant_id = %item.tenant_id, "content submitted");
        Ok(item)
    }

    /// Reads an item; an id that cannot exist is simply not found.
    pub async fn get(&self, id: &str) -> Result<ContentItem, Error> {
        let id = existing_id(id)?;
        self.store
            .get(id)
            .await?
            .ok_or_else(|| Error::NotFound(id.to_string()))
    }

    /// Applies a review decision if the review rules allow the move, and records it in the
    /// item's history. The item's reason becomes the one this review gives (empty if none).
    ///
    /// The check and the write are a compare-and-set on the state read, so two racing
    /// reviews apply one after the other, each checked against the state the other left.
    pub async fn review(&self, id: &str, request: ReviewRequest) -> Result<ContentItem, Error> {
        let id = existing_id(id)?;
        let target = parse_state(request.state)?;
        let reason = checked_reason(request.reason.unwrap_or_default())?;
        let reviewer = checked_text("reviewer", request.reviewer.unwrap_or_default(), MAX_ID_LEN)?;

        for _ in 0..MAX_REVIEW_ATTEMPTS {
            let current = self
                .store
                .get(id)
                .await?
                .ok_or_else(|| Error::NotFound(id.to_string()))?;
            if !current.state.can_move_to(target) {
                return Err(Error::IllegalTransition {
                    id: id.to_string(),
                    from: current.state,
                    to: target,
                });
            }

            let change = ReviewChange {
                expected: current.state,
                state: target,
                reason: reason.clone(),
                reviewer: reviewer.clone(),
                at: self.clock.now(),
            };
            match self.store.review(id, &change).await? {
                ReviewOutcome::Applied(updated) => {
                    tracing::debug!(content_id = %id, from = %current.state, to = %target, reviewer = %reviewer, "content reviewed");
                    return Ok(*updated);
                }
                ReviewOutcome::Missing => return Err(Error::NotFound(id.to_string())),
                ReviewOutcome::Stale => continue,
            }
        }
        tracing::warn!(content_id = %id, attempts = MAX_REVIEW_ATTEMPTS, "review kept losing races");
        Err(Error::Contended(id.to_string()))
    }

    /// Lists an item's reviews, oldest first.
    pub async fn reviews(&self, id: &str) -> Result<Vec<Review>, Error> {
        let id = existing_id(id)?;
        self.store
            .reviews(id)
            .await?
            .ok_or_else(|| Error::NotFound(id.to_string()))
    }

    /// Lists items newest first.
    pub async fn list(
        &self,
        filter: &ContentFilter,
        page: &PageRequest,
    ) -> Result<Page<ContentItem>, Error> {
        Ok(self.store.list(filter, page).await?)
    }
}

/// Parses a state given by a client; used for the request body and the list filter.
pub fn parse_state_text(field: &str, text: &str) -> Result<ContentState, Error> {
    ContentState::parse(text).ok_or_else(|| {
        Error::invalid(
            field,
            format!(
                "{field} {text:?} is not a content state; use one of pending, approved, rejected, archived"
            ),
        )
    })
}

fn parse_state(state: Option<String>) -> Result<ContentState, Error> {
    match state.filter(|text| !text.is_empty()) {
        Some(text) => parse_state_text("state", &text),
        None => Err(Error::invalid("state", "state is required")),
    }
}

/// Accepts a path id only if an item could have it. Any other id cannot exist.
fn existing_id(id: &str) -> Result<&str, Error> {
    match model::check_content_id(id) {
        Ok(()) if !id.is_empty() => Ok(id),
        _ => Err(Error::NotFound(id.to_string())),
    }
}

fn required(field: &str, value: Option<String>) -> Result<String, Error> {
    value
        .filter(|text| !text.is_empty())
        .ok_or_else(|| Error::invalid(field, format!("{field} is required")))
}

/// Checks a one-line text field: identifiers and names.
fn checked_text(field: &str, text: String, max_len: usize) -> Result<String, Error> {
    checked_chars(field, text, max_len, |_| false)
}

/// Checks a review reason, which may span lines and contain tabs.
fn checked_reason(text: String) -> Result<String, Error> {
    checked_chars("reason", text, MAX_REASON_LEN, |c| {
        matches!(c, '\n' | '\r' | '\t')
    })
}

fn checked_chars(
    field: &str,
    text: String,
    max_len: usize,
    allowed_control: fn(char) -> bool,
) -> Result<String, Error> {
    if text.chars().count() > max_len {
        return Err(Error::invalid(
            field,
            format!("{field} is longer than {max_len} characters"),
        ));
    }
    if text.chars().any(|c| c.is_control() && !allowed_control(c)) {
        return Err(Error::invalid(
            field,
            format!("{field} contains control characters"),
        ));
    }
    Ok(text)
}

/// Accepts an empty `mime_type` or one of the form `type/subtype`, parameters allowed.
fn checked_mime_type(text: String) -> Result<String, Error> {
    let text = checked_text("mime_type", text, MAX_MIME_TYPE_LEN)?;
    if text.is_empty() {
        return Ok(text);
    }
    let essence = text.split(';').next().unwrap_or("").trim();
    let well_formed = essence
        .split_once('/')
        .is_some_and(|(kind, subtype)| is_media_token(kind) && is_media_token(subtype));
    if !well_formed {
        return Err(Error::invalid(
            "mime_type",
            format!("mime_type {text:?} is not a media type such as image/png"),
        ));
    }
    Ok(text)
}

/// RFC 6838 restricted names: a letter or digit, then letters, digits and `!#$&-^_.+`.
fn is_media_token(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c))
}

fn checked_map(
    field: &str,
    map: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, Error> {
    if map.len() > MAX_MAP_ENTRIES {
        return Err(Error::invalid(
            field,
            format!(
                "{field} has {} entries; at most {MAX_MAP_ENTRIES} are allowed",
                map.len()
            ),
        ));
    }
    for (key, value) in &map {
        if key.is_empty() {
            return Err(Error::invalid(
                field,
                format!("{field} keys must not be empty"),
            ));
        }
        if key.len() > MAX_MAP_TEXT_LEN || value.len() > MAX_MAP_TEXT_LEN {
            return Err(Error::invalid(
                &format!("{field}.{key}"),
                format!("{field} keys and values are limited to {MAX_MAP_TEXT_LEN} bytes"),
            ));
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mime_type_needs_type_and_subtype() {
        for good in [
            "",
            "image/png",
            "text/plain; charset=utf-8",
            "application/vnd.api+json",
        ] {
            assert!(checked_mime_type(good.to_string()).is_ok(), "{good}");
        }
        for bad in [
            "png",
            "image/",
            "/png",
            "image/ png",
            "image/png/x",
            "ima ge/png",
        ] {
            assert!(checked_mime_type(bad.to_string()).is_err(), "{bad}");
        }
    }

    #[test]
    fn reason_may_span_lines_but_ids_may_not() {
        assert!(checked_reason("line one\nline two\tend".into()).is_ok());
        assert!(checked_text("reviewer", "a\nb".into(), 100).is_err());
        assert!(checked_reason("bell\u{7}".into()).is_err());
    }

    #[test]
    fn map_limits_name_the_field() {
        let mut map = BTreeMap::new();
        map.insert("k".to_string(), "v".repeat(MAX_MAP_TEXT_LEN + 1));
        match checked_map("labels", map) {
            Err(Error::Invalid { field, .. }) => assert_eq!(field, "labels.k"),
            other => panic!("expected an invalid field, got {other:?}"),
        }
        let many = (0..=MAX_MAP_ENTRIES)
            .map(|i| (i.to_string(), String::new()))
            .collect();
        assert!(checked_map("attributes", many).is_err());
    }
}
