//! `herald check --dns`: what receivers will find in DNS about the mail
//! herald sends. Mail whose DKIM record does not match the key, whose
//! domain has no DMARC policy, or whose relay is not in SPF lands in spam
//! without anyone being told; this asks the same questions receivers ask,
//! before the send, and says what to publish.
//!
//! For the From domain and the DKIM selectors in use: the DKIM record and
//! whether it holds the configured key; SPF of the envelope sender's
//! domain and whether it covers every relay's addresses; the DMARC policy
//! and whether DKIM or SPF align with From; the reverse DNS of the relays.
//! A resolver that does not answer is one finding, not one per question.

pub mod lookup;
mod records;
mod spf;
#[cfg(test)]
mod tests;

use std::net::IpAddr;

use crate::config::{DkimAlgorithm, DnsOptions};
use crate::findings::{Finding, Severity};
use lookup::{Dns, LookupError, plain};
use records::KeyMatch;
use spf::Outcome;

/// Why the DNS checks could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error(
        "herald could not start its DNS lookups ({0}); this machine may be out of memory or threads"
    )]
    Runtime(#[source] std::io::Error),
}

/// What the DNS checks need, the keys read.
struct Plan {
    from_domain: String,
    envelope_domain: String,
    dkim_domain: Option<String>,
    dkim: Vec<DkimPlan>,
    relays: Vec<(String, String)>,
}

struct DkimPlan {
    selector: String,
    algorithm: DkimAlgorithm,
    public_key: Vec<u8>,
}

/// One relay address to check.
struct RelayAddress {
    relay: String,
    host: String,
    ip: IpAddr,
}

/// Runs every check and returns the findings, in the order DKIM, SPF,
/// DMARC, reverse DNS.
pub fn check(options: &DnsOptions) -> Result<Vec<Finding>, DnsError> {
    let mut out = Vec::new();
    let Some(plan) = plan(options, &mut out) else {
        return Ok(out);
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DnsError::Runtime)?;
    let result = runtime.block_on(async {
        let dns = Dns::new(options.resolver)?;
        run(&dns, &plan, &mut out).await
    });
    match result {
        Ok(()) => Ok(out),
        // Every answer so far is moot when the server stops answering.
        Err(e) => Ok(vec![finding(
            Severity::Warning,
            "dns-unreachable",
            e.to_string(),
            "Run `herald check --dns` again once the resolver answers. To ask another server, set dns_resolver in herald.yaml (like dns_resolver: 9.9.9.9) or with --set dns_resolver=9.9.9.9."
                .into(),
        )]),
    }
}

/// The settings as the checks need them, the keys read; `None` (with a
/// finding) without `from`.
fn plan(options: &DnsOptions, out: &mut Vec<Finding>) -> Option<Plan> {
    let (Some(from_domain), Some(envelope_domain)) =
        (&options.from_domain, &options.envelope_domain)
    else {
        out.push(finding(
            Severity::Error,
            "dns-no-from",
            "there is no `from` address, so herald does not know which domain to look up".into(),
            "Set `from` in herald.yaml, like from: \"OpenInfra Foundation <newsletter@example.org>\".".into(),
        ));
        return None;
    };
    let mut dkim = Vec::new();
    for setting in &options.dkim_keys {
        match crate::dkim::load_key(&setting.key_file, &setting.selector) {
            Ok(key) => dkim.push(DkimPlan {
                selector: setting.selector.clone(),
                algorithm: key.algorithm(),
                public_key: key.public_key(),
            }),
            Err(e) => out.push(finding(
                Severity::Error,
                "dkim-key-unreadable",
                e.into_input_error(setting).to_string(),
                "Fix the key file first: herald cannot compare a key it cannot read with DNS."
                    .into(),
            )),
        }
    }
    Some(Plan {
        from_domain: from_domain.clone(),
        envelope_domain: envelope_domain.clone(),
        dkim_domain: options.dkim_domain.clone(),
        dkim,
        relays: options.relays.clone(),
    })
}

