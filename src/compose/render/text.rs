//! Content -> the plain-text part, written from the content model (not by
//! stripping the HTML): underlined headings, paragraphs wrapped at 72
//! columns without ever breaking a URL, `*` bullets, and numbered link
//! references listed at the end of each section.

use askama::Template;

use crate::compose::content::{Block, Content, Image, Inline, Language};
use crate::config::RenderOptions;

pub const WIDTH: usize = 72;

#[derive(Template)]
#[template(path = "email.txt")]
struct EmailText<'a> {
    words: &'a Language,
    footer_sender: String,
    kicker: String,
    title: &'a str,
    title_rule: String,
    date_label: Option<&'a str>,
    web_url: Option<&'a str>,
    intro: String,
    sections: Vec<(String, String, String)>,
    postal_address: Option<&'a str>,
}

pub fn text(content: &Content, config: &RenderOptions) -> String {
    let mut w = Writer::default();
    let intro = w.section_body(&content.intro, 1);
    let sections = content
        .sections
        .iter()
        .map(|s| {
            let heading = w.inlines(&s.heading.inlines);
            let heading = heading.split_whitespace().collect::<Vec<_>>().join(" ");
            let (heading, rule) = underlined(&heading, '=');
            let body = w.section_body(&s.blocks, s.heading.level);
            (heading, rule, body)
        })
        .collect();
    let (title, title_rule) = underlined(&content.title, '=');
    let t = EmailText {
        words: &content.language,
        footer_sender: wrap(
            &format!("{} {}.", content.language.subscribed, content.kicker),
            WIDTH,
            "",
            "",
        )
        .trim_end()
        .to_string(),
        kicker: content.kicker.to_uppercase(),
        title: &title,
        title_rule,
        date_label: content.date_label.as_deref(),
        web_url: content.web_url.as_deref(),
        intro,
        sections,
        postal_address: config.postal_address.as_deref(),
    };
    let raw = t.render().expect("the text template has no fallible parts");
    tidy(&raw)
}

/// A title or heading wrapped at [`WIDTH`], and the rule under it as long
/// as its longest line.
fn underlined(text: &str, under: char) -> (String, String) {
    let wrapped = wrap(text, WIDTH, "", "");
    let wrapped = wrapped.trim_end();
    let longest = wrapped.lines().map(display_width).max().unwrap_or(0);
    (
        wrapped.to_string(),
        under.to_string().repeat(longest.min(WIDTH)),
    )
}

