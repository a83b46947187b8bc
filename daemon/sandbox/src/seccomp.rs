//! seccomp: the system calls the daemon may make, and what happens to the
//! others.
//!
//! Owns the reviewed allow-list `policy/seccomp.json` (seccompiler's JSON
//! format, one entry per syscall with its reason in `comment`), embedded at
//! build time, compiled at startup and applied to every thread of the process
//! (TSYNC). Never edits the policy at run time beyond choosing the action for
//! unlisted calls: [`Mode::Enforce`] kills the process, [`Mode::Audit`] lets
//! the call through and logs it (kernel audit record `type=1326`, see
//! `policy/README.md`).
//!
//! In enforce mode an unlisted call is trapped (`SECCOMP_RET_TRAP`), never
//! run: the kernel sends SIGSYS to the thread that made it, and the handler
//! installed here ([`report_sigsys`]) writes one line to stderr naming the
//! call (number and name), its arguments and the thread, then ends the
//! process with SIGSYS, so that a service manager or a test still sees a
//! death by SIGSYS (core dump included, as with `SECCOMP_RET_KILL_PROCESS`).
//! The handler makes only async-signal-safe calls that the allow-list holds
//! (`openat`, `read`, `close`, `write`, `getpid`, `gettid`, `tgkill`). The
//! filter is installed with `SECCOMP_FILTER_FLAG_LOG`, so the kernel also
//! writes its audit record (`type=1326`, `code=0x30000`) for every trapped
//! call.
//!
//! Two filters are installed, the `enosys` one first: it answers ENOSYS to
//! `clone3`, whose flags sit behind a pointer seccomp cannot read, so glibc
//! falls back to `clone`, which the allow-list accepts only with
//! `CLONE_THREAD` (threads yes, processes no). The allow-list lists `clone3`
//! too: the kernel takes the strictest answer of all filters, and an allow-list
//! miss (kill) would beat ENOSYS.
//!
//! The policy is written for x86_64; other architectures get
//! [`SeccompError::UnsupportedArch`] until a policy is reviewed for them.

use std::convert::TryInto;
use std::fmt;

use seccompiler::{BpfProgram, TargetArch};
use serde_json::Value;

/// The reviewed policy, as committed in `policy/seccomp.json`.
pub const POLICY_JSON: &str = include_str!("../../../policy/seccomp.json");

/// The architecture the policy names syscalls for.
pub const POLICY_ARCH: &str = "x86_64";

/// What happens to a system call the allow-list does not name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The process is killed (SIGSYS, core dump if enabled). Production.
    Enforce,
    /// The call goes through and the kernel logs it (`type=1326`). For
    /// finding a missing syscall; never in production.
    Audit,
}

impl Mode {
    /// Parses `enforce` (or `kill`) and `audit` (or `log`).
    pub fn from_name(name: &str) -> Option<Mode> {
        match name {
            "enforce" | "kill" => Some(Mode::Enforce),
            "audit" | "log" => Some(Mode::Audit),
            _ => None,
        }
    }

    fn action(self) -> &'static str {
        match self {
            Mode::Enforce => "trap",
            Mode::Audit => "log",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
        })
    }
}

/// One rule of the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The syscall name.
    pub syscall: String,
    /// Why the daemon needs it (the rule's `comment`).
    pub reason: String,
    /// The comments of the argument conditions, if the rule has any (all
    /// must hold).
    pub conditions: Vec<String>,
}

/// The policy is malformed, or the filter could not be built or installed.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The embedded policy breaks a rule of its own format.
    #[error("seccomp policy: {0}")]
    Policy(String),
    /// No policy for this architecture.
    #[error("seccomp: the policy is written for {POLICY_ARCH}, not {0}")]
    UnsupportedArch(&'static str),
    /// seccompiler refused the policy.
    #[error("seccomp policy does not compile: {0}")]
    Compile(seccompiler::Error),
    /// The kernel refused a filter.
    #[error("installing the seccomp filter `{filter}`: {source}")]
    Install {
        /// `enosys` or `allow`.
        filter: &'static str,
        /// seccompiler's error, with the errno.
        source: seccompiler::Error,
    },
}

