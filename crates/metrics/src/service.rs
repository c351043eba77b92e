//! Collector rules: sample validation, series identities, windows and retention.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use platform::{SharedClock, Timestamp};

use crate::config::Settings;
use crate::input::{RawSample, Text};
use crate::model::{
    self, Batch, MAX_FUTURE_SKEW, MAX_LABEL_VALUE_LEN, MAX_LABELS, MAX_NAME_LEN, SeriesFilter,
    Summary, Timeline,
};
use crate::store::{MetricsStore, StoreError};

/// Errors of collector operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input field or parameter is missing or invalid.
    #[error("{message}")]
    Invalid { field: String, message: String },
    /// A batch without samples.
    #[error("the batch is empty; send at least one sample")]
    EmptyBatch,
    /// The store failed, or refused the samples.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A summary request: filters and an optional window.
#[derive(Clone, Debug, Default)]
pub struct SummaryQuery {
    pub filter: SeriesFilter,
    /// `None` means all retained data.
    pub window: Option<Duration>,
}

/// The collector: every metrics rule lives here, over any store.
pub struct Collector {
    store: Arc<dyn MetricsStore>,
    clock: SharedClock,
    timeline: Timeline,
    retention: Duration,
}

impl Collector {
    /// Creates the service over a store, a clock and the roll-up settings.
    pub fn new(store: Arc<dyn MetricsStore>, clock: SharedClock, settings: &Settings) -> Self {
        Collector {
            store,
            clock,
            timeline: Timeline::new(settings.rollup_interval),
            retention: settings.retention,
        }
    }

    /// Returns the roll-up bucket length.
    pub fn rollup_interval(&self) -> Duration {
        self.timeline.interval()
    }

    /// Records one sample and returns its series' summary over all retained data.
    pub async fn ingest_one(&self, mut raw: RawSample<Text<'_>>) -> Result<Summary, Error> {
        let now = self.clock.now();
        let mut batch = Batch::with_capacity(1);
        self.validate_into(&mut raw, None, now, &mut batch)?;

        let aggregate = self
            .store
            .record_series(&batch, self.retained_from(now))
            .await?;
        let series = batch.identity(&batch.samples()[0]).identity;
        tracing::debug!(series, "sample recorded");
        aggregate.summary().ok_or_else(|| {
            Error::Store(StoreError::Corrupt {
                series: series.to_string(),
                source: "the series has no samples right after recording one".into(),
            })
        })
    }

    /// Records a batch, all or nothing; returns the number of samples.
    pub async fn ingest_batch(&self, mut raws: Vec<RawSample<Text<'_>>>) -> Result<usize, Error> {
        if raws.is_empty() {
            return Err(Error::EmptyBatch);
        }
        let now = self.clock.now();
        let mut batch = Batch::with_capacity(raws.len());
        for (index, raw) in raws.iter_mut().enumerate() {
            self.validate_into(raw, Some(index), now, &mut batch)?;
        }

        self.store.record(&batch).await?;
        tracing::debug!(samples = batch.len(), "batch recorded");
        Ok(batch.len())
    }

    /// Summarizes every series that passes the filter over the window, keyed by identity.
    ///
    /// A window begins with the bucket containing `now - window`, so it covers every sample
    /// of that span and up to one roll-up interval more. It has no end: the current partial
    /// bucket counts, and so do samples stamped up to 10 minutes ahead.
    pub async fn summary(&self, query: &SummaryQuery) -> Result<BTreeMap<String, Summary>, Error> {
        let now = self.clock.now();
        let from = match query.window {
            Some(window) => self.timeline.align(now.saturating_sub(window)),
            None => self.retained_from(now),
        };
        let merged = self.store.summarize(&query.filter, from).await?;
        Ok(merged
            .into_iter()
            .filter_map(|(identity, aggregate)| Some((identity, aggregate.summary()?)))
            .collect())
    }

    /// Drops data older than the retention.
    pub async fn sweep(&self) -> Result<(), Error> {
        let before = self.retained_from(self.clock.now());
        Ok(self.store.expire(before).await?)
    }

    /// Persists samples recorded since the last flush; returns how many buckets were written.
    pub async fn flush(&self) -> Result<usize, Error> {
        Ok(self.store.flush().await?)
    }

    /// Counts of work not yet persisted, by kind.
    pub fn backlog(&self) -> Vec<(&'static str, u64)> {
        self.store.backlog()
    }

    /// Parses a summary window: a duration above zero and at most the retention.
    pub fn parse_window(&self, text: &str) -> Result<Duration, String> {
        let expected = || {
            format!(
                "must be a duration such as 1m, 15m or 1h, above zero and at most the retention of {}",
                humanize(self.retention)
            )
        };
        match platform::config::parse_duration(text) {
            Some(window) if !window.is_zero() && window <= self.retention => Ok(window),
            _ => Err(expected()),
        }
    }

    /// Returns the start of the oldest bucket kept, the one containing `now - retention`.
    fn retained_from(&self, now: Timestamp) -> Timestamp {
        self.timeline.align(now.saturating_sub(self.retention))
    }

