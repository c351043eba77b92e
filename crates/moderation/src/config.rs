//! Settings read from `UGC_*` variables (not `UGC_SERVICE_*`) and the `[ugc]` table.

use std::path::{Path, PathBuf};
use std::time::Duration;

use platform::config::{ConfigError, duration, lossy_string};
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use crate::policy::{self, Policy, PolicyError};
use crate::service::QueueSettings;

/// Banned terms when neither `UGC_BANNED_TERMS` nor `UGC_BANNED_TERMS_FILE` is set.
pub const DEFAULT_BANNED_TERMS: &str = "spam,scam";

/// UGC Worker settings beyond the common ones.
///
/// The banned terms come from exactly one place: `banned_terms` (a comma-separated list,
/// or an array in TOML), `banned_terms_file` (one phrase per line), or, when neither is
/// set, [`DEFAULT_BANNED_TERMS`]. Setting both is a startup error rather than a silent
/// choice, and an empty value counts as not set.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Maximum jobs accepted but not yet decided; past it, submissions are rejected with
    /// 503. In Postgres mode the count covers every replica.
    pub queue_size: usize,
    /// Moderation workers per process; at least 1.
    pub workers: usize,
    /// Banned terms given inline; `None` when not set.
    #[serde(deserialize_with = "term_list")]
    pub banned_terms: Option<Vec<String>>,
    /// A file of banned terms, one per line; `None` when not set.
    #[serde(deserialize_with = "optional_path")]
    pub banned_terms_file: Option<PathBuf>,
    /// How long a worker's claim on a job lasts; a job whose worker died is claimed again
    /// once it has passed.
    #[serde(deserialize_with = "duration")]
    pub claim_lease: Duration,
    /// How often idle workers look for jobs that no local submission announced: jobs taken
    /// by other replicas, and claims whose lease expired.
    #[serde(deserialize_with = "duration")]
    pub poll_interval: Duration,
    /// Most decisions the memory store keeps until they are fetched; when it is full,
    /// workers wait. Postgres mode has no such cap.
    pub max_decisions: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            queue_size: 256,
            workers: 4,
            banned_terms: None,
            banned_terms_file: None,
            // Moderating one job takes well under a second, so a lease this long expires
            // only when its worker is gone.
            claim_lease: Duration::from_secs(30),
            // Local submissions wake the workers at once; the poll only bounds the delay for
            // work that arrives through another replica or an expired lease.
            poll_interval: Duration::from_millis(500),
            max_decisions: 10_000,
        }
    }
}

impl Settings {
    /// Checks the values that deserialization alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        at_least_one("QUEUE_SIZE", self.queue_size)?;
        at_least_one("WORKERS", self.workers)?;
        at_least_one("MAX_DECISIONS", self.max_decisions)?;
        if self.claim_lease.is_zero() {
            return Err(invalid("CLAIM_LEASE", "expected a duration above zero"));
        }
        if self.poll_interval.is_zero() {
            return Err(invalid("POLL_INTERVAL", "expected a duration above zero"));
        }
        if self.banned_terms.is_some() && self.banned_terms_file.is_some() {
            return Err(ConfigError::Inconsistent(format!(
                "{} and {} are both set; set only one of them",
                variable("BANNED_TERMS"),
                variable("BANNED_TERMS_FILE")
            )));
        }
        Ok(())
    }

    /// Returns the limits the service applies to the queue.
    pub fn queue(&self) -> QueueSettings {
        QueueSettings {
            queue_size: self.queue_size,
            claim_lease: self.claim_lease,
        }
    }

    /// Builds the policy from the configured source, reading the file if one is named.
    pub fn load_policy(&self) -> Result<Policy, ConfigError> {
        let (name, terms) = match (&self.banned_terms, &self.banned_terms_file) {
            (_, Some(path)) => ("BANNED_TERMS_FILE", read_term_file(path)?),
            (Some(terms), None) => ("BANNED_TERMS", terms.clone()),
            (None, None) => (
                "BANNED_TERMS",
                policy::parse_term_list(DEFAULT_BANNED_TERMS),
            ),
        };
        Policy::new(&terms).map_err(|error| match error {
            PolicyError::Empty => invalid(name, "expected at least one banned term, found none"),
            PolicyError::Build { .. } => invalid(name, &error.to_string()),
        })
    }

    /// Describes where the terms come from, for the startup log.
    pub fn policy_source(&self) -> String {
        match (&self.banned_terms, &self.banned_terms_file) {
            (_, Some(path)) => path.display().to_string(),
            (Some(_), None) => variable("BANNED_TERMS"),
            (None, None) => "built-in default".to_string(),
        }
    }
}

