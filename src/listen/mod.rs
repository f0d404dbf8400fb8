//! The half of herald that hears back from subscribers and their mail
//! servers, and writes what it hears into the store:
//!
//! - [`bounces`]: tells what a message that came back is (a bounce, a
//!   complaint, an auto-reply, an unsubscribe request) and for whom.
//! - [`serve`]: the unsubscribe page and RFC 8058 one-click unsubscribes,
//!   over HTTP behind the team's HTTPS proxy.

pub mod bounces;
pub mod serve;
