//! sd-notify: tell the service manager that the daemon is ready, how it is
//! doing, that it is alive (watchdog), and that it is stopping.
//!
//! Owns the notification socket. Messages are the `sd-notify` crate's
//! [`NotifyState`]s; the socket is our own so that it can be connected once,
//! before confinement (the crate opens a new socket per message and reads
//! `NOTIFY_SOCKET` each time), so that tests can pass an explicit socket, and
//! so that abstract (`@name`) sockets work. If a send fails because the
//! manager re-created its socket, it reconnects once (the seccomp policy
//! allows `socket(AF_UNIX)` and `connect` for this).
//!
//! Never reads the environment except in [`Notifier::from_process_env`],
//! never blocks (datagrams), and is a no-op when no manager is listening.
//! Every method takes `&self` and may be called from any thread of the main
//! process (systemd accepts `WATCHDOG=1` from any thread of the main pid).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Mutex;
use std::time::Duration;

pub use sd_notify::NotifyState;

/// A connection to the service manager's notification socket, or nothing.
#[derive(Debug)]
pub struct Notifier {
    target: Option<Target>,
    watchdog: Option<Duration>,
}

#[derive(Debug)]
struct Target {
    path: OsString,
    addr: SocketAddr,
    /// The connected socket; replaced when a send fails with a connection error.
    socket: Mutex<Option<UnixDatagram>>,
}

fn parse_addr(path: &OsStr) -> io::Result<SocketAddr> {
    let bytes = path.as_bytes();
    match bytes.first() {
        Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]),
        Some(b'/') => SocketAddr::from_pathname(path),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("NOTIFY_SOCKET {path:?} is neither an absolute path nor an @abstract name"),
        )),
    }
}

fn connect(addr: &SocketAddr) -> io::Result<UnixDatagram> {
    let s = UnixDatagram::unbound()?;
    s.connect_addr(addr)?;
    Ok(s)
}

impl Notifier {
    /// A notifier that sends nothing (no service manager).
    pub fn disabled() -> Notifier {
        Notifier {
            target: None,
            watchdog: None,
        }
    }

