//! Hostile input (issue 10): each case crashed herald (a stack overflow,
//! SIGABRT, no message), ran away (minutes of CPU, gigabytes of memory) or
//! blamed herald for the input's fault. Each must now be bad input, exit 2,
//! with `file:line` and what to do, and no panic or signal.

use std::path::Path;

use crate::util::*;

const FRONT: &str = "---\ntitle: Hostile\nseo:\n  url: https://example.org/blog/hostile\n---\n";

/// Runs `herald args` in `dir` and checks the contract: exit 2, the
/// message starts with `file:line:` (when `line` is given) and holds
/// `says`, and nothing panicked or aborted.
fn refused(dir: &Path, args: &[&str], env: &[(&str, &str)], at: &str, says: &str) {
    let o = herald_env(dir, args, env);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {:?}\n{err}", o.status);
    assert!(
        !err.contains("panicked") && !err.contains("overflow"),
        "{err}"
    );
    assert!(err.contains(at), "{args:?}: expected {at:?} in\n{err}");
    assert!(err.contains(says), "{args:?}: expected {says:?} in\n{err}");
}

fn post(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

#[test]
fn deep_markdown_and_html_nesting_is_refused_with_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let lists: String = (0..4000)
        .map(|i| format!("{}- x\n", "  ".repeat(i)))
        .collect();
    let cases = [
        ("md-list.md", lists, 40),
        (
            "md-list-one-line.md",
            format!("{}x\n", "- ".repeat(20_000)),
            8,
        ),
        (
            "html-list.md",
            format!(
                "{}x{}\n",
                "<ul><li>".repeat(4000),
                "</li></ul>".repeat(4000)
            ),
            8,
        ),
        ("quotes.md", format!("{} x\n", ">".repeat(8000)), 8),
        (
            "bold.md",
            format!("a {}x{}\n", "<b>".repeat(8000), "</b>".repeat(8000)),
            8,
        ),
        (
            "emphasis.md",
            format!("{}x{}\n", "*a ".repeat(8000), "*".repeat(8000)),
            8,
        ),
        ("divs.md", format!("{}x\n", "<div>".repeat(20_000)), 8),
    ];
    for (name, body, line) in cases {
        post(d, name, &format!("{FRONT}Intro.\n\n{body}"));
        refused(
            d,
            &["check", name],
            &[],
            &format!("{name}:{line}:"),
            "herald allows 64",
        );
        let out = d.join("out");
        let out = out.to_str().unwrap();
        refused(
            d,
            &["preview", name, "--out", out],
            &[],
            &format!("{name}:{line}:"),
            "nested",
        );
    }
}

#[test]
fn control_characters_are_refused_with_their_line() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    post(d, "title.md", "---\ntitle: Bad\0title\n---\n# A\n\nText.\n");
    refused(d, &["check", "title.md"], &[], "title.md:2:", "U+0000");
    post(d, "body.md", "---\ntitle: T\n---\n# A\n\nbody\0here\n");
    refused(d, &["check", "body.md"], &[], "body.md:6:", "not text");
    let out = d.join("out");
    let o = out.to_str().unwrap();
    refused(
        d,
        &["preview", "body.md", "--out", o],
        &[],
        "body.md:6:",
        "delete it",
    );
    post(
        d,
        "escape.md",
        "---\ntitle: T\n---\n# A\n\nan \x1b[31m escape\n",
    );
    refused(d, &["check", "escape.md"], &[], "escape.md:6:", "U+001B");
    // Found by the fuzzer: mrml refuses U+FFFF, and herald blamed itself.
    post(
        d,
        "ffff.md",
        "---\ntitle: T\n---\n## A\n\n| \u{ffff} a | b |\n| - | - |\n",
    );
    refused(d, &["check", "ffff.md"], &[], "ffff.md:6:", "U+FFFF");
    post(
        d,
        "escaped.md",
        "---\ntitle: \"Bad\\u0001title\"\n---\n# A\n\nText.\n",
    );
    refused(
        d,
        &["check", "escaped.md"],
        &[],
        "escaped.md:2:",
        "control character",
    );
}

/// Found by the content fuzz target: character references decode to
/// control characters after the post's bytes were checked.
#[test]
fn character_references_to_control_characters_are_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    post(
        d,
        "refs.md",
        "---\ntitle: T\n---\n# A\n\na &#1; b &#xFFFF; c\n\n<div style=x\"max-width:&#1. 200px\">d</div>\n",
    );
    let o = herald(d, &["preview", "refs.md", "--out", "out"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let html = std::fs::read_to_string(d.join("out/email.html")).unwrap();
    assert!(html.contains('b') && !html.contains('\u{1}'));
}

#[test]
fn deep_or_huge_yaml_is_refused_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    // 19 s in yaml_serde before; the pre-scan answers in milliseconds.
    let start = std::time::Instant::now();
    post(
        d,
        "front.md",
        &format!("---\ntitle: T\nx: {deep}\n---\nx\n"),
    );
    refused(d, &["check", "front.md"], &[], "front.md:2:", "64 KB");
    post(
        d,
        "front-deep.md",
        &format!("---\ntitle: T\nx: {}\n---\nx\n", "[".repeat(1000)),
    );
    refused(
        d,
        &["check", "front-deep.md"],
        &[],
        "front-deep.md:3:",
        "allows 32",
    );
    post(d, "ok.md", "---\ntitle: T\n---\nx\n");
    std::fs::write(d.join("deep.yaml"), format!("rate: {deep}\n")).unwrap();
    refused(
        d,
        &["check", "ok.md", "--config", "deep.yaml"],
        &[],
        "deep.yaml:1:",
        "allows 32",
    );
    let indented: String = (0..100_000)
        .map(|i| format!("{}k:\n", " ".repeat(i % 5000)))
        .collect();
    std::fs::write(d.join("indented.yaml"), indented).unwrap();
    refused(
        d,
        &["check", "ok.md", "--config", "indented.yaml"],
        &[],
        "indented.yaml",
        "KB",
    );
    refused(
        d,
        &["check", "/dev/zero"],
        &[],
        "/dev/zero",
        "larger than 64 MB",
    );
    refused(
        d,
        &["check", "ok.md", "--config", "/dev/zero"],
        &[],
        "/dev/zero",
        "",
    );
    assert!(start.elapsed().as_secs() < 10, "{:?}", start.elapsed());
}

