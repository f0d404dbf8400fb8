//! Composing an issue (post -> content -> rendered) and writing the preview
//! files a person looks at before anything is sent.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use askama::Template;
use serde::Serialize;

use crate::check;
use crate::config::Config;
use crate::content::{self, Content};
use crate::findings::Finding;
use crate::fit;
use crate::post::{self, Post};
use crate::render::{self, Rendered};
use crate::{images, urls};

/// One issue, read and rendered once; every recipient's copy comes from it.
pub struct Issue {
    pub post: Post,
    pub content: Content,
    pub rendered: Rendered,
}

impl Issue {
    /// Reads and renders a post.
    pub fn compose(path: &Path, config: &Config) -> anyhow::Result<Issue> {
        let post = post::load(path)?;
        let mut content = content::build(&post, config);
        // Once per issue: every recipient's message reuses the PNGs.
        let images = images::rasterise(&post, &mut content, config);
        let mut rendered = render::render(&content, config)?;
        rendered.images = images;
        let issue = Issue {
            post,
            content,
            rendered,
        };
        if !config.fit.unwrap_or(false) {
            return Ok(issue);
        }
        let full = issue.personalised_preview(config).0.len();
        if full <= fit::TARGET_BYTES {
            return Ok(issue);
        }
        let Some(digest) = fit::digest(&issue.content, full) else {
            anyhow::bail!(crate::InputError::new(
                path,
                None,
                "--fit needs the web version of the post to link to; add its address as `url` under `seo` in the front matter",
            ));
        };
        let mut rendered = render::render(&digest, config)?;
        // Only the pictures the digest still shows travel with it.
        rendered.images = issue
            .rendered
            .images
            .iter()
            .filter(|img| match &img.delivery {
                images::Delivery::Inline { cid } => rendered.html.contains(&format!("cid:{cid}")),
                images::Delivery::Hosted { url } => rendered.html.contains(url.as_str()),
            })
            .cloned()
            .collect();
        Ok(Issue {
            content: digest,
            rendered,
            ..issue
        })
    }

    /// The HTML and text parts with the preview's stand-in values: merge
    /// fields take their defaults and the unsubscribe link points at the
    /// configured page with `?preview=1`.
    pub fn personalised_preview(&self, config: &Config) -> (String, String) {
        let unsubscribe = preview_unsubscribe_url(config, &self.content);
        let value = |name: &str| -> Option<Cow<'_, str>> {
            (name == "unsubscribe_url").then(|| Cow::Owned(unsubscribe.clone()))
        };
        (
            self.rendered.html_template().render(value),
            self.rendered.text_template().render(value),
        )
    }

    pub fn check(&self, config: &Config) -> Vec<Finding> {
        let (html, _) = self.personalised_preview(config);
        check::check(
            &self.post,
            &self.content,
            &self.rendered,
            config,
            html.len(),
        )
    }
}

fn preview_unsubscribe_url(config: &Config, content: &Content) -> String {
    let base = config.unsubscribe_url.clone().unwrap_or_else(|| {
        let site = urls::Base::new(
            config.site_url.as_deref(),
            content.web_url.as_deref(),
            false,
        )
        .site;
        format!("{}unsubscribe", site.as_str())
    });
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}preview=1")
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
        subject: &issue.rendered.subject,
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
