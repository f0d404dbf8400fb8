//! The store: what herald remembers between runs. Every campaign, every
//! recipient's state in it, the suppression list and the campaign locks.
//!
//! Its operations come in roles ([`roles`]), one trait each: the
//! [`Journal`] (campaigns, recipients, claims and state marks), the
//! [`Locks`], the [`Suppressions`], the [`Intake`] (what `herald bounces`
//! read and counted) and the [`Rates`] (rate marks and daily quotas).
//! [`Store`] is all of them at once, plus the group commit that spans two
//! (`commit_batch`) and the copy of a whole store (`herald store migrate`);
//! a use case that needs one role asks for that role (`&dyn Suppressions`),
//! and a `&dyn Store` gives it. SQLite ([`sqlite::Sqlite`]) is the default:
//! one file, nothing to install; PostgreSQL ([`postgres::Postgres`]) is for
//! several hosts sharing one campaign. The rules both keep are tested once,
//! on both, by one conformance suite per role (`tests/`).
//!
//! A recipient is known by their address (lower-cased), never by their row
//! in the list: a list edited between two runs of a campaign (rows added,
//! removed, re-sorted) mails everyone on the current list exactly once.
//!
//! A recipient is marked `sending` (durably) before their message can be
//! delivered and `sent` after the server's answer. A crash in between
//! leaves them `sending`: of unknown outcome, reported and not sent again
//! unless asked (`--resend-unknown`).
//!
//! May use: the leaves (`clock`, `config` for settings types, `limits`).
//! Never `compose/`, `deliver/`, `listen/` or `cli/`.

mod bounce;
mod copy;
mod error;
mod figures;
pub mod migrate;
mod model;
mod place;
pub mod postgres;
mod rate;
pub mod roles;
pub mod rules;
pub mod sqlite;
mod suppression;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use bounce::{BounceEvent, BounceSummary};
pub use copy::{Dump, DumpCampaign, DumpRecipient, Tally};
pub use error::{Fault, LocationError, Result, StoreError};
pub use figures::{DomainCounts, MinuteCount, domain_of};
pub use model::{CampaignInfo, Counts, Problem, RecipientRecord, RelayCounts, Row, State, Update};
pub use place::QueuePlace;
pub use postgres::Postgres;
pub use rate::{QuotaTake, RateGate, RateMark};
pub use roles::{
    ClaimsApart, Figures, Import, Intake, Journal, Lock, Locks, Rates, Store, Suppressions,
};
pub use sqlite::Sqlite;
pub use suppression::{Source, Suppressed, people};

/// Where the store lives when nothing says otherwise.
pub const DEFAULT_DIR: &str = ".herald";

/// The store in `dir` (created if needed).
pub fn open(dir: &Path) -> Result<Box<dyn Store>> {
    Ok(Box::new(Sqlite::open(dir)?))
}

/// The store in `dir` if one is there; never creates one (a dry run or
/// `status` must not leave a `.herald` folder behind).
pub fn open_existing(dir: &Path) -> Result<Option<Box<dyn Store>>> {
    if !dir.join(sqlite::FILE).exists() {
        return Ok(None);
    }
    open(dir).map(Some)
}

/// Which store the settings name: the SQLite journal in a folder, or a
/// PostgreSQL database shared by several hosts.
#[derive(Clone)]
pub enum Location {
    Journal(PathBuf),
    Postgres(Box<postgres::Target>),
}

impl Location {
    /// The store `config` names: `database_url` when set, else the journal
    /// folder. The database password comes from HERALD_DATABASE_PASSWORD
    /// (or `_FILE`), never from the settings.
    pub fn from_config(
        config: &crate::config::Config,
    ) -> std::result::Result<Location, LocationError> {
        let Some(url) = &config.database_url else {
            return Ok(Location::Journal(config.journal_dir.clone()));
        };
        let password = crate::config::secret("HERALD_DATABASE_PASSWORD")?;
        let ca = match &config.database_ca_file {
            Some(f) => Some(crate::tls::read_ca_pem(f, "database CA file")?),
            None => None,
        };
        Ok(Location::Postgres(Box::new(postgres::Target::new(
            url.as_str(),
            password.as_ref().map(|p| p.expose()),
            ca.as_deref(),
        )?)))
    }

    /// For messages: the journal's file or the database's address.
    pub fn describe(&self) -> String {
        match self {
            Location::Journal(dir) => dir.join(sqlite::FILE).display().to_string(),
            Location::Postgres(t) => t.shown().to_string(),
        }
    }

    /// The store, created if needed.
    pub fn open(&self) -> Result<Box<dyn Store>> {
        match self {
            Location::Journal(dir) => open(dir),
            Location::Postgres(t) => Ok(Box::new(Postgres::open(t)?)),
        }
    }

    /// The store if there is one; a journal folder is never created (a dry
    /// run or `status` must not leave a `.herald` folder behind). A
    /// database is always there once named.
    pub fn open_existing(&self) -> Result<Option<Box<dyn Store>>> {
        match self {
            Location::Journal(dir) => open_existing(dir),
            Location::Postgres(_) => self.open().map(Some),
        }
    }

    pub fn is_shared(&self) -> bool {
        matches!(self, Location::Postgres(_))
    }
}

/// A throwaway store, for dry runs and test sends: the same engine and
/// bookkeeping, nothing kept. Deleted with the returned folder.
pub fn scratch() -> Result<(tempfile::TempDir, Box<dyn Store>)> {
    let dir = tempfile::tempdir()
        .map_err(|e| StoreError::new(std::env::temp_dir(), Fault::Scratch(e.to_string())))?;
    let store = Sqlite::open_scratch(dir.path())?;
    Ok((dir, Box::new(store)))
}

/// A dry run's throwaway store: [`scratch`], but who was written is not
/// recorded (see [`Sqlite::open_dry_run`]).
pub fn dry_run_scratch() -> Result<(tempfile::TempDir, Box<dyn Store>)> {
    let dir = tempfile::tempdir()
        .map_err(|e| StoreError::new(std::env::temp_dir(), Fault::Scratch(e.to_string())))?;
    let store = Sqlite::open_dry_run(dir.path())?;
    Ok((dir, Box::new(store)))
}
