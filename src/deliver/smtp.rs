//! SMTP connections, owned one per worker.
//!
//! lettre 0.11.23 never sets `TCP_NODELAY`, so its pooled transport waits
//! about 40 ms per message (Nagle against the server's delayed ACK; fixed
//! upstream in lettre PR #1159, not yet released). herald therefore opens
//! the TCP connection itself with `set_nodelay(true)` and hands it to
//! `AsyncSmtpConnection::connect_with_transport`, upgrading with STARTTLS
//! where required, or wrapping it in TLS itself (tokio-rustls) for
//! `smtps://`. Drop this when a lettre release carries the fix.
//! `connections_to_the_relay_have_nagle_off` (below) checks the socket.

use std::net::IpAddr;
use std::time::Duration;

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use tokio::net::TcpStream;

pub use super::{Failure, FailureKind};
use super::{Gate, Mailer, Outgoing};
use crate::deliver::message::Built;

mod data;
pub use data::Data;
use data::{Slot, Wire};

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// `smtp://`: plain connection upgraded with STARTTLS, which is required.
    StartTls,
    /// `smtps://`: TLS from the first byte.
    Implicit,
    /// `?tls=none`: no encryption (loopback, or when the config allows it).
    None,
}

#[derive(Clone)]
pub struct Relay {
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub user: Option<String>,
    password: Option<String>,
    /// A CA certificate (PEM) to trust besides the public ones, for a relay
    /// with a private certificate (`smtp_ca_file`).
    ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password.
        write!(f, "{}", self.describe())
    }
}

/// A relay address, or a relay's settings, that herald cannot use. Said
/// about the single relay (`smtp_url`); `herald send` names a relay of
/// `relays:` and its own password variable instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    #[error("`{0}` is not a relay address; write it like smtp://mail.example.org:587")]
    NotAnAddress(String),
    #[error(
        "put the relay's user name in the config (`smtp_user`) and the password in \
                        HERALD_SMTP_PASSWORD, not in the address"
    )]
    CredentialsInAddress,
    #[error("`{0}` names no host")]
    NoHost(String),
    #[error("`tls={0}` is not known; use tls=none or leave it out")]
    UnknownTls(String),
    #[error("`{0}://` is not a relay address; use smtp:// or smtps://")]
    UnknownScheme(String),
    #[error(
        "herald will not send the newsletter, and your relay password, unencrypted to {host}. \
                 Use smtp://{host}:587 (STARTTLS) or smtps://{host}:465, or, if this network really is private, \
                 set `smtp_allow_plaintext: true` in herald.yaml"
    )]
    Plaintext { host: String },
    #[error(
        "`smtp_user` is set but there is no password: set HERALD_SMTP_PASSWORD \
                        (or HERALD_SMTP_PASSWORD_FILE naming a file that holds it)"
    )]
    NoPassword,
}

