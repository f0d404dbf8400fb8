//! Drawing an SVG: usvg's options (what an SVG may read, which fonts it
//! gets), and the PNG it becomes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use resvg::{tiny_skia, usvg};

use super::Undrawable;

/// The fonts installed on this machine (nothing is fetched), with the
/// generic families (`sans-serif`...) pointed at fonts that are there:
/// fontdb's defaults (Arial, Times New Roman) are often missing on Linux,
/// and text in a family that is not found would not be drawn at all.
pub(super) fn load_fonts(db: &mut usvg::fontdb::Database) {
    db.load_system_fonts();
    let installed: Vec<String> = db
        .faces()
        .filter_map(|f| f.families.first().map(|(name, _)| name.clone()))
        .collect();
    let pick = |wanted: &[&str]| -> Option<String> {
        wanted
            .iter()
            .find_map(|w| installed.iter().find(|i| i.eq_ignore_ascii_case(w)))
            .or(installed.first())
            .cloned()
    };
    let sans = [
        "Arial",
        "Helvetica",
        "Liberation Sans",
        "DejaVu Sans",
        "Noto Sans",
        "FreeSans",
    ];
    if let Some(f) = pick(&sans) {
        db.set_sans_serif_family(f.clone());
        db.set_cursive_family(f.clone());
        db.set_fantasy_family(f);
    }
    let serif = [
        "Times New Roman",
        "Times",
        "Liberation Serif",
        "DejaVu Serif",
        "Noto Serif",
        "FreeSerif",
    ];
    if let Some(f) = pick(&serif) {
        db.set_serif_family(f);
    }
    let mono = [
        "Courier New",
        "Courier",
        "Liberation Mono",
        "DejaVu Sans Mono",
        "Noto Sans Mono",
        "FreeMono",
    ];
    if let Some(f) = pick(&mono) {
        db.set_monospace_family(f);
    }
}

/// usvg's options: pictures inside the SVG (`<image href>`) are read from
/// files only (usvg never uses the network), and a website path such as
/// `/img/photo.png` is looked up in `assets_dir`, as the website would.
pub(super) fn options(
    assets_dir: PathBuf,
    missing_fonts: Arc<Mutex<BTreeSet<String>>>,
    outside: Arc<Mutex<BTreeSet<String>>>,
    too_big: Arc<Mutex<BTreeSet<String>>>,
) -> usvg::Options<'static> {
    // usvg's own string resolver reads the whole file, whatever its size:
    // herald reads it through the cap and hands the bytes to usvg's data
    // resolver, which tells the picture's kind from them.
    let data = usvg::ImageHrefResolver::default_data_resolver();
    // Trust boundary: an SVG names files (`../../../home/x/.ssh/id_rsa.png`,
    // `/etc/...` through a symlink) that would be embedded into every
    // message. Only files inside assets_dir are read; any other is refused
    // and noted, and the SVG is then left out with an `svg-image` finding.
    let root = assets_dir.canonicalize().unwrap_or(assets_dir.clone());
    let resolve_string: usvg::ImageHrefStringResolverFn<'static> =
        Box::new(move |href: &str, opts: &usvg::Options| {
            let inside = |p: &Path| p.canonicalize().ok().filter(|c| c.starts_with(&root));
            let candidate = if href.contains("://") {
                None
            } else if let Some(rest) = href.strip_prefix('/').filter(|r| !r.starts_with('/')) {
                Some(assets_dir.join(rest))
            } else {
                opts.resources_dir.as_ref().map(|d| d.join(href))
            };
            match candidate.as_deref().and_then(inside) {
                Some(file) => match crate::limits::read_bounded(
                    std::fs::File::open(&file).ok()?,
                    crate::limits::MAX_IMAGE_BYTES,
                ) {
                    Ok(Some(bytes)) => data("text/plain", Arc::new(bytes), opts),
                    Ok(None) => {
                        too_big
                            .lock()
                            .expect("not poisoned")
                            .insert(href.to_string());
                        None
                    }
                    Err(_) => None,
                },
                None => {
                    outside
                        .lock()
                        .expect("not poisoned")
                        .insert(href.to_string());
                    None
                }
            }
        });
    // Text in a family that is not installed is drawn in a generic one
    // (usvg falls back to serif); herald notes which, for `svg-text`.
    let select = usvg::FontResolver::default_font_selector();
    let select_font: usvg::FontSelectionFn<'static> = Box::new(move |font, db| {
        let named: Vec<&str> = font
            .families()
            .iter()
            .filter_map(|f| match f {
                usvg::FontFamily::Named(n) => Some(n.as_str()),
                _ => None,
            })
            .collect();
        let installed = |name: &str| {
            db.faces()
                .any(|f| f.families.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)))
        };
        if !named.is_empty() && !named.iter().any(|n| installed(n)) {
            missing_fonts
                .lock()
                .expect("not poisoned")
                .insert(named.join(", "));
        }
        select(font, db)
    });
    usvg::Options {
        image_href_resolver: usvg::ImageHrefResolver {
            resolve_data: usvg::ImageHrefResolver::default_data_resolver(),
            resolve_string,
        },
        font_resolver: usvg::FontResolver {
            select_font,
            select_fallback: usvg::FontResolver::default_fallback_selector(),
        },
        ..usvg::Options::default()
    }
}

