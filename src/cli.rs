//! The command line: `herald preview` and `herald check`.
//!
//! Results go to stdout (as JSON with `--json` / `--format json`); messages
//! go to stderr. Exit codes are in [`crate::exit`] and the README.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

use crate::InputError;
use crate::compose::Issue;
use crate::config::Config;
use crate::exit;
use crate::findings::Severity;
use crate::preview;
use crate::send;

#[derive(Parser, Debug)]
#[command(
    name = "herald",
    version,
    about = "Turns the monthly newsletter post into an email and sends it to your subscribers.",
    long_about = "Turns the monthly newsletter post (the Markdown file from the website) into an \
                  email that looks good on phones and computers, with a plain-text version.\n\n\
                  Start with `herald preview POST` and open the index.html it writes; then \
                  `herald check POST` lists anything that would go wrong in inboxes; \
                  `herald send POST --to you@example.org` sends you a test; \
                  `herald send POST --subscribers LIST.csv` sends the issue; `herald status` \
                  tells how it went.",
    after_help = "Exit codes: 0 done; 1 `check` found errors; 2 bad input (the message names the file \
                  and line); 3 some people failed, were deferred or have an unknown outcome (see \
                  `herald status`); 4 nothing to do; 5 another herald is sending this campaign; \
                  6 stopped by Ctrl-C or SIGTERM (run again to continue)."
)]
pub struct Cli {
    /// Settings file (default: herald.yaml in this folder, if there is one).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// If the email is too long for Gmail (which hides everything after
    /// about 102 KB, the unsubscribe link too), make a digest instead: each
    /// section's start with a "Continue reading" button to the web version.
    /// Same as `fit: true` in herald.yaml.
    #[arg(long, global = true)]
    fit: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Make the email from a post and save it as files you can open, without sending anything.
    ///
    /// Writes email.html (what subscribers see), email.txt (the plain-text
    /// version), email.mjml (the layout source) and index.html (desktop,
    /// phone and text views side by side) into preview/<post-name>/, and
    /// PNGs made from the post's SVG pictures into its assets/ folder.
    Preview {
        /// The post: a Markdown file with the website's front matter.
        post: PathBuf,
        /// Folder to write the files to (default: preview/<post-name>).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Print what was written as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List problems that would hurt the email in inboxes (size, images, links, footer).
    ///
    /// Exits with 1 when there is an error, 0 when there are only warnings or nothing.
    Check {
        /// The post: a Markdown file with the website's front matter.
        post: PathBuf,
        /// How to print the findings.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Send the issue to the subscriber list; with --dry-run, write each
    /// person's email to a file instead.
    ///
    /// Start with `--to you@example.org` for a test to yourself, or
    /// `--dry-run` to get every message as a file in outbox/<post-name>/.
    /// The unsubscribe links are signed with the secret in the environment
    /// variable HERALD_UNSUBSCRIBE_SECRET.
    Send(Box<SendArgs>),
    /// Show each campaign: how many were sent, failed (with the server's
    /// reply), deferred to the next run, or of unknown outcome.
    Status {
        /// Only this campaign (as listed), e.g. openinfra-newsletter-may-2025@2025-05-28.
        campaign: Option<String>,
        /// Folder of the journal (default .herald).
        #[arg(long, value_name = "DIR")]
        journal: Option<PathBuf>,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args, Debug)]
struct SendArgs {
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
    connections: Option<usize>,
    /// Stop after this many messages; the next run sends the next slice
    /// (for relays with a daily quota).
    #[arg(long, value_name = "N")]
    max_per_run: Option<u64>,
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
    /// Folder for the dry run's messages (default: outbox/<post-name>).
    #[arg(long, value_name = "DIR")]
    outbox: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

/// Runs herald with the process's arguments; returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit::BAD_INPUT
            } else {
                exit::OK
            };
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("herald: {e:#}");
            if e.downcast_ref::<InputError>().is_some() {
                exit::BAD_INPUT
            } else {
                exit::PROBLEMS
            }
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    let (mut config, config_path) = Config::load(cli.config.as_deref())?;
    if cli.fit {
        config.fit = Some(true);
    }
    let config_path = config_path.unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_FILE));
    let mut stdout = std::io::stdout().lock();
    match cli.command {
        Command::Preview { post, out, json } => {
            let issue = Issue::compose(&post, &config)?;
            let dir = out.unwrap_or_else(|| Path::new("preview").join(issue.post.slug()));
            let written = preview::write(&issue, &config, &dir)?;
            let findings = issue.check(&config);
            if json {
                serde_json::to_writer_pretty(
                    &mut stdout,
                    &serde_json::json!({
                        "dir": written.dir,
                        "files": written.files,
                        "html_bytes": written.html_bytes,
                        "text_bytes": written.text_bytes,
                        "upload": written.upload,
                        "findings": findings,
                    }),
                )?;
                writeln!(stdout)?;
            } else {
                writeln!(
                    stdout,
                    "Wrote the preview of \"{}\" to {}/",
                    issue.content.title,
                    written.dir.display()
                )?;
                for f in &written.files {
                    writeln!(stdout, "  {}", f.display())?;
                }
                writeln!(
                    stdout,
                    "HTML {:.1} KB, text {:.1} KB. Open {} in a browser to look at it.",
                    written.html_bytes as f64 / 1024.0,
                    written.text_bytes as f64 / 1024.0,
                    written.dir.join("index.html").display()
                )?;
                if !written.upload.is_empty() {
                    writeln!(
                        stdout,
                        "Upload these pictures before sending; the email loads them from the web:"
                    )?;
                    for u in &written.upload {
                        writeln!(stdout, "  {} -> {}", u.file.display(), u.url)?;
                    }
                }
            }
            let errors = findings
                .iter()
                .filter(|f| f.severity == Severity::Error)
                .count();
            let warnings = findings
                .iter()
                .filter(|f| f.severity == Severity::Warning)
                .count();
            if errors + warnings > 0 {
                eprintln!(
                    "herald: {errors} error(s), {warnings} warning(s); run `herald check {}` for details",
                    post.display()
                );
            }
            Ok(exit::OK)
        }
        Command::Check { post, format } => {
            let issue = Issue::compose(&post, &config)?;
            let findings = issue.check(&config);
            let errors = findings
                .iter()
                .filter(|f| f.severity == Severity::Error)
                .count();
            match format {
                Format::Json => {
                    serde_json::to_writer_pretty(
                        &mut stdout,
                        &serde_json::json!({
                            "post": post,
                            "errors": errors,
                            "findings": findings,
                        }),
                    )?;
                    writeln!(stdout)?;
                }
                Format::Text => {
                    for f in &findings {
                        let place = match f.line {
                            Some(l) => format!("{}:{l}", post.display()),
                            None => post.display().to_string(),
                        };
                        writeln!(
                            stdout,
                            "{place}: {} [{}]: {}\n    fix: {}",
                            f.severity.label(),
                            f.code,
                            f.message,
                            f.fix
                        )?;
                    }
                    let warnings = findings
                        .iter()
                        .filter(|f| f.severity == Severity::Warning)
                        .count();
                    let notices = findings.len() - errors - warnings;
                    writeln!(
                        stdout,
                        "{errors} error(s), {warnings} warning(s), {notices} notice(s)"
                    )?;
                }
            }
            Ok(if errors > 0 { exit::PROBLEMS } else { exit::OK })
        }
        Command::Send(args) => send(*args, &config, &config_path, &mut stdout),
        Command::Status {
            campaign,
            journal,
            json,
        } => status(campaign, journal, json, &config, &mut stdout),
    }
}

