//! The send loop: a dispatcher builds messages from the journal's queue,
//! one worker per SMTP connection sends them, and one thread writes the
//! journal, committing what several workers report at once (group commit).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::extension::ClientId;
use tokio::sync::{Mutex, Notify, mpsc, oneshot};

use super::smtp::{Failure, FailureKind, Relay};
use super::throttle::{self, Limiter, Rate};
use crate::audience::Recipient;
use crate::journal::{Journal, Row, State, Update};
use crate::message::Composer;

#[derive(Debug, Clone)]
pub struct Settings {
    pub connections: usize,
    pub rate: Option<Rate>,
    /// `batch_size` messages, then a pause of `batch_pause`.
    pub batch: Option<(u64, Duration)>,
    /// Stop after handing this many messages to the relay in this run.
    pub max_per_run: Option<u64>,
    /// Attempts per message in one run before it is left deferred.
    pub max_attempts: u32,
    /// The first retry waits this long; each further one twice as long, with jitter.
    pub retry_base: Duration,
    pub timeout: Duration,
    pub resend_unknown: bool,
}

/// Live counters, shown by the progress bar and the log lines.
#[derive(Default)]
pub struct Progress {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub deferred: AtomicU64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The queue is empty.
    Done,
    /// `--max-per-run` reached; the rest waits for the next run.
    Limit,
    /// SIGINT or SIGTERM.
    Interrupted,
    /// The relay refused the settings (authentication, TLS), or the journal failed.
    Fatal(String),
}

pub struct Outcome {
    pub handed_over: u64,
    pub stop: Stop,
}

struct Job {
    seq: i64,
    email: String,
    envelope: Envelope,
    bytes: Vec<u8>,
}

type Ack = oneshot::Sender<Result<(), String>>;

enum Cmd {
    Apply(Update, Option<Ack>),
    Queue(i64, i64, oneshot::Sender<Result<Vec<Row>, String>>),
}

/// The journal thread: applies updates in batches, one commit per batch.
fn journal_thread(
    mut journal: Journal,
    campaign: String,
    rx: std::sync::mpsc::Receiver<Cmd>,
    resend_unknown: bool,
) -> Journal {
    let mut pending: Vec<(Update, Option<Ack>)> = Vec::new();
    let flush = |journal: &mut Journal, pending: &mut Vec<(Update, Option<Ack>)>| {
        if pending.is_empty() {
            return;
        }
        let updates: Vec<Update> = pending.iter().map(|(u, _)| u.clone()).collect();
        let result = journal
            .apply(&campaign, &updates)
            .map_err(|e| e.to_string());
        for (_, ack) in pending.drain(..) {
            if let Some(ack) = ack {
                let _ = ack.send(result.clone());
            }
        }
    };
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Cmd::Apply(u, ack) => pending.push((u, ack)),
                Cmd::Queue(after, limit, reply) => {
                    flush(&mut journal, &mut pending);
                    let rows = journal
                        .queue(&campaign, after, limit, resend_unknown)
                        .map_err(|e| e.to_string());
                    let _ = reply.send(rows);
                }
            }
            next = rx.try_recv().ok();
        }
        flush(&mut journal, &mut pending);
    }
    journal
}

struct Shared {
    relay: Relay,
    hello: ClientId,
    settings: Settings,
    limiter: Mutex<Limiter>,
    journal: std::sync::mpsc::Sender<Cmd>,
    progress: Arc<Progress>,
    stop: AtomicBool,
    stopped: Notify,
    fatal: std::sync::Mutex<Option<String>>,
}

impl Shared {
    fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.stopped.notify_waiters();
    }

    fn fail(&self, why: String) {
        self.fatal.lock().expect("not poisoned").get_or_insert(why);
        self.request_stop();
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    async fn record(&self, update: Update) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.journal
            .send(Cmd::Apply(update, Some(tx)))
            .map_err(|_| "the journal stopped".to_string())?;
        rx.await.map_err(|_| "the journal stopped".to_string())?
    }
}

