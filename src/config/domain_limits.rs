//! Domain limits (`domain_limits:`): a rate and a number of connections
//! per recipient domain or group of domains, across all relays.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;

/// One entry of `domain_limits:`: a limit on the messages to a group of
/// recipient domains, across all relays (big mailbox providers slow down
/// senders who push too fast at their domains).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainLimit {
    /// For messages and `herald status`; default: the first domain.
    pub name: String,
    /// Lower-case, as written (exact match on the recipient's domain; a subdomain is not included).
    /// A leading `@` (`@gmail.com`) is taken off without a word; a domain
    /// written twice in one entry is kept once.
    pub domains: Vec<String>,
    /// At most this many messages per window to these domains, whichever
    /// relay carries them.
    pub rate: Option<Rate>,
    /// At most this many messages to these domains in flight at once,
    /// whichever relay carries them.
    pub connections: Option<usize>,
}

/// The keys a `domain_limits` entry may have.
pub(super) const DOMAIN_LIMIT_KEYS: &[&str] = &["name", "domains", "rate", "connections"];

pub(super) const DOMAIN_LIMITS_HOW: &str = "write the domain limits as a list, like [{name: microsoft, domains: [outlook.com, hotmail.com], rate: 10/s}]";

/// One recipient domain of a domain limit, lower-cased.
pub(super) fn limit_domain(v: &str) -> Result<String, ValueError> {
    let v = v.trim();
    let d = v.strip_prefix('@').unwrap_or(v).to_ascii_lowercase();
    if d.is_empty() {
        return Err("a domain is empty; write them like [outlook.com, hotmail.com]".into());
    }
    if d.contains('@') {
        return Err(format!(
            "`{}` is an address; write only the part after @, like gmail.com",
            v.escape_debug()
        )
        .into());
    }
    if d.contains('*') {
        return Err(format!(
            "`{}`: write each domain in full, like gmail.com (a subdomain is not included by \
             its parent; list it as well)",
            v.escape_debug()
        )
        .into());
    }
    if d.contains([',', ' ', '\t']) {
        return Err(format!(
            "`{}` is several domains or has a space; write several domains in brackets, like \
             [outlook.com, hotmail.com]",
            v.escape_debug()
        )
        .into());
    }
    let labels_ok = d.split('.').all(|l| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    });
    // The last part is never all digits: an IP address is not a mailbox
    // provider's domain.
    let top_ok = d
        .rsplit('.')
        .next()
        .is_some_and(|t| t.chars().any(|c| c.is_ascii_alphabetic()));
    if !d.contains('.') || !labels_ok || !top_ok {
        return Err(format!(
            "`{}` is not a domain; write the part after @ of the addresses, like gmail.com or \
             outlook.com (letters, digits, `-` and dots; no https://)",
            v.escape_debug()
        )
        .into());
    }
    Ok(d)
}

/// The `domains:` of a domain limit: a list, or one domain on its own;
/// each lower-cased and kept once.
fn limit_domains(v: &yaml_serde::Value) -> Result<Vec<String>, ValueError> {
    let list = match v {
        yaml_serde::Value::Sequence(list) => list.clone(),
        yaml_serde::Value::Mapping(_) => {
            return Err("`domains` is a list, like `domains: [outlook.com, hotmail.com]`".into());
        }
        yaml_serde::Value::Null => Vec::new(),
        one => vec![one.clone()],
    };
    let mut out: Vec<String> = Vec::new();
    for d in &list {
        if matches!(
            d,
            yaml_serde::Value::Mapping(_) | yaml_serde::Value::Sequence(_)
        ) {
            return Err(
                "`domains` is a list of domains, like `domains: [outlook.com, hotmail.com]`".into(),
            );
        }
        let d = limit_domain(&scalar(d)).map_err(|e| e.key("domains"))?;
        if !out.contains(&d) {
            out.push(d);
        }
    }
    Ok(out)
}

