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
        let loaded = herald::compose::post::load(post).unwrap();
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

/// Text as a mail program's inbox list reads it from the HTML: tags out,
/// entities decoded, runs of ordinary white space made one space. The
/// invisible characters (U+034F, U+200C) and no-break spaces are kept.
fn inbox_text(html: &str) -> String {
    let body = &html[html.find("<body").unwrap_or(0)..];
    let mut text = String::new();
    let mut rest = body;
    while let Some(lt) = rest.find('<') {
        text.push_str(&rest[..lt]);
        let tag = &rest[lt..];
        let skip_to = if tag.starts_with("<style") {
            tag.find("</style>").map_or(tag.len(), |e| e + 8)
        } else if tag.starts_with("<!--") {
            tag.find("-->").map_or(tag.len(), |e| e + 3)
        } else {
            tag.find('>').map_or(tag.len(), |e| e + 1)
        };
        text.push(' ');
        rest = &tag[skip_to..];
    }
    text.push_str(rest);
    let mut out = String::new();
    let mut s = text.as_str();
    while let Some(amp) = s.find('&') {
        out.push_str(&s[..amp]);
        let ent = &s[amp..];
        let end = ent.find(';').filter(|&e| e < 12);
        let decoded = end.and_then(|e| {
            let name = &ent[1..e];
            let c = match name {
                "nbsp" => Some('\u{a0}'),
                "zwnj" => Some('\u{200c}'),
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => name
                    .strip_prefix("#x")
                    .or_else(|| name.strip_prefix("#X"))
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| name.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, e + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                s = &ent[len..];
            }
            None => {
                out.push('&');
                s = &ent[1..];
            }
        }
    }
    out.push_str(s);
    out.split([' ', '\n', '\t', '\r'])
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The inbox shows the subject, then about 140 characters of the email's
/// text: the preview text (`seo.description`), then nothing a reader can
/// see, never "View this email in your browser" or the header line.
#[test]
fn the_inbox_snippet_of_every_newsletter_ends_with_its_preview_text() {
    const SNIPPET: usize = 140;
    let Some(files) = corpus_files() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut problems = Vec::new();
    let mut checked = 0;
    for (i, post) in files.iter().enumerate() {
        let loaded = herald::compose::post::load(post).unwrap();
        let Some(description) = loaded.front_matter.seo.description.clone() else {
            continue;
        };
        let description = collapse(&description);
        let out = tmp.path().join(format!("p{i}"));
        let o = herald(
            tmp.path(),
            &[
                "preview",
                post.to_str().unwrap(),
                "--config",
                example_config().to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let html = std::fs::read_to_string(out.join("email.html")).unwrap();
        let text = inbox_text(&html);
        let snippet: String = text.chars().take(SNIPPET).collect();
        checked += 1;
        let Some(after) = snippet.strip_prefix(description.as_str()) else {
            if !description.starts_with(snippet.as_str()) {
                problems.push(format!("{}: the snippet is {snippet:?}", post.display()));
            }
            continue;
        };
        let visible: String = after
            .chars()
            .filter(|c| !matches!(c, ' ' | '\u{a0}' | '\u{200c}' | '\u{34f}'))
            .collect();
        if !visible.is_empty() {
            problems.push(format!(
                "{}: after the preview text the snippet shows {visible:?}",
                post.display()
            ));
        }
    }
    eprintln!(
        "{checked} posts with preview text, {} snippets run on",
        problems.len()
    );
    assert!(checked > 10);
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Every line of every corpus post's text part is at most 72 characters,
/// unless it holds a URL (never broken). The corpus's tables read as
/// tables: one too wide for 72 characters as "label: value" lines, one
/// that fits in aligned columns.
#[test]
fn the_text_part_of_every_post_wraps_at_72_and_lays_out_tables() {
    let Some(files) = corpus_files() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut problems = Vec::new();
    let mut lines = 0;
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
        assert!(o.status.success(), "{}", stderr(&o));
        let text = std::fs::read_to_string(out.join("email.txt")).unwrap();
        for line in text.lines() {
            lines += 1;
            let url = line
                .split_whitespace()
                .any(|w| w.contains("://") || w.starts_with("www.") || w.starts_with("mailto:"));
            if line.chars().count() > 72 && !url {
                problems.push(format!(
                    "{}: {} characters: {line}",
                    post.display(),
                    line.chars().count()
                ));
            }
        }
        if post.ends_with("edge-cases/announcing-the-openinfra-summit-europe-2025.md") {
            // Three columns too wide for 72 characters: a block per row.
            assert!(
                text.contains("Headline\nOpenInfra Foundation Member: €50,000\nNon-OpenInfra Foundation Member*: €60,000\n"),
                "{text}"
            );
            // Two narrow columns: aligned under their header.
            assert!(
                text.lines()
                    .any(|l| l.starts_with("Deadline  ") && l.ends_with("Price")),
                "{text}"
            );
            assert!(!text.contains("Deadline | Price"), "{text}");
        }
    }
    eprintln!("{lines} lines of text parts, {} problems", problems.len());
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The digest of each annual report shows prose in every section: at
/// least 40 words or all the text the section has before its first
/// sub-heading, at most one picture (never a column of logos), and its
/// text ends on a sentence (or on a colon followed by the list it opens).
#[test]
fn digest_excerpts_hold_prose_end_on_a_sentence_and_show_one_picture() {
    use herald::compose::content::{Block, Inline};
    let Some(files) = corpus_files() else { return };
    let mut config = herald::config::Config::default();
    config.fit = true;
    let prose = |b: &Block| -> Option<String> {
        let Block::Paragraph(i) = b else { return None };
        // A byline: one emphasised run.
        let emphasis = i
            .iter()
            .filter(|x| !matches!(x, Inline::Text(t) if t.trim().is_empty()))
            .all(|x| matches!(x, Inline::Strong(_) | Inline::Emph(_)));
        let text = collapse(&Inline::plain(i));
        (!emphasis && !text.is_empty()).then_some(text)
    };
    let pictures = |b: &Block| match b {
        Block::Images(imgs) => imgs.len(),
        Block::Paragraph(i) => i.iter().filter(|x| matches!(x, Inline::Image(_))).count(),
        _ => 0,
    };
    let mut problems = Vec::new();
    let mut sections = 0;
    for post in files
        .iter()
        .filter(|p| p.parent().unwrap().ends_with("annual-reports"))
    {
        let digest = herald::compose::Issue::compose(post, &config.compose()).unwrap();
        let whole =
            herald::compose::Issue::compose(post, &herald::config::Config::default().compose())
                .unwrap();
        if !digest
            .content
            .findings
            .iter()
            .any(|f| f.code == "fit-digest")
        {
            continue; // it fits whole
        }
        for (d, w) in digest.content.sections.iter().zip(&whole.content.sections) {
            sections += 1;
            let name = format!("{}: {}", post.display(), Inline::plain(&d.heading.inlines));
            let kept: Vec<String> = d.blocks.iter().filter_map(prose).collect();
            let words: usize = kept.iter().map(|t| t.split_whitespace().count()).sum();
            let own: Vec<String> = w
                .blocks
                .iter()
                .take_while(|b| !matches!(b, Block::Heading(_)))
                .filter_map(prose)
                .collect();
            let any_prose = w.blocks.iter().any(|b| prose(b).is_some());
            if any_prose && kept.is_empty() {
                problems.push(format!("{name}: no prose, only {:?}", d.blocks.len()));
            }
            if words < 40 && !own.iter().all(|p| kept.contains(p)) && any_prose {
                problems.push(format!("{name}: {words} words of prose"));
            }
            let shown: usize = d.blocks.iter().map(pictures).sum();
            if shown > 1 {
                problems.push(format!("{name}: {shown} pictures"));
            }
            if let Some(last) = kept.last() {
                let at = d
                    .blocks
                    .iter()
                    .rposition(|b| prose(b).as_ref() == Some(last))
                    .unwrap();
                let ends = last.trim_end_matches(['"', '\u{201d}', ')', '*', '_', ' ']);
                let sentence = ends.ends_with(['.', '!', '?', '\u{2026}']);
                let opens_list =
                    ends.ends_with(':') && matches!(d.blocks.get(at + 1), Some(Block::List { .. }));
                // The section's own text may end without a full stop.
                let all_there = own.last() == Some(last);
                if !sentence && !opens_list && !all_there {
                    let tail: String = last
                        .chars()
                        .rev()
                        .take(40)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect();
                    problems.push(format!("{name}: ends on {tail:?}"));
                }
            }
        }
    }
    eprintln!("{sections} digest sections, {} problems", problems.len());
    assert!(sections > 0);
    assert!(problems.is_empty(), "{problems:#?}");
}
