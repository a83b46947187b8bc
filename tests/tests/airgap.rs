//! The air gap and the seccomp policy, observed on the real daemon: it runs
//! under `strace -f` (every system call of every thread, from exec to exit)
//! through a workload (each ingest endpoint, a large batch, the tracker,
//! metrics, the dashboard's pages and an open realtime stream, a site added
//! through the control socket, a load run by `hv-load`, the sd-notify
//! watchdog, a graceful stop), then the trace is
//! read:
//! - no connect() to anything but the service manager's notify socket (and,
//!   before confinement, glibc's nscd socket when it looks up `user`), no
//!   datagram to a network address, no TCP socket but the listener: any
//!   attempt fails the test, even one the sandbox refused;
//! - every system call made after confinement is on the seccomp allow-list.
//!
//! A second test runs the same analysis on `hitvault sandbox check` in
//! audit mode, which does try to connect out, so the detector is shown to
//! see an attempt in real strace output.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use hitvault_sandbox::seccomp;
use hitvault_tests::trace::{self, Call};
use hitvault_tests::{CHROME_UA, Daemon, binary, sibling_binary, test_user};

/// glibc asks nscd first when the daemon looks up `user` (before confinement).
const NSCD: &str = "/var/run/nscd/socket";

fn strace_available() {
    let ok = Command::new("strace").arg("-V").output().is_ok();
    assert!(
        ok,
        "strace is not installed: `apt-get install strace` (tests/run installs it)"
    );
}

fn read_trace(path: &std::path::Path) -> Vec<Call> {
    let text = std::fs::read_to_string(path).unwrap();
    trace::parse(&text)
}

