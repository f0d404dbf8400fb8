//! The preview a person looks at before anything is sent: files
//! (`herald preview`), or served live while the post is written
//! (`herald preview --watch`, [`live`]).

use std::path::{Path, PathBuf};

use askama::Template;
use serde::Serialize;

use crate::compose::Issue;
use crate::compose::images;
use crate::config::ComposeOptions;
use crate::findings::{Finding, Severity};

pub mod live;

/// Why the preview cannot be made or written. The wording is the one
/// users have seen: the file operations' errors are part of the message
/// (not its `source`, which the command line would print a second time).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The page's template failed (a bug in herald, not the post).
    #[error(transparent)]
    Page(#[from] askama::Error),
    #[error("cannot create the folder {} ({why}). Choose another with --out.", .dir.display())]
    Folder { dir: PathBuf, why: std::io::Error },
    /// `doing` is what failed: "write", "read", "remove", "create".
    #[error("cannot {doing} {} ({why})", .path.display())]
    File {
        doing: &'static str,
        path: PathBuf,
        why: std::io::Error,
    },
}

/// What `herald preview` wrote.
#[derive(Debug, Serialize)]
pub struct Written {
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    /// The HTML subscribers get (the preview's own file differs only in
    /// where its images come from).
    pub html_bytes: usize,
    pub text_bytes: usize,
    /// PNGs the email loads from `assets_url`: upload each before sending.
    pub upload: Vec<Upload>,
    /// What `herald check` says (the page lists it too).
    pub findings: Vec<Finding>,
}

#[derive(Debug, Serialize)]
pub struct Upload {
    pub file: PathBuf,
    pub url: String,
}

/// The style of the preview page (its hash is in the live page's
/// Content-Security-Policy, so it is a constant).
pub(crate) const STYLE: &str = "body{margin:0;padding:24px;background:#e5e8ec;\
font-family:-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;color:#1f2933}\
header{margin:0 0 20px}header h1{margin:0 0 4px;font-size:20px}\
header p{margin:0;color:#5b6675;font-size:14px}\
.views{display:flex;gap:24px;align-items:flex-start;flex-wrap:wrap}\
figure{margin:0}figcaption{font-size:13px;font-weight:bold;color:#5b6675;margin:0 0 6px}\
iframe{border:1px solid #c3c9d1;background:#fff;height:1400px;display:block}\
pre.text{width:calc(74ch + 34px);height:1400px;overflow:auto;margin:0;padding:16px;\
box-sizing:border-box;background:#fff;border:1px solid #c3c9d1;font:13px/1.45 Menlo,Consolas,monospace;\
white-space:pre}\
.findings{margin:0 0 20px;padding:12px 16px;background:#fff;border:1px solid #c3c9d1;font-size:14px}\
.findings h2{margin:0;font-size:15px}.findings ul{margin:8px 0 0;padding:0 0 0 18px}\
.findings li{margin:0 0 6px}.findings .error b{color:#b3261e}.findings .warning b{color:#8a5a00}\
.fix{color:#5b6675}\
.broken{margin:0 0 20px;padding:16px;background:#fdecea;border:2px solid #b3261e;color:#5f1410}\
.broken h2{margin:0 0 8px;font-size:18px}\
.broken pre{margin:0;white-space:pre-wrap;font:15px/1.45 Menlo,Consolas,monospace}\
.broken p{margin:8px 0 0}";

/// The live page's script: reload when the server has a newer version
/// than the one shown (sent on every connect, so a reconnect after a
/// restart reloads too), keeping the scroll position, except that an error
/// is scrolled into view. (The browser's own restoration would keep the
/// email's header in place and push a new error above the window.)
pub(crate) const SCRIPT: &str = "(function(){\
history.scrollRestoration='manual';\
var v=document.body.getAttribute('data-version');\
var y=sessionStorage.getItem('herald-scroll');\
sessionStorage.removeItem('herald-scroll');\
if(document.getElementById('herald-error')){window.scrollTo(0,0);}\
else if(y!==null){window.scrollTo(0,+y);}\
var es=new EventSource('/events');\
es.onmessage=function(e){if(e.data!==v){es.close();\
sessionStorage.setItem('herald-scroll',String(window.scrollY));location.reload();}};\
})();";

/// One finding as the page lists it.
struct PageFinding {
    place: String,
    severity: &'static str,
    code: &'static str,
    message: String,
    fix: String,
}

