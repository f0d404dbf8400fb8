//! `herald store migrate --to postgres://...`: copies the SQLite journal
//! into a PostgreSQL database, for growing past one machine.

use clap::Subcommand;

use super::output::{self, say};
use crate::config::{Config, Override};
use crate::store::{Location, Postgres, Tally, postgres::Target};
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

/// What a copy did: the counts on both sides.
struct Migration {
    /// The journal copied, for people.
    from: String,
    /// The database, for people (no password).
    to: String,
    /// The address to put in `database_url`.
    url: String,
    before: Tally,
    after: Tally,
}

impl Migration {
    fn counts_match(&self) -> bool {
        self.after == self.before
    }
}

fn migrate(a: MigrateArgs, config: &Config) -> anyhow::Result<i32> {
    let m = copy(&a.to, config)?;
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
                "{} campaigns, {} recipients, {} suppressions, {} bounces",
                t.campaigns, t.recipients, t.suppressions, t.bounces
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

/// Copies the journal into the database at `to`, and counts both.
fn copy(to: &str, config: &Config) -> anyhow::Result<Migration> {
    let url = crate::config::database(to).map_err(|e| InputError::at("--to", e.to_string()))?;
    let source = Location::Journal(config.journal_dir.clone());
    let Some(lite) = super::status::open_journal(&source)? else {
        anyhow::bail!(InputError::new(
            &config.journal_dir,
            None,
            "there is no journal here to copy; point --journal or `journal_dir` at the folder `herald send` uses"
        ));
    };
    let password = crate::config::secret("HERALD_DATABASE_PASSWORD")?;
    let ca = match &config.database_ca_file {
        Some(f) => Some(crate::tls::read_ca_pem(f, "database CA file")?),
        None => None,
    };
    let target = Target::new(
        url.as_str(),
        password.as_ref().map(|p| p.expose()),
        ca.as_deref(),
    )
    .map_err(|e| InputError::at("--to", e.to_string()))?;
    let dest = Location::Postgres(Box::new(target.clone()));
    let dump = lite.dump().map_err(super::status::unreadable)?;
    let before = dump.tally();
    tracing::info!(
        "copying {} campaign(s), {} recipient record(s), {} suppression(s) and {} bounce record(s) from {}",
        before.campaigns,
        before.recipients,
        before.suppressions,
        before.bounces,
        source.describe()
    );
    let mut pg = Postgres::open(&target).map_err(|e| super::status::cannot_open(&dest, e))?;
    use crate::store::Store;
    pg.load(&dump)
        .map_err(|e| super::status::cannot_open(&dest, e))?;
    let after = pg
        .tally(&dump)
        .map_err(|e| super::status::cannot_open(&dest, e))?;
    Ok(Migration {
        from: source.describe(),
        to: target.shown().to_string(),
        url: url.to_string(),
        before,
        after,
    })
}
