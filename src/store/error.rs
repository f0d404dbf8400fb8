//! What can go wrong in the store, as one typed error: where (the journal
//! file or the database's address) and what ([`Fault`]). The wording is
//! for the person running herald: what happened and what to do.

use std::path::PathBuf;

/// The store could not do its job: the disk is full, the file is
/// unreadable or from another program, the database cannot be reached.
/// Not the user's input: exit code "herald itself failed".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {fault}", place.display())]
pub struct StoreError {
    /// The file or folder of the store, or the database's address
    /// (without a password).
    pub place: PathBuf,
    pub fault: Fault,
}

impl StoreError {
    pub fn new(place: impl Into<PathBuf>, fault: Fault) -> StoreError {
        StoreError {
            place: place.into(),
            fault,
        }
    }
}

/// What went wrong. The reasons a library gave (SQLite, PostgreSQL, the
/// operating system) are kept as their words: they are for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    /// A SQLite statement failed.
    #[error(
        "the journal cannot be used ({0}). Is the disk full, or is the file from another program?"
    )]
    Journal(String),
    /// The journal's schema is newer than this herald's.
    #[error(
        "the journal cannot be used (the journal was written by a newer herald (schema {found}, \
         this herald knows {known}); update herald). Is the disk full, or is the file from \
         another program?"
    )]
    NewerJournal { found: i64, known: i64 },
    #[error("cannot create the journal folder ({0}); choose another with --journal")]
    JournalFolder(String),
    #[error(
        "is a symbolic link; herald does not follow links for its journal. Remove the link (or \
         point --journal at another folder)"
    )]
    SymbolicLink,
    #[error("cannot create the lock folder ({0})")]
    LockFolder(String),
    #[error("cannot open the lock file ({0})")]
    LockFile(String),
    #[error("cannot lock ({0})")]
    Lock(String),
    #[error("cannot make a temporary folder ({0})")]
    Scratch(String),

    /// A PostgreSQL statement failed.
    #[error("the database cannot be used ({0}). Is PostgreSQL running and reachable?")]
    Database(String),
    #[error(
        "cannot reach the database ({0}). Is PostgreSQL running there, and are `database_url` \
         and HERALD_DATABASE_PASSWORD right?"
    )]
    Unreachable(String),
    #[error(
        "is not a PostgreSQL address ({0}); write it like postgres://herald@db.example.org/herald"
    )]
    NotAnAddress(String),
    /// TLS to the database cannot be set up (the CA file, the TLS library).
    #[error("{0}")]
    Tls(String),
    #[error(
        "the database was set up by a newer herald (schema {found}, this herald knows {known}); \
         update herald on this host"
    )]
    NewerDatabase { found: i32, known: i32 },
    #[error(
        "this sender lost its claim on a recipient (it was out of touch with the database for \
         longer than the lease, so another sender may have them); stopping so that nobody is \
         mailed twice. Run send again"
    )]
    ClaimLost,
    #[error("cannot start the heartbeat ({0})")]
    Heartbeat(String),

    /// `herald store migrate` copies from SQLite into PostgreSQL only.
    #[error("copying out of PostgreSQL is not supported; use pg_dump")]
    CannotCopyOut,
    #[error("this store cannot be copied into; copy into PostgreSQL")]
    CannotCopyIn,
    #[error("this store cannot be counted against a copy")]
    CannotTally,
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Why the store the settings name cannot be found: the user's to fix
/// (the password file, the CA file) or the store's (a bad address, TLS).
/// The words are those of the error inside, unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    /// HERALD_DATABASE_PASSWORD(_FILE) or `database_ca_file` cannot be read.
    #[error(transparent)]
    Input(#[from] crate::InputError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl LocationError {
    /// The user's input at fault, if it is (for the exit code).
    pub fn input(&self) -> Option<&crate::InputError> {
        match self {
            LocationError::Input(e) => Some(e),
            LocationError::Store(_) => None,
        }
    }
}
