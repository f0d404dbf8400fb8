//! A dry run's queue: the subscriber list read as the run goes, instead of
//! imported into a throwaway journal first.
//!
//! The throwaway journal cost a dry run three B-tree inserts per row, then
//! the queue's reads of the same rows and the commits of their outcomes (at
//! 20,000 rows, 427M of 6.3G instructions, and most of the run's syscalls
//! over the release before dry runs went through the engine). This queue
//! hands the engine the rows a journal would (the same addresses, lines,
//! fields and numbers, in the list's order), leaves out and writes to
//! `skipped.csv` the rows the import would, and keeps only what a dry run
//! reads back: the recipients whose message went wrong. The engine is the
//! one that sends; only where its queue comes from changes.
//!
//! Exact only when no address is on a row its status leaves out and on one
//! that is mailed (the import knows a person by address, so such rows
//! change each other): [`super::prepare`] imports those lists as before
//! (see `audience::Checked::status_and_send`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use super::error::SendError;
use super::prepare::Imported;
use crate::deliver::audience::{Audience, Row as ListRow, SkipReason, Skipped};
use crate::deliver::message::Composer;
use crate::deliver::outbox::SkipList;
use crate::store::{
    BounceEvent, BounceSummary, CampaignInfo, Counts, DomainCounts, Dump, Fault, Import, Intake,
    Journal, Lock, Locks, MinuteCount, Problem, Rates, RecipientRecord, RelayCounts, Result, Row,
    Source, State, Store, StoreError, Suppressed, Suppressions, Update, rules,
};

/// The list being read, and what the run has said about its rows.
pub(super) struct Reading {
    rows: Audience,
    list: PathBuf,
    outbox: PathBuf,
    composer: Arc<Composer>,
    /// The outbox's `skipped.csv`, lent for the run (see `Outbox::lend_skips`).
    pub(super) skips: Option<SkipList>,
    pub(super) imported: Imported,
    /// The number the import would give the next row it adds: one for
    /// every row added, mailed or not (a row left out by its status or
    /// its header is added, then skipped), as a fresh journal numbers
    /// them. Messages carry their recipient's number.
    next_seq: i64,
    read_to_end: bool,
    /// Why the list stopped being read: it changed and broke during the
    /// run, or `skipped.csv` could not be written. The run then ends as
    /// the import would have ended.
    pub(super) stopped: Option<SendError>,
    /// Recipients handed to the run and not yet written, and those whose
    /// message went wrong (a dry run reads them back as skipped rows), by
    /// number. A written one is forgotten: a dry run does not read back
    /// who was written.
    open: BTreeMap<i64, Problem>,
}

impl Reading {
    pub(super) fn new(
        rows: Audience,
        list: PathBuf,
        outbox: PathBuf,
        composer: Arc<Composer>,
        skips: SkipList,
    ) -> Reading {
        Reading {
            rows,
            list,
            outbox,
            composer,
            skips: Some(skips),
            imported: Imported::default(),
            next_seq: 1,
            read_to_end: false,
            stopped: None,
            open: BTreeMap::new(),
        }
    }

    /// Up to `limit` rows to mail, reading the list on from where it was.
    fn next(&mut self, limit: i64) -> std::result::Result<Vec<Row>, SendError> {
        let mut out = Vec::new();
        while (out.len() as i64) < limit && !self.read_to_end {
            let Some(row) = self.rows.next_row() else {
                self.read_to_end = true;
                break;
            };
            self.imported.rows_read += 1;
            // The list was validated before the run; a row can only break
            // now if the file changed meanwhile, and then stopping is right.
            match row? {
                ListRow::Send(r) => {
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    if let Some(why) = self.composer.header_problem(&r) {
                        // As the import: never mailed, the list's to fix.
                        tracing::warn!(
                            "{}:{}: {} is not mailed: {why}",
                            self.list.display(),
                            r.line,
                            r.email
                        );
                        self.skip(Skipped {
                            line: r.line,
                            email: r.email,
                            reason: SkipReason::HeaderTooLong,
                            detail: Some(why),
                        })?;
                        continue;
                    }
                    self.open.insert(
                        seq,
                        Problem {
                            email: r.email.clone(),
                            line: r.line as i64,
                            state: State::Pending,
                            reply: None,
                            attempts: 0,
                        },
                    );
                    out.push(Row {
                        seq,
                        email: r.email,
                        line: r.line as i64,
                        values: r.values,
                        attempts: 0,
                    });
                }
                ListRow::Skip(s) => {
                    // Added, then skipped, by the import: numbered.
                    if s.reason.is_recorded() {
                        self.next_seq += 1;
                    }
                    self.skip(s)?;
                }
            }
        }
        Ok(out)
    }

    /// A row left out: counted, kept as an example, written to `skipped.csv`.
    fn skip(&mut self, s: Skipped) -> std::result::Result<(), SendError> {
        if let Some(list) = &mut self.skips {
            list.skip(&s).map_err(|source| SendError::Outbox {
                dir: self.outbox.clone(),
                source,
            })?;
        }
        self.imported.left_out(s);
        Ok(())
    }

    /// An outcome, as a journal records it (see `Sqlite::commit_batch`).
    fn apply(&mut self, u: &Update) {
        if u.state == State::Sent {
            self.open.remove(&u.seq);
        } else if let Some(p) = self.open.get_mut(&u.seq) {
            p.state = u.state;
            if u.reply.is_some() {
                p.reply.clone_from(&u.reply);
            }
            p.attempts += u.attempts;
        }
    }
}

/// The engine's store for a dry run of a list: the queue is the list (see
/// the module's comment); the rest is a store with nothing in it, as a
/// fresh throwaway journal is.
pub(super) struct ListQueue {
    reading: Arc<Mutex<Reading>>,
    /// The list, for messages.
    list: PathBuf,
}

