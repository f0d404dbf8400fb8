//! Ctrl-C and SIGTERM across the runs of one process.
//!
//! Each run's engine listens for the signals itself while it sends (and
//! stops the run, nobody lost). What this adds is for a command that runs
//! several times in one process (`send --due` with more than one post due):
//! once Ctrl-C or SIGTERM has stopped one run, the next must not start.
//! Without it the second post went to everyone after the person had
//! pressed Ctrl-C on the first, and a signal between two runs was lost
//! (the engine's handler stays installed after its run, with nobody
//! listening), so it did not even stop the process.
//!
//! The flag is process-wide on purpose: a stop asked for once stands for
//! the rest of the process. [`listen`] covers the time between runs.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

use crate::deliver::Mailer;
use crate::deliver::engine;
use crate::store::Store;

/// Raised by a run's engine when it sees Ctrl-C or SIGTERM, and by
/// [`listen`]'s thread.
static STOP: LazyLock<Arc<AtomicBool>> = LazyLock::new(|| Arc::new(AtomicBool::new(false)));

/// Runs whose engine is working now (and so hears the signals itself).
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// Runs the engine under the process's stop flag: it stops the run when
/// the flag is raised (also when it was raised before the run began) and
/// raises it on a signal; while it runs, a signal is the engine's to
/// handle (see [`listen`]). Every run of the use case goes through here.
pub(super) fn run_engine<M: Mailer>(
    store: Box<dyn Store>,
    plan: engine::Plan<M>,
    progress: Arc<engine::Progress>,
) -> (engine::Outcome, Box<dyn Store>) {
    RUNNING.fetch_add(1, Ordering::SeqCst);
    // Counted down however the run ends.
    struct Running;
    impl Drop for Running {
        fn drop(&mut self) {
            RUNNING.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let _running = Running;
    engine::run(store, plan, progress, Arc::clone(&STOP))
}

/// Whether Ctrl-C or SIGTERM has stopped, or asked to stop, a run of this
/// process.
pub fn requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// From now to the end of the process, Ctrl-C or SIGTERM raises the stop
/// flag; arriving while no run is sending (composing the next post,
/// asking, between two posts) it also calls `idle`, which is expected to
/// end the process as the signal would have by default: nothing is being
/// sent then, and the journal is written in transactions. If the signal
/// handler cannot be set up, the signals keep their usual effect (logged).
pub fn listen(idle: impl Fn() + Send + 'static) {
    let spawned = std::thread::Builder::new()
        .name("herald-signals".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!("cannot listen for Ctrl-C between runs: {e}");
                    return;
                }
            };
            runtime.block_on(async {
                use tokio::signal::unix::{SignalKind, signal};
                let (Ok(mut int), Ok(mut term)) = (
                    signal(SignalKind::interrupt()),
                    signal(SignalKind::terminate()),
                ) else {
                    tracing::debug!("cannot listen for Ctrl-C between runs");
                    return;
                };
                loop {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                    // Raised already: the run's engine heard this signal
                    // first and is stopping (it may even have ended, its
                    // report not yet printed), or a stop is under way.
                    let already = STOP.swap(true, Ordering::SeqCst);
                    if !already && RUNNING.load(Ordering::SeqCst) == 0 {
                        idle();
                    }
                }
            });
        });
    if let Err(e) = spawned {
        tracing::debug!("cannot listen for Ctrl-C between runs: {e}");
    }
}
