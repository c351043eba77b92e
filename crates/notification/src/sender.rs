//! Senders, one per channel, behind a trait; the in-memory senders record what they send.

use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::model::{Channel, Delivery};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An error from a sender that could not deliver a notification.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct SendError {
    reason: String,
    #[source]
    source: Option<BoxError>,
}

impl SendError {
    /// Creates an error described by `reason`, which is logged but never shown to clients.
    pub fn new(reason: impl Into<String>) -> Self {
        SendError {
            reason: reason.into(),
            source: None,
        }
    }

    /// Creates an error caused by `source`, such as a refused connection.
    pub fn with_source(reason: impl Into<String>, source: impl Into<BoxError>) -> Self {
        SendError {
            reason: reason.into(),
            source: Some(source.into()),
        }
    }
}

/// Delivers rendered notifications on one channel.
#[async_trait]
pub trait Sender: Send + Sync + 'static {
    /// Delivers `delivery` to its recipient; an error means it was not delivered.
    async fn send(&self, delivery: &Delivery) -> Result<(), SendError>;
}

/// A sender that delivers into process memory, keeping the newest `capacity` deliveries
/// for inspection and dropping older ones.
#[derive(Debug)]
pub struct MemorySender {
    capacity: usize,
    sent: Mutex<VecDeque<Delivery>>,
}

impl MemorySender {
    /// Creates a sender that keeps at most `capacity` deliveries.
    pub fn new(capacity: usize) -> Self {
        MemorySender {
            capacity,
            sent: Mutex::default(),
        }
    }

    /// Returns the deliveries kept, oldest first.
    pub fn sent(&self) -> Vec<Delivery> {
        self.sent.lock().iter().cloned().collect()
    }
}

#[async_trait]
impl Sender for MemorySender {
    async fn send(&self, delivery: &Delivery) -> Result<(), SendError> {
        let mut sent = self.sent.lock();
        if self.capacity == 0 {
            return Ok(());
        }
        if sent.len() == self.capacity {
            sent.pop_front();
        }
        sent.push_back(delivery.clone());
        Ok(())
    }
}

/// The sender of each channel.
#[derive(Clone)]
pub struct Senders {
    email: Arc<dyn Sender>,
    webhook: Arc<dyn Sender>,
    in_app: Arc<dyn Sender>,
}

impl Senders {
    /// Uses the given sender for each channel.
    pub fn new(email: Arc<dyn Sender>, webhook: Arc<dyn Sender>, in_app: Arc<dyn Sender>) -> Self {
        Senders {
            email,
            webhook,
            in_app,
        }
    }

    /// Creates a [`MemorySender`] for every channel, each keeping `capacity` deliveries.
    pub fn in_memory(capacity: usize) -> Self {
        Senders::new(
            Arc::new(MemorySender::new(capacity)),
            Arc::new(MemorySender::new(capacity)),
            Arc::new(MemorySender::new(capacity)),
        )
    }

    /// Replaces the sender of one channel.
    pub fn with_sender(mut self, channel: Channel, sender: Arc<dyn Sender>) -> Self {
        *self.slot(channel) = sender;
        self
    }

    /// Returns the sender of a channel.
    pub fn get(&self, channel: Channel) -> &dyn Sender {
        match channel {
            Channel::Email => self.email.as_ref(),
            Channel::Webhook => self.webhook.as_ref(),
            Channel::InApp => self.in_app.as_ref(),
        }
    }

    fn slot(&mut self, channel: Channel) -> &mut Arc<dyn Sender> {
        match channel {
            Channel::Email => &mut self.email,
            Channel::Webhook => &mut self.webhook,
            Channel::InApp => &mut self.in_app,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[tokio::test]
    async fn memory_sender_keeps_newest() {
        let sender = MemorySender::new(2);
        for body in ["a", "b", "c"] {
            sender.send(&Delivery::example(body)).await.expect("sent");
        }
        let bodies: Vec<String> = sender.sent().into_iter().map(|d| d.body).collect();
        assert_eq!(bodies, ["b", "c"]);
    }

    #[tokio::test]
    async fn with_sender_replaces_one_channel() {
        let email = Arc::new(MemorySender::new(5));
        let senders = Senders::in_memory(5).with_sender(Channel::Email, email.clone());
        senders
            .get(Channel::Email)
            .send(&Delivery::example("x"))
            .await
            .expect("sent");
        senders
            .get(Channel::Webhook)
            .send(&Delivery::example("y"))
            .await
            .expect("sent");
        assert_eq!(email.sent().len(), 1);
        assert_eq!(email.sent()[0].body, "x");
    }
}
