//! What a message that came back to herald is, and for whom (issue 13): a
//! bounce (a delivery-status notification, standard or free text), a
//! complaint (an ARF feedback report), an unsubscribe request sent to the
//! List-Unsubscribe mailto:, an auto-reply, or ordinary mail.
//!
//! A pure function of the message's bytes: [`classify`]. It reads nothing
//! else, never panics, and bounds its work whatever the input (a cap on the
//! bytes and MIME parts it looks at, and on the text it scans), so it can
//! run on whatever arrives at the bounce address.
//!
//! The reasons are sisimai's names (sisimai is the reference bounce
//! classifier), so its test expectations can judge this one; see
//! `tests/integration/bounces.rs`.
//!
//! Uses mail-parser and [`crate::gone`] (the address-gone rule `herald
//! send` shares) only: nothing of the store, the settings or the rest of
//! `listen/`. Its parts: `reader` walks the message and tells its kind,
//! `words` reads one failed recipient from the server's words, `text`
//! finds recipients in free text, `dsn` and `ses` read the two structured
//! report formats.

mod dsn;
use crate::gone as reason;
mod reader;
mod ses;
mod text;
mod words;

use mail_parser::{Message, MessageParser};
use reader::Reader;

/// What kind of message it is. Its name (in `--json` and the journal) is
/// [`Kind::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A delivery failed (or was delayed) for the recipients listed.
    Bounce,
    /// A recipient (or their provider) reported the message as unwanted.
    Complaint,
    /// Someone wrote "unsubscribe" to the List-Unsubscribe mailto: address.
    Unsubscribe,
    /// An out-of-office or other automatic answer (RFC 3834).
    AutoReply,
    /// Ordinary mail, or a report that every delivery succeeded.
    NotABounce,
    /// Nothing could be made of it (not a mail message at all).
    Unknown,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Bounce => "bounce",
            Kind::Complaint => "complaint",
            Kind::Unsubscribe => "unsubscribe",
            Kind::AutoReply => "auto-reply",
            Kind::NotABounce => "not-a-bounce",
            Kind::Unknown => "unknown",
        }
    }
}

/// One recipient the report is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// Lower-cased, without `<>`.
    pub address: String,
    /// RFC 3463 enhanced status code ("5.1.1"); sisimai's `5.0.9xx` codes
    /// when the message carries none and the reason is known; "" when none
    /// can be told (complaints, auto-replies).
    pub status: String,
    /// The SMTP reply code, e.g. 550, when the message carries one.
    pub reply_code: Option<u16>,
    /// sisimai's reason name: "userunknown", "mailboxfull", "filtered",
    /// "feedback", "vacation", "undefined", ...
    pub reason: String,
    /// True only when the address is bad for good (unknown user or
    /// domain, moved, a domain that takes no mail): stop mailing it.
    pub hard: bool,
    /// The server's words, one line, at most 300 characters.
    pub diagnostic: Option<String>,
    /// The DSN's Action ("failed", "delayed", "delivered"), when there is one.
    pub action: Option<String>,
}

/// What can be told of the message that bounced (or was complained about).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Original {
    pub return_path: Option<String>,
    pub message_id: Option<String>,
    pub to: Option<String>,
    pub list_unsubscribe: Option<String>,
}

/// What [`classify`] makes of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub kind: Kind,
    pub recipients: Vec<Recipient>,
    /// ARF Feedback-Type: "abuse", "opt-out", "auth-failure", ...
    pub feedback_type: Option<String>,
    /// Where this message was delivered (Delivered-To, X-Original-To,
    /// Envelope-To, To), lower-cased: the VERP address is among them.
    pub addressed_to: Vec<String>,
    pub original: Original,
    pub subject: Option<String>,
}

/// Bytes of a message looked at. Bounces carry the report first and the
/// returned message after it; 4 MiB keeps every report and bounds the work
/// on a message with a huge attachment.
const MAX_BYTES: usize = 4 * 1024 * 1024;
/// MIME parts looked at. A real bounce has fewer than ten. The input is
/// cut before the part that would pass this, which also bounds how deeply
/// parts can nest (mail-parser keeps its own stack, but dropping a parsed
/// tree recurses once per nested message).
const MAX_PARTS: usize = 256;
/// Text scanned for free-text reports, per message.
const MAX_TEXT: usize = 256 * 1024;

