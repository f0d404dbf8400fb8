//! `herald status [CAMPAIGN]`: how each campaign went, from the journal.

use std::path::Path;

use super::output::{self, say};
use crate::config::{Config, Override};
use crate::store::{self, Source, Store, StoreError};
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
    #[arg(long)]
    json: bool,
}

impl Args {
    pub fn overrides(&self) -> Vec<Override> {
        self.journal.overrides()
    }
}

/// The journal if there is one, for reading. It is herald's own file:
/// when it cannot be read, that is herald's trouble (exit 7), not bad input.
pub fn open_journal(dir: &Path) -> Result<Option<Box<dyn Store>>, Fault> {
    if dir.exists() && !dir.is_dir() {
        return Err(Fault::new(
            format!("the journal folder {} is a file", dir.display()),
            "point --journal or `journal_dir` at a folder",
        ));
    }
    store::open_existing(dir).map_err(|e| {
        Fault::new(
            format!("cannot open the journal: {e}"),
            "check the disk and the folder's permissions",
        )
    })
}

pub fn unreadable(e: StoreError) -> Fault {
    Fault::new(
        format!("cannot read the journal: {e}"),
        "check the disk; a damaged journal.db can be moved away (herald then starts a new one)",
    )
}

pub fn run(args: Args, config: &Config) -> anyhow::Result<i32> {
    let dir = &config.journal_dir;
    let json = args.json;
    let Some(journal) = open_journal(dir)? else {
        if json {
            output::json(&serde_json::json!([]))?;
        } else {
            say!("No campaigns yet (no journal in {}).", dir.display())?;
        }
        return Ok(exit::OK);
    };
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
    for c in &campaigns {
        let problems = journal.problems(&c.id, 100_000).map_err(unreadable)?;
        // Who left through this email's unsubscribe link.
        let unsubscribed = suppressions
            .iter()
            .filter(|s| s.source.is_unsubscribe() && s.campaign.as_deref() == Some(c.id.as_str()))
            .count();
        let bounced = journal.bounce_summary(&c.id).map_err(unreadable)?;
        if !json {
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
            if unsubscribed > 0 {
                say!("  {unsubscribed} unsubscribed through this email's link")?;
            }
            let b = &bounced;
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
            let shown = if args.campaign.is_some() {
                problems.len()
            } else {
                20
            };
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
        }
        out.push(serde_json::json!({
            "campaign": c,
            "problems": problems,
            "unsubscribed": unsubscribed,
            "bounces": bounced,
        }));
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
