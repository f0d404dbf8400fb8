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

/// How many batches are built at once when messages are signed, per
/// builder thread: each thread finds its next batch already waiting when
/// it finishes one. A signature keeps a core busy for a batch's whole
/// time (RSA-2048: ~0.5 ms a message, 4 ms a batch), so the run's thread,
/// which starts the next batch, waits for a core behind the signers; with
/// only [`in_flight`] batches the builder that finished first sat idle
/// until then. In an RSA send of 4,000 to smtp-sink (2 cores, quiet
/// machine, interleaved) twice the batches kept 1.71-1.84 cores busy
/// against 1.64-1.72 and sent 4-11% more a second in four rounds of five;
/// four times did no better. Memory: at most twice [`in_flight`] batches
/// of [`BATCH`] built messages (48 on 2 cores) on top of the channel and
/// one message per connection: still bounded, whatever the list.
const SIGNED_AHEAD: usize = 2;

/// A batch being built, and how many rows it holds.
type Building<P> = (oneshot::Receiver<Vec<Result<Job<P>, Update>>>, u64);

/// A batch to build, on one of the [`Builders`].
type Task = Box<dyn FnOnce() + Send>;

/// The threads that build messages, each batch on one of them: their
/// own threads rather than tokio's blocking pool, which also runs the
/// store's commits, so a commit never waits for a thread behind a batch
/// (measured with [`reply_first`], see there).
struct Builders {
    tasks: std::sync::mpsc::Sender<Task>,
}

impl Builders {
    /// `count` threads, which end once the last handle to them is dropped
    /// and the batches given to them are built.
    fn start(count: usize) -> Builders {
        let (tasks, rx) = std::sync::mpsc::channel::<Task>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for i in 0..count {
            let rx = Arc::clone(&rx);
            // A thread that cannot be started is one builder less; with
            // none, batches are built on the blocking pool (see `run`).
            let _ = std::thread::Builder::new()
                .name(format!("herald-build-{i}"))
                .spawn(move || {
                    build_behind();
                    loop {
                        let task = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok(task) = task else { break };
                        task();
                    }
                });
        }
        Builders { tasks }
    }

    /// Runs `build` on a builder and waits for it, on the blocking pool:
    /// so the runtime knows work is under way (a paused test clock must
    /// not jump ahead meanwhile). On the real clock [`Builders::hand_over`]
    /// does the same with two thread switches fewer.
    fn run<T: Send + 'static>(&self, build: impl FnOnce() -> T + Send + 'static) -> T {
        let (done, result) = std::sync::mpsc::sync_channel(1);
        let task: Task = Box::new(move || {
            let _ = done.send(build());
        });
        // No builder could be started: built here.
        if let Err(std::sync::mpsc::SendError(task)) = self.tasks.send(task) {
            task();
        }
        result.recv().expect("building a message does not panic")
    }

    /// Gives `build` to a builder and returns at once: `build` itself
    /// hands its batch to the run's thread (a oneshot), which is woken
    /// once, by the builder. Through [`Builders::run`] a thread of the
    /// blocking pool stood between them, woken to pass the batch on and
    /// woken again when it was built. Only on the real clock: the runtime
    /// does not know the builder is at work, so a paused clock would jump
    /// ahead meanwhile.
    fn hand_over(&self, build: Task) {
        // No builder could be started: built on the blocking pool.
        if let Err(std::sync::mpsc::SendError(build)) = self.tasks.send(build) {
            tokio::task::spawn_blocking(build);
        }
    }
}

/// The time slice asked for the thread that talks to the relays: the
/// shortest Linux grants; it runs a few microseconds per reply.
const REPLY_SLICE: Duration = Duration::from_micros(100);

/// The time slice asked for the builder threads: far longer than the
/// default (0.75-3 ms), so any thread that wakes with the default slice
/// (the relay's, when it runs on this machine; the store's commits) or
/// with [`REPLY_SLICE`] runs before a builder at once.
const BUILD_SLICE: Duration = Duration::from_millis(20);

/// Asks the scheduler to run the calling thread (the run's, which talks
/// to the relays) as soon as it wakes rather than after the slice of the
/// thread on the core (Linux 6.12 and later: a task with a shorter slice
/// wakes ahead of the others; the share of CPU it gets is unchanged).
/// Elsewhere, or refused, nothing changes but how soon replies are read.
///
/// Why: in a signed send the builders keep both cores busy with
/// signatures, and each reply of the relays waited up to a whole slice
/// (a millisecond or more) behind one; the connections sent less, the
/// built messages piled up, the builders stopped and a core idled. In an
/// RSA send of 2,000 to smtp-sink (`perf sched`, interleaved with the
/// build before, one loaded machine) herald and the sink had fewer than
/// two threads ready to run 30-43% of the send before, 24-30% with this
/// and the [`Builders`]; [`BUILD_NICE`] then took the rest of the idle
/// core.
fn reply_first() {
    set_scheduling(Policy::Other, REPLY_SLICE, 0);
}

