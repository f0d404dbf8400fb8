//! Stage 2b: SVG pictures become PNGs, because Gmail and Outlook desktop
//! do not show SVG.
//!
//! The website's posts refer to pictures by their path on the site
//! (`/img/project-logos/zuul.svg`, made absolute by [`crate::urls`]). When
//! `assets_dir` points at a local copy of the website's `static/` folder,
//! that picture is the file `<assets_dir>/img/project-logos/zuul.svg`:
//! herald reads it, draws it with [`resvg`] at twice the width it is shown
//! at (sharp on high-density screens), and the email uses the PNG instead:
//!
//! - a PNG up to `inline_image_limit` (default 20 KB) travels inside every
//!   message: the HTML says `cid:<name>@herald` and the message becomes
//!   `multipart/related` (see [`crate::deliver::message`]);
//! - a larger one is linked from `assets_url` + its file name, for the user
//!   to upload; without `assets_url` it travels inside the message all the
//!   same (so it is never broken) and `check` warns about the size.
//!
//! Every SVG that stays an SVG is a `svg-image` warning saying why and what
//! to do. The PNGs are made once per issue; recipients' copies only reuse
//! them. File names are stable, `<svg name>-<png width>px-<hash of the SVG>.png`,
//! so rerunning `preview` gives the same names and a changed SVG a new name
//! (no stale copy in a mail program's image cache).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use resvg::usvg;
use sha2::{Digest, Sha256};
use url::Url;

use crate::compose::content::visit::{self, VisitMut};
use crate::compose::content::{COLUMN, Content, Image};
use crate::compose::post::Post;
use crate::config::ImageOptions;
use crate::findings::{Finding, Severity};
use crate::urls::Base;

mod draw;

use draw::{draw, has_text, load_fonts, options};

/// The folder, inside a preview folder, the PNGs are written to.
pub const PREVIEW_ASSETS: &str = "assets";

/// Neither side of a PNG may be larger than this: a very tall, thin SVG
/// must not make herald allocate gigabytes.
const MAX_SIDE: u32 = 8192;

/// A PNG herald made from one of the post's SVG pictures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RasterImage {
    /// The SVG's address as the post gives it (made absolute).
    pub source: String,
    /// The SVG file it was drawn from.
    pub svg_file: PathBuf,
    /// The first line of the post that shows it.
    pub line: usize,
    /// Stable: `<svg name>-<width>px-<hash>.png`.
    pub file_name: String,
    pub png: Vec<u8>,
    /// Size of the PNG in pixels: twice the displayed size.
    pub width: u32,
    pub height: u32,
    /// The width the email shows it at, in CSS pixels.
    pub displayed_width: u32,
    pub delivery: Delivery,
}

/// How a PNG reaches the reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A part of every message (`Content-ID: <cid>`); the HTML says `cid:<cid>`.
    Inline { cid: String },
    /// On the web at `url` (`assets_url` + file name), uploaded by the user.
    Hosted { url: String },
}

impl RasterImage {
    /// What the email's HTML uses as the image's `src`.
    pub fn email_src(&self) -> String {
        match &self.delivery {
            Delivery::Inline { cid } => format!("cid:{cid}"),
            Delivery::Hosted { url } => url.clone(),
        }
    }

    /// What the preview's HTML uses instead: the PNG written next to it.
    pub fn preview_src(&self) -> String {
        format!("{PREVIEW_ASSETS}/{}", self.file_name)
    }

    pub fn content_id(&self) -> Option<&str> {
        match &self.delivery {
            Delivery::Inline { cid } => Some(cid),
            Delivery::Hosted { .. } => None,
        }
    }
}

/// The content with its SVG pictures pointing at PNGs, and those PNGs.
#[derive(Debug, Clone)]
pub struct Illustrated {
    pub content: Content,
    /// In the order the content first shows them, each once.
    pub images: Vec<RasterImage>,
}

