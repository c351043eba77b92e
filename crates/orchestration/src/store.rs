//! The persistence contract for assignments, with a memory and a Postgres implementation.

mod memory;
mod postgres;

use std::sync::Arc;

use async_trait::async_trait;
use platform::Backend;
use platform::Timestamp;
use platform::pagination::{Page, PageRequest};
use uuid::Uuid;

use crate::config::Settings;
use crate::model::{Assignment, AssignmentFilter, WorkStatus};

pub use memory::MemoryStore;
pub use postgres::PostgresStore;

/// Failure of a store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The memory store contains its configured maximum.
    #[error("the store holds its maximum of {capacity} assignments")]
    Full { capacity: usize },
    /// Postgres failed or is out of reach.
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

/// A status change that applies only if the assignment is still in `expected`.
#[derive(Clone, Debug)]
pub struct StatusChange {
    pub expected: WorkStatus,
    pub status: WorkStatus,
    /// `None` keeps the current message.
    pub message: Option<String>,
    pub at: Timestamp,
}

/// Result of a conditional status change.
#[derive(Debug)]
pub enum ChangeOutcome {
    /// The change applied; the updated assignment.
    Applied(Assignment),
    /// Another writer moved the assignment first; the caller re-reads and decides again.
    Stale,
    /// No such assignment.
    Missing,
}

/// Persistence of assignments. Implementations keep no domain rules: the service decides
/// which changes are legal, and the store applies them atomically.
#[async_trait]
pub trait AssignmentStore: Send + Sync + 'static {
    /// Stores a new assignment.
    async fn insert(&self, assignment: &Assignment) -> Result<(), StoreError>;

    /// Reads one assignment.
    async fn get(&self, id: Uuid) -> Result<Option<Assignment>, StoreError>;

    /// Applies `change` if the status is still `change.expected` (compare and set).
    async fn change_status(
        &self,
        id: Uuid,
        change: &StatusChange,
    ) -> Result<ChangeOutcome, StoreError>;

    /// Lists matching assignments, newest first.
    async fn list(
        &self,
        filter: &AssignmentFilter,
        page: &PageRequest,
    ) -> Result<Page<Assignment>, StoreError>;
}

/// Opens the store the backend calls for.
pub fn open(backend: &Backend, settings: &Settings) -> Arc<dyn AssignmentStore> {
    match backend {
        Backend::Memory => Arc::new(MemoryStore::new(Some(settings.max_assignments))),
        Backend::Postgres(pool) => Arc::new(PostgresStore::new(pool.clone())),
    }
}
