use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn example_post() -> PathBuf {
    repo().join("examples/inside-open-infrastructure-example.md")
}

pub fn example_config() -> PathBuf {
    repo().join("herald.example.yaml")
}

pub fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures").join(name)
}

/// `herald` run in `dir` (so no stray herald.yaml is picked up), with no
/// HERALD_* variables from the environment.
pub fn herald(dir: &Path, args: &[&str]) -> Output {
    herald_env(dir, args, &[])
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The corpus of real posts in `../shared/corpus`, or `None` (with a clear
/// message) when it is not there. Under CI a missing corpus fails the test.
pub fn corpus_files() -> Option<Vec<PathBuf>> {
    let dir = std::env::var_os("HERALD_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/corpus"));
    if !dir.is_dir() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "the corpus {} is missing, and CI=true: corpus tests must run in CI",
                dir.display()
            );
        }
        eprintln!(
            "SKIPPED: corpus tests need {} (real posts); it is not there",
            dir.display()
        );
        return None;
    }
    let mut files = Vec::new();
    for sub in ["seeds", "newsletters", "annual-reports", "edge-cases"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if matches!(p.extension().and_then(|x| x.to_str()), Some("md" | "txt")) {
                files.push(p);
            }
        }
    }
    files.sort();
    assert!(!files.is_empty(), "no posts found in {}", dir.display());
    Some(files)
}

/// Every `href="..."` and `src="..."` value in an HTML document.
pub fn html_urls(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["href=\"", "src=\""] {
        let mut rest = html;
        while let Some(i) = rest.find(attr) {
            let after = &rest[i + attr.len()..];
            let end = after.find('"').unwrap_or(after.len());
            out.push(after[..end].replace("&amp;", "&"));
            rest = &after[end..];
        }
    }
    out
}

pub fn is_absolute(url: &str) -> bool {
    ["https://", "http://", "mailto:", "tel:"]
        .iter()
        .any(|s| url.starts_with(s))
}

pub fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What a post holds, read straight from its Markdown with pulldown-cmark
/// (not through herald's content model), for checking herald's output.
#[derive(Debug, Default)]
pub struct Expected {
    pub headings: Vec<String>,
    /// Absolute URLs of every link with something to click.
    pub links: Vec<String>,
    pub top_sections: usize,
    /// Paragraphs that are a single `... >>` link.
    pub calls_to_action: usize,
    pub is_blog_post: bool,
}