impl ListQueue {
    pub(super) fn new(reading: Arc<Mutex<Reading>>) -> ListQueue {
        let list = lock(&reading).list.clone();
        ListQueue { reading, list }
    }

    fn reading(&self) -> MutexGuard<'_, Reading> {
        lock(&self.reading)
    }

    fn err(&self, why: String) -> StoreError {
        StoreError::new(self.describe(), Fault::Journal(why))
    }
}

pub(super) fn lock(reading: &Mutex<Reading>) -> MutexGuard<'_, Reading> {
    reading.lock().unwrap_or_else(|p| p.into_inner())
}

/// Nobody else reads a dry run's list: its lock is always free.
struct Own;
impl Lock for Own {}

impl Journal for ListQueue {
    fn campaign_hash(&self, _id: &str) -> Result<Option<String>> {
        Ok(None)
    }
    fn upsert_campaign(&mut self, _: &str, _: &str, _: &str, _: &[String]) -> Result<()> {
        Ok(())
    }
    fn import<'a>(&'a mut self, _campaign: &str) -> Result<Box<dyn Import + 'a>> {
        Err(self.err("a dry run's list is read as the run goes, not imported".into()))
    }
    fn queue(&self, _: &str, _after_seq: i64, limit: i64, _: bool) -> Result<Vec<Row>> {
        // Only the engine's store task asks, each time for the rows after
        // the last it was given: the list read on from where it stopped.
        let mut reading = self.reading();
        if reading.stopped.is_some() {
            return Err(self.err("the subscriber list stopped being read".into()));
        }
        match reading.next(limit) {
            Ok(rows) => Ok(rows),
            Err(e) => {
                let why = e.to_string();
                reading.stopped = Some(e);
                Err(self.err(why))
            }
        }
    }
    fn apply(&mut self, _campaign: &str, updates: &[Update]) -> Result<()> {
        let mut reading = self.reading();
        for u in updates {
            reading.apply(u);
        }
        Ok(())
    }
    fn counts(&self, _: &str) -> Result<Counts> {
        Ok(Counts::default())
    }
    fn relay_counts(&self, _: &str) -> Result<Vec<RelayCounts>> {
        Ok(Vec::new())
    }
    fn finish_if_done(&mut self, _: &str) -> Result<bool> {
        Ok(false)
    }
    fn is_finished(&self, _: &str) -> Result<bool> {
        Ok(false)
    }
    fn campaigns(&self) -> Result<Vec<CampaignInfo>> {
        Ok(Vec::new())
    }
    fn problems(&self, _: &str, limit: i64) -> Result<Vec<Problem>> {
        Ok(self
            .reading()
            .open
            .values()
            .filter(|p| rules::PROBLEMS.contains(&p.state))
            .take(limit.max(0) as usize)
            .cloned()
            .collect())
    }
    fn recipient_email(&self, _: &str, seq: i64) -> Result<Option<String>> {
        Ok(self.reading().open.get(&seq).map(|p| p.email.clone()))
    }
    fn recipients(&self, _: &str) -> Result<Vec<RecipientRecord>> {
        Ok(Vec::new())
    }
}

impl Locks for ListQueue {
    fn lock(&self, _: &str) -> Result<Option<Box<dyn Lock>>> {
        Ok(Some(Box::new(Own)))
    }
}

/// The dry run's suppressions are read from the journal before the run
/// (and applied by the list's reader); nothing is added during it.
impl Suppressions for ListQueue {
    fn suppressed(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
    fn is_suppressed(&self, _: &str) -> Result<bool> {
        Ok(false)
    }
    fn suppress(&mut self, _: &[Suppressed]) -> Result<u64> {
        Ok(0)
    }
    fn unsuppress(&mut self, _: &str, _: &[Source]) -> Result<bool> {
        Ok(false)
    }
    fn suppression_events(&self) -> Result<Vec<Suppressed>> {
        Ok(Vec::new())
    }
}

impl Intake for ListQueue {
    fn message_handled(&self, _: &str) -> Result<bool> {
        Ok(false)
    }
    fn record_message(&mut self, _: &str, _: &[BounceEvent], _: &[Suppressed]) -> Result<()> {
        Ok(())
    }
    fn soft_bounces(&self, _: &str, _: &str) -> Result<Vec<Option<String>>> {
        Ok(Vec::new())
    }
    fn bounce_summary(&self, _: &str) -> Result<BounceSummary> {
        Ok(BounceSummary::default())
    }
    fn bounces(&self, _: &str) -> Result<Vec<BounceEvent>> {
        Ok(Vec::new())
    }
}

/// Files need no quota (a dry run's relay has none).
impl Rates for ListQueue {
    fn take_quota(&mut self, _: &str, _: &str, want: u64, _: u64) -> Result<u64> {
        Ok(want)
    }
    fn give_back_quota(&mut self, _: &str, _: &str, _: u64) -> Result<()> {
        Ok(())
    }
    fn quota_used(&self, _: &str, _: &str) -> Result<u64> {
        Ok(0)
    }
}

impl crate::store::Figures for ListQueue {
    fn sent_per_minute(&self, _: &str) -> Result<Vec<MinuteCount>> {
        Ok(Vec::new())
    }
    fn domain_counts(&self, _: &str) -> Result<Vec<DomainCounts>> {
        Ok(Vec::new())
    }
}

impl Store for ListQueue {
    fn describe(&self) -> String {
        format!("the dry run's list {}", self.list.display())
    }
    fn dump(&self) -> Result<Dump> {
        Err(self.err("a dry run's list is not a store to copy".into()))
    }
}
