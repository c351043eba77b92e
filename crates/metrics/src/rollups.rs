//! Roll-up buckets of every series in process memory, sharded so that concurrent batches
//! rarely wait for each other.
//!
//! Series live in 64 shards, each a map behind a read-write lock, and each series has its
//! own mutex. Recording a batch read-locks the shards it touches and then locks one series
//! at a time. Only creating and expiring series take a shard's write lock, one shard at a
//! time, so readers that lock shards in ascending order never wait on each other in a
//! cycle.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock, RwLockReadGuard};

use crate::aggregate::Aggregate;
use crate::model::{Batch, SeriesFilter, SeriesKey, Timeline};

const SHARDS: usize = 64;

/// How often a batch retries when a sweep removes a series between its lookups.
const MAX_ROUNDS: usize = 8;

type Shard = HashMap<Box<str>, Series>;

/// Reasons a batch was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The batch needs a new series and the process has reached its maximum. Series whose
    /// buckets all expired are dropped at the next sweep, at most `retry_after` away.
    #[error(
        "the collector has reached its maximum of {max} series (METRICS_MAX_SERIES); samples for existing series are still accepted"
    )]
    SeriesLimit { max: usize, retry_after: Duration },
    /// Expiry kept removing series while the batch was being recorded.
    #[error("series changed concurrently too often; retry the request")]
    Contended,
}

/// The buckets of one series.
struct Series {
    namespace_len: u8,
    name_len: u8,
    state: Mutex<SeriesState>,
}

#[derive(Default)]
struct SeriesState {
    /// Ascending by index.
    buckets: VecDeque<Bucket>,
    /// Indexes of buckets changed since their last flush, when flushes are tracked.
    unflushed: Vec<i64>,
}

struct Bucket {
    index: i64,
    aggregate: Aggregate,
    unflushed: bool,
}

/// A bucket's state taken for a flush.
#[derive(Clone, Debug)]
pub struct FlushRow {
    pub identity: String,
    pub namespace_len: u8,
    pub name_len: u8,
    pub bucket: i64,
    pub aggregate: Aggregate,
}

impl FlushRow {
    /// Returns the row's series identity with its parts.
    pub fn key(&self) -> SeriesKey<'_> {
        SeriesKey {
            identity: &self.identity,
            namespace_len: self.namespace_len,
            name_len: self.name_len,
        }
    }
}

/// Every series' buckets held by this process.
pub struct Rollups {
    timeline: Timeline,
    max_series: usize,
    /// Series in the maps plus slots reserved by batches about to create series.
    series_count: AtomicUsize,
    track_flushes: bool,
    hasher: RandomState,
    shards: Box<[RwLock<Shard>]>,
}

impl SeriesState {
    fn bucket_mut(&mut self, index: i64) -> &mut Bucket {
        let position = match self.buckets.back() {
            Some(last) if last.index == index => self.buckets.len() - 1,
            Some(last) if last.index < index => self.push_bucket(self.buckets.len(), index),
            None => self.push_bucket(0, index),
            Some(_) => match self
                .buckets
                .binary_search_by_key(&index, |bucket| bucket.index)
            {
                Ok(position) => position,
                Err(position) => self.push_bucket(position, index),
            },
        };
        &mut self.buckets[position]
    }

    fn push_bucket(&mut self, position: usize, index: i64) -> usize {
        let bucket = Bucket {
            index,
            aggregate: Aggregate::default(),
            unflushed: false,
        };
        self.buckets.insert(position, bucket);
        position
    }

    fn record(&mut self, index: i64, value: f64, at_micros: i64, track_flushes: bool) {
        let bucket = self.bucket_mut(index);
        bucket.aggregate.add(value, at_micros);
        if track_flushes && !bucket.unflushed {
            bucket.unflushed = true;
            self.unflushed.push(index);
        }
    }

    /// Merges the buckets from index `from` on into `into`.
    fn merge_from(&self, from: i64, into: &mut Aggregate) {
        let first = self.buckets.partition_point(|bucket| bucket.index < from);
        for bucket in self.buckets.range(first..) {
            into.merge(&bucket.aggregate);
        }
    }

    fn mark_unflushed(&mut self, index: i64) {
        if let Ok(position) = self
            .buckets
            .binary_search_by_key(&index, |bucket| bucket.index)
        {
            let bucket = &mut self.buckets[position];
            if !bucket.unflushed {
                bucket.unflushed = true;
                self.unflushed.push(index);
            }
        }
    }
}

