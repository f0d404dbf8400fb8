//! A dry run: every message written to the outbox, nothing sent, the
//! journal read from a copy.

use super::error::{Result, SendError};
use super::list_queue;
use super::*;

/// The journal as a dry run sees it: for the SQLite journal, a copy in a
/// temporary folder (deleted with the view), so nothing a dry run does can
/// change the real file, not even an upgrade of its format; `None` when
/// there is no journal yet. PostgreSQL is shared and cannot be copied: it
/// is opened, and a dry run only reads it.
pub struct JournalView {
    pub store: Box<dyn Store>,
    pub(super) _copy: Option<tempfile::TempDir>,
}

impl JournalView {
    /// The real journal, for a command that is not a dry run.
    pub fn of(store: Box<dyn Store>) -> JournalView {
        JournalView { store, _copy: None }
    }

    /// An empty throwaway journal, for a dry run where there is none yet.
    pub fn empty() -> Result<JournalView> {
        let (dir, store) = store::scratch()?;
        Ok(JournalView {
            store,
            _copy: Some(dir),
        })
    }
}

pub fn journal_for_dry_run(location: &store::Location) -> Result<Option<JournalView>> {
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
    /// Ctrl-C or SIGTERM stopped the run before every row was read: the
    /// outbox has the messages written by then (the manifest lists them).
    pub stopped: bool,
}

/// A dry run: every message written to the outbox, nothing sent.
pub(super) fn dry_run(
    opts: &SendOptions,
    config: &Config,
    config_path: &Path,
    issue: &Issue,
) -> Result<Summary> {
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
    give_back_freed_memory();
    keep_freed_memory_near();
    let Prepared {
        campaign,
        composer,
        store,
        columns,
        import,
        target,
        _scratch,
        _lock,
        reading,
        ..
    } = run;
    let PreparedTarget::Outbox(outbox) = target else {
        unreachable!("a dry run writes to the outbox")
    };
    let write_err = |source: std::io::Error| SendError::Outbox {
        dir: dir.to_path_buf(),
        source,
    };
    let mailer = OutboxMailer::new(outbox).map_err(write_err)?;
    let plan = engine::Plan {
        campaign: campaign.clone(),
        composer,
        columns: Arc::new(columns.clone()),
        // Files need no throttle, and one writer keeps the files in list order.
        relays: vec![engine::Lane::of(mailer.clone())],
        settings: Settings {
            max_attempts: 1,
            ..Settings::default()
        },
    };
    let (outcome, back) = stop::run_engine(store, plan, Arc::new(Progress::default()));
    let stopped = matches!(outcome.stop, Stop::Interrupted);
    // A list read as the run went: what its reading counted, and the
    // outbox's skipped.csv back; or why it stopped (the import's error).
    let (import, skips) = match reading {
        None => (import, None),
        Some(reading) => {
            let mut r = list_queue::lock(&reading);
            if let Some(e) = r.stopped.take() {
                return Err(e);
            }
            (std::mem::take(&mut r.imported), r.skips.take())
        }
    };
    failed(outcome.stop)?;
    let mut outbox = mailer
        .into_inner()
        .expect("the engine has let go of the outbox")
        .map_err(write_err)?;
    if let Some(skips) = skips {
        outbox.give_back_skips(skips);
    }
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
        stopped,
    })
}

/// Freed memory at the top of the heap is kept for the next messages
/// rather than given back to the system at once: the outbox's writer
/// thread frees each message while the run's thread builds the next, and
/// with malloc's default (give back once 128 KB are free at the top) the
/// heap shrank and grew again all the time, each time touching fresh pages
/// (a dry run of 100,000: 45,900 page faults, against 8,200 when one
/// thread did both). What is kept was in use a moment before: the peak
/// does not grow.
fn keep_freed_memory_near() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes when malloc gives memory back; it takes
    // malloc's lock like any allocation.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 4 << 20);
    }
}

/// The outbox could not be written, or the run could not go on.
fn failed(stop: Stop) -> Result<()> {
    match stop {
        Stop::Broken(why) => {
            Err(crate::Fault::new(why, "check the disk and the outbox folder").into())
        }
        Stop::Fatal(why) | Stop::RelayDown(why) => Err(SendError::Relay(why)),
        Stop::Done
        | Stop::Limit
        | Stop::Interrupted
        | Stop::WindowClosed
        | Stop::QuotaSpent { .. } => Ok(()),
    }
}