pub fn expected(post_path: &Path) -> Expected {
    use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
    let post = herald::compose::post::load(post_path).expect("post loads");
    let fm = &post.front_matter;
    let is_blog_post = fm.kind == herald::compose::post::Kind::BlogPost;
    let base = herald::urls::Base::new(None, fm.seo.url.as_deref(), is_blog_post);
    let mut e = Expected {
        is_blog_post,
        ..Default::default()
    };
    let mut levels = Vec::new();
    let mut heading: Option<String> = None;
    // (destination, text seen, has image) of open links.
    let mut links: Vec<(String, String, bool)> = Vec::new();
    // Paragraph content: (number of links, other visible text, last link text).
    let mut para: Option<(usize, String, String)> = None;
    let opts = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    for ev in Parser::new_ext(&post.body, opts) {
        match ev {
            Event::Start(Tag::Heading { level, .. }) => {
                levels.push(level as usize);
                heading = Some(String::new());
            }
            Event::End(TagEnd::Heading(_)) => {
                let h = collapse(&heading.take().unwrap_or_default());
                if !h.is_empty() {
                    e.headings.push(h);
                }
            }
            Event::Start(Tag::Paragraph) => para = Some((0, String::new(), String::new())),
            Event::End(TagEnd::Paragraph) => {
                if let Some((1, other, text)) = para.take()
                    && other.trim().is_empty()
                    && text.trim_end().ends_with(">>")
                {
                    e.calls_to_action += 1;
                }
            }
            Event::Start(Tag::Link { dest_url, .. }) => {
                links.push((dest_url.to_string(), String::new(), false))
            }
            Event::End(TagEnd::Link) => {
                if let Some((dest, text, image)) = links.pop() {
                    if let Some(p) = para.as_mut() {
                        p.0 += 1;
                        p.2 = text.clone();
                    }
                    if (!text.trim().is_empty() || image)
                        && let Ok(f) = herald::urls::absolutize(&dest, &base)
                    {
                        e.links.push(f.url);
                    }
                }
            }
            Event::Start(Tag::Image { .. }) => {
                if let Some(l) = links.last_mut() {
                    l.2 = true;
                }
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&t);
                }
                match links.last_mut() {
                    Some(l) => l.1.push_str(&t),
                    None => {
                        if let Some(p) = para.as_mut() {
                            p.1.push_str(&t);
                        }
                    }
                }
            }
            Event::Html(h) | Event::InlineHtml(h) => {
                for url in html_urls(&h) {
                    if h.contains(&format!("href=\"{url}\""))
                        && let Ok(f) = herald::urls::absolutize(&url, &base)
                    {
                        e.links.push(f.url);
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(min) = levels.iter().min() {
        e.top_sections = levels.iter().filter(|l| *l == min).count();
    }
    e
}

/// What a reader would check in a preview folder; returns the problems found.
pub fn problems_in_preview(dir: &Path, e: &Expected) -> Vec<String> {
    let html = std::fs::read_to_string(dir.join("email.html")).expect("email.html");
    let text = std::fs::read_to_string(dir.join("email.txt")).expect("email.txt");
    let mjml = std::fs::read_to_string(dir.join("email.mjml")).expect("email.mjml");
    let index = std::fs::read_to_string(dir.join("index.html")).expect("index.html");
    let mut p = Vec::new();
    for url in html_urls(&html) {
        // PNGs made from SVG pictures: the preview shows its own copy.
        if let Some(file) = url.strip_prefix("assets/") {
            if !dir.join("assets").join(file).is_file() {
                p.push(format!("email.html shows {url}, which is not there"));
            }
        } else if !is_absolute(&url) {
            p.push(format!("relative URL in email.html: {url}"));
        }
    }
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix('[')
            && let Some((n, url)) = rest.split_once("] ")
            && n.chars().all(|c| c.is_ascii_digit())
            && !is_absolute(url)
        {
            p.push(format!("relative URL in email.txt: {line}"));
        }
        if line.contains("](/") || line.contains("{{") {
            p.push(format!("unrendered markup in email.txt: {line}"));
        }
    }
    let flat_text = collapse(&text);
    for h in &e.headings {
        if !flat_text.contains(h.as_str()) {
            p.push(format!("heading missing from email.txt: {h}"));
        }
    }
    for url in &e.links {
        let bare = url.trim_start_matches("mailto:");
        if !text.contains(url.as_str()) && !text.contains(bare) {
            p.push(format!("link missing from email.txt: {url}"));
        }
        if !html.contains(&url.replace('&', "&amp;")) && !html.contains(url.as_str()) {
            p.push(format!("link missing from email.html: {url}"));
        }
    }
    let sections = html.matches("<h2 id=\"").count();
    if sections != e.top_sections {
        p.push(format!(
            "{sections} section headings in email.html, the post has {}",
            e.top_sections
        ));
    }
    let buttons = html
        .matches("style=\"display:inline-block;background:")
        .count();
    if buttons < e.calls_to_action {
        p.push(format!(
            "{buttons} buttons in email.html, the post has {} READ MORE >> links",
            e.calls_to_action
        ));
    }
    if e.is_blog_post && html.len() > herald::compose::check::GMAIL_CLIP_BYTES {
        p.push(format!(
            "email.html is {} bytes, over Gmail's clipping size",
            html.len()
        ));
    }
    if !mjml.starts_with("<mjml") || !mjml.contains("<mj-body") {
        p.push("email.mjml is not an MJML document".into());
    }
    if !index.contains("src=\"email.html\"")
        || !index.contains("width=\"375\"")
        || !index.contains("width=\"600\"")
    {
        p.push("index.html does not show the email at phone and desktop widths".into());
    }
    if !html.contains("Unsubscribe") || !text.contains("Unsubscribe: http") {
        p.push("no unsubscribe link".into());
    }
    p
}

/// A Python that can import `module`: `HERALD_PYTHON`, the CI venv
/// (`.venv-ci`, made by `.ci/run`), or `python3`. `None` (with a SKIPPED
/// line) when there is none; under CI that is a failure.
pub fn python_with(module: &str) -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("HERALD_PYTHON") {
        candidates.push(p.into());
    }
    candidates.push(repo().join(".venv-ci/bin/python"));
    candidates.push("python3".into());
    for c in candidates {
        let ok = Command::new(&c)
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(c);
        }
    }
    require_tool(&format!(
        "a Python with the `{module}` module (pip install -r tools/python/requirements.txt)"
    ))
}

