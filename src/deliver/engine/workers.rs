//! The workers, one per connection: each sends the messages it is given
//! and records what became of them.

use super::*;

pub(super) async fn worker<M: Mailer>(
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
pub(super) fn hand_back<M: Mailer>(shared: &Arc<Shared<M>>, mut job: Job<M::Payload>) {
    shared.release_domain(&mut job);
    if !shared.stopping() {
        settle(shared, job, Delivered::Elsewhere);
    } else if let Delivered::Done(update) = stopped(&job) {
        shared.progress.deferred.fetch_add(1, Ordering::Relaxed);
        let _ = shared.store.send(Cmd::Apply(update, None));
    }
    shared.job_settled();
}

/// Records what became of a job, or puts it back in the queue.
pub(super) fn settle<M: Mailer>(
    shared: &Arc<Shared<M>>,
    job: Job<M::Payload>,
    delivered: Delivered,
) {
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
pub(super) fn retry_later<M: Mailer>(shared: &Arc<Shared<M>>, job: Job<M::Payload>, at: Instant) {
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

pub(super) enum Delivered {
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
pub(super) fn stopped<P>(job: &Job<P>) -> Delivered {
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
pub(super) fn has_reply_code(reply: &str) -> bool {
    let b = reply.as_bytes();
    b.len() >= 3 && b[..3].iter().all(u8::is_ascii_digit) && matches!(b[0], b'4' | b'5')
}

/// One attempt at a message, and then some when the relay (not the
/// recipient) was the problem.
pub(super) async fn deliver<M: Mailer>(
    shared: &Shared<M>,
    r: usize,
    conn: &mut Option<M::Conn>,
    job: &mut Job<M::Payload>,
    slot: &mut Option<u64>,
) -> Delivered {
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
        match failed(shared, r, job, failure).await {
            Some(delivered) => return delivered,
            // The relay failed before the message: try it again.
            None => continue,
        }
    }
}

/// What becomes of the job after `failure` at relay `r`; `None`: the relay
/// failed before the message and is tried again.
async fn failed<M: Mailer>(
    shared: &Shared<M>,
    r: usize,
    job: &mut Job<M::Payload>,
    failure: crate::deliver::Failure,
) -> Option<Delivered> {
    let settings = &shared.settings;
    match failure.kind {
        FailureKind::Permanent => {
            shared.relay_ok(r).await;
            Some(Delivered::Done(Update {
                seq: job.seq,
                state: State::Failed,
                suppress: failure.address_gone().then(|| job.email.to_lowercase()),
                relay: Some(shared.relays[r].name.clone()),
                reply: Some(failure.reply),
                attempts: job.attempts as i64 + 1,
            }))
        }
        FailureKind::Unsupported => Some(Delivered::Done(Update {
            seq: job.seq,
            state: State::Skipped,
            reply: Some(failure.reply),
            attempts: job.attempts as i64,
            suppress: None,
            relay: Some(shared.relays[r].name.clone()),
        })),
        FailureKind::Broken => {
            shared.broke(failure.reply.clone());
            job.last_reply = Some(failure.reply);
            job.relay = Some(shared.relays[r].name.clone());
            Some(stopped(job))
        }
        FailureKind::Config => {
            let why = format!("{} ({})", failure.reply, shared.relays[r].mailer.describe());
            // With other relays, a relay whose settings are wrong (a
            // refused password, a certificate that does not check out)
            // is set aside for the run and the others carry on; the
            // run stops only when none is left.
            if shared.relays.len() > 1 && !shared.set_aside(r, &why) {
                if !job.gate.passed() {
                    return Some(Delivered::Elsewhere);
                }
                job.last_reply = Some(failure.reply);
                return Some(stopped(job));
            }
            shared.fail(why);
            job.last_reply = Some(failure.reply);
            Some(stopped(job))
        }
        FailureKind::Relay | FailureKind::SlowDown if !job.gate.passed() => {
            // Not this recipient's doing: no attempt is used up.
            let slow = failure.kind == FailureKind::SlowDown;
            if shared.relay_failed(r, &failure.reply, slow).await {
                return Some(stopped(job));
            }
            if shared.relays.len() > 1 {
                return Some(Delivered::Elsewhere);
            }
            None
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
                    return Some(Delivered::Untouched);
                }
                return Some(Delivered::Done(Update {
                    seq: job.seq,
                    state: State::Deferred,
                    reply: job.last_reply.clone(),
                    attempts: job.attempts as i64,
                    suppress: None,
                    relay: Some(shared.relays[r].name.clone()),
                }));
            }
            let wait = settings.retry_base * 2u32.pow(job.attempts - 1);
            let jitter = wait.mul_f64(fastrand::f64() * 0.5);
            Some(Delivered::Retry(Instant::now() + wait + jitter))
        }
    }
}

/// A slot in a relay's or domain's rate shared with other senders (PostgreSQL):
/// asks the database, waits as long as it says, asks again.
pub(super) async fn take_shared(
    gate: &Arc<dyn RateGate>,
    stopped: &Notify,
) -> Result<i64, crate::deliver::Failure> {
    loop {
        let g = Arc::clone(gate);
        let asked = tokio::task::spawn_blocking(move || g.take()).await;
        let wait = match asked {
            Ok(Ok(Ok(id))) => return Ok(id),
            Ok(Ok(Err(wait))) => wait.min(Duration::from_secs(1)),
            Ok(Err(e)) => {
                return Err(crate::deliver::Failure::broken(format!(
                    "the shared rate cannot be read from the database ({e}); nothing more is sent"
                )));
            }
            Err(_) => {
                return Err(crate::deliver::Failure::broken(
                    "the shared rate could not be read; nothing more is sent",
                ));
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped.notified() => {
                return Err(crate::deliver::Failure::transient("the run was stopped"));
            }
        }
    }
}

/// Shared-rate slots of a message that was answered (or never sent).
/// Recorded after the answer, as the local throttle does; a failure here
/// only makes the other senders wait longer (the slot counts as answered
/// when this sender ends).
pub(super) async fn answer_shared(held: Vec<(Arc<dyn RateGate>, i64)>) {
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

/// `conn`, connected again if it is not (or no longer) usable.
async fn connected<M: Mailer>(
    mailer: &M,
    conn: &mut Option<M::Conn>,
    timeout: Duration,
) -> Result<(), crate::deliver::Failure> {
    if conn.as_ref().is_none_or(|c| mailer.is_broken(c)) {
        *conn = None;
        let c = tokio::time::timeout(timeout, mailer.connect())
            .await
            .map_err(|_| {
                crate::deliver::Failure::relay(format!(
                    "the relay did not answer within {}s",
                    timeout.as_secs()
                ))
            })??;
        *conn = Some(c);
    }
    Ok(())
}

pub(super) async fn attempt_once<M: Mailer>(
    shared: &Shared<M>,
    r: usize,
    conn: &mut Option<M::Conn>,
    job: &mut Job<M::Payload>,
    pre_slot: &mut Option<u64>,
) -> Result<String, crate::deliver::Failure> {
    let relay = &shared.relays[r];
    let timeout = shared.settings.timeout;
    let gate_was = job.gate.passed();
    connected(&relay.mailer, conn, timeout).await?;
    // The slot the worker took before asking for this message, or (after
    // a failure before the message, on the same relay) a new one.
    let slot = match pre_slot.take() {
        Some(slot) => slot,
        None => tokio::select! {
            slot = throttle::take(&relay.limiter) => slot,
            _ = shared.stopped.notified() => {
                return Err(crate::deliver::Failure::transient("the run was stopped"));
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
        if let Err(e) = rx.await.unwrap_or(Err(JournalError::Stopped)) {
            relay.limiter.lock().await.answered(slot);
            answer_shared(held).await;
            return Err(crate::deliver::Failure::broken(format!(
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
                crate::deliver::Failure::transient(why)
            } else {
                crate::deliver::Failure::relay(why)
            })
        }
    }
}
