//! Rates and quotas kept across runs and senders.

use std::time::Duration;

use super::Result;

/// One message's place in a rate (a relay's, a domain limit's), kept by a
/// store whose throttle lives in a single process (SQLite), so that the
/// next run, however this one ends (Ctrl-C, SIGKILL, cron), starts from the
/// same window instead of from zero. Written in the engine's group commit
/// when the message starts (before its `sending` mark) and again when it
/// is answered; times are Unix seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct RateMark {
    /// Unique per message and rate (random).
    pub id: i64,
    /// `relay main`, `domain microsoft`: the same names as the shared gates.
    pub key: String,
    /// The latest the message can be answered: its start plus the longest
    /// herald waits for an answer. A run killed in between leaves only this.
    pub answered_by: f64,
    pub answered_at: Option<f64>,
    /// Marks of this rate answered before this time are outside any window
    /// that matters now: the store may forget them.
    pub forget_before: f64,
}

/// Messages of a relay's daily quota a run takes (see [`Rates::take_quota`](super::Rates::take_quota)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaTake {
    pub relay: String,
    pub day: String,
    pub want: u64,
    pub max: u64,
}

/// A relay's or domain limit's rate across every sender sharing it.
pub trait RateGate: Send + Sync {
    /// A slot for one message (`Ok(Ok(id))`), or how long to wait before
    /// asking again. The slot must be given back with [`RateGate::answered`].
    fn take(&self) -> Result<std::result::Result<i64, Duration>>;
    /// The message of `slot` was answered (or failed).
    fn answered(&self, slot: i64) -> Result<()>;
}
