//! Secrets (passwords, the unsubscribe key): only from a variable or the
//! file a `NAME_FILE` variable names, never from herald.yaml or a flag,
//! and never printed ([`Secret`] shows as `(set)`).

use std::fmt;
use std::path::PathBuf;

use crate::InputError;

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

pub(super) fn secret_with(
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

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::config::test_util::{env, file};
    #[allow(unused_imports)]
    use crate::config::*;

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
}
