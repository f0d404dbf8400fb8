//! herald's messages on stderr, through `tracing`.
//!
//! Plain lines, the same under cron as on a terminal: `herald: message`,
//! `herald: warning: message`, `herald: error: message`; debug and trace
//! lines also name the module they come from. No timestamps by default
//! (systemd's journal and the terminal have their own; tests and scripts
//! read the lines as they are); `HERALD_LOG_TIME=1` starts each line with
//! the time in UTC to the second (`2026-12-06T11:52:03Z herald: ...`), for
//! a cron job appending to a file. Colour only on a terminal. `-q` keeps
//! errors only, `-v` adds debug lines, `-vv` trace; `HERALD_LOG` (tracing's
//! filter syntax, like `debug` or `herald::config=trace`) wins over both.
//!
//! While a progress bar is on screen, a line printed through it would be
//! torn apart by the next redraw: [`set_progress_bar`] registers the bar,
//! and each line is then written with the bar hidden for that moment.
//!
//! A leaf module: of herald's, only the clock (another leaf) is used here.

use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use indicatif::ProgressBar;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// The variable that sets the log filter, over `-q` and `-v`.
pub const ENV: &str = "HERALD_LOG";
/// The variable that puts the time in front of each line (`1`, `true`).
pub const TIME_ENV: &str = "HERALD_LOG_TIME";

static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// How much to say: -1 errors only (`-q`), 0 the usual, 1 debug (`-v`),
/// 2 and more trace (`-vv`).
pub fn init(verbosity: i8) {
    let level = match verbosity {
        i8::MIN..=-1 => "error",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    // Other crates' chatter stays out unless asked for with HERALD_LOG:
    // it means nothing to the people who run herald.
    let default = format!("warn,herald={level}");
    let filter = std::env::var(ENV)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let time = std::env::var(TIME_ENV)
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"));
    // A second init (tests) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(AboveBar)
        .event_format(Plain { ansi, time })
        .try_init();
}

/// The progress bar on screen now, if any: log lines are written above it.
pub fn set_progress_bar(bar: Option<ProgressBar>) {
    *BAR.lock().unwrap_or_else(|e| e.into_inner()) = bar;
}

/// `herald: warning: ...`, with the level painted on a terminal.
struct Plain {
    ansi: bool,
    /// `HERALD_LOG_TIME`: the time first, ISO 8601 in UTC to the second.
    time: bool,
}

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let paint = |code: &str, text: &str| {
            if self.ansi {
                format!("\x1b[{code}m{text}\x1b[0m")
            } else {
                text.to_string()
            }
        };
        if self.time {
            write!(
                writer,
                "{} ",
                crate::clock::now().strftime("%Y-%m-%dT%H:%M:%SZ")
            )?;
        }
        write!(writer, "herald: ")?;
        match *meta.level() {
            Level::ERROR => write!(writer, "{} ", paint("1;31", "error:"))?,
            Level::WARN => write!(writer, "{} ", paint("1;33", "warning:"))?,
            Level::INFO => {}
            Level::DEBUG => write!(writer, "{} {}: ", paint("2", "debug:"), meta.target())?,
            Level::TRACE => write!(writer, "{} {}: ", paint("2", "trace:"), meta.target())?,
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Makes one [`Line`] per event.
struct AboveBar;

impl<'a> MakeWriter<'a> for AboveBar {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line(Vec::new())
    }
}

/// One formatted event, written to stderr in one go when dropped, with the
/// progress bar (if any) hidden meanwhile.
struct Line(Vec<u8>);

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let write = || {
            // Nowhere left to report a failure to write to stderr.
            let _ = std::io::stderr().lock().write_all(&self.0);
        };
        let bar = BAR.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match bar {
            Some(bar) if !bar.is_hidden() => bar.suspend(write),
            _ => write(),
        }
    }
}
