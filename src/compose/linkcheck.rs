//! `herald check --links`: visits every distinct web link and picture of
//! the email once and reports the broken ones with the post's line.
//!
//! The proxy of the environment is used as curl would: `HTTPS_PROXY` (or
//! `https_proxy`) for https links, `HTTP_PROXY` for http ones, `ALL_PROXY`
//! for both, except for the hosts in `NO_PROXY` (`host`, `.domain`, `*`).
//! When no link at all could be reached (no network, no DNS, the proxy
//! down), that is one warning, "could not check N links: no network",
//! never a list of links to correct.
//!
//! HEAD first (a page need not be downloaded to know it is there), GET when
//! a server refuses HEAD (405, 501). Redirects are followed by hand, up to
//! five, so a loop and a move to another site can be told apart from a
//! page that works. At most four links at a time and one at a time per
//! host: a check of a newsletter must not look like an attack on the site.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use crate::compose::content::visit::{self, Visit};
use crate::compose::content::{Block, Content, Image, Link};
use crate::config::LinkOptions;
use crate::findings::{Finding, Severity};

const MAX_REDIRECTS: usize = 5;
const TIMEOUT: Duration = Duration::from_secs(10);
const PARALLEL: usize = 4;

/// The web links of the content, each with the first line it is on;
/// mailto:, merge-field links and the unsubscribe page are left out.
pub fn links(content: &Content, config: &LinkOptions) -> Vec<(String, usize)> {
    struct Collect(Vec<(String, usize)>);
    impl<'a> Visit<'a> for Collect {
        fn link(&mut self, l: &'a Link) {
            self.0.push((l.url.clone(), l.line));
        }
        fn image(&mut self, i: &'a Image) {
            // The picture itself: a header image that is gone shows as a
            // broken box in every copy.
            self.0.push((i.src.clone(), i.line));
            if let Some(l) = &i.link {
                self.0.push((l.clone(), i.line));
            }
        }
        fn block(&mut self, b: &'a Block) {
            if let Block::Button(b) = b {
                self.0.push((b.url.clone(), b.line));
            }
        }
    }
    let mut c = Collect(Vec::new());
    visit::content(&mut c, content);
    let unsubscribe = config.unsubscribe_url.as_ref().map(|u| u.as_str());
    let mut seen = HashSet::new();
    c.0.into_iter()
        .filter(|(u, _)| u.starts_with("http://") || u.starts_with("https://"))
        .filter(|(u, _)| !u.contains("{{") && !u.contains("%7B%7B"))
        .filter(|(u, _)| !unsubscribe.is_some_and(|p| u.starts_with(p)))
        .filter(|(u, _)| seen.insert(u.clone()))
        .collect()
}

/// What one link turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Works, but ends on another site.
    Moved(String),
    Broken(String),
    /// No answer at all: the name did not resolve, the connection or the
    /// proxy failed, or it took too long.
    Unreachable(String),
}

/// How long a link that worked is taken as working without a visit.
const CACHE_FOR: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

/// [`check`], skipping links that worked within the last day, per the
/// cache file `cache` (`linkcheck.json` in the journal folder), which is
/// then updated. Only links that worked are remembered: a broken one is
/// visited again, so a fix shows at once. The cache is a convenience: a
/// file that cannot be read or written is ignored (one over
/// [`crate::limits::MAX_LINKCHECK_CACHE_BYTES`] with a warning, and then
/// replaced).
pub fn check_cached(links: &[(String, usize)], cache: &std::path::Path) -> Vec<Finding> {
    let now = crate::clock::now();
    let mut known: BTreeMap<String, String> = read_cache(cache)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    known.retain(|_, at| {
        at.parse::<jiff::Timestamp>()
            .is_ok_and(|t| now.duration_since(t) < CACHE_FOR)
    });
    let todo: Vec<(String, usize)> = links
        .iter()
        .filter(|(u, _)| !known.contains_key(u))
        .cloned()
        .collect();
    let results = visit_all(&todo);
    for (u, _, v) in &results {
        if matches!(v, Verdict::Ok | Verdict::Moved(_)) {
            known.insert(u.clone(), now.to_string());
        }
    }
    let findings = findings(results);
    if let Some(dir) = cache.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Ok(text) = serde_json::to_vec_pretty(&known) {
        let _ = std::fs::write(cache, text);
    }
    findings
}

