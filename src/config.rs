//! `herald.yaml`: the settings that stay the same from issue to issue.
//!
//! Found with `--config FILE`, else `herald.yaml` in the current directory,
//! else built-in defaults. Every setting can be overridden by an environment
//! variable `HERALD_<NAME>` (for example `HERALD_SITE_URL`), and flags
//! (`--rate`, `--set NAME=VALUE`...) override both. Unknown settings are
//! refused, so a typo cannot silently leave the postal address out of a send.
//!
//! Each value is parsed once, here, into its type; the rest of herald never
//! sees the text again. Every setting remembers where it came from
//! ([`Source`]), so an error names the place to fix (`herald.yaml:12`,
//! `HERALD_RATE`, `--rate`) and `herald config` can show it.
//!
//! A leaf module: it uses nothing from the crate but [`InputError`], so
//! every other module can depend on it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::Mailbox;
use url::Url;

use crate::InputError;

pub const DEFAULT_FILE: &str = "herald.yaml";

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    /// The config file, with the line of the setting when it was found.
    File {
        path: PathBuf,
        line: Option<usize>,
    },
    /// An environment variable, like `HERALD_RATE`.
    Env(String),
    /// A command-line flag, like `--rate` or `--set rate`.
    Flag(String),
}

impl Source {
    /// An error about the value from this source: the file and line for the
    /// config file, the variable or flag in the file's place otherwise.
    pub fn error(&self, message: impl Into<String>) -> InputError {
        match self {
            Source::File { path, line } => InputError::new(path, *line, message),
            Source::Env(name) | Source::Flag(name) => {
                InputError::new(Path::new(name), None, message)
            }
            Source::Default => InputError::new(Path::new("default"), None, message),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File {
                path,
                line: Some(l),
            } => write!(f, "{}:{l}", path.display()),
            Source::File { path, line: None } => write!(f, "{}", path.display()),
            Source::Env(name) | Source::Flag(name) => f.write_str(name),
        }
    }
}

/// The effective settings, typed. The defaults are in [`Config::default`]
/// and nowhere else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The website the post lives on; root-relative links are resolved
    /// against it. Default: the origin of the post's `seo.url`.
    pub site_url: Option<Url>,
    /// The name shown above the title in the email header.
    pub newsletter_name: Option<String>,
    /// The language of the issues (`lang=` of the email, like `de`); a
    /// post's `lang:` front matter wins. Default: `en`.
    pub lang: Option<String>,
    /// The writing direction, `ltr` or `rtl`; a post's `dir:` wins.
    /// Default: `ltr`.
    pub dir: Option<String>,
    /// The footer's "You are receiving this email because you subscribed
    /// to news from" (the newsletter's name follows).
    pub words_subscribed: Option<String>,
    /// The top line's "View this email in your browser".
    pub words_view_online: Option<String>,
    /// The footer's "View in browser".
    pub words_view_in_browser: Option<String>,
    /// The footer's "Unsubscribe".
    pub words_unsubscribe: Option<String>,
    /// The digest's "Continue reading" buttons.
    pub words_continue_reading: Option<String>,
    /// The sender's postal address, printed in the footer (required by law
    /// for bulk mail in many countries). May span several lines.
    pub postal_address: Option<String>,
    /// Where the unsubscribe link in the footer points.
    pub unsubscribe_url: Option<Url>,
    /// The colour of headings, links and buttons, as `#rrggbb`.
    pub accent_color: Option<String>,
    /// The sender, with a display name: `OpenInfra Foundation <news@openinfra.org>`.
    pub from: Option<Mailbox>,
    /// Where replies go, if not to `from`.
    pub reply_to: Option<Mailbox>,
    /// The subject line; may use merge fields and `{{ title }}` (the post's
    /// title). Default: the post's title.
    pub subject: Option<String>,
    /// The `List-Id` of the newsletter (RFC 2919), like
    /// `OpenInfra News <news.openinfra.org>`. Default: made from `from`.
    pub list_id: Option<String>,
    /// The address unsubscribe e-mails go to (the `mailto:` of
    /// `List-Unsubscribe`). Default: `from`.
    pub unsubscribe_mailto: Option<Mailbox>,
    /// The mailbox bounces come back to. Each message's envelope sender
    /// becomes `local+<token>@domain` (VERP), and the `mailto:` of
    /// List-Unsubscribe `unsubscribe+<token>@domain`, so `herald bounces`
    /// knows whose message came back. Default: none (bounces go to `from`).
    pub return_path: Option<Mailbox>,
    /// An address is suppressed after this many soft bounces (mailbox
    /// full, delivery expired) in at least two campaigns, within
    /// `soft_bounce_window`.
    pub soft_bounce_limit: u32,
    pub soft_bounce_window: Duration,
    /// DKIM signing: the domain, the selector published in DNS, and the file
    /// holding the private key (RSA or Ed25519, PEM). All three, or none.
    pub dkim_domain: Option<String>,
    pub dkim_selector: Option<String>,
    pub dkim_key_file: Option<PathBuf>,
    /// What kind of key `dkim_key_file` is meant to hold; when given, a
    /// file holding the other kind is an error (a swapped file would
    /// otherwise sign under a selector whose DNS record cannot verify it).
    pub dkim_algorithm: Option<DkimAlgorithm>,
    /// A second key (usually Ed25519 next to an RSA first key), published
    /// under its own selector: every message then carries two signatures.
    pub dkim_selector_2: Option<String>,
    pub dkim_key_file_2: Option<PathBuf>,
    pub dkim_algorithm_2: Option<DkimAlgorithm>,
    /// The mail relay: `smtp://host:587` (STARTTLS), `smtps://host:465`, or
    /// `smtp://127.0.0.1:2525?tls=none` for a relay on this machine.
    pub smtp_url: Option<Url>,
    /// The relay user name (the password comes from HERALD_SMTP_PASSWORD).
    pub smtp_user: Option<String>,
    /// A CA certificate file (PEM) to trust for the relay's TLS certificate,
    /// besides the public certificate authorities (for a private relay).
    pub smtp_ca_file: Option<PathBuf>,
    /// Allow `tls=none` to a relay that is not on this machine.
    pub smtp_allow_plaintext: bool,
    /// Several relays (`relays:` in herald.yaml), each with its own
    /// address, user, rate and connections; empty when the single relay of
    /// `smtp_url` is used. See [`Config::relay_list`] for the list a send
    /// uses either way.
    pub relays: Vec<RelaySetting>,
    /// Limits per recipient domain or group of domains (`domain_limits:`),
    /// across all relays; empty when none. See [`Config::domain_limit_of`].
    pub domain_limits: Vec<DomainLimit>,
    /// Connections to the relay used in parallel.
    pub connections: usize,
    /// At most this many messages per second, minute, hour or day.
    pub rate: Option<Rate>,
    /// Send this many messages, then pause for `batch_pause`.
    pub batch_size: Option<u64>,
    /// How long to pause between batches.
    pub batch_pause: Duration,
    /// At most this many messages per run (for relays with daily quotas).
    pub max_per_run: Option<u64>,
    /// Attempts per message in one run before it waits for the next run.
    pub max_attempts: u32,
    /// The wait before the first retry of a failed message; each further
    /// retry waits twice as long, plus jitter.
    pub retry_wait: Duration,
    /// A relay that does nothing but fail (no connection, TLS failing,
    /// 421, "slow down") for this long is taken as down: the run stops and
    /// everyone not yet mailed waits for the next run.
    pub relay_down_after: Duration,
    /// The longest herald waits for the relay to connect or to answer
    /// one message.
    pub smtp_timeout: Duration,
    /// Where the journal is kept.
    pub journal_dir: PathBuf,
    /// A PostgreSQL database to keep the journal in instead, shared by
    /// several hosts (`herald serve` on a web host, senders elsewhere):
    /// `postgres://herald@db.example.org/herald`. The password comes from
    /// HERALD_DATABASE_PASSWORD. Default: none (the SQLite journal).
    pub database_url: Option<Url>,
    /// A CA certificate file (PEM) to trust for the database's TLS
    /// certificate, besides the public certificate authorities.
    pub database_ca_file: Option<PathBuf>,
    /// With `--due`: a post whose time passed longer ago than this is not
    /// sent without `--late-ok`.
    pub late_grace: Duration,
    /// When real sends may run: days, hours and a time zone. Outside it a
    /// send does nothing; a run that reaches its end stops cleanly.
    pub send_window: Option<SendWindow>,
    /// Campaign tags added to links to the newsletter's own sites.
    pub utm: Option<Utm>,
    /// Hosts besides `site_url`'s whose links get the `utm` tags.
    pub utm_domains: Option<HostList>,
    /// When the email would be too long for Gmail, send a digest instead.
    pub fit: bool,
    /// A local copy of the website's `static/` folder, where the picture
    /// `/img/x.svg` is the file `<assets_dir>/img/x.svg`.
    pub assets_dir: Option<PathBuf>,
    /// Where pictures too large to travel inside the message are put on the web.
    pub assets_url: Option<Url>,
    /// A PNG made from an SVG up to this many bytes travels inside each
    /// message; a larger one is linked from `assets_url`.
    pub inline_image_limit: usize,
    /// The config file that was read, if any.
    pub file: Option<PathBuf>,
    /// Where each setting that is not a default came from.
    sources: BTreeMap<&'static str, Source>,
}

/// The default of `inline_image_limit`.
pub const DEFAULT_INLINE_IMAGE_LIMIT: usize = 20 * 1024;

impl Default for Config {
    /// Every default herald has, in one place.
    fn default() -> Self {
        Config {
            site_url: None,
            newsletter_name: None,
            lang: None,
            dir: None,
            words_subscribed: None,
            words_view_online: None,
            words_view_in_browser: None,
            words_unsubscribe: None,
            words_continue_reading: None,
            postal_address: None,
            unsubscribe_url: None,
            accent_color: None,
            from: None,
            reply_to: None,
            subject: None,
            list_id: None,
            unsubscribe_mailto: None,
            return_path: None,
            soft_bounce_limit: 3,
            soft_bounce_window: Duration::from_secs(30 * 86_400),
            dkim_domain: None,
            dkim_selector: None,
            dkim_key_file: None,
            dkim_algorithm: None,
            dkim_selector_2: None,
            dkim_key_file_2: None,
            dkim_algorithm_2: None,
            smtp_url: None,
            smtp_user: None,
            smtp_ca_file: None,
            smtp_allow_plaintext: false,
            relays: Vec::new(),
            domain_limits: Vec::new(),
            connections: 4,
            rate: None,
            batch_size: None,
            batch_pause: Duration::from_secs(60),
            max_per_run: None,
            max_attempts: 4,
            retry_wait: Duration::from_secs(1),
            relay_down_after: Duration::from_secs(60),
            smtp_timeout: Duration::from_secs(60),
            journal_dir: PathBuf::from(".herald"),
            database_url: None,
            database_ca_file: None,
            late_grace: Duration::from_secs(24 * 3600),
            send_window: None,
            utm: None,
            utm_domains: None,
            fit: false,
            assets_dir: None,
            assets_url: None,
            inline_image_limit: DEFAULT_INLINE_IMAGE_LIMIT,
            file: None,
            sources: BTreeMap::new(),
        }
    }
}

/// A value given on the command line: `--rate 14/s` is
/// `Override { name: "rate", value: "14/s", flag: "--rate" }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub name: String,
    pub value: String,
    /// How it was given, for messages: `--rate`, `--set rate`.
    pub flag: String,
}

impl Override {
    pub fn new(name: &str, value: impl Into<String>, flag: &str) -> Override {
        Override {
            name: name.into(),
            value: value.into(),
            flag: flag.into(),
        }
    }

    /// `NAME=VALUE` from `--set`.
    pub fn from_set(arg: &str) -> Result<Override, InputError> {
        let (name, value) = arg.split_once('=').ok_or_else(|| {
            InputError::new(
                Path::new("--set"),
                None,
                format!("`{arg}` needs the form NAME=VALUE, like --set rate=14/s"),
            )
        })?;
        let name = name.trim();
        Ok(Override::new(name, value, &format!("--set {name}")))
    }
}

/// One setting: how to parse it into the [`Config`] and how to show it.
struct Setting {
    name: &'static str,
    /// Parses the text into the config; `base` is the folder a relative
    /// path is taken from.
    set: fn(&mut Config, &str, &Path) -> Result<(), String>,
    show: fn(&Config) -> Option<String>,
}

