//! Messages in the `messaging` schema; any number of replicas may share it.

mod announce;
mod copy;
mod rows;
mod sql;

use std::sync::Arc;

use async_trait::async_trait;
use platform::Timestamp;
use sqlx::postgres::PgPoolCopyExt;
use sqlx::{PgPool, Row};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{
    Claim, Claimed, DeadLetterPolicy, DedupKey, MessageStore, NewMessage, PublishOutcome, Release,
    Settled, StoreError,
};
use crate::envelope;
use crate::model::{
    DELIVERY_ATTEMPTS_ATTRIBUTE, Message, SOURCE_TOPIC_ATTRIBUTE, Topic, TopicCounts,
};
use crate::wakeup::Wakeups;
use announce::Announcer;
use rows::{Columns, counts_from_row, delivery_from_row, key_of};

/// How often a keyed publish retries when its key record vanished between the insert and
/// the read of the original (a sweep removed it just then).
const MAX_KEYED_PUBLISH_ATTEMPTS: usize = 3;

/// Messages in Postgres.
///
/// Claims lock candidate rows with `FOR UPDATE SKIP LOCKED` and lease them in the same
/// statement, so concurrent pulls on any replica never lease one message twice, and an
/// expired lease needs no sweeper: the claim's `visible_at <= now` finds it again.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
    announcer: Arc<Announcer>,
}

impl PostgresStore {
    /// Uses a pool whose database has the migrations applied.
    pub fn new(pool: PgPool) -> Self {
        PostgresStore {
            pool,
            announcer: Arc::new(Announcer::default()),
        }
    }
}

/// Returns the delivery count at which a claim or nack dead-letters. A dead-letter topic
/// gets `i32::MAX`, which no message reaches.
fn exhaustion_limit(policy: Option<&DeadLetterPolicy>) -> i32 {
    policy.map_or(i32::MAX, |policy| {
        i32::try_from(policy.max_deliveries).unwrap_or(i32::MAX)
    })
}

/// Returns the dead-letter topic name to bind, and its key. A dead-letter topic binds its
/// own name, which the statements never use because no message reaches the limit.
fn dead_letter_name<'a>(topic: &'a Topic, policy: Option<&'a DeadLetterPolicy>) -> (&'a str, i64) {
    let name = policy.map_or(topic.as_str(), |policy| policy.topic.as_str());
    (name, key_of(name))
}

impl PostgresStore {
    async fn insert_messages(
        &self,
        topic: &Topic,
        messages: &[NewMessage],
    ) -> Result<(), StoreError> {
        if let [single] = messages {
            let message = &single.message;
            sqlx::query(sql::INSERT_ONE)
                .bind(message.message_id)
                .bind(topic.as_str())
                .bind(&*message.tenant_id)
                .bind(&*message.project_id)
                .bind(&*message.key)
                .bind(message.priority.rank())
                .bind(message.published_at)
                .bind(message.attributes.as_json())
                .bind(message.payload.to_bytes())
                .bind(single.visible_at)
                .bind(key_of(topic.as_str()))
                .bind(key_of(&message.tenant_id))
                .bind(key_of(&message.project_id))
                .execute(&self.pool)
                .await?;
            return Ok(());
        }
        // Encoded before a connection is taken, so the connection is held only while
        // Postgres works.
        let data = copy::encode(topic, messages);
        let mut copy_in = self.pool.copy_in_raw(sql::COPY_MESSAGES).await?;
        copy_in.send(data).await?;
        copy_in.finish().await?;
        Ok(())
    }

