//! `hv-load`: drives a hitvault daemon over HTTP/1.1 keep-alive and prints
//! sustained hits/s, latency percentiles, the daemon's peak RSS, and, after a
//! clean stop, the rows in DuckDB (which must equal the 2xx count) and the
//! bytes on disk per stored hit.
//!
//! By default it starts the daemon itself (the `hitvault` binary next to this
//! one) with a fresh data dir, so that it can read the store afterwards:
//!
//!     hv-load --connections 64 --seconds 20
//!
//! With `--bare` it first measures `hv-bare`, a bare HTTP server, with the
//! same requests, and prints hitvault's hits/s as a share of that ceiling:
//!
//!     hv-load --connections 64 --seconds 20 --bare
//!
//! With `--tls` it starts the daemon with its local CA (`tls.mode =
//! "local-ca"`, on loopback, where plain HTTP is served too) and drives it
//! twice in one run, plain HTTP then HTTPS, both with keep-alive, each
//! connection's TLS handshake done once and verified against the daemon's
//! CA; it prints both and the TLS rate as a share of the plain one:
//!
//!     hv-load --connections 64 --seconds 20 --tls
//!
//! It prints figures; it never decides pass or fail on timings.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use hitvault_bench::traffic::{Visit, site};
use hitvault_bench::{Rng, clock_ticks, cpu_by_thread, own_cpu, percentile, rss_kib, start_daemon};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser, Debug)]
struct Args {
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Warm-up seconds, not measured.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Number of sites.
    #[arg(long, default_value_t = 20)]
    sites: usize,
    /// The daemon binary to start (default: `hitvault` next to this program).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Data directory for the daemon (default: a new temporary one).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Drive an already running daemon at this address instead of starting one
    /// (then rows, bytes and RSS are not reported). Several, comma-separated
    /// (the nodes of a cluster): the connections are spread over them.
    #[arg(long, value_delimiter = ',')]
    addr: Vec<SocketAddr>,
    /// The path every request is POSTed to. Pointing it at a route that does
    /// no work (say `/healthz`, answered 405) measures the HTTP floor.
    #[arg(long, default_value = "/api/collect")]
    path: String,
    /// Requests written back to back on each connection before reading their
    /// answers (HTTP/1.1 pipelining). 1, the default, is what browsers do: one
    /// request, its answer, the next. Higher values spend less of the shared
    /// CPU on the generator's own sends; every answer is still read and
    /// checked to be a 202.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pipeline: u32,
    /// First drive `hv-bare` (next to this program: a bare hyper server that
    /// reads the body and answers 202) with the same requests and settings,
    /// then the daemon, and print the daemon's share of that ceiling.
    #[arg(long)]
    bare: bool,
    /// Drive the daemon over plain HTTP, then over TLS (its local CA,
    /// verified), and print the TLS rate as a share of the plain one.
    #[arg(long, conflicts_with = "addr")]
    tls: bool,
}

/// The client side of `--tls`: the daemon's CA trusted, `localhost` its name.
#[derive(Clone)]
struct Tls {
    connector: tokio_rustls::TlsConnector,
    name: rustls::pki_types::ServerName<'static>,
}

impl Tls {
    fn new(ca_pem: &[u8]) -> anyhow::Result<Tls> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(ca_pem)?)?;
        let config = rustls::ClientConfig::builder_with_provider(hitvault_tls::provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Tls {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            name: rustls::pki_types::ServerName::try_from("localhost")?,
        })
    }
}

struct Shared {
    ok: AtomicU64,
    non2xx: AtomicU64,
    errors: AtomicU64,
    measuring: AtomicBool,
    stop: AtomicBool,
}

fn requests(n: usize, sites: usize, path: &str) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(7);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let v = Visit::random(&mut rng, sites);
        for i in 0..Visit::length(&mut rng) {
            let body = v.beacon(&mut rng, i);
            out.push(
                format!(
                    "POST {path} HTTP/1.1\r\nHost: bench\r\nUser-Agent: {}\r\nContent-Type: text/plain\r\nX-Forwarded-For: {}\r\nContent-Length: {}\r\n\r\n{}",
                    v.ua.0, v.ip, body.len(), body
                )
                .into_bytes(),
            );
        }
    }
    out
}

