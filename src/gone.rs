//! The one rule for "the address is gone" (issue 24): why a delivery
//! failed, in sisimai's reason names, from the server's words, the
//! enhanced status code (RFC 3463) and the SMTP reply code, and whether
//! that reason means the address is bad for good. A leaf module: both the
//! refusal of a recipient during `herald send` ([`reply_is_gone`], used by
//! `deliver`) and a bounce read by `herald bounces` (`listen::bounces`)
//! decide with it, so they cannot disagree. `tests/integration/bounces.rs`
//! runs one table of cases through both.
//!
//! The server's words come first: a `5.1.1` that says "mailbox full" is a
//! full mailbox, and many servers answer every refusal with `5.7.1` or
//! `5.0.0`. The status code decides only when no phrase is known.

/// Phrases (lower case) that name a reason, in the order they are tried:
/// the more specific before the more general, so that "recipient address
/// rejected: mailbox full" is `mailboxfull` and not `userunknown`, and
/// "blocked ... user unknown" stays `userunknown` only when nothing says
/// the sender was blocked.
const PHRASES: &[(&str, &[&str])] = &[
    (
        "mailboxfull",
        &[
            "mailbox full",
            "mailbox is full",
            "mailbox has exceeded",
            "mailbox size limit",
            "mailbox exceeds",
            "mailbox quota",
            "mailbox would exceed",
            "over quota",
            "overquota",
            "quota exceeded",
            "exceeded quota",
            "exceeds quota",
            "quota violation",
            "would exceed quota",
            "over the allowed quota",
            "exceeded storage allocation",
            "exceeded their storage",
            "out of storage",
            "inbox is full",
            "inbox full",
            "account is full",
            "user is over",
            "exceeded the maximum size of their mailbox",
            "disk quota",
            "not enough storage space",
            "not enough disk space",
            "full mailbox",
            "mailfolder is full",
            "maildir over quota",
            "mail box full",
            "is out of space",
            "storage limit",
            "recipient's mailbox exceeded",
        ],
    ),
    (
        "notaccept",
        &[
            "no mx record",
            "mail exchanger",
            "doesn't receive email",
            "does not receive email",
            "does not accept mail",
            "does not accept email",
            "not accepting mail",
            "accepts no mail",
            "null mx",
            "domain does not receive email",
            "indicated no smtp service",
        ],
    ),
    (
        "mesgtoobig",
        &[
            "message too large",
            "message too big",
            "message is too large",
            "message is too big",
            "message size exceeds",
            "message size limit",
            "exceeds size limit",
            "exceeded the size limit",
            "size exceeds maximum",
            "message length exceeds",
            "larger than the maximum",
            "exceeds the maximum allowed size",
            "too big for system",
        ],
    ),
    (
        "virusdetected",
        &["virus", "malware", "infected", "malicious content"],
    ),
    (
        "spamdetected",
        &[
            "spam",
            "junk mail",
            "unsolicited",
            "bulk mail",
            "message content rejected",
            "content rejected",
            "looks suspicious",
            "rejected by the content",
            "uce",
            "classified as bulk",
        ],
    ),
    (
        "norelaying",
        &[
            "no relaying",
            "relay access denied",
            "relaying denied",
            "relay denied",
            "relay not permitted",
            "relaying not permitted",
            "unable to relay",
            "not permitted to relay",
            "we do not relay",
            "relaying mail to",
            "relay not allowed",
            "is not permitted to relay",
            "relay prohibited",
        ],
    ),
    (
        "requireptr",
        &[
            "reverse dns",
            "no ptr",
            "ptr record",
            "reverse lookup",
            "cannot find your hostname",
            "cannot resolve your address",
            "no reverse",
            "dns ptr",
            "hostname does not resolve",
            "cannot find your reverse hostname",
            "rdns",
        ],
    ),
    (
        "authfailure",
        &[
            "spf",
            "dkim",
            "dmarc",
            "sender policy framework",
            "authentication checks",
            "not pass authentication",
            "unauthenticated email",
        ],
    ),
    (
        "badreputation",
        &["reputation", "poor sending", "sender score"],
    ),
    (
        "rejected",
        &[
            // The sender's (or recipient's) address on a block list, not
            // the sending host's: the sender is refused.
            "address that has been blacklisted",
            // Google Groups: no such group, or no right to post to it.
            "groups.google.com/support",
            // Gmail's "Send mail as" through a server it cannot use.
            "'send mail as'",
        ],
    ),
    (
        "blocked",
        &[
            "open relay",
            "no access from mail server",
            "blacklist",
            "black list",
            "blocklist",
            "block list",
            "blocked using",
            "listed at",
            "listed in",
            "listed on",
            "is listed",
            "spamhaus",
            "spamcop",
            "barracudacentral",
            "sorbs",
            "dnsbl",
            "rbl",
            "client host rejected",
            "client host blocked",
            "connection refused by",
            "connection rejected",
            "your ip",
            "your server",
            "ip address",
            "your host",
            "has been blocked",
            "have been blocked",
            "is blocked",
            "been temporarily blocked",
            "access denied",
            "banned",
            "not allowed to send",
            "you are not allowed",
            "rejected due to",
            "service unavailable",
            "refused to talk",
            "poor reputation",
            "mail from your",
            "messages from",
            "was blocked",
            "blocked by",
        ],
    ),
    (
        "expired",
        &[
            "timed out",
            "envelope expired",
            "temporary failure",
            "retry timeout exceeded",
            "retry time not reached",
            "delivery time expired",
            "message expired",
            "has expired",
            "queue too long",
            "in the queue too long",
            "gave up",
            "could not be delivered within",
            "could not be delivered for",
            "was not delivered for",
            "not delivered after",
            "delivery expired",
            "delivery attempts will stop",
            "time expired",
            "timeout exceeded",
            "exceeded the maximum time",
            "retry period",
            "delivery attempts exhausted",
            "was undeliverable for",
            "have not been able to deliver",
            "could not deliver the message in the time limit",
            "delayed for more than",
            "message has been delayed",
            "too long in queue",
            "expired after",
            "did not accept our requests to connect",
            "not delivered within",
            "could not deliver for",
            "host not reachable",
        ],
    ),
    (
        "suspend",
        &[
            "temporary locked",
            "temporarily locked",
            "account disabled",
            "account has been disabled",
            "account is disabled",
            "account is inactive",
            "account has been suspended",
            "account suspended",
            "account is suspended",
            "account is not active",
            "account inactive",
            "account has expired",
            "account is locked",
            "account has been locked",
            "mailbox disabled",
            "mailbox is disabled",
            "mailbox is inactive",
            "mailbox inactive",
            "mailbox has been disabled",
            "mailbox is frozen",
            "mailbox is suspended",
            "is deactivated",
            "has been deactivated",
            "recipient suspended",
            "user suspended",
            "temporarily disabled",
            "disabled mailbox",
            "address is disabled",
            "is not active",
            "recipient is inactive",
            "currently suspended",
            "inactive user",
            "user account disabled",
            "mailbox unavailable or access denied",
        ],
    ),
    (
        "mailererror",
        &[
            "mailer error",
            "command died",
            "exited with",
            "procmail",
            "pipe to",
            "unknown mailer",
            "command output",
        ],
    ),
    (
        "rejected",
        &[
            "sender address rejected",
            "sender rejected",
            "sender verify failed",
            "sender domain",
            "sender is not allowed",
            "domain of sender address",
            "bad sender",
            "invalid sender",
            "sender unknown",
            "envelope sender",
            "sender denied",
            "rejected sender",
        ],
    ),
    (
        "hasmoved",
        &[
            "has moved",
            "has been moved",
            "address has changed",
            "no longer in use",
            "is no longer valid",
            "moved to",
        ],
    ),
    (
        "hostunknown",
        &[
            "domain is not reachable",
            "domain may not exist",
            "host unknown",
            "unknown host",
            "host not found",
            "host or domain name not found",
            "domain not found",
            "domain name not found",
            "no such domain",
            "domain does not exist",
            "domain doesn't exist",
            "unknown domain",
            "name or service not known",
            "couldn't find any host",
            "could not find any host",
            "unrouteable mail domain",
            "unroutable mail domain",
            "no mail exchanger",
            "domain is not configured",
            "non-existent domain",
            "nonexistent domain",
            "non-existent host",
            "bad destination system",
            "domain name lookup failed",
            "dns error",
            "no route to domain",
            "invalid domain",
            "domain is invalid",
            "recipient domain must exist",
            "not a valid domain",
            "the domain part of the address is not valid",
            "could not be resolved",
            "is not a valid hostname",
            "host lookup failed",
        ],
    ),
    (
        "userunknown",
        &[
            "couldn't be found",
            "could not be found",
            "delivery userid",
            "user unknown",
            "unknown user",
            "user not found",
            "no such user",
            "no such person",
            "no such mailbox",
            "no such recipient",
            "no such address",
            "no mailbox",
            "mailbox not found",
            "mailbox does not exist",
            "mailbox doesn't exist",
            "mailbox unavailable",
            "mailbox is unavailable",
            "mailbox not available",
            "mailbox name not allowed",
            "recipient unknown",
            "unknown recipient",
            "recipient not found",
            "recipient does not exist",
            "invalid recipient",
            "invalid mailbox",
            "invalid address",
            "address unknown",
            "unknown address",
            "address does not exist",
            "address not found",
            "account does not exist",
            "account doesn't exist",
            "account that you tried to reach does not exist",
            "doesn't have a",
            "does not have an account",
            "not a valid mailbox",
            "not a valid user",
            "not a known user",
            "is not a valid recipient",
            "unrouteable address",
            "unroutable address",
            "bad destination mailbox",
            "bad address",
            "addressee unknown",
            "user doesn't exist",
            "user does not exist",
            "user invalid",
            "invalid user",
            "no mailbox here by that name",
            "no account by that name",
            "not listed in",
            "recipient rejected",
            "no valid recipients",
            "mailbox unknown",
            "unknown local part",
            "unknown or illegal alias",
            "mail receiving disabled",
            "user not exist",
            "this user doesn't have",
            "does not exist",
            "not exist",
            "no longer exists",
            "no longer active",
            "not found",
        ],
    ),
    (
        "toomanyconn",
        &[
            "too many connections",
            "too many simultaneous",
            "connection limit",
            "too many recipients",
            "too many concurrent",
        ],
    ),
    (
        "speeding",
        &[
            "rate limit",
            "too many messages",
            "sending rate",
            "rate-limited",
            "ratelimit",
        ],
    ),
    (
        "systemfull",
        &[
            "mail system full",
            "insufficient system storage",
            "system full",
        ],
    ),
    (
        "networkerror",
        &[
            "name service error",
            "connection timed out",
            "connection refused",
            "no route to host",
            "network is unreachable",
            "lost connection",
            "could not connect",
            "unable to connect",
            "connection reset",
            "routing loop",
            "mail loop",
            "too many hops",
            "loops back to myself",
        ],
    ),
    (
        "securityerror",
        &[
            "authentication required",
            "must authenticate",
            "tls required",
            "encryption required",
            "not authorized",
            "unauthorized",
        ],
    ),
    (
        "policyviolation",
        &["policy", "prohibited", "not allowed", "violat"],
    ),
    (
        "filtered",
        &[
            "recipient preferences",
            "filtered",
            "filter",
            "only accepting mail from",
            "refused by recipient",
            "rejected by recipient",
            "recipient's settings",
            "does not accept mail from",
        ],
    ),
    (
        "systemerror",
        &[
            "system error",
            "server error",
            "local error",
            "internal error",
            "temporary error",
            "configuration error",
            "server configuration",
            "resources temporarily unavailable",
        ],
    ),
    ("syntaxerror", &["syntax error", "command unrecognized"]),
    ("onhold", &["on hold"]),
    (
        "failedstarttls",
        &[
            "support tls",
            "starttls",
            "tls is required",
            "tls negotiation failed",
        ],
    ),
];

