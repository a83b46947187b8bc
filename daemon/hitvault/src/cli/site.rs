//! `hitvault site add|list`: through the running daemon when there is one,
//! else on the store directly (its file lock keeps a daemon from starting
//! meanwhile).

use hitvault_server::SiteInfo;
use hitvault_store::{Store, StoreOptions};

use super::client;
use crate::config::Config;
use crate::datadir::{self, CONTROL_SOCKET};
use crate::exit::{Exit, Failure, OrExit};

/// What `hitvault site` was asked to do.
#[derive(Debug, clap::Subcommand)]
pub enum SiteCommand {
    /// Add a site by hostname.
    Add {
        hostname: String,
        /// Another hostname that counts as this site (repeatable).
        #[arg(long = "alias")]
        aliases: Vec<String>,
    },
    /// List the declared and added sites.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// `hitvault site ...`.
pub fn run(cfg: &Config, cmd: SiteCommand) -> Result<(), Failure> {
    let socket = cfg.data_dir.join(CONTROL_SOCKET);
    let sites = match client::connect(&socket) {
        Some(conn) => through_daemon(conn, &cmd)?,
        None => offline(cfg, &cmd)?,
    };
    match cmd {
        SiteCommand::Add { .. } => println!("added {}", sites[0].hostname),
        SiteCommand::List { json: true } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&sites).expect("sites serialise")
            );
        }
        SiteCommand::List { json: false } => {
            println!("{:<40} {:<8} ALIASES", "HOSTNAME", "ORIGIN");
            for s in sites {
                println!("{:<40} {:<8} {}", s.hostname, s.origin, s.aliases.join(","));
            }
        }
    }
    Ok(())
}

fn through_daemon(
    conn: std::os::unix::net::UnixStream,
    cmd: &SiteCommand,
) -> Result<Vec<SiteInfo>, Failure> {
    match cmd {
        SiteCommand::Add { hostname, aliases } => {
            let body = serde_json::json!({ "hostname": hostname, "aliases": aliases }).to_string();
            let reply = client::request(conn, "POST", "/sites", Some(body.as_bytes()))
                .or_exit(Exit::Runtime)?;
            if reply.status != 201 {
                return Err(client::refusal(
                    reply.status,
                    &reply.body,
                    "the daemon refused the request",
                ));
            }
            Ok(vec![
                serde_json::from_slice(&reply.body).or_exit(Exit::Runtime)?,
            ])
        }
        SiteCommand::List { .. } => {
            let reply = client::request(conn, "GET", "/sites", None).or_exit(Exit::Runtime)?;
            serde_json::from_slice(&reply.body)
                .or_exit_with(Exit::Runtime, |e| format!("bad reply from the daemon: {e}"))
        }
    }
}

fn offline(cfg: &Config, cmd: &SiteCommand) -> Result<Vec<SiteInfo>, Failure> {
    datadir::prepare(&cfg.data_dir)?;
    let mut store = Store::open(&cfg.data_dir, &StoreOptions::default()).or_exit(Exit::Startup)?;
    let declared = cfg.declared_sites();
    match cmd {
        SiteCommand::Add { hostname, aliases } => {
            let norm = |h: &String| {
                hitvault_core::sites::normalize_host(h)
                    .or_exit_with(Exit::Usage, |e| format!("{h:?}: {e}"))
            };
            let host = norm(hostname)?;
            let aliases = aliases.iter().map(norm).collect::<Result<Vec<_>, _>>()?;
            let mut reg = crate::sites::registry(&declared, &store).or_exit(Exit::Runtime)?;
            reg.add(&host, aliases.clone()).or_exit(Exit::Usage)?;
            let row = store
                .upsert_site(&host, &aliases, "runtime")
                .or_exit(Exit::Usage)?;
            Ok(vec![crate::sites::info(row)])
        }
        SiteCommand::List { .. } => {
            let rows = store.sites().or_exit(Exit::Runtime)?;
            Ok(crate::sites::infos(rows, &declared))
        }
    }
}

/// The hostname of every site, read from the store (no daemon runs; the
/// caller holds the data dir's lock).
pub fn offline_hostnames(cfg: &Config) -> Result<Vec<String>, Failure> {
    let store = Store::open(&cfg.data_dir, &StoreOptions::default()).or_exit(Exit::Startup)?;
    let rows = store.sites().or_exit(Exit::Runtime)?;
    Ok(crate::sites::infos(rows, &cfg.declared_sites())
        .into_iter()
        .map(|s| s.hostname)
        .collect())
}
