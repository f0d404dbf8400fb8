//! The marketing desk (issue 16): the CSV export of a campaign, read back
//! with Python's csv module as a spreadsheet import would.

use herald::store::{self, BounceEvent, Source, State, Suppressed, Update};

use crate::util::*;

const CAMPAIGN: &str = "news@2025-06-03";

#[test]
fn status_csv_has_one_row_per_recipient_with_a_bom_and_no_formulas() {
    let Some(python) = python_with("csv") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let journal = tmp.path().join("journal");
    {
        let mut s = store::open(&journal).unwrap();
        s.upsert_campaign(CAMPAIGN, "post.md", "hash", &[]).unwrap();
        let mut import = s.import(CAMPAIGN).unwrap();
        for (i, email) in [
            "ana@example.org",
            "=cmd@example.org",
            "Bob@Example.org",
            "carla@example.org",
            "dan@example.org",
        ]
        .iter()
        .enumerate()
        {
            import.add(email, i as i64 + 2, &[]).unwrap();
        }
        import.commit().unwrap();
        let rows = s.queue(CAMPAIGN, 0, 100, false).unwrap();
        let seq = |email: &str| rows.iter().find(|r| r.email == email).unwrap().seq;
        let update = |email: &str, state, reply: &str, attempts| Update {
            seq: seq(email),
            state,
            reply: Some(reply.into()),
            attempts,
            suppress: None,
            relay: None,
        };
        s.apply(
            CAMPAIGN,
            &[
                update("ana@example.org", State::Sent, "250 2.0.0 Ok: queued", 1),
                // A reply a hostile server could make: a formula.
                update(
                    "=cmd@example.org",
                    State::Failed,
                    "=HYPERLINK(\"http://evil.example\",\"click\")",
                    1,
                ),
                update("Bob@Example.org", State::Sent, "250 ok", 1),
                update("carla@example.org", State::Deferred, "-451 try later", 4),
            ],
        )
        .unwrap();
        s.record_message(
            "msg-1",
            &[BounceEvent {
                email: "bob@example.org".into(),
                campaign: Some(CAMPAIGN.into()),
                kind: "bounce".into(),
                status: "5.1.1".into(),
                hard: true,
                reason: "userunknown".into(),
                diagnostic: Some("550 5.1.1 no such user".into()),
                action: "suppressed".into(),
                message: "bounce-1.eml".into(),
                at: "2025-06-04T10:00:00Z".into(),
            }],
            &[],
        )
        .unwrap();
        s.suppress(&[Suppressed {
            email: "ana@example.org".into(),
            reason: "one-click unsubscribe".into(),
            source: Source::OneClick,
            campaign: Some(CAMPAIGN.into()),
            added_at: "2025-06-05T09:00:00Z".into(),
        }])
        .unwrap();
    }
    let o = herald(
        tmp.path(),
        &[
            "status",
            CAMPAIGN,
            "--csv",
            "--journal",
            journal.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let file = tmp.path().join("export.csv");
    std::fs::write(&file, &o.stdout).unwrap();
    let v = &python_json(&python, "read_csv.py", &[&file])[0];
    assert_eq!(v["bom"], true, "{v}");
    assert_eq!(v["widths"], serde_json::json!([9]), "{v}");
    let rows = v["rows"].as_array().unwrap();
    let emails: Vec<_> = rows.iter().map(|r| r["email"].as_str().unwrap()).collect();
    assert_eq!(
        emails,
        [
            "ana@example.org",
            "'=cmd@example.org",
            "Bob@Example.org",
            "carla@example.org",
            "dan@example.org"
        ]
    );
    let row = |i: usize, col: &str| rows[i][col].as_str().unwrap().to_string();
    assert_eq!(row(0, "state"), "sent");
    assert_eq!(row(0, "last_reply"), "250 2.0.0 Ok: queued");
    // ISO 8601 to the second with its zone, which spreadsheets read as a
    // date (the journal keeps nanoseconds).
    let updated = row(0, "updated_at");
    assert!(
        updated.len() == 20 && updated.starts_with("20") && updated.ends_with('Z'),
        "{updated}"
    );
    assert!(
        updated.len() == 20 && updated.ends_with('Z') && updated.parse::<jiff::Timestamp>().is_ok(),
        "{updated}"
    );
    assert_eq!(row(0, "suppressed"), "one-click");
    assert_eq!(row(0, "suppressed_at"), "2025-06-05T09:00:00Z");
    assert_eq!(row(1, "state"), "failed");
    assert_eq!(
        row(1, "last_reply"),
        "'=HYPERLINK(\"http://evil.example\",\"click\")"
    );
    assert_eq!(
        row(2, "came_back"),
        "hard bounce 5.1.1 550 5.1.1 no such user"
    );
    assert_eq!(row(2, "came_back_at"), "2025-06-04T10:00:00Z");
    assert_eq!(
        (row(3, "state"), row(3, "attempts")),
        ("deferred".into(), "4".into())
    );
    assert_eq!(row(3, "last_reply"), "'-451 try later");
    assert_eq!(
        (row(4, "state"), row(4, "last_reply")),
        ("pending".into(), String::new())
    );
    // No field anywhere starts like a formula.
    for r in rows {
        for (_, f) in r.as_object().unwrap() {
            let f = f.as_str().unwrap();
            assert!(!f.starts_with(['=', '+', '-', '@', '\t', '\r']), "{f}");
        }
    }
    // An unknown campaign is an error naming it; --csv needs a campaign.
    let o = herald(
        tmp.path(),
        &[
            "status",
            "nope",
            "--csv",
            "--journal",
            journal.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("no campaign nope"), "{}", stderr(&o));
    // Without a campaign, --csv lists the campaigns, one row each, with
    // when each started sending.
    let o = herald(
        tmp.path(),
        &["status", "--csv", "--journal", journal.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    std::fs::write(&file, &o.stdout).unwrap();
    let v = &python_json(&python, "read_csv.py", &[&file])[0];
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{v}");
    assert_eq!(rows[0]["campaign"], CAMPAIGN, "{v}");
    assert_eq!(rows[0]["state"], "in progress", "{v}");
    assert_eq!(rows[0]["recipients"], "5", "{v}");
    assert_eq!(rows[0]["sent"], "2", "{v}");
    let started = rows[0]["started_at"].as_str().unwrap();
    assert!(
        started.len() == 20 && started.ends_with('Z') && started.parse::<jiff::Timestamp>().is_ok(),
        "{v}"
    );
    // With no journal at all: only the header.
    let o = herald(tmp.path(), &["status", "--csv"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("\u{feff}campaign,post,state,started_at"),
        "{}",
        stdout(&o)
    );
}

/// A post with a link to the site, one that already carries a
/// `utm_source`, one to a partner site, one to another site, a
/// personal (merge-field) link, a button and the unsubscribe page.
const TAGGED_POST: &str = r#"---
templateKey: blog-post
title: "Tagged links"
date: 2025-06-03T15:04:05.000Z
seo:
  url: https://openinfra.org/blog/tagged-links
---
Read [the report](https://openinfra.org/report?year=2025) and
[the partner's page](https://openinfra.org/partners?utm_source=partner),
visit [Superuser](https://superuser.openinfra.org/articles/x),
[another site](https://example.com/page),
[your profile](https://openinfra.org/profile?id={{ id | default: "x" }})
and [leave](https://openinfra.org/newsletter/unsubscribe).

[READ MORE >>](/blog/tagged-links)
"#;

fn links_in(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("http") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '<' | '>' | ')' | ']'))
            .unwrap_or(tail.len());
        out.push(tail[..end].replace("&amp;", "&").replace("&#38;", "&"));
        rest = &tail[end..];
    }
    out
}

#[test]
fn campaign_tags_go_on_own_site_links_alike_in_html_and_text() {
    let tmp = tempfile::tempdir().unwrap();
    let post = tmp.path().join("tagged.md");
    std::fs::write(&post, TAGGED_POST).unwrap();
    let base = std::fs::read_to_string(example_config()).unwrap();
    let config = tmp.path().join("herald.yaml");
    std::fs::write(
        &config,
        format!(
            "{base}\nutm:\n  source: newsletter\n  medium: email\n  campaign: \"{{{{ slug }}}}\"\n\
             utm_domains:\n  - superuser.openinfra.org\n"
        ),
    )
    .unwrap();
    let out = tmp.path().join("preview");
    let o = herald(
        tmp.path(),
        &[
            "preview",
            post.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let html = std::fs::read_to_string(out.join("email.html")).unwrap();
    let text = std::fs::read_to_string(out.join("email.txt")).unwrap();
    let tags = "utm_source=newsletter&utm_medium=email&utm_campaign=tagged-links";
    let wanted = [
        format!("https://openinfra.org/report?year=2025&{tags}"),
        "https://openinfra.org/partners?utm_source=partner&utm_medium=email&utm_campaign=tagged-links"
            .to_string(),
        format!("https://superuser.openinfra.org/articles/x?{tags}"),
        format!("https://openinfra.org/blog/tagged-links?{tags}"),
    ];
    for part in [&html, &text] {
        let links = links_in(part);
        for w in &wanted {
            assert!(links.contains(w), "{w} not in {links:#?}");
        }
        assert!(
            links.contains(&"https://example.com/page".to_string()),
            "{links:#?}"
        );
        // Personal links and the unsubscribe link are never tagged.
        for l in &links {
            if l.contains("profile") || l.contains("unsubscribe") {
                assert!(!l.contains("utm_"), "{l}");
            }
        }
    }
    // The same tagged links in both parts.
    let tagged = |s: &str| {
        let mut v: Vec<String> = links_in(s)
            .into_iter()
            .filter(|l| l.contains("utm_"))
            .collect();
        v.sort();
        v.dedup();
        v
    };
    assert_eq!(tagged(&html), tagged(&text));
    // `check` says how many links were tagged.
    let o = herald(
        tmp.path(),
        &[
            "check",
            post.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    assert!(
        stdout(&o).contains(
            "4 link(s) to openinfra.org, superuser.openinfra.org carry the campaign tags"
        ),
        "{}",
        stdout(&o)
    );
    // A bad tag names the setting.
    std::fs::write(&config, format!("{base}\nutm:\n  sorce: newsletter\n")).unwrap();
    let o = herald(
        tmp.path(),
        &[
            "check",
            post.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("`utm`"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("`sorce` is not a campaign tag"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn check_links_reports_broken_links_with_their_line_and_moves_as_notices() {
    let Some(python) = python_with("http.server") else {
        return;
    };
    use std::io::BufRead;
    let mut server = std::process::Command::new(&python)
        .arg(repo().join("tests/tools/link_server.py"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    std::io::BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let port = port.trim();
    let at = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let tmp = tempfile::tempdir().unwrap();
    let post = tmp.path().join("links.md");
    let lines = [
        "---",
        "templateKey: blog-post",
        "title: \"Links\"",
        "date: 2025-06-03T15:04:05.000Z",
        "---",
        &format!("Fine: [ok]({}) and [again]({}).", at("/ok"), at("/ok")),
        "",
        &format!("Moved here: [moved]({}).", at("/moved")),
        "",
        &format!("Gone: [gone]({}).", at("/gone")),
        "",
        &format!("Broken server: [error]({}).", at("/error")),
        "",
        &format!("Slow: [slow]({}).", at("/slow")),
        "",
        &format!("Loop: [loop]({}).", at("/loop-a")),
        "",
        &format!("No HEAD: [nohead]({}).", at("/nohead")),
        "",
        &format!("Away: [away]({}).", at("/away")),
        "",
        "Mail [us](mailto:news@example.org).",
    ];
    std::fs::write(&post, lines.join("\n")).unwrap();
    let o = herald(
        tmp.path(),
        &["check", post.to_str().unwrap(), "--links", "--json"],
    );
    // A second check within the day visits only the broken links again.
    let again = herald(
        tmp.path(),
        &["check", post.to_str().unwrap(), "--links", "--json"],
    );
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));
    assert!(tmp.path().join(".herald/linkcheck.json").exists());
    let _ = server.kill();
    let log = {
        let mut s = String::new();
        use std::io::Read;
        server
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        let _ = server.wait();
        s
    };
    assert_eq!(o.status.code(), Some(1), "{}\n{}", stdout(&o), stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let found: Vec<(String, u64, String)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"].as_str().unwrap().starts_with("link-"))
        .map(|f| {
            (
                f["code"].as_str().unwrap().to_string(),
                f["line"].as_u64().unwrap_or(0),
                f["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let has = |code: &str, line: u64, says: &str| {
        assert!(
            found
                .iter()
                .any(|(c, l, m)| c == code && *l == line && m.contains(says)),
            "{code} at line {line} saying {says:?} not in {found:#?}"
        );
    };
    has("link-broken", 10, "404");
    has("link-broken", 12, "500");
    has("link-broken", 14, "cannot be reached");
    has("link-broken", 16, "loop");
    has("link-moved", 20, "localhost");
    // /ok, /moved (same site) and /nohead (GET after 405) are fine.
    assert_eq!(found.len(), 5, "{found:#?}");
    // Each distinct link visited once, with herald's User-Agent.
    assert_eq!(
        log.matches("HEAD /ok ").count(),
        3,
        "ok, moved's target, away's: {log}"
    );
    assert_eq!(log.matches("GET /nohead").count(), 1, "{log}");
    assert_eq!(log.matches("HEAD /gone").count(), 2, "{log}");
    assert!(log.lines().all(|l| l.contains("herald/")), "{log}");
}
