//! `herald send`: one post, or with `--due` every post whose time has come;
//! and the summary or report at the end.

use std::path::{Path, PathBuf};

use super::output::{self, say};
use crate::config::{Config, Override};
use crate::deliver::send;
use crate::exit;

/// Send the issue to the subscriber list; with --dry-run, write each
/// person's email to a file instead.
///
/// Start with `--to you@example.org` for a test to yourself, or
/// `--dry-run` to get every message as a file in outbox/<post-name>/.
/// The unsubscribe links are signed with the secret in the environment
/// variable HERALD_UNSUBSCRIBE_SECRET.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The post: a Markdown file with the website's front matter.
    #[arg(required_unless_present = "due")]
    post: Option<PathBuf>,
    /// The subscriber list: a CSV file with a header line and an `email` column.
    /// Other columns (first_name, last_name...) can be used as merge fields.
    #[arg(long, value_name = "FILE.csv")]
    subscribers: Option<PathBuf>,
    /// Never mail the addresses in this file (one per line, or a CSV with an
    /// `email` column). Can be given more than once.
    #[arg(long, value_name = "FILE")]
    suppress: Vec<PathBuf>,
    /// Send a test of the issue to this address only, with [TEST] in the
    /// subject; the subscriber list is ignored. Can be given more than once.
    #[arg(long, value_name = "ADDRESS")]
    to: Vec<String>,
    /// Write every message to a file instead of sending it.
    #[arg(long)]
    dry_run: bool,
    /// The mail relay, like smtp://mail.example.org:587 (default: `smtp_url`
    /// in herald.yaml or HERALD_SMTP_URL). The password comes from the
    /// environment variable HERALD_SMTP_PASSWORD, never from here.
    #[arg(long, value_name = "URL")]
    smtp: Option<String>,
    /// At most this many messages per second, minute or hour: 14/s, 600/m, 10000/h.
    #[arg(long, value_name = "RATE")]
    rate: Option<String>,
    /// Connections to the relay used in parallel (default 4).
    #[arg(long, value_name = "N")]
    connections: Option<String>,
    /// Stop after this many messages; the next run sends the next slice
    /// (for relays with a daily quota).
    #[arg(long, value_name = "N")]
    max_per_run: Option<String>,
    /// Send without asking first (needed when there is no terminal, as in cron).
    #[arg(long, short = 'y')]
    yes: bool,
    /// Send again to people whose outcome is unknown because herald was
    /// stopped while sending to them (they may get the email twice).
    #[arg(long)]
    resend_unknown: bool,
    /// Continue a campaign even though the post changed since it started.
    #[arg(long)]
    allow_changed: bool,
    /// Send a finished campaign's issue to the people added to the list
    /// since it finished. Without it, a finished campaign mails nobody new:
    /// they get the next issue.
    #[arg(long, conflicts_with_all = ["to", "due"])]
    include_new: bool,
    /// Send even though `herald check` finds errors in the issue (an email
    /// Gmail would clip, a broken link...). Without it, such an issue is
    /// refused before anything is sent, under cron too.
    #[arg(long)]
    ignore_check_errors: bool,
    /// Send the posts in this folder whose time has come (their `send_at`,
    /// or `date`) and that are not sent yet; do nothing, quietly, if none is due.
    #[arg(long, value_name = "DIR", conflicts_with = "post")]
    due: Option<PathBuf>,
    /// With --due: also send posts whose time passed longer ago than `late_grace`.
    #[arg(long, requires = "due")]
    late_ok: bool,
    /// Folder of the journal that records who was sent what (default .herald).
    #[arg(long, value_name = "DIR")]
    journal: Option<PathBuf>,
    /// Folder for the dry run's messages (default: outbox/<post-name>;
    /// with --due, a folder per post inside it). Only with --dry-run.
    #[arg(long, value_name = "DIR", requires = "dry_run")]
    outbox: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

