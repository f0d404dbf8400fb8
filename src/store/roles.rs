//! The store's roles: one trait for each part of what herald remembers,
//! so that a use case can ask for the part it needs (`&dyn Suppressions`
//! for the unsubscribe page) and each backend's code falls into the same
//! seams. [`Store`] is every role at once; a `&dyn Store` or `Box<dyn
//! Store>` gives each of them (`&*store as &dyn Suppressions`).
//!
//! Each role's rules are written down here and tested once for every
//! backend by its conformance suite (`store/tests/ROLE.rs`).

use std::sync::Arc;

use super::{
    BounceEvent, BounceSummary, CampaignInfo, Counts, DomainCounts, Dump, Fault, MinuteCount,
    Problem, QuotaTake, RateGate, RateMark, RecipientRecord, RelayCounts, Result, Row, Source,
    StoreError, Suppressed, Tally, Update, people,
};

/// A campaign's list being brought into the store, in one transaction.
pub trait Import {
    /// Someone on the current list: added if new (at the end of the
    /// campaign's order), their merge fields refreshed if known, and back
    /// to pending if they had been removed from the list before.
    fn add(&mut self, email: &str, line: i64, values: &[String]) -> Result<()>;
    /// Someone on the list who must not be mailed now (unsubscribed,
    /// bounced, suppressed): pending or deferred become skipped; those
    /// already mailed stay as they are.
    fn skip(&mut self, email: &str, why: &str) -> Result<()>;
    /// Ends the import. Pending and deferred recipients the list no longer
    /// has become `removed`; returns how many.
    fn commit(self: Box<Self>) -> Result<u64>;
}

/// Held while a campaign is being sent; released on drop or when the
/// process dies.
pub trait Lock: Send {}

/// Campaigns and their recipients: the list brought in, the queue (on a
/// shared store, each row taken is claimed by this sender), each
/// recipient's state marks, and what `herald status` counts.
pub trait Journal: Send {
    /// The campaign's content hash, if the campaign exists.
    fn campaign_hash(&self, id: &str) -> Result<Option<String>>;
    /// Creates the campaign, or updates its hash, post and columns.
    fn upsert_campaign(
        &mut self,
        id: &str,
        post: &str,
        hash: &str,
        columns: &[String],
    ) -> Result<()>;
    /// Starts bringing the campaign's current list in.
    fn import<'a>(&'a mut self, campaign: &str) -> Result<Box<dyn Import + 'a>>;
    /// Up to `limit` recipients to mail after `after_seq`, in order.
    /// `resend_unknown` includes those left in `sending` by an earlier run.
    /// A shared store also gives recipients before `after_seq` that became
    /// free (a dead sender's): a run keeps its place with [`QueuePlace`].
    ///
    /// [`QueuePlace`]: super::QueuePlace
    fn queue(
        &self,
        campaign: &str,
        after_seq: i64,
        limit: i64,
        resend_unknown: bool,
    ) -> Result<Vec<Row>>;
    /// Applies state changes in one durable transaction (group commit).
    fn apply(&mut self, campaign: &str, updates: &[Update]) -> Result<()>;
    fn counts(&self, campaign: &str) -> Result<Counts>;
    /// Per relay that answered for someone: sent, failed, deferred.
    fn relay_counts(&self, campaign: &str) -> Result<Vec<RelayCounts>>;
    /// Marks the campaign finished when nobody is left to mail.
    fn finish_if_done(&mut self, campaign: &str) -> Result<bool>;
    fn is_finished(&self, campaign: &str) -> Result<bool>;
    fn campaigns(&self) -> Result<Vec<CampaignInfo>>;
    /// Recipients needing attention: failed, deferred, unknown.
    fn problems(&self, campaign: &str, limit: i64) -> Result<Vec<Problem>>;
    /// The address of recipient number `seq` of `campaign` (VERP tokens
    /// name recipients by number).
    fn recipient_email(&self, campaign: &str, seq: i64) -> Result<Option<String>>;
    /// Every recipient of a campaign, in the campaign's order, whatever
    /// their state (`herald status CAMPAIGN --csv`).
    fn recipients(&self, campaign: &str) -> Result<Vec<RecipientRecord>>;
}

