//! The distributor: hands each message to a relay that asked for one.

use super::*;

/// A worker's request for its next message: its relay can send one now.
pub(super) struct Want<P> {
    pub(super) relay: usize,
    pub(super) reply: oneshot::Sender<Job<P>>,
}

/// Asks the distributor for a message for relay `r`; `None` when it has
/// ended (nothing more to send).
pub(super) fn ask<P>(
    wants: &mpsc::UnboundedSender<Want<P>>,
    r: usize,
) -> Option<oneshot::Receiver<Job<P>>> {
    let (tx, rx) = oneshot::channel();
    wants
        .send(Want {
            relay: r,
            reply: tx,
        })
        .ok()
        .map(|()| rx)
}

/// Messages set aside at most while their domains have no room: beyond
/// that the distributor reads no further into the list until one goes,
/// which bounds the memory that built messages take.
pub(super) const PARKED_MAX: usize = 512;

/// What the distributor holds: who asks, each relay's place in the
/// weighted share, and the jobs not handed out yet.
struct Line<P> {
    /// Each relay's workers waiting for a message, oldest first.
    asking: Vec<VecDeque<oneshot::Sender<Job<P>>>>,
    /// Stride scheduling: each relay's place in the weighted share; the
    /// one furthest behind gets the next message.
    pass: Vec<f64>,
    now_pass: f64,
    /// Jobs read but not handed out yet (a retry, or one whose relay
    /// dropped it)...
    ready: VecDeque<Job<P>>,
    /// ...then jobs whose domain has no room, oldest first.
    parked: VecDeque<Job<P>>,
    /// Retries waiting for a relay other than the one that failed them.
    elsewhere: VecDeque<Job<P>>,
    builder_open: bool,
}

impl<P> Line<P> {
    fn new(relays: usize) -> Line<P> {
        Line {
            asking: (0..relays).map(|_| VecDeque::new()).collect(),
            pass: vec![0f64; relays],
            now_pass: 0f64,
            ready: VecDeque::new(),
            parked: VecDeque::new(),
            elsewhere: VecDeque::new(),
            builder_open: true,
        }
    }

    fn ask(&mut self, w: Want<P>) {
        // A relay that was not asking does not bank a share meanwhile.
        if self.asking[w.relay].is_empty() {
            self.pass[w.relay] = self.pass[w.relay].max(self.now_pass);
        }
        self.asking[w.relay].push_back(w.reply);
    }

    fn someone_asks(&self) -> bool {
        self.asking.iter().any(|q| !q.is_empty())
    }
}

/// Hands each message to a relay that asked for one: retries whose time
/// has come and the builder's messages, each once its domain limit has
/// room (the others go on meanwhile), to the asking relay furthest behind
/// its weighted share. Ends when everything is done or the run stops;
/// then every worker waiting for a message is told there is none.
pub(super) async fn distribute<M: Mailer>(
    shared: Arc<Shared<M>>,
    mut built: mpsc::Receiver<Job<M::Payload>>,
    mut retries: mpsc::UnboundedReceiver<Job<M::Payload>>,
    mut wants: mpsc::UnboundedReceiver<Want<M::Payload>>,
) {
    let mut line = Line::new(shared.relays.len());
    let mut wants_open = true;
    let tick = tokio::time::sleep(Duration::from_millis(100));
    tokio::pin!(tick);
    loop {
        if shared.stopping() {
            break;
        }
        while let Ok(w) = wants.try_recv() {
            line.ask(w);
        }
        requeue_elsewhere(&shared, &mut line);
        hand_out(&shared, &mut line, &mut retries, &mut built);
        // Done when nothing can come any more: the builder is through,
        // no job is waiting for its retry, set aside or in a worker's hands.
        if !line.builder_open
            && line.ready.is_empty()
            && line.parked.is_empty()
            && line.elsewhere.is_empty()
            && shared.waiting.load(Ordering::SeqCst) == 0
            && shared.in_flight.load(Ordering::SeqCst) == 0
        {
            // A retry may have arrived since; its sender queued it before
            // lowering `waiting`.
            match retries.try_recv() {
                Ok(job) => {
                    line.ready.push_back(job);
                    continue;
                }
                Err(_) => break,
            }
        }
        // Every worker has stopped (each relay spent or the run stopping).
        if !wants_open && !line.someone_asks() {
            break;
        }
        let someone_asks = line.someone_asks();
        // The first moment a set-aside job's domain may have room.
        let mut groups: Vec<usize> = line.parked.iter().filter_map(|j| j.group).collect();
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
                Some(w) => line.ask(w),
                None => wants_open = false,
            },
            // Also when nobody asks (at most one job waits in `ready`): a
            // rate-held worker asks only once its slot comes, and without
            // this the end of the list was noticed only then, up to a
            // whole rate window after the last message was answered.
            job = built.recv(), if line.builder_open && line.ready.is_empty()
                && line.parked.len() < PARKED_MAX => match job {
                Some(job) => line.ready.push_back(job),
                None => line.builder_open = false,
            },
            job = retries.recv(), if someone_asks => {
                if let Some(job) = job {
                    line.ready.push_back(job);
                }
            }
            _ = shared.domain_freed.notified(), if !line.parked.is_empty() => {}
            _ = shared.all_settled.notified() => {}
            // A stop, a retry that ended without coming back (the run
            // stopped), or a worker done, change things without a message:
            // look again, at least every tenth of a second.
            _ = &mut tick => {}
        }
    }
    left_over(&shared, &mut line, &mut retries);
    // Dropping `asking` (with `line`) and `wants` tells every worker there
    // is no more; a worker waiting out its relay's pause is told too.
    shared.finish();
    drop(line);
}

