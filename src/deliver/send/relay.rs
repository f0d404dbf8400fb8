//! A real send or a test send, through the relays: the engine's run and
//! its typed outcome, which the CLI words.

use super::error::Result;
use super::*;

#[derive(Debug, Serialize)]
pub struct SendReport {
    pub campaign: String,
    pub post: PathBuf,
    pub relay: String,
    /// Messages tried this run (sent, failed or deferred).
    pub attempted: u64,
    pub counts: Counts,
    pub finished: bool,
    /// How the send ended; `stopped` in the JSON summary ([`End::label`]).
    #[serde(rename = "stopped", serialize_with = "end_label")]
    pub end: End,
    pub problems: Vec<Problem>,
    /// The largest personalised HTML part (0 when nothing was to be sent).
    pub largest_html_bytes: usize,
    /// When the people left waiting can go: the first moment a relay's
    /// daily quota frees up, when every relay's was spent (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumes_at: Option<String>,
    /// The people of the list this run left out, by why (unsubscribed, on
    /// the suppression list...), as the dry run's summary counts them.
    pub skipped: BTreeMap<SkipReason, u64>,
    /// The first of them, with their line in the list.
    pub skipped_examples: Vec<Skipped>,
    /// A test send's addresses on the suppression list (not mailed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub suppressed_tests: Vec<SuppressedTest>,
}

/// The password in `var` (or the file named by `var`_FILE).
pub(super) fn relay_password(var: &str) -> Result<Option<String>, InputError> {
    Ok(crate::config::secret(var)?.map(|s| String::from_utf8_lossy(s.expose()).into_owned()))
}

pub(super) fn settings(opts: &SendOptions, config: &Config) -> Settings {
    Settings {
        batch: config.batch_size.map(|n| (n, config.batch_pause)),
        max_per_run: config.max_per_run,
        max_attempts: config.max_attempts.max(1),
        retry_base: config.retry_wait,
        timeout: config.smtp_timeout,
        resend_unknown: opts.resend_unknown,
        relay_down_after: config.relay_down_after,
        window_closes_after: None,
        suppression_mark: None,
        wall: crate::clock::Wall::System,
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

/// A run outside the send window: when it opens next, in the window's zone
/// and in UTC.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "outside the send window ({window}, from `send_window` in {origin}): nothing sent; it opens {opens}"
)]
pub struct OutsideWindow {
    /// The window, as the settings say it.
    pub window: String,
    /// Where `send_window` was set.
    pub origin: String,
    /// When it opens next, for a person.
    pub opens: String,
}

/// Whether the send window (if any) is open now: how long until it closes,
/// and when. Test sends and dry runs never ask: the window is about
/// subscribers' inboxes, not about trying the issue out.
pub fn window_now(config: &Config) -> Result<Option<(Duration, jiff::Timestamp)>, OutsideWindow> {
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
            Err(OutsideWindow {
                window: window.to_string(),
                origin: config.source("send_window").to_string(),
                opens: window.describe(open),
            })
        }
    }
}

/// A relay's daily quota for the engine, if it has one.
pub(super) fn quota(r: &RelaySetting) -> Option<engine::Quota> {
    r.max_per_day.map(|max_per_day| engine::Quota {
        max_per_day,
        zone: r.day_zone.clone(),
        zone_name: r.day_zone_name.clone(),
    })
}

/// Every relay of the send (`relays:`, or `smtp_url` as a list of one),
/// each with its password read from its own variable.
pub(super) fn relays(config: &Config, config_path: &Path) -> Result<Vec<(RelaySetting, Relay)>> {
    let list = config.relay_list();
    if list.is_empty() {
        return Err(InputError::new(
            config_path,
            None,
            format!(
                "say which mail relay to send through: `smtp_url` in herald.yaml, HERALD_SMTP_URL, or --smtp \
                 (like smtp://mail.example.org:587), or several under `relays:`; or add --dry-run to write the \
                 messages to files. {}",
                config.read_from()
            ),
        ).into());
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
            let m = m.to_string();
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
                .map_err(|e| config.source("smtp_ca_file").error(e.to_string()))?,
            None => relay,
        };
        out.push((setting, relay));
    }
    Ok(out)
}

