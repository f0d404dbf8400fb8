//! SVG pictures become PNGs (Gmail and Outlook do not show SVG): drawn from
//! a local copy of the website's static/ folder (`assets_dir`), embedded in
//! the message as `multipart/related` parts or linked from `assets_url`,
//! and every SVG herald cannot convert named by `check`.

use std::path::{Path, PathBuf};

use crate::util::*;

const SECRET: &str = "test-unsubscribe-secret-images";

/// A red-and-blue logo 400 x 100, with width and height.
const RED_LOGO: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" width="400" height="100">
  <rect width="400" height="100" fill="#ff0000"/>
  <rect x="300" y="0" width="100" height="100" fill="#0000ff"/>
</svg>"##;

/// Only a viewBox (300 x 150): its own width is 300.
const VIEWBOX_LOGO: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 300 150">
  <rect width="300" height="150" fill="#00aa00"/>
  <circle cx="150" cy="75" r="50" fill="#ffffff"/>
</svg>"##;

/// Wider than the email's column (2000 x 500).
const WIDE_BANNER: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" width="2000" height="500" viewBox="0 0 2000 500">
  <rect width="2000" height="500" fill="#1b2a4a"/>
</svg>"##;

/// Thousands of overlapping shapes in random colours: far over 20 KB as a PNG.
fn noisy_svg() -> String {
    let mut seed: u64 = 42;
    let mut next = |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    let mut s =
        String::from(r#"<svg xmlns="http://www.w3.org/2000/svg" width="500" height="300">"#);
    for _ in 0..3000 {
        s.push_str(&format!(
            r##"<circle cx="{}" cy="{}" r="{}" fill="#{:06x}" fill-opacity="0.{}"/>"##,
            next(500),
            next(300),
            1 + next(12),
            next(0xffffff),
            1 + next(9)
        ));
    }
    s.push_str("</svg>");
    s
}

/// A folder with herald.yaml, the website's `static/` (assets_dir, given
/// relative to herald.yaml) and a post; herald runs from `work/`, another
/// folder, so a relative assets_dir can only work if it is taken from the
/// config file's folder.
struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    work: PathBuf,
    config: PathBuf,
    post: PathBuf,
}

impl Setup {
    fn new(post_body: &str, settings: &str) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("news");
        let work = tmp.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        for (path, svg) in [
            ("img/logos/red.svg", RED_LOGO.to_string()),
            ("img/logos/viewbox.svg", VIEWBOX_LOGO.to_string()),
            ("img/wide.svg", WIDE_BANNER.to_string()),
            ("img/noisy.svg", noisy_svg()),
            ("img/broken.svg", "<svg this is not XML".to_string()),
        ] {
            let p = root.join("website/static").join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, svg).unwrap();
        }
        let config = root.join("herald.yaml");
        std::fs::write(
            &config,
            format!(
                "site_url: https://openinfra.org\n\
                 from: \"OpenInfra <news@example.org>\"\n\
                 unsubscribe_url: https://openinfra.org/unsubscribe\n\
                 postal_address: 1 Example Street, Austin, TX\n\
                 {settings}"
            ),
        )
        .unwrap();
        let post = root.join("post.md");
        std::fs::write(
            &post,
            format!(
                "---\ntitle: Logos and banners\ndate: 2025-05-28T10:00:00Z\nseo:\n  description: A test issue\n  url: https://openinfra.org/blog/logos-and-banners\n---\n{post_body}"
            ),
        )
        .unwrap();
        Setup {
            _tmp: tmp,
            root,
            work,
            config,
            post,
        }
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--config", self.config.to_str().unwrap()]);
        let mut all_env = vec![("HERALD_UNSUBSCRIBE_SECRET", SECRET)];
        all_env.extend_from_slice(env);
        herald_env(&self.work, &all, &all_env)
    }

    fn preview(&self) -> PathBuf {
        let out = self.work.join("preview");
        let o = self.run(
            &[
                "preview",
                self.post.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
            &[],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        out
    }

    fn check(&self) -> (Option<i32>, Vec<serde_json::Value>) {
        let o = self.run(
            &["check", self.post.to_str().unwrap(), "--format", "json"],
            &[],
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&o), stderr(&o)));
        (o.status.code(), v["findings"].as_array().unwrap().clone())
    }

    /// A test send to one address as a dry run; the one .eml written.
    fn dry_run(&self, env: &[(&str, &str)]) -> PathBuf {
        self.dry_run_output(env).0
    }

    fn dry_run_output(&self, env: &[(&str, &str)]) -> (PathBuf, std::process::Output) {
        let outbox = self.work.join("outbox");
        let o = self.run(
            &[
                "send",
                self.post.to_str().unwrap(),
                "--dry-run",
                "--to",
                "me@example.org",
                "--outbox",
                outbox.to_str().unwrap(),
            ],
            env,
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let files = eml_files(&outbox);
        assert_eq!(files.len(), 1);
        (files[0].clone(), o)
    }
}

