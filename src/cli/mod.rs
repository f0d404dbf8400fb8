//! The command line: the parser, settings, logging and exit codes. Each
//! command is a file of its own (`preview`, `check`, `send`, `status`,
//! `config`); `output` is how results reach stdout.
//!
//! Results go to stdout (as JSON with `--json`); messages go to stderr
//! through [`crate::log`]. Exit codes are in [`crate::exit`] and the README.

mod bounces;
mod check;
mod config;
mod init;
pub(crate) mod output;
mod preview;
mod report;
mod send;
mod serve;
mod status;
mod store;
mod suppress;
mod terminal;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{ArgAction, Parser, Subcommand};

use crate::config::{Config, Override};
use crate::{Fault, InputError, exit};

#[derive(Parser, Debug)]
#[command(
    name = "herald",
    version,
    about = "Turns the monthly newsletter post into an email and sends it to your subscribers.",
    long_about = "Turns the monthly newsletter post (the Markdown file from the website) into an \
                  email that looks good on phones and computers, with a plain-text version.\n\n\
                  Start with `herald preview POST --watch` and open the address it prints: \
                  the email updates in your browser every time you save the post (or run \
                  `herald preview POST` and open the index.html it writes); then \
                  `herald check POST` lists anything that would go wrong in inboxes; \
                  `herald send POST --to you@example.org` sends you a test; \
                  `herald send POST --subscribers LIST.csv` sends the issue; `herald status` \
                  tells how it went, `herald report --out report.html` draws it as charts. `herald config` shows the settings in use and where each \
                  came from.",
    after_help = "Exit codes:\n  \
                  0  done\n  \
                  1  `check` found errors in the post\n  \
                  2  bad input: a post, setting, list or command line herald cannot use (the message says where); \
                  also `send` of an issue `check` finds errors in (--ignore-check-errors sends it anyway), and a test send \
                  (--to) to addresses that are all on the suppression list (`herald suppress remove` lifts one)\n  \
                  3  some people failed, were deferred (also: every relay's daily quota spent) or have an unknown outcome (see `herald status`); for `bounces`: some messages need a person (listed)\n  \
                  4  nothing to do (a finished campaign mails nobody new: --include-new does)\n  \
                  5  another herald is sending this campaign (for `bounces`: reading into this journal)\n  \
                  6  stopped by Ctrl-C or SIGTERM (run again to continue)\n  \
                  7  herald could not work: a full disk, an unreadable journal, a file it could not write\n  \
                  8  the mail relay was down or refused everything; nobody was lost, run again when it is back\n  \
                  9  a bug in herald: please report it\n\n\
                  Messages: -q for errors only, -v for more detail; HERALD_LOG=debug does the same as -v."
)]
pub struct Cli {
    /// Settings file (default: herald.yaml in this folder, if there is one).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Set any setting for this run, over herald.yaml and HERALD_* variables:
    /// --set subject="Our news". Can be given more than once; `herald config`
    /// lists the settings.
    #[arg(long, global = true, value_name = "NAME=VALUE")]
    set: Vec<String>,
    /// If the email is too long for Gmail (which hides everything after
    /// about 102 KB, the unsubscribe link too), make a digest instead: each
    /// section's start with a "Continue reading" button to the web version.
    /// Same as `fit: true` in herald.yaml.
    #[arg(long, global = true)]
    fit: bool,
    /// Say more about what herald does (-vv: even more).
    #[arg(long, short = 'v', global = true, action = ArgAction::Count)]
    verbose: u8,
    /// Print only errors on stderr.
    #[arg(long, short = 'q', global = true, conflicts_with = "verbose")]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    Preview(preview::Args),
    Check(check::Args),
    Send(Box<send::Args>),
    Status(status::Args),
    Report(report::Args),
    Serve(serve::Args),
    Bounces(bounces::Args),
    #[command(subcommand)]
    Suppress(suppress::Command),
    /// The journal itself: `herald store migrate --to postgres://...`
    /// copies it into PostgreSQL for several hosts to share.
    #[command(subcommand)]
    Store(store::Command),
    Config(config::Args),
    Init(init::Args),
}