async fn run(dns: &Dns, plan: &Plan, out: &mut Vec<Finding>) -> Result<(), LookupError> {
    let addresses = relay_addresses(dns, plan, out).await;
    let addresses = failed_as_finding(addresses, "relay addresses", out)?.unwrap_or_default();
    let dkim = dkim(dns, plan, out).await;
    failed_as_finding(dkim, "DKIM", out)?;
    let spf = spf(dns, plan, &addresses, out).await;
    let spf_passes = failed_as_finding(spf, "SPF", out)?.unwrap_or(false);
    let dmarc = dmarc(dns, plan, spf_passes, out).await;
    failed_as_finding(dmarc, "DMARC", out)?;
    let ptr = reverse(dns, &addresses, out).await;
    failed_as_finding(ptr, "reverse DNS", out)?;
    Ok(())
}

/// A lookup the server answered with an error is a warning about that
/// check (the others still run); an unreachable server ends them all.
fn failed_as_finding<T>(
    result: Result<T, LookupError>,
    what: &str,
    out: &mut Vec<Finding>,
) -> Result<Option<T>, LookupError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e @ LookupError::Failed { .. }) => {
            out.push(finding(
                Severity::Warning,
                "dns-lookup-failed",
                format!("{e}, so herald could not check {what}"),
                "Run `herald check --dns` again later; if it keeps failing, the domain's DNS servers may be misconfigured: ask whoever runs them.".into(),
            ));
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Every address of every relay; relays on this machine or a private
/// network are left out (with a notice): the address mail leaves from is
/// then another one, which herald cannot see.
async fn relay_addresses(
    dns: &Dns,
    plan: &Plan,
    out: &mut Vec<Finding>,
) -> Result<Vec<RelayAddress>, LookupError> {
    let mut all = Vec::new();
    for (relay, host) in &plan.relays {
        let ips = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => dns.addresses(host).await?,
        };
        if ips.is_empty() {
            out.push(finding(
                Severity::Warning,
                "relay-no-address",
                format!("the relay {host} (`{relay}`) has no address in DNS, so herald cannot check SPF and reverse DNS for it"),
                format!("Check the host name in `{relay}`; it must have an A or AAAA record."),
            ));
        }
        for ip in ips {
            if is_local(ip) {
                out.push(finding(
                    Severity::Notice,
                    "relay-local",
                    format!("the relay {host} ({ip}) is on this machine or a private network; mail reaches the internet from another address, which herald cannot check"),
                    format!("Make sure the SPF record of {} names the public address your mail leaves from.", plan.envelope_domain),
                ));
                continue;
            }
            all.push(RelayAddress {
                relay: relay.clone(),
                host: host.clone(),
                ip,
            });
        }
    }
    Ok(all)
}

fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified()
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
        }
    }
}

async fn dkim(dns: &Dns, plan: &Plan, out: &mut Vec<Finding>) -> Result<(), LookupError> {
    // Without DKIM there is nothing to look up; `check` says `dkim-off`.
    let Some(domain) = &plan.dkim_domain else {
        return Ok(());
    };
    for key in &plan.dkim {
        let name = format!("{}._domainkey.{domain}", key.selector);
        let want = records::dkim_record(key.algorithm, &key.public_key);
        let publish = format!(
            "Publish this TXT record: {name} TXT \"{want}\" (split the value into quoted parts of at most 255 characters if your DNS host asks)."
        );
        let found: Vec<String> = dns
            .txt(&name)
            .await?
            .into_iter()
            .filter(|t| t.to_ascii_lowercase().contains("p="))
            .collect();
        let Some(record) = found.first() else {
            out.push(finding(
                Severity::Error,
                "dkim-record-missing",
                format!("there is no DKIM record at {name}, so receivers cannot verify the `{}` signature and treat the mail as unsigned", key.selector),
                publish,
            ));
            continue;
        };
        let problem = match records::compare_dkim(record, key.algorithm, &key.public_key) {
            KeyMatch::Same => None,
            KeyMatch::Revoked => Some(format!("the DKIM record at {name} is revoked (empty p=)")),
            KeyMatch::OtherAlgorithm(k) => Some(format!(
                "the DKIM record at {name} is for k={k}, but herald signs with {} key",
                key.algorithm
            )),
            KeyMatch::OtherKey => Some(format!(
                "the DKIM record at {name} holds a different public key than the key file herald signs with for selector `{}`: every signature will fail",
                key.selector
            )),
        };
        match problem {
            Some(p) => out.push(finding(Severity::Error, "dkim-key-mismatch", p, publish)),
            None if records::dkim_testing(record) => out.push(finding(
                Severity::Notice,
                "dkim-testing",
                format!("the DKIM record at {name} has t=y (testing): receivers may treat signed mail as unsigned"),
                format!("Once mail verifies, publish it without t=y: {name} TXT \"{want}\"."),
            )),
            None => {}
        }
    }
    Ok(())
}

