//! The recent-events ring of memory mode: a fixed number of events, oldest dropped first.

use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use platform::Timestamp;

use super::{LogStore, StoreError};
use crate::model::{Batch, LogRecord, RecentQuery};
use crate::sink::{Sink, SinkError};

/// The newest `capacity` delivered events, in delivery order (which is sequence order).
#[derive(Debug)]
pub struct MemoryStore {
    capacity: usize,
    ring: Mutex<VecDeque<LogRecord>>,
}

impl MemoryStore {
    /// Creates an empty ring of `capacity` events.
    pub fn new(capacity: usize) -> Self {
        MemoryStore {
            capacity,
            ring: Mutex::new(VecDeque::with_capacity(capacity)),
        }
    }
}

#[async_trait]
impl Sink for MemoryStore {
    fn name(&self) -> &'static str {
        "ring"
    }

    async fn write(&self, batches: &[Arc<Batch>]) -> Result<(), SinkError> {
        // Only the last `capacity` events of a delivery can survive it, so only they are
        // copied, outside the lock and detached from the request bodies.
        let total: usize = batches.iter().map(|batch| batch.len()).sum();
        let skip = total.saturating_sub(self.capacity);
        let records: Vec<LogRecord> = batches
            .iter()
            .flat_map(|batch| batch.records())
            .skip(skip)
            .map(|record| record.detached())
            .collect();

        let mut ring = self.ring.lock();
        let overflow = (ring.len() + records.len()).saturating_sub(self.capacity);
        ring.drain(..overflow);
        ring.extend(records);
        Ok(())
    }
}

#[async_trait]
impl LogStore for MemoryStore {
    async fn recent(&self, query: &RecentQuery) -> Result<Vec<LogRecord>, StoreError> {
        let ring = self.ring.lock();
        let mut newest: Vec<LogRecord> = ring
            .iter()
            .rev()
            .filter(|record| query.matches(&record.event))
            .take(query.limit)
            .cloned()
            .collect();
        drop(ring);
        newest.reverse();
        Ok(newest)
    }

    async fn delete_received_before(
        &self,
        cutoff: Timestamp,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let mut ring = self.ring.lock();
        let expired = ring
            .iter()
            .take(limit)
            .take_while(|record| record.received_at < cutoff)
            .count();
        ring.drain(..expired);
        Ok(expired as u64)
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

    fn sequences(records: &[LogRecord]) -> Vec<u64> {
        records.iter().map(|record| record.sequence).collect()
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
        let all = store.recent(&query(10)).await.expect("read");
        assert_eq!(sequences(&all), vec![6, 7, 8]);
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
        let records = store.recent(&warn_or_above).await.expect("read");
        assert_eq!(sequences(&records), vec![4, 5]);

        let db_only = RecentQuery {
            source: Some("db".into()),
            ..query(10)
        };
        let records = store.recent(&db_only).await.expect("read");
        assert_eq!(sequences(&records), vec![2, 5]);
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
        assert_eq!(
            sequences(&store.recent(&query(10)).await.expect("read")),
            vec![4, 5]
        );
    }
}
