//! `herald serve`: the unsubscribe server (see [`crate::listen::serve`]).

use std::net::SocketAddr;

use super::output::{self, say};
use crate::config::{Config, Override};
use crate::listen::serve::{self, Limits, Options};
use crate::{Fault, InputError, exit, unsubscribe};

/// Answer the unsubscribe links of the emails herald sends: a page with an
/// Unsubscribe button, and the one-click unsubscribe of Gmail, Yahoo and
/// Apple Mail. Run it behind your HTTPS proxy (see the README's
/// "Unsubscribes"), with `unsubscribe_url` pointing at it. Stops on Ctrl-C
/// or SIGTERM once the requests in progress are done.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address and port to listen on. Keep it on 127.0.0.1 behind a proxy.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8025")]
    listen: String,
    #[command(flatten)]
    journal: super::Journal,
    /// Requests per minute one visitor may make; more get "try again later".
    #[arg(long, value_name = "N", default_value_t = Limits::default().per_minute)]
    per_client_limit: u32,
    /// Connections one address may have open at once (as many again wait
    /// their turn; more are closed). Behind a proxy every connection comes
    /// from the proxy: set this to at least the proxy's own limit of
    /// connections to herald.
    #[arg(long, value_name = "N", default_value_t = Limits::default().per_address as u32,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    per_address_connections: u32,
    /// Print the summary at the end as JSON.
    #[arg(long)]
    json: bool,
    /// Seconds a client has to send its request (tests shorten it).
    #[arg(long, hide = true, value_name = "SECONDS")]
    client_timeout: Option<u64>,
}

impl Args {
    pub fn overrides(&self) -> Vec<Override> {
        self.journal.overrides()
    }
}

pub fn run(args: Args, config: &Config) -> anyhow::Result<i32> {
    let listen: SocketAddr = args.listen.parse().map_err(|_| {
        InputError::at(
            "--listen",
            format!(
                "`{}` is not an address and port; write it like 127.0.0.1:8025",
                args.listen
            ),
        )
    })?;
    let Some(keys) = unsubscribe::Keys::from_env()? else {
        return Err(InputError::at(
            unsubscribe::SECRET_VAR,
            format!(
                "not set: herald serve checks unsubscribe links with the same secret `herald send` \
                 signs them with. Set it (or {}_FILE) to that secret",
                unsubscribe::SECRET_VAR
            ),
        )
        .into());
    };
    let path = match &config.unsubscribe_url {
        Some(u) => Some(u.path().to_string()),
        None => {
            tracing::warn!(
                "`unsubscribe_url` is not set; links are answered at /unsubscribe. \
                 Set it to this server's https:// address so the emails point here"
            );
            None
        }
    };
    let name = config
        .newsletter_name
        .clone()
        .or_else(|| config.from.as_ref().and_then(|f| f.name.clone()))
        .unwrap_or_else(|| "our newsletter".into());
    let accent = config
        .accent_color
        .clone()
        .unwrap_or_else(|| crate::compose::render::DEFAULT_ACCENT.into());
    let location = crate::store::Location::from_config(config)?;
    let store = super::status::writable(&location)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Fault::io("start the server", &e))?;
    let summary = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
            InputError::at(
                "--listen",
                format!(
                    "cannot listen on {listen} ({e}). If another program uses that port, stop it \
                     or choose another with --listen"
                ),
            )
        })?;
        let bound = listener
            .local_addr()
            .map_err(|e| Fault::io("read the listening address", &e))?;
        tracing::info!(
            "listening on http://{bound} ({} unsubscribe key{}; journal {})",
            keys.len(),
            if keys.len() == 1 { "" } else { "s" },
            location.describe()
        );
        let options = Options {
            keys,
            name,
            accent,
            path,
            limits: limits(&args),
        };
        anyhow::Ok(serve::serve(listener, store, options, stop_signal()).await)
    })?;
    tracing::info!("stopped");
    report(&summary, args.json)?;
    Ok(exit::OK)
}

/// The server's limits, from the options.
fn limits(args: &Args) -> Limits {
    let mut l = Limits {
        per_minute: args.per_client_limit,
        per_address: args.per_address_connections as usize,
        ..Limits::default()
    };
    if let Some(t) = args.client_timeout {
        l.header_timeout = std::time::Duration::from_secs(t.max(1));
        l.body_timeout = l.header_timeout;
    }
    l
}

/// What the server did, on stdout: in words, or as JSON.
fn report(summary: &serve::Summary, json: bool) -> anyhow::Result<()> {
    if json {
        output::json(&serde_json::json!({
            "requests": summary.requests,
            "unsubscribed": summary.unsubscribed,
            "undone": summary.undone,
            "bad_links": summary.refused,
            "over_limit": summary.limited,
            "connections_refused": summary.crowded,
        }))?;
    } else {
        say!(
            "{} requests: {} unsubscribed, {} took it back, {} bad links, {} over the per-visitor limit, \
             {} connections closed (too many from one address)",
            summary.requests,
            summary.unsubscribed,
            summary.undone,
            summary.refused,
            summary.limited,
            summary.crowded
        )?;
    }
    Ok(())
}

/// Ctrl-C or SIGTERM (systemd's stop).
pub(super) async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    tracing::info!("stopping: finishing the requests in progress");
}
