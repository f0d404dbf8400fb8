//! The send loop: a dispatcher builds messages from the journal's queue,
//! one worker per SMTP connection sends them, and one thread writes the
//! journal, committing what several workers report at once (group commit).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::extension::ClientId;
use tokio::sync::{Mutex, Notify, mpsc, oneshot};

use super::smtp::{Connection, Failure, FailureKind, Relay};
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
    /// The message as it goes after DATA: dot-stuffed, ending in `.`.
    data: Data,
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
    // Messages are built on a thread of their own, so building the next
    // ones overlaps with sending (and with the journal's commits).
    let (job_tx, job_rx) = mpsc::channel::<Job>(shared.settings.connections.max(1) * 2);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let workers: Vec<_> = (0..shared.settings.connections.max(1))
        .map(|_| tokio::spawn(worker(Arc::clone(&shared), Arc::clone(&job_rx))))
        .collect();
    // Only the workers hold the receiver: when they stop, the builder's
    // next send fails and it stops too.
    drop(job_rx);
    let builder = {
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || build_jobs(&shared, &composer, &columns, job_tx))
    };
    for w in workers {
        let _ = w.await;
    }
    let (handed_over, mut stop) =
        tokio::task::spawn_blocking(move || builder.join().expect("builder thread"))
            .await
            .expect("join");
    watcher.abort();
    let fatal = shared.fatal.lock().expect("not poisoned").clone();
    if let Some(f) = fatal {
        stop = Stop::Fatal(f);
    } else if shared.stopping() {
        stop = Stop::Interrupted;
    }
    Outcome { handed_over, stop }
}

