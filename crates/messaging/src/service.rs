//! Messaging rules: publishing, leases, acks, dead letters, long polls and retention.

mod pull;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use platform::{SharedClock, Timestamp};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::Settings;
use crate::input::{self, CheckedPublish, PublishInput};
use crate::model::{
    MAX_DELAY_S, MAX_LEASE_S, Message, Topic, TopicCounts, TopicStats, TopicSummary,
};
use crate::store::{
    DeadLetterPolicy, DedupKey, MessageStore, NewMessage, PublishOutcome, Release, Settled,
    StoreError,
};
use crate::wakeup::Wakeups;

pub use pull::PullRequest;

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
        "ack_id does not name the current delivery of message {message_id}: its lease ended and it was delivered again or released; nothing changed"
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
    pub messages: Vec<Message>,
    /// True when nothing new was stored because the key was seen within its window.
    pub replayed: bool,
}

/// The new end of a delivery's lease.
#[derive(Clone, Debug, Serialize)]
pub struct Lease {
    pub message_id: Uuid,
    pub ack_id: Uuid,
    pub lease_expires_at: Timestamp,
}

/// Outcome of a batch ack, in request order.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AckReport {
    pub acked: Vec<String>,
    pub not_found: Vec<String>,
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
        let checked = input::check_publish(input, "", self.settings.max_payload)?;

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
                input::check_publish(
                    input,
                    &format!("messages[{index}]."),
                    self.settings.max_payload,
                )
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
        let new_messages: Vec<NewMessage> = checked
            .into_iter()
            .map(|checked| NewMessage {
                visible_at: now.saturating_add(checked.delay),
                message: Message {
                    message_id: platform::ids::new_id(),
                    tenant_id: checked.tenant_id,
                    project_id: checked.project_id,
                    topic: topic.to_string(),
                    key: checked.key,
                    priority: checked.priority,
                    published_at: now,
                    attributes: checked.attributes,
                    payload: checked.payload,
                },
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

    /// Acknowledges one message: it is deleted. With an ack id, only while that id names
    /// the current delivery; without one, whatever its lease.
    pub async fn ack(&self, topic: &str, id: &str, ack_id: Option<&str>) -> Result<(), Error> {
        let topic = input::parse_topic(topic)?;
        let ack_id = input::optional_ack_id(ack_id)?;
        let message_id = input::parse_message_id(&topic, id)?;

        let settled = self.store.ack(&topic, message_id, ack_id).await?;
        self.settled(&topic, id, message_id, settled)?;
        tracing::debug!(%topic, %message_id, "message acknowledged");
        Ok(())
    }

    /// Ends a delivery without acknowledging it: the message becomes visible again after
    /// `delay_s`, or moves to the dead-letter topic once it has failed
    /// `max_deliveries` deliveries.
    pub async fn nack(
        &self,
        topic: &str,
        id: &str,
        ack_id: Option<&str>,
        delay_s: Option<u64>,
    ) -> Result<(), Error> {
        let topic = input::parse_topic(topic)?;
        let ack_id = input::required_ack_id(ack_id)?;
        let delay = input::seconds("delay_s", delay_s, MAX_DELAY_S)?.unwrap_or_default();
        let message_id = input::parse_message_id(&topic, id)?;

        let now = self.clock.now();
        let release = Release {
            ack_id,
            now,
            visible_at: now.saturating_add(delay),
            dead_letter: self.dead_letter_policy(&topic),
        };
        let settled = self.store.nack(&topic, message_id, &release).await?;
        self.settled(&topic, id, message_id, settled)?;
        if settled == Settled::Done && delay.is_zero() {
            self.signal(&topic);
        }
        tracing::debug!(%topic, %message_id, delay_s = delay.as_secs(), "message released");
        Ok(())
    }

    /// Moves the end of a delivery's lease to `visibility_timeout_s` from now; 0 makes
    /// the message visible at once.
    pub async fn lease(
        &self,
        topic: &str,
        id: &str,
        ack_id: Option<&str>,
        visibility_timeout_s: Option<u64>,
    ) -> Result<Lease, Error> {
        let topic = input::parse_topic(topic)?;
        let ack_id = input::required_ack_id(ack_id)?;
        let Some(timeout) =
            input::seconds("visibility_timeout_s", visibility_timeout_s, MAX_LEASE_S)?
        else {
            return Err(Error::invalid(
                "visibility_timeout_s",
                format!("visibility_timeout_s is required; send 0 to {MAX_LEASE_S} seconds"),
            ));
        };
        let message_id = input::parse_message_id(&topic, id)?;

        let lease_expires_at = self.clock.now().saturating_add(timeout);
        let settled = self
            .store
            .extend(&topic, message_id, ack_id, lease_expires_at)
            .await?;
        self.settled(&topic, id, message_id, settled)?;
        if timeout.is_zero() {
            self.signal(&topic);
        }
        Ok(Lease {
            message_id,
            ack_id,
            lease_expires_at,
        })
    }

    /// Acknowledges many messages by id, whatever their leases.
    pub async fn ack_many(&self, topic: &str, ids: Vec<String>) -> Result<AckReport, Error> {
        let topic = input::parse_topic(topic)?;
        input::check_batch_len("message_ids", ids.len())?;

        let mut seen = HashSet::new();
        let requested: Vec<(String, Option<Uuid>)> = ids
            .into_iter()
            .map(|text| match platform::ids::parse_id(&text) {
                Some(id) => (id.to_string(), Some(id)),
                None => (text, None),
            })
            .filter(|(text, _)| seen.insert(text.clone()))
            .collect();
        let valid: Vec<Uuid> = requested.iter().filter_map(|(_, id)| *id).collect();
        let acked: HashSet<Uuid> = self
            .store
            .ack_many(&topic, &valid)
            .await?
            .into_iter()
            .collect();

        let mut report = AckReport::default();
        for (text, id) in requested {
            if id.is_some_and(|id| acked.contains(&id)) {
                report.acked.push(text);
            } else {
                report.not_found.push(text);
            }
        }
        tracing::debug!(%topic, acked = report.acked.len(), not_found = report.not_found.len(), "batch acknowledged");
        Ok(report)
    }

    /// Counts a topic's messages, and those waiting in its dead-letter topic.
    pub async fn stats(&self, topic: &str) -> Result<TopicStats, Error> {
        let topic = input::parse_topic(topic)?;
        let now = self.clock.now();
        let counts = self.store.counts(&topic, now).await?;
        let dead_lettered = match topic.dead_letter() {
            Some(dead_letter) => self.store.counts(&dead_letter, now).await?.total(),
            None => 0,
        };
        Ok(to_stats(&counts, dead_lettered, now))
    }

    /// Lists every topic that contains messages, by name, with its counts.
    pub async fn topics(&self) -> Result<Vec<TopicSummary>, Error> {
        let now = self.clock.now();
        let mut listed = self.store.all_counts(now).await?;
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        let totals: HashMap<&str, u64> = listed
            .iter()
            .map(|(name, counts)| (name.as_str(), counts.total()))
            .collect();

        let summaries = listed
            .iter()
            .map(|(name, counts)| {
                let dead_lettered = Topic::parse(name)
                    .ok()
                    .and_then(|topic| topic.dead_letter())
                    .and_then(|dead_letter| totals.get(dead_letter.as_str()).copied())
                    .unwrap_or(0);
                TopicSummary {
                    topic: name.clone(),
                    stats: to_stats(counts, dead_lettered, now),
                }
            })
            .collect();
        Ok(summaries)
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

    /// Maps a store outcome for one message to the client's result.
    fn settled(
        &self,
        topic: &Topic,
        id: &str,
        message_id: Uuid,
        settled: Settled,
    ) -> Result<(), Error> {
        match settled {
            Settled::Done => Ok(()),
            Settled::DeadLettered => {
                if let Some(dead_letter) = topic.dead_letter() {
                    tracing::info!(%topic, %message_id, %dead_letter, "message dead-lettered after its last failed delivery");
                    self.signal(&dead_letter);
                }
                Ok(())
            }
            Settled::Stale => Err(Error::StaleAck { message_id }),
            Settled::Missing => Err(Error::message_not_found(topic, id)),
        }
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

fn to_stats(counts: &TopicCounts, dead_lettered: u64, now: Timestamp) -> TopicStats {
    let oldest_ready_age_ms = counts
        .oldest_ready
        .map(|oldest| now.duration_since(oldest).as_millis() as u64)
        .unwrap_or(0);
    TopicStats {
        ready: counts.ready,
        leased: counts.leased,
        delayed: counts.delayed,
        dead_lettered,
        oldest_ready_age_ms,
    }
}