/// The reason the server's words (lower case) and an explicit status code
/// (not `x.0.0`) give together, when either says one: the words first,
/// except "user unknown" worded under a code that says the sender or the
/// content was refused (`5.7.x`, `5.6.x`, `5.2.0`: some providers hide
/// their filters that way); "<domain> does not exist" is the domain; an
/// unknown domain that is only temporary may resolve tomorrow.
pub fn base_reason(lower: &str, explicit: Option<&str>, temporary: bool) -> Option<&'static str> {
    let from_status = explicit.and_then(from_status);
    let mut reason = match (from_text(lower), from_status) {
        (Some("userunknown" | "hostunknown"), Some(s))
            if explicit.is_some_and(|c| {
                let rest = c.get(2..).unwrap_or("");
                rest.starts_with("7.") || rest.starts_with("6.") || rest == "2.0"
            }) =>
        {
            s
        }
        (Some(t), _) => t,
        (None, Some(s)) => s,
        (None, None) => return None,
    };
    if reason == "userunknown" && domain_does_not_exist(lower) {
        reason = "hostunknown";
    }
    if temporary && reason == "hostunknown" {
        reason = "networkerror";
    }
    Some(reason)
}

/// Whether `lower` says "<domain name> does not exist": a word with a dot
/// and no `@` right before the phrase.
pub fn domain_does_not_exist(lower: &str) -> bool {
    lower
        .match_indices("does not exist")
        .take(8)
        .any(|(at, _)| {
            lower[..at]
                .split_whitespace()
                .next_back()
                .map(|w| w.trim_matches(|c: char| matches!(c, '<' | '>' | '"' | '\'' | '(' | ')')))
                .is_some_and(|w| {
                    !w.contains('@')
                        && w.contains('.')
                        && !w.ends_with('.')
                        && w.rsplit('.').next().is_some_and(|tld| {
                            tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic())
                        })
                })
        })
}

