//! What herald does about a message that came back, once
//! [`super::bounces::classify`] has read it.
//!
//! - Whose message it was: the VERP token in the address the message was
//!   delivered to (`bounces+<token>@`, `unsubscribe+<token>@`) names the
//!   campaign and the recipient, and cannot be forged. Without one, the
//!   addresses the report names are used (a bounce of mail sent before
//!   `return_path` was set, a complaint that quotes the original).
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

/// What the VERP token of a message says.
enum Token {
    /// The campaign and the recipient.
    Found(String, String),
    /// There is a token, and it is not one herald made: the message is
    /// forged (or mangled), and nobody is suppressed on its word.
    Forged,
    /// No token (mail sent before `return_path` was set): the addresses
    /// the report names are used.
    None,
}

impl Token {
    fn found(self) -> Option<(String, String)> {
        match self {
            Token::Found(c, e) => Some((c, e)),
            _ => None,
        }
    }
}

/// Reads the journal's campaigns once per run.
pub struct Context<'a> {
    pub keys: &'a Keys,
    /// `return_path` is set, so herald's own mail carries VERP tokens: a
    /// message without one is taken at its word only when it quotes a
    /// Message-ID herald made for the address it names. Without
    /// `return_path` (bounces read from the From mailbox) the report's
    /// addresses are used as they are.
    pub verp_in_use: bool,
    /// The part of `return_path` before the `@`.
    pub bounce_local: &'a str,
    pub soft: SoftRule,
    tags: HashMap<String, String>,
}

impl<'a> Context<'a> {
    /// Whether a report without a token may be believed about `email`.
    fn believable(&self, report: &Report, email: &str) -> bool {
        !self.verp_in_use
            || report
                .original
                .message_id
                .as_deref()
                .is_some_and(|id| self.keys.message_id_names(id, email))
    }

    pub fn new(
        store: &dyn Store,
        keys: &'a Keys,
        bounce_local: &'a str,
        verp_in_use: bool,
        soft: SoftRule,
    ) -> crate::store::Result<Context<'a>> {
        let tags = store
            .campaigns()?
            .into_iter()
            .map(|c| (campaign_tag(&c.id), c.id))
            .collect();
        Ok(Context {
            keys,
            verp_in_use,
            bounce_local,
            soft,
            tags,
        })
    }

    /// The campaign and address a VERP token in `addresses` names.
    fn verp(
        &self,
        store: &dyn Store,
        addresses: &[String],
        prefix: &str,
    ) -> crate::store::Result<Token> {
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
                return Ok(Token::Found(campaign.clone(), email.to_lowercase()));
            }
        }
        Ok(if forged { Token::Forged } else { Token::None })
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
    let mut addresses = report.addressed_to.clone();
    addresses.extend(report.original.return_path.clone());
    if let Some(lu) = &report.original.list_unsubscribe {
        // `<https://...>, <mailto:unsubscribe+token@...?subject=...>`
        for part in lu.split(',') {
            let part = part.trim().trim_start_matches('<').trim_end_matches('>');
            if let Some(m) = part.strip_prefix("mailto:") {
                addresses.push(m.split('?').next().unwrap_or(m).to_string());
            }
        }
    }
    let mut events = Vec::new();
    let mut suppress = Vec::new();
    let mut outcomes = Vec::new();
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
            if let Some((campaign, email)) =
                cx.verp(store, &report.addressed_to, "unsubscribe")?.found()
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
        Kind::Complaint => {
            let verp = cx.verp(store, &addresses, cx.bounce_local)?;
            let (campaign, who): (Option<String>, Vec<String>) = match verp {
                Token::Found(c, e) => {
                    matched_by = "verp";
                    (Some(c), vec![e])
                }
                Token::Forged => {
                    matched_by = "forged-token";
                    (None, Vec::new())
                }
                Token::None => {
                    let mut v: Vec<String> = report
                        .recipients
                        .iter()
                        .map(|r| r.address.to_lowercase())
                        .filter(|a| a.contains('@') && cx.believable(report, a))
                        .collect();
                    v.dedup();
                    if !v.is_empty() {
                        matched_by = "report";
                    } else if !report.recipients.is_empty() {
                        matched_by = "unverified";
                    }
                    (None, v)
                }
            };
            let feedback = report
                .feedback_type
                .clone()
                .unwrap_or_else(|| "abuse".into());
            for email in &who {
                suppress.push(suppression(
                    email,
                    format!("complaint ({feedback})"),
                    Source::Complaint,
                    &campaign,
                ));
                events.push(event(
                    email,
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
                    email,
                    "",
                    false,
                    "feedback",
                    "suppressed",
                    &campaign,
                ));
            }
            matched_by == "forged-token" || !who.is_empty()
        }
        Kind::Bounce => {
            let token = cx.verp(store, &addresses, cx.bounce_local)?;
            let forged = matches!(token, Token::Forged);
            let verp = token.found();
            let mut recipients = if forged {
                matched_by = "forged-token";
                Vec::new()
            } else {
                report.recipients.clone()
            };
            if let Some((_, email)) = &verp {
                matched_by = "verp";
                // The token is the truth about whose message it was; a
                // report that names one recipient names the same person
                // (perhaps as rewritten by a forwarder).
                match recipients.len() {
                    0 => recipients.push(super::bounces::Recipient {
                        address: email.clone(),
                        status: String::new(),
                        reply_code: None,
                        reason: "undefined".into(),
                        hard: false,
                        diagnostic: None,
                        action: None,
                    }),
                    1 => recipients[0].address = email.clone(),
                    _ => {}
                }
            } else if !recipients.is_empty() {
                recipients.retain(|r| cx.believable(report, &r.address.to_lowercase()));
                matched_by = if recipients.is_empty() {
                    "unverified"
                } else {
                    "report"
                };
            }
            let campaign = verp.map(|(c, _)| c);
            for r in &recipients {
                let email = r.address.to_lowercase();
                if !email.contains('@') {
                    continue;
                }
                let block =
                    !r.hard && (r.status.starts_with("5.7") || BLOCKS.contains(&r.reason.as_str()));
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
            // A forged message is understood (and set aside as read): it
            // will not become true by reading it again.
            forged || !outcomes.is_empty()
        }
    };
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
