//! Where returned mail is read from: a Maildir (or a plain folder of
//! `.eml` files) or an mbox file. Each message is read on its own, so a
//! mailbox of any size takes the memory of its largest message.
//!
//! A message herald understood is marked in the mailbox the way mail
//! programs mark one as read: in a Maildir it moves from `new/` to `cur/`
//! with the `S` (seen) flag. Nothing is ever deleted. A plain folder and an
//! mbox are left as they are; the journal remembers every message handled
//! (by a hash of its bytes), so reading them again changes nothing.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use crate::InputError;

/// The largest message read; a bounce carrying a huge attachment back is
/// cut there (the report is at the start).
pub const MAX_MESSAGE: usize = 8 * 1024 * 1024;

/// One message and where it is.
pub struct Message {
    /// For people: the file name, or `mbox:N`.
    pub name: String,
    pub bytes: Vec<u8>,
    place: Place,
}

enum Place {
    /// In a Maildir's `new/` or `cur/`.
    Maildir(PathBuf),
    /// A file in a plain folder, or a message of an mbox.
    Other,
}

/// The messages of a Maildir (`new/` and `cur/`) or of a plain folder of
/// files, in name order.
pub fn maildir(dir: &Path) -> Result<Vec<PathBuf>, InputError> {
    let err = |e: std::io::Error| {
        InputError::new(
            dir,
            None,
            format!("cannot read this folder ({e}); give a Maildir or a folder of .eml files"),
        )
    };
    let subfolders = ["new", "cur"].map(|s| dir.join(s));
    let is_maildir = subfolders.iter().any(|p| p.is_dir());
    let mut files = Vec::new();
    let folders: Vec<PathBuf> = if is_maildir {
        subfolders.into_iter().filter(|p| p.is_dir()).collect()
    } else {
        vec![dir.to_path_buf()]
    };
    for folder in folders {
        for entry in std::fs::read_dir(&folder).map_err(err)? {
            let path = entry.map_err(err)?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            if path.is_file() && !name.is_some_and(|n| n.starts_with('.')) {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Reads one message of a Maildir or folder.
pub fn read_file(path: &Path) -> Result<Message, InputError> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .map_err(|e| InputError::new(path, None, format!("cannot read ({e})")))?;
    let mut bytes = Vec::new();
    file.take(MAX_MESSAGE as u64)
        .read_to_end(&mut bytes)
        .map_err(|e| InputError::new(path, None, format!("cannot read ({e})")))?;
    let in_maildir = path
        .parent()
        .and_then(|p| p.file_name())
        .is_some_and(|n| n == "new" || n == "cur");
    Ok(Message {
        name: path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        ),
        bytes,
        place: if in_maildir {
            Place::Maildir(path.to_path_buf())
        } else {
            Place::Other
        },
    })
}

/// Calls `each` with every message of an mbox file (mboxrd: `>From ` lines
/// unquoted), one at a time.
pub fn mbox(
    path: &Path,
    mut each: impl FnMut(Message) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let file = std::fs::File::open(path)
        .map_err(|e| InputError::new(path, None, format!("cannot read this mbox file ({e})")))?;
    let mut reader = BufReader::new(file);
    let mut current: Option<Vec<u8>> = None;
    let mut n = 0;
    let mut line = Vec::new();
    let mut previous_blank = true;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| InputError::new(path, None, format!("cannot read ({e})")))?;
        let starts = read > 0 && previous_blank && line.starts_with(b"From ");
        if read == 0 || starts {
            if let Some(bytes) = current.take() {
                n += 1;
                each(Message {
                    name: format!("mbox:{n}"),
                    bytes,
                    place: Place::Other,
                })?;
            }
            if read == 0 {
                return Ok(());
            }
            current = Some(Vec::new());
            previous_blank = false;
            continue;
        }
        previous_blank = line == b"\n" || line == b"\r\n";
        let Some(buf) = current.as_mut() else {
            // Text before the first "From " line is not a message.
            continue;
        };
        if buf.len() + line.len() > MAX_MESSAGE {
            continue;
        }
        let unquoted = line.strip_prefix(b">").filter(|l| {
            let l = l
                .iter()
                .position(|b| *b != b'>')
                .map_or(&l[..0], |i| &l[i..]);
            l.starts_with(b"From ")
        });
        buf.extend_from_slice(unquoted.unwrap_or(&line));
    }
}

impl Message {
    /// A message from elsewhere (IMAP), marked by its own reader.
    pub fn other(name: String, bytes: Vec<u8>) -> Message {
        Message {
            name,
            bytes,
            place: Place::Other,
        }
    }

    /// Marks the message as read where the mailbox allows it (Maildir).
    pub fn mark_handled(&self) -> std::io::Result<()> {
        let Place::Maildir(path) = &self.place else {
            return Ok(());
        };
        let Some(maildir) = path.parent().and_then(Path::parent) else {
            return Ok(());
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Maildir names: `unique:2,FLAGS`; flags in ASCII order.
        let (base, flags) = match name.split_once(":2,") {
            Some((b, f)) => (b.to_string(), f.to_string()),
            None => (name.clone(), String::new()),
        };
        if flags.contains('S') && path.parent().is_some_and(|p| p.ends_with("cur")) {
            return Ok(());
        }
        let mut flags: Vec<char> = flags.chars().chain(['S']).collect();
        flags.sort_unstable();
        flags.dedup();
        let target = maildir.join("cur").join(format!(
            "{base}:2,{}",
            flags.into_iter().collect::<String>()
        ));
        std::fs::rename(path, target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_mbox_splits_into_its_messages_with_from_lines_unquoted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("box");
        std::fs::write(
            &p,
            "From a@x Mon Jan 1 00:00:00 2024\nSubject: one\n\n>From the start\nbody\n\n\
             From b@x Mon Jan 1 00:00:01 2024\nSubject: two\n\ntext\nFrom mid-paragraph is body\n",
        )
        .unwrap();
        let mut got = Vec::new();
        mbox(&p, |m| {
            got.push((m.name, String::from_utf8(m.bytes).unwrap()));
            Ok(())
        })
        .unwrap();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].1, "Subject: one\n\nFrom the start\nbody\n\n");
        assert_eq!(
            got[1].1,
            "Subject: two\n\ntext\nFrom mid-paragraph is body\n"
        );
    }

    #[test]
    fn a_handled_maildir_message_moves_to_cur_as_seen() {
        let dir = tempfile::tempdir().unwrap();
        for s in ["new", "cur", "tmp"] {
            std::fs::create_dir(dir.path().join(s)).unwrap();
        }
        std::fs::write(dir.path().join("new/123.abc"), "Subject: x\n\n").unwrap();
        let files = maildir(dir.path()).unwrap();
        assert_eq!(files.len(), 1);
        let m = read_file(&files[0]).unwrap();
        m.mark_handled().unwrap();
        assert!(dir.path().join("cur/123.abc:2,S").is_file());
        assert!(!dir.path().join("new/123.abc").exists());
    }
}
