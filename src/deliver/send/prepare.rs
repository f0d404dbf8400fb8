//! Everything before the first message: composer, store, lock, list.

use std::sync::Mutex;

use super::error::{Result, SendError};
use super::list_queue::{ListQueue, Reading};
use super::*;

/// Where the messages of a run go.
pub(super) enum Target {
    Outbox(PathBuf),
    Relay,
}

pub(super) enum PreparedTarget {
    Outbox(Outbox),
    Relay,
}

/// A run with its list imported and its lock held.
pub(super) struct Prepared {
    pub(super) campaign: String,
    pub(super) composer: Arc<Composer>,
    pub(super) store: Box<dyn Store>,
    pub(super) columns: Vec<String>,
    pub(super) import: Imported,
    pub(super) target: PreparedTarget,
    /// Held until the run ends.
    pub(super) _lock: Option<Box<dyn store::Lock>>,
    /// The throwaway store's folder, for dry runs and test sends.
    pub(super) _scratch: Option<tempfile::TempDir>,
    pub(super) locked: bool,
    /// The campaign is finished and the list was not imported: how many
    /// people on it now would be new to it (see `--include-new`).
    pub(super) finished_newcomers: Option<u64>,
    /// The journal's suppression mark before its list was read: the run
    /// leaves out whoever is suppressed after it (`None` for a scratch store).
    pub(super) suppression_mark: Option<i64>,
    /// A test send's addresses that are on the suppression list, and why.
    pub(super) suppressed_tests: Vec<SuppressedTest>,
    /// A dry run's list, read as the run goes (see [`list_queue`]); `None`
    /// when the recipients were imported into `store`.
    pub(super) reading: Option<Arc<Mutex<Reading>>>,
}

/// A test send's address herald does not mail: it is on the suppression
/// list (someone clicked Unsubscribe in their own test email, a bounce).
#[derive(Debug, Clone, Serialize)]
pub struct SuppressedTest {
    pub email: String,
    /// What keeps it there (its weightiest event, see
    /// [`store::Source::weight`]); `None` when a `--suppress` file lists it.
    pub why: Option<store::Suppressed>,
}

/// Which of `tests` the suppression list holds, each with why.
fn suppressed_tests(
    tests: &[Recipient],
    suppression: &Suppression,
    journal: Option<&dyn Store>,
) -> Result<Vec<SuppressedTest>, store::StoreError> {
    let listed: Vec<&Recipient> = tests
        .iter()
        .filter(|r| suppression.contains(&r.email))
        .collect();
    if listed.is_empty() {
        return Ok(Vec::new());
    }
    let people = match journal {
        Some(j) => j.suppressions()?,
        None => Vec::new(),
    };
    Ok(listed
        .into_iter()
        .map(|r| SuppressedTest {
            // As the list holds it (and `suppress remove` takes it).
            email: r.email.to_lowercase(),
            why: people
                .iter()
                .find(|p| p.email == r.email.to_lowercase())
                .cloned(),
        })
        .collect())
}

/// How many people the list would add to a finished campaign: those it
/// would mail now whom the campaign never had, or had taken off the list
/// before mailing them. Read only; the journal is not changed.
pub(super) fn newcomers(
    (list, repeats): (&Path, &audience::Repeats),
    store: &dyn Store,
    campaign: &str,
    suppression: &Arc<Suppression>,
) -> Result<u64> {
    let known: std::collections::HashSet<String> = store
        .recipients(campaign)?
        .into_iter()
        .filter(|r| r.state != store::State::Removed)
        .map(|r| r.email.to_lowercase())
        .collect();
    let mut rows = audience::open_checked(list, Arc::clone(suppression), repeats)?;
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
pub(super) struct Imported {
    pub(super) rows_read: u64,
    pub(super) skipped: BTreeMap<SkipReason, u64>,
    pub(super) examples: Vec<Skipped>,
    pub(super) largest_html: usize,
}

impl Imported {
    /// A row left out: counted by reason, and kept as an example while
    /// there are fewer than [`EXAMPLES`].
    pub(super) fn left_out(&mut self, s: Skipped) {
        *self.skipped.entry(s.reason).or_default() += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(s);
        }
    }
}

