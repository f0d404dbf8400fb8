//! The campaign lock on SQLite: a lock file per campaign, held with
//! `flock`, so the operating system lets go when herald dies.

use std::os::unix::fs::OpenOptionsExt;

use super::Sqlite;
use crate::store::{Fault, Lock, Locks, Result, StoreError};

/// A lock file held with `flock`: the operating system releases it when
/// herald dies, however it dies.
struct FileLock {
    _file: std::fs::File,
}

impl Lock for FileLock {}

fn lock_name(campaign: &str) -> String {
    campaign
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Locks for Sqlite {
    fn lock(&self, campaign: &str) -> Result<Option<Box<dyn Lock>>> {
        let locks = self.dir.join("locks");
        std::fs::create_dir_all(&locks)
            .map_err(|e| StoreError::new(&locks, Fault::LockFolder(e.to_string())))?;
        let path = locks.join(format!("{}.lock", lock_name(campaign)));
        // O_NOFOLLOW: a symbolic link put where the lock file goes is not
        // followed (herald would write its process id into the target).
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| StoreError::new(&path, Fault::LockFile(e.to_string())))?;
        match file.try_lock() {
            Ok(()) => {
                use std::io::Write;
                let _ = file.set_len(0);
                let _ = writeln!(&file, "{}", std::process::id());
                Ok(Some(Box::new(FileLock { _file: file })))
            }
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(StoreError::new(path, Fault::Lock(e.to_string())))
            }
        }
    }
}