/// One entry of `domain_limits:`.
pub(super) fn domain_limit_entry(v: &yaml_serde::Value) -> Result<DomainLimit, ValueError> {
    let yaml_serde::Value::Mapping(map) = v else {
        return Err(
            "each domain limit is a map, like `- domains: [outlook.com, hotmail.com]` with \
             `rate: 10/s` below it"
                .into(),
        );
    };
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    let mut domains: Option<Vec<String>> = None;
    for (k, v) in map {
        let key = scalar(k);
        if !DOMAIN_LIMIT_KEYS.contains(&key.as_str()) {
            let hint = if key == "domain" {
                " (`domains`, with an s, even for one)"
            } else {
                ""
            };
            return Err(format!(
                "a domain limit has no `{key}`; it takes {}{hint}",
                DOMAIN_LIMIT_KEYS.join(", ")
            )
            .into());
        }
        if key == "domains" {
            domains = Some(limit_domains(v)?);
            continue;
        }
        if matches!(
            v,
            yaml_serde::Value::Mapping(_) | yaml_serde::Value::Sequence(_)
        ) {
            return Err(format!("`{key}` must be a single value").into());
        }
        fields.insert(key, scalar(v));
    }
    let domains = match domains {
        None => {
            return Err("it has no `domains`; write the domains it limits, like \
                 `domains: [outlook.com, hotmail.com]` or `domains: gmail.com`"
                .into());
        }
        Some(d) if d.is_empty() => {
            return Err("`domains` is empty; write the domains it limits, like \
                 `domains: [outlook.com, hotmail.com]`"
                .into());
        }
        Some(d) => d,
    };
    let name = match fields.get("name") {
        Some(n) => {
            let n = one_line(n)?;
            if !n.chars().any(|c| c.is_ascii_alphanumeric()) {
                return Err(format!(
                    "the name `{n}` needs a letter or digit, like `name: microsoft`"
                )
                .into());
            }
            n
        }
        None => domains[0].clone(),
    };
    let rate = fields
        .get("rate")
        .map(|r| Rate::parse(r))
        .transpose()
        .map_err(|e| e.key("rate"))?;
    let connections = fields
        .get("connections")
        .map(|c| number::<usize>(c).and_then(at_least_one))
        .transpose()
        .map_err(|e| e.key("connections"))?;
    if rate.is_none() && connections.is_none() {
        return Err(format!(
            "it limits nothing; give `{name}` a `rate:` (like 10/s), `connections:` (like 2), or both"
        ).into());
    }
    Ok(DomainLimit {
        name,
        domains,
        rate,
        connections,
    })
}

/// Entries that clash with an earlier one (a domain in two entries, two
/// entries with one name): the index of the later one and what to do, one
/// problem per entry (a shared first domain also makes a shared default
/// name; saying so twice would be noise). Each entry comes with its index
/// in the list (from 0; entries that could not be read are left out), and
/// is numbered from 1 in the messages.
pub(super) fn domain_limit_clashes<'a>(
    limits: impl Iterator<Item = (usize, &'a DomainLimit)>,
) -> Vec<(usize, String)> {
    let mut seen: Vec<(usize, &DomainLimit)> = Vec::new();
    let mut out = Vec::new();
    for (i, l) in limits {
        let shared_domain = l.domains.iter().find_map(|d| {
            let (j, other) = seen.iter().find(|(_, o)| o.domains.contains(d))?;
            Some(format!(
                "`{d}` is in this entry (`{}`) and in entry {} (`{}`); a domain can be in \
                 one entry only, so remove it from one of them",
                l.name,
                j + 1,
                other.name
            ))
        });
        let shared_name = || {
            let (j, _) = seen
                .iter()
                .find(|(_, o)| o.name.eq_ignore_ascii_case(&l.name))?;
            Some(format!(
                "the name `{}` is taken by entry {}; give each entry its own `name:`{}",
                l.name,
                j + 1,
                if l.name == l.domains[0] {
                    " (without one, an entry is named after its first domain)"
                } else {
                    ""
                }
            ))
        };
        if let Some(problem) = shared_domain.or_else(shared_name) {
            out.push((i, problem));
        }
        seen.push((i, l));
    }
    out
}

