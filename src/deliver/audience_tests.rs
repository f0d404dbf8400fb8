//! The subscriber list's reading: line numbers, addresses, statuses,
//! duplicates and suppression files.

use super::*;

fn rows(csv: &str) -> Vec<Result<Row, InputError>> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.csv");
    std::fs::write(&p, csv).unwrap();
    let mut a = open(&p, Arc::new(Suppression::default())).unwrap();
    let mut out = Vec::new();
    while let Some(r) = a.next_row() {
        out.push(r);
    }
    out
}

#[test]
fn bom_crlf_quotes_spaces_and_case() {
    let r = rows(
        "\u{feff}Email, First Name ,Last-Name\r\n  Ana@Example.ORG , Ana ,\"Silva, Jr.\"\r\nana@example.org,Dup,\r\n",
    );
    let Ok(Row::Send(ana)) = &r[0] else {
        panic!("{r:?}")
    };
    assert_eq!(ana.email, "Ana@example.org");
    assert_eq!(ana.field("first_name"), Some("Ana"));
    assert_eq!(ana.field("last_name"), Some("Silva, Jr."));
    assert_eq!(ana.display_name().as_deref(), Some("Ana Silva, Jr."));
    assert_eq!(ana.line, 2);
    let Ok(Row::Skip(dup)) = &r[1] else { panic!() };
    assert_eq!((dup.reason, dup.line), (SkipReason::Duplicate, 3));
}

/// Found by the fuzzer: a CR at the end of one read and a byte other
/// than LF at the start of the next wrote past the buffer.
#[test]
fn line_endings_are_right_whatever_the_read_boundaries() {
    use std::io::Read;
    struct Chunks<'a>(&'a [u8], usize);
    impl std::io::Read for Chunks<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.1.min(buf.len()).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let input = b"a\rb\r\nc\r\r\rd\n\r";
    for chunk in 1..=input.len() {
        for cap in [1, 2, 3, 8] {
            let mut r = LineEndings::new(Chunks(input, chunk));
            let mut out = Vec::new();
            let mut buf = vec![0; cap];
            loop {
                let n = r.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
            assert_eq!(out, b"a\nb\nc\n\n\nd\n\n", "chunk {chunk}, buffer {cap}");
        }
    }
}

#[test]
fn line_numbers_with_windows_line_endings_and_multiline_fields() {
    let r = rows("email,note\r\na@x.org,\"two\r\nlines\"\r\n\r\nb@x.org,x\rc@x.org,y\r\n");
    let lines: Vec<u64> = r
        .iter()
        .map(|r| match r {
            Ok(Row::Send(x)) => x.line,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(lines, vec![2, 5, 6]);
}

#[test]
fn status_column_excludes_people() {
    let r = rows(
        "email,status\na@x.org,subscribed\nb@x.org,unsubscribed\nc@x.org,Bounced\nd@x.org,maybe\n",
    );
    let reasons: Vec<_> = r
        .iter()
        .map(|r| match r {
            Ok(Row::Skip(s)) => Some(s.reason),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasons,
        vec![
            None,
            Some(SkipReason::Unsubscribed),
            Some(SkipReason::Bounced),
            Some(SkipReason::UnknownStatus)
        ]
    );
}

#[test]
fn broken_row_names_its_line() {
    let r = rows("email,first_name\r\na@x.org,A\r\n\r\nb@x.org,B,extra\r\n");
    let Err(e) = &r[1] else { panic!("{r:?}") };
    assert_eq!(e.line, Some(4));
    assert!(e.message.contains("3 fields but the header has 2"), "{e}");
}

#[test]
fn wrong_header_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.csv");
    std::fs::write(&p, "name,address\nAna,ana@x.org\n").unwrap();
    let Err(e) = open(&p, Arc::new(Suppression::default())) else {
        panic!()
    };
    assert_eq!(e.line, Some(1));
    assert!(e.message.contains("`name`, `address`"), "{e}");
}

#[test]
fn address_rules() {
    assert_eq!(
        normalise_address("Hélène Dubois <Helene@Example.FR>").unwrap(),
        "Helene@example.fr"
    );
    for ok in [
        "a@b.org",
        "first.last+tag@sub.example.co.uk",
        "  <x@y.io> ",
        "ü@münchen.de",
    ] {
        assert!(normalise_address(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "no-at",
        "a@b",
        "a b@c.org",
        "a@@b.org",
        ".a@b.org",
        "a@b..org",
        "a@-b.org",
        "a@b.123",
        "a@b.org\r\nBcc: x@y.org",
    ] {
        assert!(normalise_address(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn suppression_file_plain_or_csv() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("s.txt");
    std::fs::write(&plain, "Gone@Example.org\n\nnot an address\n").unwrap();
    let s = Suppression::load(&plain).unwrap();
    assert!(s.contains("gone@example.org"));
    assert_eq!(s.len(), 1);
    let csv = dir.path().join("s.csv");
    std::fs::write(&csv, "reason,Email\nbounce,x@y.org\n").unwrap();
    assert!(Suppression::load(&csv).unwrap().contains("X@Y.org"));
}

/// A list checked by `validate` and read again by `open_checked` skips the
/// same people, on the same lines, as a list read by `open` alone, though
/// it keeps only the addresses that come back.
#[test]
fn a_checked_list_skips_the_same_duplicates_as_an_unchecked_one() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.csv");
    let mut csv = String::from("email,first_name\n");
    for i in 0..2000 {
        csv.push_str(&format!("reader{i}@example.org,R{i}\n"));
    }
    // Twice, three times, and in another case.
    csv.push_str(
        "reader7@example.org,again\nREADER7@Example.org,thrice\nReader1999@EXAMPLE.org,case\n",
    );
    std::fs::write(&p, &csv).unwrap();
    let suppression = Arc::new(Suppression::default());
    let read = |mut a: Audience| {
        let mut out = Vec::new();
        while let Some(r) = a.next_row() {
            out.push(r.unwrap());
        }
        out
    };
    let checked = validate(&p, Arc::clone(&suppression)).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(checked.rows, 2000);
    let plain = read(open(&p, Arc::clone(&suppression)).unwrap());
    let again = read(open_checked(&p, suppression, &checked.repeats).unwrap());
    assert_eq!(plain, again);
    let dups: Vec<(u64, &str)> = again
        .iter()
        .filter_map(|r| match r {
            Row::Skip(s) if s.reason == SkipReason::Duplicate => Some((s.line, s.email.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        dups,
        [
            (2002, "reader7@example.org"),
            (2003, "READER7@example.org"),
            (2004, "Reader1999@example.org")
        ]
    );
}
