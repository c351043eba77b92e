//! Jobs and decisions in the `moderation` schema, shared by any number of replicas.

use async_trait::async_trait;
use platform::Timestamp;
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

use super::{Claim, Claimed, ClaimedJob, Enqueued, JobId, ModerationStore, StoreError};
use crate::model::{Decision, Evaluation, Job, Verdict};

/// The queue and the decisions in Postgres.
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

#[derive(FromRow)]
struct JobRow {
    job_id: i64,
    content_id: String,
    author_id: String,
    body: String,
    submitted: Timestamp,
    attempts: i32,
}

#[derive(FromRow)]
struct DecisionRow {
    content_id: String,
    author_id: String,
    body: String,
    submitted: Timestamp,
    decision: String,
    reason: String,
    matched_terms: Vec<String>,
    processed_at: Timestamp,
}

impl TryFrom<DecisionRow> for Decision {
    type Error = sqlx::Error;

    fn try_from(row: DecisionRow) -> Result<Self, sqlx::Error> {
        // The CHECK constraint admits only known names, so this fails only if the schema
        // and the code disagree.
        let decision = Verdict::parse(&row.decision).ok_or_else(|| {
            sqlx::Error::Decode(
                format!(
                    "unknown decision {:?} in moderation.decisions",
                    row.decision
                )
                .into(),
            )
        })?;
        Ok(Decision {
            job: Job {
                content_id: row.content_id,
                author_id: row.author_id,
                body: row.body,
                submitted: row.submitted,
            },
            decision,
            reason: row.reason,
            matched_terms: row.matched_terms,
            processed_at: row.processed_at,
        })
    }
}

#[async_trait]
impl ModerationStore for PostgresStore {
    async fn enqueue(&self, job: &Job, queue_size: usize) -> Result<Enqueued, StoreError> {
        // One statement adds 1 to `submitted` only while `submitted - decided`, the number
        // of undecided jobs, is below the queue size, and inserts the job only then. The
        // `submitted` row stays locked until the statement commits, so submissions on
        // every replica pass the check one at a time against the latest count. `decided`
        // is read from the statement's snapshot; it only grows, so a decision committed
        // meanwhile can only make the check stricter. A missing row counts as 0.
        let inserted: Option<i64> = sqlx::query_scalar(
            "WITH admitted AS ( \
                 INSERT INTO moderation.job_counts AS counts (kind, total) \
                 VALUES ('submitted', 1) \
                 ON CONFLICT (kind) DO UPDATE SET total = counts.total + 1 \
                 WHERE counts.total - coalesce( \
                     (SELECT decided.total FROM moderation.job_counts AS decided \
                      WHERE decided.kind = 'decided'), 0) < $5 \
                 RETURNING total) \
             INSERT INTO moderation.jobs (content_id, author_id, body, submitted) \
             SELECT $1, $2, $3, $4 FROM admitted \
             RETURNING job_id",
        )
        .bind(&job.content_id)
        .bind(&job.author_id)
        .bind(&job.body)
        .bind(job.submitted)
        .bind(i64::try_from(queue_size).unwrap_or(i64::MAX))
        .fetch_optional(&self.pool)
        .await?;

        Ok(match inserted {
            Some(_) => Enqueued::Accepted,
            None => Enqueued::Full,
        })
    }

    async fn claim(&self, claim: &Claim) -> Result<Claimed, StoreError> {
        // SKIP LOCKED lets concurrent workers on every replica each take a different job
        // instead of queueing behind one row lock.
        let row: Option<JobRow> = sqlx::query_as(
            "UPDATE moderation.jobs \
             SET claim_token = $1, claimed_until = $3, attempts = attempts + 1 \
             WHERE job_id = ( \
                 SELECT job_id FROM moderation.jobs \
                 WHERE claimed_until IS NULL OR claimed_until <= $2 \
                 ORDER BY job_id LIMIT 1 \
                 FOR UPDATE SKIP LOCKED) \
             RETURNING job_id, content_id, author_id, body, submitted, attempts",
        )
        .bind(claim.token)
        .bind(claim.now)
        .bind(claim.until)
        .fetch_optional(&self.pool)
        .await?;

        Ok(match row {
            Some(row) => Claimed::Job(ClaimedJob {
                id: row.job_id,
                attempt: u32::try_from(row.attempts).unwrap_or(u32::MAX),
                job: Job {
                    content_id: row.content_id,
                    author_id: row.author_id,
                    body: row.body,
                    submitted: row.submitted,
                },
            }),
            None => Claimed::NoJob,
        })
    }

    async fn complete(
        &self,
        id: JobId,
        token: Uuid,
        evaluation: &Evaluation,
        processed_at: Timestamp,
    ) -> Result<bool, StoreError> {
        // One statement: the job leaves the queue, `decided` grows by one and the decision
        // appears together, and only while this token still owns the claim, so a job is
        // decided exactly once.
        let recorded: Option<i64> = sqlx::query_scalar(
            "WITH done AS ( \
                 DELETE FROM moderation.jobs WHERE job_id = $1 AND claim_token = $2 \
                 RETURNING content_id, author_id, body, submitted), \
             counted AS ( \
                 INSERT INTO moderation.job_counts AS counts (kind, total) \
                 SELECT 'decided', 1 FROM done \
                 ON CONFLICT (kind) DO UPDATE SET total = counts.total + 1) \
             INSERT INTO moderation.decisions \
                 (content_id, author_id, body, submitted, decision, reason, matched_terms, \
                  processed_at) \
             SELECT content_id, author_id, body, submitted, $3, $4, $5, $6 FROM done \
             RETURNING decision_id",
        )
        .bind(id)
        .bind(token)
        .bind(evaluation.verdict.as_str())
        .bind(&evaluation.reason)
        .bind(evaluation.matched_terms.as_slice())
        .bind(processed_at)
        .fetch_optional(&self.pool)
        .await?;
        Ok(recorded.is_some())
    }

    async fn take_decision(&self) -> Result<Option<Decision>, StoreError> {
        // Claim and delete in one statement: a decision locked by a concurrent hand-out is
        // skipped, so each one reaches exactly one caller.
        // NOTE: identities are drawn before commit, so two decisions recorded at the same
        // moment by different workers may become visible, and be handed out, in either order.
        let row: Option<DecisionRow> = sqlx::query_as(
            "DELETE FROM moderation.decisions \
             WHERE decision_id = ( \
                 SELECT decision_id FROM moderation.decisions \
                 ORDER BY decision_id LIMIT 1 \
                 FOR UPDATE SKIP LOCKED) \
             RETURNING content_id, author_id, body, submitted, decision, reason, \
                 matched_terms, processed_at",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Decision::try_from).transpose()?)
    }

    fn backlog(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}