/// How a send ended: the CLI words it and maps it to an exit code.
#[derive(Debug, Clone, PartialEq)]
pub enum End {
    /// Outside the send window: nothing was sent.
    OutsideWindow(OutsideWindow),
    /// Another herald is sending the campaign; `store` says where its lock is.
    Locked { store: String },
    /// The campaign is finished, and the list was not read into it:
    /// `newcomers` people on the list now were not on it then.
    Finished { newcomers: u64 },
    /// Nobody is left to send to (some may be of unknown outcome).
    NothingLeft,
    /// The person asked said no: nothing was sent.
    Cancelled,
    /// A test send whose every address is on the suppression list:
    /// nothing was sent (the report's `suppressed_tests` say why).
    TestSuppressed,
    /// The engine ran, and stopped for this reason.
    Ran(Ran),
}

/// A run of the engine, as it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Ran {
    pub stop: Stop,
    /// Messages handed to the relays this run.
    pub handed_over: u64,
    /// Some recipients failed or were deferred this run, or are of unknown
    /// outcome (with a shared store: of this sender's own share).
    pub some_failed: bool,
    /// The store is shared with other senders.
    pub shared: bool,
    /// When the send window the run started in closes, if there is one.
    pub window_close: Option<jiff::Timestamp>,
}

impl End {
    /// The report's `stopped`, for the JSON summary: one label each.
    pub fn label(&self) -> &'static str {
        match self {
            End::OutsideWindow(_) => "outside the send window",
            End::Locked { .. } => "locked",
            End::Finished { .. } | End::NothingLeft => "nothing to do",
            End::Cancelled => "cancelled",
            End::TestSuppressed => "suppressed",
            End::Ran(ran) => match ran.stop {
                Stop::QuotaSpent { .. } => "daily quota used",
                Stop::Limit => "max-per-run reached",
                Stop::WindowClosed => "send window closed",
                Stop::Done => "done",
                Stop::Interrupted => "interrupted",
                Stop::Fatal(_) | Stop::Broken(_) => "stopped by an error",
                Stop::RelayDown(_) => "relay down",
            },
        }
    }
}

pub(super) fn end_label<S: serde::Serializer>(end: &End, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(end.label())
}

/// One relay of a send, as the confirmation shows it.
#[derive(Debug, Clone)]
pub struct ReadyRelay {
    /// Its name (`relays:`), or `default` for the single relay.
    pub name: String,
    /// `smtp://mail.example.org:587`, without the password.
    pub describe: String,
    pub connections: usize,
    pub rate: Option<crate::deliver::throttle::Rate>,
}

impl ReadyRelay {
    fn of(lane: &engine::Lane<Smtp>) -> ReadyRelay {
        ReadyRelay {
            name: lane.name.clone(),
            describe: lane.mailer.describe(),
            connections: lane.connections,
            rate: lane.rate,
        }
    }
}

/// Everything is checked and the list is read: what is about to be sent.
pub struct Ready<'a> {
    pub post: &'a Path,
    pub title: &'a str,
    pub campaign: &'a str,
    /// People this run would mail.
    pub to_send: i64,
    pub relays: Vec<ReadyRelay>,
    pub max_per_run: Option<u64>,
    /// The campaign before this run.
    pub before: &'a Counts,
    pub resend_unknown: bool,
    pub largest_html: usize,
    /// See [`picture_warnings`].
    pub picture_warnings: Vec<String>,
}

