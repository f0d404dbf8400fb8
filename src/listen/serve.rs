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
//!
//! Behind the reverse proxy every request comes from 127.0.0.1; the client
//! a budget is kept for is then the last address in `X-Forwarded-For`
//! (the one the proxy itself added). From any other peer the header is
//! ignored, so a client cannot pick its own budget.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use axum::routing::any;
use base64::Engine;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tower_service::Service;

use crate::clock;
use crate::store::{Source, Store, Suppressed};
use crate::unsubscribe::{Keys, Verified, mask};

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
    crowded: AtomicU64,
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
    shutdown: impl Future<Output = ()>,
) -> Summary {
    let limits = options.limits;
    let app = Arc::new(App::new(store, options));
    let router = router(Arc::clone(&app));
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    // Sockets open at once, served or waiting for a slot: the file
    // descriptors the server may use.
    let sockets = Arc::new(tokio::sync::Semaphore::new(
        limits.max_connections.saturating_mul(2).max(2),
    ));
    let peers = Arc::new(Peers::new(limits.per_address));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let socket = tokio::select! {
            p = Arc::clone(&sockets).acquire_owned() => p.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: wait, don't spin.
                    tracing::warn!("cannot accept a connection ({e})");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let address = network_of(peer.ip());
        // Over its address's share (served and waiting): closed unread.
        let Some(place) = peers.enter(address) else {
            app.counters.crowded.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            let client = client_of(peer, req.headers());
            req.extensions_mut().insert(Client(client));
            let mut router = router.clone();
            async move { router.call(req).await }
        });
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            // hyper's floor; a request line and headers fit easily.
            .max_buf_size(8 * 1024);
        let lifetime = limits.connection_lifetime;
        let wait = limits.header_timeout;
        let slots = Arc::clone(&slots);
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            // First one of the address's own slots, then one of everyone's;
            // a client that gets neither in time is let go.
            let Ok(Ok(own)) = tokio::time::timeout(wait, place.served()).await else {
                return;
            };
            let Ok(Ok(slot)) = tokio::time::timeout(wait, slots.acquire_owned()).await else {
                return;
            };
            let connection = watcher.watch(http.serve_connection(TokioIo::new(stream), service));
            // Dropping the connection at its end of life does not cancel a
            // journal write it started: those run on their own thread.
            let _ = tokio::time::timeout(lifetime, connection).await;
            drop((slot, own, place, socket));
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "some connections were still open after {}s and were closed",
            limits.shutdown_grace.as_secs()
        );
    }
    app.summary()
}

fn router(app: Arc<App>) -> Router {
    let mut r = Router::new()
        .route("/healthz", any(healthz))
        .route("/unsubscribe", any(unsubscribe));
    if let Some(p) = app.path.as_deref() {
        r = r.route(p, any(unsubscribe));
    }
    r.fallback(not_found).with_state(app)
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

/// An address as budgets and connection counts know it: IPv6 by its /64,
/// an IPv4-mapped IPv6 address as the IPv4 address.
fn network_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        IpAddr::V6(v6) => IpAddr::V4(v6.to_ipv4_mapped().expect("checked")),
        v4 => v4,
    }
}

/// Connections open per client address: each address has `cap` slots to
/// be served in, and as many sockets again may wait for one.
struct Peers {
    cap: usize,
    open: Mutex<HashMap<IpAddr, (usize, Arc<tokio::sync::Semaphore>)>>,
}

/// One accepted connection's place in its address's count; leaving it
/// (dropping) frees the place.
struct Place {
    peers: Arc<Peers>,
    address: IpAddr,
    slots: Arc<tokio::sync::Semaphore>,
}

impl Peers {
    fn new(cap: usize) -> Peers {
        Peers {
            cap: cap.max(1),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// A place for one more connection from `address`, or `None` when it
    /// already has its share open (served and waiting).
    fn enter(self: &Arc<Self>, address: IpAddr) -> Option<Place> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let (count, slots) = open
            .entry(address)
            .or_insert_with(|| (0, Arc::new(tokio::sync::Semaphore::new(self.cap))));
        if *count >= self.cap.saturating_mul(2) {
            return None;
        }
        *count += 1;
        Some(Place {
            peers: Arc::clone(self),
            address,
            slots: Arc::clone(slots),
        })
    }
}

impl Place {
    /// Waits for one of the address's slots to be served in.
    async fn served(&self) -> Result<tokio::sync::OwnedSemaphorePermit, tokio::sync::AcquireError> {
        Arc::clone(&self.slots).acquire_owned().await
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut open = self.peers.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((count, _)) = open.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                // Forgotten when its last connection ends: the map holds
                // only addresses with connections open.
                open.remove(&self.address);
            }
        }
    }
}

