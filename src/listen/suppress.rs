//! `herald suppress`: the suppression list by hand, as typed outcomes,
//! for unsubscribes that reach the team by other ways (a reply, a phone
//! call) and for moving from a previous tool. The CLI opens the journal,
//! words what comes back and maps it to exit codes; nothing here prints.
//!
//! Times leave here as ISO 8601 to the second in UTC (see
//! [`crate::clock::to_second`]), as `herald status` shows them: the list
//! is read by people and spreadsheets, which take that for a date.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::clock::{self, to_second};
use crate::deliver::audience::{normalise_address, normalise_columns};
use crate::store::{self, Source, Store, StoreError, Suppressed};

/// Why a suppress command could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum SuppressError {
    /// An address given by hand is not one.
    #[error("{given}: not an email address ({why})")]
    NotAnAddress { given: String, why: String },
    /// The import file cannot be opened.
    #[error("{}: cannot read the file ({why})", file.display())]
    CannotRead { file: PathBuf, why: String },
    /// The import file is not CSV herald can read.
    #[error("{}{}: cannot read the file as CSV ({why})", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    NotCsv {
        file: PathBuf,
        line: Option<usize>,
        why: String,
    },
    /// Lines of the import file that are not addresses: nothing was
    /// imported. `shown` holds the first few, `count` all.
    #[error("{}: {count} line(s) are not email addresses, so nothing was imported", file.display())]
    BadLines {
        file: PathBuf,
        count: usize,
        shown: Vec<BadLine>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A line of an import file that is not an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub line: usize,
    pub text: String,
    pub why: String,
}

/// The most bad lines an import keeps to show.
pub const SHOWN_ERRORS: usize = 20;

/// One person on the list with every event that keeps them there.
#[derive(Debug, Serialize)]
pub struct Person {
    pub email: String,
    /// The weightiest event (a complaint or bounce before an unsubscribe).
    pub source: Source,
    pub reason: String,
    pub campaign: Option<String>,
    pub added_at: String,
    /// Every event, oldest first.
    pub events: Vec<Event>,
}

#[derive(Debug, Serialize)]
pub struct Event {
    pub source: Source,
    pub reason: String,
    pub campaign: Option<String>,
    pub added_at: String,
}

impl Event {
    fn of(e: &Suppressed) -> Event {
        Event {
            source: e.source,
            reason: e.reason.clone(),
            campaign: e.campaign.clone(),
            added_at: to_second(&e.added_at),
        }
    }
}

/// `suppress list`: people (one entry each, by their weightiest event,
/// oldest first), each with all their events; `source` keeps those with
/// an event of that kind. No journal: nobody.
pub fn list(
    journal: Option<&dyn Store>,
    source: Option<Source>,
) -> Result<Vec<Person>, StoreError> {
    let events = match journal {
        Some(store) => store.suppression_events()?,
        None => Vec::new(),
    };
    let mut by_person: HashMap<&str, Vec<&Suppressed>> = HashMap::new();
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
                .map(|e| Event::of(e))
                .collect(),
            email: p.email,
            source: p.source,
            reason: p.reason,
            campaign: p.campaign,
            added_at: to_second(&p.added_at),
        })
        .collect();
    all.sort_by(|a, b| (&a.added_at, &a.email).cmp(&(&b.added_at, &b.email)));
    Ok(all)
}

/// `suppress export`: every event, one row each (email, source, reason,
/// campaign, added_at), oldest first.
pub fn export(journal: Option<&dyn Store>) -> Result<Vec<[String; 5]>, StoreError> {
    let events = match journal {
        Some(store) => store.suppression_events()?,
        None => Vec::new(),
    };
    Ok(events
        .into_iter()
        .map(|s| {
            [
                s.email,
                s.source.as_str().to_string(),
                s.reason,
                s.campaign.unwrap_or_default(),
                to_second(&s.added_at),
            ]
        })
        .collect())
}