/// SPF of the envelope domain against every relay address; `true` when
/// all of them pass (what DMARC's SPF alignment needs).
async fn spf(
    dns: &Dns,
    plan: &Plan,
    addresses: &[RelayAddress],
    out: &mut Vec<Finding>,
) -> Result<bool, LookupError> {
    let domain = &plan.envelope_domain;
    let existing = spf::record(dns, domain).await?;
    let terms: Vec<String> = addresses.iter().map(|a| mechanism(a.ip)).collect();
    let record = match existing {
        Err(why) => {
            out.push(finding(
                Severity::Error,
                "spf-broken",
                why.0,
                format!("Merge them into one TXT record at {domain} that starts with v=spf1."),
            ));
            return Ok(false);
        }
        Ok(None) => {
            let mut all = terms.clone();
            all.dedup();
            out.push(finding(
                Severity::Error,
                "spf-missing",
                format!("{domain} has no SPF record, so receivers cannot tell whether the relays may send its mail"),
                format!("Publish this TXT record: {domain} TXT \"v=spf1 {}~all\".", all.iter().map(|t| format!("{t} ")).collect::<String>()),
            ));
            return Ok(false);
        }
        Ok(Some(record)) => record,
    };
    let mut all_pass = true;
    for (a, term) in addresses.iter().zip(&terms) {
        match spf::check(dns, domain, a.ip).await? {
            Outcome::Pass(_) => {}
            Outcome::Broken(why) => {
                all_pass = false;
                out.push(finding(
                    Severity::Error,
                    "spf-broken",
                    format!("the SPF record of {domain} is broken: {why}"),
                    format!("Fix the TXT record at {domain} (now \"{record}\"); receivers treat a broken record as a failure."),
                ));
                break;
            }
            Outcome::NotPass(_) | Outcome::NoRecord => {
                all_pass = false;
                out.push(finding(
                    Severity::Error,
                    "spf-relay-missing",
                    format!("the SPF record of {domain} does not allow the relay {} ({}, `{}`): its mail fails SPF", a.host, a.ip, a.relay),
                    format!("Add {term} to the TXT record at {domain}: {domain} TXT \"{}\".", with_term(&record, term)),
                ));
            }
        }
    }
    Ok(all_pass)
}

/// The SPF mechanism naming one address.
fn mechanism(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("ip4:{v4}"),
        IpAddr::V6(v6) => format!("ip6:{v6}"),
    }
}

/// `record` with `term` added before its `all` or `redirect=` (or at the end).
fn with_term(record: &str, term: &str) -> String {
    let words: Vec<&str> = record.split_ascii_whitespace().collect();
    let at = words
        .iter()
        .position(|w| {
            let w = w
                .trim_start_matches(['+', '-', '~', '?'])
                .to_ascii_lowercase();
            w == "all" || w.starts_with("redirect=")
        })
        .unwrap_or(words.len());
    let mut out: Vec<&str> = words[..at].to_vec();
    out.push(term);
    out.extend(&words[at..]);
    out.join(" ")
}

