//! Who may send a campaign, the same rule on every backend: while one
//! holder has it, nobody else is handed the same recipients (SQLite: no
//! second holder at all; PostgreSQL: other senders get other recipients),
//! and what a holder lets go of is there for the next.

use super::*;
use crate::store::*;

#[test]
fn two_holders_are_never_handed_the_same_recipient() {
    for b in backends("two_holders_are_never_handed_the_same_recipient") {
        let mut first = (b.open)();
        let mut second = (b.open)();
        import(
            first.as_mut(),
            &["a@x.org", "b@x.org", "c@x.org", "d@x.org"],
        );
        // The role alone takes the lock.
        let locks: &dyn Locks = first.as_ref();
        let held = locks.lock("c").unwrap().expect("a free campaign is taken");
        let mine: Vec<String> = first
            .queue("c", 0, 2, false)
            .unwrap()
            .into_iter()
            .map(|r| r.email)
            .collect();
        assert_eq!(mine, ["a@x.org", "b@x.org"], "{}", b.name);
        if let Some(_other) = second.lock("c").unwrap() {
            let theirs: Vec<String> = second
                .queue("c", 0, 100, false)
                .unwrap()
                .into_iter()
                .map(|r| r.email)
                .collect();
            assert_eq!(theirs, ["c@x.org", "d@x.org"], "{}", b.name);
        }
        // Let go: the campaign can be taken again, and what the first
        // holder had not marked is handed out again.
        drop(held);
        let again = second.lock("c").unwrap();
        assert!(again.is_some(), "{}", b.name);
        assert_eq!(
            queued(second.as_mut()),
            ["a@x.org", "b@x.org", "c@x.org", "d@x.org"],
            "{}",
            b.name
        );
    }
}
