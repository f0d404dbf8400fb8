//! `herald suppress list|add|remove|import|export`: the suppression list
//! by hand, for unsubscribes that reach the team by other ways (a reply, a
//! phone call) and for moving from a previous tool.
//!
//! The list lives in the journal, next to the campaigns: every `herald
//! send` leaves these people out, and `herald serve` adds to it.

use std::path::PathBuf;

use super::output::{self, say};
use super::status::{open_journal, unreadable, writable};
use crate::config::{Config, Override};
use crate::listen::suppress::{self, Removal, SuppressError};
use crate::store::{self, Source, Suppressed};
use crate::words::count;
use crate::{Fault, InputError, exit};

/// The people herald never mails: who, why, how and when they were added.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Show the suppression list, oldest first: every reason each person
    /// is on it for (unsubscribe, complaint, bounce, by hand), with its
    /// time and campaign.
    List(ListArgs),
    /// Add people by hand (an unsubscribe that came by reply or phone).
    Add(AddArgs),
    /// Take people off the list, so the next send mails them again. Clears
    /// every reason they were on it for, complaints and bounces included,
    /// and lists what it cleared.
    Remove(RemoveArgs),
    /// Add everyone in a file: one address per line, or a CSV with an
    /// email column (as Mailchimp, listmonk and Mautic export it).
    Import(ImportArgs),
    /// Write the list as CSV (email, source, reason, campaign, added_at),
    /// one line per reason.
    Export(ExportArgs),
}

use super::Journal;

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    journal: Journal,
    /// Only this kind: bounce, complaint, mailto, one-click, page, manual or import.
    #[arg(long, value_name = "KIND")]
    source: Option<String>,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
pub struct AddArgs {
    #[command(flatten)]
    journal: Journal,
    /// The addresses.
    #[arg(required = true, value_name = "EMAIL")]
    emails: Vec<String>,
    /// Why, for whoever reads the list later.
    #[arg(long, default_value = "asked to be removed")]
    reason: String,
}

#[derive(clap::Args, Debug)]
pub struct RemoveArgs {
    #[command(flatten)]
    journal: Journal,
    /// The addresses.
    #[arg(required = true, value_name = "EMAIL")]
    emails: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    #[command(flatten)]
    journal: Journal,
    /// The file.
    file: PathBuf,
    /// Why, when the file has no `reason` column.
    #[arg(long)]
    reason: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    journal: Journal,
    /// Write to this file instead of the screen.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
}

impl Command {
    fn journal(&self) -> &Journal {
        match self {
            Command::List(a) => &a.journal,
            Command::Add(a) => &a.journal,
            Command::Remove(a) => &a.journal,
            Command::Import(a) => &a.journal,
            Command::Export(a) => &a.journal,
        }
    }

    pub fn overrides(&self) -> Vec<Override> {
        self.journal().overrides()
    }
}

pub fn run(command: Command, config: &Config) -> anyhow::Result<i32> {
    let dir = &store::Location::from_config(config)?;
    match command {
        Command::List(a) => list(a, dir),
        Command::Export(a) => export(a, dir),
        Command::Add(a) => {
            let entries = suppress::by_hand(&a.emails, &a.reason).map_err(input)?;
            add_all(dir, &entries)
        }
        Command::Remove(a) => remove(a, dir),
        Command::Import(a) => import(a, dir),
    }
}

/// A [`SuppressError`] as the CLI reports it: the user's file or
/// address (exit 2), or the journal (exit 7).
fn input(e: SuppressError) -> anyhow::Error {
    match e {
        SuppressError::NotAnAddress { given, why } => {
            InputError::at(&given, format!("not an email address ({why})")).into()
        }
        SuppressError::CannotRead { file, why } => {
            InputError::new(&file, None, format!("cannot read the file ({why})")).into()
        }
        SuppressError::NotCsv { file, line, why } => {
            InputError::new(&file, line, format!("cannot read the file as CSV ({why})")).into()
        }
        SuppressError::BadLines { file, count, shown } => {
            let lines: Vec<String> = shown
                .iter()
                .map(|b| {
                    format!(
                        "  line {}: `{}` is not an email address ({})",
                        b.line, b.text, b.why
                    )
                })
                .collect();
            let more = if count > shown.len() {
                format!("\n  ... and {} more", count - shown.len())
            } else {
                String::new()
            };
            InputError::new(
                &file,
                None,
                format!(
                    "{} not email addresses, so nothing was imported:\n{}{more}\n\
                     Correct or delete these lines and run the import again.",
                    if count == 1 {
                        "1 line is".to_string()
                    } else {
                        format!("{count} lines are")
                    },
                    lines.join("\n")
                ),
            )
            .into()
        }
        SuppressError::Store(e) => unreadable(e).into(),
    }
}