/// What [`apply`] installed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeccompReport {
    /// The action on unlisted calls.
    pub mode: Mode,
    /// Rules in the allow-list.
    pub allowed: usize,
    /// Syscalls answered ENOSYS.
    pub enosys: Vec<String>,
}

impl fmt::Display for SeccompReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let action = match self.mode {
            Mode::Enforce => "kill the process (SIGSYS, after a line on stderr naming the call)",
            Mode::Audit => "are logged (audit mode)",
        };
        write!(
            f,
            "seccomp: {} allow-list rules, ENOSYS for {}, other calls {action}",
            self.allowed,
            self.enosys.join(" ")
        )
    }
}

fn policy() -> Result<Value, SeccompError> {
    let v: Value =
        serde_json::from_str(POLICY_JSON).map_err(|e| SeccompError::Policy(e.to_string()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| SeccompError::Policy("not a JSON object".into()))?;
    let mut names: Vec<&String> = obj.keys().collect();
    names.sort();
    if names != ["allow", "cluster", "enosys"] {
        return Err(SeccompError::Policy(format!(
            "expected the filters `allow` and `enosys` and the section `cluster`, found {names:?}"
        )));
    }
    if v["allow"]["mismatch_action"] != "trap" || v["allow"]["match_action"] != "allow" {
        return Err(SeccompError::Policy(
            "`allow` must allow what it lists and trap the rest (SIGSYS: reported, then the process dies)".into(),
        ));
    }
    if v["enosys"]["mismatch_action"] != "allow"
        || v["enosys"]["match_action"] != serde_json::json!({ "errno": libc::ENOSYS })
    {
        return Err(SeccompError::Policy(
            "`enosys` must answer ENOSYS to what it lists and allow the rest".into(),
        ));
    }
    Ok(v)
}

fn entries(v: &Value, filter: &str) -> Result<Vec<Entry>, SeccompError> {
    let rules = v[filter]["filter"]
        .as_array()
        .ok_or_else(|| SeccompError::Policy(format!("`{filter}` has no rule list")))?;
    let mut out = Vec::with_capacity(rules.len());
    for r in rules {
        let syscall = r["syscall"].as_str().unwrap_or_default().to_owned();
        let reason = r["comment"].as_str().unwrap_or_default().trim().to_owned();
        if syscall.is_empty() || reason.is_empty() {
            return Err(SeccompError::Policy(format!(
                "`{filter}`: every rule needs a syscall and a reason: {r}"
            )));
        }
        let mut conditions = Vec::new();
        if let Some(args) = r.get("args") {
            for a in args.as_array().into_iter().flatten() {
                let c = a["comment"].as_str().unwrap_or_default().trim();
                if c.is_empty() {
                    return Err(SeccompError::Policy(format!(
                        "`{filter}`: {syscall}: every condition needs a comment"
                    )));
                }
                conditions.push(c.to_owned());
            }
            if conditions.is_empty() {
                return Err(SeccompError::Policy(format!(
                    "`{filter}`: {syscall}: empty `args`"
                )));
            }
        }
        out.push(Entry {
            syscall,
            reason,
            conditions,
        });
    }
    // A syscall listed once without conditions and again with some would be
    // allowed unconditionally by seccompiler: refuse the mix.
    for e in &out {
        let same: Vec<&Entry> = out.iter().filter(|o| o.syscall == e.syscall).collect();
        if same.len() > 1 && same.iter().any(|o| o.conditions.is_empty()) {
            return Err(SeccompError::Policy(format!(
                "`{filter}`: {} is listed more than once without conditions",
                e.syscall
            )));
        }
    }
    Ok(out)
}

/// The allow-list, rule by rule (for `hitvault sandbox show`).
pub fn allowed() -> Result<Vec<Entry>, SeccompError> {
    entries(&policy()?, "allow")
}

/// The entries a cluster node adds to the allow-list (outbound TCP to its
/// peers).
pub fn cluster() -> Result<Vec<Entry>, SeccompError> {
    entries(&policy()?, "cluster")
}

/// The syscalls answered ENOSYS, with the reason.
pub fn enosys() -> Result<Vec<Entry>, SeccompError> {
    entries(&policy()?, "enosys")
}

/// Both filters, compiled to BPF and ready to install.
#[derive(Clone, Debug)]
pub struct Filters {
    mode: Mode,
    allow: BpfProgram,
    enosys: BpfProgram,
    allowed: usize,
    enosys_names: Vec<String>,
}

impl Filters {
    /// Checks and compiles the embedded policy for `mode`. Pure computation:
    /// do it early to fail before anything is confined.
    pub fn compile(mode: Mode) -> Result<Filters, SeccompError> {
        Filters::compile_for(mode, false)
    }

    /// [`Filters::compile`], with the `cluster` section added to the
    /// allow-list when `outbound` (a cluster node: it dials its peers).
    pub fn compile_for(mode: Mode, outbound: bool) -> Result<Filters, SeccompError> {
        if std::env::consts::ARCH != POLICY_ARCH {
            return Err(SeccompError::UnsupportedArch(std::env::consts::ARCH));
        }
        let mut v = policy()?;
        let cluster = v
            .as_object_mut()
            .and_then(|o| o.remove("cluster"))
            .expect("checked by policy()");
        if outbound {
            let extra = cluster["filter"].as_array().cloned().unwrap_or_default();
            v["allow"]["filter"]
                .as_array_mut()
                .expect("checked by policy()")
                .extend(extra);
        }
        let allowed = entries(&v, "allow")?.len();
        let enosys_names = entries(&v, "enosys")?
            .into_iter()
            .map(|e| e.syscall)
            .collect();
        v["allow"]["mismatch_action"] = Value::from(mode.action());
        let arch: TargetArch = std::env::consts::ARCH
            .try_into()
            .map_err(|e| SeccompError::Compile(seccompiler::Error::Backend(e)))?;
        let json = v.to_string();
        let mut map =
            seccompiler::compile_from_json(json.as_bytes(), arch).map_err(SeccompError::Compile)?;
        let take = |map: &mut seccompiler::BpfMap, name: &str| {
            map.remove(name).ok_or_else(|| {
                SeccompError::Policy(format!("filter `{name}` missing after compilation"))
            })
        };
        let allow = take(&mut map, "allow")?;
        let enosys = take(&mut map, "enosys")?;
        Ok(Filters {
            mode,
            allow,
            enosys,
            allowed,
            enosys_names,
        })
    }

    /// Installs both filters on every thread of the process (TSYNC), the
    /// `enosys` one first; in enforce mode, first the SIGSYS handler that
    /// reports a trapped call ([`report_sigsys`]). Sets `no_new_privs`.
    /// Irreversible.
    pub fn apply(&self) -> Result<SeccompReport, SeccompError> {
        if self.mode == Mode::Enforce {
            report_sigsys().map_err(|e| SeccompError::Install {
                filter: "allow",
                source: seccompiler::Error::Seccomp(e),
            })?;
        }
        install(&self.enosys, false).map_err(|source| SeccompError::Install {
            filter: "enosys",
            source,
        })?;
        // FLAG_LOG: the kernel logs the calls this filter traps (type=1326);
        // without it only killed and `log` calls would be logged.
        install(&self.allow, true).map_err(|source| SeccompError::Install {
            filter: "allow",
            source,
        })?;
        Ok(SeccompReport {
            mode: self.mode,
            allowed: self.allowed,
            enosys: self.enosys_names.clone(),
        })
    }

    /// The mode these filters were compiled for.
    pub fn mode(&self) -> Mode {
        self.mode
    }
}

/// Compiles the policy for `mode` and installs it on every thread.
pub fn apply(mode: Mode) -> Result<SeccompReport, SeccompError> {
    Filters::compile(mode)?.apply()
}

/// Installs one filter on every thread of the process (`SECCOMP_FILTER_FLAG_TSYNC`),
/// with `SECCOMP_FILTER_FLAG_LOG` when `log`, after setting `no_new_privs`.
/// seccompiler's `apply_filter_all_threads` passes TSYNC only.
fn install(filter: &BpfProgram, log: bool) -> Result<(), seccompiler::Error> {
    if filter.is_empty() {
        return Err(seccompiler::Error::EmptyFilter);
    }
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(seccompiler::Error::Prctl(std::io::Error::last_os_error()));
    }
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        // seccompiler's sock_filter is the kernel's struct, as libc's is.
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    let mut flags = libc::SECCOMP_FILTER_FLAG_TSYNC;
    if log {
        flags |= libc::SECCOMP_FILTER_FLAG_LOG;
    }
    // SAFETY: `prog` points to `filter`, which outlives the call; the kernel
    // copies the program.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &prog as *const libc::sock_fprog,
        )
    };
    match rc {
        0 => Ok(()),
        n if n < 0 => Err(seccompiler::Error::Seccomp(std::io::Error::last_os_error())),
        // TSYNC: the id of a thread that could not be synchronised.
        tid => Err(seccompiler::Error::ThreadSync(tid)),
    }
}

