//! The journal role on PostgreSQL: campaigns, the list brought in, the
//! queue (each row taken is claimed by this sender) and the state marks.

use postgres::types::{ToSql, Type};

use std::sync::LazyLock;

use super::{Postgres, Target, db_error};
use crate::clock;
use crate::store::{
    CampaignInfo, Counts, Fault, Import, Journal, Problem, RecipientRecord, RelayCounts, Result,
    Row, State, StoreError, Update, rules,
};

/// A campaign's recipients held for an import, for one transaction: the
/// writer's side of a reader-writer lock whose readers are the claims and
/// state changes (`herald_claim`, `herald_apply` take it shared, same key).
/// Senders starting together import the same list one after the other
/// (each new address needs the next number), and an import touches every
/// row: without it a claim would skip the rows being imported and take
/// the campaign for done, and a state change could deadlock with it.
fn import_lock(
    tx: &mut postgres::Transaction<'_>,
    campaign: &str,
) -> std::result::Result<(), postgres::Error> {
    // Typed, here and in what a send does before its first claim: the
    // statement goes with its parameters' types, one round trip instead
    // of two (a prepare, then the run).
    tx.execute_typed(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 726561))",
        &[(&campaign, Type::TEXT)],
    )
    .map(|_| ())
}

impl Journal for Postgres {
    fn campaign_hash(&self, id: &str) -> Result<Option<String>> {
        let row = self
            .client()
            .query_typed_opt(
                "SELECT content_hash FROM campaign WHERE id = $1",
                &[(&id, Type::TEXT)],
            )
            .map_err(self.err())?;
        Ok(row.map(|r| r.get(0)))
    }
    fn upsert_campaign(
        &mut self,
        id: &str,
        post: &str,
        hash: &str,
        columns: &[String],
    ) -> Result<()> {
        let cols = serde_json::to_string(columns).expect("strings serialise");
        let now = clock::now().to_string();
        self.client()
            .execute_typed(
                "INSERT INTO campaign (id, post, content_hash, columns, created_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (id) DO UPDATE SET content_hash = excluded.content_hash, post = excluded.post,
                    columns = excluded.columns",
                &[
                    (&id, Type::TEXT),
                    (&post, Type::TEXT),
                    (&hash, Type::TEXT),
                    (&cols, Type::TEXT),
                    (&now, Type::TEXT),
                ],
            )
            .map_err(self.err())?;
        Ok(())
    }
    fn import<'a>(&'a mut self, campaign: &str) -> Result<Box<dyn Import + 'a>> {
        let target = self.target.clone();
        let client = self.client.get_mut().unwrap_or_else(|p| p.into_inner());
        let e = |err| db_error(&target, err);
        let mut tx = client.transaction().map_err(e)?;
        import_lock(&mut tx, campaign).map_err(e)?;
        let row = tx
            .query_typed_one(
                "SELECT COALESCE(MAX(seq), 0) + 1, COALESCE(MAX(seen), 0) + 1 FROM recipient WHERE campaign = $1",
                &[(&campaign, Type::TEXT)],
            )
            .map_err(e)?;
        let next_seq: i64 = row.get(0);
        Ok(Box::new(PgImport {
            tx,
            target,
            campaign: campaign.to_string(),
            next_seq,
            generation: row.get(1),
            chunk: Chunk::default(),
            // A campaign new to the database: its people are copied in.
            copy: next_seq == 1,
        }))
    }
    fn queue(
        &self,
        campaign: &str,
        after_seq: i64,
        limit: i64,
        resend_unknown: bool,
    ) -> Result<Vec<Row>> {
        // A claim: the rows are this sender's until it dies or lets go
        // (`herald_claim`: one round trip, waiting for an import under way).
        let states: Vec<&str> = rules::queued(resend_unknown)
            .iter()
            .map(|s| s.as_str())
            .collect();
        let mut c = self.client();
        let claim = c
            .prepared(
                "SELECT seq, email, line, fields, attempts FROM herald_claim($1, $2, $3, $4, $5)",
            )
            .map_err(self.err())?;
        let rows = c
            .query(
                &claim,
                &[&campaign, &after_seq, &limit, &states, &self.sender],
            )
            .map_err(self.err())?;
        let mut out: Vec<Row> = rows
            .into_iter()
            .map(|r| {
                let fields: String = r.get(3);
                Row {
                    seq: r.get(0),
                    email: r.get(1),
                    line: r.get(2),
                    values: serde_json::from_str(&fields).unwrap_or_default(),
                    attempts: r.get(4),
                }
            })
            .collect();
        out.sort_by_key(|r| r.seq);
        Ok(out)
    }
    fn apply(&mut self, campaign: &str, updates: &[Update]) -> Result<()> {
        if updates.is_empty() {
            return Ok(());
        }
        let merged = rules::merge_updates(updates);
        let now = clock::now().to_string();
        let seqs: Vec<i64> = merged.iter().map(|u| u.seq).collect();
        let states: Vec<&str> = merged.iter().map(|u| u.state.as_str()).collect();
        let replies: Vec<Option<String>> = merged.iter().map(|u| u.reply.clone()).collect();
        let attempts: Vec<i64> = merged.iter().map(|u| u.attempts).collect();
        let relays: Vec<Option<String>> = merged.iter().map(|u| u.relay.clone()).collect();
        let marks = merged.iter().filter(|u| u.state == State::Sending).count();
        let target = self.target.clone();
        let e = |err| db_error(&target, err);
        let sender = self.sender.clone();
        let client = self.client.get_mut().unwrap_or_else(|p| p.into_inner());
        let call = client
            .prepared("SELECT herald_apply($1, $2, $3, $4, $5, $6, $7, $8, $9)")
            .map_err(e)?;
        let lost = |err: postgres::Error| {
            if err.code().is_some_and(|c| c.code() == "HC001") {
                StoreError::new(&target.shown, Fault::ClaimLost)
            } else {
                db_error(&target, err)
            }
        };
        let marks = marks as i64;
        let params: [&(dyn ToSql + Sync); 9] = [
            &campaign, &now, &seqs, &states, &replies, &attempts, &sender, &marks, &relays,
        ];
        // One call for the whole group commit (see `herald_apply`): one
        // round trip, one wait for the disk.
        if updates.iter().all(|u| u.suppress.is_none()) {
            client.query_one(&call, &params).map_err(lost)?;
            return Ok(());
        }
        let mut tx = client.transaction().map_err(e)?;
        tx.query_one(&call, &params).map_err(lost)?;
        for u in updates {
            if let Some(key) = &u.suppress {
                tx.execute(
                    "INSERT INTO suppression (email_key, reason, added_at, source, campaign)
                     VALUES ($1, $2, $3, 'bounce', $4) ON CONFLICT DO NOTHING",
                    &[key, &u.suppression_reason(), &now, &campaign],
                )
                .map_err(e)?;
            }
        }
        tx.commit().map_err(e)
    }
    fn counts(&self, campaign: &str) -> Result<Counts> {
        let rows = self
            .client()
            .query(
                "SELECT state, COUNT(*) FROM recipient WHERE campaign = $1 GROUP BY state",
                &[&campaign],
            )
            .map_err(self.err())?;
        let mut c = Counts::default();
        for r in rows {
            let (state, n): (String, i64) = (r.get(0), r.get(1));
            c.add(&state, n);
        }
        Ok(c)
    }
    fn relay_counts(&self, campaign: &str) -> Result<Vec<RelayCounts>> {
        let rows = self
            .client()
            .query(
                "SELECT relay, state, COUNT(*) FROM recipient WHERE campaign = $1 AND relay IS NOT NULL
                 GROUP BY relay, state",
                &[&campaign],
            )
            .map_err(self.err())?;
        Ok(RelayCounts::gather(
            rows.into_iter().map(|r| (r.get(0), r.get(1), r.get(2))),
        ))
    }
    fn finish_if_done(&mut self, campaign: &str) -> Result<bool> {
        let c = self.counts(campaign)?;
        let done = c.is_done();
        if done {
            let now = clock::now().to_string();
            self.client()
                .execute(
                    "UPDATE campaign SET finished_at = COALESCE(finished_at, $2) WHERE id = $1",
                    &[&campaign, &now],
                )
                .map_err(self.err())?;
        }
        Ok(done)
    }
    fn is_finished(&self, campaign: &str) -> Result<bool> {
        let row = self
            .client()
            .query_typed_opt(
                "SELECT finished_at IS NOT NULL FROM campaign WHERE id = $1",
                &[(&campaign, Type::TEXT)],
            )
            .map_err(self.err())?;
        Ok(row.is_some_and(|r| r.get(0)))
    }
    fn campaigns(&self) -> Result<Vec<CampaignInfo>> {
        let rows = self
            .client()
            .query(
                "SELECT id, post, created_at, finished_at FROM campaign ORDER BY created_at, id",
                &[],
            )
            .map_err(self.err())?;
        rows.into_iter()
            .map(|r| {
                let id: String = r.get(0);
                let counts = self.counts(&id)?;
                Ok(CampaignInfo {
                    id,
                    post: r.get(1),
                    created_at: r.get(2),
                    finished_at: r.get(3),
                    counts,
                })
            })
            .collect()
    }
    fn problems(&self, campaign: &str, limit: i64) -> Result<Vec<Problem>> {
        let rows = self
            .client()
            .query(
                &format!(
                    "SELECT email, state, reply, attempts, line FROM recipient
                     WHERE campaign = $1 AND state IN ({}) ORDER BY seq LIMIT $2",
                    rules::sql(&rules::PROBLEMS)
                ),
                &[&campaign, &limit],
            )
            .map_err(self.err())?;
        Ok(rows
            .into_iter()
            .map(|r| Problem {
                email: r.get(0),
                state: State::parse(r.get(1)).unwrap_or(State::Sending),
                reply: r.get(2),
                attempts: r.get(3),
                line: r.get(4),
            })
            .collect())
    }
    fn recipient_email(&self, campaign: &str, seq: i64) -> Result<Option<String>> {
        let row = self
            .client()
            .query_opt(
                "SELECT email FROM recipient WHERE campaign = $1 AND seq = $2",
                &[&campaign, &seq],
            )
            .map_err(self.err())?;
        Ok(row.map(|r| r.get(0)))
    }
    fn recipients(&self, campaign: &str) -> Result<Vec<RecipientRecord>> {
        let rows = self
            .client()
            .query(
                "SELECT email, state, attempts, reply, updated_at FROM recipient
                 WHERE campaign = $1 ORDER BY seq",
                &[&campaign],
            )
            .map_err(self.err())?;
        Ok(rows
            .into_iter()
            .map(|r| RecipientRecord {
                email: r.get(0),
                state: State::parse(r.get(1)).unwrap_or(State::Sending),
                attempts: r.get(2),
                reply: r.get(3),
                updated_at: r.get(4),
            })
            .collect())
    }
}

