//! A message on its way to the relay: dot-stuffed (RFC 5321 4.5.2) as it
//! is written, not copied to be stuffed.
//!
//! lettre's connection writes only what it is given as text, after copying
//! it into a `String` of its own; its `message` stuffs byte by byte into
//! another buffer. A 60 KB message was copied twice that way, after a
//! third copy to stuff it. Here the message stays as it was built, with
//! the places that need a dot, and goes out as slices in vectored writes:
//! the built bytes, a `.` before each line that starts with one, and the
//! final `CRLF.CRLF`. On a connection whose outermost layer is herald's
//! (plain TCP, or TLS from the first byte) it is written through [`Wire`];
//! after STARTTLS, lettre's own TLS layer is outermost and the stuffed text
//! goes through lettre's `command` (one copy to stuff, one in lettre).
//!
//! Through [`Wire`] the message also goes out before the recipient's
//! `sending` mark is on disk, all but its final `CRLF.CRLF`, which waits
//! for the mark ([`Slot::release`]): a relay delivers nothing before that
//! final dot (RFC 5321 4.1.1.4), so the journal still knows of every
//! message that can arrive, and the relay reads the message while the
//! journal commits instead of after (with 60 KB messages that wait was
//! about a tenth of each message's time on a connection).

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use lettre::transport::smtp::client::AsyncTokioStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A message ready for the DATA phase, prepared on the builder thread.
pub struct Data {
    /// No byte over 127: no need for the relay's 8BITMIME.
    pub(super) ascii: bool,
    pub(super) message: Arc<Stuffing>,
}

impl Data {
    /// `ascii`: no byte of `message` is over 127, as the builder knew it
    /// (see `Built::ascii`), not found by reading the message again.
    pub fn new(message: Vec<u8>, ascii: bool) -> Data {
        Data {
            ascii,
            message: Arc::new(Stuffing::new(message)),
        }
    }
}

/// A message and where its stuffing dots go.
pub(super) struct Stuffing {
    bytes: Vec<u8>,
    /// The offsets of the lines that start with `.`: a second `.` goes
    /// before each (most messages have none, or a few in their CSS).
    dots: Vec<usize>,
}

/// After the message: its last line ends, then a line holding only `.`.
const END: &[u8] = b"\r\n.\r\n";

impl std::fmt::Debug for Stuffing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A message is somebody's mail: its size only.
        write!(
            f,
            "Stuffing({} bytes, {} dots)",
            self.bytes.len(),
            self.dots.len()
        )
    }
}

impl Stuffing {
    fn new(bytes: Vec<u8>) -> Stuffing {
        // `\n.` and then the CR before it: searched for as `\r\n.`,
        // memchr's prefilter stopped at every line end (750 in a 60 KB
        // message); `\n` and `.` side by side are rare.
        static DOT_LINE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
            std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\n."));
        let first = bytes.starts_with(b".").then_some(0);
        let dots = first
            .into_iter()
            .chain(
                DOT_LINE
                    .find_iter(&bytes)
                    .filter(|&at| at > 0 && bytes[at - 1] == b'\r')
                    .map(|at| at + 1),
            )
            .collect();
        Stuffing { bytes, dots }
    }

    /// How many slices [`Stuffing::slice`] numbers: a stretch of the
    /// message before each dot and after the last, each followed by a
    /// `.` or, after the last stretch, [`END`].
    fn slices(&self) -> usize {
        2 * (self.dots.len() + 1)
    }

    /// Slice `i` of the stuffed message (see [`Stuffing::slices`]).
    fn slice(&self, i: usize) -> &[u8] {
        let n = i / 2;
        if i % 2 == 1 {
            return if n < self.dots.len() { b"." } else { END };
        }
        let from = if n == 0 { 0 } else { self.dots[n - 1] };
        let to = self.dots.get(n).copied().unwrap_or(self.bytes.len());
        &self.bytes[from..to]
    }

    /// The stuffed message as text, when it is text (for lettre's
    /// `command`); else the message as built, for lettre to stuff.
    pub(super) fn text(&self) -> Result<String, &[u8]> {
        if std::str::from_utf8(&self.bytes).is_err() {
            return Err(&self.bytes);
        }
        let mut out = Vec::with_capacity(self.bytes.len() + self.dots.len() + END.len());
        for i in 0..self.slices() {
            out.extend_from_slice(self.slice(i));
        }
        // Dots and CRLFs added at line starts keep the UTF-8 valid.
        String::from_utf8(out).map_err(|_| &self.bytes[..])
    }
}

/// Where a message waits to be written by [`Wire`]: set by the sender,
/// emptied as it is written.
#[derive(Debug, Clone, Default)]
pub(super) struct Slot(Arc<Mutex<Waiting>>);

