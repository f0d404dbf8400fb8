//! The builder: a stack of open elements fed by Markdown events and by the
//! tags of raw HTML alike (those are translated in [`super::raw_html`]).

use pulldown_cmark::{Event, HeadingLevel, Parser, Tag, TagEnd};

use super::{
    Block, Heading, Image, Inline, Link, collapse_ws, is_blank, plain_block, trim_inlines,
};
use crate::compose::post::Post;
use crate::findings::{Finding, Severity};
use crate::urls::{self, Base};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BlocksKind {
    Root,
    Item,
    Quote,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum InlineKind {
    /// `implicit`: opened by herald for loose text, not by the post.
    Paragraph {
        implicit: bool,
    },
    Heading(u8),
    Strong,
    Emph,
    Strike,
    Code,
    Link {
        url: String,
    },
    Image {
        src: String,
        title: Option<String>,
        width: Option<u32>,
    },
    Cell,
}

#[derive(Debug)]
pub(super) enum Frame {
    Blocks {
        kind: BlocksKind,
        blocks: Vec<Block>,
    },
    List {
        start: Option<u64>,
        items: Vec<Vec<Block>>,
    },
    Inlines {
        kind: InlineKind,
        inlines: Vec<Inline>,
        line: usize,
    },
    Code {
        text: String,
    },
    Table {
        head: Vec<Vec<Inline>>,
        rows: Vec<Vec<Vec<Inline>>>,
        in_head: bool,
    },
    Row {
        cells: Vec<Vec<Inline>>,
    },
}

pub(super) struct OpenFrame {
    pub(super) frame: Frame,
    /// The HTML tag that opened it, so `</tag>` closes the right thing.
    pub(super) html: Option<String>,
    /// A width limit set by a `<div style="max-width: ...">` around it.
    pub(super) width: Option<u32>,
}

pub(super) struct Builder<'a> {
    pub(super) post: &'a Post,
    pub(super) base: Base,
    pub(super) stack: Vec<OpenFrame>,
    pub(super) findings: Vec<Finding>,
    pub(super) line_starts: Vec<usize>,
    pub(super) line: usize,
    /// Inside `<script>`, `<style>` and the like: the tag and its depth.
    pub(super) skipping: Option<(String, usize)>,
}

impl<'a> Builder<'a> {
    pub(super) fn new(post: &'a Post, base: Base) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(post.body.match_indices('\n').map(|(i, _)| i + 1));
        Builder {
            post,
            base,
            stack: vec![OpenFrame {
                frame: Frame::Blocks {
                    kind: BlocksKind::Root,
                    blocks: Vec::new(),
                },
                html: None,
                width: None,
            }],
            findings: Vec::new(),
            line_starts,
            line: post.body_line,
            skipping: None,
        }
    }

    pub(super) fn line_at(&self, offset: usize) -> usize {
        let idx = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        self.post.body_line + idx
    }

    pub(super) fn note(
        &mut self,
        severity: Severity,
        code: &'static str,
        message: String,
        fix: &str,
    ) {
        self.findings.push(Finding {
            severity,
            code,
            line: Some(self.line),
            message,
            fix: fix.to_string(),
        });
    }

