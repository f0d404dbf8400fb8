//! Escaping for the HTML and MJML herald writes.

/// Escapes text for an HTML text node. Quotes are left alone so merge
/// fields such as `{{ first_name | default: "there" }}` survive in text.
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    push_text(&mut out, s);
    out
}

pub fn push_text(out: &mut String, s: &str) {
    push_escaped(out, s, false);
}

/// `s` with `&`, `<`, `>` (and `"` if `quote`) as entities. Copies the
/// runs between them whole: every word of a post goes through here, and
/// the unsubscribe link twice a recipient (a plain loop: most texts are a
/// few bytes, too short for memchr's set-up to pay).
fn push_escaped(out: &mut String, s: &str, quote: bool) {
    let mut from = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        let escaped = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' if quote => "&quot;",
            _ => continue,
        };
        // All four are ASCII: `i` is on a character boundary.
        out.push_str(&s[from..i]);
        out.push_str(escaped);
        from = i + 1;
    }
    out.push_str(&s[from..]);
}

/// Writes every non-ASCII character as a numeric character reference
/// (`&#8217;`), except inside `<style>`, where references mean nothing.
/// Pure-ASCII HTML with short lines needs no transfer encoding in email.
pub fn ascii(html: &str) -> std::borrow::Cow<'_, str> {
    if html.is_ascii() {
        return std::borrow::Cow::Borrowed(html);
    }
    let mut out = String::with_capacity(html.len() + html.len() / 16);
    let mut rest = html;
    while !rest.is_empty() {
        let (chunk, style, after) = match memchr::memmem::find(rest.as_bytes(), b"<style") {
            Some(i) => {
                let end = memchr::memmem::find(&rest.as_bytes()[i..], b"</style>")
                    .map_or(rest.len(), |e| i + e + 8);
                (&rest[..i], &rest[i..end], &rest[end..])
            }
            None => (rest, "", ""),
        };
        push_ascii(&mut out, chunk);
        out.push_str(style);
        rest = after;
    }
    std::borrow::Cow::Owned(out)
}

/// Appends `s` with non-ASCII characters as numeric references.
pub fn push_ascii(out: &mut String, s: &str) {
    use std::fmt::Write;
    // ASCII runs are copied whole; only the odd quote or dash is formatted.
    let mut rest = s;
    while let Some(i) = first_non_ascii(rest.as_bytes()) {
        out.push_str(&rest[..i]);
        let Some(c) = rest[i..].chars().next() else {
            break;
        };
        // Writing to a String cannot fail.
        let _ = write!(out, "&#{};", c as u32);
        rest = &rest[i + c.len_utf8()..];
    }
    out.push_str(rest);
}

/// Where the first byte over 0x7F is: eight bytes at a time, since the
/// HTML is nearly all ASCII.
fn first_non_ascii(bytes: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if u64::from_le_bytes(word) & 0x8080_8080_8080_8080 != 0 {
            break;
        }
        i += 8;
    }
    bytes[i..].iter().position(|b| !b.is_ascii()).map(|n| i + n)
}

/// Breaks long lines between structural tags (`<table>`, `<tr>`, `<td>`,
/// `<div>` and MSO conditional comments), where a line break means nothing,
/// as the official MJML renderer's own output does. mrml writes the body as
/// one line; email needs lines under 998 bytes, and short lines let the HTML
/// travel without quoted-printable encoding.
pub fn fold_lines(html: &str) -> String {
    const TARGET: usize = 160;
    let bytes = html.as_bytes();
    let mut out = String::with_capacity(html.len() + html.len() / 64);
    let mut line_len = 0;
    let mut from = 0;
    // The first line break at or after `from` (html.len(): none), searched
    // again only once passed: heads with a line break in them are few, and
    // a search back through every head was a fifth of folding.
    let next_newline =
        |from: usize| memchr::memchr(b'\n', &bytes[from..]).map_or(bytes.len(), |n| from + n);
    let mut newline = next_newline(0);
    // Each `><` is a `>` followed by `<`: a search for the one byte costs
    // less than memmem's for the pair, and the pairs never overlap.
    let mut i = 0;
    while let Some(n) = memchr::memchr(b'>', &bytes[i..]) {
        let at = i + n;
        i = at + 1;
        if bytes.get(at + 1) != Some(&b'<') {
            continue;
        }
        let (head, tail) = (&html[from..at + 1], &html[at + 1..]);
        out.push_str(head);
        line_len = if newline <= at {
            let n = memchr::memrchr(b'\n', head.as_bytes()).unwrap_or(0);
            newline = next_newline(at + 1);
            head.len() - n - 1
        } else {
            line_len + head.len()
        };
        if line_len > TARGET
            && may_fold_before(tail.as_bytes())
            && FOLD_BEFORE.iter().any(|t| tail.starts_with(t))
        {
            out.push('\n');
            line_len = 0;
        }
        from = at + 1;
    }
    out.push_str(&html[from..]);
    out
}

