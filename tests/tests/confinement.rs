//! The confinement of the real daemon, seen from outside: every thread runs
//! unprivileged under the seccomp filter in kill mode, `hitvault sandbox
//! show` prints the rules and `hitvault sandbox check` proves them (and
//! fails when they are weakened), root without `user` is refused, a blocked
//! Landlock is a warning or, with `landlock = required`, a refusal.
//!
//! Tests that only make sense as root say so and fail otherwise (CI runs as
//! root, see docs/development.md).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};

use hitvault_sandbox::landlock as ll;
use hitvault_sandbox::privileges;
use hitvault_sandbox::seccomp;
use hitvault_tests::{Daemon, TEST_USER, binary, require_root, test_user};

const SITES: (&str, &str) = ("HITVAULT_SITES", "shop.test");

/// `hitvault ARGS` with a clean environment (no HITVAULT_* from the caller).
fn hitvault(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(binary());
    c.args(args);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("HITVAULT_")) {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A temporary directory the test user can traverse.
fn scratch() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("hitvault-confine")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(
        d.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .unwrap();
    d
}

fn status_field(status: &str, field: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in {status}"))
        .trim()
        .to_owned()
}

#[test]
fn every_thread_of_the_daemon_is_unprivileged_and_under_seccomp_kill_mode() {
    require_root("it starts the daemon as root to see every thread switch users");
    let d = Daemon::start(&[SITES]);
    // Make DuckDB, the queue and the runtime do some work first.
    let r = d.beacon(
        "/api/collect",
        r#"{"n":"pageview","u":"https://shop.test/a"}"#,
    );
    assert_eq!(r.status, 202);
    let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{}/task", d.pid()))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        tasks.len() >= 4,
        "expected the runtime's, the queue's and DuckDB's threads, found {}",
        tasks.len()
    );
    let uid = privileges::lookup(TEST_USER).unwrap().uid;
    let mut checked = 0;
    for t in &tasks {
        let Ok(s) = std::fs::read_to_string(t.join("status")) else {
            continue; // a thread that just ended
        };
        checked += 1;
        let name = status_field(&s, "Name");
        assert_eq!(status_field(&s, "Seccomp"), "2", "{name}: seccomp filter");
        assert_eq!(
            status_field(&s, "Seccomp_filters"),
            "2",
            "{name}: the enosys and allow filters"
        );
        assert_eq!(status_field(&s, "NoNewPrivs"), "1", "{name}");
        for cap in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
            assert_eq!(status_field(&s, cap), "0000000000000000", "{name}: {cap}");
        }
        assert_eq!(
            status_field(&s, "Uid"),
            format!("{uid}\t{uid}\t{uid}\t{uid}"),
            "{name}"
        );
        assert_eq!(status_field(&s, "Groups"), "", "{name}");
        assert_eq!(status_field(&s, "CapBnd"), "0000000000000000", "{name}");
    }
    assert!(
        checked >= 4,
        "only {checked} of {} threads were still there to check",
        tasks.len()
    );
    let log = d.log_text();
    let abi = ll::abi().expect("this kernel has Landlock");
    let level = if abi >= 6 { "fully" } else { "partly" };
    assert!(
        log.contains(&format!("landlock ABI {abi} {level} enforced")),
        "{log}"
    );
    // Kill mode, unless the policy is being derived (HV_TEST_SECCOMP=audit,
    // see policy/README.md).
    let audit = std::env::var("HV_TEST_SECCOMP").is_ok_and(|m| m == "audit");
    let mode = if audit {
        "other calls are logged (audit mode)"
    } else {
        "other calls kill the process"
    };
    assert!(log.contains(mode), "{log}");
    assert!(
        log.contains(&format!("switched from root to {TEST_USER:?}")),
        "{log}"
    );
    let s = d.stop();
    assert_eq!(s.count("SELECT count(*) FROM hits"), 1);
}

