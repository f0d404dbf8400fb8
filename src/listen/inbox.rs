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

/// The largest message read: [`crate::limits::MAX_MESSAGE_BYTES`].
pub const MAX_MESSAGE: usize = crate::limits::MAX_MESSAGE_BYTES as usize;

/// One message and where it is.
pub struct Message {
    /// For people: the file name, or `mbox:N`.
    pub name: String,
    pub bytes: Vec<u8>,
    place: Place,
}

/// What the intake hands on: a message to read, or one set aside for a
/// person (it could not be read, vanished, is too big, is a symbolic
/// link), with why. One such message never stops the run (issue 24).
pub enum Incoming {
    Message(Message),
    SetAside { name: String, why: String },
}

enum Place {
    /// In a Maildir's `new/` or `cur/`.
    Maildir(PathBuf),
    /// A file in a plain folder, or a message of an mbox.
    Other,
}

/// One entry of a Maildir or folder: a file to read, or a symbolic link
/// (listed, never followed: one pointing at /etc/passwd was read).
pub enum Entry {
    File(PathBuf),
    Symlink(PathBuf),
}

/// The messages of a Maildir (`new/` and `cur/`) or of a plain folder of
/// files, in name order.
pub fn maildir(dir: &Path) -> Result<Vec<Entry>, InputError> {
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
            // An entry that vanished between the listing and this look
            // is not listed (nothing to set aside).
            let Ok(entry) = entry else { continue };
            let path = entry.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            if name.is_some_and(|n| n.starts_with('.')) {
                continue;
            }
            // The entry's own type, not its target's.
            match entry.file_type() {
                Ok(t) if t.is_symlink() => files.push(Entry::Symlink(path)),
                Ok(t) if t.is_file() => files.push(Entry::File(path)),
                _ => {}
            }
        }
    }
    files.sort_by(|a, b| a.path().cmp(b.path()));
    Ok(files)
}

impl Entry {
    pub fn path(&self) -> &Path {
        match self {
            Entry::File(p) | Entry::Symlink(p) => p,
        }
    }

    /// The message, or why it was set aside.
    pub fn read(&self) -> Incoming {
        let path = self.path();
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        );
        match self {
            Entry::Symlink(_) => Incoming::SetAside {
                name,
                why: Unreadable::Symlink.to_string(),
            },
            Entry::File(_) => match read_file(path) {
                Ok(m) => Incoming::Message(m),
                Err(why) => Incoming::SetAside {
                    name,
                    why: why.to_string(),
                },
            },
        }
    }
}

/// Why a message is set aside unread, in words for people.
#[derive(Debug, thiserror::Error)]
pub enum Unreadable {
    #[error("vanished before herald read it (moved or deleted by another program)")]
    Vanished,
    #[error("cannot be read (permission denied): let the user herald runs as read it")]
    PermissionDenied,
    #[error("a symbolic link: not followed (move the message itself into the Maildir)")]
    Symlink,
    #[error("not a regular file")]
    NotAFile,
    #[error(
        "larger than {} MiB, so not read: a bounce is a few KB; look at it in a mail program",
        MAX_MESSAGE / (1024 * 1024)
    )]
    TooBig,
    #[error("cannot be read ({0})")]
    Io(std::io::Error),
}

impl From<std::io::Error> for Unreadable {
    /// Why a message cannot be read, from the system's error.
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::NotFound => Unreadable::Vanished,
            std::io::ErrorKind::PermissionDenied => Unreadable::PermissionDenied,
            _ if e.raw_os_error() == Some(libc::ELOOP) => Unreadable::Symlink,
            _ => Unreadable::Io(e),
        }
    }
}

/// Reads one message of a Maildir or folder; `Err` says why it is set
/// aside. A symbolic link put in its place after the listing is not
/// followed (O_NOFOLLOW), and a FIFO does not block the run (O_NONBLOCK).
pub fn read_file(path: &Path) -> Result<Message, Unreadable> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(Unreadable::NotAFile);
    }
    if meta.len() > MAX_MESSAGE as u64 {
        return Err(Unreadable::TooBig);
    }
    // Through the one bounded reader: never more than the cap in memory.
    let bytes = crate::limits::read_bounded(file, MAX_MESSAGE as u64)?.ok_or(Unreadable::TooBig)?;
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

