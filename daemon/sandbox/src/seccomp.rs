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
            Mode::Enforce => "kill_process",
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
            Mode::Enforce => "kill the process",
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
    if names != ["allow", "enosys"] {
        return Err(SeccompError::Policy(format!(
            "expected the filters `allow` and `enosys`, found {names:?}"
        )));
    }
    if v["allow"]["mismatch_action"] != "kill_process" || v["allow"]["match_action"] != "allow" {
        return Err(SeccompError::Policy(
            "`allow` must allow what it lists and kill the process otherwise".into(),
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
        if std::env::consts::ARCH != POLICY_ARCH {
            return Err(SeccompError::UnsupportedArch(std::env::consts::ARCH));
        }
        let mut v = policy()?;
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
    /// `enosys` one first. Sets `no_new_privs`. Irreversible.
    pub fn apply(&self) -> Result<SeccompReport, SeccompError> {
        seccompiler::apply_filter_all_threads(&self.enosys).map_err(|source| {
            SeccompError::Install {
                filter: "enosys",
                source,
            }
        })?;
        seccompiler::apply_filter_all_threads(&self.allow).map_err(|source| {
            SeccompError::Install {
                filter: "allow",
                source,
            }
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