/// The tags [`fold_lines`] breaks a line before.
const FOLD_BEFORE: &[&str] = &[
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

/// Whether `tail` may start with one of [`FOLD_BEFORE`], by its second and
/// third bytes: most tags after a long line are inline ones (`<a`,
/// `</span`...), and comparing each with the whole list was a sixth of
/// folding. False only where the list has no match.
fn may_fold_before(tail: &[u8]) -> bool {
    match tail.get(1) {
        Some(b'/') => matches!(tail.get(2), Some(b't' | b'd' | b'h' | b'b')),
        Some(b't' | b'd' | b'!' | b'h' | b'b' | b's' | b'm' | b'l' | b'p' | b'u' | b'o') => true,
        _ => false,
    }
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
    let merged = remove_all(html, "<![endif]--><!--[if mso | IE]>");
    let s: &str = &merged;
    let mut out = String::with_capacity(s.len());
    let mut styles: Vec<&str> = Vec::new();
    // mrml repeats a few dozen `style` attributes hundreds of times.
    let mut seen = StyleCache::default();
    let mut i = 0;
    while i < s.len() {
        let rest = &s[i..];
        if let Some(body) = rest.strip_prefix("<!--") {
            let conditional = body.starts_with("[if") || body.starts_with("<![endif]");
            if conditional {
                let end = memchr::memchr(b'>', rest.as_bytes()).map_or(rest.len(), |e| e + 1);
                out.push_str(&rest[..end]);
                i += end;
            } else if body.starts_with('>') {
                // `<!-->`: the end of a "downlevel-revealed" conditional.
                out.push_str("<!-->");
                i += 5;
            } else {
                i +=
                    memchr::memmem::find(body.as_bytes(), b"-->").map_or(rest.len(), |e| 4 + e + 3);
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
                let block_end = memchr::memmem::find(&rest.as_bytes()[end..], close.as_bytes())
                    .map_or(rest.len(), |c| end + c + close.len());
                if name.eq_ignore_ascii_case("style") {
                    let block = &rest[..block_end];
                    if !styles.contains(&block) {
                        styles.push(block);
                        push_tag(&mut out, tag, &mut seen);
                        out.push_str(&css(&rest[end..block_end - close.len()]));
                        out.push_str(close);
                    }
                } else {
                    push_tag(&mut out, tag, &mut seen);
                    out.push_str(&rest[end..block_end]);
                }
                i += block_end;
            } else {
                push_tag(&mut out, tag, &mut seen);
                i += end;
            }
        } else {
            let end = memchr::memchr(b'<', rest.as_bytes()).unwrap_or(rest.len());
            push_collapsed(&mut out, &rest[..end]);
            i += end;
        }
    }
    out
}

/// `s` without any `pat` in it (`str::replace` with nothing, by memmem).
fn remove_all<'a>(s: &'a str, pat: &str) -> std::borrow::Cow<'a, str> {
    let mut found = memchr::memmem::find_iter(s.as_bytes(), pat.as_bytes()).peekable();
    if found.peek().is_none() {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut from = 0;
    for i in found {
        out.push_str(&s[from..i]);
        from = i + pat.len();
    }
    out.push_str(&s[from..]);
    std::borrow::Cow::Owned(out)
}

/// The length of the tag at the start of `s`, quotes respected.
fn tag_end(s: &str) -> usize {
    // From quote to quote by memchr: the quotes and `>` are ASCII, and a
    // UTF-8 continuation byte is never mistaken for one.
    let bytes = s.as_bytes();
    let mut i = 1.min(bytes.len());
    while let Some(n) = memchr::memchr3(b'>', b'"', b'\'', &bytes[i..]) {
        let at = i + n;
        let quote = bytes[at];
        if quote == b'>' {
            return at + 1;
        }
        match memchr::memchr(quote, &bytes[at + 1..]) {
            Some(close) => i = at + 1 + close + 1,
            None => return s.len(),
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

/// `style` attributes already minified (attribute, minified), and the
/// search for one, made once: a search made for every tag was a twelfth
/// of minifying.
struct StyleCache<'a> {
    minified: std::collections::HashMap<&'a str, String, StyleHash>,
    attr: memchr::memmem::Finder<'static>,
}

/// The cache's hash: eight bytes at a time (as rustc's FxHasher). The
/// standard SipHash took 390 instructions a lookup over styles of a few
/// hundred bytes, a third of copying the tags; the keys are mrml's and
/// herald's own styles, never many, so nothing needs a keyed hash here.
type StyleHash = std::hash::BuildHasherDefault<WordHasher>;

#[derive(Default)]
struct WordHasher(u64);

impl WordHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl std::hash::Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let mut word = [0u8; 8];
            word.copy_from_slice(w);
            self.add(u64::from_le_bytes(word));
        }
        let rest = words.remainder();
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
    }

    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

