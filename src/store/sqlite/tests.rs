//! The SQLite journal's own rules: its schema upgrades, its files.

use super::schema::SCHEMA_VERSION;
use super::*;
use crate::store::tests::{import, queued};
use crate::store::*;

fn store() -> (tempfile::TempDir, Sqlite) {
    let dir = tempfile::tempdir().unwrap();
    let s = Sqlite::open(dir.path()).unwrap();
    (dir, s)
}

/// Schema 4 kept one row per address; schema 5 keeps each as an event,
/// and records the later ones beside it.
#[test]
fn a_schema_4_suppression_list_becomes_events() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = Connection::open(dir.path().join(FILE)).unwrap();
        c.execute_batch(
            "CREATE TABLE suppression (email_key TEXT PRIMARY KEY, reason TEXT NOT NULL,
                added_at TEXT NOT NULL, source TEXT NOT NULL DEFAULT 'bounce', campaign TEXT);
             INSERT INTO suppression VALUES ('ana@x.org', 'unsubscribed', '2026-01-01T00:00:00Z', 'one-click', 'c1');
             INSERT INTO suppression VALUES ('bo@x.org', '550 5.1.1', '2026-01-02T00:00:00Z', 'bounce', 'c1');
             PRAGMA user_version = 4;",
        )
        .unwrap();
    }
    let mut s = Sqlite::open(dir.path()).unwrap();
    let events = s.suppression_events().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(
        (
            events[0].email.as_str(),
            events[0].source,
            events[0].campaign.as_deref()
        ),
        ("ana@x.org", Source::OneClick, Some("c1"))
    );
    assert_eq!(events[1].reason, "550 5.1.1");
    // A complaint after the old row is its own event now.
    s.suppress(&[Suppressed {
        email: "ana@x.org".into(),
        reason: "abuse".into(),
        source: Source::Complaint,
        campaign: Some("c1".into()),
        added_at: "2026-01-03T00:00:00Z".into(),
    }])
    .unwrap();
    assert!(s.unsuppress("ana@x.org", &[Source::OneClick]).unwrap());
    assert!(s.is_suppressed("ana@x.org").unwrap());
    let v: i64 = s
        .conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION);
}

#[test]
fn a_journal_of_the_first_release_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = Connection::open(dir.path().join(FILE)).unwrap();
        c.execute_batch(
            "CREATE TABLE campaign (id TEXT PRIMARY KEY, post TEXT NOT NULL, content_hash TEXT NOT NULL,
                columns TEXT NOT NULL, created_at TEXT NOT NULL, finished_at TEXT);
             CREATE TABLE recipient (campaign TEXT NOT NULL, seq INTEGER NOT NULL, email TEXT NOT NULL,
                email_key TEXT NOT NULL, line INTEGER NOT NULL, fields TEXT NOT NULL,
                state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0, reply TEXT,
                updated_at TEXT, PRIMARY KEY (campaign, seq), UNIQUE (campaign, email_key));
             CREATE TABLE suppression (email_key TEXT PRIMARY KEY, reason TEXT NOT NULL, added_at TEXT NOT NULL);
             INSERT INTO suppression VALUES ('gone@x.org', '550 5.1.1 no such user', 'then');
             INSERT INTO campaign VALUES ('c', 'p.md', 'h', '[]', 'then', NULL);
             INSERT INTO recipient (campaign, seq, email, email_key, line, fields, state)
                VALUES ('c', 2, 'a@x.org', 'a@x.org', 2, '[]', 'sent'),
                       ('c', 3, 'b@x.org', 'b@x.org', 3, '[]', 'pending');",
        )
        .unwrap();
    }
    let mut s = Sqlite::open(dir.path()).unwrap();
    assert_eq!(s.counts("c").unwrap().sent, 1);
    // Schema 4's column is there: nobody has a relay yet.
    assert!(s.relay_counts("c").unwrap().is_empty());
    // A re-import: row 2 is somebody new now, and is mailed.
    import(&mut s, &["new@x.org", "a@x.org", "b@x.org"]);
    assert_eq!(queued(&s), ["b@x.org", "new@x.org"]);
    // The first release's suppressions were hard bounces.
    let sup = s.suppressions().unwrap();
    assert_eq!(sup.len(), 1);
    assert_eq!(
        (sup[0].email.as_str(), sup[0].source),
        ("gone@x.org", Source::Bounce)
    );
}

