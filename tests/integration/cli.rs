//! The command line's contract: settings and their sources, exit codes,
//! quiet ends of pipes, and how much herald says on stderr.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::util::*;

const SECRET: &str = "s3cr3t-never-shown-7f2c";

#[test]
fn config_shows_values_sources_and_hides_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("herald.yaml"),
        "site_url: https://openinfra.org\n\nrate: 10/s\nassets_dir: static\n",
    )
    .unwrap();
    let o = herald_env(
        tmp.path(),
        &["config", "--set", "connections=2"],
        &[
            ("HERALD_UNSUBSCRIBE_SECRET", SECRET),
            ("HERALD_MAX_ATTEMPTS", "6"),
        ],
    );
    let out = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    let line = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in\n{out}"))
            .to_string()
    };
    assert!(
        line("rate").contains("10/s") && line("rate").contains("[herald.yaml:3]"),
        "{out}"
    );
    assert!(line("site_url").contains("[herald.yaml:1]"), "{out}");
    assert!(
        line("max_attempts").contains("6  [HERALD_MAX_ATTEMPTS]"),
        "{out}"
    );
    assert!(
        line("connections").contains("2  [--set connections]"),
        "{out}"
    );
    assert!(line("retry_wait").contains("1s  [default]"), "{out}");
    // A relative path from the file is taken from the file's folder.
    assert!(line("assets_dir").contains("static"), "{out}");
    assert!(out.contains("HERALD_UNSUBSCRIBE_SECRET: (set)"), "{out}");
    assert!(out.contains("HERALD_SMTP_PASSWORD: (not set)"), "{out}");
    assert!(
        !out.contains(SECRET) && !stderr(&o).contains(SECRET),
        "{out}"
    );

    let o = herald_env(
        tmp.path(),
        &["config", "--json"],
        &[("HERALD_SMTP_PASSWORD", SECRET)],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rate = v["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "rate")
        .unwrap();
    assert_eq!(rate["source"], "herald.yaml:3");
    assert_eq!(rate["env"], "HERALD_RATE");
    assert!(!stdout(&o).contains(SECRET));
}

#[test]
fn a_bad_rate_flag_is_bad_input_naming_the_flag() {
    // No herald.yaml here: the error must not blame one.
    let tmp = tempfile::tempdir().unwrap();
    let post = example_post();
    let o = herald(
        tmp.path(),
        &[
            "send",
            post.to_str().unwrap(),
            "--dry-run",
            "--rate",
            "fast",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("--rate: `fast` is not a rate"), "{err}");
    assert!(!err.contains("herald.yaml"), "{err}");

    let o = herald_env(tmp.path(), &["config"], &[("HERALD_CONNECTIONS", "many")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("HERALD_CONNECTIONS: `many`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn exit_codes_tell_check_errors_bad_input_and_internal_failures_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut long =
        String::from("---\ntitle: Long\nseo:\n  url: https://openinfra.org/blog/long\n---\n");
    for i in 0..400 {
        long.push_str(&format!(
            "# Section {i}\n\nA paragraph with [a link](https://example.org/{i}) and words to fill the email up.\n\n"
        ));
    }
    std::fs::write(tmp.path().join("long.md"), long).unwrap();
    // 1: check found errors (and only check says 1).
    assert_eq!(
        herald(tmp.path(), &["check", "long.md"]).status.code(),
        Some(1)
    );
    let o = herald(tmp.path(), &["preview", "long.md"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // 2: a post herald cannot use.
    let bad = fixture("no-title.md");
    assert_eq!(
        herald(tmp.path(), &["check", bad.to_str().unwrap()])
            .status
            .code(),
        Some(2)
    );
    // 7: herald cannot write where it must; the input is fine.
    std::fs::write(tmp.path().join("a-file"), "").unwrap();
    let o = herald(tmp.path(), &["status", "--journal", "a-file"]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert!(stderr(&o).contains("a-file"), "{}", stderr(&o));
    let post = example_post();
    let o = herald(
        tmp.path(),
        &["preview", post.to_str().unwrap(), "--out", "a-file/preview"],
    );
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    // The codes are documented where users look.
    let help = stdout(&herald(tmp.path(), &["--help"]));
    for code in [
        "1  `check`",
        "2  bad input",
        "7  herald could not work",
        "9  a bug",
    ] {
        assert!(help.contains(code), "{code} missing from --help:\n{help}");
    }
}

#[test]
fn a_closed_pipe_ends_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let post = example_post();
    let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .current_dir(tmp.path())
        .args(["check", post.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Like `| head -0`: the reader goes away before herald writes.
    drop(child.stdout.take());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(
        !err.contains("Broken pipe") && !err.contains("error"),
        "{err}"
    );
    assert_eq!(status.code(), Some(0), "{err}");
}

#[test]
fn quiet_and_debug_logging() {
    let tmp = tempfile::tempdir().unwrap();
    let post = example_post();
    let args = ["preview", post.to_str().unwrap(), "--out", "p"];
    let o = herald(tmp.path(), &args);
    assert!(stderr(&o).contains("herald: warning: "), "{}", stderr(&o));
    assert!(!stderr(&o).contains("debug"), "{}", stderr(&o));

    let quiet: Vec<&str> = std::iter::once("-q").chain(args).collect();
    let o = herald(tmp.path(), &quiet);
    assert!(o.status.success());
    assert_eq!(stderr(&o), "", "-q keeps errors only");

    let o = herald_env(tmp.path(), &args, &[("HERALD_LOG", "debug")]);
    assert!(stderr(&o).contains("herald: debug: "), "{}", stderr(&o));
    // HERALD_LOG wins over -q.
    let o = herald_env(tmp.path(), &quiet, &[("HERALD_LOG", "debug")]);
    assert!(stderr(&o).contains("herald: debug: "), "{}", stderr(&o));
    // Errors stay on under -q, as plain lines without colour codes.
    let o = herald(tmp.path(), &["-q", "check", "missing.md"]);
    let err = stderr(&o);
    assert!(err.starts_with("herald: error: missing.md"), "{err}");
    assert!(!err.contains('\x1b'), "{err}");
}

/// The settings of a send to `relay`, in `dir/herald.yaml`.
fn settings_for(dir: &Path, relay: &str) {
    let mut s = std::fs::read_to_string(example_config()).unwrap();
    s.push_str(&format!("\nsmtp_url: {relay}\n"));
    std::fs::write(dir.join("herald.yaml"), s).unwrap();
}

const NOW: &str = "2025-06-04T00:00:00Z";

fn send_env<'a>(extra: &'a [(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("HERALD_NOW", NOW),
        ("HERALD_UNSUBSCRIBE_SECRET", "finished-secret"),
    ];
    env.extend_from_slice(extra);
    env
}

#[test]
fn a_finished_campaign_takes_nobody_new_unless_asked_with_include_new() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(sink) = Sink::start(tmp.path(), "sink") else {
        return;
    };
    settings_for(tmp.path(), &sink.url());
    let post = example_post();
    let post = post.to_str().unwrap();
    let env = send_env(&[]);
    let cmd = ["send", post, "--subscribers", "list.csv", "--yes"];
    write_list(tmp.path(), 3);
    let o = herald_env(tmp.path(), &cmd, &env);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(sink.complete().len(), 3);

    // Last month's command again, after one person joined.
    write_list(tmp.path(), 4);
    let o = herald_env(tmp.path(), &cmd, &env);
    let said = format!("{}{}", stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(4), "{said}");
    assert!(said.contains("is finished"), "{said}");
    assert!(
        said.contains("1 people on the list now") && said.contains("--include-new"),
        "{said}"
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(
        sink.complete().len(),
        3,
        "the newcomer got last month's issue"
    );

    // Asked for, the newcomer gets it, and nobody else again.
    let with: Vec<&str> = cmd.iter().copied().chain(["--include-new"]).collect();
    let o = herald_env(tmp.path(), &with, &env);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let got = deliveries(&[&sink]);
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got.get("reader3@example.org"), Some(&1), "{got:?}");
    assert!(got.values().all(|n| *n == 1), "{got:?}");
    // Then it is finished again: the same command sends nothing.
    let o = herald_env(tmp.path(), &with, &env);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));

    // --include-new is about the campaign's list: a test send has none.
    let o = herald_env(
        tmp.path(),
        &["send", post, "--to", "me@example.org", "--include-new"],
        &env,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--include-new") && stderr(&o).contains("--to"));
}

#[test]
fn a_campaign_in_progress_takes_the_list_as_it_is_now() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(sink) = Sink::start(tmp.path(), "sink") else {
        return;
    };
    settings_for(tmp.path(), &sink.url());
    let post = example_post();
    let env = send_env(&[]);
    let cmd = [
        "send",
        post.to_str().unwrap(),
        "--subscribers",
        "list.csv",
        "--yes",
        "--max-per-run",
        "2",
    ];
    write_list(tmp.path(), 3);
    let o = herald_env(tmp.path(), &cmd, &env);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    write_list(tmp.path(), 4);
    let o = herald_env(tmp.path(), &cmd, &env);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let got = deliveries(&[&sink]);
    assert_eq!(
        got.len(),
        4,
        "the newcomer joined a campaign under way: {got:?}"
    );
    assert!(got.values().all(|n| *n == 1), "{got:?}");
}

/// The 2023 annual report without --fit: about 155 KB of HTML, which
/// Gmail clips (the unsubscribe link too), and `herald check` an error.
fn annual_report_2023() -> Option<PathBuf> {
    let files = corpus_files()?;
    Some(
        files
            .into_iter()
            .find(|p| p.ends_with("annual-reports/2023.md"))
            .expect("the corpus has the 2023 annual report"),
    )
}

#[test]
fn send_refuses_an_issue_check_finds_errors_in_before_any_connection() {
    let Some(report) = annual_report_2023() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let wire = Tripwire::start();
    settings_for(tmp.path(), &wire.url());
    write_list(tmp.path(), 2);
    let env = send_env(&[]);
    let r = report.to_str().unwrap();
    let o = herald_env(
        tmp.path(),
        &["send", r, "--subscribers", "list.csv", "--yes"],
        &env,
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("gmail-clip") && err.contains("--fit"), "{err}");
    assert!(err.contains("--ignore-check-errors"), "{err}");
    assert_eq!(wire.count(), 0, "a refused issue reached the relay");
    assert!(
        !tmp.path().join(".herald").exists(),
        "a refused issue touched the journal"
    );

    // Cron: the same refusal, and the same exit code.
    std::fs::create_dir(tmp.path().join("posts")).unwrap();
    let text = std::fs::read_to_string(&report).unwrap();
    std::fs::write(
        tmp.path().join("posts/2023.md"),
        text.replacen("---\n", "---\nsend_at: 2025-06-03T12:00:00Z\n", 1),
    )
    .unwrap();
    let o = herald_env(
        tmp.path(),
        &[
            "send",
            "--due",
            "posts",
            "--subscribers",
            "list.csv",
            "--yes",
        ],
        &env,
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--fit"), "{err}");
    assert_eq!(wire.count(), 0);

    // A test send and a dry run are how the issue gets looked at: not refused.
    let o = herald_env(
        tmp.path(),
        &["send", r, "--to", "me@example.org", "--dry-run"],
        &env,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    // The documented flag sends anyway; --fit makes an email Gmail keeps whole.
    let Some(sink) = Sink::start(tmp.path(), "sink") else {
        return;
    };
    let relay = format!("--smtp={}", sink.url());
    for extra in ["--ignore-check-errors", "--fit"] {
        let journal = format!("--journal=j{extra}");
        let o = herald_env(
            tmp.path(),
            &[
                "send",
                r,
                "--subscribers",
                "list.csv",
                "--yes",
                &relay,
                &journal,
                extra,
            ],
            &env,
        );
        assert_eq!(o.status.code(), Some(0), "{extra}: {}", stderr(&o));
    }
    assert_eq!(sink.complete().len(), 4);
    assert_eq!(wire.count(), 0);
}
