//! `hitvault sandbox check`: proof that the confinement holds.
//!
//! Owns the list of probes: things the daemon must never do (read
//! `/etc/shadow`, write outside its read-write paths, execute a program,
//! start a process, connect to a TCP port that is not a peer, bind a port
//! that is not configured, open UDP or packet sockets, ptrace, mount, regain
//! root) and things it must still be able to do (read its system files and
//! configured paths, write in its data dir, reach its cluster peers when it
//! has any, start a thread, notify systemd). Listeners are bound before
//! confinement, so binding is not among the needed things: after startup the
//! seccomp policy lets the daemon create unix sockets only.
//!
//! Each probe runs in its own forked child that first applies exactly the
//! daemon's confinement ([`crate::confine`]'s steps, same user, same seccomp
//! mode) and then tries one thing. A child killed by SIGSYS counts as
//! blocked (seccomp), so one killed probe does not end the check. The calling
//! process is never confined: call [`run`] from a process that has not yet
//! started its runtime (forking a multi-threaded process is safe here with
//! glibc, but keep it simple). Setup that needs privileges (a local
//! listener, a scratch directory under /tmp, the notify socket) happens in
//! the caller before forking, so the only reason a forbidden action can fail
//! is the sandbox.
//!
//! Never touches anything outside its scratch directory and the
//! `.hitvault-check-*` files it creates and removes in the read-write paths.

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use crate::notify::Notifier;
use crate::privileges::{self, User};
use crate::seccomp::{Filters, Mode};
use crate::{Spec, confine_with};

/// What a probe should find.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The sandbox must refuse it.
    Blocked,
    /// The daemon needs it: the sandbox must let it through.
    Allowed,
}

/// What a probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The action worked (with a detail).
    Succeeded(String),
    /// The action failed with this errno.
    Failed(i32),
    /// The probe's process was killed by this signal (SIGSYS: seccomp).
    Killed(i32),
    /// The probe could not be run, or found something wrong.
    Error(String),
}

/// One probe and its result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckResult {
    /// What was tried.
    pub name: String,
    /// What should happen.
    pub expect: Expect,
    /// What happened.
    pub outcome: Outcome,
}

impl CheckResult {
    /// Blocked as expected (EACCES or EPERM from Landlock, DAC or missing
    /// capabilities, or killed by SIGSYS), or allowed as expected.
    pub fn passed(&self) -> bool {
        match (self.expect, &self.outcome) {
            (Expect::Blocked, Outcome::Failed(e)) => *e == libc::EACCES || *e == libc::EPERM,
            (Expect::Blocked, Outcome::Killed(s)) => *s == libc::SIGSYS,
            (Expect::Allowed, Outcome::Succeeded(_)) => true,
            _ => false,
        }
    }

    /// The errno the action failed with, if it did.
    pub fn errno(&self) -> Option<i32> {
        match self.outcome {
            Outcome::Failed(e) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.passed() { "ok  " } else { "FAIL" };
        let expect = match self.expect {
            Expect::Blocked => "must be blocked",
            Expect::Allowed => "must be allowed",
        };
        let outcome = match &self.outcome {
            Outcome::Succeeded(d) if d.is_empty() => "allowed".to_owned(),
            Outcome::Succeeded(d) => format!("allowed: {d}"),
            Outcome::Failed(e) => format!(
                "denied: {} ({})",
                errno_name(*e),
                io::Error::from_raw_os_error(*e)
            ),
            Outcome::Killed(s) if *s == libc::SIGSYS => "killed by SIGSYS (seccomp)".to_owned(),
            Outcome::Killed(s) => format!("killed by signal {s}"),
            Outcome::Error(m) => format!("error: {m}"),
        };
        write!(f, "{verdict} {}: {expect}, {outcome}", self.name)
    }
}

/// Every result passed.
pub fn all_passed(results: &[CheckResult]) -> bool {
    !results.is_empty() && results.iter().all(CheckResult::passed)
}

/// The symbolic name of an errno (the usual ones).
pub fn errno_name(e: i32) -> String {
    let name = match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EACCES => "EACCES",
        libc::EBADF => "EBADF",
        libc::EEXIST => "EEXIST",
        libc::EINVAL => "EINVAL",
        libc::EROFS => "EROFS",
        libc::ENOSYS => "ENOSYS",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        _ => return format!("errno {e}"),
    };
    name.to_owned()
}

