//! The half of herald that hears back from subscribers and their mail
//! servers, and writes what it hears into the store:
//!
//! - [`bounces`]: tells what a message that came back is (a bounce, a
//!   complaint, an auto-reply, an unsubscribe request) and for whom.
//! - [`inbox`]: reads returned mail from a Maildir, a folder or an mbox;
//!   [`imap`] over IMAP.
//! - [`act`]: what herald does about each (suppress, count, record).
//! - [`serve`]: the unsubscribe page and RFC 8058 one-click unsubscribes,
//!   over HTTP behind the team's HTTPS proxy.
//! - [`suppress`]: the suppression list by hand (`herald suppress`).

pub mod act;
pub mod bounces;
pub mod imap;
pub mod inbox;
pub mod serve;
pub mod suppress;