/// Installs the process-wide SIGSYS handler that reports a call the filter
/// trapped: one line on stderr with the call's number and name, its six
/// arguments (a rule with argument conditions refuses by value: `socket`
/// with `AF_INET`, `mmap` with `PROT_EXEC`) and the thread's name, then the
/// process dies of SIGSYS. `SA_RESETHAND` puts the default action back on
/// entry and `SA_NODEFER` leaves SIGSYS unblocked, so the handler's own
/// `tgkill` ends the process at once (and a second trapped call while the
/// first is reported ends it too, without a line). Enforce mode installs it;
/// a SIGSYS not sent by seccomp is reported as such and is fatal, as its
/// default action is.
pub fn report_sigsys() -> std::io::Result<()> {
    // SAFETY: a zeroed sigaction is valid; the handler has the SA_SIGINFO
    // signature.
    let rc = unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigsys as *const () as libc::sighandler_t;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESETHAND | libc::SA_NODEFER | libc::SA_ONSTACK;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut())
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The `_sigsys` member of the kernel's `siginfo_t` on 64-bit Linux (libc
/// does not expose it): after `si_signo`, `si_errno`, `si_code` and padding
/// to 8 bytes, the address of the call, its number and the audit arch.
#[repr(C)]
struct SigsysInfo {
    signo: libc::c_int,
    errno: libc::c_int,
    code: libc::c_int,
    _pad: libc::c_int,
    call_addr: *mut libc::c_void,
    syscall: libc::c_int,
    arch: libc::c_uint,
}

