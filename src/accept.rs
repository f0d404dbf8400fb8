//! The one HTTP accept loop, for `herald serve` (on the internet, behind a
//! proxy) and `herald preview --watch` (on 127.0.0.1). A leaf module: it
//! knows sockets, connections and HTTP/1.1, never what is answered.
//!
//! A server that accepts whatever comes is taken down by a client that
//! opens connections and sends nothing (slowloris), so:
//!
//! - at most [`Bounds::max_connections`] are served at once, and
//!   [`Bounds::waiting`] more may be accepted to wait (up to the header
//!   timeout) for one of them to end; beyond that the kernel's queue holds
//!   them, unaccepted, so the server's file descriptors are bounded;
//! - with [`Bounds::per_address`], connections are counted by the peer's
//!   address (IPv6 by its /64, see [`network_of`]): up to that many are
//!   served at once and as many again may wait; any more from that address
//!   are closed unread (counted in [`Closed::crowded`]). One address holding
//!   slow connections cannot take the slots everyone else needs;
//! - a client must send its request headers within the header timeout,
//!   and a connection ends after its lifetime, however busy;
//! - when `shutdown` completes, nothing more is accepted and the requests
//!   in flight get [`Bounds::shutdown_grace`] to finish.
//!
//! axum::serve has neither a header-read timeout nor a connection cap,
//! hence this loop on hyper's own connection builder.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// hyper's floor for its read buffer; a request line and headers fit
/// easily, and a client cannot make the server hold more.
const MAX_BUF: usize = 8 * 1024;

/// How many connections, for how long (see the module comment).
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections accepted beyond those, waiting for a slot; more wait in
    /// the kernel's queue.
    pub waiting: usize,
    /// Connections one address may have served at once (as many again may
    /// wait, more are closed); `None` counts no address (on 127.0.0.1
    /// every client is this machine).
    pub per_address: Option<usize>,
    /// A client must send its request headers within this time; a
    /// connection waits this long at most for its slot.
    pub header_timeout: Duration,
    /// A connection is closed after this long, however busy.
    pub connection_lifetime: Duration,
    /// Once `shutdown` completes, requests in flight get this long.
    pub shutdown_grace: Duration,
}

/// How the loop ended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Closed {
    /// Connections closed unread: their address had its share open.
    pub crowded: u64,
    /// Some connections were still open after the grace and were cut off.
    pub cut_off: bool,
}

/// Serves `handler` on every connection `listener` accepts, within
/// `bounds`, until `shutdown` completes; then lets the requests in flight
/// finish (up to [`Bounds::shutdown_grace`]) and returns. `handler` gets
/// the peer's address with each request.
pub async fn serve<H, F>(
    listener: TcpListener,
    bounds: Bounds,
    handler: H,
    shutdown: impl Future<Output = ()>,
) -> Closed
where
    H: Fn(SocketAddr, Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(bounds.max_connections));
    // Sockets open at once, served or waiting for a slot: the file
    // descriptors the server may use.
    let sockets = Arc::new(Semaphore::new(
        bounds.max_connections.saturating_add(bounds.waiting).max(1),
    ));
    let peers = bounds.per_address.map(|cap| Arc::new(Peers::new(cap)));
    let graceful = GracefulShutdown::new();
    let mut crowded = 0;
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
        // Over its address's share (served and waiting): closed unread.
        let place = match &peers {
            Some(peers) => match peers.enter(network_of(peer.ip())) {
                Some(place) => Some(place),
                None => {
                    crowded += 1;
                    drop(stream);
                    continue;
                }
            },
            None => None,
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let answer = handler(peer, req);
            async move { Ok::<_, Infallible>(answer.await) }
        });
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(bounds.header_timeout)
            .max_buf_size(MAX_BUF);
        let slots = Arc::clone(&slots);
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let Some(slot) = wait_for_slot(place.as_ref(), slots, bounds.header_timeout).await
            else {
                return;
            };
            let connection = watcher.watch(http.serve_connection(TokioIo::new(stream), service));
            // Dropping the connection at its end of life cancels its
            // handler; work a handler must finish runs on its own task.
            let _ = tokio::time::timeout(bounds.connection_lifetime, connection).await;
            drop((slot, place, socket));
        });
    }
    drop(listener);
    let cut_off = tokio::time::timeout(bounds.shutdown_grace, graceful.shutdown())
        .await
        .is_err();
    Closed { crowded, cut_off }
}

