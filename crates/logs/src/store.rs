//! The events `GET /logs/recent` reads: a ring in memory mode, a table in Postgres
//! mode. Each store is also the sink that fills it.

mod memory;
mod postgres;

use std::sync::Arc;

use async_trait::async_trait;
use platform::{Backend, Timestamp};

use crate::config::Settings;
use crate::model::{RecentQuery, RecordRef};
use crate::sink::Sink;

pub use memory::MemoryStore;
pub use postgres::PostgresStore;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Postgres failed or is out of reach.
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

/// Delivered events, readable newest first. Implementations keep no domain rules.
#[async_trait]
pub trait LogStore: Sink {
    /// Hands `visit` the newest `query.limit` events that pass its filters, oldest first.
    /// Order: `received_at`, then the accepting instance's id, then `sequence`.
    async fn recent(
        &self,
        query: &RecentQuery,
        visit: &mut (dyn for<'r> FnMut(RecordRef<'r>) + Send),
    ) -> Result<(), StoreError>;

    /// Deletes at most `limit` events received before `cutoff`, oldest first; returns
    /// how many it deleted.
    async fn delete_received_before(
        &self,
        cutoff: Timestamp,
        limit: usize,
    ) -> Result<u64, StoreError>;
}

/// Opens the store the backend calls for.
pub fn open(backend: &Backend, settings: &Settings) -> Arc<dyn LogStore> {
    match backend {
        Backend::Memory => Arc::new(MemoryStore::new(settings.recent_capacity.get())),
        Backend::Postgres(pool) => Arc::new(PostgresStore::new(pool.clone())),
    }
}