impl Relay {
    /// Parses `smtp://host:587`, `smtps://host:465` or
    /// `smtp://127.0.0.1:2525?tls=none`. Plain text to a host that is not
    /// on this machine needs `allow_plaintext` (the config's
    /// `smtp_allow_plaintext: true`).
    pub fn parse(
        raw: &str,
        user: Option<String>,
        password: Option<String>,
        allow_plaintext: bool,
    ) -> Result<Relay, RelayError> {
        let url =
            url::Url::parse(raw.trim()).map_err(|_| RelayError::NotAnAddress(raw.to_string()))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(RelayError::CredentialsInAddress);
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| RelayError::NoHost(raw.to_string()))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let tls_param = url
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.to_string());
        let (tls, default_port) = match (url.scheme(), tls_param.as_deref()) {
            ("smtps", None) => (Tls::Implicit, 465),
            ("smtp", None | Some("starttls") | Some("required")) => (Tls::StartTls, 587),
            ("smtp", Some("none")) => (Tls::None, 25),
            ("smtp" | "smtps", Some(other)) => {
                return Err(RelayError::UnknownTls(other.to_string()));
            }
            (other, _) => return Err(RelayError::UnknownScheme(other.to_string())),
        };
        let port = url.port().unwrap_or(default_port);
        if tls == Tls::None && !is_loopback(&host) && !allow_plaintext {
            return Err(RelayError::Plaintext { host });
        }
        if user.is_some() && password.is_none() {
            return Err(RelayError::NoPassword);
        }
        Ok(Relay {
            host,
            port,
            tls,
            user,
            password,
            ca_pem: None,
        })
    }

    /// Trusts the CA certificate(s) in this PEM file too.
    pub fn with_ca_file(mut self, path: &std::path::Path) -> Result<Relay, crate::tls::TlsError> {
        let pem = crate::tls::read_ca_file(path, "CA file", &path.display().to_string())?;
        self.ca_pem = Some(pem);
        Ok(self)
    }

    fn tls_parameters(&self) -> Result<TlsParameters, Failure> {
        let mut b = TlsParameters::builder(self.host.clone());
        if let Some(pem) = &self.ca_pem {
            let cert = lettre::transport::smtp::client::Certificate::from_pem(pem)
                .map_err(Failure::from_lettre)?;
            b = b.add_root_certificate(cert);
        }
        b.build_rustls().map_err(Failure::from_lettre)
    }

    /// TLS from the first byte over our own TCP connection (for TCP_NODELAY).
    async fn implicit_tls(&self, tcp: TcpStream) -> Result<TlsTcp, Failure> {
        let config = |e: crate::tls::TlsError| Failure::config(e.to_string());
        let connector =
            crate::tls::connector(self.ca_pem.as_deref(), "the CA file").map_err(config)?;
        let name = crate::tls::server_name(&self.host).map_err(config)?;
        let stream = connector.connect(name, tcp).await.map_err(|e| {
            let why = format!("TLS with {} failed ({e})", self.host);
            if is_certificate_problem(&why) {
                Failure::config(why)
            } else {
                Failure::transient(why)
            }
        })?;
        Ok(TlsTcp(stream))
    }

    /// `smtp://host:port (STARTTLS)`, for people; no password.
    pub fn describe(&self) -> String {
        let (scheme, how) = match self.tls {
            Tls::StartTls => ("smtp", "STARTTLS"),
            Tls::Implicit => ("smtps", "TLS"),
            Tls::None => ("smtp", "not encrypted"),
        };
        let user = self
            .user
            .as_deref()
            .map(|u| format!(", as {u}"))
            .unwrap_or_default();
        format!("{scheme}://{}:{} ({how}{user})", self.host, self.port)
    }

    /// Opens a connection: TCP with no Nagle delay, EHLO, STARTTLS or TLS as
    /// required, then authentication.
    pub async fn connect(
        &self,
        hello: &ClientId,
        timeout: Duration,
    ) -> Result<Connection, Failure> {
        let conn = tokio::time::timeout(timeout, self.connect_inner(hello, timeout))
            .await
            .map_err(|_| {
                Failure::transient(format!(
                    "no answer from {} within {}s",
                    self.host,
                    timeout.as_secs()
                ))
            })??;
        Ok(conn)
    }

    async fn connect_inner(
        &self,
        hello: &ClientId,
        _timeout: Duration,
    ) -> Result<Connection, Failure> {
        let tcp = open_tcp(&self.host, self.port).await?;
        // Herald's own layer outermost, where it can be: messages are then
        // written from the bytes as built (see `data`). After STARTTLS
        // lettre's TLS is outermost, and messages go through lettre.
        let (stream, wire): (Box<dyn AsyncTokioStream>, _) = match self.tls {
            Tls::Implicit => {
                let (wire, slot) = Wire::new(Box::new(self.implicit_tls(tcp).await?));
                (Box::new(wire), Some(slot))
            }
            Tls::None => {
                let (wire, slot) = Wire::new(Box::new(tcp));
                (Box::new(wire), Some(slot))
            }
            Tls::StartTls => (Box::new(tcp), None),
        };
        let mut conn = AsyncSmtpConnection::connect_with_transport(stream, hello)
            .await
            .map_err(Failure::from_lettre)?;
        if self.tls == Tls::StartTls {
            if !conn.can_starttls() {
                return Err(Failure::config(format!(
                    "{} does not offer STARTTLS, so the connection would not be encrypted; \
                     use smtps:// if it expects TLS from the start",
                    self.host
                )));
            }
            let tls = self.tls_parameters()?;
            conn.starttls(tls, hello)
                .await
                .map_err(Failure::from_lettre)?;
        }
        // lettre keeps only the EHLO keywords it uses itself; PIPELINING is
        // not one of them, so ask once more and read the reply ourselves
        // (before AUTH: some servers forget a login on a second EHLO).
        let pipelining = conn
            .command(lettre::transport::smtp::commands::Ehlo::new(hello.clone()))
            .await
            .map_err(Failure::from_lettre)?
            .message()
            .any(|line| line.eq_ignore_ascii_case("PIPELINING"));
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            conn.auth(
                &[Mechanism::Plain, Mechanism::Login],
                &Credentials::new(user.clone(), password.clone()),
            )
            .await
            .map_err(|e| {
                if e.is_permanent() {
                    Failure::config(format!(
                        "the relay refused the user name or password ({})",
                        reply_text(&e)
                    ))
                } else {
                    Failure::from_lettre(e)
                }
            })?;
        }
        Ok(Connection {
            smtp: conn,
            pipelining,
            wire,
        })
    }
}

