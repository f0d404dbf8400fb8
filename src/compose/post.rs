//! Stage 1: a post file becomes a [`Post`]: its front matter and its Markdown body.
//!
//! The website's CMS is sloppy, so loading is lenient where nothing is lost
//! (key order, single-digit days, quoting styles, a missing `templateKey`,
//! a dozen spellings of the Twitter handle) and strict where a guess would
//! send the wrong email (no front matter, broken YAML, no title, a date that
//! is not a date).

use std::path::Path;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::{Offset, TimeZone};
use yaml_serde::{Mapping, Value};

use crate::InputError;

/// What kind of page the post is, from `templateKey`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `blog-post`, and posts with no `templateKey` at all.
    BlogPost,
    /// `annual-report-page` or `generic-page`.
    Report,
    /// Any other template the website may add later; treated like a page.
    Other(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seo {
    pub title: Option<String>,
    pub description: Option<String>,
    /// The web version of the post, as written (may be a bare slug).
    pub url: Option<String>,
    pub image: Option<String>,
    /// Normalised to `@handle`.
    pub twitter: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontMatter {
    pub kind: Kind,
    pub title: String,
    pub sub_title: Option<String>,
    pub author: Option<String>,
    /// The publication date (`date`); annual reports have none.
    pub date: Option<Timestamp>,
    /// When a scheduled send may start (`send_at`); falls back to `date`.
    pub send_at: Option<Timestamp>,
    pub year: Option<i32>,
    pub categories: Vec<String>,
    /// `hidePost: true`: a draft the website does not list.
    pub hidden: bool,
    pub seo: Seo,
    /// A page's own call to action (`footer:` with `buttonText` and
    /// `button`, shown unless `display: false`), carried to the email's end.
    pub call_to_action: Option<CallToAction>,
    /// The post's language (`lang:`, like `de`), over the settings' one.
    pub lang: Option<String>,
    /// `ltr` or `rtl` (`dir:`), over the settings' one.
    pub dir: Option<String>,
}

/// The button a page's front matter puts under its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallToAction {
    /// The line above the button (`footer.subTitle`, else `footer.title`).
    pub text: Option<String>,
    pub button_text: String,
    pub url: String,
    /// The line of `footer:` in the file.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Post {
    pub path: std::path::PathBuf,
    pub front_matter: FrontMatter,
    /// The Markdown after the closing `---`, with CRLF turned into LF.
    pub body: String,
    /// The line of the file on which `body` starts (1-based), so later
    /// stages can point at lines of the file rather than of the body.
    pub body_line: usize,
}

impl Post {
    /// The campaign this post is sent as: its slug and date
    /// (`slug@YYYY-MM-DD`, else `slug@YEAR` for an annual report, else
    /// `slug@undated`). Only the front matter is needed, so `--due` learns
    /// it without composing the email.
    pub fn campaign_id(&self) -> String {
        let date = self
            .front_matter
            .date
            .map(|d| d.to_zoned(jiff::tz::TimeZone::UTC).date().to_string())
            .or_else(|| self.front_matter.year.map(|y| y.to_string()))
            .unwrap_or_else(|| "undated".into());
        format!("{}@{date}", self.slug())
    }

    /// A short, file-system-safe name for the issue: the last part of
    /// `seo.url` (the website's own slug), else the file name.
    pub fn slug(&self) -> String {
        let from_url = self.front_matter.seo.url.as_deref().and_then(|u| {
            let path = u.split(['?', '#']).next().unwrap_or("");
            let path = path
                .split("://")
                .nth(1)
                .map_or(path, |rest| rest.find('/').map_or("", |i| &rest[i..]));
            let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
            match parts.as_slice() {
                [] => None,
                // `/annual-report/2023`: a bare year says too little on its own.
                [.., parent, last] if last.chars().all(|c| c.is_ascii_digit()) => {
                    Some(format!("{parent}-{last}"))
                }
                [.., last] => Some(last.to_string()),
            }
        });
        let raw = from_url.unwrap_or_else(|| {
            self.path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "post".into())
        });
        sanitize_slug(&raw)
    }
}

