//! A dry run is absolute: every subcommand, with `--dry-run` and the flags
//! clap accepts beside it, run as the real binary against a tripwire relay
//! (a 127.0.0.1 listener that counts connections; `smtp_url`, `relays:`
//! and `--smtp` all point at it) in a folder whose files, journal included,
//! must be byte for byte the same afterwards, except the outbox.
//!
//! The combinations come from the CLI definition itself (clap's
//! `CommandFactory`), so a new flag or subcommand is covered without
//! editing this file. The full power set of ~25 flags is far too large;
//! what runs is bounded and still puts every flag beside `--dry-run`:
//!
//! - for each subcommand that has `--dry-run`: `--dry-run` alone, every
//!   flag alone with it, and every pair of flags with it (globals
//!   included). The post (a positional) and a required mailbox are filled
//!   in unless the combination conflicts with them, and `send` gets
//!   `--subscribers` unless the combination has it; a combination clap
//!   refuses is run too, and must exit 2 naming its flags;
//! - every other subcommand (nested ones included) given `--dry-run`: clap
//!   refuses it (exit 2), and nothing is touched.
//!
//! Every value comes from the flag's definition: its name when it is one
//! herald's tests know (`--rate` gets `5/s`), else its value name (`FILE`,
//! `DIR`, `URL`, `N`) or its first possible value. Settings alternate
//! between `smtp_url` and two `relays:`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use clap::{Arg, ArgAction, CommandFactory};

use crate::util::*;

/// One flag of a combination: its id and what goes on the command line.
#[derive(Clone, Debug)]
struct Flag {
    id: String,
    long: String,
    takes_value: bool,
    value_name: Option<String>,
    first_possible: Option<String>,
}

impl Flag {
    fn of(a: &Arg) -> Option<Flag> {
        let long = a.get_long()?.to_string();
        let takes_value = matches!(a.get_action(), ArgAction::Set | ArgAction::Append);
        Some(Flag {
            id: a.get_id().to_string(),
            long,
            takes_value,
            value_name: a
                .get_value_names()
                .and_then(|v| v.first())
                .map(|s| s.to_string()),
            first_possible: a
                .get_possible_values()
                .first()
                .map(|p| p.get_name().to_string()),
        })
    }

    fn positional_value(a: &Arg) -> String {
        match a.get_id().as_str() {
            "post" => "post.md".into(),
            _ => "empty-file".into(),
        }
    }

    /// The words on the command line, the value derived from the definition.
    fn words(&self, wire: &str) -> Vec<String> {
        let mut w = vec![format!("--{}", self.long)];
        if self.takes_value {
            w.push(self.value(wire));
        }
        w
    }

    fn value(&self, wire: &str) -> String {
        // Flags whose meaning a name alone does not give.
        let known = match self.id.as_str() {
            "subscribers" => Some("list.csv"),
            "suppress" => Some("suppress.txt"),
            "to" => Some("me@example.org"),
            "rate" => Some("5/s"),
            "due" => Some("posts"),
            "journal" => Some("journal"),
            "outbox" => Some("out"),
            "config" => Some("herald.yaml"),
            "set" => Some("subject=Matrix issue"),
            "maildir" => Some("maildir"),
            "mbox" => Some("mbox"),
            "imap" => Some("IMAP"),
            _ => None,
        };
        if let Some(v) = known {
            return v.to_string();
        }
        if let Some(p) = &self.first_possible {
            return p.clone();
        }
        let name = self.value_name.as_deref().unwrap_or("");
        match name {
            n if n.contains("URL") => wire.to_string(),
            n if n.contains("FILE") => "empty-file".into(),
            n if n.contains("DIR") => "some-folder".into(),
            n if n.contains("ADDRESS") => "me@example.org".into(),
            "N" => "1".into(),
            _ => "1".into(),
        }
    }
}