/// `si_code` of a SIGSYS sent by seccomp.
const SYS_SECCOMP: libc::c_int = 1;

/// A fixed buffer the handler formats into: no allocation in a signal
/// handler.
struct Line {
    buf: [u8; 512],
    len: usize,
}

impl Line {
    fn push(&mut self, s: &[u8]) {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
    }

    fn dec(&mut self, v: u64) {
        let mut d = [0u8; 20];
        let mut i = d.len();
        let mut v = v;
        loop {
            i -= 1;
            d[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&d[i..]);
    }

    fn hex(&mut self, v: u64) {
        let mut d = [0u8; 16];
        let mut i = d.len();
        let mut v = v;
        loop {
            i -= 1;
            d[i] = b"0123456789abcdef"[(v & 0xf) as usize];
            v >>= 4;
            if v == 0 {
                break;
            }
        }
        self.push(b"0x");
        self.push(&d[i..]);
    }
}

/// The SIGSYS handler: async-signal-safe calls only, all on the allow-list.
extern "C" fn on_sigsys(_sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let mut line = Line {
        buf: [0; 512],
        len: 0,
    };
    // SAFETY: plain system calls.
    let (pid, tid) = unsafe {
        (
            libc::syscall(libc::SYS_getpid),
            libc::syscall(libc::SYS_gettid),
        )
    };
    line.push(b"hitvault[");
    line.dec(pid as u64);
    line.push(b"]: seccomp: ");
    // SAFETY: the kernel passes a valid siginfo_t (SA_SIGINFO), whose SIGSYS
    // layout SigsysInfo describes.
    let si = unsafe { &*(info as *const SigsysInfo) };
    if si.code == SYS_SECCOMP {
        let nr = i64::from(si.syscall);
        line.push(b"system call ");
        line.dec(si.syscall as u64);
        line.push(b" (");
        line.push(
            crate::syscall_names::name(nr)
                .unwrap_or("unknown")
                .as_bytes(),
        );
        line.push(b") refused by the allow-list");
        if !ctx.is_null() {
            // SAFETY: with SA_SIGINFO the third argument is the ucontext_t
            // of the interrupted thread; its registers hold the arguments.
            let regs = unsafe { &(*(ctx as *const libc::ucontext_t)).uc_mcontext.gregs };
            line.push(b", arguments (");
            for (i, r) in [
                libc::REG_RDI,
                libc::REG_RSI,
                libc::REG_RDX,
                libc::REG_R10,
                libc::REG_R8,
                libc::REG_R9,
            ]
            .into_iter()
            .enumerate()
            {
                if i > 0 {
                    line.push(b", ");
                }
                line.hex(regs[r as usize] as u64);
            }
            line.push(b")");
        }
        if si.arch != AUDIT_ARCH_X86_64 {
            line.push(b", arch ");
            line.hex(u64::from(si.arch));
        }
    } else {
        line.push(b"SIGSYS not sent by seccomp (si_code ");
        line.dec(si.code as u64);
        line.push(b")");
    }
    line.push(b", thread ");
    line.dec(tid as u64);
    let mut name = [0u8; 16];
    // SAFETY: open, read and close of the thread's own name; async-signal-safe.
    let n = unsafe {
        let fd = libc::open(
            c"/proc/thread-self/comm".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            0
        } else {
            let n = libc::read(fd, name.as_mut_ptr().cast(), name.len());
            libc::close(fd);
            n.max(0) as usize
        }
    };
    let name = name[..n].strip_suffix(b"\n").unwrap_or(&name[..n]);
    if !name.is_empty() {
        line.push(b" \"");
        line.push(name);
        line.push(b"\"");
    }
    line.push(b"; the process dies of SIGSYS (see \"The daemon died of SIGSYS\" in docs/operations/troubleshooting.md)\n");
    // SAFETY: write to stderr, then SIGSYS to this thread: SA_RESETHAND has
    // restored its default action (terminate with a core dump) and
    // SA_NODEFER left it unblocked, so the process ends here.
    unsafe {
        libc::write(2, line.buf.as_ptr().cast(), line.len);
        libc::syscall(libc::SYS_tgkill, pid, tid, libc::SIGSYS);
        // Not reached; should it be, leave with the shell's status for SIGSYS.
        libc::syscall(libc::SYS_exit_group, 128 + libc::SIGSYS);
    }
}

/// `AUDIT_ARCH_X86_64`: the arch seccomp reports for x86_64 system calls.
const AUDIT_ARCH_X86_64: libc::c_uint = 0xc000_003e;

#[cfg(test)]
mod tests {
    use super::*;

