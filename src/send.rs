//! `herald send`: the whole mailing, from post and list to messages.
//!
//! With `--dry-run` each message goes to a file in the outbox instead of a
//! mail server; the messages are built by the same code either way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::InputError;
use crate::audience::{self, Recipient, Row, SkipReason, Skipped, Suppression};
use crate::config::Config;
use crate::deliver::outbox::Outbox;
use crate::message::{self, Composer, Mode};
use crate::preview::Issue;

pub struct Options {
    pub post: PathBuf,
    pub subscribers: Option<PathBuf>,
    pub suppress: Vec<PathBuf>,
    /// Test addresses: send only to these, ignoring the list.
    pub to: Vec<String>,
    pub outbox: Option<PathBuf>,
}

/// How many skipped rows the summary shows; `skipped.csv` has them all.
const EXAMPLES: usize = 20;

#[derive(Debug, Serialize)]
pub struct Summary {
    pub campaign: String,
    pub outbox: PathBuf,
    pub test: bool,
    /// Rows of the subscriber list read (0 for a test send).
    pub rows_read: u64,
    pub messages_written: u64,
    pub skipped: BTreeMap<SkipReason, u64>,
    pub skipped_examples: Vec<Skipped>,
    pub largest_message_bytes: usize,
    /// Merge fields the post uses that the list has no column for.
    pub fields_without_column: Vec<String>,
}

/// A dry run: every message written to the outbox, nothing sent.
pub fn dry_run(opts: &Options, config: &Config, config_path: &Path) -> anyhow::Result<Summary> {
    let issue = Issue::compose(&opts.post, config)?;
    let mode = if opts.to.is_empty() {
        Mode::Campaign
    } else {
        Mode::Test
    };
    let composer = Composer::new(
        &issue,
        config,
        config_path,
        message::unsubscribe_secret()?,
        mode,
    )?;

    // Check everything that can be wrong before the first file is written.
    let mut suppression = Suppression::default();
    for s in &opts.suppress {
        suppression.add_file(s)?;
    }
    let suppression = Arc::new(suppression);
    let test_recipients = test_recipients(&opts.to)?;
    let mut columns: Vec<String> = Vec::new();
    if mode == Mode::Campaign {
        let Some(list) = &opts.subscribers else {
            anyhow::bail!(InputError::new(
                &opts.post,
                None,
                "say who to send to: --subscribers FILE.csv for the list, or --to ADDRESS for a test"
            ));
        };
        if let Err(errors) = audience::validate(list, Arc::clone(&suppression)) {
            let shown: Vec<String> = errors
                .iter()
                .take(EXAMPLES)
                .map(|e| e.to_string())
                .collect();
            let more = errors.len().saturating_sub(EXAMPLES);
            let mut msg = format!(
                "the subscriber list has {} broken row(s); nothing was written. Fix them and run again:\n{}",
                errors.len(),
                shown.join("\n")
            );
            if more > 0 {
                msg.push_str(&format!("\n... and {more} more"));
            }
            anyhow::bail!(InputError::new(list, None, msg));
        }
        columns = audience::open(list, Arc::clone(&suppression))?
            .columns()
            .to_vec();
    }

    let slug = issue.post.slug();
    let campaign = if mode == Mode::Test {
        format!("{slug}-test")
    } else {
        slug
    };
    let dir = opts
        .outbox
        .clone()
        .unwrap_or_else(|| Path::new("outbox").join(&campaign));
    let mut outbox = Outbox::create(&dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot prepare the outbox {} ({e}); choose another with --outbox",
            dir.display()
        )
    })?;

    let mut summary = Summary {
        campaign,
        outbox: dir.clone(),
        test: mode == Mode::Test,
        rows_read: 0,
        messages_written: 0,
        skipped: BTreeMap::new(),
        skipped_examples: Vec::new(),
        largest_message_bytes: 0,
        fields_without_column: fields_without_column(&issue, config, &columns, mode),
    };
    let write_err =
        |e: std::io::Error| anyhow::anyhow!("cannot write to the outbox {} ({e})", dir.display());
    let skip = |s: Skipped, outbox: &mut Outbox, summary: &mut Summary| -> anyhow::Result<()> {
        *summary.skipped.entry(s.reason).or_default() += 1;
        outbox.skip(&s).map_err(write_err)?;
        if summary.skipped_examples.len() < EXAMPLES {
            summary.skipped_examples.push(s);
        }
        Ok(())
    };
    let send = |r: &Recipient, outbox: &mut Outbox, summary: &mut Summary| -> anyhow::Result<()> {
        match composer.build(r) {
            Ok(built) => outbox.write(&built).map_err(write_err),
            Err(why) => skip(
                Skipped {
                    line: r.line,
                    email: r.email.clone(),
                    reason: SkipReason::InvalidAddress,
                    detail: Some(why),
                },
                outbox,
                summary,
            ),
        }
    };

    match (&opts.subscribers, mode) {
        (Some(list), Mode::Campaign) => {
            let mut rows = audience::open(list, suppression)?;
            while let Some(row) = rows.next_row() {
                summary.rows_read += 1;
                // The list was validated above; a row can only break now if
                // the file changed meanwhile, and then stopping is right.
                match row? {
                    Row::Send(r) => send(&r, &mut outbox, &mut summary)?,
                    Row::Skip(s) => skip(s, &mut outbox, &mut summary)?,
                }
            }
        }
        _ => {
            for r in &test_recipients {
                send(r, &mut outbox, &mut summary)?;
            }
        }
    }
    let (written, largest) = outbox.finish().map_err(write_err)?;
    summary.messages_written = written;
    summary.largest_message_bytes = largest;
    Ok(summary)
}

fn test_recipients(to: &[String]) -> Result<Vec<Recipient>, InputError> {
    let mut out: Vec<Recipient> = Vec::new();
    for raw in to {
        let email = audience::normalise_address(raw).map_err(|why| {
            InputError::new(
                Path::new("--to"),
                None,
                format!("`{raw}` is not an e-mail address ({why})"),
            )
        })?;
        if !out.iter().any(|r| r.email.eq_ignore_ascii_case(&email)) {
            out.push(Recipient::bare(&email));
        }
    }
    Ok(out)
}

/// Merge fields with no default that the subscriber list cannot fill.
fn fields_without_column(
    issue: &Issue,
    config: &Config,
    columns: &[String],
    mode: Mode,
) -> Vec<String> {
    let known = ["email", "name", "unsubscribe_url", "title"];
    let mut templates = vec![
        issue.rendered.html_template(),
        issue.rendered.text_template(),
    ];
    if let Some(s) = &config.subject {
        templates.push(crate::merge::Template::compile(
            s,
            crate::merge::Escape::None,
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for t in &templates {
        for f in t.fields_without_default() {
            let has =
                known.contains(&f) || (mode == Mode::Campaign && columns.iter().any(|c| c == f));
            if !has && !out.iter().any(|o| o == f) {
                out.push(f.to_string());
            }
        }
    }
    out
}
