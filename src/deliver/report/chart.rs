//! The report's charts, drawn as inline SVG by our own code: no script, no
//! font or picture from elsewhere, so the page reads offline and as a
//! mail attachment. Each chart has a `<title>` (read by screen readers and
//! shown on hover) and a label on each axis (`class="axis-label"`); it
//! scales to its column (`viewBox`, width 100%), so a phone never scrolls
//! sideways. Every text from outside (relay and domain names) is escaped.

use std::fmt::Write;

use crate::html::attr as esc;

/// The drawing's width in its own units; it is scaled to the column.
const W: f64 = 720.0;
/// The colours of the series, in order (each readable on white).
pub const COLOURS: [&str; 8] = [
    "#1f5fbf", "#c5283d", "#2e7d32", "#b26a00", "#6a3d9a", "#00838f", "#7a5c3e", "#555555",
];

/// One line of a [`Lines`] chart: a value per x position.
pub struct Series {
    pub name: String,
    pub values: Vec<f64>,
}

/// A dashed line across a chart at `value` (the complaint-rate limits),
/// named with its whole label in the legend under the chart (labels
/// beside lines that lie close together would cover each other).
pub struct Rule {
    pub value: f64,
    pub label: String,
}

/// A line chart: x positions named by `x_names`, one line per series.
pub struct Lines {
    pub id: &'static str,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_names: Vec<String>,
    pub series: Vec<Series>,
    pub rules: Vec<Rule>,
    /// How a y value is written on its axis (`12`, `0.10%`).
    pub y_format: fn(f64) -> String,
    /// The smallest step between two ticks (1 for counts).
    pub min_step: f64,
}

/// Horizontal bars, one row per name, each made of stacked parts (one
/// value per part name), with optional vertical rules.
pub struct Bars {
    pub id: &'static str,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub parts: Vec<String>,
    pub rows: Vec<(String, Vec<f64>)>,
    pub rules: Vec<Rule>,
    pub x_format: fn(f64) -> String,
    /// The smallest step between two ticks (1 for counts).
    pub min_step: f64,
}

/// A count as a whole number.
pub fn whole(v: f64) -> String {
    format!("{}", v.round() as i64)
}

/// A fraction as a percentage: 0.0012 is `0.12%`.
pub fn percent(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

/// A round step for an axis that holds `max` in about four steps (1, 2
/// or 5 times a power of ten, at least `min_step`), and the axis's top (a
/// whole number of steps, at least one): each tick then names its value
/// exactly.
fn axis(max: f64, min_step: f64) -> (f64, f64) {
    let raw = if max > 0.0 && max.is_finite() {
        max / 4.0
    } else {
        min_step
    };
    let p = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|t| *t >= raw * 0.999_999)
        .unwrap_or(10.0 * p)
        .max(min_step);
    let steps = (max / step - 1e-9).ceil().max(1.0);
    (step * steps, step)
}

/// The chart's opening: its size, title and description for readers.
fn open(out: &mut String, id: &str, title: &str, height: f64) {
    let _ = write!(
        out,
        "<svg id=\"{id}\" class=\"chart\" viewBox=\"0 0 {W} {height}\" role=\"img\" \
         aria-labelledby=\"{id}-title\">\
         <title id=\"{id}-title\">{}</title>",
        esc(title)
    );
}

/// The legend under a chart: a swatch and a name per series, then each
/// rule on a line of its own with its dashed sample and whole label.
/// Returns the last line's height.
fn legend(out: &mut String, names: &[String], rules: &[Rule], y: f64) -> f64 {
    let (mut x, mut y) = (10.0, y);
    for (i, name) in names.iter().enumerate() {
        let width = 28.0 + 7.0 * name.chars().count().min(40) as f64;
        if x + width > W {
            x = 10.0;
            y += 20.0;
        }
        let _ = write!(
            out,
            "<rect x=\"{x}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{}\"/>\
             <text x=\"{}\" y=\"{}\" class=\"legend\">{}</text>",
            y - 10.0,
            COLOURS[i % COLOURS.len()],
            x + 17.0,
            y,
            esc(&shorten(name, 40))
        );
        x += width;
    }
    for (i, r) in rules.iter().enumerate() {
        y += 20.0;
        let _ = write!(
            out,
            "<line x1=\"10\" x2=\"34\" y1=\"{0:.1}\" y2=\"{0:.1}\" class=\"limit-key\" stroke=\"{1}\"/>\
             <text x=\"40\" y=\"{2}\" class=\"limit-label\">{3}</text>",
            y - 4.0,
            RULE_COLOURS[i % RULE_COLOURS.len()],
            y,
            esc(&r.label)
        );
    }
    y
}

