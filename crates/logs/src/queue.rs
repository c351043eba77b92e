//! The bounded event queue between ingestion and the sinks.
//!
//! Batches sit in one deque, which each sink's worker reads through its own cursor. A
//! batch leaves the deque once every sink has taken delivery of it. The capacity counts
//! events still owed to at least one sink, so a slow or failing sink fills the queue
//! and ingestion returns 503 instead of buffering without bound.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use platform::Timestamp;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::model::{Batch, LogEvent};

/// A batch that does not fit into the queue whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueFull {
    /// Maximum events in the queue.
    pub capacity: usize,
    /// Events waiting when the batch arrived.
    pub queued: usize,
    /// Events in the rejected batch; `None` when it was rejected unread because the
    /// queue had no room at all.
    pub batch: Option<usize>,
}

/// The queue shared by the ingest path and the sink workers.
#[derive(Debug)]
pub struct Queue {
    capacity: usize,
    origin: Uuid,
    state: Mutex<State>,
    /// One per consumer: fires when a batch is pushed.
    work_ready: Vec<Notify>,
    /// Fires whenever a consumer takes delivery of batches.
    progress: Notify,
}

#[derive(Debug)]
struct State {
    batches: VecDeque<Arc<Batch>>,
    /// Position of `batches[0]` in the sequence of all batches ever pushed.
    first_position: u64,
    /// Events in `batches`.
    queued_events: usize,
    /// Per consumer: position of the next batch it has not taken delivery of.
    cursors: Vec<u64>,
    next_sequence: u64,
    last_received_at: Timestamp,
}

impl State {
    fn end_position(&self) -> u64 {
        self.first_position + self.batches.len() as u64
    }

    fn index_of(&self, position: u64) -> usize {
        (position - self.first_position) as usize
    }
}

impl Queue {
    /// Creates an empty queue of `capacity` events read by `consumers` sinks; `origin`
    /// names this pipeline instance in every batch.
    pub fn new(capacity: usize, consumers: usize, origin: Uuid) -> Self {
        Queue {
            capacity,
            origin,
            state: Mutex::new(State {
                batches: VecDeque::new(),
                first_position: 0,
                queued_events: 0,
                cursors: vec![0; consumers],
                next_sequence: 1,
                last_received_at: Timestamp::EPOCH,
            }),
            work_ready: (0..consumers).map(|_| Notify::new()).collect(),
            progress: Notify::new(),
        }
    }

    /// Enqueues the events as one batch if all of them fit, assigning sequence numbers
    /// and `received_at` under the lock so that both increase in queue order.
    pub fn push(&self, events: Vec<LogEvent>, receipt: Timestamp) -> Result<(), QueueFull> {
        let count = events.len();
        {
            let mut state = self.state.lock();
            if state.queued_events + count > self.capacity {
                return Err(QueueFull {
                    capacity: self.capacity,
                    queued: state.queued_events,
                    batch: Some(count),
                });
            }
            // A clock that steps back must not reorder received_at against sequences.
            let received_at = receipt.max(state.last_received_at);
            let batch = Batch {
                origin: self.origin,
                received_at,
                first_sequence: state.next_sequence,
                events,
            };
            state.last_received_at = received_at;
            state.next_sequence += count as u64;
            state.queued_events += count;
            state.batches.push_back(Arc::new(batch));
        }
        for ready in &self.work_ready {
            ready.notify_one();
        }
        Ok(())
    }

    /// Returns the batches `consumer` has not taken delivery of, oldest first. That is at
    /// least one when any is waiting, then more while the total stays within `max_events`.
    pub fn peek(&self, consumer: usize, max_events: usize) -> Vec<Arc<Batch>> {
        let state = self.state.lock();
        let start = state.index_of(state.cursors[consumer]);
        let mut taken = Vec::new();
        let mut events = 0;
        for batch in state.batches.range(start..) {
            if !taken.is_empty() && events + batch.len() > max_events {
                break;
            }
            events += batch.len();
            taken.push(batch.clone());
        }
        taken
    }

    /// Records that `consumer` delivered its next `count` batches, and drops batches
    /// every consumer has delivered.
    pub fn advance(&self, consumer: usize, count: usize) {
        {
            let mut state = self.state.lock();
            let end = state.end_position();
            let cursor = &mut state.cursors[consumer];
            *cursor = (*cursor + count as u64).min(end);

            let oldest_needed = state.cursors.iter().copied().min().unwrap_or(end);
            while state.first_position < oldest_needed {
                let Some(batch) = state.batches.pop_front() else {
                    break;
                };
                state.queued_events -= batch.len();
                state.first_position += 1;
            }
        }
        self.progress.notify_waiters();
    }

