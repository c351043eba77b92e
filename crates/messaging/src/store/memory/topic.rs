//! The state of one topic in the memory store: its messages and the indexes that order them.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use platform::Timestamp;
use uuid::Uuid;

use crate::model::{
    Attributes, DELIVERY_ATTEMPTS_ATTRIBUTE, Message, Priority, SOURCE_TOPIC_ATTRIBUTE, TopicCounts,
};
use crate::store::{Claim, DeadLetterPolicy};

/// Delivery order: higher priority first, then older, then the id to break ties. The
/// priority and publish time are packed into one integer and the id is read as another,
/// because the ordered sets compare keys many times per insert. Messages of one batch
/// share their publish time, so most comparisons reach the id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct OrderKey {
    /// The inverted priority rank in the top two bits, then the publish time.
    rank_and_time: u64,
    /// The id as a big-endian integer, which orders like its bytes.
    id: u128,
}

/// Offset that makes every publish time since about 71 000 BC a positive number of
/// microseconds below 2^62.
const TIME_OFFSET: i64 = 1 << 61;

impl OrderKey {
    pub(super) fn of(message: &Message) -> Self {
        let inverted = u64::from((Priority::High.rank() - message.priority.rank()) as u16);
        let time = (message
            .published_at
            .unix_micros()
            .saturating_add(TIME_OFFSET) as u64)
            & ((1 << 62) - 1);
        OrderKey {
            rank_and_time: inverted << 62 | time,
            id: message.message_id.as_u128(),
        }
    }

    pub(super) fn id(self) -> Uuid {
        Uuid::from_u128(self.id)
    }
}

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
        OrderKey::of(&self.message)
    }
}

#[derive(Debug)]
pub(super) struct KeyRecord {
    /// The same messages the topic holds, not copies.
    pub(super) messages: Vec<Arc<Message>>,
    pub(super) expires_at: Timestamp,
}

