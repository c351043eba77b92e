//! The state of one topic in the memory store: its messages and the indexes that order them.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};

use platform::Timestamp;
use uuid::Uuid;

use crate::model::{
    DELIVERY_ATTEMPTS_ATTRIBUTE, Message, Priority, SOURCE_TOPIC_ATTRIBUTE, TopicCounts,
};
use crate::store::{Claim, DeadLetterPolicy};

/// Delivery order: higher priority first, then older, then the id to break ties.
pub(super) type OrderKey = (Reverse<Priority>, Timestamp, Uuid);

#[derive(Debug)]
pub(super) struct Entry {
    pub(super) message: Message,
    pub(super) visible_at: Timestamp,
    pub(super) attempts: u32,
    pub(super) ack_id: Option<Uuid>,
}

impl Entry {
    pub(super) fn order_key(&self) -> OrderKey {
        (
            Reverse(self.message.priority),
            self.message.published_at,
            self.message.message_id,
        )
    }
}

#[derive(Debug)]
pub(super) struct KeyRecord {
    pub(super) messages: Vec<Message>,
    pub(super) expires_at: Timestamp,
}

#[derive(Debug, Default)]
pub(super) struct TopicState {
    /// Set when the topic was dropped from the map; a holder of a stale handle looks up
    /// the topic again.
    pub(super) removed: bool,
    pub(super) entries: HashMap<Uuid, Entry>,
    /// Messages visible as of the last `promote`, in delivery order.
    pub(super) ready: BTreeSet<OrderKey>,
    /// Leased or delayed messages by the time they become visible.
    pub(super) waiting: BTreeSet<(Timestamp, OrderKey)>,
    /// Every message by publish time, for retention.
    pub(super) by_age: BTreeSet<(Timestamp, Uuid)>,
    pub(super) keys: HashMap<String, KeyRecord>,
}

impl TopicState {
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.keys.is_empty()
    }

    pub(super) fn insert(&mut self, entry: Entry, now: Timestamp) {
        let key = entry.order_key();
        if entry.visible_at <= now {
            self.ready.insert(key);
        } else {
            self.waiting.insert((entry.visible_at, key));
        }
        self.by_age
            .insert((entry.message.published_at, entry.message.message_id));
        self.entries.insert(entry.message.message_id, entry);
    }

    pub(super) fn remove(&mut self, id: Uuid) -> Option<Entry> {
        let entry = self.entries.remove(&id)?;
        let key = entry.order_key();
        if !self.waiting.remove(&(entry.visible_at, key)) {
            self.ready.remove(&key);
        }
        self.by_age.remove(&(entry.message.published_at, id));
        Some(entry)
    }

    /// Changes when a message becomes visible, keeping the indexes in step.
    pub(super) fn set_visible_at(&mut self, id: Uuid, visible_at: Timestamp, now: Timestamp) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        let key = entry.order_key();
        if !self.waiting.remove(&(entry.visible_at, key)) {
            self.ready.remove(&key);
        }
        entry.visible_at = visible_at;
        if visible_at <= now {
            self.ready.insert(key);
        } else {
            self.waiting.insert((visible_at, key));
        }
    }

    /// Moves messages whose lease or delay ended by `now` into the ready set.
    pub(super) fn promote(&mut self, now: Timestamp) {
        while let Some(first) = self.waiting.first() {
            if first.0 > now {
                break;
            }
            if let Some((_, key)) = self.waiting.pop_first() {
                self.ready.insert(key);
            }
        }
    }

    pub(super) fn counts(&self, now: Timestamp) -> TopicCounts {
        let mut counts = TopicCounts::default();
        for entry in self.entries.values() {
            if entry.visible_at <= now {
                counts.ready += 1;
                let published = entry.message.published_at;
                if counts.oldest_ready.is_none_or(|oldest| published < oldest) {
                    counts.oldest_ready = Some(published);
                }
            } else if entry.ack_id.is_some() {
                counts.leased += 1;
            } else {
                counts.delayed += 1;
            }
        }
        counts
    }
}

pub(super) fn matches_filter(message: &Message, claim: &Claim) -> bool {
    claim
        .tenant_id
        .as_ref()
        .is_none_or(|tenant| *tenant == message.tenant_id)
        && claim
            .project_id
            .as_ref()
            .is_none_or(|project| *project == message.project_id)
}

/// Turns an exhausted entry into the first entry of its dead-letter topic.
pub(super) fn into_dead_letter(
    mut entry: Entry,
    policy: &DeadLetterPolicy,
    now: Timestamp,
) -> Entry {
    let source = std::mem::replace(&mut entry.message.topic, policy.topic.to_string());
    entry
        .message
        .attributes
        .insert(SOURCE_TOPIC_ATTRIBUTE.to_string(), source);
    entry.message.attributes.insert(
        DELIVERY_ATTEMPTS_ATTRIBUTE.to_string(),
        entry.attempts.to_string(),
    );
    Entry {
        message: entry.message,
        visible_at: now,
        attempts: 0,
        ack_id: None,
    }
}
