//! Stage 6: the rendered issue and one [`Recipient`] become the exact bytes
//! of that person's email.
//!
//! Everything that is the same for all recipients (templates, headers, the
//! DKIM keys) is prepared once in a [`Composer`]; per recipient there is only
//! substitution of merge fields, MIME encoding and, if configured, signing.

use std::borrow::Cow;
use std::path::Path;

use lettre::Message;
use lettre::message::header::{
    ContentDisposition, ContentId, ContentTransferEncoding, ContentType,
};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};
use sha2::{Digest, Sha256};

use crate::compose::Issue;
use crate::compose::merge::{Escape, Template};
use crate::config::Config;
use crate::deliver::audience::Recipient;
use crate::dkim::{SignError, Signer};
use crate::unsubscribe::Keys;
use crate::{InputError, clock};

mod skeleton;
mod wire;

/// A campaign to the list, or a test send to a few addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Campaign,
    /// `[TEST]` in the subject, and a Message-ID of its own each time, so
    /// a second test is not taken for a duplicate of the first.
    Test,
}

/// One person's email, ready for SMTP or the outbox.
pub struct Built {
    pub message_id: String,
    /// The envelope recipient.
    pub to: String,
    /// The envelope sender (MAIL FROM): `from`, the return path, or the
    /// return path with this recipient's VERP token.
    pub envelope_from: lettre::Address,
    pub bytes: Vec<u8>,
    /// The size of the HTML part as the recipient's mail program reads it:
    /// what Gmail measures against its clipping limit.
    pub html_bytes: usize,
    /// No byte of `bytes` is over 127 (the relay's 8BITMIME is not
    /// needed): known from how the message was made, or checked.
    pub ascii: bool,
}

/// Why one recipient's message cannot be built: recorded as that
/// recipient's failure in the journal, and the send goes on.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("not an address lettre accepts ({0})")]
    Address(lettre::address::AddressError),
    #[error("the return path cannot take a token ({0})")]
    ReturnPath(lettre::address::AddressError),
    #[error("the message cannot be built ({0})")]
    Message(lettre::error::Error),
    #[error(transparent)]
    Sign(#[from] SignError),
    /// lettre laid the message out in a way herald does not know (a bug).
    #[error("herald could not lay out the message; please report this as a bug")]
    Layout,
}

pub struct Composer {
    from: Mailbox,
    reply_to: Option<Mailbox>,
    subject: Template,
    html: Template,
    text: Template,
    /// The same templates with CRLF line ends, when the issue allows it
    /// (see [`wire::WireTemplates`]).
    wire: Option<wire::WireTemplates>,
    /// The message around the parts, laid out once (see `skeleton`).
    skeleton: Option<skeleton::Skeleton>,
    /// [`Composer::header_problem`]'s answer about the subject when the
    /// subject names no subscriber's field (the usual `{{ title }}`): the
    /// same for every row, so found once, not rendered again per row.
    same_subject_problem: Option<Option<String>>,
    title: String,
    list_id: String,
    /// `campaign:list:kind:sender`, the same for every recipient (see
    /// [`feedback_id`]).
    feedback_id: String,
    unsubscribe_url: String,
    unsubscribe_mailto: String,
    /// `return_path`, when bounces are to come back to herald.
    return_path: Option<lettre::Address>,
    keys: Keys,
    /// The campaign named in unsubscribe links (not in test sends).
    link_campaign: Option<String>,
    domain: String,
    /// `slug.hash`: names the campaign in Message-IDs.
    campaign: String,
    /// Hash of everything rendered once for all recipients.
    content_hash: String,
    mode: Mode,
    /// The DKIM keys, parsed once here: per recipient there is only the
    /// hashing and one signature per key.
    dkim: Option<Signer>,
    /// The PNGs that travel inside each message, base64-encoded once here
    /// and copied into every recipient's message as they are.
    inline_parts: Vec<SinglePart>,
}

/// The settings a send needs and the config lacks, all at once.
fn missing_settings(config: &Config, secret: &Option<Keys>) -> Vec<&'static str> {
    let mut missing = Vec::new();
    if config.from.is_none() {
        missing.push("`from` (the sender, e.g. \"OpenInfra Foundation <news@openinfra.org>\"; or HERALD_FROM)");
    }
    if config.unsubscribe_url.is_none() {
        missing.push(
            "`unsubscribe_url` (the page that unsubscribes people; or HERALD_UNSUBSCRIBE_URL)",
        );
    }
    if config.postal_address.is_none() {
        missing.push("`postal_address` (printed in the footer, required by anti-spam law; or HERALD_POSTAL_ADDRESS)");
    }
    if secret.is_none() {
        missing.push(
            "the environment variable HERALD_UNSUBSCRIBE_SECRET (a long random text that signs unsubscribe links; \
             or HERALD_UNSUBSCRIBE_SECRET_FILE naming a file that holds it)",
        );
    }
    missing
}

