//! The one place herald asks for the current time, so tests can fix it.

use jiff::Timestamp;

/// The current time. `HERALD_NOW` (an RFC 3339 timestamp such as
/// `2025-05-28T14:00:00Z`) overrides the system clock, so tests and
/// rehearsals of a scheduled send can pretend it is another day.
pub fn now() -> Timestamp {
    std::env::var("HERALD_NOW")
        .ok()
        .and_then(|s| s.trim().parse::<Timestamp>().ok())
        .unwrap_or_else(Timestamp::now)
}

/// A time the store recorded (RFC 3339, to the nanosecond), as people and
/// spreadsheets read it: ISO 8601 to the second, in UTC with its `Z`
/// (`2026-12-06T12:42:52Z`). Spreadsheets take that for a date; the
/// nanoseconds made them take it for text. A time that does not parse is
/// shown as it is.
pub fn to_second(stored: &str) -> String {
    match stored.trim().parse::<Timestamp>() {
        Ok(t) => t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Err(_) => stored.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn stored_times_are_shown_to_the_second_in_utc() {
        assert_eq!(
            super::to_second("2026-12-06T12:42:52.123456789Z"),
            "2026-12-06T12:42:52Z"
        );
        assert_eq!(
            super::to_second("2026-12-06T13:42:52+01:00"),
            "2026-12-06T12:42:52Z"
        );
        assert_eq!(super::to_second("not a time"), "not a time");
    }
}