/// How much nicer than the process the builder threads are: a builder
/// then weighs a third of the run's thread (335 against 1024 in Linux's
/// table), so whenever the thread that talks to the relays, or a commit
/// of the journal, wants a core it gets it, and the builders sign in what
/// is left. Without it the three builders took three parts in five of the
/// cores, the run thread and the relay fell behind them, the messages
/// built piled up to the limit and the builders stopped while a core
/// idled.
///
/// Measured (RSA-2048 sends of 5,000 to smtp-sink, 8 connections, 2
/// cores, the builds interleaved, three rounds each): the default 2,976-
/// 3,030 msg/s with 1.66-1.67 cores busy; +3 3,086-3,356 (1.74-1.89); +5
/// 3,378-3,448 (1.90-1.91); +8 3,268-3,472 (1.89-1.90); +10 3,247-3,448
/// (1.88-1.90). Unsigned and Ed25519 sends, where the builders are
/// seldom busy, did not change (about 6,000 and 5,600 msg/s either way).
///
/// What it costs: a nice value shares the CPU among the threads of one
/// scheduling group. herald started by cron, by systemd or from its own
/// login has a group of its own (Linux's autogroups, or the unit's
/// cgroup), and against other programs the group's share is what it was;
/// only inside it do the builders yield, to herald's own run thread (on
/// a machine with autogroups turned off, `kernel.sched_autogroup_enabled
/// = 0`, and no CPU cgroups, they yield to every program). When
/// busy programs run in herald's own session (the same terminal, say),
/// the builders yield to them as well: with two busy loops beside it in
/// its session an RSA send took about 1.4 times as long (1,193-1,220
/// msg/s against 1,623-1,799; in other sessions 1,466-1,767 against
/// 1,639-1,761; see the README's "Speed").
const BUILD_NICE: i32 = 5;

/// Asks the scheduler to let every other thread that wakes run before the
/// calling thread (a builder's), and not to run it ahead of a thread that
/// is running when it wakes: SCHED_BATCH (a thread that wakes does not
/// preempt) with a long slice ([`BUILD_SLICE`]: a thread that wakes with
/// a shorter one preempts it at once, Linux 6.12 and later). Neither
/// lowers the builders' share of the CPU, so against other programs on a
/// busy machine herald keeps what it had (the nice value, see
/// [`BUILD_NICE`], does that inside herald's own scheduling group).
///
/// Why: a builder with the default slice ran on until its slice ended
/// (EEVDF's run-to-parity) while the relay (smtp-sink on this machine)
/// or herald's run thread, woken by a reply, waited behind it. The run
/// thread waited for a core three to five times as long as it ran, the
/// channel to the connections stayed full, and the builders then idled
/// for want of room in it, not of work: in an RSA send of 4,000 to
/// smtp-sink (2 cores, load 3-5 from other sessions; the builders' idle
/// time counted by the loop's state) 1.8 s of the 3 builders' idle time
/// fell while the channel was full, 0.03 s while the run waited for the
/// batch in front and 0.03 s for the queue. In 17 such sends interleaved
/// with the default (medians): herald and the sink kept 1.67 cores busy
/// against 1.36, the run thread waited 0.87 s for a core against 1.11 s,
/// the sink 0.42 s against 0.61 s, the builders idled on a full channel
/// 0.85 s against 1.8 s, and the send took 2.71 s against 2.96 s (less
/// in 13 of the 17 pairs). SCHED_BATCH alone did about as well (1.69
/// cores busy), the long slice alone less (1.38, 11 sends); slices of
/// 10 and 50 ms did as 20; two builders instead of three did no better.
/// On a busy machine (two busy loops and other sessions, load 7) the
/// share is unchanged: medians of four sends each, RSA 7.23 s against
/// 7.24, unsigned 6.26 against 6.20, Ed25519 6.05 against 5.69, 60 KB
/// 4.37 against 4.30. On a quiet machine (load below 2.5, the machine to
/// itself) it makes no difference to see: `BASELINE=` the build before,
/// `N=4000 SIGNED_N=4000 ROUNDS=5 PARTS=dkim scripts/bench-send.sh`, RSA
/// 2,424 msg/s against 2,381, Ed25519 4,124 against 4,040, both keys
/// 2,353 against 2,395, 1.72 cores busy against 1.71: what it buys is a
/// signed send that keeps its pace while other programs want the cores.
/// The builders are also [`BUILD_NICE`] nicer than the process.
fn build_behind() {
    set_scheduling(Policy::Batch, BUILD_SLICE, BUILD_NICE);
}

