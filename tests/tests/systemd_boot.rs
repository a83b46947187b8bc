//! Under a real systemd: a minimal Debian root filesystem (mmdebstrap,
//! cached), the binary and the committed `systemd/hitvault.service`
//! installed in an overlay on top of it, booted with `systemd-nspawn
//! --boot`. The unit must reach READY (Type=notify: `active`), the daemon
//! must run unprivileged and confined (/proc/<pid>/status: uid not 0,
//! CapEff 0, NoNewPrivs 1, Seccomp 2; its log: Landlock enforced), ingest
//! must work over HTTP, and after SIGSTOP freezes it, systemd's watchdog
//! must restart it (NRestarts grows, a new MainPID) with every hit that was
//! acknowledged still stored, read back from the DuckDB file after a stop.
//!
//! Needs root, network access to a Debian mirror the first time (the host's
//! apt sources), and Debian's `mmdebstrap` and `systemd-container`
//! (tests/run installs them). It fails, never skips, when any is missing.
//!
//! The root filesystem is cached under `$HOME/.cache/hitvault-rootfs/<hash
//! of the recipe>/`; the container's changes go to a temporary overlay, so
//! the cache is never modified. The test's only change to the unit is a
//! drop-in with the listen port, the site and `WatchdogSec=3s` (so the
//! freeze is noticed in seconds rather than 30 s).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hitvault_tests::{
    CHROME_UA, binary, free_port, output_text as text, require_root, run_tool as run,
};

/// How the root filesystem is made. Its hash names the cache entry: change
/// anything here and the next run builds a new one.
const RECIPE: &[&str] = &[
    "--variant=minbase",
    "--include=systemd-sysv",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    "bookworm",
];

/// systemd-nspawn's own filter refuses these unless passed through.
const LANDLOCK_CALLS: &str = "landlock_create_ruleset landlock_add_rule landlock_restrict_self";

