//! `--fit`: a digest of a post too long for Gmail.
//!
//! Gmail shows the first ~102 KB of an email's HTML and hides the rest
//! behind "[Message clipped]", the unsubscribe footer included. A long post
//! (an annual report) cannot fit whole, so the digest keeps what makes a
//! reader click through: each top-level section's heading, its lead
//! paragraph, its images and its call-to-action buttons, and ends the
//! section with a "Continue reading" button to that section on the web
//! version (`seo.url#anchor`). Sub-headings before the first top-level
//! heading are sections too, each kept the same way. Other sub-headings,
//! lists, tables and the other
//! paragraphs stay on the website.
//!
//! The plain-text part is written from the same digest, so both parts of
//! the email say the same thing.

use crate::compose::content::{Block, Button, Content, Inline, Section};
use crate::findings::{Finding, Severity};

/// Gmail hides everything after this many bytes of HTML behind
/// "[Message clipped]", the unsubscribe footer included.
pub const GMAIL_CLIP_BYTES: usize = 102 * 1024;

/// The HTML size a digest is made below: Gmail's limit less room for what
/// personalisation adds (each recipient's unsubscribe link and merge fields).
pub const TARGET_BYTES: usize = GMAIL_CLIP_BYTES - 2 * 1024;

/// What the reader is told at the top of a digest.
pub const NOTE: &str = "This email shows the start of each section.";
pub const CONTINUE: &str = "Continue reading";

/// The digest of `content`, or `None` when the post has no web version to
/// continue reading on (no `seo.url`).
pub fn digest(content: &Content, full_bytes: usize) -> Option<Content> {
    let web = content.web_url.as_deref()?;
    let base = web.split('#').next().unwrap_or(web);
    let mut out = content.clone();

    let mut intro = vec![Block::Paragraph(vec![
        Inline::Emph(vec![Inline::Text(format!("{NOTE} "))]),
        Inline::Link(crate::compose::content::Link {
            url: base.to_string(),
            children: vec![Inline::Text(format!(
                "Read the full {} on the web.",
                content.title
            ))],
            line: 0,
        }),
    ])];
    // What comes before the first top-level heading can be most of a
    // report (2021's is 474 lines in eight sub-sections): each of its
    // headings is kept, with that part's start and its own button.
    let parts = content
        .intro
        .split_inclusive(|b| matches!(b, Block::Heading(_)));
    let mut pending: Option<&crate::compose::content::Heading> = None;
    let mut kept_intro = Vec::new();
    let close = |heading: Option<&crate::compose::content::Heading>,
                 blocks: &[Block],
                 out: &mut Vec<Block>| {
        match heading {
            Some(h) => {
                out.push(Block::Heading(h.clone()));
                out.extend(keep(blocks));
                out.push(Block::Button(Button {
                    text: content.language.continue_reading.clone(),
                    url: format!(
                        "{base}#{}",
                        crate::compose::content::anchor(&Inline::plain(&h.inlines))
                    ),
                    line: h.line,
                }));
            }
            None => out.extend(keep(blocks)),
        }
    };
    for part in parts {
        let (blocks, next) = match part.split_last() {
            Some((Block::Heading(h), rest)) => (rest, Some(h)),
            _ => (part, None),
        };
        close(pending, blocks, &mut kept_intro);
        pending = next;
    }
    if pending.is_some() {
        close(pending, &[], &mut kept_intro);
    }
    intro.extend(kept_intro);
    out.intro = intro;

    out.sections = content
        .sections
        .iter()
        .map(|s| {
            let mut blocks = keep(&s.blocks);
            blocks.push(Block::Button(Button {
                text: content.language.continue_reading.clone(),
                url: format!("{base}#{}", s.anchor),
                line: s.heading.line,
            }));
            Section {
                heading: s.heading.clone(),
                anchor: s.anchor.clone(),
                blocks,
            }
        })
        .collect();

    out.findings.push(Finding {
        severity: Severity::Notice,
        code: "fit-digest",
        line: None,
        message: format!(
            "the whole post would make {} KB of HTML, more than Gmail shows; this email is a digest: each section's start, with a \"{}\" button to the rest on {base}",
            full_bytes.div_ceil(1024),
            content.language.continue_reading
        ),
        fix: "Nothing to do if a digest is what you want; make sure the web version is published before you send.".into(),
    });
    Some(out)
}

