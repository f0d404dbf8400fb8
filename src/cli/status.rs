//! `herald status [CAMPAIGN]`: how each campaign went, from the journal.

use super::output::{self, say};
use crate::config::{Config, Override};
use crate::deliver::status::{self, CampaignStatus, RecipientRow, StatusError};
use crate::store::{Location, Store, StoreError};
use crate::words::count;
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
    /// Print CSV for a spreadsheet. With CAMPAIGN: one row per recipient
    /// (address, state, attempts, the mail server's last reply, when, what
    /// came back, and why anyone left out is on the suppression list).
    /// Without: one row per campaign (when it was sent and its counts).
    /// Times are ISO 8601 in UTC, to the second.
    #[arg(long)]
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

pub(super) fn refuse_file(location: &Location) -> Result<(), Fault> {
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
        Location::Postgres(_) => cannot_open_database(e),
    }
}

/// The database cannot be opened or written.
pub fn cannot_open_database(e: StoreError) -> Fault {
    Fault::new(
        format!("cannot open the database: {e}"),
        "check that PostgreSQL is running and reachable from here",
    )
}

pub fn unreadable(e: StoreError) -> Fault {
    Fault::new(
        format!("cannot read the journal: {e}"),
        "check the disk; a damaged journal.db can be moved away (herald then starts a new one)",
    )
}

pub fn run(args: Args, config: &Config) -> anyhow::Result<i32> {
    let location = Location::from_config(config)?;
    let dir = &config.journal_dir;
    let json = args.json;
    let Some(journal) = open_journal(&location)? else {
        if args.csv && args.campaign.is_some() {
            anyhow::bail!(InputError::new(
                dir,
                None,
                "there is no journal here, so no campaign to export; point --journal or `journal_dir` at it"
            ));
        }
        if args.csv {
            write_csv(&campaign_rows(&[]))?;
        } else if json {
            output::json(&serde_json::json!([]))?;
        } else {
            say!("No campaigns yet (no journal in {}).", dir.display())?;
        }
        return Ok(exit::OK);
    };
    let not_found = |e: StatusError| -> anyhow::Error {
        match e {
            StatusError::NoSuchCampaign(_) => InputError::new(dir, None, e.to_string()).into(),
            StatusError::Store(e) => unreadable(e).into(),
        }
    };
    if let (true, Some(campaign)) = (args.csv, args.campaign.as_deref()) {
        let rows = status::recipients(journal.as_ref(), campaign).map_err(not_found)?;
        write_csv(&recipient_rows(&rows))?;
        return Ok(exit::OK);
    }
    let s =
        status::status(journal.as_ref(), config, args.campaign.as_deref()).map_err(not_found)?;
    if args.csv {
        write_csv(&campaign_rows(&s.campaigns))?;
    } else if json {
        output::json(&s.campaigns)?;
    } else {
        for c in &s.campaigns {
            print_campaign(c, args.campaign.is_some())?;
        }
        let n = &s.suppressions;
        if n.addresses > 0 {
            say!(
                "Suppression list: {} ({} unsubscribed, {} bounced, {} added by hand or imported); \
                 `herald suppress list` shows who and when",
                count(n.addresses, "address", "addresses"),
                n.unsubscribed,
                n.bounced,
                n.by_hand,
            )?;
        }
    }
    Ok(exit::OK)
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
    match &c.finished_at {
        Some(end) => say!("  sent from {} to {end}", c.created_at)?,
        None => say!("  sending since {}", c.created_at)?,
    }
    say!(
        "  {}: {} sent, {} failed, {} deferred, {} unknown, {} skipped, {} waiting",
        count(n.total, "recipient", "recipients"),
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
            "  came back: {} gone (suppressed), {}, {}, {}",
            count(b.hard, "address", "addresses"),
            count(b.soft, "soft bounce", "soft bounces"),
            count(b.complaints, "spam complaint", "spam complaints"),
            count(
                b.mailto_unsubscribes,
                "unsubscribe email",
                "unsubscribe emails"
            ),
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

/// `--csv` without a campaign: one row per campaign, for a spreadsheet.
fn campaign_rows(campaigns: &[CampaignStatus]) -> Vec<Vec<String>> {
    let mut rows = vec![
        [
            "campaign",
            "post",
            "state",
            "started_at",
            "finished_at",
            "recipients",
            "sent",
            "failed",
            "deferred",
            "unknown",
            "skipped",
            "waiting",
            "removed",
            "unsubscribed",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for s in campaigns {
        let c = &s.campaign;
        let n = &c.counts;
        let state = if c.finished_at.is_some() {
            "finished"
        } else {
            "in progress"
        };
        let mut row = vec![
            c.id.clone(),
            c.post.clone(),
            state.to_string(),
            c.created_at.clone(),
            c.finished_at.clone().unwrap_or_default(),
        ];
        row.extend(
            [
                n.total, n.sent, n.failed, n.deferred, n.unknown, n.skipped, n.pending, n.removed,
            ]
            .map(|v| v.to_string()),
        );
        row.push(s.unsubscribed.to_string());
        rows.push(row);
    }
    rows
}

/// `--csv CAMPAIGN`: one row per recipient, for a spreadsheet.
fn recipient_rows(recipients: &[RecipientRow]) -> Vec<Vec<String>> {
    let mut rows = vec![
        [
            "email",
            "state",
            "attempts",
            "last_reply",
            "updated_at",
            "came_back",
            "came_back_at",
            "suppressed",
            "suppressed_at",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for r in recipients {
        rows.push(vec![
            r.email.clone(),
            r.state.to_string(),
            r.attempts.to_string(),
            r.last_reply.clone(),
            r.updated_at.clone(),
            r.came_back.clone(),
            r.came_back_at.clone(),
            r.suppressed.clone(),
            r.suppressed_at.clone(),
        ]);
    }
    rows
}

/// CSV for a spreadsheet: UTF-8 with a byte order mark (Excel reads UTF-8
/// without one as the local code page), and every field a spreadsheet
/// would take for a formula neutralised: a server's reply or an address
/// is text from outside.
fn write_csv(rows: &[Vec<String>]) -> anyhow::Result<()> {
    let mut out = Vec::new();
    out.extend_from_slice("\u{feff}".as_bytes());
    {
        let mut w = ::csv::Writer::from_writer(&mut out);
        for row in rows {
            w.write_record(row.iter().map(|f| spreadsheet_safe(f).into_owned()))?;
        }
        w.flush()?;
    }
    output::write(&out)?;
    Ok(())
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
