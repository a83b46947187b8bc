//! Landlock: which paths the daemon may read or write and which TCP ports it
//! may bind or connect to, enforced by the kernel for the calling thread and
//! every thread it creates afterwards.
//!
//! Owns the translation of a [`Spec`] into a Landlock ruleset. Never decides
//! what the spec contains (the caller derives it from its configuration),
//! never skips a configured path: each is opened explicitly, so a typo fails
//! loudly (the crate's `path_beneath_rules` would skip it silently).
//!
//! Rights, for the access rights of ABI 7 (the ABI this was tested at):
//! - read-only paths: read files, list directories. No execute anywhere.
//! - read-write paths: additionally write, truncate, create and remove
//!   regular files, directories and sockets, rename within (refer).
//!   Never devices, FIFOs, symlinks or ioctl on devices.
//! - TCP (ABI >= 4): bind only `Spec::bind_tcp`, connect only
//!   `Spec::connect_tcp`. UDP is not covered before ABI 10: the seccomp
//!   policy refuses UDP sockets instead.
//! - scopes (ABI >= 6): no signals to and no abstract unix sockets of
//!   processes outside the sandbox.
//!
//! Best effort: an older kernel enforces what it knows, and a kernel (or a
//! seccomp filter in front of us, as in systemd-nspawn) answering EPERM,
//! ENOSYS or EOPNOTSUPP yields a degraded report, not an error.

use std::fmt;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use ::landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, CreateRulesetError,
    LandlockStatus, NetPort, PathBeneath, PathFd, RestrictSelfError, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetError, RulesetStatus, Scope,
};

use crate::Spec;

/// The Landlock ABI these rules were written and tested for. Rights added by
/// later ABIs are not handled (and so stay allowed) until the list is
/// reviewed for them.
pub const TESTED_ABI: u32 = 7;
const TESTED: ABI = ABI::V7;

/// System paths every hitvault process reads, each with the reason. Applied
/// read-only when present; a missing one (no `/lib64` or `/nix/store` on
/// some systems) is skipped and listed in the report.
///
/// DuckDB aborts the whole process ("Attempted to dereference unique_ptr that
/// is NULL!") when `/proc/stat`, `/sys/devices/system/cpu/online` or
/// `/proc/self/cgroup` cannot be read, so these are not optional for it.
/// Denials seen and left in place because they are harmless:
/// `/sys/kernel/mm/transparent_hugepage/hpage_pmd_size`,
/// `/proc/sys/vm/overcommit_memory`.
pub const SYSTEM_READ_ONLY: &[(&str, &str)] = &[
    ("/usr", "shared libraries and time-zone data"),
    ("/lib", "shared libraries"),
    ("/lib64", "the dynamic loader"),
    ("/etc/localtime", "the local time zone of log timestamps"),
    (
        "/proc/stat",
        "DuckDB reads CPU counters; a denial aborts it",
    ),
    ("/proc/meminfo", "DuckDB sizes its memory limit from it"),
    (
        "/proc/self",
        "cgroup, limits and thread names of this process (DuckDB, std)",
    ),
    (
        "/sys/devices/system/cpu",
        "CPU count for DuckDB and the runtime; a denial aborts DuckDB",
    ),
    (
        "/sys/fs/cgroup",
        "CPU and memory limits of the service (DuckDB, std)",
    ),
    (
        "/nix/store",
        "on NixOS, libraries and time-zone data live in the store",
    ),
];

/// How much of the requested confinement the kernel enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enforcement {
    /// Every requested right is handled.
    Full,
    /// Some rights are not known to this kernel (older ABI) and stay allowed.
    Partial,
    /// Landlock is unavailable or refused: nothing is enforced.
    None,
}

/// What [`apply`] reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LandlockReport {
    /// The kernel's Landlock ABI version (0: none).
    pub abi: u32,
    /// How much is enforced.
    pub enforcement: Enforcement,
    /// File-system rules are enforced (ABI >= 1).
    pub filesystem: bool,
    /// TCP bind and connect rules are enforced (ABI >= 4).
    pub network: bool,
    /// Signal and abstract-unix-socket scopes are enforced (ABI >= 6).
    pub scopes: bool,
    /// System paths that do not exist here and were skipped.
    pub skipped: Vec<PathBuf>,
    /// Why nothing is enforced, when Landlock answered EPERM, ENOSYS or
    /// EOPNOTSUPP (or is absent).
    pub degraded: Option<String>,
}

