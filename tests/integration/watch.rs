//! `herald preview POST --watch`: the live preview on 127.0.0.1. Edits are
//! made on disk as a writer would make them, and the page (or its event
//! stream) must follow by itself.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

/// Generous: the goal is under a second, a loaded CI machine gets ten.
const WAIT: Duration = Duration::from_secs(10);

/// A running `herald preview POST --watch --port 0`, killed when dropped.
struct Watching {
    child: Child,
    url: String,
    port: u16,
}

impl Watching {
    fn start(dir: &Path, post: &Path, extra: &[&str]) -> Watching {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
        cmd.current_dir(dir)
            .args(["preview", post.to_str().unwrap(), "--watch", "--port", "0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, _) in std::env::vars() {
            if k.starts_with("HERALD_") {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd.spawn().expect("herald starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Some(url) = line.trim().strip_prefix("Preview at ") else {
            let _ = child.kill();
            panic!("herald preview --watch printed {line:?}, not its address");
        };
        let url = url.to_string();
        let port = url
            .trim_start_matches("http://127.0.0.1:")
            .trim_end_matches('/')
            .parse()
            .expect("a port in the address");
        Watching { child, url, port }
    }

    /// A plain HTTP/1.1 GET (the connection closes after it); status and body.
    fn get(&self, path: &str, host: &str) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut bytes = Vec::new();
        s.read_to_end(&mut bytes).unwrap();
        // Lossy: a PNG's bytes are not text, its signature's letters are.
        let out = String::from_utf8_lossy(&bytes).into_owned();
        let status = out
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        (status, body.to_string())
    }

    /// SIGTERM, as Ctrl-C or a terminal closing would stop it; the exit code.
    fn stop(mut self) -> Option<i32> {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(start.elapsed() < WAIT, "herald did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The example post, copied into `dir` as post.md.
fn copy_example(dir: &Path) -> PathBuf {
    let post = dir.join("post.md");
    std::fs::copy(example_post(), &post).unwrap();
    post
}

/// The `data:` lines of a server-sent event stream, as they arrive.
struct Events {
    reader: BufReader<TcpStream>,
}

impl Events {
    fn open(w: &Watching) -> Events {
        let mut s = TcpStream::connect(("127.0.0.1", w.port)).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        write!(
            s,
            "GET /events HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAccept: text/event-stream\r\n\r\n",
            w.port
        )
        .unwrap();
        let mut reader = BufReader::new(s);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line);
        }
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/event-stream"),
            "{head}"
        );
        Events { reader }
    }

    /// The next event's data (a timeout fails the test).
    fn next(&mut self) -> String {
        let start = Instant::now();
        loop {
            assert!(start.elapsed() < WAIT, "no event within {WAIT:?}");
            let mut line = String::new();
            let n = self
                .reader
                .read_line(&mut line)
                .expect("an event within the wait");
            assert!(n > 0, "the event stream ended");
            // Chunked encoding: the chunk sizes are lines of their own.
            if let Some(v) = line.trim().strip_prefix("data: ") {
                return v.to_string();
            }
        }
    }
}

/// Without a browser: the event stream sends the version on connect and a
/// new one when the post or herald.yaml is saved; the page follows them,
/// shows a broken post's or settings file's `file:line` and recovers; only
/// GET, only its own paths and its own address; SIGTERM ends it with 0.
#[test]
fn a_saved_post_makes_a_new_version_on_the_event_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let post = copy_example(tmp.path());
    let w = Watching::start(tmp.path(), &post, &[]);
    let host = format!("127.0.0.1:{}", w.port);
    let (status, page) = w.get("/", &host);
    assert_eq!(status, 200);
    assert!(page.contains("src=\"email.html\""), "{page}");
    assert!(page.contains("new EventSource('/events')"), "{page}");
    assert!(page.contains("id=\"herald-findings\""), "{page}");

    let mut events = Events::open(&w);
    let first = events.next();
    let original = std::fs::read_to_string(&post).unwrap();
    std::fs::write(
        &post,
        format!("{original}\n\nSaved while watching, marker 5150.\n"),
    )
    .unwrap();
    let second = events.next();
    assert_ne!(first, second, "a save makes a new version");
    let (_, text) = w.get("/email.txt", &host);
    assert!(text.contains("marker 5150"), "{text}");
    let (_, page) = w.get("/", &host);
    assert!(
        page.contains(&format!("data-version=\"{second}\"")),
        "{page}"
    );

    // Front matter that is not YAML: the error and its line, above the
    // last version that worked.
    std::fs::write(
        &post,
        original.replacen("---\n", "---\ntitle: [unclosed\n", 1),
    )
    .unwrap();
    let third = events.next();
    assert_ne!(third, second);
    let (_, page) = w.get("/", &host);
    assert!(page.contains("id=\"herald-error\""), "{page}");
    let error = page.split("id=\"herald-error\"").nth(1).unwrap();
    assert!(
        regex_like_file_line(error, "post.md"),
        "no post.md:LINE in the error: {error}"
    );
    assert!(page.contains("marker 5150"), "the last good version stays");

    std::fs::write(&post, &original).unwrap();
    let fourth = events.next();
    assert_ne!(fourth, third);
    let (_, page) = w.get("/", &host);
    assert!(!page.contains("id=\"herald-error\""), "{page}");

    // The settings: a herald.yaml that appears counts, a broken one shows
    // its own file:line, and its fix is seen.
    let settings = tmp.path().join("herald.yaml");
    std::fs::write(&settings, "subject: \"Settings say {{ title }}\"\n").unwrap();
    let fifth = events.next();
    assert_ne!(fifth, fourth);
    let (_, page) = w.get("/", &host);
    assert!(page.contains("<h1>Settings say "), "{page}");
    std::fs::write(&settings, "subject: [broken\n").unwrap();
    let sixth = events.next();
    assert_ne!(sixth, fifth);
    let (_, page) = w.get("/", &host);
    let error = page.split("id=\"herald-error\"").nth(1).unwrap_or("");
    assert!(regex_like_file_line(error, "herald.yaml"), "{page}");
    std::fs::write(&settings, "subject: \"Fixed {{ title }}\"\n").unwrap();
    let seventh = events.next();
    assert_ne!(seventh, sixth);
    let (_, page) = w.get("/", &host);
    assert!(!page.contains("id=\"herald-error\""), "{page}");
    assert!(page.contains("<h1>Fixed "), "{page}");

    // Bounded: its own address, GET, fixed paths, nothing from disk.
    assert_eq!(w.get("/", "evil.example:80").0, 421);
    assert_eq!(w.get("/../post.md", &host).0, 404);
    assert_eq!(w.get("/assets/../../post.md", &host).0, 404);
    assert_eq!(w.get("/post.md", &host).0, 404);
    let mut s = TcpStream::connect(("127.0.0.1", w.port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");

    drop(events);
    assert_eq!(w.stop(), Some(0));
}

/// Whether `text` holds `NAME:LINE:` (a line number after the file name).
fn regex_like_file_line(text: &str, name: &str) -> bool {
    text.match_indices(&format!("{name}:")).any(|(i, m)| {
        let rest = &text[i + m.len()..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        digits > 0 && rest[digits..].starts_with(':')
    })
}

#[test]
fn a_post_that_is_not_there_is_refused_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let o = herald(
        tmp.path(),
        &["preview", "missing.md", "--watch", "--port", "0"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("missing.md"), "{}", stderr(&o));
    assert_eq!(stdout(&o), "");
}

/// A writer in headless Chromium: a corpus post is edited on disk, and the
/// open page shows the new title and paragraph by itself; a broken front
/// matter shows `post.md:LINE` on the page, and fixing it brings the email
/// back. The page's script and style run under its Content-Security-Policy
/// (nothing in the console). Screenshots: target/screenshots/watch-*.png.
#[test]
fn the_live_preview_follows_edits_in_a_browser() {
    let Some(chromium) = tool("chromium") else {
        return;
    };
    let Some(node) = crate::util::node_with("puppeteer-core") else {
        return;
    };
    let Some(files) = corpus_files() else { return };
    let source = files
        .iter()
        .find(|p| p.parent().is_some_and(|d| d.ends_with("newsletters")))
        .expect("a newsletter in the corpus");
    let tmp = tempfile::tempdir().unwrap();
    let post = tmp.path().join("post.md");
    std::fs::copy(source, &post).unwrap();
    let w = Watching::start(tmp.path(), &post, &[]);
    let shots = repo().join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let mut script = Command::new(node)
        .arg(repo().join("tests/tools/preview_watch.cjs"))
        .arg(&chromium)
        .arg(&w.url)
        .arg(&post)
        .arg(shots.join("watch"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Four steps of at most ten seconds each, and Chromium's start; the
    // script gives up by itself after 170 s and says how far it got. This
    // limit is only for a script that cannot even do that.
    let start = Instant::now();
    let status = loop {
        if let Some(s) = script.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(240) {
            let _ = script.kill();
            let o = script.wait_with_output().unwrap();
            panic!(
                "the browser script ran over four minutes:\n{}\n{}",
                stdout(&o),
                stderr(&o)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let o = script.wait_with_output().unwrap();
    assert!(status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["firstStatus"], 200);
    let steps = v["steps"].as_array().unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["opened", "edited", "broken", "fixed"], "{v:#}");
    for s in steps {
        assert_eq!(s["ok"], true, "step {} never happened: {v:#}", s["name"]);
    }
    assert!(
        steps[0]["findings"]
            .as_str()
            .unwrap()
            .contains("herald check says"),
        "{v:#}"
    );
    let error = steps[2]["error"].as_str().unwrap();
    assert!(regex_like_file_line(error, "post.md"), "{error}");
    assert!(error.contains("not valid YAML"), "{error}");
    assert_eq!(steps[2]["errorInView"], true, "{v:#}");
    // The broken post keeps the last good email under the error.
    assert_eq!(steps[2]["subject"], "Live Preview Title 4711");
    assert_eq!(steps[3]["subject"], "Live Preview Title 4711");
    // Nobody pressed reload: the page did, once per save.
    assert!(v["navigations"].as_u64().unwrap() >= 4, "{v:#}");
    // The email's pictures are on the web, which tests do not reach; any
    // other message (a Content-Security-Policy violation) is a failure.
    let console: Vec<&str> = v["console"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m.as_str())
        .filter(|m| !m.starts_with("Failed to load resource: net::"))
        .collect();
    assert!(console.is_empty(), "console: {console:#?}");
    eprintln!(
        "the page followed the edits in {} ms, {} ms and {} ms",
        steps[1]["ms"], steps[2]["ms"], steps[3]["ms"]
    );
    assert_eq!(w.stop(), Some(0));
}

/// The PNG names `email.html` shows from the preview's own `assets/`.
fn asset_names(html: &str) -> Vec<String> {
    html_urls(html)
        .into_iter()
        .filter_map(|u| u.strip_prefix("assets/").map(str::to_string))
        .collect()
}

/// A logo the post shows is watched too: redrawing the SVG makes a new
/// PNG (a new name, from its content), served from memory; the old name
/// is gone.
#[test]
fn a_changed_logo_is_drawn_again() {
    let tmp = tempfile::tempdir().unwrap();
    let svg = tmp.path().join("static/img/logo.svg");
    std::fs::create_dir_all(svg.parent().unwrap()).unwrap();
    let logo = |colour: &str| {
        format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="200" height="100"><rect width="200" height="100" fill="{colour}"/></svg>"#
        )
    };
    std::fs::write(&svg, logo("#cc0000")).unwrap();
    std::fs::write(tmp.path().join("herald.yaml"), "assets_dir: static\n").unwrap();
    let post = tmp.path().join("post.md");
    std::fs::write(
        &post,
        "---\ntitle: Logos\nseo:\n  url: https://openinfra.org/blog/logos\n---\n# News\n\n![Our logo](/img/logo.svg)\n",
    )
    .unwrap();
    let w = Watching::start(tmp.path(), &post, &[]);
    let host = format!("127.0.0.1:{}", w.port);
    let (_, html) = w.get("/email.html", &host);
    let before = asset_names(&html);
    assert_eq!(before.len(), 1, "{html}");
    let (status, png) = w.get(&format!("/assets/{}", before[0]), &host);
    assert_eq!(status, 200);
    assert!(png.starts_with("\u{fffd}PNG"), "{png:?}");

    let mut events = Events::open(&w);
    events.next();
    std::fs::write(&svg, logo("#0000cc")).unwrap();
    events.next();
    let (_, html) = w.get("/email.html", &host);
    let after = asset_names(&html);
    assert_eq!(after.len(), 1, "{html}");
    assert_ne!(after, before, "the redrawn logo has a new name");
    assert_eq!(w.get(&format!("/assets/{}", after[0]), &host).0, 200);
    assert_eq!(w.get(&format!("/assets/{}", before[0]), &host).0, 404);
    drop(events);
    assert_eq!(w.stop(), Some(0));
}

/// The peak memory (VmHWM, KB) of a running process.
fn peak_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Issue 24 item 7: the watcher compares small files by content, read
/// through the cap: a post replaced by a link to a device that never ends
/// (`/dev/zero`, which says its size is 0) shows the post's error, and
/// herald's memory stays small. On the code before, the watcher read it
/// until memory ran out.
#[test]
fn a_post_replaced_by_a_device_is_not_read_for_ever() {
    let tmp = tempfile::tempdir().unwrap();
    let post = copy_example(tmp.path());
    let w = Watching::start(tmp.path(), &post, &[]);
    let host = format!("127.0.0.1:{}", w.port);
    let mut events = Events::open(&w);
    let first = events.next();
    std::fs::remove_file(&post).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &post).unwrap();
    let second = events.next();
    assert_ne!(first, second);
    let (_, page) = w.get("/", &host);
    assert!(page.contains("id=\"herald-error\""), "{page}");
    // A few more polls of the watcher, each one reading the post.
    std::thread::sleep(Duration::from_secs(2));
    let peak = peak_kb(w.child.id());
    assert!(peak < 256 * 1024, "peak {peak} KB");
    drop(events);
    assert_eq!(w.stop(), Some(0));
}