fn sanitize_slug(raw: &str) -> String {
    let mut out = String::new();
    for c in raw.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() { "post".into() } else { out }
}

/// Reads and parses a post file.
pub fn load(path: &Path) -> Result<Post, InputError> {
    parse(path, &read(path)?)
}

/// [`load`], leaving the nesting of the body to be measured by
/// [`crate::compose::content::build`], which refuses the same posts with
/// the same message in its own pass over the Markdown, before it builds
/// anything that deep. Only for a post that goes straight to the builder
/// ([`crate::compose::Issue`]): a second parse of the body only to measure
/// its nesting was a fifteenth of `herald preview`. A post that is wrong in
/// both ways gets the front matter's error rather than the nesting's.
pub(crate) fn load_for_build(path: &Path) -> Result<Post, InputError> {
    parse_with(path, &read(path)?, Nesting::Later)
}

/// Whether [`parse_with`] measures the body's nesting.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nesting {
    Now,
    /// The content builder will (see [`load_for_build`]).
    Later,
}

/// The text of a post file, size and encoding checked.
fn read(path: &Path) -> Result<String, InputError> {
    // Capped: `herald check /dev/zero` read until memory ran out.
    let max = crate::limits::MAX_POST_BYTES;
    let bytes = crate::limits::read_at_most(path, max as u64 + 1).map_err(|e| {
        InputError::new(
            path,
            None,
            format!("cannot read the post ({e}). Check the file name and that you may read it."),
        )
    })?;
    if bytes.len() > max {
        return Err(InputError::new(
            path,
            None,
            format!(
                "the post is larger than {} MB; herald reads posts up to that size. Is this the \
                 right file? The largest annual report is under 100 KB.",
                max / (1024 * 1024)
            ),
        ));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        InputError::new(
            path,
            Some(line),
            "the post is not UTF-8 text. Save it as UTF-8 from your editor and try again.",
        )
    })?;
    Ok(text)
}

/// Parses the text of a post; `path` is only used in messages.
pub fn parse(path: &Path, text: &str) -> Result<Post, InputError> {
    parse_with(path, text, Nesting::Now)
}

/// [`parse`], measuring the body's nesting `now` or leaving it to the
/// content builder (see [`load_for_build`]).
pub(crate) fn parse_with(path: &Path, text: &str, nesting: Nesting) -> Result<Post, InputError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // Only a file saved with Windows line ends needs the copy.
    let text = if memchr::memchr(b'\r', text.as_bytes()).is_some() {
        std::borrow::Cow::Owned(text.replace("\r\n", "\n"))
    } else {
        std::borrow::Cow::Borrowed(text)
    };
    // Bounds first, so nothing later can crash or run away (crate::limits).
    crate::limits::check_control(path, &text, 1)?;
    let (yaml, body, body_line) = split(path, &text)?;
    crate::limits::check_yaml(
        path,
        yaml,
        2,
        "front matter",
        crate::limits::MAX_FRONT_MATTER_BYTES,
    )?;
    if nesting == Nesting::Now {
        crate::limits::check_nesting(path, body, body_line)?;
    }
    let front_matter = front_matter(path, yaml)?;
    Ok(Post {
        path: path.to_path_buf(),
        front_matter,
        body: body.to_string(),
        body_line,
    })
}

