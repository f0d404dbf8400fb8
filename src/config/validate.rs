//! Validation: the parsers that turn a setting's text into its type (one
//! line of text, a web or relay address, a path, a number, a duration...),
//! each refusing bad text with a message that says how to write it, and
//! the checks that span several settings (`Config::cross_check`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::Mailbox;
use url::Url;

use super::*;

/// Settings that end up in a header or on one line of the footer cannot hold
/// control characters: a line break there would start a header of the
/// sender's choosing, or break the message's lines.
pub(super) fn one_line(v: &str) -> Result<String, ValueError> {
    let v = v.trim();
    if let Some(c) = v.chars().find(|c| c.is_control()) {
        return Err(format!(
            "`{}` holds a control character ({c:?}); write it on one line, without tabs or line breaks",
            v.escape_debug()
        ).into());
    }
    Ok(v.to_string())
}

/// A language tag (BCP 47) as `lang=` takes it: `en`, `de`, `pt-BR`.
pub fn language(v: &str) -> Result<String, ValueError> {
    let v = v.trim();
    let ok = !v.is_empty()
        && v.len() <= 35
        && v.split('-').all(|part| {
            !part.is_empty() && part.len() <= 8 && part.chars().all(|c| c.is_ascii_alphanumeric())
        })
        && v.split('-')
            .next()
            .is_some_and(|p| p.chars().all(|c| c.is_ascii_alphabetic()));
    if !ok {
        return Err(format!(
            "`{}` is not a language tag; write it like `en`, `de` or `pt-BR`",
            v.escape_debug()
        )
        .into());
    }
    Ok(v.to_string())
}

/// The writing direction: `ltr` (left to right) or `rtl` (Arabic, Hebrew).
pub fn direction(v: &str) -> Result<String, ValueError> {
    match v.trim().to_ascii_lowercase().as_str() {
        d @ ("ltr" | "rtl" | "auto") => Ok(d.to_string()),
        _ => Err(format!(
            "`{}` is not a writing direction; write `ltr` (left to right) or `rtl` (right to left)",
            v.trim().escape_debug()
        )
        .into()),
    }
}

/// The DKIM domain and selectors go into the signature's `d=` and `s=`
/// and name a DNS record: a `;` or a space there would break the signature
/// for every message, so only what DNS names hold is taken.
pub(super) fn dns_name(v: &str) -> Result<String, ValueError> {
    let v = one_line(v)?;
    if v.is_empty()
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    {
        return Err(format!(
            "`{v}` is not a DNS name; write it as it is published in DNS, like herald-rsa or example.org \
             (letters, digits, `-`, `.` and `_`)"
        ).into());
    }
    Ok(v)
}

/// The sender id of `Feedback-ID`: one of the header's colon-separated
/// parts, so no colon; letters, digits, `.`, `-` and `_` only, as Gmail's
/// Postmaster Tools shows them.
pub(super) fn feedback_sender(v: &str) -> Result<String, ValueError> {
    let v = one_line(v)?;
    if v.is_empty()
        || v.len() > 64
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    {
        return Err(format!(
            "`{v}` cannot be a Feedback-ID sender id; use up to 64 letters, digits, `-`, `.` and `_`, \
             like openinfra.org (no colon: it separates the header's parts)"
        )
        .into());
    }
    Ok(v)
}

/// A DNS server's address: `127.0.0.1`, `127.0.0.1:5353`, `::1` or
/// `[::1]:5353` (port 53 when none is given).
pub(super) fn resolver(v: &str) -> Result<std::net::SocketAddr, ValueError> {
    let v = one_line(v)?;
    if let Ok(address) = v.parse::<std::net::SocketAddr>() {
        return Ok(address);
    }
    v.parse::<std::net::IpAddr>()
        .map(|ip| std::net::SocketAddr::new(ip, 53))
        .map_err(|_| {
            format!(
                "`{v}` is not a DNS server's address; write an IP address with an optional port, \
                 like 127.0.0.1, 127.0.0.1:5353 or [::1]:53"
            )
            .into()
        })
}

