//! `herald status [CAMPAIGN]`: how each campaign went, from the journal.

use std::path::Path;

use super::output::{self, say};
use crate::config::{Config, Override};
use crate::store::{
    BounceSummary, CampaignInfo, Location, Problem, RelayCounts, Source, Store, StoreError,
    Suppressed,
};
use crate::{Fault, InputError, exit};

/// Show each campaign: how many were sent, failed (with the server's
/// reply), deferred to the next run, or of unknown outcome.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only this campaign (as listed), e.g. openinfra-newsletter-may-2025@2025-05-28.
    campaign: Option<String>,
    #[command(flatten)]
    journal: super::Journal,
    /// Print as JSON.
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// Print one row per recipient of CAMPAIGN as CSV for a spreadsheet:
    /// address, state, attempts, the mail server's last reply, when, and
    /// what came back (bounce, complaint, unsubscribe).
    #[arg(long, requires = "campaign")]
    csv: bool,
}

impl Args {
    pub fn overrides(&self) -> Vec<Override> {
        self.journal.overrides()
    }
}

/// The journal if there is one, for reading. It is herald's own file (or
/// database): when it cannot be read, that is herald's trouble (exit 7),
/// not bad input.
pub fn open_journal(location: &Location) -> Result<Option<Box<dyn Store>>, Fault> {
    refuse_file(location)?;
    location
        .open_existing()
        .map_err(|e| cannot_open(location, e))
}

/// The journal, created if needed, for writing.
pub fn writable(location: &Location) -> Result<Box<dyn Store>, Fault> {
    refuse_file(location)?;
    location.open().map_err(|e| cannot_open(location, e))
}

fn refuse_file(location: &Location) -> Result<(), Fault> {
    if let Location::Journal(dir) = location
        && dir.exists()
        && !dir.is_dir()
    {
        return Err(Fault::new(
            format!("the journal folder {} is a file", dir.display()),
            "point --journal or `journal_dir` at a folder",
        ));
    }
    Ok(())
}

pub fn cannot_open(location: &Location, e: StoreError) -> Fault {
    match location {
        Location::Journal(_) => Fault::new(
            format!("cannot open the journal: {e}"),
            "check the disk and the folder's permissions",
        ),
        Location::Postgres(_) => Fault::new(
            format!("cannot open the database: {e}"),
            "check that PostgreSQL is running and reachable from here",
        ),
    }
}

pub fn unreadable(e: StoreError) -> Fault {
    Fault::new(
        format!("cannot read the journal: {e}"),
        "check the disk; a damaged journal.db can be moved away (herald then starts a new one)",
    )
}

/// What the journal says of one campaign.
struct CampaignStatus {
    campaign: CampaignInfo,
    problems: Vec<Problem>,
    /// Who left through this email's unsubscribe link.
    unsubscribed: usize,
    bounced: BounceSummary,
    /// Each relay of the settings (in their order; relays no longer in
    /// them last), with its quota used today.
    relays: Vec<RelayCounts>,
}

impl CampaignStatus {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "campaign": self.campaign,
            "problems": self.problems,
            "unsubscribed": self.unsubscribed,
            "bounces": self.bounced,
            "relays": self.relays,
        })
    }
}