    /// Builds from the events of `body`, measuring its nesting as
    /// [`crate::limits::nesting`] does; `false` (and nothing more built)
    /// once it is deeper than [`crate::limits::MAX_NESTING`]: the builder
    /// recurses once per level on the way out.
    pub(super) fn run(&mut self, body: &str) -> bool {
        let mut nesting = crate::limits::Nesting::default();
        let mut html_block: Option<String> = None;
        for (event, range) in Parser::new_ext(body, crate::limits::MARKDOWN).into_offset_iter() {
            nesting.event(&event, range.start);
            if nesting.too_deep() {
                return false;
            }
            self.line = self.line_at(range.start);
            match event {
                Event::Start(Tag::HtmlBlock) => html_block = Some(String::new()),
                Event::End(TagEnd::HtmlBlock) => {
                    if let Some(html) = html_block.take() {
                        self.line = self.line_at(range.start);
                        self.html(&html);
                    }
                }
                Event::Html(s) if html_block.is_some() => {
                    html_block.get_or_insert_with(String::new).push_str(&s)
                }
                Event::Html(s) | Event::InlineHtml(s) => self.html(&s),
                Event::Start(tag) => self.start(tag),
                Event::End(tag) => self.end(tag),
                Event::Text(t) => self.text(&t),
                Event::Code(c) => self.push_inline(Inline::Code(c.to_string())),
                Event::SoftBreak => self.text(" "),
                Event::HardBreak => self.push_inline(Inline::Break),
                Event::Rule => self.push_block(Block::Rule),
                Event::TaskListMarker(done) => self.text(if done { "[x] " } else { "[ ] " }),
                Event::FootnoteReference(r) => self.text(&format!("[{r}]")),
                Event::InlineMath(m) | Event::DisplayMath(m) => self.text(&m),
            }
        }
        true
    }

    pub(super) fn start(&mut self, tag: Tag) {
        match tag {
            Tag::Paragraph => {
                self.close_implicit_paragraph();
                self.open(
                    Frame::Inlines {
                        kind: InlineKind::Paragraph { implicit: false },
                        inlines: vec![],
                        line: self.line,
                    },
                    None,
                );
            }
            Tag::Heading { level, .. } => self.open_heading(heading_level(level), None),
            Tag::BlockQuote(_) => self.open_block(
                Frame::Blocks {
                    kind: BlocksKind::Quote,
                    blocks: vec![],
                },
                None,
            ),
            Tag::CodeBlock(_) => self.open_block(
                Frame::Code {
                    text: String::new(),
                },
                None,
            ),
            Tag::List(start) => self.open_block(
                Frame::List {
                    start,
                    items: vec![],
                },
                None,
            ),
            Tag::Item => self.open_item(None),
            Tag::Table(_) => self.open_block(
                Frame::Table {
                    head: vec![],
                    rows: vec![],
                    in_head: false,
                },
                None,
            ),
            Tag::TableHead => {
                if let Some(Frame::Table { in_head, .. }) = self.top_frame_mut() {
                    *in_head = true;
                }
                self.open(Frame::Row { cells: vec![] }, None);
            }
            Tag::TableRow => self.open(Frame::Row { cells: vec![] }, None),
            Tag::TableCell => self.open_cell(None),
            Tag::Emphasis => self.open_inline(InlineKind::Emph, None),
            Tag::Strong => self.open_inline(InlineKind::Strong, None),
            Tag::Strikethrough => self.open_inline(InlineKind::Strike, None),
            Tag::Link { dest_url, .. } => self.open_inline(
                InlineKind::Link {
                    url: dest_url.to_string(),
                },
                None,
            ),
            Tag::Image {
                dest_url, title, ..
            } => self.open_inline(
                InlineKind::Image {
                    src: dest_url.to_string(),
                    title: Some(title.to_string()).filter(|t| !t.trim().is_empty()),
                    width: None,
                },
                None,
            ),
            _ => {}
        }
    }

