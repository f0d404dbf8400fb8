//! `herald send`: the whole mailing, from post and list to messages.
//!
//! One path for every kind of send: the list is brought into a store, and
//! the engine hands each message to a Mailer. A real send uses the
//! journal and the relay; a test send (`--to`) a throwaway store and the
//! relay; a dry run a throwaway store and the outbox. All three read the
//! same suppression list (the journal's, plus `--suppress` files), so a dry
//! run leaves out exactly whom a real send would.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::InputError;
use crate::compose::Issue;
use crate::config::{Config, RelaySetting};
use crate::deliver::audience::{self, Recipient, Row, SkipReason, Skipped, Suppression};
use crate::deliver::engine::{self, Progress, Settings, Stop};
use crate::deliver::message::{self, Composer, Mode};
use crate::deliver::outbox::{Outbox, OutboxMailer};
use crate::deliver::smtp::{Relay, Smtp};
use crate::exit;
use crate::store::{self, Counts, Problem, Store};

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
    pub yes: bool,
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
pub fn run(opts: &SendOptions, config: &Config, config_path: &Path) -> anyhow::Result<Outcome> {
    let issue = Issue::compose(&opts.post, &config.compose())?;
    if opts.dry_run {
        return dry_run(opts, config, config_path, &issue).map(Outcome::Written);
    }
    // A test send is how a person looks at the issue before it is ready;
    // the campaign itself goes out only when `check` is happy with it.
    if opts.to.is_empty() && !opts.ignore_check_errors {
        refuse_check_errors(&issue, config, &opts.post)?;
    }
    send(opts, config, config_path, &issue).map(Outcome::Sent)
}

/// Refuses, before the journal or a relay is touched, an issue in which
/// `herald check` finds an error, listing them: under cron nobody reads a
/// warning, and a clipped email (Gmail, over 102 KB) hides the
/// unsubscribe link.
fn refuse_check_errors(issue: &Issue, config: &Config, post: &Path) -> anyhow::Result<()> {
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
    anyhow::bail!(InputError::new(post, None, msg))
}

/// The journal as a dry run sees it: for the SQLite journal, a copy in a
/// temporary folder (deleted with the view), so nothing a dry run does can
/// change the real file, not even an upgrade of its format; `None` when
/// there is no journal yet. PostgreSQL is shared and cannot be copied: it
/// is opened, and a dry run only reads it.
pub struct JournalView {
    pub store: Box<dyn Store>,
    _copy: Option<tempfile::TempDir>,
}

impl JournalView {
    /// The real journal, for a command that is not a dry run.
    pub fn of(store: Box<dyn Store>) -> JournalView {
        JournalView { store, _copy: None }
    }

    /// An empty throwaway journal, for a dry run where there is none yet.
    pub fn empty() -> anyhow::Result<JournalView> {
        let (dir, store) = store::scratch()?;
        Ok(JournalView {
            store,
            _copy: Some(dir),
        })
    }
}

pub fn journal_for_dry_run(location: &store::Location) -> anyhow::Result<Option<JournalView>> {
    let dir = match location {
        store::Location::Postgres(_) => {
            return Ok(location
                .open_existing()?
                .map(|store| JournalView { store, _copy: None }));
        }
        store::Location::Journal(dir) => dir,
    };
    let file = dir.join(store::sqlite::FILE);
    match std::fs::symlink_metadata(&file) {
        Err(_) => return Ok(None),
        // The real journal refuses a link (and says why) before reading it.
        Ok(m) if m.file_type().is_symlink() => {
            store::open(dir)?;
        }
        Ok(_) => {}
    }
    // A copy taken while another herald commits can catch a page half
    // written: such a copy fails to open or read, and a new copy is taken.
    let mut tries = 0;
    loop {
        tries += 1;
        let copy = tempfile::tempdir().map_err(|e| {
            crate::Fault::new(
                format!("cannot make a temporary folder for the dry run ({e})"),
                "check the disk and TMPDIR",
            )
        })?;
        for name in [
            store::sqlite::FILE.to_string(),
            format!("{}-wal", store::sqlite::FILE),
        ] {
            let from = dir.join(&name);
            if from.exists() {
                std::fs::copy(&from, copy.path().join(&name)).map_err(|e| {
                    crate::Fault::new(
                        format!("cannot read the journal {} ({e})", from.display()),
                        "check the disk and the folder's permissions",
                    )
                })?;
            }
        }
        let opened = store::open(copy.path()).and_then(|s| s.suppressed().map(|_| s));
        match opened {
            Ok(store) => {
                return Ok(Some(JournalView {
                    store,
                    _copy: Some(copy),
                }));
            }
            Err(_) if tries < 3 => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => return Err(e.into()),
        }
    }
}

