//! Content -> MJML through `templates/email.mjml`. The layout lives in the
//! template; the HTML inside `<mj-text>` is written here, with the inline
//! styles email clients need (many ignore `<style>` blocks).

use askama::Template;

use crate::compose::content::{Block, COLUMN, Content, Image, Inline, Language};
use crate::config::RenderOptions;
use crate::html;

const TEXT: &str = "#1f2933";
const NAVY: &str = "#1b2a4a";
const MUTED: &str = "#5b6675";

pub enum Part {
    Text(String),
    Image {
        src: String,
        alt: String,
        href: Option<String>,
        width: Option<u32>,
        title: Option<String>,
    },
    Button {
        text: String,
        url: String,
    },
    Divider,
}

pub struct SectionView {
    pub heading: String,
    pub anchor: String,
    pub parts: Vec<Part>,
}

#[derive(Template)]
#[template(path = "email.mjml")]
struct EmailMjml<'a> {
    lang: &'a str,
    dir: &'a str,
    words: &'a Language,
    title: &'a str,
    kicker: String,
    date_label: Option<&'a str>,
    preheader: Option<&'a str>,
    preheader_padding: String,
    web_url: Option<&'a str>,
    accent: &'a str,
    navy: &'a str,
    text_color: &'a str,
    muted: &'a str,
    dark: Dark,
    intro: Vec<Part>,
    sections: Vec<SectionView>,
    newsletter: &'a str,
    postal_address: Option<&'a str>,
}

pub fn mjml(content: &Content, config: &RenderOptions, accent: &str) -> String {
    let w = Writer { accent };
    let t = EmailMjml {
        lang: &content.language.lang,
        dir: &content.language.dir,
        words: &content.language,
        title: &content.title,
        kicker: content.kicker.to_uppercase(),
        date_label: content.date_label.as_deref(),
        preheader: content.preheader.as_deref(),
        preheader_padding: preheader_padding(),
        web_url: content.web_url.as_deref(),
        accent,
        navy: NAVY,
        text_color: TEXT,
        muted: MUTED,
        dark: Dark::new(accent),
        intro: w.parts(&content.intro, 1),
        sections: content
            .sections
            .iter()
            .map(|s| SectionView {
                heading: w.heading_inlines(&s.heading.inlines),
                anchor: s.anchor.clone(),
                parts: w.parts(&s.blocks, s.heading.level),
            })
            .collect(),
        newsletter: &content.kicker,
        postal_address: config.postal_address.as_deref(),
    };
    t.render().expect("the MJML template has no fallible parts")
}

