//! The README's "Writing an issue", followed word for word in an empty
//! folder (issue 27): the commands are read from README.md, in order, and
//! run against the built herald, with a local smtp-sink as the relay and a
//! real `herald serve`; what the README says the user sees is checked. A
//! README change the program does not follow, or a program change that
//! leaves the README behind, fails here.
//!
//! Only what a user substitutes is substituted: their settings (the relay
//! is the sink, `unsubscribe_url` points at the `herald serve` started
//! here), their secret, and ports (`herald serve --listen`, `herald preview
//! --port 0`), because tests run side by side and the README's fixed ports
//! may be taken.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use crate::serve::{curl, one_click};
use crate::util::*;

/// The commands of README.md's "Writing an issue", in order: every line of
/// its indented code blocks. Prose in its lists is indented by 2 or 3
/// spaces, code in them by 6 or 7.
fn readme_commands() -> (String, Vec<String>) {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme
        .find("\n## Writing an issue\n")
        .expect("README.md has a section \"Writing an issue\"");
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    let commands = section
        .lines()
        .filter(|l| l.len() - l.trim_start().len() >= 6 && !l.trim().is_empty())
        .map(|l| l.trim().to_string())
        .collect();
    (section.to_string(), commands)
}

/// `herald.yaml` with `key: value`: the setting's line (or its commented
/// example) replaced, or the setting added at the end.
fn set(yaml: &Path, key: &str, value: &str) {
    let text = std::fs::read_to_string(yaml).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let line = format!("{key}: {value}");
    let at = lines.iter().position(|l| {
        l.trim_start_matches('#')
            .trim_start()
            .starts_with(&format!("{key}:"))
    });
    match at {
        Some(i) => lines[i] = line,
        None => lines.push(line),
    }
    std::fs::write(yaml, lines.join("\n") + "\n").unwrap();
}

/// One message the sink received, its headers unfolded.
struct Received {
    file: PathBuf,
    to: String,
    subject: String,
    list_unsubscribe: String,
}

/// The complete messages in the sink's folder.
fn received(sink: &Sink) -> Vec<Received> {
    let mut out = Vec::new();
    for (file, bytes) in files_under(&sink.dumps) {
        let text = String::from_utf8_lossy(&bytes).replace("\r\n", "\n");
        let last = text.trim_end().lines().last().unwrap_or("");
        // Not yet written to the end: herald's closing MIME boundary.
        if !(last.starts_with("--") && last.ends_with("--")) {
            continue;
        }
        let head = text
            .split("\n\n")
            .next()
            .unwrap()
            .replace("\n ", " ")
            .replace("\n\t", " ");
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or("")
                .trim()
                .to_string()
        };
        out.push(Received {
            file,
            to: header("X-Rcpt-Args:")
                .trim_matches(['<', '>'])
                .to_lowercase(),
            subject: header("Subject:"),
            list_unsubscribe: header("List-Unsubscribe:"),
        });
    }
    out
}

/// Where the walk is: the folder the user is in, what they exported, and
/// what they started.
struct Walk {
    dir: PathBuf,
    env: Vec<(String, String)>,
    sink: Sink,
    serve_port: u16,
    serve: Option<Child>,
    /// Sink files already looked at: each send's messages are the new ones.
    seen: HashSet<PathBuf>,
    test_subject: Option<String>,
}

impl Drop for Walk {
    fn drop(&mut self) {
        if let Some(mut s) = self.serve.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
    }
}

