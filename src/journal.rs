//! The journal: a SQLite file (`.herald/journal.db` by default) that records
//! every campaign and every recipient's state, so a send can stop at any
//! moment and continue later without mailing anyone twice or forgetting
//! anyone.
//!
//! A recipient is marked `sending` (committed to disk) before its message is
//! handed to the mail server, and `sent` after the server's 250. A crash in
//! between leaves it `sending`: its outcome is unknown, it is reported, and it
//! is not sent again unless asked (`--resend-unknown`). Each connection has at
//! most one message in `sending`, so the unknown set after a crash is at most
//! the number of connections.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::InputError;
use crate::clock;

pub const DEFAULT_DIR: &str = ".herald";

/// A recipient's state in a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    /// Handed to the server, no answer recorded: outcome unknown after a crash.
    Sending,
    Sent,
    /// Failed for now (4xx, timeouts) after the retries of a run; tried again next run.
    Deferred,
    /// Refused for good (5xx); never tried again.
    Failed,
    /// Left out: unsubscribed, bounced or suppressed since the campaign began.
    Skipped,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Sending => "sending",
            State::Sent => "sent",
            State::Deferred => "deferred",
            State::Failed => "failed",
            State::Skipped => "skipped",
        }
    }
}

/// A journaled recipient, with what is needed to build their message.
#[derive(Debug, Clone)]
pub struct Row {
    pub seq: i64,
    pub email: String,
    pub line: i64,
    pub values: Vec<String>,
    pub attempts: i64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub total: i64,
    pub pending: i64,
    /// Outcome unknown (left in `sending` by a crash or a kill).
    pub unknown: i64,
    pub sent: i64,
    pub deferred: i64,
    pub failed: i64,
    pub skipped: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CampaignInfo {
    pub id: String,
    pub post: String,
    pub created_at: String,
    pub finished_at: Option<String>,
    pub counts: Counts,
}

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub email: String,
    pub state: State,
    pub reply: Option<String>,
    pub attempts: i64,
}

pub struct Journal {
    conn: Connection,
    path: PathBuf,
}

