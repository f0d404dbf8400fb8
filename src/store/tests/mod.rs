//! The store's behaviour, the same on both backends: one conformance suite
//! per role (journal, locks, suppressions, intake, rates), each test run on
//! SQLite and on PostgreSQL (a fresh database on the server named by
//! HERALD_TEST_DATABASE_URL; SKIPPED without one, except under CI, where a
//! missing database fails the test). What only one backend has (SQLite's
//! files and schema upgrades, PostgreSQL's claims, leases and shared rate)
//! is tested beside it, in `sqlite/tests.rs` and `postgres/tests.rs`.

mod copy;
mod figures;
mod intake;
mod journal;
mod locks;
mod rates;
mod suppressions;

#[path = "../../../tests/support/scratch_database.rs"]
mod scratch_database;

use super::postgres::Target;
use super::*;
use crate::clock;
pub(crate) use scratch_database::ScratchDatabase;

/// One backend under test: a store, and a way to open a second one on the
/// same data (another process, another host).
pub(super) struct Backend {
    pub(super) name: &'static str,
    pub(super) open: Box<dyn Fn() -> Box<dyn Store>>,
    _keep: Box<dyn std::any::Any>,
}

pub(super) fn backends(what: &str) -> Vec<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let mut v = vec![Backend {
        name: "sqlite",
        open: Box::new(move || open(&path).unwrap()),
        _keep: Box::new(dir),
    }];
    if let Some(db) = ScratchDatabase::new(what) {
        let target = db.target();
        v.push(Backend {
            name: "postgres",
            open: Box::new(move || Box::new(Postgres::open(&target).unwrap())),
            _keep: Box::new(db),
        });
    }
    v
}

pub(super) fn import(s: &mut dyn Store, emails: &[&str]) -> u64 {
    s.upsert_campaign("c", "post.md", "h", &["first_name".into()])
        .unwrap();
    let mut i = s.import("c").unwrap();
    for (n, e) in emails.iter().enumerate() {
        i.add(e, n as i64 + 2, &[format!("name{n}")]).unwrap();
    }
    i.commit().unwrap()
}

pub(super) fn queued(s: &dyn Store) -> Vec<String> {
    s.queue("c", 0, 1000, false)
        .unwrap()
        .into_iter()
        .map(|r| r.email)
        .collect()
}

pub(super) fn set(s: &mut dyn Store, email: &str, state: State) {
    let seq = s
        .queue("c", 0, 1000, true)
        .unwrap()
        .into_iter()
        .find(|r| r.email == email)
        .unwrap()
        .seq;
    s.apply(
        "c",
        &[Update {
            seq,
            state,
            reply: None,
            attempts: 1,
            suppress: None,
            relay: None,
        }],
    )
    .unwrap();
}

pub(super) fn entry(email: &str, source: Source) -> Suppressed {
    Suppressed {
        email: email.into(),
        reason: "unsubscribed".into(),
        source,
        campaign: Some("c".into()),
        added_at: clock::now().to_string(),
    }
}
