//! Delivery: the engine hands each built message to a [`Mailer`].
//!
//! Real sends, test sends and dry runs all go through the same engine
//! (throttle, retries, journal, lock, suppression list); only the Mailer
//! differs: [`smtp::Smtp`] talks to the relay, [`outbox::OutboxMailer`]
//! writes `.eml` files, [`memory::Memory`] keeps messages in memory and
//! fails on cue, for tests.

pub mod engine;
pub mod memory;
pub mod outbox;
pub mod smtp;
pub mod throttle;

use std::future::Future;

use tokio::sync::oneshot;

use crate::message::Built;

/// What went wrong with one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    /// The server's reply or what happened, for the journal and `status`.
    pub reply: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// 4xx, timeouts, dropped connections, TLS hiccups: try again later.
    Transient,
    /// 421 or 451 saying "slow down": back off the whole send.
    SlowDown,
    /// 5xx for this recipient: never try again.
    Permanent,
    /// Something that will not get better by trying again (authentication,
    /// a certificate, a journal that cannot record): stop the run.
    Config,
}

impl Failure {
    pub fn transient(reply: impl Into<String>) -> Failure {
        Failure {
            kind: FailureKind::Transient,
            reply: reply.into(),
        }
    }

    pub fn permanent(reply: impl Into<String>) -> Failure {
        Failure {
            kind: FailureKind::Permanent,
            reply: reply.into(),
        }
    }

    pub fn slow_down(reply: impl Into<String>) -> Failure {
        Failure {
            kind: FailureKind::SlowDown,
            reply: reply.into(),
        }
    }

    pub fn config(reply: impl Into<String>) -> Failure {
        Failure {
            kind: FailureKind::Config,
            reply: reply.into(),
        }
    }
}

/// One message on its way: who it is for and the mailer's form of it.
pub struct Outgoing<P> {
    pub from: lettre::Address,
    pub to: lettre::Address,
    pub payload: P,
}

/// The point a Mailer must pass just before the message can be delivered
/// (before SMTP's message content, before the file is written): it waits
/// until the journal's `sending` mark is on disk, so no message can leave
/// without the journal knowing.
pub struct Gate {
    mark: Option<oneshot::Receiver<Result<(), String>>>,
}

impl Gate {
    pub(crate) fn new(mark: oneshot::Receiver<Result<(), String>>) -> Gate {
        Gate { mark: Some(mark) }
    }

    /// A gate with nothing to wait for.
    pub fn open() -> Gate {
        Gate { mark: None }
    }

    pub async fn pass(&mut self) -> Result<(), Failure> {
        match self.mark.take() {
            None => Ok(()),
            Some(rx) => match rx.await {
                Ok(Ok(())) => Ok(()),
                _ => Err(Failure::config(
                    "the journal cannot record the send (is the disk full?); nothing more is sent",
                )),
            },
        }
    }
}

/// Where messages go. One connection per engine worker.
pub trait Mailer: Send + Sync + 'static {
    /// A connection (or whatever a worker holds between messages).
    type Conn: Send + 'static;
    /// A message in the form this mailer sends, made on the builder thread
    /// so the workers only send.
    type Payload: Send + Sync + 'static;

    /// For messages: `smtp://mail.example.org:587`, `outbox/may-2025`.
    fn describe(&self) -> String;
    fn prepare(&self, built: Built) -> Self::Payload;
    fn connect(&self) -> impl Future<Output = Result<Self::Conn, Failure>> + Send;
    /// Sends one message; returns the server's acceptance. Must pass `gate`
    /// before the message can be delivered.
    fn send(
        &self,
        conn: &mut Self::Conn,
        message: &Outgoing<Self::Payload>,
        gate: &mut Gate,
    ) -> impl Future<Output = Result<String, Failure>> + Send;
    /// The connection cannot be used again (the server closed it).
    fn is_broken(&self, conn: &Self::Conn) -> bool;
    /// Says goodbye (SMTP QUIT).
    fn quit(&self, conn: Self::Conn) -> impl Future<Output = ()> + Send;
}
