//! sd-notify from a child process, as the daemon does it under systemd: the
//! parent binds a notify socket, starts a child with `NOTIFY_SOCKET` and
//! `WATCHDOG_USEC` set, and reads the four messages the child sends.
//!
//! This file has its own `main` (`harness = false` in Cargo.toml): the same
//! binary is re-run as the child, selected by the `HV_SANDBOX_NOTIFY_CHILD`
//! environment variable, so the child is never a test that passes by doing
//! nothing.

use std::process::{Command, ExitCode};
use std::time::Duration;

use hitvault_sandbox::notify::Notifier;

const CHILD_ENV: &str = "HV_SANDBOX_NOTIFY_CHILD";

const TEST: &str = "notify_through_notify_socket_in_a_child_process";

fn main() -> ExitCode {
    if std::env::var_os(CHILD_ENV).is_some() {
        child();
        return ExitCode::SUCCESS;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        if selected(&args) {
            println!("{TEST}: test");
        }
        return ExitCode::SUCCESS;
    }
    if !selected(&args) {
        println!("\nrunning 0 tests\n\ntest result: ok. 0 passed; 0 failed; 1 filtered out\n");
        return ExitCode::SUCCESS;
    }
    println!("\nrunning 1 test");
    // A failed assertion panics with its message on stderr; the exit code
    // then fails the run.
    notify_through_notify_socket_in_a_child_process();
    println!("test {TEST} ... ok\n\ntest result: ok. 1 passed; 0 failed\n");
    ExitCode::SUCCESS
}

/// Whether libtest's arguments select [`TEST`]: name filters (substrings, or
/// whole names with `--exact`), `--skip NAME` and `--ignored` (it is not).
fn selected(args: &[String]) -> bool {
    let exact = args.iter().any(|a| a == "--exact");
    let matches = |f: &str| if exact { TEST == f } else { TEST.contains(f) };
    let (mut filters, mut skips) = (Vec::new(), Vec::new());
    let mut args = args.iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--ignored" => return false,
            "--skip" => skips.extend(args.next()),
            // Options that take a value as the next argument.
            "--test-threads" | "--color" | "--format" | "--logfile" | "-Z" => {
                args.next();
            }
            f if !f.starts_with('-') => filters.push(f),
            _ => {}
        }
    }
    !skips.iter().any(|f| matches(f)) && (filters.is_empty() || filters.iter().any(|f| matches(f)))
}

/// The child: notifies through the environment the parent set, as the daemon
/// would under systemd. Any failure panics, which the parent sees in the exit
/// status and stderr.
fn child() {
    let n = Notifier::from_process_env().unwrap();
    assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(15)));
    n.ready().unwrap();
    n.status("child ready").unwrap();
    n.watchdog().unwrap();
    n.stopping().unwrap();
}

fn notify_through_notify_socket_in_a_child_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, "1")
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "30000000")
        .env_remove("WATCHDOG_PID")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    for _ in 0..4 {
        let n = sock.recv(&mut buf).unwrap();
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert_eq!(
        got,
        [
            "READY=1\n",
            "STATUS=child ready\n",
            "WATCHDOG=1\n",
            "STOPPING=1\n"
        ]
    );
}