/// What follows the preview text in its hidden line: inbox snippets show
/// up to about 140 characters (Gmail, Apple Mail on a wide screen show
/// more), so 150 invisible units. The characters are written as entities
/// (`&#847;` is U+034F COMBINING GRAPHEME JOINER) so the HTML stays ASCII.
fn preheader_padding() -> String {
    let unit = "&#847;&zwnj;&nbsp;";
    (0..15)
        .map(|_| unit.repeat(10))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The colours for readers whose mail program is in dark mode (Apple Mail,
/// Outlook for Mac, iOS Mail, Thunderbird follow `prefers-color-scheme`).
/// Every pair keeps a contrast of at least 4.5:1 (WCAG AA).
struct Dark {
    page: &'static str,
    card: &'static str,
    text: &'static str,
    heading: &'static str,
    muted: &'static str,
    code: &'static str,
    rule: &'static str,
    /// The accent lightened until it reads on the dark card.
    link: String,
}

impl Dark {
    const CARD: [u8; 3] = [0x1c, 0x22, 0x2b];

    fn new(accent: &str) -> Dark {
        Dark {
            page: "#12161c",
            card: "#1c222b",
            text: "#e4e8ee",
            heading: "#ffffff",
            muted: "#a3adba",
            code: "#2a313c",
            rule: "#3a4350",
            link: readable_on(accent, Self::CARD),
        }
    }
}

/// `colour` (`#rrggbb`) mixed with white, in steps, until it has a contrast
/// of 4.5:1 on `background`.
fn readable_on(colour: &str, background: [u8; 3]) -> String {
    let rgb = parse_hex(colour).unwrap_or([0xc5, 0x28, 0x3d]);
    (0..=10)
        .map(|step| rgb.map(|c| c + ((255 - c) as u32 * step / 10) as u8))
        .find(|mixed| contrast(*mixed, background) >= 4.5)
        .map(|[r, g, b]| format!("#{r:02x}{g:02x}{b:02x}"))
        .unwrap_or_else(|| "#ffffff".into())
}

fn parse_hex(s: &str) -> Option<[u8; 3]> {
    let h = s.strip_prefix('#')?;
    if h.len() != 6 {
        return None;
    }
    let byte = |i: usize| u8::from_str_radix(&h[i..i + 2], 16).ok();
    Some([byte(0)?, byte(2)?, byte(4)?])
}

/// The WCAG contrast ratio of two sRGB colours.
pub fn contrast(a: [u8; 3], b: [u8; 3]) -> f64 {
    fn luminance(c: [u8; 3]) -> f64 {
        let lin = |v: u8| {
            let v = v as f64 / 255.0;
            if v <= 0.04045 {
                v / 12.92
            } else {
                ((v + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * lin(c[0]) + 0.7152 * lin(c[1]) + 0.0722 * lin(c[2])
    }
    let (la, lb) = (luminance(a), luminance(b));
    (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
}

struct Writer<'a> {
    accent: &'a str,
}

impl Writer<'_> {
    /// Groups blocks into MJML parts: text runs share one `<mj-text>`,
    /// images, buttons and rules get their own components.
    fn parts(&self, blocks: &[Block], section_level: u8) -> Vec<Part> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let flush = |text: &mut String, parts: &mut Vec<Part>| {
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(text)));
            }
        };
        for b in blocks {
            match b {
                Block::Images(imgs) => {
                    flush(&mut text, &mut parts);
                    for img in imgs {
                        parts.push(Part::Image {
                            src: img.src.clone(),
                            alt: img.alt.clone(),
                            href: img.link.clone(),
                            width: img.width.map(|w| w.min(COLUMN)),
                            title: img.title.clone(),
                        });
                    }
                }
                Block::Button(btn) => {
                    flush(&mut text, &mut parts);
                    parts.push(Part::Button {
                        text: btn.text.clone(),
                        url: btn.url.clone(),
                    });
                }
                Block::Rule => {
                    flush(&mut text, &mut parts);
                    parts.push(Part::Divider);
                }
                other => self.block(other, section_level, &mut text),
            }
        }
        flush(&mut text, &mut parts);
        parts
    }

    fn block(&self, b: &Block, section_level: u8, out: &mut String) {
        match b {
            Block::Heading(h) => {
                // Section headings are h2; the post's deeper levels follow.
                let depth = h.level.saturating_sub(section_level).clamp(1, 3);
                let (tag, size) = match depth {
                    1 => ("h3", 19),
                    2 => ("h4", 17),
                    _ => ("h5", 16),
                };
                out.push_str(&format!(
                    "<{tag} style=\"margin:24px 0 8px;font-size:{size}px;line-height:1.35;font-weight:bold;color:{NAVY}\">"
                ));
                Writer { accent: NAVY }.push_inlines_apart(&h.inlines, out);
                out.push_str(&format!("</{tag}>\n"));
            }
            Block::Paragraph(i) => {
                out.push_str("<p style=\"margin:0 0 16px\">");
                self.push_inlines_apart(i, out);
                out.push_str("</p>\n");
            }
            Block::List { start, items } => {
                let (tag, start_attr) = match start {
                    Some(n) if *n != 1 => ("ol", format!(" start=\"{n}\"")),
                    Some(_) => ("ol", String::new()),
                    None => ("ul", String::new()),
                };
                out.push_str(&format!(
                    "<{tag}{start_attr} style=\"margin:0 0 16px;padding:0 0 0 24px\">"
                ));
                for item in items {
                    out.push_str("<li style=\"margin:0 0 8px\">");
                    // A tight item is one paragraph: no paragraph margins inside it.
                    match item.as_slice() {
                        [Block::Paragraph(i)] => self.push_inlines_apart(i, out),
                        blocks => {
                            for (n, b) in blocks.iter().enumerate() {
                                match b {
                                    Block::Paragraph(i) if n == 0 => {
                                        self.push_inlines_apart(i, out)
                                    }
                                    other => self.block(other, section_level, out),
                                }
                            }
                        }
                    }
                    out.push_str("</li>\n");
                }
                out.push_str(&format!("</{tag}>\n"));
            }
            Block::Quote(inner) => {
                out.push_str(&format!(
                    "<blockquote style=\"margin:0 0 16px;padding:4px 0 4px 16px;border-left:4px solid {};color:#3e4c59;font-style:italic\">",
                    self.accent
                ));
                for b in inner {
                    self.block(b, section_level, out);
                }
                out.push_str("</blockquote>\n");
            }
            Block::Code(code) => {
                out.push_str("<pre style=\"margin:0 0 16px;padding:12px;background:#f3f4f6;border-radius:4px;white-space:pre-wrap;word-break:break-word;font-family:Menlo,Consolas,monospace;font-size:13px;line-height:1.5\">");
                out.push_str(&html::text(code.trim_end_matches('\n')));
                out.push_str("</pre>\n");
            }
            Block::Table { head, rows } => self.table(head, rows, out),
            Block::Images(imgs) => {
                out.push_str("<p style=\"margin:0 0 16px\">");
                for img in imgs {
                    self.image(img, out);
                }
                out.push_str("</p>\n");
            }
            Block::Button(btn) => {
                out.push_str(&format!(
                    "<p style=\"margin:0 0 16px\"><a href=\"{}\" style=\"color:{};font-weight:bold;text-decoration:none\">{}</a></p>",
                    html::attr(&btn.url),
                    self.accent,
                    html::text(&btn.text)
                ));
            }
            Block::Rule => out.push_str(
                "<hr style=\"border:none;border-top:1px solid #d9dee4;margin:16px 0\" />",
            ),
        }
    }

    /// A table reads as a table where there is room, and as one block of
    /// "label: value" lines per row on a phone (`.hd-table` in the
    /// template's media query): squeezed into 319 px, a table's columns
    /// would break its words in the middle ("Diamon|d"), and forbidding
    /// that makes the page wider than the phone. The labels are the header
    /// cells, repeated in each cell and hidden until the media query shows
    /// them; mail programs without media queries (Outlook on Windows, Gmail
    /// for other accounts) show the desktop table. A table too wide for
    /// the 544 px column even on a desktop is laid out as rows there too.
    fn table(&self, head: &[Vec<Inline>], rows: &[Vec<Vec<Inline>>], out: &mut String) {
        // A table with a header row holds data: screen readers should
        // announce it as a table, each header cell naming its column.
        // One without is as likely layout, and is presented as such.
        let role = if head.is_empty() {
            " role=\"presentation\""
        } else {
            ""
        };
        let class = if table_min_width(head, rows) > COLUMN {
            "hd-table hd-table-wide"
        } else {
            "hd-table"
        };
        // word-break:normal: the break-word MJML puts around every text
        // lets a table shrink its columns until words break inside.
        out.push_str(&format!("<table class=\"{class}\"{role} style=\"width:100%;border-collapse:collapse;margin:0 0 16px;font-size:14px;line-height:1.4;word-break:normal\">"));
        if !head.is_empty() {
            out.push_str("<thead class=\"hd-head\"><tr>");
            for cell in head {
                out.push_str(&format!(
                    "<th scope=\"col\" style=\"text-align:left;padding:6px 8px;border-bottom:2px solid {NAVY};color:{NAVY}\">{}</th>",
                    self.inlines(cell)
                ));
            }
            out.push_str("</tr></thead>\n");
        }
        out.push_str("<tbody>");
        for row in rows {
            out.push_str("<tr>");
            for (n, cell) in row.iter().enumerate() {
                let label = head
                    .get(n)
                    .filter(|h| !Inline::plain(h).trim().is_empty())
                    .map(|h| {
                        format!(
                            "<span class=\"hd-label\" style=\"display:none;mso-hide:all;font-weight:bold;color:{NAVY}\">{}: </span>",
                            html::text(Inline::plain(h).trim().trim_end_matches(':'))
                        )
                    })
                    .unwrap_or_default();
                out.push_str(&format!(
                    "<td style=\"padding:6px 8px;border-bottom:1px solid #d9dee4;vertical-align:top\">{label}{}</td>",
                    self.inlines(cell)
                ));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody></table>\n");
    }

    fn image(&self, img: &Image, out: &mut String) {
        let width = img.width.map(|w| w.min(COLUMN)).unwrap_or(COLUMN);
        let tag = format!(
            // width:100% (capped by max-width) rather than max-width:100%: in
            // a table cell a percentage max-width does not stop a wide image
            // from stretching the cell, and the phone would scroll sideways.
            "<img src=\"{}\" alt=\"{}\" width=\"{width}\" style=\"display:block;width:100%;max-width:{width}px;height:auto;border:0\" />",
            html::attr(&img.src),
            html::attr(&img.alt)
        );
        match &img.link {
            Some(href) => out.push_str(&format!("<a href=\"{}\">{tag}</a>", html::attr(href))),
            None => out.push_str(&tag),
        }
    }

    /// A heading's inlines: a link in a heading keeps the heading's colour,
    /// written inline (Gmail's apps drop `<style>` blocks).
    fn heading_inlines(&self, inlines: &[Inline]) -> String {
        Writer { accent: NAVY }.inlines(inlines)
    }

    /// [`Self::inlines`] appended to `out`. Written apart first, as on a
    /// string of their own (their long lines break where
    /// [`push_text_breaking`] counts from their own start, not from what
    /// `out` holds before them), but in one buffer kept for every
    /// paragraph: a string for each, grown, copied and freed, was a
    /// quarter of writing the MJML of the annual report.
    fn push_inlines_apart(&self, inlines: &[Inline], out: &mut String) {
        thread_local! {
            static APART: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        APART.with_borrow_mut(|apart| {
            apart.clear();
            self.push_inlines(inlines, apart);
            out.push_str(apart);
        });
    }

    pub fn inlines(&self, inlines: &[Inline]) -> String {
        let mut out = String::new();
        self.push_inlines(inlines, &mut out);
        out
    }

    fn push_inlines(&self, inlines: &[Inline], out: &mut String) {
        for i in inlines {
            match i {
                Inline::Text(t) => push_text_breaking(out, t),
                Inline::Strong(c) => self.wrap("strong", c, out),
                Inline::Emph(c) => self.wrap("em", c, out),
                Inline::Strike(c) => self.wrap("s", c, out),
                Inline::Code(c) => {
                    out.push_str("<code style=\"font-family:Menlo,Consolas,monospace;font-size:0.9em;background:#f3f4f6;padding:1px 4px;border-radius:3px\">");
                    html::push_text(out, c);
                    out.push_str("</code>");
                }
                Inline::Break => out.push_str("<br />\n"),
                Inline::Image(img) => self.image(img, out),
                Inline::Link(l) => {
                    out.push_str("<a href=\"");
                    out.push_str(&html::attr(&l.url));
                    out.push_str("\" style=\"color:");
                    out.push_str(self.accent);
                    out.push_str(";text-decoration:underline\">");
                    if Inline::plain(&l.children).trim().is_empty()
                        && !l.children.iter().any(|c| matches!(c, Inline::Image(_)))
                    {
                        // An empty link would be invisible: show where it goes.
                        html::push_text(out, l.url.trim_start_matches("mailto:"));
                    } else {
                        self.push_inlines(&l.children, out);
                    }
                    out.push_str("</a>");
                }
            }
        }
    }

    fn wrap(&self, tag: &str, children: &[Inline], out: &mut String) {
        // Pushed piece by piece, with no string formatted for each tag.
        out.push('<');
        out.push_str(tag);
        out.push('>');
        self.push_inlines(children, out);
        out.push_str("</");
        out.push_str(tag);
        out.push('>');
    }
}

/// About how wide `head` and `rows` can be squeezed without breaking a
/// word, in CSS pixels: each column's longest word at the table's 14 px
/// (about 8.5 px a character, bold headers included) and its 16 px of
/// padding.
fn table_min_width(head: &[Vec<Inline>], rows: &[Vec<Vec<Inline>>]) -> u32 {
    let columns = std::iter::once(head)
        .chain(rows.iter().map(|r| r.as_slice()))
        .map(|r| r.len())
        .max()
        .unwrap_or(0);
    (0..columns)
        .map(|c| {
            let longest = std::iter::once(head)
                .chain(rows.iter().map(|r| r.as_slice()))
                .filter_map(|r| r.get(c))
                .flat_map(|cell| {
                    Inline::plain(cell)
                        .split(|ch: char| ch.is_whitespace() || ch == '-' || ch == '/')
                        .map(|w| w.chars().count())
                        .collect::<Vec<_>>()
                })
                .max()
                .unwrap_or(0);
            (longest as f64 * 8.5) as u32 + 16
        })
        .sum()
}

/// Escapes text, turning a space into a line break now and then: in HTML
/// they mean the same, and short lines let the HTML part travel as plain
/// 7-bit text instead of being quoted-printable encoded for every recipient.
fn push_text_breaking(out: &mut String, text: &str) {
    const LINE: usize = 200;
    // Only whether the line is over LINE matters, so look back no further:
    // a paragraph of 40,000 links with no space inside a text never breaks
    // its line, and searching the whole of it for each took 20 s (found by
    // probing every fuzz token at 10,000 and 40,000 repeats).
    let tail = &out.as_bytes()[out.len().saturating_sub(LINE + 1)..];
    let line_len = memchr::memrchr(b'\n', tail).map_or(tail.len(), |i| tail.len() - i - 1);
    // Copies the text in stretches between the bytes that change it (an
    // escape, a space that becomes a line break), found by memchr: escapes
    // are rare, and a space matters only once the line is over LINE, so
    // most bytes are never looked at one by one (a test of every byte was
    // a twentieth of `herald preview`). `base` is the line's length where
    // the stretch `from..` starts.
    let bytes = text.as_bytes();
    let (mut from, mut base) = (0, line_len);
    let mut i = 0;
    // The next byte to escape at or after `i` (bytes.len(): none), searched
    // again only once passed, so a long text is searched once, not once per
    // line break.
    let next_escape =
        |i: usize| memchr::memchr3(b'&', b'<', b'>', &bytes[i..]).map_or(bytes.len(), |n| i + n);
    let mut esc = next_escape(0);
    loop {
        if esc < i {
            esc = next_escape(i);
        }
        // The first space before a word at or after the first byte that
        // takes the line over LINE (`base + (at - from) > LINE`), before
        // the next escape.
        let mut at = (from + LINE + 1).saturating_sub(base).max(i);
        let mut brk = None;
        while at < esc {
            let Some(n) = memchr::memchr(b' ', &bytes[at..esc]) else {
                break;
            };
            at += n;
            if !matches!(bytes.get(at + 1), None | Some(b' ')) {
                brk = Some(at);
                break;
            }
            at += 1;
        }
        if let Some(at) = brk {
            out.push_str(&text[from..at]);
            out.push('\n');
            (from, base, i) = (at + 1, 0, at + 1);
            continue;
        }
        let escaped = match bytes.get(esc) {
            Some(b'&') => "&amp;",
            Some(b'<') => "&lt;",
            Some(b'>') => "&gt;",
            _ => break,
        };
        out.push_str(&text[from..esc]);
        out.push_str(escaped);
        (from, base) = (esc + 1, base + (esc - from) + escaped.len());
        i = esc + 1;
    }
    out.push_str(&text[from..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte-by-byte loop `push_text_breaking` replaced: the reference.
    fn push_text_breaking_bytewise(out: &mut String, text: &str) {
        const LINE: usize = 200;
        let tail = &out.as_bytes()[out.len().saturating_sub(LINE + 1)..];
        let line_len = memchr::memrchr(b'\n', tail).map_or(tail.len(), |i| tail.len() - i - 1);
        let bytes = text.as_bytes();
        let (mut from, mut base) = (0, line_len);
        for (i, &b) in bytes.iter().enumerate() {
            let escaped = match b {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b' ' if base + (i - from) > LINE
                    && !matches!(bytes.get(i + 1), None | Some(b' ')) =>
                {
                    out.push_str(&text[from..i]);
                    out.push('\n');
                    (from, base) = (i + 1, 0);
                    continue;
                }
                _ => continue,
            };
            out.push_str(&text[from..i]);
            out.push_str(escaped);
            (from, base) = (i + 1, base + (i - from) + escaped.len());
        }
        out.push_str(&text[from..]);
    }

    #[test]
    fn text_breaks_as_the_byte_by_byte_loop_did() {
        // Words of every length, runs of spaces, escapes alone and in runs,
        // a trailing space, after lines of every length already written.
        let pieces = [
            "a",
            "bc",
            "def",
            "  ",
            " ",
            "&",
            "<<",
            ">",
            "x&y",
            "\u{e9}t\u{e9}",
            "word",
            "longerword",
        ];
        let mut seed = 7u64;
        for round in 0..300 {
            let mut text = String::new();
            while text.len() < 40 + round * 5 {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                text.push_str(pieces[(seed >> 33) as usize % pieces.len()]);
                if seed >> 62 != 0 {
                    text.push(' ');
                }
            }
            let before = format!("{}\n{}", "z".repeat(9), "y".repeat(round % 230));
            let (mut fast, mut slow) = (before.clone(), before.clone());
            push_text_breaking(&mut fast, &text);
            push_text_breaking_bytewise(&mut slow, &text);
            assert_eq!(fast, slow, "{text:?} after {} bytes", round % 230);
        }
    }

    #[test]
    fn long_text_breaks_at_a_space_before_a_word_once_the_line_is_over_200() {
        let words = ["abcdefghi"; 30];
        let mut out = String::from("<p>");
        push_text_breaking(&mut out, &format!("{} & <x>  end ", words.join(" ")));
        // "<p>" and 20 words make 202 bytes: the next space breaks the line.
        assert_eq!(
            out,
            format!(
                "<p>{}\n{} &amp; &lt;x&gt;  end ",
                words[..20].join(" "),
                words[20..].join(" ")
            )
        );
        // Escapes count as what they are written as, and a space with no
        // word after it stays a space.
        let mut out = String::new();
        push_text_breaking(
            &mut out,
            &format!("{} x {} ", "&".repeat(50), "<".repeat(50)),
        );
        assert_eq!(
            out,
            format!("{}\nx {} ", "&amp;".repeat(50), "&lt;".repeat(50))
        );
        // The line so far is the text after the last line break already written.
        let before = format!("{}\n{}", "x".repeat(300), "y".repeat(195));
        for (text, expected) in [
            ("ab cd", "ab cd"),
            ("abcd ef", "abcd ef"),
            ("abcdef gh", "abcdef\ngh"),
        ] {
            let mut out = before.clone();
            push_text_breaking(&mut out, text);
            assert_eq!(&out[before.len()..], expected);
        }
    }

    #[test]
    fn dark_mode_colours_read_on_the_dark_card() {
        let card = Dark::CARD;
        let d = Dark::new("#c5283d");
        for c in [d.text, d.heading, d.muted, d.link.as_str()] {
            assert!(contrast(parse_hex(c).unwrap(), card) >= 4.5, "{c}");
        }
        // A dark accent is lightened further; a light one is kept as it is.
        for accent in ["#000080", "#1b2a4a", "#c5283d", "#ff9900"] {
            let link = readable_on(accent, card);
            assert!(
                contrast(parse_hex(&link).unwrap(), card) >= 4.5,
                "{accent} -> {link}"
            );
        }
        assert_eq!(readable_on("#ff9900", card), "#ff9900");
        assert!((contrast([0, 0, 0], [255, 255, 255]) - 21.0).abs() < 1e-9);
    }
}
