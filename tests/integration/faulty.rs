//! A store that fails on command: the real SQLite journal underneath, and
//! a switch that makes every write fail as a full disk or a vanished
//! database would, for the engine's tests of "nothing goes out that is
//! not recorded first".

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use herald::store::{
    self, BounceEvent, BounceSummary, CampaignInfo, Counts, Dump, Fault, Import, Intake, Journal,
    Lock, Locks, Problem, Rates, RecipientRecord, RelayCounts, Row, Store, StoreError, Suppressed,
    Suppressions, Update,
};

/// Flips a [`Failing`] store between working and failing.
#[derive(Clone, Default)]
pub struct Switch {
    writes_fail: Arc<AtomicBool>,
    /// Writes refused while failing.
    pub refused: Arc<AtomicU64>,
}

impl Switch {
    pub fn fail_writes(&self, on: bool) {
        self.writes_fail.store(on, Ordering::SeqCst);
    }
}

pub struct Failing {
    inner: Box<dyn Store>,
    switch: Switch,
}

impl Failing {
    pub fn new(inner: Box<dyn Store>, switch: Switch) -> Failing {
        Failing { inner, switch }
    }

    fn write(&self) -> store::Result<()> {
        if self.switch.writes_fail.load(Ordering::SeqCst) {
            self.switch.refused.fetch_add(1, Ordering::SeqCst);
            // What SQLite says when the disk is full.
            return Err(StoreError::new(
                self.inner.describe(),
                Fault::Journal("database or disk is full".into()),
            ));
        }
        Ok(())
    }
}

impl Journal for Failing {
    fn campaign_hash(&self, id: &str) -> store::Result<Option<String>> {
        self.inner.campaign_hash(id)
    }
    fn upsert_campaign(
        &mut self,
        id: &str,
        post: &str,
        hash: &str,
        columns: &[String],
    ) -> store::Result<()> {
        self.write()?;
        self.inner.upsert_campaign(id, post, hash, columns)
    }
    fn import<'a>(&'a mut self, campaign: &str) -> store::Result<Box<dyn Import + 'a>> {
        self.write()?;
        self.inner.import(campaign)
    }
    fn queue(
        &self,
        campaign: &str,
        after_seq: i64,
        limit: i64,
        resend_unknown: bool,
    ) -> store::Result<Vec<Row>> {
        self.inner.queue(campaign, after_seq, limit, resend_unknown)
    }
    fn apply(&mut self, campaign: &str, updates: &[Update]) -> store::Result<()> {
        self.write()?;
        self.inner.apply(campaign, updates)
    }
    fn counts(&self, campaign: &str) -> store::Result<Counts> {
        self.inner.counts(campaign)
    }
    fn relay_counts(&self, campaign: &str) -> store::Result<Vec<RelayCounts>> {
        self.inner.relay_counts(campaign)
    }
    fn finish_if_done(&mut self, campaign: &str) -> store::Result<bool> {
        self.write()?;
        self.inner.finish_if_done(campaign)
    }
    fn is_finished(&self, campaign: &str) -> store::Result<bool> {
        self.inner.is_finished(campaign)
    }
    fn campaigns(&self) -> store::Result<Vec<CampaignInfo>> {
        self.inner.campaigns()
    }
    fn problems(&self, campaign: &str, limit: i64) -> store::Result<Vec<Problem>> {
        self.inner.problems(campaign, limit)
    }
    fn recipient_email(&self, campaign: &str, seq: i64) -> store::Result<Option<String>> {
        self.inner.recipient_email(campaign, seq)
    }
    fn recipients(&self, campaign: &str) -> store::Result<Vec<RecipientRecord>> {
        self.inner.recipients(campaign)
    }
}

impl Locks for Failing {
    fn lock(&self, campaign: &str) -> store::Result<Option<Box<dyn Lock>>> {
        self.inner.lock(campaign)
    }
}

impl Suppressions for Failing {
    fn suppressed(&self) -> store::Result<Vec<String>> {
        self.inner.suppressed()
    }
    fn is_suppressed(&self, email: &str) -> store::Result<bool> {
        self.inner.is_suppressed(email)
    }
    fn suppress(&mut self, entries: &[Suppressed]) -> store::Result<u64> {
        self.write()?;
        self.inner.suppress(entries)
    }
    fn unsuppress(&mut self, email: &str, sources: &[store::Source]) -> store::Result<bool> {
        self.write()?;
        self.inner.unsuppress(email, sources)
    }
    fn suppressions(&self) -> store::Result<Vec<Suppressed>> {
        self.inner.suppressions()
    }
    fn suppression_events(&self) -> store::Result<Vec<Suppressed>> {
        self.inner.suppression_events()
    }
    fn suppression_mark(&self) -> store::Result<i64> {
        self.inner.suppression_mark()
    }
    fn suppressed_after(&self, mark: i64) -> store::Result<Vec<(i64, String)>> {
        self.inner.suppressed_after(mark)
    }
}

impl Intake for Failing {
    fn message_handled(&self, key: &str) -> store::Result<bool> {
        self.inner.message_handled(key)
    }
    fn record_message(
        &mut self,
        key: &str,
        events: &[BounceEvent],
        suppress: &[Suppressed],
    ) -> store::Result<()> {
        self.write()?;
        self.inner.record_message(key, events, suppress)
    }
    fn soft_bounces(&self, email: &str, since: &str) -> store::Result<Vec<Option<String>>> {
        self.inner.soft_bounces(email, since)
    }
    fn bounce_summary(&self, campaign: &str) -> store::Result<BounceSummary> {
        self.inner.bounce_summary(campaign)
    }
    fn bounces(&self, campaign: &str) -> store::Result<Vec<BounceEvent>> {
        self.inner.bounces(campaign)
    }
}

impl Rates for Failing {
    fn take_quota(&mut self, relay: &str, day: &str, want: u64, max: u64) -> store::Result<u64> {
        self.write()?;
        self.inner.take_quota(relay, day, want, max)
    }
    fn give_back_quota(&mut self, relay: &str, day: &str, n: u64) -> store::Result<()> {
        self.write()?;
        self.inner.give_back_quota(relay, day, n)
    }
    fn quota_used(&self, relay: &str, day: &str) -> store::Result<u64> {
        self.inner.quota_used(relay, day)
    }
    fn rate_history(&self, key: &str, now: f64, max: u64) -> store::Result<Vec<f64>> {
        self.inner.rate_history(key, now, max)
    }
}

impl store::Figures for Failing {
    fn sent_per_minute(&self, campaign: &str) -> store::Result<Vec<store::MinuteCount>> {
        self.inner.sent_per_minute(campaign)
    }
    fn domain_counts(&self, campaign: &str) -> store::Result<Vec<store::DomainCounts>> {
        self.inner.domain_counts(campaign)
    }
}

impl Store for Failing {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn commit_batch(
        &mut self,
        campaign: &str,
        updates: &[Update],
        marks: &[store::RateMark],
        takes: &[store::QuotaTake],
    ) -> store::Result<Vec<u64>> {
        self.write()?;
        self.inner.commit_batch(campaign, updates, marks, takes)
    }
    fn dump(&self) -> store::Result<Dump> {
        self.inner.dump()
    }
}
