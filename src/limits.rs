//! Bounds on what herald reads, so that no input can crash it or make it
//! run away (issue 10). A leaf module: each check is a cheap scan of the
//! text *before* it reaches a parser (yaml_serde, the content builder,
//! mrml) that could overflow its stack or take quadratic time on it, and
//! each failure is an [`InputError`] naming the file, the line and the fix.
//!
//! The limits are far above anything a real post or config needs (the
//! deepest corpus post nests 5 deep; the largest front matter is a few KB),
//! so only a broken or hostile file ever meets them.

use std::io::Read;
use std::path::Path;

use crate::InputError;

/// Lists, quotes, emphasis, links and raw HTML elements inside each other.
/// Real posts nest at most a handful deep; the content builder and mrml
/// recurse once per level and overflow the stack some thousands deep.
pub const MAX_NESTING: usize = 64;
/// YAML collections inside each other (front matter and herald.yaml).
/// yaml_serde takes quadratic time on deep nesting before its own
/// recursion limit (19 s for 100,000 `[`).
pub const MAX_YAML_DEPTH: usize = 32;
/// Front matter is a few dozen settings.
pub const MAX_FRONT_MATTER_BYTES: usize = 64 * 1024;
/// herald.example.yaml, every setting with its explanation, is 5 KB.
pub const MAX_CONFIG_BYTES: usize = 256 * 1024;
/// A post: the largest annual report is 86 KB; Gmail clips an email's
/// HTML at 102 KB anyway. Generous: the issue's 4,000-deep indented list
/// is 16 MB, and it must get its nesting error, not this one.
pub const MAX_POST_BYTES: usize = 64 * 1024 * 1024;
/// A 4096-bit RSA key in PEM is about 3.3 KB.
pub const MAX_KEY_BYTES: u64 = 64 * 1024;

/// 1-based line of byte `offset` in `text`, counted from `first_line`.
pub fn line_at(text: &str, offset: usize, first_line: usize) -> usize {
    let offset = offset.min(text.len());
    first_line + memchr::memchr_iter(b'\n', &text.as_bytes()[..offset]).count()
}