fn remove(a: RemoveArgs, dir: &store::Location) -> anyhow::Result<i32> {
    let Some(mut store) = open_journal(dir)? else {
        say!(
            "the suppression list is empty (no journal in {})",
            dir.describe()
        )?;
        return Ok(exit::NOTHING_TO_DO);
    };
    let mut removed = 0;
    for r in suppress::remove(store.as_mut(), &a.emails).map_err(unreadable)? {
        match r {
            Removal::Removed { email, cleared } => {
                removed += 1;
                let what: Vec<String> = cleared.iter().map(describe).collect();
                say!(
                    "{email}: removed ({}); the next send mails them again",
                    what.join("; ")
                )?;
            }
            Removal::NotOnTheList { email } => {
                say!("{email}: was not on the suppression list")?;
            }
        }
    }
    Ok(if removed == 0 {
        exit::NOTHING_TO_DO
    } else {
        exit::OK
    })
}

/// One event in a line: kind, when, campaign.
fn describe(s: &Suppressed) -> String {
    format!(
        "{} {}{}",
        s.source.as_str(),
        s.added_at,
        s.campaign
            .as_deref()
            .map(|c| format!(" in {c}"))
            .unwrap_or_default()
    )
}

fn list(a: ListArgs, dir: &store::Location) -> anyhow::Result<i32> {
    let source = match &a.source {
        Some(s) => Some(Source::parse(s).ok_or_else(|| {
            InputError::at(
                "--source",
                format!("`{s}` is not a kind; use bounce, complaint, mailto, one-click, page, manual or import"),
            )
        })?),
        None => None,
    };
    let journal = open_journal(dir)?;
    let all = suppress::list(journal.as_deref(), source).map_err(unreadable)?;
    if a.json {
        output::json(&all)?;
        return Ok(exit::OK);
    }
    if all.is_empty() {
        say!("the suppression list is empty")?;
        return Ok(exit::OK);
    }
    let mut reasons = 0;
    for p in &all {
        say!("{}", p.email)?;
        for e in &p.events {
            reasons += 1;
            say!(
                "  {}  {:<9}  {}{}",
                e.added_at,
                e.source.as_str(),
                e.reason,
                e.campaign
                    .as_deref()
                    .map(|c| format!("  ({c})"))
                    .unwrap_or_default()
            )?;
        }
    }
    say!(
        "{}, {}",
        count(all.len(), "address", "addresses"),
        count(reasons, "reason", "reasons")
    )?;
    Ok(exit::OK)
}

fn export(a: ExportArgs, dir: &store::Location) -> anyhow::Result<i32> {
    let journal = open_journal(dir)?;
    let rows = suppress::export(journal.as_deref()).map_err(unreadable)?;
    let mut w = csv::Writer::from_writer(Vec::new());
    let csv_err = |e: csv::Error| Fault::new(format!("cannot write CSV ({e})"), "run again");
    w.write_record(["email", "source", "reason", "campaign", "added_at"])
        .map_err(csv_err)?;
    for row in &rows {
        w.write_record(row).map_err(csv_err)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| Fault::new(format!("cannot write CSV ({e})"), "run again"))?;
    match &a.output {
        Some(path) => {
            std::fs::write(path, &bytes)
                .map_err(|e| Fault::io(format!("write {}", path.display()), &e))?;
            tracing::info!(
                "{} written to {}",
                count(rows.len(), "reason", "reasons"),
                path.display()
            );
        }
        None => output::write(&bytes)?,
    }
    Ok(exit::OK)
}

fn import(a: ImportArgs, dir: &store::Location) -> anyhow::Result<i32> {
    let entries = suppress::read_import(&a.file, a.reason.as_deref()).map_err(input)?;
    if entries.is_empty() {
        say!("{}: no addresses found; nothing imported", a.file.display())?;
        return Ok(exit::NOTHING_TO_DO);
    }
    add_all(dir, &entries)
}

/// Adds `entries` in one transaction and says how many were new.
fn add_all(dir: &store::Location, entries: &[Suppressed]) -> anyhow::Result<i32> {
    let mut store = writable(dir)?;
    let added = suppress::add(store.as_mut(), entries).map_err(unreadable)?;
    say!(
        "{} added to the suppression list ({} already on it)",
        added.added,
        added.already
    )?;
    Ok(exit::OK)
}
