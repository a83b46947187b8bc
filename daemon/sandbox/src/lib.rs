//! `hitvault-sandbox`: what the kernel lets the daemon do, and proof of it.
//!
//! This crate owns the confinement of the hitvault process:
//! - [`privileges`]: switch from root to the configured user, clear every
//!   capability, set `no_new_privs`;
//! - [`landlock`]: file and TCP-port rules derived from a [`Spec`] (which the
//!   caller derives from its configuration), best effort across Landlock ABIs;
//! - [`seccomp`]: the syscall allow-list kept as reviewed data in
//!   `policy/seccomp.json`, compiled into the binary, applied to every thread;
//! - [`notify`]: the sd-notify messages (READY, STATUS, WATCHDOG, STOPPING);
//! - [`check`]: tries forbidden and needed actions under the same confinement
//!   and reports each (`hitvault sandbox check`).
//!
//! It never reads configuration files or the environment on its own (the one
//! exception is [`notify::Notifier::from_process_env`], named as such), never
//! starts threads, never uses async code, and never loosens a restriction once
//! applied: every step here only takes rights away.
//!
//! # Startup order
//! Open files and bind sockets first, then [`confine`] (privileges, then
//! Landlock, then seccomp), then start the async runtime and DuckDB. Landlock
//! below ABI 8 restricts only the calling thread and the threads it creates
//! afterwards, and capabilities are per thread: [`confine`] must run while
//! the process has a single thread.

pub mod check;
pub mod landlock;
pub mod notify;
pub mod privileges;
pub mod seccomp;
pub mod syscall_names;

use std::fmt;
use std::path::PathBuf;

/// What the daemon needs from the system, derived from its configuration by
/// the caller: everything else is refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Spec {
    /// Files and directories the daemon reads (configuration file, TLS
    /// certificates, GeoIP database, token files). Each must exist.
    pub read_only: Vec<PathBuf>,
    /// Directories the daemon reads and writes (the data dir, export and
    /// archive dirs). Each must exist.
    pub read_write: Vec<PathBuf>,
    /// TCP ports the daemon binds (its listeners). Port 0 is ignored: bind
    /// ephemeral ports before confining.
    pub bind_tcp: Vec<u16>,
    /// TCP ports the daemon may connect to (cluster peers). Empty: no outbound
    /// TCP connection at all.
    pub connect_tcp: Vec<u16>,
    /// The unprivileged user to become when started as root.
    pub user: Option<String>,
}

impl Spec {
    /// The rules this spec produces with the seccomp filter in enforce mode,
    /// one human-readable line each, in the order they are applied.
    pub fn rules(&self) -> Vec<String> {
        self.rules_with(seccomp::Mode::Enforce)
    }

    /// The rules this spec produces with the seccomp filter in `mode` (for
    /// `hitvault sandbox show`), in the order they are applied.
    pub fn rules_with(&self, mode: seccomp::Mode) -> Vec<String> {
        let mut out = Vec::new();
        match &self.user {
            Some(u) => out.push(format!(
                "privileges: when started as root, switch to user {u:?} (no supplementary groups)"
            )),
            None => out.push("privileges: keep the current user (no user configured)".to_owned()),
        }
        out.push(
            "privileges: clear all capabilities (permitted, effective, inheritable, ambient, bounding set)".to_owned(),
        );
        out.push("privileges: set no_new_privs".to_owned());
        for p in &self.read_only {
            out.push(format!("landlock: read-only  {} (configured)", p.display()));
        }
        for p in &self.read_write {
            out.push(format!("landlock: read-write {} (configured)", p.display()));
        }
        for (p, why) in landlock::SYSTEM_READ_ONLY {
            out.push(format!(
                "landlock: read-only  {p} (system, if present: {why})"
            ));
        }
        out.push("landlock: execute nothing, anywhere".to_owned());
        let ports = |v: &[u16]| {
            let v: Vec<String> = v
                .iter()
                .filter(|p| **p != 0)
                .map(|p| p.to_string())
                .collect();
            if v.is_empty() {
                "none".to_owned()
            } else {
                v.join(", ")
            }
        };
        out.push(format!(
            "landlock: bind TCP ports {} (ABI >= 4)",
            ports(&self.bind_tcp)
        ));
        out.push(format!(
            "landlock: connect to TCP ports {} (ABI >= 4)",
            ports(&self.connect_tcp)
        ));
        out.push("landlock: no signals to, and no abstract unix sockets of, processes outside the sandbox (ABI >= 6)".to_owned());
        let allowed = seccomp::allowed().map(|v| v.len()).unwrap_or(0)
            + if self.connect_tcp.is_empty() {
                0
            } else {
                seccomp::cluster().map(|v| v.len()).unwrap_or(0)
            };
        let other = match mode {
            seccomp::Mode::Enforce => {
                "any other syscall kills the process (SIGSYS, after a line on stderr naming it)"
            }
            seccomp::Mode::Audit => {
                "any other syscall is logged and let through (audit mode: diagnosis only)"
            }
        };
        out.push(format!(
            "seccomp: {allowed} allow-list entries (policy/seccomp.json), clone3 answered ENOSYS, {other}"
        ));
        out
    }
}

