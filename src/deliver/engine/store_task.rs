//! The store's task: one thread writes the store, committing what several
//! workers report at once (group commit), and reads the suppressions added
//! while the run goes on.

use super::*;
use crate::store::{Journal, QueuePlace};

pub(super) type Ack = oneshot::Sender<Result<(), JournalError>>;

pub(super) enum Cmd {
    Apply(Update, Option<Ack>),
    /// The next recipients not handed to this run yet (up to this many).
    Queue(i64, oneshot::Sender<Result<Vec<Row>, JournalError>>),
    /// Take up to `want` of a relay's quota for a day (relay, day, want, max).
    TakeQuota(
        String,
        String,
        u64,
        u64,
        oneshot::Sender<Result<u64, JournalError>>,
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
pub(super) struct Batch {
    pub(super) marks: Vec<RateMark>,
    pub(super) takes: Vec<(QuotaTake, oneshot::Sender<Result<u64, JournalError>>)>,
    pub(super) synced: Vec<Ack>,
}

/// Addresses suppressed while the run goes on (the unsubscribe page,
/// `herald bounces`, `herald suppress add`, another sender, on any host):
/// read from the store's log of suppressions every [`SUPPRESSION_POLL`] by
/// the store's task, looked at each time a recipient is handed to a
/// connection. One lookup in a set per message: the send keeps its speed.
#[derive(Default)]
pub(super) struct LateSuppressions {
    /// Any address at all: most runs see none, and skip the lock.
    pub(super) any: AtomicBool,
    pub(super) set: std::sync::Mutex<HashSet<String>>,
}

impl LateSuppressions {
    pub(super) fn contains(&self, email: &str) -> bool {
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
pub(super) const SUPPRESSION_POLL: Duration = Duration::from_millis(500);

/// A shared store's log numbers can become visible out of order (two
/// transactions take numbers, the later commits first): each look reads
/// again from the mark of this many looks back (5 s), and the set drops
/// what it has already.
pub(super) const SUPPRESSION_LOOKBACK: usize = 10;

/// What the store's task tells the run: the store cannot record (the run
/// stops at once).
pub(super) type Faults = mpsc::UnboundedSender<String>;

/// The store's task: applies updates in batches, one commit per batch
/// (group commit: what arrives during a commit goes into the next one),
/// and every [`SUPPRESSION_POLL`] reads the suppressions added since.
/// Each store call runs on tokio's blocking pool, which also tells a
/// paused test clock that work is under way. `local`: the run's messages
/// never leave the machine (a dry run), so nobody relies on an outcome
/// being committed the moment it is known: commits wait for [`LOCAL_BATCH`]
/// updates, for someone waiting on one, or for the run's end.
pub(super) async fn store_task(
    mut store: Box<dyn Store>,
    campaign: String,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    (resend_unknown, local): (bool, bool),
    (mark, late): (i64, Arc<LateSuppressions>),
    faults: Faults,
) -> Box<dyn Store> {
    let campaign = Arc::new(campaign);
    let mut pending: Vec<(Update, Option<Ack>)> = Vec::new();
    let mut marks: VecDeque<i64> = VecDeque::from([mark]);
    let mut batch = Batch::default();
    // Only this task asks for the queue: it keeps the run's place.
    let mut place = QueuePlace::new();
    let mut pace = store.is_shared().then(Pace::new);
    let mut claims = Claims {
        opening: store.claims_apart().map(tokio::task::spawn_blocking),
        idle: None,
        busy: None,
    };
    let mut hold = Hold::default();
    // Commands already waiting when the last commit ended (see `Hold`).
    let mut queued: usize = 0;
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
        let hold_until = tokio::time::Instant::now() + hold.time;
        let mut returned = 0;
        let mut turns = 0;
        while let Some(cmd) = next.take() {
            let was_queued = queued > 0;
            queued = queued.saturating_sub(1);
            match cmd {
                Cmd::Apply(u, ack) => {
                    if let Some(p) = &mut pace
                        && u.state != State::Sending
                    {
                        p.done += 1;
                    }
                    let back = usize::from(ack.is_some() && u.state == State::Sending);
                    returned += back;
                    if was_queued {
                        turns += back;
                    }
                    pending.push((u, ack));
                }
                Cmd::Mark(m) => batch.marks.push(m),
                Cmd::Sync(ack) => batch.synced.push(ack),
                Cmd::Queue(limit, reply) => {
                    // A claim sees every update sent before it was asked for.
                    store = flush(store, &campaign, &mut pending, &mut batch, &faults).await;
                    let limit = pace.as_mut().map_or(limit, |p| p.claim(limit));
                    match claims.ready(&mut place).await {
                        Some(journal) => {
                            let ask = (limit, resend_unknown);
                            claims.start(journal, &campaign, &mut place, ask, reply);
                        }
                        None => {
                            let rows;
                            (store, rows) =
                                next_rows(store, &campaign, &mut place, limit, resend_unknown)
                                    .await;
                            let _ = reply.send(rows);
                        }
                    }
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
            next = match rx.try_recv() {
                Ok(cmd) => Some(cmd),
                Err(_) if returned < hold.expect + turns => {
                    tokio::time::timeout_at(hold_until, rx.recv())
                        .await
                        .ok()
                        .flatten()
                }
                Err(_) => None,
            };
        }
        if local && !must_commit(&pending, &batch) {
            continue;
        }
        let released = pending
            .iter()
            .filter(|(u, ack)| ack.is_some() && u.state == State::Sending)
            .count();
        let started = tokio::time::Instant::now();
        store = flush(store, &campaign, &mut pending, &mut batch, &faults).await;
        hold = Hold::after(released, started.elapsed());
        queued = rx.len();
    }
    // The claim under way is in before the run ends: its sender then
    // gives back what it holds unused (see `Locks::lock`).
    claims.settle(&mut place).await;
    flush(store, &campaign, &mut pending, &mut batch, &faults).await
}

/// A claim's reply: the rows, or why there are none.
type Claimed = oneshot::Sender<Result<Vec<Row>, JournalError>>;

/// A shared store's claims on a connection of their own (see
/// [`Store::claims_apart`]): one at a time, each from the place the last
/// one left, answered from the blocking pool as soon as it is in, while
/// the store's task goes on committing the connections' marks. A claim
/// of 256 took 7 ms of a loaded machine, and every `sending` mark waited
/// for it when it ran between two commits.
struct Claims {
    /// The connection being opened; until it is, claims go through the store's.
    opening: Option<tokio::task::JoinHandle<crate::store::Result<Box<dyn Journal>>>>,
    idle: Option<Box<dyn Journal>>,
    /// The claim under way: gives the connection and the run's place back.
    busy: Option<tokio::task::JoinHandle<(Box<dyn Journal>, QueuePlace)>>,
}

impl Claims {
    /// The claims' own connection once the last claim is in (the run's
    /// place is then the one it left), or `None`: this claim goes through
    /// the store's connection.
    async fn ready(&mut self, place: &mut QueuePlace) -> Option<Box<dyn Journal>> {
        self.settle(place).await;
        if self.opening.as_ref().is_some_and(|o| o.is_finished()) {
            let opened = self.opening.take().expect("just looked");
            match opened.await.expect("connecting does not panic") {
                Ok(journal) => self.idle = Some(journal),
                Err(e) => tracing::debug!("claims go through the store's connection ({e})"),
            }
        }
        self.idle.take()
    }

    /// Claims up to `limit` past the run's `place` on `journal`, and answers `reply`.
    fn start(
        &mut self,
        journal: Box<dyn Journal>,
        campaign: &Arc<String>,
        place: &mut QueuePlace,
        (limit, resend_unknown): (i64, bool),
        reply: Claimed,
    ) {
        let c = Arc::clone(campaign);
        let mut at = std::mem::take(place);
        self.busy = Some(tokio::task::spawn_blocking(move || {
            let rows = at
                .next(&*journal, &c, limit, resend_unknown)
                .map_err(JournalError::from);
            let _ = reply.send(rows);
            (journal, at)
        }));
    }

    /// Waits for the claim under way, if any.
    async fn settle(&mut self, place: &mut QueuePlace) {
        if let Some(busy) = self.busy.take() {
            let (journal, at) = busy.await.expect("a claim does not panic");
            *place = at;
            self.idle = Some(journal);
        }
    }
}

/// A run whose messages stay on the machine commits this many outcomes at
/// once: a dry run of 20,000 committed every 4 messages, each commit a trip
/// to the blocking pool and back (two thread switches).
pub(super) const LOCAL_BATCH: usize = 256;

/// Whether a local run's batch is to be committed now: it is full, someone
/// waits for it (a gate, a sync, a quota), or a rate's marks are in it.
fn must_commit(pending: &[(Update, Option<Ack>)], batch: &Batch) -> bool {
    pending.len() >= LOCAL_BATCH
        || pending.iter().any(|(_, ack)| ack.is_some())
        || !batch.synced.is_empty()
        || !batch.takes.is_empty()
        || !batch.marks.is_empty()
}

/// Up to `limit` rows past the run's `place` (a claim, on a shared store).
async fn next_rows(
    store: Box<dyn Store>,
    campaign: &Arc<String>,
    place: &mut QueuePlace,
    limit: i64,
    resend_unknown: bool,
) -> (Box<dyn Store>, Result<Vec<Row>, JournalError>) {
    let c = Arc::clone(campaign);
    let mut at = std::mem::take(place);
    let (store, (rows, at)) = blocking(store, move |s| {
        let rows = at
            .next(&*s, &c, limit, resend_unknown)
            .map_err(JournalError::from);
        (rows, at)
    })
    .await;
    *place = at;
    (store, rows)
}

/// How long a commit waits for the connections the last one let go.
/// Each comes back with its next message's `sending` mark once its message
/// is out, soon after that commit; a commit started before then made them
/// wait a whole commit more, so with a fast relay the connections took
/// turns, half of them in each commit (two messages a commit with four
/// connections). A commit now waits for them, never longer than half the
/// last commit took: a slow relay's connections, back much later, cost it
/// that at most, and a lone connection never waits (its mark is the one
/// awaited: the commit starts when it comes).
///
/// Connections back while the last commit ran (their marks were waiting
/// when it ended) are not the ones it let go: the commit waits for those
/// as well. Counted as the ones it let go, they left the connections in
/// two halves taking turns, each waiting a whole commit for the other's
/// (two messages a commit with four connections: 60% of a PostgreSQL
/// send's commits), where one commit for all waits only for the relay.
/// A slow relay's connections are not back during a commit: nothing is
/// waiting then, and the commit waits as before.
#[derive(Default)]
pub(super) struct Hold {
    /// The messages the last commit let go.
    pub(super) expect: usize,
    pub(super) time: Duration,
}

impl Hold {
    /// The wait after a commit that let `released` messages go and took `took`.
    pub(super) fn after(released: usize, took: Duration) -> Hold {
        Hold {
            expect: released,
            time: (took / 2).min(MAX_HOLD),
        }
    }
}

/// The longest a commit waits for connections (see [`Hold`]).
pub(super) const MAX_HOLD: Duration = Duration::from_millis(5);

/// How long a shared store's claim lasts this sender: about this many
/// seconds of its sending. What a sender holds is the others' only if it
/// dies, so when the queue runs dry those still holding a large claim mail
/// on alone while the rest have stopped. Through a relay taking 100 ms a
/// message, 3 senders with claims of 256 on 600 recipients were 2.37x one
/// sender: one got 88 and was done, two mailed 256 each at 40/s.
pub(super) const CLAIM_SECONDS: f64 = 0.5;

/// A shared store's claims sized to this sender's pace (see
/// [`CLAIM_SECONDS`]): recipients done since the last claim, over the
/// time since then.
pub(super) struct Pace {
    done: u64,
    since: Option<Instant>,
}

impl Pace {
    fn new() -> Pace {
        Pace {
            done: 0,
            since: None,
        }
    }

    /// The size of the next claim, at most `asked`; starts small.
    fn claim(&mut self, asked: i64) -> i64 {
        let now = Instant::now();
        let per_second = self.since.map(|t| {
            let secs = now.duration_since(t).as_secs_f64().max(1e-3);
            self.done as f64 / secs
        });
        self.since = Some(now);
        self.done = 0;
        claim_size(per_second, asked)
    }
}

/// At least a builder's chunk (the first claim, and a sender that has not
/// finished anyone since its last claim), at most what the builder asked.
pub(super) fn claim_size(per_second: Option<f64>, asked: i64) -> i64 {
    let floor = (CHUNK as i64).min(asked);
    let want = per_second.map_or(0.0, |r| (r * CLAIM_SECONDS).round());
    (want as i64).clamp(floor, asked.max(floor))
}

/// Reads the suppressions added since the last looks into `late`.
pub(super) async fn watch_suppressions(
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

pub(super) async fn flush(
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
            .map_err(JournalError::from)
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
pub(super) async fn blocking<T: Send + 'static>(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_claim_lasts_about_half_a_second_of_the_senders_pace() {
        // The first claim, before anyone is done: a builder's chunk.
        assert_eq!(claim_size(None, 256), CHUNK as i64);
        assert_eq!(claim_size(Some(0.0), 256), CHUNK as i64);
        // A relay taking 100 ms a message, 4 connections: 40/s.
        assert_eq!(claim_size(Some(40.0), 256), 20);
        // A fast relay: what the builder asks, no more.
        assert_eq!(claim_size(Some(2_900.0), 256), 256);
        // Never more than asked (a run's last few under --max-per-run).
        assert_eq!(claim_size(Some(100.0), 8), 8);
    }

    #[test]
    fn a_commit_waits_for_the_connections_the_last_let_go_at_most_half_its_time() {
        // Four connections let go by a 3 ms commit: the next waits for
        // their marks up to 1.5 ms.
        let h = Hold::after(4, Duration::from_millis(3));
        assert_eq!((h.expect, h.time), (4, Duration::from_micros(1500)));
        // A database that took a second to commit (a stall): not half a second.
        assert_eq!(Hold::after(4, Duration::from_secs(1)).time, MAX_HOLD);
        // Nobody let go (a commit of answers only): nobody to wait for.
        assert_eq!(Hold::after(0, Duration::from_millis(3)).expect, 0);
    }
}
