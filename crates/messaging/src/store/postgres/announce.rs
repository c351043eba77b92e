//! Wake-ups across replicas: announced topics go out with `NOTIFY`, and `LISTEN` wakes waiters.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgPoolOptions};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

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
#[derive(Debug, Default)]
pub(super) struct Announcer {
    pending: Mutex<Pending>,
    ready: Notify,
}

#[derive(Debug, Default)]
struct Pending {
    topics: HashSet<String>,
    every_topic: bool,
}

impl Announcer {
    /// Queues a topic; never waits.
    pub(super) fn announce(&self, topic: &str) {
        {
            let mut pending = self.pending.lock();
            if pending.every_topic || pending.topics.contains(topic) {
                return;
            }
            if pending.topics.len() >= MAX_PENDING {
                pending.topics.clear();
                pending.every_topic = true;
            } else {
                pending.topics.insert(topic.to_string());
            }
        }
        self.ready.notify_one();
    }

    /// Number of topics waiting to be sent.
    pub(super) fn pending(&self) -> usize {
        let pending = self.pending.lock();
        pending.topics.len() + usize::from(pending.every_topic)
    }

    fn take(&self) -> Vec<String> {
        let mut pending = self.pending.lock();
        if std::mem::take(&mut pending.every_topic) {
            pending.topics.clear();
            return vec![EVERY_TOPIC.to_string()];
        }
        pending.topics.drain().collect()
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
