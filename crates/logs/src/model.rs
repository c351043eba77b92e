//! Log events, their levels and fields, the records sinks receive, and input limits.

use std::fmt;
use std::ops::Deref;

use bytestring::ByteString;
use platform::Timestamp;
use serde::de::{self, Deserializer, Unexpected};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use uuid::Uuid;

/// Maximum length of `source`, in bytes.
pub const MAX_SOURCE_LEN: usize = 256;
/// Maximum number of entries in `fields`.
pub const MAX_FIELDS: usize = 64;
/// Maximum length of a field name, in bytes. Values and messages are bounded only by
/// the body limit.
pub const MAX_FIELD_NAME_LEN: usize = 256;

/// Severity of an event, from least to most severe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    /// Every level, least severe first.
    pub const ALL: [Level; 4] = [Level::Debug, Level::Info, Level::Warn, Level::Error];

    /// The accepted spellings, for error messages.
    pub const EXPECTED: &str = "DEBUG, INFO, WARN (or WARNING) or ERROR, in any case";

    /// Parses a level name in any case; `WARNING` is an alias of `WARN`.
    pub fn parse(text: &str) -> Option<Self> {
        if text.eq_ignore_ascii_case("warning") {
            return Some(Level::Warn);
        }
        Level::ALL
            .into_iter()
            .find(|level| text.eq_ignore_ascii_case(level.as_str()))
    }

    /// Returns the upper-case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }

    /// Returns the OpenTelemetry severity number of the level (DEBUG 5, INFO 9, WARN 13,
    /// ERROR 17). Postgres stores levels this way, so a minimum level is a comparison.
    pub fn severity_number(self) -> i16 {
        match self {
            Level::Debug => 5,
            Level::Info => 9,
            Level::Warn => 13,
            Level::Error => 17,
        }
    }

    /// Returns the level of a severity number that `severity_number` produces.
    pub fn from_severity_number(number: i16) -> Option<Self> {
        Level::ALL
            .into_iter()
            .find(|level| level.severity_number() == number)
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Level {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Reads a level from configuration, so that an unknown name stops startup with a
/// message naming the variable.
impl<'de> Deserialize<'de> for Level {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = platform::config::lossy_string(deserializer)?;
        Level::parse(&text)
            .ok_or_else(|| de::Error::invalid_value(Unexpected::Str(&text), &Level::EXPECTED))
    }
}

/// Immutable UTF-8 text. Text parsed from a request body shares the body's buffer, so a
/// clone or a slice costs a reference count instead of a copy.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Text(ByteString);

impl Text {
    /// Slices `part` out of `body` without copying; copies when `part` lies elsewhere.
    pub fn slice_of(body: &ByteString, part: &str) -> Self {
        let start = body.as_ptr() as usize;
        let end = start + body.len();
        let part_start = part.as_ptr() as usize;
        if part_start >= start && part_start + part.len() <= end {
            Text(body.slice_ref(part))
        } else {
            Text::from(part)
        }
    }

    /// The text as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A copy in its own buffer, so that keeping it does not keep the request body alive.
    pub fn detached(&self) -> Self {
        Text::from(self.as_str())
    }
}

impl Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<String> for Text {
    fn from(text: String) -> Self {
        Text(ByteString::from(text))
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Self {
        Text(ByteString::from(text))
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Text {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The string-to-string fields of an event, sorted by name, each name once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields(Vec<(Text, Text)>);

impl Fields {
    /// Sorts the pairs by name; of repeated names the last pair wins, as in a JSON object
    /// read into a map.
    pub fn from_pairs(mut pairs: Vec<(Text, Text)>) -> Self {
        if pairs.len() < 2 {
            return Fields(pairs);
        }
        // The sort is stable, so repeated names stay in body order. `dedup_by` keeps the
        // first pair of a run, so each later pair's value is swapped into it first.
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        pairs.dedup_by(|later, kept| {
            let same_name = later.0 == kept.0;
            if same_name {
                std::mem::swap(later, kept);
            }
            same_name
        });
        Fields(pairs)
    }

    /// The pairs in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }

    /// The value of one field.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(key, _)| key.as_str().cmp(name))
            .ok()
            .map(|index| self.0[index].1.as_str())
    }

    /// The number of fields.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no fields.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Total bytes of names and values.
    pub fn text_len(&self) -> usize {
        self.0
            .iter()
            .map(|(name, value)| name.len() + value.len())
            .sum()
    }

    /// A copy whose texts do not share the request body.
    pub fn detached(&self) -> Self {
        Fields(
            self.0
                .iter()
                .map(|(name, value)| (name.detached(), value.detached()))
                .collect(),
        )
    }
}

impl Serialize for Fields {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name.as_str(), value.as_str())?;
        }
        map.end()
    }
}

/// A validated event as the client sent it, with its timestamp defaulted to receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEvent {
    pub source: Text,
    pub level: Level,
    pub message: Text,
    pub fields: Fields,
    pub timestamp: Timestamp,
}

