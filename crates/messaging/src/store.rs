//! The persistence contract for messages, with a memory and a Postgres implementation.

mod memory;
mod postgres;

use std::sync::Arc;

use async_trait::async_trait;
use platform::{Backend, Timestamp};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::Settings;
use crate::model::{Delivery, Message, Topic, TopicCounts};
use crate::wakeup::Wakeups;

pub use memory::MemoryStore;
pub use postgres::PostgresStore;

/// Errors of store operations.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The memory store contains its configured maximum of messages.
    #[error("the store holds its maximum of {capacity} messages")]
    Full { capacity: usize },
    /// The memory store remembers its configured maximum of idempotency keys.
    #[error("the store remembers its maximum of {capacity} idempotency keys")]
    KeysFull { capacity: usize },
    /// Postgres failed or is out of reach.
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

/// A message to store, with the time it first becomes visible.
#[derive(Clone, Debug)]
pub struct NewMessage {
    pub message: Arc<Message>,
    pub visible_at: Timestamp,
}

/// An idempotency key and the window it is remembered for.
#[derive(Clone, Debug)]
pub struct DedupKey {
    pub key: String,
    /// The publish time; a record that expired by then is replaced.
    pub now: Timestamp,
    pub expires_at: Timestamp,
}

/// Result of a publish.
#[derive(Debug)]
pub enum PublishOutcome {
    /// The messages were stored.
    Stored,
    /// The idempotency key was used within its window; these are the messages that
    /// publish stored, and nothing new was stored.
    Duplicate(Vec<Arc<Message>>),
}

/// Dead-letter policy: the destination of messages that failed too many deliveries.
#[derive(Clone, Debug)]
pub struct DeadLetterPolicy {
    /// `{topic}.dead-letter`.
    pub topic: Topic,
    /// Deliveries after which a message that comes back is dead-lettered.
    pub max_deliveries: u32,
}

/// A request to lease ready messages.
#[derive(Clone, Debug)]
pub struct Claim {
    pub topic: Topic,
    pub tenant_id: Option<String>,
    pub project_id: Option<String>,
    pub limit: usize,
    pub now: Timestamp,
    pub lease_until: Timestamp,
    /// One fresh ack id per message that may be delivered, at least `limit` of them.
    pub ack_ids: Vec<Uuid>,
    /// `None` in a dead-letter topic, whose messages are never dead-lettered again.
    pub dead_letter: Option<DeadLetterPolicy>,
}

/// Result of a claim.
#[derive(Debug, Default)]
pub struct Claimed {
    /// Leased messages, in delivery order.
    pub deliveries: Vec<Delivery>,
    /// Messages found exhausted and moved to the dead-letter topic instead.
    pub dead_lettered: usize,
}

/// Result of ack, nack or a lease change on one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// The change applied.
    Done,
    /// The change applied and the message moved to the dead-letter topic.
    DeadLettered,
    /// The ack id does not name the current delivery: the message was delivered again
    /// or released. Nothing changed.
    Stale,
    /// No such message in this topic.
    Missing,
}

/// Parameters of a nack.
#[derive(Clone, Debug)]
pub struct Release {
    pub ack_id: Uuid,
    pub now: Timestamp,
    pub visible_at: Timestamp,
    pub dead_letter: Option<DeadLetterPolicy>,
}

/// Persistence of messages. Implementations keep no domain rules: the service decides
/// ids, times, leases and dead-letter policy, and the store applies each change
/// atomically, so replicas sharing a database never lease one message twice.
#[async_trait]
pub trait MessageStore: Send + Sync + 'static {
    /// Stores messages of one topic, all or none. With a key, stores them only if the
    /// key is not remembered for this topic, and remembers it with the messages.
    async fn publish(
        &self,
        topic: &Topic,
        messages: &[NewMessage],
        dedup: Option<&DedupKey>,
    ) -> Result<PublishOutcome, StoreError>;

    /// Leases up to `limit` visible messages, highest priority first, then oldest by
    /// publish time. Exhausted messages met on the way move to the dead-letter topic.
    async fn claim(&self, claim: &Claim) -> Result<Claimed, StoreError>;

    /// Deletes a message; with an ack id, only while it names the current delivery.
    async fn ack(
        &self,
        topic: &Topic,
        message_id: Uuid,
        ack_id: Option<Uuid>,
    ) -> Result<Settled, StoreError>;

    /// Deletes the given messages regardless of leases; returns the ids deleted.
    async fn ack_many(&self, topic: &Topic, message_ids: &[Uuid]) -> Result<Vec<Uuid>, StoreError>;

    /// Ends the current delivery: the message becomes visible at `visible_at`, or moves
    /// to the dead-letter topic if it has failed as many deliveries as the policy allows.
    async fn nack(
        &self,
        topic: &Topic,
        message_id: Uuid,
        release: &Release,
    ) -> Result<Settled, StoreError>;

    /// Moves the end of the current delivery's lease to `lease_until`.
    async fn extend(
        &self,
        topic: &Topic,
        message_id: Uuid,
        ack_id: Uuid,
        lease_until: Timestamp,
    ) -> Result<Settled, StoreError>;

    /// Counts the messages of one topic at `now`.
    async fn counts(&self, topic: &Topic, now: Timestamp) -> Result<TopicCounts, StoreError>;

    /// Counts every topic that contains messages, sorted by name.
    async fn all_counts(&self, now: Timestamp) -> Result<Vec<(String, TopicCounts)>, StoreError>;

    /// Removes at most `batch` messages published before `published_before`; returns
    /// how many it removed.
    async fn remove_old_messages(
        &self,
        published_before: Timestamp,
        batch: usize,
    ) -> Result<u64, StoreError>;

    /// Forgets at most `batch` idempotency keys that expired by `now`.
    async fn remove_expired_keys(&self, now: Timestamp, batch: usize) -> Result<u64, StoreError>;

    /// Tells other processes sharing the store that `topic` may have visible messages.
    fn announce(&self, _topic: &Topic) {}

    /// Wakes local long polls when another process announces a topic, until `stop`
    /// fires. Stores without other processes return at once.
    async fn relay(&self, _wakeups: Arc<Wakeups>, _stop: CancellationToken) {}

    /// Counts of held work for the shutdown log.
    fn backlog(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

/// Opens the store the backend calls for; memory capacities come from `settings`.
pub fn open(backend: &Backend, settings: &Settings) -> Arc<dyn MessageStore> {
    match backend {
        Backend::Memory => Arc::new(MemoryStore::new(
            settings.max_messages,
            settings.max_idempotency_keys,
        )),
        Backend::Postgres(pool) => Arc::new(PostgresStore::new(pool.clone())),
    }
}