macro_rules! setting {
    ($name:ident, |$v:ident, $base:ident| $parse:expr, $show:expr) => {
        Setting {
            name: stringify!($name),
            set: |c: &mut Config, $v: &str, $base: &Path| {
                c.$name = $parse;
                Ok(())
            },
            show: |c: &Config| $show(&c.$name),
        }
    };
}

/// Every setting, in the order `herald config` and herald.example.yaml list them.
const SETTINGS: &[Setting] = &[
    setting!(site_url, |v, _b| Some(web(v)?), show_opt),
    setting!(newsletter_name, |v, _b| Some(one_line(v)?), show_opt),
    setting!(lang, |v, _b| Some(language(v)?), show_opt),
    setting!(dir, |v, _b| Some(direction(v)?), show_opt),
    setting!(words_subscribed, |v, _b| Some(one_line(v)?), show_opt),
    setting!(words_view_online, |v, _b| Some(one_line(v)?), show_opt),
    setting!(words_view_in_browser, |v, _b| Some(one_line(v)?), show_opt),
    setting!(words_unsubscribe, |v, _b| Some(one_line(v)?), show_opt),
    setting!(words_continue_reading, |v, _b| Some(one_line(v)?), show_opt),
    setting!(postal_address, |v, _b| Some(lines(v)?), show_opt),
    setting!(unsubscribe_url, |v, _b| Some(unsubscribe_web(v)?), show_opt),
    setting!(accent_color, |v, _b| Some(colour(v)?), show_opt),
    setting!(from, |v, _b| Some(mailbox(v)?), show_opt),
    setting!(reply_to, |v, _b| Some(mailbox(v)?), show_opt),
    setting!(subject, |v, _b| Some(one_line(v)?), show_opt),
    setting!(list_id, |v, _b| Some(one_line(v)?), show_opt),
    setting!(unsubscribe_mailto, |v, _b| Some(mailbox(v)?), show_opt),
    setting!(return_path, |v, _b| Some(return_path(v)?), show_opt),
    setting!(soft_bounce_limit, |v, _b| at_least_one(number(v)?)?, show),
    setting!(
        soft_bounce_window,
        |v, _b| parse_duration(v)?,
        show_duration
    ),
    setting!(dkim_domain, |v, _b| Some(dns_name(v)?), show_opt),
    setting!(dkim_selector, |v, _b| Some(dns_name(v)?), show_opt),
    setting!(dkim_key_file, |v, b| Some(path(v, b)?), show_path),
    setting!(
        dkim_algorithm,
        |v, _b| Some(DkimAlgorithm::parse(v)?),
        show_opt
    ),
    setting!(dkim_selector_2, |v, _b| Some(dns_name(v)?), show_opt),
    setting!(dkim_key_file_2, |v, b| Some(path(v, b)?), show_path),
    setting!(
        dkim_algorithm_2,
        |v, _b| Some(DkimAlgorithm::parse(v)?),
        show_opt
    ),
    setting!(smtp_url, |v, _b| Some(smtp(v)?), show_opt),
    setting!(smtp_user, |v, _b| Some(one_line(v)?), show_opt),
    setting!(smtp_ca_file, |v, b| Some(path(v, b)?), show_path),
    setting!(smtp_allow_plaintext, |v, _b| boolean(v)?, show),
    setting!(relays, |v, _b| relays_from_text(v)?, show_relays),
    setting!(connections, |v, _b| at_least_one(number(v)?)?, show),
    setting!(rate, |v, _b| Some(Rate::parse(v)?), show_opt),
    setting!(
        domain_limits,
        |v, _b| domain_limits_from_text(v)?,
        show_domain_limits
    ),
    setting!(
        batch_size,
        |v, _b| Some(at_least_one(number(v)?)?),
        show_opt
    ),
    setting!(batch_pause, |v, _b| parse_duration(v)?, show_duration),
    setting!(max_per_run, |v, _b| Some(number(v)?), show_opt),
    setting!(max_attempts, |v, _b| at_least_one(number(v)?)?, show),
    setting!(retry_wait, |v, _b| parse_duration(v)?, show_duration),
    setting!(relay_down_after, |v, _b| parse_duration(v)?, show_duration),
    setting!(
        smtp_timeout,
        |v, _b| at_least_a_second(parse_duration(v)?)?,
        show_duration
    ),
    setting!(journal_dir, |v, b| path(v, b)?, |p: &PathBuf| Some(
        p.display().to_string()
    )),
    setting!(database_url, |v, _b| Some(database(v)?), show_opt),
    setting!(database_ca_file, |v, b| Some(path(v, b)?), show_path),
    setting!(late_grace, |v, _b| parse_duration(v)?, show_duration),
    setting!(send_window, |v, _b| Some(SendWindow::parse(v)?), show_opt),
    setting!(utm, |v, _b| Some(Utm::parse(v)?), show_opt),
    setting!(utm_domains, |v, _b| Some(HostList::parse(v)?), show_opt),
    setting!(fit, |v, _b| boolean(v)?, show),
    setting!(assets_dir, |v, b| Some(path(v, b)?), show_path),
    setting!(assets_url, |v, _b| Some(web(v)?), show_opt),
    setting!(
        inline_image_limit,
        |v, _b| parse_size(v)?,
        |n: &usize| Some(show_size(*n))
    ),
];

/// The kind of a DKIM key: what `a=` says in the signature and `k=` in DNS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DkimAlgorithm {
    Rsa,
    Ed25519,
}

impl DkimAlgorithm {
    fn parse(v: &str) -> Result<DkimAlgorithm, String> {
        match v.trim().to_ascii_lowercase().as_str() {
            "rsa" | "rsa-sha256" => Ok(DkimAlgorithm::Rsa),
            "ed25519" | "ed25519-sha256" => Ok(DkimAlgorithm::Ed25519),
            other => Err(format!(
                "`{}` is not a kind of DKIM key; write rsa or ed25519",
                other.escape_debug()
            )),
        }
    }
}

impl fmt::Display for DkimAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DkimAlgorithm::Rsa => "rsa",
            DkimAlgorithm::Ed25519 => "ed25519",
        })
    }
}

/// One configured DKIM key, with the names of the settings it came from
/// so messages about it say what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimKey {
    pub selector: String,
    pub key_file: PathBuf,
    pub algorithm: Option<DkimAlgorithm>,
    pub selector_setting: &'static str,
    pub key_file_setting: &'static str,
    pub algorithm_setting: &'static str,
}

/// The environment variable that overrides a setting: `HERALD_RATE`.
pub fn env_name(setting: &str) -> String {
    format!("HERALD_{}", setting.to_ascii_uppercase())
}

/// Settings that end up in a header or on one line of the footer cannot hold
/// control characters: a line break there would start a header of the
/// sender's choosing, or break the message's lines.
fn one_line(v: &str) -> Result<String, String> {
    let v = v.trim();
    if let Some(c) = v.chars().find(|c| c.is_control()) {
        return Err(format!(
            "`{}` holds a control character ({c:?}); write it on one line, without tabs or line breaks",
            v.escape_debug()
        ));
    }
    Ok(v.to_string())
}

/// A language tag (BCP 47) as `lang=` takes it: `en`, `de`, `pt-BR`.
pub fn language(v: &str) -> Result<String, String> {
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
        ));
    }
    Ok(v.to_string())
}

/// The writing direction: `ltr` (left to right) or `rtl` (Arabic, Hebrew).
pub fn direction(v: &str) -> Result<String, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        d @ ("ltr" | "rtl" | "auto") => Ok(d.to_string()),
        _ => Err(format!(
            "`{}` is not a writing direction; write `ltr` (left to right) or `rtl` (right to left)",
            v.trim().escape_debug()
        )),
    }
}

/// The DKIM domain and selectors go into the signature's `d=` and `s=`
/// and name a DNS record: a `;` or a space there would break the signature
/// for every message, so only what DNS names hold is taken.
fn dns_name(v: &str) -> Result<String, String> {
    let v = one_line(v)?;
    if v.is_empty()
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    {
        return Err(format!(
            "`{v}` is not a DNS name; write it as it is published in DNS, like herald-rsa or example.org \
             (letters, digits, `-`, `.` and `_`)"
        ));
    }
    Ok(v)
}

/// `postal_address` may span lines (a YAML `|` block is the natural way to
/// write an address): it goes only into the footer's body text, never into a
/// header, where the text part keeps the lines and the HTML joins them.
/// Other control characters are refused all the same.
fn lines(v: &str) -> Result<String, String> {
    let v = v.trim();
    if let Some(c) = v
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(format!("holds a control character ({c:?})"));
    }
    Ok(v.to_string())
}

fn web(v: &str) -> Result<Url, String> {
    let v = v.trim();
    match Url::parse(v) {
        Ok(u) if matches!(u.scheme(), "https" | "http") && u.has_host() => Ok(u),
        _ => Err(format!(
            "`{v}` is not a web address; write it in full, like https://openinfra.org"
        )),
    }
}

/// The unsubscribe page: `https:` (Gmail and Yahoo ignore a one-click
/// link that is not), or `http:` on this machine for trials and tests.
fn unsubscribe_web(v: &str) -> Result<Url, String> {
    let u = web(v)?;
    let loopback = match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if u.scheme() == "https" || loopback {
        Ok(u)
    } else {
        Err(format!(
            "`{}` is not https; mailbox providers ignore unsubscribe links that are not. \
             Put `herald serve` behind an HTTPS proxy (see the README's \"Unsubscribes\") and \
             write its https:// address here",
            v.trim()
        ))
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

/// One relay of `relays:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelaySetting {
    /// For messages, `herald status` and the journal (which relay answered
    /// for each person). Under `relays:` its `name:`, default `host:port`;
    /// [`SINGLE_RELAY_NAME`] for the single relay of `smtp_url`.
    pub name: String,
    pub url: Url,
    pub user: Option<String>,
    /// At most this many messages per window at this relay.
    pub rate: Option<Rate>,
    /// Connections used in parallel (`None`: the `connections` setting).
    pub connections: Option<usize>,
    /// This relay's daily quota: a quota counted in the store across runs
    /// and campaigns, by the relay's day (see `day_zone`).
    pub max_per_day: Option<u64>,
    /// This relay's share (1 or more, default 1): when several relays can
    /// take a message at the same moment, they share the messages in
    /// proportion to their weights. A relay held back by its own rate,
    /// quota or a pause does not hold the others back.
    pub weight: u32,
    /// The time zone of the relay's day (`timezone:`, an IANA name; default
    /// UTC): its `max_per_day` quota starts again at midnight there.
    pub day_zone: jiff::tz::TimeZone,
    /// The zone's name, as `herald config` shows it: `UTC`,
    /// `America/Los_Angeles`.
    pub day_zone_name: String,
    /// The variable holding its password (or `<it>_FILE` naming a file):
    /// `HERALD_RELAY_<NAME>_PASSWORD`, or HERALD_SMTP_PASSWORD for `smtp_url`.
    pub password_env: String,
    /// The setting it came from, for messages: `relays` or `smtp_url`.
    pub setting: &'static str,
}

/// The keys a `relays` entry may have.
const RELAY_KEYS: &[&str] = &[
    "name",
    "url",
    "user",
    "rate",
    "connections",
    "max_per_day",
    "weight",
    "timezone",
];

/// The name of the single relay of `smtp_url` (the list of one of
/// [`Config::relay_list`]). The journal records which relay answered for
/// each person; for the single relay the name only needs to be stable, and
/// a host name or IP address in it (`127.0.0.1:2525`) would be noise in a
/// privacy review.
pub const SINGLE_RELAY_NAME: &str = "relay";

/// The zone of a relay's day: an IANA name, `UTC` by default.
fn day_zone(v: &str) -> Result<(jiff::tz::TimeZone, String), String> {
    let v = one_line(v)?;
    let how = "write the zone whose midnight starts the relay's day, like `timezone: America/Los_Angeles`";
    if v.eq_ignore_ascii_case("utc") {
        return Ok((jiff::tz::TimeZone::UTC, "UTC".into()));
    }
    let zone = jiff::tz::TimeZone::get(&v).map_err(|_| {
        format!(
            "`{v}` is not a time zone herald knows (an IANA name like Europe/Berlin, \
             America/New_York or UTC); {how}"
        )
    })?;
    // The zone's own spelling (`america/new_york` is found too), so that
    // `herald config` shows it the usual way.
    let name = zone.iana_name().unwrap_or(&v).to_string();
    Ok((zone, name))
}

/// `host:port` of a relay address, its name when it has none.
fn default_relay_name(url: &Url) -> String {
    let host = url.host_str().unwrap_or("relay");
    let port = url
        .port()
        .unwrap_or(if url.scheme() == "smtps" { 465 } else { 587 });
    format!("{host}:{port}")
}

/// `HERALD_RELAY_<NAME>_PASSWORD`: the name upper-cased, anything but
/// letters and digits made `_`.
pub fn relay_password_env(name: &str) -> String {
    let mut var = String::from("HERALD_RELAY_");
    var.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        }
    }));
    var.push_str("_PASSWORD");
    var
}