/// Control characters other than tab, line feed and carriage return (NUL,
/// escape, form feed, DEL, the C1 range), and U+FFFE and U+FFFF, which are
/// not characters at all (the fuzzer found that mrml's XML parser refuses
/// them, and herald reported its own MJML as a bug).
pub fn not_text(c: char) -> bool {
    (c.is_control() && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{fffe}' | '\u{ffff}')
}

/// Refuses the characters [`not_text`] finds. They are invisible
/// in an editor, cannot be written in MJML or a header, and come only from
/// a damaged file or a bad copy and paste; naming the line lets the user
/// find and delete them.
/// The first character [`not_text`] finds in `text`, and its byte offset.
///
/// A scan of bytes, not chars: every such character starts with a byte
/// below 0x20, 0x7F, 0xC2 (the C1 range, U+0080-U+009F) or 0xEF (U+FFFE,
/// U+FFFF), so only there is a char decoded. Every post and every email
/// goes through this; decoding every char was a tenth of reading a post.
pub fn find_not_text(text: &str) -> Option<(usize, char)> {
    let bytes = text.as_bytes();
    let mut i = 0;
    loop {
        // 32 bytes at a time past text that cannot hold one: a test with
        // no branch per byte, which the compiler makes vector instructions
        // of (about one instruction a byte; eight bytes at a time in a u64
        // took four and a half).
        while let Some(chunk) = bytes.get(i..i + 32) {
            // Tabs and line breaks are text: stopping at each line's end
            // made the scan of an email's MJML cost three times as much.
            let maybe_lead = chunk.iter().fold(0u8, |any, &b| {
                any | u8::from(b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r'))
                    | u8::from(b == 0x7f)
                    | u8::from(b == 0xc2)
                    | u8::from(b == 0xef)
            });
            if maybe_lead != 0 {
                break;
            }
            i += 32;
        }
        let n = bytes[i..].iter().position(|&b| {
            (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || b == 0x7f || b == 0xc2 || b == 0xef
        })?;
        i += n;
        // `i` is a char boundary: these bytes never continue a char.
        if let Some(c) = text[i..].chars().next().filter(|&c| not_text(c)) {
            return Some((i, c));
        }
        i += 1;
    }
}

pub fn check_control(path: &Path, text: &str, first_line: usize) -> Result<(), InputError> {
    let Some((offset, c)) = find_not_text(text) else {
        return Ok(());
    };
    let line = line_at(text, offset, first_line);
    let column = text[..offset]
        .rfind('\n')
        .map_or(offset, |nl| offset - nl - 1)
        + 1;
    Err(InputError::new(
        path,
        Some(line),
        format!(
            "an invisible character that is not text (U+{:04X}) is in this line, at byte {column}. \
             It usually comes from a damaged file or a copy and paste; delete it (retype the \
             text around it) and save the file again.",
            c as u32
        ),
    ))
}

/// Refuses YAML (front matter, `what` = "front matter"; a config file,
/// "config file") over `max_bytes`, or with collections nested deeper than
/// [`MAX_YAML_DEPTH`], before yaml_serde reads it. The depth is an upper
/// bound from a scan of indentation, `- ` markers and flow brackets outside
/// quotes; real settings are two or three deep.
pub fn check_yaml(
    path: &Path,
    text: &str,
    first_line: usize,
    what: &str,
    max_bytes: usize,
) -> Result<(), InputError> {
    if text.len() > max_bytes {
        return Err(InputError::new(
            path,
            Some(first_line),
            format!(
                "the {what} is {} KB; herald reads at most {} KB of it. Is this the right file? \
                 Settings take a few lines each.",
                text.len() / 1024,
                max_bytes / 1024
            ),
        ));
    }
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    for (i, line) in text.split('\n').enumerate() {
        let line_no = first_line + i;
        let too_deep = |depth: usize| {
            InputError::new(
                path,
                Some(line_no),
                format!(
                    "the {what} is nested {depth} deep here; herald allows {MAX_YAML_DEPTH}. \
                     Settings are `name: value` lines, at most a few levels deep: check the \
                     indentation and the brackets `[` `{{` on this line."
                ),
            )
        };
        let content = line.trim_start_matches(' ');
        if flow == 0 && !content.is_empty() && !content.starts_with('#') {
            // Block structure: each deeper indentation, and each `- ` on
            // the same line (`- - - x`), is one level.
            let mut col = line.len() - content.len();
            let mut rest = content;
            loop {
                while indents.last().is_some_and(|&top| top >= col) {
                    indents.pop();
                }
                indents.push(col);
                if indents.len() > MAX_YAML_DEPTH {
                    return Err(too_deep(indents.len()));
                }
                let Some(after) = rest.strip_prefix("- ").or_else(|| rest.strip_prefix("? "))
                else {
                    break;
                };
                let trimmed = after.trim_start_matches(' ');
                col += rest.len() - trimmed.len();
                rest = trimmed;
            }
        }
        let mut quote: Option<char> = None;
        for c in line.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') => quote = Some(c),
                (None, '#') if flow == 0 => break,
                (None, '[' | '{') => {
                    flow += 1;
                    if indents.len() + flow > MAX_YAML_DEPTH {
                        return Err(too_deep(indents.len() + flow));
                    }
                }
                (None, ']' | '}') => flow = flow.saturating_sub(1),
                _ => {}
            }
        }
    }
    Ok(())
}

// Every file herald reads goes through [`read_capped`] (or, for a file it
// opens itself, [`read_bounded`]), with one of the caps below; the README
// ("Size caps") lists them all. A file over its cap is refused naming the
// file and what to do, never read on: `/dev/zero`, a FIFO or a log file
// named by mistake would otherwise be read until memory ran out.

/// A CA certificate file (`smtp_ca_file`, `database_ca_file`,
/// `--imap-ca-file`): a bundle of every public authority is about 200 KB.
pub const MAX_CA_BYTES: u64 = 1024 * 1024;
/// A returned message (Maildir file, mbox message, IMAP message): a bounce
/// is a few KB, and one returning a large newsletter a few MB. A bigger one
/// is set aside for a person, never read into memory.
pub const MAX_MESSAGE_BYTES: u64 = 8 * 1024 * 1024;
/// An SVG a post shows, and each picture (PNG, JPEG, GIF, WebP, SVG) an SVG
/// names: the largest corpus logo is under 100 KB, and whatever is read is
/// drawn into every message (Gmail refuses messages over 25 MB).
pub const MAX_IMAGE_BYTES: u64 = 16 * 1024 * 1024;
/// `linkcheck.json`, the links that worked in the last day (about 100
/// bytes each): 4 MB is some 40,000 links.
pub const MAX_LINKCHECK_CACHE_BYTES: u64 = 4 * 1024 * 1024;
/// `.herald-outbox`, the marker of a dry run's folder: one campaign id.
pub const MAX_OUTBOX_MARKER_BYTES: u64 = 4 * 1024;
/// The kernel's boot id (`/proc/sys/kernel/random/boot_id`), 37 bytes; a
/// file in /proc gives no size to check beforehand.
pub const MAX_BOOT_ID_BYTES: u64 = 4 * 1024;
/// `herald preview --watch` compares files up to this size by content
/// too (a bigger one by time and size only): posts and logos are far
/// smaller, and a file that grows while it is read is not read on.
pub const MAX_WATCH_HASH_BYTES: u64 = 4 * 1024 * 1024;
/// One line of a subscriber list, a suppression list or a file given to
/// `herald suppress import`: a file with no line ends (`/dev/zero`) grew
/// one line until memory ran out. A real line is under 1 KB.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// The first `max` bytes of a file (all of it when it is shorter).
pub fn read_at_most(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(max)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// All of `r` when it holds at most `max` bytes, else `None`; never more
/// than `max + 1` bytes in memory. For a file herald opens itself (with
/// flags of its own, as a Maildir message is).
pub fn read_bounded(r: impl Read, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    r.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= max).then_some(bytes))
}

