//! Timestamps with microsecond precision, and the clock that makes them.
//!
//! Both stores keep microseconds (Postgres `timestamptz` cannot hold more), so every
//! timestamp is truncated to microseconds when it is made or parsed.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

/// A UTC instant with microsecond precision, written as RFC 3339 with a `Z` suffix.
#[derive(Clone, Copy, PartialEq, Eq, Hash, sqlx::Type)]
#[sqlx(transparent)]
pub struct Timestamp(OffsetDateTime);

impl Ord for Timestamp {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Every timestamp is in UTC, so its calendar fields order it. OffsetDateTime's own
        // comparison converts both sides to UTC first, and the memory stores' indexes
        // compare timestamps a dozen times per insert.
        (self.0.date(), self.0.time()).cmp(&(other.0.date(), other.0.time()))
    }
}

impl PartialOrd for Timestamp {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Timestamp {
    /// The Unix epoch, useful as a lower bound.
    pub const EPOCH: Timestamp = Timestamp(OffsetDateTime::UNIX_EPOCH);

    /// Converts any offset to UTC and drops precision below one microsecond.
    pub fn from_datetime(value: OffsetDateTime) -> Self {
        let utc = value.to_offset(UtcOffset::UTC);
        let micros = utc.microsecond();
        Timestamp(utc.replace_microsecond(micros).unwrap_or(utc))
    }

    /// Reads the current system time.
    pub fn now_utc() -> Self {
        Self::from_datetime(OffsetDateTime::now_utc())
    }

    /// Parses RFC 3339 text with any offset.
    pub fn parse(text: &str) -> Result<Self, time::error::Parse> {
        OffsetDateTime::parse(text, &Rfc3339).map(Self::from_datetime)
    }

    /// Microseconds since the Unix epoch.
    pub fn unix_micros(self) -> i64 {
        // The range of OffsetDateTime (years ±9999) fits comfortably in i64 microseconds.
        (self.0.unix_timestamp_nanos() / 1_000) as i64
    }

    /// Builds a timestamp from microseconds since the Unix epoch.
    pub fn from_unix_micros(micros: i64) -> Option<Self> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
            .ok()
            .map(Timestamp)
    }

    /// Adds a duration, saturating at the largest representable time.
    pub fn saturating_add(self, duration: Duration) -> Self {
        let delta = time::Duration::try_from(duration).unwrap_or(time::Duration::MAX);
        Timestamp(self.0.saturating_add(delta))
    }

    /// Subtracts a duration, saturating at the smallest representable time.
    pub fn saturating_sub(self, duration: Duration) -> Self {
        let delta = time::Duration::try_from(duration).unwrap_or(time::Duration::MAX);
        Timestamp(self.0.saturating_sub(delta))
    }

    /// Time elapsed from `earlier` to `self`, or zero when `earlier` is later.
    pub fn duration_since(self, earlier: Timestamp) -> Duration {
        Duration::try_from(self.0 - earlier.0).unwrap_or(Duration::ZERO)
    }

    /// Returns the underlying date-time, always in UTC.
    pub fn as_datetime(self) -> OffsetDateTime {
        self.0
    }
}

/// Length of `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub const RFC3339_LEN: usize = 27;

impl Timestamp {
    /// Writes the RFC 3339 form into `buffer` digit by digit. Every response carries
    /// timestamps, and the general formatter costs several times more. Returns `None`
    /// for years outside 0000–9999, which the general formatter handles.
    pub fn write_rfc3339(self, buffer: &mut [u8; RFC3339_LEN]) -> Option<&str> {
        let (year, month, day) = self.0.to_calendar_date();
        if !(0..=9999).contains(&year) {
            return None;
        }
        let (hour, minute, second, micros) = self.0.to_hms_micro();

        put_digits(&mut buffer[0..4], year.unsigned_abs());
        buffer[4] = b'-';
        put_digits(&mut buffer[5..7], u32::from(u8::from(month)));
        buffer[7] = b'-';
        put_digits(&mut buffer[8..10], u32::from(day));
        buffer[10] = b'T';
        put_digits(&mut buffer[11..13], u32::from(hour));
        buffer[13] = b':';
        put_digits(&mut buffer[14..16], u32::from(minute));
        buffer[16] = b':';
        put_digits(&mut buffer[17..19], u32::from(second));
        buffer[19] = b'.';
        put_digits(&mut buffer[20..26], micros);
        buffer[26] = b'Z';
        std::str::from_utf8(buffer).ok()
    }
}

