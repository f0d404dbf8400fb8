//! What `herald bounces` read, on SQLite.

use rusqlite::{OptionalExtension, params};

use super::{Sqlite, db_error};
use crate::clock;
use crate::store::{BounceEvent, BounceSummary, Intake, Result, Suppressed};

impl Intake for Sqlite {
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
}

pub(super) fn bounce_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<BounceEvent> {
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
