//! Timestamps as Rampart writes and reads them (the ban table, the ban and
//! access logs, the status page), all through jiff: no calendar arithmetic
//! of our own.

use std::time::SystemTime;

use jiff::Timestamp;

/// `t` in UTC, formatted with a strftime `pattern` (jiff's directives).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// let t = UNIX_EPOCH + Duration::from_millis(1_795_481_538_250);
/// assert_eq!(rampart_config::time::utc(t, "%d/%b/%Y:%H:%M:%S"), "24/Nov/2026:00:52:18");
/// ```
pub fn utc(t: SystemTime, pattern: &str) -> String {
    show(
        Timestamp::try_from(t).ok(),
        t > SystemTime::UNIX_EPOCH,
        pattern,
    )
}

/// Like [`utc`], from seconds since 1970-01-01 UTC.
pub fn utc_unix(secs: i64, pattern: &str) -> String {
    show(Timestamp::from_second(secs).ok(), secs > 0, pattern)
}

/// Out of jiff's range (past the year 9999 or before -9999): clamped.
fn show(ts: Option<Timestamp>, future: bool, pattern: &str) -> String {
    let clamp = if future {
        Timestamp::MAX
    } else {
        Timestamp::MIN
    };
    ts.unwrap_or(clamp).strftime(pattern).to_string()
}

/// RFC 3339 in UTC to whole seconds: `2026-11-24T00:52:18Z`.
pub fn rfc3339(t: SystemTime) -> String {
    utc(t, "%Y-%m-%dT%H:%M:%SZ")
}

/// Parses an RFC 3339 timestamp with its offset (`Z` or `±HH:MM`).
pub fn parse_rfc3339(s: &str) -> Result<SystemTime, String> {
    s.parse::<Timestamp>()
        .map(SystemTime::from)
        .map_err(|e| format!("invalid timestamp {s:?} (expected e.g. 2026-11-24T00:52:18Z): {e}"))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_481_538);
        assert_eq!(rfc3339(t), "2026-11-24T00:52:18Z");
        assert_eq!(
            rfc3339(t + Duration::from_millis(999)),
            "2026-11-24T00:52:18Z"
        );
        assert_eq!(parse_rfc3339("2026-11-24T00:52:18Z").unwrap(), t);
        assert_eq!(
            parse_rfc3339("2026-11-24T01:52:18.25+01:00").unwrap(),
            t + Duration::from_millis(250)
        );
        let leap = parse_rfc3339("2024-02-29T12:00:00Z").unwrap();
        assert_eq!(rfc3339(leap), "2024-02-29T12:00:00Z");
    }

    #[test]
    fn round_trip_over_many_days() {
        for day in (0..30_000u64).step_by(37) {
            let t = UNIX_EPOCH + Duration::from_secs(day * 86400 + 3661);
            assert_eq!(parse_rfc3339(&rfc3339(t)).unwrap(), t);
        }
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "",
            "2026-11-24",
            "2026-13-01T00:00:00Z",
            "2026-11-24T00:52:18",
            "yesterday at noon!!",
        ] {
            assert!(parse_rfc3339(s).is_err(), "{s}");
        }
    }
}
