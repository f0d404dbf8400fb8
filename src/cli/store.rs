//! `herald store migrate --to postgres://...`: copies the SQLite journal
//! into a PostgreSQL database, for growing past one machine.

use clap::Subcommand;

use super::output::{self, say};
use crate::config::{Config, Override};
use crate::store::{self, Location, Tally, migrate::MigrateError};
use crate::words::count;
use crate::{Fault, InputError, exit};

/// The journal itself.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Copy this journal (campaigns and where each recipient is, the
    /// suppression list, bounces) into a PostgreSQL database, so several
    /// hosts can share it. Safe to run again: what the database already
    /// has stays as it is, and only what is missing is added. The counts
    /// before and after are printed and must match. Then set `database_url`
    /// in herald.yaml to the same address.
    Migrate(MigrateArgs),
}

#[derive(clap::Args, Debug)]
pub struct MigrateArgs {
    /// The database: postgres://USER@HOST/DATABASE. The password comes
    /// from HERALD_DATABASE_PASSWORD (or HERALD_DATABASE_PASSWORD_FILE),
    /// never from here; `database_ca_file` names a private CA.
    #[arg(long, value_name = "URL")]
    to: String,
    #[command(flatten)]
    journal: super::Journal,
    /// Print the counts as JSON.
    #[arg(long)]
    json: bool,
}

impl Command {
    pub fn overrides(&self) -> Vec<Override> {
        match self {
            Command::Migrate(a) => a.journal.overrides(),
        }
    }
}

pub fn run(command: Command, config: &Config) -> anyhow::Result<i32> {
    match command {
        Command::Migrate(a) => migrate(a, config),
    }
}

fn migrate(a: MigrateArgs, config: &Config) -> anyhow::Result<i32> {
    let dir = &config.journal_dir;
    super::status::refuse_file(&Location::Journal(dir.clone()))?;
    let m = store::migrate::migrate(&a.to, dir, config.database_ca_file.as_deref()).map_err(
        |e| -> anyhow::Error {
            match e {
                MigrateError::BadAddress(why) => InputError::at("--to", why).into(),
                MigrateError::NoJournal(dir) => InputError::new(
                    &dir,
                    None,
                    "there is no journal here to copy; point --journal or `journal_dir` at the folder `herald send` uses",
                )
                .into(),
                MigrateError::Input(e) => e.into(),
                MigrateError::Journal(e) => super::status::unreadable(e).into(),
                MigrateError::Database(e) => super::status::cannot_open_database(e).into(),
            }
        },
    )?;
    let same = m.counts_match();
    if a.json {
        output::json(&serde_json::json!({
            "from": m.from,
            "to": m.to,
            "before": m.before,
            "after": m.after,
            "match": same,
        }))?;
    } else {
        let line = |t: &Tally| {
            format!(
                "{}, {}, {}, {}",
                count(t.campaigns, "campaign", "campaigns"),
                count(t.recipients, "recipient", "recipients"),
                count(t.suppressions, "suppression", "suppressions"),
                count(t.bounces, "bounce", "bounces")
            )
        };
        say!("Before (SQLite {}): {}", m.from, line(&m.before))?;
        say!("After (PostgreSQL {}): {}", m.to, line(&m.after))?;
        if same {
            say!(
                "The counts match. Set `database_url: {}` in herald.yaml (and HERALD_DATABASE_PASSWORD) on every host.",
                m.url
            )?;
        }
    }
    if !same {
        anyhow::bail!(Fault::new(
            "the counts after the copy do not match the journal's",
            "run the same command again (it only adds what is missing); if they still differ, \
             someone may have changed the database meanwhile",
        ));
    }
    Ok(exit::OK)
}
