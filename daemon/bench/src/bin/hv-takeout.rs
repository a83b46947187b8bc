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

/// CPU seconds (user + system) `pid` has used so far.
fn process_cpu(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')').context("stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok((f[11].parse::<f64>()? + f[12].parse::<f64>()?) / hz)
}

/// Starts `hitvault serve` on an empty `data` dir (as `nobody` when run as
/// root) and waits until it runs.
fn serve(hv: &Path, data: &Path, log: &Path) -> anyhow::Result<std::process::Child> {
    std::fs::create_dir_all(data)?;
    let mut cmd = Command::new(hv);
    let root = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self")?) == 0;
    if root && std::env::var_os("HITVAULT_USER").is_none() {
        cmd.env("HITVAULT_USER", "nobody");
        let parent = data.parent().context("parent")?;
        std::fs::set_permissions(parent, std::os::unix::fs::PermissionsExt::from_mode(0o711))?;
        let c = std::ffi::CString::new(data.as_os_str().as_encoded_bytes())?;
        // SAFETY: a valid C string; nobody's ids from the password database.
        let rc = unsafe {
            let pw = libc::getpwnam(c"nobody".as_ptr());
            if pw.is_null() {
                bail!("no user nobody");
            }
            libc::chown(c.as_ptr(), (*pw).pw_uid, (*pw).pw_gid)
        };
        if rc != 0 {
            bail!(
                "chown {}: {}",
                data.display(),
                std::io::Error::last_os_error()
            );
        }
    }
    let mut child = cmd
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("HITVAULT_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()?;
    let t = Instant::now();
    while !data.join("run.json").exists() {
        if let Some(s) = child.try_wait()? {
            bail!("the daemon exited ({s}); see {}", log.display());
        }
        if t.elapsed().as_secs() > 60 {
            bail!("the daemon did not start; see {}", log.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(child)
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
            let dst = tmp.path().join(format!("daemon-{format}")).join("data");
            let log = tmp.path().join(format!("daemon-{format}.log"));
            let mut d = serve(&hv, &dst, &log)?;
            let before = process_cpu(d.id())?;
            let (secs, cli) = run(Command::new(&hv).args([
                "--data-dir",
                dst.to_str().unwrap(),
                "import",
                out.to_str().unwrap(),
            ]))?;
            let daemon = process_cpu(d.id())? - before;
            // SAFETY: signalling our own child.
            unsafe { libc::kill(d.id() as i32, libc::SIGTERM) };
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
