//! Escaping for the HTML and MJML herald writes.

/// Escapes text for an HTML text node. Quotes are left alone so merge
/// fields such as `{{ first_name | default: "there" }}` survive in text.
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    push_text(&mut out, s);
    out
}

pub fn push_text(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
}

/// Writes every non-ASCII character as a numeric character reference
/// (`&#8217;`), except inside `<style>`, where references mean nothing.
/// Pure-ASCII HTML with short lines needs no transfer encoding in email.
pub fn ascii(html: &str) -> String {
    if html.is_ascii() {
        return html.to_string();
    }
    let mut out = String::with_capacity(html.len() + html.len() / 16);
    let mut rest = html;
    while !rest.is_empty() {
        let (chunk, style, after) = match rest.find("<style") {
            Some(i) => {
                let end = rest[i..].find("</style>").map_or(rest.len(), |e| i + e + 8);
                (&rest[..i], &rest[i..end], &rest[end..])
            }
            None => (rest, "", ""),
        };
        push_ascii(&mut out, chunk);
        out.push_str(style);
        rest = after;
    }
    out
}

/// Appends `s` with non-ASCII characters as numeric references.
pub fn push_ascii(out: &mut String, s: &str) {
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            out.push_str(&format!("&#{};", c as u32));
        }
    }
}

/// Breaks long lines between structural tags (`<table>`, `<tr>`, `<td>`,
/// `<div>` and MSO conditional comments), where a line break means nothing,
/// as the official MJML renderer's own output does. mrml writes the body as
/// one line; email needs lines under 998 bytes, and short lines let the HTML
/// travel without quoted-printable encoding.
pub fn fold_lines(html: &str) -> String {
    const SAFE: &[&str] = &[
        "<table",
        "</table",
        "<tbody",
        "</tbody",
        "<tr",
        "</tr",
        "<td",
        "</td",
        "<div",
        "</div",
        "<!--[if",
        "<![endif]",
        "<!--<![endif]",
        "<head",
        "</head",
        "<body",
        "</body",
        "<style",
        "<meta",
        "<title",
        "<link",
        "<p ",
        "<p>",
        "<ul",
        "<ol",
        "<li",
        "<h1",
        "<h2",
        "<h3",
        "<h4",
        "<h5",
        "<h6",
        "<blockquote",
        "<pre",
        "<hr",
    ];
    const TARGET: usize = 160;
    let mut out = String::with_capacity(html.len() + html.len() / 64);
    let mut line_len = 0;
    let mut rest = html;
    while let Some(i) = rest.find("><") {
        let (head, tail) = rest.split_at(i + 1);
        out.push_str(head);
        line_len = match head.rfind('\n') {
            Some(n) => head.len() - n - 1,
            None => line_len + head.len(),
        };
        if line_len > TARGET && SAFE.iter().any(|t| tail.starts_with(t)) {
            out.push('\n');
            line_len = 0;
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// Escapes a value for a double-quoted HTML attribute.
pub fn attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn ascii_keeps_style_blocks() {
        assert_eq!(
            super::ascii("<p>caf\u{e9} \u{2019}</p><style>a{content:\"\u{e9}\"}</style>\u{e9}"),
            "<p>caf&#233; &#8217;</p><style>a{content:\"\u{e9}\"}</style>&#233;"
        );
    }

    #[test]
    fn escapes() {
        assert_eq!(super::text("a < b & \"c\""), "a &lt; b &amp; \"c\"");
        assert_eq!(super::attr("x\"><script>"), "x&quot;&gt;&lt;script&gt;");
    }
}
