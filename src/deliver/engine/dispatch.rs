//! Starts the run's tasks (workers, distributor, builder, the watcher of
//! signals and the send window) and says why the run stopped.

use super::*;

pub(super) async fn dispatch<M: Mailer>(
    shared: Arc<Shared<M>>,
    composer: Arc<Composer>,
    columns: Arc<Vec<String>>,
    retries: mpsc::UnboundedReceiver<Job<M::Payload>>,
    (interrupt, faults): (Arc<AtomicBool>, mpsc::UnboundedReceiver<String>),
    signals: bool,
) -> Outcome {
    // No new message starts after a stop; the ones in flight finish and
    // are journaled.
    let watcher = watch_stops(Arc::clone(&shared), interrupt, faults, signals);

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
    // Messages are built on the builder threads, a chunk at a time, so
    // building the next ones overlaps with sending (and with the store's
    // commits).
    let connections: usize = shared.relays.iter().map(|r| r.connections).sum();
    // One chunk waits while the next is built: enough to keep every
    // connection busy, and no more messages in memory than that.
    let (job_tx, job_rx) = mpsc::channel::<Job<M::Payload>>((connections * 2).max(CHUNK));
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
    let (handed_over, stop) = builder.await.expect("the builder does not panic");
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
    Outcome {
        handed_over,
        stop: why_stopped(&shared, stop, relay_down),
    }
}

/// Why the run stopped, from what its tasks said: the builder's `stop`
/// unless something weightier happened meanwhile.
fn why_stopped<M: Mailer>(shared: &Shared<M>, mut stop: Stop, relay_down: Option<String>) -> Stop {
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
    stop
}

/// Watches what stops a run from outside: SIGINT and SIGTERM (when
/// `signals`), the caller's `interrupt` flag, and the store task's
/// faults (the run stops at once, as broken).
fn watch_stops<M: Mailer>(
    shared: Arc<Shared<M>>,
    interrupt: Arc<AtomicBool>,
    mut faults: mpsc::UnboundedReceiver<String>,
    signals: bool,
) -> tokio::task::JoinHandle<()> {
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
}