#[derive(Debug, Default)]
struct Waiting {
    pending: Option<Pending>,
    /// The final `CRLF.CRLF` waits: the journal's mark is not on disk yet.
    held: bool,
    /// The mark could not be written: the message must never end.
    refused: bool,
    /// The write waiting for the release.
    waker: Option<Waker>,
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `message` is written at lettre's next flush, all but its final
    /// `CRLF.CRLF`, which waits for [`Slot::release`].
    pub(super) fn put(&self, message: &Arc<Stuffing>) {
        let mut w = self.lock();
        w.pending = Some(Pending::new(message));
        w.held = true;
        w.refused = false;
        w.waker = None;
    }

    /// The message may end (`ok`), or must not: then its write fails, the
    /// relay never sees the final dot and the connection is dropped.
    pub(super) fn release(&self, ok: bool) {
        let mut w = self.lock();
        w.held = false;
        w.refused = !ok;
        if let Some(waker) = w.waker.take() {
            waker.wake();
        }
    }
}

/// A message being written: which slice, and how far into it.
#[derive(Debug)]
pub(super) struct Pending {
    message: Arc<Stuffing>,
    slice: usize,
    offset: usize,
}

impl Pending {
    pub(super) fn new(message: &Arc<Stuffing>) -> Pending {
        Pending {
            message: Arc::clone(message),
            slice: 0,
            offset: 0,
        }
    }

    /// The next slices to write, at most 64 (well under any IOV_MAX); with
    /// `held`, none of the final [`END`].
    fn next(&self, held: bool) -> Vec<IoSlice<'_>> {
        let m = &self.message;
        let upto = m.slices() - usize::from(held);
        (self.slice..upto)
            .map(|i| {
                let s = m.slice(i);
                if i == self.slice {
                    &s[self.offset..]
                } else {
                    s
                }
            })
            .filter(|s| !s.is_empty())
            .take(64)
            .map(IoSlice::new)
            .collect()
    }

    /// `n` more bytes were written.
    fn advance(&mut self, mut n: usize) {
        while self.slice < self.message.slices() {
            let left = self.message.slice(self.slice).len() - self.offset;
            if n < left {
                self.offset += n;
                return;
            }
            n -= left;
            self.slice += 1;
            self.offset = 0;
        }
    }

    fn done(&self) -> bool {
        self.slice == self.message.slices()
    }

    /// All written but the final [`END`] (asked only while it is held, so
    /// none of it is written yet).
    fn only_end_left(&self) -> bool {
        let m = &self.message;
        let last = m.slices() - 1;
        // Stops at the first stretch with bytes left: most often this one.
        self.slice <= last
            && (self.slice..last)
                .all(|i| m.slice(i).len() == if i == self.slice { self.offset } else { 0 })
    }
}

/// The stream under lettre's connection, with a [`Slot`]: lettre's flush
/// first writes the message waiting there, so `command("")` sends a
/// message lettre never copies.
#[derive(Debug)]
pub(super) struct Wire {
    inner: Box<dyn AsyncTokioStream>,
    slot: Slot,
}

impl Wire {
    pub(super) fn new(inner: Box<dyn AsyncTokioStream>) -> (Wire, Slot) {
        let slot = Slot::default();
        (
            Wire {
                inner,
                slot: slot.clone(),
            },
            slot,
        )
    }

