//! `herald serve` over real HTTP on 127.0.0.1, with curl as the client (the
//! one-click POST exactly as Gmail sends it) and raw sockets for clients
//! that misbehave. The page in a real browser is in `browser.rs`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::delivery::Server;
use crate::util::*;

pub(crate) const SECRET: &str = "serve-test-secret";

/// A running `herald serve`, stopped (SIGKILL) when dropped.
pub(crate) struct Serve {
    child: Child,
    pub addr: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Serve {
    /// Starts `herald serve --listen 127.0.0.1:0` in `dir` (journal
    /// `dir/.herald`), with the test secret unless `env` sets one.
    pub(crate) fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Serve {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
        cmd.current_dir(dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, _) in std::env::vars() {
            if k.starts_with("HERALD_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("HERALD_UNSUBSCRIBE_SECRET", SECRET);
        cmd.envs(env.iter().copied());
        let mut child = cmd.spawn().expect("herald serve starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = Vec::new();
        let addr = loop {
            let Some(Ok(line)) = lines.next() else {
                panic!("herald serve did not start:\n{}", seen.join("\n"));
            };
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
            seen.push(line);
        };
        // Keep reading its log, so it never blocks on a full pipe.
        let log = Arc::new(Mutex::new(seen));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Serve { child, addr, log }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// SIGTERM, then its exit code and stdout.
    pub(crate) fn stop(mut self) -> (Option<i32>, String) {
        terminate(&self.child);
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let status = self.child.wait().unwrap();
        (status.code(), out)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn terminate(child: &Child) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
}

/// One answer, as curl saw it.
pub(crate) struct Answer {
    pub status: u16,
    /// Lower-cased header names.
    pub headers: HashMap<String, String>,
    pub body: String,
}

/// `curl` with `args` (plus the URL in them); never follows redirects,
/// keeps no cookies.
pub(crate) fn curl(args: &[&str]) -> Answer {
    let curl = tool("curl").expect("curl");
    let dir = tempfile::tempdir().unwrap();
    let head = dir.path().join("head");
    let body = dir.path().join("body");
    let o = Command::new(curl)
        .args(["-s", "-S", "--max-time", "20", "-D"])
        .arg(&head)
        .arg("-o")
        .arg(&body)
        .args(["-w", "%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "curl {args:?}: {}", stderr(&o));
    let status = stdout(&o).trim().parse().unwrap();
    let headers = std::fs::read_to_string(&head)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: std::fs::read_to_string(&body).unwrap_or_default(),
    }
}

/// The RFC 8058 POST exactly as Gmail makes it: the link from
/// `List-Unsubscribe`, form-urlencoded `List-Unsubscribe=One-Click`, no
/// cookies, no referrer.
pub(crate) fn one_click(link: &str) -> Answer {
    curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/x-www-form-urlencoded",
        "--data-raw",
        "List-Unsubscribe=One-Click",
        link,
    ])
}

/// A dry run of `post` to `list` with unsubscribe links to `base`: each
/// recipient's link from their message's `List-Unsubscribe` header.
pub(crate) fn dry_run_links(
    dir: &Path,
    post: &Path,
    list: &Path,
    base: &str,
) -> HashMap<String, String> {
    let _ = std::fs::remove_dir_all(dir.join("outbox"));
    let o = herald_env(
        dir,
        &[
            "send",
            post.to_str().unwrap(),
            "--subscribers",
            list.to_str().unwrap(),
            "--config",
            example_config().to_str().unwrap(),
            "--dry-run",
            "--set",
            &format!("unsubscribe_url={base}"),
        ],
        &[("HERALD_UNSUBSCRIBE_SECRET", SECRET)],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let mut links = HashMap::new();
    for d in std::fs::read_dir(dir.join("outbox")).unwrap().flatten() {
        for eml in eml_files(&d.path()) {
            let text = std::fs::read_to_string(&eml).unwrap();
            // Headers end at the first empty line; folded lines are joined.
            let head = text.split("\r\n\r\n").next().unwrap().replace("\r\n ", " ");
            let to = head
                .lines()
                .find_map(|l| l.strip_prefix("To: "))
                .map(|t| {
                    t.rsplit('<')
                        .next()
                        .unwrap()
                        .trim_end_matches('>')
                        .to_string()
                })
                .unwrap();
            let unsub = head
                .lines()
                .find_map(|l| l.strip_prefix("List-Unsubscribe: <"))
                .map(|l| l.split('>').next().unwrap().to_string())
                .unwrap();
            links.insert(to, unsub);
        }
    }
    links
}

/// `herald suppress list --json` in `dir`.
pub(crate) fn suppressed(dir: &Path) -> Vec<serde_json::Value> {
    let o = herald(dir, &["suppress", "list", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice::<Vec<serde_json::Value>>(&o.stdout).unwrap()
}

fn emails(list: &[serde_json::Value]) -> Vec<String> {
    let mut v: Vec<String> = list
        .iter()
        .map(|s| s["email"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn send_real(dir: &Path, server: &Server, post: &Path, list: &Path) -> serde_json::Value {
    let o = herald_env(
        dir,
        &[
            "send",
            post.to_str().unwrap(),
            "--subscribers",
            list.to_str().unwrap(),
            "--config",
            example_config().to_str().unwrap(),
            "--smtp",
            &server.url(),
            "--yes",
            "--json",
        ],
        &[("HERALD_UNSUBSCRIBE_SECRET", SECRET)],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The issue's "done when": a subscriber's click on the link of a dry-run
/// email, against a running server, suppresses them (with the campaign),
/// and the next send leaves them out. A hundred GETs before it change
/// nothing (mail scanners open every link).
#[test]
fn a_click_in_an_email_unsubscribes_and_the_next_send_leaves_them_out() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let Some(server) = Server::start(dir, &[]) else {
        return;
    };
    let list = write_list(dir, 5);
    // May's issue went out to everyone.
    let sent = send_real(dir, &server, &example_post(), &list);
    assert_eq!(sent["counts"]["sent"], 5);
    let campaign = sent["campaign"].as_str().unwrap().to_string();

    // Scanners come from many addresses; here all from 127.0.0.1.
    let serve = Serve::start(dir, &["--per-client-limit", "100000"], &[]);
    let links = dry_run_links(dir, &example_post(), &list, &serve.url("/unsubscribe"));
    assert_eq!(links.len(), 5);

    // A scanner opens every link, many times over, with GET and HEAD.
    for i in 0..100 {
        let link = &links[&format!("reader{}@example.org", i % 5)];
        let a = if i % 10 == 0 {
            curl(&["-I", link])
        } else {
            curl(&[link])
        };
        assert_eq!(a.status, 200, "GET {i}");
        if i % 10 != 0 {
            assert!(a.body.contains("Unsubscribe"), "{}", a.body);
            assert!(a.body.contains("r***1@e***.org") || i % 5 != 1);
        }
    }
    assert_eq!(
        suppressed(dir),
        Vec::<serde_json::Value>::new(),
        "a GET unsubscribed someone"
    );

    // reader1 uses Gmail's unsubscribe button; reader3's provider posts
    // multipart. reader1's POST arrives twice.
    let a = one_click(&links["reader1@example.org"]);
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("You are unsubscribed"), "{}", a.body);
    assert!(a.body.contains("Undo"));
    let b = curl(&[
        "-F",
        "List-Unsubscribe=One-Click",
        &links["reader3@example.org"],
    ]);
    assert_eq!(b.status, 200, "{}", b.body);
    assert_eq!(one_click(&links["reader1@example.org"]).status, 200);

    let list_now = suppressed(dir);
    assert_eq!(
        emails(&list_now),
        ["reader1@example.org", "reader3@example.org"]
    );
    for s in &list_now {
        assert_eq!(s["source"], "one-click");
        assert_eq!(s["campaign"].as_str(), Some(campaign.as_str()));
        assert_eq!(s["reason"], "unsubscribed");
        // What is kept, and nothing else (no IP address, no user agent).
        let mut keys: Vec<&str> = s.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "added_at", "campaign", "email", "events", "reason", "source"
            ]
        );
        for e in s["events"].as_array().unwrap() {
            let mut keys: Vec<&str> = e.as_object().unwrap().keys().map(|k| k.as_str()).collect();
            keys.sort();
            assert_eq!(keys, ["added_at", "campaign", "reason", "source"]);
        }
    }
    let journal = std::fs::read(dir.join(".herald/journal.db")).unwrap();
    assert!(
        !journal.windows(9).any(|w| w == b"127.0.0.1"),
        "the journal holds an IP address"
    );

    // `herald status` tells who left through May's email.
    let o = herald(dir, &["status", &campaign, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["unsubscribed"], 2, "{v}");
    let o = herald(dir, &["status"]);
    assert!(
        stdout(&o).contains("2 unsubscribed through this email's link"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("Suppression list: 2 addresses (2 unsubscribed"));

    // The next issue: reader1 and reader3 are left out.
    let june = another_issue(dir, "june-issue");
    let next = send_real(dir, &server, &june, &list);
    assert_eq!(next["counts"]["sent"], 3, "{next}");
    // The two left out are recorded as skipped, counted and named (they
    // used to vanish from the campaign).
    assert_eq!(next["counts"]["total"], 5, "{next}");
    assert_eq!(next["counts"]["skipped"], 2, "{next}");
    assert_eq!(next["skipped"]["suppressed"], 2, "{next}");
    server.settle();
    let got = server.deliveries();
    assert_eq!(got.get("reader1@example.org"), Some(&1), "only May's issue");
    assert_eq!(got.get("reader3@example.org"), Some(&1), "only May's issue");
    assert_eq!(got.get("reader0@example.org"), Some(&2));

    // Undo: reader3 takes it back from the confirmation page; the June
    // issue then reaches them on the next run.
    let undo = curl(&[
        "-X",
        "POST",
        "--data-raw",
        "action=resubscribe",
        &links["reader3@example.org"],
    ]);
    assert_eq!(undo.status, 200);
    assert!(undo.body.contains("subscribed again"), "{}", undo.body);
    assert_eq!(emails(&suppressed(dir)), ["reader1@example.org"]);

    let (code, out) = serve.stop();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("2 unsubscribed, 1 took it back"), "{out}");
}

/// Every bad link gets the very same 400 page, whatever was wrong and
/// whoever it names; nobody is suppressed by one. Links signed with an
/// old key, and links of the first release (no key id), still work.
#[test]
fn bad_links_learn_nothing_and_old_keys_keep_working() {
    use herald::unsubscribe::Keys;
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::start(
        tmp.path(),
        &["--per-client-limit", "100000"],
        &[
            ("HERALD_UNSUBSCRIBE_SECRET", "the-new-key"),
            ("HERALD_UNSUBSCRIBE_OLD_SECRETS", "first-key second-key"),
        ],
    );
    let base = serve.url("/unsubscribe");
    let link =
        |keys: &Keys, email: &str| keys.link(&base, email, &keys.current().token(email), None);
    let new = Keys::new(b"the-new-key".to_vec(), vec![]);
    let first = Keys::new(b"first-key".to_vec(), vec![]);
    let stranger = Keys::new(b"somebody-elses-key".to_vec(), vec![]);

    let good = link(&new, "ana@example.org");
    assert_eq!(curl(&[&good]).status, 200);
    assert_eq!(curl(&[&link(&first, "bo@example.org")]).status, 200);
    // The first release's link: no key id, made with what is now an old key.
    let token = first.current().token("cy@example.org");
    use base64::Engine;
    let u = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("cy@example.org");
    let legacy = format!("{base}?u={u}&token={token}");
    assert_eq!(curl(&[&legacy]).status, 200);

    let other_u = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("dee@example.org");
    let t = new.current().token("ana@example.org");
    let flipped = if t.starts_with('A') { "B" } else { "A" };
    let bad = [
        good.replacen(&t[..1], flipped, 1),
        good.replace(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("ana@example.org"),
            &other_u,
        ),
        good.split("&token=").next().unwrap().to_string(),
        format!("{good}&u={other_u}"),
        link(&stranger, "ana@example.org"),
        format!("{base}?u=%00%01&token={t}"),
        format!("{base}?{}", "x".repeat(3000)),
        base.clone(),
    ];
    let mut bodies = Vec::new();
    for b in &bad {
        for post in [false, true] {
            let a = if post {
                one_click(b)
            } else {
                curl(&[b.as_str()])
            };
            assert_eq!(a.status, 400, "{b}");
            assert_eq!(a.headers["cache-control"], "no-store");
            bodies.push(a.body);
        }
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "the 400 pages differ, so they tell something"
    );
    assert!(!bodies[0].contains("example.org"));
    assert_eq!(suppressed(tmp.path()), Vec::<serde_json::Value>::new());
    // A good POST after all that works, and again (a replay) changes nothing.
    assert_eq!(one_click(&link(&first, "bo@example.org")).status, 200);
    assert_eq!(one_click(&link(&first, "bo@example.org")).status, 200);
    assert_eq!(emails(&suppressed(tmp.path())), ["bo@example.org"]);
    drop(serve);
}

/// The headers every answer carries, the size and method limits, slow
/// clients cut off, and the per-client budget with Retry-After.
#[test]
fn hostile_clients_are_bounded_and_every_answer_is_safe() {
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::start(
        tmp.path(),
        &["--per-client-limit", "40", "--client-timeout", "1"],
        &[],
    );
    let keys = herald::unsubscribe::Keys::new(SECRET.as_bytes().to_vec(), vec![]);
    let base = serve.url("/unsubscribe");
    let good = keys.link(
        &base,
        "ana@example.org",
        &keys.current().token("ana@example.org"),
        None,
    );
    let big = tmp.path().join("big");
    std::fs::write(&big, "List-Unsubscribe=One-Click&".repeat(4000)).unwrap();
    let answers = [
        (curl(&[&good]), 200),
        (curl(&[&format!("{base}?u=x&token=y")]), 400),
        (curl(&[&serve.url("/wp-admin")]), 404),
        (curl(&["-X", "PUT", &good]), 405),
        (curl(&["-X", "DELETE", &good]), 405),
        (
            curl(&[
                "-X",
                "POST",
                "--data-binary",
                &format!("@{}", big.display()),
                &good,
            ]),
            413,
        ),
    ];
    for (a, want) in &answers {
        assert_eq!(a.status, *want, "{}", a.body);
        let h = &a.headers;
        assert_eq!(h["cache-control"], "no-store");
        assert!(h["x-robots-tag"].contains("noindex"));
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["x-content-type-options"], "nosniff");
        let csp = &h["content-security-policy"];
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("script-src"),
            "{csp}"
        );
    }
    assert!(answers[3].0.headers["allow"].contains("POST"));
    // The too-large POST unsubscribed nobody.
    assert_eq!(suppressed(tmp.path()), Vec::<serde_json::Value>::new());
    let health = curl(&[&serve.url("/healthz")]);
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));

    // A client that sends half its headers, then nothing: cut off.
    let mut slow = TcpStream::connect(&serve.addr).unwrap();
    slow.write_all(b"GET /unsubscribe HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = Vec::new();
    let n = slow.read_to_end(&mut buf);
    assert!(
        n.is_ok(),
        "the server kept a silent client's connection open: {n:?}"
    );
    // A body that never arrives: 408, nothing changed.
    let mut slow = TcpStream::connect(&serve.addr).unwrap();
    let path = good.split_once(&serve.addr).unwrap().1;
    write!(
        slow,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 26\r\n\r\nList-"
    )
    .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(suppressed(tmp.path()), Vec::<serde_json::Value>::new());

    // The budget: 40 a minute, 10 at once. Then 429 with Retry-After.
    let mut limited = None;
    for _ in 0..30 {
        let a = curl(&[&good]);
        if a.status == 429 {
            limited = Some(a);
            break;
        }
        assert_eq!(a.status, 200);
    }
    let limited = limited.expect("no 429 after 30 quick requests");
    let wait: u64 = limited.headers["retry-after"].parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // Another visitor, as the proxy names it, has a budget of its own.
    let other = curl(&["-H", "X-Forwarded-For: 198.51.100.23", &good]);
    assert_eq!(other.status, 200);
    drop(serve);
}

/// SIGTERM while a one-click POST is half received: the request finishes,
/// the unsubscribe is recorded, the server exits 0.
#[test]
fn sigterm_lets_the_request_in_flight_finish() {
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::start(tmp.path(), &[], &[]);
    let keys = herald::unsubscribe::Keys::new(SECRET.as_bytes().to_vec(), vec![]);
    let link = keys.link(
        "",
        "ana@example.org",
        &keys.current().token("ana@example.org"),
        None,
    );
    let mut c = TcpStream::connect(&serve.addr).unwrap();
    write!(
        c,
        "POST /unsubscribe{link} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 26\r\n\r\nList-Unsub"
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    terminate(&serve.child);
    std::thread::sleep(Duration::from_millis(300));
    c.write_all(b"scribe=One-Click").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut answer = String::new();
    let _ = c.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("You are unsubscribed"));
    let log = serve.log();
    let (code, out) = serve.stop();
    assert_eq!(code, Some(0), "{out}\n{log}");
    assert!(out.contains("1 unsubscribed"), "{out}");
    assert_eq!(emails(&suppressed(tmp.path())), ["ana@example.org"]);
}

/// `herald send` of 10,000 to Postfix's smtp-sink while `herald serve`
/// takes 200 unsubscribes on the same journal: no request fails, no write
/// is lost, the send finishes.
#[test]
fn a_send_and_the_server_share_one_journal() {
    let Some(sink) = tool("smtp-sink") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let port = free_port();
    let mut sink = Command::new(sink)
        .args(["-u", "nobody", &format!("127.0.0.1:{port}"), "256"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let list = write_list(dir, 10_000);
    let serve = Serve::start(dir, &["--per-client-limit", "1000000"], &[]);
    let keys = herald::unsubscribe::Keys::new(SECRET.as_bytes().to_vec(), vec![]);
    let base = serve.url("/unsubscribe");
    let mut send = Command::new(env!("CARGO_BIN_EXE_herald"));
    send.current_dir(dir)
        .args([
            "send",
            example_post().to_str().unwrap(),
            "--subscribers",
            list.to_str().unwrap(),
            "--config",
            example_config().to_str().unwrap(),
            "--smtp",
            &format!("smtp://127.0.0.1:{port}?tls=none"),
            "--connections",
            "4",
            "--yes",
            "--json",
        ])
        .env("HERALD_UNSUBSCRIBE_SECRET", SECRET)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let send = send.spawn().unwrap();
    let mut statuses = Vec::new();
    for i in 0..200 {
        let email = format!("reader{}@example.org", i * 50);
        let link = keys.link(&base, &email, &keys.current().token(&email), None);
        statuses.push(one_click(&link).status);
    }
    let o = send.wait_with_output().unwrap();
    let _ = sink.kill();
    let _ = sink.wait();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let c = &v["counts"];
    assert_eq!(c["failed"], 0, "{v}");
    let list_now = suppressed(dir);
    assert_eq!(list_now.len(), 200);
    // Everyone in the campaign was sent or skipped. Someone who
    // unsubscribed before the send read the list is not in it at all: at
    // most the 200.
    let total = c["total"].as_u64().unwrap();
    assert_eq!(
        c["sent"].as_u64().unwrap() + c["skipped"].as_u64().unwrap(),
        total,
        "{v}"
    );
    assert!((9_800..=10_000).contains(&total), "{v}");
    drop(serve);
}

/// The lists by hand: add, import from another tool's export (with bad
/// lines named), export, remove; the next dry run leaves them out.
#[test]
fn the_suppression_list_by_hand() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let o = herald(
        dir,
        &[
            "suppress",
            "add",
            "Reader0@Example.org",
            "--reason",
            "phoned",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // A Mailchimp-style export, with a bad row: nothing is imported.
    let bad = dir.join("old-tool.csv");
    std::fs::write(
        &bad,
        "Email Address,First Name,reason\nreader1@example.org,A,bounced\nnot-an-address,B,\nreader2@example.org,C,\n",
    )
    .unwrap();
    let o = herald(dir, &["suppress", "import", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("line 3: `not-an-address`"),
        "{}",
        stderr(&o)
    );
    assert_eq!(suppressed(dir).len(), 1);
    std::fs::write(
        &bad,
        "Email Address,First Name,reason\nreader1@example.org,A,bounced\nreader2@example.org,C,\n",
    )
    .unwrap();
    let o = herald(dir, &["suppress", "import", bad.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("2 added"), "{}", stdout(&o));
    let all = suppressed(dir);
    assert_eq!(
        emails(&all),
        [
            "reader0@example.org",
            "reader1@example.org",
            "reader2@example.org"
        ]
    );
    let by: HashMap<&str, &serde_json::Value> = all
        .iter()
        .map(|s| (s["email"].as_str().unwrap(), s))
        .collect();
    assert_eq!(by["reader0@example.org"]["source"], "manual");
    assert_eq!(by["reader0@example.org"]["reason"], "phoned");
    assert_eq!(by["reader1@example.org"]["reason"], "bounced");
    assert_eq!(by["reader2@example.org"]["source"], "import");

    // Export: CSV that Python's csv module reads back.
    let o = herald(dir, &["suppress", "export"]);
    assert!(o.status.success());
    let csv = stdout(&o);
    assert!(
        csv.starts_with("email,source,reason,campaign,added_at\n"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 4);

    let o = herald(dir, &["suppress", "remove", "reader2@example.org"]);
    assert!(o.status.success());
    assert_eq!(suppressed(dir).len(), 2);
    let o = herald(dir, &["suppress", "remove", "nobody@example.org"]);
    assert_eq!(o.status.code(), Some(4));

    // The next (dry) send leaves reader0 and reader1 out.
    let list = write_list(dir, 4);
    let links = dry_run_links(dir, &example_post(), &list, "https://example.org/u");
    let mut got: Vec<&String> = links.keys().collect();
    got.sort();
    assert_eq!(got, ["reader2@example.org", "reader3@example.org"]);
}

/// `unsubscribe_url` must be https, except on this machine.
#[test]
fn an_unsubscribe_url_that_is_not_https_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let list = write_list(tmp.path(), 1);
    let o = herald_env(
        tmp.path(),
        &[
            "send",
            example_post().to_str().unwrap(),
            "--subscribers",
            list.to_str().unwrap(),
            "--config",
            example_config().to_str().unwrap(),
            "--dry-run",
            "--set",
            "unsubscribe_url=http://news.example.org/unsubscribe",
        ],
        &[("HERALD_UNSUBSCRIBE_SECRET", SECRET)],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("is not https"), "{}", stderr(&o));
}

/// Python's http.client POSTs every link of `links` as Gmail does (the
/// RFC 8058 body), 16 at a time, each on its own connection from
/// `source` (an address on this machine), and returns the answers'
/// statuses in the order of `links`.
fn post_from(source: &str, links: &[String], body: &str) -> Vec<u16> {
    let script = r#"
import concurrent.futures, http.client, sys, urllib.parse
source, body = sys.argv[1], sys.argv[2]
links = sys.stdin.read().split()
def post(link):
    u = urllib.parse.urlsplit(link)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30, source_address=(source, 0))
    try:
        c.request("POST", u.path + "?" + u.query, body=body,
                  headers={"Content-Type": "application/x-www-form-urlencoded"})
        r = c.getresponse(); r.read(); return r.status
    except Exception as e:
        return 0
    finally:
        c.close()
with concurrent.futures.ThreadPoolExecutor(16) as pool:
    print(" ".join(str(s) for s in pool.map(post, links)))
"#;
    let mut child = Command::new(tool("python3").expect("python3"))
        .args(["-c", script, source, body])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(links.join("\n").as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect()
}

/// Issue 24: a mailbox provider posts one-click unsubscribes for many
/// subscribers from one address of its own. Every one with a valid token
/// is honoured, whatever the visitor budget (before: 17 of 200 recorded,
/// 183 got 429); a repeat for the same person changes nothing; bad links
/// from that address still run out of budget.
#[test]
fn a_providers_one_click_posts_for_many_people_are_all_honoured() {
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::start(tmp.path(), &[], &[]);
    let keys = herald::unsubscribe::Keys::new(SECRET.as_bytes().to_vec(), vec![]);
    let base = serve.url("/unsubscribe");
    let link = |e: &str| keys.link(&base, e, &keys.current().token(e), None);
    let people: Vec<String> = (0..200).map(|i| format!("reader{i}@example.org")).collect();
    let links: Vec<String> = people.iter().map(|e| link(e)).collect();
    let statuses = post_from("127.0.0.1", &links, "List-Unsubscribe=One-Click");
    let refused: Vec<_> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(
        refused.is_empty(),
        "{} of 200 valid one-click POSTs were not honoured: {refused:?}",
        refused.len()
    );
    assert_eq!(emails(&suppressed(tmp.path())), {
        let mut p = people.clone();
        p.sort();
        p
    });
    // The same person's link again, 50 times: all 200, one record.
    let again = vec![links[0].clone(); 50];
    assert!(
        post_from("127.0.0.1", &again, "List-Unsubscribe=One-Click")
            .iter()
            .all(|s| *s == 200)
    );
    assert_eq!(suppressed(tmp.path()).len(), 200);
    // Links with a wrong token from the same address: the budget (15 at
    // once by default) runs out and 429 follows.
    let bad: Vec<String> = (0..40)
        .map(|i| link(&format!("x{i}@example.org")).replace("token=", "token=A"))
        .collect();
    let statuses = post_from("127.0.0.1", &bad, "List-Unsubscribe=One-Click");
    assert!(
        statuses.iter().all(|s| *s == 400 || *s == 429),
        "{statuses:?}"
    );
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(suppressed(tmp.path()).len(), 200);
}

/// Issue 24: one address holding many slow connections cannot keep
/// another address's visitors out. 600 connections from 127.0.0.1 send
/// half a request and wait (more than the server's 512 slots; before,
/// every other visitor waited in the kernel's queue until the slow ones
/// timed out); meanwhile a visitor from 127.0.0.2 unsubscribes 20 people,
/// each answered within 5 seconds.
#[test]
fn one_address_with_slow_connections_does_not_starve_another() {
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::start(tmp.path(), &["--client-timeout", "60"], &[]);
    let keys = herald::unsubscribe::Keys::new(SECRET.as_bytes().to_vec(), vec![]);
    let base = serve.url("/unsubscribe");
    let mut slow = Vec::new();
    for _ in 0..600 {
        let Ok(mut s) = TcpStream::connect(&serve.addr) else {
            break;
        };
        let _ = s.write_all(b"POST /unsubscribe HTTP/1.1\r\nHost: x\r\n");
        slow.push(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..20 {
        let e = format!("visitor{i}@example.org");
        let l = keys.link(&base, &e, &keys.current().token(&e), None);
        let start = std::time::Instant::now();
        let a = curl(&[
            "--interface",
            "127.0.0.2",
            "--max-time",
            "10",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/x-www-form-urlencoded",
            "--data-raw",
            "List-Unsubscribe=One-Click",
            &l,
        ]);
        assert_eq!(a.status, 200, "{}", a.body);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "visitor {i} waited {:?}",
            start.elapsed()
        );
    }
    drop(slow);
    assert_eq!(suppressed(tmp.path()).len(), 20);
    let (code, out) = serve.stop();
    assert_eq!(code, Some(0));
    assert!(out.contains("20 unsubscribed"), "{out}");
}

/// Issue 24: someone who unsubscribed and then complained (a spam report
/// about an earlier issue) stays suppressed when Undo is pressed on their
/// (forwardable) link; `herald suppress list` shows both reasons, each
/// with its time and campaign. Before, the complaint was dropped (one row
/// per address), the list said "one-click", and Undo put them back: the
/// next send mailed them.
#[test]
fn undo_after_a_complaint_leaves_the_complainer_suppressed() {
    let Some(sink) = tool("smtp-sink") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let base = std::fs::read_to_string(example_config()).unwrap();
    std::fs::write(
        dir.join("herald.yaml"),
        format!("{base}\nreturn_path: bounces@example.org\n"),
    )
    .unwrap();
    let port = free_port();
    let mut sink = Command::new(sink)
        .args(["-u", "nobody", &format!("127.0.0.1:{port}"), "64"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let list = dir.join("list.csv");
    std::fs::write(&list, "email\nana@example.net\nbo@example.net\n").unwrap();
    let o = herald_env(
        dir,
        &[
            "send",
            example_post().to_str().unwrap(),
            "--subscribers",
            list.to_str().unwrap(),
            "--smtp",
            &format!("smtp://127.0.0.1:{port}?tls=none"),
            "--yes",
            "--json",
        ],
        &[("HERALD_UNSUBSCRIBE_SECRET", SECRET)],
    );
    let _ = sink.kill();
    let _ = sink.wait();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let sent: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let campaign = sent["campaign"].as_str().unwrap().to_string();

    let serve = Serve::start(dir, &[], &[]);
    let keys = herald::unsubscribe::Keys::new(SECRET.as_bytes().to_vec(), vec![]);
    let ana = "ana@example.net";
    let link = keys.link(
        &serve.url("/unsubscribe"),
        ana,
        &keys.current().token(ana),
        Some(&campaign),
    );
    assert_eq!(one_click(&link).status, 200);

    // Then her complaint about the same issue arrives (ARF, through the
    // VERP return path of her copy: she is recipient 1).
    let inbox = dir.join("Maildir");
    for d in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(inbox.join(d)).unwrap();
    }
    let to = format!("bounces+{}@example.org", keys.verp_token(&campaign, 1));
    let arf = crate::returned::arf(&to, ana);
    std::fs::write(inbox.join("new/1.arf"), arf.replace('\n', "\r\n")).unwrap();
    let o = herald_env(
        dir,
        &["bounces", "--maildir", inbox.to_str().unwrap(), "--json"],
        &[("HERALD_UNSUBSCRIBE_SECRET", SECRET)],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    // Both reasons are on the list, each with its campaign.
    let all = suppressed(dir);
    assert_eq!(emails(&all), [ana]);
    assert_eq!(all[0]["source"], "complaint", "{all:?}");
    let events = all[0]["events"].as_array().expect("events");
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["source"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["one-click", "complaint"], "{all:?}");
    assert!(events.iter().all(|e| e["campaign"] == campaign.as_str()));
    assert!(events.iter().all(|e| e["added_at"].is_string()));
    let o = herald(dir, &["suppress", "list"]);
    let text = stdout(&o);
    assert!(
        text.contains("one-click") && text.contains("complaint") && text.contains(&campaign),
        "{text}"
    );

    // Undo on her link: the unsubscribe is taken back, the complaint stands.
    let undo = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/x-www-form-urlencoded",
        "--data-raw",
        "action=resubscribe",
        &link,
    ]);
    assert_eq!(undo.status, 200);
    assert!(!undo.body.contains("subscribed again"), "{}", undo.body);
    let all = suppressed(dir);
    assert_eq!(emails(&all), [ana]);
    assert_eq!(all[0]["source"], "complaint");
    drop(serve);

    // The next send leaves her out.
    let links = dry_run_links(dir, &example_post(), &list, "https://example.org/u");
    let got: Vec<&String> = links.keys().collect();
    assert_eq!(got, ["bo@example.net"]);
}