/// A token bucket per client: `per_minute` requests a minute, and up to a
/// quarter of that at once.
struct Budgets {
    per_minute: u32,
    clients: HashMap<IpAddr, (f64, Instant)>,
}

/// The most clients remembered; past it, those with a full budget are
/// forgotten (they lose nothing), and if all are busy, all are.
const MAX_CLIENTS: usize = 100_000;

impl Budgets {
    fn capacity(&self) -> f64 {
        (f64::from(self.per_minute) / 4.0).max(5.0)
    }

    /// `Err(seconds)`: the client has to wait this long.
    fn take(&mut self, client: IpAddr, now: Instant) -> Result<(), u64> {
        let capacity = self.capacity();
        let rate = f64::from(self.per_minute) / 60.0;
        if self.clients.len() >= MAX_CLIENTS && !self.clients.contains_key(&client) {
            self.clients.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < capacity
            });
            if self.clients.len() >= MAX_CLIENTS {
                self.clients.clear();
            }
        }
        let (tokens, at) = self.clients.entry(client).or_insert((capacity, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(capacity);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / rate).ceil().max(1.0) as u64)
        }
    }
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
        let css = CSS.replace("ACCENT", &accent);
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
            budgets: Mutex::new(Budgets {
                per_minute: o.limits.per_minute.max(1),
                clients: HashMap::new(),
            }),
            counters: Counters::default(),
            path: o.path.filter(|p| usable_path(p)),
        }
    }

    fn summary(&self) -> Summary {
        let c = &self.counters;
        Summary {
            requests: c.requests.load(Ordering::Relaxed),
            unsubscribed: c.unsubscribed.load(Ordering::Relaxed),
            undone: c.undone.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            limited: c.limited.load(Ordering::Relaxed),
            crowded: c.crowded.load(Ordering::Relaxed),
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

    fn page(&self, status: StatusCode, title: &str, body: &str) -> Response {
        let html = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
             <meta name=\"robots\" content=\"noindex\">\
             <title>{title} · {name}</title><style>{css}</style></head>\n\
             <body><main><p class=\"name\">{name}</p><h1>{title}</h1>\n{body}\n</main></body></html>\n",
            title = escape(title),
            name = escape(&self.name),
            css = self.css,
        );
        self.respond(status, "text/html; charset=utf-8", html)
    }

    fn respond(&self, status: StatusCode, kind: &'static str, body: String) -> Response {
        let mut r = Response::new(Body::from(body));
        *r.status_mut() = status;
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            "x-robots-tag",
            HeaderValue::from_static("noindex, nofollow"),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        h.insert(header::CONTENT_SECURITY_POLICY, self.csp.clone());
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        r
    }

    /// The one answer to every link that is not a good one: it does not
    /// say whether the address exists, is subscribed, or what was wrong.
    fn bad_link(&self) -> Response {
        self.counters.refused.fetch_add(1, Ordering::Relaxed);
        self.page(
            StatusCode::BAD_REQUEST,
            "This link does not work",
            "<p>The unsubscribe link is incomplete or was changed. Some mail programs cut long \
             links in two.</p><p>Use the unsubscribe link at the bottom of the newest email, \
             or reply to that email with the word <b>unsubscribe</b>.</p>",
        )
    }

    fn trouble(&self) -> Response {
        self.page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Please try again in a few minutes",
            "<p>Something went wrong on our side and nothing was changed. \
             Please try again in a few minutes.</p>",
        )
    }

    /// Counts the request against its client's budget; the 429 answer if
    /// over.
    fn over_budget(&self, client: IpAddr) -> Option<Response> {
        let wait = {
            let mut b = self.budgets.lock().unwrap_or_else(|p| p.into_inner());
            b.take(client, Instant::now()).err()?
        };
        self.counters.limited.fetch_add(1, Ordering::Relaxed);
        let mut r = self.page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests",
            "<p>Please wait a minute and try again.</p>",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        Some(r)
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

const CSS: &str = "body{margin:0;background:#f4f5f7;color:#1f2933;\
font:17px/1.5 -apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif}\
main{max-width:32rem;margin:3rem auto;padding:2rem;background:#fff;border-top:6px solid ACCENT;\
border-radius:6px}\
.name{margin:0 0 .5rem;color:ACCENT;font-weight:700;letter-spacing:.04em;text-transform:uppercase;font-size:.85rem}\
h1{margin:0 0 1rem;font-size:1.5rem;color:#1b2a4a}\
button{font:inherit;font-weight:700;color:#fff;background:ACCENT;border:0;border-radius:4px;\
padding:.7rem 1.4rem;cursor:pointer}\
button.quiet{background:#fff;color:ACCENT;border:2px solid ACCENT}\
form{margin:1.5rem 0 .5rem}.small{color:#5b6675;font-size:.9rem}\
@media (prefers-color-scheme:dark){body{background:#111418;color:#e4e7eb}main{background:#1c2128}\
h1{color:#f1f3f5}.small{color:#aab2bd}button.quiet{background:#1c2128}}";

async fn healthz(State(app): State<Arc<App>>, req: Request) -> Response {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return method_not_allowed(&app, "GET, HEAD");
    }
    match app.with_store(|s| s.is_suppressed("healthz@invalid")).await {
        Some(_) => app.respond(StatusCode::OK, "text/plain; charset=utf-8", "ok\n".into()),
        None => app.respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            "the journal cannot be read\n".into(),
        ),
    }
}

