//! Settings read from `METRICS_*` variables and the `[metrics]` table.

use std::time::Duration;

use platform::config::{ConfigError, display_duration, duration};
use serde::Deserialize;

/// Metrics Collector settings beyond the common ones.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Length of a roll-up bucket, the finest time resolution of summaries.
    #[serde(deserialize_with = "duration")]
    pub rollup_interval: Duration,
    /// How long buckets are kept; older samples are rejected and older buckets dropped.
    #[serde(deserialize_with = "duration")]
    pub retention: Duration,
    /// Maximum number of series one process keeps, in either store. A sample for a new
    /// series past it is rejected with 429.
    pub max_series: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            rollup_interval: Duration::from_secs(60),
            retention: Duration::from_secs(24 * 60 * 60),
            max_series: 100_000,
        }
    }
}

impl Settings {
    /// Checks that the settings fit together; the error names the variable at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |variable: &str, detail: String| ConfigError::Invalid {
            origin: format!("METRICS_{variable}"),
            detail,
        };
        if self.rollup_interval < Duration::from_secs(1) {
            return Err(invalid(
                "ROLLUP_INTERVAL",
                format!(
                    "expected at least 1s, found {}",
                    display_duration(self.rollup_interval)
                ),
            ));
        }
        if self.retention < self.rollup_interval {
            return Err(invalid(
                "RETENTION",
                format!(
                    "expected at least the roll-up interval ({}), found {}",
                    display_duration(self.rollup_interval),
                    display_duration(self.retention)
                ),
            ));
        }
        if self.max_series == 0 {
            return Err(invalid("MAX_SERIES", "expected at least 1, found 0".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use platform::config::{Loader, SourceSpec};

    use super::*;

    const SPEC: SourceSpec = SourceSpec {
        prefix: "METRICS_",
        section: "metrics",
        excluded_prefixes: &[],
        default_port: 8081,
    };

    #[test]
    fn durations_and_counts_parse() {
        let loader = Loader::from_values(
            SPEC,
            &[
                ("rollup_interval", "10s"),
                ("retention", "2h"),
                ("max_series", "50"),
            ],
        );
        let settings: Settings = loader.extract().expect("valid");
        assert_eq!(settings.rollup_interval, Duration::from_secs(10));
        assert_eq!(settings.retention, Duration::from_secs(7200));
        assert_eq!(settings.max_series, 50);
        settings.validate().expect("consistent");
    }

    #[test]
    fn inconsistent_values_name_the_variable() {
        let cases = [
            (("rollup_interval", "500ms"), "METRICS_ROLLUP_INTERVAL"),
            (("retention", "30s"), "METRICS_RETENTION"),
            (("max_series", "0"), "METRICS_MAX_SERIES"),
        ];
        for (value, variable) in cases {
            let settings: Settings = Loader::from_values(SPEC, &[value])
                .extract()
                .expect("parses");
            let error = settings.validate().unwrap_err().to_string();
            assert!(error.contains(variable), "{error}");
        }
    }
}
