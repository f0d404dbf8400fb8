//! Where a running send meets the rest of herald (issue 23): suppressions
//! written while it runs, by `herald suppress add` and by `herald serve`'s
//! one-click unsubscribe, on SQLite and PostgreSQL; and a journal whose
//! disk fills during the send, on a real tiny tmpfs. The real binary, a
//! real relay (Postfix's smtp-sink), measured at the relay.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use herald::store::postgres::ScratchDatabase;

use crate::serve::{SECRET, Serve, dry_run_links, one_click};
use crate::util::*;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// `herald send` in the background, its output in `dir/NAME.out`/`.err`.
fn sender(
    dir: &Path,
    list: &Path,
    sink: &Sink,
    extra: &[&str],
    env: &[(&str, String)],
    name: &str,
) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.current_dir(dir)
        .args(["send", example_post().to_str().unwrap(), "--subscribers"])
        .arg(list)
        .args(["--config", example_config().to_str().unwrap()])
        .args(["--smtp", &sink.url(), "--yes", "--json"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join(format!("{name}.out"))).unwrap())
        .stderr(std::fs::File::create(dir.join(format!("{name}.err"))).unwrap());
    for (k, _) in std::env::vars() {
        if k.starts_with("HERALD_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("HERALD_UNSUBSCRIBE_SECRET", SECRET);
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    cmd.spawn().unwrap()
}

/// Waits up to `secs` for `c`; its exit code, and when it ended.
fn wait(mut c: Child, dir: &Path, name: &str, secs: u64) -> (Option<i32>, Instant) {
    let start = Instant::now();
    loop {
        if let Some(s) = c.try_wait().unwrap() {
            return (s.code(), Instant::now());
        }
        if start.elapsed() > Duration::from_secs(secs) {
            let _ = c.kill();
            let _ = c.wait();
            panic!(
                "{name} did not finish within {secs}s:\n{}",
                std::fs::read_to_string(dir.join(format!("{name}.err"))).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_for_sink(sink: &Sink, n: usize, secs: u64) {
    let start = Instant::now();
    while sink.complete().len() < n {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "the sink has {} messages after {secs}s",
            sink.complete().len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A throttled send of 150; while it runs, 20 people are suppressed with
/// `herald suppress add` and (on SQLite, where `herald serve` runs beside
/// it) 5 unsubscribe by one click. None of them gets mail more than 2 s
/// after the moment their suppression began.
fn suppressions_during_a_send(db: Option<&ScratchDatabase>) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some(sink) = Sink::start(d, "sink") else {
        return;
    };
    let list = write_list(d, 150);
    let env: Vec<(&str, String)> = match db {
        Some(db) => vec![
            ("HERALD_DATABASE_URL", db.url.clone()),
            ("HERALD_DATABASE_PASSWORD", db.password.clone()),
        ],
        None => vec![],
    };
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // One-click links, from a dry run with the serve's address.
    let config = example_config();
    let serve = db
        .is_none()
        .then(|| Serve::start(d, &["--config", config.to_str().unwrap()], &[]));
    let links = serve
        .as_ref()
        .map(|s| dry_run_links(d, &example_post(), &list, &s.url("/unsubscribe")));
    let child = sender(d, &list, &sink, &["--set", "rate=25/s"], &env, "send");
    wait_for_sink(&sink, 10, 30);
    let mut when: HashMap<String, f64> = HashMap::new();
    // By hand, ten at a time, well ahead of the throttle.
    for range in [80..90, 110..120] {
        let emails: Vec<String> = range.map(|i| format!("reader{i}@example.org")).collect();
        let t = now();
        let mut args = vec!["suppress", "add"];
        args.extend(emails.iter().map(String::as_str));
        let mut with_secret = env_ref.clone();
        with_secret.push(("HERALD_UNSUBSCRIBE_SECRET", SECRET));
        let o = herald_env(d, &args, &with_secret);
        assert!(o.status.success(), "{}", stderr(&o));
        for e in emails {
            when.insert(e, t);
        }
        std::thread::sleep(Duration::from_millis(700));
    }
    if let Some(links) = &links {
        for i in 130..135 {
            let email = format!("reader{i}@example.org");
            let t = now();
            let a = one_click(&links[&email]);
            assert!(a.status < 300, "{} {}", a.status, a.body);
            when.insert(email, t);
        }
    }
    let (code, _) = wait(child, d, "send", 60);
    let err = std::fs::read_to_string(d.join("send.err")).unwrap();
    assert!(matches!(code, Some(0) | Some(3)), "{code:?}\n{err}");
    let mut late = Vec::new();
    let mut got: HashMap<String, usize> = HashMap::new();
    for (rcpt, at) in sink.complete() {
        *got.entry(rcpt.clone()).or_default() += 1;
        if let Some(t) = when.get(&rcpt)
            && at > t + 2.0
        {
            late.push(format!("{rcpt} {:.2}s after", at - t));
        }
    }
    assert!(
        late.is_empty(),
        "mailed after their suppression: {late:?}\n{err}"
    );
    assert!(got.values().all(|n| *n == 1));
    // Everyone else got the issue.
    for i in 0..150 {
        let e = format!("reader{i}@example.org");
        assert!(
            got.contains_key(&e) || when.contains_key(&e),
            "{e} was lost"
        );
    }
    drop(serve);
}

#[test]
fn suppressions_during_a_send_stop_the_mail_within_two_seconds_sqlite() {
    suppressions_during_a_send(None);
}

#[test]
fn suppressions_during_a_send_stop_the_mail_within_two_seconds_postgres() {
    let Some(db) = ScratchDatabase::new("suppressions_during_a_send") else {
        return;
    };
    suppressions_during_a_send(Some(&db));
}
