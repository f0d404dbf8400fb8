//! The SQLite store: `journal.db` in the journal folder (`.herald/` by
//! default), plus one lock file per campaign being sent in `locks/`.

mod copy;
mod figures;
mod intake;
mod journal;
mod locks;
mod rates;
mod schema;
mod suppressions;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};

use rates::{record_marks, take_in};

use crate::clock;
use crate::store::{Dump, Fault, QuotaTake, RateMark, Result, State, Store, StoreError, Update};

/// The database's file name inside the journal folder.
pub const FILE: &str = "journal.db";

pub struct Sqlite {
    conn: Connection,
    dir: PathBuf,
    path: PathBuf,
    /// Whether a recipient's `sent` is recorded: not in a dry run's
    /// scratch store (see [`Sqlite::open_dry_run`]).
    keeps_sent: bool,
}

fn db_error(path: &Path, e: rusqlite::Error) -> StoreError {
    StoreError::new(path, Fault::Journal(e.to_string()))
}

impl Sqlite {
    /// Opens (creating if needed) the journal in `dir`. Every commit is on
    /// disk before herald goes on (WAL, `synchronous=FULL`), so a `sending`
    /// mark exists before the message can leave.
    pub fn open(dir: &Path) -> Result<Sqlite> {
        Self::open_with(dir, "FULL", "WAL")
    }
    /// A journal that is thrown away after the run (dry runs, test sends):
    /// nothing needs to survive a crash, so commits skip the disk flush.
    /// Nobody else opens it, so it is locked once for good: otherwise each
    /// transaction takes and drops file locks and rereads the WAL's index
    /// (a dry run of 20,000 made 10,000 fcntl and 8,600 pread calls).
    ///
    /// No WAL either: with one connection it only wrote every page twice
    /// (to the WAL, then into the file at each checkpoint). The rollback
    /// journal is kept in memory (a transaction can still be rolled back),
    /// and it is small: an import adds pages, which are not journaled, and
    /// a commit of outcomes changes a few pages. And no `recipient_queue`
    /// index: a throwaway store's queue is read once, in `seq` order, which
    /// the primary key (campaign, seq) gives alone, and every outcome
    /// moved its row in that index (a delete and an insert, more pages to
    /// write per commit). The same statements give the same answers.
    /// In SQLite alone (Python's sqlite3, the scratch schema, 100,000
    /// added then marked 256 at a time): 148 MB written in 64,700 calls
    /// before, 58 MB in 14,200 after.
    pub fn open_scratch(dir: &Path) -> Result<Sqlite> {
        let s = Self::open_with(dir, "OFF", "MEMORY")?;
        s.conn
            .pragma_update(None, "locking_mode", "EXCLUSIVE")
            .map_err(|e| db_error(&s.path, e))?;
        s.conn
            .execute_batch("DROP INDEX IF EXISTS recipient_queue")
            .map_err(|e| db_error(&s.path, e))?;
        Ok(s)
    }
    /// A dry run's scratch store ([`Sqlite::open_scratch`]) that does not
    /// record who was written: the only outcomes a dry run reads back are
    /// the messages that could not be made (`problems`), and its place in
    /// the queue moves by `seq`, not by state. Recording `sent` was an
    /// UPDATE a message (a commit of 256 rows every 256 messages), about
    /// a tenth of a dry run's instructions with the rest of the store.
    /// Failures and every other state are recorded as before.
    pub fn open_dry_run(dir: &Path) -> Result<Sqlite> {
        let mut s = Self::open_scratch(dir)?;
        s.keeps_sent = false;
        Ok(s)
    }
    fn open_with(dir: &Path, synchronous: &str, journal_mode: &str) -> Result<Sqlite> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::new(dir, Fault::JournalFolder(e.to_string())))?;
        let path = dir.join(FILE);
        // The journal is herald's own file: a symbolic link put in its
        // place (by someone who may not write the target) is not followed.
        for name in [
            FILE.to_string(),
            format!("{FILE}-wal"),
            format!("{FILE}-shm"),
        ] {
            let p = dir.join(&name);
            if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(StoreError::new(p, Fault::SymbolicLink));
            }
        }
        let conn = Connection::open(&path).map_err(|e| db_error(&path, e))?;
        let s = Sqlite {
            conn,
            dir: dir.to_path_buf(),
            path,
            keeps_sent: true,
        };
        s.setup(synchronous, journal_mode).map_err(|e| match e {
            schema::Setup::Db(e) => db_error(&s.path, e),
            schema::Setup::Newer(found) => StoreError::new(
                &s.path,
                Fault::NewerJournal {
                    found,
                    known: schema::SCHEMA_VERSION,
                },
            ),
        })?;
        Ok(s)
    }
    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |e| db_error(&self.path, e)
    }
}

impl Store for Sqlite {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }
    fn commit_batch(
        &mut self,
        campaign: &str,
        updates: &[Update],
        marks: &[RateMark],
        takes: &[QuotaTake],
    ) -> Result<Vec<u64>> {
        let keeps_sent = self.keeps_sent;
        let kept = move |u: &&Update| keeps_sent || u.state != State::Sent;
        // A dry run's batch of messages written: nothing to record.
        if marks.is_empty() && takes.is_empty() && !updates.iter().any(|u| kept(&u)) {
            return Ok(Vec::new());
        }
        let path = self.path.clone();
        // A quota take reads before it writes: under the write lock from
        // the start, as `take_quota` (another herald may take the same
        // relay's quota at the same moment).
        let behavior = if takes.is_empty() {
            rusqlite::TransactionBehavior::Deferred
        } else {
            rusqlite::TransactionBehavior::Immediate
        };
        let tx = self
            .conn
            .transaction_with_behavior(behavior)
            .map_err(|e| db_error(&path, e))?;
        {
            let now = clock::now().to_string();
            let mut st = tx
                .prepare_cached(
                    "UPDATE recipient SET state = ?3, reply = COALESCE(?4, reply), attempts = attempts + ?5,
                        updated_at = ?6, relay = COALESCE(?7, relay) WHERE campaign = ?1 AND seq = ?2",
                )
                .map_err(|e| db_error(&path, e))?;
            let mut sup = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO suppression (email_key, reason, added_at, source, campaign)
                     VALUES (?1, ?2, ?3, 'bounce', ?4)",
                )
                .map_err(|e| db_error(&path, e))?;
            for u in updates.iter().filter(kept) {
                st.execute(params![
                    campaign,
                    u.seq,
                    u.state.as_str(),
                    u.reply,
                    u.attempts,
                    now,
                    u.relay
                ])
                .map_err(|e| db_error(&path, e))?;
                if let Some(key) = &u.suppress {
                    sup.execute(params![key, u.suppression_reason(), now, campaign])
                        .map_err(|e| db_error(&path, e))?;
                }
            }
        }
        record_marks(&tx, marks).map_err(|e| db_error(&path, e))?;
        let mut got = Vec::with_capacity(takes.len());
        for t in takes {
            got.push(take_in(&tx, t).map_err(|e| db_error(&path, e))?);
        }
        tx.commit().map_err(|e| db_error(&path, e))?;
        Ok(got)
    }

    fn dump(&self) -> Result<Dump> {
        self.dump_all()
    }
}
