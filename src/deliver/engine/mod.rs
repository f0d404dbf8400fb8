//! The send loop: a builder makes messages from the store's queue, a
//! distributor hands each to a relay that can send it now, one worker per
//! connection hands them to the [`Mailer`], and one task writes the store,
//! committing what several workers report at once (group commit). The same
//! loop serves real sends, test sends and dry runs.
//!
//! Where each part lives: [`builder`] (the queue into messages),
//! [`distributor`] (messages to relays, by weight and domain limits),
//! [`workers`] (one per connection: attempts, retries, outcomes),
//! [`relays`] (each relay's throttle, health, pauses and daily quota, each
//! domain limit's state), [`store_task`] (the group commit and the
//! suppressions added during the run), [`dispatch`] (starts them all and
//! says why the run stopped). Uses the store, the throttle and the message
//! builder; nothing above `deliver/`.

mod builder;
mod dispatch;
mod distributor;
mod relays;
mod store_task;
mod workers;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, Notify, mpsc, oneshot};
use tokio::time::Instant;

use super::throttle::{self, Limiter, Rate};
use super::{FailureKind, Gate, JournalError, Mailer, Outgoing};
use crate::deliver::audience::Recipient;
use crate::deliver::message::Composer;
use crate::store::{QuotaTake, RateGate, RateMark, Row, State, Store, Update};

pub use builder::LATE_SUPPRESSION;
use builder::{CHUNK, build_jobs};
use dispatch::dispatch;
use distributor::{Want, ask, distribute};
use relays::{DomainState, Health, QuotaDay, RelayState, Shared};
use store_task::{Cmd, LateSuppressions, blocking, store_task};
use workers::{Delivered, stopped, worker};

/// How the whole run goes, whichever relay carries a message; each
/// relay's own rate, connections, weight and quota are its [`Lane`].
#[derive(Debug, Clone)]
pub struct Settings {
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
    /// Limits per recipient domain (or group of domains), across every
    /// relay of the run (`domain_limits:`).
    pub domains: Vec<DomainGroup>,
    /// The store's suppression mark ([`Store::suppression_mark`]) taken
    /// before the list was read: whoever is suppressed after it is not
    /// mailed from the next hand-over on. `None`: the mark at the start of
    /// the run.
    pub suppression_mark: Option<i64>,
    /// The wall clock of the rates' marks in the journal: the system's,
    /// except in tests on tokio's paused clock ([`crate::clock::Wall`]).
    pub wall: crate::clock::Wall,
}

/// A relay's daily quota: at most `max_per_day` messages on each of the
/// relay's days (midnight to midnight in `zone`), counted in the store
/// across runs, campaigns and senders.
///
/// A message counts when the relay saw it, accepted or refused; one that
/// never reached the relay (it could not be reached, it said 421 before
/// the message) does not. A run takes the quota from the store a message
/// at a time, before the message, in the store's group commit, and gives
/// back what it did not use when it ends; a run that dies keeps what its
/// connections held at that moment (at most one each), so a crash leaves
/// at most that much of a day's quota unused, never a message too many.
#[derive(Debug, Clone)]
pub struct Quota {
    pub max_per_day: u64,
    pub zone: jiff::tz::TimeZone,
    /// The zone's name, for messages.
    pub zone_name: String,
}

