//! Bounces that say who and why only in free text: qmail, Exim, Sendmail's
//! and Postfix's human-readable parts, Exchange, Gmail, Yahoo, SES and the
//! rest. No per-MTA templates: the same few patterns run over every text,
//! namely an address on a line (in `<...>`, after "to"/"recipient", or
//! alone), the SMTP reply and enhanced status codes near it, and the lines
//! around it as the server's words.

/// Every e-mail address in `s`, lower-cased, in order, each once.
pub fn addresses(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (_, a) in address_spans(s) {
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

fn is_local_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&b)
}

fn is_domain_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'.'
}

/// The addresses of `s` with their byte offsets. An address here is
/// `local@domain.tld`: a domain without a dot is a Message-ID or a host
/// name more often than a mailbox. Addresses inside a URL are skipped.
fn address_spans(s: &str) -> Vec<(usize, String)> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'@', &b[from..]).map(|i| i + from) {
        from = i + 1;
        let mut start = i;
        while start > 0 && is_local_char(b[start - 1]) && i - start < 128 {
            start -= 1;
        }
        while start < i && b[start] == b'.' {
            start += 1;
        }
        let mut end = i + 1;
        while end < b.len() && is_domain_char(b[end]) && end - i < 256 {
            end += 1;
        }
        while end > i + 1 && matches!(b[end - 1], b'.' | b'-') {
            end -= 1;
        }
        if start == i || end <= i + 1 {
            continue;
        }
        let domain = &s[i + 1..end];
        let Some(dot) = domain.rfind('.') else {
            continue;
        };
        if !domain[dot + 1..].bytes().all(|c| c.is_ascii_alphabetic()) || dot + 2 > domain.len() {
            continue;
        }
        // Skip mailto-less URL user parts (http://user@host) and
        // addresses glued to a previous "@" (a@b@c).
        let before = &s[..start];
        if before.ends_with("://") || (start > 0 && b[start - 1] == b'@') {
            continue;
        }
        let mut local = &s[start..i];
        // "=?utf-8?..." and quoted-printable soft breaks leave "=" runs.
        if let Some(eq) = local.rfind("=3d") {
            local = &local[eq + 3..];
        }
        if local.is_empty() {
            continue;
        }
        out.push((start, format!("{}@{}", local, domain).to_ascii_lowercase()));
        from = end;
    }
    out
}

/// The enhanced status code (`5.1.1`, `4.4.7`, `5.7.509`) of `s`: of those
/// not part of a longer dotted number (an IP address, a version), the
/// first failure code (4 or 5) right after a reply code ("550 5.1.1",
/// "550-'5.7.1"), the server's own answer, else the first failure code,
/// else the first (a success code quoted from a session transcript).
pub fn status_in(s: &str) -> Option<String> {
    let all = statuses(s);
    let b = s.as_bytes();
    let after_reply = |at: usize| {
        let before = &b[at.saturating_sub(6)..at];
        let digits = before
            .iter()
            .rposition(u8::is_ascii_digit)
            .map(|p| before.len() - p);
        digits.is_some_and(|d| d <= 3)
            && before
                .windows(3)
                .any(|w| w.iter().all(u8::is_ascii_digit) && matches!(w[0], b'4' | b'5'))
    };
    let failing = |c: &str| c.starts_with('4') || c.starts_with('5');
    all.iter()
        .find(|(at, c)| failing(c) && after_reply(*at))
        .or_else(|| all.iter().find(|(_, c)| failing(c)))
        .or_else(|| all.first())
        .map(|(_, c)| c.clone())
}

/// The last failure code (4 or 5) in `s`: in "554 4.4.7 Message expired
/// <421 4.4.2 Connection timed out>" the one that says why.
pub fn last_status_in(s: &str) -> Option<String> {
    statuses(s)
        .into_iter()
        .rev()
        .find(|(_, c)| c.starts_with('4') || c.starts_with('5'))
        .map(|(_, c)| c)
}

/// Every enhanced status code in `s` with its offset (at most 32).
fn statuses(s: &str) -> Vec<(usize, String)> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() && out.len() < 32 {
        if matches!(b[i], b'2' | b'4' | b'5')
            && (i == 0 || !(b[i - 1].is_ascii_digit() || b[i - 1] == b'.'))
            && b.get(i + 1) == Some(&b'.')
        {
            let mut j = i + 2;
            let s1 = j;
            while j < b.len() && b[j].is_ascii_digit() && j - s1 < 3 {
                j += 1;
            }
            if j > s1 && b.get(j) == Some(&b'.') {
                let s2 = j + 1;
                let mut k = s2;
                while k < b.len() && b[k].is_ascii_digit() && k - s2 < 3 {
                    k += 1;
                }
                let next_is_number = b.get(k).is_some_and(u8::is_ascii_digit)
                    || (b.get(k) == Some(&b'.') && b.get(k + 1).is_some_and(u8::is_ascii_digit));
                let subject_ok = s[s1..j].parse::<u32>().is_ok_and(|n| n <= 7);
                if k > s2 && !next_is_number && subject_ok {
                    out.push((i, s[i..k].to_string()));
                    i = k;
                    continue;
                }
            }
        }
        i += 1;
    }
    out
}

