//! `herald check --links`: visits every distinct web link of the email
//! once and reports the broken ones with the post's line.
//!
//! HEAD first (a page need not be downloaded to know it is there), GET when
//! a server refuses HEAD (405, 501). Redirects are followed by hand, up to
//! five, so a loop and a move to another site can be told apart from a
//! page that works. At most four links at a time and one at a time per
//! host: a check of a newsletter must not look like an attack on the site.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use crate::config::Config;
use crate::content::visit::{self, Visit};
use crate::content::{Block, Content, Image, Link};
use crate::findings::{Finding, Severity};

const MAX_REDIRECTS: usize = 5;
const TIMEOUT: Duration = Duration::from_secs(10);
const PARALLEL: usize = 4;

/// The web links of the content, each with the first line it is on;
/// mailto:, merge-field links and the unsubscribe page are left out.
pub fn links(content: &Content, config: &Config) -> Vec<(String, usize)> {
    struct Collect(Vec<(String, usize)>);
    impl<'a> Visit<'a> for Collect {
        fn link(&mut self, l: &'a Link) {
            self.0.push((l.url.clone(), l.line));
        }
        fn image(&mut self, i: &'a Image) {
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
}

/// How long a link that worked is taken as working without a visit.
const CACHE_FOR: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

/// [`check`], skipping links that worked within the last day, per the
/// cache file `cache` (`linkcheck.json` in the journal folder), which is
/// then updated. Only links that worked are remembered: a broken one is
/// visited again, so a fix shows at once. The cache is a convenience: a
/// file that cannot be read or written is ignored.
pub fn check_cached(links: &[(String, usize)], cache: &std::path::Path) -> Vec<Finding> {
    let now = crate::clock::now();
    let mut known: BTreeMap<String, String> = std::fs::read(cache)
        .ok()
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
    let findings = check(&todo);
    for (u, _) in &todo {
        let broken = findings
            .iter()
            .any(|f| f.severity == Severity::Error && f.message.starts_with(&format!("{u}: ")));
        if !broken {
            known.insert(u.clone(), now.to_string());
        }
    }
    if let Some(dir) = cache.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Ok(text) = serde_json::to_vec_pretty(&known) {
        let _ = std::fs::write(cache, text);
    }
    findings
}

/// Checks the links (see the module's note on politeness).
pub fn check(links: &[(String, usize)]) -> Vec<Finding> {
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
    let agent = ureq::AgentBuilder::new()
        .redirects(0)
        .timeout(TIMEOUT)
        .user_agent(concat!(
            "herald/",
            env!("CARGO_PKG_VERSION"),
            " (newsletter link check)"
        ))
        .build();
    std::thread::scope(|s| {
        for _ in 0..PARALLEL {
            s.spawn(|| {
                loop {
                    let Some(group) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop() else {
                        break;
                    };
                    for (u, line) in group {
                        let v = visit_one(&agent, &u);
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
        .into_iter()
        .filter_map(|(u, line, v)| match v {
            Verdict::Ok => None,
            Verdict::Moved(to) => Some(Finding {
                severity: Severity::Notice,
                code: "link-moved",
                line: Some(line),
                message: format!("{u} leads to another site: {to}"),
                fix: "link to where it ends up, if that is the page you meant".into(),
            }),
            Verdict::Broken(why) => Some(Finding {
                severity: Severity::Error,
                code: "link-broken",
                line: Some(line),
                message: format!("{u}: {why}"),
                fix: "correct the link, or remove it".into(),
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
                return Verdict::Broken(format!("cannot be reached ({t})"));
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
