//! `herald preview POST --watch`: the preview page served on 127.0.0.1,
//! made again whenever the post, the settings file or an SVG picture it
//! shows changes on disk, and reloaded in the browser by itself.
//!
//! - A thread looks at the files' modification times, sizes and contents
//!   every [`POLL`] (no file-watching crate: a handful of small files, and
//!   polling works the same on every file system, network ones too). On a change
//!   it reads the settings again, composes and checks the post, and
//!   publishes a new [`Snapshot`] with a new version.
//! - A post that cannot be composed (broken front matter, a bad setting)
//!   shows its `file:line` error above the last render that worked; the
//!   next good save replaces it.
//! - The page listens on `/events` (server-sent events): the version is
//!   sent on connect and on every change, and the page reloads when it is
//!   not its own. A reconnect after herald restarts reloads too: versions
//!   carry the time herald started.
//!
//! Local, but still bounded: GET and HEAD only, five fixed paths (the page,
//! the email, its text, its PNGs by exact name from memory, the events),
//! no file is served from disk, a request must name this server as its
//! `Host` (a web page cannot reach it through DNS rebinding), header
//! timeouts and a connection cap, in the accept loop `herald serve` uses
//! ([`crate::accept`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, Response, StatusCode, header};
use base64::Engine;
use hyper::body::Incoming;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::{Mode, Shown};
use crate::accept::{self, Bounds};
use crate::compose::Issue;
use crate::compose::images;
use crate::config::ComposeOptions;

/// How often the files are looked at.
pub const POLL: Duration = Duration::from_millis(250);
/// Connections served at once (a browser opens about six).
const MAX_CONNECTIONS: usize = 32;
/// A client must send its request headers within this time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection (an event stream too) is closed after this long; the page
/// reconnects by itself.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(600);
/// An event stream sends a comment this often, so a dead page is noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// On Ctrl-C, requests in flight get this long.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Reads the settings again (herald.yaml, the environment, the flags): the
/// compose options and the settings file they were read from (watched; the
/// file herald would read when there is none yet).
pub type Reload = dyn Fn() -> Result<(ComposeOptions, PathBuf), crate::InputError> + Send + Sync;

/// What the server shows: one version of the preview.
#[derive(Debug)]
pub struct Snapshot {
    pub version: String,
    /// The preview page (with the error above it, if there is one).
    pub page: String,
    /// The email's HTML, text and PNGs from the last render that worked.
    pub html: Option<String>,
    pub text: Option<String>,
    pub images: HashMap<String, Vec<u8>>,
    /// Why the latest render failed, if it did (`file:line: ...`).
    pub error: Option<String>,
}

/// The watcher: a thread making snapshots, and the channel they come in.
pub struct Watch {
    rx: watch::Receiver<Arc<Snapshot>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    /// Renders the post once (before returning, so the first visitor sees
    /// it), then watches it on a thread of its own.
    ///
    /// `settings` is the settings file in use (or the one that would be
    /// read if it appeared): watched until a reload names another.
    pub fn start(post: PathBuf, settings: PathBuf, reload: Box<Reload>) -> Watch {
        let run = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let mut watcher = Watcher {
            post,
            settings,
            reload,
            run: format!("{run:x}"),
            count: 0,
            last_good: None,
            images: Vec::new(),
            seen: HashMap::new(),
        };
        let first = watcher.render();
        let (tx, rx) = watch::channel(Arc::new(first));
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("preview-watch".into())
            .spawn(move || watcher.run(&tx, &flag))
            .expect("a thread can be started");
        Watch {
            rx,
            stop,
            thread: Some(thread),
        }
    }

    /// The snapshot shown now.
    pub fn current(&self) -> Arc<Snapshot> {
        Arc::clone(&self.rx.borrow())
    }

