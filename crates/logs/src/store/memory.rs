//! The recent-events ring of memory mode: a fixed number of events, oldest dropped first.
//!
//! The ring keeps the delivered batches themselves, shared with the queue, instead of
//! copies of their events. Only the newest `capacity` events count as kept, so all but
//! the oldest kept batch are kept whole, and at most that one batch is held for events
//! that no longer count.

use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::RwLock;
use platform::Timestamp;

use super::{LogStore, StoreError};
use crate::model::{Batch, RecentQuery, RecordRef};
use crate::sink::{Sink, SinkError};

/// The newest `capacity` delivered events, in delivery order (which is sequence order).
#[derive(Debug)]
pub struct MemoryStore {
    capacity: usize,
    ring: RwLock<Ring>,
}

#[derive(Debug, Default)]
struct Ring {
    /// Oldest first; every segment keeps at least one event.
    segments: VecDeque<Segment>,
    /// Events kept by all segments together.
    len: usize,
}

/// The events of one batch from `first` on.
#[derive(Debug)]
struct Segment {
    batch: Arc<Batch>,
    first: usize,
}

impl Segment {
    fn len(&self) -> usize {
        self.batch.len() - self.first
    }
}

impl Ring {
    /// Drops the oldest events until at most `keep` remain; returns the batches no
    /// longer kept, so that the caller frees them outside the lock.
    fn trim_to(&mut self, keep: usize) -> Vec<Arc<Batch>> {
        let mut released = Vec::new();
        while self.len > keep {
            let excess = self.len - keep;
            let Some(oldest) = self.segments.front_mut() else {
                break;
            };
            if oldest.len() > excess {
                oldest.first += excess;
                self.len -= excess;
            } else {
                self.len -= oldest.len();
                if let Some(segment) = self.segments.pop_front() {
                    released.push(segment.batch);
                }
            }
        }
        released
    }
}

impl MemoryStore {
    /// Creates an empty ring of `capacity` events.
    pub fn new(capacity: usize) -> Self {
        MemoryStore {
            capacity,
            ring: RwLock::new(Ring::default()),
        }
    }
}

#[async_trait]
impl Sink for MemoryStore {
    fn name(&self) -> &'static str {
        "ring"
    }

    /// Everything waiting: the ring keeps only the newest events of a delivery, and
    /// each batch costs it one reference.
    fn max_delivery_events(&self) -> usize {
        usize::MAX
    }

    async fn write(&self, batches: &[Arc<Batch>]) -> Result<(), SinkError> {
        // Batches that the newer ones of the same delivery push out whole are skipped.
        let total: usize = batches.iter().map(|batch| batch.len()).sum();
        let mut skip = total.saturating_sub(self.capacity);
        let released = {
            let mut guard = self.ring.write();
            let ring = &mut *guard;
            for batch in batches {
                if batch.len() <= skip {
                    skip -= batch.len();
                    continue;
                }
                ring.segments.push_back(Segment {
                    batch: batch.clone(),
                    first: skip,
                });
                ring.len += batch.len() - skip;
                skip = 0;
            }
            ring.trim_to(self.capacity)
        };
        drop(released);
        Ok(())
    }
}

