//! The intake's rules, the same on every backend: each returned message
//! handled once, counted per campaign.

use super::*;
use crate::store::*;

pub(super) fn event(
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