/// The fewest words of prose a section's excerpt holds, when the
/// section has that many before its first sub-heading.
pub const EXCERPT_WORDS: usize = 40;

/// A section's excerpt: prose first. Its lead paragraph (the first with
/// words in it that is not a byline), then the paragraphs after it until
/// the excerpt holds [`EXCERPT_WORDS`] words, never past a sub-heading; the
/// bylines before the lead; the section's first picture only (a report's
/// run of eight logos stays on the web); its buttons. An excerpt ending in
/// a colon introduces a list: the list's first three items stay with it,
/// and with no list the next paragraph is taken, so the excerpt ends on a
/// sentence. A section with no paragraph keeps its first list, cut to
/// three items. Blocks stay in the post's order.
fn keep(blocks: &[Block]) -> Vec<Block> {
    let prose = |b: &Block| matches!(b, Block::Paragraph(i) if !byline(i) && words(i) > 0);
    // Where the section's own text ends: its first sub-heading, unless
    // the section's prose only starts under one (a byline, then "## ...").
    let end = blocks
        .iter()
        .position(|b| matches!(b, Block::Heading(_)))
        .filter(|&h| blocks[..h].iter().any(prose))
        .unwrap_or(blocks.len());
    let lead = blocks[..end].iter().position(prose);
    let mut kept_paragraphs = Vec::new();
    let mut list = None;
    if let Some(first) = lead {
        let mut total = 0;
        for (n, b) in blocks.iter().enumerate().take(end).skip(first) {
            let Block::Paragraph(i) = b else {
                continue;
            };
            if !prose(b) {
                continue;
            }
            kept_paragraphs.push(n);
            total += words(i);
            let open = Inline::plain(i).trim_end().ends_with(':');
            if open && matches!(blocks.get(n + 1), Some(Block::List { .. })) {
                list = Some(n + 1);
                break;
            }
            if total >= EXCERPT_WORDS && !open {
                break;
            }
        }
    } else {
        list = blocks[..end]
            .iter()
            .position(|b| matches!(b, Block::List { .. }));
    }
    let picture = blocks
        .iter()
        .position(|b| matches!(b, Block::Images(imgs) if !imgs.is_empty()));
    blocks
        .iter()
        .enumerate()
        .filter_map(|(n, b)| match b {
            Block::Images(imgs) if Some(n) == picture => {
                Some(Block::Images(imgs.iter().take(1).cloned().collect()))
            }
            Block::Button(_) => Some(b.clone()),
            Block::List { start, items } if Some(n) == list => Some(Block::List {
                start: *start,
                items: items.iter().take(3).cloned().collect(),
            }),
            Block::Paragraph(_) if kept_paragraphs.contains(&n) => Some(b.clone()),
            Block::Paragraph(i) if lead.is_some_and(|l| n < l) && byline(i) => Some(b.clone()),
            _ => None,
        })
        .collect()
}

fn words(inlines: &[Inline]) -> usize {
    Inline::plain(inlines).split_whitespace().count()
}

