//! Messaging rules: publishing, leases, acks, dead letters, long polls and retention.

mod pull;
mod settle;
mod topics;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use platform::SharedClock;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::Settings;
use crate::input::{self, CheckedPublish, PublishInput};
use crate::model::{Attributes, Message, Payload, Topic};
use crate::store::{
    DeadLetterPolicy, DedupKey, MessageStore, NewMessage, PublishOutcome, StoreError,
};
use crate::wakeup::Wakeups;

pub use pull::PullRequest;
pub use settle::{AckReport, Lease};

/// Errors of messaging operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input field or parameter is missing or invalid.
    #[error("{message}")]
    Invalid { field: String, message: String },
    /// No message has this id in this topic.
    #[error("{0}")]
    NotFound(String),
    /// The ack id names a delivery that has ended; nothing changed.
    #[error(
        "ack_id does not name the current delivery of message {message_id}: it belongs to an earlier delivery or to none; pull the message again for a current ack_id; nothing changed"
    )]
    StaleAck { message_id: Uuid },
    /// A single publish replayed an idempotency key that a batch used.
    #[error(
        "Idempotency-Key was used for a batch of {count} messages on this topic; replay it on the batch endpoint or use a new key"
    )]
    KeyUsedForBatch { count: usize },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Error {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn message_not_found(topic: &Topic, id: &str) -> Self {
        Error::NotFound(format!("message {id} not found in topic {topic}"))
    }
}

/// Messages stored by a publish, or the ones an earlier publish with the same
/// idempotency key stored.
#[derive(Debug)]
pub struct Published {
    pub messages: Vec<Arc<Message>>,
    /// True when nothing new was stored because the key was seen within its window.
    pub replayed: bool,
}

/// The last name seen in a batch, shared with the next message that repeats it, as most
/// messages of a batch repeat their tenant and project.
#[derive(Default)]
struct Repeats {
    last: Option<Arc<str>>,
}

impl Repeats {
    fn share(&mut self, name: String) -> Arc<str> {
        if let Some(last) = &self.last
            && **last == *name
        {
            return last.clone();
        }
        let shared: Arc<str> = Arc::from(name);
        self.last = Some(shared.clone());
        shared
    }
}

/// Counts of what one retention sweep removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub messages: u64,
    pub idempotency_keys: u64,
}

/// The messaging service: every queue rule lives here, over any store.
pub struct Messaging {
    store: Arc<dyn MessageStore>,
    clock: SharedClock,
    settings: Settings,
    wakeups: Arc<Wakeups>,
    shutdown: CancellationToken,
}

impl Messaging {
    /// Creates the service. `shutdown` ends long polls early.
    pub fn new(
        store: Arc<dyn MessageStore>,
        clock: SharedClock,
        settings: Settings,
        wakeups: Arc<Wakeups>,
        shutdown: CancellationToken,
    ) -> Self {
        Messaging {
            store,
            clock,
            settings,
            wakeups,
            shutdown,
        }
    }

    /// Returns the store, for the background relay of announcements.
    pub fn store(&self) -> Arc<dyn MessageStore> {
        self.store.clone()
    }

    /// Returns the long-poll waiters of this process.
    pub fn wakeups(&self) -> Arc<Wakeups> {
        self.wakeups.clone()
    }

    /// Publishes one message. With an idempotency key seen on this topic within the
    /// dedup window, stores nothing and returns the original message.
    pub async fn publish(
        &self,
        topic: &str,
        input: PublishInput,
        idempotency_key: Option<&str>,
    ) -> Result<Published, Error> {
        let topic = input::parse_topic(topic)?;
        let key = input::idempotency_key(idempotency_key)?;
        let checked = input::check_publish(input, None, self.settings.max_payload)?;

        let published = self.store_messages(&topic, vec![checked], key).await?;
        if published.replayed && published.messages.len() != 1 {
            return Err(Error::KeyUsedForBatch {
                count: published.messages.len(),
            });
        }
        Ok(published)
    }

    /// Publishes 1 to 1000 messages, all or none; an error names the item
    /// (`messages[3].priority`).
    pub async fn publish_batch(
        &self,
        topic: &str,
        inputs: Vec<PublishInput>,
        idempotency_key: Option<&str>,
    ) -> Result<Published, Error> {
        let topic = input::parse_topic(topic)?;
        let key = input::idempotency_key(idempotency_key)?;
        input::check_batch_len("messages", inputs.len())?;
        let checked = inputs
            .into_iter()
            .enumerate()
            .map(|(index, input)| {
                input::check_publish(input, Some(index), self.settings.max_payload)
            })
            .collect::<Result<Vec<_>, _>>()?;

        self.store_messages(&topic, checked, key).await
    }

