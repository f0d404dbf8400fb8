//! Rate marks and daily quotas on SQLite: a single sender's throttle
//! picks up where the last run left it.

use rusqlite::params;

use super::{Sqlite, db_error};
use crate::store::{QuotaTake, RateMark, Rates, Result};

impl Rates for Sqlite {
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
}

/// Takes up to `t.want` of a relay's quota for the day inside `tx`.
pub(super) fn take_in(tx: &rusqlite::Transaction<'_>, t: &QuotaTake) -> rusqlite::Result<u64> {
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
pub(super) fn record_marks(
    tx: &rusqlite::Transaction<'_>,
    marks: &[RateMark],
) -> rusqlite::Result<()> {
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
