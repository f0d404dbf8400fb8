//! Stage 5: a subscriber CSV becomes a stream of [`Recipient`]s.
//!
//! The file is read as a stream: a million rows never sit in memory at once.
//! Only a 128-bit fingerprint of each address is kept, to drop duplicates.
//!
//! Two kinds of trouble are told apart:
//! - a broken file (no `email` column, a row with the wrong number of
//!   fields, text that is not UTF-8) is refused, with every bad line named,
//!   before anything is written: a half-read list would mail the wrong people;
//! - a bad person (an invalid address, a duplicate, someone unsubscribed,
//!   bounced or on the suppression list) is skipped and reported by line.

use std::collections::HashSet;
use std::fs::File;
use std::hash::{BuildHasher, Hash, Hasher};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::InputError;

/// One person to mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The line of the CSV the row starts on (1 is the header).
    pub line: u64,
    /// The address as it will be used: trimmed, domain in lower case.
    pub email: String,
    /// The column names, shared by every recipient of the file.
    pub columns: Arc<Vec<String>>,
    /// The row's values, in the order of `columns`, trimmed.
    pub values: Vec<String>,
}

impl Recipient {
    /// A merge field's value: any column by its (normalised) name, plus
    /// `email` and `name` (first and last name together).
    pub fn field(&self, name: &str) -> Option<&str> {
        if name == "email" {
            return Some(&self.email);
        }
        self.columns
            .iter()
            .position(|c| c == name)
            .map(|i| self.values[i].as_str())
            .filter(|v| !v.is_empty())
    }

    /// "First Last", for the To: header; `None` when the list has no names.
    pub fn display_name(&self) -> Option<String> {
        if let Some(n) = self.field("name") {
            return Some(n.to_string());
        }
        let parts: Vec<&str> = [self.field("first_name"), self.field("last_name")]
            .into_iter()
            .flatten()
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    }

    /// A recipient from a bare address (`--to`), with no other fields.
    pub fn bare(email: &str) -> Recipient {
        Recipient {
            line: 0,
            email: email.to_string(),
            columns: Arc::new(Vec::new()),
            values: Vec::new(),
        }
    }
}

/// Why a row is not mailed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    InvalidAddress,
    Duplicate,
    Unsubscribed,
    Bounced,
    UnknownStatus,
    Suppressed,
    /// A name or subject longer than an e-mail header line may be.
    HeaderTooLong,
}

