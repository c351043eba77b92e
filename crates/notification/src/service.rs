//! Notification rules: validation, rendering, sending, and the delivery history.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use platform::SharedClock;
use platform::error::ErrorChain;
use serde_json::Value;

use crate::model::{
    Channel, Delivery, DeliveryStatus, MAX_DATA_ENTRIES, MAX_DATA_KEY_LEN, MAX_DATA_VALUE_LEN,
};
use crate::recipient;
use crate::sender::{SendError, Senders};
use crate::store::{DeliveryStore, Pruned, StoreError};
use crate::templates::{RenderError, Templates};

/// How long a pending delivery may wait for its send before pruning treats its process as
/// gone. Sends finish within the request timeout, which is far shorter.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(3600);

/// An error from a notification operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input field is missing or invalid.
    #[error("{message}")]
    Invalid { field: String, message: String },
    /// The channel's sender failed; nothing was recorded.
    #[error("the {channel} sender failed")]
    SendFailed {
        channel: Channel,
        #[source]
        source: SendError,
    },
    /// A template failed on data that passed validation; a bug.
    #[error(transparent)]
    Render(RenderError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Error {
    fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A notification request as the client sent it; `None` or empty means absent.
#[derive(Clone, Debug, Default)]
pub struct NewNotification {
    pub channel: Option<String>,
    pub recipient: Option<String>,
    pub template: Option<String>,
    /// Template variables; values must be strings or numbers.
    pub data: Option<BTreeMap<String, Value>>,
}

/// The notification service: every rule lives here, over any store and any senders.
pub struct Notifier {
    store: Arc<dyn DeliveryStore>,
    senders: Senders,
    templates: Templates,
    clock: SharedClock,
    recent_capacity: usize,
}

impl Notifier {
    /// Creates the service. `recent_capacity` is the maximum number of deliveries `recent`
    /// returns, and the number of sent deliveries pruning keeps.
    pub fn new(
        store: Arc<dyn DeliveryStore>,
        senders: Senders,
        templates: Templates,
        clock: SharedClock,
        recent_capacity: usize,
    ) -> Self {
        Notifier {
            store,
            senders,
            templates,
            clock,
            recent_capacity,
        }
    }

    /// Returns the maximum number of deliveries `recent` returns.
    pub fn recent_capacity(&self) -> usize {
        self.recent_capacity
    }

    /// Validates and renders a notification, sends it on its channel and records it.
    ///
    /// The delivery is reserved in the store before the send, so an unreachable store
    /// fails the request before anything goes out, and a failed send releases it again.
    pub async fn notify(&self, input: NewNotification) -> Result<Delivery, Error> {
        let channel = parse_channel(input.channel)?;
        let recipient = required("recipient", input.recipient)?;
        recipient::check(channel, &recipient)
            .map_err(|message| Error::invalid("recipient", message))?;
        let template = self.parse_template(input.template)?;
        let data = template_values(input.data.unwrap_or_default())?;

        let rendered = match self.templates.render(&template, &data) {
            Ok(rendered) => rendered,
            Err(RenderError::MissingVariables { template, missing }) => {
                tracing::info!(%template, %channel, recipient = %recipient::loggable(channel, &recipient), missing = %missing.join(","), "notification not rendered: data lacks template variables");
                return Err(missing_variables(&template, &missing, &data));
            }
            Err(error) => {
                tracing::error!(%template, %channel, recipient = %recipient::loggable(channel, &recipient), error = %ErrorChain(&error), "notification not rendered");
                return Err(Error::Render(error));
            }
        };

        let mut delivery = Delivery {
            id: platform::ids::new_id(),
            channel,
            recipient,
            template,
            subject: rendered.subject,
            body: rendered.body,
            status: DeliveryStatus::Pending,
            sent_at: self.clock.now(),
        };
        self.store.reserve(&delivery).await?;
        if let Err(error) = self.senders.get(channel).send(&delivery).await {
            self.release_failed(&delivery, &error).await;
            return Err(Error::SendFailed {
                channel,
                source: error,
            });
        }

        delivery.status = DeliveryStatus::Sent;
        delivery.sent_at = self.clock.now().max(delivery.sent_at);
        // NOTE: a failure here answers 503 although the recipient has the notification, so a
        // client retry sends it twice. An idempotency key in the request would prevent that.
        if let Err(error) = self.store.mark_sent(&delivery).await {
            tracing::error!(delivery_id = %delivery.id, template = %delivery.template, %channel, recipient = %loggable_recipient(&delivery), error = %ErrorChain(&error), "notification sent but not recorded as sent; a retry by the client sends it again");
            return Err(error.into());
        }
        tracing::debug!(delivery_id = %delivery.id, template = %delivery.template, %channel, recipient = %loggable_recipient(&delivery), "notification sent");
        Ok(delivery)
    }

    /// Returns the newest `limit` sent deliveries, or all the history keeps when `None`,
    /// oldest first.
    pub async fn recent(&self, limit: Option<usize>) -> Result<Vec<Delivery>, Error> {
        let limit = limit
            .unwrap_or(self.recent_capacity)
            .min(self.recent_capacity);
        Ok(self.store.recent(limit).await?)
    }

    /// Deletes history that `recent` can no longer return, and pending deliveries older
    /// than [`ABANDONED_AFTER`].
    pub async fn prune(&self) -> Result<Pruned, Error> {
        let abandoned_before = self.clock.now().saturating_sub(ABANDONED_AFTER);
        Ok(self
            .store
            .prune(self.recent_capacity, abandoned_before)
            .await?)
    }

    fn parse_template(&self, template: Option<String>) -> Result<String, Error> {
        let name = required("template", template)?;
        if self.templates.variables(&name).is_none() {
            let known: Vec<&str> = self.templates.names().collect();
            return Err(Error::invalid(
                "template",
                format!(
                    "template {name:?} does not exist; use one of {}",
                    known.join(", ")
                ),
            ));
        }
        Ok(name)
    }

    async fn release_failed(&self, delivery: &Delivery, error: &SendError) {
        tracing::warn!(delivery_id = %delivery.id, template = %delivery.template, channel = %delivery.channel, recipient = %loggable_recipient(delivery), error = %ErrorChain(error), "notification send failed; nothing recorded");
        if let Err(release_error) = self.store.release(delivery.id).await {
            tracing::warn!(delivery_id = %delivery.id, error = %ErrorChain(&release_error), "releasing the pending delivery failed; pruning removes it later");
        }
    }
}

fn loggable_recipient(delivery: &Delivery) -> String {
    recipient::loggable(delivery.channel, &delivery.recipient)
}

fn parse_channel(channel: Option<String>) -> Result<Channel, Error> {
    let text = required("channel", channel)?;
    Channel::parse(&text).ok_or_else(|| {
        Error::invalid(
            "channel",
            format!("channel {text:?} is not a channel; use one of email, webhook, in_app"),
        )
    })
}

fn required(field: &str, value: Option<String>) -> Result<String, Error> {
    value
        .filter(|text| !text.is_empty())
        .ok_or_else(|| Error::invalid(field, format!("{field} is required")))
}

/// Converts `data` into template variables: strings as they are, numbers as their JSON
/// text. Booleans, null, arrays and objects have no single plain-text form, so they are
/// rejected.
fn template_values(data: BTreeMap<String, Value>) -> Result<BTreeMap<String, String>, Error> {
    if data.len() > MAX_DATA_ENTRIES {
        return Err(Error::invalid(
            "data",
            format!(
                "data has {} entries; at most {MAX_DATA_ENTRIES} are allowed",
                data.len()
            ),
        ));
    }

    let mut values = BTreeMap::new();
    for (key, value) in data {
        if key.is_empty() {
            return Err(Error::invalid("data", "data keys must not be empty"));
        }
        if key.chars().count() > MAX_DATA_KEY_LEN {
            return Err(Error::invalid(
                "data",
                format!("data keys are limited to {MAX_DATA_KEY_LEN} characters"),
            ));
        }

        let field = format!("data.{key}");
        let text = match value {
            Value::String(text) => text,
            Value::Number(number) => number.to_string(),
            other => {
                return Err(Error::invalid(
                    &field,
                    format!(
                        "{field} must be a string or a number, not {}",
                        kind_of(&other)
                    ),
                ));
            }
        };
        if text.chars().count() > MAX_DATA_VALUE_LEN {
            return Err(Error::invalid(
                &field,
                format!("{field} is longer than {MAX_DATA_VALUE_LEN} characters"),
            ));
        }
        values.insert(key, text);
    }
    Ok(values)
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Names the first missing variable (by name) as the field, and lists all of them. A key
/// that differs only in case is pointed out, because variable names are case-sensitive.
fn missing_variables(template: &str, missing: &[String], data: &BTreeMap<String, String>) -> Error {
    let first = &missing[0];
    let mut message = if missing.len() == 1 {
        format!("data.{first} is required by template {template}")
    } else {
        format!(
            "data.{} are required by template {template}",
            missing.join(", data.")
        )
    };
    for variable in missing {
        if let Some(near) = data
            .keys()
            .find(|key| key.eq_ignore_ascii_case(variable) && *key != variable)
        {
            message.push_str(&format!(
                "; data has {near:?}, but variable names are case-sensitive, so send {variable:?}"
            ));
        }
    }
    Error::invalid(format!("data.{first}"), message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(value: Value) -> BTreeMap<String, Value> {
        serde_json::from_value(value).expect("an object")
    }

    fn field_of(error: Error) -> String {
        match error {
            Error::Invalid { field, .. } => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn strings_and_numbers_become_text() {
        let values = template_values(data(
            json!({"Name": "Ada", "Code": 123456, "Ratio": 1.5, "Big": -7}),
        ))
        .expect("valid");
        assert_eq!(values["Name"], "Ada");
        assert_eq!(values["Code"], "123456");
        assert_eq!(values["Ratio"], "1.5");
        assert_eq!(values["Big"], "-7");
    }

    #[test]
    fn other_types_name_the_key() {
        for (value, kind) in [
            (json!(true), "a boolean"),
            (json!(null), "null"),
            (json!([1]), "an array"),
            (json!({"a": 1}), "an object"),
        ] {
            let error = template_values(data(json!({"Name": value}))).unwrap_err();
            let message = error.to_string();
            assert!(message.contains(kind), "{message}");
            assert_eq!(field_of(error), "data.Name");
        }
    }

    #[test]
    fn data_is_bounded() {
        let many: BTreeMap<String, Value> = (0..=MAX_DATA_ENTRIES)
            .map(|i| (format!("k{i}"), json!("v")))
            .collect();
        assert_eq!(field_of(template_values(many).unwrap_err()), "data");

        let long = "x".repeat(MAX_DATA_VALUE_LEN + 1);
        let error = template_values(data(json!({"Name": long}))).unwrap_err();
        assert_eq!(field_of(error), "data.Name");

        let error = template_values(data(json!({"": "v"}))).unwrap_err();
        assert_eq!(field_of(error), "data");
    }

    #[test]
    fn missing_variable_message_hints_at_case() {
        let present: BTreeMap<String, String> = [("name".to_string(), "Ada".to_string())].into();
        let error = missing_variables("welcome_email", &["Name".to_string()], &present);
        let message = error.to_string();
        assert!(message.contains("data.Name is required"), "{message}");
        assert!(message.contains("case-sensitive"), "{message}");
        assert_eq!(field_of(error), "data.Name");
    }

    #[test]
    fn several_missing_variables_name_the_first() {
        let error = missing_variables(
            "password_reset",
            &["Code".to_string(), "Name".to_string()],
            &BTreeMap::new(),
        );
        let message = error.to_string();
        assert!(message.contains("data.Code, data.Name"), "{message}");
        assert_eq!(field_of(error), "data.Code");
    }
}
