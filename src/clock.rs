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

/// The wall clock of the send rates' marks in the journal, in Unix
/// seconds (see `deliver::throttle::Journal`, which keeps a rate's window
/// across runs). Every command uses the system's. Tests that run the
/// engine on tokio's paused clock anchor one to tokio's clock for the
/// whole test: with the system clock, a mark written before a "restart"
/// looked as old as the real time the machine took, not the paused time
/// the relay saw, so on a loaded machine the next run could forget a mark
/// still inside the window and send one message too many in a second.
#[derive(Debug, Clone, Copy, Default)]
pub enum Wall {
    #[default]
    System,
    /// This Unix time at this instant of tokio's clock.
    Anchored(f64, tokio::time::Instant),
}

impl Wall {
    /// A clock that reads the system's time now and then follows tokio's.
    pub fn anchored_now() -> Wall {
        Wall::Anchored(system_seconds(), tokio::time::Instant::now())
    }

    /// A Unix time and the instant of tokio's clock it was at: the base a
    /// rate's window is kept against.
    pub fn pin(self) -> (f64, tokio::time::Instant) {
        match self {
            Wall::System => (system_seconds(), tokio::time::Instant::now()),
            Wall::Anchored(at, base) => (at, base),
        }
    }

    /// Now, in Unix seconds.
    pub fn now(self) -> f64 {
        let (at, base) = self.pin();
        at + (tokio::time::Instant::now() - base).as_secs_f64()
    }
}

fn system_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
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
