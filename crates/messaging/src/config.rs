//! Settings read from `MESSAGING_*` variables and the `[messaging]` table.

use std::time::Duration;

use platform::config::{ConfigError, byte_size, display_duration, duration};
use serde::Deserialize;

use crate::model::{MAX_DELAY_S, MAX_LEASE_S};

/// Messaging settings beyond the common ones.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Lease of a pulled message when the pull does not ask for one.
    #[serde(deserialize_with = "duration")]
    pub visibility_timeout: Duration,
    /// Failed deliveries (lease expiry or nack) after which a message moves to its
    /// topic's dead-letter topic.
    pub max_deliveries: u32,
    /// How long an `Idempotency-Key` is remembered per topic.
    #[serde(deserialize_with = "duration")]
    pub dedup_window: Duration,
    /// Age by publish time after which a message is removed, acknowledged or not.
    #[serde(deserialize_with = "duration")]
    pub retention: Duration,
    /// Largest decoded payload, in bytes.
    #[serde(deserialize_with = "byte_size")]
    pub max_payload: usize,
    /// Maximum number of messages in the memory store. Past it, a publish is rejected with
    /// 429. Postgres mode has no such cap.
    pub max_messages: usize,
    /// Maximum number of idempotency keys the memory store remembers. Past it, a publish
    /// with a new key is rejected with 429. Postgres mode has no such cap.
    pub max_idempotency_keys: usize,
    /// Time between retention sweeps.
    #[serde(deserialize_with = "duration")]
    pub sweep_interval: Duration,
    /// Most rows one retention step removes, so a sweep never holds locks for long.
    pub sweep_batch: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            visibility_timeout: Duration::from_secs(30),
            max_deliveries: 5,
            dedup_window: Duration::from_secs(10 * 60),
            retention: Duration::from_secs(7 * 24 * 3600),
            max_payload: 256 * 1024,
            max_messages: 100_000,
            max_idempotency_keys: 100_000,
            sweep_interval: Duration::from_secs(60),
            sweep_batch: 1000,
        }
    }
}

impl Settings {
    /// Checks values that parse but cannot work; the error names the variable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |name: &str, detail: String| ConfigError::Invalid {
            origin: format!("MESSAGING_{name}"),
            detail,
        };
        let lease = self.visibility_timeout;
        if lease < Duration::from_secs(1) || lease > Duration::from_secs(MAX_LEASE_S) {
            return Err(invalid(
                "VISIBILITY_TIMEOUT",
                format!(
                    "expected 1s to {}, found {}",
                    display_duration(Duration::from_secs(MAX_LEASE_S)),
                    display_duration(lease)
                ),
            ));
        }
        if self.max_deliveries == 0 {
            return Err(invalid(
                "MAX_DELIVERIES",
                "expected at least 1, found 0".into(),
            ));
        }
        if self.retention < Duration::from_secs(1) {
            return Err(invalid(
                "RETENTION",
                format!(
                    "expected at least 1s, found {}",
                    display_duration(self.retention)
                ),
            ));
        }
        if self.retention < Duration::from_secs(MAX_DELAY_S) {
            tracing::warn!(
                retention_s = self.retention.as_secs(),
                max_delay_s = MAX_DELAY_S,
                "messages published with a delay longer than the retention are removed before delivery"
            );
        }
        let positive = [
            ("MAX_MESSAGES", self.max_messages),
            ("MAX_IDEMPOTENCY_KEYS", self.max_idempotency_keys),
            ("SWEEP_BATCH", self.sweep_batch),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(invalid(name, "expected at least 1, found 0".into()));
            }
        }
        if self.sweep_interval < Duration::from_millis(100) {
            return Err(invalid(
                "SWEEP_INTERVAL",
                format!(
                    "expected at least 100ms, found {}",
                    display_duration(self.sweep_interval)
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Settings::default().validate().expect("defaults pass");
    }

    #[test]
    fn zero_deliveries_is_rejected() {
        let settings = Settings {
            max_deliveries: 0,
            ..Settings::default()
        };
        let error = settings.validate().unwrap_err().to_string();
        assert!(error.contains("MESSAGING_MAX_DELIVERIES"), "{error}");
    }

    #[test]
    fn lease_outside_range_is_rejected() {
        for lease in [Duration::ZERO, Duration::from_secs(MAX_LEASE_S + 1)] {
            let settings = Settings {
                visibility_timeout: lease,
                ..Settings::default()
            };
            let error = settings.validate().unwrap_err().to_string();
            assert!(error.contains("MESSAGING_VISIBILITY_TIMEOUT"), "{error}");
        }
    }
}
