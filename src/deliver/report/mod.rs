//! `herald report`: how one issue did, as figures a marketing team asks
//! for after every send (did it arrive, where did it bounce, how many
//! left, are we near Gmail's limits), and the same figures over the last
//! campaigns. A typed [`Report`]; [`page`] draws it as one self-contained
//! HTML page, the CLI prints it as JSON.
//!
//! Every figure has one home: the campaign's counts, bounces, complaints
//! and unsubscribes are [`super::status`]'s (what `herald status --json`
//! prints), the per-domain ones are gathered with the same rules
//! ([`BounceSummary::count`], [`super::status::left_by_link`]) and add up
//! to them, and the accepted messages per minute are the store's
//! [`crate::store::Figures`], which add up to `sent`.
//!
//! Rates (decided here; the README says the same): deferrals and failures
//! are out of the messages herald tried (`sent + deferred + failed +
//! unknown`); bounces, complaints and unsubscribes are out of the messages
//! the relays accepted (`sent`), as Gmail's and Yahoo's spam rate is out of
//! the mail delivered. A rate with nothing to divide by is 0.

pub mod chart;
pub mod page;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::status::{self, CampaignStatus, StatusError, left_by_link};
use crate::config::Config;
use crate::store::{BounceSummary, Counts, MinuteCount, Store, StoreError, domain_of};

/// Why `report` could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The campaign asked for is not in the journal.
    #[error("there is no campaign {0} in the journal; `herald status` lists the campaigns by name")]
    NoSuchCampaign(String),
    /// Nothing was sent with this journal yet.
    #[error(
        "there is no campaign in the journal yet: `herald send` makes one, and `herald report` then shows how it did"
    )]
    NoCampaigns,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<StatusError> for ReportError {
    fn from(e: StatusError) -> ReportError {
        match e {
            StatusError::NoSuchCampaign(c) => ReportError::NoSuchCampaign(c),
            StatusError::Store(e) => ReportError::Store(e),
        }
    }
}

/// How many domains the report names; the others are added up as "the rest".
pub const TOP_DOMAINS: usize = 20;
/// How many campaigns the trend shows (this one and those before it).
pub const TREND_CAMPAIGNS: usize = 12;

/// The lines a complaint rate is drawn against: Gmail's and Yahoo's bulk
/// sender rules (February 2024) ask to stay under 0.1% and never reach
/// 0.3%, where mail is junked or refused.
pub const COMPLAINT_LIMITS: [Limit; 2] = [
    Limit {
        rate: 0.001,
        label: "0.1%: Gmail and Yahoo ask bulk senders to stay below this",
    },
    Limit {
        rate: 0.003,
        label: "0.3%: at or above this Gmail and Yahoo junk or refuse the mail",
    },
];

/// A line on the complaint-rate chart.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Limit {
    /// A fraction: 0.001 is 0.1%.
    pub rate: f64,
    pub label: &'static str,
}

/// A count and what part it is of its base (a fraction: 0.012 is 1.2%).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Figure {
    pub count: u64,
    pub rate: f64,
}

impl Figure {
    fn of(count: u64, base: i64) -> Figure {
        let rate = if base > 0 {
            count as f64 / base as f64
        } else {
            0.0
        };
        Figure { count, rate }
    }
}

/// One campaign's outcome: the figures the report shows for the issue
/// and in the trend.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Outcomes {
    /// Messages the relays accepted (`herald status`'s `sent`).
    pub sent: i64,
    /// Messages herald tried: sent, deferred, failed, or of unknown outcome.
    pub mailed: i64,
    /// Out of `mailed`.
    pub deferred: Figure,
    /// Refused for good while sending (5xx); out of `mailed`.
    pub failed: Figure,
    /// Out of `sent`, as are the rest.
    pub hard_bounces: Figure,
    pub soft_bounces: Figure,
    pub complaints: Figure,
    /// Through the link or button, and by email (the List-Unsubscribe
    /// mailto:): `unsubscribed_by_link + unsubscribed_by_email`.
    pub unsubscribes: Figure,
    /// `herald status`'s `unsubscribed`.
    pub unsubscribed_by_link: u64,
    /// `herald status`'s `bounces.mailto_unsubscribes`.
    pub unsubscribed_by_email: u64,
}