/// One entry of `relays:` (the `index`th, from 0).
fn relay_entry(v: &yaml_serde::Value, index: usize) -> Result<RelaySetting, String> {
    let yaml_serde::Value::Mapping(map) = v else {
        return Err("each relay is a map, like `- url: smtp://mail.example.org:587`".into());
    };
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in map {
        let key = scalar(k);
        if key == "password" {
            return Err(
                "a password never goes in herald.yaml; remove it and set the relay's \
                 HERALD_RELAY_<NAME>_PASSWORD (or ..._PASSWORD_FILE) instead"
                    .into(),
            );
        }
        if !RELAY_KEYS.contains(&key.as_str()) {
            return Err(format!(
                "a relay has no `{key}`; it takes {}",
                RELAY_KEYS.join(", ")
            ));
        }
        if matches!(
            v,
            yaml_serde::Value::Mapping(_) | yaml_serde::Value::Sequence(_)
        ) {
            return Err(format!("`{key}` must be a single value"));
        }
        fields.insert(key, scalar(v));
    }
    let url = fields
        .get("url")
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| {
            format!(
                "it has no `url`; write it like `- url: smtp://mail.example.org:587`{}",
                if index == 0 {
                    ""
                } else {
                    " (each relay needs its own)"
                }
            )
        })?;
    let url = smtp(url).map_err(|e| {
        e.replace("`smtp_user`", "the relay's `user`").replace(
            "HERALD_SMTP_PASSWORD (or HERALD_SMTP_PASSWORD_FILE)",
            "HERALD_RELAY_<NAME>_PASSWORD",
        )
    })?;
    let name = match fields.get("name") {
        Some(n) => {
            let n = one_line(n)?;
            if n.trim().is_empty() || !n.chars().any(|c| c.is_ascii_alphanumeric()) {
                return Err(format!(
                    "the name `{n}` needs a letter or digit; it names the password's variable"
                ));
            }
            n.trim().to_string()
        }
        None => default_relay_name(&url),
    };
    let user = fields.get("user").map(|u| one_line(u)).transpose()?;
    let rate = fields
        .get("rate")
        .map(|r| Rate::parse(r))
        .transpose()
        .map_err(|e| format!("`rate`: {e}"))?;
    let connections = fields
        .get("connections")
        .map(|c| number::<usize>(c).and_then(at_least_one))
        .transpose()
        .map_err(|e| format!("`connections`: {e}"))?;
    let max_per_day = fields
        .get("max_per_day")
        .map(|c| number::<u64>(c).and_then(at_least_one))
        .transpose()
        .map_err(|e| format!("`max_per_day`: {e}"))?;
    let weight = match fields.get("weight") {
        Some(w) => number::<u32>(w)
            .and_then(|w| {
                at_least_one(w).map_err(|e| {
                    format!("{e} (to send nothing through a relay, remove it from the list)")
                })
            })
            .map_err(|e| format!("`weight`: {e}"))?,
        None => 1,
    };
    let (day_zone, day_zone_name) = match fields.get("timezone") {
        Some(z) => day_zone(z).map_err(|e| format!("`timezone`: {e}"))?,
        None => (jiff::tz::TimeZone::UTC, "UTC".into()),
    };
    Ok(RelaySetting {
        password_env: relay_password_env(&name),
        name,
        url,
        user,
        rate,
        connections,
        max_per_day,
        weight,
        day_zone,
        day_zone_name,
        setting: "relays",
    })
}

/// The first relay whose name (or password variable) an earlier one
/// already has: its index and what to do.
fn duplicate_relay<'a>(relays: impl Iterator<Item = &'a RelaySetting>) -> Option<(usize, String)> {
    let mut seen: Vec<&RelaySetting> = Vec::new();
    for (i, r) in relays.enumerate() {
        if let Some(other) = seen.iter().find(|o| o.password_env == r.password_env) {
            return Some((
                i,
                format!(
                    "the name `{}` is taken by another relay (`{}`); give each relay its own `name:` \
                     (its password comes from {})",
                    r.name, other.name, r.password_env
                ),
            ));
        }
        seen.push(r);
    }
    None
}