/// The SMTP command a refusal answered, when the text says: "data" for
/// a refusal of the content (after DATA), "mail" for one of the sender.
pub fn command_in(lower: &str) -> Option<&'static str> {
    const DATA: &[&str] = &[
        "after end of data",
        "after data",
        ">>> data",
        "end of data command",
        "in reply to data",
        "in reply to end of data",
    ];
    const MAIL: &[&str] = &["after mail from", ">>> mail from", "in reply to mail from"];
    const RCPT: &[&str] = &[
        "after rcpt to",
        ">>> rcpt to",
        "in reply to rcpt to",
        "rcpt to:",
        "rcpt to <",
        "rcpt to command",
        "rcpt to response",
        "after rcpt command",
        "[rcpt_to]",
    ];
    if DATA.iter().any(|p| lower.contains(p)) {
        Some("data")
    } else if MAIL.iter().any(|p| lower.contains(p)) {
        Some("mail")
    } else if RCPT.iter().any(|p| lower.contains(p)) {
        Some("rcpt")
    } else {
        None
    }
}

/// An SMTP reply code (`550`, `452`) in `s`: three digits starting with
/// 4 or 5, standing alone and followed by a space, a dash or a status code,
/// and not part of a longer number, a time or an address.
pub fn reply_code_in(s: &str) -> Option<u16> {
    let b = s.as_bytes();
    for i in 0..b.len().saturating_sub(2) {
        if !matches!(b[i], b'4' | b'5') || !b[i + 1].is_ascii_digit() || !b[i + 2].is_ascii_digit()
        {
            continue;
        }
        // "ERROR_CODE :421" (Zoho) is a code; "12:450" or "2800:450:"
        // (a time, an IPv6 address) is not.
        let labelled = i > 1 && b[i - 1] == b':' && b[i - 2] == b' ';
        if i > 0
            && !labelled
            && (b[i - 1].is_ascii_alphanumeric()
                || matches!(b[i - 1], b'.' | b':' | b'-' | b'/' | b'=' | b'#'))
        {
            continue;
        }
        let after = b.get(i + 3).copied();
        let ok_after = match after {
            None => true,
            Some(c) => matches!(
                c,
                b' ' | b'-' | b'\t' | b'\r' | b'\n' | b')' | b']' | b',' | b'"'
            ),
        };
        if !ok_after {
            continue;
        }
        let n: u16 = s[i..i + 3].parse().ok()?;
        if (b[i + 1] - b'0') <= 5 {
            return Some(n);
        }
    }
    None
}

/// Lines that start the copy of the original message (or its headers) at
/// the end of a bounce: nothing after them is the server's words.
fn is_original_start(line: &str) -> bool {
    let l = line.trim().to_ascii_lowercase();
    const MARKERS: &[&str] = &[
        "--- below this line is a copy of the message",
        "------ this is a copy of the message",
        "----- original message follows",
        "original message follows",
        "----- original message -----",
        "-----original message-----",
        "--- original message ---",
        "the headers of the original message",
        "original message headers",
        "----- message header follows",
        "------ original message ------",
        "---- the header of the original message",
        "----- the header of the original message",
        "--- the header of the original message",
        "----- original message header",
    ];
    if MARKERS.iter().any(|m| l.starts_with(m)) {
        return true;
    }
    // A header block: "Received:" or "Return-Path:" at the start of a line
    // is the returned message, not part of a report.
    [
        "received:",
        "return-path:",
        "dkim-signature:",
        "x-original-to:",
    ]
    .iter()
    .any(|h| l.starts_with(h))
}

/// One recipient found in free text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub address: String,
    /// The lines that speak of it, joined with spaces.
    pub words: String,
}

/// Lines that name the bounce's own correspondents, not a failed
/// recipient (headers quoted in the text, the notice's own sender).
fn is_header_line(lower: &str) -> bool {
    const HEADERS: &[&str] = &[
        "from:",
        "reply-to:",
        "sender:",
        "return-path:",
        "message-id:",
        "in-reply-to:",
        "references:",
        "list-",
        "errors-to:",
        "date:",
        "subject:",
        "cc:",
        "x-",
        "dkim",
        "arc-",
        "authentication-results",
        "received",
        "reporting-mta",
    ];
    HEADERS.iter().any(|h| lower.starts_with(h))
}

