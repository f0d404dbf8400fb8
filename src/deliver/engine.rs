//! The send loop: a builder thread makes messages from the store's queue,
//! one worker per connection hands them to the [`Mailer`], and one thread
//! writes the store, committing what several workers report at once (group
//! commit). The same loop serves real sends, test sends and dry runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, Notify, mpsc, oneshot};
use tokio::time::Instant;

use super::throttle::{self, Limiter, Rate};
use super::{FailureKind, Gate, Mailer, Outgoing};
use crate::audience::Recipient;
use crate::message::Composer;
use crate::store::{RateGate, Row, State, Store, Update};

#[derive(Debug, Clone)]
pub struct Settings {
    pub connections: usize,
    pub rate: Option<Rate>,
    /// `batch_size` messages, then a pause of `batch_pause`.
    pub batch: Option<(u64, Duration)>,
    /// Stop after handing this many messages to the mailer in this run.
    pub max_per_run: Option<u64>,
    /// Attempts per message in one run before it is left deferred.
    pub max_attempts: u32,
    /// The first retry waits this long; each further one twice as long, with jitter.
    pub retry_base: Duration,
    /// The longest a connection or one message may take.
    pub timeout: Duration,
    pub resend_unknown: bool,
    /// A relay that has done nothing but fail (refused, timed out, 421,
    /// "slow down") for this long is taken as down: the run stops.
    pub relay_down_after: Duration,
    /// The send window closes this long after the run starts: no message
    /// starts after that, the ones in flight finish, the rest wait for the
    /// next run. Relative, so tests can run it on tokio's paused clock.
    pub window_closes_after: Option<Duration>,
    /// The first relay's name for messages and the journal (`relays:`);
    /// `None`: what its Mailer calls itself.
    pub relay_name: Option<String>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            connections: 4,
            rate: None,
            batch: None,
            max_per_run: None,
            max_attempts: 4,
            retry_base: Duration::from_secs(1),
            timeout: Duration::from_secs(60),
            resend_unknown: false,
            relay_down_after: Duration::from_secs(60),
            window_closes_after: None,
            relay_name: None,
        }
    }
}

/// Live counters, shown by the progress bar and the log lines.
#[derive(Default)]
pub struct Progress {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub deferred: AtomicU64,
}

impl Progress {
    /// Messages tried this run: sent, failed or deferred.
    pub fn attempted(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
            + self.failed.load(Ordering::Relaxed)
            + self.deferred.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The queue is empty.
    Done,
    /// `--max-per-run` reached; the rest waits for the next run.
    Limit,
    /// SIGINT or SIGTERM (or the caller's interrupt flag).
    Interrupted,
    /// The relay refused the settings (authentication, TLS).
    Fatal(String),
    /// herald's own machinery failed: the journal or the outbox.
    Broken(String),
    /// The relay could not be reached, or refused everything, for
    /// `relay_down_after`: everyone not yet mailed waits for the next run.
    RelayDown(String),
    /// The send window closed; the rest waits for the next run in it.
    WindowClosed,
}

pub struct Outcome {
    pub handed_over: u64,
    pub stop: Stop,
}

/// What a run sends and how.
pub struct Plan<M: Mailer> {
    pub campaign: String,
    pub composer: Arc<Composer>,
    pub columns: Arc<Vec<String>>,
    /// The first relay, with `settings.rate` and `settings.connections`.
    pub mailer: M,
    pub settings: Settings,
    /// Further relays (`relays:`), each with its own rate, connections and
    /// health. Empty for the single relay of today.
    pub others: Vec<Lane<M>>,
}

/// One more relay of a run.
pub struct Lane<M: Mailer> {
    /// For messages: `backup` or `mail.example.org:587`.
    pub name: String,
    pub mailer: M,
    pub rate: Option<Rate>,
    pub connections: usize,
}

struct Job<P> {
    seq: i64,
    email: String,
    message: Outgoing<P>,
    gate: Gate,
    /// Attempts this run that were about this recipient (not the relay's).
    attempts: u32,
    last_reply: Option<String>,
    /// The relay of the last attempt that reached this recipient.
    relay: Option<String>,
}

type Ack = oneshot::Sender<Result<(), String>>;

enum Cmd {
    Apply(Update, Option<Ack>),
    Queue(i64, i64, oneshot::Sender<Result<Vec<Row>, String>>),
}

/// The store's task: applies updates in batches, one commit per batch
/// (group commit: what arrives during a commit goes into the next one).
/// Each store call runs on tokio's blocking pool, which also tells a
/// paused test clock that work is under way.
async fn store_task(
    mut store: Box<dyn Store>,
    campaign: String,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    resend_unknown: bool,
) -> Box<dyn Store> {
    let campaign = Arc::new(campaign);
    let mut pending: Vec<(Update, Option<Ack>)> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Cmd::Apply(u, ack) => pending.push((u, ack)),
                Cmd::Queue(after, limit, reply) => {
                    store = flush(store, &campaign, &mut pending).await;
                    let c = Arc::clone(&campaign);
                    let (back, rows) = blocking(store, move |s| {
                        s.queue(&c, after, limit, resend_unknown)
                            .map_err(|e| e.to_string())
                    })
                    .await;
                    store = back;
                    let _ = reply.send(rows);
                }
            }
            next = rx.try_recv().ok();
        }
        store = flush(store, &campaign, &mut pending).await;
    }
    store
}