/// A skip of one address (see [`rules::SKIPPABLE`]), for a skip that does
/// not follow its own address's add.
static SKIP: LazyLock<String> = LazyLock::new(|| {
    let skippable = rules::sql(&rules::SKIPPABLE);
    let queued = rules::sql(rules::queued(true));
    format!(
        "UPDATE recipient SET state = CASE WHEN state IN ({skippable})
            THEN 'skipped' ELSE state END,
            reply = CASE WHEN state IN ({skippable}) THEN $3 ELSE reply END,
            waiting = state NOT IN ({skippable}) AND state IN ({queued}),
            seen = $4
         WHERE campaign = $1 AND email_key = $2"
    )
});

/// A chunk's people into the campaign, in one statement (see
/// [`Import::add`]): new addresses take the next numbers in the list's
/// order, known ones keep theirs; returns how many were new.
static ADD_CHUNK: LazyLock<String> = LazyLock::new(|| {
    let again = rules::sql(&rules::LISTED_AGAIN);
    let queued = rules::sql(rules::queued(true));
    format!(
        "WITH u AS (
            SELECT u.*, k.seq IS NULL AS fresh
            FROM unnest($2::TEXT[], $3::TEXT[], $4::BIGINT[], $5::TEXT[]) WITH ORDINALITY
               AS u(email, email_key, line, fields, n)
            LEFT JOIN recipient k ON k.campaign = $1 AND k.email_key = u.email_key),
         added AS (
            INSERT INTO recipient (campaign, seq, email, email_key, line, fields, seen)
            SELECT $1, $6::BIGINT - 1 + COUNT(*) FILTER (WHERE fresh) OVER (ORDER BY n), email, email_key,
               line, fields, $7
            FROM u ORDER BY n
            ON CONFLICT (campaign, email_key) DO UPDATE SET
               email = excluded.email, line = excluded.line, fields = excluded.fields,
               seen = excluded.seen,
               state = CASE WHEN recipient.state IN ({again}) THEN 'pending' ELSE recipient.state END,
               reply = CASE WHEN recipient.state IN ({again}) THEN NULL ELSE recipient.reply END,
               waiting = recipient.state IN ({again}) OR recipient.state IN ({queued})
            RETURNING (xmax = 0) AS fresh)
         SELECT COUNT(*) FILTER (WHERE fresh) FROM added"
    )
});

