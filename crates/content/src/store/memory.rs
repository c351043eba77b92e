//! Content items in process memory, bounded by an item count and a per-item history size.

use std::collections::{BTreeSet, HashMap, VecDeque};

use async_trait::async_trait;
use parking_lot::RwLock;
use platform::Timestamp;
use platform::pagination::{Cursor, Page, PageRequest};

use super::{ContentStore, InsertOutcome, ReviewChange, ReviewOutcome, StoreError};
use crate::model::{ContentFilter, ContentItem, Review};

/// Items in a map, with an index in newest-first order.
#[derive(Debug)]
pub struct MemoryStore {
    capacity: Option<usize>,
    max_reviews_per_item: usize,
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Boxed, so that growing the table moves pointers rather than whole items while the
    /// write lock is held.
    by_id: HashMap<String, Box<Entry>>,
    by_submission: BTreeSet<(Timestamp, String)>,
    /// The same index per tenant: a tenant's list walks only its own items. An item's
    /// tenant never changes.
    by_tenant: HashMap<String, BTreeSet<(Timestamp, String)>>,
}

#[derive(Debug)]
struct Entry {
    item: ContentItem,
    /// Oldest first; a ring that drops the oldest review once full.
    reviews: VecDeque<Review>,
}

impl MemoryStore {
    /// Creates an empty store; `capacity` caps the number of items, and each item keeps
    /// its newest `max_reviews_per_item` reviews.
    pub fn new(capacity: Option<usize>, max_reviews_per_item: usize) -> Self {
        MemoryStore {
            capacity,
            max_reviews_per_item: max_reviews_per_item.max(1),
            inner: RwLock::default(),
        }
    }
}

#[async_trait]
impl ContentStore for MemoryStore {
    async fn insert(&self, item: &ContentItem) -> Result<InsertOutcome, StoreError> {
        let mut inner = self.inner.write();
        if inner.by_id.contains_key(&item.content_id) {
            return Ok(InsertOutcome::AlreadyExists);
        }
        if let Some(capacity) = self.capacity
            && inner.by_id.len() >= capacity
        {
            return Err(StoreError::Full { capacity });
        }
        let key = (item.submitted_at, item.content_id.clone());
        inner
            .by_tenant
            .entry(item.tenant_id.clone())
            .or_default()
            .insert(key.clone());
        inner.by_submission.insert(key);
        let entry = Entry {
            item: item.clone(),
            reviews: VecDeque::new(),
        };
        inner.by_id.insert(item.content_id.clone(), Box::new(entry));
        Ok(InsertOutcome::Inserted)
    }

    async fn get(&self, id: &str) -> Result<Option<ContentItem>, StoreError> {
        Ok(self
            .inner
            .read()
            .by_id
            .get(id)
            .map(|entry| entry.item.clone()))
    }

    async fn review(&self, id: &str, change: &ReviewChange) -> Result<ReviewOutcome, StoreError> {
        let mut inner = self.inner.write();
        let Some(entry) = inner.by_id.get_mut(id) else {
            return Ok(ReviewOutcome::Missing);
        };
        if entry.item.state != change.expected {
            return Ok(ReviewOutcome::Stale);
        }

        let at = change.at.max(entry.item.updated_at);
        entry.item.state = change.state;
        entry.item.reason = change.reason.clone();
        entry.item.updated_at = at;
        if entry.reviews.len() >= self.max_reviews_per_item {
            entry.reviews.pop_front();
        }
        entry.reviews.push_back(Review {
            from: change.expected,
            to: change.state,
            reason: change.reason.clone(),
            reviewer: change.reviewer.clone(),
            reviewed_at: at,
        });
        Ok(ReviewOutcome::Applied(Box::new(entry.item.clone())))
    }

    async fn reviews(&self, id: &str) -> Result<Option<Vec<Review>>, StoreError> {
        let inner = self.inner.read();
        Ok(inner
            .by_id
            .get(id)
            .map(|entry| entry.reviews.iter().cloned().collect()))
    }

    async fn list(
        &self,
        filter: &ContentFilter,
        page: &PageRequest,
    ) -> Result<Page<ContentItem>, StoreError> {
        let inner = self.inner.read();
        let no_items = BTreeSet::new();
        let index = match &filter.tenant_id {
            Some(tenant) => inner.by_tenant.get(tenant).unwrap_or(&no_items),
            None => &inner.by_submission,
        };
        // Newest first: walk the index backwards from just below the cursor, if any.
        let newer_bound = page
            .after
            .as_ref()
            .map(|cursor| (cursor.created_at(), cursor.id.clone()));
        let keys: Box<dyn Iterator<Item = &(Timestamp, String)>> = match newer_bound {
            Some(bound) => Box::new(index.range(..bound).rev()),
            None => Box::new(index.iter().rev()),
        };
        let matching = keys
            .filter_map(|(_, id)| inner.by_id.get(id))
            .map(|entry| &entry.item)
            .filter(|item| filter.matches(item))
            .take(page.size + 1)
            .cloned()
            .collect();
        Ok(Page::from_overfetch(matching, page.size, |item| {
            Cursor::after(item.submitted_at, item.content_id.clone())
        }))
    }
}
