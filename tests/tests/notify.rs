//! sd-notify without systemd: the test binds the datagram socket systemd would,
//! points NOTIFY_SOCKET at it, and reads what the daemon says.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use hitvault_tests::Daemon;

fn messages(sock: &UnixDatagram, until: impl Fn(&[String]) -> bool) -> Vec<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let t = Instant::now();
    while !until(&got) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "timed out; received so far: {got:?}"
        );
        if let Ok(n) = sock.recv(&mut buf) {
            got.extend(
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .map(str::to_owned),
            );
        }
    }
    got
}

#[test]
fn ready_status_watchdog_and_stopping_reach_the_service_manager() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let d = Daemon::start(&[
        ("HITVAULT_SITES", "shop.test"),
        ("NOTIFY_SOCKET", path.to_str().unwrap()),
        ("WATCHDOG_USEC", "600000"),
    ]);
    let got = messages(&sock, |m| m.iter().any(|l| l == "READY=1"));
    assert!(got.contains(&"READY=1".to_string()));
    // The batcher loop pings every half interval (0.3 s), also while idle.
    let got = messages(&sock, |m| {
        m.iter().filter(|l| *l == "WATCHDOG=1").count() >= 3
    });
    assert!(got.iter().filter(|l| *l == "WATCHDOG=1").count() >= 3);
    let got = messages(&sock, |m| {
        m.iter().any(|l| l.starts_with("STATUS=queue depth"))
    });
    assert!(
        got.iter().any(|l| l.starts_with("STATUS=queue depth")),
        "{got:?}"
    );
    let stopped = {
        let s = d.stop();
        messages(&sock, |m| m.iter().any(|l| l == "STOPPING=1"));
        s
    };
    drop(stopped);
}