    /// Connects to `socket` (a path, or `@name` for an abstract socket) now.
    /// `watchdog` is the manager's watchdog timeout (`WATCHDOG_USEC`), if any.
    pub fn connect(socket: impl AsRef<OsStr>, watchdog: Option<Duration>) -> io::Result<Notifier> {
        let path = socket.as_ref().to_owned();
        let addr = parse_addr(&path)?;
        let s = connect(&addr).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("connecting to NOTIFY_SOCKET {path:?}: {e}"),
            )
        })?;
        Ok(Notifier {
            target: Some(Target {
                path,
                addr,
                socket: Mutex::new(Some(s)),
            }),
            watchdog,
        })
    }

    /// Builds a notifier from `NOTIFY_SOCKET`, `WATCHDOG_USEC` and
    /// `WATCHDOG_PID` as returned by `get` (the caller's view of the
    /// environment). The watchdog counts only if `WATCHDOG_PID` is unset or
    /// names this process. No `NOTIFY_SOCKET`: a disabled notifier.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> io::Result<Notifier> {
        let pid_ok = get("WATCHDOG_PID")
            .is_none_or(|p| p.trim().parse::<u32>().ok() == Some(std::process::id()));
        let watchdog = get("WATCHDOG_USEC")
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|u| *u > 0 && pid_ok)
            .map(Duration::from_micros);
        match get("NOTIFY_SOCKET").filter(|s| !s.is_empty()) {
            Some(s) => Notifier::connect(s, watchdog),
            None => Ok(Notifier {
                target: None,
                watchdog,
            }),
        }
    }

    /// [`Notifier::from_env`] on this process's environment.
    pub fn from_process_env() -> io::Result<Notifier> {
        Notifier::from_env(|k| std::env::var(k).ok())
    }

    /// A manager is listening.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// The socket this notifier sends to.
    pub fn socket(&self) -> Option<&OsStr> {
        self.target.as_ref().map(|t| t.path.as_os_str())
    }

    /// How often to send [`Notifier::watchdog`]: half the manager's timeout,
    /// as sd_watchdog_enabled(3) advises. `None`: no watchdog.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|d| d / 2)
    }

    /// `READY=1`: listeners and store are up.
    pub fn ready(&self) -> io::Result<()> {
        self.send(&[NotifyState::Ready])
    }

    /// `STATUS=text` (one line: newlines become spaces).
    pub fn status(&self, text: &str) -> io::Result<()> {
        let line = text.replace(['\n', '\r'], " ");
        self.send(&[NotifyState::Status(&line)])
    }

    /// `WATCHDOG=1`: the daemon's loop is alive.
    pub fn watchdog(&self) -> io::Result<()> {
        self.send(&[NotifyState::Watchdog])
    }

    /// `STOPPING=1`: shutdown has begun.
    pub fn stopping(&self) -> io::Result<()> {
        self.send(&[NotifyState::Stopping])
    }

    /// Sends `states` in one datagram. A no-op when disabled.
    pub fn send(&self, states: &[NotifyState<'_>]) -> io::Result<()> {
        let Some(t) = &self.target else { return Ok(()) };
        let mut msg = String::new();
        for s in states {
            msg.push_str(&s.to_string());
            msg.push('\n');
        }
        let mut guard = t.socket.lock().unwrap_or_else(|p| p.into_inner());
        let first = match guard.as_ref() {
            Some(s) => s.send(msg.as_bytes()),
            None => Err(io::Error::from(io::ErrorKind::NotConnected)),
        };
        let sent = match first {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ECONNREFUSED | libc::ENOTCONN | libc::ENOENT)
                ) || e.kind() == io::ErrorKind::NotConnected =>
            {
                *guard = None;
                let s = connect(&t.addr)?;
                let n = s.send(msg.as_bytes())?;
                *guard = Some(s);
                n
            }
            Err(e) => return Err(e),
        };
        if sent != msg.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short write to NOTIFY_SOCKET",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener() -> (tempfile::TempDir, UnixDatagram, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (dir, sock, path)
    }

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sends_each_message_to_an_explicit_socket() {
        let (_dir, sock, path) = listener();
        let n = Notifier::connect(&path, Some(Duration::from_secs(30))).unwrap();
        assert!(n.is_enabled());
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(15)));
        n.ready().unwrap();
        assert_eq!(recv(&sock), "READY=1\n");
        n.status("queue 3 pending\n12 hits/s").unwrap();
        assert_eq!(recv(&sock), "STATUS=queue 3 pending 12 hits/s\n");
        n.watchdog().unwrap();
        assert_eq!(recv(&sock), "WATCHDOG=1\n");
        n.stopping().unwrap();
        assert_eq!(recv(&sock), "STOPPING=1\n");
    }

    #[test]
    fn reconnects_when_the_manager_recreates_its_socket() {
        let (_dir, sock, path) = listener();
        let n = Notifier::connect(&path, None).unwrap();
        drop(sock);
        std::fs::remove_file(&path).unwrap();
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        n.ready().unwrap();
        assert_eq!(recv(&sock), "READY=1\n");
    }

    #[test]
    fn abstract_sockets_work() {
        let name = format!("hitvault-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = UnixDatagram::bind_addr(&addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = Notifier::connect(format!("@{name}"), None).unwrap();
        n.watchdog().unwrap();
        assert_eq!(recv(&sock), "WATCHDOG=1\n");
    }

    #[test]
    fn environment_rules() {
        let (_dir, sock, path) = listener();
        let me = std::process::id().to_string();
        let p = path.to_str().unwrap().to_owned();
        let env = |pid: Option<String>| {
            let p = p.clone();
            move |k: &str| match k {
                "NOTIFY_SOCKET" => Some(p.clone()),
                "WATCHDOG_USEC" => Some("30000000".to_owned()),
                "WATCHDOG_PID" => pid.clone(),
                _ => None,
            }
        };
        let n = Notifier::from_env(env(Some(me))).unwrap();
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(15)));
        n.ready().unwrap();
        assert_eq!(recv(&sock), "READY=1\n");
        assert_eq!(
            Notifier::from_env(env(None)).unwrap().watchdog_interval(),
            Some(Duration::from_secs(15))
        );
        // The watchdog of another process (a parent that forgot to unset it).
        assert_eq!(
            Notifier::from_env(env(Some("1".into())))
                .unwrap()
                .watchdog_interval(),
            None
        );

        let none = Notifier::from_env(|_| None).unwrap();
        assert!(!none.is_enabled());
        none.ready().unwrap();
        assert_eq!(none.watchdog_interval(), None);
        assert!(Notifier::connect("relative.sock", None).is_err());
    }
}