impl Args {
    /// The flags that are settings. They are taken as text and parsed with
    /// the settings, so `--rate fast` and `--connections 0` are reported
    /// like any other bad setting, naming the flag.
    pub fn overrides(&self) -> Vec<Override> {
        let mut o = Vec::new();
        let mut add = |name: &str, value: Option<String>, flag: &str| {
            if let Some(v) = value {
                o.push(Override::new(name, v, flag));
            }
        };
        add("smtp_url", self.smtp.clone(), "--smtp");
        add("rate", self.rate.clone(), "--rate");
        add("connections", self.connections.clone(), "--connections");
        add("max_per_run", self.max_per_run.clone(), "--max-per-run");
        add(
            "journal_dir",
            self.journal
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
            "--journal",
        );
        o
    }

    fn options(&self, post: PathBuf) -> send::SendOptions {
        send::SendOptions {
            post,
            subscribers: self.subscribers.clone(),
            suppress: self.suppress.clone(),
            to: self.to.clone(),
            outbox: self.outbox.clone(),
            yes: self.yes,
            resend_unknown: self.resend_unknown,
            allow_changed: self.allow_changed,
            dry_run: self.dry_run,
            include_new: self.include_new,
            ignore_check_errors: self.ignore_check_errors,
        }
    }
}

pub fn run(args: Args, config: &Config) -> anyhow::Result<i32> {
    let config_path = super::config_path(config);
    if let Some(dir) = &args.due {
        return due(dir, &args, config, &config_path);
    }
    let post = args.post.clone().expect("clap requires POST without --due");
    let started = std::time::Instant::now();
    let outcome = send::run(&args.options(post), config, &config_path)?;
    print_outcome(&outcome, args.json, started)
}

/// Prints what one post's run did; returns its exit code.
fn print_outcome(
    outcome: &send::Outcome,
    json: bool,
    started: std::time::Instant,
) -> anyhow::Result<i32> {
    match outcome {
        send::Outcome::Sent(report) => {
            print_report(report, json)?;
            Ok(report.exit_code)
        }
        send::Outcome::Written(summary) => {
            print_summary(summary, json, started.elapsed().as_secs_f64())?;
            Ok(exit::OK)
        }
    }
}

fn print_summary(summary: &send::Summary, json: bool, seconds: f64) -> anyhow::Result<()> {
    for w in &summary.picture_warnings {
        tracing::warn!("{w}");
    }
    for f in &summary.fields_without_column {
        tracing::warn!(
            "the post uses the merge field {{{{ {f} }}}}, which the subscriber list has no column for; \
             it will be empty (give it a default: {{{{ {f} | default: \"...\" }}}})"
        );
    }
    if let Some(w) = crate::compose::check::clip_warning(summary.largest_html_bytes) {
        tracing::warn!("{w}");
    }
    if json {
        let mut v = serde_json::to_value(summary)?;
        v["seconds"] = serde_json::json!(seconds);
        return output::json(&v);
    }
    let skipped: u64 = summary.skipped.values().sum();
    say!(
        "Dry run{}: nothing was sent.",
        if summary.test { " of a test send" } else { "" }
    )?;
    if !summary.test {
        say!("Subscribers read:   {}", summary.rows_read)?;
        say!("Skipped:            {skipped}")?;
        for (reason, n) in &summary.skipped {
            say!("  {n:>8}  {}", reason.describe())?;
        }
        for s in &summary.skipped_examples {
            let detail = s
                .detail
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            say!(
                "    line {}: {} - {}{detail}",
                s.line,
                s.email,
                s.reason.describe()
            )?;
        }
        if skipped > summary.skipped_examples.len() as u64 {
            say!(
                "    (all skipped rows are listed in {})",
                summary.outbox.join("skipped.csv").display()
            )?;
        }
    }
    say!(
        "Messages written:   {} to {}/",
        summary.messages_written,
        summary.outbox.display()
    )?;
    say!(
        "Largest message:    {:.1} KB (HTML part {:.1} KB; Gmail clips over 102 KB)",
        summary.largest_message_bytes as f64 / 1024.0,
        summary.largest_html_bytes as f64 / 1024.0
    )?;
    say!("Time:               {seconds:.2} s")?;
    Ok(())
}