/// Splits `---\nYAML\n---\nbody`; returns the YAML, the body and the body's first line.
fn split<'a>(path: &Path, text: &'a str) -> Result<(&'a str, &'a str, usize), InputError> {
    // Blank lines before the opening fence are harmless; anything else is not front matter.
    let mut offset = 0;
    let mut line = 1;
    for l in text.split_inclusive('\n') {
        if !l.trim().is_empty() {
            break;
        }
        offset += l.len();
        line += 1;
    }
    let rest = &text[offset..];
    let first = rest.split('\n').next().unwrap_or("");
    if first.trim_end() != "---" {
        return Err(InputError::new(
            path,
            Some(line),
            "the post has no front matter. A post must start with a line `---`, then settings \
             such as `title: ...`, then another `---` line before the text. \
             Did you forget to add `---`?",
        ));
    }
    let yaml_start = offset + first.len() + 1;
    let mut pos = yaml_start.min(text.len());
    let mut l = line + 1;
    while pos < text.len() {
        let end = text[pos..].find('\n').map_or(text.len(), |i| pos + i);
        let this = text[pos..end].trim_end();
        if this == "---" || this == "..." {
            let body_start = (end + 1).min(text.len());
            return Ok((&text[yaml_start.min(end)..pos], &text[body_start..], l + 1));
        }
        pos = end + 1;
        l += 1;
    }
    Err(InputError::new(
        path,
        Some(line),
        "the front matter starts with `---` here but never ends. \
         Add a line with just `---` after the last setting and before the text.",
    ))
}

/// The line in the file of a line of the front matter, which starts on
/// line 2 of the file (line 1 is `---`).
fn file_line(yaml_line: usize) -> usize {
    yaml_line + 1
}

/// The front matter as YAML, or an error at the line to fix.
fn yaml_value(path: &Path, yaml: &str) -> Result<Value, InputError> {
    yaml_serde::from_str(yaml).map_err(|e| {
        // The parser notices an unclosed quote only where it runs into
        // something it cannot read, often lines later: name the line the
        // quote was opened on.
        if let Some((line, quote)) = e
            .location()
            .and_then(|l| unclosed_quote(yaml, l.line()))
        {
            return InputError::new(
                path,
                Some(file_line(line)),
                format!(
                    "the front matter is not valid YAML: the {quote} quote that starts the value on \
                     this line is never closed. Add the closing {quote} at the end of the value."
                ),
            );
        }
        let line = e.location().map(|l| file_line(l.line())).unwrap_or(2);
        let detail = e.to_string();
        let detail = detail
            .split(" at line ")
            .next()
            .unwrap_or(&detail)
            .to_string();
        InputError::new(
            path,
            Some(line),
            format!(
                "the front matter is not valid YAML ({detail}). Check the quotes and the \
                 indentation on this line; a value that contains `: ` or starts with `@`, \
                 `*` or `\"` must be put in quotes."
            ),
        )
    })
}

fn front_matter(path: &Path, yaml: &str) -> Result<FrontMatter, InputError> {
    let value = yaml_value(path, yaml)?;
    let empty = Mapping::new();
    let map = match &value {
        Value::Mapping(m) => m,
        Value::Null => &empty,
        _ => {
            return Err(InputError::new(
                path,
                Some(2),
                "the front matter must be a list of `name: value` settings.",
            ));
        }
    };
    let line_of = |key: &str| key_line(yaml, key).map(file_line);
    let text_of = |key: &str| -> Result<Option<String>, InputError> {
        scalar(map.get(key)).map_err(|what| {
            InputError::new(
                path,
                line_of(key),
                format!("`{key}` should be a single line of text, but it is {what}."),
            )
        })
    };

    let title = text_of("title")?.filter(|t| !t.is_empty()).ok_or_else(|| {
        InputError::new(
            path,
            line_of("title").or(Some(2)),
            "the post has no title. Add a line such as \
             `title: \"Inside Open Infrastructure: May 2025\"` to the front matter.",
        )
    })?;
    let kind = match text_of("templateKey")?.as_deref() {
        None | Some("") | Some("blog-post") => Kind::BlogPost,
        Some("annual-report-page") | Some("generic-page") => Kind::Report,
        Some(other) => Kind::Other(other.to_string()),
    };
    let date_of = |key: &str| -> Result<Option<Timestamp>, InputError> {
        match text_of(key)? {
            None => Ok(None),
            Some(s) if s.is_empty() => Ok(None),
            Some(s) => parse_date(&s).map(Some).ok_or_else(|| {
                InputError::new(
                    path,
                    line_of(key),
                    format!(
                        "`{key}: {s}` is not a date herald understands. \
                         Write it like `2025-05-28T14:15:00Z` or `2025-05-28`."
                    ),
                )
            }),
        }
    };
    let date = date_of("date")?;
    let send_at = date_of("send_at")?;
    let year = match text_of("year")? {
        None => None,
        Some(y) => Some(y.trim().parse::<i32>().map_err(|_| {
            InputError::new(
                path,
                line_of("year"),
                format!("`year: {y}` is not a year. Write it like `year: 2024`."),
            )
        })?),
    };
    let hidden = match map.get("hidePost") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.trim().eq_ignore_ascii_case("true"),
        _ => false,
    };
    let categories = categories(map);
    let seo = seo(path, yaml, map)?;
    let call_to_action = call_to_action(yaml, map);
    Ok(FrontMatter {
        call_to_action,
        lang: text_of("lang")?.filter(|s| !s.is_empty()),
        dir: text_of("dir")?.filter(|s| !s.is_empty()),
        kind,
        title,
        sub_title: text_of("subTitle")?.filter(|s| !s.is_empty()),
        author: text_of("author")?.filter(|s| !s.is_empty()),
        date,
        send_at,
        year,
        categories,
        hidden,
        seo,
    })
}

