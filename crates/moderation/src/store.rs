//! The persistence contract for jobs and decisions, with a memory and a Postgres implementation.

mod memory;
mod postgres;

use std::sync::Arc;

use async_trait::async_trait;
use platform::{Backend, Timestamp};
use uuid::Uuid;

use crate::config::Settings;
use crate::model::{Decision, Evaluation, Job};

pub use memory::MemoryStore;
pub use postgres::PostgresStore;

/// Identifies a stored job; increases in submission order.
pub type JobId = i64;

/// Errors of store operations.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Postgres failed or is out of reach.
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

/// Result of offering a job to the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enqueued {
    /// The job is stored.
    Accepted,
    /// The queue already contains `queue_size` undecided jobs, so nothing was stored.
    Full,
}

/// A worker's request for a job: a fresh token, the current time and the lease end.
#[derive(Clone, Copy, Debug)]
pub struct Claim {
    /// Proves ownership when the decision is stored.
    pub token: Uuid,
    /// Claims whose lease ended at or before this time may be taken over.
    pub now: Timestamp,
    /// When this claim's lease ends.
    pub until: Timestamp,
}

/// A job in a worker's hands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimedJob {
    pub id: JobId,
    pub job: Job,
    /// 1 for the first claim; more when earlier claims expired.
    pub attempt: u32,
}

/// Result of a claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claimed {
    /// The oldest job that was neither claimed nor under a live lease.
    Job(ClaimedJob),
    /// Every job is decided or under a live lease.
    NoJob,
    /// Jobs wait, but the decisions not yet fetched fill the memory store.
    DecisionsFull,
}

/// Persistence of the job queue and of decisions. Implementations keep no domain rules:
/// the service validates jobs and decides them, and the store applies each step atomically.
#[async_trait]
pub trait ModerationStore: Send + Sync + 'static {
    /// Stores a job unless `queue_size` undecided jobs (claimed ones included) exist already.
    async fn enqueue(&self, job: &Job, queue_size: usize) -> Result<Enqueued, StoreError>;

    /// Claims the oldest job that is unclaimed or whose lease has ended.
    async fn claim(&self, claim: &Claim) -> Result<Claimed, StoreError>;

    /// Records the decision on a claimed job and removes the job, in one step, if `token`
    /// still owns the claim. Returns false, storing nothing, when the claim was taken over.
    async fn complete(
        &self,
        id: JobId,
        token: Uuid,
        evaluation: &Evaluation,
        processed_at: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Removes and returns the oldest decision, in the order decisions were recorded.
    async fn take_decision(&self) -> Result<Option<Decision>, StoreError>;

    /// Counts of work that would be lost if the process exited now, by kind. A durable
    /// store returns nothing.
    fn backlog(&self) -> Vec<(&'static str, u64)>;
}

/// Opens the store the backend calls for.
pub fn open(backend: &Backend, settings: &Settings) -> Arc<dyn ModerationStore> {
    match backend {
        Backend::Memory => Arc::new(MemoryStore::new(Some(settings.max_decisions))),
        Backend::Postgres(pool) => Arc::new(PostgresStore::new(pool.clone())),
    }
}