const LOGOS: &str = "# Our projects\n\n\
<div style=\"max-width: 300px;\"><a href=\"https://example.org\"><img src=\"/img/logos/red.svg\" width=\"200\" alt=\"Red logo\"/></a></div>\n\n\
Some text between the logos.\n\n\
![Green logo](/img/logos/viewbox.svg)\n\n\
# Banner\n\n\
![Banner](https://openinfra.org/img/wide.svg)\n";

/// (width, height, RGBA of the pixel at the centre of the left quarter).
fn decode_png(bytes: &[u8]) -> (u32, u32, [u8; 4]) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).expect("PNG pixels");
    let channels = info.color_type.samples();
    let (x, y) = (info.width / 4, info.height / 2);
    let i = (y as usize * info.width as usize + x as usize) * channels;
    let px = match channels {
        3 => [buf[i], buf[i + 1], buf[i + 2], 255],
        4 => [buf[i], buf[i + 1], buf[i + 2], buf[i + 3]],
        n => panic!("{n} channels"),
    };
    (info.width, info.height, px)
}

/// The `src` of every `<img>` in an HTML document.
fn img_srcs(html: &str) -> Vec<String> {
    html.split("<img")
        .skip(1)
        .filter_map(|tag| {
            let tag = &tag[..tag.find('>')?];
            let start = tag.find("src=\"")? + 5;
            Some(tag[start..start + tag[start..].find('"')?].to_string())
        })
        .collect()
}

