//! `herald.yaml`: the settings that stay the same from issue to issue.
//!
//! Found with `--config FILE`, else `herald.yaml` in the current directory,
//! else built-in defaults. Every setting can be overridden by an environment
//! variable `HERALD_<NAME>` (for example `HERALD_SITE_URL`), and flags
//! override both. Unknown settings are refused, so a typo cannot silently
//! leave the postal address out of a send.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::InputError;

pub const DEFAULT_FILE: &str = "herald.yaml";

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The website the post lives on; root-relative links are resolved
    /// against it. Default: the origin of the post's `seo.url`.
    pub site_url: Option<String>,
    /// The name shown above the title in the email header.
    pub newsletter_name: Option<String>,
    /// The sender's postal address, printed in the footer (required by law
    /// for bulk mail in many countries).
    pub postal_address: Option<String>,
    /// Where the unsubscribe link in the footer points.
    pub unsubscribe_url: Option<String>,
    /// The colour of headings, links and buttons, as `#rrggbb`.
    pub accent_color: Option<String>,
    /// The sender, with a display name: `OpenInfra Foundation <news@openinfra.org>`.
    pub from: Option<String>,
    /// Where replies go, if not to `from`.
    pub reply_to: Option<String>,
    /// The subject line; may use merge fields and `{{ title }}` (the post's
    /// title). Default: the post's title.
    pub subject: Option<String>,
    /// The `List-Id` of the newsletter (RFC 2919), like
    /// `OpenInfra News <news.openinfra.org>`. Default: made from `from`.
    pub list_id: Option<String>,
    /// The address unsubscribe e-mails go to (the `mailto:` of
    /// `List-Unsubscribe`). Default: `from`.
    pub unsubscribe_mailto: Option<String>,
    /// DKIM signing: the domain, the selector published in DNS, and the file
    /// holding the private key (RSA or Ed25519, PEM). All three, or none.
    pub dkim_domain: Option<String>,
    pub dkim_selector: Option<String>,
    pub dkim_key_file: Option<String>,
    /// The mail relay: `smtp://host:587` (STARTTLS), `smtps://host:465`, or
    /// `smtp://127.0.0.1:2525?tls=none` for a relay on this machine.
    pub smtp_url: Option<String>,
    /// The relay user name (the password comes from HERALD_SMTP_PASSWORD).
    pub smtp_user: Option<String>,
    /// A CA certificate file (PEM) to trust for the relay's TLS certificate,
    /// besides the public certificate authorities (for a private relay).
    pub smtp_ca_file: Option<String>,
    /// Allow `tls=none` to a relay that is not on this machine.
    pub smtp_allow_plaintext: Option<bool>,
    /// Connections to the relay used in parallel (default 4).
    pub connections: Option<usize>,
    /// At most this many messages per second, minute, hour or day: `14/s`, `600/m`, `10000/h`.
    pub rate: Option<String>,
    /// Send this many messages, then pause for `batch_pause`.
    pub batch_size: Option<u64>,
    /// How long to pause between batches: `30s`, `5m`, `1h`.
    pub batch_pause: Option<String>,
    /// At most this many messages per run (for relays with daily quotas).
    pub max_per_run: Option<u64>,
    /// Attempts per message in one run before it waits for the next run (default 4).
    pub max_attempts: Option<u32>,
    /// The wait before the first retry of a failed message; each further
    /// retry waits twice as long, plus jitter (default `1s`).
    pub retry_wait: Option<String>,
    /// Where the journal is kept (default `.herald`).
    pub journal_dir: Option<String>,
    /// With `--due`: a post whose time passed longer ago than this is not
    /// sent without `--late-ok` (default `24h`).
    pub late_grace: Option<String>,
    /// When the email would be too long for Gmail, send a digest instead:
    /// each section's start with a "Continue reading" button to the web
    /// version (the same as `--fit` on every command).
    pub fit: Option<bool>,
    /// A local copy of the website's `static/` folder, where the picture
    /// `/img/x.svg` is the file `<assets_dir>/img/x.svg`: herald turns SVG
    /// pictures it finds there into PNGs, since Gmail and Outlook do not show
    /// SVG. A relative path is taken from the folder of the config file
    /// (from the current folder when it comes from `HERALD_ASSETS_DIR`).
    pub assets_dir: Option<String>,
    /// Where pictures too large to travel inside the message are put on the
    /// web, like `https://openinfra.org/img/email/`: the email links
    /// `<assets_url><file name>`, and you upload the file `herald preview`
    /// writes to `preview/<post>/assets/`.
    pub assets_url: Option<String>,
    /// A PNG made from an SVG up to this size travels inside each message;
    /// a larger one is linked from `assets_url`. `20KB` (the default),
    /// `50KB`, `1MB`, or `0` to link every one.
    #[serde(deserialize_with = "string_or_number")]
    pub inline_image_limit: Option<String>,
}

