//! Conversions between rows and domain types, batches split into column arrays, and the
//! hash keys the indexes hold.

use std::collections::BTreeMap;
use std::sync::Arc;

use platform::Timestamp;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::types::Json;
use sqlx::{FromRow, Postgres, Row};
use uuid::Uuid;

use crate::model::{Attributes, Delivery, Message, Payload, Priority, Topic, TopicCounts};
use crate::store::NewMessage;

/// Index key of a topic, tenant or project name: the first eight bytes of its SHA-256
/// digest. A cryptographic digest keeps clients from choosing names whose keys collide
/// with another tenant's on purpose.
pub(super) fn key_of(name: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// Keys of the names of consecutive messages, reusing the last one while a name repeats,
/// as it does through most batches.
#[derive(Default)]
pub(super) struct KeyCache {
    last: Option<(String, i64)>,
}

impl KeyCache {
    pub(super) fn key(&mut self, name: &str) -> i64 {
        match &self.last {
            Some((last, key)) if last == name => *key,
            _ => {
                let key = key_of(name);
                self.last = Some((name.to_string(), key));
                key
            }
        }
    }
}

#[derive(FromRow)]
struct MessageRow {
    message_id: Uuid,
    tenant_id: String,
    project_id: String,
    message_key: String,
    priority: i16,
    published_at: Timestamp,
    attributes: Json<BTreeMap<String, String>>,
    payload: Vec<u8>,
}

impl MessageRow {
    fn into_message(self, topic: &Topic) -> Result<Message, sqlx::Error> {
        let row = self;
        // The CHECK constraint admits only known ranks, so this fails only if the schema
        // and the code disagree.
        let priority = Priority::from_rank(row.priority).ok_or_else(|| {
            sqlx::Error::Decode(
                format!(
                    "unknown priority rank {} in messaging.messages",
                    row.priority
                )
                .into(),
            )
        })?;
        Ok(Message {
            message_id: row.message_id,
            tenant_id: row.tenant_id.into(),
            project_id: row.project_id.into(),
            topic: topic.shared(),
            key: row.message_key.into(),
            priority,
            published_at: row.published_at,
            attributes: Attributes::from_map(&row.attributes.0),
            payload: Payload::from_bytes(&row.payload),
        })
    }
}

/// Reads a leased message of `topic` from a claim's row.
pub(super) fn delivery_from_row(topic: &Topic, row: &PgRow) -> Result<Delivery, sqlx::Error> {
    let message = MessageRow::from_row(row)?.into_message(topic)?;
    let ack_id: Uuid = row.try_get("ack_id")?;
    let attempt: i32 = row.try_get("delivery_attempt")?;
    Ok(Delivery {
        message: Arc::new(message),
        ack_id,
        delivery_attempt: u32::try_from(attempt).unwrap_or(0),
    })
}

/// A batch as one array per column, for `unnest`.
pub(super) struct Columns {
    topic: String,
    topic_key: i64,
    published_at: Timestamp,
    ids: Vec<Uuid>,
    tenants: Vec<String>,
    tenant_keys: Vec<i64>,
    projects: Vec<String>,
    project_keys: Vec<i64>,
    keys: Vec<String>,
    priorities: Vec<i16>,
    attributes: Vec<String>,
    payloads: Vec<Vec<u8>>,
    visible_at: Vec<Timestamp>,
}

impl Columns {
    /// Splits messages of one topic and one publish time into columns.
    pub(super) fn of(topic: &Topic, messages: &[NewMessage]) -> Self {
        let published_at = messages
            .first()
            .map_or(Timestamp::EPOCH, |new| new.message.published_at);
        let mut columns = Columns {
            topic: topic.to_string(),
            topic_key: key_of(topic.as_str()),
            published_at,
            ids: Vec::with_capacity(messages.len()),
            tenants: Vec::with_capacity(messages.len()),
            tenant_keys: Vec::with_capacity(messages.len()),
            projects: Vec::with_capacity(messages.len()),
            project_keys: Vec::with_capacity(messages.len()),
            keys: Vec::with_capacity(messages.len()),
            priorities: Vec::with_capacity(messages.len()),
            attributes: Vec::with_capacity(messages.len()),
            payloads: Vec::with_capacity(messages.len()),
            visible_at: Vec::with_capacity(messages.len()),
        };
        let (mut tenant_keys, mut project_keys) = (KeyCache::default(), KeyCache::default());
        for new in messages {
            let message = &new.message;
            columns.ids.push(message.message_id);
            columns
                .tenant_keys
                .push(tenant_keys.key(&message.tenant_id));
            columns
                .project_keys
                .push(project_keys.key(&message.project_id));
            columns.tenants.push(message.tenant_id.to_string());
            columns.projects.push(message.project_id.to_string());
            columns.keys.push(message.key.to_string());
            columns.priorities.push(message.priority.rank());
            columns
                .attributes
                .push(message.attributes.as_json().to_string());
            columns.payloads.push(message.payload.to_bytes());
            columns.visible_at.push(new.visible_at);
        }
        columns
    }

    pub(super) fn bind<'q>(
        &'q self,
        query: Query<'q, Postgres, PgArguments>,
    ) -> Query<'q, Postgres, PgArguments> {
        query
            .bind(&self.ids)
            .bind(&self.topic)
            .bind(&self.tenants)
            .bind(&self.projects)
            .bind(&self.keys)
            .bind(&self.priorities)
            .bind(self.published_at)
            .bind(&self.attributes)
            .bind(&self.payloads)
            .bind(&self.visible_at)
            .bind(self.topic_key)
            .bind(&self.tenant_keys)
            .bind(&self.project_keys)
    }
}

pub(super) fn counts_from_row(row: &PgRow) -> Result<TopicCounts, sqlx::Error> {
    let count = |name: &str| -> Result<u64, sqlx::Error> {
        let value: i64 = row.try_get(name)?;
        Ok(u64::try_from(value).unwrap_or(0))
    };
    Ok(TopicCounts {
        ready: count("ready")?,
        leased: count("leased")?,
        delayed: count("delayed")?,
        oldest_ready: row.try_get("oldest_ready")?,
    })
}
