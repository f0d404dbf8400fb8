//! DKIM signatures (RFC 6376) over the exact bytes herald sends.
//!
//! herald signs the finished message (`Message::formatted()`), so every
//! header it writes can be signed: Content-Type and MIME-Version included,
//! which a signer that runs before the body is written cannot cover. A copy
//! whose Content-Type was changed to `multipart/mixed` (to show a hidden
//! part) must fail, and so must one with a second List-Unsubscribe, From or
//! Subject put on top: those are listed once more than they occur in `h=`
//! ("oversigned", RFC 6376 section 5.4.2), so an added copy is signed as
//! absent and breaks the signature.
//!
//! Canonicalization is relaxed/relaxed (section 3.4.2 and 3.4.4): it
//! survives relays that refold headers or trim trailing spaces. Algorithms:
//! `rsa-sha256` and `ed25519-sha256` (RFC 8463); with both keys configured
//! each message carries two signatures, so receivers that do not know
//! Ed25519 still find the RSA one.
//!
//! The keys are parsed once ([`Signer::new`]); per message there is one
//! pass over the body for the hash, one over the headers shared by all
//! keys, and one signature per key. Nothing about a key ever reaches an
//! error message but its file's name (and for RSA, its size or exponent).
//!
//! RSA signatures come from `aws-lc-rs` (AWS-LC, BoringSSL's descendant:
//! constant-time, with OpenSSL's assembly): 0.37 ms per RSA-2048
//! signature here, as `openssl speed rsa2048`, where `ring` took 0.65 ms
//! and the `rsa` crate 7 times longer (and is under the RUSTSEC-2023-0071
//! timing advisory). With RSA, signing is most of what a signed message
//! costs, so this is the signed send's speed. herald signs with two-prime
//! keys of 2048 to 4096 bits and the exponent 65537, which is what
//! `openssl` and `opendkim-genkey` make; any other RSA key is refused when
//! it is read, with the file, the reason and how to make a new key
//! ([`KeyError::RsaRefused`]). PKCS #1 v1.5 signatures are deterministic:
//! the same key and message give the same bytes whatever library signs.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_lc_rs::signature::KeyPair as _;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use crate::InputError;
use crate::config::{DkimAlgorithm, DkimKey};

/// Why a key file cannot sign.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Unreadable, not text, not a private key, the public half or the DNS
    /// record, or a kind of key DKIM does not know.
    #[error(transparent)]
    Unusable(#[from] InputError),
    /// A well-formed RSA key that herald does not sign with: its size, its
    /// exponent or its shape (see the module's documentation).
    #[error("{}: {problem}", file.display())]
    RsaRefused {
        file: PathBuf,
        /// The modulus in bits, as [`Key::rsa_bits`] counts them.
        bits: usize,
        problem: String,
    },
}

impl KeyError {
    /// The size of a refused RSA key, for `herald check`'s warnings.
    pub fn rsa_bits(&self) -> Option<usize> {
        match self {
            KeyError::RsaRefused { bits, .. } => Some(*bits),
            KeyError::Unusable(_) => None,
        }
    }

    /// What to do about a refused RSA key, naming the settings of `setting`
    /// (`None` for the other errors: their message says it).
    pub fn new_key_fix(&self, setting: &DkimKey) -> Option<String> {
        match self {
            KeyError::RsaRefused { .. } => Some(make_a_new_key(setting)),
            KeyError::Unusable(_) => None,
        }
    }

    /// The error a send stops with: the problem and the fix in one message.
    pub fn into_input_error(self, setting: &DkimKey) -> InputError {
        match self {
            KeyError::RsaRefused { file, problem, .. } => InputError::new(
                &file,
                None,
                format!("{problem}. {}", make_a_new_key(setting)),
            ),
            KeyError::Unusable(e) => e,
        }
    }
}

/// How to replace a key herald does not sign with.
fn make_a_new_key(setting: &DkimKey) -> String {
    format!(
        "Make a 2048-bit RSA key (`opendkim-genkey -b 2048 -d DOMAIN -s SELECTOR`, or \
         `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`), publish its DNS record \
         under a new selector, and set `{}` and `{}` to them (see the README's DKIM section).",
        setting.selector_setting, setting.key_file_setting
    )
}

