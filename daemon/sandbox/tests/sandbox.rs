//! The sandbox, proved on the running kernel: every forbidden action is
//! refused and every needed one works, each in a child process confined like
//! the daemon (`check` forks one per probe; the other tests fork their own).
//!
//! Tests that switch users or watch root lose its capabilities need root and
//! fail without it (CI runs as root, see docs/development.md); everything
//! else runs as any user.

use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use hitvault_sandbox::check::{self, CheckResult, Expect, Outcome};
use hitvault_sandbox::landlock::{self as ll, Enforcement};
use hitvault_sandbox::seccomp::{self, Mode};
use hitvault_sandbox::{Spec, confine, privileges};

fn is_root() -> bool {
    // SAFETY: a plain query.
    unsafe { libc::geteuid() == 0 }
}

/// Fails the test, saying why, unless it runs as root.
fn require_root(why: &str) {
    assert!(
        is_root(),
        "this test needs root: {why} (CI runs as root, see docs/development.md)"
    );
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `f` in a forked child and returns its raw wait status. The child
/// exits with `f`'s return value and never returns into the test harness.
fn in_child(f: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child runs `f` and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
        // SAFETY: leave the child at once.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    status
}

fn exit_code(status: i32) -> Option<i32> {
    libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status))
}

fn signal(status: i32) -> Option<i32> {
    libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status))
}

/// A spec like the daemon's: a data dir (read-write), a config file
/// (read-only), a port to bind, no peers.
struct Fixture {
    _data: tempfile::TempDir,
    _etc: tempfile::TempDir,
    spec: Spec,
}

fn fixture(user: Option<&str>) -> Fixture {
    let data = tempfile::Builder::new()
        .prefix("hv-sandbox-data")
        .tempdir()
        .unwrap();
    let etc = tempfile::Builder::new()
        .prefix("hv-sandbox-etc")
        .tempdir()
        .unwrap();
    let config = etc.path().join("hitvault.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:8080\"\n").unwrap();
    std::fs::set_permissions(etc.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    if let Some(u) = user {
        let u = privileges::lookup(u).unwrap();
        std::os::unix::fs::chown(data.path(), Some(u.uid), Some(u.gid)).unwrap();
    }
    let spec = Spec {
        read_only: vec![config],
        read_write: vec![data.path().to_owned()],
        bind_tcp: vec![free_port()],
        connect_tcp: vec![],
        user: user.map(str::to_owned),
    };
    Fixture {
        _data: data,
        _etc: etc,
        spec,
    }
}

fn find<'a>(results: &'a [CheckResult], prefix: &str) -> &'a CheckResult {
    results
        .iter()
        .find(|r| r.name.starts_with(prefix))
        .unwrap_or_else(|| panic!("no probe {prefix:?} in {results:#?}"))
}

fn print(results: &[CheckResult]) {
    for r in results {
        eprintln!("{r}");
    }
}

const KILLED: Outcome = Outcome::Killed(libc::SIGSYS);

#[test]
fn check_blocks_every_forbidden_action_and_allows_every_needed_one() {
    let fx = fixture(None);
    let results = check::run(&fx.spec);
    print(&results);
    assert!(check::all_passed(&results), "some probe failed, see above");

    // Who refused what: Landlock for paths (the calls are on the seccomp
    // list), seccomp for the calls that are not, TCP sockets included (the
    // daemon creates none after startup; Landlock's TCP rules are the second
    // layer, see the audit-mode test).
    let eacces = Outcome::Failed(libc::EACCES);
    assert_eq!(find(&results, "read /etc/shadow").outcome, eacces);
    assert_eq!(find(&results, "read /etc/passwd").outcome, eacces);
    assert_eq!(find(&results, "create a file outside").outcome, eacces);
    assert_eq!(
        find(&results, "write to the read-only path").outcome,
        eacces
    );
    for name in [
        "connect to 127.0.0.1:",
        "bind TCP port",
        "execute /bin/sh",
        "start a process",
        "send a UDP datagram",
        "open a raw packet socket",
        "ptrace",
        "mount",
        "become root",
    ] {
        assert_eq!(find(&results, name).outcome, KILLED, "{name}");
    }
    let needed: Vec<&CheckResult> = results
        .iter()
        .filter(|r| r.expect == Expect::Allowed)
        .collect();
    for name in [
        "read /proc/stat",
        "read /proc/meminfo",
        "read /proc/self/cgroup",
        "read /sys/devices/system/cpu/online",
        "create, write, sync, truncate, rename and delete a file in",
        "start a thread",
        "notify the service manager",
        "no capabilities",
    ] {
        assert!(
            needed.iter().any(|r| r.name.starts_with(name)),
            "needed probe {name:?} missing"
        );
    }
}

