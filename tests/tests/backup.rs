//! Backup and restore, black box: `hitvault backup` while the daemon takes
//! load (and after a crash, with no daemon), `hitvault restore` into a fresh
//! data dir, a daemon started there: every acknowledged hit present exactly
//! once, ids unique, new hits above the restored ones; damaged or incomplete
//! backups and non-empty data dirs refused.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

use hitvault_tests::{Daemon, Load, binary};

const SITES: (&str, &str) = ("HITVAULT_SITES", "shop.test");

fn hv(args: &[&str], data: &Path) -> Output {
    Command::new(binary())
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env_remove("HITVAULT_CONFIG")
        .output()
        .expect("run hitvault")
}

fn ok(args: &[&str], data: &Path) -> String {
    hitvault_tests::succeeded(args, hv(args, data))
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("BACKUP")).expect("BACKUP written")).unwrap()
}

/// (path, count) of every stored hit.
fn path_counts(s: &hitvault_tests::StoppedDaemon) -> std::collections::HashMap<String, u64> {
    s.query("SELECT path, count(*) FROM hits GROUP BY path")
        .into_iter()
        .map(|r| (r[0].clone(), r[1].parse().unwrap()))
        .collect()
}

#[test]
fn backup_under_load_restores_every_acknowledged_hit_once() {
    let d = Daemon::start(&[SITES]);
    let load = Load::start(&d, "a");
    load.wait_for(1500);
    let before = load.acked();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("backup");
    let t = Instant::now();
    let out = ok(&["backup", dir.to_str().unwrap()], &d.data_dir);
    let took = t.elapsed();
    eprintln!("{out}backup took {took:?}");
    assert!(out.contains("through the running daemon"), "{out}");
    let during = load.finish();
    assert!(
        during.len() > before.len(),
        "ingest went on during the backup"
    );
    let m = manifest(&dir);
    let cut = m["committed_seq"].as_u64().unwrap();
    assert_eq!(
        m["hits"].as_u64().unwrap(),
        m["max_hit_id"].as_u64().unwrap()
    );
    assert!(m["hits"].as_u64().unwrap() >= before.len() as u64, "{m}");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    // The accounts' journal holds the first-run set-up link's record; the
    // audit log, the backup's own entry.
    assert_eq!(
        names,
        ["BACKUP", "accounts.jsonl", "audit.jsonl", "hitvault.duckdb"],
        "only the database, the accounts, the audit log and BACKUP"
    );
    let src = d.stop();
    // What the original stored up to the backup's position.
    let original = src.query(&format!(
        "SELECT id, path, ts FROM hits WHERE id <= {cut} ORDER BY id"
    ));
    assert_eq!(original.len() as u64, m["hits"].as_u64().unwrap());
    // The snapshot left nothing in the daemon's tmp dir.
    let left: Vec<_> = std::fs::read_dir(src.data_dir.join("tmp"))
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.iter()
            .all(|n| !n.to_string_lossy().starts_with("backup-")),
        "{left:?}"
    );

    // Restore refuses a data dir that is not empty, naming it.
    let out = hv(&["restore", dir.to_str().unwrap()], &src.data_dir);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not empty") && err.contains(&*src.data_dir.to_string_lossy()),
        "{err}"
    );

    let fresh_root = tempfile::tempdir().unwrap();
    let fresh = fresh_root.path().join("data");
    let out = ok(&["restore", dir.to_str().unwrap()], &fresh);
    assert!(out.contains(&format!("queue position {cut}")), "{out}");
    let d2 = Daemon::start_wrapped(fresh.clone(), fresh_root, &[SITES], &[]);
    let more = Load::start(&d2, "b");
    more.wait_for(200);
    let after = more.finish();
    let s2 = d2.stop();
    let restored = s2.query(&format!(
        "SELECT id, path, ts FROM hits WHERE id <= {cut} ORDER BY id"
    ));
    assert_eq!(restored, original, "the restored rows are the original's");
    let counts = path_counts(&s2);
    for p in &before {
        assert_eq!(
            counts.get(p),
            Some(&1),
            "hit {p} acknowledged before the backup"
        );
    }
    for p in &after {
        assert_eq!(
            counts.get(p),
            Some(&1),
            "hit {p} acknowledged after the restore"
        );
    }
    assert!(counts.values().all(|&n| n == 1), "a hit stored twice");
    assert_eq!(
        s2.count("SELECT count(*) - count(DISTINCT id) FROM hits"),
        0,
        "ids are unique"
    );
    assert_eq!(
        s2.count(&format!(
            "SELECT count(*) FROM hits WHERE path LIKE '/b%' AND id <= {cut}"
        )),
        0,
        "new hits get ids above the restored ones"
    );
}

#[test]
fn offline_backup_after_a_crash_replays_the_queue_and_bad_backups_are_refused() {
    // Batches commit once a minute: at the kill, the hits are in the queue only.
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("hv.toml");
    std::fs::write(&cfg, "[batch]\nmax_wait_ms = 60000\n").unwrap();
    let d = Daemon::start(&[SITES, ("HITVAULT_CONFIG", cfg.to_str().unwrap())]);
    let load = Load::start(&d, "c");
    load.wait_for(800);
    let stopped = d.kill();
    let acked = load.finish();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("backup");
    let out = hv(&["backup", dir.to_str().unwrap()], &stopped.data_dir);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("from the database file"), "{stdout}");
    assert!(stderr.contains("replayed the queue"), "{stderr}");
    let m = manifest(&dir);
    assert!(m["hits"].as_u64().unwrap() >= acked.len() as u64, "{m}");

    let fresh_root = tempfile::tempdir().unwrap();
    let fresh = fresh_root.path().join("data");
    ok(&["restore", dir.to_str().unwrap()], &fresh);
    let d2 = Daemon::start_wrapped(fresh.clone(), fresh_root, &[SITES], &[]);
    let s2 = d2.stop();
    let counts = path_counts(&s2);
    for p in &acked {
        assert_eq!(counts.get(p), Some(&1), "acknowledged hit {p}");
    }
    assert!(counts.values().all(|&n| n == 1));

    // A directory into which a backup was interrupted (no BACKUP) is refused.
    let partial = root.path().join("partial");
    std::fs::create_dir(&partial).unwrap();
    std::fs::copy(dir.join("hitvault.duckdb"), partial.join("hitvault.duckdb")).unwrap();
    let empty = root.path().join("empty1");
    let out = hv(&["restore", partial.to_str().unwrap()], &empty);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a complete backup"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!empty.join("hitvault.duckdb").exists());
    // A flipped byte is refused.
    std::fs::copy(dir.join("BACKUP"), partial.join("BACKUP")).unwrap();
    let db = partial.join("hitvault.duckdb");
    let mut bytes = std::fs::read(&db).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&db, bytes).unwrap();
    let out = hv(&["restore", partial.to_str().unwrap()], &empty);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("damaged"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!empty.join("hitvault.duckdb").exists());
    // A backup into a non-empty directory is refused.
    let out = hv(&["backup", partial.to_str().unwrap()], &stopped.data_dir);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
}