/// `--journal DIR`, for the commands that use the journal.
#[derive(clap::Args, Debug)]
pub struct Journal {
    /// Folder of the journal (default .herald): the one `herald send` uses.
    #[arg(long, value_name = "DIR")]
    journal: Option<PathBuf>,
}

impl Journal {
    pub fn overrides(&self) -> Vec<Override> {
        self.journal
            .iter()
            .map(|p| Override::new("journal_dir", p.to_string_lossy(), "--journal"))
            .collect()
    }
}

/// Set by the panic hook: whatever `run` returns after a panic on any
/// thread, the run ends as a bug.
static PANICKED: AtomicBool = AtomicBool::new(false);

/// Runs herald with the process's arguments; returns the exit code.
pub fn main() -> i32 {
    // A panic is herald's fault, never the user's: say so plainly (no raw
    // backtrace talk), and exit with its own code.
    std::panic::set_hook(Box::new(|info| {
        PANICKED.store(true, Ordering::SeqCst);
        let what = match (
            info.payload().downcast_ref::<&str>(),
            info.payload().downcast_ref::<String>(),
        ) {
            (Some(s), _) => s.to_string(),
            (_, Some(s)) => s.clone(),
            _ => "a panic".to_string(),
        };
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "herald: this is a bug in herald ({what}{place}); please report it with the command you ran"
        );
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit::BAD_INPUT
            } else {
                exit::OK
            };
        }
    };
    crate::log::init(if cli.quiet {
        -1
    } else {
        cli.verbose.min(2) as i8
    });
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(cli)));
    let code = match result {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            tracing::error!("{e:#}");
            exit_code(&e)
        }
        Err(_) => exit::BUG,
    };
    if PANICKED.load(Ordering::SeqCst) {
        exit::BUG
    } else {
        code
    }
}

/// What an error means for the exit code: the user's input, or herald's
/// own trouble. An error of no known kind is herald's: better "check the
/// machine" than blaming a post that is fine.
fn exit_code(e: &anyhow::Error) -> i32 {
    for cause in e.chain() {
        // A compose error shows its stage's words as its own (transparent),
        // so the input error inside is not a link of the chain: ask it.
        let composed = cause.downcast_ref::<crate::compose::Error>();
        let sent = cause.downcast_ref::<crate::deliver::send::SendError>();
        if cause.is::<InputError>()
            || composed.is_some_and(crate::compose::Error::is_input)
            || sent.is_some_and(crate::deliver::send::SendError::is_input)
        {
            return exit::BAD_INPUT;
        }
        // It wraps an input error transparently: the chain does not show it.
        if let Some(e) = cause.downcast_ref::<crate::store::LocationError>() {
            return if e.input().is_some() {
                exit::BAD_INPUT
            } else {
                exit::INTERNAL
            };
        }
        if cause.is::<Fault>() {
            return exit::INTERNAL;
        }
    }
    exit::INTERNAL
}