/// Who may send a campaign now: one herald per campaign on a journal, or
/// any number of registered senders on a shared database.
pub trait Locks: Send {
    /// Takes the campaign's lock; `None` when another herald holds it.
    fn lock(&self, campaign: &str) -> Result<Option<Box<dyn Lock>>>;
}

/// The suppression list is a history of events (an unsubscribe, a
/// complaint, a hard bounce, repeated soft bounces, an addition by hand),
/// each its own record; an address is suppressed while any of its events
/// stands. One event per address, kind and campaign: the same event again
/// changes nothing.
pub trait Suppressions: Send {
    /// Every suppressed address (lower-cased), once each.
    fn suppressed(&self) -> Result<Vec<String>>;
    /// Whether any event stands for this address.
    fn is_suppressed(&self, email: &str) -> Result<bool>;
    /// Records suppression events, in one transaction. An event the store
    /// already holds (same address, kind and campaign) is not recorded
    /// twice. Returns how many addresses were not suppressed before and
    /// are now.
    fn suppress(&mut self, entries: &[Suppressed]) -> Result<u64>;
    /// Takes back an address's events of the kinds in `sources` (none
    /// given: all of them). The unsubscribe page's "Undo" takes back the
    /// person's own unsubscribe, never a complaint or a bounce: the
    /// address stays suppressed while those stand. Returns whether an
    /// event was removed.
    fn unsuppress(&mut self, email: &str, sources: &[Source]) -> Result<bool>;
    /// The suppression list, one entry per address: the event that weighs
    /// most (see [`Source::weight`]), oldest first. The whole history is
    /// [`Suppressions::suppression_events`].
    fn suppressions(&self) -> Result<Vec<Suppressed>> {
        Ok(people(self.suppression_events()?))
    }
    /// Every suppression event, oldest first.
    fn suppression_events(&self) -> Result<Vec<Suppressed>>;

    // --- Suppressions added during a run (issue 23, item 3) ---
    /// The store's log of additions to the suppression list (written by the
    /// database itself, whichever herald or host adds them): the number of
    /// the latest, 0 when there is none. A run notes it before reading the
    /// list, then asks [`Suppressions::suppressed_after`] about what came since.
    fn suppression_mark(&self) -> Result<i64> {
        Ok(0)
    }
    /// Addresses (lower-cased) added to the suppression list after `mark`,
    /// each with its number in the log, oldest first: one indexed read, so
    /// a run can ask every second.
    fn suppressed_after(&self, _mark: i64) -> Result<Vec<(i64, String)>> {
        Ok(Vec::new())
    }
}

/// What `herald bounces` read: each returned message once, what it said,
/// and the counts that lead to a suppression (repeated soft bounces).
pub trait Intake: Send {
    /// Whether `herald bounces` already handled the message with this key
    /// (a hash of its bytes): a second run over the same mailbox changes
    /// nothing.
    fn message_handled(&self, key: &str) -> Result<bool>;
    /// What one returned message said, the suppressions it leads to, and
    /// that it was handled, in one transaction.
    fn record_message(
        &mut self,
        key: &str,
        events: &[BounceEvent],
        suppress: &[Suppressed],
    ) -> Result<()>;
    /// The campaigns of `email`'s soft bounces since `since` (RFC 3339),
    /// one entry per bounce.
    fn soft_bounces(&self, email: &str, since: &str) -> Result<Vec<Option<String>>>;
    /// What came back for a campaign, for `herald status`.
    fn bounce_summary(&self, campaign: &str) -> Result<BounceSummary>;
    /// What came back for a campaign, one event per recipient and message,
    /// oldest first.
    fn bounces(&self, campaign: &str) -> Result<Vec<BounceEvent>>;
}

