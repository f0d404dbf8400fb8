//! What the journal holds of a campaign: its recipients' states and counts.

use serde::Serialize;

/// A recipient's state in a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    /// Handed to the server, no answer recorded: outcome unknown after a crash.
    Sending,
    Sent,
    /// Failed for now (4xx, timeouts) after the retries of a run; tried again next run.
    Deferred,
    /// Refused for good (5xx); never tried again.
    Failed,
    /// Left out: unsubscribed, bounced or suppressed since the campaign began.
    Skipped,
    /// Taken off the list before they were mailed: not mailed unless the
    /// list has them again.
    Removed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Sending => "sending",
            State::Sent => "sent",
            State::Deferred => "deferred",
            State::Failed => "failed",
            State::Skipped => "skipped",
            State::Removed => "removed",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        Some(match s {
            "pending" => State::Pending,
            "sending" => State::Sending,
            "sent" => State::Sent,
            "deferred" => State::Deferred,
            "failed" => State::Failed,
            "skipped" => State::Skipped,
            "removed" => State::Removed,
            _ => return None,
        })
    }
}

/// A recipient waiting to be mailed, with what their message needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The campaign's own order (first seen, first mailed).
    pub seq: i64,
    pub email: String,
    /// The line of the list the address was on in the latest import.
    pub line: i64,
    pub values: Vec<String>,
    pub attempts: i64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub total: i64,
    pub pending: i64,
    /// Outcome unknown (left in `sending` by a crash or a kill).
    pub unknown: i64,
    pub sent: i64,
    pub deferred: i64,
    pub failed: i64,
    pub skipped: i64,
    /// Taken off the list before they were mailed.
    pub removed: i64,
}

impl Counts {
    /// Adds `n` recipients in the state named `state`.
    pub(super) fn add(&mut self, state: &str, n: i64) {
        self.total += n;
        match State::parse(state) {
            Some(State::Pending) => self.pending += n,
            Some(State::Sending) => self.unknown += n,
            Some(State::Sent) => self.sent += n,
            Some(State::Deferred) => self.deferred += n,
            Some(State::Failed) => self.failed += n,
            Some(State::Removed) => self.removed += n,
            Some(State::Skipped) | None => self.skipped += n,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CampaignInfo {
    pub id: String,
    pub post: String,
    pub created_at: String,
    pub finished_at: Option<String>,
    pub counts: Counts,
}

/// A recipient who needs attention: failed, deferred or of unknown outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub email: String,
    /// The line of the list the address was on (0 for a test send).
    pub line: i64,
    pub state: State,
    pub reply: Option<String>,
    pub attempts: i64,
}

impl std::fmt::Display for Problem {
    /// `failed    someone@example.org  550 5.1.1 No such user`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<9} {}  {}",
            self.state_label(),
            self.email,
            self.reply.as_deref().unwrap_or("")
        )
    }
}

impl Problem {
    pub fn state_label(&self) -> &'static str {
        match self.state {
            State::Failed => "failed",
            State::Deferred => "deferred",
            _ => "unknown",
        }
    }
}

/// One state change of one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub seq: i64,
    pub state: State,
    pub reply: Option<String>,
    /// Attempts to add.
    pub attempts: i64,
    /// Add this address (lower-cased) to the suppression list.
    pub suppress: Option<String>,
    /// The relay that answered (accepted, refused or deferred the
    /// message), by its name; `None` leaves the recorded one as it was.
    pub relay: Option<String>,
}

/// One relay's share of a campaign, for `herald status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RelayCounts {
    pub relay: String,
    pub sent: i64,
    pub failed: i64,
    pub deferred: i64,
    /// The relay's daily quota, when it has one (`max_per_day`), and how
    /// much of it is used on the relay's `day` today, across campaigns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_per_day: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_used_today: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
}

impl RelayCounts {
    /// From (relay, state, count) rows, in the relays' order of name.
    pub(super) fn gather(
        rows: impl IntoIterator<Item = (String, String, i64)>,
    ) -> Vec<RelayCounts> {
        let mut by: std::collections::BTreeMap<String, RelayCounts> = Default::default();
        for (relay, state, n) in rows {
            let c = by.entry(relay.clone()).or_insert_with(|| RelayCounts {
                relay,
                ..RelayCounts::default()
            });
            match State::parse(&state) {
                Some(State::Sent) => c.sent += n,
                Some(State::Failed) => c.failed += n,
                Some(State::Deferred) => c.deferred += n,
                _ => {}
            }
        }
        by.into_values().collect()
    }
}

/// One recipient of a campaign as the journal has them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecipientRecord {
    pub email: String,
    pub state: State,
    pub attempts: i64,
    /// The mail server's last reply.
    pub reply: Option<String>,
    /// When the state last changed (RFC 3339, UTC); none while pending.
    pub updated_at: Option<String>,
}
