//! Harness for the black-box tests: starts the real `hitvault` binary on
//! `127.0.0.1:0` (or another address, [`Daemon::start_listening`]) with a
//! fresh data directory, talks HTTP to it over plain
//! sockets, stops it with signals, and reads the DuckDB file afterwards.
//!
//! The binary is the release build next to the test executable
//! (`target/release/hitvault`), or `HITVAULT_BIN` if set. Build it first:
//! `cargo build --release --workspace --all-targets` (the README's test command, tests/run, does).
//!
//! Every daemon runs confined as in production: seccomp in enforce (kill)
//! mode, so a code path that needs a system call the policy does not list
//! kills the daemon and fails its test (the harness reports a death by
//! SIGSYS as such). Run as root (as CI does), the daemon switches to
//! [`TEST_USER`]: the harness passes `HITVAULT_USER` and makes the test's
//! temporary directory traversable for it.
//!
//! Two knobs for deriving the seccomp policy (see `policy/README.md`), read
//! from the test process's environment:
//! - `HV_TEST_SECCOMP=audit`: daemons log unlisted calls instead of dying;
//! - `HV_TEST_STRACE=DIR`: every daemon runs under `strace -f`, one trace
//!   file per daemon in DIR.

pub mod config;
pub mod trace;
pub mod unit;
pub mod webdriver;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The account daemons switch to when the tests run as root.
pub const TEST_USER: &str = "nobody";

/// The tests run as root (CI does).
pub fn is_root() -> bool {
    // SAFETY: a plain query.
    unsafe { libc::geteuid() == 0 }
}

/// Fails the calling test, saying why it needs root, unless it runs as root:
/// the tests fail rather than skip (see docs/development.md).
pub fn require_root(why: &str) {
    assert!(
        is_root(),
        "this test needs root: {why} (CI runs as root, see docs/development.md)"
    );
}

/// `Some(TEST_USER)` when running as root: what `HITVAULT_USER` must be for
/// `hitvault serve` to start at all.
pub fn test_user() -> Option<&'static str> {
    is_root().then_some(TEST_USER)
}

/// Path of a sibling binary of the daemon (`hv-load`, ...).
pub fn sibling_binary(name: &str) -> PathBuf {
    let bin = binary().with_file_name(name);
    assert!(
        bin.exists(),
        "{} does not exist: build it first with `cargo build --release --workspace --all-targets`",
        bin.display()
    );
    bin
}

/// Describes how a daemon process ended, naming seccomp's SIGSYS.
pub fn describe_exit(status: ExitStatus) -> String {
    match status.signal() {
        Some(libc::SIGSYS) => format!(
            "{status}: killed by SIGSYS, a system call the seccomp policy does not list \
             (the log's line `seccomp: system call N (name)` names it; \
             docs/operations/troubleshooting.md, policy/README.md)"
        ),
        _ => status.to_string(),
    }
}

/// Path of the binary under test.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("HITVAULT_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/hitvault
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("hitvault");
    assert!(
        bin.exists(),
        "{} does not exist: build it first with `cargo build --release --workspace --all-targets`",
        bin.display()
    );
    bin
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running daemon.
pub struct Daemon {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    /// The process the harness started: the daemon, or the wrapper around it.
    pub child: Child,
    /// The daemon's own pid (from `run.json`; differs from `child` when wrapped).
    pid: i32,
    /// The strace output of this daemon, when `HV_TEST_STRACE` is set.
    pub trace: Option<PathBuf>,
    /// Owns the temporary directory holding `data/` and `daemon.log`.
    root: Option<tempfile::TempDir>,
    pub log: PathBuf,
}

/// A daemon that has exited; its data directory is still there.
pub struct StoppedDaemon {
    pub data_dir: PathBuf,
    pub log: PathBuf,
    root: Option<tempfile::TempDir>,
}

impl Daemon {
    /// Starts `hitvault serve` on 127.0.0.1:0 with a fresh data dir and `env`.
    pub fn start(env: &[(&str, &str)]) -> Daemon {
        let root = tempfile::Builder::new()
            .prefix("hitvault-test")
            .tempdir()
            .unwrap();
        let data_dir = root.path().join("data");
        Daemon::spawn(Some(root), data_dir, env, &[])
    }