fn print_report(report: &send::SendReport, json: bool) -> anyhow::Result<()> {
    if report.exit_code == exit::LOCKED {
        tracing::error!("{}", report.message);
        return Ok(());
    }
    if json {
        // The report is for a machine; what it means, for the person
        // reading the log.
        if !report.message.is_empty() {
            tracing::info!("{}", report.message);
        }
        return output::json(report);
    }
    let c = &report.counts;
    say!("{}", report.message)?;
    if c.total > 0 {
        say!(
            "Campaign {}: {} recipients; {} sent, {} failed, {} deferred, {} unknown, {} skipped, {} waiting",
            report.campaign,
            c.total,
            c.sent,
            c.failed,
            c.deferred,
            c.unknown,
            c.skipped,
            c.pending
        )?;
    }
    for p in report.problems.iter().take(20) {
        say!("  {p}")?;
    }
    if report.problems.len() > 20 {
        say!("  (herald status {} lists them all)", report.campaign)?;
    }
    Ok(())
}

/// `--due DIR`: each post whose time has come and whose campaign is not
/// finished. The campaign comes from the front matter alone, so posts that
/// are finished (or not due) are never composed.
fn due(dir: &Path, args: &Args, config: &Config, config_path: &Path) -> anyhow::Result<i32> {
    // Outside the send window nothing is due, whatever the posts say: a
    // cron job every few minutes then starts sending when the window opens.
    if let Err(message) = send::window_now(config) {
        tracing::info!("{message}");
        return Ok(exit::NOTHING_TO_DO);
    }
    let grace = config.late_grace;
    let due = crate::deliver::schedule::due_posts(dir, crate::clock::now(), grace, args.late_ok)?;
    let location = crate::store::Location::from_config(config)?;
    // A dry run reads a copy of the journal, like the dry run of each post.
    let view = if args.dry_run {
        send::journal_for_dry_run(&location)?
    } else {
        None
    };
    let journal = match view {
        Some(v) => Some(v),
        None if args.dry_run => None,
        None => super::status::open_journal(&location)?.map(send::JournalView::of),
    };
    let finished = |post: &Path| -> anyhow::Result<bool> {
        let id = crate::compose::post::load(post)?.campaign_id();
        Ok(match &journal {
            Some(j) => j
                .store
                .is_finished(&id)
                .map_err(super::status::unreadable)?,
            None => false,
        })
    };
    for (post, when) in &due.late {
        if finished(post)? {
            continue;
        }
        tracing::warn!(
            "{} was due at {when}, more than {} ago; not sent (add --late-ok to send it anyway)",
            post.display(),
            crate::deliver::schedule::human(grace)
        );
    }
    let mut worst: Option<i32> = None;
    for post in due.ready {
        // A post whose campaign is finished is not due any more.
        if finished(&post)? {
            tracing::debug!("{}: its campaign is finished", post.display());
            continue;
        }
        let mut opts = args.options(post.clone());
        if let Some(dir) = &args.outbox {
            // Several posts can be due at once: a folder each.
            opts.outbox = Some(dir.join(crate::compose::post::load(&post)?.slug()));
        }
        let started = std::time::Instant::now();
        // One post the relay or the checks refuse must not keep the
        // others from going out; the exit code says the worst.
        let code = match send::run(&opts, config, config_path) {
            Ok(send::Outcome::Sent(report)) if report.exit_code == exit::NOTHING_TO_DO => {
                exit::NOTHING_TO_DO
            }
            Ok(outcome) => print_outcome(&outcome, args.json, started)?,
            Err(e) if super::exit_code(&e) == exit::BAD_INPUT => {
                tracing::error!("{e:#}");
                exit::BAD_INPUT
            }
            Err(e) => return Err(e),
        };
        worst = Some(match (worst, code) {
            (None, c) => c,
            (Some(exit::NOTHING_TO_DO), c) => c,
            (Some(w), exit::NOTHING_TO_DO) => w,
            (Some(w), c) => w.max(c),
        });
    }
    Ok(worst.unwrap_or(exit::NOTHING_TO_DO))
}