async fn dmarc(
    dns: &Dns,
    plan: &Plan,
    spf_passes: bool,
    out: &mut Vec<Finding>,
) -> Result<(), LookupError> {
    let from = &plan.from_domain;
    let org = records::organisational(from);
    let mut found = None;
    for domain in [from.as_str(), org.as_str()] {
        let name = format!("_dmarc.{domain}");
        if let Some(d) = dns.txt(&name).await?.iter().find_map(|t| records::dmarc(t)) {
            found = Some((name, d));
            break;
        }
        if domain == org {
            break;
        }
    }
    let Some((name, policy)) = found else {
        let mut places = vec![format!("_dmarc.{from}")];
        if &org != from {
            places.push(format!("_dmarc.{org}"));
        }
        out.push(finding(
            Severity::Error,
            "dmarc-missing",
            format!("{from} has no DMARC record (at {}): Gmail and Yahoo require one from bulk senders", places.join(" or ")),
            format!("Publish this TXT record: _dmarc.{org} TXT \"v=DMARC1; p=none; rua=mailto:dmarc-reports@{org}\" (p=none only asks for reports; move to p=quarantine once they show your mail passes)."),
        ));
        return Ok(());
    };
    if policy.policy == "none" {
        out.push(finding(
            Severity::Notice,
            "dmarc-none",
            format!("the DMARC policy at {name} is p=none: receivers are asked to do nothing with mail that fails, so others can send as {from}"),
            format!("Once DMARC reports show your mail passes, publish p=quarantine at {name}."),
        ));
    }
    let dkim_aligned = plan
        .dkim_domain
        .as_deref()
        .is_some_and(|d| records::aligned(d, from, policy.strict_dkim));
    let spf_aligned = records::aligned(&plan.envelope_domain, from, policy.strict_spf);
    // DMARC passes when either identifier aligns and passes.
    let passes = dkim_aligned || (spf_aligned && spf_passes);
    if !passes {
        out.push(finding(
            Severity::Error,
            "dmarc-unaligned",
            format!(
                "DMARC at {name} will fail: the DKIM domain ({}) and the return path's domain ({}) do not both align with From ({from}) and pass",
                plan.dkim_domain.as_deref().unwrap_or("none"),
                plan.envelope_domain
            ),
            format!("Sign with dkim_domain: {from} (or a subdomain of {org}), and publish its key."),
        ));
    } else if !dkim_aligned && plan.dkim_domain.is_some() {
        out.push(finding(
            Severity::Warning,
            "dmarc-dkim-unaligned",
            format!("the DKIM domain {} does not align with From ({from}); DMARC rests on SPF alone, which fails when mail is forwarded", plan.dkim_domain.as_deref().unwrap_or_default()),
            format!("Sign with dkim_domain: {from} (or a subdomain of {org})."),
        ));
    }
    Ok(())
}

/// Reverse DNS of each relay address: Gmail refuses mail from an address
/// without a PTR name, and many receivers want that name to point back.
async fn reverse(
    dns: &Dns,
    addresses: &[RelayAddress],
    out: &mut Vec<Finding>,
) -> Result<(), LookupError> {
    for a in addresses {
        let names = dns.reverse(a.ip).await?;
        let Some(name) = names.first() else {
            out.push(finding(
                Severity::Warning,
                "ptr-missing",
                format!("the relay address {} ({}) has no reverse DNS name: Gmail and others refuse or spam-folder mail from such addresses", a.ip, a.host),
                format!("Ask whoever runs {} (its hosting provider) to set a PTR record for {} naming a host whose address is {}, like {}.", a.host, a.ip, a.ip, a.host),
            ));
            continue;
        };
        if !dns.addresses(name).await?.contains(&a.ip) {
            out.push(finding(
                Severity::Warning,
                "ptr-mismatch",
                format!("the relay address {} ({}) has the reverse name {}, but {} does not point back to {}", a.ip, a.host, plain(name), plain(name), a.ip),
                format!("Give {} an A/AAAA record for {}, or ask the relay's provider to set the PTR record of {} to a name that does.", plain(name), a.ip, a.ip),
            ));
        }
    }
    Ok(())
}

fn finding(severity: Severity, code: &'static str, message: String, fix: String) -> Finding {
    Finding {
        severity,
        code,
        line: None,
        message,
        fix,
    }
}