/// `category:`, a list of labels (or of maps with a `label`), or one.
fn categories(map: &Mapping) -> Vec<String> {
    match map.get("category") {
        Some(Value::Sequence(items)) => items
            .iter()
            .filter_map(|item| match item {
                Value::Mapping(m) => scalar(m.get("label")).ok().flatten(),
                other => scalar(Some(other)).ok().flatten(),
            })
            .filter(|s| !s.is_empty())
            .collect(),
        other => scalar(other).ok().flatten().into_iter().collect(),
    }
}

/// `seo:`, its `url` checked: it is the web version in every message.
fn seo(path: &Path, yaml: &str, map: &Mapping) -> Result<Seo, InputError> {
    let seo = match map.get("seo") {
        Some(Value::Mapping(m)) => {
            let get = |k: &str| scalar(m.get(k)).ok().flatten().filter(|s| !s.is_empty());
            Seo {
                title: get("title"),
                description: get("description"),
                url: get("url"),
                image: get("image"),
                twitter: get("twitterUsername").and_then(|t| normalise_twitter(&t)),
            }
        }
        _ => Seo::default(),
    };
    // Trust boundary: `seo.url` becomes the "view in browser" link and the
    // digest's "Continue reading" buttons, in every message.
    if let Some(Err(crate::urls::NotWeb { scheme })) =
        seo.url.as_deref().map(crate::urls::check_web)
    {
        let line = yaml
            .lines()
            .position(|l| l.trim_start().starts_with("url:"))
            .map(|i| file_line(i + 1));
        return Err(InputError::new(
            path,
            line,
            format!(
                "`seo.url` is a `{scheme}:` address; it must be the web version of the post, \
                 starting with https:// (or a bare slug such as `my-post`)."
            ),
        ));
    }
    Ok(seo)
}