/// `postal_address` may span lines (a YAML `|` block is the natural way to
/// write an address): it goes only into the footer's body text, never into a
/// header, where the text part keeps the lines and the HTML joins them.
/// Other control characters are refused all the same.
pub(super) fn lines(v: &str) -> Result<String, ValueError> {
    let v = v.trim();
    if let Some(c) = v
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(ValueError::ControlCharacter(c));
    }
    Ok(v.to_string())
}

pub(super) fn web(v: &str) -> Result<Url, ValueError> {
    let v = v.trim();
    match Url::parse(v) {
        Ok(u) if matches!(u.scheme(), "https" | "http") && u.has_host() => Ok(u),
        _ => Err(format!(
            "`{v}` is not a web address; write it in full, like https://openinfra.org"
        )
        .into()),
    }
}

/// `scheme://user:password@host` with the user and password hidden, for
/// messages: a password written into an address must not reach a log.
pub fn redact_url(raw: &str) -> String {
    let Some((scheme, rest)) = raw.split_once("://") else {
        return raw.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => raw.to_string(),
    }
}

/// The single relay's address (`smtp_url`): its credentials are
/// `smtp_user` and HERALD_SMTP_PASSWORD.
pub(super) fn smtp(v: &str) -> Result<Url, ValueError> {
    smtp_address(
        v,
        "`smtp_user`",
        "HERALD_SMTP_PASSWORD (or HERALD_SMTP_PASSWORD_FILE)",
    )
}

/// A relay's address, without credentials in it: a user name and a
/// password written there would reach logs and `herald config`, so the
/// message says where they go instead (`user`, `password` for this relay).
pub(super) fn smtp_address(v: &str, user: &str, password: &str) -> Result<Url, ValueError> {
    let v = v.trim();
    if let Ok(u) = Url::parse(v)
        && (!u.username().is_empty() || u.password().is_some())
    {
        return Err(format!(
            "put the relay's user name in {user} and the password in {password}, not in the address"
        )
        .into());
    }
    let shown = redact_url(v);
    match Url::parse(v) {
        Ok(u) if matches!(u.scheme(), "smtp" | "smtps") && u.has_host() => Ok(u),
        _ => Err(format!(
            "`{shown}` is not a mail relay address; write it like smtp://mail.example.org:587 or smtps://mail.example.org:465"
        ).into()),
    }
}

/// A PostgreSQL address without a password in it (`database_url`, `--to`).
pub fn database(v: &str) -> Result<Url, ValueError> {
    let v = v.trim();
    if let Ok(u) = Url::parse(v)
        && u.password().is_some()
    {
        return Err(
            "put the database password in HERALD_DATABASE_PASSWORD (or HERALD_DATABASE_PASSWORD_FILE), not in the address"
                .into(),
        );
    }
    let shown = redact_url(v);
    match Url::parse(v) {
        Ok(u) if matches!(u.scheme(), "postgres" | "postgresql") && u.has_host() => Ok(u),
        _ => Err(format!(
            "`{shown}` is not a PostgreSQL address; write it like postgres://herald@db.example.org/herald              (add ?sslmode=verify-full or ?sslmode=disable to choose TLS)"
        ).into()),
    }
}

pub(super) fn mailbox(v: &str) -> Result<Mailbox, ValueError> {
    let v = one_line(v)?;
    v.parse().map_err(|_| {
        format!(
            "`{v}` is not an e-mail address; write it like \"OpenInfra Foundation <news@openinfra.org>\" (in quotes)"
        )
        .into()
    })
}

pub(super) fn colour(v: &str) -> Result<String, ValueError> {
    let v = v.trim();
    let hex = v.strip_prefix('#').unwrap_or("");
    if hex.len() != 6 || !hex.chars().all(|ch| ch.is_ascii_hexdigit()) {
        return Err(format!("`{v}` must be a colour like \"#c8102e\" (in quotes)").into());
    }
    Ok(v.to_string())
}

