//! After building: images, buttons, headings and sections.

use std::collections::BTreeMap;

use super::visit::{self, VisitMut};
use super::{
    Block, Button, Content, Image, Inline, Link, Section, collapse_ws, is_blank, trim_inlines,
};
use crate::findings::{Finding, Severity};

pub(super) fn normalise_blocks(blocks: Vec<Block>) -> Vec<Block> {
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

pub(super) fn split_sections(blocks: Vec<Block>) -> (Vec<Block>, Vec<Section>) {
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

/// A no-break space after a comma, a semicolon or a bar becomes a plain
/// space. Pasted text brings them in ("Storware,\u{a0}Fairbanks,\u{a0}Encora,
/// ..."): a list of ten names joined by them is one unbreakable run, and a
/// phone breaks it inside a word ("Cloudifi|cation"). Nobody means to glue
/// the words on either side of a comma together.
pub(super) fn loosen_no_break_spaces(blocks: &mut [Block]) {
    fn inlines(list: &mut [Inline]) {
        for i in list {
            match i {
                // Only a text with such a space is written again: looking
                // for the space's second byte (0xA0) and the two before it
                // is a vector search, where `contains('\u{a0}')` on every
                // text was half of this pass.
                Inline::Text(t)
                    if memchr::memchr_iter(0xa0, t.as_bytes()).any(|i| {
                        let b = t.as_bytes();
                        i >= 2 && b[i - 1] == 0xc2 && matches!(b[i - 2], b',' | b';' | b'|')
                    }) =>
                {
                    let mut out = String::with_capacity(t.len());
                    let mut prev = None;
                    for c in t.chars() {
                        let loose = c == '\u{a0}' && matches!(prev, Some(',' | ';' | '|'));
                        out.push(if loose { ' ' } else { c });
                        prev = Some(c);
                    }
                    *t = out;
                }
                Inline::Strong(c) | Inline::Emph(c) | Inline::Strike(c) => inlines(c),
                Inline::Link(l) => inlines(&mut l.children),
                _ => {}
            }
        }
    }
    for b in blocks {
        match b {
            Block::Heading(h) => inlines(&mut h.inlines),
            Block::Paragraph(i) => inlines(i),
            Block::List { items, .. } => items
                .iter_mut()
                .for_each(|item| loosen_no_break_spaces(item)),
            Block::Quote(inner) => loosen_no_break_spaces(inner),
            Block::Table { head, rows } => {
                head.iter_mut().for_each(|c| inlines(c));
                rows.iter_mut().flatten().for_each(|c| inlines(c));
            }
            _ => {}
        }
    }
}

/// Images with no alt text get their caption (the Markdown title,
/// `![](/img/x.png "caption")`), else `alt=""`: screen readers skip such a
/// picture, and with pictures off nothing stands in its place. Never a
/// file name ("screenshot 2026 04 13 at 10 34 20 E2 80 AFam" read aloud
/// helps nobody). A picture that is a link's only content names the link,
/// so there the caption, else the section's heading, else the title.
pub(super) fn derive_alt_text(content: &mut Content, findings: &mut Vec<Finding>) {
    struct AltText<'f> {
        context: String,
        findings: &'f mut Vec<Finding>,
    }
    impl AltText<'_> {
        fn fill(&mut self, img: &mut Image, names_a_link: bool) {
            if !img.alt.trim().is_empty() {
                return;
            }
            let caption = img.title.clone().filter(|t| !t.trim().is_empty());
            let alt = match (caption, names_a_link) {
                (Some(c), _) => c,
                (None, true) => self.context.clone(),
                (None, false) => String::new(),
            };
            let uses = if alt.is_empty() {
                "herald writes alt=\"\" (screen readers skip the picture)".to_string()
            } else {
                format!("herald uses \"{alt}\"")
            };
            self.findings.push(Finding {
                severity: Severity::Notice,
                code: "missing-alt",
                line: Some(img.line),
                message: format!("an image has no alt text; {uses}"),
                fix: "Describe the picture in the brackets: `![What the picture shows](/img/...)`."
                    .into(),
            });
            img.alt = alt;
            img.alt_derived = true;
        }
    }
    impl VisitMut for AltText<'_> {
        fn link(&mut self, link: &mut crate::compose::content::Link) {
            let words = link
                .children
                .iter()
                .filter(|c| !matches!(c, Inline::Image(_)))
                .map(|c| Inline::plain(std::slice::from_ref(c)))
                .collect::<String>();
            if words.trim().is_empty() {
                for child in &mut link.children {
                    if let Inline::Image(img) = child {
                        self.fill(img, true);
                    }
                }
            }
        }
        fn image(&mut self, img: &mut Image) {
            let linked = img.link.is_some();
            self.fill(img, linked);
        }
    }
    // A section's heading describes its pictures, not the headings' own.
    let mut fix = AltText {
        context: content.title.clone(),
        findings,
    };
    visit::blocks_mut(&mut fix, &mut content.intro);
    for s in &mut content.sections {
        fix.context = collapse_ws(&Inline::plain(&s.heading.inlines));
        visit::blocks_mut(&mut fix, &mut s.blocks);
    }
}