/// Settings that can come from `HERALD_<NAME>`: (variable, setting).
type Setting = fn(&mut Config) -> &mut Option<String>;
const ENV: &[(&str, Setting)] = &[
    ("HERALD_SITE_URL", |c| &mut c.site_url),
    ("HERALD_NEWSLETTER_NAME", |c| &mut c.newsletter_name),
    ("HERALD_POSTAL_ADDRESS", |c| &mut c.postal_address),
    ("HERALD_UNSUBSCRIBE_URL", |c| &mut c.unsubscribe_url),
    ("HERALD_ACCENT_COLOR", |c| &mut c.accent_color),
    ("HERALD_FROM", |c| &mut c.from),
    ("HERALD_REPLY_TO", |c| &mut c.reply_to),
    ("HERALD_SUBJECT", |c| &mut c.subject),
    ("HERALD_LIST_ID", |c| &mut c.list_id),
    ("HERALD_UNSUBSCRIBE_MAILTO", |c| &mut c.unsubscribe_mailto),
    ("HERALD_DKIM_DOMAIN", |c| &mut c.dkim_domain),
    ("HERALD_DKIM_SELECTOR", |c| &mut c.dkim_selector),
    ("HERALD_DKIM_KEY_FILE", |c| &mut c.dkim_key_file),
    ("HERALD_SMTP_URL", |c| &mut c.smtp_url),
    ("HERALD_SMTP_USER", |c| &mut c.smtp_user),
    ("HERALD_SMTP_CA_FILE", |c| &mut c.smtp_ca_file),
    ("HERALD_RATE", |c| &mut c.rate),
    ("HERALD_BATCH_PAUSE", |c| &mut c.batch_pause),
    ("HERALD_JOURNAL_DIR", |c| &mut c.journal_dir),
    ("HERALD_LATE_GRACE", |c| &mut c.late_grace),
    ("HERALD_ASSETS_DIR", |c| &mut c.assets_dir),
    ("HERALD_ASSETS_URL", |c| &mut c.assets_url),
    ("HERALD_INLINE_IMAGE_LIMIT", |c| &mut c.inline_image_limit),
];

/// A setting written as text or as a bare number (`inline_image_limit: 0`).
fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Value {
        Number(u64),
        Text(String),
    }
    Ok(Option::<Value>::deserialize(d)?.map(|v| match v {
        Value::Number(n) => n.to_string(),
        Value::Text(s) => s,
    }))
}

/// The default of `inline_image_limit`.
pub const DEFAULT_INLINE_IMAGE_LIMIT: usize = 20 * 1024;

