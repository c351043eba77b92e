//! The persistence contract for delivery history, with a memory and a Postgres implementation.

mod memory;
mod postgres;

use std::sync::Arc;

use async_trait::async_trait;
use platform::{Backend, Timestamp};
use uuid::Uuid;

use crate::config::Settings;
use crate::model::Delivery;

pub use memory::MemoryStore;
pub use postgres::PostgresStore;

/// An error from a store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Postgres failed or is out of reach.
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

/// Rows removed by one prune.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Sent deliveries older than the newest ones kept.
    pub sent: u64,
    /// Pending deliveries whose process stopped before it finished the send.
    pub abandoned: u64,
}

/// Persistence of delivery history. A delivery is reserved before its sender runs, then
/// either marked sent or released, so that a store that cannot take the write fails the
/// request before anything is sent. Only sent deliveries appear in `recent`.
#[async_trait]
pub trait DeliveryStore: Send + Sync + 'static {
    /// Records a pending delivery.
    async fn reserve(&self, delivery: &Delivery) -> Result<(), StoreError>;

    /// Records the delivery as sent, with its final status and `sent_at`.
    async fn mark_sent(&self, delivery: &Delivery) -> Result<(), StoreError>;

    /// Forgets a pending delivery whose send failed.
    async fn release(&self, id: Uuid) -> Result<(), StoreError>;

    /// Returns the newest `limit` sent deliveries, oldest first.
    async fn recent(&self, limit: usize) -> Result<Vec<Delivery>, StoreError>;

    /// Deletes sent deliveries beyond the newest `keep`, and pending ones accepted before
    /// `abandoned_before`.
    async fn prune(&self, keep: usize, abandoned_before: Timestamp) -> Result<Pruned, StoreError>;
}

/// Opens the store the backend calls for.
pub fn open(backend: &Backend, settings: &Settings) -> Arc<dyn DeliveryStore> {
    match backend {
        Backend::Memory => Arc::new(MemoryStore::new(settings.recent_capacity)),
        Backend::Postgres(pool) => Arc::new(PostgresStore::new(pool.clone())),
    }
}
