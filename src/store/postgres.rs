//! The PostgreSQL store: one database shared by `herald serve` on a web
//! host and any number of `herald send` processes on other hosts.
//!
//! It keeps what the SQLite journal keeps, with the same meaning, plus
//! what several senders need to share one campaign:
//!
//! - **Senders register** (`sender` table) instead of taking a lock, and
//!   say they are alive every few seconds (a heartbeat on a connection of
//!   their own). A sender not heard of for [`LEASE`] is taken as dead.
//! - **Recipients are claimed** (`recipient.claimed_by`) a batch at a time
//!   with `FOR UPDATE SKIP LOCKED`, so each is mailed by one sender. A
//!   claim lasts while its sender is alive; a dead sender's pending
//!   claims go to the others, its in-flight ones (`sending`) stay of
//!   unknown outcome and are not resent unless `--resend-unknown`.
//!   A sender marks a recipient `sending` only while it still holds the
//!   claim, so a sender cut off from the database for longer than the
//!   lease stops rather than mail someone another sender has taken.
//! - **The rate is the relay's** (`rate_slot`, by the name of the relay
//!   or domain limit; the column is still called `campaign`): the sliding
//!   window of the single-sender throttle (a message starts only `window` after the
//!   one `max` places before it was answered), kept in the database and
//!   timed by the database's clock, so N senders together never exceed it.
//!
//! Times herald shows (created, updated, bounced) are RFC 3339 text, as in
//! SQLite, so `herald store migrate` copies them unchanged; leases and the
//! rate window use the database's own clock (`clock_timestamp()`), the one
//! clock every host shares.

use std::str::FromStr;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use postgres::types::ToSql;
use postgres::{Client, NoTls};

use super::{
    BounceEvent, BounceSummary, CampaignInfo, Counts, Dump, Import, Lock, Problem, RateGate,
    RecipientRecord, RelayCounts, Result, Row, Source, State, Store, StoreError, Suppressed,
    Update,
};
use crate::clock;
use crate::config::Rate;

/// The schema this herald writes in PostgreSQL (its own numbering; the
/// SQLite journal has its own).
const SCHEMA_VERSION: i32 = 3;

/// A sender not heard of for this long is taken as dead: its pending
/// claims go to other senders.
pub const LEASE: Duration = Duration::from_secs(30);
/// How often a sender says it is alive.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// Where the database is and how to reach it.
#[derive(Clone)]
pub struct Target {
    config: postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    /// The address without any password, for messages.
    shown: String,
}

impl Target {
    /// `url` as written in the settings (no password in it), the password
    /// from the environment, and a CA file for a private certificate.
    pub fn new(url: &str, password: Option<&[u8]>, ca_pem: Option<&[u8]>) -> Result<Target> {
        let shown = crate::config::redact_url(url);
        let bad = |message: String| StoreError {
            place: shown.clone().into(),
            message,
        };
        let mut config = postgres::Config::from_str(url).map_err(|e| {
            bad(format!(
                "is not a PostgreSQL address ({e}); write it like postgres://herald@db.example.org/herald"
            ))
        })?;
        if let Some(p) = password {
            config.password(p);
        }
        if config.get_application_name().is_none() {
            config.application_name("herald");
        }
        config.connect_timeout(Duration::from_secs(10));
        let loopback = config.get_hosts().iter().all(|h| match h {
            postgres::config::Host::Tcp(name) => {
                name == "localhost"
                    || name
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            postgres::config::Host::Unix(_) => true,
        });
        // Off this machine the database is reached over TLS unless the
        // address says `sslmode=disable`: subscribers' addresses and the
        // password cross the network.
        let explicit = url.contains("sslmode=");
        if !explicit {
            config.ssl_mode(if loopback {
                postgres::config::SslMode::Disable
            } else {
                postgres::config::SslMode::Require
            });
        }
        let tls = if config.get_ssl_mode() == postgres::config::SslMode::Disable {
            None
        } else {
            Some(tls_connector(ca_pem).map_err(bad)?)
        };
        Ok(Target { config, tls, shown })
    }

    fn connect(&self) -> Result<Client> {
        let r = match &self.tls {
            Some(tls) => self.config.connect(tls.clone()),
            None => self.config.connect(NoTls),
        };
        r.map_err(|e| StoreError {
            place: self.shown.clone().into(),
            message: format!(
                "cannot reach the database ({}). Is PostgreSQL running there, and are \
                 `database_url` and HERALD_DATABASE_PASSWORD right?",
                pg_reason(&e)
            ),
        })
    }

    /// The address, without a password.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

fn tls_connector(
    ca_pem: Option<&[u8]>,
) -> std::result::Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    if ca_pem.is_some_and(|pem| !crate::tls::holds_certificate(pem)) {
        return Err("the database CA file (`database_ca_file`) holds no PEM certificate".into());
    }
    let config =
        crate::tls::client_config(ca_pem, "the database CA file").map_err(|e| e.to_string())?;
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// The server's own words for an error, without the client's wrapping.
fn pg_reason(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => {
            let mut s = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(inner) = source {
                s = format!("{s}: {inner}");
                source = inner.source();
            }
            s
        }
    }
}

/// A connection that may be dropped anywhere. The sync client closes its
/// connection on a runtime of its own, which tokio forbids inside another
/// runtime (the engine's): there the closing goes to a thread of its own.
struct Conn(Option<Client>);

impl std::ops::Deref for Conn {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.0.as_ref().expect("open until dropped")
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Client {
        self.0.as_mut().expect("open until dropped")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(c) = self.0.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            let _ = std::thread::Builder::new()
                .name("herald-db-close".into())
                .spawn(move || drop(c));
        }
    }
}