impl Walk {
    fn env(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    fn herald(&self, args: &[&str]) -> std::process::Output {
        herald_env(&self.dir, args, &self.env())
    }

    /// The messages that arrived since the last look.
    fn new_messages(&mut self) -> Vec<Received> {
        let new: Vec<Received> = received(&self.sink)
            .into_iter()
            .filter(|m| !self.seen.contains(&m.file))
            .collect();
        self.seen.extend(new.iter().map(|m| m.file.clone()));
        new
    }

    /// One command of the README, as the user runs it.
    fn run(&mut self, command: &str) {
        let words: Vec<&str> = command.split_whitespace().collect();
        match words.as_slice() {
            ["cd", to] => self.dir = self.dir.join(to),
            ["cp", from, to] => {
                std::fs::copy(self.dir.join(from), self.dir.join(to))
                    .unwrap_or_else(|e| panic!("{command}: {e}"));
            }
            ["export", ..] => self.export(command),
            ["herald", "init", ..] => {
                let o = self.herald(&words[1..]);
                assert_eq!(o.status.code(), Some(0), "{command}: {}", stderr(&o));
            }
            ["herald", "serve"] => self.serve(),
            ["herald", "preview", .., "--watch"] => self.preview(&words[1..]),
            ["herald", "check", .., "--links"] => self.check_links(&words[1..]),
            ["herald", "send", ..] => self.send(&words[1..]),
            ["herald", "status"] => {
                let o = self.herald(&["status"]);
                assert_eq!(o.status.code(), Some(0), "{command}: {}", stderr(&o));
                assert!(
                    stdout(&o).contains("(finished)"),
                    "{command} does not say the campaign is finished:\n{}",
                    stdout(&o)
                );
            }
            _ => panic!(
                "README.md's \"Writing an issue\" has `{command}`, which this test does not \
                 know how to follow: teach walkthrough.rs what the user sees"
            ),
        }
    }

    /// `export NAME=VALUE`: a value the shell would make (`$(openssl ...)`)
    /// is one the test makes; a quoted one is taken as it is.
    fn export(&mut self, command: &str) {
        let (name, value) = command
            .trim_start_matches("export ")
            .split_once('=')
            .unwrap_or_else(|| panic!("`{command}` sets nothing"));
        let value = if value.contains("$(") {
            "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0".to_string()
        } else {
            value.trim_matches(['\'', '"']).to_string()
        };
        self.env.push((name.to_string(), value));
    }

    /// The settings the README's set-up names, as the user fills them in.
    fn settings(&mut self, section: &str) {
        for named in [
            "`from`",
            "`postal_address`",
            "`unsubscribe_url`",
            "`smtp_url",
            "`smtp_user",
        ] {
            assert!(
                section.contains(named),
                "the README no longer says to set {named}"
            );
        }
        let yaml = self.dir.join("herald.yaml");
        set(&yaml, "from", "\"Our News <news@example.org>\"");
        set(
            &yaml,
            "postal_address",
            "\"Our News, 1 Main Street, Springfield\"",
        );
        set(
            &yaml,
            "unsubscribe_url",
            &format!("http://127.0.0.1:{}/unsubscribe", self.serve_port),
        );
        set(&yaml, "smtp_url", &self.sink.url());
        set(&yaml, "smtp_user", "news@example.org");
    }

    /// `herald serve`, left running "in a second terminal".
    fn serve(&mut self) {
        let log = std::fs::File::create(self.dir.join("../serve.log")).unwrap();
        let child = herald_command(
            &self.dir,
            &[
                "serve",
                "--listen",
                &format!("127.0.0.1:{}", self.serve_port),
            ],
            &self.env(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("herald serve starts");
        self.serve = Some(child);
        wait_listening(self.serve_port, "herald serve");
    }

    /// `herald preview POST --watch`: it prints `Preview at http://...`,
    /// and that page shows the email. Stopped as Ctrl-C stops it.
    fn preview(&mut self, args: &[&str]) {
        let mut args = args.to_vec();
        args.extend(["--port", "0"]);
        let log = self.dir.join("../preview.log");
        let mut child = herald_command(&self.dir, &args, &self.env())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("herald preview starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line.trim().strip_prefix("Preview at ").map(str::to_string);
        let page = url.as_deref().map(|u| curl(&[u]));
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGINT);
        }
        let status = child.wait().unwrap();
        let url = url.unwrap_or_else(|| {
            panic!(
                "herald preview printed {line:?}, not its address:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        let page = page.unwrap();
        assert_eq!(page.status, 200, "{url}");
        assert!(
            page.body.contains("Inside Open Infrastructure"),
            "the preview page does not show the issue: {}",
            page.body
        );
        assert_eq!(
            status.code(),
            Some(0),
            "Ctrl-C did not stop the preview cleanly"
        );
    }

    /// `herald check POST --links`. The test has no internet: every link
    /// goes through a proxy that is down, and herald says so once ("no
    /// network") rather than listing the links as broken; the post itself
    /// has no errors.
    fn check_links(&mut self, args: &[&str]) {
        let down = format!("http://127.0.0.1:{}", free_port());
        let mut env = self.env();
        for var in [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            env.push((var, &down));
        }
        env.extend([("NO_PROXY", ""), ("no_proxy", "")]);
        let o = herald_env(&self.dir, args, &env);
        let said = format!("{}{}", stdout(&o), stderr(&o));
        assert_eq!(o.status.code(), Some(0), "herald {args:?}:\n{said}");
        assert!(said.contains("no network"), "herald {args:?}:\n{said}");
    }

    /// `herald send ...`, answering `y` on the terminal as the README says.
    /// With `--to`: one test message there, `[TEST]` in its subject; with
    /// `--subscribers`: one for each person on the list, without it.
    fn send(&mut self, args: &[&str]) {
        let o = herald_typing(&self.dir, args, &self.env(), "y\n");
        assert_eq!(
            o.status.code(),
            Some(0),
            "herald {args:?}:\n{}{}",
            stdout(&o),
            stderr(&o)
        );
        assert!(
            stderr(&o).contains("[y/N]"),
            "herald {args:?} did not ask before sending:\n{}",
            stderr(&o)
        );
        let new = self.new_messages();
        match args {
            [.., "--to", to] => {
                assert_eq!(new.len(), 1, "herald {args:?}");
                assert_eq!(new[0].to, *to);
                assert!(
                    new[0].subject.starts_with("[TEST]"),
                    "a test's subject: {}",
                    new[0].subject
                );
                self.test_subject = Some(new[0].subject.clone());
            }
            [.., "--subscribers", list] => {
                let list = std::fs::read_to_string(self.dir.join(list)).unwrap();
                let mut people: Vec<String> = list
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split(',').next())
                    .map(str::to_lowercase)
                    .collect();
                let mut got: Vec<String> = new.iter().map(|m| m.to.clone()).collect();
                people.sort();
                got.sort();
                assert_eq!(got, people, "herald {args:?}: one message each");
                let test = self
                    .test_subject
                    .as_deref()
                    .expect("a test before the send");
                for m in &new {
                    assert_eq!(
                        format!("[TEST] {}", m.subject),
                        test,
                        "the real subject is the test's without [TEST]"
                    );
                }
            }
            _ => panic!("herald {args:?}: a send with neither --to nor --subscribers"),
        }
    }
}

#[test]
fn writing_an_issue_works_to_the_end_when_followed_word_for_word() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(sink) = Sink::start(tmp.path(), "sink") else {
        return;
    };
    if tool("curl").is_none() {
        return;
    }
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let mut walk = Walk {
        dir: empty,
        env: Vec::new(),
        sink,
        serve_port: free_port(),
        serve: None,
        seen: HashSet::new(),
        test_subject: None,
    };
    let (section, commands) = readme_commands();
    let mut order = Vec::new();
    for line in &commands {
        for command in line.split(" && ") {
            walk.run(command);
            order.push(
                command
                    .split_whitespace()
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        }
        // The settings are edited in the folder just made, as the
        // README's next step says.
        if line.starts_with("herald init") {
            walk.settings(&section);
        }
    }
    // The README's whole job, in its order: nothing left out.
    let at = |c: &str| {
        order
            .iter()
            .position(|o| o == c)
            .unwrap_or_else(|| panic!("the README's walkthrough has no `{c}`: {order:?}"))
    };
    let steps = [
        "herald init",
        "herald serve",
        "herald preview",
        "herald check",
        "herald send",
        "herald status",
    ];
    for pair in steps.windows(2) {
        assert!(
            at(pair[0]) < at(pair[1]),
            "{pair:?} out of order: {order:?}"
        );
    }

    // A subscriber clicks the mailbox's Unsubscribe button on the real
    // issue: `herald serve` takes it, and `herald suppress list` shows them.
    let real = received(&walk.sink)
        .into_iter()
        .find(|m| !m.subject.starts_with("[TEST]"))
        .expect("the real issue arrived");
    let link = real
        .list_unsubscribe
        .split('>')
        .next()
        .and_then(|l| l.strip_prefix('<'))
        .unwrap_or_else(|| panic!("List-Unsubscribe: {}", real.list_unsubscribe))
        .to_string();
    assert!(
        link.starts_with(&format!("http://127.0.0.1:{}/", walk.serve_port)),
        "{link}"
    );
    assert_eq!(one_click(&link).status, 200, "{link}");
    let o = walk.herald(&["suppress", "list"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&real.to),
        "herald suppress list does not show {}:\n{}",
        real.to,
        stdout(&o)
    );
    let o = walk.herald(&["status"]);
    assert!(
        stdout(&o).contains("unsubscribed"),
        "herald status does not count the unsubscribe:\n{}",
        stdout(&o)
    );
}
