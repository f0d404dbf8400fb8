//! Size caps (issue 24 item 7): every file herald reads goes through one
//! capped reader, so a huge file (a sparse one here: gigabytes that take
//! no disk) or a device that never ends (`/dev/zero`) named by mistake is
//! refused by name, or left aside, and never read into memory. Each test
//! runs the real binary and checks its peak memory from the kernel's
//! count; on the code before, each of these files was read whole.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::util::*;

const SECRET: &str = "caps-test-secret";

/// A sparse file of `mib` MiB: no disk, all zeros when read.
fn sparse(path: &Path, mib: u64) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let f = std::fs::File::create(path).unwrap();
    f.set_len(mib * 1024 * 1024).unwrap();
}

/// Far under the 512 MiB files below, far over herald's own needs.
const PEAK_KB: u64 = 256 * 1024;

const SETTINGS: &str = "from: \"News <news@example.org>\"\n\
    unsubscribe_url: https://example.org/unsubscribe\n\
    postal_address: 1 Road, Town\n";

/// `linkcheck.json` in the journal folder, 512 MiB: a warning naming it and
/// the fix, the check goes on, and the file is replaced by a real cache.
#[test]
fn a_huge_link_cache_is_left_aside_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let cache = d.join(".herald/linkcheck.json");
    sparse(&cache, 512);
    let closed = free_port();
    std::fs::write(
        d.join("post.md"),
        format!(
            "---\ntitle: T\nseo:\n  url: https://example.org/blog/t\n---\n# A\n\n\
             See [this](http://127.0.0.1:{closed}/page).\n"
        ),
    )
    .unwrap();
    let (o, peak) = herald_peak(
        d,
        &["check", "post.md", "--links", "--format", "json"],
        &[("NO_PROXY", "127.0.0.1"), ("no_proxy", "127.0.0.1")],
    );
    let err = stderr(&o);
    assert_ne!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("linkcheck.json") && err.contains("larger than 4 MB"),
        "{err}"
    );
    assert!(peak < PEAK_KB, "peak {peak} KB");
    let len = std::fs::metadata(&cache).unwrap().len();
    assert!(len < 1024 * 1024, "the cache is still {len} bytes");
}

/// An SVG a post shows, and a picture an SVG shows, each 512 MiB: each is
/// an `svg-image` finding on its line saying the file is too large, not a
/// 512 MB read.
#[test]
fn a_huge_svg_or_picture_in_an_svg_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let assets = d.join("website/static/img");
    sparse(&assets.join("huge.svg"), 512);
    sparse(&assets.join("huge.png"), 512);
    std::fs::write(
        assets.join("frame.svg"),
        r#"<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="100" height="100"><image href="huge.png" width="100" height="100"/></svg>"#,
    )
    .unwrap();
    std::fs::write(
        d.join("herald.yaml"),
        format!("site_url: https://openinfra.org\nassets_dir: website/static\n{SETTINGS}"),
    )
    .unwrap();
    std::fs::write(
        d.join("post.md"),
        "---\ntitle: T\nseo:\n  url: https://openinfra.org/blog/t\n---\n# A\n\n\
         ![Huge](/img/huge.svg)\n\n![Framed](/img/frame.svg)\n",
    )
    .unwrap();
    let (o, peak) = herald_peak(
        d,
        &["check", "post.md", "--format", "json"],
        &[("HERALD_UNSUBSCRIBE_SECRET", SECRET)],
    );
    assert_ne!(o.status.code(), Some(2), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let message = |line: u64| -> String {
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["code"] == "svg-image" && f["line"] == line)
            .map(|f| f["message"].as_str().unwrap().to_string())
            .unwrap_or_default()
    };
    assert!(
        message(8).contains("img/huge.svg") && message(8).contains("larger than 16 MB"),
        "{v:#}"
    );
    assert!(
        message(10).contains("huge.png") && message(10).contains("larger than 16 MB"),
        "{v:#}"
    );
    assert!(peak < PEAK_KB, "peak {peak} KB");
}

/// A 512 MiB file where a dry run's outbox keeps its marker: refused,
/// naming the file and the fix, not read.
#[test]
fn a_huge_outbox_marker_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("herald.yaml"), SETTINGS).unwrap();
    sparse(&d.join("ob/.herald-outbox"), 512);
    let post = example_post();
    let (o, peak) = herald_peak(
        d,
        &[
            "send",
            post.to_str().unwrap(),
            "--to",
            "a@example.org",
            "--dry-run",
            "--outbox",
            "ob",
        ],
        &[("HERALD_UNSUBSCRIBE_SECRET", SECRET)],
    );
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains(".herald-outbox")
            && err.contains("larger than 4 KB")
            && err.contains("--outbox"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(peak < PEAK_KB, "peak {peak} KB");
}

/// `--suppress` with a file that has no line ends: refused at the first
/// line, not read into one line until memory runs out.
#[test]
fn a_suppression_file_without_line_ends_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("herald.yaml"), SETTINGS).unwrap();
    let post = example_post();
    let start = Instant::now();
    let (o, peak) = herald_peak(
        d,
        &[
            "send",
            post.to_str().unwrap(),
            "--to",
            "a@example.org",
            "--dry-run",
            "--outbox",
            "ob",
            "--suppress",
            "/dev/zero",
        ],
        &[("HERALD_UNSUBSCRIBE_SECRET", SECRET)],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("/dev/zero") && err.contains("longer than 1 MB"),
        "{err}"
    );
    assert!(peak < PEAK_KB, "peak {peak} KB");
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
}

/// `herald suppress import` of a file that has no line ends: the same.
#[test]
fn an_import_without_line_ends_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("herald.yaml"), SETTINGS).unwrap();
    let (o, peak) = herald_peak(d, &["suppress", "import", "/dev/zero"], &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("/dev/zero") && err.contains("longer than 1 MB"),
        "{err}"
    );
    assert!(peak < PEAK_KB, "peak {peak} KB");
}

/// `smtp_ca_file: /dev/zero` and `database_ca_file: /dev/zero`: one line
/// naming the setting's file, at once.
#[test]
fn ca_files_that_never_end_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let post = example_post();
    let cases: [(&str, Vec<&str>); 2] = [
        (
            "smtp_url: smtp://127.0.0.1:1\nsmtp_ca_file: /dev/zero\n",
            vec!["send", post.to_str().unwrap(), "--to", "a@example.org"],
        ),
        (
            "database_url: postgres://herald@127.0.0.1:1/herald\ndatabase_ca_file: /dev/zero\n",
            vec!["status"],
        ),
    ];
    for (settings, args) in cases {
        std::fs::write(d.join("herald.yaml"), format!("{SETTINGS}{settings}")).unwrap();
        let start = Instant::now();
        let (o, peak) = herald_peak(
            d,
            &args,
            &[
                ("HERALD_UNSUBSCRIBE_SECRET", SECRET),
                ("HERALD_DATABASE_PASSWORD", "pw"),
            ],
        );
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{settings}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(
            err.contains("/dev/zero") && err.contains("larger than 1 MB"),
            "{settings}: {err}"
        );
        assert!(peak < PEAK_KB, "peak {peak} KB");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
    }
}