/// `footer:`, the website's call to action, when it is shown and has a
/// button.
fn call_to_action(yaml: &str, map: &Mapping) -> Option<CallToAction> {
    match map.get("footer") {
        Some(Value::Mapping(m)) => {
            let get = |k: &str| scalar(m.get(k)).ok().flatten().filter(|s| !s.is_empty());
            let shown = !matches!(m.get("display"), Some(Value::Bool(false)));
            match (shown, get("buttonText"), get("button")) {
                (true, Some(button_text), Some(url)) => Some(CallToAction {
                    text: get("subTitle").or_else(|| get("title")),
                    button_text,
                    url,
                    line: file_line(key_line(yaml, "footer").unwrap_or(1)),
                }),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The line (1-based, within `yaml`) of a quoted value still open on line
/// `error_line`, with its quote (`"` or `'`). A value opens a quote when
/// its first character after `key: ` or `- ` is one; a double-quoted value
/// may run over several lines, so the quote is followed to its end.
///
/// A line inside the open quote that looks like the next setting (`key:`
/// no further indented than the line that opened it) means the quote was
/// never closed: without this, a later `key: "value"` would seem to close it.
fn unclosed_quote(yaml: &str, error_line: usize) -> Option<(usize, char)> {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let looks_like_key = |l: &str| {
        let t = l.trim_start();
        t.split_once(':').is_some_and(|(k, v)| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
                && (v.is_empty() || v.starts_with(' '))
        })
    };
    let mut open: Option<(usize, char)> = None;
    let mut open_indent = 0;
    for (n, line) in yaml.lines().enumerate().take(error_line) {
        let mut rest: &str = line;
        if open.is_some() && indent(line) <= open_indent && looks_like_key(line) {
            return open;
        }
        if open.is_none() {
            open_indent = indent(line);
            let trimmed = line.trim_start();
            if trimmed.starts_with('#') {
                continue;
            }
            let value = match trimmed.strip_prefix("- ") {
                Some(v) => v.trim_start(),
                None => match trimmed.split_once(": ") {
                    Some((key, v)) if !key.starts_with(['"', '\'']) => v.trim_start(),
                    _ => continue,
                },
            };
            let Some(q) = value.chars().next().filter(|c| matches!(c, '"' | '\'')) else {
                continue;
            };
            open = Some((n + 1, q));
            rest = &value[1..];
        }
        let Some((_, q)) = open else { continue };
        let mut chars = rest.chars().peekable();
        while let Some(c) = chars.next() {
            match (q, c) {
                ('"', '\\') => {
                    chars.next();
                }
                ('\'', '\'') if chars.peek() == Some(&'\'') => {
                    chars.next();
                }
                (q, c) if c == q => {
                    open = None;
                    break;
                }
                _ => {}
            }
        }
    }
    open
}

/// A scalar as trimmed text; `Err` names what it is instead.
fn scalar(v: Option<&Value>) -> Result<Option<String>, &'static str> {
    match v {
        None | Some(Value::Null) => Ok(None),
        // A YAML escape (`"\u0001"`) gets past `limits::check_control`.
        Some(Value::String(s)) if s.chars().any(crate::limits::not_text) => Err(
            "text with an invisible control character (written as an escape like `\\u0001`); remove it",
        ),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(Value::Sequence(_)) => Err("a list"),
        Some(Value::Mapping(_)) => Err("a group of settings"),
        Some(Value::Tagged(_)) => Err("a tagged value"),
    }
}

/// The 1-based line (within the YAML) of a top-level key, for messages.
fn key_line(yaml: &str, key: &str) -> Option<usize> {
    yaml.lines()
        .position(|l| {
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
        .map(|i| i + 1)
}

/// `@openinfradev`, `OpenInfraDev`, `"@openinfradev "`, `twitter.com/openinfradev`
/// all become `@handle`.
fn normalise_twitter(raw: &str) -> Option<String> {
    let mut s = raw.trim();
    for prefix in ["https://", "http://", "www."] {
        s = s.strip_prefix(prefix).unwrap_or(s);
    }
    for prefix in ["twitter.com/", "x.com/"] {
        s = s.strip_prefix(prefix).unwrap_or(s);
    }
    let handle = s.trim_start_matches('@').trim_end_matches('/').trim();
    let ok = !handle.is_empty()
        && handle
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    ok.then(|| format!("@{handle}"))
}

/// Lenient date parsing: `2025-05-28T14:15:31.971Z`, `2020-11-6T13:30:56.289Z`
/// (single-digit day), `2025-05-28 14:15`, `2025-05-28`, with `Z`, an offset
/// or nothing (taken as UTC).
pub fn parse_date(raw: &str) -> Option<Timestamp> {
    let s = raw.trim().trim_matches(['"', '\'']);
    let (date_part, time_part) = match s.find(['T', 't', ' ']) {
        Some(i) => (&s[..i], Some(s[i + 1..].trim())),
        None => (s, None),
    };
    let mut ymd = date_part.split('-');
    let y: i16 = ymd.next()?.parse().ok()?;
    let m: i8 = ymd.next()?.parse().ok()?;
    let d: i8 = ymd.next()?.parse().ok()?;
    if ymd.next().is_some() {
        return None;
    }
    let date = Date::new(y, m, d).ok()?;
    let (time, offset) = match time_part {
        None | Some("") => (Time::midnight(), Offset::UTC),
        Some(t) => {
            let (clock, offset) = split_offset(t)?;
            (parse_clock(clock)?, offset)
        }
    };
    DateTime::from_parts(date, time)
        .to_zoned(TimeZone::fixed(offset))
        .ok()
        .map(|z| z.timestamp())
}

fn split_offset(t: &str) -> Option<(&str, Offset)> {
    if let Some(clock) = t.strip_suffix(['Z', 'z']) {
        return Some((clock, Offset::UTC));
    }
    if let Some(i) = t.rfind(['+', '-']) {
        let (clock, off) = t.split_at(i);
        let sign: i32 = if off.starts_with('-') { -1 } else { 1 };
        let digits: String = off[1..].chars().filter(|c| c.is_ascii_digit()).collect();
        let (h, m) = match digits.len() {
            2 => (digits.parse::<i32>().ok()?, 0),
            4 => (digits[..2].parse().ok()?, digits[2..].parse().ok()?),
            _ => return None,
        };
        let offset = Offset::from_seconds(sign * (h * 3600 + m * 60)).ok()?;
        return Some((clock, offset));
    }
    Some((t, Offset::UTC))
}

fn parse_clock(clock: &str) -> Option<Time> {
    let mut parts = clock.split(':');
    let h: i8 = parts.next()?.trim().parse().ok()?;
    let m: i8 = parts.next().unwrap_or("0").parse().ok()?;
    let sec = parts.next().unwrap_or("0");
    let (s, frac) = sec.split_once('.').unwrap_or((sec, ""));
    let s: i8 = s.parse().ok()?;
    let nanos: i32 = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().take(9).collect();
        let n: i32 = digits.parse().ok()?;
        n * 10i32.pow(9 - digits.len() as u32)
    };
    Time::new(h, m, s, nanos).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Post, InputError> {
        parse(Path::new("posts/x.md"), text)
    }

    /// A quote left open on line 3 is reported on line 3, not where the
    /// parser gave up (line 12 here, at the next quoted value).
    #[test]
    fn an_unclosed_quote_is_reported_where_it_opens() {
        let text = "---\ntemplateKey: blog-post\ntitle: \"Inside Open Infrastructure: May\nauthor: Someone\ndate: 2025-05-28\ncategory:\n  - value: category-news\n    label: News\nhidePost: false\nseo:\n  description: The monthly news\n  title: \"Inside Open Infrastructure: May\"\n  url: https://openinfra.org/blog/may\n---\nText.\n";
        let e = p(text).unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.message.contains("never closed"), "{e}");
        // A double-quoted value over several lines is fine, and a later
        // error is still reported where it is.
        let text = "---\ntitle: \"A long\n  title over lines\"\nseo:\n  url: [oops\n---\nText.\n";
        let e = p(text).unwrap_err();
        assert_ne!(e.line, Some(2), "{e}");
        assert!(!e.message.contains("never closed"), "{e}");
    }

    #[test]
    fn blog_post_front_matter_in_any_order() {
        let post = p("---\nhidePost: false\ntitle: >-\n  Remembering Someone\ndate: 2020-11-6T13:30:56.289Z\nauthor: A. Writer\ncategory:\n  - label: Community\n    id: category-x\nseo:\n  twitterUsername: '@OpenInfraDev '\n  url: 'https://openinfra.dev/blog/remembering'\n---\nHello\n").unwrap();
        let fm = &post.front_matter;
        assert_eq!(fm.title, "Remembering Someone");
        assert_eq!(fm.kind, Kind::BlogPost);
        assert_eq!(fm.date.unwrap().to_string(), "2020-11-06T13:30:56.289Z");
        assert_eq!(fm.categories, vec!["Community"]);
        assert_eq!(fm.seo.twitter.as_deref(), Some("@OpenInfraDev"));
        assert_eq!(post.body, "Hello\n");
        assert_eq!(post.body_line, 14);
        assert_eq!(post.slug(), "remembering");
    }

    #[test]
    fn annual_report_shape() {
        let post = p("---\ntemplateKey: annual-report-page\nyear: 2023\nseo:\n  url: https://openinfra.dev/annual-report/2023\ntitle: 2023 Annual Report\nsubTitle: OpenInfra Foundation\n---\n# Hi").unwrap();
        assert_eq!(post.front_matter.kind, Kind::Report);
        assert_eq!(post.front_matter.year, Some(2023));
        assert_eq!(post.front_matter.date, None);
        assert_eq!(
            post.front_matter.sub_title.as_deref(),
            Some("OpenInfra Foundation")
        );
        assert_eq!(post.slug(), "annual-report-2023");
    }

    #[test]
    fn crlf_bom_and_missing_template_key() {
        let post = p("\u{feff}---\r\ntitle: \"Quoted: title\"\r\n---\r\nBody\r\n").unwrap();
        assert_eq!(post.front_matter.title, "Quoted: title");
        assert_eq!(post.front_matter.kind, Kind::BlogPost);
        assert_eq!(post.body, "Body\n");
        assert_eq!(post.slug(), "x");
    }

    #[test]
    fn twitter_spellings() {
        for raw in [
            "@openinfradev",
            "openinfradev",
            "\"@openinfradev \"",
            "twitter.com/openinfradev",
            "https://x.com/openinfradev/",
        ] {
            let raw = raw.trim_matches('"');
            assert_eq!(
                normalise_twitter(raw).as_deref(),
                Some("@openinfradev"),
                "{raw}"
            );
        }
        assert_eq!(normalise_twitter("not a handle"), None);
    }

    #[test]
    fn no_front_matter_is_refused_with_a_fix() {
        let e = p("# Just markdown\n").unwrap_err();
        assert_eq!(e.line, Some(1));
        assert!(e.message.contains("Did you forget to add `---`?"), "{e}");
        assert!(e.to_string().starts_with("posts/x.md:1: "));
    }

    #[test]
    fn unterminated_front_matter() {
        let e = p("---\ntitle: x\nbody text\n").unwrap_err();
        assert!(e.message.contains("never ends"), "{e}");
    }

    #[test]
    fn broken_yaml_points_at_the_file_line() {
        let e = p("---\ntitle: ok\nseo:\n  url: x\n bad: [\n---\n").unwrap_err();
        assert!(e.message.contains("not valid YAML"), "{e}");
        assert!(matches!(e.line, Some(4..=6)), "{e}");
    }

    #[test]
    fn missing_title_is_refused() {
        let e = p("---\nauthor: me\n---\ntext").unwrap_err();
        assert!(e.message.contains("no title"), "{e}");
        let e = p("---\ntitle:\n  a: b\n---\ntext").unwrap_err();
        assert_eq!(e.line, Some(2));
    }

    #[test]
    fn bad_date_names_the_line_and_format() {
        let e = p("---\ntitle: t\ndate: last tuesday\n---\n").unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("2025-05-28"), "{e}");
    }

    #[test]
    fn dates() {
        assert_eq!(
            parse_date("2025-05-28").unwrap().to_string(),
            "2025-05-28T00:00:00Z"
        );
        assert_eq!(
            parse_date("2025-05-28 14:15").unwrap().to_string(),
            "2025-05-28T14:15:00Z"
        );
        assert_eq!(
            parse_date("2025-05-28T14:15:00+02:00").unwrap().to_string(),
            "2025-05-28T12:15:00Z"
        );
        assert!(parse_date("2025-13-01").is_none());
    }
}