/// `domain_limits` from text (HERALD_DOMAIN_LIMITS, `--set domain_limits=...`):
/// the same list in YAML's one-line form,
/// `[{name: microsoft, domains: [outlook.com, hotmail.com], rate: 10/s, connections: 2}]`.
pub(super) fn domain_limits_from_text(v: &str) -> Result<Vec<DomainLimit>, ValueError> {
    let value: yaml_serde::Value =
        yaml_serde::from_str(v).map_err(|_| DOMAIN_LIMITS_HOW.to_string())?;
    let yaml_serde::Value::Sequence(list) = value else {
        return Err(DOMAIN_LIMITS_HOW.into());
    };
    let limits = list
        .iter()
        .enumerate()
        .map(|(i, e)| domain_limit_entry(e).map_err(|m| m.entry("domain limit", i)))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some((i, e)) = domain_limit_clashes(limits.iter().enumerate())
        .into_iter()
        .next()
    {
        return Err(ValueError::from(e).entry("domain limit", i));
    }
    Ok(limits)
}

/// The domain limits in the one-line form [`domain_limits_from_text`]
/// reads back.
pub(super) fn show_domain_limits(limits: &[DomainLimit]) -> Option<String> {
    if limits.is_empty() {
        return None;
    }
    let items: Vec<String> = limits
        .iter()
        .map(|l| {
            // The domains need no quotes: letters, digits, `-` and dots,
            // never a number (see `limit_domain`).
            let mut parts = vec![
                format!("name: {}", yaml_quoted(&l.name)),
                format!("domains: [{}]", l.domains.join(", ")),
            ];
            if let Some(rate) = l.rate {
                parts.push(format!("rate: {rate}"));
            }
            if let Some(c) = l.connections {
                parts.push(format!("connections: {c}"));
            }
            format!("{{{}}}", parts.join(", "))
        })
        .collect();
    Some(format!("[{}]", items.join(", ")))
}

impl Config {
    /// `domain_limits:` in the file: each entry checked on its own, its
    /// problems reported at its `- ` line.
    pub(super) fn apply_domain_limits_file(
        &mut self,
        path: &Path,
        text: &str,
        list: &[yaml_serde::Value],
        source: Source,
        problems: &mut Problems,
    ) {
        let sources = entry_sources(path, text, "domain_limits", &source, list.len());
        let mut limits = Vec::new();
        let mut ok = true;
        for ((i, entry), at) in list.iter().enumerate().zip(sources) {
            match domain_limit_entry(entry) {
                Ok(l) => limits.push((i, l, at)),
                Err(e) => {
                    ok = false;
                    problems.push(at, format!("`domain_limits` entry {}: {e}", i + 1));
                }
            }
        }
        for (i, e) in domain_limit_clashes(limits.iter().map(|(i, l, _)| (*i, l))) {
            ok = false;
            let at = limits.iter().find(|(j, _, _)| *j == i).map(|(_, _, at)| at);
            problems.push(
                at.cloned().unwrap_or_else(|| source.clone()),
                format!("`domain_limits` entry {}: {e}", i + 1),
            );
        }
        if ok {
            self.domain_limits = limits.into_iter().map(|(_, l, _)| l).collect();
            self.sources.insert("domain_limits", source);
        }
    }

