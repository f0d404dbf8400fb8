//! The journal's schema: made on first open, upgraded in place from any
//! earlier release's, refused when a newer herald wrote it.

use super::Sqlite;

/// The schema this herald writes. Version 0 is the first release's (no
/// `seen` column); it is upgraded in place on open.
pub(super) const SCHEMA_VERSION: i64 = 5;

/// Why the journal could not be set up.
pub(super) enum Setup {
    Db(rusqlite::Error),
    /// A newer herald wrote it (its schema version).
    Newer(i64),
}

impl From<rusqlite::Error> for Setup {
    fn from(e: rusqlite::Error) -> Setup {
        Setup::Db(e)
    }
}

/// SQLite's page cache per connection, in KiB.
const CACHE_KIB: i64 = 256;

impl Sqlite {
    pub(super) fn setup(
        &self,
        synchronous: &str,
        journal_mode: &str,
    ) -> std::result::Result<(), Setup> {
        self.conn
            .pragma_update(None, "journal_mode", journal_mode)?;
        self.conn.pragma_update(None, "synchronous", synchronous)?;
        // SQLite's default page cache is 2 MB per connection, and a
        // 100,000-recipient journal fills it: a tenth of the memory of a
        // whole send. Pages it misses are read from the system's file
        // cache (a copy, not a disk read), and the journal is written in
        // batches, so a small cache costs little time.
        self.conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
        // Another herald (a status, a dry run reading the suppression list)
        // may hold the file for a moment.
        self.conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(Setup::Newer(version));
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
        Ok(upgraded?)
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
