//! Where each value comes from: the YAML file, the `HERALD_*` variables and
//! the flags (`--rate`, `--set NAME=VALUE`), read in that order, each later
//! one winning; every value remembers its [`Source`] so an error names the
//! place to fix and `herald config` can show it. All problems of one load
//! are gathered ([`Problems`]) and reported in one error.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::*;
use crate::InputError;

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

/// The environment variable that overrides a setting: `HERALD_RATE`.
pub fn env_name(setting: &str) -> String {
    format!("HERALD_{}", setting.to_ascii_uppercase())
}

/// Problems found while loading, each with where its value came from.
#[derive(Default)]
pub(super) struct Problems(Vec<(Source, String)>);

impl Problems {
    pub(super) fn push(&mut self, source: Source, message: String) {
        self.0.push((source, message));
    }

    /// One error listing every problem, so a single run shows all there is
    /// to fix. One problem names its own source as the error's place.
    pub(super) fn into_error(self, file: Option<&Path>) -> Option<InputError> {
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
    pub(super) fn apply_file(
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

    pub(super) fn apply(
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
                    _ => e.to_string(),
                };
                problems.push(source, message);
            }
        }
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

/// The lines of the `- ` entries under a top-level `key:` (block style).
pub(super) fn entry_lines(text: &str, key: &str) -> Vec<usize> {
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

/// Where each entry of a top-level list came from: its own `- ` line in
/// the file, else the line of the list itself (a flow list on one line),
/// so that a problem in the third relay points at the third relay.
pub(super) fn entry_sources(
    path: &Path,
    text: &str,
    key: &str,
    list: &Source,
    n: usize,
) -> Vec<Source> {
    let lines = entry_lines(text, key);
    (0..n)
        .map(|i| Source::File {
            path: path.to_path_buf(),
            line: lines.get(i).copied().or(match list {
                Source::File { line, .. } => *line,
                _ => None,
            }),
        })
        .collect()
}

/// A YAML scalar as text (a map or list inside is shown as-is, and then
/// refused by the setting's parser).
pub(super) fn scalar(v: &yaml_serde::Value) -> String {
    match v {
        yaml_serde::Value::String(s) => s.clone(),
        yaml_serde::Value::Bool(b) => b.to_string(),
        yaml_serde::Value::Number(n) => n.to_string(),
        yaml_serde::Value::Null => String::new(),
        other => format!("{other:?}"),
    }
}

/// The line of a top-level `key:` in the YAML text.
pub(super) fn line_of(text: &str, key: &str) -> Option<usize> {
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
pub(super) fn did_you_mean(name: &str) -> String {
    let best = SETTINGS
        .iter()
        .map(|s| (edit_distance(name, s.name), s.name))
        .min();
    match best {
        Some((d, s)) if d <= 3 => format!("; did you mean `{s}`?"),
        _ => String::new(),
    }
}

pub(super) fn edit_distance(a: &str, b: &str) -> usize {
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

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::config::test_util::{env, file};
    #[allow(unused_imports)]
    use crate::config::*;

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
    fn set_names_unknown_settings() {
        let e = Config::load_with(None, env(&[]), &[Override::from_set("rat=1/s").unwrap()])
            .unwrap_err();
        assert!(e.to_string().starts_with("--set rat:"), "{e}");
        assert!(e.message.contains("did you mean `rate`"), "{e}");
        assert!(Override::from_set("rate").is_err());
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
}
