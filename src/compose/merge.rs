//! Merge fields: `{{ first_name }}` and `{{ first_name | default: "there" }}`.
//!
//! The syntax is Liquid's, which Mailchimp, Shopify and most mail tools'
//! users already know. An issue is rendered once with the fields left in;
//! each recipient's copy is then a substitution over a pre-split template,
//! never a new render.

use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Field { name: String, default: String },
}

/// How substituted values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// HTML-escaped: a subscriber's name can never become markup.
    Html,
    /// As given, for the plain-text part.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    escape: Escape,
    literal_len: usize,
}

impl Template {
    /// Splits `source` at its merge fields. Text between `{{` and `}}` that
    /// is not a merge field (a code sample, say) is kept as it is.
    /// The longest `{{ name | default: "..." }}` herald reads as a field,
    /// between the braces; a longer one is left as text.
    pub const MAX_FIELD_LEN: usize = 256;

    pub fn compile(source: &str, escape: Escape) -> Template {
        let mut parts = Vec::new();
        let mut literal = String::new();
        scan(source, |piece| match piece {
            Piece::Literal(s) => literal.push_str(s),
            Piece::Field(name, default) => {
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                parts.push(Part::Field { name, default });
            }
        });
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        let literal_len = parts
            .iter()
            .map(|p| match p {
                Part::Literal(s) => s.len(),
                Part::Field { .. } => 0,
            })
            .sum();
        Template {
            parts,
            escape,
            literal_len,
        }
    }

    /// The names of the fields used, in order of first use.
    pub fn fields(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for p in &self.parts {
            if let Part::Field { name, .. } = p
                && !out.contains(&name.as_str())
            {
                out.push(name);
            }
        }
        out
    }

    /// Fields that have no default: empty when a recipient lacks them.
    pub fn fields_without_default(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for p in &self.parts {
            if let Part::Field { name, default } = p
                && default.is_empty()
                && !out.contains(&name.as_str())
            {
                out.push(name);
            }
        }
        out
    }

    /// `Template::compile(source, escape).render(value)`, in one pass over
    /// `source`: for a text filled in only once (the preview's), the parts
    /// were a copy of the whole HTML made only to be copied again.
    pub fn fill<'v>(
        source: &str,
        escape: Escape,
        value: impl Fn(&str) -> Option<Cow<'v, str>>,
    ) -> String {
        let mut out = String::with_capacity(source.len() + 64);
        let mut scratch = String::new();
        scan(source, |piece| match piece {
            Piece::Literal(s) => out.push_str(s),
            Piece::Field(name, default) => {
                let mut piece = |s: &str| out.push_str(s);
                push_field(escape, &name, &default, &value, &mut scratch, &mut piece)
            }
        });
        out
    }

    /// Fills in the fields; `value` returns a field's value, and an absent
    /// or empty value falls back to the field's default.
    pub fn render<'v>(&self, value: impl Fn(&str) -> Option<Cow<'v, str>>) -> String {
        let mut out = String::with_capacity(self.literal_len + 64);
        self.render_into(&mut out, value);
        out
    }

    pub fn render_into<'v>(&self, out: &mut String, value: impl Fn(&str) -> Option<Cow<'v, str>>) {
        self.each_piece(value, |piece| out.push_str(piece));
    }

    /// The length `render` would return, without building the text: how
    /// big each recipient's copy is, for the whole list, in no time.
    pub fn rendered_len<'v>(&self, value: impl Fn(&str) -> Option<Cow<'v, str>>) -> usize {
        let mut len = 0;
        self.each_piece(value, |piece| len += piece.len());
        len
    }

    fn each_piece<'v>(
        &self,
        value: impl Fn(&str) -> Option<Cow<'v, str>>,
        mut piece: impl FnMut(&str),
    ) {
        let mut scratch = String::new();
        for p in &self.parts {
            match p {
                Part::Literal(s) => piece(s),
                Part::Field { name, default } => {
                    push_field(self.escape, name, default, &value, &mut scratch, &mut piece)
                }
            }
        }
    }
}

/// A piece of a template's source: text as it is, or a merge field's name
/// and default.
enum Piece<'s> {
    Literal(&'s str),
    Field(String, String),
}

/// The pieces of `source`, in order. Text between `{{` and `}}` that is not
/// a merge field is a literal.
fn scan<'s>(source: &'s str, mut each: impl FnMut(Piece<'s>)) {
    let mut rest = source;
    // memmem, not `str::find`: the HTML is compiled whole, and the
    // standard searcher took most of the time of a preview's compile.
    while let Some(open) = memchr::memmem::find(rest.as_bytes(), b"{{") {
        let after = &rest[open + 2..];
        // A field is short: looking for `}}` only that far keeps
        // thousands of `{{` linear (the content fuzz target found 20,000
        // of them took 1.2 s, growing with the square).
        let window = &after.as_bytes()[..after.len().min(Template::MAX_FIELD_LEN)];
        let parsed = memchr::memmem::find(window, b"}}")
            .and_then(|close| parse_field(&after[..close]).map(|f| (f, close)));
        match parsed {
            Some(((name, default), close)) => {
                each(Piece::Literal(&rest[..open]));
                each(Piece::Field(name, default));
                rest = &after[close + 2..];
            }
            None => {
                each(Piece::Literal(&rest[..open + 2]));
                rest = after;
            }
        }
    }
    each(Piece::Literal(rest));
}

