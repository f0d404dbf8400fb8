//! Writing the preview files a person looks at before anything is sent.

use std::path::{Path, PathBuf};

use askama::Template;
use serde::Serialize;

use crate::compose::Issue;
use crate::config::Config;
use crate::images;

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
}

#[derive(Debug, Serialize)]
pub struct Upload {
    pub file: PathBuf,
    pub url: String,
}

#[derive(Template)]
#[template(path = "preview.html")]
struct PreviewPage<'a> {
    title: &'a str,
    subject: &'a str,
    preheader: &'a str,
    text: &'a str,
    html_kb: String,
}

/// Writes `email.html`, `email.txt`, `email.mjml` and `index.html` into
/// `dir`, and the PNGs made from SVG pictures into `dir/assets/` (for the
/// browser, and for uploading to `assets_url`). The preview's HTML shows
/// those files where the email says `cid:` or an `assets_url` address, so
/// it works in a browser before anything is uploaded.
pub fn write(issue: &Issue, config: &Config, dir: &Path) -> anyhow::Result<Written> {
    std::fs::create_dir_all(dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot create the folder {} ({e}). Choose another with --out.",
            dir.display()
        )
    })?;
    let (mut html, text) = issue.personalised_preview(config);
    // The size subscribers get, before the preview's own image addresses.
    let html_bytes = html.len();
    for img in &issue.rendered.images {
        // Both are unique to the image: its file name has the SVG's hash.
        html = html.replace(&img.email_src(), &img.preview_src());
    }
    let page = PreviewPage {
        title: &issue.content.title,
        subject: &issue.preview_subject(config),
        preheader: issue.content.preheader.as_deref().unwrap_or(""),
        text: &text,
        html_kb: format!("{:.1}", html_bytes as f64 / 1024.0),
    }
    .render()?;
    let files = [
        ("email.html", html.as_str()),
        ("email.txt", text.as_str()),
        ("email.mjml", issue.rendered.mjml.as_str()),
        ("index.html", page.as_str()),
    ];
    let mut written = Vec::new();
    for (name, body) in files {
        let path = dir.join(name);
        std::fs::write(&path, body)
            .map_err(|e| anyhow::anyhow!("cannot write {} ({e})", path.display()))?;
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
        html_bytes,
        text_bytes: text.len(),
        upload,
    })
}

/// Writes the issue's PNGs into `dir/assets/`, first removing PNGs an
/// earlier preview left there, so the folder holds exactly what this
/// issue needs (and what to upload).
fn write_assets(issue: &Issue, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let assets = dir.join(images::PREVIEW_ASSETS);
    let io = |what: &str, p: &Path, e: std::io::Error| {
        anyhow::anyhow!("cannot {what} {} ({e})", p.display())
    };
    if assets.is_dir() {
        for entry in std::fs::read_dir(&assets).map_err(|e| io("read", &assets, e))? {
            let p = entry.map_err(|e| io("read", &assets, e))?.path();
            if p.extension().is_some_and(|x| x == "png") {
                std::fs::remove_file(&p).map_err(|e| io("remove", &p, e))?;
            }
        }
    }
    let mut written = Vec::new();
    for img in &issue.rendered.images {
        std::fs::create_dir_all(&assets).map_err(|e| io("create", &assets, e))?;
        let path = assets.join(&img.file_name);
        std::fs::write(&path, &img.png).map_err(|e| io("write", &path, e))?;
        written.push(path);
    }
    Ok(written)
}
