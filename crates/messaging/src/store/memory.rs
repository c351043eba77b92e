//! Messages in process memory: each topic behind its own lock, bounded by counts.

mod topic;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use platform::Timestamp;
use uuid::Uuid;

use super::{
    Claim, Claimed, DeadLetterPolicy, DedupKey, MessageStore, NewMessage, PublishOutcome, Release,
    Settled, StoreError,
};
use crate::model::{Delivery, Topic, TopicCounts};
use crate::shards;
use topic::{Entry, KeyRecord, TopicState, into_dead_letter, matches_filter};

type TopicMap = HashMap<String, Arc<Mutex<TopicState>>>;

/// Topics in a map split into shards by name, whose locks are taken only to find or add
/// a topic, so topics in different shards never wait for each other even then. Every
/// message operation locks just its topic.
#[derive(Debug)]
pub struct MemoryStore {
    max_messages: usize,
    max_keys: usize,
    stored: AtomicUsize,
    keys: AtomicUsize,
    shards: Box<[RwLock<TopicMap>]>,
}

impl MemoryStore {
    /// Creates an empty store holding at most `max_messages` messages and remembering at
    /// most `max_keys` idempotency keys.
    pub fn new(max_messages: usize, max_keys: usize) -> Self {
        MemoryStore {
            max_messages,
            max_keys,
            stored: AtomicUsize::new(0),
            keys: AtomicUsize::new(0),
            shards: shards::per_shard(),
        }
    }

    fn shard(&self, name: &str) -> &RwLock<TopicMap> {
        &self.shards[shards::shard_of(name)]
    }

    /// Runs `apply` on a topic's state, creating the topic if needed.
    fn with_topic<R>(&self, name: &str, apply: impl FnOnce(&mut TopicState) -> R) -> R {
        loop {
            let state = self.topic_state(name);
            let mut guard = state.lock();
            if guard.removed {
                continue;
            }
            return apply(&mut guard);
        }
    }

    /// Runs `apply` on a topic's state if the topic exists.
    fn with_existing<R>(&self, name: &str, apply: impl FnOnce(&mut TopicState) -> R) -> Option<R> {
        loop {
            let state = self.shard(name).read().get(name).cloned()?;
            let mut guard = state.lock();
            if guard.removed {
                continue;
            }
            return Some(apply(&mut guard));
        }
    }

    fn topic_state(&self, name: &str) -> Arc<Mutex<TopicState>> {
        let shard = self.shard(name);
        if let Some(state) = shard.read().get(name) {
            return state.clone();
        }
        let mut topics = shard.write();
        // Empty topics stay in the map until a sweep. Dropping them here too bounds each
        // shard by the messages and keys it contains plus this limit.
        if topics.len() >= self.max_messages {
            drop_empty_topics(&mut topics);
        }
        topics.entry(name.to_string()).or_default().clone()
    }