/// Adds the `utm` campaign tags to every link to the newsletter's own
/// sites (`site`'s host, with or without `www.`, and `utm_domains`), once
/// for the whole issue, so the HTML and the text part carry the same links.
/// A tag the link already has is kept as the editor wrote it; links with
/// merge fields (personal) and off-site links are left alone. No pixel and
/// no click redirect: the reader's browser goes straight to the page.
/// Returns how many links were tagged.
pub(super) fn tag_links(
    content: &mut Content,
    utm: &crate::config::Utm,
    hosts: &[String],
    slug: &str,
    unsubscribe: Option<&str>,
) -> usize {
    struct Tagger<'a> {
        tags: Vec<(String, String)>,
        hosts: &'a [String],
        unsubscribe: Option<&'a str>,
        tagged: usize,
    }
    impl Tagger<'_> {
        fn tag(&mut self, url: &mut String) {
            if url.contains("{{") || url.contains("%7B%7B") {
                return;
            }
            // A link to the unsubscribe page is not a visit to count.
            if self.unsubscribe.is_some_and(|u| url.starts_with(u)) {
                return;
            }
            let Ok(mut u) = url::Url::parse(url) else {
                return;
            };
            if !matches!(u.scheme(), "http" | "https") {
                return;
            }
            let Some(host) = u.host_str().map(str::to_ascii_lowercase) else {
                return;
            };
            let bare = host.strip_prefix("www.").unwrap_or(&host);
            if !self
                .hosts
                .iter()
                .any(|h| h == bare || h.strip_prefix("www.") == Some(bare))
            {
                return;
            }
            let have: Vec<String> = u.query_pairs().map(|(k, _)| k.into_owned()).collect();
            let missing: Vec<&(String, String)> = self
                .tags
                .iter()
                .filter(|(k, _)| !have.iter().any(|h| h.eq_ignore_ascii_case(k)))
                .collect();
            if missing.is_empty() {
                return;
            }
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in missing {
                    q.append_pair(k, v);
                }
            }
            *url = u.to_string();
            self.tagged += 1;
        }
    }
    impl VisitMut for Tagger<'_> {
        fn link(&mut self, link: &mut Link) {
            self.tag(&mut link.url);
        }
        fn image(&mut self, image: &mut Image) {
            if let Some(l) = &mut image.link {
                self.tag(l);
            }
        }
        fn button(&mut self, button: &mut Button) {
            self.tag(&mut button.url);
        }
    }
    let mut t = Tagger {
        tags: utm
            .tags
            .iter()
            .map(|(k, v)| {
                let v = v.replace("{{ slug }}", slug).replace("{{slug}}", slug);
                (format!("utm_{k}"), v)
            })
            .collect(),
        hosts,
        unsubscribe,
        tagged: 0,
    };
    super::visit::content_mut(&mut t, content);
    t.tagged
}
