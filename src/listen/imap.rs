//! `herald bounces --imap imaps://user@host/MAILBOX`: the returned mail
//! read over IMAP.
//!
//! herald reads the mailbox's unread messages, one at a time (never the
//! whole mailbox in memory), and marks each one it understood as read
//! (`\Seen`); one it did not understand stays unread, for a person, and is
//! listed again on the next run. Nothing is deleted or moved. TLS from the
//! first byte (`imaps://`, port 993) is required, except to a server on
//! this machine (`imap://127.0.0.1:143/INBOX`). The password comes only
//! from `HERALD_IMAP_PASSWORD` (or a file named by
//! `HERALD_IMAP_PASSWORD_FILE`).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::inbox::{Incoming, MAX_MESSAGE, Message};
use crate::InputError;

/// The password's environment variable (or `..._FILE`).
pub const PASSWORD_VAR: &str = "HERALD_IMAP_PASSWORD";

/// How long each IMAP step (connecting, the greeting, TLS, login, each
/// command and each answer) may take, unless `--imap-timeout` says.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// At most this much of a server's words goes into an error: a server
/// that answers garbage made a 14.6 KB error of a byte dump.
const MAX_WORDS: usize = 200;

/// Where to read, from `--imap`.
#[derive(Debug, Clone)]
pub struct Mailbox {
    host: String,
    port: u16,
    tls: bool,
    user: String,
    mailbox: String,
}

impl Mailbox {
    /// `imaps://user@host[:port]/MAILBOX`, or `imap://` to this machine.
    pub fn parse(raw: &str) -> Result<Mailbox, InputError> {
        let bad = |why: &str| {
            InputError::at(
                "--imap",
                format!(
                    "`{}`: {why}; write it like imaps://bounces@mail.example.org/INBOX",
                    crate::config::redact_url(raw)
                ),
            )
        };
        let url = url::Url::parse(raw).map_err(|_| bad("not an address"))?;
        let tls = match url.scheme() {
            "imaps" => true,
            "imap" => false,
            _ => return Err(bad("it must start with imaps://")),
        };
        if url.password().is_some() {
            return Err(bad(&format!(
                "a password in the address would show in logs and process lists; put it in \
                 {PASSWORD_VAR} (or {PASSWORD_VAR}_FILE) instead"
            )));
        }
        let host = url
            .host_str()
            .ok_or_else(|| bad("it has no server name"))?
            .trim_matches(['[', ']'])
            .to_string();
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !tls && !loopback {
            return Err(bad(
                "imap:// sends the password unencrypted; use imaps:// (TLS) for a server that is not on this machine",
            ));
        }
        let user = percent_encoding::percent_decode_str(url.username())
            .decode_utf8_lossy()
            .into_owned();
        if user.is_empty() {
            return Err(bad("it names no user (user@host)"));
        }
        let mailbox = percent_encoding::percent_decode_str(url.path().trim_start_matches('/'))
            .decode_utf8_lossy()
            .into_owned();
        Ok(Mailbox {
            port: url.port().unwrap_or(if tls { 993 } else { 143 }),
            host,
            tls,
            user,
            mailbox: if mailbox.is_empty() {
                "INBOX".into()
            } else {
                mailbox
            },
        })
    }

    /// For people: no password.
    pub fn describe(&self) -> String {
        format!(
            "{}://{}@{}:{}/{}",
            if self.tls { "imaps" } else { "imap" },
            self.user,
            self.host,
            self.port,
            self.mailbox
        )
    }
}

/// A plain or TLS connection, as async-imap wants one stream type, read
/// through a [`Guard`].
#[derive(Debug)]
struct Conn {
    stream: Stream,
    guard: Guard,
}

#[derive(Debug)]
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// The most a server may send in answer to one command beyond the message
/// itself (the FETCH around it, a long SEARCH answer).
const ANSWER_SLACK: u64 = 1024 * 1024;

