//! `herald store migrate`: a SQLite journal copied into PostgreSQL, whole
//! and once, however often it runs.

use super::intake::event;
use super::suppressions::at;
use super::*;
use crate::store::*;

#[test]
fn a_sqlite_journal_copies_into_postgres_once_whatever_the_reruns() {
    let Some(db) = ScratchDatabase::new("a_sqlite_journal_copies_into_postgres") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut lite = open(dir.path()).unwrap();
    import(lite.as_mut(), &["a@x.org", "b@x.org", "c@x.org"]);
    set(lite.as_mut(), "a@x.org", State::Sent);
    set(lite.as_mut(), "b@x.org", State::Failed);
    lite.suppress(&[entry("z@x.org", Source::Page)]).unwrap();
    let hard = event(
        "b@x.org",
        "c",
        "bounce",
        true,
        "suppressed",
        "2026-01-01T00:00:00Z",
    );
    // One message naming the same address twice (some servers do).
    lite.record_message("k1", &[hard.clone(), hard], &[])
        .unwrap();
    let dump = lite.dump().unwrap();
    let mut pg = Postgres::open(&db.target()).unwrap();
    for _ in 0..2 {
        pg.load(&dump).unwrap();
        assert_eq!(pg.tally(&dump).unwrap(), dump.tally());
    }
    let c = pg.counts("c").unwrap();
    assert_eq!((c.total, c.sent, c.failed, c.pending), (3, 1, 1, 1));
    assert!(pg.is_suppressed("z@x.org").unwrap());
    assert!(pg.message_handled("k1").unwrap());
    assert_eq!(pg.bounces("c").unwrap().len(), 2);
    // A copied campaign goes on where it was: only c@ is left to mail.
    assert_eq!(queued(&pg), ["c@x.org"]);
}
/// `herald store migrate` copies every event, once however often it runs.
#[test]
fn a_suppression_history_copies_into_postgres_whole() {
    let Some(db) = ScratchDatabase::new("a_suppression_history_copies_into_postgres") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut lite = open(dir.path()).unwrap();
    lite.suppress(&[
        at(
            "ana@x.org",
            Source::OneClick,
            Some("c1"),
            "2026-01-01T00:00:00Z",
        ),
        at(
            "ana@x.org",
            Source::Complaint,
            Some("c1"),
            "2026-01-02T00:00:00Z",
        ),
        at("bo@x.org", Source::Manual, None, "2026-01-03T00:00:00Z"),
    ])
    .unwrap();
    let dump = lite.dump().unwrap();
    assert_eq!(dump.suppressions.len(), 3);
    let mut pg = Postgres::open(&db.target()).unwrap();
    for _ in 0..2 {
        pg.load(&dump).unwrap();
        assert_eq!(pg.tally(&dump).unwrap(), dump.tally());
    }
    assert_eq!(
        pg.suppression_events().unwrap(),
        lite.suppression_events().unwrap()
    );
    assert!(pg.unsuppress("ana@x.org", &[Source::OneClick]).unwrap());
    assert!(pg.is_suppressed("ana@x.org").unwrap());
}
