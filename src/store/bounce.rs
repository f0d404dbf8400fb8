//! What came back: returned messages, as the intake records them.

use serde::Serialize;

/// One recipient's part of a message that came back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BounceEvent {
    /// Lower-cased.
    pub email: String,
    pub campaign: Option<String>,
    /// `bounce`, `complaint`, `unsubscribe`.
    pub kind: String,
    /// RFC 3463 status, like `5.1.1`; empty when none.
    pub status: String,
    /// The address is bad for good.
    pub hard: bool,
    /// Why, in a word (`userunknown`, `mailboxfull`, `blocked`, ...).
    pub reason: String,
    pub diagnostic: Option<String>,
    /// What herald did: `suppressed`, `counted` (a soft bounce), `recorded`
    /// (a block for the sender to look at), `none`.
    pub action: String,
    /// The message it came from (file name or IMAP UID).
    pub message: String,
    pub at: String,
}

/// What came back for one campaign.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BounceSummary {
    /// Addresses gone for good (suppressed).
    pub hard: u64,
    /// Soft bounces (mailbox full, delivery expired, ...).
    pub soft: u64,
    pub complaints: u64,
    /// Unsubscribes by email (the List-Unsubscribe mailto:).
    pub mailto_unsubscribes: u64,
    /// Blocks of the sender or the content (policy, spam, reputation):
    /// something for the sender to fix, not the subscriber. Each distinct
    /// reply with how many times it came.
    pub blocks: Vec<(String, u64)>,
}

impl BounceSummary {
    /// Adds one event as [`crate::store::Intake::bounce_summary`] counts
    /// it, so that figures gathered event by event (`herald report`'s per
    /// recipient domain) add up to the campaign's.
    pub fn count(&mut self, e: &BounceEvent) {
        let why = e.diagnostic.as_deref().unwrap_or(&e.reason);
        self.add(&e.kind, &e.action, e.hard, &e.status, why, 1);
    }
    /// Adds `n` events of one kind, action, hardness, status and reason.
    pub(super) fn add(
        &mut self,
        kind: &str,
        action: &str,
        hard: bool,
        status: &str,
        why: &str,
        n: u64,
    ) {
        match (kind, action) {
            ("complaint", _) => self.complaints += n,
            ("unsubscribe", _) => self.mailto_unsubscribes += n,
            (_, "recorded") => self
                .blocks
                .push((format!("{status} {why}").trim().to_string(), n)),
            _ if hard => self.hard += n,
            _ => self.soft += n,
        }
    }
}