impl Rollups {
    /// Creates an empty set of series. With `track_flushes`, changed buckets are remembered
    /// until [`Rollups::take_unflushed`] takes them.
    pub fn new(timeline: Timeline, max_series: usize, track_flushes: bool) -> Self {
        Rollups {
            timeline,
            max_series,
            series_count: AtomicUsize::new(0),
            track_flushes,
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
        }
    }

    /// Returns the bucket timeline.
    pub fn timeline(&self) -> Timeline {
        self.timeline
    }

    fn shard_of(&self, identity: &str) -> usize {
        (self.hasher.hash_one(identity) % SHARDS as u64) as usize
    }

    /// Records every sample of the batch, or none when new series would pass the cap.
    pub fn record(&self, batch: &Batch) -> Result<(), RecordError> {
        let shard_of: Vec<u8> = batch
            .samples()
            .iter()
            .map(|sample| self.shard_of(batch.identity(sample).identity) as u8)
            .collect();
        let touched = shard_of.iter().fold(0u64, |mask, &shard| mask | 1 << shard);

        for _ in 0..MAX_ROUNDS {
            // `from_fn` visits indexes in ascending order, which rules out lock cycles.
            let guards: [Option<RwLockReadGuard<'_, Shard>>; SHARDS] =
                std::array::from_fn(|shard| {
                    (touched & (1 << shard) != 0).then(|| self.shards[shard].read())
                });
            let mut resolved = Vec::with_capacity(batch.len());
            let mut missing = Vec::new();
            for (sample, &shard) in batch.samples().iter().zip(&shard_of) {
                let identity = batch.identity(sample).identity;
                let map = guards[usize::from(shard)].as_ref();
                match map.and_then(|map| map.get(identity)) {
                    Some(series) => resolved.push(series),
                    None => missing.push(batch.identity(sample)),
                }
            }

            if missing.is_empty() {
                for (sample, series) in batch.samples().iter().zip(resolved) {
                    let index = self.timeline.index_of_micros(sample.at_micros);
                    series.state.lock().record(
                        index,
                        sample.value,
                        sample.at_micros,
                        self.track_flushes,
                    );
                }
                return Ok(());
            }
            drop(resolved);
            drop(guards);
            self.create_series(&missing)?;
        }
        Err(RecordError::Contended)
    }

    /// Adds empty series for `keys`, reserving their slots first so that a batch past the
    /// cap leaves nothing behind.
    fn create_series(&self, keys: &[SeriesKey<'_>]) -> Result<(), RecordError> {
        let mut seen = HashSet::with_capacity(keys.len());
        let distinct: Vec<SeriesKey<'_>> = keys
            .iter()
            .copied()
            .filter(|key| seen.insert(key.identity))
            .collect();

        let needed = distinct.len();
        self.series_count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |count| {
                count
                    .checked_add(needed)
                    .filter(|&total| total <= self.max_series)
            })
            .map_err(|_| RecordError::SeriesLimit {
                max: self.max_series,
                retry_after: self.timeline.interval(),
            })?;

        let mut unused = 0;
        for key in distinct {
            let mut shard = self.shards[self.shard_of(key.identity)].write();
            if shard.contains_key(key.identity) {
                // Another batch created it meanwhile.
                unused += 1;
                continue;
            }
            let series = Series {
                namespace_len: key.namespace_len,
                name_len: key.name_len,
                state: Mutex::default(),
            };
            shard.insert(key.identity.into(), series);
        }
        self.series_count.fetch_sub(unused, Ordering::AcqRel);
        Ok(())
    }

    /// Merges the buckets from index `from` on of every series that passes `filter` into
    /// `into`, keyed by identity.
    pub fn summarize(
        &self,
        filter: &SeriesFilter,
        from: i64,
        into: &mut HashMap<String, Aggregate>,
    ) {
        for shard in self.shards.iter() {
            let shard = shard.read();
            for (identity, series) in shard.iter() {
                let key = series.key(identity);
                if !filter.matches(key.namespace(), key.name()) {
                    continue;
                }
                let mut aggregate = Aggregate::default();
                series.state.lock().merge_from(from, &mut aggregate);
                if aggregate.count > 0 {
                    into.entry(identity.to_string())
                        .or_default()
                        .merge(&aggregate);
                }
            }
        }
    }

    /// Merges one series' buckets from index `from` on into `into`.
    pub fn summarize_series(&self, identity: &str, from: i64, into: &mut Aggregate) {
        let shard = self.shards[self.shard_of(identity)].read();
        if let Some(series) = shard.get(identity) {
            series.state.lock().merge_from(from, into);
        }
    }

    /// Drops buckets before index `before` and series left without buckets; returns how
    /// many series were dropped.
    pub fn expire(&self, before: i64) -> usize {
        let mut dropped = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.write();
            let before_count = shard.len();
            shard.retain(|_, series| {
                let state = series.state.get_mut();
                while state
                    .buckets
                    .front()
                    .is_some_and(|bucket| bucket.index < before)
                {
                    state.buckets.pop_front();
                }
                !state.buckets.is_empty()
            });
            dropped += before_count - shard.len();
        }
        self.series_count.fetch_sub(dropped, Ordering::AcqRel);
        dropped
    }

