//! The journal's rules, the same on every backend: recipients known by
//! address, the list's changes, unknown outcomes, durable state.

use super::*;
use crate::store::*;

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
fn a_long_list_keeps_its_order_skips_removals_and_latest_fields() {
    for b in backends("a_long_list_keeps_its_order") {
        let mut s = (b.open)();
        let s = s.as_mut();
        let first: Vec<String> = (0..2500).map(|k| format!("a{k}@x.org")).collect();
        import(s, &first.iter().map(String::as_str).collect::<Vec<_>>());
        let sent: Vec<Update> = s
            .queue("c", 0, 100, false)
            .unwrap()
            .iter()
            .map(|r| Update {
                seq: r.seq,
                state: State::Sent,
                reply: None,
                attempts: 1,
                suppress: None,
                relay: None,
            })
            .collect();
        s.apply("c", &sent).unwrap();
        // The next month's list: the even half of the old one (every
        // tenth unsubscribed since), a newcomer every fifth row, and one
        // old address again at the end, written otherwise, with new fields.
        let mut i = s.import("c").unwrap();
        let mut line = 2;
        for k in 0..2500 {
            if k % 2 == 0 {
                i.add(&format!("a{k}@x.org"), line, &[format!("old{k}")])
                    .unwrap();
                if k % 10 == 0 {
                    i.skip(&format!("a{k}@x.org"), "unsubscribed").unwrap();
                }
                line += 1;
            }
            if k % 5 == 0 {
                i.add(&format!("n{k}@x.org"), line, &[format!("new{k}")])
                    .unwrap();
                line += 1;
            }
        }
        i.add("A1002@X.ORG", line, &["late".into()]).unwrap();
        assert_eq!(i.commit().unwrap(), 1200, "odd ones not mailed: {}", b.name);
        let c = s.counts("c").unwrap();
        assert_eq!(
            (c.total, c.sent, c.skipped, c.removed, c.pending),
            (3000, 100, 240, 1200, 1460),
            "{}",
            b.name
        );
        // Those known keep their place; newcomers follow, in the list's order.
        let rows = s.queue("c", 0, 10_000, false).unwrap();
        let want: Vec<String> = (100..2500)
            .filter(|k| k % 2 == 0 && k % 10 != 0)
            .map(|k| match k {
                1002 => "A1002@X.ORG".to_string(),
                k => format!("a{k}@x.org"),
            })
            .chain(
                (0..2500)
                    .filter(|k| k % 5 == 0)
                    .map(|k| format!("n{k}@x.org")),
            )
            .collect();
        let got: Vec<&str> = rows.iter().map(|r| r.email.as_str()).collect();
        assert_eq!(got, want, "{}", b.name);
        let late = rows.iter().find(|r| r.email == "A1002@X.ORG").unwrap();
        assert_eq!(late.values, ["late"], "{}", b.name);
        let n5 = rows.iter().find(|r| r.email == "n5@x.org").unwrap();
        assert_eq!(n5.values, ["new5"], "{}", b.name);
    }
}
#[test]
fn an_address_listed_again_in_a_new_campaigns_list_keeps_its_first_place() {
    for b in backends("an_address_listed_again_in_a_new_list") {
        let mut s = (b.open)();
        let s = s.as_mut();
        s.upsert_campaign("c", "post.md", "h", &["first_name".into()])
            .unwrap();
        // A list new to the campaign, long enough to be written in parts,
        // where an address of an early part comes back in a later one and
        // another comes back in its own part; the last row is left out.
        let mut i = s.import("c").unwrap();
        for k in 0..2500 {
            i.add(&format!("a{k}@x.org"), k + 2, &[format!("name{k}")])
                .unwrap();
            if k == 1500 {
                i.add("A3@X.ORG", 9000, &["again".into()]).unwrap();
            }
            if k == 1600 {
                i.add("a1501@x.org", 9001, &["twice".into()]).unwrap();
            }
        }
        i.add("out@x.org", 9002, &[]).unwrap();
        i.skip("out@x.org", "unsubscribed").unwrap();
        assert_eq!(i.commit().unwrap(), 0, "{}", b.name);
        let c = s.counts("c").unwrap();
        assert_eq!(
            (c.total, c.pending, c.skipped),
            (2501, 2500, 1),
            "{}",
            b.name
        );
        let rows = s.queue("c", 0, 10_000, false).unwrap();
        let got: Vec<&str> = rows.iter().map(|r| r.email.as_str()).collect();
        let want: Vec<String> = (0..2500)
            .map(|k| match k {
                3 => "A3@X.ORG".to_string(),
                k => format!("a{k}@x.org"),
            })
            .collect();
        assert_eq!(got, want, "{}", b.name);
        let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{}", b.name);
        assert_eq!(rows[3].values, ["again"], "{}", b.name);
        assert_eq!(rows[1501].values, ["twice"], "{}", b.name);
        assert_eq!(rows[1502].values, ["name1502"], "{}", b.name);
    }
}