fn codes(findings: &[serde_json::Value]) -> Vec<String> {
    findings
        .iter()
        .map(|f| f["code"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn svg_logos_become_pngs_at_twice_their_displayed_width() {
    let s = Setup::new(LOGOS, "assets_dir: website/static\n");
    let out = s.preview();
    let html = std::fs::read_to_string(out.join("email.html")).unwrap();
    let srcs = img_srcs(&html);
    let pngs: Vec<&String> = srcs.iter().filter(|s| s.ends_with(".png")).collect();
    assert_eq!(pngs.len(), 3, "{srcs:?}");
    assert!(!html.contains(".svg"), "no SVG left in the email");
    // (width in the post or the SVG's own, PNG size, colour on the left)
    let expected = [
        ("red", 400, 100, [255, 0, 0, 255]),
        ("viewbox", 600, 300, [0, 170, 0, 255]),
        ("wide", 1088, 272, [0x1b, 0x2a, 0x4a, 255]),
    ];
    for (name, w, h, colour) in expected {
        let src = pngs
            .iter()
            .find(|s| s.contains(&format!("/{name}-")))
            .unwrap_or_else(|| panic!("no PNG for {name}: {srcs:?}"));
        assert!(
            src.starts_with("assets/"),
            "preview shows the local file: {src}"
        );
        let bytes = std::fs::read(out.join(src.as_str())).expect("the PNG is written");
        assert_eq!(decode_png(&bytes), (w, h, colour), "{name}");
        // Shown at half the PNG's width, so it is sharp on phones.
        assert!(
            html.contains(&format!("width=\"{}\"", w / 2)),
            "{name} shown {} px wide",
            w / 2
        );
    }
    let (code, findings) = s.check();
    assert_eq!(code, Some(0));
    assert!(
        !codes(&findings).iter().any(|c| c == "svg-image"),
        "{findings:?}"
    );
    let text = std::fs::read_to_string(out.join("email.txt")).unwrap();
    assert!(!text.contains("cid:") && !text.contains(".png"), "{text}");
    assert!(text.contains("[Image: Red logo]"), "{text}");
}

#[test]
fn message_carries_the_pngs_as_related_parts_that_the_html_refers_to() {
    let s = Setup::new(LOGOS, "assets_dir: website/static\n");
    let eml = s.dry_run(&[]);
    let raw = std::fs::read_to_string(&eml).unwrap();
    assert!(
        raw.contains("Content-Type: multipart/related;"),
        "{raw:.2000}"
    );
    let Some(python) = python_with("email") else {
        return;
    };
    let m = &python_json(&python, "check_eml.py", &[eml.as_path()])[0];
    assert_eq!(m["problems"], serde_json::json!([]), "{m}");
    assert_eq!(
        m["structure"],
        serde_json::json!(["text/plain", "multipart/related"])
    );
    let related = m["related"].as_array().unwrap();
    assert_eq!(related.len(), 3, "{related:?}");
    let html = m["html"].as_str().unwrap();
    let cids: Vec<String> = img_srcs(html)
        .into_iter()
        .filter_map(|s| s.strip_prefix("cid:").map(str::to_string))
        .collect();
    assert_eq!(cids.len(), 3, "{html}");
    // The preview wrote the same PNGs, byte for byte.
    let out = s.preview();
    use base64::Engine;
    for part in related {
        assert_eq!(part["content_type"], "image/png");
        assert_eq!(part["disposition"], "inline");
        assert_eq!(part["transfer_encoding"], "base64");
        let id = part["content_id"].as_str().unwrap();
        assert!(cids.iter().any(|c| c == id), "{id} not shown by the HTML");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(part["data"].as_str().unwrap())
            .unwrap();
        let file = part["filename"].as_str().unwrap();
        assert!(file.ends_with(".png"), "{file}");
        assert_eq!(
            std::fs::read(out.join("assets").join(file)).unwrap(),
            bytes,
            "{file}"
        );
        let (w, _, _) = decode_png(&bytes);
        assert!(file.contains(&format!("-{w}px-")), "{file} is {w} px");
    }
    for id in &cids {
        assert!(
            related.iter().any(|p| p["content_id"] == id.as_str()),
            "cid:{id} has no part"
        );
    }
    let text = m["text"].as_str().unwrap();
    assert!(!text.contains("cid:"), "{text}");
}

#[test]
fn dkim_verifies_on_a_message_with_inline_images() {
    let Some(python) = python_with("dkim") else {
        return;
    };
    let s = Setup::new(LOGOS, "assets_dir: website/static\n");
    let Some((key, txt)) = crate::messages::dkim_key(&s.root, "rsa") else {
        return;
    };
    let eml = s.dry_run(&[
        ("HERALD_DKIM_DOMAIN", "example.org"),
        ("HERALD_DKIM_SELECTOR", "herald"),
        ("HERALD_DKIM_KEY_FILE", key.to_str().unwrap()),
    ]);
    let raw = std::fs::read_to_string(&eml).unwrap();
    assert!(
        raw.contains("Content-ID: <"),
        "the message has inline images"
    );
    let r = &python_json(&python, "verify_dkim.py", &[txt.as_path(), eml.as_path()])[0];
    assert_eq!(r["valid"], true, "{r}");
    // The body hash covers the images: a changed image does not verify.
    let last_b64_line = raw
        .lines()
        .rev()
        .find(|l| l.len() == 76 && !l.contains(' '))
        .expect("a base64 line");
    let mut flipped = last_b64_line.to_string();
    let c = if flipped.starts_with('A') { "B" } else { "A" };
    flipped.replace_range(0..1, c);
    let tampered = s.work.join("tampered.eml");
    std::fs::write(&tampered, raw.replacen(last_b64_line, &flipped, 1)).unwrap();
    let r = &python_json(
        &python,
        "verify_dkim.py",
        &[txt.as_path(), tampered.as_path()],
    )[0];
    assert_eq!(r["valid"], false, "{r}");
}

#[test]
fn a_png_over_the_limit_is_linked_from_assets_url_for_uploading() {
    let s = Setup::new(
        "# Art\n\n![Noise](/img/noisy.svg)\n\n![Green logo](/img/logos/viewbox.svg)\n",
        "assets_dir: website/static\nassets_url: https://openinfra.org/img/email/\n",
    );
    let (code, findings) = s.check();
    assert_eq!(code, Some(0), "a warning, not an error: {findings:?}");
    let upload: Vec<&serde_json::Value> = findings
        .iter()
        .filter(|f| f["code"] == "image-upload")
        .collect();
    assert_eq!(upload.len(), 1, "{findings:?}");
    assert_eq!(upload[0]["severity"], "warning");
    assert_eq!(upload[0]["line"], 10);
    let message = upload[0]["message"].as_str().unwrap();
    assert!(
        message.contains("https://openinfra.org/img/noisy.svg"),
        "{message}"
    );
    let fix = upload[0]["fix"].as_str().unwrap();
    assert!(
        fix.contains("upload") && fix.contains("assets/noisy-1000px-"),
        "{fix}"
    );

    // The preview writes the file to upload and says where it goes.
    let out = s.work.join("preview");
    let o = s.run(
        &[
            "preview",
            s.post.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let said = stdout(&o);
    let name = std::fs::read_dir(out.join("assets"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("noisy-"))
        .expect("noisy PNG in assets/");
    let url = format!("https://openinfra.org/img/email/{name}");
    assert!(said.contains("Upload") && said.contains(&url), "{said}");
    let bytes = std::fs::read(out.join("assets").join(&name)).unwrap();
    assert!(bytes.len() > 20 * 1024, "{} bytes", bytes.len());
    assert_eq!(decode_png(&bytes).0, 1000);

    // The message links it; only the small logo travels inside. Sending
    // says again what to upload, for whoever skipped check.
    let (eml, o) = s.dry_run_output(&[]);
    let err = stderr(&o);
    assert!(
        err.contains("warning") && err.contains(&url) && err.contains("upload"),
        "{err}"
    );
    let Some(python) = python_with("email") else {
        return;
    };
    let m = &python_json(&python, "check_eml.py", &[eml.as_path()])[0];
    assert_eq!(m["problems"], serde_json::json!([]), "{m}");
    let srcs = img_srcs(m["html"].as_str().unwrap());
    assert!(srcs.contains(&url), "{srcs:?}");
    let related = m["related"].as_array().unwrap();
    assert_eq!(related.len(), 1);
    assert!(
        related[0]["filename"]
            .as_str()
            .unwrap()
            .starts_with("viewbox-")
    );
}

#[test]
fn a_png_over_the_limit_without_assets_url_is_embedded_with_a_warning() {
    let s = Setup::new(
        "# Logo\n\n![Green logo](/img/logos/viewbox.svg)\n\n![Noise](/img/noisy.svg)\n",
        "assets_dir: website/static\ninline_image_limit: 1KB\n",
    );
    let (code, findings) = s.check();
    assert_eq!(code, Some(0));
    let large: Vec<&serde_json::Value> = findings
        .iter()
        .filter(|f| f["code"] == "large-inline-image")
        .collect();
    assert_eq!(large.len(), 2, "{findings:?}");
    let message = large[0]["message"].as_str().unwrap();
    assert!(
        message.contains("/img/logos/viewbox.svg") && message.contains("inline_image_limit (1 KB)"),
        "{message}"
    );
    assert!(large[0]["fix"].as_str().unwrap().contains("assets_url"));
    // Never a broken image: both travel inside the message.
    let eml = s.dry_run(&[]);
    let raw = std::fs::read_to_string(&eml).unwrap();
    assert_eq!(raw.matches("Content-Type: image/png").count(), 2);
    // Gmail clips on the size of the HTML part alone: a message made big
    // by its pictures is no gmail-clip finding.
    assert!(raw.len() > 200 * 1024, "{} bytes", raw.len());
    assert!(
        !findings.iter().any(|f| f["code"] == "gmail-clip"),
        "{findings:?}"
    );
}

#[test]
fn svgs_herald_cannot_convert_are_named_with_their_line_and_what_to_do() {
    let body = "# Logos\n\n\
        ![Red](/img/logos/red.svg)\n\n\
        ![Gone](/img/missing.svg)\n\n\
        ![Broken](/img/broken.svg)\n\n\
        ![Elsewhere](https://example.com/logo.svg)\n";
    // No assets_dir at all.
    let s = Setup::new(body, "");
    let (code, findings) = s.check();
    assert_eq!(code, Some(0), "warnings only");
    let svg: Vec<&serde_json::Value> = findings
        .iter()
        .filter(|f| f["code"] == "svg-image")
        .collect();
    assert_eq!(svg.len(), 4, "{findings:?}");
    let first = svg.iter().find(|f| f["line"] == 10).unwrap();
    assert_eq!(first["severity"], "warning");
    assert!(
        first["message"]
            .as_str()
            .unwrap()
            .contains("https://openinfra.org/img/logos/red.svg"),
        "{first}"
    );
    assert!(
        first["fix"].as_str().unwrap().contains(
            "Set `assets_dir` in herald.yaml to a checkout of the website's static/ folder"
        ),
        "{first}"
    );

    // With assets_dir: each SVG that is not there says why.
    let s = Setup::new(body, "assets_dir: website/static\n");
    let (_, findings) = s.check();
    let message = |line: u64| -> String {
        findings
            .iter()
            .find(|f| f["code"] == "svg-image" && f["line"] == line)
            .map(|f| f["message"].as_str().unwrap().to_string())
            .unwrap_or_default()
    };
    assert_eq!(message(10), "", "red.svg is converted: {findings:?}");
    let assets = s.root.join("website/static");
    let missing = message(12);
    assert!(
        missing.contains("img/missing.svg")
            && missing.contains(&format!("is not in assets_dir {}", assets.display())),
        "{missing}"
    );
    assert!(
        message(14).contains("cannot draw img/broken.svg"),
        "{findings:?}"
    );
    assert!(message(16).contains("example.com"), "{findings:?}");
    // Sending says so too, for whoever skipped check.
    let (_, o) = s.dry_run_output(&[]);
    let err = stderr(&o);
    assert!(
        err.contains("post.md:12: the image https://openinfra.org/img/missing.svg is an SVG"),
        "{err}"
    );
    // Those stay SVG addresses in the email (never a cid: without a part).
    let out = s.preview();
    let html = std::fs::read_to_string(out.join("email.html")).unwrap();
    let srcs = img_srcs(&html);
    assert!(srcs.contains(&"https://openinfra.org/img/missing.svg".to_string()));
    assert_eq!(srcs.iter().filter(|s| s.starts_with("assets/")).count(), 1);

    // An assets_dir that does not exist is named too.
    let s = Setup::new(body, "assets_dir: no/such/folder\n");
    let (_, findings) = s.check();
    let f = findings
        .iter()
        .find(|f| f["code"] == "svg-image" && f["line"] == 10)
        .unwrap();
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .contains("no/such/folder does not exist"),
        "{f}"
    );
}

#[test]
fn assets_dir_from_the_environment_is_relative_to_the_current_folder() {
    let s = Setup::new("![Red](/img/logos/red.svg)\n", "");
    std::fs::create_dir_all(s.work.join("site")).unwrap();
    copy_dir(&s.root.join("website/static"), &s.work.join("site/static"));
    let o = s.run(
        &["check", s.post.to_str().unwrap(), "--format", "json"],
        &[("HERALD_ASSETS_DIR", "site/static")],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        !v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["code"] == "svg-image"),
        "{v}"
    );
}

#[test]
fn lettering_in_a_font_this_machine_lacks_is_a_warning() {
    let s = Setup::new(
        "# Logo\n\n![Lettered](/img/lettered.svg)\n",
        "assets_dir: website/static\n",
    );
    std::fs::write(
        s.root.join("website/static/img/lettered.svg"),
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="300" height="100"><rect width="300" height="100" fill="#ff0000"/><text x="10" y="70" font-size="60" font-family="No Such Font Herald" fill="#ffffff">Hello</text></svg>"##,
    )
    .unwrap();
    let (code, findings) = s.check();
    assert_eq!(code, Some(0));
    let text: Vec<&serde_json::Value> = findings
        .iter()
        .filter(|f| f["code"] == "svg-text")
        .collect();
    assert_eq!(text.len(), 1, "{findings:?}");
    assert_eq!(text[0]["severity"], "warning");
    assert!(
        text[0]["message"]
            .as_str()
            .unwrap()
            .contains("No Such Font Herald"),
        "{}",
        text[0]
    );
    // Drawn all the same, in a font that is there: white letters on red.
    let out = s.preview();
    let png = std::fs::read_dir(out.join("assets"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let white = buf
        .chunks(channels)
        .filter(|p| p[0] > 240 && p[1] > 240 && p[2] > 240)
        .count();
    assert!(white > 500, "{white} white pixels: the text was not drawn");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn preview_file_names_are_stable_and_follow_the_svg() {
    let s = Setup::new(LOGOS, "assets_dir: website/static\n");
    let names = |out: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(out.join("assets"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let first = names(&s.preview());
    assert_eq!(first.len(), 3);
    assert_eq!(names(&s.preview()), first, "a rerun gives the same names");
    // A changed logo gets a new name (no stale copy in image caches), and
    // the old PNG is gone from assets/.
    let red = s.root.join("website/static/img/logos/red.svg");
    std::fs::write(&red, RED_LOGO.replace("#ff0000", "#ff8800")).unwrap();
    let second = names(&s.preview());
    assert_eq!(second.len(), 3);
    let old_red = first.iter().find(|n| n.starts_with("red-")).unwrap();
    let new_red = second.iter().find(|n| n.starts_with("red-")).unwrap();
    assert_ne!(old_red, new_red);
    assert!(new_red.starts_with("red-400px-"), "{new_red}");
}

/// The 2023 annual report's six project logos, with an assets_dir of our
/// own SVGs at the paths the report uses.
#[test]
fn annual_report_logos_all_become_pngs_with_assets_dir() {
    let Some(files) = corpus_files() else { return };
    let report = files
        .iter()
        .find(|p| p.ends_with("annual-reports/2023.md"))
        .expect("2023 report in corpus");
    let source = std::fs::read_to_string(report).unwrap();
    let mut logos: Vec<String> = source
        .split("src=\"/img/")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|p| p.ends_with(".svg"))
        .map(str::to_string)
        .collect();
    logos.sort();
    logos.dedup();
    assert_eq!(logos.len(), 6, "{logos:?}");
    let tmp = tempfile::tempdir().unwrap();
    for (i, logo) in logos.iter().enumerate() {
        let p = tmp.path().join("static/img").join(logo);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        // A made-up logo: a coloured bar with a circle, 240 x 80.
        std::fs::write(
            p,
            format!(
                r##"<svg xmlns="http://www.w3.org/2000/svg" width="240" height="80"><rect width="240" height="80" fill="#{:02x}4080"/><circle cx="40" cy="40" r="30" fill="#ffffff"/></svg>"##,
                i * 40
            ),
        )
        .unwrap();
    }
    let config = tmp.path().join("herald.yaml");
    std::fs::write(&config, "assets_dir: static\n").unwrap();
    let out = tmp.path().join("preview");
    let o = herald(
        tmp.path(),
        &[
            "preview",
            report.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let html = std::fs::read_to_string(out.join("email.html")).unwrap();
    for logo in &logos {
        let stem = Path::new(logo)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .to_ascii_lowercase();
        let src = img_srcs(&html)
            .into_iter()
            .find(|s| s.starts_with(&format!("assets/{stem}-")))
            .unwrap_or_else(|| panic!("no PNG for {logo}"));
        // The logo blocks are at most 300 px wide: PNGs of 600 px.
        let (w, h, _) = decode_png(&std::fs::read(out.join(&src)).unwrap());
        assert_eq!((w, h), (600, 200), "{src}");
    }
    assert!(!html.contains(".svg"), "an SVG is left in the email");
    let problems = problems_in_preview(&out, &expected(report));
    assert!(problems.is_empty(), "{problems:?}");
    let o = herald(
        tmp.path(),
        &[
            "check",
            report.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let findings = v["findings"].as_array().unwrap();
    assert!(
        !findings.iter().any(|f| f["code"] == "svg-image"),
        "{findings:?}"
    );
    // Six small logos travel inside the message: nothing to upload.
    assert!(
        !findings
            .iter()
            .any(|f| f["code"] == "image-upload" || f["code"] == "large-inline-image"),
        "{findings:?}"
    );
}

/// Trust boundary (issue 10): an SVG's `<image href>` or a symlinked SVG
/// must not bring a file from outside assets_dir into the email.
#[test]
fn svgs_cannot_reach_files_outside_assets_dir() {
    let body = "# Logos\n\n![Escape](/img/escape.svg)\n\n![Link](/img/link.svg)\n\n![Inside](/img/inside.svg)\n";
    let s = Setup::new(body, "assets_dir: website/static\n");
    let stat = s.root.join("website/static");
    // A PNG outside assets_dir that an SVG names three ways.
    let png = tiny_png();
    std::fs::write(s.root.join("secret.png"), &png).unwrap();
    std::fs::write(stat.join("img/ok.png"), &png).unwrap();
    let svg = |href: &str| {
        format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="100" height="100"><image href="{href}" width="100" height="100"/></svg>"#
        )
    };
    std::fs::write(stat.join("img/escape.svg"), svg("../../secret.png")).unwrap();
    std::fs::write(stat.join("img/inside.svg"), svg("ok.png")).unwrap();
    std::fs::write(s.root.join("outside.svg"), RED_LOGO).unwrap();
    std::os::unix::fs::symlink(s.root.join("outside.svg"), stat.join("img/link.svg")).unwrap();
    let (_, findings) = s.check();
    let svg_images: Vec<String> = findings
        .iter()
        .filter(|f| f["code"] == "svg-image")
        .map(|f| f["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(svg_images.len(), 2, "{findings:#?}");
    assert!(
        svg_images
            .iter()
            .any(|m| m.contains("escape.svg") && m.contains("../../secret.png")),
        "{svg_images:#?}"
    );
    assert!(
        svg_images
            .iter()
            .any(|m| m.contains("link.svg") && m.contains("outside assets_dir")),
        "{svg_images:#?}"
    );
}

/// A 1 x 1 PNG.
fn tiny_png() -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = png::Encoder::new(&mut out, 1, 1);
    e.set_color(png::ColorType::Rgba);
    e.set_depth(png::BitDepth::Eight);
    e.write_header()
        .unwrap()
        .write_image_data(&[255, 0, 0, 255])
        .unwrap();
    out
}