/// The person who started the send, as [`run`] sees them: asked before
/// anything goes out, shown the progress while it goes. The CLI's terminal
/// is one; [`Unattended`] asks nobody and shows nothing.
pub trait Watch {
    /// The send is about to start; false cancels it (nothing is sent).
    fn confirm(&mut self, ready: &Ready) -> Result<bool>;
    /// Sending starts: `progress` counts its messages, of `total`.
    fn sending(&mut self, progress: Arc<Progress>, total: u64);
    /// Sending is over.
    fn done(&mut self);
}

/// Sends without asking or showing anything.
pub struct Unattended;

impl Watch for Unattended {
    fn confirm(&mut self, _: &Ready) -> Result<bool> {
        Ok(true)
    }
    fn sending(&mut self, _: Arc<Progress>, _: u64) {}
    fn done(&mut self) {}
}

/// Every relay of the send as the engine's lanes (see [`relays`]).
pub(super) fn lanes(
    config: &Config,
    relays: Vec<(RelaySetting, Relay)>,
) -> Vec<engine::Lane<Smtp>> {
    let timeout = config.smtp_timeout;
    relays
        .into_iter()
        .map(|(s, r)| engine::Lane {
            quota: quota(&s),
            name: s.name,
            mailer: Smtp::new(r, timeout),
            rate: s.rate,
            connections: s.connections.unwrap_or(config.connections).max(1),
            weight: s.weight,
        })
        .collect()
}

/// Sends the issue through the relay, continuing where an earlier run
/// stopped. Only [`run`] calls it, and never for a dry run.
pub(super) fn send(
    opts: &SendOptions,
    config: &Config,
    config_path: &Path,
    issue: &Issue,
    watch: &mut dyn Watch,
) -> Result<SendReport> {
    debug_assert!(!opts.dry_run, "a dry run never reaches the relay");
    let mut settings = settings(opts, config);
    let window_close = match window(opts, config, &mut settings) {
        Ok(close) => close,
        Err(outside) => return Ok(outside_window(opts, config, issue, outside)),
    };
    let relays = lanes(config, relays(config, config_path)?);
    let run = prepare(opts, config, config_path, issue, Target::Relay)?;
    give_back_freed_memory();
    let Prepared {
        campaign,
        composer,
        mut store,
        columns,
        import,
        _lock,
        _scratch,
        locked,
        finished_newcomers,
        suppression_mark,
        suppressed_tests,
        ..
    } = run;
    settings.suppression_mark = suppression_mark;
    let mut report = SendReport::new(&campaign, opts, &relays, import.largest_html);
    report.skipped = import.skipped.clone();
    report.skipped_examples = import.examples.clone();
    report.suppressed_tests = suppressed_tests;
    if locked {
        report.end = End::Locked {
            store: store.describe(),
        };
        return Ok(report);
    }
    if let Some(newcomers) = finished_newcomers {
        report.counts = store.counts(&campaign)?;
        report.finished = true;
        report.problems = store.problems(&campaign, 50)?;
        report.end = End::Finished { newcomers };
        return Ok(report);
    }
    let before = store.counts(&campaign)?;
    report.counts = before.clone();
    let to_send = to_send(&before, opts.resend_unknown);
    if to_send == 0 && !report.suppressed_tests.is_empty() {
        report.end = End::TestSuppressed;
        return Ok(report);
    }
    if to_send == 0 {
        store.finish_if_done(&campaign)?;
        report.finished = store.is_finished(&campaign)?;
        report.problems = store.problems(&campaign, 50)?;
        return Ok(report);
    }
    let ready = Ready {
        post: &opts.post,
        title: &issue.content.title,
        campaign: &campaign,
        to_send,
        relays: relays.iter().map(ReadyRelay::of).collect(),
        max_per_run: settings.max_per_run,
        before: &before,
        resend_unknown: opts.resend_unknown,
        largest_html: import.largest_html,
        picture_warnings: picture_warnings(issue, &opts.post),
    };
    if !watch.confirm(&ready)? {
        report.end = End::Cancelled;
        return Ok(report);
    }

    let progress = Arc::new(Progress::default());
    watch.sending(Arc::clone(&progress), to_send as u64);
    let plan = engine::Plan {
        campaign: campaign.clone(),
        composer,
        // The columns the import just stored with the campaign.
        columns: Arc::new(columns),
        relays,
        settings,
    };
    let (outcome, store) = stop::run_engine(store, plan, Arc::clone(&progress));
    watch.done();
    ended(report, store, &before, outcome, &progress, window_close)
}

