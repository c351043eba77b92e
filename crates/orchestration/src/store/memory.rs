//! Assignments in process memory, bounded by a configurable count.

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use parking_lot::RwLock;
use platform::Timestamp;
use platform::pagination::{Cursor, Page, PageRequest};
use uuid::Uuid;

use super::{AssignmentStore, ChangeOutcome, StatusChange, StoreError};
use crate::model::{Assignment, AssignmentFilter};

/// Assignments in a map, with an index in newest-first order.
#[derive(Debug, Default)]
pub struct MemoryStore {
    capacity: Option<usize>,
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Boxed, so that growing the table moves pointers rather than whole assignments
    /// while the write lock is held. The service creates every id, so clients cannot
    /// choose colliding keys and a fast hasher is safe. Lists look up every entry they
    /// scan.
    by_id: HashMap<Uuid, Box<Assignment>, foldhash::fast::RandomState>,
    by_creation: BTreeSet<(Timestamp, Uuid)>,
    /// The same index per agent: an agent's list walks only its own assignments. An
    /// assignment's agent never changes.
    by_agent: HashMap<String, BTreeSet<(Timestamp, Uuid)>>,
}

impl MemoryStore {
    /// Creates an empty store; `capacity` caps the number of assignments.
    pub fn new(capacity: Option<usize>) -> Self {
        MemoryStore {
            capacity,
            inner: RwLock::default(),
        }
    }
}

#[async_trait]
impl AssignmentStore for MemoryStore {
    async fn insert(&self, assignment: &Assignment) -> Result<(), StoreError> {
        let mut inner = self.inner.write();
        if let Some(capacity) = self.capacity
            && inner.by_id.len() >= capacity
        {
            return Err(StoreError::Full { capacity });
        }
        let key = (assignment.created_at, assignment.assignment_id);
        inner
            .by_agent
            .entry(assignment.agent_id.clone())
            .or_default()
            .insert(key);
        inner.by_creation.insert(key);
        inner
            .by_id
            .insert(assignment.assignment_id, Box::new(assignment.clone()));
        Ok(())
    }

    async fn get(&self, id: Uuid) -> Result<Option<Assignment>, StoreError> {
        Ok(self
            .inner
            .read()
            .by_id
            .get(&id)
            .map(|found| Assignment::clone(found)))
    }

    async fn change_status(
        &self,
        id: Uuid,
        change: &StatusChange,
    ) -> Result<ChangeOutcome, StoreError> {
        let mut inner = self.inner.write();
        let Some(assignment) = inner.by_id.get_mut(&id) else {
            return Ok(ChangeOutcome::Missing);
        };
        if assignment.status != change.expected {
            return Ok(ChangeOutcome::Stale);
        }
        assignment.status = change.status;
        if let Some(message) = &change.message {
            assignment.status_message = message.clone();
        }
        assignment.updated_at = change.at;
        Ok(ChangeOutcome::Applied(Assignment::clone(assignment)))
    }

    async fn list(
        &self,
        filter: &AssignmentFilter,
        page: &PageRequest,
    ) -> Result<Page<Assignment>, StoreError> {
        let inner = self.inner.read();
        let no_assignments = BTreeSet::new();
        let index = match &filter.agent_id {
            Some(agent) => inner.by_agent.get(agent).unwrap_or(&no_assignments),
            None => &inner.by_creation,
        };
        // The index orders ids as their text does, so the cursor's position can be
        // sought directly instead of walking every newer assignment.
        let newer_than_cursor = match &page.after {
            None => index.range(..),
            Some(cursor) => {
                let id = Uuid::parse_str(&cursor.id).unwrap_or(Uuid::nil());
                index.range(..(cursor.created_at(), id))
            }
        };
        let matching = newer_than_cursor
            .rev()
            .filter_map(|(_, id)| inner.by_id.get(id))
            .filter(|assignment| filter.matches(assignment))
            .take(page.size + 1)
            .map(|assignment| Assignment::clone(assignment))
            .collect();
        Ok(Page::from_overfetch(matching, page.size, |assignment| {
            Cursor::after(assignment.created_at, assignment.assignment_id.to_string())
        }))
    }
}