/// The colours of the rules (the complaint-rate limits), in order.
const RULE_COLOURS: [&str; 2] = ["#b26a00", "#8a1c2b"];

/// How tall the legend is: rows of series names and one row per rule.
fn legend_height(series: usize, rules: usize) -> f64 {
    20.0 * (series.div_ceil(4) + rules) as f64
}

/// A name cut to `n` characters with an ellipsis (the whole name is in
/// the table beside the chart).
fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let mut out: String = s.chars().take(n - 1).collect();
    out.push('…');
    out
}

/// Draws a line chart.
pub fn lines(c: &Lines) -> String {
    let (left, right, top, plot_h) = (76.0, 20.0, 20.0, 220.0);
    let bottom = top + plot_h;
    let n = c.x_names.len().max(1);
    let max = c
        .series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .chain(c.rules.iter().map(|r| r.value))
        .fold(0.0, f64::max);
    let (top_value, step) = axis(max, c.min_step);
    let x_at = |i: usize| {
        if n == 1 {
            left + (W - left - right) / 2.0
        } else {
            left + (W - left - right) * i as f64 / (n - 1) as f64
        }
    };
    let y_at = |v: f64| bottom - plot_h * v / top_value;
    let mut out = String::new();
    let height = bottom + 70.0 + legend_height(c.series.len(), c.rules.len());
    open(&mut out, c.id, &c.title, height);
    let mut v = 0.0;
    while v <= top_value + step / 2.0 {
        let y = y_at(v);
        let _ = write!(
            out,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" class=\"grid\"/>\
             <text x=\"{}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{}</text>",
            W - right,
            left - 6.0,
            y + 4.0,
            (c.y_format)(v)
        );
        v += step;
    }
    x_names(&mut out, &c.x_names, &x_at, bottom + 16.0);
    for (i, r) in c.rules.iter().enumerate() {
        let y = y_at(r.value);
        let _ = write!(
            out,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" class=\"limit\" stroke=\"{}\"><title>{}</title></line>",
            W - right,
            RULE_COLOURS[i % RULE_COLOURS.len()],
            esc(&r.label)
        );
    }
    for (k, s) in c.series.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        let points: Vec<String> = s
            .values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", x_at(i), y_at(*v)))
            .collect();
        let _ = write!(
            out,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"><title>{}</title></polyline>",
            points.join(" "),
            esc(&s.name)
        );
        if s.values.len() <= 40 {
            for (i, v) in s.values.iter().enumerate() {
                let _ = write!(
                    out,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\"/>",
                    x_at(i),
                    y_at(*v)
                );
            }
        }
    }
    let _ = write!(
        out,
        "<line x1=\"{left}\" x2=\"{left}\" y1=\"{top}\" y2=\"{bottom}\" class=\"axis\"/>\
         <line x1=\"{left}\" x2=\"{}\" y1=\"{bottom}\" y2=\"{bottom}\" class=\"axis\"/>\
         <text class=\"axis-label\" x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\
         <text class=\"axis-label\" transform=\"translate(14 {:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
        W - right,
        (left + W - right) / 2.0,
        bottom + 36.0,
        esc(&c.x_label),
        (top + bottom) / 2.0,
        esc(&c.y_label)
    );
    let names: Vec<String> = c.series.iter().map(|s| s.name.clone()).collect();
    legend(&mut out, &names, &c.rules, bottom + 62.0);
    out.push_str("</svg>");
    out
}