fn db_error(path: &Path, e: rusqlite::Error) -> InputError {
    InputError::new(
        path,
        None,
        format!(
            "the journal cannot be used ({e}). Is the disk full, or is the file from another program?"
        ),
    )
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir`.
    pub fn open(dir: &Path) -> Result<Journal, InputError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            InputError::new(
                dir,
                None,
                format!("cannot create the journal folder ({e}); choose another with --journal"),
            )
        })?;
        let path = dir.join("journal.db");
        let conn = Connection::open(&path).map_err(|e| db_error(&path, e))?;
        let j = Journal { conn, path };
        j.setup().map_err(|e| db_error(&j.path, e))?;
        Ok(j)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn setup(&self) -> rusqlite::Result<()> {
        // WAL with synchronous=FULL: every commit is on disk before herald
        // goes on, so a `sending` mark exists before the message leaves.
        self.conn.pragma_update(None, "journal_mode", "WAL")?;
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        self.conn.busy_timeout(std::time::Duration::from_secs(10))?;
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
        )
    }

    /// The campaign's stored content hash, if the campaign exists.
    pub fn campaign_hash(&self, id: &str) -> Result<Option<String>, InputError> {
        self.conn
            .query_row(
                "SELECT content_hash FROM campaign WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| db_error(&self.path, e))
    }

    /// Creates the campaign, or updates its hash (after `--allow-changed`).
    pub fn upsert_campaign(
        &self,
        id: &str,
        post: &str,
        hash: &str,
        columns: &[String],
    ) -> Result<(), InputError> {
        let cols = serde_json::to_string(columns).expect("strings serialise");
        self.conn
            .execute(
                "INSERT INTO campaign (id, post, content_hash, columns, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(id) DO UPDATE SET content_hash = excluded.content_hash, post = excluded.post,
                    columns = excluded.columns",
                params![id, post, hash, cols, clock::now().to_string()],
            )
            .map_err(|e| db_error(&self.path, e))?;
        Ok(())
    }

    pub fn columns(&self, id: &str) -> Result<Vec<String>, InputError> {
        let cols: String = self
            .conn
            .query_row("SELECT columns FROM campaign WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .map_err(|e| db_error(&self.path, e))?;
        Ok(serde_json::from_str(&cols).unwrap_or_default())
    }

    /// Starts the list import; rows are added in one transaction.
    pub fn import(&mut self) -> Result<Import<'_>, InputError> {
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(|e| db_error(&path, e))?;
        Ok(Import { tx, path })
    }

    pub fn is_suppressed_key(&self, key: &str) -> Result<bool, InputError> {
        self.conn
            .query_row(
                "SELECT 1 FROM suppression WHERE email_key = ?1",
                [key],
                |_| Ok(()),
            )
            .optional()
            .map(|o| o.is_some())
            .map_err(|e| db_error(&self.path, e))
    }

    /// Every address suppressed by past hard bounces.
    pub fn suppressed(&self) -> Result<Vec<String>, InputError> {
        let mut st = self
            .conn
            .prepare("SELECT email_key FROM suppression")
            .map_err(|e| db_error(&self.path, e))?;
        let rows = st
            .query_map([], |r| r.get(0))
            .map_err(|e| db_error(&self.path, e))?;
        rows.collect::<rusqlite::Result<Vec<String>>>()
            .map_err(|e| db_error(&self.path, e))
    }

    /// Up to `limit` rows to send, after `after_seq`, in list order.
    /// `resend_unknown` includes rows left in `sending` by an earlier run.
    pub fn queue(
        &self,
        campaign: &str,
        after_seq: i64,
        limit: i64,
        resend_unknown: bool,
    ) -> Result<Vec<Row>, InputError> {
        let sql = if resend_unknown {
            "SELECT seq, email, line, fields, attempts FROM recipient
             WHERE campaign = ?1 AND seq > ?2 AND state IN ('pending', 'deferred', 'sending')
             ORDER BY seq LIMIT ?3"
        } else {
            "SELECT seq, email, line, fields, attempts FROM recipient
             WHERE campaign = ?1 AND seq > ?2 AND state IN ('pending', 'deferred')
             ORDER BY seq LIMIT ?3"
        };
        let mut st = self
            .conn
            .prepare_cached(sql)
            .map_err(|e| db_error(&self.path, e))?;
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
            .map_err(|e| db_error(&self.path, e))?;
        rows.collect::<rusqlite::Result<Vec<Row>>>()
            .map_err(|e| db_error(&self.path, e))
    }

    /// Applies state changes in one durable transaction (group commit).
    pub fn apply(&mut self, campaign: &str, updates: &[Update]) -> Result<(), InputError> {
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(|e| db_error(&path, e))?;
        {
            let now = clock::now().to_string();
            let mut st = tx
                .prepare_cached(
                    "UPDATE recipient SET state = ?3, reply = COALESCE(?4, reply), attempts = attempts + ?5,
                        updated_at = ?6 WHERE campaign = ?1 AND seq = ?2",
                )
                .map_err(|e| db_error(&path, e))?;
            let mut sup = tx
                .prepare_cached("INSERT OR IGNORE INTO suppression (email_key, reason, added_at) VALUES (?1, ?2, ?3)")
                .map_err(|e| db_error(&path, e))?;
            for u in updates {
                st.execute(params![
                    campaign,
                    u.seq,
                    u.state.as_str(),
                    u.reply,
                    u.attempts,
                    now
                ])
                .map_err(|e| db_error(&path, e))?;
                if let Some(key) = &u.suppress {
                    sup.execute(params![key, u.reply.as_deref().unwrap_or("refused"), now])
                        .map_err(|e| db_error(&path, e))?;
                }
            }
        }
        tx.commit().map_err(|e| db_error(&path, e))
    }

    pub fn counts(&self, campaign: &str) -> Result<Counts, InputError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT state, COUNT(*) FROM recipient WHERE campaign = ?1 GROUP BY state",
            )
            .map_err(|e| db_error(&self.path, e))?;
        let mut c = Counts::default();
        let rows = st
            .query_map([campaign], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .map_err(|e| db_error(&self.path, e))?;
        for row in rows {
            let (state, n) = row.map_err(|e| db_error(&self.path, e))?;
            c.total += n;
            match state.as_str() {
                "pending" => c.pending = n,
                "sending" => c.unknown = n,
                "sent" => c.sent = n,
                "deferred" => c.deferred = n,
                "failed" => c.failed = n,
                _ => c.skipped += n,
            }
        }
        Ok(c)
    }

    pub fn finish_if_done(&self, campaign: &str) -> Result<bool, InputError> {
        let c = self.counts(campaign)?;
        let done = c.pending == 0 && c.deferred == 0 && c.unknown == 0;
        if done {
            self.conn
                .execute(
                    "UPDATE campaign SET finished_at = COALESCE(finished_at, ?2) WHERE id = ?1",
                    params![campaign, clock::now().to_string()],
                )
                .map_err(|e| db_error(&self.path, e))?;
        }
        Ok(done)
    }

    pub fn is_finished(&self, campaign: &str) -> Result<bool, InputError> {
        self.conn
            .query_row(
                "SELECT finished_at IS NOT NULL FROM campaign WHERE id = ?1",
                [campaign],
                |r| r.get(0),
            )
            .optional()
            .map(|o| o.unwrap_or(false))
            .map_err(|e| db_error(&self.path, e))
    }

    pub fn campaigns(&self) -> Result<Vec<CampaignInfo>, InputError> {
        let mut st = self
            .conn
            .prepare("SELECT id, post, created_at, finished_at FROM campaign ORDER BY created_at")
            .map_err(|e| db_error(&self.path, e))?;
        let rows = st
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .map_err(|e| db_error(&self.path, e))?
            .collect::<rusqlite::Result<Vec<(String, String, String, Option<String>)>>>()
            .map_err(|e| db_error(&self.path, e))?;
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

    /// Recipients needing attention: failed, deferred, unknown.
    pub fn problems(&self, campaign: &str, limit: i64) -> Result<Vec<Problem>, InputError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT email, state, reply, attempts FROM recipient
                 WHERE campaign = ?1 AND state IN ('failed', 'deferred', 'sending') ORDER BY seq LIMIT ?2",
            )
            .map_err(|e| db_error(&self.path, e))?;
        let rows = st
            .query_map(params![campaign, limit], |r| {
                let state: String = r.get(1)?;
                Ok(Problem {
                    email: r.get(0)?,
                    state: match state.as_str() {
                        "failed" => State::Failed,
                        "deferred" => State::Deferred,
                        _ => State::Sending,
                    },
                    reply: r.get(2)?,
                    attempts: r.get(3)?,
                })
            })
            .map_err(|e| db_error(&self.path, e))?;
        rows.collect::<rusqlite::Result<Vec<Problem>>>()
            .map_err(|e| db_error(&self.path, e))
    }
}

impl std::fmt::Display for Problem {
    /// `failed    someone@example.org  550 5.1.1 No such user`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<9} {}  {}",
            self.state_label(),
            self.email,
            self.reply.as_deref().unwrap_or("")
        )
    }
}

impl Problem {
    pub fn state_label(&self) -> &'static str {
        match self.state {
            State::Failed => "failed",
            State::Deferred => "deferred",
            _ => "unknown",
        }
    }
}

/// One state change of one recipient.
#[derive(Debug, Clone)]
pub struct Update {
    pub seq: i64,
    pub state: State,
    pub reply: Option<String>,
    /// Attempts to add.
    pub attempts: i64,
    /// Add this address (lower-cased) to the suppression list.
    pub suppress: Option<String>,
}

pub struct Import<'a> {
    tx: rusqlite::Transaction<'a>,
    path: PathBuf,
}

impl Import<'_> {
    /// Adds a recipient unless the campaign already has them.
    pub fn add(
        &self,
        campaign: &str,
        seq: i64,
        email: &str,
        line: i64,
        values: &[String],
    ) -> Result<(), InputError> {
        let fields = serde_json::to_string(values).expect("strings serialise");
        self.tx
            .prepare_cached(
                "INSERT OR IGNORE INTO recipient (campaign, seq, email, email_key, line, fields) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut st| st.execute(params![campaign, seq, email, email.to_lowercase(), line, fields]))
            .map_err(|e| db_error(&self.path, e))?;
        Ok(())
    }

    /// Someone who left the list (unsubscribed, bounced) since the campaign
    /// began is not mailed; those already sent to stay as they are.
    pub fn skip(&self, campaign: &str, email: &str, why: &str) -> Result<(), InputError> {
        self.tx
            .prepare_cached(
                "UPDATE recipient SET state = 'skipped', reply = ?3 WHERE campaign = ?1 AND email_key = ?2
                 AND state IN ('pending', 'deferred')",
            )
            .and_then(|mut st| st.execute(params![campaign, email.to_lowercase(), why]))
            .map_err(|e| db_error(&self.path, e))?;
        Ok(())
    }

    pub fn commit(self) -> Result<(), InputError> {
        self.tx.commit().map_err(|e| db_error(&self.path, e))
    }
}
