//! Just enough DER to read the private keys DKIM uses (PKCS #1 RSA and
//! PKCS #8 RSA or Ed25519) and to say what is wrong with one that herald
//! cannot sign with, before the crypto library sees it.

/// Just enough DER (X.690) to read the outer layers of a key: the next
/// element must have tag `tag`; returns its content and moves past it.
/// Never reads past the input; lengths over 4 bytes are refused (no key
/// file is that large: they are capped at 64 KB).
pub(super) fn der_next<'a>(input: &mut &'a [u8], tag: u8) -> Option<&'a [u8]> {
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

pub(super) const SEQUENCE: u8 = 0x30;
pub(super) const INTEGER: u8 = 0x02;
pub(super) const OCTET_STRING: u8 = 0x04;
pub(super) const OID: u8 = 0x06;

/// A PKCS #8 PrivateKeyInfo (RFC 5958): the algorithm's OID and the
/// content of the privateKey OCTET STRING.
pub(super) fn pkcs8(der: &[u8]) -> Option<(&[u8], &[u8])> {
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
pub(super) fn rsa_numbers(der: &[u8]) -> Option<(&[u8], &[u8])> {
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

/// The version of a PKCS #1 RSAPrivateKey: 0 for two primes, 1 for more.
pub(super) fn rsa_version(der: &[u8]) -> Option<&[u8]> {
    let mut input = der;
    let mut key = der_next(&mut input, SEQUENCE)?;
    der_next(&mut key, INTEGER)
}

/// Whether `der` is a whole two-prime RSAPrivateKey: its nine numbers
/// (version, n, e, d, p, q, dp, dq, qInv) and nothing after them.
pub(super) fn rsa_is_whole(der: &[u8]) -> bool {
    let mut input = der;
    let Some(mut key) = der_next(&mut input, SEQUENCE) else {
        return false;
    };
    input.is_empty() && (0..9).all(|_| der_next(&mut key, INTEGER).is_some()) && key.is_empty()
}
