//! `herald bounces`: reads what came back (bounces, spam complaints,
//! emails to the unsubscribe address) and acts on it; see
//! [`crate::listen::act`] for what is done about each kind.

use std::path::PathBuf;

use serde::Serialize;

use super::output::{self, say};
use super::status::unreadable;
use crate::config::{Config, Override};
use crate::listen::act::{self, Action, Context, MatchedBy, SoftRule, Verdict};
use crate::listen::{bounces, imap, inbox};
use crate::store::Store;
use crate::{InputError, exit, unsubscribe};

/// Read the bounces, spam complaints and unsubscribe emails that came back
/// to `return_path`, suppress who should be, and say what was found. Run it
/// hourly from cron. A message herald understood is marked as read
/// (Maildir); one it did not is left where it is and listed.
#[derive(clap::Args, Debug)]
#[command(group = clap::ArgGroup::new("mailbox").required(true))]
pub struct Args {
    /// A Maildir (or a plain folder of .eml files).
    #[arg(long, value_name = "DIR", group = "mailbox")]
    maildir: Option<PathBuf>,
    /// An mbox file.
    #[arg(long, value_name = "FILE", group = "mailbox")]
    mbox: Option<PathBuf>,
    /// A mailbox over IMAP: imaps://user@host/MAILBOX (the password from
    /// HERALD_IMAP_PASSWORD). Unread messages are read; those understood
    /// are marked as read.
    #[arg(long, value_name = "URL", group = "mailbox")]
    imap: Option<String>,
    /// A CA certificate (PEM) to trust for the IMAP server, besides the
    /// public authorities.
    #[arg(long, value_name = "FILE", requires = "imap")]
    imap_ca_file: Option<PathBuf>,
    /// Seconds each IMAP step (connecting, login, each command and its
    /// answer) may take before the run stops with an error.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0, requires = "imap",
          value_parser = positive_seconds)]
    imap_timeout: f64,
    /// Show what would be done; change nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    journal: super::Journal,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

impl Args {
    pub fn overrides(&self) -> Vec<Override> {
        self.journal.overrides()
    }
}

/// What an entry of the list is: a message read, of a kind, or one set
/// aside unread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    SetAside,
    Read(bounces::Kind),
}

impl Seen {
    fn as_str(self) -> &'static str {
        match self {
            Seen::SetAside => "set-aside",
            Seen::Read(kind) => kind.as_str(),
        }
    }
}

impl Serialize for Seen {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[derive(Serialize)]
struct Entry {
    source: String,
    kind: Seen,
    matched_by: MatchedBy,
    /// False: left in the mailbox for a person (the kind says what it
    /// looked like).
    understood: bool,
    /// Why the message was set aside unread (it could not be read,
    /// vanished, is over the size limit, is a symbolic link); it is left
    /// where it is, for a person.
    #[serde(skip_serializing_if = "Option::is_none")]
    set_aside: Option<String>,
    recipients: Vec<act::Outcome>,
}

#[derive(Serialize, Default)]
struct Summary {
    messages: u64,
    already_handled: u64,
    bounces: u64,
    complaints: u64,
    unsubscribes: u64,
    auto_replies: u64,
    not_bounces: u64,
    not_understood: u64,
    /// Messages that could not be read at all: listed, left in place.
    set_aside: u64,
    suppressed: u64,
    counted: u64,
    recorded: u64,
    /// Addresses a report named that its token (or quoted Message-ID) was
    /// not made for: nothing done about them.
    not_matched: u64,
    dry_run: bool,
}

impl Summary {
    /// Counts one message's verdict.
    fn count(&mut self, verdict: &Verdict) {
        match verdict.kind {
            bounces::Kind::Bounce => self.bounces += 1,
            bounces::Kind::Complaint => self.complaints += 1,
            bounces::Kind::Unsubscribe => self.unsubscribes += 1,
            bounces::Kind::AutoReply => self.auto_replies += 1,
            bounces::Kind::NotABounce => self.not_bounces += 1,
            bounces::Kind::Unknown => {}
        }
        if !verdict.understood {
            self.not_understood += 1;
        }
        for r in &verdict.recipients {
            match r.action {
                Action::Suppressed => self.suppressed += 1,
                Action::Counted => self.counted += 1,
                Action::Recorded => self.recorded += 1,
                Action::NotMatched => self.not_matched += 1,
                Action::None => {}
            }
        }
    }
}

/// Where the messages come from, checked before anything is read.
enum Mailbox {
    Maildir(PathBuf),
    Mbox(PathBuf),
    Imap {
        mailbox: imap::Mailbox,
        password: String,
        ca: Option<Vec<u8>>,
        timeout: std::time::Duration,
    },
}

impl Mailbox {
    /// The IMAP address and password are checked before anything is read.
    fn of(args: &Args) -> anyhow::Result<Mailbox> {
        if let Some(dir) = &args.maildir {
            return Ok(Mailbox::Maildir(dir.clone()));
        }
        if let Some(path) = &args.mbox {
            return Ok(Mailbox::Mbox(path.clone()));
        }
        let Some(url) = args.imap.as_deref() else {
            anyhow::bail!("give --maildir, --mbox or --imap");
        };
        let mailbox = imap::Mailbox::parse(url)?;
        let password = crate::config::secret(imap::PASSWORD_VAR)?
            .and_then(|s| s.expose_str().map(str::to_string))
            .ok_or_else(|| {
                InputError::at(
                    imap::PASSWORD_VAR,
                    format!(
                        "not set: the password of {} (or {}_FILE naming a file that holds it)",
                        mailbox.describe(),
                        imap::PASSWORD_VAR
                    ),
                )
            })?;
        let ca = match &args.imap_ca_file {
            Some(p) => Some(crate::tls::read_ca_pem(p, "CA certificate file (PEM)")?),
            None => None,
        };
        Ok(Mailbox::Imap {
            mailbox,
            password,
            ca,
            timeout: std::time::Duration::from_secs_f64(args.imap_timeout),
        })
    }

