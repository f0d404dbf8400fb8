//! The SQLite store: `journal.db` in the journal folder (`.herald/` by
//! default), plus one lock file per campaign being sent in `locks/`.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use super::{
    BounceEvent, BounceSummary, CampaignInfo, Counts, Dump, DumpCampaign, DumpRecipient, Import,
    Lock, Problem, QuotaTake, RateMark, RecipientRecord, RelayCounts, Result, Row, Source, State,
    Store, StoreError, Suppressed, Update,
};
use crate::clock;

/// The database's file name inside the journal folder.
pub const FILE: &str = "journal.db";

/// The schema this herald writes. Version 0 is the first release's (no
/// `seen` column); it is upgraded in place on open.
const SCHEMA_VERSION: i64 = 5;

pub struct Sqlite {
    conn: Connection,
    dir: PathBuf,
    path: PathBuf,
}

fn db_error(path: &Path, e: rusqlite::Error) -> StoreError {
    StoreError {
        place: path.to_path_buf(),
        message: format!(
            "the journal cannot be used ({e}). Is the disk full, or is the file from another program?"
        ),
    }
}

impl Sqlite {
    /// Opens (creating if needed) the journal in `dir`. Every commit is on
    /// disk before herald goes on (WAL, `synchronous=FULL`), so a `sending`
    /// mark exists before the message can leave.
    pub fn open(dir: &Path) -> Result<Sqlite> {
        Self::open_with(dir, "FULL")
    }

    /// A journal that is thrown away after the run (dry runs, test sends):
    /// nothing needs to survive a crash, so commits skip the disk flush.
    pub fn open_scratch(dir: &Path) -> Result<Sqlite> {
        Self::open_with(dir, "OFF")
    }

