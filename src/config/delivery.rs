//! Delivery options: the sending [`Rate`] and the DKIM keys messages are
//! signed with ([`Config::dkim_keys`]).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::*;

/// The kind of a DKIM key: what `a=` says in the signature and `k=` in DNS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DkimAlgorithm {
    Rsa,
    Ed25519,
}

impl DkimAlgorithm {
    pub(super) fn parse(v: &str) -> Result<DkimAlgorithm, ValueError> {
        match v.trim().to_ascii_lowercase().as_str() {
            "rsa" | "rsa-sha256" => Ok(DkimAlgorithm::Rsa),
            "ed25519" | "ed25519-sha256" => Ok(DkimAlgorithm::Ed25519),
            other => Err(format!(
                "`{}` is not a kind of DKIM key; write rsa or ed25519",
                other.escape_debug()
            )
            .into()),
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
    pub fn parse(s: &str) -> Result<Rate, ValueError> {
        let bad = || ValueError::NotARate(s.to_string());
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

impl Config {
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
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    #[allow(unused_imports)]
    use crate::config::test_util::{env, file};
    #[allow(unused_imports)]
    use crate::config::*;

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