/// Writes `value` as decimal digits filling `out`, zero-padded on the left.
fn put_digits(out: &mut [u8], mut value: u32) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buffer = [0u8; RFC3339_LEN];
        if let Some(text) = self.write_rfc3339(&mut buffer) {
            return f.write_str(text);
        }
        let format = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        );
        match self.0.format(format) {
            Ok(text) => f.write_str(&text),
            Err(_) => Err(fmt::Error),
        }
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut buffer = [0u8; RFC3339_LEN];
        match self.write_rfc3339(&mut buffer) {
            Some(text) => serializer.serialize_str(text),
            None => serializer.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Timestamp::parse(&text).map_err(|_| {
            serde::de::Error::invalid_value(
                serde::de::Unexpected::Str(&text),
                &"an RFC 3339 timestamp such as 2024-05-01T12:00:00Z",
            )
        })
    }
}

/// A source of the current time, injected so that leases, windows and retention can be
/// tested without sleeping.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Returns the current time, truncated to microseconds.
    fn now(&self) -> Timestamp;
}

/// The clock type services hold.
pub type SharedClock = Arc<dyn Clock>;

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now_utc()
    }
}

/// Returns the wall clock as a [`SharedClock`].
pub fn system_clock() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock that moves only when a test moves it.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Timestamp>,
}

impl ManualClock {
    /// Creates a clock stopped at `start`.
    pub fn new(start: Timestamp) -> Arc<Self> {
        Arc::new(ManualClock {
            now: Mutex::new(start),
        })
    }

    /// Creates a clock stopped at the current wall-clock time.
    pub fn starting_now() -> Arc<Self> {
        Self::new(Timestamp::now_utc())
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock();
        *now = now.saturating_add(by);
    }

    /// Moves the clock to `to`, forward or back.
    pub fn set(&self, to: Timestamp) {
        *self.now.lock() = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_uses_utc_and_microseconds() {
        let ts = Timestamp::parse("2024-05-01T14:00:00.123456789+02:00").expect("valid");
        assert_eq!(ts.to_string(), "2024-05-01T12:00:00.123456Z");
    }

    #[test]
    fn whole_seconds_keep_six_digits() {
        let ts = Timestamp::parse("2024-05-01T12:00:00Z").expect("valid");
        assert_eq!(ts.to_string(), "2024-05-01T12:00:00.000000Z");
    }

    #[test]
    fn fast_format_matches_general_formatter() {
        let general = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        );
        let samples = [
            "1970-01-01T00:00:00Z",
            "1999-12-31T23:59:59.999999Z",
            "2000-02-29T12:00:00.000001Z",
            "2024-05-01T14:00:00.123456+02:00",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999Z",
        ];
        for sample in samples {
            let ts = Timestamp::parse(sample).expect("valid");
            let expected = ts.as_datetime().format(general).expect("formats");
            assert_eq!(ts.to_string(), expected, "{sample}");
            assert_eq!(
                serde_json::to_string(&ts).expect("json"),
                format!("\"{expected}\"")
            );
        }
    }

    #[test]
    fn order_follows_the_instant() {
        let micros = [
            -62_135_596_800_000_000, // 0001-01-01
            -1,
            0,
            1,
            999_999,
            1_000_000,
            1_717_243_200_123_456,
            253_402_300_799_999_999, // 9999-12-31T23:59:59.999999
        ];
        for a in micros {
            for b in micros {
                let (x, y) = (
                    Timestamp::from_unix_micros(a).expect("in range"),
                    Timestamp::from_unix_micros(b).expect("in range"),
                );
                assert_eq!(x.cmp(&y), a.cmp(&b), "{a} against {b}");
            }
        }

        // The same instant written with another offset is equal and orders alike.
        let with_offset = Timestamp::parse("2024-05-01T14:00:00+02:00").expect("valid");
        let utc = Timestamp::parse("2024-05-01T12:00:00Z").expect("valid");
        assert_eq!(with_offset.cmp(&utc), std::cmp::Ordering::Equal);
        assert!(Timestamp::parse("2024-05-01T13:00:00+02:00").expect("valid") < utc);
    }

    #[test]
    fn unix_micros_round_trip() {
        let ts = Timestamp::parse("2030-01-02T03:04:05.678901Z").expect("valid");
        let back = Timestamp::from_unix_micros(ts.unix_micros()).expect("in range");
        assert_eq!(back, ts);
    }

    #[test]
    fn manual_clock_advances() {
        let clock = ManualClock::new(Timestamp::EPOCH);
        clock.advance(Duration::from_millis(1500));
        assert_eq!(clock.now().unix_micros(), 1_500_000);
    }

    #[test]
    fn deserialize_rejects_non_rfc3339() {
        let error = serde_json::from_str::<Timestamp>("\"yesterday\"").unwrap_err();
        assert!(error.to_string().contains("RFC 3339"), "{error}");
    }
}