    /// Number of series held.
    pub fn series_count(&self) -> usize {
        self.series_count.load(Ordering::Acquire)
    }

    /// Takes the state of every bucket changed since its last flush and marks it flushed.
    /// A caller whose write fails hands the rows back with [`Rollups::restore_unflushed`].
    pub fn take_unflushed(&self) -> Vec<FlushRow> {
        let mut rows = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.read();
            for (identity, series) in shard.iter() {
                let mut state = series.state.lock();
                if state.unflushed.is_empty() {
                    continue;
                }
                let indexes = std::mem::take(&mut state.unflushed);
                for index in indexes {
                    let Ok(position) = state.buckets.binary_search_by_key(&index, |b| b.index)
                    else {
                        continue;
                    };
                    let bucket = &mut state.buckets[position];
                    bucket.unflushed = false;
                    rows.push(FlushRow {
                        identity: identity.to_string(),
                        namespace_len: series.namespace_len,
                        name_len: series.name_len,
                        bucket: index,
                        aggregate: bucket.aggregate.clone(),
                    });
                }
            }
        }
        rows
    }

    /// Marks the buckets of rows whose write failed as changed again; buckets expired since
    /// are skipped.
    pub fn restore_unflushed(&self, rows: &[FlushRow]) {
        for row in rows {
            let shard = self.shards[self.shard_of(&row.identity)].read();
            if let Some(series) = shard.get(row.identity.as_str()) {
                series.state.lock().mark_unflushed(row.bucket);
            }
        }
    }

    /// Counts series and buckets changed since their last flush.
    pub fn unflushed_counts(&self) -> (u64, u64) {
        let (mut series_count, mut bucket_count) = (0, 0);
        for shard in self.shards.iter() {
            for series in shard.read().values() {
                let pending = series.state.lock().unflushed.len() as u64;
                if pending > 0 {
                    series_count += 1;
                    bucket_count += pending;
                }
            }
        }
        (series_count, bucket_count)
    }
}

impl Series {
    fn key<'a>(&self, identity: &'a str) -> SeriesKey<'a> {
        SeriesKey {
            identity,
            namespace_len: self.namespace_len,
            name_len: self.name_len,
        }
    }
}