async fn flush(
    store: Box<dyn Store>,
    campaign: &Arc<String>,
    pending: &mut Vec<(Update, Option<Ack>)>,
) -> Box<dyn Store> {
    if pending.is_empty() {
        return store;
    }
    let updates: Vec<Update> = pending.iter().map(|(u, _)| u.clone()).collect();
    let c = Arc::clone(campaign);
    let (store, result) = blocking(store, move |s| {
        s.apply(&c, &updates).map_err(|e| e.to_string())
    })
    .await;
    for (_, ack) in pending.drain(..) {
        if let Some(ack) = ack {
            let _ = ack.send(result.clone());
        }
    }
    store
}

/// Runs `f` on the store on the blocking pool, and gives the store back.
async fn blocking<T: Send + 'static>(
    mut store: Box<dyn Store>,
    f: impl FnOnce(&mut dyn Store) -> T + Send + 'static,
) -> (Box<dyn Store>, T) {
    tokio::task::spawn_blocking(move || {
        let out = f(store.as_mut());
        (store, out)
    })
    .await
    .expect("a store call does not panic")
}

/// One relay's own state: its throttle, its health, its workers' mailer.
/// A relay that fails is paused alone; the others carry on.
struct RelayState<M: Mailer> {
    name: String,
    mailer: M,
    connections: usize,
    limiter: Mutex<Limiter>,
    health: std::sync::Mutex<Health>,
}

struct Shared<M: Mailer> {
    /// Every relay of the run; the first is the plan's `mailer`.
    relays: Vec<RelayState<M>>,
    settings: Settings,
    /// The campaign's rate across senders, when the store is shared.
    shared_rate: Option<Arc<dyn RateGate>>,
    store: mpsc::UnboundedSender<Cmd>,
    progress: Arc<Progress>,
    stop: AtomicBool,
    /// The send window closed (and `stop` was raised for that reason).
    window_closed: AtomicBool,
    stopped: Notify,
    fatal: std::sync::Mutex<Option<String>>,
    broken: std::sync::Mutex<Option<String>>,
    relay_down: std::sync::Mutex<Option<String>>,
    /// Recipients waiting to be tried again; they come back through `retries`.
    waiting: AtomicU64,
    /// Jobs in a worker's hands (taken, not yet settled).
    in_flight: AtomicU64,
    retries: Retries<M::Payload>,
    /// The builder has handed over its last message.
    built_all: AtomicBool,
}

/// The queue of recipients to try again: sender and shared receiver.
type Retries<P> = (
    mpsc::UnboundedSender<Job<P>>,
    Mutex<mpsc::UnboundedReceiver<Job<P>>>,
);

/// How a relay has been doing lately.
#[derive(Default)]
struct Health {
    /// Relay-level failures since the last success.
    failures: u32,
    failing_since: Option<Instant>,
    /// It has done nothing but fail for `relay_down_after`; it is still
    /// tried again after each pause, and a success makes it up again.
    down: bool,
}

/// Pauses after relay-level failures: short enough to notice a relay that
/// comes back, long enough not to hammer one that is down.
const RELAY_BACKOFF_MIN: Duration = Duration::from_secs(1);
const RELAY_BACKOFF_MAX: Duration = Duration::from_secs(15);