/// Turns every SVG picture of `content` that can be found in `assets_dir`
/// into a PNG, pointing the image at it (and giving it its displayed width).
/// What could not be done, or needs the user, is added to the findings of
/// the content returned.
pub fn rasterise(
    post: &Post,
    mut content: Content,
    config: &ImageOptions,
    base: &Base,
) -> Illustrated {
    let mut r = Rasteriser {
        assets_dir: config.assets_dir.clone(),
        assets_url: config.assets_url.as_ref().map(url::Url::to_string),
        limit: config.inline_image_limit,
        site: base.site.clone(),
        slug: post.slug(),
        options: None,
        fonts_loaded: false,
        missing_fonts: Arc::default(),
        outside: Arc::default(),
        too_big: Arc::default(),
        svgs: HashMap::new(),
        text_noted: HashSet::new(),
        images: Vec::new(),
        findings: Vec::new(),
    };
    visit::content_mut(&mut r, &mut content);
    content.findings.append(&mut r.findings);
    Illustrated {
        content,
        images: r.images,
    }
}

pub fn is_svg(src: &str) -> bool {
    let path = src.split(['?', '#']).next().unwrap_or(src);
    path.to_ascii_lowercase().ends_with(".svg") || src.starts_with("data:image/svg")
}

/// Why an SVG could not be turned into a PNG.
#[derive(Debug, Clone)]
enum Unavailable {
    NoAssetsDir,
    AssetsDirMissing(PathBuf),
    /// Not on the website whose `static/` folder `assets_dir` is.
    OtherSite(String),
    NotFound {
        file: PathBuf,
        dir: PathBuf,
    },
    Unreadable {
        file: PathBuf,
        why: Undrawable,
    },
}

/// Why herald cannot draw an SVG file: the end of an `svg-image`
/// finding's "herald cannot draw FILE (...)". The errors of other crates
/// are shared (`Arc`): a file's outcome is kept, however often the post
/// shows it.
#[derive(Debug, Clone, thiserror::Error)]
enum Undrawable {
    #[error("it is a link to a file outside assets_dir, which herald does not read")]
    LinkOutside,
    #[error("{0}")]
    Read(Arc<std::io::Error>),
    #[error(
        "the file is larger than {}: an SVG logo is a few KB; save a smaller one",
        crate::limits::size_words(crate::limits::MAX_IMAGE_BYTES)
    )]
    TooLarge,
    #[error("{0}")]
    Parse(Arc<usvg::Error>),
    /// Pictures the SVG shows (`<image href>`) over the cap.
    #[error(
        "it shows {}, larger than {}: make the picture smaller (a picture in an email is \
         shown a few hundred pixels wide)",
        .0.join(", "),
        crate::limits::size_words(crate::limits::MAX_IMAGE_BYTES)
    )]
    ShowsTooLarge(Vec<String>),
    /// Files the SVG names outside assets_dir (or that are not there).
    #[error(
        "it refers to {} outside assets_dir (or to no file), which herald does not read",
        .0.join(", ")
    )]
    RefersOutside(Vec<String>),
    #[error("at {width} px wide it would be {height} px tall")]
    TooTall { width: u32, height: u32 },
    #[error("a {width} x {height} picture is too large")]
    NoCanvas { width: u32, height: u32 },
    #[error("{0}")]
    Encode(Arc<png::EncodingError>),
}

#[derive(Clone)]
struct Svg {
    tree: Arc<usvg::Tree>,
    /// The first 8 hex digits of the SHA-256 of the file.
    hash: String,
    has_text: bool,
    /// Font families its text asked for that this machine does not have.
    missing_fonts: Vec<String>,
}

