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
//! One typed model, [`Config`], split by concern:
//!
//! - `sources`: the file, the `HERALD_*` variables, `--set` and flags, and
//!   where each value came from; `table`: every setting, how it is read
//!   and shown; `secrets`: passwords and keys, from variables only.
//! - `validate`: the parsers of single values and the checks across
//!   settings, with their typed error [`ValueError`].
//! - `relays`, `domain_limits`, `delivery` (rate, DKIM), `schedule` (the
//!   send window), `compose` (the options each compose stage receives:
//!   [`ComposeOptions`], built once by [`Config::compose`]), `listen`.
//!
//! A leaf module: it uses nothing from the crate but [`crate::InputError`]
//! and the size caps of `crate::limits`, so every other module can depend
//! on it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use lettre::message::Mailbox;
use url::Url;

mod compose;
mod delivery;
mod dns;
mod domain_limits;
mod error;
mod listen;
mod relays;
mod schedule;
mod secrets;
mod sources;
mod table;
mod validate;

pub use compose::{
    CheckOptions, ComposeOptions, ContentOptions, HostList, ImageOptions, LinkOptions,
    PreviewOptions, RenderOptions, Utm,
};
pub use delivery::{DkimAlgorithm, DkimKey, Rate};
pub use dns::DnsOptions;
pub use domain_limits::DomainLimit;
pub use error::ValueError;
pub use relays::{RelaySetting, SINGLE_RELAY_NAME, relay_password_env};
pub use schedule::SendWindow;
pub use secrets::{SECRETS, Secret, secret, secret_source};
pub use sources::{Override, Source, env_name};
pub use validate::{
    database, direction, format_duration, language, parse_duration, parse_size, redact_url,
};
#[allow(unused_imports)]
use {
    compose::*, delivery::*, domain_limits::*, listen::*, relays::*, schedule::*, secrets::*,
    sources::*, table::*, validate::*,
};

pub const DEFAULT_FILE: &str = "herald.yaml";
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
    /// The sender id of the `Feedback-ID` header, the last of its four
    /// parts, which Gmail's Postmaster Tools groups spam reports by.
    /// Default: the domain of `from`.
    pub feedback_id: Option<String>,
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
    /// The DNS server `herald check --dns` asks, like `127.0.0.1:5353`.
    /// Default: the servers of /etc/resolv.conf.
    pub dns_resolver: Option<std::net::SocketAddr>,
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

impl Config {
    /// Which settings file this run read, said after an error about a
    /// setting that is missing: a new user with no `herald.yaml` in the
    /// folder (or in the wrong folder) learns that the file is what is
    /// missing, not only the setting.
    pub fn read_from(&self) -> String {
        match &self.file {
            Some(f) => {
                let shown = std::path::absolute(f).unwrap_or_else(|_| f.clone());
                format!("(Settings read from {}.)", shown.display())
            }
            None => {
                let here = std::env::current_dir()
                    .map(|d| d.display().to_string())
                    .unwrap_or_else(|_| "this folder".into());
                format!(
                    "(No settings file was found: herald looked for {DEFAULT_FILE} in {here}. \
                     `herald init` makes one; --config FILE names another.)"
                )
            }
        }
    }
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
            feedback_id: None,
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
            dns_resolver: None,
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

#[cfg(test)]
pub(crate) mod test_util {
    use std::path::PathBuf;

    pub fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    pub fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.yaml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }
}
