//! herald turns the OpenInfra newsletter post into an email and sends it.
//!
//! The pipeline is a chain of stages, each a module with one entry point that
//! takes the previous stage's value and returns a new one:
//!
//! `post::load` -> `content::build` -> `images::rasterise` -> `render::render`
//! -> `fit::digest` (with `--fit`) -> `check::check`
//!
//! `compose::Issue::compose` runs them in order (the site's URL base is
//! made there, once); `preview` writes the composed issue to files,
//! `message` and `send` make and send each recipient's copy, and `cli` is
//! the command line. `findings` (what a stage tells the user) is a leaf every
//! stage can use, and `limits` (the bounds on input that keep hostile posts,
//! settings and key files from crashing herald) another. No module imports one that depends on it:
//! `scripts/check-module-graph.sh` fails CI on an import cycle.

pub mod accept;
pub mod cli;
pub mod clock;
pub mod compose;
pub mod config;
pub mod deliver;
pub mod dkim;
pub mod findings;
pub mod gone;
pub mod html;
pub mod limits;
pub mod listen;
pub mod log;
pub mod store;
pub mod tls;
pub mod unsubscribe;
pub mod urls;
pub mod words;

/// Exit codes shared by every subcommand, documented in `--help` and the
/// README. Each means one thing, so a cron wrapper can tell "fix the post"
/// from "fix the machine".
pub mod exit {
    /// Everything worked.
    pub const OK: i32 = 0;
    /// `check` found errors in the post (and nothing else uses this code).
    pub const CHECK_ERRORS: i32 = 1;
    /// Bad input: a post, a config file, a setting, a subscriber list,
    /// relay settings or a command line herald cannot use.
    pub const BAD_INPUT: i32 = 2;
    /// The send ran, but some recipients failed, were deferred to the next
    /// run (also: every relay's daily quota is spent and the rest wait),
    /// or have an unknown outcome: see `herald status`. For `bounces`:
    /// some messages need a person (set aside or not understood).
    pub const SOME_FAILED: i32 = 3;
    /// Nothing to do: the campaign was already finished, or `--due` found no post due.
    pub const NOTHING_TO_DO: i32 = 4;
    /// Another herald is sending the same campaign right now (for
    /// `bounces`: another `herald bounces` is reading into the journal).
    pub const LOCKED: i32 = 5;
    /// Stopped by SIGINT or SIGTERM before the end; run again to continue.
    pub const INTERRUPTED: i32 = 6;
    /// herald itself could not work: a full disk, an unreadable journal, a
    /// file it could not write. Not the input's fault: see [`crate::Fault`].
    pub const INTERNAL: i32 = 7;
    /// The relay could not be reached, or refused everything, for a minute;
    /// nobody was lost: run again when it is back.
    pub const RELAY_DOWN: i32 = 8;
    /// A bug in herald (a panic).
    pub const BUG: i32 = 9;
}

use std::fmt;
use std::path::{Path, PathBuf};

/// A problem with something the user gave herald (a post, a config file, a
/// subscriber list), pointing at the file and line so it can be fixed there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    pub file: PathBuf,
    pub line: Option<usize>,
    /// What is wrong and what to do about it, in plain words.
    pub message: String,
}

impl InputError {
    pub fn new(file: &Path, line: Option<usize>, message: impl Into<String>) -> Self {
        InputError {
            file: file.to_path_buf(),
            line,
            message: message.into(),
        }
    }

    /// A problem with a flag or a variable rather than a file: `place` is
    /// its name (`--listen`, `HERALD_UNSUBSCRIBE_SECRET`).
    pub fn at(place: &str, message: impl Into<String>) -> Self {
        InputError::new(Path::new(place), None, message)
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file.display(), line, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for InputError {}

/// herald itself could not do its work, through no fault of the input: a
/// full disk, an unreadable journal, a file it could not write (exit code
/// [`exit::INTERNAL`]). Says what failed and what to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// What failed, like "cannot write preview/x/email.html (No space left on device)".
    pub what: String,
    /// What to look at, like "check that the disk has room".
    pub check: String,
}

impl Fault {
    pub fn new(what: impl Into<String>, check: impl Into<String>) -> Self {
        Fault {
            what: what.into(),
            check: check.into(),
        }
    }

    /// A failed file operation: `doing` is what herald was doing ("write
    /// preview/x/email.html"); the advice follows from the kind of error.
    pub fn io(doing: impl fmt::Display, e: &std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let check = match e.kind() {
            K::StorageFull | K::QuotaExceeded => "free some disk space and run again",
            K::PermissionDenied | K::ReadOnlyFilesystem => {
                "check that herald may write there (permissions, a read-only disk)"
            }
            K::NotADirectory | K::AlreadyExists => {
                "a file is in the way where herald needs a folder; move it or choose another path"
            }
            K::NotFound => "check that the folder exists",
            _ => "check the disk and the path, then run again",
        };
        Fault::new(format!("cannot {doing} ({e})"), check)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; {}", self.what, self.check)
    }
}

impl std::error::Error for Fault {}