/// A limit for messages to some recipient domains, whichever relay
/// carries them: no window of `rate` holds one message too many to these
/// domains, and at most `connections` are in flight to them at once.
#[derive(Debug, Clone)]
pub struct DomainGroup {
    pub name: String,
    /// Lower-case; a recipient's domain matches exactly.
    pub domains: Vec<String>,
    pub rate: Option<Rate>,
    pub connections: Option<usize>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            batch: None,
            max_per_run: None,
            max_attempts: 4,
            retry_base: Duration::from_secs(1),
            timeout: Duration::from_secs(60),
            resend_unknown: false,
            relay_down_after: Duration::from_secs(60),
            window_closes_after: None,
            domains: Vec::new(),
            suppression_mark: None,
            wall: crate::clock::Wall::System,
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
    /// Every relay has used its daily quota; the rest waits for the next
    /// run after `frees_at`, the first moment one of them has quota again.
    QuotaSpent {
        frees_at: jiff::Timestamp,
        /// Each relay's quota and day, for the message: `main: 500 of 500 on 2026-11-30 (UTC)`.
        detail: String,
    },
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
    /// Every relay of the run, in the order of the settings (`relays:`, or
    /// `smtp_url` as a list of one), each with its own rate, connections,
    /// quota and health. The first one's Mailer makes the messages' form
    /// (every relay of a run is the same kind of Mailer).
    pub relays: Vec<Lane<M>>,
    pub settings: Settings,
}

/// One relay of a run.
pub struct Lane<M: Mailer> {
    /// For messages and the journal: `backup` or `mail.example.org:587`.
    pub name: String,
    pub mailer: M,
    pub rate: Option<Rate>,
    pub connections: usize,
    /// When several relays can take a message at the same moment, they
    /// share the messages in proportion to their weights. A relay held
    /// back by its rate, quota or a pause holds nobody else back.
    pub weight: u32,
    pub quota: Option<Quota>,
}

impl<M: Mailer> Lane<M> {
    /// A relay named as its Mailer describes itself, with one connection,
    /// no rate and no quota.
    pub fn of(mailer: M) -> Lane<M> {
        Lane {
            name: mailer.describe(),
            mailer,
            rate: None,
            connections: 1,
            weight: 1,
            quota: None,
        }
    }
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
    /// The recipient's domain limit, if their domain has one.
    group: Option<usize>,
    /// The domain limit's slot this job holds while a worker has it.
    domain_slot: Option<u64>,
    /// Its last attempt ended with no answer after the message began.
    unanswered: bool,
    /// The relay whose "not now" this recipient is waiting out: the retry
    /// goes to another one when there is one.
    avoid: Option<usize>,
}

/// Sends the campaign's queue on a runtime of its own; returns the store
/// when done.
pub fn run<M: Mailer>(
    store: Box<dyn Store>,
    plan: Plan<M>,
    progress: Arc<Progress>,
    interrupt: Arc<AtomicBool>,
) -> (Outcome, Box<dyn Store>) {
    let connections = plan.relays.iter().map(|l| l.connections.max(1)).sum();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(blocking_threads(connections))
        .build()
        .expect("a tokio runtime");
    let result = rt.block_on(run_on(store, plan, progress, interrupt, true, true));
    // Dropping the runtime drops every task, and with them their handles.
    drop(rt);
    result
}

/// The most threads the run's blocking pool starts: the builder's batches
/// if no builder thread could be started (one per core and one more; see
/// `builder::Builders::hand_over`), the store's call, a shared rate's call per
/// connection, and one spare. Tokio's default is 512: on a loaded machine a
/// thread still finishing its task made the pool start another, and a dry
/// run of 100,000 ended with 9 where 4 worked at once, each with its stack
/// and malloc's per-thread cache (about 1 MB of the run's data). A task
/// past the limit waits for a thread; none of them waits for another.
fn blocking_threads(connections: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    cores + 1 + 1 + connections + 1
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
    run_on(store, plan, progress, interrupt, signals, false).await
}