impl fmt::Display for LandlockReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.degraded, self.enforcement) {
            (Some(why), _) => write!(f, "landlock not enforced (ABI {}): {why}", self.abi),
            (None, e) => {
                let level = match e {
                    Enforcement::Full => "fully enforced",
                    Enforcement::Partial => "partly enforced",
                    Enforcement::None => "not enforced",
                };
                write!(
                    f,
                    "landlock ABI {} {level}: files {}, TCP ports {}, scopes {}",
                    self.abi,
                    on(self.filesystem),
                    on(self.network),
                    on(self.scopes)
                )
            }
        }
    }
}

fn on(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// Why the Landlock rules could not be built or applied.
#[derive(Debug, thiserror::Error)]
pub enum LandlockError {
    /// A configured path cannot be opened (missing, or not reachable).
    #[error("sandbox {kind} path {}: {source}", path.display())]
    Path {
        /// "read-only" or "read-write".
        kind: &'static str,
        /// The path.
        path: PathBuf,
        /// The error of open(O_PATH).
        source: io::Error,
    },
    /// Asking the kernel for its Landlock ABI failed unexpectedly.
    #[error("landlock: querying the ABI version: {0}")]
    Probe(io::Error),
    /// The kernel refused the ruleset in a way that is not "unsupported".
    #[error("landlock: {0}")]
    Ruleset(#[from] RulesetError),
}

/// The kernel's Landlock ABI version, or the errno of the probe (ENOSYS:
/// not built in, EOPNOTSUPP: disabled at boot, EPERM: refused by a seccomp
/// filter).
pub fn abi() -> Result<u32, io::Error> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: the version query takes no attribute pointer and size 0.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if v < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(v as u32)
    }
}

fn read_only_rights() -> BitFlags<AccessFs> {
    AccessFs::ReadFile | AccessFs::ReadDir
}

fn read_write_rights() -> BitFlags<AccessFs> {
    read_only_rights()
        | AccessFs::WriteFile
        | AccessFs::Truncate
        | AccessFs::RemoveDir
        | AccessFs::RemoveFile
        | AccessFs::MakeDir
        | AccessFs::MakeReg
        | AccessFs::MakeSock
        | AccessFs::Refer
}

/// Rights that make sense on a file (not a directory), as the kernel wants.
fn for_file(rights: BitFlags<AccessFs>) -> BitFlags<AccessFs> {
    rights & (AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate)
}

fn is_dir(fd: &PathFd) -> io::Result<bool> {
    // SAFETY: stat is plain old data, filled by fstat on a valid descriptor.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open (O_PATH descriptors support fstat).
    let rc = unsafe { libc::fstat(std::os::fd::AsRawFd::as_raw_fd(&fd.as_fd()), &mut st) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

fn open(kind: &'static str, path: &Path) -> Result<(PathFd, bool), LandlockError> {
    let err = |source| LandlockError::Path {
        kind,
        path: path.to_owned(),
        source,
    };
    let fd = PathFd::new(path).map_err(|e| match e {
        ::landlock::PathFdError::OpenCall { source, .. } => err(source),
        other => err(io::Error::other(other.to_string())),
    })?;
    let dir = is_dir(&fd).map_err(err)?;
    Ok((fd, dir))
}

/// Checks that every configured path can be opened, without restricting
/// anything: [`crate::confine`] calls it before it drops privileges, so a
/// typo in the configuration fails before anything is changed.
pub fn check_paths(spec: &Spec) -> Result<(), LandlockError> {
    for p in &spec.read_only {
        open("read-only", p)?;
    }
    for p in &spec.read_write {
        open("read-write", p)?;
    }
    Ok(())
}

fn degraded(abi: u32, why: String) -> LandlockReport {
    LandlockReport {
        abi,
        enforcement: Enforcement::None,
        filesystem: false,
        network: false,
        scopes: false,
        skipped: vec![],
        degraded: Some(why),
    }
}

fn unsupported_errno(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPERM | libc::ENOSYS | libc::EOPNOTSUPP)
    )
}

