//! Roll-ups flushed to the `metrics` schema, one row per series, bucket and replica.
//!
//! Each store has its own instance id. A flush upserts the whole state of each changed
//! bucket, not a delta, so a retried flush never counts twice. Reads merge the rows of
//! every other instance with this process's roll-ups, which contain everything this
//! instance recorded within the retention, flushed or not. So a replica reads its own
//! samples at once and never counts its own rows a second time. A restarted process gets
//! a new id, so the rows of its earlier run are read like another replica's.

use std::collections::HashMap;

use async_trait::async_trait;
use platform::Timestamp;
use sqlx::{FromRow, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{MetricsStore, StoreError};
use crate::aggregate::Aggregate;
use crate::model::{Batch, SeriesFilter};
use crate::rollups::{FlushRow, Rollups};
use crate::sketch::Sketch;

/// Rows written by one statement.
const FLUSH_CHUNK_ROWS: usize = 1000;

/// Roll-ups in memory, flushed to Postgres and merged with other replicas' on read.
pub struct PostgresStore {
    pool: PgPool,
    instance_id: Uuid,
    rollups: Rollups,
    /// Keeps flushes in order, so an older state never overwrites a newer one.
    flush_lock: tokio::sync::Mutex<()>,
}

impl PostgresStore {
    /// Uses a pool whose database has the migrations applied; the rollups must track
    /// flushes.
    pub fn new(pool: PgPool, rollups: Rollups) -> Self {
        let instance_id = platform::ids::new_id();
        tracing::info!(%instance_id, "metrics store instance started");
        PostgresStore {
            pool,
            instance_id,
            rollups,
            flush_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Statistics per series from every other instance's rows from `from` on.
    async fn read_others(
        &self,
        filter: &SeriesFilter,
        series: Option<&str>,
        from: Timestamp,
    ) -> Result<HashMap<String, Aggregate>, StoreError> {
        let mut query = QueryBuilder::<Postgres>::new(
            "SELECT series, sum(sample_count)::int8 AS sample_count, sum(value_sum) AS value_sum, \
             min(value_min) AS value_min, max(value_max) AS value_max, max(last_at) AS last_at, \
             array_agg(sketch) AS sketches FROM metrics.buckets WHERE instance_id <> ",
        );
        query
            .push_bind(self.instance_id)
            .push(" AND bucket_start >= ")
            .push_bind(from);
        if let Some(series) = series {
            query.push(" AND series = ").push_bind(series.to_string());
        }
        if let Some(namespace) = &filter.namespace {
            query.push(" AND namespace = ").push_bind(namespace.clone());
        }
        if let Some(name) = &filter.name {
            query.push(" AND name = ").push_bind(name.clone());
        }
        query.push(" GROUP BY series");

        let rows: Vec<SeriesRow> = query.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter().map(SeriesRow::into_aggregate).collect()
    }

    async fn upsert(&self, rows: &[FlushRow]) -> Result<(), sqlx::Error> {
        let timeline = self.rollups.timeline();
        let mut columns = FlushColumns::with_capacity(rows.len());
        for row in rows {
            let key = row.key();
            let aggregate = &row.aggregate;
            columns.series.push(key.identity);
            columns.namespaces.push(key.namespace());
            columns.names.push(key.name());
            columns.starts.push(timeline.start_of(row.bucket));
            columns
                .counts
                .push(i64::try_from(aggregate.count).unwrap_or(i64::MAX));
            columns.sums.push(aggregate.sum);
            columns.mins.push(aggregate.min);
            columns.maxes.push(aggregate.max);
            columns.lasts.push(
                Timestamp::from_unix_micros(aggregate.last_micros).unwrap_or(Timestamp::EPOCH),
            );
            columns.sketches.push(aggregate.sketch.encode());
        }

        sqlx::query(
            "INSERT INTO metrics.buckets \
             (series, namespace, name, bucket_start, instance_id, sample_count, value_sum, \
              value_min, value_max, last_at, sketch) \
             SELECT r.series, r.namespace, r.name, r.bucket_start, $1, r.sample_count, \
                    r.value_sum, r.value_min, r.value_max, r.last_at, r.sketch \
             FROM UNNEST($2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::int8[], \
                         $7::float8[], $8::float8[], $9::float8[], $10::timestamptz[], $11::bytea[]) \
                  AS r(series, namespace, name, bucket_start, sample_count, value_sum, value_min, \
                       value_max, last_at, sketch) \
             ON CONFLICT (series, bucket_start, instance_id) DO UPDATE SET \
               sample_count = EXCLUDED.sample_count, value_sum = EXCLUDED.value_sum, \
               value_min = EXCLUDED.value_min, value_max = EXCLUDED.value_max, \
               last_at = EXCLUDED.last_at, sketch = EXCLUDED.sketch",
        )
        .bind(self.instance_id)
        .bind(&columns.series)
        .bind(&columns.namespaces)
        .bind(&columns.names)
        .bind(&columns.starts)
        .bind(&columns.counts)
        .bind(&columns.sums)
        .bind(&columns.mins)
        .bind(&columns.maxes)
        .bind(&columns.lasts)
        .bind(&columns.sketches)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// The columns of a flush, one array per column for `UNNEST`.
struct FlushColumns<'a> {
    series: Vec<&'a str>,
    namespaces: Vec<&'a str>,
    names: Vec<&'a str>,
    starts: Vec<Timestamp>,
    counts: Vec<i64>,
    sums: Vec<f64>,
    mins: Vec<f64>,
    maxes: Vec<f64>,
    lasts: Vec<Timestamp>,
    sketches: Vec<Vec<u8>>,
}

impl FlushColumns<'_> {
    fn with_capacity(rows: usize) -> Self {
        FlushColumns {
            series: Vec::with_capacity(rows),
            namespaces: Vec::with_capacity(rows),
            names: Vec::with_capacity(rows),
            starts: Vec::with_capacity(rows),
            counts: Vec::with_capacity(rows),
            sums: Vec::with_capacity(rows),
            mins: Vec::with_capacity(rows),
            maxes: Vec::with_capacity(rows),
            lasts: Vec::with_capacity(rows),
            sketches: Vec::with_capacity(rows),
        }
    }
}

/// One series' rows merged by Postgres, sketches still encoded.
#[derive(FromRow)]
struct SeriesRow {
    series: String,
    sample_count: i64,
    value_sum: f64,
    value_min: f64,
    value_max: f64,
    last_at: Timestamp,
    sketches: Vec<Vec<u8>>,
}

impl SeriesRow {
    fn into_aggregate(self) -> Result<(String, Aggregate), StoreError> {
        let mut sketch = Sketch::default();
        for bytes in &self.sketches {
            match Sketch::decode(bytes) {
                Ok(part) => sketch.merge(&part),
                Err(error) => {
                    return Err(StoreError::Corrupt {
                        series: self.series,
                        source: error.into(),
                    });
                }
            }
        }
        let count = u64::try_from(self.sample_count).unwrap_or(0);
        if sketch.count() != count {
            return Err(StoreError::Corrupt {
                series: self.series,
                source: format!(
                    "sample_count {count} differs from the sketches' count {}",
                    sketch.count()
                )
                .into(),
            });
        }

        let aggregate = Aggregate {
            count,
            sum: self.value_sum,
            min: self.value_min,
            max: self.value_max,
            last_micros: self.last_at.unix_micros(),
            sketch,
        };
        Ok((self.series, aggregate))
    }
}

#[async_trait]
impl MetricsStore for PostgresStore {
    async fn record(&self, batch: &Batch) -> Result<(), StoreError> {
        Ok(self.rollups.record(batch)?)
    }

    async fn record_series(&self, batch: &Batch, from: Timestamp) -> Result<Aggregate, StoreError> {
        let Some(sample) = batch.samples().first() else {
            return Ok(Aggregate::default());
        };
        let identity = batch.identity(sample).identity;
        let others = self
            .read_others(&SeriesFilter::default(), Some(identity), from)
            .await?;

        self.rollups.record(batch)?;
        let mut aggregate = others.into_values().next().unwrap_or_default();
        let from = self.rollups.timeline().index_of(from);
        self.rollups
            .summarize_series(identity, from, &mut aggregate);
        Ok(aggregate)
    }

    async fn summarize(
        &self,
        filter: &SeriesFilter,
        from: Timestamp,
    ) -> Result<HashMap<String, Aggregate>, StoreError> {
        let mut merged = self.read_others(filter, None, from).await?;
        let from = self.rollups.timeline().index_of(from);
        self.rollups.summarize(filter, from, &mut merged);
        Ok(merged)
    }

    async fn expire(&self, before: Timestamp) -> Result<(), StoreError> {
        let dropped = self
            .rollups
            .expire(self.rollups.timeline().index_of(before));
        let deleted = sqlx::query("DELETE FROM metrics.buckets WHERE bucket_start < $1")
            .bind(before)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if dropped > 0 || deleted > 0 {
            tracing::debug!(
                dropped_series = dropped,
                deleted_rows = deleted,
                "expired buckets"
            );
        }
        Ok(())
    }

    async fn flush(&self) -> Result<usize, StoreError> {
        let _in_order = self.flush_lock.lock().await;
        let rows = self.rollups.take_unflushed();
        for (index, chunk) in rows.chunks(FLUSH_CHUNK_ROWS).enumerate() {
            if let Err(error) = self.upsert(chunk).await {
                self.rollups
                    .restore_unflushed(&rows[index * FLUSH_CHUNK_ROWS..]);
                return Err(error.into());
            }
        }
        Ok(rows.len())
    }

    fn backlog(&self) -> Vec<(&'static str, u64)> {
        let (series, buckets) = self.rollups.unflushed_counts();
        vec![("unflushed_series", series), ("unflushed_buckets", buckets)]
    }
}
