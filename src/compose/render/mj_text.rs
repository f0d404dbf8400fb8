//! The HTML inside each `<mj-text>` without mrml's round trip.
//!
//! mrml parses the HTML herald writes inside every `<mj-text>` into a tree
//! of nodes, only to write the same HTML back out: for the 2023 annual
//! report that round trip was an eighth of `herald preview`. Here mrml gets
//! the document with each `<mj-text>` body replaced by a marker, and the
//! body itself is written where its marker comes out, in exactly the form
//! mrml would have written it (the same rules, applied to the text herald
//! made). A body outside the simple form herald writes (a comment, single
//! quotes, a prefixed name...) makes the whole document take mrml's own
//! way, so the output never depends on which way was taken; the tests
//! compare both ways.

use std::fmt::Write;

/// Opens and closes a marker: a private-use character, and the document is
/// taken whole by mrml if it holds one already.
const MARK: char = '\u{e000}';

/// The document with its `<mj-text>` bodies replaced by markers, and those
/// bodies as mrml would write them. `None`: let mrml read it all.
pub(super) fn split(mjml: &str) -> Option<(String, Vec<String>)> {
    if mjml.contains(MARK) {
        return None;
    }
    let mut skeleton = String::with_capacity(mjml.len() / 4);
    let mut bodies = Vec::new();
    let mut rest = mjml;
    let (opening, closing) = (
        memchr::memmem::Finder::new(b"<mj-text"),
        memchr::memmem::Finder::new(b"</mj-text>"),
    );
    while let Some(at) = opening.find(rest.as_bytes()) {
        let after = &rest[at + "<mj-text".len()..];
        // `<mj-textarea>` is not one; mrml would refuse it anyway.
        if !after.starts_with([' ', '>', '/', '\n', '\t', '\r']) {
            return None;
        }
        let open = at + "<mj-text".len() + tag_end(after)?;
        skeleton.push_str(&rest[..open]);
        rest = &rest[open..];
        if skeleton.ends_with("/>") {
            continue;
        }
        let close = closing.find(rest.as_bytes())?;
        bodies.push(canonical(&rest[..close])?);
        let _ = write!(skeleton, "{MARK}{}{MARK}", bodies.len() - 1);
        rest = &rest[close..];
    }
    skeleton.push_str(rest);
    Some((skeleton, bodies))
}

/// Puts the bodies where mrml wrote their markers. `None` if the markers
/// are not each there once, in order (then mrml must do it all).
pub(super) fn fill(html: &str, bodies: &[String]) -> Option<String> {
    let extra: usize = bodies.iter().map(String::len).sum();
    let mut out = String::with_capacity(html.len() + extra);
    let mut rest = html;
    for (n, body) in bodies.iter().enumerate() {
        let marker = format!("{MARK}{n}{MARK}");
        let at = memchr::memmem::find(rest.as_bytes(), marker.as_bytes())?;
        out.push_str(&rest[..at]);
        out.push_str(body);
        rest = &rest[at + marker.len()..];
    }
    if rest.contains(MARK) {
        return None;
    }
    out.push_str(rest);
    Some(out)
}

/// Where the tag that `s` continues ends (just past its `>`), skipping
/// `>` inside quoted attribute values.
fn tag_end(s: &str) -> Option<usize> {
    let mut quote = None;
    for (i, b) in s.bytes().enumerate() {
        match (quote, b) {
            (None, b'"' | b'\'') => quote = Some(b),
            (Some(q), _) if q == b => quote = None,
            (None, b'>') => return Some(i + 1),
            _ => {}
        }
    }
    None
}