/// `relays` from text (HERALD_RELAYS, `--set relays=...`): the same list
/// in YAML's one-line form, `[{name: a, url: "smtp://a.example.org:587"}]`.
fn relays_from_text(v: &str) -> Result<Vec<RelaySetting>, String> {
    let value: yaml_serde::Value = yaml_serde::from_str(v).map_err(|_| {
        "write the relays as a list, like [{name: a, url: \"smtp://a.example.org:587\", rate: 10/s}]"
            .to_string()
    })?;
    let yaml_serde::Value::Sequence(list) = value else {
        return Err(
            "write the relays as a list, like [{name: a, url: \"smtp://a.example.org:587\", rate: 10/s}]"
                .into(),
        );
    };
    let relays = list
        .iter()
        .enumerate()
        .map(|(i, e)| relay_entry(e, i).map_err(|m| format!("relay {}: {m}", i + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some((i, e)) = duplicate_relay(relays.iter()) {
        return Err(format!("relay {}: {e}", i + 1));
    }
    Ok(relays)
}

/// `text` as a YAML double-quoted string, for the one-line forms that
/// `herald config` shows and `--set` reads back.
fn yaml_quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The relays in the one-line form [`relays_from_text`] reads back.
fn show_relays(relays: &[RelaySetting]) -> Option<String> {
    if relays.is_empty() {
        return None;
    }
    let items: Vec<String> = relays
        .iter()
        .map(|r| {
            let mut parts = vec![
                format!("name: {}", yaml_quoted(&r.name)),
                format!("url: \"{}\"", r.url),
            ];
            if let Some(u) = &r.user {
                parts.push(format!("user: {}", yaml_quoted(u)));
            }
            if let Some(rate) = r.rate {
                parts.push(format!("rate: {rate}"));
            }
            if let Some(c) = r.connections {
                parts.push(format!("connections: {c}"));
            }
            if let Some(m) = r.max_per_day {
                parts.push(format!("max_per_day: {m}"));
            }
            if r.weight != 1 {
                parts.push(format!("weight: {}", r.weight));
            }
            if r.day_zone_name != "UTC" {
                parts.push(format!("timezone: \"{}\"", r.day_zone_name));
            }
            format!("{{{}}}", parts.join(", "))
        })
        .collect();
    Some(format!("[{}]", items.join(", ")))
}

/// One entry of `domain_limits:`: a limit on the messages to a group of
/// recipient domains, across all relays (big mailbox providers slow down
/// senders who push too fast at their domains).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainLimit {
    /// For messages and `herald status`; default: the first domain.
    pub name: String,
    /// Lower-case, as written (exact match on the recipient's domain; a subdomain is not included).
    /// A leading `@` (`@gmail.com`) is taken off without a word; a domain
    /// written twice in one entry is kept once.
    pub domains: Vec<String>,
    /// At most this many messages per window to these domains, whichever
    /// relay carries them.
    pub rate: Option<Rate>,
    /// At most this many messages to these domains in flight at once,
    /// whichever relay carries them.
    pub connections: Option<usize>,
}

/// The keys a `domain_limits` entry may have.
const DOMAIN_LIMIT_KEYS: &[&str] = &["name", "domains", "rate", "connections"];

const DOMAIN_LIMITS_HOW: &str = "write the domain limits as a list, like [{name: microsoft, domains: [outlook.com, hotmail.com], rate: 10/s}]";

/// One recipient domain of a domain limit, lower-cased.
fn limit_domain(v: &str) -> Result<String, String> {
    let v = v.trim();
    let d = v.strip_prefix('@').unwrap_or(v).to_ascii_lowercase();
    if d.is_empty() {
        return Err("a domain is empty; write them like [outlook.com, hotmail.com]".into());
    }
    if d.contains('@') {
        return Err(format!(
            "`{}` is an address; write only the part after @, like gmail.com",
            v.escape_debug()
        ));
    }
    if d.contains('*') {
        return Err(format!(
            "`{}`: write each domain in full, like gmail.com (a subdomain is not included by \
             its parent; list it as well)",
            v.escape_debug()
        ));
    }
    if d.contains([',', ' ', '\t']) {
        return Err(format!(
            "`{}` is several domains or has a space; write several domains in brackets, like \
             [outlook.com, hotmail.com]",
            v.escape_debug()
        ));
    }
    let labels_ok = d.split('.').all(|l| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    });
    // The last part is never all digits: an IP address is not a mailbox
    // provider's domain.
    let top_ok = d
        .rsplit('.')
        .next()
        .is_some_and(|t| t.chars().any(|c| c.is_ascii_alphabetic()));
    if !d.contains('.') || !labels_ok || !top_ok {
        return Err(format!(
            "`{}` is not a domain; write the part after @ of the addresses, like gmail.com or \
             outlook.com (letters, digits, `-` and dots; no https://)",
            v.escape_debug()
        ));
    }
    Ok(d)
}

/// One entry of `domain_limits:`.
fn domain_limit_entry(v: &yaml_serde::Value) -> Result<DomainLimit, String> {
    let yaml_serde::Value::Mapping(map) = v else {
        return Err(
            "each domain limit is a map, like `- domains: [outlook.com, hotmail.com]` with \
             `rate: 10/s` below it"
                .into(),
        );
    };
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    let mut domains: Option<Vec<String>> = None;
    for (k, v) in map {
        let key = scalar(k);
        if !DOMAIN_LIMIT_KEYS.contains(&key.as_str()) {
            let hint = if key == "domain" {
                " (`domains`, with an s, even for one)"
            } else {
                ""
            };
            return Err(format!(
                "a domain limit has no `{key}`; it takes {}{hint}",
                DOMAIN_LIMIT_KEYS.join(", ")
            ));
        }
        if key == "domains" {
            let list = match v {
                yaml_serde::Value::Sequence(list) => list.clone(),
                yaml_serde::Value::Mapping(_) => {
                    return Err(
                        "`domains` is a list, like `domains: [outlook.com, hotmail.com]`".into(),
                    );
                }
                yaml_serde::Value::Null => Vec::new(),
                one => vec![one.clone()],
            };
            let mut out: Vec<String> = Vec::new();
            for d in &list {
                if matches!(
                    d,
                    yaml_serde::Value::Mapping(_) | yaml_serde::Value::Sequence(_)
                ) {
                    return Err(
                        "`domains` is a list of domains, like `domains: [outlook.com, hotmail.com]`"
                            .into(),
                    );
                }
                let d = limit_domain(&scalar(d)).map_err(|e| format!("`domains`: {e}"))?;
                if !out.contains(&d) {
                    out.push(d);
                }
            }
            domains = Some(out);
            continue;
        }
        if matches!(
            v,
            yaml_serde::Value::Mapping(_) | yaml_serde::Value::Sequence(_)
        ) {
            return Err(format!("`{key}` must be a single value"));
        }
        fields.insert(key, scalar(v));
    }
    let domains = match domains {
        None => {
            return Err("it has no `domains`; write the domains it limits, like \
                 `domains: [outlook.com, hotmail.com]` or `domains: gmail.com`"
                .into());
        }
        Some(d) if d.is_empty() => {
            return Err("`domains` is empty; write the domains it limits, like \
                 `domains: [outlook.com, hotmail.com]`"
                .into());
        }
        Some(d) => d,
    };
    let name = match fields.get("name") {
        Some(n) => {
            let n = one_line(n)?;
            if !n.chars().any(|c| c.is_ascii_alphanumeric()) {
                return Err(format!(
                    "the name `{n}` needs a letter or digit, like `name: microsoft`"
                ));
            }
            n
        }
        None => domains[0].clone(),
    };
    let rate = fields
        .get("rate")
        .map(|r| Rate::parse(r))
        .transpose()
        .map_err(|e| format!("`rate`: {e}"))?;
    let connections = fields
        .get("connections")
        .map(|c| number::<usize>(c).and_then(at_least_one))
        .transpose()
        .map_err(|e| format!("`connections`: {e}"))?;
    if rate.is_none() && connections.is_none() {
        return Err(format!(
            "it limits nothing; give `{name}` a `rate:` (like 10/s), `connections:` (like 2), or both"
        ));
    }
    Ok(DomainLimit {
        name,
        domains,
        rate,
        connections,
    })
}

/// Entries that clash with an earlier one (a domain in two entries, two
/// entries with one name): the index of the later one and what to do, one
/// problem per entry (a shared first domain also makes a shared default
/// name; saying so twice would be noise). Each entry comes with its index
/// in the list (from 0; entries that could not be read are left out), and
/// is numbered from 1 in the messages.
fn domain_limit_clashes<'a>(
    limits: impl Iterator<Item = (usize, &'a DomainLimit)>,
) -> Vec<(usize, String)> {
    let mut seen: Vec<(usize, &DomainLimit)> = Vec::new();
    let mut out = Vec::new();
    for (i, l) in limits {
        let shared_domain = l.domains.iter().find_map(|d| {
            let (j, other) = seen.iter().find(|(_, o)| o.domains.contains(d))?;
            Some(format!(
                "`{d}` is in this entry (`{}`) and in entry {} (`{}`); a domain can be in \
                 one entry only, so remove it from one of them",
                l.name,
                j + 1,
                other.name
            ))
        });
        let shared_name = || {
            let (j, _) = seen
                .iter()
                .find(|(_, o)| o.name.eq_ignore_ascii_case(&l.name))?;
            Some(format!(
                "the name `{}` is taken by entry {}; give each entry its own `name:`{}",
                l.name,
                j + 1,
                if l.name == l.domains[0] {
                    " (without one, an entry is named after its first domain)"
                } else {
                    ""
                }
            ))
        };
        if let Some(problem) = shared_domain.or_else(shared_name) {
            out.push((i, problem));
        }
        seen.push((i, l));
    }
    out
}

/// `domain_limits` from text (HERALD_DOMAIN_LIMITS, `--set domain_limits=...`):
/// the same list in YAML's one-line form,
/// `[{name: microsoft, domains: [outlook.com, hotmail.com], rate: 10/s, connections: 2}]`.
fn domain_limits_from_text(v: &str) -> Result<Vec<DomainLimit>, String> {
    let value: yaml_serde::Value =
        yaml_serde::from_str(v).map_err(|_| DOMAIN_LIMITS_HOW.to_string())?;
    let yaml_serde::Value::Sequence(list) = value else {
        return Err(DOMAIN_LIMITS_HOW.into());
    };
    let limits = list
        .iter()
        .enumerate()
        .map(|(i, e)| domain_limit_entry(e).map_err(|m| format!("domain limit {}: {m}", i + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some((i, e)) = domain_limit_clashes(limits.iter().enumerate())
        .into_iter()
        .next()
    {
        return Err(format!("domain limit {}: {e}", i + 1));
    }
    Ok(limits)
}

/// The domain limits in the one-line form [`domain_limits_from_text`]
/// reads back.
fn show_domain_limits(limits: &[DomainLimit]) -> Option<String> {
    if limits.is_empty() {
        return None;
    }
    let items: Vec<String> = limits
        .iter()
        .map(|l| {
            // The domains need no quotes: letters, digits, `-` and dots,
            // never a number (see `limit_domain`).
            let mut parts = vec![
                format!("name: {}", yaml_quoted(&l.name)),
                format!("domains: [{}]", l.domains.join(", ")),
            ];
            if let Some(rate) = l.rate {
                parts.push(format!("rate: {rate}"));
            }
            if let Some(c) = l.connections {
                parts.push(format!("connections: {c}"));
            }
            format!("{{{}}}", parts.join(", "))
        })
        .collect();
    Some(format!("[{}]", items.join(", ")))
}

/// The lines of the `- ` entries under a top-level `key:` (block style).
fn entry_lines(text: &str, key: &str) -> Vec<usize> {
    let Some(start) = line_of(text, key) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate().skip(start) {
        // The next top-level key ends the list.
        if !l.is_empty() && !l.starts_with([' ', '\t', '-', '#']) {
            break;
        }
        if l.trim_start().starts_with("- ") || l.trim() == "-" {
            out.push(i + 1);
        }
    }
    out
}

fn smtp(v: &str) -> Result<Url, String> {
    let v = v.trim();
    if let Ok(u) = Url::parse(v)
        && (!u.username().is_empty() || u.password().is_some())
    {
        return Err(
            "put the relay's user name in `smtp_user` and the password in HERALD_SMTP_PASSWORD \
             (or HERALD_SMTP_PASSWORD_FILE), not in the address"
                .into(),
        );
    }
    let shown = redact_url(v);
    match Url::parse(v) {
        Ok(u) if matches!(u.scheme(), "smtp" | "smtps") && u.has_host() => Ok(u),
        _ => Err(format!(
            "`{shown}` is not a mail relay address; write it like smtp://mail.example.org:587 or smtps://mail.example.org:465"
        )),
    }
}

/// A PostgreSQL address without a password in it (`database_url`, `--to`).
pub fn database(v: &str) -> Result<Url, String> {
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
        )),
    }
}

/// A bare address whose local part leaves room for `+<token>` (VERP).
fn return_path(v: &str) -> Result<Mailbox, String> {
    let m = mailbox(v)?;
    if m.email.user().contains('+') || m.email.user().len() > 40 {
        return Err(format!(
            "`{v}`: the return path's part before @ must be short (40 characters at most) and \
             have no +, because herald adds +<token> to it for each recipient"
        ));
    }
    Ok(m)
}

fn mailbox(v: &str) -> Result<Mailbox, String> {
    let v = one_line(v)?;
    v.parse().map_err(|_| {
        format!(
            "`{v}` is not an e-mail address; write it like \"OpenInfra Foundation <news@openinfra.org>\" (in quotes)"
        )
    })
}

fn colour(v: &str) -> Result<String, String> {
    let v = v.trim();
    let hex = v.strip_prefix('#').unwrap_or("");
    if hex.len() != 6 || !hex.chars().all(|ch| ch.is_ascii_hexdigit()) {
        return Err(format!(
            "`{v}` must be a colour like \"#c8102e\" (in quotes)"
        ));
    }
    Ok(v.to_string())
}

/// A relative path is taken from `base`: the config file's folder for a
/// value from the file (cron starts herald anywhere), the current folder
/// (an empty `base`) for one from the environment or a flag.
fn path(v: &str, base: &Path) -> Result<PathBuf, String> {
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

fn number<T: std::str::FromStr>(v: &str) -> Result<T, String> {
    let v = v.trim();
    v.replace('_', "")
        .parse()
        .map_err(|_| format!("`{v}` is not a whole number"))
}

fn at_least_one<T: PartialOrd + From<u8>>(n: T) -> Result<T, String> {
    if n < T::from(1) {
        return Err("must be at least 1".into());
    }
    Ok(n)
}

fn at_least_a_second(d: Duration) -> Result<Duration, String> {
    if d < Duration::from_secs(1) {
        return Err("must be at least 1s".into());
    }
    Ok(d)
}

fn boolean(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(format!("`{}` is not true or false", v.trim())),
    }
}

fn show<T: fmt::Display>(v: &T) -> Option<String> {
    Some(v.to_string())
}

fn show_opt<T: fmt::Display>(v: &Option<T>) -> Option<String> {
    v.as_ref().map(|v| v.to_string())
}

fn show_path(v: &Option<PathBuf>) -> Option<String> {
    v.as_ref().map(|p| p.display().to_string())
}

fn show_duration(d: &Duration) -> Option<String> {
    Some(format_duration(*d))
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

fn show_size(n: usize) -> String {
    match n {
        0 => "0".into(),
        n if n.is_multiple_of(1024 * 1024) => format!("{}MB", n / (1024 * 1024)),
        n if n.is_multiple_of(1024) => format!("{}KB", n / 1024),
        n => n.to_string(),
    }
}

/// One effective setting, for `herald config`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Entry {
    pub name: &'static str,
    /// `None` when not set.
    pub value: Option<String>,
    pub source: String,
    /// The environment variable that overrides it.
    pub env: String,
}

/// Problems found while loading, each with where its value came from.
#[derive(Default)]
struct Problems(Vec<(Source, String)>);

impl Problems {
    fn push(&mut self, source: Source, message: String) {
        self.0.push((source, message));
    }

    /// One error listing every problem, so a single run shows all there is
    /// to fix. One problem names its own source as the error's place.
    fn into_error(self, file: Option<&Path>) -> Option<InputError> {
        match self.0.len() {
            0 => None,
            1 => {
                let (source, message) = self.0.into_iter().next()?;
                Some(source.error(format!(
                    "{message}. See herald.example.yaml for every setting and how to write it."
                )))
            }
            n => {
                let list: Vec<String> = self
                    .0
                    .iter()
                    .map(|(s, m)| format!("  - {s}: {m}"))
                    .collect();
                Some(InputError::new(
                    file.unwrap_or(Path::new("settings")),
                    None,
                    format!(
                        "{n} settings are wrong:\n{}\nSee herald.example.yaml for every setting and how to write it.",
                        list.join("\n")
                    ),
                ))
            }
        }
    }
}

impl Config {
    /// Loads the settings: the file `explicit` if given (it must exist),
    /// else `herald.yaml` in the current directory if there is one; then the
    /// `HERALD_*` variables; then `overrides` from the command line. Every
    /// value is checked, and all problems are reported in one error.
    pub fn load(explicit: Option<&Path>, overrides: &[Override]) -> Result<Config, InputError> {
        Self::load_with(explicit, |k| std::env::var(k).ok(), overrides)
    }

    /// [`Config::load`] with the environment given as a function (for tests).
    pub fn load_with(
        explicit: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
        overrides: &[Override],
    ) -> Result<Config, InputError> {
        let path = match explicit {
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from(DEFAULT_FILE)).filter(|p| p.is_file()),
        };
        let mut config = Config::default();
        let mut problems = Problems::default();
        if let Some(p) = &path {
            let cannot = |e: &dyn fmt::Display| {
                InputError::new(
                    p,
                    None,
                    format!("cannot read the config file ({e}). Check the path given to --config."),
                )
            };
            // One byte over the cap is enough for check_yaml to refuse it:
            // `--config /dev/zero` must not fill the memory.
            let bytes = crate::limits::read_at_most(p, crate::limits::MAX_CONFIG_BYTES as u64 + 1)
                .map_err(|e| cannot(&e))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| cannot(&"it is not UTF-8 text; save it as UTF-8"))?;
            config.apply_file(p, &text, &mut problems)?;
        }
        for s in SETTINGS {
            let var = env_name(s.name);
            if let Some(v) = env(&var).filter(|v| !v.trim().is_empty()) {
                config.apply(s, &v, Path::new(""), Source::Env(var), &mut problems);
            }
        }
        for o in overrides {
            match SETTINGS.iter().find(|s| s.name == o.name) {
                Some(s) => config.apply(
                    s,
                    &o.value,
                    Path::new(""),
                    Source::Flag(o.flag.clone()),
                    &mut problems,
                ),
                None => problems.push(
                    Source::Flag(o.flag.clone()),
                    format!(
                        "there is no setting `{}`{}; `herald config` lists them",
                        o.name,
                        did_you_mean(&o.name)
                    ),
                ),
            }
        }
        config.cross_check(&mut problems);
        match problems.into_error(config.file.as_deref()) {
            Some(e) => Err(e),
            None => Ok(config),
        }
    }

    /// The settings of one config file's text alone (no environment, no
    /// flags), as read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Config, InputError> {
        let mut config = Config::default();
        let mut problems = Problems::default();
        config.apply_file(path, text, &mut problems)?;
        config.cross_check(&mut problems);
        match problems.into_error(Some(path)) {
            Some(e) => Err(e),
            None => Ok(config),
        }
    }

    /// Reads the file's settings into `self`. YAML that cannot be read at
    /// all is an error at once; a bad value is one more problem.
    fn apply_file(
        &mut self,
        path: &Path,
        text: &str,
        problems: &mut Problems,
    ) -> Result<(), InputError> {
        self.file = Some(path.to_path_buf());
        if text.trim().is_empty() {
            return Ok(());
        }
        // Bounds before yaml_serde sees it (crate::limits).
        crate::limits::check_control(path, text, 1)?;
        crate::limits::check_yaml(
            path,
            text,
            1,
            "config file",
            crate::limits::MAX_CONFIG_BYTES,
        )?;
        let raw: BTreeMap<String, yaml_serde::Value> = yaml_serde::from_str(text).map_err(|e| {
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
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        for (key, value) in raw {
            let source = Source::File {
                path: path.to_path_buf(),
                line: line_of(text, &key),
            };
            if key == "relays"
                && let yaml_serde::Value::Sequence(list) = &value
            {
                // Parsed here rather than through the text form so that a
                // bad entry is reported at its own line.
                self.apply_relays_file(path, text, list, source, problems);
                continue;
            }
            if key == "domain_limits"
                && let yaml_serde::Value::Sequence(list) = &value
            {
                // Like `relays`: each entry's problems at its own line.
                self.apply_domain_limits_file(path, text, list, source, problems);
                continue;
            }
            let Some(s) = SETTINGS.iter().find(|s| s.name == key) else {
                problems.push(
                    source,
                    format!("there is no setting `{key}`{}", did_you_mean(&key)),
                );
                continue;
            };
            let text = match value {
                yaml_serde::Value::Null => continue,
                yaml_serde::Value::Bool(b) => b.to_string(),
                yaml_serde::Value::Number(n) => n.to_string(),
                yaml_serde::Value::String(s) => s,
                // `utm:` is a map in the file and `source=...&medium=...`
                // in HERALD_UTM; both reach the one parser as the latter.
                yaml_serde::Value::Mapping(m) if key == "utm" => m
                    .into_iter()
                    .map(|(k, v)| format!("{}={}", scalar(&k), scalar(&v)))
                    .collect::<Vec<_>>()
                    .join("&"),
                yaml_serde::Value::Sequence(list) if key == "utm_domains" => {
                    list.iter().map(scalar).collect::<Vec<_>>().join(",")
                }
                _ => {
                    problems.push(
                        source,
                        format!("`{key}` must be a single value, not a list or a map"),
                    );
                    continue;
                }
            };
            self.apply(s, &text, base, source, problems);
        }
        Ok(())
    }

    /// `relays:` in the file: each entry checked on its own, its problems
    /// reported at its `- ` line.
    fn apply_relays_file(
        &mut self,
        path: &Path,
        text: &str,
        list: &[yaml_serde::Value],
        source: Source,
        problems: &mut Problems,
    ) {
        let lines = entry_lines(text, "relays");
        let mut relays = Vec::new();
        let mut ok = true;
        for (i, entry) in list.iter().enumerate() {
            let at = Source::File {
                path: path.to_path_buf(),
                line: lines.get(i).copied().or(match &source {
                    Source::File { line, .. } => *line,
                    _ => None,
                }),
            };
            match relay_entry(entry, i) {
                Ok(r) => relays.push((r, at, i)),
                Err(e) => {
                    ok = false;
                    problems.push(at, format!("`relays` entry {}: {e}", i + 1));
                }
            }
        }
        if let Some((i, e)) = duplicate_relay(relays.iter().map(|(r, _, _)| r)) {
            ok = false;
            // `i` counts the entries that could be read; the message
            // numbers the entry in the file.
            problems.push(
                relays[i].1.clone(),
                format!("`relays` entry {}: {e}", relays[i].2 + 1),
            );
        }
        if ok {
            self.relays = relays.into_iter().map(|(r, _, _)| r).collect();
            self.sources.insert("relays", source);
        }
    }

    /// `domain_limits:` in the file: each entry checked on its own, its
    /// problems reported at its `- ` line.
    fn apply_domain_limits_file(
        &mut self,
        path: &Path,
        text: &str,
        list: &[yaml_serde::Value],
        source: Source,
        problems: &mut Problems,
    ) {
        let lines = entry_lines(text, "domain_limits");
        let mut limits = Vec::new();
        let mut ok = true;
        for (i, entry) in list.iter().enumerate() {
            let at = Source::File {
                path: path.to_path_buf(),
                line: lines.get(i).copied().or(match &source {
                    Source::File { line, .. } => *line,
                    _ => None,
                }),
            };
            match domain_limit_entry(entry) {
                Ok(l) => limits.push((i, l, at)),
                Err(e) => {
                    ok = false;
                    problems.push(at, format!("`domain_limits` entry {}: {e}", i + 1));
                }
            }
        }
        for (i, e) in domain_limit_clashes(limits.iter().map(|(i, l, _)| (*i, l))) {
            ok = false;
            let at = limits.iter().find(|(j, _, _)| *j == i).map(|(_, _, at)| at);
            problems.push(
                at.cloned().unwrap_or_else(|| source.clone()),
                format!("`domain_limits` entry {}: {e}", i + 1),
            );
        }
        if ok {
            self.domain_limits = limits.into_iter().map(|(_, l, _)| l).collect();
            self.sources.insert("domain_limits", source);
        }
    }

    /// The index in `domain_limits` of the entry that limits mail to
    /// `domain` (the part after @ of a recipient's address; any case), if
    /// any. An exact match: `mail.example.org` is not in `example.org`'s entry.
    pub fn domain_limit_of(&self, domain: &str) -> Option<usize> {
        let domain = domain.trim().trim_end_matches('.');
        self.domain_limits
            .iter()
            .position(|l| l.domains.iter().any(|d| d.eq_ignore_ascii_case(domain)))
    }

    /// The relays a send uses: `relays:` when given, else the single relay
    /// of `smtp_url`, `smtp_user`, `rate` and `connections` as a list of
    /// one (its password from HERALD_SMTP_PASSWORD, as always). Empty when
    /// neither is set.
    pub fn relay_list(&self) -> Vec<RelaySetting> {
        if !self.relays.is_empty() {
            return self
                .relays
                .iter()
                .cloned()
                .map(|mut r| {
                    // A relay without its own `connections` takes the
                    // general setting, so `--connections` still means something.
                    r.connections.get_or_insert(self.connections);
                    r
                })
                .collect();
        }
        let Some(url) = &self.smtp_url else {
            return Vec::new();
        };
        vec![RelaySetting {
            name: SINGLE_RELAY_NAME.into(),
            url: url.clone(),
            user: self.smtp_user.clone(),
            rate: self.rate,
            connections: Some(self.connections),
            max_per_day: None,
            weight: 1,
            day_zone: jiff::tz::TimeZone::UTC,
            day_zone_name: "UTC".into(),
            password_env: "HERALD_SMTP_PASSWORD".into(),
            setting: "smtp_url",
        }]
    }

    fn apply(
        &mut self,
        setting: &Setting,
        value: &str,
        base: &Path,
        source: Source,
        problems: &mut Problems,
    ) {
        match (setting.set)(self, value, base) {
            Ok(()) => {
                self.sources.insert(setting.name, source);
            }
            Err(e) => {
                let message = match source {
                    Source::File { .. } => format!("`{}`: {e}", setting.name),
                    _ => e,
                };
                problems.push(source, message);
            }
        }
    }

    /// Checks that span several settings.
    fn cross_check(&self, problems: &mut Problems) {
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

    /// The DKIM keys to sign with (none, one or two), each with the names
    /// of its settings; [`Config::load`] made sure they are complete.
    pub fn dkim_keys(&self) -> Vec<DkimKey> {
        let mut keys = Vec::new();
        if self.dkim_domain.is_none() {
            return keys;
        }
        let slots = [
            (
                &self.dkim_selector,
                &self.dkim_key_file,
                self.dkim_algorithm,
                ["dkim_selector", "dkim_key_file", "dkim_algorithm"],
            ),
            (
                &self.dkim_selector_2,
                &self.dkim_key_file_2,
                self.dkim_algorithm_2,
                ["dkim_selector_2", "dkim_key_file_2", "dkim_algorithm_2"],
            ),
        ];
        for (selector, file, algorithm, [s, k, a]) in slots {
            if let (Some(selector), Some(file)) = (selector, file) {
                keys.push(DkimKey {
                    selector: selector.clone(),
                    key_file: file.clone(),
                    algorithm,
                    selector_setting: s,
                    key_file_setting: k,
                    algorithm_setting: a,
                });
            }
        }
        keys
    }

    /// Where a setting's value came from.
    pub fn source(&self, name: &str) -> Source {
        self.sources.get(name).cloned().unwrap_or(Source::Default)
    }

    /// Sets one setting from the command line (as `--set NAME=VALUE` does).
    pub fn set(&mut self, name: &str, value: &str, flag: &str) -> Result<(), InputError> {
        let mut problems = Problems::default();
        match SETTINGS.iter().find(|s| s.name == name) {
            Some(s) => self.apply(
                s,
                value,
                Path::new(""),
                Source::Flag(flag.into()),
                &mut problems,
            ),
            None => problems.push(
                Source::Flag(flag.into()),
                format!("there is no setting `{name}`{}", did_you_mean(name)),
            ),
        }
        match problems.into_error(None) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Every setting with its effective value and where it came from.
    pub fn entries(&self) -> Vec<Entry> {
        SETTINGS
            .iter()
            .map(|s| Entry {
                name: s.name,
                value: (s.show)(self),
                source: self.source(s.name).to_string(),
                env: env_name(s.name),
            })
            .collect()
    }
}

/// A YAML scalar as text (a map or list inside is shown as-is, and then
/// refused by the setting's parser).
fn scalar(v: &yaml_serde::Value) -> String {
    match v {
        yaml_serde::Value::String(s) => s.clone(),
        yaml_serde::Value::Bool(b) => b.to_string(),
        yaml_serde::Value::Number(n) => n.to_string(),
        yaml_serde::Value::Null => String::new(),
        other => format!("{other:?}"),
    }
}

/// The line of a top-level `key:` in the YAML text.
fn line_of(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let l = l.strip_prefix(['"', '\'']).unwrap_or(l);
            l.strip_prefix(key)
                .map(|rest| rest.trim_start_matches(['"', '\'']).trim_start())
                .is_some_and(|rest| rest.starts_with(':'))
        })
        .map(|i| i + 1)
}

/// `; did you mean `postal_address`?` for a near miss.
fn did_you_mean(name: &str) -> String {
    let best = SETTINGS
        .iter()
        .map(|s| (edit_distance(name, s.name), s.name))
        .min();
    match best {
        Some((d, s)) if d <= 3 => format!("; did you mean `{s}`?"),
        _ => String::new(),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

// ---------------------------------------------------------------------------
// Secrets

/// Secrets herald reads, each from `NAME` or a file named by `NAME_FILE`:
/// (variable, what it is for).
pub const SECRETS: &[(&str, &str)] = &[
    ("HERALD_SMTP_PASSWORD", "the relay's password"),
    (
        "HERALD_DATABASE_PASSWORD",
        "the PostgreSQL password (with `database_url`)",
    ),
    ("HERALD_UNSUBSCRIBE_SECRET", "signs the unsubscribe links"),
    (
        "HERALD_IMAP_PASSWORD",
        "the password of `herald bounces --imap`",
    ),
    (
        "HERALD_UNSUBSCRIBE_OLD_SECRETS",
        "earlier unsubscribe secrets, separated by spaces: links in mail already sent keep working",
    ),
];

/// A secret value. It prints as `(set)` however it is formatted, so it
/// cannot end up in a message or a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The secret as text (a password); `None` if it is not UTF-8.
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(set)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(set)")
    }
}

/// The secret in the environment variable `name`, else in the file named by
/// `name_FILE`, without surrounding white space; `None` when neither is set.
/// Secrets never come from flags or herald.yaml, which end up in shell
/// histories, process lists and repositories.
pub fn secret(name: &str) -> Result<Option<Secret>, InputError> {
    secret_with(name, |k| std::env::var_os(k))
}

fn secret_with(
    name: &str,
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<Option<Secret>, InputError> {
    if let Some(v) = env(name) {
        let v = v.into_encoded_bytes();
        if !v.trim_ascii().is_empty() {
            return Ok(Some(Secret(v.trim_ascii().to_vec())));
        }
    }
    let file_var = format!("{name}_FILE");
    if let Some(f) = env(&file_var).filter(|f| !f.is_empty()) {
        let path = PathBuf::from(f);
        let bytes = crate::limits::read_key_file(&path, &format!("secret ({file_var})"))?;
        let s = bytes.trim_ascii();
        if s.is_empty() {
            return Err(InputError::new(
                &path,
                None,
                format!("the file is empty; it should hold the secret ({file_var})"),
            ));
        }
        return Ok(Some(Secret(s.to_vec())));
    }
    Ok(None)
}

/// Which variable holds the secret `name` (`name` or `name_FILE`), without
/// reading it: what `herald config` shows.
pub fn secret_source(name: &str) -> Option<String> {
    let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    let file_var = format!("{name}_FILE");
    if set(name) {
        Some(name.to_string())
    } else if set(&file_var) {
        Some(file_var)
    } else {
        None
    }
}

// ---------------------------------------------------------------------------
// Values

/// A sending rate: at most `max` messages per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub max: u32,
    pub window: Duration,
}

impl Rate {
    /// `14/s`, `600/m`, `10000/h`, `50000/d` (also `/sec`, `/min`, `/hour`, `/day`).
    pub fn parse(s: &str) -> Result<Rate, String> {
        let bad = || format!("`{s}` is not a rate; write it like 14/s, 600/m or 10000/h");
        let (n, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let max: u32 = n.trim().replace('_', "").parse().map_err(|_| bad())?;
        if max == 0 {
            return Err(bad());
        }
        let window = match unit.trim().to_ascii_lowercase().as_str() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86400),
            _ => return Err(bad()),
        };
        Ok(Rate { max, window })
    }

    pub fn per_second(&self) -> f64 {
        self.max as f64 / self.window.as_secs_f64()
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.window.as_secs() {
            1 => "s",
            60 => "m",
            3600 => "h",
            _ => "d",
        };
        write!(f, "{}/{unit}", self.max)
    }
}