/// `max` bytes for people: "64 KB", "8 MB".
pub fn size_words(max: u64) -> String {
    if max >= 1024 * 1024 {
        format!("{} MB", max / (1024 * 1024))
    } else {
        format!("{} KB", max.div_ceil(1024))
    }
}

/// The one reader for a whole file herald takes as input (a key, a
/// certificate, a secret): at most `max` bytes, and a file over that is
/// refused naming the file and `what` it should be, never its content
/// (`/dev/zero` or a log file named by mistake would otherwise be read
/// until memory runs out: `--imap-ca-file /dev/zero` grew to 1 GB).
pub fn read_capped(path: &Path, max: u64, what: &str) -> Result<Vec<u8>, InputError> {
    read_capped_or(
        path,
        max,
        what,
        "such a file holds a few lines of text. Check the path.",
    )
}

/// [`read_capped`], with `fix` (what such a file holds, what to do) in the
/// error for a file over `max`.
pub fn read_capped_or(path: &Path, max: u64, what: &str, fix: &str) -> Result<Vec<u8>, InputError> {
    let file = std::fs::File::open(path)
        .map_err(|e| InputError::new(path, None, format!("cannot read the {what} ({e})")))?;
    match read_bounded(file, max) {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Err(InputError::new(
            path,
            None,
            format!(
                "this file is larger than {}, so it is not a {what}: {fix}",
                size_words(max)
            ),
        )),
        Err(e) => Err(InputError::new(
            path,
            None,
            format!("cannot read the {what} ({e})"),
        )),
    }
}

/// Reads a file that holds a key or a certificate, at most
/// [`MAX_KEY_BYTES`], through [`read_capped`].
pub fn read_key_file(path: &Path, what: &str) -> Result<Vec<u8>, InputError> {
    read_capped(path, MAX_KEY_BYTES, what)
}

/// A reader that fails once a line (bytes between two line ends) grows
/// past `max`: streamed lists take the memory of one line at most, and a
/// file with no line ends is refused instead of filling the memory.
pub struct LineCapped<R> {
    inner: R,
    max: usize,
    line: usize,
}

impl<R> LineCapped<R> {
    pub fn new(inner: R, max: usize) -> Self {
        LineCapped {
            inner,
            max,
            line: 0,
        }
    }
}

impl<R: Read> Read for LineCapped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            self.line = if b == b'\n' || b == b'\r' {
                0
            } else {
                self.line + 1
            };
            if self.line > self.max {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "a line is longer than {}: is this the right file?",
                        size_words(self.max as u64)
                    ),
                ));
            }
        }
        Ok(n)
    }
}

/// The deepest nesting of the Markdown `body` (lists, quotes, emphasis,
/// links, and the raw HTML elements in it), and the byte offset where it
/// first goes over [`MAX_NESTING`] (else where it is deepest): the line to
/// look at is where it starts going wrong. pulldown-cmark's events nest properly and its parser does not
/// recurse; raw HTML is counted per tag, void elements and tags whose end
/// is optional (`<p>`, `<li>`...) left out so sloppy HTML is not counted
/// as deep.
pub fn nesting(body: &str) -> (usize, usize) {
    let mut depth = Nesting::default();
    for (event, range) in pulldown_cmark::Parser::new_ext(body, MARKDOWN).into_offset_iter() {
        depth.event(&event, range.start);
    }
    (depth.deepest, depth.at)
}