    fn open_with(dir: &Path, synchronous: &str) -> Result<Sqlite> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError {
            place: dir.to_path_buf(),
            message: format!(
                "cannot create the journal folder ({e}); choose another with --journal"
            ),
        })?;
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
                return Err(StoreError {
                    place: p,
                    message: "is a symbolic link; herald does not follow links for its journal. \
                              Remove the link (or point --journal at another folder)"
                        .into(),
                });
            }
        }
        let conn = Connection::open(&path).map_err(|e| db_error(&path, e))?;
        let s = Sqlite {
            conn,
            dir: dir.to_path_buf(),
            path,
        };
        s.setup(synchronous).map_err(|e| db_error(&s.path, e))?;
        Ok(s)
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |e| db_error(&self.path, e)
    }

    fn setup(&self, synchronous: &str) -> rusqlite::Result<()> {
        self.conn.pragma_update(None, "journal_mode", "WAL")?;
        self.conn.pragma_update(None, "synchronous", synchronous)?;
        // Another herald (a status, a dry run reading the suppression list)
        // may hold the file for a moment.
        self.conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(rusqlite::Error::ToSqlConversionFailure(
                format!(
                    "the journal was written by a newer herald (schema {version}, this herald knows {SCHEMA_VERSION}); update herald"
                )
                .into(),
            ));
        }
        if version == SCHEMA_VERSION {
            return Ok(());
        }
        // Made or upgraded by one herald at a time: `herald serve` and
        // `herald send` may open a first-release journal at the same moment.
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let upgraded = self.create_or_upgrade();
        let end = if upgraded.is_ok() {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        self.conn.execute_batch(end)?;
        upgraded
    }

    fn create_or_upgrade(&self) -> rusqlite::Result<()> {
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version == SCHEMA_VERSION {
            return Ok(());
        }
        self.conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS campaign (
                id TEXT PRIMARY KEY,
                post TEXT NOT NULL,
                content_hash TEXT NOT NULL,
                columns TEXT NOT NULL,
                created_at TEXT NOT NULL,
                finished_at TEXT
             );
             CREATE TABLE IF NOT EXISTS recipient (
                campaign TEXT NOT NULL,
                seq INTEGER NOT NULL,
                email TEXT NOT NULL,
                email_key TEXT NOT NULL,
                line INTEGER NOT NULL,
                fields TEXT NOT NULL,
                state TEXT NOT NULL DEFAULT 'pending',
                attempts INTEGER NOT NULL DEFAULT 0,
                reply TEXT,
                updated_at TEXT,
                PRIMARY KEY (campaign, seq),
                UNIQUE (campaign, email_key)
             );
             CREATE INDEX IF NOT EXISTS recipient_queue ON recipient (campaign, state, seq);
             CREATE TABLE IF NOT EXISTS suppression (
                email_key TEXT PRIMARY KEY,
                reason TEXT NOT NULL,
                added_at TEXT NOT NULL
             );",
        )?;
        let has = |table: &str, column: &str| {
            self.conn
                .prepare(&format!("SELECT {column} FROM {table} LIMIT 0"))
                .is_ok()
        };
        // Schema 1: `seen`, the import that last found the address on the list.
        if !has("recipient", "seen") {
            self.conn.execute_batch(
                "ALTER TABLE recipient ADD COLUMN seen INTEGER NOT NULL DEFAULT 0",
            )?;
        }
        // Schema 2: where each suppression came from and in which campaign.
        // The first release only suppressed hard bounces.
        if !has("suppression", "source") {
            self.conn.execute_batch(
                "ALTER TABLE suppression ADD COLUMN source TEXT NOT NULL DEFAULT 'bounce';
                 ALTER TABLE suppression ADD COLUMN campaign TEXT;",
            )?;
        }
        // Schema 3: what `herald bounces` read.
        self.conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS intake (
                message_key TEXT PRIMARY KEY,
                handled_at TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS bounce (
                email_key TEXT NOT NULL,
                campaign TEXT,
                kind TEXT NOT NULL,
                status TEXT NOT NULL,
                hard INTEGER NOT NULL,
                reason TEXT NOT NULL,
                diagnostic TEXT,
                action TEXT NOT NULL,
                message TEXT NOT NULL,
                at TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS bounce_email ON bounce (email_key, at);
             CREATE INDEX IF NOT EXISTS bounce_campaign ON bounce (campaign);",
        )?;
        // Schema 4: which relay answered for each recipient (`relays:`),
        // and each relay's daily quota used, by the relay's day.
        if !has("recipient", "relay") {
            self.conn
                .execute_batch("ALTER TABLE recipient ADD COLUMN relay TEXT")?;
        }
        self.conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS relay_day (
                relay TEXT NOT NULL,
                day TEXT NOT NULL,
                used INTEGER NOT NULL,
                PRIMARY KEY (relay, day)
             );",
        )?;
        self.migrate_suppression_history()?;
        self.suppression_log_v5()?;
        self.migrate_rate_marks()?;
        self.conn
            .pragma_update(None, "user_version", SCHEMA_VERSION)
    }

    /// Schema 5: a log of additions to the suppression list, written by a
    /// trigger so that every writer (`herald serve`, `bounces`, `suppress
    /// add`, another sender, an older herald) is seen by a run under way.
    /// AUTOINCREMENT: a number is never given twice, even after a delete.
    fn suppression_log_v5(&self) -> rusqlite::Result<()> {
        self.conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS suppression_log (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                email_key TEXT NOT NULL
             );
             CREATE TRIGGER IF NOT EXISTS suppression_logged AFTER INSERT ON suppression
             BEGIN
                INSERT INTO suppression_log (email_key) VALUES (NEW.email_key);
             END;",
        )
    }

    /// Schema 5: the times of each rate's recent messages (`rate_mark`,
    /// see [`RateMark`]), so a new run starts from the window the last one
    /// left instead of from zero.
    fn migrate_rate_marks(&self) -> rusqlite::Result<()> {
        self.conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS rate_mark (
                id INTEGER PRIMARY KEY,
                key TEXT NOT NULL,
                answered_by REAL NOT NULL,
                answered_at REAL
             );
             CREATE INDEX IF NOT EXISTS rate_mark_key ON rate_mark (key);",
        )
    }

    /// Schema 5: the suppression list keeps every event. Up to schema 4 it
    /// held one row per address (the first reason; later ones were lost, so
    /// "Undo" of an unsubscribe could take back a later complaint). The
    /// table is rebuilt with a row id, each existing row kept as an event,
    /// and one event per address, kind and campaign.
    fn migrate_suppression_history(&self) -> rusqlite::Result<()> {
        if self
            .conn
            .prepare("SELECT id FROM suppression LIMIT 0")
            .is_ok()
        {
            return Ok(());
        }
        self.conn.execute_batch(
            "CREATE TABLE suppression_event (
                id INTEGER PRIMARY KEY,
                email_key TEXT NOT NULL,
                reason TEXT NOT NULL,
                added_at TEXT NOT NULL,
                source TEXT NOT NULL DEFAULT 'bounce',
                campaign TEXT
             );
             INSERT INTO suppression_event (email_key, reason, added_at, source, campaign)
                SELECT email_key, reason, added_at, source, campaign FROM suppression
                ORDER BY added_at, email_key;
             DROP TABLE suppression;
             ALTER TABLE suppression_event RENAME TO suppression;
             CREATE UNIQUE INDEX suppression_once
                ON suppression (email_key, source, COALESCE(campaign, ''));",
        )
    }
}

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

