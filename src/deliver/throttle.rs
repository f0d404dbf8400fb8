//! Sending no faster than the relay allows.
//!
//! The limit is a sliding window: before a message goes out, herald waits
//! until fewer than `max` messages went out in the last `window`, so no
//! window of that length, wherever it starts, holds one message too many.
//! A small margin covers the time between herald starting a message and
//! the server receiving it, which is what the relay counts.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub max: u32,
    pub window: Duration,
}

impl Rate {
    /// `14/s`, `600/m`, `10000/h`, `50000/d` (also `/sec`, `/min`, `/hour`, `/day`).
    pub fn parse(s: &str) -> Result<Rate, String> {
        let bad = || format!("`{s}` is not a rate; write it like 14/s, 600/m or 10000/h");
        let (n, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let max: u32 = n.trim().replace('_', "").parse().map_err(|_| bad())?;
        if max == 0 {
            return Err(bad());
        }
        let window = match unit.trim().to_ascii_lowercase().as_str() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86400),
            _ => return Err(bad()),
        };
        Ok(Rate { max, window })
    }

    pub fn per_second(&self) -> f64 {
        self.max as f64 / self.window.as_secs_f64()
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.window.as_secs() {
            1 => "s",
            60 => "m",
            3600 => "h",
            _ => "d",
        };
        write!(f, "{}/{unit}", self.max)
    }
}

pub struct Limiter {
    rate: Option<Rate>,
    margin: Duration,
    sent: VecDeque<Instant>,
    /// `batch_size` messages, then `batch_pause`.
    batch: Option<(u64, Duration)>,
    in_batch: u64,
    /// Nothing goes out before this (after a pause or a "slow down").
    not_before: Instant,
    /// Current slow-down back-off, doubled on each "slow down" in a row.
    backoff: Duration,
}

pub const MIN_BACKOFF: Duration = Duration::from_secs(2);
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

impl Limiter {
    pub fn new(rate: Option<Rate>, batch: Option<(u64, Duration)>) -> Limiter {
        let margin = rate.map_or(Duration::ZERO, |r| {
            (r.window / 50).clamp(Duration::from_millis(20), Duration::from_secs(5))
        });
        Limiter {
            rate,
            margin,
            sent: VecDeque::new(),
            batch: batch.filter(|(n, _)| *n > 0),
            in_batch: 0,
            not_before: Instant::now(),
            backoff: MIN_BACKOFF,
        }
    }

    /// When the next message may go out, if it cannot go now.
    fn next_slot(&mut self, now: Instant) -> Option<Instant> {
        let mut at = self.not_before.max(now);
        if let Some(rate) = self.rate {
            let window = rate.window + self.margin;
            while self.sent.front().is_some_and(|t| *t + window <= now) {
                self.sent.pop_front();
            }
            if self.sent.len() >= rate.max as usize {
                let oldest = self.sent[self.sent.len() - rate.max as usize];
                at = at.max(oldest + window);
            }
        }
        (at > now).then_some(at)
    }

    /// Takes a slot for one message, or says how long to wait for one.
    pub fn try_take(&mut self) -> Result<(), Instant> {
        let now = Instant::now();
        if let Some(at) = self.next_slot(now) {
            return Err(at);
        }
        if self.rate.is_some() {
            self.sent.push_back(now);
        }
        if let Some((size, pause)) = self.batch {
            self.in_batch += 1;
            if self.in_batch >= size {
                self.in_batch = 0;
                self.not_before = now + pause;
            }
        }
        Ok(())
    }

    /// The relay said "slow down": pause everything, longer each time in a row.
    pub fn slow_down(&mut self) -> Duration {
        let pause = self.backoff;
        self.not_before = self.not_before.max(Instant::now() + pause);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        pause
    }

    /// A message went through: the relay is happy again.
    pub fn recovered(&mut self) {
        self.backoff = MIN_BACKOFF;
    }
}

/// Takes a slot, waiting as needed; the lock is not held while waiting.
pub async fn take(limiter: &tokio::sync::Mutex<Limiter>) {
    loop {
        let wait = limiter.lock().await.try_take();
        match wait {
            Ok(()) => return,
            Err(at) => tokio::time::sleep_until(at).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(
            Rate::parse("14/s").unwrap(),
            Rate {
                max: 14,
                window: Duration::from_secs(1)
            }
        );
        assert_eq!(
            Rate::parse("600/m").unwrap().window,
            Duration::from_secs(60)
        );
        assert_eq!(Rate::parse("10000/h").unwrap().to_string(), "10000/h");
        assert!(Rate::parse("fast").is_err());
        assert!(Rate::parse("0/s").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn no_window_holds_one_too_many() {
        let limiter =
            tokio::sync::Mutex::new(Limiter::new(Some(Rate::parse("5/s").unwrap()), None));
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..23 {
            take(&limiter).await;
            times.push(Instant::now() - start);
        }
        for (i, t) in times.iter().enumerate() {
            let in_window = times[i..]
                .iter()
                .filter(|u| **u < *t + Duration::from_secs(1))
                .count();
            assert!(
                in_window <= 5,
                "{in_window} messages in the second after {t:?}"
            );
        }
        // And it is not needlessly slow: 23 messages need a bit over 4 windows.
        assert!(times[22] < Duration::from_millis(4200), "{:?}", times[22]);
    }

    #[tokio::test(start_paused = true)]
    async fn batches_pause_between() {
        let limiter =
            tokio::sync::Mutex::new(Limiter::new(None, Some((3, Duration::from_secs(10)))));
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..7 {
            take(&limiter).await;
            times.push((Instant::now() - start).as_secs());
        }
        assert_eq!(times, vec![0, 0, 0, 10, 10, 10, 20]);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_down_backs_off_then_recovers() {
        let mut l = Limiter::new(None, None);
        assert_eq!(l.slow_down(), Duration::from_secs(2));
        assert_eq!(l.slow_down(), Duration::from_secs(4));
        l.recovered();
        assert_eq!(l.slow_down(), Duration::from_secs(2));
    }
}
