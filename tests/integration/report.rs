//! `herald report` end to end (issue 28's "done when"): an issue sent
//! through a private real Postfix that bounces two recipients, `herald
//! bounces` over what came back (and a complaint and a soft bounce), two
//! one-click unsubscribes through a running `herald serve` with curl; then
//! every figure of `herald report --json` and of the page is checked
//! against the journal (read here with SQL) and `herald status --json`. A
//! second issue makes the trend. The page is looked at in headless
//! Chromium at 1200 and 375 px: target/report-1200.png, target/report-375.png.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::returned::{Postfix, SECRET, arf, bounces_json, config, deliver, dsn, run};
use crate::serve::{Serve, one_click};
use crate::util::*;

/// The list, in order (a new campaign numbers them 1, 2, ...): six who
/// receive it, two unknown at Postfix's own domain (they bounce).
const PEOPLE: [&str; 8] = [
    "reader0@example.org",
    "reader1@example.org",
    "reader2@example.org",
    "reader3@example.org",
    "ana@example.net",
    "bo@example.net",
    "nosuchuser1@relay.test",
    "nosuchuser2@relay.test",
];

fn send(dir: &Path, post: &Path, list: &Path, postfix: &Postfix, serve: &Serve) -> Value {
    let unsubscribe = format!("unsubscribe_url={}", serve.url("/unsubscribe"));
    let o = run(
        dir,
        &[
            "send",
            post.to_str().unwrap(),
            "--subscribers",
            list.to_str().unwrap(),
            "--smtp",
            &postfix.url(),
            "--set",
            &unsubscribe,
            "--yes",
            "--json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Each delivered message's `List-Unsubscribe` link, by recipient.
fn unsubscribe_links(maildir: &Path) -> BTreeMap<String, String> {
    let mut links = BTreeMap::new();
    for e in std::fs::read_dir(maildir.join("new")).unwrap().flatten() {
        let text = std::fs::read_to_string(e.path())
            .unwrap()
            .replace("\r\n", "\n");
        let head = text
            .split("\n\n")
            .next()
            .unwrap()
            .replace("\n ", " ")
            .replace("\n\t", " ");
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in {head}"))
                .to_string()
        };
        let to = header("To: ");
        let to = to
            .rsplit('<')
            .next()
            .unwrap()
            .trim_end_matches('>')
            .to_string();
        let link = header("List-Unsubscribe: <");
        links.insert(to, link.split('>').next().unwrap().to_string());
    }
    links
}

fn report_json(dir: &Path, campaign: Option<&str>) -> Value {
    let mut args = vec!["report", "--json"];
    args.extend(campaign);
    let o = run(dir, &args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// One number from the journal, by SQL.
fn sql(dir: &Path, query: &str, campaign: &str) -> i64 {
    let db = rusqlite::Connection::open(dir.join(".herald/journal.db")).unwrap();
    db.query_row(query, [campaign], |r| r.get(0)).unwrap()
}

/// The cells of the page whose attribute `attr` names them: name -> text.
fn cells(html: &str, attr: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let tag = format!(" {attr}=\"");
    for piece in html.split(&tag).skip(1) {
        let name = &piece[..piece.find('"').unwrap()];
        let text = &piece[piece.find('>').unwrap() + 1..];
        out.insert(
            name.to_string(),
            text[..text.find('<').unwrap()].to_string(),
        );
    }
    out
}

/// The page's row whose `attr` is `key`: its cells by `data-col`.
fn row(html: &str, attr: &str, key: &str) -> BTreeMap<String, String> {
    let tag = format!("<tr {attr}=\"{key}\">");
    let start = html.find(&tag).unwrap_or_else(|| panic!("no row {tag}"));
    let rest = &html[start..];
    cells(&rest[..rest.find("</tr>").unwrap()], "data-col")
}

fn as_i64(s: &str) -> i64 {
    s.parse().unwrap_or_else(|_| panic!("not a number: {s}"))
}

#[test]
fn the_report_of_a_real_send_says_what_the_journal_says() {
    let tmp = tempfile::tempdir().unwrap();
    let readers: Vec<&str> = PEOPLE[1..6].to_vec();
    let Some(postfix) = Postfix::start_with(&tmp.path().join("postfix"), &readers) else {
        return;
    };
    let dir = tmp.path().join("work");
    std::fs::create_dir_all(&dir).unwrap();
    config(&dir);
    let list = dir.join("list.csv");
    std::fs::write(&list, format!("email\n{}\n", PEOPLE.join("\n"))).unwrap();
    let serve = Serve::start(&dir, &[], &[("HERALD_UNSUBSCRIBE_SECRET", SECRET)]);
    let may = send(&dir, &example_post(), &list, &postfix, &serve);
    let may_id = may["campaign"].as_str().unwrap().to_string();
    assert_eq!(may["counts"]["sent"], 8, "{may}");
    let inbox = postfix.wait_for("readers", 6);
    let bounces = postfix.wait_for("bounces", 2);

    // What came back: Postfix's two bounces; ana complains, reader3's
    // mailbox is full (hand-made, to herald's VERP return path).
    let keys = herald::unsubscribe::Keys::new(SECRET.as_bytes().to_vec(), vec![]);
    let verp = |who: &str| {
        let seq = PEOPLE.iter().position(|p| *p == who).unwrap() as i64 + 1;
        format!("bounces+{}@example.org", keys.verp_token(&may_id, seq))
    };
    deliver(
        &bounces,
        "complaint.arf",
        &arf(&verp("ana@example.net"), "ana@example.net"),
    );
    deliver(
        &bounces,
        "full.dsn",
        &dsn(
            &verp("reader3@example.org"),
            "reader3@example.org",
            "4.2.2",
            "452 4.2.2 Mailbox full",
        ),
    );
    let v = bounces_json(&dir, &bounces, &[]);
    assert_eq!(v["messages"].as_array().unwrap().len(), 4, "{v}");

    // Two readers press their mail program's unsubscribe button.
    let links = unsubscribe_links(&inbox);
    for who in ["reader1@example.org", "bo@example.net"] {
        let a = one_click(&links[who]);
        assert_eq!(a.status, 200, "{}", a.body);
    }

    let r = report_json(&dir, None);
    assert_eq!(r["campaign"], may_id.as_str());
    check_against_the_journal(&dir, &r, &may_id);
    let page = dir.join("report.html");
    let o = run(&dir, &["report", "--out", page.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    check_the_page(&std::fs::read_to_string(&page).unwrap(), &r);

    // June: the two bounced and the complainer are left out; the trend
    // is May then June, May's as its own report says.
    let june = send(
        &dir,
        &another_issue(&dir, "june-issue"),
        &list,
        &postfix,
        &serve,
    );
    assert_eq!(june["counts"]["sent"], 3, "{june}");
    let r = report_json(&dir, None);
    let june_id = june["campaign"].as_str().unwrap();
    assert_eq!(r["campaign"], june_id);
    check_against_the_journal(&dir, &r, june_id);
    let trend = r["trend"].as_array().unwrap();
    assert_eq!(trend.len(), 2, "{r}");
    assert_eq!(trend[0]["campaign"], may_id.as_str());
    let again = report_json(&dir, Some(&may_id));
    for k in [
        "sent",
        "mailed",
        "hard_bounces",
        "complaints",
        "unsubscribes",
    ] {
        assert_eq!(trend[0][k], again["outcomes"][k], "{k}");
    }
    assert_eq!(trend[0]["hard_bounces"]["count"], 2);
    let o = run(&dir, &["report", "--out", page.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let html = std::fs::read_to_string(&page).unwrap();
    check_the_page(&html, &r);
    let may_row = row(&html, "data-campaign", &may_id);
    assert_eq!(may_row["hard_bounces"], "2");
    assert_eq!(may_row["complaints"], "1");
    look_in_chromium(&page);

    // An unknown campaign is the user's to fix (exit 2), and says how.
    let o = run(&dir, &["report", "no-such-campaign"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("herald status"), "{}", stderr(&o));
}

/// Every figure of the report as the journal and `herald status` have it.
fn check_against_the_journal(dir: &Path, r: &Value, campaign: &str) {
    let o = &r["outcomes"];
    let status = run(dir, &["status", campaign, "--json"]);
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    let s = &status[0];
    assert_eq!(r["counts"], s["campaign"]["counts"]);
    assert_eq!(o["sent"], s["campaign"]["counts"]["sent"]);
    assert_eq!(o["deferred"]["count"], s["campaign"]["counts"]["deferred"]);
    assert_eq!(o["hard_bounces"]["count"], s["bounces"]["hard"]);
    assert_eq!(o["soft_bounces"]["count"], s["bounces"]["soft"]);
    assert_eq!(o["complaints"]["count"], s["bounces"]["complaints"]);
    assert_eq!(o["unsubscribed_by_link"], s["unsubscribed"]);
    let q = |query: &str| sql(dir, query, campaign);
    let sent = q("SELECT COUNT(*) FROM recipient WHERE campaign = ?1 AND state = 'sent'");
    assert_eq!(o["sent"], sent);
    let hard = q(
        "SELECT COUNT(*) FROM bounce WHERE campaign = ?1 AND kind = 'bounce' AND hard AND action <> 'recorded'",
    );
    assert_eq!(o["hard_bounces"]["count"], hard);
    let soft = q(
        "SELECT COUNT(*) FROM bounce WHERE campaign = ?1 AND kind = 'bounce' AND NOT hard AND action <> 'recorded'",
    );
    assert_eq!(o["soft_bounces"]["count"], soft);
    let complaints = q("SELECT COUNT(*) FROM bounce WHERE campaign = ?1 AND kind = 'complaint'");
    assert_eq!(o["complaints"]["count"], complaints);
    let clicks = q(
        "SELECT COUNT(DISTINCT email_key) FROM suppression WHERE campaign = ?1 AND source IN ('one-click', 'page')",
    );
    assert_eq!(o["unsubscribes"]["count"], clicks);
    let rate = o["complaints"]["rate"].as_f64().unwrap();
    assert!((rate - complaints as f64 / sent.max(1) as f64).abs() < 1e-12);

    // Per relay and minute: each sent recipient's relay and time.
    let db = rusqlite::Connection::open(dir.join(".herald/journal.db")).unwrap();
    let mut want: BTreeMap<(String, String), i64> = BTreeMap::new();
    let sent = pairs(
        &db,
        "SELECT relay, updated_at FROM recipient WHERE campaign = ?1 AND state = 'sent'",
        campaign,
    );
    for (relay, at) in sent {
        *want.entry((relay, at[..16].to_string())).or_default() += 1;
    }
    let mut got = BTreeMap::new();
    for s in r["per_minute"].as_array().unwrap() {
        for m in s["minutes"].as_array().unwrap() {
            let key = (
                s["relay"].as_str().unwrap().to_string(),
                m["minute"].as_str().unwrap().to_string(),
            );
            got.insert(key, m["sent"].as_i64().unwrap());
        }
    }
    assert_eq!(got, want);

    // Per domain: each recipient's state, by the part after the `@`.
    let mut want: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let states = pairs(
        &db,
        "SELECT email_key, state FROM recipient WHERE campaign = ?1",
        campaign,
    );
    for (email, state) in states {
        let e = want
            .entry(email.rsplit('@').next().unwrap().to_string())
            .or_default();
        e.0 += 1;
        e.1 += i64::from(state == "sent");
    }
    let got: BTreeMap<String, (i64, i64)> = r["domains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let n = |k: &str| d[k].as_i64().unwrap();
            (
                d["domain"].as_str().unwrap().to_string(),
                (n("recipients"), n("sent")),
            )
        })
        .collect();
    assert_eq!(got, want);
    assert!(r["other_domains"].is_null());
}

/// Every figure of the JSON on the page, in the cell named for it.
fn check_the_page(html: &str, r: &Value) {
    let o = &r["outcomes"];
    let figures = cells(html, "data-figure");
    assert_eq!(as_i64(&figures["sent"]), o["sent"].as_i64().unwrap());
    assert_eq!(as_i64(&figures["mailed"]), o["mailed"].as_i64().unwrap());
    let rates = cells(html, "data-rate");
    for k in [
        "deferred",
        "failed",
        "hard_bounces",
        "soft_bounces",
        "complaints",
        "unsubscribes",
    ] {
        assert_eq!(as_i64(&figures[k]), o[k]["count"].as_i64().unwrap(), "{k}");
        let rate = o[k]["rate"].as_f64().unwrap();
        assert_eq!(rates[k], format!("{:.2}%", rate * 100.0), "{k}");
    }
    for d in r["domains"].as_array().unwrap() {
        let cols = row(html, "data-domain", d["domain"].as_str().unwrap());
        for k in [
            "recipients",
            "sent",
            "deferred",
            "failed",
            "hard_bounces",
            "soft_bounces",
            "complaints",
            "unsubscribes",
        ] {
            assert_eq!(
                as_i64(&cols[k]),
                d[k].as_i64().unwrap(),
                "{} {k}",
                d["domain"]
            );
        }
    }
    for s in r["per_minute"].as_array().unwrap() {
        let total: i64 = s["minutes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["sent"].as_i64().unwrap())
            .sum();
        let tag = format!("<tr data-relay=\"{}\">", s["relay"].as_str().unwrap());
        let at = html.find(&tag).unwrap();
        assert!(html[at..].contains(&format!("data-figure=\"relay-sent\">{total}<")));
    }
    for t in r["trend"].as_array().unwrap() {
        let cols = row(html, "data-campaign", t["campaign"].as_str().unwrap());
        assert_eq!(as_i64(&cols["sent"]), t["sent"].as_i64().unwrap());
        assert_eq!(
            as_i64(&cols["unsubscribes"]),
            t["unsubscribes"]["count"].as_i64().unwrap()
        );
    }
    let lower = html.to_lowercase();
    for banned in ["<script", "http:", "https:", "url(", "<link"] {
        assert!(!lower.contains(banned), "{banned} in the page");
    }
}

/// The page at 1200 and 375 px in headless Chromium: nothing scrolls
/// sideways, every chart is titled and both its axes are labelled and
/// shown, no script runs and nothing is fetched.
fn look_in_chromium(page: &Path) {
    let Some(chromium) = tool("chromium") else {
        return;
    };
    let Some(node) = node_with("puppeteer-core") else {
        return;
    };
    let prefix: PathBuf = repo().join("target/report");
    let o = Command::new(node)
        .arg(repo().join("tests/tools/report_look.cjs"))
        .arg(&chromium)
        .arg(page)
        .arg(&prefix)
        .args(["1200", "375"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(
        v["requests"],
        serde_json::json!([]),
        "fetched: {}",
        v["requests"]
    );
    assert_eq!(
        v["console"],
        serde_json::json!([]),
        "console: {}",
        v["console"]
    );
    for w in v["widths"].as_array().unwrap() {
        let width = w["width"].as_i64().unwrap();
        assert!(
            w["scrollWidth"].as_i64().unwrap() <= w["innerWidth"].as_i64().unwrap(),
            "{width} px scrolls sideways: {w}"
        );
        assert_eq!(w["scripts"], 0);
        let charts = w["charts"].as_array().unwrap();
        assert_eq!(charts.len(), 6, "{width} px");
        for c in charts {
            assert!(c["title"].as_str().unwrap().len() > 10, "{width} px: {c}");
            let labels = c["axisLabels"].as_array().unwrap();
            assert_eq!(labels.len(), 2, "{width} px: {c}");
            for l in labels {
                assert!(
                    l["shown"].as_bool().unwrap() && !l["text"].as_str().unwrap().is_empty(),
                    "{width} px: {c}"
                );
            }
            assert!(
                c["width"].as_f64().unwrap() <= width as f64,
                "{width} px: {c}"
            );
        }
        assert!(w["text"].as_str().unwrap().contains("Spam complaints"));
        assert!(
            prefix
                .with_file_name(format!("report-{width}.png"))
                .is_file()
        );
    }
}

/// The two text columns of `sql` (one `?1`: the campaign), row by row.
fn pairs(db: &rusqlite::Connection, sql: &str, campaign: &str) -> Vec<(String, String)> {
    let mut st = db.prepare(sql).unwrap();
    st.query_map([campaign], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}