/// Sends the campaign's queue. Returns the journal when done.
/// What a run sends and how.
pub struct Plan {
    pub campaign: String,
    pub composer: Arc<Composer>,
    pub columns: Arc<Vec<String>>,
    pub relay: Relay,
    pub settings: Settings,
}

pub fn run(
    journal: Journal,
    what: Plan,
    progress: Arc<Progress>,
    interrupt: Arc<AtomicBool>,
) -> (Outcome, Journal) {
    let Plan {
        campaign,
        composer,
        columns,
        relay,
        settings,
    } = what;
    let campaign = campaign.as_str();
    let (jtx, jrx) = std::sync::mpsc::channel();
    let resend_unknown = settings.resend_unknown;
    let campaign_owned = campaign.to_string();
    let writer =
        std::thread::spawn(move || journal_thread(journal, campaign_owned, jrx, resend_unknown));
    let hello = ClientId::Domain(hostname_for_helo().unwrap_or_else(|| "localhost".into()));
    let shared = Arc::new(Shared {
        relay,
        hello,
        limiter: Mutex::new(Limiter::new(settings.rate, settings.batch)),
        settings,
        journal: jtx,
        progress,
        stop: AtomicBool::new(false),
        stopped: Notify::new(),
        fatal: std::sync::Mutex::new(None),
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let outcome = rt.block_on(dispatch(Arc::clone(&shared), composer, columns, interrupt));
    // Dropping the runtime drops every task, and with them their handles.
    drop(rt);
    let Shared { journal, .. } = Arc::into_inner(shared).expect("no task outlives the runtime");
    drop(journal);
    let journal = writer.join().expect("journal thread");
    (outcome, journal)
}

fn hostname_for_helo() -> Option<String> {
    let h = hostname::get().ok()?.into_string().ok()?;
    (!h.is_empty()
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'))
    .then_some(h)
}

async fn dispatch(
    shared: Arc<Shared>,
    composer: Arc<Composer>,
    columns: Arc<Vec<String>>,
    interrupt: Arc<AtomicBool>,
) -> Outcome {
    // SIGINT and SIGTERM stop the run cleanly: no new message starts, the
    // ones in flight finish and are journaled.
    let watcher = {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            interrupt.store(true, Ordering::SeqCst);
            shared.request_stop();
        })
    };
    let (job_tx, job_rx) = mpsc::channel::<Job>(shared.settings.connections.max(1));
    let job_rx = Arc::new(Mutex::new(job_rx));
    let workers: Vec<_> = (0..shared.settings.connections.max(1))
        .map(|_| tokio::spawn(worker(Arc::clone(&shared), Arc::clone(&job_rx))))
        .collect();

    let mut handed_over = 0u64;
    let mut after = 0i64;
    let mut stop = Stop::Done;
    'queue: loop {
        let (tx, rx) = oneshot::channel();
        if shared.journal.send(Cmd::Queue(after, 256, tx)).is_err() {
            shared.fail("the journal stopped".into());
            break;
        }
        let rows = match rx.await {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                shared.fail(format!("the journal could not be read ({e})"));
                break;
            }
            Err(_) => {
                shared.fail("the journal stopped".into());
                break;
            }
        };
        if rows.is_empty() {
            break;
        }
        for row in rows {
            after = row.seq;
            if shared.stopping() {
                break 'queue;
            }
            if shared
                .settings
                .max_per_run
                .is_some_and(|max| handed_over >= max)
            {
                stop = Stop::Limit;
                break 'queue;
            }
            let recipient = Recipient {
                line: row.line as u64,
                email: row.email.clone(),
                columns: Arc::clone(&columns),
                values: row.values,
            };
            match composer.build(&recipient) {
                Ok(built) => {
                    let envelope = match Envelope::new(
                        Some(composer.envelope_from()),
                        vec![built.to.parse().expect("checked by build")],
                    ) {
                        Ok(e) => e,
                        Err(e) => {
                            shared.fail(format!("cannot address the message ({e})"));
                            break 'queue;
                        }
                    };
                    let job = Job {
                        seq: row.seq,
                        email: row.email,
                        envelope,
                        bytes: built.bytes,
                    };
                    tokio::select! {
                        sent = job_tx.send(job) => if sent.is_err() { break 'queue },
                        _ = shared.stopped.notified() => break 'queue,
                    }
                    handed_over += 1;
                }
                Err(why) => {
                    let _ = shared.journal.send(Cmd::Apply(
                        Update {
                            seq: row.seq,
                            state: State::Failed,
                            reply: Some(why),
                            attempts: 0,
                            suppress: None,
                        },
                        None,
                    ));
                    shared.progress.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    drop(job_tx);
    for w in workers {
        let _ = w.await;
    }
    watcher.abort();
    let fatal = shared.fatal.lock().expect("not poisoned").clone();
    if let Some(f) = fatal {
        stop = Stop::Fatal(f);
    } else if shared.stopping() {
        stop = Stop::Interrupted;
    }
    Outcome { handed_over, stop }
}

async fn worker(shared: Arc<Shared>, jobs: Arc<Mutex<mpsc::Receiver<Job>>>) {
    let mut conn: Option<AsyncSmtpConnection> = None;
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
        // Durably `sending` before a byte of the message leaves.
        if let Err(e) = shared
            .record(Update {
                seq: job.seq,
                state: State::Sending,
                reply: None,
                attempts: 0,
                suppress: None,
            })
            .await
        {
            shared.fail(format!(
                "the journal cannot record the send ({e}); nothing more is sent"
            ));
            break;
        }
        let update = deliver(&shared, &mut conn, &job).await;
        match update.state {
            State::Sent => shared.progress.sent.fetch_add(1, Ordering::Relaxed),
            State::Failed => shared.progress.failed.fetch_add(1, Ordering::Relaxed),
            _ => shared.progress.deferred.fetch_add(1, Ordering::Relaxed),
        };
        let _ = shared.journal.send(Cmd::Apply(update, None));
    }
    if let Some(mut c) = conn {
        let _ = tokio::time::timeout(Duration::from_secs(5), c.quit()).await;
    }
}

/// One message, with retries; returns its final journal update.
async fn deliver(shared: &Shared, conn: &mut Option<AsyncSmtpConnection>, job: &Job) -> Update {
    let settings = &shared.settings;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let result = attempt_once(shared, conn, job).await;
        let failure = match result {
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
                shared.fail(format!("{} ({})", failure.reply, shared.relay.describe()));
                return deferred(job, attempt, failure.reply);
            }
            FailureKind::SlowDown => {
                let pause = shared.limiter.lock().await.slow_down();
                tracing_line(&format!(
                    "the relay asked to slow down ({}); pausing {}s",
                    failure.reply,
                    pause.as_secs()
                ));
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

fn deferred(job: &Job, attempts: u32, reply: String) -> Update {
    Update {
        seq: job.seq,
        state: State::Deferred,
        reply: Some(reply),
        attempts: attempts as i64,
        suppress: None,
    }
}

async fn attempt_once(
    shared: &Shared,
    conn: &mut Option<AsyncSmtpConnection>,
    job: &Job,
) -> Result<String, Failure> {
    if conn.as_ref().is_none_or(|c| c.has_broken()) {
        *conn = Some(
            shared
                .relay
                .connect(&shared.hello, shared.settings.timeout)
                .await?,
        );
    }
    throttle::take(&shared.limiter).await;
    let c = conn.as_mut().expect("connected above");
    let sent =
        tokio::time::timeout(shared.settings.timeout, c.send(&job.envelope, &job.bytes)).await;
    match sent {
        Ok(Ok(response)) => Ok(format!(
            "{} {}",
            response.code(),
            response.message().collect::<Vec<_>>().join(" ")
        )),
        Ok(Err(e)) => {
            let broken = c.has_broken() || !e.is_permanent();
            if broken {
                *conn = None;
            }
            Err(Failure::from_lettre(e))
        }
        Err(_) => {
            *conn = None;
            Err(Failure::transient(format!(
                "no answer within {}s",
                shared.settings.timeout.as_secs()
            )))
        }
    }
}

/// A log line on stderr (the progress bar, when shown, is redrawn after it).
pub fn tracing_line(msg: &str) {
    eprintln!("herald: {msg}");
}