    /// Calls that would undo the rest of the sandbox or reach outside the
    /// daemon's job. None of them may ever be allowed.
    const NEVER: &[&str] = &[
        "execve",
        "execveat",
        "fork",
        "vfork",
        "ptrace",
        "process_vm_readv",
        "process_vm_writev",
        "kcmp",
        "pidfd_getfd",
        "mount",
        "umount2",
        "move_mount",
        "fsopen",
        "fsmount",
        "open_tree",
        "pivot_root",
        "chroot",
        "unshare",
        "setns",
        "setuid",
        "setgid",
        "setreuid",
        "setregid",
        "setresuid",
        "setresgid",
        "setgroups",
        "setfsuid",
        "setfsgid",
        "capset",
        "init_module",
        "finit_module",
        "delete_module",
        "kexec_load",
        "kexec_file_load",
        "bpf",
        "perf_event_open",
        "userfaultfd",
        "io_uring_setup",
        "keyctl",
        "add_key",
        "request_key",
        "reboot",
        "swapon",
        "swapoff",
        "settimeofday",
        "clock_settime",
        "clock_adjtime",
        "adjtimex",
        "sethostname",
        "setdomainname",
        "acct",
        "quotactl",
        "mknod",
        "mknodat",
        "open_by_handle_at",
        "name_to_handle_at",
        "personality",
        "seccomp",
        "memfd_create",
        "tkill",
        "symlink",
        "symlinkat",
        "link",
        "linkat",
        "chown",
        "fchown",
        "lchown",
        "fchownat",
        "iopl",
        "ioperm",
        "landlock_create_ruleset",
        "landlock_add_rule",
        "landlock_restrict_self",
        "pidfd_open",
        "pidfd_send_signal",
    ];

