//! A small mutation fuzzer that runs on stable Rust (issue 10), so CI can
//! run it without nightly's `cargo fuzz`:
//!
//!     cargo run --release --example fuzz -- TARGET [--seconds 60] [--seed 1] [--runs N]
//!
//! TARGET is `post` (post::parse), `content` (a post composed into MJML,
//! HTML and text, checked, with and without `--fit`), `csv` (the
//! subscriber list reader) or `config` (herald.yaml). Inputs start from the
//! repository's own files (examples/, tests/fixtures/, herald.example.yaml,
//! subscribers.example.csv) and are mutated: bit flips, inserted and
//! deleted bytes, slices duplicated, two seeds spliced, and the tokens that
//! hurt parsers (`- `, `> `, `<ul><li>`, `[`, `{{`, `---`, NUL), sometimes
//! in long runs. There is no coverage feedback: what it is for is depth
//! bombs, odd bytes and panics, which random mutations of real files find.
//!
//! A failure is a panic, an error that says it is a bug in herald, or one
//! input taking longer than `--timeout` seconds (runaway work). Its input is
//! written to `target/fuzz-crashes/TARGET-N` and the run exits with 1. The
//! input being run is always in `target/fuzz-crashes/TARGET-current` first,
//! so a stack overflow, which aborts the process, still leaves it behind.
//! The slowest input of a run is kept as `TARGET-slowest`, to look at.
//! The same `--seed` gives the same inputs.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use herald::compose::Issue;
use herald::config::Config;

const TOKENS: &[&str] = &[
    "- ",
    "> ",
    "* ",
    "1. ",
    "  ",
    "\n",
    "\n\n",
    "<ul><li>",
    "</li></ul>",
    "<b>",
    "</b>",
    "<div>",
    "</div>",
    "<a href=\"",
    "<img src=\"/img/x.svg\">",
    "<br />",
    "<!--",
    "-->",
    "[",
    "](",
    ")",
    "![",
    "*",
    "**",
    "_",
    "`",
    "```\n",
    "{{",
    "}}",
    "{{ first_name | default: \"x\" }}",
    "---\n",
    "# ",
    "#",
    "|",
    "| --- |",
    "\0",
    "\u{1b}",
    "\r\n",
    "\r",
    "\u{feff}",
    "é",
    "🙂",
    "&amp;",
    "&#",
    ":",
    ": ",
    "'",
    "\"",
    "{",
    "}",
    "&a",
    "*a",
    "!!binary ",
    "? ",
    ",",
    "\"\"",
    "mailto:",
    "javascript:",
    "https://",
    "//",
    "..",
    "%",
    "\\",
];

#[derive(Clone, Copy, PartialEq)]
enum Target {
    Post,
    Content,
    Csv,
    Config,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Post => "post",
            Target::Content => "content",
            Target::Csv => "csv",
            Target::Config => "config",
        }
    }

    fn wants(self, path: &Path) -> bool {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        match self {
            Target::Post | Target::Content => ext == "md",
            Target::Csv => ext == "csv",
            Target::Config => ext == "yaml" || ext == "yml",
        }
    }
}

struct Args {
    target: Target,
    seconds: u64,
    seed: u64,
    runs: Option<u64>,
    timeout: u64,
    max_len: usize,
}

fn usage() -> ! {
    eprintln!(
        "usage: cargo run --release --example fuzz -- post|content|csv|config \
         [--seconds N] [--seed N] [--runs N] [--timeout SECONDS] [--max-len BYTES]"
    );
    std::process::exit(2);
}

fn args() -> Args {
    let mut it = std::env::args().skip(1);
    let target = match it.next().as_deref() {
        Some("post") => Target::Post,
        Some("content") => Target::Content,
        Some("csv") => Target::Csv,
        Some("config") => Target::Config,
        _ => usage(),
    };
    let mut a = Args {
        target,
        seconds: 60,
        seed: 1,
        runs: None,
        timeout: 10,
        max_len: 200_000,
    };
    while let Some(flag) = it.next() {
        let value: u64 = it
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| usage());
        match flag.as_str() {
            "--seconds" => a.seconds = value,
            "--seed" => a.seed = value,
            "--runs" => a.runs = Some(value),
            "--timeout" => a.timeout = value,
            "--max-len" => a.max_len = value as usize,
            _ => usage(),
        }
    }
    a
}

