//! `herald status`: how each campaign went, from the journal, as typed
//! outcomes. The CLI words them (text, JSON or CSV) and maps them to exit
//! codes; nothing here prints.
//!
//! Times leave here as ISO 8601 to the second in UTC
//! (`2026-12-06T12:42:52Z`, see [`crate::clock::to_second`]): a
//! spreadsheet reads that as a date, and no reader of `status` needs the
//! nanoseconds the journal keeps to order its own records.

use std::collections::HashMap;

use serde::Serialize;

use crate::clock::to_second;
use crate::config::Config;
use crate::store::{
    BounceSummary, CampaignInfo, Problem, RelayCounts, Source, State, Store, StoreError, Suppressed,
};

/// Why `status` could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The campaign asked for is not in the journal.
    #[error("there is no campaign {0}; `herald status` lists them")]
    NoSuchCampaign(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the journal says of one campaign.
#[derive(Debug, Serialize)]
pub struct CampaignStatus {
    pub campaign: CampaignInfo,
    pub problems: Vec<Problem>,
    /// Who left through this email's unsubscribe link.
    pub unsubscribed: usize,
    #[serde(rename = "bounces")]
    pub bounced: BounceSummary,
    /// Each relay of the settings (in their order; relays no longer in
    /// them last), with its quota used today.
    pub relays: Vec<RelayCounts>,
}

/// The suppression list in numbers, for the line under the campaigns.
#[derive(Debug, Default, Serialize)]
pub struct SuppressionCounts {
    pub addresses: usize,
    pub unsubscribed: usize,
    pub bounced: usize,
    /// Added by hand or imported.
    pub by_hand: usize,
}

/// Every campaign of the journal (or the one asked for), oldest first,
/// and the suppression list in numbers.
#[derive(Debug)]
pub struct Status {
    pub campaigns: Vec<CampaignStatus>,
    pub suppressions: SuppressionCounts,
}

/// `herald status [CAMPAIGN]`: what the journal says of each campaign, or
/// of `only`.
pub fn status(
    journal: &dyn Store,
    config: &Config,
    only: Option<&str>,
) -> Result<Status, StatusError> {
    let mut campaigns = journal.campaigns()?;
    if let Some(c) = only {
        campaigns.retain(|x| x.id == c);
        if campaigns.is_empty() {
            return Err(StatusError::NoSuchCampaign(c.to_string()));
        }
    }
    let suppressions = journal.suppressions()?;
    let mut out = Vec::new();
    for c in campaigns {
        out.push(campaign_status(journal, config, &suppressions, c)?);
    }
    let count = |f: &dyn Fn(Source) -> bool| suppressions.iter().filter(|s| f(s.source)).count();
    Ok(Status {
        campaigns: out,
        suppressions: SuppressionCounts {
            addresses: suppressions.len(),
            unsubscribed: count(&|s| s.is_unsubscribe()),
            bounced: count(&|s| s == Source::Bounce),
            by_hand: count(&|s| matches!(s, Source::Manual | Source::Import)),
        },
    })
}

/// The campaign's times, to the second (see the module's note).
fn seconds(mut c: CampaignInfo) -> CampaignInfo {
    c.created_at = to_second(&c.created_at);
    c.finished_at = c.finished_at.as_deref().map(to_second);
    c
}

/// Who left through campaign's unsubscribe link or button: the people
/// (one entry per address, see [`crate::store::people`]) whose weightiest
/// event is an unsubscribe from this campaign. Someone who unsubscribed and
/// then complained counts as a complaint, not here. `herald report` counts
/// them per domain from the same list.
pub fn left_by_link<'a>(
    suppressions: &'a [Suppressed],
    campaign: &'a str,
) -> impl Iterator<Item = &'a Suppressed> + 'a {
    suppressions
        .iter()
        .filter(move |s| s.source.is_unsubscribe() && s.campaign.as_deref() == Some(campaign))
}

/// What the journal says of campaign `c`.
fn campaign_status(
    journal: &dyn Store,
    config: &Config,
    suppressions: &[Suppressed],
    c: CampaignInfo,
) -> Result<CampaignStatus, StatusError> {
    let problems = journal.problems(&c.id, 100_000)?;
    let unsubscribed = left_by_link(suppressions, &c.id).count();
    let bounced = journal.bounce_summary(&c.id)?;
    let relays = relays(journal, config, &c.id)?;
    Ok(CampaignStatus {
        campaign: seconds(c),
        problems,
        unsubscribed,
        bounced,
        relays,
    })
}

