//! The builder: reads the queue from the store and builds each message.

use super::*;

/// Why a recipient suppressed during the run was not mailed (`herald status`).
pub const LATE_SUPPRESSION: &str = "suppressed during the send (unsubscribed, bounced or added to the suppression list); not mailed";

/// Messages built per trip to the blocking pool: enough to share among
/// the cores, and few, as each of them is in memory until it is sent
/// (with the channel to the workers, twice this many wait at most).
pub(super) const CHUNK: usize = 16;

/// Reads the queue from the store and builds each message; returns how
/// many were handed to the workers and why it stopped.
pub(super) async fn build_jobs<M: Mailer>(
    shared: Arc<Shared<M>>,
    composer: Arc<Composer>,
    columns: Arc<Vec<String>>,
    jobs: mpsc::Sender<Job<M::Payload>>,
) -> (u64, Stop) {
    let mut handed_over = 0u64;
    loop {
        // The store's task keeps the run's place in the queue.
        let (tx, rx) = oneshot::channel();
        if shared.store.send(Cmd::Queue(256, tx)).is_err() {
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
                    build_batch(&shared, &composer, &columns, chunk)
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

/// Builds a batch of messages (up to [`CHUNK`] rows of the queue, in
/// order), on the blocking pool: for each row, its message or the update
/// that records why it cannot be made, in the rows' order. The one place
/// messages are built; a builder that builds a batch in parallel goes here.
pub(super) fn build_batch<M: Mailer>(
    shared: &Shared<M>,
    composer: &Composer,
    columns: &Arc<Vec<String>>,
    rows: Vec<Row>,
) -> Vec<Result<Job<M::Payload>, Update>> {
    // On every core: the DKIM signatures are most of a message's cost.
    crate::deliver::message::build_all(rows, |row| build_one(shared, composer, columns, row))
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
        .map_err(|e| e.to_string())
        .and_then(|built| {
            let to = built
                .to
                .parse()
                .map_err(|e| format!("cannot address the message to {} ({e})", built.to))?;
            Ok((to, built))
        });
    match built {
        Ok((to, mut built)) => {
            // The message grew by doubling as it was written: up to twice
            // its size, times every message waiting for a connection.
            built.bytes.shrink_to_fit();
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
                gate: if shared.relays[0].mailer.leaves_the_machine() {
                    mark_gate(shared.store.clone(), seq)
                } else {
                    Gate::open()
                },
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

/// The gate that writes `seq`'s `sending` mark and waits for its commit.
fn mark_gate(store: mpsc::UnboundedSender<Cmd>, seq: i64) -> Gate {
    Gate::new(move || {
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
    })
}