/// A signature could not be made (only a damaged key or a fault in the
/// machine does this: each key signed once already when it was read).
#[derive(Debug, thiserror::Error)]
#[error(
    "the {algorithm} DKIM signature with the key of selector `{selector}` failed; make a new key"
)]
pub struct SignError {
    algorithm: DkimAlgorithm,
    selector: String,
}

/// How a header is listed in `h=`.
#[derive(Clone, Copy)]
enum Listing {
    /// Once per occurrence, and once more: a copy added in transit (on
    /// top, where mail programs read it) breaks the signature.
    Oversign,
    /// Oversigned when the message has it; not listed when it has none,
    /// so a list server adding one later does not break the signature.
    OversignIfPresent,
    /// Once per occurrence.
    AsPresent,
}

/// What herald signs, in `h=` order. Not Received, Return-Path or other
/// trace headers: relays add and rewrite those, and a signature over them
/// would break on the way.
const SIGNED: &[(&str, Listing)] = &[
    ("From", Listing::Oversign),
    ("To", Listing::Oversign),
    ("Subject", Listing::Oversign),
    ("Date", Listing::Oversign),
    ("Message-ID", Listing::Oversign),
    ("Reply-To", Listing::OversignIfPresent),
    ("List-Id", Listing::Oversign),
    ("List-Unsubscribe", Listing::Oversign),
    ("List-Unsubscribe-Post", Listing::Oversign),
    ("Feedback-ID", Listing::Oversign),
    ("Precedence", Listing::AsPresent),
    ("MIME-Version", Listing::Oversign),
    ("Content-Type", Listing::Oversign),
];

/// Lines of the signature header are kept under this many characters
/// (RFC 5322 asks for 78; a token longer than a line, like a very long
/// selector, stays whole).
const LINE: usize = 76;

/// A private key, parsed and ready to sign.
pub struct Key {
    selector: String,
    kind: KeyKind,
}

enum KeyKind {
    Rsa(Box<aws_lc_rs::rsa::KeyPair>),
    Ed25519(Box<aws_lc_rs::signature::Ed25519KeyPair>),
}

impl Key {
    pub fn algorithm(&self) -> DkimAlgorithm {
        match self.kind {
            KeyKind::Rsa(_) => DkimAlgorithm::Rsa,
            KeyKind::Ed25519(_) => DkimAlgorithm::Ed25519,
        }
    }

    /// The RSA modulus in bits; `None` for Ed25519.
    pub fn rsa_bits(&self) -> Option<usize> {
        match &self.kind {
            KeyKind::Rsa(k) => Some(k.public_modulus_len() * 8),
            KeyKind::Ed25519(_) => None,
        }
    }

    /// The public key, as DKIM's `p=` holds it before base64 (RFC 6376
    /// section 3.6.1, RFC 8463): for RSA the PKCS #1 RSAPublicKey, which
    /// records usually wrap in a SubjectPublicKeyInfo; for Ed25519 its 32 bytes.
    pub fn public_key(&self) -> Vec<u8> {
        match &self.kind {
            KeyKind::Rsa(k) => k.public_key().as_ref().to_vec(),
            KeyKind::Ed25519(k) => k.public_key().as_ref().to_vec(),
        }
    }

