//! One integration-test binary (as ripgrep does): small helpers in `util`,
//! one module per capability.

mod bounces;
mod boundaries;
mod browser;
mod builder;
mod caps;
mod cli;
mod compose;
mod corpus;
mod delivery;
mod desk;
mod dkim;
mod dns;
mod engine;
mod faulty;
mod hostile;
mod images;
mod install;
mod kill_loops;
mod lifecycle;
mod matrix;
mod messages;
mod midrun;
mod relays;
mod report;
mod returned;
mod serve;
mod shared;
mod util;
mod walkthrough;
mod watch;

// A throwaway PostgreSQL database (shared with the store's unit tests and
// examples/bench_claims.rs); it names the store's `Target` as `super::Target`.
#[path = "../support/scratch_database.rs"]
mod scratch_database;
use herald::store::postgres::Target;
