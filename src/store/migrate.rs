//! `herald store migrate --to postgres://...`: the SQLite journal copied
//! into a PostgreSQL database, for growing past one machine, as a typed
//! outcome: the counts on both sides. The CLI words them and decides that
//! counts that differ are a failure.

use std::path::{Path, PathBuf};

use super::{Location, Postgres, Store, StoreError, Tally, postgres::Target};
use crate::InputError;

/// Why the copy could not be made.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// `--to` is not a database address herald can use.
    #[error("--to: {0}")]
    BadAddress(String),
    /// There is no journal where the settings point.
    #[error("{}: there is no journal here to copy", .0.display())]
    NoJournal(PathBuf),
    /// A setting or secret the copy needs (the password, the CA file).
    #[error(transparent)]
    Input(#[from] InputError),
    /// The journal cannot be read.
    #[error(transparent)]
    Journal(StoreError),
    /// The database cannot be opened or written.
    #[error(transparent)]
    Database(StoreError),
}

/// What a copy did: the counts on both sides.
#[derive(Debug, serde::Serialize)]
pub struct Migration {
    /// The journal copied, for people.
    pub from: String,
    /// The database, for people (no password).
    pub to: String,
    /// The address to put in `database_url`.
    #[serde(skip)]
    pub url: String,
    pub before: Tally,
    pub after: Tally,
}

impl Migration {
    /// Whether the database holds everything the journal had.
    pub fn counts_match(&self) -> bool {
        self.after == self.before
    }
}

/// Copies the journal in `journal_dir` into the database at `to` (its
/// password from HERALD_DATABASE_PASSWORD, its CA from `ca_file`), and
/// counts both. What the database already has stays as it is.
pub fn migrate(
    to: &str,
    journal_dir: &Path,
    ca_file: Option<&Path>,
) -> Result<Migration, MigrateError> {
    let url = crate::config::database(to).map_err(|e| MigrateError::BadAddress(e.to_string()))?;
    let source = Location::Journal(journal_dir.to_path_buf());
    let lite = source
        .open_existing()
        .map_err(MigrateError::Journal)?
        .ok_or_else(|| MigrateError::NoJournal(journal_dir.to_path_buf()))?;
    let password = crate::config::secret("HERALD_DATABASE_PASSWORD")?;
    let ca = match ca_file {
        Some(f) => Some(crate::tls::read_ca_pem(f, "database CA file")?),
        None => None,
    };
    let target = Target::new(
        url.as_str(),
        password.as_ref().map(|p| p.expose()),
        ca.as_deref(),
    )
    .map_err(|e| MigrateError::BadAddress(e.to_string()))?;
    let dump = lite.dump().map_err(MigrateError::Journal)?;
    let before = dump.tally();
    tracing::info!(
        "copying {} campaign(s), {} recipient record(s), {} suppression(s) and {} bounce record(s) from {}",
        before.campaigns,
        before.recipients,
        before.suppressions,
        before.bounces,
        source.describe()
    );
    let mut pg = Postgres::open(&target).map_err(MigrateError::Database)?;
    pg.load(&dump).map_err(MigrateError::Database)?;
    let after = pg.tally(&dump).map_err(MigrateError::Database)?;
    Ok(Migration {
        from: source.describe(),
        to: target.shown().to_string(),
        url: url.to_string(),
        before,
        after,
    })
}
