//! A message's bytes with as few copies as a 60 KB message allows.
//!
//! lettre builds a message by formatting each part into a buffer that grows
//! by doubling, then the whole into another: a 60 KB newsletter was copied
//! about seven times per recipient. Here the two parts are rendered into
//! buffers kept from one message to the next, lettre formats the message
//! around two small marks standing in for the parts (once per campaign,
//! see `skeleton`, and the recipient's headers filled in), and the parts are
//! copied once, with CRLF line ends, into a buffer of the final size. The
//! bytes are the same as lettre's own (`tests` compares them).
//!
//! The parts are rendered with CRLF line ends from the start, where the
//! issue allows it ([`WireTemplates`]): converting each recipient's copy
//! line by line (a search and two copies per line, 750 lines in a 60 KB
//! message) cost more than rendering it. What is left per recipient is
//! one pass to check the lines are short enough for 7-bit text.

use std::borrow::Cow;
use std::cell::RefCell;

use lettre::message::Body;
use lettre::message::header::ContentTransferEncoding;

use crate::compose::merge::{Escape, Template};

thread_local! {
    /// The rendering buffers of the thread building messages: their
    /// capacity stays from one message to the next.
    pub(super) static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// The issue's text and HTML templates with CRLF line ends: rendered,
/// they give each recipient's parts in their 7-bit form at once.
pub(super) struct WireTemplates {
    text: Template,
    html: Template,
}

impl WireTemplates {
    /// The CRLF templates of the issue's `text` and `html` (sources, and
    /// the templates compiled from them), if rendering them gives the
    /// same bytes as rendering the originals and converting the line ends
    /// ([`crlf_seven_bit`]) for every recipient; else `None`, and the
    /// parts are converted after rendering.
    ///
    /// Merge values never hold a line break or carriage return (they
    /// become spaces, see `merge`), so only the templates' own text has
    /// line ends: a source without CR or NUL converts to the same bytes
    /// before rendering as after. Both are rendered once here, each field
    /// given a value naming it and then none (the defaults), to make sure
    /// the fields are read the same with the longer line ends.
    pub(super) fn new(
        (text_source, text): (&str, &Template),
        (html_source, html): (&str, &Template),
    ) -> Option<WireTemplates> {
        // A source that is not ASCII renders parts that never travel as
        // 7-bit text: each recipient's would be rendered to find so, then
        // again for lettre. Without CRLF templates it is rendered once.
        if !text_source.is_ascii() || !html_source.is_ascii() {
            return None;
        }
        let crlf = |s: &str| (!s.contains(['\r', '\0'])).then(|| s.replace('\n', "\r\n"));
        let wire = WireTemplates {
            text: Template::compile(&crlf(text_source)?, Escape::None),
            html: Template::compile(&crlf(html_source)?, Escape::Html),
        };
        let named = |name: &str| Some(Cow::Owned(format!("[{name}]")));
        let defaults = |_: &str| None::<Cow<'static, str>>;
        for (original, wire) in [(text, &wire.text), (html, &wire.html)] {
            if original.render(named).replace('\n', "\r\n") != wire.render(named)
                || original.render(defaults).replace('\n', "\r\n") != wire.render(defaults)
            {
                return None;
            }
        }
        Some(wire)
    }
}

/// One recipient's message as [`WireTemplates::message`] made it.
pub(super) struct Wired {
    /// `room` free bytes, then the message.
    pub bytes: Vec<u8>,
    /// The size of the HTML part as [`Scratch::render`] gives it.
    pub html_bytes: usize,
    /// No byte of the message is over 127.
    pub ascii: bool,
}

thread_local! {
    /// The size of the last message this thread built from the CRLF
    /// templates: the next one's buffer is made a little bigger at once,
    /// not grown (and copied) while its parts are rendered into it.
    static LAST_SIZE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl WireTemplates {
    /// The message: `room` bytes left free (for the DKIM fields), then
    /// `skeleton` (lettre's, formatted around [`Parts::marks`]) with the
    /// parts rendered in their 7-bit form in place of the marks, straight
    /// into the message's buffer (rendering them apart and copying them
    /// in was a copy of the whole message per recipient). `Ok(None)` when
    /// either part cannot travel as 7-bit text, exactly when
    /// [`Scratch::render_wire`] says so; an error when the marks are not
    /// there, text first, once each.
    pub(super) fn message<'v>(
        &self,
        skeleton: &[u8],
        room: usize,
        value: impl Fn(&str) -> Option<Cow<'v, str>> + Copy,
    ) -> Result<Option<Wired>, Layout> {
        let (text_at, html_at) = marks_in(skeleton).ok_or(Layout)?;
        let (after_text, after_html) = (text_at + TEXT_MARK.len(), html_at + HTML_MARK.len());
        // The skeleton is lettre's text; the marks are ASCII, so its
        // pieces between them are text too.
        let Ok(skeleton) = std::str::from_utf8(skeleton) else {
            return Ok(None);
        };
        let size = room + LAST_SIZE.get().max(skeleton.len()) + 4096;
        let mut out = Vec::with_capacity(size);
        out.resize(room, 0);
        out.extend_from_slice(&skeleton.as_bytes()[..text_at]);
        // NULs and text: always UTF-8 (a check of a few KB).
        let mut out = String::from_utf8(out).map_err(|_| Layout)?;
        let text_from = out.len();
        self.text.render_into(&mut out, value);
        if !wire_lines(&out.as_bytes()[text_from..]) {
            return Ok(None);
        }
        out.push_str(&skeleton[after_text..html_at]);
        let html_from = out.len();
        self.html.render_into(&mut out, value);
        let html = &out.as_bytes()[html_from..];
        if !wire_lines(html) {
            return Ok(None);
        }
        // Without its CRs (a CR is only ever before a line end).
        let html_bytes = html.len() - memchr::memchr_iter(b'\n', html).count();
        out.push_str(&skeleton[after_html..]);
        LAST_SIZE.set(out.len() - room);
        Ok(Some(Wired {
            bytes: out.into_bytes(),
            html_bytes,
            // The parts are ASCII (`wire_lines`); the rest is lettre's.
            ascii: skeleton.is_ascii(),
        }))
    }
}

/// lettre laid the message out in a way herald does not know.
#[derive(Debug)]
pub(super) struct Layout;

/// Where [`TEXT_MARK`] and [`HTML_MARK`] are in `skeleton`, if they are
/// there, text first, once each (no other NUL after them).
fn marks_in(skeleton: &[u8]) -> Option<(usize, usize)> {
    let text_at = memchr::memmem::find(skeleton, TEXT_MARK)?;
    let after_text = text_at + TEXT_MARK.len();
    let html_at = after_text + memchr::memmem::find(&skeleton[after_text..], HTML_MARK)?;
    let after_html = html_at + HTML_MARK.len();
    if memchr::memchr(0, &skeleton[after_html..]).is_some() {
        return None;
    }
    Some((text_at, html_at))
}

/// Where one recipient's text and HTML parts are rendered, then put in
/// their 7-bit form (CRLF line ends), or rendered in it.
#[derive(Default)]
pub(super) struct Scratch {
    text: String,
    html: String,
    text_wire: String,
    html_wire: String,
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

    /// Puts the rendered parts in their 7-bit form; false if either cannot
    /// travel so (see [`crlf_seven_bit`]).
    pub(super) fn seven_bit(&mut self) -> bool {
        let convert = |from: &str, to: &mut String| {
            let mut bytes = std::mem::take(to).into_bytes();
            let ok = crlf_seven_bit(from.as_bytes(), &mut bytes);
            // ASCII whenever it is not refused (and then not used).
            *to = String::from_utf8(bytes).unwrap_or_default();
            ok
        };
        convert(&self.text, &mut self.text_wire) && convert(&self.html, &mut self.html_wire)
    }

    /// Renders both parts in their 7-bit form from `wire`; returns the
    /// size of the HTML part as [`Scratch::render`] does (LF line ends),
    /// or `None` if either part cannot travel as 7-bit text, exactly when
    /// [`Scratch::seven_bit`] would say so. (What [`WireTemplates::message`]
    /// did in two steps with [`Parts::assemble`]; tests compare them.)
    #[cfg(test)]
    pub(super) fn render_wire<'v>(
        &mut self,
        wire: &WireTemplates,
        value: impl Fn(&str) -> Option<Cow<'v, str>> + Copy,
    ) -> Option<usize> {
        self.text_wire.clear();
        wire.text.render_into(&mut self.text_wire, value);
        self.html_wire.clear();
        wire.html.render_into(&mut self.html_wire, value);
        let html = self.html_wire.as_bytes();
        if !wire_lines(self.text_wire.as_bytes()) || !wire_lines(html) {
            return None;
        }
        // Without its CRs (a CR is only ever before a line end). memchr's
        // count, not a filter: LLVM left that one byte at a time, 280,000
        // instructions for 45 KB (callgrind), as much as all the rest.
        Some(html.len() - memchr::memchr_iter(b'\n', html).count())
    }

    /// The parts in their 7-bit form, as [`Scratch::seven_bit`] or
    /// [`Scratch::render_wire`] left them.
    pub(super) fn parts(&self) -> Parts<'_> {
        Parts {
            text: self.text_wire.as_bytes(),
            html: self.html_wire.as_bytes(),
        }
    }
}