/// Everything [`confine`] did.
#[derive(Clone, Debug)]
pub struct ConfineReport {
    /// User, groups, capabilities, no_new_privs.
    pub privileges: privileges::PrivilegeReport,
    /// The Landlock ABI and what it enforces.
    pub landlock: landlock::LandlockReport,
    /// The seccomp filters installed.
    pub seccomp: seccomp::SeccompReport,
}

impl fmt::Display for ConfineReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}; {}; {}",
            self.privileges, self.landlock, self.seccomp
        )
    }
}

/// A confinement step failed. The process may be partly confined: exit.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// Switching user or clearing capabilities failed.
    #[error(transparent)]
    Privileges(#[from] privileges::PrivilegeError),
    /// A path could not be opened or Landlock refused the ruleset.
    #[error(transparent)]
    Landlock(#[from] landlock::LandlockError),
    /// The seccomp policy did not compile or could not be installed.
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    /// Threads already exist: they would escape Landlock (below ABI 8) and
    /// keep their capabilities.
    #[error(
        "confinement must happen while the process has one thread; it has {0} (a thread was started too early)"
    )]
    Threads(usize),
    /// The thread count could not be read from /proc.
    #[error("cannot count the threads of this process (/proc/self/task): {0}")]
    CountThreads(std::io::Error),
}

/// The number of threads of the calling process.
pub fn thread_count() -> std::io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// Confines the calling process: [`privileges::drop_to`], then
/// [`landlock::apply`], then [`seccomp::apply`] in `mode`.
///
/// Call it once, while the process has a single thread, after every file the
/// daemon needs outside the spec is open and every listener is bound, and
/// before the async runtime and DuckDB start.
///
/// Refuses ([`ConfineError::Threads`]) when more than one thread exists, so
/// that a thread started too early cannot escape unnoticed.
pub fn confine(spec: &Spec, mode: seccomp::Mode) -> Result<ConfineReport, ConfineError> {
    let threads = thread_count().map_err(ConfineError::CountThreads)?;
    if threads != 1 {
        return Err(ConfineError::Threads(threads));
    }
    landlock::check_paths(spec)?;
    let user = spec.user.as_deref().map(privileges::lookup).transpose()?;
    let filters = seccomp::Filters::compile_for(mode, !spec.connect_tcp.is_empty())?;
    confine_with(spec, user.as_ref(), &filters)
}

/// [`confine`] with the user already looked up and the filters compiled, so
/// that a forked child runs nothing but system calls and small allocations.
pub(crate) fn confine_with(
    spec: &Spec,
    user: Option<&privileges::User>,
    filters: &seccomp::Filters,
) -> Result<ConfineReport, ConfineError> {
    let privileges = privileges::drop_to_user(user)?;
    let landlock = landlock::apply(spec)?;
    let seccomp = filters.apply()?;
    Ok(ConfineReport {
        privileges,
        landlock,
        seccomp,
    })
}