/// A command on PATH (or in /usr/sbin), or `None` with a SKIPPED line;
/// under CI a missing tool is a failure.
pub fn tool(name: &str) -> Option<PathBuf> {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/usr/bin"])
    {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return Some(p);
        }
    }
    require_tool(name)
}

/// `node` with one of the packages `.ci/run` installs into tools/node
/// (`npm ci` there), or `None` with a SKIPPED line naming what is missing;
/// under CI a missing one is a failure. The scripts `require()` the
/// package from that folder, so `node` alone is not enough.
pub fn node_with(package: &str) -> Option<PathBuf> {
    let node = tool("node")?;
    if repo()
        .join("tools/node/node_modules")
        .join(package)
        .join("package.json")
        .is_file()
    {
        return Some(node);
    }
    require_tool(&format!(
        "the node package {package} (`npm ci` in tools/node, as .ci/run does)"
    ))
}

pub fn require_tool<T>(what: &str) -> Option<T> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what} is missing, and CI=true: .ci/run must install it");
    }
    eprintln!("SKIPPED: this test needs {what}");
    None
}

/// Runs `script` (in tests/tools) with `python` and parses its JSON lines.
pub fn python_json(python: &Path, script: &str, args: &[&Path]) -> Vec<serde_json::Value> {
    let o = Command::new(python)
        .arg(repo().join("tests/tools").join(script))
        .args(args)
        .output()
        .expect("python runs");
    assert!(o.status.success(), "{script} failed: {}", stderr(&o));
    stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// `herald` with a clean environment plus `env`.
pub fn herald_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    herald_command(dir, args, env)
        .output()
        .expect("herald runs")
}

/// The command [`herald_env`] runs: in `dir`, no HERALD_* variables from
/// the environment, `env` added.
pub fn herald_command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.current_dir(dir).args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("HERALD_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    cmd
}

/// [`herald_env`] with its stdin on a terminal (a pseudo-terminal), on
/// which `typed` is typed: how a person answers `Send now? [y/N]`, which
/// herald asks only on a terminal. The line is typed at once; the terminal
/// keeps it until herald reads.
pub fn herald_typing(dir: &Path, args: &[&str], env: &[(&str, &str)], typed: &str) -> Output {
    use std::io::Write;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::fs::OpenOptionsExt;
    // SAFETY: posix_openpt returns a new descriptor (or -1), owned here.
    let master = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY) };
    assert!(
        master >= 0,
        "no pseudo-terminal: {}",
        std::io::Error::last_os_error()
    );
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: calls on the descriptor owned above; `name` is big enough
    // for ptsname_r, which says so otherwise.
    let ok = unsafe {
        libc::grantpt(master.as_raw_fd()) == 0
            && libc::unlockpt(master.as_raw_fd()) == 0
            && libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) == 0
    };
    assert!(ok, "pseudo-terminal: {}", std::io::Error::last_os_error());
    let terminal = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
        .to_str()
        .unwrap()
        .to_string();
    let terminal = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(terminal)
        .unwrap();
    let mut cmd = herald_command(dir, args, env);
    let child = cmd
        .stdin(terminal)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("herald runs");
    drop(cmd);
    let mut keyboard = std::fs::File::from(master);
    keyboard.write_all(typed.as_bytes()).unwrap();
    // The keyboard stays open until herald is done: a terminal closed
    // under it reads as an end of input, not as the answer.
    let out = child.wait_with_output().expect("herald runs");
    drop(keyboard);
    out
}

/// The `.eml` files of an outbox folder, in order.
pub fn eml_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Another issue: the example post under another name (another campaign),
/// written into `dir`.
pub fn another_issue(dir: &Path, slug: &str) -> PathBuf {
    let p = dir.join(format!("{slug}.md"));
    std::fs::write(
        &p,
        std::fs::read_to_string(example_post())
            .unwrap()
            .replace("herald-example-issue", slug),
    )
    .unwrap();
    p
}