    /// Stops the thread (it drops the channel, which ends the event streams).
    fn signal_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.signal_stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

/// A file's modification time, size and (up to [`HASHED`] bytes) a hash
/// of its content; `None` when it is not there.
type Stamp = Option<(SystemTime, u64, u64)>;

/// Files up to this size are also compared by content: on a file system
/// that keeps whole seconds, two saves of the same length within a second
/// look the same otherwise. Posts and logos are far smaller.
const HASHED: u64 = crate::limits::MAX_WATCH_HASH_BYTES;

fn stamp(p: &Path) -> Stamp {
    use std::hash::{Hash, Hasher};
    let m = std::fs::metadata(p).ok()?;
    // Read through the cap, not by the size the metadata gives: a device
    // (`/dev/zero`) says 0 and never ends, and a file may grow meanwhile.
    let bytes = if m.is_file() && m.len() <= HASHED {
        crate::limits::read_bounded(std::fs::File::open(p).ok()?, HASHED).ok()?
    } else {
        None
    };
    let hash = bytes.map_or(0, |b| {
        let mut h = std::hash::DefaultHasher::new();
        b.hash(&mut h);
        h.finish()
    });
    Some((
        m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        m.len(),
        hash,
    ))
}

/// Why the latest save cannot be shown (the page shows it above the last
/// render that worked).
#[derive(Debug, thiserror::Error)]
enum Unshown {
    /// herald.yaml, the environment or a flag.
    #[error(transparent)]
    Settings(#[from] crate::InputError),
    /// Composing the post failed: what the page says.
    #[error("{0}")]
    Post(String),
}

struct Watcher {
    post: PathBuf,
    /// The settings file of the last reload that worked: a broken one is
    /// still watched, so its fix is seen.
    settings: PathBuf,
    reload: Box<Reload>,
    run: String,
    count: u64,
    last_good: Option<Shown>,
    images: Vec<(String, Vec<u8>)>,
    /// Every file the last render read that can change it, and its stamp
    /// from just before that render.
    seen: HashMap<PathBuf, Stamp>,
}

impl Watcher {
    fn run(mut self, tx: &watch::Sender<Arc<Snapshot>>, stop: &AtomicBool) {
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(POLL);
            let changed: Vec<&PathBuf> = self
                .seen
                .iter()
                .filter(|(p, s)| stamp(p) != **s)
                .map(|(p, _)| p)
                .collect();
            if changed.is_empty() {
                continue;
            }
            tracing::info!(
                "{} changed; making the preview again",
                changed
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let snapshot = self.render();
            tx.send_replace(Arc::new(snapshot));
        }
        // Dropping `tx` here ends every event stream.
    }

    /// Reads the settings and the post again and makes a new snapshot.
    fn render(&mut self) -> Snapshot {
        // Stamped before reading: a save during the render is seen next time.
        let mut watched = vec![self.post.clone()];
        let mut seen: HashMap<PathBuf, Stamp> = HashMap::new();
        let stamp_all = |paths: &[PathBuf], seen: &mut HashMap<PathBuf, Stamp>| {
            for p in paths {
                seen.entry(p.clone()).or_insert_with(|| stamp(p));
            }
        };
        stamp_all(&watched, &mut seen);
        let composed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let config = (self.reload)().map_err(Unshown::from);
            let settings_file = match &config {
                Ok((_, file)) => file.clone(),
                Err(_) => self.settings.clone(),
            };
            let result = config.and_then(|(c, _)| {
                // `{:#}`: with every cause, as `herald preview` prints it.
                let issue =
                    Issue::compose(&self.post, &c).map_err(|e| Unshown::Post(format!("{e:#}")))?;
                let images: Vec<(String, Vec<u8>)> = issue
                    .rendered
                    .images
                    .iter()
                    .map(|i| (i.file_name.clone(), i.png.clone()))
                    .collect();
                Ok((Shown::new(&issue, &c), images))
            });
            (settings_file, result)
        }));
        let error = match composed {
            Ok((settings_file, result)) => {
                self.settings = settings_file.clone();
                watched.push(settings_file);
                match result {
                    Ok((shown, images)) => {
                        watched.extend(shown.svg_files.iter().cloned());
                        self.last_good = Some(shown);
                        self.images = images;
                        None
                    }
                    Err(e) => Some(e.to_string()),
                }
            }
            Err(_) => {
                watched.push(self.settings.clone());
                Some(format!(
                    "herald failed on this post (a bug in herald; please report it with the post). \
                 Save the post again to retry; {} is watched.",
                    self.post.display()
                ))
            }
        };
        // The settings file and pictures are stamped after the render: a
        // save in between is missed only until the post is saved again.
        stamp_all(&watched, &mut seen);
        self.seen = seen;
        self.count += 1;
        let version = format!("{}-{}", self.run, self.count);
        let shown = self.last_good.as_ref();
        let page = match super::page(shown, error.as_deref(), Mode::Live { version: &version }) {
            Ok(p) => p,
            Err(e) => format!("<!DOCTYPE html><title>herald</title><p>cannot show the page: {e}"),
        };
        match &error {
            Some(e) => tracing::warn!("the post cannot be shown: {e}"),
            None => tracing::info!(
                "preview ready ({} finding(s))",
                shown.map_or(0, |s| s.findings.len())
            ),
        }
        Snapshot {
            version,
            page,
            html: shown.map(|s| s.html.clone()),
            text: shown.map(|s| s.text.clone()),
            images: self.images.iter().cloned().collect(),
            error,
        }
    }
}

