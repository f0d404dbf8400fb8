//! The store: what herald remembers between runs. Every campaign, every
//! recipient's state in it, the suppression list and the campaign locks.
//!
//! The engine, `send` and `status` see only the [`Store`] trait, the narrow
//! set of operations they need, so a second backend (PostgreSQL, for
//! several hosts sharing one campaign) can be added without touching them.
//! SQLite ([`sqlite::Sqlite`]) is the default: one file, nothing to install.
//!
//! A recipient is known by their address (lower-cased), never by their row
//! in the list: a list edited between two runs of a campaign (rows added,
//! removed, re-sorted) mails everyone on the current list exactly once.
//!
//! A recipient is marked `sending` (durably) before their message can be
//! delivered and `sent` after the server's answer. A crash in between
//! leaves them `sending`: of unknown outcome, reported and not sent again
//! unless asked (`--resend-unknown`).

pub mod postgres;
pub mod sqlite;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

pub use postgres::Postgres;
pub use sqlite::Sqlite;

/// Where the store lives when nothing says otherwise.
pub const DEFAULT_DIR: &str = ".herald";

/// The store could not do its job: the disk is full, the file is
/// unreadable or from another program. Not the user's input: exit code
/// "herald itself failed".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
    /// The file or folder of the store.
    pub place: PathBuf,
    pub message: String,
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.place.display(), self.message)
    }
}

impl std::error::Error for StoreError {}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A recipient's state in a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    /// Handed to the server, no answer recorded: outcome unknown after a crash.
    Sending,
    Sent,
    /// Failed for now (4xx, timeouts) after the retries of a run; tried again next run.
    Deferred,
    /// Refused for good (5xx); never tried again.
    Failed,
    /// Left out: unsubscribed, bounced or suppressed since the campaign began.
    Skipped,
    /// Taken off the list before they were mailed: not mailed unless the
    /// list has them again.
    Removed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Sending => "sending",
            State::Sent => "sent",
            State::Deferred => "deferred",
            State::Failed => "failed",
            State::Skipped => "skipped",
            State::Removed => "removed",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        Some(match s {
            "pending" => State::Pending,
            "sending" => State::Sending,
            "sent" => State::Sent,
            "deferred" => State::Deferred,
            "failed" => State::Failed,
            "skipped" => State::Skipped,
            "removed" => State::Removed,
            _ => return None,
        })
    }
}

/// A recipient waiting to be mailed, with what their message needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The campaign's own order (first seen, first mailed).
    pub seq: i64,
    pub email: String,
    /// The line of the list the address was on in the latest import.
    pub line: i64,
    pub values: Vec<String>,
    pub attempts: i64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub total: i64,
    pub pending: i64,
    /// Outcome unknown (left in `sending` by a crash or a kill).
    pub unknown: i64,
    pub sent: i64,
    pub deferred: i64,
    pub failed: i64,
    pub skipped: i64,
    /// Taken off the list before they were mailed.
    pub removed: i64,
}

impl Counts {
    /// Adds `n` recipients in the state named `state`.
    fn add(&mut self, state: &str, n: i64) {
        self.total += n;
        match State::parse(state) {
            Some(State::Pending) => self.pending += n,
            Some(State::Sending) => self.unknown += n,
            Some(State::Sent) => self.sent += n,
            Some(State::Deferred) => self.deferred += n,
            Some(State::Failed) => self.failed += n,
            Some(State::Removed) => self.removed += n,
            Some(State::Skipped) | None => self.skipped += n,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CampaignInfo {
    pub id: String,
    pub post: String,
    pub created_at: String,
    pub finished_at: Option<String>,
    pub counts: Counts,
}

/// A recipient who needs attention: failed, deferred or of unknown outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub email: String,
    /// The line of the list the address was on (0 for a test send).
    pub line: i64,
    pub state: State,
    pub reply: Option<String>,
    pub attempts: i64,
}

impl std::fmt::Display for Problem {
    /// `failed    someone@example.org  550 5.1.1 No such user`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<9} {}  {}",
            self.state_label(),
            self.email,
            self.reply.as_deref().unwrap_or("")
        )
    }
}

