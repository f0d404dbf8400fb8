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
    let mut from = 0;
    for i in memchr::memmem::find_iter(html.as_bytes(), "><") {
        let (head, tail) = (&html[from..i + 1], &html[i + 1..]);
        out.push_str(head);
        line_len = match memchr::memrchr(b'\n', head.as_bytes()) {
            Some(n) => head.len() - n - 1,
            None => line_len + head.len(),
        };
        if line_len > TARGET && SAFE.iter().any(|t| tail.starts_with(t)) {
            out.push('\n');
            line_len = 0;
        }
        from = i + 1;
    }
    out.push_str(&html[from..]);
    out
}

/// Makes the rendered HTML smaller without changing what any client shows:
/// Gmail clips a message whose HTML passes about 102 KB, and hides the
/// rest, the unsubscribe link included, so every byte saved in markup is
/// one more byte of the post that fits.
///
/// - Runs of whitespace between words and tags become one space, or one
///   line break when they held one (HTML shows them the same, and email
///   needs short lines anyway); `<pre>` is left alone.
/// - Comments go, except the conditional comments Outlook reads
///   (`<!--[if mso]>`, `<!--<![endif]-->`, `<!-->`).
/// - Back-to-back Outlook conditionals with the same condition are merged,
///   as the official MJML renderer does.
/// - CSS in `<style>` blocks and `style` attributes loses the spaces that
///   mean nothing; a `<style>` block identical to an earlier one is dropped.
pub fn minify(html: &str) -> String {
    let merged = html.replace("<![endif]--><!--[if mso | IE]>", "");
    let s = merged.as_str();
    let mut out = String::with_capacity(s.len());
    let mut styles: Vec<&str> = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let rest = &s[i..];
        if let Some(body) = rest.strip_prefix("<!--") {
            let conditional = body.starts_with("[if") || body.starts_with("<![endif]");
            if conditional {
                let end = rest.find('>').map_or(rest.len(), |e| e + 1);
                out.push_str(&rest[..end]);
                i += end;
            } else if body.starts_with('>') {
                // `<!-->`: the end of a "downlevel-revealed" conditional.
                out.push_str("<!-->");
                i += 5;
            } else {
                i += body.find("-->").map_or(rest.len(), |e| 4 + e + 3);
            }
        } else if rest.starts_with('<') {
            let end = tag_end(rest);
            let tag = &rest[..end];
            let name = tag_name(tag);
            if name.eq_ignore_ascii_case("style") || name.eq_ignore_ascii_case("pre") {
                let close = if name.eq_ignore_ascii_case("style") {
                    "</style>"
                } else {
                    "</pre>"
                };
                let block_end = rest[end..]
                    .find(close)
                    .map_or(rest.len(), |c| end + c + close.len());
                if name.eq_ignore_ascii_case("style") {
                    let block = &rest[..block_end];
                    if !styles.contains(&block) {
                        styles.push(block);
                        push_tag(&mut out, tag);
                        out.push_str(&css(&rest[end..block_end - close.len()]));
                        out.push_str(close);
                    }
                } else {
                    push_tag(&mut out, tag);
                    out.push_str(&rest[end..block_end]);
                }
                i += block_end;
            } else {
                push_tag(&mut out, tag);
                i += end;
            }
        } else {
            let end = rest.find('<').unwrap_or(rest.len());
            push_collapsed(&mut out, &rest[..end]);
            i += end;
        }
    }
    out
}

/// The length of the tag at the start of `s`, quotes respected.
fn tag_end(s: &str) -> usize {
    let mut quote = None;
    for (i, c) in s.char_indices().skip(1) {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return i + 1,
            _ => {}
        }
    }
    s.len()
}

fn tag_name(tag: &str) -> &str {
    let t = tag.trim_start_matches('<');
    let end = t
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(t.len());
    &t[..end]
}

/// Copies a tag, with the CSS of its `style` attribute minified.
fn push_tag(out: &mut String, tag: &str) {
    const ATTR: &str = " style=\"";
    match tag.find(ATTR) {
        Some(a) => {
            let start = a + ATTR.len();
            let len = tag[start..].find('"').unwrap_or(tag.len() - start);
            out.push_str(&tag[..start]);
            out.push_str(css(&tag[start..start + len]).trim_end_matches(';'));
            out.push_str(&tag[start + len..]);
        }
        None => out.push_str(tag),
    }
}