/// Tells what `raw` (a whole message, headers and body) is.
pub fn classify(raw: &[u8]) -> Report {
    let raw = bounded(raw);
    let Some(msg) = MessageParser::default().parse(raw) else {
        return Report {
            kind: Kind::Unknown,
            recipients: Vec::new(),
            feedback_type: None,
            addressed_to: Vec::new(),
            original: Original::default(),
            subject: None,
        };
    };
    let reader = Reader::new(&msg);
    let returned = reader.returned;
    let mut report = reader.report();
    if let Some(inner) = returned {
        read_returned_report(&mut report, inner);
    }
    // A message whose MIME is broken and that yielded nothing: it cannot
    // be told from a bounce herald failed to read, so it is not taken
    // for ordinary mail (and marked read): it is left for a person.
    if matches!(report.kind, Kind::NotABounce | Kind::AutoReply) && broken_mime(&msg, raw) {
        report.kind = Kind::Unknown;
    }
    if report.kind == Kind::Bounce {
        soften_on_conflict(&mut report, &msg);
    }
    report
}

/// When in doubt, soft (issue 24): a notice whose own words give a reason
/// that says nothing against the address (a full mailbox, a filter, a
/// block) while its report says "gone", and that nowhere itself says the
/// user or domain is unknown, contradicts itself; nobody is taken as gone
/// on its word (the bounce still counts as a soft one).
fn soften_on_conflict(report: &mut Report, msg: &Message) {
    if !report.recipients.iter().any(|r| r.hard) {
        return;
    }
    let Some(notice) = msg.body_text(0) else {
        return;
    };
    let end = notice
        .char_indices()
        .nth(2000)
        .map_or(notice.len(), |(i, _)| i);
    let notice = notice[..end].to_ascii_lowercase();
    let soft = matches!(
        reason::from_text(&notice),
        Some(
            "mailboxfull"
                | "filtered"
                | "blocked"
                | "spamdetected"
                | "policyviolation"
                | "systemfull"
                | "exceedlimit"
        )
    );
    if soft && !reason::says(&notice, "userunknown") && !reason::says(&notice, "hostunknown") {
        for r in &mut report.recipients {
            r.hard = false;
        }
    }
}

/// Whether the message says it is multipart and its parts cannot be
/// found: no boundary, or a boundary that never appears in the body.
fn broken_mime(msg: &Message, raw: &[u8]) -> bool {
    use mail_parser::MimeHeaders;
    let Some(root) = msg.parts.first() else {
        return true;
    };
    let Some(ct) = root.content_type() else {
        return false;
    };
    if !ct.ctype().eq_ignore_ascii_case("multipart") {
        return false;
    }
    let Some(boundary) = ct.attribute("boundary").filter(|b| !b.is_empty()) else {
        return true;
    };
    let body = raw.get(root.offset_body as usize..).unwrap_or_default();
    let needle = format!("--{boundary}");
    memchr::memmem::find(body, needle.as_bytes()).is_none()
}

/// A notice that names no recipient and says nothing of why, returning a
/// message that is itself a delivery report: a gateway that could not pass
/// a bounce on re-wraps it (Trend Micro IMSS and other filtering gateways,
/// relays bouncing a bounce). The returned report says who failed and why.
/// One level only: the inner report's own returned message is not read.
fn read_returned_report(report: &mut Report, inner: &Message) {
    if report.kind != Kind::Bounce || !report.recipients.iter().all(|r| r.reason == "undefined") {
        return;
    }
    let reader = Reader::new(inner);
    if reader.dsn.is_empty() {
        return;
    }
    let inner = reader.report();
    if inner.kind != Kind::Bounce || inner.recipients.is_empty() {
        return;
    }
    report.recipients = inner.recipients;
    if inner.original.message_id.is_some() || inner.original.to.is_some() {
        report.original = inner.original;
    }
}

