//! Stage 4: what would hurt this issue in real inboxes, before anyone sees it.
//!
//! Each finding has a stable code (for scripts and for people searching the
//! README), the line of the post it is about, and what to do.

use crate::compose::content::visit::{self, Visit};
use crate::compose::content::{Content, Link};
use crate::compose::post::Post;
use crate::config::CheckOptions;
use crate::findings::{Finding, Severity};

// Defined with the digest, which is made to stay under it.
pub use crate::compose::fit::GMAIL_CLIP_BYTES;

/// The warning for a send whose largest personalised HTML part Gmail
/// would clip, or `None` when it fits.
pub fn clip_warning(html_bytes: usize) -> Option<String> {
    (html_bytes > GMAIL_CLIP_BYTES).then(|| {
        format!(
            "the largest email is {} KB of HTML; Gmail clips emails over 102 KB and hides the rest, the unsubscribe link included. \
             Add --fit (or `fit: true` in herald.yaml) to send a digest that links to the web version, or shorten the post",
            html_bytes.div_ceil(1024)
        )
    })
}

/// Runs every check on a rendered issue. `html_size` is the size of the
/// largest personalised HTML part, as a subscriber would receive it.
pub fn check(
    post: &Post,
    content: &Content,
    config: &CheckOptions,
    html_size: usize,
) -> Vec<Finding> {
    let mut out: Vec<Finding> = content.findings.clone();
    out.extend(size(html_size));
    out.extend(links(content));
    out.extend(front_matter(post, content));
    out.extend(footer(config));
    out.extend(dkim(config));
    out.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.line.cmp(&b.line)));
    out
}

fn finding(
    severity: Severity,
    code: &'static str,
    line: Option<usize>,
    message: String,
    fix: &str,
) -> Finding {
    Finding {
        severity,
        code,
        line,
        message,
        fix: fix.to_string(),
    }
}

/// Gmail clips the HTML over 102 KB (an error), and warns from 90% of it.
fn size(html_size: usize) -> Option<Finding> {
    if html_size > GMAIL_CLIP_BYTES {
        Some(finding(
            Severity::Error,
            "gmail-clip",
            None,
            format!(
                "the email's HTML is {} KB; Gmail clips messages over 102 KB and hides the rest, the unsubscribe link included",
                html_size.div_ceil(1024)
            ),
            "Add --fit (or `fit: true` in herald.yaml) to make a digest that links to the web version for the rest; or shorten the post.",
        ))
    } else if html_size > GMAIL_CLIP_BYTES * 9 / 10 {
        Some(finding(
            Severity::Warning,
            "gmail-clip",
            None,
            format!(
                "the email's HTML is {} KB, close to Gmail's 102 KB clipping limit",
                html_size.div_ceil(1024)
            ),
            "Keep additions small, or shorten a section.",
        ))
    } else {
        None
    }
}

/// Links to editable documents and through other tools' click tracking.
fn links(content: &Content) -> Vec<Finding> {
    // SVG pictures are checked where they are turned into PNGs
    // (`svg-image`, `image-upload`, `large-inline-image`: see crate::compose::images).
    struct Links<'a>(Vec<&'a Link>);
    impl<'a> Visit<'a> for Links<'a> {
        fn link(&mut self, link: &'a Link) {
            self.0.push(link);
        }
    }
    let mut links = Links(Vec::new());
    let heading_lines: Vec<usize> = content.sections.iter().map(|s| s.heading.line).collect();
    // Section headings first: findings on one line keep the order they had.
    for s in &content.sections {
        visit::inlines(&mut links, &s.heading.inlines);
    }
    visit::blocks(&mut links, content.all_blocks());

    let mut out = Vec::new();
    for link in &links.0 {
        if let Some(kind) = crate::urls::editable_document(&link.url) {
            let where_ = if heading_lines.contains(&link.line) {
                "a heading links"
            } else {
                "a link goes"
            };
            out.push(finding(
                Severity::Warning,
                "editable-document",
                Some(link.line),
                format!(
                    "{where_} to {kind} ({}), usually left from drafting: subscribers may get \"request access\", or be able to edit it",
                    link.url
                ),
                "Link to the published page (or a PDF on the website) instead, or remove the link.",
            ));
        }
        if is_tracking_link(&link.url) {
            out.push(finding(
                Severity::Notice,
                "tracking-link",
                Some(link.line),
                format!(
                    "the link {} goes through another mail tool's click tracking",
                    link.url
                ),
                "Link straight to the page; old tracking links expire.",
            ));
        }
    }
    out
}

