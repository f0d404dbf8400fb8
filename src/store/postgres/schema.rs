//! The database's schema: made on first open, upgraded in place, refused
//! when a newer herald set it up. One herald at a time (an advisory lock).

use postgres::Client;

use super::LEASE;
use crate::store::rules;

/// The schema this herald writes in PostgreSQL (its own numbering; the
/// SQLite journal has its own).
pub(super) const SCHEMA_VERSION: i32 = 8;

/// Why the database could not be set up.
pub(super) enum Setup {
    /// A statement failed.
    Db(postgres::Error),
    /// A newer herald set it up (its schema version).
    Newer(i32),
}

impl From<postgres::Error> for Setup {
    fn from(e: postgres::Error) -> Setup {
        Setup::Db(e)
    }
}

/// The lock two hosts take to create or upgrade the schema one at a time
/// (a session lock: held across the upgrade's transaction).
const SETUP_LOCK: i64 = 726561001;

/// Creates or upgrades the schema.
///
/// Most opens find it current: one read, no lock (a version is written in
/// the transaction that brings the schema to it, so a version read is a
/// schema complete). Otherwise one host at a time (an advisory lock): a new
/// database gets the latest schema in one step, a database of an older
/// version is brought through each version in turn.
pub(super) fn setup(client: &mut Client) -> std::result::Result<(), Setup> {
    // An error here (no `herald_schema` yet, most likely) is seen again,
    // or not, under the lock below.
    if let Ok(rows) = client.simple_query("SELECT MAX(version) FROM herald_schema") {
        match first_value(&rows).and_then(|v| v.parse::<i32>().ok()) {
            Some(SCHEMA_VERSION) => return Ok(()),
            Some(v) if v > SCHEMA_VERSION => return Err(Setup::Newer(v)),
            _ => {}
        }
    }
    // Session-level: held until unlocked, even if what follows fails.
    client.batch_execute(&format!("SELECT pg_advisory_lock({SETUP_LOCK})"))?;
    let made = setup_locked(client);
    let _ = client.batch_execute(&format!("SELECT pg_advisory_unlock({SETUP_LOCK})"));
    made
}

/// The first row's first value of a simple query's answer.
fn first_value(rows: &[postgres::SimpleQueryMessage]) -> Option<&str> {
    rows.iter().find_map(|m| match m {
        postgres::SimpleQueryMessage::Row(r) => r.get(0),
        _ => None,
    })
}

/// [`setup`] under the lock.
fn setup_locked(client: &mut Client) -> std::result::Result<(), Setup> {
    // One round trip: the version (0 for none), the server's version, and
    // whether any of herald's tables is there already.
    let rows = client.simple_query(
        "CREATE TABLE IF NOT EXISTS herald_schema (version INTEGER NOT NULL);
         SELECT COALESCE(MAX(version), 0) || ' ' || current_setting('server_version_num')
            || ' ' || (to_regclass('recipient') IS NULL) FROM herald_schema",
    )?;
    let found = first_value(&rows).unwrap_or("");
    let mut parts = found.split(' ');
    let version: i32 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    let server: i32 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    let empty = parts.next() == Some("true");
    if version > SCHEMA_VERSION {
        return Err(Setup::Newer(version));
    }
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    if version == 0 && empty {
        // One statement list, one implicit transaction: all of it or none.
        client.batch_execute(&format!(
            "{}
             DELETE FROM herald_schema;
             INSERT INTO herald_schema (version) VALUES ({SCHEMA_VERSION});",
            latest(server)
        ))?;
        return Ok(());
    }
    upgrade(client, server)
}