async fn not_found(
    State(app): State<Arc<App>>,
    Extension(Client(client)): Extension<Client>,
) -> Response {
    app.counters.requests.fetch_add(1, Ordering::Relaxed);
    if let Some(r) = app.over_budget(client) {
        return r;
    }
    app.page(
        StatusCode::NOT_FOUND,
        "Nothing here",
        "<p>This address has no page.</p>",
    )
}

fn method_not_allowed(app: &App, allow: &'static str) -> Response {
    let mut r = app.page(
        StatusCode::METHOD_NOT_ALLOWED,
        "Not allowed",
        "<p>This page cannot be used this way.</p>",
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// What a POST asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Intent {
    /// RFC 8058's `List-Unsubscribe=One-Click`.
    OneClick,
    /// The page's button.
    Page,
    /// The confirmation page's "Undo".
    Undo,
}

async fn unsubscribe(
    State(app): State<Arc<App>>,
    Extension(Client(client)): Extension<Client>,
    req: Request,
) -> Response {
    app.counters.requests.fetch_add(1, Ordering::Relaxed);
    let method = req.method().clone();
    let query = req.uri().query().unwrap_or("");
    // The token is checked first, before any budget and before the body is
    // read: a POST with a good one is honoured whoever sends it (a mailbox
    // provider sends many people's), a bad link costs the server no more
    // than its headers. `Keys::verify` compares in constant time.
    let link = if query.len() > 2048 {
        None
    } else {
        app.keys.verify(query)
    };
    let query = query.to_string();
    let link = match link {
        Some(link) if method == Method::POST => link,
        link => {
            // Bad links, other methods and page views spend the budget.
            if let Some(r) = app.over_budget(client) {
                return r;
            }
            if !matches!(method, Method::GET | Method::HEAD | Method::POST) {
                return method_not_allowed(&app, "GET, HEAD, POST");
            }
            let Some(link) = link else {
                return app.bad_link();
            };
            return confirm_page(&app, &query, &link);
        }
    };
    let kind = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let limits = app.limits;
    if declared.is_some_and(|n| n > limits.max_body as u64) {
        return too_large(&app);
    }
    let body = match tokio::time::timeout(
        limits.body_timeout,
        axum::body::to_bytes(req.into_body(), limits.max_body),
    )
    .await
    {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => return too_large(&app),
        Err(_) => {
            return app.page(
                StatusCode::REQUEST_TIMEOUT,
                "Too slow",
                "<p>The request took too long to arrive. Please try again.</p>",
            );
        }
    };
    let intent = intent(&kind, &body);
    let Verified { email, campaign } = link;
    let masked = mask(&email);
    match intent {
        Intent::Undo => {
            let e = email.clone();
            // Only the person's own unsubscribe is taken back; a complaint,
            // a bounce or an addition by hand stands (the link may have
            // been forwarded, and a complaint is the person's last word).
            let Some((undone, still)) = app
                .with_store(move |s| {
                    let undone = s.unsuppress(&e, &[Source::OneClick, Source::Page])?;
                    Ok((undone, s.is_suppressed(&e)?))
                })
                .await
            else {
                return app.trouble();
            };
            if undone {
                app.counters.undone.fetch_add(1, Ordering::Relaxed);
                tracing::info!("{masked} took their unsubscribe back");
            }
            if still {
                return still_off_page(&app, &masked);
            }
            resubscribed_page(&app, &query, &masked)
        }
        Intent::OneClick | Intent::Page => {
            let source = if intent == Intent::Page {
                Source::Page
            } else {
                Source::OneClick
            };
            let entry_email = email.clone();
            let Some(added) = app
                .with_store(move |s| {
                    // The campaign is recorded only if the journal knows it:
                    // it is not covered by the token.
                    let campaign = match campaign {
                        Some(c) if s.campaign_hash(&c)?.is_some() => Some(c),
                        _ => None,
                    };
                    s.suppress(&[Suppressed {
                        email: entry_email.to_lowercase(),
                        reason: "unsubscribed".into(),
                        source,
                        campaign,
                        added_at: clock::now().to_string(),
                    }])
                })
                .await
            else {
                return app.trouble();
            };
            if added > 0 {
                app.counters.unsubscribed.fetch_add(1, Ordering::Relaxed);
                tracing::info!("{masked} unsubscribed ({})", source.as_str());
            }
            unsubscribed_page(&app, &query, &masked)
        }
    }
}

fn too_large(app: &App) -> Response {
    app.page(
        StatusCode::PAYLOAD_TOO_LARGE,
        "Too large",
        "<p>This request is larger than an unsubscribe can be.</p>",
    )
}

/// The form's `action`: the link's own query, relative, so it works under
/// whatever path the proxy gives the server.
fn action(query: &str) -> String {
    escape(&format!("?{query}"))
}

fn confirm_page(app: &App, query: &str, link: &Verified) -> Response {
    app.page(
        StatusCode::OK,
        "Unsubscribe?",
        &format!(
            "<p>Stop emails from {name} to <b>{addr}</b>?</p>\
             <form method=\"post\" action=\"{action}\"><input type=\"hidden\" name=\"action\" value=\"unsubscribe\">\
             <button type=\"submit\">Unsubscribe</button></form>\
             <p class=\"small\">Nothing changes until you press the button.</p>",
            name = escape(&app.name),
            addr = escape(&mask(&link.email)),
            action = action(query),
        ),
    )
}

fn unsubscribed_page(app: &App, query: &str, masked: &str) -> Response {
    app.page(
        StatusCode::OK,
        "You are unsubscribed",
        &format!(
            "<p><b>{addr}</b> will get no more emails from {name}.</p>\
             <form method=\"post\" action=\"{action}\"><input type=\"hidden\" name=\"action\" value=\"resubscribe\">\
             <button type=\"submit\" class=\"quiet\">Undo</button></form>\
             <p class=\"small\">Unsubscribed by mistake? Undo puts you back on the list.</p>",
            name = escape(&app.name),
            addr = escape(masked),
            action = action(query),
        ),
    )
}

fn resubscribed_page(app: &App, query: &str, masked: &str) -> Response {
    app.page(
        StatusCode::OK,
        "You are subscribed again",
        &format!(
            "<p><b>{addr}</b> will get emails from {name} again.</p>\
             <form method=\"post\" action=\"{action}\"><input type=\"hidden\" name=\"action\" value=\"unsubscribe\">\
             <button type=\"submit\" class=\"quiet\">Unsubscribe after all</button></form>",
            name = escape(&app.name),
            addr = escape(masked),
            action = action(query),
        ),
    )
}

/// Undo when the address is suppressed for another reason too: it says
/// so without saying which (the link may be in someone else's hands).
fn still_off_page(app: &App, masked: &str) -> Response {
    app.page(
        StatusCode::OK,
        "Still not subscribed",
        &format!(
            "<p>Your unsubscribe is taken back, but <b>{addr}</b> stays off the list of {name} \
             for another reason (for example, emails to it came back).</p>\
             <p class=\"small\">To get emails again, write to us from this address.</p>",
            name = escape(&app.name),
            addr = escape(masked),
        ),
    )
}

/// The intent of a POST body: form-urlencoded or multipart/form-data.
/// Anything else (no body, another type) counts as one-click.
fn intent(content_type: &str, body: &[u8]) -> Intent {
    let fields = if content_type
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        multipart_fields(content_type, body)
    } else {
        url::form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    };
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    };
    match field("action") {
        Some(a) if a.eq_ignore_ascii_case("resubscribe") => Intent::Undo,
        Some(a) if a.eq_ignore_ascii_case("unsubscribe") => Intent::Page,
        _ => Intent::OneClick,
    }
}

