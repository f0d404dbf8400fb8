//! What `herald report` reads, the same on every backend: messages
//! accepted per relay and minute, and states per recipient domain, each
//! adding up to the campaign's counts.

use super::*;
use crate::store::*;

fn mark(s: &mut dyn Store, marks: &[(i64, State, Option<&str>)]) {
    let updates: Vec<Update> = marks
        .iter()
        .map(|(seq, state, relay)| Update {
            seq: *seq,
            state: *state,
            reply: None,
            attempts: 1,
            suppress: None,
            relay: relay.map(String::from),
        })
        .collect();
    s.apply("c", &updates).unwrap();
}

fn seqs(s: &dyn Store) -> Vec<i64> {
    s.queue("c", 0, 100, false)
        .unwrap()
        .into_iter()
        .map(|r| r.seq)
        .collect()
}

#[test]
fn each_accepted_message_is_counted_once_in_its_minute_and_relay() {
    for b in backends("each_accepted_message_is_counted_once") {
        let mut s = (b.open)();
        let s = s.as_mut();
        import(s, &["a@x.org", "b@x.org", "c@y.org", "d@y.org", "e@y.org"]);
        let q = seqs(s);
        mark(
            s,
            &[
                (q[0], State::Sending, None),
                (q[0], State::Sent, Some("main")),
                (q[1], State::Sent, Some("backup")),
                (q[2], State::Sent, Some("main")),
                (q[3], State::Deferred, Some("main")),
                (q[4], State::Failed, Some("backup")),
            ],
        );
        let got = s.sent_per_minute("c").unwrap();
        let total: i64 = got.iter().map(|m| m.sent).sum();
        assert_eq!(total, s.counts("c").unwrap().sent, "{}", b.name);
        // The minute is the one the state became `sent`, as the journal
        // has it per recipient.
        let first = s.recipients("c").unwrap()[0].updated_at.clone().unwrap();
        for m in &got {
            assert_eq!(m.minute.len(), 16, "{}: {m:?}", b.name);
            assert!(m.minute.starts_with(&first[..13]), "{}: {m:?}", b.name);
        }
        let by_relay = |name: &str| -> i64 {
            got.iter()
                .filter(|m| m.relay.as_deref() == Some(name))
                .map(|m| m.sent)
                .sum()
        };
        assert_eq!((by_relay("main"), by_relay("backup")), (2, 1), "{}", b.name);
    }
}

/// A bounce recorded for a sent recipient, and the next import that
/// skips them (suppressed now), leave their accepted time as it was: the
/// report's chart does not move after the send.
#[test]
fn the_accepted_time_survives_a_bounce_and_the_next_import() {
    for b in backends("the_accepted_time_survives") {
        let mut s = (b.open)();
        let s = s.as_mut();
        import(s, &["a@x.org", "b@x.org"]);
        let q = seqs(s);
        mark(
            s,
            &[
                (q[0], State::Sent, Some("main")),
                (q[1], State::Sent, Some("main")),
            ],
        );
        let before = (s.recipients("c").unwrap(), s.sent_per_minute("c").unwrap());
        let at = clock::now().to_string();
        let bounce = BounceEvent {
            email: "a@x.org".into(),
            campaign: Some("c".into()),
            kind: "bounce".into(),
            status: "5.1.1".into(),
            hard: true,
            reason: "userunknown".into(),
            diagnostic: None,
            action: "suppressed".into(),
            message: "m1".into(),
            at: at.clone(),
        };
        let gone = Suppressed {
            email: "a@x.org".into(),
            reason: "550 5.1.1".into(),
            source: Source::Bounce,
            campaign: Some("c".into()),
            added_at: at,
        };
        s.record_message("k1", &[bounce], &[gone]).unwrap();
        let mut i = s.import("c").unwrap();
        i.skip("a@x.org", "bounced").unwrap();
        i.add("b@x.org", 3, &["name".into()]).unwrap();
        i.commit().unwrap();
        let after = (s.recipients("c").unwrap(), s.sent_per_minute("c").unwrap());
        assert_eq!(before, after, "{}", b.name);
    }
}

#[test]
fn states_per_domain_add_up_to_the_campaign() {
    for b in backends("states_per_domain_add_up") {
        let mut s = (b.open)();
        let s = s.as_mut();
        // The domain is after the last `@`, whatever the case it was
        // written in; a quoted local part may hold an `@` too.
        import(
            s,
            &[
                "a@x.org",
                "B@X.ORG",
                "c@y.org",
                "\"odd@local\"@y.org",
                "e@z.org",
            ],
        );
        let q = seqs(s);
        mark(
            s,
            &[
                (q[0], State::Sent, Some("main")),
                (q[1], State::Deferred, Some("main")),
                (q[2], State::Sent, Some("main")),
                (q[3], State::Failed, Some("main")),
            ],
        );
        let got = s.domain_counts("c").unwrap();
        let names: Vec<&str> = got.iter().map(|d| d.domain.as_str()).collect();
        assert_eq!(names, ["x.org", "y.org", "z.org"], "{}", b.name);
        let x = &got[0].counts;
        assert_eq!((x.total, x.sent, x.deferred), (2, 1, 1), "{}", b.name);
        let y = &got[1].counts;
        assert_eq!((y.total, y.sent, y.failed), (2, 1, 1), "{}", b.name);
        assert_eq!(got[2].counts.pending, 1, "{}", b.name);
        let all = s.counts("c").unwrap();
        let sum = |f: fn(&Counts) -> i64| got.iter().map(|d| f(&d.counts)).sum::<i64>();
        assert_eq!(sum(|c| c.total), all.total, "{}", b.name);
        assert_eq!(sum(|c| c.sent), all.sent, "{}", b.name);
        assert_eq!(domain_of("\"odd@local\"@y.org"), "y.org");
    }
}