/// A new database's schema, at [`SCHEMA_VERSION`], in one script: what the
/// versions one after the other leave (columns in the same order, the same
/// names, defaults, indexes, storage and functions), without building what
/// a later version takes down again (a queue index, a primary key, a table
/// rewritten for a generated column and a fill factor, the column's
/// expression dropped again). The test
/// `a_new_database_and_one_upgraded_from_version_1_have_the_same_schema`
/// keeps the two the same.
fn latest(server: i32) -> String {
    format!(
        "CREATE TABLE campaign (
            id TEXT PRIMARY KEY,
            post TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            columns TEXT NOT NULL,
            created_at TEXT NOT NULL,
            finished_at TEXT
         );
         CREATE TABLE recipient (
            campaign TEXT NOT NULL,
            seq BIGINT NOT NULL,
            email TEXT NOT NULL,
            email_key TEXT NOT NULL,
            line BIGINT NOT NULL,
            fields TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending',
            attempts BIGINT NOT NULL DEFAULT 0,
            reply TEXT,
            updated_at TEXT,
            seen BIGINT NOT NULL DEFAULT 0,
            claimed_by TEXT,
            relay TEXT,
            waiting BOOLEAN NOT NULL DEFAULT TRUE,
            PRIMARY KEY (campaign, seq),
            UNIQUE (campaign, email_key)
         ) WITH (fillfactor = 50);
         CREATE INDEX recipient_waiting ON recipient (campaign, seq) WHERE waiting;
         CREATE TABLE suppression (
            email_key TEXT NOT NULL,
            reason TEXT NOT NULL,
            added_at TEXT NOT NULL,
            source TEXT NOT NULL DEFAULT 'bounce',
            campaign TEXT,
            id BIGSERIAL PRIMARY KEY
         );
         CREATE UNIQUE INDEX suppression_once ON suppression (email_key, source, COALESCE(campaign, ''));
         CREATE INDEX suppression_at ON suppression (added_at);
         CREATE TABLE intake (
            message_key TEXT PRIMARY KEY,
            handled_at TEXT NOT NULL
         );
         CREATE TABLE bounce (
            id BIGSERIAL PRIMARY KEY,
            email_key TEXT NOT NULL,
            campaign TEXT,
            kind TEXT NOT NULL,
            status TEXT NOT NULL,
            hard BOOLEAN NOT NULL,
            reason TEXT NOT NULL,
            diagnostic TEXT,
            action TEXT NOT NULL,
            message TEXT NOT NULL,
            at TEXT NOT NULL,
            origin TEXT UNIQUE
         );
         CREATE INDEX bounce_email ON bounce (email_key, at);
         CREATE INDEX bounce_campaign ON bounce (campaign);
         CREATE TABLE sender (
            id TEXT PRIMARY KEY,
            campaign TEXT NOT NULL,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            started_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
            heartbeat TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
         );
         CREATE TABLE rate_slot (
            id BIGSERIAL PRIMARY KEY,
            campaign TEXT NOT NULL,
            sender TEXT NOT NULL,
            answered_at TIMESTAMPTZ
         );
         CREATE INDEX rate_slot_campaign ON rate_slot (campaign, id);
         CREATE TABLE relay_day (
            relay TEXT NOT NULL,
            day TEXT NOT NULL,
            used BIGINT NOT NULL,
            PRIMARY KEY (relay, day)
         );
         {log}
         {functions}",
        log = SUPPRESSION_LOG,
        functions = functions_sql(server),
    )
}

/// Brings a database of an older version through each version in turn,
/// in one transaction.
fn upgrade(client: &mut Client, server: i32) -> std::result::Result<(), Setup> {
    let mut tx = client.transaction()?;
    tables_v1(&mut tx)?;
    relays_v2(&mut tx)?;
    tx.batch_execute(&functions_sql(server))?;
    migrate_suppression_history(&mut tx)?;
    suppression_log_v3(&mut tx)?;
    queue_v6(&mut tx)?;
    waiting_v8(&mut tx, server)?;
    // Version 4 adds `herald_claim` (in `functions`) and nothing else;
    // version 5 changes `herald_apply` (a `sending` mark needs the claim);
    // version 6 claims through the index of `queue_v6`, and a `sending`
    // mark needs a recipient still waiting (not removed, not skipped);
    // version 7 plans `herald_claim` and `herald_apply` once (see
    // `functions`); version 8 keeps `waiting` itself (`waiting_v8`).
    tx.execute("DELETE FROM herald_schema", &[])?;
    tx.execute(
        "INSERT INTO herald_schema (version) VALUES ($1)",
        &[&SCHEMA_VERSION],
    )?;
    tx.commit()?;
    Ok(())
}