impl Problem {
    pub fn state_label(&self) -> &'static str {
        match self.state {
            State::Failed => "failed",
            State::Deferred => "deferred",
            _ => "unknown",
        }
    }
}

/// One state change of one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub seq: i64,
    pub state: State,
    pub reply: Option<String>,
    /// Attempts to add.
    pub attempts: i64,
    /// Add this address (lower-cased) to the suppression list.
    pub suppress: Option<String>,
    /// The relay that answered (accepted, refused or deferred the
    /// message), by its name; `None` leaves the recorded one as it was.
    pub relay: Option<String>,
}

/// One relay's share of a campaign, for `herald status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RelayCounts {
    pub relay: String,
    pub sent: i64,
    pub failed: i64,
    pub deferred: i64,
    /// The relay's daily quota, when it has one (`max_per_day`), and how
    /// much of it is used on the relay's `day` today, across campaigns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_per_day: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_used_today: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
}

impl RelayCounts {
    /// From (relay, state, count) rows, in the relays' order of name.
    fn gather(rows: impl IntoIterator<Item = (String, String, i64)>) -> Vec<RelayCounts> {
        let mut by: std::collections::BTreeMap<String, RelayCounts> = Default::default();
        for (relay, state, n) in rows {
            let c = by.entry(relay.clone()).or_insert_with(|| RelayCounts {
                relay,
                ..RelayCounts::default()
            });
            match State::parse(&state) {
                Some(State::Sent) => c.sent += n,
                Some(State::Failed) => c.failed += n,
                Some(State::Deferred) => c.deferred += n,
                _ => {}
            }
        }
        by.into_values().collect()
    }
}

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

/// The operations the engine, `send` and `status` need.
pub trait Store: Send {
    /// Where the store is, for messages (`.herald/journal.db`).
    fn describe(&self) -> String;

    /// Takes the campaign's lock; `None` when another herald holds it.
    fn lock(&self, campaign: &str) -> Result<Option<Box<dyn Lock>>>;

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

    /// Takes up to `want` messages of a relay's daily quota (`max` a day)
    /// for `day` (the relay's date, `2026-11-30`), across runs, campaigns
    /// and senders: returns how many it got, 0 when the day's quota is
    /// spent. What a run took and did not use goes back with
    /// [`Store::give_back_quota`]; a run that dies keeps it taken, so a
    /// crash can only leave the quota under-used, never over.
    fn take_quota(&mut self, relay: &str, day: &str, want: u64, max: u64) -> Result<u64>;
    /// Returns `n` unused messages of a relay's quota for `day`.
    fn give_back_quota(&mut self, relay: &str, day: &str, n: u64) -> Result<()>;
    /// How much of a relay's quota for `day` is used (or taken by a run
    /// under way).
    fn quota_used(&self, relay: &str, day: &str) -> Result<u64>;
    /// Marks the campaign finished when nobody is left to mail.
    fn finish_if_done(&mut self, campaign: &str) -> Result<bool>;
    fn is_finished(&self, campaign: &str) -> Result<bool>;
    fn campaigns(&self) -> Result<Vec<CampaignInfo>>;
    /// Recipients needing attention: failed, deferred, unknown.
    fn problems(&self, campaign: &str, limit: i64) -> Result<Vec<Problem>>;

    // The suppression list is a history of events (an unsubscribe, a
    // complaint, a hard bounce, repeated soft bounces, an addition by
    // hand), each its own record; an address is suppressed while any of
    // its events stands. One event per address, kind and campaign: the
    // same event again changes nothing.

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
    /// [`Store::suppression_events`].
    fn suppressions(&self) -> Result<Vec<Suppressed>> {
        Ok(people(self.suppression_events()?))
    }
    /// Every suppression event, oldest first.
    fn suppression_events(&self) -> Result<Vec<Suppressed>>;