/// Reads the queue from the journal and builds each message; returns how
/// many were handed to the workers and why it stopped.
fn build_jobs(
    shared: &Shared,
    composer: &Composer,
    columns: &Arc<Vec<String>>,
    jobs: mpsc::Sender<Job>,
) -> (u64, Stop) {
    let mut handed_over = 0u64;
    let mut after = 0i64;
    loop {
        let (tx, rx) = oneshot::channel();
        if shared.journal.send(Cmd::Queue(after, 256, tx)).is_err() {
            shared.fail("the journal stopped".into());
            return (handed_over, Stop::Done);
        }
        let rows = match rx.blocking_recv() {
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
        for row in rows {
            after = row.seq;
            if shared.stopping() {
                return (handed_over, Stop::Done);
            }
            if shared
                .settings
                .max_per_run
                .is_some_and(|max| handed_over >= max)
            {
                return (handed_over, Stop::Limit);
            }
            let recipient = Recipient {
                line: row.line as u64,
                email: row.email.clone(),
                columns: Arc::clone(columns),
                values: row.values,
            };
            match composer.build(&recipient) {
                Ok(built) => {
                    let to = match built.to.parse() {
                        Ok(to) => to,
                        Err(e) => {
                            shared
                                .fail(format!("cannot address the message to {} ({e})", built.to));
                            return (handed_over, Stop::Done);
                        }
                    };
                    let envelope = match Envelope::new(Some(composer.envelope_from()), vec![to]) {
                        Ok(e) => e,
                        Err(e) => {
                            shared.fail(format!("cannot address the message ({e})"));
                            return (handed_over, Stop::Done);
                        }
                    };
                    let job = Job {
                        seq: row.seq,
                        email: row.email,
                        envelope,
                        data: Data::new(built.bytes),
                    };
                    if jobs.blocking_send(job).is_err() {
                        // The workers stopped (interrupted, or a fatal error).
                        return (handed_over, Stop::Done);
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
}

async fn worker(shared: Arc<Shared>, jobs: Arc<Mutex<mpsc::Receiver<Job>>>) {
    let mut conn: Option<Connection> = None;
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
        let _ = shared.journal.send(Cmd::Apply(update, None));
    }
    if let Some(mut c) = conn {
        let _ = tokio::time::timeout(Duration::from_secs(5), c.quit()).await;
    }
}

/// One message, with retries; returns its final journal update.
async fn deliver(shared: &Shared, conn: &mut Option<Connection>, job: &Job) -> Update {
    let settings = &shared.settings;
    let mut attempt = 0u32;
    // The `sending` mark is committed while MAIL FROM, RCPT TO and DATA are
    // exchanged, and awaited before the message's content: nothing is
    // delivered before its final dot, so the mark is on disk before the
    // message can be.
    let (tx, rx) = oneshot::channel();
    let mark = Update {
        seq: job.seq,
        state: State::Sending,
        reply: None,
        attempts: 0,
        suppress: None,
    };
    let mut marked: Option<oneshot::Receiver<Result<(), String>>> =
        match shared.journal.send(Cmd::Apply(mark, Some(tx))) {
            Ok(()) => Some(rx),
            Err(_) => {
                shared.fail("the journal stopped; nothing more is sent".into());
                return deferred(job, 0, "not sent: the journal stopped".into());
            }
        };
    loop {
        attempt += 1;
        let result = attempt_once(shared, conn, job, &mut marked).await;
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
    conn: &mut Option<Connection>,
    job: &Job,
    marked: &mut Option<oneshot::Receiver<Result<(), String>>>,
) -> Result<String, Failure> {
    if conn.as_ref().is_none_or(|c| c.has_broken()) {
        *conn = Some(
            shared
                .relay
                .connect(&shared.hello, shared.settings.timeout)
                .await?,
        );
    }
    let slot = throttle::take(&shared.limiter).await;
    let c = conn.as_mut().expect("connected above");
    let timeout = shared.settings.timeout;
    let result = tokio::time::timeout(timeout, transaction(c, job, marked)).await;
    shared.limiter.lock().await.answered(slot);
    match result {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(failure)) => {
            // A refused command leaves a transaction half done: start afresh.
            if let Some(mut c) = conn.take() {
                c.abort().await;
            }
            if failure.kind == FailureKind::Config {
                shared.fail(failure.reply.clone());
            }
            Err(failure)
        }
        Err(_) => {
            *conn = None;
            Err(Failure::transient(format!(
                "no answer within {}s",
                timeout.as_secs()
            )))
        }
    }
}

/// MAIL, RCPT, DATA. Like lettre's `send`, but waits for the journal's
/// `sending` mark (if not yet on disk) only before the message itself:
/// nothing is delivered until the message's final dot.
async fn transaction(
    c: &mut Connection,
    job: &Job,
    marked: &mut Option<oneshot::Receiver<Result<(), String>>>,
) -> Result<String, Failure> {
    use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
    use lettre::transport::smtp::extension::{Extension, MailBodyParameter, MailParameter};
    let mut params = Vec::new();
    let non_ascii = job
        .envelope
        .from()
        .into_iter()
        .chain(job.envelope.to())
        .any(|a: &lettre::Address| !AsRef::<str>::as_ref(a).is_ascii());
    if non_ascii {
        if !c.server_info().supports_feature(Extension::SmtpUtfEight) {
            return Err(Failure {
                kind: FailureKind::Permanent,
                reply:
                    "the address has non-ASCII characters and the relay does not support SMTPUTF8"
                        .into(),
            });
        }
        params.push(MailParameter::SmtpUtfEight);
    }
    if !job.data.ascii && c.server_info().supports_feature(Extension::EightBitMime) {
        params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    let mail = Mail::new(job.envelope.from().cloned(), params);
    if c.pipelining {
        // One write, then one reply per command, in order. A refusal leaves
        // replies unread: the caller drops the connection on any failure.
        let mut batch = mail.to_string();
        for to in job.envelope.to() {
            batch.push_str(&Rcpt::new(to.clone(), vec![]).to_string());
        }
        batch.push_str(&Data.to_string());
        c.command(batch).await.map_err(Failure::from_lettre)?;
        for _ in job.envelope.to() {
            c.read_response().await.map_err(Failure::from_lettre)?;
        }
        c.read_response().await.map_err(Failure::from_lettre)?;
    } else {
        c.command(mail).await.map_err(Failure::from_lettre)?;
        for to in job.envelope.to() {
            c.command(Rcpt::new(to.clone(), vec![]))
                .await
                .map_err(Failure::from_lettre)?;
        }
        c.command(Data).await.map_err(Failure::from_lettre)?;
    }
    if let Some(rx) = marked.take()
        && !matches!(rx.await, Ok(Ok(())))
    {
        return Err(Failure::config(
            "the journal cannot record the send (is the disk full?); nothing more is sent".into(),
        ));
    }
    let response = match &job.data.payload {
        // One write of the prepared text; lettre's own `message` would
        // dot-stuff it again byte by byte, on the connection's task.
        Payload::Stuffed(text) => c.command(text).await,
        Payload::Raw(bytes) => c.message(bytes).await,
    }
    .map_err(Failure::from_lettre)?;
    Ok(format!(
        "{} {}",
        response.code(),
        response.message().collect::<Vec<_>>().join(" ")
    ))
}

/// A message ready for the DATA phase, prepared on the builder thread.
struct Data {
    ascii: bool,
    payload: Payload,
}

enum Payload {
    /// Dot-stuffed (RFC 5321 4.5.2) and ending with `CRLF.CRLF`: what herald
    /// builds is always UTF-8 (7-bit or 8-bit text).
    Stuffed(String),
    /// Anything else, as built, for lettre to stuff.
    Raw(Vec<u8>),
}

impl Data {
    fn new(message: Vec<u8>) -> Data {
        let ascii = message.is_ascii();
        let payload = if std::str::from_utf8(&message).is_ok() {
            Payload::Stuffed(
                String::from_utf8(dot_stuff(&message)).expect("stuffing adds only ASCII"),
            )
        } else {
            Payload::Raw(message)
        };
        Data { ascii, payload }
    }
}

/// Doubles a `.` that starts a line, and ends the message with
/// `CRLF.CRLF`, exactly as lettre's `message` does.
fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 64);
    let mut from = 0;
    if message.first() == Some(&b'.') {
        out.push(b'.');
    }
    for at in memchr::memmem::find_iter(message, b"\r\n.") {
        out.extend_from_slice(&message[from..at + 2]);
        out.push(b'.');
        from = at + 2;
    }
    out.extend_from_slice(&message[from..]);
    out.extend_from_slice(b"\r\n.\r\n");
    out
}

/// A log line on stderr (the progress bar, when shown, is redrawn after it).
pub fn tracing_line(msg: &str) {
    eprintln!("herald: {msg}");
}

#[cfg(test)]
mod tests {
    /// lettre's `ClientCodec`, byte by byte, as the reference.
    fn reference(message: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let (mut cr, mut start) = (false, true);
        for &b in message {
            out.push(b);
            if b == b'.' && start {
                out.push(b'.');
            }
            start = cr && b == b'\n';
            cr = b == b'\r';
        }
        out.extend_from_slice(b"\r\n.\r\n");
        out
    }

    #[test]
    fn dot_stuffing_matches_lettre() {
        for m in [
            &b""[..],
            b".",
            b".hidden\r\n..two\r\n.\r\nend",
            b"a\r\n.\r\n.",
            b"a\n.b\r.c\r\n\r\n.d",
            b"no dots here\r\n",
        ] {
            assert_eq!(
                super::dot_stuff(m),
                reference(m),
                "{:?}",
                String::from_utf8_lossy(m)
            );
        }
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..2000 {
            let m: Vec<u8> = (0..rng.usize(0..40))
                .map(|_| *rng.choice(b"\r\n.a").unwrap())
                .collect();
            assert_eq!(super::dot_stuff(&m), reference(&m), "{m:?}");
        }
    }
}