/// A suppression event made now.
pub fn entry(email: &str, reason: &str, source: Source) -> Suppressed {
    Suppressed {
        email: email.to_lowercase(),
        reason: reason.to_string(),
        source,
        campaign: None,
        added_at: clock::now().to_string(),
    }
}

/// `suppress add`: the addresses given by hand, checked, as events.
pub fn by_hand(emails: &[String], reason: &str) -> Result<Vec<Suppressed>, SuppressError> {
    emails
        .iter()
        .map(|e| {
            normalise_address(e)
                .map(|email| entry(&email, reason, Source::Manual))
                .map_err(|why| SuppressError::NotAnAddress {
                    given: e.clone(),
                    why: why.to_string(),
                })
        })
        .collect()
}

/// What adding to the list did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Added {
    /// Addresses that were not on the list before.
    pub added: u64,
    /// Addresses that already were.
    pub already: u64,
}

/// Adds `entries` in one transaction.
pub fn add(store: &mut dyn Store, entries: &[Suppressed]) -> Result<Added, StoreError> {
    let added = store.suppress(entries)?;
    Ok(Added {
        added,
        already: entries.len() as u64 - added,
    })
}

/// What `remove` did for one address.
#[derive(Debug)]
pub enum Removal {
    /// Taken off the list; every reason it was on it for, a complaint first.
    Removed {
        email: String,
        cleared: Vec<Suppressed>,
    },
    NotOnTheList {
        email: String,
    },
}

/// `suppress remove`: takes each of `given` off the list. By hand,
/// everything goes: the person at the keyboard has decided (a subscriber
/// who asked again, a bounce that was a mistake).
pub fn remove(store: &mut dyn Store, given: &[String]) -> Result<Vec<Removal>, StoreError> {
    let history = store.suppression_events()?;
    let mut out = Vec::new();
    for g in given {
        let email = normalise_address(g).unwrap_or_else(|_| g.trim().to_string());
        let key = email.to_lowercase();
        let mut cleared: Vec<Suppressed> = history
            .iter()
            .filter(|s| s.email == key)
            .cloned()
            .map(|mut s| {
                s.added_at = to_second(&s.added_at);
                s
            })
            .collect();
        cleared.sort_by_key(|s| s.source.weight());
        out.push(if store.unsuppress(&email, &[])? {
            Removal::Removed { email, cleared }
        } else {
            Removal::NotOnTheList { email }
        });
    }
    Ok(out)
}

/// `suppress import`: everyone in `path` (one address per line, or a CSV
/// with an `email` column and maybe a `reason`), as events. Any line that
/// is not an address refuses the whole file: half an import is worse to
/// fix than none.
pub fn read_import(path: &Path, reason: Option<&str>) -> Result<Vec<Suppressed>, SuppressError> {
    let file = std::fs::File::open(path).map_err(|e| SuppressError::CannotRead {
        file: path.to_path_buf(),
        why: e.to_string(),
    })?;
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
    let default_reason = reason.map(str::to_string).unwrap_or_else(|| {
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
    let mut shown = Vec::new();
    let mut bad = 0usize;
    for (i, record) in reader.byte_records().enumerate() {
        let record = record.map_err(|e| SuppressError::NotCsv {
            file: path.to_path_buf(),
            line: e.position().map(|p| p.line() as usize),
            why: e.to_string(),
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
        if fields.iter().all(|f| f.is_empty()) {
            continue;
        }
        let (email_col, reason_col) = columns.unwrap_or((0, None));
        let raw = fields.get(email_col).map(String::as_str).unwrap_or("");
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
                if shown.len() < SHOWN_ERRORS {
                    shown.push(BadLine {
                        line: i + 1,
                        text: raw.to_string(),
                        why: why.to_string(),
                    });
                }
            }
        }
    }
    if bad > 0 {
        return Err(SuppressError::BadLines {
            file: path.to_path_buf(),
            count: bad,
            shown,
        });
    }
    Ok(entries)
}
