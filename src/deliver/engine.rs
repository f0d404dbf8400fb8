//! The send loop: a builder thread makes messages from the store's queue,
//! one worker per connection hands them to the [`Mailer`], and one thread
//! writes the store, committing what several workers report at once (group
//! commit). The same loop serves real sends, test sends and dry runs.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, Notify, mpsc, oneshot};
use tokio::time::Instant;

use super::throttle::{self, Limiter, Rate};
use super::{FailureKind, Gate, Mailer, Outgoing};
use crate::deliver::audience::Recipient;
use crate::deliver::message::{Composer, build_all};
use crate::store::{QuotaTake, RateGate, RateMark, Row, State, Store, Update};

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
    /// The first relay's weight (see [`Lane::weight`]).
    pub relay_weight: u32,
    /// The first relay's daily quota (see [`Lane::quota`]).
    pub relay_quota: Option<Quota>,
    /// Limits per recipient domain (or group of domains), across every
    /// relay of the run (`domain_limits:`).
    pub domains: Vec<DomainGroup>,
    /// The store's suppression mark ([`Store::suppression_mark`]) taken
    /// before the list was read: whoever is suppressed after it is not
    /// mailed from the next hand-over on. `None`: the mark at the start of
    /// the run.
    pub suppression_mark: Option<i64>,
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
            relay_weight: 1,
            relay_quota: None,
            domains: Vec::new(),
            suppression_mark: None,
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
    /// When several relays can take a message at the same moment, they
    /// share the messages in proportion to their weights. A relay held
    /// back by its rate, quota or a pause holds nobody else back.
    pub weight: u32,
    pub quota: Option<Quota>,
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

type Ack = oneshot::Sender<Result<(), String>>;

enum Cmd {
    Apply(Update, Option<Ack>),
    Queue(i64, i64, oneshot::Sender<Result<Vec<Row>, String>>),
    /// Take up to `want` of a relay's quota for a day (relay, day, want, max).
    TakeQuota(
        String,
        String,
        u64,
        u64,
        oneshot::Sender<Result<u64, String>>,
    ),
    /// Give back unused quota (relay, day, n).
    GiveBack(String, String, u64),
    /// A rate's message started or was answered (see `throttle::Journal`).
    Mark(RateMark),
    /// Answered once everything sent before it is committed.
    Sync(Ack),
}

/// What the store task commits at once besides recipients' updates.
#[derive(Default)]
struct Batch {
    marks: Vec<RateMark>,
    takes: Vec<(QuotaTake, oneshot::Sender<Result<u64, String>>)>,
    synced: Vec<Ack>,
}

/// Addresses suppressed while the run goes on (the unsubscribe page,
/// `herald bounces`, `herald suppress add`, another sender, on any host):
/// read from the store's log of suppressions every [`SUPPRESSION_POLL`] by
/// the store's task, looked at each time a recipient is handed to a
/// connection. One lookup in a set per message: the send keeps its speed.
#[derive(Default)]
struct LateSuppressions {
    /// Any address at all: most runs see none, and skip the lock.
    any: AtomicBool,
    set: std::sync::Mutex<HashSet<String>>,
}

impl LateSuppressions {
    fn contains(&self, email: &str) -> bool {
        self.any.load(Ordering::Acquire)
            && self
                .set
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&email.to_lowercase())
    }
}

/// How often the store's task reads the suppressions added since its last
/// look: a suppression stops its address's mail within this and the
/// message in flight (the promise is 2 seconds).
const SUPPRESSION_POLL: Duration = Duration::from_millis(500);

/// A shared store's log numbers can become visible out of order (two
/// transactions take numbers, the later commits first): each look reads
/// again from the mark of this many looks back (5 s), and the set drops
/// what it has already.
const SUPPRESSION_LOOKBACK: usize = 10;

/// What the store's task tells the run: the store cannot record (the run
/// stops at once).
type Faults = mpsc::UnboundedSender<String>;

/// The store's task: applies updates in batches, one commit per batch
/// (group commit: what arrives during a commit goes into the next one),
/// and every [`SUPPRESSION_POLL`] reads the suppressions added since.
/// Each store call runs on tokio's blocking pool, which also tells a
/// paused test clock that work is under way.
async fn store_task(
    mut store: Box<dyn Store>,
    campaign: String,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    resend_unknown: bool,
    (mark, late): (i64, Arc<LateSuppressions>),
    faults: Faults,
) -> Box<dyn Store> {
    let campaign = Arc::new(campaign);
    let mut pending: Vec<(Update, Option<Ack>)> = Vec::new();
    let mut marks: VecDeque<i64> = VecDeque::from([mark]);
    let mut batch = Batch::default();
    let mut poll = tokio::time::interval(SUPPRESSION_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let first = tokio::select! {
            // The look first: under a steady stream of commands it would
            // otherwise never come.
            biased;
            _ = poll.tick() => {
                store = watch_suppressions(store, &mut marks, &late, &faults).await;
                continue;
            }
            cmd = rx.recv() => match cmd {
                Some(cmd) => cmd,
                None => break,
            },
        };
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Cmd::Apply(u, ack) => pending.push((u, ack)),
                Cmd::Mark(m) => batch.marks.push(m),
                Cmd::Sync(ack) => batch.synced.push(ack),
                Cmd::Queue(after, limit, reply) => {
                    store = flush(store, &campaign, &mut pending, &mut batch, &faults).await;
                    let c = Arc::clone(&campaign);
                    let (back, rows) = blocking(store, move |s| {
                        s.queue(&c, after, limit, resend_unknown)
                            .map_err(|e| e.to_string())
                    })
                    .await;
                    store = back;
                    let _ = reply.send(rows);
                }
                // In the group commit: quota is taken a message at a time
                // (a killed run loses at most what its connections held)
                // without a disk flush of its own per message.
                Cmd::TakeQuota(relay, day, want, max, reply) => {
                    let take = QuotaTake {
                        relay,
                        day,
                        want,
                        max,
                    };
                    batch.takes.push((take, reply));
                }
                Cmd::GiveBack(relay, day, n) => {
                    let (back, given) =
                        blocking(store, move |s| s.give_back_quota(&relay, &day, n)).await;
                    store = back;
                    if let Err(e) = given {
                        // Only leaves the quota under-used today.
                        tracing::warn!("unused quota could not be given back ({e})");
                    }
                }
            }
            next = rx.try_recv().ok();
        }
        store = flush(store, &campaign, &mut pending, &mut batch, &faults).await;
    }
    store
}