pub struct Postgres {
    client: Mutex<Conn>,
    target: Target,
    /// This process's name among the senders: host, process id and a
    /// random part (a restarted process is a new sender).
    sender: String,
}

impl Postgres {
    /// Connects, and creates or upgrades the schema.
    pub fn open(target: &Target) -> Result<Postgres> {
        let mut client = target.connect()?;
        let s_err = |e: postgres::Error| db_error(target, e);
        // One herald at a time creates or upgrades the schema.
        client
            .batch_execute("SELECT pg_advisory_lock(726561001)")
            .map_err(s_err)?;
        let made = setup(&mut client);
        let _ = client.batch_execute("SELECT pg_advisory_unlock(726561001)");
        made.map_err(|e| match e {
            Setup::Db(e) => db_error(target, e),
            Setup::Newer(v) => StoreError {
                place: target.shown.clone().into(),
                message: format!(
                    "the database was set up by a newer herald (schema {v}, this herald knows \
                     {SCHEMA_VERSION}); update herald on this host"
                ),
            },
        })?;
        let host = host_key();
        let sender = format!("{host}:{}:{:08x}", std::process::id(), fastrand::u32(..));
        Ok(Postgres {
            client: Mutex::new(Conn(Some(client))),
            target: target.clone(),
            sender,
        })
    }

    fn err(&self) -> impl Fn(postgres::Error) -> StoreError + '_ {
        |e| db_error(&self.target, e)
    }

    fn client(&self) -> std::sync::MutexGuard<'_, Conn> {
        self.client.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This process's sender name (for tests and logs).
    pub fn sender(&self) -> &str {
        &self.sender
    }
}

fn db_error(target: &Target, e: postgres::Error) -> StoreError {
    StoreError {
        place: target.shown.clone().into(),
        message: format!(
            "the database cannot be used ({}). Is PostgreSQL running and reachable?",
            pg_reason(&e)
        ),
    }
}

enum Setup {
    Db(postgres::Error),
    Newer(i32),
}

impl From<postgres::Error> for Setup {
    fn from(e: postgres::Error) -> Setup {
        Setup::Db(e)
    }
}

fn setup(client: &mut Client) -> std::result::Result<(), Setup> {
    client.batch_execute("CREATE TABLE IF NOT EXISTS herald_schema (version INTEGER NOT NULL)")?;
    let version: Option<i32> = client
        .query_opt("SELECT MAX(version) FROM herald_schema", &[])?
        .and_then(|r| r.get(0));
    let version = version.unwrap_or(0);
    if version > SCHEMA_VERSION {
        return Err(Setup::Newer(version));
    }
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    let mut tx = client.transaction()?;
    // Version 1: everything the SQLite journal's schema 3 has, plus
    // senders, claims and the shared rate window.
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
    )?;
    // Version 2: which relay answered for each recipient (`relays:`) and
    // each relay's daily quota used, by the relay's day; `herald_apply`
    // takes the relays too, so the old one goes.
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
    )?;
    // Functions for the two calls made for every message, so each is one
    // round trip to the database rather than four or five.
    tx.batch_execute(&format!(
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

         CREATE OR REPLACE FUNCTION herald_apply(p_campaign TEXT, p_now TEXT, p_seqs BIGINT[], p_states TEXT[],
            p_replies TEXT[], p_attempts BIGINT[], p_sender TEXT, p_marks BIGINT, p_relays TEXT[])
         RETURNS BIGINT LANGUAGE plpgsql AS $f$
         DECLARE
            marked BIGINT;
         BEGIN
            PERFORM pg_advisory_xact_lock_shared(hashtextextended(p_campaign, 726561));
            -- A `sending` mark needs this sender's claim: without it
            -- another sender may have the recipient.
            WITH done AS (
               UPDATE recipient r SET state = u.state, reply = COALESCE(u.reply, r.reply),
                  attempts = r.attempts + u.attempts, updated_at = p_now,
                  relay = COALESCE(u.relay, r.relay),
                  claimed_by = CASE WHEN u.state IN ('pending', 'sending') THEN r.claimed_by ELSE NULL END
               FROM unnest(p_seqs, p_states, p_replies, p_attempts, p_relays)
                  AS u(seq, state, reply, attempts, relay)
               WHERE r.campaign = p_campaign AND r.seq = u.seq
                 AND (u.state <> 'sending' OR r.claimed_by = p_sender OR r.claimed_by IS NULL)
               RETURNING u.state)
            SELECT COUNT(*) INTO marked FROM done WHERE state = 'sending';
            IF marked < p_marks THEN
               -- Undoes the whole call: nothing of this group is recorded.
               RAISE EXCEPTION 'herald: a claim was lost' USING ERRCODE = 'HC001';
            END IF;
            RETURN marked;
         END $f$;",
        lease = LEASE.as_secs()
    ))?;
    migrate_suppression_history(&mut tx)?;
    suppression_log_v3(&mut tx)?;
    tx.execute("DELETE FROM herald_schema", &[])?;
    tx.execute(
        "INSERT INTO herald_schema (version) VALUES ($1)",
        &[&SCHEMA_VERSION],
    )?;
    tx.commit()?;
    Ok(())
}