/// Hashes message ids with a fixed mix of their bits. The service makes every id it
/// stores, so no client can choose ids that collide, and the keyed default hasher would
/// only add work.
#[derive(Default)]
pub(super) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = mix(self.0 ^ u64::from_le_bytes(word));
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Mixes bits with the SplitMix64 finalizer: every input bit changes about half of the
/// output bits, so both the bucket (low bits) and the tag (high bits) spread out.
fn mix(mut value: u64) -> u64 {
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

pub(super) type IdMap<V> = HashMap<Uuid, V, BuildHasherDefault<IdHasher>>;

/// Skipped heap entries tolerated on top of twice the messages before a rebuild, so
/// small topics do not rebuild all the time.
const MIN_REBUILD: usize = 1024;

#[derive(Debug, Default)]
pub(super) struct TopicState {
    /// Set when the topic was dropped from the map; a holder of a stale handle looks up
    /// the topic again.
    pub(super) removed: bool,
    pub(super) entries: IdMap<Entry>,
    /// Messages visible as of the last `promote`, in delivery order.
    pub(super) ready: BTreeSet<OrderKey>,
    /// Leased or delayed messages by the time (microseconds) they become visible, earliest
    /// on top. Entries are not removed when their message is acknowledged or its time
    /// changes: `promote` skips them, because a heap push costs a fraction of an ordered
    /// set's insert and remove.
    pub(super) waiting: BinaryHeap<Reverse<(i64, OrderKey)>>,
    /// Every message by publish time in microseconds and id, for retention.
    pub(super) by_age: BTreeSet<(i64, u128)>,
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
        let visible_at = entry.visible_at;
        let id = entry.message.message_id;
        self.by_age
            .insert((entry.message.published_at.unix_micros(), id.as_u128()));
        self.entries.insert(id, entry);
        if visible_at <= now.unix_micros() {
            self.ready.insert(key);
        } else {
            self.wait(visible_at, key);
        }
    }

    pub(super) fn remove(&mut self, id: Uuid) -> Option<Entry> {
        let entry = self.entries.remove(&id)?;
        let key = entry.order_key();
        // A waiting message leaves its heap entry behind, which `promote` skips.
        self.ready.remove(&key);
        self.by_age
            .remove(&(entry.message.published_at.unix_micros(), id.as_u128()));
        Some(entry)
    }

    /// Changes when a message becomes visible, keeping the indexes in step.
    pub(super) fn set_visible_at(&mut self, id: Uuid, visible_at: Timestamp, now: Timestamp) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        let key = entry.order_key();
        let micros = visible_at.unix_micros();
        entry.visible_at = micros;
        self.ready.remove(&key);
        if visible_at <= now {
            self.ready.insert(key);
        } else {
            self.wait(micros, key);
        }
    }

    /// Files a message as waiting until `visible_at`. Once skipped entries outnumber the
    /// messages, the heap is rebuilt from the messages not ready, which keeps it within
    /// twice their number.
    fn wait(&mut self, visible_at: i64, key: OrderKey) {
        self.waiting.push(Reverse((visible_at, key)));
        if self.waiting.len() > 2 * self.entries.len() + MIN_REBUILD {
            let waiting: Vec<Reverse<(i64, OrderKey)>> = self
                .entries
                .values()
                .map(|entry| (entry.visible_at, entry.order_key()))
                .filter(|(_, key)| !self.ready.contains(key))
                .map(Reverse)
                .collect();
            self.waiting = BinaryHeap::from(waiting);
        }
    }

    /// Moves messages whose lease or delay ended by `now` into the ready set, skipping
    /// heap entries of messages that are gone. A message whose time changed is filed
    /// again by its newest entry; an older one finds it either not yet visible or
    /// already ready.
    pub(super) fn promote(&mut self, now: Timestamp) {
        let now = now.unix_micros();
        while let Some(Reverse((visible_at, key))) = self.waiting.peek().copied() {
            if visible_at > now {
                break;
            }
            self.waiting.pop();
            let visible = self
                .entries
                .get(&key.id())
                .is_some_and(|entry| entry.visible_at <= now);
            if visible {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::Payload;

    fn message(priority: Priority, published_at: Timestamp, id: u128) -> Message {
        Message {
            message_id: Uuid::from_u128(id),
            tenant_id: "t".into(),
            project_id: "p".into(),
            topic: "orders".into(),
            key: "".into(),
            priority,
            published_at,
            attributes: Attributes::default(),
            payload: Payload::from_bytes(b""),
        }
    }

    #[test]
    fn order_keys_sort_by_priority_age_id() {
        let early = Timestamp::EPOCH.saturating_sub(Duration::from_secs(60));
        let late = Timestamp::EPOCH.saturating_add(Duration::from_secs(60));
        let mut keys = [
            OrderKey::of(&message(Priority::Low, early, 1)),
            OrderKey::of(&message(Priority::Normal, late, 2)),
            OrderKey::of(&message(Priority::Normal, late, 1)),
            OrderKey::of(&message(Priority::High, late, 9)),
            OrderKey::of(&message(Priority::Normal, early, u128::MAX)),
        ];
        keys.sort();

        let ids: Vec<u128> = keys.iter().map(|key| key.id().as_u128()).collect();
        assert_eq!(ids, [9, u128::MAX, 1, 2, 1]);
        assert_eq!(keys[4].rank_and_time >> 62, 2);
    }

    fn at(seconds: u64) -> Timestamp {
        Timestamp::EPOCH.saturating_add(Duration::from_secs(seconds))
    }

    fn ready_ids(state: &TopicState) -> Vec<u128> {
        state.ready.iter().map(|key| key.id().as_u128()).collect()
    }

    #[test]
    fn leases_return_to_ready_once_over() {
        let mut state = TopicState::default();
        for id in 1..=3 {
            state.insert(Arc::new(message(Priority::Normal, at(0), id)), at(0), at(0));
        }
        state.set_visible_at(Uuid::from_u128(1), at(10), at(0));
        state.set_visible_at(Uuid::from_u128(2), at(5), at(0));
        // Extended before it ended: only the later time counts.
        state.set_visible_at(Uuid::from_u128(2), at(20), at(1));
        state.remove(Uuid::from_u128(1));
        assert_eq!(ready_ids(&state), [3]);

        state.promote(at(10));
        assert_eq!(ready_ids(&state), [3]);
        state.promote(at(20));
        assert_eq!(ready_ids(&state), [2, 3]);
        assert!(state.waiting.is_empty());
    }

    #[test]
    fn skipped_heap_entries_stay_bounded() {
        let mut state = TopicState::default();
        state.insert(Arc::new(message(Priority::Normal, at(0), 1)), at(0), at(0));
        for second in 1..=5000 {
            state.set_visible_at(Uuid::from_u128(1), at(second + 100), at(0));
        }

        assert!(state.waiting.len() <= 2 * state.entries.len() + MIN_REBUILD + 1);
        state.promote(at(5100));
        assert_eq!(ready_ids(&state), [1]);
    }
}