impl Config {
    /// Loads the config: `explicit` if given (it must exist), else
    /// `herald.yaml` in the current directory if there is one; then applies
    /// `HERALD_*` variables. Returns the file it read, if any.
    pub fn load(explicit: Option<&Path>) -> Result<(Config, Option<PathBuf>), InputError> {
        let path = match explicit {
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from(DEFAULT_FILE)).filter(|p| p.is_file()),
        };
        let mut config = match &path {
            Some(p) => {
                let mut c = Self::read(p)?;
                c.resolve_paths(p);
                c
            }
            None => Config::default(),
        };
        config.apply_env(|k| std::env::var(k).ok());
        config.validate(path.as_deref().unwrap_or(Path::new(DEFAULT_FILE)))?;
        Ok((config, path))
    }

    pub fn read(path: &Path) -> Result<Config, InputError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            InputError::new(
                path,
                None,
                format!("cannot read the config file ({e}). Check the path given to --config."),
            )
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config, InputError> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        yaml_serde::from_str(text).map_err(|e| {
            let line = e.location().map(|l| l.line());
            let detail = e.to_string();
            let detail = detail
                .split(" at line ")
                .next()
                .unwrap_or(&detail)
                .to_string();
            InputError::new(
                path,
                line,
                format!("{detail}. See herald.example.yaml for every setting and how to write it."),
            )
        })
    }

    /// A relative `assets_dir` in a config file means relative to that
    /// file's folder: herald.yaml usually sits next to the website checkout,
    /// and cron runs herald from elsewhere.
    fn resolve_paths(&mut self, config_file: &Path) {
        if let Some(dir) = &self.assets_dir {
            let p = Path::new(dir);
            if p.is_relative() {
                let base = config_file.parent().unwrap_or(Path::new(""));
                self.assets_dir = Some(base.join(p).to_string_lossy().into_owned());
            }
        }
    }

    /// `inline_image_limit` in bytes (validated by [`Config::load`]).
    pub fn inline_image_limit(&self) -> usize {
        self.inline_image_limit
            .as_deref()
            .and_then(|s| parse_size(s).ok())
            .unwrap_or(DEFAULT_INLINE_IMAGE_LIMIT)
    }

    fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) {
        for (name, field) in ENV {
            if let Some(v) = var(name).filter(|v| !v.trim().is_empty()) {
                *field(self) = Some(v);
            }
        }
    }

    fn validate(&self, path: &Path) -> Result<(), InputError> {
        let mut problems = Vec::new();
        for (name, value) in [
            ("site_url", &self.site_url),
            ("unsubscribe_url", &self.unsubscribe_url),
            ("assets_url", &self.assets_url),
        ] {
            if let Some(v) = value {
                let ok = url::Url::parse(v.trim())
                    .is_ok_and(|u| matches!(u.scheme(), "https" | "http") && u.has_host());
                if !ok {
                    problems.push(format!(
                        "`{name}: {v}` is not a web address; write it in full, like https://openinfra.org"
                    ));
                }
            }
        }
        if let Some(c) = &self.accent_color {
            let hex = c.strip_prefix('#').unwrap_or("");
            if hex.len() != 6 || !hex.chars().all(|ch| ch.is_ascii_hexdigit()) {
                problems.push(format!(
                    "`accent_color: {c}` must be a colour like \"#c8102e\" (in quotes)"
                ));
            }
        }
        for (name, value) in [
            ("from", &self.from),
            ("reply_to", &self.reply_to),
            ("unsubscribe_mailto", &self.unsubscribe_mailto),
        ] {
            if let Some(v) = value
                && v.parse::<lettre::message::Mailbox>().is_err()
            {
                problems.push(format!(
                        "`{name}: {v}` is not an e-mail address; write it like \"OpenInfra Foundation <news@openinfra.org>\" (in quotes)"
                    ));
            }
        }
        if let Some(r) = &self.rate
            && let Err(e) = crate::deliver::throttle::Rate::parse(r)
        {
            problems.push(format!("`rate`: {e}"));
        }
        for (name, value) in [
            ("batch_pause", &self.batch_pause),
            ("late_grace", &self.late_grace),
            ("retry_wait", &self.retry_wait),
        ] {
            if let Some(v) = value
                && let Err(e) = parse_duration(v)
            {
                problems.push(format!("`{name}`: {e}"));
            }
        }
        if let Some(v) = &self.inline_image_limit
            && let Err(e) = parse_size(v)
        {
            problems.push(format!("`inline_image_limit`: {e}"));
        }
        if self.connections == Some(0) {
            problems.push("`connections` must be at least 1".into());
        }
        let dkim = [&self.dkim_domain, &self.dkim_selector, &self.dkim_key_file];
        if dkim.iter().any(|v| v.is_some()) && !dkim.iter().all(|v| v.is_some()) {
            problems.push(
                "DKIM signing needs all three of `dkim_domain`, `dkim_selector` and `dkim_key_file` (or none of them)".into(),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(InputError::new(path, None, problems.join("; ")))
        }
    }
}

