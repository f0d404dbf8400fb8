//! What a person sees: the email rendered in headless Chromium (Debian's
//! `chromium`) at phone and desktop widths. Screenshots are saved under
//! `target/screenshots/` for people to look at.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

/// Measures the page from inside it, after layout, and writes the result
/// into the DOM for `--dump-dom` to print.
const MEASURE: &str = r#"<script>
(function () {
  var d = document.documentElement;
  function box(el) { var b = el.getBoundingClientRect(); return { w: b.width, h: b.height, top: b.top + window.scrollY, left: b.left }; }
  function shown(el) { var b = el.getBoundingClientRect(); var s = getComputedStyle(el); return b.width > 0 && b.height > 0 && s.visibility !== 'hidden' && s.display !== 'none'; }
  var r = {
    innerWidth: window.innerWidth,
    scrollWidth: Math.max(d.scrollWidth, document.body.scrollWidth),
    headings: Array.prototype.map.call(document.querySelectorAll('h1, h2'), function (h) { return { text: h.textContent.trim().replace(/\s+/g, ' '), shown: shown(h), box: box(h) }; }),
    buttons: Array.prototype.filter.call(document.querySelectorAll('a'), function (a) { return a.style.display === 'inline-block' && a.style.background; }).map(function (a) { return { text: a.textContent.trim(), box: box(a) }; }),
    text: document.body.innerText,
    lowContrast: lowContrast(),
    brokenWords: brokenWords(),
    altText: altText()
  };
  // Text a reader cannot read: every element with words of its own, against
  // the first background behind it, under WCAG's 4.5:1 (3:1 for large text).
  function rgb(s) { var m = s.match(/[\d.]+/g) || [0, 0, 0, 0]; return { r: +m[0], g: +m[1], b: +m[2], a: m.length > 3 ? +m[3] : 1 }; }
  function lum(c) { function f(v) { v /= 255; return v <= 0.04045 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); } return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b); }
  function behind(el) {
    for (var e = el; e && e.nodeType === 1; e = e.parentElement) { var c = rgb(getComputedStyle(e).backgroundColor); if (c.a > 0) return c; }
    return matchMedia('(prefers-color-scheme: dark)').matches ? { r: 18, g: 18, b: 18, a: 1 } : { r: 255, g: 255, b: 255, a: 1 };
  }
  function lowContrast() {
    var out = [];
    Array.prototype.forEach.call(document.body.querySelectorAll('*'), function (el) {
      var own = Array.prototype.some.call(el.childNodes, function (n) { return n.nodeType === 3 && n.textContent.trim(); });
      if (!own || !shown(el)) return;
      var s = getComputedStyle(el), fg = rgb(s.color), bg = behind(el);
      var l1 = lum(fg), l2 = lum(bg), ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
      var size = parseFloat(s.fontSize), large = size >= 24 || (size >= 18.66 && +s.fontWeight >= 700);
      if (ratio < (large ? 3 : 4.5)) out.push({ text: el.textContent.trim().slice(0, 60), color: s.color, background: 'rgb(' + bg.r + ', ' + bg.g + ', ' + bg.b + ')', ratio: Math.round(ratio * 100) / 100 });
    });
    return out;
  }
  // Words the layout broke inside themselves ("Diamon|d"): each word's
  // pieces on more than one line. A break after a hyphen or a slash is a
  // place a word may break; a URL, or a word wider than its column, has to
  // break somewhere and is counted apart.
  function brokenWords() {
    var out = { broken: [], allowed: 0, words: 0 }, walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT), n;
    while ((n = walk.nextNode())) {
      var el = n.parentElement;
      if (!el || el.closest('script, style, pre[id^="herald-metrics"]') || !shown(el)) continue;
      var token = /\S+/g, t;
      while ((t = token.exec(n.data))) {
        var url = /:\/\/|^www\.|@|^[\w.-]+\.(org|com|io|dev|net|de|eu)(\/|$)/i.test(t[0]);
        var piece = /[^\-\u2010-\u2014\/]+/g, p;
        while ((p = piece.exec(t[0]))) {
          if (p[0].length < 2) continue;
          out.words++;
          var r = document.createRange();
          r.setStart(n, t.index + p.index);
          r.setEnd(n, t.index + p.index + p[0].length);
          var rects = Array.prototype.filter.call(r.getClientRects(), function (b) { return b.width > 0; });
          var lines = 1, wide = 0;
          for (var i = 0; i < rects.length; i++) {
            wide += rects[i].width;
            if (i > 0 && Math.abs(rects[i].top - rects[i - 1].top) > rects[i - 1].height / 2) lines++;
          }
          if (lines < 2) continue;
          // The column is the email's text column (a table's cell is not:
          // a squeezed cell is what breaks words), else the nearest block.
          var block = el.closest('.dm-text, .dm-muted');
          if (!block) {
            block = el;
            while (block.parentElement && getComputedStyle(block).display.indexOf('inline') === 0) block = block.parentElement;
          }
          var bs = getComputedStyle(block), column = block.clientWidth - parseFloat(bs.paddingLeft) - parseFloat(bs.paddingRight);
          if (url || wide > column - 1) out.allowed++;
          else out.broken.push(p[0] + ' in "' + n.data.trim().slice(0, 50) + '"');
        }
      }
    }
    return out;
  }
  // Pictures that did not load (images off, or no network) show their alt
  // text in the picture's own colours: it has to be readable there too.
  function altText() {
    var out = [];
    Array.prototype.forEach.call(document.images, function (img) {
      if (!img.alt.trim() || (img.complete && img.naturalWidth > 0) || !shown(img)) return;
      var fg = rgb(getComputedStyle(img).color), bg = behind(img);
      var l1 = lum(fg), l2 = lum(bg), ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
      if (ratio < 4.5) out.push({ text: img.alt.slice(0, 60), color: getComputedStyle(img).color, background: 'rgb(' + bg.r + ', ' + bg.g + ', ' + bg.b + ')', ratio: Math.round(ratio * 100) / 100 });
    });
    return out;
  }
  // The email runs in an iframe of the width under test (Chromium's window
  // is at least 500 px wide); the result goes to the page that --dump-dom prints.
  var target = (window.parent && window.parent !== window) ? window.parent.document : document;
  var pre = target.createElement('pre');
  pre.id = 'herald-metrics-' + window.innerWidth;
  pre.textContent = JSON.stringify(r);
  target.body.appendChild(pre);
})();
</script>"#;