pub fn run(args: Args, config: &Config) -> anyhow::Result<i32> {
    let location = Location::from_config(config)?;
    let dir = &config.journal_dir;
    let json = args.json;
    let Some(journal) = open_journal(&location)? else {
        if args.csv {
            anyhow::bail!(InputError::new(
                dir,
                None,
                "there is no journal here, so no campaign to export; point --journal or `journal_dir` at it"
            ));
        }
        if json {
            output::json(&serde_json::json!([]))?;
        } else {
            say!("No campaigns yet (no journal in {}).", dir.display())?;
        }
        return Ok(exit::OK);
    };
    if args.csv {
        let campaign = args
            .campaign
            .as_deref()
            .expect("clap requires CAMPAIGN with --csv");
        return csv(journal.as_ref(), campaign, dir);
    }
    let mut campaigns = journal.campaigns().map_err(unreadable)?;
    if let Some(c) = &args.campaign {
        campaigns.retain(|x| &x.id == c);
        if campaigns.is_empty() {
            anyhow::bail!(InputError::new(
                dir,
                None,
                format!("there is no campaign {c}; `herald status` lists them")
            ));
        }
    }
    let suppressions = journal.suppressions().map_err(unreadable)?;
    let mut out = Vec::new();
    for c in campaigns {
        let status = campaign_status(journal.as_ref(), config, &suppressions, c)?;
        if !json {
            print_campaign(&status, args.campaign.is_some())?;
        }
        out.push(status.json());
    }
    if json {
        output::json(&out)?;
    } else if !suppressions.is_empty() {
        let count =
            |f: &dyn Fn(Source) -> bool| suppressions.iter().filter(|s| f(s.source)).count();
        say!(
            "Suppression list: {} addresses ({} unsubscribed, {} bounced, {} added by hand or imported); \
             `herald suppress list` shows who and when",
            suppressions.len(),
            count(&|s| s.is_unsubscribe()),
            count(&|s| s == Source::Bounce),
            count(&|s| matches!(s, Source::Manual | Source::Import)),
        )?;
    }
    Ok(exit::OK)
}