/// Version 1: everything the SQLite journal's schema 3 has, plus senders,
/// claims and the shared rate window.
pub(super) fn tables_v1(
    tx: &mut postgres::Transaction<'_>,
) -> std::result::Result<(), postgres::Error> {
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS campaign (
            id TEXT PRIMARY KEY,
            post TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            columns TEXT NOT NULL,
            created_at TEXT NOT NULL,
            finished_at TEXT
         );
         CREATE TABLE IF NOT EXISTS recipient (
            campaign TEXT NOT NULL,
            seq BIGINT NOT NULL,
            email TEXT NOT NULL,
            email_key TEXT NOT NULL,
            line BIGINT NOT NULL,
            fields TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending',
            attempts BIGINT NOT NULL DEFAULT 0,
            reply TEXT,
            updated_at TEXT,
            seen BIGINT NOT NULL DEFAULT 0,
            claimed_by TEXT,
            PRIMARY KEY (campaign, seq),
            UNIQUE (campaign, email_key)
         );
         CREATE INDEX IF NOT EXISTS recipient_queue ON recipient (campaign, state, seq);
         CREATE TABLE IF NOT EXISTS suppression (
            email_key TEXT PRIMARY KEY,
            reason TEXT NOT NULL,
            added_at TEXT NOT NULL,
            source TEXT NOT NULL DEFAULT 'bounce',
            campaign TEXT
         );
         CREATE TABLE IF NOT EXISTS intake (
            message_key TEXT PRIMARY KEY,
            handled_at TEXT NOT NULL
         );
         CREATE TABLE IF NOT EXISTS bounce (
            id BIGSERIAL PRIMARY KEY,
            email_key TEXT NOT NULL,
            campaign TEXT,
            kind TEXT NOT NULL,
            status TEXT NOT NULL,
            hard BOOLEAN NOT NULL,
            reason TEXT NOT NULL,
            diagnostic TEXT,
            action TEXT NOT NULL,
            message TEXT NOT NULL,
            at TEXT NOT NULL,
            origin TEXT UNIQUE
         );
         CREATE INDEX IF NOT EXISTS bounce_email ON bounce (email_key, at);
         CREATE INDEX IF NOT EXISTS bounce_campaign ON bounce (campaign);
         CREATE TABLE IF NOT EXISTS sender (
            id TEXT PRIMARY KEY,
            campaign TEXT NOT NULL,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            started_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
            heartbeat TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
         );
         CREATE TABLE IF NOT EXISTS rate_slot (
            id BIGSERIAL PRIMARY KEY,
            campaign TEXT NOT NULL,
            sender TEXT NOT NULL,
            answered_at TIMESTAMPTZ
         );
         CREATE INDEX IF NOT EXISTS rate_slot_campaign ON rate_slot (campaign, id);",
    )
}

/// Version 6: the claim's index holds only those who may still be mailed,
/// in the campaign's order, so a claim reads its rows in order and stops
/// (the index of version 1, by state then number, made every claim sort
/// every waiting row: 7-12 ms a claim of 10,000 waiting).
///
/// Whether someone may still be mailed is a column of its own (computed by
/// the database here; kept by herald's statements since `waiting_v8`): a
/// claim and a `sending` mark leave it as it is, so neither changes an
/// indexed column and PostgreSQL writes them in place (a HOT
/// update: no new index entries, a third of the write-ahead log to flush
/// before each mark's commit returns). Pages are filled half at first so a
/// claim's new row versions fit beside the old ones.
fn queue_v6(tx: &mut postgres::Transaction<'_>) -> std::result::Result<(), postgres::Error> {
    tx.batch_execute(&format!(
        "ALTER TABLE recipient SET (fillfactor = 50);
         DROP INDEX IF EXISTS recipient_queue;
         ALTER TABLE recipient ADD COLUMN IF NOT EXISTS waiting BOOLEAN
            GENERATED ALWAYS AS (state IN ({})) STORED;
         CREATE INDEX IF NOT EXISTS recipient_waiting ON recipient (campaign, seq) WHERE waiting;",
        rules::sql(rules::queued(true))
    ))
}

