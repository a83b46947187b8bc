//! The daemon's confinement, derived from its configuration: which account
//! it becomes, what Landlock lets it touch, which seccomp mode applies, and
//! the `hitvault sandbox show|check` commands that print and prove it.
//!
//! Owns the mapping from [`Config`] to [`Spec`] (one place, so `serve`,
//! `sandbox show` and `sandbox check` can never disagree) and the hand-over
//! of the data dir to the configured user. The mechanisms themselves live in
//! `hitvault-sandbox`.
//!
//! What the spec holds, and why:
//! - read-write: `data_dir` (DuckDB's file, its WAL and `tmp/`, the
//!   queue, the salts, `run.json`, `control.sock`, and by default the
//!   retention archive `archive/`), and `retention.archive_dir` when it is
//!   set outside the data dir (created before confinement);
//! - read-only: the directories of `tls.cert_file` and `tls.key_file`
//!   (as written and as their links resolve), which are read again when
//!   they change (a renewal writes new files beside the old ones, which a
//!   rule on the files themselves would not cover). The configuration file,
//!   the GeoIP database and the ingest token are read before confinement,
//!   so no rule grants them afterwards (the system paths of
//!   `hitvault_sandbox::landlock::SYSTEM_READ_ONLY` are always added);
//! - bind: the `listen` port and, on a cluster node, the `cluster.bind`
//!   port (both already bound before confinement);
//! - connect: on a cluster node, the ports of `cluster.peers` (and seccomp
//!   adds its `cluster` section: TCP sockets); otherwise nothing, so every
//!   TCP connect is refused where the kernel has Landlock ABI 4.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use hitvault_sandbox::check;
use hitvault_sandbox::landlock::LandlockError;
use hitvault_sandbox::privileges::{self, User};
use hitvault_sandbox::{ConfineError, ConfineReport, Spec, seccomp};

use crate::config::{Config, ConfigError, LandlockSetting, SeccompSetting, bad};
use crate::datadir;
use crate::exit::Failure;

/// The sandbox rules of this configuration.
pub fn spec(cfg: &Config) -> Spec {
    Spec {
        read_only: tls_dirs(cfg),
        read_write: std::iter::once(cfg.data_dir.clone())
            .chain(
                cfg.archive_dir
                    .clone()
                    .filter(|a| !a.starts_with(&cfg.data_dir)),
            )
            .collect(),
        bind_tcp: [cfg.listen.port()]
            .into_iter()
            .chain(cfg.cluster.as_ref().map(|c| c.bind.port()))
            .filter(|p| *p != 0)
            .collect(),
        connect_tcp: cfg
            .cluster
            .iter()
            .flat_map(|c| c.peers.values().map(|a| a.port()))
            .collect::<std::collections::BTreeSet<u16>>()
            .into_iter()
            .collect(),
        user: cfg.user.clone(),
    }
}

/// The directories of `tls.cert_file` and `tls.key_file` (as written and as
/// their links resolve), read again whenever the files change.
pub fn tls_dirs(cfg: &Config) -> Vec<PathBuf> {
    match (&cfg.tls_mode, &cfg.tls_cert_file, &cfg.tls_key_file) {
        (crate::config::TlsMode::Files, Some(c), Some(k)) => {
            hitvault_tls::reload_dirs(&[c.as_path(), k.as_path()])
        }
        _ => vec![],
    }
}

fn euid() -> u32 {
    // SAFETY: a plain query.
    unsafe { libc::geteuid() }
}

/// Checks `user` against the way the process was started. Returns the
/// account to hand the data dir to: `Some` only when running as root (the
/// switch happens in [`confine`]).
///
/// Started as root without `user`, or with a `user` that does not exist, or
/// not as root with a `user` other than the current account: a configuration
/// error naming `user` (exit 2).
pub fn resolve_user(cfg: &Config) -> Result<Option<User>, ConfigError> {
    let euid = euid();
    crate::config::require_user_when_root(cfg, euid)?;
    let Some(name) = &cfg.user else {
        return Ok(None);
    };
    let user =
        privileges::lookup(name).map_err(|e| bad("user", "the configuration", e.to_string()))?;
    if user.uid == 0 {
        return Err(bad(
            "user",
            "the configuration",
            format!("{name:?} has uid 0: configure an unprivileged account"),
        ));
    }
    if euid == 0 {
        return Ok(Some(user));
    }
    if user.uid != euid {
        return Err(bad(
            "user",
            "the configuration",
            format!(
                "{name:?} is uid {}, but hitvault runs as uid {euid} and only root can switch \
                 users: start it as root or as {name:?}, or unset `user`",
                user.uid
            ),
        ));
    }
    Ok(None)
}