fn send(
    args: SendArgs,
    config: &Config,
    config_path: &Path,
    stdout: &mut impl Write,
) -> anyhow::Result<i32> {
    if let Some(dir) = &args.due {
        return send_due(dir, &args, config, config_path, stdout);
    }
    let post = args.post.clone().expect("clap requires POST without --due");
    if !args.dry_run {
        let report = send::send(&send_options(&args, post), config, config_path)?;
        print_report(&report, args.json, stdout)?;
        return Ok(report.exit_code);
    }
    let opts = send_options(&args, post);
    let started = std::time::Instant::now();
    let summary = send::dry_run(&opts, config, config_path)?;
    let seconds = started.elapsed().as_secs_f64();
    for w in &summary.picture_warnings {
        eprintln!("herald: warning: {w}");
    }
    for f in &summary.fields_without_column {
        eprintln!(
            "herald: warning: the post uses the merge field {{{{ {f} }}}}, which the subscriber list has no column for; \
             it will be empty (give it a default: {{{{ {f} | default: \"...\" }}}})"
        );
    }
    if let Some(w) = crate::check::clip_warning(summary.largest_html_bytes) {
        eprintln!("herald: warning: {w}");
    }
    if args.json {
        let mut v = serde_json::to_value(&summary)?;
        v["seconds"] = serde_json::json!(seconds);
        serde_json::to_writer_pretty(&mut *stdout, &v)?;
        writeln!(stdout)?;
    } else {
        let skipped: u64 = summary.skipped.values().sum();
        writeln!(
            stdout,
            "Dry run{}: nothing was sent.",
            if summary.test { " of a test send" } else { "" }
        )?;
        if !summary.test {
            writeln!(stdout, "Subscribers read:   {}", summary.rows_read)?;
            writeln!(stdout, "Skipped:            {skipped}")?;
            for (reason, n) in &summary.skipped {
                writeln!(stdout, "  {n:>8}  {}", reason.describe())?;
            }
            for s in &summary.skipped_examples {
                let detail = s
                    .detail
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default();
                writeln!(
                    stdout,
                    "    line {}: {} - {}{detail}",
                    s.line,
                    s.email,
                    s.reason.describe()
                )?;
            }
            if skipped > summary.skipped_examples.len() as u64 {
                writeln!(
                    stdout,
                    "    (all skipped rows are listed in {})",
                    summary.outbox.join("skipped.csv").display()
                )?;
            }
        }
        writeln!(
            stdout,
            "Messages written:   {} to {}/",
            summary.messages_written,
            summary.outbox.display()
        )?;
        writeln!(
            stdout,
            "Largest message:    {:.1} KB (HTML part {:.1} KB; Gmail clips over 102 KB)",
            summary.largest_message_bytes as f64 / 1024.0,
            summary.largest_html_bytes as f64 / 1024.0
        )?;
        writeln!(stdout, "Time:               {seconds:.2} s")?;
    }
    Ok(exit::OK)
}