struct Rasteriser {
    assets_dir: Option<PathBuf>,
    assets_url: Option<String>,
    limit: usize,
    site: Url,
    slug: String,
    /// Made on first use (the image resolver needs `assets_dir`).
    options: Option<usvg::Options<'static>>,
    fonts_loaded: bool,
    /// Font families an SVG asked for that this machine does not have,
    /// filled by the font resolver while an SVG is parsed.
    missing_fonts: Arc<Mutex<BTreeSet<String>>>,
    /// Files an SVG's `<image href>` names outside assets_dir, filled by
    /// the image resolver while an SVG is parsed.
    outside: Arc<Mutex<BTreeSet<String>>>,
    /// Pictures an SVG's `<image href>` names that are over
    /// [`crate::limits::MAX_IMAGE_BYTES`], filled likewise.
    too_big: Arc<Mutex<BTreeSet<String>>>,
    /// Each SVG file read and parsed once, however often the post shows it.
    svgs: HashMap<PathBuf, Result<Svg, Undrawable>>,
    /// SVG files whose text has had its `svg-text` finding.
    text_noted: HashSet<PathBuf>,
    images: Vec<RasterImage>,
    findings: Vec<Finding>,
}

impl VisitMut for Rasteriser {
    fn image(&mut self, img: &mut Image) {
        if !is_svg(&img.src) || img.src.starts_with("data:") {
            return;
        }
        match self.convert(img) {
            Ok(i) => {
                img.src = self.images[i].email_src();
                img.width = Some(self.images[i].displayed_width);
            }
            Err(why) => self.unavailable(img, why),
        }
    }
}

impl Rasteriser {
    fn unavailable(&mut self, img: &Image, why: Unavailable) {
        let (reason, fix) = match why {
            Unavailable::NoAssetsDir => (
                "`assets_dir` is not set".to_string(),
                "Set `assets_dir` in herald.yaml to a checkout of the website's static/ folder \
                 (herald then makes a PNG of the picture), or use a PNG or JPG version of it."
                    .to_string(),
            ),
            Unavailable::AssetsDirMissing(dir) => (
                format!("the assets_dir {} does not exist", dir.display()),
                "Correct `assets_dir` in herald.yaml: it must be a checkout of the website's \
                 static/ folder. Or use a PNG or JPG version of the picture."
                    .to_string(),
            ),
            Unavailable::OtherSite(host) => (
                format!(
                    "it is on {host}, not on {}, whose static/ folder assets_dir holds",
                    self.site.host_str().unwrap_or("the site")
                ),
                "Use a PNG or JPG version of the picture (export it at twice the width it is \
                 shown at), or copy the SVG to the website's static/img/ and use its /img/ path."
                    .to_string(),
            ),
            Unavailable::NotFound { file, dir } => (
                format!(
                    "the file {} is not in assets_dir {}",
                    file.display(),
                    dir.display()
                ),
                "Update the website checkout in assets_dir (git pull), or correct the picture's \
                 path in the post, or use a PNG or JPG version of it."
                    .to_string(),
            ),
            Unavailable::Unreadable { file, why } => (
                format!("herald cannot draw {} ({why})", file.display()),
                "Open the SVG in a drawing program and save it again as plain SVG, or use a PNG \
                 or JPG version of the picture."
                    .to_string(),
            ),
        };
        self.findings.push(Finding {
            severity: Severity::Warning,
            code: "svg-image",
            line: Some(img.line),
            message: format!(
                "the image {} is an SVG, which Gmail and Outlook do not show, and herald cannot turn it into a PNG: {reason}",
                img.src
            ),
            fix,
        });
    }

