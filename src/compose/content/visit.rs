//! One walk over the content model, in reading order, for everything that
//! looks at (or changes) the links and pictures of an issue wherever they
//! sit: the model's nesting is spelled out here once, so a new kind of
//! block is handled in one place rather than in each stage's own recursion.
//!
//! Implement [`Visit`] (or [`VisitMut`]) with the hooks you need and hand it
//! to [`content`] (or [`content_mut`]), or to [`blocks`] / [`inlines`] for
//! a part of the issue.

use super::{Block, Button, Content, Image, Inline, Link};

/// Hooks called on each part of the content, outer before inner; each does
/// nothing unless overridden.
pub trait Visit<'a> {
    fn block(&mut self, _block: &'a Block) {}
    fn inline(&mut self, _inline: &'a Inline) {}
    /// A link, before the inlines it holds.
    fn link(&mut self, _link: &'a Link) {}
    /// A picture, alone in a paragraph of pictures or among text.
    fn image(&mut self, _image: &'a Image) {}
}

/// [`Visit`] for changing the content in place.
pub trait VisitMut {
    fn link(&mut self, _link: &mut Link) {}
    fn image(&mut self, _image: &mut Image) {}
    fn button(&mut self, _button: &mut Button) {}
}

/// The intro, then each section: its heading, then its blocks.
pub fn content<'a, V: Visit<'a> + ?Sized>(v: &mut V, content: &'a Content) {
    blocks(v, &content.intro);
    for s in &content.sections {
        inlines(v, &s.heading.inlines);
        blocks(v, &s.blocks);
    }
}

pub fn blocks<'a, V: Visit<'a> + ?Sized>(v: &mut V, blocks: impl IntoIterator<Item = &'a Block>) {
    for b in blocks {
        block(v, b);
    }
}

pub fn block<'a, V: Visit<'a> + ?Sized>(v: &mut V, block: &'a Block) {
    v.block(block);
    match block {
        Block::Heading(h) => inlines(v, &h.inlines),
        Block::Paragraph(i) => inlines(v, i),
        Block::List { items, .. } => {
            for item in items {
                blocks(v, item);
            }
        }
        Block::Quote(inner) => blocks(v, inner),
        Block::Table { head, rows } => {
            for cell in head.iter().chain(rows.iter().flatten()) {
                inlines(v, cell);
            }
        }
        Block::Images(images) => {
            for img in images {
                v.image(img);
            }
        }
        Block::Button(_) | Block::Code(_) | Block::Rule => {}
    }
}

pub fn inlines<'a, V: Visit<'a> + ?Sized>(v: &mut V, inlines_: &'a [Inline]) {
    for i in inlines_ {
        v.inline(i);
        match i {
            Inline::Strong(c) | Inline::Emph(c) | Inline::Strike(c) => inlines(v, c),
            Inline::Link(l) => {
                v.link(l);
                inlines(v, &l.children);
            }
            Inline::Image(img) => v.image(img),
            Inline::Text(_) | Inline::Code(_) | Inline::Break => {}
        }
    }
}

/// [`content`] for a [`VisitMut`].
pub fn content_mut<V: VisitMut + ?Sized>(v: &mut V, content: &mut Content) {
    blocks_mut(v, &mut content.intro);
    for s in &mut content.sections {
        inlines_mut(v, &mut s.heading.inlines);
        blocks_mut(v, &mut s.blocks);
    }
}

pub fn blocks_mut<V: VisitMut + ?Sized>(v: &mut V, blocks: &mut [Block]) {
    for b in blocks {
        match b {
            Block::Heading(h) => inlines_mut(v, &mut h.inlines),
            Block::Paragraph(i) => inlines_mut(v, i),
            Block::List { items, .. } => {
                for item in items {
                    blocks_mut(v, item);
                }
            }
            Block::Quote(inner) => blocks_mut(v, inner),
            Block::Table { head, rows } => {
                for cell in head.iter_mut().chain(rows.iter_mut().flatten()) {
                    inlines_mut(v, cell);
                }
            }
            Block::Images(images) => {
                for img in images {
                    v.image(img);
                }
            }
            Block::Button(b) => v.button(b),
            Block::Code(_) | Block::Rule => {}
        }
    }
}

pub fn inlines_mut<V: VisitMut + ?Sized>(v: &mut V, inlines: &mut [Inline]) {
    for i in inlines {
        match i {
            Inline::Strong(c) | Inline::Emph(c) | Inline::Strike(c) => inlines_mut(v, c),
            Inline::Link(l) => {
                v.link(l);
                inlines_mut(v, &mut l.children);
            }
            Inline::Image(img) => v.image(img),
            Inline::Text(_) | Inline::Code(_) | Inline::Break => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::content::{Heading, Section};

    fn image(src: &str, line: usize) -> Image {
        Image {
            src: src.into(),
            alt: String::new(),
            alt_derived: false,
            title: None,
            link: None,
            width: None,
            line,
        }
    }

    fn link(url: &str, children: Vec<Inline>) -> Inline {
        Inline::Link(Link {
            url: url.into(),
            children,
            line: 1,
        })
    }

    /// Pictures and links everywhere the model can hold them.
    fn sample() -> Content {
        Content {
            title: "T".into(),
            kicker: "K".into(),
            language: Default::default(),
            date_label: None,
            preheader: None,
            web_url: None,
            intro: vec![
                Block::Images(vec![image("a", 1)]),
                Block::Quote(vec![Block::Paragraph(vec![Inline::Emph(vec![link(
                    "l1",
                    vec![Inline::Image(image("b", 2))],
                )])])]),
            ],
            sections: vec![Section {
                heading: Heading {
                    level: 1,
                    inlines: vec![link("l2", vec![Inline::Text("H".into())])],
                    line: 3,
                },
                anchor: "h".into(),
                blocks: vec![
                    Block::List {
                        start: None,
                        items: vec![vec![Block::Paragraph(vec![Inline::Image(image("c", 4))])]],
                    },
                    Block::Table {
                        head: vec![vec![Inline::Image(image("d", 5))]],
                        rows: vec![vec![vec![link("l3", vec![]), Inline::Image(image("e", 6))]]],
                    },
                    Block::Code("![](x)".into()),
                ],
            }],
            findings: vec![],
        }
    }

    #[derive(Default)]
    struct Seen(Vec<String>);
    impl<'a> Visit<'a> for Seen {
        fn link(&mut self, l: &'a Link) {
            self.0.push(l.url.clone());
        }
        fn image(&mut self, i: &'a Image) {
            self.0.push(i.src.clone());
        }
    }
    impl VisitMut for Seen {
        fn link(&mut self, l: &mut Link) {
            self.0.push(l.url.clone());
        }
        fn image(&mut self, i: &mut Image) {
            self.0.push(i.src.clone());
            i.src.make_ascii_uppercase();
        }
    }

    #[test]
    fn both_walks_see_every_link_and_picture_in_reading_order() {
        let order = ["a", "l1", "b", "l2", "c", "d", "l3", "e"];
        let mut c = sample();
        let mut seen = Seen::default();
        content(&mut seen, &c);
        assert_eq!(seen.0, order);
        let mut seen = Seen::default();
        content_mut(&mut seen, &mut c);
        assert_eq!(seen.0, order);
        let mut seen = Seen::default();
        content(&mut seen, &c);
        assert_eq!(seen.0, ["A", "l1", "B", "l2", "C", "D", "l3", "E"]);
    }
}