#[test]
fn the_daemon_connects_nowhere_and_calls_only_listed_syscalls_under_load() {
    strace_available();
    let root = tempfile::Builder::new()
        .prefix("hitvault-airgap")
        .tempdir()
        .unwrap();
    let dir = root.path().to_owned();
    let data = dir.join("data");
    let trace_file = dir.join("daemon.trace");
    let notify_path = dir.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "airgap-token-0123456789\n").unwrap();
    let sites: Vec<String> = (1..=20).map(|i| format!("site{i:02}.test")).collect();
    let sites = sites.join(",");
    let wrapper = ["strace", "-f", "-qq", "-o", trace_file.to_str().unwrap()];
    let d = Daemon::start_wrapped(
        data,
        root,
        &[
            ("HITVAULT_SITES", &sites),
            ("HITVAULT_TRUSTED_PROXIES", "127.0.0.1"),
            ("HITVAULT_INGEST_TOKEN_FILE", token.to_str().unwrap()),
            ("NOTIFY_SOCKET", notify_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "1000000"),
        ],
        &wrapper,
    );

    // Every public endpoint once.
    let hit = |u: &str| format!(r#"{{"n":"pageview","u":"https://{u}"}}"#);
    assert_eq!(d.beacon("/api/collect", &hit("site01.test/a")).status, 202);
    assert_eq!(
        d.beacon(
            "/api/event",
            r#"{"n":"Signup","u":"https://site02.test/x","d":"site02.test","p":{"plan":"pro"}}"#
        )
        .status,
        202
    );
    for path in ["/hv.js", "/metrics", "/healthz", "/readyz"] {
        assert_eq!(d.get(path).unwrap().status, 200, "{path}");
    }
    // The dashboard, and its realtime stream, kept open through the load.
    for path in [
        "/",
        "/sites/site01.test",
        "/sites/site01.test/realtime",
        "/sites/site01.test/settings",
        "/sites/site01.test/export.csv?panel=page",
        "/assets/dashboard.js",
        "/api/v1/stats/overview?site=site01.test",
    ] {
        assert_eq!(d.get(path).unwrap().status, 200, "{path}");
    }
    let mut stream = TcpStream::connect(d.addr).unwrap();
    write!(
        stream,
        "GET /api/v1/stats/realtime?site=site03.test HTTP/1.1\r\nHost: {}\r\n\r\n",
        d.addr
    )
    .unwrap();
    let mut head = [0u8; 1024];
    let n = stream.read(&mut head).unwrap();
    assert!(
        String::from_utf8_lossy(&head[..n]).contains("text/event-stream"),
        "{}",
        String::from_utf8_lossy(&head[..n])
    );
    // A large batch: about 2 MiB of NDJSON, 5,000 hits.
    let line = format!(
        r#"{{"name":"pageview","url":"https://site03.test/p/{{}}/{}","user_agent":"{CHROME_UA}","ip":"192.0.2.7"}}"#,
        "x".repeat(200)
    );
    let batch: String = (0..5000)
        .map(|i| line.replace("{}", &i.to_string()) + "\n")
        .collect();
    let r = d
        .request(
            "POST",
            "/api/ingest/batch",
            &[
                ("Authorization", "Bearer airgap-token-0123456789"),
                ("Content-Type", "application/x-ndjson"),
            ],
            batch.as_bytes(),
        )
        .unwrap();
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    // The control socket, through the CLI.
    let out = Command::new(binary())
        .args(["site", "add", "extra.test", "--data-dir"])
        .arg(&d.data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Load.
    let load = Command::new(sibling_binary("hv-load"))
        .args(["--addr", &d.addr.to_string()])
        .args(["--seconds", "4", "--warmup", "1", "--connections", "32"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&load.stdout);
    assert!(
        load.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&load.stderr)
    );
    let acked: u64 = report
        .lines()
        .find_map(|l| l.strip_prefix("202 total"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no 202 count in:\n{report}"));
    assert!(acked > 100, "{report}");
    // The watchdog pings arrive (sendto on the notify socket, confined).
    let mut buf = [0u8; 256];
    let t = Instant::now();
    let mut watchdog = false;
    while !watchdog && t.elapsed() < Duration::from_secs(10) {
        if let Ok(n) = notify.recv(&mut buf) {
            watchdog = String::from_utf8_lossy(&buf[..n]).contains("WATCHDOG=1");
        }
    }
    assert!(watchdog, "no WATCHDOG=1 received");
    // The stream saw the batch to site03.test commit; it ends with the daemon.
    let mut seen = Vec::new();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let most = |seen: &[u8]| {
        String::from_utf8_lossy(seen)
            .split("\"pageviews\":")
            .skip(1)
            .filter_map(|v| v.split([',', '}']).next()?.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
    };
    while most(&seen) < 5000 {
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended early");
        seen.extend_from_slice(&buf[..n]);
    }
    let s = d.stop();
    drop(stream);
    assert!(
        s.count("SELECT count(*) FROM hits") >= acked + 5002,
        "every acknowledged hit is stored"
    );

    let calls = read_trace(&trace_file);
    let after = trace::after_confinement(&calls).expect("the daemon confined itself");
    let before = &calls[..calls.len() - after.len()];
    eprintln!(
        "{} system calls traced, {} after confinement",
        calls.len(),
        after.len()
    );
    let notify_str = notify_path.to_str().unwrap();
    // The analysis sees connects at all: the notify socket is connected once.
    assert!(
        before
            .iter()
            .any(|c| c.name == "connect" && c.text.contains(notify_str)),
        "the trace should show the connect to the notify socket"
    );
    assert!(
        after.iter().filter(|c| c.name == "accept4").count() >= 32,
        "the trace should show the load's connections"
    );
    let mut found = trace::outbound(before, &[notify_str, NSCD], 1);
    found.extend(trace::outbound(after, &[notify_str], 0));
    assert!(
        found.is_empty(),
        "the daemon reached out:\n{}",
        found.join("\n")
    );

    // The seccomp policy covers every call made after confinement.
    let listed: BTreeSet<String> = seccomp::allowed()
        .unwrap()
        .into_iter()
        .map(|e| e.syscall)
        .collect();
    let used = trace::names(after);
    let missing: Vec<&String> = used.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "called after confinement but not on the allow-list: {missing:?}"
    );
    let unused: Vec<&String> = listed.difference(&used).collect();
    eprintln!(
        "{} syscalls used after confinement; listed but not used in this run: {unused:?}",
        used.len()
    );
}

#[test]
fn the_air_gap_analysis_sees_an_attempt_to_connect_out() {
    strace_available();
    let dir = tempfile::Builder::new()
        .prefix("hitvault-airgap-check")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .unwrap();
    let trace_file = dir.path().join("check.trace");
    let mut c = Command::new("strace");
    c.args(["-f", "-qq", "-o"])
        .arg(&trace_file)
        .arg(binary())
        .args(["sandbox", "check", "--seccomp", "audit", "--data-dir"])
        .arg(dir.path().join("data"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("HITVAULT_")) {
        c.env_remove(k);
    }
    if let Some(u) = test_user() {
        c.env("HITVAULT_USER", u);
    }
    let out = c.output().unwrap();
    // Audit mode lets fork and UDP through: the check itself fails (exit 1).
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let calls = read_trace(&trace_file);
    let found = trace::outbound(&calls, &[], 0);
    let connect = found
        .iter()
        .find(|f| f.starts_with("outbound connect") && f.contains("127.0.0.1"))
        .unwrap_or_else(|| panic!("no outbound connect found in:\n{}", found.join("\n")));
    // Refused by Landlock's TCP rules, and still reported.
    assert!(connect.contains("EACCES"), "{connect}");
    assert!(
        found
            .iter()
            .any(|f| f.starts_with("datagram to a network address")),
        "{}",
        found.join("\n")
    );
}