/// Every file under `dir` (sub-folders too), by path relative to `dir`,
/// sorted, with its bytes; a file that cannot be read is left out.
pub fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(b) = std::fs::read(&p) {
                out.push((p.strip_prefix(dir).unwrap_or(&p).to_path_buf(), b));
            }
        }
    }
    out.sort();
    out
}

/// A port nobody listens on right now, on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `list.csv` in `dir`: `reader0@example.org` ... with a first name each.
pub fn write_list(dir: &Path, n: usize) -> PathBuf {
    let mut s = String::from("email,first_name\n");
    for i in 0..n {
        s.push_str(&format!("reader{i}@example.org,Reader{i}\n"));
    }
    let p = dir.join("list.csv");
    std::fs::write(&p, s).unwrap();
    p
}

/// Waits (up to 20 s) until something listens on 127.0.0.1:`port`.
pub fn wait_listening(port: u16, what: &str) {
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "{what} never listened on port {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Whether this test runs as root, as starting a private Postfix or
/// Dovecot needs. Not root: skipped, except under CI, which runs as root.
pub fn as_root(what: &str) -> bool {
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    require_tool::<()>(&format!("root (to start a private {what})")).is_some()
}

/// Each complete message in an smtp-sink dump folder (`-d DIR/...`), with
/// its recipient (lower-cased) and when it was written, in seconds since
/// the epoch. smtp-sink writes a message as it arrives, so that is when it
/// reached the relay; a transaction cut off by a kill does not end with
/// herald's closing MIME boundary and is left out.
pub fn sink_messages(dir: &Path) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let Ok(bytes) = std::fs::read(&p) else {
                continue;
            };
            let text = String::from_utf8_lossy(&bytes);
            let Some(rcpt) = text
                .lines()
                .find_map(|l| l.strip_prefix("X-Rcpt-Args: "))
                .map(|a| a.trim_matches(['<', '>']).to_lowercase())
            else {
                continue;
            };
            let last = text.trim_end().lines().last().unwrap_or("");
            if !(last.starts_with("--") && last.ends_with("--")) {
                continue;
            }
            let at = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0.0, |d| d.as_secs_f64());
            out.push((rcpt, at));
        }
    }
    out
}

/// smtp-sink keeping every message in a folder of its own; stopped when
/// dropped.
pub struct Sink {
    child: std::process::Child,
    port: u16,
    pub dumps: PathBuf,
}

impl Sink {
    pub fn start(dir: &Path, name: &str) -> Option<Sink> {
        Sink::start_on(dir, name, free_port())
    }

    /// [`Sink::start`] on a chosen port: a relay that comes up where herald
    /// has been failing to connect.
    pub fn start_on(dir: &Path, name: &str, port: u16) -> Option<Sink> {
        let sink = tool("smtp-sink")?;
        let dumps = dir.join(name);
        std::fs::create_dir(&dumps).unwrap();
        // smtp-sink writes as `nobody`.
        std::fs::set_permissions(&dumps, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        let child = std::process::Command::new(sink)
            .args(["-u", "nobody", "-d"])
            .arg(format!("{}/%H%M%S.", dumps.display()))
            .args([&format!("127.0.0.1:{port}"), "64"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        wait_listening(port, "smtp-sink");
        Some(Sink { child, port, dumps })
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}?tls=none", self.port)
    }

    /// Each complete message the sink received: (recipient, when).
    pub fn complete(&self) -> Vec<(String, f64)> {
        sink_messages(&self.dumps)
    }

    /// Stops the sink now, as a relay that dies mid-run.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn count(&self) -> usize {
        std::fs::read_dir(&self.dumps)
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How many complete messages each recipient got at these sinks.
pub fn deliveries(sinks: &[&Sink]) -> std::collections::HashMap<String, usize> {
    let mut received: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (rcpt, _) in sinks.iter().flat_map(|s| s.complete()) {
        *received.entry(rcpt).or_default() += 1;
    }
    received
}

/// How far two sink file times can read closer together than the
/// messages arrived. A file written several times in a row keeps a time
/// from the kernel's coarse clock, up to a scheduler tick behind its last
/// write (measured here: 1.2-5.1 ms behind, a 4 ms tick; 10 ms with
/// HZ=100), so two messages that reached the sink just over a second apart
/// can read as just under. herald's throttle is exact; this is only the
/// measurement's resolution.
pub const FILE_TIME_TICK: f64 = 0.010;

/// The most messages in any one-second window (sliding, not by the clock's
/// seconds), measured by sink file times (see [`FILE_TIME_TICK`]).
pub fn busiest_second(times: &mut [f64]) -> usize {
    times.sort_by(f64::total_cmp);
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|u| **u < times[i] + 1.0 - FILE_TIME_TICK)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// A relay that must never be called: a 127.0.0.1 listener that counts
/// every connection it gets (and closes it).
pub struct Tripwire {
    port: u16,
    pub hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Tripwire {
    pub fn start() -> Tripwire {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = std::sync::Arc::clone(&hits);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(conn);
            }
        });
        Tripwire { port, hits }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}?tls=none", self.port)
    }
}

