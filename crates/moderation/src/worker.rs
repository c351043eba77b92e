//! The worker pool: background tasks that claim jobs, decide them, and stop on the signal.
//!
//! An idle worker wakes when this process accepts a job, when it hands out a decision
//! (which frees room in a full memory store), or after the poll interval. The poll finds
//! jobs accepted by other replicas and claims whose lease expired. LISTEN/NOTIFY was not
//! used: it needs a dedicated connection per replica on top of the pool, and expired
//! leases would still need the poll.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use platform::error::ErrorChain;
use platform::server::Workers;
use tokio_util::sync::CancellationToken;

use crate::service::{Moderator, Processed};

/// Maximum wait between attempts while the store keeps failing.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);
/// While the store keeps failing, one failure in this many is logged.
const FAILURES_PER_LOG: u32 = 10;

/// Spawns `count` workers. Each stops when the stop signal fires, after storing the
/// decision on the job in hand.
pub fn spawn(moderator: &Arc<Moderator>, workers: &Workers, count: usize, poll_interval: Duration) {
    let running = Arc::new(AtomicUsize::new(count));
    for worker in 0..count {
        let task = run(
            moderator.clone(),
            worker,
            workers.stop_signal(),
            poll_interval,
            running.clone(),
        );
        workers.spawn(task);
    }
    tracing::info!(
        workers = count,
        poll_interval_ms = poll_interval.as_millis() as u64,
        "moderation workers started"
    );
}

async fn run(
    moderator: Arc<Moderator>,
    worker: usize,
    stop: CancellationToken,
    poll_interval: Duration,
    running: Arc<AtomicUsize>,
) {
    let mut failures: u32 = 0;
    let mut waiting_for_room = false;

    while !stop.is_cancelled() {
        let outcome = moderator.process_next().await;
        if failures > 0 && outcome.is_ok() {
            tracing::info!(
                worker,
                failures,
                "moderation worker reaches the store again"
            );
            failures = 0;
        }

        match outcome {
            Ok(Processed::Decided(_) | Processed::ClaimLost) => {
                waiting_for_room = false;
            }
            Ok(Processed::Idle) => {
                waiting_for_room = false;
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = moderator.job_submitted() => {}
                    _ = tokio::time::sleep(poll_interval) => {}
                }
            }
            Ok(Processed::DecisionsFull) => {
                if !waiting_for_room {
                    tracing::warn!(
                        worker,
                        "decision store is full; the worker waits until decisions are fetched"
                    );
                    waiting_for_room = true;
                }
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = moderator.decision_taken() => {}
                    _ = tokio::time::sleep(poll_interval) => {}
                }
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                let delay = retry_delay(poll_interval, failures);
                if failures % FAILURES_PER_LOG == 1 {
                    tracing::warn!(worker, failures, retry_in_ms = delay.as_millis() as u64, error = %ErrorChain(&error), "moderation worker cannot process jobs; retrying");
                }
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }

    // The last worker to stop reports what a memory store drops with the process.
    if running.fetch_sub(1, Ordering::AcqRel) == 1 {
        let lost: Vec<String> = moderator
            .backlog()
            .into_iter()
            .filter(|(_, count)| *count > 0)
            .map(|(kind, count)| format!("{kind}={count}"))
            .collect();
        if lost.is_empty() {
            tracing::info!("moderation workers stopped");
        } else {
            tracing::warn!(discarded = %lost.join(","), "moderation workers stopped; the memory store discards undelivered work");
        }
    }
}

/// Doubles from the poll interval up to [`MAX_RETRY_DELAY`].
fn retry_delay(poll_interval: Duration, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    poll_interval
        .saturating_mul(1 << doublings)
        .min(MAX_RETRY_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_up_to_limit() {
        let poll = Duration::from_millis(500);
        assert_eq!(retry_delay(poll, 1), Duration::from_millis(500));
        assert_eq!(retry_delay(poll, 2), Duration::from_secs(1));
        assert_eq!(retry_delay(poll, 3), Duration::from_secs(2));
        assert_eq!(retry_delay(poll, 5), MAX_RETRY_DELAY);
        assert_eq!(retry_delay(poll, u32::MAX), MAX_RETRY_DELAY);
    }
}