/// A relative path is taken from `base`: the config file's folder for a
/// value from the file (cron starts herald anywhere), the current folder
/// (an empty `base`) for one from the environment or a flag.
pub(super) fn path(v: &str, base: &Path) -> Result<PathBuf, ValueError> {
    let v = v.trim();
    if v.is_empty() {
        return Err("is empty; give a file or folder".into());
    }
    let p = Path::new(v);
    Ok(if p.is_relative() {
        base.join(p)
    } else {
        p.to_path_buf()
    })
}

pub(super) fn number<T: std::str::FromStr>(v: &str) -> Result<T, ValueError> {
    let v = v.trim();
    v.replace('_', "")
        .parse()
        .map_err(|_| ValueError::NotANumber(v.to_string()))
}

pub(super) fn at_least_one<T: PartialOrd + From<u8>>(n: T) -> Result<T, ValueError> {
    if n < T::from(1) {
        return Err(ValueError::BelowOne);
    }
    Ok(n)
}

pub(super) fn at_least_a_second(d: Duration) -> Result<Duration, ValueError> {
    if d < Duration::from_secs(1) {
        return Err(ValueError::UnderASecond);
    }
    Ok(d)
}

pub(super) fn boolean(v: &str) -> Result<bool, ValueError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(ValueError::NotABoolean(v.trim().to_string())),
    }
}

/// A duration the way it is written in settings: `24h`, `90s`, `500ms`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    // Days only from two on: `24h` reads better than `1d`.
    for (unit, n) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms >= n && ms.is_multiple_of(n) && (unit != "d" || ms >= 2 * n) {
            return format!("{}{unit}", ms / n);
        }
    }
    format!("{ms}ms")
}

/// `500ms`, `30s`, `5m`, `1h`, `2d` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, ValueError> {
    let t = s.trim();
    let bad = || ValueError::NotADuration(s.to_string());
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let ms = match unit.trim() {
        "ms" => n,
        "" | "s" => n * 1000,
        "m" | "min" => n * 60_000,
        "h" => n * 3_600_000,
        "d" => n * 86_400_000,
        _ => return Err(bad()),
    };
    Ok(std::time::Duration::from_millis(ms))
}

/// `20KB`, `20 KB`, `1MB`, `20480` (bytes); KB and MB are 1024-based, as
/// in the sizes herald prints.
pub fn parse_size(s: &str) -> Result<usize, ValueError> {
    let t = s.trim();
    let bad = || ValueError::NotASize(s.to_string());
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: usize = n.parse().map_err(|_| bad())?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        _ => return Err(bad()),
    };
    n.checked_mul(factor).ok_or_else(bad)
}

