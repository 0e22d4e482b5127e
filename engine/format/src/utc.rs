//! Timestamps (ns since the epoch) as UTC calendar times, through jiff: for messages, and for
//! retention buckets and spans. Cairn's calendar is UTC, so no time zone database is needed.

use jiff::tz::TimeZone;
use jiff::{Timestamp, ZonedDateTime};

/// The instant `ns` nanoseconds after the epoch. Every `i64` is in jiff's range (years 1677 to
/// 2262); the clamp only keeps the type total.
pub fn timestamp(ns: i64) -> Timestamp {
    Timestamp::from_nanosecond(i128::from(ns)).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// `ns` as a UTC calendar time.
pub fn zoned(ns: i64) -> ZonedDateTime {
    timestamp(ns).to_zoned_datetime(TimeZone::UTC)
}

/// `ns` as a calendar time in `zone` (UTC when `None`).
pub fn zoned_in(ns: i64, zone: Option<&TimeZone>) -> ZonedDateTime {
    match zone {
        Some(tz) => timestamp(ns).to_zoned_datetime(tz.clone()),
        None => zoned(ns),
    }
}

/// Nanoseconds since the epoch of `t`, saturated to the `i64` range.
pub fn nanos(t: Timestamp) -> i64 {
    i64::try_from(t.as_nanosecond()).unwrap_or(if t.as_nanosecond() < 0 { i64::MIN } else { i64::MAX })
}

/// `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn format(ns: i64) -> String {
    zoned(ns).strftime("%Y-%m-%d %H:%M:%S").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(format(0), "1970-01-01 00:00:00");
        assert_eq!(format(-1), "1969-12-31 23:59:59");
        assert_eq!(format(1_234_567_890_000_000_000), "2009-02-13 23:31:30");
        assert_eq!(format(i64::MAX), "2262-04-11 23:47:16");
        assert_eq!(nanos(timestamp(1_234_567_890_123_456_789)), 1_234_567_890_123_456_789);
    }
}
