//! What `herald report` reads on SQLite (see [`Figures`]).

use super::Sqlite;
use crate::store::figures::gather_domains;
use crate::store::{DomainCounts, Figures, MinuteCount, Result};

/// The part of `email_key` after its last `@` (SQLite has no "last
/// index of"): `rtrim` by every character but `@` leaves `local@`, and
/// what follows it is the domain, as [`crate::store::domain_of`] takes it.
const DOMAIN: &str = "substr(email_key, length(rtrim(email_key, replace(email_key, '@', ''))) + 1)";

impl Figures for Sqlite {
    fn sent_per_minute(&self, campaign: &str) -> Result<Vec<MinuteCount>> {
        // `updated_at` is RFC 3339 in UTC: its first 16 characters are
        // the minute.
        let mut st = self
            .conn
            .prepare(
                "SELECT relay, substr(updated_at, 1, 16) AS minute, COUNT(*) FROM recipient
                 WHERE campaign = ?1 AND state = 'sent' AND updated_at IS NOT NULL
                 GROUP BY minute, relay ORDER BY minute, relay",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map([campaign], |r| {
                Ok(MinuteCount {
                    relay: r.get(0)?,
                    minute: r.get(1)?,
                    sent: r.get(2)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.err())
    }
    fn domain_counts(&self, campaign: &str) -> Result<Vec<DomainCounts>> {
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT {DOMAIN} AS domain, state, COUNT(*) FROM recipient
                 WHERE campaign = ?1 GROUP BY domain, state"
            ))
            .map_err(self.err())?;
        let rows = st
            .query_map([campaign], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(self.err())?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.err())?;
        Ok(gather_domains(rows))
    }
}
