//! Each relay's state (throttle, health and pauses, daily quota) and each
//! domain limit's, shared by every worker of the run.

use super::*;

/// One relay's own state: its throttle, its health, its quota, its
/// workers' mailer. A relay that fails is paused alone; the others carry on.
pub(super) struct RelayState<M: Mailer> {
    pub(super) name: String,
    pub(super) mailer: M,
    pub(super) connections: usize,
    /// 1 / weight: how far a message moves this relay along in the
    /// weighted share (stride scheduling).
    pub(super) stride: f64,
    pub(super) limiter: Mutex<Limiter>,
    /// Its rate across every sender, when the store is shared.
    pub(super) gate: Option<Arc<dyn RateGate>>,
    pub(super) health: std::sync::Mutex<Health>,
    pub(super) quota: Option<Quota>,
    pub(super) quota_day: Mutex<QuotaDay>,
    /// A message of its quota came back or was used.
    pub(super) quota_settled: Notify,
    /// Its quota for the day is spent: its workers have stopped.
    pub(super) exhausted: AtomicBool,
    /// Its settings do not work (a refused password, a bad certificate):
    /// set aside for the run, with why.
    pub(super) set_aside: std::sync::Mutex<Option<String>>,
    /// It answered again after failing: its workers waiting out its
    /// pause go at once.
    pub(super) came_back: Notify,
}

/// What a run holds of a relay's quota for one of the relay's days.
#[derive(Default)]
pub(super) struct QuotaDay {
    pub(super) day: Option<jiff::civil::Date>,
    /// Taken from the store and not used yet.
    pub(super) allowance: u64,
    /// The store had no more for this day.
    pub(super) spent: bool,
    /// Taken by a worker for a message not settled yet: it may come back
    /// (the message never reached the relay), so the day is spent only
    /// when none is out.
    pub(super) out: u64,
}

/// Messages of a relay's quota taken from the store at a time: one, in the
/// store task's group commit, so a run that dies loses no more of the
/// day's quota than the messages its connections held.
pub(super) const QUOTA_BLOCK: u64 = 1;

/// One domain limit's state, shared by every relay's workers.
pub(super) struct DomainState {
    pub(super) limiter: std::sync::Mutex<Limiter>,
    pub(super) connections: Option<usize>,
    /// Messages to these domains in a worker's hands now.
    pub(super) in_flight: AtomicUsize,
    /// Its rate across every sender, when the store is shared.
    pub(super) gate: Option<Arc<dyn RateGate>>,
}

pub(super) struct Shared<M: Mailer> {
    /// Every relay of the run; the first is the plan's `mailer`.
    pub(super) relays: Vec<RelayState<M>>,
    pub(super) domains: Vec<DomainState>,
    /// Recipient domain (lower-case) to its index in `domains`.
    pub(super) domain_of: HashMap<String, usize>,
    /// A domain limit has room again (a message to it was answered).
    pub(super) domain_freed: Notify,
    pub(super) settings: Settings,
    pub(super) store: mpsc::UnboundedSender<Cmd>,
    pub(super) progress: Arc<Progress>,
    pub(super) stop: AtomicBool,
    /// The send window closed (and `stop` was raised for that reason).
    pub(super) window_closed: AtomicBool,
    pub(super) stopped: Notify,
    pub(super) fatal: std::sync::Mutex<Option<String>>,
    pub(super) broken: std::sync::Mutex<Option<String>>,
    pub(super) relay_down: std::sync::Mutex<Option<String>>,
    pub(super) quota_spent: std::sync::Mutex<Option<(jiff::Timestamp, String)>>,
    /// Recipients waiting to be tried again; they come back through `retries`.
    pub(super) waiting: AtomicU64,
    /// Jobs in a worker's hands (taken, not yet settled).
    pub(super) in_flight: AtomicU64,
    /// The last job in a worker's hands was settled: the distributor looks
    /// whether the run is through (the workers may all be waiting for a
    /// message they asked for ahead, so no new request would wake it).
    pub(super) all_settled: Notify,
    pub(super) retries: mpsc::UnboundedSender<Job<M::Payload>>,
    /// Addresses suppressed since the run began.
    pub(super) late: Arc<LateSuppressions>,
    /// Everyone is settled: nothing more will be handed out, so a worker
    /// waiting out a pause or a rate slot ends now.
    pub(super) over: AtomicBool,
    /// The run is on its own runtime ([`super::run`]), on the real clock:
    /// a builder thread may hand its batch straight to the run's thread
    /// (see `builder::Builders::hand_over`). On a caller's runtime the
    /// clock may be tokio's paused one, which must see the building.
    pub(super) own_runtime: bool,
}