/// The skips of a chunk's people, after their adds (see [`SKIP`]).
static SKIP_CHUNK: LazyLock<String> = LazyLock::new(|| {
    let skippable = rules::sql(&rules::SKIPPABLE);
    let queued = rules::sql(rules::queued(true));
    format!(
        "UPDATE recipient r SET state = CASE WHEN r.state IN ({skippable})
            THEN 'skipped' ELSE r.state END,
            reply = CASE WHEN r.state IN ({skippable}) THEN s.why ELSE r.reply END,
            waiting = r.state NOT IN ({skippable}) AND r.state IN ({queued}),
            seen = $4
         FROM unnest($2::TEXT[], $3::TEXT[]) AS s(email_key, why)
         WHERE r.campaign = $1 AND r.email_key = s.email_key"
    )
});

/// The end of an import (see [`rules::REMOVABLE`]). Someone a living
/// sender has claimed may be being mailed right now: they stay (the
/// `sending` mark would otherwise turn `removed` back into a send).
static REMOVE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE recipient r SET state = 'removed', reply = '{}', waiting = FALSE
         WHERE r.campaign = $1 AND r.state IN ({}) AND r.seen <> $2
           AND (r.claimed_by IS NULL OR NOT EXISTS (SELECT 1 FROM sender s
               WHERE s.id = r.claimed_by
                 AND s.heartbeat > clock_timestamp() - make_interval(secs => {})))",
        rules::REMOVED_REPLY,
        rules::sql(&rules::REMOVABLE),
        super::LEASE.as_secs()
    )
});