    /// Starts `hitvault serve --listen <listen>` (e.g. `0.0.0.0:0`) with a fresh
    /// data dir. The harness still talks to it over 127.0.0.1.
    pub fn start_listening(listen: &str, env: &[(&str, &str)]) -> Daemon {
        let root = tempfile::Builder::new()
            .prefix("hitvault-test")
            .tempdir()
            .unwrap();
        let data_dir = root.path().join("data");
        Daemon::spawn_on(listen, Some(root), data_dir, env, &[])
    }

    /// Starts the daemon through a wrapper command (e.g. `unshare ... sh -c '...'`):
    /// the wrapper is run with the binary and its arguments appended.
    pub fn start_wrapped(
        data_dir: PathBuf,
        root: tempfile::TempDir,
        env: &[(&str, &str)],
        wrapper: &[&str],
    ) -> Daemon {
        Daemon::spawn(Some(root), data_dir, env, wrapper)
    }

    /// Starts the daemon on `listen` through `wrapper` (e.g. `ip netns exec
    /// NS`), on `data_dir` (kept by `root` when given).
    pub fn start_in(
        listen: &str,
        root: Option<tempfile::TempDir>,
        data_dir: PathBuf,
        env: &[(&str, &str)],
        wrapper: &[&str],
    ) -> Daemon {
        Daemon::spawn_on(listen, root, data_dir, env, wrapper)
    }

    /// [`Daemon::restart`] on `listen` through `wrapper`.
    pub fn restart_in(
        stopped: StoppedDaemon,
        listen: &str,
        env: &[(&str, &str)],
        wrapper: &[&str],
    ) -> Daemon {
        let StoppedDaemon { data_dir, root, .. } = stopped;
        Daemon::spawn_on(listen, root, data_dir, env, wrapper)
    }

    /// Starts a daemon on an existing data dir (a restart after a stop or a kill).
    pub fn restart(stopped: StoppedDaemon, env: &[(&str, &str)]) -> Daemon {
        let StoppedDaemon { data_dir, root, .. } = stopped;
        Daemon::spawn(root, data_dir, env, &[])
    }

    fn spawn(
        root: Option<tempfile::TempDir>,
        data_dir: PathBuf,
        env: &[(&str, &str)],
        wrapper: &[&str],
    ) -> Daemon {
        Daemon::spawn_on("127.0.0.1:0", root, data_dir, env, wrapper)
    }