/// What a dry run wrote.
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
    pub problems: Vec<Problem>,
    /// The largest personalised HTML part (0 when nothing was to be sent).
    pub largest_html_bytes: usize,
    /// When the people left waiting can go: the first moment a relay's
    /// daily quota frees up, when every relay's was spent (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumes_at: Option<String>,
    #[serde(skip)]
    pub exit_code: i32,
    #[serde(skip)]
    pub message: String,
}

/// The campaign's identity: the post's slug and its date.
pub fn campaign_id(issue: &Issue) -> String {
    issue.post.campaign_id()
}

/// The password in `var` (or the file named by `var`_FILE).
fn relay_password(var: &str) -> Result<Option<String>, InputError> {
    Ok(crate::config::secret(var)?.map(|s| String::from_utf8_lossy(s.expose()).into_owned()))
}

fn settings(opts: &SendOptions, config: &Config) -> Settings {
    Settings {
        connections: config.connections.max(1),
        rate: config.rate,
        batch: config.batch_size.map(|n| (n, config.batch_pause)),
        max_per_run: config.max_per_run,
        max_attempts: config.max_attempts.max(1),
        retry_base: config.retry_wait,
        timeout: config.smtp_timeout,
        resend_unknown: opts.resend_unknown,
        relay_down_after: config.relay_down_after,
        window_closes_after: None,
        relay_name: None,
        relay_weight: 1,
        relay_quota: None,
        suppression_mark: None,
        domains: config
            .domain_limits
            .iter()
            .map(|d| engine::DomainGroup {
                name: d.name.clone(),
                domains: d.domains.clone(),
                rate: d.rate,
                connections: d.connections,
            })
            .collect(),
    }
}

/// Whether the send window (if any) is open now. `Err` is the message for a
/// run outside it: when it opens next, in the window's zone and in UTC.
/// Test sends and dry runs never ask: the window is about subscribers'
/// inboxes, not about trying the issue out.
pub fn window_now(config: &Config) -> Result<Option<(Duration, jiff::Timestamp)>, String> {
    let Some(window) = &config.send_window else {
        return Ok(None);
    };
    let now = crate::clock::now();
    match window.open_until(now) {
        Some(close) => Ok(Some((
            Duration::try_from(close.duration_since(now)).unwrap_or_default(),
            close,
        ))),
        None => {
            let (open, _) = window.next(now);
            Err(format!(
                "outside the send window ({window}, from `send_window` in {}): nothing sent; it opens {}",
                config.source("send_window"),
                window.describe(open)
            ))
        }
    }
}

/// A relay's daily quota for the engine, if it has one.
fn quota(r: &RelaySetting) -> Option<engine::Quota> {
    r.max_per_day.map(|max_per_day| engine::Quota {
        max_per_day,
        zone: r.day_zone.clone(),
        zone_name: r.day_zone_name.clone(),
    })
}

/// Every relay of the send (`relays:`, or `smtp_url` as a list of one),
/// each with its password read from its own variable.
fn relays(config: &Config, config_path: &Path) -> anyhow::Result<Vec<(RelaySetting, Relay)>> {
    let list = config.relay_list();
    if list.is_empty() {
        anyhow::bail!(InputError::new(
            config_path,
            None,
            "say which mail relay to send through: `smtp_url` in herald.yaml, HERALD_SMTP_URL, or --smtp \
             (like smtp://mail.example.org:587), or several under `relays:`; or add --dry-run to write the \
             messages to files",
        ));
    }
    let mut out = Vec::new();
    for setting in list {
        let relay = Relay::parse(
            setting.url.as_str(),
            setting.user.clone(),
            relay_password(&setting.password_env)?,
            config.smtp_allow_plaintext,
        )
        .map_err(|m| {
            // The single relay's messages already name its settings; a
            // relay of `relays:` says which one and where its password goes.
            let m = if setting.setting == "relays" {
                format!(
                    "relay `{}`: {}",
                    setting.name,
                    m.replace("`smtp_user`", "its `user`")
                        .replace("HERALD_SMTP_PASSWORD", &setting.password_env)
                )
            } else {
                m
            };
            config.source(setting.setting).error(m)
        })?;
        let relay = match &config.smtp_ca_file {
            Some(ca) => relay
                .with_ca_file(ca)
                .map_err(|m| config.source("smtp_ca_file").error(m))?,
            None => relay,
        };
        out.push((setting, relay));
    }
    Ok(out)
}

