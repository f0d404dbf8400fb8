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
        said.contains("1 person on the list now was not on it then and is not sent")
            && said.contains("--include-new"),
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

/// A time as `status` and `suppress list` show it: ISO 8601 to the
/// second, in UTC (`2026-12-06T12:42:52Z`), which a spreadsheet reads as
/// a date.
fn is_to_the_second(t: &str) -> bool {
    t.len() == 20 && t.ends_with('Z') && t.parse::<jiff::Timestamp>().is_ok()
}

#[test]
fn the_people_left_out_are_counted_listed_and_a_suppressed_test_address_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(sink) = Sink::start(tmp.path(), "sink") else {
        return;
    };
    settings_for(tmp.path(), &sink.url());
    let post = example_post();
    let post = post.to_str().unwrap();
    let env = send_env(&[]);
    write_list(tmp.path(), 3);
    // By the real clock, so the journal keeps the nanoseconds.
    let o = herald(tmp.path(), &["suppress", "add", "reader1@example.org"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = herald(tmp.path(), &["suppress", "list"]);
    let said = stdout(&o);
    let when = said
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    assert!(is_to_the_second(when), "{said}");
    assert!(said.contains("1 address, 1 reason"), "{said}");

    // The send counts and names whom it left out.
    let o = herald_env(
        tmp.path(),
        &["send", post, "--subscribers", "list.csv", "--yes"],
        &env,
    );
    let said = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{said}{}", stderr(&o));
    assert_eq!(sink.complete().len(), 2);
    assert!(
        said.contains("Left out: 1 person (1 on the suppression list)"),
        "{said}"
    );
    assert!(
        said.contains("line 3: reader1@example.org - on the suppression list"),
        "{said}"
    );
    assert!(said.contains(": 3 recipients; 2 sent, 0 failed"), "{said}");

    // `status` says when it was sent, and its CSV lists the one left out.
    let o = herald(tmp.path(), &["status"]);
    let said = stdout(&o);
    assert!(
        said.contains("  sent from 2025-06-04T00:00:00Z to 2025-06-04T00:00:00Z"),
        "{said}"
    );
    assert!(said.contains("3 recipients: 2 sent"), "{said}");
    assert!(
        said.contains("Suppression list: 1 address (0 unsubscribed"),
        "{said}"
    );
    let campaign = said.split_whitespace().next().unwrap().to_string();
    let o = herald(tmp.path(), &["status", &campaign, "--csv"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let csv = stdout(&o);
    let row = csv
        .lines()
        .find(|l| l.starts_with("reader1@example.org,"))
        .unwrap_or_else(|| panic!("{csv}"));
    let fields: Vec<&str> = row.split(',').collect();
    assert_eq!(fields[1], "skipped", "{row}");
    assert_eq!(fields[3], "on the suppression list", "{row}");
    assert_eq!(fields[7], "manual", "{row}");
    assert!(is_to_the_second(fields[8]), "{row}");

    // A test to that address is not silently dropped: it says why, and
    // how to lift it, and is bad input (exit 2), not "nothing to do".
    let o = herald_env(
        tmp.path(),
        &["send", post, "--to", "Reader1@example.org", "--yes"],
        &env,
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("reader1@example.org is on the suppression list (added by hand, "),
        "{err}"
    );
    assert!(
        err.contains("herald suppress remove reader1@example.org"),
        "{err}"
    );
    assert_eq!(sink.complete().len(), 2);
    // With another address, the test goes to that one, with a warning.
    let o = herald_env(
        tmp.path(),
        &[
            "send",
            post,
            "--to",
            "reader1@example.org",
            "--to",
            "me@example.org",
            "--yes",
        ],
        &env,
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("the test was not sent to reader1@example.org"),
        "{err}"
    );
    assert_eq!(deliveries(&[&sink]).get("me@example.org"), Some(&1));
    // Lifted as it says, the test goes.
    let o = herald(tmp.path(), &["suppress", "remove", "reader1@example.org"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = herald_env(
        tmp.path(),
        &["send", post, "--to", "reader1@example.org", "--yes"],
        &env,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
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

#[test]
fn a_list_separated_by_semicolons_gets_a_hint_naming_the_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    settings_for(tmp.path(), "smtp://127.0.0.1:1?tls=none");
    // As German Excel saves "CSV".
    std::fs::write(
        tmp.path().join("list.csv"),
        "E-Mail;Vorname\nana@example.org;Ana\n",
    )
    .unwrap();
    let post = example_post();
    let o = herald_env(
        tmp.path(),
        &[
            "send",
            post.to_str().unwrap(),
            "--subscribers",
            "list.csv",
            "--dry-run",
        ],
        &send_env(&[]),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("list.csv:1: the list seems to be separated by semicolons"),
        "{err}"
    );
    assert!(err.contains("CSV UTF-8 (comma delimited)"), "{err}");
    // A header without an email column and without semicolons keeps the
    // plain message.
    std::fs::write(tmp.path().join("list.csv"), "name\nAna\n").unwrap();
    let o = herald_env(
        tmp.path(),
        &[
            "send",
            post.to_str().unwrap(),
            "--subscribers",
            "list.csv",
            "--dry-run",
        ],
        &send_env(&[]),
    );
    let err = stderr(&o);
    assert!(!err.contains("semicolons"), "{err}");
    assert!(err.contains("one of them `email`"), "{err}");
}

#[test]
fn a_missing_setting_says_which_settings_file_was_read_or_that_none_was_found() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp
        .path()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let post = example_post();
    let test = ["send", post.to_str().unwrap(), "--to", "me@example.org"];
    // An empty folder: no relay, and no herald.yaml to have put it in.
    let o = herald(tmp.path(), &test);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("say which mail relay"), "{err}");
    assert!(
        err.contains("No settings file was found: herald looked for herald.yaml in ")
            && err.contains(&folder)
            && err.contains("`herald init` makes one"),
        "{err}"
    );
    // A herald.yaml with a relay and nothing else: `from` and the rest are
    // missing, and the message names the file it read.
    std::fs::write(
        tmp.path().join("herald.yaml"),
        "smtp_url: smtp://127.0.0.1:2525?tls=none\n",
    )
    .unwrap();
    let o = herald(tmp.path(), &test);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("these settings are missing"), "{err}");
    assert!(err.contains("`from`"), "{err}");
    let read = format!(
        "Settings read from {}",
        tmp.path().join("herald.yaml").display()
    );
    assert!(err.contains(&read), "{err}");
}
