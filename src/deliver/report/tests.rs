//! The report's figures against `herald status` and the store, and the
//! page: every chart titled with labelled axes, no script, nothing to
//! fetch, every number there, everything from outside escaped.

use super::*;
use crate::clock;
use crate::store::{BounceEvent, Source, State, Suppressed, Update};

/// A journal with two campaigns: May (to 3 people) and June (to 25
/// domains, 2 relays, with every kind of outcome).
fn journal(dir: &std::path::Path) -> Box<dyn Store> {
    let mut s = crate::store::open(dir).unwrap();
    send(s.as_mut(), "may", &["a@x.org", "b@x.org", "c@y.org"], &[]);
    let mut june: Vec<String> = vec![
        "a@x.org".into(),
        "b@x.org".into(),
        "c@x.org".into(),
        "d@y.org".into(),
        "e@y.org".into(),
        "f@<img src=x>.org".into(),
    ];
    june.extend((0..22).map(|i| format!("p{i}@d{i:02}.example")));
    let june: Vec<&str> = june.iter().map(String::as_str).collect();
    // b deferred, c failed, the rest sent; half through "backup".
    send(
        s.as_mut(),
        "june",
        &june,
        &[("b@x.org", State::Deferred), ("c@x.org", State::Failed)],
    );
    let at = clock::now().to_string();
    let event = |email: &str, kind: &str, hard: bool| BounceEvent {
        email: email.into(),
        campaign: Some("june".into()),
        kind: kind.into(),
        status: if hard { "5.1.1" } else { "4.2.2" }.into(),
        hard,
        reason: "why".into(),
        diagnostic: None,
        action: if hard { "suppressed" } else { "counted" }.into(),
        message: format!("{email}-{kind}"),
        at: at.clone(),
    };
    let leave = |email: &str, source: Source| Suppressed {
        email: email.into(),
        reason: "asked".into(),
        source,
        campaign: Some("june".into()),
        added_at: at.clone(),
    };
    s.record_message("m1", &[event("a@x.org", "bounce", true)], &[])
        .unwrap();
    s.record_message("m2", &[event("d@y.org", "bounce", false)], &[])
        .unwrap();
    s.record_message("m3", &[event("e@y.org", "complaint", false)], &[])
        .unwrap();
    s.record_message("m4", &[event("p1@d01.example", "unsubscribe", false)], &[])
        .unwrap();
    s.suppress(&[
        leave("p2@d02.example", Source::OneClick),
        leave("d@y.org", Source::Page),
    ])
    .unwrap();
    s
}

/// Imports `emails` into `campaign` and marks everyone sent (or the
/// state in `other`), alternating between relays `main` and `backup`.
fn send(s: &mut dyn Store, campaign: &str, emails: &[&str], other: &[(&str, State)]) {
    s.upsert_campaign(campaign, &format!("{campaign}.md"), "h", &[])
        .unwrap();
    let mut i = s.import(campaign).unwrap();
    for (n, e) in emails.iter().enumerate() {
        i.add(e, n as i64 + 2, &[]).unwrap();
    }
    i.commit().unwrap();
    let updates: Vec<Update> = s
        .queue(campaign, 0, 1000, false)
        .unwrap()
        .into_iter()
        .enumerate()
        .map(|(n, r)| Update {
            seq: r.seq,
            state: other
                .iter()
                .find(|(e, _)| *e == r.email)
                .map_or(State::Sent, |(_, st)| *st),
            reply: None,
            attempts: 1,
            suppress: None,
            relay: Some(if n % 2 == 0 { "main" } else { "backup" }.into()),
        })
        .collect();
    s.apply(campaign, &updates).unwrap();
}