    fn a_tag(&self) -> &'static str {
        match self.kind {
            KeyKind::Rsa(_) => "a=rsa-sha256;",
            KeyKind::Ed25519(_) => "a=ed25519-sha256;",
        }
    }

    /// Signs the canonicalized headers `data` into `out` (room for the
    /// largest signature, [`MAX_SIGNATURE`] bytes) and returns its length:
    /// RSA with PKCS #1 v1.5 over their SHA-256; Ed25519, as RFC 8463 says,
    /// over that hash (not the headers) with PureEdDSA. The signature is
    /// deterministic (AWS-LC blinds the RSA operation with its own
    /// randomness).
    fn sign(
        &self,
        data: &[u8],
        rng: &dyn aws_lc_rs::rand::SecureRandom,
        out: &mut [u8; MAX_SIGNATURE],
    ) -> Result<usize, SignError> {
        match &self.kind {
            KeyKind::Rsa(k) => {
                // Checked when the key was read: 2048 to 4096 bits.
                let signature = &mut out[..k.public_modulus_len()];
                k.sign(
                    &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                    rng,
                    data,
                    signature,
                )
                .map_err(|_| SignError {
                    algorithm: DkimAlgorithm::Rsa,
                    selector: self.selector.clone(),
                })?;
                Ok(signature.len())
            }
            KeyKind::Ed25519(k) => {
                let signature = k.sign(&Sha256::digest(data));
                let signature = signature.as_ref();
                out[..signature.len()].copy_from_slice(signature);
                Ok(signature.len())
            }
        }
    }
}

/// The longest signature: an RSA-4096 one (the largest key herald reads).
const MAX_SIGNATURE: usize = 4096 / 8;

/// Signs messages for one domain with one or two keys.
pub struct Signer {
    domain: String,
    keys: Vec<Key>,
    rng: aws_lc_rs::rand::SystemRandom,
    /// How many bytes the last message's signature fields took: the room
    /// the next message leaves for its own (see [`Signer::signed_in_room`]).
    room: AtomicUsize,
}

impl Signer {
    /// Reads every configured key; an unreadable file, a file that is no
    /// key, or a key of another algorithm than the one configured for it
    /// is an error naming the file and the fix.
    pub fn new(domain: &str, keys: &[DkimKey]) -> Result<Signer, InputError> {
        let keys = keys
            .iter()
            .map(|k| {
                let key = load_key(&k.key_file, &k.selector).map_err(|e| e.into_input_error(k))?;
                check_algorithm(&key, k)?;
                Ok(key)
            })
            .collect::<Result<Vec<_>, InputError>>()?;
        Ok(Signer {
            domain: domain.trim_end_matches('.').to_string(),
            keys,
            rng: aws_lc_rs::rand::SystemRandom::new(),
            room: AtomicUsize::new(0),
        })
    }

    /// `message` (a complete message with CRLF line ends) with its
    /// `DKIM-Signature` header fields on top, one per key. `now` is the
    /// `t=` tag, in seconds since 1970.
    pub fn signed(&self, message: Vec<u8>, now: i64) -> Result<Vec<u8>, SignError> {
        self.signed_in_room(message, 0, now)
    }

    /// Whether the signature fields are ASCII: they are but for the
    /// domain and the selectors, which a config might write in UTF-8.
    pub fn is_ascii(&self) -> bool {
        self.domain.is_ascii() && self.keys.iter().all(|k| k.selector.is_ascii())
    }

    /// How many bytes to leave free at the front of the next message for
    /// its signature fields: as many as the last message's took. Their
    /// size depends only on the key, the domain, the selector and which
    /// headers the message has, so it is the same for a whole send.
    pub fn room(&self) -> usize {
        self.room.load(Ordering::Relaxed)
    }

    /// [`Signer::signed`] for the message in `message[room..]`, the first
    /// `room` bytes left free for the fields: when the fields take exactly
    /// that many (every message after the first), they are written there
    /// and the message is not copied (a copy of 30-60 KB and a buffer of
    /// that size per message); else the message is copied after them.
    pub fn signed_in_room(
        &self,
        mut message: Vec<u8>,
        room: usize,
        now: i64,
    ) -> Result<Vec<u8>, SignError> {
        let mut fields = Vec::with_capacity(self.keys.len() * 600);
        self.sign(&message[room..], now, &mut fields)?;
        self.room.store(fields.len(), Ordering::Relaxed);
        if fields.len() == room {
            message[..room].copy_from_slice(&fields);
            return Ok(message);
        }
        fields.reserve_exact(message.len() - room);
        fields.extend_from_slice(&message[room..]);
        Ok(fields)
    }

