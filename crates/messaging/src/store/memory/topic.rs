//! The state of one topic in the memory store: its messages and the indexes that order them.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use platform::Timestamp;
use uuid::Uuid;

use crate::model::{
    Attributes, DELIVERY_ATTEMPTS_ATTRIBUTE, Message, Priority, SOURCE_TOPIC_ATTRIBUTE, TopicCounts,
};
use crate::store::{Claim, DeadLetterPolicy};

/// Delivery order: higher priority first, then older (publish time in microseconds), then
/// the id to break ties. Plain integers compare faster than timestamps.
pub(super) type OrderKey = (Reverse<Priority>, i64, Uuid);

#[derive(Debug)]
pub(super) struct Entry {
    pub(super) message: Arc<Message>,
    /// Microseconds since the Unix epoch.
    pub(super) visible_at: i64,
    pub(super) attempts: u32,
    pub(super) ack_id: Option<Uuid>,
}

impl Entry {
    pub(super) fn order_key(&self) -> OrderKey {
        (
            Reverse(self.message.priority),
            self.message.published_at.unix_micros(),
            self.message.message_id,
        )
    }
}

#[derive(Debug)]
pub(super) struct KeyRecord {
    /// The same messages the topic holds, not copies.
    pub(super) messages: Vec<Arc<Message>>,
    pub(super) expires_at: Timestamp,
}

/// Hashes message ids by their bits. The service makes every id it stores, whose random
/// half spreads them well, so the keyed default hasher would only add work.
#[derive(Default)]
pub(super) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(29) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub(super) type IdMap<V> = HashMap<Uuid, V, BuildHasherDefault<IdHasher>>;

#[derive(Debug, Default)]
pub(super) struct TopicState {
    /// Set when the topic was dropped from the map; a holder of a stale handle looks up
    /// the topic again.
    pub(super) removed: bool,
    pub(super) entries: IdMap<Entry>,
    /// Messages visible as of the last `promote`, in delivery order.
    pub(super) ready: BTreeSet<OrderKey>,
    /// Leased or delayed messages by the time (microseconds) they become visible.
    pub(super) waiting: BTreeSet<(i64, OrderKey)>,
    /// Every message by publish time in microseconds, for retention.
    pub(super) by_age: BTreeSet<(i64, Uuid)>,
    pub(super) keys: HashMap<String, KeyRecord>,
}

impl TopicState {
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.keys.is_empty()
    }

    /// Adds a message that is visible from `visible_at`, as seen at `now`.
    pub(super) fn insert(&mut self, message: Arc<Message>, visible_at: Timestamp, now: Timestamp) {
        let entry = Entry {
            message,
            visible_at: visible_at.unix_micros(),
            attempts: 0,
            ack_id: None,
        };
        self.insert_entry(entry, now);
    }

    pub(super) fn insert_entry(&mut self, entry: Entry, now: Timestamp) {
        let key = entry.order_key();
        if entry.visible_at <= now.unix_micros() {
            self.ready.insert(key);
        } else {
            self.waiting.insert((entry.visible_at, key));
        }
        self.by_age.insert((key.1, key.2));
        self.entries.insert(key.2, entry);
    }

    pub(super) fn remove(&mut self, id: Uuid) -> Option<Entry> {
        let entry = self.entries.remove(&id)?;
        let key = entry.order_key();
        if !self.waiting.remove(&(entry.visible_at, key)) {
            self.ready.remove(&key);
        }
        self.by_age.remove(&(key.1, id));
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
        entry.visible_at = visible_at.unix_micros();
        if visible_at <= now {
            self.ready.insert(key);
        } else {
            self.waiting.insert((entry.visible_at, key));
        }
    }

    /// Moves messages whose lease or delay ended by `now` into the ready set.
    pub(super) fn promote(&mut self, now: Timestamp) {
        let now = now.unix_micros();
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
        let now = now.unix_micros();
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
        .as_deref()
        .is_none_or(|tenant| tenant == &*message.tenant_id)
        && claim
            .project_id
            .as_deref()
            .is_none_or(|project| project == &*message.project_id)
}

/// Turns an exhausted entry into the first entry of its dead-letter topic: a new message
/// with the dead-letter topic and the two attributes added.
pub(super) fn into_dead_letter(entry: Entry, policy: &DeadLetterPolicy, now: Timestamp) -> Entry {
    let mut message = Arc::unwrap_or_clone(entry.message);
    let source = std::mem::replace(&mut message.topic, policy.topic.shared());
    let mut attributes = message.attributes.to_map();
    attributes.insert(SOURCE_TOPIC_ATTRIBUTE.to_string(), source.to_string());
    attributes.insert(
        DELIVERY_ATTEMPTS_ATTRIBUTE.to_string(),
        entry.attempts.to_string(),
    );
    message.attributes = Attributes::from_map(&attributes);
    Entry {
        message: Arc::new(message),
        visible_at: now.unix_micros(),
        attempts: 0,
        ack_id: None,
    }
}