#[derive(Template)]
#[template(path = "preview.html")]
struct PreviewPage<'a> {
    title: &'a str,
    subject: &'a str,
    preheader: &'a str,
    /// The plain-text part, escaped already ([`crate::html::escaped_as_askama`]).
    text: &'a str,
    html_kb: String,
    counts: String,
    findings: Vec<PageFinding>,
    /// What stops the post from being shown (`file:line: ...`).
    error: Option<&'a str>,
    /// An error is shown above an older render.
    stale: bool,
    rendered: bool,
    live: bool,
    version: &'a str,
    style: &'a str,
    script: &'a str,
}

/// What the preview shows of a composed issue, as plain values (the live
/// preview keeps the last one that worked).
#[derive(Debug, Clone)]
pub struct Shown {
    pub post: PathBuf,
    pub title: String,
    pub subject: String,
    pub preheader: String,
    /// The email's HTML with the preview's image addresses (`assets/...`).
    pub html: String,
    pub text: String,
    /// The size of the HTML subscribers get.
    pub html_bytes: usize,
    pub findings: Vec<Finding>,
    /// The SVG files the PNGs were drawn from (the live preview watches them).
    pub svg_files: Vec<PathBuf>,
}

impl Shown {
    pub fn new(issue: &Issue, config: &ComposeOptions) -> Shown {
        let (mut html, text) = issue.personalised_preview(&config.preview);
        // The size subscribers get, before the preview's own image addresses.
        let html_bytes = html.len();
        for img in &issue.rendered.images {
            // Both are unique to the image: its file name has the SVG's hash.
            html = html.replace(&img.email_src(), &img.preview_src());
        }
        Shown {
            post: issue.post.path.clone(),
            title: issue.content.title.clone(),
            subject: issue.preview_subject(&config.preview),
            preheader: issue.content.preheader.clone().unwrap_or_default(),
            html,
            text,
            html_bytes,
            findings: issue.check_sized(config, html_bytes),
            svg_files: issue
                .rendered
                .images
                .iter()
                .map(|i| i.svg_file.clone())
                .collect(),
        }
    }
}

/// How the page is shown: as a file, or served live at `version`.
#[derive(Debug, Clone, Copy)]
pub enum Mode<'a> {
    File,
    Live { version: &'a str },
}

