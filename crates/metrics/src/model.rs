//! Samples, series identities, roll-up buckets and summaries, with the limits on input.

use std::ops::Range;
use std::time::Duration;

use platform::Timestamp;
use serde::Serialize;

/// Maximum length of a namespace or name, in characters.
pub const MAX_NAME_LEN: usize = 128;
/// Most labels on one sample.
pub const MAX_LABELS: usize = 32;
/// Maximum length of a label name, in characters.
pub const MAX_LABEL_NAME_LEN: usize = 128;
/// Maximum length of a label value, in bytes.
pub const MAX_LABEL_VALUE_LEN: usize = 1024;
/// How far ahead of the clock a sample's timestamp may be.
pub const MAX_FUTURE_SKEW: Duration = Duration::from_secs(10 * 60);

/// True for a namespace or name: 1 to 128 of `A-Z a-z 0-9 _ . : -`.
pub fn is_valid_name(text: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// True for a label name: `[A-Za-z_][A-Za-z0-9_]*`, at most 128 characters.
pub fn is_valid_label_name(text: &str) -> bool {
    let mut bytes = text.bytes();
    text.len() <= MAX_LABEL_NAME_LEN
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Appends the identity of a series, `namespace.name{k1=v1,k2=v2}`, to `out`.
///
/// `labels` must be sorted by name. In values, `\`, `,`, `=` and `}` are escaped with a
/// backslash, so distinct label sets never share an identity; names cannot contain them.
pub fn write_identity<S: AsRef<str>>(
    out: &mut String,
    namespace: &str,
    name: &str,
    labels: &[(S, S)],
) {
    out.push_str(namespace);
    out.push('.');
    out.push_str(name);
    out.push('{');
    for (index, (label, value)) in labels.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(label.as_ref());
        out.push('=');
        push_escaped(out, value.as_ref());
    }
    out.push('}');
}

fn push_escaped(out: &mut String, value: &str) {
    let needs_escape = |c: char| matches!(c, '\\' | ',' | '=' | '}');
    if !value.contains(needs_escape) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        if needs_escape(c) {
            out.push('\\');
        }
        out.push(c);
    }
}

/// Time cut into roll-up buckets of one fixed length, counted from the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeline {
    interval_micros: i64,
}

impl Timeline {
    /// Buckets of `interval`, which must be at least one microsecond.
    pub fn new(interval: Duration) -> Self {
        let micros = i64::try_from(interval.as_micros()).unwrap_or(i64::MAX);
        Timeline {
            interval_micros: micros.max(1),
        }
    }

    /// Returns the bucket length.
    pub fn interval(self) -> Duration {
        Duration::from_micros(self.interval_micros as u64)
    }

    /// Returns the index of the bucket containing an instant in Unix microseconds.
    pub fn index_of_micros(self, micros: i64) -> i64 {
        micros.div_euclid(self.interval_micros)
    }

    /// Returns the index of the bucket containing `at`.
    pub fn index_of(self, at: Timestamp) -> i64 {
        self.index_of_micros(at.unix_micros())
    }

    /// When bucket `index` begins.
    pub fn start_of(self, index: i64) -> Timestamp {
        let micros = index.saturating_mul(self.interval_micros);
        Timestamp::from_unix_micros(micros).unwrap_or(Timestamp::EPOCH)
    }

    /// Returns the start of the bucket containing `at`.
    pub fn align(self, at: Timestamp) -> Timestamp {
        self.start_of(self.index_of(at))
    }
}

/// Namespace and name filters of a summary; `None` matches every value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeriesFilter {
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl SeriesFilter {
    /// True when a series of this namespace and name passes the filter.
    pub fn matches(&self, namespace: &str, name: &str) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|wanted| wanted == namespace)
            && self.name.as_deref().is_none_or(|wanted| wanted == name)
    }
}

/// Statistics of one series over a window, as the API returns them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub mean: f64,
    /// Timestamp of the newest sample.
    pub last: Timestamp,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
}

/// Validated samples with their series identities, ready to be recorded.
///
/// Identities share one buffer, so a batch costs a few allocations whatever its size.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    identities: String,
    samples: Vec<BatchSample>,
}

/// One sample of a [`Batch`].
#[derive(Clone, Debug)]
pub struct BatchSample {
    identity: Range<usize>,
    namespace_len: u8,
    name_len: u8,
    /// A finite number.
    pub value: f64,
    /// Unix microseconds.
    pub at_micros: i64,
}