#[test]
fn root_is_refused_without_a_user_and_root_is_no_user() {
    require_root("it starts the daemon as root to see it refused without `user`");
    let dir = scratch();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let out = hitvault(
        &["serve", "--data-dir", data, "--listen", "127.0.0.1:0"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("`user`") && text(&out).contains("started as root"),
        "{}",
        text(&out)
    );
    assert!(
        !Path::new(data).exists(),
        "refused before touching anything"
    );
    let out = hitvault(&["serve", "--data-dir", data, "--user", "root"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("unprivileged account"),
        "{}",
        text(&out)
    );
    let out = hitvault(
        &["serve", "--data-dir", data],
        &[("HITVAULT_USER", "hitvault-no-such-user")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("`user`") && text(&out).contains("does not exist"),
        "{}",
        text(&out)
    );
    let out = hitvault(
        &["serve", "--data-dir", data],
        &[("HITVAULT_SECCOMP", "off")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("`seccomp`"), "{}", text(&out));
}

#[test]
fn sandbox_show_prints_every_rule_derived_from_the_configuration() {
    let dir = scratch();
    let data = dir.path().join("data");
    let out = hitvault(
        &[
            "sandbox",
            "show",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:18443",
            "--user",
            "hitvault",
            "--seccomp",
            "audit",
            "--landlock",
            "required",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8(out.stdout).unwrap();
    for want in [
        "switch to user \"hitvault\"".to_owned(),
        format!("landlock: read-write {}", data.display()),
        "landlock: read-only  /proc/stat".to_owned(),
        "landlock: execute nothing".to_owned(),
        "landlock: bind TCP ports 18443".to_owned(),
        "landlock: connect to TCP ports none".to_owned(),
        "landlock: required".to_owned(),
        "logged and let through (audit mode".to_owned(),
        "seccomp: ENOSYS clone3".to_owned(),
        "seccomp: allow clone [only when flags & CLONE_THREAD]".to_owned(),
    ] {
        assert!(shown.contains(&want), "{want:?} missing from:\n{shown}");
    }
    let allowed = seccomp::allowed().unwrap();
    assert_eq!(
        shown
            .lines()
            .filter(|l| l.starts_with("seccomp: allow "))
            .count(),
        allowed.len(),
        "one line per allow-list entry:\n{shown}"
    );
    for e in &allowed {
        assert!(
            shown.contains(&format!("seccomp: allow {}", e.syscall)),
            "{}",
            e.syscall
        );
    }
}

#[test]
fn sandbox_check_proves_the_confinement_and_fails_when_it_is_weakened() {
    let dir = scratch();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let user = test_user().map(|u| ("HITVAULT_USER", u));
    let env: Vec<(&str, &str)> = user.into_iter().collect();
    let out = hitvault(&["sandbox", "check", "--data-dir", data], &env);
    let report = text(&out);
    eprintln!("{report}");
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(!report.contains("FAIL"), "{report}");
    for probe in [
        "ok   read /etc/shadow: must be blocked",
        "ok   create a file outside the read-write paths",
        "ok   execute /bin/sh: must be blocked",
        "ok   start a process (fork): must be blocked",
        "ok   connect to 127.0.0.1:",
        "ok   send a UDP datagram",
        "ok   ptrace the parent process",
        "ok   mount a tmpfs: must be blocked",
        "ok   become root again",
        "ok   create, write, sync, truncate, rename and delete a file in",
        "ok   notify the service manager",
        "ok   no capabilities, no_new_privs, seccomp filter",
    ] {
        assert!(report.contains(probe), "{probe:?} missing");
    }
    assert!(report.contains("probes passed"), "{report}");

    // Audit mode is not confinement: processes and UDP get through, and the
    // check says so with a failing exit status.
    let mut env = env.clone();
    env.push(("HITVAULT_SECCOMP", "audit"));
    let out = hitvault(&["sandbox", "check", "--data-dir", data], &env);
    let report = text(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(
        report.contains("FAIL start a process (fork): must be blocked, allowed"),
        "{report}"
    );
    assert!(
        report.contains("FAIL send a UDP datagram to 127.0.0.1:9: must be blocked, allowed"),
        "{report}"
    );
    assert!(report.contains("probes FAILED"), "{report}");
}

#[test]
fn a_second_daemon_on_the_same_data_dir_leaves_the_first_one_alone() {
    let d = Daemon::start(&[SITES]);
    let mut env = vec![("HITVAULT_SITES", "shop.test")];
    if let Some(u) = test_user() {
        env.push(("HITVAULT_USER", u));
    }
    let out = hitvault(
        &[
            "serve",
            "--data-dir",
            d.data_dir.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &env,
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains("another hitvault is already running"),
        "{}",
        text(&out)
    );
    // The first daemon's control socket still answers.
    let out = hitvault(
        &[
            "site",
            "add",
            "second.test",
            "--data-dir",
            d.data_dir.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        d.beacon(
            "/api/collect",
            r#"{"n":"pageview","u":"https://second.test/"}"#
        )
        .status,
        202
    );
    d.stop();
}

#[test]
fn files_root_left_in_the_data_dir_are_handed_to_the_user() {
    require_root("it starts the daemon as root to see it switch users");
    // Before the first start, the operator declares a site with the offline
    // CLI, as root: the store and its directories are created by root.
    let root = scratch();
    let data = root.path().join("data");
    let out = hitvault(
        &[
            "site",
            "add",
            "offline.test",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let by_root = |dir: &Path| {
        hitvault_tests::files_under(dir)
            .into_iter()
            .chain([dir.to_owned(), dir.join("tmp")])
            .filter(|f| std::fs::symlink_metadata(f).unwrap().uid() == 0)
            .count()
    };
    assert!(by_root(&data) >= 3, "the offline CLI ran as root");
    let d = Daemon::start_wrapped(data, root, &[SITES], &[]);
    let nobody = privileges::lookup(TEST_USER).unwrap().uid;
    for f in hitvault_tests::files_under(&d.data_dir)
        .into_iter()
        .chain([d.data_dir.clone(), d.data_dir.join("tmp")])
    {
        assert_eq!(
            std::fs::symlink_metadata(&f).unwrap().uid(),
            nobody,
            "{}",
            f.display()
        );
    }
    assert!(
        d.log_text()
            .contains("data dir handed over to the service user"),
        "{}",
        d.log_text()
    );
    assert_eq!(
        d.beacon(
            "/api/collect",
            r#"{"n":"pageview","u":"https://offline.test/"}"#
        )
        .status,
        202
    );
    let s = d.stop();
    assert_eq!(
        s.count("SELECT count(*) FROM hits_v WHERE site = 'offline.test'"),
        1
    );
}

/// The wrapper the Landlock tests run the daemon under: it refuses the three
/// Landlock calls with EPERM (as systemd-nspawn's default filter does), then
/// executes the command after `--`.
const BLOCKER: [&str; 2] = [env!("CARGO_BIN_EXE_hv-landlock-blocker"), "--"];

#[test]
fn blocked_landlock_is_a_warning_by_default_and_fatal_when_required() {
    // Best effort (the default): starts, says Landlock is not enforced,
    // seccomp still applies, ingest works.
    let root = scratch();
    let data = root.path().join("data");
    let d = Daemon::start_wrapped(data, root, &[SITES], &BLOCKER);
    let log = d.log_text();
    assert!(
        log.contains("landlock is not enforced") && log.contains("Operation not permitted"),
        "{log}"
    );
    assert_eq!(d.proc_status("Seccomp"), "2");
    assert_eq!(
        d.beacon(
            "/api/collect",
            r#"{"n":"pageview","u":"https://shop.test/"}"#
        )
        .status,
        202
    );
    d.stop();

    // Required: the same situation stops the daemon at startup (exit 3).
    let dir = scratch();
    let data = dir.path().join("data");
    let mut c = Command::new(BLOCKER[0]);
    c.args(&BLOCKER[1..])
        .arg(binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("HITVAULT_")) {
        c.env_remove(k);
    }
    if let Some(u) = test_user() {
        c.env("HITVAULT_USER", u);
    }
    c.env("HITVAULT_LANDLOCK", "required");
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains("`landlock` is `required`"),
        "{}",
        text(&out)
    );
    assert!(
        !data.join("hitvault.duckdb").exists(),
        "refused before the store was opened"
    );

    // Required on this kernel (Landlock ABI >= 4 here): starts.
    let abi = ll::abi().expect("this kernel has Landlock");
    assert!(
        abi >= 4,
        "these tests expect a kernel with Landlock ABI >= 4"
    );
    let d = Daemon::start(&[SITES, ("HITVAULT_LANDLOCK", "required")]);
    assert!(d.log_text().contains("enforced: files yes, TCP ports yes"));
    d.stop();
}
