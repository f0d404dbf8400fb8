//! `herald serve`: the other end of the unsubscribe link.
//!
//! - `GET /unsubscribe?u=…&k=…&token=…` shows a page with one button; it
//!   changes nothing. Mail security scanners (Microsoft Safe Links,
//!   Proofpoint, Mimecast) open every link of every message they see, and
//!   lists whose links unsubscribed on GET lost their readers to them.
//! - `POST` to the same address unsubscribes: the RFC 8058 one-click body
//!   (`List-Unsubscribe=One-Click`, form-urlencoded or multipart, as Gmail
//!   and Yahoo send it) or the page's button. A POST with a good token and
//!   a body herald does not recognise also unsubscribes: when in doubt, an
//!   opt-out is honoured. The answer offers "Undo", a POST that takes the
//!   unsubscribe back (never a bounce).
//! - `GET /healthz` answers `ok` when the journal can be read.
//!
//! Everything is hostile until the token says otherwise: bodies over
//! [`Limits::max_body`] are refused unread, slow clients are cut off
//! (header and body timeouts, a lifetime per connection), connections are
//! capped overall and per client address, each client has a request budget
//! (429 with `Retry-After`), and every bad link gets the same 400 page
//! whatever the address. Addresses never reach the log in full, and no IP
//! address is stored.
//!
//! A POST with a valid token is always honoured: the token is checked
//! first (in constant time) and the budget is taken only from requests
//! that fail it and from page views. Gmail and Yahoo send one-click
//! unsubscribes for many subscribers from a few addresses of their own;
//! a budget on those would drop people who asked to leave. A repeated
//! valid POST for one person changes nothing (the journal ignores an
//! event it already holds), so it costs one small write at most.
//!
//! Connections are counted by the peer's address (IPv6 by its /64), as
//! the kernel gives it: up to [`Limits::per_address`] are served at once
//! and as many again may wait (up to the header timeout) for one of them
//! to end; any more from that address are closed at once. So one address
//! holding slow connections cannot take the slots everyone else needs.
//! (The accept loop that does so is [`crate::accept`], shared with the
//! live preview.)
//!
//! Behind the reverse proxy every request comes from 127.0.0.1; the client
//! a budget is kept for is then the last address in `X-Forwarded-For`
//! (the one the proxy itself added). From any other peer the header is
//! ignored, so a client cannot pick its own budget.
//!
//! The parts: this file (options, start, the state every request sees),
//! [`routes`] (what each address does), [`pages`] (the answers),
//! [`forms`] (what a POST body asks for) and [`budgets`] (the 429s).

mod budgets;
mod forms;
mod pages;
mod routes;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue};
use axum::routing::any;
use base64::Engine;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tower_service::Service;

use crate::accept::{self, Bounds, network_of};
use crate::store::Store;
use crate::unsubscribe::Keys;

use budgets::Budgets;

/// Bounds on what one client can make the server do.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest request body read; a one-click body is 26 bytes.
    pub max_body: usize,
    /// A client must send its request headers within this time.
    pub header_timeout: Duration,
    /// And its body within this time.
    pub body_timeout: Duration,
    /// A connection is closed after this long, however busy.
    pub connection_lifetime: Duration,
    /// Connections served at once; more wait in the kernel's queue.
    pub max_connections: usize,
    /// Connections from one client address served at once; as many again
    /// may wait, more are closed.
    pub per_address: usize,
    /// Requests per minute one client may make (the rest get 429).
    pub per_minute: u32,
    /// On SIGTERM, requests in flight get this long to finish.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body: 4 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            connection_lifetime: Duration::from_secs(60),
            max_connections: 512,
            per_address: 32,
            per_minute: 60,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// What the server needs besides the store.
pub struct Options {
    pub keys: Keys,
    /// The newsletter's name, shown on the pages.
    pub name: String,
    /// `#rrggbb`, the newsletter's accent colour.
    pub accent: String,
    /// The path of `unsubscribe_url`, answered besides `/unsubscribe`
    /// (for a proxy that passes the path through unchanged).
    pub path: Option<String>,
    pub limits: Limits,
}

/// What happened while the server ran, for the log line at the end.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub requests: u64,
    pub unsubscribed: u64,
    pub undone: u64,
    pub refused: u64,
    pub limited: u64,
    /// Connections closed unread: their address had its share open.
    pub crowded: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    unsubscribed: AtomicU64,
    undone: AtomicU64,
    refused: AtomicU64,
    limited: AtomicU64,
}

struct App {
    store: Mutex<Box<dyn Store>>,
    keys: Keys,
    name: String,
    css: String,
    csp: HeaderValue,
    limits: Limits,
    budgets: Mutex<Budgets>,
    counters: Counters,
    path: Option<String>,
}

/// The client a request is counted against (see the module comment).
#[derive(Clone, Copy, Debug)]
struct Client(IpAddr);

