//! A message's bytes with as few copies as a 60 KB message allows.
//!
//! lettre builds a message by formatting each part into a buffer that grows
//! by doubling, then the whole into another: a 60 KB newsletter was copied
//! about seven times per recipient. Here the two parts are rendered into
//! buffers kept from one message to the next, lettre formats the message
//! around two small marks standing in for the parts, and the parts are
//! copied once, with CRLF line ends, into a buffer of the final size. The
//! bytes are the same as lettre's own (`tests` compares them).

use std::borrow::Cow;
use std::cell::RefCell;

use lettre::message::Body;
use lettre::message::header::ContentTransferEncoding;

use crate::compose::merge::Template;

thread_local! {
    /// The rendering buffers of the thread building messages: their
    /// capacity stays from one message to the next.
    pub(super) static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Where one recipient's text and HTML parts are rendered.
#[derive(Default)]
pub(super) struct Scratch {
    text: String,
    html: String,
}

impl Scratch {
    /// Renders both parts for the merge values `value`.
    pub(super) fn render<'v>(
        &mut self,
        text: &Template,
        html: &Template,
        value: impl Fn(&str) -> Option<Cow<'v, str>> + Copy,
    ) -> (&str, &str) {
        self.text.clear();
        text.render_into(&mut self.text, value);
        self.html.clear();
        html.render_into(&mut self.html, value);
        (&self.text, &self.html)
    }
}

/// What lettre formats in place of the parts. A NUL byte cannot be
/// anywhere else in a message: headers and merge values lose control
/// characters, and a part holding one does not travel as 7-bit text.
const TEXT_MARK: &[u8] = b"\0herald text part\0";
const HTML_MARK: &[u8] = b"\0herald html part\0";

/// The two parts, when both travel as 7-bit text, and their sizes with
/// CRLF line ends.
pub(super) struct Parts<'a> {
    text: &'a str,
    text_len: usize,
    html: &'a str,
    html_len: usize,
}

impl<'a> Parts<'a> {
    /// `None` unless both parts can travel as 7-bit text (see
    /// [`seven_bit_len`]).
    pub(super) fn seven_bit(text: &'a str, html: &'a str) -> Option<Parts<'a>> {
        Some(Parts {
            text_len: seven_bit_len(text.as_bytes())?,
            text,
            html_len: seven_bit_len(html.as_bytes())?,
            html,
        })
    }

    /// The bodies lettre formats in place of the text and HTML parts.
    pub(super) fn marks() -> (Body, Body) {
        let mark =
            |m: &[u8]| Body::dangerous_pre_encoded(m.to_vec(), ContentTransferEncoding::SevenBit);
        (mark(TEXT_MARK), mark(HTML_MARK))
    }

    /// The message: `skeleton` (lettre's, formatted around [`Parts::marks`])
    /// with the parts in place of the marks. `None` if the marks are not
    /// there, text first, once each.
    pub(super) fn assemble(&self, skeleton: &[u8]) -> Option<Vec<u8>> {
        let text_at = memchr::memmem::find(skeleton, TEXT_MARK)?;
        let after_text = text_at + TEXT_MARK.len();
        let html_at = after_text + memchr::memmem::find(&skeleton[after_text..], HTML_MARK)?;
        let after_html = html_at + HTML_MARK.len();
        if memchr::memchr(0, &skeleton[after_html..]).is_some() {
            return None;
        }
        let size =
            skeleton.len() - TEXT_MARK.len() - HTML_MARK.len() + self.text_len + self.html_len;
        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(&skeleton[..text_at]);
        push_crlf(&mut out, self.text.as_bytes());
        out.extend_from_slice(&skeleton[after_text..html_at]);
        push_crlf(&mut out, self.html.as_bytes());
        out.extend_from_slice(&skeleton[after_html..]);
        debug_assert_eq!(out.len(), size);
        Some(out)
    }
}