/// Writes a field: its value, else (absent or blank) its default.
fn push_field<'v>(
    escape: Escape,
    name: &str,
    default: &str,
    value: &impl Fn(&str) -> Option<Cow<'v, str>>,
    scratch: &mut String,
    piece: &mut impl FnMut(&str),
) {
    match value(name).filter(|v| !v.trim().is_empty()) {
        // A line break or other control character in a
        // subscriber's value (a CSV field may hold one) would
        // break the message's lines: it becomes a space.
        Some(v) if v.contains(|c: char| c.is_control() && c != '\t') => {
            let clean: String = v
                .chars()
                .map(|c| if c.is_control() && c != '\t' { ' ' } else { c })
                .collect();
            push_value(escape, &clean, scratch, piece)
        }
        Some(v) => push_value(escape, &v, scratch, piece),
        // Defaults were written in the document itself, already escaped for it.
        None => piece(default),
    }
}

fn push_value(escape: Escape, v: &str, scratch: &mut String, piece: &mut impl FnMut(&str)) {
    match escape {
        Escape::Html => {
            scratch.clear();
            crate::html::push_ascii(scratch, &crate::html::attr(v));
            piece(scratch)
        }
        Escape::None => piece(v),
    }
}

/// ` first_name | default: "there" ` -> ("first_name", "there").
fn parse_field(inner: &str) -> Option<(String, String)> {
    let (name, filter) = match inner.split_once('|') {
        Some((n, f)) => (n.trim(), Some(f.trim())),
        None => (inner.trim(), None),
    };
    let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return None;
    }
    let default = match filter {
        None => String::new(),
        Some(f) => {
            let arg = f
                .strip_prefix("default")?
                .trim_start()
                .strip_prefix(':')?
                .trim();
            unquote(arg)?.to_string()
        }
    };
    Some((name.to_ascii_lowercase(), default))
}

fn unquote(s: &str) -> Option<&str> {
    for (open, close) in [
        ("\"", "\""),
        ("'", "'"),
        ("&quot;", "&quot;"),
        ("\u{201c}", "\u{201d}"),
        ("\u{2018}", "\u{2019}"),
    ] {
        if let Some(inner) = s.strip_prefix(open).and_then(|r| r.strip_suffix(close)) {
            return Some(inner);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(name: &str) -> Option<Cow<'static, str>> {
        match name {
            "first_name" => Some(Cow::Borrowed("Ana <b>")),
            "empty" => Some(Cow::Borrowed(" ")),
            _ => None,
        }
    }

    /// Found by the content fuzz target: 20,000 `{{` took 1.2 s,
    /// growing with the square of their number.
    #[test]
    fn many_open_braces_take_linear_time() {
        let text = "{{".repeat(200_000);
        let start = std::time::Instant::now();
        let t = Template::compile(&text, Escape::None);
        assert_eq!(t.render(|_| None), text);
        let long = format!("{{{{ x | default: \"{}\" }}}}", "a".repeat(300));
        assert_eq!(
            Template::compile(&long, Escape::None).render(|_| None),
            long
        );
        assert!(start.elapsed().as_secs() < 2, "{:?}", start.elapsed());
    }

    #[test]
    fn substitutes_with_defaults_and_escaping() {
        let t = Template::compile(
            "Hi {{ first_name }}, {{empty|default:\"friend\"}} {{ last_name | default: 'x' }}!",
            Escape::Html,
        );
        assert_eq!(t.fields(), vec!["first_name", "empty", "last_name"]);
        assert_eq!(t.render(vals), "Hi Ana &lt;b&gt;, friend x!");
        assert_eq!(t.rendered_len(vals), t.render(vals).len());
        // A line break inside a CSV value cannot break the message's lines.
        let t = Template::compile("Hi {{ first_name }}!", Escape::None);
        let crlf = |_: &str| Some(Cow::Borrowed("Ana\r\nBcc: x"));
        assert_eq!(t.render(crlf), "Hi Ana  Bcc: x!");
        assert_eq!(t.rendered_len(crlf), t.render(crlf).len());
        let t = Template::compile("Hi {{ first_name }}", Escape::None);
        assert_eq!(t.render(vals), "Hi Ana <b>");
    }

    #[test]
    fn fill_is_compile_then_render() {
        for src in [
            "",
            "Hi {{ first_name }}, {{empty|default:\"friend\"}} {{ last_name | default: 'x' }}!",
            "code {{ 1 + 2 }} and {{ unclosed",
            "{{{{ first_name }}}} {{ x }}{{ first_name }}",
        ] {
            for escape in [Escape::Html, Escape::None] {
                assert_eq!(
                    Template::fill(src, escape, vals),
                    Template::compile(src, escape).render(vals),
                    "{src:?}"
                );
            }
        }
    }

    #[test]
    fn curly_quotes_from_the_cms_work() {
        let t = Template::compile(
            "Hi {{ nick | default: \u{201c}there\u{201d} }}",
            Escape::Html,
        );
        assert_eq!(t.render(vals), "Hi there");
    }

    #[test]
    fn non_fields_stay_literal() {
        let src = "code {{ 1 + 2 }} and {{ unclosed";
        let t = Template::compile(src, Escape::Html);
        assert!(t.fields().is_empty());
        assert_eq!(t.render(vals), src);
    }
}