    /// Hands each message to `handle`, which says whether it was
    /// understood (and so may be marked as read).
    fn read(
        &self,
        dry_run: bool,
        mut handle: impl FnMut(inbox::Incoming) -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        match self {
            Mailbox::Maildir(dir) => {
                for entry in inbox::maildir(dir)? {
                    handle(entry.read())?;
                }
            }
            Mailbox::Mbox(path) => inbox::mbox(path, |m| handle(m).map(|_| ()))?,
            Mailbox::Imap {
                mailbox,
                password,
                ca,
                timeout,
            } => imap::read(
                mailbox,
                password,
                ca.as_deref(),
                dry_run,
                *timeout,
                &mut handle,
            )?,
        }
        Ok(())
    }
}

pub fn run(args: Args, config: &Config) -> anyhow::Result<i32> {
    let Some(keys) = unsubscribe::Keys::from_env()? else {
        return Err(InputError::at(
            unsubscribe::SECRET_VAR,
            "not set: herald bounces checks the tokens in returned mail with the same secret \
             `herald send` signs them with. Set it (or HERALD_UNSUBSCRIBE_SECRET_FILE)",
        )
        .into());
    };
    let local = config
        .return_path
        .as_ref()
        .map(|m| m.email.user().to_string())
        .unwrap_or_else(|| "bounces".into());
    let location = crate::store::Location::from_config(config)?;
    // A dry run reads a copy of the journal (or an empty one), so it
    // cannot change the real one, whatever it finds.
    let mut journal = if args.dry_run {
        match crate::deliver::send::journal_for_dry_run(&location)? {
            Some(view) => view,
            None => crate::deliver::send::JournalView::empty()?,
        }
    } else {
        crate::deliver::send::JournalView::of(super::status::writable(&location)?)
    };
    let store: &mut Box<dyn Store> = &mut journal.store;
    let soft = SoftRule {
        limit: config.soft_bounce_limit,
        window: config.soft_bounce_window,
    };
    let cx = Context::new(store.as_ref(), &keys, &local, soft).map_err(unreadable)?;
    let mailbox = Mailbox::of(&args)?;
    // One `herald bounces` at a time per journal: two runs over the same
    // mailbox would both count a soft bounce not yet recorded (2,014 rows
    // for 2,000 messages on SQLite). A second run does nothing and says so.
    let _lock = match store.lock(BOUNCES_LOCK).map_err(unreadable)? {
        Some(lock) => lock,
        None => {
            tracing::error!(
                "another `herald bounces` is reading into this journal ({}) right now; this run \
                 did nothing. The next run reads what it leaves",
                store.describe()
            );
            return Ok(exit::LOCKED);
        }
    };
    let mut entries = Vec::new();
    let mut summary = Summary {
        dry_run: args.dry_run,
        ..Summary::default()
    };
    mailbox.read(args.dry_run, |incoming| {
        summary.messages += 1;
        let (entry, understood) = match incoming {
            inbox::Incoming::Message(m) => {
                match handle(store.as_mut(), &cx, m, args.dry_run, &mut summary)? {
                    Some(entry) => entry,
                    None => return Ok(true),
                }
            }
            inbox::Incoming::SetAside { name, why } => {
                summary.set_aside += 1;
                let entry = Entry {
                    source: name,
                    kind: Seen::SetAside,
                    matched_by: MatchedBy::None,
                    understood: false,
                    set_aside: Some(why),
                    recipients: Vec::new(),
                };
                (entry, false)
            }
        };
        entries.push(entry);
        Ok(understood)
    })?;
    // Some messages need a person: set aside, or not understood (both
    // listed above and left in the mailbox).
    let code = if summary.set_aside > 0 || summary.not_understood > 0 {
        exit::SOME_FAILED
    } else {
        exit::OK
    };
    if args.json {
        output::json(&serde_json::json!({ "messages": entries, "summary": summary }))?;
    } else {
        print(&entries, &summary)?;
    }
    Ok(code)
}

/// Reads one message and acts on it; `None` when it was handled before
/// (nothing listed). Returns its entry and whether it was understood.
fn handle(
    store: &mut dyn Store,
    cx: &Context<'_>,
    m: inbox::Message,
    dry_run: bool,
    summary: &mut Summary,
) -> anyhow::Result<Option<(Entry, bool)>> {
    let key = message_key(&m.bytes);
    if store.message_handled(&key).map_err(unreadable)? {
        summary.already_handled += 1;
        // Handled before: it may be marked as read now.
        mark(&m, dry_run);
        return Ok(None);
    }
    let report = bounces::classify(&m.bytes);
    let verdict = act::act(store, cx, &report, &m.name, &key, dry_run).map_err(unreadable)?;
    summary.count(&verdict);
    if verdict.understood {
        mark(&m, dry_run);
    }
    let understood = verdict.understood;
    let entry = Entry {
        source: m.name,
        kind: Seen::Read(verdict.kind),
        matched_by: verdict.matched_by,
        understood,
        set_aside: None,
        recipients: verdict.recipients,
    };
    Ok(Some((entry, understood)))
}

/// The list and the summary, for people.
fn print(entries: &[Entry], summary: &Summary) -> anyhow::Result<()> {
    for e in entries {
        if let Some(why) = &e.set_aside {
            say!("{}: set aside, left where it is: {why}", e.source)?;
            continue;
        }
        if e.recipients.iter().all(|r| r.action == Action::NotMatched) {
            say!("{}: {} ({})", e.source, e.kind.as_str(), note(e))?;
        }
        let mut not_matched = 0;
        for r in &e.recipients {
            if r.action == Action::NotMatched {
                not_matched += 1;
                continue;
            }
            say!(
                "{}: {} {} {}{} -> {}",
                e.source,
                e.kind.as_str(),
                r.address,
                r.status,
                if r.hard { " (address gone)" } else { "" },
                r.action.as_str()
            )?;
        }
        if not_matched > 0 {
            // Counted, not listed one per line: a forged report may name
            // thousands (`--json` lists each).
            say!(
                "{}: {} address(es) named that this report's token was not made for: not matched, nothing done",
                e.source,
                not_matched
            )?;
        }
    }
    say!(
        "{} messages ({} read before): {} bounces, {} complaints, {} unsubscribe emails, {} auto-replies, {} other mail, {} not understood, {} set aside; {} suppressed, {} soft bounces counted, {} blocks recorded, {} not matched{}",
        summary.messages,
        summary.already_handled,
        summary.bounces,
        summary.complaints,
        summary.unsubscribes,
        summary.auto_replies,
        summary.not_bounces,
        summary.not_understood,
        summary.set_aside,
        summary.suppressed,
        summary.counted,
        summary.recorded,
        summary.not_matched,
        if summary.dry_run {
            " (dry run: nothing changed)"
        } else {
            ""
        }
    )?;
    Ok(())
}

/// Why nobody was acted on, for a message whose recipients (if any) were
/// all not matched.
fn note(e: &Entry) -> &'static str {
    use bounces::Kind;
    match e.kind {
        _ if e.matched_by == MatchedBy::ForgedToken => {
            "its token is not one herald made (forged or damaged); nobody suppressed"
        }
        _ if e.matched_by == MatchedBy::Unverified => {
            "no token, and nothing in it shows herald sent that mail; left in the mailbox"
        }
        _ if !e.understood && e.matched_by != MatchedBy::None => {
            "it names only people its token was not made for; left in the mailbox"
        }
        Seen::Read(Kind::Unknown) => "not understood: left in the mailbox for a person to read",
        Seen::Read(Kind::AutoReply) => "an automatic reply; nothing to do",
        Seen::Read(Kind::NotABounce) => "ordinary mail; nothing to do",
        _ => "nobody herald knows is named in it; left in the mailbox",
    }
}

fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 3600.0 => Ok(v),
        _ => Err(format!(
            "`{s}`: give a number of seconds above 0 and at most 3600, e.g. 60"
        )),
    }
}

/// The lock `herald bounces` takes in the journal (a name no campaign
/// lock has: campaign ids end in `.hash`).
const BOUNCES_LOCK: &str = "herald-bounces";

/// Marks a handled message as read, unless `dry_run`. A message that
/// vanished or cannot be moved meanwhile is still handled (the journal
/// remembers it, so it is never counted again): a warning, not the end of
/// the run.
fn mark(m: &inbox::Message, dry_run: bool) {
    if dry_run {
        return;
    }
    if let Err(e) = m.mark_handled() {
        tracing::warn!(
            "{}: handled, but could not be marked as read ({e}); it will be skipped as read before",
            m.name
        );
    }
}

/// Names a message by its bytes, so the same message is handled once
/// however many times it is read (a copy in another folder included).
fn message_key(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
