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

mod phrases;
use phrases::PHRASES;

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