#[test]
fn the_figures_are_the_status_figures_and_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let s = journal(dir.path());
    let config = Config::default();
    // Without a campaign: the latest.
    let r = report(s.as_ref(), &config, None).unwrap();
    assert_eq!(r.campaign, "june");
    let st = status::status(s.as_ref(), &config, Some("june")).unwrap();
    let st = &st.campaigns[0];
    assert_eq!(r.counts, st.campaign.counts);
    let o = &r.outcomes;
    assert_eq!((o.sent, o.mailed), (26, 28));
    assert_eq!(o.deferred, Figure::of(1, 28));
    assert_eq!(o.failed.count, 1);
    assert_eq!(o.hard_bounces.count, st.bounced.hard);
    assert_eq!((o.hard_bounces.count, o.soft_bounces.count), (1, 1));
    assert_eq!(o.complaints.count, st.bounced.complaints);
    assert_eq!(o.complaints.count, 1);
    assert!((o.complaints.rate - 1.0 / 26.0).abs() < 1e-12);
    // d@y.org left by the page; p2 by one click; p1 by email.
    assert_eq!(o.unsubscribed_by_link, st.unsubscribed as u64);
    assert_eq!((o.unsubscribed_by_link, o.unsubscribed_by_email), (2, 1));
    assert_eq!(o.unsubscribes.count, 3);

    // The minutes add up to `sent`, per relay to status's relays.
    let minutes: i64 = r
        .per_minute
        .iter()
        .flat_map(|s| &s.minutes)
        .map(|m| m.sent)
        .sum();
    assert_eq!(minutes, o.sent);
    let relays: Vec<&str> = r.per_minute.iter().map(|s| s.relay.as_str()).collect();
    assert_eq!(relays, ["backup", "main"]);
    for series in &r.per_minute {
        let want = st
            .relays
            .iter()
            .find(|x| x.relay == series.relay)
            .unwrap()
            .sent;
        assert_eq!(series.minutes.iter().map(|m| m.sent).sum::<i64>(), want);
    }

    // 20 domains named, 8 added up; together they are the campaign.
    assert_eq!(r.domains.len(), TOP_DOMAINS);
    assert_eq!(r.domains[0].domain, "x.org");
    assert_eq!(r.domains[0].recipients, 3);
    assert_eq!(r.domains[1].domain, "y.org");
    let rest = r.other_domains.as_ref().unwrap();
    assert_eq!(rest.domain, "the rest (5 domains)");
    let all: Vec<&DomainOutcome> = r.domains.iter().chain(&r.other_domains).collect();
    let sum = |f: fn(&DomainOutcome) -> u64| all.iter().map(|d| f(d)).sum::<u64>();
    assert_eq!(sum(|d| d.recipients as u64), r.counts.total as u64);
    assert_eq!(sum(|d| d.sent as u64), o.sent as u64);
    assert_eq!(sum(|d| d.hard_bounces), o.hard_bounces.count);
    assert_eq!(sum(|d| d.soft_bounces), o.soft_bounces.count);
    assert_eq!(sum(|d| d.complaints), o.complaints.count);
    assert_eq!(sum(|d| d.unsubscribes), o.unsubscribes.count);
    let y = &r.domains[1];
    assert_eq!((y.soft_bounces, y.complaints, y.unsubscribes), (1, 1, 1));

    // The trend: May then June, each as status says.
    let names: Vec<&str> = r.trend.iter().map(|t| t.campaign.as_str()).collect();
    assert_eq!(names, ["may", "june"]);
    assert_eq!(r.trend[0].outcomes.sent, 3);
    assert_eq!(r.trend[1].outcomes, *o);
    // May asked for by name: the trend ends with it.
    let may = report(s.as_ref(), &config, Some("may")).unwrap();
    assert_eq!(may.trend.len(), 1);
    assert_eq!(may.outcomes.sent, 3);
    assert!(may.other_domains.is_none());
}

#[test]
fn an_unknown_campaign_and_an_empty_journal_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let s = crate::store::open(dir.path()).unwrap();
    let e = report(s.as_ref(), &Config::default(), None).unwrap_err();
    assert!(matches!(e, ReportError::NoCampaigns), "{e}");
    assert!(e.to_string().contains("herald send"), "{e}");
    let e = report(s.as_ref(), &Config::default(), Some("nope")).unwrap_err();
    assert!(e.to_string().contains("herald status"), "{e}");
}

