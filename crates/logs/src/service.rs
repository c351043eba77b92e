//! The pipeline: validation and filtering on ingest, the bounded queue, enrichment,
//! recent reads and retention. Every log pipeline rule lives here, over any store.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use platform::SharedClock;
use platform::server::Workers;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::delivery;
use crate::format::RecordWriter;
use crate::model::{Level, RecentQuery};
use crate::parse::{self, BodyFormat, InvalidInput};
use crate::queue::{Queue, QueueFull};
use crate::sink::Sink;
use crate::store::{LogStore, StoreError};

/// Failure of a pipeline operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The body or a parameter is invalid; nothing was accepted.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// The batch does not fit into the queue; nothing was accepted.
    #[error("{}", describe_full(.0))]
    QueueFull(QueueFull),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn describe_full(full: &QueueFull) -> String {
    match full.batch {
        Some(batch) if batch > full.capacity => format!(
            "a batch of {batch} events can never fit into the queue of {} events; split it into smaller batches",
            full.capacity
        ),
        Some(batch) => format!(
            "the queue cannot take {batch} more events: {} of {} are waiting for delivery; retry later",
            full.queued, full.capacity
        ),
        None => format!(
            "the queue is full: {} of {} events are waiting for delivery; retry later",
            full.queued, full.capacity
        ),
    }
}

/// Bytes reserved per record of a recent read, about the size of a small event.
const RECORD_BYTES_GUESS: usize = 256;
/// Records beyond this many grow the response buffer as they come.
const RECENT_GUESS_CAP: usize = 1000;

/// Counts returned by an ingest request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct IngestSummary {
    /// Events queued for the sinks.
    pub accepted: usize,
    /// Events below the minimum level, dropped.
    pub filtered: usize,
}

/// The log pipeline: ingest queues events, one worker per sink delivers them.
pub struct Pipeline {
    queue: Arc<Queue>,
    store: Arc<dyn LogStore>,
    sink_names: Vec<&'static str>,
    clock: SharedClock,
    min_level: Level,
    recent_capacity: usize,
    retention: Duration,
    sweep_batch: usize,
}

impl Pipeline {
    /// Builds the pipeline and starts its workers on `workers`: one per sink (the store
    /// first, then `sinks`) and the retention sweep. They drain the queue, flush and
    /// return when the workers' stop signal fires.
    pub fn start(
        settings: &Settings,
        store: Arc<dyn LogStore>,
        sinks: Vec<Arc<dyn Sink>>,
        clock: SharedClock,
        workers: &Workers,
    ) -> Arc<Self> {
        let store_sink: Arc<dyn Sink> = store.clone();
        let all_sinks: Vec<Arc<dyn Sink>> = std::iter::once(store_sink).chain(sinks).collect();
        let origin = platform::ids::new_id();
        let queue = Arc::new(Queue::new(
            settings.queue_size.get(),
            all_sinks.len(),
            origin,
        ));

        let pipeline = Arc::new(Pipeline {
            queue: queue.clone(),
            store,
            sink_names: all_sinks.iter().map(|sink| sink.name()).collect(),
            clock,
            min_level: settings.min_level,
            recent_capacity: settings.recent_capacity.get(),
            retention: settings.retention,
            sweep_batch: settings.retention_sweep_batch.get(),
        });

        let stop = workers.stop_signal();
        for (consumer, sink) in all_sinks.into_iter().enumerate() {
            let delivery = delivery::Delivery {
                queue: queue.clone(),
                consumer,
                sink,
                stop: stop.clone(),
            };
            workers.spawn(delivery.run());
        }
        workers.spawn(delivery::sweep_until_stopped(
            pipeline.clone(),
            settings.retention_sweep_interval,
            stop,
        ));
        tracing::info!(
            %origin,
            queue_size = settings.queue_size.get(),
            min_level = %settings.min_level,
            sinks = ?pipeline.sink_names,
            "log pipeline started"
        );
        pipeline
    }

    /// Validates a body and queues its events at or above the minimum level as one
    /// batch. Any invalid event, or a batch that does not fit, rejects the whole body.
    ///
    /// While the queue has no room at all, the body is rejected unread: no batch with an
    /// event to queue can fit, and parsing bodies only to reject them would take the CPU
    /// the sinks need to make room.
    pub fn ingest(&self, body: Bytes, format: BodyFormat) -> Result<IngestSummary, Error> {
        if let Some(full) = self.queue.full() {
            return Err(Error::QueueFull(full));
        }
        let receipt = self.clock.now();
        let parsed = parse::parse_body(body, format, receipt, self.min_level)?;
        let accepted = parsed.events.len();
        if accepted > 0 {
            self.queue
                .push(parsed.events, receipt)
                .map_err(Error::QueueFull)?;
        }
        tracing::debug!(accepted, filtered = parsed.filtered, "events ingested");
        Ok(IngestSummary {
            accepted,
            filtered: parsed.filtered,
        })
    }

    /// Reads the newest delivered events that pass the filters, oldest first, as the
    /// JSON array `GET /logs/recent` returns.
    pub async fn recent_json(&self, query: &RecentQuery) -> Result<Vec<u8>, Error> {
        let mut json =
            Vec::with_capacity(RECORD_BYTES_GUESS * query.limit.min(RECENT_GUESS_CAP) + 2);
        let mut writer = RecordWriter::default();
        json.push(b'[');
        self.store
            .recent(query, &mut |record| {
                if json.len() > 1 {
                    json.push(b',');
                }
                writer.write(&mut json, record);
            })
            .await?;
        json.push(b']');
        Ok(json)
    }

