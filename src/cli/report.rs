//! `herald report [CAMPAIGN]`: how an issue did, as one page of charts
//! (`--out report.html`) or as JSON (`--json`).

use std::path::{Path, PathBuf};

use super::output::{self, say};
use super::status::{open_journal, unreadable};
use crate::config::{Config, Override};
use crate::deliver::report::{self, ReportError, page};
use crate::store::Location;
use crate::{Fault, InputError, exit};

/// See how an issue did: messages accepted per minute per relay, outcomes
/// per recipient domain, deferrals, bounces, complaints and unsubscribes
/// (the complaint rate against Gmail's and Yahoo's 0.1% and 0.3% lines),
/// and the same figures over the last 12 campaigns.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The campaign (as `herald status` lists it); default: the latest.
    campaign: Option<String>,
    #[command(flatten)]
    journal: super::Journal,
    /// Write the report as one HTML page to this file: charts and tables,
    /// nothing to download, so it opens offline and can be mailed as an
    /// attachment.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Print the figures as JSON on stdout (the README describes them).
    #[arg(long)]
    json: bool,
}

impl Args {
    pub fn overrides(&self) -> Vec<Override> {
        self.journal.overrides()
    }
}

pub fn run(args: Args, config: &Config) -> anyhow::Result<i32> {
    let location = Location::from_config(config)?;
    let Some(journal) = open_journal(&location)? else {
        anyhow::bail!(InputError::new(
            &config.journal_dir,
            None,
            "there is no journal here, so nothing to report on; run herald where you run \
             `herald send`, or point --journal or `journal_dir` at its journal"
        ));
    };
    let r = report::report(journal.as_ref(), config, args.campaign.as_deref()).map_err(
        |e| -> anyhow::Error {
            match e {
                ReportError::Store(e) => unreadable(e).into(),
                e => InputError::new(&config.journal_dir, None, e.to_string()).into(),
            }
        },
    )?;
    if let Some(path) = &args.out {
        let made_at = crate::clock::to_second(&crate::clock::now().to_string());
        write_page(path, &page::page(&r, &made_at))?;
        tracing::info!("wrote the report of {} to {}", r.campaign, path.display());
    }
    if args.json {
        output::json(&r)?;
    } else if args.out.is_none() {
        let o = &r.outcomes;
        say!(
            "{}: {} sent; {} deferred, {} hard bounces, {} soft bounces, {} spam complaints ({:.2}%), {} unsubscribes",
            r.campaign,
            o.sent,
            o.deferred.count,
            o.hard_bounces.count,
            o.soft_bounces.count,
            o.complaints.count,
            o.complaints.rate * 100.0,
            o.unsubscribes.count
        )?;
        say!("The charts: herald report --out report.html (one page you can open or mail)")?;
    }
    Ok(exit::OK)
}

/// Writes the page; a folder that is not there is the user's to fix.
fn write_page(path: &Path, html: &str) -> anyhow::Result<()> {
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty());
    if folder.is_some_and(|f| !f.is_dir()) {
        anyhow::bail!(InputError::at(
            "--out",
            format!(
                "the folder of {} is not there; make it first or write the report elsewhere",
                path.display()
            ),
        ));
    }
    std::fs::write(path, html).map_err(|e| Fault::io(format!("write {}", path.display()), &e))?;
    Ok(())
}
