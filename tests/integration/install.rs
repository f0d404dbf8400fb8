//! Starting out: `herald init` makes a folder a new user can follow the
//! README in, and never overwrites anything (issue 27).

use std::path::Path;

use crate::util::{herald, herald_env, stderr, stdout};

/// The folder's files by name (relative, sorted) with their bytes.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    crate::util::files_under(dir)
        .into_iter()
        .map(|(p, b)| (p.display().to_string(), b))
        .collect()
}

#[test]
fn init_makes_a_folder_whose_example_issue_previews_checks_and_dry_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let o = herald(tmp.path(), &["init", "news"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let dir = tmp.path().join("news");
    let files: Vec<String> = tree(&dir).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        files,
        [
            "herald.yaml",
            "posts/inside-open-infrastructure-example.md",
            "subscribers.csv"
        ]
    );
    let out = stdout(&o);
    // Four numbered next steps, naming what a first send needs.
    for step in ["1. ", "2. ", "3. ", "4. "] {
        assert!(out.contains(&format!("\n{step}")), "no step {step}: {out}");
    }
    for needed in [
        "HERALD_UNSUBSCRIBE_SECRET",
        "smtp_url",
        "herald serve",
        "cd news && ",
    ] {
        assert!(
            out.contains(needed),
            "the next steps do not mention {needed}: {out}"
        );
    }
    // The folder works as written: the settings are read (herald config
    // names the file), the example previews and checks without errors, and
    // a dry run to the list writes one message.
    let post = "posts/inside-open-infrastructure-example.md";
    let o = herald(&dir, &["config"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("herald.yaml"), "{}", stdout(&o));
    let o = herald(&dir, &["preview", post]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let written: Vec<String> = tree(&dir.join("preview"))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(
        written.iter().any(|n| n.ends_with("/email.html")),
        "{written:?}"
    );
    let secret = [(
        "HERALD_UNSUBSCRIBE_SECRET",
        "a-secret-for-the-init-test-0123456789",
    )];
    let o = herald_env(&dir, &["check", post], &secret);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let o = herald_env(
        &dir,
        &[
            "send",
            post,
            "--subscribers",
            "subscribers.csv",
            "--dry-run",
            "--outbox",
            "dry",
        ],
        &secret,
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let emls = std::fs::read_dir(dir.join("dry"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
        .count();
    assert_eq!(emls, 1, "one subscriber in the example list");
}

#[test]
fn init_never_overwrites_and_writes_nothing_when_one_file_is_in_the_way() {
    let tmp = tempfile::tempdir().unwrap();
    // Only the post is there: herald.yaml must not be written either.
    let dir = tmp.path().join("old");
    std::fs::create_dir_all(dir.join("posts")).unwrap();
    std::fs::write(
        dir.join("posts/inside-open-infrastructure-example.md"),
        "my own post",
    )
    .unwrap();
    let before = tree(&dir);
    let o = herald(tmp.path(), &["init", "old"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("posts/inside-open-infrastructure-example.md")
            && stderr(&o).contains("wrote nothing"),
        "{}",
        stderr(&o)
    );
    assert_eq!(tree(&dir), before, "init changed a folder it refused");

    // A second init of a finished folder: refused, the edited settings kept.
    let o = herald(tmp.path(), &["init", "new"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let yaml = tmp.path().join("new/herald.yaml");
    std::fs::write(&yaml, "from: me@example.org\n").unwrap();
    let o = herald(tmp.path(), &["init", "new"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(&yaml).unwrap(),
        "from: me@example.org\n"
    );

    // A file where the folder should be.
    std::fs::write(tmp.path().join("afile"), "x").unwrap();
    let o = herald(tmp.path(), &["init", "afile"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("afile"), "{}", stderr(&o));
}

#[test]
fn init_works_beside_a_broken_settings_file() {
    // A herald.yaml herald cannot read, in the folder init is run from,
    // does not stop it from making another folder.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("herald.yaml"), "from: [unclosed\n").unwrap();
    let o = herald(tmp.path(), &["init", "fresh"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(tmp.path().join("fresh/herald.yaml").is_file());
}

#[test]
fn herald_log_time_puts_the_time_in_front_of_each_line_for_cron_logs() {
    // The README's cron line appends stderr to a file: with HERALD_LOG_TIME
    // each line says when it was written; without it, lines are as before.
    let tmp = tempfile::tempdir().unwrap();
    let post = crate::util::fixture("no-title.md");
    let post = post.to_str().unwrap();
    let o = herald_env(
        tmp.path(),
        &["check", post],
        &[
            ("HERALD_LOG_TIME", "1"),
            ("HERALD_NOW", "2026-05-28T14:00:07.123Z"),
        ],
    );
    let err = stderr(&o);
    assert!(!err.is_empty(), "nothing on stderr to look at");
    for line in err.lines() {
        assert!(
            line.starts_with("2026-05-28T14:00:07Z herald: "),
            "a line without the time: {line:?}"
        );
    }
    let o = herald_env(
        tmp.path(),
        &["check", post],
        &[("HERALD_NOW", "2026-05-28T14:00:07Z")],
    );
    assert!(
        stderr(&o).lines().all(|l| l.starts_with("herald: ")),
        "{}",
        stderr(&o)
    );
}

#[test]
fn under_cron_a_post_whose_send_at_is_not_a_date_is_an_error_and_the_others_still_go() {
    // README "From cron": a broken post in the folder is exit 2 naming the
    // file and line (it used to be a warning and exit 4, "nothing due", so
    // cron stayed silent while this month's issue never went out); a due
    // post beside it is still sent.
    let tmp = tempfile::tempdir().unwrap();
    let Some(sink) = crate::util::Sink::start(tmp.path(), "sink") else {
        return;
    };
    let posts = tmp.path().join("posts");
    std::fs::create_dir(&posts).unwrap();
    let base = std::fs::read_to_string(crate::util::example_post()).unwrap();
    let with = |slug: &str, extra: &str| {
        base.replace("herald-example-issue", slug).replacen(
            "templateKey: blog-post\n",
            &format!("templateKey: blog-post\n{extra}"),
            1,
        )
    };
    std::fs::write(
        posts.join("june.md"),
        with("june", "send_at: 2025-06-10T09:00:00Z\n"),
    )
    .unwrap();
    std::fs::write(
        posts.join("july.md"),
        with("july", "send_at: next tuesday at nine\n"),
    )
    .unwrap();
    let list = crate::util::write_list(tmp.path(), 2);
    let run = |now: &str| {
        herald_env(
            tmp.path(),
            &[
                "--config",
                crate::util::example_config().to_str().unwrap(),
                "send",
                "--due",
                posts.to_str().unwrap(),
                "--subscribers",
                list.to_str().unwrap(),
                "--smtp",
                &sink.url(),
                "--journal",
                tmp.path().join(".herald").to_str().unwrap(),
                "--yes",
            ],
            &[
                (
                    "HERALD_UNSUBSCRIBE_SECRET",
                    "a-secret-for-the-due-test-0123456789",
                ),
                ("HERALD_NOW", now),
            ],
        )
    };
    let o = run("2025-06-10T10:00:00Z");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{}{err}", stdout(&o));
    // The file and the line of `send_at`, and that it was not sent.
    assert!(
        err.contains("july.md:3:") && err.contains("send_at"),
        "{err}"
    );
    assert!(err.contains("not sent"), "{err}");
    // June went out all the same.
    let mut delivered = 0;
    for _ in 0..50 {
        delivered = sink.complete().len();
        if delivered == 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        delivered, 2,
        "the due post beside the broken one was not sent"
    );
    // Nothing else due: still exit 2 while the broken post is there.
    let o = run("2025-06-10T11:00:00Z");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}