/// The unsubscribe keys from the environment (never from flags or files
/// in the repo); read where every secret is, in [`crate::config::secret`].
pub fn unsubscribe_keys() -> Result<Option<Keys>, InputError> {
    Keys::from_env()
}

impl Composer {
    /// Prepares everything recipients share. Fails, naming every missing
    /// setting, before anything is written or sent.
    pub fn new(
        issue: &Issue,
        config: &Config,
        config_path: &Path,
        keys: Option<Keys>,
        mode: Mode,
    ) -> Result<Composer, InputError> {
        let missing = missing_settings(config, &keys);
        if !missing.is_empty() {
            return Err(InputError::new(
                config_path,
                None,
                format!(
                    "herald cannot send this issue yet; these settings are missing:\n  - {}\nSee herald.example.yaml for each of them. {}",
                    missing.join("\n  - "),
                    config.read_from()
                ),
            ));
        }
        let (Some(from), Some(unsubscribe_url), Some(keys)) =
            (&config.from, &config.unsubscribe_url, keys)
        else {
            unreachable!("checked by missing_settings")
        };
        let from: Mailbox = from.clone();
        let reply_to: Option<Mailbox> = config.reply_to.clone();
        let domain = from.email.domain().to_string();
        let unsubscribe_mailto = config
            .unsubscribe_mailto
            .as_ref()
            .map_or_else(|| from.email.to_string(), |m| m.email.to_string());
        let list_name = issue.content.kicker.clone();
        let list_id = config
            .list_id
            .clone()
            .unwrap_or_else(|| format!("{list_name} <newsletter.{domain}>"));
        let feedback_id = feedback_id(&issue.post.campaign_id(), &list_id, mode, config, &domain);
        let subject_source = config
            .subject
            .clone()
            .unwrap_or_else(|| "{{ title }}".into());
        let mut hasher = Sha256::new();
        hasher.update(issue.rendered.html.as_bytes());
        hasher.update(issue.rendered.text.as_bytes());
        hasher.update(subject_source.as_bytes());
        let hasher_full = hasher.finalize();
        let hash = hex(&hasher_full[..4]);
        let dkim = match &config.dkim_domain {
            Some(domain) if !config.dkim_keys().is_empty() => {
                Some(Signer::new(domain, &config.dkim_keys())?)
            }
            _ => None,
        };
        let inline_parts = issue
            .rendered
            .images
            .iter()
            .filter_map(|img| {
                let cid = img.content_id()?;
                let body =
                    Body::new_with_encoding(img.png.clone(), ContentTransferEncoding::Base64)
                        .expect("base64 carries any bytes");
                Some(
                    SinglePart::builder()
                        .header(ContentType::parse("image/png").expect("a valid MIME type"))
                        .header(ContentDisposition::inline_with_name(&img.file_name))
                        .header(ContentId::from(format!("<{cid}>")))
                        .body(body),
                )
            })
            .collect();
        let (html, text) = (
            issue.rendered.html_template(),
            issue.rendered.text_template(),
        );
        let wire =
            wire::WireTemplates::new((&issue.rendered.text, &text), (&issue.rendered.html, &html));
        let mut composer = Composer {
            inline_parts,
            from,
            reply_to,
            subject: Template::compile(&subject_source, Escape::None),
            html,
            text,
            wire,
            title: issue.content.title.clone(),
            list_id,
            feedback_id,
            unsubscribe_url: unsubscribe_url.to_string(),
            unsubscribe_mailto,
            return_path: config.return_path.as_ref().map(|m| m.email.clone()),
            keys,
            link_campaign: (mode == Mode::Campaign).then(|| issue.post.campaign_id()),
            domain,
            campaign: format!("{}.{hash}", issue.post.slug()),
            content_hash: hex(&hasher_full),
            mode,
            dkim,
            skeleton: None,
            same_subject_problem: None,
        };
        composer.skeleton = composer.lay_out_skeleton();
        if composer.subject.fields().iter().all(|f| *f == "title") {
            let anyone = Recipient::bare(composer.from.email.as_ref());
            composer.same_subject_problem = Some(composer.subject_problem(&anyone));
        }
        Ok(composer)
    }

