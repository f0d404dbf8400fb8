//! What `herald report` reads on PostgreSQL (see [`Figures`]).

use super::Postgres;
use crate::store::figures::gather_domains;
use crate::store::{DomainCounts, Figures, MinuteCount, Result};

impl Figures for Postgres {
    fn sent_per_minute(&self, campaign: &str) -> Result<Vec<MinuteCount>> {
        // `updated_at` is RFC 3339 text in UTC, as on SQLite: its first 16
        // characters are the minute.
        let rows = self
            .client()
            .query(
                "SELECT relay, substr(updated_at, 1, 16) AS minute, COUNT(*) FROM recipient
                 WHERE campaign = $1 AND state = 'sent' AND updated_at IS NOT NULL
                 GROUP BY minute, relay ORDER BY minute, relay",
                &[&campaign],
            )
            .map_err(self.err())?;
        Ok(rows
            .into_iter()
            .map(|r| MinuteCount {
                relay: r.get(0),
                minute: r.get(1),
                sent: r.get(2),
            })
            .collect())
    }
    fn domain_counts(&self, campaign: &str) -> Result<Vec<DomainCounts>> {
        // After the last `@`, as [`crate::store::domain_of`] takes it.
        let rows = self
            .client()
            .query(
                "SELECT substring(email_key from '[^@]*$') AS domain, state, COUNT(*) FROM recipient
                 WHERE campaign = $1 GROUP BY domain, state",
                &[&campaign],
            )
            .map_err(self.err())?;
        Ok(gather_domains(
            rows.into_iter().map(|r| (r.get(0), r.get(1), r.get(2))),
        ))
    }
}