    #[test]
    fn every_rule_has_a_reason_and_nothing_dangerous_is_listed() {
        let allow = allowed().unwrap();
        assert!(allow.len() > 50, "{}", allow.len());
        for e in &allow {
            assert!(
                !NEVER.contains(&e.syscall.as_str()),
                "{} must never be allowed",
                e.syscall
            );
            assert!(e.reason.len() >= 8, "{}: reason too short", e.syscall);
        }
        // kill only with signal 0, which delivers nothing.
        let v: Value = serde_json::from_str(POLICY_JSON).unwrap();
        for rule in v["allow"]["filter"].as_array().unwrap() {
            if rule["syscall"] == "kill" {
                assert_eq!(
                    rule["args"],
                    serde_json::json!([{ "index": 1, "type": "dword", "op": "eq", "val": 0,
                                         "comment": "signal 0: an existence check" }]),
                    "kill must be limited to signal 0"
                );
            }
        }
        let en = enosys().unwrap();
        assert_eq!(
            en.iter().map(|e| e.syscall.as_str()).collect::<Vec<_>>(),
            ["clone3"]
        );
        assert!(
            allow.iter().any(|e| e.syscall == "clone3"),
            "clone3 must be listed so ENOSYS wins"
        );
    }

    #[test]
    fn risky_calls_are_only_allowed_with_conditions() {
        for name in [
            "clone",
            "socket",
            "socketpair",
            "prctl",
            "prlimit64",
            "mmap",
            "mprotect",
        ] {
            let rules: Vec<Entry> = allowed()
                .unwrap()
                .into_iter()
                .filter(|e| e.syscall == name)
                .collect();
            assert!(!rules.is_empty(), "{name} missing");
            assert!(
                rules.iter().all(|e| !e.conditions.is_empty()),
                "{name} allowed without conditions"
            );
        }
        // No device control at all: nothing after startup needs an ioctl.
        assert!(!allowed().unwrap().iter().any(|e| e.syscall == "ioctl"));
    }

    /// After startup the daemon creates unix sockets only (sd-notify), never
    /// maps executable memory, and binds or listens on nothing.
    #[test]
    fn no_network_socket_and_no_executable_memory_after_startup() {
        let v: Value = serde_json::from_str(POLICY_JSON).unwrap();
        let rules = v["allow"]["filter"].as_array().unwrap();
        for rule in rules {
            let name = rule["syscall"].as_str().unwrap();
            let args = rule["args"].as_array().cloned().unwrap_or_default();
            match name {
                "socket" | "socketpair" => {
                    assert!(
                        args.iter().any(|a| a["index"] == 0
                            && a["op"] == "eq"
                            && a["val"].as_u64() == Some(libc::AF_UNIX as u64)),
                        "{name}: {rule}"
                    );
                }
                "mmap" | "mprotect" => assert!(
                    args.iter().any(|a| a["index"] == 2
                        && a["op"]["masked_eq"].as_u64() == Some(libc::PROT_EXEC as u64)
                        && a["val"].as_u64() == Some(0)),
                    "{name}: {rule}"
                ),
                "bind" | "listen" | "pkey_mprotect" | "remap_file_pages" => {
                    panic!("{name} is listed")
                }
                _ => {}
            }
        }
    }

