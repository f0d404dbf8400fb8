//! A run's place in its campaign's queue.

use super::{Journal, Result, Row};

/// How far a run has come through its campaign's queue: the highest
/// recipient handed to it so far. Each call to [`QueuePlace::next`] asks
/// the store for the recipients after that place.
///
/// The place is the highest recipient seen, never the last one of the last
/// batch: a shared store also hands out recipients *before* the place (a
/// dead sender's, freed by its death), and a batch of only those would put
/// the place back. Asked from there, the store would hand this run again
/// its own recipients past that point that are still waiting for a
/// connection (claimed by this sender and not yet `sending`), and each of
/// them would be mailed twice.
#[derive(Debug, Default)]
pub struct QueuePlace {
    after: i64,
}

impl QueuePlace {
    /// The start of the queue.
    pub fn new() -> QueuePlace {
        QueuePlace::default()
    }

    /// Up to `limit` recipients not handed to this run yet (see
    /// [`Journal::queue`]), in order; none when the run's share is done.
    pub fn next(
        &mut self,
        journal: &dyn Journal,
        campaign: &str,
        limit: i64,
        resend_unknown: bool,
    ) -> Result<Vec<Row>> {
        let rows = journal.queue(campaign, self.after, limit, resend_unknown)?;
        if let Some(last) = rows.iter().map(|r| r.seq).max() {
            self.after = self.after.max(last);
        }
        Ok(rows)
    }
}
