//! The suppression list on PostgreSQL: every event kept, a trigger-written
//! log of additions that every host's run under way reads.

use super::{Postgres, db_error};
use crate::store::{Result, Source, Suppressed, Suppressions};

impl Suppressions for Postgres {
    fn suppressed(&self) -> Result<Vec<String>> {
        let rows = self
            .client()
            .query("SELECT DISTINCT email_key FROM suppression", &[])
            .map_err(self.err())?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }
    fn is_suppressed(&self, email: &str) -> Result<bool> {
        let row = self
            .client()
            .query_opt(
                "SELECT 1 FROM suppression WHERE email_key = $1 LIMIT 1",
                &[&email.to_lowercase()],
            )
            .map_err(self.err())?;
        Ok(row.is_some())
    }
    fn suppression_mark(&self) -> Result<i64> {
        let row = self
            .client()
            .query_one("SELECT COALESCE(MAX(id), 0) FROM suppression_log", &[])
            .map_err(self.err())?;
        Ok(row.get(0))
    }
    fn suppressed_after(&self, mark: i64) -> Result<Vec<(i64, String)>> {
        let rows = self
            .client()
            .query(
                "SELECT id, email_key FROM suppression_log WHERE id > $1 ORDER BY id",
                &[&mark],
            )
            .map_err(self.err())?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }
    fn suppress(&mut self, entries: &[Suppressed]) -> Result<u64> {
        let target = self.target.clone();
        let e = |err| db_error(&target, err);
        let client = self.client.get_mut().unwrap_or_else(|p| p.into_inner());
        let mut tx = client.transaction().map_err(e)?;
        let was = tx
            .prepare("SELECT 1 FROM suppression WHERE email_key = $1 LIMIT 1")
            .map_err(e)?;
        let mut added = 0;
        for s in entries {
            let before = tx
                .query_opt(&was, &[&s.email.to_lowercase()])
                .map_err(e)?
                .is_some();
            if insert_suppression(&mut tx, s).map_err(e)? > 0 && !before {
                added += 1;
            }
        }
        tx.commit().map_err(e)?;
        Ok(added)
    }
    fn unsuppress(&mut self, email: &str, sources: &[Source]) -> Result<bool> {
        let key = email.to_lowercase();
        let n = if sources.is_empty() {
            self.client()
                .execute("DELETE FROM suppression WHERE email_key = $1", &[&key])
        } else {
            let list: Vec<&str> = sources.iter().map(|s| s.as_str()).collect();
            self.client().execute(
                "DELETE FROM suppression WHERE email_key = $1 AND source = ANY($2)",
                &[&key, &list],
            )
        };
        n.map(|n| n > 0).map_err(self.err())
    }
    fn suppression_events(&self) -> Result<Vec<Suppressed>> {
        let rows = self
            .client()
            .query(
                "SELECT email_key, reason, source, campaign, added_at FROM suppression
                 ORDER BY added_at, email_key, id",
                &[],
            )
            .map_err(self.err())?;
        Ok(rows
            .into_iter()
            .map(|r| Suppressed {
                email: r.get(0),
                reason: r.get(1),
                source: Source::parse(r.get(2)).unwrap_or(Source::Manual),
                campaign: r.get(3),
                added_at: r.get(4),
            })
            .collect())
    }
}

pub(super) fn insert_suppression(
    tx: &mut postgres::Transaction<'_>,
    s: &Suppressed,
) -> std::result::Result<u64, postgres::Error> {
    tx.execute(
        "INSERT INTO suppression (email_key, reason, added_at, source, campaign)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        &[
            &s.email.to_lowercase(),
            &s.reason,
            &s.added_at,
            &s.source.as_str(),
            &s.campaign,
        ],
    )
}