/// What the front matter lacks for inboxes (a summary, the web version),
/// and a post hidden on the website.
fn front_matter(post: &Post, content: &Content) -> Vec<Finding> {
    let mut out = Vec::new();
    if content.preheader.is_none() {
        out.push(finding(
            Severity::Warning,
            "missing-preheader",
            Some(1),
            "the post has no `seo.description`, so inboxes show the first words of the email instead of a summary".into(),
            "Add a one-line summary as `description:` under `seo:` in the front matter.",
        ));
    }
    if content.web_url.is_none() {
        out.push(finding(
            Severity::Warning,
            "missing-web-link",
            Some(1),
            "the post has no `seo.url`, so the email has no \"view in browser\" link".into(),
            "Add the post's address on the website as `url:` under `seo:`.",
        ));
    }
    if post.front_matter.hidden {
        out.push(finding(
            Severity::Notice,
            "hidden-post",
            Some(1),
            "the post is hidden on the website (`hidePost: true`), so \"view in browser\" may not open".into(),
            "Publish the post on the website before sending, or ignore this for a test.",
        ));
    }
    out
}

/// The footer the law and `herald send` require: a postal address and an
/// unsubscribe page.
fn footer(config: &CheckOptions) -> Option<Finding> {
    let mut missing = Vec::new();
    if !config.has_postal_address {
        missing.push("`postal_address` (the law requires it in bulk mail)");
    }
    if !config.has_unsubscribe_url {
        missing.push("`unsubscribe_url`");
    }
    (!missing.is_empty()).then(|| {
        finding(
            Severity::Warning,
            "missing-footer",
            None,
            format!(
                "the footer lacks {}; `herald send` will refuse to send",
                missing.join(" and ")
            ),
            "Set them in herald.yaml (see herald.example.yaml).",
        )
    })
}

/// What would make receivers distrust the signatures, or find none: for
/// each configured key (one or two), the same reading `send` does.
fn dkim(config: &CheckOptions) -> Vec<Finding> {
    let finding = |severity, code, message: String, fix: String| Finding {
        severity,
        code,
        line: None,
        message,
        fix,
    };
    let keys = &config.dkim_keys;
    let Some(domain) = config.dkim_domain.as_ref().filter(|_| !keys.is_empty()) else {
        return vec![finding(
            Severity::Warning,
            "dkim-off",
            "messages are not DKIM-signed; Gmail and Yahoo require a signature from bulk senders and file unsigned mail as spam".into(),
            "Set `dkim_domain`, `dkim_selector` and `dkim_key_file` in herald.yaml (see herald.example.yaml).".into(),
        )];
    };
    let mut out = Vec::new();
    if let Some(from) = &config.from {
        let from_domain = from.email.domain().to_ascii_lowercase();
        let d = domain.trim_end_matches('.').to_ascii_lowercase();
        if from_domain != d && !from_domain.ends_with(&format!(".{d}")) {
            out.push(finding(
                Severity::Warning,
                "dkim-domain",
                format!("`dkim_domain` {d} is not the From address's domain ({from_domain}) or a parent of it, so the signature does not count for DMARC"),
                "Sign with the From domain (or its parent): set `dkim_domain` and publish the key there.".into(),
            ));
        }
    }
    let mut any_rsa = false;
    let mut all_read = true;
    for k in keys {
        let key = match crate::dkim::load_key(&k.key_file, &k.selector) {
            Ok(key) => key,
            Err(e) => {
                all_read = false;
                if let Some(bits) = e.rsa_bits().filter(|&bits| bits < 1024) {
                    out.push(weak_key(k, bits));
                }
                let fix = e.new_key_fix(k).unwrap_or_else(|| {
                    format!(
                        "Check the path in `{}` and that this user may read the file.",
                        k.key_file_setting
                    )
                });
                out.push(finding(Severity::Error, "dkim-key", e.to_string(), fix));
                continue;
            }
        };
        if let Err(e) = crate::dkim::check_algorithm(&key, k) {
            out.push(finding(
                Severity::Error,
                "dkim-algorithm",
                e.to_string(),
                format!(
                    "Make `{}` and the file in `{}` agree (or remove `{}`).",
                    k.algorithm_setting, k.key_file_setting, k.algorithm_setting
                ),
            ));
        }
        // A key herald reads has 2048 bits or more: shorter ones are
        // refused above (see `dkim`).
        any_rsa |= key.rsa_bits().is_some();
    }
    // Only when every key could be read: an unreadable one is already an
    // error, and might be the RSA key.
    if all_read && !any_rsa && !out.iter().any(|f| f.code == "dkim-weak-key") {
        out.push(finding(
            Severity::Warning,
            "dkim-no-rsa",
            "no DKIM key is an RSA key; receivers that do not know Ed25519 (many still) see the message as unsigned".into(),
            "Add an RSA key of 2048 bits: as the only key, or next to the Ed25519 one (`dkim_selector_2`, `dkim_key_file_2`; see the README's DKIM section).".into(),
        ));
    }
    out
}

