//! What herald does about a message that came back, once
//! [`super::bounces::classify`] has read it.
//!
//! - Whose message it was (issue 24: a report acts on one person at most):
//!   the VERP token in the address the message was delivered to
//!   (`bounces+<token>@`, `unsubscribe+<token>@`) names the campaign and
//!   the recipient, and cannot be forged; the report acts on that person
//!   only, and only if it names them (or names nobody). Without a token,
//!   the one address the report names whose quoted Message-ID herald made
//!   for it. Every other address a report names is listed as
//!   `not-matched` and left alone. A token found only in the quoted
//!   original authorises nothing.
//! - The address is gone (unknown user or domain, moved): suppressed now.
//! - A spam complaint, or an email to the unsubscribe address: suppressed now.
//! - A block because of the sender or the content (policy, spam, reputation,
//!   5.7.x): recorded against the campaign, for the sender to fix; the
//!   subscriber is not at fault and stays.
//! - Temporary (mailbox full, delivery expired, 4.x.x): counted; an address
//!   with `soft_bounce_limit` soft bounces in at least two campaigns within
//!   `soft_bounce_window` is suppressed. Older ones stop counting.
//! - Auto-replies and ordinary mail: nothing.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use super::bounces::{Kind, Report};
use crate::clock;
use crate::store::{BounceEvent, Source, Store, Suppressed};
use crate::unsubscribe::{Keys, campaign_tag, verp_token_in};

/// Reasons that say the sender or the content was refused, not the
/// address (sisimai's names).
const BLOCKS: &[&str] = &[
    "blocked",
    "filtered",
    "spamdetected",
    "policyviolation",
    "rejected",
    "securityerror",
    "virusdetected",
    "contenterror",
    "authfailure",
    "badreputation",
    "requireptr",
    "notcompliantrfc",
];

/// How soft bounces add up.
#[derive(Debug, Clone, Copy)]
pub struct SoftRule {
    pub limit: u32,
    pub window: Duration,
}

/// What herald did for one recipient of a message.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Outcome {
    pub address: String,
    pub status: String,
    pub hard: bool,
    pub reason: String,
    /// `suppressed`, `counted`, `recorded` or `none`.
    pub action: String,
    pub campaign: Option<String>,
}

/// One message's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub kind: &'static str,
    pub recipients: Vec<Outcome>,
    /// Whose it was: `verp`, `report` (the addresses the report names),
    /// `forged-token` (a token herald did not make: nobody is suppressed),
    /// `unverified` (no token and no Message-ID of herald's for the
    /// address named: left for a person), or `none`.
    pub matched_by: &'static str,
    /// Understood (and so marked handled). A message herald could not make
    /// sense of is left in the mailbox and reported.
    pub understood: bool,
}

/// Whose message a report is about, and how that is known.
struct Whose {
    /// The campaign (when a token names it) and the one address the report
    /// may act on.
    owner: Option<(Option<String>, String)>,
    /// `verp`, `message-id`, `forged-token`, `unverified` or `none`.
    by: &'static str,
}

/// Reads the journal's campaigns once per run.
pub struct Context<'a> {
    pub keys: &'a Keys,
    /// The part of `return_path` before the `@`.
    pub bounce_local: &'a str,
    pub soft: SoftRule,
    tags: HashMap<String, String>,
}

impl<'a> Context<'a> {
    pub fn new(
        store: &dyn Store,
        keys: &'a Keys,
        bounce_local: &'a str,
        soft: SoftRule,
    ) -> crate::store::Result<Context<'a>> {
        let tags = store
            .campaigns()?
            .into_iter()
            .map(|c| (campaign_tag(&c.id), c.id))
            .collect();
        Ok(Context {
            keys,
            bounce_local,
            soft,
            tags,
        })
    }

    /// The campaign and address a VERP token in `addresses` names:
    /// `Err(())` when a token is there and herald did not make it.
    fn verp(
        &self,
        store: &dyn Store,
        addresses: &[String],
        prefix: &str,
    ) -> crate::store::Result<Result<Option<(String, String)>, ()>> {
        let mut forged = false;
        for a in addresses {
            let Some(token) = verp_token_in(a, prefix) else {
                continue;
            };
            let Some(v) = self.keys.verp_check(token) else {
                forged = true;
                continue;
            };
            let Some(campaign) = self.tags.get(&v.tag) else {
                continue;
            };
            if let Some(email) = store.recipient_email(campaign, v.seq)? {
                return Ok(Ok(Some((campaign.clone(), email.to_lowercase()))));
            }
        }
        Ok(if forged { Err(()) } else { Ok(None) })
    }

    /// The one person a bounce or complaint may act on (issue 24):
    ///
    /// - the owner of a valid VERP token in the address the report was
    ///   *delivered to* (its own Delivered-To, X-Original-To, Envelope-To,
    ///   To); a token only in the quoted original (its Return-Path, its
    ///   List-Unsubscribe) authorises nothing, since anyone can quote one;
    /// - without a token, the address the report names whose Message-ID
    ///   herald made (the quoted Message-ID carries an HMAC of that one
    ///   address and nothing of any token): at most one person;
    /// - a token herald did not make: nobody.
    fn whose(&self, store: &dyn Store, report: &Report) -> crate::store::Result<Whose> {
        match self.verp(store, &report.addressed_to, self.bounce_local)? {
            Err(()) => {
                return Ok(Whose {
                    owner: None,
                    by: "forged-token",
                });
            }
            Ok(Some((campaign, email))) => {
                return Ok(Whose {
                    owner: Some((Some(campaign), email)),
                    by: "verp",
                });
            }
            Ok(None) => {}
        }
        let quoted = report.original.message_id.as_deref();
        let owner = report
            .recipients
            .iter()
            .map(|r| r.address.to_lowercase())
            .find(|a| quoted.is_some_and(|id| self.keys.message_id_names(id, a)));
        Ok(match owner {
            Some(email) => Whose {
                owner: Some((None, email)),
                by: "message-id",
            },
            None if report.recipients.is_empty() => Whose {
                owner: None,
                by: "none",
            },
            None => Whose {
                owner: None,
                by: "unverified",
            },
        })
    }
}

