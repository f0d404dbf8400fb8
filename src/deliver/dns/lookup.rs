//! The questions `check --dns` asks a DNS server, over hickory-resolver,
//! with bounded waits: one server that does not answer must cost seconds,
//! not minutes, and must be told apart from a name that has no record.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};

/// How long one query waits for an answer: a resolver answers in
/// milliseconds, or a recursive one in a second or two.
const TIMEOUT: Duration = Duration::from_secs(3);
/// Tries per query: one more after a lost UDP packet, no more, so an
/// unreachable server costs at most 6 s.
const ATTEMPTS: usize = 2;

/// Why a lookup gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// No answer at all: the server is down, filtered or not a DNS server.
    #[error(
        "could not reach the DNS resolver at {server}; check dns_resolver in herald.yaml or the network"
    )]
    Unreachable { server: String },
    /// The server answered with an error (SERVFAIL, REFUSED...).
    #[error("the DNS resolver at {server} could not look up {name} ({reason})")]
    Failed {
        server: String,
        name: String,
        reason: String,
    },
    /// /etc/resolv.conf could not be read and no `dns_resolver` is set.
    #[error(
        "herald could not read the system's DNS settings ({reason}); set dns_resolver in herald.yaml, like dns_resolver: 127.0.0.1"
    )]
    NoResolver { reason: String },
}

/// A resolver with its bounds, and the name of the server it asks (for
/// messages).
pub struct Dns {
    resolver: TokioResolver,
    server: String,
}

impl Dns {
    /// Asks `server`, or the servers of /etc/resolv.conf when `None`.
    pub fn new(server: Option<SocketAddr>) -> Result<Dns, LookupError> {
        let mut options = ResolverOpts::default();
        options.timeout = TIMEOUT;
        options.attempts = ATTEMPTS;
        // Answers are checked as the world sees them, not /etc/hosts.
        options.use_hosts_file = hickory_resolver::config::ResolveHosts::Never;
        let (builder, name) = match server {
            Some(address) => {
                let connection = |mut c: ConnectionConfig| {
                    c.port = address.port();
                    c
                };
                let server = NameServerConfig::new(
                    address.ip(),
                    true,
                    vec![
                        connection(ConnectionConfig::udp()),
                        connection(ConnectionConfig::tcp()),
                    ],
                );
                let config = ResolverConfig::from_name_servers(vec![server]);
                (
                    Resolver::builder_with_config(config, TokioRuntimeProvider::default()),
                    address.to_string(),
                )
            }
            None => (
                Resolver::builder_tokio().map_err(|e| LookupError::NoResolver {
                    reason: e.to_string(),
                })?,
                "the system's resolver (/etc/resolv.conf)".to_string(),
            ),
        };
        let resolver =
            builder
                .with_options(options)
                .build()
                .map_err(|e| LookupError::NoResolver {
                    reason: e.to_string(),
                })?;
        Ok(Dns {
            resolver,
            server: name,
        })
    }

    /// The TXT strings of `name`, each record's parts joined (a long DKIM
    /// key is split into 255-byte parts). Empty when there is none.
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, LookupError> {
        Ok(self
            .records(name, RecordType::TXT)
            .await?
            .into_iter()
            .filter_map(|r| match r {
                RData::TXT(t) => Some(
                    t.txt_data
                        .iter()
                        .map(|p| String::from_utf8_lossy(p))
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect())
    }

    /// The IPv4 and IPv6 addresses of `name`.
    pub async fn addresses(&self, name: &str) -> Result<Vec<IpAddr>, LookupError> {
        let mut all = Vec::new();
        for kind in [RecordType::A, RecordType::AAAA] {
            for r in self.records(name, kind).await? {
                match r {
                    RData::A(a) => all.push(IpAddr::V4(a.0)),
                    RData::AAAA(a) => all.push(IpAddr::V6(a.0)),
                    _ => {}
                }
            }
        }
        Ok(all)
    }

    /// The mail exchangers of `name`, without the final dot.
    pub async fn mx(&self, name: &str) -> Result<Vec<String>, LookupError> {
        Ok(self
            .records(name, RecordType::MX)
            .await?
            .into_iter()
            .filter_map(|r| match r {
                RData::MX(m) => Some(plain(&m.exchange.to_ascii()).to_string()),
                _ => None,
            })
            .collect())
    }

    /// The names `ip` points back to (its PTR records).
    pub async fn reverse(&self, ip: IpAddr) -> Result<Vec<String>, LookupError> {
        let name = hickory_resolver::proto::rr::Name::from(ip);
        Ok(self
            .records(&name.to_ascii(), RecordType::PTR)
            .await?
            .into_iter()
            .filter_map(|r| match r {
                RData::PTR(p) => Some(plain(&p.0.to_ascii()).to_string()),
                _ => None,
            })
            .collect())
    }

    /// The records of one type; none for a name that does not exist or
    /// has no such record.
    async fn records(&self, name: &str, kind: RecordType) -> Result<Vec<RData>, LookupError> {
        // A final dot: the name as written, never a search domain appended.
        let fqdn = format!("{}.", plain(name));
        match self.resolver.lookup(fqdn.as_str(), kind).await {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter(|r| r.record_type() == kind)
                .map(|r| r.data.clone())
                .collect()),
            Err(e) if e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(self.failure(name, &e)),
        }
    }

    fn failure(&self, name: &str, e: &NetError) -> LookupError {
        match e {
            NetError::Timeout | NetError::Io(_) | NetError::NoConnections | NetError::Busy => {
                LookupError::Unreachable {
                    server: self.server.clone(),
                }
            }
            other => LookupError::Failed {
                server: self.server.clone(),
                name: plain(name).to_string(),
                reason: other.to_string(),
            },
        }
    }
}

/// A DNS name without its final dot, as people write it.
pub fn plain(name: &str) -> &str {
    name.strip_suffix('.').unwrap_or(name)
}