/// Version 3: a log of additions to the suppression list, written by a
/// trigger so that every writer on every host is seen by a run under way.
/// A sequence's numbers can commit out of order; the reader asks again
/// from a few seconds back (see the engine's suppression watch).
fn suppression_log_v3(tx: &mut postgres::Transaction<'_>) -> std::result::Result<(), Setup> {
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS suppression_log (
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
            FOR EACH ROW EXECUTE FUNCTION herald_suppression_logged();",
    )?;
    Ok(())
}

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

/// How a transaction holds a campaign's recipients: an import alone
/// (`Exclusive`), claims and state changes together (`Shared`).
#[derive(Clone, Copy)]
enum ListLock {
    Shared,
    Exclusive,
}
use ListLock::{Exclusive, Shared};

/// A reader-writer lock on a campaign's recipients, for one transaction.
/// Senders starting together import the same list one after the other
/// (each new address needs the next number), and an import touches every
/// row: without it a claim would skip the rows being imported and take
/// the campaign for done, and a state change could deadlock with it.
fn list_lock(
    tx: &mut postgres::Transaction<'_>,
    campaign: &str,
    how: ListLock,
) -> std::result::Result<(), postgres::Error> {
    let f = match how {
        Shared => "pg_advisory_xact_lock_shared",
        Exclusive => "pg_advisory_xact_lock",
    };
    tx.execute(
        &format!("SELECT {f}(hashtextextended($1, 726561))"),
        &[&campaign],
    )
    .map(|_| ())
}

/// A sender's registration: alive while this value lives. A thread of its
/// own says so every few seconds on a connection of its own; dropping it
/// gives back the claims not yet used and unregisters.
struct Registration {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Lock for Registration {}

impl Drop for Registration {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// This machine, as far as its process ids go: the host name and the
/// kernel's boot id. Two hosts given the same name (many cloud images are
/// all `localhost`) differ by boot id, so one never takes the other's
/// living sender for dead because a process id is free here.
fn host_key() -> String {
    let name = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "host".into());
    let boot_id = std::path::Path::new("/proc/sys/kernel/random/boot_id");
    match crate::limits::read_capped(boot_id, crate::limits::MAX_BOOT_ID_BYTES, "kernel boot id") {
        Ok(id) => format!(
            "{name}/{}",
            String::from_utf8_lossy(&id).trim().get(..8).unwrap_or("")
        ),
        Err(_) => name,
    }
}

/// The SQL that says a claim still holds: its sender is alive.
const CLAIM_HELD: &str = "EXISTS (SELECT 1 FROM sender s WHERE s.id = r.claimed_by \
     AND s.heartbeat > clock_timestamp() - make_interval(secs => $LEASE))";

fn claim_held() -> String {
    CLAIM_HELD.replace("$LEASE", &LEASE.as_secs().to_string())
}

impl Store for Postgres {
    fn describe(&self) -> String {
        self.target.shown.clone()
    }

    fn lock(&self, campaign: &str) -> Result<Option<Box<dyn Lock>>> {
        let host = host_key();
        {
            let mut c = self.client();
            // Senders of this host whose process is gone (killed, crashed)
            // are dead now, not in `LEASE`: a restarted sender picks up
            // their unused claims at once.
            let rows = c
                .query("SELECT id, pid FROM sender WHERE host = $1", &[&host])
                .map_err(self.err())?;
            for r in rows {
                let (id, pid): (String, i32) = (r.get(0), r.get(1));
                // SAFETY-free: kill with signal 0 only asks whether the process exists.
                let gone = pid as u32 != std::process::id()
                    && unsafe { libc::kill(pid, 0) } != 0
                    && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
                if gone {
                    c.execute("DELETE FROM sender WHERE id = $1", &[&id])
                        .map_err(self.err())?;
                }
            }
            c.execute(
                "DELETE FROM sender WHERE heartbeat < clock_timestamp() - make_interval(secs => $1)",
                &[&(LEASE.as_secs_f64() * 4.0)],
            )
            .map_err(self.err())?;
            c.execute(
                "INSERT INTO sender (id, campaign, host, pid) VALUES ($1, $2, $3, $4)",
                &[&self.sender, &campaign, &host, &(std::process::id() as i32)],
            )
            .map_err(self.err())?;
        }
        let mut beat = self.target.connect()?;
        let (stop, stopped) = mpsc::channel::<()>();
        let id = self.sender.clone();
        let thread = std::thread::Builder::new()
            .name("herald-heartbeat".into())
            .spawn(move || {
                // A failed beat is tried again at the next one; claims
                // lapse only after `LEASE` without any.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(HEARTBEAT) {
                    let _ = beat.execute(
                        "UPDATE sender SET heartbeat = clock_timestamp() WHERE id = $1",
                        &[&id],
                    );
                }
                // Unused claims go back at once; in-flight ones stay
                // with this sender's name (of unknown outcome).
                let _ = beat.execute(
                    "UPDATE recipient SET claimed_by = NULL WHERE claimed_by = $1 AND state <> 'sending'",
                    &[&id],
                );
                let _ = beat.execute(
                    "UPDATE rate_slot SET answered_at = clock_timestamp() WHERE sender = $1 AND answered_at IS NULL",
                    &[&id],
                );
                let _ = beat.execute("DELETE FROM sender WHERE id = $1", &[&id]);
            })
            .map_err(|e| StoreError {
                place: self.target.shown.clone().into(),
                message: format!("cannot start the heartbeat ({e})"),
            })?;
        Ok(Some(Box::new(Registration {
            stop: Some(stop),
            thread: Some(thread),
        })))
    }

