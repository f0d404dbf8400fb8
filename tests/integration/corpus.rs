//! Every real post from the website previews into a complete email.

use crate::util::*;

#[test]
fn every_corpus_post_previews_into_a_complete_email() {
    let Some(files) = corpus_files() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (i, post) in files.iter().enumerate() {
        let out = tmp.path().join(format!("p{i}"));
        let o = herald(
            tmp.path(),
            &[
                "preview",
                post.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
        );
        if !o.status.success() {
            failures.push(format!(
                "{}: preview failed: {}",
                post.display(),
                stderr(&o)
            ));
            continue;
        }
        for problem in problems_in_preview(&out, &expected(post)) {
            failures.push(format!("{}: {problem}", post.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("checked {} corpus posts", files.len());
}

#[test]
fn every_corpus_post_checks_without_crashing_and_json_parses() {
    let Some(files) = corpus_files() else { return };
    let tmp = tempfile::tempdir().unwrap();
    for post in &files {
        let o = herald(
            tmp.path(),
            &["check", post.to_str().unwrap(), "--format", "json"],
        );
        let code = o.status.code();
        assert!(
            matches!(code, Some(0 | 1)),
            "{}: exit {code:?}: {}",
            post.display(),
            stderr(&o)
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {}", post.display(), stdout(&o)));
        let errors = v["errors"].as_u64().unwrap();
        assert_eq!(code == Some(1), errors > 0, "{}", post.display());
    }
}

#[test]
fn annual_report_svg_logos_are_reported_with_their_lines() {
    let Some(files) = corpus_files() else { return };
    let report = files
        .iter()
        .find(|p| p.ends_with("annual-reports/2023.md"))
        .expect("2023 report in corpus");
    let source = std::fs::read_to_string(report).unwrap();
    let svg_lines: Vec<usize> = source
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("<div"))
        .map(|(i, _)| i + 1)
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let o = herald(
        tmp.path(),
        &["check", report.to_str().unwrap(), "--format", "json"],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let svg: Vec<u64> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "svg-image")
        .map(|f| f["line"].as_u64().unwrap())
        .collect();
    assert_eq!(svg.len(), 6, "{svg:?}");
    for line in svg {
        assert!(
            svg_lines.contains(&(line as usize)),
            "svg finding on line {line}, logo blocks start at {svg_lines:?}"
        );
    }
}

/// Gmail hides everything after 102 KB of HTML, the unsubscribe link too.
/// Sends every corpus post (dry run) to an address as long as real ones
/// get, and reads the largest personalised HTML part herald reports:
/// newsletters and other posts must fit as they are, annual reports with
/// `--fit`, and the digest must end with the footer intact.
#[test]
fn every_post_fits_gmail_annual_reports_with_fit() {
    const CLIP: u64 = 102 * 1024;
    let Some(files) = corpus_files() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let list = tmp.path().join("list.csv");
    let long = format!("{}@{}.example.org", "x".repeat(64), "mail".repeat(10));
    std::fs::write(
        &list,
        format!("email,first_name\n{long},Maximiliana-Alexandrina\n"),
    )
    .unwrap();
    let config = example_config();
    let mut digests = 0;
    for (i, post) in files.iter().enumerate() {
        let report = post.parent().unwrap().ends_with("annual-reports");
        let outbox = tmp.path().join(format!("o{i}"));
        let mut args = vec![
            "send",
            post.to_str().unwrap(),
            "--subscribers",
            list.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--dry-run",
            "--json",
            "--outbox",
            outbox.to_str().unwrap(),
        ];
        if report {
            args.push("--fit");
        }
        let o = herald_env(tmp.path(), &args, &[("HERALD_UNSUBSCRIBE_SECRET", "s")]);
        assert!(o.status.success(), "{}: {}", post.display(), stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let html = v["largest_html_bytes"].as_u64().unwrap();
        assert!(
            html > 5_000,
            "{}: {html} bytes of HTML is no email",
            post.display()
        );
        assert!(
            html <= CLIP,
            "{}: the largest email has {html} bytes of HTML; Gmail clips it at {CLIP}{}",
            post.display(),
            if report { " (even with --fit)" } else { "" }
        );
        assert!(!stderr(&o).contains("Gmail clips"), "{}", post.display());

        let eml = std::fs::read_to_string(&eml_files(&outbox)[0]).unwrap();
        let start = eml.find("<!doctype html>").expect("an HTML part");
        let footer = eml[start..]
            .find(">Unsubscribe</a>")
            .expect("the unsubscribe link");
        assert!(
            footer < CLIP as usize,
            "{}: the footer is past the clip",
            post.display()
        );
        if eml.contains(">Continue reading<") {
            digests += 1;
            let web = v["campaign"].as_str().unwrap().to_string();
            assert!(
                report,
                "{}: a digest made without --fit ({web})",
                post.display()
            );
            assert!(
                eml.contains("Read the full "),
                "{}: no note that this is a digest",
                post.display()
            );
        }
    }
    // The 2023 report cannot fit whole (its text alone is over 75 KB).
    assert!(digests >= 1, "no annual report needed a digest");
}

/// The digest keeps each section of the 2023 report: its heading, and a
/// "Continue reading" button to that section of the web version.
#[test]
fn fit_digest_of_the_2023_report_links_every_section_to_the_web() {
    let Some(files) = corpus_files() else { return };
    let report = files
        .iter()
        .find(|p| p.ends_with("annual-reports/2023.md"))
        .expect("2023 report in corpus");
    let tmp = tempfile::tempdir().unwrap();
    let (full, fit) = (tmp.path().join("full"), tmp.path().join("fit"));
    for (out, extra) in [(&full, None), (&fit, Some("--fit"))] {
        let mut args = vec![
            "preview",
            report.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(extra);
        let o = herald(tmp.path(), &args);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let read = |d: &std::path::Path, f: &str| std::fs::read_to_string(d.join(f)).unwrap();
    let (full_html, fit_html) = (read(&full, "email.html"), read(&fit, "email.html"));
    assert!(
        fit_html.len() * 2 < full_html.len() + 1,
        "the digest is not much smaller"
    );
    let web = "https://openinfra.dev/annual-report/2023";
    let ids: Vec<&str> = full_html
        .split("<h2 id=\"")
        .skip(1)
        .map(|s| &s[..s.find('"').unwrap()])
        .collect();
    assert!(ids.len() >= 8, "{ids:?}");
    for id in &ids {
        assert!(
            fit_html.contains(&format!("<h2 id=\"{id}\"")),
            "heading {id} lost"
        );
        assert!(
            fit_html.contains(&format!("href=\"{web}#{id}\"")),
            "no Continue reading link to {web}#{id}"
        );
    }
    assert_eq!(fit_html.matches(">Continue reading<").count(), ids.len());
    // The text part is the digest too, with the same links.
    let text = read(&fit, "email.txt");
    assert_eq!(text.matches("Continue reading").count(), ids.len());
    assert!(text.contains(&format!("{web}#{}", ids[0])));
}

/// SpamAssassin's score (`-t -L`, offline rules) of one message file, and
/// the report's rule lines for a failure message.
pub fn spamassassin_score(sa: &std::path::Path, eml: &std::path::Path) -> (f64, String) {
    let out = std::process::Command::new(sa)
        .args(["-t", "-L"])
        .stdin(std::fs::File::open(eml).unwrap())
        .output()
        .unwrap();
    let report = stdout(&out);
    let status = report
        .lines()
        .find(|l| l.starts_with("X-Spam-Status:"))
        .unwrap_or_else(|| panic!("no X-Spam-Status: {report:.2000}"));
    let score: f64 = status
        .split("score=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{status}"));
    let details = report
        .split("Content analysis details")
        .nth(1)
        .unwrap_or(&report)
        .to_string();
    (score, details)
}

/// Every newsletter, and every annual report's `--fit` digest, as one
/// subscriber gets it, scores at most 0.1 in SpamAssassin: nothing in what
/// herald adds to every issue (the hidden preview text, the headers, the
/// footer) may cost points with the filters.
#[test]
fn spamassassin_scores_every_newsletter_and_digest_at_most_0_1() {
    let Some(files) = corpus_files() else { return };
    let Some(sa) = tool("spamassassin") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let config = example_config();
    let mut failures = Vec::new();
    let mut scored = 0;
    for (i, post) in files.iter().enumerate() {
        let dir = post.parent().unwrap();
        let report = dir.ends_with("annual-reports");
        if !report && !dir.ends_with("newsletters") {
            continue;
        }
        let outbox = tmp.path().join(format!("o{i}"));
        let mut args = vec![
            "send",
            post.to_str().unwrap(),
            "--to",
            "reader@example.com",
            "--config",
            config.to_str().unwrap(),
            "--dry-run",
            "--outbox",
            outbox.to_str().unwrap(),
        ];
        if report {
            args.push("--fit");
        }
        let o = herald_env(tmp.path(), &args, &[("HERALD_UNSUBSCRIBE_SECRET", "s")]);
        assert!(o.status.success(), "{}: {}", post.display(), stderr(&o));
        let eml = &eml_files(&outbox)[0];
        let (score, details) = spamassassin_score(&sa, eml);
        eprintln!("SpamAssassin {score:>5.1} {}", post.display());
        scored += 1;
        if score > 0.1 {
            failures.push(format!("{}: score {score}\n{details}", post.display()));
        }
    }
    assert!(scored > 0, "no newsletter or annual report in the corpus");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A `--fit` digest keeps a heading and a "Continue reading" link for every
/// section of the report, the sub-sections before its first top-level
/// heading included (the 2021 report has eight of them, 474 lines).
#[test]
fn fit_digests_of_the_annual_reports_keep_every_section() {
    use pulldown_cmark::{Event, HeadingLevel, Parser, Tag, TagEnd};
    let Some(files) = corpus_files() else { return };
    let reports: Vec<_> = files
        .iter()
        .filter(|p| p.parent().unwrap().ends_with("annual-reports"))
        .collect();
    for year in ["2021", "2022", "2023", "2024"] {
        if !reports.iter().any(|p| p.file_stem().unwrap() == year) {
            eprintln!("SKIPPED: annual-reports/{year}.md is not in the corpus");
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut digests = 0;
    for (i, post) in reports.iter().enumerate() {
        let out = tmp.path().join(format!("p{i}"));
        let o = herald(
            tmp.path(),
            &[
                "preview",
                post.to_str().unwrap(),
                "--fit",
                "--out",
                out.to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "{}: {}", post.display(), stderr(&o));
        let text = std::fs::read_to_string(out.join("email.txt")).unwrap();
        if !text.contains("Continue reading") {
            continue; // it fits whole
        }
        digests += 1;
        // The source's headings: every top-level one, and every one before it.
        let loaded = herald::post::load(post).unwrap();
        let mut heads: Vec<(HeadingLevel, String)> = Vec::new();
        let mut cur: Option<(HeadingLevel, String)> = None;
        for ev in Parser::new(&loaded.body) {
            match ev {
                Event::Start(Tag::Heading { level, .. }) => cur = Some((level, String::new())),
                Event::Text(t) | Event::Code(t) => {
                    if let Some((_, s)) = cur.as_mut() {
                        s.push_str(&t)
                    }
                }
                Event::End(TagEnd::Heading(_)) => {
                    if let Some((l, s)) = cur.take() {
                        heads.push((l, collapse(&s)))
                    }
                }
                _ => {}
            }
        }
        let top = heads.iter().map(|(l, _)| *l).min().unwrap();
        let first_top = heads.iter().position(|(l, _)| *l == top).unwrap();
        let wanted: Vec<&str> = heads
            .iter()
            .enumerate()
            .filter(|(n, (l, _))| *n < first_top || *l == top)
            .map(|(_, (_, s))| s.as_str())
            .filter(|s| !s.is_empty())
            .collect();
        let flat = collapse(&text);
        for h in &wanted {
            assert!(
                flat.contains(h),
                "{}: the digest lost the heading {h:?}",
                post.display()
            );
        }
        let buttons = text.matches("Continue reading").count();
        assert!(
            buttons >= wanted.len(),
            "{}: {buttons} \"Continue reading\" links for {} sections",
            post.display(),
            wanted.len()
        );
        eprintln!(
            "{}: {} sections, {buttons} Continue reading",
            post.display(),
            wanted.len()
        );
    }
    assert!(digests >= 1, "no annual report needed a digest");
}