#[async_trait]
impl LogStore for MemoryStore {
    async fn recent(
        &self,
        query: &RecentQuery,
        visit: &mut (dyn for<'r> FnMut(RecordRef<'r>) + Send),
    ) -> Result<(), StoreError> {
        // Readers share the lock and copy nothing; the ring sink waits for them briefly.
        let ring = self.ring.read();
        let mut newest: Vec<(usize, usize)> = Vec::with_capacity(query.limit.min(ring.len));
        'segments: for (position, segment) in ring.segments.iter().enumerate().rev() {
            for index in (segment.first..segment.batch.len()).rev() {
                if newest.len() == query.limit {
                    break 'segments;
                }
                if query.matches(&segment.batch.events[index]) {
                    newest.push((position, index));
                }
            }
        }
        for &(position, index) in newest.iter().rev() {
            visit(ring.segments[position].batch.record(index));
        }
        Ok(())
    }

    async fn delete_received_before(
        &self,
        cutoff: Timestamp,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let mut deleted = 0;
        let released = {
            let mut guard = self.ring.write();
            let ring = &mut *guard;
            let mut released = Vec::new();
            while deleted < limit {
                let Some(oldest) = ring.segments.front_mut() else {
                    break;
                };
                if oldest.batch.received_at >= cutoff {
                    break;
                }
                let count = oldest.len().min(limit - deleted);
                deleted += count;
                oldest.first += count;
                ring.len -= count;
                if oldest.len() == 0
                    && let Some(segment) = ring.segments.pop_front()
                {
                    released.push(segment.batch);
                }
            }
            released
        };
        drop(released);
        Ok(deleted as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Fields, Level, LogEvent, Text};

    fn batch(first_sequence: u64, levels: &[Level], received_micros: i64) -> Arc<Batch> {
        let received_at = Timestamp::from_unix_micros(received_micros).expect("in range");
        Arc::new(Batch {
            origin: uuid::Uuid::nil(),
            received_at,
            first_sequence,
            events: levels
                .iter()
                .map(|&level| LogEvent {
                    source: Text::from(if level == Level::Error { "db" } else { "api" }),
                    level,
                    message: Text::from("m"),
                    fields: Fields::default(),
                    timestamp: received_at,
                })
                .collect(),
        })
    }

    fn query(limit: usize) -> RecentQuery {
        RecentQuery {
            source: None,
            min_level: None,
            limit,
        }
    }

    async fn sequences(store: &MemoryStore, query: &RecentQuery) -> Vec<u64> {
        let mut sequences = Vec::new();
        store
            .recent(query, &mut |record| sequences.push(record.sequence))
            .await
            .expect("read");
        sequences
    }

    #[tokio::test]
    async fn ring_drops_oldest() {
        let store = MemoryStore::new(3);
        store
            .write(&[batch(1, &[Level::Info; 2], 1)])
            .await
            .expect("written");
        store
            .write(&[
                batch(3, &[Level::Info; 2], 2),
                batch(5, &[Level::Info; 4], 3),
            ])
            .await
            .expect("written");
        assert_eq!(sequences(&store, &query(10)).await, vec![6, 7, 8]);
        assert_eq!(sequences(&store, &query(2)).await, vec![7, 8]);
        assert_eq!(
            store.ring.read().segments.len(),
            1,
            "older batches are released"
        );
    }

    #[tokio::test]
    async fn ring_shares_the_delivered_batches() {
        let store = MemoryStore::new(3);
        let delivered = batch(1, &[Level::Info; 5], 1);
        store
            .write(std::slice::from_ref(&delivered))
            .await
            .expect("written");
        assert_eq!(Arc::strong_count(&delivered), 2);
        assert_eq!(sequences(&store, &query(10)).await, vec![3, 4, 5]);
        store
            .write(&[batch(6, &[Level::Info; 3], 2)])
            .await
            .expect("written");
        assert_eq!(
            Arc::strong_count(&delivered),
            1,
            "a batch no longer kept is let go"
        );
    }

    #[tokio::test]
    async fn recent_filters_then_takes_newest() {
        use Level::*;
        let store = MemoryStore::new(10);
        store
            .write(&[batch(1, &[Debug, Error, Info, Warn, Error, Info], 1)])
            .await
            .expect("written");

        let warn_or_above = RecentQuery {
            min_level: Some(Warn),
            ..query(2)
        };
        assert_eq!(sequences(&store, &warn_or_above).await, vec![4, 5]);

        let db_only = RecentQuery {
            source: Some("db".into()),
            ..query(10)
        };
        assert_eq!(sequences(&store, &db_only).await, vec![2, 5]);
    }

    #[tokio::test]
    async fn delete_stops_at_cutoff_and_limit() {
        let store = MemoryStore::new(10);
        store
            .write(&[
                batch(1, &[Level::Info; 3], 100),
                batch(4, &[Level::Info; 2], 200),
            ])
            .await
            .expect("written");
        let cutoff = Timestamp::from_unix_micros(200).expect("in range");
        assert_eq!(
            store.delete_received_before(cutoff, 2).await.expect("ok"),
            2
        );
        assert_eq!(
            store.delete_received_before(cutoff, 2).await.expect("ok"),
            1
        );
        assert_eq!(
            store.delete_received_before(cutoff, 2).await.expect("ok"),
            0
        );
        assert_eq!(sequences(&store, &query(10)).await, vec![4, 5]);
    }
}
