//! How many recipients a second PostgreSQL hands out to senders claiming
//! them at once: the database's side of several senders sharing a
//! campaign, without SMTP. Each claimer takes batches of 256 (the
//! largest claim of `herald send`, which claims less at a slow relay's pace), marks each recipient `sending` and then `sent` in
//! group commits of 32, and asks for the next batch.
//!
//!   cargo run --release --example bench_claims -- [RECIPIENTS] [CLAIMERS]
//!
//! Needs HERALD_TEST_DATABASE_URL and HERALD_TEST_DATABASE_PASSWORD
//! (scripts/pg-cluster.sh starts a throwaway server); prints rows/s.

use std::time::Instant;

use herald::store::postgres::Target;
use herald::store::{Journal, Locks, Postgres, QueuePlace, State, Update};
use scratch_database::ScratchDatabase;

// The tests' throwaway database (it names `Target` as `super::Target`).
#[path = "../tests/support/scratch_database.rs"]
mod scratch_database;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let claimers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let Some(db) = ScratchDatabase::new("bench_claims") else {
        std::process::exit(1);
    };
    let target = db.target();
    let mut s = Postgres::open(&target).expect("the database opens");
    s.upsert_campaign("bench", "post.md", "h", &[]).unwrap();
    let mut i = s.import("bench").unwrap();
    for k in 0..n {
        i.add(&format!("reader{k}@example.org"), k as i64 + 2, &[])
            .unwrap();
    }
    i.commit().unwrap();
    let start = Instant::now();
    let handles: Vec<_> = (0..claimers)
        .map(|_| {
            let target = target.clone();
            std::thread::spawn(move || {
                let mut s = Postgres::open(&target).unwrap();
                let _registered = s.lock("bench").unwrap();
                let mut claimed = 0usize;
                let mut place = QueuePlace::new();
                loop {
                    let rows = place.next(&s, "bench", 256, false).unwrap();
                    if rows.is_empty() {
                        return claimed;
                    }
                    claimed += rows.len();
                    for chunk in rows.chunks(32) {
                        for state in [State::Sending, State::Sent] {
                            let u: Vec<Update> = chunk
                                .iter()
                                .map(|r| Update {
                                    seq: r.seq,
                                    state,
                                    reply: None,
                                    attempts: i64::from(state == State::Sent),
                                    suppress: None,
                                    relay: None,
                                })
                                .collect();
                            s.apply("bench", &u).unwrap();
                        }
                    }
                }
            })
        })
        .collect();
    let per: Vec<usize> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let secs = start.elapsed().as_secs_f64();
    let total: usize = per.iter().sum();
    assert_eq!(total, n, "every recipient claimed exactly once: {per:?}");
    let c = s.counts("bench").unwrap();
    assert_eq!(c.sent as usize, n);
    println!(
        "claims: {:.0} rows/s ({claimers} claimers, {n} recipients, each claimed, marked sending and sent; per claimer {per:?})",
        n as f64 / secs
    );
}