/// Whether a permanent refusal of a recipient during a send (`550 5.1.1
/// no such user`) says the address is gone: the same reason and the same
/// [`is_hard`] a bounce with these words and this code gets.
pub fn reply_is_gone(reply: &str) -> bool {
    let lower = reply.to_ascii_lowercase();
    let status = first_status(&lower);
    let code = lower
        .split_whitespace()
        .next()
        .and_then(|w| w.get(..3))
        .and_then(|w| w.parse::<u16>().ok());
    let temporary = match &status {
        Some(s) => s.starts_with('4'),
        None => code.is_some_and(|c| c < 500),
    };
    let explicit = status.as_deref().filter(|s| !s.ends_with(".0.0"));
    let Some(reason) = base_reason(&lower, explicit, temporary) else {
        return false;
    };
    let status = status.unwrap_or_else(|| pseudo_status(reason, temporary));
    is_hard(reason, &status)
}

/// The first enhanced status code (`5.1.1`) in a reply, if any.
fn first_status(lower: &str) -> Option<String> {
    lower
        .split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | '<' | '>' | '[' | ']'))
        .map(|w| w.trim_end_matches([',', ';', ':', '.']))
        .find(|w| {
            let parts: Vec<&str> = w.split('.').collect();
            parts.len() == 3
                && matches!(parts[0], "2" | "4" | "5")
                && parts[1..]
                    .iter()
                    .all(|p| !p.is_empty() && p.len() <= 3 && p.chars().all(|c| c.is_ascii_digit()))
        })
        .map(str::to_string)
}