/// The size of `bytes` with CRLF line ends if they can travel as 7-bit
/// text: ASCII, no NUL or carriage return, no line of 990 bytes or more
/// (RFC 5322 allows 998 with the CRLF; lettre's own encoder would make
/// quoted-printable of any line of 76 or more).
pub(super) fn seven_bit_len(bytes: &[u8]) -> Option<usize> {
    // Merge values cannot bring control characters (see `merge`); a stray
    // carriage return would still make a bare CR, so leave it to lettre.
    if !bytes.is_ascii() || memchr::memchr2(0, b'\r', bytes).is_some() {
        return None;
    }
    let (mut line_start, mut lines) = (0, 0);
    for nl in memchr::memchr_iter(b'\n', bytes) {
        if nl - line_start >= 990 {
            return None;
        }
        line_start = nl + 1;
        lines += 1;
    }
    (bytes.len() - line_start < 990).then_some(bytes.len() + lines)
}

/// Appends `bytes` with each LF made CRLF.
pub(super) fn push_crlf(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut from = 0;
    for nl in memchr::memchr_iter(b'\n', bytes) {
        out.extend_from_slice(&bytes[from..nl]);
        out.extend_from_slice(b"\r\n");
        from = nl + 1;
    }
    out.extend_from_slice(&bytes[from..]);
}

#[cfg(test)]
mod tests {
    use lettre::Message;
    use lettre::message::header::ContentType;
    use lettre::message::{MultiPart, MultiPartKind, SinglePart};

    use super::*;

    /// A message as `Composer::build` lays it out, with a fixed boundary.
    fn formatted(text: Body, html: Body) -> Vec<u8> {
        let part = |kind, body| SinglePart::builder().header(kind).body(body);
        Message::builder()
            .from("News <news@example.org>".parse().unwrap())
            .to("Ana <ana@example.org>".parse().unwrap())
            .subject("June")
            .date(std::time::UNIX_EPOCH)
            .multipart(
                MultiPart::builder()
                    .kind(MultiPartKind::Alternative)
                    .boundary("b0undary")
                    .singlepart(part(ContentType::TEXT_PLAIN, text))
                    .singlepart(part(ContentType::TEXT_HTML, html)),
            )
            .unwrap()
            .formatted()
    }

    fn lettre_alone(text: &str, html: &str) -> Vec<u8> {
        let body = |t: &str| {
            let mut crlf = Vec::new();
            push_crlf(&mut crlf, t.as_bytes());
            Body::dangerous_pre_encoded(crlf, ContentTransferEncoding::SevenBit)
        };
        formatted(body(text), body(html))
    }

    #[test]
    fn parts_in_place_of_the_marks_make_lettres_bytes() {
        let long_line = format!("see https://example.org/{}\n", "x".repeat(900));
        for (text, html) in [
            ("Hello Ana,\nthe news.\n", "<p>Hello</p>\n.dm{color:red}\n"),
            ("", ""),
            ("no final newline", "\n\n"),
            (long_line.as_str(), "<p>\r</p>"),
        ] {
            let Some(parts) = Parts::seven_bit(text, html) else {
                assert!(html.contains('\r'), "{html:?} travels as 7-bit text");
                continue;
            };
            let (text_mark, html_mark) = Parts::marks();
            let ours = parts.assemble(&formatted(text_mark, html_mark)).unwrap();
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                String::from_utf8(lettre_alone(text, html)).unwrap()
            );
        }
    }

    #[test]
    fn what_is_not_7_bit_text_is_left_to_lettre() {
        assert!(Parts::seven_bit("caf\u{e9}", "<p></p>").is_none());
        assert!(Parts::seven_bit("a\0b", "<p></p>").is_none());
        assert!(Parts::seven_bit("ok", &"x".repeat(990)).is_none());
        assert_eq!(seven_bit_len(b"a\nb\n"), Some(6));
        assert_eq!(seven_bit_len("x".repeat(989).as_bytes()), Some(989));
    }

    #[test]
    fn a_skeleton_without_its_marks_is_refused() {
        let parts = Parts::seven_bit("t", "h").unwrap();
        assert!(parts.assemble(b"no marks here").is_none());
        let backwards = [HTML_MARK, TEXT_MARK].concat();
        assert!(parts.assemble(&backwards).is_none());
    }
}