#[test]
fn check_as_root_switches_to_an_unprivileged_user() {
    require_root("it switches to another user");
    let fx = fixture(Some("nobody"));
    let results = check::run(&fx.spec);
    print(&results);
    assert!(check::all_passed(&results), "some probe failed, see above");
    let nobody = privileges::lookup("nobody").unwrap().uid;
    match &find(&results, "no capabilities").outcome {
        Outcome::Succeeded(d) => assert!(
            d.starts_with(&format!("Uid {nobody}\t{nobody}\t{nobody}")),
            "{d}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn audit_mode_shows_what_landlock_and_dropped_capabilities_refuse_on_their_own() {
    let fx = fixture(if is_root() { Some("nobody") } else { None });
    let results = check::run_with(&fx.spec, Mode::Audit);
    print(&results);
    // Behind seccomp, the other layers still refuse these...
    assert_eq!(
        find(&results, "execute /bin/sh").outcome,
        Outcome::Failed(libc::EACCES),
        "Landlock: no execute right"
    );
    assert_eq!(
        find(&results, "ptrace").outcome,
        Outcome::Failed(libc::EPERM),
        "Landlock domain / no CAP_SYS_PTRACE"
    );
    assert_eq!(
        find(&results, "mount").outcome,
        Outcome::Failed(libc::EPERM),
        "no CAP_SYS_ADMIN"
    );
    assert_eq!(
        find(&results, "open a raw packet socket").outcome,
        Outcome::Failed(libc::EPERM),
        "no CAP_NET_RAW"
    );
    assert_eq!(
        find(&results, "read /etc/shadow").outcome,
        Outcome::Failed(libc::EACCES)
    );
    // Landlock's TCP rules (ABI >= 4): a port that is not a peer cannot be
    // reached, one that is not configured cannot be bound.
    let abi = ll::abi().expect("this kernel has Landlock");
    assert!(
        abi >= 4,
        "these tests expect a kernel with Landlock ABI >= 4, found {abi}"
    );
    assert_eq!(
        find(&results, "connect to 127.0.0.1:").outcome,
        Outcome::Failed(libc::EACCES)
    );
    assert_eq!(
        find(&results, "bind TCP port").outcome,
        Outcome::Failed(libc::EACCES)
    );
    // ...while these are refused by seccomp alone (documented in policy/README.md).
    assert!(matches!(
        find(&results, "start a process").outcome,
        Outcome::Succeeded(_)
    ));
    assert!(matches!(
        find(&results, "send a UDP datagram").outcome,
        Outcome::Succeeded(_)
    ));
    // Audit mode never breaks what the daemon needs.
    for r in results.iter().filter(|r| r.expect == Expect::Allowed) {
        assert!(r.passed(), "{r}");
    }
}

#[test]
fn landlock_reaches_the_running_kernels_abi() {
    let kernel = ll::abi().expect("this kernel has Landlock");
    let fx = fixture(None);
    let status = in_child(|| {
        let r = match ll::apply(&fx.spec) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{e}");
                return 1;
            }
        };
        eprintln!("{r}");
        if r.abi != kernel || r.degraded.is_some() || !r.filesystem {
            return 2;
        }
        if kernel >= 4 && !r.network {
            return 3;
        }
        if kernel >= 6 && !r.scopes {
            return 4;
        }
        // Every right handled here exists from ABI 6 on: fully enforced there.
        if kernel >= 6 && r.enforcement != Enforcement::Full {
            return 5;
        }
        // Landlock alone (no seccomp here): a read outside fails, a read of a
        // configured path works.
        if std::fs::read("/etc/passwd").map_err(|e| e.raw_os_error()) != Err(Some(libc::EACCES)) {
            return 6;
        }
        if std::fs::read(&fx.spec.read_only[0]).is_err() {
            return 7;
        }
        0
    });
    assert_eq!(exit_code(status), Some(0), "status {status:#x}");
    eprintln!(
        "kernel Landlock ABI {kernel} (tested ABI {})",
        ll::TESTED_ABI
    );
}