/// The headers every answer carries, and the two pages' policies.
struct Policies {
    page: HeaderValue,
    email: HeaderValue,
    /// The `Host` values this server answers to.
    hosts: Vec<String>,
}

impl Policies {
    fn new(port: u16) -> Policies {
        let hash = |s: &str| {
            base64::engine::general_purpose::STANDARD.encode(Sha256::digest(s.as_bytes()))
        };
        // The page runs only its own script and style; the email runs no
        // script at all (mail programs run none) and may load its pictures.
        let page = format!(
            "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; connect-src 'self'; \
             frame-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            hash(super::SCRIPT),
            hash(super::STYLE)
        );
        let email = "default-src 'none'; img-src 'self' https: http: data:; \
                     style-src 'unsafe-inline' https:; font-src https: data:; base-uri 'none'; \
                     form-action 'none'; frame-ancestors 'self'";
        Policies {
            page: HeaderValue::from_str(&page).expect("ASCII"),
            email: HeaderValue::from_static(email),
            hosts: vec![format!("127.0.0.1:{port}"), format!("localhost:{port}")],
        }
    }
}

/// Serves the preview until `shutdown` completes, then stops the watcher
/// and returns once the requests in flight are done (or after a grace).
pub async fn serve(listener: TcpListener, watch: Watch, shutdown: impl Future<Output = ()>) {
    let port = listener.local_addr().map_or(0, |a| a.port());
    let policies = Arc::new(Policies::new(port));
    let bounds = Bounds {
        max_connections: MAX_CONNECTIONS,
        // More wait in the kernel's queue, unaccepted.
        waiting: 0,
        // Every client is this machine.
        per_address: None,
        header_timeout: HEADER_TIMEOUT,
        connection_lifetime: CONNECTION_LIFETIME,
        shutdown_grace: SHUTDOWN_GRACE,
    };
    let rx = watch.rx.clone();
    let handler = move |_peer, req: Request<Incoming>| {
        let response = answer(&req, &rx, &policies);
        std::future::ready(response)
    };
    // The watcher drops its channel when it stops, which ends the event
    // streams: it is stopped as soon as nothing more is accepted, so they
    // end within the grace.
    let stopping = async {
        shutdown.await;
        watch.signal_stop();
    };
    accept::serve(listener, bounds, handler, stopping).await;
    tokio::task::spawn_blocking(move || watch.stop())
        .await
        .unwrap_or(());
}