/// Version 8: `waiting` is a plain column that herald's statements keep,
/// no longer one the database computes. PostgreSQL 15 reads a generated
/// column's expression afresh from the catalog's text at the start of
/// every statement that writes the table (`ExecInitStoredGenerated`):
/// ~35,000 instructions of each `UPDATE` of `recipient` (claims, every
/// `herald_apply`), a quarter of a one-row mark's cost (callgrind on a
/// single-user server; see the commit). Every statement that sets `state`
/// sets `waiting` to whether the new state is one of
/// [`rules::queued`]`(true)`: a claim reads the queue through its index,
/// and a recipient left out of it would never be mailed. Each derives it
/// from the state the row gets, never from the `waiting` it had, so a row
/// out of step (an older herald's import in the moment a newer one
/// upgraded the database) is mended the next time the list is imported:
/// every listed row is written by the import anyway.
///
/// The column keeps its place (so a database upgraded has the columns of
/// a new one); PostgreSQL 12 cannot drop a column's expression, and there
/// it is made again, with its index.
fn waiting_v8(
    tx: &mut postgres::Transaction<'_>,
    server: i32,
) -> std::result::Result<(), postgres::Error> {
    if server >= 130_000 {
        tx.batch_execute(
            "ALTER TABLE recipient ALTER COLUMN waiting DROP EXPRESSION IF EXISTS,
                ALTER COLUMN waiting SET DEFAULT TRUE,
                ALTER COLUMN waiting SET NOT NULL;",
        )
    } else {
        tx.batch_execute(&format!(
            "ALTER TABLE recipient DROP COLUMN waiting;
             ALTER TABLE recipient ADD COLUMN waiting BOOLEAN NOT NULL DEFAULT TRUE;
             UPDATE recipient SET waiting = FALSE WHERE state NOT IN ({});
             CREATE INDEX recipient_waiting ON recipient (campaign, seq) WHERE waiting;",
            rules::sql(rules::queued(true))
        ))
    }
}

/// Version 2: which relay answered for each recipient (`relays:`) and each
/// relay's daily quota used, by the relay's day; `herald_apply` takes the
/// relays too, so the old one goes.
fn relays_v2(tx: &mut postgres::Transaction<'_>) -> std::result::Result<(), postgres::Error> {
    tx.batch_execute(
        "ALTER TABLE recipient ADD COLUMN IF NOT EXISTS relay TEXT;
         CREATE TABLE IF NOT EXISTS relay_day (
            relay TEXT NOT NULL,
            day TEXT NOT NULL,
            used BIGINT NOT NULL,
            PRIMARY KEY (relay, day)
         );
         ALTER TABLE bounce ADD COLUMN IF NOT EXISTS origin TEXT UNIQUE;
         DROP FUNCTION IF EXISTS herald_apply(TEXT, TEXT, BIGINT[], TEXT[], TEXT[], BIGINT[], TEXT, BIGINT);",
    )
}

