//! Moderation jobs, the decisions made on them, and the limits on input fields.

use std::fmt;

use platform::Timestamp;
use serde::Serialize;

/// Longest `content_id` or `author_id`, in characters.
pub const MAX_ID_LEN: usize = 256;
/// Largest `body`, in bytes of UTF-8. The request body limit applies as well.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest wait `GET /jobs/next` accepts, in milliseconds.
pub const MAX_WAIT_MS: u64 = 30_000;

/// Content submitted for moderation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Job {
    pub content_id: String,
    pub author_id: String,
    pub body: String,
    /// When the job was accepted.
    pub submitted: Timestamp,
}

/// The outcome of moderating one job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// No banned term occurs in the body.
    Approved,
    /// At least one banned term occurs in the body.
    Flagged,
}

impl Verdict {
    /// Returns the lowercase name used in JSON and in Postgres.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Approved => "approved",
            Verdict::Flagged => "flagged",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(text: &str) -> Option<Self> {
        [Verdict::Approved, Verdict::Flagged]
            .into_iter()
            .find(|verdict| verdict.as_str() == text)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The policy's findings for one body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evaluation {
    pub verdict: Verdict,
    /// A short sentence for reviewers.
    pub reason: String,
    /// Each matched term once, in policy order; empty when approved.
    pub matched_terms: Vec<String>,
}

/// A decision on a job, as handed out to review tooling.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub job: Job,
    pub decision: Verdict,
    pub reason: String,
    pub matched_terms: Vec<String>,
    pub processed_at: Timestamp,
}

impl Decision {
    /// Joins a job with its evaluation.
    pub fn new(job: Job, evaluation: Evaluation, processed_at: Timestamp) -> Self {
        Decision {
            job,
            decision: evaluation.verdict,
            reason: evaluation.reason,
            matched_terms: evaluation.matched_terms,
            processed_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_names_round_trip() {
        for verdict in [Verdict::Approved, Verdict::Flagged] {
            assert_eq!(Verdict::parse(verdict.as_str()), Some(verdict));
        }
        assert_eq!(Verdict::parse("rejected"), None);
    }
}