fn seeds(root: &Path, target: Target) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = vec![
        root.join("herald.example.yaml"),
        root.join("subscribers.example.csv"),
    ];
    for dir in ["examples", "tests/fixtures", "tests/fuzz-seeds"] {
        if let Ok(entries) = std::fs::read_dir(root.join(dir)) {
            files.extend(entries.flatten().map(|e| e.path()));
        }
    }
    files.sort();
    let mut seeds: Vec<Vec<u8>> = files
        .iter()
        .filter(|p| target.wants(p))
        .filter_map(|p| std::fs::read(p).ok())
        .collect();
    // Small seeds of the shapes each reader meets, so mutations reach the
    // corners quickly.
    let extra: &[&str] = match target {
        Target::Post | Target::Content => &[
            "---\ntitle: T\nseo:\n  url: https://example.org/blog/t\n---\n# A\n\n- a\n  - b\n\n> q\n\n<ul><li>x</li></ul>\n\n[READ MORE >>](https://example.org)\n",
            "---\ntitle: T\ntemplateKey: annual-report-page\n---\n## A\n\n<div style=\"max-width: 200px\"><a href=\"/x\"><img src=\"/img/a.svg\" width=\"100\"></a></div>\n\n| a | b |\n| - | - |\n| 1 | 2 |\n",
        ],
        Target::Csv => &[
            "email,first_name,status\na@example.org,Ann,subscribed\n\"B <b@example.org>\",\"Bo, Jr\",unsubscribed\n",
            "\u{feff}E-mail;name\r\nx@example.org;X\r\n",
        ],
        Target::Config => &[
            "from: \"N <n@example.org>\"\nrate: 5/s\nfit: true\npostal_address: |\n  1 Road\n  Town\n",
        ],
    };
    seeds.extend(extra.iter().map(|s| s.as_bytes().to_vec()));
    seeds
}

fn mutate(rng: &mut fastrand::Rng, seeds: &[Vec<u8>], max_len: usize) -> Vec<u8> {
    let mut data = seeds[rng.usize(..seeds.len())].clone();
    for _ in 0..rng.usize(1..=8) {
        let len = data.len();
        let at = rng.usize(..=len);
        match rng.u8(..10) {
            0 if len > 0 => {
                let i = rng.usize(..len);
                data[i] ^= 1 << rng.u8(..8);
            }
            1 if len > 0 => {
                let i = rng.usize(..len);
                data[i] = rng.u8(..);
            }
            2 => data.insert(at, rng.u8(..)),
            3 if len > 0 => {
                let end = (at + rng.usize(..=64.min(len))).min(len);
                data.drain(at.min(end)..end);
            }
            4 if len > 0 => {
                let start = rng.usize(..len);
                let end = (start + rng.usize(1..=256)).min(len);
                let slice = data[start..end].to_vec();
                data.splice(at..at, slice);
            }
            5 => {
                let other = &seeds[rng.usize(..seeds.len())];
                let cut = rng.usize(..=other.len());
                data.truncate(at);
                data.extend_from_slice(&other[cut..]);
            }
            6 | 7 => {
                let token = TOKENS[rng.usize(..TOKENS.len())].as_bytes();
                data.splice(at..at, token.iter().copied());
            }
            8 => {
                // A long run of one token: the depth bombs.
                let token = TOKENS[rng.usize(..TOKENS.len())].as_bytes();
                let times = if rng.bool() {
                    rng.usize(1..100)
                } else {
                    rng.usize(100..5000)
                };
                let run: Vec<u8> = token.repeat(times);
                data.splice(at..at, run);
            }
            _ => data.truncate(at),
        }
    }
    data.truncate(max_len);
    data
}