/// Reads one line (up to and with its `\n`) into `line`, keeping at most
/// `max` bytes of it: a line without line breaks takes no more memory than
/// that, however long. Returns the bytes the line had in the file (0 at
/// the end).
fn read_line_bounded(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let buf = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(total);
        }
        let (chunk, done) = match memchr::memchr(b'\n', buf) {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        let room = max.saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let n = chunk.len();
        total += n;
        reader.consume(n);
        if done {
            return Ok(total);
        }
    }
}

/// Calls `each` with every message of an mbox file (mboxrd: `>From ` lines
/// unquoted), one at a time. A message over [`MAX_MESSAGE`] is set aside,
/// and never takes more memory than that. An error `each` returns stops
/// the reading and is handed back.
pub fn mbox<E: From<InputError>>(
    path: &Path,
    mut each: impl FnMut(Incoming) -> Result<(), E>,
) -> Result<(), E> {
    let file = std::fs::File::open(path)
        .map_err(|e| InputError::new(path, None, format!("cannot read this mbox file ({e})")))?;
    let mut reader = BufReader::new(file);
    let mut current: Option<Vec<u8>> = None;
    let mut oversized = false;
    let mut n = 0;
    let mut line = Vec::new();
    let mut previous_blank = true;
    loop {
        line.clear();
        let read = read_line_bounded(&mut reader, &mut line, MAX_MESSAGE + 1)
            .map_err(|e| InputError::new(path, None, format!("cannot read ({e})")))?;
        let starts = read > 0 && previous_blank && line.starts_with(b"From ");
        if read == 0 || starts {
            if let Some(bytes) = current.take() {
                n += 1;
                let name = format!("mbox:{n}");
                each(if oversized {
                    Incoming::SetAside {
                        name,
                        why: Unreadable::TooBig.to_string(),
                    }
                } else {
                    Incoming::Message(Message {
                        name,
                        bytes,
                        place: Place::Other,
                    })
                })?;
            }
            if read == 0 {
                return Ok(());
            }
            current = Some(Vec::new());
            oversized = false;
            previous_blank = false;
            continue;
        }
        previous_blank = line == b"\n" || line == b"\r\n";
        let Some(buf) = current.as_mut() else {
            // Text before the first "From " line is not a message.
            continue;
        };
        if oversized || buf.len() + read > MAX_MESSAGE {
            // Set aside; what was kept is let go now.
            oversized = true;
            *buf = Vec::new();
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
            if let Incoming::Message(m) = m {
                got.push((m.name, String::from_utf8(m.bytes).unwrap()));
            }
            Ok::<(), InputError>(())
        })
        .unwrap();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].1, "Subject: one\n\nFrom the start\nbody\n\n");
        assert_eq!(
            got[1].1,
            "Subject: two\n\ntext\nFrom mid-paragraph is body\n"
        );
    }

    /// Why a message is set aside, in the words the list shows.
    #[test]
    fn a_message_that_cannot_be_read_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let why = |p: &Path| read_file(p).err().map(|e| e.to_string());
        assert_eq!(
            why(&dir.path().join("gone")).as_deref(),
            Some("vanished before herald read it (moved or deleted by another program)")
        );
        assert_eq!(why(dir.path()).as_deref(), Some("not a regular file"));
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
        assert_eq!(
            why(&dir.path().join("link")).as_deref(),
            Some("a symbolic link: not followed (move the message itself into the Maildir)")
        );
        let big = dir.path().join("big");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(MAX_MESSAGE as u64 + 1)
            .unwrap();
        assert_eq!(
            why(&big).as_deref(),
            Some(
                "larger than 8 MiB, so not read: a bounce is a few KB; look at it in a mail program"
            )
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
        let m = read_file(files[0].path()).unwrap();
        m.mark_handled().unwrap();
        assert!(dir.path().join("cur/123.abc:2,S").is_file());
        assert!(!dir.path().join("new/123.abc").exists());
    }
}

#[cfg(test)]
mod bounded {
    use super::*;

    #[test]
    fn a_line_without_breaks_keeps_at_most_the_cap() {
        let data = vec![b'x'; 100_000];
        let mut r = std::io::BufReader::with_capacity(1024, &data[..]);
        let mut line = Vec::new();
        assert_eq!(read_line_bounded(&mut r, &mut line, 10).unwrap(), 100_000);
        assert_eq!(line.len(), 10);
    }
}