    /// The SVG as a PNG: the index of it in `self.images`.
    fn convert(&mut self, img: &Image) -> Result<usize, Unavailable> {
        let (dir, relative, file) = self.locate(img)?;
        let unreadable = |why: Undrawable| Unavailable::Unreadable {
            file: relative.clone(),
            why,
        };
        let svg = self.svg(&file, &dir).map_err(unreadable)?;
        let size = svg.tree.size();
        let own_width = size.width().round().max(1.0) as u32;
        let displayed = img.width.unwrap_or(own_width).clamp(1, COLUMN);
        let width = displayed * 2;
        let height = ((width as f32) * size.height() / size.width())
            .round()
            .max(1.0) as u32;
        let stem = file_stem(&relative);
        let file_name = format!("{stem}-{width}px-{}.png", svg.hash);
        if let Some(i) = self.images.iter().position(|i| i.file_name == file_name) {
            return Ok(i);
        }
        if height > MAX_SIDE {
            return Err(unreadable(Undrawable::TooTall { width, height }));
        }
        let png = draw(&svg.tree, width, height).map_err(unreadable)?;
        let delivery = self.delivery(&file_name, png.len());
        let in_preview = format!("preview/{}/{PREVIEW_ASSETS}/{file_name}", self.slug);
        self.note_size(img, &delivery, png.len(), &in_preview);
        if svg.has_text && self.text_noted.insert(file.clone()) {
            self.findings.push(text_finding(img, &svg, &in_preview));
        }
        self.images.push(RasterImage {
            source: img.src.clone(),
            svg_file: file,
            line: img.line,
            file_name,
            png,
            width,
            height,
            displayed_width: displayed,
            delivery,
        });
        Ok(self.images.len() - 1)
    }

    /// The SVG file a picture is in `assets_dir`: the folder, the file
    /// relative to it and the file itself.
    fn locate(&self, img: &Image) -> Result<(PathBuf, PathBuf, PathBuf), Unavailable> {
        let Some(dir) = self.assets_dir.clone() else {
            return Err(Unavailable::NoAssetsDir);
        };
        if !dir.is_dir() {
            return Err(Unavailable::AssetsDirMissing(dir));
        }
        let relative = site_path(&img.src, &self.site)?;
        let file = dir.join(&relative);
        if !file.is_file() {
            return Err(Unavailable::NotFound {
                file: relative,
                dir,
            });
        }
        // `site_path` keeps `..` out; a symlink could still lead out of
        // assets_dir, and the file would be drawn into every message.
        let inside = match (file.canonicalize(), dir.canonicalize()) {
            (Ok(f), Ok(d)) => f.starts_with(d),
            _ => false,
        };
        if !inside {
            return Err(Unavailable::Unreadable {
                file: relative,
                why: Undrawable::LinkOutside,
            });
        }
        Ok((dir, relative, file))
    }

    /// Inside every message up to the limit; over it, on the web when
    /// `assets_url` says where (inside all the same when it does not).
    fn delivery(&self, file_name: &str, png_bytes: usize) -> Delivery {
        match &self.assets_url {
            Some(base) if png_bytes > self.limit => {
                let sep = if base.ends_with('/') { "" } else { "/" };
                Delivery::Hosted {
                    url: format!("{base}{sep}{file_name}"),
                }
            }
            _ => Delivery::Inline {
                cid: format!("{file_name}@herald"),
            },
        }
    }

    /// A PNG over `inline_image_limit`: to upload (`image-upload`), or
    /// making every message bigger (`large-inline-image`).
    fn note_size(&mut self, img: &Image, delivery: &Delivery, png_bytes: usize, in_preview: &str) {
        let kb = |n: usize| n.div_ceil(1024);
        match delivery {
            Delivery::Hosted { url } => self.findings.push(Finding {
                severity: Severity::Warning,
                code: "image-upload",
                line: Some(img.line),
                message: format!(
                    "the image {} becomes a {} KB PNG, over inline_image_limit ({} KB), so the email loads it from {url}; herald cannot tell whether it is there",
                    img.src,
                    kb(png_bytes),
                    kb(self.limit)
                ),
                fix: format!(
                    "Run `herald preview` and upload {in_preview} to {} before sending; until then readers see a broken image.",
                    self.assets_url.as_deref().unwrap_or_default()
                ),
            }),
            Delivery::Inline { .. } if png_bytes > self.limit => self.findings.push(Finding {
                severity: Severity::Warning,
                code: "large-inline-image",
                line: Some(img.line),
                message: format!(
                    "the image {} becomes a {} KB PNG, over inline_image_limit ({} KB); it is sent inside every message, making each {} KB bigger, because `assets_url` is not set",
                    img.src,
                    kb(png_bytes),
                    kb(self.limit),
                    kb(png_bytes * 4 / 3)
                ),
                fix: format!(
                    "Set `assets_url` in herald.yaml to a web folder you can upload to (like https://openinfra.org/img/email/), run `herald preview` and upload {in_preview} there; or raise inline_image_limit to send it inside the message knowingly."
                ),
            }),
            Delivery::Inline { .. } => {}
        }
    }

