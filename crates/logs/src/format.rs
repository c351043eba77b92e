//! RFC 3339 timestamps written from their date and time parts, without the general
//! formatter, because every record carries two of them on the stdout hot path.

use platform::Timestamp;
use serde::{Serialize, Serializer};

/// Length of `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
const LEN: usize = 27;

/// Serializes a timestamp exactly as `Timestamp`'s `Display` does.
#[derive(Clone, Copy, Debug)]
pub struct Rfc3339(pub Timestamp);

impl Serialize for Rfc3339 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut buffer = [0u8; LEN];
        match write_rfc3339(self.0, &mut buffer) {
            Some(text) => serializer.serialize_str(text),
            None => serializer.collect_str(&self.0),
        }
    }
}

/// Writes the timestamp into `buffer`; `None` for years outside 0000–9999, which the
/// general formatter handles.
fn write_rfc3339(timestamp: Timestamp, buffer: &mut [u8; LEN]) -> Option<&str> {
    let datetime = timestamp.as_datetime();
    let year = datetime.year();
    if !(0..=9999).contains(&year) {
        return None;
    }

    put_digits(&mut buffer[0..4], year as u32);
    buffer[4] = b'-';
    put_digits(&mut buffer[5..7], u32::from(u8::from(datetime.month())));
    buffer[7] = b'-';
    put_digits(&mut buffer[8..10], u32::from(datetime.day()));
    buffer[10] = b'T';
    put_digits(&mut buffer[11..13], u32::from(datetime.hour()));
    buffer[13] = b':';
    put_digits(&mut buffer[14..16], u32::from(datetime.minute()));
    buffer[16] = b':';
    put_digits(&mut buffer[17..19], u32::from(datetime.second()));
    buffer[19] = b'.';
    put_digits(&mut buffer[20..26], datetime.microsecond());
    buffer[26] = b'Z';
    std::str::from_utf8(buffer).ok()
}

/// Writes `value` as decimal digits filling `out`, zero-padded on the left.
fn put_digits(out: &mut [u8], mut value: u32) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_display_across_dates() {
        let samples = [
            "1970-01-01T00:00:00Z",
            "1999-12-31T23:59:59.999999Z",
            "2000-02-29T12:00:00.000001Z",
            "2024-05-01T14:00:00.123456+02:00",
            "2100-03-01T00:00:00.5Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999Z",
        ];
        for sample in samples {
            let timestamp = Timestamp::parse(sample).expect("valid");
            let mut buffer = [0u8; LEN];
            let fast = write_rfc3339(timestamp, &mut buffer).expect("in range");
            assert_eq!(fast, timestamp.to_string(), "{sample}");
        }
    }

    #[test]
    fn matches_display_for_many_instants() {
        // Steps of about 37 days and 1 µs short of a second cover every month, leap days
        // and sub-second digits.
        let mut micros: i64 = 0;
        for _ in 0..2_000 {
            let timestamp = Timestamp::from_unix_micros(micros).expect("in range");
            let mut buffer = [0u8; LEN];
            let fast = write_rfc3339(timestamp, &mut buffer).expect("in range");
            assert_eq!(fast, timestamp.to_string());
            micros += 3_214_567_999_999;
        }
    }

    #[test]
    fn serializes_as_json_string() {
        let timestamp = Timestamp::parse("2030-01-02T03:04:05.678901Z").expect("valid");
        let json = serde_json::to_string(&Rfc3339(timestamp)).expect("serializes");
        assert_eq!(json, "\"2030-01-02T03:04:05.678901Z\"");
    }
}