    /// Whether messages are DKIM-signed (each then costs a signature).
    pub fn signs(&self) -> bool {
        self.dkim.is_some()
    }

    /// A hash of the rendered issue and subject: if it changes, the post changed.
    pub fn content_hash(&self) -> &str {
        &self.content_hash
    }

    /// The token in a recipient's unsubscribe link: HMAC-SHA256 of the
    /// lower-cased address, keyed by the unsubscribe secret.
    pub fn token(&self, email: &str) -> String {
        self.keys.current().token(email)
    }

    /// The recipient's unsubscribe link; see [`crate::unsubscribe`] for
    /// what it holds and why.
    pub fn unsubscribe_link(&self, email: &str) -> String {
        self.link_with_token(email, &self.token(email))
    }

    fn link_with_token(&self, email: &str, token: &str) -> String {
        self.keys.link(
            &self.unsubscribe_url,
            email,
            token,
            self.link_campaign.as_deref(),
        )
    }

    /// The Message-ID for a recipient: the same for every retry of the same
    /// campaign, so a receiving server can tell a resend from a new message.
    /// The part naming the person is [`Keys::message_tag`]: a Message-ID
    /// is quoted in every bounce and forward, so it carries nothing of the
    /// unsubscribe token (issue 24).
    pub fn message_id(&self, email: &str) -> String {
        let person = self.keys.message_tag(email);
        match self.mode {
            Mode::Campaign => format!("<{}.{person}@{}>", self.campaign, self.domain),
            Mode::Test => {
                let now = clock::now().as_millisecond();
                format!("<test.{}.{person}.{now}@{}>", self.campaign, self.domain)
            }
        }
    }

    /// The size of the HTML part of `r`'s message, without building it.
    pub fn html_len(&self, r: &Recipient) -> usize {
        let unsubscribe = self.link_with_token(&r.email, STAND_IN_TOKEN);
        self.html.rendered_len(self.values(r, &unsubscribe))
    }

    /// Why `r`'s message cannot be sent as e-mail, if it cannot: a header
    /// line would be over RFC 5322's 998 bytes. lettre folds non-ASCII
    /// names and subjects (as encoded words) but writes ASCII ones on one
    /// line, and relays refuse such a message outright.
    pub fn header_problem(&self, r: &Recipient) -> Option<String> {
        const LIMIT: usize = 998;
        if let Some(name) = r.display_name().map(|n| header_safe(&n))
            && name.is_ascii()
            && "To: \"\" <>".len() + name.len() + r.email.len() > LIMIT
        {
            return Some(format!(
                "the name is {} characters long; an e-mail header holds at most {LIMIT}: shorten it in the list",
                name.len()
            ));
        }
        match &self.same_subject_problem {
            Some(problem) => problem.clone(),
            None => self.subject_problem(r),
        }
    }

    /// Why the subject made for `r` is too long for a header, if it is.
    fn subject_problem(&self, r: &Recipient) -> Option<String> {
        const LIMIT: usize = 998;
        let unsubscribe = self.link_with_token(&r.email, STAND_IN_TOKEN);
        let subject = header_safe(&self.subject.render(self.values(r, &unsubscribe)));
        if subject.is_ascii() && "Subject: [TEST] ".len() + subject.len() > LIMIT {
            return Some(format!(
                "the subject made for this row is {} characters long; an e-mail header holds at most {LIMIT}",
                subject.len()
            ));
        }
        None
    }

