//! Shared pieces of the benchmark tools: a deterministic random source and a
//! generator of realistic traffic (sites, paths, referrers, UTMs, user agents,
//! countries, languages, screen sizes, sessions over time).
//!
//! Benchmarks print figures; they never assert timings.

pub mod traffic;

/// SplitMix64: small, fast, deterministic; good enough for synthetic traffic.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n.max(1))) >> 64) as u64
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    /// Zipf-like rank in `0..n` (exponent about 1): rank 0 is the most frequent.
    pub fn zipf(&mut self, n: u64) -> u64 {
        let x = ((n as f64 + 1.0).ln() * self.unit()).exp() - 1.0;
        (x as u64).min(n - 1)
    }
    /// Picks from `(item, weight)` pairs.
    pub fn weighted<T: Copy>(&mut self, items: &[(T, u32)]) -> T {
        let total: u32 = items.iter().map(|i| i.1).sum();
        let mut r = self.below(u64::from(total)) as u32;
        for (t, w) in items {
            if r < *w {
                return *t;
            }
            r -= w;
        }
        items[items.len() - 1].0
    }
}

/// Peak and current resident memory of a process, in KiB, from /proc.
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

/// CPU time (user + system) of every thread of `pid`, summed by thread name,
/// in clock ticks (`/proc/<pid>/task/*/stat`). Threads that ended are not counted.
pub fn cpu_by_thread(pid: u32) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // "tid (comm) state ..." where comm may hold spaces or parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_owned();
        let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        // Fields 14 and 15 of stat(5) (utime, stime) are 11 and 12 after comm.
        let ticks = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        *out.entry(comm).or_insert(0) += ticks;
    }
    out
}

/// CPU time (user + system) `pid` has used so far, ended threads included
/// (`/proc/<pid>/stat`).
pub fn process_cpu(pid: u32) -> Option<std::time::Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(std::time::Duration::from_secs_f64(
        ticks as f64 / clock_ticks() as f64,
    ))
}

/// Starts `bin serve` on 127.0.0.1 (a port of its choosing) with `data_dir`
/// and `env`, its stderr in `log`, and waits until it runs (its `run.json`).
/// Started as root, the daemon switches to `nobody` (unless `HITVAULT_USER`
/// says otherwise) and must reach its data dir as that user: the data dir's
/// parent is made traversable. Returns the child and its address.
pub fn start_daemon(
    bin: &std::path::Path,
    data_dir: &std::path::Path,
    log: &std::path::Path,
    env: &[(&str, &str)],
) -> anyhow::Result<(std::process::Child, std::net::SocketAddr)> {
    start_daemon_on(bin, "127.0.0.1:0", data_dir, log, env)
}

/// [`start_daemon`] on `listen`.
pub fn start_daemon_on(
    bin: &std::path::Path,
    listen: &str,
    data_dir: &std::path::Path,
    log: &std::path::Path,
    env: &[(&str, &str)],
) -> anyhow::Result<(std::process::Child, std::net::SocketAddr)> {
    use anyhow::{Context, bail};
    let mut cmd = std::process::Command::new(bin);
    let root = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self")?) == 0;
    if root && std::env::var_os("HITVAULT_USER").is_none() {
        cmd.env("HITVAULT_USER", "nobody");
        std::fs::set_permissions(
            data_dir.parent().context("the data dir's parent")?,
            std::os::unix::fs::PermissionsExt::from_mode(0o711),
        )?;
    }
    let mut child = cmd
        .args(["serve", "--listen", listen, "--data-dir"])
        .arg(data_dir)
        .envs(env.iter().copied())
        .env("HITVAULT_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .with_context(|| format!("start {}", bin.display()))?;
    let t = std::time::Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(data_dir.join("run.json")) {
            let v: serde_json::Value = serde_json::from_str(&text)?;
            let addr = v["listen"].as_str().context("listen")?.parse()?;
            return Ok((child, addr));
        }
        if let Some(s) = child.try_wait()? {
            bail!("the daemon exited ({s}); see {}", log.display());
        }
        if t.elapsed() > std::time::Duration::from_secs(60) {
            bail!("the daemon did not start; see {}", log.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// CPU time (user + system) this process has used so far.
pub fn own_cpu() -> std::time::Duration {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| {
        std::time::Duration::from_secs(t.tv_sec as u64)
            + std::time::Duration::from_micros(t.tv_usec as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Clock ticks per second for `/proc` CPU times.
pub fn clock_ticks() -> u64 {
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as u64
}

/// Percentile of sorted values (nearest rank).
pub fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1]
}
