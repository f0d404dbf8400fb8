//! The message around its two parts, laid out once per campaign.
//!
//! lettre builds each recipient's message from a `MessageBuilder`: every
//! header is encoded again (the From and Reply-To mailboxes, List-Id,
//! Feedback-ID, the inline images' part headers), the To and From headers
//! are parsed back to make an envelope herald does not use, and the
//! multipart tree (with the images' base64 bodies) is cloned and formatted.
//! That was about 90,000 instructions a message, a fifth of a 60 KB
//! message's whole cost. Here lettre formats the message once, with
//! stand-ins for what differs per recipient (five headers and the MIME
//! boundaries); the result is cut into the bytes that stay and the holes
//! that do not, and each recipient's skeleton is the bytes that stay with
//! the holes filled: each of the five headers encoded by lettre's own
//! `Headers`, and boundaries as random as lettre's. `tests` compares the
//! bytes with the builder's, given the same boundaries.
//!
//! lettre's builder also refuses a recipient whose To header does not
//! parse back (it makes the envelope from it; `"q@r"@example.org` is one):
//! [`plain_mailbox`] lets only names and addresses that surely parse back
//! take this way, and the rest take the builder's, so both refuse alike.

use std::time::SystemTime;

use lettre::message::header::{self, HeaderName, HeaderValue, Headers};
use lettre::message::{Mailbox, Mailboxes};

/// What differs from one recipient's headers to the next.
pub(in crate::deliver) struct Varying<'a> {
    pub to: &'a Mailbox,
    pub subject: &'a str,
    pub date: SystemTime,
    pub message_id: &'a str,
    pub list_unsubscribe: &'a str,
}

pub(in crate::deliver) const LIST_UNSUBSCRIBE: &str = "List-Unsubscribe";

/// A hole in the skeleton.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hole {
    To,
    Subject,
    Date,
    MessageId,
    ListUnsubscribe,
    /// The boundary of the first multipart (`multipart/alternative`).
    Outer,
    /// The boundary of `multipart/related`, with inline images.
    Inner,
}

/// The stand-in boundaries the campaign's skeleton was formatted with.
pub(in crate::deliver) struct StandIns {
    pub outer: String,
    pub inner: String,
}

impl StandIns {
    pub(in crate::deliver) fn new() -> StandIns {
        StandIns {
            outer: boundary(),
            inner: boundary(),
        }
    }
}

/// A boundary as lettre makes one (`make_boundary`): 40 random letters
/// and digits.
pub(in crate::deliver) fn boundary() -> String {
    std::iter::repeat_with(fastrand::alphanumeric)
        .take(40)
        .collect()
}

/// A campaign's message, cut into the bytes every recipient shares and the
/// holes filled per recipient.
pub(in crate::deliver) struct Skeleton {
    pieces: Vec<(Vec<u8>, Option<Hole>)>,
    size: usize,
    /// Whether there is a `multipart/related` boundary.
    inner: bool,
}