fn read_term_file(path: &Path) -> Result<Vec<String>, ConfigError> {
    let name = "BANNED_TERMS_FILE";
    let text = std::fs::read(path)
        .map_err(|error| invalid(name, &format!("cannot read {}: {error}", path.display())))?;
    let text = String::from_utf8(text)
        .map_err(|_| invalid(name, &format!("{} is not valid UTF-8", path.display())))?;
    Ok(policy::parse_term_lines(&text))
}

/// Names the environment variable of a setting, such as `UGC_WORKERS`.
fn variable(name: &str) -> String {
    format!("{}{name}", crate::SERVICE.config.prefix)
}

fn invalid(name: &str, detail: &str) -> ConfigError {
    ConfigError::Invalid {
        origin: variable(name),
        detail: detail.to_string(),
    }
}

fn at_least_one(name: &str, value: usize) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(invalid(name, "expected at least 1, found 0"));
    }
    Ok(())
}

/// Deserializes a term list: a comma-separated string, or an array of strings in TOML.
/// An empty string means not set.
fn term_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<String>>, D::Error> {
    struct Terms;
    impl<'de> Visitor<'de> for Terms {
        type Value = Option<Vec<String>>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a comma-separated list of terms or an array of strings")
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
            if value.trim().is_empty() {
                return Ok(None);
            }
            Ok(Some(policy::parse_term_list(value)))
        }

        fn visit_bool<E: de::Error>(self, value: bool) -> Result<Self::Value, E> {
            self.visit_str(&value.to_string())
        }

        fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
            self.visit_str(&value.to_string())
        }

        fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
            self.visit_str(&value.to_string())
        }

        fn visit_f64<E: de::Error>(self, value: f64) -> Result<Self::Value, E> {
            self.visit_str(&value.to_string())
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Self::Value, A::Error> {
            let mut terms = Vec::new();
            while let Some(term) = items.next_element::<Term>()? {
                let term = term.0.trim();
                if !term.is_empty() {
                    terms.push(term.to_string());
                }
            }
            Ok(Some(terms))
        }
    }
    deserializer.deserialize_any(Terms)
}

/// One array entry of a term list; numbers and booleans count as their text.
struct Term(String);

impl<'de> Deserialize<'de> for Term {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        lossy_string(deserializer).map(Term)
    }
}

/// Deserializes a file path; an empty string means not set.
fn optional_path<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<PathBuf>, D::Error> {
    let text = lossy_string(deserializer)?;
    let text = text.trim();
    Ok((!text.is_empty()).then(|| PathBuf::from(text)))
}

#[cfg(test)]
mod tests {
    use platform::config::Loader;

    use super::*;

    fn load(values: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let settings: Settings = Loader::from_values(crate::SERVICE.config, values).extract()?;
        settings.validate()?;
        Ok(settings)
    }

    fn error_text(values: &[(&str, &str)]) -> String {
        match load(values).and_then(|settings| settings.load_policy()) {
            Ok(_) => panic!("settings {values:?} were accepted"),
            Err(error) => error.to_string(),
        }
    }