/// The reason the server's words give, if a known phrase is in them.
/// `text` must be lower case.
pub fn from_text(text: &str) -> Option<&'static str> {
    PHRASES
        .iter()
        .find(|(_, phrases)| {
            phrases.iter().any(|p| {
                contains_word(text, p)
                    // "not listed in the directory" is an unknown user.
                    && !(p.contains("listed") && text.contains(&format!("not {p}")))
            })
        })
        .map(|(name, _)| *name)
}

/// Whether `text` (lower case) holds one of the phrases of `reason`.
pub fn says(text: &str, reason: &str) -> bool {
    PHRASES
        .iter()
        .filter(|(name, _)| *name == reason)
        .any(|(_, phrases)| phrases.iter().any(|p| contains_word(text, p)))
}

/// `phrase` in `text`, not in the middle of a word ("uce" is not in
/// "produced", "rbl" not in "verbling").
fn contains_word(text: &str, phrase: &str) -> bool {
    let bytes = text.as_bytes();
    let mut start = 0;
    while let Some(i) = text.get(start..).and_then(|t| t.find(phrase)) {
        let at = start + i;
        let end = at + phrase.len();
        let before_ok = at == 0 || !bytes[at - 1].is_ascii_alphanumeric();
        let after_ok = end >= bytes.len()
            || !bytes[end].is_ascii_alphanumeric()
            || !phrase
                .as_bytes()
                .last()
                .is_some_and(u8::is_ascii_alphanumeric);
        if before_ok && after_ok {
            return true;
        }
        start = at + 1;
        while !text.is_char_boundary(start) {
            start += 1;
        }
    }
    false
}