/// Restricts the calling thread (and the threads it creates afterwards) to
/// `spec` plus [`SYSTEM_READ_ONLY`]. Also sets `no_new_privs`.
///
/// Fails when a configured path cannot be opened. When Landlock is missing
/// or refused (EPERM, ENOSYS, EOPNOTSUPP), returns a degraded report: the
/// caller logs it and carries on.
pub fn apply(spec: &Spec) -> Result<LandlockReport, LandlockError> {
    // Open everything first, so that a missing configured path is reported
    // even on a kernel without Landlock.
    let mut path_rules = Vec::new();
    let mut add = |(fd, dir): (PathFd, bool), rights: BitFlags<AccessFs>| {
        path_rules.push(PathBeneath::new(
            fd,
            if dir { rights } else { for_file(rights) },
        ));
    };
    for p in &spec.read_only {
        add(open("read-only", p)?, read_only_rights());
    }
    for p in &spec.read_write {
        add(open("read-write", p)?, read_write_rights());
    }
    let mut skipped = Vec::new();
    for (p, _) in SYSTEM_READ_ONLY {
        match open("system", Path::new(p)) {
            Ok(opened) => add(opened, read_only_rights()),
            Err(_) => skipped.push(PathBuf::from(p)),
        }
    }

    let kernel_abi = match abi() {
        Ok(v) => v,
        Err(e) if unsupported_errno(&e) => {
            let mut r = degraded(0, format!("the kernel answered {e}"));
            r.skipped = skipped;
            return Ok(r);
        }
        Err(e) => return Err(LandlockError::Probe(e)),
    };

    let net = |ports: &[u16], access: AccessNet| -> Vec<NetPort> {
        let mut ports: Vec<u16> = ports.iter().copied().filter(|p| *p != 0).collect();
        ports.sort_unstable();
        ports.dedup();
        ports.into_iter().map(|p| NetPort::new(p, access)).collect()
    };
    let built = (|| -> Result<_, RulesetError> {
        Ruleset::default()
            .set_compatibility(CompatLevel::BestEffort)
            .handle_access(AccessFs::from_all(TESTED))?
            .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)?
            .scope(Scope::from_all(TESTED))?
            .create()?
            .add_rules(path_rules.into_iter().map(Ok::<_, RulesetError>))?
            .add_rules(
                net(&spec.bind_tcp, AccessNet::BindTcp)
                    .into_iter()
                    .map(Ok::<_, RulesetError>),
            )?
            .add_rules(
                net(&spec.connect_tcp, AccessNet::ConnectTcp)
                    .into_iter()
                    .map(Ok::<_, RulesetError>),
            )?
            .restrict_self()
    })();
    let status = match built {
        Ok(s) => s,
        Err(RulesetError::CreateRuleset(CreateRulesetError::CreateRulesetCall {
            source, ..
        })) if unsupported_errno(&source) => {
            return Ok(degraded(
                kernel_abi,
                format!("creating the ruleset: {source}"),
            ));
        }
        Err(RulesetError::RestrictSelf(RestrictSelfError::RestrictSelfCall { source, .. }))
            if unsupported_errno(&source) =>
        {
            return Ok(degraded(
                kernel_abi,
                format!("landlock_restrict_self: {source}"),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let effective = match status.landlock {
        LandlockStatus::Available { effective_abi, .. } => effective_abi,
        _ => ABI::Unsupported,
    };
    let enforcement = match status.ruleset {
        RulesetStatus::FullyEnforced => Enforcement::Full,
        RulesetStatus::PartiallyEnforced => Enforcement::Partial,
        RulesetStatus::NotEnforced => Enforcement::None,
    };
    if enforcement == Enforcement::None {
        let mut r = degraded(
            kernel_abi,
            "Landlock is not available in this kernel".to_owned(),
        );
        r.skipped = skipped;
        return Ok(r);
    }
    Ok(LandlockReport {
        abi: kernel_abi,
        enforcement,
        filesystem: effective >= ABI::V1,
        network: effective >= ABI::V4,
        scopes: effective >= ABI::V6,
        skipped,
        degraded: None,
    })
}
