//! Disk full, for real: the daemon's data dir is a small tmpfs the test mounts
//! (it runs as root, as CI does) and unmounts afterwards. A ballast file fills
//! it; ingest must answer 503 with Retry-After and lose nothing it
//! acknowledged; once the ballast is gone, ingest resumes by itself.

use std::process::Command;
use std::time::{Duration, Instant};

use hitvault_tests::{Daemon, require_root};

/// Unmounts the test's tmpfs even when the test fails.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn disk_full_answers_503_and_ingest_resumes_when_space_returns() {
    require_root("it mounts a tmpfs");
    let root = tempfile::Builder::new()
        .prefix("hitvault-diskfull")
        .tempdir()
        .unwrap();
    let data = root.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m,mode=0700", "hitvault-test"])
        .arg(&data)
        .status()
        .unwrap();
    assert!(st.success(), "mount tmpfs");
    let _mount = Mount(data.clone());
    let cfg = root.path().join("hv.toml");
    std::fs::write(
        &cfg,
        "[queue]\nsegment_bytes = \"64KiB\"\nmax_bytes = \"64MiB\"\n[batch]\nmax_wait_ms = 50\n",
    )
    .unwrap();
    let d = Daemon::start_wrapped(
        data.clone(),
        root,
        &[
            ("HITVAULT_SITES", "shop.test"),
            ("HITVAULT_CONFIG", cfg.to_str().unwrap()),
        ],
        &[],
    );
    let pad = "x".repeat(300);
    let mut acked = Vec::new();
    let mut send = |i: usize| {
        let body = format!(r#"{{"n":"pageview","u":"https://shop.test/p/{i}/{pad}"}}"#);
        let r = d.beacon("/api/collect", &body);
        if r.status == 202 {
            acked.push(format!("/p/{i}/{pad}"));
        }
        r
    };
    for i in 0..50 {
        assert_eq!(send(i).status, 202);
    }
    // Fill the file system: dd stops at ENOSPC.
    let ballast = data.join("ballast");
    let _ = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", ballast.display()))
        .arg("bs=64k")
        .output()
        .unwrap();
    let mut full = None;
    for i in 50..100_000 {
        let r = send(i);
        if r.status == 503 {
            full = Some((i, r));
            break;
        }
        assert_eq!(r.status, 202, "{:?}", String::from_utf8_lossy(&r.body));
    }
    let (at, r) = full.expect("ingest never reported the full disk");
    assert!(
        ["disk_full", "queue_full"].contains(&r.json()["error"].as_str().unwrap()),
        "{:?}",
        r.json()
    );
    assert!(r.header("retry-after").is_some());
    assert_eq!(
        d.get("/healthz").unwrap().status,
        200,
        "the daemon stays up"
    );
    // Make room; ingest must resume without a restart.
    std::fs::remove_file(&ballast).unwrap();
    let t = Instant::now();
    let mut i = at + 1;
    loop {
        if send(i).status == 202 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "ingest did not resume within 60 s of freeing space"
        );
        i += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    for j in 0..50 {
        assert_eq!(send(i + 1 + j).status, 202);
    }
    let s = d.stop();
    let stored: Vec<String> = s
        .query("SELECT path FROM hits")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    let stored_set: std::collections::HashSet<&String> = stored.iter().collect();
    assert_eq!(stored.len(), stored_set.len(), "no hit stored twice");
    for p in &acked {
        assert!(stored_set.contains(p), "acknowledged hit {p} was lost");
    }
    assert_eq!(
        stored.len(),
        acked.len(),
        "nothing that got a 503 was stored"
    );
    // Unmount before the temporary directory is removed: a mount point
    // cannot be, and the directory would stay behind in /tmp.
    drop(_mount);
    drop(s);
}
