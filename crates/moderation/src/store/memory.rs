//! Jobs and decisions in process memory; the decision backlog is bounded by a setting.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, VecDeque};

use async_trait::async_trait;
use parking_lot::Mutex;
use platform::Timestamp;
use uuid::Uuid;

use super::{Claim, Claimed, ClaimedJob, Enqueued, JobId, ModerationStore, StoreError};
use crate::model::{Decision, Evaluation, Job};

/// A FIFO of waiting jobs, the jobs in hand, and a FIFO of decisions.
#[derive(Debug, Default)]
pub struct MemoryStore {
    max_decisions: Option<usize>,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: JobId,
    /// Unclaimed jobs, oldest first. Every id here is larger than every id in `claimed`,
    /// because claims always take the front.
    waiting: VecDeque<(JobId, Job)>,
    claimed: BTreeMap<JobId, Lease>,
    decisions: VecDeque<Decision>,
}

#[derive(Debug)]
struct Lease {
    job: Job,
    token: Uuid,
    until: Timestamp,
    attempt: u32,
}

impl MemoryStore {
    /// Creates an empty store. `max_decisions` caps decisions not yet fetched plus jobs in
    /// hand: claims check the cap, so completing a claimed job needs no check.
    pub fn new(max_decisions: Option<usize>) -> Self {
        MemoryStore {
            max_decisions,
            inner: Mutex::default(),
        }
    }
}

#[async_trait]
impl ModerationStore for MemoryStore {
    async fn enqueue(&self, job: &Job, queue_size: usize) -> Result<Enqueued, StoreError> {
        let mut inner = self.inner.lock();
        if inner.waiting.len() + inner.claimed.len() >= queue_size {
            return Ok(Enqueued::Full);
        }
        inner.next_id += 1;
        let id = inner.next_id;
        inner.waiting.push_back((id, job.clone()));
        Ok(Enqueued::Accepted)
    }

    async fn claim(&self, claim: &Claim) -> Result<Claimed, StoreError> {
        let mut inner = self.inner.lock();

        // An expired claim is older than any waiting job, so it goes first. Taking it over
        // leaves the number of jobs in hand unchanged, so the decision cap allows it.
        if let Some((&id, lease)) = inner
            .claimed
            .iter_mut()
            .find(|(_, lease)| lease.until <= claim.now)
        {
            lease.token = claim.token;
            lease.until = claim.until;
            lease.attempt += 1;
            return Ok(Claimed::Job(ClaimedJob {
                id,
                job: lease.job.clone(),
                attempt: lease.attempt,
            }));
        }

        if inner.waiting.is_empty() {
            return Ok(Claimed::NoJob);
        }
        if let Some(max) = self.max_decisions
            && inner.decisions.len() + inner.claimed.len() >= max
        {
            return Ok(Claimed::DecisionsFull);
        }
        let Some((id, job)) = inner.waiting.pop_front() else {
            return Ok(Claimed::NoJob);
        };
        let lease = Lease {
            job: job.clone(),
            token: claim.token,
            until: claim.until,
            attempt: 1,
        };
        inner.claimed.insert(id, lease);
        Ok(Claimed::Job(ClaimedJob {
            id,
            job,
            attempt: 1,
        }))
    }

    async fn complete(
        &self,
        id: JobId,
        token: Uuid,
        evaluation: &Evaluation,
        processed_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut inner = self.inner.lock();
        let Entry::Occupied(entry) = inner.claimed.entry(id) else {
            return Ok(false);
        };
        if entry.get().token != token {
            return Ok(false);
        }
        let lease = entry.remove();
        let decision = Decision::new(lease.job, evaluation.clone(), processed_at);
        inner.decisions.push_back(decision);
        Ok(true)
    }

    async fn take_decision(&self) -> Result<Option<Decision>, StoreError> {
        Ok(self.inner.lock().decisions.pop_front())
    }

