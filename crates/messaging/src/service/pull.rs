//! Pulls: leasing ready messages, dead-lettering exhausted ones, and long polls.

use std::cmp::Reverse;
use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

use super::{Error, Messaging};
use crate::input;
use crate::model::{DEFAULT_PULL, Delivery, MAX_LEASE_S, MAX_PULL, MAX_WAIT_MS, Topic};
use crate::store::Claim;

/// How often a waiting long poll checks again without a wake. Delays and leases end
/// without any event, and announcements sent while a listener reconnects are lost, so
/// this bounds how late such messages are found.
const RECHECK_INTERVAL: Duration = Duration::from_secs(1);

/// A pull as the client sent it; `None` means the default.
#[derive(Clone, Debug, Default)]
pub struct PullRequest {
    pub tenant_id: Option<String>,
    pub project_id: Option<String>,
    /// 1 to 1000 messages; 10 by default.
    pub limit: Option<usize>,
    /// Lease length, 1 to 43200 seconds; the configured visibility timeout by default.
    pub visibility_timeout_s: Option<u64>,
    /// Maximum wait for a first message, 0 to 30000 ms; 0 by default.
    pub wait_ms: Option<u64>,
}

/// A checked pull.
struct Pull {
    topic: Topic,
    tenant_id: Option<String>,
    project_id: Option<String>,
    limit: usize,
    lease: Duration,
}

impl Messaging {
    /// Leases up to `limit` ready messages of a topic to the caller, highest priority
    /// first, then oldest. With `wait_ms`, waits until at least one is ready, the wait
    /// ends, or the process shuts down, and returns what it has.
    pub async fn pull(&self, topic: &str, request: PullRequest) -> Result<Vec<Delivery>, Error> {
        let topic = input::parse_topic(topic)?;
        let limit = request.limit.unwrap_or(DEFAULT_PULL);
        if !(1..=MAX_PULL).contains(&limit) {
            return Err(Error::invalid(
                "limit",
                format!("limit must be from 1 to {MAX_PULL}, not {limit}"),
            ));
        }
        let lease = match request.visibility_timeout_s {
            None => self.default_lease(),
            Some(seconds) if (1..=MAX_LEASE_S).contains(&seconds) => Duration::from_secs(seconds),
            Some(seconds) => {
                return Err(Error::invalid(
                    "visibility_timeout_s",
                    format!("visibility_timeout_s must be from 1 to {MAX_LEASE_S}, not {seconds}"),
                ));
            }
        };
        let wait_ms = request.wait_ms.unwrap_or(0);
        if wait_ms > MAX_WAIT_MS {
            return Err(Error::invalid(
                "wait_ms",
                format!("wait_ms must be from 0 to {MAX_WAIT_MS}, not {wait_ms}"),
            ));
        }
        let pull = Pull {
            topic,
            tenant_id: request.tenant_id.filter(|id| !id.is_empty()),
            project_id: request.project_id.filter(|id| !id.is_empty()),
            limit,
            lease,
        };

        if wait_ms == 0 {
            return self.claim_ready(&pull).await;
        }
        self.long_poll(&pull, Instant::now() + Duration::from_millis(wait_ms))
            .await
    }

    async fn long_poll(&self, pull: &Pull, deadline: Instant) -> Result<Vec<Delivery>, Error> {
        let subscription = self.wakeups.subscribe(pull.topic.as_str());
        loop {
            // Registered before the check, so a wake that lands during it is kept.
            let notified = subscription.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();

            let deliveries = self.claim_ready(pull).await?;
            let now = Instant::now();
            if !deliveries.is_empty() || now >= deadline || self.shutdown.is_cancelled() {
                return Ok(deliveries);
            }

            let recheck = (now + RECHECK_INTERVAL).min(deadline);
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(recheck) => {}
                _ = self.shutdown.cancelled() => {}
            }
        }
    }

    /// Claims until `limit` messages are leased or no exhausted message stood in the
    /// way: exhausted messages take places in a claim but are dead-lettered, not leased.
    async fn claim_ready(&self, pull: &Pull) -> Result<Vec<Delivery>, Error> {
        let dead_letter = self.dead_letter_policy(&pull.topic);
        let mut deliveries: Vec<Delivery> = Vec::new();
        loop {
            let wanted = pull.limit - deliveries.len();
            let now = self.clock.now();
            let claim = Claim {
                topic: pull.topic.clone(),
                tenant_id: pull.tenant_id.clone(),
                project_id: pull.project_id.clone(),
                limit: wanted,
                now,
                lease_until: now.saturating_add(pull.lease),
                ack_ids: ack_ids(wanted),
                dead_letter: dead_letter.clone(),
            };
            let claimed = self.store.claim(&claim).await?;
            deliveries.extend(claimed.deliveries);

            if claimed.dead_lettered == 0 {
                break;
            }
            if let Some(policy) = &dead_letter {
                tracing::info!(topic = %pull.topic, dead_letter = %policy.topic, count = claimed.dead_lettered, max_deliveries = policy.max_deliveries, "messages dead-lettered after their last failed delivery");
                self.signal(&policy.topic);
            }
            if deliveries.len() >= pull.limit {
                break;
            }
        }

        deliveries.sort_by_key(|delivery| {
            (
                Reverse(delivery.message.priority),
                delivery.message.published_at,
                delivery.message.message_id,
            )
        });
        if !deliveries.is_empty() {
            tracing::debug!(topic = %pull.topic, count = deliveries.len(), "messages leased");
        }
        Ok(deliveries)
    }
}

/// The random low bits of a version 7 id, below its variant bits.
const RANDOM_BITS: u128 = (1 << 62) - 1;

/// Returns `count` ack ids: one fresh id, then the ids after it, counting up in its random
/// low bits so the version and variant stay valid. A fresh id per message cost more than
/// leasing the message in the memory store. Ids of two claims can only meet if their
/// random bits fall within `count` of each other.
fn ack_ids(count: usize) -> Vec<Uuid> {
    let first = platform::ids::new_id().as_u128();
    (0..count as u128)
        .map(|offset| {
            let random = first.wrapping_add(offset) & RANDOM_BITS;
            Uuid::from_u128((first & !RANDOM_BITS) | random)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn ack_ids_are_distinct_version_7() {
        let ids = ack_ids(1000);

        assert_eq!(ids.len(), 1000);
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 1000);
        for id in &ids {
            assert_eq!(id.get_version_num(), 7);
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        }
    }
}
