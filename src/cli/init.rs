//! `herald init [DIR]`: a new folder to work in, with commented settings, an
//! example list and an example post, and the next steps printed.
//!
//! It asks nothing (so a script or a package's post-install can run it) and
//! overwrites nothing: when any of the files it would write is already
//! there, it writes none of them and names the one in the way. The settings
//! are the documented example (`herald.example.yaml`, the same text the
//! Debian package puts in /usr/share/doc/herald), so the comments a new user
//! reads are the ones the README points at.

use std::path::{Path, PathBuf};

use super::output::say;
use crate::{Fault, InputError, exit};

/// Start a new folder for herald: writes a commented herald.yaml, a small
/// subscriber list (subscribers.csv) and posts/ with an example issue, then
/// prints the next steps. Asks nothing and never overwrites a file: if one
/// is already there, nothing is written.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The folder to set up (default: this folder). Made if it does not exist.
    #[arg(value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// The settings a new folder starts from: the documented example, with its
/// first line (which tells the reader to copy the file) replaced.
const SETTINGS: &str = include_str!("../../herald.example.yaml");
const POST: &str = include_str!("../../examples/inside-open-infrastructure-example.md");
/// One row, an address that receives nothing (example.org), so sending the
/// example by mistake mails no real person.
const LIST: &str = "email,first_name,last_name,status\nyou@example.org,Your,Name,subscribed\n";
pub const POST_PATH: &str = "posts/inside-open-infrastructure-example.md";

/// What `init` writes, relative to the folder.
fn files() -> Vec<(&'static str, String)> {
    let settings = match SETTINGS.split_once('\n') {
        Some((_, rest)) => format!(
            "# herald settings, written by `herald init`. Change what you need; `herald config`\n\
             # shows what is in effect and where each value came from.\n{rest}"
        ),
        None => SETTINGS.to_string(),
    };
    vec![
        ("herald.yaml", settings),
        ("subscribers.csv", LIST.to_string()),
        (POST_PATH, POST.to_string()),
    ]
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let dir = args.dir.unwrap_or_else(|| PathBuf::from("."));
    let files = files();
    // All or nothing: look at every file before writing any.
    for (name, _) in &files {
        let path = dir.join(name);
        if path.symlink_metadata().is_ok() {
            return Err(InputError::new(
                &path,
                None,
                "is already there, so `herald init` wrote nothing (it never overwrites a file); \
                 use another folder, or move this file away first",
            )
            .into());
        }
    }
    if dir.exists() && !dir.is_dir() {
        return Err(InputError::new(
            &dir,
            None,
            "is a file, not a folder; give `herald init` a folder to set up",
        )
        .into());
    }
    for (name, text) in &files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Fault::io(format_args!("make the folder {}", parent.display()), &e))?;
        }
        write_new(&path, text)?;
        say!("wrote {}", shown(&dir, name).display())?;
    }
    let cd = if dir == Path::new(".") {
        String::new()
    } else {
        format!("cd {} && ", shell_word(&dir.display().to_string()))
    };
    say!(
        "\nNext steps:\n\
         1. Edit herald.yaml: your `from` address, `postal_address`, `unsubscribe_url` and \
         the relay (`smtp_url`). Its comments say what each setting does.\n\
         2. Set the secret that signs unsubscribe links (never in herald.yaml), and the \
         relay's password if it needs one:\n   \
         export HERALD_UNSUBSCRIBE_SECRET=\"$(openssl rand -hex 32)\"\n   \
         export HERALD_SMTP_PASSWORD=...\n\
         3. Look at the example issue and what `herald check` says about it:\n   \
         {cd}herald preview {POST_PATH} --watch\n   \
         herald check {POST_PATH}\n\
         4. Send yourself a test, then the issue to the list (subscribers.csv):\n   \
         herald send {POST_PATH} --to you@example.org\n   \
         herald send {POST_PATH} --subscribers subscribers.csv\n\
         Unsubscribe links are answered by `herald serve` (see the README, \"Unsubscribes\")."
    )?;
    Ok(exit::OK)
}

/// Creates `path` only if nothing is there (O_EXCL), so a file that
/// appeared since the check above is not overwritten either.
fn write_new(path: &Path, text: &str) -> Result<(), anyhow::Error> {
    use std::io::Write;
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(InputError::new(
                path,
                None,
                "appeared while `herald init` was writing; it was left as it is",
            )
            .into());
        }
        Err(e) => return Err(Fault::io(format_args!("write {}", path.display()), &e).into()),
    };
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| Fault::io(format_args!("write {}", path.display()), &e).into())
}

fn shown(dir: &Path, name: &str) -> PathBuf {
    if dir == Path::new(".") {
        PathBuf::from(name)
    } else {
        dir.join(name)
    }
}

/// A folder name as the user can paste it into a shell.
fn shell_word(s: &str) -> String {
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+,=:@".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_written_are_the_documented_example_with_a_new_first_line() {
        let files = files();
        let settings = &files[0].1;
        assert!(settings.starts_with("# herald settings, written by `herald init`."));
        let example_rest = SETTINGS.split_once('\n').unwrap().1;
        assert!(settings.ends_with(example_rest));
    }

    #[test]
    fn folder_names_are_quoted_for_the_shell_when_needed() {
        assert_eq!(shell_word("news/2026"), "news/2026");
        assert_eq!(shell_word("my news"), "'my news'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
