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
use crate::compose::Issue;
use crate::config::Config;
use crate::deliver::outbox::Outbox;
use crate::message::{self, Composer, Mode};

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
    /// The largest personalised HTML part: what Gmail's clipping limit is about.
    pub largest_html_bytes: usize,
    /// Merge fields the post uses that the list has no column for.
    pub fields_without_column: Vec<String>,
    /// Pictures readers would miss: see [`picture_warnings`].
    pub picture_warnings: Vec<String>,
}

/// A dry run: every message written to the outbox, nothing sent.
pub fn dry_run(opts: &SendOptions, config: &Config, config_path: &Path) -> anyhow::Result<Summary> {
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
        let list = checked_list(
            opts.subscribers.as_deref(),
            &opts.post,
            &suppression,
            "written",
        )?;
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
        largest_html_bytes: 0,
        fields_without_column: fields_without_column(&issue, config, &columns, mode),
        picture_warnings: picture_warnings(&issue, &opts.post),
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
    let (written, largest, largest_html) = outbox.finish().map_err(write_err)?;
    summary.messages_written = written;
    summary.largest_message_bytes = largest;
    summary.largest_html_bytes = largest_html;
    Ok(summary)
}

/// The subscriber list, read once through to refuse a broken file before
/// anything is `done` (written or sent).
fn checked_list<'a>(
    list: Option<&'a Path>,
    post: &Path,
    suppression: &Arc<Suppression>,
    done: &str,
) -> anyhow::Result<&'a Path> {
    let Some(list) = list else {
        anyhow::bail!(InputError::new(
            post,
            None,
            "say who to send to: --subscribers FILE.csv for the list, or --to ADDRESS for a test"
        ));
    };
    if let Err(errors) = audience::validate(list, Arc::clone(suppression)) {
        let shown: Vec<String> = errors
            .iter()
            .take(EXAMPLES)
            .map(|e| e.to_string())
            .collect();
        let mut msg = format!(
            "the subscriber list has {} broken row(s); nothing was {done}. Fix them and run again:\n{}",
            errors.len(),
            shown.join("\n")
        );
        let more = errors.len().saturating_sub(EXAMPLES);
        if more > 0 {
            msg.push_str(&format!("\n... and {more} more"));
        }
        anyhow::bail!(InputError::new(list, None, msg));
    }
    Ok(list)
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

// ---------------------------------------------------------------------------
// A real send, through the relay, journaled.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::config::parse_duration;
use crate::deliver::engine::{self, Progress, Settings, Stop};
use crate::deliver::smtp::Relay;
use crate::deliver::throttle::Rate;
use crate::exit;
use crate::journal::{self, Counts, Journal};

/// What `herald send` was asked to do (flags beat herald.yaml).
pub struct SendOptions {
    pub post: PathBuf,
    pub subscribers: Option<PathBuf>,
    pub suppress: Vec<PathBuf>,
    /// Test addresses: send only to these, ignoring the list.
    pub to: Vec<String>,
    /// The dry run's folder.
    pub outbox: Option<PathBuf>,
    pub smtp: Option<String>,
    pub rate: Option<String>,
    pub connections: Option<usize>,
    pub max_per_run: Option<u64>,
    pub journal: Option<PathBuf>,
    pub yes: bool,
    pub resend_unknown: bool,
    pub allow_changed: bool,
}

#[derive(Debug, Serialize)]
pub struct SendReport {
    pub campaign: String,
    pub post: PathBuf,
    pub relay: String,
    /// Messages tried this run (sent, failed or deferred).
    pub attempted: u64,
    pub counts: Counts,
    pub finished: bool,
    pub stopped: String,
    pub problems: Vec<journal::Problem>,
    /// The largest personalised HTML part (0 when nothing was to be sent).
    pub largest_html_bytes: usize,
    #[serde(skip)]
    pub exit_code: i32,
    #[serde(skip)]
    pub message: String,
}