/// Reads the suppressions added since the last looks into `late`.
async fn watch_suppressions(
    store: Box<dyn Store>,
    marks: &mut VecDeque<i64>,
    late: &Arc<LateSuppressions>,
    faults: &Faults,
) -> Box<dyn Store> {
    let from = *marks.front().expect("never empty");
    let (store, rows) = blocking(store, move |s| s.suppressed_after(from)).await;
    match rows {
        Ok(rows) => {
            let last = rows.last().map_or(from, |(id, _)| *id);
            let latest = (*marks.back().expect("never empty")).max(last);
            let mut set = late.set.lock().unwrap_or_else(|p| p.into_inner());
            let mut new = 0;
            for (_, email) in rows {
                new += usize::from(set.insert(email));
            }
            if new > 0 {
                late.any.store(true, Ordering::Release);
                tracing::info!(
                    "{new} address(es) suppressed during the send (unsubscribed, bounced or added by hand): \
                     they are not mailed"
                );
            }
            marks.push_back(latest);
            while marks.len() > SUPPRESSION_LOOKBACK {
                marks.pop_front();
            }
        }
        Err(e) => {
            // Without the list, an unsubscribe could be mailed: stop.
            let _ = faults.send(format!(
                "the suppression list cannot be read ({e}); nothing more is sent"
            ));
        }
    }
    store
}