    /// Returns the default and maximum `limit` of recent reads.
    pub fn recent_capacity(&self) -> usize {
        self.recent_capacity
    }

    /// Deletes every stored event received longer ago than the retention, in statements
    /// of at most the sweep batch size; returns how many it deleted.
    pub async fn sweep_expired(&self) -> Result<u64, Error> {
        self.sweep_expired_until(&CancellationToken::new()).await
    }

    /// Like `sweep_expired`, but stops between statements once `stop` fires.
    pub(crate) async fn sweep_expired_until(&self, stop: &CancellationToken) -> Result<u64, Error> {
        let cutoff = self.clock.now().saturating_sub(self.retention);
        let mut deleted = 0;
        while !stop.is_cancelled() {
            let count = self
                .store
                .delete_received_before(cutoff, self.sweep_batch)
                .await?;
            deleted += count;
            if count < self.sweep_batch as u64 {
                break;
            }
        }
        Ok(deleted)
    }

    /// Waits until every event accepted before the call has reached every sink.
    pub async fn delivered(&self) {
        self.queue.delivered().await;
    }

    /// Counts the events not yet delivered, per sink, for the shutdown report.
    pub fn backlog(&self) -> Vec<(&'static str, u64)> {
        self.sink_names
            .iter()
            .zip(self.queue.undelivered())
            .map(|(&name, count)| (name, count as u64))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;
    use parking_lot::Mutex;
    use platform::server::Workers;
    use platform::time::system_clock;

    use super::*;
    use crate::model::Batch;
    use crate::sink::SinkError;
    use crate::store::MemoryStore;

    /// Fails its first writes, then records the sequences it receives.
    struct FlakySink {
        failures_left: Mutex<u32>,
        sequences: Mutex<Vec<u64>>,
    }

    #[async_trait]
    impl Sink for FlakySink {
        fn name(&self) -> &'static str {
            "flaky"
        }

        async fn write(&self, batches: &[Arc<Batch>]) -> Result<(), SinkError> {
            {
                let mut failures_left = self.failures_left.lock();
                if *failures_left > 0 {
                    *failures_left -= 1;
                    return Err("destination unavailable".into());
                }
            }
            let mut sequences = self.sequences.lock();
            for batch in batches {
                sequences.extend(batch.records().map(|record| record.sequence));
            }
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failed_writes_are_retried_in_order() {
        let sink = Arc::new(FlakySink {
            failures_left: Mutex::new(2),
            sequences: Mutex::new(Vec::new()),
        });
        let settings = Settings::default();
        let store = Arc::new(MemoryStore::new(settings.recent_capacity.get()));
        let workers = Workers::new();
        let pipeline = Pipeline::start(
            &settings,
            store,
            vec![sink.clone()],
            system_clock(),
            &workers,
        );

        for _ in 0..3 {
            let body = Bytes::from_static(
                b"{\"source\":\"a\",\"message\":\"m\"}\n{\"source\":\"a\",\"message\":\"n\"}",
            );
            let summary = pipeline.ingest(body, BodyFormat::Ndjson).expect("valid");
            assert_eq!(summary.accepted, 2);
        }
        tokio::time::timeout(Duration::from_secs(20), pipeline.delivered())
            .await
            .expect("delivered after the retries");

        assert_eq!(*sink.sequences.lock(), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(*sink.failures_left.lock(), 0);
        assert_eq!(pipeline.backlog(), vec![("ring", 0), ("flaky", 0)]);
    }

    /// Keeps what it is given and the names of the threads that wrote it.
    #[derive(Clone, Default)]
    struct Capture {
        bytes: Arc<Mutex<Vec<u8>>>,
        threads: Arc<Mutex<Vec<String>>>,
    }

    impl std::io::Write for Capture {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            let thread = std::thread::current().name().unwrap_or("").to_string();
            self.threads.lock().push(thread);
            self.bytes.lock().extend_from_slice(data);
            Ok(data.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blocking_sink_writes_on_own_thread() {
        let capture = Capture::default();
        let sink = Arc::new(crate::sink::StdoutSink::new(Box::new(capture.clone())));
        let settings = Settings::default();
        let store = Arc::new(MemoryStore::new(settings.recent_capacity.get()));
        let workers = Workers::new();
        let pipeline = Pipeline::start(&settings, store, vec![sink], system_clock(), &workers);

        let body = Bytes::from_static(b"{\"source\":\"a\",\"message\":\"m\"}");
        pipeline.ingest(body, BodyFormat::Json).expect("valid");
        tokio::time::timeout(Duration::from_secs(20), pipeline.delivered())
            .await
            .expect("delivered");

        let text = String::from_utf8(capture.bytes.lock().clone()).expect("utf-8");
        assert!(text.starts_with("{\"source\":\"a\""), "{text}");
        assert!(text.ends_with("\"sequence\":1}\n"), "{text}");
        assert_eq!(*capture.threads.lock(), ["stdout-sink"]);

        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        assert!(workers.stop(deadline).await, "the delivery thread stops");
    }
}
