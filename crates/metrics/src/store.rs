//! The persistence contract for roll-ups, with a memory and a Postgres implementation.
//!
//! Both keep this process's samples in [`Rollups`]; the Postgres store also flushes them
//! and reads the buckets other replicas flushed.

mod memory;
mod postgres;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use platform::{Backend, Timestamp};

use crate::aggregate::Aggregate;
use crate::config::Settings;
use crate::model::{Batch, SeriesFilter, Timeline};
use crate::rollups::{RecordError, Rollups};

pub use memory::MemoryStore;
pub use postgres::PostgresStore;

/// Errors of store operations.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The batch was not recorded.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// Postgres failed or is out of reach.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// A stored row cannot be read back.
    #[error("corrupt row in metrics.buckets for series {series}")]
    Corrupt {
        series: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Persistence of roll-up buckets. Timestamps passed in are bucket starts.
#[async_trait]
pub trait MetricsStore: Send + Sync + 'static {
    /// Records every sample of the batch, or none when a new series would pass the cap.
    async fn record(&self, batch: &Batch) -> Result<(), StoreError>;

    /// Records a batch of samples of one series and returns that series' statistics over
    /// the buckets from `from` on. In Postgres mode the buckets of other replicas are read
    /// first, so a failed read records nothing.
    async fn record_series(&self, batch: &Batch, from: Timestamp) -> Result<Aggregate, StoreError>;

    /// Statistics of every series that passes `filter`, over the buckets from `from` on,
    /// keyed by series identity; series without samples there are left out.
    async fn summarize(
        &self,
        filter: &SeriesFilter,
        from: Timestamp,
    ) -> Result<HashMap<String, Aggregate>, StoreError>;

    /// Drops the buckets that begin before `before`.
    async fn expire(&self, before: Timestamp) -> Result<(), StoreError>;

    /// Writes the buckets changed since the last flush; returns how many were written.
    async fn flush(&self) -> Result<usize, StoreError>;

    /// Counts of work not yet persisted, by kind.
    fn backlog(&self) -> Vec<(&'static str, u64)>;
}

/// Opens the store the backend calls for.
pub fn open(backend: &Backend, settings: &Settings) -> Arc<dyn MetricsStore> {
    let timeline = Timeline::new(settings.rollup_interval);
    match backend {
        Backend::Memory => Arc::new(MemoryStore::new(Rollups::new(
            timeline,
            settings.max_series,
            false,
        ))),
        Backend::Postgres(pool) => Arc::new(PostgresStore::new(
            pool.clone(),
            Rollups::new(timeline, settings.max_series, true),
        )),
    }
}