/// Rates and quotas across runs and senders (see [`RateMark`],
/// [`QuotaTake`]).
pub trait Rates: Send {
    /// Takes up to `want` messages of a relay's daily quota (`max` a day)
    /// for `day` (the relay's date, `2026-11-30`), across runs, campaigns
    /// and senders: returns how many it got, 0 when the day's quota is
    /// spent. What a run took and did not use goes back with
    /// [`Rates::give_back_quota`]; a run that dies keeps it taken, so a
    /// crash can only leave the quota under-used, never over.
    fn take_quota(&mut self, relay: &str, day: &str, want: u64, max: u64) -> Result<u64>;
    /// Returns `n` unused messages of a relay's quota for `day`.
    fn give_back_quota(&mut self, relay: &str, day: &str, n: u64) -> Result<()>;
    /// How much of a relay's quota for `day` is used (or taken by a run
    /// under way).
    fn quota_used(&self, relay: &str, day: &str) -> Result<u64>;
    /// A rate shared with other senders, by name (`relay main`, `domain
    /// microsoft`), when the store is shared (PostgreSQL); `None` when this
    /// process is the only sender and its own throttle is the whole story.
    fn rate_gate(
        &self,
        _campaign: &str,
        _rate: crate::config::Rate,
    ) -> Result<Option<Arc<dyn RateGate>>> {
        Ok(None)
    }
    /// The times (Unix seconds) the last `max` messages of a rate (`relay
    /// main`, `domain microsoft`) were answered, oldest first, as earlier
    /// runs recorded them with [`Store::commit_batch`]; a message whose
    /// answer was never recorded (the run was killed) counts as answered at
    /// the latest moment it can have been: its `answered_by`, or `now`.
    /// Empty for a store that keeps no rate history (PostgreSQL keeps the
    /// rate itself, see [`Rates::rate_gate`]).
    fn rate_history(&self, _key: &str, _now: f64, _max: u64) -> Result<Vec<f64>> {
        Ok(Vec::new())
    }
}

/// What `herald report` draws that `herald status` does not count: when
/// each message was accepted, by which relay, and the states per
/// recipient domain. Every figure here adds up to one of
/// [`Journal::counts`]: the minutes' `sent` to its `sent`, the domains'
/// counts to its counts.
pub trait Figures: Send {
    /// Recipients now `sent`, per relay that accepted them and minute (UTC)
    /// their state became `sent`, in the order of minute then relay.
    fn sent_per_minute(&self, campaign: &str) -> Result<Vec<MinuteCount>>;
    /// Recipients per domain (see [`super::domain_of`]) and state, in the
    /// order of the domains' names.
    fn domain_counts(&self, campaign: &str) -> Result<Vec<DomainCounts>>;
}

/// Opens a connection of its own for a run's claims (see [`Store::claims_apart`]).
pub type ClaimsApart = Box<dyn FnOnce() -> Result<Box<dyn Journal>> + Send>;

/// Every role at once: what the engine, `send`, `status`, `serve` and
/// `bounces` hold. Also the operations that span roles: the group commit
/// and the copy of a whole store.
pub trait Store: Journal + Locks + Suppressions + Intake + Rates + Figures {
    /// Where the store is, for messages (`.herald/journal.db`).
    fn describe(&self) -> String;
    /// Whether other hosts may be sending the same campaigns through this
    /// store at the same time (PostgreSQL).
    fn is_shared(&self) -> bool {
        false
    }
    /// What opens a second connection to the store as the same sender,
    /// for the queue's claims alone: a claim then runs beside the group
    /// commits instead of between two of them, the connections' `sending`
    /// marks waiting for it (PostgreSQL; its claims take a few
    /// milliseconds a batch). Run on the blocking pool. `None` where the
    /// queue is read through the one connection.
    fn claims_apart(&self) -> Option<ClaimsApart> {
        None
    }
    /// The engine's group commit: recipients' state changes, rate marks
    /// and quota takes, in one durable transaction where the store can
    /// (one disk flush for all of them). Returns what each take got, in
    /// order (see [`Rates::take_quota`]).
    fn commit_batch(
        &mut self,
        campaign: &str,
        updates: &[Update],
        _marks: &[RateMark],
        takes: &[QuotaTake],
    ) -> Result<Vec<u64>> {
        if !updates.is_empty() {
            self.apply(campaign, updates)?;
        }
        takes
            .iter()
            .map(|t| self.take_quota(&t.relay, &t.day, t.want, t.max))
            .collect()
    }
    /// Everything in the store, for `herald store migrate`.
    fn dump(&self) -> Result<Dump>;
    /// Adds what `dump` holds that the store does not have yet, in one
    /// transaction; what is there already stays as it is.
    fn load(&mut self, _dump: &Dump) -> Result<()> {
        Err(StoreError::new(self.describe(), Fault::CannotCopyIn))
    }
    /// How many of `dump`'s campaigns, recipients, suppressions and bounces
    /// the store holds.
    fn tally(&self, _dump: &Dump) -> Result<Tally> {
        Err(StoreError::new(self.describe(), Fault::CannotTally))
    }
}
