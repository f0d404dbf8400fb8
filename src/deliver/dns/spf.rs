//! Does a domain's SPF record let an address send its mail? Just enough of
//! RFC 7208's check_host() to answer that for a relay: `ip4`, `ip6`, `a`,
//! `mx`, `include`, `exists` (without macros), `all` and `redirect=`, with
//! the RFC's limit of 10 lookups. Macros and `ptr` never match here:
//! herald only needs to tell whether the record names the relay.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use super::lookup::{Dns, LookupError};

/// RFC 7208 section 4.6.4: at most 10 terms that cause DNS lookups.
const LOOKUP_LIMIT: usize = 10;
/// Section 4.6.4 too: at most 10 names from one `mx`.
const MX_LIMIT: usize = 10;

/// Why a record cannot be evaluated (two records, a bad term, too many
/// lookups), in words for the finding that shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unusable(pub String);

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the record says about one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A mechanism with `+` matched (its text, like `ip4:192.0.2.0/24`).
    Pass(String),
    /// A mechanism with `-`, `~` or `?` matched, or nothing did (then
    /// `?`, neutral): the qualifier.
    NotPass(char),
    /// The domain has no SPF record.
    NoRecord,
    /// The record cannot be evaluated (two records, a bad term, too many
    /// lookups): receivers treat it as broken.
    Broken(String),
}

/// The domain's SPF record (`v=spf1 ...`); `Err` with the reason when
/// there are several. `Ok(None)` when there is none.
pub async fn record(
    dns: &Dns,
    domain: &str,
) -> Result<Result<Option<String>, Unusable>, LookupError> {
    let records: Vec<String> = dns
        .txt(domain)
        .await?
        .into_iter()
        .filter(|t| is_spf(t))
        .collect();
    Ok(match records.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.clone())),
        _ => Err(Unusable(format!(
            "{domain} has {} SPF records; receivers ignore all of them when there is more than one",
            records.len()
        ))),
    })
}

fn is_spf(txt: &str) -> bool {
    let lower = txt.trim_start().to_ascii_lowercase();
    lower == "v=spf1" || lower.starts_with("v=spf1 ")
}

/// Evaluates `domain`'s SPF record for `ip`.
pub async fn check(dns: &Dns, domain: &str, ip: IpAddr) -> Result<Outcome, LookupError> {
    let mut lookups = 0;
    evaluate(dns, domain.to_string(), ip, &mut lookups, 0).await
}

type Eval<'a> = Pin<Box<dyn Future<Output = Result<Outcome, LookupError>> + Send + 'a>>;

/// check_host() on one domain; `include` and `redirect` come back here,
/// boxed for the recursion, their lookups counted in `lookups`.
fn evaluate<'a>(
    dns: &'a Dns,
    domain: String,
    ip: IpAddr,
    lookups: &'a mut usize,
    depth: usize,
) -> Eval<'a> {
    Box::pin(async move {
        // Every include and redirect is a lookup, so the limit bounds the depth too.
        if depth > LOOKUP_LIMIT {
            return Ok(Outcome::Broken("includes nest too deep".into()));
        }
        let record = match record(dns, &domain).await? {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(Outcome::NoRecord),
            Err(why) => return Ok(Outcome::Broken(why.0)),
        };
        let mut redirect = None;
        for term in record.split_ascii_whitespace().skip(1) {
            if let Some((name, value)) = term.split_once('=')
                && !name.contains(':')
            {
                if name.eq_ignore_ascii_case("redirect") {
                    redirect = Some(value.to_string());
                }
                continue;
            }
            let (qualifier, mechanism) = match term.chars().next() {
                Some(q @ ('+' | '-' | '~' | '?')) => (q, &term[1..]),
                _ => ('+', term),
            };
            let matched = match_mechanism(dns, &domain, mechanism, ip, lookups, depth).await?;
            match matched {
                Err(why) => return Ok(Outcome::Broken(why.0)),
                Ok(false) => {}
                Ok(true) if qualifier == '+' => return Ok(Outcome::Pass(term.to_string())),
                Ok(true) => return Ok(Outcome::NotPass(qualifier)),
            }
        }
        match redirect {
            Some(target) => {
                if let Err(why) = spend(lookups) {
                    return Ok(Outcome::Broken(why.0));
                }
                match evaluate(dns, target.clone(), ip, lookups, depth + 1).await? {
                    Outcome::NoRecord => Ok(Outcome::Broken(format!(
                        "redirect={target} names a domain without an SPF record"
                    ))),
                    other => Ok(other),
                }
            }
            None => Ok(Outcome::NotPass('?')),
        }
    })
}

/// Counts one lookup; past the limit the record is broken (RFC 7208
/// section 4.6.4: receivers give a permanent error).
fn spend(lookups: &mut usize) -> Result<(), Unusable> {
    *lookups += 1;
    if *lookups > LOOKUP_LIMIT {
        Err(Unusable(format!(
            "it needs more than {LOOKUP_LIMIT} DNS lookups (include, a, mx, exists, redirect); receivers stop there and treat the record as broken"
        )))
    } else {
        Ok(())
    }
}