    /// The merge fields' values for `r`.
    fn values<'a>(
        &'a self,
        r: &'a Recipient,
        unsubscribe: &'a str,
    ) -> impl Fn(&str) -> Option<Cow<'a, str>> + Copy {
        move |name: &str| match name {
            "unsubscribe_url" => Some(Cow::Borrowed(unsubscribe)),
            "title" => Some(Cow::Borrowed(self.title.as_str())),
            other => r.field(other).map(Cow::Borrowed),
        }
    }

    /// Builds one recipient's message (with no VERP return path: for
    /// messages outside a campaign's journal).
    pub fn build(&self, r: &Recipient) -> Result<Built, BuildError> {
        self.build_numbered(r, None)
    }

    /// Builds the message of recipient number `seq` of the campaign: with
    /// `return_path` set, its envelope sender and unsubscribe mailto: carry
    /// a VERP token naming that recipient (see [`crate::unsubscribe`]).
    pub fn build_numbered(&self, r: &Recipient, seq: Option<i64>) -> Result<Built, BuildError> {
        let address: lettre::Address = r.email.parse().map_err(BuildError::Address)?;
        let (envelope_from, unsubscribe_mailto) = self.return_addresses(seq)?;
        let token = self.token(&r.email);
        let unsubscribe = self.link_with_token(&r.email, &token);
        let value = self.values(r, &unsubscribe);
        let mut subject = header_safe(&self.subject.render(value));
        if self.mode == Mode::Test {
            subject = format!("[TEST] {subject}");
        }
        let message_id = self.message_id(&r.email);
        let to = Mailbox::new(r.display_name().map(|n| header_safe(&n)), address);
        let list_unsubscribe =
            format!("<{unsubscribe}>, <mailto:{unsubscribe_mailto}?subject=unsubscribe>");
        // One reading of the clock for the Date header and DKIM's t=.
        let now = clock::now();
        let varying = skeleton::Varying {
            to: &to,
            subject: &subject,
            date: now.into(),
            message_id: &message_id,
            list_unsubscribe: &list_unsubscribe,
        };
        // Room at the front of the buffer for the DKIM fields, so that
        // signing does not copy the message (see `Signer::signed_in_room`).
        let room = self.dkim.as_ref().map_or(0, Signer::room);
        // The message around the parts, with two marks in their place
        // (see `wire`): the campaign's skeleton filled in, or lettre's
        // builder for a recipient the skeleton cannot take (see
        // `skeleton`). The parts go in place of the marks in their 7-bit
        // form: rendered straight into the message from the CRLF
        // templates where there are some, else rendered into this
        // thread's scratch buffers, converted and copied in.
        let skeleton = || match &self.skeleton {
            Some(s) if skeleton::plain_mailbox(to.name.as_deref(), &r.email) => {
                Ok(s.fill(&varying))
            }
            _ => {
                let (text_mark, html_mark) = wire::Parts::marks();
                self.headers(&varying)
                    .multipart(self.body(text_mark, html_mark, None))
                    .map_err(BuildError::Message)
                    .map(|m| m.formatted())
            }
        };
        let wired = match &self.wire {
            Some(wire) => wire
                .message(&skeleton()?, room, value)
                .map_err(|_| BuildError::Layout)?,
            None => None,
        };
        // The bytes, the size of the HTML part, whether the message is
        // ASCII when that is known, and the room left at the front.
        let (bytes, html_bytes, ascii, room) = match wired {
            Some(w) => (w.bytes, w.html_bytes, Some(w.ascii), room),
            None => wire::SCRATCH.with_borrow_mut(|scratch| {
                let html_bytes = scratch.render(&self.text, &self.html, value);
                // (With CRLF templates, what `message` refused is refused.)
                if self.wire.is_none() && scratch.seven_bit() {
                    let bytes = scratch
                        .parts()
                        .assemble(&skeleton()?, room)
                        .ok_or(BuildError::Layout)?;
                    return Ok((bytes, html_bytes, None, room));
                }
                // Non-ASCII or overlong lines: lettre picks the encoding.
                let (text, html) = scratch.rendered();
                let bytes = self
                    .headers(&varying)
                    .multipart(self.body(seven_bit_body(text), seven_bit_body(html), None))
                    .map_err(BuildError::Message)?
                    .formatted();
                Ok::<_, BuildError>((bytes, html_bytes, None, 0))
            })?,
        };
        // Signed as the final bytes, so every header herald wrote can be
        // covered, Content-Type and MIME-Version included (see `dkim`).
        let bytes = match &self.dkim {
            Some(dkim) => dkim.signed_in_room(bytes, room, now.as_second())?,
            None => bytes,
        };
        let ascii = match ascii {
            Some(ascii) => ascii && self.dkim.as_ref().is_none_or(Signer::is_ascii),
            None => bytes.is_ascii(),
        };
        Ok(Built {
            message_id,
            to: r.email.clone(),
            envelope_from,
            bytes,
            html_bytes,
            ascii,
        })
    }

    /// The message's headers: the campaign's, and `v`'s. The campaign's
    /// skeleton is made from these (see `skeleton`), so this is the one
    /// place that says which headers a message has and in what order.
    fn headers(&self, v: &skeleton::Varying<'_>) -> lettre::message::MessageBuilder {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(v.to.clone())
            .subject(v.subject.to_string())
            .date(v.date)
            .message_id(Some(v.message_id.to_string()));
        if let Some(reply_to) = &self.reply_to {
            builder = builder.reply_to(reply_to.clone());
        }
        let raw = |name: &'static str, value: String| {
            HeaderValue::new(HeaderName::new_from_ascii_str(name), value)
        };
        builder
            .raw_header(raw("List-Id", header_safe(&self.list_id)))
            .raw_header(raw("Feedback-ID", self.feedback_id.clone()))
            .raw_header(raw(
                skeleton::LIST_UNSUBSCRIBE,
                v.list_unsubscribe.to_string(),
            ))
            .raw_header(raw(
                "List-Unsubscribe-Post",
                "List-Unsubscribe=One-Click".into(),
            ))
            // Keeps out-of-office and vacation replies away: responders
            // (Exchange, Gmail, sieve vacation, procmail) do not answer
            // `Precedence: bulk`, as RFC 3834 section 2 asks of them. Not
            // `Auto-Submitted`: RFC 3834 defines it for messages made by an
            // automatic process or in reply to one, not for mail a person
            // writes to a list, and responders already skip bulk mail.
            .raw_header(raw("Precedence", "bulk".into()))
    }

    /// The campaign's skeleton: the message lettre formats around the
    /// marks with stand-ins for what differs per recipient, cut (see
    /// `skeleton`). `None` (every message from the builder) if lettre laid
    /// it out in a way the cutting does not know.
    fn lay_out_skeleton(&self) -> Option<skeleton::Skeleton> {
        let stand_ins = skeleton::StandIns::new();
        let to = Mailbox::new(None, self.from.email.clone());
        let varying = skeleton::Varying {
            to: &to,
            subject: "stand-in",
            date: std::time::SystemTime::UNIX_EPOCH,
            message_id: "<stand-in@example.org>",
            list_unsubscribe: "<https://example.org/>",
        };
        let (text_mark, html_mark) = wire::Parts::marks();
        let message = self
            .headers(&varying)
            .multipart(self.body(text_mark, html_mark, Some(&stand_ins)))
            .ok()?;
        skeleton::Skeleton::cut(&message.formatted(), &stand_ins)
    }

    /// `multipart/alternative`: the text, then the HTML (inside
    /// `multipart/related` with the inline images, if any). With
    /// `boundaries`, those; else random ones.
    fn body(&self, text: Body, html: Body, boundaries: Option<&skeleton::StandIns>) -> MultiPart {
        let html = SinglePart::builder()
            .header(ContentType::TEXT_HTML)
            .body(html);
        let mut alternative = MultiPart::alternative();
        if let Some(b) = boundaries {
            alternative = alternative.boundary(b.outer.as_str());
        }
        let alternative = alternative.singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(text),
        );
        if self.inline_parts.is_empty() {
            alternative.singlepart(html)
        } else {
            alternative.multipart(self.related(html, boundaries.map(|b| b.inner.as_str())))
        }
    }

    /// The envelope sender and the List-Unsubscribe mailto: address.
    fn return_addresses(&self, seq: Option<i64>) -> Result<(lettre::Address, String), BuildError> {
        let Some(rp) = &self.return_path else {
            return Ok((self.from.email.clone(), self.unsubscribe_mailto.clone()));
        };
        match (seq, &self.link_campaign) {
            (Some(seq), Some(campaign)) => {
                let token = self.keys.verp_token(campaign, seq);
                let (local, domain) = (rp.user(), rp.domain());
                let envelope = format!("{local}+{token}@{domain}")
                    .parse()
                    .map_err(BuildError::ReturnPath)?;
                Ok((envelope, format!("unsubscribe+{token}@{domain}")))
            }
            // A test send: bounces still go to the return path, unmatched.
            _ => Ok((rp.clone(), self.unsubscribe_mailto.clone())),
        }
    }

    /// `multipart/related`: the HTML, then the PNGs it shows as `cid:`
    /// (RFC 2387, with the `type` parameter it requires; lettre's own
    /// `MultiPart::related()` leaves it out).
    fn related(&self, html: SinglePart, boundary: Option<&str>) -> MultiPart {
        let boundary = boundary.map_or_else(skeleton::boundary, str::to_string);
        let kind = ContentType::parse(&format!(
            "multipart/related; boundary=\"{boundary}\"; type=\"text/html\""
        ))
        .expect("a valid MIME type");
        let mut related = MultiPart::builder().header(kind).singlepart(html);
        for part in &self.inline_parts {
            related = related.singlepart(part.clone());
        }
        related
    }
}