/// The Markdown extensions posts are read with, here and by the content
/// builder: both must see the same events.
pub const MARKDOWN: pulldown_cmark::Options = pulldown_cmark::Options::ENABLE_TABLES
    .union(pulldown_cmark::Options::ENABLE_STRIKETHROUGH)
    .union(pulldown_cmark::Options::ENABLE_TASKLISTS);

/// [`nesting`] one event at a time, for a reader that parses the Markdown
/// anyway: the content builder measures it in its own pass, and stops as
/// soon as [`Nesting::too_deep`] (a second parse only to measure it was a
/// fifteenth of `herald preview`).
#[derive(Debug, Default)]
pub struct Nesting {
    md: usize,
    html: usize,
    deepest: usize,
    at: usize,
}

impl Nesting {
    /// Counts `event`, which starts at byte `offset` of the body.
    pub fn event(&mut self, event: &pulldown_cmark::Event<'_>, offset: usize) {
        use pulldown_cmark::Event;
        match event {
            Event::Start(_) => self.md += 1,
            Event::End(_) => self.md = self.md.saturating_sub(1),
            Event::Html(s) | Event::InlineHtml(s) => {
                for token in html5gum::Tokenizer::new(&**s).flatten() {
                    match token {
                        html5gum::Token::StartTag(t) if !t.self_closing && !unended(&t.name) => {
                            self.html += 1;
                            // A whole HTML block is one event: measure inside it.
                            self.deeper(offset);
                        }
                        html5gum::Token::EndTag(t) if !unended(&t.name) => {
                            self.html = self.html.saturating_sub(1)
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        self.deeper(offset);
    }

    /// Nested deeper than [`MAX_NESTING`] somewhere so far.
    pub fn too_deep(&self) -> bool {
        self.deepest > MAX_NESTING
    }

    fn deeper(&mut self, offset: usize) {
        let depth = self.md + self.html;
        if depth > self.deepest {
            if self.deepest <= MAX_NESTING {
                self.at = offset;
            }
            self.deepest = depth;
        }
    }
}

/// Void elements and elements whose end tag may be left out.
fn unended(name: &[u8]) -> bool {
    const NAMES: &[&str] = &[
        "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr", "p", "li", "dt", "dd", "option", "tr", "td", "th", "tbody", "thead",
        "tfoot", "colgroup", "rt", "rp", "optgroup", "html", "head", "body",
    ];
    NAMES
        .iter()
        .any(|n| n.as_bytes().eq_ignore_ascii_case(name))
}

/// Refuses a body nested deeper than [`MAX_NESTING`], with the line.
pub fn check_nesting(path: &Path, body: &str, first_line: usize) -> Result<(), InputError> {
    let (depth, at) = nesting(body);
    if depth <= MAX_NESTING {
        return Ok(());
    }
    Err(nesting_error(path, body, first_line, depth, at))
}

/// The error for a body [`Nesting`] found too deep: measured whole again
/// by [`nesting`], for its deepest level and where it first went too deep.
pub fn too_deep(path: &Path, body: &str, first_line: usize) -> InputError {
    let (depth, at) = nesting(body);
    nesting_error(path, body, first_line, depth, at)
}

fn nesting_error(
    path: &Path,
    body: &str,
    first_line: usize,
    depth: usize,
    at: usize,
) -> InputError {
    InputError::new(
        path,
        Some(line_at(body, at, first_line)),
        format!(
            "the text here is nested {depth} deep (lists, quotes `>`, emphasis, links or HTML \
             tags inside each other); herald allows {MAX_NESTING}. No email needs that many \
             levels: check for unclosed HTML tags or repeated `>` and `-` at the start of the \
             lines."
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("post.md")
    }

    #[test]
    fn control_characters_are_refused_with_their_line() {
        let e = check_control(p(), "a\n\tb\r\nc\0d\n", 1).unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("U+0000"), "{e}");
        assert!(check_control(p(), "tab\tcr\r\nlf\n", 1).is_ok());
        let e = check_control(p(), "ok\nx \u{ffff} y\n", 1).unwrap_err();
        assert_eq!(e.line, Some(2));
    }

    #[test]
    fn the_byte_scan_finds_what_the_char_test_finds() {
        // Every character the scan's lead bytes can start, and their
        // neighbours, in text with other multi-byte characters around.
        let mut all = String::from("caf\u{e9} \u{a0}\u{2019}\u{feff}\u{fffd}\u{1f600}");
        for c in [
            '\0', '\u{1}', '\u{1f}', '\u{7f}', '\u{80}', '\u{9f}', '\u{a0}', '\u{fffe}', '\u{ffff}',
        ] {
            all.push(c);
        }
        // ASCII before it, so each character falls at every place of the
        // scan's 32-byte blocks, and on both sides of a block's end.
        for pad in 0..70 {
            let padded = format!("{}{all}", "x".repeat(pad));
            for cut in 0..padded.len() {
                let Some(text) = padded.get(cut..) else {
                    continue;
                };
                let by_chars = text.char_indices().find(|&(_, c)| not_text(c));
                assert_eq!(find_not_text(text), by_chars, "{text:?}");
            }
        }
        assert_eq!(find_not_text("plain\ttext\r\n\u{a0}\u{efbf}"), None);
    }

    #[test]
    fn deep_yaml_is_refused_before_parsing() {
        let deep = format!("x: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        let e = check_yaml(p(), &deep, 2, "front matter", usize::MAX).unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("allows 32"), "{e}");
        let dashes = format!("x:\n{}y\n", "- ".repeat(100));
        assert!(check_yaml(p(), &dashes, 1, "config file", usize::MAX).is_err());
        let indented: String = (0..100).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
        assert_eq!(
            check_yaml(p(), &indented, 1, "config file", usize::MAX)
                .unwrap_err()
                .line,
            Some(33)
        );
        let normal =
            "title: \"[[[\"\nseo:\n  url: x # [[[\ncategory:\n  - label: a\n  - {label: b}\n";
        assert!(check_yaml(p(), normal, 1, "front matter", 1000).is_ok());
        assert!(check_yaml(p(), normal, 1, "front matter", 10).is_err());
    }

    #[test]
    fn deep_nesting_is_measured_in_markdown_and_html() {
        assert!(nesting("- a\n  - b\n").0 < 8);
        assert!(nesting(&format!("{} x\n", ">".repeat(200))).0 > 200);
        assert!(nesting(&"<ul><li>".repeat(100)).0 >= 100);
        let closed = format!("{}x{}\n", "<ul><li>".repeat(100), "</li></ul>".repeat(100));
        assert!(nesting(&closed).0 >= 100);
        assert!(nesting(&format!("a {}x", "<b>".repeat(100))).0 >= 100);
        // Sloppy but flat HTML is not deep.
        assert!(nesting(&"<p>a<br><li>b<img src=x>\n".repeat(100)).0 < 8);
        let e = check_nesting(p(), &format!("ok\n\n{} x\n", ">".repeat(100)), 10).unwrap_err();
        assert_eq!(e.line, Some(12));
    }

    #[test]
    fn key_files_are_read_with_a_cap() {
        let e = read_key_file(Path::new("/dev/zero"), "DKIM key").unwrap_err();
        assert!(e.message.contains("larger than 64 KB"), "{e}");
    }

    #[test]
    fn the_capped_reader_stops_at_the_cap() {
        let e = read_capped(Path::new("/dev/zero"), MAX_CA_BYTES, "CA file").unwrap_err();
        assert!(e.message.contains("larger than 1 MB"), "{e}");
        assert_eq!(read_bounded(&b"abc"[..], 3).unwrap().unwrap(), b"abc");
        assert!(read_bounded(&b"abcd"[..], 3).unwrap().is_none());
        let e = read_capped(Path::new("/proc/sys/kernel/random/boot_id"), 4, "x");
        assert!(e.is_err());
    }

    #[test]
    fn a_line_over_the_cap_is_an_error() {
        let mut out = Vec::new();
        LineCapped::new(&b"ab\ncd\r\nef"[..], 2)
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"ab\ncd\r\nef");
        let zero = std::fs::File::open("/dev/zero").unwrap();
        let e = LineCapped::new(zero, 1000)
            .read_to_end(&mut out)
            .unwrap_err();
        assert!(e.to_string().contains("longer than 1 KB"), "{e}");
    }
}
