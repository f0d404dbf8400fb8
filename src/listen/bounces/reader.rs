//! One walk over a message's parts ([`Reader`]) gathers what it is read
//! for (the delivery-status fields, the feedback report, the text, the
//! returned message's headers), then [`Reader::report`] tells what it is:
//! a complaint, an SES notification, a DSN, a free-text notice, an
//! auto-reply, an unsubscribe request, or ordinary mail, in that order.

use mail_parser::{Message, MessageParser, MessagePart, PartType};

use super::words::{
    has_reason, is_bounce_subject, is_unsubscribe, recipient, refine_unknown_user,
    says_undelivered, says_user,
};
use super::{Kind, MAX_PARTS, MAX_TEXT, Original, Recipient, Report, dsn, ses, text};

/// The values of header `name` of `part` in `msg`, unfolded.
fn headers(msg: &Message, part: &MessagePart, name: &str) -> Vec<String> {
    part.headers
        .iter()
        .filter(|h| h.name.as_str().eq_ignore_ascii_case(name))
        .filter_map(|h| {
            msg.raw_message
                .get(h.offset_start as usize..h.offset_end as usize)
        })
        .map(|b| unfold(&String::from_utf8_lossy(b)))
        .collect()
}

fn header(msg: &Message, part: &MessagePart, name: &str) -> Option<String> {
    headers(msg, part, name).into_iter().next()
}

fn unfold(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The MIME type of a part, lower-cased ("text/plain" when it has none).
fn mime(part: &MessagePart) -> String {
    use mail_parser::MimeHeaders;
    match part.content_type() {
        Some(ct) => {
            format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or_default()).to_ascii_lowercase()
        }
        None => "text/plain".to_string(),
    }
}

/// Everything a message is read for, gathered in one walk over its parts.
pub(super) struct Reader<'a> {
    msg: &'a Message<'a>,
    pub(super) dsn: Vec<dsn::Entry>,
    feedback: Vec<(String, String)>,
    texts: Vec<String>,
    original: Original,
    original_to: Vec<String>,
    /// The returned message's sender (From, Return-Path): the one the
    /// bounce goes back to, not a recipient that failed.
    original_from: Vec<String>,
    /// The first message part (the returned message).
    pub(super) returned: Option<&'a Message<'a>>,
    has_report_type: bool,
}

impl<'a> Reader<'a> {
    pub(super) fn new(msg: &'a Message<'a>) -> Self {
        let mut r = Reader {
            msg,
            dsn: Vec::new(),
            feedback: Vec::new(),
            texts: Vec::new(),
            original: Original::default(),
            original_to: Vec::new(),
            original_from: Vec::new(),
            returned: None,
            has_report_type: false,
        };
        r.walk();
        r
    }

    fn walk(&mut self) {
        let msg = self.msg;
        let mut html = Vec::new();
        let mut text_len = 0;
        for (i, part) in msg.parts.iter().enumerate().take(MAX_PARTS) {
            let mime = mime(part);
            if i == 0
                && let Some(ct) = header(msg, part, "content-type")
            {
                self.has_report_type = ct.to_ascii_lowercase().contains("report-type");
            }
            match &part.body {
                PartType::Multipart(_) => {}
                PartType::Message(inner) => {
                    if self.returned.is_none() {
                        self.returned = Some(inner);
                    }
                    self.read_original(inner)
                }
                _ if mime.ends_with("delivery-status") => {
                    let body = String::from_utf8_lossy(part.contents());
                    self.dsn.extend(dsn::entries(&body));
                }
                _ if mime == "message/feedback-report" => {
                    let body = String::from_utf8_lossy(part.contents());
                    self.feedback.extend(dsn::fields(&body));
                }
                _ if mime == "text/rfc822-headers" || mime.ends_with("/rfc822-headers") => {
                    if let Some(inner) = MessageParser::default().parse_headers(part.contents()) {
                        self.read_original(&inner);
                    }
                }
                PartType::Text(t) if mime.starts_with("text/") || i == 0 => {
                    if dsn::looks_like_dsn(t) {
                        self.dsn.extend(dsn::entries(t));
                    } else if text_len < MAX_TEXT {
                        text_len += t.len();
                        self.texts.push(t.to_string());
                    }
                }
                PartType::Html(h) => html.push(h.to_string()),
                _ => {}
            }
        }
        if self.texts.is_empty() {
            self.texts = html.iter().map(|h| strip_html(h)).collect();
        }
    }