/// A dry run: every message written to the outbox, nothing sent.
fn dry_run(
    opts: &SendOptions,
    config: &Config,
    config_path: &Path,
    issue: &Issue,
) -> anyhow::Result<Summary> {
    let test = !opts.to.is_empty();
    let slug = issue.post.slug();
    let name = if test { format!("{slug}-test") } else { slug };
    let dir = opts
        .outbox
        .clone()
        .unwrap_or_else(|| Path::new("outbox").join(&name));
    let run = prepare(
        opts,
        config,
        config_path,
        issue,
        Target::Outbox(dir.clone()),
    )?;
    let Prepared {
        campaign,
        composer,
        store,
        columns,
        import,
        target,
        _scratch,
        _lock,
        ..
    } = run;
    let PreparedTarget::Outbox(outbox) = target else {
        unreachable!("a dry run writes to the outbox")
    };
    let mailer = OutboxMailer::new(outbox);
    let plan = engine::Plan {
        campaign: campaign.clone(),
        composer,
        columns: Arc::new(columns.clone()),
        mailer: mailer.clone(),
        // Files need no throttle, and one writer keeps the files in list order.
        settings: Settings {
            connections: 1,
            max_attempts: 1,
            ..Settings::default()
        },
        others: Vec::new(),
    };
    let (outcome, back) = engine::run(
        store,
        plan,
        Arc::new(Progress::default()),
        Arc::new(AtomicBool::new(false)),
    );
    match outcome.stop {
        Stop::Broken(why) => anyhow::bail!(crate::Fault::new(
            why,
            "check the disk and the outbox folder"
        )),
        Stop::Fatal(why) | Stop::RelayDown(why) => anyhow::bail!(why),
        Stop::Done
        | Stop::Limit
        | Stop::Interrupted
        | Stop::WindowClosed
        | Stop::QuotaSpent { .. } => {}
    }
    let mut outbox = mailer
        .into_inner()
        .expect("the engine has let go of the outbox");
    let write_err =
        |e: std::io::Error| anyhow::anyhow!("cannot write to the outbox {} ({e})", dir.display());
    let mut skipped = import.skipped;
    let mut examples = import.examples;
    // Messages that could not be built (an address the message format
    // cannot carry) are skipped rows too.
    for p in back.problems(&campaign, i64::MAX)? {
        let s = Skipped {
            line: p.line.max(0) as u64,
            email: p.email,
            reason: SkipReason::InvalidAddress,
            detail: p.reply,
        };
        *skipped.entry(s.reason).or_default() += 1;
        outbox.skip(&s).map_err(write_err)?;
        if examples.len() < EXAMPLES {
            examples.push(s);
        }
    }
    let (written, largest, largest_html) = outbox.finish().map_err(write_err)?;
    Ok(Summary {
        campaign: name,
        outbox: dir,
        test,
        rows_read: import.rows_read,
        messages_written: written,
        skipped,
        skipped_examples: examples,
        largest_message_bytes: largest,
        largest_html_bytes: largest_html,
        fields_without_column: fields_without_column(issue, config, &columns, !test),
        picture_warnings: picture_warnings(issue, &opts.post),
    })
}

/// Where the messages of a run go.
enum Target {
    Outbox(PathBuf),
    Relay(Relay),
}

enum PreparedTarget {
    Outbox(Outbox),
    Relay(Relay),
}

