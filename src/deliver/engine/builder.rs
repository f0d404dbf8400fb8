//! The builder: reads the queue from the store and builds each message.

use super::*;

/// Why a recipient suppressed during the run was not mailed (`herald status`).
pub const LATE_SUPPRESSION: &str = "suppressed during the send (unsubscribed, bounced or added to the suppression list); not mailed";

/// The fewest messages that wait for a connection (the channel to the
/// workers holds at least this many), so a connection rarely waits for
/// the builder.
pub(super) const CHUNK: usize = 16;

/// Messages built per trip to the blocking pool: each batch is built on
/// one thread, one message after another, and several batches are built
/// at once (see [`in_flight`]). Small, as every message built is in memory
/// until it is sent.
const BATCH: usize = 8;

/// How many batches are built at once: one per core and one more, so a
/// core that finishes its batch finds the next one already started while
/// the builder hands the first one over. With one batch at a time the
/// cores and the connections took turns. At most this many batches, the
/// channel and one message per connection are in memory: bounded,
/// whatever the list.
fn in_flight() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from) + 1
}

/// A batch being built on the blocking pool, and how many rows it holds.
type Building<P> = (tokio::task::JoinHandle<Vec<Result<Job<P>, Update>>>, u64);

/// Reads the queue from the store and builds each message; returns how
/// many were handed to the workers and why it stopped. Batches are
/// started ahead, in the queue's order, and handed over in that order.
pub(super) async fn build_jobs<M: Mailer>(
    shared: Arc<Shared<M>>,
    composer: Arc<Composer>,
    columns: Arc<Vec<String>>,
    jobs: mpsc::Sender<Job<M::Payload>>,
) -> (u64, Stop) {
    let depth = in_flight();
    let mut handed_over = 0u64;
    let mut rows: Vec<Row> = Vec::new();
    let mut queue_read = false;
    let mut building: VecDeque<Building<M::Payload>> = VecDeque::with_capacity(depth);
    loop {
        // Start batches until `depth` are being built, the queue is read
        // to its end or `--max-per-run` is met by what is handed over and
        // what is being built (a row that cannot be built is not counted:
        // once the batches are in, more rows may follow).
        let mut limited = false;
        while building.len() < depth {
            if shared.stopping() {
                return (handed_over, Stop::Done);
            }
            if rows.is_empty() && !queue_read {
                match read_queue(&shared).await {
                    Some(page) if !page.is_empty() => rows = page,
                    Some(_) => queue_read = true,
                    None => return (handed_over, Stop::Done),
                }
            }
            if rows.is_empty() {
                break;
            }
            let mut room = BATCH;
            if let Some(max) = shared.settings.max_per_run {
                let claimed = handed_over + building.iter().map(|(_, n)| n).sum::<u64>();
                if claimed >= max {
                    limited = true;
                    break;
                }
                room = room.min((max - claimed) as usize);
            }
            let rest = rows.split_off(room.min(rows.len()));
            let batch = std::mem::replace(&mut rows, rest);
            let count = batch.len() as u64;
            let (shared, composer, columns) = (
                Arc::clone(&shared),
                Arc::clone(&composer),
                Arc::clone(&columns),
            );
            let handle = tokio::task::spawn_blocking(move || {
                build_batch(&shared, &composer, &columns, batch)
            });
            building.push_back((handle, count));
        }
        let Some((handle, _)) = building.pop_front() else {
            // Nothing is being built: the queue is done, or the limit is
            // met by what was handed over.
            return (handed_over, if limited { Stop::Limit } else { Stop::Done });
        };
        let built = handle.await.expect("building a message does not panic");
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

/// The next page of the queue (the store's task keeps the run's place in
/// it, see `store::QueuePlace`); `None` when the journal stopped or
/// cannot be read (the run is stopped with the reason).
async fn read_queue<M: Mailer>(shared: &Shared<M>) -> Option<Vec<Row>> {
    let (tx, rx) = oneshot::channel();
    if shared.store.send(Cmd::Queue(256, tx)).is_err() {
        shared.broke("the journal stopped".into());
        return None;
    }
    match rx.await {
        Ok(Ok(rows)) => Some(rows),
        Ok(Err(e)) => {
            shared.broke(format!("the journal could not be read ({e})"));
            None
        }
        Err(_) => {
            shared.broke("the journal stopped".into());
            None
        }
    }
}

/// Builds a batch of messages (up to [`BATCH`] rows of the queue, in
/// order), on the blocking pool: for each row, its message or the update
/// that records why it cannot be made, in the rows' order. The one place
/// messages are built. One thread per batch: several batches are built at
/// once, so the cores are shared without starting a thread per batch.
pub(super) fn build_batch<M: Mailer>(
    shared: &Shared<M>,
    composer: &Composer,
    columns: &Arc<Vec<String>>,
    rows: Vec<Row>,
) -> Vec<Result<Job<M::Payload>, Update>> {
    rows.into_iter()
        .map(|row| build_one(shared, composer, columns, row))
        .collect()
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