    /// Writes the `DKIM-Signature` header fields for `message` to `out`.
    fn sign(&self, message: &[u8], now: i64, out: &mut Vec<u8>) -> Result<(), SignError> {
        let (head, body) = split(message);
        let mut body_hash = Sha256::new();
        relaxed_body(&mut body_hash, body);
        let bh = STANDARD.encode(body_hash.finalize());

        let fields = fields(head);
        // The `h=` tag's pieces, the same for every key: "h=from:",
        // "from:", ..., "content-type;" (folding may go between them).
        let mut h_tag = String::with_capacity(SIGNED.len() * 24);
        let mut pieces: Vec<(usize, usize)> = Vec::with_capacity(SIGNED.len() * 2);
        // The canonical headers themselves, not their hash: AWS-LC hashes
        // what it signs. A few KB, kept for all keys.
        let mut headers: Vec<u8> = Vec::with_capacity(2048);
        for &(name, listing) in SIGNED {
            let is = |f: &&Field| f.name.eq_ignore_ascii_case(name.as_bytes());
            let present = fields.iter().filter(is).count();
            let listed = match listing {
                Listing::Oversign => present + 1,
                Listing::OversignIfPresent if present == 0 => 0,
                Listing::OversignIfPresent => present + 1,
                Listing::AsPresent => present,
            };
            // Section 5.4.2: the instances are taken from the bottom up;
            // a name listed more often than it occurs adds nothing.
            for f in fields.iter().rev().filter(is) {
                relaxed_header(&mut headers, f.name, f.value);
                headers.put(b"\r\n");
            }
            for _ in 0..listed {
                let from = h_tag.len();
                if pieces.is_empty() {
                    h_tag.push_str("h=");
                }
                h_tag.push_str(name);
                h_tag.push(':');
                pieces.push((from, h_tag.len()));
            }
        }
        if let Some(last) = h_tag.pop() {
            debug_assert_eq!(last, ':');
            h_tag.push(';');
        }

        let mut header = Folder::new("DKIM-Signature:");
        let mut tag = String::with_capacity(128);
        let mut signature = [0u8; MAX_SIGNATURE];
        let mut signature_text = [0u8; MAX_SIGNATURE.div_ceil(3) * 4];
        for key in &self.keys {
            header.start("DKIM-Signature:");
            for fixed in ["v=1;", key.a_tag(), "c=relaxed/relaxed;"] {
                header.word(fixed, true);
            }
            for (name, value) in [("d=", self.domain.as_str()), ("s=", &key.selector)] {
                tag.clear();
                tag.push_str(name);
                tag.push_str(value);
                tag.push(';');
                header.word(&tag, true);
            }
            tag.clear();
            // Writing into a String does not fail.
            let _ = write!(tag, "t={now};");
            header.word(&tag, true);
            for (i, &(from, to)) in pieces.iter().enumerate() {
                header.word(&h_tag[from..to], i == 0);
            }
            tag.clear();
            tag.push_str("bh=");
            tag.push_str(&bh);
            tag.push(';');
            header.word(&tag, true);
            header.word("b=", true);
            // The signature covers this header as it will be sent, with an
            // empty b= and no line end (section 3.7); then the headers are
            // the shared ones again for the next key.
            let shared = headers.len();
            let (name, value) = header.text.split_at("DKIM-Signature".len());
            relaxed_header(&mut headers, name.as_bytes(), &value.as_bytes()[1..]);
            let signed = key.sign(&headers, &self.rng, &mut signature);
            headers.truncate(shared);
            let length = STANDARD
                .encode_slice(&signature[..signed?], &mut signature_text)
                .expect("room for the base64 of the longest signature");
            // Base64 is ASCII.
            header.chunks(std::str::from_utf8(&signature_text[..length]).unwrap_or_default());
            out.extend_from_slice(header.text.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Ok(())
    }
}

/// Builds a header field folded into lines under [`LINE`] characters.
struct Folder {
    text: String,
    line: usize,
}

impl Folder {
    fn new(start: &str) -> Folder {
        // Room for a whole field, the RSA-4096 signature included: it is
        // written once, not grown by doubling.
        let mut text = String::with_capacity(1024);
        text.push_str(start);
        Folder {
            text,
            line: start.len(),
        }
    }

    /// Starts a new field with `start`, its name and colon, in the same
    /// buffer (the next key's field).
    fn start(&mut self, start: &str) {
        self.text.clear();
        self.text.push_str(start);
        self.line = start.len();
    }

    /// Adds `word`, after a space when `spaced`; starts a new line first
    /// when it would not fit (folding whitespace is allowed between tags
    /// and around the colons of `h=`).
    fn word(&mut self, word: &str, spaced: bool) {
        let room = LINE.saturating_sub(self.line);
        if word.len() + usize::from(spaced) > room && self.line > 1 {
            self.text.push_str("\r\n ");
            self.line = 1;
        } else if spaced {
            self.text.push(' ');
            self.line += 1;
        }
        self.text.push_str(word);
        self.line += word.len();
    }

    /// Adds base64 text, folded wherever the line is full (b= allows
    /// folding whitespace anywhere in its value).
    fn chunks(&mut self, mut s: &str) {
        while !s.is_empty() {
            let mut room = LINE.saturating_sub(self.line);
            if room == 0 {
                self.text.push_str("\r\n ");
                self.line = 1;
                room = LINE - 1;
            }
            let (now, rest) = s.split_at(room.min(s.len()));
            self.text.push_str(now);
            self.line += now.len();
            s = rest;
        }
    }
}

/// The header block (each field with its CRLF) and the body.
fn split(message: &[u8]) -> (&[u8], &[u8]) {
    if message.starts_with(b"\r\n") {
        return (&[], &message[2..]);
    }
    match CRLF_CRLF.find(message) {
        Some(i) => (&message[..i + 2], &message[i + 4..]),
        None => (message, &[]),
    }
}

struct Field<'a> {
    name: &'a [u8],
    /// Everything after the colon, folds included, without the final CRLF.
    value: &'a [u8],
}

/// The header fields in order. A line that is neither a field nor a
/// continuation is skipped: it cannot be signed, and herald never writes one.
fn fields<'a>(head: &'a [u8]) -> Vec<Field<'a>> {
    let mut out: Vec<Field<'a>> = Vec::with_capacity(24);
    let mut start = None::<usize>;
    let mut pos = 0;
    let finish = |from: usize, to: usize, out: &mut Vec<Field<'a>>| {
        let raw = &head[from..to];
        if let Some(colon) = memchr::memchr(b':', raw) {
            let name = raw[..colon].trim_ascii_end();
            if !name.is_empty() {
                out.push(Field {
                    name,
                    value: &raw[colon + 1..],
                });
            }
        }
    };
    while pos < head.len() {
        let end = line_end(head, pos).unwrap_or(head.len());
        let continues = matches!(head[pos], b' ' | b'\t');
        if !continues {
            if let Some(s) = start {
                finish(s, pos.saturating_sub(2).max(s), &mut out);
            }
            start = Some(pos);
        }
        pos = end + 2;
    }
    if let Some(s) = start {
        let end = if head.ends_with(b"\r\n") {
            head.len() - 2
        } else {
            head.len()
        };
        finish(s, end.max(s), &mut out);
    }
    out
}

