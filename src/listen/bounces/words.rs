//! What the words of a notice say: the subjects and phrases of failure
//! notices and unsubscribe requests, and one failed recipient read from
//! its DSN fields and the server's words (sisimai's reasons, through the
//! rule `herald send` uses too, [`crate::gone`]).

use super::{Recipient, text};
use crate::gone as reason;

/// Subjects mail servers give their failure notices.
pub(super) fn is_bounce_subject(s: &str) -> bool {
    const SUBJECTS: &[&str] = &[
        "undeliver",
        "undelivered",
        "error sending your",
        "delivery status notification",
        "delivery failure",
        "delivery failed",
        "delivery has failed",
        "failed delivery",
        "failure notice",
        "returned mail",
        "mail delivery",
        "non-delivery",
        "nondeliverable",
        "non delivery",
        "could not be delivered",
        "delivery problem",
        "unable to deliver",
        "message not delivered",
        "not delivered",
        "mail failure",
        "delivery notification",
        "returned to sender",
        "delivery report",
        "mail system error",
        "delivery error",
        "warning: could not send",
        "delayed mail",
        "delivery delayed",
        "delivery status",
        "rejected:",
        "message rejected",
        "failed mail",
    ];
    SUBJECTS.iter().any(|p| s.contains(p))
}

/// Whether a text says a message was not delivered, in the words failure
/// notices use whatever their subject (some are not in English).
pub(super) fn says_undelivered(text: &str) -> bool {
    const PHRASES: &[&str] = &[
        "could not be delivered",
        "couldn't be delivered",
        "was not delivered",
        "wasn't delivered",
        "undeliverable",
        "delivery failed",
        "delivery has failed",
        "failed permanently",
        "permanent error",
        "permanent fatal error",
        "unable to deliver",
        "not able to deliver",
        "trouble delivering",
        "returned permanent error",
    ];
    let lower = text.to_ascii_lowercase();
    PHRASES.iter().any(|p| lower.contains(p))
}

/// Whether words carry a code or a known reason.
pub(super) fn has_reason(words: &str) -> bool {
    text::status_in(words).is_some()
        || text::reply_code_in(words).is_some()
        || reason::from_text(&words.to_ascii_lowercase()).is_some()
}

/// "unsubscribe" as the subject (after any "Re:"), or as the first line
/// of a short body: what a mail program sends to a List-Unsubscribe mailto:.
pub(super) fn is_unsubscribe(subject: &str, body: &str) -> bool {
    let mut s = subject.trim();
    while let Some(rest) = s.strip_prefix("re:").or_else(|| s.strip_prefix("fwd:")) {
        s = rest.trim_start();
    }
    if s.starts_with("unsubscribe") {
        return true;
    }
    let first = body.lines().map(str::trim).find(|l| !l.is_empty());
    first.is_some_and(|l| l.to_ascii_lowercase().starts_with("unsubscribe"))
        && body.split_whitespace().count() <= 40
}