#[test]
fn a_missing_configured_path_fails_loudly_and_names_it() {
    let missing = PathBuf::from("/nonexistent/hitvault/geoip.mmdb");
    let spec = Spec {
        read_only: vec![missing.clone()],
        ..Spec::default()
    };
    // apply() opens every path before it restricts anything, so this runs
    // safely in the test process.
    let e = ll::apply(&spec).unwrap_err();
    assert!(
        matches!(&e, ll::LandlockError::Path { path, .. } if path == &missing),
        "{e}"
    );
    assert!(
        e.to_string().contains("/nonexistent/hitvault/geoip.mmdb"),
        "{e}"
    );
    // confine() checks the paths before it drops anything.
    let status = in_child(move || {
        let spec = Spec {
            read_write: vec![missing],
            ..Spec::default()
        };
        match confine(&spec, Mode::Enforce) {
            Err(e)
                if e.to_string()
                    .contains("read-write path /nonexistent/hitvault/geoip.mmdb") =>
            {
                let nnp = privileges::no_new_privs().unwrap();
                if nnp { 2 } else { 0 }
            }
            _ => 1,
        }
    });
    assert_eq!(exit_code(status), Some(0), "status {status:#x}");
}

#[test]
fn confine_refuses_while_a_second_thread_exists() {
    let fx = fixture(None);
    let status = in_child(|| {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let early = std::thread::spawn(move || {
            let _ = rx.recv();
        });
        let before = privileges::no_new_privs().unwrap();
        let refused = matches!(
            confine(&fx.spec, Mode::Enforce),
            Err(hitvault_sandbox::ConfineError::Threads(2))
        );
        // Refused before anything was taken away.
        let untouched = privileges::no_new_privs().unwrap() == before;
        drop(tx);
        early.join().unwrap();
        match (refused, untouched) {
            (true, true) => 0,
            (false, _) => 1,
            (true, false) => 2,
        }
    });
    assert_eq!(exit_code(status), Some(0), "status {status:#x}");
}

/// A syscall that is not on the list and harmless if it runs.
fn unlisted_syscall() -> i64 {
    assert!(
        !seccomp::allowed()
            .unwrap()
            .iter()
            .any(|e| e.syscall == "getpriority")
    );
    // SAFETY: getpriority(PRIO_PROCESS, 0) only reads.
    unsafe { libc::syscall(libc::SYS_getpriority, libc::PRIO_PROCESS, 0) }
}

#[test]
fn seccomp_enforce_mode_kills_the_process_on_an_unlisted_syscall() {
    let status = in_child(|| {
        seccomp::apply(Mode::Enforce).unwrap();
        unlisted_syscall();
        0
    });
    assert_eq!(signal(status), Some(libc::SIGSYS), "status {status:#x}");
}

#[test]
fn seccomp_audit_mode_logs_and_lets_the_process_live() {
    let status = in_child(|| {
        seccomp::apply(Mode::Audit).unwrap();
        if unlisted_syscall() < 0 { 1 } else { 0 }
    });
    assert_eq!(exit_code(status), Some(0), "status {status:#x}");
}

/// Under the enforced policy: no TCP socket and no executable mapping.
#[test]
fn seccomp_kills_a_tcp_socket_and_an_executable_mapping() {
    let tcp = in_child(|| {
        seccomp::apply(Mode::Enforce).unwrap();
        // SAFETY: a plain socket call.
        unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        0
    });
    assert_eq!(signal(tcp), Some(libc::SIGSYS), "status {tcp:#x}");
    let exec = in_child(|| {
        seccomp::apply(Mode::Enforce).unwrap();
        // SAFETY: an anonymous mapping, never used.
        unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        0
    });
    assert_eq!(signal(exec), Some(libc::SIGSYS), "status {exec:#x}");
    // A writable mapping is fine.
    let rw = in_child(|| {
        seccomp::apply(Mode::Enforce).unwrap();
        // SAFETY: an anonymous mapping, never used.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED { 1 } else { 0 }
    });
    assert_eq!(exit_code(rw), Some(0), "status {rw:#x}");
}