    pub(super) fn end(&mut self, tag: TagEnd) {
        let is_match = |f: &Frame| -> bool {
            #[allow(clippy::match_like_matches_macro)]
            match (&tag, f) {
                (
                    TagEnd::Paragraph,
                    Frame::Inlines {
                        kind: InlineKind::Paragraph { implicit: false },
                        ..
                    },
                ) => true,
                (
                    TagEnd::Heading(_),
                    Frame::Inlines {
                        kind: InlineKind::Heading(_),
                        ..
                    },
                ) => true,
                (
                    TagEnd::BlockQuote(_),
                    Frame::Blocks {
                        kind: BlocksKind::Quote,
                        ..
                    },
                ) => true,
                (TagEnd::CodeBlock, Frame::Code { .. }) => true,
                (TagEnd::List(_), Frame::List { .. }) => true,
                (
                    TagEnd::Item,
                    Frame::Blocks {
                        kind: BlocksKind::Item,
                        ..
                    },
                ) => true,
                (TagEnd::Table, Frame::Table { .. }) => true,
                (TagEnd::TableHead | TagEnd::TableRow, Frame::Row { .. }) => true,
                (
                    TagEnd::TableCell,
                    Frame::Inlines {
                        kind: InlineKind::Cell,
                        ..
                    },
                ) => true,
                (
                    TagEnd::Emphasis,
                    Frame::Inlines {
                        kind: InlineKind::Emph,
                        ..
                    },
                ) => true,
                (
                    TagEnd::Strong,
                    Frame::Inlines {
                        kind: InlineKind::Strong,
                        ..
                    },
                ) => true,
                (
                    TagEnd::Strikethrough,
                    Frame::Inlines {
                        kind: InlineKind::Strike,
                        ..
                    },
                ) => true,
                (
                    TagEnd::Link,
                    Frame::Inlines {
                        kind: InlineKind::Link { .. },
                        ..
                    },
                ) => true,
                (
                    TagEnd::Image,
                    Frame::Inlines {
                        kind: InlineKind::Image { .. },
                        ..
                    },
                ) => true,
                _ => false,
            }
        };
        if let Some(i) = self
            .stack
            .iter()
            .rposition(|f| f.html.is_none() && is_match(&f.frame))
        {
            self.close_through(i);
            if matches!(tag, TagEnd::TableHead)
                && let Some(Frame::Table { in_head, .. }) = self.top_frame_mut()
            {
                *in_head = false;
            }
        }
    }

    // -- stack operations --------------------------------------------------

    pub(super) fn top_frame_mut(&mut self) -> Option<&mut Frame> {
        self.stack.last_mut().map(|f| &mut f.frame)
    }

    pub(super) fn width_limit(&self) -> Option<u32> {
        self.stack.iter().rev().find_map(|f| f.width)
    }

    pub(super) fn open(&mut self, frame: Frame, html: Option<String>) {
        self.stack.push(OpenFrame {
            frame,
            html,
            width: None,
        });
    }

    pub(super) fn open_inline(&mut self, kind: InlineKind, html: Option<String>) {
        self.ensure_inline_context();
        let line = self.line;
        self.open(
            Frame::Inlines {
                kind,
                inlines: vec![],
                line,
            },
            html,
        );
    }

    pub(super) fn open_heading(&mut self, level: u8, html: Option<String>) {
        self.close_inlines();
        let line = self.line;
        self.open(
            Frame::Inlines {
                kind: InlineKind::Heading(level),
                inlines: vec![],
                line,
            },
            html,
        );
    }

    /// Opens a block-level element: any open paragraph or inline element ends first.
    pub(super) fn open_block(&mut self, frame: Frame, html: Option<String>) {
        self.close_inlines();
        if matches!(self.top_frame_mut(), Some(Frame::List { .. }))
            && !matches!(frame, Frame::List { .. })
        {
            self.open_item(None);
        }
        self.open(frame, html);
    }

    pub(super) fn open_item(&mut self, html: Option<String>) {
        self.close_inlines();
        // `<li>` without `</li>` before the next `<li>`, or outside any list.
        if html.is_some()
            && let Some(i) = self.stack.iter().rposition(|f| {
                matches!(
                    f.frame,
                    Frame::List { .. }
                        | Frame::Blocks {
                            kind: BlocksKind::Item,
                            ..
                        }
                )
            })
            && matches!(
                self.stack[i].frame,
                Frame::Blocks {
                    kind: BlocksKind::Item,
                    ..
                }
            )
            && self.stack[i].html.is_some()
        {
            self.close_through(i);
        }
        if !matches!(self.top_frame_mut(), Some(Frame::List { .. })) {
            self.open(
                Frame::List {
                    start: None,
                    items: vec![],
                },
                Some("ul".into()),
            );
        }
        self.open(
            Frame::Blocks {
                kind: BlocksKind::Item,
                blocks: vec![],
            },
            html,
        );
    }

