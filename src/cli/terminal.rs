//! The terminal of `herald send`: what is about to happen, the question
//! before anything goes out, and the progress while it goes.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::deliver::engine::Progress;
use crate::deliver::send;

/// The terminal of `herald send`: says what is about to happen, asks on a
/// terminal (unless --yes), and shows the progress.
pub(super) struct Terminal {
    yes: bool,
    display: Option<ProgressDisplay>,
}

impl Terminal {
    pub(super) fn new(yes: bool) -> Terminal {
        Terminal { yes, display: None }
    }
}

impl send::Watch for Terminal {
    fn confirm(&mut self, ready: &send::Ready) -> send::Result<bool> {
        for w in &ready.picture_warnings {
            tracing::warn!("{w}");
        }
        tracing::info!("{}", plan(ready));
        if let Some(w) = crate::compose::check::clip_warning(ready.largest_html) {
            tracing::warn!("{w}");
        }
        if self.yes {
            return Ok(true);
        }
        if !std::io::stdin().is_terminal() {
            return Err(crate::InputError::new(
                ready.post,
                None,
                "herald asks before sending, and there is no terminal to ask on: add --yes to send (as a cron job does)",
            )
            .into());
        }
        eprint!("Send now? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        Ok(matches!(answer.trim().to_lowercase().as_str(), "y" | "yes"))
    }

    fn sending(&mut self, progress: Arc<Progress>, total: u64) {
        self.display = Some(ProgressDisplay::start(progress, total));
    }

    fn done(&mut self) {
        if let Some(d) = self.display.take() {
            d.finish();
        }
    }
}

/// What is about to happen, in a sentence: `About to send "May" (may-2025)
/// to 1200 people through smtp://... with 4 connection(s), at most 14/s...`.
fn plan(ready: &send::Ready) -> String {
    let before = ready.before;
    let (first, others) = ready.relays.split_first().expect("a send has a relay");
    // Several relays add up; one without a rate makes the whole unlimited.
    let rates: Option<Vec<f64>> = ready
        .relays
        .iter()
        .map(|r| r.rate.map(|r| r.per_second()))
        .collect();
    let eta = rates.map(|r| ready.to_send as f64 / r.iter().sum::<f64>());
    let mut plan = format!(
        "About to send \"{}\" ({}) to {} people through {} with {} connection(s)",
        ready.title,
        ready.campaign,
        ready.to_send,
        if others.is_empty() {
            first.describe.clone()
        } else {
            format!("{} ({})", first.name, first.describe)
        },
        first.connections
    );
    match first.rate {
        Some(r) => plan.push_str(&format!(", at most {r}")),
        None => plan.push_str(", with no rate limit (as fast as the relay accepts)"),
    }
    for r in others {
        plan.push_str(&format!(
            ", and through {} ({}) with {} connection(s), {}",
            r.name,
            r.describe,
            r.connections,
            match r.rate {
                Some(rate) => format!("at most {rate}"),
                None => "no rate limit".into(),
            }
        ));
    }
    if let Some(max) = ready.max_per_run {
        plan.push_str(&format!(", at most {max} this run"));
    }
    if let Some(secs) = eta {
        plan.push_str(&format!("; about {}", human_duration(secs)));
    }
    if before.sent > 0 || before.unknown > 0 {
        plan.push_str(&format!(
            ". Continuing: {} already sent, {} of unknown outcome",
            before.sent, before.unknown
        ));
        if !ready.resend_unknown && before.unknown > 0 {
            plan.push_str(" (not resent; add --resend-unknown to resend)");
        }
    }
    plan.push_str(&format!(
        ". The largest email is {:.1} KB of HTML.",
        ready.largest_html as f64 / 1024.0
    ));
    plan
}

fn human_duration(secs: f64) -> String {
    match secs {
        s if s < 90.0 => format!("{s:.0} seconds"),
        s if s < 5400.0 => format!("{:.0} minutes", s / 60.0),
        s => format!("{:.1} hours", s / 3600.0),
    }
}

/// A progress bar on a terminal; plain log lines every 10 seconds otherwise.
struct ProgressDisplay {
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProgressDisplay {
    fn start(progress: Arc<Progress>, total: u64) -> ProgressDisplay {
        let done = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&done);
        let thread = std::thread::spawn(move || {
            let terminal = std::io::stderr().is_terminal();
            let bar = terminal.then(|| {
                let bar = indicatif::ProgressBar::new(total);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{bar:30} {pos}/{len} sent {msg} ETA {eta}",
                    )
                    .expect("valid template"),
                );
                // Log lines print above the bar, not through it.
                crate::log::set_progress_bar(Some(bar.clone()));
                bar
            });
            let started = std::time::Instant::now();
            let mut last_log = std::time::Instant::now();
            loop {
                let stop = flag.load(Ordering::SeqCst);
                let sent = progress.sent.load(Ordering::Relaxed);
                let failed = progress.failed.load(Ordering::Relaxed);
                let deferred = progress.deferred.load(Ordering::Relaxed);
                match &bar {
                    Some(bar) => {
                        bar.set_position(sent + failed + deferred);
                        // A whole number: indicatif's own {per_sec} shows decimals.
                        bar.set_message(format!(
                            "({sent} ok, {failed} failed, {deferred} deferred) {:.0}/s",
                            sent as f64 / started.elapsed().as_secs_f64().max(0.001)
                        ));
                    }
                    None if stop || last_log.elapsed() >= Duration::from_secs(10) => {
                        let rate = sent as f64 / started.elapsed().as_secs_f64().max(0.001);
                        tracing::info!(
                            "{sent} sent, {failed} failed, {deferred} deferred of {total} ({rate:.0}/s)"
                        );
                        last_log = std::time::Instant::now();
                    }
                    None => {}
                }
                if stop {
                    if let Some(bar) = &bar {
                        // Cleared, not left drawn: the summary that follows
                        // says the same, and a bar left in place had the
                        // summary line run on after its last frame.
                        bar.finish_and_clear();
                        crate::log::set_progress_bar(None);
                    }
                    break;
                }
                // Woken early by `finish`, so the run ends when sending does.
                std::thread::park_timeout(Duration::from_millis(200));
            }
        });
        ProgressDisplay {
            done,
            thread: Some(thread),
        }
    }

    fn finish(mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::store::Counts;

    fn relay(
        name: &str,
        describe: &str,
        connections: usize,
        rate: Option<&str>,
    ) -> send::ReadyRelay {
        send::ReadyRelay {
            name: name.into(),
            describe: describe.into(),
            connections,
            rate: rate.map(|r| crate::deliver::throttle::Rate::parse(r).unwrap()),
        }
    }

    #[test]
    fn the_plan_names_each_relay_and_what_the_run_continues() {
        let before = Counts {
            sent: 5,
            unknown: 2,
            ..Counts::default()
        };
        let ready = send::Ready {
            post: Path::new("may.md"),
            title: "May",
            campaign: "may@2025",
            to_send: 100,
            relays: vec![
                relay("main", "smtp://a", 2, Some("10/s")),
                relay("backup", "smtp://b", 1, None),
            ],
            max_per_run: None,
            before: &before,
            resend_unknown: false,
            largest_html: 2048,
            picture_warnings: vec![],
        };
        // One relay without a rate: no time is guessed.
        assert_eq!(
            plan(&ready),
            "About to send \"May\" (may@2025) to 100 people through main (smtp://a) with 2 connection(s), \
             at most 10/s, and through backup (smtp://b) with 1 connection(s), no rate limit. \
             Continuing: 5 already sent, 2 of unknown outcome (not resent; add --resend-unknown to resend). \
             The largest email is 2.0 KB of HTML."
        );
        let fresh = Counts::default();
        let one = send::Ready {
            relays: vec![relay("default", "smtp://a", 4, Some("10/s"))],
            before: &fresh,
            max_per_run: Some(50),
            ..ready
        };
        // A single relay is named by its address alone.
        assert_eq!(
            plan(&one),
            "About to send \"May\" (may@2025) to 100 people through smtp://a with 4 connection(s), \
             at most 10/s, at most 50 this run; about 10 seconds. The largest email is 2.0 KB of HTML."
        );
    }
}
