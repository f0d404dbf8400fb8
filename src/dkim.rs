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
//! RSA signatures come from `ring` (constant-time, and the crypto rustls
//! already brings): about as fast per signature as OpenSSL, where the `rsa`
//! crate was 7 times slower and under the RUSTSEC-2023-0071 timing
//! advisory. ring signs with two-prime keys of 2048 to 4096 bits and the
//! exponent 65537, which is what `openssl` and `opendkim-genkey` make;
//! any other RSA key is refused when it is read, with the file, the reason
//! and how to make a new key ([`KeyError::RsaRefused`]). PKCS #1 v1.5
//! signatures are deterministic: the same key and message give the same
//! bytes as before the change.

use std::path::{Path, PathBuf};

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
    Rsa(Box<ring::rsa::KeyPair>),
    Ed25519(Box<ed25519_dalek::SigningKey>),
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
            KeyKind::Rsa(k) => Some(k.public().modulus_len() * 8),
            KeyKind::Ed25519(_) => None,
        }
    }

    /// The public key, as DKIM's `p=` holds it before base64 (RFC 6376
    /// section 3.6.1, RFC 8463): for RSA the PKCS #1 RSAPublicKey, which
    /// records usually wrap in a SubjectPublicKeyInfo; for Ed25519 its 32 bytes.
    pub fn public_key(&self) -> Vec<u8> {
        match &self.kind {
            KeyKind::Rsa(k) => k.public().as_ref().to_vec(),
            KeyKind::Ed25519(k) => k.verifying_key().to_bytes().to_vec(),
        }
    }

    fn a_tag(&self) -> &'static str {
        match self.kind {
            KeyKind::Rsa(_) => "a=rsa-sha256;",
            KeyKind::Ed25519(_) => "a=ed25519-sha256;",
        }
    }

    /// Signs the canonicalized headers `data`: RSA with PKCS #1 v1.5 over
    /// their SHA-256; Ed25519, as RFC 8463 says, over that hash (not the
    /// headers) with PureEdDSA. `rng` blinds the RSA operation; the
    /// signature itself is deterministic.
    fn sign(&self, data: &[u8], rng: &dyn ring::rand::SecureRandom) -> Result<Vec<u8>, SignError> {
        match &self.kind {
            KeyKind::Rsa(k) => {
                let mut signature = vec![0u8; k.public().modulus_len()];
                k.sign(
                    &ring::signature::RSA_PKCS1_SHA256,
                    rng,
                    data,
                    &mut signature,
                )
                .map_err(|_| SignError {
                    algorithm: DkimAlgorithm::Rsa,
                    selector: self.selector.clone(),
                })?;
                Ok(signature)
            }
            KeyKind::Ed25519(k) => {
                use ed25519_dalek::Signer as _;
                Ok(k.sign(&Sha256::digest(data)).to_bytes().to_vec())
            }
        }
    }
}

