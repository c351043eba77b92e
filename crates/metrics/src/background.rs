//! Background work: flushing to Postgres every second, and the retention sweep.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::service::Collector;

/// Time between flushes; a crash loses at most this much of this process's samples.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Pause before the final flush tries again after a failure.
const FINAL_FLUSH_RETRY: Duration = Duration::from_millis(500);

/// Runs until `stop` fires, then flushes once more (when `flushes`) and returns.
///
/// The final flush retries until it succeeds: the server harness bounds shutdown by its
/// grace period and then reports the backlog this task could not write.
pub async fn run(collector: Arc<Collector>, stop: CancellationToken, flushes: bool) {
    let mut flush_tick = tokio::time::interval(FLUSH_INTERVAL);
    flush_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut sweep_tick = tokio::time::interval(collector.rollup_interval());
    sweep_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut flush_failures = FailureLog::new("flush");
    let mut sweep_failures = FailureLog::new("retention sweep");

    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = flush_tick.tick(), if flushes => {
                flush_failures.note(collector.flush().await.map(|_| ()));
            }
            _ = sweep_tick.tick() => {
                sweep_failures.note(collector.sweep().await);
            }
        }
    }

    if flushes {
        loop {
            match collector.flush().await {
                Ok(buckets) => {
                    tracing::info!(buckets, "final flush written");
                    break;
                }
                Err(error) => {
                    tracing::warn!(error = %platform::error::ErrorChain(&error), "final flush failed; retrying");
                    tokio::time::sleep(FINAL_FLUSH_RETRY).await;
                }
            }
        }
    }
}

/// Logs the first failure of a run of failures, every 60th after it, and the recovery.
struct FailureLog {
    task: &'static str,
    consecutive: u64,
}

impl FailureLog {
    fn new(task: &'static str) -> Self {
        FailureLog {
            task,
            consecutive: 0,
        }
    }

    fn note(&mut self, result: Result<(), crate::service::Error>) {
        let task = self.task;
        match result {
            Ok(()) if self.consecutive > 0 => {
                tracing::info!(
                    task,
                    failures = self.consecutive,
                    "background work recovered"
                );
                self.consecutive = 0;
            }
            Ok(()) => {}
            Err(error) => {
                self.consecutive += 1;
                if self.consecutive % 60 == 1 {
                    tracing::warn!(
                        task,
                        failures = self.consecutive,
                        error = %platform::error::ErrorChain(&error),
                        "background work failed; retrying"
                    );
                }
            }
        }
    }
}
