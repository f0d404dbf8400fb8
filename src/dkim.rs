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
//! error message but its file's name.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use crate::InputError;
use crate::config::{DkimAlgorithm, DkimKey};

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
    Rsa(Box<rsa::RsaPrivateKey>),
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
        use rsa::traits::PublicKeyParts;
        match &self.kind {
            KeyKind::Rsa(k) => Some(k.size() * 8),
            KeyKind::Ed25519(_) => None,
        }
    }

    fn a_tag(&self) -> &'static str {
        match self.kind {
            KeyKind::Rsa(_) => "a=rsa-sha256;",
            KeyKind::Ed25519(_) => "a=ed25519-sha256;",
        }
    }

    /// Signs the SHA-256 of the canonicalized headers: PKCS #1 v1.5 for
    /// RSA; for Ed25519, RFC 8463 signs that hash (not the headers) with
    /// PureEdDSA.
    fn sign(&self, hash: &[u8]) -> Result<Vec<u8>, String> {
        match &self.kind {
            KeyKind::Rsa(k) => k
                .sign(rsa::Pkcs1v15Sign::new::<Sha256>(), hash)
                .map_err(|e| format!("the RSA DKIM signature failed ({e})")),
            KeyKind::Ed25519(k) => {
                use ed25519_dalek::Signer as _;
                Ok(k.sign(hash).to_bytes().to_vec())
            }
        }
    }
}

/// Signs messages for one domain with one or two keys.
pub struct Signer {
    domain: String,
    keys: Vec<Key>,
}

impl Signer {
    /// Reads every configured key; an unreadable file, a file that is no
    /// key, or a key of another algorithm than the one configured for it
    /// is an error naming the file and the fix.
    pub fn new(domain: &str, keys: &[DkimKey]) -> Result<Signer, InputError> {
        let keys = keys
            .iter()
            .map(|k| {
                let key = load_key(&k.key_file, &k.selector)?;
                check_algorithm(&key, k)?;
                Ok(key)
            })
            .collect::<Result<Vec<_>, InputError>>()?;
        Ok(Signer {
            domain: domain.trim_end_matches('.').to_string(),
            keys,
        })
    }

    /// The `DKIM-Signature` header fields for `message` (a complete
    /// message with CRLF line ends), one per key, to be put on top of it.
    /// `now` is the `t=` tag, in seconds since 1970.
    pub fn sign(&self, message: &[u8], now: i64) -> Result<Vec<u8>, String> {
        let (head, body) = split(message);
        let mut body_hash = Sha256::new();
        relaxed_body(&mut body_hash, body);
        let bh = STANDARD.encode(body_hash.finalize());

        let fields = fields(head);
        let mut names: Vec<&'static str> = Vec::with_capacity(SIGNED.len() * 2);
        let mut headers = Sha256::new();
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
                headers.update(b"\r\n");
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
            // The hash covers this header as it will be sent, with an
            // empty b= and no line end (section 3.7).
            let mut hash = headers.clone();
            let (name, value) = header.text.split_at("DKIM-Signature".len());
            relaxed_header(&mut hash, name.as_bytes(), &value.as_bytes()[1..]);
            let signature = STANDARD.encode(key.sign(&hash.finalize())?);
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

/// Where canonical text goes: the hash, or a buffer in tests.
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

/// OID 1.3.101.112, id-Ed25519 (RFC 8410).
const ED25519_OID: &str = "1.3.101.112";
/// OID 1.2.840.113549.1.1.1, rsaEncryption.
const RSA_OID: &str = "1.2.840.113549.1.1.1";

/// Reads a DKIM private key: RSA (PKCS #1 PEM as `opendkim-genkey` writes
/// it, or PKCS #8 PEM as `openssl genpkey` does) or Ed25519 (PKCS #8 PEM,
/// or the base64 of the 32-byte seed, or of seed and public key). Errors
/// name the file, never its content.
pub fn load_key(path: &Path, selector: &str) -> Result<Key, InputError> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;

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
    let rsa = |k: rsa::RsaPrivateKey| Key {
        selector: selector.to_string(),
        kind: KeyKind::Rsa(Box::new(k)),
    };
    let ed25519 = |seed: &[u8]| -> Result<Key, InputError> {
        let seed: [u8; 32] = seed.try_into().map_err(|_| bad())?;
        Ok(Key {
            selector: selector.to_string(),
            kind: KeyKind::Ed25519(Box::new(ed25519_dalek::SigningKey::from_bytes(&seed))),
        })
    };
    if text.contains("PUBLIC KEY-----") {
        return Err(err(
            "this is a public key; `dkim_key_file` needs the private key (the public one goes into DNS)",
        ));
    }
    if text.contains("BEGIN RSA PRIVATE KEY") {
        return rsa::RsaPrivateKey::from_pkcs1_pem(&text)
            .map(rsa)
            .map_err(|_| bad());
    }
    if text.contains("BEGIN PRIVATE KEY") {
        let (_, doc) = rsa::pkcs8::SecretDocument::from_pem(&text).map_err(|_| bad())?;
        let info = rsa::pkcs8::PrivateKeyInfo::try_from(doc.as_bytes()).map_err(|_| bad())?;
        return match info.algorithm.oid.to_string().as_str() {
            ED25519_OID => {
                // The key is an OCTET STRING holding the 32-byte seed (RFC 8410).
                match info.private_key {
                    [0x04, 0x20, seed @ ..] => ed25519(seed),
                    _ => Err(bad()),
                }
            }
            RSA_OID => rsa::RsaPrivateKey::from_pkcs8_der(doc.as_bytes())
                .map(rsa)
                .map_err(|_| bad()),
            _ => Err(err(
                "this private key is neither RSA nor Ed25519, the two kinds DKIM receivers know; \
                 make an RSA key with `openssl genrsa 2048` or `opendkim-genkey`",
            )),
        };
    }
    if text.contains("v=DKIM1") || text.contains("p=MI") {
        return Err(err(
            "this is the DNS record (the public key); `dkim_key_file` needs the private key",
        ));
    }
    if text.contains("-----BEGIN") {
        return Err(bad());
    }
    let raw = STANDARD.decode(text.trim()).map_err(|_| bad())?;
    match raw.len() {
        32 => ed25519(&raw),
        // Seed then public key (libsodium, dkimpy's dknewkey): the public
        // half must belong to the seed, else the file is not what it seems.
        64 => {
            let key = ed25519(&raw[..32])?;
            match &key.kind {
                KeyKind::Ed25519(k) if k.verifying_key().as_bytes()[..] == raw[32..] => Ok(key),
                _ => Err(bad()),
            }
        }
        _ => Err(bad()),
    }
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
}
