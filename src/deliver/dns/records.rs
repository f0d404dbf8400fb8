//! Reading DKIM and DMARC TXT records, and writing the DKIM record a key
//! needs: the pure part of `check --dns`, tested without a DNS server.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::config::DkimAlgorithm;

/// The tags of a DKIM or DMARC record (`v=DKIM1; k=rsa; p=...`): names
/// lowercased, values trimmed, in order.
pub fn tags(record: &str) -> Vec<(String, String)> {
    record
        .split(';')
        .filter_map(|t| t.split_once('='))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

fn tag<'a>(tags: &'a [(String, String)], name: &str) -> Option<&'a str> {
    tags.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The DKIM record that publishes a key: `k=` and the base64 of what
/// `p=` holds (for RSA the SubjectPublicKeyInfo around the PKCS #1 key, as
/// `opendkim-genkey` writes it).
pub fn dkim_record(algorithm: DkimAlgorithm, public_key: &[u8]) -> String {
    let (k, p) = match algorithm {
        DkimAlgorithm::Rsa => ("rsa", rsa_spki(public_key)),
        DkimAlgorithm::Ed25519 => ("ed25519", public_key.to_vec()),
    };
    format!("v=DKIM1; k={k}; p={}", STANDARD.encode(p))
}

/// How a published DKIM record compares with the key herald signs with.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyMatch {
    Same,
    /// `p=` is empty: the key was revoked (RFC 6376 section 3.6.1).
    Revoked,
    /// `k=` names another algorithm than the key's.
    OtherAlgorithm(String),
    /// `p=` holds another key (or text that is no base64).
    OtherKey,
}

/// Compares the record `txt` with `public_key` (as [`crate::dkim::Key::public_key`] gives it).
pub fn compare_dkim(txt: &str, algorithm: DkimAlgorithm, public_key: &[u8]) -> KeyMatch {
    let tags = tags(txt);
    let k = tag(&tags, "k").unwrap_or("rsa").to_ascii_lowercase();
    let want = match algorithm {
        DkimAlgorithm::Rsa => "rsa",
        DkimAlgorithm::Ed25519 => "ed25519",
    };
    if k != want {
        return KeyMatch::OtherAlgorithm(k);
    }
    // Long keys are split into quoted parts, and people paste spaces in.
    let p: String = tag(&tags, "p")
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    if p.is_empty() {
        return KeyMatch::Revoked;
    }
    let Ok(published) = STANDARD.decode(p) else {
        return KeyMatch::OtherKey;
    };
    let same = match algorithm {
        // DER is canonical, so equal keys are equal bytes; a bare PKCS #1
        // key in `p=` is accepted by verifiers too.
        DkimAlgorithm::Rsa => published == rsa_spki(public_key) || published == public_key,
        DkimAlgorithm::Ed25519 => published == public_key,
    };
    if same {
        KeyMatch::Same
    } else {
        KeyMatch::OtherKey
    }
}

/// Whether a DKIM record says the domain is testing (`t=y`): receivers
/// may then treat signed mail as unsigned.
pub fn dkim_testing(txt: &str) -> bool {
    tag(&tags(txt), "t").is_some_and(|t| t.split(':').any(|f| f.trim() == "y"))
}

/// The DER of OID 1.2.840.113549.1.1.1, rsaEncryption.
const RSA_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// SubjectPublicKeyInfo { AlgorithmIdentifier { rsaEncryption, NULL },
/// BIT STRING { the PKCS #1 key } } (RFC 5280, RFC 3279).
fn rsa_spki(pkcs1: &[u8]) -> Vec<u8> {
    let mut algorithm = der(0x06, RSA_OID);
    algorithm.extend_from_slice(&[0x05, 0x00]);
    let mut bits = vec![0u8];
    bits.extend_from_slice(pkcs1);
    let mut inner = der(0x30, &algorithm);
    inner.extend(der(0x03, &bits));
    der(0x30, &inner)
}

/// One DER element: tag, definite length, content.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// A DMARC record's policy and alignment modes.
#[derive(Debug, PartialEq, Eq)]
pub struct Dmarc {
    /// `none`, `quarantine` or `reject`.
    pub policy: String,
    /// `adkim=s`: the DKIM domain must equal the From domain.
    pub strict_dkim: bool,
    /// `aspf=s`: the return path's domain must equal the From domain.
    pub strict_spf: bool,
}

/// Reads `v=DMARC1; p=...` records; `None` for anything else.
pub fn dmarc(txt: &str) -> Option<Dmarc> {
    let tags = tags(txt);
    if !tag(&tags, "v").is_some_and(|v| v.eq_ignore_ascii_case("DMARC1")) {
        return None;
    }
    let strict = |name| tag(&tags, name).is_some_and(|v| v.eq_ignore_ascii_case("s"));
    Some(Dmarc {
        policy: tag(&tags, "p").unwrap_or("none").to_ascii_lowercase(),
        strict_dkim: strict("adkim"),
        strict_spf: strict("aspf"),
    })
}

/// The organisational domain (RFC 7489 section 3.2): one label below the
/// public suffix, from the Public Suffix List compiled into the `psl`
/// crate, so `news.example.co.uk` gives `example.co.uk`, not `co.uk`
/// (which would align every British sender with every other). A name that
/// is itself a public suffix is its own organisational domain.
pub fn organisational(domain: &str) -> String {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    match psl::domain_str(&domain) {
        Some(org) => org.to_string(),
        None => domain,
    }
}

/// DMARC identifier alignment (RFC 7489 section 3.1): equal names when
/// strict, the same organisational domain when relaxed.
pub fn aligned(domain: &str, from: &str, strict: bool) -> bool {
    let (a, b) = (
        domain.trim_end_matches('.').to_ascii_lowercase(),
        from.trim_end_matches('.').to_ascii_lowercase(),
    );
    if strict {
        a == b
    } else {
        organisational(&a) == organisational(&b)
    }
}
