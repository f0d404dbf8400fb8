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

mod copy;
mod figures;
mod intake;
mod journal;
mod locks;
mod rates;
mod schema;
mod suppressions;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use postgres::{Client, NoTls};

use crate::store::{ClaimsApart, Dump, Fault, Result, Store, StoreError, Tally};
use schema::{SCHEMA_VERSION, Setup, setup};

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
        let bad = |fault: Fault| StoreError::new(&shown, fault);
        let mut config =
            postgres::Config::from_str(url).map_err(|e| bad(Fault::NotAnAddress(e.to_string())))?;
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
            Some(tls_connector(ca_pem).map_err(|e| bad(Fault::Tls(e.to_string())))?)
        };
        Ok(Target { config, tls, shown })
    }

    fn connect(&self) -> Result<Client> {
        let r = match &self.tls {
            Some(tls) => self.config.connect(tls.clone()),
            None => self.config.connect(NoTls),
        };
        r.map_err(|e| StoreError::new(&self.shown, Fault::Unreachable(pg_reason(&e))))
    }

    /// The address, without a password.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

fn tls_connector(
    ca_pem: Option<&[u8]>,
) -> std::result::Result<tokio_postgres_rustls::MakeRustlsConnect, crate::tls::TlsError> {
    if ca_pem.is_some_and(|pem| !crate::tls::holds_certificate(pem)) {
        return Err(crate::tls::TlsError::NoCertificate {
            what: "the database CA file (`database_ca_file`)".into(),
        });
    }
    let config = crate::tls::client_config(ca_pem, "the database CA file")?;
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
///
/// It keeps the statements it has prepared: a query given as text is
/// prepared anew each time, a round trip of its own before the one that
/// runs it, and the state marks are on every message's path.
struct Conn {
    client: Option<Client>,
    prepared: HashMap<&'static str, postgres::Statement>,
}

impl Conn {
    fn new(client: Client) -> Conn {
        Conn {
            client: Some(client),
            prepared: HashMap::new(),
        }
    }

    /// `sql` prepared on this connection, once.
    fn prepared(
        &mut self,
        sql: &'static str,
    ) -> std::result::Result<postgres::Statement, postgres::Error> {
        if let Some(s) = self.prepared.get(sql) {
            return Ok(s.clone());
        }
        let s = self.prepare(sql)?;
        self.prepared.insert(sql, s.clone());
        Ok(s)
    }
}

impl std::ops::Deref for Conn {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("open until dropped")
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("open until dropped")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(c) = self.client.take()
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
        // One herald at a time creates or upgrades the schema (`setup`
        // takes the lock when there is anything to do).
        setup(&mut client).map_err(|e| match e {
            Setup::Db(e) => db_error(target, e),
            Setup::Newer(found) => StoreError::new(
                &target.shown,
                Fault::NewerDatabase {
                    found,
                    known: SCHEMA_VERSION,
                },
            ),
        })?;
        let host = host_key();
        let sender = format!("{host}:{}:{:08x}", std::process::id(), fastrand::u32(..));
        Ok(Postgres {
            client: Mutex::new(Conn::new(client)),
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
    StoreError::new(&target.shown, Fault::Database(pg_reason(&e)))
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

impl Store for Postgres {
    fn describe(&self) -> String {
        self.target.shown.clone()
    }
    fn is_shared(&self) -> bool {
        true
    }
    fn dump(&self) -> Result<Dump> {
        Err(StoreError::new(&self.target.shown, Fault::CannotCopyOut))
    }

    fn claims_apart(&self) -> Option<ClaimsApart> {
        let (target, sender) = (self.target.clone(), self.sender.clone());
        Some(Box::new(move || {
            // The schema is set up already (by `open`): only the connection.
            let client = target.connect()?;
            Ok(Box::new(Postgres {
                client: Mutex::new(Conn::new(client)),
                target,
                sender,
            }) as Box<dyn crate::store::Journal>)
        }))
    }

    fn load(&mut self, dump: &Dump) -> Result<()> {
        self.load_all(dump)
    }

    fn tally(&self, dump: &Dump) -> Result<Tally> {
        self.tally_all(dump)
    }
}
