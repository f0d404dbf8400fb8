//! What `herald report` reads beyond `herald status`: when each message
//! was accepted and by which relay, and the recipients' states per domain.
//!
//! "Accepted at" is the recipient's `updated_at` while their state is
//! `sent`: `sent` is a final state (no import, skip, removal or bounce
//! changes a sent row, see [`super::rules`] and `store/tests/figures.rs`),
//! so the time of the change to `sent` stays the row's time. No schema
//! step is needed for it.

use serde::Serialize;

use super::Counts;

/// Messages one relay had accepted in one minute of a send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MinuteCount {
    /// The relay's name (`main`, or `relay` with a single `smtp_url`);
    /// `None` for messages sent by a herald older than schema 4, which did
    /// not record it.
    pub relay: Option<String>,
    /// The minute, UTC: `2026-12-06T16:57`.
    pub minute: String,
    pub sent: i64,
}

/// A recipient domain's share of a campaign: its recipients' states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainCounts {
    /// The part of the address after its last `@`, lower-cased.
    pub domain: String,
    pub counts: Counts,
}

/// The domain of a lower-cased address: after its last `@` (a quoted
/// local part may hold one too); the whole address when it has none. The
/// stores' SQL takes the same part.
pub fn domain_of(email_key: &str) -> &str {
    email_key.rsplit_once('@').map_or(email_key, |(_, d)| d)
}

/// Gathers (domain, state, count) rows into one [`DomainCounts`] per
/// domain, in the order of the domains' names.
pub(super) fn gather_domains(
    rows: impl IntoIterator<Item = (String, String, i64)>,
) -> Vec<DomainCounts> {
    let mut by: std::collections::BTreeMap<String, Counts> = Default::default();
    for (domain, state, n) in rows {
        by.entry(domain).or_default().add(&state, n);
    }
    by.into_iter()
        .map(|(domain, counts)| DomainCounts { domain, counts })
        .collect()
}
