//! Conversions between rows and domain types, and batches split into column arrays.

use std::collections::BTreeMap;

use platform::Timestamp;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::types::Json;
use sqlx::{FromRow, Postgres, Row};
use uuid::Uuid;

use crate::model::{Delivery, Message, Priority, Topic, TopicCounts};
use crate::store::NewMessage;

#[derive(FromRow)]
struct MessageRow {
    message_id: Uuid,
    topic: String,
    tenant_id: String,
    project_id: String,
    message_key: String,
    priority: i16,
    published_at: Timestamp,
    attributes: Json<BTreeMap<String, String>>,
    payload: Vec<u8>,
}

impl TryFrom<MessageRow> for Message {
    type Error = sqlx::Error;

    fn try_from(row: MessageRow) -> Result<Self, sqlx::Error> {
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
            tenant_id: row.tenant_id,
            project_id: row.project_id,
            topic: row.topic,
            key: row.message_key,
            priority,
            published_at: row.published_at,
            attributes: row.attributes.0,
            payload: row.payload,
        })
    }
}

pub(super) fn delivery_from_row(row: &PgRow) -> Result<Delivery, sqlx::Error> {
    let message = Message::try_from(MessageRow::from_row(row)?)?;
    let ack_id: Uuid = row.try_get("ack_id")?;
    let attempt: i32 = row.try_get("delivery_attempt")?;
    Ok(Delivery {
        message,
        ack_id,
        delivery_attempt: u32::try_from(attempt).unwrap_or(0),
    })
}

/// A batch as one array per column, for `unnest`.
pub(super) struct Columns {
    topic: String,
    published_at: Timestamp,
    ids: Vec<Uuid>,
    tenants: Vec<String>,
    projects: Vec<String>,
    keys: Vec<String>,
    priorities: Vec<i16>,
    attributes: Vec<Json<BTreeMap<String, String>>>,
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
            published_at,
            ids: Vec::with_capacity(messages.len()),
            tenants: Vec::with_capacity(messages.len()),
            projects: Vec::with_capacity(messages.len()),
            keys: Vec::with_capacity(messages.len()),
            priorities: Vec::with_capacity(messages.len()),
            attributes: Vec::with_capacity(messages.len()),
            payloads: Vec::with_capacity(messages.len()),
            visible_at: Vec::with_capacity(messages.len()),
        };
        for new in messages {
            let message = &new.message;
            columns.ids.push(message.message_id);
            columns.tenants.push(message.tenant_id.clone());
            columns.projects.push(message.project_id.clone());
            columns.keys.push(message.key.clone());
            columns.priorities.push(message.priority.rank());
            columns.attributes.push(Json(message.attributes.clone()));
            columns.payloads.push(message.payload.clone());
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