/// How the reader's mail program is set up.
#[derive(Clone, Copy, PartialEq)]
enum Scheme {
    Light,
    /// The system is in dark mode and the email is told so through
    /// `prefers-color-scheme` (Apple Mail, Outlook for Mac, iOS Mail).
    Dark,
}

impl Scheme {
    fn name(self) -> &'static str {
        match self {
            Scheme::Light => "light",
            Scheme::Dark => "dark",
        }
    }
}

fn chromium_args(
    width: u32,
    height: u32,
    profile: &Path,
    scheme: Scheme,
    images: Images,
) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--headless".into(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--no-first-run".into(),
        "--hide-scrollbars".into(),
        // The email is shown in an iframe of the width under test, and its
        // measurements are read from the page around it.
        "--allow-file-access-from-files".into(),
        format!("--user-data-dir={}", profile.display()),
        format!("--window-size={width},{height}"),
    ];
    if scheme == Scheme::Dark {
        args.push("--force-dark-mode".into());
    }
    if images == Images::Off {
        args.push("--blink-settings=imagesEnabled=false".into());
    }
    args
}

/// Whether the reader's mail program shows pictures: many do not until
/// asked, and then the alt text stands in their place.
#[derive(Clone, Copy, PartialEq)]
enum Images {
    On,
    Off,
}

/// The widths a reader sees the email at: a phone and a desktop.
const WIDTHS: [u32; 2] = [375, 600];
/// The page holding one frame per width, side by side.
const WINDOW: (u32, u32) = (1040, 2400);

/// A page showing `page` in iframes exactly as wide as [`WIDTHS`]:
/// Chromium's headless window cannot be narrower than 500 px, a phone is
/// 375, and one Chromium start serves both widths.
fn frames(page: &Path, work: &Path, name: &str) -> PathBuf {
    let wrapper = work.join(format!("{name}-frames.html"));
    let frames: String = WIDTHS
        .iter()
        .map(|w| {
            format!(
                "<iframe src=\"file://{}\" style=\"width:{w}px;height:{}px;border:0;margin-right:24px;vertical-align:top\"></iframe>",
                page.display(),
                WINDOW.1
            )
        })
        .collect();
    std::fs::write(
        &wrapper,
        format!("<!doctype html><html><body style=\"margin:0;white-space:nowrap\">{frames}</body></html>"),
    )
    .unwrap();
    wrapper
}