impl SkipReason {
    pub fn describe(self) -> &'static str {
        match self {
            SkipReason::InvalidAddress => "invalid address",
            SkipReason::HeaderTooLong => "name too long for an e-mail header",
            SkipReason::Duplicate => "listed twice (the first row is used)",
            SkipReason::Unsubscribed => "unsubscribed",
            SkipReason::Bounced => "bounced before",
            SkipReason::UnknownStatus => "status is not `subscribed`",
            SkipReason::Suppressed => "on the suppression list",
        }
    }

    /// Whether a send's journal records the row (added, then marked
    /// skipped, so `status` lists the person and the row takes a
    /// recipient number): someone the list or the suppression list leaves
    /// out. A bad address, a repeat or an unsendable header is no new
    /// person to record (a header too long is recorded where it is found,
    /// on a row to mail).
    pub fn is_recorded(self) -> bool {
        match self {
            SkipReason::Unsubscribed
            | SkipReason::Bounced
            | SkipReason::Suppressed
            | SkipReason::UnknownStatus => true,
            SkipReason::InvalidAddress | SkipReason::Duplicate | SkipReason::HeaderTooLong => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub line: u64,
    pub email: String,
    pub reason: SkipReason,
    /// More about the reason, such as what is wrong with the address.
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Row {
    Send(Recipient),
    Skip(Skipped),
}

/// Addresses never to mail, from `--suppress` files and past hard bounces.
#[derive(Default)]
pub struct Suppression {
    keys: HashSet<u128>,
}

impl Suppression {
    /// Reads a suppression file: one address per line, or a CSV with an
    /// `email` column. Lines that are not addresses are ignored.
    pub fn load(path: &Path) -> Result<Suppression, InputError> {
        let mut s = Suppression::default();
        s.add_file(path)?;
        Ok(s)
    }

    pub fn add_file(&mut self, path: &Path) -> Result<(), InputError> {
        let file = File::open(path).map_err(|e| {
            InputError::new(
                path,
                None,
                format!("cannot read the suppression list ({e})"),
            )
        })?;
        // Capped per line: a file with no line ends is refused, not read
        // into one ever-growing line.
        let mut reader = BufReader::new(crate::limits::LineCapped::new(
            file,
            crate::limits::MAX_LINE_BYTES,
        ));
        let mut first = String::new();
        reader
            .read_line(&mut first)
            .map_err(|e| InputError::new(path, Some(1), format!("cannot read ({e})")))?;
        let header = normalise_columns(&csv_split(&first));
        let email_col = header.iter().position(|c| c == "email");
        let take = |line: &str, s: &mut Suppression| {
            let field = match email_col {
                Some(i) => csv_split(line).get(i).cloned().unwrap_or_default(),
                None => line.trim().to_string(),
            };
            if let Ok(addr) = normalise_address(&field) {
                s.insert(&addr);
            }
        };
        if email_col.is_none() {
            take(&first, self);
        }
        for (n, line) in reader.lines().enumerate() {
            let line = line.map_err(|e| {
                // The line cap's error carries its own advice.
                let fix = if e.get_ref().is_some() {
                    ""
                } else {
                    "; save the file as UTF-8"
                };
                InputError::new(
                    path,
                    Some(n + 2),
                    format!("cannot read this line ({e}){fix}"),
                )
            })?;
            take(&line, self);
        }
        Ok(())
    }

    pub fn insert(&mut self, email: &str) {
        self.keys.insert(fingerprint(email));
    }

    pub fn contains(&self, email: &str) -> bool {
        self.keys.contains(&fingerprint(email))
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// A simple split for suppression files (addresses hold no commas).
fn csv_split(line: &str) -> Vec<String> {
    line.trim_start_matches('\u{feff}')
        .split([',', ';', '\t'])
        .map(|f| f.trim().trim_matches('"').trim().to_string())
        .collect()
}

/// 128 bits of two differently keyed SipHashes of the lower-cased address:
/// a million addresses take 16 MB, and a collision (1 in 10^27) is not a
/// practical concern.
fn fingerprint(email: &str) -> u128 {
    use std::hash::DefaultHasher;
    let lower = email.to_lowercase();
    let mut a = DefaultHasher::new();
    lower.hash(&mut a);
    let mut b = std::hash::BuildHasherDefault::<DefaultHasher>::default().build_hasher();
    0x9e37_79b9_7f4a_7c15_u64.hash(&mut b);
    lower.hash(&mut b);
    ((a.finish() as u128) << 64) | b.finish() as u128
}

/// Column names as herald uses them: trimmed, lower case, spaces and
/// dashes as `_`; `e-mail` and `email_address` are `email`.
pub fn normalise_columns(raw: &[String]) -> Vec<String> {
    raw.iter()
        .map(|c| {
            let c = c
                .trim()
                .trim_start_matches('\u{feff}')
                .trim()
                .to_lowercase();
            let c: String = c
                .chars()
                .map(|ch| if ch == ' ' || ch == '-' { '_' } else { ch })
                .collect();
            match c.as_str() {
                "e_mail" | "email_address" | "e_mail_address" | "mail" => "email".into(),
                "firstname" | "first" | "given_name" => "first_name".into(),
                "lastname" | "last" | "surname" | "family_name" => "last_name".into(),
                _ => c,
            }
        })
        .collect()
}

/// Why a text is not an e-mail address, said after the address: "`x` is
/// not an email address (has no @)".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("empty")]
    Empty,
    #[error("contains a space")]
    Space,
    #[error("has no @")]
    NoAt,
    #[error("the part before @ is empty or too long")]
    LocalLength,
    #[error("has more than one @")]
    SeveralAts,
    #[error("has a misplaced dot before @")]
    MisplacedDot,
    #[error("has a character addresses cannot contain")]
    BadCharacter,
    #[error("`{0}` is not a mail domain")]
    NotADomain(String),
    #[error("is longer than 254 characters")]
    TooLong,
}

/// Checks an address and returns it trimmed with its domain in lower case.
/// The rules are those every relay enforces: one `@`, a local part of at
/// most 64 characters without spaces, a domain with a dot and a real TLD.
pub fn normalise_address(raw: &str) -> Result<String, AddressError> {
    let s = raw.trim();
    // `Name <address>`, as mail programs export it.
    let s = match (s.rfind('<'), s.ends_with('>')) {
        (Some(i), true) => &s[i + 1..s.len() - 1],
        _ => s,
    }
    .trim();
    if s.is_empty() {
        return Err(AddressError::Empty);
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(AddressError::Space);
    }
    let Some((local, domain)) = s.rsplit_once('@') else {
        return Err(AddressError::NoAt);
    };
    if local.is_empty() || local.len() > 64 {
        return Err(AddressError::LocalLength);
    }
    if local.contains('@') && !(local.starts_with('"') && local.ends_with('"')) {
        return Err(AddressError::SeveralAts);
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(AddressError::MisplacedDot);
    }
    if local.chars().any(|c| "(),:;<>[\\]".contains(c)) && !local.starts_with('"') {
        return Err(AddressError::BadCharacter);
    }
    let domain = domain.to_lowercase();
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_alphanumeric() || c == '-')
    };
    if labels.len() < 2 || !labels.iter().all(label_ok) {
        return Err(AddressError::NotADomain(domain));
    }
    let tld = labels.last().expect("two labels at least");
    if tld.len() < 2 || tld.chars().all(|c| c.is_ascii_digit()) {
        return Err(AddressError::NotADomain(domain));
    }
    if s.len() > 254 {
        return Err(AddressError::TooLong);
    }
    Ok(format!("{local}@{domain}"))
}

/// The subscriber list, read as a stream of rows.
pub struct Audience {
    path: PathBuf,
    reader: csv::Reader<LineEndings<BufReader<File>>>,
    columns: Arc<Vec<String>>,
    email_col: usize,
    status_col: Option<usize>,
    dedup: Dedup,
    suppression: Arc<Suppression>,
    record: csv::StringRecord,
    blank: Blanks,
    /// [`validate`]'s read: the first 64 bits of each address a row's
    /// status leaves out (see [`Checked::status_and_send`]).
    statused: Option<Vec<u64>>,
}

/// A header of one column that holds `;` and an email-ish name (German
/// and French Excel save "CSV" with semicolons): what to do about it.
fn semicolons(columns: &[String]) -> Option<String> {
    let [only] = columns else { return None };
    let names: Vec<String> = only.split(';').map(str::to_string).collect();
    (names.len() > 1 && normalise_columns(&names).iter().any(|c| c == "email")).then(|| {
        "the list seems to be separated by semicolons (`;`), as Excel saves it in some \
         countries; herald reads commas. Save it again as \"CSV UTF-8 (comma delimited)\", \
         or export it from Google Sheets or LibreOffice with commas"
            .to_string()
    })
}

/// Opens a subscriber CSV and checks its header.
pub fn open(path: &Path, suppression: Arc<Suppression>) -> Result<Audience, InputError> {
    let file = File::open(path).map_err(|e| {
        InputError::new(
            path,
            None,
            format!("cannot read the subscriber list ({e}). Check the file name."),
        )
    })?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(LineEndings::new(BufReader::with_capacity(256 * 1024, file)));
    let blank = reader.get_ref().blank.clone();
    let header = reader
        .headers()
        .map_err(|e| csv_error(path, &e, Some(1)))?
        .clone();
    let columns = normalise_columns(&header.iter().map(str::to_string).collect::<Vec<_>>());
    let email_col = columns.iter().position(|c| c == "email").ok_or_else(|| {
        if let Some(hint) = semicolons(&columns) {
            return InputError::new(path, Some(1), hint);
        }
        InputError::new(
            path,
            Some(1),
            format!(
                "the first line must name the columns, one of them `email`; it has {}. \
                 Add a header line such as `email,first_name,last_name`.",
                if columns.iter().all(|c| c.is_empty()) {
                    "none".to_string()
                } else {
                    columns
                        .iter()
                        .map(|c| format!("`{c}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
        )
    })?;
    let status_col = columns.iter().position(|c| c == "status");
    Ok(Audience {
        path: path.to_path_buf(),
        reader,
        columns: Arc::new(columns),
        email_col,
        status_col,
        dedup: Dedup::Every(HashSet::new()),
        suppression,
        record: csv::StringRecord::new(),
        blank,
        statused: None,
    })
}

/// Turns CRLF (and lone CR) line endings into LF as the file is read, and
/// notes where blank lines are. The csv crate counts lines by LF, places a
/// CRLF record's start on the LF, and counts a record's start from before
/// the blank lines it skips: without this, the line numbers reported for a
/// Windows-made list, or one with blank lines, would be off.
/// The longest line a subscriber list may have (a row is a few hundred bytes).
pub const MAX_LINE: usize = crate::limits::MAX_LINE_BYTES;

/// Where the blank lines are, shared by the reader that finds them and the
/// list that numbers its rows. Behind a mutex (never contended: one
/// thread reads a list) so that a list being read can move to another
/// thread: a dry run's queue reads it on the run's blocking pool.
type Blanks = Arc<std::sync::Mutex<std::collections::VecDeque<u64>>>;

fn lock_blanks(b: &Blanks) -> std::sync::MutexGuard<'_, std::collections::VecDeque<u64>> {
    b.lock().unwrap_or_else(|p| p.into_inner())
}

pub struct LineEndings<R> {
    inner: R,
    /// The last byte was a CR (already written out as LF).
    pending_cr: bool,
    /// Bytes since the last line end: a file with no line ends
    /// (`--subscribers /dev/zero`) made the csv reader grow one record
    /// until memory ran out, and the process aborted.
    line_len: usize,
    /// Offset (in the LF stream) of the next byte, and whether the last was LF.
    pos: u64,
    last_lf: bool,
    /// Offsets of the LF of each blank line, not yet passed by the reader.
    blank: Blanks,
}

impl<R: std::io::Read> LineEndings<R> {
    pub fn new(inner: R) -> Self {
        LineEndings {
            inner,
            pending_cr: false,
            line_len: 0,
            pos: 0,
            last_lf: true,
            blank: Default::default(),
        }
    }

    fn emit(&mut self, buf: &mut [u8], out: &mut usize, b: u8) {
        if b == b'\n' && self.last_lf {
            lock_blanks(&self.blank).push_back(self.pos);
        }
        self.last_lf = b == b'\n';
        self.line_len = if b == b'\n' { 0 } else { self.line_len + 1 };
        buf[*out] = b;
        *out += 1;
        self.pos += 1;
    }
}

impl<R: std::io::Read> std::io::Read for LineEndings<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.inner.read(buf)?;
            if n == 0 {
                return Ok(0);
            }
            let mut out = 0;
            for i in 0..n {
                let b = buf[i];
                // A CR ends the line at once and swallows the LF right
                // after it (which may come in the next read). Each byte
                // read gives at most one byte out, so `out <= i` and
                // writing behind the read position is safe. (Emitting the
                // line end only on the byte after a CR wrote two bytes for
                // one when the CR ended the previous read: the fuzzer found
                // it as an index out of bounds.)
                if std::mem::take(&mut self.pending_cr) && b == b'\n' {
                    continue;
                }
                if b == b'\r' {
                    self.pending_cr = true;
                    self.emit(buf, &mut out, b'\n');
                } else {
                    self.emit(buf, &mut out, b);
                }
            }
            if self.line_len > MAX_LINE {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "a line is longer than {} MB: is this the subscriber list?",
                        MAX_LINE / (1024 * 1024)
                    ),
                ));
            }
            if out > 0 {
                return Ok(out);
            }
        }
    }
}