/// Runs every probe with the seccomp filter in enforce (kill) mode: the
/// check `hitvault sandbox check` runs.
pub fn run(spec: &Spec) -> Vec<CheckResult> {
    run_with(spec, Mode::Enforce)
}

/// Runs every probe with the seccomp filter in `mode`. In audit mode the
/// calls seccomp would kill reach the kernel, which shows what Landlock and
/// the dropped privileges refuse on their own (and what they do not).
pub fn run_with(spec: &Spec, mode: Mode) -> Vec<CheckResult> {
    let setup_failed = |what: &str, e: &dyn fmt::Display| {
        vec![CheckResult {
            name: what.to_owned(),
            expect: Expect::Allowed,
            outcome: Outcome::Error(e.to_string()),
        }]
    };
    let user = match spec.user.as_deref().map(privileges::lookup).transpose() {
        Ok(u) => u,
        Err(e) => return setup_failed("look up the sandbox user", &e),
    };
    let filters = match Filters::compile_for(mode, !spec.connect_tcp.is_empty()) {
        Ok(f) => f,
        Err(e) => return setup_failed("compile the seccomp policy", &e),
    };
    let scratch = match Scratch::create(spec) {
        Ok(s) => s,
        Err(e) => return setup_failed("create the check's scratch directory", &e),
    };
    let listener = match foreign_listener(spec) {
        Ok(l) => l,
        Err(e) => return setup_failed("start a local TCP listener", &e),
    };
    let ctx = Ctx {
        spec,
        user: user.as_ref(),
        filters: &filters,
    };
    let mut out = Vec::new();
    for p in probes(spec, user.as_ref(), &scratch, &listener) {
        out.push(ctx.run(p));
    }
    drop(listener);
    drop(scratch);
    out
}

struct Ctx<'a> {
    spec: &'a Spec,
    user: Option<&'a User>,
    filters: &'a Filters,
}

type Action = Box<dyn Fn() -> io::Result<String>>;

struct Probe {
    name: String,
    expect: Expect,
    action: Action,
}

fn probe(
    name: impl Into<String>,
    expect: Expect,
    action: impl Fn() -> io::Result<String> + 'static,
) -> Probe {
    Probe {
        name: name.into(),
        expect,
        action: Box::new(action),
    }
}

/// The check's own directory, outside every read-write path, world-writable
/// like /tmp so that only the sandbox can refuse a write in it.
struct Scratch {
    dir: PathBuf,
    notify: PathBuf,
    mnt: PathBuf,
    _notify_sock: UnixDatagram,
}

impl Scratch {
    fn create(spec: &Spec) -> io::Result<Scratch> {
        let covered = |p: &Path| {
            spec.read_write
                .iter()
                .chain(&spec.read_only)
                .any(|a| p.starts_with(a))
        };
        let base = ["/tmp", "/var/tmp", "/dev/shm"]
            .iter()
            .map(Path::new)
            .find(|b| b.is_dir() && !covered(b))
            .ok_or_else(|| {
                io::Error::other("no /tmp, /var/tmp or /dev/shm outside the sandbox's paths")
            })?;
        // Unique within the process (checks may run on several threads at
        // once) and, with the time, across runs that reuse a process id; a
        // name that exists anyway (left by a killed run) is skipped.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = loop {
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let dir = base.join(format!("hitvault-check-{}-{n}-{nanos}", std::process::id()));
            match fs::create_dir(&dir) {
                Ok(()) => break dir,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        };
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o1777))?;
        let mnt = dir.join("mnt");
        fs::create_dir(&mnt)?;
        let notify = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&notify)?;
        fs::set_permissions(&notify, fs::Permissions::from_mode(0o666))?;
        Ok(Scratch {
            dir,
            notify,
            mnt,
            _notify_sock: sock,
        })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A listener on 127.0.0.1 whose port no rule allows: connecting to it can
/// only fail because of the sandbox.
fn foreign_listener(spec: &Spec) -> io::Result<TcpListener> {
    for _ in 0..20 {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = l.local_addr()?.port();
        if !spec.connect_tcp.contains(&port) && !spec.bind_tcp.contains(&port) {
            return Ok(l);
        }
    }
    Err(io::Error::other("no free port outside the configured ones"))
}

/// A port nobody listens on and no rule allows binding.
fn foreign_port(spec: &Spec, avoid: u16) -> io::Result<u16> {
    for _ in 0..20 {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        if port != avoid && !spec.bind_tcp.contains(&port) && !spec.connect_tcp.contains(&port) {
            return Ok(port);
        }
    }
    Err(io::Error::other("no free port outside the configured ones"))
}

