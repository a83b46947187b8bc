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
    // The writer loop pings every half interval (0.3 s), also while idle.
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

/// The watchdog keep-alive must not depend on how long a batch may fill:
/// with `batch.max_wait_ms` at 5 s and systemd's watchdog at 2 s (a ping
/// due every second), pings keep coming while idle and while hits trickle
/// in, or systemd would kill a healthy daemon.
#[test]
fn watchdog_pings_do_not_wait_for_a_slow_filling_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let cfg = dir.path().join("hv.toml");
    std::fs::write(&cfg, "[batch]\nmax_wait_ms = 5000\n").unwrap();
    let d = Daemon::start(&[
        ("HITVAULT_SITES", "shop.test"),
        ("HITVAULT_CONFIG", cfg.to_str().unwrap()),
        ("NOTIFY_SOCKET", path.to_str().unwrap()),
        ("WATCHDOG_USEC", "2000000"),
    ]);
    messages(&sock, |m| m.iter().any(|l| l == "READY=1"));
    let gaps = |sock: &UnixDatagram, during: Duration, mut each: Box<dyn FnMut()>| {
        let mut buf = [0u8; 4096];
        let start = Instant::now();
        let mut last = start;
        let mut worst = Duration::ZERO;
        while start.elapsed() < during {
            each();
            if let Ok(n) = sock.recv(&mut buf)
                && String::from_utf8_lossy(&buf[..n]).contains("WATCHDOG=1")
            {
                worst = worst.max(last.elapsed());
                last = Instant::now();
            }
        }
        worst.max(last.elapsed())
    };
    let idle = gaps(&sock, Duration::from_secs(6), Box::new(|| {}));
    assert!(
        idle < Duration::from_millis(1800),
        "idle: {idle:?} without a ping"
    );
    let mut i = 0;
    let mut next = Instant::now();
    let trickle = gaps(
        &sock,
        Duration::from_secs(6),
        Box::new(|| {
            if Instant::now() >= next {
                let body = format!(r#"{{"n":"pageview","u":"https://shop.test/{i}"}}"#);
                assert_eq!(d.beacon("/api/collect", &body).status, 202);
                i += 1;
                next = Instant::now() + Duration::from_millis(400);
            }
        }),
    );
    assert!(
        trickle < Duration::from_millis(1800),
        "trickle: {trickle:?} without a ping"
    );
}