/// A part as 7-bit text when it can travel that way (herald's HTML is
/// ASCII with short lines, see [`crate::html::ascii`], and so is an English
/// text part); else lettre picks quoted-printable or base64. lettre on its
/// own quoted-printable encodes any line of 76 characters or more (a long
/// link in the text part is enough), which costs every recipient an
/// encoding pass and makes the message bigger for nothing: RFC 5322 allows
/// 998.
fn seven_bit_body(text: String) -> Body {
    let mut crlf = Vec::new();
    if wire::crlf_seven_bit(text.as_bytes(), &mut crlf) {
        Body::dangerous_pre_encoded(crlf, ContentTransferEncoding::SevenBit)
    } else {
        Body::new(text)
    }
}

/// Every token has the same length (base64url of a SHA-256, 43 characters):
/// this stand-in gives exact sizes without computing the HMAC, which
/// `build` computes once per recipient.
const STAND_IN_TOKEN: &str = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
const _: () = assert!(STAND_IN_TOKEN.len() == crate::unsubscribe::TOKEN_LEN);

/// The token in `email`'s unsubscribe link made with `secret` (for tests
/// and tools that check links).
pub fn unsubscribe_token(secret: &[u8], email: &str) -> String {
    crate::unsubscribe::Key::new(secret.to_vec()).token(email)
}