    fn spawn_on(
        listen: &str,
        root: Option<tempfile::TempDir>,
        data_dir: PathBuf,
        env: &[(&str, &str)],
        wrapper: &[&str],
    ) -> Daemon {
        let parent = data_dir.parent().unwrap();
        let log = parent.join("daemon.log");
        let _ = std::fs::remove_file(data_dir.join("run.json"));
        if is_root() {
            // The daemon reaches its data dir as TEST_USER after switching.
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o711)).unwrap();
        }
        let mut wrapper: Vec<String> = wrapper.iter().map(|s| s.to_string()).collect();
        // A test that runs the daemon under its own strace keeps it (a traced
        // strace cannot trace).
        let traced_already = wrapper.first().is_some_and(|w| w == "strace");
        let trace = std::env::var_os("HV_TEST_STRACE")
            .filter(|_| !traced_already)
            .map(|dir| {
                static N: AtomicU32 = AtomicU32::new(0);
                let n = N.fetch_add(1, Ordering::Relaxed);
                let file =
                    Path::new(&dir).join(format!("hitvault-{}-{n}.trace", std::process::id()));
                let mut w: Vec<String> = ["strace", "-f", "-qq", "-o"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                w.push(file.to_string_lossy().into_owned());
                w.append(&mut wrapper);
                wrapper = w;
                file
            });
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(binary());
                c
            }
            None => Command::new(binary()),
        };
        cmd.arg("serve")
            .arg("--listen")
            .arg(listen)
            .arg("--data-dir")
            .arg(&data_dir);
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("HITVAULT_")) {
            cmd.env_remove(k);
        }
        cmd.env("HITVAULT_LOG", "info");
        if let Some(u) = test_user() {
            cmd.env("HITVAULT_USER", u);
        }
        if let Some(mode) = std::env::var_os("HV_TEST_SECCOMP") {
            cmd.env("HITVAULT_SECCOMP", mode);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf);
        let mut child = cmd.spawn().expect("spawn hitvault");
        let deadline = Instant::now() + Duration::from_secs(60);
        let (addr, pid) = loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "hitvault exited with {} while starting:\n{}",
                    describe_exit(status),
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if let Ok(text) = std::fs::read_to_string(data_dir.join("run.json")) {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                let mut addr = v["listen"].as_str().unwrap().parse::<SocketAddr>().unwrap();
                // A daemon on every address is reached over loopback.
                if addr.ip().is_unspecified() {
                    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                break (addr, v["pid"].as_i64().unwrap() as i32);
            }
            assert!(
                Instant::now() < deadline,
                "hitvault did not become ready in 60 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let d = Daemon {
            addr,
            data_dir,
            child,
            pid,
            trace,
            root,
            log,
        };
        loop {
            if let Ok(r) = d.get("/readyz")
                && r.status == 200
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "/readyz did not answer 200 in 60 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    /// `http://127.0.0.1:PORT/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The daemon's pid (not a wrapper's).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// A field of `/proc/<pid>/status` (`Uid`, `CapEff`, `NoNewPrivs`,
    /// `Seccomp`, ...), trimmed.
    pub fn proc_status(&self, field: &str) -> String {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .unwrap_or_else(|| panic!("no {field} in /proc/{}/status", self.pid))
            .trim()
            .to_owned()
    }

    /// The daemon's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics if the daemon has already exited (naming SIGSYS if seccomp killed it).
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "hitvault died during the test: {}\n{}",
                describe_exit(status),
                self.log_text()
            );
        }
    }

    /// One request with `Connection: close`.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Reply> {
        request(self.addr, method, path, headers, body)
    }

    pub fn get(&self, path: &str) -> std::io::Result<Reply> {
        self.request("GET", path, &[], b"")
    }

    /// POSTs `body` with a browser User-Agent and `text/plain`, as the tracker does.
    pub fn beacon(&self, path: &str, body: &str) -> Reply {
        self.request(
            "POST",
            path,
            &[("User-Agent", CHROME_UA), ("Content-Type", "text/plain")],
            body.as_bytes(),
        )
        .expect("beacon request")
    }

    /// POSTs `body` as JSON.
    pub fn post_json(&self, path: &str, body: &str) -> Reply {
        self.request(
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .expect("JSON request")
    }

    /// Sends NDJSON hits to `POST /api/ingest/batch`; see [`ingest`].
    pub fn ingest(&self, token: &str, ndjson: &str) {
        ingest(self.addr, token, ndjson)
    }

    /// Sum of a Prometheus counter over all its label sets.
    pub fn metric(&self, name: &str) -> u64 {
        let text = String::from_utf8(self.get("/metrics").unwrap().body).unwrap();
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// SIGTERM; asserts a clean exit (status 0) within 60 s.
    pub fn stop(mut self) -> StoppedDaemon {
        self.assert_running();
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "hitvault did not stop within 60 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            status.success(),
            "hitvault exited with {}:\n{}",
            describe_exit(status),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        StoppedDaemon {
            data_dir: self.data_dir.clone(),
            log: self.log.clone(),
            root: self.root.take(),
        }
    }

    /// SIGKILL: no drain, no checkpoint. Panics if the daemon had already died.
    pub fn kill(mut self) -> StoppedDaemon {
        self.assert_running();
        // The daemon itself, not a wrapper (a killed strace would leave it running).
        unsafe { libc::kill(self.pid(), libc::SIGKILL) };
        self.child.wait().unwrap();
        StoppedDaemon {
            data_dir: self.data_dir.clone(),
            log: self.log.clone(),
            root: self.root.take(),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let died = self.child.try_wait().ok().flatten();
        if died.is_none() {
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        // A test that ends without stopping its daemon still fails if seccomp
        // killed it on the way.
        if let Some(status) = died
            && status.signal() == Some(libc::SIGSYS)
            && !std::thread::panicking()
        {
            panic!(
                "hitvault died during the test: {}\n{}",
                describe_exit(status),
                self.log_text()
            );
        }
    }
}

impl StoppedDaemon {
    /// Runs SQL on the store; every value as text, NULL as "".
    pub fn query(&self, sql: &str) -> Vec<Vec<String>> {
        let store = hitvault_store::Store::open_read_only(&self.data_dir)
            .expect("open the store read-only");
        store
            .query_text(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .into_iter()
            .map(|r| r.into_iter().map(Option::unwrap_or_default).collect())
            .collect()
    }

    /// A single number from SQL.
    pub fn count(&self, sql: &str) -> u64 {
        self.query(sql)[0][0].parse().unwrap()
    }

    /// Keeps the data directory on disk after the test (for debugging).
    pub fn keep(mut self) -> PathBuf {
        if let Some(r) = self.root.take() {
            let _ = r.keep();
        }
        self.data_dir.clone()
    }
}

/// A desktop Chrome User-Agent.
pub const CHROME_UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";

/// An HTTP reply.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends NDJSON hits to `POST /api/ingest/batch` with the bearer `token`;
/// asserts 202 (the hits are durable).
pub fn ingest(addr: SocketAddr, token: &str, ndjson: &str) {
    let r = request(
        addr,
        "POST",
        "/api/ingest/batch",
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Content-Type", "application/x-ndjson"),
        ],
        ndjson.as_bytes(),
    )
    .expect("ingest request");
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
}

/// The bearer token of `POST /api/ingest/batch`, in a file of its own
/// temporary directory (readable by [`TEST_USER`]), which lives as long as
/// this value.
pub struct IngestToken {
    pub token: String,
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl IngestToken {
    pub fn new(token: &str) -> IngestToken {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, format!("{token}\n")).unwrap();
        if test_user().is_some() {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        IngestToken {
            token: token.to_owned(),
            path,
            _dir: dir,
        }
    }

    /// The daemon's setting that names the file.
    pub fn env(&self) -> (&'static str, &str) {
        ("HITVAULT_INGEST_TOKEN_FILE", self.path.to_str().unwrap())
    }
}

/// Fills a new data dir with `hits` generated hits over `sites` sites and
/// the last `days` days (`hv-seed`).
pub fn seed(data: &Path, hits: u64, sites: u32, days: u32) {
    let out = Command::new(sibling_binary("hv-seed"))
        .args(["--data-dir", data.to_str().unwrap()])
        .args(["--hits", &hits.to_string()])
        .args(["--sites", &sites.to_string()])
        .args(["--days", &days.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "hv-seed: {}", output_text(&out));
}

/// Runs `hitvault args`.
pub fn hitvault(args: &[&str]) -> std::process::Output {
    Command::new(binary())
        .args(args)
        .output()
        .expect("run hitvault")
}

/// Runs `hitvault args`, asserts success; its stdout.
pub fn hitvault_ok(args: &[&str]) -> String {
    succeeded(args, hitvault(args))
}

/// The stdout of `hitvault args`, which gave `out`; asserts it succeeded.
pub fn succeeded(args: &[&str], out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "hitvault {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One HTTP/1.1 request over a fresh connection (`Host` is the address
/// unless `headers` name one).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Reply> {
    exchange(TcpStream::connect(addr)?, addr, method, path, headers, body)
}

/// [`request`] from the local address `source` (another loopback address,
/// say 127.0.0.2, is another client address to the daemon).
pub fn request_from(
    source: std::net::IpAddr,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Reply> {
    exchange(
        connect_from(source, addr)?,
        addr,
        method,
        path,
        headers,
        body,
    )
}

/// A TCP connection to `addr` bound to the local address `source`.
pub fn connect_from(source: std::net::IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let (std::net::IpAddr::V4(src), SocketAddr::V4(dst)) = (source, addr) else {
        return Err(std::io::Error::other("connect_from takes IPv4 addresses"));
    };
    let sin = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a fresh socket, plain sockaddr_in values, and the fd is owned
    // by the TcpStream made from it (or closed on error).
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        let local = sin(src, 0);
        if libc::bind(fd, (&raw const local).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let remote = sin(*dst.ip(), dst.port());
        if libc::connect(fd, (&raw const remote).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(stream)
    }
}

fn exchange(
    mut s: TcpStream,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Reply> {
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_reply(&raw)
}

/// Parses a raw HTTP/1.1 reply (status line, headers, body; a chunked body
/// is decoded).
pub fn parse_reply(raw: &[u8]) -> std::io::Result<Reply> {
    let bad = || {
        std::io::Error::other(format!(
            "malformed reply: {:?}",
            String::from_utf8_lossy(raw)
        ))
    };
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(bad)?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    {
        let mut out = Vec::new();
        let mut b = &body[..];
        loop {
            let eol = b.windows(2).position(|w| w == b"\r\n").ok_or_else(bad)?;
            let n = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16)
                .map_err(|_| bad())?;
            b = &b[eol + 2..];
            if n == 0 {
                break;
            }
            out.extend_from_slice(&b[..n]);
            b = &b[n + 2..];
        }
        body = out;
    }
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// The hand-written Plausible CSV export (`tests/fixtures/plausible`).
pub fn plausible_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/plausible")
}

/// A copy of [`plausible_fixture`] in `dir` (created) whose
/// `imported_visitors` file has `from` replaced by `to`.
pub fn edited_plausible_fixture(dir: &Path, from: &str, to: &str) {
    std::fs::create_dir(dir).unwrap();
    for e in std::fs::read_dir(plausible_fixture()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    let visitors = dir.join("imported_visitors_20240301_20240302.csv");
    let text = std::fs::read_to_string(&visitors).unwrap();
    assert!(
        text.contains(from),
        "{from:?} is not in {}",
        visitors.display()
    );
    std::fs::write(&visitors, text.replace(from, to)).unwrap();
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p)
            } else {
                out.push(p)
            }
        }
    }
    out
}

/// Runs a tool, failing the test with the Debian package to install if it is
/// missing (tests/run installs them all).
pub fn run_tool(cmd: &mut std::process::Command, package: &str) -> std::process::Output {
    match cmd.output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "{:?} is not installed: `apt-get install {package}` (tests/run installs it)",
            cmd.get_program()
        ),
        Err(e) => panic!("running {cmd:?}: {e}"),
    }
}

/// A command's stdout and stderr, as text.
pub fn output_text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Workers posting pageviews with unique paths; the acknowledged paths in order.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    acked: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    /// Four workers posting pageviews for shop.test with paths `/{tag}{worker}/{n}`.
    pub fn start(d: &Daemon, tag: &'static str) -> Load {
        let addr = d.addr;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let workers = (0..4)
            .map(|w| {
                let (stop, acked) = (stop.clone(), acked.clone());
                std::thread::spawn(move || {
                    let mut i = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let path = format!("/{tag}{w}/{i}");
                        let body = format!(r#"{{"n":"pageview","u":"https://shop.test{path}"}}"#);
                        if let Ok(r) = request(
                            addr,
                            "POST",
                            "/api/collect",
                            &[("User-Agent", CHROME_UA)],
                            body.as_bytes(),
                        ) && r.status == 202
                        {
                            acked.lock().unwrap().push(path);
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        Load {
            stop,
            acked,
            workers,
        }
    }

    /// Waits (at most 60 s) until `n` hits are acknowledged.
    pub fn wait_for(&self, n: usize) {
        let t = Instant::now();
        while self.acked.lock().unwrap().len() < n {
            assert!(t.elapsed() < Duration::from_secs(60), "load too slow");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The paths acknowledged so far.
    pub fn acked(&self) -> Vec<String> {
        self.acked.lock().unwrap().clone()
    }

    /// Stops the workers; every acknowledged path.
    pub fn finish(self) -> Vec<String> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for w in self.workers {
            w.join().unwrap();
        }
        self.acked.lock().unwrap().clone()
    }
}
