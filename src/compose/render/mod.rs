//! Stage 3: the content model becomes MJML, HTML (through mrml, in-process)
//! and a plain-text twin written from the same model.
//!
//! The output still holds merge fields such as `{{ unsubscribe_url }}`:
//! it is rendered once per issue and personalised per recipient by
//! substitution (see [`crate::compose::merge`]).

mod mj_text;
mod mjml;
mod text;

pub use crate::compose::content::COLUMN;
pub use text::wrap;

use crate::config::RenderOptions;
use std::collections::HashSet;

use crate::compose::content::visit::{self, Visit};
use crate::compose::content::{Content, Image};
use crate::compose::images::RasterImage;
use crate::compose::merge::{Escape, Template};

/// The accent colour when the config sets none.
pub const DEFAULT_ACCENT: &str = "#c5283d";

#[derive(Debug, Clone)]
pub struct Rendered {
    pub subject: String,
    pub mjml: String,
    pub html: String,
    pub text: String,
    /// PNGs made from the post's SVG pictures (see [`crate::compose::images`]): the
    /// HTML refers to them as `cid:` parts of the message or by their
    /// `assets_url` address. Made once per issue.
    pub images: Vec<RasterImage>,
}

impl Rendered {
    pub fn html_template(&self) -> Template {
        Template::compile(&self.html, Escape::Html)
    }
    pub fn text_template(&self) -> Template {
        Template::compile(&self.text, Escape::None)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(
        "herald made MJML that mrml cannot read ({0}); this is a bug in herald, please report it with the post"
    )]
    Parse(String),
    #[error(
        "mrml could not render the MJML ({0}); this is a bug in herald, please report it with the post"
    )]
    Render(String),
}

/// Renders the issue. `images` are the PNGs [`crate::compose::images::rasterise`]
/// made for the content (or for the content a digest was made from): the
/// ones the content shows travel with it.
pub fn render(
    content: &Content,
    images: &[RasterImage],
    config: &RenderOptions,
) -> Result<Rendered, RenderError> {
    let accent = config.accent_color.as_deref().unwrap_or(DEFAULT_ACCENT);
    let mjml = mjml::mjml(content, config, accent);
    // The post's own control characters are refused with their line
    // (`limits::check_control`), but a character reference such as `&#1;`
    // in its HTML or Markdown decodes to one, and mrml's XML parser refuses
    // the whole document (found by the content fuzz target). They have no
    // meaning in an email: drop them.
    let mjml = if crate::limits::find_not_text(&mjml).is_some() {
        mjml.replace(crate::limits::not_text, "")
    } else {
        mjml
    };
    // Step by step, each string freed once the next is made: nested in one
    // expression, all of them lived to its end, and a preview's memory is
    // mostly pages touched for the first time (a page fault each).
    let html = {
        let minified = {
            let raw = mjml_to_html(&mjml)?;
            crate::html::minify(&raw)
        };
        crate::html::fold_lines(&crate::html::ascii(&minified))
    };
    let text = text::text(content, config);
    Ok(Rendered {
        subject: content.title.clone(),
        mjml,
        html,
        text,
        images: shown(content, images),
    })
}

/// The PNGs `content` shows (a digest shows fewer than the post it was
/// made from), so no message carries a part its HTML does not use.
fn shown(content: &Content, images: &[RasterImage]) -> Vec<RasterImage> {
    #[derive(Default)]
    struct Sources<'a>(HashSet<&'a str>);
    impl<'a> Visit<'a> for Sources<'a> {
        fn image(&mut self, img: &'a Image) {
            self.0.insert(&img.src);
        }
    }
    let mut sources = Sources::default();
    visit::content(&mut sources, content);
    images
        .iter()
        .filter(|img| sources.0.contains(img.email_src().as_str()))
        .cloned()
        .collect()
}

/// The HTML mrml makes of `mjml`, the `<mj-text>` bodies written by
/// [`mj_text`] rather than read and written again by mrml when they are in
/// the form herald writes.
pub fn mjml_to_html(mjml: &str) -> Result<String, RenderError> {
    if let Some((skeleton, bodies)) = mj_text::split(mjml)
        && let Ok(html) = mrml_to_html(&skeleton)
        && let Some(html) = mj_text::fill(&html, &bodies)
    {
        return Ok(html);
    }
    mrml_to_html(mjml)
}

/// mrml's own way, every element read: the reference for [`mjml_to_html`].
fn mrml_to_html(mjml: &str) -> Result<String, RenderError> {
    let parsed = mrml::parse(mjml).map_err(|e| RenderError::Parse(e.to_string()))?;
    let opts = mrml::prelude::render::RenderOptions {
        disable_comments: true,
        // No web fonts: nothing in the email may load from elsewhere.
        fonts: Default::default(),
        ..Default::default()
    };
    parsed
        .element
        .render(&opts)
        .map_err(|e| RenderError::Render(e.to_string()))
}
