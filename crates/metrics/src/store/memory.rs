//! Roll-ups in process memory only; they are lost on exit.

use std::collections::HashMap;

use async_trait::async_trait;
use platform::Timestamp;

use super::{MetricsStore, StoreError};
use crate::aggregate::Aggregate;
use crate::model::{Batch, SeriesFilter};
use crate::rollups::Rollups;

/// The memory store: this process's roll-ups and nothing else.
pub struct MemoryStore {
    rollups: Rollups,
}

impl MemoryStore {
    /// Wraps a set of roll-ups.
    pub fn new(rollups: Rollups) -> Self {
        MemoryStore { rollups }
    }
}

#[async_trait]
impl MetricsStore for MemoryStore {
    async fn record(&self, batch: &Batch) -> Result<(), StoreError> {
        Ok(self.rollups.record(batch)?)
    }

    async fn record_series(&self, batch: &Batch, from: Timestamp) -> Result<Aggregate, StoreError> {
        self.rollups.record(batch)?;
        let mut aggregate = Aggregate::default();
        if let Some(sample) = batch.samples().first() {
            let from = self.rollups.timeline().index_of(from);
            let identity = batch.identity(sample).identity;
            self.rollups
                .summarize_series(identity, from, &mut aggregate);
        }
        Ok(aggregate)
    }

    async fn summarize(
        &self,
        filter: &SeriesFilter,
        from: Timestamp,
    ) -> Result<HashMap<String, Aggregate>, StoreError> {
        let mut merged = HashMap::new();
        let from = self.rollups.timeline().index_of(from);
        self.rollups.summarize(filter, from, &mut merged);
        Ok(merged)
    }

    async fn expire(&self, before: Timestamp) -> Result<(), StoreError> {
        let dropped = self
            .rollups
            .expire(self.rollups.timeline().index_of(before));
        if dropped > 0 {
            tracing::debug!(dropped, "expired series");
        }
        Ok(())
    }

    async fn flush(&self) -> Result<usize, StoreError> {
        Ok(0)
    }

    fn backlog(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}