/// A connection to the relay, and whether it takes commands in a batch
/// (PIPELINING, RFC 2920): MAIL, RCPT and DATA then cost one round trip.
pub struct Connection {
    pub smtp: AsyncSmtpConnection,
    pub pipelining: bool,
    /// Where a message waits to be written under lettre (see `data`);
    /// `None` after STARTTLS.
    wire: Option<Slot>,
}

impl std::ops::Deref for Connection {
    type Target = AsyncSmtpConnection;
    fn deref(&self) -> &AsyncSmtpConnection {
        &self.smtp
    }
}

impl std::ops::DerefMut for Connection {
    fn deref_mut(&mut self) -> &mut AsyncSmtpConnection {
        &mut self.smtp
    }
}

/// A TLS stream over a TCP connection of ours, as lettre's transport wants it.
#[derive(Debug)]
struct TlsTcp(tokio_rustls::client::TlsStream<TcpStream>);

impl lettre::transport::smtp::client::AsyncTokioStream for TlsTcp {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl tokio::io::AsyncRead for TlsTcp {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsTcp {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    /// A message goes as slices (see `data`): all of them at once.
    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The relay as a Mailer: one [`Connection`] per engine worker.
pub struct Smtp {
    pub relay: Relay,
    hello: ClientId,
    timeout: Duration,
}

impl Smtp {
    pub fn new(relay: Relay, timeout: Duration) -> Smtp {
        let hello = ClientId::Domain(hostname_for_helo().unwrap_or_else(|| "localhost".into()));
        Smtp {
            relay,
            hello,
            timeout,
        }
    }
}

fn hostname_for_helo() -> Option<String> {
    let h = hostname::get().ok()?.into_string().ok()?;
    (!h.is_empty()
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'))
    .then_some(h)
}

impl Mailer for Smtp {
    type Conn = Connection;
    type Payload = Data;

    fn describe(&self) -> String {
        self.relay.describe()
    }

    /// Where the stuffing dots go is found here, on the builder thread.
    fn prepare(&self, built: Built) -> Data {
        Data::new(built.bytes, built.ascii)
    }

    async fn connect(&self) -> Result<Connection, Failure> {
        self.relay
            .connect(&self.hello, self.timeout)
            .await
            .map_err(|f| match f.kind {
                // Whatever went wrong before the first message is about
                // the relay, not about a recipient.
                FailureKind::Config => f,
                _ => Failure::relay(f.reply),
            })
    }

    async fn send(
        &self,
        conn: &mut Connection,
        message: &Outgoing<Data>,
        gate: &mut Gate,
    ) -> Result<String, Failure> {
        let mut in_data = false;
        let result = transaction(conn, message, gate, &mut in_data).await;
        if result.is_err() && !in_data {
            // A refused command leaves a transaction half done: the
            // engine starts afresh on a new connection.
            conn.abort().await;
        }
        // Failed once the relay was reading the message (the journal could
        // not record it, or the connection broke): a QUIT now would be read
        // as part of the message and wait out the timeout. The engine drops
        // the connection instead; closed before the final dot, the relay
        // delivers nothing (RFC 5321, 3.3).
        result
    }

    fn is_broken(&self, conn: &Connection) -> bool {
        conn.has_broken()
    }

    async fn quit(&self, mut conn: Connection) {
        let _ = conn.quit().await;
    }
}

/// MAIL, RCPT, DATA. Like lettre's `send`, but waits for the journal's
/// `sending` mark (if not yet on disk) only before the message's final
/// dot: nothing is delivered until then (RFC 5321 4.1.1.4). Through
/// herald's own layer the content goes out while the mark commits; after
/// STARTTLS (lettre writes the message and its end in one go) the mark
/// comes first.
async fn transaction(
    c: &mut Connection,
    message: &Outgoing<Data>,
    gate: &mut Gate,
    in_data: &mut bool,
) -> Result<String, Failure> {
    use lettre::transport::smtp::commands::{Data as DataCmd, Mail, Rcpt};
    use lettre::transport::smtp::extension::{Extension, MailBodyParameter, MailParameter};
    let mut params = Vec::new();
    let non_ascii = [&message.from, &message.to]
        .into_iter()
        .any(|a| !AsRef::<str>::as_ref(a).is_ascii());
    if non_ascii {
        if !c.server_info().supports_feature(Extension::SmtpUtfEight) {
            return Err(Failure {
                kind: FailureKind::Unsupported,
                reply:
                    "the address has non-ASCII characters and the relay does not offer SMTPUTF8; \
                        not sent (ask the relay's operator to enable SMTPUTF8)"
                        .into(),
            });
        }
        params.push(MailParameter::SmtpUtfEight);
    }
    if !message.payload.ascii && c.server_info().supports_feature(Extension::EightBitMime) {
        params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    let mail = Mail::new(Some(message.from.clone()), params);
    if c.pipelining {
        // One write, then one reply per command, in order. A refusal leaves
        // replies unread: the caller drops the connection on any failure.
        let mut batch = mail.to_string();
        batch.push_str(&Rcpt::new(message.to.clone(), vec![]).to_string());
        batch.push_str(&DataCmd.to_string());
        // The mark's commit overlaps the relay's three replies; the batch,
        // DATA included, is on the wire before the commit can finish.
        gate.arm();
        c.command(batch).await.map_err(Failure::from_lettre)?;
        c.read_response().await.map_err(Failure::from_lettre)?;
        c.read_response().await.map_err(Failure::from_lettre)?;
    } else {
        c.command(mail).await.map_err(Failure::from_lettre)?;
        c.command(Rcpt::new(message.to.clone(), vec![]))
            .await
            .map_err(Failure::from_lettre)?;
        gate.arm();
        c.command(DataCmd).await.map_err(Failure::from_lettre)?;
    }
    // The relay said 354: it reads everything from here as the message.
    *in_data = true;
    let data = &message.payload.message;
    let response = match c.wire.clone() {
        Some(slot) => {
            // lettre's flush writes it (see `Wire`); `command` adds nothing.
            // The message goes out while the mark commits; its final dot,
            // which alone can deliver it, waits for the mark.
            slot.put(data);
            let (passed, sent) = tokio::join!(
                async {
                    let passed = gate.pass().await;
                    slot.release(passed.is_ok());
                    passed
                },
                c.command("")
            );
            // Refused: the slot stays refused, so nothing more is written
            // on this connection, which the engine drops.
            passed?;
            sent
        }
        None => {
            gate.pass().await?;
            match data.text() {
                Ok(text) => c.command(text.as_str()).await,
                Err(bytes) => c.message(bytes).await,
            }
        }
    }
    .map_err(Failure::from_lettre)?;
    Ok(format!(
        "{} {}",
        response.code(),
        response.message().collect::<Vec<_>>().join(" ")
    ))
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl Failure {
    pub fn from_lettre(e: lettre::transport::smtp::Error) -> Failure {
        let reply = reply_text(&e);
        let code = e.status().map(|c| c.to_string());
        let kind = if is_certificate_problem(&e.to_string()) {
            // A certificate that does not check out will not check out on
            // the next try either: stop and say so.
            FailureKind::Config
        } else if code.as_deref() == Some("421") {
            // 421: the service is not available and the relay closes the
            // connection, whatever the command (RFC 5321 3.8).
            FailureKind::Relay
        } else if e.is_permanent() {
            FailureKind::Permanent
        } else if code.as_deref().is_some_and(|c| c.starts_with('4')) && is_slow_down(&reply) {
            FailureKind::SlowDown
        } else if code.is_some() {
            FailureKind::Transient
        } else {
            // No reply at all: the connection broke or timed out.
            FailureKind::Relay
        };
        Failure { kind, reply }
    }
}

fn is_certificate_problem(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("certificate") || t.contains("unknownissuer") || t.contains("notvalidforname")
}

/// A 4xx that asks the sender to slow down, as opposed to one about the
/// recipient (greylisting: "try again later", "greylisted", a busy or full
/// mailbox), which must not pause everyone else.
fn is_slow_down(reply: &str) -> bool {
    let r = reply.to_ascii_lowercase();
    if r.contains("greylist") || r.contains("graylist") {
        return false;
    }
    [
        "rate limit",
        "ratelimit",
        "rate-limit",
        "too many messages",
        "too many mails",
        "too many recipients",
        "too many connections",
        "sending rate",
        "message rate",
        "slow down",
        "throttl",
        "try again later: rate",
        "4.7.28",
    ]
    .iter()
    .any(|w| r.contains(w))
}

/// The server's reply as it said it, `550 5.1.1 No such user`, rather than
/// lettre's wording `permanent error (550): 5.1.1 No such user`.
fn reply_text(e: &lettre::transport::smtp::Error) -> String {
    let text = e.to_string();
    match e.status() {
        Some(code) => {
            let code = code.to_string();
            let said = text
                .split_once(&format!("({code}): "))
                .map_or(text.as_str(), |(_, rest)| rest);
            format!("{code} {said}")
        }
        None => text,
    }
}

/// A TCP connection to the relay with Nagle's algorithm off: lettre's own
/// connections leave it on, and a message's last write then waits for the
/// relay's delayed ACK, about 40 ms a message on one connection (see the
/// module's comment).
async fn open_tcp(host: &str, port: u16) -> Result<TcpStream, Failure> {
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|e| Failure::transient(format!("cannot connect to {host}:{port} ({e})")))?;
    tcp.set_nodelay(true)
        .map_err(|e| Failure::transient(format!("cannot set up the connection ({e})")))?;
    Ok(tcp)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Nagle stall (module comment) cannot come back unnoticed: the
    /// connection herald opens to a relay has TCP_NODELAY set. Checked on
    /// the socket itself, not by timing a send, which a loaded machine
    /// makes slow for other reasons.
    #[tokio::test]
    async fn connections_to_the_relay_have_nagle_off() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let tcp = open_tcp("127.0.0.1", port).await.unwrap();
        assert!(tcp.nodelay().unwrap(), "TCP_NODELAY is off");
    }

    #[test]
    fn relay_urls() {
        let r = Relay::parse("smtp://mail.example.org", None, None, false).unwrap();
        assert_eq!((r.port, r.tls), (587, Tls::StartTls));
        let r = Relay::parse("smtps://mail.example.org", None, None, false).unwrap();
        assert_eq!((r.port, r.tls), (465, Tls::Implicit));
        let r = Relay::parse("smtp://127.0.0.1:2525?tls=none", None, None, false).unwrap();
        assert_eq!(
            (r.host.as_str(), r.port, r.tls),
            ("127.0.0.1", 2525, Tls::None)
        );
    }

    #[test]
    fn plaintext_to_another_host_needs_explicit_permission() {
        let e = Relay::parse("smtp://mail.example.org:25?tls=none", None, None, false).unwrap_err();
        assert!(e.to_string().contains("smtp_allow_plaintext"), "{e}");
        assert!(Relay::parse("smtp://mail.example.org:25?tls=none", None, None, true).is_ok());
    }

    #[test]
    fn passwords_stay_out_of_urls_and_descriptions() {
        assert!(Relay::parse("smtp://u:secret@mail.example.org", None, None, false).is_err());
        let r = Relay::parse(
            "smtp://mail.example.org",
            Some("news".into()),
            Some("hunter2".into()),
            false,
        )
        .unwrap();
        assert!(!format!("{r:?} {}", r.describe()).contains("hunter2"));
        assert!(Relay::parse("smtp://mail.example.org", Some("news".into()), None, false).is_err());
    }
}