    // --- Suppressions added during a run (issue 23, item 3) ---
    /// The store's log of additions to the suppression list (written by the
    /// database itself, whichever herald or host adds them): the number of
    /// the latest, 0 when there is none. A run notes it before reading the
    /// list, then asks [`Store::suppressed_after`] about what came since.
    fn suppression_mark(&self) -> Result<i64> {
        Ok(0)
    }
    /// Addresses (lower-cased) added to the suppression list after `mark`,
    /// each with its number in the log, oldest first: one indexed read, so
    /// a run can ask every second.
    fn suppressed_after(&self, _mark: i64) -> Result<Vec<(i64, String)>> {
        Ok(Vec::new())
    }

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
    /// The address of recipient number `seq` of `campaign` (VERP tokens
    /// name recipients by number).
    fn recipient_email(&self, campaign: &str, seq: i64) -> Result<Option<String>>;
    /// Every recipient of a campaign, in the campaign's order, whatever
    /// their state (`herald status CAMPAIGN --csv`).
    fn recipients(&self, campaign: &str) -> Result<Vec<RecipientRecord>>;
    /// What came back for a campaign, one event per recipient and message,
    /// oldest first.
    fn bounces(&self, campaign: &str) -> Result<Vec<BounceEvent>>;

    /// Whether other hosts may be sending the same campaigns through this
    /// store at the same time (PostgreSQL).
    fn is_shared(&self) -> bool {
        false
    }

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

    // ---- Rates and quotas across runs (see [`RateMark`], [`QuotaTake`]) ----

    /// The times (Unix seconds) the last `max` messages of a rate (`relay
    /// main`, `domain microsoft`) were answered, oldest first, as earlier
    /// runs recorded them with [`Store::commit_batch`]; a message whose
    /// answer was never recorded (the run was killed) counts as answered at
    /// the latest moment it can have been: its `answered_by`, or `now`.
    /// Empty for a store that keeps no rate history (PostgreSQL keeps the
    /// rate itself, see [`Store::rate_gate`]).
    fn rate_history(&self, _key: &str, _now: f64, _max: u64) -> Result<Vec<f64>> {
        Ok(Vec::new())
    }

    /// The engine's group commit: recipients' state changes, rate marks
    /// and quota takes, in one durable transaction where the store can
    /// (one disk flush for all of them). Returns what each take got, in
    /// order (see [`Store::take_quota`]).
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
        Err(StoreError {
            place: self.describe().into(),
            message: "this store cannot be copied into; copy into PostgreSQL".into(),
        })
    }
    /// How many of `dump`'s campaigns, recipients, suppressions and bounces
    /// the store holds.
    fn tally(&self, _dump: &Dump) -> Result<Tally> {
        Err(StoreError {
            place: self.describe().into(),
            message: "this store cannot be counted against a copy".into(),
        })
    }
}

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

/// Messages of a relay's daily quota a run takes (see [`Store::take_quota`]).
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

/// A whole store's contents, as `herald store migrate` copies them.
#[derive(Debug, Default)]
pub struct Dump {
    pub campaigns: Vec<DumpCampaign>,
    pub recipients: Vec<DumpRecipient>,
    pub suppressions: Vec<Suppressed>,
    /// Messages `herald bounces` handled: (key, when).
    pub intake: Vec<(String, String)>,
    /// What came back, each with where it came from (`sqlite:ROWID`), so
    /// a second copy recognises it even when one message named the same
    /// address twice.
    pub bounces: Vec<(String, BounceEvent)>,
    /// Each relay's daily quota used: (relay, day, used). Copied so that a
    /// move mid-day does not hand a relay its quota a second time.
    pub relay_days: Vec<(String, String, i64)>,
}

impl Dump {
    /// The counts a store should hold after taking this copy.
    pub fn tally(&self) -> Tally {
        Tally {
            campaigns: self.campaigns.len() as u64,
            recipients: self.recipients.len() as u64,
            suppressions: self.suppressions.len() as u64,
            bounces: self.bounces.len() as u64,
        }
    }
}

#[derive(Debug)]
pub struct DumpCampaign {
    pub id: String,
    pub post: String,
    pub content_hash: String,
    pub columns: String,
    pub created_at: String,
    pub finished_at: Option<String>,
}

#[derive(Debug)]
pub struct DumpRecipient {
    pub campaign: String,
    pub seq: i64,
    pub email: String,
    pub email_key: String,
    pub line: i64,
    pub fields: String,
    pub state: String,
    pub attempts: i64,
    pub reply: Option<String>,
    pub updated_at: Option<String>,
    pub seen: i64,
    /// The relay that answered for them last (`herald status` per relay).
    pub relay: Option<String>,
}