    /// Reads and parses an SVG once, however often the post shows it.
    fn svg(&mut self, file: &Path, assets_dir: &Path) -> Result<Svg, Undrawable> {
        if let Some(svg) = self.svgs.get(file) {
            return svg.clone();
        }
        let result = self.parse(file, assets_dir);
        self.svgs.insert(file.to_path_buf(), result.clone());
        result
    }

    fn parse(&mut self, file: &Path, assets_dir: &Path) -> Result<Svg, Undrawable> {
        let data = read_image(file)?;
        let hash = Sha256::digest(&data);
        let hash: String = hash[..4].iter().map(|b| format!("{b:02x}")).collect();
        let has_text = has_text(&data);
        let missing = Arc::clone(&self.missing_fonts);
        let outside = Arc::clone(&self.outside);
        let too_big = Arc::clone(&self.too_big);
        let options = self
            .options
            .get_or_insert_with(|| options(assets_dir.to_path_buf(), missing, outside, too_big));
        if has_text && !self.fonts_loaded {
            load_fonts(options.fontdb_mut());
            self.fonts_loaded = true;
        }
        options.resources_dir = file.parent().map(Path::to_path_buf);
        self.missing_fonts.lock().expect("not poisoned").clear();
        self.outside.lock().expect("not poisoned").clear();
        self.too_big.lock().expect("not poisoned").clear();
        let tree = Arc::new(
            usvg::Tree::from_data(&data, options).map_err(|e| Undrawable::Parse(Arc::new(e)))?,
        );
        let outside: Vec<String> = self
            .outside
            .lock()
            .expect("not poisoned")
            .iter()
            .cloned()
            .collect();
        let too_big: Vec<String> = self
            .too_big
            .lock()
            .expect("not poisoned")
            .iter()
            .cloned()
            .collect();
        if !too_big.is_empty() {
            return Err(Undrawable::ShowsTooLarge(too_big));
        }
        if !outside.is_empty() {
            return Err(Undrawable::RefersOutside(outside));
        }
        let missing_fonts = self
            .missing_fonts
            .lock()
            .expect("not poisoned")
            .iter()
            .cloned()
            .collect();
        Ok(Svg {
            tree,
            hash,
            has_text,
            missing_fonts,
        })
    }
}

/// An SVG file's bytes, through the cap: a huge file in assets_dir is
/// refused with its size, not read (it would be drawn into every message).
fn read_image(file: &Path) -> Result<Vec<u8>, Undrawable> {
    let read = |e| Undrawable::Read(Arc::new(e));
    let f = std::fs::File::open(file).map_err(read)?;
    crate::limits::read_bounded(f, crate::limits::MAX_IMAGE_BYTES)
        .map_err(read)?
        .ok_or(Undrawable::TooLarge)
}