#[test]
fn seccomp_filter_reaches_threads_started_before_it_and_lets_new_threads_start() {
    let status = in_child(|| {
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let early = std::thread::spawn(move || {
            go_rx.recv().unwrap();
            unlisted_syscall();
        });
        seccomp::apply(Mode::Enforce).unwrap();
        // clone3 answers ENOSYS, glibc falls back to clone(CLONE_THREAD).
        if std::thread::spawn(|| 7).join().unwrap() != 7 {
            return 1;
        }
        // TSYNC: the thread that existed before the filter is under it too.
        go_tx.send(()).unwrap();
        let _ = early.join();
        2
    });
    assert_eq!(signal(status), Some(libc::SIGSYS), "status {status:#x}");
}

#[test]
fn privileges_drop_to_nobody_clears_every_capability() {
    require_root("it switches to another user");
    let nobody = privileges::lookup("nobody").unwrap();
    let status = in_child(|| {
        let r = privileges::drop_to(Some("nobody")).unwrap();
        eprintln!("{r}");
        let s = std::fs::read_to_string("/proc/self/status").unwrap();
        let field = |k: &str| {
            s.lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap()
                .trim()
                .to_owned()
        };
        for cap in ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
            if field(cap) != "0000000000000000" {
                eprintln!("{cap} {}", field(cap));
                return 1;
            }
        }
        if field("NoNewPrivs:") != "1" || !field("Groups:").is_empty() {
            return 2;
        }
        let want = format!("{0}\t{0}\t{0}\t{0}", nobody.uid);
        if field("Uid:") != want {
            return 3;
        }
        // SAFETY: plain system calls that must fail now.
        if unsafe { libc::setuid(0) } == 0 || unsafe { libc::setgid(0) } == 0 {
            return 4;
        }
        if r.uid != nobody.uid
            || r.switched_to.as_deref() != Some("nobody")
            || !r.no_new_privs
            || r.still_root()
        {
            return 5;
        }
        0
    });
    assert_eq!(exit_code(status), Some(0), "status {status:#x}");
}

#[test]
fn an_unprivileged_process_cannot_switch_and_says_to_whom() {
    if !is_root() {
        let e = privileges::drop_to(Some("daemon")).unwrap_err();
        assert!(e.to_string().contains("\"daemon\""), "{e}");
        return;
    }
    let status = in_child(|| {
        privileges::drop_to(Some("nobody")).unwrap();
        let e = privileges::drop_to(Some("daemon")).unwrap_err();
        let msg = e.to_string();
        if !msg.contains("cannot switch to sandbox user \"daemon\"") {
            eprintln!("{msg}");
            return 1;
        }
        // No user configured, not root: capabilities cleared, no_new_privs.
        let r = privileges::drop_to(None).unwrap();
        if !r.no_new_privs || r.switched_to.is_some() || r.was_root {
            return 2;
        }
        0
    });
    assert_eq!(exit_code(status), Some(0), "status {status:#x}");
}

#[test]
fn root_without_a_user_keeps_uid_0_but_no_capabilities() {
    require_root("it checks what root keeps once its capabilities are dropped");
    // A file root does not own, with no permission bits for anyone.
    let dir = tempfile::tempdir().unwrap();
    let locked = dir.path().join("locked");
    std::fs::write(&locked, "secret").unwrap();
    let nobody = privileges::lookup("nobody").unwrap();
    std::os::unix::fs::chown(&locked, Some(nobody.uid), Some(nobody.gid)).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    assert!(
        std::fs::read(&locked).is_ok(),
        "root with its capabilities reads it"
    );
    let status = in_child(|| {
        let r = privileges::drop_to(None).unwrap();
        let s = std::fs::read_to_string("/proc/self/status").unwrap();
        let eff = s
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .unwrap()
            .trim()
            .to_owned();
        let bnd = s
            .lines()
            .find_map(|l| l.strip_prefix("CapBnd:"))
            .unwrap()
            .trim()
            .to_owned();
        if !r.still_root() || eff != "0000000000000000" || bnd != "0000000000000000" {
            return 1;
        }
        // Without CAP_DAC_OVERRIDE, root cannot read a file it does not own
        // and that has no permission bits for it.
        if std::fs::read(&locked).map_err(|e| e.raw_os_error()) != Err(Some(libc::EACCES)) {
            return 2;
        }
        0
    });
    assert_eq!(exit_code(status), Some(0), "status {status:#x}");
}