/// Addresses that never are the failed recipient of a bounce: the
/// daemons that send notices and the people to write to about them.
pub fn is_daemon(addr: &str) -> bool {
    let local = addr.split('@').next().unwrap_or("");
    matches!(
        local,
        "mailer-daemon" | "postmaster" | "mailerdaemon" | "mailer_daemon" | "daemon" | "root"
    ) || local.starts_with("mailer-daemon")
        || local.starts_with("postmaster")
}

/// The text up to the copy of the original message, at most `limit` bytes.
pub fn report_text(text: &str, limit: usize) -> &str {
    let mut end = 0;
    for line in text.split_inclusive('\n') {
        if is_original_start(line) || end + line.len() > limit {
            break;
        }
        end += line.len();
    }
    &text[..end]
}

/// The failed recipients named in `text` (the human-readable part of a
/// bounce, cut at the original message), each with the words around it.
/// `ignore` holds addresses that are the bounce's own correspondents.
pub fn recipients(text: &str, ignore: &[String]) -> Vec<Found> {
    let lines: Vec<&str> = text.lines().take(2000).collect();
    // Which lines mention which candidate addresses.
    let mut hits: Vec<(usize, String)> = Vec::new();
    // Addresses the text gives as the one to contact ("please contact
    // <support@isp.example>", as Postfix's and many ISPs' notices say):
    // a help desk, never a recipient, wherever else it is named.
    let mut contacts: Vec<String> = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let lower = line.trim_start().to_ascii_lowercase();
        if is_header_line(&lower) {
            continue;
        }
        for (at, a) in address_spans(line) {
            if is_daemon(&a) || ignore.contains(&a) {
                continue;
            }
            // "Please contact foo@example.org" and "sent by bar@..." are
            // not recipients; look at the words just before the address.
            let before = line[..at].to_ascii_lowercase();
            // The words before the address, without the brackets or
            // quotes around it ("contact <x@y>", "write to: \"x@y\"").
            let lead = before
                .trim_end()
                .trim_end_matches(['<', '"', '\'', '(', '[', ':'])
                .trim_end();
            if lead.ends_with("contact") {
                if !contacts.contains(&a) {
                    contacts.push(a);
                }
                continue;
            }
            if [
                "contact",
                "mail to ",
                "email ",
                "write to",
                "from ",
                "sender",
                "by ",
                "mail from:",
                "mail from:<",
            ]
            .iter()
            .any(|w| before.trim_end().ends_with(w.trim_end()))
                && !before.contains("to")
            {
                continue;
            }
            hits.push((n, a));
        }
    }
    hits.retain(|(_, a)| !contacts.contains(a));
    let mut order: Vec<String> = Vec::new();
    for (_, a) in &hits {
        if !order.contains(a) && order.len() < 100 {
            order.push(a.clone());
        }
    }
    order
        .into_iter()
        .map(|address| {
            let words = words_about(&lines, &hits, &address);
            Found { address, words }
        })
        .collect()
}

/// The words about `address`: its lines, and the lines after each up to
/// a blank line or the next address (at most 8), with the command or
/// reason said just above it.
fn words_about(lines: &[&str], hits: &[(usize, String)], address: &str) -> String {
    let mut words = String::new();
    for (n, a) in hits {
        if *a != address {
            continue;
        }
        // A transcript's ">>> DATA" before the "<<< 550 ..." that
        // names the address, or "did not like our RCPT TO:" before
        // the reply: the command it answered.
        if let Some(prev) = n.checked_sub(1).map(|p| lines[p].trim())
            && ((prev.starts_with(">>>") && lines[*n].trim_start().starts_with("<<<"))
                || (!hits.iter().any(|(m, _)| *m + 1 == *n)
                    && command_in(&prev.to_ascii_lowercase()).is_some()))
        {
            if !words.is_empty() {
                words.push(' ');
            }
            words.push_str(prev);
        } else if let Some(reply) = transcript_reply(lines, hits, *n, address) {
            if !words.is_empty() {
                words.push(' ');
            }
            words.push_str(&reply);
        } else if let Some(reason) = reason_above(lines, hits, *n, address) {
            if !words.is_empty() {
                words.push(' ');
            }
            words.push_str(reason);
        }
        let mut k = *n;
        while k < lines.len() && k < n + 8 {
            let l = lines[k].trim();
            if k > *n
                && (l.is_empty() && !words.is_empty()
                    || hits.iter().any(|(m, b)| *m == k && *b != address)
                    || is_sendmail_summary(l))
            {
                break;
            }
            if !l.is_empty() {
                if !words.is_empty() {
                    words.push(' ');
                }
                words.push_str(l);
            }
            k += 1;
        }
        if words.len() > 4096 {
            break;
        }
    }
    words
}