/// What each relay carried for `campaign`. Every relay of the settings is
/// shown, with its quota used today (across campaigns, by the relay's own
/// day), even before it carried anything for this campaign; in the order
/// of the settings, relays no longer in them last.
fn relays(
    journal: &dyn Store,
    config: &Config,
    campaign: &str,
) -> Result<Vec<RelayCounts>, StoreError> {
    let mut relays = journal.relay_counts(campaign)?;
    let now = crate::clock::now();
    for r in config.relay_list() {
        let at = match relays.iter().position(|x| x.relay == r.name) {
            Some(i) => i,
            None if config.relays.is_empty() => continue,
            None => {
                relays.push(RelayCounts {
                    relay: r.name.clone(),
                    ..RelayCounts::default()
                });
                relays.len() - 1
            }
        };
        if let Some(max) = r.max_per_day {
            let day = now.to_zoned(r.day_zone.clone()).date().to_string();
            let used = journal.quota_used(&r.name, &day)?;
            let e = &mut relays[at];
            e.max_per_day = Some(max);
            e.quota_used_today = Some(used);
            e.day = Some(format!("{day} ({})", r.day_zone_name));
        }
    }
    let order: Vec<String> = config.relay_list().into_iter().map(|r| r.name).collect();
    relays.sort_by_key(|r| {
        order
            .iter()
            .position(|n| *n == r.relay)
            .unwrap_or(usize::MAX)
    });
    Ok(relays)
}

/// One recipient of a campaign as `status CAMPAIGN --csv` lists them:
/// what happened to their message and what came back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecipientRow {
    pub email: String,
    /// `sent`, `failed`, `deferred`, `pending`, `skipped`, `removed`, or
    /// `unknown` (herald was stopped while sending to them).
    pub state: &'static str,
    pub attempts: i64,
    /// The mail server's last reply, or why they were left out.
    pub last_reply: String,
    pub updated_at: String,
    /// The latest bounce, complaint or unsubscribe email for this campaign.
    pub came_back: String,
    pub came_back_at: String,
    /// Why they are on the suppression list (`one-click`, `bounce`...): an
    /// event of this campaign first, else whatever keeps them there now
    /// (so the people left out before they were mailed say why).
    pub suppressed: String,
    pub suppressed_at: String,
}

/// `herald status CAMPAIGN --csv`: one row per recipient, in the
/// campaign's order, those left out because they were suppressed
/// included.
pub fn recipients(journal: &dyn Store, campaign: &str) -> Result<Vec<RecipientRow>, StatusError> {
    if !journal.campaigns()?.iter().any(|c| c.id == campaign) {
        return Err(StatusError::NoSuchCampaign(campaign.to_string()));
    }
    let recipients = journal.recipients(campaign)?;
    // The latest of each kind per address wins: a later bounce says more.
    let mut came_back = HashMap::new();
    for b in journal.bounces(campaign)? {
        let what = match b.kind.as_str() {
            "bounce" => format!(
                "{} bounce {} {}",
                if b.hard { "hard" } else { "soft" },
                b.status,
                b.diagnostic.as_deref().unwrap_or(&b.reason)
            ),
            other => other.to_string(),
        };
        came_back.insert(b.email.clone(), (what.trim().to_string(), b.at));
    }
    let events = journal.suppression_events()?;
    let mut suppressed: HashMap<String, Suppressed> = crate::store::people(events.clone())
        .into_iter()
        .map(|s| (s.email.clone(), s))
        .collect();
    for s in events {
        if s.campaign.as_deref() == Some(campaign) {
            suppressed.insert(s.email.clone(), s);
        }
    }
    Ok(recipients
        .into_iter()
        .map(|r| {
            let key = r.email.to_lowercase();
            let (back, back_at) = came_back.get(&key).cloned().unwrap_or_default();
            let (supp, supp_at) = suppressed
                .get(&key)
                .map(|s| (s.source.as_str().to_string(), to_second(&s.added_at)))
                .unwrap_or_default();
            RecipientRow {
                state: match r.state {
                    State::Sending => "unknown",
                    s => s.as_str(),
                },
                attempts: r.attempts,
                last_reply: r.reply.unwrap_or_default(),
                updated_at: r.updated_at.as_deref().map(to_second).unwrap_or_default(),
                came_back: back,
                came_back_at: to_second(&back_at),
                suppressed: supp,
                suppressed_at: supp_at,
                email: r.email,
            }
        })
        .collect())
}