/// The text fields of a multipart/form-data body (RFC 7578), enough for
/// the one field RFC 8058 posts and the page's own.
fn multipart_fields(content_type: &str, body: &[u8]) -> Vec<(String, String)> {
    let Some(boundary) = content_type.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
    }) else {
        return Vec::new();
    };
    if boundary.is_empty() || boundary.len() > 70 {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(body);
    let delimiter = format!("--{boundary}");
    let mut fields = Vec::new();
    for part in text.split(delimiter.as_str()).skip(1) {
        if part.starts_with("--") {
            break;
        }
        let Some((head, value)) = part
            .split_once("\r\n\r\n")
            .or_else(|| part.split_once("\n\n"))
        else {
            continue;
        };
        let name = head.lines().find_map(|l| {
            let (h, v) = l.split_once(':')?;
            if !h.trim().eq_ignore_ascii_case("content-disposition") {
                return None;
            }
            v.split(';').find_map(|p| {
                let (k, v) = p.trim().split_once('=')?;
                (k.trim() == "name").then(|| v.trim().trim_matches('"').to_string())
            })
        });
        if let Some(name) = name {
            let value = value
                .strip_suffix("\r\n")
                .or_else(|| value.strip_suffix('\n'))
                .unwrap_or(value);
            fields.push((name, value.to_string()));
        }
    }
    fields
}

