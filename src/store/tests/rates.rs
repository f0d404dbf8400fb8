//! Quotas and rates, the same on every backend: a relay's daily quota
//! shared by every sender and run, taken alone or in a group commit.

use super::*;
use crate::store::*;

#[test]
fn a_relays_daily_quota_is_counted_across_stores_and_days() {
    for b in backends("a_relays_daily_quota") {
        let mut s = (b.open)();
        let mut other = (b.open)();
        // The role alone is enough for quotas.
        let (s, other): (&mut dyn Rates, &mut dyn Rates) = (s.as_mut(), other.as_mut());
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

/// The engine takes quota in its group commit, with the state changes: the
/// same count as a take on its own, across commits.
#[test]
fn quota_taken_in_a_batch_counts_with_the_updates() {
    for b in backends("quota_taken_in_a_batch") {
        let mut s = (b.open)();
        let take = |want| QuotaTake {
            relay: "main".into(),
            day: "2026-11-30".into(),
            want,
            max: 3,
        };
        assert_eq!(
            s.commit_batch("c", &[], &[], &[take(1), take(1)]).unwrap(),
            [1, 1],
            "{}",
            b.name
        );
        assert_eq!(
            s.commit_batch("c", &[], &[], &[take(5)]).unwrap(),
            [1],
            "{}",
            b.name
        );
        assert_eq!(
            s.commit_batch("c", &[], &[], &[take(1)]).unwrap(),
            [0],
            "{}",
            b.name
        );
        assert_eq!(s.quota_used("main", "2026-11-30").unwrap(), 3, "{}", b.name);
    }
}
