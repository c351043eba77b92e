//! Ending deliveries: acks, nacks and lease changes, one message or a batch.

use std::collections::HashSet;

use platform::Timestamp;
use serde::Serialize;
use uuid::Uuid;

use super::{Error, Messaging};
use crate::input;
use crate::model::{MAX_DELAY_S, MAX_LEASE_S, Topic};
use crate::store::{Release, Settled};

/// The new end of a delivery's lease.
#[derive(Clone, Debug, Serialize)]
pub struct Lease {
    pub message_id: Uuid,
    pub ack_id: Uuid,
    pub lease_expires_at: Timestamp,
}

/// Outcome of a batch ack, in request order.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AckReport {
    pub acked: Vec<String>,
    pub not_found: Vec<String>,
}

impl Messaging {
    /// Acknowledges one message: it is deleted. With an ack id, only while that id names
    /// the current delivery; without one, whatever its lease.
    pub async fn ack(&self, topic: &str, id: &str, ack_id: Option<&str>) -> Result<(), Error> {
        let topic = input::parse_topic(topic)?;
        let ack_id = input::optional_ack_id(ack_id)?;
        let message_id = input::parse_message_id(&topic, id)?;

        let settled = self.store.ack(&topic, message_id, ack_id).await?;
        self.settled(&topic, id, message_id, settled)?;
        tracing::debug!(%topic, %message_id, "message acknowledged");
        Ok(())
    }

    /// Ends a delivery without acknowledging it: the message becomes visible again after
    /// `delay_s`, or moves to the dead-letter topic once it has failed
    /// `max_deliveries` deliveries.
    pub async fn nack(
        &self,
        topic: &str,
        id: &str,
        ack_id: Option<&str>,
        delay_s: Option<u64>,
    ) -> Result<(), Error> {
        let topic = input::parse_topic(topic)?;
        let ack_id = input::required_ack_id(ack_id)?;
        let delay = input::seconds("delay_s", delay_s, MAX_DELAY_S)?.unwrap_or_default();
        let message_id = input::parse_message_id(&topic, id)?;

        let now = self.clock.now();
        let release = Release {
            ack_id,
            now,
            visible_at: now.saturating_add(delay),
            dead_letter: self.dead_letter_policy(&topic),
        };
        let settled = self.store.nack(&topic, message_id, &release).await?;
        self.settled(&topic, id, message_id, settled)?;
        if settled == Settled::Done && delay.is_zero() {
            self.signal(&topic);
        }
        tracing::debug!(%topic, %message_id, delay_s = delay.as_secs(), "message released");
        Ok(())
    }

    /// Moves the end of a delivery's lease to `visibility_timeout_s` from now; 0 makes
    /// the message visible at once.
    pub async fn lease(
        &self,
        topic: &str,
        id: &str,
        ack_id: Option<&str>,
        visibility_timeout_s: Option<u64>,
    ) -> Result<Lease, Error> {
        let topic = input::parse_topic(topic)?;
        let ack_id = input::required_ack_id(ack_id)?;
        let Some(timeout) =
            input::seconds("visibility_timeout_s", visibility_timeout_s, MAX_LEASE_S)?
        else {
            return Err(Error::invalid(
                "visibility_timeout_s",
                format!("visibility_timeout_s is required; send 0 to {MAX_LEASE_S} seconds"),
            ));
        };
        let message_id = input::parse_message_id(&topic, id)?;

        let lease_expires_at = self.clock.now().saturating_add(timeout);
        let settled = self
            .store
            .extend(&topic, message_id, ack_id, lease_expires_at)
            .await?;
        self.settled(&topic, id, message_id, settled)?;
        if timeout.is_zero() {
            self.signal(&topic);
        }
        Ok(Lease {
            message_id,
            ack_id,
            lease_expires_at,
        })
    }

    /// Acknowledges many messages by id, whatever their leases.
    pub async fn ack_many(&self, topic: &str, ids: Vec<String>) -> Result<AckReport, Error> {
        let topic = input::parse_topic(topic)?;
        input::check_batch_len("message_ids", ids.len())?;

        let mut seen = HashSet::new();
        let requested: Vec<(String, Option<Uuid>)> = ids
            .into_iter()
            .map(|text| match platform::ids::parse_id(&text) {
                Some(id) => (id.to_string(), Some(id)),
                None => (text, None),
            })
            .filter(|(text, _)| seen.insert(text.clone()))
            .collect();
        let valid: Vec<Uuid> = requested.iter().filter_map(|(_, id)| *id).collect();
        let acked: HashSet<Uuid> = self
            .store
            .ack_many(&topic, &valid)
            .await?
            .into_iter()
            .collect();

        let mut report = AckReport::default();
        for (text, id) in requested {
            if id.is_some_and(|id| acked.contains(&id)) {
                report.acked.push(text);
            } else {
                report.not_found.push(text);
            }
        }
        tracing::debug!(%topic, acked = report.acked.len(), not_found = report.not_found.len(), "batch acknowledged");
        Ok(report)
    }

    /// Maps a store outcome for one message to the client's result.
    fn settled(
        &self,
        topic: &Topic,
        id: &str,
        message_id: Uuid,
        settled: Settled,
    ) -> Result<(), Error> {
        match settled {
            Settled::Done => Ok(()),
            Settled::DeadLettered => {
                if let Some(dead_letter) = topic.dead_letter() {
                    tracing::info!(%topic, %message_id, %dead_letter, "message dead-lettered after its last failed delivery");
                    self.signal(&dead_letter);
                }
                Ok(())
            }
            Settled::Stale => Err(Error::StaleAck { message_id }),
            Settled::Missing => Err(Error::message_not_found(topic, id)),
        }
    }
}
