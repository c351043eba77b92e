//! Wake-ups across replicas: announced topics go out with `NOTIFY`, and `LISTEN` wakes waiters.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgPoolOptions};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::shards;
use crate::wakeup::Wakeups;

/// The `LISTEN` channel.
const CHANNEL: &str = "messaging_topics";
/// Payload that wakes every waiter, sent when too many topics are pending to list them.
/// Topic names cannot contain `*`.
const EVERY_TOPIC: &str = "*";
/// Most topics kept pending before they collapse into one wake of every topic.
const MAX_PENDING: usize = 4096;
/// Pause after each send, so a busy publisher costs at most about 200 small statements a
/// second. Topics announced during the pause go out together in the next one, which
/// adds at most this much to a wake-up under sustained publishing and nothing when idle.
const SEND_SPACING: Duration = Duration::from_millis(5);
/// First and longest wait before reconnecting the listener.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Topics waiting to be sent with `NOTIFY`.
///
/// Publishing transactions never `NOTIFY` themselves: Postgres serialises the commits of
/// all notifying transactions on one lock, which would put every publish of every topic
/// in one line. A background task sends the announced topics instead, coalesced, in one
/// statement at a time.
#[derive(Debug)]
pub(super) struct Announcer {
    /// Pending topics, split into shards so publishes to different topics do not
    /// share a lock.
    shards: Box<[Mutex<HashSet<String>>]>,
    /// Topics in all shards.
    count: AtomicUsize,
    /// Set when too many topics were pending: one wake of every topic replaces them.
    every_topic: AtomicBool,
    ready: Notify,
}

impl Default for Announcer {
    fn default() -> Self {
        Announcer {
            shards: shards::per_shard(),
            count: AtomicUsize::new(0),
            every_topic: AtomicBool::new(false),
            ready: Notify::new(),
        }
    }
}

impl Announcer {
    /// Queues a topic; never waits.
    pub(super) fn announce(&self, topic: &str) {
        if self.every_topic.load(Ordering::Acquire) {
            return;
        }
        {
            let mut pending = self.shards[shards::shard_of(topic)].lock();
            if pending.contains(topic) {
                return;
            }
            if self.count.load(Ordering::Acquire) >= MAX_PENDING {
                self.every_topic.store(true, Ordering::Release);
            } else {
                pending.insert(topic.to_string());
                self.count.fetch_add(1, Ordering::AcqRel);
            }
        }
        self.ready.notify_one();
    }

    /// Number of topics waiting to be sent.
    pub(super) fn pending(&self) -> usize {
        self.count.load(Ordering::Acquire) + usize::from(self.every_topic.load(Ordering::Acquire))
    }

    fn take(&self) -> Vec<String> {
        let every_topic = self.every_topic.swap(false, Ordering::AcqRel);
        let mut topics = Vec::new();
        for shard in &self.shards {
            let mut pending = shard.lock();
            self.count.fetch_sub(pending.len(), Ordering::AcqRel);
            topics.extend(pending.drain());
        }
        if every_topic {
            return vec![EVERY_TOPIC.to_string()];
        }
        topics
    }

    /// Sends pending topics until `stop` fires. A failed send is dropped: waiters check
    /// again on their own within a second.
    pub(super) async fn send(&self, pool: &PgPool, stop: CancellationToken) {
        let mut failing = false;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.ready.notified() => {}
            }
            let topics = self.take();
            if topics.is_empty() {
                continue;
            }
            let sent = sqlx::query("SELECT pg_notify($1, topic) FROM unnest($2::text[]) AS topic")
                .bind(CHANNEL)
                .bind(&topics)
                .execute(pool)
                .await;
            match sent {
                Ok(_) if failing => {
                    failing = false;
                    tracing::info!("topic announcements are sent again");
                }
                Ok(_) => {}
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(%error, dropped = topics.len(), "sending topic announcements failed; long polls on other replicas fall back to checking every second");
                }
                Err(_) => {}
            }
            tokio::time::sleep(SEND_SPACING).await;
        }
    }
}

/// Listens for announcements on a connection of its own, outside the request pool, and
/// wakes local waiters until `stop` fires. After any reconnect every waiter is woken,
/// because announcements sent while disconnected are lost.
pub(super) async fn listen(pool: &PgPool, wakeups: Arc<Wakeups>, stop: CancellationToken) {
    let own_pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(platform::db::ACQUIRE_TIMEOUT)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_lazy_with((*pool.connect_options()).clone());
    let mut backoff = MIN_BACKOFF;

    while !stop.is_cancelled() {
        let connected = tokio::select! {
            _ = stop.cancelled() => break,
            connected = subscribe(&own_pool) => connected,
        };
        let mut listener = match connected {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "cannot listen for topic announcements; retrying");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        tracing::info!(channel = CHANNEL, "listening for topic announcements");
        backoff = MIN_BACKOFF;
        wakeups.wake_all();

        loop {
            let received = tokio::select! {
                _ = stop.cancelled() => break,
                received = listener.try_recv() => received,
            };
            match received {
                Ok(Some(notification)) => match notification.payload() {
                    EVERY_TOPIC => wakeups.wake_all(),
                    topic => wakeups.wake(topic),
                },
                Ok(None) => {
                    tracing::warn!("the announcement listener lost its connection; reconnecting");
                    wakeups.wake_all();
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, "the announcement listener failed; reconnecting");
                    wakeups.wake_all();
                    break;
                }
            }
        }
    }

    own_pool.close().await;
    tracing::info!("stopped listening for topic announcements");
}

async fn subscribe(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    // A lost connection ends `try_recv` with `Ok(None)` instead of a reconnect loop
    // inside it, so every reconnect goes through `listen` and its backoff.
    listener.eager_reconnect(false);
    listener.ignore_pool_close_event(true);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_topics_are_sent_once() {
        let announcer = Announcer::default();
        announcer.announce("orders");
        announcer.announce("orders");
        announcer.announce("invoices");

        assert_eq!(announcer.pending(), 2);
        let mut topics = announcer.take();
        topics.sort();
        assert_eq!(topics, ["invoices", "orders"]);
        assert_eq!(announcer.pending(), 0);
        assert!(announcer.take().is_empty());
    }

    #[test]
    fn too_many_topics_collapse_into_one_wake() {
        let announcer = Announcer::default();
        for index in 0..=MAX_PENDING {
            announcer.announce(&format!("topic-{index}"));
        }

        assert_eq!(announcer.pending(), MAX_PENDING + 1);
        assert_eq!(announcer.take(), [EVERY_TOPIC]);
        assert_eq!(announcer.pending(), 0);
    }
}
