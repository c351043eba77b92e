//! Long-poll waiters per topic, woken when a topic may have visible messages.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering, fence};
use std::sync::{Arc, Weak};

use parking_lot::RwLock;
use tokio::sync::Notify;
use tokio::sync::futures::Notified;

use crate::shards;

/// Waiters of this process by topic. Only topics with a waiter have an entry. The
/// registry is split into shards by topic, a wake takes only a read lock on its shard,
/// and a wake with no waiter anywhere takes no lock at all, so publishing never makes
/// topics wait for each other here.
#[derive(Debug)]
pub struct Wakeups {
    shards: Box<[RwLock<Registry>]>,
    /// Live subscriptions in all shards.
    subscriptions: AtomicUsize,
}

#[derive(Debug, Default)]
struct Registry {
    topics: HashMap<String, Weak<Notify>>,
    /// Size at which dead entries are pruned. A subscription removes its own entry on
    /// drop, but not while a concurrent wake briefly keeps a handle.
    prune_at: usize,
}

/// Smallest registry size at which dead entries are pruned.
const MIN_PRUNE_AT: usize = 1024;

impl Default for Wakeups {
    fn default() -> Self {
        Wakeups {
            shards: shards::per_shard(),
            subscriptions: AtomicUsize::new(0),
        }
    }
}

impl Wakeups {
    /// Creates an empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers interest in `topic` until the returned subscription is dropped.
    pub fn subscribe(self: &Arc<Self>, topic: &str) -> Subscription {
        // Counted before the waiter first checks for messages. With the fence in `wake`,
        // either the publisher reads a count above zero or the waiter's check finds the
        // message.
        self.subscriptions.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let mut registry = self.shards[shards::shard_of(topic)].write();
        let notify = match registry.topics.get(topic).and_then(Weak::upgrade) {
            Some(notify) => notify,
            None => {
                let notify = Arc::new(Notify::new());
                registry
                    .topics
                    .insert(topic.to_string(), Arc::downgrade(&notify));
                if registry.topics.len() >= registry.prune_at.max(MIN_PRUNE_AT) {
                    registry.topics.retain(|_, weak| weak.strong_count() > 0);
                    registry.prune_at = registry.topics.len() * 2;
                }
                notify
            }
        };
        Subscription {
            registry: self.clone(),
            topic: topic.to_string(),
            notify,
        }
    }

    /// Wakes every waiter of `topic`.
    pub fn wake(&self, topic: &str) {
        fence(Ordering::SeqCst);
        if self.subscriptions.load(Ordering::SeqCst) == 0 {
            return;
        }
        let notify = self.shards[shards::shard_of(topic)]
            .read()
            .topics
            .get(topic)
            .and_then(Weak::upgrade);
        if let Some(notify) = notify {
            notify.notify_waiters();
        }
    }

    /// Wakes every waiter of every topic, for when notifications may have been missed.
    pub fn wake_all(&self) {
        for shard in &self.shards {
            let live: Vec<Arc<Notify>> = shard
                .read()
                .topics
                .values()
                .filter_map(Weak::upgrade)
                .collect();
            for notify in live {
                notify.notify_waiters();
            }
        }
    }

    /// Number of topics with at least one waiter.
    pub fn topics_waited_on(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.read().topics.len())
            .sum()
    }
}

/// Interest in one topic; dropping the last one for a topic removes its entry.
#[derive(Debug)]
pub struct Subscription {
    registry: Arc<Wakeups>,
    topic: String,
    notify: Arc<Notify>,
}

impl Subscription {
    /// Returns a future that completes at the next wake of the topic. Call `enable` on it (or
    /// poll it) before checking for messages, so a wake in between is not missed.
    pub fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        {
            // Under the write lock no other thread can upgrade the entry, so a count of
            // one means this subscription has the last handle.
            let mut registry = self.registry.shards[shards::shard_of(&self.topic)].write();
            if Arc::strong_count(&self.notify) == 1 {
                registry.topics.remove(&self.topic);
            }
        }
        self.registry.subscriptions.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn wake_reaches_enabled_waiter() {
        let wakeups = Arc::new(Wakeups::new());
        let subscription = wakeups.subscribe("orders");
        let notified = subscription.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();

        wakeups.wake("orders");
        tokio::time::timeout(Duration::from_secs(1), notified)
            .await
            .expect("woken");
    }

    #[tokio::test]
    async fn wake_of_other_topic_is_ignored() {
        let wakeups = Arc::new(Wakeups::new());
        let subscription = wakeups.subscribe("orders");
        let notified = subscription.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();

        wakeups.wake("invoices");
        let outcome = tokio::time::timeout(Duration::from_millis(50), notified).await;
        assert!(outcome.is_err(), "no wake for another topic");
    }

    #[test]
    fn last_subscription_removes_entry() {
        let wakeups = Arc::new(Wakeups::new());
        let first = wakeups.subscribe("orders");
        let second = wakeups.subscribe("orders");
        assert_eq!(wakeups.topics_waited_on(), 1);
        drop(first);
        assert_eq!(wakeups.topics_waited_on(), 1);
        drop(second);
        assert_eq!(wakeups.topics_waited_on(), 0);
    }
}