/// One failed recipient from what the message says of it: the DSN's
/// Status and Action when there is a DSN, and the server's words.
pub(super) fn recipient(
    address: String,
    status: Option<&str>,
    words: &str,
    action: Option<&str>,
) -> Recipient {
    let lower = words.to_ascii_lowercase();
    let in_words = text::status_in(words);
    // A DSN's "5.0.0" says less than the "5.1.1" in its Diagnostic-Code.
    let same_class = |a: &str, b: &str| a.as_bytes().first() == b.as_bytes().first();
    let status = match (status, in_words) {
        (Some(s), Some(w)) if s.ends_with(".0.0") && same_class(s, &w) => Some(w),
        // A DSN's "4.4.7" (delivery time expired) says less than the
        // last server's own code in its Diagnostic-Code ("554 4.4.7
        // Message expired <421 4.4.2 Connection timed out>").
        (Some(s), Some(_)) if s.get(1..) == Some(".4.7") => text::last_status_in(words)
            .filter(|w| same_class(s, w))
            .or_else(|| Some(s.to_string())),
        // The Status field and the server's own code disagree: the
        // server's code is first-hand.
        (Some(s), Some(w)) if same_class(s, &w) && !w.ends_with(".0.0") => Some(w),
        (Some(s), _) => Some(s.to_string()),
        (None, w) => w,
    };
    let reply_code = text::reply_code_in(words);
    let delayed = action == Some("delayed");
    let delivered = matches!(action, Some("delivered" | "relayed" | "expanded"));
    let temporary = match &status {
        Some(s) => s.starts_with('4'),
        None => {
            delayed || reply_code.is_some_and(|c| c < 500) || lower.contains("temporary failure")
        }
    };
    let explicit = status.as_deref().filter(|s| !s.ends_with(".0.0"));
    // The rule `herald send` uses on a refusal too (crate::gone).
    let mut reason = if delivered {
        "delivered"
    } else {
        match reason::base_reason(&lower, explicit, temporary) {
            Some(r) => r,
            None if delayed => "expired",
            // Words about the failure, none of them known: sisimai's
            // "onhold" (could not decide); "undefined" is for a failure
            // nothing is said of.
            None if says_something(&lower, &address) => "onhold",
            None => "undefined",
        }
    };
    let command = text::command_in(&lower);
    match (command, reason) {
        // Refused after the content was sent: the content, not the address.
        (Some("data"), "userunknown") => reason = "filtered",
        // A transcript's RCPT TO answered "User unknown", then a later
        // attempt timed out: the unknown user is the answer.
        (Some("rcpt"), "expired" | "networkerror") if reason::says(&lower, "userunknown") => {
            reason = "userunknown"
        }
        // Refused at MAIL FROM: the sender was refused.
        (Some("mail"), "userunknown" | "hostunknown" | "undefined" | "onhold") => {
            reason = "rejected"
        }
        _ => {}
    }
    // A domain that does not resolve right now may resolve tomorrow.
    if temporary && reason == "hostunknown" {
        reason = "networkerror";
    }
    let status = status.unwrap_or_else(|| reason::pseudo_status(reason, temporary));
    let hard = reason::is_hard_at(reason, &status, command == Some("rcpt"));
    let diagnostic = one_line(words, 300);
    Recipient {
        address,
        status,
        reply_code,
        reason: reason.to_string(),
        hard,
        diagnostic,
        action: action.map(str::to_string),
    }
}

/// Whether the words about a failure say anything beyond the address
/// itself (a letter or digit once the address is taken out).
pub(super) fn says_something(lower: &str, address: &str) -> bool {
    lower
        .replace(address, " ")
        .chars()
        .any(|c| c.is_alphanumeric())
}

/// Whether an enhanced status code itself says the address is unknown
/// (`x.1.x`), rather than a code that says nothing (`5.0.0`, `5.0.911`).
pub(super) fn says_user(status: &str) -> bool {
    status.get(1..3) == Some(".1")
}

/// An "unknown user" that no code confirms, read the way sisimai reads it:
/// answering RCPT TO it stays an unknown user; with a code for a disabled
/// mailbox (`x.2.1`) and no command named, a disabled mailbox; refused after DATA (said in the text about the address, not only in
/// the DSN's Diagnostic-Code) it is the content that was refused; from a
/// filtering gateway (McAfee, m-FILTER, MailFoundry...) that was not
/// answering RCPT TO, it is the filter's refusal. Neither says the address
/// is bad.
pub(super) fn refine_unknown_user(r: &mut Recipient, about: &str, gateway: bool) {
    let lower = about.to_ascii_lowercase();
    let words = r.diagnostic.as_deref().unwrap_or("").to_ascii_lowercase();
    let command = text::command_in(&lower).or_else(|| text::command_in(&words));
    // Words that name the account itself as missing, whenever said.
    const CERTAIN: &[&str] = &["this user doesn't have a"];
    let to = match command {
        Some("data") if CERTAIN.iter().any(|p| words.contains(p)) => return,
        Some("data") => "filtered",
        Some(_) => return,
        // "550 5.2.1 User unknown" not answering RCPT TO: the code's
        // disabled mailbox.
        None if r.status.get(1..) == Some(".2.1") => "suspend",
        None if gateway => "filtered",
        None => return,
    };
    r.reason = to.into();
    r.hard = false;
    if r.status.get(1..) == Some(".0.911") {
        r.status = reason::pseudo_status(to, r.status.starts_with('4'));
    }
}

/// `s` on one line, at most `max` characters, or `None` when empty.
pub(super) fn one_line(s: &str, max: usize) -> Option<String> {
    let mut out = String::new();
    for w in s.split_whitespace() {
        if out.chars().count() + w.chars().count() + 1 > max {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
    }
    (!out.is_empty()).then_some(out)
}
