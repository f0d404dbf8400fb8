//! The report as one self-contained HTML page: inline CSS and SVG charts
//! ([`super::chart`]), no script, no font, picture or link to fetch, so
//! it reads the same offline and mailed as an attachment. Every number on
//! it comes from the [`Report`] (the same value `--json` prints); the
//! figure cells carry `data-figure` names so a test (or a person with a
//! spreadsheet) can find each one.

use std::fmt::Write;

use super::chart::{self, Bars, Lines, Rule, Series, percent, whole};
use super::{DomainOutcome, Figure, Report};
use crate::html::attr as esc;

/// At most this many points on the per-minute chart: a long send is drawn
/// per 2, 5, 10... minutes instead (the JSON keeps every minute).
const MAX_POINTS: i64 = 120;

const STYLE: &str = "\
body{margin:0;font-family:system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif;color:#1b1b1b;background:#fff;line-height:1.45}\
main{max-width:960px;margin:0 auto;padding:16px}\
h1{font-size:1.6em;margin:.4em 0}h2{font-size:1.25em;margin:1.6em 0 .4em;border-bottom:2px solid #e3e3e3}\
h1,h2,p{overflow-wrap:anywhere}\
.meta{color:#444}\
.chart{display:block;width:100%;height:auto;margin:8px 0 16px}\
.chart text{font-family:inherit}.tick{font-size:12px;fill:#333}.legend{font-size:12px;fill:#1b1b1b}\
.axis-label{font-size:13px;font-weight:600;fill:#1b1b1b}\
.axis{stroke:#1b1b1b;stroke-width:1}.grid{stroke:#e3e3e3;stroke-width:1}\
.limit,.limit-key{stroke-width:2;stroke-dasharray:6 4}.limit-label{font-size:12px;fill:#1b1b1b}\
.wide{overflow-x:auto;max-width:100%}\
table{border-collapse:collapse;font-size:14px;margin:8px 0}\
th,td{border-bottom:1px solid #e3e3e3;padding:4px 8px;text-align:right;white-space:nowrap}\
td:first-child{white-space:normal;overflow-wrap:anywhere;min-width:8em}\
th:first-child,td:first-child{text-align:left}\
.note{font-size:14px;color:#444}\
@media (max-width:600px){.chart .tick,.chart .legend,.chart .limit-label{font-size:15px}.chart .axis-label{font-size:16px}}";

/// The whole page. `made_at`: when it was made (shown under the title).
pub fn page(r: &Report, made_at: &str) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>How {} did</title><style>{STYLE}</style></head><body><main>\
         <h1>How {} did</h1><p class=\"meta\">The post {}, sent from {} to {} (UTC). \
         Report made at {} by <code>herald report</code>; the same figures as \
         <code>herald status</code>.</p>",
        esc(&r.campaign),
        esc(&r.campaign),
        esc(&r.post),
        esc(&r.created_at),
        esc(r.finished_at.as_deref().unwrap_or("now (not finished)")),
        esc(made_at),
    );
    issue(&mut out, r);
    relays(&mut out, r);
    domains(&mut out, r);
    trend(&mut out, r);
    out.push_str("</main></body></html>\n");
    out
}

/// One row of the figures table: a name, a count and (with a base) a rate.
fn figure_row(out: &mut String, name: &str, key: &str, f: Figure, of: &str) {
    let _ = write!(
        out,
        "<tr><td>{name}</td><td data-figure=\"{key}\">{}</td><td data-rate=\"{key}\">{}</td><td>{of}</td></tr>",
        f.count,
        percent(f.rate)
    );
}

