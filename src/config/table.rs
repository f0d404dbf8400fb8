//! The table of every setting: its name, how its text becomes the typed
//! value in [`Config`] and how `herald config` shows it back (the shown
//! form reads back through `--set` as the same value).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

/// One setting: how to parse it into the [`Config`] and how to show it.
pub(super) struct Setting {
    pub(super) name: &'static str,
    /// Parses the text into the config; `base` is the folder a relative
    /// path is taken from.
    pub(super) set: fn(&mut Config, &str, &Path) -> Result<(), ValueError>,
    pub(super) show: fn(&Config) -> Option<String>,
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
pub(super) const SETTINGS: &[Setting] = &[
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
    setting!(feedback_id, |v, _b| Some(feedback_sender(v)?), show_opt),
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
    setting!(dns_resolver, |v, _b| Some(resolver(v)?), show_opt),
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

pub(super) fn show<T: fmt::Display>(v: &T) -> Option<String> {
    Some(v.to_string())
}

pub(super) fn show_opt<T: fmt::Display>(v: &Option<T>) -> Option<String> {
    v.as_ref().map(|v| v.to_string())
}

pub(super) fn show_path(v: &Option<PathBuf>) -> Option<String> {
    v.as_ref().map(|p| p.display().to_string())
}

pub(super) fn show_duration(d: &Duration) -> Option<String> {
    Some(format_duration(*d))
}

pub(super) fn show_size(n: usize) -> String {
    match n {
        0 => "0".into(),
        n if n.is_multiple_of(1024 * 1024) => format!("{}MB", n / (1024 * 1024)),
        n if n.is_multiple_of(1024) => format!("{}KB", n / 1024),
        n => n.to_string(),
    }
}
