//! Senders register instead of taking a lock: alive while their
//! heartbeat is, on a connection of its own.

use std::sync::mpsc;

use postgres::types::Type;

use super::{HEARTBEAT, LEASE, Postgres, host_key};
use crate::store::{Fault, Lock, Locks, Result, StoreError};

/// A sender's registration: alive while this value lives. A thread of its
/// own says so every few seconds on a connection of its own; dropping it
/// gives back the claims not yet used and unregisters.
struct Registration {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Lock for Registration {}

impl Drop for Registration {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Locks for Postgres {
    fn lock(&self, campaign: &str) -> Result<Option<Box<dyn Lock>>> {
        let host = host_key();
        {
            let mut c = self.client();
            // Senders of this host whose process is gone (killed, crashed)
            // are dead now, not in `LEASE`: a restarted sender picks up
            // their unused claims at once.
            let rows = c
                .query_typed(
                    "SELECT id, pid FROM sender WHERE host = $1",
                    &[(&host, Type::TEXT)],
                )
                .map_err(self.err())?;
            for r in rows {
                let (id, pid): (String, i32) = (r.get(0), r.get(1));
                // SAFETY-free: kill with signal 0 only asks whether the process exists.
                let gone = pid as u32 != std::process::id()
                    && unsafe { libc::kill(pid, 0) } != 0
                    && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
                if gone {
                    c.execute("DELETE FROM sender WHERE id = $1", &[&id])
                        .map_err(self.err())?;
                }
            }
            c.execute_typed(
                "DELETE FROM sender WHERE heartbeat < clock_timestamp() - make_interval(secs => $1)",
                &[(&(LEASE.as_secs_f64() * 4.0), Type::FLOAT8)],
            )
            .map_err(self.err())?;
            c.execute_typed(
                "INSERT INTO sender (id, campaign, host, pid) VALUES ($1, $2, $3, $4)",
                &[
                    (&self.sender, Type::TEXT),
                    (&campaign, Type::TEXT),
                    (&host, Type::TEXT),
                    (&(std::process::id() as i32), Type::INT4),
                ],
            )
            .map_err(self.err())?;
        }
        let mut beat = self.target.connect()?;
        let (stop, stopped) = mpsc::channel::<()>();
        let id = self.sender.clone();
        let thread = std::thread::Builder::new()
            .name("herald-heartbeat".into())
            .spawn(move || {
                // A failed beat is tried again at the next one; claims
                // lapse only after `LEASE` without any.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(HEARTBEAT) {
                    let _ = beat.execute(
                        "UPDATE sender SET heartbeat = clock_timestamp() WHERE id = $1",
                        &[&id],
                    );
                }
                // Unused claims go back at once; in-flight ones stay
                // with this sender's name (of unknown outcome).
                let _ = beat.execute(
                    "UPDATE recipient SET claimed_by = NULL WHERE claimed_by = $1 AND state <> 'sending'",
                    &[&id],
                );
                let _ = beat.execute(
                    "UPDATE rate_slot SET answered_at = clock_timestamp() WHERE sender = $1 AND answered_at IS NULL",
                    &[&id],
                );
                let _ = beat.execute("DELETE FROM sender WHERE id = $1", &[&id]);
            })
            .map_err(|e| StoreError::new(&self.target.shown, Fault::Heartbeat(e.to_string())))?;
        Ok(Some(Box::new(Registration {
            stop: Some(stop),
            thread: Some(thread),
        })))
    }
}