/// A run with its list imported and its lock held.
struct Prepared {
    campaign: String,
    composer: Arc<Composer>,
    store: Box<dyn Store>,
    columns: Vec<String>,
    import: Imported,
    target: PreparedTarget,
    /// Held until the run ends.
    _lock: Option<Box<dyn store::Lock>>,
    /// The throwaway store's folder, for dry runs and test sends.
    _scratch: Option<tempfile::TempDir>,
    locked: bool,
    /// The campaign is finished and the list was not imported: how many
    /// people on it now would be new to it (see `--include-new`).
    finished_newcomers: Option<u64>,
    /// The journal's suppression mark before its list was read: the run
    /// leaves out whoever is suppressed after it (`None` for a scratch store).
    suppression_mark: Option<i64>,
}

/// How many people the list would add to a finished campaign: those it
/// would mail now whom the campaign never had, or had taken off the list
/// before mailing them. Read only; the journal is not changed.
fn newcomers(
    list: &Path,
    store: &dyn Store,
    campaign: &str,
    suppression: &Arc<Suppression>,
) -> anyhow::Result<u64> {
    let known: std::collections::HashSet<String> = store
        .recipients(campaign)?
        .into_iter()
        .filter(|r| r.state != store::State::Removed)
        .map(|r| r.email.to_lowercase())
        .collect();
    let mut rows = audience::open(list, Arc::clone(suppression))?;
    let mut n = 0;
    while let Some(row) = rows.next_row() {
        if let Row::Send(r) = row?
            && !known.contains(&r.email.to_lowercase())
        {
            n += 1;
        }
    }
    Ok(n)
}

#[derive(Default)]
struct Imported {
    rows_read: u64,
    skipped: BTreeMap<SkipReason, u64>,
    examples: Vec<Skipped>,
    largest_html: usize,
}

