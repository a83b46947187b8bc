//! The commands other than `serve` and `sandbox`: each asks a running
//! daemon through its control socket ([`client`]) when one answers, and
//! otherwise does the work on the data dir itself, holding its lock.
//!
//! One file per command. Nothing here reaches into `crate::daemon` (a test
//! in the tests crate checks it): what the two sides share lives in the
//! leaves (`datadir`, `exit`, `config`, `control`, `sites`, `retention`,
//! `replay`, `links`).

pub mod args;
pub mod audit;
pub mod backup;
pub mod client;
pub mod cluster;
pub mod import;
pub mod import_plausible;
pub mod prune;
pub mod site;
pub mod takeout;
pub mod token;
pub mod user;

/// Refuses a command a cluster node does not take yet (imports: they are
/// not replicated through the log).
pub fn refuse_on_cluster(cfg: &crate::config::Config) -> Result<(), crate::exit::Failure> {
    if cfg.cluster.is_some() {
        return Err(crate::exit::Failure::usage(
            crate::config::NO_IMPORT_ON_CLUSTER.to_owned(),
        ));
    }
    Ok(())
}