/// Signs messages for one domain with one or two keys.
pub struct Signer {
    domain: String,
    keys: Vec<Key>,
    rng: ring::rand::SystemRandom,
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
            rng: ring::rand::SystemRandom::new(),
        })
    }

    /// The `DKIM-Signature` header fields for `message` (a complete
    /// message with CRLF line ends), one per key, to be put on top of it.
    /// `now` is the `t=` tag, in seconds since 1970.
    pub fn sign(&self, message: &[u8], now: i64) -> Result<Vec<u8>, SignError> {
        let (head, body) = split(message);
        let mut body_hash = Sha256::new();
        relaxed_body(&mut body_hash, body);
        let bh = STANDARD.encode(body_hash.finalize());

        let fields = fields(head);
        let mut names: Vec<&'static str> = Vec::with_capacity(SIGNED.len() * 2);
        // The canonical headers themselves, not their hash: ring hashes
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
            names.extend(std::iter::repeat_n(name, listed));
        }

        let mut out = Vec::with_capacity(self.keys.len() * 600);
        for key in &self.keys {
            let mut header = Folder::new("DKIM-Signature:");
            for tag in [
                "v=1;",
                key.a_tag(),
                "c=relaxed/relaxed;",
                &format!("d={};", self.domain),
                &format!("s={};", key.selector),
                &format!("t={now};"),
            ] {
                header.word(tag, true);
            }
            for (i, name) in names.iter().enumerate() {
                let piece = match (i, i + 1 == names.len()) {
                    (0, true) => format!("h={name};"),
                    (0, false) => format!("h={name}:"),
                    (_, true) => format!("{name};"),
                    (_, false) => format!("{name}:"),
                };
                header.word(&piece, i == 0);
            }
            header.word(&format!("bh={bh};"), true);
            header.word("b=", true);
            // The signature covers this header as it will be sent, with an
            // empty b= and no line end (section 3.7); then the headers are
            // the shared ones again for the next key.
            let shared = headers.len();
            let (name, value) = header.text.split_at("DKIM-Signature".len());
            relaxed_header(&mut headers, name.as_bytes(), &value.as_bytes()[1..]);
            let signed = key.sign(&headers, &self.rng);
            headers.truncate(shared);
            let signature = STANDARD.encode(signed?);
            header.chunks(&signature);
            out.extend_from_slice(header.text.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Ok(out)
    }
}

/// Builds a header field folded into lines under [`LINE`] characters.
struct Folder {
    text: String,
    line: usize,
}

impl Folder {
    fn new(start: &str) -> Folder {
        Folder {
            text: start.to_string(),
            line: start.len(),
        }
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
    match memchr::memmem::find(message, b"\r\n\r\n") {
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
        let end = memchr::memmem::find(&head[pos..], b"\r\n").map_or(head.len(), |i| pos + i);
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
/// which ring hashes itself, and tests).
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
/// and a CRLF after the last line. Streamed into `sink`: whole stretches of
/// text between odd whitespace go in at once.
fn relaxed_body(sink: &mut impl Sink, body: &[u8]) {
    let mut empty_lines = 0usize;
    let mut pos = 0;
    while pos < body.len() {
        let end = memchr::memmem::find(&body[pos..], b"\r\n").map_or(body.len(), |i| pos + i);
        let line = &body[pos..end];
        pos = end + 2;
        let Some(last) = line.iter().rposition(|&b| !is_wsp(b)) else {
            empty_lines += 1;
            continue;
        };
        for _ in 0..empty_lines {
            sink.put(b"\r\n");
        }
        empty_lines = 0;
        let line = &line[..=last];
        let mut from = 0;
        let mut search = 0;
        while let Some(j) = memchr::memchr2(b' ', b'\t', &line[search..]).map(|j| search + j) {
            let mut k = j;
            while k < line.len() && is_wsp(line[k]) {
                k += 1;
            }
            // A single space is already canonical: keep reading.
            if !(line[j] == b' ' && k == j + 1) {
                sink.put(&line[from..j]);
                sink.put(b" ");
                from = k;
            }
            search = k;
        }
        sink.put(&line[from..]);
        sink.put(b"\r\n");
    }
}

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
        let seed: [u8; 32] = seed.try_into().map_err(|_| bad())?;
        Ok(key(KeyKind::Ed25519(Box::new(
            ed25519_dalek::SigningKey::from_bytes(&seed),
        ))))
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
                KeyKind::Ed25519(k) if k.verifying_key().as_bytes()[..] == raw[32..] => Ok(key),
                _ => Err(bad().into()),
            }
        }
        _ => Err(bad().into()),
    }
}

