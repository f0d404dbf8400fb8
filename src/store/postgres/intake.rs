//! What `herald bounces` read, on PostgreSQL.

use postgres::types::ToSql;

use super::suppressions::insert_suppression;
use super::{Postgres, db_error};
use crate::clock;
use crate::store::{BounceEvent, BounceSummary, Intake, Result, Suppressed};

impl Intake for Postgres {
    fn message_handled(&self, key: &str) -> Result<bool> {
        let row = self
            .client()
            .query_opt("SELECT 1 FROM intake WHERE message_key = $1", &[&key])
            .map_err(self.err())?;
        Ok(row.is_some())
    }
    fn record_message(
        &mut self,
        key: &str,
        events: &[BounceEvent],
        suppress: &[Suppressed],
    ) -> Result<()> {
        let target = self.target.clone();
        let e = |err| db_error(&target, err);
        let client = self.client.get_mut().unwrap_or_else(|p| p.into_inner());
        let mut tx = client.transaction().map_err(e)?;
        // Two `herald bounces` over the same mailbox at once: the second
        // to get here sees the message handled and records nothing.
        let fresh = tx
            .execute(
                "INSERT INTO intake (message_key, handled_at) VALUES ($1, $2)
                 ON CONFLICT (message_key) DO NOTHING",
                &[&key, &clock::now().to_string()],
            )
            .map_err(e)?;
        if fresh == 0 {
            return tx.commit().map_err(e);
        }
        for b in events {
            insert_bounce(&mut tx, b).map_err(e)?;
        }
        for s in suppress {
            insert_suppression(&mut tx, s).map_err(e)?;
        }
        tx.commit().map_err(e)
    }
    fn soft_bounces(&self, email: &str, since: &str) -> Result<Vec<Option<String>>> {
        let rows = self
            .client()
            .query(
                "SELECT campaign FROM bounce WHERE email_key = $1 AND kind = 'bounce'
                 AND action = 'counted' AND at >= $2",
                &[&email.to_lowercase(), &since],
            )
            .map_err(self.err())?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }
    fn bounces(&self, campaign: &str) -> Result<Vec<BounceEvent>> {
        let rows = self
            .client()
            .query(
                "SELECT email_key, campaign, kind, status, hard, reason, diagnostic, action, message, at
                 FROM bounce WHERE campaign = $1 ORDER BY at, id",
                &[&campaign],
            )
            .map_err(self.err())?;
        Ok(rows.into_iter().map(|r| bounce_from(&r)).collect())
    }
    fn bounce_summary(&self, campaign: &str) -> Result<BounceSummary> {
        let rows = self
            .client()
            .query(
                "SELECT kind, action, hard, status, COALESCE(diagnostic, reason), COUNT(*) FROM bounce
                 WHERE campaign = $1 GROUP BY 1, 2, 3, 4, 5 ORDER BY 6 DESC, 5",
                &[&campaign],
            )
            .map_err(self.err())?;
        let mut s = BounceSummary::default();
        for r in rows {
            s.add(
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get::<_, i64>(5) as u64,
            );
        }
        Ok(s)
    }
}

/// A bounce's values in the order of the `bounce` table's columns.
pub(super) fn bounce_params<'a>(
    b: &'a BounceEvent,
    key: &'a String,
) -> [&'a (dyn ToSql + Sync); 10] {
    [
        key,
        &b.campaign,
        &b.kind,
        &b.status,
        &b.hard,
        &b.reason,
        &b.diagnostic,
        &b.action,
        &b.message,
        &b.at,
    ]
}

fn insert_bounce(
    tx: &mut postgres::Transaction<'_>,
    b: &BounceEvent,
) -> std::result::Result<u64, postgres::Error> {
    let key = b.email.to_lowercase();
    tx.execute(
        "INSERT INTO bounce (email_key, campaign, kind, status, hard, reason, diagnostic, action, message, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &bounce_params(b, &key),
    )
}

fn bounce_from(r: &postgres::Row) -> BounceEvent {
    BounceEvent {
        email: r.get(0),
        campaign: r.get(1),
        kind: r.get(2),
        status: r.get(3),
        hard: r.get(4),
        reason: r.get(5),
        diagnostic: r.get(6),
        action: r.get(7),
        message: r.get(8),
        at: r.get(9),
    }
}
