//! The schedule: the [`SendWindow`] (days, hours and a time zone) when
//! real sends may run.

use std::fmt;

use super::ValueError;

/// When sends may run: `Mon-Fri 08:00-18:00 Europe/Berlin`. The days
/// (a range like `Mon-Fri`, a list like `Mon,Wed,Fri`, or none for every
/// day), the hours (start before end, the end not included) and an IANA time
/// zone, so the window follows daylight saving time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendWindow {
    /// Monday is 0.
    days: [bool; 7],
    start: jiff::civil::Time,
    end: jiff::civil::Time,
    zone: jiff::tz::TimeZone,
    /// The zone's name as written, for messages.
    zone_name: String,
    /// The setting as written (normalised), for `herald config`.
    text: String,
}

pub(super) const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

impl SendWindow {
    pub fn parse(v: &str) -> Result<SendWindow, ValueError> {
        let v = v.trim();
        let how = "write it like `Mon-Fri 08:00-18:00 Europe/Berlin` (days, hours, an IANA time zone; \
                   leave the days out for every day)";
        let parts: Vec<&str> = v.split_whitespace().collect();
        let (days_text, hours, zone_name) = match parts.as_slice() {
            [days, hours, zone] => (Some(*days), *hours, *zone),
            [hours, zone] => (None, *hours, *zone),
            _ => return Err(format!("`{v}` is not a send window; {how}").into()),
        };
        let mut days = [days_text.is_none(); 7];
        if let Some(text) = days_text {
            for piece in text.split(',') {
                let (a, b) = match piece.split_once('-') {
                    Some((a, b)) => (day(a, v, how)?, day(b, v, how)?),
                    None => {
                        let d = day(piece, v, how)?;
                        (d, d)
                    }
                };
                // `Fri-Mon` wraps over the weekend.
                let mut d = a;
                loop {
                    days[d] = true;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
        }
        let (s, e) = hours
            .split_once('-')
            .ok_or_else(|| format!("`{hours}` in `{v}` is not a range of hours; {how}"))?;
        let time = |t: &str| -> Result<jiff::civil::Time, ValueError> {
            if t == "24:00" {
                return Ok(jiff::civil::Time::MAX);
            }
            t.parse::<jiff::civil::Time>()
                .ok()
                .filter(|_| t.len() == 5)
                .ok_or_else(|| {
                    format!("`{t}` in `{v}` is not a time of day like 08:00; {how}").into()
                })
        };
        let (start, end) = (time(s)?, time(e)?);
        if start >= end {
            return Err(format!(
                "`{hours}` in `{v}` ends before it starts; a window is one stretch of a day (00:00-24:00 \
                 for the whole day); {how}"
            ).into());
        }
        let zone = jiff::tz::TimeZone::get(zone_name).map_err(|_| {
            format!(
                "`{zone_name}` in `{v}` is not a time zone herald knows (an IANA name like Europe/Berlin, \
                 America/New_York or UTC); {how}"
            )
        })?;
        let day_text = days_text.map(|d| format!("{d} ")).unwrap_or_default();
        Ok(SendWindow {
            days,
            start,
            end,
            zone,
            zone_name: zone_name.to_string(),
            text: format!("{day_text}{s}-{e} {zone_name}"),
        })
    }

    /// The stretch of the window that `at` is in or that comes next:
    /// (opens, closes). Looks a week ahead; there is always one, since a
    /// window has at least one day and a start before its end.
    pub fn next(&self, at: jiff::Timestamp) -> (jiff::Timestamp, jiff::Timestamp) {
        let today = at.to_zoned(self.zone.clone()).date();
        for n in 0..8 {
            let Ok(date) = today.checked_add(jiff::Span::new().days(n)) else {
                break;
            };
            if !self.days[date.weekday().to_monday_zero_offset() as usize] {
                continue;
            }
            let at_time = |t: jiff::civil::Time| {
                date.to_datetime(t)
                    .to_zoned(self.zone.clone())
                    .map(|z| z.timestamp())
            };
            let (Ok(open), Ok(close)) = (at_time(self.start), at_time(self.end)) else {
                continue;
            };
            if at < close {
                return (open, close);
            }
        }
        // Unreachable for a parsed window; a far future keeps callers simple.
        (jiff::Timestamp::MAX, jiff::Timestamp::MAX)
    }

    /// Whether sends may run at `at`; if so, when this stretch closes.
    pub fn open_until(&self, at: jiff::Timestamp) -> Option<jiff::Timestamp> {
        let (open, close) = self.next(at);
        (open <= at).then_some(close)
    }

    /// A time in the window's zone and in UTC, for messages:
    /// `Mon 2025-06-02 08:00 Europe/Berlin (06:00 UTC)`.
    pub fn describe(&self, t: jiff::Timestamp) -> String {
        let local = t.to_zoned(self.zone.clone());
        let utc = t.to_zoned(jiff::tz::TimeZone::UTC);
        format!(
            "{} {} {} ({} UTC)",
            DAY_NAMES[local.weekday().to_monday_zero_offset() as usize],
            local.strftime("%Y-%m-%d %H:%M"),
            self.zone_name,
            utc.strftime("%Y-%m-%d %H:%M")
        )
    }
}

pub(super) fn day(t: &str, whole: &str, how: &str) -> Result<usize, ValueError> {
    let t = t.trim();
    let lower = t.to_ascii_lowercase();
    const FULL: [&str; 7] = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    (0..7)
        .find(|&i| lower == DAY_NAMES[i].to_ascii_lowercase() || lower == FULL[i])
        .ok_or_else(|| {
            format!(
                "`{t}` in `{whole}` is not a day; write Mon, Tue, Wed, Thu, Fri, Sat or Sun; {how}"
            )
            .into()
        })
}

impl fmt::Display for SendWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::config::test_util::{env, file};
    #[allow(unused_imports)]
    use crate::config::*;

    #[test]
    fn a_send_window_knows_when_it_is_open_and_when_it_opens_next() {
        let w = SendWindow::parse("Mon-Fri 08:00-18:00 Europe/Berlin").unwrap();
        let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        // Monday 10:00 in Berlin (summer time, UTC+2): open until 18:00.
        assert_eq!(
            w.open_until(t("2025-06-09T08:00:00Z")),
            Some(t("2025-06-09T16:00:00Z"))
        );
        // 18:00 itself is closed; Friday evening opens on Monday.
        assert_eq!(w.open_until(t("2025-06-09T16:00:00Z")), None);
        assert_eq!(
            w.next(t("2025-06-13T17:00:00Z")).0,
            t("2025-06-16T06:00:00Z")
        );
        // Winter time: 08:00 in Berlin is 07:00 UTC.
        assert_eq!(
            w.next(t("2025-12-06T12:00:00Z")).0,
            t("2025-12-08T07:00:00Z")
        );
        assert_eq!(
            w.describe(t("2025-12-08T07:00:00Z")),
            "Mon 2025-12-08 08:00 Europe/Berlin (2025-12-08 07:00 UTC)"
        );
        // A range over the weekend, a list, every day.
        let w = SendWindow::parse("Fri-Mon 09:00-10:00 UTC").unwrap();
        assert!(w.open_until(t("2025-06-08T09:30:00Z")).is_some()); // Sunday
        assert!(w.open_until(t("2025-06-10T09:30:00Z")).is_none()); // Tuesday
        let w = SendWindow::parse("tue,thu 00:00-24:00 UTC").unwrap();
        assert!(w.open_until(t("2025-06-12T23:59:00Z")).is_some());
        assert!(SendWindow::parse("06:00-07:00 America/New_York").is_ok());
    }

    #[test]
    fn a_bad_send_window_names_the_setting_and_how_to_write_it() {
        for (bad, says) in [
            ("Mon-Fri 08:00-18:00 Europe/Berlyn", "not a time zone"),
            ("Mon-Fry 08:00-18:00 UTC", "`Fry`"),
            ("Mon-Fri 18:00-08:00 UTC", "ends before it starts"),
            ("Mon-Fri 8-18 UTC", "not a time of day"),
            ("weekdays", "not a send window"),
            ("Mön-Fri 08:00-18:00 UTC", "not a day"),
        ] {
            let (_d, path) = file(&format!("send_window: {bad}\n"));
            let e = Config::load_with(Some(&path), env(&[]), &[]).unwrap_err();
            let text = e.to_string();
            assert!(text.contains("send_window"), "{text}");
            assert!(text.contains(":1"), "names the line: {text}");
            assert!(text.contains(says), "{bad}: {text}");
            assert!(text.contains("Mon-Fri 08:00-18:00 Europe/Berlin"), "{text}");
        }
        let e = Config::load_with(None, env(&[("HERALD_SEND_WINDOW", "always")]), &[]).unwrap_err();
        assert!(e.to_string().contains("HERALD_SEND_WINDOW"), "{e}");
    }
}