/// When sends may run: `Mon-Fri 08:00-18:00 Europe/Berlin`. The days
/// (a range like `Mon-Fri`, a list like `Mon,Wed,Fri`, or none for every
/// day), the hours (start before end, the end not included) and an IANA time
/// zone, so the window follows daylight saving time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendWindow {
    /// Monday is 0.
    days: [bool; 7],
    start: jiff::civil::Time,
    end: jiff::civil::Time,
    zone: jiff::tz::TimeZone,
    /// The zone's name as written, for messages.
    zone_name: String,
    /// The setting as written (normalised), for `herald config`.
    text: String,
}

const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

impl SendWindow {
    pub fn parse(v: &str) -> Result<SendWindow, String> {
        let v = v.trim();
        let how = "write it like `Mon-Fri 08:00-18:00 Europe/Berlin` (days, hours, an IANA time zone; \
                   leave the days out for every day)";
        let parts: Vec<&str> = v.split_whitespace().collect();
        let (days_text, hours, zone_name) = match parts.as_slice() {
            [days, hours, zone] => (Some(*days), *hours, *zone),
            [hours, zone] => (None, *hours, *zone),
            _ => return Err(format!("`{v}` is not a send window; {how}")),
        };
        let mut days = [days_text.is_none(); 7];
        if let Some(text) = days_text {
            for piece in text.split(',') {
                let (a, b) = match piece.split_once('-') {
                    Some((a, b)) => (day(a, v, how)?, day(b, v, how)?),
                    None => {
                        let d = day(piece, v, how)?;
                        (d, d)
                    }
                };
                // `Fri-Mon` wraps over the weekend.
                let mut d = a;
                loop {
                    days[d] = true;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
        }
        let (s, e) = hours
            .split_once('-')
            .ok_or_else(|| format!("`{hours}` in `{v}` is not a range of hours; {how}"))?;
        let time = |t: &str| -> Result<jiff::civil::Time, String> {
            if t == "24:00" {
                return Ok(jiff::civil::Time::MAX);
            }
            t.parse::<jiff::civil::Time>()
                .ok()
                .filter(|_| t.len() == 5)
                .ok_or_else(|| format!("`{t}` in `{v}` is not a time of day like 08:00; {how}"))
        };
        let (start, end) = (time(s)?, time(e)?);
        if start >= end {
            return Err(format!(
                "`{hours}` in `{v}` ends before it starts; a window is one stretch of a day (00:00-24:00 \
                 for the whole day); {how}"
            ));
        }
        let zone = jiff::tz::TimeZone::get(zone_name).map_err(|_| {
            format!(
                "`{zone_name}` in `{v}` is not a time zone herald knows (an IANA name like Europe/Berlin, \
                 America/New_York or UTC); {how}"
            )
        })?;
        let day_text = days_text.map(|d| format!("{d} ")).unwrap_or_default();
        Ok(SendWindow {
            days,
            start,
            end,
            zone,
            zone_name: zone_name.to_string(),
            text: format!("{day_text}{s}-{e} {zone_name}"),
        })
    }

    /// The stretch of the window that `at` is in or that comes next:
    /// (opens, closes). Looks a week ahead; there is always one, since a
    /// window has at least one day and a start before its end.
    pub fn next(&self, at: jiff::Timestamp) -> (jiff::Timestamp, jiff::Timestamp) {
        let today = at.to_zoned(self.zone.clone()).date();
        for n in 0..8 {
            let Ok(date) = today.checked_add(jiff::Span::new().days(n)) else {
                break;
            };
            if !self.days[date.weekday().to_monday_zero_offset() as usize] {
                continue;
            }
            let at_time = |t: jiff::civil::Time| {
                date.to_datetime(t)
                    .to_zoned(self.zone.clone())
                    .map(|z| z.timestamp())
            };
            let (Ok(open), Ok(close)) = (at_time(self.start), at_time(self.end)) else {
                continue;
            };
            if at < close {
                return (open, close);
            }
        }
        // Unreachable for a parsed window; a far future keeps callers simple.
        (jiff::Timestamp::MAX, jiff::Timestamp::MAX)
    }

    /// Whether sends may run at `at`; if so, when this stretch closes.
    pub fn open_until(&self, at: jiff::Timestamp) -> Option<jiff::Timestamp> {
        let (open, close) = self.next(at);
        (open <= at).then_some(close)
    }

    /// A time in the window's zone and in UTC, for messages:
    /// `Mon 2025-06-02 08:00 Europe/Berlin (06:00 UTC)`.
    pub fn describe(&self, t: jiff::Timestamp) -> String {
        let local = t.to_zoned(self.zone.clone());
        let utc = t.to_zoned(jiff::tz::TimeZone::UTC);
        format!(
            "{} {} {} ({} UTC)",
            DAY_NAMES[local.weekday().to_monday_zero_offset() as usize],
            local.strftime("%Y-%m-%d %H:%M"),
            self.zone_name,
            utc.strftime("%Y-%m-%d %H:%M")
        )
    }
}

fn day(t: &str, whole: &str, how: &str) -> Result<usize, String> {
    let t = t.trim();
    let lower = t.to_ascii_lowercase();
    const FULL: [&str; 7] = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    (0..7)
        .find(|&i| lower == DAY_NAMES[i].to_ascii_lowercase() || lower == FULL[i])
        .ok_or_else(|| {
            format!(
                "`{t}` in `{whole}` is not a day; write Mon, Tue, Wed, Thu, Fri, Sat or Sun; {how}"
            )
        })
}

impl fmt::Display for SendWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Campaign tags for links to the newsletter's own sites (`utm_source`,
/// `utm_medium`, `utm_campaign`), so the site's analytics can tell visits
/// from the newsletter. `campaign` may hold `{{ slug }}`, the post's slug.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utm {
    /// (name without `utm_`, value), in the order written.
    pub tags: Vec<(String, String)>,
}

impl Utm {
    /// `source=newsletter&medium=email&campaign={{ slug }}`.
    pub fn parse(v: &str) -> Result<Utm, String> {
        let how = "write it as a map in herald.yaml (utm: then source:, medium:, campaign: indented \
                   below) or as source=newsletter&medium=email&campaign={{ slug }} in HERALD_UTM";
        let mut tags = Vec::new();
        for pair in v.split('&').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, val) = pair
                .split_once('=')
                .ok_or_else(|| format!("`{pair}` has no value; {how}"))?;
            let k = k.trim().trim_start_matches("utm_").to_ascii_lowercase();
            if !matches!(
                k.as_str(),
                "source" | "medium" | "campaign" | "term" | "content"
            ) {
                return Err(format!(
                    "`{k}` is not a campaign tag; use source, medium, campaign (also term, content); {how}"
                ));
            }
            let val = one_line(val)?;
            if val.is_empty() {
                return Err(format!("`{k}` is empty; {how}"));
            }
            let rest = val.replace("{{ slug }}", "").replace("{{slug}}", "");
            if rest.contains("{{") {
                return Err(format!(
                    "`{val}`: only {{{{ slug }}}} can be filled in a campaign tag (every reader's link is the same); {how}"
                ));
            }
            tags.push((k, val));
        }
        if tags.is_empty() {
            return Err(format!("no tags given; {how}"));
        }
        Ok(Utm { tags })
    }
}

