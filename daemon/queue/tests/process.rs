//! Tests that need a child process: a real ENOSPC on a tiny tmpfs (in a
//! private mount namespace, so it needs root), and SIGKILL during appends.
//!
//! This file has its own `main` (`harness = false` in Cargo.toml): the same
//! binary is re-run as the child, selected by the `HV_QUEUE_CHILD`
//! environment variable, which a forked copy of libtest's multi-threaded
//! harness could not do safely.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use hitvault_queue::{AppendError, Queue, QueueConfig};

const CHILD_ENV: &str = "HV_QUEUE_CHILD";
const DIR_ENV: &str = "HV_QUEUE_CHILD_DIR";
/// Exit code of the disk-full child when it lacks the privileges it needs.
const EXIT_NEEDS_ROOT: i32 = 77;

type TestFn = fn() -> Result<(), String>;

const TESTS: &[(&str, TestFn)] = &[
    ("disk_full_on_tiny_tmpfs", disk_full_on_tiny_tmpfs),
    (
        "sigkill_keeps_every_acked_record",
        sigkill_keeps_every_acked_record,
    ),
];

fn main() -> ExitCode {
    if let Ok(mode) = std::env::var(CHILD_ENV) {
        let dir = std::env::var(DIR_ENV).map(PathBuf::from);
        return match (mode.as_str(), dir) {
            ("disk-full", _) => child_disk_full(),
            ("append-forever", Ok(dir)) => child_append_forever(&dir),
            _ => {
                eprintln!("unknown child mode {mode:?} or missing {DIR_ENV}");
                ExitCode::from(2)
            }
        };
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in TESTS {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let exact = args.iter().any(|a| a == "--exact");
    let selected: Vec<_> = TESTS
        .iter()
        .filter(|(name, _)| {
            filters.is_empty()
                || filters.iter().any(|f| {
                    if exact {
                        name == f
                    } else {
                        name.contains(f.as_str())
                    }
                })
        })
        .collect();
    println!("\nrunning {} tests", selected.len());
    let mut failed = Vec::new();
    for (name, f) in &selected {
        let t = Instant::now();
        match f() {
            Ok(()) => println!("test {name} ... ok ({:.1?})", t.elapsed()),
            Err(msg) => {
                println!("test {name} ... FAILED");
                eprintln!("---- {name} ----\n{msg}\n");
                failed.push(*name);
            }
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        selected.len() - failed.len(),
        failed.len()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

fn reopen_and_read(
    cfg: &QueueConfig,
    committed: u64,
) -> Result<(Queue, BTreeMap<u64, Vec<u8>>), String> {
    let q = Queue::open(cfg.clone(), committed, 0, None).map_err(|e| format!("reopen: {e}"))?;
    let mut all = BTreeMap::new();
    let mut pos = committed;
    loop {
        let batch = q
            .read_after(pos, 1000, Duration::ZERO)
            .map_err(|e| format!("read: {e}"))?;
        let Some(last) = batch.last() else { break };
        pos = last.0;
        all.extend(batch);
    }
    Ok((q, all))
}

// ---------------------------------------------------------------- disk full

/// Runs the child in its own mount namespace with a 2 MiB tmpfs, where it
/// appends until ENOSPC; the child does all checks and reports by exit code.
fn disk_full_on_tiny_tmpfs() -> Result<(), String> {
    let out = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .env(CHILD_ENV, "disk-full")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("spawning the child: {e}"))?;
    let text = format!(
        "child stdout:\n{}\nchild stderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.code() == Some(EXIT_NEEDS_ROOT) {
        return Err(format!(
            "this test needs root (CAP_SYS_ADMIN) to unshare a mount namespace and mount a tmpfs; run the tests as root\n{text}"
        ));
    }
    ensure!(
        out.status.success(),
        "child failed ({})\n{text}",
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        stdout.contains("disk-full child: all checks passed"),
        "child did not report success\n{text}"
    );
    print!("{stdout}");
    Ok(())
}

fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn child_disk_full() -> ExitCode {
    // SAFETY: unshare with CLONE_NEWNS only changes this process's mount namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        eprintln!("{}", os_err("unshare(CLONE_NEWNS)"));
        return ExitCode::from(EXIT_NEEDS_ROOT as u8);
    }
    let root = CString::new("/").unwrap_or_default();
    // SAFETY: valid C strings; MS_REC|MS_PRIVATE stops our mounts leaking out.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        eprintln!("{}", os_err("making mounts private"));
        return ExitCode::from(EXIT_NEEDS_ROOT as u8);
    }
    let mnt = match tempfile::tempdir() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tempdir: {e}");
            return ExitCode::FAILURE;
        }
    };
    let target = CString::new(mnt.path().to_string_lossy().as_bytes()).unwrap_or_default();
    let fstype = CString::new("tmpfs").unwrap_or_default();
    let opts = CString::new("size=2m").unwrap_or_default();
    // SAFETY: valid C strings for a tmpfs mount on an empty directory we own.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            opts.as_ptr().cast(),
        )
    };
    if rc != 0 {
        eprintln!("{}", os_err("mounting a 2 MiB tmpfs"));
        return ExitCode::from(EXIT_NEEDS_ROOT as u8);
    }
    let result = disk_full_checks(mnt.path());
    // SAFETY: unmount what we mounted; the namespace dies with us anyway.
    unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    drop(mnt);
    match result {
        Ok(()) => {
            println!("disk-full child: all checks passed");
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("disk-full child: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn disk_full_checks(mnt: &Path) -> Result<(), String> {
    let cfg = QueueConfig {
        dir: mnt.join("q"),
        segment_bytes: 128 << 10,
        // Far above the tmpfs: the disk fills before the queue is "Full".
        max_bytes: 64 << 20,
        max_record_bytes: 4096,
    };
    let q = Queue::open(cfg.clone(), 0, 0, None).map_err(|e| format!("open: {e}"))?;
    let payload = |i: u64| format!("{i:08}-{}", "p".repeat(1000)).into_bytes();
    let mut acked: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut hit_disk_full = false;
    for i in 0..10_000u64 {
        match q.append(payload(i)).wait() {
            Ok(seq) => {
                acked.insert(seq, payload(i));
            }
            Err(AppendError::DiskFull) => {
                hit_disk_full = true;
                break;
            }
            Err(e) => return Err(format!("append {i}: unexpected error {e}")),
        }
    }
    ensure!(hit_disk_full, "never got DiskFull on a 2 MiB tmpfs");
    ensure!(
        acked.len() > 100,
        "only {} records fit before DiskFull",
        acked.len()
    );
    println!("{} records acknowledged before DiskFull", acked.len());
    // Still full, and still refusing cleanly (an append_all too).
    ensure!(
        matches!(q.append(payload(0)).wait(), Err(AppendError::DiskFull)),
        "second append after DiskFull did not fail with DiskFull"
    );
    ensure!(
        matches!(
            q.append_all(vec![payload(0), payload(1)]).wait(),
            Err(AppendError::DiskFull)
        ),
        "append_all after DiskFull did not fail with DiskFull"
    );
    let last_acked = *acked.keys().next_back().unwrap_or(&0);
    ensure!(
        q.stats().last_seq == last_acked,
        "last_seq {} != last acked {last_acked}",
        q.stats().last_seq
    );
    q.close();
    drop(q);

    // Every acknowledged record is there after reopen, and nothing else.
    let (q, all) = reopen_and_read(&cfg, 0)?;
    ensure!(
        all == acked,
        "after reopen: {} records, {} acknowledged; first difference at {:?}",
        all.len(),
        acked.len(),
        all.iter()
            .zip(acked.iter())
            .find(|(a, b)| a != b)
            .map(|(a, _)| a.0)
    );

    // Freeing space lets the queue carry on, across new segments.
    q.mark_committed(last_acked)
        .map_err(|e| format!("mark_committed: {e}"))?;
    let mut more = BTreeMap::new();
    for i in 0..500u64 {
        let seq = q
            .append(payload(i))
            .wait()
            .map_err(|e| format!("append after freeing space: {e}"))?;
        more.insert(seq, payload(i));
    }
    ensure!(
        *more.keys().next().unwrap_or(&0) == last_acked + 1,
        "seqs did not continue after DiskFull"
    );
    q.close();
    drop(q);
    let (_q, all) = reopen_and_read(&cfg, last_acked)?;
    ensure!(
        all == more,
        "records appended after freeing space differ after reopen"
    );
    Ok(())
}

// ---------------------------------------------------------------- SIGKILL

/// Kills a child that appends from 16 threads with SIGKILL, three times on
/// the same directory; every record the child saw acknowledged must come
/// back with its payload, and seqs must keep increasing.
fn sigkill_keeps_every_acked_record() -> Result<(), String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = tmp.path().join("q");
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    for round in 0..3 {
        let mut child = Command::new(&exe)
            .env(CHILD_ENV, "append-forever")
            .env(DIR_ENV, &dir)
            .env("HV_QUEUE_ROUND", round.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawning the child: {e}"))?;
        let stdout = child.stdout.take().ok_or("no child stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = 0;
        let t = Instant::now();
        // Let it acknowledge a few hundred records, then kill it mid-flight.
        while seen < 300 && t.elapsed() < Duration::from_secs(20) {
            match lines.next() {
                Some(Ok(line)) => {
                    let (seq, p) = line.split_once(' ').ok_or(format!("bad line {line:?}"))?;
                    let seq: u64 = seq.parse().map_err(|_| format!("bad line {line:?}"))?;
                    ensure!(
                        acked.insert(seq, p.to_string()).is_none(),
                        "seq {seq} acknowledged twice"
                    );
                    seen += 1;
                }
                _ => break,
            }
        }
        child.kill().map_err(|e| format!("kill: {e}"))?; // SIGKILL
        for line in lines.map_while(Result::ok) {
            if let Some((seq, p)) = line.split_once(' ')
                && let Ok(seq) = seq.parse::<u64>()
            {
                ensure!(
                    acked.insert(seq, p.to_string()).is_none(),
                    "seq {seq} acknowledged twice"
                );
            }
        }
        let _ = child.wait();
        ensure!(
            seen >= 300,
            "round {round}: the child acknowledged only {seen} records"
        );

        let (q, all) = reopen_and_read(&child_config(&dir), 0)?;
        for (seq, p) in &acked {
            match all.get(seq) {
                Some(got) if got == p.as_bytes() => {}
                Some(got) => {
                    return Err(format!(
                        "round {round}: seq {seq} holds {:?}, acknowledged {p:?}",
                        String::from_utf8_lossy(got)
                    ));
                }
                None => return Err(format!("round {round}: acknowledged seq {seq} is missing")),
            }
        }
        println!(
            "round {round}: {} acknowledged, {} on disk (the rest written but not yet acknowledged)",
            acked.len(),
            all.len()
        );
        q.close();
    }
    Ok(())
}

fn child_config(dir: &Path) -> QueueConfig {
    QueueConfig {
        dir: dir.to_path_buf(),
        // Small segments so the kills also land around segment rolls.
        segment_bytes: 16 << 10,
        max_bytes: 256 << 20,
        max_record_bytes: 4096,
    }
}

fn child_append_forever(dir: &Path) -> ExitCode {
    let q = match Queue::open(child_config(dir), 0, 0, None) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("child open: {e}");
            return ExitCode::FAILURE;
        }
    };
    let round = std::env::var("HV_QUEUE_ROUND").unwrap_or_default();
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let q = q.clone();
            let round = round.clone();
            std::thread::spawn(move || {
                for i in 0u64.. {
                    let p = format!("r{round}-t{t}-{i}-{}", "z".repeat((i % 50) as usize));
                    match q.append(p.clone().into_bytes()).wait() {
                        Ok(seq) => {
                            let mut out = std::io::stdout().lock();
                            if writeln!(out, "{seq} {p}")
                                .and_then(|()| out.flush())
                                .is_err()
                            {
                                return;
                            }
                        }
                        Err(e) => {
                            eprintln!("child append: {e}");
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    ExitCode::FAILURE
}