/// Where canonical text goes: the body's hash, or a buffer (the headers,
/// which AWS-LC hashes itself, and tests).
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Sha256 {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Relaxed header canonicalization (section 3.4.2), without the line end:
/// the name lower-cased, the value unfolded, runs of spaces and tabs made
/// one space, none at either end, nothing around the colon.
fn relaxed_header(sink: &mut impl Sink, name: &[u8], value: &[u8]) {
    let mut lower = [0u8; 64];
    for chunk in name.chunks(lower.len()) {
        let buf = &mut lower[..chunk.len()];
        buf.copy_from_slice(chunk);
        buf.make_ascii_lowercase();
        sink.put(buf);
    }
    sink.put(b":");
    let mut space = false;
    let mut started = false;
    let mut i = 0;
    while i < value.len() {
        match value[i] {
            b' ' | b'\t' => {
                space = started;
                i += 1;
            }
            // Unfolding: the CRLF of a fold goes, its whitespace stays.
            b'\r' | b'\n' => i += 1,
            _ => {
                let from = i;
                while i < value.len() && !matches!(value[i], b' ' | b'\t' | b'\r' | b'\n') {
                    i += 1;
                }
                if space {
                    sink.put(b" ");
                }
                space = false;
                started = true;
                sink.put(&value[from..i]);
            }
        }
    }
}

/// Relaxed body canonicalization (section 3.4.4): runs of spaces and tabs
/// in a line made one space, none at line ends, no empty lines at the end,
/// and a CRLF after the last line. Streamed into `sink` in long stretches:
/// only a tab, two spaces in a row or a space before a line end change
/// anything, and herald's bodies have a few dozen of those in 30 KB, so
/// the text between them goes to the hash at once (a line at a time cost
/// more than the hash itself).
fn relaxed_body(sink: &mut impl Sink, body: &[u8]) {
    // Trailing whitespace and line ends go first: what is left ends in
    // text, so no line end inside it is followed only by empty lines.
    let mut end = body.len();
    loop {
        if body[..end].ends_with(b"\r\n") {
            end -= 2;
        } else if end > 0 && is_wsp(body[end - 1]) {
            end -= 1;
        } else {
            break;
        }
    }
    let text = &body[..end];
    if text.is_empty() {
        return;
    }
    // The next place each kind of change starts, searched again only once
    // passed (`None`: there is no more).
    let tabs = |from: usize| memchr::memchr(b'\t', &text[from..]).map(|i| from + i);
    let doubles = |from: usize| SPACES.find(&text[from..]).map(|i| from + i);
    let trailing = |from: usize| SPACE_CRLF.find(&text[from..]).map(|i| from + i);
    let (mut tab, mut double, mut before_crlf) = (tabs(0), doubles(0), trailing(0));
    let mut from = 0;
    while let Some(at) = [tab, double, before_crlf].into_iter().flatten().min() {
        // The run of spaces and tabs around `at`: a space just before a
        // tab belongs to it.
        let mut run = at;
        while run > from && is_wsp(text[run - 1]) {
            run -= 1;
        }
        let mut past = at;
        while past < text.len() && is_wsp(text[past]) {
            past += 1;
        }
        sink.put(&text[from..run]);
        // Never at the end of `text`, which ends in text: at a line end
        // the run goes, inside a line it is one space.
        if !text[past..].starts_with(b"\r\n") {
            sink.put(b" ");
        }
        from = past;
        if tab.is_some_and(|t| t < from) {
            tab = tabs(from);
        }
        if double.is_some_and(|d| d < from) {
            double = doubles(from);
        }
        if before_crlf.is_some_and(|c| c < from) {
            before_crlf = trailing(from);
        }
    }
    sink.put(&text[from..]);
    sink.put(b"\r\n");
}

/// Where the first "\r\n" at or after `from` starts in `head`: found by
/// its '\n', a memchr, which on a header line (tens of bytes) costs a
/// fraction of a two-byte memmem search (set up anew on every call); a
/// message's 26 header lines took ~5K instructions that way.
fn line_end(head: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    loop {
        let nl = at + memchr::memchr(b'\n', &head[at..])?;
        if nl > from && head[nl - 1] == b'\r' {
            return Some(nl - 1);
        }
        at = nl + 1;
    }
}

/// The end of the header (built once: `memmem::find` builds its searcher
/// on every call, ~1.6K instructions).
static CRLF_CRLF: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\r\n\r\n"));
/// Two spaces: the start of a run to make one (built once: `memmem::find`
/// builds its searcher on every call).
static SPACES: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"  "));
/// A space before a line end, which goes.
static SPACE_CRLF: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b" \r\n"));