/// The campaign's identity: the post's slug and its date.
pub fn campaign_id(issue: &Issue) -> String {
    let date = issue
        .post
        .front_matter
        .date
        .map(|d| d.to_zoned(jiff::tz::TimeZone::UTC).date().to_string())
        .or_else(|| issue.post.front_matter.year.map(|y| y.to_string()))
        .unwrap_or_else(|| "undated".into());
    format!("{}@{date}", issue.post.slug())
}

fn smtp_password() -> Result<Option<String>, InputError> {
    if let Some(p) = std::env::var("HERALD_SMTP_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty())
    {
        return Ok(Some(p));
    }
    if let Some(f) = std::env::var_os("HERALD_SMTP_PASSWORD_FILE").filter(|f| !f.is_empty()) {
        let path = PathBuf::from(f);
        let p = std::fs::read_to_string(&path).map_err(|e| {
            InputError::new(
                &path,
                None,
                format!("cannot read the SMTP password ({e}); check HERALD_SMTP_PASSWORD_FILE"),
            )
        })?;
        return Ok(Some(p.trim_end_matches(['\n', '\r']).to_string()));
    }
    Ok(None)
}

fn settings(
    opts: &SendOptions,
    config: &Config,
    config_path: &Path,
) -> Result<Settings, InputError> {
    let bad = |m: String| InputError::new(config_path, None, m);
    let rate = match opts.rate.as_deref().or(config.rate.as_deref()) {
        Some(r) => Some(Rate::parse(r).map_err(bad)?),
        None => None,
    };
    let batch = match (config.batch_size, &config.batch_pause) {
        (Some(n), Some(p)) => Some((n, parse_duration(p).map_err(bad)?)),
        (Some(n), None) => Some((n, Duration::from_secs(60))),
        _ => None,
    };
    Ok(Settings {
        connections: opts.connections.or(config.connections).unwrap_or(4).max(1),
        rate,
        batch,
        max_per_run: opts.max_per_run.or(config.max_per_run),
        max_attempts: config.max_attempts.unwrap_or(4).max(1),
        retry_base: match &config.retry_wait {
            Some(w) => parse_duration(w).map_err(bad)?,
            None => Duration::from_secs(1),
        },
        timeout: Duration::from_secs(60),
        resend_unknown: opts.resend_unknown,
    })
}

/// A lock per campaign, held while sending: a second herald (a cron job
/// firing while the last is still running) stops at once instead of mailing
/// the same people. The operating system releases it if herald dies.
pub struct Lock {
    _file: std::fs::File,
}

pub fn lock(dir: &Path, campaign: &str) -> Result<Option<Lock>, InputError> {
    let locks = dir.join("locks");
    std::fs::create_dir_all(&locks)
        .map_err(|e| InputError::new(&locks, None, format!("cannot create ({e})")))?;
    let name: String = campaign
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = locks.join(format!("{name}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| InputError::new(&path, None, format!("cannot open the lock file ({e})")))?;
    match file.try_lock() {
        Ok(()) => {
            use std::io::Write;
            let _ = file.set_len(0);
            let _ = writeln!(&file, "{}", std::process::id());
            Ok(Some(Lock { _file: file }))
        }
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(InputError::new(&path, None, format!("cannot lock ({e})")))
        }
    }
}

/// Sends the issue through the relay, continuing where an earlier run stopped.
pub fn send(opts: &SendOptions, config: &Config, config_path: &Path) -> anyhow::Result<SendReport> {
    let issue = Issue::compose(&opts.post, config)?;
    let test = !opts.to.is_empty();
    let mode = if test { Mode::Test } else { Mode::Campaign };
    let composer = Arc::new(Composer::new(
        &issue,
        config,
        config_path,
        message::unsubscribe_secret()?,
        mode,
    )?);
    let settings = settings(opts, config, config_path)?;
    let url = opts.smtp.clone().or_else(|| config.smtp_url.clone()).ok_or_else(|| {
        InputError::new(
            config_path,
            None,
            "say which mail relay to send through: `smtp_url` in herald.yaml, HERALD_SMTP_URL, or --smtp \
             (like smtp://mail.example.org:587); or add --dry-run to write the messages to files",
        )
    })?;
    let relay = Relay::parse(
        &url,
        config.smtp_user.clone(),
        smtp_password()?,
        config.smtp_allow_plaintext.unwrap_or(false),
    )
    .map_err(|m| InputError::new(config_path, None, m))?;
    let relay = match &config.smtp_ca_file {
        Some(ca) => relay
            .with_ca_file(Path::new(ca))
            .map_err(|m| InputError::new(config_path, None, m))?,
        None => relay,
    };

    // A test send is not part of the campaign: its own throwaway journal.
    let scratch;
    let dir: PathBuf = if test {
        scratch = tempfile::tempdir()?;
        scratch.path().to_path_buf()
    } else {
        opts.journal
            .clone()
            .or_else(|| config.journal_dir.as_ref().map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(journal::DEFAULT_DIR))
    };
    let campaign = if test {
        format!("{}#test", campaign_id(&issue))
    } else {
        campaign_id(&issue)
    };
    let mut journal = Journal::open(&dir)?;
    let Some(_lock) = lock(&dir, &campaign)? else {
        return Ok(SendReport {
            campaign: campaign.clone(),
            post: opts.post.clone(),
            relay: relay.describe(),
            attempted: 0,
            counts: Counts::default(),
            finished: false,
            stopped: "locked".into(),
            problems: vec![],
            largest_html_bytes: 0,
            exit_code: exit::LOCKED,
            message: format!(
                "another herald is already sending {campaign} (see {}); this one stops so nobody is mailed twice",
                dir.join("locks").display()
            ),
        });
    };

    let mut suppression = Suppression::default();
    for s in &opts.suppress {
        suppression.add_file(s)?;
    }
    for key in journal.suppressed()? {
        suppression.insert(&key);
    }
    let suppression = Arc::new(suppression);
    let columns: Vec<String>;
    let mut largest_html = 0;
    if test {
        columns = Vec::new();
        journal.upsert_campaign(
            &campaign,
            &opts.post.display().to_string(),
            composer.content_hash(),
            &columns,
        )?;
        let import = journal.import()?;
        for (i, r) in test_recipients(&opts.to)?.iter().enumerate() {
            largest_html = largest_html.max(composer.html_len(r));
            import.add(&campaign, i as i64 + 1, &r.email, 0, &[])?;
        }
        import.commit()?;
    } else {
        let list = checked_list(
            opts.subscribers.as_deref(),
            &opts.post,
            &suppression,
            "sent",
        )?;
        match journal.campaign_hash(&campaign)? {
            Some(h) if h != composer.content_hash() && !opts.allow_changed => {
                anyhow::bail!(InputError::new(
                    &opts.post,
                    None,
                    format!(
                        "the post changed since the campaign {campaign} started, so some people got the earlier version. \
                         To send the new version to the rest, run again with --allow-changed"
                    )
                ));
            }
            _ => {}
        }
        let mut rows = audience::open(list, Arc::clone(&suppression))?;
        columns = rows.columns().to_vec();
        journal.upsert_campaign(
            &campaign,
            &opts.post.display().to_string(),
            composer.content_hash(),
            &columns,
        )?;
        let import = journal.import()?;
        while let Some(row) = rows.next_row() {
            match row? {
                Row::Send(r) => {
                    largest_html = largest_html.max(composer.html_len(&r));
                    import.add(&campaign, r.line as i64, &r.email, r.line as i64, &r.values)?
                }
                Row::Skip(s) => match s.reason {
                    SkipReason::Unsubscribed
                    | SkipReason::Bounced
                    | SkipReason::Suppressed
                    | SkipReason::UnknownStatus => {
                        import.skip(&campaign, &s.email, s.reason.describe())?
                    }
                    SkipReason::InvalidAddress | SkipReason::Duplicate => {}
                },
            }
        }
        import.commit()?;
    }

    let before = journal.counts(&campaign)?;
    let to_send = before.pending
        + before.deferred
        + if opts.resend_unknown {
            before.unknown
        } else {
            0
        };
    let mut report = SendReport {
        campaign: campaign.clone(),
        post: opts.post.clone(),
        relay: relay.describe(),
        attempted: 0,
        counts: before.clone(),
        finished: false,
        stopped: "nothing to do".into(),
        problems: vec![],
        largest_html_bytes: largest_html,
        exit_code: exit::NOTHING_TO_DO,
        message: String::new(),
    };
    if to_send == 0 {
        journal.finish_if_done(&campaign)?;
        report.finished = journal.is_finished(&campaign)?;
        report.problems = journal.problems(&campaign, 50)?;
        report.message = if before.unknown > 0 {
            format!(
                "nothing left to send for {campaign}: {} sent; {} of unknown outcome (herald was stopped while sending to them; \
                 see `herald status`, and add --resend-unknown to send to them again)",
                before.sent, before.unknown
            )
        } else {
            format!(
                "nothing to do: {campaign} is finished ({} sent, {} failed, {} skipped)",
                before.sent, before.failed, before.skipped
            )
        };
        return Ok(report);
    }

    // Say what is about to happen, and ask on a terminal.
    let eta = settings.rate.map(|r| to_send as f64 / r.per_second());
    let mut plan = format!(
        "About to send \"{}\" ({campaign}) to {to_send} people through {} with {} connection(s)",
        issue.content.title,
        relay.describe(),
        settings.connections
    );
    match settings.rate {
        Some(r) => plan.push_str(&format!(", at most {r}")),
        None => plan.push_str(", with no rate limit (as fast as the relay accepts)"),
    }
    if let Some(max) = settings.max_per_run {
        plan.push_str(&format!(", at most {max} this run"));
    }
    if let Some(secs) = eta {
        plan.push_str(&format!("; about {}", human_duration(secs)));
    }
    if before.sent > 0 || before.unknown > 0 {
        plan.push_str(&format!(
            ". Continuing: {} already sent, {} of unknown outcome",
            before.sent, before.unknown
        ));
        if !opts.resend_unknown && before.unknown > 0 {
            plan.push_str(" (not resent; add --resend-unknown to resend)");
        }
    }
    plan.push_str(&format!(
        ". The largest email is {:.1} KB of HTML.",
        largest_html as f64 / 1024.0
    ));
    for w in picture_warnings(&issue, &opts.post) {
        eprintln!("herald: warning: {w}");
    }
    eprintln!("{plan}");
    if let Some(w) = crate::check::clip_warning(largest_html) {
        eprintln!("herald: warning: {w}");
    }
    if !opts.yes {
        if !std::io::stdin().is_terminal() {
            anyhow::bail!(InputError::new(
                &opts.post,
                None,
                "herald asks before sending, and there is no terminal to ask on: add --yes to send (as a cron job does)"
            ));
        }
        eprint!("Send now? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim().to_lowercase().as_str(), "y" | "yes") {
            report.stopped = "cancelled".into();
            report.exit_code = exit::OK;
            report.message = "cancelled; nothing was sent".into();
            return Ok(report);
        }
    }

    let progress = Arc::new(Progress::default());
    let interrupt = Arc::new(AtomicBool::new(false));
    let display = ProgressDisplay::start(Arc::clone(&progress), to_send as u64);
    let cols = Arc::new(journal.columns(&campaign).unwrap_or(columns));
    let plan = engine::Plan {
        campaign: campaign.clone(),
        composer,
        columns: cols,
        relay,
        settings,
    };
    let (outcome, journal) = engine::run(journal, plan, Arc::clone(&progress), interrupt);
    display.finish();

    let finished = journal.finish_if_done(&campaign)?;
    let after = journal.counts(&campaign)?;
    report.attempted = progress.sent.load(Ordering::Relaxed)
        + progress.failed.load(Ordering::Relaxed)
        + progress.deferred.load(Ordering::Relaxed);
    report.finished = finished;
    report.problems = journal.problems(&campaign, 50)?;
    let some_failed = after.failed > before.failed || after.deferred > 0 || after.unknown > 0;
    let (stopped, code) = match &outcome.stop {
        Stop::Done => (
            "done",
            if some_failed {
                exit::SOME_FAILED
            } else {
                exit::OK
            },
        ),
        Stop::Limit => (
            "max-per-run reached",
            if some_failed {
                exit::SOME_FAILED
            } else {
                exit::OK
            },
        ),
        Stop::Interrupted => ("interrupted", exit::INTERRUPTED),
        Stop::Fatal(_) => ("stopped by an error", exit::BAD_INPUT),
    };
    report.stopped = stopped.into();
    report.exit_code = code;
    report.message = match &outcome.stop {
        Stop::Fatal(why) => format!("stopped: {why}. Nothing is lost: run again to continue."),
        Stop::Interrupted => format!(
            "stopped on request after {} messages this run; run the same command again to continue",
            progress.sent.load(Ordering::Relaxed)
                + progress.failed.load(Ordering::Relaxed)
                + progress.deferred.load(Ordering::Relaxed)
        ),
        Stop::Limit => format!(
            "sent this run's share ({} messages); {} wait for the next run",
            outcome.handed_over,
            after.pending + after.deferred
        ),
        Stop::Done if finished => format!("{campaign} is finished"),
        Stop::Done => format!(
            "{campaign}: {} deferred to the next run, {} of unknown outcome",
            after.deferred, after.unknown
        ),
    };
    report.counts = after;
    Ok(report)
}

fn human_duration(secs: f64) -> String {
    match secs {
        s if s < 90.0 => format!("{s:.0} seconds"),
        s if s < 5400.0 => format!("{:.0} minutes", s / 60.0),
        s => format!("{:.1} hours", s / 3600.0),
    }
}

/// A progress bar on a terminal; plain log lines every 10 seconds otherwise.
struct ProgressDisplay {
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProgressDisplay {
    fn start(progress: Arc<Progress>, total: u64) -> ProgressDisplay {
        let done = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&done);
        let thread = std::thread::spawn(move || {
            let terminal = std::io::stderr().is_terminal();
            let bar = terminal.then(|| {
                let bar = indicatif::ProgressBar::new(total);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{bar:30} {pos}/{len} sent {msg} {per_sec} ETA {eta}",
                    )
                    .expect("valid template"),
                );
                bar
            });
            let started = std::time::Instant::now();
            let mut last_log = std::time::Instant::now();
            loop {
                let stop = flag.load(Ordering::SeqCst);
                let sent = progress.sent.load(Ordering::Relaxed);
                let failed = progress.failed.load(Ordering::Relaxed);
                let deferred = progress.deferred.load(Ordering::Relaxed);
                match &bar {
                    Some(bar) => {
                        bar.set_position(sent + failed + deferred);
                        bar.set_message(format!(
                            "({sent} ok, {failed} failed, {deferred} deferred)"
                        ));
                    }
                    None if stop || last_log.elapsed() >= Duration::from_secs(10) => {
                        let rate = sent as f64 / started.elapsed().as_secs_f64().max(0.001);
                        eprintln!(
                            "herald: {sent} sent, {failed} failed, {deferred} deferred of {total} ({rate:.0}/s)"
                        );
                        last_log = std::time::Instant::now();
                    }
                    None => {}
                }
                if stop {
                    if let Some(bar) = &bar {
                        bar.finish();
                    }
                    break;
                }
                // Woken early by `finish`, so the run ends when sending does.
                std::thread::park_timeout(Duration::from_millis(200));
            }
        });
        ProgressDisplay {
            done,
            thread: Some(thread),
        }
    }

    fn finish(mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}