/// The issue's figures: a table, a chart of the rates, and the complaint
/// rate against the bulk-sender limits.
fn issue(out: &mut String, r: &Report) {
    let o = &r.outcomes;
    let _ = write!(
        out,
        "<section id=\"issue\"><h2>This issue in numbers</h2><div class=\"wide\"><table>\
         <tr><th>What</th><th>Count</th><th>Rate</th><th>Out of</th></tr>\
         <tr><td>Accepted by the mail servers (sent)</td><td data-figure=\"sent\">{}</td><td></td><td></td></tr>\
         <tr><td>Tried (sent, deferred, failed or unknown)</td><td data-figure=\"mailed\">{}</td><td></td><td></td></tr>",
        o.sent, o.mailed
    );
    figure_row(
        out,
        "Deferred (tried again next run)",
        "deferred",
        o.deferred,
        "tried",
    );
    figure_row(
        out,
        "Failed (refused for good)",
        "failed",
        o.failed,
        "tried",
    );
    figure_row(
        out,
        "Hard bounces (address gone)",
        "hard_bounces",
        o.hard_bounces,
        "sent",
    );
    figure_row(
        out,
        "Soft bounces (mailbox full, ...)",
        "soft_bounces",
        o.soft_bounces,
        "sent",
    );
    figure_row(out, "Spam complaints", "complaints", o.complaints, "sent");
    let by = format!(
        "Unsubscribes ({} by link or button, {} by email)",
        o.unsubscribed_by_link, o.unsubscribed_by_email
    );
    figure_row(out, &by, "unsubscribes", o.unsubscribes, "sent");
    out.push_str("</table></div>");
    let rates = Bars {
        id: "rates",
        title: format!(
            "Rates of {}: deferrals, bounces, complaints, unsubscribes",
            r.campaign
        ),
        x_label: "rate (deferrals and failures out of tried; the rest out of sent)".into(),
        y_label: "what".into(),
        parts: vec!["rate".into()],
        rows: [
            ("Deferred", o.deferred),
            ("Failed", o.failed),
            ("Hard bounces", o.hard_bounces),
            ("Soft bounces", o.soft_bounces),
            ("Spam complaints", o.complaints),
            ("Unsubscribes", o.unsubscribes),
        ]
        .into_iter()
        .map(|(n, f)| (n.to_string(), vec![f.rate]))
        .collect(),
        rules: Vec::new(),
        x_format: percent,
        min_step: 0.0001,
    };
    out.push_str(&chart::bars(&rates));
    let complaints = Bars {
        id: "complaint-rate",
        title: format!(
            "Spam complaint rate of {} against Gmail's and Yahoo's 0.1% and 0.3% lines",
            r.campaign
        ),
        x_label: "complaints out of messages sent".into(),
        y_label: "issue".into(),
        parts: vec!["complaint rate".into()],
        rows: vec![("This issue".into(), vec![o.complaints.rate])],
        rules: limit_rules(r),
        x_format: percent,
        min_step: 0.0001,
    };
    out.push_str(&chart::bars(&complaints));
    out.push_str(
        "<p class=\"note\">Gmail and Yahoo ask senders of bulk mail to keep the spam complaint \
         rate below 0.1% and never to reach 0.3%; above that, mail goes to spam or is refused. \
         Gmail counts only complaints from its own users, so its Postmaster Tools may show a \
         different figure.</p></section>",
    );
}

fn limit_rules(r: &Report) -> Vec<Rule> {
    r.complaint_limits
        .iter()
        .map(|l| Rule {
            value: l.rate,
            label: l.label.to_string(),
        })
        .collect()
}

/// Minutes since the Unix epoch of `2026-12-06T16:57`.
fn minute_number(minute: &str) -> Option<i64> {
    let t: jiff::Timestamp = format!("{minute}:00Z").parse().ok()?;
    Some(t.as_second().div_euclid(60))
}

/// `a / b` rounded up, for positive numbers.
fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

