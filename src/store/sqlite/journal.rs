//! The journal role on SQLite: campaigns, the list brought in, the queue
//! and each recipient's state marks.

use std::path::PathBuf;
use std::sync::LazyLock;

use rusqlite::{OptionalExtension, params};

use super::{Sqlite, db_error};
use crate::clock;
use crate::store::{
    CampaignInfo, Counts, Import, Journal, Problem, RecipientRecord, RelayCounts, Result, Row,
    State, Store, Update, rules,
};

impl Journal for Sqlite {
    fn campaign_hash(&self, id: &str) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT content_hash FROM campaign WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())
    }
    fn upsert_campaign(
        &mut self,
        id: &str,
        post: &str,
        hash: &str,
        columns: &[String],
    ) -> Result<()> {
        let cols = serde_json::to_string(columns).expect("strings serialise");
        self.conn
            .execute(
                "INSERT INTO campaign (id, post, content_hash, columns, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(id) DO UPDATE SET content_hash = excluded.content_hash, post = excluded.post,
                    columns = excluded.columns",
                params![id, post, hash, cols, clock::now().to_string()],
            )
            .map_err(self.err())?;
        Ok(())
    }
    fn import<'a>(&'a mut self, campaign: &str) -> Result<Box<dyn Import + 'a>> {
        let path = self.path.clone();
        // Under the write lock from the start: this reads before it writes,
        // and a deferred transaction that another writer (`herald serve`
        // taking an unsubscribe) overtakes in between fails at once with
        // "database is locked" instead of waiting its turn.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| db_error(&path, e))?;
        let (next_seq, generation): (i64, i64) = tx
            .query_row(
                "SELECT COALESCE(MAX(seq), 0) + 1, COALESCE(MAX(seen), 0) + 1 FROM recipient WHERE campaign = ?1",
                [campaign],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| db_error(&path, e))?;
        Ok(Box::new(SqliteImport {
            tx,
            path,
            campaign: campaign.to_string(),
            next_seq,
            generation,
        }))
    }
    fn queue(
        &self,
        campaign: &str,
        after_seq: i64,
        limit: i64,
        resend_unknown: bool,
    ) -> Result<Vec<Row>> {
        let sql = if resend_unknown {
            &*QUEUE_WITH_UNKNOWN
        } else {
            &*QUEUE
        };
        let mut st = self.conn.prepare_cached(sql).map_err(self.err())?;
        let rows = st
            .query_map(params![campaign, after_seq, limit], |r| {
                let fields: String = r.get(3)?;
                Ok(Row {
                    seq: r.get(0)?,
                    email: r.get(1)?,
                    line: r.get(2)?,
                    values: serde_json::from_str(&fields).unwrap_or_default(),
                    attempts: r.get(4)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<Vec<Row>>>()
            .map_err(self.err())
    }
    fn apply(&mut self, campaign: &str, updates: &[Update]) -> Result<()> {
        self.commit_batch(campaign, updates, &[], &[]).map(|_| ())
    }
    fn counts(&self, campaign: &str) -> Result<Counts> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT state, COUNT(*) FROM recipient WHERE campaign = ?1 GROUP BY state",
            )
            .map_err(self.err())?;
        let mut c = Counts::default();
        let rows = st
            .query_map([campaign], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .map_err(self.err())?;
        for row in rows {
            let (state, n) = row.map_err(self.err())?;
            c.add(&state, n);
        }
        Ok(c)
    }
    fn relay_counts(&self, campaign: &str) -> Result<Vec<RelayCounts>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT relay, state, COUNT(*) FROM recipient WHERE campaign = ?1 AND relay IS NOT NULL
                 GROUP BY relay, state",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map([campaign], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(self.err())?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.err())?;
        Ok(RelayCounts::gather(rows))
    }
    fn finish_if_done(&mut self, campaign: &str) -> Result<bool> {
        let c = self.counts(campaign)?;
        let done = c.is_done();
        if done {
            self.conn
                .execute(
                    "UPDATE campaign SET finished_at = COALESCE(finished_at, ?2) WHERE id = ?1",
                    params![campaign, clock::now().to_string()],
                )
                .map_err(self.err())?;
        }
        Ok(done)
    }
    fn is_finished(&self, campaign: &str) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT finished_at IS NOT NULL FROM campaign WHERE id = ?1",
                [campaign],
                |r| r.get(0),
            )
            .optional()
            .map(|o| o.unwrap_or(false))
            .map_err(self.err())
    }
    fn campaigns(&self) -> Result<Vec<CampaignInfo>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT id, post, created_at, finished_at FROM campaign ORDER BY created_at, id",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .map_err(self.err())?
            .collect::<rusqlite::Result<Vec<(String, String, String, Option<String>)>>>()
            .map_err(self.err())?;
        rows.into_iter()
            .map(|(id, post, created_at, finished_at)| {
                let counts = self.counts(&id)?;
                Ok(CampaignInfo {
                    id,
                    post,
                    created_at,
                    finished_at,
                    counts,
                })
            })
            .collect()
    }
    fn problems(&self, campaign: &str, limit: i64) -> Result<Vec<Problem>> {
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT email, state, reply, attempts, line FROM recipient
                 WHERE campaign = ?1 AND state IN ({}) ORDER BY seq LIMIT ?2",
                rules::sql(&rules::PROBLEMS)
            ))
            .map_err(self.err())?;
        let rows = st
            .query_map(params![campaign, limit], |r| {
                let state: String = r.get(1)?;
                Ok(Problem {
                    email: r.get(0)?,
                    state: State::parse(&state).unwrap_or(State::Sending),
                    reply: r.get(2)?,
                    attempts: r.get(3)?,
                    line: r.get(4)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<Vec<Problem>>>()
            .map_err(self.err())
    }
    fn recipient_email(&self, campaign: &str, seq: i64) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT email FROM recipient WHERE campaign = ?1 AND seq = ?2",
                params![campaign, seq],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())
    }
    fn recipients(&self, campaign: &str) -> Result<Vec<RecipientRecord>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT email, state, attempts, reply, updated_at FROM recipient
                 WHERE campaign = ?1 ORDER BY seq",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map([campaign], |r| {
                let state: String = r.get(1)?;
                Ok(RecipientRecord {
                    email: r.get(0)?,
                    state: State::parse(&state).unwrap_or(State::Sending),
                    attempts: r.get(2)?,
                    reply: r.get(3)?,
                    updated_at: r.get(4)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.err())
    }
}