/// Everything before the first message: composer, store, lock, list.
/// Checks everything that can be wrong before anything is written.
pub(super) fn prepare(
    opts: &SendOptions,
    config: &Config,
    config_path: &Path,
    issue: &Issue,
    target: Target,
) -> Result<Prepared> {
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
    refuse_crossed(dry, &target)?;
    let location = store::Location::from_config(config)?;
    let (journal, _journal_copy) = journal(&location, dry, test)?;
    let (suppression, mark) = suppression(opts, journal.as_deref())?;
    let test_recipients = test_recipients(&opts.to)?;
    let suppressed_tests = suppressed_tests(&test_recipients, &suppression, journal.as_deref())?;
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

    let campaign = if test {
        format!("{}#test", campaign_id(issue))
    } else {
        campaign_id(issue)
    };
    if dry && let Some((list, repeats, false)) = &list {
        return streamed(
            (campaign, composer, suppressed_tests),
            target,
            (list, repeats),
            &suppression,
        );
    }
    // A test send or a dry run is not part of the campaign: a store of its own.
    let (store, scratch, suppression_mark) = match journal {
        Some(j) if !dry && !test => (j, None, mark),
        _ => scratch(dry)?,
    };
    let lock = store.lock(&campaign)?;
    let locked = lock.is_none();
    let target = target.prepare(&campaign)?;
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
        suppressed_tests,
        reading: None,
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
        && let Some((list, repeats, _)) = &list
        && store.is_finished(&campaign)?
    {
        prepared.finished_newcomers = Some(newcomers(
            (list, repeats),
            &**store,
            &campaign,
            &suppression,
        )?);
        return Ok(prepared);
    }
    if !test {
        refuse_changed(&**store, &campaign, &composer, opts)?;
    }
    let (columns, imported) = import(
        &mut prepared,
        opts,
        &composer,
        &suppression,
        list.as_ref().map(|(l, r, _)| (*l, r)),
        &test_recipients,
    )?;
    prepared.columns = columns;
    prepared.import = imported;
    Ok(prepared)
}

/// A dry run of a list: the outbox, and the list opened for the engine's
/// queue to read as the run goes (see [`list_queue`]); nothing imported.
fn streamed(
    (campaign, composer, suppressed_tests): (String, Arc<Composer>, Vec<SuppressedTest>),
    target: Target,
    (list, repeats): (&Path, &audience::Repeats),
    suppression: &Arc<Suppression>,
) -> Result<Prepared> {
    let mut target = target.prepare(&campaign)?;
    let PreparedTarget::Outbox(outbox) = &mut target else {
        unreachable!("a dry run writes to the outbox")
    };
    let rows = audience::open_checked(list, Arc::clone(suppression), repeats)?;
    let columns = rows.columns().to_vec();
    let skips = outbox
        .lend_skips()
        .expect("a new outbox has its skipped.csv");
    let reading = Arc::new(Mutex::new(Reading::new(
        rows,
        list.to_path_buf(),
        outbox.dir().to_path_buf(),
        Arc::clone(&composer),
        skips,
    )));
    Ok(Prepared {
        campaign,
        composer,
        store: Box::new(ListQueue::new(Arc::clone(&reading))),
        columns,
        import: Imported::default(),
        target,
        _lock: None,
        _scratch: None,
        locked: false,
        finished_newcomers: None,
        suppression_mark: None,
        suppressed_tests,
        reading: Some(reading),
    })
}

/// The recipients into the run's store: the list, or a test send's
/// addresses. Returns the list's columns and what the import left out.
fn import(
    prepared: &mut Prepared,
    opts: &SendOptions,
    composer: &Composer,
    suppression: &Arc<Suppression>,
    list: Option<(&Path, &audience::Repeats)>,
    test_recipients: &[Recipient],
) -> Result<(Vec<String>, Imported)> {
    let outbox = match &mut prepared.target {
        PreparedTarget::Outbox(o) => Some(o),
        PreparedTarget::Relay => None,
    };
    let mut importer = Importer {
        store: &mut *prepared.store,
        campaign: &prepared.campaign,
        post: opts.post.display().to_string(),
        composer,
        suppression,
        skips: Skips {
            outbox,
            imported: Imported::default(),
        },
    };
    let columns = match list {
        None => {
            importer.tests(test_recipients)?;
            Vec::new()
        }
        Some(list) => importer.list(list, opts.dry_run)?,
    };
    let imported = importer.skips.imported;
    Ok((columns, imported))
}