/// Bounds what herald takes from the server, at the stream, before
/// async-imap buffers it: async-imap makes room for a whole literal as soon
/// as it sees `{N}` (up to 512 MiB), and reads an answer that never ends
/// (an unclosed quoted string) until that much. A literal over
/// [`MAX_MESSAGE`], or more than that plus [`ANSWER_SLACK`] in answer to
/// one command, fails the read; [`Guard::tripped`] then says so, and the
/// message is set aside as too big, whatever size the server announced.
#[derive(Debug, Clone, Default)]
struct Guard(std::sync::Arc<std::sync::Mutex<Scan>>);

#[derive(Debug, Default)]
struct Scan {
    /// Bytes taken since the last command was sent.
    taken: u64,
    /// The literal's size announced, when over the cap, or `taken`.
    tripped: Option<u64>,
    state: Literal,
}

/// Where the scan is in the IMAP syntax: literals (`{N}\r\n` then N bytes)
/// are the only place a `{` is not syntax, so tracking them is enough.
#[derive(Debug, Default, Clone, Copy)]
enum Literal {
    #[default]
    Text,
    /// After `{`, with the digits so far.
    Size(u64),
    /// After `}`, then after its `\r`.
    Closed(u64),
    Cr(u64),
    /// Inside a literal, with the bytes still to come.
    Inside(u64),
}

impl Guard {
    /// A command was sent: its answer starts.
    fn command(&self) {
        self.0.lock().expect("not poisoned").taken = 0;
    }

    /// The size that tripped the guard, if it did.
    fn tripped(&self) -> Option<u64> {
        self.0.lock().expect("not poisoned").tripped
    }