/// The text for an algorithm in messages and settings.
fn kind_name(a: DkimAlgorithm) -> &'static str {
    match a {
        DkimAlgorithm::Rsa => "an RSA key",
        DkimAlgorithm::Ed25519 => "an Ed25519 key",
    }
}

/// The configured algorithm of `setting` against the key in its file: a
/// mismatch is an error naming the file and both ways to fix it.
pub fn check_algorithm(key: &Key, setting: &DkimKey) -> Result<(), InputError> {
    match setting.algorithm {
        Some(want) if want != key.algorithm() => Err(InputError::new(
            &setting.key_file,
            None,
            format!(
                "`{}` is {want}, but this file holds {}. Set `{}: {}`, or set `{}` to the file of {} \
                 (and publish that key under the selector `{}`)",
                setting.algorithm_setting,
                kind_name(key.algorithm()),
                setting.algorithm_setting,
                key.algorithm(),
                setting.key_file_setting,
                kind_name(want),
                setting.selector,
            ),
        )),
        _ => Ok(()),
    }
}

/// The DER of OID 1.3.101.112, id-Ed25519 (RFC 8410).
const ED25519_OID: &[u8] = &[0x2b, 0x65, 0x70];
/// The DER of OID 1.2.840.113549.1.1.1, rsaEncryption.
const RSA_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// Reads a DKIM private key: RSA (PKCS #1 PEM as `openssl genrsa` writes
/// it on older systems, or PKCS #8 PEM as `openssl genpkey` and
/// `opendkim-genkey` do) or Ed25519 (PKCS #8 PEM, or the base64 of the
/// 32-byte seed, or of seed and public key). Errors name the file, never
/// its content.
pub fn load_key(path: &Path, selector: &str) -> Result<Key, KeyError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{PrivatePkcs1KeyDer, PrivatePkcs8KeyDer};

    let err = |msg: &str| InputError::new(path, None, msg);
    // Capped: `dkim_key_file: /dev/zero` read until memory ran out.
    let bytes = crate::limits::read_key_file(path, "DKIM key")?;
    let text = String::from_utf8(bytes)
        .map_err(|_| err("the DKIM key is not text; it must be a PEM or base64 key"))?;
    let bad = || {
        err(
            "this is not a DKIM private key herald can use: it must be an RSA key (PEM, \
             `BEGIN RSA PRIVATE KEY` or `BEGIN PRIVATE KEY`) or an Ed25519 key (PEM or base64). \
             Make one with `opendkim-genkey` or `openssl genpkey` (see the README's DKIM section)",
        )
    };
    let key = |kind| Key {
        selector: selector.to_string(),
        kind,
    };
    let ed25519 = |seed: &[u8]| -> Result<Key, InputError> {
        if seed.len() != 32 {
            return Err(bad());
        }
        let pair =
            aws_lc_rs::signature::Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| bad())?;
        Ok(key(KeyKind::Ed25519(Box::new(pair))))
    };
    if text.contains("PUBLIC KEY-----") {
        return Err(err(
            "this is a public key; `dkim_key_file` needs the private key (the public one goes into DNS)",
        )
        .into());
    }
    if text.contains("BEGIN RSA PRIVATE KEY") {
        let der = PrivatePkcs1KeyDer::from_pem_slice(text.as_bytes()).map_err(|_| bad())?;
        return rsa_key(path, der.secret_pkcs1_der()).map(|k| key(KeyKind::Rsa(k)));
    }
    if text.contains("BEGIN PRIVATE KEY") {
        let der = PrivatePkcs8KeyDer::from_pem_slice(text.as_bytes()).map_err(|_| bad())?;
        let (oid, private_key) = pkcs8(der.secret_pkcs8_der()).ok_or_else(bad)?;
        return match oid {
            // The key is an OCTET STRING holding the 32-byte seed (RFC 8410).
            ED25519_OID => match private_key {
                [0x04, 0x20, seed @ ..] => Ok(ed25519(seed)?),
                _ => Err(bad().into()),
            },
            // The key is PKCS #1's RSAPrivateKey (RFC 8017, appendix A.1.2).
            RSA_OID => rsa_key(path, private_key).map(|k| key(KeyKind::Rsa(k))),
            _ => Err(err(
                "this private key is neither RSA nor Ed25519, the two kinds DKIM receivers know; \
                 make an RSA key with `openssl genrsa 2048` or `opendkim-genkey`",
            )
            .into()),
        };
    }
    if text.contains("v=DKIM1") || text.contains("p=MI") {
        return Err(err(
            "this is the DNS record (the public key); `dkim_key_file` needs the private key",
        )
        .into());
    }
    if text.contains("-----BEGIN") {
        return Err(bad().into());
    }
    let raw = STANDARD.decode(text.trim()).map_err(|_| bad())?;
    match raw.len() {
        32 => Ok(ed25519(&raw)?),
        // Seed then public key (libsodium, dkimpy's dknewkey): the public
        // half must belong to the seed, else the file is not what it seems.
        64 => {
            let key = ed25519(&raw[..32])?;
            match &key.kind {
                KeyKind::Ed25519(k) if k.public_key().as_ref() == &raw[32..] => Ok(key),
                _ => Err(bad().into()),
            }
        }
        _ => Err(bad().into()),
    }
}