/// Hands `dir` and everything under it to `user` (as systemd does with a
/// `StateDirectory=`): files that root wrote there (the offline `hitvault
/// site add`, an earlier run as root) would otherwise be unwritable once the
/// daemon has switched. Never follows a symbolic link below `dir`, and leaves
/// alone (with a warning) any non-directory with more than one hard link,
/// which the daemon never creates. Returns how many entries changed owner.
pub fn hand_over(dir: &Path, user: &User) -> io::Result<usize> {
    let mut changed = 0;
    let top = std::fs::metadata(dir)?;
    if top.uid() != user.uid || top.gid() != user.gid {
        std::os::unix::fs::chown(dir, Some(user.uid), Some(user.gid))?;
        changed += 1;
    }
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            let meta = std::fs::symlink_metadata(&path)?;
            if meta.file_type().is_symlink() {
                continue;
            }
            if meta.is_dir() {
                stack.push(path.clone());
            } else if meta.nlink() > 1 {
                tracing::warn!(path = %path.display(), links = meta.nlink(), "not handing over a file with several hard links");
                continue;
            }
            if meta.uid() != user.uid || meta.gid() != user.gid {
                std::os::unix::fs::lchown(&path, Some(user.uid), Some(user.gid))?;
                changed += 1;
            }
        }
    }
    Ok(changed)
}

/// A directory on the way to a path that an account may not search.
#[derive(Debug)]
pub struct Blocked {
    /// The directory.
    pub dir: PathBuf,
    /// Its owner, group and mode.
    pub meta: std::fs::Metadata,
    /// The class of the mode the account falls in: `u`, `g` or `o`.
    pub class: char,
}

/// The first directory on the way to `target` that `user` may not search
/// once switched to it (its uid and primary gid, no supplementary groups,
/// no capabilities): the directories of the path as written (made absolute)
/// and, through any symbolic link, of the path it resolves to. `target`
/// itself is not judged (it is handed over to `user`), nor parts that do not
/// exist yet, nor a directory with an access ACL (the kernel decides those).
pub fn blocking_dir(target: &Path, user: &User) -> Option<Blocked> {
    let abs = std::path::absolute(target).ok()?;
    let mut dirs: Vec<PathBuf> = abs.ancestors().skip(1).map(Path::to_owned).collect();
    dirs.reverse();
    if let Some(existing) = abs.ancestors().find(|a| a.exists())
        && let Ok(real) = existing.canonicalize()
    {
        let skip = usize::from(existing == abs);
        let mut through: Vec<PathBuf> = real.ancestors().skip(skip).map(Path::to_owned).collect();
        through.reverse();
        dirs.extend(through);
    }
    dirs.into_iter().find_map(|dir| {
        let meta = std::fs::metadata(&dir).ok().filter(|m| m.is_dir())?;
        let (class, bit) = if meta.uid() == user.uid {
            ('u', 0o100)
        } else if meta.gid() == user.gid {
            ('g', 0o010)
        } else {
            ('o', 0o001)
        };
        (meta.mode() & bit == 0 && !has_acl(&dir)).then_some(Blocked { dir, meta, class })
    })
}

/// The directory carries an access ACL, which may grant what its mode does not.
fn has_acl(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: both strings are NUL-terminated; a size of 0 only asks for the length.
    unsafe {
        libc::getxattr(
            path.as_ptr(),
            c"system.posix_acl_access".as_ptr(),
            std::ptr::null_mut(),
            0,
        ) >= 0
    }
}

/// Fails, naming the directory that blocks it and the fix, when `user`
/// could not reach `dir` (the setting `key`) after the switch: otherwise
/// DuckDB, which opens its file by absolute path, would stop with a bare
/// "Permission denied" once the daemon is confined.
fn require_reachable(key: &str, dir: &Path, user: &User) -> Result<(), Failure> {
    let Some(b) = blocking_dir(dir, user) else {
        return Ok(());
    };
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
    let shown = if abs == dir {
        dir.display().to_string()
    } else {
        format!("{} ({})", dir.display(), abs.display())
    };
    let instead = if key == "data_dir" {
        format!(
            "use a data dir it can reach, e.g. `--data-dir {}` (the default as root)",
            crate::config::ROOT_DATA_DIR
        )
    } else {
        format!("use a `{key}` it can reach")
    };
    Err(Failure::startup(format!(
        "invalid setting `{key}`: user {:?} cannot reach {shown}: {} (owner uid {}, group gid {}, \
         mode {:04o}) does not let it through (no search permission). Fix: {instead}, or let \
         it through with `chmod {}+x {}`",
        user.name,
        b.dir.display(),
        b.meta.uid(),
        b.meta.gid(),
        b.meta.mode() & 0o7777,
        b.class,
        b.dir.display()
    )))
}