impl Tripwire {
    /// Connections so far.
    pub fn count(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// [`herald_env`], and the most memory herald held (its peak resident set,
/// in KB, from the kernel's own count at `wait4`): for tests that a huge
/// input is not read into memory. A small Python parent starts herald:
/// a process started from this test process would count this process's
/// memory as its own (Linux keeps the peak across fork and exec).
pub fn herald_peak(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (Output, u64) {
    const PARENT: &str = "import os, signal, sys\n\
        pid = os.fork()\n\
        if pid == 0:\n    os.execv(sys.argv[2], sys.argv[2:])\n\
        _, status, usage = os.wait4(pid, 0)\n\
        open(sys.argv[1], 'w').write(str(usage.ru_maxrss))\n\
        if os.WIFSIGNALED(status):\n    signal.signal(os.WTERMSIG(status), signal.SIG_DFL)\n    os.kill(os.getpid(), os.WTERMSIG(status))\n\
        sys.exit(os.waitstatus_to_exitcode(status))\n";
    let python = tool("python3").expect("python3 for measuring memory");
    let peak = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = Command::new(python);
    cmd.current_dir(dir)
        .arg("-c")
        .arg(PARENT)
        .arg(peak.path())
        .arg(env!("CARGO_BIN_EXE_herald"))
        .args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("HERALD_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    let output = cmd.output().expect("herald runs");
    let kb = std::fs::read_to_string(peak.path())
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no peak measured: {}", stderr(&output)));
    (output, kb)
}

/// A private authoritative DNS server (Knot DNS's knotd) on 127.0.0.1,
/// serving the zones the test wrote, as a resolver would answer for them.
/// Killed when dropped. `None` (SKIPPED; a failure under CI=true) without
/// knotd.
pub struct Knot {
    child: std::process::Child,
    pub port: u16,
}

impl Knot {
    /// Serves each `(origin, zone file text)` from `dir`; the texts are
    /// written as `origin.zone` beside a knot.conf, with no `$ORIGIN`
    /// needed (knotd takes it from the zone's name).
    pub fn start(dir: &Path, zones: &[(&str, String)]) -> Option<Knot> {
        let knotd = tool("knotd")?;
        let port = free_port();
        let dir = dir.join("knot");
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.display();
        let mut conf = format!(
            "server:\n    rundir: \"{d}\"\n    listen: 127.0.0.1@{port}\n\
             database:\n    storage: \"{d}\"\n\
             template:\n  - id: default\n    storage: \"{d}\"\n\
             zone:\n"
        );
        for (origin, text) in zones {
            std::fs::write(dir.join(format!("{origin}.zone")), text).unwrap();
            conf.push_str(&format!("  - domain: {origin}\n    file: {origin}.zone\n"));
        }
        let conf_file = dir.join("knot.conf");
        std::fs::write(&conf_file, conf).unwrap();
        let log = std::fs::File::create(dir.join("knot.log")).unwrap();
        let child = std::process::Command::new(knotd)
            .arg("-c")
            .arg(&conf_file)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut knot = Knot { child, port };
        wait_listening(port, "knotd");
        // Listening comes before the zones are loaded: wait for the log line.
        let start = std::time::Instant::now();
        loop {
            let text = std::fs::read_to_string(dir.join("knot.log")).unwrap_or_default();
            let loaded = text.matches("] loaded, serial").count();
            if loaded >= zones.len() {
                break;
            }
            if start.elapsed() > std::time::Duration::from_secs(20) {
                knot.kill();
                panic!("knotd did not load every zone:\n{text}");
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Some(knot)
    }

    /// What `dns_resolver` is set to, to ask this server.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        self.kill();
    }
}