const WATCHDOG_SEC: u64 = 3;
const BATCH_WAIT_MS: u64 = 2000;
const BURST: usize = 50;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// FNV-1a, 64 bits: a stable name for the recipe (std's hasher is not
/// stable across Rust versions).
fn fnv(parts: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// Holds an exclusive flock until dropped.
struct Lock {
    _file: fs::File,
}

impl Lock {
    fn take(path: &Path) -> Lock {
        use std::os::fd::AsRawFd;
        let f = fs::File::create(path).unwrap();
        // SAFETY: flock on a descriptor we own.
        assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
        Lock { _file: f }
    }
}

/// The cached root filesystem, built with mmdebstrap when missing.
fn rootfs() -> PathBuf {
    let home = std::env::var_os("HOME").expect("HOME");
    let cache = Path::new(&home).join(".cache/hitvault-rootfs");
    fs::create_dir_all(&cache).unwrap();
    let key = fnv(RECIPE);
    let entry = cache.join(&key);
    let done = entry.join("complete");
    let _lock = Lock::take(&cache.join(format!("{key}.lock")));
    if done.exists() {
        return entry.join("rootfs");
    }
    let _ = fs::remove_dir_all(&entry);
    fs::create_dir_all(&entry).unwrap();
    let building = entry.join("rootfs.building");
    let t = Instant::now();
    let out = run(
        Command::new("mmdebstrap")
            .args(["--quiet", "--mode=root", "--format=directory"])
            .args(RECIPE)
            .arg(&building),
        "mmdebstrap",
    );
    assert!(
        out.status.success(),
        "mmdebstrap could not build the root filesystem ({}):\n{}",
        out.status,
        text(&out)
    );
    fs::rename(&building, entry.join("rootfs")).unwrap();
    fs::write(&done, RECIPE.join(" ")).unwrap();
    eprintln!(
        "built the root filesystem {} in {:.0?}",
        entry.display(),
        t.elapsed()
    );
    entry.join("rootfs")
}

/// A booted container; powered off, unmounted and removed when dropped.
struct Container {
    nspawn: Child,
    init: i32,
    merged: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Container {
    fn boot(lower: &Path, prepare: impl FnOnce(&Path)) -> Container {
        let dir = tempfile::Builder::new()
            .prefix("hitvault-nspawn")
            .tempdir()
            .unwrap();
        let (upper, work, merged) = (
            dir.path().join("upper"),
            dir.path().join("work"),
            dir.path().join("merged"),
        );
        for d in [&upper, &work, &merged] {
            fs::create_dir(d).unwrap();
        }
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        );
        let out = run(
            Command::new("mount")
                .args(["-t", "overlay", "overlay", "-o", &opts])
                .arg(&merged),
            "mount",
        );
        assert!(out.status.success(), "overlay mount: {}", text(&out));
        prepare(&merged);
        let log = dir.path().join("nspawn.log");
        let logf = fs::File::create(&log).unwrap();
        let machine = format!("hitvault-test-{}", std::process::id());
        let nspawn = Command::new("systemd-nspawn")
            .args(["--boot", "--register=no", "--keep-unit", "--quiet"])
            .args(["--console=read-only", "--machine", &machine])
            .arg(format!("--system-call-filter={LANDLOCK_CALLS}"))
            .arg("--directory")
            .arg(&merged)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn();
        let nspawn = match nspawn {
            Ok(c) => c,
            Err(e) => {
                let _ = Command::new("umount").arg(&merged).status();
                panic!("systemd-nspawn: {e} (apt-get install systemd-container)")
            }
        };
        let mut c = Container {
            nspawn,
            init: 0,
            merged,
            log,
            _dir: dir,
        };
        let t = Instant::now();
        c.init = loop {
            if let Some(pid) = container_init(c.nspawn.id() as i32) {
                break pid;
            }
            if let Some(st) = c.nspawn.try_wait().unwrap() {
                panic!("systemd-nspawn exited with {st}:\n{}", c.log_text());
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "no container init after 30 s:\n{}",
                c.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        c
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs a command inside the container (its namespaces and root).
    fn sh(&self, args: &[&str]) -> Output {
        run(
            Command::new("nsenter")
                .args(["-t", &self.init.to_string()])
                .args(["-m", "-u", "-i", "-n", "-p", "-r", "-w", "--"])
                .args(args),
            "util-linux",
        )
    }

    fn stdout(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.sh(args).stdout)
            .trim()
            .to_owned()
    }

    fn show(&self, unit: &str) -> HashMap<String, String> {
        self.stdout(&[
            "systemctl",
            "show",
            unit,
            "-p",
            "ActiveState,SubState,MainPID,NRestarts,Result",
        ])
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    fn journal(&self, unit: &str) -> String {
        self.stdout(&["journalctl", "-u", unit, "--no-pager", "-o", "cat"])
    }

    /// Waits until `pred` holds for the unit's properties.
    fn wait_for(
        &self,
        unit: &str,
        what: &str,
        limit: Duration,
        pred: impl Fn(&HashMap<String, String>) -> bool,
    ) -> HashMap<String, String> {
        let t = Instant::now();
        loop {
            let p = self.show(unit);
            if pred(&p) {
                eprintln!("{what} after {:.1?}: {p:?}", t.elapsed());
                return p;
            }
            assert!(
                t.elapsed() < limit,
                "{what}: not within {limit:?}; last {p:?}\n--- journal ---\n{}\n--- console ---\n{}",
                self.journal(unit),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn poweroff(&mut self) {
        if self.nspawn.try_wait().unwrap().is_none() {
            let _ = self.sh(&["systemctl", "poweroff"]);
            let t = Instant::now();
            while self.nspawn.try_wait().unwrap().is_none() {
                if t.elapsed() > Duration::from_secs(30) {
                    let _ = self.nspawn.kill();
                    let _ = self.nspawn.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.poweroff();
        let _ = Command::new("umount").arg(&self.merged).status();
    }
}

/// The host pid of the container's init: the descendant of systemd-nspawn
/// that is pid 1 in its own pid namespace.
fn container_init(nspawn: i32) -> Option<i32> {
    let mut parent: HashMap<i32, i32> = HashMap::new();
    for e in fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(status) = fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|s| s.trim().to_owned())
        };
        if let Some(pp) = field("PPid:").and_then(|p| p.parse().ok()) {
            parent.insert(pid, pp);
        }
        let nspid = field("NSpid:").unwrap_or_default();
        if nspid.split_whitespace().count() > 1 && nspid.split_whitespace().last() == Some("1") {
            let mut p = pid;
            for _ in 0..8 {
                let pp = match parent.get(&p) {
                    Some(pp) => *pp,
                    None => fs::read_to_string(format!("/proc/{p}/status"))
                        .ok()?
                        .lines()
                        .find_map(|l| l.strip_prefix("PPid:"))
                        .and_then(|s| s.trim().parse().ok())?,
                };
                if pp == nspawn {
                    return Some(pid);
                }
                p = pp;
            }
        }
    }
    None
}

fn status_field(status: &str, field: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in {status}"))
        .trim()
        .to_owned()
}

/// `hitvault_queue_depth` from /metrics.
fn queue_depth(port: u16) -> Option<u64> {
    let r =
        hitvault_tests::request(([127, 0, 0, 1], port).into(), "GET", "/metrics", &[], b"").ok()?;
    String::from_utf8_lossy(&r.body)
        .lines()
        .find_map(|l| l.strip_prefix("hitvault_queue_depth "))
        .and_then(|v| v.trim().parse().ok())
}

/// Sends one tracker hit with short timeouts (the daemon may be frozen);
/// returns the path if it was acknowledged.
fn send(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let addr = ([127, 0, 0, 1], port).into();
    let body = format!(r#"{{"n":"pageview","u":"https://shop.test{path}"}}"#);
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    let req = format!(
        "POST /api/collect HTTP/1.1\r\nHost: shop.test\r\nUser-Agent: {CHROME_UA}\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).ok()?;
    reply.starts_with(b"HTTP/1.1 202 ").then(|| path.to_owned())
}

#[test]
fn under_systemd_the_daemon_is_confined_and_the_watchdog_restarts_it_losing_nothing() {
    require_root("it boots a container");
    let t0 = Instant::now();
    let lower = rootfs();
    eprintln!("root filesystem ready after {:.1?}", t0.elapsed());
    let port = free_port();
    let unit = fs::read_to_string(repo().join("systemd/hitvault.service")).unwrap();
    let c = Container::boot(&lower, |root| {
        let bin = root.join("usr/bin/hitvault");
        fs::copy(binary(), &bin).unwrap();
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
        let sys = root.join("etc/systemd/system");
        fs::write(sys.join("hitvault.service"), &unit).unwrap();
        fs::create_dir_all(sys.join("hitvault.service.d")).unwrap();
        fs::write(
            sys.join("hitvault.service.d/test.conf"),
            format!(
                "[Service]\nEnvironment=HITVAULT_LISTEN=127.0.0.1:{port}\n\
                 Environment=HITVAULT_SITES=shop.test\n\
                 Environment=HITVAULT_CONFIG=/etc/hitvault.toml\n\
                 WatchdogSec={WATCHDOG_SEC}s\n"
            ),
        )
        .unwrap();
        // Batches fill for up to 2 s, so that hits sent just before the
        // freeze are in the queue only, and the restart has to replay them.
        fs::write(
            root.join("etc/hitvault.toml"),
            format!("[batch]\nmax_wait_ms = {BATCH_WAIT_MS}\n"),
        )
        .unwrap();
        let wants = sys.join("multi-user.target.wants");
        fs::create_dir_all(&wants).unwrap();
        std::os::unix::fs::symlink(
            "/etc/systemd/system/hitvault.service",
            wants.join("hitvault.service"),
        )
        .unwrap();
    });
    let booted = Instant::now();

    // READY=1: a Type=notify unit is active only once the daemon said so.
    let p = c.wait_for("hitvault", "READY", Duration::from_secs(60), |p| {
        p.get("ActiveState").map(String::as_str) == Some("active")
            || p.get("ActiveState").map(String::as_str) == Some("failed")
    });
    assert_eq!(
        p["ActiveState"],
        "active",
        "{}\n{}",
        c.journal("hitvault"),
        c.log_text()
    );
    eprintln!("unit active {:.1?} after nspawn started", booted.elapsed());
    let pid = p["MainPID"].clone();

    // The daemon as the kernel sees it.
    let status = c.stdout(&["cat", &format!("/proc/{pid}/status")]);
    let uid_line = status_field(&status, "Uid");
    assert_eq!(uid_line.split_whitespace().count(), 4);
    assert!(
        uid_line.split_whitespace().all(|u| u != "0"),
        "runs as root: {uid_line}"
    );
    assert_eq!(status_field(&status, "CapEff"), "0000000000000000");
    assert_eq!(status_field(&status, "NoNewPrivs"), "1");
    assert_eq!(status_field(&status, "Seccomp"), "2");
    let journal = c.journal("hitvault");
    let abi = hitvault_sandbox::landlock::abi().expect("the host kernel has Landlock");
    assert!(
        journal.contains(&format!("sandbox: landlock ABI {abi}"))
            && journal.contains("enforced: files yes"),
        "Landlock not enforced under the unit:\n{journal}"
    );
    assert!(
        journal.contains("other calls kill the process"),
        "{journal}"
    );

    // Ingest over HTTP (the container shares the host's network).
    let mut acked: Vec<String> = (0..200)
        .filter_map(|i| send(port, &format!("/before/{i}")))
        .collect();
    assert_eq!(acked.len(), 200, "every hit acknowledged while running");

    // Let those reach DuckDB, then send a burst and freeze the daemon at
    // once: the burst is acknowledged (fsync'd in the queue) but its batch
    // is still filling, so only a replay after the restart can store it.
    let t = Instant::now();
    while queue_depth(port) != Some(0) {
        assert!(t.elapsed() < Duration::from_secs(30), "queue never drained");
        std::thread::sleep(Duration::from_millis(100));
    }
    let burst: Vec<String> = (0..BURST)
        .filter_map(|i| send(port, &format!("/burst/{i}")))
        .collect();
    assert_eq!(burst.len(), BURST);
    acked.extend(burst);

    // Freeze it. A sender keeps trying meanwhile; whatever gets a 202 must
    // be stored.
    let frozen = c.sh(&[
        "systemctl",
        "kill",
        "--kill-whom=main",
        "--signal=SIGSTOP",
        "hitvault",
    ]);
    assert!(frozen.status.success(), "{}", text(&frozen));
    let stop = Arc::new(AtomicBool::new(false));
    let during = Arc::new(Mutex::new(Vec::new()));
    let sender = {
        let (stop, during) = (stop.clone(), during.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                if let Some(p) = send(port, &format!("/during/{i}")) {
                    during.lock().unwrap().push(p);
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let t = Instant::now();
    let p = c.wait_for(
        "hitvault",
        "watchdog restart",
        Duration::from_secs(120),
        |p| {
            p.get("NRestarts").map(String::as_str) != Some("0")
                && p.get("ActiveState").map(String::as_str) == Some("active")
                && p.get("MainPID").is_some_and(|m| *m != pid && m != "0")
        },
    );
    eprintln!(
        "restarted {:.1?} after SIGSTOP (watchdog {WATCHDOG_SEC}s): {p:?}",
        t.elapsed()
    );
    let journal = c.journal("hitvault");
    let replayed: u64 = journal
        .lines()
        .rfind(|l| l.contains("queue opened") && l.contains("replay="))
        .and_then(|l| l.split("replay=").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no replay count in:\n{journal}"));
    eprintln!("the restarted daemon replayed {replayed} hits from the queue");
    assert!(
        replayed >= BURST as u64,
        "the burst should have been replayed, not committed before the freeze"
    );
    assert!(
        journal.contains("Watchdog timeout") && journal.contains("Failed with result 'watchdog'"),
        "the restart should come from the watchdog:\n{journal}"
    );
    // The new daemon serves again.
    for i in 0..100 {
        if let Some(p) = send(port, &format!("/after/{i}")) {
            acked.push(p);
        }
    }
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    acked.extend(during.lock().unwrap().iter().cloned());
    assert!(
        acked.iter().filter(|p| p.starts_with("/after/")).count() == 100,
        "the restarted daemon acknowledges again"
    );

    // Stop gracefully and read the store from outside.
    let stopped = c.sh(&["systemctl", "stop", "hitvault"]);
    assert!(stopped.status.success(), "{}", text(&stopped));
    let data = c.merged.join("var/lib/private/hitvault");
    let store = hitvault_store::Store::open_read_only(&data).expect("open the store read-only");
    let rows: Vec<String> = store
        .query_text("SELECT path FROM hits")
        .unwrap()
        .into_iter()
        .map(|r| r[0].clone().unwrap_or_default())
        .collect();
    let stored: HashSet<&String> = rows.iter().collect();
    assert_eq!(stored.len(), rows.len(), "no hit stored twice");
    let lost: Vec<&String> = acked.iter().filter(|p| !stored.contains(p)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged hits lost: {lost:?}",
        lost.len()
    );
    eprintln!(
        "{} hits acknowledged, {} stored, none lost; whole test {:.1?}",
        acked.len(),
        rows.len(),
        t0.elapsed()
    );
}