/// Whether the SVG has `<text>` (or `<svg:text>`) elements, which need fonts.
pub(super) fn has_text(data: &[u8]) -> bool {
    let has = |needle: &[u8]| data.windows(needle.len()).any(|w| w == needle);
    has(b"<text") || has(b":text ") || has(b":text>")
}

/// Draws the SVG scaled to `width` x `height` pixels, on white, and
/// encodes it as PNG. Logos are drawn for a white page: on white, a dark
/// logo stays visible when a mail app in dark mode darkens the email
/// around it (Gmail's and Outlook's apps do, whatever the email's CSS says).
pub(super) fn draw(tree: &usvg::Tree, width: u32, height: u32) -> Result<Vec<u8>, Undrawable> {
    let mut pixmap =
        tiny_skia::Pixmap::new(width, height).ok_or(Undrawable::NoCanvas { width, height })?;
    pixmap.fill(tiny_skia::Color::WHITE);
    let size = tree.size();
    let transform = tiny_skia::Transform::from_scale(
        width as f32 / size.width(),
        height as f32 / size.height(),
    );
    resvg::render(tree, transform, &mut pixmap.as_mut());
    encode_png(&pixmap).map_err(|e| Undrawable::Encode(Arc::new(e)))
}

/// PNG with the best compression the `png` crate offers: a smaller file
/// means more pictures fit inside the message. Opaque pictures drop the
/// alpha channel.
fn encode_png(pixmap: &tiny_skia::Pixmap) -> Result<Vec<u8>, png::EncodingError> {
    let pixels: Vec<tiny_skia::ColorU8> = pixmap.pixels().iter().map(|p| p.demultiply()).collect();
    let opaque = pixels.iter().all(|p| p.alpha() == 255);
    let (color, data): (png::ColorType, Vec<u8>) = if opaque {
        (
            png::ColorType::Rgb,
            pixels
                .iter()
                .flat_map(|p| [p.red(), p.green(), p.blue()])
                .collect(),
        )
    } else {
        (
            png::ColorType::Rgba,
            pixels
                .iter()
                .flat_map(|p| [p.red(), p.green(), p.blue(), p.alpha()])
                .collect(),
        )
    };
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, pixmap.width(), pixmap.height());
    encoder.set_color(color);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::High);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&data)?;
    writer.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transparent_logos_are_drawn_on_white() {
        let svg = br##"<svg xmlns="http://www.w3.org/2000/svg" width="20" height="10"><rect x="10" width="10" height="10" fill="#1b2a4a"/></svg>"##;
        let tree = usvg::Tree::from_data(svg, &usvg::Options::default()).unwrap();
        let png = draw(&tree, 40, 20).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb, "no transparency left");
        assert_eq!(buf[..3], [255, 255, 255], "the empty left half is white");
        let right = (10 * 40 + 30) * 3;
        assert_eq!(
            buf[right..right + 3],
            [0x1b, 0x2a, 0x4a],
            "the logo is drawn"
        );
    }

    #[test]
    fn text_elements_are_noticed() {
        assert!(has_text(b"<svg><text x=\"1\">Hi</text></svg>"));
        assert!(has_text(b"<svg:svg><svg:text>Hi</svg:text></svg:svg>"));
        assert!(!has_text(b"<svg><path d=\"M0 0\"/><!-- context --></svg>"));
    }
}