    fn read_original(&mut self, inner: &Message) {
        if self.original.message_id.is_some() || self.original.to.is_some() {
            return;
        }
        let Some(root) = inner.parts.first() else {
            return;
        };
        let get = |name: &str| header(inner, root, name);
        self.original = Original {
            return_path: get("return-path").and_then(|v| text::addresses(&v).into_iter().next()),
            message_id: get("message-id").map(|v| {
                v.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            }),
            to: get("to"),
            list_unsubscribe: get("list-unsubscribe"),
        };
        self.original_to = self
            .original
            .to
            .as_deref()
            .map(text::addresses)
            .unwrap_or_default();
        self.original_from = get("from").map(|v| text::addresses(&v)).unwrap_or_default();
        self.original_from
            .extend(self.original.return_path.iter().cloned());
    }

    /// What the message is: the first reading that finds something wins,
    /// in this order: a feedback report, an SES notification, a DSN, a
    /// free-text failure notice, an auto-reply, an unsubscribe request.
    pub(super) fn report(mut self) -> Report {
        let msg = self.msg;
        let root = &msg.parts[0];
        let subject = msg.subject().map(unfold);
        let from: Vec<String> = header(msg, root, "from")
            .map(|v| text::addresses(&v))
            .unwrap_or_default();
        let gateway = is_filter_gateway(msg, root);
        let text: String = self.texts.join("\n");
        let report_text = text::report_text(&text, MAX_TEXT);
        if self.original.message_id.is_none() && self.original.to.is_none() {
            self.original_from_text(&text[report_text.len()..]);
        }
        let ignore = self.not_recipients(&from);
        let mut report = Report {
            kind: Kind::NotABounce,
            recipients: Vec::new(),
            feedback_type: None,
            addressed_to: addressed_to(msg, root),
            original: self.original.clone(),
            subject: subject.clone(),
        };
        let lower_subject = subject.as_deref().unwrap_or("").to_ascii_lowercase();

        if !self.feedback.is_empty() {
            self.complaint(&mut report, &from);
            return report;
        }
        if read_ses(&mut report, &text) {
            return report;
        }
        if !self.dsn.is_empty() && self.delivery_status(&mut report, report_text, &ignore, gateway)
        {
            return report;
        }
        let auto_replied = self.is_auto_reply(&lower_subject);
        let notice = Notice {
            lower_subject: &lower_subject,
            report_text,
            from: &from,
            ignore: &ignore,
            gateway,
            auto_replied,
        };
        if self.free_text(&mut report, &notice) {
            return report;
        }
        if auto_replied {
            report.kind = Kind::AutoReply;
            report.recipients = from
                .into_iter()
                .take(1)
                .map(|address| Recipient {
                    address,
                    status: String::new(),
                    reply_code: None,
                    reason: "vacation".into(),
                    hard: false,
                    diagnostic: None,
                    action: None,
                })
                .collect();
            return report;
        }
        if is_unsubscribe(&lower_subject, &text) {
            report.kind = Kind::Unsubscribe;
        }
        report
    }

    /// Addresses the text names that are not failed recipients: the
    /// notice's own sender, and the returned message's sender (a Sendmail
    /// transcript quotes "MAIL From:<sender>" and the reply naming it; a
    /// refusal may quote the sender's address). Unless the original was
    /// addressed to its sender too.
    fn not_recipients(&self, from: &[String]) -> Vec<String> {
        let mut v = from.to_vec();
        for a in &self.original_from {
            if !self.original_to.contains(a) && !v.contains(a) {
                v.push(a.clone());
            }
        }
        v
    }

    /// A feedback report (RFC 5965).
    fn complaint(&self, report: &mut Report, from: &[String]) {
        report.kind = Kind::Complaint;
        report.feedback_type = self.field("feedback-type").map(|v| v.to_ascii_lowercase());
        let mut rcpts: Vec<String> = self
            .feedback
            .iter()
            .filter(|(n, _)| n == "original-rcpt-to" || n == "removal-recipient")
            .flat_map(|(_, v)| text::addresses(v))
            .collect();
        if rcpts.is_empty() {
            rcpts = self.original_to.clone();
        }
        // With neither, the report's sender: the complaining party.
        if rcpts.is_empty() {
            rcpts = from.to_vec();
        }
        rcpts.dedup();
        report.recipients = rcpts.into_iter().map(complainant).collect();
    }