/// What the journal says of campaign `c`.
fn campaign_status(
    journal: &dyn Store,
    config: &Config,
    suppressions: &[Suppressed],
    c: CampaignInfo,
) -> Result<CampaignStatus, Fault> {
    let problems = journal.problems(&c.id, 100_000).map_err(unreadable)?;
    let unsubscribed = suppressions
        .iter()
        .filter(|s| s.source.is_unsubscribe() && s.campaign.as_deref() == Some(c.id.as_str()))
        .count();
    let bounced = journal.bounce_summary(&c.id).map_err(unreadable)?;
    let relays = relays(journal, config, &c.id)?;
    Ok(CampaignStatus {
        campaign: c,
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
fn relays(journal: &dyn Store, config: &Config, campaign: &str) -> Result<Vec<RelayCounts>, Fault> {
    let mut relays = journal.relay_counts(campaign).map_err(unreadable)?;
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
            let used = journal.quota_used(&r.name, &day).map_err(unreadable)?;
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

/// One campaign, for people. `every_problem`: all of them (one campaign
/// asked for), else the first 20.
fn print_campaign(s: &CampaignStatus, every_problem: bool) -> anyhow::Result<()> {
    let c = &s.campaign;
    let n = &c.counts;
    let state = if c.finished_at.is_some() {
        "finished"
    } else {
        "in progress"
    };
    say!("{} ({state}), {}", c.id, c.post)?;
    say!(
        "  {} recipients: {} sent, {} failed, {} deferred, {} unknown, {} skipped, {} waiting",
        n.total,
        n.sent,
        n.failed,
        n.deferred,
        n.unknown,
        n.skipped,
        n.pending
    )?;
    // Per relay only when there is more than one to tell apart, or
    // a quota to show.
    let relays = &s.relays;
    if relays.len() > 1 || relays.iter().any(|r| r.max_per_day.is_some()) {
        for r in relays {
            let quota = match (r.max_per_day, r.quota_used_today, &r.day) {
                (Some(max), Some(used), Some(day)) => {
                    format!("; quota {used} of {max} used on {day}")
                }
                _ => String::new(),
            };
            say!(
                "  through {}: {} sent, {} failed, {} deferred{quota}",
                r.relay,
                r.sent,
                r.failed,
                r.deferred
            )?;
        }
    }
    if s.unsubscribed > 0 {
        say!(
            "  {} unsubscribed through this email's link",
            s.unsubscribed
        )?;
    }
    let b = &s.bounced;
    if b.hard + b.soft + b.complaints + b.mailto_unsubscribes > 0 {
        say!(
            "  came back: {} addresses gone (suppressed), {} soft bounces, {} spam complaints, {} unsubscribe emails",
            b.hard,
            b.soft,
            b.complaints,
            b.mailto_unsubscribes
        )?;
    }
    for (why, n) in b.blocks.iter().take(10) {
        say!(
            "  blocked by a receiving server, {n}x (for the sender to fix, not the subscriber): {why}"
        )?;
    }
    if n.removed > 0 {
        say!(
            "  {} removed from the list before they were mailed (not mailed)",
            n.removed
        )?;
    }
    let problems = &s.problems;
    let shown = if every_problem { problems.len() } else { 20 };
    for p in problems.iter().take(shown) {
        say!("  {p}")?;
    }
    if problems.len() > shown {
        say!(
            "  ... {} more: herald status {}",
            problems.len() - shown,
            c.id
        )?;
    }
    Ok(())
}

/// `--csv`: one row per recipient, for a spreadsheet. UTF-8 with a byte
/// order mark (Excel reads UTF-8 without one as the local code page), and
/// every field a spreadsheet would take for a formula neutralised: a
/// server's reply or an address is text from outside.
fn csv(journal: &dyn Store, campaign: &str, dir: &Path) -> anyhow::Result<i32> {
    if !journal
        .campaigns()
        .map_err(unreadable)?
        .iter()
        .any(|c| c.id == campaign)
    {
        anyhow::bail!(InputError::new(
            dir,
            None,
            format!("there is no campaign {campaign}; `herald status` lists them")
        ));
    }
    let recipients = journal.recipients(campaign).map_err(unreadable)?;
    // The latest of each kind per address wins: a later bounce says more.
    let mut came_back = std::collections::HashMap::new();
    for b in journal.bounces(campaign).map_err(unreadable)? {
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
    let mut unsubscribed = std::collections::HashMap::new();
    for s in journal.suppressions().map_err(unreadable)? {
        if s.campaign.as_deref() == Some(campaign) {
            unsubscribed.insert(s.email.clone(), s);
        }
    }
    let mut out = Vec::new();
    out.extend_from_slice("\u{feff}".as_bytes());
    {
        let mut w = ::csv::Writer::from_writer(&mut out);
        w.write_record([
            "email",
            "state",
            "attempts",
            "last_reply",
            "updated_at",
            "came_back",
            "came_back_at",
            "suppressed",
            "suppressed_at",
        ])?;
        for r in &recipients {
            let key = r.email.to_lowercase();
            let (back, back_at) = came_back.get(&key).cloned().unwrap_or_default();
            let (supp, supp_at) = unsubscribed
                .get(&key)
                .map(|s| (s.source.as_str().to_string(), s.added_at.clone()))
                .unwrap_or_default();
            let state = match r.state {
                crate::store::State::Sending => "unknown",
                s => s.as_str(),
            };
            let row = [
                r.email.clone(),
                state.to_string(),
                r.attempts.to_string(),
                r.reply.clone().unwrap_or_default(),
                r.updated_at.clone().unwrap_or_default(),
                back,
                back_at,
                supp,
                supp_at,
            ];
            w.write_record(row.iter().map(|f| spreadsheet_safe(f).into_owned()))?;
        }
        w.flush()?;
    }
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&out)?;
    stdout.flush()?;
    Ok(exit::OK)
}

/// A field a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, or a
/// tab or carriage return before one) gets a leading `'`, which shows it
/// as the text it is (OWASP's advice on CSV injection).
fn spreadsheet_safe(field: &str) -> std::borrow::Cow<'_, str> {
    match field.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{field}").into(),
        _ => field.into(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn formulas_are_shown_as_text() {
        for bad in [
            "=HYPERLINK(\"x\")",
            "+1",
            "-2+3",
            "@SUM(A1)",
            "\t=1",
            "\r=1",
        ] {
            assert_eq!(super::spreadsheet_safe(bad), format!("'{bad}"));
        }
        assert_eq!(super::spreadsheet_safe("550 5.1.1 gone"), "550 5.1.1 gone");
        assert_eq!(super::spreadsheet_safe(""), "");
    }
}