    /// Stores messages only if the key is free or expired, in one statement; returns
    /// whether they were stored.
    async fn insert_keyed(
        &self,
        topic: &Topic,
        messages: &[NewMessage],
        dedup: &DedupKey,
    ) -> Result<bool, StoreError> {
        let originals: Vec<Arc<Message>> = messages.iter().map(|new| new.message.clone()).collect();
        // The envelopes are JSON text, so the bytes are UTF-8.
        let originals = String::from_utf8_lossy(&envelope::messages_array(&originals)).into_owned();
        let columns = Columns::of(topic, messages);
        let result = columns
            .bind(sqlx::query(sql::INSERT_KEYED))
            .bind(&dedup.key)
            .bind(&originals)
            .bind(dedup.expires_at)
            .bind(dedup.now)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() > 0)
    }

    /// Reads whether a message exists, to tell a stale ack id from a missing message.
    async fn stale_or_missing(
        &self,
        topic: &Topic,
        message_id: Uuid,
    ) -> Result<Settled, StoreError> {
        let exists: Option<i32> = sqlx::query_scalar(sql::EXISTS)
            .bind(message_id)
            .bind(topic.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(match exists {
            Some(_) => Settled::Stale,
            None => Settled::Missing,
        })
    }
}

#[async_trait]
impl MessageStore for PostgresStore {
    async fn publish(
        &self,
        topic: &Topic,
        messages: &[NewMessage],
        dedup: Option<&DedupKey>,
    ) -> Result<PublishOutcome, StoreError> {
        let Some(dedup) = dedup else {
            self.insert_messages(topic, messages).await?;
            return Ok(PublishOutcome::Stored);
        };

        for _ in 0..MAX_KEYED_PUBLISH_ATTEMPTS {
            if self.insert_keyed(topic, messages, dedup).await? {
                return Ok(PublishOutcome::Stored);
            }
            // A separate statement takes a new snapshot, so it reads the record even when a
            // concurrent publish with the same key committed while the insert waited.
            let original: Option<String> = sqlx::query_scalar(sql::SELECT_KEY)
                .bind(topic.as_str())
                .bind(&dedup.key)
                .fetch_optional(&self.pool)
                .await?;
            if let Some(original) = original {
                let messages = envelope::read_messages(original.as_bytes())
                    .map_err(|error| sqlx::Error::Decode(error.into()))?;
                return Ok(PublishOutcome::Duplicate(
                    messages.into_iter().map(Arc::new).collect(),
                ));
            }
        }
        tracing::warn!(%topic, attempts = MAX_KEYED_PUBLISH_ATTEMPTS, "idempotency key record kept vanishing during publish");
        Err(StoreError::Database(sqlx::Error::Protocol(
            "idempotency key record vanished during publish".into(),
        )))
    }

    async fn claim(&self, claim: &Claim) -> Result<Claimed, StoreError> {
        let policy = claim.dead_letter.as_ref();
        let (dead_letter, dead_letter_key) = dead_letter_name(&claim.topic, policy);
        let statement = match (&claim.tenant_id, &claim.project_id) {
            (None, None) => sql::CLAIM,
            (Some(_), None) => sql::CLAIM_TENANT,
            (None, Some(_)) => sql::CLAIM_PROJECT,
            (Some(_), Some(_)) => sql::CLAIM_TENANT_PROJECT,
        };
        let mut query = sqlx::query(statement)
            .bind(claim.topic.as_str())
            .bind(claim.now)
            .bind(claim.limit as i64)
            .bind(claim.lease_until)
            .bind(exhaustion_limit(policy))
            .bind(&claim.ack_ids)
            .bind(dead_letter)
            .bind(SOURCE_TOPIC_ATTRIBUTE)
            .bind(DELIVERY_ATTEMPTS_ATTRIBUTE)
            .bind(key_of(claim.topic.as_str()))
            .bind(dead_letter_key);
        if let Some(tenant_id) = &claim.tenant_id {
            query = query.bind(key_of(tenant_id)).bind(tenant_id);
        }
        if let Some(project_id) = &claim.project_id {
            query = query.bind(key_of(project_id)).bind(project_id);
        }

        let rows = query.fetch_all(&self.pool).await?;
        let mut claimed = Claimed::default();
        for row in rows {
            if row.try_get::<bool, _>("dead_lettered")? {
                claimed.dead_lettered += 1;
            } else {
                claimed
                    .deliveries
                    .push(delivery_from_row(&claim.topic, &row)?);
            }
        }
        Ok(claimed)
    }