    /// A delivery-status notification (RFC 3464). True when it named
    /// someone (the report is then complete).
    fn delivery_status(
        &mut self,
        report: &mut Report,
        report_text: &str,
        ignore: &[String],
        gateway: bool,
    ) -> bool {
        let entries = std::mem::take(&mut self.dsn);
        // Only read when a DSN entry has no Diagnostic-Code: scanning
        // the text costs more than the rest of the work.
        let found = std::cell::OnceCell::new();
        let found = || found.get_or_init(|| text::recipients(report_text, ignore));
        let errors = std::cell::OnceCell::new();
        for e in entries {
            let Some(address) = e.final_recipient.clone().or(e.original_recipient.clone()) else {
                continue;
            };
            if report.recipients.iter().any(|r| r.address == address) {
                continue;
            }
            // The text's words about this address fill in for a
            // DSN without a Diagnostic-Code.
            let words = e
                .diagnostic
                .clone()
                .filter(|d| !d.trim().is_empty())
                .unwrap_or_else(|| {
                    found()
                        .iter()
                        .find(|f: &&text::Found| f.address == address)
                        .map(|f| f.words.clone())
                        .unwrap_or_else(|| {
                            errors
                                .get_or_init(|| text::error_lines(report_text))
                                .clone()
                        })
                });
            report.recipients.push(recipient(
                address,
                e.status.as_deref(),
                &words,
                e.action.as_deref(),
            ));
        }
        for r in &mut report.recipients {
            let about = |r: &Recipient| {
                found()
                    .iter()
                    .find(|f: &&text::Found| f.address == r.address)
                    .map(|f| f.words.as_str())
                    .unwrap_or("")
            };
            // "4.4.7" (expired) says less than a code the text gives
            // for the address ("returned '441 4.4.1 Error encountered
            // while communicating with primary target'").
            if r.status.get(1..) == Some(".4.7")
                && let Some(c) = text::last_status_in(about(r))
                    .filter(|c| c.get(1..) != Some(".4.7") && c.get(..1) == r.status.get(..1))
            {
                r.status = c;
            }
            if r.reason == "userunknown" && !says_user(&r.status) {
                let about = about(r);
                refine_unknown_user(r, about, gateway);
            }
        }
        report.kind = if report.recipients.iter().all(|r| {
            matches!(
                r.action.as_deref(),
                Some("delivered" | "relayed" | "expanded")
            )
        }) {
            Kind::NotABounce
        } else {
            Kind::Bounce
        };
        !report.recipients.is_empty()
    }

    /// A failure notice in free text (qmail, Exim, Exchange, ...). True
    /// when it named someone.
    fn free_text(&self, report: &mut Report, n: &Notice) -> bool {
        let msg = self.msg;
        let failed: Vec<String> = headers(msg, &msg.parts[0], "x-failed-recipients")
            .iter()
            .flat_map(|v| text::addresses(v))
            .collect();
        let looks_bounced = !failed.is_empty()
            || is_bounce_subject(n.lower_subject)
            || (!n.auto_replied
                && (n.from.iter().any(|a| text::is_daemon(a)) || says_undelivered(n.report_text)));
        if !looks_bounced {
            return false;
        }
        let found = text::recipients(n.report_text, n.ignore);
        let errors = std::cell::OnceCell::new();
        let errors = || {
            errors
                .get_or_init(|| text::error_lines(n.report_text))
                .clone()
        };
        let mut pairs: Vec<(String, String)> = Vec::new();
        if !failed.is_empty() {
            for a in failed {
                let words = found
                    .iter()
                    .find(|f| f.address == a)
                    .map(|f| f.words.clone())
                    .filter(|w| has_reason(w))
                    .unwrap_or_else(errors);
                pairs.push((a, words));
            }
        } else {
            for f in found {
                let words = if has_reason(&f.words) {
                    f.words
                } else {
                    format!("{} {}", f.words, errors())
                };
                pairs.push((f.address, words));
            }
        }
        // The original's To is the recipient when the text names none.
        if pairs.is_empty() && self.original_to.len() == 1 {
            pairs.push((self.original_to[0].clone(), errors()));
        }
        if pairs.is_empty() {
            return false;
        }
        report.kind = Kind::Bounce;
        report.recipients = pairs
            .into_iter()
            .map(|(a, w)| {
                let mut r = recipient(a, None, &w, None);
                if r.reason == "userunknown" && !says_user(&r.status) {
                    refine_unknown_user(&mut r, "", n.gateway);
                }
                r
            })
            .collect();
        true
    }

