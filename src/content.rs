//! Stage 2: the post's Markdown (and the raw HTML the CMS lets in) becomes a
//! [`Content`] model that both the HTML and the plain-text renderers read.
//!
//! Raw HTML is not passed through: its tags are turned into the same model
//! the Markdown produces (`<ul><li>` is a list, `<div><a><img></a></div>` is
//! a linked image, `<br />` a line break), because mrml rejects malformed
//! HTML and email clients mangle `<div style>`. Tags herald does not know are
//! removed with their text kept, and each change is reported by `check`.

use std::collections::BTreeMap;

use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};

use crate::config::Config;
use crate::findings::{Finding, Severity};
use crate::post::{Kind, Post};
use crate::urls::{self, Base};

/// The whole issue, ready to render.
#[derive(Debug, Clone)]
pub struct Content {
    pub title: String,
    /// The line above the title: the newsletter's name, or a report's subtitle.
    pub kicker: String,
    /// "May 28, 2025" for posts, the year for annual reports.
    pub date_label: Option<String>,
    /// The hidden line inbox lists show after the subject (`seo.description`).
    pub preheader: Option<String>,
    /// The web version of the post (`seo.url`, absolute).
    pub web_url: Option<String>,
    /// What comes before the first top-level heading.
    pub intro: Vec<Block>,
    pub sections: Vec<Section>,
    /// What herald changed or could not use while reading the post.
    pub findings: Vec<Finding>,
}