/// No control characters (CR and LF above all) from titles, names or
/// settings may reach a header: they would let input add headers.
fn header_safe(s: &str) -> String {
    // Most values (a name, the subject) are already clean: printable
    // ASCII, single spaces, none at either end. They are copied as they are.
    let b = s.as_bytes();
    let clean = b.iter().all(|c| (b' '..=b'~').contains(c))
        && !s.starts_with(' ')
        && !s.ends_with(' ')
        && memchr::memmem::find(b, b"  ").is_none();
    if clean {
        return s.to_string();
    }
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `Feedback-ID` Gmail's Postmaster Tools reports spam rates by:
/// `campaign:list:kind:sender`, where the campaign is the post's
/// (`slug@date`), the list the id inside `List-Id`'s angle brackets, the
/// kind `newsletter` (or `test`, so test sends are counted apart) and the
/// sender `feedback_id` or the From domain. Nothing names a recipient.
fn feedback_id(campaign: &str, list_id: &str, mode: Mode, config: &Config, domain: &str) -> String {
    let list = list_id
        .rsplit_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map_or(list_id, |(id, _)| id);
    let kind = match mode {
        Mode::Campaign => "newsletter",
        Mode::Test => "test",
    };
    let sender = config.feedback_id.as_deref().unwrap_or(domain);
    // A colon would shift the parts; spaces and line breaks end a header.
    let part = |s: &str| s.replace([':', ' ', '\t', '\r', '\n'], "-");
    [campaign, list, kind, sender].map(part).join(":")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_travel_seven_bit_only_when_they_can() {
        let b = seven_bit_body(format!("Hi\nsee https://example.org/{}\n", "x".repeat(200)));
        assert_eq!(b.encoding(), ContentTransferEncoding::SevenBit);
        assert_eq!(&b.as_ref()[..4], b"Hi\r\n", "lines end in CRLF");
        for awkward in [format!("{}\n", "x".repeat(1000)), "caf\u{e9}\n".to_string()] {
            let b = seven_bit_body(awkward.clone());
            assert_ne!(
                b.encoding(),
                ContentTransferEncoding::SevenBit,
                "{awkward:?}"
            );
        }
    }

    #[test]
    fn header_values_lose_line_breaks() {
        assert_eq!(
            header_safe("Hello\r\nBcc: victim@x.org"),
            "Hello Bcc: victim@x.org"
        );
        assert_eq!(header_safe(" A\tB "), "A B");
        for s in [
            "A  B",
            " A",
            "A ",
            "A\u{a0}\u{85}B",
            "Zo\u{eb}\u{2003}\u{2003}Ünal",
            "A\x7fB",
            "plain",
        ] {
            let slow: String = s
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect::<String>()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            assert_eq!(header_safe(s), slow, "{s:?}");
        }
    }

    #[test]
    fn tokens_are_keyed_and_case_blind() {
        let a = unsubscribe_token(b"secret", "Ana@Example.org");
        assert_eq!(a, unsubscribe_token(b"secret", "ana@example.org"));
        assert_ne!(a, unsubscribe_token(b"other", "ana@example.org"));
        assert_eq!(a.len(), 43);
        assert_eq!(a.len(), STAND_IN_TOKEN.len());
    }

    /// The campaign's skeleton, filled in for a recipient, is the message
    /// lettre's builder makes for them (given the same boundaries), for
    /// any name, address, subject, date and link the skeleton takes; with
    /// and without Reply-To and inline images, campaign and test. What it
    /// does not take, the builder still builds or refuses as before.
    #[test]
    fn a_filled_skeleton_is_what_lettre_builds() {
        use proptest::prelude::*;
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("static/img");
        std::fs::create_dir_all(&img).unwrap();
        std::fs::write(
            img.join("logo.svg"),
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20"><rect width="40" height="20" fill="#1b2a4a"/></svg>"##,
        )
        .unwrap();
        let post = dir.path().join("post.md");
        std::fs::write(
            &post,
            "---\ntitle: Spring Issue\nseo:\n  url: https://example.org/blog/spring\n---\n# News\n\n![Logo](/img/logo.svg)\n\nText.\n",
        )
        .unwrap();
        let mut composers = Vec::new();
        for (extra, mode) in [
            ("", Mode::Campaign),
            (
                "reply_to: \"Team <team@example.org>\"\nassets_dir: static\n",
                Mode::Test,
            ),
            ("assets_dir: static\n", Mode::Campaign),
        ] {
            let c = composer_for(&post, extra, mode);
            assert!(c.skeleton.is_some(), "{extra}");
            assert_eq!(c.inline_parts.is_empty(), !extra.contains("assets_dir"));
            composers.push(c);
        }
        // Names and addresses the skeleton takes, and ones it leaves to
        // the builder (quotes, backslashes, commas, non-ASCII).
        let name = proptest::option::of(prop_oneof![
            "[A-Za-z0-9 .'_\\-]{0,30}",
            "[A-Za-z0-9 .'_\\-\"\\\\,<>@()\u{e9}\u{a0}]{0,30}",
        ]);
        let email = prop_oneof![
            "[A-Za-z0-9+_\\-]{1,8}(\\.[A-Za-z0-9+_\\-]{1,8}){0,2}@[a-z0-9]{1,10}(\\.[a-z0-9\\-]{1,10}){0,2}",
            "[A-Za-z0-9.+_\\-\"]{1,20}@[a-z0-9.\\-]{1,20}",
        ];
        let subject = "[A-Za-z0-9 :,\u{e9}\u{4e2d}]{0,200}";
        let link = "[a-z0-9/?=&_.\\-]{0,300}";
        // A fixed seed: the count of cases the skeleton took is checked.
        let mut runner = proptest::test_runner::TestRunner::new_with_rng(
            ProptestConfig {
                cases: 1000,
                failure_persistence: None,
                ..ProptestConfig::default()
            },
            proptest::test_runner::TestRng::deterministic_rng(
                proptest::test_runner::RngAlgorithm::ChaCha,
            ),
        );
        let plain = std::cell::Cell::new(0);
        runner
            .run(
                &(name, email, subject, link, 0u64..4_000_000_000, 0..3usize),
                |(name, email, subject, link, secs, which)| {
                    let c = &composers[which];
                    let Ok(address) = email.parse::<lettre::Address>() else {
                        return Ok(());
                    };
                    let to = Mailbox::new(name.as_deref().map(header_safe), address);
                    let list_unsubscribe =
                        format!("<https://example.org/{link}>, <mailto:u@example.org>");
                    let v = skeleton::Varying {
                        to: &to,
                        subject: &header_safe(&subject),
                        date: std::time::SystemTime::UNIX_EPOCH
                            + std::time::Duration::from_secs(secs),
                        message_id: "<campaign.abc@example.org>",
                        list_unsubscribe: &list_unsubscribe,
                    };
                    let fixed = skeleton::StandIns::new();
                    let (text_mark, html_mark) = wire::Parts::marks();
                    let built = c
                        .headers(&v)
                        .multipart(c.body(text_mark, html_mark, Some(&fixed)));
                    if !skeleton::plain_mailbox(to.name.as_deref(), &email) {
                        return Ok(());
                    }
                    plain.set(plain.get() + 1);
                    let built = built.expect("the builder takes what the skeleton takes");
                    let filled = c.skeleton.as_ref().unwrap().fill_with(&v, &fixed);
                    let built = built.formatted();
                    prop_assert_eq!(
                        String::from_utf8_lossy(&filled),
                        String::from_utf8_lossy(&built)
                    );
                    Ok(())
                },
            )
            .unwrap();
        assert!(
            plain.get() > 150,
            "only {} cases took the skeleton",
            plain.get()
        );
        // Each message has boundaries of its own, and its parts where a
        // mail program looks for them.
        for c in &composers {
            let r = Recipient::bare("ana@example.org");
            let (a, b) = (c.build(&r).unwrap(), c.build(&r).unwrap());
            assert_ne!(a.bytes, b.bytes);
            let m = mail_parser::MessageParser::default()
                .parse(&a.bytes[..])
                .unwrap();
            assert_eq!(m.text_body_count(), 1);
            assert_eq!(m.html_body_count(), 1);
            assert!(m.body_text(0).unwrap().contains("Spring Issue"));
            assert_eq!(m.attachment_count(), c.inline_parts.len());
        }
        // The builder refuses this one (its To does not parse back), and
        // so does `build`: it takes the builder's way.
        let r = |email: &str| Recipient {
            line: 2,
            email: email.into(),
            columns: std::sync::Arc::new(vec!["email".into()]),
            values: vec![email.into()],
        };
        assert!(!skeleton::plain_mailbox(None, "\"q@r\"@example.org"));
        assert!(composers[0].build(&r("\"q@r\"@example.org")).is_err());
        assert!(composers[0].build(&r("ana@example.org")).is_ok());
    }

    /// The composer of `post` with the example settings and `extra` after
    /// them (written beside the post).
    fn composer_for(post: &Path, extra: &str, mode: Mode) -> Composer {
        let example =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/herald.example.yaml"))
                .unwrap();
        let path = post.with_file_name("herald.yaml");
        std::fs::write(&path, format!("{example}\n{extra}")).unwrap();
        let config = Config::load(Some(&path), &[]).unwrap();
        let issue = Issue::compose(post, &config.compose()).unwrap();
        let keys = Keys::new(b"message-test".to_vec(), vec![]);
        Composer::new(&issue, &config, &path, Some(keys), mode).unwrap()
    }

    /// A composer of a one-line post titled `title`, with the example
    /// settings and `extra` after them.
    fn composer_of(title: &str, extra: &str) -> Composer {
        let dir = tempfile::tempdir().unwrap();
        let post = dir.path().join("post.md");
        std::fs::write(
            &post,
            format!("---\ntitle: {title}\nseo:\n  url: https://example.org/blog/x\n---\nText.\n"),
        )
        .unwrap();
        composer_for(&post, extra, Mode::Campaign)
    }

    /// A header line over 998 bytes is found before anything is sent: a
    /// subject made from the title alone is the same for every row (found
    /// once), one made from a row's field only for that row, and a long
    /// name only for its row.
    #[test]
    fn rows_whose_headers_would_be_too_long_are_named() {
        let row = |name: &str, city: &str| {
            let columns =
                std::sync::Arc::new(vec!["email".into(), "first_name".into(), "city".into()]);
            Recipient {
                line: 2,
                email: "ana@example.org".into(),
                columns,
                values: vec!["ana@example.org".into(), name.into(), city.into()],
            }
        };
        let short = row("Ana", "Lisbon");
        let long_name = row(&"A".repeat(1000), "Lisbon");
        let long_city = row("Ana", &"L".repeat(1000));
        let plain = composer_of("Spring", "");
        assert!(plain.same_subject_problem.is_some());
        assert_eq!(plain.header_problem(&short), None);
        assert_eq!(plain.header_problem(&long_city), None);
        let why = plain
            .header_problem(&long_name)
            .expect("the name is too long");
        assert!(why.contains("the name is 1000 characters long"), "{why}");

        let titled = composer_of(&"T".repeat(1000), "");
        for r in [&short, &long_city] {
            let why = titled.header_problem(r).expect("the subject is too long");
            assert!(why.contains("subject made for this row"), "{why}");
        }

        let named = composer_of("Spring", "subject: \"{{ title }} in {{ city }}\"\n");
        assert!(named.same_subject_problem.is_none());
        assert_eq!(named.header_problem(&short), None);
        let why = named
            .header_problem(&long_city)
            .expect("this row's subject is too long");
        assert!(why.contains("subject made for this row"), "{why}");
    }
}
