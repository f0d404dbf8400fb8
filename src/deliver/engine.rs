//! The send loop: a builder thread makes messages from the store's queue,
//! one worker per connection hands them to the [`Mailer`], and one thread
//! writes the store, committing what several workers report at once (group
//! commit). The same loop serves real sends, test sends and dry runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, Notify, mpsc, oneshot};

use super::throttle::{self, Limiter, Rate};
use super::{FailureKind, Gate, Mailer, Outgoing};
use crate::audience::Recipient;
use crate::message::Composer;
use crate::store::{Row, State, Store, Update};

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
    /// The relay refused the settings (authentication, TLS), or the store failed.
    Fatal(String),
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
    pub mailer: M,
    pub settings: Settings,
}

struct Job<P> {
    seq: i64,
    email: String,
    message: Outgoing<P>,
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

struct Shared<M: Mailer> {
    mailer: M,
    settings: Settings,
    limiter: Mutex<Limiter>,
    store: mpsc::UnboundedSender<Cmd>,
    progress: Arc<Progress>,
    stop: AtomicBool,
    stopped: Notify,
    fatal: std::sync::Mutex<Option<String>>,
}

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

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
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
    } = plan;
    let (tx, rx) = mpsc::unbounded_channel();
    let resend_unknown = settings.resend_unknown;
    let writer = tokio::spawn(store_task(store, campaign, rx, resend_unknown));
    let shared = Arc::new(Shared {
        mailer,
        limiter: Mutex::new(Limiter::new(settings.rate, settings.batch)),
        settings,
        store: tx,
        progress,
        stop: AtomicBool::new(false),
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
    // Messages are built on the blocking pool, a chunk at a time, so
    // building the next ones overlaps with sending (and with the store's
    // commits).
    let connections = shared.settings.connections.max(1);
    let (job_tx, job_rx) = mpsc::channel::<Job<M::Payload>>((connections * 2).max(2 * CHUNK));
    let job_rx = Arc::new(Mutex::new(job_rx));
    let workers: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(worker(Arc::clone(&shared), Arc::clone(&job_rx))))
        .collect();
    // Only the workers hold the receiver: when they stop, the builder's
    // next send fails and it stops too.
    drop(job_rx);
    let builder = tokio::spawn(build_jobs(Arc::clone(&shared), composer, columns, job_tx));
    for w in workers {
        let _ = w.await;
    }
    let (handed_over, mut stop) = builder.await.expect("the builder does not panic");
    watcher.abort();
    // Its copy of `shared` must be gone before the store is taken back.
    let _ = watcher.await;
    let fatal = shared
        .fatal
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if let Some(f) = fatal {
        stop = Stop::Fatal(f);
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
            shared.fail("the journal stopped".into());
            return (handed_over, Stop::Done);
        }
        let mut rows = match rx.await {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                shared.fail(format!("the journal could not be read ({e})"));
                return (handed_over, Stop::Done);
            }
            Err(_) => {
                shared.fail("the journal stopped".into());
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
    let built = composer.build(&recipient).and_then(|built| {
        let to = built
            .to
            .parse()
            .map_err(|e| format!("cannot address the message to {} ({e})", built.to))?;
        Ok((to, built))
    });
    match built {
        Ok((to, built)) => Ok(Job {
            seq: row.seq,
            email: row.email,
            message: Outgoing {
                from: composer.envelope_from(),
                to,
                payload: shared.mailer.prepare(built),
            },
        }),
        Err(why) => Err(Update {
            seq: row.seq,
            state: State::Failed,
            reply: Some(why),
            attempts: 0,
            suppress: None,
        }),
    }
}

async fn worker<M: Mailer>(
    shared: Arc<Shared<M>>,
    jobs: Arc<Mutex<mpsc::Receiver<Job<M::Payload>>>>,
) {
    let mut conn: Option<M::Conn> = None;
    loop {
        if shared.stopping() {
            break;
        }
        let job = {
            let mut rx = jobs.lock().await;
            tokio::select! {
                job = rx.recv() => job,
                _ = shared.stopped.notified() => None,
            }
        };
        let Some(job) = job else { break };
        let update = deliver(&shared, &mut conn, &job).await;
        match update.state {
            State::Sent => shared.progress.sent.fetch_add(1, Ordering::Relaxed),
            State::Failed => shared.progress.failed.fetch_add(1, Ordering::Relaxed),
            _ => shared.progress.deferred.fetch_add(1, Ordering::Relaxed),
        };
        let _ = shared.store.send(Cmd::Apply(update, None));
    }
    if let Some(c) = conn {
        let _ = tokio::time::timeout(Duration::from_secs(5), shared.mailer.quit(c)).await;
    }
}

/// One message, with retries; returns its final store update.
async fn deliver<M: Mailer>(
    shared: &Shared<M>,
    conn: &mut Option<M::Conn>,
    job: &Job<M::Payload>,
) -> Update {
    let settings = &shared.settings;
    let mut attempt = 0u32;
    // The `sending` mark is committed while the mailer starts the
    // transaction, and awaited (the Gate) before the message's content:
    // nothing is delivered before its final dot, so the mark is on disk
    // before the message can be.
    let (tx, rx) = oneshot::channel();
    let mark = Update {
        seq: job.seq,
        state: State::Sending,
        reply: None,
        attempts: 0,
        suppress: None,
    };
    let mut gate = match shared.store.send(Cmd::Apply(mark, Some(tx))) {
        Ok(()) => Gate::new(rx),
        Err(_) => {
            shared.fail("the journal stopped; nothing more is sent".into());
            return deferred(job, 0, "not sent: the journal stopped".into());
        }
    };
    loop {
        attempt += 1;
        let failure = match attempt_once(shared, conn, job, &mut gate).await {
            Ok(reply) => {
                shared.limiter.lock().await.recovered();
                return Update {
                    seq: job.seq,
                    state: State::Sent,
                    reply: Some(reply),
                    attempts: attempt as i64,
                    suppress: None,
                };
            }
            Err(f) => f,
        };
        match failure.kind {
            FailureKind::Permanent => {
                return Update {
                    seq: job.seq,
                    state: State::Failed,
                    reply: Some(failure.reply),
                    attempts: attempt as i64,
                    suppress: Some(job.email.to_lowercase()),
                };
            }
            FailureKind::Config => {
                shared.fail(format!("{} ({})", failure.reply, shared.mailer.describe()));
                return deferred(job, attempt, failure.reply);
            }
            FailureKind::SlowDown => {
                let pause = shared.limiter.lock().await.slow_down();
                tracing::warn!(
                    "the relay asked to slow down ({}); pausing {}s",
                    failure.reply,
                    pause.as_secs()
                );
                *conn = None;
            }
            FailureKind::Transient => {}
        }
        if attempt >= settings.max_attempts || shared.stopping() {
            return deferred(job, attempt, failure.reply);
        }
        let wait = settings.retry_base * 2u32.pow(attempt - 1);
        let jitter = wait.mul_f64(fastrand::f64() * 0.5);
        tokio::select! {
            _ = tokio::time::sleep(wait + jitter) => {}
            _ = shared.stopped.notified() => return deferred(job, attempt, failure.reply),
        }
    }
}

fn deferred<P>(job: &Job<P>, attempts: u32, reply: String) -> Update {
    Update {
        seq: job.seq,
        state: State::Deferred,
        reply: Some(reply),
        attempts: attempts as i64,
        suppress: None,
    }
}

async fn attempt_once<M: Mailer>(
    shared: &Shared<M>,
    conn: &mut Option<M::Conn>,
    job: &Job<M::Payload>,
    gate: &mut Gate,
) -> Result<String, super::Failure> {
    let timeout = shared.settings.timeout;
    let no_answer =
        || super::Failure::transient(format!("no answer within {}s", timeout.as_secs()));
    if conn.as_ref().is_none_or(|c| shared.mailer.is_broken(c)) {
        *conn = None;
        let c = tokio::time::timeout(timeout, shared.mailer.connect())
            .await
            .map_err(|_| no_answer())??;
        *conn = Some(c);
    }
    let slot = throttle::take(&shared.limiter).await;
    let c = conn.as_mut().expect("connected above");
    let result = tokio::time::timeout(timeout, shared.mailer.send(c, &job.message, gate)).await;
    shared.limiter.lock().await.answered(slot);
    match result {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(failure)) => {
            // A refused command leaves a transaction half done: start afresh.
            *conn = None;
            Err(failure)
        }
        Err(_) => {
            *conn = None;
            Err(no_answer())
        }
    }
}