/// Text and double-quoted attributes alike (every attribute here is
/// double-quoted).
fn escape(s: &str) -> String {
    crate::html::attr(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_click_bodies_as_providers_send_them() {
        assert_eq!(
            intent(
                "application/x-www-form-urlencoded",
                b"List-Unsubscribe=One-Click"
            ),
            Intent::OneClick
        );
        let multipart = b"--XyZ\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--XyZ--\r\n";
        assert_eq!(
            intent("multipart/form-data; boundary=XyZ", multipart),
            Intent::OneClick
        );
        assert_eq!(
            intent("application/x-www-form-urlencoded", b"action=unsubscribe"),
            Intent::Page
        );
        assert_eq!(
            intent("application/x-www-form-urlencoded", b"action=resubscribe"),
            Intent::Undo
        );
        let undo =
            b"--b\r\nContent-Disposition: form-data; name=\"action\"\r\n\r\nresubscribe\r\n--b--";
        assert_eq!(
            intent("multipart/form-data; boundary=\"b\"", undo),
            Intent::Undo
        );
        assert_eq!(intent("", b""), Intent::OneClick);
    }

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

    #[test]
    fn budgets_refill_and_say_how_long_to_wait() {
        let mut b = Budgets {
            per_minute: 60,
            clients: HashMap::new(),
        };
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t = Instant::now();
        for _ in 0..15 {
            assert!(b.take(ip, t).is_ok());
        }
        assert_eq!(b.take(ip, t), Err(1));
        // Another client has its own budget.
        assert!(b.take("192.0.2.2".parse().unwrap(), t).is_ok());
        // A second later, one more.
        assert!(b.take(ip, t + Duration::from_secs(1)).is_ok());
    }
}