    /// Every argument value (and mask) in the policy matches the constant its
    /// comment names, as libc defines it for this architecture.
    #[test]
    fn argument_values_match_the_constants_they_name() {
        // (comment prefix, value, mask of a masked_eq)
        let known: &[(&str, u64, Option<u64>)] = &[
            ("AF_UNIX", libc::AF_UNIX as u64, None),
            (
                "flags & CLONE_THREAD",
                libc::CLONE_THREAD as u64,
                Some(libc::CLONE_THREAD as u64),
            ),
            ("prot & PROT_EXEC == 0", 0, Some(libc::PROT_EXEC as u64)),
            ("PR_SET_NAME", libc::PR_SET_NAME as u64, None),
            (
                "PR_SET_VMA_ANON_NAME",
                libc::PR_SET_VMA_ANON_NAME as u64,
                None,
            ),
            ("PR_SET_VMA", libc::PR_SET_VMA as u64, None),
            ("new_limit == NULL", 0, None),
            ("MREMAP_MAYMOVE", libc::MREMAP_MAYMOVE as u64, None),
            ("signal 0", 0, None),
        ];
        let v: Value = serde_json::from_str(POLICY_JSON).unwrap();
        let mut checked = 0;
        for rule in v["allow"]["filter"].as_array().unwrap() {
            for arg in rule["args"].as_array().into_iter().flatten() {
                let comment = arg["comment"].as_str().unwrap();
                let (_, want, mask) = known
                    .iter()
                    .find(|(name, _, _)| comment.starts_with(name))
                    .unwrap_or_else(|| {
                        panic!("{}: no known constant for {comment:?}", rule["syscall"])
                    });
                assert_eq!(
                    arg["val"].as_u64(),
                    Some(*want),
                    "{}: {comment}",
                    rule["syscall"]
                );
                assert_eq!(
                    arg["op"]["masked_eq"].as_u64(),
                    *mask,
                    "{}: {comment}",
                    rule["syscall"]
                );
                checked += 1;
            }
        }
        assert!(checked >= 7, "{checked}");
    }

    /// glibc's realloc moves large blocks with `mremap(..., MREMAP_MAYMOVE)`
    /// and nothing else: the rule allows exactly that.
    #[test]
    fn mremap_is_allowed_with_glibcs_flags_only() {
        let v: Value = serde_json::from_str(POLICY_JSON).unwrap();
        let rules: Vec<&Value> = v["allow"]["filter"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["syscall"] == "mremap")
            .collect();
        assert_eq!(rules.len(), 1, "{rules:?}");
        let args = rules[0]["args"].as_array().unwrap();
        assert_eq!(args.len(), 1, "{args:?}");
        assert_eq!(args[0]["index"], 3);
        assert_eq!(args[0]["op"], "eq");
        assert_eq!(args[0]["val"].as_u64(), Some(libc::MREMAP_MAYMOVE as u64));
    }

    /// Unlisted calls are trapped in enforce mode (reported, then SIGSYS)
    /// and logged in audit mode; the file says so itself.
    #[test]
    fn unlisted_calls_are_trapped_in_enforce_mode() {
        let v: Value = serde_json::from_str(POLICY_JSON).unwrap();
        assert_eq!(v["allow"]["mismatch_action"], "trap");
        assert_eq!(Mode::Enforce.action(), "trap");
        assert_eq!(Mode::Audit.action(), "log");
    }

    #[test]
    fn compiles_in_both_modes() {
        for mode in [Mode::Enforce, Mode::Audit] {
            let f = Filters::compile(mode).unwrap();
            assert!(!f.allow.is_empty() && !f.enosys.is_empty());
            assert_eq!(f.mode(), mode);
        }
        assert_eq!(Mode::from_name("audit"), Some(Mode::Audit));
        assert_eq!(Mode::from_name("kill"), Some(Mode::Enforce));
        assert_eq!(Mode::from_name("off"), None);
    }
}