fn push_collapsed(out: &mut String, text: &str) {
    let mut run: Option<bool> = None; // Some(saw a newline) while in whitespace
    for c in text.chars() {
        if c.is_ascii_whitespace() {
            let nl = run.unwrap_or(false) || c == '\n';
            run = Some(nl);
        } else {
            if let Some(nl) = run.take() {
                out.push(if nl { '\n' } else { ' ' });
            }
            out.push(c);
        }
    }
    if let Some(nl) = run {
        out.push(if nl { '\n' } else { ' ' });
    }
}

/// Drops the whitespace CSS does not need: around `{`, `}`, `;` and `,`,
/// after `:`, and the `;` before a `}`. Whitespace elsewhere (between the
/// words of a selector or a media query) is kept as one space; quoted
/// strings are copied as they are. A line break follows a `}` once a line
/// passes 400 bytes: mail needs lines under 998, and a style block on one
/// line would send the whole HTML part quoted-printable.
fn css(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut quote = None;
    let mut pending_space = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if let Some(q) = quote {
            out.push(c);
            if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
            }
            c if c.is_whitespace() => pending_space = true,
            '{' | '}' | ';' | ',' | ':' => {
                // The space before `:` can matter in a selector (`a :hover`).
                if pending_space && c == ':' && !out.is_empty() {
                    out.push(' ');
                }
                pending_space = false;
                if c == '}' && out.ends_with(';') {
                    out.pop();
                }
                out.push(c);
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                let line = out.len() - out.rfind('\n').map_or(0, |n| n + 1);
                if c == '}' && line > 400 {
                    out.push('\n');
                }
            }
            _ => {
                if pending_space && !out.is_empty() && !out.ends_with(['{', '}', ';', ',', ':']) {
                    out.push(' ');
                }
                pending_space = false;
                if c == '"' || c == '\'' {
                    quote = Some(c);
                }
                out.push(c);
            }
        }
    }
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

    #[test]
    fn long_style_blocks_are_broken_into_lines() {
        let rule = ".hd-table td{display:block !important;width:auto !important}";
        let css = super::css(&format!("@media (max-width:479px){{{}}}", rule.repeat(30)));
        assert!(css.lines().count() > 1);
        assert!(css.lines().all(|l| l.len() < 500), "{css}");
        assert_eq!(
            css.replace('\n', ""),
            format!("@media (max-width:479px){{{}}}", rule.repeat(30))
        );
    }

    #[test]
    fn minify_keeps_what_clients_show() {
        let html = "<html><head><style type=\"text/css\">\n  a { color: #c00; }\n  @media only screen and (max-width: 479px) { td.x { width: auto !important; } }\n</style><style type=\"text/css\">\n  a { color: #c00; }\n  @media only screen and (max-width: 479px) { td.x { width: auto !important; } }\n</style></head>\n<body><!-- a note --><!--[if mso | IE]><table><tr><![endif]--><!--[if mso | IE]><td><![endif]-->\n    <div style=\"font-family:-apple-system, 'Segoe UI', Arial; color: #333;\">Hello   <b>there</b>,\n   friend</div><!--[if !mso]><!--><p>x</p><!--<![endif]--><pre>  two\n    lines</pre></body></html>";
        assert_eq!(
            super::minify(html),
            "<html><head><style type=\"text/css\">a{color:#c00}@media only screen and (max-width:479px){td.x{width:auto !important}}</style></head>\n<body><!--[if mso | IE]><table><tr><td><![endif]-->\n<div style=\"font-family:-apple-system,'Segoe UI',Arial;color:#333\">Hello <b>there</b>,\nfriend</div><!--[if !mso]><!--><p>x</p><!--<![endif]--><pre>  two\n    lines</pre></body></html>"
        );
    }

    #[test]
    fn minify_keeps_merge_fields_and_attribute_spaces() {
        let html = "<p title=\"a  b\">Hi {{ first_name | default: \"there\" }}, <a href=\"{{ unsubscribe_url }}\">x</a></p>";
        assert_eq!(super::minify(html), html);
    }
}