impl Skeleton {
    /// Cuts `formatted` (lettre's message, formatted with stand-ins for
    /// the varying headers and with `stand_ins` as its boundaries) into
    /// pieces. `None` if it is not laid out as expected (each varying
    /// header once, each boundary somewhere); the builder is then used for
    /// every recipient.
    pub(in crate::deliver) fn cut(formatted: &[u8], stand_ins: &StandIns) -> Option<Skeleton> {
        let end_of_head = memchr::memmem::find(formatted, b"\r\n\r\n")? + 2;
        let mut pieces: Vec<(Vec<u8>, Option<Hole>)> = Vec::new();
        let mut kept = Vec::new();
        let mut seen = Vec::new();
        let mut at = 0;
        // Header fields: a line, and the lines after it that start with a
        // space (folded).
        while at < end_of_head {
            let mut end = at;
            loop {
                end += memchr::memmem::find(&formatted[end..end_of_head], b"\r\n")? + 2;
                if end >= end_of_head || !matches!(formatted[end], b' ' | b'\t') {
                    break;
                }
            }
            let field = &formatted[at..end];
            let name = &field[..memchr::memchr(b':', field)?];
            let hole = [
                (&b"To"[..], Hole::To),
                (b"Subject", Hole::Subject),
                (b"Date", Hole::Date),
                (b"Message-ID", Hole::MessageId),
                (LIST_UNSUBSCRIBE.as_bytes(), Hole::ListUnsubscribe),
            ]
            .into_iter()
            .find(|(n, _)| name.eq_ignore_ascii_case(n))
            .map(|(_, hole)| hole);
            match hole {
                Some(hole) => {
                    if seen.contains(&hole) {
                        return None;
                    }
                    seen.push(hole);
                    pieces.push((std::mem::take(&mut kept), Some(hole)));
                }
                None => kept.extend_from_slice(field),
            }
            at = end;
        }
        if seen.len() != 5 {
            return None;
        }
        kept.extend_from_slice(&formatted[end_of_head..]);
        // The boundaries, in what stays.
        let mut found = (false, false);
        let mut cut = Vec::new();
        for (piece, hole) in pieces.into_iter().chain([(kept, None)]) {
            let mut from = 0;
            let outer = memchr::memmem::find_iter(&piece, stand_ins.outer.as_bytes())
                .map(|at| (at, Hole::Outer));
            let inner = memchr::memmem::find_iter(&piece, stand_ins.inner.as_bytes())
                .map(|at| (at, Hole::Inner));
            let mut stand_ins_at: Vec<(usize, Hole)> = outer.chain(inner).collect();
            stand_ins_at.sort_unstable_by_key(|&(at, _)| at);
            for (at, which) in stand_ins_at {
                let stand_in = if which == Hole::Outer {
                    found.0 = true;
                    &stand_ins.outer
                } else {
                    found.1 = true;
                    &stand_ins.inner
                };
                cut.push((piece[from..at].to_vec(), Some(which)));
                from = at + stand_in.len();
            }
            cut.push((piece[from..].to_vec(), hole));
        }
        if !found.0 {
            return None;
        }
        let size = cut.iter().map(|(p, _)| p.len()).sum();
        Some(Skeleton {
            pieces: cut,
            size,
            inner: found.1,
        })
    }

    /// One recipient's skeleton, with new boundaries.
    pub(in crate::deliver) fn fill(&self, varying: &Varying<'_>) -> Vec<u8> {
        let boundaries = StandIns {
            outer: boundary(),
            // (Without inline images there is no inner boundary to make.)
            inner: if self.inner {
                boundary()
            } else {
                String::new()
            },
        };
        self.fill_with(varying, &boundaries)
    }

    /// One recipient's skeleton, with these boundaries.
    pub(in crate::deliver) fn fill_with(&self, v: &Varying<'_>, boundaries: &StandIns) -> Vec<u8> {
        use std::io::Write;
        let mut out = Vec::with_capacity(self.size + 512 + v.list_unsubscribe.len());
        let mut headers = Headers::with_capacity(1);
        for (piece, hole) in &self.pieces {
            out.extend_from_slice(piece);
            let Some(hole) = hole else { continue };
            // lettre's own types and encoder, as the builder uses them.
            match hole {
                Hole::To => headers.set(header::To::from(Mailboxes::from(v.to.clone()))),
                Hole::Subject => headers.set(header::Subject::from(v.subject.to_string())),
                Hole::Date => headers.set(header::Date::new(v.date)),
                Hole::MessageId => headers.set(header::MessageId::from(v.message_id.to_string())),
                Hole::ListUnsubscribe => headers.insert_raw(HeaderValue::new(
                    HeaderName::new_from_ascii_str(LIST_UNSUBSCRIBE),
                    v.list_unsubscribe.to_string(),
                )),
                Hole::Outer => {
                    out.extend_from_slice(boundaries.outer.as_bytes());
                    continue;
                }
                Hole::Inner => {
                    out.extend_from_slice(boundaries.inner.as_bytes());
                    continue;
                }
            }
            write!(out, "{headers}").expect("writing to memory");
            headers.clear();
        }
        out
    }
}

/// Whether lettre's builder surely accepts this To mailbox: it formats the
/// header and parses it back for the envelope, and refuses the message if
/// that fails. A name of letters, digits, spaces and `.'-_`, and an
/// address of such letters on both sides of one `@` (a dot-atom local
/// part, a domain of labels) parse back; anything else takes the builder.
pub(in crate::deliver) fn plain_mailbox(name: Option<&str>, email: &str) -> bool {
    let plain_name = name.is_none_or(|n| {
        n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b' ' | b'.' | b'\'' | b'-' | b'_'))
    });
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    let dot_atom = |s: &str, also: &[u8]| {
        !s.is_empty()
            && s.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || also.contains(&b))
            })
    };
    plain_name && dot_atom(local, b"+-_") && dot_atom(domain, b"-")
}