/// Messages accepted per minute (or per few minutes), one line per relay.
fn relays(out: &mut String, r: &Report) {
    out.push_str("<section id=\"relays\"><h2>Messages accepted per minute, per relay</h2>");
    let numbered: Vec<Vec<(i64, i64)>> = r
        .per_minute
        .iter()
        .map(|s| {
            s.minutes
                .iter()
                .filter_map(|m| Some((minute_number(&m.minute)?, m.sent)))
                .collect()
        })
        .collect();
    let first = numbered.iter().flatten().map(|(m, _)| *m).min();
    let last = numbered.iter().flatten().map(|(m, _)| *m).max();
    let (Some(first), Some(last)) = (first, last) else {
        out.push_str("<p>No message was accepted yet.</p></section>");
        return;
    };
    let span = last - first + 1;
    let step = [1, 2, 5, 10, 15, 30, 60, 120, 240, 480, 1440]
        .into_iter()
        .find(|s| ceil_div(span, *s) <= MAX_POINTS)
        .unwrap_or(ceil_div(span, MAX_POINTS));
    let points = ceil_div(span, step);
    let x_names = (0..points)
        .map(|i| {
            let t = jiff::Timestamp::from_second((first + i * step) * 60).unwrap_or_default();
            let s = t.to_string();
            if span > 1440 {
                s[5..16].replace('T', " ")
            } else {
                s[11..16].to_string()
            }
        })
        .collect();
    let series = r
        .per_minute
        .iter()
        .zip(&numbered)
        .map(|(s, minutes)| {
            let mut values = vec![0.0; points as usize];
            for (m, n) in minutes {
                values[((m - first) / step) as usize] += *n as f64;
            }
            Series {
                name: s.relay.clone(),
                values,
            }
        })
        .collect();
    let per = if step == 1 {
        "minute".to_string()
    } else {
        format!("{step} minutes")
    };
    let c = Lines {
        id: "per-minute",
        title: format!(
            "Messages accepted per {per}, per relay, during the send of {}",
            r.campaign
        ),
        x_label: "time (UTC)".into(),
        y_label: format!("messages accepted per {per}"),
        x_names,
        series,
        rules: Vec::new(),
        y_format: whole,
        min_step: 1.0,
    };
    out.push_str(&chart::lines(&c));
    out.push_str("<div class=\"wide\"><table><tr><th>Relay</th><th>Accepted</th><th>Busiest minute</th></tr>");
    for s in &r.per_minute {
        let total: i64 = s.minutes.iter().map(|m| m.sent).sum();
        let busiest = s.minutes.iter().map(|m| m.sent).max().unwrap_or(0);
        let _ = write!(
            out,
            "<tr data-relay=\"{0}\"><td>{0}</td><td data-figure=\"relay-sent\">{total}</td><td>{busiest}</td></tr>",
            esc(&s.relay)
        );
    }
    out.push_str("</table></div></section>");
}

/// Outcomes per recipient domain: a chart of the top domains and a table.
fn domains(out: &mut String, r: &Report) {
    out.push_str("<section id=\"domains\"><h2>Where it went: outcomes per recipient domain</h2>");
    let rows: Vec<&DomainOutcome> = r.domains.iter().chain(&r.other_domains).collect();
    if rows.is_empty() {
        out.push_str("<p>No recipients.</p></section>");
        return;
    }
    let c = Bars {
        id: "domains-chart",
        title: format!(
            "Outcomes per recipient domain for {} (top {} domains and the rest)",
            r.campaign,
            super::TOP_DOMAINS
        ),
        x_label: "recipients".into(),
        y_label: "recipient domain".into(),
        parts: vec![
            "sent".into(),
            "deferred".into(),
            "failed".into(),
            "not mailed (left out, removed or waiting)".into(),
        ],
        rows: rows
            .iter()
            .map(|d| {
                (
                    d.domain.clone(),
                    vec![
                        d.sent as f64,
                        d.deferred as f64,
                        d.failed as f64,
                        (d.recipients - d.sent - d.deferred - d.failed) as f64,
                    ],
                )
            })
            .collect(),
        rules: Vec::new(),
        x_format: whole,
        min_step: 1.0,
    };
    out.push_str(&chart::bars(&c));
    out.push_str(
        "<div class=\"wide\"><table><tr><th>Domain</th><th>Recipients</th><th>Sent</th>\
         <th>Deferred</th><th>Failed</th><th>Hard bounces</th><th>Soft bounces</th>\
         <th>Complaints</th><th>Unsubscribes</th></tr>",
    );
    for d in rows {
        let _ = write!(
            out,
            "<tr data-domain=\"{0}\"><td>{0}</td><td data-col=\"recipients\">{1}</td><td data-col=\"sent\">{2}</td>\
             <td data-col=\"deferred\">{3}</td><td data-col=\"failed\">{4}</td><td data-col=\"hard_bounces\">{5}</td>\
             <td data-col=\"soft_bounces\">{6}</td><td data-col=\"complaints\">{7}</td><td data-col=\"unsubscribes\">{8}</td></tr>",
            esc(&d.domain),
            d.recipients,
            d.sent,
            d.deferred,
            d.failed,
            d.hard_bounces,
            d.soft_bounces,
            d.complaints,
            d.unsubscribes
        );
    }
    out.push_str("</table></div></section>");
}

