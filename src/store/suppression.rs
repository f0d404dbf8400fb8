//! The suppression list: a history of events, one person per address.

use serde::Serialize;

/// How an address came onto the suppression list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// The mail server refused the address for good while sending.
    Bounce,
    /// A mailbox provider's one-click unsubscribe (RFC 8058).
    OneClick,
    /// The button on herald's unsubscribe page.
    Page,
    /// `herald suppress add`.
    Manual,
    /// `herald suppress import`.
    Import,
    /// A spam complaint through a mailbox provider's feedback loop (ARF).
    Complaint,
    /// An email to the List-Unsubscribe mailto: address.
    Mailto,
}

impl Source {
    pub const ALL: [Source; 7] = [
        Source::Bounce,
        Source::OneClick,
        Source::Page,
        Source::Manual,
        Source::Import,
        Source::Complaint,
        Source::Mailto,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Bounce => "bounce",
            Source::OneClick => "one-click",
            Source::Page => "page",
            Source::Manual => "manual",
            Source::Import => "import",
            Source::Complaint => "complaint",
            Source::Mailto => "mailto",
        }
    }

    pub fn parse(s: &str) -> Option<Source> {
        Source::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// The person asked to leave through a link or button (what the
    /// page's Undo may take back).
    pub fn is_unsubscribe(self) -> bool {
        matches!(self, Source::OneClick | Source::Page)
    }

    /// Which of an address's events names it on the one-line list: a
    /// complaint or a bounce (0) over an addition by hand or import (1)
    /// over the person's own unsubscribe (2). Someone who unsubscribed and
    /// then complained is shown as a complaint.
    pub fn weight(self) -> u8 {
        match self {
            Source::Complaint | Source::Bounce => 0,
            Source::Manual | Source::Import => 1,
            Source::OneClick | Source::Page | Source::Mailto => 2,
        }
    }
}

/// One entry per address from its events (oldest first): the weightiest
/// event, the oldest of those; the list ordered by when that was.
pub fn people(events: Vec<Suppressed>) -> Vec<Suppressed> {
    let mut best: std::collections::HashMap<String, Suppressed> = std::collections::HashMap::new();
    for e in events {
        match best.get(&e.email) {
            Some(b) if b.source.weight() <= e.source.weight() => {}
            _ => {
                best.insert(e.email.clone(), e);
            }
        }
    }
    let mut v: Vec<Suppressed> = best.into_values().collect();
    v.sort_by(|a, b| (&a.added_at, &a.email).cmp(&(&b.added_at, &b.email)));
    v
}

/// One address on the suppression list. No IP address or other detail
/// of the request is kept: only what is needed to honour and explain it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suppressed {
    /// Lower-cased.
    pub email: String,
    /// Why, in words (a server's reply for a bounce).
    pub reason: String,
    pub source: Source,
    /// The campaign whose email it came from, when known.
    pub campaign: Option<String>,
    /// When (RFC 3339, UTC).
    pub added_at: String,
}
