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

use jiff::Timestamp;
use serde::Serialize;

use super::bounces::{Kind, Recipient, Report};
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

/// What herald did about one recipient of a message. The names (in
/// `--json` and in the journal's bounce records) are [`Action::as_str`].
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Put on the suppression list: never mailed again.
    Suppressed,
    /// A soft bounce, counted towards the soft-bounce rule.
    Counted,
    /// A block for the sender to fix, recorded against the campaign.
    Recorded,
    /// Nothing: the report says nothing of why.
    None,
    /// The report names them, but its token (or quoted Message-ID) was
    /// not made for them: listed, never acted on.
    NotMatched,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Suppressed => "suppressed",
            Action::Counted => "counted",
            Action::Recorded => "recorded",
            Action::None => "none",
            Action::NotMatched => "not-matched",
        }
    }
}

/// How herald knows whose message a report is about.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum MatchedBy {
    /// A VERP token herald made, in the address the report was delivered to.
    Verp,
    /// No token; the quoted Message-ID herald made for the one address.
    MessageId,
    /// A token herald did not make: nobody is suppressed.
    ForgedToken,
    /// No token and no Message-ID of herald's for the address named:
    /// left for a person.
    Unverified,
    /// Nobody named, or nothing to match (auto-replies, ordinary mail).
    None,
}

impl MatchedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchedBy::Verp => "verp",
            MatchedBy::MessageId => "message-id",
            MatchedBy::ForgedToken => "forged-token",
            MatchedBy::Unverified => "unverified",
            MatchedBy::None => "none",
        }
    }
}

/// What herald did for one recipient of a message.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Outcome {
    pub address: String,
    pub status: String,
    pub hard: bool,
    pub reason: String,
    pub action: Action,
    pub campaign: Option<String>,
}

/// One message's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub kind: Kind,
    pub recipients: Vec<Outcome>,
    /// Whose it was.
    pub matched_by: MatchedBy,
    /// Understood (and so marked handled). A message herald could not make
    /// sense of is left in the mailbox and reported.
    pub understood: bool,
}

/// Whose message a report is about, and how that is known.
struct Whose {
    /// The campaign (when a token names it) and the one address the report
    /// may act on.
    owner: Option<(Option<String>, String)>,
    by: MatchedBy,
}

/// What the VERP tokens in a message's addresses say.
enum Token {
    /// A token herald made: the campaign and the recipient it was made for.
    Valid { campaign: String, email: String },
    /// A token herald did not make (forged or damaged).
    Forged,
    /// No token, or one of a campaign this journal does not hold.
    Absent,
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
                return Ok(Token::Valid {
                    campaign: campaign.clone(),
                    email: email.to_lowercase(),
                });
            }
        }
        Ok(if forged { Token::Forged } else { Token::Absent })
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
            Token::Forged => {
                return Ok(Whose {
                    owner: None,
                    by: MatchedBy::ForgedToken,
                });
            }
            Token::Valid { campaign, email } => {
                return Ok(Whose {
                    owner: Some((Some(campaign), email)),
                    by: MatchedBy::Verp,
                });
            }
            Token::Absent => {}
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
                by: MatchedBy::MessageId,
            },
            None if report.recipients.is_empty() => Whose {
                owner: None,
                by: MatchedBy::None,
            },
            None => Whose {
                owner: None,
                by: MatchedBy::Unverified,
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
    let mut w = Writes::new(message);
    let mut not_matched = Vec::new();
    let (matched_by, understood) = match report.kind {
        Kind::AutoReply | Kind::NotABounce => (MatchedBy::None, true),
        Kind::Unknown => (MatchedBy::None, false),
        Kind::Unsubscribe => {
            let mut by = MatchedBy::None;
            if let Token::Valid { campaign, email } =
                cx.verp(store, &report.addressed_to, "unsubscribe")?
            {
                by = MatchedBy::Verp;
                w.asked_to_go(
                    &email,
                    &Some(campaign),
                    Asked {
                        kind: Kind::Unsubscribe,
                        why: "asked by email to unsubscribe".into(),
                        source: Source::Mailto,
                        event_reason: "unsubscribe",
                        reason: "unsubscribe",
                    },
                );
            }
            // An unsubscribe email without a token cannot be matched
            // safely (its From can be anyone): left for a person.
            (by, by == MatchedBy::Verp)
        }
        Kind::Complaint | Kind::Bounce => {
            let whose = cx.whose(store, report)?;
            let owner = whose.owner.as_ref().map(|(_, e)| e.as_str());
            let recipients = owned(report, owner, &mut not_matched);
            let campaign = whose.owner.as_ref().and_then(|(c, _)| c.clone());
            if report.kind == Kind::Complaint {
                let feedback = report.feedback_type.as_deref().unwrap_or("abuse");
                for r in &recipients {
                    w.asked_to_go(
                        &r.address,
                        &campaign,
                        Asked {
                            kind: Kind::Complaint,
                            why: format!("complaint ({feedback})"),
                            source: Source::Complaint,
                            event_reason: feedback,
                            reason: "feedback",
                        },
                    );
                }
            } else {
                for r in &recipients {
                    w.bounce(store, cx, r, &campaign)?;
                }
            }
            // A forged message is understood (and set aside as read): it
            // will not become true by reading it again. So is one whose
            // token's owner was acted on, or that names nobody. One that
            // names only people its token or Message-ID was not made for
            // is left for a person (a forwarder may have rewritten the
            // address; herald does not guess).
            (
                whose.by,
                whose.by == MatchedBy::ForgedToken || !w.outcomes.is_empty(),
            )
        }
    };
    let Writes {
        events,
        suppress,
        mut outcomes,
        ..
    } = w;
    outcomes.extend(not_matched);
    if understood && !dry_run {
        store.record_message(key, &events, &suppress)?;
    }
    Ok(Verdict {
        kind: report.kind,
        recipients: outcomes,
        matched_by,
        understood,
    })
}

