//! The suppression list on SQLite: every event kept, a trigger-written
//! log of additions for runs under way.

use rusqlite::{OptionalExtension, params};

use super::{Sqlite, db_error};
use crate::store::{Result, Source, Suppressed, Suppressions};

impl Suppressions for Sqlite {
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
}
