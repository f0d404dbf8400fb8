//! `herald send`: the whole mailing, from post and list to messages.
//!
//! One path for every kind of send: the list is brought into a store, and
//! the engine hands each message to a Mailer. A real send uses the
//! journal and the relay; a test send (`--to`) a throwaway store and the
//! relay; a dry run a throwaway store and the outbox. All three read the
//! same suppression list (the journal's, plus `--suppress` files), so a dry
//! run leaves out exactly whom a real send would.
//!
//! The use case returns typed outcomes ([`Outcome`], [`End`]); the CLI
//! alone asks (through [`Watch`]), shows the progress, words the result
//! and maps it to an exit code. Uses compose/, the rest of deliver/ and
//! the store; nothing of listen/ or cli/.

mod dry_run;
mod error;
mod list_queue;
mod prepare;
mod relay;
mod stop;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::InputError;
use crate::compose::Issue;
use crate::config::{Config, RelaySetting};
use crate::deliver::Mailer;
use crate::deliver::audience::{self, Recipient, Row, SkipReason, Skipped, Suppression};
use crate::deliver::engine::{self, Progress, Settings, Stop};
use crate::deliver::message::{self, Composer, Mode};
use crate::deliver::outbox::{Outbox, OutboxMailer};
use crate::deliver::smtp::{Relay, Smtp};
use crate::store::{self, Counts, Problem, Store};

pub use dry_run::{JournalView, Summary, journal_for_dry_run};
pub use error::{Result, SendError};
pub use relay::{
    End, OutsideWindow, Ran, Ready, ReadyRelay, SendReport, Unattended, Watch, window_now,
};

use dry_run::dry_run;
pub use prepare::SuppressedTest;
use prepare::{Prepared, PreparedTarget, Target, prepare};
use relay::send;
pub use stop::{listen as listen_for_stop, requested as stop_requested};

/// How many skipped rows the summary shows; `skipped.csv` has them all.
const EXAMPLES: usize = 20;

/// What `herald send` was asked to do (flags beat herald.yaml).
pub struct SendOptions {
    pub post: PathBuf,
    pub subscribers: Option<PathBuf>,
    pub suppress: Vec<PathBuf>,
    /// Test addresses: send only to these, ignoring the list.
    pub to: Vec<String>,
    /// The dry run's folder.
    pub outbox: Option<PathBuf>,
    pub resend_unknown: bool,
    pub allow_changed: bool,
    /// `--dry-run`: write every message to the outbox; never connect to a
    /// relay, never write the journal. Decided in [`run`], and nowhere else.
    pub dry_run: bool,
    /// `--include-new`: a finished campaign takes the people added to the
    /// list since it finished (without it, it takes nobody new).
    pub include_new: bool,
    /// `--ignore-check-errors`: send although `herald check` finds errors.
    pub ignore_check_errors: bool,
}

/// What a run of `herald send` for one post did.
pub enum Outcome {
    /// A dry run: the messages are files in the outbox.
    Written(Summary),
    /// A real send or a test send, through the relay.
    Sent(SendReport),
}

/// `herald send` for one post, whichever way it was started (one post,
/// `--due`, `--to`): the one place where `--dry-run` is decided. A dry run
/// gets the outbox and a throwaway store; only the other branch ever makes
/// a relay's mailer or opens the journal for writing, so no flag, setting
/// or path can make a dry run send or record anything.
/// `watch` is asked before anything is sent and shown the progress.
pub fn run(
    opts: &SendOptions,
    config: &Config,
    config_path: &Path,
    watch: &mut dyn Watch,
) -> Result<Outcome> {
    let issue = Issue::compose(&opts.post, &config.compose())?;
    if opts.dry_run {
        return dry_run(opts, config, config_path, &issue).map(Outcome::Written);
    }
    // A test send is how a person looks at the issue before it is ready;
    // the campaign itself goes out only when `check` is happy with it.
    if opts.to.is_empty() && !opts.ignore_check_errors {
        refuse_check_errors(&issue, config, &opts.post)?;
    }
    send(opts, config, config_path, &issue, watch).map(Outcome::Sent)
}