/// The true line of a record csv placed at `byte`, reported as `line`.
fn true_line(blank: &Blanks, byte: u64, line: u64) -> u64 {
    let mut q = lock_blanks(blank);
    while q.front().is_some_and(|&b| b < byte) {
        q.pop_front();
    }
    let mut skipped = 0;
    while q.front() == Some(&(byte + skipped)) {
        q.pop_front();
        skipped += 1;
    }
    line + skipped
}

fn csv_error(path: &Path, e: &csv::Error, line: Option<u64>) -> InputError {
    let line = line.map(|l| l as usize);
    let message = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!(
            "this row has {len} fields but the header has {expected_len}. \
             A value containing a comma must be in double quotes, like \"Austin, TX\"."
        ),
        csv::ErrorKind::Utf8 { .. } => {
            "this row is not UTF-8 text. Export the list as \"CSV UTF-8\" from your spreadsheet."
                .into()
        }
        _ => format!("this row cannot be read ({e}). Check its quotes and commas."),
    };
    InputError::new(path, line, message)
}

impl Audience {
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The next row, or `Err` for a broken row (the stream goes on after it).
    pub fn next_row(&mut self) -> Option<Result<Row, InputError>> {
        match self.reader.read_record(&mut self.record) {
            Ok(false) => None,
            Err(e) => {
                let line = e
                    .position()
                    .map(|p| true_line(&self.blank, p.byte(), p.line()));
                Some(Err(csv_error(&self.path, &e, line)))
            }
            Ok(true) => Some(Ok(self.row())),
        }
    }