/// Everything before the first message: composer, store, lock, list.
/// Checks everything that can be wrong before anything is written.
fn prepare(
    opts: &SendOptions,
    config: &Config,
    config_path: &Path,
    issue: &Issue,
    target: Target,
) -> anyhow::Result<Prepared> {
    let test = !opts.to.is_empty();
    let mode = if test { Mode::Test } else { Mode::Campaign };
    let composer = Arc::new(Composer::new(
        issue,
        config,
        config_path,
        message::unsubscribe_keys()?,
        mode,
    )?);
    let dry = opts.dry_run;
    if dry != matches!(target, Target::Outbox(_)) {
        anyhow::bail!(crate::Fault::new(
            "a dry run was about to use a relay, or a send the outbox; nothing was done",
            "this is a bug in herald: please report it",
        ));
    }
    let location = store::Location::from_config(config)?;

    // Whom never to mail: `--suppress` files and the journal's list (hard
    // bounces), read even for a dry run or a test send so they leave out
    // the same people a real send would.
    let mut suppression = Suppression::default();
    for s in &opts.suppress {
        suppression.add_file(s)?;
    }
    // A dry run reads a copy of the journal (see [`journal_for_dry_run`]);
    // a test send reads the journal; only a real send may create it.
    let (journal, _journal_copy) = if dry {
        match journal_for_dry_run(&location)? {
            Some(view) => (Some(view.store), view._copy),
            None => (None, None),
        }
    } else if test {
        (location.open_existing()?, None)
    } else {
        (Some(location.open()?), None)
    };
    // Noted before the list is read: a suppression from now on is seen by
    // the run (at each hand-over), one before it by the import.
    let mark = journal.as_ref().map(|j| j.suppression_mark()).transpose()?;
    if let Some(j) = &journal {
        for key in j.suppressed()? {
            suppression.insert(&key);
        }
    }
    let suppression = Arc::new(suppression);
    let test_recipients = test_recipients(&opts.to)?;
    let list = if test {
        None
    } else {
        Some(checked_list(
            opts.subscribers.as_deref(),
            &opts.post,
            &suppression,
            if dry { "written" } else { "sent" },
        )?)
    };

    // A test send or a dry run is not part of the campaign: a store of its own.
    let (store, scratch, suppression_mark) = match journal {
        Some(j) if !dry && !test => (j, None, mark),
        _ => {
            let (dir, s) = store::scratch()?;
            (s, Some(dir), None)
        }
    };
    let campaign = if test {
        format!("{}#test", campaign_id(issue))
    } else {
        campaign_id(issue)
    };
    let lock = store.lock(&campaign)?;
    let locked = lock.is_none();
    let target = match target {
        Target::Outbox(dir) => {
            PreparedTarget::Outbox(Outbox::create(&dir, &campaign).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    anyhow::Error::new(InputError::new(&dir, None, e.to_string()))
                } else {
                    anyhow::Error::new(crate::Fault::new(
                        format!("cannot prepare the outbox {} ({e})", dir.display()),
                        "check the disk, or choose another folder with --outbox",
                    ))
                }
            })?)
        }
        Target::Relay(r) => PreparedTarget::Relay(r),
    };
    let mut prepared = Prepared {
        campaign: campaign.clone(),
        composer: Arc::clone(&composer),
        store,
        columns: Vec::new(),
        import: Imported::default(),
        target,
        _lock: lock,
        _scratch: scratch,
        locked,
        finished_newcomers: None,
        suppression_mark,
    };
    if locked {
        return Ok(prepared);
    }
    let store = &mut prepared.store;
    // A finished campaign is last month's issue: people who joined the
    // list since then get the next one, not this one, unless asked for.
    if !test
        && !dry
        && !opts.include_new
        && let Some(list) = list
        && store.is_finished(&campaign)?
    {
        prepared.finished_newcomers = Some(newcomers(list, &**store, &campaign, &suppression)?);
        return Ok(prepared);
    }
    if !test
        && let Some(h) = store.campaign_hash(&campaign)?
        && h != composer.content_hash()
        && !opts.allow_changed
    {
        anyhow::bail!(InputError::new(
            &opts.post,
            None,
            format!(
                "the post changed since the campaign {campaign} started, so some people got the earlier version. \
                 To send the new version to the rest, run again with --allow-changed"
            )
        ));
    }
    let mut imported = Imported::default();
    let mut outbox = match &mut prepared.target {
        PreparedTarget::Outbox(o) => Some(o),
        PreparedTarget::Relay(_) => None,
    };
    let mut on_skip = |s: Skipped, imported: &mut Imported| -> anyhow::Result<()> {
        *imported.skipped.entry(s.reason).or_default() += 1;
        if let Some(o) = outbox.as_deref_mut() {
            o.skip(&s).map_err(|e| {
                anyhow::anyhow!("cannot write to the outbox {} ({e})", o.dir().display())
            })?;
        }
        if imported.examples.len() < EXAMPLES {
            imported.examples.push(s);
        }
        Ok(())
    };
    let post = opts.post.display().to_string();
    let columns = match list {
        None => {
            store.upsert_campaign(&campaign, &post, composer.content_hash(), &[])?;
            let mut import = store.import(&campaign)?;
            for r in &test_recipients {
                if suppression.contains(&r.email) {
                    on_skip(
                        Skipped {
                            line: 0,
                            email: r.email.clone(),
                            reason: SkipReason::Suppressed,
                            detail: None,
                        },
                        &mut imported,
                    )?;
                    continue;
                }
                imported.largest_html = imported.largest_html.max(composer.html_len(r));
                import.add(&r.email, 0, &[])?;
            }
            import.commit()?;
            Vec::new()
        }
        Some(list) => {
            let mut rows = audience::open(list, Arc::clone(&suppression))?;
            let columns = rows.columns().to_vec();
            store.upsert_campaign(&campaign, &post, composer.content_hash(), &columns)?;
            let mut import = store.import(&campaign)?;
            while let Some(row) = rows.next_row() {
                imported.rows_read += 1;
                // The list was validated above; a row can only break now if
                // the file changed meanwhile, and then stopping is right.
                match row? {
                    Row::Send(r) => {
                        if let Some(why) = composer.header_problem(&r) {
                            // Never sent: a relay refuses the message (a line
                            // over 998 bytes), and it is the list's to fix.
                            // Recorded as skipped, so `status` counts them.
                            tracing::warn!(
                                "{}:{}: {} is not mailed: {why}",
                                list.display(),
                                r.line,
                                r.email
                            );
                            import.add(&r.email, r.line as i64, &r.values)?;
                            import.skip(&r.email, &why)?;
                            on_skip(
                                Skipped {
                                    line: r.line,
                                    email: r.email.clone(),
                                    reason: SkipReason::HeaderTooLong,
                                    detail: Some(why),
                                },
                                &mut imported,
                            )?;
                            continue;
                        }
                        if !dry {
                            // A dry run measures the messages it writes.
                            imported.largest_html =
                                imported.largest_html.max(composer.html_len(&r));
                        }
                        import.add(&r.email, r.line as i64, &r.values)?
                    }
                    Row::Skip(s) => {
                        match s.reason {
                            SkipReason::Unsubscribed
                            | SkipReason::Bounced
                            | SkipReason::Suppressed
                            | SkipReason::UnknownStatus => {
                                import.skip(&s.email, s.reason.describe())?
                            }
                            SkipReason::InvalidAddress
                            | SkipReason::Duplicate
                            | SkipReason::HeaderTooLong => {}
                        }
                        on_skip(s, &mut imported)?;
                    }
                }
            }
            let removed = import.commit()?;
            if removed > 0 {
                tracing::info!(
                    "{removed} people not yet mailed are no longer on the list; they will not be mailed"
                );
            }
            columns
        }
    };
    prepared.columns = columns;
    prepared.import = imported;
    Ok(prepared)
}