fn os_err(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn read_some(path: &Path) -> io::Result<String> {
    let mut f = fs::File::open(path)?;
    let mut buf = [0u8; 64];
    let n = f.read(&mut buf)?;
    Ok(format!("read {n} bytes"))
}

fn probes(
    spec: &Spec,
    user: Option<&User>,
    scratch: &Scratch,
    listener: &TcpListener,
) -> Vec<Probe> {
    use Expect::{Allowed, Blocked};
    let mut v = Vec::new();
    let who = spec.user.as_deref().unwrap_or("the current user");
    v.push(probe(
        format!("confine the process (as {who})"),
        Allowed,
        || Ok(String::new()),
    ));

    // The process state systemd tests read from /proc/<pid>/status.
    let want_uid = user.map(|u| u.uid);
    v.push(probe(
        "no capabilities, no_new_privs, seccomp filter",
        Allowed,
        move || {
            let status = fs::read_to_string("/proc/self/status")?;
            let field = |k: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(k))
                    .map(|s| s.trim().to_owned())
                    .unwrap_or_default()
            };
            let mut bad = Vec::new();
            let zero = |cap: &str| u64::from_str_radix(&field(cap), 16).ok() == Some(0);
            for cap in ["CapInh:", "CapPrm:", "CapEff:", "CapAmb:"] {
                if !zero(cap) {
                    bad.push(format!("{cap} {}", field(cap)));
                }
            }
            let uids = field("Uid:");
            // An unprivileged process cannot empty its bounding set (no
            // CAP_SETPCAP), and with no_new_privs and no exec it can never
            // use it; root must have emptied it.
            let root = uids.split_whitespace().any(|u| u == "0");
            let bounding = if zero("CapBnd:") {
                "CapBnd 0"
            } else if root {
                bad.push(format!("CapBnd: {}", field("CapBnd:")));
                ""
            } else {
                "CapBnd not empty (unprivileged: cannot be used)"
            };
            if field("NoNewPrivs:") != "1" {
                bad.push(format!("NoNewPrivs: {}", field("NoNewPrivs:")));
            }
            if field("Seccomp:") != "2" {
                bad.push(format!("Seccomp: {}", field("Seccomp:")));
            }
            if let Some(want) = want_uid
                && !uids
                    .split_whitespace()
                    .take(3)
                    .all(|u| u == want.to_string())
            {
                bad.push(format!("Uid: {uids}"));
            }
            if bad.is_empty() {
                Ok(format!(
                    "Uid {uids}; CapEff 0, {bounding}, NoNewPrivs 1, Seccomp 2"
                ))
            } else {
                Err(io::Error::other(bad.join(", ")))
            }
        },
    ));

    // Forbidden.
    v.push(probe("read /etc/shadow", Blocked, || {
        read_some(Path::new("/etc/shadow"))
    }));
    let outside = |p: &str| {
        !spec
            .read_only
            .iter()
            .chain(&spec.read_write)
            .any(|a| Path::new(p).starts_with(a))
    };
    if outside("/etc/passwd") && Path::new("/etc/passwd").exists() {
        v.push(probe(
            "read /etc/passwd (world-readable, outside the allowed paths)",
            Blocked,
            || read_some(Path::new("/etc/passwd")),
        ));
    }
    let target = scratch.dir.join(format!("outside-{}", std::process::id()));
    v.push(probe(
        format!(
            "create a file outside the read-write paths ({})",
            scratch.dir.display()
        ),
        Blocked,
        move || {
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&target)?;
            let _ = fs::remove_file(&target);
            Ok("created".to_owned())
        },
    ));
    if let Some(ro) = spec.read_only.first().cloned() {
        v.push(probe(
            format!("write to the read-only path {}", ro.display()),
            Blocked,
            move || {
                if ro.is_dir() {
                    let f = ro.join(format!(".hitvault-check-{}", std::process::id()));
                    fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&f)?;
                    let _ = fs::remove_file(&f);
                    Ok("created a file in it".to_owned())
                } else {
                    // Opened for writing, nothing written.
                    fs::OpenOptions::new().append(true).open(&ro)?;
                    Ok("opened for writing".to_owned())
                }
            },
        ));
    }
    v.push(probe("execute /bin/sh", Blocked, || {
        let sh = c"/bin/sh";
        let argv = [
            c"sh".as_ptr(),
            c"-c".as_ptr(),
            c"exit 0".as_ptr(),
            std::ptr::null(),
        ];
        // SAFETY: NUL-terminated strings and a NULL-terminated argv. On
        // success this process becomes sh, which exits 0 with no report.
        unsafe { libc::execv(sh.as_ptr(), argv.as_ptr()) };
        Err(io::Error::last_os_error())
    }));
    v.push(probe("start a process (fork)", Blocked, || {
        // SAFETY: the child only calls _exit.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: leaving the forked child at once.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        Ok(format!("started pid {pid}"))
    }));
    if let Ok(addr) = listener.local_addr() {
        v.push(probe(
            format!("connect to {addr} (not a configured peer)"),
            Blocked,
            move || {
                // A blocking connect, as a socket made non-blocking from the
                // start does (tokio's): no ioctl, so on a cluster node, whose
                // policy allows TCP sockets, Landlock is what refuses it.
                TcpStream::connect(addr)?;
                Ok("connected".to_owned())
            },
        ));
        if let Ok(port) = foreign_port(spec, addr.port()) {
            v.push(probe(
                format!("bind TCP port {port} (not configured)"),
                Blocked,
                move || {
                    TcpListener::bind((Ipv4Addr::LOCALHOST, port))?;
                    Ok("bound".to_owned())
                },
            ));
        }
    }
    v.push(probe("send a UDP datagram to 127.0.0.1:9", Blocked, || {
        let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        s.send_to(b"hitvault sandbox check", (Ipv4Addr::LOCALHOST, 9))?;
        Ok("sent".to_owned())
    }));
    v.push(probe(
        "open a raw packet socket (AF_PACKET)",
        Blocked,
        || {
            // SAFETY: a plain socket call; the descriptor is closed at once.
            let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: fd was just returned to us.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
            Ok("opened".to_owned())
        },
    ));
    // The probe's parent is this process (no getppid after confinement: it
    // is not on the allow-list, and the probe must reach ptrace itself).
    let ppid = std::process::id() as libc::pid_t;
    v.push(probe(
        "ptrace the parent process (PTRACE_SEIZE)",
        Blocked,
        move || {
            // SAFETY: a plain ptrace request; a seized parent is released when
            // this process exits.
            let rc = unsafe { libc::ptrace(libc::PTRACE_SEIZE, ppid, 0, 0) };
            if rc < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(format!("seized pid {ppid}"))
            }
        },
    ));
    let mnt = scratch.mnt.clone();
    v.push(probe("mount a tmpfs", Blocked, move || {
        let target =
            std::ffi::CString::new(mnt.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
        // SAFETY: NUL-terminated strings, no data argument.
        let rc = unsafe {
            libc::mount(
                c"hitvault-check".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            )
        };
        os_err(rc)?;
        // SAFETY: undo what just worked.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        Ok("mounted".to_owned())
    }));
    v.push(probe("become root again (setuid 0)", Blocked, || {
        // SAFETY: a plain system call.
        os_err(unsafe { libc::setuid(0) })?;
        Ok("uid 0".to_owned())
    }));

    // Needed.
    for p in [
        "/proc/stat",
        "/proc/meminfo",
        "/proc/self/cgroup",
        "/sys/devices/system/cpu/online",
    ] {
        if Path::new(p).exists() {
            v.push(probe(
                format!("read {p} (DuckDB aborts without it)"),
                Allowed,
                move || read_some(Path::new(p)),
            ));
        }
    }
    for ro in &spec.read_only {
        let ro = ro.clone();
        v.push(probe(
            format!("read {}", ro.display()),
            Allowed,
            move || {
                if ro.is_dir() {
                    Ok(format!("{} entries", fs::read_dir(&ro)?.count()))
                } else {
                    read_some(&ro)
                }
            },
        ));
    }
    for rw in &spec.read_write {
        let rw = rw.clone();
        v.push(probe(
            format!(
                "create, write, sync, truncate, rename and delete a file in {}",
                rw.display()
            ),
            Allowed,
            move || {
                let a = rw.join(format!(".hitvault-check-{}", std::process::id()));
                let b = rw.join(format!(".hitvault-check-{}.renamed", std::process::id()));
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&a)?;
                f.write_all(b"hitvault sandbox check\n")?;
                f.sync_data()?;
                f.set_len(8)?;
                drop(f);
                fs::rename(&a, &b)?;
                fs::remove_file(&b)?;
                Ok("done".to_owned())
            },
        ));
    }
    for port in spec.connect_tcp.iter().copied().filter(|p| *p != 0) {
        v.push(probe(
            format!("connect to TCP port {port} (configured peer)"),
            Allowed,
            // A blocking connect to loopback (answered at once): the calls a
            // cluster node's runtime makes, without std's ioctl(FIONBIO).
            move || match TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port))) {
                Ok(_) => Ok("connected".to_owned()),
                Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
                    Ok("no listener here, allowed by the sandbox".to_owned())
                }
                Err(e) => Err(e),
            },
        ));
    }
    v.push(probe("start a thread", Allowed, || {
        let n = std::thread::Builder::new()
            .name("hv-check".into())
            .spawn(|| 42)?
            .join()
            .map_err(|_| io::Error::other("thread panicked"))?;
        Ok(format!("joined ({n})"))
    }));
    let notify = scratch.notify.clone();
    v.push(probe(
        "notify the service manager (unix datagram)",
        Allowed,
        move || {
            let n = Notifier::connect(&notify, None)?;
            n.ready()?;
            n.status("sandbox check")?;
            Ok("sent".to_owned())
        },
    ));
    v
}