/// The run; `own_runtime`: on the runtime [`run`] made for it (see
/// `Shared::own_runtime`).
async fn run_on<M: Mailer>(
    store: Box<dyn Store>,
    plan: Plan<M>,
    progress: Arc<Progress>,
    interrupt: Arc<AtomicBool>,
    signals: bool,
    own_runtime: bool,
) -> (Outcome, Box<dyn Store>) {
    let Plan {
        campaign,
        composer,
        columns,
        relays: lanes,
        settings,
    } = plan;
    let broken = |why: String, store| {
        let outcome = Outcome {
            handed_over: 0,
            stop: Stop::Broken(why),
        };
        (outcome, store)
    };
    if lanes.is_empty() {
        return broken("the run was given no relay to send through".into(), store);
    }
    let (store, gates) = open_gates(store, &lanes, &settings).await;
    let (gates, mark) = match gates {
        Ok(got) => got,
        Err(e) => return broken(e.to_string(), store),
    };
    // Every relay is the same kind of Mailer (see Plan::relays).
    let leaves_the_machine = lanes[0].mailer.leaves_the_machine();
    let (tx, rx) = mpsc::unbounded_channel();
    let (relays, domains, domain_of) = relay_states(lanes, &settings, gates, &tx);
    let late = Arc::new(LateSuppressions::default());
    let (faults_tx, faults) = mpsc::unbounded_channel();
    let writer = tokio::spawn(store_task(
        store,
        campaign,
        rx,
        (settings.resend_unknown, !leaves_the_machine),
        (mark, Arc::clone(&late)),
        faults_tx,
    ));
    let (retries_tx, retries_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        relay_down: std::sync::Mutex::new(None),
        broken: std::sync::Mutex::new(None),
        quota_spent: std::sync::Mutex::new(None),
        waiting: AtomicU64::new(0),
        in_flight: AtomicU64::new(0),
        retries: retries_tx,
        relays,
        domains,
        domain_of,
        domain_freed: Notify::new(),
        all_settled: Notify::new(),
        settings,
        store: tx,
        progress,
        stop: AtomicBool::new(false),
        window_closed: AtomicBool::new(false),
        stopped: Notify::new(),
        fatal: std::sync::Mutex::new(None),
        late,
        over: AtomicBool::new(false),
        own_runtime,
    });
    let outcome = dispatch(
        Arc::clone(&shared),
        composer,
        columns,
        retries_rx,
        (interrupt, faults),
        signals,
    )
    .await;
    shared.give_back_quotas().await;
    drop(let_go(shared).await);
    let store = writer.await.expect("the store task does not panic");
    (outcome, store)
}

/// Why a run could not start: what it reads from the store first.
#[derive(Debug, thiserror::Error)]
enum SetupError {
    #[error("the shared rate cannot be set up ({0})")]
    Rate(crate::store::StoreError),
    #[error("the suppression list cannot be read ({0})")]
    Suppressions(crate::store::StoreError),
}

/// A rate's gate shared with other senders (if the store is shared), and
/// the window the journal kept of it (if this process's throttle is the
/// whole rate); for every relay, then every domain limit.
type Gates = Vec<(Option<Arc<dyn RateGate>>, Option<(String, Vec<f64>)>)>;

/// With a shared store, every relay's rate and every domain's limit hold
/// across all the senders: each has a gate in the store, by name. Also the
/// suppression mark the run starts from.
async fn open_gates<M: Mailer>(
    store: Box<dyn Store>,
    lanes: &[Lane<M>],
    settings: &Settings,
) -> (Box<dyn Store>, Result<(Gates, i64), SetupError>) {
    let keys: Vec<(String, Option<Rate>)> = lanes
        .iter()
        .map(|l| (format!("relay {}", l.name), l.rate))
        .chain(
            settings
                .domains
                .iter()
                .map(|d| (format!("domain {}", d.name), d.rate)),
        )
        .collect();
    let given_mark = settings.suppression_mark;
    let wall = settings.wall;
    blocking(store, move |s| {
        let gates = keys
            .into_iter()
            .map(|(key, rate)| match rate {
                Some(rate) => {
                    let gate = s.rate_gate(&key, rate)?;
                    let history = rate_history(s, gate.is_none(), &key, rate, wall)?;
                    Ok((gate, history))
                }
                None => Ok((None, None)),
            })
            .collect::<crate::store::Result<Vec<_>>>()
            .map_err(SetupError::Rate)?;
        let mark = match given_mark {
            Some(m) => m,
            None => s.suppression_mark().map_err(SetupError::Suppressions)?,
        };
        Ok((gates, mark))
    })
    .await
}

