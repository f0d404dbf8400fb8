//! Stage 7: handing built messages over. For now the outbox (a dry run that
//! writes each message to a file, byte for byte what SMTP would get).

pub mod engine;
pub mod outbox;
pub mod smtp;
pub mod throttle;