    /// Waits until a batch may be waiting for `consumer`.
    pub async fn work_ready(&self, consumer: usize) {
        self.work_ready[consumer].notified().await;
    }

    /// Events waiting for each consumer, in consumer order.
    pub fn undelivered(&self) -> Vec<usize> {
        let state = self.state.lock();
        state
            .cursors
            .iter()
            .map(|&cursor| {
                let start = state.index_of(cursor);
                state.batches.range(start..).map(|batch| batch.len()).sum()
            })
            .collect()
    }

    /// Describes the queue when it has no room for even one more event.
    pub fn full(&self) -> Option<QueueFull> {
        let queued = self.state.lock().queued_events;
        (queued >= self.capacity).then_some(QueueFull {
            capacity: self.capacity,
            queued,
            batch: None,
        })
    }

    /// Events waiting for at least one consumer.
    pub fn queued(&self) -> usize {
        self.state.lock().queued_events
    }

    /// Waits until every consumer has delivered every batch pushed before the call.
    pub async fn delivered(&self) {
        let target = self.state.lock().end_position();
        loop {
            let progress = self.progress.notified();
            let slowest = {
                let state = self.state.lock();
                state.cursors.iter().copied().min().unwrap_or(target)
            };
            if slowest >= target {
                return;
            }
            progress.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Fields, Level, Text};

    fn events(count: usize) -> Vec<LogEvent> {
        (0..count)
            .map(|index| LogEvent {
                source: Text::from("test"),
                level: Level::Info,
                message: Text::from(format!("event {index}")),
                fields: Fields::default(),
                timestamp: Timestamp::EPOCH,
            })
            .collect()
    }

    fn at(micros: i64) -> Timestamp {
        Timestamp::from_unix_micros(micros).expect("in range")
    }

    #[test]
    fn batch_that_does_not_fit_is_rejected_whole() {
        let queue = Queue::new(5, 1, Uuid::nil());
        queue.push(events(3), at(1)).expect("fits");
        let full = queue.push(events(3), at(2)).expect_err("does not fit");
        assert_eq!(
            full,
            QueueFull {
                capacity: 5,
                queued: 3,
                batch: Some(3)
            }
        );
        assert_eq!(queue.full(), None);
        queue.push(events(2), at(3)).expect("fits exactly");
        assert_eq!(queue.queued(), 5);
        assert_eq!(
            queue.full(),
            Some(QueueFull {
                capacity: 5,
                queued: 5,
                batch: None
            })
        );
    }

    #[test]
    fn sequences_and_receipt_increase_in_queue_order() {
        let queue = Queue::new(10, 1, Uuid::nil());
        queue.push(events(2), at(100)).expect("fits");
        queue.push(events(3), at(50)).expect("fits");
        let batches = queue.peek(0, 100);
        assert_eq!(batches[0].first_sequence, 1);
        assert_eq!(batches[1].first_sequence, 3);
        assert_eq!(batches[1].received_at, at(100));
    }

    #[test]
    fn batch_leaves_once_every_consumer_delivered() {
        let queue = Queue::new(10, 2, Uuid::nil());
        queue.push(events(4), at(1)).expect("fits");
        queue.push(events(4), at(2)).expect("fits");

        assert_eq!(queue.peek(0, 100).len(), 2);
        queue.advance(0, 2);
        assert_eq!(queue.queued(), 8, "the second consumer still needs both");
        assert_eq!(queue.undelivered(), vec![0, 8]);

        assert_eq!(queue.peek(1, 4).len(), 1, "max_events caps the delivery");
        queue.advance(1, 1);
        assert_eq!(queue.queued(), 4);
        queue.advance(1, 1);
        assert_eq!(queue.queued(), 0);
        assert!(queue.peek(0, 100).is_empty());
    }

    #[test]
    fn peek_returns_one_batch_larger_than_max_events() {
        let queue = Queue::new(10, 1, Uuid::nil());
        queue.push(events(6), at(1)).expect("fits");
        assert_eq!(queue.peek(0, 2).len(), 1);
    }

    #[tokio::test]
    async fn delivered_waits_for_the_slowest_consumer() {
        let queue = Arc::new(Queue::new(10, 2, Uuid::nil()));
        queue.push(events(1), at(1)).expect("fits");
        queue.advance(0, 1);

        let waiter = tokio::spawn({
            let queue = queue.clone();
            async move { queue.delivered().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        queue.advance(1, 1);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("finishes")
            .expect("no panic");
    }
}
