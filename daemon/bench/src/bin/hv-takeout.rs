//! `hv-takeout`: Takeout throughput of the real `hitvault` binary. Seeds a
//! store with `hv-seed`, then times `hitvault takeout` (Parquet and NDJSON,
//! from the database file) and `hitvault import` of each into an empty data
//! dir, and prints rows/s (all tables' rows over wall time, manifest checks
//! and fsyncs included) and the CPU time the step's process used per million
//! rows (user + system, all its threads): on a shared machine wall time
//! varies with the load, CPU time much less. With `--daemon`, each export is
//! also imported into a `hitvault serve` started on an empty data dir (the
//! CPU is then the CLI's and the daemon's together).
//!
//!     hv-takeout --hits 1000000 [--daemon]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;

#[derive(Parser, Debug)]
struct Args {
    /// Hits to seed.
    #[arg(long, default_value_t = 1_000_000)]
    hits: u64,
    /// A seeded data dir to reuse instead of seeding one.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Formats to export and import, comma-separated.
    #[arg(long, default_value = "parquet,ndjson", value_delimiter = ',')]
    formats: Vec<String>,
    /// Also import each export through a running daemon.
    #[arg(long)]
    daemon: bool,
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let p = exe.with_file_name(name);
    if !p.exists() {
        bail!(
            "{} not found: cargo build --release --workspace --all-targets",
            p.display()
        );
    }
    Ok(p)
}

/// CPU seconds (user + system) of the waited-for children so far.
fn children_cpu() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

/// Runs `cmd`; returns (wall seconds, CPU seconds).
fn run(cmd: &mut Command) -> anyhow::Result<(f64, f64)> {
    let cpu = children_cpu();
    let t = Instant::now();
    let out = cmd.output().context("run")?;
    let secs = t.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok((secs, children_cpu() - cpu))
}

fn report(step: &str, rows: u64, (secs, cpu): (f64, f64)) {
    println!(
        "{step:<25} {rows:>10} {secs:>9.2} {:>12.0} {:>9.2} {:>14.0}",
        rows as f64 / secs,
        cpu,
        cpu * 1e3 * 1e6 / rows.max(1) as f64
    );
}

fn rows(dir: &Path) -> anyhow::Result<u64> {
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("MANIFEST"))?)?;
    Ok(m["files"]
        .as_array()
        .context("files")?
        .iter()
        .filter_map(|f| f["rows"].as_u64())
        .sum())
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let hv = sibling("hitvault")?;
    let tmp = tempfile::Builder::new().prefix("hv-takeout").tempdir()?;
    let data = match a.data_dir {
        Some(d) => d,
        None => {
            let d = tmp.path().join("src");
            run(Command::new(sibling("hv-seed")?).args([
                "--data-dir",
                d.to_str().unwrap(),
                "--hits",
                &a.hits.to_string(),
            ]))?;
            d
        }
    };
    println!(
        "{:<25} {:>10} {:>9} {:>12} {:>9} {:>14}",
        "step", "rows", "wall s", "rows/s", "CPU s", "CPU ms/M rows"
    );
    for format in &a.formats {
        let out = tmp.path().join(format);
        let t = run(Command::new(&hv).args([
            "--data-dir",
            data.to_str().unwrap(),
            "takeout",
            "--to",
            out.to_str().unwrap(),
            "--format",
            format.as_str(),
        ]))?;
        let n = rows(&out)?;
        report(&format!("export {format}"), n, t);
        let dst = tmp.path().join(format!("dst-{format}"));
        let t = run(Command::new(&hv).args([
            "--data-dir",
            dst.to_str().unwrap(),
            "import",
            out.to_str().unwrap(),
        ]))?;
        report(&format!("import {format}"), n, t);
        if a.daemon {
            let dst = tmp.path().join(format!("daemon-{format}"));
            let log = tmp.path().join(format!("daemon-{format}.log"));
            let (mut d, _) = hitvault_bench::start_daemon(&hv, &dst, &log, &[])?;
            let pid = d.id();
            let cpu = || {
                hitvault_bench::process_cpu(pid)
                    .context("the daemon's CPU")
                    .map(|c| c.as_secs_f64())
            };
            let before = cpu()?;
            let (secs, cli) = run(Command::new(&hv).args([
                "--data-dir",
                dst.to_str().unwrap(),
                "import",
                out.to_str().unwrap(),
            ]))?;
            let daemon = cpu()? - before;
            // SAFETY: signalling our own child.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            d.wait()?;
            report(
                &format!("import {format} (daemon)"),
                n,
                (secs, cli + daemon),
            );
        }
    }
    Ok(())
}