/// How a relay has been doing lately.
#[derive(Default)]
pub(super) struct Health {
    /// Relay-level failures since the last success.
    pub(super) failures: u32,
    pub(super) failing_since: Option<Instant>,
    /// It has done nothing but fail for `relay_down_after`; it is still
    /// tried again after each pause, and a success makes it up again.
    pub(super) down: bool,
    /// Its workers wait until then after a failure (growing pauses)...
    pub(super) paused_until: Option<Instant>,
    /// ...except one of them, which tries again at this moment (every
    /// [`RELAY_PROBE`]): a relay that is back is used again within that,
    /// however long the pause, and a relay that is down gets one
    /// connection a second, not one per worker.
    pub(super) next_probe: Option<Instant>,
}

/// How often one worker tries a paused relay again.
pub(super) const RELAY_PROBE: Duration = Duration::from_secs(1);

/// Pauses after relay-level failures: short enough to notice a relay that
/// comes back, long enough not to hammer one that is down.
pub(super) const RELAY_BACKOFF_MIN: Duration = Duration::from_secs(1);
pub(super) const RELAY_BACKOFF_MAX: Duration = Duration::from_secs(15);

impl<M: Mailer> Shared<M> {
    pub(super) fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.stopped.notify_waiters();
    }

    /// Everyone is settled: workers waiting for their relay end now rather
    /// than wait out its pause.
    pub(super) fn finish(&self) {
        self.over.store(true, Ordering::SeqCst);
        self.stopped.notify_waiters();
    }

    pub(super) fn over(&self) -> bool {
        self.over.load(Ordering::SeqCst)
    }

    /// Relay `r` is paused: by its rate's batch pause, a "slow down", or
    /// its failures.
    pub(super) async fn paused(&self, r: usize) -> bool {
        let relay = &self.relays[r];
        let failing = relay
            .health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .paused_until
            .is_some_and(|at| at > Instant::now());
        failing || relay.limiter.lock().await.paused_until().is_some()
    }

    pub(super) fn fail(&self, why: String) {
        self.fatal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(why);
        self.request_stop();
    }

    pub(super) fn broke(&self, why: String) {
        self.broken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(why);
        self.request_stop();
    }

    /// A job left a worker's hands (settled, or handed back).
    pub(super) fn job_settled(&self) {
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.all_settled.notify_one();
        }
    }

    pub(super) fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    pub(super) fn is_down(&self, r: usize) -> bool {
        self.relays[r]
            .health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .down
    }

    /// Whether a relay other than `r` can still carry messages this run.
    pub(super) fn another_usable(&self, r: usize) -> bool {
        (0..self.relays.len()).any(|o| {
            o != r
                && !self.is_down(o)
                && !self.relays[o].exhausted.load(Ordering::SeqCst)
                && self.setting_fails(o).is_none()
        })
    }

    pub(super) fn setting_fails(&self, r: usize) -> Option<String> {
        self.relays[r]
            .set_aside
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Relay `r`'s settings do not work: it takes no more messages this
    /// run. True when that leaves no relay (the run stops, as the single
    /// relay's would).
    pub(super) fn set_aside(&self, r: usize, why: &str) -> bool {
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
    pub(super) fn stop_if_no_relay_left(&self, last: usize, why: &str) -> bool {
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
    pub(super) async fn relay_failed(&self, r: usize, why: &str, slow_down: bool) -> bool {
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

    pub(super) async fn relay_ok(&self, r: usize) {
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
    pub(super) async fn relay_open(&self, r: usize) -> bool {
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
    pub(super) async fn quota_take(&self, r: usize) -> bool {
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
                    Ok(()) => rx.await.unwrap_or(Err(JournalError::Stopped)),
                    Err(_) => Err(JournalError::Stopped),
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
    pub(super) async fn quota_settle(&self, r: usize, reached: bool) {
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
    pub(super) async fn give_back_quotas(&self) {
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
    pub(super) fn admit(&self, job: &mut Job<M::Payload>) -> bool {
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
    pub(super) fn domain_opens(&self, g: usize) -> Option<Instant> {
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
    pub(super) fn release_domain(&self, job: &mut Job<M::Payload>) {
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