/// A top-level section: a heading of the highest level used in the post and
/// everything up to the next one.
#[derive(Debug, Clone)]
pub struct Section {
    pub heading: Heading,
    /// The anchor the website gives this heading, for links to the web version.
    pub anchor: String,
    pub blocks: Vec<Block>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Heading {
    pub level: u8,
    pub inlines: Vec<Inline>,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    Heading(Heading),
    Paragraph(Vec<Inline>),
    List {
        /// The first number of an ordered list; `None` for bullets.
        start: Option<u64>,
        items: Vec<Vec<Block>>,
    },
    Quote(Vec<Block>),
    Code(String),
    Rule,
    /// A paragraph made only of images (a banner, a row of logos).
    Images(Vec<Image>),
    /// A call to action such as `READ MORE >>`, alone in its paragraph.
    Button(Button),
    Table {
        head: Vec<Vec<Inline>>,
        rows: Vec<Vec<Vec<Inline>>>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Button {
    pub text: String,
    pub url: String,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Inline {
    Text(String),
    Strong(Vec<Inline>),
    Emph(Vec<Inline>),
    Strike(Vec<Inline>),
    Code(String),
    Link(Link),
    Image(Image),
    Break,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub url: String,
    pub children: Vec<Inline>,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub src: String,
    pub alt: String,
    /// True when the post gave no alt text and herald made one up.
    pub alt_derived: bool,
    pub title: Option<String>,
    /// Where a click on the image goes.
    pub link: Option<String>,
    /// The width the post asks for, in CSS pixels, if it says.
    pub width: Option<u32>,
    pub line: usize,
}

impl Inline {
    /// The visible text of inlines, without markup.
    pub fn plain(inlines: &[Inline]) -> String {
        let mut out = String::new();
        fn walk(inlines: &[Inline], out: &mut String) {
            for i in inlines {
                match i {
                    Inline::Text(t) | Inline::Code(t) => out.push_str(t),
                    Inline::Strong(c) | Inline::Emph(c) | Inline::Strike(c) => walk(c, out),
                    Inline::Link(l) => walk(&l.children, out),
                    Inline::Image(img) => out.push_str(&img.alt),
                    Inline::Break => out.push(' '),
                }
            }
        }
        walk(inlines, &mut out);
        out
    }
}

impl Content {
    /// Every block of the issue in order, sections' headings included.
    pub fn all_blocks(&self) -> impl Iterator<Item = &Block> {
        self.intro
            .iter()
            .chain(self.sections.iter().flat_map(|s| s.blocks.iter()))
    }

    /// Calls `f` on every image of the issue, in order, section headings included.
    pub fn for_each_image_mut(&mut self, f: &mut dyn FnMut(&mut Image)) {
        for_each_image(&mut self.intro, f);
        for s in &mut self.sections {
            for_each_inline_image(&mut s.heading.inlines, f);
            for_each_image(&mut s.blocks, f);
        }
    }
}

/// Builds the content model of a post.
pub fn build(post: &Post, config: &Config) -> Content {
    let fm = &post.front_matter;
    let base = Base::new(
        config.site_url.as_deref(),
        fm.seo.url.as_deref(),
        fm.kind == Kind::BlogPost,
    );
    let mut b = Builder::new(post, base.clone());
    b.run(&post.body);
    let (blocks, mut findings) = b.finish();
    let blocks = normalise_blocks(blocks);
    let (intro, sections) = split_sections(blocks);
    let mut content = Content {
        title: fm.title.clone(),
        kicker: match fm.kind {
            Kind::Report => fm.sub_title.clone(),
            _ => None,
        }
        .or_else(|| config.newsletter_name.clone())
        .unwrap_or_else(|| "OpenInfra Foundation".into()),
        date_label: match (&fm.kind, fm.date, fm.year) {
            (Kind::Report, _, Some(y)) => Some(y.to_string()),
            (_, Some(d), _) => Some(
                d.to_zoned(jiff::tz::TimeZone::UTC)
                    .strftime("%B %-d, %Y")
                    .to_string(),
            ),
            (_, None, Some(y)) => Some(y.to_string()),
            _ => None,
        },
        preheader: fm.seo.description.clone().map(|d| collapse_ws(&d)),
        web_url: base.page_url().map(str::to_string),
        intro,
        sections,
        findings: Vec::new(),
    };
    derive_alt_text(&mut content, &mut findings);
    findings.sort_by_key(|f| f.line);
    findings.dedup();
    content.findings = findings;
    content
}

fn collapse_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

// ---------------------------------------------------------------------------
// The builder: a stack of open elements fed by Markdown events and by the
// tags of raw HTML alike.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlocksKind {
    Root,
    Item,
    Quote,
}

#[derive(Debug, Clone, PartialEq)]
enum InlineKind {
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
enum Frame {
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

struct OpenFrame {
    frame: Frame,
    /// The HTML tag that opened it, so `</tag>` closes the right thing.
    html: Option<String>,
    /// A width limit set by a `<div style="max-width: ...">` around it.
    width: Option<u32>,
}

struct Builder<'a> {
    post: &'a Post,
    base: Base,
    stack: Vec<OpenFrame>,
    findings: Vec<Finding>,
    line_starts: Vec<usize>,
    line: usize,
    /// Inside `<script>`, `<style>` and the like: the tag and its depth.
    skipping: Option<(String, usize)>,
}

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

impl<'a> Builder<'a> {
    fn new(post: &'a Post, base: Base) -> Self {
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

    fn line_at(&self, offset: usize) -> usize {
        let idx = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        self.post.body_line + idx
    }

    fn note(&mut self, severity: Severity, code: &'static str, message: String, fix: &str) {
        self.findings.push(Finding {
            severity,
            code,
            line: Some(self.line),
            message,
            fix: fix.to_string(),
        });
    }

    fn run(&mut self, body: &str) {
        let opts =
            Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
        let mut html_block: Option<String> = None;
        for (event, range) in Parser::new_ext(body, opts).into_offset_iter() {
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
    }

    fn start(&mut self, tag: Tag) {
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

    fn end(&mut self, tag: TagEnd) {
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

    fn top_frame_mut(&mut self) -> Option<&mut Frame> {
        self.stack.last_mut().map(|f| &mut f.frame)
    }

    fn width_limit(&self) -> Option<u32> {
        self.stack.iter().rev().find_map(|f| f.width)
    }

    fn open(&mut self, frame: Frame, html: Option<String>) {
        self.stack.push(OpenFrame {
            frame,
            html,
            width: None,
        });
    }

    fn open_inline(&mut self, kind: InlineKind, html: Option<String>) {
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

    fn open_heading(&mut self, level: u8, html: Option<String>) {
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
    fn open_block(&mut self, frame: Frame, html: Option<String>) {
        self.close_inlines();
        if matches!(self.top_frame_mut(), Some(Frame::List { .. }))
            && !matches!(frame, Frame::List { .. })
        {
            self.open_item(None);
        }
        self.open(frame, html);
    }

    fn open_item(&mut self, html: Option<String>) {
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
    fn close_inlines(&mut self) {
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

    fn close_implicit_paragraph(&mut self) {
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
    fn ensure_inline_context(&mut self) {
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

    fn open_cell(&mut self, html: Option<String>) {
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

    fn open_implicit_paragraph(&mut self) {
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

    fn close_through(&mut self, index: usize) {
        while self.stack.len() > index.max(1) {
            self.close_top();
        }
    }

    fn close_top(&mut self) {
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

    fn fold_inlines(
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
            InlineKind::Link { url } => {
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
                match self.fix_url(&url, "link") {
                    Some(url) => self.push_inline(Inline::Link(Link {
                        url,
                        children: inlines,
                        line,
                    })),
                    None => {
                        for i in inlines {
                            self.push_inline(i)
                        }
                    }
                }
                self.line = saved;
            }
            InlineKind::Image {
                src,
                title,
                width: own,
            } => {
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
                } else if let Some(src) = self.fix_url(&src, "image") {
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
        }
    }

    fn push_inline(&mut self, inline: Inline) {
        self.ensure_inline_context();
        if let Some(Frame::Inlines { inlines, .. }) = self.top_frame_mut() {
            if let (Inline::Text(new), Some(Inline::Text(prev))) = (&inline, inlines.last_mut()) {
                prev.push_str(new);
                return;
            }
            inlines.push(inline);
        }
    }

    fn push_block(&mut self, block: Block) {
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

    fn text(&mut self, t: &str) {
        if let Some(Frame::Code { text }) = self.top_frame_mut() {
            text.push_str(t);
            return;
        }
        if t.trim().is_empty() && !matches!(self.top_frame_mut(), Some(Frame::Inlines { .. })) {
            return;
        }
        self.push_inline(Inline::Text(t.to_string()));
    }

    fn fix_url(&mut self, raw: &str, what: &str) -> Option<String> {
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
                Some(fixed.url)
            }
            Err(why) if raw.trim_start().starts_with("data:") => {
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
                self.note(
                    Severity::Warning,
                    "bad-url",
                    format!("the {what} `{}` cannot be used: {why}; its text is kept without the {what}", raw.trim()),
                    "Fix the address in the post: it should start with https:// or /.",
                );
                None
            }
        }
    }

    // -- raw HTML -----------------------------------------------------------

    fn html(&mut self, html: &str) {
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

    fn html_start(&mut self, name: &str, attrs: &BTreeMap<String, String>, self_closing: bool) {
        if let Some((tag, depth)) = &mut self.skipping {
            if tag == name && !self_closing {
                *depth += 1;
            }
            return;
        }
        let html = Some(name.to_string());
        match name {
            "p" | "div" => {
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
            "tr" => {
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
            "td" | "th" => {
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
            "img" => {
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
            "br" => self.push_inline(Inline::Break),
            "hr" => self.push_block(Block::Rule),
            _ if EMBEDS.contains(&name) => {
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

    fn html_end(&mut self, name: &str) {
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

    fn finish(mut self) -> (Vec<Block>, Vec<Finding>) {
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

fn is_blank(inlines: &[Inline]) -> bool {
    inlines.iter().all(|i| match i {
        Inline::Text(t) => t.trim().is_empty(),
        Inline::Break => true,
        Inline::Strong(c) | Inline::Emph(c) | Inline::Strike(c) => is_blank(c),
        _ => false,
    })
}

/// Drops leading and trailing spaces and line breaks of a paragraph.
fn trim_inlines(mut inlines: Vec<Inline>) -> Vec<Inline> {
    while matches!(inlines.last(), Some(Inline::Break)) {
        inlines.pop();
    }
    while matches!(inlines.first(), Some(Inline::Break)) {
        inlines.remove(0);
    }
    if let Some(Inline::Text(t)) = inlines.first_mut() {
        *t = t.trim_start().to_string();
    }
    if let Some(Inline::Text(t)) = inlines.last_mut() {
        *t = t.trim_end().to_string();
    }
    inlines.retain(|i| !matches!(i, Inline::Text(t) if t.is_empty()));
    inlines
}

fn plain_block(block: &Block) -> String {
    match block {
        Block::Paragraph(i) => Inline::plain(i) + "\n",
        Block::Heading(h) => Inline::plain(&h.inlines) + "\n",
        _ => String::new(),
    }
}

// ---------------------------------------------------------------------------
// After building: images, buttons, headings and sections.

fn normalise_blocks(blocks: Vec<Block>) -> Vec<Block> {
    blocks.into_iter().filter_map(normalise_block).collect()
}

fn normalise_block(block: Block) -> Option<Block> {
    Some(match block {
        Block::Paragraph(inlines) => {
            if let Some(images) = only_images(&inlines) {
                Block::Images(images)
            } else if let Some(button) = call_to_action(&inlines) {
                Block::Button(button)
            } else {
                Block::Paragraph(inlines)
            }
        }
        Block::Heading(mut h) => {
            // `# **Title**`: headings are bold already.
            while let [Inline::Strong(inner)] | [Inline::Emph(inner)] = h.inlines.as_slice() {
                h.inlines = inner.clone();
            }
            h.inlines = trim_inlines(h.inlines);
            if is_blank(&h.inlines) {
                return None;
            }
            Block::Heading(h)
        }
        Block::List { start, items } => Block::List {
            start,
            items: items.into_iter().map(normalise_blocks).collect(),
        },
        Block::Quote(inner) => Block::Quote(normalise_blocks(inner)),
        other => other,
    })
}

/// A paragraph of nothing but images (each possibly linked).
fn only_images(inlines: &[Inline]) -> Option<Vec<Image>> {
    let mut images = Vec::new();
    for i in inlines {
        match i {
            Inline::Image(img) => images.push(img.clone()),
            Inline::Link(l) => {
                let inner: Vec<&Inline> = l
                    .children
                    .iter()
                    .filter(|c| !is_blank(std::slice::from_ref(*c)))
                    .collect();
                match inner.as_slice() {
                    [Inline::Image(img)] => images.push(Image {
                        link: Some(l.url.clone()),
                        ..img.clone()
                    }),
                    _ => return None,
                }
            }
            Inline::Text(t) if t.trim().is_empty() => {}
            Inline::Break => {}
            _ => return None,
        }
    }
    (!images.is_empty()).then_some(images)
}

/// `[READ MORE >>](url)`, `**[REGISTER NOW](url)**`, alone in a paragraph.
fn call_to_action(inlines: &[Inline]) -> Option<Button> {
    let mut inlines = inlines;
    while let [Inline::Strong(inner)] | [Inline::Emph(inner)] = inlines {
        inlines = inner;
    }
    let [Inline::Link(link)] = inlines else {
        return None;
    };
    if link.url.starts_with("mailto:") {
        return None;
    }
    let text = collapse_ws(&Inline::plain(&link.children));
    if is_call_to_action(&text) {
        Some(Button {
            text,
            url: link.url.clone(),
            line: link.line,
        })
    } else {
        None
    }
}

pub fn is_call_to_action(text: &str) -> bool {
    let t = text.trim();
    if t.is_empty() || t.chars().count() > 48 {
        return false;
    }
    let arrows = [">>", "»", "→", "›", ">"];
    if arrows.iter().any(|a| t.ends_with(a)) {
        return true;
    }
    let lower = t.to_lowercase();
    let verbs = [
        "read more",
        "learn more",
        "register",
        "sign up",
        "download",
        "get involved",
        "continue reading",
        "watch",
        "see the",
        "join",
        "apply",
        "rsvp",
        "get your",
        "view the",
        "submit",
    ];
    let letters: Vec<char> = t.chars().filter(|c| c.is_alphabetic()).collect();
    let shouting = letters.len() >= 4 && letters.iter().all(|c| c.is_uppercase());
    let words = t.split_whitespace().count();
    verbs.iter().any(|v| lower.starts_with(v)) && (shouting || words <= 5)
        || shouting && (2..=6).contains(&words)
}

fn split_sections(blocks: Vec<Block>) -> (Vec<Block>, Vec<Section>) {
    let top = blocks
        .iter()
        .filter_map(|b| match b {
            Block::Heading(h) => Some(h.level),
            _ => None,
        })
        .min();
    let mut intro = Vec::new();
    let mut sections: Vec<Section> = Vec::new();
    let mut used: BTreeMap<String, usize> = BTreeMap::new();
    for block in blocks {
        match block {
            Block::Heading(h) if Some(h.level) == top => {
                let anchor = unique_anchor(&Inline::plain(&h.inlines), &mut used);
                sections.push(Section {
                    heading: h,
                    anchor,
                    blocks: Vec::new(),
                });
            }
            other => match sections.last_mut() {
                Some(s) => s.blocks.push(other),
                None => intro.push(other),
            },
        }
    }
    (intro, sections)
}

/// The anchor the website's Markdown renderer gives a heading
/// (GitHub's rules: lower case, punctuation dropped, spaces to dashes).
pub fn anchor(text: &str) -> String {
    text.trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// Numbers repeated anchors as the website's slugger (github-slugger) does:
/// `a`, `a-1`, `a-2`, and a suffixed anchor that a later heading already
/// spells (`Community 1` after two `Community`) is numbered on, so no two
/// headings ever share an id.
fn unique_anchor(text: &str, used: &mut BTreeMap<String, usize>) -> String {
    let base = anchor(text);
    let mut out = base.clone();
    while used.contains_key(&out) {
        let n = used.get_mut(&base).expect("the base is taken first");
        *n += 1;
        out = format!("{base}-{n}");
    }
    used.insert(out.clone(), 0);
    out
}

/// Images with no alt text get one: their title, else a readable file name,
/// else the heading of their section, else the issue's title.
fn derive_alt_text(content: &mut Content, findings: &mut Vec<Finding>) {
    let title = content.title.clone();
    let mut fix = |blocks: &mut Vec<Block>, context: &str| {
        for_each_image(blocks, &mut |img: &mut Image| {
            if !img.alt.trim().is_empty() {
                return;
            }
            let alt = img
                .title
                .clone()
                .or_else(|| readable_file_name(&img.src))
                .unwrap_or_else(|| context.to_string());
            findings.push(Finding {
                severity: Severity::Notice,
                code: "missing-alt",
                line: Some(img.line),
                message: format!("an image has no alt text; herald uses \"{alt}\""),
                fix: "Describe the picture in the brackets: `![What the picture shows](/img/...)`."
                    .into(),
            });
            img.alt = alt;
            img.alt_derived = true;
        });
    };
    fix(&mut content.intro, &title);
    for s in &mut content.sections {
        let heading = collapse_ws(&Inline::plain(&s.heading.inlines));
        fix(&mut s.blocks, &heading);
    }
}

/// Calls `f` on every image in `inlines`, however deeply nested.
pub fn for_each_inline_image(inlines: &mut [Inline], f: &mut dyn FnMut(&mut Image)) {
    for i in inlines {
        match i {
            Inline::Image(img) => f(img),
            Inline::Strong(c) | Inline::Emph(c) | Inline::Strike(c) => for_each_inline_image(c, f),
            Inline::Link(l) => for_each_inline_image(&mut l.children, f),
            _ => {}
        }
    }
}

pub fn for_each_image(blocks: &mut [Block], f: &mut dyn FnMut(&mut Image)) {
    let inl = for_each_inline_image;
    for b in blocks {
        match b {
            Block::Images(imgs) => imgs.iter_mut().for_each(&mut *f),
            Block::Paragraph(i) => inl(i, f),
            Block::Heading(h) => inl(&mut h.inlines, f),
            Block::List { items, .. } => items.iter_mut().for_each(|it| for_each_image(it, f)),
            Block::Quote(inner) => for_each_image(inner, f),
            Block::Table { head, rows } => {
                head.iter_mut().for_each(|c| inl(c, f));
                rows.iter_mut().flatten().for_each(|c| inl(c, f));
            }
            _ => {}
        }
    }
}

/// `openinfra_annualreport_2024.jpg` -> "openinfra annualreport 2024";
/// `frame-541.png` or a hash-like name -> `None`.
fn readable_file_name(src: &str) -> Option<String> {
    let name = src.rsplit('/').next()?.split(['?', '#']).next()?;
    let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
    let words: Vec<&str> = stem
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let real_words = words
        .iter()
        .filter(|w| w.len() >= 3 && w.chars().all(|c| c.is_alphabetic()) && w.len() <= 20)
        .count();
    (real_words >= 2).then(|| words.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn build_body(body: &str) -> Content {
        let text = format!(
            "---\ntitle: Test issue\nseo:\n  url: https://openinfra.org/blog/test\n---\n{body}"
        );
        let post = crate::post::parse(Path::new("t.md"), &text).unwrap();
        build(&post, &Config::default())
    }

    fn codes(c: &Content) -> Vec<&'static str> {
        c.findings.iter().map(|f| f.code).collect()
    }

    #[test]
    fn html_list_is_the_same_as_a_markdown_list() {
        let html = build_body("<ul>\n<li>One</li>\n<li>Two <a href=\"/x\">link</a></li>\n</ul>\n");
        let md = build_body("\n* One\n* Two [link](/x)\n");
        // The HTML block reports its first line; compare everything else.
        let without_lines = |c: &Content| {
            format!("{:?}", c.intro)
                .replace("line: 6", "")
                .replace("line: 8", "")
        };
        assert_eq!(without_lines(&html), without_lines(&md));
        assert!(codes(&html).is_empty(), "{:?}", html.findings);
    }

    #[test]
    fn html_list_split_by_blank_lines_and_missing_close_tags() {
        let c = build_body("<ul>\n\n<li>One\n\n<li>Two\n");
        let Block::List { items, .. } = &c.intro[0] else {
            panic!("{:?}", c.intro)
        };
        assert_eq!(items.len(), 2);
    }

    #[test]
    fn logo_block_becomes_a_linked_image_with_its_width() {
        let c = build_body(
            "<div style=\"width: 35%; min-width: 220px; max-width: 300px; margin: 30px 0;\">\n  <a href=\"https://katacontainers.io\" target=\"_blank\">\n    <img src=\"/img/logo.svg\" alt=\"Kata Logo\"/>\n  </a>\n</div>\n\n<br/>\n\nText after.\n",
        );
        let Block::Images(imgs) = &c.intro[0] else {
            panic!("{:?}", c.intro)
        };
        assert_eq!(imgs[0].src, "https://openinfra.org/img/logo.svg");
        assert_eq!(imgs[0].alt, "Kata Logo");
        assert_eq!(imgs[0].link.as_deref(), Some("https://katacontainers.io"));
        assert_eq!(imgs[0].width, Some(300));
        assert_eq!(imgs[0].line, 6);
        assert_eq!(
            c.intro[1],
            Block::Paragraph(vec![Inline::Text("Text after.".into())])
        );
    }

    #[test]
    fn clipboard_comments_and_breaks_vanish_quietly() {
        let c = build_body("<!--StartFragment-->\n\nHello<br />world\n\n<!--EndFragment-->\n");
        assert_eq!(
            c.intro,
            vec![Block::Paragraph(vec![
                Inline::Text("Hello".into()),
                Inline::Break,
                Inline::Text("world".into())
            ])]
        );
        assert!(c.findings.is_empty());
    }

    #[test]
    fn unknown_html_is_removed_and_reported() {
        let c = build_body(
            "<font color=red>Loud</font> words\n\n<script>alert(1)</script>\n\n<iframe src=\"https://www.youtube.com/embed/x\"></iframe>\n",
        );
        let text: String = c.intro.iter().map(plain_block).collect();
        assert!(text.contains("Loud words"), "{text}");
        assert!(!text.contains("alert"), "{text}");
        let changed: Vec<_> = c
            .findings
            .iter()
            .filter(|f| f.code == "html-changed")
            .collect();
        assert_eq!(changed.len(), 3, "{:?}", c.findings);
        assert!(changed.iter().any(|f| f.message.contains("<font>")));
        let has_video_link = c
            .intro
            .iter()
            .any(|b| matches!(b, Block::Button(l) if l.url == "https://www.youtube.com/embed/x"));
        assert!(has_video_link, "{:?}", c.intro);
    }

    #[test]
    fn top_level_sections_bold_headings_and_buttons() {
        let c = build_body(
            "Intro\n\n# **First**\n\nText\n\n**[READ MORE >>](https://x.org/a)**\n\n## Sub\n\n# [Second](https://docs.google.com/document/d/1/edit)\n\nMore\n",
        );
        assert_eq!(c.sections.len(), 2);
        assert_eq!(
            c.sections[0].heading.inlines,
            vec![Inline::Text("First".into())]
        );
        assert_eq!(c.sections[0].anchor, "first");
        assert!(
            matches!(&c.sections[0].blocks[1], Block::Button(b) if b.text == "READ MORE >>" && b.url == "https://x.org/a")
        );
        assert!(matches!(&c.sections[0].blocks[2], Block::Heading(h) if h.level == 2));
        assert!(matches!(&c.sections[1].heading.inlines[0], Inline::Link(_)));
    }

    #[test]
    fn section_anchors_are_unique() {
        let c = build_body("# A\n\n# A\n\n# A 1\n\n# A\n\n# a-1-1\n");
        let anchors: Vec<&str> = c.sections.iter().map(|s| s.anchor.as_str()).collect();
        assert_eq!(anchors, ["a", "a-1", "a-1-1", "a-2", "a-1-1-1"]);
    }

    #[test]
    fn without_h1_the_highest_level_splits_sections() {
        let c = build_body("## A\n\ntext\n\n### a1\n\n## B\n");
        assert_eq!(c.sections.len(), 2);
    }

    #[test]
    fn images_without_alt_get_one_and_a_notice() {
        let c = build_body(
            "![](/img/openinfra_annualreport_2024.jpg)\n\n# Events\n\n![](/img/frame-541.png)\n",
        );
        let Block::Images(a) = &c.intro[0] else {
            panic!()
        };
        assert_eq!(a[0].alt, "openinfra annualreport 2024");
        let Block::Images(b) = &c.sections[0].blocks[0] else {
            panic!()
        };
        assert_eq!(b[0].alt, "Events");
        assert!(b[0].alt_derived);
        assert_eq!(codes(&c), vec!["missing-alt", "missing-alt"]);
    }

    #[test]
    fn data_and_empty_images_are_left_out_with_a_warning() {
        let c = build_body("![](data:image/png;base64,AAAA)\n\n![]()\n\nText\n");
        assert_eq!(c.intro.len(), 1);
        assert_eq!(codes(&c), vec!["embedded-image", "empty-image"]);
    }

    #[test]
    fn empty_link_in_heading_is_dropped() {
        let c = build_body("### [](www.openstack.org)OpenStack Exam\n");
        assert_eq!(
            c.sections[0].heading.inlines,
            vec![Inline::Text("OpenStack Exam".into())]
        );
        assert_eq!(codes(&c), vec!["empty-link"]);
    }

    #[test]
    fn call_to_action_detection() {
        for yes in [
            "READ MORE >>",
            "SEE THE OPENSTACK MARKETPLACE >> ",
            "LEARN MORE",
            "Register now",
            "GET INVOLVED >>",
        ] {
            assert!(is_call_to_action(yes), "{yes}");
        }
        for no in [
            "here",
            "OpenStack surveys",
            "the 2024 annual report of the OpenInfra Foundation",
            "NASA",
        ] {
            assert!(!is_call_to_action(no), "{no}");
        }
    }
}