/// A retry waiting for a relay other than the one that failed it goes
/// back in line once such a relay asks, or none is left.
fn requeue_elsewhere<M: Mailer>(shared: &Shared<M>, line: &mut Line<M::Payload>) {
    for _ in 0..line.elsewhere.len() {
        let job = line.elsewhere.pop_front().expect("counted");
        let avoid = job.avoid.filter(|a| shared.another_usable(*a));
        if (0..line.asking.len()).any(|r| !line.asking[r].is_empty() && Some(r) != avoid) {
            line.ready.push_front(job);
        } else {
            line.elsewhere.push_back(job);
        }
    }
}

/// Hands out as much as can go now.
fn hand_out<M: Mailer>(
    shared: &Shared<M>,
    line: &mut Line<M::Payload>,
    retries: &mut mpsc::UnboundedReceiver<Job<M::Payload>>,
    built: &mut mpsc::Receiver<Job<M::Payload>>,
) {
    let n = line.asking.len();
    while line.someone_asks() {
        let job = next_admitted(
            shared,
            &mut line.ready,
            &mut line.parked,
            retries,
            built,
            &mut line.builder_open,
        );
        let Some(mut job) = job else { break };
        // A recipient's retry goes to another relay than the one that
        // said "not now", while another can still carry messages.
        let avoid = job.avoid.filter(|a| shared.another_usable(*a));
        loop {
            let Some(r) = (0..n)
                .filter(|r| !line.asking[*r].is_empty() && Some(*r) != avoid)
                .min_by(|a, b| line.pass[*a].total_cmp(&line.pass[*b]))
            else {
                if !line.someone_asks() {
                    // Every asking worker went away: keep it for later.
                    line.ready.push_front(job);
                } else {
                    // Only the relay to avoid is asking: wait for
                    // another, without holding the domain's room.
                    shared.release_domain(&mut job);
                    line.elsewhere.push_back(job);
                }
                break;
            };
            let reply = line.asking[r].pop_front().expect("not empty");
            shared.in_flight.fetch_add(1, Ordering::SeqCst);
            match reply.send(job) {
                Ok(()) => {
                    line.now_pass = line.pass[r];
                    line.pass[r] += shared.relays[r].stride;
                    break;
                }
                Err(back) => {
                    shared.in_flight.fetch_sub(1, Ordering::SeqCst);
                    job = back;
                }
            }
        }
    }
}

/// What was read and not handed out when the run ends: a recipient who
/// already had an attempt is recorded deferred; the others stay as they were.
fn left_over<M: Mailer>(
    shared: &Shared<M>,
    line: &mut Line<M::Payload>,
    retries: &mut mpsc::UnboundedReceiver<Job<M::Payload>>,
) {
    let mut ready = std::mem::take(&mut line.ready);
    let parked = std::mem::take(&mut line.parked);
    let elsewhere = std::mem::take(&mut line.elsewhere);
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
}

/// The next job that may go now: a set-aside one whose domain has room,
/// else a retry or the builder's next (set aside in turn while its domain
/// has no room).
pub(super) fn next_admitted<M: Mailer>(
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
