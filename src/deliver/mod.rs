//! Delivery: the engine hands each built message to a [`Mailer`].
//!
//! Real sends, test sends and dry runs all go through the same engine
//! (throttle, retries, journal, lock, suppression list); only the Mailer
//! differs: [`smtp::Smtp`] talks to the relay, [`outbox::OutboxMailer`]
//! writes `.eml` files, [`memory::Memory`] keeps messages in memory and
//! fails on cue, for tests.
//!
//! Where each part lives: [`send`] is the use case (`herald send`),
//! [`audience`] reads the list, [`message`] builds each person's message,
//! [`engine`] runs the send, [`status`] reads how each campaign went, [`smtp`] talks to the relays, [`throttle`]
//! keeps the rates, [`schedule`] says which posts are due. May use
//! compose/ (the issue), the store and the leaf modules; never listen/ or
//! cli/. Errors are typed here ([`Failure`], [`JournalError`], and each
//! module's own); the CLI words them.

pub mod audience;
pub mod dns;
pub mod engine;
pub mod memory;
pub mod message;
pub mod outbox;
pub mod report;
pub mod schedule;
pub mod send;
pub mod smtp;
pub mod status;
pub mod throttle;

use std::future::Future;

use tokio::sync::oneshot;

use crate::deliver::message::Built;

/// What went wrong with one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    /// The server's reply or what happened, for the journal and `status`.
    pub reply: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// About this recipient, for now (4xx: greylisting, a full or busy
    /// mailbox; a connection lost during the message): this recipient
    /// alone is tried again later; everyone else goes on.
    Transient,
    /// About the relay, not the recipient: it cannot be reached, TLS
    /// failed, it answered 421 (service not available) or did not answer.
    /// Nobody's attempts are used up; after a minute of nothing else the
    /// run stops and everyone not yet mailed waits for the next run.
    Relay,
    /// The relay asks to send more slowly (a 4xx that says rate, limit,
    /// too many, throttled): the whole send pauses, longer each time.
    SlowDown,
    /// 5xx for this recipient: never tried again in this campaign. Only a
    /// reply that says the address is gone also suppresses it (see
    /// [`Failure::address_gone`]).
    Permanent,
    /// This relay cannot carry this message (a non-ASCII address and no
    /// SMTPUTF8): skipped with the reason, not suppressed.
    Unsupported,
    /// Something about the relay settings that will not get better by
    /// trying again (authentication, a certificate): stop the run.
    Config,
    /// herald's own machinery failed (the journal cannot record, the
    /// outbox cannot be written): stop the run.
    Broken,
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

    pub fn relay(reply: impl Into<String>) -> Failure {
        Failure {
            kind: FailureKind::Relay,
            reply: reply.into(),
        }
    }

    /// A permanent refusal that says the address does not exist: user
    /// unknown, mailbox does not exist, domain does not exist (RFC 3463's
    /// 5.1.x about the recipient, and their common wordings). A refusal
    /// about the sender or the message (policy, spam, reputation, syntax,
    /// size: 5.7.x, 5.5.x, 5.3.x, 5.6.x) is not: mailing the address again
    /// may well work, and suppressing it would lose a reader.
    pub fn address_gone(&self) -> bool {
        self.kind == FailureKind::Permanent && address_gone(&self.reply)
    }

    pub fn broken(reply: impl Into<String>) -> Failure {
        Failure {
            kind: FailureKind::Broken,
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

/// Whether a permanent reply (`550 5.1.1 no such user`) says the address
/// is gone: [`crate::gone`]'s rule, the one `herald bounces` uses too.
pub fn address_gone(reply: &str) -> bool {
    crate::gone::reply_is_gone(reply)
}

/// One message on its way: who it is for and the mailer's form of it.
pub struct Outgoing<P> {
    pub from: lettre::Address,
    pub to: lettre::Address,
    pub payload: P,
}

/// Why the journal could not do what a run asked of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    /// The store refused, with its own message.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The store's task has stopped.
    #[error("the journal stopped")]
    Stopped,
}

/// Writes the `sending` mark; the receiver answers once it is on disk.
type MarkRequest = Box<dyn FnOnce() -> oneshot::Receiver<Result<(), JournalError>> + Send + Sync>;

/// The point a Mailer must pass just before the message can be delivered
/// (before SMTP's final dot, before the file is written). The first
/// pass writes the recipient's `sending` mark and waits until it is on
/// disk: no message can leave without the journal knowing, and a recipient
/// is of unknown outcome after a crash only if their message may have
/// reached the relay.
pub struct Gate {
    request: Option<MarkRequest>,
    /// The mark, once asked for.
    armed: Option<oneshot::Receiver<Result<(), JournalError>>>,
    passed: bool,
    /// The mark could not be written: this gate never opens again, so a
    /// retry cannot send what the journal does not know about.
    failed: bool,
}

impl Gate {
    /// A gate whose first pass calls `request` and waits for its answer.
    pub(crate) fn new(
        request: impl FnOnce() -> oneshot::Receiver<Result<(), JournalError>> + Send + Sync + 'static,
    ) -> Gate {
        Gate {
            request: Some(Box::new(request)),
            armed: None,
            passed: false,
            failed: false,
        }
    }

    /// A gate with nothing to wait for.
    pub fn open() -> Gate {
        Gate {
            request: None,
            armed: None,
            passed: false,
            failed: false,
        }
    }

    /// Whether a message went past the gate: it may have reached the relay.
    pub fn passed(&self) -> bool {
        self.passed
    }

    /// Asks for the mark now, so its commit overlaps the commands that
    /// come before the message; [`Gate::pass`] still waits for it.
    pub fn arm(&mut self) {
        if let Some(request) = self.request.take() {
            self.armed = Some(request());
        }
    }

    pub async fn pass(&mut self) -> Result<(), Failure> {
        self.passed = true;
        self.arm();
        let refused = || {
            Failure::broken(
                "the journal cannot record the send (is the disk full?); nothing more is sent",
            )
        };
        if self.failed {
            return Err(refused());
        }
        match self.armed.take() {
            None => Ok(()),
            Some(rx) => match rx.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => {
                    self.failed = true;
                    Err(Failure::broken(format!(
                        "the journal cannot record the send ({e}); nothing more is sent"
                    )))
                }
                Err(_) => {
                    self.failed = true;
                    Err(refused())
                }
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
    /// Whether a message handed to this mailer can reach someone, so its
    /// recipient's `sending` mark must be on disk first (see [`Gate`]).
    /// Only the dry run's outbox says no: its files reach nobody, and its
    /// store is thrown away, so waiting for a mark per message only made
    /// dry runs twice as slow as before they went through the engine.
    fn leaves_the_machine(&self) -> bool {
        true
    }
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

#[cfg(test)]
mod tests {
    use super::address_gone;

    #[test]
    fn only_replies_about_the_address_say_it_is_gone() {
        // The whole table, run through the bounce path too, is
        // tests/integration/bounces.rs (send_and_bounce_paths_agree...).
        assert!(address_gone("550 5.1.1 no such user"));
        assert!(!address_gone("550 5.7.1 Message rejected as spam"));
    }
}