    fn row(&mut self) -> Row {
        let line = self
            .record
            .position()
            .map_or(0, |p| true_line(&self.blank, p.byte(), p.line()));
        let raw = self.record.get(self.email_col).unwrap_or("");
        let skip = |reason, email: &str, detail: Option<String>| {
            Row::Skip(Skipped {
                line,
                email: email.to_string(),
                reason,
                detail,
            })
        };
        let email = match normalise_address(raw) {
            Ok(e) => e,
            Err(why) => return skip(SkipReason::InvalidAddress, raw, Some(why.to_string())),
        };
        if let Some(i) = self.status_col {
            let status = self.record.get(i).unwrap_or("").to_lowercase();
            if let Some(statused) = &mut self.statused
                && !matches!(status.as_str(), "" | "subscribed" | "active" | "confirmed")
            {
                statused.push((fingerprint(&email) >> 64) as u64);
            }
            match status.as_str() {
                "" | "subscribed" | "active" | "confirmed" => {}
                "unsubscribed" => return skip(SkipReason::Unsubscribed, &email, None),
                "bounced" | "cleaned" | "complained" => {
                    return skip(SkipReason::Bounced, &email, Some(status));
                }
                other => return skip(SkipReason::UnknownStatus, &email, Some(other.to_string())),
            }
        }
        if self.suppression.contains(&email) {
            return skip(SkipReason::Suppressed, &email, None);
        }
        if self.dedup.repeated(fingerprint(&email)) {
            return skip(SkipReason::Duplicate, &email, None);
        }
        Row::Send(Recipient {
            line,
            email,
            columns: Arc::clone(&self.columns),
            values: self.record.iter().map(str::to_string).collect(),
        })
    }
}

