//! What can stop `herald send` before or while it sends, typed so that the
//! CLI can tell the user's input (exit 2) from herald's own trouble
//! (exit 7) without reading words. Each kind keeps the wording its source
//! had: the messages are written for the person who must act on them.

use std::path::PathBuf;

use crate::store;
use crate::{Fault, InputError};

/// Why a send stopped.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// A post, list, setting or flag to fix (it names the file and line).
    #[error(transparent)]
    Input(#[from] InputError),
    /// herald's own machinery or the machine failed.
    #[error(transparent)]
    Fault(#[from] Fault),
    /// The post could not be composed.
    #[error(transparent)]
    Compose(#[from] crate::compose::Error),
    /// The store's settings or the store itself.
    #[error(transparent)]
    Location(#[from] store::LocationError),
    /// The journal or a throwaway store failed.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The dry run's folder could not be written.
    #[error("cannot write to the outbox {} ({source})", dir.display())]
    Outbox {
        dir: PathBuf,
        source: std::io::Error,
    },
    /// The relay refused the settings (authentication, TLS) or could not
    /// be reached for `relay_down_after`; the words are the relay's.
    #[error("{0}")]
    Relay(String),
    /// The terminal the CLI asked on could not be read.
    #[error("cannot read the answer from the terminal ({0})")]
    Terminal(#[from] std::io::Error),
}

impl SendError {
    /// A file, flag or setting the user can fix (exit 2), as against
    /// herald's or the machine's trouble.
    pub fn is_input(&self) -> bool {
        match self {
            SendError::Input(_) => true,
            SendError::Compose(e) => e.is_input(),
            SendError::Location(e) => e.input().is_some(),
            _ => false,
        }
    }
}

/// The send use case's result.
pub type Result<T, E = SendError> = std::result::Result<T, E>;
