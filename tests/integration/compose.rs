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
    let config = Config::default().compose();
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
        let (html, text) = issue.personalised_preview(&config.preview);
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

/// Previews `text` (a post written here) with the example settings plus
/// `settings`; returns the email's HTML, its text part and the preview page.
fn preview_written(dir: &std::path::Path, text: &str, settings: &str) -> (String, String, String) {
    let post = dir.join("post.md");
    std::fs::write(&post, text).unwrap();
    let config = dir.join("herald.yaml");
    let example = std::fs::read_to_string(example_config()).unwrap();
    std::fs::write(&config, format!("{example}\n{settings}\n")).unwrap();
    let out = dir.join("out");
    let o = herald(
        dir,
        &[
            "preview",
            post.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap();
    (read("email.html"), read("email.txt"), read("index.html"))
}

fn check_json(dir: &std::path::Path, post: &str) -> serde_json::Value {
    let path = dir.join("check.md");
    std::fs::write(&path, post).unwrap();
    let o = herald(
        dir,
        &[
            "check",
            path.to_str().unwrap(),
            "--config",
            example_config().to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// A generic page (like the website's policy pages) whose `subTitle` names
/// its authors and whose front matter ends the page with a JOIN button.
const PAGE: &str = "---\ntemplateKey: generic-page\nseo:\n  title: A Policy Page\n  url: https://openinfra.dev/legal/policy\ntitle: A Policy Page\nsubTitle: \"Authors: A. Writer, B. Writer\"\nfooter:\n  title: \"\"\n  subTitle: Join the foundation to learn how you can get involved.\n  buttonText: JOIN\n  button: https://openinfra.dev/join/\n  display: true\n---\n# Summary\n\nThe policy in a few words. It says what it covers.\n";

#[test]
fn a_page_is_sent_by_the_newsletter_not_its_subtitle_and_keeps_its_join_button() {
    let tmp = tempfile::tempdir().unwrap();
    let (html, text, _) = preview_written(tmp.path(), PAGE, "");
    for (part, body) in [("HTML", &html), ("text", &text)] {
        assert!(!body.contains("Authors: A. Writer"), "{part}: {body}");
        assert!(!body.contains("AUTHORS: A. WRITER"), "{part}");
        assert!(
            collapse(body).contains("subscribed to news from OpenInfra Foundation."),
            "{part}: {body}"
        );
        assert!(
            body.contains("OPENINFRA FOUNDATION"),
            "{part}: the header line"
        );
        assert!(
            body.contains("Join the foundation to learn how you can get involved."),
            "{part}"
        );
    }
    assert!(
        html.contains("href=\"https://openinfra.dev/join/") && html.contains(">JOIN</a>"),
        "{html}"
    );
    assert!(text.contains("JOIN: https://openinfra.dev/join/"), "{text}");
    // `display: false` keeps the button off.
    let hidden = PAGE.replace("display: true", "display: false");
    let (html, _, _) = preview_written(tmp.path(), &hidden, "");
    assert!(!html.contains(">JOIN</a>"));
}

#[test]
fn the_subject_is_the_public_title_and_check_shows_both() {
    let tmp = tempfile::tempdir().unwrap();
    let post = "---\ntemplateKey: blog-post\ntitle: \"OLD DON'T USE Inside Open Infrastructure\"\ndate: 2025-05-28T14:15:31.971Z\nhidePost: true\nseo:\n  title: \"Inside Open Infrastructure: May 2025\"\n  description: The news of May\n  url: https://openinfra.org/blog/may-2025\n---\nHello.\n";
    let (html, text, index) = preview_written(tmp.path(), post, "");
    assert!(!html.contains("OLD DON"), "{html}");
    assert!(!text.contains("OLD DON"), "{text}");
    assert!(
        index.contains("Inside Open Infrastructure: May 2025"),
        "the preview shows the subject"
    );
    let v = check_json(tmp.path(), post);
    let findings = v["findings"].as_array().unwrap();
    let said = |code: &str| {
        findings
            .iter()
            .find(|f| f["code"] == code)
            .unwrap_or_else(|| panic!("no {code} in {findings:#?}"))
    };
    let t = said("public-title");
    let message = t["message"].as_str().unwrap();
    assert!(
        message.contains("Inside Open Infrastructure: May 2025")
            && message.contains("OLD DON'T USE Inside Open Infrastructure"),
        "{message}"
    );
    // hidePost stays a notice: real newsletters were hidden and mailed.
    assert_eq!(said("hidden-post")["severity"], "notice");
    assert_eq!(v["errors"], 0, "{v:#}");
}

#[test]
fn alt_text_is_a_caption_or_empty_never_a_file_name() {
    let tmp = tempfile::tempdir().unwrap();
    let post = "---\ntitle: Pictures\nseo:\n  url: https://openinfra.org/blog/pictures\n---\nLead.\n\n![](/img/Screenshot%202026-04-13%20at%2010.34.20%E2%80%AFAM.png)\n\n![](/img/summit_hall_2025.jpg \"The summit hall in Paris\")\n";
    let (html, text, _) = preview_written(tmp.path(), post, "");
    assert!(!html.to_lowercase().contains("screenshot 2026"), "{html}");
    assert!(!text.to_lowercase().contains("screenshot 2026"), "{text}");
    assert!(html.contains("alt=\"\""), "{html}");
    // A picture without words is left out of the text part, not "[Image: ]".
    assert!(!text.contains("[Image: ]"), "{text}");
    assert!(text.contains("[Image: The summit hall in Paris]"), "{text}");
    assert!(html.contains("alt=\"The summit hall in Paris\""), "{html}");
    let v = check_json(tmp.path(), post);
    let missing: Vec<&serde_json::Value> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "missing-alt")
        .collect();
    assert_eq!(missing.len(), 2, "{v:#}");
    assert_eq!(missing[0]["line"], 8);
    assert!(
        missing[0]["message"].as_str().unwrap().contains("alt=\"\""),
        "{missing:#?}"
    );
}

#[test]
fn a_german_issue_is_german_for_screen_readers_and_in_its_footer() {
    let tmp = tempfile::tempdir().unwrap();
    let post = "---\ntitle: Neuigkeiten aus der Community\ndate: 2025-05-28\nseo:\n  url: https://openinfra.org/blog/neuigkeiten\n---\nHallo zusammen.\n";
    let german = "lang: de\nwords_subscribed: Sie erhalten diese E-Mail, weil Sie die Neuigkeiten abonniert haben von\nwords_view_online: Diese E-Mail im Browser ansehen\nwords_view_in_browser: Im Browser ansehen\nwords_unsubscribe: Abmelden\nwords_continue_reading: Weiterlesen\n";
    let (html, text, _) = preview_written(tmp.path(), post, german);
    assert!(
        html.contains("<html lang=\"de\" dir=\"ltr\""),
        "{}",
        &html[..300]
    );
    for (part, body) in [("HTML", &html), ("text", &text)] {
        let flat = collapse(body);
        assert!(
            flat.contains("Sie erhalten diese E-Mail, weil Sie die Neuigkeiten abonniert haben von OpenInfra Foundation."),
            "{part}: {flat}"
        );
        assert!(flat.contains("Im Browser ansehen"), "{part}");
        assert!(flat.contains("Abmelden"), "{part}");
        assert!(flat.contains("Diese E-Mail im Browser ansehen"), "{part}");
        assert!(!flat.contains("Unsubscribe"), "{part}: {flat}");
        assert!(!flat.contains("You are receiving"), "{part}");
    }
    // Without settings: English, and the post's own `lang:`/`dir:` win.
    let (html, _, _) = preview_written(tmp.path(), post, "");
    assert!(html.contains("<html lang=\"en\" dir=\"ltr\""));
    let arabic = post.replace("date:", "lang: ar\ndir: rtl\ndate:");
    let (html, _, _) = preview_written(tmp.path(), &arabic, german);
    assert!(
        html.contains("<html lang=\"ar\" dir=\"rtl\""),
        "{}",
        &html[..300]
    );
}

#[test]
fn an_unclosed_quote_is_reported_on_its_own_line() {
    let tmp = tempfile::tempdir().unwrap();
    let post = tmp.path().join("quote.md");
    // Line 3 opens a quote it never closes; the parser stumbles on line 12.
    std::fs::write(
        &post,
        "---\ntemplateKey: blog-post\ntitle: \"Inside Open Infrastructure: May\nauthor: Someone\ndate: 2025-05-28\ncategory:\n  - value: category-news\n    label: News\nhidePost: false\nseo:\n  description: The monthly news\n  title: \"Inside Open Infrastructure: May\"\n  url: https://openinfra.org/blog/may\n---\nText.\n",
    )
    .unwrap();
    let o = herald(tmp.path(), &["check", post.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains(&format!("{}:3:", post.display())), "{err}");
    assert!(err.contains("never closed"), "{err}");
}

/// `check --links` against a web server on 127.0.0.1: pictures are
/// checked too (a 404 header image is an error on its line); with the
/// network unreachable (a proxy that does not answer) the check says it
/// could not run, as a warning, and asks nobody to correct their links.
#[test]
fn check_links_checks_pictures_and_says_when_there_is_no_network() {
    let Some(python) = python_with("http.server") else {
        return;
    };
    use std::io::BufRead;
    let mut server = std::process::Command::new(&python)
        .arg(repo().join("tests/tools/link_server.py"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut port = String::new();
    std::io::BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let port = port.trim().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let post = tmp.path().join("pictures.md");
    std::fs::write(
        &post,
        format!(
            "---\ntitle: Pictures\nseo:\n  url: https://openinfra.org/blog/pictures\n---\n![Header](http://127.0.0.1:{port}/gone-header.png)\n\nSee [the page](http://127.0.0.1:{port}/ok).\n\n![Fine](http://127.0.0.1:{port}/ok)\n"
        ),
    )
    .unwrap();
    let no_proxy = [
        ("NO_PROXY", "127.0.0.1"),
        ("HTTP_PROXY", ""),
        ("HTTPS_PROXY", ""),
        ("http_proxy", ""),
        ("https_proxy", ""),
        ("ALL_PROXY", ""),
        ("all_proxy", ""),
    ];
    let o = herald_env(
        tmp.path(),
        &[
            "check",
            post.to_str().unwrap(),
            "--links",
            "--format",
            "json",
        ],
        &no_proxy,
    );
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(o.status.code(), Some(1), "{}\n{}", stdout(&o), stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let broken: Vec<(u64, String)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "link-broken")
        .map(|f| {
            (
                f["line"].as_u64().unwrap(),
                f["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(broken.len(), 1, "{broken:#?}");
    assert_eq!(broken[0].0, 6);
    assert!(
        broken[0].1.contains("/gone-header.png") && broken[0].1.contains("404"),
        "{broken:#?}"
    );

    // No network: every https link goes through a proxy on a closed port
    // of this machine, so nothing leaves it.
    let closed = free_port();
    let proxy = format!("http://127.0.0.1:{closed}");
    let offline = tmp.path().join("offline.md");
    std::fs::write(
        &offline,
        "---\ntitle: Offline\nseo:\n  url: https://openinfra.org/blog/offline\n---\nRead [one](https://openinfra.org/a), [two](https://www.openstack.org/b) and see ![a logo](https://openinfra.org/img/logo.png).\n",
    )
    .unwrap();
    let o = herald_env(
        tmp.path(),
        &[
            "check",
            offline.to_str().unwrap(),
            "--links",
            "--format",
            "json",
        ],
        &[
            ("HTTPS_PROXY", proxy.as_str()),
            ("HTTP_PROXY", proxy.as_str()),
            ("NO_PROXY", ""),
            ("no_proxy", ""),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let all = serde_json::to_string(&v).unwrap();
    assert!(!all.contains("correct the link"), "{all}");
    let unchecked: Vec<&serde_json::Value> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "links-unchecked")
        .collect();
    assert_eq!(unchecked.len(), 1, "{v:#}");
    assert_eq!(unchecked[0]["severity"], "warning");
    let message = unchecked[0]["message"].as_str().unwrap();
    // Two links and the picture (the view-in-browser page is not a link of the post).
    assert!(
        message.starts_with("could not check 3 links: no network ("),
        "{message}"
    );
}