/// The preview page: `shown` (if any render worked yet) under `error`
/// (if the latest did not).
pub fn page(shown: Option<&Shown>, error: Option<&str>, mode: Mode<'_>) -> Result<String, Error> {
    let (live, version) = match mode {
        Mode::File => (false, ""),
        Mode::Live { version } => (true, version),
    };
    let count = |s: Severity| {
        shown.map_or(0, |sh| {
            sh.findings.iter().filter(|f| f.severity == s).count()
        })
    };
    let counts = format!(
        "{} error(s), {} warning(s), {} notice(s)",
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Notice)
    );
    let findings = shown
        .map(|sh| {
            sh.findings
                .iter()
                .map(|f| PageFinding {
                    place: match f.line {
                        Some(l) => format!("{}:{l}", sh.post.display()),
                        None => sh.post.display().to_string(),
                    },
                    severity: f.severity.label(),
                    code: f.code,
                    message: f.message.clone(),
                    fix: f.fix.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    let title = shown.map_or("the post cannot be shown", |s| s.title.as_str());
    Ok(PreviewPage {
        title,
        subject: shown.map_or("", |s| s.subject.as_str()),
        preheader: shown.map_or("", |s| s.preheader.as_str()),
        text: &crate::html::escaped_as_askama(shown.map_or("", |s| s.text.as_str())),
        html_kb: format!("{:.1}", shown.map_or(0, |s| s.html_bytes) as f64 / 1024.0),
        counts,
        findings,
        error,
        stale: shown.is_some(),
        rendered: shown.is_some(),
        live,
        version,
        style: STYLE,
        script: SCRIPT,
    }
    .render()?)
}

/// Writes `email.html`, `email.txt`, `email.mjml` and `index.html` into
/// `dir`, and the PNGs made from SVG pictures into `dir/assets/` (for the
/// browser, and for uploading to `assets_url`). The preview's HTML shows
/// those files where the email says `cid:` or an `assets_url` address, so
/// it works in a browser before anything is uploaded.
pub fn write(issue: &Issue, config: &ComposeOptions, dir: &Path) -> Result<Written, Error> {
    std::fs::create_dir_all(dir).map_err(|why| Error::Folder {
        dir: dir.to_path_buf(),
        why,
    })?;
    let shown = Shown::new(issue, config);
    let page = page(Some(&shown), None, Mode::File)?;
    let files = [
        ("email.html", shown.html.as_str()),
        ("email.txt", shown.text.as_str()),
        ("email.mjml", issue.rendered.mjml.as_str()),
        ("index.html", page.as_str()),
    ];
    let mut written = Vec::new();
    for (name, body) in files {
        let path = dir.join(name);
        replace(&path, body.as_bytes())?;
        written.push(path);
    }
    written.extend(write_assets(issue, dir)?);
    let upload = issue
        .rendered
        .images
        .iter()
        .filter_map(|img| match &img.delivery {
            images::Delivery::Hosted { url } => Some(Upload {
                file: dir.join(images::PREVIEW_ASSETS).join(&img.file_name),
                url: url.clone(),
            }),
            images::Delivery::Inline { .. } => None,
        })
        .collect();
    Ok(Written {
        dir: dir.to_path_buf(),
        files: written,
        html_bytes: shown.html_bytes,
        text_bytes: shown.text.len(),
        upload,
        findings: shown.findings,
    })
}

/// Writes the issue's PNGs into `dir/assets/`, first removing PNGs an
/// earlier preview left there, so the folder holds exactly what this
/// issue needs (and what to upload).
fn write_assets(issue: &Issue, dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let assets = dir.join(images::PREVIEW_ASSETS);
    if assets.is_dir() {
        for entry in std::fs::read_dir(&assets).map_err(|e| file_error("read", &assets, e))? {
            let p = entry.map_err(|e| file_error("read", &assets, e))?.path();
            if p.extension().is_some_and(|x| x == "png") {
                std::fs::remove_file(&p).map_err(|e| file_error("remove", &p, e))?;
            }
        }
    }
    let mut written = Vec::new();
    for img in &issue.rendered.images {
        std::fs::create_dir_all(&assets).map_err(|e| file_error("create", &assets, e))?;
        let path = assets.join(&img.file_name);
        std::fs::write(&path, &img.png).map_err(|e| file_error("write", &path, e))?;
        written.push(path);
    }
    Ok(written)
}

/// Writes `body` to `path` as a new file: the one an earlier preview left
/// is removed first rather than cut short and written again. ext4 sends a
/// file cut short and written again to the disk as soon as it is closed
/// (so a crash leaves no empty file), and cutting it short waits for that
/// write: the next preview waited there for the last one's files, for as
/// long as the rest of the preview took (`strace -T`: 4-19 ms in `openat`).
/// A preview's files are made again from the post every time; nothing
/// needs them to be the same file. Whatever stops the removal (it is not
/// there, the folder may not be written) is left to the write to report.
fn replace(path: &Path, body: &[u8]) -> Result<(), Error> {
    let _ = std::fs::remove_file(path);
    std::fs::write(path, body).map_err(|why| file_error("write", path, why))
}

fn file_error(doing: &'static str, path: &Path, why: std::io::Error) -> Error {
    Error::File {
        doing,
        path: path.to_path_buf(),
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_post_that_never_worked_shows_only_its_error() {
        let page = page(
            None,
            Some("post.md:3: the front matter is not valid YAML"),
            Mode::Live { version: "v-1" },
        )
        .unwrap();
        assert!(page.contains("post.md:3: the front matter is not valid YAML"));
        assert!(page.contains("data-version=\"v-1\""));
        assert!(page.contains(SCRIPT));
        assert!(!page.contains("<iframe"));
        assert!(!page.contains("last version that worked"));
    }

    #[test]
    fn findings_are_listed_with_their_line() {
        let shown = Shown {
            post: PathBuf::from("posts/may.md"),
            title: "May".into(),
            subject: "May <news>".into(),
            preheader: String::new(),
            html: String::new(),
            text: "text".into(),
            html_bytes: 2048,
            findings: vec![Finding {
                severity: Severity::Warning,
                code: "missing-alt",
                line: Some(12),
                message: "an image has no alt text".into(),
                fix: "describe it".into(),
            }],
            svg_files: Vec::new(),
        };
        let file = page(Some(&shown), None, Mode::File).unwrap();
        assert!(
            file.contains("<b>posts/may.md:12</b> warning [missing-alt]"),
            "{file}"
        );
        assert!(file.contains("0 error(s), 1 warning(s), 0 notice(s)"));
        assert!(
            file.contains("May &#60;news&#62;") || file.contains("May &lt;news&gt;"),
            "{file}"
        );
        // A file opened from disk has nothing to listen to.
        assert!(!file.contains("<script"));
        let stale = page(
            Some(&shown),
            Some("post.md:1: broken"),
            Mode::Live { version: "v" },
        )
        .unwrap();
        assert!(stale.contains("last version that worked"));
        assert!(stale.contains("<iframe"));
    }
}