    /// Ends every open inline element and paragraph, up to the nearest block container.
    pub(super) fn close_inlines(&mut self) {
        while let Some(top) = self.stack.last() {
            match top.frame {
                Frame::Inlines {
                    kind: InlineKind::Cell,
                    ..
                } => break,
                Frame::Inlines { .. } => self.close_top(),
                _ => break,
            }
        }
    }

    pub(super) fn close_implicit_paragraph(&mut self) {
        if matches!(
            self.stack.last().map(|f| &f.frame),
            Some(Frame::Inlines {
                kind: InlineKind::Paragraph { implicit: true },
                ..
            })
        ) {
            self.close_top();
        }
    }

    /// Makes sure the top of the stack takes inline content.
    pub(super) fn ensure_inline_context(&mut self) {
        match self.stack.last().map(|f| &f.frame) {
            Some(Frame::Inlines { .. }) => {}
            Some(Frame::List { .. }) => {
                self.open_item(None);
                self.open_implicit_paragraph();
            }
            Some(Frame::Table { .. }) => {
                self.open(Frame::Row { cells: vec![] }, None);
                self.open_cell(None);
            }
            Some(Frame::Row { .. }) => {
                self.open_cell(None);
            }
            _ => self.open_implicit_paragraph(),
        }
    }

    pub(super) fn open_cell(&mut self, html: Option<String>) {
        let line = self.line;
        self.open(
            Frame::Inlines {
                kind: InlineKind::Cell,
                inlines: vec![],
                line,
            },
            html,
        );
    }

    pub(super) fn open_implicit_paragraph(&mut self) {
        let line = self.line;
        self.open(
            Frame::Inlines {
                kind: InlineKind::Paragraph { implicit: true },
                inlines: vec![],
                line,
            },
            None,
        );
    }

    pub(super) fn close_through(&mut self, index: usize) {
        while self.stack.len() > index.max(1) {
            self.close_top();
        }
    }

    pub(super) fn close_top(&mut self) {
        if self.stack.len() <= 1 {
            return;
        }
        let OpenFrame { frame, width, .. } = self.stack.pop().expect("checked above");
        match frame {
            Frame::Blocks {
                kind: BlocksKind::Item,
                blocks,
            } => match self.top_frame_mut() {
                Some(Frame::List { items, .. }) => items.push(blocks),
                _ => {
                    for b in blocks {
                        self.push_block(b)
                    }
                }
            },
            Frame::Blocks {
                kind: BlocksKind::Quote,
                blocks,
            } => self.push_block(Block::Quote(blocks)),
            Frame::Blocks {
                kind: BlocksKind::Root,
                ..
            } => unreachable!("root is never popped"),
            Frame::List { start, items } => {
                if !items.is_empty() {
                    self.push_block(Block::List { start, items })
                }
            }
            Frame::Code { text } => self.push_block(Block::Code(text)),
            Frame::Table { head, rows, .. } => self.push_block(Block::Table { head, rows }),
            Frame::Row { cells } => {
                if let Some(Frame::Table {
                    head,
                    rows,
                    in_head,
                }) = self.top_frame_mut()
                {
                    if *in_head && head.is_empty() {
                        *head = cells;
                    } else {
                        rows.push(cells);
                    }
                }
            }
            Frame::Inlines {
                kind,
                inlines,
                line,
            } => self.fold_inlines(kind, inlines, line, width),
        }
    }

