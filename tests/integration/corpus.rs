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
