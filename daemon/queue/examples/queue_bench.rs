//! Append throughput and latency of the queue on the current disk.
//!
//! `cargo run --release --example queue_bench -p hitvault-queue`
//!
//! For 1, 16 and 64 concurrent appenders, appends 300-byte records for a few
//! seconds with default settings (64 MiB segments) in a temp dir, while a
//! batcher thread reads and marks records committed. Prints appends/s,
//! p50/p99 append latency, records per fsync, the mean fdatasync time and the
//! share of the time the writer spent in fdatasync. Two kinds of appenders:
//! OS threads blocking on `wait()`, and tokio tasks awaiting the future on a
//! 2-worker runtime (what the HTTP ingest handlers do).
//!
//! Environment: `HV_BENCH_SECS` (default 3), `HV_BENCH_DIR` (default the
//! system temp dir; it must be on the disk you want to measure).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hitvault_queue::{GroupCommit, GroupObserver, Queue, QueueConfig};

fn main() {
    let secs: f64 = std::env::var("HV_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let base = std::env::var("HV_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    println!(
        "queue_bench: 300-byte records, {secs} s per run, dir {}",
        base.display()
    );
    println!(
        "{:>8} {:>10} {:>12} {:>10} {:>10} {:>10} {:>14} {:>12} {:>10}",
        "mode",
        "appenders",
        "appends/s",
        "p50",
        "p99",
        "max",
        "records/fsync",
        "mean fsync",
        "fsync busy"
    );
    for mode in [Mode::Threads, Mode::Tasks] {
        for &n in &[1usize, 16, 64] {
            run(mode, n, Duration::from_secs_f64(secs), &base);
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    /// OS threads blocking on `Append::wait`.
    Threads,
    /// Tokio tasks awaiting `Append` on a 2-worker multi-thread runtime.
    Tasks,
}

fn appenders_threads(q: &Queue, n: usize, deadline: Instant) -> Vec<Duration> {
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let q = q.clone();
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let payload = vec![b'h'; 300];
                while Instant::now() < deadline {
                    let t = Instant::now();
                    q.append(payload.clone()).wait().expect("append");
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().expect("appender"))
        .collect()
}

fn appenders_tasks(q: &Queue, n: usize, deadline: Instant) -> Vec<Duration> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    rt.block_on(async {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let q = q.clone();
                tokio::spawn(async move {
                    let mut lat = Vec::new();
                    let payload = vec![b'h'; 300];
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        q.append(payload.clone()).await.expect("append");
                        lat.push(t.elapsed());
                    }
                    lat
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("task"));
        }
        all
    })
}

fn run(mode: Mode, appenders: usize, duration: Duration, base: &std::path::Path) {
    let tmp = tempfile::tempdir_in(base).expect("temp dir");
    let cfg = QueueConfig {
        dir: tmp.path().join("q"),
        ..QueueConfig::default()
    };
    // Total fdatasync time of group commits, in microseconds.
    let fsync_us = Arc::new(AtomicU64::new(0));
    let observer: GroupObserver = {
        let fsync_us = Arc::clone(&fsync_us);
        Arc::new(move |g: GroupCommit| {
            fsync_us.fetch_add(g.fsync.as_micros() as u64, Ordering::Relaxed);
        })
    };
    let q = Queue::open(cfg, 0, 0, Some(observer)).expect("open queue");
    // Warm up: the first append creates the first segment.
    q.append(vec![0; 300]).wait().expect("append");

    let stop = Arc::new(AtomicBool::new(false));
    let batcher = {
        let q = q.clone();
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut after = 0;
            while !stop.load(Ordering::Relaxed) {
                let batch = q
                    .read_after(after, 4096, Duration::from_millis(50))
                    .expect("read");
                if let Some(last) = batch.last() {
                    after = last.0;
                    q.mark_committed(after).expect("commit");
                }
            }
        })
    };

    let fsyncs0 = q.stats().fsyncs;
    let fsync_us0 = fsync_us.load(Ordering::Relaxed);
    let start = Instant::now();
    let deadline = start + duration;
    let mut lat = match mode {
        Mode::Threads => appenders_threads(&q, appenders, deadline),
        Mode::Tasks => appenders_tasks(&q, appenders, deadline),
    };
    let elapsed = start.elapsed();
    let fsyncs = q.stats().fsyncs - fsyncs0;
    let fsync_busy = Duration::from_micros(fsync_us.load(Ordering::Relaxed) - fsync_us0);
    stop.store(true, Ordering::Relaxed);
    batcher.join().expect("batcher");
    q.close();

    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "{:>8} {:>10} {:>12.0} {:>10.2?} {:>10.2?} {:>10.2?} {:>14.1} {:>12.2?} {:>9.0}%",
        format!("{mode:?}").to_lowercase(),
        appenders,
        lat.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        lat[lat.len() - 1],
        lat.len() as f64 / fsyncs.max(1) as f64,
        fsync_busy / fsyncs.max(1) as u32,
        100.0 * fsync_busy.as_secs_f64() / elapsed.as_secs_f64()
    );
}
