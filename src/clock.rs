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