#[test]
fn a_journal_from_a_newer_herald_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = Connection::open(dir.path().join(FILE)).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
    }
    let e = Sqlite::open(dir.path()).err().unwrap();
    assert!(e.fault.to_string().contains("newer herald"), "{e}");
}

#[test]
fn links_in_place_of_the_journal_or_a_lock_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("precious");
    std::fs::write(&target, "keep me").unwrap();
    let j = dir.path().join("j");
    std::fs::create_dir_all(j.join("locks")).unwrap();
    std::os::unix::fs::symlink(&target, j.join(FILE)).unwrap();
    let e = Sqlite::open(&j).err().unwrap();
    assert!(e.fault.to_string().contains("symbolic link"), "{e}");
    std::fs::remove_file(j.join(FILE)).unwrap();
    let s = Sqlite::open(&j).unwrap();
    std::os::unix::fs::symlink(&target, j.join("locks/c.lock")).unwrap();
    assert!(s.lock("c").is_err());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
}

#[test]
fn a_rates_history_is_its_last_messages_and_a_killed_ones_latest_answer() {
    let (_d, mut s) = store();
    let mark = |id: i64, by: f64, at: Option<f64>| RateMark {
        id,
        key: "relay main".into(),
        answered_by: by,
        answered_at: at,
        forget_before: 0.0,
    };
    // Started (answered by 160 at the latest), then answered at 101.
    s.commit_batch("c", &[], &[mark(1, 160.0, None)], &[])
        .unwrap();
    s.commit_batch("c", &[], &[mark(1, 160.0, Some(101.0))], &[])
        .unwrap();
    // Answered at 102; and one whose run was killed while it was out.
    s.commit_batch(
        "c",
        &[],
        &[mark(2, 162.0, Some(102.0)), mark(3, 163.0, None)],
        &[],
    )
    .unwrap();
    assert_eq!(
        s.rate_history("relay main", 120.0, 10).unwrap(),
        [101.0, 102.0, 120.0]
    );
    assert_eq!(
        s.rate_history("relay main", 200.0, 2).unwrap(),
        [102.0, 163.0]
    );
    assert!(s.rate_history("relay other", 120.0, 10).unwrap().is_empty());
    // What no window needs any more is forgotten.
    let forget = RateMark {
        forget_before: 150.0,
        ..mark(4, 170.0, Some(110.0))
    };
    s.commit_batch("c", &[], &[forget], &[]).unwrap();
    assert_eq!(s.rate_history("relay main", 200.0, 10).unwrap(), [163.0]);
}

#[test]
fn a_campaign_lock_is_exclusive_until_dropped() {
    let (_d, s) = store();
    let first = s.lock("c@2025").unwrap();
    assert!(first.is_some());
    assert!(s.lock("c@2025").unwrap().is_none());
    assert!(s.lock("other").unwrap().is_some());
    drop(first);
    assert!(s.lock("c@2025").unwrap().is_some());
}

/// A dry run's scratch store records what went wrong, not who was
/// written (nothing reads that back); a test send's keeps both (its
/// report counts them).
#[test]
fn a_dry_runs_scratch_store_keeps_failures_not_the_messages_written() {
    let outcome = |seq, state| Update {
        seq,
        state,
        reply: Some(
            if state == State::Sent {
                "written"
            } else {
                "bad address"
            }
            .into(),
        ),
        attempts: 1,
        suppress: None,
        relay: None,
    };
    for (dry, sent) in [(true, 0), (false, 1)] {
        let dir = tempfile::tempdir().unwrap();
        let mut s = if dry {
            Sqlite::open_dry_run(dir.path()).unwrap()
        } else {
            Sqlite::open_scratch(dir.path()).unwrap()
        };
        import(&mut s, &["a@x.org", "b@x.org", "c@x.org"]);
        let seqs: Vec<i64> = s
            .queue("c", 0, 10, false)
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect();
        s.commit_batch(
            "c",
            &[
                outcome(seqs[0], State::Sent),
                outcome(seqs[1], State::Failed),
            ],
            &[],
            &[],
        )
        .unwrap();
        // A batch of messages written only: nothing to record.
        s.commit_batch("c", &[outcome(seqs[2], State::Sent)], &[], &[])
            .unwrap();
        let counts = s.counts("c").unwrap();
        assert_eq!(
            (counts.sent, counts.failed),
            (sent * 2, 1),
            "dry run: {dry}"
        );
        let problems = s.problems("c", 10).unwrap();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].email, "b@x.org");
        assert_eq!(problems[0].reply.as_deref(), Some("bad address"));
    }
}
