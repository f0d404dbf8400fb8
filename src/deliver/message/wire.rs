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

/// Where one recipient's text and HTML parts are rendered, then put in
/// their 7-bit form (CRLF line ends).
#[derive(Default)]
pub(super) struct Scratch {
    text: String,
    html: String,
    text_wire: Vec<u8>,
    html_wire: Vec<u8>,
}

impl Scratch {
    /// Renders both parts for the merge values `value`; returns the size
    /// of the HTML part.
    pub(super) fn render<'v>(
        &mut self,
        text: &Template,
        html: &Template,
        value: impl Fn(&str) -> Option<Cow<'v, str>> + Copy,
    ) -> usize {
        self.text.clear();
        text.render_into(&mut self.text, value);
        self.html.clear();
        html.render_into(&mut self.html, value);
        self.html.len()
    }

    /// Copies of the rendered parts, for lettre to encode.
    pub(super) fn rendered(&self) -> (String, String) {
        (self.text.clone(), self.html.clone())
    }

    /// The rendered parts in their 7-bit form, if both can travel so (see
    /// [`crlf_seven_bit`]).
    pub(super) fn seven_bit(&mut self) -> Option<Parts<'_>> {
        let text = crlf_seven_bit(self.text.as_bytes(), &mut self.text_wire);
        let html = text && crlf_seven_bit(self.html.as_bytes(), &mut self.html_wire);
        html.then_some(Parts {
            text: &self.text_wire,
            html: &self.html_wire,
        })
    }
}

/// What lettre formats in place of the parts. A NUL byte cannot be
/// anywhere else in a message: headers and merge values lose control
/// characters, and a part holding one does not travel as 7-bit text.
const TEXT_MARK: &[u8] = b"\0herald text part\0";
const HTML_MARK: &[u8] = b"\0herald html part\0";

/// The two parts in their 7-bit form.
pub(super) struct Parts<'a> {
    text: &'a [u8],
    html: &'a [u8],
}

impl Parts<'_> {
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
            skeleton.len() - TEXT_MARK.len() - HTML_MARK.len() + self.text.len() + self.html.len();
        let mut out = Vec::with_capacity(size);
        for piece in [
            &skeleton[..text_at],
            self.text,
            &skeleton[after_text..html_at],
            self.html,
            &skeleton[after_html..],
        ] {
            out.extend_from_slice(piece);
        }
        Some(out)
    }
}

/// Puts `bytes` in `out` with each LF made CRLF, if they can travel as
/// 7-bit text: ASCII, no NUL or carriage return, no line of 990 bytes or
/// more (RFC 5322 allows 998 with the CRLF; lettre's own encoder would
/// make quoted-printable of any line of 76 or more). One pass over the
/// lines, checking as it copies.
pub(super) fn crlf_seven_bit(bytes: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    if !bytes.is_ascii() {
        return false;
    }
    out.reserve(bytes.len() + bytes.len() / 32);
    let mut from = 0;
    // Merge values cannot bring control characters (see `merge`); a stray
    // carriage return would still make a bare CR, so leave it to lettre.
    for at in memchr::memchr3_iter(b'\n', b'\r', 0, bytes) {
        if bytes[at] != b'\n' || at - from >= 990 {
            return false;
        }
        out.extend_from_slice(&bytes[from..at]);
        out.extend_from_slice(b"\r\n");
        from = at + 1;
    }
    out.extend_from_slice(&bytes[from..]);
    bytes.len() - from < 990
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

    /// lettre's own bytes for the two parts, each made CRLF by hand.
    fn lettre_alone(text: &str, html: &str) -> Vec<u8> {
        let body = |t: &str| {
            let crlf = t.replace('\n', "\r\n");
            Body::dangerous_pre_encoded(crlf.into_bytes(), ContentTransferEncoding::SevenBit)
        };
        formatted(body(text), body(html))
    }

    fn scratch(text: &str, html: &str) -> Scratch {
        Scratch {
            text: text.into(),
            html: html.into(),
            ..Scratch::default()
        }
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
            let mut scratch = scratch(text, html);
            let Some(parts) = scratch.seven_bit() else {
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
        for (text, html) in [
            ("caf\u{e9}", "<p></p>".to_string()),
            ("a\0b", "<p></p>".into()),
            ("ok", "x".repeat(990)),
            ("ok", format!("{}\nx", "x".repeat(990))),
            ("ok", "bare\rCR".into()),
        ] {
            assert!(
                scratch(text, &html).seven_bit().is_none(),
                "{text:?} {html:?}"
            );
        }
        let mut out = Vec::new();
        assert!(crlf_seven_bit(b"a\nb\n", &mut out));
        assert_eq!(out, b"a\r\nb\r\n");
        assert!(crlf_seven_bit("x".repeat(989).as_bytes(), &mut out));
    }

    #[test]
    fn a_skeleton_without_its_marks_is_refused() {
        let mut scratch = scratch("t", "h");
        let parts = scratch.seven_bit().unwrap();
        assert!(parts.assemble(b"no marks here").is_none());
        let backwards = [HTML_MARK, TEXT_MARK].concat();
        assert!(parts.assemble(&backwards).is_none());
    }
}