impl<M: Mailer> Shared<M> {
    fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.stopped.notify_waiters();
    }

    fn fail(&self, why: String) {
        self.fatal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(why);
        self.request_stop();
    }

    fn broke(&self, why: String) {
        self.broken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(why);
        self.request_stop();
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// A relay-level failure at relay `r`: pause that relay alone, and
    /// say whether the run stops because every relay is now down.
    async fn relay_failed(&self, r: usize, why: &str, slow_down: bool) -> bool {
        let relay = &self.relays[r];
        let now = Instant::now();
        let (failures, since) = {
            let mut h = relay.health.lock().unwrap_or_else(|p| p.into_inner());
            h.failures += 1;
            (h.failures, *h.failing_since.get_or_insert(now))
        };
        if failures >= 3 && now - since >= self.settings.relay_down_after {
            relay.health.lock().unwrap_or_else(|p| p.into_inner()).down = true;
            // Only when no relay is left does the run stop: the others
            // carry the messages meanwhile.
            let all_down = self
                .relays
                .iter()
                .all(|o| o.health.lock().unwrap_or_else(|p| p.into_inner()).down);
            if all_down {
                let why = if self.relays.len() == 1 {
                    why.to_string()
                } else {
                    format!("every relay is down; the last, {}: {why}", relay.name)
                };
                self.relay_down
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(why);
                self.request_stop();
                return true;
            }
        }
        let pause = if slow_down {
            relay.limiter.lock().await.slow_down()
        } else {
            let pause =
                (RELAY_BACKOFF_MIN * 2u32.saturating_pow(failures - 1)).min(RELAY_BACKOFF_MAX);
            relay.limiter.lock().await.pause(pause);
            pause
        };
        let which = if self.relays.len() == 1 {
            "the relay".to_string()
        } else {
            format!("the relay {}", relay.name)
        };
        tracing::warn!(
            "{which} {} {why}; pausing {}s",
            if slow_down {
                "asked to slow down:"
            } else {
                "is not taking messages:"
            },
            pause.as_secs_f64().ceil()
        );
        false
    }

    async fn relay_ok(&self, r: usize) {
        let relay = &self.relays[r];
        let was_failing = {
            let mut h = relay.health.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut *h).failures > 0
        };
        if was_failing {
            relay.limiter.lock().await.recovered();
        }
    }

    /// Waits until relay `r` may be used (after a pause); false when the
    /// run is stopping meanwhile.
    async fn relay_open(&self, r: usize) -> bool {
        loop {
            if self.stopping() {
                return false;
            }
            let at = self.relays[r].limiter.lock().await.paused_until();
            let Some(at) = at else { return true };
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = self.stopped.notified() => return false,
            }
        }
    }
}

/// Sends the campaign's queue on a runtime of its own; returns the store
/// when done.
pub fn run<M: Mailer>(
    store: Box<dyn Store>,
    plan: Plan<M>,
    progress: Arc<Progress>,
    interrupt: Arc<AtomicBool>,
) -> (Outcome, Box<dyn Store>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = rt.block_on(run_async(store, plan, progress, interrupt, true));
    // Dropping the runtime drops every task, and with them their handles.
    drop(rt);
    result
}

