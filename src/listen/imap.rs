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

/// A plain or TLS connection, as async-imap wants one stream type.
#[derive(Debug)]
enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
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

/// Calls `each` with every unread message; marks as read those for which
/// it returns `true` (understood), unless `dry_run`. A message over
/// [`MAX_MESSAGE`] (by the size the server gives) is not fetched: it is
/// handed on as set aside and stays unread. Every step has `timeout`.
pub fn read(
    m: &Mailbox,
    password: &str,
    ca_pem: Option<&[u8]>,
    dry_run: bool,
    timeout: Duration,
    mut each: impl FnMut(Incoming) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| crate::Fault::io("start the IMAP client", &e))?;
    let mut session = rt.block_on(async {
        let tcp = timed(
            m,
            timeout,
            "connecting",
            TcpStream::connect((m.host.as_str(), m.port)),
        )
        .await?;
        let conn = if m.tls {
            Conn::Tls(Box::new(tls(m, tcp, ca_pem, timeout).await?))
        } else {
            Conn::Plain(tcp)
        };
        let mut client = async_imap::Client::new(conn);
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
        let session = match tokio::time::timeout(timeout, client.login(&m.user, password)).await {
            Ok(Ok(s)) => s,
            // The server's words, never the password.
            Ok(Err((e, _))) => return Err(trouble(m, format!("login refused ({e})"))),
            Err(_) => return Err(trouble(m, "login: no answer")),
        };
        Ok::<_, crate::Fault>(session)
    })?;
    let uids = rt.block_on(async {
        timed(
            m,
            timeout,
            "opening the mailbox",
            session.select(&m.mailbox),
        )
        .await?;
        let mut uids: Vec<u32> = timed(m, timeout, "searching", session.uid_search("UNSEEN"))
            .await?
            .into_iter()
            .collect();
        uids.sort_unstable();
        anyhow::Ok(uids)
    })?;
    for uid in uids {
        let name = format!("imap:{uid}");
        let size = rt.block_on(async {
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
            anyhow::Ok(size)
        })?;
        if size.is_some_and(|s| s as usize > MAX_MESSAGE) {
            each(Incoming::SetAside {
                name,
                why: format!(
                    "larger than {} MiB ({} bytes), so not fetched: look at it in a mail program",
                    MAX_MESSAGE / (1024 * 1024),
                    size.unwrap_or_default()
                ),
            })?;
            continue;
        }
        let bytes = rt.block_on(async {
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
            anyhow::Ok(body)
        })?;
        let incoming = match bytes {
            Some(b) if b.len() > MAX_MESSAGE => Incoming::SetAside {
                name,
                why: format!(
                    "larger than {} MiB, so not read: look at it in a mail program",
                    MAX_MESSAGE / (1024 * 1024)
                ),
            },
            Some(b) => Incoming::Message(Message::other(name, b)),
            None => Incoming::SetAside {
                name,
                why: "the server sent no content for it (deleted meanwhile?)".into(),
            },
        };
        let understood = each(incoming)?;
        if understood && !dry_run {
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
                anyhow::Ok(())
            })?;
        }
    }
    rt.block_on(async {
        let _ = tokio::time::timeout(timeout, session.logout()).await;
    });
    Ok(())
}

async fn tls(
    m: &Mailbox,
    tcp: TcpStream,
    ca_pem: Option<&[u8]>,
    timeout: Duration,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, crate::Fault> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = ca_pem {
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem).flatten() {
            roots
                .add(cert)
                .map_err(|e| trouble(m, format!("the CA file cannot be used ({e})")))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| trouble(m, format!("TLS cannot be set up ({e})")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(m.host.clone())
        .map_err(|_| trouble(m, "not a name TLS can check"))?;
    timed(
        m,
        timeout,
        "TLS",
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).connect(name, tcp),
    )
    .await
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
}