/// First one of the address's own slots (when addresses are counted),
/// then one of everyone's; `None` for a client that gets neither within
/// `wait`: it is let go.
async fn wait_for_slot(
    place: Option<&Place>,
    slots: Arc<Semaphore>,
    wait: Duration,
) -> Option<(Option<OwnedSemaphorePermit>, OwnedSemaphorePermit)> {
    let own = match place {
        Some(place) => Some(
            tokio::time::timeout(wait, Arc::clone(&place.slots).acquire_owned())
                .await
                .ok()?
                .ok()?,
        ),
        None => None,
    };
    let slot = tokio::time::timeout(wait, slots.acquire_owned())
        .await
        .ok()?
        .ok()?;
    Some((own, slot))
}

/// An address as connection counts (and `herald serve`'s budgets) know
/// it: IPv6 by its /64, which one subscriber's network usually holds
/// whole; an IPv4-mapped IPv6 address as the IPv4 address.
pub fn network_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

/// Connections open per client address: each address has `cap` slots to
/// be served in, and as many sockets again may wait for one.
struct Peers {
    cap: usize,
    open: Mutex<HashMap<IpAddr, (usize, Arc<Semaphore>)>>,
}

/// One accepted connection's place in its address's count; leaving it
/// (dropping) frees the place.
struct Place {
    peers: Arc<Peers>,
    address: IpAddr,
    slots: Arc<Semaphore>,
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
            .or_insert_with(|| (0, Arc::new(Semaphore::new(self.cap))));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_share_and_its_place_back() {
        let peers = Arc::new(Peers::new(2));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        // Two served and two waiting; the fifth is closed.
        let places: Vec<Place> = (0..4).map(|_| peers.enter(a).unwrap()).collect();
        assert!(peers.enter(a).is_none());
        // Another address is not crowded out.
        assert!(peers.enter(b).is_some());
        drop(places);
        assert!(peers.enter(a).is_some());
        // Nothing is remembered of an address with no connection open.
        assert!(peers.open.lock().unwrap().is_empty());
    }

    /// Over a real socket: a request is answered with the peer's address,
    /// a connection over its address's share is closed unread and counted,
    /// and the loop returns once `shutdown` completes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_over_an_address_share_are_closed_and_counted() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = listener.local_addr().unwrap();
        let bounds = Bounds {
            max_connections: 4,
            waiting: 4,
            per_address: Some(1),
            header_timeout: Duration::from_secs(60),
            connection_lifetime: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(60),
        };
        let handler = |peer: SocketAddr, _req: Request<Incoming>| async move {
            Response::new(Body::from(format!("hello {}", peer.ip())))
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, bounds, handler, async {
            let _ = stopped.await;
        }));
        // Two within the address's share (one served, one waiting for the
        // address's one slot: which one is the runtime's choice, as the
        // two are spawned as tasks), then one too many.
        let first = tokio::net::TcpStream::connect(at).await.unwrap();
        let second = tokio::net::TcpStream::connect(at).await.unwrap();
        let mut crowded = tokio::net::TcpStream::connect(at).await.unwrap();
        let mut rest = Vec::new();
        // Closed without a byte of answer (a reset is as good as an end).
        let n = crowded.read_to_end(&mut rest).await.unwrap_or(0);
        assert_eq!(n, 0, "{}", String::from_utf8_lossy(&rest));
        // Both are answered: the one waiting once the other has closed.
        let mut streams = [first, second];
        for stream in &mut streams {
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
        }
        for mut stream in streams {
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.unwrap();
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            assert!(answer.ends_with("hello 127.0.0.1"), "{answer}");
        }
        stop.send(()).unwrap();
        let closed = server.await.unwrap();
        assert_eq!(closed.crowded, 1);
    }

    #[test]
    fn ipv6_clients_count_by_their_network() {
        assert_eq!(
            network_of("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            network_of("::ffff:192.0.2.7".parse().unwrap()),
            "192.0.2.7".parse::<IpAddr>().unwrap()
        );
    }
}