    fn temp_file(name: &str, contents: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("moderation-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).expect("write temp file");
        path
    }

    #[test]
    fn defaults_use_built_in_terms() {
        let settings = load(&[]).expect("defaults are valid");
        assert_eq!(settings.queue_size, 256);
        assert_eq!(settings.workers, 4);
        let policy = settings.load_policy().expect("default policy");
        assert_eq!(policy.terms(), ["spam", "scam"]);
    }

    #[test]
    fn inline_terms_are_split_and_trimmed() {
        let settings = load(&[("banned_terms", " casino , free money,,")]).expect("valid");
        let policy = settings.load_policy().expect("policy");
        assert_eq!(policy.terms(), ["casino", "free money"]);
    }

    #[test]
    fn numeric_and_array_terms_are_accepted() {
        let settings = load(&[("banned_terms", "1234")]).expect("valid");
        assert_eq!(settings.banned_terms, Some(vec!["1234".to_string()]));
        let settings = load(&[("banned_terms", "[casino, 42]")]).expect("valid");
        assert_eq!(
            settings.banned_terms,
            Some(vec!["casino".to_string(), "42".to_string()])
        );
    }

    #[test]
    fn empty_values_count_as_not_set() {
        let settings = load(&[("banned_terms", ""), ("banned_terms_file", "")]).expect("valid");
        assert_eq!(settings.banned_terms, None);
        assert_eq!(settings.banned_terms_file, None);
    }

    #[test]
    fn terms_without_entries_are_rejected() {
        let error = error_text(&[("banned_terms", " , ,")]);
        assert!(error.contains("UGC_BANNED_TERMS"), "{error}");
        assert!(error.contains("at least one banned term"), "{error}");
    }

    #[test]
    fn zero_workers_are_rejected() {
        let error = error_text(&[("workers", "0")]);
        assert!(error.contains("UGC_WORKERS"), "{error}");
        assert!(error.contains("at least 1"), "{error}");
    }

    #[test]
    fn zero_queue_size_and_lease_are_rejected() {
        assert!(error_text(&[("queue_size", "0")]).contains("UGC_QUEUE_SIZE"));
        assert!(error_text(&[("claim_lease", "0s")]).contains("UGC_CLAIM_LEASE"));
        assert!(error_text(&[("poll_interval", "0")]).contains("UGC_POLL_INTERVAL"));
        assert!(error_text(&[("max_decisions", "0")]).contains("UGC_MAX_DECISIONS"));
    }

    #[test]
    fn term_file_is_read_one_phrase_per_line() {
        let path = temp_file("terms.txt", "casino\n\nfree money\r\n");
        let path_text = path.display().to_string();
        let settings = load(&[("banned_terms_file", &path_text)]).expect("valid");
        let policy = settings.load_policy().expect("policy");
        assert_eq!(policy.terms(), ["casino", "free money"]);
        assert_eq!(settings.policy_source(), path_text);
        std::fs::remove_file(path).expect("remove temp file");
    }

    #[test]
    fn missing_term_file_names_variable() {
        let error = error_text(&[("banned_terms_file", "/nonexistent/terms.txt")]);
        assert!(error.contains("UGC_BANNED_TERMS_FILE"), "{error}");
        assert!(error.contains("/nonexistent/terms.txt"), "{error}");
    }

    #[test]
    fn empty_term_file_is_rejected() {
        let path = temp_file("empty.txt", "\n  \n");
        let error = error_text(&[("banned_terms_file", &path.display().to_string())]);
        assert!(error.contains("UGC_BANNED_TERMS_FILE"), "{error}");
        std::fs::remove_file(path).expect("remove temp file");
    }

    #[test]
    fn both_term_sources_are_rejected() {
        let error = error_text(&[
            ("banned_terms", "spam"),
            ("banned_terms_file", "/tmp/terms.txt"),
        ]);
        assert!(
            error.contains("UGC_BANNED_TERMS and UGC_BANNED_TERMS_FILE"),
            "{error}"
        );
    }
}