    /// Writes the waiting message, if any, as far as the socket takes it.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let mut guard = self.slot.lock();
        let w = &mut *guard;
        if w.refused {
            return Poll::Ready(Err(std::io::Error::other(
                "the journal could not record the send",
            )));
        }
        while let Some(pending) = w.pending.as_mut() {
            if pending.done() {
                w.pending = None;
                break;
            }
            if w.held && pending.only_end_left() {
                // Everything but the final dot is out: wait for the mark.
                w.waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let slices = pending.next(w.held);
            match Pin::new(&mut self.inner).poll_write_vectored(cx, &slices) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => pending.advance(n),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncTokioStream for Wire {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.inner.peer_addr()
    }
}

impl AsyncRead for Wire {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Wire {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        // A command never overtakes a message still being written.
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// lettre's `ClientCodec`, byte by byte, as the reference.
    fn reference(message: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let (mut cr, mut start) = (false, true);
        for &b in message {
            out.push(b);
            if b == b'.' && start {
                out.push(b'.');
            }
            start = cr && b == b'\n';
            cr = b == b'\r';
        }
        out.extend_from_slice(END);
        out
    }

    /// What a [`Wire`] writes for `message`, `step` bytes at most a write.
    fn written(message: &[u8], step: usize) -> Vec<u8> {
        let mut pending = Pending::new(&Arc::new(Stuffing::new(message.to_vec())));
        let mut out = Vec::new();
        while !pending.done() {
            let slices = pending.next(false);
            let flat: Vec<u8> = slices.iter().flat_map(|s| s.iter().copied()).collect();
            let n = flat.len().min(step);
            out.extend_from_slice(&flat[..n]);
            pending.advance(n);
        }
        out
    }

    #[test]
    fn dot_stuffing_matches_lettre() {
        let mut cases: Vec<Vec<u8>> = [
            &b""[..],
            b".",
            b".hidden\r\n..two\r\n.\r\nend",
            b"a\r\n.\r\n.",
            b"a\n.b\r.c\r\n\r\n.d",
            b"no dots here\r\n",
        ]
        .map(<[u8]>::to_vec)
        .into();
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..2000 {
            cases.push(
                (0..rng.usize(0..40))
                    .map(|_| *rng.choice(b"\r\n.a").unwrap())
                    .collect(),
            );
        }
        for m in cases {
            let want = reference(&m);
            let text = Stuffing::new(m.clone()).text().unwrap();
            assert_eq!(text.as_bytes(), want, "{m:?}");
            // Whole, and in the pieces a busy socket takes.
            for step in [usize::MAX, 1, 3] {
                assert_eq!(written(&m, step), want, "{m:?}, {step} bytes a write");
            }
        }
    }

    #[test]
    fn a_message_with_more_dot_lines_than_one_write_takes_goes_whole() {
        let m = ".\r\n".repeat(200).into_bytes();
        assert_eq!(written(&m, usize::MAX), reference(&m));
    }

    /// A [`Wire`] over a real loopback connection, and its other end.
    async fn wire_and_peer() -> (Wire, Slot, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let near = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let (near, far) = tokio::join!(near, listener.accept());
        let (wire, slot) = Wire::new(Box::new(near.unwrap()));
        (wire, slot, far.unwrap().0)
    }

    /// Whatever has arrived at `peer`, without waiting for more.
    fn arrived(peer: &tokio::net::TcpStream) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        while let Ok(n) = peer.try_read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    /// Polls `f` once: whether it finished, and how.
    async fn poll_once<F: std::future::Future + Unpin>(f: &mut F) -> Poll<F::Output> {
        std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *f).poll(cx))).await
    }

    /// The journal's `sending` mark commits while the message goes out:
    /// the relay gets all of it but the final dot, which alone delivers
    /// it, and that dot follows only once the mark is on disk.
    #[tokio::test]
    async fn a_held_message_ends_only_when_released() {
        use tokio::io::AsyncWriteExt;
        let m = b"Subject: hi\r\n\r\n.dot line\r\nbody".to_vec();
        let whole = reference(&m);
        let (mut wire, slot, mut peer) = wire_and_peer().await;
        slot.put(&Arc::new(Stuffing::new(m)));
        let mut flush = Box::pin(wire.flush());
        assert!(poll_once(&mut flush).await.is_pending(), "ended unreleased");
        let mut got = vec![0u8; whole.len() - END.len()];
        tokio::io::AsyncReadExt::read_exact(&mut peer, &mut got)
            .await
            .unwrap();
        assert_eq!(got, whole[..whole.len() - END.len()]);
        assert_eq!(arrived(&peer), b"", "more than the message before its end");
        slot.release(true);
        flush.await.unwrap();
        let mut end = [0u8; END.len()];
        tokio::io::AsyncReadExt::read_exact(&mut peer, &mut end)
            .await
            .unwrap();
        assert_eq!(end, END);
    }

    /// The mark could not be written: the write fails and the relay never
    /// reads the final dot, so it delivers nothing.
    #[tokio::test]
    async fn a_refused_message_never_ends() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let m = b"Subject: hi\r\n\r\nbody".to_vec();
        let (mut wire, slot, mut peer) = wire_and_peer().await;
        slot.put(&Arc::new(Stuffing::new(m.clone())));
        let mut flush = Box::pin(wire.flush());
        assert!(poll_once(&mut flush).await.is_pending());
        slot.release(false);
        assert!(flush.await.is_err());
        // Nothing written after a refusal either, not even a command.
        assert!(wire.write_all(b"QUIT\r\n").await.is_err());
        drop(wire);
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, m);
    }

    /// A message that is all dots and empty stretches still holds its end
    /// (the stretches before it write nothing).
    #[tokio::test]
    async fn a_message_of_empty_stretches_holds_its_end() {
        use tokio::io::AsyncWriteExt;
        for m in [&b""[..], b".", b"\r\n.\r\n."] {
            let whole = reference(m);
            let (mut wire, slot, mut peer) = wire_and_peer().await;
            slot.put(&Arc::new(Stuffing::new(m.to_vec())));
            let mut flush = Box::pin(wire.flush());
            assert!(poll_once(&mut flush).await.is_pending(), "{m:?}");
            slot.release(true);
            flush.await.unwrap();
            let mut got = vec![0u8; whole.len()];
            tokio::io::AsyncReadExt::read_exact(&mut peer, &mut got)
                .await
                .unwrap();
            assert_eq!(got, whole, "{m:?}");
        }
    }

    #[test]
    fn bytes_that_are_not_text_are_left_to_lettre() {
        let m = [0xff, b'.'];
        assert_eq!(Stuffing::new(m.to_vec()).text(), Err(&m[..]));
    }
}