#[test]
fn rules_list_every_path_port_and_layer() {
    let fx = fixture(None);
    let spec = Spec {
        user: Some("hitvault".into()),
        ..fx.spec.clone()
    };
    let rules = spec.rules();
    let text = rules.join("\n");
    eprintln!("{text}");
    assert!(text.contains("switch to user \"hitvault\""));
    assert!(text.contains(&format!("read-only  {}", fx.spec.read_only[0].display())));
    assert!(text.contains(&format!("read-write {}", fx.spec.read_write[0].display())));
    assert!(text.contains(&format!("bind TCP ports {}", fx.spec.bind_tcp[0])));
    assert!(text.contains("connect to TCP ports none"));
    assert!(text.contains("/proc/stat"));
    assert!(text.contains("any other syscall kills the process"));
}

/// As under systemd-nspawn's default filter: the Landlock calls answer
/// EPERM (or ENOSYS on a kernel without Landlock). The daemon must carry on
/// with a degraded report, not fail.
#[test]
fn landlock_refused_by_a_seccomp_filter_degrades_instead_of_failing() {
    for errno in [libc::EPERM, libc::ENOSYS] {
        let fx = fixture(None);
        let status = in_child(|| {
            let rules = [
                libc::SYS_landlock_create_ruleset,
                libc::SYS_landlock_add_rule,
                libc::SYS_landlock_restrict_self,
            ]
            .into_iter()
            .map(|nr| (nr, vec![]))
            .collect();
            let filter: seccompiler::BpfProgram = seccompiler::SeccompFilter::new(
                rules,
                seccompiler::SeccompAction::Allow,
                seccompiler::SeccompAction::Errno(errno as u32),
                std::env::consts::ARCH.try_into().unwrap(),
            )
            .unwrap()
            .try_into()
            .unwrap();
            seccompiler::apply_filter(&filter).unwrap();
            match ll::apply(&fx.spec) {
                Ok(r) if r.degraded.is_some() && r.enforcement == Enforcement::None => {
                    eprintln!("{r}");
                    // Nothing is enforced: a read outside the spec still works.
                    if std::fs::read("/etc/passwd").is_ok() {
                        0
                    } else {
                        2
                    }
                }
                other => {
                    eprintln!("{other:?}");
                    1
                }
            }
        });
        assert_eq!(
            exit_code(status),
            Some(0),
            "errno {errno}: status {status:#x}"
        );
    }
}

/// Runs `f` in a forked child whose stderr goes to a file; the raw wait
/// status and what the child wrote there.
fn in_child_capturing_stderr(f: impl FnOnce() -> i32) -> (i32, String) {
    let mut err = tempfile::tempfile().unwrap();
    let status = in_child(|| {
        // SAFETY: fd 2 becomes the temporary file; nothing else changes.
        unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&err), 2) };
        f()
    });
    use std::io::{Read, Seek};
    let mut text = String::new();
    err.rewind().unwrap();
    err.read_to_string(&mut text).unwrap();
    (status, text)
}