#[test]
fn key_and_secret_files_are_read_with_a_size_cap() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(
        d.join("herald.yaml"),
        "from: \"News <news@example.org>\"\nunsubscribe_url: https://example.org/unsubscribe\n\
         postal_address: 1 Road, Town\ndkim_domain: example.org\ndkim_selector: s1\n\
         dkim_key_file: /dev/zero\n",
    )
    .unwrap();
    let post = example_post();
    let post = post.to_str().unwrap();
    let args = [
        "send",
        post,
        "--to",
        "a@b.org",
        "--dry-run",
        "--outbox",
        "ob",
    ];
    refused(
        d,
        &args,
        &[("HERALD_UNSUBSCRIBE_SECRET", "x")],
        "/dev/zero",
        "larger than 64 KB",
    );
    std::fs::write(d.join("herald.yaml"), "").unwrap();
    refused(
        d,
        &["send", post, "--to", "a@b.org", "--dry-run"],
        &[("HERALD_UNSUBSCRIBE_SECRET_FILE", "/dev/zero")],
        "/dev/zero",
        "larger than 64 KB",
    );
}

/// Trust boundaries: only web addresses become the "view in browser"
/// link, and links that run code or read files are check errors.
#[test]
fn unsafe_urls_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    post(
        d,
        "seo.md",
        "---\ntitle: T\nseo:\n  description: x\n  url: \"javascript:alert(1)\"\n---\n# A\n\nText.\n",
    );
    refused(d, &["check", "seo.md"], &[], "seo.md:5:", "https://");
    post(
        d,
        "links.md",
        &format!(
            "{FRONT}# A\n\n[one](javascript:alert(1)) [two](data:text/html,x) \
             [three](file:///etc/passwd) <a href=\"java\tscript:alert(1)\">four</a> \
             [mail](mailto:a@example.org)\n"
        ),
    );
    let o = herald(d, &["check", "links.md", "--format", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let errors: Vec<&serde_json::Value> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "bad-url")
        .collect();
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert!(
        errors
            .iter()
            .all(|f| f["severity"] == "error" && f["line"] == 8)
    );
    let o = herald(d, &["preview", "links.md", "--out", "out"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let html = std::fs::read_to_string(d.join("out/email.html")).unwrap();
    for bad in ["javascript:", "data:text", "file:", "java\tscript"] {
        assert!(!html.contains(bad), "{bad} in the HTML");
    }
    assert!(html.contains("mailto:a@example.org"));
}

/// Runaway work found by the content fuzz target: 100,000 `{{` with no
/// `}}` took 19 s (the search for the field's end went to the end of the
/// text from each of them).
#[test]
fn many_open_merge_braces_do_not_run_away() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    post(
        d,
        "braces.md",
        &format!("{FRONT}# A\n\n{} x\n", "{{".repeat(100_000)),
    );
    let start = std::time::Instant::now();
    let o = herald(d, &["preview", "braces.md", "--out", "out"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(start.elapsed().as_secs() < 5, "{:?}", start.elapsed());
}

/// Runaway work: a paragraph of 40,000 links took 20 s to render (the
/// line length was measured from the start of one ever-growing line).
#[test]
fn a_paragraph_of_many_links_does_not_run_away() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    post(
        d,
        "links.md",
        &format!("{FRONT}# A\n\n{}\n", "[a](b) ".repeat(40_000)),
    );
    let start = std::time::Instant::now();
    let o = herald(d, &["preview", "links.md", "--out", "out"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(start.elapsed().as_secs() < 5, "{:?}", start.elapsed());
}

/// A subscriber list with no line ends (`/dev/zero`) grew one record until
/// memory ran out (an abort, no message).
#[test]
fn a_list_without_line_ends_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(
        d.join("herald.yaml"),
        "from: \"News <news@example.org>\"\nunsubscribe_url: https://example.org/unsubscribe\n\
         postal_address: 1 Road, Town\n",
    )
    .unwrap();
    let post = example_post();
    let args = [
        "send",
        post.to_str().unwrap(),
        "--subscribers",
        "/dev/zero",
        "--dry-run",
        "--outbox",
        "ob",
    ];
    refused(
        d,
        &args,
        &[("HERALD_UNSUBSCRIBE_SECRET", "x")],
        "/dev/zero",
        "longer than 1 MB",
    );
}