/// Counts of what a store holds, to compare before and after a copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub campaigns: u64,
    pub recipients: u64,
    pub suppressions: u64,
    pub bounces: u64,
}

/// One recipient of a campaign as the journal has them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecipientRecord {
    pub email: String,
    pub state: State,
    pub attempts: i64,
    /// The mail server's last reply.
    pub reply: Option<String>,
    /// When the state last changed (RFC 3339, UTC); none while pending.
    pub updated_at: Option<String>,
}

/// One recipient's part of a message that came back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BounceEvent {
    /// Lower-cased.
    pub email: String,
    pub campaign: Option<String>,
    /// `bounce`, `complaint`, `unsubscribe`.
    pub kind: String,
    /// RFC 3463 status, like `5.1.1`; empty when none.
    pub status: String,
    /// The address is bad for good.
    pub hard: bool,
    /// Why, in a word (`userunknown`, `mailboxfull`, `blocked`, ...).
    pub reason: String,
    pub diagnostic: Option<String>,
    /// What herald did: `suppressed`, `counted` (a soft bounce), `recorded`
    /// (a block for the sender to look at), `none`.
    pub action: String,
    /// The message it came from (file name or IMAP UID).
    pub message: String,
    pub at: String,
}

/// What came back for one campaign.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BounceSummary {
    /// Addresses gone for good (suppressed).
    pub hard: u64,
    /// Soft bounces (mailbox full, delivery expired, ...).
    pub soft: u64,
    pub complaints: u64,
    /// Unsubscribes by email (the List-Unsubscribe mailto:).
    pub mailto_unsubscribes: u64,
    /// Blocks of the sender or the content (policy, spam, reputation):
    /// something for the sender to fix, not the subscriber. Each distinct
    /// reply with how many times it came.
    pub blocks: Vec<(String, u64)>,
}

impl BounceSummary {
    /// Adds `n` events of one kind, action, hardness, status and reason.
    fn add(&mut self, kind: &str, action: &str, hard: bool, status: &str, why: &str, n: u64) {
        match (kind, action) {
            ("complaint", _) => self.complaints += n,
            ("unsubscribe", _) => self.mailto_unsubscribes += n,
            (_, "recorded") => self
                .blocks
                .push((format!("{status} {why}").trim().to_string(), n)),
            _ if hard => self.hard += n,
            _ => self.soft += n,
        }
    }
}

/// How an address came onto the suppression list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// The mail server refused the address for good while sending.
    Bounce,
    /// A mailbox provider's one-click unsubscribe (RFC 8058).
    OneClick,
    /// The button on herald's unsubscribe page.
    Page,
    /// `herald suppress add`.
    Manual,
    /// `herald suppress import`.
    Import,
    /// A spam complaint through a mailbox provider's feedback loop (ARF).
    Complaint,
    /// An email to the List-Unsubscribe mailto: address.
    Mailto,
}

impl Source {
    pub const ALL: [Source; 7] = [
        Source::Bounce,
        Source::OneClick,
        Source::Page,
        Source::Manual,
        Source::Import,
        Source::Complaint,
        Source::Mailto,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Bounce => "bounce",
            Source::OneClick => "one-click",
            Source::Page => "page",
            Source::Manual => "manual",
            Source::Import => "import",
            Source::Complaint => "complaint",
            Source::Mailto => "mailto",
        }
    }

    pub fn parse(s: &str) -> Option<Source> {
        Source::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// The person asked to leave through a link or button (what the
    /// page's Undo may take back).
    pub fn is_unsubscribe(self) -> bool {
        matches!(self, Source::OneClick | Source::Page)
    }

    /// Which of an address's events names it on the one-line list: a
    /// complaint or a bounce (0) over an addition by hand or import (1)
    /// over the person's own unsubscribe (2). Someone who unsubscribed and
    /// then complained is shown as a complaint.
    pub fn weight(self) -> u8 {
        match self {
            Source::Complaint | Source::Bounce => 0,
            Source::Manual | Source::Import => 1,
            Source::OneClick | Source::Page | Source::Mailto => 2,
        }
    }
}

