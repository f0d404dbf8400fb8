//! The whole journal read out, for `herald store migrate`.

use super::Sqlite;
use super::intake::bounce_from;
use crate::store::{Dump, DumpCampaign, DumpRecipient, Result, Suppressions};

impl Sqlite {
    pub(super) fn dump_all(&self) -> Result<Dump> {
        let e = self.err();
        let mut d = Dump::default();
        let mut st = self
            .conn
            .prepare("SELECT id, post, content_hash, columns, created_at, finished_at FROM campaign ORDER BY created_at, id")
            .map_err(&e)?;
        d.campaigns = st
            .query_map([], |r| {
                Ok(DumpCampaign {
                    id: r.get(0)?,
                    post: r.get(1)?,
                    content_hash: r.get(2)?,
                    columns: r.get(3)?,
                    created_at: r.get(4)?,
                    finished_at: r.get(5)?,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(&e)?;
        let mut st = self
            .conn
            .prepare(
                "SELECT campaign, seq, email, email_key, line, fields, state, attempts, reply, updated_at, seen, relay
                 FROM recipient ORDER BY campaign, seq",
            )
            .map_err(&e)?;
        d.recipients = st
            .query_map([], |r| {
                Ok(DumpRecipient {
                    campaign: r.get(0)?,
                    seq: r.get(1)?,
                    email: r.get(2)?,
                    email_key: r.get(3)?,
                    line: r.get(4)?,
                    fields: r.get(5)?,
                    state: r.get(6)?,
                    attempts: r.get(7)?,
                    reply: r.get(8)?,
                    updated_at: r.get(9)?,
                    seen: r.get(10)?,
                    relay: r.get(11)?,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(&e)?;
        d.suppressions = self.suppression_events()?;
        let mut st = self
            .conn
            .prepare("SELECT message_key, handled_at FROM intake ORDER BY handled_at")
            .map_err(&e)?;
        d.intake = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(&e)?;
        let mut st = self
            .conn
            .prepare("SELECT relay, day, used FROM relay_day ORDER BY day, relay")
            .map_err(&e)?;
        d.relay_days = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(|rows| rows.collect())
            .map_err(&e)?;
        let mut st = self
            .conn
            .prepare(
                "SELECT email_key, campaign, kind, status, hard, reason, diagnostic, action, message, at, rowid
                 FROM bounce ORDER BY at, rowid",
            )
            .map_err(&e)?;
        d.bounces = st
            .query_map([], |r| {
                Ok((format!("sqlite:{}", r.get::<_, i64>(10)?), bounce_from(r)?))
            })
            .and_then(|rows| rows.collect())
            .map_err(&e)?;
        Ok(d)
    }
}