/// An RSA key from the DER of its RSAPrivateKey, ready to sign, or why
/// herald cannot sign with it. ring checks the key; the size and exponent
/// are read here only to say what is wrong. One signature is made at once:
/// ring checks every signature against the public key, so a key whose
/// numbers do not fit together fails here, not in the middle of a send.
fn rsa_key(path: &Path, der: &[u8]) -> Result<Box<ring::rsa::KeyPair>, KeyError> {
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
    let pair = ring::rsa::KeyPair::from_der(der).map_err(|e| {
        // ring names its reasons in its Display text.
        let why = match e.to_string().as_str() {
            "PrivateModulusLenNotMultipleOf512Bits" => {
                format!("its two primes are not a multiple of 512 bits long; herald signs with RSA keys of 2048, 3072 or 4096 bits ({bits} here)")
            }
            "VersionNotSupported" => "it has more than two primes".to_string(),
            "InvalidEncoding" => return bad().into(),
            _ => "its numbers do not fit together: the file is damaged".to_string(),
        };
        refused(format!("herald cannot sign with this RSA key: {why}"))
    })?;
    let mut signature = vec![0u8; pair.public().modulus_len()];
    pair.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        b"herald",
        &mut signature,
    )
    .map_err(|_| refused("herald cannot sign with this RSA key: its numbers do not fit together, the file is damaged".into()))?;
    Ok(Box::new(pair))
}

/// Just enough DER (X.690) to read the outer layers of a key: the next
/// element must have tag `tag`; returns its content and moves past it.
/// Never reads past the input; lengths over 4 bytes are refused (no key
/// file is that large: they are capped at 64 KB).
fn der_next<'a>(input: &mut &'a [u8], tag: u8) -> Option<&'a [u8]> {
    let &[t, first, ref rest @ ..] = *input else {
        return None;
    };
    if t != tag {
        return None;
    }
    let (len, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81..=0x84 => {
            let (len, rest) = rest.split_at_checked(usize::from(first & 0x7f))?;
            (
                len.iter().fold(0usize, |v, &b| v << 8 | usize::from(b)),
                rest,
            )
        }
        _ => return None,
    };
    let (content, rest) = rest.split_at_checked(len)?;
    *input = rest;
    Some(content)
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;

/// A PKCS #8 PrivateKeyInfo (RFC 5958): the algorithm's OID and the
/// content of the privateKey OCTET STRING.
fn pkcs8(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut input = der;
    let mut info = der_next(&mut input, SEQUENCE)?;
    der_next(&mut info, INTEGER)?;
    let mut algorithm = der_next(&mut info, SEQUENCE)?;
    let oid = der_next(&mut algorithm, OID)?;
    let key = der_next(&mut info, OCTET_STRING)?;
    Some((oid, key))
}

