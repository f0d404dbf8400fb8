//! Compose options: what the compose stages read from the settings, and
//! the values only they use (the campaign tags [`Utm`], [`HostList`]).

use std::fmt;

use super::*;

/// Campaign tags for links to the newsletter's own sites (`utm_source`,
/// `utm_medium`, `utm_campaign`), so the site's analytics can tell visits
/// from the newsletter. `campaign` may hold `{{ slug }}`, the post's slug.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utm {
    /// (name without `utm_`, value), in the order written.
    pub tags: Vec<(String, String)>,
}

impl Utm {
    /// `source=newsletter&medium=email&campaign={{ slug }}`.
    pub fn parse(v: &str) -> Result<Utm, ValueError> {
        let how = "write it as a map in herald.yaml (utm: then source:, medium:, campaign: indented \
                   below) or as source=newsletter&medium=email&campaign={{ slug }} in HERALD_UTM";
        let mut tags = Vec::new();
        for pair in v.split('&').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, val) = pair
                .split_once('=')
                .ok_or_else(|| format!("`{pair}` has no value; {how}"))?;
            let k = k.trim().trim_start_matches("utm_").to_ascii_lowercase();
            if !matches!(
                k.as_str(),
                "source" | "medium" | "campaign" | "term" | "content"
            ) {
                return Err(format!(
                    "`{k}` is not a campaign tag; use source, medium, campaign (also term, content); {how}"
                ).into());
            }
            let val = one_line(val)?;
            if val.is_empty() {
                return Err(format!("`{k}` is empty; {how}").into());
            }
            let rest = val.replace("{{ slug }}", "").replace("{{slug}}", "");
            if rest.contains("{{") {
                return Err(format!(
                    "`{val}`: only {{{{ slug }}}} can be filled in a campaign tag (every reader's link is the same); {how}"
                ).into());
            }
            tags.push((k, val));
        }
        if tags.is_empty() {
            return Err(format!("no tags given; {how}").into());
        }
        Ok(Utm { tags })
    }
}

impl fmt::Display for Utm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        f.write_str(&parts.join("&"))
    }
}

/// Host names, like `openinfra.org, superuser.openinfra.org`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostList(pub Vec<String>);

impl HostList {
    pub fn parse(v: &str) -> Result<HostList, ValueError> {
        let mut hosts = Vec::new();
        for h in v.split([',', ' ']).map(str::trim).filter(|h| !h.is_empty()) {
            let h = h.to_ascii_lowercase();
            if !h
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
                || !h.contains('.')
            {
                return Err(format!(
                    "`{h}` is not a host name; list hosts like openinfra.org, superuser.openinfra.org \
                     (no https://, no path)"
                ).into());
            }
            hosts.push(h);
        }
        Ok(HostList(hosts))
    }
}

impl fmt::Display for HostList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(", "))
    }
}