/// The same figures over the last campaigns.
fn trend(out: &mut String, r: &Report) {
    let _ = write!(
        out,
        "<section id=\"trend\"><h2>The last {} campaigns</h2>",
        r.trend.len()
    );
    // The day each was sent; with the time too when two share a day.
    let days: Vec<&str> = r
        .trend
        .iter()
        .map(|t| t.created_at.get(..10).unwrap_or(&t.created_at))
        .collect();
    let same_day = days.windows(2).any(|w| w[0] == w[1]);
    let x_names: Vec<String> = r
        .trend
        .iter()
        .zip(&days)
        .map(|(t, day)| match t.created_at.get(5..16) {
            Some(s) if same_day => s.replace('T', " "),
            _ => day.to_string(),
        })
        .collect();
    let rate = |name: &str, f: fn(&super::Outcomes) -> f64| Series {
        name: name.to_string(),
        values: r.trend.iter().map(|t| f(&t.outcomes)).collect(),
    };
    let rates = Lines {
        id: "trend-rates",
        title: format!("Rates over the last {} campaigns", r.trend.len()),
        x_label: "campaign (day it was sent)".into(),
        y_label: "rate".into(),
        x_names: x_names.clone(),
        series: vec![
            rate("deferred", |o| o.deferred.rate),
            rate("hard bounces", |o| o.hard_bounces.rate),
            rate("soft bounces", |o| o.soft_bounces.rate),
            rate("spam complaints", |o| o.complaints.rate),
            rate("unsubscribes", |o| o.unsubscribes.rate),
        ],
        rules: Vec::new(),
        y_format: percent,
        min_step: 0.0001,
    };
    out.push_str(&chart::lines(&rates));
    let complaints = Lines {
        id: "trend-complaints",
        title: format!(
            "Spam complaint rate over the last {} campaigns against the 0.1% and 0.3% lines",
            r.trend.len()
        ),
        x_label: "campaign (day it was sent)".into(),
        y_label: "complaint rate".into(),
        x_names,
        series: vec![rate("spam complaints", |o| o.complaints.rate)],
        rules: limit_rules(r),
        y_format: percent,
        min_step: 0.0001,
    };
    out.push_str(&chart::lines(&complaints));
    out.push_str(
        "<div class=\"wide\"><table><tr><th>Campaign</th><th>Sent</th><th>Deferred</th>\
         <th>Hard bounces</th><th>Soft bounces</th><th>Complaints</th><th>Unsubscribes</th></tr>",
    );
    for t in &r.trend {
        let o = &t.outcomes;
        let _ = write!(
            out,
            "<tr data-campaign=\"{0}\"><td>{0}</td><td data-col=\"sent\">{1}</td>\
             <td data-col=\"deferred\">{2}</td><td data-col=\"hard_bounces\">{3}</td>\
             <td data-col=\"soft_bounces\">{4}</td><td data-col=\"complaints\">{5}</td>\
             <td data-col=\"unsubscribes\">{6}</td></tr>",
            esc(&t.campaign),
            o.sent,
            o.deferred.count,
            o.hard_bounces.count,
            o.soft_bounces.count,
            o.complaints.count,
            o.unsubscribes.count
        );
    }
    out.push_str("</table></div></section>");
}
