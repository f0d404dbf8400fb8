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
    fn escapes() {
        assert_eq!(super::text("a < b & \"c\""), "a &lt; b &amp; \"c\"");
        assert_eq!(super::attr("x\"><script>"), "x&quot;&gt;&lt;script&gt;");
    }
}
