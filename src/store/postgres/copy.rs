//! A journal copied in, for `herald store migrate`: what is there already
//! wins, so a second copy adds only what is missing.

use postgres::Client;
use postgres::types::ToSql;

use super::intake::bounce_params;
use super::suppressions::insert_suppression;
use super::{Postgres, db_error};
use crate::store::{Dump, Result, rules};

impl Postgres {
    pub(super) fn load_all(&mut self, dump: &Dump) -> Result<()> {
        let target = self.target.clone();
        let e = |err| db_error(&target, err);
        let client = self.client.get_mut().unwrap_or_else(|p| p.into_inner());
        let mut tx = client.transaction().map_err(e)?;
        // What is already there wins: a second copy adds what is missing
        // and changes nothing else (senders may have moved on since).
        for c in &dump.campaigns {
            tx.execute(
                "INSERT INTO campaign (id, post, content_hash, columns, created_at, finished_at)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
                &[
                    &c.id,
                    &c.post,
                    &c.content_hash,
                    &c.columns,
                    &c.created_at,
                    &c.finished_at,
                ],
            )
            .map_err(e)?;
        }
        let st = tx
            .prepare(
                &format!(
                    "INSERT INTO recipient (campaign, seq, email, email_key, line, fields, state, attempts, reply, updated_at, seen, relay, waiting)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $7 IN ({})) ON CONFLICT DO NOTHING",
                    rules::sql(rules::queued(true))
                ),
            )
            .map_err(e)?;
        for r in &dump.recipients {
            let params: [&(dyn ToSql + Sync); 12] = [
                &r.campaign,
                &r.seq,
                &r.email,
                &r.email_key,
                &r.line,
                &r.fields,
                &r.state,
                &r.attempts,
                &r.reply,
                &r.updated_at,
                &r.seen,
                &r.relay,
            ];
            tx.execute(&st, &params).map_err(e)?;
        }
        for s in &dump.suppressions {
            insert_suppression(&mut tx, s).map_err(e)?;
        }
        for (key, at) in &dump.intake {
            tx.execute(
                "INSERT INTO intake (message_key, handled_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[key, at],
            )
            .map_err(e)?;
        }
        // A relay's quota used on a day: the larger count wins, so a copy
        // never gives a relay back what it already sent.
        for (relay, day, used) in &dump.relay_days {
            tx.execute(
                "INSERT INTO relay_day (relay, day, used) VALUES ($1, $2, $3)
                 ON CONFLICT (relay, day) DO UPDATE SET used = GREATEST(relay_day.used, excluded.used)",
                &[relay, day, used],
            )
            .map_err(e)?;
        }
        // Each bounce once, however often it is copied: by where it came from.
        for (origin, b) in &dump.bounces {
            let key = b.email.to_lowercase();
            let mut params = bounce_params(b, &key).to_vec();
            params.push(origin);
            tx.execute(
                "INSERT INTO bounce (email_key, campaign, kind, status, hard, reason, diagnostic, action, message, at, origin)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (origin) DO NOTHING",
                &params,
            )
            .map_err(e)?;
        }
        tx.commit().map_err(e)
    }
    pub(super) fn tally_all(&self, dump: &Dump) -> Result<super::Tally> {
        let mut c = self.client();
        let ids: Vec<&str> = dump.campaigns.iter().map(|c| c.id.as_str()).collect();
        let keys: Vec<&str> = dump.suppressions.iter().map(|s| s.email.as_str()).collect();
        let origins: Vec<&str> = dump.bounces.iter().map(|(o, _)| o.as_str()).collect();
        let one = |c: &mut Client, sql: &str, p: &[&(dyn ToSql + Sync)]| -> Result<u64> {
            let r = c.query_one(sql, p).map_err(self.err())?;
            Ok(r.get::<_, i64>(0) as u64)
        };
        Ok(super::Tally {
            campaigns: one(
                &mut c,
                "SELECT COUNT(*) FROM campaign WHERE id = ANY($1)",
                &[&ids],
            )?,
            recipients: one(
                &mut c,
                "SELECT COUNT(*) FROM recipient WHERE campaign = ANY($1)",
                &[&ids],
            )?,
            suppressions: one(
                &mut c,
                "SELECT COUNT(*) FROM suppression WHERE email_key = ANY($1)",
                &[&keys],
            )?,
            bounces: one(
                &mut c,
                "SELECT COUNT(*) FROM bounce WHERE origin = ANY($1)",
                &[&origins],
            )?,
        })
    }
}
