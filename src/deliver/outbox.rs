//! The dry-run outbox: one `.eml` file per recipient plus `manifest.json`,
//! written as a stream so a million recipients never sit in memory.
//! [`OutboxMailer`] is the Mailer a dry run hands the engine: the messages
//! are exactly what SMTP would get, written instead of sent.

use std::ffi::CStr;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;

use super::{Failure, Gate, Mailer, Outgoing};

use crate::deliver::audience::Skipped;
use crate::deliver::message::Built;

pub struct Outbox {
    dir: PathBuf,
    /// The folder, open: each message's file is created relative to it
    /// (`openat`), so the kernel looks up one name per file, not every
    /// folder of the outbox's path again.
    folder: File,
    /// The file name being written, NUL-ended for `openat`; reused.
    name: Vec<u8>,
    manifest: BufWriter<File>,
    /// `skipped.csv`; `None` while lent to a dry run's queue (see
    /// [`Outbox::lend_skips`]).
    skipped: Option<SkipList>,
    written: u64,
    largest: usize,
    largest_html: usize,
}

#[derive(Serialize)]
struct ManifestEntry<'a> {
    recipient: &'a str,
    file: &'a str,
    message_id: &'a str,
    size: usize,
}

impl Outbox {
    /// Creates the outbox folder, or reuses one: an empty folder, or the
    /// outbox of an earlier dry run of the same campaign, whose messages,
    /// manifest and skipped list are replaced so the folder holds exactly
    /// this run. A folder holding anything else is refused: herald never
    /// deletes files it did not write.
    pub fn create(dir: &Path, campaign: &str) -> io::Result<Outbox> {
        std::fs::create_dir_all(dir)?;
        let marker = dir.join(MARKER);
        // Capped: a large file (or a link to /dev/zero) under the marker's
        // name is refused with its name, not read until memory runs out.
        let ours =
            match marker.symlink_metadata() {
                Err(_) => false,
                Ok(_) => crate::limits::read_capped_or(
                    &marker,
                    crate::limits::MAX_OUTBOX_MARKER_BYTES,
                    "herald outbox marker",
                    "herald's marker holds one line. Choose an empty or new folder with --outbox.",
                )
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?
                .trim_ascii()
                    == campaign.as_bytes(),
            };
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            entries.push(entry?.path());
        }
        if !ours && !entries.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "the folder already holds files herald did not write for this issue (like {}), and herald \
                 never deletes those; choose an empty or new folder with --outbox",
                    entries[0]
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                ),
            ));
        }
        for p in entries {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if is_our_message(name) || name == "manifest.json" || name == "skipped.csv" {
                std::fs::remove_file(&p)?;
            }
        }
        std::fs::write(&marker, format!("{campaign}\n"))?;
        let mut manifest = BufWriter::new(File::create(dir.join("manifest.json"))?);
        manifest.write_all(b"[\n")?;
        let mut skipped = BufWriter::new(File::create(dir.join("skipped.csv"))?);
        skipped.write_all(b"line,email,reason,detail\n")?;
        Ok(Outbox {
            dir: dir.to_path_buf(),
            folder: File::open(dir)?,
            name: Vec::with_capacity(128),
            manifest,
            skipped: Some(SkipList { file: skipped }),
            written: 0,
            largest: 0,
            largest_html: 0,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn write(&mut self, built: &Built) -> io::Result<()> {
        self.written += 1;
        self.name.clear();
        write!(self.name, "{:07}-", self.written)?;
        push_file_safe(&mut self.name, &built.to);
        self.name.extend_from_slice(b".eml\0");
        let name = CStr::from_bytes_with_nul(&self.name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut file = create_in(&self.folder, name)?;
        file.write_all(&built.bytes)?;
        drop(file);
        if self.written > 1 {
            self.manifest.write_all(b",\n")?;
        }
        let name = std::str::from_utf8(&self.name[..self.name.len() - 1])
            .expect("digits and file_safe characters are ASCII");
        serde_json::to_writer(
            &mut self.manifest,
            &ManifestEntry {
                recipient: &built.to,
                file: name,
                message_id: &built.message_id,
                size: built.bytes.len(),
            },
        )?;
        self.largest = self.largest.max(built.bytes.len());
        self.largest_html = self.largest_html.max(built.html_bytes);
        Ok(())
    }

    pub fn skip(&mut self, s: &Skipped) -> io::Result<()> {
        match &mut self.skipped {
            Some(list) => list.skip(s),
            None => Err(io::Error::other("skipped.csv is lent to the run's queue")),
        }
    }

    /// `skipped.csv`, for a dry run's queue that reads the list while the
    /// messages are written (the files go to the outbox's writer thread,
    /// the skipped rows stay with the queue); [`Outbox::give_back_skips`]
    /// before anything else is skipped here.
    pub fn lend_skips(&mut self) -> Option<SkipList> {
        self.skipped.take()
    }

    pub fn give_back_skips(&mut self, list: SkipList) {
        self.skipped = Some(list);
    }

    /// Closes the manifest; returns (messages written, largest message,
    /// largest HTML part), sizes in bytes.
    pub fn finish(mut self) -> io::Result<(u64, usize, usize)> {
        self.manifest.write_all(b"\n]\n")?;
        self.manifest.flush()?;
        if let Some(list) = &mut self.skipped {
            list.file.flush()?;
        }
        Ok((self.written, self.largest, self.largest_html))
    }
}

/// The outbox's `skipped.csv`: one line per row left out.
pub struct SkipList {
    file: BufWriter<File>,
}

impl SkipList {
    pub fn skip(&mut self, s: &Skipped) -> io::Result<()> {
        let field = |v: &str| format!("\"{}\"", v.replace('"', "\"\""));
        writeln!(
            self.file,
            "{},{},{},{}",
            s.line,
            field(&s.email),
            s.reason.describe().replace(',', ";"),
            field(s.detail.as_deref().unwrap_or(""))
        )
    }
}

/// Names the campaign whose dry run wrote the folder.
const MARKER: &str = ".herald-outbox";

/// `0000042-someone@example.org.eml`, as [`Outbox::write`] names them.
fn is_our_message(name: &str) -> bool {
    let b = name.as_bytes();
    name.ends_with(".eml") && b.len() > 8 && b[..7].iter().all(u8::is_ascii_digit) && b[7] == b'-'
}

/// An address as a file name: letters, digits, `@._-+` kept, the rest
/// `_` (one per character, of the first 100), pushed onto `name`.
fn push_file_safe(name: &mut Vec<u8>, email: &str) {
    name.extend(email.chars().take(100).map(|c| {
        if c.is_ascii_alphanumeric() || "@._-+".contains(c) {
            c as u8
        } else {
            b'_'
        }
    }));
}

/// Creates (or empties) the file `name` in `folder`, for writing, as
/// `File::create` would (mode 0666 less the umask, closed on exec).
fn create_in(folder: &File, name: &CStr) -> io::Result<File> {
    // SAFETY: `name` is NUL-ended and outlives the call; `folder` is an
    // open descriptor for the call's length. The descriptor returned is
    // new and owned by nobody else, so the File may own (and close) it.
    const MODE: libc::c_uint = 0o666;
    unsafe {
        let fd = libc::openat(
            folder.as_raw_fd(),
            name.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            MODE,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(File::from_raw_fd(fd))
    }
}

/// Messages handed to the outbox's writer thread at once: each hand-over
/// can wake the thread (a switch of threads), so not one at a time; and
/// few, as every message handed over is in memory until it is written
/// (at most three hand-overs: the one being gathered, one waiting, the one
/// being written; 24 messages of about 33 KB for the example issue).
const HAND_OVER: usize = 8;

/// The outbox as a Mailer. Clones share the same folder and manifest.
///
/// The files are written by a thread of their own, in the order the
/// messages are handed to it (a dry run has one connection, so the list's
/// order): creating and writing a file is mostly the kernel's work (about
/// a third of a dry run's time on /dev/shm, `perf record`), which now runs
/// on the second core while the run's thread builds the next messages, as
/// the release before dry runs went through the engine could not.
#[derive(Clone)]
pub struct OutboxMailer {
    inner: Arc<Inner>,
    dir: PathBuf,
}

struct Inner {
    /// Messages not yet handed to the writer.
    gathered: Mutex<Vec<Arc<Built>>>,
    writer: tokio::sync::mpsc::Sender<Vec<Arc<Built>>>,
    /// Why the writer stopped (a file could not be written).
    failed: Arc<OnceLock<String>>,
    thread: Mutex<Option<std::thread::JoinHandle<io::Result<Outbox>>>>,
}

impl OutboxMailer {
    /// The outbox with its writer thread started.
    pub fn new(outbox: Outbox) -> io::Result<OutboxMailer> {
        let dir = outbox.dir().to_path_buf();
        let (writer, batches) = tokio::sync::mpsc::channel(1);
        let failed = Arc::new(OnceLock::new());
        let stopped = Arc::clone(&failed);
        let thread = std::thread::Builder::new()
            .name("herald-outbox".into())
            .spawn(move || write_batches(outbox, batches, &stopped))?;
        Ok(OutboxMailer {
            inner: Arc::new(Inner {
                gathered: Mutex::new(Vec::with_capacity(HAND_OVER)),
                writer,
                failed,
                thread: Mutex::new(Some(thread)),
            }),
            dir,
        })
    }

    /// The outbox back once the engine is done with it (`None` while a
    /// clone is still held), every message handed over written; or why a
    /// file could not be written. Not from inside a runtime: it waits for
    /// the writer thread.
    pub fn into_inner(self) -> Option<io::Result<Outbox>> {
        let Inner {
            gathered,
            writer,
            failed: _,
            thread,
        } = Arc::into_inner(self.inner)?;
        let rest = gathered.into_inner().unwrap_or_else(|p| p.into_inner());
        if !rest.is_empty() {
            // Refused only when the writer stopped: its error says why.
            let _ = writer.blocking_send(rest);
        }
        // The writer ends once it has written what it was handed.
        drop(writer);
        let thread = thread.into_inner().unwrap_or_else(|p| p.into_inner())?;
        Some(match thread.join() {
            Ok(done) => done,
            Err(panic) => std::panic::resume_unwind(panic),
        })
    }

    fn broken(&self) -> Failure {
        let why = self
            .inner
            .failed
            .get()
            .cloned()
            .unwrap_or_else(|| "the writer stopped".into());
        Failure::broken(format!(
            "cannot write to the outbox {} ({why})",
            self.dir.display()
        ))
    }
}

/// The writer thread: writes every batch it is handed, in order, until
/// the mailer lets go of it; stops at the first file it cannot write, and
/// says why in `failed` (the run then stops: a file that cannot be written
/// will not be written on a retry either, a full disk, a folder gone).
fn write_batches(
    mut outbox: Outbox,
    mut batches: tokio::sync::mpsc::Receiver<Vec<Arc<Built>>>,
    failed: &OnceLock<String>,
) -> io::Result<Outbox> {
    while let Some(batch) = batches.blocking_recv() {
        for built in batch {
            if let Err(e) = outbox.write(&built) {
                let _ = failed.set(e.to_string());
                return Err(e);
            }
        }
    }
    Ok(outbox)
}

impl Mailer for OutboxMailer {
    type Conn = ();
    /// Shared with the writer thread, not copied.
    type Payload = Arc<Built>;

    fn describe(&self) -> String {
        format!("the outbox {}", self.dir.display())
    }

    fn prepare(&self, built: Built) -> Arc<Built> {
        Arc::new(built)
    }

    fn leaves_the_machine(&self) -> bool {
        false
    }

    async fn connect(&self) -> Result<(), Failure> {
        Ok(())
    }

    /// Hands the message to the writer thread ("written" once handed
    /// over: a file that then cannot be written stops the run at the next
    /// hand-over, or fails the dry run at its end, see `into_inner`).
    async fn send(
        &self,
        _conn: &mut (),
        message: &Outgoing<Arc<Built>>,
        gate: &mut Gate,
    ) -> Result<String, Failure> {
        gate.pass().await?;
        if self.inner.failed.get().is_some() {
            return Err(self.broken());
        }
        let batch = {
            let mut gathered = self
                .inner
                .gathered
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            gathered.push(Arc::clone(&message.payload));
            if gathered.len() < HAND_OVER {
                return Ok("written".into());
            }
            std::mem::replace(&mut *gathered, Vec::with_capacity(HAND_OVER))
        };
        // Waits while the writer is a hand-over behind: a bounded
        // number of messages in memory, whatever the list.
        if self.inner.writer.send(batch).await.is_err() {
            return Err(self.broken());
        }
        Ok("written".into())
    }

    fn is_broken(&self, _conn: &()) -> bool {
        false
    }

    async fn quit(&self, _conn: ()) {}
}