    /// Looks at `bytes`, just read; an error when they go over the caps.
    fn take(&self, bytes: &[u8]) -> std::io::Result<()> {
        let cap = MAX_MESSAGE as u64;
        let mut scan = self.0.lock().expect("not poisoned");
        scan.taken += bytes.len() as u64;
        if scan.taken > cap + ANSWER_SLACK {
            scan.tripped = Some(scan.taken);
        }
        let mut i = 0;
        while i < bytes.len() && scan.tripped.is_none() {
            if let Literal::Inside(left) = scan.state {
                // A literal's bytes are content, not syntax: skipped.
                let skip = left.min((bytes.len() - i) as u64);
                i += skip as usize;
                scan.state = match left - skip {
                    0 => Literal::Text,
                    left => Literal::Inside(left),
                };
                continue;
            }
            let b = bytes[i];
            scan.state = match (scan.state, b) {
                (_, b'{') => Literal::Size(0),
                (Literal::Size(n), b'0'..=b'9') => {
                    Literal::Size(n.saturating_mul(10).saturating_add(u64::from(b - b'0')))
                }
                (Literal::Size(n), b'}') => Literal::Closed(n),
                (Literal::Closed(n), b'\r') => Literal::Cr(n),
                (Literal::Cr(n), b'\n') if n > cap => {
                    scan.tripped = Some(n);
                    Literal::Text
                }
                (Literal::Cr(0), b'\n') => Literal::Text,
                (Literal::Cr(n), b'\n') => Literal::Inside(n),
                _ => Literal::Text,
            };
            i += 1;
        }
        match scan.tripped {
            Some(_) => Err(std::io::Error::other(format!(
                "the server sent more than {} MiB at once",
                MAX_MESSAGE / (1024 * 1024)
            ))),
            None => Ok(()),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = match &mut this.stream {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        if let Poll::Ready(Ok(())) = polled {
            this.guard.take(&buf.filled()[before..])?;
        }
        polled
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Trouble with the IMAP server: herald's to report, not the input's.
/// One line, at most [`MAX_WORDS`] characters of what the server said.
fn trouble(m: &Mailbox, what: impl std::fmt::Display) -> crate::Fault {
    crate::Fault::new(
        format!("IMAP {}: {}", m.describe(), one_line(&what.to_string())),
        "check the server, the user and HERALD_IMAP_PASSWORD, then run again",
    )
}

/// `s` on one line, control characters and runs of blanks as one space,
/// cut at [`MAX_WORDS`] characters.
fn one_line(s: &str) -> String {
    let mut out = String::new();
    for (i, word) in s
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .enumerate()
    {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word);
        if out.chars().count() > MAX_WORDS {
            let cut: String = out.chars().take(MAX_WORDS).collect();
            return format!("{cut}...");
        }
    }
    out
}

/// Runs one IMAP step with the timeout.
async fn timed<T, E: std::fmt::Display>(
    m: &Mailbox,
    timeout: Duration,
    what: &str,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, crate::Fault> {
    match tokio::time::timeout(timeout, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(trouble(m, format!("{what} failed ({e})"))),
        Err(_) => Err(trouble(
            m,
            format!(
                "{what}: no answer in {}s (--imap-timeout)",
                timeout.as_secs_f64()
            ),
        )),
    }
}

type Session = async_imap::Session<Conn>;

/// One connection to the mailbox: logged in, the mailbox selected.
struct Client<'a> {
    m: &'a Mailbox,
    password: &'a str,
    ca_pem: Option<&'a [u8]>,
    timeout: Duration,
    rt: tokio::runtime::Runtime,
    session: Option<(Session, Guard)>,
}

/// What fetching one message gave.
enum Fetched {
    Bytes(Vec<u8>),
    /// The server sent no content for it.
    Nothing,
    /// Over the cap, whatever the server announced: the size it sent or
    /// announced. The connection is dropped (it is mid-answer).
    TooBig(u64),
}

/// Calls `each` with every unread message; marks as read those for which
/// it returns `true` (understood), unless `dry_run`. A message over
/// [`MAX_MESSAGE`] (by the size the server gives) is not fetched: it is
/// handed on as set aside and stays unread. One whose content turns out
/// bigger than that (the server said less) is set aside too, and herald
/// connects again for the next. Every step has `timeout`.
///
/// The server's trouble is a [`crate::Fault`]; `each`'s own errors (of
/// the caller's type `E`, which takes a fault too) end the run as they are.
pub fn read<E: From<crate::Fault>>(
    m: &Mailbox,
    password: &str,
    ca_pem: Option<&[u8]>,
    dry_run: bool,
    timeout: Duration,
    mut each: impl FnMut(Incoming) -> Result<bool, E>,
) -> Result<(), E> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| crate::Fault::io("start the IMAP client", &e))?;
    let mut client = Client {
        m,
        password,
        ca_pem,
        timeout,
        rt,
        session: None,
    };
    for uid in client.unseen()? {
        let name = format!("imap:{uid}");
        let too_big = |size: u64, how: &str| Incoming::SetAside {
            name: name.clone(),
            why: format!(
                "larger than {} MiB ({size} bytes{how}), so not read: look at it in a mail program",
                MAX_MESSAGE / (1024 * 1024)
            ),
        };
        let incoming = match client.fetch(uid)? {
            Fetched::Bytes(b) => Incoming::Message(Message::other(name.clone(), b)),
            Fetched::TooBig(size) => too_big(size, ""),
            Fetched::Nothing => Incoming::SetAside {
                name: name.clone(),
                why: "the server sent no content for it (deleted meanwhile?)".into(),
            },
        };
        if each(incoming)? && !dry_run {
            client.mark_read(uid)?;
        }
    }
    client.logout();
    Ok(())
}

impl Client<'_> {
    /// The runtime, the session and its guard, connecting (again) when
    /// there is no session.
    fn session(&mut self) -> Result<(&tokio::runtime::Runtime, &mut Session, Guard), crate::Fault> {
        if self.session.is_none() {
            let session =
                self.rt
                    .block_on(connect(self.m, self.password, self.ca_pem, self.timeout))?;
            self.session = Some(session);
        }
        let (session, guard) = self.session.as_mut().expect("just connected");
        Ok((&self.rt, session, guard.clone()))
    }

