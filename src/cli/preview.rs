//! `herald preview POST`: the email as files to open, nothing sent.

use std::path::{Path, PathBuf};

use super::output::{self, say};
use crate::compose::Issue;
use crate::config::Config;
use crate::exit;
use crate::findings::Severity;
use crate::preview;

/// Make the email from a post and save it as files you can open, without sending anything.
///
/// Writes email.html (what subscribers see), email.txt (the plain-text
/// version), email.mjml (the layout source) and index.html (desktop,
/// phone and text views side by side) into preview/<post-name>/, and
/// PNGs made from the post's SVG pictures into its assets/ folder.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The post: a Markdown file with the website's front matter.
    post: PathBuf,
    /// Folder to write the files to (default: preview/<post-name>).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print what was written as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args, config: &Config) -> anyhow::Result<i32> {
    let issue = Issue::compose(&args.post, config)?;
    let dir = args
        .out
        .unwrap_or_else(|| Path::new("preview").join(issue.post.slug()));
    let written = preview::write(&issue, config, &dir)?;
    let findings = issue.check(config);
    if args.json {
        output::json(&serde_json::json!({
            "dir": written.dir,
            "files": written.files,
            "html_bytes": written.html_bytes,
            "text_bytes": written.text_bytes,
            "upload": written.upload,
            "findings": findings,
        }))?;
    } else {
        say!(
            "Wrote the preview of \"{}\" to {}/",
            issue.content.title,
            written.dir.display()
        )?;
        for f in &written.files {
            say!("  {}", f.display())?;
        }
        say!(
            "HTML {:.1} KB, text {:.1} KB. Open {} in a browser to look at it.",
            written.html_bytes as f64 / 1024.0,
            written.text_bytes as f64 / 1024.0,
            written.dir.join("index.html").display()
        )?;
        if !written.upload.is_empty() {
            say!("Upload these pictures before sending; the email loads them from the web:")?;
            for u in &written.upload {
                say!("  {} -> {}", u.file.display(), u.url)?;
            }
        }
    }
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    let (errors, warnings) = (count(Severity::Error), count(Severity::Warning));
    if errors + warnings > 0 {
        tracing::warn!(
            "{errors} error(s), {warnings} warning(s); run `herald check {}` for details",
            args.post.display()
        );
    }
    Ok(exit::OK)
}