/// How a list read tells who is on it twice. A set of every address seen
/// grows with the list (a million took 32 MB, 48 MB while it doubled), so
/// [`validate`], which reads the list first anyway, notes which addresses
/// come back (8 bytes each while it reads, sorted in place), and the read
/// that follows keeps only those.
enum Dedup {
    /// Every address seen so far (a list read without [`validate`]).
    Every(HashSet<u128>),
    /// [`validate`]'s read: every address's first 64 bits, none repeated yet.
    Collect(Vec<u64>),
    /// A read after [`validate`]: only addresses it saw more than once.
    Repeats(Repeats, HashSet<u128>),
}

impl Dedup {
    /// Whether `key` (a [`fingerprint`]) was seen before in this read.
    fn repeated(&mut self, key: u128) -> bool {
        let short = (key >> 64) as u64;
        match self {
            Dedup::Every(seen) => !seen.insert(key),
            Dedup::Collect(all) => {
                all.push(short);
                false
            }
            Dedup::Repeats(repeats, seen) => repeats.0.contains(&short) && !seen.insert(key),
        }
    }
}

/// The addresses [`validate`] found more than once on a list (by their
/// first 64 bits: a rare extra one only costs a lookup, never a person).
#[derive(Clone, Default)]
pub struct Repeats(Arc<HashSet<u64>>);

/// A list [`validate`] read through without an error.
pub struct Checked {
    /// Rows that would be mailed.
    pub rows: u64,
    pub repeats: Repeats,
    /// Some address is on a row its status leaves out (unsubscribed,
    /// bounced) and on a row that would be mailed (or may be: compared by
    /// 64 bits). The journal's import knows a person by address, so such
    /// rows change each other (the later status wins, the first row keeps
    /// the place); a dry run that reads the list as it goes cannot tell
    /// ahead, and imports it instead.
    pub status_and_send: bool,
}

/// Opens a list [`validate`] checked: it tells duplicates by `repeats`
/// alone, so its memory does not grow with the list.
pub fn open_checked(
    path: &Path,
    suppression: Arc<Suppression>,
    repeats: &Repeats,
) -> Result<Audience, InputError> {
    let mut audience = open(path, suppression)?;
    audience.dedup = Dedup::Repeats(repeats.clone(), HashSet::new());
    Ok(audience)
}

/// Reads the whole list once without keeping it, to refuse a broken file
/// before anything is written; notes who is on it more than once, for
/// [`open_checked`].
pub fn validate(path: &Path, suppression: Arc<Suppression>) -> Result<Checked, Vec<InputError>> {
    let mut audience = open(path, suppression).map_err(|e| vec![e])?;
    audience.dedup = Dedup::Collect(Vec::new());
    audience.statused = Some(Vec::new());
    let mut errors = Vec::new();
    while let Some(row) = audience.next_row() {
        if let Err(e) = row {
            errors.push(e);
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let Dedup::Collect(mut all) =
        std::mem::replace(&mut audience.dedup, Dedup::Every(HashSet::new()))
    else {
        unreachable!("set above")
    };
    all.sort_unstable();
    let mut repeats = HashSet::new();
    let mut rows = all.len() as u64;
    for pair in all.windows(2) {
        if pair[0] == pair[1] {
            repeats.insert(pair[0]);
            rows -= 1;
        }
    }
    let status_and_send = audience
        .statused
        .unwrap_or_default()
        .iter()
        .any(|f| all.binary_search(f).is_ok());
    Ok(Checked {
        rows,
        repeats: Repeats(Arc::new(repeats)),
        status_and_send,
    })
}

#[cfg(test)]
#[path = "audience_tests.rs"]
mod tests;
