//! Stage 2: the post's Markdown (and the raw HTML the CMS lets in) becomes a
//! [`Content`] model that both the HTML and the plain-text renderers read.
//!
//! Raw HTML is not passed through: its tags are turned into the same model
//! the Markdown produces (`<ul><li>` is a list, `<div><a><img></a></div>` is
//! a linked image, `<br />` a line break), because mrml rejects malformed
//! HTML and email clients mangle `<div style>`. Tags herald does not know are
//! removed with their text kept, and each change is reported by `check`.
//!
//! The model is here; [`markdown`] builds it from the post's events,
//! [`raw_html`] translates the HTML among them, [`passes`] tidies what was
//! built (images, buttons, sections, alt text) and [`visit`] walks it for
//! the stages after this one.

mod markdown;
mod passes;
mod raw_html;
pub mod visit;

pub use passes::{anchor, is_call_to_action};

use crate::config::Config;
use crate::findings::Finding;
use crate::post::{Kind, Post};
use crate::urls::Base;

use markdown::Builder;
use passes::{derive_alt_text, normalise_blocks, split_sections, tag_links};

/// The width of the email's column in CSS pixels (600 px less 2 x 28 px
/// padding): no picture is shown wider, so none is drawn wider either.
pub const COLUMN: u32 = 544;

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
}

/// Builds the content model of a post; `base` completes its relative links.
pub fn build(post: &Post, config: &Config, base: &Base) -> Content {
    let fm = &post.front_matter;
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
    if let Some(utm) = &config.utm {
        let mut hosts: Vec<String> = base
            .site
            .host_str()
            .map(|h| h.to_ascii_lowercase())
            .into_iter()
            .collect();
        if let Some(more) = &config.utm_domains {
            hosts.extend(more.0.iter().cloned());
        }
        let hosts: Vec<String> = hosts
            .into_iter()
            .map(|h| h.strip_prefix("www.").map(str::to_string).unwrap_or(h))
            .collect();
        let unsubscribe = config.unsubscribe_url.as_ref().map(|u| u.as_str());
        let n = tag_links(&mut content, utm, &hosts, &post.slug(), unsubscribe);
        findings.push(Finding {
            severity: crate::findings::Severity::Notice,
            code: "utm-tagged",
            line: None,
            message: format!(
                "{n} link(s) to {} carry the campaign tags {utm} (tags a link already had are kept)",
                hosts.join(", ")
            ),
            fix: "nothing to do; `utm:` and `utm_domains:` in herald.yaml say which tags and sites".into(),
        });
    }
    findings.sort_by_key(|f| f.line);
    findings.dedup();
    content.findings = findings;
    content
}

fn collapse_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn build_body(body: &str) -> Content {
        let text = format!(
            "---\ntitle: Test issue\nseo:\n  url: https://openinfra.org/blog/test\n---\n{body}"
        );
        let post = crate::post::parse(Path::new("t.md"), &text).unwrap();
        let fm = &post.front_matter;
        let base = Base::new(None, fm.seo.url.as_deref(), fm.kind == Kind::BlogPost);
        build(&post, &Config::default(), &base)
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