/// Each relay's state and each domain limit's, with the recipient domains
/// of the limits; `gates` as [`open_gates`] made them.
#[allow(clippy::type_complexity)]
fn relay_states<M: Mailer>(
    lanes: Vec<Lane<M>>,
    settings: &Settings,
    gates: Gates,
    tx: &mpsc::UnboundedSender<Cmd>,
) -> (Vec<RelayState<M>>, Vec<DomainState>, HashMap<String, usize>) {
    let mut gates = gates.into_iter();
    let relays: Vec<RelayState<M>> = lanes
        .into_iter()
        .map(|lane| {
            let (gate, history) = gates.next().unwrap_or_default();
            (lane, gate, history)
        })
        .map(|(lane, gate, history)| RelayState {
            name: lane.name,
            mailer: lane.mailer,
            connections: lane.connections.max(1),
            stride: 1.0 / f64::from(lane.weight.max(1)),
            limiter: Mutex::new(resumed(
                Limiter::new(lane.rate, settings.batch),
                history,
                tx,
                settings.wall,
            )),
            gate,
            health: std::sync::Mutex::new(Health::default()),
            quota: lane.quota,
            quota_day: Mutex::new(QuotaDay::default()),
            quota_settled: Notify::new(),
            exhausted: AtomicBool::new(false),
            set_aside: std::sync::Mutex::new(None),
            came_back: Notify::new(),
        })
        .collect();
    let mut domain_of = HashMap::new();
    let domains: Vec<DomainState> = settings
        .domains
        .iter()
        .enumerate()
        .map(|(i, d)| {
            for name in &d.domains {
                domain_of.insert(name.to_ascii_lowercase(), i);
            }
            let (gate, history) = gates.next().unwrap_or_default();
            DomainState {
                limiter: std::sync::Mutex::new(resumed(
                    Limiter::new(d.rate, None),
                    history,
                    tx,
                    settings.wall,
                )),
                connections: d.connections.map(|c| c.max(1)),
                in_flight: AtomicUsize::new(0),
                gate,
            }
        })
        .collect();
    (relays, domains, domain_of)
}

/// The run's state once every task is done with it. A recipient handed
/// back for a retry just as the run stopped is recorded by its own task,
/// which may not have run yet: wait for it (it ends as soon as it runs)
/// before taking the store back.
async fn let_go<M: Mailer>(mut shared: Arc<Shared<M>>) -> Shared<M> {
    let mut waited = Duration::ZERO;
    loop {
        match Arc::try_unwrap(shared) {
            Ok(s) => return s,
            Err(back) if waited < Duration::from_secs(30) => {
                shared = back;
                tokio::time::sleep(Duration::from_millis(1)).await;
                waited += Duration::from_millis(1);
            }
            Err(_) => panic!("a task outlived the run"),
        }
    }
}

/// What the journal kept of a rate's window, when this process's throttle
/// is the whole rate (no shared gate): the next run starts from it.
fn rate_history(
    s: &mut dyn Store,
    own: bool,
    key: &str,
    rate: Rate,
    wall: crate::clock::Wall,
) -> crate::store::Result<Option<(String, Vec<f64>)>> {
    if !own {
        return Ok(None);
    }
    let now = wall.now();
    let times = s.rate_history(key, now, u64::from(rate.max))?;
    Ok(Some((key.to_string(), times)))
}

/// `limiter`, starting from the window the journal kept and writing its
/// messages' times there (in the store task's group commit).
fn resumed(
    mut limiter: Limiter,
    history: Option<(String, Vec<f64>)>,
    store: &mpsc::UnboundedSender<Cmd>,
    wall: crate::clock::Wall,
) -> Limiter {
    if let Some((key, times)) = history {
        let store = store.clone();
        let record = Arc::new(move |m: RateMark| {
            let _ = store.send(Cmd::Mark(m));
        });
        limiter.resume(throttle::Journal::new(key, record, wall), &times);
    }
    limiter
}