/// Sends the issue through the relay, continuing where an earlier run
/// stopped. Only [`run`] calls it, and never for a dry run.
fn send(
    opts: &SendOptions,
    config: &Config,
    config_path: &Path,
    issue: &Issue,
) -> anyhow::Result<SendReport> {
    debug_assert!(!opts.dry_run, "a dry run never reaches the relay");
    let mut settings = settings(opts, config);
    let mut window_close = None;
    if opts.to.is_empty() {
        match window_now(config) {
            Ok(closes) => {
                settings.window_closes_after = closes.map(|c| c.0);
                window_close = closes.map(|c| c.1);
            }
            Err(message) => {
                let campaign = campaign_id(issue);
                return Ok(SendReport {
                    campaign,
                    post: opts.post.clone(),
                    relay: config
                        .smtp_url
                        .as_ref()
                        .map(|u| crate::config::redact_url(u.as_str()))
                        .unwrap_or_default(),
                    attempted: 0,
                    counts: Counts::default(),
                    finished: false,
                    stopped: "outside the send window".into(),
                    problems: vec![],
                    largest_html_bytes: 0,
                    resumes_at: None,
                    exit_code: exit::NOTHING_TO_DO,
                    message,
                });
            }
        }
    }
    let mut relays = relays(config, config_path)?;
    let (first_setting, first) = relays.remove(0);
    // The first relay's rate and connections are the plan's settings.
    settings.rate = first_setting.rate;
    settings.connections = first_setting
        .connections
        .unwrap_or(settings.connections)
        .max(1);
    settings.relay_name = Some(first_setting.name.clone());
    settings.relay_weight = first_setting.weight;
    settings.relay_quota = quota(&first_setting);
    let others = relays;
    let describe = std::iter::once(first.describe())
        .chain(others.iter().map(|(_, r)| r.describe()))
        .collect::<Vec<_>>()
        .join(", ");
    let run = prepare(opts, config, config_path, issue, Target::Relay(first))?;
    let Prepared {
        campaign,
        composer,
        mut store,
        columns,
        import,
        target,
        _lock,
        _scratch,
        locked,
        finished_newcomers,
        suppression_mark,
    } = run;
    settings.suppression_mark = suppression_mark;
    let mut report = SendReport {
        campaign: campaign.clone(),
        post: opts.post.clone(),
        relay: describe,
        attempted: 0,
        counts: Counts::default(),
        finished: false,
        stopped: "nothing to do".into(),
        problems: vec![],
        largest_html_bytes: import.largest_html,
        resumes_at: None,
        exit_code: exit::NOTHING_TO_DO,
        message: String::new(),
    };
    if locked {
        report.stopped = "locked".into();
        report.exit_code = exit::LOCKED;
        report.message = format!(
            "another herald is already sending {campaign} (see {}); this one stops so nobody is mailed twice",
            store.describe()
        );
        return Ok(report);
    }
    if let Some(new) = finished_newcomers {
        let c = store.counts(&campaign)?;
        report.finished = true;
        report.problems = store.problems(&campaign, 50)?;
        report.message = format!(
            "nothing to do: {campaign} is finished ({} sent, {} failed, {} skipped)",
            c.sent, c.failed, c.skipped
        );
        if new > 0 {
            report.message.push_str(&format!(
                ". {new} people on the list now were not on it then and are not sent this issue \
                 (they get the next one); to send it to them too, run the same command with --include-new"
            ));
        }
        report.counts = c;
        return Ok(report);
    }
    let PreparedTarget::Relay(relay) = target else {
        unreachable!("a send goes to the relay")
    };
    let test = !opts.to.is_empty();
    if test {
        for s in &import.examples {
            tracing::warn!(
                "{} is on the suppression list; the test is not sent to them",
                s.email
            );
        }
    }

    let before = store.counts(&campaign)?;
    report.counts = before.clone();
    let to_send = before.pending
        + before.deferred
        + if opts.resend_unknown {
            before.unknown
        } else {
            0
        };
    if to_send == 0 {
        store.finish_if_done(&campaign)?;
        report.finished = store.is_finished(&campaign)?;
        report.problems = store.problems(&campaign, 50)?;
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
    // Several relays add up; one without a rate makes the whole unlimited.
    let rates: Option<Vec<f64>> = std::iter::once(settings.rate)
        .chain(others.iter().map(|(s, _)| s.rate))
        .map(|r| r.map(|r| r.per_second()))
        .collect();
    let eta = rates.map(|r| to_send as f64 / r.iter().sum::<f64>());
    let mut plan = format!(
        "About to send \"{}\" ({campaign}) to {to_send} people through {} with {} connection(s)",
        issue.content.title,
        if others.is_empty() {
            relay.describe()
        } else {
            format!(
                "{} ({})",
                settings.relay_name.as_deref().unwrap_or_default(),
                relay.describe()
            )
        },
        settings.connections
    );
    match settings.rate {
        Some(r) => plan.push_str(&format!(", at most {r}")),
        None => plan.push_str(", with no rate limit (as fast as the relay accepts)"),
    }
    for (s, r) in &others {
        plan.push_str(&format!(
            ", and through {} ({}) with {} connection(s), {}",
            s.name,
            r.describe(),
            s.connections.unwrap_or(1),
            match s.rate {
                Some(rate) => format!("at most {rate}"),
                None => "no rate limit".into(),
            }
        ));
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
        import.largest_html as f64 / 1024.0
    ));
    for w in picture_warnings(issue, &opts.post) {
        tracing::warn!("{w}");
    }
    tracing::info!("{plan}");
    if let Some(w) = crate::compose::check::clip_warning(import.largest_html) {
        tracing::warn!("{w}");
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
    // The columns the import just stored with the campaign.
    let cols = Arc::new(columns);
    let timeout = settings.timeout;
    let plan = engine::Plan {
        campaign: campaign.clone(),
        composer,
        columns: cols,
        mailer: Smtp::new(relay, timeout),
        settings,
        others: others
            .into_iter()
            .map(|(s, r)| engine::Lane {
                quota: quota(&s),
                name: s.name,
                mailer: Smtp::new(r, timeout),
                rate: s.rate,
                connections: s.connections.unwrap_or(1),
                weight: s.weight,
            })
            .collect(),
    };
    let (outcome, mut store) = engine::run(store, plan, Arc::clone(&progress), interrupt);
    display.finish();

    let finished = store.finish_if_done(&campaign)?;
    let after = store.counts(&campaign)?;
    // The last quota may run out with the last person: nobody waits, so
    // the run is simply done.
    let mut outcome = outcome;
    if matches!(outcome.stop, Stop::QuotaSpent { .. }) && after.pending + after.deferred == 0 {
        outcome.stop = Stop::Done;
    }
    report.attempted = progress.attempted();
    report.finished = finished;
    report.problems = store.problems(&campaign, 50)?;
    // With several senders on one campaign (a shared store), the others'
    // messages in flight look unknown from here: this sender answers for
    // its own share.
    let shared = store.is_shared();
    let some_failed = if shared {
        progress.failed.load(std::sync::atomic::Ordering::Relaxed) > 0
            || progress.deferred.load(std::sync::atomic::Ordering::Relaxed) > 0
    } else {
        after.failed > before.failed || after.deferred > 0 || after.unknown > 0
    };
    let (stopped, code) = match &outcome.stop {
        // The end of the window is like max-per-run: the rest waits by
        // design, so only failures and deferrals make it exit 3.
        // Spent quotas leave people waiting by necessity, not by design:
        // "deferred", as for a recipient whose server said "later".
        Stop::QuotaSpent { .. } => ("daily quota used", exit::SOME_FAILED),
        Stop::Done | Stop::Limit | Stop::WindowClosed if some_failed => ("done", exit::SOME_FAILED),
        Stop::Done | Stop::Limit | Stop::WindowClosed => ("done", exit::OK),
        Stop::Interrupted => ("interrupted", exit::INTERRUPTED),
        Stop::Fatal(_) => ("stopped by an error", exit::BAD_INPUT),
        Stop::RelayDown(_) => ("relay down", exit::RELAY_DOWN),
        Stop::Broken(_) => ("stopped by an error", exit::INTERNAL),
    };
    report.stopped = match outcome.stop {
        Stop::Limit => "max-per-run reached".into(),
        Stop::WindowClosed => "send window closed".into(),
        _ => stopped.into(),
    };
    report.exit_code = code;
    if let Stop::QuotaSpent { frees_at, .. } = &outcome.stop {
        report.resumes_at = Some(frees_at.to_string());
    }
    report.message = match &outcome.stop {
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
                "stopped: {who} ({why}). Nobody was lost: the {} people not yet mailed \
                 wait for the next run; run the same command again when {back} back",
                after.pending + after.deferred
            )
        }
        Stop::Interrupted => format!(
            "stopped on request after {} messages this run; run the same command again to continue",
            progress.attempted()
        ),
        Stop::Limit => format!(
            "sent this run's share ({} messages); {} wait for the next run",
            outcome.handed_over,
            after.pending + after.deferred
        ),
        Stop::WindowClosed => {
            // From the close the run started with, not the clock:
            // HERALD_NOW stands still in rehearsals.
            let opens = config
                .send_window
                .as_ref()
                .zip(window_close)
                .map(|(w, close)| {
                    let (open, _) = w.next(close);
                    format!("; it opens again {}", w.describe(open))
                })
                .unwrap_or_default();
            format!(
                "the send window closed after {} messages this run; {} wait for the next run in it{opens}",
                progress.attempted(),
                after.pending + after.deferred
            )
        }
        Stop::QuotaSpent { frees_at, detail } => {
            let left = after.pending + after.deferred;
            format!(
                "every relay has used its daily quota ({detail}); the {left} people not yet mailed wait. \
                 The first quota frees up {}: run the same command again after that (a cron job simply continues)",
                frees_up(*frees_at)
            )
        }
        Stop::Done if finished => format!("{campaign} is finished"),
        Stop::Done if shared && after.pending + after.unknown > 0 => format!(
            "{campaign}: this sender's share is done; {} waiting and {} in flight are with the other senders              (`herald status` shows the whole campaign)",
            after.pending, after.unknown
        ),
        Stop::Done => format!(
            "{campaign}: {} deferred to the next run, {} of unknown outcome",
            after.deferred, after.unknown
        ),
    };
    report.counts = after;
    Ok(report)
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
                        "{bar:30} {pos}/{len} sent {msg} ETA {eta}",
                    )
                    .expect("valid template"),
                );
                // Log lines print above the bar, not through it.
                crate::log::set_progress_bar(Some(bar.clone()));
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
                        // A whole number: indicatif's own {per_sec} shows decimals.
                        bar.set_message(format!(
                            "({sent} ok, {failed} failed, {deferred} deferred) {:.0}/s",
                            sent as f64 / started.elapsed().as_secs_f64().max(0.001)
                        ));
                    }
                    None if stop || last_log.elapsed() >= Duration::from_secs(10) => {
                        let rate = sent as f64 / started.elapsed().as_secs_f64().max(0.001);
                        tracing::info!(
                            "{sent} sent, {failed} failed, {deferred} deferred of {total} ({rate:.0}/s)"
                        );
                        last_log = std::time::Instant::now();
                    }
                    None => {}
                }
                if stop {
                    if let Some(bar) = &bar {
                        bar.finish();
                        crate::log::set_progress_bar(None);
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

#[cfg(test)]
mod tests {
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