    fn field(&self, name: &str) -> Option<&str> {
        self.feedback
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn is_auto_reply(&self, subject: &str) -> bool {
        let msg = self.msg;
        let root = &msg.parts[0];
        let h = |n: &str| header(msg, root, n).map(|v| v.to_ascii_lowercase());
        if h("auto-submitted").is_some_and(|v| v.starts_with("auto-replied"))
            || h("x-autoreply").is_some_and(|v| v != "no")
            || h("x-autorespond").is_some()
            || h("x-autoreply-from").is_some()
            || h("x-mail-autoreply").is_some()
            || h("precedence").is_some_and(|v| v.contains("auto_reply"))
        {
            return true;
        }
        const SUBJECTS: &[&str] = &[
            "auto:",
            "automatic reply",
            "auto reply",
            "auto-reply",
            "autoreply",
            "auto response",
            "auto-response",
            "autoresponse",
            "out of office",
            "out of the office",
            "away from my",
            "on vacation",
            "vacation reply",
            "abwesenheit",
            "automatische antwort",
            "réponse automatique",
            "respuesta automática",
            "risposta automatica",
        ];
        SUBJECTS.iter().any(|s| subject.contains(s))
    }

    /// The original message's headers quoted in the text after the report.
    fn original_from_text(&mut self, rest: &str) {
        let mut o = Original::default();
        let mut from = None;
        for line in rest.lines().take(300) {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "return-path" if o.return_path.is_none() => {
                    o.return_path = text::addresses(value).into_iter().next()
                }
                "message-id" if o.message_id.is_none() => {
                    o.message_id = Some(value.trim_matches(['<', '>']).to_string())
                }
                "to" if o.to.is_none() => o.to = Some(value.to_string()),
                "from" if from.is_none() => from = Some(value.to_string()),
                "list-unsubscribe" if o.list_unsubscribe.is_none() => {
                    o.list_unsubscribe = Some(value.to_string())
                }
                _ => {}
            }
        }
        self.original_to = o.to.as_deref().map(text::addresses).unwrap_or_default();
        self.original_from = from.as_deref().map(text::addresses).unwrap_or_default();
        self.original_from.extend(o.return_path.iter().cloned());
        self.original = o;
    }
}

/// Whether the bounce was written by a mail filtering gateway, named in
/// its headers (X-Mailer, Received, McAfee's X-NAI-Header, SurfControl's
/// X-SEF-...). Such products answer "unknown user" for mail they filter.
fn is_filter_gateway(msg: &Message, part: &MessagePart) -> bool {
    const PRODUCTS: &[&str] = &[
        "mcafee",
        "m-filter",
        "mailfoundry",
        "mxlogic",
        "surfcontrol",
        "e-mail filter",
        "email filter",
    ];
    part.headers.iter().take(200).any(|h| {
        let name = h.name.as_str().to_ascii_lowercase();
        if name.starts_with("x-sef-") || name == "x-nai-header" {
            return true;
        }
        if !matches!(name.as_str(), "x-mailer" | "received" | "from") {
            return false;
        }
        msg.raw_message
            .get(h.offset_start as usize..h.offset_end as usize)
            .map(|b| String::from_utf8_lossy(b).to_ascii_lowercase())
            .is_some_and(|v| PRODUCTS.iter().any(|p| v.contains(p)))
    })
}

/// The text of an HTML part: tags dropped, block ends as line breaks,
/// the common entities decoded. Enough to find addresses and codes.
fn strip_html(html: &str) -> String {
    let mut out = String::with_capacity(html.len().min(MAX_TEXT));
    let mut in_tag = false;
    let mut tag = String::new();
    for c in html.chars().take(MAX_TEXT) {
        match c {
            '<' => {
                in_tag = true;
                tag.clear();
            }
            '>' if in_tag => {
                in_tag = false;
                let t = tag.trim_start_matches('/').to_ascii_lowercase();
                if ["br", "p", "div", "tr", "li", "table", "h1", "h2", "h3"]
                    .iter()
                    .any(|b| t.starts_with(b))
                {
                    out.push('\n');
                }
            }
            _ if in_tag => {
                if tag.len() < 16 {
                    tag.push(c);
                }
            }
            _ => out.push(c),
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", " ")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

/// What a free-text notice is read with.
struct Notice<'a> {
    lower_subject: &'a str,
    report_text: &'a str,
    from: &'a [String],
    ignore: &'a [String],
    gateway: bool,
    auto_replied: bool,
}

/// Where this message was delivered (Delivered-To, X-Original-To,
/// Envelope-To, To), each address once.
fn addressed_to(msg: &Message, root: &MessagePart) -> Vec<String> {
    let mut addressed_to = Vec::new();
    for name in ["delivered-to", "x-original-to", "envelope-to", "to"] {
        for v in headers(msg, root, name) {
            for a in text::addresses(&v) {
                if !addressed_to.contains(&a) {
                    addressed_to.push(a);
                }
            }
        }
    }
    addressed_to
}

/// Someone a complaint is about: no status, reason "feedback".
fn complainant(address: String) -> Recipient {
    Recipient {
        address,
        status: String::new(),
        reply_code: None,
        reason: "feedback".into(),
        hard: false,
        diagnostic: None,
        action: None,
    }
}

/// Amazon SES notifications sent by e-mail (SNS): JSON in the body. True
/// when it named someone.
fn read_ses(report: &mut Report, text: &str) -> bool {
    let Some(ses) = ses::read(text) else {
        return false;
    };
    report.kind = ses.kind;
    report.feedback_type = ses.feedback_type;
    report.recipients = ses
        .recipients
        .into_iter()
        .map(|(address, status, words, action)| {
            if report.kind == Kind::Complaint {
                complainant(address)
            } else {
                recipient(address, status.as_deref(), &words, action.as_deref())
            }
        })
        .collect();
    !report.recipients.is_empty()
}
