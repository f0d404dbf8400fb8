//! A whole store's contents, as `herald store migrate` copies them.

use serde::Serialize;

use super::{BounceEvent, Suppressed};

/// A whole store's contents, as `herald store migrate` copies them.
#[derive(Debug, Default)]
pub struct Dump {
    pub campaigns: Vec<DumpCampaign>,
    pub recipients: Vec<DumpRecipient>,
    pub suppressions: Vec<Suppressed>,
    /// Messages `herald bounces` handled: (key, when).
    pub intake: Vec<(String, String)>,
    /// What came back, each with where it came from (`sqlite:ROWID`), so
    /// a second copy recognises it even when one message named the same
    /// address twice.
    pub bounces: Vec<(String, BounceEvent)>,
    /// Each relay's daily quota used: (relay, day, used). Copied so that a
    /// move mid-day does not hand a relay its quota a second time.
    pub relay_days: Vec<(String, String, i64)>,
}

impl Dump {
    /// The counts a store should hold after taking this copy.
    pub fn tally(&self) -> Tally {
        Tally {
            campaigns: self.campaigns.len() as u64,
            recipients: self.recipients.len() as u64,
            suppressions: self.suppressions.len() as u64,
            bounces: self.bounces.len() as u64,
        }
    }
}

#[derive(Debug)]
pub struct DumpCampaign {
    pub id: String,
    pub post: String,
    pub content_hash: String,
    pub columns: String,
    pub created_at: String,
    pub finished_at: Option<String>,
}

#[derive(Debug)]
pub struct DumpRecipient {
    pub campaign: String,
    pub seq: i64,
    pub email: String,
    pub email_key: String,
    pub line: i64,
    pub fields: String,
    pub state: String,
    pub attempts: i64,
    pub reply: Option<String>,
    pub updated_at: Option<String>,
    pub seen: i64,
    /// The relay that answered for them last (`herald status` per relay).
    pub relay: Option<String>,
}

/// Counts of what a store holds, to compare before and after a copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub campaigns: u64,
    pub recipients: u64,
    pub suppressions: u64,
    pub bounces: u64,
}