fn answer(
    req: &Request<Incoming>,
    rx: &watch::Receiver<Arc<Snapshot>>,
    policies: &Policies,
) -> Response<Body> {
    let plain = |status: StatusCode, text: &'static str| {
        respond(status, "text/plain; charset=utf-8", Body::from(text), None)
    };
    if let Some(host) = req.headers().get(header::HOST)
        && !host
            .to_str()
            .is_ok_and(|h| policies.hosts.iter().any(|ok| h.eq_ignore_ascii_case(ok)))
    {
        return plain(
            StatusCode::MISDIRECTED_REQUEST,
            "this preview answers only at its own address\n",
        );
    }
    let head = req.method() == Method::HEAD;
    if !head && req.method() != Method::GET {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let path = req.uri().path();
    if path == "/events" {
        return events(rx.clone());
    }
    let snapshot = Arc::clone(&rx.borrow());
    let found: Option<(&'static str, Vec<u8>, Option<&HeaderValue>)> = match path {
        "/" | "/index.html" => Some((
            "text/html; charset=utf-8",
            snapshot.page.clone().into_bytes(),
            Some(&policies.page),
        )),
        "/email.html" => snapshot.html.as_ref().map(|h| {
            (
                "text/html; charset=utf-8",
                h.clone().into_bytes(),
                Some(&policies.email),
            )
        }),
        "/email.txt" => snapshot
            .text
            .as_ref()
            .map(|t| ("text/plain; charset=utf-8", t.clone().into_bytes(), None)),
        _ => path
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(images::PREVIEW_ASSETS))
            .and_then(|p| p.strip_prefix('/'))
            // An exact name of this render's PNGs: nothing is read from disk.
            .and_then(|name| snapshot.images.get(name))
            .map(|png| ("image/png", png.clone(), None)),
    };
    match found {
        Some((kind, bytes, csp)) => {
            let body = if head {
                Body::empty()
            } else {
                Body::from(bytes)
            };
            let mut r = respond(StatusCode::OK, kind, body, csp);
            if path == "/email.html" {
                r.headers_mut().insert(
                    header::X_FRAME_OPTIONS,
                    HeaderValue::from_static("SAMEORIGIN"),
                );
            }
            r
        }
        None => plain(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn respond(
    status: StatusCode,
    kind: &'static str,
    body: Body,
    csp: Option<&HeaderValue>,
) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        csp.cloned().unwrap_or_else(|| {
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'self'")
        }),
    );
    r
}

/// `text/event-stream`: the version now, then each new one, and a comment
/// every [`KEEP_ALIVE`]. Ends when the watcher stops.
fn events(rx: watch::Receiver<Arc<Snapshot>>) -> Response<Body> {
    let stream = futures_util::stream::unfold((rx, true), |(mut rx, first)| async move {
        if first {
            let v = rx.borrow_and_update().version.clone();
            return Some((
                Ok::<_, Infallible>(format!("retry: 1000\ndata: {v}\n\n")),
                (rx, false),
            ));
        }
        tokio::select! {
            r = rx.changed() => match r {
                Ok(()) => {
                    let v = rx.borrow_and_update().version.clone();
                    Some((Ok(format!("data: {v}\n\n")), (rx, false)))
                }
                Err(_) => None,
            },
            () = tokio::time::sleep(KEEP_ALIVE) => Some((Ok(": still here\n\n".to_string()), (rx, false))),
        }
    });
    respond(
        StatusCode::OK,
        "text/event-stream",
        Body::from_stream(stream),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A save of the same length with the old modification time (a file
    /// system keeping whole seconds) is still seen.
    #[test]
    fn a_same_size_save_in_the_same_second_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let post = dir.path().join("post.md");
        std::fs::write(&post, "---\ntitle: Alpha\n---\nBody one.\n").unwrap();
        let mtime = std::fs::metadata(&post).unwrap().modified().unwrap();
        let watch = Watch::start(
            post.clone(),
            dir.path().join("herald.yaml"),
            Box::new(|| {
                Ok((
                    crate::config::Config::default().compose(),
                    PathBuf::from(crate::config::DEFAULT_FILE),
                ))
            }),
        );
        let first = watch.current();
        assert!(first.error.is_none(), "{:?}", first.error);
        assert!(first.page.contains("Alpha"));
        std::fs::write(&post, "---\ntitle: Omega\n---\nBody one.\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&post)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let start = std::time::Instant::now();
        while watch.current().version == first.version {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the save was missed"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(watch.current().page.contains("Omega"));
        watch.stop();
    }

    #[test]
    fn the_page_policy_allows_exactly_its_own_script_and_style() {
        let p = Policies::new(4800);
        let csp = p.page.to_str().unwrap();
        assert!(csp.contains("script-src 'sha256-"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(p.hosts, ["127.0.0.1:4800", "localhost:4800"]);
    }
}
