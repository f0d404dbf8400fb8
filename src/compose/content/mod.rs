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

use crate::InputError;
use crate::compose::post::{Kind, Post};
use crate::config::ContentOptions;
use crate::findings::Finding;
use crate::urls::Base;

use markdown::Builder;
use passes::{
    derive_alt_text, loosen_no_break_spaces, normalise_blocks, split_sections, tag_links,
};

/// The width of the email's column in CSS pixels (600 px less 2 x 28 px
/// padding): no picture is shown wider, so none is drawn wider either.
pub const COLUMN: u32 = 544;

/// The whole issue, ready to render.
#[derive(Debug, Clone)]
pub struct Content {
    pub title: String,
    /// The line above the title and the footer's sender: the newsletter's
    /// name from the settings, whatever the post is (a page's `subTitle`,
    /// "Authors: ...", is about the page, not who sends it).
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
    /// The language and the words herald adds around the post.
    pub language: Language,
}

/// The language (`lang=`, `dir=` of the email) and the words of
/// the footer and of herald's own buttons: from the post's front matter,
/// else the settings, else English.
#[derive(Debug, Clone, PartialEq)]
pub struct Language {
    pub lang: String,
    pub dir: String,
    pub subscribed: String,
    pub view_online: String,
    pub view_in_browser: String,
    pub unsubscribe: String,
    pub continue_reading: String,
}

impl Default for Language {
    fn default() -> Self {
        Language {
            lang: "en".into(),
            dir: "ltr".into(),
            subscribed: "You are receiving this email because you subscribed to news from".into(),
            view_online: "View this email in your browser".into(),
            view_in_browser: "View in browser".into(),
            unsubscribe: "Unsubscribe".into(),
            continue_reading: "Continue reading".into(),
        }
    }
}

