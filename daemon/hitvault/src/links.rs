//! Accounts as both rooms open them, and the links printed for people.
//!
//! A leaf: the daemon opens the accounts at start (and prints the first-run
//! set-up link), and the CLI opens them offline for `hitvault user …` when
//! no daemon runs. Both print set-up links built here. The audit log sits
//! beside the accounts; the CLI's offline commands write it through
//! [`audit_cli`].

use std::net::SocketAddr;

use hitvault_accounts::{Accounts, AuditLog, Limits, Policy};

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
    let dir = cfg.data_dir.join(ACCOUNTS_DIR);
    let opened = match &cfg.cluster {
        // A cluster node's accounts change through the cluster's log only
        // (the daemon links them to it); opened by the CLI alone, they
        // refuse every change.
        Some(_) => Accounts::open_replicated(&dir, policy, Limits::default()),
        None => Accounts::open(&dir, policy, Limits::default(), now),
    };
    opened.map_err(|e| Failure::startup(format!("opening the accounts: {e}")))
}

/// Opens the audit log beside the accounts' journal (the accounts are
/// opened first: they make the directory, mode 0700).
pub fn open_audit(cfg: &Config) -> Result<AuditLog, Failure> {
    AuditLog::open(&cfg.data_dir.join(ACCOUNTS_DIR))
        .map_err(|e| Failure::startup(format!("opening the audit log: {e}")))
}

/// Unix milliseconds now (an audit entry's time).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Writes an entry of the command line (actor `cli`) into the audit log of
/// a data dir the caller holds the lock of.
pub fn audit_cli(
    cfg: &Config,
    kind: hitvault_accounts::Kind,
    site: Option<&str>,
    detail: serde_json::Value,
) -> Result<(), Failure> {
    let dir = cfg.data_dir.join(ACCOUNTS_DIR);
    std::fs::create_dir_all(&dir)
        .map_err(|e| Failure::runtime(format!("creating {}: {e}", dir.display())))?;
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    }
    let log = open_audit(cfg)?;
    let mut e = hitvault_accounts::NewEntry::new(now_ms(), hitvault_accounts::Actor::Cli, kind);
    e.site = site.map(str::to_owned);
    if let serde_json::Value::Object(m) = detail {
        e.detail = m;
    }
    log.append(e)
        .map(drop)
        .map_err(|e| Failure::runtime(format!("writing the audit log: {e}")))
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