/// The line just above a line that holds nothing but `address` (bullets
/// and brackets aside), when it reads as that address's reason: Lotus
/// Notes/Domino and some Japanese gateways write "Failure Reasons", then
/// the reason, then the address under it. Not a line that introduces a
/// list ("... had permanent fatal errors:", "----- ... -----"), a header,
/// or one that names another address.
fn reason_above<'t>(
    lines: &[&'t str],
    hits: &[(usize, String)],
    n: usize,
    address: &str,
) -> Option<&'t str> {
    let bare = lines[n]
        .to_ascii_lowercase()
        .replacen(address, "", 1)
        .chars()
        .all(|c| !c.is_alphanumeric());
    let above = n.checked_sub(1)?;
    let l = lines[above].trim();
    let lower = l.to_ascii_lowercase();
    let introduces = l.ends_with(':')
        || ["---", "===", "***"]
            .iter()
            .any(|r| l.starts_with(r) || l.ends_with(r));
    (bare
        && !l.is_empty()
        && !introduces
        && !is_header_line(&lower)
        && !is_original_start(l)
        && !hits.iter().any(|(m, _)| *m == above))
    .then_some(l)
}

/// A Sendmail summary line, "550 example.org (smtp)... 550 Host unknown"
/// or "554 <a@example.org>... User unknown": a reply code, then the host
/// or address it is about and "... ". Each says all Sendmail has to say
/// of its host or address, so the words about an address stop at the next
/// one (it speaks of another host).
fn is_sendmail_summary(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 8
        && matches!(b[0], b'4' | b'5')
        && b[1].is_ascii_digit()
        && b[2].is_ascii_digit()
        && b[3] == b' '
        && line.contains("... ")
}

/// Sendmail's transcript ("----- Transcript of session follows -----")
/// writes the command and the server's reply (">>> MAIL From:<...>",
/// "<<< 501 ... refused") and then one summary line per recipient it
/// concerns ("554 <rcpt@example.org>... Remote protocol error"), which
/// often keeps only the last words. For such a summary line `n`, the
/// reply just above it and its command, when they name no other
/// recipient: the server's own words about the address.
fn transcript_reply(
    lines: &[&str],
    hits: &[(usize, String)],
    n: usize,
    address: &str,
) -> Option<String> {
    let line = lines[n].trim_start();
    if line.starts_with("<<<") || line.starts_with(">>>") {
        return None;
    }
    let reply_at = n.checked_sub(1)?;
    let reply = lines[reply_at].trim();
    if !reply.starts_with("<<<") {
        return None;
    }
    let other = |m: usize| hits.iter().any(|(k, a)| *k == m && a != address);
    if other(reply_at) {
        return None;
    }
    let mut out = String::new();
    if let Some(cmd_at) = reply_at.checked_sub(1)
        && lines[cmd_at].trim_start().starts_with(">>>")
        && !other(cmd_at)
    {
        out.push_str(lines[cmd_at].trim());
        out.push(' ');
    }
    out.push_str(reply);
    Some(out)
}

/// Lines of `text` that read like a server's refusal: an SMTP reply code,
/// an enhanced status code, or a known failure phrase. For bounces whose
/// text gives the reason apart from the address.
pub fn error_lines(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines().take(500) {
        let l = line.trim();
        if l.is_empty() {
            continue;
        }
        let lower = l.to_ascii_lowercase();
        if is_header_line(&lower) {
            continue;
        }
        if status_in(l).is_some()
            || reply_code_in(l).is_some()
            || super::reason::from_text(&lower).is_some()
        {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(l);
            if out.len() > 4096 {
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_addresses_codes_and_skips_numbers() {
        assert_eq!(
            addresses("<Kijitora@Example.JP>: host said: 550"),
            vec!["kijitora@example.jp"]
        );
        assert_eq!(addresses("id <1234@localhost>"), Vec::<String>::new());
        assert_eq!(
            status_in("from 192.0.2.5.1 said 550 5.1.1 <x>"),
            Some("5.1.1".into())
        );
        assert_eq!(status_in("version 5.1.1.2"), None);
        assert_eq!(status_in("#5.7.509 access denied"), Some("5.7.509".into()));
        assert_eq!(reply_code_in("host said: 550-5.1.1 The"), Some(550));
        assert_eq!(reply_code_in("at 12:550 port 5500"), None);
    }

    #[test]
    fn qmail_text() {
        let t = "Hi. This is the qmail-send program at mx.example.org.\n\
                 I'm afraid I wasn't able to deliver your message to the following addresses.\n\n\
                 <nobody@example.jp>:\n192.0.2.1 does not like recipient.\n\
                 Remote host said: 550 5.1.1 <nobody@example.jp>... User Unknown\n\
                 Giving up on 192.0.2.1.\n\n\
                 --- Below this line is a copy of the message.\n\nReturn-Path: <a@b.org>\n";
        let r = recipients(report_text(t, 1 << 20), &[]);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].address, "nobody@example.jp");
        assert!(r[0].words.contains("User Unknown"));
    }
}