/// Whether `crlf` (rendered from [`WireTemplates`]: every CR is the
/// start of a CRLF) can travel as 7-bit text: ASCII, no line of 990 bytes
/// or more, as [`crlf_seven_bit`] checks. A line is short enough when a
/// line end follows within 991 bytes of its start; the last line end in
/// that stretch ends every line that starts there, so the search goes a
/// stretch at a time, not a line at a time (60 searches in 60 KB, not 750).
fn wire_lines(crlf: &[u8]) -> bool {
    if !crlf.is_ascii() {
        return false;
    }
    let mut from = 0;
    loop {
        let stretch = &crlf[from..crlf.len().min(from + 991)];
        match memchr::memrchr(b'\n', stretch) {
            Some(at) => from += at + 1,
            // The last line, or one too long (the stretch ended before
            // the text did, with no line end).
            None => return crlf.len() - from < 990,
        }
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

    /// The message: `room` bytes left free (for the DKIM fields), then
    /// `skeleton` (lettre's, formatted around [`Parts::marks`]) with the
    /// parts in place of the marks. `None` if the marks are not there,
    /// text first, once each.
    pub(super) fn assemble(&self, skeleton: &[u8], room: usize) -> Option<Vec<u8>> {
        let (text_at, html_at) = marks_in(skeleton)?;
        let (after_text, after_html) = (text_at + TEXT_MARK.len(), html_at + HTML_MARK.len());
        let size = room + skeleton.len() - TEXT_MARK.len() - HTML_MARK.len()
            + self.text.len()
            + self.html.len();
        let mut out = Vec::with_capacity(size);
        out.resize(room, 0);
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
            if !scratch.seven_bit() {
                assert!(html.contains('\r'), "{html:?} travels as 7-bit text");
                continue;
            }
            let (text_mark, html_mark) = Parts::marks();
            let ours = scratch
                .parts()
                .assemble(&formatted(text_mark, html_mark), 0)
                .unwrap();
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
            assert!(!scratch(text, &html).seven_bit(), "{text:?} {html:?}");
        }
        let mut out = Vec::new();
        assert!(crlf_seven_bit(b"a\nb\n", &mut out));
        assert_eq!(out, b"a\r\nb\r\n");
        assert!(crlf_seven_bit("x".repeat(989).as_bytes(), &mut out));
    }

    #[test]
    fn a_skeleton_without_its_marks_is_refused() {
        let mut scratch = scratch("t", "h");
        assert!(scratch.seven_bit());
        let parts = scratch.parts();
        assert!(parts.assemble(b"no marks here", 0).is_none());
        let backwards = [HTML_MARK, TEXT_MARK].concat();
        assert!(parts.assemble(&backwards, 0).is_none());
    }

    /// The parts rendered from the CRLF templates against the parts
    /// rendered and then converted: the same bytes, the same HTML size,
    /// and 7-bit text in the same cases, whatever the values.
    #[test]
    fn crlf_templates_render_what_converting_made() {
        let long = "x".repeat(980);
        let sources = [
            (
                "Hi {{ first_name | default: \"there\" }},\nnews\n",
                "<p>{{ first_name }}</p>\n.a{}\n",
            ),
            ("{{first_name}}", "{{ first_name | default: \"a\nb\" }}\n\n"),
            (
                &*format!("{long}{{{{ first_name }}}}\nend"),
                "<p>{{ x }}</p>",
            ),
            ("{{ not a field }}\n{{", "}}\n{{ first_name\n}}"),
            ("", ""),
        ];
        let values = [
            "",
            "Ana",
            "Zo\u{eb}",
            "a\tb",
            "line\nbreak\r",
            "<b>&",
            &"y".repeat(20),
        ];
        for (text_source, html_source) in sources {
            let text = Template::compile(text_source, Escape::None);
            let html = Template::compile(html_source, Escape::Html);
            let wire = WireTemplates::new((text_source, &text), (html_source, &html))
                .expect("sources without CR or NUL have CRLF templates");
            for v in values {
                let value = move |name: &str| (name != "x").then_some(Cow::Borrowed(v));
                let mut old = Scratch::default();
                let size = old.render(&text, &html, value);
                let converted = old.seven_bit();
                let mut new = Scratch::default();
                let rendered = new.render_wire(&wire, value);
                assert_eq!(rendered.is_some(), converted, "{text_source:?} {v:?}");
                if let Some(new_size) = rendered {
                    assert_eq!(new_size, size);
                    assert_eq!(new.text_wire, old.text_wire);
                    assert_eq!(new.html_wire, old.html_wire);
                }
            }
        }
        let lf = Template::compile("a\rb", Escape::None);
        assert!(
            WireTemplates::new(("a\rb", &lf), ("", &Template::compile("", Escape::Html))).is_none()
        );
    }

    /// The message rendered straight into its buffer from the CRLF
    /// templates against the parts rendered apart and copied in: the same
    /// bytes after the room left free, the same HTML size, refused in the
    /// same cases; ASCII exactly when it is.
    #[test]
    fn messages_rendered_in_place_are_the_assembled_ones() {
        let sources = [
            (
                "Hi {{ first_name | default: \"there\" }},\nnews\n",
                "<p>{{ first_name }}</p>\n.a{}\n",
            ),
            ("", ""),
            (
                "{{ first_name }}",
                &*format!("{}{{{{ first_name }}}}", "x".repeat(985)),
            ),
        ];
        let (text_mark, html_mark) = Parts::marks();
        let skeleton = formatted(text_mark.clone(), html_mark.clone());
        let mut skeletons = vec![skeleton.clone()];
        // A header lettre left in UTF-8 (an address's local part).
        skeletons.push([&b"X-Name: Zo\xc3\xab\r\n"[..], &skeleton].concat());
        for (text_source, html_source) in sources {
            let text = Template::compile(text_source, Escape::None);
            let html = Template::compile(html_source, Escape::Html);
            let wire = WireTemplates::new((text_source, &text), (html_source, &html)).unwrap();
            for v in ["", "Ana", "Zo\u{eb}", "<b>&", "yyyy"] {
                let value = move |_: &str| Some(Cow::Borrowed(v));
                let mut old = Scratch::default();
                let size = old.render_wire(&wire, value);
                for skeleton in &skeletons {
                    for room in [0, 7] {
                        let new = wire.message(skeleton, room, value).unwrap();
                        assert_eq!(new.is_some(), size.is_some(), "{text_source:?} {v:?}");
                        let Some(new) = new else { continue };
                        let assembled = old.parts().assemble(skeleton, room).unwrap();
                        assert_eq!(new.bytes, assembled);
                        assert!(new.bytes[..room].iter().all(|&b| b == 0));
                        assert_eq!(Some(new.html_bytes), size);
                        assert_eq!(new.ascii, assembled.is_ascii());
                    }
                }
            }
        }
        assert!(wire_message_refuses(b"no marks here"));
        assert!(wire_message_refuses(&[HTML_MARK, TEXT_MARK].concat()));
        // A source that is not ASCII never travels as 7-bit text.
        let t = Template::compile("caf\u{e9}", Escape::None);
        assert!(WireTemplates::new(("caf\u{e9}", &t), ("", &t)).is_none());
    }

    fn wire_message_refuses(skeleton: &[u8]) -> bool {
        let t = Template::compile("t", Escape::None);
        let wire = WireTemplates::new(("t", &t), ("t", &t)).unwrap();
        wire.message(skeleton, 0, |_: &str| None::<Cow<'static, str>>)
            .is_err()
    }

    /// The stretch-wise line check says what converting says, at every
    /// length around the limit and wherever the long line is.
    #[test]
    fn wire_lines_finds_every_long_line() {
        let mut rng = fastrand::Rng::with_seed(29);
        let mut out = Vec::new();
        for _ in 0..3000 {
            let lines: Vec<usize> = (0..rng.usize(0..6))
                .map(|_| match rng.u8(0..3) {
                    0 => rng.usize(985..995),
                    1 => rng.usize(0..40),
                    _ => rng.usize(0..2000),
                })
                .collect();
            let text: String = lines
                .iter()
                .map(|&n| "x".repeat(n))
                .collect::<Vec<_>>()
                .join("\n");
            assert_eq!(
                wire_lines(text.replace('\n', "\r\n").as_bytes()),
                crlf_seven_bit(text.as_bytes(), &mut out),
                "{lines:?}"
            );
            let trailing = format!("{text}\n");
            assert_eq!(
                wire_lines(trailing.replace('\n', "\r\n").as_bytes()),
                crlf_seven_bit(trailing.as_bytes(), &mut out),
                "{lines:?} and a line end"
            );
        }
    }
}