/// The run itself, on the caller's runtime (tests use tokio's paused
/// clock). `signals`: SIGINT and SIGTERM stop the run cleanly.
pub async fn run_async<M: Mailer>(
    store: Box<dyn Store>,
    plan: Plan<M>,
    progress: Arc<Progress>,
    interrupt: Arc<AtomicBool>,
    signals: bool,
) -> (Outcome, Box<dyn Store>) {
    let Plan {
        campaign,
        composer,
        columns,
        mailer,
        settings,
        others,
    } = plan;
    let mut relays = vec![RelayState {
        name: settings
            .relay_name
            .clone()
            .unwrap_or_else(|| mailer.describe()),
        mailer,
        connections: settings.connections.max(1),
        limiter: Mutex::new(Limiter::new(settings.rate, settings.batch)),
        health: std::sync::Mutex::new(Health::default()),
    }];
    relays.extend(others.into_iter().map(|lane| RelayState {
        name: lane.name,
        mailer: lane.mailer,
        connections: lane.connections.max(1),
        limiter: Mutex::new(Limiter::new(lane.rate, settings.batch)),
        health: std::sync::Mutex::new(Health::default()),
    }));
    // Other senders on the same campaign (a shared store) share its rate.
    let (store, shared_rate) = match settings.rate {
        Some(rate) => {
            let c = campaign.clone();
            blocking(store, move |s| s.rate_gate(&c, rate)).await
        }
        None => (store, Ok(None)),
    };
    let shared_rate = match shared_rate {
        Ok(gate) => gate,
        Err(e) => {
            let outcome = Outcome {
                handed_over: 0,
                stop: Stop::Broken(format!("the shared rate cannot be set up ({e})")),
            };
            return (outcome, store);
        }
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let resend_unknown = settings.resend_unknown;
    let writer = tokio::spawn(store_task(store, campaign, rx, resend_unknown));
    let retries = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        relay_down: std::sync::Mutex::new(None),
        broken: std::sync::Mutex::new(None),
        waiting: AtomicU64::new(0),
        in_flight: AtomicU64::new(0),
        retries: (retries.0, Mutex::new(retries.1)),
        built_all: AtomicBool::new(false),
        relays,
        shared_rate,
        settings,
        store: tx,
        progress,
        stop: AtomicBool::new(false),
        window_closed: AtomicBool::new(false),
        stopped: Notify::new(),
        fatal: std::sync::Mutex::new(None),
    });
    let outcome = dispatch(Arc::clone(&shared), composer, columns, interrupt, signals).await;
    let Shared { store, .. } = Arc::into_inner(shared).expect("no task outlives the run");
    drop(store);
    let store = writer.await.expect("the store task does not panic");
    (outcome, store)
}

async fn dispatch<M: Mailer>(
    shared: Arc<Shared<M>>,
    composer: Arc<Composer>,
    columns: Arc<Vec<String>>,
    interrupt: Arc<AtomicBool>,
    signals: bool,
) -> Outcome {
    // No new message starts after a stop; the ones in flight finish and
    // are journaled.
    let watcher = {
        let shared = Arc::clone(&shared);
        let interrupt = Arc::clone(&interrupt);
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let signalled = async {
                if !signals {
                    return std::future::pending().await;
                }
                let (Ok(mut int), Ok(mut term)) = (
                    signal(SignalKind::interrupt()),
                    signal(SignalKind::terminate()),
                ) else {
                    return std::future::pending().await;
                };
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            };
            // The caller may also raise the flag itself.
            let raised = async {
                while !interrupt.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            };
            tokio::select! {
                _ = signalled => {}
                _ = raised => {}
            }
            interrupt.store(true, Ordering::SeqCst);
            shared.request_stop();
        })
    };
    // The end of the send window stops the run like a signal does, only
    // with its own reason: a timer rather than a clock check per message,
    // so a run waiting on the throttle or a retry stops on time too.
    let window = shared.settings.window_closes_after.map(|after| {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            shared.window_closed.store(true, Ordering::SeqCst);
            shared.request_stop();
        })
    });
    // Messages are built on the blocking pool, a chunk at a time, so
    // building the next ones overlaps with sending (and with the store's
    // commits).
    let connections: usize = shared.relays.iter().map(|r| r.connections).sum();
    let (job_tx, job_rx) = mpsc::channel::<Job<M::Payload>>((connections * 2).max(2 * CHUNK));
    let job_rx = Arc::new(Mutex::new(job_rx));
    // Each relay its own workers, one per connection: a relay takes the
    // next message only when it is not paused, so messages go to the
    // relays that can take them now.
    let workers: Vec<_> = (0..shared.relays.len())
        .flat_map(|r| (0..shared.relays[r].connections).map(move |_| r))
        .map(|r| tokio::spawn(worker(Arc::clone(&shared), r, Arc::clone(&job_rx))))
        .collect();
    // Only the workers hold the receiver: when they stop, the builder's
    // next send fails and it stops too.
    drop(job_rx);
    let builder = {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let out = build_jobs(Arc::clone(&shared), composer, columns, job_tx).await;
            shared.built_all.store(true, Ordering::SeqCst);
            out
        })
    };
    for w in workers {
        let _ = w.await;
    }
    let (handed_over, mut stop) = builder.await.expect("the builder does not panic");
    let relay_down = shared
        .relay_down
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    watcher.abort();
    // Its copy of `shared` must be gone before the store is taken back.
    let _ = watcher.await;
    if let Some(window) = window {
        window.abort();
        let _ = window.await;
    }
    let fatal = shared
        .fatal
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let broken = shared
        .broken
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if let Some(b) = broken {
        stop = Stop::Broken(b);
    } else if let Some(f) = fatal {
        stop = Stop::Fatal(f);
    } else if let Some(why) = relay_down {
        stop = Stop::RelayDown(why);
    } else if shared.window_closed.load(Ordering::SeqCst) {
        stop = Stop::WindowClosed;
    } else if shared.stopping() {
        stop = Stop::Interrupted;
    }
    Outcome { handed_over, stop }
}