/// Layout facts of `html` at each of [`WIDTHS`], as seen by Chromium.
fn measure(
    chromium: &Path,
    html: &Path,
    scheme: Scheme,
    images: Images,
    work: &Path,
) -> Vec<(u32, serde_json::Value)> {
    let page = std::fs::read_to_string(html).unwrap();
    let measured = work.join("measure.html");
    std::fs::write(
        &measured,
        page.replacen("</body>", &format!("{MEASURE}</body>"), 1),
    )
    .unwrap();
    let o = Command::new(chromium)
        .args(chromium_args(
            WINDOW.0,
            900,
            &work.join(format!("profile-{}", scheme.name())),
            scheme,
            images,
        ))
        .arg("--dump-dom")
        .arg(format!(
            "file://{}",
            frames(&measured, work, "measure").display()
        ))
        .output()
        .unwrap();
    let dom = stdout(&o);
    WIDTHS
        .iter()
        .map(|&width| {
            let tag = format!("<pre id=\"herald-metrics-{width}\">");
            let start = dom
                .find(&tag)
                .unwrap_or_else(|| panic!("no metrics at {width}px from Chromium: {}", stderr(&o)));
            let json = &dom[start + tag.len()..];
            let json = &json[..json.find("</pre>").unwrap()];
            let json = json
                .replace("&amp;", "&")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"");
            let m: serde_json::Value = serde_json::from_str(&json).unwrap();
            (width, m)
        })
        .collect()
}