/// Refuses, before the journal or a relay is touched, an issue in which
/// `herald check` finds an error, listing them: under cron nobody reads a
/// warning, and a clipped email (Gmail, over 102 KB) hides the
/// unsubscribe link.
fn refuse_check_errors(issue: &Issue, config: &Config, post: &Path) -> Result<()> {
    let errors: Vec<_> = issue
        .check(&config.compose())
        .into_iter()
        .filter(|f| f.severity == crate::findings::Severity::Error)
        .collect();
    if errors.is_empty() {
        return Ok(());
    }
    let mut msg = format!(
        "`herald check` finds {} error(s) in this issue; nothing was sent:",
        errors.len()
    );
    for f in &errors {
        let place = match f.line {
            Some(l) => format!("{}:{l}", post.display()),
            None => post.display().to_string(),
        };
        msg.push_str(&format!(
            "\n  {place}: error [{}]: {}\n    fix: {}",
            f.code, f.message, f.fix
        ));
    }
    msg.push_str(
        "\nFix them and run the same command again (the messages are not changed until then), \
         or add --ignore-check-errors to send it as it is",
    );
    Err(InputError::new(post, None, msg).into())
}

/// The campaign's identity: the post's slug and its date.
pub fn campaign_id(issue: &Issue) -> String {
    issue.post.campaign_id()
}

/// What `check` says about pictures readers would see broken or not at all
/// (an SVG that stays SVG, a PNG that must be uploaded first) or that make
/// every message bigger, said again when sending for whoever skipped
/// `herald check`: `post:line: message (fix)`.
pub fn picture_warnings(issue: &Issue, post: &Path) -> Vec<String> {
    issue
        .content
        .findings
        .iter()
        .filter(|f| matches!(f.code, "svg-image" | "image-upload" | "large-inline-image"))
        .map(|f| {
            let line = f.line.map(|l| format!(":{l}")).unwrap_or_default();
            format!("{}{line}: {} ({})", post.display(), f.message, f.fix)
        })
        .collect()
}

fn fields_without_column(
    issue: &Issue,
    config: &Config,
    columns: &[String],
    campaign: bool,
) -> Vec<String> {
    let known = ["email", "name", "unsubscribe_url", "title"];
    let mut templates = vec![
        issue.rendered.html_template(),
        issue.rendered.text_template(),
    ];
    if let Some(s) = &config.subject {
        templates.push(crate::compose::merge::Template::compile(
            s,
            crate::compose::merge::Escape::None,
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for t in &templates {
        for f in t.fields_without_default() {
            let has = known.contains(&f) || (campaign && columns.iter().any(|c| c == f));
            if !has && !out.iter().any(|o| o == f) {
                out.push(f.to_string());
            }
        }
    }
    out
}

/// Hands the memory that making the issue and reading the list freed back
/// to the system. glibc only gives back what is free at the top of its
/// heap: what the start-up freed below the blocks still in use (the
/// rendered issue, the store) stayed with herald for the whole run, about
/// 1.2 MB of a dry run's 7 (seen with `malloc_trim` called from gdb).
fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages to the system; it takes
    // malloc's lock like any allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::prepare::test_recipients;
    use super::*;

    #[test]
    fn test_addresses_are_checked_and_each_is_mailed_once() {
        let r = test_recipients(&[
            "Me@Example.org".into(),
            "me@example.org".into(),
            "you@example.org".into(),
        ])
        .unwrap();
        assert_eq!(r.len(), 2, "{r:?}");
        let e = test_recipients(&["not-an-address".into()]).unwrap_err();
        assert_eq!(e.file, Path::new("--to"));
        assert!(e.message.contains("not-an-address"), "{e}");
    }

    #[test]
    fn merge_fields_the_list_cannot_fill_are_named_once() {
        let dir = tempfile::tempdir().unwrap();
        let post = dir.path().join("p.md");
        std::fs::write(
            &post,
            "---\ntitle: T\ndate: 2025-02-02\n---\nHi {{ first_name }} {{ company }} {{ company }} {{ team | default: \"all\" }}\n",
        )
        .unwrap();
        let config = Config::default();
        let issue = Issue::compose(&post, &config.compose()).unwrap();
        let missing = fields_without_column(&issue, &config, &["first_name".into()], true);
        assert_eq!(missing, ["company"]);
        // A test send has no list: every field without a default is empty.
        let missing = fields_without_column(&issue, &config, &["first_name".into()], false);
        assert_eq!(missing, ["first_name", "company"]);
    }
}