/// A dry run only ever writes to the outbox, and a send only ever uses
/// the relay: anything else is herald's bug, stopped before it acts.
fn refuse_crossed(dry: bool, target: &Target) -> Result<()> {
    if dry != matches!(target, Target::Outbox(_)) {
        return Err(crate::Fault::new(
            "a dry run was about to use a relay, or a send the outbox; nothing was done",
            "this is a bug in herald: please report it",
        )
        .into());
    }
    Ok(())
}

/// A throwaway store, and its folder. A dry run's does not record who
/// was written (only what went wrong is read back); a test send's reports
/// its counts from it.
#[allow(clippy::type_complexity)]
fn scratch(dry: bool) -> Result<(Box<dyn Store>, Option<tempfile::TempDir>, Option<i64>)> {
    let (dir, s) = if dry {
        store::dry_run_scratch()?
    } else {
        store::scratch()?
    };
    Ok((s, Some(dir), None))
}

/// Refuses to go on with a campaign whose post changed since it started
/// (unless --allow-changed): some people got the earlier version.
fn refuse_changed(
    store: &dyn Store,
    campaign: &str,
    composer: &Composer,
    opts: &SendOptions,
) -> Result<()> {
    if let Some(h) = store.campaign_hash(campaign)?
        && h != composer.content_hash()
        && !opts.allow_changed
    {
        return Err(InputError::new(
            &opts.post,
            None,
            format!(
                "the post changed since the campaign {campaign} started, so some people got the earlier version. \
                 To send the new version to the rest, run again with --allow-changed"
            )
        ).into());
    }
    Ok(())
}

/// The journal a run reads: a dry run a copy of it (see
/// [`journal_for_dry_run`]), with the copy's folder; a test send the
/// journal if there is one; only a real send may create it.
#[allow(clippy::type_complexity)]
fn journal(
    location: &store::Location,
    dry: bool,
    test: bool,
) -> Result<(Option<Box<dyn Store>>, Option<tempfile::TempDir>)> {
    Ok(if dry {
        match journal_for_dry_run(location)? {
            Some(view) => (Some(view.store), view._copy),
            None => (None, None),
        }
    } else if test {
        (location.open_existing()?, None)
    } else {
        (Some(location.open()?), None)
    })
}

/// Whom never to mail: `--suppress` files and the journal's list (hard
/// bounces), read even for a dry run or a test send so they leave out the
/// same people a real send would; and the journal's suppression mark.
fn suppression(
    opts: &SendOptions,
    journal: Option<&dyn Store>,
) -> Result<(Arc<Suppression>, Option<i64>)> {
    let mut suppression = Suppression::default();
    for s in &opts.suppress {
        suppression.add_file(s)?;
    }
    // Noted before the list is read: a suppression from now on is seen by
    // the run (at each hand-over), one before it by the import.
    let mark = journal.map(|j| j.suppression_mark()).transpose()?;
    if let Some(j) = journal {
        for key in j.suppressed()? {
            suppression.insert(&key);
        }
    }
    Ok((Arc::new(suppression), mark))
}

impl Target {
    /// The outbox, created (a dry run), or the relay.
    fn prepare(self, campaign: &str) -> Result<PreparedTarget> {
        Ok(match self {
            Target::Outbox(dir) => {
                PreparedTarget::Outbox(Outbox::create(&dir, campaign).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::AlreadyExists {
                        SendError::from(InputError::new(&dir, None, e.to_string()))
                    } else {
                        SendError::from(crate::Fault::new(
                            format!("cannot prepare the outbox {} ({e})", dir.display()),
                            "check the disk, or choose another folder with --outbox",
                        ))
                    }
                })?)
            }
            Target::Relay => PreparedTarget::Relay,
        })
    }
}

/// Brings the recipients into the run's store, counting (and for a dry
/// run writing to the outbox's `skipped.csv`) whom it leaves out.
struct Importer<'a> {
    store: &'a mut dyn Store,
    campaign: &'a str,
    post: String,
    composer: &'a Composer,
    suppression: &'a Arc<Suppression>,
    skips: Skips<'a>,
}