/// Whether one mechanism matches `ip`: `Ok(Err(why))` when the record is
/// broken there.
async fn match_mechanism(
    dns: &Dns,
    domain: &str,
    mechanism: &str,
    ip: IpAddr,
    lookups: &mut usize,
    depth: usize,
) -> Result<Result<bool, Unusable>, LookupError> {
    let (name, arg) = match mechanism.split_once([':', '/']) {
        Some((n, _)) => (n, &mechanism[n.len()..]),
        None => (mechanism, ""),
    };
    let target = |arg: &str| -> (String, Cidr) {
        let arg = arg.strip_prefix(':').unwrap_or(arg);
        let (host, cidr) = match arg.find('/') {
            Some(i) => (&arg[..i], Cidr::parse(&arg[i..])),
            None => (arg, Cidr::default()),
        };
        let host = if host.is_empty() { domain } else { host };
        (host.to_string(), cidr)
    };
    let lookup = spend;
    Ok(match name.to_ascii_lowercase().as_str() {
        "all" => Ok(true),
        "ip4" | "ip6" => {
            let text = arg.strip_prefix(':').unwrap_or(arg);
            let (net, len) = text.split_once('/').unwrap_or((text, ""));
            match net.parse::<IpAddr>() {
                Ok(net) => Ok(in_network(ip, net, len.parse().ok())),
                Err(_) => Err(Unusable(format!(
                    "`{mechanism}` is not an IP address or network"
                ))),
            }
        }
        "a" => {
            if let Err(why) = lookup(lookups) {
                return Ok(Err(why));
            }
            let (host, cidr) = target(arg);
            let found = dns.addresses(&host).await?;
            Ok(found.iter().any(|&a| cidr.contains(a, ip)))
        }
        "mx" => {
            if let Err(why) = lookup(lookups) {
                return Ok(Err(why));
            }
            let (host, cidr) = target(arg);
            let mut hit = false;
            for exchange in dns.mx(&host).await?.iter().take(MX_LIMIT) {
                let found = dns.addresses(exchange).await?;
                hit |= found.iter().any(|&a| cidr.contains(a, ip));
            }
            Ok(hit)
        }
        "include" => {
            if let Err(why) = lookup(lookups) {
                return Ok(Err(why));
            }
            let (host, _) = target(arg);
            match evaluate(dns, host.clone(), ip, lookups, depth + 1).await? {
                Outcome::Pass(_) => Ok(true),
                Outcome::NotPass(_) => Ok(false),
                Outcome::NoRecord => Err(Unusable(format!(
                    "include:{host} names a domain without an SPF record"
                ))),
                Outcome::Broken(why) => Err(Unusable(format!("include:{host}: {why}"))),
            }
        }
        "exists" => {
            if let Err(why) = lookup(lookups) {
                return Ok(Err(why));
            }
            let (host, _) = target(arg);
            // A macro (%{i}...) names a different host per sender: herald
            // does not expand them, so such a term never matches here.
            if host.contains('%') {
                Ok(false)
            } else {
                Ok(!dns.addresses(&host).await?.is_empty())
            }
        }
        "ptr" => match lookup(lookups) {
            Err(why) => Err(why),
            // Discouraged by RFC 7208 (section 5.5) and not evaluated here.
            Ok(()) => Ok(false),
        },
        _ => Err(Unusable(format!("`{mechanism}` is not an SPF mechanism"))),
    })
}

/// The prefix lengths of `a` and `mx` (`/24`, `//64`, `/24//64`).
#[derive(Debug, Clone, Copy, Default)]
struct Cidr {
    v4: Option<u8>,
    v6: Option<u8>,
}

impl Cidr {
    fn parse(text: &str) -> Cidr {
        let (v4, v6) = match text.split_once("//") {
            Some((v4, v6)) => (v4, v6),
            None => (text, ""),
        };
        Cidr {
            v4: v4.strip_prefix('/').and_then(|n| n.parse().ok()),
            v6: v6.parse().ok(),
        }
    }

    fn contains(self, net: IpAddr, ip: IpAddr) -> bool {
        let len = match net {
            IpAddr::V4(_) => self.v4,
            IpAddr::V6(_) => self.v6,
        };
        in_network(ip, net, len)
    }
}

/// Whether `ip` is in `net`/`len` (the whole address when `len` is none).
pub fn in_network(ip: IpAddr, net: IpAddr, len: Option<u8>) -> bool {
    let (ip, net, bits) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(a.to_bits()), u128::from(b.to_bits()), 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (a.to_bits(), b.to_bits(), 128),
        _ => return false,
    };
    let len = u32::from(len.unwrap_or(bits as u8)).min(bits);
    if len == 0 {
        return true;
    }
    let shift = bits - len;
    (ip >> shift) == (net >> shift)
}
