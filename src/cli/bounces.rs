//! `herald bounces`: reads what came back (bounces, spam complaints,
//! emails to the unsubscribe address) and acts on it; see
//! [`crate::listen::act`] for what is done about each kind.

use std::path::PathBuf;

use serde::Serialize;

use super::output::{self, say};
use super::status::unreadable;
use crate::config::{Config, Override};
use crate::listen::act::{self, Context, SoftRule, Verdict};
use crate::listen::{bounces, imap, inbox};
use crate::store::Store;
use crate::{Fault, InputError, exit, unsubscribe};

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

#[derive(Serialize)]
struct Entry {
    source: String,
    kind: &'static str,
    matched_by: &'static str,
    /// False: left in the mailbox for a person (the kind says what it
    /// looked like).
    understood: bool,
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
    suppressed: u64,
    counted: u64,
    recorded: u64,
    /// Addresses a report named that its token (or quoted Message-ID) was
    /// not made for: nothing done about them.
    not_matched: u64,
    dry_run: bool,
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
    let mut store: Box<dyn Store> = super::status::writable(&location)?;
    let soft = SoftRule {
        limit: config.soft_bounce_limit,
        window: config.soft_bounce_window,
    };
    let cx = Context::new(store.as_ref(), &keys, &local, soft).map_err(unreadable)?;
    let mut entries = Vec::new();
    let mut summary = Summary {
        dry_run: args.dry_run,
        ..Summary::default()
    };
    // The IMAP address and password are checked before anything is read.
    let imap = match &args.imap {
        Some(url) => {
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
                Some(p) => Some(std::fs::read(p).map_err(|e| {
                    InputError::new(p, None, format!("cannot read the CA file ({e})"))
                })?),
                None => None,
            };
            Some((mailbox, password, ca))
        }
        None => None,
    };
    // Returns whether the message was understood (and so may be marked).
    let mut handle = |m: inbox::Message| -> anyhow::Result<bool> {
        summary.messages += 1;
        let key = message_key(&m.bytes);
        if store.message_handled(&key).map_err(unreadable)? {
            summary.already_handled += 1;
            // Handled before: it may be marked as read now.
            return Ok(true);
        }
        let report = bounces::classify(&m.bytes);
        let verdict: Verdict = act::act(store.as_mut(), &cx, &report, &m.name, &key, args.dry_run)
            .map_err(unreadable)?;
        match report.kind {
            bounces::Kind::Bounce => summary.bounces += 1,
            bounces::Kind::Complaint => summary.complaints += 1,
            bounces::Kind::Unsubscribe => summary.unsubscribes += 1,
            bounces::Kind::AutoReply => summary.auto_replies += 1,
            bounces::Kind::NotABounce => summary.not_bounces += 1,
            bounces::Kind::Unknown => {}
        }
        if !verdict.understood {
            summary.not_understood += 1;
        }
        for r in &verdict.recipients {
            match r.action.as_str() {
                "suppressed" => summary.suppressed += 1,
                "counted" => summary.counted += 1,
                "recorded" => summary.recorded += 1,
                "not-matched" => summary.not_matched += 1,
                _ => {}
            }
        }
        if verdict.understood && !args.dry_run {
            m.mark_handled()
                .map_err(|e| Fault::io(format!("mark {} as read", m.name), &e))?;
        }
        let understood = verdict.understood;
        entries.push(Entry {
            source: m.name,
            kind: verdict.kind,
            matched_by: verdict.matched_by,
            understood,
            recipients: verdict.recipients,
        });
        Ok(understood)
    };
    if let Some(dir) = &args.maildir {
        for path in inbox::maildir(dir)? {
            handle(inbox::read_file(&path)?)?;
        }
    } else if let Some(path) = &args.mbox {
        inbox::mbox(path, |m| handle(m).map(|_| ()))?;
    } else if let Some((mailbox, password, ca)) = &imap {
        imap::read(mailbox, password, ca.as_deref(), args.dry_run, &mut handle)?;
    }
    if args.json {
        output::json(&serde_json::json!({ "messages": entries, "summary": summary }))?;
        return Ok(exit::OK);
    }
    for e in &entries {
        if e.recipients.iter().all(|r| r.action == "not-matched") {
            let note = match e.kind {
                _ if e.matched_by == "forged-token" => {
                    "its token is not one herald made (forged or damaged); nobody suppressed"
                }
                _ if e.matched_by == "unverified" => {
                    "no token, and nothing in it shows herald sent that mail; left in the mailbox"
                }
                _ if !e.understood && e.matched_by != "none" => {
                    "it names only people its token was not made for; left in the mailbox"
                }
                "unknown" => "not understood: left in the mailbox for a person to read",
                "auto-reply" => "an automatic reply; nothing to do",
                "not-a-bounce" => "ordinary mail; nothing to do",
                _ => "nobody herald knows is named in it; left in the mailbox",
            };
            say!("{}: {} ({note})", e.source, e.kind)?;
        }
        let mut not_matched = 0;
        for r in &e.recipients {
            if r.action == "not-matched" {
                not_matched += 1;
                continue;
            }
            say!(
                "{}: {} {} {}{} -> {}",
                e.source,
                e.kind,
                r.address,
                r.status,
                if r.hard { " (address gone)" } else { "" },
                r.action
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
        "{} messages ({} read before): {} bounces, {} complaints, {} unsubscribe emails, {} auto-replies, {} other mail, {} not understood; {} suppressed, {} soft bounces counted, {} blocks recorded, {} not matched{}",
        summary.messages,
        summary.already_handled,
        summary.bounces,
        summary.complaints,
        summary.unsubscribes,
        summary.auto_replies,
        summary.not_bounces,
        summary.not_understood,
        summary.suppressed,
        summary.counted,
        summary.recorded,
        summary.not_matched,
        if args.dry_run {
            " (dry run: nothing changed)"
        } else {
            ""
        }
    )?;
    Ok(exit::OK)
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