/// The policies of sched(7) a thread of the run takes: both weigh a
/// thread by its nice value alone.
#[derive(Clone, Copy)]
enum Policy {
    /// SCHED_OTHER: the default.
    Other,
    /// SCHED_BATCH: does not preempt the running thread when it wakes.
    Batch,
}

/// Sets the calling thread's policy and time slice, and makes it `nicer`
/// than it is (up to 19, the nicest). Linux only; elsewhere nothing
/// changes; if the kernel refuses the policy and slice, the nice value is
/// still set.
fn set_scheduling(policy: Policy, slice: Duration, nicer: i32) {
    #[cfg(target_os = "linux")]
    {
        /// `struct sched_attr` of sched_setattr(2), its first version.
        #[repr(C)]
        struct SchedAttr {
            size: u32,
            policy: u32,
            flags: u64,
            nice: i32,
            priority: u32,
            runtime: u64,
            deadline: u64,
            period: u64,
        }
        // SAFETY: getpriority, setpriority and gettid take no pointers;
        // sched_setattr reads `attr`, a sched_attr of the size given in
        // it, which lives across the call. SCHED_BATCH weighs a thread by
        // its nice value as SCHED_OTHER does. A thread may always raise
        // its own nice value.
        unsafe {
            let tid = libc::gettid();
            let nice = (libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) + nicer).min(19);
            let attr = SchedAttr {
                size: std::mem::size_of::<SchedAttr>() as u32,
                policy: match policy {
                    Policy::Other => libc::SCHED_OTHER,
                    Policy::Batch => libc::SCHED_BATCH,
                } as u32,
                flags: 0,
                nice,
                priority: 0,
                runtime: slice.as_nanos() as u64,
                deadline: 0,
                period: 0,
            };
            let set = libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0);
            if set != 0 && nicer != 0 {
                libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (policy, slice, nicer);
}

/// Reads the queue from the store and builds each message; returns how
/// many were handed to the workers and why it stopped. Batches are
/// started ahead, in the queue's order, and handed over in that order.
pub(super) async fn build_jobs<M: Mailer>(
    shared: Arc<Shared<M>>,
    composer: Arc<Composer>,
    columns: Arc<Vec<String>>,
    jobs: mpsc::Sender<Job<M::Payload>>,
) -> (u64, Stop) {
    let local = !shared.relays[0].mailer.leaves_the_machine();
    let threads = if local { 0 } else { in_flight() };
    let depth = if local {
        1
    } else if composer.signs() {
        threads * SIGNED_AHEAD
    } else {
        threads
    };
    // The builder runs on the run's own thread (a current-thread runtime,
    // see `engine::run`), the one that talks to the relays.
    reply_first();
    let builders = Arc::new(Builders::start(threads));
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
            let (shared, composer, columns, builders) = (
                Arc::clone(&shared),
                Arc::clone(&composer),
                Arc::clone(&columns),
                Arc::clone(&builders),
            );
            let (done, built) = oneshot::channel();
            let direct = shared.own_runtime;
            let build = move || {
                // The run stopped waiting for it: nothing to hand over.
                let _ = done.send(build_batch(&shared, &composer, &columns, batch));
            };
            if local {
                // A dry run: its messages only go to files on this machine,
                // so there are no replies to wait for and nothing gains
                // from building ahead on other threads: the hand-overs
                // (two thread switches a batch) cost more than the
                // building. Built on the run's own thread, one batch at a
                // time (as the release before dry runs went through the
                // engine did), a dry run of 20,000 switches threads about
                // 600 times instead of 30,000 (`/usr/bin/time`, /dev/shm).
                tokio::spawn(async move { build() });
            } else if direct {
                builders.hand_over(Box::new(build));
            } else {
                tokio::task::spawn_blocking(move || builders.run(build));
            }
            building.push_back((built, count));
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// This thread's time slice as the kernel reports it (sched_getattr).
    fn slice_of_this_thread() -> u64 {
        let mut attr = [0u64; 7];
        // SAFETY: sched_getattr writes at most the size given (56 bytes,
        // the buffer's) into `attr`, which lives across the call.
        let r = unsafe { libc::syscall(libc::SYS_sched_getattr, 0, attr.as_mut_ptr(), 56, 0) };
        assert_eq!(r, 0, "sched_getattr: {}", std::io::Error::last_os_error());
        // size, policy (u32 each), flags, nice and priority (u32 each), runtime.
        attr[3]
    }

    /// Linux from 6.12 honours a slice asked for by a normal thread.
    fn kernel_has_custom_slices() -> bool {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut parts = release
            .trim()
            .split(['.', '-'])
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        (major, minor) >= (6, 12)
    }

    #[test]
    fn batches_are_built_on_the_builders_in_the_order_asked() {
        let builders = Builders::start(2);
        let caller = std::thread::current().id();
        for i in 0..4 {
            let (n, on) =
                builders.run(move || (i, std::thread::current().name().map(String::from)));
            assert_eq!(n, i);
            assert!(on.is_some_and(|name| name.starts_with("herald-build-")));
        }
        assert_eq!(std::thread::current().id(), caller);
    }

    #[test]
    fn without_builder_threads_a_batch_is_built_by_the_caller() {
        let builders = Builders::start(0);
        let caller = std::thread::current().id();
        assert!(builders.run(move || std::thread::current().id() == caller));
        assert_eq!(builders.run(|| vec![1, 2, 3]), vec![1, 2, 3]);
    }

    #[test]
    fn a_batch_handed_over_is_handed_back_by_its_builder() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let builders = Builders::start(1);
        let (done, built) = oneshot::channel();
        builders.hand_over(Box::new(move || {
            let _ = done.send(std::thread::current().name().map(String::from));
        }));
        let on = rt.block_on(built).unwrap();
        assert!(on.is_some_and(|name| name.starts_with("herald-build-")));
    }

    #[test]
    fn without_builder_threads_a_batch_handed_over_is_built_on_the_blocking_pool() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let builders = Builders::start(0);
        let caller = std::thread::current().id();
        let (done, built) = oneshot::channel();
        let elsewhere = rt.block_on(async move {
            builders.hand_over(Box::new(move || {
                let _ = done.send(std::thread::current().id() != caller);
            }));
            built.await.unwrap()
        });
        assert!(elsewhere);
    }

    /// This thread's nice value (getpriority of its thread id).
    fn nice_of_this_thread() -> i32 {
        // SAFETY: no pointers; a thread id names this thread alone.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
    }

    /// This thread's scheduling policy (sched_getscheduler).
    fn policy_of_this_thread() -> i32 {
        // SAFETY: a pid of 0 is the calling thread; no pointers.
        unsafe { libc::sched_getscheduler(0) }
    }

    #[test]
    fn builders_let_the_threads_that_wake_run_first() {
        let this = || {
            (
                policy_of_this_thread(),
                slice_of_this_thread(),
                nice_of_this_thread(),
            )
        };
        let before = std::thread::spawn(this).join().unwrap();
        let builders = Builders::start(1);
        let (policy, slice, nice) = builders.run(this);
        assert_eq!(policy, libc::SCHED_BATCH);
        assert_ne!(before.0, policy, "a new thread is SCHED_OTHER");
        // Nicer than a thread of the process, up to the nicest there is.
        assert_eq!(nice, (before.2 + BUILD_NICE).min(19));
        if before.2 < 19 {
            assert!(nice > before.2, "{nice} is not nicer than {}", before.2);
        }
        if kernel_has_custom_slices() {
            assert_eq!(slice, BUILD_SLICE.as_nanos() as u64);
            assert_ne!(before.1, slice, "the default slice is shorter");
        } else {
            println!(
                "SKIPPED (slice only): this kernel has no per-thread time slices (Linux 6.12 and later)"
            );
        }
    }

    #[test]
    fn the_thread_that_talks_to_the_relays_asks_for_the_shortest_slice() {
        // It keeps its nice value: only the builders yield.
        let (before, after) = std::thread::spawn(|| {
            let before = nice_of_this_thread();
            reply_first();
            (before, nice_of_this_thread())
        })
        .join()
        .unwrap();
        assert_eq!(before, after);
        if !kernel_has_custom_slices() {
            println!("SKIPPED: this kernel has no per-thread time slices (Linux 6.12 and later)");
            return;
        }
        std::thread::spawn(|| {
            let before = slice_of_this_thread();
            reply_first();
            assert_eq!(slice_of_this_thread(), REPLY_SLICE.as_nanos() as u64);
            assert_ne!(
                before,
                slice_of_this_thread(),
                "the default slice is longer"
            );
        })
        .join()
        .unwrap();
    }
}