impl Language {
    fn of(post: &Post, config: &ContentOptions) -> (Language, Vec<Finding>) {
        let d = Language::default();
        let fm = &post.front_matter;
        let mut findings = Vec::new();
        // The front matter is the writer's; a tag herald cannot use is
        // named and left out rather than written into the email.
        let mut own = |value: &Option<String>,
                       parse: fn(&str) -> Result<String, crate::config::ValueError>,
                       key: &str| {
            value.as_deref().and_then(|v| match parse(v) {
                Ok(v) => Some(v),
                Err(why) => {
                    findings.push(Finding {
                        severity: crate::findings::Severity::Warning,
                        code: "bad-language",
                        line: None,
                        message: format!("`{key}:` in the front matter: {why}"),
                        fix: format!("correct `{key}:` or remove it (the settings' value is used)"),
                    });
                    None
                }
            })
        };
        let lang = own(&fm.lang, crate::config::language, "lang");
        let dir = own(&fm.dir, crate::config::direction, "dir");
        let pick = |v: &Option<String>, default: String| v.clone().unwrap_or(default);
        let language = Language {
            lang: lang.or_else(|| config.lang.clone()).unwrap_or(d.lang),
            dir: dir.or_else(|| config.dir.clone()).unwrap_or(d.dir),
            subscribed: pick(&config.words_subscribed, d.subscribed),
            view_online: pick(&config.words_view_online, d.view_online),
            view_in_browser: pick(&config.words_view_in_browser, d.view_in_browser),
            unsubscribe: pick(&config.words_unsubscribe, d.unsubscribe),
            continue_reading: pick(&config.words_continue_reading, d.continue_reading),
        };
        (language, findings)
    }
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
/// A body nested deeper than [`crate::limits::MAX_NESTING`] is refused
/// here, measured in the builder's own pass, as
/// [`crate::limits::check_nesting`] refuses it (a post from
/// [`crate::compose::post::load_for_build`] was not measured before).
pub fn build(post: &Post, config: &ContentOptions, base: &Base) -> Result<Content, InputError> {
    let fm = &post.front_matter;
    let mut b = Builder::new(post, base.clone());
    if !b.run(&post.body) {
        return Err(crate::limits::too_deep(
            &post.path,
            &post.body,
            post.body_line,
        ));
    }
    let (blocks, mut findings) = b.finish();
    let mut blocks = normalise_blocks(blocks);
    loosen_no_break_spaces(&mut blocks);
    let (intro, sections) = split_sections(blocks);
    let (language, language_findings) = Language::of(post, config);
    findings.extend(language_findings);
    let mut content = Content {
        language,
        title: public_title(fm).to_string(),
        kicker: config
            .newsletter_name
            .clone()
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
    if let Some(seo) = fm
        .seo
        .title
        .as_deref()
        .filter(|_| public_title(fm) != fm.title)
    {
        findings.push(Finding {
            severity: crate::findings::Severity::Notice,
            code: "public-title",
            line: None,
            message: format!(
                "the subject and the email's title are the public title (`seo.title`) \"{seo}\"; \
                 the website's own `title:` is \"{}\"",
                fm.title
            ),
            fix: "nothing to do if the public title is the one to send; else change `seo.title`"
                .into(),
        });
    }
    if let Some(cta) = &fm.call_to_action {
        findings.extend(carry_call_to_action(&mut content, cta, base));
    }
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
    Ok(content)
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

/// The title readers see: the CMS keeps an internal `title:` (it once read
/// "OLD DON'T USE ..." on a post that was mailed) and the public one in
/// `seo.title`, which the website puts in the page's title and search
/// results. The public one wins when both are there.
fn public_title(fm: &crate::compose::post::FrontMatter) -> &str {
    fm.seo
        .title
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .unwrap_or(&fm.title)
}

/// A page's `footer:` call to action ends the email as it ends the page:
/// its line of text, then its button.
fn carry_call_to_action(
    content: &mut Content,
    cta: &crate::compose::post::CallToAction,
    base: &Base,
) -> Option<Finding> {
    let url = match crate::urls::absolutize(&cta.url, base) {
        Ok(fixed) => fixed.url,
        Err(why) => {
            return Some(Finding {
                severity: crate::findings::Severity::Warning,
                code: "bad-link",
                line: Some(cta.line),
                message: format!("the page's `footer:` button links to `{}`: {why}", cta.url),
                fix: "write the button's address as https://... (the email leaves the button out until then)".into(),
            });
        }
    };
    let mut blocks = Vec::new();
    if let Some(text) = &cta.text {
        blocks.push(Block::Paragraph(vec![Inline::Text(collapse_ws(text))]));
    }
    blocks.push(Block::Button(Button {
        text: cta.button_text.clone(),
        url,
        line: cta.line,
    }));
    match content.sections.last_mut() {
        Some(s) => s.blocks.extend(blocks),
        None => content.intro.extend(blocks),
    }
    None
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
        let post = crate::compose::post::parse(Path::new("t.md"), &text).unwrap();
        let fm = &post.front_matter;
        let base = Base::new(None, fm.seo.url.as_deref(), fm.kind == Kind::BlogPost);
        build(
            &post,
            &crate::config::Config::default().compose().content,
            &base,
        )
        .unwrap()
    }

    fn codes(c: &Content) -> Vec<&'static str> {
        c.findings.iter().map(|f| f.code).collect()
    }

    #[test]
    fn a_body_nested_too_deep_is_refused_by_the_builder_as_by_the_limit() {
        use crate::compose::post::{Nesting, parse, parse_with};
        let deep = [
            format!("ok\n\n{} x\n", ">".repeat(100)),
            format!("a {}x\n", "<b>".repeat(100)),
            format!("{}x\n", "<ul><li>".repeat(100)),
            (0..80)
                .map(|i| format!("{}- a\n", "  ".repeat(i)))
                .collect(),
        ];
        for body in deep {
            let text = format!("---\ntitle: T\n---\nfirst\n\n{body}");
            let path = Path::new("t.md");
            let Err(limit) = parse(path, &text) else {
                panic!("the limit refuses it");
            };
            let post = parse_with(path, &text, Nesting::Later).unwrap();
            let base = Base::new(Some("https://openinfra.org"), None, false);
            let Err(built) = build(
                &post,
                &crate::config::Config::default().compose().content,
                &base,
            ) else {
                panic!("the builder refuses it");
            };
            assert_eq!((built.line, &built.message), (limit.line, &limit.message));
        }
        // As deep as allowed: built.
        let text = format!("---\ntitle: T\n---\n{} x\n", ">".repeat(60));
        let post = parse_with(Path::new("t.md"), &text, Nesting::Later).unwrap();
        let base = Base::new(Some("https://openinfra.org"), None, false);
        assert!(
            build(
                &post,
                &crate::config::Config::default().compose().content,
                &base
            )
            .is_ok()
        );
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
    fn no_break_spaces_after_commas_become_spaces() {
        let c = build_body("[A](https://a.example),\u{a0}[B](https://b.example);\u{a0}C\u{a0}km\n");
        let text = Inline::plain(match &c.intro[0] {
            Block::Paragraph(i) => i,
            other => panic!("{other:?}"),
        });
        assert_eq!(text, "A, B; C\u{a0}km");
    }

    #[test]
    fn without_h1_the_highest_level_splits_sections() {
        let c = build_body("## A\n\ntext\n\n### a1\n\n## B\n");
        assert_eq!(c.sections.len(), 2);
    }

    #[test]
    fn images_without_alt_get_their_caption_or_none_never_a_file_name() {
        let c = build_body(
            "![](/img/Screenshot%202026-04-13%20at%2010.34.20%E2%80%AFAM.png)\n\n# Events\n\n![](/img/frame-541.png \"The summit's hall\")\n\n[![](/img/openinfra_logo_2024.jpg)](https://openinfra.org)\n",
        );
        let Block::Images(a) = &c.intro[0] else {
            panic!()
        };
        assert_eq!(a[0].alt, "");
        let Block::Images(b) = &c.sections[0].blocks[0] else {
            panic!()
        };
        assert_eq!(b[0].alt, "The summit's hall");
        assert!(b[0].alt_derived);
        // A linked picture names its link: the section's heading.
        let linked = match &c.sections[0].blocks[1] {
            Block::Images(i) => i[0].alt.clone(),
            Block::Paragraph(i) => match &i[0] {
                Inline::Link(l) => match &l.children[0] {
                    Inline::Image(img) => img.alt.clone(),
                    other => panic!("{other:?}"),
                },
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        };
        assert_eq!(linked, "Events");
        assert_eq!(codes(&c), vec!["missing-alt", "missing-alt", "missing-alt"]);
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