/// The reason an enhanced status code means by itself (IANA's registry,
/// read the way sisimai reads it), or `None` for the codes that say nothing
/// about why (`x.0.0`, `4.3.0`, `4.4.0`, `4.5.0`, `4.7.0`, `5.5.0`).
pub fn from_status(status: &str) -> Option<&'static str> {
    let mut it = status.split('.');
    let class = it.next()?;
    let subject: u32 = it.next()?.parse().ok()?;
    let detail: u32 = it.next()?.parse().ok()?;
    let temporary = class == "4";
    Some(match (subject, detail) {
        (1, 0 | 1 | 3) if !temporary => "userunknown",
        (1, 2) if !temporary => "hostunknown",
        (1, 4) => "filtered",
        (1, 6) => "hasmoved",
        (1, 7 | 8) => "rejected",
        (1, 9) => "systemerror",
        (1, 10) => "notaccept",
        (2, 0) if !temporary => "filtered",
        (2, 1) => {
            if temporary {
                "blocked"
            } else {
                "suspend"
            }
        }
        (2, 2) => "mailboxfull",
        (2, 3) => "exceedlimit",
        (2, 4) => "filtered",
        (3, 0) if !temporary => "systemerror",
        (3, 1) => "systemfull",
        (3, 2) => "notaccept",
        (3, 3 | 5) => "systemerror",
        (3, 4) => "mesgtoobig",
        (4, 0) if !temporary => "networkerror",
        (4, 1) => "expired",
        (4, 2 | 6 | 8) => "networkerror",
        (4, 3) => "systemerror",
        (4, 4) => {
            if temporary {
                "networkerror"
            } else {
                "hostunknown"
            }
        }
        (4, 5) => "systemfull",
        (4, 7) => "expired",
        (5, 2 | 6) => "syntaxerror",
        (5, 3) => "toomanyconn",
        (5, 4 | 5) => "systemerror",
        (6, _) => "contenterror",
        (7, 1 | 2) if temporary => "blocked",
        (7, 0..=12 | 14 | 15 | 19) if !temporary => "securityerror",
        (7, 5..=7 | 12 | 15) => "securityerror",
        (7, 13) => "suspend",
        (7, 16) => "mesgtoobig",
        (7, 17 | 18) => "hasmoved",
        (7, 20..=24 | 26 | 29) => "authfailure",
        (7, 25) => "requireptr",
        (7, 27) => "notaccept",
        (7, 28) => "spamdetected",
        (7, 30) => "failedstarttls",
        _ => return None,
    })
}