    fn backlog(&self) -> Vec<(&'static str, u64)> {
        let inner = self.inner.lock();
        let jobs = inner.waiting.len() + inner.claimed.len();
        vec![
            ("jobs", jobs as u64),
            ("decisions", inner.decisions.len() as u64),
        ]
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::Verdict;

    fn job(content_id: &str) -> Job {
        Job {
            content_id: content_id.to_string(),
            author_id: "author".to_string(),
            body: "text".to_string(),
            submitted: Timestamp::EPOCH,
        }
    }

    fn claim_at(now: Timestamp) -> Claim {
        Claim {
            token: Uuid::now_v7(),
            now,
            until: now.saturating_add(Duration::from_secs(30)),
        }
    }

    fn approved() -> Evaluation {
        Evaluation {
            verdict: Verdict::Approved,
            reason: "no banned terms matched".to_string(),
            matched_terms: Vec::new(),
        }
    }

    async fn claim_job(store: &MemoryStore, claim: &Claim) -> ClaimedJob {
        match store.claim(claim).await.expect("claim") {
            Claimed::Job(claimed) => claimed,
            other => panic!("expected a job, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn queue_size_counts_jobs_in_hand() {
        let store = MemoryStore::new(None);
        assert_eq!(
            store.enqueue(&job("a"), 2).await.expect("enqueue"),
            Enqueued::Accepted
        );
        assert_eq!(
            store.enqueue(&job("b"), 2).await.expect("enqueue"),
            Enqueued::Accepted
        );
        assert_eq!(
            store.enqueue(&job("c"), 2).await.expect("enqueue"),
            Enqueued::Full
        );

        let claim = claim_at(Timestamp::EPOCH);
        let claimed = claim_job(&store, &claim).await;
        assert_eq!(
            store.enqueue(&job("c"), 2).await.expect("enqueue"),
            Enqueued::Full
        );

        let stored = store
            .complete(claimed.id, claim.token, &approved(), Timestamp::EPOCH)
            .await
            .expect("complete");
        assert!(stored);
        assert_eq!(
            store.enqueue(&job("c"), 2).await.expect("enqueue"),
            Enqueued::Accepted
        );
    }

    #[tokio::test]
    async fn full_decision_store_holds_jobs_back() {
        let store = MemoryStore::new(Some(2));
        for name in ["a", "b", "c"] {
            store.enqueue(&job(name), 10).await.expect("enqueue");
        }
        let first = claim_at(Timestamp::EPOCH);
        let claimed = claim_job(&store, &first).await;
        claim_job(&store, &claim_at(Timestamp::EPOCH)).await;
        assert_eq!(
            store
                .claim(&claim_at(Timestamp::EPOCH))
                .await
                .expect("claim"),
            Claimed::DecisionsFull
        );

        store
            .complete(claimed.id, first.token, &approved(), Timestamp::EPOCH)
            .await
            .expect("complete");
        assert_eq!(
            store
                .claim(&claim_at(Timestamp::EPOCH))
                .await
                .expect("claim"),
            Claimed::DecisionsFull
        );

        let decision = store.take_decision().await.expect("take");
        assert_eq!(decision.map(|d| d.job.content_id), Some("a".to_string()));
        let third = claim_job(&store, &claim_at(Timestamp::EPOCH)).await;
        assert_eq!(third.job.content_id, "c");
    }

    #[tokio::test]
    async fn expired_claim_is_taken_over() {
        let store = MemoryStore::new(None);
        store.enqueue(&job("a"), 10).await.expect("enqueue");
        let start = Timestamp::EPOCH;
        let first = claim_at(start);
        let claimed = claim_job(&store, &first).await;
        assert_eq!(claimed.attempt, 1);
        assert_eq!(
            store.claim(&claim_at(start)).await.expect("claim"),
            Claimed::NoJob
        );

        let later = start.saturating_add(Duration::from_secs(30));
        let second = claim_at(later);
        let again = claim_job(&store, &second).await;
        assert_eq!(again.id, claimed.id);
        assert_eq!(again.attempt, 2);

        let late = store
            .complete(claimed.id, first.token, &approved(), later)
            .await
            .expect("complete");
        assert!(!late, "the first claim was taken over");
        let current = store
            .complete(again.id, second.token, &approved(), later)
            .await
            .expect("complete");
        assert!(current);
        assert!(store.take_decision().await.expect("take").is_some());
        assert!(store.take_decision().await.expect("take").is_none());
    }

    #[tokio::test]
    async fn backlog_counts_jobs_and_decisions() {
        let store = MemoryStore::new(None);
        store.enqueue(&job("a"), 10).await.expect("enqueue");
        store.enqueue(&job("b"), 10).await.expect("enqueue");
        let claim = claim_at(Timestamp::EPOCH);
        let claimed = claim_job(&store, &claim).await;
        store
            .complete(claimed.id, claim.token, &approved(), Timestamp::EPOCH)
            .await
            .expect("complete");
        assert_eq!(store.backlog(), [("jobs", 1), ("decisions", 1)]);
    }
}