impl LogEvent {
    /// Total bytes of its texts.
    pub fn text_len(&self) -> usize {
        self.source.len() + self.message.len() + self.fields.text_len()
    }

    /// A copy whose texts do not share the request body.
    pub fn detached(&self) -> Self {
        LogEvent {
            source: self.source.detached(),
            level: self.level,
            message: self.message.detached(),
            fields: self.fields.detached(),
            timestamp: self.timestamp,
        }
    }
}

/// Events accepted by one request, enqueued and delivered as one unit.
///
/// Event `i` has sequence number `first_sequence + i`; all share `received_at`.
#[derive(Debug)]
pub struct Batch {
    /// The pipeline instance that accepted the batch; sequences are unique per origin.
    pub origin: Uuid,
    pub received_at: Timestamp,
    pub first_sequence: u64,
    pub events: Vec<LogEvent>,
}

impl Batch {
    /// The events with their enrichment, in sequence order.
    pub fn records(&self) -> impl ExactSizeIterator<Item = RecordRef<'_>> {
        self.events
            .iter()
            .enumerate()
            .map(|(index, event)| RecordRef {
                event,
                received_at: self.received_at,
                sequence: self.first_sequence + index as u64,
            })
    }

    /// Event `index` with its enrichment; panics when `index` is out of range.
    pub fn record(&self, index: usize) -> RecordRef<'_> {
        RecordRef {
            event: &self.events[index],
            received_at: self.received_at,
            sequence: self.first_sequence + index as u64,
        }
    }

    /// The number of events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// True when the batch contains no events.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// An event with its enrichment, as `GET /logs/recent` returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    pub event: LogEvent,
    pub received_at: Timestamp,
    pub sequence: u64,
}

impl LogRecord {
    /// A borrowed view, for serialization.
    pub fn as_ref(&self) -> RecordRef<'_> {
        RecordRef {
            event: &self.event,
            received_at: self.received_at,
            sequence: self.sequence,
        }
    }
}

/// A record that borrows its event from a batch or a stored record.
#[derive(Clone, Copy, Debug)]
pub struct RecordRef<'a> {
    pub event: &'a LogEvent,
    pub received_at: Timestamp,
    pub sequence: u64,
}

impl RecordRef<'_> {
    /// An owned record whose texts do not share the request body.
    pub fn detached(&self) -> LogRecord {
        LogRecord {
            event: self.event.detached(),
            received_at: self.received_at,
            sequence: self.sequence,
        }
    }
}

/// What `GET /logs/recent` selects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecentQuery {
    /// Only events of this source.
    pub source: Option<String>,
    /// Only events at this level or above.
    pub min_level: Option<Level>,
    /// How many of the newest matches to return.
    pub limit: usize,
}

impl RecentQuery {
    /// True when the event passes both filters.
    pub fn matches(&self, event: &LogEvent) -> bool {
        self.source
            .as_deref()
            .is_none_or(|source| source == event.source.as_str())
            && self.min_level.is_none_or(|level| event.level >= level)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_parses_any_case_and_alias() {
        assert_eq!(Level::parse("debug"), Some(Level::Debug));
        assert_eq!(Level::parse("Info"), Some(Level::Info));
        assert_eq!(Level::parse("WARN"), Some(Level::Warn));
        assert_eq!(Level::parse("wArNiNg"), Some(Level::Warn));
        assert_eq!(Level::parse("ERROR"), Some(Level::Error));
        assert_eq!(Level::parse("fatal"), None);
        assert_eq!(Level::parse(" info"), None);
        assert_eq!(Level::parse(""), None);
    }

    #[test]
    fn levels_order_by_severity() {
        assert!(Level::Debug < Level::Info);
        assert!(Level::Info < Level::Warn);
        assert!(Level::Warn < Level::Error);
        for level in Level::ALL {
            assert_eq!(
                Level::from_severity_number(level.severity_number()),
                Some(level)
            );
        }
    }

    #[test]
    fn fields_sort_and_keep_last_duplicate() {
        let fields = Fields::from_pairs(vec![
            (Text::from("b"), Text::from("1")),
            (Text::from("a"), Text::from("2")),
            (Text::from("b"), Text::from("3")),
        ]);
        let pairs: Vec<_> = fields.iter().collect();
        assert_eq!(pairs, vec![("a", "2"), ("b", "3")]);
        assert_eq!(fields.get("b"), Some("3"));
        assert_eq!(fields.get("c"), None);
    }

    #[test]
    fn text_slices_share_the_body() {
        let body = ByteString::from("{\"source\":\"api\"}");
        let part = &body[11..14];
        let text = Text::slice_of(&body, part);
        assert_eq!(text.as_str(), "api");
        assert_eq!(text.as_ptr(), part.as_ptr());

        let elsewhere = Text::slice_of(&body, "api");
        assert_eq!(elsewhere.as_str(), "api");
        assert_ne!(elsewhere.as_ptr(), part.as_ptr());
        assert_ne!(text.detached().as_ptr(), part.as_ptr());
    }
}