/// The code sisimai gives a failure whose message carries no enhanced
/// status: `5.0.9xx` (or `4.0.9xx` when it is temporary), a code outside
/// RFC 3463's registry that names the reason, so that a report is never
/// without a status and the reason can be told back from it.
pub fn pseudo_status(reason: &str, temporary: bool) -> String {
    let n = match reason {
        "authfailure" => 926,
        "badreputation" => 975,
        "blocked" => 971,
        "contenterror" => 960,
        "exceedlimit" => 923,
        "expired" => 947,
        "failedstarttls" => 976,
        "filtered" if temporary => 924,
        "filtered" => 910,
        "hasmoved" => 916,
        "hostunknown" => 912,
        "mailboxfull" => 922,
        "mailererror" => 939,
        "mesgtoobig" => 934,
        "networkerror" => 944,
        "norelaying" => 909,
        "notaccept" => 932,
        "notcompliantrfc" => 974,
        "onhold" => 901,
        "policyviolation" => 972,
        "rejected" => 918,
        "requireptr" => 973,
        "securityerror" => 970,
        "spamdetected" => 980,
        "speeding" => 946,
        "suspend" => 921,
        "systemerror" => 930,
        "systemfull" => 931,
        "syntaxerror" => 902,
        "toomanyconn" => 945,
        "userunknown" => 911,
        "virusdetected" => 981,
        _ => 900,
    };
    // An unknown user or host is never temporary, whatever the reply code.
    let class = if temporary && !matches!(reason, "userunknown" | "hostunknown" | "hasmoved") {
        4
    } else {
        5
    };
    format!("{class}.0.{n}")
}

/// True when the reason says the address itself is bad for good: nobody
/// by that name, no such domain, moved away, or a domain that takes no
/// mail at all. A policy or spam refusal says nothing about the address.
///
/// When in doubt, soft (issue 24: a false "hard" loses a reader for good,
/// a missed one costs a few more tries, and `soft_bounce_limit` soft
/// bounces suppress the address anyway): "user unknown" is taken as
/// certain only under a specific permanent code (`5.1.1`, `5.2.1`,
/// `5.3.0`...: not the generic `5.0.0`, nor none at all) or at `RCPT TO`
/// (see [`is_hard_at`]). Bare words ("550 User unknown", with no code or
/// `5.0.0`) are what filtering gateways and hidden spam filters answer as
/// well. A temporary code (`4.x.x`) is never "gone".
pub fn is_hard(reason: &str, status: &str) -> bool {
    if status.starts_with('4') {
        return false;
    }
    match reason {
        "userunknown" => !status.starts_with("5.0."),
        "hostunknown" | "hasmoved" => true,
        "notaccept" => !status.starts_with('4'),
        _ => false,
    }
}

/// [`is_hard`], knowing whether the words were the answer to `RCPT TO`:
/// a server that refuses the recipient there has judged the address alone
/// (it has not seen the message), so "user unknown" is taken at its word
/// even without a specific code. Bare "user unknown" anywhere else (after
/// the content, or with no command shown) is what filtering gateways also
/// answer: soft unless a specific code (`5.1.1`, `5.2.1`, `5.3.0`, not
/// `5.0.0`) says so too.
pub fn is_hard_at(reason: &str, status: &str, at_rcpt: bool) -> bool {
    is_hard(reason, status) || (at_rcpt && reason == "userunknown" && status.starts_with('5'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phrases_win_over_codes_and_respect_words() {
        assert_eq!(from_text("552 5.2.2 mailbox full"), Some("mailboxfull"));
        assert_eq!(from_text("550 5.1.1 user unknown"), Some("userunknown"));
        assert_eq!(from_text("message produced by x"), None);
        assert_eq!(from_status("5.1.1"), Some("userunknown"));
        assert_eq!(from_status("5.0.0"), None);
        assert_eq!(pseudo_status("userunknown", false), "5.0.911");
        assert_eq!(pseudo_status("expired", true), "4.0.947");
        assert!(is_hard("userunknown", "5.1.1"));
        assert!(!is_hard("blocked", "5.7.1"));
    }
}
