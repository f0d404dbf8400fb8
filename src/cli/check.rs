//! `herald check POST`: what would go wrong in inboxes.

use std::path::PathBuf;

use clap::ValueEnum;

use super::output::{self, say};
use crate::compose::Issue;
use crate::config::Config;
use crate::exit;
use crate::findings::Severity;

/// List problems that would hurt the email in inboxes (size, images, links, footer).
///
/// Exits with 1 when there is an error, 0 when there are only warnings or nothing.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The post: a Markdown file with the website's front matter.
    post: PathBuf,
    /// Print the findings as JSON (the same as --format json).
    #[arg(long)]
    json: bool,
    /// Also visit every web link of the email once (HEAD, else GET; at most
    /// 4 at a time, 1 per site; 10 s each): broken links are errors, links
    /// that end on another site notices.
    #[arg(long)]
    links: bool,
    /// Also look up the sending domain in DNS, as receivers will: the DKIM
    /// record of each selector against its key, SPF against the relays'
    /// addresses, the DMARC policy and its alignment, the relays' reverse
    /// DNS. Asks `dns_resolver` (default: /etc/resolv.conf); 3 s a query.
    #[arg(long)]
    dns: bool,
    /// How to print the findings.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

pub fn run(args: Args, config: &Config) -> anyhow::Result<i32> {
    let post = &args.post;
    // One short pass, as a preview is (`--links` and `--dns` start their
    // threads after it).
    super::preview::keep_freed_memory(post);
    let options = config.compose();
    // Never dropped: freeing the post's content model, piece by piece, just
    // before the process ends took as many instructions as checking it.
    let issue = std::mem::ManuallyDrop::new(Issue::compose(post, &options)?);
    let mut findings = issue.check(&options);
    if args.links {
        let links = crate::compose::linkcheck::links(&issue.content, &options.links);
        tracing::info!("checking {} links", links.len());
        let cache = config.journal_dir.join("linkcheck.json");
        findings.extend(crate::compose::linkcheck::check_cached(&links, &cache));
        findings.sort_by_key(|f| f.line);
    }
    // About the settings and DNS, not a line of the post: listed last.
    let about_post = findings.len();
    if args.dns {
        tracing::info!("looking up the sending domain in DNS");
        findings.extend(crate::deliver::dns::check(&config.dns())?);
    }
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    let errors = count(Severity::Error);
    if args.json || args.format == Format::Json {
        output::json(&serde_json::json!({
            "post": post,
            "errors": errors,
            "findings": findings,
        }))?;
    } else {
        for (i, f) in findings.iter().enumerate() {
            let place = match f.line {
                _ if i >= about_post => "DNS".to_string(),
                Some(l) => format!("{}:{l}", post.display()),
                None => post.display().to_string(),
            };
            say!(
                "{place}: {} [{}]: {}\n    fix: {}",
                f.severity.label(),
                f.code,
                f.message,
                f.fix
            )?;
        }
        let warnings = count(Severity::Warning);
        let notices = findings.len() - errors - warnings;
        say!("{errors} error(s), {warnings} warning(s), {notices} notice(s)")?;
    }
    Ok(if errors > 0 {
        exit::CHECK_ERRORS
    } else {
        exit::OK
    })
}