/// `raw` cut to [`MAX_BYTES`] and before the [`MAX_PARTS`]th part header.
fn bounded(raw: &[u8]) -> &[u8] {
    let raw = &raw[..raw.len().min(MAX_BYTES)];
    let mut seen = 0;
    let needle = b"content-type:";
    for nl in memchr::memchr_iter(b'\n', raw) {
        let line = &raw[nl + 1..];
        if line.len() >= needle.len() && line[..needle.len()].eq_ignore_ascii_case(needle) {
            seen += 1;
            if seen >= MAX_PARTS {
                return &raw[..nl + 1];
            }
        }
    }
    raw
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crlf(s: &str) -> Vec<u8> {
        s.replace('\n', "\r\n").into_bytes()
    }

    #[test]
    fn rfc3464_dsn() {
        let m = crlf(
            "From: MAILER-DAEMON@mx.example.org\nTo: bounces+abc@news.example.org\n\
             Subject: Undelivered Mail Returned to Sender\nMIME-Version: 1.0\n\
             Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\n\n\
             --b\nContent-Type: text/plain\n\nI could not deliver it.\n\
             --b\nContent-Type: message/delivery-status\n\n\
             Reporting-MTA: dns; mx.example.org\n\n\
             Final-Recipient: rfc822; Nobody@Example.JP\nAction: failed\nStatus: 5.1.1\n\
             Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.jp>: User unknown\n\n\
             --b\nContent-Type: message/rfc822\n\n\
             Return-Path: <bounces+abc@news.example.org>\nMessage-ID: <m1@news.example.org>\n\
             To: nobody@example.jp\nList-Unsubscribe: <mailto:u@news.example.org>\n\nHi\n--b--\n",
        );
        let r = classify(&m);
        assert_eq!(r.kind, Kind::Bounce);
        assert_eq!(r.recipients.len(), 1);
        let x = &r.recipients[0];
        assert_eq!(x.address, "nobody@example.jp");
        assert_eq!(x.status, "5.1.1");
        assert_eq!(x.reply_code, Some(550));
        assert_eq!(x.reason, "userunknown");
        assert!(x.hard);
        assert_eq!(r.addressed_to, vec!["bounces+abc@news.example.org"]);
        assert_eq!(
            r.original.message_id.as_deref(),
            Some("m1@news.example.org")
        );
        assert_eq!(
            r.original.list_unsubscribe.as_deref(),
            Some("<mailto:u@news.example.org>")
        );
    }

    #[test]
    fn arf_complaint() {
        let m = crlf(
            "From: fbl@isp.example\nTo: abuse@news.example.org\nSubject: complaint\n\
             MIME-Version: 1.0\n\
             Content-Type: multipart/report; report-type=feedback-report; boundary=\"b\"\n\n\
             --b\nContent-Type: text/plain\n\nA complaint.\n\
             --b\nContent-Type: message/feedback-report\n\n\
             Feedback-Type: abuse\nUser-Agent: x/1\nVersion: 1\nOriginal-Rcpt-To: reader@isp.example\n\n\
             --b\nContent-Type: text/rfc822-headers\n\n\
             Message-ID: <m2@news.example.org>\nTo: reader@isp.example\n\n--b--\n",
        );
        let r = classify(&m);
        assert_eq!(r.kind, Kind::Complaint);
        assert_eq!(r.feedback_type.as_deref(), Some("abuse"));
        assert_eq!(r.recipients[0].address, "reader@isp.example");
        assert_eq!(r.recipients[0].status, "");
        assert!(!r.recipients[0].hard);
        assert_eq!(
            r.original.message_id.as_deref(),
            Some("m2@news.example.org")
        );
    }

    #[test]
    fn qmail_text_bounce() {
        let m = crlf(
            "From: MAILER-DAEMON@mx.example.net\nTo: b@news.example.org\nSubject: failure notice\n\n\
             Hi. This is the qmail-send program at mx.example.net.\n\
             I'm afraid I wasn't able to deliver your message to the following addresses.\n\
             This is a permanent error; I've given up. Sorry it didn't work out.\n\n\
             <gone@example.net>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n\
             --- Below this line is a copy of the message.\n\nReturn-Path: <b@news.example.org>\n\
             To: gone@example.net\n\nHi\n",
        );
        let r = classify(&m);
        assert_eq!(r.kind, Kind::Bounce);
        assert_eq!(r.recipients.len(), 1);
        assert_eq!(r.recipients[0].address, "gone@example.net");
        assert_eq!(r.recipients[0].status, "5.1.1");
        assert!(r.recipients[0].hard);
    }

    #[test]
    fn unknown_user_without_code_read_by_command_and_gateway() {
        let bounce = |headers: &str, said: &str| {
            let m = crlf(&format!(
                "From: MAILER-DAEMON@mx.example.net\nTo: b@news.example.org\n{headers}\
                 Subject: Undelivered Mail Returned to Sender\n\n\
                 <gone@example.net>: host mx.example.net[192.0.2.1] said:\n    {said}\n\n\
                 --- Below this line is a copy of the message.\n\nTo: gone@example.net\n\nHi\n"
            ));
            classify(&m)
                .recipients
                .into_iter()
                .next()
                .expect("a recipient")
        };
        // Answering RCPT TO: the server judged the address before it saw
        // the message, so an unknown user is gone even without a code.
        let r = bounce("", "550 Unknown user (in reply to RCPT TO command)");
        assert_eq!((r.reason.as_str(), r.hard), ("userunknown", true));
        let r = bounce("", "550 5.1.1 Unknown user (in reply to RCPT TO command)");
        assert_eq!((r.reason.as_str(), r.hard), ("userunknown", true));
        // After the content was sent: the content was refused.
        let r = bounce("", "550 Unknown user (in reply to end of DATA command)");
        assert_eq!((r.reason.as_str(), r.hard), ("filtered", false));
        assert_eq!(r.status, "5.0.910");
        // A filtering gateway's "unknown user", no command named.
        let r = bounce("X-Mailer: m-FILTER\n", "550 Unknown user");
        assert_eq!((r.reason.as_str(), r.hard), ("filtered", false));
        let r = bounce("", "550 Unknown user");
        assert_eq!((r.reason.as_str(), r.hard), ("userunknown", false));
        // A code for a disabled mailbox, no command named.
        let r = bounce("", "550 5.2.1 <gone@example.net>... User Unknown");
        assert_eq!((r.reason.as_str(), r.hard), ("suspend", false));
        // A domain that does not exist.
        let r = bounce("", "553 example.net does not exist");
        assert_eq!((r.reason.as_str(), r.hard), ("hostunknown", true));
    }

    /// A Sendmail (V5/V8) transcript: the command and reply, then one
    /// summary line per recipient; the sender quoted in it is no recipient.
    #[test]
    fn sendmail_transcript_sender_reply_and_summary_lines() {
        let m = crlf(
            "From: Mail Delivery Subsystem <MAILER-DAEMON@relay.example.net>\n\
             To: list@news.example.org\nSubject: Returned mail: see transcript for details\n\n\
             \x20  ----- Transcript of session follows -----\n\
             While talking to mx.example.com:\n\
             >>> MAIL From:<list@news.example.org>\n\
             <<< 553 <list@news.example.org>... relaying from your server is blocked\n\
             554 <ann@example.com>... Remote protocol error\n\
             421 mx.example.com (smtp)... Deferred: Connection reset by peer\n\
             554 <carl@example.com>... Remote protocol error\n\
             550 example.net (smtp)... 550 Host unknown\n\
             554 <bob@example.net>... 550 Host unknown (Authoritative answer from name server)\n\n\
             \x20  ----- Unsent message follows -----\n\
             Received: by relay.example.net; id 1\n\
             From: list@news.example.org\nTo: ann@example.com\nSubject: Issue 4\n\nHi\n",
        );
        let r = classify(&m);
        assert_eq!(r.kind, Kind::Bounce);
        let got: Vec<(&str, &str, bool)> = r
            .recipients
            .iter()
            .map(|x| (x.address.as_str(), x.reason.as_str(), x.hard))
            .collect();
        // The sender is not listed; ann's words are the reply above her
        // summary line (a block, not her address); carl's stop before the
        // next host's summary line (its unknown host is not his); bob's
        // domain is unknown.
        assert_eq!(
            got,
            vec![
                ("ann@example.com", "blocked", false),
                ("carl@example.com", "onhold", false),
                ("bob@example.net", "hostunknown", true),
            ]
        );
        // A sender who wrote to themselves stays a possible recipient.
        let to_self = String::from_utf8(m)
            .unwrap()
            .replace("To: ann@example.com", "To: list@news.example.org");
        let r = classify(to_self.as_bytes());
        assert_eq!(r.recipients[0].address, "list@news.example.org");
    }

    #[test]
    fn contact_address_is_never_a_recipient() {
        let m = crlf(
            "From: MAILER-DAEMON@mx.isp.example (Mail Delivery System)\n\
             To: b@news.example.org\nSubject: Undelivered Mail Returned to Sender\n\n\
             I'm sorry to have to inform you that the message returned\n\
             below could not be delivered to one or more destinations.\n\n\
             For further assistance, please contact <help@isp.example>\n\n\
             If that does not help, write to us: <help@isp.example>\n\n\
             <reader@example.org>: host mx.example.org[192.0.2.9] said: 550 5.1.1\n\
             \x20   <reader@example.org>: User unknown (in reply to RCPT TO command)\n",
        );
        let r = classify(&m);
        assert_eq!(r.kind, Kind::Bounce);
        assert_eq!(r.recipients.len(), 1);
        assert_eq!(r.recipients[0].address, "reader@example.org");
        assert_eq!(r.recipients[0].status, "5.1.1");
    }

    #[test]
    fn onhold_when_words_say_nothing_known_and_reason_above_address() {
        let bounce = |report: &str| {
            let m = crlf(&format!(
                "From: postmaster@gw.example.net\nTo: b@news.example.org\n\
                 Subject: Undeliverable message\n\n{report}\n"
            ));
            classify(&m)
                .recipients
                .into_iter()
                .next()
                .expect("a recipient")
        };
        // Lotus Notes' layout: the reason above the address, here in words
        // that name no known reason.
        let r = bounce(
            "------- Failure Reasons --------\n\
             Routing stopped: the message could not be handed over\nreader@example.org\n\
             ------- Returned Message --------\n",
        );
        assert_eq!(
            (r.reason.as_str(), r.status.as_str()),
            ("onhold", "5.0.901")
        );
        assert!(r.diagnostic.unwrap().starts_with("Routing stopped"));
        // Only the address, under a line that introduces the list.
        let r = bounce("Delivery to the following recipients failed:\n* reader@example.org\n");
        assert_eq!(
            (r.reason.as_str(), r.status.as_str()),
            ("undefined", "5.0.900")
        );
        // A known reason above the address.
        let r = bounce("Mailbox full\nreader@example.org\n");
        assert_eq!((r.reason.as_str(), r.hard), ("mailboxfull", false));
    }

    /// An ISO-2022-JP notice (Japanese servers): its double-byte text is
    /// 7-bit and would read as stray codes ("5.1.1!" is three kanji), so
    /// it is decoded before it is read.
    #[test]
    fn iso_2022_jp_text_is_decoded() {
        let mut m = crlf(
            "From: MAILER-DAEMON@mx.example.jp\nTo: b@news.example.org\n\
             Subject: Undelivered Mail Returned to Sender\nMIME-Version: 1.0\n\
             Content-Type: text/plain; charset=iso-2022-jp\n\n\
             <reader@example.jp>: host mx.example.jp[192.0.2.7] said: 552 mailbox full\n",
        );
        m.extend_from_slice(b"\x1b$B5.1.1!\x1b(B\r\n");
        let r = classify(&m);
        let x = &r.recipients[0];
        assert_eq!(x.address, "reader@example.jp");
        assert_eq!(
            (x.reason.as_str(), x.status.as_str()),
            ("mailboxfull", "5.0.922")
        );
        assert!(!x.diagnostic.as_deref().unwrap().contains("5.1.1"));
    }

    #[test]
    fn returned_delivery_report_is_read_when_the_notice_says_nothing() {
        let inner = "From: MAILER-DAEMON@mx.example.org\nTo: list@news.example.org\n\
                     Subject: Returned mail: User unknown\nMIME-Version: 1.0\n\
                     Content-Type: multipart/report; report-type=delivery-status; boundary=\"in\"\n\n\
                     --in\nContent-Type: text/plain\n\nUser unknown.\n\
                     --in\nContent-Type: message/delivery-status\n\n\
                     Reporting-MTA: dns; mx.example.org\n\n\
                     Final-Recipient: rfc822; gone@example.org\nAction: failed\nStatus: 5.1.1\n\
                     Diagnostic-Code: smtp; 550 5.1.1 User unknown\n\n\
                     --in\nContent-Type: message/rfc822\n\n\
                     Message-ID: <m9@news.example.org>\nTo: gone@example.org\n\nHi\n--in--\n";
        let outer = |text: &str| {
            crlf(&format!(
                "From: MAILER-DAEMON@gw.example.net\nTo: list@news.example.org\n\
                 Subject: Returned mail\nMIME-Version: 1.0\n\
                 Content-Type: multipart/mixed; boundary=\"out\"\n\n\
                 --out\nContent-Type: text/plain\n\n{text}\n\
                 --out\nContent-Type: message/rfc822\n\n{inner}--out--\n"
            ))
        };
        // The gateway's notice names nobody: the returned report speaks.
        let r = classify(&outer(
            "----- The following addresses had permanent delivery errors -----\n",
        ));
        assert_eq!(r.kind, Kind::Bounce);
        let x = &r.recipients[0];
        assert_eq!(
            (x.address.as_str(), x.status.as_str(), x.hard),
            ("gone@example.org", "5.1.1", true)
        );
        assert_eq!(
            r.original.message_id.as_deref(),
            Some("m9@news.example.org")
        );
        // A notice with its own reason is not overridden.
        let r = classify(&outer("<list@news.example.org>: 552 5.2.2 Mailbox full\n"));
        assert_eq!(r.recipients[0].reason, "mailboxfull");
        // Ordinary mail forwarding a report stays ordinary mail.
        let fwd = crlf(&format!(
            "From: friend@example.net\nTo: me@news.example.org\nSubject: look at this\n\
             MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"out\"\n\n\
             --out\nContent-Type: text/plain\n\nWhat does this mean?\n\
             --out\nContent-Type: message/rfc822\n\n{inner}--out--\n"
        ));
        assert_eq!(classify(&fwd).kind, Kind::NotABounce);
    }

    #[test]
    fn policy_block_is_not_hard_and_missing_status_is_derived() {
        let m = crlf(
            "From: Mail Delivery System <Mailer-Daemon@mx.example.net>\nTo: b@news.example.org\n\
             Subject: Mail delivery failed: returning message to sender\n\
             X-Failed-Recipients: someone@example.net\n\n\
             This message was created automatically by mail delivery software.\n\n\
             A message that you sent could not be delivered to one or more of its\n\
             recipients. This is a permanent error. The following address(es) failed:\n\n\
             \x20 someone@example.net\n\
             \x20   host mx.example.net [192.0.2.1]\n\
             \x20   SMTP error from remote mail server after RCPT TO:<someone@example.net>:\n\
             \x20   550 Your IP is listed at zen.spamhaus.org\n",
        );
        let r = classify(&m);
        assert_eq!(r.kind, Kind::Bounce);
        let x = &r.recipients[0];
        assert_eq!(x.reason, "blocked");
        assert_eq!(x.status, "5.0.971");
        assert!(!x.hard);
    }

    #[test]
    fn auto_reply_ordinary_and_unsubscribe() {
        let away = crlf(
            "From: reader@example.net\nTo: b@news.example.org\nSubject: Out of Office: May\n\
             Auto-Submitted: auto-replied\n\nI am away until Monday.\n",
        );
        assert_eq!(classify(&away).kind, Kind::AutoReply);
        let plain = crlf(
            "From: friend@example.net\nTo: me@news.example.org\nSubject: lunch?\n\n\
             Shall we meet at noon? Write to friend@example.net.\n",
        );
        assert_eq!(classify(&plain).kind, Kind::NotABounce);
        let unsub = crlf(
            "From: reader@example.net\nTo: unsubscribe+tok@news.example.org\nSubject: Unsubscribe\n\n\n",
        );
        let r = classify(&unsub);
        assert_eq!(r.kind, Kind::Unsubscribe);
        assert_eq!(r.addressed_to, vec!["unsubscribe+tok@news.example.org"]);
    }

    #[test]
    fn hostile_input_is_bounded_and_never_panics() {
        assert_eq!(classify(b"").kind, Kind::Unknown);
        let garbage: Vec<u8> = (0..100_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let _ = classify(&garbage);
        let _ = classify(b"\xff\xfe@@@<<>>:\r\n\r\n5.1.1 550 @ @. a@b.c");

        // A 10 MB body.
        let mut big = b"From: MAILER-DAEMON@x.example\r\nSubject: Undelivered\r\n\r\n".to_vec();
        big.extend(
            std::iter::repeat_n(
                b"<a@b.example>: 550 5.1.1 user unknown\r\n".as_slice(),
                250_000,
            )
            .flatten(),
        );
        let t = std::time::Instant::now();
        let r = classify(&big);
        assert!(r.recipients.len() <= 100);
        assert!(t.elapsed().as_secs() < 10, "10 MB took {:?}", t.elapsed());

        // 1000 nested multiparts, and 1000 nested messages.
        for (open, _) in [
            ("multipart/mixed; boundary=\"b{}\"", 0),
            ("message/rfc822", 1),
        ] {
            let mut m = String::from("From: a@b.example\r\nSubject: x\r\n");
            for i in 0..1000 {
                m.push_str(&format!(
                    "Content-Type: {}\r\n\r\n",
                    open.replace("{}", &i.to_string())
                ));
                if open.starts_with("multipart") {
                    m.push_str(&format!("--b{i}\r\n"));
                }
            }
            m.push_str("Content-Type: text/plain\r\n\r\nhello\r\n");
            let t = std::time::Instant::now();
            let _ = classify(m.as_bytes());
            assert!(t.elapsed().as_secs() < 5);
        }
    }
}