    async fn store_messages(
        &self,
        topic: &Topic,
        checked: Vec<CheckedPublish>,
        key: Option<String>,
    ) -> Result<Published, Error> {
        let now = self.clock.now();
        let shared_topic = topic.shared();
        let mut tenants = Repeats::default();
        let mut projects = Repeats::default();
        let mut last_attributes: Option<(BTreeMap<String, String>, Attributes)> = None;
        let new_messages: Vec<NewMessage> = checked
            .into_iter()
            .map(|checked| {
                let attributes = match &last_attributes {
                    Some((map, encoded)) if *map == checked.attributes => encoded.clone(),
                    _ => {
                        let encoded = Attributes::from_map(&checked.attributes);
                        last_attributes = Some((checked.attributes, encoded.clone()));
                        encoded
                    }
                };
                NewMessage {
                    visible_at: now.saturating_add(checked.delay),
                    message: Arc::new(Message {
                        message_id: platform::ids::new_id(),
                        tenant_id: tenants.share(checked.tenant_id),
                        project_id: projects.share(checked.project_id),
                        topic: shared_topic.clone(),
                        key: checked.key.into(),
                        priority: checked.priority,
                        published_at: now,
                        attributes,
                        payload: Payload::from_valid_text(checked.payload_text),
                    }),
                }
            })
            .collect();
        let dedup = key.map(|key| DedupKey {
            key,
            now,
            expires_at: now.saturating_add(self.settings.dedup_window),
        });

        match self
            .store
            .publish(topic, &new_messages, dedup.as_ref())
            .await?
        {
            PublishOutcome::Stored => {
                if new_messages.iter().any(|new| new.visible_at <= now) {
                    self.signal(topic);
                }
                tracing::debug!(%topic, count = new_messages.len(), "messages published");
                Ok(Published {
                    messages: new_messages.into_iter().map(|new| new.message).collect(),
                    replayed: false,
                })
            }
            PublishOutcome::Duplicate(messages) => {
                tracing::debug!(%topic, count = messages.len(), "idempotent publish replayed");
                Ok(Published {
                    messages,
                    replayed: true,
                })
            }
        }
    }

    /// Removes messages past the retention, acknowledged or not, and idempotency keys
    /// past their window, in batches of `sweep_batch` rows.
    pub async fn sweep(&self) -> Result<SweepReport, Error> {
        let now = self.clock.now();
        let batch = self.settings.sweep_batch;
        let cutoff = now.saturating_sub(self.settings.retention);
        let mut report = SweepReport::default();

        loop {
            let removed = self.store.remove_old_messages(cutoff, batch).await?;
            report.messages += removed;
            if removed < batch as u64 {
                break;
            }
            tokio::task::yield_now().await;
        }
        loop {
            let removed = self.store.remove_expired_keys(now, batch).await?;
            report.idempotency_keys += removed;
            if removed < batch as u64 {
                break;
            }
            tokio::task::yield_now().await;
        }

        if report != SweepReport::default() {
            tracing::info!(
                messages = report.messages,
                idempotency_keys = report.idempotency_keys,
                published_before = %cutoff,
                "retention sweep removed expired data"
            );
        }
        Ok(report)
    }

    /// Sweeps every `sweep_interval` until `stop` fires.
    pub async fn run_sweeps(self: Arc<Self>, stop: CancellationToken) {
        let interval = self.settings.sweep_interval;
        tracing::info!(
            interval_ms = interval.as_millis() as u64,
            retention_s = self.settings.retention.as_secs(),
            "retention sweeps started"
        );
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(interval) => {}
            }
            if let Err(error) = self.sweep().await {
                tracing::warn!(error = %platform::error::ErrorChain(&error), "retention sweep failed; retrying at the next interval");
            }
        }
        tracing::info!("retention sweeps stopped");
    }

    fn dead_letter_policy(&self, topic: &Topic) -> Option<DeadLetterPolicy> {
        topic.dead_letter().map(|dead_letter| DeadLetterPolicy {
            topic: dead_letter,
            max_deliveries: self.settings.max_deliveries,
        })
    }

    /// Wakes long polls on `topic`, here and in other processes sharing the store.
    fn signal(&self, topic: &Topic) {
        self.wakeups.wake(topic.as_str());
        self.store.announce(topic);
    }

    fn default_lease(&self) -> Duration {
        self.settings.visibility_timeout
    }
}