/// The modulus and public exponent of a PKCS #1 RSAPrivateKey, without
/// leading zero bytes.
fn rsa_numbers(der: &[u8]) -> Option<(&[u8], &[u8])> {
    fn unsigned(n: &[u8]) -> &[u8] {
        let zeros = n.iter().take_while(|&&b| b == 0).count();
        &n[zeros..]
    }
    let mut input = der;
    let mut key = der_next(&mut input, SEQUENCE)?;
    der_next(&mut key, INTEGER)?;
    let n = der_next(&mut key, INTEGER)?;
    let e = der_next(&mut key, INTEGER)?;
    Some((unsigned(n), unsigned(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(s: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        relaxed_body(&mut v, s);
        v
    }

    fn header(name: &[u8], value: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        relaxed_header(&mut v, name, value);
        v
    }

    /// RFC 6376 section 3.4.6, the example for relaxed/relaxed.
    #[test]
    fn canonicalization_matches_the_rfc_example() {
        let message = b"A: X\r\nB : Y\t\r\n\tZ  \r\n\r\n C \r\nD \t E\r\n\r\n\r\n";
        let (head, b) = split(message);
        let canon: Vec<u8> = fields(head)
            .iter()
            .flat_map(|f| {
                let mut h = header(f.name, f.value);
                h.extend_from_slice(b"\r\n");
                h
            })
            .collect();
        assert_eq!(canon, b"a:X\r\nb:Y Z\r\n");
        assert_eq!(body(b), b" C\r\nD E\r\n");
    }

    #[test]
    fn body_edge_cases() {
        // An empty body stays empty under relaxed canonicalization; a last
        // line without CRLF gets one; only trailing empty lines go.
        assert_eq!(body(b""), b"");
        assert_eq!(body(b"\r\n\r\n"), b"");
        assert_eq!(body(b"a"), b"a\r\n");
        assert_eq!(body(b"a\r\n\r\nb  \t\r\n \r\n"), b"a\r\n\r\nb\r\n");
        assert_eq!(body(b"x  y z\t\tw"), b"x y z w\r\n");
        // Bare LF and CR are text, not line ends.
        assert_eq!(body(b"a\nb\r\n"), b"a\nb\r\n");
    }

    #[test]
    fn folded_header_values_unfold_to_single_spaces() {
        assert_eq!(
            header(b"Subject", b" Hello\r\n   world \t"),
            b"subject:Hello world"
        );
        assert_eq!(header(b"X-Empty", b""), b"x-empty:");
    }

    #[test]
    fn fields_keep_their_folds_and_order() {
        let head = b"From: a@b\r\nSubject: one\r\n two\r\nTo: c@d\r\n";
        let f = fields(head);
        let names: Vec<&[u8]> = f.iter().map(|f| f.name).collect();
        assert_eq!(names, [&b"From"[..], b"Subject", b"To"]);
        assert_eq!(f[1].value, b" one\r\n two");
    }

    #[test]
    fn folded_lines_stay_short() {
        let mut f = Folder::new("DKIM-Signature:");
        for w in ["v=1;", "a=rsa-sha256;", "d=example.org;"] {
            f.word(w, true);
        }
        for i in 0..30 {
            f.word(
                &format!("{}List-Unsubscribe:", if i == 0 { "h=" } else { "" }),
                i == 0,
            );
        }
        f.word("b=", true);
        f.chunks(&"A".repeat(344));
        for line in f.text.split("\r\n") {
            assert!(line.len() <= LINE, "{} > {LINE}: {line}", line.len());
        }
        assert_eq!(
            f.text
                .replace("\r\n ", "")
                .matches(&"A".repeat(344))
                .count(),
            1,
            "the signature is cut only at folds"
        );
    }

    /// DER with the tag and a definite length (short or long form).
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match content.len() {
            n @ 0..=0x7f => out.push(n as u8),
            n @ 0x80..=0xff => out.extend([0x81, n as u8]),
            n => out.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(content);
        out
    }

    /// An RSAPrivateKey with modulus `n` and exponent `e` and nothing
    /// else right: enough for the checks made before ring sees the key.
    fn rsa_der(n: &[u8], e: &[u8]) -> Vec<u8> {
        let mut fields = tlv(INTEGER, &[0]);
        fields.extend(tlv(INTEGER, n));
        fields.extend(tlv(INTEGER, e));
        for _ in 0..5 {
            fields.extend(tlv(INTEGER, &[0x03]));
        }
        tlv(SEQUENCE, &fields)
    }

    /// A modulus of `bits` bits, with the sign byte DER puts before it.
    fn modulus(bits: usize) -> Vec<u8> {
        let mut n = vec![0u8];
        n.extend(std::iter::repeat_n(0xc5, bits / 8));
        n
    }

    fn refusal(der: &[u8]) -> (usize, String) {
        match rsa_key(Path::new("/keys/dkim.pem"), der) {
            Err(KeyError::RsaRefused {
                file,
                bits,
                problem,
            }) => {
                assert_eq!(file, Path::new("/keys/dkim.pem"));
                (bits, problem)
            }
            Err(e) => panic!("not a refusal: {e}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn rsa_keys_of_sizes_and_exponents_ring_does_not_sign_with_are_refused_with_the_reason() {
        let (bits, why) = refusal(&rsa_der(&modulus(1024), &[1, 0, 1]));
        assert_eq!(bits, 1024);
        assert!(
            why.contains("has 1024 bits") && why.contains("2048 to 4096"),
            "{why}"
        );
        // Over 4096 bits: receivers need not check it (RFC 8301).
        let (bits, why) = refusal(&rsa_der(&modulus(4160), &[1, 0, 1]));
        assert_eq!(bits, 4160);
        assert!(
            why.contains("has 4160 bits") && why.contains("up to 4096"),
            "{why}"
        );
        let (_, why) = refusal(&rsa_der(&modulus(2048), &[3]));
        assert!(
            why.contains("public exponent is 3;") && why.contains("65537"),
            "{why}"
        );
        let (_, why) = refusal(&rsa_der(&modulus(2048), &[0x7f; 9]));
        assert!(
            why.contains("public exponent is a number of 72 bits"),
            "{why}"
        );
        // Right size and exponent, numbers that are no key: ring's checks.
        match rsa_key(
            Path::new("/keys/dkim.pem"),
            &rsa_der(&modulus(2048), &[1, 0, 1]),
        ) {
            Err(e) => assert!(e.to_string().starts_with("/keys/dkim.pem: "), "{e}"),
            Ok(_) => panic!("accepted"),
        }
        let e = KeyError::RsaRefused {
            file: "/keys/dkim.pem".into(),
            bits: 1024,
            problem: "this RSA key has 1024 bits".into(),
        };
        assert_eq!(e.to_string(), "/keys/dkim.pem: this RSA key has 1024 bits");
        assert_eq!(e.rsa_bits(), Some(1024));
    }

    #[test]
    fn cut_or_odd_der_is_an_unreadable_key_not_a_panic() {
        let good = rsa_der(&modulus(2048), &[1, 0, 1]);
        for cut in [0, 1, 2, 3, 4, 10, 200, good.len() - 1] {
            assert!(rsa_numbers(&good[..cut]).is_none(), "cut at {cut}");
            match rsa_key(Path::new("k"), &good[..cut]) {
                Err(KeyError::Unusable(e)) => assert!(e.message.contains("cannot be read"), "{e}"),
                Err(e) => panic!("cut at {cut}: {e}"),
                Ok(_) => panic!("cut at {cut}: accepted"),
            }
        }
        // Indefinite lengths (BER, not DER), lengths of 5 bytes or more,
        // and lengths past the end.
        for der in [
            &[0x30, 0x80, 0x02, 0x01, 0x00, 0x00, 0x00][..],
            &[0x30, 0x85, 1, 0, 0, 0, 0],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0x02],
            &[0x30, 0x05, 0x02, 0x01],
        ] {
            assert!(rsa_numbers(der).is_none(), "{der:?}");
            assert!(pkcs8(der).is_none(), "{der:?}");
        }
    }

    #[test]
    fn pkcs8_gives_the_algorithm_and_the_key() {
        let mut algorithm = tlv(OID, ED25519_OID);
        let mut info = tlv(INTEGER, &[0]);
        info.extend(tlv(SEQUENCE, &algorithm));
        info.extend(tlv(OCTET_STRING, &tlv(OCTET_STRING, &[9; 32])));
        let der = tlv(SEQUENCE, &info);
        let (oid, key) = pkcs8(&der).unwrap();
        assert_eq!(oid, ED25519_OID);
        assert_eq!(key[..2], [0x04, 0x20]);
        // rsaEncryption with its NULL parameters.
        algorithm = tlv(OID, RSA_OID);
        algorithm.extend([0x05, 0x00]);
        let inner = rsa_der(&modulus(2048), &[1, 0, 1]);
        let mut info = tlv(INTEGER, &[0]);
        info.extend(tlv(SEQUENCE, &algorithm));
        info.extend(tlv(OCTET_STRING, &inner));
        let der = tlv(SEQUENCE, &info);
        let (oid, key) = pkcs8(&der).unwrap();
        assert_eq!((oid, key), (RSA_OID, &inner[..]));
    }

    proptest::proptest! {
        /// Whatever a key file holds, reading it ends in a key or an error.
        #[test]
        fn any_der_is_read_without_panicking(der in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = pkcs8(&der);
            let _ = rsa_numbers(&der);
            let _ = rsa_key(Path::new("k"), &der);
        }
    }
}