/// The runnable subcommands (leaves), by path: `["suppress", "add"]`.
fn leaves(cmd: &clap::Command, path: Vec<String>, out: &mut Vec<(Vec<String>, clap::Command)>) {
    if cmd.has_subcommands() {
        for sub in cmd.get_subcommands() {
            let mut p = path.clone();
            p.push(sub.get_name().to_string());
            leaves(sub, p, out);
        }
    } else {
        out.push((path, cmd.clone()));
    }
}

/// Every file under `dir` but the outboxes, with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            if rel.starts_with("outbox") || rel.starts_with("out") {
                continue;
            }
            if p.is_dir() {
                out.insert(rel, b"<dir>".to_vec());
                stack.push(p);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    out
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        let t = to.join(e.file_name());
        if p.is_dir() {
            copy_tree(&p, &t);
        } else {
            std::fs::copy(&p, &t).unwrap();
        }
    }
}

const NOW: &str = "2025-06-04T00:00:00Z";
const SECRET: &str = "matrix-secret";

/// The folder every run starts from: a post, a folder of due posts, a
/// list, a suppression file, a maildir and an mbox with a bounce, and a
/// real journal (a finished campaign sent through smtp-sink, and a
/// suppression) in both `.herald` and `journal`.
fn template(root: &Path) -> Option<PathBuf> {
    let t = root.join("template");
    std::fs::create_dir_all(t.join("posts")).unwrap();
    std::fs::copy(example_post(), t.join("post.md")).unwrap();
    std::fs::copy(example_post(), t.join("posts/post.md")).unwrap();
    let mut list = String::from("email,first_name\n");
    for i in 0..5 {
        list.push_str(&format!("reader{i}@example.org,Reader{i}\n"));
    }
    list.push_str("gone@example.org,Gone\n");
    std::fs::write(t.join("list.csv"), list).unwrap();
    std::fs::write(t.join("suppress.txt"), "reader4@example.org\n").unwrap();
    std::fs::write(t.join("empty-file"), "").unwrap();
    let bounce = "From: MAILER-DAEMON@example.org\r\nTo: bounces@example.org\r\nSubject: Undelivered Mail Returned to Sender\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nThe mail could not be delivered.\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\nFinal-Recipient: rfc822; reader1@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 user unknown\r\n--b--\r\n";
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(t.join("maildir").join(sub)).unwrap();
    }
    std::fs::write(t.join("maildir/new/1.bounce"), bounce).unwrap();
    std::fs::write(
        t.join("mbox"),
        format!(
            "From MAILER-DAEMON Thu Jun  5 10:00:00 2025\n{}\n",
            bounce.replace("\r\n", "\n")
        ),
    )
    .unwrap();
    // The real journal: last month's issue sent for real, and a bounce.
    let sink = Sink::start(root, "sink")?;
    let older = another_issue(&t, "older-issue");
    let env = [
        ("HERALD_NOW", NOW),
        ("HERALD_UNSUBSCRIBE_SECRET", SECRET),
        ("HERALD_SMTP_URL", &sink.url()),
    ];
    let o = herald_env(
        &t,
        &[
            "--config",
            example_config().to_str().unwrap(),
            "send",
            older.to_str().unwrap(),
            "--subscribers",
            "list.csv",
            "--yes",
            "--journal",
            ".herald",
        ],
        &env,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    std::fs::remove_file(&older).unwrap();
    let o = herald_env(&t, &["suppress", "add", "gone@example.org"], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    copy_tree(&t.join(".herald"), &t.join("journal"));
    Some(t)
}

fn settings(wire: &Tripwire, relays: bool) -> String {
    let mut s = std::fs::read_to_string(example_config()).unwrap();
    if relays {
        s.push_str(&format!(
            "\nrelays:\n  - name: one\n    url: {u}\n  - name: two\n    url: {u}\n",
            u = wire.url()
        ));
    } else {
        s.push_str(&format!("\nsmtp_url: {}\n", wire.url()));
    }
    s
}

struct Case {
    label: String,
    argv: Vec<String>,
    /// The flags of the combination (for the message of a refusal).
    longs: Vec<String>,
    accepted: bool,
    dry: bool,
}

/// The combinations, as the words after `herald`.
fn cases(wire_url: &str) -> Vec<Case> {
    let mut root = herald::cli::Cli::command();
    // Built, so groups know their members and subcommands their globals.
    root.build();
    let globals: Vec<Flag> = root
        .get_arguments()
        .filter(|a| a.is_global_set())
        .filter_map(Flag::of)
        .filter(|f| f.id != "help" && f.id != "version")
        .collect();
    let mut all = Vec::new();
    leaves(&root, Vec::new(), &mut all);
    let mut out = Vec::new();
    let accepts = |argv: &[String]| {
        herald::cli::Cli::command()
            .try_get_matches_from(std::iter::once("herald".to_string()).chain(argv.iter().cloned()))
            .is_ok()
    };
    for (path, cmd) in &all {
        let has_dry = cmd.get_arguments().any(|a| a.get_id() == "dry_run");
        if !has_dry {
            // Refused by clap: nothing may run.
            let mut argv = path.clone();
            argv.push("--dry-run".into());
            out.push(Case {
                label: argv.join(" "),
                accepted: accepts(&argv),
                argv,
                longs: vec!["--dry-run".into()],
                dry: true,
            });
            continue;
        }
        let own: Vec<Flag> = cmd
            .get_arguments()
            .filter(|a| !a.is_positional() && a.get_id() != "dry_run" && a.get_id() != "help")
            .filter(|a| !a.is_global_set())
            .filter_map(Flag::of)
            .collect();
        let flags: Vec<Flag> = globals.iter().cloned().chain(own).collect();
        let positionals: Vec<&Arg> = cmd.get_arguments().filter(|a| a.is_positional()).collect();
        let required_groups: Vec<Vec<String>> = cmd
            .get_groups()
            .filter(|g| g.is_required_set())
            .map(|g| g.get_args().map(|a| a.to_string()).collect())
            .collect();
        let mut combos: Vec<Vec<&Flag>> = vec![vec![]];
        for (i, a) in flags.iter().enumerate() {
            combos.push(vec![a]);
            for b in &flags[i + 1..] {
                combos.push(vec![a, b]);
            }
        }
        for combo in combos {
            let mut words: Vec<String> = path.clone();
            for f in &combo {
                words.extend(f.words(wire_url));
            }
            words.push("--dry-run".into());
            let ids: Vec<&str> = combo.iter().map(|f| f.id.as_str()).collect();
            // What a runnable command needs that the combination lacks.
            let mut fills: Vec<Vec<String>> = Vec::new();
            for g in &required_groups {
                if !g.iter().any(|m| ids.contains(&m.as_str()))
                    && let Some(f) = flags.iter().find(|f| g.first() == Some(&f.id))
                {
                    fills.push(f.words(wire_url));
                }
            }
            if path[0] == "send" && !ids.contains(&"subscribers") {
                fills.push(vec!["--subscribers".into(), "list.csv".into()]);
            }
            for p in &positionals {
                fills.push(vec![Flag::positional_value(p)]);
            }
            // Each fill is kept unless it is what makes clap refuse.
            let mut argv = words.clone();
            for fill in fills {
                let mut with = argv.clone();
                with.extend(fill);
                if accepts(&with) || !accepts(&argv) {
                    argv = with;
                }
            }
            out.push(Case {
                label: argv.join(" "),
                accepted: accepts(&argv),
                longs: combo.iter().map(|f| format!("--{}", f.long)).collect(),
                argv,
                dry: true,
            });
        }
    }
    out
}

#[test]
fn a_dry_run_never_connects_never_changes_the_journal_and_writes_only_its_outbox() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(template) = template(tmp.path()) else {
        return;
    };
    let before = snapshot(&template);
    assert!(before.contains_key(Path::new(".herald/journal.db")));
    // The IMAP server is not a relay; it points at a port nobody listens on.
    let imap = format!("imaps://user@127.0.0.1:{}/INBOX", free_port());
    let probe = Tripwire::start();
    let cases: Vec<Case> = cases("WIRE");
    let total = cases.len();
    let next = Arc::new(AtomicUsize::new(0));
    let cases = Arc::new(cases);
    let workers = 4;
    let results: Vec<(Vec<String>, BTreeMap<i32, usize>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let cases = Arc::clone(&cases);
                let next = Arc::clone(&next);
                let template = template.clone();
                let before = &before;
                let imap = imap.clone();
                let root = tmp.path().to_path_buf();
                s.spawn(move || {
                    let wire = Tripwire::start();
                    let mut failures = Vec::new();
                    let mut codes: BTreeMap<i32, usize> = BTreeMap::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(case) = cases.get(i) else { break };
                        let dir = root.join(format!("run-{w}-{i}"));
                        copy_tree(&template, &dir);
                        let relays = i % 2 == 1;
                        let yaml = settings(&wire, relays);
                        std::fs::write(dir.join("herald.yaml"), &yaml).unwrap();
                        let mut expected = before.clone();
                        expected.insert("herald.yaml".into(), yaml.into_bytes());
                        let argv: Vec<String> = case
                            .argv
                            .iter()
                            .map(|a| match a.as_str() {
                                "WIRE" => wire.url(),
                                "IMAP" => imap.clone(),
                                _ => a.clone(),
                            })
                            .collect();
                        let args: Vec<&str> = argv.iter().map(String::as_str).collect();
                        let hits = wire.hits.load(Ordering::SeqCst);
                        let o = herald_env(
                            &dir,
                            &args,
                            &[
                                ("HERALD_NOW", NOW),
                                ("HERALD_UNSUBSCRIBE_SECRET", SECRET),
                                ("HERALD_IMAP_PASSWORD", "pw"),
                            ],
                        );
                        let code = o.status.code().unwrap_or(-1);
                        *codes.entry(code).or_default() += 1;
                        let settings = if relays { "relays:" } else { "smtp_url" };
                        let what = format!("`herald {}` ({settings})", case.label);
                        if wire.hits.load(Ordering::SeqCst) != hits {
                            failures.push(format!("{what} connected to the relay"));
                        }
                        if code == 9 || code == -1 {
                            failures.push(format!("{what} crashed: {}", stderr(&o)));
                        }
                        if !case.accepted {
                            let err = stderr(&o);
                            if code != 2 {
                                failures
                                    .push(format!("{what}: clap refuses it, herald exited {code}"));
                            }
                            for l in &case.longs {
                                if !err.contains(l.as_str()) {
                                    failures
                                        .push(format!("{what}: refused without naming {l}: {err}"));
                                }
                            }
                        }
                        if case.dry {
                            let after = snapshot(&dir);
                            if after != expected {
                                let changed: std::collections::BTreeSet<String> = after
                                    .keys()
                                    .chain(expected.keys())
                                    .filter(|k| after.get(*k) != expected.get(*k))
                                    .map(|k| k.display().to_string())
                                    .collect();
                                failures.push(format!(
                                    "{what} changed {changed:?} (exit {code}): {}",
                                    stderr(&o)
                                ));
                            }
                        }
                        std::fs::remove_dir_all(&dir).ok();
                    }
                    (failures, codes)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut failures = Vec::new();
    let mut codes: BTreeMap<i32, usize> = BTreeMap::new();
    for (f, c) in results {
        failures.extend(f);
        for (k, v) in c {
            *codes.entry(k).or_default() += v;
        }
    }
    let refused = cases.iter().filter(|c| !c.accepted).count();
    println!(
        "flag matrix: {total} combinations ran ({} accepted by clap, {refused} refused), exit codes {codes:?}",
        total - refused
    );
    assert_eq!(probe.hits.load(Ordering::SeqCst), 0);
    // The matrix is not empty by accident: both commands with --dry-run,
    // and real dry runs among them.
    assert!(total > 200, "only {total} combinations");
    assert!(codes.get(&0).copied().unwrap_or(0) > 100, "{codes:?}");
    assert!(
        failures.is_empty(),
        "{} of {total} combinations broke the dry run's promise:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// On PostgreSQL the journal is shared and cannot be copied: a dry run
/// reads it and writes nothing, in every form.
#[test]
fn a_dry_run_on_postgres_writes_nothing_to_the_database() {
    use herald::store::{Intake, Journal, Suppressions};
    let Some(db) = crate::scratch_database::ScratchDatabase::new("a_dry_run_on_postgres") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let Some(sink) = Sink::start(dir, "sink") else {
        return;
    };
    let env = [
        ("HERALD_NOW", NOW),
        ("HERALD_UNSUBSCRIBE_SECRET", SECRET),
        ("HERALD_DATABASE_URL", db.url.as_str()),
        ("HERALD_DATABASE_PASSWORD", db.password.as_str()),
    ];
    write_list(dir, 3);
    std::fs::create_dir(dir.join("posts")).unwrap();
    std::fs::copy(example_post(), dir.join("posts/post.md")).unwrap();
    std::fs::create_dir_all(dir.join("maildir/new")).unwrap();
    std::fs::write(
        dir.join("maildir/new/1"),
        "From: MAILER-DAEMON@example.org\r\nSubject: Undelivered\r\n\r\n550 5.1.1 <reader1@example.org>: user unknown\r\n",
    )
    .unwrap();
    // A real campaign and a suppression in the database first.
    let older = another_issue(dir, "older-issue");
    let cfg = example_config();
    let cfg = cfg.to_str().unwrap();
    let smtp = format!("--smtp={}", sink.url());
    let o = herald_env(
        dir,
        &[
            "--config",
            cfg,
            "send",
            older.to_str().unwrap(),
            "--subscribers",
            "list.csv",
            "--yes",
            &smtp,
        ],
        &env,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = herald_env(dir, &["suppress", "add", "reader2@example.org"], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let dump = || {
        // What the database holds, read through the store's own queries.
        let store = herald::store::Postgres::open(&db.target()).unwrap();
        let mut out = format!("{:?}", store.suppressions().unwrap());
        for c in store.campaigns().unwrap() {
            out.push_str(&format!(
                "{c:?} {:?} {:?} {:?}",
                store.recipients(&c.id).unwrap(),
                store.counts(&c.id).unwrap(),
                store.bounces(&c.id).unwrap()
            ));
        }
        out
    };
    let before = dump();
    let wire = Tripwire::start();
    let wire_url = format!("--smtp={}", wire.url());
    let post = dir.join("posts/post.md");
    let post = post.to_str().unwrap();
    let runs: [&[&str]; 4] = [
        &["send", post, "--subscribers", "list.csv", "--yes"],
        &[
            "send",
            "--due",
            "posts",
            "--subscribers",
            "list.csv",
            "--yes",
            "--outbox",
            "due",
        ],
        &["send", post, "--to", "me@example.org", "--outbox", "test"],
        &["bounces", "--maildir", "maildir"],
    ];
    for args in runs {
        let mut argv = vec!["--config", cfg];
        argv.extend_from_slice(args);
        argv.push("--dry-run");
        if args[0] == "send" {
            argv.push(&wire_url);
        }
        let o = herald_env(dir, &argv, &env);
        // The maildir's report names reader1 but carries no token and quotes
        // no Message-ID of herald's: it is left for a person (exit 3), in a
        // dry run as in a real one.
        let want = if args[0] == "bounces" { 3 } else { 0 };
        assert_eq!(o.status.code(), Some(want), "{argv:?}: {}", stderr(&o));
    }
    assert_eq!(wire.count(), 0, "a dry run connected to the relay");
    assert_eq!(dump(), before, "a dry run changed the database");
    // They did run: the list's messages (one suppressed), the due post's, the test's.
    assert_eq!(eml_files(&dir.join("outbox/herald-example-issue")).len(), 2);
    assert_eq!(eml_files(&dir.join("due/herald-example-issue")).len(), 2);
    assert_eq!(eml_files(&dir.join("test")).len(), 1);
}