impl Store for Sqlite {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn lock(&self, campaign: &str) -> Result<Option<Box<dyn Lock>>> {
        let locks = self.dir.join("locks");
        std::fs::create_dir_all(&locks).map_err(|e| StoreError {
            place: locks.clone(),
            message: format!("cannot create the lock folder ({e})"),
        })?;
        let path = locks.join(format!("{}.lock", lock_name(campaign)));
        // O_NOFOLLOW: a symbolic link put where the lock file goes is not
        // followed (herald would write its process id into the target).
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| StoreError {
                place: path.clone(),
                message: format!("cannot open the lock file ({e})"),
            })?;
        match file.try_lock() {
            Ok(()) => {
                use std::io::Write;
                let _ = file.set_len(0);
                let _ = writeln!(&file, "{}", std::process::id());
                Ok(Some(Box::new(FileLock { _file: file })))
            }
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(StoreError {
                place: path,
                message: format!("cannot lock ({e})"),
            }),
        }
    }

    fn campaign_hash(&self, id: &str) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT content_hash FROM campaign WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())
    }

    fn upsert_campaign(
        &mut self,
        id: &str,
        post: &str,
        hash: &str,
        columns: &[String],
    ) -> Result<()> {
        let cols = serde_json::to_string(columns).expect("strings serialise");
        self.conn
            .execute(
                "INSERT INTO campaign (id, post, content_hash, columns, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(id) DO UPDATE SET content_hash = excluded.content_hash, post = excluded.post,
                    columns = excluded.columns",
                params![id, post, hash, cols, clock::now().to_string()],
            )
            .map_err(self.err())?;
        Ok(())
    }

    fn import<'a>(&'a mut self, campaign: &str) -> Result<Box<dyn Import + 'a>> {
        let path = self.path.clone();
        // Under the write lock from the start: this reads before it writes,
        // and a deferred transaction that another writer (`herald serve`
        // taking an unsubscribe) overtakes in between fails at once with
        // "database is locked" instead of waiting its turn.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| db_error(&path, e))?;
        let (next_seq, generation): (i64, i64) = tx
            .query_row(
                "SELECT COALESCE(MAX(seq), 0) + 1, COALESCE(MAX(seen), 0) + 1 FROM recipient WHERE campaign = ?1",
                [campaign],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| db_error(&path, e))?;
        Ok(Box::new(SqliteImport {
            tx,
            path,
            campaign: campaign.to_string(),
            next_seq,
            generation,
        }))
    }

    fn queue(
        &self,
        campaign: &str,
        after_seq: i64,
        limit: i64,
        resend_unknown: bool,
    ) -> Result<Vec<Row>> {
        let sql = if resend_unknown {
            "SELECT seq, email, line, fields, attempts FROM recipient
             WHERE campaign = ?1 AND seq > ?2 AND state IN ('pending', 'deferred', 'sending')
             ORDER BY seq LIMIT ?3"
        } else {
            "SELECT seq, email, line, fields, attempts FROM recipient
             WHERE campaign = ?1 AND seq > ?2 AND state IN ('pending', 'deferred')
             ORDER BY seq LIMIT ?3"
        };
        let mut st = self.conn.prepare_cached(sql).map_err(self.err())?;
        let rows = st
            .query_map(params![campaign, after_seq, limit], |r| {
                let fields: String = r.get(3)?;
                Ok(Row {
                    seq: r.get(0)?,
                    email: r.get(1)?,
                    line: r.get(2)?,
                    values: serde_json::from_str(&fields).unwrap_or_default(),
                    attempts: r.get(4)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<Vec<Row>>>()
            .map_err(self.err())
    }

    fn apply(&mut self, campaign: &str, updates: &[Update]) -> Result<()> {
        self.commit_batch(campaign, updates, &[], &[]).map(|_| ())
    }

    fn commit_batch(
        &mut self,
        campaign: &str,
        updates: &[Update],
        marks: &[RateMark],
        takes: &[QuotaTake],
    ) -> Result<Vec<u64>> {
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
            for u in updates {
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
                    sup.execute(params![
                        key,
                        u.reply.as_deref().unwrap_or("refused"),
                        now,
                        campaign
                    ])
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

    fn rate_history(&self, key: &str, now: f64, max: u64) -> Result<Vec<f64>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT MIN(COALESCE(answered_at, answered_by), ?2) AS t FROM rate_mark
                 WHERE key = ?1 ORDER BY t DESC LIMIT ?3",
            )
            .map_err(self.err())?;
        let mut times = st
            .query_map(params![key, now, max.min(i64::MAX as u64) as i64], |r| {
                r.get::<_, f64>(0)
            })
            .map_err(self.err())?
            .collect::<rusqlite::Result<Vec<f64>>>()
            .map_err(self.err())?;
        times.reverse();
        Ok(times)
    }

    fn counts(&self, campaign: &str) -> Result<Counts> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT state, COUNT(*) FROM recipient WHERE campaign = ?1 GROUP BY state",
            )
            .map_err(self.err())?;
        let mut c = Counts::default();
        let rows = st
            .query_map([campaign], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .map_err(self.err())?;
        for row in rows {
            let (state, n) = row.map_err(self.err())?;
            c.add(&state, n);
        }
        Ok(c)
    }

    fn relay_counts(&self, campaign: &str) -> Result<Vec<RelayCounts>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT relay, state, COUNT(*) FROM recipient WHERE campaign = ?1 AND relay IS NOT NULL
                 GROUP BY relay, state",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map([campaign], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(self.err())?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.err())?;
        Ok(RelayCounts::gather(rows))
    }

    fn take_quota(&mut self, relay: &str, day: &str, want: u64, max: u64) -> Result<u64> {
        // Taken under the journal's write lock from the start (IMMEDIATE),
        // so another herald on this machine (another campaign through the
        // same relay) cannot read the same count in between.
        let path = self.path.clone();
        let e = |err| db_error(&path, err);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(e)?;
        let take = QuotaTake {
            relay: relay.to_string(),
            day: day.to_string(),
            want,
            max,
        };
        let got = take_in(&tx, &take).map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(got)
    }

    fn give_back_quota(&mut self, relay: &str, day: &str, n: u64) -> Result<()> {
        self.conn
            .execute(
                "UPDATE relay_day SET used = MAX(used - ?3, 0) WHERE relay = ?1 AND day = ?2",
                params![relay, day, n as i64],
            )
            .map_err(self.err())?;
        Ok(())
    }

    fn quota_used(&self, relay: &str, day: &str) -> Result<u64> {
        let used: i64 = self
            .conn
            .query_row(
                "SELECT COALESCE((SELECT used FROM relay_day WHERE relay = ?1 AND day = ?2), 0)",
                params![relay, day],
                |r| r.get(0),
            )
            .map_err(self.err())?;
        Ok(used.max(0) as u64)
    }

    fn finish_if_done(&mut self, campaign: &str) -> Result<bool> {
        let c = self.counts(campaign)?;
        let done = c.pending == 0 && c.deferred == 0 && c.unknown == 0;
        if done {
            self.conn
                .execute(
                    "UPDATE campaign SET finished_at = COALESCE(finished_at, ?2) WHERE id = ?1",
                    params![campaign, clock::now().to_string()],
                )
                .map_err(self.err())?;
        }
        Ok(done)
    }

    fn is_finished(&self, campaign: &str) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT finished_at IS NOT NULL FROM campaign WHERE id = ?1",
                [campaign],
                |r| r.get(0),
            )
            .optional()
            .map(|o| o.unwrap_or(false))
            .map_err(self.err())
    }

    fn campaigns(&self) -> Result<Vec<CampaignInfo>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT id, post, created_at, finished_at FROM campaign ORDER BY created_at, id",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .map_err(self.err())?
            .collect::<rusqlite::Result<Vec<(String, String, String, Option<String>)>>>()
            .map_err(self.err())?;
        rows.into_iter()
            .map(|(id, post, created_at, finished_at)| {
                let counts = self.counts(&id)?;
                Ok(CampaignInfo {
                    id,
                    post,
                    created_at,
                    finished_at,
                    counts,
                })
            })
            .collect()
    }

    fn problems(&self, campaign: &str, limit: i64) -> Result<Vec<Problem>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT email, state, reply, attempts, line FROM recipient
                 WHERE campaign = ?1 AND state IN ('failed', 'deferred', 'sending') ORDER BY seq LIMIT ?2",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map(params![campaign, limit], |r| {
                let state: String = r.get(1)?;
                Ok(Problem {
                    email: r.get(0)?,
                    state: State::parse(&state).unwrap_or(State::Sending),
                    reply: r.get(2)?,
                    attempts: r.get(3)?,
                    line: r.get(4)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<Vec<Problem>>>()
            .map_err(self.err())
    }

    fn suppressed(&self) -> Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare("SELECT DISTINCT email_key FROM suppression")
            .map_err(self.err())?;
        let rows = st.query_map([], |r| r.get(0)).map_err(self.err())?;
        rows.collect::<rusqlite::Result<Vec<String>>>()
            .map_err(self.err())
    }

    fn is_suppressed(&self, email: &str) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT 1 FROM suppression WHERE email_key = ?1 LIMIT 1",
                [email.to_lowercase()],
                |_| Ok(()),
            )
            .optional()
            .map(|o| o.is_some())
            .map_err(self.err())
    }

    fn suppression_mark(&self) -> Result<i64> {
        self.conn
            .query_row(
                "SELECT COALESCE(MAX(id), 0) FROM suppression_log",
                [],
                |r| r.get(0),
            )
            .map_err(self.err())
    }

    fn suppressed_after(&self, mark: i64) -> Result<Vec<(i64, String)>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT id, email_key FROM suppression_log WHERE id > ?1 ORDER BY id")
            .map_err(self.err())?;
        let rows = st
            .query_map([mark], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.err())
    }

    fn suppress(&mut self, entries: &[Suppressed]) -> Result<u64> {
        let path = self.path.clone();
        // Events the journal holds already (a one-click POST repeated, a
        // provider retrying) are answered from a read, without waiting for
        // the write lock `herald send` may hold.
        {
            let mut held = self
                .conn
                .prepare_cached(
                    "SELECT 1 FROM suppression WHERE email_key = ?1 AND source = ?2
                     AND COALESCE(campaign, '') = COALESCE(?3, '')",
                )
                .map_err(|e| db_error(&path, e))?;
            let mut all_held = true;
            for e in entries {
                if !held
                    .exists(params![
                        e.email.to_lowercase(),
                        e.source.as_str(),
                        e.campaign
                    ])
                    .map_err(|e| db_error(&path, e))?
                {
                    all_held = false;
                    break;
                }
            }
            if all_held {
                return Ok(0);
            }
        }
        // Immediate: it reads before it writes, and a deferred transaction
        // that read before `herald send` committed could not then write
        // (SQLITE_BUSY_SNAPSHOT, which no busy timeout waits out).
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| db_error(&path, e))?;
        let mut added = 0;
        {
            let mut was = tx
                .prepare_cached("SELECT 1 FROM suppression WHERE email_key = ?1 LIMIT 1")
                .map_err(|e| db_error(&path, e))?;
            let mut st = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO suppression (email_key, reason, added_at, source, campaign)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(|e| db_error(&path, e))?;
            for e in entries {
                let key = e.email.to_lowercase();
                let before = was.exists([&key]).map_err(|e| db_error(&path, e))?;
                let new = st
                    .execute(params![
                        key,
                        e.reason,
                        e.added_at,
                        e.source.as_str(),
                        e.campaign
                    ])
                    .map_err(|e| db_error(&path, e))?;
                if new > 0 && !before {
                    added += 1;
                }
            }
        }
        tx.commit().map_err(|e| db_error(&path, e))?;
        Ok(added)
    }

    fn unsuppress(&mut self, email: &str, sources: &[Source]) -> Result<bool> {
        let key = email.to_lowercase();
        let n = if sources.is_empty() {
            self.conn
                .execute("DELETE FROM suppression WHERE email_key = ?1", [key])
        } else {
            let list: Vec<String> = sources
                .iter()
                .map(|s| format!("'{}'", s.as_str()))
                .collect();
            // The sources are herald's own fixed words, not input.
            self.conn.execute(
                &format!(
                    "DELETE FROM suppression WHERE email_key = ?1 AND source IN ({})",
                    list.join(",")
                ),
                [key],
            )
        };
        n.map(|n| n > 0).map_err(self.err())
    }

    fn suppression_events(&self) -> Result<Vec<Suppressed>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT email_key, reason, source, campaign, added_at FROM suppression
                 ORDER BY added_at, email_key, id",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map([], |r| {
                let source: String = r.get(2)?;
                Ok(Suppressed {
                    email: r.get(0)?,
                    reason: r.get(1)?,
                    // A word this herald does not know (written by a newer
                    // one) reads as manual rather than failing the list.
                    source: Source::parse(&source).unwrap_or(Source::Manual),
                    campaign: r.get(3)?,
                    added_at: r.get(4)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.err())
    }

    fn message_handled(&self, key: &str) -> Result<bool> {
        self.conn
            .query_row("SELECT 1 FROM intake WHERE message_key = ?1", [key], |_| {
                Ok(())
            })
            .optional()
            .map(|o| o.is_some())
            .map_err(self.err())
    }

    fn record_message(
        &mut self,
        key: &str,
        events: &[BounceEvent],
        suppress: &[Suppressed],
    ) -> Result<()> {
        let path = self.path.clone();
        let e = |err| db_error(&path, err);
        let tx = self.conn.transaction().map_err(e)?;
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO bounce (email_key, campaign, kind, status, hard, reason, diagnostic, action, message, at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )
                .map_err(e)?;
            for b in events {
                ins.execute(params![
                    b.email.to_lowercase(),
                    b.campaign,
                    b.kind,
                    b.status,
                    b.hard,
                    b.reason,
                    b.diagnostic,
                    b.action,
                    b.message,
                    b.at
                ])
                .map_err(e)?;
            }
            let mut sup = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO suppression (email_key, reason, added_at, source, campaign)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(e)?;
            for s in suppress {
                sup.execute(params![
                    s.email.to_lowercase(),
                    s.reason,
                    s.added_at,
                    s.source.as_str(),
                    s.campaign
                ])
                .map_err(e)?;
            }
            tx.execute(
                "INSERT OR IGNORE INTO intake (message_key, handled_at) VALUES (?1, ?2)",
                params![key, clock::now().to_string()],
            )
            .map_err(e)?;
        }
        tx.commit().map_err(e)
    }

    fn soft_bounces(&self, email: &str, since: &str) -> Result<Vec<Option<String>>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT campaign FROM bounce WHERE email_key = ?1 AND kind = 'bounce'
                 AND action = 'counted' AND at >= ?2",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map(params![email.to_lowercase(), since], |r| r.get(0))
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<Vec<Option<String>>>>()
            .map_err(self.err())
    }

    fn recipients(&self, campaign: &str) -> Result<Vec<RecipientRecord>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT email, state, attempts, reply, updated_at FROM recipient
                 WHERE campaign = ?1 ORDER BY seq",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map([campaign], |r| {
                let state: String = r.get(1)?;
                Ok(RecipientRecord {
                    email: r.get(0)?,
                    state: State::parse(&state).unwrap_or(State::Sending),
                    attempts: r.get(2)?,
                    reply: r.get(3)?,
                    updated_at: r.get(4)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.err())
    }

    fn bounces(&self, campaign: &str) -> Result<Vec<BounceEvent>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT email_key, campaign, kind, status, hard, reason, diagnostic, action, message, at
                 FROM bounce WHERE campaign = ?1 ORDER BY at, rowid",
            )
            .map_err(self.err())?;
        let rows = st.query_map([campaign], bounce_from).map_err(self.err())?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.err())
    }

    fn bounce_summary(&self, campaign: &str) -> Result<BounceSummary> {
        let mut s = BounceSummary::default();
        let mut st = self
            .conn
            .prepare(
                "SELECT kind, action, hard, status, COALESCE(diagnostic, reason), COUNT(*) FROM bounce
                 WHERE campaign = ?1 GROUP BY 1, 2, 3, 4, 5 ORDER BY 6 DESC, 5",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map([campaign], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, bool>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })
            .map_err(self.err())?;
        for row in rows {
            let (kind, action, hard, status, why, n) = row.map_err(self.err())?;
            s.add(&kind, &action, hard, &status, &why, n as u64);
        }
        Ok(s)
    }

    fn dump(&self) -> Result<Dump> {
        let e = self.err();
        let mut d = Dump::default();
        let mut st = self
            .conn
            .prepare("SELECT id, post, content_hash, columns, created_at, finished_at FROM campaign ORDER BY created_at, id")
            .map_err(&e)?;
        d.campaigns = st
            .query_map([], |r| {
                Ok(DumpCampaign {
                    id: r.get(0)?,
                    post: r.get(1)?,
                    content_hash: r.get(2)?,
                    columns: r.get(3)?,
                    created_at: r.get(4)?,
                    finished_at: r.get(5)?,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(&e)?;
        let mut st = self
            .conn
            .prepare(
                "SELECT campaign, seq, email, email_key, line, fields, state, attempts, reply, updated_at, seen, relay
                 FROM recipient ORDER BY campaign, seq",
            )
            .map_err(&e)?;
        d.recipients = st
            .query_map([], |r| {
                Ok(DumpRecipient {
                    campaign: r.get(0)?,
                    seq: r.get(1)?,
                    email: r.get(2)?,
                    email_key: r.get(3)?,
                    line: r.get(4)?,
                    fields: r.get(5)?,
                    state: r.get(6)?,
                    attempts: r.get(7)?,
                    reply: r.get(8)?,
                    updated_at: r.get(9)?,
                    seen: r.get(10)?,
                    relay: r.get(11)?,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(&e)?;
        d.suppressions = self.suppression_events()?;
        let mut st = self
            .conn
            .prepare("SELECT message_key, handled_at FROM intake ORDER BY handled_at")
            .map_err(&e)?;
        d.intake = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(&e)?;
        let mut st = self
            .conn
            .prepare("SELECT relay, day, used FROM relay_day ORDER BY day, relay")
            .map_err(&e)?;
        d.relay_days = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(|rows| rows.collect())
            .map_err(&e)?;
        let mut st = self
            .conn
            .prepare(
                "SELECT email_key, campaign, kind, status, hard, reason, diagnostic, action, message, at, rowid
                 FROM bounce ORDER BY at, rowid",
            )
            .map_err(&e)?;
        d.bounces = st
            .query_map([], |r| {
                Ok((format!("sqlite:{}", r.get::<_, i64>(10)?), bounce_from(r)?))
            })
            .and_then(|rows| rows.collect())
            .map_err(&e)?;
        Ok(d)
    }

    fn recipient_email(&self, campaign: &str, seq: i64) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT email FROM recipient WHERE campaign = ?1 AND seq = ?2",
                params![campaign, seq],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())
    }
}

/// Takes up to `t.want` of a relay's quota for the day inside `tx`.
fn take_in(tx: &rusqlite::Transaction<'_>, t: &QuotaTake) -> rusqlite::Result<u64> {
    let used: i64 = tx.query_row(
        "SELECT COALESCE((SELECT used FROM relay_day WHERE relay = ?1 AND day = ?2), 0)",
        params![t.relay, t.day],
        |r| r.get(0),
    )?;
    let got = (t.max as i64 - used).clamp(0, t.want as i64);
    if got > 0 {
        tx.execute(
            "INSERT INTO relay_day (relay, day, used) VALUES (?1, ?2, ?3)
             ON CONFLICT (relay, day) DO UPDATE SET used = used + excluded.used",
            params![t.relay, t.day, got],
        )?;
    }
    Ok(got as u64)
}

/// Writes rate marks inside `tx` (a mark's start, then its answer, by id)
/// and forgets what no window needs any more.
fn record_marks(tx: &rusqlite::Transaction<'_>, marks: &[RateMark]) -> rusqlite::Result<()> {
    if marks.is_empty() {
        return Ok(());
    }
    let mut st = tx.prepare_cached(
        "INSERT INTO rate_mark (id, key, answered_by, answered_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (id) DO UPDATE SET answered_at = COALESCE(excluded.answered_at, answered_at)",
    )?;
    let mut forget: Vec<(&str, f64)> = Vec::new();
    for m in marks {
        st.execute(params![m.id, m.key, m.answered_by, m.answered_at])?;
        match forget.iter_mut().find(|(k, _)| *k == m.key) {
            Some(f) => f.1 = f.1.max(m.forget_before),
            None => forget.push((&m.key, m.forget_before)),
        }
    }
    let mut del = tx.prepare_cached(
        "DELETE FROM rate_mark WHERE key = ?1 AND COALESCE(answered_at, answered_by) < ?2",
    )?;
    for (key, before) in forget {
        del.execute(params![key, before])?;
    }
    Ok(())
}

fn bounce_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<BounceEvent> {
    Ok(BounceEvent {
        email: r.get(0)?,
        campaign: r.get(1)?,
        kind: r.get(2)?,
        status: r.get(3)?,
        hard: r.get(4)?,
        reason: r.get(5)?,
        diagnostic: r.get(6)?,
        action: r.get(7)?,
        message: r.get(8)?,
        at: r.get(9)?,
    })
}

struct SqliteImport<'a> {
    tx: rusqlite::Transaction<'a>,
    path: PathBuf,
    campaign: String,
    /// The order a newly seen address gets.
    next_seq: i64,
    /// This import's mark on every address it finds on the list.
    generation: i64,
}

impl Import for SqliteImport<'_> {
    fn add(&mut self, email: &str, line: i64, values: &[String]) -> Result<()> {
        let fields = serde_json::to_string(values).expect("strings serialise");
        // Known by address: someone already in the campaign keeps their
        // place and state (nobody twice); their fields follow the list.
        // Someone removed or skipped earlier and listed again is pending.
        self.tx
            .prepare_cached(
                "INSERT INTO recipient (campaign, seq, email, email_key, line, fields, seen)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (campaign, email_key) DO UPDATE SET
                    email = excluded.email, line = excluded.line, fields = excluded.fields,
                    seen = excluded.seen,
                    state = CASE WHEN state IN ('removed', 'skipped') THEN 'pending' ELSE state END,
                    reply = CASE WHEN state IN ('removed', 'skipped') THEN NULL ELSE reply END",
            )
            .and_then(|mut st| {
                st.execute(params![
                    self.campaign,
                    self.next_seq,
                    email,
                    email.to_lowercase(),
                    line,
                    fields,
                    self.generation
                ])
            })
            .map_err(|e| db_error(&self.path, e))?;
        self.next_seq += 1;
        Ok(())
    }

    fn skip(&mut self, email: &str, why: &str) -> Result<()> {
        self.tx
            .prepare_cached(
                "UPDATE recipient SET state = CASE WHEN state IN ('pending', 'deferred', 'removed')
                    THEN 'skipped' ELSE state END,
                    reply = CASE WHEN state IN ('pending', 'deferred', 'removed') THEN ?3 ELSE reply END,
                    seen = ?4
                 WHERE campaign = ?1 AND email_key = ?2",
            )
            .and_then(|mut st| {
                st.execute(params![
                    self.campaign,
                    email.to_lowercase(),
                    why,
                    self.generation
                ])
            })
            .map_err(|e| db_error(&self.path, e))?;
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<u64> {
        let removed = self
            .tx
            .execute(
                "UPDATE recipient SET state = 'removed', reply = 'removed from the list'
                 WHERE campaign = ?1 AND state IN ('pending', 'deferred') AND seen != ?2",
                params![self.campaign, self.generation],
            )
            .map_err(|e| db_error(&self.path, e))?;
        self.tx.commit().map_err(|e| db_error(&self.path, e))?;
        Ok(removed as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{import, queued};

    fn store() -> (tempfile::TempDir, Sqlite) {
        let dir = tempfile::tempdir().unwrap();
        let s = Sqlite::open(dir.path()).unwrap();
        (dir, s)
    }

    /// Schema 4 kept one row per address; schema 5 keeps each as an event,
    /// and records the later ones beside it.
    #[test]
    fn a_schema_4_suppression_list_becomes_events() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = Connection::open(dir.path().join(FILE)).unwrap();
            c.execute_batch(
                "CREATE TABLE suppression (email_key TEXT PRIMARY KEY, reason TEXT NOT NULL,
                    added_at TEXT NOT NULL, source TEXT NOT NULL DEFAULT 'bounce', campaign TEXT);
                 INSERT INTO suppression VALUES ('ana@x.org', 'unsubscribed', '2026-01-01T00:00:00Z', 'one-click', 'c1');
                 INSERT INTO suppression VALUES ('bo@x.org', '550 5.1.1', '2026-01-02T00:00:00Z', 'bounce', 'c1');
                 PRAGMA user_version = 4;",
            )
            .unwrap();
        }
        let mut s = Sqlite::open(dir.path()).unwrap();
        let events = s.suppression_events().unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(
            (
                events[0].email.as_str(),
                events[0].source,
                events[0].campaign.as_deref()
            ),
            ("ana@x.org", Source::OneClick, Some("c1"))
        );
        assert_eq!(events[1].reason, "550 5.1.1");
        // A complaint after the old row is its own event now.
        s.suppress(&[Suppressed {
            email: "ana@x.org".into(),
            reason: "abuse".into(),
            source: Source::Complaint,
            campaign: Some("c1".into()),
            added_at: "2026-01-03T00:00:00Z".into(),
        }])
        .unwrap();
        assert!(s.unsuppress("ana@x.org", &[Source::OneClick]).unwrap());
        assert!(s.is_suppressed("ana@x.org").unwrap());
        let v: i64 = s
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
    }

    #[test]
    fn a_journal_of_the_first_release_is_upgraded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = Connection::open(dir.path().join(FILE)).unwrap();
            c.execute_batch(
                "CREATE TABLE campaign (id TEXT PRIMARY KEY, post TEXT NOT NULL, content_hash TEXT NOT NULL,
                    columns TEXT NOT NULL, created_at TEXT NOT NULL, finished_at TEXT);
                 CREATE TABLE recipient (campaign TEXT NOT NULL, seq INTEGER NOT NULL, email TEXT NOT NULL,
                    email_key TEXT NOT NULL, line INTEGER NOT NULL, fields TEXT NOT NULL,
                    state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0, reply TEXT,
                    updated_at TEXT, PRIMARY KEY (campaign, seq), UNIQUE (campaign, email_key));
                 CREATE TABLE suppression (email_key TEXT PRIMARY KEY, reason TEXT NOT NULL, added_at TEXT NOT NULL);
                 INSERT INTO suppression VALUES ('gone@x.org', '550 5.1.1 no such user', 'then');
                 INSERT INTO campaign VALUES ('c', 'p.md', 'h', '[]', 'then', NULL);
                 INSERT INTO recipient (campaign, seq, email, email_key, line, fields, state)
                    VALUES ('c', 2, 'a@x.org', 'a@x.org', 2, '[]', 'sent'),
                           ('c', 3, 'b@x.org', 'b@x.org', 3, '[]', 'pending');",
            )
            .unwrap();
        }
        let mut s = Sqlite::open(dir.path()).unwrap();
        assert_eq!(s.counts("c").unwrap().sent, 1);
        // Schema 4's column is there: nobody has a relay yet.
        assert!(s.relay_counts("c").unwrap().is_empty());
        // A re-import: row 2 is somebody new now, and is mailed.
        import(&mut s, &["new@x.org", "a@x.org", "b@x.org"]);
        assert_eq!(queued(&s), ["b@x.org", "new@x.org"]);
        // The first release's suppressions were hard bounces.
        let sup = s.suppressions().unwrap();
        assert_eq!(sup.len(), 1);
        assert_eq!(
            (sup[0].email.as_str(), sup[0].source),
            ("gone@x.org", Source::Bounce)
        );
    }

    #[test]
    fn a_journal_from_a_newer_herald_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = Connection::open(dir.path().join(FILE)).unwrap();
            c.pragma_update(None, "user_version", 99).unwrap();
        }
        let e = Sqlite::open(dir.path()).err().unwrap();
        assert!(e.message.contains("newer herald"), "{e}");
    }

    #[test]
    fn links_in_place_of_the_journal_or_a_lock_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("precious");
        std::fs::write(&target, "keep me").unwrap();
        let j = dir.path().join("j");
        std::fs::create_dir_all(j.join("locks")).unwrap();
        std::os::unix::fs::symlink(&target, j.join(FILE)).unwrap();
        let e = Sqlite::open(&j).err().unwrap();
        assert!(e.message.contains("symbolic link"), "{e}");
        std::fs::remove_file(j.join(FILE)).unwrap();
        let s = Sqlite::open(&j).unwrap();
        std::os::unix::fs::symlink(&target, j.join("locks/c.lock")).unwrap();
        assert!(s.lock("c").is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
    }

    #[test]
    fn a_rates_history_is_its_last_messages_and_a_killed_ones_latest_answer() {
        let (_d, mut s) = store();
        let mark = |id: i64, by: f64, at: Option<f64>| RateMark {
            id,
            key: "relay main".into(),
            answered_by: by,
            answered_at: at,
            forget_before: 0.0,
        };
        // Started (answered by 160 at the latest), then answered at 101.
        s.commit_batch("c", &[], &[mark(1, 160.0, None)], &[])
            .unwrap();
        s.commit_batch("c", &[], &[mark(1, 160.0, Some(101.0))], &[])
            .unwrap();
        // Answered at 102; and one whose run was killed while it was out.
        s.commit_batch(
            "c",
            &[],
            &[mark(2, 162.0, Some(102.0)), mark(3, 163.0, None)],
            &[],
        )
        .unwrap();
        assert_eq!(
            s.rate_history("relay main", 120.0, 10).unwrap(),
            [101.0, 102.0, 120.0]
        );
        assert_eq!(
            s.rate_history("relay main", 200.0, 2).unwrap(),
            [102.0, 163.0]
        );
        assert!(s.rate_history("relay other", 120.0, 10).unwrap().is_empty());
        // What no window needs any more is forgotten.
        let forget = RateMark {
            forget_before: 150.0,
            ..mark(4, 170.0, Some(110.0))
        };
        s.commit_batch("c", &[], &[forget], &[]).unwrap();
        assert_eq!(s.rate_history("relay main", 200.0, 10).unwrap(), [163.0]);
    }

    #[test]
    fn quota_taken_in_a_batch_counts_with_the_updates() {
        let (_d, mut s) = store();
        let take = |want| QuotaTake {
            relay: "main".into(),
            day: "2026-11-30".into(),
            want,
            max: 3,
        };
        assert_eq!(
            s.commit_batch("c", &[], &[], &[take(1), take(1)]).unwrap(),
            [1, 1]
        );
        assert_eq!(s.commit_batch("c", &[], &[], &[take(5)]).unwrap(), [1]);
        assert_eq!(s.commit_batch("c", &[], &[], &[take(1)]).unwrap(), [0]);
        assert_eq!(s.quota_used("main", "2026-11-30").unwrap(), 3);
    }

    #[test]
    fn a_campaign_lock_is_exclusive_until_dropped() {
        let (_d, s) = store();
        let first = s.lock("c@2025").unwrap();
        assert!(first.is_some());
        assert!(s.lock("c@2025").unwrap().is_none());
        assert!(s.lock("other").unwrap().is_some());
        drop(first);
        assert!(s.lock("c@2025").unwrap().is_some());
    }
}
