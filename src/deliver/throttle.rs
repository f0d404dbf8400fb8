//! Sending no faster than the relay allows.
//!
//! The limit is a sliding window counted the way the relay counts: by when
//! messages arrive. A message may start only `window` after the message
//! `max` places before it was *answered*. Since a message arrives after it
//! starts and before it is answered, no window of that length at the
//! relay, wherever it starts, can hold one message too many, however
//! delayed the network or this machine is.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Moved to the settings, which parse it once; kept here for its users.
pub use crate::config::Rate;

pub struct Limiter {
    rate: Option<Rate>,
    /// Messages in the window, oldest first: (slot, answered at).
    sent: VecDeque<(u64, Option<Instant>)>,
    next_slot_id: u64,
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
        Limiter {
            rate,
            sent: VecDeque::new(),
            next_slot_id: 1,
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
            while self
                .sent
                .front()
                .is_some_and(|(_, done)| done.is_some_and(|d| d + rate.window <= now))
            {
                self.sent.pop_front();
            }
            if self.sent.len() >= rate.max as usize {
                at = match self.sent[self.sent.len() - rate.max as usize].1 {
                    Some(done) => at.max(done + rate.window),
                    // Not answered yet: look again shortly.
                    None => at.max(now + Duration::from_millis(2)),
                };
            }
        }
        (at > now).then_some(at)
    }

    /// When the next message may go out (now, if it may).
    pub fn next_free(&mut self) -> Instant {
        let now = Instant::now();
        self.next_slot(now).unwrap_or(now)
    }

    /// Takes a slot for one message, or says how long to wait for one.
    /// The slot must be given back with [`Limiter::answered`].
    pub fn try_take(&mut self) -> Result<u64, Instant> {
        let now = Instant::now();
        if let Some(at) = self.next_slot(now) {
            return Err(at);
        }
        let id = self.next_slot_id;
        self.next_slot_id += 1;
        if self.rate.is_some() {
            self.sent.push_back((id, None));
        }
        if let Some((size, pause)) = self.batch {
            self.in_batch += 1;
            if self.in_batch >= size {
                self.in_batch = 0;
                self.not_before = now + pause;
            }
        }
        Ok(id)
    }

    /// The message of `slot` was answered (or failed): its time in the window starts now.
    pub fn answered(&mut self, slot: u64) {
        let now = Instant::now();
        if let Some(entry) = self.sent.iter_mut().find(|(id, _)| *id == slot) {
            entry.1 = Some(now);
        }
    }

    /// The relay said "slow down": pause everything, longer each time in a row.
    pub fn slow_down(&mut self) -> Duration {
        let pause = self.backoff;
        self.not_before = self.not_before.max(Instant::now() + pause);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        pause
    }

    /// Pauses everything for `pause` (a relay that is not taking messages).
    pub fn pause(&mut self, pause: Duration) {
        self.not_before = self.not_before.max(Instant::now() + pause);
    }

    /// When a pause ends, if one is on.
    pub fn paused_until(&self) -> Option<Instant> {
        (self.not_before > Instant::now()).then_some(self.not_before)
    }

    /// Neither a rate nor batches: a slot is only ever held back by a
    /// pause after a failure.
    pub fn unlimited(&self) -> bool {
        self.rate.is_none() && self.batch.is_none()
    }

    /// A message went through: the relay is happy again.
    pub fn recovered(&mut self) {
        self.backoff = MIN_BACKOFF;
    }
}

/// Takes a slot, waiting as needed; the lock is not held while waiting.
pub async fn take(limiter: &tokio::sync::Mutex<Limiter>) -> u64 {
    loop {
        let wait = limiter.lock().await.try_take();
        match wait {
            Ok(slot) => return slot,
            Err(at) => tokio::time::sleep_until(at).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn no_window_holds_one_too_many() {
        let limiter =
            tokio::sync::Mutex::new(Limiter::new(Some(Rate::parse("5/s").unwrap()), None));
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..23 {
            let slot = take(&limiter).await;
            times.push(Instant::now() - start);
            // Answered 30 ms later, as a relay would.
            tokio::time::sleep(Duration::from_millis(30)).await;
            limiter.lock().await.answered(slot);
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
        assert!(times[22] < Duration::from_millis(4400), "{:?}", times[22]);
    }

    #[tokio::test(start_paused = true)]
    async fn batches_pause_between() {
        let limiter =
            tokio::sync::Mutex::new(Limiter::new(None, Some((3, Duration::from_secs(10)))));
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..7 {
            let _ = take(&limiter).await;
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
