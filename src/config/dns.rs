//! What `check --dns` reads from the settings ([`Config::dns`]): the
//! names receivers look up, the key files to compare, the relays and the
//! resolver to ask, and nothing else.

use std::net::SocketAddr;

use super::*;

#[derive(Debug, Clone)]
pub struct DnsOptions {
    /// The domain of `from`; `None` when `from` is not set.
    pub from_domain: Option<String>,
    /// The domain of MAIL FROM: `return_path`'s, else `from`'s. SPF is
    /// checked there, as receivers do.
    pub envelope_domain: Option<String>,
    pub dkim_domain: Option<String>,
    pub dkim_keys: Vec<DkimKey>,
    /// Each relay's setting name (`smtp_url`, `relays[0].url`...) and host.
    pub relays: Vec<(String, String)>,
    /// `dns_resolver`; `None`: /etc/resolv.conf.
    pub resolver: Option<SocketAddr>,
}

impl Config {
    pub fn dns(&self) -> DnsOptions {
        let domain = |m: &Mailbox| m.email.domain().to_ascii_lowercase();
        let from_domain = self.from.as_ref().map(domain);
        DnsOptions {
            envelope_domain: self
                .return_path
                .as_ref()
                .map(domain)
                .or(from_domain.clone()),
            from_domain,
            dkim_domain: self.dkim_domain.clone(),
            dkim_keys: self.dkim_keys(),
            relays: self
                .relay_list()
                .into_iter()
                .filter_map(|r| {
                    // An IPv6 host comes in brackets, as URLs write it.
                    let host = r
                        .url
                        .host_str()?
                        .trim_start_matches('[')
                        .trim_end_matches(']');
                    Some((r.setting.to_string(), host.to_string()))
                })
                .collect(),
            resolver: self.dns_resolver,
        }
    }
}