impl Outcomes {
    /// From what `herald status` says of the campaign: nothing counted twice.
    pub fn of(s: &CampaignStatus) -> Outcomes {
        let n = &s.campaign.counts;
        let b = &s.bounced;
        Outcomes::from_parts(n, b, s.unsubscribed as u64)
    }

    fn from_parts(n: &Counts, b: &BounceSummary, by_link: u64) -> Outcomes {
        let mailed = n.sent + n.deferred + n.failed + n.unknown;
        Outcomes {
            sent: n.sent,
            mailed,
            deferred: Figure::of(n.deferred as u64, mailed),
            failed: Figure::of(n.failed as u64, mailed),
            hard_bounces: Figure::of(b.hard, n.sent),
            soft_bounces: Figure::of(b.soft, n.sent),
            complaints: Figure::of(b.complaints, n.sent),
            unsubscribes: Figure::of(by_link + b.mailto_unsubscribes, n.sent),
            unsubscribed_by_link: by_link,
            unsubscribed_by_email: b.mailto_unsubscribes,
        }
    }
}

/// One relay's accepted messages, minute by minute.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RelaySeries {
    /// Its name in the settings (`relay` for a single `smtp_url`);
    /// `(not recorded)` for messages a herald older than this sent.
    pub relay: String,
    /// Minutes (UTC, `2026-12-06T16:57`) with at least one message
    /// accepted, in order; minutes without any are left out.
    pub minutes: Vec<MinuteSent>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MinuteSent {
    pub minute: String,
    pub sent: i64,
}

/// What happened to one recipient domain's recipients.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DomainOutcome {
    /// The domain, or `the rest (N domains)` for the line after the top 20.
    pub domain: String,
    /// Everyone of the campaign at this domain, whatever their state.
    pub recipients: i64,
    pub sent: i64,
    pub deferred: i64,
    pub failed: i64,
    pub hard_bounces: u64,
    pub soft_bounces: u64,
    pub complaints: u64,
    /// By link, button or email.
    pub unsubscribes: u64,
}

impl DomainOutcome {
    fn add(&mut self, o: &DomainOutcome) {
        self.recipients += o.recipients;
        self.sent += o.sent;
        self.deferred += o.deferred;
        self.failed += o.failed;
        self.hard_bounces += o.hard_bounces;
        self.soft_bounces += o.soft_bounces;
        self.complaints += o.complaints;
        self.unsubscribes += o.unsubscribes;
    }
}

/// One campaign in the trend.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TrendPoint {
    pub campaign: String,
    pub created_at: String,
    #[serde(flatten)]
    pub outcomes: Outcomes,
}

/// How one issue did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub campaign: String,
    pub post: String,
    /// When the send began and ended (ISO 8601 UTC, to the second).
    pub created_at: String,
    pub finished_at: Option<String>,
    /// `herald status`'s counts of the campaign's recipients.
    pub counts: Counts,
    pub outcomes: Outcomes,
    /// Messages accepted per relay and minute, relays in name order.
    pub per_minute: Vec<RelaySeries>,
    /// The [`TOP_DOMAINS`] domains with the most recipients (ties by name).
    pub domains: Vec<DomainOutcome>,
    /// Every other domain added up; `None` when there are no others.
    pub other_domains: Option<DomainOutcome>,
    /// This campaign and up to [`TREND_CAMPAIGNS`]` - 1` before it, oldest first.
    pub trend: Vec<TrendPoint>,
    pub complaint_limits: [Limit; 2],
}

