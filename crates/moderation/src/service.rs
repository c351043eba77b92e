//! UGC Worker rules: job validation, the queue limit, claims with leases, and decisions.

use std::sync::Arc;
use std::time::Duration;

use platform::SharedClock;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::model::{Decision, Job, MAX_BODY_BYTES, MAX_ID_LEN, MAX_WAIT_MS, Verdict};
use crate::policy::Policy;
use crate::store::{Claim, Claimed, Enqueued, ModerationStore, StoreError};

/// Errors of moderation operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input field is missing or invalid.
    #[error("{message}")]
    Invalid { field: String, message: String },
    /// The queue contains its maximum number of undecided jobs.
    #[error("the moderation queue is full ({queue_size} jobs wait for a decision); retry shortly")]
    QueueFull { queue_size: usize },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Error {
    fn invalid(field: &str, message: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// How often a waiting fetch looks for decisions of other replicas unless set otherwise;
/// the default poll interval of the workers.
const DEFAULT_RECHECK_INTERVAL: Duration = Duration::from_millis(500);

/// Limits of the job queue.
#[derive(Clone, Copy, Debug)]
pub struct QueueSettings {
    /// Most undecided jobs, claimed ones included.
    pub queue_size: usize,
    /// How long a claim lasts before another worker may take the job over.
    pub claim_lease: Duration,
}

/// Fields of a job as the client sent them; `None` or empty means absent.
#[derive(Clone, Debug, Default)]
pub struct NewJob {
    pub content_id: Option<String>,
    pub author_id: Option<String>,
    pub body: Option<String>,
}

/// Outcome of one call to [`Moderator::process_next`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Processed {
    /// A job was decided and its decision stored.
    Decided(Verdict),
    /// The claim expired and another worker took the job over, so this decision was dropped.
    ClaimLost,
    /// No job is waiting.
    Idle,
    /// Jobs wait, but the memory store's decisions are full until some are fetched.
    DecisionsFull,
}

/// The UGC Worker: every moderation rule lives here, over any store.
pub struct Moderator {
    store: Arc<dyn ModerationStore>,
    policy: Arc<Policy>,
    clock: SharedClock,
    queue: QueueSettings,
    /// Woken when a job is accepted here, so an idle worker claims it at once.
    job_submitted: Notify,
    /// Woken when a decision is handed out, which frees room in a full memory store.
    decision_taken: Notify,
    /// Woken when a worker of this instance stores a decision, for waiting fetches.
    decision_made: Notify,
    /// Ends waiting fetches early when the process shuts down.
    shutdown: CancellationToken,
    /// How often a waiting fetch looks again for decisions that other replicas made.
    recheck_interval: Duration,
}

impl Moderator {
    /// Creates the service over a store, a policy built once, and a clock.
    pub fn new(
        store: Arc<dyn ModerationStore>,
        policy: Arc<Policy>,
        clock: SharedClock,
        queue: QueueSettings,
    ) -> Self {
        Moderator {
            store,
            policy,
            clock,
            queue,
            job_submitted: Notify::new(),
            decision_taken: Notify::new(),
            decision_made: Notify::new(),
            shutdown: CancellationToken::new(),
            recheck_interval: DEFAULT_RECHECK_INTERVAL,
        }
    }

    /// Sets what ends waiting fetches early, and how often they look for decisions that
    /// other replicas made.
    pub fn with_long_polls(
        mut self,
        shutdown: CancellationToken,
        recheck_interval: Duration,
    ) -> Self {
        self.shutdown = shutdown;
        self.recheck_interval = recheck_interval;
        self
    }

    /// Validates a job and queues it, unless the queue is full.
    pub async fn submit(&self, input: NewJob) -> Result<Job, Error> {
        let content_id = required_id("content_id", input.content_id)?;
        let author_id = required_id("author_id", input.author_id)?;
        let body = required_body(input.body)?;

        let job = Job {
            content_id,
            author_id,
            body,
            submitted: self.clock.now(),
        };
        match self.store.enqueue(&job, self.queue.queue_size).await? {
            Enqueued::Accepted => {
                self.job_submitted.notify_one();
                tracing::debug!(content_id = %job.content_id, author_id = %job.author_id, "job queued");
                Ok(job)
            }
            Enqueued::Full => {
                tracing::debug!(content_id = %job.content_id, queue_size = self.queue.queue_size, "job rejected: queue full");
                Err(Error::QueueFull {
                    queue_size: self.queue.queue_size,
                })
            }
        }
    }

    /// Hands out the oldest decision not handed out yet. When none waits, waits up to
    /// `wait` for one, until the process shuts down, and returns `None` if none came.
    pub async fn next_decision(&self, wait: Duration) -> Result<Option<Decision>, Error> {
        if wait.as_millis() > u128::from(MAX_WAIT_MS) {
            return Err(Error::invalid(
                "wait_ms",
                format!(
                    "wait_ms must be from 0 to {MAX_WAIT_MS}, not {}",
                    wait.as_millis()
                ),
            ));
        }
        let deadline = Instant::now() + wait;
        loop {
            // Registered before the store is read, so that a decision stored meanwhile
            // still wakes this fetch.
            let made = self.decision_made.notified();
            tokio::pin!(made);
            made.as_mut().enable();

            if let Some(decision) = self.take_decision().await? {
                return Ok(Some(decision));
            }
            let now = Instant::now();
            if now >= deadline || self.shutdown.is_cancelled() {
                return Ok(None);
            }
            let recheck = (now + self.recheck_interval).min(deadline);
            tokio::select! {
                _ = &mut made => {}
                _ = tokio::time::sleep_until(recheck) => {}
                _ = self.shutdown.cancelled() => {}
            }
        }
    }

    async fn take_decision(&self) -> Result<Option<Decision>, Error> {
        let decision = self.store.take_decision().await?;
        if let Some(decision) = &decision {
            self.decision_taken.notify_one();
            tracing::debug!(content_id = %decision.job.content_id, decision = %decision.decision, "decision handed out");
        }
        Ok(decision)
    }

    /// Claims the oldest available job, decides it and stores the decision. Workers call
    /// this in a loop; tests call it directly to process jobs without background tasks.
    pub async fn process_next(&self) -> Result<Processed, Error> {
        let now = self.clock.now();
        let claim = Claim {
            token: platform::ids::new_id(),
            now,
            until: now.saturating_add(self.queue.claim_lease),
        };
        let claimed = match self.store.claim(&claim).await? {
            Claimed::Job(claimed) => claimed,
            Claimed::NoJob => return Ok(Processed::Idle),
            Claimed::DecisionsFull => return Ok(Processed::DecisionsFull),
        };
        if claimed.attempt > 1 {
            tracing::info!(job_id = claimed.id, content_id = %claimed.job.content_id, attempt = claimed.attempt, "job claimed again after an earlier claim expired");
        }

        let evaluation = self.policy.evaluate(&claimed.job.body);
        let verdict = evaluation.verdict;
        // Replica clocks may differ slightly; a decision never predates its job.
        let processed_at = self.clock.now().max(claimed.job.submitted);
        let stored = self
            .store
            .complete(claimed.id, claim.token, &evaluation, processed_at)
            .await?;
        if !stored {
            tracing::warn!(job_id = claimed.id, content_id = %claimed.job.content_id, "claim expired before the decision was stored; the worker that took over decides the job");
            return Ok(Processed::ClaimLost);
        }
        self.decision_made.notify_one();
        tracing::debug!(job_id = claimed.id, content_id = %claimed.job.content_id, decision = %verdict, "job decided");
        Ok(Processed::Decided(verdict))
    }

    /// Waits until a job is accepted by this instance.
    pub async fn job_submitted(&self) {
        self.job_submitted.notified().await;
    }

    /// Waits until a decision is handed out by this instance.
    pub async fn decision_taken(&self) {
        self.decision_taken.notified().await;
    }

    /// Counts of work lost if the process exited now.
    pub fn backlog(&self) -> Vec<(&'static str, u64)> {
        self.store.backlog()
    }
}

fn required_id(field: &str, value: Option<String>) -> Result<String, Error> {
    let Some(text) = value.filter(|text| !text.is_empty()) else {
        return Err(Error::invalid(field, format!("{field} is required")));
    };
    if text.chars().count() > MAX_ID_LEN {
        return Err(Error::invalid(
            field,
            format!("{field} is longer than {MAX_ID_LEN} characters"),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(Error::invalid(
            field,
            format!("{field} contains control characters"),
        ));
    }
    Ok(text)
}

fn required_body(value: Option<String>) -> Result<String, Error> {
    let Some(body) = value.filter(|text| !text.is_empty()) else {
        return Err(Error::invalid("body", "body is required"));
    };
    if body.len() > MAX_BODY_BYTES {
        return Err(Error::invalid(
            "body",
            format!(
                "body is {} bytes long; at most {MAX_BODY_BYTES} bytes are allowed",
                body.len()
            ),
        ));
    }
    // Postgres text cannot hold U+0000, and both stores accept the same bodies.
    if body.contains('\0') {
        return Err(Error::invalid(
            "body",
            "body contains the character U+0000, which cannot be stored",
        ));
    }
    Ok(body)
}