impl fmt::Display for Utm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        f.write_str(&parts.join("&"))
    }
}

/// Host names, like `openinfra.org, superuser.openinfra.org`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostList(pub Vec<String>);

impl HostList {
    pub fn parse(v: &str) -> Result<HostList, String> {
        let mut hosts = Vec::new();
        for h in v.split([',', ' ']).map(str::trim).filter(|h| !h.is_empty()) {
            let h = h.to_ascii_lowercase();
            if !h
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
                || !h.contains('.')
            {
                return Err(format!(
                    "`{h}` is not a host name; list hosts like openinfra.org, superuser.openinfra.org \
                     (no https://, no path)"
                ));
            }
            hosts.push(h);
        }
        Ok(HostList(hosts))
    }
}

impl fmt::Display for HostList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(", "))
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

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.yaml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn passwords_in_a_relay_address_never_reach_a_message() {
        for raw in [
            "smtp://user:hunter2@mail.example.org:587",
            "smtp://user:hunter2@[bad",
            "smtps://:hunter2@x/y",
        ] {
            let e = smtp(raw).unwrap_err();
            assert!(!e.contains("hunter2"), "{e}");
        }
        assert_eq!(
            redact_url("postgres://u:p@db:5432/x?sslmode=require"),
            "postgres://***@db:5432/x?sslmode=require"
        );
    }

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
    fn values_are_typed_once_with_defaults() {
        let c = Config::parse(
            Path::new("h.yaml"),
            "site_url: https://openinfra.org\nfrom: \"News <news@example.org>\"\nrate: 600/m\n\
             connections: 8\nfit: true\nretry_wait: 2s\ninline_image_limit: 0\n",
        )
        .unwrap();
        assert_eq!(c.site_url.unwrap().host_str(), Some("openinfra.org"));
        assert_eq!(c.from.unwrap().email.to_string(), "news@example.org");
        assert_eq!(c.rate, Some(Rate::parse("600/m").unwrap()));
        assert_eq!(c.connections, 8);
        assert!(c.fit);
        assert_eq!(c.retry_wait, Duration::from_secs(2));
        assert_eq!(c.inline_image_limit, 0);
        let d = Config::default();
        assert_eq!(
            (d.connections, d.max_attempts, d.retry_wait, d.late_grace),
            (4, 4, Duration::from_secs(1), Duration::from_secs(86400))
        );
        assert_eq!(d.inline_image_limit, 20480);
        assert_eq!(d.source("rate"), Source::Default);
    }

    #[test]
    fn numbers_and_booleans_have_env_overrides() {
        let (_d, path) = file("connections: 2\nfit: false\n");
        let c = Config::load_with(
            Some(&path),
            env(&[("HERALD_CONNECTIONS", "6"), ("HERALD_FIT", "true")]),
            &[],
        )
        .unwrap();
        assert_eq!(c.connections, 6);
        assert!(c.fit);
        assert_eq!(
            c.source("connections"),
            Source::Env("HERALD_CONNECTIONS".into())
        );
        assert_eq!(c.source("fit").to_string(), "HERALD_FIT");
    }

    #[test]
    fn flag_beats_env_beats_file() {
        let (_d, path) = file("site_url: https://a.org\nrate: 1/s\nmax_attempts: 2\n");
        let c = Config::load_with(
            Some(&path),
            env(&[("HERALD_RATE", "2/s"), ("HERALD_MAX_ATTEMPTS", "3")]),
            &[Override::new("rate", "3/s", "--rate")],
        )
        .unwrap();
        assert_eq!(c.rate.unwrap().to_string(), "3/s");
        assert_eq!(c.source("rate").to_string(), "--rate");
        assert_eq!(c.max_attempts, 3);
        assert_eq!(
            c.source("site_url").to_string(),
            format!("{}:1", path.display())
        );
        assert_eq!(c.source("max_attempts").to_string(), "HERALD_MAX_ATTEMPTS");
    }

    #[test]
    fn errors_name_where_the_value_came_from() {
        let (_d, path) = file("site_url: https://a.org\n\nrate: fast\n");
        let e = Config::load_with(Some(&path), env(&[]), &[]).unwrap_err();
        assert_eq!((e.file.as_path(), e.line), (path.as_path(), Some(3)), "{e}");
        assert!(e.message.contains("rate"), "{e}");

        let e = Config::load_with(Some(&path), env(&[("HERALD_RATE", "x")]), &[]).unwrap_err();
        // The file's bad value and the variable's: both listed, each with its place.
        assert!(e.message.contains(":3: `rate`"), "{e}");
        assert!(e.message.contains("HERALD_RATE: `x` is not a rate"), "{e}");

        let e = Config::load_with(None, env(&[]), &[Override::new("rate", "quick", "--rate")])
            .unwrap_err();
        assert_eq!(e.file, Path::new("--rate"));
        assert!(
            e.to_string().starts_with("--rate: `quick` is not a rate"),
            "{e}"
        );
        assert!(!e.to_string().contains("herald.yaml"), "{e}");

        let e = Config::load_with(None, env(&[("HERALD_CONNECTIONS", "0")]), &[]).unwrap_err();
        assert_eq!(e.file, Path::new("HERALD_CONNECTIONS"), "{e}");
    }

    #[test]
    fn a_send_window_knows_when_it_is_open_and_when_it_opens_next() {
        let w = SendWindow::parse("Mon-Fri 08:00-18:00 Europe/Berlin").unwrap();
        let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        // Monday 10:00 in Berlin (summer time, UTC+2): open until 18:00.
        assert_eq!(
            w.open_until(t("2025-06-09T08:00:00Z")),
            Some(t("2025-06-09T16:00:00Z"))
        );
        // 18:00 itself is closed; Friday evening opens on Monday.
        assert_eq!(w.open_until(t("2025-06-09T16:00:00Z")), None);
        assert_eq!(
            w.next(t("2025-06-13T17:00:00Z")).0,
            t("2025-06-16T06:00:00Z")
        );
        // Winter time: 08:00 in Berlin is 07:00 UTC.
        assert_eq!(
            w.next(t("2025-12-06T12:00:00Z")).0,
            t("2025-12-08T07:00:00Z")
        );
        assert_eq!(
            w.describe(t("2025-12-08T07:00:00Z")),
            "Mon 2025-12-08 08:00 Europe/Berlin (2025-12-08 07:00 UTC)"
        );
        // A range over the weekend, a list, every day.
        let w = SendWindow::parse("Fri-Mon 09:00-10:00 UTC").unwrap();
        assert!(w.open_until(t("2025-06-08T09:30:00Z")).is_some()); // Sunday
        assert!(w.open_until(t("2025-06-10T09:30:00Z")).is_none()); // Tuesday
        let w = SendWindow::parse("tue,thu 00:00-24:00 UTC").unwrap();
        assert!(w.open_until(t("2025-06-12T23:59:00Z")).is_some());
        assert!(SendWindow::parse("06:00-07:00 America/New_York").is_ok());
    }

    #[test]
    fn a_bad_send_window_names_the_setting_and_how_to_write_it() {
        for (bad, says) in [
            ("Mon-Fri 08:00-18:00 Europe/Berlyn", "not a time zone"),
            ("Mon-Fry 08:00-18:00 UTC", "`Fry`"),
            ("Mon-Fri 18:00-08:00 UTC", "ends before it starts"),
            ("Mon-Fri 8-18 UTC", "not a time of day"),
            ("weekdays", "not a send window"),
            ("Mön-Fri 08:00-18:00 UTC", "not a day"),
        ] {
            let (_d, path) = file(&format!("send_window: {bad}\n"));
            let e = Config::load_with(Some(&path), env(&[]), &[]).unwrap_err();
            let text = e.to_string();
            assert!(text.contains("send_window"), "{text}");
            assert!(text.contains(":1"), "names the line: {text}");
            assert!(text.contains(says), "{bad}: {text}");
            assert!(text.contains("Mon-Fri 08:00-18:00 Europe/Berlin"), "{text}");
        }
        let e = Config::load_with(None, env(&[("HERALD_SEND_WINDOW", "always")]), &[]).unwrap_err();
        assert!(e.to_string().contains("HERALD_SEND_WINDOW"), "{e}");
    }

    #[test]
    fn bad_values_are_all_listed() {
        let e = Config::parse(
            Path::new("herald.yaml"),
            "site_url: openinfra.org\naccent_color: red\n",
        )
        .unwrap_err();
        assert!(
            e.message.contains("herald.yaml:1: `site_url`")
                && e.message.contains("herald.yaml:2: `accent_color`"),
            "{e}"
        );
    }

    #[test]
    fn a_second_dkim_key_has_settings_and_variables_of_its_own() {
        let (dir, path) = file(
            "dkim_domain: example.org\ndkim_selector: rsa1\ndkim_key_file: rsa.pem\n\
             dkim_algorithm: rsa\ndkim_selector_2: ed1\n",
        );
        let c = Config::load_with(
            Some(&path),
            env(&[
                ("HERALD_DKIM_KEY_FILE_2", "/keys/ed.pem"),
                ("HERALD_DKIM_ALGORITHM_2", "Ed25519"),
            ]),
            &[],
        )
        .unwrap();
        let keys = c.dkim_keys();
        assert_eq!(keys.len(), 2);
        assert_eq!(
            (keys[0].selector.as_str(), keys[0].algorithm),
            ("rsa1", Some(DkimAlgorithm::Rsa))
        );
        assert_eq!(keys[0].key_file, dir.path().join("rsa.pem"));
        assert_eq!(
            (keys[1].selector.as_str(), keys[1].algorithm),
            ("ed1", Some(DkimAlgorithm::Ed25519))
        );
        assert_eq!(keys[1].key_file, Path::new("/keys/ed.pem"));
        assert_eq!(keys[1].key_file_setting, "dkim_key_file_2");
        assert_eq!(
            c.source("dkim_algorithm_2").to_string(),
            "HERALD_DKIM_ALGORITHM_2"
        );

        // Half a second key, an unknown kind, a shared selector: each named.
        let (_d, path) = file(
            "dkim_domain: example.org\ndkim_selector: s1\ndkim_key_file: k.pem\n\
             dkim_algorithm: dsa\ndkim_selector_2: S1\n",
        );
        let e = Config::load_with(Some(&path), env(&[]), &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`dsa` is not a kind of DKIM key; write rsa or ed25519"),
            "{e}"
        );
        assert!(
            e.contains("needs both `dkim_selector_2` and `dkim_key_file_2`"),
            "{e}"
        );
        assert!(e.contains("the same as `dkim_selector`"), "{e}");
        let (_d, path) = file("dkim_selector: \"a; b=x\"\n");
        let e = Config::load_with(Some(&path), env(&[]), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("`a; b=x` is not a DNS name"), "{e}");
        let (_d, path) = file("dkim_selector_2: s2\ndkim_key_file_2: k.pem\n");
        let e = Config::load_with(Some(&path), env(&[]), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("a second DKIM key needs the first"), "{e}");
        assert!(Config::default().dkim_keys().is_empty());
    }

    #[test]
    fn relative_paths_are_taken_from_the_config_files_folder() {
        let (dir, path) = file(
            "assets_dir: website/static\njournal_dir: state\nsmtp_ca_file: /abs/ca.pem\n\
             dkim_domain: example.org\ndkim_selector: s1\ndkim_key_file: keys/dkim.pem\n",
        );
        let c = Config::load_with(Some(&path), env(&[]), &[]).unwrap();
        assert_eq!(c.assets_dir.unwrap(), dir.path().join("website/static"));
        assert_eq!(c.journal_dir, dir.path().join("state"));
        assert_eq!(c.dkim_key_file.unwrap(), dir.path().join("keys/dkim.pem"));
        assert_eq!(c.smtp_ca_file.unwrap(), Path::new("/abs/ca.pem"));
        // From the environment or a flag: as given, so from the current folder.
        let c = Config::load_with(
            Some(&path),
            env(&[("HERALD_ASSETS_DIR", "static")]),
            &[Override::new("journal_dir", "j", "--journal")],
        )
        .unwrap();
        assert_eq!(c.assets_dir.unwrap(), Path::new("static"));
        assert_eq!(c.journal_dir, Path::new("j"));
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
    fn set_names_unknown_settings() {
        let e = Config::load_with(None, env(&[]), &[Override::from_set("rat=1/s").unwrap()])
            .unwrap_err();
        assert!(e.to_string().starts_with("--set rat:"), "{e}");
        assert!(e.message.contains("did you mean `rate`"), "{e}");
        assert!(Override::from_set("rate").is_err());
    }

    #[test]
    fn secrets_print_as_set() {
        let s = secret_with("X", |k| (k == "X").then(|| " hunter2\n".into()))
            .unwrap()
            .unwrap();
        assert_eq!(s.expose(), b"hunter2");
        assert_eq!(format!("{s} {s:?}"), "(set) (set)");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("secret");
        std::fs::write(&f, "from-file\n").unwrap();
        let s = secret_with("X", |k| (k == "X_FILE").then(|| f.clone().into_os_string()))
            .unwrap()
            .unwrap();
        assert_eq!(s.expose_str(), Some("from-file"));
        assert!(secret_with("X", |_| None).unwrap().is_none());
    }

    #[test]
    fn several_relays_each_with_its_own_settings() {
        let (_d, path) = file(
            "from: News <news@example.org>\n\
             relays:\n  - name: main\n    url: smtp://mail.example.org:587\n    user: news\n    \
             rate: 10/s\n    connections: 2\n    max_per_day: 5000\n    weight: 3\n    \
             timezone: america/los_angeles\n  \
             - url: smtps://backup.example.net\nconnections: 6\n",
        );
        let c = Config::load_with(Some(&path), env(&[]), &[]).unwrap();
        let list = c.relay_list();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].name, "main");
        assert_eq!(list[0].user.as_deref(), Some("news"));
        assert_eq!(list[0].rate, Some(Rate::parse("10/s").unwrap()));
        assert_eq!(list[0].connections, Some(2));
        assert_eq!(list[0].max_per_day, Some(5000));
        assert_eq!(list[0].weight, 3);
        // The zone's own spelling, whatever the case written.
        assert_eq!(list[0].day_zone_name, "America/Los_Angeles");
        assert_eq!(
            list[0].day_zone,
            jiff::tz::TimeZone::get("America/Los_Angeles").unwrap()
        );
        assert_eq!(list[0].password_env, "HERALD_RELAY_MAIN_PASSWORD");
        // No name: host:port; no connections: the general setting; no rate:
        // none (the general `rate` is the single relay's, refused beside `relays`).
        assert_eq!(list[1].name, "backup.example.net:465");
        assert_eq!(
            list[1].password_env,
            "HERALD_RELAY_BACKUP_EXAMPLE_NET_465_PASSWORD"
        );
        assert_eq!((list[1].connections, list[1].rate), (Some(6), None));
        // No weight: 1; no timezone: UTC.
        assert_eq!(list[1].weight, 1);
        assert_eq!(
            (&list[1].day_zone, list[1].day_zone_name.as_str()),
            (&jiff::tz::TimeZone::UTC, "UTC")
        );
        assert_eq!(
            c.source("relays").to_string(),
            format!("{}:2", path.display())
        );
        // What `herald config` shows reads back as the same list.
        let shown = c
            .entries()
            .into_iter()
            .find(|e| e.name == "relays")
            .unwrap();
        let shown = shown.value.unwrap();
        assert!(
            shown.contains("weight: 3, timezone: \"America/Los_Angeles\"}"),
            "{shown}"
        );
        // The defaults are not shown.
        assert_eq!(shown.matches("weight").count(), 1, "{shown}");
        assert_eq!(shown.matches("timezone").count(), 1, "{shown}");
        let mut d = Config::default();
        d.set("relays", &shown, "--set relays").unwrap();
        assert_eq!(d.relays, c.relays);
        // `timezone: UTC` (any case) is the default, and shown as such.
        let mut d = Config::default();
        d.set(
            "relays",
            "[{url: \"smtp://a.example.org\", timezone: utc, max_per_day: 10}]",
            "--set relays",
        )
        .unwrap();
        assert_eq!(d.relays[0].day_zone, jiff::tz::TimeZone::UTC);
        assert_eq!(d.relays[0].day_zone_name, "UTC");
    }

    #[test]
    fn the_single_relay_is_a_list_of_one() {
        let c = Config::load_with(
            None,
            env(&[
                ("HERALD_SMTP_URL", "smtp://mail.example.org:2525"),
                ("HERALD_RATE", "5/s"),
            ]),
            &[Override::new("connections", "3", "--connections")],
        )
        .unwrap();
        let list = c.relay_list();
        assert_eq!(list.len(), 1);
        // Not its host:port: the name lands in the journal, where an IP
        // address would be noise in a privacy review.
        assert_eq!(list[0].name, SINGLE_RELAY_NAME);
        assert_eq!(list[0].name, "relay");
        assert_eq!(list[0].weight, 1);
        assert_eq!(list[0].day_zone, jiff::tz::TimeZone::UTC);
        assert_eq!(list[0].day_zone_name, "UTC");
        assert_eq!(list[0].max_per_day, None);
        assert_eq!(list[0].password_env, "HERALD_SMTP_PASSWORD");
        assert_eq!(list[0].rate, Some(Rate::parse("5/s").unwrap()));
        assert_eq!(list[0].connections, Some(3));
        assert!(Config::default().relay_list().is_empty());
    }

    #[test]
    fn bad_relay_entries_are_named_at_their_line() {
        let cases = [
            // (entries, the line of the bad one, words the message must hold)
            (
                "  - url: smtp://a.example.org\n  - rate: 5/s\n",
                3,
                "no `url`",
            ),
            (
                "  - url: smtp://a.example.org\n    password: hunter2\n",
                2,
                "never goes in herald.yaml",
            ),
            (
                "  - url: smtp://a.example.org\n    rate: fast\n",
                2,
                "`rate`",
            ),
            (
                "  - url: smtp://a.example.org\n    speed: 5/s\n",
                2,
                "has no `speed`",
            ),
            (
                "  - url: http://a.example.org\n",
                2,
                "not a mail relay address",
            ),
            (
                "  - url: smtp://a.example.org\n  - url: smtp://b.example.org\n    name: a.example.org:587\n",
                3,
                "give each relay its own `name:`",
            ),
            (
                "  - url: smtp://a.example.org\n    weight: 0\n",
                2,
                "`weight`: must be at least 1 (to send nothing through a relay, remove it",
            ),
            (
                "  - url: smtp://a.example.org\n    weight: half\n",
                2,
                "`weight`: `half` is not a whole number",
            ),
            (
                "  - url: smtp://a.example.org\n  - url: smtp://b.example.org\n    timezone: Mars/Olympus\n",
                3,
                "`timezone`: `Mars/Olympus` is not a time zone herald knows",
            ),
        ];
        for (entries, line, words) in cases {
            let text = format!("relays:\n{entries}");
            let e = Config::parse(Path::new("herald.yaml"), &text).unwrap_err();
            assert_eq!(e.line, Some(line), "{text}: {e}");
            assert!(e.message.contains(words), "{text}: {e}");
            assert!(!e.message.contains("hunter2"), "{e}");
        }
        // A clash is numbered as in the file even when an earlier entry
        // could not be read.
        let e = Config::parse(
            Path::new("herald.yaml"),
            "relays:\n  - rate: 5/s\n  - url: smtp://a.example.org\n  - url: smtp://a.example.org\n",
        )
        .unwrap_err();
        assert!(
            e.message
                .contains("herald.yaml:4: `relays` entry 3: the name"),
            "{e}"
        );
        // A time zone without a daily quota does no harm.
        let c = Config::parse(
            Path::new("herald.yaml"),
            "relays:\n  - url: smtp://a.example.org\n    timezone: Europe/Berlin\n",
        )
        .unwrap();
        assert_eq!(c.relays[0].day_zone_name, "Europe/Berlin");
        // A general rate beside `relays` would be ignored: refused instead.
        let (_d, path) = file("relays:\n  - url: smtp://a.example.org\nrate: 5/s\n");
        let e = Config::load_with(Some(&path), env(&[]), &[]).unwrap_err();
        assert!(e.message.contains("give each relay its own `rate:`"), "{e}");
        // Both ways of naming the relay at once: which one was meant?
        let (_d, path) = file("relays:\n  - url: smtp://a.example.org\n");
        let e = Config::load_with(
            Some(&path),
            env(&[("HERALD_SMTP_URL", "smtp://b.example.org")]),
            &[],
        )
        .unwrap_err();
        assert!(e.message.contains("use one"), "{e}");
    }

    #[test]
    fn domain_limits_per_group_of_domains() {
        let (_d, path) = file(
            "from: News <news@example.org>\n\
             domain_limits:\n  \
             - name: microsoft\n    domains: [Outlook.com, hotmail.com, \"@live.com\", msn.com]\n    \
             rate: 10/s\n    connections: 2\n  \
             - domains: gmail.com\n    rate: 20/s\n\
             smtp_url: smtp://mail.example.org:587\n",
        );
        let c = Config::load_with(Some(&path), env(&[]), &[]).unwrap();
        assert_eq!(
            c.domain_limits,
            vec![
                DomainLimit {
                    name: "microsoft".into(),
                    domains: vec![
                        "outlook.com".into(),
                        "hotmail.com".into(),
                        "live.com".into(),
                        "msn.com".into()
                    ],
                    rate: Some(Rate::parse("10/s").unwrap()),
                    connections: Some(2),
                },
                // One domain without brackets; named after it.
                DomainLimit {
                    name: "gmail.com".into(),
                    domains: vec!["gmail.com".into()],
                    rate: Some(Rate::parse("20/s").unwrap()),
                    connections: None,
                },
            ]
        );
        assert_eq!(
            c.source("domain_limits").to_string(),
            format!("{}:2", path.display())
        );
        // A recipient's domain, in any case; a subdomain is not included.
        assert_eq!(c.domain_limit_of("hotmail.com"), Some(0));
        assert_eq!(c.domain_limit_of("LIVE.com"), Some(0));
        assert_eq!(c.domain_limit_of("gmail.com"), Some(1));
        assert_eq!(c.domain_limit_of("mail.gmail.com"), None);
        assert_eq!(c.domain_limit_of("example.org"), None);
        assert_eq!(Config::default().domain_limit_of("gmail.com"), None);

        // What `herald config` shows reads back as the same list.
        let shown = c
            .entries()
            .into_iter()
            .find(|e| e.name == "domain_limits")
            .unwrap()
            .value
            .unwrap();
        assert_eq!(
            shown,
            "[{name: \"microsoft\", domains: [outlook.com, hotmail.com, live.com, msn.com], \
             rate: 10/s, connections: 2}, {name: \"gmail.com\", domains: [gmail.com], rate: 20/s}]"
        );
        let mut d = Config::default();
        d.set("domain_limits", &shown, "--set domain_limits")
            .unwrap();
        assert_eq!(d.domain_limits, c.domain_limits);

        // The variable, in the one-line form; a single domain as a string.
        let c = Config::load_with(
            None,
            env(&[(
                "HERALD_DOMAIN_LIMITS",
                "[{name: microsoft, domains: [outlook.com, hotmail.com], rate: 10/s, connections: 2}, \
                 {domains: yahoo.com, connections: 1}]",
            )]),
            &[],
        )
        .unwrap();
        assert_eq!(c.domain_limits.len(), 2);
        assert_eq!(c.domain_limits[1].name, "yahoo.com");
        assert_eq!(c.domain_limits[1].domains, vec!["yahoo.com".to_string()]);
        assert_eq!(
            (c.domain_limits[1].rate, c.domain_limits[1].connections),
            (None, Some(1))
        );
        assert_eq!(
            c.source("domain_limits").to_string(),
            "HERALD_DOMAIN_LIMITS"
        );
        // Problems in the text form name the entry.
        let e = Config::load_with(
            None,
            env(&[(
                "HERALD_DOMAIN_LIMITS",
                "[{domains: gmail.com, rate: 5/s}, {domains: [gmail.com], rate: 1/s}]",
            )]),
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("HERALD_DOMAIN_LIMITS:"), "{e}");
        assert!(e.message.contains("domain limit 2:"), "{e}");
        let e = Config::load_with(None, env(&[("HERALD_DOMAIN_LIMITS", "gmail.com")]), &[])
            .unwrap_err();
        assert!(
            e.message.contains("write the domain limits as a list"),
            "{e}"
        );
    }

    #[test]
    fn bad_domain_limits_are_named_at_their_line() {
        let cases = [
            // (entries, the line of the bad one, words the message must hold)
            (
                "  - domains: gmail.com\n    rate: 5/s\n  - gmail.com\n",
                4,
                "each domain limit is a map",
            ),
            (
                "  - domains: gmail.com\n    speed: 5/s\n",
                2,
                "a domain limit has no `speed`; it takes name, domains, rate, connections",
            ),
            (
                "  - domain: gmail.com\n    rate: 5/s\n",
                2,
                "`domains`, with an s",
            ),
            ("  - rate: 5/s\n", 2, "it has no `domains`"),
            ("  - domains: []\n    rate: 5/s\n", 2, "`domains` is empty"),
            (
                "  - domains: [news@gmail.com]\n    rate: 5/s\n",
                2,
                "`news@gmail.com` is an address; write only the part after @",
            ),
            (
                "  - domains: [gmail com]\n    rate: 5/s\n",
                2,
                "write several domains in brackets",
            ),
            (
                "  - domains: \"outlook.com, hotmail.com\"\n    rate: 5/s\n",
                2,
                "write several domains in brackets",
            ),
            (
                "  - domains: [localhost]\n    rate: 5/s\n",
                2,
                "`localhost` is not a domain",
            ),
            (
                "  - domains: [https://gmail.com]\n    rate: 5/s\n",
                2,
                "no https://",
            ),
            (
                "  - domains: [\"*.gmail.com\"]\n    rate: 5/s\n",
                2,
                "a subdomain is not included",
            ),
            (
                "  - domains: [10.0.0.1]\n    rate: 5/s\n",
                2,
                "is not a domain",
            ),
            (
                "  - name: google\n    domains: gmail.com\n",
                2,
                "it limits nothing; give `google` a `rate:`",
            ),
            (
                "  - domains: gmail.com\n    connections: 0\n",
                2,
                "`connections`: must be at least 1",
            ),
            (
                "  - domains: gmail.com\n    rate: fast\n",
                2,
                "`rate`: `fast` is not a rate",
            ),
            (
                "  - name: google\n    domains: [gmail.com, googlemail.com]\n    rate: 5/s\n  \
                 - domains: [yahoo.com, GoogleMail.com]\n    rate: 5/s\n",
                5,
                "`googlemail.com` is in this entry (`yahoo.com`) and in entry 1 (`google`)",
            ),
            (
                "  - name: big\n    domains: gmail.com\n    rate: 5/s\n  \
                 - name: BIG\n    domains: yahoo.com\n    rate: 5/s\n",
                5,
                "the name `BIG` is taken by entry 1; give each entry its own `name:`",
            ),
            (
                "  - name: yahoo.com\n    domains: gmail.com\n    rate: 5/s\n  \
                 - domains: yahoo.com\n    rate: 5/s\n",
                5,
                "named after its first domain",
            ),
        ];
        for (entries, line, words) in cases {
            let text = format!("domain_limits:\n{entries}");
            let e = Config::parse(Path::new("herald.yaml"), &text).unwrap_err();
            assert_eq!(e.line, Some(line), "{text}: {e}");
            assert!(e.message.contains(words), "{text}: {e}");
        }
        // Each bad entry is its own problem, numbered as in the file even
        // when an earlier one could not be read.
        let e = Config::parse(
            Path::new("herald.yaml"),
            "domain_limits:\n  - domains: gmail.com\n  - domains: yahoo.com\n    rate: 1/s\n  \
             - domains: yahoo.com\n    rate: 2/s\n",
        )
        .unwrap_err();
        assert!(e.message.contains("2 settings are wrong"), "{e}");
        assert!(
            e.message
                .contains("herald.yaml:2: `domain_limits` entry 1: it limits nothing"),
            "{e}"
        );
        assert!(
            e.message.contains(
                "herald.yaml:5: `domain_limits` entry 3: `yahoo.com` is in this entry (`yahoo.com`) and in entry 2"
            ),
            "{e}"
        );
        // Not a list at all.
        let e = Config::parse(Path::new("herald.yaml"), "domain_limits: gmail.com\n").unwrap_err();
        assert_eq!(e.line, Some(1), "{e}");
        assert!(
            e.message.contains("write the domain limits as a list"),
            "{e}"
        );
    }

    #[test]
    fn every_setting_shows_and_round_trips() {
        let c = Config::default();
        let entries = c.entries();
        assert_eq!(entries.len(), SETTINGS.len());
        for e in &entries {
            if let Some(v) = &e.value {
                let mut d = Config::default();
                d.set(e.name, v, "--set")
                    .unwrap_or_else(|err| panic!("{}: {err}", e.name));
            }
        }
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

    #[test]
    fn rates() {
        assert_eq!(
            Rate::parse("14/s").unwrap(),
            Rate {
                max: 14,
                window: Duration::from_secs(1)
            }
        );
        assert_eq!(Rate::parse("10000/h").unwrap().to_string(), "10000/h");
        assert!(Rate::parse("fast").is_err());
        assert!(Rate::parse("0/s").is_err());
    }
}