fn send_options(args: &SendArgs, post: PathBuf) -> send::SendOptions {
    send::SendOptions {
        post,
        subscribers: args.subscribers.clone(),
        suppress: args.suppress.clone(),
        to: args.to.clone(),
        outbox: args.outbox.clone(),
        smtp: args.smtp.clone(),
        rate: args.rate.clone(),
        connections: args.connections,
        max_per_run: args.max_per_run,
        journal: args.journal.clone(),
        yes: args.yes,
        resend_unknown: args.resend_unknown,
        allow_changed: args.allow_changed,
    }
}

fn print_report(
    report: &send::SendReport,
    json: bool,
    stdout: &mut impl Write,
) -> anyhow::Result<()> {
    if report.exit_code == exit::LOCKED {
        eprintln!("herald: {}", report.message);
        return Ok(());
    }
    if json {
        serde_json::to_writer_pretty(&mut *stdout, report)?;
        writeln!(stdout)?;
        return Ok(());
    }
    let c = &report.counts;
    writeln!(stdout, "{}", report.message)?;
    if c.total > 0 {
        writeln!(
            stdout,
            "Campaign {}: {} recipients; {} sent, {} failed, {} deferred, {} unknown, {} skipped, {} waiting",
            report.campaign, c.total, c.sent, c.failed, c.deferred, c.unknown, c.skipped, c.pending
        )?;
    }
    for p in report.problems.iter().take(20) {
        writeln!(stdout, "  {p}")?;
    }
    if report.problems.len() > 20 {
        writeln!(
            stdout,
            "  (herald status {} lists them all)",
            report.campaign
        )?;
    }
    Ok(())
}

