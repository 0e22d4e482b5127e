//! UTC calendar arithmetic on nanosecond timestamps (Howard Hinnant's civil-from-days), for
//! messages and for retention buckets. No time zone database: Cairn's calendar is UTC.

/// (year, month 1-12, day 1-31) of day `days` since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days since 1970-01-01 of a timestamp.
pub fn days(ns: i64) -> i64 {
    ns.div_euclid(86_400 * 1_000_000_000)
}

/// `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn format_utc(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The Monday (as days since the epoch) of the ISO week holding day `days`.
pub fn week_start(days: i64) -> i64 {
    // 1970-01-01 was a Thursday: Monday-based weekday = (days + 3) mod 7.
    days - (days + 3).rem_euclid(7)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(format_utc(1_234_567_890_000_000_000), "2009-02-13 23:31:30");
        // 2026-11-23 is a Monday.
        let monday = 20_780;
        assert_eq!(civil_from_days(monday), (2026, 11, 23));
        for d in monday..monday + 7 {
            assert_eq!(week_start(d), monday);
        }
        assert_eq!(week_start(monday - 1), monday - 7);
    }
}