    /// The index in `domain_limits` of the entry that limits mail to
    /// `domain` (the part after @ of a recipient's address; any case), if
    /// any. An exact match: `mail.example.org` is not in `example.org`'s entry.
    pub fn domain_limit_of(&self, domain: &str) -> Option<usize> {
        let domain = domain.trim().trim_end_matches('.');
        self.domain_limits
            .iter()
            .position(|l| l.domains.iter().any(|d| d.eq_ignore_ascii_case(domain)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::config::test_util::{env, file};
    #[allow(unused_imports)]
    use crate::config::*;

    #[test]
    fn domain_limits_per_group_of_domains() {
        let (_d, path) = file(
            "from: News <news@example.org>\n\
             domain_limits:\n  \
             - name: microsoft\n    domains: [Outlook.com, hotmail.com, \"@live.com\", msn.com]\n    \
             rate: 10/s\n    connections: 2\n  \
             - domains: gmail.com\n    rate: 20/s\n\
             smtp_url: smtp://mail.example.org:587\n",
        );
        let c = Config::load_with(Some(&path), env(&[]), &[]).unwrap();
        assert_eq!(
            c.domain_limits,
            vec![
                DomainLimit {
                    name: "microsoft".into(),
                    domains: vec![
                        "outlook.com".into(),
                        "hotmail.com".into(),
                        "live.com".into(),
                        "msn.com".into()
                    ],
                    rate: Some(Rate::parse("10/s").unwrap()),
                    connections: Some(2),
                },
                // One domain without brackets; named after it.
                DomainLimit {
                    name: "gmail.com".into(),
                    domains: vec!["gmail.com".into()],
                    rate: Some(Rate::parse("20/s").unwrap()),
                    connections: None,
                },
            ]
        );
        assert_eq!(
            c.source("domain_limits").to_string(),
            format!("{}:2", path.display())
        );
        // A recipient's domain, in any case; a subdomain is not included.
        assert_eq!(c.domain_limit_of("hotmail.com"), Some(0));
        assert_eq!(c.domain_limit_of("LIVE.com"), Some(0));
        assert_eq!(c.domain_limit_of("gmail.com"), Some(1));
        assert_eq!(c.domain_limit_of("mail.gmail.com"), None);
        assert_eq!(c.domain_limit_of("example.org"), None);
        assert_eq!(Config::default().domain_limit_of("gmail.com"), None);

        // What `herald config` shows reads back as the same list.
        let shown = c
            .entries()
            .into_iter()
            .find(|e| e.name == "domain_limits")
            .unwrap()
            .value
            .unwrap();
        assert_eq!(
            shown,
            "[{name: \"microsoft\", domains: [outlook.com, hotmail.com, live.com, msn.com], \
             rate: 10/s, connections: 2}, {name: \"gmail.com\", domains: [gmail.com], rate: 20/s}]"
        );
        let mut d = Config::default();
        d.set("domain_limits", &shown, "--set domain_limits")
            .unwrap();
        assert_eq!(d.domain_limits, c.domain_limits);
    }

    #[test]
    fn domain_limits_from_the_variable_in_one_line() {
        // The variable, in the one-line form; a single domain as a string.
        let c = Config::load_with(
            None,
            env(&[(
                "HERALD_DOMAIN_LIMITS",
                "[{name: microsoft, domains: [outlook.com, hotmail.com], rate: 10/s, connections: 2}, \
                 {domains: yahoo.com, connections: 1}]",
            )]),
            &[],
        )
        .unwrap();
        assert_eq!(c.domain_limits.len(), 2);
        assert_eq!(c.domain_limits[1].name, "yahoo.com");
        assert_eq!(c.domain_limits[1].domains, vec!["yahoo.com".to_string()]);
        assert_eq!(
            (c.domain_limits[1].rate, c.domain_limits[1].connections),
            (None, Some(1))
        );
        assert_eq!(
            c.source("domain_limits").to_string(),
            "HERALD_DOMAIN_LIMITS"
        );
        // Problems in the text form name the entry.
        let e = Config::load_with(
            None,
            env(&[(
                "HERALD_DOMAIN_LIMITS",
                "[{domains: gmail.com, rate: 5/s}, {domains: [gmail.com], rate: 1/s}]",
            )]),
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("HERALD_DOMAIN_LIMITS:"), "{e}");
        assert!(e.message.contains("domain limit 2:"), "{e}");
        let e = Config::load_with(None, env(&[("HERALD_DOMAIN_LIMITS", "gmail.com")]), &[])
            .unwrap_err();
        assert!(
            e.message.contains("write the domain limits as a list"),
            "{e}"
        );
    }

    /// Bad `domain_limits:` entries: (the entries, the line of the bad one,
    /// words the message must hold).
    const BAD_DOMAIN_LIMITS: &[(&str, usize, &str)] = &[
        // (entries, the line of the bad one, words the message must hold)
        (
            "  - domains: gmail.com\n    rate: 5/s\n  - gmail.com\n",
            4,
            "each domain limit is a map",
        ),
        (
            "  - domains: gmail.com\n    speed: 5/s\n",
            2,
            "a domain limit has no `speed`; it takes name, domains, rate, connections",
        ),
        (
            "  - domain: gmail.com\n    rate: 5/s\n",
            2,
            "`domains`, with an s",
        ),
        ("  - rate: 5/s\n", 2, "it has no `domains`"),
        ("  - domains: []\n    rate: 5/s\n", 2, "`domains` is empty"),
        (
            "  - domains: [news@gmail.com]\n    rate: 5/s\n",
            2,
            "`news@gmail.com` is an address; write only the part after @",
        ),
        (
            "  - domains: [gmail com]\n    rate: 5/s\n",
            2,
            "write several domains in brackets",
        ),
        (
            "  - domains: \"outlook.com, hotmail.com\"\n    rate: 5/s\n",
            2,
            "write several domains in brackets",
        ),
        (
            "  - domains: [localhost]\n    rate: 5/s\n",
            2,
            "`localhost` is not a domain",
        ),
        (
            "  - domains: [https://gmail.com]\n    rate: 5/s\n",
            2,
            "no https://",
        ),
        (
            "  - domains: [\"*.gmail.com\"]\n    rate: 5/s\n",
            2,
            "a subdomain is not included",
        ),
        (
            "  - domains: [10.0.0.1]\n    rate: 5/s\n",
            2,
            "is not a domain",
        ),
        (
            "  - name: google\n    domains: gmail.com\n",
            2,
            "it limits nothing; give `google` a `rate:`",
        ),
        (
            "  - domains: gmail.com\n    connections: 0\n",
            2,
            "`connections`: must be at least 1",
        ),
        (
            "  - domains: gmail.com\n    rate: fast\n",
            2,
            "`rate`: `fast` is not a rate",
        ),
        (
            "  - name: google\n    domains: [gmail.com, googlemail.com]\n    rate: 5/s\n  \
             - domains: [yahoo.com, GoogleMail.com]\n    rate: 5/s\n",
            5,
            "`googlemail.com` is in this entry (`yahoo.com`) and in entry 1 (`google`)",
        ),
        (
            "  - name: big\n    domains: gmail.com\n    rate: 5/s\n  \
             - name: BIG\n    domains: yahoo.com\n    rate: 5/s\n",
            5,
            "the name `BIG` is taken by entry 1; give each entry its own `name:`",
        ),
        (
            "  - name: yahoo.com\n    domains: gmail.com\n    rate: 5/s\n  \
             - domains: yahoo.com\n    rate: 5/s\n",
            5,
            "named after its first domain",
        ),
    ];

    #[test]
    fn bad_domain_limits_are_named_at_their_line() {
        for &(entries, line, words) in BAD_DOMAIN_LIMITS {
            let text = format!("domain_limits:\n{entries}");
            let e = Config::parse(Path::new("herald.yaml"), &text).unwrap_err();
            assert_eq!(e.line, Some(line), "{text}: {e}");
            assert!(e.message.contains(words), "{text}: {e}");
        }
        // Each bad entry is its own problem, numbered as in the file even
        // when an earlier one could not be read.
        let e = Config::parse(
            Path::new("herald.yaml"),
            "domain_limits:\n  - domains: gmail.com\n  - domains: yahoo.com\n    rate: 1/s\n  \
             - domains: yahoo.com\n    rate: 2/s\n",
        )
        .unwrap_err();
        assert!(e.message.contains("2 settings are wrong"), "{e}");
        assert!(
            e.message
                .contains("herald.yaml:2: `domain_limits` entry 1: it limits nothing"),
            "{e}"
        );
        assert!(
            e.message.contains(
                "herald.yaml:5: `domain_limits` entry 3: `yahoo.com` is in this entry (`yahoo.com`) and in entry 2"
            ),
            "{e}"
        );
        // Not a list at all.
        let e = Config::parse(Path::new("herald.yaml"), "domain_limits: gmail.com\n").unwrap_err();
        assert_eq!(e.line, Some(1), "{e}");
        assert!(
            e.message.contains("write the domain limits as a list"),
            "{e}"
        );
    }
}