impl Batch {
    /// Creates an empty batch with room for `samples` samples.
    pub fn with_capacity(samples: usize) -> Self {
        Batch {
            identities: String::with_capacity(samples * 48),
            samples: Vec::with_capacity(samples),
        }
    }

    /// Adds a sample; `namespace` and `name` must be valid and `labels` sorted by name.
    pub fn push<S: AsRef<str>>(
        &mut self,
        namespace: &str,
        name: &str,
        labels: &[(S, S)],
        value: f64,
        at: Timestamp,
    ) {
        let start = self.identities.len();
        write_identity(&mut self.identities, namespace, name, labels);
        self.samples.push(BatchSample {
            identity: start..self.identities.len(),
            namespace_len: namespace.len() as u8,
            name_len: name.len() as u8,
            value,
            at_micros: at.unix_micros(),
        });
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Returns true when the batch contains no sample.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The samples.
    pub fn samples(&self) -> &[BatchSample] {
        &self.samples
    }

    /// Returns the series identity of a sample of this batch.
    pub fn identity(&self, sample: &BatchSample) -> SeriesKey<'_> {
        SeriesKey {
            identity: &self.identities[sample.identity.clone()],
            namespace_len: sample.namespace_len,
            name_len: sample.name_len,
        }
    }
}

/// A series identity together with where its namespace and name end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeriesKey<'a> {
    pub identity: &'a str,
    pub namespace_len: u8,
    pub name_len: u8,
}

impl<'a> SeriesKey<'a> {
    /// Returns the namespace part of the identity.
    pub fn namespace(self) -> &'a str {
        &self.identity[..usize::from(self.namespace_len)]
    }

    /// Returns the name part of the identity.
    pub fn name(self) -> &'a str {
        let start = usize::from(self.namespace_len) + 1;
        &self.identity[start..start + usize::from(self.name_len)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(labels: &[(&str, &str)]) -> String {
        let mut out = String::new();
        write_identity(&mut out, "game", "latency_ms", labels);
        out
    }

    #[test]
    fn identity_lists_labels_in_given_order() {
        assert_eq!(identity(&[]), "game.latency_ms{}");
        assert_eq!(
            identity(&[("region", "eu"), ("route", "/login")]),
            "game.latency_ms{region=eu,route=/login}"
        );
    }

    #[test]
    fn identity_escapes_separators_in_values() {
        assert_eq!(
            identity(&[("a", r"x\y"), ("b", "1,c=2}")]),
            r"game.latency_ms{a=x\\y,b=1\,c\=2\}}"
        );
        assert_ne!(
            identity(&[("a", "1,b=2")]),
            identity(&[("a", "1"), ("b", "2")])
        );
    }

    #[test]
    fn names_allow_listed_characters_only() {
        assert!(is_valid_name("svc.api:v2-x_y"));
        assert!(is_valid_name(&"n".repeat(128)));
        assert!(!is_valid_name(&"n".repeat(129)));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("has space"));
        assert!(!is_valid_name("brace{"));
        assert!(!is_valid_name("é"));
    }

    #[test]
    fn label_names_follow_identifier_rules() {
        assert!(is_valid_label_name("route"));
        assert!(is_valid_label_name("_x9"));
        assert!(!is_valid_label_name("9x"));
        assert!(!is_valid_label_name(""));
        assert!(!is_valid_label_name("a-b"));
        assert!(!is_valid_label_name("a.b"));
    }

    #[test]
    fn timeline_aligns_before_epoch_too() {
        let timeline = Timeline::new(Duration::from_secs(60));
        assert_eq!(timeline.index_of_micros(59_999_999), 0);
        assert_eq!(timeline.index_of_micros(60_000_000), 1);
        assert_eq!(timeline.index_of_micros(-1), -1);
        let at = Timestamp::parse("2030-01-01T00:01:30Z").expect("valid");
        assert_eq!(
            timeline.align(at).to_string(),
            "2030-01-01T00:01:00.000000Z"
        );
    }

    #[test]
    fn batch_keeps_identity_parts() {
        let mut batch = Batch::with_capacity(2);
        batch.push::<&str>("ns", "req", &[], 1.0, Timestamp::EPOCH);
        batch.push("a.b", "c", &[("k", "v")], 2.0, Timestamp::EPOCH);
        let keys: Vec<_> = batch.samples().iter().map(|s| batch.identity(s)).collect();
        assert_eq!(keys[0].identity, "ns.req{}");
        assert_eq!(keys[1].identity, "a.b.c{k=v}");
        assert_eq!(keys[1].namespace(), "a.b");
        assert_eq!(keys[1].name(), "c");
    }
}