/// At most one blank line in a row, no trailing spaces, one final newline.
fn tidy(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut blank = 0;
    // The lines `str::lines` gives (a `\r` before a line end goes with the
    // trailing white space), found by memchr: `lines` looked for each line
    // end on its own, at a couple of hundred instructions a line.
    let mut start = 0;
    let ends = memchr::memchr_iter(b'\n', raw.as_bytes()).chain(std::iter::once(raw.len()));
    for end in ends {
        if start >= raw.len() {
            // The text ended with a line end: no line after it.
            break;
        }
        let line = raw[start..end].trim_end();
        start = end + 1;
        if line.is_empty() {
            blank += 1;
            if blank > 1 || out.is_empty() {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

#[derive(Default)]
struct Writer {
    /// Links of the current section: (number, URL).
    refs: Vec<(usize, String)>,
    next_ref: usize,
    /// Columns taken by the `> ` of the quotes being written.
    quoted: usize,
    /// A paragraph's text before it is wrapped: one buffer for all of
    /// them (see [`Writer::wrap_inlines`]).
    apart: String,
}

impl Writer {
    /// The width left for text inside the current quotes.
    fn width(&self) -> usize {
        WIDTH.saturating_sub(self.quoted).max(20)
    }

    fn section_body(&mut self, blocks: &[Block], level: u8) -> String {
        let mut out = String::new();
        self.blocks(blocks, level, "", &mut out);
        if !self.refs.is_empty() {
            out.push('\n');
            for (n, url) in self.refs.drain(..) {
                out.push('[');
                push_number(&mut out, n as u64);
                out.push_str("] ");
                out.push_str(&url);
                out.push('\n');
            }
        }
        out
    }

    fn reference(&mut self, url: &str) -> usize {
        if let Some((n, _)) = self.refs.iter().find(|(_, u)| u == url) {
            return *n;
        }
        self.next_ref += 1;
        self.refs.push((self.next_ref, url.to_string()));
        self.next_ref
    }

    fn blocks(&mut self, blocks: &[Block], level: u8, indent: &str, out: &mut String) {
        for b in blocks {
            self.block(b, level, indent, out);
        }
    }

    fn block(&mut self, b: &Block, level: u8, indent: &str, out: &mut String) {
        match b {
            Block::Heading(h) => {
                let text = self.inlines(&h.inlines);
                let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
                let under = if h.level <= level { '=' } else { '-' };
                let (text, rule) = underlined(&text, under);
                let text = text.replace('\n', &format!("\n{indent}"));
                out.push_str(&format!("\n{indent}{text}\n{indent}{rule}\n\n"));
            }
            Block::Paragraph(i) => {
                self.wrap_inlines(i, indent, indent, out);
                out.push('\n');
            }
            Block::List { start, items } => {
                // The prefixes of an item's first line and of its others,
                // made in two strings for the whole list (made with
                // `format!` for each item, they were a tenth of the text).
                let (mut first, mut rest) = (String::new(), String::new());
                for (n, item) in items.iter().enumerate() {
                    first.clear();
                    first.push_str(indent);
                    match start {
                        Some(s) => {
                            push_number(&mut first, s + n as u64);
                            first.push_str(". ");
                        }
                        None => first.push_str("* "),
                    }
                    rest.clear();
                    rest.push_str(indent);
                    rest.extend(std::iter::repeat_n(' ', first.len() - indent.len()));
                    for (k, b) in item.iter().enumerate() {
                        match b {
                            Block::Paragraph(i) => {
                                let lead = if k == 0 { &first } else { &rest };
                                self.wrap_inlines(i, lead, &rest, out);
                            }
                            other => {
                                let mut inner = String::new();
                                self.block(other, level, &rest, &mut inner);
                                if k == 0 {
                                    // A list item that starts with a nested block still gets its bullet.
                                    inner = inner.replacen(rest.as_str(), first.as_str(), 1);
                                }
                                out.push_str(inner.trim_end_matches('\n'));
                                out.push('\n');
                            }
                        }
                    }
                }
                out.push('\n');
            }
            Block::Quote(inner) => {
                let mut q = String::new();
                self.quoted += 2;
                self.blocks(inner, level, "", &mut q);
                self.quoted -= 2;
                for line in q.trim_end().lines() {
                    out.push_str(&format!("{indent}> {line}\n"));
                }
                out.push('\n');
            }
            Block::Code(code) => {
                for line in code.trim_end_matches('\n').lines() {
                    out.push_str(&format!("{indent}    {line}\n"));
                }
                out.push('\n');
            }
            Block::Rule => out.push_str(&format!("{indent}{}\n\n", "-".repeat(24))),
            Block::Images(imgs) => {
                let lines: Vec<String> = imgs
                    .iter()
                    .map(|img| self.image(img))
                    .filter(|l| !l.is_empty())
                    .collect();
                for line in &lines {
                    wrap_into(line, self.width(), indent, indent, out);
                }
                if !lines.is_empty() {
                    out.push('\n');
                }
            }
            Block::Button(btn) => {
                let label = btn.text.trim_end_matches(['>', '»', '→', '›', ' ']).trim();
                out.push_str(&format!("{indent}{label}: {}\n\n", btn.url));
            }
            Block::Table { head, rows } => self.table(head, rows, indent, out),
        }
    }

    /// A table as aligned columns when it fits in [`WIDTH`], else one block
    /// of "label: value" lines per row (the header cell as the label), so
    /// a two-column table never runs together on one line.
    fn table(
        &mut self,
        head: &[Vec<Inline>],
        rows: &[Vec<Vec<Inline>>],
        indent: &str,
        out: &mut String,
    ) {
        let flat = |s: String| s.split_whitespace().collect::<Vec<_>>().join(" ");
        let head: Vec<String> = head.iter().map(|c| flat(self.inlines(c))).collect();
        let rows: Vec<Vec<String>> = rows
            .iter()
            .filter(|r| !r.is_empty())
            .map(|r| r.iter().map(|c| flat(self.inlines(c))).collect())
            .collect();
        let columns = rows
            .iter()
            .map(Vec::len)
            .chain([head.len()])
            .max()
            .unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in std::iter::once(&head).chain(rows.iter()) {
            for (n, cell) in row.iter().enumerate() {
                widths[n] = widths[n].max(display_width(cell));
            }
        }
        const GAP: &str = "  ";
        let total = indent.chars().count()
            + widths.iter().sum::<usize>()
            + GAP.len() * columns.saturating_sub(1);
        if total <= self.width() {
            let line = |cells: &[String]| {
                let padded: Vec<String> = (0..columns)
                    .map(|n| {
                        let cell = cells.get(n).map(String::as_str).unwrap_or("");
                        format!("{cell}{}", " ".repeat(widths[n] - display_width(cell)))
                    })
                    .collect();
                format!("{indent}{}\n", padded.join(GAP).trim_end())
            };
            if head.iter().any(|h| !h.is_empty()) {
                out.push_str(&line(&head));
                let rules: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
                out.push_str(&format!("{indent}{}\n", rules.join(GAP)));
            }
            for row in &rows {
                out.push_str(&line(row));
            }
        } else {
            let hanging = format!("{indent}  ");
            for row in &rows {
                for (n, cell) in row.iter().enumerate().filter(|(_, c)| !c.is_empty()) {
                    let text = match head.get(n).filter(|h| !h.is_empty()) {
                        Some(label) => format!("{}: {cell}", label.trim_end_matches(':')),
                        None => cell.clone(),
                    };
                    out.push_str(&wrap(&text, self.width(), indent, &hanging));
                }
                out.push('\n');
            }
        }
        out.push('\n');
    }

    /// A picture as text: its alt text, or nothing for a decorative one
    /// (`alt=""`), which a screen reader would skip too.
    fn image(&mut self, img: &Image) -> String {
        let alt = img.alt.trim();
        match &img.link {
            Some(url) => {
                let n = self.reference(url);
                if alt.is_empty() {
                    format!("[Image] [{n}]")
                } else {
                    format!("[Image: {alt}] [{n}]")
                }
            }
            None if alt.is_empty() => String::new(),
            None => format!("[Image: {alt}]"),
        }
    }

    /// `inlines` as text, wrapped onto `out` ([`wrap_into`]), written
    /// first into the buffer kept for every paragraph rather than into a
    /// string of their own, grown and freed each time.
    fn wrap_inlines(&mut self, inlines: &[Inline], first: &str, rest: &str, out: &mut String) {
        let mut text = std::mem::take(&mut self.apart);
        text.clear();
        self.push_inlines(inlines, &mut text);
        wrap_into(&text, self.width(), first, rest, out);
        self.apart = text;
    }

    fn inlines(&mut self, inlines: &[Inline]) -> String {
        let mut out = String::new();
        self.push_inlines(inlines, &mut out);
        out
    }

    fn push_inlines(&mut self, inlines: &[Inline], out: &mut String) {
        for i in inlines {
            match i {
                Inline::Text(t) | Inline::Code(t) => out.push_str(t),
                Inline::Strong(c) | Inline::Emph(c) | Inline::Strike(c) => {
                    self.push_inlines(c, out)
                }
                Inline::Break => out.push('\n'),
                Inline::Image(img) => {
                    let s = self.image(img);
                    out.push_str(&s);
                }
                Inline::Link(l) => {
                    let text = Inline::plain(&l.children);
                    let text = text.trim();
                    let bare = l.url.trim_start_matches("mailto:");
                    let shown = |t: &str| {
                        let t = t.trim_end_matches('/');
                        t == l.url.trim_end_matches('/')
                            || t == bare
                            || Some(t) == l.url.split("://").nth(1).map(|r| r.trim_end_matches('/'))
                    };
                    if text.is_empty() {
                        out.push_str(&l.url);
                    } else if shown(text) {
                        // The text is the address already: a reference would repeat it.
                        out.push_str(if l.url.starts_with("mailto:") {
                            bare
                        } else {
                            &l.url
                        });
                    } else {
                        self.push_inlines(&l.children, out);
                        let n = self.reference(&l.url);
                        out.push_str(" [");
                        push_number(out, n as u64);
                        out.push(']');
                    }
                }
            }
        }
    }
}

/// Wraps `text` at `width` columns. Words are never split, so a URL longer
/// than a line stands alone on its line. Newlines in `text` are kept.
/// `first` prefixes the first line, `rest` the others.
///
/// A merge field such as `{{ first_name | default: "there" }}` is one word
/// as wide as its default, so substitution never splits it and lines keep
/// about the right length after it.
pub fn wrap(text: &str, width: usize, first: &str, rest: &str) -> String {
    let mut out = String::new();
    wrap_into(text, width, first, rest, &mut out);
    out
}

/// [`wrap`], appended to `out`: a paragraph's own string, copied into the
/// section and freed, cost more than wrapping most paragraphs.
fn wrap_into(text: &str, width: usize, first: &str, rest: &str, out: &mut String) {
    wrap_with(text, width, first, rest, true, out)
}

/// [`wrap`], with `fast`: whether a plain line (see [`plain_line`]) may be
/// wrapped by [`wrap_plain`] rather than word by word (the tests compare
/// the two).
fn wrap_with(text: &str, width: usize, first: &str, rest: &str, fast: bool, out: &mut String) {
    // Written straight into `out`: a line is only ever appended to, so it
    // needs no buffer of its own (one allocation per line was a tenth of
    // composing the annual report).
    out.reserve(text.len() + text.len() / 8 + first.len());
    let rest_len = rest.chars().count();
    let mut prefix = first;
    // One list of words for every line of the paragraph: a list made per
    // line, grown word by word, was a ninth of wrapping.
    let mut line_words = Vec::with_capacity(32);
    // Braces are rare: each is looked at, with no searcher to set up.
    let fields = memchr::memchr_iter(b'{', text.as_bytes())
        .any(|i| text.as_bytes().get(i + 1) == Some(&b'{'));
    let mut prefix_len = first.chars().count();
    // The lines `split('\n')` gives, found by memchr.
    let mut line_start = 0;
    let line_ends = memchr::memchr_iter(b'\n', text.as_bytes()).chain([text.len()]);
    for line_end in line_ends {
        let para_line = &text[line_start..line_end];
        line_start = line_end + 1;
        if fast && !fields && plain_line(para_line) {
            wrap_plain(
                para_line,
                width,
                (prefix, prefix_len),
                (rest, rest_len),
                out,
            );
            prefix = rest;
            prefix_len = rest_len;
            continue;
        }
        let mut line_len = 0;
        let mut empty = true;
        // Split on ASCII spaces only: a no-break space keeps its words together.
        words(para_line, fields, &mut line_words);
        // The words of the line being written that are not copied yet:
        // `para_line[start..end]`, words one space apart there (as nearly
        // all are), so they are copied at once when the line ends. A copy
        // of each word and each space was a third of wrapping.
        let mut pending: Option<(usize, usize)> = None;
        let flush = |pending: &mut Option<(usize, usize)>, out: &mut String| {
            if let Some((start, end)) = pending.take() {
                out.push_str(&para_line[start..end]);
            }
        };
        for (n, &(word, wlen)) in line_words.iter().enumerate() {
            // Every word is a slice of `para_line`.
            let start = word.as_ptr() as usize - para_line.as_ptr() as usize;
            let end = start + word.len();
            if n == 0 {
                out.push_str(prefix);
                line_len = prefix_len;
            } else if line_len + 1 + wlen > width {
                flush(&mut pending, out);
                out.push('\n');
                out.push_str(rest);
                line_len = rest_len;
                empty = true;
            }
            if empty {
                pending = Some((start, end));
            } else {
                line_len += 1;
                match pending {
                    Some((from, to)) if start == to + 1 && para_line.as_bytes()[to] == b' ' => {
                        pending = Some((from, end));
                    }
                    _ => {
                        flush(&mut pending, out);
                        out.push(' ');
                        pending = Some((start, end));
                    }
                }
            }
            line_len += wlen;
            empty = false;
        }
        flush(&mut pending, out);
        if !empty {
            out.push('\n');
            prefix = rest;
            prefix_len = rest_len;
        }
    }
}

/// Whether `line` is plain: words one space apart (no tab, no run of
/// spaces, none at either end), and not empty. Nearly every line of a
/// post is; it can then be wrapped at once by [`wrap_plain`].
fn plain_line(line: &str) -> bool {
    // Made once: memmem::find sets a searcher up on every call, some 370
    // instructions, more than finding the two spaces takes.
    static TWO_SPACES: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"  "));
    let b = line.as_bytes();
    match (b.first(), b.last()) {
        (Some(&f), Some(&l)) if f != b' ' && l != b' ' => {}
        _ => return false,
    }
    memchr::memchr(b'\t', b).is_none() && TWO_SPACES.find(b).is_none()
}

/// The byte at which the character `n` characters after `b[start]`
/// starts, if there is one (`ascii`: `b` is ASCII, a byte a character).
fn char_at(b: &[u8], start: usize, n: usize, ascii: bool) -> Option<usize> {
    // Also when only the `n` bytes from `start` are ASCII: a line with a
    // curly quote or a dash somewhere is not, but most of its stretches
    // are, and counting their characters a byte at a time was half of
    // wrapping the annual report (`is_ascii` looks at a word at a time).
    if ascii || b.get(start..start + n).is_some_and(<[u8]>::is_ascii) {
        return Some(start + n).filter(|&i| i < b.len());
    }
    // Every byte but a UTF-8 continuation byte starts a character.
    b[start..]
        .iter()
        .enumerate()
        .filter(|&(_, &c)| (c as i8) >= -0x40)
        .nth(n)
        .map(|(i, _)| start + i)
}

/// Wraps a [`plain_line`] as [`wrap`]'s word-by-word loop does (greedily,
/// each line as long as fits, a link reference kept with the word before
/// it), but a line at a time: the break is the last space that fits,
/// found by memrchr, unless a reference follows it. Word by word, wrapping
/// took over a hundred instructions a word, a tenth of composing the
/// annual report. `first` and `rest` are the prefixes with their widths.
fn wrap_plain(
    line: &str,
    width: usize,
    first: (&str, usize),
    rest: (&str, usize),
    out: &mut String,
) {
    let b = line.as_bytes();
    // A column is a character: a byte, nearly always.
    let ascii = b.is_ascii();
    // A space is a place to break unless the word after it is a reference.
    let breaks_at = |p: usize| {
        let word = &line[p + 1..];
        let end = memchr::memchr(b' ', word.as_bytes()).unwrap_or(word.len());
        !is_ref(&word[..end])
    };
    let mut start = 0;
    let (mut prefix, mut prefix_len) = first;
    loop {
        out.push_str(prefix);
        // The columns this line may take: what is left of the line fits
        // unless it has a character at column `room`.
        let room = width.saturating_sub(prefix_len);
        if char_at(b, start, room, ascii).is_none() {
            out.push_str(&line[start..]);
            out.push('\n');
            return;
        }
        // The last space that fits, at column `room` at most (a line never
        // starts with one, so a space found is after a word)...
        let mut end = None;
        let mut upto = char_at(b, start, room + 1, ascii).unwrap_or(b.len());
        while let Some(p) = memchr::memrchr(b' ', &b[start..upto]).map(|p| start + p) {
            if breaks_at(p) {
                end = Some(p);
                break;
            }
            upto = p;
        }
        // ...or, when the first word does not fit, the first break after it.
        let end = end.or_else(|| {
            let mut from = start;
            while let Some(p) = memchr::memchr(b' ', &b[from..]).map(|p| from + p) {
                if breaks_at(p) {
                    return Some(p);
                }
                from = p + 1;
            }
            None
        });
        let Some(end) = end else {
            out.push_str(&line[start..]);
            out.push('\n');
            return;
        };
        out.push_str(&line[start..end]);
        out.push('\n');
        start = end + 1;
        (prefix, prefix_len) = rest;
    }
}

/// Appends `n` in decimal, as `{n}` would, without the formatting machinery.
fn push_number(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[at..].iter().map(|&d| char::from(d)));
}

/// A link reference such as `[3]` (or `[3],`): kept on the word before it.
fn is_ref(w: &str) -> bool {
    w.strip_prefix('[')
        .and_then(|r| r.split_once(']'))
        .is_some_and(|(n, after)| {
            !n.is_empty()
                && n.chars().all(|c| c.is_ascii_digit())
                && after.chars().all(|c| c.is_ascii_punctuation())
        })
}

/// Space-separated words of `line` into `out` (emptied first), each with
/// the columns it takes ([`display_width`]), keeping each `{{ ... }}` merge
/// field whole and a link reference such as `[3]` on the word before it.
/// `fields`: the line may hold a merge field.
fn words<'a>(line: &'a str, fields: bool, out: &mut Vec<(&'a str, usize)>) {
    out.clear();
    // Bytes, not chars: the separators and braces are ASCII, and a word
    // starts at its first byte either way.
    let bytes = line.as_bytes();
    if !fields {
        // No field, so a word is as wide as its characters (every byte but
        // a UTF-8 continuation byte starts one). Each word's end is found
        // by memchr2, a vector search, rather than by a test of every byte
        // that also counted its characters; nearly every word is ASCII,
        // as wide as it is long, and only the others are counted.
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            if b == b' ' || b == b'\t' {
                i += 1;
                continue;
            }
            let end = memchr::memchr2(b' ', b'\t', &bytes[i..]).map_or(bytes.len(), |n| i + n);
            let word = &bytes[i..end];
            let chars = if word.is_ascii() {
                word.len()
            } else {
                word.iter().filter(|&&b| (b as i8) >= -0x40).count()
            };
            push_word(line, out, i, end, chars);
            i = end;
        }
        return;
    }
    let mut start: Option<usize> = None;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'{'
            && bytes.get(i + 1) == Some(&b'{')
            // Only as far as a field can be long: linear however many `{{`.
            && let Some(end) = memchr::memmem::find(
                &bytes[i..line.len().min(i + crate::compose::merge::Template::MAX_FIELD_LEN + 4)],
                b"}}",
            )
        {
            start.get_or_insert(i);
            // Skip the field; its spaces do not split it.
            i += end + 2;
            continue;
        }
        if b == b' ' || b == b'\t' {
            if let Some(s) = start.take() {
                push_word(line, out, s, i, 0);
            }
        } else {
            start.get_or_insert(i);
        }
        i += 1;
    }
    if let Some(s) = start {
        push_word(line, out, s, line.len(), 0);
    }
    // A field counts as its default: measured once the words are whole.
    for (word, width) in out.iter_mut() {
        *width = display_width(word);
    }
}