/// Who a run mails next (see [`rules::queued`]).
static QUEUE: LazyLock<String> = LazyLock::new(|| queue_sql(false));
static QUEUE_WITH_UNKNOWN: LazyLock<String> = LazyLock::new(|| queue_sql(true));

fn queue_sql(resend_unknown: bool) -> String {
    format!(
        "SELECT seq, email, line, fields, attempts FROM recipient
         WHERE campaign = ?1 AND seq > ?2 AND state IN ({})
         ORDER BY seq LIMIT ?3",
        rules::sql(rules::queued(resend_unknown))
    )
}

/// Someone on the list (see [`rules::LISTED_AGAIN`]).
static ADD: LazyLock<String> = LazyLock::new(|| {
    let again = rules::sql(&rules::LISTED_AGAIN);
    format!(
        "INSERT INTO recipient (campaign, seq, email, email_key, line, fields, seen)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (campaign, email_key) DO UPDATE SET
            email = excluded.email, line = excluded.line, fields = excluded.fields,
            seen = excluded.seen,
            state = CASE WHEN state IN ({again}) THEN 'pending' ELSE state END,
            reply = CASE WHEN state IN ({again}) THEN NULL ELSE reply END"
    )
});

/// Someone left out now (see [`rules::SKIPPABLE`]).
static SKIP: LazyLock<String> = LazyLock::new(|| {
    let skippable = rules::sql(&rules::SKIPPABLE);
    format!(
        "UPDATE recipient SET state = CASE WHEN state IN ({skippable})
            THEN 'skipped' ELSE state END,
            reply = CASE WHEN state IN ({skippable}) THEN ?3 ELSE reply END,
            seen = ?4
         WHERE campaign = ?1 AND email_key = ?2"
    )
});

/// The end of an import (see [`rules::REMOVABLE`]).
static REMOVE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE recipient SET state = 'removed', reply = '{}'
         WHERE campaign = ?1 AND state IN ({}) AND seen != ?2",
        rules::REMOVED_REPLY,
        rules::sql(&rules::REMOVABLE)
    )
});

struct SqliteImport<'a> {
    tx: rusqlite::Transaction<'a>,
    path: PathBuf,
    campaign: String,
    /// The order a newly seen address gets.
    next_seq: i64,
    /// This import's mark on every address it finds on the list.
    generation: i64,
}

impl Import for SqliteImport<'_> {
    fn add(&mut self, email: &str, line: i64, values: &[String]) -> Result<()> {
        let fields = serde_json::to_string(values).expect("strings serialise");
        // Known by address: someone already in the campaign keeps their
        // place and state (nobody twice); their fields follow the list.
        // Someone removed or skipped earlier and listed again is pending.
        self.tx
            .prepare_cached(&ADD)
            .and_then(|mut st| {
                st.execute(params![
                    self.campaign,
                    self.next_seq,
                    email,
                    email.to_lowercase(),
                    line,
                    fields,
                    self.generation
                ])
            })
            .map_err(|e| db_error(&self.path, e))?;
        self.next_seq += 1;
        Ok(())
    }

    fn skip(&mut self, email: &str, why: &str) -> Result<()> {
        self.tx
            .prepare_cached(&SKIP)
            .and_then(|mut st| {
                st.execute(params![
                    self.campaign,
                    email.to_lowercase(),
                    why,
                    self.generation
                ])
            })
            .map_err(|e| db_error(&self.path, e))?;
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<u64> {
        let removed = self
            .tx
            .execute(&REMOVE, params![self.campaign, self.generation])
            .map_err(|e| db_error(&self.path, e))?;
        self.tx.commit().map_err(|e| db_error(&self.path, e))?;
        Ok(removed as u64)
    }
}
