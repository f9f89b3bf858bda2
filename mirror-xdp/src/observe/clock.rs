//! Wall-clock times for people and scripts: the programs stamp drop events with
//! `bpf_ktime_get_ns` (CLOCK_MONOTONIC), logs and `stats --watch --json` show RFC 3339 UTC.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::kernel::maps::monotonic_ns;

/// The wall-clock time of a CLOCK_MONOTONIC time, from both clocks as they stand now (so a
/// step of the wall clock since then is taken into account), and how long ago it was.
pub fn wall_of_monotonic(ns: u64) -> (SystemTime, Duration) {
    let ago = Duration::from_nanos(monotonic_ns().saturating_sub(ns));
    let now = SystemTime::now();
    (now.checked_sub(ago).unwrap_or(UNIX_EPOCH), ago)
}

/// `2025-03-04T05:06:07.089Z`: RFC 3339 in UTC to the millisecond; the same width until the
/// year 10000, so these strings sort as the times do.
pub fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Year, month and day of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`,
/// for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, millis: u64) -> String {
        rfc3339(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis))
    }

    #[test]
    fn rfc3339_utc_to_the_millisecond() {
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        // `date -u -d @951782400`: the leap day of 2000 (divisible by 400).
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(at(1_709_251_199, 999), "2024-02-29T23:59:59.999Z");
        assert_eq!(at(1_735_689_600 - 1, 0), "2024-12-31T23:59:59.000Z");
        assert_eq!(at(4_102_444_800, 0), "2100-01-01T00:00:00.000Z");
        // 2100 is no leap year.
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000Z");
    }

    #[test]
    fn monotonic_times_map_to_the_wall_clock_before_now() {
        let mono = monotonic_ns();
        let before = SystemTime::now();
        let (wall, ago) = wall_of_monotonic(mono - 2_000_000_000);
        assert!(ago >= Duration::from_secs(2), "{ago:?}");
        assert!(ago < Duration::from_secs(3), "{ago:?}");
        let off = before.duration_since(wall).expect("in the past");
        assert!(
            off >= Duration::from_millis(1990) && off < Duration::from_secs(3),
            "{off:?}"
        );
        // A time still to come (a clock read on another CPU) is not in the future.
        assert_eq!(wall_of_monotonic(u64::MAX).1, Duration::ZERO);
    }
}