    fn topic_handles(&self) -> Vec<(String, Arc<Mutex<TopicState>>)> {
        self.shards
            .iter()
            .flat_map(|shard| {
                shard
                    .read()
                    .iter()
                    .map(|(name, state)| (name.clone(), state.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn drop_all_empty_topics(&self) {
        for shard in &self.shards {
            drop_empty_topics(&mut shard.write());
        }
    }

    fn reserve(counter: &AtomicUsize, count: usize, capacity: usize) -> bool {
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(count).filter(|total| *total <= capacity)
            })
            .is_ok()
    }

    fn store_dead_letters(&self, policy: &DeadLetterPolicy, entries: Vec<Entry>, now: Timestamp) {
        if entries.is_empty() {
            return;
        }
        let dead: Vec<Entry> = entries
            .into_iter()
            .map(|entry| {
                tracing::info!(message_id = %entry.message.message_id, topic = %entry.message.topic, dead_letter_topic = %policy.topic, attempts = entry.attempts, "message dead-lettered");
                into_dead_letter(entry, policy, now)
            })
            .collect();
        self.with_topic(policy.topic.as_str(), |state| {
            for entry in dead {
                state.insert_entry(entry, now);
            }
        });
    }
}

fn drop_empty_topics(topics: &mut TopicMap) {
    topics.retain(|_, state| {
        // A topic locked by someone is in use; it is looked at again next time.
        let Some(mut guard) = state.try_lock() else {
            return true;
        };
        if guard.is_empty() {
            guard.removed = true;
            return false;
        }
        true
    });
}

#[async_trait]
impl MessageStore for MemoryStore {
    async fn publish(
        &self,
        topic: &Topic,
        messages: &[NewMessage],
        dedup: Option<&DedupKey>,
    ) -> Result<PublishOutcome, StoreError> {
        if !Self::reserve(&self.stored, messages.len(), self.max_messages) {
            return Err(StoreError::Full {
                capacity: self.max_messages,
            });
        }
        // Everything but the index updates happened before: the messages are built and
        // shared, so the topic is locked only to file them.
        let outcome = self.with_topic(topic.as_str(), |state| {
            if let Some(dedup) = dedup {
                match state.keys.get(&dedup.key) {
                    Some(record) if record.expires_at > dedup.now => {
                        return Ok(PublishOutcome::Duplicate(record.messages.clone()));
                    }
                    Some(_) => {}
                    None if !Self::reserve(&self.keys, 1, self.max_keys) => {
                        return Err(StoreError::KeysFull {
                            capacity: self.max_keys,
                        });
                    }
                    None => {}
                }
                let record = KeyRecord {
                    messages: messages.iter().map(|new| new.message.clone()).collect(),
                    expires_at: dedup.expires_at,
                };
                state.keys.insert(dedup.key.clone(), record);
            }
            state.entries.reserve(messages.len());
            for new in messages {
                state.insert(
                    new.message.clone(),
                    new.visible_at,
                    new.message.published_at,
                );
            }
            Ok(PublishOutcome::Stored)
        });
        if !matches!(outcome, Ok(PublishOutcome::Stored)) {
            self.stored.fetch_sub(messages.len(), Ordering::AcqRel);
        }
        outcome
    }

    async fn claim(&self, claim: &Claim) -> Result<Claimed, StoreError> {
        let now = claim.now;
        let now_micros = now.unix_micros();
        let mut dead = Vec::new();
        let deliveries = self
            .with_existing(claim.topic.as_str(), |state| {
                state.promote(now);
                let candidates: Vec<Uuid> = state
                    .ready
                    .iter()
                    .filter_map(|key| state.entries.get(&key.id()))
                    .filter(|entry| {
                        entry.visible_at <= now_micros && matches_filter(&entry.message, claim)
                    })
                    .take(claim.limit)
                    .map(|entry| entry.message.message_id)
                    .collect();

                let mut deliveries = Vec::with_capacity(candidates.len());
                let mut ack_ids = claim.ack_ids.iter();
                for id in candidates {
                    let exhausted = match (&claim.dead_letter, state.entries.get(&id)) {
                        (Some(policy), Some(entry)) => entry.attempts >= policy.max_deliveries,
                        _ => false,
                    };
                    if exhausted {
                        dead.extend(state.remove(id));
                        continue;
                    }
                    let Some(ack_id) = ack_ids.next().copied() else {
                        break;
                    };
                    state.set_visible_at(id, claim.lease_until, now);
                    if let Some(entry) = state.entries.get_mut(&id) {
                        entry.attempts += 1;
                        entry.ack_id = Some(ack_id);
                        deliveries.push(Delivery {
                            message: entry.message.clone(),
                            ack_id,
                            delivery_attempt: entry.attempts,
                        });
                    }
                }
                deliveries
            })
            .unwrap_or_default();

        let dead_lettered = dead.len();
        if let Some(policy) = &claim.dead_letter {
            self.store_dead_letters(policy, dead, now);
        }
        Ok(Claimed {
            deliveries,
            dead_lettered,
        })
    }

    async fn ack(
        &self,
        topic: &Topic,
        message_id: Uuid,
        ack_id: Option<Uuid>,
    ) -> Result<Settled, StoreError> {
        let settled = self
            .with_existing(topic.as_str(), |state| {
                let Some(entry) = state.entries.get(&message_id) else {
                    return Settled::Missing;
                };
                if ack_id.is_some() && entry.ack_id != ack_id {
                    return Settled::Stale;
                }
                state.remove(message_id);
                Settled::Done
            })
            .unwrap_or(Settled::Missing);
        if settled == Settled::Done {
            self.stored.fetch_sub(1, Ordering::AcqRel);
        }
        Ok(settled)
    }

    async fn ack_many(&self, topic: &Topic, message_ids: &[Uuid]) -> Result<Vec<Uuid>, StoreError> {
        let acked = self
            .with_existing(topic.as_str(), |state| {
                message_ids
                    .iter()
                    .filter(|id| state.remove(**id).is_some())
                    .copied()
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        self.stored.fetch_sub(acked.len(), Ordering::AcqRel);
        Ok(acked)
    }

    async fn nack(
        &self,
        topic: &Topic,
        message_id: Uuid,
        release: &Release,
    ) -> Result<Settled, StoreError> {
        let mut dead = None;
        let settled = self
            .with_existing(topic.as_str(), |state| {
                let Some(entry) = state.entries.get_mut(&message_id) else {
                    return Settled::Missing;
                };
                if entry.ack_id != Some(release.ack_id) {
                    return Settled::Stale;
                }
                let exhausted = release
                    .dead_letter
                    .as_ref()
                    .is_some_and(|policy| entry.attempts >= policy.max_deliveries);
                if exhausted {
                    dead = state.remove(message_id);
                    return Settled::DeadLettered;
                }
                entry.ack_id = None;
                state.set_visible_at(message_id, release.visible_at, release.now);
                Settled::Done
            })
            .unwrap_or(Settled::Missing);
        if let (Some(policy), Some(entry)) = (&release.dead_letter, dead) {
            self.store_dead_letters(policy, vec![entry], release.now);
        }
        Ok(settled)
    }

    async fn extend(
        &self,
        topic: &Topic,
        message_id: Uuid,
        ack_id: Uuid,
        lease_until: Timestamp,
    ) -> Result<Settled, StoreError> {
        Ok(self
            .with_existing(topic.as_str(), |state| {
                let Some(entry) = state.entries.get(&message_id) else {
                    return Settled::Missing;
                };
                if entry.ack_id != Some(ack_id) {
                    return Settled::Stale;
                }
                // Filed as waiting even when the lease ends now: the next claim's
                // `promote` moves it to the ready set.
                state.set_visible_at(message_id, lease_until, Timestamp::EPOCH);
                Settled::Done
            })
            .unwrap_or(Settled::Missing))
    }

    async fn counts(&self, topic: &Topic, now: Timestamp) -> Result<TopicCounts, StoreError> {
        Ok(self
            .with_existing(topic.as_str(), |state| state.counts(now))
            .unwrap_or_default())
    }

    async fn all_counts(&self, now: Timestamp) -> Result<Vec<(String, TopicCounts)>, StoreError> {
        let mut listed: Vec<(String, TopicCounts)> = self
            .topic_handles()
            .into_iter()
            .filter_map(|(name, state)| {
                let counts = state.lock().counts(now);
                (counts.total() > 0).then_some((name, counts))
            })
            .collect();
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(listed)
    }

    async fn remove_old_messages(
        &self,
        published_before: Timestamp,
        batch: usize,
    ) -> Result<u64, StoreError> {
        let mut removed = 0;
        for (_, state) in self.topic_handles() {
            if removed >= batch {
                break;
            }
            let mut state = state.lock();
            while removed < batch {
                let Some(&(published_at, id)) = state.by_age.first() else {
                    break;
                };
                if published_at >= published_before.unix_micros() {
                    break;
                }
                state.remove(Uuid::from_u128(id));
                removed += 1;
            }
        }
        self.stored.fetch_sub(removed, Ordering::AcqRel);
        if removed < batch {
            self.drop_all_empty_topics();
        }
        Ok(removed as u64)
    }

    async fn remove_expired_keys(&self, now: Timestamp, batch: usize) -> Result<u64, StoreError> {
        let mut removed = 0;
        for (_, state) in self.topic_handles() {
            if removed >= batch {
                break;
            }
            let mut state = state.lock();
            let expired: Vec<String> = state
                .keys
                .iter()
                .filter(|(_, record)| record.expires_at <= now)
                .map(|(key, _)| key.clone())
                .take(batch - removed)
                .collect();
            for key in expired {
                state.keys.remove(&key);
                removed += 1;
            }
        }
        self.keys.fetch_sub(removed, Ordering::AcqRel);
        if removed < batch {
            self.drop_all_empty_topics();
        }
        Ok(removed as u64)
    }

    fn backlog(&self) -> Vec<(&'static str, u64)> {
        // Memory-mode messages are lost when the process exits.
        vec![("messages", self.stored.load(Ordering::Acquire) as u64)]
    }
}