/// `500ms`, `30s`, `5m`, `1h`, `2d` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let bad = || format!("`{s}` is not a duration; write it like 30s, 5m, 1h or 2d");
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
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let bad = || format!("`{s}` is not a size; write it like 20KB, 1MB or 0");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_setting_is_refused_with_its_line() {
        let e = Config::parse(
            Path::new("herald.yaml"),
            "site_url: https://x.org\npostal_adress: x\n",
        )
        .unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("postal_adress"), "{e}");
        assert!(e.message.contains("postal_address"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("5m").unwrap().as_secs(), 300);
        assert_eq!(parse_duration("2d").unwrap().as_secs(), 172800);
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("20KB").unwrap(), 20480);
        assert_eq!(parse_size("20 kb").unwrap(), 20480);
        assert_eq!(parse_size("1MB").unwrap(), 1 << 20);
        assert_eq!(parse_size("0").unwrap(), 0);
        assert!(parse_size("big").is_err());
        assert!(parse_size("20 GB").is_err());
        assert_eq!(Config::default().inline_image_limit(), 20480);
        let c = Config::parse(Path::new("h.yaml"), "inline_image_limit: 0\n").unwrap();
        assert_eq!(c.inline_image_limit(), 0);
        let c = Config::parse(Path::new("h.yaml"), "inline_image_limit: 50KB\n").unwrap();
        assert_eq!(c.inline_image_limit(), 50 * 1024);
    }

    #[test]
    fn relative_assets_dir_is_taken_from_the_config_files_folder() {
        let mut c = Config::parse(Path::new("h.yaml"), "assets_dir: website/static\n").unwrap();
        c.resolve_paths(Path::new("/srv/news/herald.yaml"));
        assert_eq!(c.assets_dir.as_deref(), Some("/srv/news/website/static"));
        let mut c = Config::parse(Path::new("h.yaml"), "assets_dir: /abs/static\n").unwrap();
        c.resolve_paths(Path::new("/srv/news/herald.yaml"));
        assert_eq!(c.assets_dir.as_deref(), Some("/abs/static"));
        // From the environment: as given, so relative to the current folder.
        c.apply_env(|k| (k == "HERALD_ASSETS_DIR").then(|| "static".to_string()));
        assert_eq!(c.assets_dir.as_deref(), Some("static"));
    }

    #[test]
    fn env_overrides_file() {
        let mut c = Config::parse(Path::new("h.yaml"), "site_url: https://a.org\n").unwrap();
        c.apply_env(|k| (k == "HERALD_SITE_URL").then(|| "https://b.org".to_string()));
        assert_eq!(c.site_url.as_deref(), Some("https://b.org"));
    }

    #[test]
    fn bad_values_are_all_listed() {
        let c = Config {
            site_url: Some("openinfra.org".into()),
            accent_color: Some("red".into()),
            ..Config::default()
        };
        let e = c.validate(Path::new("herald.yaml")).unwrap_err();
        assert!(
            e.message.contains("site_url") && e.message.contains("accent_color"),
            "{e}"
        );
    }
}