    fn campaign_hash(&self, id: &str) -> Result<Option<String>> {
        let row = self
            .client()
            .query_opt("SELECT content_hash FROM campaign WHERE id = $1", &[&id])
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
            .execute(
                "INSERT INTO campaign (id, post, content_hash, columns, created_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (id) DO UPDATE SET content_hash = excluded.content_hash, post = excluded.post,
                    columns = excluded.columns",
                &[&id, &post, &hash, &cols, &now],
            )
            .map_err(self.err())?;
        Ok(())
    }

    fn import<'a>(&'a mut self, campaign: &str) -> Result<Box<dyn Import + 'a>> {
        let target = self.target.clone();
        let client = self.client.get_mut().unwrap_or_else(|p| p.into_inner());
        let e = |err| db_error(&target, err);
        let mut tx = client.transaction().map_err(e)?;
        list_lock(&mut tx, campaign, Exclusive).map_err(e)?;
        let row = tx
            .query_one(
                "SELECT COALESCE(MAX(seq), 0) + 1, COALESCE(MAX(seen), 0) + 1 FROM recipient WHERE campaign = $1",
                &[&campaign],
            )
            .map_err(e)?;
        let add = tx
            .prepare(
                "INSERT INTO recipient (campaign, seq, email, email_key, line, fields, seen)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (campaign, email_key) DO UPDATE SET
                    email = excluded.email, line = excluded.line, fields = excluded.fields,
                    seen = excluded.seen,
                    state = CASE WHEN recipient.state IN ('removed', 'skipped') THEN 'pending' ELSE recipient.state END,
                    reply = CASE WHEN recipient.state IN ('removed', 'skipped') THEN NULL ELSE recipient.reply END
                 RETURNING (xmax = 0)",
            )
            .map_err(e)?;
        Ok(Box::new(PgImport {
            tx,
            target,
            add,
            campaign: campaign.to_string(),
            next_seq: row.get(0),
            generation: row.get(1),
        }))
    }

    fn queue(
        &self,
        campaign: &str,
        after_seq: i64,
        limit: i64,
        resend_unknown: bool,
    ) -> Result<Vec<Row>> {
        let states: &[&str] = if resend_unknown {
            &["pending", "deferred", "sending"]
        } else {
            &["pending", "deferred"]
        };
        // A claim: the rows are this sender's until it dies or lets go.
        // Past `after_seq`, what is free or already ours; before it (the
        // rows this run has handed over already are there), only what
        // became free since: a dead sender's people, someone listed again.
        let sql = format!(
            "WITH c AS (
                SELECT r.seq FROM recipient r
                WHERE r.campaign = $1 AND r.state = ANY($4)
                  AND (r.claimed_by IS NULL OR (r.claimed_by <> $5 AND NOT {held})
                       OR (r.seq > $2 AND r.claimed_by = $5))
                ORDER BY r.seq LIMIT $3
                FOR UPDATE OF r SKIP LOCKED)
             UPDATE recipient r SET claimed_by = $5 FROM c
             WHERE r.campaign = $1 AND r.seq = c.seq
             RETURNING r.seq, r.email, r.line, r.fields, r.attempts",
            held = claim_held()
        );
        let states: Vec<String> = states.iter().map(|s| s.to_string()).collect();
        let mut c = self.client();
        let mut tx = c.transaction().map_err(self.err())?;
        list_lock(&mut tx, campaign, Shared).map_err(self.err())?;
        let rows = tx
            .query(
                &sql,
                &[&campaign, &after_seq, &limit, &states, &self.sender],
            )
            .map_err(self.err())?;
        tx.commit().map_err(self.err())?;
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
        let merged = merge_updates(updates);
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
        let lost = |err: postgres::Error| {
            if err.code().is_some_and(|c| c.code() == "HC001") {
                StoreError {
                    place: target.shown.clone().into(),
                    message: "this sender lost its claim on a recipient (it was out of touch with \
                              the database for longer than the lease, so another sender may have \
                              them); stopping so that nobody is mailed twice. Run send again"
                        .into(),
                }
            } else {
                db_error(&target, err)
            }
        };
        let call = "SELECT herald_apply($1, $2, $3, $4, $5, $6, $7, $8, $9)";
        let marks = marks as i64;
        let params: [&(dyn ToSql + Sync); 9] = [
            &campaign, &now, &seqs, &states, &replies, &attempts, &sender, &marks, &relays,
        ];
        // One call for the whole group commit (see `herald_apply`): one
        // round trip, one wait for the disk.
        if updates.iter().all(|u| u.suppress.is_none()) {
            client.query_one(call, &params).map_err(lost)?;
            return Ok(());
        }
        let mut tx = client.transaction().map_err(e)?;
        tx.query_one(call, &params).map_err(lost)?;
        for u in updates {
            if let Some(key) = &u.suppress {
                tx.execute(
                    "INSERT INTO suppression (email_key, reason, added_at, source, campaign)
                     VALUES ($1, $2, $3, 'bounce', $4) ON CONFLICT DO NOTHING",
                    &[
                        key,
                        &u.reply.as_deref().unwrap_or("refused"),
                        &now,
                        &campaign,
                    ],
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

    fn finish_if_done(&mut self, campaign: &str) -> Result<bool> {
        let c = self.counts(campaign)?;
        let done = c.pending == 0 && c.deferred == 0 && c.unknown == 0;
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
            .query_opt(
                "SELECT finished_at IS NOT NULL FROM campaign WHERE id = $1",
                &[&campaign],
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
                "SELECT email, state, reply, attempts, line FROM recipient
                 WHERE campaign = $1 AND state IN ('failed', 'deferred', 'sending') ORDER BY seq LIMIT $2",
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

    fn suppressed(&self) -> Result<Vec<String>> {
        let rows = self
            .client()
            .query("SELECT DISTINCT email_key FROM suppression", &[])
            .map_err(self.err())?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    fn is_suppressed(&self, email: &str) -> Result<bool> {
        let row = self
            .client()
            .query_opt(
                "SELECT 1 FROM suppression WHERE email_key = $1 LIMIT 1",
                &[&email.to_lowercase()],
            )
            .map_err(self.err())?;
        Ok(row.is_some())
    }

    fn suppression_mark(&self) -> Result<i64> {
        let row = self
            .client()
            .query_one("SELECT COALESCE(MAX(id), 0) FROM suppression_log", &[])
            .map_err(self.err())?;
        Ok(row.get(0))
    }

    fn suppressed_after(&self, mark: i64) -> Result<Vec<(i64, String)>> {
        let rows = self
            .client()
            .query(
                "SELECT id, email_key FROM suppression_log WHERE id > $1 ORDER BY id",
                &[&mark],
            )
            .map_err(self.err())?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn suppress(&mut self, entries: &[Suppressed]) -> Result<u64> {
        let target = self.target.clone();
        let e = |err| db_error(&target, err);
        let client = self.client.get_mut().unwrap_or_else(|p| p.into_inner());
        let mut tx = client.transaction().map_err(e)?;
        let was = tx
            .prepare("SELECT 1 FROM suppression WHERE email_key = $1 LIMIT 1")
            .map_err(e)?;
        let mut added = 0;
        for s in entries {
            let before = tx
                .query_opt(&was, &[&s.email.to_lowercase()])
                .map_err(e)?
                .is_some();
            if insert_suppression(&mut tx, s).map_err(e)? > 0 && !before {
                added += 1;
            }
        }
        tx.commit().map_err(e)?;
        Ok(added)
    }

    fn unsuppress(&mut self, email: &str, sources: &[Source]) -> Result<bool> {
        let key = email.to_lowercase();
        let n = if sources.is_empty() {
            self.client()
                .execute("DELETE FROM suppression WHERE email_key = $1", &[&key])
        } else {
            let list: Vec<&str> = sources.iter().map(|s| s.as_str()).collect();
            self.client().execute(
                "DELETE FROM suppression WHERE email_key = $1 AND source = ANY($2)",
                &[&key, &list],
            )
        };
        n.map(|n| n > 0).map_err(self.err())
    }

    fn suppression_events(&self) -> Result<Vec<Suppressed>> {
        let rows = self
            .client()
            .query(
                "SELECT email_key, reason, source, campaign, added_at FROM suppression
                 ORDER BY added_at, email_key, id",
                &[],
            )
            .map_err(self.err())?;
        Ok(rows
            .into_iter()
            .map(|r| Suppressed {
                email: r.get(0),
                reason: r.get(1),
                source: Source::parse(r.get(2)).unwrap_or(Source::Manual),
                campaign: r.get(3),
                added_at: r.get(4),
            })
            .collect())
    }

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

    fn is_shared(&self) -> bool {
        true
    }

    fn rate_gate(&self, campaign: &str, rate: Rate) -> Result<Option<Arc<dyn RateGate>>> {
        Ok(Some(Arc::new(PgRate {
            client: Mutex::new(Conn(Some(rate_connection(&self.target)?))),
            target: self.target.clone(),
            campaign: campaign.to_string(),
            sender: self.sender.clone(),
            rate,
        })))
    }

    fn dump(&self) -> Result<Dump> {
        Err(StoreError {
            place: self.target.shown.clone().into(),
            message: "copying out of PostgreSQL is not supported; use pg_dump".into(),
        })
    }

    fn load(&mut self, dump: &Dump) -> Result<()> {
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
                "INSERT INTO recipient (campaign, seq, email, email_key, line, fields, state, attempts, reply, updated_at, seen, relay)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING",
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

    fn tally(&self, dump: &Dump) -> Result<super::Tally> {
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

/// A bounce's values in the order of the `bounce` table's columns.
fn bounce_params<'a>(b: &'a BounceEvent, key: &'a String) -> [&'a (dyn ToSql + Sync); 10] {
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

fn insert_suppression(
    tx: &mut postgres::Transaction<'_>,
    s: &Suppressed,
) -> std::result::Result<u64, postgres::Error> {
    tx.execute(
        "INSERT INTO suppression (email_key, reason, added_at, source, campaign)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        &[
            &s.email.to_lowercase(),
            &s.reason,
            &s.added_at,
            &s.source.as_str(),
            &s.campaign,
        ],
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

/// Updates to the same recipient in one group commit, merged in order: the
/// last state, the last reply given, the attempts added up (one statement
/// cannot update a row twice).
fn merge_updates(updates: &[Update]) -> Vec<Update> {
    let mut out: Vec<Update> = Vec::with_capacity(updates.len());
    let mut at: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
    for u in updates {
        match at.get(&u.seq) {
            Some(&i) => {
                let m = &mut out[i];
                m.state = u.state;
                if u.reply.is_some() {
                    m.reply = u.reply.clone();
                }
                if u.relay.is_some() {
                    m.relay = u.relay.clone();
                }
                m.attempts += u.attempts;
            }
            None => {
                at.insert(u.seq, out.len());
                out.push(u.clone());
            }
        }
    }
    out
}

struct PgImport<'a> {
    tx: postgres::Transaction<'a>,
    target: Target,
    add: postgres::Statement,
    campaign: String,
    next_seq: i64,
    generation: i64,
}

impl Import for PgImport<'_> {
    fn add(&mut self, email: &str, line: i64, values: &[String]) -> Result<()> {
        let fields = serde_json::to_string(values).expect("strings serialise");
        let row = self
            .tx
            .query_one(
                &self.add,
                &[
                    &self.campaign,
                    &self.next_seq,
                    &email,
                    &email.to_lowercase(),
                    &line,
                    &fields,
                    &self.generation,
                ],
            )
            .map_err(|e| db_error(&self.target, e))?;
        // A new row took the number; an address already known kept its own.
        if row.get::<_, bool>(0) {
            self.next_seq += 1;
        }
        Ok(())
    }

    fn skip(&mut self, email: &str, why: &str) -> Result<()> {
        self.tx
            .execute(
                "UPDATE recipient SET state = CASE WHEN state IN ('pending', 'deferred', 'removed')
                    THEN 'skipped' ELSE state END,
                    reply = CASE WHEN state IN ('pending', 'deferred', 'removed') THEN $3 ELSE reply END,
                    seen = $4
                 WHERE campaign = $1 AND email_key = $2",
                &[
                    &self.campaign,
                    &email.to_lowercase(),
                    &why,
                    &self.generation,
                ],
            )
            .map_err(|e| db_error(&self.target, e))?;
        Ok(())
    }

    fn commit(mut self: Box<Self>) -> Result<u64> {
        // Someone another sender has claimed is being mailed: they stay.
        let removed = self
            .tx
            .execute(
                "UPDATE recipient SET state = 'removed', reply = 'removed from the list'
                 WHERE campaign = $1 AND state IN ('pending', 'deferred') AND seen <> $2",
                &[&self.campaign, &self.generation],
            )
            .map_err(|e| db_error(&self.target, e))?;
        let target = self.target.clone();
        self.tx.commit().map_err(|e| db_error(&target, e))?;
        Ok(removed)
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
        let row = c
            .query_one(
                "SELECT slot, wait FROM herald_take_slot($1, $2, $3, $4)",
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
        c.execute(
            "UPDATE rate_slot SET answered_at = clock_timestamp() WHERE id = $1",
            &[&slot],
        )
        .map_err(|e| db_error(&self.target, e))?;
        Ok(())
    }
}

/// A new, empty database for a test or a bench, on the PostgreSQL server
/// named by `HERALD_TEST_DATABASE_URL` (with `HERALD_TEST_DATABASE_PASSWORD`;
/// `scripts/pg-cluster.sh` starts one). Dropped with the value.
#[doc(hidden)]
pub struct ScratchDatabase {
    /// `postgres://herald@127.0.0.1:PORT/NAME`, no password in it.
    pub url: String,
    pub password: String,
    /// The CA of the server's TLS certificate, when the cluster has one.
    pub ca: Option<std::path::PathBuf>,
    name: String,
    admin: String,
}

#[doc(hidden)]
impl ScratchDatabase {
    /// `None` (saying SKIPPED on stderr) when no server is configured,
    /// except under `CI=true`, where that is a failure: CI starts one.
    pub fn new(what: &str) -> Option<ScratchDatabase> {
        let (Ok(admin), Ok(password)) = (
            std::env::var("HERALD_TEST_DATABASE_URL"),
            std::env::var("HERALD_TEST_DATABASE_PASSWORD"),
        ) else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{what}: HERALD_TEST_DATABASE_URL is not set, and under CI the PostgreSQL tests \
                 must run (.ci/run starts a cluster with scripts/pg-cluster.sh)"
            );
            eprintln!(
                "SKIPPED {what}: no PostgreSQL (start one with `scripts/pg-cluster.sh start DIR` \
                 and export HERALD_TEST_DATABASE_URL and HERALD_TEST_DATABASE_PASSWORD)"
            );
            return None;
        };
        let name = format!("herald_test_{:016x}", fastrand::u64(..));
        let mut c = postgres::Config::from_str(&admin)
            .expect("HERALD_TEST_DATABASE_URL is a PostgreSQL address")
            .password(&password)
            .connect(NoTls)
            .expect("the test PostgreSQL server answers");
        c.batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("a test database can be made");
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
        Some(ScratchDatabase {
            url: format!("{base}/{name}"),
            password,
            ca: std::env::var_os("HERALD_TEST_DATABASE_CA").map(Into::into),
            name,
            admin,
        })
    }

    /// The target for this database, as herald would reach it.
    pub fn target(&self) -> Target {
        Target::new(&self.url, Some(self.password.as_bytes()), None).expect("a valid address")
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let (admin, password, name) =
            (self.admin.clone(), self.password.clone(), self.name.clone());
        // On a thread of its own: a test may drop it inside a runtime.
        let _ = std::thread::spawn(move || {
            if let Ok(mut c) = postgres::Config::from_str(&admin)
                .map(|mut c| {
                    c.password(&password);
                    c
                })
                .and_then(|c| c.connect(NoTls))
            {
                let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        })
        .join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn campaign(s: &mut Postgres, n: usize) {
        s.upsert_campaign("c", "post.md", "h", &[]).unwrap();
        let mut i = s.import("c").unwrap();
        for k in 0..n {
            i.add(&format!("r{k}@x.org"), k as i64 + 2, &[]).unwrap();
        }
        i.commit().unwrap();
    }

    fn mark(s: &mut Postgres, seqs: &[i64], state: State) -> Result<()> {
        let u: Vec<Update> = seqs
            .iter()
            .map(|&seq| Update {
                seq,
                state,
                reply: None,
                attempts: 0,
                suppress: None,
                relay: None,
            })
            .collect();
        s.apply("c", &u)
    }

    fn seqs(rows: &[Row]) -> Vec<i64> {
        rows.iter().map(|r| r.seq).collect()
    }

    #[test]
    fn two_senders_claim_disjoint_recipients_and_a_dead_ones_pending_claims_pass_on() {
        let Some(db) = ScratchDatabase::new("two_senders_claim_disjoint_recipients") else {
            return;
        };
        let mut a = Postgres::open(&db.target()).unwrap();
        let mut b = Postgres::open(&db.target()).unwrap();
        campaign(&mut a, 10);
        let lock_a = a.lock("c").unwrap().unwrap();
        let _lock_b = b.lock("c").unwrap().unwrap();
        let first = a.queue("c", 0, 4, false).unwrap();
        let second = b.queue("c", 0, 100, false).unwrap();
        assert_eq!(seqs(&first), [1, 2, 3, 4]);
        assert_eq!(seqs(&second), [5, 6, 7, 8, 9, 10]);
        // A takes 1 and 2 in flight; 3 and 4 are claimed but untouched.
        mark(&mut a, &[1, 2], State::Sending).unwrap();
        // B may not mark what A holds.
        let e = mark(&mut b, &[3], State::Sending).unwrap_err();
        assert!(e.message.contains("lost its claim"), "{e}");
        assert_eq!(
            a.counts("c").unwrap().unknown,
            2,
            "nothing of B's call stayed"
        );
        // While A lives, its in-flight ones are not B's, even with
        // --resend-unknown.
        assert_eq!(
            seqs(&b.queue("c", 0, 100, true).unwrap()),
            [5, 6, 7, 8, 9, 10]
        );
        // A ends (or dies and its heartbeat stops): its unused claims pass
        // to B, its in-flight ones stay unknown unless --resend-unknown.
        drop(lock_a);
        let rest = b.queue("c", 0, 100, false).unwrap();
        assert_eq!(seqs(&rest), [3, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(
            seqs(&b.queue("c", 0, 100, true).unwrap()),
            (1..=10).collect::<Vec<_>>()
        );
        mark(&mut b, &[3], State::Sending).unwrap();
    }

    #[test]
    fn a_dead_senders_people_are_picked_up_by_a_sender_already_past_them() {
        let Some(db) = ScratchDatabase::new("a_dead_senders_people_are_picked_up") else {
            return;
        };
        let mut a = Postgres::open(&db.target()).unwrap();
        let b = Postgres::open(&db.target()).unwrap();
        campaign(&mut a, 6);
        let la = a.lock("c").unwrap().unwrap();
        let _lb = b.lock("c").unwrap().unwrap();
        assert_eq!(seqs(&a.queue("c", 0, 2, false).unwrap()), [1, 2]);
        assert_eq!(seqs(&b.queue("c", 0, 2, false).unwrap()), [3, 4]);
        // A goes away with 1 and 2 unsent; B, whose run is past them,
        // still gets them, and never its own 3 and 4 a second time.
        drop(la);
        assert_eq!(seqs(&b.queue("c", 4, 10, false).unwrap()), [1, 2, 5, 6]);
        assert!(b.queue("c", 6, 10, false).unwrap().is_empty());
    }

    #[test]
    fn a_sender_not_heard_of_for_the_lease_loses_its_claims() {
        let Some(db) = ScratchDatabase::new("a_sender_not_heard_of_loses_its_claims") else {
            return;
        };
        let mut a = Postgres::open(&db.target()).unwrap();
        let b = Postgres::open(&db.target()).unwrap();
        campaign(&mut a, 3);
        let _la = a.lock("c").unwrap().unwrap();
        let _lb = b.lock("c").unwrap().unwrap();
        assert_eq!(a.queue("c", 0, 10, false).unwrap().len(), 3);
        assert!(b.queue("c", 0, 10, false).unwrap().is_empty());
        // A's heartbeat is older than the lease (a host cut off, a frozen VM).
        a.client()
            .execute(
                "UPDATE sender SET heartbeat = clock_timestamp() - interval '1 hour' WHERE id = $1",
                &[&a.sender],
            )
            .unwrap();
        assert_eq!(seqs(&b.queue("c", 0, 10, false).unwrap()), [1, 2, 3]);
        // A comes back and must not mail them.
        let e = mark(&mut a, &[1], State::Sending).unwrap_err();
        assert!(e.message.contains("lost its claim"), "{e}");
    }

    /// Version 2 kept one row per address; version 3 keeps each as an
    /// event and records the later ones beside it.
    #[test]
    fn a_version_2_suppression_list_becomes_events() {
        let Some(db) = ScratchDatabase::new("a_version_2_suppression_list_becomes_events") else {
            return;
        };
        {
            let s = Postgres::open(&db.target()).unwrap();
            // Back to version 2's table, with a row in it.
            s.client()
                .batch_execute(
                    "DROP INDEX suppression_once;
                     ALTER TABLE suppression DROP COLUMN id;
                     ALTER TABLE suppression ADD PRIMARY KEY (email_key);
                     INSERT INTO suppression VALUES ('ana@x.org', 'unsubscribed', '2026-01-01T00:00:00Z', 'one-click', 'c1');
                     UPDATE herald_schema SET version = 2;",
                )
                .unwrap();
        }
        let mut s = Postgres::open(&db.target()).unwrap();
        let events = s.suppression_events().unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].source, Source::OneClick);
        s.suppress(&[Suppressed {
            email: "ana@x.org".into(),
            reason: "abuse".into(),
            source: Source::Complaint,
            campaign: Some("c1".into()),
            added_at: "2026-01-03T00:00:00Z".into(),
        }])
        .unwrap();
        assert_eq!(s.suppression_events().unwrap().len(), 2);
        assert!(s.unsuppress("ana@x.org", &[Source::OneClick]).unwrap());
        assert!(s.is_suppressed("ana@x.org").unwrap());
    }

    #[test]
    fn a_database_from_a_newer_herald_is_refused() {
        let Some(db) = ScratchDatabase::new("a_database_from_a_newer_herald_is_refused") else {
            return;
        };
        let s = Postgres::open(&db.target()).unwrap();
        s.client()
            .execute("UPDATE herald_schema SET version = 99", &[])
            .unwrap();
        drop(s);
        let e = Postgres::open(&db.target()).err().unwrap();
        assert!(e.message.contains("newer herald"), "{e}");
        assert!(!e.to_string().contains(&db.password), "no password in {e}");
    }

    #[test]
    fn tls_to_the_database_checks_the_certificate() {
        let Some(db) = ScratchDatabase::new("tls_to_the_database_checks_the_certificate") else {
            return;
        };
        let Some(ca) = &db.ca else {
            eprintln!("SKIPPED TLS: the test cluster has no certificate");
            return;
        };
        let pem = std::fs::read(ca).unwrap();
        let url = format!("{}?sslmode=require", db.url);
        let t = Target::new(&url, Some(db.password.as_bytes()), Some(&pem)).unwrap();
        let s = Postgres::open(&t).unwrap();
        let ssl: bool = s
            .client()
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .unwrap()
            .get(0);
        assert!(ssl, "the connection is encrypted");
        // Without the private CA, the certificate is not trusted.
        let t = Target::new(&url, Some(db.password.as_bytes()), None).unwrap();
        let e = Postgres::open(&t).err().unwrap();
        assert!(e.message.contains("cannot reach the database"), "{e}");
        // A wrong password is named, and not shown.
        let t = Target::new(&db.url, Some(b"not-the-password"), None).unwrap();
        let e = Postgres::open(&t).err().unwrap();
        assert!(e.message.contains("password"), "{e}");
        assert!(!e.to_string().contains("not-the-password"), "{e}");
    }

    #[test]
    fn the_shared_rate_holds_across_senders() {
        let Some(db) = ScratchDatabase::new("the_shared_rate_holds_across_senders") else {
            return;
        };
        let mut a = Postgres::open(&db.target()).unwrap();
        let b = Postgres::open(&db.target()).unwrap();
        campaign(&mut a, 1);
        let _la = a.lock("c").unwrap().unwrap();
        let _lb = b.lock("c").unwrap().unwrap();
        let rate = Rate {
            max: 3,
            window: Duration::from_secs(3600),
        };
        let ga = a.rate_gate("c", rate).unwrap().unwrap();
        let gb = b.rate_gate("c", rate).unwrap().unwrap();
        // Three slots between the two senders, then nothing for an hour.
        let s1 = ga.take().unwrap().unwrap();
        let s2 = gb.take().unwrap().unwrap();
        let s3 = ga.take().unwrap().unwrap();
        // Not answered yet: ask again shortly.
        assert!(gb.take().unwrap().is_err());
        for s in [s1, s2, s3] {
            ga.answered(s).unwrap();
        }
        let wait = gb.take().unwrap().unwrap_err();
        assert!(wait > Duration::from_secs(3500), "{wait:?}");
    }
}
