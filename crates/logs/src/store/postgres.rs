//! Delivered events in the `logs` schema: batched inserts, recent reads, retention.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use platform::Timestamp;
use sqlx::types::Json;
use sqlx::types::time::OffsetDateTime;
use sqlx::{FromRow, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{LogStore, StoreError};
use crate::model::{Batch, Fields, Level, LogEvent, LogRecord, RecentQuery, RecordRef, Text};
use crate::sink::{Sink, SinkError};

/// Events in Postgres; every replica writes and reads the same table.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Uses a pool whose database has the migrations applied.
    pub fn new(pool: PgPool) -> Self {
        PostgresStore { pool }
    }
}

/// One column per array, so that a delivery of any size is a single INSERT.
#[derive(Default)]
struct Columns<'a> {
    origins: Vec<Uuid>,
    sequences: Vec<i64>,
    sources: Vec<&'a str>,
    severities: Vec<i16>,
    messages: Vec<&'a str>,
    fields: Vec<String>,
    event_times: Vec<OffsetDateTime>,
    received_ats: Vec<OffsetDateTime>,
}

impl<'a> Columns<'a> {
    fn from_batches(batches: &'a [Arc<Batch>]) -> Result<Self, serde_json::Error> {
        let total: usize = batches.iter().map(|batch| batch.len()).sum();
        let mut columns = Columns {
            origins: Vec::with_capacity(total),
            sequences: Vec::with_capacity(total),
            sources: Vec::with_capacity(total),
            severities: Vec::with_capacity(total),
            messages: Vec::with_capacity(total),
            fields: Vec::with_capacity(total),
            event_times: Vec::with_capacity(total),
            received_ats: Vec::with_capacity(total),
        };
        for batch in batches {
            for record in batch.records() {
                let event = record.event;
                columns.origins.push(batch.origin);
                // Sequences start at 1 and grow by one per event; i64 lasts for ever.
                columns.sequences.push(record.sequence as i64);
                columns.sources.push(event.source.as_str());
                columns.severities.push(event.level.severity_number());
                columns.messages.push(event.message.as_str());
                columns.fields.push(serde_json::to_string(&event.fields)?);
                columns.event_times.push(event.timestamp.as_datetime());
                columns.received_ats.push(record.received_at.as_datetime());
            }
        }
        Ok(columns)
    }
}

#[async_trait]
impl Sink for PostgresStore {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn write(&self, batches: &[Arc<Batch>]) -> Result<(), SinkError> {
        let columns = Columns::from_batches(batches)?;
        // A retry after a failure that happened past the commit finds its rows present:
        // (origin, sequence) is the primary key, so the repeat inserts nothing.
        sqlx::query(
            "INSERT INTO logs.events \
             (origin, sequence, source, severity, message, fields, event_time, received_at) \
             SELECT origin, sequence, source, severity, message, fields::jsonb, event_time, received_at \
             FROM UNNEST($1::uuid[], $2::bigint[], $3::text[], $4::smallint[], $5::text[], \
                         $6::text[], $7::timestamptz[], $8::timestamptz[]) \
               AS delivery (origin, sequence, source, severity, message, fields, event_time, received_at) \
             ON CONFLICT (origin, sequence) DO NOTHING",
        )
        .bind(&columns.origins)
        .bind(&columns.sequences)
        .bind(&columns.sources)
        .bind(&columns.severities)
        .bind(&columns.messages)
        .bind(&columns.fields)
        .bind(&columns.event_times)
        .bind(&columns.received_ats)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[derive(FromRow)]
struct EventRow {
    source: String,
    severity: i16,
    message: String,
    fields: Json<BTreeMap<String, String>>,
    event_time: Timestamp,
    received_at: Timestamp,
    sequence: i64,
}

impl TryFrom<EventRow> for LogRecord {
    type Error = sqlx::Error;

    fn try_from(row: EventRow) -> Result<Self, sqlx::Error> {
        // The CHECK constraint admits only the four severities, so this fails only if the
        // schema and the code disagree.
        let level = Level::from_severity_number(row.severity).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown severity {} in logs.events", row.severity).into())
        })?;
        let fields = row
            .fields
            .0
            .into_iter()
            .map(|(name, value)| (Text::from(name), Text::from(value)))
            .collect();
        Ok(LogRecord {
            event: LogEvent {
                source: Text::from(row.source),
                level,
                message: Text::from(row.message),
                fields: Fields::from_pairs(fields),
                timestamp: row.event_time,
            },
            received_at: row.received_at,
            sequence: row.sequence as u64,
        })
    }
}

#[async_trait]
impl LogStore for PostgresStore {
    async fn recent(
        &self,
        query: &RecentQuery,
        visit: &mut (dyn for<'r> FnMut(RecordRef<'r>) + Send),
    ) -> Result<(), StoreError> {
        let mut sql = QueryBuilder::<Postgres>::new(
            "SELECT source, severity, message, fields, event_time, received_at, sequence \
             FROM logs.events WHERE TRUE",
        );
        if let Some(source) = &query.source {
            sql.push(" AND source = ").push_bind(source.clone());
        }
        if let Some(level) = query.min_level {
            sql.push(" AND severity >= ")
                .push_bind(level.severity_number());
        }
        sql.push(" ORDER BY received_at DESC, origin DESC, sequence DESC LIMIT ")
            .push_bind(i64::try_from(query.limit).unwrap_or(i64::MAX));

        let rows: Vec<EventRow> = sql.build_query_as().fetch_all(&self.pool).await?;
        let records = rows
            .into_iter()
            .map(LogRecord::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        for record in records.iter().rev() {
            visit(record.as_ref());
        }
        Ok(())
    }

    async fn delete_received_before(
        &self,
        cutoff: Timestamp,
        limit: usize,
    ) -> Result<u64, StoreError> {
        // SKIP LOCKED lets replicas sweep at the same time without waiting on each other.
        let deleted = sqlx::query(
            "DELETE FROM logs.events WHERE (origin, sequence) IN ( \
               SELECT origin, sequence FROM logs.events WHERE received_at < $1 \
               ORDER BY received_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(cutoff)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?;
        Ok(deleted.rows_affected())
    }
}
