//! Several hosts on one PostgreSQL store: senders sharing a campaign,
//! `herald serve` writing beside them, and a SQLite journal moved over.
//! Against a real PostgreSQL server (a fresh database per test on the
//! cluster `.ci/run` starts with scripts/pg-cluster.sh) and Postfix's
//! smtp-sink, measured at the sinks.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::scratch_database::ScratchDatabase;

use crate::serve::{Serve, one_click};
use crate::util::*;

const SECRET: &str = "shared-store-test-secret";

/// The variables that point herald at the test database.
fn pg_env(db: &ScratchDatabase) -> Vec<(&'static str, String)> {
    vec![
        ("HERALD_DATABASE_URL", db.url.clone()),
        ("HERALD_DATABASE_PASSWORD", db.password.clone()),
        ("HERALD_UNSUBSCRIBE_SECRET", SECRET.to_string()),
    ]
}

fn write_config(dir: &Path) {
    let base = std::fs::read_to_string(example_config()).unwrap();
    std::fs::write(
        dir.join("herald.yaml"),
        format!("{base}\nretry_wait: 50ms\n"),
    )
    .unwrap();
}

/// `herald send` of the example post to `list` through `relay`, its
/// output into `dir/NAME.out` and `.err`.
fn sender(
    dir: &Path,
    db: &ScratchDatabase,
    list: &Path,
    relay: &str,
    extra: &[&str],
    name: &str,
) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.current_dir(dir)
        .args(["send", example_post().to_str().unwrap(), "--subscribers"])
        .arg(list)
        .args(["--smtp", relay, "--yes", "--json"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join(format!("{name}.out"))).unwrap())
        .stderr(std::fs::File::create(dir.join(format!("{name}.err"))).unwrap());
    for (k, _) in std::env::vars() {
        if k.starts_with("HERALD_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(pg_env(db));
    cmd.spawn().unwrap()
}

/// Waits for a sender for up to `secs`; kills it and fails past that.
fn finish(mut c: Child, dir: &Path, name: &str, secs: u64) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(s) = c.try_wait().unwrap() {
            return s.code();
        }
        if start.elapsed() > Duration::from_secs(secs) {
            let _ = c.kill();
            let _ = c.wait();
            panic!(
                "{name} did not finish within {secs}s:\n{}",
                std::fs::read_to_string(dir.join(format!("{name}.err"))).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn status(dir: &Path, db: &ScratchDatabase) -> serde_json::Value {
    let env = pg_env(db);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let o = herald_env(dir, &["status", "--json"], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v[0].clone()
}

/// Three `herald send` on one PostgreSQL database and one campaign of
/// 10,000, through two smtp-sinks; one sender SIGKILLed mid-way and
/// started again. Nobody is mailed twice, nobody is lost except the
/// reported unknowns (at most the killed sender's connections), and no
/// one-second window at the sinks together holds more than the rate.
#[test]
fn three_senders_share_a_campaign_and_a_killed_one_loses_nobody() {
    let Some(db) = ScratchDatabase::new("three_senders_share_a_campaign") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (Some(a), Some(b)) = (Sink::start(dir, "sink-a"), Sink::start(dir, "sink-b")) else {
        return;
    };
    write_config(dir);
    let list = write_list(dir, 10_000);
    const RATE: usize = 300;
    let rate = format!("{RATE}/s");
    let args = ["--rate", rate.as_str(), "--connections", "4"];
    let s1 = sender(dir, &db, &list, &a.url(), &args, "s1");
    let s2 = sender(dir, &db, &list, &b.url(), &args, "s2");
    let s3 = sender(dir, &db, &list, &a.url(), &args, "s3");
    // Mid-way: a third of the campaign is out.
    let start = Instant::now();
    while a.count() + b.count() < 3_000 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the senders do not send"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut s2 = s2;
    s2.kill().unwrap();
    s2.wait().unwrap();
    let s2_again = sender(dir, &db, &list, &b.url(), &args, "s2-again");
    for (c, name) in [(s1, "s1"), (s3, "s3"), (s2_again, "s2-again")] {
        let code = finish(c, dir, name, 240);
        let err = std::fs::read_to_string(dir.join(format!("{name}.err"))).unwrap();
        assert_eq!(code, Some(0), "{name}:\n{err}");
    }
    std::thread::sleep(Duration::from_millis(500));

    let v = status(dir, &db);
    let c = &v["campaign"]["counts"];
    let unknown: HashSet<String> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["state"] == "sending")
        .map(|p| p["email"].as_str().unwrap().to_string())
        .collect();
    assert!(
        unknown.len() <= 4,
        "more unknowns than the killed sender had connections: {unknown:?}"
    );
    assert_eq!(
        c["unknown"].as_u64().unwrap() as usize,
        unknown.len(),
        "{c}"
    );
    assert_eq!(c["failed"], 0, "{c}");
    assert_eq!(c["pending"], 0, "{c}");
    assert_eq!(
        c["sent"].as_u64().unwrap() as usize + unknown.len(),
        10_000,
        "{c}"
    );

    let received = deliveries(&[&a, &b]);
    let mut times: Vec<f64> = a
        .complete()
        .into_iter()
        .chain(b.complete())
        .map(|(_, t)| t)
        .collect();
    let twice: Vec<_> = received.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "mailed twice: {twice:?}");
    let lost: Vec<String> = (0..10_000)
        .map(|i| format!("reader{i}@example.org"))
        .filter(|e| !received.contains_key(e) && !unknown.contains(e))
        .collect();
    assert!(
        lost.is_empty(),
        "neither received nor reported unknown: {lost:?}"
    );
    let busiest = busiest_second(&mut times);
    eprintln!(
        "3 senders, 10,000 recipients, {} unknown after the kill; busiest second at the sinks: {busiest} (rate {RATE}/s)",
        unknown.len()
    );
    assert!(
        busiest <= RATE,
        "{busiest} messages reached the sinks within one second (rate {RATE}/s)"
    );
}

/// `herald serve` and two senders on one PostgreSQL database: 200
/// one-click unsubscribes arrive while 10,000 are being sent. Every
/// request succeeds, no write is lost, the campaign finishes.
#[test]
fn the_server_and_two_senders_lose_no_unsubscribe() {
    let Some(db) = ScratchDatabase::new("the_server_and_two_senders_lose_no_unsubscribe") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let Some(sink) = Sink::start(dir, "sink") else {
        return;
    };
    write_config(dir);
    let list = write_list(dir, 10_000);
    let env = pg_env(&db);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let serve = Serve::start(dir, &["--per-client-limit", "1000000"], &env);
    let keys = herald::unsubscribe::Keys::new(SECRET.as_bytes().to_vec(), vec![]);
    let base = serve.url("/unsubscribe");
    let args = ["--connections", "4"];
    let s1 = sender(dir, &db, &list, &sink.url(), &args, "s1");
    let s2 = sender(dir, &db, &list, &sink.url(), &args, "s2");
    let mut statuses = Vec::new();
    for i in 0..200 {
        let email = format!("reader{}@example.org", i * 50 + 7);
        let link = keys.link(&base, &email, &keys.current().token(&email), None);
        statuses.push(one_click(&link).status);
    }
    for (c, name) in [(s1, "s1"), (s2, "s2")] {
        let code = finish(c, dir, name, 240);
        let err = std::fs::read_to_string(dir.join(format!("{name}.err"))).unwrap();
        assert_eq!(code, Some(0), "{name}:\n{err}");
    }
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let o = herald_env(dir, &["suppress", "list", "--json"], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let list_now: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list_now.len(), 200, "every unsubscribe is on the list");
    let v = status(dir, &db);
    let c = &v["campaign"]["counts"];
    assert_eq!(c["failed"], 0, "{c}");
    assert_eq!(c["unknown"], 0, "{c}");
    assert_eq!(c["pending"], 0, "{c}");
    // Everyone on the list was mailed or had unsubscribed (someone who
    // unsubscribed before a sender read the list is not in the campaign
    // at all, as on SQLite).
    let unsubscribed: HashSet<String> = list_now
        .iter()
        .map(|s| s["email"].as_str().unwrap().to_string())
        .collect();
    let received = deliveries(&[&sink]);
    let lost: Vec<String> = (0..10_000)
        .map(|i| format!("reader{i}@example.org"))
        .filter(|e| !received.contains_key(e) && !unsubscribed.contains(e))
        .collect();
    assert!(lost.is_empty(), "neither mailed nor unsubscribed: {lost:?}");
    assert!(
        c["sent"].as_u64().unwrap() + c["skipped"].as_u64().unwrap() <= 10_000,
        "{c}"
    );
    assert!(
        received.values().all(|n| *n == 1),
        "somebody was mailed twice"
    );
    assert_eq!(received.len() as u64, c["sent"].as_u64().unwrap());
    drop(serve);
}

/// A campaign half sent from the SQLite journal moves to PostgreSQL with
/// `herald store migrate` (twice: the second copy changes nothing) and
/// goes on from there: each reader gets the issue once.
#[test]
fn a_journal_moves_to_postgres_and_the_campaign_goes_on() {
    let Some(db) = ScratchDatabase::new("a_journal_moves_to_postgres") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let Some(sink) = Sink::start(dir, "sink") else {
        return;
    };
    write_config(dir);
    // One relay by name with a daily quota: which relay sent each message,
    // and how much of its day it used, move with the journal. The clock is
    // set so that every command sees the same day.
    let mut yaml = std::fs::read_to_string(dir.join("herald.yaml")).unwrap();
    yaml.push_str(&format!(
        "relays:\n  - name: main\n    url: \"{}\"\n    max_per_day: 5000\n",
        sink.url()
    ));
    std::fs::write(dir.join("herald.yaml"), yaml).unwrap();
    const NOW: (&str, &str) = ("HERALD_NOW", "2026-12-01T10:00:00Z");
    let list = write_list(dir, 1_000);
    let secret = [("HERALD_UNSUBSCRIBE_SECRET", SECRET), NOW];
    let post = example_post();
    let send = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec![
            "send",
            post.to_str().unwrap(),
            "--subscribers",
            list.to_str().unwrap(),
            "--yes",
        ];
        args.extend_from_slice(extra);
        herald_env(dir, &args, env)
    };
    let relay_of = |v: &serde_json::Value| v["relays"][0].clone();
    let o = send(&["--max-per-run", "300"], &secret);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = herald_env(dir, &["suppress", "add", "gone@example.org"], &secret);
    assert!(o.status.success(), "{}", stderr(&o));

    let pw = [("HERALD_DATABASE_PASSWORD", db.password.as_str())];
    for round in 0..2 {
        let o = herald_env(dir, &["store", "migrate", "--to", &db.url, "--json"], &pw);
        assert!(o.status.success(), "round {round}: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["match"], true, "{v}");
        assert_eq!(v["before"], v["after"], "{v}");
        assert_eq!(v["before"]["recipients"], 1_000, "{v}");
        assert_eq!(v["before"]["suppressions"], 1, "{v}");
    }
    // A password in the address is refused, and not repeated.
    let o = herald_env(
        dir,
        &[
            "store",
            "migrate",
            "--to",
            "postgres://herald:hunter2secret@127.0.0.1/x",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("HERALD_DATABASE_PASSWORD"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("hunter2secret"), "{}", stderr(&o));

    // From now on the database: `herald config` says so.
    let env = pg_env(&db);
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.push(NOW);
    let status = || {
        let o = herald_env(dir, &["status", "--json"], &env);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()[0].clone()
    };
    let main = relay_of(&status());
    assert_eq!(main["relay"], "main", "{main}");
    assert_eq!(main["sent"], 300, "{main}");
    assert_eq!(main["quota_used_today"], 300, "{main}");
    let o = herald_env(dir, &["config", "--json"], &env);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["store"]["kind"], "postgres", "{v}");
    assert!(
        !o.stdout
            .windows(db.password.len())
            .any(|w| w == db.password.as_bytes())
    );
    let o = send(&[], &env);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = status();
    assert_eq!(v["campaign"]["counts"]["sent"], 1_000, "{v}");
    let main = relay_of(&v);
    assert_eq!(
        (&main["sent"], &main["quota_used_today"]),
        (&1_000.into(), &1_000.into()),
        "{main}"
    );
    let received = deliveries(&[&sink]);
    assert_eq!(received.len(), 1_000);
    assert!(
        received.values().all(|n| *n == 1),
        "somebody was mailed twice"
    );
}