    pub(super) fn fold_inlines(
        &mut self,
        kind: InlineKind,
        inlines: Vec<Inline>,
        line: usize,
        width: Option<u32>,
    ) {
        match kind {
            InlineKind::Paragraph { .. } => {
                if !is_blank(&inlines) {
                    self.push_block(Block::Paragraph(trim_inlines(inlines)))
                }
            }
            InlineKind::Heading(level) => self.push_block(Block::Heading(Heading {
                level,
                inlines: trim_inlines(inlines),
                line,
            })),
            InlineKind::Strong => self.push_inline(Inline::Strong(inlines)),
            InlineKind::Emph => self.push_inline(Inline::Emph(inlines)),
            InlineKind::Strike => self.push_inline(Inline::Strike(inlines)),
            InlineKind::Code => self.push_inline(Inline::Code(Inline::plain(&inlines))),
            InlineKind::Cell => {
                if let Some(Frame::Row { cells }) = self.top_frame_mut() {
                    cells.push(trim_inlines(inlines));
                }
            }
            InlineKind::Link { url } => self.fold_link(&url, inlines, line),
            InlineKind::Image {
                src,
                title,
                width: own,
            } => self.fold_image(&src, title, own, inlines, line, width),
        }
    }

    /// A link's text becomes a link (its address made absolute); a link
    /// with no text, or an address that cannot be used, leaves its text.
    fn fold_link(&mut self, url: &str, inlines: Vec<Inline>, line: usize) {
        let saved = self.line;
        self.line = line;
        if is_blank(&inlines) && !inlines.iter().any(|i| matches!(i, Inline::Image(_))) {
            // An empty link shows nothing; in a heading it is usually a stray anchor.
            self.note(
                Severity::Warning,
                "empty-link",
                format!("a link to {} has no text, so nobody can see or click it; it is left out", url.trim()),
                "Put the words to click in the brackets, `[Register now](https://...)`, or remove the link.",
            );
            for i in inlines {
                self.push_inline(i)
            }
            self.line = saved;
            return;
        }
        match self.fix_url(url, "link") {
            Some(fixed) => {
                // A link that shows its own address shows the one
                // it goes to (a youtu.be link is written out: see
                // urls::absolutize), so no shortener is left in the text.
                let shows_address = matches!(inlines.as_slice(),
                    [Inline::Text(t)] if t.trim() == url.trim() && t.contains("youtu.be/"));
                let children = if shows_address {
                    vec![Inline::Text(fixed.clone())]
                } else {
                    inlines
                };
                self.push_inline(Inline::Link(Link {
                    url: fixed,
                    children,
                    line,
                }))
            }
            None => {
                for i in inlines {
                    self.push_inline(i)
                }
            }
        }
        self.line = saved;
    }

    /// A picture, its width the smaller of its own and the room it has.
    fn fold_image(
        &mut self,
        src: &str,
        title: Option<String>,
        own: Option<u32>,
        inlines: Vec<Inline>,
        line: usize,
        width: Option<u32>,
    ) {
        let saved = self.line;
        self.line = line;
        let alt = collapse_ws(&Inline::plain(&inlines));
        let width = match (own, width.or(self.width_limit())) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if src.trim().is_empty() {
            self.note(
                Severity::Warning,
                "empty-image",
                "an image has no file (`![]()`); it is left out of the email".into(),
                "Remove the empty image from the post, or give it a file such as `![Alt text](/img/picture.png)`.",
            );
        } else if let Some(src) = self.fix_url(src, "image") {
            self.push_inline(Inline::Image(Image {
                src,
                alt,
                alt_derived: false,
                title,
                link: None,
                width,
                line,
            }));
        }
        self.line = saved;
    }

    pub(super) fn push_inline(&mut self, inline: Inline) {
        self.ensure_inline_context();
        if let Some(Frame::Inlines { inlines, .. }) = self.top_frame_mut() {
            if let (Inline::Text(new), Some(Inline::Text(prev))) = (&inline, inlines.last_mut()) {
                prev.push_str(new);
                return;
            }
            inlines.push(inline);
        }
    }