impl Config {
    /// Checks that span several settings.
    pub(super) fn cross_check(&self, problems: &mut Problems) {
        if !self.relays.is_empty() && self.rate.is_some() {
            // Ignoring it would send faster than the person asked.
            problems.push(
                self.source("rate"),
                format!(
                    "`rate` ({}) is the single relay's; with `relays` ({}) give each relay its own `rate:`",
                    self.source("rate"),
                    self.source("relays")
                ),
            );
        }
        if !self.relays.is_empty() && self.smtp_url.is_some() {
            // Which of the two was meant cannot be guessed: sending through
            // the wrong relay is worse than stopping.
            problems.push(
                self.source("smtp_url"),
                format!(
                    "`smtp_url` ({}) and `relays` ({}) are both set; use one: `relays` for several relays, \
                     `smtp_url` (or --smtp) for one",
                    self.source("smtp_url"),
                    self.source("relays")
                ),
            );
        }
        let dkim = ["dkim_domain", "dkim_selector", "dkim_key_file"];
        let set: Vec<&str> = dkim
            .into_iter()
            .filter(|n| self.sources.contains_key(n))
            .collect();
        if !set.is_empty() && set.len() < dkim.len() {
            problems.push(
                self.source(set[0]),
                "DKIM signing needs all three of `dkim_domain`, `dkim_selector` and `dkim_key_file` (or none of them)".into(),
            );
        }
        let second = ["dkim_selector_2", "dkim_key_file_2"];
        let set_2: Vec<&str> = second
            .into_iter()
            .filter(|n| self.sources.contains_key(n))
            .collect();
        if set_2.len() == 1 {
            problems.push(
                self.source(set_2[0]),
                "a second DKIM key needs both `dkim_selector_2` and `dkim_key_file_2`".into(),
            );
        } else if set_2.len() == 2 && set.is_empty() {
            problems.push(
                self.source(set_2[0]),
                "a second DKIM key needs the first: set `dkim_domain`, `dkim_selector` and `dkim_key_file` too".into(),
            );
        }
        for (algorithm, file) in [
            ("dkim_algorithm", "dkim_key_file"),
            ("dkim_algorithm_2", "dkim_key_file_2"),
        ] {
            if self.sources.contains_key(algorithm) && !self.sources.contains_key(file) {
                problems.push(
                    self.source(algorithm),
                    format!("`{algorithm}` says what kind of key `{file}` holds, and `{file}` is not set; set it or remove `{algorithm}`"),
                );
            }
        }
        if let (Some(a), Some(b)) = (&self.dkim_selector, &self.dkim_selector_2)
            && a.eq_ignore_ascii_case(b)
        {
            problems.push(
                self.source("dkim_selector_2"),
                format!("`dkim_selector_2` is `{b}`, the same as `dkim_selector`: each key is published in DNS under a selector of its own; pick another"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::config::test_util::{env, file};
    #[allow(unused_imports)]
    use crate::config::*;

    #[test]
    fn passwords_in_a_relay_address_never_reach_a_message() {
        for raw in [
            "smtp://user:hunter2@mail.example.org:587",
            "smtp://user:hunter2@[bad",
            "smtps://:hunter2@x/y",
        ] {
            let e = smtp(raw).unwrap_err().to_string();
            assert!(!e.contains("hunter2"), "{e}");
        }
        assert_eq!(
            redact_url("postgres://u:p@db:5432/x?sslmode=require"),
            "postgres://***@db:5432/x?sslmode=require"
        );
    }

    #[test]
    fn header_settings_refuse_control_characters() {
        let e =
            Config::parse(Path::new("h.yaml"), "subject: \"Hi\\r\\nBcc: x@y.org\"\n").unwrap_err();
        assert!(e.message.contains("control character"), "{e}");
        let e = Config::parse(Path::new("h.yaml"), "list_id: \"a\\tb\"\n").unwrap_err();
        assert!(e.message.contains("control character"), "{e}");
        // A postal address may span lines: it is only ever footer text.
        let c = Config::parse(
            Path::new("h.yaml"),
            "postal_address: |\n  1 Main St\n  Austin\n",
        )
        .unwrap();
        assert_eq!(c.postal_address.as_deref(), Some("1 Main St\nAustin"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("5m").unwrap().as_secs(), 300);
        assert_eq!(parse_duration("2d").unwrap().as_secs(), 172800);
        assert!(parse_duration("soon").is_err());
        assert_eq!(format_duration(Duration::from_secs(86400)), "24h");
        assert_eq!(format_duration(Duration::from_secs(2 * 86400)), "2d");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("20KB").unwrap(), 20480);
        assert_eq!(parse_size("20 kb").unwrap(), 20480);
        assert_eq!(parse_size("1MB").unwrap(), 1 << 20);
        assert_eq!(parse_size("0").unwrap(), 0);
        assert!(parse_size("big").is_err());
        assert!(parse_size("20 GB").is_err());
        let c = Config::parse(Path::new("h.yaml"), "inline_image_limit: 50KB\n").unwrap();
        assert_eq!(c.inline_image_limit, 50 * 1024);
    }
}
