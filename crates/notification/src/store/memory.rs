//! Delivery history in a ring in process memory that drops the oldest entry when full.

use std::collections::VecDeque;

use async_trait::async_trait;
use parking_lot::Mutex;
use platform::Timestamp;
use uuid::Uuid;

use super::{DeliveryStore, Pruned, StoreError};
use crate::model::Delivery;

/// The newest sent deliveries, up to a fixed capacity. Pending deliveries are not kept,
/// because `mark_sent` here never fails, so a reservation would protect nothing.
#[derive(Debug)]
pub struct MemoryStore {
    capacity: usize,
    ring: Mutex<VecDeque<Delivery>>,
}

impl MemoryStore {
    /// Creates an empty ring of `capacity` deliveries.
    pub fn new(capacity: usize) -> Self {
        MemoryStore {
            capacity,
            ring: Mutex::default(),
        }
    }
}

#[async_trait]
impl DeliveryStore for MemoryStore {
    async fn reserve(&self, _: &Delivery) -> Result<(), StoreError> {
        Ok(())
    }

    async fn mark_sent(&self, delivery: &Delivery) -> Result<(), StoreError> {
        let mut ring = self.ring.lock();
        if self.capacity == 0 {
            return Ok(());
        }
        if ring.len() == self.capacity {
            ring.pop_front();
        }
        ring.push_back(delivery.clone());
        Ok(())
    }

    async fn release(&self, _: Uuid) -> Result<(), StoreError> {
        Ok(())
    }

    async fn recent(&self, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        let ring = self.ring.lock();
        let skip = ring.len().saturating_sub(limit);
        Ok(ring.iter().skip(skip).cloned().collect())
    }

    async fn prune(&self, _: usize, _: Timestamp) -> Result<Pruned, StoreError> {
        Ok(Pruned::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DeliveryStatus;

    #[tokio::test]
    async fn ring_never_grows_past_capacity() {
        let store = MemoryStore::new(2);
        for body in ["a", "b", "c", "d"] {
            store
                .mark_sent(&Delivery::example(body))
                .await
                .expect("recorded");
        }
        assert_eq!(store.ring.lock().len(), 2);
        let kept: Vec<String> = store
            .recent(usize::MAX)
            .await
            .expect("readable")
            .into_iter()
            .map(|delivery| delivery.body)
            .collect();
        assert_eq!(kept, ["c", "d"]);
    }

    #[tokio::test]
    async fn reserve_and_release_keep_nothing() {
        let store = MemoryStore::new(2);
        let pending = Delivery {
            status: DeliveryStatus::Pending,
            ..Delivery::example("a")
        };
        store.reserve(&pending).await.expect("reserved");
        store.release(pending.id).await.expect("released");
        assert!(store.recent(2).await.expect("readable").is_empty());
    }
}