impl Ctx<'_> {
    /// Runs `p` in a forked child confined like the daemon.
    fn run(&self, p: Probe) -> CheckResult {
        let outcome = self.fork_and_run(&p.action);
        CheckResult {
            name: p.name,
            expect: p.expect,
            outcome,
        }
    }

    fn fork_and_run(&self, action: &Action) -> Outcome {
        let mut fds = [0; 2];
        // SAFETY: a two-element array for the pipe's ends.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
            return Outcome::Error(format!("pipe: {}", io::Error::last_os_error()));
        }
        // SAFETY: both descriptors were just created and are owned here.
        let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: the child runs only the confinement and one probe, then
        // calls _exit: no destructor, no atexit handler, no return.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Outcome::Error(format!("fork: {}", io::Error::last_os_error()));
        }
        if pid == 0 {
            drop(rd);
            // SAFETY: a plain alarm: a probe that hangs dies of SIGALRM.
            unsafe { libc::alarm(20) };
            let msg = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.child(action)))
                .unwrap_or_else(|_| "Xthe probe panicked".to_owned());
            let mut w = fs::File::from(wr);
            let _ = w.write_all(msg.as_bytes());
            // SAFETY: leave the child without running anything of the parent's.
            unsafe { libc::_exit(0) };
        }
        drop(wr);
        let mut msg = String::new();
        let _ = fs::File::from(rd).read_to_string(&mut msg);
        let mut status = 0;
        loop {
            // SAFETY: waiting for our own child.
            let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
            if rc >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break;
            }
        }
        if libc::WIFSIGNALED(status) {
            return Outcome::Killed(libc::WTERMSIG(status));
        }
        let (tag, rest) = msg.split_at(msg.len().min(1));
        match tag {
            "O" => Outcome::Succeeded(rest.to_owned()),
            "F" => rest
                .parse()
                .map(Outcome::Failed)
                .unwrap_or_else(|_| Outcome::Error(msg.clone())),
            "X" => Outcome::Error(rest.to_owned()),
            "E" => Outcome::Error(format!("confinement failed: {rest}")),
            // exec replaced the probe, which then exited without a word.
            "" if libc::WIFEXITED(status) => Outcome::Succeeded(format!(
                "the program ran (exit status {})",
                libc::WEXITSTATUS(status)
            )),
            _ => Outcome::Error(format!("unexpected report {msg:?}")),
        }
    }

    /// In the forked child: confine, try, and describe the result.
    fn child(&self, action: &Action) -> String {
        // Named, so that the kernel's audit records of what a probe tries
        // (comm="hv-probe") are told apart from the daemon's own.
        // SAFETY: PR_SET_NAME with a NUL-terminated name.
        unsafe { libc::prctl(libc::PR_SET_NAME, c"hv-probe".as_ptr()) };
        match confine_with(self.spec, self.user, self.filters) {
            Err(e) => format!("E{e}"),
            Ok(report) => match action() {
                Ok(detail) if detail.is_empty() => format!("O{report}"),
                Ok(detail) => format!("O{detail}"),
                Err(e) => match e.raw_os_error() {
                    Some(errno) => format!("F{errno}"),
                    None => format!("X{e}"),
                },
            },
        }
    }
}
