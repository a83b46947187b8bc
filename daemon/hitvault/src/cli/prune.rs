//! `hitvault prune [--dry-run]`: archive, then delete, hits older than their
//! site's retention period (see `crate::retention`): through the running
//! daemon's writer when there is one, else on the store directly.

use hitvault_store::{DB_FILE, Store, StoreOptions};

use super::client;
use crate::config::Config;
use crate::datadir::{self, CONTROL_SOCKET};
use crate::exit::{Exit, Failure, OrExit};
use crate::retention;

/// `hitvault prune [--dry-run]`: through the daemon, or on the store.
pub fn prune(cfg: &Config, dry_run: bool) -> Result<(), Failure> {
    let socket = cfg.data_dir.join(CONTROL_SOCKET);
    // A prune archives every expired hit before it deletes them (on a
    // cluster node, through the log): it may take minutes.
    let wait = retention::PASS_TIMEOUT + std::time::Duration::from_secs(60);
    let report: retention::Report = match client::connect_waiting(&socket, wait) {
        Some(conn) => {
            let path = if dry_run {
                "/prune?dry_run=1"
            } else {
                "/prune"
            };
            let reply = client::request(conn, "POST", path, None).or_exit(Exit::Runtime)?;
            if reply.status != 200 {
                // Exit 1 whatever the status, as for a backup.
                return Err(client::refusal(
                    reply.status,
                    &reply.body,
                    "the daemon refused the prune",
                )
                .with_exit(Exit::Runtime));
            }
            serde_json::from_slice(&reply.body)
                .or_exit_with(Exit::Runtime, |e| format!("bad reply from the daemon: {e}"))?
        }
        None => {
            if !cfg.data_dir.join(DB_FILE).exists() {
                return Err(Failure::usage(format!(
                    "no database in data dir {}",
                    cfg.data_dir.display()
                )));
            }
            let _lock = datadir::lock(&cfg.data_dir)?;
            let mut store =
                Store::open(&cfg.data_dir, &StoreOptions::default()).or_exit(Exit::Startup)?;
            let policy = retention::Policy::from_config(cfg);
            let r = retention::run(
                &mut store,
                &policy,
                retention::now_us(),
                dry_run,
                &mut || {},
            )
            .or_exit(Exit::Runtime)?;
            store.checkpoint().or_exit(Exit::Runtime)?;
            if !dry_run {
                let report = serde_json::to_value(&r).unwrap_or_default();
                crate::links::audit_cli(
                    cfg,
                    hitvault_accounts::Kind::Prune,
                    None,
                    hitvault_server::audit::prune_detail(&report),
                )?;
            }
            r
        }
    };
    retention::print(&report);
    Ok(())
}