/// One entry per address from its events (oldest first): the weightiest
/// event, the oldest of those; the list ordered by when that was.
pub fn people(events: Vec<Suppressed>) -> Vec<Suppressed> {
    let mut best: std::collections::HashMap<String, Suppressed> = std::collections::HashMap::new();
    for e in events {
        match best.get(&e.email) {
            Some(b) if b.source.weight() <= e.source.weight() => {}
            _ => {
                best.insert(e.email.clone(), e);
            }
        }
    }
    let mut v: Vec<Suppressed> = best.into_values().collect();
    v.sort_by(|a, b| (&a.added_at, &a.email).cmp(&(&b.added_at, &b.email)));
    v
}

/// One address on the suppression list. No IP address or other detail
/// of the request is kept: only what is needed to honour and explain it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suppressed {
    /// Lower-cased.
    pub email: String,
    /// Why, in words (a server's reply for a bounce).
    pub reason: String,
    pub source: Source,
    /// The campaign whose email it came from, when known.
    pub campaign: Option<String>,
    /// When (RFC 3339, UTC).
    pub added_at: String,
}

/// The store in `dir` (created if needed).
pub fn open(dir: &Path) -> Result<Box<dyn Store>> {
    Ok(Box::new(Sqlite::open(dir)?))
}

/// The store in `dir` if one is there; never creates one (a dry run or
/// `status` must not leave a `.herald` folder behind).
pub fn open_existing(dir: &Path) -> Result<Option<Box<dyn Store>>> {
    if !dir.join(sqlite::FILE).exists() {
        return Ok(None);
    }
    open(dir).map(Some)
}

/// Which store the settings name: the SQLite journal in a folder, or a
/// PostgreSQL database shared by several hosts.
#[derive(Clone)]
pub enum Location {
    Journal(PathBuf),
    Postgres(Box<postgres::Target>),
}

impl Location {
    /// The store `config` names: `database_url` when set, else the journal
    /// folder. The database password comes from HERALD_DATABASE_PASSWORD
    /// (or `_FILE`), never from the settings.
    pub fn from_config(config: &crate::config::Config) -> anyhow::Result<Location> {
        let Some(url) = &config.database_url else {
            return Ok(Location::Journal(config.journal_dir.clone()));
        };
        let password = crate::config::secret("HERALD_DATABASE_PASSWORD")?;
        let ca = match &config.database_ca_file {
            Some(f) => Some(crate::tls::read_ca_pem(f, "database CA file")?),
            None => None,
        };
        Ok(Location::Postgres(Box::new(postgres::Target::new(
            url.as_str(),
            password.as_ref().map(|p| p.expose()),
            ca.as_deref(),
        )?)))
    }

    /// For messages: the journal's file or the database's address.
    pub fn describe(&self) -> String {
        match self {
            Location::Journal(dir) => dir.join(sqlite::FILE).display().to_string(),
            Location::Postgres(t) => t.shown().to_string(),
        }
    }

    /// The store, created if needed.
    pub fn open(&self) -> Result<Box<dyn Store>> {
        match self {
            Location::Journal(dir) => open(dir),
            Location::Postgres(t) => Ok(Box::new(Postgres::open(t)?)),
        }
    }

    /// The store if there is one; a journal folder is never created (a dry
    /// run or `status` must not leave a `.herald` folder behind). A
    /// database is always there once named.
    pub fn open_existing(&self) -> Result<Option<Box<dyn Store>>> {
        match self {
            Location::Journal(dir) => open_existing(dir),
            Location::Postgres(_) => self.open().map(Some),
        }
    }

    pub fn is_shared(&self) -> bool {
        matches!(self, Location::Postgres(_))
    }
}

/// A throwaway store, for dry runs and test sends: the same engine and
/// bookkeeping, nothing kept. Deleted with the returned folder.
pub fn scratch() -> Result<(tempfile::TempDir, Box<dyn Store>)> {
    let dir = tempfile::tempdir().map_err(|e| StoreError {
        place: std::env::temp_dir(),
        message: format!("cannot make a temporary folder ({e})"),
    })?;
    let store = Sqlite::open_scratch(dir.path())?;
    Ok((dir, Box::new(store)))
}
