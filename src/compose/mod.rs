//! Composing an issue: the pipeline's stages in order, each a function from
//! the previous stage's value to a new one.
//!
//! `post::load` -> `content::build` -> `images::rasterise` -> `render::render`
//! -> (`--fit`: `fit::digest`, rendered again) -> `check::check`
//!
//! `preview`, `message` and `send` start from the [`Issue`] made here; no
//! stage knows about them.

pub mod check;
pub mod content;
pub mod fit;
pub mod images;
pub mod linkcheck;
pub mod merge;
pub mod post;
pub mod preview;
pub mod render;

use std::borrow::Cow;
use std::path::Path;

use crate::InputError;
use crate::config::{ComposeOptions, PreviewOptions};
use crate::findings::Finding;
use crate::urls::Base;
use content::Content;
use merge::{Escape, Template};
use post::{Kind, Post};
use render::{RenderError, Rendered};

/// Why an issue could not be composed. Each kind keeps the words of the
/// stage that found it; the kind tells the binary whether the post needs
/// fixing ([`Error::is_input`]) or herald does.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The post cannot be used as it is: its file and line say where.
    #[error(transparent)]
    Input(#[from] InputError),
    /// mrml refused the MJML herald made: a bug in herald, not the post's.
    #[error(transparent)]
    Render(#[from] RenderError),
}

impl Error {
    /// The post must change (rather than herald).
    pub fn is_input(&self) -> bool {
        matches!(self, Error::Input(_))
    }
}

/// One issue, read and rendered once; every recipient's copy comes from it.
pub struct Issue {
    pub post: Post,
    /// Where the post's relative links point, made once for every stage.
    pub base: Base,
    pub content: Content,
    pub rendered: Rendered,
}

impl Issue {
    /// Reads and renders a post.
    pub fn compose(path: &Path, config: &ComposeOptions) -> Result<Issue, Error> {
        Self::compose_post(post::load_for_build(path)?, config)
    }

    /// Parses and renders a post's text; `path` is only used in messages
    /// (for the fuzzer, `examples/fuzz.rs`, which has no file to read).
    pub fn compose_text(path: &Path, text: &str, config: &ComposeOptions) -> Result<Issue, Error> {
        Self::compose_post(post::parse_with(path, text, post::Nesting::Later)?, config)
    }

    fn compose_post(post: Post, config: &ComposeOptions) -> Result<Issue, Error> {
        let path = post.path.clone();
        let path = path.as_path();
        let base = url_base(&post, config.site_url.as_ref());
        let content = content::build(&post, &config.content, &base)?;
        // Once per issue: every recipient's message reuses the PNGs.
        let illustrated = images::rasterise(&post, content, &config.images, &base);
        let rendered = render::render(&illustrated.content, &illustrated.images, &config.render)?;
        let issue = Issue {
            post,
            base,
            content: illustrated.content,
            rendered,
        };
        if !config.fit {
            return Ok(issue);
        }
        let full = issue.personalised_preview(&config.preview).0.len();
        if full <= fit::TARGET_BYTES {
            return Ok(issue);
        }
        let Some(digest) = fit::digest(&issue.content, full) else {
            return Err(Error::Input(InputError::new(
                path,
                None,
                "--fit needs the web version of the post to link to; add its address as `url` under `seo` in the front matter",
            )));
        };
        // The digest shows fewer pictures; render keeps only those.
        let rendered = render::render(&digest, &illustrated.images, &config.render)?;
        Ok(Issue {
            content: digest,
            rendered,
            ..issue
        })
    }

    /// The HTML and text parts with the preview's stand-in values: merge
    /// fields take their defaults and the unsubscribe link points at the
    /// configured page with `?preview=1`.
    pub fn personalised_preview(&self, config: &PreviewOptions) -> (String, String) {
        let unsubscribe = self.preview_unsubscribe_url(config);
        let value = |name: &str| -> Option<Cow<'_, str>> {
            (name == "unsubscribe_url").then(|| Cow::Owned(unsubscribe.clone()))
        };
        // Filled once each: no template to keep for other recipients.
        (
            Template::fill(&self.rendered.html, Escape::Html, value),
            Template::fill(&self.rendered.text, Escape::None, value),
        )
    }

    /// The subject line with the preview's stand-in values: the configured
    /// `subject:` (else the post's title), its merge fields filled as a
    /// message fills them for a subscriber with no values of their own.
    pub fn preview_subject(&self, config: &PreviewOptions) -> String {
        let Some(subject) = &config.subject else {
            return self.rendered.subject.clone();
        };
        let unsubscribe = self.preview_unsubscribe_url(config);
        Template::compile(subject, Escape::None).render(|name: &str| match name {
            "title" => Some(Cow::Borrowed(self.content.title.as_str())),
            "unsubscribe_url" => Some(Cow::Owned(unsubscribe.clone())),
            _ => None,
        })
    }

    /// `check::check` on the issue, with the size of the HTML a subscriber gets.
    pub fn check(&self, config: &ComposeOptions) -> Vec<Finding> {
        let (html, _) = self.personalised_preview(&config.preview);
        self.check_sized(config, html.len())
    }

    /// [`Issue::check`] when the caller has the personalised preview's HTML
    /// already (the preview does): filling it in again only to count its
    /// bytes was a thirtieth of `herald preview`.
    pub fn check_sized(&self, config: &ComposeOptions, html_bytes: usize) -> Vec<Finding> {
        check::check(&self.post, &self.content, &config.check, html_bytes)
    }

    fn preview_unsubscribe_url(&self, config: &PreviewOptions) -> String {
        let base = config
            .unsubscribe_url
            .as_ref()
            .map(url::Url::to_string)
            .unwrap_or_else(|| format!("{}unsubscribe", self.base.site.as_str()));
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}preview=1")
    }
}

/// `site_url` from the config, else the site of the post's `seo.url`.
fn url_base(post: &Post, site_url: Option<&url::Url>) -> Base {
    let fm = &post.front_matter;
    Base::new(
        site_url.map(url::Url::as_str),
        fm.seo.url.as_deref(),
        fm.kind == Kind::BlogPost,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn issue(config: &Config) -> Issue {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("post.md");
        std::fs::write(
            &path,
            "---\ntitle: Spring Issue\nseo:\n  url: https://example.org/blog/spring\n---\n# News\n\nText.\n",
        )
        .unwrap();
        Issue::compose(&path, &config.compose()).unwrap()
    }

    #[test]
    fn the_preview_subject_is_the_configured_one_with_stand_in_values() {
        let mut config = Config::default();
        assert_eq!(
            issue(&config).preview_subject(&config.compose().preview),
            "Spring Issue"
        );
        config.subject = Some("{{ title }}, {{ first_name | default: \"friends\" }}!".into());
        assert_eq!(
            issue(&config).preview_subject(&config.compose().preview),
            "Spring Issue, friends!"
        );
    }

    #[test]
    fn the_url_base_made_once_gives_the_preview_its_unsubscribe_page() {
        let config = Config::default();
        let issue = issue(&config);
        assert_eq!(issue.base.site.as_str(), "https://example.org/");
        assert_eq!(
            issue.content.web_url.as_deref(),
            Some("https://example.org/blog/spring")
        );
        assert_eq!(
            issue.preview_unsubscribe_url(&config.compose().preview),
            "https://example.org/unsubscribe?preview=1"
        );
    }
}
