//! Background work: one delivery worker per sink, and the retention sweep.

use std::sync::Arc;
use std::time::Duration;

use platform::error::ErrorChain;
use tokio_util::sync::CancellationToken;

use crate::model::Batch;
use crate::queue::Queue;
use crate::service::Pipeline;
use crate::sink::Sink;

/// First wait after a failed write; it doubles up to `MAX_RETRY_DELAY`.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// The delivery worker of one sink. It hands the sink the queued batches in order until
/// `stop` fires and the queue contains nothing more for it, then flushes the sink.
#[derive(Clone)]
pub(crate) struct Delivery {
    pub(crate) queue: Arc<Queue>,
    pub(crate) consumer: usize,
    pub(crate) sink: Arc<dyn Sink>,
    pub(crate) stop: CancellationToken,
}

impl Delivery {
    /// Runs the worker: as a task of the runtime, or on a thread of its own when the
    /// sink's writes block. Such a thread waits for no runtime worker to poll it, which
    /// matters while request handling keeps every worker busy.
    pub(crate) async fn run(self) {
        if !self.sink.blocks() {
            return self.deliver().await;
        }
        let name = self.sink.name();
        let runtime = tokio::runtime::Handle::current();
        let (finished, done) = tokio::sync::oneshot::channel();
        let on_thread = self.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("{name}-sink"))
            .spawn(move || {
                runtime.block_on(on_thread.deliver());
                let _ = finished.send(());
            });
        match spawned {
            Ok(_) => {
                let _ = done.await;
            }
            Err(error) => {
                tracing::error!(sink = name, %error, "cannot start the sink's delivery thread; delivering on the runtime instead");
                self.deliver().await;
            }
        }
    }

    async fn deliver(self) {
        let Delivery {
            queue,
            consumer,
            sink,
            stop,
        } = self;
        let name = sink.name();
        let max_events = sink.max_delivery_events();
        tracing::debug!(sink = name, "delivery worker started");
        let mut stopping = false;
        loop {
            let batches = queue.peek(consumer, max_events);
            if batches.is_empty() {
                if stopping {
                    break;
                }
                tokio::select! {
                    _ = queue.work_ready(consumer) => {}
                    _ = stop.cancelled() => stopping = true,
                }
                continue;
            }
            write_with_retry(sink.as_ref(), &batches).await;
            queue.advance(consumer, batches.len());
        }

        if let Err(error) = sink.flush().await {
            tracing::error!(sink = name, error = %ErrorChain(error.as_ref()), "flushing the sink failed at shutdown");
        }
        tracing::debug!(sink = name, "delivery worker stopped");
    }
}

/// Writes until the sink accepts, waiting longer after each failure. Events are never
/// dropped here: while a sink fails, its backlog stays in the queue and ingestion returns
/// 503 once the queue is full.
async fn write_with_retry(sink: &dyn Sink, batches: &[Arc<Batch>]) {
    let events: usize = batches.iter().map(|batch| batch.len()).sum();
    let mut delay = FIRST_RETRY_DELAY;
    let mut failures: u32 = 0;
    loop {
        match sink.write(batches).await {
            Ok(()) => {
                if failures > 0 {
                    tracing::info!(
                        sink = sink.name(),
                        events,
                        failures,
                        "delivery succeeded after retries"
                    );
                }
                return;
            }
            Err(error) => {
                failures += 1;
                tracing::warn!(
                    sink = sink.name(),
                    events,
                    failures,
                    retry_in_ms = delay.as_millis() as u64,
                    error = %ErrorChain(error.as_ref()),
                    "delivery failed; retrying"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
        }
    }
}

/// Deletes expired events every `interval` until `stop` fires.
pub(crate) async fn sweep_until_stopped(
    pipeline: Arc<Pipeline>,
    interval: Duration,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.cancelled() => return,
        }
        match pipeline.sweep_expired_until(&stop).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "retention sweep deleted expired events"),
            Err(error) => {
                tracing::warn!(error = %ErrorChain(&error), "retention sweep failed; retrying at the next interval")
            }
        }
    }
}
