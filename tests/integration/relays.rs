//! Several relays (`relays:` in herald.yaml) against real servers:
//! Postfix's smtp-sinks on 127.0.0.1, each its own relay, measured at the
//! sinks' receive times (the dump files' times), never with timed
//! assertions in herald.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

const SECRET: &str = "relays-test-secret";

/// One relay of the test: its name, its sink, its rate and connections.
struct Relay<'a> {
    name: &'a str,
    sink: &'a Sink,
    rate: &'a str,
    connections: usize,
}

/// herald.yaml: the example settings, fast retries, and `relays:`.
fn config(dir: &Path, relays: &[Relay<'_>]) {
    let base = std::fs::read_to_string(example_config()).unwrap();
    let mut text = format!("{base}\nretry_wait: 50ms\nrelay_down_after: 2s\nrelays:\n");
    for r in relays {
        text.push_str(&format!(
            "  - name: {}\n    url: \"{}\"\n    rate: {}\n    connections: {}\n",
            r.name,
            r.sink.url(),
            r.rate,
            r.connections
        ));
    }
    std::fs::write(dir.join("herald.yaml"), text).unwrap();
}

/// `herald send` of the example post to `list`, through the relays of
/// herald.yaml, its output into `dir/send.out` and `.err`.
fn sender(dir: &Path, list: &Path) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.current_dir(dir)
        .args(["send", example_post().to_str().unwrap(), "--subscribers"])
        .arg(list)
        .args(["--yes", "--json"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("send.out")).unwrap())
        .stderr(std::fs::File::create(dir.join("send.err")).unwrap());
    for (k, _) in std::env::vars() {
        if k.starts_with("HERALD_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("HERALD_UNSUBSCRIBE_SECRET", SECRET);
    cmd.spawn().unwrap()
}

/// Waits for the sender (at most `secs`, else kills it and fails).
fn finish(mut c: Child, dir: &Path, secs: u64) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(s) = c.try_wait().unwrap() {
            return s.code();
        }
        if start.elapsed() > Duration::from_secs(secs) {
            let _ = c.kill();
            let _ = c.wait();
            panic!("herald did not finish within {secs}s:\n{}", log(dir));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("send.err")).unwrap_or_default()
}

/// `herald status --json` of the one campaign.
fn status(dir: &Path) -> serde_json::Value {
    let o = herald_env(
        dir,
        &["status", "--json"],
        &[("HERALD_UNSUBSCRIBE_SECRET", SECRET)],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v[0].clone()
}

fn list(dir: &Path, n: usize) -> PathBuf {
    write_list(dir, n)
}

/// Three relays with different rates: each carries a share, and no
/// one-second window at any sink holds more than that relay's rate.
#[test]
fn each_relay_keeps_its_own_rate_measured_at_its_sink() {
    let tmp = tempfile::tempdir().unwrap();
    let (Some(a), Some(b), Some(c)) = (
        Sink::start(tmp.path(), "a"),
        Sink::start(tmp.path(), "b"),
        Sink::start(tmp.path(), "c"),
    ) else {
        return;
    };
    let relays = [
        Relay {
            name: "slow",
            sink: &a,
            rate: "3/s",
            connections: 2,
        },
        Relay {
            name: "middle",
            sink: &b,
            rate: "6/s",
            connections: 2,
        },
        Relay {
            name: "fast",
            sink: &c,
            rate: "12/s",
            connections: 3,
        },
    ];
    config(tmp.path(), &relays);
    let n = 120;
    let list = list(tmp.path(), n);
    let code = finish(sender(tmp.path(), &list), tmp.path(), 120);
    assert_eq!(code, Some(0), "{}", log(tmp.path()));
    let got = deliveries(&[&a, &b, &c]);
    assert_eq!(got.len(), n, "{}", log(tmp.path()));
    assert!(got.values().all(|&k| k == 1), "{got:?}");
    let s = status(tmp.path());
    let recorded: HashMap<String, i64> = s["relays"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["relay"].as_str().unwrap().to_string(),
                r["sent"].as_i64().unwrap(),
            )
        })
        .collect();
    for r in &relays {
        let mut times: Vec<f64> = r.sink.complete().into_iter().map(|(_, t)| t).collect();
        let max: usize = r.rate.trim_end_matches("/s").parse().unwrap();
        assert!(!times.is_empty(), "{} carried nothing", r.name);
        // What the journal says each relay accepted is what it received.
        assert_eq!(
            recorded.get(r.name).copied(),
            Some(times.len() as i64),
            "{}: {recorded:?}",
            r.name
        );
        let busiest = busiest_second(&mut times);
        assert!(
            busiest <= max,
            "{}: {busiest} messages in one second, at most {max}",
            r.name
        );
    }
}

/// One sink killed mid-run: its share moves to the others, the run
/// finishes, and nobody is mailed twice beyond what was in flight to the
/// killed sink (a message it may have taken in full just before it died
/// without answering: SMTP cannot tell, at most one per connection).
#[test]
fn a_relay_killed_mid_run_hands_its_share_to_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let (Some(mut a), Some(b), Some(c)) = (
        Sink::start(tmp.path(), "a"),
        Sink::start(tmp.path(), "b"),
        Sink::start(tmp.path(), "c"),
    ) else {
        return;
    };
    let connections = 2;
    config(
        tmp.path(),
        &[
            Relay {
                name: "doomed",
                sink: &a,
                rate: "10/s",
                connections,
            },
            Relay {
                name: "b",
                sink: &b,
                rate: "10/s",
                connections,
            },
            Relay {
                name: "c",
                sink: &c,
                rate: "10/s",
                connections,
            },
        ],
    );
    let n = 150;
    let list = list(tmp.path(), n);
    let child = sender(tmp.path(), &list);
    let start = Instant::now();
    while a.count() < 15 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the first sink never got 15 messages:\n{}",
            log(tmp.path())
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    a.kill();
    let before_kill = a.complete().len();
    let code = finish(child, tmp.path(), 180);
    assert_eq!(code, Some(0), "{}", log(tmp.path()));
    let got = deliveries(&[&a, &b, &c]);
    // Nobody lost.
    for i in 0..n {
        let who = format!("reader{i}@example.org");
        assert!(got.contains_key(&who), "{who} got nothing");
    }
    let twice: Vec<_> = got.iter().filter(|(_, k)| **k > 1).collect();
    assert!(twice.len() <= connections, "{twice:?}");
    assert!(twice.iter().all(|(_, k)| **k == 2), "{twice:?}");
    // The others carried the rest.
    assert!(b.complete().len() + c.complete().len() >= n - before_kill);
    let s = status(tmp.path());
    assert_eq!(s["campaign"]["counts"]["sent"], n as i64, "{s}");
    assert!(s["campaign"]["finished_at"].is_string(), "{s}");
}