    pub(super) fn push_block(&mut self, block: Block) {
        self.close_inlines();
        if matches!(
            self.top_frame_mut(),
            Some(Frame::List { .. } | Frame::Table { .. } | Frame::Row { .. })
        ) {
            if matches!(self.top_frame_mut(), Some(Frame::List { .. })) {
                self.open_item(None);
            } else {
                // A block inside a table outside any cell: put it after the table.
                let i = self
                    .stack
                    .iter()
                    .rposition(|f| matches!(f.frame, Frame::Table { .. }))
                    .unwrap_or(1);
                self.close_through(i);
            }
        }
        match self.top_frame_mut() {
            Some(Frame::Blocks { blocks, .. }) => blocks.push(block),
            Some(Frame::Code { text }) => text.push_str(&plain_block(&block)),
            _ => {}
        }
    }

    pub(super) fn text(&mut self, t: &str) {
        if let Some(Frame::Code { text }) = self.top_frame_mut() {
            text.push_str(t);
            return;
        }
        if t.trim().is_empty() && !matches!(self.top_frame_mut(), Some(Frame::Inlines { .. })) {
            return;
        }
        self.push_inline(Inline::Text(t.to_string()));
    }

    pub(super) fn fix_url(&mut self, raw: &str, what: &str) -> Option<String> {
        match urls::absolutize(raw, &self.base) {
            Ok(fixed) => {
                if let Some(repair) = fixed.repaired {
                    self.note(
                        Severity::Notice,
                        "url-repaired",
                        format!(
                            "the {what} `{}` was repaired ({repair}): `{}`",
                            raw.trim(),
                            fixed.url
                        ),
                        "Correct the address in the post so the website gets it right too.",
                    );
                }
                if fixed.url.starts_with("http://") {
                    self.note(
                        Severity::Notice,
                        "http-link",
                        format!(
                            "the {what} {} is plain `http:`; some mail programs and browsers warn before opening it",
                            fixed.url
                        ),
                        "Use the `https:` address if the site has one (open it in a browser to see).",
                    );
                }
                Some(fixed.url)
            }
            Err(why) if what == "image" && raw.trim_start().starts_with("data:") => {
                let kb = raw.len() / 1024;
                self.note(
                    Severity::Warning,
                    "embedded-image",
                    format!("{why}, {kb} KB; email programs do not show such images, so it is left out"),
                    "Upload the picture to the website (static/img/) and use its address, like `![Alt](/img/picture.png)`.",
                );
                None
            }
            Err(why) => {
                // A scheme herald does not make links of (`javascript:`,
                // `data:`, `file:`...) is an error: it is either an attack
                // or a link that silently disappears. A malformed address
                // is a warning, as before.
                let severity = if urls::refused_scheme(raw).is_some() {
                    Severity::Error
                } else {
                    Severity::Warning
                };
                self.note(
                    severity,
                    "bad-url",
                    format!("the {what} `{}` cannot be used: {why}; its text is kept without the {what}", raw.trim()),
                    "Fix the address in the post: it should start with https:// or /.",
                );
                None
            }
        }
    }

    pub(super) fn finish(mut self) -> (Vec<Block>, Vec<Finding>) {
        self.close_through(1);
        let root = self.stack.pop().expect("root frame");
        match root.frame {
            Frame::Blocks { blocks, .. } => (blocks, self.findings),
            _ => unreachable!("root is a block container"),
        }
    }
}

fn heading_level(level: HeadingLevel) -> u8 {
    match level {
        HeadingLevel::H1 => 1,
        HeadingLevel::H2 => 2,
        HeadingLevel::H3 => 3,
        HeadingLevel::H4 => 4,
        HeadingLevel::H5 => 5,
        HeadingLevel::H6 => 6,
    }
}