async fn flush(
    store: Box<dyn Store>,
    campaign: &Arc<String>,
    pending: &mut Vec<(Update, Option<Ack>)>,
    batch: &mut Batch,
    faults: &Faults,
) -> Box<dyn Store> {
    let Batch {
        marks,
        takes,
        synced,
    } = std::mem::take(batch);
    if pending.is_empty() && marks.is_empty() && takes.is_empty() {
        for ack in synced {
            let _ = ack.send(Ok(()));
        }
        return store;
    }
    let updates: Vec<Update> = pending.iter().map(|(u, _)| u.clone()).collect();
    let wanted: Vec<QuotaTake> = takes.iter().map(|(t, _)| t.clone()).collect();
    let c = Arc::clone(campaign);
    let (store, result) = blocking(store, move |s| {
        s.commit_batch(&c, &updates, &marks, &wanted)
            .map_err(|e| e.to_string())
    })
    .await;
    if let Err(e) = &result {
        // Nothing may go out that is not recorded: the run stops now,
        // whether or not someone waits for this commit.
        let _ = faults.send(format!(
            "the journal cannot record the send ({e}); nothing more is sent"
        ));
    }
    let done = result.as_ref().map(|_| ()).map_err(Clone::clone);
    for (_, ack) in pending.drain(..) {
        if let Some(ack) = ack {
            let _ = ack.send(done.clone());
        }
    }
    for ack in synced {
        let _ = ack.send(done.clone());
    }
    for (i, (_, reply)) in takes.into_iter().enumerate() {
        let got = match &result {
            Ok(got) => Ok(got.get(i).copied().unwrap_or(0)),
            Err(e) => Err(e.clone()),
        };
        let _ = reply.send(got);
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

/// One relay's own state: its throttle, its health, its quota, its
/// workers' mailer. A relay that fails is paused alone; the others carry on.
struct RelayState<M: Mailer> {
    name: String,
    mailer: M,
    connections: usize,
    /// 1 / weight: how far a message moves this relay along in the
    /// weighted share (stride scheduling).
    stride: f64,
    limiter: Mutex<Limiter>,
    /// Its rate across every sender, when the store is shared.
    gate: Option<Arc<dyn RateGate>>,
    health: std::sync::Mutex<Health>,
    quota: Option<Quota>,
    quota_day: Mutex<QuotaDay>,
    /// A message of its quota came back or was used.
    quota_settled: Notify,
    /// Its quota for the day is spent: its workers have stopped.
    exhausted: AtomicBool,
    /// Its settings do not work (a refused password, a bad certificate):
    /// set aside for the run, with why.
    set_aside: std::sync::Mutex<Option<String>>,
    /// It answered again after failing: its workers waiting out its
    /// pause go at once.
    came_back: Notify,
}

/// What a run holds of a relay's quota for one of the relay's days.
#[derive(Default)]
struct QuotaDay {
    day: Option<jiff::civil::Date>,
    /// Taken from the store and not used yet.
    allowance: u64,
    /// The store had no more for this day.
    spent: bool,
    /// Taken by a worker for a message not settled yet: it may come back
    /// (the message never reached the relay), so the day is spent only
    /// when none is out.
    out: u64,
}

/// Messages of a relay's quota taken from the store at a time: one, in the
/// store task's group commit, so a run that dies loses no more of the
/// day's quota than the messages its connections held.
const QUOTA_BLOCK: u64 = 1;

/// One domain limit's state, shared by every relay's workers.
struct DomainState {
    limiter: std::sync::Mutex<Limiter>,
    connections: Option<usize>,
    /// Messages to these domains in a worker's hands now.
    in_flight: AtomicUsize,
    /// Its rate across every sender, when the store is shared.
    gate: Option<Arc<dyn RateGate>>,
}

struct Shared<M: Mailer> {
    /// Every relay of the run; the first is the plan's `mailer`.
    relays: Vec<RelayState<M>>,
    domains: Vec<DomainState>,
    /// Recipient domain (lower-case) to its index in `domains`.
    domain_of: HashMap<String, usize>,
    /// A domain limit has room again (a message to it was answered).
    domain_freed: Notify,
    settings: Settings,
    store: mpsc::UnboundedSender<Cmd>,
    progress: Arc<Progress>,
    stop: AtomicBool,
    /// The send window closed (and `stop` was raised for that reason).
    window_closed: AtomicBool,
    stopped: Notify,
    fatal: std::sync::Mutex<Option<String>>,
    broken: std::sync::Mutex<Option<String>>,
    relay_down: std::sync::Mutex<Option<String>>,
    quota_spent: std::sync::Mutex<Option<(jiff::Timestamp, String)>>,
    /// Recipients waiting to be tried again; they come back through `retries`.
    waiting: AtomicU64,
    /// Jobs in a worker's hands (taken, not yet settled).
    in_flight: AtomicU64,
    /// The last job in a worker's hands was settled: the distributor looks
    /// whether the run is through (the workers may all be waiting for a
    /// message they asked for ahead, so no new request would wake it).
    all_settled: Notify,
    retries: mpsc::UnboundedSender<Job<M::Payload>>,
    /// Addresses suppressed since the run began.
    late: Arc<LateSuppressions>,
    /// Everyone is settled: nothing more will be handed out, so a worker
    /// waiting out a pause or a rate slot ends now.
    over: AtomicBool,
}

/// How a relay has been doing lately.
#[derive(Default)]
struct Health {
    /// Relay-level failures since the last success.
    failures: u32,
    failing_since: Option<Instant>,
    /// It has done nothing but fail for `relay_down_after`; it is still
    /// tried again after each pause, and a success makes it up again.
    down: bool,
    /// Its workers wait until then after a failure (growing pauses)...
    paused_until: Option<Instant>,
    /// ...except one of them, which tries again at this moment (every
    /// [`RELAY_PROBE`]): a relay that is back is used again within that,
    /// however long the pause, and a relay that is down gets one
    /// connection a second, not one per worker.
    next_probe: Option<Instant>,
}

/// How often one worker tries a paused relay again.
const RELAY_PROBE: Duration = Duration::from_secs(1);

/// Pauses after relay-level failures: short enough to notice a relay that
/// comes back, long enough not to hammer one that is down.
const RELAY_BACKOFF_MIN: Duration = Duration::from_secs(1);
const RELAY_BACKOFF_MAX: Duration = Duration::from_secs(15);

impl<M: Mailer> Shared<M> {
    fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.stopped.notify_waiters();
    }

    /// Everyone is settled: workers waiting for their relay end now rather
    /// than wait out its pause.
    fn finish(&self) {
        self.over.store(true, Ordering::SeqCst);
        self.stopped.notify_waiters();
    }

    fn over(&self) -> bool {
        self.over.load(Ordering::SeqCst)
    }

    /// Relay `r` is paused: by its rate's batch pause, a "slow down", or
    /// its failures.
    async fn paused(&self, r: usize) -> bool {
        let relay = &self.relays[r];
        let failing = relay
            .health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .paused_until
            .is_some_and(|at| at > Instant::now());
        failing || relay.limiter.lock().await.paused_until().is_some()
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

    /// A job left a worker's hands (settled, or handed back).
    fn job_settled(&self) {
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.all_settled.notify_one();
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn is_down(&self, r: usize) -> bool {
        self.relays[r]
            .health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .down
    }

    /// Whether a relay other than `r` can still carry messages this run.
    fn another_usable(&self, r: usize) -> bool {
        (0..self.relays.len()).any(|o| {
            o != r
                && !self.is_down(o)
                && !self.relays[o].exhausted.load(Ordering::SeqCst)
                && self.setting_fails(o).is_none()
        })
    }

    fn setting_fails(&self, r: usize) -> Option<String> {
        self.relays[r]
            .set_aside
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Relay `r`'s settings do not work: it takes no more messages this
    /// run. True when that leaves no relay (the run stops, as the single
    /// relay's would).
    fn set_aside(&self, r: usize, why: &str) -> bool {
        let first = self.relays[r]
            .set_aside
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(why.to_string())
            .is_none();
        if first {
            tracing::error!(
                "the relay {} cannot be used: {why}; it takes no more messages this run and the others \
                 carry on (fix its settings before the next run)",
                self.relays[r].name
            );
        }
        let left = (0..self.relays.len()).any(|o| self.setting_fails(o).is_none());
        if !left {
            return true;
        }
        self.stop_if_no_relay_left(r, why);
        false
    }

    /// When no relay can carry anything more (each is down, has spent its
    /// quota for the day or has settings that do not work), stops the run
    /// and says why; true if so.
    fn stop_if_no_relay_left(&self, last: usize, why: &str) -> bool {
        let usable = (0..self.relays.len()).any(|o| {
            !self.is_down(o)
                && !self.relays[o].exhausted.load(Ordering::SeqCst)
                && self.setting_fails(o).is_none()
        });
        if usable {
            return false;
        }
        // A relay whose settings are wrong needs the person first.
        if let Some(why) = (0..self.relays.len()).find_map(|o| {
            self.setting_fails(o)
                .map(|w| format!("the relay {}: {w}", self.relays[o].name))
        }) {
            self.fail(why);
            return true;
        }
        let any_down = (0..self.relays.len()).any(|o| self.is_down(o));
        if any_down {
            let why = if self.relays.len() == 1 {
                why.to_string()
            } else if self
                .relays
                .iter()
                .any(|o| o.exhausted.load(Ordering::SeqCst))
            {
                format!(
                    "every relay is down or has used its daily quota; the last, {}: {why}",
                    self.relays[last].name
                )
            } else {
                format!(
                    "every relay is down; the last, {}: {why}",
                    self.relays[last].name
                )
            };
            self.relay_down
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(why);
        } else {
            let now = crate::clock::now();
            let mut frees_at = jiff::Timestamp::MAX;
            let mut detail = Vec::new();
            for relay in &self.relays {
                let Some(q) = &relay.quota else { continue };
                let today = now.to_zoned(q.zone.clone()).date();
                let next = today
                    .tomorrow()
                    .ok()
                    .and_then(|d| d.to_zoned(q.zone.clone()).ok())
                    .map_or(jiff::Timestamp::MAX, |z| z.timestamp());
                frees_at = frees_at.min(next);
                detail.push(format!(
                    "{}: {} a day, spent for {today} ({})",
                    relay.name, q.max_per_day, q.zone_name
                ));
            }
            self.quota_spent
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert((frees_at, detail.join("; ")));
        }
        self.request_stop();
        true
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
            if self.stop_if_no_relay_left(r, why) {
                return true;
            }
        }
        let pause = if slow_down {
            relay.limiter.lock().await.slow_down()
        } else {
            let pause =
                (RELAY_BACKOFF_MIN * 2u32.saturating_pow(failures - 1)).min(RELAY_BACKOFF_MAX);
            let mut h = relay.health.lock().unwrap_or_else(|p| p.into_inner());
            let until = now + pause;
            h.paused_until = Some(h.paused_until.map_or(until, |at| at.max(until)));
            h.next_probe = Some(now + RELAY_PROBE.min(pause));
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
            // Its other workers stop waiting out the pause.
            relay.came_back.notify_waiters();
        }
    }

    /// Waits until relay `r` may be used (after a pause); false when the
    /// run is stopping or over meanwhile. During a pause after failures,
    /// one worker a [`RELAY_PROBE`] goes ahead to see whether it is back.
    async fn relay_open(&self, r: usize) -> bool {
        let relay = &self.relays[r];
        loop {
            if self.stopping() || self.over() {
                return false;
            }
            let now = Instant::now();
            let batch = relay.limiter.lock().await.paused_until();
            let (failing, probe) = {
                let mut h = relay.health.lock().unwrap_or_else(|p| p.into_inner());
                match h.paused_until.filter(|at| *at > now) {
                    None => (None, None),
                    Some(until) => match h.next_probe {
                        Some(p) if p <= now && batch.is_none() => {
                            // This worker is the probe; the next in a while.
                            h.next_probe = Some(now + RELAY_PROBE);
                            return true;
                        }
                        p => (Some(until), p),
                    },
                }
            };
            let Some(at) = [batch, failing, probe].into_iter().flatten().min() else {
                return true;
            };
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = relay.came_back.notified() => {}
                _ = self.stopped.notified() => {}
            }
        }
    }

    /// One message of relay `r`'s daily quota for its next message; false
    /// when the day's quota is spent (the relay takes nothing more this
    /// run), the run stops, or the store cannot say.
    async fn quota_take(&self, r: usize) -> bool {
        let relay = &self.relays[r];
        let Some(q) = &relay.quota else { return true };
        loop {
            let mut st = relay.quota_day.lock().await;
            let today = crate::clock::now().to_zoned(q.zone.clone()).date();
            if st.day != Some(today) {
                // A new day at the relay: what is left of the old one goes
                // back (what is out stays counted: it may have been sent).
                if let Some(old) = st.day
                    && st.allowance > 0
                {
                    let _ = self.store.send(Cmd::GiveBack(
                        relay.name.clone(),
                        old.to_string(),
                        st.allowance,
                    ));
                }
                *st = QuotaDay {
                    day: Some(today),
                    ..QuotaDay::default()
                };
            }
            if st.allowance == 0 && !st.spent {
                let (tx, rx) = oneshot::channel();
                let want = QUOTA_BLOCK.min(q.max_per_day);
                let asked = Cmd::TakeQuota(
                    relay.name.clone(),
                    today.to_string(),
                    want,
                    q.max_per_day,
                    tx,
                );
                let got = match self.store.send(asked) {
                    Ok(()) => rx
                        .await
                        .unwrap_or_else(|_| Err("the journal stopped".into())),
                    Err(_) => Err("the journal stopped".into()),
                };
                match got {
                    Ok(0) => st.spent = true,
                    Ok(n) => st.allowance = n,
                    Err(e) => {
                        drop(st);
                        self.broke(format!(
                            "the daily quota of the relay {} could not be read ({e})",
                            relay.name
                        ));
                        return false;
                    }
                }
            }
            if st.allowance > 0 {
                st.allowance -= 1;
                st.out += 1;
                return true;
            }
            if st.out > 0 {
                // Spent in the store, but a message out may yet come back
                // unsent: wait for it rather than leave it unused.
                drop(st);
                tokio::select! {
                    _ = relay.quota_settled.notified() => continue,
                    _ = self.stopped.notified() => return false,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
            drop(st);
            if !relay.exhausted.swap(true, Ordering::SeqCst) {
                tracing::warn!(
                    "the relay {} has used its quota of {} messages for today; the other relays carry on",
                    relay.name,
                    q.max_per_day
                );
                self.stop_if_no_relay_left(r, "daily quota used");
            }
            return false;
        }
    }

    /// The message of relay `r`'s quota a worker took is settled: used
    /// (`reached`: the relay saw it) or back in the run's allowance.
    async fn quota_settle(&self, r: usize, reached: bool) {
        let relay = &self.relays[r];
        let Some(q) = &relay.quota else { return };
        let mut st = relay.quota_day.lock().await;
        let today = crate::clock::now().to_zoned(q.zone.clone()).date();
        // One of an earlier day stays counted there.
        if st.day == Some(today) {
            st.out = st.out.saturating_sub(1);
            if !reached {
                st.allowance += 1;
            }
        }
        drop(st);
        relay.quota_settled.notify_waiters();
    }

    /// Gives back to the store what the run took of each relay's quota and
    /// did not use.
    async fn give_back_quotas(&self) {
        for relay in &self.relays {
            let mut st = relay.quota_day.lock().await;
            if let Some(day) = st.day
                && st.allowance > 0
            {
                let _ = self.store.send(Cmd::GiveBack(
                    relay.name.clone(),
                    day.to_string(),
                    st.allowance,
                ));
                st.allowance = 0;
            }
        }
    }

    /// A slot in the job's domain limit, if it has one and there is room
    /// now; false when it must wait.
    fn admit(&self, job: &mut Job<M::Payload>) -> bool {
        let Some(g) = job.group else { return true };
        if job.domain_slot.is_some() {
            return true;
        }
        let d = &self.domains[g];
        if d.connections
            .is_some_and(|max| d.in_flight.load(Ordering::SeqCst) >= max)
        {
            return false;
        }
        let taken = d
            .limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .try_take();
        match taken {
            Ok(slot) => {
                d.in_flight.fetch_add(1, Ordering::SeqCst);
                job.domain_slot = Some(slot);
                true
            }
            Err(_) => false,
        }
    }

    /// When a domain limit that now has no room may have room again.
    fn domain_opens(&self, g: usize) -> Option<Instant> {
        let d = &self.domains[g];
        if d.connections
            .is_some_and(|max| d.in_flight.load(Ordering::SeqCst) >= max)
        {
            // A message answered wakes the distributor (`domain_freed`).
            return None;
        }
        Some(
            d.limiter
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .next_free(),
        )
    }

    /// The job's message was answered (or handed back): its domain slot
    /// starts its window now and its place in flight is free.
    fn release_domain(&self, job: &mut Job<M::Payload>) {
        let (Some(g), Some(slot)) = (job.group, job.domain_slot.take()) else {
            return;
        };
        let d = &self.domains[g];
        d.limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .answered(slot);
        d.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.domain_freed.notify_one();
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
    let first = Lane {
        name: settings
            .relay_name
            .clone()
            .unwrap_or_else(|| mailer.describe()),
        mailer,
        rate: settings.rate,
        connections: settings.connections,
        weight: settings.relay_weight,
        quota: settings.relay_quota.clone(),
    };
    let lanes: Vec<Lane<M>> = std::iter::once(first).chain(others).collect();
    // With a shared store, every relay's rate and every domain's limit
    // hold across all the senders: each has a gate in the store, by name.
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
    let (store, gates) = blocking(store, move |s| {
        let gates = keys
            .into_iter()
            .map(|(key, rate)| match rate {
                Some(rate) => {
                    let gate = s.rate_gate(&key, rate).map_err(|e| e.to_string())?;
                    let history = rate_history(s, gate.is_none(), &key, rate)?;
                    Ok((gate, history))
                }
                None => Ok((None, None)),
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(|e| format!("the shared rate cannot be set up ({e})"))?;
        let mark = match given_mark {
            Some(m) => m,
            None => s
                .suppression_mark()
                .map_err(|e| format!("the suppression list cannot be read ({e})"))?,
        };
        Ok::<_, String>((gates, mark))
    })
    .await;
    let (mut gates, mark) = match gates {
        Ok((g, mark)) => (g.into_iter(), mark),
        Err(e) => {
            let outcome = Outcome {
                handed_over: 0,
                stop: Stop::Broken(e),
            };
            return (outcome, store);
        }
    };
    let (tx, rx) = mpsc::unbounded_channel();
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
                &tx,
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
                limiter: std::sync::Mutex::new(resumed(Limiter::new(d.rate, None), history, &tx)),
                connections: d.connections.map(|c| c.max(1)),
                in_flight: AtomicUsize::new(0),
                gate,
            }
        })
        .collect();
    let resend_unknown = settings.resend_unknown;
    let late = Arc::new(LateSuppressions::default());
    let (faults_tx, faults) = mpsc::unbounded_channel();
    let writer = tokio::spawn(store_task(
        store,
        campaign,
        rx,
        resend_unknown,
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
    // A recipient handed back for a retry just as the run stopped is
    // recorded by its own task, which may not have run yet: wait for it
    // (it ends as soon as it runs) before taking the store back.
    let mut shared = shared;
    let mut waited = Duration::ZERO;
    let Shared { store, .. } = loop {
        match Arc::try_unwrap(shared) {
            Ok(s) => break s,
            Err(back) if waited < Duration::from_secs(30) => {
                shared = back;
                tokio::time::sleep(Duration::from_millis(1)).await;
                waited += Duration::from_millis(1);
            }
            Err(_) => panic!("a task outlived the run"),
        }
    };
    drop(store);
    let store = writer.await.expect("the store task does not panic");
    (outcome, store)
}

/// What the journal kept of a rate's window, when this process's throttle
/// is the whole rate (no shared gate): the next run starts from it.
fn rate_history(
    s: &mut dyn Store,
    own: bool,
    key: &str,
    rate: Rate,
) -> Result<Option<(String, Vec<f64>)>, String> {
    if !own {
        return Ok(None);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let times = s
        .rate_history(key, now, u64::from(rate.max))
        .map_err(|e| e.to_string())?;
    Ok(Some((key.to_string(), times)))
}

/// `limiter`, starting from the window the journal kept and writing its
/// messages' times there (in the store task's group commit).
fn resumed(
    mut limiter: Limiter,
    history: Option<(String, Vec<f64>)>,
    store: &mpsc::UnboundedSender<Cmd>,
) -> Limiter {
    if let Some((key, times)) = history {
        let store = store.clone();
        let record = Arc::new(move |m: RateMark| {
            let _ = store.send(Cmd::Mark(m));
        });
        limiter.resume(throttle::Journal::new(key, record), &times);
    }
    limiter
}

async fn dispatch<M: Mailer>(
    shared: Arc<Shared<M>>,
    composer: Arc<Composer>,
    columns: Arc<Vec<String>>,
    retries: mpsc::UnboundedReceiver<Job<M::Payload>>,
    (interrupt, mut faults): (Arc<AtomicBool>, mpsc::UnboundedReceiver<String>),
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
            // The store cannot record: the run stops at once, as broken.
            let store_failed = async {
                match faults.recv().await {
                    Some(why) => why,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = signalled => {}
                _ = raised => {}
                why = store_failed => {
                    tracing::error!("{why}");
                    shared.broke(why);
                    return;
                }
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
    // Each relay its own workers, one per connection. A worker asks for a
    // message only when its relay can send one now (not paused, quota
    // left, a slot in its rate), and the distributor gives each message to
    // one of the relays asking, by weight, once its domain has room.
    let (want_tx, want_rx) = mpsc::unbounded_channel();
    let workers: Vec<_> = (0..shared.relays.len())
        .flat_map(|r| (0..shared.relays[r].connections).map(move |_| r))
        .map(|r| tokio::spawn(worker(Arc::clone(&shared), r, want_tx.clone())))
        .collect();
    drop(want_tx);
    let distributor = tokio::spawn(distribute(Arc::clone(&shared), job_rx, retries, want_rx));
    let builder = {
        let shared = Arc::clone(&shared);
        tokio::spawn(
            async move { build_jobs(Arc::clone(&shared), composer, columns, job_tx).await },
        )
    };
    for w in workers {
        let _ = w.await;
    }
    let _ = distributor.await;
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
    } else if let Some((frees_at, detail)) = shared
        .quota_spent
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
    {
        stop = Stop::QuotaSpent { frees_at, detail };
    } else if shared.window_closed.load(Ordering::SeqCst) {
        stop = Stop::WindowClosed;
    } else if shared.stopping() {
        stop = Stop::Interrupted;
    }
    Outcome { handed_over, stop }
}

/// Why a recipient suppressed during the run was not mailed (`herald status`).
pub const LATE_SUPPRESSION: &str = "suppressed during the send (unsubscribed, bounced or added to the suppression list); not mailed";

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
                    build_all(chunk, |row| build_one(&shared, &composer, &columns, row))
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
            let group = row
                .email
                .rsplit_once('@')
                .and_then(|(_, d)| shared.domain_of.get(&d.to_ascii_lowercase()))
                .copied();
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
                group,
                domain_slot: None,
                unanswered: false,
                avoid: None,
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

/// A worker's request for its next message: its relay can send one now.
struct Want<P> {
    relay: usize,
    reply: oneshot::Sender<Job<P>>,
}

/// Asks the distributor for a message for relay `r`; `None` when it has
/// ended (nothing more to send).
fn ask<P>(wants: &mpsc::UnboundedSender<Want<P>>, r: usize) -> Option<oneshot::Receiver<Job<P>>> {
    let (tx, rx) = oneshot::channel();
    wants
        .send(Want {
            relay: r,
            reply: tx,
        })
        .ok()
        .map(|()| rx)
}

async fn worker<M: Mailer>(
    shared: Arc<Shared<M>>,
    r: usize,
    wants: mpsc::UnboundedSender<Want<M::Payload>>,
) {
    let relay = &shared.relays[r];
    let mut conn: Option<M::Conn> = None;
    // A relay with no rate, batches, quota or shared gate asks for its
    // next message while it sends the current one: the distributor's
    // hand-over then overlaps the relay's answer instead of following it
    // (without this, one relay sent measurably slower than the engine
    // before the distributor). A limited relay asks only once it can send.
    let ahead_ok =
        relay.quota.is_none() && relay.gate.is_none() && relay.limiter.lock().await.unlimited();
    // (The loop only ends with nothing asked ahead: it is taken first.)
    let mut ahead: Option<(oneshot::Receiver<Job<M::Payload>>, u64)> = None;
    loop {
        let (rx, slot, early) = match ahead.take() {
            Some((rx, slot)) => (rx, slot, true),
            None => {
                // A paused relay asks for no message, so the others get it.
                if !shared.relay_open(r).await || shared.setting_fails(r).is_some() {
                    break;
                }
                if !shared.quota_take(r).await {
                    break;
                }
                // The relay's rate slot comes before the message, so a
                // message goes only to a relay that can send it now.
                let slot = tokio::select! {
                    slot = throttle::take(&relay.limiter) => slot,
                    _ = shared.stopped.notified() => {
                        shared.quota_settle(r, false).await;
                        break;
                    }
                };
                let Some(rx) = ask(&wants, r) else {
                    relay.limiter.lock().await.answered(slot);
                    shared.quota_settle(r, false).await;
                    break;
                };
                (rx, slot, false)
            }
        };
        let Ok(mut job) = rx.await else {
            // Nothing more to send, or the run is stopping.
            relay.limiter.lock().await.answered(slot);
            shared.quota_settle(r, false).await;
            break;
        };
        if early {
            // Asked for before the last message was answered: sent only
            // if the relay was not paused or set aside since and the run
            // goes on; else the message goes back, and this worker waits
            // for the relay like any other.
            let paused = shared.paused(r).await;
            if paused || shared.stopping() || shared.setting_fails(r).is_some() {
                hand_back(&shared, job);
                relay.limiter.lock().await.answered(slot);
                continue;
            }
        }
        if ahead_ok && !shared.stopping() {
            let next = relay.limiter.lock().await.try_take().ok();
            if let Some(next) = next {
                match ask(&wants, r) {
                    Some(rx) => ahead = Some((rx, next)),
                    None => relay.limiter.lock().await.answered(next),
                }
            }
        }
        let mut slot = Some(slot);
        let delivered = deliver(&shared, r, &mut conn, &mut job, &mut slot).await;
        if let Some(slot) = slot {
            relay.limiter.lock().await.answered(slot);
        }
        // Only a message the relay saw counts against its quota.
        let reached =
            matches!(delivered, Delivered::Done(_) | Delivered::Retry(_)) || job.unanswered;
        shared.quota_settle(r, reached).await;
        shared.release_domain(&mut job);
        settle(&shared, job, delivered);
        // After `settle`: a job handed back is counted in `waiting` by now,
        // so the distributor never sees nothing in flight and nothing
        // waiting while it is on its way back.
        shared.job_settled();
    }
    if let Some(c) = conn {
        let _ = tokio::time::timeout(Duration::from_secs(5), relay.mailer.quit(c)).await;
    }
}

/// A message a worker asked for ahead and will not send: back in line
/// for the next relay that asks, or, at a stop, recorded as `stopped` says
/// (nothing happened to a first attempt).
fn hand_back<M: Mailer>(shared: &Arc<Shared<M>>, mut job: Job<M::Payload>) {
    shared.release_domain(&mut job);
    if !shared.stopping() {
        settle(shared, job, Delivered::Elsewhere);
    } else if let Delivered::Done(update) = stopped(&job) {
        shared.progress.deferred.fetch_add(1, Ordering::Relaxed);
        let _ = shared.store.send(Cmd::Apply(update, None));
    }
    shared.job_settled();
}

/// Messages set aside at most while their domains have no room: beyond
/// that the distributor reads no further into the list until one goes,
/// which bounds the memory that built messages take.
const PARKED_MAX: usize = 512;

/// Hands each message to a relay that asked for one: retries whose time
/// has come and the builder's messages, each once its domain limit has
/// room (the others go on meanwhile), to the asking relay furthest behind
/// its weighted share. Ends when everything is done or the run stops;
/// then every worker waiting for a message is told there is none.
async fn distribute<M: Mailer>(
    shared: Arc<Shared<M>>,
    mut built: mpsc::Receiver<Job<M::Payload>>,
    mut retries: mpsc::UnboundedReceiver<Job<M::Payload>>,
    mut wants: mpsc::UnboundedReceiver<Want<M::Payload>>,
) {
    let n = shared.relays.len();
    let mut asking: Vec<VecDeque<oneshot::Sender<Job<M::Payload>>>> =
        (0..n).map(|_| VecDeque::new()).collect();
    // Stride scheduling: each relay's place in the weighted share; the
    // one furthest behind gets the next message.
    let mut pass = vec![0f64; n];
    let mut now_pass = 0f64;
    // Jobs read but not handed out yet (a retry, or one whose relay
    // dropped it), then jobs whose domain has no room, oldest first.
    let mut ready: VecDeque<Job<M::Payload>> = VecDeque::new();
    let mut parked: VecDeque<Job<M::Payload>> = VecDeque::new();
    // Retries waiting for a relay other than the one that failed them.
    let mut elsewhere: VecDeque<Job<M::Payload>> = VecDeque::new();
    let mut builder_open = true;
    let mut wants_open = true;
    let tick = tokio::time::sleep(Duration::from_millis(100));
    tokio::pin!(tick);
    let ask = |w: Want<M::Payload>,
               asking: &mut Vec<VecDeque<oneshot::Sender<Job<M::Payload>>>>,
               pass: &mut Vec<f64>,
               now_pass: f64| {
        // A relay that was not asking does not bank a share meanwhile.
        if asking[w.relay].is_empty() {
            pass[w.relay] = pass[w.relay].max(now_pass);
        }
        asking[w.relay].push_back(w.reply);
    };
    loop {
        if shared.stopping() {
            break;
        }
        while let Ok(w) = wants.try_recv() {
            ask(w, &mut asking, &mut pass, now_pass);
        }
        // A retry waiting for a relay other than the one that failed it
        // goes back in line once such a relay asks, or none is left.
        for _ in 0..elsewhere.len() {
            let job = elsewhere.pop_front().expect("counted");
            let avoid = job.avoid.filter(|a| shared.another_usable(*a));
            if (0..n).any(|r| !asking[r].is_empty() && Some(r) != avoid) {
                ready.push_front(job);
            } else {
                elsewhere.push_back(job);
            }
        }
        // Hand out as much as can go now.
        loop {
            if asking.iter().all(|q| q.is_empty()) {
                break;
            }
            let job = next_admitted(
                &shared,
                &mut ready,
                &mut parked,
                &mut retries,
                &mut built,
                &mut builder_open,
            );
            let Some(mut job) = job else { break };
            // A recipient's retry goes to another relay than the one that
            // said "not now", while another can still carry messages.
            let avoid = job.avoid.filter(|a| shared.another_usable(*a));
            loop {
                let Some(r) = (0..n)
                    .filter(|r| !asking[*r].is_empty() && Some(*r) != avoid)
                    .min_by(|a, b| pass[*a].total_cmp(&pass[*b]))
                else {
                    if asking.iter().all(|q| q.is_empty()) {
                        // Every asking worker went away: keep it for later.
                        ready.push_front(job);
                    } else {
                        // Only the relay to avoid is asking: wait for
                        // another, without holding the domain's room.
                        shared.release_domain(&mut job);
                        elsewhere.push_back(job);
                    }
                    break;
                };
                let reply = asking[r].pop_front().expect("not empty");
                shared.in_flight.fetch_add(1, Ordering::SeqCst);
                match reply.send(job) {
                    Ok(()) => {
                        now_pass = pass[r];
                        pass[r] += shared.relays[r].stride;
                        break;
                    }
                    Err(back) => {
                        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
                        job = back;
                    }
                }
            }
        }
        // Done when nothing can come any more: the builder is through,
        // no job is waiting for its retry, set aside or in a worker's hands.
        if !builder_open
            && ready.is_empty()
            && parked.is_empty()
            && elsewhere.is_empty()
            && shared.waiting.load(Ordering::SeqCst) == 0
            && shared.in_flight.load(Ordering::SeqCst) == 0
        {
            // A retry may have arrived since; its sender queued it before
            // lowering `waiting`.
            match retries.try_recv() {
                Ok(job) => {
                    ready.push_back(job);
                    continue;
                }
                Err(_) => break,
            }
        }
        // Every worker has stopped (each relay spent or the run stopping).
        if !wants_open && asking.iter().all(|q| q.is_empty()) {
            break;
        }
        let someone_asks = asking.iter().any(|q| !q.is_empty());
        // The first moment a set-aside job's domain may have room.
        let mut groups: Vec<usize> = parked.iter().filter_map(|j| j.group).collect();
        groups.sort_unstable();
        groups.dedup();
        let opens = groups
            .into_iter()
            .filter_map(|g| shared.domain_opens(g))
            .min();
        // One timer, moved only when it went off or a domain opens sooner:
        // a new one per message costs more than the rest of this loop.
        if tick.is_elapsed() {
            tick.as_mut()
                .reset(Instant::now() + Duration::from_millis(100));
        }
        if let Some(at) = opens
            && at < tick.deadline()
        {
            tick.as_mut().reset(at);
        }
        tokio::select! {
            w = wants.recv(), if wants_open => match w {
                Some(w) => ask(w, &mut asking, &mut pass, now_pass),
                None => wants_open = false,
            },
            // Also when nobody asks (at most one job waits in `ready`): a
            // rate-held worker asks only once its slot comes, and without
            // this the end of the list was noticed only then, up to a
            // whole rate window after the last message was answered.
            job = built.recv(), if builder_open && ready.is_empty()
                && parked.len() < PARKED_MAX => match job {
                Some(job) => ready.push_back(job),
                None => builder_open = false,
            },
            job = retries.recv(), if someone_asks => {
                if let Some(job) = job {
                    ready.push_back(job);
                }
            }
            _ = shared.domain_freed.notified(), if !parked.is_empty() => {}
            _ = shared.all_settled.notified() => {}
            // A stop, a retry that ended without coming back (the run
            // stopped), or a worker done, change things without a message:
            // look again, at least every tenth of a second.
            _ = &mut tick => {}
        }
    }
    // What was read and not handed out: a recipient who already had an
    // attempt is recorded deferred; the others stay as they were.
    while let Ok(job) = retries.try_recv() {
        ready.push_back(job);
    }
    for mut job in ready.into_iter().chain(parked).chain(elsewhere) {
        shared.release_domain(&mut job);
        if let Delivered::Done(update) = stopped(&job) {
            shared.progress.deferred.fetch_add(1, Ordering::Relaxed);
            let _ = shared.store.send(Cmd::Apply(update, None));
        }
    }
    // Dropping `asking` and `wants` tells every worker there is no more;
    // a worker waiting out its relay's pause is told too.
    shared.finish();
}

/// The next job that may go now: a set-aside one whose domain has room,
/// else a retry or the builder's next (set aside in turn while its domain
/// has no room).
fn next_admitted<M: Mailer>(
    shared: &Shared<M>,
    ready: &mut VecDeque<Job<M::Payload>>,
    parked: &mut VecDeque<Job<M::Payload>>,
    retries: &mut mpsc::UnboundedReceiver<Job<M::Payload>>,
    built: &mut mpsc::Receiver<Job<M::Payload>>,
    builder_open: &mut bool,
) -> Option<Job<M::Payload>> {
    if !parked.is_empty() {
        // Each domain is asked once: after one of its jobs found no room,
        // the others of that domain would not either.
        let mut full: Vec<usize> = Vec::new();
        for i in 0..parked.len() {
            let g = parked[i].group.expect("only limited domains wait");
            if full.contains(&g) {
                continue;
            }
            if shared.admit(&mut parked[i]) {
                return parked.remove(i);
            }
            full.push(g);
        }
    }
    loop {
        let mut job = match ready.pop_front() {
            Some(job) => job,
            None => match retries.try_recv() {
                Ok(job) => job,
                Err(_) if *builder_open && parked.len() < PARKED_MAX => match built.try_recv() {
                    Ok(job) => job,
                    Err(mpsc::error::TryRecvError::Empty) => return None,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        *builder_open = false;
                        return None;
                    }
                },
                Err(_) => return None,
            },
        };
        if shared.admit(&mut job) {
            return Some(job);
        }
        parked.push_back(job);
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
        // Left out on their own wish, not a failure of the send.
        State::Skipped if update.reply.as_deref() == Some(LATE_SUPPRESSION) => 0,
        State::Sent => shared.progress.sent.fetch_add(1, Ordering::Relaxed),
        State::Failed | State::Skipped => shared.progress.failed.fetch_add(1, Ordering::Relaxed),
        _ => shared.progress.deferred.fetch_add(1, Ordering::Relaxed),
    };
    let _ = shared.store.send(Cmd::Apply(update, None));
}

/// Puts the recipient back in the queue at `at`, without holding a
/// connection meanwhile; if the run stops first, records them deferred.
fn retry_later<M: Mailer>(shared: &Arc<Shared<M>>, job: Job<M::Payload>, at: Instant) {
    shared.waiting.fetch_add(1, Ordering::SeqCst);
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        // Listening before looking at the flag: a stop raised before this
        // task first ran is seen by the look, one raised after wakes it.
        // (Otherwise a retry waiting minutes would hold up a stopped run.)
        let stop = shared.stopped.notified();
        tokio::pin!(stop);
        stop.as_mut().enable();
        if !shared.stopping() {
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = &mut stop => {}
            }
        }
        if shared.stopping() {
            if let Delivered::Done(update) = stopped(&job) {
                shared.progress.deferred.fetch_add(1, Ordering::Relaxed);
                let _ = shared.store.send(Cmd::Apply(update, None));
            }
        } else if let Err(e) = shared.retries.send(job) {
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
/// phase, or if its last attempt ended without an answer after the message
/// began (the relay may have it: it stays of unknown outcome, as after a
/// crash, and is not sent again unless asked); else deferred (the relay
/// answered "not now").
fn stopped<P>(job: &Job<P>) -> Delivered {
    if job.unanswered {
        return Delivered::Untouched;
    }
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

/// Whether a failure is the server's reply (`451 4.7.1 ...`) rather than
/// something that happened to the connection.
fn has_reply_code(reply: &str) -> bool {
    let b = reply.as_bytes();
    b.len() >= 3 && b[..3].iter().all(u8::is_ascii_digit) && matches!(b[0], b'4' | b'5')
}

/// One attempt at a message, and then some when the relay (not the
/// recipient) was the problem.
async fn deliver<M: Mailer>(
    shared: &Shared<M>,
    r: usize,
    conn: &mut Option<M::Conn>,
    job: &mut Job<M::Payload>,
    slot: &mut Option<u64>,
) -> Delivered {
    let settings = &shared.settings;
    let mut first = true;
    loop {
        // The worker's slot was given while the relay was open: a batch
        // pause that this very slot started must not hold it back. After a
        // failure, the relay's pause holds.
        if !std::mem::take(&mut first) && !shared.relay_open(r).await {
            return stopped(job);
        }
        // Suppressed since the run began (unsubscribed, bounced, added by
        // hand, here or on another host): not mailed, at this hand-over
        // or any later one.
        if shared.late.contains(&job.email) {
            return Delivered::Done(Update {
                seq: job.seq,
                state: State::Skipped,
                reply: Some(LATE_SUPPRESSION.into()),
                attempts: job.attempts as i64,
                suppress: None,
                relay: None,
            });
        }
        let failure = match attempt_once(shared, r, conn, job, slot).await {
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
                let why = format!("{} ({})", failure.reply, shared.relays[r].mailer.describe());
                // With other relays, a relay whose settings are wrong (a
                // refused password, a certificate that does not check out)
                // is set aside for the run and the others carry on; the
                // run stops only when none is left.
                if shared.relays.len() > 1 && !shared.set_aside(r, &why) {
                    if !job.gate.passed() {
                        return Delivered::Elsewhere;
                    }
                    job.last_reply = Some(failure.reply);
                    return stopped(job);
                }
                shared.fail(why);
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
                // No SMTP reply (a dropped connection, a timeout) after the
                // message began: the relay may have taken it.
                job.unanswered = !has_reply_code(&failure.reply);
                job.avoid = Some(r);
                job.attempts += 1;
                job.last_reply = Some(failure.reply);
                job.relay = Some(shared.relays[r].name.clone());
                if job.attempts >= settings.max_attempts || shared.stopping() {
                    if job.unanswered {
                        // Left of unknown outcome (`sending`), as `stopped` says.
                        return Delivered::Untouched;
                    }
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

/// A slot in a relay's or domain's rate shared with other senders (PostgreSQL):
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

/// Shared-rate slots of a message that was answered (or never sent).
/// Recorded after the answer, as the local throttle does; a failure here
/// only makes the other senders wait longer (the slot counts as answered
/// when this sender ends).
async fn answer_shared(held: Vec<(Arc<dyn RateGate>, i64)>) {
    if held.is_empty() {
        return;
    }
    let _ = tokio::task::spawn_blocking(move || {
        for (gate, id) in held {
            let _ = gate.answered(id);
        }
    })
    .await;
}

async fn attempt_once<M: Mailer>(
    shared: &Shared<M>,
    r: usize,
    conn: &mut Option<M::Conn>,
    job: &mut Job<M::Payload>,
    pre_slot: &mut Option<u64>,
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
    // The slot the worker took before asking for this message, or (after
    // a failure before the message, on the same relay) a new one.
    let slot = match pre_slot.take() {
        Some(slot) => slot,
        None => tokio::select! {
            slot = throttle::take(&relay.limiter) => slot,
            _ = shared.stopped.notified() => {
                return Err(super::Failure::transient("the run was stopped"));
            }
        },
    };
    // Other senders through a shared store: the relay's rate and the
    // domain's are kept across all of them too.
    let domain_gate = job.group.and_then(|g| shared.domains[g].gate.as_ref());
    let mut held: Vec<(Arc<dyn RateGate>, i64)> = Vec::new();
    for gate in relay.gate.iter().chain(domain_gate) {
        match take_shared(gate, &shared.stopped).await {
            Ok(id) => held.push((Arc::clone(gate), id)),
            Err(failure) => {
                relay.limiter.lock().await.answered(slot);
                answer_shared(held).await;
                return Err(failure);
            }
        }
    }
    // Rates across runs: the message's start is in the journal before the
    // message leaves (a first attempt's mark is committed with its
    // `sending` mark, which the Gate waits for; a retry waits here).
    let longest = timeout + Duration::from_secs(1);
    let mut journaled = {
        let mut l = relay.limiter.lock().await;
        l.started(slot, longest);
        l.journaled()
    };
    if let (Some(g), Some(ds)) = (job.group, job.domain_slot) {
        let mut l = shared.domains[g]
            .limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        l.started(ds, longest);
        journaled |= l.journaled();
    }
    if journaled && job.gate.passed() {
        let (tx, rx) = oneshot::channel();
        let _ = shared.store.send(Cmd::Sync(tx));
        if let Err(e) = rx
            .await
            .unwrap_or_else(|_| Err("the journal stopped".into()))
        {
            relay.limiter.lock().await.answered(slot);
            answer_shared(held).await;
            return Err(super::Failure::broken(format!(
                "the journal could not record the rate ({e})"
            )));
        }
    }
    let c = conn.as_mut().expect("connected above");
    let result =
        tokio::time::timeout(timeout, relay.mailer.send(c, &job.message, &mut job.gate)).await;
    relay.limiter.lock().await.answered(slot);
    answer_shared(held).await;
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