/// Whom the import leaves out, and what it measured.
struct Skips<'a> {
    outbox: Option<&'a mut Outbox>,
    imported: Imported,
}

impl Skips<'_> {
    fn skip(&mut self, s: Skipped) -> Result<()> {
        if let Some(o) = self.outbox.as_deref_mut() {
            o.skip(&s).map_err(|source| SendError::Outbox {
                dir: o.dir().to_path_buf(),
                source,
            })?;
        }
        self.imported.left_out(s);
        Ok(())
    }
}

impl Importer<'_> {
    /// A test send's addresses, but the suppressed ones.
    fn tests(&mut self, recipients: &[Recipient]) -> Result<()> {
        self.store
            .upsert_campaign(self.campaign, &self.post, self.composer.content_hash(), &[])?;
        let mut import = self.store.import(self.campaign)?;
        for r in recipients {
            if self.suppression.contains(&r.email) {
                self.skips.skip(Skipped {
                    line: 0,
                    email: r.email.clone(),
                    reason: SkipReason::Suppressed,
                    detail: None,
                })?;
                continue;
            }
            self.skips.imported.largest_html = self
                .skips
                .imported
                .largest_html
                .max(self.composer.html_len(r));
            import.add(&r.email, 0, &[])?;
        }
        import.commit()?;
        Ok(())
    }

    /// The subscriber list; returns its columns.
    fn list(
        &mut self,
        (list, repeats): (&Path, &audience::Repeats),
        dry: bool,
    ) -> Result<Vec<String>> {
        let mut rows = audience::open_checked(list, Arc::clone(self.suppression), repeats)?;
        let columns = rows.columns().to_vec();
        self.store.upsert_campaign(
            self.campaign,
            &self.post,
            self.composer.content_hash(),
            &columns,
        )?;
        let mut import = self.store.import(self.campaign)?;
        while let Some(row) = rows.next_row() {
            self.skips.imported.rows_read += 1;
            // The list was validated above; a row can only break now if
            // the file changed meanwhile, and then stopping is right.
            match row? {
                Row::Send(r) => {
                    if let Some(why) = self.composer.header_problem(&r) {
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
                        self.skips.skip(Skipped {
                            line: r.line,
                            email: r.email.clone(),
                            reason: SkipReason::HeaderTooLong,
                            detail: Some(why),
                        })?;
                        continue;
                    }
                    if !dry {
                        // A dry run measures the messages it writes.
                        self.skips.imported.largest_html = self
                            .skips
                            .imported
                            .largest_html
                            .max(self.composer.html_len(&r));
                    }
                    import.add(&r.email, r.line as i64, &r.values)?
                }
                Row::Skip(s) => {
                    if s.reason.is_recorded() {
                        // Added, then skipped: someone new to the
                        // campaign is recorded as left out (so `status`
                        // and its CSV count and list them, not only
                        // those suppressed mid-campaign); someone
                        // already mailed keeps their state.
                        import.add(&s.email, s.line as i64, &[])?;
                        import.skip(&s.email, s.reason.describe())?
                    }
                    self.skips.skip(s)?;
                }
            }
        }
        let removed = import.commit()?;
        if removed > 0 {
            tracing::info!(
                "{removed} people not yet mailed are no longer on the list; they will not be mailed"
            );
        }
        Ok(columns)
    }
}

/// The subscriber list, read once through to refuse a broken file before
/// anything is `done` (written or sent); with who is on it twice, and
/// whether an address is on a row its status leaves out and on one to
/// mail (see `audience::Checked::status_and_send`).
pub(super) fn checked_list<'a>(
    list: Option<&'a Path>,
    post: &Path,
    suppression: &Arc<Suppression>,
    done: &str,
) -> Result<(&'a Path, audience::Repeats, bool)> {
    let Some(list) = list else {
        return Err(InputError::new(
            post,
            None,
            "say who to send to: --subscribers FILE.csv for the list, or --to ADDRESS for a test",
        )
        .into());
    };
    let errors = match audience::validate(list, Arc::clone(suppression)) {
        Ok(checked) => return Ok((list, checked.repeats, checked.status_and_send)),
        Err(errors) => errors,
    };
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
    Err(InputError::new(list, None, msg).into())
}

pub(super) fn test_recipients(to: &[String]) -> Result<Vec<Recipient>, InputError> {
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
