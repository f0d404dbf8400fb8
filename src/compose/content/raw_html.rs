//! Raw HTML in the post becomes the same model the Markdown does: its tags
//! open and close the builder's elements, because mrml rejects malformed
//! HTML and email clients mangle `<div style>`.

use std::collections::BTreeMap;

use super::markdown::{BlocksKind, Builder, Frame, InlineKind};
use super::{Block, Inline};
use crate::findings::Severity;

const SKIP_WITH_CONTENT: &[&str] = &[
    "script", "style", "head", "title", "template", "noscript", "svg", "math", "select",
    "textarea", "object", "canvas", "map",
];
const EMBEDS: &[&str] = &["iframe", "video", "audio", "embed"];
/// Wrappers whose removal loses nothing a reader would miss.
const QUIET_UNWRAP: &[&str] = &[
    "span", "section", "article", "header", "footer", "main", "figure", "tbody", "thead", "tfoot",
    "html", "body", "center", "abbr", "cite", "time", "small", "nav", "aside",
];

impl Builder<'_> {
    pub(super) fn html(&mut self, html: &str) {
        use html5gum::{Token, Tokenizer};
        for token in Tokenizer::new(html).flatten() {
            match token {
                Token::StartTag(tag) => {
                    let name = String::from_utf8_lossy(&tag.name).to_ascii_lowercase();
                    let attrs: BTreeMap<String, String> = tag
                        .attributes
                        .iter()
                        .map(|(k, v)| {
                            (
                                String::from_utf8_lossy(k).to_ascii_lowercase(),
                                String::from_utf8_lossy(v).into_owned(),
                            )
                        })
                        .collect();
                    self.html_start(&name, &attrs, tag.self_closing);
                }
                Token::EndTag(tag) => {
                    let name = String::from_utf8_lossy(&tag.name).to_ascii_lowercase();
                    self.html_end(&name);
                }
                Token::String(s) => {
                    if self.skipping.is_none() {
                        let s = String::from_utf8_lossy(&s);
                        let collapsed = collapse_inner_ws(&s);
                        self.text(&collapsed);
                    }
                }
                Token::Comment(_) | Token::Doctype(_) | Token::Error(_) => {}
            }
        }
    }

    pub(super) fn html_start(
        &mut self,
        name: &str,
        attrs: &BTreeMap<String, String>,
        self_closing: bool,
    ) {
        if let Some((tag, depth)) = &mut self.skipping {
            if tag == name && !self_closing {
                *depth += 1;
            }
            return;
        }
        let html = Some(name.to_string());
        match name {
            "p" | "div" => self.html_paragraph(attrs, html),
            "ul" | "ol" => {
                let start = if name == "ol" {
                    Some(
                        attrs
                            .get("start")
                            .and_then(|s| s.trim().parse().ok())
                            .unwrap_or(1),
                    )
                } else {
                    None
                };
                self.open_block(
                    Frame::List {
                        start,
                        items: vec![],
                    },
                    html,
                )
            }
            "li" => self.open_item(html),
            "blockquote" => self.open_block(
                Frame::Blocks {
                    kind: BlocksKind::Quote,
                    blocks: vec![],
                },
                html,
            ),
            "pre" => self.open_block(
                Frame::Code {
                    text: String::new(),
                },
                html,
            ),
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                self.open_heading(name[1..].parse().unwrap_or(2), html)
            }
            "table" => self.open_block(
                Frame::Table {
                    head: vec![],
                    rows: vec![],
                    in_head: false,
                },
                html,
            ),
            "thead" => {
                if let Some(Frame::Table { in_head, .. }) = self.top_frame_mut() {
                    *in_head = true;
                }
            }
            "tr" => self.html_row(html),
            "td" | "th" => self.html_cell(html),
            "strong" | "b" => self.open_inline(InlineKind::Strong, html),
            "em" | "i" => self.open_inline(InlineKind::Emph, html),
            "s" | "del" | "strike" => self.open_inline(InlineKind::Strike, html),
            "code" | "tt" | "kbd" => self.open_inline(InlineKind::Code, html),
            // An anchor without href is only a bookmark.
            "a" => {
                if let Some(href) = attrs.get("href") {
                    self.open_inline(InlineKind::Link { url: href.clone() }, html)
                }
            }
            "img" => self.html_image(attrs),
            "br" => self.push_inline(Inline::Break),
            "hr" => self.push_block(Block::Rule),
            _ if EMBEDS.contains(&name) => self.html_embed(name, attrs, self_closing),
            _ if SKIP_WITH_CONTENT.contains(&name) => {
                self.note(
                    Severity::Warning,
                    "html-changed",
                    format!("the <{name}> element was removed with its content; email programs do not run or show it"),
                    "Remove it from the post, or check the email still says everything without it.",
                );
                if !self_closing {
                    self.skipping = Some((name.to_string(), 1));
                }
            }
            _ if QUIET_UNWRAP.contains(&name) => {}
            _ => self.note(
                Severity::Warning,
                "html-changed",
                format!("the <{name}> tag was removed; its text is kept"),
                "Check the email still reads as intended, or write that part in Markdown.",
            ),
        }
    }

    /// `<p>` and `<div>`: a paragraph (carrying the tag, so `</div>` knows
    /// where it ends, and the width a `<div>` gives its picture).
    fn html_paragraph(&mut self, attrs: &BTreeMap<String, String>, html: Option<String>) {
        // Inside a link or emphasis a block tag cannot end the
        // element; the inline content just goes on.
        if matches!(self.stack.last().map(|f| &f.frame), Some(Frame::Inlines { kind, .. }) if !matches!(kind, InlineKind::Paragraph { implicit: true }))
        {
            return;
        }
        self.close_implicit_paragraph();
        let width = style_px(attrs, "max-width").or_else(|| style_px(attrs, "width"));
        // The paragraph carries the tag, so `</div>` knows where it ends.
        self.open_implicit_paragraph();
        if let Some(top) = self.stack.last_mut() {
            top.html = html;
            top.width = width;
        }
    }

    /// `<tr>`: a new row, closing an open one that came from HTML too.
    fn html_row(&mut self, html: Option<String>) {
        self.close_inlines();
        if let Some(i) = self
            .stack
            .iter()
            .rposition(|f| matches!(f.frame, Frame::Row { .. }))
            && self.stack[i].html.is_some()
        {
            self.close_through(i);
        }
        self.open(Frame::Row { cells: vec![] }, html)
    }

    /// `<td>` and `<th>`: a cell, closing the open one, in a row (one is
    /// opened for a cell outside any).
    fn html_cell(&mut self, html: Option<String>) {
        if let Some(i) = self.stack.iter().rposition(|f| {
            matches!(
                f.frame,
                Frame::Inlines {
                    kind: InlineKind::Cell,
                    ..
                }
            )
        }) {
            self.close_through(i);
        }
        if !matches!(self.top_frame_mut(), Some(Frame::Row { .. })) {
            self.open(Frame::Row { cells: vec![] }, None);
        }
        self.open_cell(html)
    }

    /// `<img>`: a picture, its `alt` as its text, its width from the
    /// attribute or the style.
    fn html_image(&mut self, attrs: &BTreeMap<String, String>) {
        let src = attrs.get("src").cloned().unwrap_or_default();
        let width = attrs
            .get("width")
            .and_then(|w| w.trim().trim_end_matches("px").parse().ok())
            .or_else(|| style_px(attrs, "width"))
            .or_else(|| style_px(attrs, "max-width"));
        self.open_inline(
            InlineKind::Image {
                src,
                title: attrs.get("title").cloned().filter(|t| !t.trim().is_empty()),
                width,
            },
            None,
        );
        if let Some(alt) = attrs.get("alt") {
            self.push_inline(Inline::Text(alt.clone()));
        }
        self.close_top();
    }

    /// An embed (`<iframe>`, `<video>`...): a link to what it shows, its
    /// content skipped.
    fn html_embed(&mut self, name: &str, attrs: &BTreeMap<String, String>, self_closing: bool) {
        if let Some(src) = attrs.get("src").filter(|s| !s.trim().is_empty()) {
            self.note(
                Severity::Warning,
                "html-changed",
                format!("an embedded <{name}> cannot play in email; it became a link to {src}"),
                "Check the link reads well, or replace the embed with a picture linking to it.",
            );
            self.close_implicit_paragraph();
            self.open_inline(InlineKind::Link { url: src.clone() }, None);
            self.push_inline(Inline::Text("Watch it on the web".into()));
            self.close_inlines();
        } else {
            self.note(
                Severity::Warning,
                "html-changed",
                format!("an embedded <{name}> with no address was removed"),
                "Replace the embed with a picture and a link.",
            );
        }
        if !self_closing && name != "embed" {
            self.skipping = Some((name.to_string(), 1));
        }
    }

    pub(super) fn html_end(&mut self, name: &str) {
        if let Some((tag, depth)) = &mut self.skipping {
            if tag == name {
                *depth -= 1;
                if *depth == 0 {
                    self.skipping = None;
                }
            }
            return;
        }
        let name = match name {
            "b" => "strong",
            "i" => "em",
            other => other,
        };
        if name == "thead" {
            if let Some(Frame::Table { in_head, .. }) = self.top_frame_mut() {
                *in_head = false;
            }
            return;
        }
        let found = self.stack.iter().rposition(|f| {
            f.html.as_deref().map(|h| match h {
                "b" => "strong",
                "i" => "em",
                other => other,
            }) == Some(name)
        });
        if let Some(i) = found {
            self.close_through(i);
        }
    }
}

/// A pixel value from `style="... name: 300px"`.
fn style_px(attrs: &BTreeMap<String, String>, name: &str) -> Option<u32> {
    let style = attrs.get("style")?;
    style.split(';').find_map(|decl| {
        let (k, v) = decl.split_once(':')?;
        (k.trim().eq_ignore_ascii_case(name))
            .then(|| {
                v.trim()
                    .strip_suffix("px")?
                    .trim()
                    .parse::<f32>()
                    .ok()
                    .map(|f| f as u32)
            })
            .flatten()
    })
}

/// Whitespace inside HTML text is not significant: runs become one space.
fn collapse_inner_ws(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut last_space = false;
    for c in s.chars() {
        if c.is_ascii_whitespace() {
            if !last_space {
                out.push(' ');
            }
            last_space = true;
        } else {
            out.push(c);
            last_space = false;
        }
    }
    out
}