    async fn ack(
        &self,
        topic: &Topic,
        message_id: Uuid,
        ack_id: Option<Uuid>,
    ) -> Result<Settled, StoreError> {
        let deleted = sqlx::query(sql::ACK)
            .bind(message_id)
            .bind(topic.as_str())
            .bind(ack_id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        match (deleted, ack_id) {
            (0, Some(_)) => self.stale_or_missing(topic, message_id).await,
            (0, None) => Ok(Settled::Missing),
            _ => Ok(Settled::Done),
        }
    }

    async fn ack_many(&self, topic: &Topic, message_ids: &[Uuid]) -> Result<Vec<Uuid>, StoreError> {
        if message_ids.is_empty() {
            return Ok(Vec::new());
        }
        let deleted: Vec<Uuid> = sqlx::query_scalar(sql::ACK_MANY)
            .bind(message_ids)
            .bind(topic.as_str())
            .fetch_all(&self.pool)
            .await?;
        Ok(deleted)
    }

    async fn nack(
        &self,
        topic: &Topic,
        message_id: Uuid,
        release: &Release,
    ) -> Result<Settled, StoreError> {
        let policy = release.dead_letter.as_ref();
        let (dead_letter, dead_letter_key) = dead_letter_name(topic, policy);
        let dead: Option<bool> = sqlx::query_scalar(sql::NACK)
            .bind(message_id)
            .bind(topic.as_str())
            .bind(release.ack_id)
            .bind(release.now)
            .bind(exhaustion_limit(policy))
            .bind(release.visible_at)
            .bind(dead_letter)
            .bind(SOURCE_TOPIC_ATTRIBUTE)
            .bind(DELIVERY_ATTEMPTS_ATTRIBUTE)
            .bind(dead_letter_key)
            .fetch_optional(&self.pool)
            .await?;
        match dead {
            Some(true) => Ok(Settled::DeadLettered),
            Some(false) => Ok(Settled::Done),
            None => self.stale_or_missing(topic, message_id).await,
        }
    }

    async fn extend(
        &self,
        topic: &Topic,
        message_id: Uuid,
        ack_id: Uuid,
        lease_until: Timestamp,
    ) -> Result<Settled, StoreError> {
        let updated = sqlx::query(sql::EXTEND)
            .bind(message_id)
            .bind(topic.as_str())
            .bind(ack_id)
            .bind(lease_until)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if updated == 0 {
            return self.stale_or_missing(topic, message_id).await;
        }
        Ok(Settled::Done)
    }

    async fn counts(&self, topic: &Topic, now: Timestamp) -> Result<TopicCounts, StoreError> {
        let row = sqlx::query(sql::COUNTS)
            .bind(topic.as_str())
            .bind(now)
            .bind(key_of(topic.as_str()))
            .fetch_one(&self.pool)
            .await?;
        Ok(counts_from_row(&row)?)
    }

    async fn all_counts(&self, now: Timestamp) -> Result<Vec<(String, TopicCounts)>, StoreError> {
        let rows = sqlx::query(sql::ALL_COUNTS)
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("topic")?, counts_from_row(row)?)))
            .collect()
    }

    async fn remove_old_messages(
        &self,
        published_before: Timestamp,
        batch: usize,
    ) -> Result<u64, StoreError> {
        let removed = sqlx::query(sql::REMOVE_OLD_MESSAGES)
            .bind(published_before)
            .bind(batch as i64)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(removed)
    }

    async fn remove_expired_keys(&self, now: Timestamp, batch: usize) -> Result<u64, StoreError> {
        let removed = sqlx::query(sql::REMOVE_EXPIRED_KEYS)
            .bind(now)
            .bind(batch as i64)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(removed)
    }

    fn announce(&self, topic: &Topic) {
        self.announcer.announce(topic.as_str());
    }

    async fn relay(&self, wakeups: Arc<Wakeups>, stop: CancellationToken) {
        tokio::join!(
            announce::listen(&self.pool, wakeups, stop.clone()),
            self.announcer.send(&self.pool, stop),
        );
    }

    fn backlog(&self) -> Vec<(&'static str, u64)> {
        vec![("announcements", self.announcer.pending() as u64)]
    }
}
