//! A Mailer that keeps every message in memory and fails on cue: the
//! engine's retry, back-off, deferral, resume and throttle logic is tested
//! with it in-process, on tokio's paused clock, fast and deterministic.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{Failure, Gate, Mailer, Outgoing};
use crate::deliver::message::Built;

/// What the memory relay does with one attempt to one recipient.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Refuses before the message (as a relay refusing RCPT does).
    Refuse(Failure),
    /// Takes the commands, then the connection drops during the message:
    /// the relay has not accepted it.
    DropDuringData,
    /// Answers only after this long, then accepts.
    Slow(Duration),
}

/// One accepted message.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub to: String,
    pub message_id: String,
    pub bytes: Vec<u8>,
    /// When it was accepted (tokio's clock: virtual under paused time).
    pub at: Instant,
}

#[derive(Default)]
struct State {
    delivered: Vec<Delivery>,
    /// Per recipient (lower-cased), what the next attempts meet.
    script: HashMap<String, VecDeque<Fault>>,
    connect_failures: VecDeque<Failure>,
    /// Per recipient (lower-cased), when each attempt began.
    attempts: HashMap<String, Vec<Instant>>,
    connects: u64,
    /// Every attempt to anyone meets this, while set.
    refuse_all: Option<Failure>,
    /// Every connection fails with this until then (a relay that is down
    /// for a while, then back).
    down_until: Option<(Instant, Failure)>,
}

/// A relay in memory. Clones share the same record.
#[derive(Clone, Default)]
pub struct Memory {
    state: Arc<Mutex<State>>,
    /// How long each accepted message takes.
    latency: Duration,
}

pub struct MemoryConn {
    broken: bool,
}

impl Memory {
    pub fn new() -> Memory {
        Memory::default()
    }

    /// Every message takes this long to be accepted.
    pub fn with_latency(mut self, latency: Duration) -> Memory {
        self.latency = latency;
        self
    }

    /// The next attempts to `email` meet these faults, in order; later
    /// attempts succeed.
    pub fn script(&self, email: &str, faults: impl IntoIterator<Item = Fault>) {
        self.lock()
            .script
            .entry(email.to_lowercase())
            .or_default()
            .extend(faults);
    }

    /// The next `n` connections fail with `failure`.
    pub fn fail_connects(&self, n: usize, failure: Failure) {
        let mut s = self.lock();
        for _ in 0..n {
            s.connect_failures.push_back(failure.clone());
        }
    }

    /// Every connection until `at` fails with `failure`; later ones work.
    pub fn down_until(&self, at: Instant, failure: Failure) {
        self.lock().down_until = Some((at, failure));
    }

    /// Every attempt to anyone is refused with `failure` (`None`: no more).
    pub fn refuse_all(&self, failure: Option<Failure>) {
        self.lock().refuse_all = failure;
    }

    pub fn delivered(&self) -> Vec<Delivery> {
        self.lock().delivered.clone()
    }

    /// Attempts made to `email`, failed or not.
    pub fn attempts(&self, email: &str) -> u32 {
        self.attempt_times(email).len() as u32
    }

    /// When each attempt to `email` began.
    pub fn attempt_times(&self, email: &str) -> Vec<Instant> {
        self.lock()
            .attempts
            .get(&email.to_lowercase())
            .cloned()
            .unwrap_or_default()
    }

    pub fn connects(&self) -> u64 {
        self.lock().connects
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A test that panicked while holding the lock has failed already.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Mailer for Memory {
    type Conn = MemoryConn;
    type Payload = Built;

    fn describe(&self) -> String {
        "memory".into()
    }

    fn prepare(&self, built: Built) -> Built {
        built
    }

    async fn connect(&self) -> Result<MemoryConn, Failure> {
        let failure = {
            let mut s = self.lock();
            s.connects += 1;
            match &s.down_until {
                Some((at, f)) if Instant::now() < *at => Some(f.clone()),
                _ => s.connect_failures.pop_front(),
            }
        };
        match failure {
            Some(f) => Err(f),
            None => Ok(MemoryConn { broken: false }),
        }
    }

    async fn send(
        &self,
        conn: &mut MemoryConn,
        message: &Outgoing<Built>,
        gate: &mut Gate,
    ) -> Result<String, Failure> {
        let key = message.payload.to.to_lowercase();
        let fault = {
            let mut s = self.lock();
            s.attempts
                .entry(key.clone())
                .or_default()
                .push(Instant::now());
            match &s.refuse_all {
                Some(f) => Some(Fault::Refuse(f.clone())),
                None => s.script.get_mut(&key).and_then(|q| q.pop_front()),
            }
        };
        match fault {
            Some(Fault::Refuse(f)) => return Err(f),
            Some(Fault::DropDuringData) => {
                gate.pass().await?;
                conn.broken = true;
                return Err(Failure::transient(
                    "the connection dropped during the message",
                ));
            }
            Some(Fault::Slow(d)) => tokio::time::sleep(d).await,
            None => {}
        }
        gate.pass().await?;
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        self.lock().delivered.push(Delivery {
            to: message.payload.to.clone(),
            message_id: message.payload.message_id.clone(),
            bytes: message.payload.bytes.clone(),
            at: Instant::now(),
        });
        Ok("250 2.0.0 accepted".into())
    }

    fn is_broken(&self, conn: &MemoryConn) -> bool {
        conn.broken
    }

    async fn quit(&self, _conn: MemoryConn) {}
}
