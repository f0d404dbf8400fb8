//! Tests of canonicalization, folding and key reading (src/dkim.rs).
use super::der::{INTEGER, OCTET_STRING, OID, SEQUENCE};
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
/// else right: enough for the checks made before AWS-LC sees the key.
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
fn rsa_keys_of_sizes_and_exponents_herald_does_not_sign_with_are_refused_with_the_reason() {
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
    // Right size and exponent, numbers that are no key: AWS-LC's checks.
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

/// Section 3.4.4 a line at a time, as herald did it before it passed on
/// long stretches: the reference the fast one must match byte for byte.
fn body_by_lines(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
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
        out.extend(std::iter::repeat_n(&b"\r\n"[..], empty_lines).flatten());
        empty_lines = 0;
        let mut in_run = false;
        for &b in &line[..=last] {
            if is_wsp(b) {
                in_run = true;
                continue;
            }
            if in_run {
                out.push(b' ');
                in_run = false;
            }
            out.push(b);
        }
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[test]
fn long_stretches_canonicalize_as_lines_do() {
    for b in [
        &b"  lead\r\n\t\ttabbed \t line  \r\n \r\n\r\nend \r\n \t\r\n"[..],
        b"a \rb  \rc\t\n d \n\r\n",
        b"x \t",
        b"\t",
        b"a\r\n \t \r\nb",
    ] {
        assert_eq!(
            body(b),
            body_by_lines(b),
            "{:?}",
            String::from_utf8_lossy(b)
        );
    }
}

proptest::proptest! {
    #[test]
    fn any_body_canonicalizes_as_lines_do(b in proptest::collection::vec(proptest::sample::select(&b" \t\r\na."[..]), 0..80)) {
        proptest::prop_assert_eq!(body(&b), body_by_lines(&b));
    }
}

/// An Ed25519 signer (deterministic signatures) made without a key file.
fn ed25519_signer() -> Signer {
    let pkcs8 =
        aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
            .unwrap();
    let pair = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    Signer {
        domain: "example.org".into(),
        keys: vec![Key {
            selector: "s1".into(),
            kind: KeyKind::Ed25519(Box::new(pair)),
        }],
        rng: aws_lc_rs::rand::SystemRandom::new(),
        room: AtomicUsize::new(0),
    }
}

/// Signed in the room left at the front or not, too little room or too
/// much: the same bytes, and the room the next message should leave is
/// what the fields took.
#[test]
fn signing_in_the_room_left_gives_the_bytes_a_copy_gives() {
    let signer = ed25519_signer();
    let message =
        b"From: a@example.org\r\nTo: b@example.org\r\nSubject: Hi\r\n\r\nBody  \r\n.line\r\n";
    assert_eq!(signer.room(), 0);
    let copied = signer.signed(message.to_vec(), 1_700_000_000).unwrap();
    let fields = copied.len() - message.len();
    assert!(fields > 100 && copied.ends_with(message));
    assert_eq!(signer.room(), fields);
    for room in [0, 1, fields - 1, fields, fields + 1, fields + 300] {
        let mut with_room = vec![b'?'; room];
        with_room.extend_from_slice(message);
        let signed = signer
            .signed_in_room(with_room, room, 1_700_000_000)
            .unwrap();
        assert_eq!(signed, copied, "room {room}");
        assert_eq!(signer.room(), fields);
    }
    assert!(signer.is_ascii());
}

proptest::proptest! {
    #[test]
    fn line_end_finds_each_crlf_as_a_search_for_it_does(h in proptest::collection::vec(proptest::sample::select(&b"\r\na: "[..]), 0..60)) {
        for from in 0..=h.len() {
            let searched = memchr::memmem::find(&h[from..], b"\r\n").map(|i| from + i);
            proptest::prop_assert_eq!(line_end(&h, from), searched, "from {}", from);
        }
    }
}