/// `svg-text`: a notice that the SVG's lettering was drawn with this
/// machine's fonts, or a warning when the font it asks for is not there.
fn text_finding(img: &Image, svg: &Svg, in_preview: &str) -> Finding {
    if svg.missing_fonts.is_empty() {
        Finding {
            severity: Severity::Notice,
            code: "svg-text",
            line: Some(img.line),
            message: format!(
                "the image {} has text in it, which herald drew with the fonts on this computer",
                img.src
            ),
            fix: format!(
                "Look at {in_preview} (or the preview) to see that the lettering is right; an SVG whose text is turned into outlines looks the same everywhere."
            ),
        }
    } else {
        Finding {
            severity: Severity::Warning,
            code: "svg-text",
            line: Some(img.line),
            message: format!(
                "the image {} has text in the font {}, which this computer does not have; herald drew it with another font, so it will not look as designed",
                img.src,
                svg.missing_fonts.join(" / ")
            ),
            fix: "Install that font on this computer and run herald again, or save the SVG with its text turned into outlines (paths), or use a PNG version of the picture.".into(),
        }
    }
}

/// The file, relative to `assets_dir`, that a picture on the site is:
/// `https://openinfra.org/img/a%20b.svg` -> `img/a b.svg`. Hosts are
/// compared without a leading `www.`.
fn site_path(src: &str, site: &Url) -> Result<PathBuf, Unavailable> {
    let url = Url::parse(src).map_err(|_| Unavailable::OtherSite(src.to_string()))?;
    let bare = |h: Option<&str>| {
        h.map(|h| h.trim_start_matches("www.").to_ascii_lowercase())
            .unwrap_or_default()
    };
    if !matches!(url.scheme(), "http" | "https") || bare(url.host_str()) != bare(site.host_str()) {
        return Err(Unavailable::OtherSite(
            url.host_str().unwrap_or(src).to_string(),
        ));
    }
    let mut path = PathBuf::new();
    for segment in url.path_segments().into_iter().flatten() {
        let s = percent_decode(segment);
        if s.is_empty() {
            continue;
        }
        // The url crate already resolved `..`; a decoded one, or a
        // separator hidden in a segment, must not leave assets_dir.
        if s == "." || s == ".." || s.contains(['/', '\\', '\0']) {
            return Err(Unavailable::OtherSite(src.to_string()));
        }
        path.push(s);
    }
    Ok(path)
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// The SVG's name as the start of the PNG's: lower case, letters, digits,
/// `-` and `_` (anything else becomes `-`).
fn file_stem(relative: &Path) -> String {
    let stem = relative
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let clean: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(60)
        .collect();
    if clean.trim_matches('-').is_empty() {
        "image".into()
    } else {
        clean
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> Url {
        Url::parse("https://openinfra.org").unwrap()
    }

    #[test]
    fn site_urls_map_into_assets_dir() {
        assert_eq!(
            site_path("https://openinfra.org/img/project-logos/zuul.svg", &site()).unwrap(),
            PathBuf::from("img/project-logos/zuul.svg")
        );
        assert_eq!(
            site_path("https://www.openinfra.org/img/a%20b.svg", &site()).unwrap(),
            PathBuf::from("img/a b.svg")
        );
        assert!(matches!(
            site_path("https://example.org/img/x.svg", &site()),
            Err(Unavailable::OtherSite(h)) if h == "example.org"
        ));
        // Nothing outside assets_dir, however the path is written.
        for sneaky in [
            "https://openinfra.org/img/%2e%2e/%2e%2e/etc/passwd.svg",
            "https://openinfra.org/img/..%2f..%2fetc.svg",
            "https://openinfra.org/img/..%5c..%5cx.svg",
        ] {
            // Refused, or a path of plain names under assets_dir.
            if let Ok(p) = site_path(sneaky, &site()) {
                assert!(
                    p.components()
                        .all(|c| matches!(c, std::path::Component::Normal(_))),
                    "{sneaky} -> {p:?}"
                );
            }
        }
    }

    #[test]
    fn file_names_are_tame() {
        assert_eq!(
            file_stem(Path::new("img/KataContainers_Logo Horiz.svg")),
            "katacontainers_logo-horiz"
        );
        assert_eq!(file_stem(Path::new("img/é.svg")), "image");
    }
}