#[cfg(test)]
mod tests {
    use platform::Timestamp;

    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_micros(seconds * 1_000_000).expect("in range")
    }

    fn batch(samples: &[(&str, f64, i64)]) -> Batch {
        let mut batch = Batch::with_capacity(samples.len());
        for &(name, value, seconds) in samples {
            batch.push::<&str>("ns", name, &[], value, at(seconds));
        }
        batch
    }

    fn rollups(max_series: usize, track_flushes: bool) -> Rollups {
        Rollups::new(
            Timeline::new(Duration::from_secs(60)),
            max_series,
            track_flushes,
        )
    }

    fn totals(rollups: &Rollups, from: i64) -> HashMap<String, u64> {
        let mut merged = HashMap::new();
        rollups.summarize(&SeriesFilter::default(), from, &mut merged);
        merged.into_iter().map(|(id, a)| (id, a.count)).collect()
    }

    #[test]
    fn records_into_buckets_by_time() {
        let rollups = rollups(10, false);
        rollups
            .record(&batch(&[
                ("a", 1.0, 0),
                ("a", 2.0, 59),
                ("a", 3.0, 60),
                ("b", 4.0, 125),
            ]))
            .expect("recorded");
        assert_eq!(
            totals(&rollups, 0),
            HashMap::from([("ns.a{}".into(), 3), ("ns.b{}".into(), 1)])
        );
        assert_eq!(
            totals(&rollups, 1),
            HashMap::from([("ns.a{}".into(), 1), ("ns.b{}".into(), 1)])
        );
        assert_eq!(totals(&rollups, 2), HashMap::from([("ns.b{}".into(), 1)]));
    }

    #[test]
    fn late_samples_land_in_their_bucket() {
        let rollups = rollups(10, false);
        rollups
            .record(&batch(&[("a", 1.0, 300), ("a", 1.0, 0), ("a", 1.0, 120)]))
            .expect("recorded");
        let mut aggregate = Aggregate::default();
        rollups.summarize_series("ns.a{}", 2, &mut aggregate);
        assert_eq!(aggregate.count, 2);
    }

    #[test]
    fn series_cap_rejects_whole_batch() {
        let rollups = rollups(2, false);
        rollups
            .record(&batch(&[("a", 1.0, 0), ("b", 1.0, 0)]))
            .expect("within cap");
        let error = rollups
            .record(&batch(&[("a", 1.0, 0), ("c", 1.0, 0)]))
            .unwrap_err();
        assert!(matches!(error, RecordError::SeriesLimit { max: 2, .. }));
        assert_eq!(
            totals(&rollups, 0)["ns.a{}"],
            1,
            "nothing of the batch was recorded"
        );
        assert_eq!(rollups.series_count(), 2);
        rollups
            .record(&batch(&[("a", 1.0, 0), ("a", 2.0, 0)]))
            .expect("existing series");
    }

    #[test]
    fn expiry_drops_buckets_and_empty_series() {
        let rollups = rollups(2, false);
        rollups
            .record(&batch(&[("a", 1.0, 0), ("b", 1.0, 0), ("b", 1.0, 61)]))
            .expect("recorded");
        assert_eq!(rollups.expire(1), 1);
        assert_eq!(rollups.series_count(), 1);
        assert_eq!(totals(&rollups, 0), HashMap::from([("ns.b{}".into(), 1)]));
        rollups
            .record(&batch(&[("c", 1.0, 61)]))
            .expect("a slot was freed");
    }

    #[test]
    fn unflushed_buckets_are_taken_once_and_restorable() {
        let rollups = rollups(10, true);
        rollups
            .record(&batch(&[("a", 1.0, 0), ("a", 1.0, 1), ("a", 1.0, 61)]))
            .expect("recorded");
        assert_eq!(rollups.unflushed_counts(), (1, 2));
        let rows = rollups.take_unflushed();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows.iter().map(|row| row.aggregate.count).sum::<u64>(), 3);
        assert!(rollups.take_unflushed().is_empty());

        rollups.restore_unflushed(&rows);
        rollups.record(&batch(&[("a", 5.0, 2)])).expect("recorded");
        let again = rollups.take_unflushed();
        assert_eq!(again.len(), 2);
        assert_eq!(again.iter().map(|row| row.aggregate.count).sum::<u64>(), 4);
    }

    #[test]
    fn concurrent_batches_and_sweeps_count_exactly() {
        let rollups = rollups(10_000, true);
        let names: Vec<String> = (0..300).map(|i| format!("s{i}")).collect();
        std::thread::scope(|scope| {
            for writer in 0..4 {
                let (rollups, names) = (&rollups, &names);
                scope.spawn(move || {
                    for round in 0..25 {
                        let samples: Vec<(&str, f64, i64)> = (0..100)
                            .map(|i| {
                                (
                                    names[(writer * 31 + round * 7 + i * 3) % 300].as_str(),
                                    1.0,
                                    0,
                                )
                            })
                            .collect();
                        rollups.record(&batch(&samples)).expect("recorded");
                    }
                });
            }
            // Sweeps that only drop empty series race with batches that just created them.
            scope.spawn(|| {
                for _ in 0..200 {
                    rollups.expire(i64::MIN);
                    rollups.take_unflushed();
                }
            });
        });
        let counts = totals(&rollups, 0);
        assert_eq!(counts.values().sum::<u64>(), 4 * 25 * 100);
        assert_eq!(rollups.series_count(), counts.len());
    }

    #[test]
    fn untracked_rollups_keep_no_flush_state() {
        let rollups = rollups(10, false);
        rollups.record(&batch(&[("a", 1.0, 0)])).expect("recorded");
        assert!(rollups.take_unflushed().is_empty());
    }
}