/// How many of the list's people go to the database in one statement: a
/// round trip per person made a 10,000-person import take longer than
/// mailing a thousand of them; a chunk copied in costs four round trips
/// (a savepoint, the `COPY`'s two, the savepoint's release), so a
/// 10,000-person list goes in two.
const CHUNK_ROWS: usize = 5000;

/// A chunk of people new to the campaign, as `COPY` writes them: what
/// [`ADD_CHUNK`] does for rows without a conflict (the next numbers in the
/// list's order, the import's generation, the columns' defaults), at half
/// its cost to the database (no conflict check, no join, no window).
const COPY_CHUNK: &str =
    "COPY recipient (campaign, seq, email, email_key, line, fields, seen) FROM STDIN BINARY";

/// People added and not yet written, in the list's order. Each address
/// once: a second add of it writes the chunk first, so the statement never
/// touches a row twice.
#[derive(Default)]
struct Chunk {
    emails: Vec<String>,
    keys: Vec<String>,
    lines: Vec<i64>,
    fields: Vec<String>,
    /// The skips that follow their own add (as the list's reader does):
    /// the address and why.
    skips: Vec<(String, String)>,
    seen: std::collections::HashSet<String>,
}

impl Chunk {
    fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

struct PgImport<'a> {
    tx: postgres::Transaction<'a>,
    target: Target,
    campaign: String,
    next_seq: i64,
    generation: i64,
    chunk: Chunk,
    /// Chunks are copied in while every one so far was new to the
    /// campaign (see [`PgImport::copy_in`]).
    copy: bool,
}