    fn validate_into(
        &self,
        raw: &mut RawSample<Text<'_>>,
        index: Option<usize>,
        now: Timestamp,
        batch: &mut Batch,
    ) -> Result<(), Error> {
        let field = |name: &str| match index {
            Some(index) => format!("[{index}].{name}"),
            None => name.to_string(),
        };

        let namespace = checked_name(raw.namespace.as_deref(), || field("namespace"))?;
        let name = checked_name(raw.name.as_deref(), || field("name"))?;
        let value = match raw.value {
            Some(value) if value.is_finite() => value,
            Some(_) => return Err(invalid(field("value"), "value must be a finite number")),
            None => return Err(invalid(field("value"), "value is required")),
        };
        let at = match raw.timestamp.as_deref() {
            Some(text) => self.checked_timestamp(text, now, || field("timestamp"))?,
            None => now,
        };

        let labels = raw
            .labels
            .as_mut()
            .map(|labels| &mut labels.0[..])
            .unwrap_or_default();
        check_labels(labels, || field("labels"))?;
        batch.push(namespace, name, labels, value, at);
        Ok(())
    }

    fn checked_timestamp(
        &self,
        text: &str,
        now: Timestamp,
        field: impl Fn() -> String,
    ) -> Result<Timestamp, Error> {
        let Ok(at) = Timestamp::parse(text) else {
            let field = field();
            return Err(invalid(
                field.clone(),
                format!("{field} must be an RFC 3339 timestamp such as 2024-05-01T12:00:00Z"),
            ));
        };
        if at < now.saturating_sub(self.retention) {
            let field = field();
            return Err(invalid(
                field.clone(),
                format!(
                    "{field} {at} is older than the retention of {}",
                    humanize(self.retention)
                ),
            ));
        }
        if at > now.saturating_add(MAX_FUTURE_SKEW) {
            let field = field();
            return Err(invalid(
                field.clone(),
                format!("{field} {at} is more than 10 minutes ahead of the server clock ({now})"),
            ));
        }
        Ok(at)
    }
}

fn invalid(field: String, message: impl Into<String>) -> Error {
    Error::Invalid {
        field,
        message: message.into(),
    }
}

/// Checks a namespace or name given by a client.
fn checked_name(text: Option<&str>, field: impl Fn() -> String) -> Result<&str, Error> {
    match text {
        Some(text) if model::is_valid_name(text) => Ok(text),
        Some(text) if !text.is_empty() => {
            let field = field();
            Err(invalid(
                field.clone(),
                format!(
                    "{field} must be 1 to {MAX_NAME_LEN} characters of A-Z, a-z, 0-9, '_', '.', ':' and '-'"
                ),
            ))
        }
        _ => {
            let field = field();
            Err(invalid(field.clone(), format!("{field} is required")))
        }
    }
}

/// Checks a namespace or name filter of a summary request.
pub fn parse_name_filter(text: &str) -> Result<String, String> {
    if model::is_valid_name(text) {
        Ok(text.to_string())
    } else {
        Err(format!(
            "must be 1 to {MAX_NAME_LEN} characters of A-Z, a-z, 0-9, '_', '.', ':' and '-'"
        ))
    }
}

/// Checks the labels of a sample and sorts them by name, as identities list them.
fn check_labels(
    labels: &mut [(Text<'_>, Text<'_>)],
    field: impl Fn() -> String,
) -> Result<(), Error> {
    if labels.len() > MAX_LABELS {
        let field = field();
        return Err(invalid(
            field.clone(),
            format!(
                "{field} has {} entries; at most {MAX_LABELS} are allowed",
                labels.len()
            ),
        ));
    }
    for (label, value) in labels.iter() {
        if !model::is_valid_label_name(label) {
            let field = format!("{}.{}", field(), &**label);
            return Err(invalid(
                field,
                format!(
                    "label name {:?} must match [A-Za-z_][A-Za-z0-9_]* and have at most {} characters",
                    &**label,
                    model::MAX_LABEL_NAME_LEN
                ),
            ));
        }
        if value.len() > MAX_LABEL_VALUE_LEN {
            let field = format!("{}.{}", field(), &**label);
            return Err(invalid(
                field.clone(),
                format!("{field} is longer than {MAX_LABEL_VALUE_LEN} bytes"),
            ));
        }
    }

    labels.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    if let Some(pair) = labels.windows(2).find(|pair| pair[0].0 == pair[1].0) {
        let field = format!("{}.{}", field(), &*pair[0].0);
        return Err(invalid(
            field,
            format!("label {:?} appears more than once", &*pair[0].0),
        ));
    }
    Ok(())
}

/// Writes a duration as `24h`, `90s` or `1500ms`.
fn humanize(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if duration.subsec_nanos() != 0 {
        format!("{}ms", duration.as_millis())
    } else if seconds.is_multiple_of(86_400) && seconds > 86_400 {
        format!("{}d", seconds / 86_400)
    } else if seconds.is_multiple_of(3600) {
        format!("{}h", seconds / 3600)
    } else if seconds.is_multiple_of(60) {
        format!("{}m", seconds / 60)
    } else {
        format!("{seconds}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanize_picks_largest_whole_unit() {
        assert_eq!(humanize(Duration::from_secs(86_400)), "24h");
        assert_eq!(humanize(Duration::from_secs(7 * 86_400)), "7d");
        assert_eq!(humanize(Duration::from_secs(7200)), "2h");
        assert_eq!(humanize(Duration::from_secs(90)), "90s");
        assert_eq!(humanize(Duration::from_secs(300)), "5m");
        assert_eq!(humanize(Duration::from_millis(1500)), "1500ms");
    }
}
