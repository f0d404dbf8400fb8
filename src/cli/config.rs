//! `herald config`: the settings in effect and where each came from.

use super::output::{self, say};
use crate::config::{self, Config};
use crate::exit;

/// Show the settings in effect: each value and where it came from
/// (default, herald.yaml:LINE, a HERALD_* variable or a flag). Secrets are
/// shown only as (set) or (not set).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args, config: &Config) -> anyhow::Result<i32> {
    let entries = config.entries();
    // Secrets: only whether they are there and in which variable, never the
    // value, so this output can be pasted into a support request.
    let mut secrets: Vec<(String, String, Option<String>)> = config::SECRETS
        .iter()
        .map(|(name, what)| {
            (
                name.to_string(),
                what.to_string(),
                config::secret_source(name),
            )
        })
        .collect();
    // Each relay of `relays:` has a password variable of its own.
    for r in &config.relays {
        secrets.push((
            r.password_env.clone(),
            format!("the password of relay `{}`", r.name),
            config::secret_source(&r.password_env),
        ));
    }
    // Which store: said without connecting (or reading the password).
    let (store_kind, store_place) = match &config.database_url {
        Some(url) => (
            "postgres",
            url.to_string(), /* no password can be in it: refused when read */
        ),
        None => (
            "sqlite",
            config
                .journal_dir
                .join(crate::store::sqlite::FILE)
                .display()
                .to_string(),
        ),
    };
    if args.json {
        let secrets: Vec<_> = secrets
            .iter()
            .map(|(name, what, source)| {
                serde_json::json!({
                    "name": name,
                    "about": what,
                    "set": source.is_some(),
                    "source": source,
                })
            })
            .collect();
        output::json(&serde_json::json!({
            "file": config.file,
            "store": {"kind": store_kind, "place": store_place},
            "settings": entries,
            "secrets": secrets,
        }))?;
        return Ok(exit::OK);
    }
    match &config.file {
        Some(f) => say!("Settings file: {}", f.display())?,
        None => say!(
            "Settings file: none ({} is not in this folder; --config names one)",
            config::DEFAULT_FILE
        )?,
    }
    match store_kind {
        "postgres" => say!(
            "Store: PostgreSQL at {store_place} (database_url; shared by every host that names it)"
        )?,
        _ => say!(
            "Store: SQLite journal {store_place} (this machine only; set database_url to share one)"
        )?,
    }
    let width = entries.iter().map(|e| e.name.len()).max().unwrap_or(0);
    for e in &entries {
        let value = e.value.as_deref().unwrap_or("(not set)");
        // A multi-line postal address stays on this setting's line.
        let value = value.replace('\n', "\\n");
        say!("{:width$}  {value}  [{}]", e.name, e.source)?;
    }
    say!("Secrets (from the environment only):")?;
    for (name, what, source) in &secrets {
        match source {
            Some(var) => say!("  {name}: (set) in {var}; {what}")?,
            None => {
                say!("  {name}: (not set); {what} (or {name}_FILE naming a file that holds it)")?
            }
        }
    }
    Ok(exit::OK)
}