/// Creates the data dir and, when started as root, hands it to `owner`,
/// after checking that `owner` can reach it (and the archive dir).
pub fn prepare(cfg: &Config, owner: Option<&User>) -> Result<(), Failure> {
    let archive = cfg.archive_dir();
    let outside = !archive.starts_with(&cfg.data_dir);
    let reachable = |u: &User| {
        require_reachable("data_dir", &cfg.data_dir, u)?;
        if outside {
            require_reachable("retention.archive_dir", &archive, u)?;
        }
        Ok::<(), Failure>(())
    };
    // Before creating anything where the account could not go.
    if let Some(u) = owner {
        reachable(u)?;
    }
    // The certificate files are read once confined (and at each reload):
    // Landlock needs their directories to exist, the account to reach them.
    if let (Some(c), Some(k)) = (&cfg.tls_cert_file, &cfg.tls_key_file) {
        for (key, path) in [("tls.cert_file", c), ("tls.key_file", k)] {
            std::fs::metadata(path).map_err(|e| {
                Failure::startup(format!(
                    "invalid setting `{key}`: cannot read {}: {e}",
                    path.display()
                ))
            })?;
            if let Some(u) = owner {
                require_reachable(key, path, u)?;
            }
        }
    }
    datadir::prepare(&cfg.data_dir)?;
    // Landlock grants only paths that exist: make the archive dir now.
    if outside {
        std::fs::create_dir_all(&archive).map_err(|e| {
            Failure::startup(format!(
                "invalid setting `retention.archive_dir`: cannot create {}: {e}",
                archive.display()
            ))
        })?;
        if let Some(u) = owner {
            hand_over(&archive, u).map_err(|e| {
                Failure::startup(format!(
                    "cannot hand retention.archive_dir {} over to user {:?}: {e}",
                    archive.display(),
                    u.name
                ))
            })?;
        }
    }
    if let Some(u) = owner {
        // Again: the directories just created obey the umask.
        reachable(u)?;
        let n = hand_over(&cfg.data_dir, u).map_err(|e| {
            Failure::startup(format!(
                "cannot hand data_dir {} over to user {:?}: {e}",
                cfg.data_dir.display(),
                u.name
            ))
        })?;
        if n > 0 {
            tracing::info!(user = %u.name, entries = n, data_dir = %cfg.data_dir.display(), "data dir handed over to the service user");
        }
    }
    Ok(())
}

fn explain(e: ConfineError, cfg: &Config) -> Failure {
    let hint = match (&e, &cfg.user) {
        (ConfineError::Landlock(LandlockError::Path { source, .. }), Some(u))
            if source.raw_os_error() == Some(libc::EACCES) =>
        {
            format!(
                " (user {u:?} must be able to reach it: every parent directory needs the search \
                 permission for it)"
            )
        }
        _ => String::new(),
    };
    Failure::startup(format!("sandbox: {e}{hint}"))
}

/// Confines the process as configured: switch to `user` (when root), drop
/// every capability, Landlock, seccomp. Call it while the process has one
/// thread, after binding the listeners and before DuckDB, the queue threads
/// and the runtime start. Logs what each layer reached.
pub fn confine(cfg: &Config) -> Result<ConfineReport, Failure> {
    let report =
        hitvault_sandbox::confine(&spec(cfg), cfg.seccomp.mode()).map_err(|e| explain(e, cfg))?;
    let p = &report.privileges;
    tracing::info!(
        uid = p.uid,
        gid = p.gid,
        user = p.switched_to.as_deref().unwrap_or("(unchanged)"),
        "sandbox: {p}"
    );
    let l = &report.landlock;
    match &l.degraded {
        Some(why) => tracing::warn!(abi = l.abi, "sandbox: landlock is not enforced: {why}"),
        None => tracing::info!(
            abi = l.abi,
            files = l.filesystem,
            tcp = l.network,
            scopes = l.scopes,
            "sandbox: {l}"
        ),
    }
    if cfg.landlock == LandlockSetting::Required
        && (l.degraded.is_some() || !l.filesystem || !l.network)
    {
        return Err(Failure::startup(format!(
            "sandbox: `landlock` is `required` but the kernel does not enforce the file and TCP \
             rules ({l}); Landlock ABI 4 or later is needed"
        )));
    }
    match cfg.seccomp {
        SeccompSetting::Enforce => tracing::info!(mode = "enforce", "sandbox: {}", report.seccomp),
        SeccompSetting::Audit => tracing::warn!(
            mode = "audit",
            "sandbox: {}: unlisted system calls are only logged (type=1326 in the kernel log); never run production like this",
            report.seccomp
        ),
    }
    Ok(report)
}