const STYLE_ATTR: &str = " style=\"";

impl Default for StyleCache<'_> {
    fn default() -> Self {
        StyleCache {
            minified: Default::default(),
            attr: memchr::memmem::Finder::new(STYLE_ATTR.as_bytes()),
        }
    }
}

/// Copies a tag, with the CSS of its `style` attribute minified.
fn push_tag<'a>(out: &mut String, tag: &'a str, seen: &mut StyleCache<'a>) {
    const ATTR: &str = STYLE_ATTR;
    match seen.attr.find(tag.as_bytes()) {
        Some(a) => {
            let start = a + ATTR.len();
            let len = memchr::memchr(b'"', &tag.as_bytes()[start..]).unwrap_or(tag.len() - start);
            let style = &tag[start..start + len];
            let minified = seen
                .minified
                .entry(style)
                .or_insert_with(|| css(style).trim_end_matches(';').to_string());
            out.push_str(&tag[..start]);
            out.push_str(minified);
            out.push_str(&tag[start + len..]);
        }
        None => out.push_str(tag),
    }
}

fn push_collapsed(out: &mut String, text: &str) {
    // Every run of whitespace becomes one space, or one line break when it
    // held one. Most runs already are that one byte, so the text is copied
    // in stretches up to the next run that changes, not word by word (a
    // copy per word was a third of minifying).
    let bytes = text.as_bytes();
    let mut from = 0;
    let mut i = 0;
    // Up to where the bytes have been looked at one by one.
    let mut checked = 0;
    while i < bytes.len() {
        if i >= checked {
            // 32 bytes at a time past text no run changes: none of `\t`,
            // `\r`, form feed, and no two white space bytes in a row (the
            // pair across the chunk's end included). A test with no branch
            // per byte, made of vector instructions; a test of every byte
            // was a tenth of minifying.
            while let Some(chunk) = bytes.get(i..i + 33) {
                // Indexed in a fixed-size array: a fold over `windows(2)`
                // stayed a loop of 17 instructions a byte.
                let Ok(c) = <&[u8; 33]>::try_from(chunk) else {
                    break;
                };
                let s = |b: u8| u8::from(b == b' ') | u8::from(b == b'\n');
                let mut changes = 0u8;
                for j in 0..32 {
                    let b = c[j];
                    changes |= (s(b) & s(c[j + 1]))
                        | u8::from(b == b'\t')
                        | u8::from(b == b'\r')
                        | u8::from(b == 0x0c);
                }
                if changes != 0 {
                    break;
                }
                i += 32;
            }
            checked = i + 32;
            if i >= bytes.len() {
                break;
            }
        }
        if !bytes[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let end = bytes[i..]
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .map_or(bytes.len(), |n| i + n);
        let nl = bytes[i..end].contains(&b'\n');
        let one = if nl { b'\n' } else { b' ' };
        if end - i > 1 || bytes[i] != one {
            out.push_str(&text[from..i]);
            out.push(char::from(one));
            from = end;
        }
        i = end;
    }
    out.push_str(&text[from..]);
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
                // Measured at a `}` only: rfind walks back over the line.
                if c == '}' && out.len() - out.rfind('\n').map_or(0, |n| n + 1) > 400 {
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

/// `s` escaped as askama's HTML escaper writes it (`"` `&` `'` `<` `>` as
/// `&#34;` `&#38;` `&#39;` `&#60;` `&#62;`), for a long text a template
/// takes with `|safe`: 32 bytes at a time past text with none of them.
/// askama's loop, a byte at a time, was a thirtieth of `herald preview`,
/// escaping the plain-text part into the preview page.
pub fn escaped_as_askama(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len() + s.len() / 32);
    let (mut from, mut i) = (0, 0);
    while i < bytes.len() {
        if let Some(chunk) = bytes.get(i..i + 32) {
            // No branch per byte: the compiler makes vector instructions of it.
            let any = chunk.iter().fold(0u8, |any, &b| {
                any | u8::from(b == b'"')
                    | u8::from(b == b'&')
                    | u8::from(b == b'\'')
                    | u8::from(b == b'<')
                    | u8::from(b == b'>')
            });
            if any == 0 {
                i += 32;
                continue;
            }
        }
        for at in i..(i + 32).min(bytes.len()) {
            let escaped = match bytes[at] {
                b'"' => "&#34;",
                b'&' => "&#38;",
                b'\'' => "&#39;",
                b'<' => "&#60;",
                b'>' => "&#62;",
                _ => continue,
            };
            out.push_str(&s[from..at]);
            out.push_str(escaped);
            from = at + 1;
        }
        i += 32;
    }
    out.push_str(&s[from..]);
    out
}

/// Escapes a value for a double-quoted HTML attribute.
pub fn attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    push_escaped(&mut out, s, true);
    out
}

#[cfg(test)]
mod tests {
    /// The run-copying escaper writes what escaping each character does.
    #[test]
    fn attr_and_text_escape_as_a_character_at_a_time_does() {
        let slow = |s: &str| -> String {
            s.chars()
                .map(|c| match c {
                    '&' => "&amp;".to_string(),
                    '<' => "&lt;".to_string(),
                    '>' => "&gt;".to_string(),
                    '"' => "&quot;".to_string(),
                    c => c.to_string(),
                })
                .collect()
        };
        let mut rng = fastrand::Rng::with_seed(7);
        let alphabet = ['a', '&', '<', '>', '"', '\'', 'é', '中', ' ', '😀'];
        for _ in 0..2000 {
            let s: String = (0..rng.usize(0..40))
                .map(|_| alphabet[rng.usize(0..alphabet.len())])
                .collect();
            assert_eq!(super::attr(&s), slow(&s), "{s:?}");
            // Text outside attributes keeps its quotes.
            assert_eq!(super::text(&s), slow(&s).replace("&quot;", "\""), "{s:?}");
        }
        assert_eq!(
            super::attr("https://x.org/u?a=1&b=\"2\""),
            "https://x.org/u?a=1&amp;b=&quot;2&quot;"
        );
    }

    #[test]
    fn ascii_keeps_style_blocks() {
        assert_eq!(
            super::ascii("<p>caf\u{e9} \u{2019}</p><style>a{content:\"\u{e9}\"}</style>\u{e9}"),
            "<p>caf&#233; &#8217;</p><style>a{content:\"\u{e9}\"}</style>&#233;"
        );
    }

    #[test]
    fn a_tag_ends_at_its_first_bracket_outside_quotes() {
        assert_eq!(super::tag_end("<a title=\"x>y\" href='>'>z"), 24);
        assert_eq!(super::tag_end("<br>text"), 4);
        // An unclosed quote or tag runs to the end.
        assert_eq!(super::tag_end("<a title=\"x>y"), 13);
        assert_eq!(super::tag_end("<p class=x"), 10);
        assert_eq!(super::tag_end("<"), 1);
    }

    #[test]
    fn every_non_ascii_character_becomes_a_reference_wherever_it_falls() {
        // Long ASCII runs before, between and after, so the eight-byte
        // skipping meets the characters at every offset of a chunk.
        for pad in 0..17 {
            let a = "x".repeat(pad);
            let mut out = String::new();
            super::push_ascii(&mut out, &format!("{a}\u{2019}{a}\u{e9}\u{1f600}{a}"));
            assert_eq!(out, format!("{a}&#8217;{a}&#233;&#128512;{a}"));
        }
    }

    #[test]
    fn escapes_as_askama_does_wherever_the_characters_fall() {
        let all = "a\"b&c'd<e>f caf\u{e9} \u{2019}<<&&";
        for pad in 0..70 {
            let text = format!("{}{all}{}", "x".repeat(pad), "y".repeat(pad / 2));
            for cut in 0..text.len() {
                let Some(s) = text.get(cut..) else { continue };
                let askama = askama::filters::escape(s, askama::filters::Html)
                    .unwrap()
                    .to_string();
                assert_eq!(super::escaped_as_askama(s), askama, "{s:?}");
            }
        }
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
    fn whitespace_between_words_becomes_one_space_or_one_line_break() {
        // Single spaces and line breaks stay; every other run becomes one
        // space, or one line break when it holds one; a no-break space is
        // not white space here.
        let html = "<p>a b\tc  d\n e \r\n\tf\ng\u{a0} h \t</p>\n\n<p> i</p>";
        assert_eq!(
            super::minify(html),
            "<p>a b c d\ne\nf\ng\u{a0} h </p>\n<p> i</p>"
        );
    }

    /// The loop `push_collapsed` had before it skipped 32 bytes at a time:
    /// the reference.
    fn push_collapsed_bytewise(out: &mut String, text: &str) {
        let bytes = text.as_bytes();
        let (mut from, mut i) = (0, 0);
        while i < bytes.len() {
            if !bytes[i].is_ascii_whitespace() {
                i += 1;
                continue;
            }
            let end = bytes[i..]
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .map_or(bytes.len(), |n| i + n);
            let one = if bytes[i..end].contains(&b'\n') {
                b'\n'
            } else {
                b' '
            };
            if end - i > 1 || bytes[i] != one {
                out.push_str(&text[from..i]);
                out.push(char::from(one));
                from = end;
            }
            i = end;
        }
        out.push_str(&text[from..]);
    }

    #[test]
    fn whitespace_collapses_as_the_byte_by_byte_loop_did() {
        // Runs of every kind at every offset of a 32-byte chunk, and
        // across chunk ends.
        let pieces = [
            "word", "a", " ", "  ", "\n", " \n", "\n\n", "\t", "\r\n", "\u{c}", "\u{a0}", "\u{e9}x",
        ];
        let mut seed = 11u64;
        for round in 0..400 {
            let mut text = "x".repeat(round % 40);
            while text.len() < 20 + round {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                text.push_str(pieces[(seed >> 33) as usize % pieces.len()]);
            }
            let (mut fast, mut slow) = (String::new(), String::new());
            super::push_collapsed(&mut fast, &text);
            push_collapsed_bytewise(&mut slow, &text);
            assert_eq!(fast, slow, "{text:?}");
        }
    }

    #[test]
    fn the_quick_test_lets_every_fold_point_through() {
        for t in super::FOLD_BEFORE {
            assert!(super::may_fold_before(t.as_bytes()), "{t}");
            assert!(super::may_fold_before(format!("{t}x>").as_bytes()), "{t}");
        }
        for t in [
            "<a href",
            "</a>",
            "</span>",
            "<img",
            "</p>",
            "<em>",
            "</strong>",
        ] {
            assert!(!super::may_fold_before(t.as_bytes()), "{t}");
        }
    }

    #[test]
    fn lines_fold_as_the_pair_search_did() {
        // The loop before: memmem for `><`, a search back for the line's
        // start in every head, the whole list for every tail.
        fn reference(html: &str) -> String {
            let mut out = String::new();
            let (mut line_len, mut from) = (0, 0);
            for i in memchr::memmem::find_iter(html.as_bytes(), "><") {
                let (head, tail) = (&html[from..i + 1], &html[i + 1..]);
                out.push_str(head);
                line_len = match memchr::memrchr(b'\n', head.as_bytes()) {
                    Some(n) => head.len() - n - 1,
                    None => line_len + head.len(),
                };
                if line_len > 160 && super::FOLD_BEFORE.iter().any(|t| tail.starts_with(t)) {
                    out.push('\n');
                    line_len = 0;
                }
                from = i + 1;
            }
            out.push_str(&html[from..]);
            out
        }
        let pieces = [
            "<table>",
            "<td style=\"a>b\">",
            "</td>",
            "<a href=\"x\">",
            "</a>",
            "text ",
            "\n",
            "<p>",
            "</p>",
            "<br />",
            "<!--[if mso]>",
            "<![endif]-->",
            ">",
            "<",
            "<div>",
            "</div>",
            "x\ny",
            "<span>",
            "</span>",
            "<hr>",
        ];
        let mut seed = 5u64;
        for round in 0..300 {
            let mut html = String::new();
            while html.len() < 100 + round * 10 {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                html.push_str(pieces[(seed >> 33) as usize % pieces.len()]);
            }
            assert_eq!(super::fold_lines(&html), reference(&html), "{html:?}");
        }
    }

    #[test]
    fn minify_keeps_merge_fields_and_attribute_spaces() {
        let html = "<p title=\"a  b\">Hi {{ first_name | default: \"there\" }}, <a href=\"{{ unsubscribe_url }}\">x</a></p>";
        assert_eq!(super::minify(html), html);
    }
}