/// The cache file's bytes, `None` when there is none or it cannot be
/// read; capped, so a stray large file there (or `/dev/zero` linked in its
/// place) is not read into memory.
fn read_cache(cache: &std::path::Path) -> Option<Vec<u8>> {
    if !cache.exists() {
        return None;
    }
    crate::limits::read_capped_or(
        cache,
        crate::limits::MAX_LINKCHECK_CACHE_BYTES,
        "link cache",
        "herald's link cache holds one line per link. herald does not use it and writes a new \
         one; if this is a file of yours, move it out of the journal folder.",
    )
    .map_err(|e| tracing::warn!("{e}"))
    .ok()
}

/// Checks the links (see the module's note on politeness).
pub fn check(links: &[(String, usize)]) -> Vec<Finding> {
    findings(visit_all(links))
}

/// The proxy to use for `url`, per the environment (see the module's note).
fn proxy_for(url: &str, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let var = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| env(n).filter(|v| !v.trim().is_empty()))
    };
    let parsed = url::Url::parse(url).ok()?;
    let host = parsed
        .host_str()?
        .trim_matches(['[', ']'])
        .to_ascii_lowercase();
    if let Some(no) = var(&["NO_PROXY", "no_proxy"]) {
        let skip = no
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .any(|e| {
                let e = e.to_ascii_lowercase();
                // A port in an entry (`example.org:8080`) is ignored.
                let e = e
                    .rsplit_once(':')
                    .filter(|(h, p)| !h.contains(':') && p.chars().all(|c| c.is_ascii_digit()))
                    .map_or(e.as_str(), |(h, _)| h);
                let e = e.trim_start_matches("*.").trim_start_matches('.');
                e == "*" || host == e || host.ends_with(&format!(".{e}"))
            });
        if skip {
            return None;
        }
    }
    match parsed.scheme() {
        "https" => var(&["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]),
        _ => var(&["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]),
    }
}

/// A proxy from the environment that ureq cannot use (every link it
/// would carry is then unreachable, with this as the reason).
#[derive(Debug, thiserror::Error)]
#[error("the proxy {proxy} cannot be used ({why})")]
struct ProxyError {
    proxy: String,
    /// Not a `source`: the message already says it.
    why: Box<ureq::Error>,
}

fn agent(proxy: Option<&str>) -> Result<ureq::Agent, ProxyError> {
    let mut b = ureq::AgentBuilder::new()
        .redirects(0)
        .timeout(TIMEOUT)
        .user_agent(concat!(
            "herald/",
            env!("CARGO_PKG_VERSION"),
            " (newsletter link check)"
        ));
    if let Some(p) = proxy {
        let proxy = ureq::Proxy::new(p).map_err(|e| ProxyError {
            proxy: p.to_string(),
            why: Box::new(e),
        })?;
        b = b.proxy(proxy);
    }
    Ok(b.build())
}

/// Each link with what became of it.
fn visit_all(links: &[(String, usize)]) -> Vec<(String, usize, Verdict)> {
    let env = |k: &str| std::env::var(k).ok();
    // One queue per host, so one worker at a time talks to a host.
    let mut by_host: BTreeMap<String, Vec<(String, usize)>> = BTreeMap::new();
    for (u, line) in links {
        let host = url::Url::parse(u)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default();
        by_host.entry(host).or_default().push((u.clone(), *line));
    }
    let queue = Mutex::new(by_host.into_values().collect::<Vec<_>>());
    let results = Mutex::new(Vec::new());
    // One agent per proxy (most often just "none"), made once.
    let mut agents: BTreeMap<Option<String>, Result<ureq::Agent, ProxyError>> = BTreeMap::new();
    for (u, _) in links {
        let p = proxy_for(u, &env);
        agents
            .entry(p.clone())
            .or_insert_with(|| agent(p.as_deref()));
    }
    std::thread::scope(|s| {
        for _ in 0..PARALLEL {
            s.spawn(|| {
                loop {
                    let Some(group) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop() else {
                        break;
                    };
                    for (u, line) in group {
                        let v = match &agents[&proxy_for(&u, &env)] {
                            Ok(agent) => visit_one(agent, &u),
                            Err(why) => Verdict::Unreachable(why.to_string()),
                        };
                        results
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((u, line, v));
                    }
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    results
}

/// What the visits mean for the writer. When not one link got an answer,
/// the links are not the problem: one warning says the check did not run.
fn findings(results: Vec<(String, usize, Verdict)>) -> Vec<Finding> {
    let unreachable: Vec<&str> = results
        .iter()
        .filter_map(|(_, _, v)| match v {
            Verdict::Unreachable(why) => Some(why.as_str()),
            _ => None,
        })
        .collect();
    if !results.is_empty() && unreachable.len() == results.len() {
        return vec![Finding {
            severity: Severity::Warning,
            code: "links-unchecked",
            line: None,
            message: format!(
                "could not check {} link{}: no network ({})",
                results.len(),
                if results.len() == 1 { "" } else { "s" },
                unreachable[0]
            ),
            fix: "check the links again where this computer reaches the web \
                  (a proxy is taken from HTTPS_PROXY, HTTP_PROXY and NO_PROXY)"
                .into(),
        }];
    }
    results
        .into_iter()
        .filter_map(|(u, line, v)| match &v {
            Verdict::Ok => None,
            Verdict::Moved(to) => Some(Finding {
                severity: Severity::Notice,
                code: "link-moved",
                line: Some(line),
                message: format!("{u} leads to another site: {to}"),
                fix: "link to where it ends up, if that is the page you meant".into(),
            }),
            Verdict::Broken(why) | Verdict::Unreachable(why) => Some(Finding {
                severity: Severity::Error,
                code: "link-broken",
                line: Some(line),
                message: match v {
                    Verdict::Unreachable(_) => format!("{u}: cannot be reached ({why})"),
                    _ => format!("{u}: {why}"),
                },
                fix: "correct the link or the picture's address, or remove it".into(),
            }),
        })
        .collect()
}

fn visit_one(agent: &ureq::Agent, start: &str) -> Verdict {
    let mut url = start.to_string();
    let mut seen = vec![url.clone()];
    for _ in 0..=MAX_REDIRECTS {
        let mut answer = agent.head(&url).call();
        if let Err(ureq::Error::Status(405 | 501, _)) = answer {
            answer = agent.get(&url).call();
        }
        let resp = match answer {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => {
                return Verdict::Broken(format!("the site answers {code} {}", r.status_text()));
            }
            Err(ureq::Error::Transport(t)) => {
                return Verdict::Unreachable(t.to_string());
            }
        };
        if !(300..400).contains(&resp.status()) {
            return match (host_of(start), host_of(&url)) {
                (a, b) if a != b => Verdict::Moved(url),
                _ => Verdict::Ok,
            };
        }
        let Some(next) = resp
            .header("location")
            .and_then(|l| url::Url::parse(&url).ok()?.join(l).ok())
        else {
            return Verdict::Broken(format!("redirect {} without a place to go", resp.status()));
        };
        let next = next.to_string();
        if seen.contains(&next) {
            return Verdict::Broken(format!("redirects in a loop (back to {next})"));
        }
        seen.push(next.clone());
        url = next;
    }
    Verdict::Broken(format!("more than {MAX_REDIRECTS} redirects"))
}

fn host_of(u: &str) -> Option<String> {
    url::Url::parse(u).ok().and_then(|u| {
        u.host_str()
            .map(|h| h.trim_start_matches("www.").to_ascii_lowercase())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proxy_comes_from_the_environment_except_for_no_proxy_hosts() {
        let vars = [
            ("HTTPS_PROXY", "http://proxy.example:3128"),
            ("http_proxy", "http://plain.example:8080"),
            ("NO_PROXY", "localhost, .internal.example,127.0.0.1:9000"),
        ];
        let env = |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        let p = |u: &str| proxy_for(u, &env);
        assert_eq!(
            p("https://openinfra.org/blog").as_deref(),
            Some("http://proxy.example:3128")
        );
        assert_eq!(
            p("http://openinfra.org/").as_deref(),
            Some("http://plain.example:8080")
        );
        assert_eq!(p("https://localhost/x"), None);
        assert_eq!(p("https://wiki.internal.example/x"), None);
        assert_eq!(p("https://internal.example/x"), None);
        assert_eq!(p("http://127.0.0.1:8000/x"), None);
        assert!(p("https://notinternal.example/x").is_some());
        let none = |_: &str| None;
        assert_eq!(proxy_for("https://openinfra.org/", &none), None);
    }

    #[test]
    fn no_answer_from_any_link_is_one_warning_not_errors() {
        let r = vec![
            (
                "https://a.example/".to_string(),
                3,
                Verdict::Unreachable("dns failed".into()),
            ),
            (
                "https://b.example/".to_string(),
                5,
                Verdict::Unreachable("dns failed".into()),
            ),
        ];
        let f = findings(r);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].severity, Severity::Warning);
        assert!(
            f[0].message
                .starts_with("could not check 2 links: no network ("),
            "{}",
            f[0].message
        );
        assert!(!f[0].fix.contains("correct"));
        // One site down among answering ones is that link's problem.
        let r = vec![
            ("https://a.example/".to_string(), 3, Verdict::Ok),
            (
                "https://b.example/".to_string(),
                5,
                Verdict::Unreachable("timed out".into()),
            ),
        ];
        let f = findings(r);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].severity, Severity::Error);
        assert!(f[0].message.contains("cannot be reached (timed out)"));
    }
}
