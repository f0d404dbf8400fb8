//! The relays: `relays:` (several, each with its own address, user, rate,
//! connections, daily quota, weight and time zone) or the single relay of
//! `smtp_url`; [`Config::relay_list`] is the one list a send uses either way.

use std::collections::BTreeMap;
use std::path::Path;

use url::Url;

use super::*;

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
pub(super) const RELAY_KEYS: &[&str] = &[
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
pub(super) fn day_zone(v: &str) -> Result<(jiff::tz::TimeZone, String), ValueError> {
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
pub(super) fn default_relay_name(url: &Url) -> String {
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
pub(super) fn relay_entry(v: &yaml_serde::Value, index: usize) -> Result<RelaySetting, ValueError> {
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
            return Err(
                format!("a relay has no `{key}`; it takes {}", RELAY_KEYS.join(", ")).into(),
            );
        }
        if matches!(
            v,
            yaml_serde::Value::Mapping(_) | yaml_serde::Value::Sequence(_)
        ) {
            return Err(format!("`{key}` must be a single value").into());
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
    let url = smtp_address(url, "the relay's `user`", "HERALD_RELAY_<NAME>_PASSWORD")?;
    let name = match fields.get("name") {
        Some(n) => {
            let n = one_line(n)?;
            if n.trim().is_empty() || !n.chars().any(|c| c.is_ascii_alphanumeric()) {
                return Err(format!(
                    "the name `{n}` needs a letter or digit; it names the password's variable"
                )
                .into());
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
        .map_err(|e| e.key("rate"))?;
    let connections = fields
        .get("connections")
        .map(|c| number::<usize>(c).and_then(at_least_one))
        .transpose()
        .map_err(|e| e.key("connections"))?;
    let max_per_day = fields
        .get("max_per_day")
        .map(|c| number::<u64>(c).and_then(at_least_one))
        .transpose()
        .map_err(|e| e.key("max_per_day"))?;
    let weight = match fields.get("weight") {
        Some(w) => number::<u32>(w)
            .and_then(|w| at_least_one(w).map_err(|_| ValueError::NoWeight))
            .map_err(|e| e.key("weight"))?,
        None => 1,
    };
    let (day_zone, day_zone_name) = match fields.get("timezone") {
        Some(z) => day_zone(z).map_err(|e| e.key("timezone"))?,
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
pub(super) fn duplicate_relay<'a>(
    relays: impl Iterator<Item = &'a RelaySetting>,
) -> Option<(usize, String)> {
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
pub(super) fn relays_from_text(v: &str) -> Result<Vec<RelaySetting>, ValueError> {
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
        .map(|(i, e)| relay_entry(e, i).map_err(|m| m.entry("relay", i)))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some((i, e)) = duplicate_relay(relays.iter()) {
        return Err(ValueError::from(e).entry("relay", i));
    }
    Ok(relays)
}

/// `text` as a YAML double-quoted string, for the one-line forms that
/// `herald config` shows and `--set` reads back.
pub(super) fn yaml_quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The relays in the one-line form [`relays_from_text`] reads back.
pub(super) fn show_relays(relays: &[RelaySetting]) -> Option<String> {
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

impl Config {
    /// `relays:` in the file: each entry checked on its own, its problems
    /// reported at its `- ` line.
    pub(super) fn apply_relays_file(
        &mut self,
        path: &Path,
        text: &str,
        list: &[yaml_serde::Value],
        source: Source,
        problems: &mut Problems,
    ) {
        let sources = entry_sources(path, text, "relays", &source, list.len());
        let mut relays = Vec::new();
        let mut ok = true;
        for ((i, entry), at) in list.iter().enumerate().zip(sources) {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::config::test_util::{env, file};
    #[allow(unused_imports)]
    use crate::config::*;

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
}