/// The operator learns which call killed the process: its number and name,
/// its arguments and the thread, on stderr (the journal under systemd), and
/// the process still dies of SIGSYS, as a kill by the filter would.
#[test]
fn seccomp_enforce_mode_names_the_refused_call_on_stderr_then_dies_of_sigsys() {
    let (status, err) = in_child_capturing_stderr(|| {
        seccomp::apply(Mode::Enforce).unwrap();
        unlisted_syscall();
        0
    });
    eprintln!("{err}");
    assert_eq!(signal(status), Some(libc::SIGSYS), "status {status:#x}");
    let nr = libc::SYS_getpriority;
    assert!(
        err.contains(&format!(
            "seccomp: system call {nr} (getpriority) refused by the allow-list"
        )),
        "{err}"
    );
    assert!(err.contains("dies of SIGSYS"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    // From another thread, a call refused by its argument: the line names
    // the thread and shows the value that decided (AF_INET = 2).
    let (status, err) = in_child_capturing_stderr(|| {
        seccomp::apply(Mode::Enforce).unwrap();
        let t = std::thread::Builder::new()
            .name("hv-tcp-probe".into())
            .spawn(|| {
                // SAFETY: a plain socket call.
                unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
            })
            .unwrap();
        let _ = t.join();
        0
    });
    eprintln!("{err}");
    assert_eq!(signal(status), Some(libc::SIGSYS), "status {status:#x}");
    assert!(
        err.contains(&format!(
            "system call {} (socket) refused by the allow-list, arguments (0x2, 0x1, 0x0,",
            libc::SYS_socket
        )),
        "{err}"
    );
    assert!(err.contains("\"hv-tcp-probe\""), "{err}");

    // Audit mode installs no reporter: the call goes through, nothing is written.
    let (status, err) = in_child_capturing_stderr(|| {
        seccomp::apply(Mode::Audit).unwrap();
        if unlisted_syscall() < 0 { 1 } else { 0 }
    });
    assert_eq!(exit_code(status), Some(0), "status {status:#x}");
    assert!(!err.contains("seccomp:"), "{err}");
}

/// What glibc's allocator, thread exit, DuckDB and std do on paths the
/// traced runs never took, under the enforced policy in a confined child:
/// realloc of a block glibc mapped on its own (`mremap`), `malloc_trim`,
/// huge and returned pages (`madvise`), many threads starting and ending,
/// and `remove_dir_all` (retention's clean-up after a failed export). Each
/// step must leave the child alive.
#[test]
fn the_allocator_threads_and_std_paths_no_trace_saw_are_allowed() {
    let fx = fixture(None);
    let dir = fx.spec.read_write[0].join("half-written-archive");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("hits.parquet"), b"x").unwrap();
    std::fs::write(dir.join("sub/props.parquet"), b"y").unwrap();
    let (status, err) = in_child_capturing_stderr(|| {
        confine(&fx.spec, Mode::Enforce).unwrap();
        // 1 MiB is above glibc's mmap threshold in a fresh process: the
        // block is mapped on its own, and growing it moves the mapping.
        let mut v: Vec<u8> = vec![1; 1 << 20];
        for _ in 0..6 {
            v.resize(v.len() * 2, 2);
        }
        v.truncate(1 << 20);
        v.shrink_to_fit();
        if v.iter().map(|b| u64::from(*b)).sum::<u64>() != 1 << 20 {
            return 1;
        }
        drop(v);
        // SAFETY: malloc_trim only returns free memory to the kernel.
        unsafe { libc::malloc_trim(0) };
        // DuckDB's advice on large blocks, and returning pages.
        let len = 16 << 20;
        // SAFETY: an anonymous mapping, advised and unmapped here only.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if p == libc::MAP_FAILED {
                return 2;
            }
            libc::madvise(p, len, libc::MADV_HUGEPAGE);
            libc::madvise(p, len, libc::MADV_DONTNEED);
            libc::munmap(p, len);
        }
        // Threads start, allocate in their own arenas, and end.
        let threads: Vec<_> = (0..32)
            .map(|i| {
                std::thread::spawn(move || {
                    let mut v = Vec::with_capacity(300_000);
                    v.resize(300_000 + i, 0u8);
                    v.len()
                })
            })
            .collect();
        if threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum::<usize>()
            != 32 * 300_000 + 496
        {
            return 3;
        }
        if std::fs::remove_dir_all(&dir).is_err() || dir.exists() {
            return 4;
        }
        0
    });
    assert_eq!(exit_code(status), Some(0), "status {status:#x}\n{err}");
}

/// `mremap` is allowed with exactly glibc's flags: moving a mapping to an
/// address of the caller's choosing (`MREMAP_FIXED`) is refused.
#[test]
fn mremap_is_allowed_only_as_glibc_calls_it() {
    for (flags, killed) in [
        (libc::MREMAP_MAYMOVE, false),
        (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED, true),
    ] {
        let status = in_child(|| {
            // SAFETY: mappings of this child only.
            unsafe {
                let p = libc::mmap(
                    std::ptr::null_mut(),
                    8192,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                );
                let target = libc::mmap(
                    std::ptr::null_mut(),
                    1 << 20,
                    libc::PROT_NONE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                );
                seccomp::apply(Mode::Enforce).unwrap();
                let q = libc::mremap(p, 8192, 1 << 20, flags, target);
                if q == libc::MAP_FAILED { 1 } else { 0 }
            }
        });
        if killed {
            assert_eq!(signal(status), Some(libc::SIGSYS), "status {status:#x}");
        } else {
            assert_eq!(exit_code(status), Some(0), "status {status:#x}");
        }
    }
}
