//! Settings read from `LOG_PIPELINE_*` variables and the `[log_pipeline]` table.

use std::num::NonZeroUsize;
use std::time::Duration;

use platform::config::duration;
use serde::Deserialize;

use crate::model::Level;

/// Log pipeline settings beyond the common ones.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Maximum events accepted but not yet delivered to every sink. A batch that does
    /// not fit is rejected with 503.
    pub queue_size: NonZeroUsize,
    /// Events below this level are counted as filtered and dropped.
    pub min_level: Level,
    /// Size of the recent-events ring, and the default and maximum `limit` of
    /// `GET /logs/recent`.
    pub recent_capacity: NonZeroUsize,
    /// Also write every event to stdout as a JSON line.
    pub stdout: bool,
    /// How long stored events are kept (in Postgres and in the ring), counted from
    /// `received_at`.
    #[serde(deserialize_with = "duration")]
    pub retention: Duration,
    /// Time between retention sweeps.
    #[serde(deserialize_with = "duration")]
    pub retention_sweep_interval: Duration,
    /// Maximum events one sweep statement deletes, so that no statement runs for long.
    pub retention_sweep_batch: NonZeroUsize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            queue_size: nonzero(256),
            min_level: Level::Info,
            recent_capacity: nonzero(200),
            stdout: true,
            retention: Duration::from_secs(7 * 24 * 60 * 60),
            retention_sweep_interval: Duration::from_secs(60),
            retention_sweep_batch: nonzero(5_000),
        }
    }
}

const fn nonzero(value: usize) -> NonZeroUsize {
    match NonZeroUsize::new(value) {
        Some(value) => value,
        None => panic!("default sizes are not zero"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::config::{Loader, SourceSpec};

    const SPEC: SourceSpec = SourceSpec {
        prefix: "LOG_PIPELINE_",
        section: "log_pipeline",
        excluded_prefixes: &[],
        default_port: 8082,
    };

    #[test]
    fn defaults_match_the_documented_values() {
        let settings: Settings = Loader::from_values(SPEC, &[]).extract().expect("valid");
        assert_eq!(settings.queue_size.get(), 256);
        assert_eq!(settings.min_level, Level::Info);
        assert_eq!(settings.recent_capacity.get(), 200);
        assert!(settings.stdout);
        assert_eq!(settings.retention, Duration::from_secs(604_800));
    }

    #[test]
    fn min_level_accepts_any_case() {
        let loader = Loader::from_values(SPEC, &[("min_level", "warning")]);
        let settings: Settings = loader.extract().expect("valid");
        assert_eq!(settings.min_level, Level::Warn);
    }

    #[test]
    fn unknown_min_level_is_rejected() {
        let loader = Loader::from_values(SPEC, &[("min_level", "loud")]);
        let error = loader.extract::<Settings>().unwrap_err().to_string();
        assert!(error.contains("min_level"), "{error}");
        assert!(error.contains("DEBUG, INFO, WARN"), "{error}");
    }

    #[test]
    fn zero_queue_size_is_rejected() {
        let loader = Loader::from_values(SPEC, &[("queue_size", "0")]);
        let error = loader.extract::<Settings>().unwrap_err().to_string();
        assert!(error.contains("queue_size"), "{error}");
    }
}