/// Runs one input; `Err` says why it is a failure (errors a user would get
/// for bad input are fine, one that blames herald is not).
fn run(target: Target, data: &[u8], dir: &Path) -> Result<(), String> {
    let path = Path::new("fuzz.md");
    let bug = |e: &dyn std::fmt::Display| {
        let s = e.to_string();
        if s.contains("bug in herald") {
            Err(s)
        } else {
            Ok(())
        }
    };
    match target {
        Target::Post => {
            let text = String::from_utf8_lossy(data);
            let _ = herald::compose::post::parse(path, &text);
            Ok(())
        }
        Target::Content => {
            let text = String::from_utf8_lossy(data);
            // Every other input with --fit, which digests and renders again.
            let mut config = Config::default();
            config.fit = data.len() % 2 == 1;
            let options = config.compose();
            match Issue::compose_text(path, &text, &options) {
                Ok(issue) => {
                    let _ = issue.personalised_preview(&options.preview);
                    let _ = issue.preview_subject(&options.preview);
                    let _ = issue.check(&options);
                    Ok(())
                }
                Err(e) => bug(&e),
            }
        }
        Target::Csv => {
            let file = dir.join("subscribers.csv");
            std::fs::write(&file, data).map_err(|e| format!("cannot write {e}"))?;
            let suppression = Arc::new(herald::deliver::audience::Suppression::default());
            let _ = herald::deliver::audience::validate(&file, suppression.clone());
            if let Ok(mut audience) = herald::deliver::audience::open(&file, suppression) {
                while audience.next_row().is_some() {}
            }
            Ok(())
        }
        Target::Config => {
            let text = String::from_utf8_lossy(data);
            match Config::parse(Path::new("herald.yaml"), &text) {
                Ok(_) => Ok(()),
                Err(e) => bug(&e),
            }
        }
    }
}

fn main() {
    let a = args();
    let name = a.target.name();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let crashes = root.join("target/fuzz-crashes");
    std::fs::create_dir_all(&crashes).expect("cannot create target/fuzz-crashes");
    let current = crashes.join(format!("{name}-current"));
    let scratch = tempfile::tempdir().expect("cannot make a temporary folder");
    let seeds = seeds(&root, a.target);
    assert!(!seeds.is_empty(), "no seed files for {name}");
    let mut rng = fastrand::Rng::with_seed(a.seed);

    // Runaway work: a watchdog saves the input that has run too long.
    let started = Instant::now();
    let exec_start = Arc::new(AtomicU64::new(u64::MAX));
    {
        let exec_start = exec_start.clone();
        let (current, crashes, timeout) = (current.clone(), crashes.clone(), a.timeout);
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(200));
                let s = exec_start.load(Ordering::Relaxed);
                if s != u64::MAX && started.elapsed().as_millis() as u64 > s + timeout * 1000 {
                    let saved = crashes.join(format!("{name}-slow"));
                    let _ = std::fs::copy(&current, &saved);
                    eprintln!(
                        "fuzz {name}: one input ran over {timeout} s (runaway work); saved as {}",
                        saved.display()
                    );
                    std::process::exit(1);
                }
            }
        });
    }
    // Quiet panics: the fuzzer reports them itself.
    std::panic::set_hook(Box::new(|_| {}));

    let deadline = Duration::from_secs(a.seconds);
    let mut execs: u64 = 0;
    let mut slowest = Duration::ZERO;
    let mut n = 0;
    loop {
        if a.runs.is_some_and(|r| execs >= r) || (a.runs.is_none() && started.elapsed() >= deadline)
        {
            break;
        }
        // The seeds themselves first, then mutants.
        let data = match seeds.get(n) {
            Some(s) => s.clone(),
            None => mutate(&mut rng, &seeds, a.max_len),
        };
        n += 1;
        std::fs::write(&current, &data).expect("cannot write the current input");
        let t = Instant::now();
        exec_start.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        let outcome = catch_unwind(AssertUnwindSafe(|| run(a.target, &data, scratch.path())));
        exec_start.store(u64::MAX, Ordering::Relaxed);
        if t.elapsed() > slowest {
            // Kept to look at: slow inputs point at quadratic work.
            slowest = t.elapsed();
            let _ = std::fs::write(crashes.join(format!("{name}-slowest")), &data);
        }
        execs += 1;
        let why = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(why)) => why,
            Err(payload) => payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .map_or("a panic".into(), |s| format!("a panic: {s}")),
        };
        let mut i = 0;
        let saved = loop {
            let p = crashes.join(format!("{name}-{i}"));
            if !p.exists() {
                break p;
            }
            i += 1;
        };
        std::fs::write(&saved, &data).expect("cannot save the crash");
        eprintln!(
            "fuzz {name}: FAILED after {execs} inputs: {why}\n  input saved as {}",
            saved.display()
        );
        std::process::exit(1);
    }
    let _ = std::fs::remove_file(&current);
    let secs = started.elapsed().as_secs_f64();
    println!(
        "fuzz {name}: {execs} inputs in {secs:.0} s ({:.0}/s), seed {}, {} seeds, slowest input {:.2} s, no failure",
        execs as f64 / secs,
        a.seed,
        seeds.len(),
        slowest.as_secs_f64()
    );
}
