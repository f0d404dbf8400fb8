//! Daily quotas and the shared rate window on PostgreSQL, timed by the
//! database's clock so every sender sees the same one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use postgres::Client;

use super::{Conn, Postgres, Target, db_error};
use crate::config::Rate;
use crate::store::{RateGate, Rates, Result};

impl Rates for Postgres {
    fn take_quota(&mut self, relay: &str, day: &str, want: u64, max: u64) -> Result<u64> {
        // One statement, atomic against every other sender: the row lock
        // of the upsert orders them, and each sees the count the one
        // before it left.
        let (want, max) = (want as i64, max as i64);
        let mut c = self.client();
        let mut tx = c.transaction().map_err(self.err())?;
        tx.execute(
            "INSERT INTO relay_day (relay, day, used) VALUES ($1, $2, 0) ON CONFLICT (relay, day) DO NOTHING",
            &[&relay, &day],
        )
        .map_err(self.err())?;
        let used: i64 = tx
            .query_one(
                "SELECT used FROM relay_day WHERE relay = $1 AND day = $2 FOR UPDATE",
                &[&relay, &day],
            )
            .map_err(self.err())?
            .get(0);
        let got = (max - used).clamp(0, want);
        if got > 0 {
            tx.execute(
                "UPDATE relay_day SET used = used + $3 WHERE relay = $1 AND day = $2",
                &[&relay, &day, &got],
            )
            .map_err(self.err())?;
        }
        tx.commit().map_err(self.err())?;
        Ok(got as u64)
    }
    fn give_back_quota(&mut self, relay: &str, day: &str, n: u64) -> Result<()> {
        self.client()
            .execute(
                "UPDATE relay_day SET used = GREATEST(used - $3, 0) WHERE relay = $1 AND day = $2",
                &[&relay, &day, &(n as i64)],
            )
            .map_err(self.err())?;
        Ok(())
    }
    fn quota_used(&self, relay: &str, day: &str) -> Result<u64> {
        let rows = self
            .client()
            .query(
                "SELECT used FROM relay_day WHERE relay = $1 AND day = $2",
                &[&relay, &day],
            )
            .map_err(self.err())?;
        Ok(rows.first().map_or(0, |r| r.get::<_, i64>(0)).max(0) as u64)
    }
    fn rate_gate(&self, campaign: &str, rate: Rate) -> Result<Option<Arc<dyn RateGate>>> {
        Ok(Some(Arc::new(PgRate {
            client: Mutex::new(Conn::new(rate_connection(&self.target)?)),
            target: self.target.clone(),
            campaign: campaign.to_string(),
            sender: self.sender.clone(),
            rate,
        })))
    }
}

/// A connection for the shared rate. Its commits do not wait for the
/// disk: a slot lost in a database crash only lets a message go a little
/// sooner after the restart, while waiting for the disk on every message
/// would cap the rate far below what relays allow.
fn rate_connection(target: &Target) -> Result<Client> {
    let mut c = target.connect()?;
    c.batch_execute("SET synchronous_commit = off")
        .map_err(|e| db_error(target, e))?;
    Ok(c)
}

/// A relay's (or domain limit's) rate across all the senders.
struct PgRate {
    client: Mutex<Conn>,
    target: Target,
    campaign: String,
    sender: String,
    rate: Rate,
}

impl RateGate for PgRate {
    fn take(&self) -> Result<std::result::Result<i64, Duration>> {
        let mut c = self.client.lock().unwrap_or_else(|p| p.into_inner());
        let err = |e| db_error(&self.target, e);
        let take = c
            .prepared("SELECT slot, wait FROM herald_take_slot($1, $2, $3, $4)")
            .map_err(err)?;
        let row = c
            .query_one(
                &take,
                &[
                    &self.campaign,
                    &self.sender,
                    &(self.rate.max as i64),
                    &self.rate.window.as_secs_f64(),
                ],
            )
            .map_err(|e| db_error(&self.target, e))?;
        let slot: Option<i64> = row.get(0);
        let wait: f64 = row.get(1);
        Ok(match slot {
            Some(id) => Ok(id),
            None => Err(Duration::from_secs_f64(wait.clamp(0.001, 3600.0))),
        })
    }

    fn answered(&self, slot: i64) -> Result<()> {
        let mut c = self.client.lock().unwrap_or_else(|p| p.into_inner());
        let err = |e| db_error(&self.target, e);
        let answered = c
            .prepared("UPDATE rate_slot SET answered_at = clock_timestamp() WHERE id = $1")
            .map_err(err)?;
        c.execute(&answered, &[&slot]).map_err(err)?;
        Ok(())
    }
}