/// Reads one HTTP/1.1 response (status line, headers, Content-Length body).
/// `buf` carries bytes already read past the previous response (pipelining)
/// and keeps what follows this one.
async fn read_response<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
) -> anyhow::Result<u16> {
    let mut tmp = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end])?;
            let status: u16 = head.split_whitespace().nth(1).context("status")?.parse()?;
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .map(|v| v.parse())
                .transpose()?
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = s.read(&mut tmp).await?;
                if n == 0 {
                    bail!("connection closed");
                }
                buf.extend_from_slice(&tmp[..n]);
            }
            buf.drain(..end + 4 + len);
            return Ok(status);
        }
        let n = s.read(&mut tmp).await?;
        if n == 0 {
            bail!("connection closed");
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

async fn worker(
    addr: SocketAddr,
    reqs: Arc<Vec<Vec<u8>>>,
    start: usize,
    pipeline: usize,
    shared: Arc<Shared>,
    tls: Option<Tls>,
) -> Vec<u32> {
    let mut w = Conn {
        lat: Vec::with_capacity(1 << 16),
        buf: Vec::with_capacity(1024),
        out: Vec::with_capacity(2048),
        i: start,
        reqs,
        pipeline,
        shared,
    };
    while !w.shared.stop.load(Ordering::Relaxed) {
        let Ok(s) = tokio::net::TcpStream::connect(addr).await else {
            w.shared.errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = s.set_nodelay(true);
        w.buf.clear();
        match &tls {
            None => w.drive(s).await,
            Some(t) => match t.connector.connect(t.name.clone(), s).await {
                Ok(s) => w.drive(s).await,
                Err(_) => {
                    w.shared.errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
    w.lat
}

/// One worker's state across its connections.
struct Conn {
    lat: Vec<u32>,
    buf: Vec<u8>,
    out: Vec<u8>,
    i: usize,
    reqs: Arc<Vec<Vec<u8>>>,
    pipeline: usize,
    shared: Arc<Shared>,
}

impl Conn {
    /// Sends requests on `s` (keep-alive) until the run stops or the
    /// connection fails.
    async fn drive<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(&mut self, mut s: S) {
        let shared = self.shared.clone();
        while !shared.stop.load(Ordering::Relaxed) {
            self.out.clear();
            for _ in 0..self.pipeline {
                self.out
                    .extend_from_slice(&self.reqs[self.i % self.reqs.len()]);
                self.i += 1;
            }
            let t = Instant::now();
            if s.write_all(&self.out).await.is_err() || s.flush().await.is_err() {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
            for _ in 0..self.pipeline {
                match read_response(&mut s, &mut self.buf).await {
                    Ok(status) => {
                        let measuring = shared.measuring.load(Ordering::Relaxed);
                        if status == 202 {
                            shared.ok.fetch_add(1, Ordering::Relaxed);
                        } else {
                            shared.non2xx.fetch_add(1, Ordering::Relaxed);
                        }
                        if measuring {
                            self.lat
                                .push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                        }
                    }
                    Err(_) => {
                        shared.errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
        }
    }
}

/// What one measured run saw.
struct Run {
    /// Latencies of the measured requests, in microseconds, sorted.
    lat: Vec<u32>,
    measured_ok: u64,
    /// Responses of any status in the measured window.
    measured_all: u64,
    elapsed: Duration,
    /// The server's RSS sampled during the run (KiB).
    peak_during: u64,
    /// The server's CPU by thread, and the generator's, before and after.
    cpu: (CpuSample, CpuSample),
    shared: Arc<Shared>,
}

type CpuSample = (std::collections::BTreeMap<String, u64>, Duration);

impl Run {
    fn hits_per_s(&self) -> f64 {
        self.measured_ok as f64 / self.elapsed.as_secs_f64()
    }
}

/// Drives the server at `addr` (process `pid`, when known) for the warm-up,
/// then measures for `a.seconds`.
fn drive(
    addrs: &[SocketAddr],
    pid: Option<u32>,
    a: &Args,
    tls: Option<Tls>,
) -> anyhow::Result<Run> {
    let reqs = Arc::new(requests(50_000, a.sites, &a.path));
    let shared = Arc::new(Shared {
        ok: AtomicU64::new(0),
        non2xx: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        measuring: AtomicBool::new(false),
        stop: AtomicBool::new(false),
    });
    // One runtime thread for the generator, so the server keeps most of the CPU.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let run = rt.block_on(async {
        let handles: Vec<_> = (0..a.connections)
            .map(|c| {
                tokio::spawn(worker(
                    addrs[c % addrs.len()],
                    reqs.clone(),
                    c * 997,
                    a.pipeline as usize,
                    shared.clone(),
                    tls.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(a.warmup)).await;
        let ok0 = shared.ok.load(Ordering::Relaxed);
        let all0 = ok0 + shared.non2xx.load(Ordering::Relaxed);
        let cpu0 = (pid.map(cpu_by_thread).unwrap_or_default(), own_cpu());
        shared.measuring.store(true, Ordering::Relaxed);
        let t = Instant::now();
        let mut peak = 0;
        while t.elapsed() < Duration::from_secs(a.seconds) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if let Some((_, rss)) = pid.and_then(rss_kib) {
                peak = peak.max(rss);
            }
        }
        shared.measuring.store(false, Ordering::Relaxed);
        let elapsed = t.elapsed();
        let measured_ok = shared.ok.load(Ordering::Relaxed) - ok0;
        let measured_all =
            shared.ok.load(Ordering::Relaxed) + shared.non2xx.load(Ordering::Relaxed) - all0;
        let cpu1 = (pid.map(cpu_by_thread).unwrap_or_default(), own_cpu());
        shared.stop.store(true, Ordering::Relaxed);
        let mut lat = Vec::new();
        for h in handles {
            lat.extend(h.await.unwrap_or_default());
        }
        lat.sort_unstable();
        Run {
            lat,
            measured_ok,
            measured_all,
            elapsed,
            peak_during: peak,
            cpu: (cpu0, cpu1),
            shared: shared.clone(),
        }
    });
    Ok(run)
}

/// Prints what a run measured; `what` names the server.
fn report(what: &str, r: &Run, a: &Args) {
    let lat = &r.lat;
    println!("server               {what}");
    println!(
        "connections          {} ({} request{} in flight on each)",
        a.connections,
        a.pipeline,
        if a.pipeline == 1 { "" } else { "s" }
    );
    println!(
        "measured             {:.1} s after {} s warm-up",
        r.elapsed.as_secs_f64(),
        a.warmup
    );
    println!("sustained            {:.0} hits/s (202)", r.hits_per_s());
    println!(
        "latency              p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        f64::from(percentile(lat, 50.0)) / 1000.0,
        f64::from(percentile(lat, 90.0)) / 1000.0,
        f64::from(percentile(lat, 99.0)) / 1000.0,
        f64::from(*lat.last().unwrap_or(&0)) / 1000.0
    );
    println!(
        "202 total            {}",
        r.shared.ok.load(Ordering::Relaxed)
    );
    println!(
        "other statuses       {}",
        r.shared.non2xx.load(Ordering::Relaxed)
    );
    println!(
        "connection errors    {}",
        r.shared.errors.load(Ordering::Relaxed)
    );
    // CPU per hit: what the figures above cost, less sensitive than hits/s to
    // other work on a shared machine.
    // Per response, so that a run against a route that refuses still counts.
    let ((d0, g0), (d1, g1)) = &r.cpu;
    let measured_all = r.measured_all;
    println!(
        "responses            {:.0}/s (all statuses)",
        measured_all as f64 / r.elapsed.as_secs_f64()
    );
    let per_hit =
        |ticks: u64| ticks as f64 / clock_ticks() as f64 * 1e6 / measured_all.max(1) as f64;
    if !d1.is_empty() {
        let total: u64 = d1.values().sum::<u64>() - d0.values().sum::<u64>();
        let mut parts: Vec<String> = d1
            .iter()
            .map(|(k, v)| (k, v.saturating_sub(d0.get(k).copied().unwrap_or(0))))
            .filter(|(_, v)| *v > 0)
            .map(|(k, v)| format!("{k} {:.1}", per_hit(v)))
            .collect();
        parts.sort();
        println!(
            "server CPU           {:.1} us/response ({})",
            per_hit(total),
            parts.join(", ")
        );
    }
    println!(
        "generator CPU        {:.1} us/response",
        (*g1 - *g0).as_secs_f64() * 1e6 / measured_all.max(1) as f64
    );
}

/// Starts `hv-bare` next to this program; returns it and its address.
fn start_bare() -> anyhow::Result<(std::process::Child, SocketAddr)> {
    use std::io::BufRead;
    let bin = std::env::current_exe()?
        .parent()
        .context("exe dir")?
        .join("hv-bare");
    let mut child = std::process::Command::new(&bin)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("start {}", bin.display()))?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .with_context(|| format!("hv-bare said {line:?}"))?
        .parse()?;
    Ok((child, addr))
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let bare = if a.bare {
        let (mut c, addr) = start_bare()?;
        let r = drive(&[addr], Some(c.id()), &a, None);
        let _ = c.kill();
        let _ = c.wait();
        let r = r?;
        report("hv-bare (reads the body, answers 202)", &r, &a);
        println!();
        Some(r.hits_per_s())
    } else {
        None
    };
    let sites: Vec<String> = (0..a.sites).map(site).collect();
    let tmp = tempfile::Builder::new().prefix("hv-load").tempdir()?;
    let data_dir = a
        .data_dir
        .clone()
        .unwrap_or_else(|| tmp.path().join("data"));
    let mut child = None;
    let addrs = match a.addr.is_empty() {
        false => a.addr.clone(),
        true => {
            let bin = match &a.bin {
                Some(b) => b.clone(),
                None => std::env::current_exe()?
                    .parent()
                    .context("exe dir")?
                    .join("hitvault"),
            };
            let sites = sites.join(",");
            let mut env = vec![
                ("HITVAULT_SITES", sites.as_str()),
                ("HITVAULT_TRUSTED_PROXIES", "127.0.0.1"),
            ];
            if a.tls {
                env.push(("HITVAULT_TLS_MODE", "local-ca"));
            }
            let (c, addr) = start_daemon(&bin, &data_dir, &tmp.path().join("daemon.log"), &env)?;
            child = Some(c);
            vec![addr]
        }
    };
    let pid = child.as_ref().map(|c| c.id());
    let r = drive(&addrs, pid, &a, None)?;
    report("hitvault (stored: 202 after fdatasync)", &r, &a);
    let mut ok = r.shared.ok.load(Ordering::Relaxed);
    if a.tls {
        // The daemon's CA, as a client would download it from /ca.crt.
        let ca = std::fs::read(data_dir.join("tls/ca.crt")).context("the daemon's CA")?;
        let t = drive(&addrs, pid, &a, Some(Tls::new(&ca)?))?;
        println!();
        report(
            "hitvault over TLS (local CA, TLS 1.3, keep-alive; stored: 202 after fdatasync)",
            &t,
            &a,
        );
        println!(
            "TLS share of plain   {:.0}% ({:.0} of {:.0} hits/s)",
            100.0 * t.hits_per_s() / r.hits_per_s().max(1.0),
            t.hits_per_s(),
            r.hits_per_s()
        );
        ok += t.shared.ok.load(Ordering::Relaxed);
    }
    if let Some(ceiling) = bare {
        println!(
            "share of hv-bare     {:.0}% ({:.0} of {ceiling:.0} hits/s)",
            100.0 * r.hits_per_s() / ceiling.max(1.0),
            r.hits_per_s()
        );
    }
    if let Some(c) = child {
        stop_and_count(c, &data_dir, ok, r.peak_during)?;
    }
    Ok(())
}

/// Stops the daemon it started and checks that DuckDB holds every hit
/// answered 202; prints its RSS and the bytes per stored hit.
fn stop_and_count(
    mut c: std::process::Child,
    data_dir: &std::path::Path,
    ok: u64,
    peak_during: u64,
) -> anyhow::Result<()> {
    let hwm = rss_kib(c.id()).map(|r| r.0).unwrap_or(0);
    println!(
        "daemon RSS           peak {:.1} MiB (sampled {:.1} MiB)",
        hwm as f64 / 1024.0,
        peak_during as f64 / 1024.0
    );
    let t = Instant::now();
    // SAFETY: a signal to the child this process started.
    unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
    let status = c.wait()?;
    println!(
        "drain + stop         {:.1} s, exit {status}",
        t.elapsed().as_secs_f64()
    );
    let store = hitvault_store::Store::open_read_only(data_dir)?;
    let rows = store.hit_count()?;
    let bytes = store.disk_bytes();
    println!(
        "rows in DuckDB       {rows} ({})",
        if rows == ok {
            "equals the 202 count"
        } else {
            "DIFFERS from the 202 count"
        }
    );
    println!("database bytes       {bytes}");
    println!(
        "bytes per hit        {:.1}",
        bytes as f64 / rows.max(1) as f64
    );
    if rows != ok {
        bail!("rows in DuckDB ({rows}) != 202 responses ({ok})");
    }
    Ok(())
}