/// "***Jane Doe, Executive Director***": a short paragraph that is all
/// emphasis, naming who wrote the section. It stays, but is not the lead.
fn byline(inlines: &[Inline]) -> bool {
    let words = Inline::plain(inlines).split_whitespace().count();
    let mut parts = inlines
        .iter()
        .filter(|i| !matches!(i, Inline::Text(t) if t.trim().is_empty()));
    let emphasised =
        matches!(parts.next(), Some(Inline::Emph(_) | Inline::Strong(_))) && parts.next().is_none();
    emphasised && (1..=20).contains(&words)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::content::{Heading, Image};

    fn para(t: &str) -> Block {
        Block::Paragraph(vec![Inline::Text(t.into())])
    }

    fn section(title: &str, blocks: Vec<Block>) -> Section {
        Section {
            heading: Heading {
                level: 1,
                inlines: vec![Inline::Text(title.into())],
                line: 7,
            },
            anchor: crate::compose::content::anchor(title),
            blocks,
        }
    }

    fn content(sections: Vec<Section>, web: Option<&str>) -> Content {
        Content {
            title: "2031 Annual Report".into(),
            kicker: "Annual report".into(),
            date_label: None,
            preheader: None,
            web_url: web.map(String::from),
            intro: vec![para("Welcome."), para("A second intro paragraph.")],
            sections,
            findings: vec![],
            language: Default::default(),
        }
    }

    #[test]
    fn keeps_lead_images_and_buttons_and_links_to_the_section() {
        let logo = Block::Images(vec![Image {
            src: "https://example.org/logo.png".into(),
            alt: "Logo".into(),
            alt_derived: false,
            title: None,
            link: None,
            width: Some(200),
            line: 9,
        }]);
        let more = Block::Button(Button {
            text: "READ MORE".into(),
            url: "https://example.org/more".into(),
            line: 12,
        });
        let c = content(
            vec![section(
                "Project Updates",
                vec![
                    Block::Heading(Heading {
                        level: 3,
                        inlines: vec![Inline::Text("Sub".into())],
                        line: 8,
                    }),
                    para(""),
                    para("Lead."),
                    logo.clone(),
                    para("Second paragraph."),
                    Block::Code("x".into()),
                    more.clone(),
                ],
            )],
            Some("https://example.org/report/2031#top"),
        );
        let d = digest(&c, 150_000).unwrap();
        let s = &d.sections[0];
        assert_eq!(s.heading, c.sections[0].heading);
        assert_eq!(
            s.blocks,
            vec![
                para("Lead."),
                logo,
                // Under 40 words: the next paragraph joins the lead.
                para("Second paragraph."),
                more,
                Block::Button(Button {
                    text: "Continue reading".into(),
                    url: "https://example.org/report/2031#project-updates".into(),
                    line: 7,
                })
            ]
        );
        // The intro keeps its lead (and, under 40 words, the paragraph
        // after it) after the note that this is a digest.
        assert_eq!(d.intro.len(), 3);
        assert!(
            Inline::plain(match &d.intro[0] {
                Block::Paragraph(i) => i,
                _ => panic!("the note is a paragraph"),
            })
            .contains("Read the full 2031 Annual Report on the web")
        );
        assert_eq!(d.intro[1], para("Welcome."));
        assert!(
            d.findings
                .iter()
                .any(|f| f.code == "fit-digest" && f.message.contains("147 KB"))
        );
    }

    #[test]
    fn a_section_without_paragraphs_keeps_three_list_items() {
        let list = Block::List {
            start: None,
            items: (1..=5).map(|n| vec![para(&n.to_string())]).collect(),
        };
        let c = content(
            vec![section("Events", vec![list])],
            Some("https://example.org/r"),
        );
        let d = digest(&c, 1).unwrap();
        match &d.sections[0].blocks[0] {
            Block::List { items, .. } => assert_eq!(items.len(), 3),
            other => panic!("expected the list, got {other:?}"),
        }
    }

    #[test]
    fn a_byline_stays_and_the_lead_is_the_paragraph_after_it() {
        let byline = Block::Paragraph(vec![Inline::Emph(vec![Inline::Strong(vec![
            Inline::Text("Jane Doe, Executive Director".into()),
        ])])]);
        let intro_to_list = para("We did three things:");
        let list = Block::List {
            start: None,
            items: (1..=5).map(|n| vec![para(&n.to_string())]).collect(),
        };
        let c = content(
            vec![section(
                "A Good Year",
                vec![byline.clone(), intro_to_list.clone(), list, para("More.")],
            )],
            Some("https://example.org/r"),
        );
        let d = digest(&c, 1).unwrap();
        let blocks = &d.sections[0].blocks;
        assert_eq!(blocks[..2], [byline, intro_to_list]);
        match &blocks[2] {
            Block::List { items, .. } => assert_eq!(items.len(), 3),
            other => panic!("expected the list the lead introduces, got {other:?}"),
        }
        assert!(matches!(&blocks[3], Block::Button(b) if b.text == CONTINUE));
        assert_eq!(blocks.len(), 4);
    }

    /// The 2023 report's sections: a byline, a column of logos, prose
    /// after a sub-heading, a lead ending on a colon with no list.
    #[test]
    fn excerpts_hold_40_words_of_prose_one_picture_and_end_on_a_sentence() {
        let logo = |n: usize| {
            Block::Images(vec![Image {
                src: format!("https://example.org/logo{n}.png"),
                alt: format!("Logo {n}"),
                alt_derived: false,
                title: None,
                link: None,
                width: Some(200),
                line: 9 + n,
            }])
        };
        let byline = Block::Paragraph(vec![Inline::Emph(vec![Inline::Text(
            "Jane Doe, Director".into(),
        )])]);
        let words = |n: usize, end: &str| para(&format!("{}{end}", vec!["word"; n].join(" ")));
        let sub = Block::Heading(Heading {
            level: 2,
            inlines: vec![Inline::Text("Sub".into())],
            line: 30,
        });
        let mut blocks = vec![byline.clone(), sub.clone()];
        blocks.extend((0..8).map(logo));
        blocks.extend([
            words(25, "."),
            words(10, ":"),
            words(12, "."),
            words(30, "."),
        ]);
        let c = content(
            vec![section("Members", blocks)],
            Some("https://example.org/r"),
        );
        let d = digest(&c, 1).unwrap();
        let kept = &d.sections[0].blocks;
        let pictures = kept
            .iter()
            .filter(|b| matches!(b, Block::Images(_)))
            .count();
        assert_eq!(pictures, 1, "{kept:#?}");
        // 25 + 10 words, ending on a colon: the next paragraph too.
        let prose: Vec<&Block> = kept
            .iter()
            .filter(|b| matches!(b, Block::Paragraph(i) if !byline_of(i)))
            .collect();
        assert_eq!(prose, [&words(25, "."), &words(10, ":"), &words(12, ".")]);
        assert!(kept.contains(&byline), "the byline before the lead stays");
        // A long lead is enough on its own.
        let c = content(
            vec![section("Long", vec![words(45, "."), words(30, ".")])],
            Some("https://example.org/r"),
        );
        let d = digest(&c, 1).unwrap();
        assert_eq!(d.sections[0].blocks[0], words(45, "."));
        assert_eq!(d.sections[0].blocks.len(), 2);
    }

    fn byline_of(i: &[Inline]) -> bool {
        byline(i)
    }

    #[test]
    fn sub_sections_before_the_first_top_level_heading_keep_heading_and_button() {
        let sub = |t: &str, line| {
            Block::Heading(Heading {
                level: 3,
                inlines: vec![Inline::Text(t.into())],
                line,
            })
        };
        let mut c = content(
            vec![section("Projects", vec![para("Lead.")])],
            Some("https://example.org/r"),
        );
        c.intro = vec![
            para("Welcome."),
            para("More welcome."),
            sub("A Good Year", 20),
            para("Lead one."),
            para("Rest one."),
            sub("Our Members", 40),
            para("Lead two."),
            para("Rest two."),
        ];
        let d = digest(&c, 1).unwrap();
        let button = |anchor: &str, line| {
            Block::Button(Button {
                text: CONTINUE.into(),
                url: format!("https://example.org/r#{anchor}"),
                line,
            })
        };
        assert_eq!(
            d.intro[1..],
            [
                para("Welcome."),
                para("More welcome."),
                sub("A Good Year", 20),
                para("Lead one."),
                para("Rest one."),
                button("a-good-year", 20),
                sub("Our Members", 40),
                para("Lead two."),
                para("Rest two."),
                button("our-members", 40),
            ]
        );
    }

    #[test]
    fn no_digest_without_a_web_version() {
        assert!(digest(&content(vec![], None), 1).is_none());
    }
}
