//! The typed error of one setting's value: what is wrong with the text and
//! how to write it, in words for the person who wrote it. The loader
//! ([`super::Config::load`]) puts the place in front (`herald.yaml:12`,
//! `HERALD_RATE`, `--set rate`) and gathers all of them into one
//! [`crate::InputError`].

/// What is wrong with one value. Each message is the one herald has always
/// printed (the README and the tests quote them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Text the setting cannot take; the message says how to write it.
    #[error("{0}")]
    Invalid(String),
    #[error("`{0}` is not a whole number")]
    NotANumber(String),
    #[error("must be at least 1")]
    BelowOne,
    #[error("must be at least 1s")]
    UnderASecond,
    #[error("`{0}` is not true or false")]
    NotABoolean(String),
    #[error("`{0}` is not a duration; write it like 30s, 5m, 1h or 2d")]
    NotADuration(String),
    #[error("`{0}` is not a size; write it like 20KB, 1MB or 0")]
    NotASize(String),
    #[error("`{0}` is not a rate; write it like 14/s, 600/m or 10000/h")]
    NotARate(String),
    /// A control character in text that may span lines (`postal_address`).
    #[error("holds a control character ({0:?})")]
    ControlCharacter(char),
    /// A relay's `weight: 0`.
    #[error("must be at least 1 (to send nothing through a relay, remove it from the list)")]
    NoWeight,
    /// The value of one key of a list entry (a relay's `rate:`).
    #[error("`{key}`: {error}")]
    Key {
        key: &'static str,
        error: Box<ValueError>,
    },
    /// One entry of a list written on one line (`HERALD_RELAYS`), numbered
    /// from 1: `relay 2: ...`.
    #[error("{list} {number}: {error}")]
    Entry {
        list: &'static str,
        number: usize,
        error: Box<ValueError>,
    },
}

impl ValueError {
    /// This error as the error of the key `key` of a list entry.
    pub fn key(self, key: &'static str) -> ValueError {
        ValueError::Key {
            key,
            error: Box::new(self),
        }
    }

    /// This error as the error of the `index`th entry (from 0) of `list`.
    pub fn entry(self, list: &'static str, index: usize) -> ValueError {
        ValueError::Entry {
            list,
            number: index + 1,
            error: Box::new(self),
        }
    }
}

impl From<String> for ValueError {
    fn from(message: String) -> Self {
        ValueError::Invalid(message)
    }
}

impl From<&str> for ValueError {
    fn from(message: &str) -> Self {
        ValueError::Invalid(message.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;

    /// The typed errors print, word for word, what the string errors they
    /// replaced printed (each text below is the old binary's, seen with
    /// `herald config --set NAME=VALUE`).
    #[test]
    fn every_kind_prints_the_words_it_always_had() {
        let relays = |v: &str| relays::relays_from_text(v).unwrap_err().to_string();
        let limits = |v: &str| {
            domain_limits::domain_limits_from_text(v)
                .unwrap_err()
                .to_string()
        };
        let cases: Vec<(String, &str)> = vec![
            (
                validate::smtp("smtp://u:p@mail.example.org:587")
                    .unwrap_err()
                    .to_string(),
                "put the relay's user name in `smtp_user` and the password in HERALD_SMTP_PASSWORD \
                 (or HERALD_SMTP_PASSWORD_FILE), not in the address",
            ),
            (
                relays("[{url: \"smtp://u:p@mail.example.org:587\"}]"),
                "relay 1: put the relay's user name in the relay's `user` and the password in \
                 HERALD_RELAY_<NAME>_PASSWORD, not in the address",
            ),
            (
                relays(
                    "[{url: \"smtp://a.example.org\"}, {url: \"smtp://b.example.org\", weight: 0}]",
                ),
                "relay 2: `weight`: must be at least 1 (to send nothing through a relay, remove it \
                 from the list)",
            ),
            (
                relays("[{url: \"smtp://a.example.org\", connections: x}]"),
                "relay 1: `connections`: `x` is not a whole number",
            ),
            (
                relays("[{url: \"smtp://a.example.org\", max_per_day: 0}]"),
                "relay 1: `max_per_day`: must be at least 1",
            ),
            (
                limits("[{domains: gmail.com, rate: 1/s}, {domains: yahoo.com, rate: fast}]"),
                "domain limit 2: `rate`: `fast` is not a rate; write it like 14/s, 600/m or 10000/h",
            ),
            (
                limits("[{domains: [\"a@gmail.com\"], rate: 1/s}]"),
                "domain limit 1: `domains`: `a@gmail.com` is an address; write only the part after @, \
                 like gmail.com",
            ),
            (
                validate::parse_duration(" soon").unwrap_err().to_string(),
                "` soon` is not a duration; write it like 30s, 5m, 1h or 2d",
            ),
            (
                validate::parse_size("20 GB").unwrap_err().to_string(),
                "`20 GB` is not a size; write it like 20KB, 1MB or 0",
            ),
            (
                validate::boolean(" maybe ").unwrap_err().to_string(),
                "`maybe` is not true or false",
            ),
            (
                validate::at_least_a_second(std::time::Duration::from_millis(10))
                    .unwrap_err()
                    .to_string(),
                "must be at least 1s",
            ),
            (
                validate::lines("1 Main St\u{7}").unwrap_err().to_string(),
                "holds a control character ('\\u{7}')",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }
}
