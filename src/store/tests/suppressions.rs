//! The suppression list's rules, the same on every backend: a history of
//! events, each once; Undo takes back only the person's own unsubscribe.

use super::*;
use crate::store::*;

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
// --- Suppression history (issue 24): every event its own record. ---
pub(super) fn at(email: &str, source: Source, campaign: Option<&str>, when: &str) -> Suppressed {
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