/// Messages built per trip to the blocking pool.
const CHUNK: usize = 32;

/// Reads the queue from the store and builds each message; returns how
/// many were handed to the workers and why it stopped.
async fn build_jobs<M: Mailer>(
    shared: Arc<Shared<M>>,
    composer: Arc<Composer>,
    columns: Arc<Vec<String>>,
    jobs: mpsc::Sender<Job<M::Payload>>,
) -> (u64, Stop) {
    let mut handed_over = 0u64;
    let mut after = 0i64;
    loop {
        let (tx, rx) = oneshot::channel();
        if shared.store.send(Cmd::Queue(after, 256, tx)).is_err() {
            shared.broke("the journal stopped".into());
            return (handed_over, Stop::Done);
        }
        let mut rows = match rx.await {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                shared.broke(format!("the journal could not be read ({e})"));
                return (handed_over, Stop::Done);
            }
            Err(_) => {
                shared.broke("the journal stopped".into());
                return (handed_over, Stop::Done);
            }
        };
        if rows.is_empty() {
            return (handed_over, Stop::Done);
        }
        after = rows.last().expect("not empty").seq;
        while !rows.is_empty() {
            if shared.stopping() {
                return (handed_over, Stop::Done);
            }
            let mut room = CHUNK;
            if let Some(max) = shared.settings.max_per_run {
                if handed_over >= max {
                    return (handed_over, Stop::Limit);
                }
                room = room.min((max - handed_over) as usize);
            }
            let rest = rows.split_off(room.min(rows.len()));
            let chunk = std::mem::replace(&mut rows, rest);
            let built = {
                let (shared, composer, columns) = (
                    Arc::clone(&shared),
                    Arc::clone(&composer),
                    Arc::clone(&columns),
                );
                tokio::task::spawn_blocking(move || {
                    chunk
                        .into_iter()
                        .map(|row| build_one(&shared, &composer, &columns, row))
                        .collect::<Vec<_>>()
                })
                .await
                .expect("building a message does not panic")
            };
            for job in built {
                match job {
                    Ok(job) => {
                        if jobs.send(job).await.is_err() {
                            // The workers stopped (interrupted, or a fatal error).
                            return (handed_over, Stop::Done);
                        }
                        handed_over += 1;
                    }
                    Err(update) => {
                        let _ = shared.store.send(Cmd::Apply(update, None));
                        shared.progress.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

/// One recipient's message, or the update that records why it cannot be made.
fn build_one<M: Mailer>(
    shared: &Shared<M>,
    composer: &Composer,
    columns: &Arc<Vec<String>>,
    row: Row,
) -> Result<Job<M::Payload>, Update> {
    let recipient = Recipient {
        line: row.line as u64,
        email: row.email.clone(),
        columns: Arc::clone(columns),
        values: row.values,
    };
    let built = composer
        .build_numbered(&recipient, Some(row.seq))
        .and_then(|built| {
            let to = built
                .to
                .parse()
                .map_err(|e| format!("cannot address the message to {} ({e})", built.to))?;
            Ok((to, built))
        });
    match built {
        Ok((to, built)) => {
            let store = shared.store.clone();
            let seq = row.seq;
            Ok(Job {
                seq,
                email: row.email,
                message: Outgoing {
                    from: built.envelope_from.clone(),
                    to,
                    // Every relay is the same kind of Mailer, and its form
                    // of the message does not depend on the relay.
                    payload: shared.relays[0].mailer.prepare(built),
                },
                gate: Gate::new(move || {
                    let (tx, rx) = oneshot::channel();
                    let mark = Update {
                        seq,
                        state: State::Sending,
                        reply: None,
                        attempts: 0,
                        suppress: None,
                        relay: None,
                    };
                    if store.send(Cmd::Apply(mark, Some(tx))).is_err() {
                        // The receiver is dropped with the sender: `pass` reports it.
                    }
                    rx
                }),
                attempts: 0,
                last_reply: None,
                relay: None,
            })
        }
        Err(why) => Err(Update {
            seq: row.seq,
            state: State::Failed,
            reply: Some(why),
            attempts: 0,
            suppress: None,
            relay: None,
        }),
    }
}

async fn worker<M: Mailer>(
    shared: Arc<Shared<M>>,
    r: usize,
    jobs: Arc<Mutex<mpsc::Receiver<Job<M::Payload>>>>,
) {
    let mut conn: Option<M::Conn> = None;
    loop {
        // A paused relay takes no message, so the others get it.
        if !shared.relay_open(r).await {
            break;
        }
        let Some(mut job) = next_job(&shared, &jobs).await else {
            break;
        };
        let delivered = deliver(&shared, r, &mut conn, &mut job).await;
        settle(&shared, job, delivered);
        // After `settle`: a job handed back is counted in `waiting` by now,
        // so the other workers never see nothing in flight and nothing
        // waiting while it is on its way back.
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
    if let Some(c) = conn {
        let _ = tokio::time::timeout(Duration::from_secs(5), shared.relays[r].mailer.quit(c)).await;
    }
}

/// Records what became of a job, or puts it back in the queue.
fn settle<M: Mailer>(shared: &Arc<Shared<M>>, job: Job<M::Payload>, delivered: Delivered) {
    let update = match delivered {
        Delivered::Done(update) => update,
        // Nothing happened to this recipient: they wait for the next run.
        Delivered::Untouched => return,
        Delivered::Retry(at) => {
            retry_later(shared, job, at);
            return;
        }
        Delivered::Elsewhere => {
            // The relay failed before the message: another relay takes it
            // at once, no attempt used up.
            retry_later(shared, job, Instant::now());
            return;
        }
    };
    match update.state {
        State::Sent => shared.progress.sent.fetch_add(1, Ordering::Relaxed),
        State::Failed | State::Skipped => shared.progress.failed.fetch_add(1, Ordering::Relaxed),
        _ => shared.progress.deferred.fetch_add(1, Ordering::Relaxed),
    };
    let _ = shared.store.send(Cmd::Apply(update, None));
}

/// The next message to send: a recipient whose retry time has come, else
/// the builder's next; `None` when everything is done or the run stops.
async fn next_job<M: Mailer>(
    shared: &Shared<M>,
    jobs: &Mutex<mpsc::Receiver<Job<M::Payload>>>,
) -> Option<Job<M::Payload>> {
    let mut rx = jobs.lock().await;
    let mut retries = shared.retries.1.lock().await;
    let mut builder_open = true;
    loop {
        if shared.stopping() {
            return None;
        }
        if let Ok(job) = retries.try_recv() {
            return Some(taken(shared, job));
        }
        // Done only when no job can come back: none waiting for its retry
        // and none in another worker's hands (a relay that fails before
        // the message hands its job back for another relay).
        if !builder_open
            && shared.built_all.load(Ordering::SeqCst)
            && shared.waiting.load(Ordering::SeqCst) == 0
            && shared.in_flight.load(Ordering::SeqCst) == 0
        {
            // A retry may have arrived since the look above; its sender
            // queued it before lowering `waiting`.
            return retries.try_recv().ok().map(|job| taken(shared, job));
        }
        tokio::select! {
            job = rx.recv(), if builder_open => match job {
                Some(job) => return Some(taken(shared, job)),
                None => builder_open = false,
            },
            job = retries.recv() => {
                if let Some(job) = job {
                    return Some(taken(shared, job));
                }
            }
            _ = shared.stopped.notified() => return None,
            // A retry that ended without coming back (the run stopped)
            // lowers `waiting` without a message: look again.
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

/// A job a worker takes: in flight until it is settled.
fn taken<M: Mailer>(shared: &Shared<M>, job: Job<M::Payload>) -> Job<M::Payload> {
    shared.in_flight.fetch_add(1, Ordering::SeqCst);
    job
}

/// Puts the recipient back in the queue at `at`, without holding a
/// connection meanwhile; if the run stops first, records them deferred.
fn retry_later<M: Mailer>(shared: &Arc<Shared<M>>, job: Job<M::Payload>, at: Instant) {
    shared.waiting.fetch_add(1, Ordering::SeqCst);
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep_until(at) => {}
            _ = shared.stopped.notified() => {}
        }
        if shared.stopping() {
            if let Delivered::Done(update) = stopped(&job) {
                shared.progress.deferred.fetch_add(1, Ordering::Relaxed);
                let _ = shared.store.send(Cmd::Apply(update, None));
            }
        } else if let Err(e) = shared.retries.0.send(job) {
            // Cannot happen while `shared` lives; record it rather than lose it.
            if let Delivered::Done(update) = stopped(&e.0) {
                let _ = shared.store.send(Cmd::Apply(update, None));
            }
        }
        shared.waiting.fetch_sub(1, Ordering::SeqCst);
    });
}

enum Delivered {
    Done(Update),
    /// Try this recipient again at this time (a 4xx about them).
    Retry(Instant),
    /// Nothing reached the relay and nothing changes for this recipient.
    Untouched,
    /// This relay failed before the message: hand it to another relay.
    Elsewhere,
}

/// What a recipient's record becomes when the run stops before their
/// message went through: untouched if it never reached the relay's message
/// phase, else deferred (it was in flight, the relay did not accept it).
fn stopped<P>(job: &Job<P>) -> Delivered {
    if job.gate.passed() || job.attempts > 0 {
        Delivered::Done(Update {
            seq: job.seq,
            state: State::Deferred,
            reply: job.last_reply.clone(),
            attempts: job.attempts as i64,
            suppress: None,
            relay: job.relay.clone(),
        })
    } else {
        Delivered::Untouched
    }
}

/// One attempt at a message, and then some when the relay (not the
/// recipient) was the problem.
async fn deliver<M: Mailer>(
    shared: &Shared<M>,
    r: usize,
    conn: &mut Option<M::Conn>,
    job: &mut Job<M::Payload>,
) -> Delivered {
    let settings = &shared.settings;
    loop {
        if !shared.relay_open(r).await {
            return stopped(job);
        }
        let failure = match attempt_once(shared, r, conn, job).await {
            Ok(reply) => {
                shared.relay_ok(r).await;
                return Delivered::Done(Update {
                    seq: job.seq,
                    state: State::Sent,
                    reply: Some(reply),
                    attempts: job.attempts as i64 + 1,
                    suppress: None,
                    relay: Some(shared.relays[r].name.clone()),
                });
            }
            Err(f) => f,
        };
        // Stopped while waiting for the throttle (or before the relay saw
        // this message at all): nothing happened to this recipient, so
        // they stay as they were rather than deferred with an attempt used.
        if shared.stopping() && !job.gate.passed() && failure.kind != FailureKind::Permanent {
            return stopped(job);
        }
        match failure.kind {
            FailureKind::Permanent => {
                shared.relay_ok(r).await;
                return Delivered::Done(Update {
                    seq: job.seq,
                    state: State::Failed,
                    suppress: failure.address_gone().then(|| job.email.to_lowercase()),
                    relay: Some(shared.relays[r].name.clone()),
                    reply: Some(failure.reply),
                    attempts: job.attempts as i64 + 1,
                });
            }
            FailureKind::Unsupported => {
                return Delivered::Done(Update {
                    seq: job.seq,
                    state: State::Skipped,
                    reply: Some(failure.reply),
                    attempts: job.attempts as i64,
                    suppress: None,
                    relay: Some(shared.relays[r].name.clone()),
                });
            }
            FailureKind::Broken => {
                shared.broke(failure.reply.clone());
                job.last_reply = Some(failure.reply);
                job.relay = Some(shared.relays[r].name.clone());
                return stopped(job);
            }
            FailureKind::Config => {
                shared.fail(format!(
                    "{} ({})",
                    failure.reply,
                    shared.relays[r].mailer.describe()
                ));
                job.last_reply = Some(failure.reply);
                return stopped(job);
            }
            FailureKind::Relay | FailureKind::SlowDown if !job.gate.passed() => {
                // Not this recipient's doing: no attempt is used up.
                let slow = failure.kind == FailureKind::SlowDown;
                if shared.relay_failed(r, &failure.reply, slow).await {
                    return stopped(job);
                }
                if shared.relays.len() > 1 {
                    return Delivered::Elsewhere;
                }
                continue;
            }
            FailureKind::Relay | FailureKind::SlowDown | FailureKind::Transient => {
                job.attempts += 1;
                job.last_reply = Some(failure.reply);
                job.relay = Some(shared.relays[r].name.clone());
                if job.attempts >= settings.max_attempts || shared.stopping() {
                    return Delivered::Done(Update {
                        seq: job.seq,
                        state: State::Deferred,
                        reply: job.last_reply.clone(),
                        attempts: job.attempts as i64,
                        suppress: None,
                        relay: Some(shared.relays[r].name.clone()),
                    });
                }
                let wait = settings.retry_base * 2u32.pow(job.attempts - 1);
                let jitter = wait.mul_f64(fastrand::f64() * 0.5);
                return Delivered::Retry(Instant::now() + wait + jitter);
            }
        }
    }
}

/// A slot in the campaign's rate shared with other senders (PostgreSQL):
/// asks the database, waits as long as it says, asks again.
async fn take_shared(gate: &Arc<dyn RateGate>, stopped: &Notify) -> Result<i64, super::Failure> {
    loop {
        let g = Arc::clone(gate);
        let asked = tokio::task::spawn_blocking(move || g.take()).await;
        let wait = match asked {
            Ok(Ok(Ok(id))) => return Ok(id),
            Ok(Ok(Err(wait))) => wait.min(Duration::from_secs(1)),
            Ok(Err(e)) => {
                return Err(super::Failure::broken(format!(
                    "the shared rate cannot be read from the database ({e}); nothing more is sent"
                )));
            }
            Err(_) => {
                return Err(super::Failure::broken(
                    "the shared rate could not be read; nothing more is sent",
                ));
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped.notified() => {
                return Err(super::Failure::transient("the run was stopped"));
            }
        }
    }
}

async fn attempt_once<M: Mailer>(
    shared: &Shared<M>,
    r: usize,
    conn: &mut Option<M::Conn>,
    job: &mut Job<M::Payload>,
) -> Result<String, super::Failure> {
    let relay = &shared.relays[r];
    let timeout = shared.settings.timeout;
    let gate_was = job.gate.passed();
    if conn.as_ref().is_none_or(|c| relay.mailer.is_broken(c)) {
        *conn = None;
        let c = tokio::time::timeout(timeout, relay.mailer.connect())
            .await
            .map_err(|_| {
                super::Failure::relay(format!(
                    "the relay did not answer within {}s",
                    timeout.as_secs()
                ))
            })??;
        *conn = Some(c);
    }
    let slot = tokio::select! {
        slot = throttle::take(&relay.limiter) => slot,
        _ = shared.stopped.notified() => {
            return Err(super::Failure::transient("the run was stopped"));
        }
    };
    // The shared rate is the first relay's (`rate`, the campaign's rate
    // across senders); further relays keep to their own rates here.
    let shared_slot = match shared.shared_rate.as_ref().filter(|_| r == 0) {
        None => None,
        Some(gate) => match take_shared(gate, &shared.stopped).await {
            Ok(id) => Some((Arc::clone(gate), id)),
            Err(failure) => {
                relay.limiter.lock().await.answered(slot);
                return Err(failure);
            }
        },
    };
    let c = conn.as_mut().expect("connected above");
    let result =
        tokio::time::timeout(timeout, relay.mailer.send(c, &job.message, &mut job.gate)).await;
    relay.limiter.lock().await.answered(slot);
    if let Some((gate, id)) = shared_slot {
        // Recorded after the answer, as the local throttle does; a failure
        // here only makes the other senders wait longer (the slot counts
        // as answered when this sender ends).
        let _ = tokio::task::spawn_blocking(move || gate.answered(id)).await;
    }
    match result {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(failure)) => {
            // A refused command leaves a transaction half done: start afresh.
            *conn = None;
            Err(failure)
        }
        Err(_) => {
            *conn = None;
            let why = format!("no answer within {}s", timeout.as_secs());
            // Silence before the message is the relay's; during it, the
            // message may or may not have arrived.
            Err(if job.gate.passed() && !gate_was {
                super::Failure::transient(why)
            } else {
                super::Failure::relay(why)
            })
        }
    }
}