/// Serves until `shutdown` completes, then lets requests in flight finish
/// (up to [`Limits::shutdown_grace`]) and returns.
pub async fn serve(
    listener: TcpListener,
    store: Box<dyn Store>,
    options: Options,
    shutdown: impl std::future::Future<Output = ()>,
) -> Summary {
    let limits = options.limits;
    let app = Arc::new(App::new(store, options));
    let router = router(Arc::clone(&app));
    let bounds = Bounds {
        max_connections: limits.max_connections,
        // As many again may wait for a slot (file descriptors are bounded).
        waiting: limits.max_connections,
        per_address: Some(limits.per_address),
        header_timeout: limits.header_timeout,
        connection_lifetime: limits.connection_lifetime,
        shutdown_grace: limits.shutdown_grace,
    };
    let handler = move |peer: SocketAddr, mut req: Request<hyper::body::Incoming>| {
        let client = client_of(peer, req.headers());
        req.extensions_mut().insert(Client(client));
        let mut router = router.clone();
        // A connection dropped at its end of life does not cancel a
        // journal write it started: those run on their own thread.
        async move {
            match router.call(req).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        }
    };
    let closed = accept::serve(listener, bounds, handler, shutdown).await;
    if closed.cut_off {
        tracing::warn!(
            "some connections were still open after {}s and were closed",
            limits.shutdown_grace.as_secs()
        );
    }
    app.summary(closed.crowded)
}

fn router(app: Arc<App>) -> Router {
    let mut r = Router::new()
        .route("/healthz", any(routes::healthz))
        .route("/unsubscribe", any(routes::unsubscribe));
    if let Some(p) = app.path.as_deref() {
        r = r.route(p, any(routes::unsubscribe));
    }
    r.fallback(routes::not_found).with_state(app)
}

/// The client behind a request: the proxy's `X-Forwarded-For` when the
/// peer is this machine (the proxy), else the peer itself. IPv6 clients
/// count by their /64, which one subscriber's network usually holds whole.
fn client_of(peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    let mut ip = peer.ip();
    if ip.is_loopback()
        && let Some(forwarded) = headers
            .get_all("x-forwarded-for")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
        && let Some(last) = forwarded.rsplit(',').next()
        && let Ok(real) = last.trim().parse::<IpAddr>()
    {
        ip = real;
    }
    network_of(ip)
}
impl App {
    fn new(store: Box<dyn Store>, o: Options) -> App {
        let accent = if o.accent.len() == 7
            && o.accent.starts_with('#')
            && o.accent[1..].bytes().all(|b| b.is_ascii_hexdigit())
        {
            o.accent
        } else {
            crate::compose::render::DEFAULT_ACCENT.to_string()
        };
        let css = pages::CSS.replace("ACCENT", &accent);
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(css.as_bytes()));
        // Only the page's own style runs: no script, no images, no frames,
        // forms post back here only.
        let csp = HeaderValue::from_str(&format!(
            "default-src 'none'; style-src 'sha256-{hash}'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
        ))
        .expect("ASCII");
        App {
            store: Mutex::new(store),
            keys: o.keys,
            name: o.name,
            css,
            csp,
            limits: o.limits,
            budgets: Mutex::new(Budgets::new(o.limits.per_minute)),
            counters: Counters::default(),
            path: o.path.filter(|p| usable_path(p)),
        }
    }

    /// The counts, with `crowded` from the accept loop.
    fn summary(&self, crowded: u64) -> Summary {
        let c = &self.counters;
        Summary {
            requests: c.requests.load(Ordering::Relaxed),
            unsubscribed: c.unsubscribed.load(Ordering::Relaxed),
            undone: c.undone.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            limited: c.limited.load(Ordering::Relaxed),
            crowded,
        }
    }

    /// Runs `f` on the store, on a thread where it may wait for the
    /// journal (`herald send` writes to it too).
    async fn with_store<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut dyn Store) -> crate::store::Result<T> + Send + 'static,
    ) -> Option<T> {
        let app = Arc::clone(self);
        let result = tokio::task::spawn_blocking(move || {
            let mut store = app.store.lock().unwrap_or_else(|p| p.into_inner());
            f(store.as_mut())
        })
        .await;
        match result {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                tracing::error!("the journal: {e}");
                None
            }
            Err(e) => {
                tracing::error!("a journal task failed ({e})");
                None
            }
        }
    }
}

/// The paths axum can route as they are (no `{}` captures or `*`), and not
/// one of the server's own.
fn usable_path(p: &str) -> bool {
    p.starts_with('/')
        && p.len() > 1
        && p.len() <= 200
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.~".contains(&b))
        && !p.contains("//")
        && p != "/unsubscribe"
        && p != "/healthz"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proxy_names_the_client_and_nobody_else_does() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("1.1.1.1, 203.0.113.9"),
        );
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let remote: SocketAddr = "198.51.100.7:5000".parse().unwrap();
        assert_eq!(
            client_of(local, &h),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_of(remote, &h), remote.ip());
        let v6: SocketAddr = "[2001:db8:1:2:3:4:5:6]:80".parse().unwrap();
        assert_eq!(
            client_of(v6, &HeaderMap::new()),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
    }
}