/// Functions for the calls made for every message and every batch of the
/// queue, so each is one round trip to the database rather than four to
/// six: on a busy machine each round trip waits for the server's process
/// to be scheduled, and the sending mark is on every message's path.
/// `herald_claim` came with version 4; with version 5 `herald_apply`
/// marks `sending` only what this sender holds.
///
/// Since version 7 the two on every message's path keep one plan for the
/// connection (a generic plan). PL/pgSQL otherwise plans their statements
/// anew at every call, the arrays' lengths being known only then: a
/// quarter of the database's CPU time in a send of 10,000 (`perf record`
/// on the server, 2,800 calls of `herald_apply`). The plan is the same
/// whatever the arrays hold: the rows by their key, the claim through its
/// index in order. PostgreSQL 11 has no such setting and plans each call.
fn functions_sql(server: i32) -> String {
    let plan_once = if server >= 120_000 {
        "SET plan_cache_mode = force_generic_plan"
    } else {
        ""
    };
    format!(
        "CREATE OR REPLACE FUNCTION herald_take_slot(p_campaign TEXT, p_sender TEXT, p_max BIGINT, p_window FLOAT8)
         RETURNS TABLE (slot BIGINT, wait FLOAT8) LANGUAGE plpgsql AS $f$
         DECLARE
            back TIMESTAMPTZ;
            found_back BOOLEAN;
         BEGIN
            -- One taker at a time per campaign; the lock ends with the transaction.
            PERFORM pg_advisory_xact_lock(hashtextextended(p_campaign, 726562));
            -- Slots of senders that died unanswered count as answered now:
            -- the message, if it left, reached the relay before this moment.
            UPDATE rate_slot r SET answered_at = clock_timestamp()
             WHERE r.campaign = p_campaign AND r.answered_at IS NULL AND r.sender <> p_sender
               AND NOT EXISTS (SELECT 1 FROM sender s WHERE s.id = r.sender
                   AND s.heartbeat > clock_timestamp() - make_interval(secs => {lease}));
            DELETE FROM rate_slot WHERE campaign = p_campaign
               AND answered_at < clock_timestamp() - make_interval(secs => p_window);
            -- The message `max` places back: the next may start `window`
            -- after it was answered.
            SELECT answered_at, TRUE INTO back, found_back FROM rate_slot
             WHERE campaign = p_campaign ORDER BY id DESC OFFSET p_max - 1 LIMIT 1;
            IF found_back THEN
               IF back IS NULL THEN
                  RETURN QUERY SELECT NULL::BIGINT, 0.005::FLOAT8;
                  RETURN;
               END IF;
               IF back + make_interval(secs => p_window) > clock_timestamp() THEN
                  RETURN QUERY SELECT NULL::BIGINT,
                     EXTRACT(EPOCH FROM (back + make_interval(secs => p_window) - clock_timestamp()))::FLOAT8;
                  RETURN;
               END IF;
            END IF;
            RETURN QUERY INSERT INTO rate_slot (campaign, sender) VALUES (p_campaign, p_sender)
               RETURNING id, 0::FLOAT8;
         END $f$;

         CREATE OR REPLACE FUNCTION herald_claim(p_campaign TEXT, p_after BIGINT, p_limit BIGINT,
            p_states TEXT[], p_sender TEXT)
         RETURNS TABLE (seq BIGINT, email TEXT, line BIGINT, fields TEXT, attempts BIGINT)
         LANGUAGE plpgsql {plan_once} AS $f$
         #variable_conflict use_column
         BEGIN
            -- Waits for an import under way: its rows are seen by the
            -- claim below (a statement of its own, so a snapshot of its own).
            PERFORM pg_advisory_xact_lock_shared(hashtextextended(p_campaign, 726561));
            -- A claim need not wait for the disk: one lost in a crash of
            -- the database is a claim given back, and the `sending` mark
            -- that follows it waits for the disk, with it.
            PERFORM set_config('synchronous_commit', 'off', true);
            -- The states as literals, which the planner can estimate
            -- (an array parameter it cannot).
            IF 'sending' = ANY(p_states) THEN
               RETURN QUERY {claim_unknown};
            ELSE
               RETURN QUERY {claim};
            END IF;
         END $f$;

         CREATE OR REPLACE FUNCTION herald_apply(p_campaign TEXT, p_now TEXT, p_seqs BIGINT[], p_states TEXT[],
            p_replies TEXT[], p_attempts BIGINT[], p_sender TEXT, p_marks BIGINT, p_relays TEXT[])
         RETURNS BIGINT LANGUAGE plpgsql {plan_once} AS $f$
         DECLARE
            marked BIGINT;
         BEGIN
            PERFORM pg_advisory_xact_lock_shared(hashtextextended(p_campaign, 726561));
            -- A `sending` mark needs this sender's claim: without it
            -- another sender may have the recipient, or have mailed them
            -- already (a taker's final mark lets the claim go, so a free
            -- row is no sign that nobody has it).
            WITH done AS (
               UPDATE recipient r SET state = u.state, reply = COALESCE(u.reply, r.reply),
                  attempts = r.attempts + u.attempts, updated_at = p_now,
                  relay = COALESCE(u.relay, r.relay),
                  claimed_by = CASE WHEN u.state IN ('pending', 'sending') THEN r.claimed_by ELSE NULL END,
                  waiting = u.state IN ({unknown})
               FROM unnest(p_seqs, p_states, p_replies, p_attempts, p_relays)
                  AS u(seq, state, reply, attempts, relay)
               WHERE r.campaign = p_campaign AND r.seq = u.seq
                 AND (u.state <> 'sending'
                      OR (r.claimed_by = p_sender AND r.state IN ({unknown})))
               RETURNING u.state)
            SELECT COUNT(*) INTO marked FROM done WHERE state = 'sending';
            IF marked < p_marks THEN
               -- Undoes the whole call: nothing of this group is recorded.
               RAISE EXCEPTION 'herald: a claim was lost' USING ERRCODE = 'HC001';
            END IF;
            RETURN marked;
         END $f$;",
        lease = LEASE.as_secs(),
        claim = claim_sql(false),
        claim_unknown = claim_sql(true),
        unknown = rules::sql(rules::queued(true)),
    )
}