/// `body` as mrml writes it after reading it: attributes as
/// `name="value"` with the value in Rust's debug form (mrml formats it
/// with `{:?}`), void and self-closed elements as `<x />` (an empty
/// non-void one as `<x></x>`), text as it is, except text that starts a
/// line and is only white space, which mrml's reader drops. `None` for
/// anything else, including what mrml would refuse.
fn canonical(body: &str) -> Option<String> {
    let mut out = String::with_capacity(body.len() + body.len() / 16);
    let mut open: Vec<&str> = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let Some(tag) = rest.strip_prefix('<') else {
            let end = memchr::memchr(b'<', rest.as_bytes()).unwrap_or(rest.len());
            let text = &rest[..end];
            if memchr::memchr(b']', text.as_bytes()).is_some() && text.contains("]]>") {
                return None;
            }
            if !(text.starts_with('\n') && text.trim().is_empty()) {
                out.push_str(text);
            }
            rest = &rest[end..];
            continue;
        };
        if let Some(close) = tag.strip_prefix('/') {
            let name = open.pop()?;
            rest = close.strip_prefix(name)?.strip_prefix('>')?;
            out.push_str("</");
            out.push_str(name);
            out.push('>');
            continue;
        }
        let (name, after) = name(tag)?;
        if name.starts_with("mj-") {
            return None;
        }
        out.push('<');
        out.push_str(name);
        let (closed, after) = attributes(after, &mut out)?;
        rest = after;
        if is_void(name) {
            out.push_str(" />");
        } else if closed {
            // mrml reads `<p />` as an empty `<p>`.
            out.push_str("></");
            out.push_str(name);
            out.push('>');
        } else if let Some(after) = rest
            .strip_prefix("</")
            .and_then(|r| r.strip_prefix(name))
            .and_then(|r| r.strip_prefix('>'))
        {
            // An empty element is written the same either way.
            out.push_str("></");
            out.push_str(name);
            out.push('>');
            rest = after;
        } else {
            out.push('>');
            open.push(name);
        }
    }
    open.is_empty().then_some(out)
}

/// A tag or attribute name (letters, digits, `-`, `_`, `.`, starting with
/// a letter) and what follows it.
fn name(s: &str) -> Option<(&str, &str)> {
    let len = s
        .bytes()
        .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')))
        .unwrap_or(s.len());
    s.as_bytes()
        .first()
        .filter(|b| b.is_ascii_alphabetic())
        .map(|_| s.split_at(len))
}

/// Writes the attributes that start `s` to `out` and returns whether the
/// tag was self-closed (`/>`) and what follows its end.
fn attributes<'a>(mut s: &'a str, out: &mut String) -> Option<(bool, &'a str)> {
    let mut names: Vec<&str> = Vec::new();
    loop {
        let trimmed = s.trim_start_matches([' ', '\t', '\n', '\r']);
        if let Some(after) = trimmed.strip_prefix('>') {
            return Some((false, after));
        }
        if let Some(after) = trimmed.strip_prefix("/>") {
            return Some((true, after));
        }
        // Attributes are separated by white space; mrml keeps the last of
        // two with one name, in the first one's place: not herald's form.
        if trimmed.len() == s.len() {
            return None;
        }
        let (key, after) = name(trimmed)?;
        let after = after.strip_prefix("=\"")?;
        let end = memchr::memchr(b'"', after.as_bytes())?;
        let value = &after[..end];
        if names.contains(&key) || value.contains('<') {
            return None;
        }
        names.push(key);
        out.push(' ');
        out.push_str(key);
        out.push('=');
        // Debug formatting goes char by char; printable ASCII other than
        // a quote or a backslash (nearly every value) comes out as it is.
        // Tested with no branch per byte (vector instructions): `all`,
        // stopping at the first other byte, took 11 instructions a byte of
        // every link and style.
        let other = value.bytes().fold(0u8, |other, b| {
            other
                | u8::from(!(b' '..=b'~').contains(&b))
                | u8::from(b == b'"')
                | u8::from(b == b'\\')
        });
        if other == 0 {
            out.push('"');
            out.push_str(value);
            out.push('"');
        } else {
            let _ = write!(out, "{value:?}");
        }
        s = &after[end + 1..];
    }
}

/// mrml's list (`mrml::prelude::is_void_element`, not public).
fn is_void(tag: &str) -> bool {
    matches!(
        tag,
        "area"
            | "base"
            | "br"
            | "col"
            | "embed"
            | "hr"
            | "img"
            | "input"
            | "link"
            | "meta"
            | "param"
            | "source"
            | "track"
            | "wbr"
    )
}

#[cfg(test)]
#[path = "mj_text_tests.rs"]
mod tests;
