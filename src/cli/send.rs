//! `herald send`: one post, or with `--due` every post whose time has come;
//! and the summary or report at the end.

use std::path::{Path, PathBuf};

use super::output::{self, say};
use super::terminal::Terminal;
use crate::config::{Config, Override};
use crate::deliver::engine::Stop;
use crate::deliver::send::{self, End};
use crate::exit;
use crate::words::count;

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
    let mut terminal = Terminal::new(args.yes);
    let outcome = send::run(&args.options(post), config, &config_path, &mut terminal)?;
    print_outcome(&outcome, args.json, started, config)
}

/// Prints what one post's run did; returns its exit code.
fn print_outcome(
    outcome: &send::Outcome,
    json: bool,
    started: std::time::Instant,
    config: &Config,
) -> anyhow::Result<i32> {
    match outcome {
        send::Outcome::Sent(report) => {
            print_report(report, json, config)?;
            Ok(exit_code(report))
        }
        send::Outcome::Written(summary) => {
            print_summary(summary, json, started.elapsed().as_secs_f64())?;
            Ok(if summary.stopped {
                exit::INTERRUPTED
            } else {
                exit::OK
            })
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
    if summary.stopped {
        say!(
            "Stopped by Ctrl-C or SIGTERM before the end of the list: the outbox has only the messages \
             written by then. Run the same command again for all of them."
        )?;
    }
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

/// Why a test address is not mailed, and how to mail it again.
fn suppressed_test(t: &send::SuppressedTest) -> String {
    let why = match &t.why {
        Some(s) => format!(
            "{}, {}{}",
            source_words(s.source),
            crate::clock::to_second(&s.added_at),
            s.campaign
                .as_deref()
                .map(|c| format!(" in {c}"))
                .unwrap_or_default()
        ),
        None => "listed in a --suppress file".into(),
    };
    format!(
        "{} is on the suppression list ({why}), so herald does not mail it; \
         to mail it again: herald suppress remove {}",
        t.email, t.email
    )
}

/// Why someone is on the suppression list, for a person.
fn source_words(source: crate::store::Source) -> &'static str {
    use crate::store::Source;
    match source {
        Source::OneClick => "unsubscribed with their mail program's unsubscribe button",
        Source::Page => "unsubscribed on the unsubscribe page",
        Source::Mailto => "unsubscribed by email",
        Source::Bounce => "the address bounced",
        Source::Complaint => "marked an email as spam",
        Source::Manual => "added by hand",
        Source::Import => "imported",
    }
}

fn print_report(report: &send::SendReport, json: bool, config: &Config) -> anyhow::Result<()> {
    let message = message(report, config);
    if let End::Locked { .. } | End::TestSuppressed = report.end {
        tracing::error!("{message}");
        return if json { output::json(report) } else { Ok(()) };
    }
    if !matches!(report.end, End::TestSuppressed) {
        // Some test addresses went, these did not.
        for t in &report.suppressed_tests {
            tracing::warn!("the test was not sent to {}", suppressed_test(t));
        }
    }
    if json {
        // The report is for a machine; what it means, for the person
        // reading the log.
        tracing::info!("{message}");
        return output::json(report);
    }
    let c = &report.counts;
    say!("{message}")?;
    if c.total > 0 {
        say!(
            "Campaign {}: {}; {} sent, {} failed, {} deferred, {} unknown, {} skipped, {} waiting",
            report.campaign,
            count(c.total, "recipient", "recipients"),
            c.sent,
            c.failed,
            c.deferred,
            c.unknown,
            c.skipped,
            c.pending
        )?;
    }
    print_left_out(report)?;
    for p in report.problems.iter().take(20) {
        say!("  {p}")?;
    }
    if report.problems.len() > 20 {
        say!("  (herald status {} lists them all)", report.campaign)?;
    }
    Ok(())
}

/// Who of the list this run left out (unsubscribed, on the suppression
/// list...), by why, and the first of them by line: they are in the
/// journal as `skipped`, and `herald status CAMPAIGN --csv` lists them all.
fn print_left_out(report: &send::SendReport) -> anyhow::Result<()> {
    let total: u64 = report.skipped.values().sum();
    if total == 0 {
        return Ok(());
    }
    let by: Vec<String> = report
        .skipped
        .iter()
        .map(|(reason, n)| format!("{n} {}", reason.describe()))
        .collect();
    say!(
        "Left out: {} ({})",
        count(total, "person", "people"),
        by.join(", ")
    )?;
    for s in &report.skipped_examples {
        say!("  line {}: {} - {}", s.line, s.email, s.reason.describe())?;
    }
    if total > report.skipped_examples.len() as u64 {
        say!("  (herald status {} --csv lists them all)", report.campaign)?;
    }
    Ok(())
}

/// `--due DIR`: each post whose time has come and whose campaign is not
/// finished. The campaign comes from the front matter alone, so posts that
/// are finished (or not due) are never composed.
fn due(dir: &Path, args: &Args, config: &Config, config_path: &Path) -> anyhow::Result<i32> {
    // Outside the send window nothing is due, whatever the posts say: a
    // cron job every few minutes then starts sending when the window opens.
    if let Err(outside) = send::window_now(config) {
        tracing::info!("{outside}");
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
    // Ctrl-C or SIGTERM stops the whole command, not only the post being
    // sent: the posts after it wait for the next run (see send::stop).
    send::listen_for_stop(|| {
        eprintln!(
            "herald: stopped (Ctrl-C or SIGTERM); nothing more was sent. Run the same command again to continue."
        );
        std::process::exit(exit::INTERRUPTED);
    });
    // A post whose campaign is finished is not due any more: not sent,
    // and not counted among the posts a stop leaves for the next run.
    let mut to_send = Vec::with_capacity(due.ready.len());
    for post in &due.ready {
        if finished(post)? {
            tracing::debug!("{}: its campaign is finished", post.display());
        } else {
            to_send.push(post);
        }
    }
    let mut worst: Option<i32> = None;
    for (before, &post) in to_send.iter().enumerate() {
        if send::stop_requested() {
            tracing::warn!(
                "stopped: {} due post(s) not started, {} among them; run the same command again to send them",
                to_send.len() - before,
                post.display()
            );
            worst = Some(worst.map_or(exit::INTERRUPTED, |w| w.max(exit::INTERRUPTED)));
            break;
        }
        let mut opts = args.options(post.clone());
        if let Some(dir) = &args.outbox {
            // Several posts can be due at once: a folder each.
            opts.outbox = Some(dir.join(crate::compose::post::load(post)?.slug()));
        }
        let started = std::time::Instant::now();
        // One post the relay or the checks refuse must not keep the
        // others from going out; the exit code says the worst.
        let mut terminal = Terminal::new(args.yes);
        let code = match send::run(&opts, config, config_path, &mut terminal)
            .map_err(anyhow::Error::from)
        {
            Ok(send::Outcome::Sent(report)) if exit_code(&report) == exit::NOTHING_TO_DO => {
                exit::NOTHING_TO_DO
            }
            Ok(outcome) => print_outcome(&outcome, args.json, started, config)?,
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
    // Posts that could not be read: their time is unknown, so they are
    // errors to fix (exit 2), not "nothing due", even when nothing else was.
    for err in &due.unreadable {
        tracing::error!(
            "{err} This post was not sent: fix it, and the next run sends it if it is due."
        );
    }
    if !due.unreadable.is_empty() {
        worst = Some(match worst {
            None | Some(exit::NOTHING_TO_DO) => exit::BAD_INPUT,
            Some(w) => w.max(exit::BAD_INPUT),
        });
    }
    Ok(worst.unwrap_or(exit::NOTHING_TO_DO))
}

/// The exit code of one post's send (README "Exit codes").
fn exit_code(report: &send::SendReport) -> i32 {
    match &report.end {
        End::OutsideWindow(_) | End::Finished { .. } | End::NothingLeft => exit::NOTHING_TO_DO,
        End::Locked { .. } => exit::LOCKED,
        End::Cancelled => exit::OK,
        // The address given with --to is one herald will not mail: the
        // command line's to change (or the list's, with `suppress remove`).
        End::TestSuppressed => exit::BAD_INPUT,
        End::Ran(ran) => match ran.stop {
            // Spent quotas leave people waiting by necessity, not by design:
            // "deferred", as for a recipient whose server said "later".
            Stop::QuotaSpent { .. } => exit::SOME_FAILED,
            // The end of the window is like max-per-run: the rest waits by
            // design, so only failures and deferrals make it exit 3.
            Stop::Done | Stop::Limit | Stop::WindowClosed if ran.some_failed => exit::SOME_FAILED,
            Stop::Done | Stop::Limit | Stop::WindowClosed => exit::OK,
            Stop::Interrupted => exit::INTERRUPTED,
            Stop::Fatal(_) => exit::BAD_INPUT,
            Stop::RelayDown(_) => exit::RELAY_DOWN,
            Stop::Broken(_) => exit::INTERNAL,
        },
    }
}

/// What one post's send did, in a sentence for the person who ran it.
fn message(report: &send::SendReport, config: &Config) -> String {
    let campaign = &report.campaign;
    let c = &report.counts;
    let finished = |c: &crate::store::Counts| {
        format!(
            "nothing to do: {campaign} is finished ({} sent, {} failed, {} skipped)",
            c.sent, c.failed, c.skipped
        )
    };
    match &report.end {
        End::OutsideWindow(outside) => outside.to_string(),
        End::Locked { store } => format!(
            "another herald is already sending {campaign} (see {store}); this one stops so nobody is mailed twice"
        ),
        End::Finished { newcomers } => {
            let mut m = finished(c);
            if *newcomers > 0 {
                let (who, were) = if *newcomers == 1 {
                    ("1 person on the list now", "was")
                } else {
                    ("people on the list now", "were")
                };
                let who = if *newcomers == 1 {
                    who.to_string()
                } else {
                    format!("{newcomers} {who}")
                };
                m.push_str(&format!(
                    ". {who} {were} not on it then and {} not sent this issue \
                     (they get the next one); to send it to them too, run the same command with --include-new",
                    if *newcomers == 1 { "is" } else { "are" }
                ));
            }
            m
        }
        End::NothingLeft if c.unknown > 0 => format!(
            "nothing left to send for {campaign}: {} sent; {} of unknown outcome (herald was stopped while sending to them; \
             see `herald status`, and add --resend-unknown to send to them again)",
            c.sent, c.unknown
        ),
        End::NothingLeft => finished(c),
        End::Cancelled => "cancelled; nothing was sent".into(),
        End::TestSuppressed => format!(
            "the test was not sent: {}",
            report
                .suppressed_tests
                .iter()
                .map(suppressed_test)
                .collect::<Vec<_>>()
                .join("; ")
        ),
        End::Ran(ran) => ran_message(report, ran, config),
    }
}

/// What a run of the engine did, in a sentence.
fn ran_message(report: &send::SendReport, ran: &send::Ran, config: &Config) -> String {
    let campaign = &report.campaign;
    let after = &report.counts;
    let left = after.pending + after.deferred;
    match &ran.stop {
        Stop::Fatal(why) | Stop::Broken(why) => {
            format!("stopped: {why}. Nothing is lost: run again to continue.")
        }
        Stop::RelayDown(why) => {
            let relays = config.relay_list();
            let (who, back) = if relays.len() > 1 {
                let names: Vec<&str> = relays.iter().map(|r| r.name.as_str()).collect();
                (
                    format!(
                        "none of the relays ({}) is taking messages",
                        names.join(", ")
                    ),
                    "one of them is",
                )
            } else {
                (
                    format!("the relay {} is not taking messages", report.relay),
                    "the relay is",
                )
            };
            format!(
                "stopped: {who} ({why}). Nobody was lost: the {left} people not yet mailed \
                 wait for the next run; run the same command again when {back} back"
            )
        }
        Stop::Interrupted => format!(
            "stopped on request after {} messages this run; run the same command again to continue",
            report.attempted
        ),
        Stop::Limit => format!(
            "sent this run's share ({} messages); {left} wait for the next run",
            ran.handed_over
        ),
        Stop::WindowClosed => {
            // From the close the run started with, not the clock:
            // HERALD_NOW stands still in rehearsals.
            let opens = config
                .send_window
                .as_ref()
                .zip(ran.window_close)
                .map(|(w, close)| {
                    let (open, _) = w.next(close);
                    format!("; it opens again {}", w.describe(open))
                })
                .unwrap_or_default();
            format!(
                "the send window closed after {} messages this run; {left} wait for the next run in it{opens}",
                report.attempted
            )
        }
        Stop::QuotaSpent { frees_at, detail } => format!(
            "every relay has used its daily quota ({detail}); the {left} people not yet mailed wait. \
             The first quota frees up {}: run the same command again after that (a cron job simply continues)",
            frees_up(*frees_at)
        ),
        Stop::Done if report.finished => format!("{campaign} is finished"),
        Stop::Done if ran.shared && after.pending + after.unknown > 0 => format!(
            "{campaign}: this sender's share is done; {} waiting and {} in flight are with the other senders              (`herald status` shows the whole campaign)",
            after.pending, after.unknown
        ),
        Stop::Done => format!(
            "{campaign}: {} deferred to the next run, {} of unknown outcome",
            after.deferred, after.unknown
        ),
    }
}

/// When a quota frees up, for a person: `at 2026-12-01 00:00 UTC (in 9h 12m)`.
fn frees_up(at: jiff::Timestamp) -> String {
    let utc = at.to_zoned(jiff::tz::TimeZone::UTC);
    let wait = at.as_second() - crate::clock::now().as_second();
    let within = if wait > 0 {
        format!(" (in {}h {:02}m)", wait / 3600, wait % 3600 / 60)
    } else {
        String::new()
    };
    format!("at {} UTC{within}", utc.strftime("%Y-%m-%d %H:%M"))
}