/// An RSA key from the DER of its RSAPrivateKey, ready to sign, or why
/// herald cannot sign with it. AWS-LC checks the key (its numbers must fit
/// together); the size, exponent and shape are read here to say what is
/// wrong. One signature is made at once: AWS-LC checks every signature
/// against the public key, so a key that cannot sign fails here, not in
/// the middle of a send.
fn rsa_key(path: &Path, der: &[u8]) -> Result<Box<aws_lc_rs::rsa::KeyPair>, KeyError> {
    let bad = || {
        InputError::new(
            path,
            None,
            "this RSA key cannot be read (the file is damaged or cut short); make a new one with \
             `opendkim-genkey` or `openssl genpkey` (see the README's DKIM section)",
        )
    };
    let (n, e) = rsa_numbers(der).ok_or_else(bad)?;
    let bits = n.len() * 8;
    let refused = |problem: String| KeyError::RsaRefused {
        file: path.to_path_buf(),
        bits,
        problem,
    };
    if bits < 2048 {
        return Err(refused(format!(
            "this RSA key has {bits} bits; herald signs only with RSA keys of 2048 to 4096 bits \
             (RFC 8301 asks DKIM signers for at least 2048: shorter keys can be broken)"
        )));
    }
    if bits > 4096 {
        return Err(refused(format!(
            "this RSA key has {bits} bits; DKIM receivers need only check keys of up to 4096 bits \
             (RFC 8301), and herald signs with 2048 to 4096"
        )));
    }
    if e != [0x01, 0x00, 0x01] {
        let e = match e.len() {
            0..=8 => e
                .iter()
                .fold(0u64, |v, &b| v << 8 | u64::from(b))
                .to_string(),
            _ => format!("a number of {} bits", e.len() * 8),
        };
        return Err(refused(format!(
            "this RSA key's public exponent is {e}; herald signs only with the exponent 65537, the \
             one `openssl` and `opendkim-genkey` use"
        )));
    }
    let cannot = |why: &str| refused(format!("herald cannot sign with this RSA key: {why}"));
    // Version 1 is the multi-prime form (RFC 8017, appendix A.1.2), which
    // AWS-LC does not read; said here, else it would pass for a damaged file.
    if rsa_version(der) == Some(&[1][..]) {
        return Err(cannot("it has more than two primes"));
    }
    // AWS-LC says no more than "rejected": a file whose DER reads whole
    // holds numbers that do not fit together; any other was damaged.
    let damaged = "its numbers do not fit together: the file is damaged";
    let pair = aws_lc_rs::rsa::KeyPair::from_der(der).map_err(|_| {
        if rsa_is_whole(der) {
            cannot(damaged)
        } else {
            bad().into()
        }
    })?;
    let mut signature = vec![0u8; pair.public_modulus_len()];
    pair.sign(
        &aws_lc_rs::signature::RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        b"herald",
        &mut signature,
    )
    .map_err(|_| cannot(damaged))?;
    Ok(Box::new(pair))
}

mod der;
use der::{pkcs8, rsa_is_whole, rsa_numbers, rsa_version};
#[cfg(test)]
mod tests;