/// The recipients of `report` the owner may be acted on as (each once);
/// everyone else it names goes to `not_matched`. A token, and a report
/// that names nobody: the token's owner.
fn owned(report: &Report, owner: Option<&str>, not_matched: &mut Vec<Outcome>) -> Vec<Recipient> {
    let mut recipients: Vec<Recipient> = Vec::new();
    for r in &report.recipients {
        let email = r.address.to_lowercase();
        if owner == Some(email.as_str()) {
            if !recipients
                .iter()
                .any(|x| x.address.eq_ignore_ascii_case(&email))
            {
                recipients.push(r.clone());
            }
        } else if email.contains('@') && !not_matched.iter().any(|o| o.address == email) {
            // Someone the token (or the Message-ID) was not made
            // for: a report names them, nothing shows herald's
            // mail to them came back. Listed, never acted on.
            not_matched.push(outcome(
                &email,
                &r.status,
                r.hard,
                &r.reason,
                Action::NotMatched,
                &None,
            ));
        }
    }
    if let (Some(email), true) = (owner, report.recipients.is_empty()) {
        recipients.push(Recipient {
            address: email.to_string(),
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
    recipients
}

/// Someone who asked to go (an unsubscribe email, a spam complaint).
struct Asked<'r> {
    /// The bounce record's kind.
    kind: Kind,
    /// The suppression's reason, in words.
    why: String,
    source: Source,
    /// The bounce record's reason (the complaint's feedback type).
    event_reason: &'r str,
    /// The outcome's reason.
    reason: &'r str,
}

/// What one message makes herald write, gathered before one transaction.
struct Writes<'m> {
    now: Timestamp,
    at: String,
    message: &'m str,
    events: Vec<BounceEvent>,
    suppress: Vec<Suppressed>,
    outcomes: Vec<Outcome>,
}

impl<'m> Writes<'m> {
    fn new(message: &'m str) -> Self {
        let now = clock::now();
        Writes {
            now,
            at: now.to_string(),
            message,
            events: Vec::new(),
            suppress: Vec::new(),
            outcomes: Vec::new(),
        }
    }

    fn suppression(&mut self, email: &str, why: String, source: Source, campaign: &Option<String>) {
        self.suppress.push(Suppressed {
            email: email.to_lowercase(),
            reason: why,
            source,
            campaign: campaign.clone(),
            added_at: self.at.clone(),
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn event(
        &mut self,
        email: &str,
        campaign: &Option<String>,
        kind: Kind,
        status: &str,
        hard: bool,
        reason: &str,
        diagnostic: Option<String>,
        action: Action,
    ) {
        self.events.push(BounceEvent {
            email: email.to_lowercase(),
            campaign: campaign.clone(),
            kind: kind.as_str().into(),
            status: status.into(),
            hard,
            reason: reason.into(),
            diagnostic,
            action: action.as_str().into(),
            message: self.message.into(),
            at: self.at.clone(),
        });
    }

    /// Someone who asked to go (by email or by a complaint) is suppressed
    /// now: one suppression, one bounce record, one outcome.
    fn asked_to_go(&mut self, email: &str, campaign: &Option<String>, asked: Asked<'_>) {
        let email = email.to_lowercase();
        self.suppression(&email, asked.why, asked.source, campaign);
        self.event(
            &email,
            campaign,
            asked.kind,
            "",
            false,
            asked.event_reason,
            None,
            Action::Suppressed,
        );
        self.outcomes.push(outcome(
            &email,
            "",
            false,
            asked.reason,
            Action::Suppressed,
            campaign,
        ));
    }

    /// One bounced recipient: gone (suppressed), blocked (recorded), soft
    /// (counted, suppressed once they add up) or unexplained (nothing).
    fn bounce(
        &mut self,
        store: &dyn Store,
        cx: &Context<'_>,
        r: &Recipient,
        campaign: &Option<String>,
    ) -> crate::store::Result<()> {
        let email = r.address.to_lowercase();
        if !email.contains('@') {
            return Ok(());
        }
        let block = !r.hard && (r.status.starts_with("5.7") || BLOCKS.contains(&r.reason.as_str()));
        let known = !r.status.is_empty() || r.reason != "undefined";
        let action = if r.hard {
            self.suppression(
                &email,
                format!(
                    "bounced: {} {}",
                    r.status,
                    r.diagnostic.as_deref().unwrap_or(&r.reason)
                )
                .trim()
                .to_string(),
                Source::Bounce,
                campaign,
            );
            Action::Suppressed
        } else if block {
            Action::Recorded
        } else if !known {
            Action::None
        } else if self.soft_limit_reached(store, cx, &email, r, campaign)? {
            Action::Suppressed
        } else {
            Action::Counted
        };
        // A soft bounce stays `counted` in the record even when it
        // tipped the address over: the count is of soft bounces.
        let recorded_action = if !r.hard && !block && known {
            Action::Counted
        } else {
            action
        };
        self.event(
            &email,
            campaign,
            Kind::Bounce,
            &r.status,
            r.hard,
            &r.reason,
            r.diagnostic.clone(),
            recorded_action,
        );
        self.outcomes.push(outcome(
            &email, &r.status, r.hard, &r.reason, action, campaign,
        ));
        Ok(())
    }

    /// A soft bounce: does it make enough, with the earlier ones? If so,
    /// the address is suppressed now.
    fn soft_limit_reached(
        &mut self,
        store: &dyn Store,
        cx: &Context<'_>,
        email: &str,
        r: &Recipient,
        campaign: &Option<String>,
    ) -> crate::store::Result<bool> {
        let since = self
            .now
            .checked_sub(jiff::SignedDuration::try_from(cx.soft.window).unwrap_or_default())
            .unwrap_or(self.now)
            .to_string();
        let mut earlier = store.soft_bounces(email, &since)?;
        earlier.push(campaign.clone());
        let mut campaigns: Vec<&Option<String>> = earlier.iter().collect();
        campaigns.sort();
        campaigns.dedup();
        if earlier.len() as u32 >= cx.soft.limit && campaigns.len() >= 2 {
            self.suppression(
                email,
                format!(
                    "{} soft bounces in {} campaigns within {} days (latest: {} {})",
                    earlier.len(),
                    campaigns.len(),
                    cx.soft.window.as_secs() / 86_400,
                    r.status,
                    r.reason
                ),
                Source::Bounce,
                campaign,
            );
            return Ok(true);
        }
        Ok(false)
    }
}

fn outcome(
    email: &str,
    status: &str,
    hard: bool,
    reason: &str,
    action: Action,
    campaign: &Option<String>,
) -> Outcome {
    Outcome {
        address: email.to_lowercase(),
        status: status.into(),
        hard,
        reason: reason.into(),
        action,
        campaign: campaign.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::{Action, MatchedBy};
    use crate::listen::bounces::Kind;

    /// The names `--json` and the journal show are the ones the enums
    /// print: one spelling for each.
    #[test]
    fn json_names_are_the_printed_names() {
        let json = |v: serde_json::Value| v.as_str().unwrap().to_string();
        for a in [
            Action::Suppressed,
            Action::Counted,
            Action::Recorded,
            Action::None,
            Action::NotMatched,
        ] {
            assert_eq!(json(serde_json::to_value(a).unwrap()), a.as_str());
        }
        for m in [
            MatchedBy::Verp,
            MatchedBy::MessageId,
            MatchedBy::ForgedToken,
            MatchedBy::Unverified,
            MatchedBy::None,
        ] {
            assert_eq!(json(serde_json::to_value(m).unwrap()), m.as_str());
        }
        for k in [
            Kind::Bounce,
            Kind::Complaint,
            Kind::Unsubscribe,
            Kind::AutoReply,
            Kind::NotABounce,
            Kind::Unknown,
        ] {
            assert_eq!(json(serde_json::to_value(k).unwrap()), k.as_str());
        }
    }
}