/// `herald report [CAMPAIGN]`: the campaign asked for, or the latest.
pub fn report(
    journal: &dyn Store,
    config: &Config,
    campaign: Option<&str>,
) -> Result<Report, ReportError> {
    let all = status::status(journal, config, None)?;
    let at = match campaign {
        Some(id) => all
            .campaigns
            .iter()
            .position(|c| c.campaign.id == id)
            .ok_or_else(|| ReportError::NoSuchCampaign(id.to_string()))?,
        None => all
            .campaigns
            .len()
            .checked_sub(1)
            .ok_or(ReportError::NoCampaigns)?,
    };
    let this = &all.campaigns[at];
    let id = this.campaign.id.as_str();
    let trend = all.campaigns[(at + 1).saturating_sub(TREND_CAMPAIGNS)..=at]
        .iter()
        .map(|c| TrendPoint {
            campaign: c.campaign.id.clone(),
            created_at: c.campaign.created_at.clone(),
            outcomes: Outcomes::of(c),
        })
        .collect();
    let (domains, other_domains) = domains(journal, id)?;
    Ok(Report {
        campaign: id.to_string(),
        post: this.campaign.post.clone(),
        created_at: this.campaign.created_at.clone(),
        finished_at: this.campaign.finished_at.clone(),
        counts: this.campaign.counts.clone(),
        outcomes: Outcomes::of(this),
        per_minute: per_relay(journal.sent_per_minute(id)?),
        domains,
        other_domains,
        trend,
        complaint_limits: COMPLAINT_LIMITS,
    })
}

/// The store's minutes, one series per relay.
fn per_relay(minutes: Vec<MinuteCount>) -> Vec<RelaySeries> {
    let mut by: BTreeMap<String, Vec<MinuteSent>> = BTreeMap::new();
    for m in minutes {
        let relay = m.relay.unwrap_or_else(|| "(not recorded)".to_string());
        by.entry(relay).or_default().push(MinuteSent {
            minute: m.minute,
            sent: m.sent,
        });
    }
    by.into_iter()
        .map(|(relay, mut minutes)| {
            minutes.sort_by(|a, b| a.minute.cmp(&b.minute));
            RelaySeries { relay, minutes }
        })
        .collect()
}

/// Each domain's outcome, the top [`TOP_DOMAINS`] by recipients, and the
/// rest added up.
fn domains(
    journal: &dyn Store,
    campaign: &str,
) -> Result<(Vec<DomainOutcome>, Option<DomainOutcome>), StoreError> {
    let mut by: HashMap<String, DomainOutcome> = HashMap::new();
    for d in journal.domain_counts(campaign)? {
        let o = by.entry(d.domain.clone()).or_default();
        o.recipients += d.counts.total;
        o.sent += d.counts.sent;
        o.deferred += d.counts.deferred;
        o.failed += d.counts.failed;
    }
    let mut came_back: HashMap<String, BounceSummary> = HashMap::new();
    for e in journal.bounces(campaign)? {
        came_back
            .entry(domain_of(&e.email).to_string())
            .or_default()
            .count(&e);
    }
    for (domain, b) in came_back {
        let o = by.entry(domain).or_default();
        o.hard_bounces += b.hard;
        o.soft_bounces += b.soft;
        o.complaints += b.complaints;
        o.unsubscribes += b.mailto_unsubscribes;
    }
    let suppressions = journal.suppressions()?;
    for s in left_by_link(&suppressions, campaign) {
        by.entry(domain_of(&s.email).to_string())
            .or_default()
            .unsubscribes += 1;
    }
    let mut all: Vec<DomainOutcome> = by
        .into_iter()
        .map(|(domain, mut o)| {
            o.domain = domain;
            o
        })
        .collect();
    all.sort_by(|a, b| {
        b.recipients
            .cmp(&a.recipients)
            .then_with(|| a.domain.cmp(&b.domain))
    });
    let rest: Vec<DomainOutcome> = all.split_off(all.len().min(TOP_DOMAINS));
    let other = (!rest.is_empty()).then(|| {
        let mut sum = DomainOutcome {
            domain: format!(
                "the rest ({} domain{})",
                rest.len(),
                if rest.len() == 1 { "" } else { "s" }
            ),
            ..DomainOutcome::default()
        };
        for o in &rest {
            sum.add(o);
        }
        sum
    });
    Ok((all, other))
}