/// An RSA key under 1024 bits: receivers ignore its signatures (RFC 8301).
/// herald does not sign with it either (the `dkim-key` error beside this).
fn weak_key(k: &crate::config::DkimKey, bits: usize) -> Finding {
    Finding {
        severity: Severity::Warning,
        code: "dkim-weak-key",
        line: None,
        message: format!(
            "the DKIM key {} (`{}`) has {bits} bits; receivers ignore RSA signatures under 1024 bits",
            k.key_file.display(),
            k.key_file_setting
        ),
        fix: "Make a 2048-bit key (`openssl genrsa 2048`) and publish it under a new selector."
            .into(),
    }
}

fn is_tracking_link(url: &str) -> bool {
    let host = url
        .split("://")
        .nth(1)
        .unwrap_or("")
        .split('/')
        .next()
        .unwrap_or("");
    [
        "e2ma.net",
        "list-manage.com",
        "mailchi.mp",
        "sendgrid.net",
        "mcusercontent.com",
    ]
    .iter()
    // `.{t}` at the end, without a string made for each link and site.
    .any(|t| host == *t || host.strip_suffix(t).is_some_and(|sub| sub.ends_with('.')))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;
    use crate::urls::Base;

    fn findings(body: &str, config: &Config, html_size: usize) -> Vec<Finding> {
        let options = config.compose();
        let text = format!("---\ntitle: T\ndate: 2025-02-02\n---\n{body}");
        let post = crate::compose::post::parse(Path::new("post.md"), &text).unwrap();
        let base = Base::new(Some("https://openinfra.org"), None, false);
        let content = crate::compose::content::build(&post, &options.content, &base).unwrap();
        check(&post, &content, &options.check, html_size)
    }

    fn footer() -> Config {
        let mut c = Config::default();
        c.postal_address = Some("1 Example Street".into());
        c.unsubscribe_url = Some("https://example.org/unsubscribe".parse().unwrap());
        c
    }

    fn codes(f: &[Finding]) -> Vec<(&'static str, Severity)> {
        f.iter().map(|f| (f.code, f.severity)).collect()
    }

    #[test]
    fn gmail_clipping_is_an_error_over_the_limit_and_a_warning_near_it() {
        let c = footer();
        let over = findings("Hello.", &c, GMAIL_CLIP_BYTES + 1);
        assert!(codes(&over).contains(&("gmail-clip", Severity::Error)));
        let near = findings("Hello.", &c, GMAIL_CLIP_BYTES - 1);
        assert!(codes(&near).contains(&("gmail-clip", Severity::Warning)));
        assert!(
            findings("Hello.", &c, 50_000)
                .iter()
                .all(|f| f.code != "gmail-clip")
        );
        assert!(clip_warning(GMAIL_CLIP_BYTES + 1).is_some());
        assert!(clip_warning(GMAIL_CLIP_BYTES).is_none());
    }

    #[test]
    fn a_footer_without_postal_address_or_unsubscribe_link_is_named() {
        let f = findings("Hello.", &Config::default(), 1000);
        let missing = f.iter().find(|f| f.code == "missing-footer").unwrap();
        assert!(
            missing.message.contains("postal_address"),
            "{}",
            missing.message
        );
        assert!(
            missing.message.contains("unsubscribe_url"),
            "{}",
            missing.message
        );
        assert!(
            findings("Hello.", &footer(), 1000)
                .iter()
                .all(|f| f.code != "missing-footer")
        );
    }

    #[test]
    fn dkim_off_and_a_foreign_domain_are_warnings_an_unreadable_key_an_error() {
        let c = footer();
        assert!(codes(&findings("Hi.", &c, 1000)).contains(&("dkim-off", Severity::Warning)));
        let mut c = footer();
        c.from = Some("News <news@lists.example.org>".parse().unwrap());
        c.dkim_domain = Some("mailer.example.com".into());
        c.dkim_selector = Some("s1".into());
        c.dkim_key_file = Some("/nonexistent/dkim.pem".into());
        let f = codes(&findings("Hi.", &c, 1000));
        assert!(f.contains(&("dkim-domain", Severity::Warning)), "{f:?}");
        assert!(f.contains(&("dkim-key", Severity::Error)), "{f:?}");
        c.dkim_domain = Some("example.org".into());
        let f = codes(&findings("Hi.", &c, 1000));
        assert!(
            !f.iter().any(|(code, _)| *code == "dkim-domain"),
            "a parent domain aligns: {f:?}"
        );
    }

    #[test]
    fn an_ed25519_key_alone_lacks_rsa_and_a_wrong_algorithm_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("ed.key");
        // An Ed25519 key as the base64 of its 32-byte seed.
        std::fs::write(&key, "Y2hlY2stdGVzdC1zZWVkLTMyLWJ5dGVzLWxvbmchISE=\n").unwrap();
        let mut c = footer();
        c.dkim_domain = Some("example.org".into());
        c.dkim_selector = Some("ed".into());
        c.dkim_key_file = Some(key.clone());
        let f = codes(&findings("Hi.", &c, 1000));
        let dkim: Vec<_> = f.iter().filter(|(c, _)| c.starts_with("dkim")).collect();
        assert_eq!(dkim, [&("dkim-no-rsa", Severity::Warning)]);
        c.dkim_algorithm = Some(crate::config::DkimAlgorithm::Rsa);
        let all = findings("Hi.", &c, 1000);
        let wrong = all.iter().find(|f| f.code == "dkim-algorithm").unwrap();
        assert_eq!(wrong.severity, Severity::Error);
        assert!(
            wrong.message.starts_with(&format!(
                "{}: `dkim_algorithm` is rsa, but this file holds an Ed25519 key",
                key.display()
            )),
            "{}",
            wrong.message
        );
    }

    #[test]
    fn drafting_leftovers_are_found_on_their_line_and_errors_come_first() {
        let body = "# One\n\nFine.\n\nSee the [plan](https://docs.google.com/document/d/x/edit)\nand [this](https://t.e2ma.net/click/abc).\n";
        let f = findings(body, &footer(), GMAIL_CLIP_BYTES + 1);
        let doc = f.iter().find(|f| f.code == "editable-document").unwrap();
        assert_eq!(doc.line, Some(9));
        assert_eq!(doc.severity, Severity::Warning);
        let tracking = f.iter().find(|f| f.code == "tracking-link").unwrap();
        assert_eq!(tracking.line, Some(10));
        assert_eq!(f[0].severity, Severity::Error, "{:?}", codes(&f));
        assert!(f.windows(2).all(|w| w[0].severity >= w[1].severity));
    }
}
