//! Delivered events in the `logs` schema: batched inserts, recent reads, retention.

mod copy;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use platform::Timestamp;
use sqlx::postgres::PgPoolCopyExt;
use sqlx::types::Json;
use sqlx::types::time::OffsetDateTime;
use sqlx::{FromRow, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{LogStore, StoreError};
use crate::model::{Batch, Fields, Level, LogEvent, LogRecord, RecentQuery, RecordRef, Text};
use crate::sink::{Sink, SinkError};

/// Events per delivery: one `COPY` of about 3 MiB for events of 200 bytes. Larger
/// deliveries spread the cost of a statement and its commit over more events.
const DELIVERY_EVENTS: usize = 16_384;

/// Connections one delivery loads its rows over at once, each with a `COPY` of its own
/// part. While one connection waits for its commit, the other keeps Postgres busy. Reads
/// order events by (received_at, origin, sequence), so the order in which the parts
/// commit does not matter.
const WRITERS: usize = 2;

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

/// Bytes reserved per event of a delivery, about the size of a small event's row.
const ROW_BYTES_GUESS: usize = 192;

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

impl PostgresStore {
    /// Loads the rows with one `COPY`, in one transaction.
    async fn copy(&self, rows: &[u8]) -> Result<u64, sqlx::Error> {
        let mut copy = self.pool.copy_in_raw(copy::COPY_EVENTS).await?;
        if let Err(error) = copy.send(rows).await {
            // Ends the COPY, so that the connection returns to the pool ready for reuse.
            if let Err(abort) = copy.abort("sending the rows failed").await {
                tracing::debug!(error = %abort, "aborting the log events COPY failed");
            }
            return Err(error);
        }
        copy.finish().await
    }

    /// Inserts the events, skipping those already stored: the path for a delivery that
    /// an earlier attempt stored in part or whole.
    async fn insert_missing(&self, batches: &[Arc<Batch>]) -> Result<u64, SinkError> {
        let columns = Columns::from_batches(batches)?;
        let inserted = sqlx::query(
            "INSERT INTO logs.events \
             (origin, sequence, source, severity, message, fields, event_time, received_at) \
             SELECT origin, sequence, source, severity, message, fields::jsonb, event_time, received_at \
             FROM UNNEST($1::uuid[], $2::bigint[], $3::text[], $4::smallint[], $5::text[], \
                         $6::text[], $7::timestamptz[], $8::timestamptz[]) \
               AS delivery (origin, sequence, source, severity, message, fields, event_time, received_at) \
             ON CONFLICT DO NOTHING",
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
        Ok(inserted.rows_affected())
    }
}

#[async_trait]
impl Sink for PostgresStore {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn max_delivery_events(&self) -> usize {
        DELIVERY_EVENTS
    }

    async fn write(&self, batches: &[Arc<Batch>]) -> Result<(), SinkError> {
        let parts = split_evenly(batches, WRITERS);
        futures::future::try_join_all(parts.into_iter().map(|part| self.write_part(part))).await?;
        Ok(())
    }
}

/// Splits `batches` into at most `parts` runs of whole batches with about as many events
/// each.
fn split_evenly(batches: &[Arc<Batch>], parts: usize) -> Vec<&[Arc<Batch>]> {
    let total: usize = batches.iter().map(|batch| batch.len()).sum();
    let target = total.div_ceil(parts.max(1)).max(1);
    let mut runs = Vec::with_capacity(parts);
    let mut start = 0;
    let mut events = 0;
    for (index, batch) in batches.iter().enumerate() {
        events += batch.len();
        if events >= target {
            runs.push(&batches[start..=index]);
            start = index + 1;
            events = 0;
        }
    }
    if start < batches.len() {
        runs.push(&batches[start..]);
    }
    runs
}

impl PostgresStore {
    /// Stores one part of a delivery with a `COPY`, or, when an earlier attempt stored
    /// some of its events, with an insert that skips them.
    async fn write_part(&self, batches: &[Arc<Batch>]) -> Result<(), SinkError> {
        let events: usize = batches.iter().map(|batch| batch.len()).sum();
        let mut rows = Vec::with_capacity(events * ROW_BYTES_GUESS);
        copy::encode(batches, &mut rows);
        match self.copy(&rows).await {
            Ok(_) => Ok(()),
            // A retry after a failure past the commit finds its rows present, and COPY
            // cannot skip them, so the delivery is inserted again skipping what exists.
            Err(error) if platform::db::unique_violation(&error).is_some() => {
                let inserted = self.insert_missing(batches).await?;
                tracing::info!(
                    events,
                    inserted,
                    "log events were partly stored by an earlier attempt; stored the rest"
                );
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
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
            "DELETE FROM logs.events WHERE (received_at, origin, sequence) IN ( \
               SELECT received_at, origin, sequence FROM logs.events WHERE received_at < $1 \
               ORDER BY received_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(cutoff)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?;
        Ok(deleted.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batches(sizes: &[usize]) -> Vec<Arc<Batch>> {
        let event = crate::model::LogEvent {
            source: Text::from("api"),
            level: Level::Info,
            message: Text::from("m"),
            fields: Fields::default(),
            timestamp: Timestamp::EPOCH,
        };
        sizes
            .iter()
            .map(|&size| {
                Arc::new(Batch {
                    origin: Uuid::nil(),
                    received_at: Timestamp::EPOCH,
                    first_sequence: 1,
                    events: vec![event.clone(); size],
                })
            })
            .collect()
    }

    fn part_sizes(sizes: &[usize], parts: usize) -> Vec<usize> {
        let batches = batches(sizes);
        split_evenly(&batches, parts)
            .iter()
            .map(|part| part.iter().map(|batch| batch.len()).sum())
            .collect()
    }

    #[test]
    fn split_keeps_batches_whole_and_balanced() {
        assert_eq!(part_sizes(&[1000, 1000, 1000, 1000], 2), [2000, 2000]);
        assert_eq!(part_sizes(&[1000, 1000, 1000], 2), [2000, 1000]);
        assert_eq!(part_sizes(&[10, 1, 1, 1], 2), [10, 3]);
        assert_eq!(part_sizes(&[5], 2), [5]);
        assert_eq!(part_sizes(&[1, 1, 1], 1), [3]);
        assert!(part_sizes(&[], 2).is_empty());
    }
}
