//! `hv-takeout`: Takeout throughput of the real `hitvault` binary. Seeds a
//! store with `hv-seed`, then times `hitvault takeout` (Parquet and NDJSON,
//! from the database file) and `hitvault import` of each into an empty data
//! dir, and prints rows/s (all tables' rows over wall time, manifest checks
//! and fsyncs included).
//!
//!     hv-takeout --hits 1000000

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

fn run(cmd: &mut Command) -> anyhow::Result<f64> {
    let t = Instant::now();
    let out = cmd.output().context("run")?;
    let secs = t.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(secs)
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
        "{:<28} {:>12} {:>9} {:>14}",
        "step", "rows", "seconds", "rows/s"
    );
    for format in ["parquet", "ndjson"] {
        let out = tmp.path().join(format);
        let secs = run(Command::new(&hv).args([
            "--data-dir",
            data.to_str().unwrap(),
            "takeout",
            "--to",
            out.to_str().unwrap(),
            "--format",
            format,
        ]))?;
        let n = rows(&out)?;
        println!(
            "{:<28} {n:>12} {secs:>9.2} {:>14.0}",
            format!("export {format}"),
            n as f64 / secs
        );
        let dst = tmp.path().join(format!("dst-{format}"));
        let secs = run(Command::new(&hv).args([
            "--data-dir",
            dst.to_str().unwrap(),
            "import",
            out.to_str().unwrap(),
        ]))?;
        println!(
            "{:<28} {n:>12} {secs:>9.2} {:>14.0}",
            format!("import {format}"),
            n as f64 / secs
        );
    }
    Ok(())
}