fn journal_dir(flag: Option<PathBuf>, config: &Config) -> PathBuf {
    flag.or_else(|| config.journal_dir.as_ref().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(crate::journal::DEFAULT_DIR))
}

fn send_due(
    dir: &Path,
    args: &SendArgs,
    config: &Config,
    config_path: &Path,
    stdout: &mut impl Write,
) -> anyhow::Result<i32> {
    let grace = match &config.late_grace {
        Some(g) => {
            crate::config::parse_duration(g).map_err(|m| InputError::new(config_path, None, m))?
        }
        None => std::time::Duration::from_secs(24 * 3600),
    };
    let due = crate::schedule::due_posts(dir, crate::clock::now(), grace, args.late_ok)?;
    let journal_dir = journal_dir(args.journal.clone(), config);
    let finished = |post: &Path| -> anyhow::Result<bool> {
        let issue = Issue::compose(post, config)?;
        let id = send::campaign_id(&issue);
        Ok(journal_dir.join("journal.db").exists()
            && crate::journal::Journal::open(&journal_dir)?.is_finished(&id)?)
    };
    for (post, when) in &due.late {
        if finished(post)? {
            continue;
        }
        eprintln!(
            "herald: {} was due at {when}, more than {} ago; not sent (add --late-ok to send it anyway)",
            post.display(),
            crate::schedule::human(grace)
        );
    }
    let mut worst: Option<i32> = None;
    for post in due.ready {
        // A post whose campaign is finished is not due any more.
        if finished(&post)? {
            continue;
        }
        let report = send::send(&send_options(args, post), config, config_path)?;
        if report.exit_code != exit::NOTHING_TO_DO {
            print_report(&report, args.json, stdout)?;
        }
        worst = Some(match (worst, report.exit_code) {
            (None, c) => c,
            (Some(exit::NOTHING_TO_DO), c) => c,
            (Some(w), exit::NOTHING_TO_DO) => w,
            (Some(w), c) => w.max(c),
        });
    }
    Ok(worst.unwrap_or(exit::NOTHING_TO_DO))
}

fn status(
    campaign: Option<String>,
    journal: Option<PathBuf>,
    json: bool,
    config: &Config,
    stdout: &mut impl Write,
) -> anyhow::Result<i32> {
    let dir = journal_dir(journal, config);
    if !dir.join("journal.db").exists() {
        if json {
            writeln!(stdout, "[]")?;
        } else {
            writeln!(
                stdout,
                "No campaigns yet (no journal in {}).",
                dir.display()
            )?;
        }
        return Ok(exit::OK);
    }
    let journal = crate::journal::Journal::open(&dir)?;
    let mut campaigns = journal.campaigns()?;
    if let Some(c) = &campaign {
        campaigns.retain(|x| &x.id == c);
        if campaigns.is_empty() {
            anyhow::bail!(InputError::new(
                &dir,
                None,
                format!("there is no campaign {c}; `herald status` lists them")
            ));
        }
    }
    let mut out = Vec::new();
    for c in &campaigns {
        let problems = journal.problems(&c.id, 100_000)?;
        if !json {
            let n = &c.counts;
            let state = if c.finished_at.is_some() {
                "finished"
            } else {
                "in progress"
            };
            writeln!(stdout, "{} ({state}), {}", c.id, c.post)?;
            writeln!(
                stdout,
                "  {} recipients: {} sent, {} failed, {} deferred, {} unknown, {} skipped, {} waiting",
                n.total, n.sent, n.failed, n.deferred, n.unknown, n.skipped, n.pending
            )?;
            let shown = if campaign.is_some() {
                problems.len()
            } else {
                20
            };
            for p in problems.iter().take(shown) {
                writeln!(stdout, "  {p}")?;
            }
            if problems.len() > shown {
                writeln!(
                    stdout,
                    "  ... {} more: herald status {}",
                    problems.len() - shown,
                    c.id
                )?;
            }
        }
        out.push(serde_json::json!({ "campaign": c, "problems": problems }));
    }
    if json {
        serde_json::to_writer_pretty(&mut *stdout, &out)?;
        writeln!(stdout)?;
    }
    Ok(exit::OK)
}