    /// The unread messages' UIDs, in order.
    fn unseen(&mut self) -> Result<Vec<u32>, crate::Fault> {
        let (m, timeout) = (self.m, self.timeout);
        let (rt, session, _) = self.session()?;
        let mut uids: Vec<u32> = rt
            .block_on(async { timed(m, timeout, "searching", session.uid_search("UNSEEN")).await })?
            .into_iter()
            .collect();
        uids.sort_unstable();
        Ok(uids)
    }

    /// One message: its size first, then its content if that is under the
    /// cap. Trouble other than the size is the server's, and ends the run.
    fn fetch(&mut self, uid: u32) -> Result<Fetched, crate::Fault> {
        let (m, timeout) = (self.m, self.timeout);
        let (rt, session, guard) = self.session()?;
        let fetched = rt.block_on(async {
            guard.command();
            let stream = timed(
                m,
                timeout,
                "asking a message's size",
                session.uid_fetch(uid.to_string(), "RFC822.SIZE"),
            )
            .await?;
            let fetches: Vec<_> = timed(m, timeout, "asking a message's size", async {
                Ok::<_, std::io::Error>(stream.collect::<Vec<_>>().await)
            })
            .await?;
            let size = fetches
                .into_iter()
                .filter_map(Result::ok)
                .find_map(|f| f.size);
            if let Some(size) = size.filter(|&s| s as usize > MAX_MESSAGE) {
                return Ok(Fetched::TooBig(size.into()));
            }
            guard.command();
            let mut stream = timed(
                m,
                timeout,
                "fetching",
                session.uid_fetch(uid.to_string(), "BODY.PEEK[]"),
            )
            .await?;
            let mut body = None;
            while let Some(fetch) = timed(m, timeout, "fetching", async {
                Ok::<_, std::io::Error>(stream.next().await)
            })
            .await?
            {
                let fetch = fetch.map_err(|e| trouble(m, format!("fetching failed ({e})")))?;
                if let Some(b) = fetch.body() {
                    body = Some(b.to_vec());
                }
            }
            Ok::<_, crate::Fault>(match body {
                Some(b) if b.len() > MAX_MESSAGE => Fetched::TooBig(b.len() as u64),
                Some(b) => Fetched::Bytes(b),
                None => Fetched::Nothing,
            })
        });
        match (fetched, guard.tripped()) {
            // The guard stopped the answer midway: this connection is of no
            // more use; the next message gets a new one.
            (_, Some(size)) => {
                self.session = None;
                tracing::warn!(
                    "IMAP {}: message {uid} is larger than the server said; connecting again",
                    m.describe()
                );
                Ok(Fetched::TooBig(size))
            }
            (fetched, None) => Ok(fetched?),
        }
    }

    /// Marks the message as read (`\Seen`).
    fn mark_read(&mut self, uid: u32) -> Result<(), crate::Fault> {
        let (m, timeout) = (self.m, self.timeout);
        let (rt, session, guard) = self.session()?;
        guard.command();
        rt.block_on(async {
            let stream = timed(
                m,
                timeout,
                "marking as read",
                session.uid_store(uid.to_string(), "+FLAGS (\\Seen)"),
            )
            .await?;
            // The answer is waited for with the timeout too: a server
            // that never answered kept herald waiting for ever.
            timed(m, timeout, "marking as read", async {
                Ok::<_, std::io::Error>(stream.collect::<Vec<_>>().await)
            })
            .await?;
            Ok(())
        })
    }

    fn logout(mut self) {
        if let Some((mut session, _)) = self.session.take() {
            self.rt.block_on(async {
                let _ = tokio::time::timeout(self.timeout, session.logout()).await;
            });
        }
    }
}

