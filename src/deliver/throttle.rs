//! Sending no faster than the relay allows.
//!
//! The limit is a sliding window counted the way the relay counts: by when
//! messages arrive. A message may start only `window` after the message
//! `max` places before it was *answered*. Since a message arrives after it
//! starts and before it is answered, no window of that length at the
//! relay, wherever it starts, can hold one message too many, however
//! delayed the network or this machine is.
//!
//! The window holds across runs too. With a shared store (PostgreSQL) the
//! rate is kept in the database (`Store::rate_gate`); with the journal of
//! one machine (SQLite) a limiter with a [`Journal`] writes each message's
//! start and answer as [`RateMark`]s in the engine's group commit, and a
//! new run starts from the times the last one left ([`Limiter::resume`]).
//! A message whose answer was never written (the run was killed) counts as
//! answered at the latest moment it can have been: its start plus the
//! longest herald waits for an answer, or the new run's start if sooner.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::store::RateMark;

/// Moved to the settings, which parse it once; kept here for its users.
pub use crate::config::Rate;

/// Where a limiter writes its messages' times, so the next run starts
/// from them.
pub struct Journal {
    /// The rate's name in the store: `relay main`, `domain microsoft`.
    pub key: String,
    /// Hands a mark to the engine's store task (group commit).
    pub record: Arc<dyn Fn(RateMark) + Send + Sync>,
    /// The wall clock (Unix seconds) when `base` was taken: the marks are
    /// in wall time, the window in tokio's time (paused in tests).
    wall: f64,
    base: Instant,
}

impl Journal {
    pub fn new(
        key: String,
        record: Arc<dyn Fn(RateMark) + Send + Sync>,
        clock: crate::clock::Wall,
    ) -> Journal {
        let (wall, base) = clock.pin();
        Journal {
            key,
            record,
            wall,
            base,
        }
    }

    /// Now, in Unix seconds.
    pub fn now(&self) -> f64 {
        self.wall + (Instant::now() - self.base).as_secs_f64()
    }
}

/// A message in the window: (slot, answered at, its mark in the journal:
/// id and latest answer).
type Sent = (u64, Option<Instant>, Option<(i64, f64)>);

pub struct Limiter {
    rate: Option<Rate>,
    /// Messages in the window, oldest first.
    sent: VecDeque<Sent>,
    next_slot_id: u64,
    /// `batch_size` messages, then `batch_pause`.
    batch: Option<(u64, Duration)>,
    in_batch: u64,
    /// Nothing goes out before this (after a pause or a "slow down").
    not_before: Instant,
    /// Current slow-down back-off, doubled on each "slow down" in a row.
    backoff: Duration,
    journal: Option<Journal>,
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
            journal: None,
        }
    }

    /// Keeps this limiter's window across runs: starts from `answered`
    /// (the times, Unix seconds and oldest first, the store kept of the
    /// rate's last messages: `Store::rate_history`) and writes each new
    /// message's start and answer through `journal`. No rate: nothing to keep.
    pub fn resume(&mut self, journal: Journal, answered: &[f64]) {
        let Some(rate) = self.rate else { return };
        let now_wall = journal.now();
        let now = Instant::now();
        for &t in answered {
            let age = Duration::from_secs_f64((now_wall - t).max(0.0));
            if age >= rate.window {
                continue;
            }
            // Earlier than this machine's clock can say: as late as it can.
            let at = now.checked_sub(age).unwrap_or(now);
            let id = self.next_slot_id;
            self.next_slot_id += 1;
            self.sent.push_back((id, Some(at), None));
        }
        self.journal = Some(journal);
    }

    /// Whether this limiter writes its messages' times to the store.
    pub fn journaled(&self) -> bool {
        self.journal.is_some()
    }

    /// The message of `slot` starts now and is answered within `longest`:
    /// its mark goes to the store, before the message does.
    pub fn started(&mut self, slot: u64, longest: Duration) {
        let (Some(journal), Some(rate)) = (&self.journal, self.rate) else {
            return;
        };
        let Some(entry) = self.sent.iter_mut().find(|(id, _, _)| *id == slot) else {
            return;
        };
        let now = journal.now();
        let mark = RateMark {
            id: fastrand::i64(1..i64::MAX),
            key: journal.key.clone(),
            answered_by: now + longest.as_secs_f64(),
            answered_at: None,
            forget_before: now - rate.window.as_secs_f64(),
        };
        entry.2 = Some((mark.id, mark.answered_by));
        (journal.record)(mark);
    }

    /// When the next message may go out, if it cannot go now.
    fn next_slot(&mut self, now: Instant) -> Option<Instant> {
        let mut at = self.not_before.max(now);
        if let Some(rate) = self.rate {
            while self
                .sent
                .front()
                .is_some_and(|(_, done, _)| done.is_some_and(|d| d + rate.window <= now))
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
            self.sent.push_back((id, None, None));
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
        if let Some(entry) = self.sent.iter_mut().find(|(id, _, _)| *id == slot) {
            entry.1 = Some(now);
            if let (Some((id, by)), Some(journal), Some(rate)) =
                (entry.2.take(), &self.journal, self.rate)
            {
                let at = journal.now();
                (journal.record)(RateMark {
                    id,
                    key: journal.key.clone(),
                    answered_by: by,
                    answered_at: Some(at),
                    forget_before: at - rate.window.as_secs_f64(),
                });
            }
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