impl SendReport {
    /// Nothing done yet, through the relays `relay`.
    fn new(
        campaign: &str,
        opts: &SendOptions,
        relays: &[engine::Lane<Smtp>],
        largest_html: usize,
    ) -> SendReport {
        SendReport {
            campaign: campaign.to_string(),
            post: opts.post.clone(),
            relay: relays
                .iter()
                .map(|l| l.mailer.describe())
                .collect::<Vec<_>>()
                .join(", "),
            attempted: 0,
            counts: Counts::default(),
            finished: false,
            end: End::NothingLeft,
            problems: vec![],
            largest_html_bytes: largest_html,
            resumes_at: None,
            skipped: BTreeMap::new(),
            skipped_examples: Vec::new(),
            suppressed_tests: Vec::new(),
        }
    }
}

/// People a run would mail: those waiting or deferred, and with
/// --resend-unknown those of unknown outcome.
fn to_send(before: &Counts, resend_unknown: bool) -> i64 {
    let unknown = if resend_unknown { before.unknown } else { 0 };
    before.pending + before.deferred + unknown
}

/// A campaign's send (not a test) only in the send window: when the window
/// closes (`settings` are told how long after the start), if there is one.
fn window(
    opts: &SendOptions,
    config: &Config,
    settings: &mut Settings,
) -> Result<Option<jiff::Timestamp>, OutsideWindow> {
    if !opts.to.is_empty() {
        return Ok(None);
    }
    let closes = window_now(config)?;
    settings.window_closes_after = closes.map(|c| c.0);
    Ok(closes.map(|c| c.1))
}

/// The report of a send that was outside the send window.
pub(super) fn outside_window(
    opts: &SendOptions,
    config: &Config,
    issue: &Issue,
    outside: OutsideWindow,
) -> SendReport {
    SendReport {
        campaign: campaign_id(issue),
        post: opts.post.clone(),
        relay: config
            .smtp_url
            .as_ref()
            .map(|u| crate::config::redact_url(u.as_str()))
            .unwrap_or_default(),
        attempted: 0,
        counts: Counts::default(),
        finished: false,
        end: End::OutsideWindow(outside),
        problems: vec![],
        largest_html_bytes: 0,
        resumes_at: None,
        skipped: BTreeMap::new(),
        skipped_examples: Vec::new(),
        suppressed_tests: Vec::new(),
    }
}

/// The report of a run of the engine: the campaign as the run left it.
pub(super) fn ended(
    mut report: SendReport,
    mut store: Box<dyn Store>,
    before: &Counts,
    outcome: engine::Outcome,
    progress: &Progress,
    window_close: Option<jiff::Timestamp>,
) -> Result<SendReport> {
    let campaign = report.campaign.clone();
    let finished = store.finish_if_done(&campaign)?;
    let after = store.counts(&campaign)?;
    // The last quota may run out with the last person: nobody waits, so
    // the run is simply done.
    let mut stop = outcome.stop;
    if matches!(stop, Stop::QuotaSpent { .. }) && after.pending + after.deferred == 0 {
        stop = Stop::Done;
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
    if let Stop::QuotaSpent { frees_at, .. } = &stop {
        report.resumes_at = Some(frees_at.to_string());
    }
    report.end = End::Ran(Ran {
        stop,
        handed_over: outcome.handed_over,
        some_failed,
        shared,
        window_close,
    });
    report.counts = after;
    Ok(report)
}