impl PgImport<'_> {
    /// Writes the chunk: its adds, then its skips.
    fn write(&mut self) -> Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let c = std::mem::take(&mut self.chunk);
        if self.copy {
            self.copy = self
                .copy_in(&c)
                .map_err(|err| db_error(&self.target, err))?;
            if self.copy {
                self.next_seq += c.keys.len() as i64;
                return self.skips(c.skips);
            }
        }
        let e = |err| db_error(&self.target, err);
        let row = self
            .tx
            .query_one(
                &*ADD_CHUNK,
                &[
                    &self.campaign,
                    &c.emails,
                    &c.keys,
                    &c.lines,
                    &c.fields,
                    &self.next_seq,
                    &self.generation,
                ],
            )
            .map_err(e)?;
        // New rows took the numbers; addresses already known kept their own.
        self.next_seq += row.get::<_, i64>(0);
        self.skips(c.skips)
    }

    /// The skips of a chunk written (see [`SKIP_CHUNK`]).
    fn skips(&mut self, skips: Vec<(String, String)>) -> Result<()> {
        if skips.is_empty() {
            return Ok(());
        }
        let (keys, whys): (Vec<String>, Vec<String>) = skips.into_iter().unzip();
        self.tx
            .execute(
                &*SKIP_CHUNK,
                &[&self.campaign, &keys, &whys, &self.generation],
            )
            .map_err(|err| db_error(&self.target, err))?;
        Ok(())
    }

    /// Copies the chunk in as people new to the campaign; `false` (and
    /// nothing written) when one of them is not: listed earlier in this
    /// import, or added by another writer. The chunk then goes through
    /// [`ADD_CHUNK`], as do all after it.
    fn copy_in(&mut self, c: &Chunk) -> std::result::Result<bool, postgres::Error> {
        use postgres::binary_copy::BinaryCopyInWriter;
        self.tx.batch_execute("SAVEPOINT herald_copy")?;
        let copied = (|| {
            let mut w = BinaryCopyInWriter::new(
                self.tx.copy_in(COPY_CHUNK)?,
                &[
                    Type::TEXT,
                    Type::INT8,
                    Type::TEXT,
                    Type::TEXT,
                    Type::INT8,
                    Type::TEXT,
                    Type::INT8,
                ],
            );
            for (i, key) in c.keys.iter().enumerate() {
                let seq = self.next_seq + i as i64;
                w.write(&[
                    &self.campaign,
                    &seq,
                    &c.emails[i],
                    key,
                    &c.lines[i],
                    &c.fields[i],
                    &self.generation,
                ])?;
            }
            w.finish()
        })();
        match copied {
            Ok(_) => {
                self.tx.batch_execute("RELEASE SAVEPOINT herald_copy")?;
                Ok(true)
            }
            Err(err) if err.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) => {
                self.tx.batch_execute(
                    "ROLLBACK TO SAVEPOINT herald_copy; RELEASE SAVEPOINT herald_copy",
                )?;
                Ok(false)
            }
            Err(err) => Err(err),
        }
    }
}

impl Import for PgImport<'_> {
    fn add(&mut self, email: &str, line: i64, values: &[String]) -> Result<()> {
        let key = email.to_lowercase();
        if self.chunk.seen.contains(&key) || self.chunk.keys.len() >= CHUNK_ROWS {
            self.write()?;
        }
        let fields = serde_json::to_string(values).expect("strings serialise");
        let c = &mut self.chunk;
        c.emails.push(email.to_string());
        c.seen.insert(key.clone());
        c.keys.push(key);
        c.lines.push(line);
        c.fields.push(fields);
        Ok(())
    }

    fn skip(&mut self, email: &str, why: &str) -> Result<()> {
        let key = email.to_lowercase();
        // Added just before (the list's reader adds, then skips): with
        // its add, in the chunk's one statement for skips.
        if self.chunk.keys.last() == Some(&key) {
            self.chunk.skips.push((key, why.to_string()));
            return Ok(());
        }
        self.write()?;
        self.tx
            .execute(&*SKIP, &[&self.campaign, &key, &why, &self.generation])
            .map_err(|e| db_error(&self.target, e))?;
        Ok(())
    }

    fn commit(mut self: Box<Self>) -> Result<u64> {
        self.write()?;
        let removed = self
            .tx
            .execute_typed(
                &REMOVE,
                &[(&self.campaign, Type::TEXT), (&self.generation, Type::INT8)],
            )
            .map_err(|e| db_error(&self.target, e))?;
        let target = self.target.clone();
        self.tx.commit().map_err(|e| db_error(&target, e))?;
        Ok(removed)
    }
}
