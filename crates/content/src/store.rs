//! The persistence contract for content items and reviews, with a memory and a Postgres
//! implementation.

mod memory;
mod postgres;

use std::sync::Arc;

use async_trait::async_trait;
use platform::Backend;
use platform::Timestamp;
use platform::pagination::{Page, PageRequest};

use crate::config::Settings;
use crate::model::{ContentFilter, ContentItem, ContentState, Review};

pub use memory::MemoryStore;
pub use postgres::PostgresStore;

/// Errors of store operations.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The memory store contains its configured maximum number of items.
    #[error("the store holds its maximum of {capacity} content items")]
    Full { capacity: usize },
    /// Postgres failed or is out of reach.
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

/// A review that applies only if the item is still in `expected`.
#[derive(Clone, Debug)]
pub struct ReviewChange {
    pub expected: ContentState,
    pub state: ContentState,
    pub reason: String,
    pub reviewer: String,
    /// When the review was made. The store records the later of this and the item's
    /// `updated_at`, so an item's timestamps and its history never go backwards.
    pub at: Timestamp,
}

/// Result of inserting an item.
#[derive(Debug, PartialEq, Eq)]
pub enum InsertOutcome {
    /// The item is stored.
    Inserted,
    /// An item with this `content_id` exists already; nothing was written.
    AlreadyExists,
}

/// Result of a conditional review.
#[derive(Debug)]
pub enum ReviewOutcome {
    /// The review applied and was added to the history; the updated item.
    Applied(Box<ContentItem>),
    /// Another reviewer moved the item first; the caller re-reads and decides again.
    Stale,
    /// No such item.
    Missing,
}

/// Persistence of content items and their review history. Implementations keep no
/// domain rules: the service decides which reviews are legal, and the store applies each
/// one atomically, state and history together.
#[async_trait]
pub trait ContentStore: Send + Sync + 'static {
    /// Stores a new item unless its id is taken.
    async fn insert(&self, item: &ContentItem) -> Result<InsertOutcome, StoreError>;

    /// Reads one item.
    async fn get(&self, id: &str) -> Result<Option<ContentItem>, StoreError>;

    /// Applies `change` if the state is still `change.expected` (compare and set), and
    /// appends the review to the item's history in the same step.
    async fn review(&self, id: &str, change: &ReviewChange) -> Result<ReviewOutcome, StoreError>;

    /// Reads an item's reviews, oldest first; `None` when the item does not exist.
    async fn reviews(&self, id: &str) -> Result<Option<Vec<Review>>, StoreError>;

    /// Lists matching items, newest first.
    async fn list(
        &self,
        filter: &ContentFilter,
        page: &PageRequest,
    ) -> Result<Page<ContentItem>, StoreError>;
}

/// Opens the store the backend calls for.
pub fn open(backend: &Backend, settings: &Settings) -> Arc<dyn ContentStore> {
    match backend {
        Backend::Memory => Arc::new(MemoryStore::new(
            Some(settings.max_items),
            settings.max_reviews_per_item,
        )),
        Backend::Postgres(pool) => Arc::new(PostgresStore::new(pool.clone())),
    }
}