#[test]
fn the_page_is_self_contained_and_every_chart_is_titled_with_labelled_axes() {
    let dir = tempfile::tempdir().unwrap();
    let s = journal(dir.path());
    let r = report(s.as_ref(), &Config::default(), None).unwrap();
    let html = page::page(&r, "2026-12-06T17:00:00Z");
    let lower = html.to_lowercase();
    for banned in [
        "<script", "http:", "https:", "url(", "@import", "<link", "<img", "src=\"",
    ] {
        assert!(!lower.contains(banned), "{banned} in the page");
    }
    // The domain from outside is shown, escaped.
    assert!(html.contains("&lt;img src=x&gt;.org"));
    let charts: Vec<&str> = html.split("<svg").skip(1).collect();
    assert_eq!(charts.len(), 6, "charts");
    for c in &charts {
        let c = &c[..c.find("</svg>").unwrap()];
        let title = c
            .split("<title")
            .nth(1)
            .map(|t| &t[t.find('>').unwrap() + 1..]);
        assert!(title.is_some_and(|t| t.len() > 10), "untitled chart: {c}");
        assert_eq!(c.matches("class=\"axis-label\"").count(), 2, "axes: {c}");
        // Every text is inside the drawing (a legend below it is not cut off).
        let height: f64 = c
            .split("viewBox=\"0 0 720 ")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        for t in c.split("<text ").skip(1) {
            if let Some(y) = t.split(" y=\"").nth(1) {
                let y: f64 = y.split('"').next().unwrap().parse().unwrap();
                assert!(y < height - 4.0, "text at {y} of {height}: {t}");
            }
        }
    }
    for id in [
        "rates",
        "complaint-rate",
        "per-minute",
        "domains-chart",
        "trend-rates",
    ] {
        assert!(html.contains(&format!("id=\"{id}\"")), "{id}");
    }
    // The complaint rate is drawn against both limits, labelled.
    assert_eq!(html.matches("class=\"limit\"").count(), 4);
    assert!(html.contains("0.1%: Gmail and Yahoo"));
    assert!(html.contains("0.3%: at or above"));
    // The numbers are there, in the cells named for them.
    let cell = |key: &str| {
        let tag = format!("data-figure=\"{key}\">");
        let at = html.find(&tag).unwrap() + tag.len();
        html[at..at + html[at..].find('<').unwrap()].to_string()
    };
    assert_eq!(cell("sent"), "26");
    assert_eq!(cell("mailed"), "28");
    assert_eq!(cell("complaints"), "1");
    assert_eq!(cell("unsubscribes"), "3");
    assert!(html.contains("data-rate=\"complaints\">3.85%<"));
    assert!(html.contains("<tr data-domain=\"the rest (5 domains)\">"));
}

#[test]
fn a_long_send_is_drawn_per_few_minutes_and_axes_are_round() {
    use crate::store::MinuteCount;
    let minutes = (0..600)
        .map(|i| MinuteCount {
            relay: Some("main".into()),
            minute: jiff::Timestamp::from_second(1_765_000_000 + i * 60)
                .unwrap()
                .to_string()[..16]
                .to_string(),
            sent: 10,
        })
        .collect();
    let mut r = Report {
        campaign: "c".into(),
        post: "p.md".into(),
        created_at: "2026-12-06T10:00:00Z".into(),
        finished_at: None,
        counts: Counts::default(),
        outcomes: Outcomes::default(),
        per_minute: per_relay(minutes),
        domains: Vec::new(),
        other_domains: None,
        trend: Vec::new(),
        complaint_limits: COMPLAINT_LIMITS,
    };
    let html = page::page(&r, "now");
    // 600 minutes in steps of 5: 120 points, 50 messages each.
    assert!(html.contains("Messages accepted per 5 minutes"), "{html}");
    // The axis is in round steps of 20 up to 60, above the 50 of each point.
    assert!(html.contains(">20<") && html.contains(">60<"), "{html}");
    assert!(!html.contains(">50<"));
    r.per_minute.clear();
    assert!(page::page(&r, "now").contains("No message was accepted yet."));
}