/// At most 6 names under the x axis, evenly spread; the first and last
/// kept inside the drawing.
fn x_names(out: &mut String, names: &[String], x_at: &dyn Fn(usize) -> f64, y: f64) {
    let n = names.len();
    let every = n.div_ceil(6).max(1);
    for (i, name) in names.iter().enumerate() {
        if i % every != 0 && i + 1 != n {
            continue;
        }
        let anchor = match (i, n) {
            (_, 1) => "middle",
            (0, _) => "start",
            (i, n) if i + 1 == n => "end",
            _ => "middle",
        };
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{y}\" class=\"tick\" text-anchor=\"{anchor}\">{}</text>",
            x_at(i),
            esc(&shorten(name, 16))
        );
    }
}

/// Draws horizontal stacked bars. The names of the rows are the y axis;
/// its label stands above them.
pub fn bars(c: &Bars) -> String {
    let (left, right, top, row_h) = (190.0, 24.0, 30.0, 22.0);
    let plot_w = W - left - right;
    let bottom = top + row_h * c.rows.len().max(1) as f64;
    let max = c
        .rows
        .iter()
        .map(|(_, v)| v.iter().sum::<f64>())
        // Room beyond the last rule, so it is not taken for the frame.
        .chain(c.rules.iter().map(|r| r.value * 1.2))
        .fold(0.0, f64::max);
    let (top_value, step) = axis(max, c.min_step);
    let x_at = |v: f64| left + plot_w * v / top_value;
    let mut out = String::new();
    let parts = if c.parts.len() > 1 { c.parts.len() } else { 0 };
    let height = bottom + 70.0 + legend_height(parts, c.rules.len());
    open(&mut out, c.id, &c.title, height);
    let mut v = 0.0;
    while v <= top_value + step / 2.0 {
        let x = x_at(v);
        let anchor = if v + step / 2.0 > top_value {
            "end"
        } else {
            "middle"
        };
        let _ = write!(
            out,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{top}\" y2=\"{bottom}\" class=\"grid\"/>\
             <text x=\"{x:.1}\" y=\"{}\" class=\"tick\" text-anchor=\"{anchor}\">{}</text>",
            bottom + 16.0,
            (c.x_format)(v)
        );
        v += step;
    }
    for (i, (name, values)) in c.rows.iter().enumerate() {
        let y = top + row_h * i as f64;
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{}</text>",
            left - 6.0,
            y + row_h / 2.0 + 4.0,
            esc(&shorten(name, 20))
        );
        let mut at = 0.0;
        for (k, v) in values.iter().enumerate() {
            if *v <= 0.0 {
                continue;
            }
            let part = c.parts.get(k).map_or("", String::as_str);
            let _ = write!(
                out,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{}\" fill=\"{}\">\
                 <title>{}: {} {}</title></rect>",
                x_at(at),
                y + 3.0,
                (x_at(at + v) - x_at(at)).max(1.0),
                row_h - 6.0,
                COLOURS[k % COLOURS.len()],
                esc(name),
                esc(part),
                (c.x_format)(*v)
            );
            at += v;
        }
    }
    for (i, r) in c.rules.iter().enumerate() {
        let x = x_at(r.value);
        let _ = write!(
            out,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{}\" y2=\"{bottom}\" class=\"limit\" stroke=\"{}\"><title>{}</title></line>",
            top - 6.0,
            RULE_COLOURS[i % RULE_COLOURS.len()],
            esc(&r.label)
        );
    }
    let _ = write!(
        out,
        "<line x1=\"{left}\" x2=\"{left}\" y1=\"{top}\" y2=\"{bottom}\" class=\"axis\"/>\
         <line x1=\"{left}\" x2=\"{}\" y1=\"{bottom}\" y2=\"{bottom}\" class=\"axis\"/>\
         <text class=\"axis-label\" x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\
         <text class=\"axis-label\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
        W - right,
        (left + W - right) / 2.0,
        bottom + 36.0,
        esc(&c.x_label),
        left - 6.0,
        top - 10.0,
        esc(&c.y_label)
    );
    let names = if parts > 0 {
        c.parts.clone()
    } else {
        Vec::new()
    };
    legend(&mut out, &names, &c.rules, bottom + 62.0);
    out.push_str("</svg>");
    out
}
