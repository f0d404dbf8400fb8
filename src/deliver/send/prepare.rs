//! Everything before the first message: composer, store, lock, list.

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
}

/// How many people the list would add to a finished campaign: those it
/// would mail now whom the campaign never had, or had taken off the list
/// before mailing them. Read only; the journal is not changed.
pub(super) fn newcomers(
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
pub(super) struct Imported {
    pub(super) rows_read: u64,
    pub(super) skipped: BTreeMap<SkipReason, u64>,
    pub(super) examples: Vec<Skipped>,
    pub(super) largest_html: usize,
}

/// Everything before the first message: composer, store, lock, list.
/// Checks everything that can be wrong before anything is written.
pub(super) fn prepare(
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
        Target::Relay => PreparedTarget::Relay,
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
        PreparedTarget::Relay => None,
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

/// The subscriber list, read once through to refuse a broken file before
/// anything is `done` (written or sent).
pub(super) fn checked_list<'a>(
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