/// The flags that are settings, as overrides on top of herald.yaml and
/// the environment, before any command runs: every command then sees the
/// same typed [`Config`], and an error names the flag.
fn overrides(cli: &Cli) -> Result<Vec<Override>, InputError> {
    let mut o = Vec::new();
    if cli.fit {
        o.push(Override::new("fit", "true", "--fit"));
    }
    match &cli.command {
        Command::Send(a) => o.extend(a.overrides()),
        Command::Status(a) => o.extend(a.overrides()),
        Command::Report(a) => o.extend(a.overrides()),
        Command::Serve(a) => o.extend(a.overrides()),
        Command::Bounces(a) => o.extend(a.overrides()),
        Command::Suppress(a) => o.extend(a.overrides()),
        Command::Store(a) => o.extend(a.overrides()),
        _ => {}
    }
    for s in &cli.set {
        o.push(Override::from_set(s)?);
    }
    Ok(o)
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    // A new folder needs no settings (and a broken herald.yaml where it is
    // run must not stop it from making another folder).
    if let Command::Init(args) = cli.command {
        return init::run(args);
    }
    let overrides = overrides(&cli)?;
    let config = Config::load(cli.config.as_deref(), &overrides)?;
    tracing::debug!(
        "settings file: {}",
        config
            .file
            .as_deref()
            .map_or("none".into(), |p| p.display().to_string())
    );
    for e in config.entries().iter().filter(|e| e.source != "default") {
        // Values only; secrets are not settings, so none can show here.
        tracing::debug!(
            "{} = {} ({})",
            e.name,
            e.value.as_deref().unwrap_or(""),
            e.source
        );
    }
    match cli.command {
        Command::Preview(args) => {
            // `--watch` reads the settings again whenever they change.
            let file = cli.config.clone();
            let reload = Box::new(move || {
                Config::load(file.as_deref(), &overrides).map(|c| (c.compose(), config_path(&c)))
            });
            preview::run(args, &config, reload)
        }
        Command::Check(args) => check::run(args, &config),
        Command::Send(args) => send::run(*args, &config),
        Command::Status(args) => status::run(args, &config),
        Command::Report(args) => report::run(args, &config),
        Command::Serve(args) => serve::run(args, &config),
        Command::Bounces(args) => bounces::run(args, &config),
        Command::Suppress(args) => suppress::run(args, &config),
        Command::Store(args) => store::run(args, &config),
        Command::Config(args) => config::run(args, &config),
        Command::Init(args) => init::run(args),
    }
}

/// The path errors about settings in general are reported against.
fn config_path(config: &Config) -> PathBuf {
    config
        .file
        .clone()
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_one_exit_code_each() {
        let input = anyhow::Error::new(InputError::new(std::path::Path::new("p.md"), Some(1), "x"));
        assert_eq!(exit_code(&input), exit::BAD_INPUT);
        let fault = anyhow::Error::new(Fault::new("cannot write", "check the disk"));
        assert_eq!(exit_code(&fault), exit::INTERNAL);
        // Wrapped in context, still found.
        assert_eq!(
            exit_code(&fault.context("while previewing")),
            exit::INTERNAL
        );
        // A post compose cannot use is the user's to fix, even though the
        // compose error hides the input error inside it from the chain;
        // MJML that mrml refuses is herald's.
        let post = crate::compose::Error::Input(InputError::new(
            std::path::Path::new("p.md"),
            Some(1),
            "x",
        ));
        assert_eq!(exit_code(&anyhow::Error::new(post)), exit::BAD_INPUT);
        let mjml = crate::compose::render::RenderError::Parse("odd".into());
        let mjml = anyhow::Error::new(crate::compose::Error::Render(mjml));
        assert_eq!(exit_code(&mjml.context("while sending")), exit::INTERNAL);
        // The same for a send's error, which wraps its sources transparently:
        // a list to fix is the user's, a relay that refuses the settings is not.
        use crate::deliver::send::SendError;
        let list = SendError::from(InputError::new(std::path::Path::new("l.csv"), Some(2), "x"));
        assert_eq!(exit_code(&anyhow::Error::new(list)), exit::BAD_INPUT);
        let post = SendError::from(crate::compose::Error::Input(InputError::new(
            std::path::Path::new("p.md"),
            None,
            "x",
        )));
        assert_eq!(exit_code(&anyhow::Error::new(post)), exit::BAD_INPUT);
        let relay = anyhow::Error::new(SendError::Relay("535 authentication failed".into()));
        assert_eq!(exit_code(&relay), exit::INTERNAL);
        // Anything else is herald's trouble, not the user's input.
        let io = anyhow::Error::new(std::io::Error::other("odd"));
        assert_eq!(exit_code(&io), exit::INTERNAL);
    }

    #[test]
    fn the_help_parses_and_lists_every_command() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let names: Vec<String> = Cli::command()
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "preview", "check", "send", "status", "report", "serve", "bounces", "suppress",
                "store", "config", "init"
            ]
        );
    }
}
