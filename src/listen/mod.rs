//! The half of herald that hears back from subscribers and their mail
//! servers, and writes what it hears into the store:
//!
//! - [`serve`]: the unsubscribe page and RFC 8058 one-click unsubscribes,
//!   over HTTP behind the team's HTTPS proxy.

pub mod serve;
pub mod bounces;
pub mod act;
pub mod inbox;