/// Connects, checks the greeting, logs in and selects the mailbox.
async fn connect(
    m: &Mailbox,
    password: &str,
    ca_pem: Option<&[u8]>,
    timeout: Duration,
) -> Result<(Session, Guard), crate::Fault> {
    let tcp = timed(
        m,
        timeout,
        "connecting",
        TcpStream::connect((m.host.as_str(), m.port)),
    )
    .await?;
    let stream = if m.tls {
        Stream::Tls(Box::new(tls(m, tcp, ca_pem, timeout).await?))
    } else {
        Stream::Plain(tcp)
    };
    let guard = Guard::default();
    let mut client = async_imap::Client::new(Conn {
        stream,
        guard: guard.clone(),
    });
    let greeting = timed(m, timeout, "the greeting", async {
        client
            .read_response()
            .await?
            .ok_or_else(|| std::io::Error::other("the server closed the connection"))
    })
    .await?;
    // Not an IMAP greeting ("* OK ..."): say so, in one line.
    if !matches!(
        greeting.parsed(),
        async_imap::imap_proto::Response::Data {
            status: async_imap::imap_proto::Status::Ok | async_imap::imap_proto::Status::PreAuth,
            ..
        }
    ) {
        return Err(trouble(
            m,
            "the server's greeting is not IMAP's (\"* OK\"): is this the right server and port?",
        ));
    }
    guard.command();
    let mut session = match tokio::time::timeout(timeout, client.login(&m.user, password)).await {
        Ok(Ok(s)) => s,
        // The server's words, never the password.
        Ok(Err((e, _))) => return Err(trouble(m, format!("login refused ({e})"))),
        Err(_) => return Err(trouble(m, "login: no answer")),
    };
    guard.command();
    timed(
        m,
        timeout,
        "opening the mailbox",
        session.select(&m.mailbox),
    )
    .await?;
    guard.command();
    Ok((session, guard))
}

async fn tls(
    m: &Mailbox,
    tcp: TcpStream,
    ca_pem: Option<&[u8]>,
    timeout: Duration,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, crate::Fault> {
    let connector = crate::tls::connector(ca_pem, "the CA file").map_err(|e| trouble(m, e))?;
    let name = crate::tls::server_name(&m.host).map_err(|e| trouble(m, e))?;
    timed(m, timeout, "TLS", connector.connect(name, tcp)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked_before_anything_connects() {
        let m = Mailbox::parse("imaps://bounces@mail.example.org/Bounces").unwrap();
        assert_eq!(m.describe(), "imaps://bounces@mail.example.org:993/Bounces");
        let m = Mailbox::parse("imap://b@127.0.0.1:1143").unwrap();
        assert_eq!(m.describe(), "imap://b@127.0.0.1:1143/INBOX");
        for (bad, why) in [
            ("imap://b@mail.example.org/INBOX", "unencrypted"),
            (
                "imaps://b:secret@mail.example.org/",
                "password in the address",
            ),
            ("imaps://mail.example.org/", "no user"),
            ("https://x.org/", "imaps://"),
        ] {
            let e = Mailbox::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(!e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn the_guard_trips_on_a_literal_or_an_answer_over_the_cap() {
        let cap = MAX_MESSAGE as u64;
        // A literal within the cap, whose content looks like a huge one.
        let g = Guard::default();
        g.take(b"* 1 FETCH (BODY[] {15}\r\n{99999999999}\r\n)\r\n")
            .unwrap();
        assert_eq!(g.tripped(), None);
        // Split over reads, a literal over the cap trips at its `{N}`.
        let g = Guard::default();
        g.take(b"* 1 FETCH (BODY[] {9999").unwrap();
        let e = g.take(b"99999}\r").and_then(|()| g.take(b"\n"));
        assert!(e.is_err());
        assert_eq!(g.tripped(), Some(999_999_999));
        // An answer that goes on past the cap trips; a new command
        // starts a new count.
        let g = Guard::default();
        let mb = vec![b'y'; 1024 * 1024];
        for _ in 0..8 {
            g.take(&mb).unwrap();
        }
        g.command();
        g.take(&mb).unwrap();
        let g = Guard::default();
        let mut over = Ok(());
        for _ in 0..=(cap + ANSWER_SLACK) / (1024 * 1024) {
            over = over.and_then(|()| g.take(&mb));
        }
        assert!(over.is_err());
    }
}