/// Adds the word `line[start..end]`, `width` columns wide, to `words`, or,
/// when it is a link reference such as `[3]` (or `[3],`), stretches the
/// word before it over it, so no line starts with `[3]` and looks like the
/// list of links.
fn push_word<'a>(
    line: &'a str,
    words: &mut Vec<(&'a str, usize)>,
    start: usize,
    end: usize,
    width: usize,
) {
    let w = &line[start..end];
    match words.last_mut() {
        Some((prev, prev_width)) if is_ref(w) => {
            let from = prev.as_ptr() as usize - line.as_ptr() as usize;
            // The spaces and tabs between the two are a column each.
            *prev_width += (start - (from + prev.len())) + width;
            *prev = &line[from..end];
        }
        _ => words.push((w, width)),
    }
}

/// Columns a word takes once merge fields are filled in (a field counts as
/// its default, or 8 columns when it has none).
fn display_width(word: &str) -> usize {
    // Nearly every word has no field, so one pass over the bytes both
    // counts the characters (every byte but a UTF-8 continuation byte
    // starts one) and looks for a brace.
    let (mut chars, mut brace) = (0, false);
    for &b in word.as_bytes() {
        chars += usize::from((b as i8) >= -0x40);
        brace |= b == b'{';
    }
    if !brace {
        return chars;
    }
    let mut width = 0;
    let mut rest = word;
    while let Some(open) = memchr::memmem::find(rest.as_bytes(), b"{{") {
        width += rest[..open].chars().count();
        let Some(close) = memchr::memmem::find(&rest.as_bytes()[open..], b"}}") else {
            break;
        };
        let field = &rest[open..open + close + 2];
        width +=
            crate::compose::merge::Template::compile(field, crate::compose::merge::Escape::None)
                .render(|_| None)
                .chars()
                .count()
                .max(if field.contains("default") { 0 } else { 8 });
        rest = &rest[open + close + 2..];
    }
    width + rest.chars().count()
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn merge_fields_are_never_split() {
        let text = "Hello {{ first_name | default: \"there\" }}, this line is long enough to need wrapping somewhere.";
        let out = wrap(text, 30, "", "");
        assert!(
            out.contains("{{ first_name | default: \"there\" }}"),
            "{out}"
        );
        let filled = out.replace("{{ first_name | default: \"there\" }}", "there");
        for line in filled.lines() {
            assert!(line.chars().count() <= 30, "{line}");
        }
        assert!(
            filled.lines().next().unwrap().chars().count() > 20,
            "{filled}"
        );
    }

    #[test]
    fn wraps_at_width_and_never_breaks_urls() {
        let url = "https://example.org/a/very/long/path/that/is/longer/than/the/line/width/of/seventy-two/columns";
        let text = format!("Read the report at {url} and tell us what you think of it, please.");
        let out = wrap(&text, 72, "", "");
        for line in out.lines() {
            assert!(line.chars().count() <= 72 || line == url, "{line}");
        }
        assert!(out.lines().any(|l| l == url));
        assert_eq!(out.split_whitespace().collect::<Vec<_>>().join(" "), text);
    }

    #[test]
    fn link_references_stay_with_their_word() {
        let out = wrap("aaaa bbbb [12], cccc", 10, "", "");
        assert_eq!(out, "aaaa\nbbbb [12],\ncccc\n");
    }

    #[test]
    fn hanging_indent_for_bullets() {
        let out = wrap("one two three four five six", 12, "* ", "  ");
        assert_eq!(out, "* one two\n  three four\n  five six\n");
    }

    #[test]
    fn accented_words_count_as_characters_and_fields_as_their_default() {
        // Columns are characters, not bytes ("Grüße" is 5 wide), and the
        // field counts as its default "there": filled in, the third line is
        // exactly 12 wide.
        let out = wrap(
            "Grüße aus Zürich, {{ first_name | default: \"there\" }} café\tnaïve",
            12,
            "* ",
            "  ",
        );
        assert_eq!(
            out,
            "* Grüße aus\n  Zürich,\n  {{ first_name | default: \"there\" }} café\n  naïve\n"
        );
    }

    #[test]
    fn runs_of_spaces_and_tabs_become_one_space() {
        assert_eq!(wrap("a  b\tc d   e f", 80, "> ", "  "), "> a b c d e f\n");
        assert_eq!(wrap("aa  bb cc\t\tdd ee", 5, "", ""), "aa bb\ncc dd\nee\n");
        assert_eq!(wrap("  lead and trail  ", 9, "", ""), "lead and\ntrail\n");
    }

    #[test]
    fn tidy_reads_the_lines_str_lines_reads() {
        // The tidying as it was, over `str::lines`.
        fn by_lines(raw: &str) -> String {
            let mut out = String::new();
            let mut blank = 0;
            for line in raw.lines() {
                let line = line.trim_end();
                if line.is_empty() {
                    blank += 1;
                    if blank > 1 || out.is_empty() {
                        continue;
                    }
                } else {
                    blank = 0;
                }
                out.push_str(line);
                out.push('\n');
            }
            while out.ends_with("\n\n") {
                out.pop();
            }
            out
        }
        for raw in [
            "",
            "\n",
            "\n\n",
            "a",
            "a\n",
            "a\r\n",
            "a\r",
            "\r\n\r\n a \r\n\n\n\tb\t\n",
            "a\n\n\nb\n\n",
            " \n x\u{a0} \n\u{2003}\n",
        ] {
            assert_eq!(super::tidy(raw), by_lines(raw), "{raw:?}");
        }
    }

    #[test]
    fn char_at_counts_characters_not_bytes() {
        // By the definition: the byte of the character `n` after `start`.
        let slow = |s: &str, start: usize, n: usize| {
            s[start..].char_indices().nth(n).map(|(i, _)| start + i)
        };
        for s in ["plain ascii text", "naïve—a €5 fee", "ab—cd", "—", "", "aé"] {
            let b = s.as_bytes();
            for start in (0..=s.len()).filter(|&i| s.is_char_boundary(i)) {
                for n in 0..=s.len() + 1 {
                    assert_eq!(
                        super::char_at(b, start, n, s.is_ascii()),
                        slow(s, start, n),
                        "{s:?} from {start}, {n} on"
                    );
                }
            }
        }
    }

    #[test]
    fn plain_lines_wrap_as_word_by_word() {
        // Lines of words drawn from a fixed list by a fixed generator:
        // short and long words, accented ones (a column is a character),
        // references that must stay with the word before them and
        // brackets that are not references, wrapped at
        // every width with the prefixes lists and quotes use, a line at a
        // time and word by word.
        let words = [
            "a",
            "of",
            "the",
            "open",
            "source",
            "infrastructure,",
            "[1]",
            "[12],",
            "[3].",
            "[x]",
            "[]",
            "[4]x",
            "https://example.org/a/very/long/path/that/never/breaks/anywhere",
            "well-timed",
            "(see",
            "[7])",
            "2023.",
            "\r",
            "Grüße",
            "community—560+",
            "a\u{a0}b",
            "[9]—",
            "naïve",
            "€",
        ];
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut plain = 0;
        for _ in 0..400 {
            let lines: Vec<String> = (0..1 + next(3))
                .map(|_| {
                    let n = next(40);
                    (0..n)
                        .map(|_| words[next(words.len())])
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            let text = lines.join("\n");
            plain += lines.iter().filter(|l| super::plain_line(l)).count();
            for width in [1, 5, 12, 20, 40, 72] {
                for (first, rest) in [("", ""), ("* ", "  "), ("10. ", "    "), ("> ", "> ")] {
                    let (mut fast, mut slow) = (String::new(), String::new());
                    super::wrap_with(&text, width, first, rest, true, &mut fast);
                    super::wrap_with(&text, width, first, rest, false, &mut slow);
                    assert_eq!(fast, slow, "{text:?} at {width} after {first:?}");
                }
            }
        }
        assert!(plain > 500, "only {plain} plain lines");
    }

    #[test]
    fn keeps_no_break_spaces_and_newlines() {
        let out = wrap("a\u{a0}b c\nd", 3, "", "");
        assert_eq!(out, "a\u{a0}b\nc\nd\n");
    }
}
