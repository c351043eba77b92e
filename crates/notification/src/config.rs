//! Settings read from `NOTIFY_*` variables and the `[notify]` table.

use std::time::Duration;

use platform::config::{ConfigError, duration};
use serde::Deserialize;

/// Notification settings beyond the common ones.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Maximum number of deliveries `GET /notifications/recent` returns. Memory mode keeps a ring of
    /// this size; Postgres mode prunes rows beyond it. Each in-memory sender also keeps
    /// this many of the deliveries it sent.
    pub recent_capacity: usize,
    /// How often Postgres mode deletes sent rows beyond `recent_capacity` and pending rows
    /// abandoned by a process that stopped mid-send.
    #[serde(deserialize_with = "duration")]
    pub prune_interval: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            recent_capacity: 200,
            // Pruning is cheap, and history may overshoot the capacity until it runs.
            prune_interval: Duration::from_secs(60),
        }
    }
}

impl Settings {
    /// Checks values that deserialize fine but cannot work.
    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        if self.recent_capacity == 0 {
            return Err(ConfigError::Invalid {
                origin: format!("{prefix}RECENT_CAPACITY"),
                detail: "expected at least 1, found 0".to_string(),
            });
        }
        if self.prune_interval.is_zero() {
            return Err(ConfigError::Invalid {
                origin: format!("{prefix}PRUNE_INTERVAL"),
                detail: "expected a duration above zero, such as 60s".to_string(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::config::{Loader, SourceSpec};

    const SPEC: SourceSpec = SourceSpec {
        prefix: "NOTIFY_",
        section: "notify",
        excluded_prefixes: &[],
        default_port: 8084,
    };

    #[test]
    fn defaults_are_valid() {
        let settings = Settings::default();
        assert_eq!(settings.recent_capacity, 200);
        assert!(settings.validate("NOTIFY_").is_ok());
    }

    #[test]
    fn values_are_read() {
        let loader =
            Loader::from_values(SPEC, &[("recent_capacity", "5"), ("prune_interval", "5m")]);
        let settings: Settings = loader.extract().expect("valid");
        assert_eq!(settings.recent_capacity, 5);
        assert_eq!(settings.prune_interval, Duration::from_secs(300));
    }

    #[test]
    fn zero_capacity_names_variable() {
        let loader = Loader::from_values(SPEC, &[("recent_capacity", "0")]);
        let settings: Settings = loader.extract().expect("deserializes");
        let error = settings.validate("NOTIFY_").unwrap_err().to_string();
        assert!(error.contains("NOTIFY_RECENT_CAPACITY"), "{error}");
    }

    #[test]
    fn zero_prune_interval_names_variable() {
        let loader = Loader::from_values(SPEC, &[("prune_interval", "0s")]);
        let settings: Settings = loader.extract().expect("deserializes");
        let error = settings.validate("NOTIFY_").unwrap_err().to_string();
        assert!(error.contains("NOTIFY_PRUNE_INTERVAL"), "{error}");
    }
}
