//! The data directory: the names of what the daemon keeps in it, and the
//! two steps every command that touches it takes first (create it with mode
//! 0700, then hold its lock).
//!
//! A leaf: the daemon and the CLI both use it, and it uses neither.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::exit::Failure;

/// File name of the control socket inside the data directory.
pub const CONTROL_SOCKET: &str = "control.sock";

/// File written once the daemon is ready: `{"pid": .., "listen": "host:port"}`.
/// Tools and tests read it to find a daemon started on port 0.
pub const RUN_FILE: &str = "run.json";

/// Directory of the durable queue's segments.
pub const QUEUE_DIR: &str = "queue";

/// Directory of scratch files (backup snapshots, DuckDB's spill files): the
/// store's, which opening the store creates.
pub use hitvault_store::TMP_DIR;

/// Directory of the accounts' journal (users, factors, sessions).
pub const ACCOUNTS_DIR: &str = "accounts";
/// Directory of the local CA and its server certificate (`tls.mode =
/// "local-ca"`).
pub const TLS_DIR: &str = "tls";

/// Directory of the daily salts.
pub const SALTS_DIR: &str = "salts";

/// Prefix of snapshot files in [`TMP_DIR`] (removed at start if a crash left one).
pub const SNAPSHOT_PREFIX: &str = "backup-";

/// Creates the data directory (mode 0700) if needed.
pub fn prepare(dir: &Path) -> Result<(), Failure> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure::startup(format!("cannot create data_dir {}: {e}", dir.display())))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
        Failure::startup(format!(
            "cannot set permissions on data_dir {}: {e}",
            dir.display()
        ))
    })
}

/// Takes an exclusive `flock` on the data directory itself, held until the
/// returned file is dropped (for the daemon: until it exits): a second daemon
/// on the same data dir stops here, before it touches the first one's control
/// socket (DuckDB's own lock comes later, after confinement).
pub fn lock(dir: &Path) -> Result<std::fs::File, Failure> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(dir)
        .map_err(|e| Failure::startup(format!("cannot open data_dir {}: {e}", dir.display())))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } < 0 {
        let e = std::io::Error::last_os_error();
        return Err(Failure::startup(
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                format!(
                    "another hitvault is already running on data_dir {}",
                    dir.display()
                )
            } else {
                format!("cannot lock data_dir {}: {e}", dir.display())
            },
        ));
    }
    Ok(f)
}
