//! `herald preview` and `herald check` on the project's own example and fixtures.

use crate::util::*;

fn preview_example(dir: &std::path::Path) -> std::path::PathBuf {
    let out = dir.join("out");
    let o = herald(
        dir,
        &[
            "preview",
            example_post().to_str().unwrap(),
            "--config",
            example_config().to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    out
}

#[test]
fn preview_writes_the_four_files_of_a_complete_email() {
    let tmp = tempfile::tempdir().unwrap();
    let out = preview_example(tmp.path());
    let problems = problems_in_preview(&out, &expected(&example_post()));
    assert!(problems.is_empty(), "{problems:#?}");

    let html = std::fs::read_to_string(out.join("email.html")).unwrap();
    // Header, preheader, footer: what a reader sees first and last.
    assert!(html.contains("Inside Open Infrastructure: Example Issue"));
    assert!(html.contains("A made-up issue that shows every kind of content"));
    assert!(html.contains("Example Foundation, 123 Example Street"));
    assert!(html.contains("https://openinfra.org/newsletter/unsubscribe?preview=1"));
    assert!(
        html.contains("href=\"https://openinfra.org/blog/herald-example-issue\""),
        "view in browser link"
    );
    // The merge field took its default.
    assert!(html.contains("Hello there,"));
    // Raw HTML became email markup: no div styles from the post survive.
    assert!(!html.contains("min-width: 220px"));
    // Logo image limited to the width the post's div gave it.
    assert!(html.contains("example-project.png"));
    let logo = &html[html
        .find("example-project.png")
        .unwrap()
        .saturating_sub(600)..];
    assert!(logo.contains("300"), "logo keeps its 300px width");
}

#[test]
fn preview_defaults_to_a_folder_named_after_the_post() {
    let tmp = tempfile::tempdir().unwrap();
    let o = herald(tmp.path(), &["preview", example_post().to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dir = tmp.path().join("preview/herald-example-issue");
    for f in ["email.html", "email.txt", "email.mjml", "index.html"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    assert!(stdout(&o).contains("index.html"));
    // Without a config the footer says what to set, and check warns about it.
    let html = std::fs::read_to_string(dir.join("email.html")).unwrap();
    assert!(html.contains("set postal_address in herald.yaml"));
}

#[test]
fn preview_json_is_machine_readable() {
    let tmp = tempfile::tempdir().unwrap();
    let o = herald(
        tmp.path(),
        &["preview", example_post().to_str().unwrap(), "--json"],
    );
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["files"].as_array().unwrap().len(), 4);
    assert!(v["html_bytes"].as_u64().unwrap() > 1000);
}

#[test]
fn text_part_of_the_example_newsletter() {
    let tmp = tempfile::tempdir().unwrap();
    let out = preview_example(tmp.path());
    let text = std::fs::read_to_string(out.join("email.txt")).unwrap();
    for line in text.lines() {
        let is_url = line.split_whitespace().any(|w| w.contains("://"));
        assert!(
            line.chars().count() <= 72 || is_url,
            "line over 72 columns: {line}"
        );
    }
    insta::assert_snapshot!("example_text_part", text);
}

#[test]
fn check_lists_findings_with_lines_and_fixes() {
    let tmp = tempfile::tempdir().unwrap();
    let post = fixture("inbox-problems.md");
    let o = herald(tmp.path(), &["check", post.to_str().unwrap()]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "warnings only: exit 0\n{out}");
    let p = post.display().to_string();
    assert!(
        out.contains(&format!("{p}:7: warning [svg-image]")),
        "{out}"
    );
    assert!(
        out.contains(&format!("{p}:11: notice [google-docs-link]")),
        "{out}"
    );
    assert!(
        out.contains(&format!("{p}:11: notice [tracking-link]")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{p}:13: warning [html-changed]: the <marquee> tag was removed"
        )),
        "{out}"
    );
    assert!(out.contains("warning [missing-preheader]"), "{out}");
    assert!(out.contains("warning [missing-footer]"), "{out}");
    assert!(out.contains("fix: "), "{out}");
}

#[test]
fn check_json_has_code_line_message_and_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let o = herald(
        tmp.path(),
        &[
            "check",
            fixture("inbox-problems.md").to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let svg = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "svg-image")
        .unwrap();
    assert_eq!(svg["severity"], "warning");
    assert_eq!(svg["line"], 7);
    assert!(svg["fix"].as_str().unwrap().contains("PNG"));
}

#[test]
fn gmail_clipping_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let mut post = String::from(
        "---\ntitle: A very long issue\nseo:\n  description: Long\n  url: https://openinfra.org/blog/long\n---\n",
    );
    for i in 0..400 {
        post.push_str(&format!("# Section {i}\n\nA paragraph with [a link](https://example.org/{i}) and some words to fill the email up.\n\n"));
    }
    std::fs::write(tmp.path().join("long.md"), post).unwrap();
    let o = herald(tmp.path(), &["check", "long.md"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("error [gmail-clip]"), "{}", stdout(&o));
}

#[test]
fn post_without_front_matter_is_refused_with_a_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let post = fixture("no-front-matter.md");
    let o = herald(tmp.path(), &["preview", post.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains(&format!("{}:1: ", post.display())), "{err}");
    assert!(err.contains("Did you forget to add `---`?"), "{err}");
    assert!(!tmp.path().join("preview").exists(), "nothing written");
}

#[test]
fn broken_yaml_names_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let post = fixture("broken-yaml.md");
    let o = herald(tmp.path(), &["check", post.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("not valid YAML"), "{err}");
    assert!(err.contains(&format!("{}:", post.display())), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn post_without_title_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let o = herald(
        tmp.path(),
        &["preview", fixture("no-title.md").to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("has no title"), "{}", stderr(&o));
}

#[test]
fn missing_post_file_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let o = herald(tmp.path(), &["preview", "posts/nope.md"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("posts/nope.md: cannot read the post"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn config_with_a_typo_is_refused_with_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("herald.yaml"),
        "site_url: https://openinfra.org\npostal_adress: Somewhere\n",
    )
    .unwrap();
    let o = herald(tmp.path(), &["preview", example_post().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("herald.yaml:2:"), "{err}");
    assert!(err.contains("postal_adress"), "{err}");
}

#[test]
fn help_speaks_to_people() {
    let tmp = tempfile::tempdir().unwrap();
    let o = herald(tmp.path(), &["preview", "--help"]);
    assert!(o.status.success());
    assert!(
        stdout(&o).contains("without sending anything"),
        "{}",
        stdout(&o)
    );
}
