//! Accounts as both rooms open them, and the links printed for people.
//!
//! A leaf: the daemon opens the accounts at start (and prints the first-run
//! set-up link), and the CLI opens them offline for `hitvault user …` when
//! no daemon runs. Both print set-up links built here.

use std::net::SocketAddr;

use hitvault_accounts::{Accounts, Limits, Policy};

use crate::config::Config;
use crate::datadir::ACCOUNTS_DIR;
use crate::exit::Failure;

/// Opens the accounts kept in the data dir (the caller holds its lock, or
/// is the daemon).
pub fn open_accounts(cfg: &Config) -> Result<Accounts, Failure> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let policy = Policy {
        require_second_factor: cfg.require_second_factor,
        idle_secs: cfg.session_idle_minutes * 60,
        absolute_secs: cfg.session_lifetime_hours * 3600,
    };
    Accounts::open(
        &cfg.data_dir.join(ACCOUNTS_DIR),
        policy,
        Limits::default(),
        now,
    )
    .map_err(|e| Failure::startup(format!("opening the accounts: {e}")))
}

/// The address people reach the dashboard at: the first configured
/// hostname (over HTTPS unless TLS is off), else the listen address over
/// HTTP (an unspecified address shown as loopback, for an SSH tunnel).
pub fn base_url(cfg: &Config, local: SocketAddr) -> String {
    if let Some(name) = cfg.hostnames.first() {
        let tls = cfg.tls_mode != crate::config::TlsMode::Off;
        let scheme = if tls { "https" } else { "http" };
        let port = match (tls, local.port()) {
            (true, 443) | (false, 80) => String::new(),
            (_, p) => format!(":{p}"),
        };
        let name = if name.parse::<std::net::Ipv6Addr>().is_ok() {
            format!("[{name}]")
        } else {
            name.clone()
        };
        return format!("{scheme}://{name}{port}");
    }
    let ip = local.ip();
    let host = if ip.is_unspecified() || ip.to_canonical().is_loopback() {
        format!("127.0.0.1:{}", local.port())
    } else {
        local.to_string()
    };
    format!("http://{host}")
}

/// The one-time set-up link of `token`.
pub fn setup_url(cfg: &Config, local: SocketAddr, token: &str) -> String {
    format!("{}/setup/{token}", base_url(cfg, local))
}