/// Decides what `report` means and, unless `dry_run`, writes it: the
/// events, the suppressions and the message's key, in one transaction.
pub fn act(
    store: &mut dyn Store,
    cx: &Context<'_>,
    report: &Report,
    message: &str,
    key: &str,
    dry_run: bool,
) -> crate::store::Result<Verdict> {
    let now = clock::now();
    let at = now.to_string();
    let mut events = Vec::new();
    let mut suppress = Vec::new();
    let mut outcomes = Vec::new();
    let mut not_matched: Vec<Outcome> = Vec::new();
    let mut matched_by = "none";
    let suppression =
        |email: &str, why: String, source: Source, campaign: &Option<String>| Suppressed {
            email: email.to_lowercase(),
            reason: why,
            source,
            campaign: campaign.clone(),
            added_at: at.clone(),
        };
    let understood = match report.kind {
        Kind::AutoReply | Kind::NotABounce => true,
        Kind::Unknown => false,
        Kind::Unsubscribe => {
            if let Ok(Some((campaign, email))) =
                cx.verp(store, &report.addressed_to, "unsubscribe")?
            {
                matched_by = "verp";
                let campaign = Some(campaign);
                suppress.push(suppression(
                    &email,
                    "asked by email to unsubscribe".into(),
                    Source::Mailto,
                    &campaign,
                ));
                events.push(event(
                    &email,
                    &campaign,
                    "unsubscribe",
                    "",
                    false,
                    "unsubscribe",
                    None,
                    "suppressed",
                    message,
                    &at,
                ));
                outcomes.push(outcome(
                    &email,
                    "",
                    false,
                    "unsubscribe",
                    "suppressed",
                    &campaign,
                ));
            }
            // An unsubscribe email without a token cannot be matched
            // safely (its From can be anyone): left for a person.
            matched_by == "verp"
        }
        Kind::Complaint | Kind::Bounce => {
            let whose = cx.whose(store, report)?;
            matched_by = whose.by;
            let owner = whose.owner.as_ref().map(|(_, e)| e.clone());
            let mut recipients = Vec::new();
            for r in &report.recipients {
                let email = r.address.to_lowercase();
                if owner.as_deref() == Some(email.as_str()) {
                    if !recipients
                        .iter()
                        .any(|x: &super::bounces::Recipient| x.address.eq_ignore_ascii_case(&email))
                    {
                        recipients.push(r.clone());
                    }
                } else if email.contains('@')
                    && !not_matched.iter().any(|o: &Outcome| o.address == email)
                {
                    // Someone the token (or the Message-ID) was not made
                    // for: a report names them, nothing shows herald's
                    // mail to them came back. Listed, never acted on.
                    not_matched.push(outcome(
                        &email,
                        &r.status,
                        r.hard,
                        &r.reason,
                        "not-matched",
                        &None,
                    ));
                }
            }
            // A token, and a report that names nobody: the token's owner.
            if let (Some(email), true) = (&owner, report.recipients.is_empty()) {
                recipients.push(super::bounces::Recipient {
                    address: email.clone(),
                    status: String::new(),
                    reply_code: None,
                    reason: if report.kind == Kind::Complaint {
                        "feedback".into()
                    } else {
                        "undefined".into()
                    },
                    hard: false,
                    diagnostic: None,
                    action: None,
                });
            }
            let campaign = whose.owner.and_then(|(c, _)| c);
            if report.kind == Kind::Complaint {
                let feedback = report
                    .feedback_type
                    .clone()
                    .unwrap_or_else(|| "abuse".into());
                for r in &recipients {
                    let email = r.address.to_lowercase();
                    suppress.push(suppression(
                        &email,
                        format!("complaint ({feedback})"),
                        Source::Complaint,
                        &campaign,
                    ));
                    events.push(event(
                        &email,
                        &campaign,
                        "complaint",
                        "",
                        false,
                        &feedback,
                        None,
                        "suppressed",
                        message,
                        &at,
                    ));
                    outcomes.push(outcome(
                        &email,
                        "",
                        false,
                        "feedback",
                        "suppressed",
                        &campaign,
                    ));
                }
            } else {
                for r in &recipients {
                    let email = r.address.to_lowercase();
                    if !email.contains('@') {
                        continue;
                    }
                    let block = !r.hard
                        && (r.status.starts_with("5.7") || BLOCKS.contains(&r.reason.as_str()));
                    let known = !r.status.is_empty() || r.reason != "undefined";
                    let action = if r.hard {
                        suppress.push(suppression(
                            &email,
                            format!(
                                "bounced: {} {}",
                                r.status,
                                r.diagnostic.as_deref().unwrap_or(&r.reason)
                            )
                            .trim()
                            .to_string(),
                            Source::Bounce,
                            &campaign,
                        ));
                        "suppressed"
                    } else if block {
                        "recorded"
                    } else if !known {
                        "none"
                    } else {
                        // A soft bounce: does it make enough, with the earlier ones?
                        let since = now
                            .checked_sub(
                                jiff::SignedDuration::try_from(cx.soft.window).unwrap_or_default(),
                            )
                            .unwrap_or(now)
                            .to_string();
                        let mut earlier = store.soft_bounces(&email, &since)?;
                        earlier.push(campaign.clone());
                        let mut campaigns: Vec<&Option<String>> = earlier.iter().collect();
                        campaigns.sort();
                        campaigns.dedup();
                        if earlier.len() as u32 >= cx.soft.limit && campaigns.len() >= 2 {
                            suppress.push(suppression(
                            &email,
                            format!(
                                "{} soft bounces in {} campaigns within {} days (latest: {} {})",
                                earlier.len(),
                                campaigns.len(),
                                cx.soft.window.as_secs() / 86_400,
                                r.status,
                                r.reason
                            ),
                            Source::Bounce,
                            &campaign,
                        ));
                            "suppressed"
                        } else {
                            "counted"
                        }
                    };
                    // A soft bounce stays `counted` in the record even when it
                    // tipped the address over: the count is of soft bounces.
                    let recorded_action = if !r.hard && !block && known {
                        "counted"
                    } else {
                        action
                    };
                    events.push(event(
                        &email,
                        &campaign,
                        "bounce",
                        &r.status,
                        r.hard,
                        &r.reason,
                        r.diagnostic.clone(),
                        recorded_action,
                        message,
                        &at,
                    ));
                    outcomes.push(outcome(
                        &email, &r.status, r.hard, &r.reason, action, &campaign,
                    ));
                }
            }
            // A forged message is understood (and set aside as read): it
            // will not become true by reading it again. So is one whose
            // token's owner was acted on, or that names nobody. One that
            // names only people its token or Message-ID was not made for
            // is left for a person (a forwarder may have rewritten the
            // address; herald does not guess).
            matched_by == "forged-token" || !outcomes.is_empty()
        }
    };
    outcomes.extend(not_matched);
    if understood && !dry_run {
        store.record_message(key, &events, &suppress)?;
    }
    Ok(Verdict {
        kind: report.kind.as_str(),
        recipients: outcomes,
        matched_by,
        understood,
    })
}

#[allow(clippy::too_many_arguments)]
fn event(
    email: &str,
    campaign: &Option<String>,
    kind: &str,
    status: &str,
    hard: bool,
    reason: &str,
    diagnostic: Option<String>,
    action: &str,
    message: &str,
    at: &str,
) -> BounceEvent {
    BounceEvent {
        email: email.to_lowercase(),
        campaign: campaign.clone(),
        kind: kind.into(),
        status: status.into(),
        hard,
        reason: reason.into(),
        diagnostic,
        action: action.into(),
        message: message.into(),
        at: at.into(),
    }
}

fn outcome(
    email: &str,
    status: &str,
    hard: bool,
    reason: &str,
    action: &str,
    campaign: &Option<String>,
) -> Outcome {
    Outcome {
        address: email.to_lowercase(),
        status: status.into(),
        hard,
        reason: reason.into(),
        action: action.into(),
        campaign: campaign.clone(),
    }
}
