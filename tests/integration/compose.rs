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
        out.contains(&format!("{p}:11: warning [editable-document]")),
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

/// Posts from the rest of the website mix Markdown and HTML in ways the
/// corpus does not show. Thousands of generated mixes of real-world pieces
/// (and broken ones) must all render, with no relative URL and no crash.
#[test]
fn generated_posts_of_mixed_markdown_and_html_always_render() {
    use herald::compose::Issue;
    use herald::config::Config;
    const PIECES: &[&str] = &[
        "# **Bold heading**\n\n",
        "## [Linked](https://docs.google.com/document/d/x/edit)\n\n",
        "Plain paragraph with a [link](openinfra.org) and *emphasis*.\n\n",
        "* one\n\n  * nested [x](/x)\n\n* two\n\n",
        "1. first\n2. second\n\n",
        "> quoted **text**\n\n",
        "```\ncode <b>not html</b>\n```\n\n",
        "| a | b |\n| --- | --- |\n| 1 | [2](/two) |\n\n",
        "---\n\n",
        "![](/img/a.png)\n\n",
        "![alt](data:image/png;base64,AAAA)\n\n",
        "![]()\n\n",
        "[READ MORE >>](/blog/x)\n\n",
        "<ul>\n<li>html item\n\n",
        "</li>\n</ul>\n\n",
        "<div style=\"max-width: 200px\"><a href=\"https://x.org\"><img src=\"/img/l.svg\" alt=\"L\"/></a></div>\n\n",
        "<p>para <span style=\"color:red\">red</span> <b>bold <i>both</b></i></p>\n\n",
        "<table><tr><td>cell <a href=\"/c\">c</a></td><td>two</td></tr></table>\n\n",
        "<iframe src=\"https://www.youtube.com/embed/abc\" width=\"560\"></iframe>\n\n",
        "<script>document.write('x')</script>\n\n",
        "<!--StartFragment-->\n\n",
        "text with <br /> a break and a stray </div> and </a> tag\n\n",
        "<h3>HTML heading</h3>\n\n",
        "<blockquote><p>html quote</p></blockquote>\n\n",
        "<center><font size=5>old</font></center>\n\n",
        "<img src=\"relative/pic.jpg\">\n\n",
        "Tab\tand\u{a0}nbsp and & ampersand < less > more \"quotes\"\n\n",
        "<a name=\"anchor\"></a>\n\n",
        "[](/empty-link)\n\n",
        "<pre>pre <b>text</b></pre>\n\n",
        "<ol start=\"3\"><li>three</ol>\n\n",
        "Hello {{ first_name | default: \"friend\" }} and {{ not a field }}\n\n",
    ];
    let mut seed: u64 = 0x5eed;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    };
    let tmp = tempfile::tempdir().unwrap();
    let config = Config::default();
    for n in 0..1500 {
        let mut post = String::from(
            "---\ntitle: \"Generated <post> & more\"\nseo:\n  url: https://openinfra.org/blog/generated\n---\n",
        );
        for _ in 0..(1 + next() % 12) {
            post.push_str(PIECES[next() % PIECES.len()]);
        }
        let path = tmp.path().join("g.md");
        std::fs::write(&path, &post).unwrap();
        let issue = Issue::compose(&path, &config)
            .unwrap_or_else(|e| panic!("post {n} failed: {e:#}\n{post}"));
        let (html, text) = issue.personalised_preview(&config);
        for url in html_urls(&html) {
            assert!(is_absolute(&url), "post {n}: relative URL {url}\n{post}");
        }
        assert!(!text.contains("](/"), "post {n}\n{post}");
        assert!(!html.contains("<post>"), "post {n}: title not escaped");
        assert!(
            html.contains("Generated &#60;post&#62; &#38; more")
                || html.contains("Generated &lt;post&gt; &amp; more"),
            "post {n}: title missing"
        );
    }
}

/// Links to documents in drafting tools are warnings on their line, with
/// the fix; a form meant for readers is not. `http:` links are notices, and
/// the site's own `http:` links go out as `https:`.
#[test]
fn drafting_links_are_warnings_and_own_http_links_become_https() {
    let tmp = tempfile::tempdir().unwrap();
    let post = fixture("drafting-links.md");
    let o = herald(tmp.path(), &["check", post.to_str().unwrap()]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "warnings only: exit 0\n{out}");
    let p = post.display().to_string();
    for (line, kind) in [
        (10, "a Google document"),
        (11, "a Google Drive file"),
        (12, "a Dropbox preview"),
        (13, "a SharePoint document"),
        (14, "a Notion page"),
    ] {
        assert!(
            out.contains(&format!(
                "{p}:{line}: warning [editable-document]: a link goes to {kind}"
            )),
            "line {line}: {out}"
        );
    }
    assert!(
        !out.contains(&format!("{p}:15: warning")),
        "a form is for readers: {out}"
    );
    assert!(out.contains("Link to the published page"), "the fix: {out}");
    assert!(
        out.contains(&format!(
            "{p}:19: notice [http-link]: the link http://example.com/old"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("{p}:19: notice [url-repaired]")),
        "{out}"
    );
    assert!(
        !out.contains("http-link]: the link http://openinfra.org"),
        "{out}"
    );

    let dir = tmp.path().join("preview");
    let o = herald(
        tmp.path(),
        &[
            "preview",
            post.to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for file in ["email.html", "email.txt"] {
        let got = std::fs::read_to_string(dir.join(file)).unwrap();
        assert!(got.contains("https://openinfra.org/about/"), "{file}");
        assert!(!got.contains("http://openinfra.org/about/"), "{file}");
        assert!(got.contains("http://example.com/old"), "{file}");
    }
}
