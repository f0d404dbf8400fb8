//! The store's behaviour, the same on both backends: every test here runs
//! on SQLite and on PostgreSQL (a fresh database on the server named by
//! HERALD_TEST_DATABASE_URL; SKIPPED without one, except under CI).

#[path = "../../../tests/support/scratch_database.rs"]
mod scratch_database;

use super::postgres::Target;
use super::*;
use crate::clock;
pub(crate) use scratch_database::ScratchDatabase;

/// One backend under test: a store, and a way to open a second one on the
/// same data (another process, another host).
struct Backend {
    name: &'static str,
    open: Box<dyn Fn() -> Box<dyn Store>>,
    _keep: Box<dyn std::any::Any>,
}

fn backends(what: &str) -> Vec<Backend> {
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

fn set(s: &mut dyn Store, email: &str, state: State) {
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

fn entry(email: &str, source: Source) -> Suppressed {
    Suppressed {
        email: email.into(),
        reason: "unsubscribed".into(),
        source,
        campaign: Some("c".into()),
        added_at: clock::now().to_string(),
    }
}

#[test]
fn recipients_are_known_by_address_not_by_row() {
    for b in backends("recipients_are_known_by_address_not_by_row") {
        let mut s = (b.open)();
        let s = s.as_mut();
        import(s, &["a@x.org", "b@x.org"]);
        set(s, "a@x.org", State::Sent);
        set(s, "b@x.org", State::Sent);
        // A new list whose first rows are other people: they are mailed,
        // the two already sent are not, whatever their row.
        import(s, &["new1@x.org", "new2@x.org", "B@X.org", "a@x.org"]);
        assert_eq!(queued(s), ["new1@x.org", "new2@x.org"], "{}", b.name);
        let c = s.counts("c").unwrap();
        assert_eq!((c.total, c.sent, c.pending), (4, 2, 2), "{}", b.name);
    }
}

#[test]
fn people_taken_off_the_list_before_mailing_are_removed_and_come_back_if_listed_again() {
    for b in backends("people_taken_off_the_list") {
        let mut s = (b.open)();
        let s = s.as_mut();
        import(s, &["a@x.org", "b@x.org", "c@x.org"]);
        set(s, "a@x.org", State::Sent);
        assert_eq!(import(s, &["a@x.org", "c@x.org"]), 1, "{}", b.name);
        assert_eq!(queued(s), ["c@x.org"], "{}", b.name);
        let c = s.counts("c").unwrap();
        assert_eq!((c.removed, c.sent, c.pending), (1, 1, 1), "{}", b.name);
        // Sent people taken off the list stay sent.
        assert_eq!(import(s, &["b@x.org", "c@x.org"]), 0, "{}", b.name);
        assert_eq!(queued(s), ["b@x.org", "c@x.org"], "{}", b.name);
        assert_eq!(s.counts("c").unwrap().sent, 1, "{}", b.name);
    }
}

#[test]
fn skipped_people_stay_out_and_those_mailed_keep_their_state() {
    for b in backends("skipped_people_stay_out") {
        let mut s = (b.open)();
        let s = s.as_mut();
        import(s, &["a@x.org", "b@x.org"]);
        set(s, "a@x.org", State::Sent);
        let mut i = s.import("c").unwrap();
        i.skip("a@x.org", "unsubscribed").unwrap();
        i.skip("b@x.org", "unsubscribed").unwrap();
        assert_eq!(i.commit().unwrap(), 0, "{}", b.name);
        let c = s.counts("c").unwrap();
        assert_eq!((c.sent, c.skipped, c.pending), (1, 1, 0), "{}", b.name);
    }
}

#[test]
fn unknowns_are_queued_only_when_asked_and_block_finishing() {
    for b in backends("unknowns_are_queued_only_when_asked") {
        let mut s = (b.open)();
        let s = s.as_mut();
        import(s, &["a@x.org", "b@x.org"]);
        set(s, "a@x.org", State::Sending);
        set(s, "b@x.org", State::Sent);
        assert!(queued(s).is_empty(), "{}", b.name);
        assert_eq!(s.queue("c", 0, 10, true).unwrap().len(), 1, "{}", b.name);
        assert!(!s.finish_if_done("c").unwrap(), "{}", b.name);
        assert!(!s.is_finished("c").unwrap(), "{}", b.name);
        let p = s.problems("c", 10).unwrap();
        assert_eq!(p.len(), 1, "{}", b.name);
        assert_eq!(p[0].state_label(), "unknown", "{}", b.name);
        set(s, "a@x.org", State::Sent);
        assert!(s.finish_if_done("c").unwrap(), "{}", b.name);
        assert!(s.is_finished("c").unwrap(), "{}", b.name);
    }
}

#[test]
fn permanent_failures_join_the_suppression_list() {
    for b in backends("permanent_failures_join_the_suppression_list") {
        let mut s = (b.open)();
        let s = s.as_mut();
        import(s, &["a@x.org"]);
        let seq = s.queue("c", 0, 10, false).unwrap()[0].seq;
        s.apply(
            "c",
            &[Update {
                seq,
                state: State::Failed,
                reply: Some("550 5.1.1 no such user".into()),
                attempts: 1,
                suppress: Some("a@x.org".into()),
                relay: None,
            }],
        )
        .unwrap();
        assert!(s.is_suppressed("A@x.org").unwrap(), "{}", b.name);
        assert_eq!(s.suppressed().unwrap(), ["a@x.org"], "{}", b.name);
        assert_eq!(s.counts("c").unwrap().failed, 1, "{}", b.name);
        let p = s.problems("c", 10).unwrap();
        assert_eq!(p[0].reply.as_deref(), Some("550 5.1.1 no such user"));
        let r = s.recipients("c").unwrap();
        assert_eq!(
            (r[0].state, r[0].attempts),
            (State::Failed, 1),
            "{}",
            b.name
        );
    }
}

#[test]
fn state_survives_reopening_and_a_changed_hash_is_seen() {
    for b in backends("state_survives_reopening") {
        {
            let mut s = (b.open)();
            import(s.as_mut(), &["a@x.org"]);
            set(s.as_mut(), "a@x.org", State::Sent);
        }
        let s = (b.open)();
        assert_eq!(s.counts("c").unwrap().sent, 1, "{}", b.name);
        assert_eq!(s.campaign_hash("c").unwrap().as_deref(), Some("h"));
        assert_eq!(s.campaigns().unwrap().len(), 1, "{}", b.name);
        assert_eq!(
            s.recipient_email("c", 1).unwrap().as_deref(),
            Some("a@x.org")
        );
    }
}

#[test]
fn unsubscribes_are_idempotent_and_undo_never_takes_back_a_bounce() {
    for b in backends("unsubscribes_are_idempotent") {
        let mut s = (b.open)();
        let s = s.as_mut();
        assert_eq!(
            s.suppress(&[entry("Ana@X.org", Source::OneClick)]).unwrap(),
            1
        );
        // The same again, or by the page: nothing changes, the first stays.
        assert_eq!(s.suppress(&[entry("ana@x.org", Source::Page)]).unwrap(), 0);
        let all = s.suppressions().unwrap();
        assert_eq!(all.len(), 1, "{}", b.name);
        assert_eq!(
            (all[0].email.as_str(), all[0].source),
            ("ana@x.org", Source::OneClick)
        );
        assert_eq!(all[0].campaign.as_deref(), Some("c"));
        let undo = [Source::OneClick, Source::Page];
        assert!(s.unsuppress("ANA@x.org", &undo).unwrap(), "{}", b.name);
        assert!(!s.is_suppressed("ana@x.org").unwrap(), "{}", b.name);
        assert!(!s.unsuppress("ana@x.org", &undo).unwrap(), "{}", b.name);
        // A bounce is not undone by the page, only by hand.
        s.suppress(&[entry("b@x.org", Source::Bounce)]).unwrap();
        assert!(!s.unsuppress("b@x.org", &undo).unwrap(), "{}", b.name);
        assert!(s.is_suppressed("b@x.org").unwrap(), "{}", b.name);
        assert!(s.unsuppress("b@x.org", &[]).unwrap(), "{}", b.name);
        assert!(!s.is_suppressed("b@x.org").unwrap(), "{}", b.name);
    }
}

#[test]
fn a_writer_and_a_second_connection_share_the_store() {
    for b in backends("a_writer_and_a_second_connection_share_the_store") {
        // `herald serve` and `herald send` each hold a connection; a write
        // from one is seen by the other at once.
        let mut sender = (b.open)();
        import(sender.as_mut(), &["a@x.org", "b@x.org"]);
        let mut server = (b.open)();
        server
            .suppress(&[entry("a@x.org", Source::OneClick)])
            .unwrap();
        assert!(sender.is_suppressed("a@x.org").unwrap(), "{}", b.name);
        set(sender.as_mut(), "b@x.org", State::Sent);
        assert_eq!(server.counts("c").unwrap().sent, 1, "{}", b.name);
    }
}

fn event(
    email: &str,
    campaign: &str,
    kind: &str,
    hard: bool,
    action: &str,
    at: &str,
) -> BounceEvent {
    BounceEvent {
        email: email.into(),
        campaign: Some(campaign.into()),
        kind: kind.into(),
        status: if hard { "5.1.1" } else { "4.2.2" }.into(),
        hard,
        reason: if hard { "userunknown" } else { "mailboxfull" }.into(),
        diagnostic: None,
        action: action.into(),
        message: format!("msg-{email}-{at}"),
        at: at.into(),
    }
}

#[test]
fn returned_messages_are_recorded_once_and_counted_per_campaign() {
    for b in backends("returned_messages_are_recorded_once") {
        let mut s = (b.open)();
        let s = s.as_mut();
        let hard = event(
            "Gone@x.org",
            "c",
            "bounce",
            true,
            "suppressed",
            "2026-01-01T00:00:00Z",
        );
        s.record_message(
            "k1",
            std::slice::from_ref(&hard),
            &[entry("gone@x.org", Source::Bounce)],
        )
        .unwrap();
        assert!(s.message_handled("k1").unwrap(), "{}", b.name);
        assert!(!s.message_handled("k2").unwrap(), "{}", b.name);
        for (k, at) in [
            ("k2", "2026-01-02T00:00:00Z"),
            ("k3", "2026-01-20T00:00:00Z"),
        ] {
            let soft = event("full@x.org", "c", "bounce", false, "counted", at);
            s.record_message(k, &[soft], &[]).unwrap();
        }
        let c = event(
            "angry@x.org",
            "c",
            "complaint",
            false,
            "suppressed",
            "2026-01-03T00:00:00Z",
        );
        s.record_message("k4", &[c], &[entry("angry@x.org", Source::Complaint)])
            .unwrap();
        assert_eq!(
            s.soft_bounces("FULL@x.org", "2026-01-10T00:00:00Z")
                .unwrap(),
            [Some("c".to_string())],
            "{}",
            b.name
        );
        let sum = s.bounce_summary("c").unwrap();
        assert_eq!(
            (sum.hard, sum.soft, sum.complaints),
            (1, 2, 1),
            "{}",
            b.name
        );
        let all = s.bounces("c").unwrap();
        assert_eq!(all.len(), 4, "{}", b.name);
        assert_eq!(all[0].email, "gone@x.org", "{}", b.name);
        assert!(s.is_suppressed("angry@x.org").unwrap(), "{}", b.name);
    }
}

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

#[test]
fn the_relay_that_answered_is_recorded_per_recipient() {
    for b in backends("the_relay_that_answered_is_recorded_per_recipient") {
        let mut s = (b.open)();
        let s = s.as_mut();
        import(s, &["a@x.org", "b@x.org", "c@x.org", "d@x.org"]);
        let seqs: Vec<i64> = s
            .queue("c", 0, 100, false)
            .unwrap()
            .into_iter()
            .map(|r| r.seq)
            .collect();
        let u = |seq, state, relay: Option<&str>| Update {
            seq,
            state,
            reply: None,
            attempts: 1,
            suppress: None,
            relay: relay.map(String::from),
        };
        s.apply(
            "c",
            &[
                u(seqs[0], State::Sent, Some("main")),
                u(seqs[1], State::Sent, Some("backup")),
                u(seqs[2], State::Deferred, Some("main")),
                u(seqs[3], State::Failed, Some("backup")),
            ],
        )
        .unwrap();
        // A later update that names no relay keeps the one recorded; one
        // that names another (a retry elsewhere) replaces it.
        s.apply(
            "c",
            &[
                u(seqs[2], State::Sending, None),
                u(seqs[2], State::Sent, Some("backup")),
            ],
        )
        .unwrap();
        let got = s.relay_counts("c").unwrap();
        let want = vec![
            RelayCounts {
                relay: "backup".into(),
                sent: 2,
                failed: 1,
                deferred: 0,
                ..RelayCounts::default()
            },
            RelayCounts {
                relay: "main".into(),
                sent: 1,
                failed: 0,
                deferred: 0,
                ..RelayCounts::default()
            },
        ];
        assert_eq!(got, want, "{}", b.name);
    }
}

#[test]
fn a_relays_daily_quota_is_counted_across_stores_and_days() {
    for b in backends("a_relays_daily_quota") {
        let mut s = (b.open)();
        let mut other = (b.open)();
        // Two senders (or campaigns) take from one relay's quota of 50.
        assert_eq!(s.take_quota("ses", "2026-11-30", 32, 50).unwrap(), 32);
        assert_eq!(other.take_quota("ses", "2026-11-30", 32, 50).unwrap(), 18);
        assert_eq!(s.take_quota("ses", "2026-11-30", 32, 50).unwrap(), 0);
        // Another relay, another day: their own counts.
        assert_eq!(s.take_quota("main", "2026-11-30", 10, 100).unwrap(), 10);
        assert_eq!(s.take_quota("ses", "2026-12-01", 32, 50).unwrap(), 32);
        // What a run did not use goes back, and can be taken again.
        other.give_back_quota("ses", "2026-11-30", 8).unwrap();
        assert_eq!(s.quota_used("ses", "2026-11-30").unwrap(), 42, "{}", b.name);
        assert_eq!(s.take_quota("ses", "2026-11-30", 32, 50).unwrap(), 8);
        assert_eq!(other.quota_used("ses", "2026-11-30").unwrap(), 50);
        assert_eq!(other.quota_used("nobody", "2026-11-30").unwrap(), 0);
        // Giving back more than was taken never goes below nothing.
        s.give_back_quota("main", "2026-11-30", 99).unwrap();
        assert_eq!(s.quota_used("main", "2026-11-30").unwrap(), 0);
    }
}

// --- Suppression history (issue 24): every event its own record. ---

fn at(email: &str, source: Source, campaign: Option<&str>, when: &str) -> Suppressed {
    Suppressed {
        email: email.into(),
        reason: source.as_str().into(),
        source,
        campaign: campaign.map(Into::into),
        added_at: when.into(),
    }
}

/// Someone who unsubscribed and then complained: both events are kept,
/// the list shows the complaint, and the page's Undo takes back only the
/// unsubscribe, so they stay suppressed. By hand (no sources) all go.
#[test]
fn suppressions_keep_every_event_and_undo_takes_back_only_the_unsubscribe() {
    for b in backends("suppressions_keep_every_event") {
        let mut s = (b.open)();
        let s = s.as_mut();
        let undo = [Source::OneClick, Source::Page];
        let t1 = "2026-01-01T00:00:00Z";
        let t2 = "2026-01-02T00:00:00Z";
        let t3 = "2026-01-03T00:00:00Z";
        assert_eq!(
            s.suppress(&[at("ana@x.org", Source::OneClick, Some("c1"), t1)])
                .unwrap(),
            1
        );
        // Already suppressed: the complaint is recorded, no new address.
        assert_eq!(
            s.suppress(&[at("ana@x.org", Source::Complaint, Some("c1"), t2)])
                .unwrap(),
            0
        );
        // The same one-click again: nothing new.
        s.suppress(&[at("ana@x.org", Source::OneClick, Some("c1"), t3)])
            .unwrap();
        s.suppress(&[at("bo@x.org", Source::Page, None, t3)])
            .unwrap();
        let events = s.suppression_events().unwrap();
        let ana: Vec<_> = events
            .iter()
            .filter(|e| e.email == "ana@x.org")
            .map(|e| (e.source, e.added_at.as_str(), e.campaign.as_deref()))
            .collect();
        assert_eq!(
            ana,
            [
                (Source::OneClick, t1, Some("c1")),
                (Source::Complaint, t2, Some("c1"))
            ],
            "{}",
            b.name
        );
        let people = s.suppressions().unwrap();
        assert_eq!(people.len(), 2, "{}", b.name);
        assert_eq!(people[0].email, "ana@x.org");
        assert_eq!(people[0].source, Source::Complaint, "{}", b.name);
        let mut keys = s.suppressed().unwrap();
        keys.sort();
        assert_eq!(keys, ["ana@x.org", "bo@x.org"], "{}", b.name);

        // Undo: the unsubscribe goes, the complaint stands.
        assert!(s.unsuppress("ana@x.org", &undo).unwrap(), "{}", b.name);
        assert!(s.is_suppressed("ana@x.org").unwrap(), "{}", b.name);
        assert!(!s.unsuppress("ana@x.org", &undo).unwrap(), "{}", b.name);
        assert!(s.suppressed().unwrap().contains(&"ana@x.org".to_string()));
        // A hard bounce after an unsubscribe, the same.
        s.suppress(&[at("cy@x.org", Source::Page, Some("c1"), t1)])
            .unwrap();
        s.suppress(&[at("cy@x.org", Source::Bounce, Some("c2"), t2)])
            .unwrap();
        assert!(s.unsuppress("cy@x.org", &undo).unwrap());
        assert!(s.is_suppressed("cy@x.org").unwrap(), "{}", b.name);
        // The same unsubscribe again changes nothing; after an Undo, a
        // new one puts the address back on the list.
        assert_eq!(
            s.suppress(&[at("bo@x.org", Source::Page, None, t3)])
                .unwrap(),
            0
        );
        assert!(s.unsuppress("bo@x.org", &undo).unwrap());
        assert!(!s.is_suppressed("bo@x.org").unwrap(), "{}", b.name);
        assert_eq!(
            s.suppress(&[at("bo@x.org", Source::OneClick, None, t3)])
                .unwrap(),
            1
        );
        // By hand: every event goes.
        assert!(s.unsuppress("ana@x.org", &[]).unwrap());
        assert!(!s.is_suppressed("ana@x.org").unwrap(), "{}", b.name);
        assert!(
            !s.suppression_events()
                .unwrap()
                .iter()
                .any(|e| e.email == "ana@x.org")
        );
        // A refusal while sending (apply) is an event too, next to an
        // unsubscribe.
        import(s, &["dee@x.org"]);
        s.suppress(&[at("dee@x.org", Source::OneClick, Some("c"), t1)])
            .unwrap();
        set_suppressed(s, "dee@x.org");
        assert!(s.unsuppress("dee@x.org", &undo).unwrap());
        assert!(s.is_suppressed("dee@x.org").unwrap(), "{}", b.name);
    }
}

fn set_suppressed(s: &mut dyn Store, email: &str) {
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
            state: State::Failed,
            reply: Some("550 5.1.1 no such user".into()),
            attempts: 1,
            suppress: Some(email.into()),
            relay: None,
        }],
    )
    .unwrap();
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
