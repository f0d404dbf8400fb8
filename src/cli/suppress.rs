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
use crate::deliver::audience::{normalise_address, normalise_columns};
use crate::store::{self, Source, Suppressed};
use crate::{Fault, InputError, clock, exit};

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
            let mut entries = Vec::new();
            for e in &a.emails {
                let email = normalise_address(e)
                    .map_err(|why| InputError::at(e, format!("not an email address ({why})")))?;
                entries.push(entry(&email, &a.reason, Source::Manual));
            }
            add_all(dir, &entries)
        }
        Command::Remove(a) => remove(a, dir),
        Command::Import(a) => import(a, dir),
    }
}

/// What `remove` did for one address.
enum Removal<'h> {
    /// Taken off the list; every reason it was on it for, a complaint first.
    Removed {
        email: String,
        cleared: Vec<&'h Suppressed>,
    },
    NotOnTheList {
        email: String,
    },
}

/// Takes `given` off the list. By hand, everything goes: the person at
/// the keyboard has decided (a subscriber who asked again, a bounce that
/// was a mistake).
fn unsuppress<'h>(
    store: &mut dyn store::Store,
    history: &'h [Suppressed],
    given: &str,
) -> Result<Removal<'h>, Fault> {
    let email = normalise_address(given).unwrap_or_else(|_| given.trim().to_string());
    let key = email.to_lowercase();
    let mut cleared: Vec<&Suppressed> = history.iter().filter(|s| s.email == key).collect();
    cleared.sort_by_key(|s| s.source.weight());
    Ok(if store.unsuppress(&email, &[]).map_err(unreadable)? {
        Removal::Removed { email, cleared }
    } else {
        Removal::NotOnTheList { email }
    })
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
    let history = store.suppression_events().map_err(unreadable)?;
    for e in &a.emails {
        match unsuppress(store.as_mut(), &history, e)? {
            Removal::Removed { email, cleared } => {
                removed += 1;
                let what: Vec<String> = cleared.iter().map(|s| describe(s)).collect();
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

fn entry(email: &str, reason: &str, source: Source) -> Suppressed {
    Suppressed {
        email: email.to_lowercase(),
        reason: reason.to_string(),
        source,
        campaign: None,
        added_at: clock::now().to_string(),
    }
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

/// One person on the list with every event that keeps them there.
#[derive(serde::Serialize)]
struct Person {
    email: String,
    /// The weightiest event (a complaint or bounce before an unsubscribe).
    source: Source,
    reason: String,
    campaign: Option<String>,
    added_at: String,
    /// Every event, oldest first.
    events: Vec<Event>,
}

#[derive(serde::Serialize)]
struct Event {
    source: Source,
    reason: String,
    campaign: Option<String>,
    added_at: String,
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
    let events = match open_journal(dir)? {
        Some(store) => store.suppression_events().map_err(unreadable)?,
        None => Vec::new(),
    };
    // People (one entry each, by their weightiest event, oldest first),
    // then each with all their events; `--source` keeps those with an
    // event of that kind.
    let mut by_person: std::collections::HashMap<&str, Vec<&Suppressed>> =
        std::collections::HashMap::new();
    for e in &events {
        by_person.entry(e.email.as_str()).or_default().push(e);
    }
    let mut all: Vec<Person> = store::people(events.clone())
        .into_iter()
        .filter(|p| {
            source.is_none_or(|k| by_person[p.email.as_str()].iter().any(|e| e.source == k))
        })
        .map(|p| Person {
            events: by_person[p.email.as_str()]
                .iter()
                .map(|e| Event {
                    source: e.source,
                    reason: e.reason.clone(),
                    campaign: e.campaign.clone(),
                    added_at: e.added_at.clone(),
                })
                .collect(),
            email: p.email,
            source: p.source,
            reason: p.reason,
            campaign: p.campaign,
            added_at: p.added_at,
        })
        .collect();
    all.sort_by(|a, b| (&a.added_at, &a.email).cmp(&(&b.added_at, &b.email)));
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
    say!("{} addresses, {reasons} reasons", all.len())?;
    Ok(exit::OK)
}

fn export(a: ExportArgs, dir: &store::Location) -> anyhow::Result<i32> {
    let all = match open_journal(dir)? {
        Some(store) => store.suppression_events().map_err(unreadable)?,
        None => Vec::new(),
    };
    let mut w = csv::Writer::from_writer(Vec::new());
    let csv_err = |e: csv::Error| Fault::new(format!("cannot write CSV ({e})"), "run again");
    w.write_record(["email", "source", "reason", "campaign", "added_at"])
        .map_err(csv_err)?;
    for s in &all {
        w.write_record([
            s.email.as_str(),
            s.source.as_str(),
            s.reason.as_str(),
            s.campaign.as_deref().unwrap_or(""),
            s.added_at.as_str(),
        ])
        .map_err(csv_err)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| Fault::new(format!("cannot write CSV ({e})"), "run again"))?;
    match &a.output {
        Some(path) => {
            std::fs::write(path, &bytes)
                .map_err(|e| Fault::io(format!("write {}", path.display()), &e))?;
            tracing::info!("{} reasons written to {}", all.len(), path.display());
        }
        None => output::write(&bytes)?,
    }
    Ok(exit::OK)
}

/// The most lines an import reports before "and N more".
const SHOWN_ERRORS: usize = 20;

fn import(a: ImportArgs, dir: &store::Location) -> anyhow::Result<i32> {
    let path = &a.file;
    let file = std::fs::File::open(path)
        .map_err(|e| InputError::new(path, None, format!("cannot read the file ({e})")))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        // Capped per line: a file with no line ends is refused, not read
        // into one ever-growing record.
        .from_reader(std::io::BufReader::new(crate::limits::LineCapped::new(
            file,
            crate::limits::MAX_LINE_BYTES,
        )));
    let default_reason = a.reason.clone().unwrap_or_else(|| {
        format!(
            "imported from {}",
            path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into()
            )
        )
    });
    let mut columns: Option<(usize, Option<usize>)> = None;
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    let mut bad = 0usize;
    for (i, record) in reader.byte_records().enumerate() {
        let line = i + 1;
        let record = record.map_err(|e| {
            InputError::new(
                path,
                e.position().map(|p| p.line() as usize),
                format!("cannot read the file as CSV ({e})"),
            )
        })?;
        let fields: Vec<String> = record
            .iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect();
        if i == 0 {
            let names = normalise_columns(&fields);
            if let Some(e) = names.iter().position(|c| c == "email") {
                columns = Some((e, names.iter().position(|c| c == "reason")));
                continue;
            }
        }
        let (email_col, reason_col) = columns.unwrap_or((0, None));
        let raw = fields.get(email_col).map(String::as_str).unwrap_or("");
        if fields.iter().all(|f| f.is_empty()) {
            continue;
        }
        match normalise_address(raw) {
            Ok(email) => {
                let reason = reason_col
                    .and_then(|c| fields.get(c))
                    .filter(|r| !r.is_empty())
                    .map_or(default_reason.as_str(), String::as_str);
                entries.push(entry(&email, reason, Source::Import));
            }
            Err(why) => {
                bad += 1;
                if errors.len() < SHOWN_ERRORS {
                    errors.push(format!(
                        "  line {line}: `{raw}` is not an email address ({why})"
                    ));
                }
            }
        }
    }
    if bad > 0 {
        let more = if bad > errors.len() {
            format!("\n  ... and {} more", bad - errors.len())
        } else {
            String::new()
        };
        anyhow::bail!(InputError::new(
            path,
            None,
            format!(
                "{bad} line(s) are not email addresses, so nothing was imported:\n{}{more}\n\
                 Correct or delete these lines and run the import again.",
                errors.join("\n")
            )
        ));
    }
    if entries.is_empty() {
        say!("{}: no addresses found; nothing imported", path.display())?;
        return Ok(exit::NOTHING_TO_DO);
    }
    add_all(dir, &entries)
}

/// Adds `entries` in one transaction and says how many were new.
fn add_all(dir: &store::Location, entries: &[Suppressed]) -> anyhow::Result<i32> {
    let mut store = writable(dir)?;
    let added = store.suppress(entries).map_err(unreadable)?;
    say!(
        "{added} added to the suppression list ({} already on it)",
        entries.len() as u64 - added
    )?;
    Ok(exit::OK)
}