/// `hitvault sandbox show`: every rule, in the order it is applied.
pub fn show(cfg: &Config) -> Result<Vec<String>, String> {
    let mut out = spec(cfg).rules_with(cfg.seccomp.mode());
    let policy = match cfg.landlock {
        LandlockSetting::BestEffort => {
            "landlock: best effort: enforce what the kernel supports, warn when it enforces nothing"
        }
        LandlockSetting::Required => {
            "landlock: required: refuse to start unless file and TCP rules are enforced (ABI >= 4)"
        }
    };
    let at = out
        .iter()
        .position(|l| l.starts_with("seccomp:"))
        .unwrap_or(out.len());
    out.insert(at, policy.to_owned());
    for e in seccomp::enosys().map_err(|e| e.to_string())? {
        out.push(format!("seccomp: ENOSYS {}: {}", e.syscall, e.reason));
    }
    for e in seccomp::allowed().map_err(|e| e.to_string())? {
        let when = if e.conditions.is_empty() {
            String::new()
        } else {
            format!(" [only when {}]", e.conditions.join(" and "))
        };
        out.push(format!("seccomp: allow {}{when}: {}", e.syscall, e.reason));
    }
    Ok(out)
}

/// `hitvault sandbox check`: confines a child process per probe exactly as
/// `serve` confines itself, tries what must be refused and what must work,
/// prints each result. Exit status 0 only if every probe passed.
pub fn check(cfg: &Config, owner: Option<&User>) -> Result<u8, Failure> {
    prepare(cfg, owner)?;
    let spec = spec(cfg);
    let results = check::run_with(&spec, cfg.seccomp.mode());
    for r in &results {
        println!("{r}");
    }
    let mut failed = results.iter().filter(|r| !r.passed()).count();
    if cfg.landlock == LandlockSetting::Required {
        match hitvault_sandbox::landlock::abi() {
            Ok(abi) if abi >= 4 => println!("ok   landlock = required: kernel Landlock ABI {abi}"),
            other => {
                failed += 1;
                println!(
                    "FAIL landlock = required: kernel Landlock ABI {other:?}, 4 or later needed"
                );
            }
        }
    }
    if failed == 0 && check::all_passed(&results) {
        println!("all {} probes passed", results.len());
        Ok(0)
    } else {
        println!("{failed} of {} probes FAILED", results.len());
        Ok(1)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn me() -> (u32, u32) {
        // SAFETY: plain queries.
        unsafe { (libc::geteuid(), libc::getegid()) }
    }

    fn user(uid: u32, gid: u32) -> User {
        User {
            name: "someone".into(),
            uid,
            gid,
        }
    }

    #[test]
    fn the_directory_that_blocks_the_account_is_found() {
        let (uid, gid) = me();
        let top = tempfile::tempdir().unwrap();
        chmod(top.path(), 0o711);
        let home = top.path().join("home");
        std::fs::create_dir(&home).unwrap();
        chmod(&home, 0o700);
        let data = home.join("clone/data");
        let other = user(uid + 4242, gid + 4242);
        // A stranger cannot pass a 0700 directory, even where `data` does not exist yet.
        let b = blocking_dir(&data, &other).expect("blocked");
        assert_eq!((b.dir.as_path(), b.class), (home.as_path(), 'o'));
        // Its owner can; its group only with g+x.
        assert!(blocking_dir(&data, &user(uid, gid + 4242)).is_none());
        chmod(&home, 0o701);
        let b = blocking_dir(&data, &user(uid + 4242, gid)).expect("group class");
        assert_eq!(b.class, 'g');
        chmod(&home, 0o710);
        assert!(blocking_dir(&data, &user(uid + 4242, gid)).is_none());
        // o+x lets anyone through; the target itself is never judged.
        chmod(&home, 0o711);
        std::fs::create_dir_all(&data).unwrap();
        chmod(&data, 0o700);
        assert!(blocking_dir(&data, &other).is_none());
        // A symbolic link leading through a closed directory is blocked there.
        let hidden = top.path().join("private");
        std::fs::create_dir_all(hidden.join("hitvault")).unwrap();
        chmod(&hidden, 0o700);
        let link = top.path().join("link");
        std::os::unix::fs::symlink(hidden.join("hitvault"), &link).unwrap();
        let b = blocking_dir(&link, &other).expect("through the link");
        assert_eq!(b.dir, hidden);
    }
}