fn screenshot(
    chromium: &Path,
    page: &Path,
    (width, height): (u32, u32),
    scheme: Scheme,
    out: &Path,
    work: &Path,
) {
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let o = Command::new(chromium)
        .args(chromium_args(
            width,
            height,
            &work.join(format!("shot-{}", scheme.name())),
            scheme,
            Images::On,
        ))
        .arg(format!("--screenshot={}", out.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        out.is_file(),
        "no screenshot {}: {}",
        out.display(),
        stderr(&o)
    );
}

/// What [`look_at`] found: the problems a reader would see, and one line
/// of counts per rendering for the test to print.
#[derive(Default)]
struct Seen {
    problems: Vec<String>,
    counts: Vec<String>,
    /// Words broken inside themselves, over every rendering.
    broken: usize,
    /// Alt text under 4.5:1 with images off, over every rendering.
    unreadable_alt: usize,
    /// Renderings wider than their window.
    too_wide: usize,
}

/// Previews `post` (with `extra` arguments, such as `--fit`) and checks
/// what a reader would see at 375 and 600 px, in light and dark mode, with
/// pictures shown and with pictures off.
fn look_at(chromium: &Path, post: &Path, name: &str, extra: &[&str]) -> Seen {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("preview");
    let config = example_config();
    let mut args = vec![
        "preview",
        post.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    let o = herald(tmp.path(), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let expected = expected(post);
    let html = out.join("email.html");
    let shots = repo().join("target/screenshots");
    let mut seen = Seen::default();
    for scheme in [Scheme::Light, Scheme::Dark] {
        for images in [Images::On, Images::Off] {
            for (width, m) in measure(chromium, &html, scheme, images, tmp.path()) {
                let label = format!(
                    "{name} at {width}px ({} mode{})",
                    scheme.name(),
                    if images == Images::Off {
                        ", images off"
                    } else {
                        ""
                    }
                );
                let words = &m["brokenWords"];
                let broken = words["broken"].as_array().unwrap().len();
                let alt = m["altText"].as_array().unwrap().len();
                let wide = m["scrollWidth"].as_f64().unwrap() > m["innerWidth"].as_f64().unwrap();
                seen.broken += broken;
                seen.unreadable_alt += alt;
                seen.too_wide += wide as usize;
                seen.counts.push(format!(
                    "{label}: {} words, {broken} broken inside, {} long words or URLs broken, {alt} unreadable alt texts, page {}px in a {}px window",
                    words["words"], words["allowed"], m["scrollWidth"], m["innerWidth"]
                ));
                seen.problems
                    .extend(problems_seen(&m, width, &label, &expected));
            }
        }
        screenshot(
            chromium,
            &frames(&html, tmp.path(), "shot"),
            WINDOW,
            scheme,
            &shots.join(format!("{name}-{}.png", scheme.name())),
            tmp.path(),
        );
    }
    screenshot(
        chromium,
        &out.join("index.html"),
        (1700, 1300),
        Scheme::Light,
        &shots.join(format!("{name}-index.png")),
        tmp.path(),
    );
    seen
}

/// What a reader would find wrong in one rendering.
fn problems_seen(
    m: &serde_json::Value,
    width: u32,
    name: &str,
    expected: &Expected,
) -> Vec<String> {
    let mut problems = Vec::new();
    let (inner, scroll) = (
        m["innerWidth"].as_f64().unwrap(),
        m["scrollWidth"].as_f64().unwrap(),
    );
    if scroll > inner {
        problems.push(format!(
            "{name}: the page is {scroll}px wide, so readers scroll sideways"
        ));
    }
    let headings = m["headings"].as_array().unwrap();
    let title_shown = headings
        .iter()
        .any(|h| h["shown"] == true && h["box"]["h"].as_f64().unwrap() > 0.0);
    if !title_shown {
        problems.push(format!("{name}: the title is not visible"));
    }
    let shown_h2: Vec<String> = headings
        .iter()
        .filter(|h| h["shown"] == true)
        .map(|h| h["text"].as_str().unwrap().to_string())
        .collect();
    if shown_h2.len() < expected.top_sections + 1 {
        problems.push(format!(
            "{name}: {} headings visible, expected the title and {} sections",
            shown_h2.len(),
            expected.top_sections
        ));
    }
    for h in headings {
        if h["box"]["w"].as_f64().unwrap() > inner {
            problems.push(format!(
                "{name}: heading wider than the screen: {}",
                h["text"]
            ));
        }
    }
    let text = m["text"].as_str().unwrap();
    if !text.contains("Unsubscribe") || !text.contains("View in browser") {
        problems.push(format!("{name}: the footer is not visible"));
    }
    if width < 500 {
        for b in m["buttons"].as_array().unwrap() {
            let h = b["box"]["h"].as_f64().unwrap();
            if h < 44.0 {
                problems.push(format!(
                    "{name}: button {} is {h}px tall, under 44px",
                    b["text"]
                ));
            }
        }
    }
    for w in m["brokenWords"]["broken"].as_array().unwrap() {
        problems.push(format!(
            "{name}: a word broken inside itself: {}",
            w.as_str().unwrap()
        ));
    }
    for t in m["altText"].as_array().unwrap() {
        problems.push(format!(
            "{name}: alt text hard to read with images off: {} in {} on {} (contrast {}:1)",
            t["text"], t["color"], t["background"], t["ratio"]
        ));
    }
    for t in m["lowContrast"].as_array().unwrap() {
        problems.push(format!(
            "{name}: hard to read: {} in {} on {} (contrast {}:1)",
            t["text"], t["color"], t["background"], t["ratio"]
        ));
    }
    problems
}

fn chromium() -> Option<PathBuf> {
    tool("chromium")
}

#[test]
fn the_example_looks_right_on_a_phone_and_a_desktop() {
    let Some(chromium) = chromium() else { return };
    let seen = look_at(&chromium, &example_post(), "example", &[]);
    eprintln!("{}", seen.counts.join("\n"));
    assert!(seen.problems.is_empty(), "{:#?}", seen.problems);
    for shot in ["example-light.png", "example-dark.png", "example-index.png"] {
        assert!(repo().join("target/screenshots").join(shot).is_file());
    }
}

/// A comparison table of five columns, like the website's "OpenStack vs
/// proprietary clouds" guide: squeezed into a phone (and even 600 px) its
/// cells broke words in the middle ("Diamon|d", "Hype|rviso|r"). On a phone
/// it reads as "label: value" rows; nothing is broken, nothing scrolls.
/// Screenshots: target/screenshots/comparison-table-{light,dark}.png.
#[test]
fn a_wide_comparison_table_reads_on_a_phone() {
    let Some(chromium) = chromium() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let post = tmp.path().join("comparison-table.md");
    let rows = [
        "| Category | OpenStack | Proprietary Cloud Diamond | Proprietary Cloud Sapphire | Hypervisor |",
        "| --- | --- | --- | --- | --- |",
        "| Data residency | Anywhere you choose | Vendor-selected regions | Vendor-selected regions | KVM, Hyper-V |",
        "| Key custody | Customer-controlled | Vendor-managed, optional customer keys | Vendor-managed | Customer-controlled |",
        "| Operational autonomy | Complete | Dependent on vendor operations | Dependent on vendor operations | Complete |",
        "| Exit costs | Negligible | Considerable egress charges | Considerable egress charges | Negligible |",
    ];
    std::fs::write(
        &post,
        format!(
            "---
templateKey: generic-page
title: A Sovereignty Comparison
seo:
  description: How the clouds compare
  url: https://openinfra.org/sovereignty-comparison
---
# Comparison

The table compares each category side by side.

{}
",
            rows.join("\n")
        ),
    )
    .unwrap();
    let seen = look_at(&chromium, &post, "comparison-table", &[]);
    eprintln!("{}", seen.counts.join("\n"));
    assert!(seen.problems.is_empty(), "{:#?}", seen.problems);
    assert_eq!(seen.broken, 0);
    assert_eq!(seen.too_wide, 0);
}

/// Every post of the corpus; the annual reports as `--fit` digests, as
/// they would be sent.
#[test]
fn every_corpus_post_looks_right_on_a_phone_and_a_desktop() {
    let Some(chromium) = chromium() else { return };
    let Some(files) = corpus_files() else { return };
    // Two at a time: most of a Chromium start is waiting, not computing.
    let seen: Vec<Seen> = std::thread::scope(|scope| {
        let half = files.len().div_ceil(2);
        let workers: Vec<_> = files
            .chunks(half)
            .map(|chunk| {
                let chromium = &chromium;
                scope.spawn(move || {
                    let mut seen = Vec::new();
                    for post in chunk {
                        let name = post.file_stem().unwrap().to_string_lossy().into_owned();
                        let fit: &[&str] = if post.parent().unwrap().ends_with("annual-reports") {
                            &["--fit"]
                        } else {
                            &[]
                        };
                        seen.push(look_at(chromium, post, &name, fit));
                    }
                    seen
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    for s in &seen {
        eprintln!("{}", s.counts.join("\n"));
    }
    let total = |f: fn(&Seen) -> usize| seen.iter().map(f).sum::<usize>();
    eprintln!(
        "corpus at 375 and 600 px, light and dark, images on and off: {} words broken inside themselves, {} unreadable alt texts, {} renderings wider than the window",
        total(|s| s.broken),
        total(|s| s.unreadable_alt),
        total(|s| s.too_wide)
    );
    let problems: Vec<&String> = seen.iter().flat_map(|s| &s.problems).collect();
    assert!(problems.is_empty(), "{problems:#?}");
    eprintln!("looked at {} corpus posts", files.len());
}

/// A subscriber on `herald serve`'s page in Chromium: the link from a
/// dry-run email opens the page (nothing changes), the button unsubscribes
/// and shows the confirmation, Undo takes it back. The page's own style
/// runs under its Content-Security-Policy (no violation in the console).
/// Screenshots: target/screenshots/unsubscribe-*.png.
#[test]
fn the_unsubscribe_page_works_in_a_browser() {
    use crate::serve::{Serve, dry_run_links, suppressed};
    let Some(chromium) = chromium() else { return };
    let Some(node) = crate::util::node_with("puppeteer-core") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let list = tmp.path().join("list.csv");
    std::fs::write(&list, "email,first_name\nana.lopez@example.org,Ana\n").unwrap();
    let config = example_config();
    let serve = Serve::start(tmp.path(), &["--config", config.to_str().unwrap()], &[]);
    let links = dry_run_links(
        tmp.path(),
        &example_post(),
        &list,
        &serve.url("/unsubscribe"),
    );
    let link = &links["ana.lopez@example.org"];
    let shots = repo().join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let o = Command::new(node)
        .arg(repo().join("tests/tools/unsubscribe_click.cjs"))
        .arg(&chromium)
        .arg(link)
        .arg(shots.join("unsubscribe"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["firstStatus"], 200);
    let steps = v["steps"].as_array().unwrap();
    let heading = |i: usize| steps[i]["heading"].as_str().unwrap().to_string();
    assert_eq!(heading(0), "Unsubscribe?");
    let text = steps[0]["text"].as_str().unwrap();
    assert!(text.contains("a***z@e***.org"), "{text}");
    // The newsletter's name, from the settings.
    assert!(text.contains("OpenInfra Foundation"), "{text}");
    assert_eq!(heading(1), "You are unsubscribed");
    assert_eq!(steps[1]["buttons"][0], "Undo");
    assert_eq!(heading(2), "You are subscribed again");
    // The accent colour reached the button: the style was allowed to run.
    assert_eq!(steps[0]["buttonBackground"], "rgb(197, 40, 61)");
    assert_eq!(
        v["console"],
        serde_json::json!([]),
        "console: {}",
        v["console"]
    );
    for s in ["page", "unsubscribed", "undone"] {
        assert!(shots.join(format!("unsubscribe-{s}.png")).is_file());
    }
    assert_eq!(suppressed(tmp.path()), Vec::<serde_json::Value>::new());
    let (code, out) = serve.stop();
    assert_eq!(code, Some(0));
    assert!(out.contains("1 unsubscribed, 1 took it back"), "{out}");
}