/// `herald_claim`'s statement for the states [`rules::queued`] gives:
/// past `p_after`, what is free or already ours; before it (the rows this
/// run has handed over already are there), only what became free since: a
/// dead sender's people, someone listed again.
fn claim_sql(resend_unknown: bool) -> String {
    format!(
        "WITH c AS (
            SELECT r.seq FROM recipient r
            WHERE r.campaign = p_campaign AND r.waiting AND r.state IN ({states})
              AND (r.claimed_by IS NULL
                   OR (r.claimed_by <> p_sender AND NOT EXISTS (SELECT 1 FROM sender s
                       WHERE s.id = r.claimed_by
                         AND s.heartbeat > clock_timestamp() - make_interval(secs => {lease})))
                   OR (r.seq > p_after AND r.claimed_by = p_sender))
            ORDER BY r.seq LIMIT p_limit
            FOR UPDATE OF r SKIP LOCKED)
         UPDATE recipient r SET claimed_by = p_sender
         WHERE r.campaign = p_campaign AND r.seq = ANY(ARRAY(SELECT c.seq FROM c))
         RETURNING r.seq, r.email, r.line, r.fields, r.attempts",
        states = rules::sql(rules::queued(resend_unknown)),
        lease = LEASE.as_secs()
    )
}

/// Version 3: a log of additions to the suppression list, written by a
/// trigger so that every writer on every host is seen by a run under way.
/// A sequence's numbers can commit out of order; the reader asks again
/// from a few seconds back (see the engine's suppression watch).
fn suppression_log_v3(tx: &mut postgres::Transaction<'_>) -> std::result::Result<(), Setup> {
    tx.batch_execute(SUPPRESSION_LOG)?;
    Ok(())
}

/// The log of version 3 and the trigger that writes it.
const SUPPRESSION_LOG: &str = "CREATE TABLE IF NOT EXISTS suppression_log (
            id BIGSERIAL PRIMARY KEY,
            email_key TEXT NOT NULL
         );
         CREATE OR REPLACE FUNCTION herald_suppression_logged() RETURNS TRIGGER LANGUAGE plpgsql AS $f$
         BEGIN
            INSERT INTO suppression_log (email_key) VALUES (NEW.email_key);
            RETURN NULL;
         END $f$;
         DROP TRIGGER IF EXISTS suppression_logged ON suppression;
         CREATE TRIGGER suppression_logged AFTER INSERT ON suppression
            FOR EACH ROW EXECUTE FUNCTION herald_suppression_logged();";

/// Version 3: the suppression list keeps every event (see the SQLite
/// journal's schema 5). Up to version 2 it held one row per address; each
/// existing row is kept as an event, with a row id, and one event per
/// address, kind and campaign.
fn migrate_suppression_history(
    tx: &mut postgres::Transaction<'_>,
) -> std::result::Result<(), postgres::Error> {
    let done = tx
        .query_opt(
            "SELECT 1 FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = 'suppression' AND column_name = 'id'",
            &[],
        )?
        .is_some();
    if done {
        return Ok(());
    }
    tx.batch_execute(
        "ALTER TABLE suppression DROP CONSTRAINT IF EXISTS suppression_pkey;
         ALTER TABLE suppression ADD COLUMN id BIGSERIAL PRIMARY KEY;
         CREATE UNIQUE INDEX IF NOT EXISTS suppression_once
            ON suppression (email_key, source, COALESCE(campaign, ''));
         CREATE INDEX IF NOT EXISTS suppression_at ON suppression (added_at);",
    )
}
