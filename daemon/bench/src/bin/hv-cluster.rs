//! `hv-cluster`: the cluster's figures, in one run on one machine.
//!
//!     hv-cluster --seconds 10 --connections 48
//!
//! It starts the daemon (the `hitvault` binary next to this program) as a
//! single node, then as three cluster nodes on 127.0.0.1, 127.0.0.2 and
//! 127.0.0.3 (loopback: no root needed), and prints:
//!
//! - ingest hits/s and the 202's latency percentiles, as `hv-load` measures
//!   them, for the single node, for three nodes in `majority` mode (the
//!   connections spread over the nodes) and in `local` mode;
//! - replication lag under that load: the leader's last log index minus each
//!   node's applied index, sampled every 200 ms (entries; one entry is one
//!   node's batch of hits);
//! - failover: the leader is killed (SIGKILL) while clients post to the
//!   other two; the time from the kill to the first 202 for a hit sent after
//!   it;
//! - catch-up: the killed node is started again after missing that load;
//!   the time until it applied what the leader had, the rate, and whether
//!   it came from the log or from a snapshot (with `--snapshot-every` small
//!   enough, the others purge what it missed), with the leader's log and
//!   snapshot sizes.
//!
//! It prints figures and decides nothing.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use hitvault_bench::start_daemon_on;
use hitvault_bench::traffic::site;

#[derive(Parser, Debug)]
struct Args {
    /// Measured seconds of each load run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Keep-alive connections of each load run.
    #[arg(long, default_value_t = 48)]
    connections: usize,
    /// The daemon binary (default: `hitvault` next to this program).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// The nodes' `cluster.snapshot_every` (default: the daemon's). Small,
    /// the killed node misses more log than the others keep and catches
    /// up from a snapshot.
    #[arg(long)]
    snapshot_every: Option<u64>,
}

const SITES: usize = 20;
const CLUSTER_PORT: u16 = 17400;
const HTTP_PORT: u16 = 18080;

fn exe_dir() -> anyhow::Result<PathBuf> {
    Ok(std::env::current_exe()?
        .parent()
        .context("exe dir")?
        .to_path_buf())
}

struct Node {
    id: u64,
    dir: PathBuf,
    config: PathBuf,
    child: Option<Child>,
    http: SocketAddr,
}

impl Node {
    fn start(&mut self, bin: &Path) -> anyhow::Result<()> {
        let cfg = self.config.to_str().context("path")?.to_owned();
        let (c, _) = start_daemon_on(
            bin,
            &self.http.to_string(),
            &self.dir.join("data"),
            &self.dir.join(format!("daemon-{}.log", self.id)),
            &[("HITVAULT_CONFIG", cfg.as_str())],
        )?;
        self.child = Some(c);
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn status(&self, bin: &Path) -> Option<serde_json::Value> {
        let out = Command::new(bin)
            .args(["cluster", "status", "--json", "--data-dir"])
            .arg(self.dir.join("data"))
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    /// This node's own view of itself.
    fn me(&self, bin: &Path) -> Option<serde_json::Value> {
        self.status(bin)
            .map(|s| s["nodes"][self.id.to_string()].clone())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn cluster(root: &Path, ack: &str, snapshot_every: Option<u64>) -> anyhow::Result<Vec<Node>> {
    let key = root.join("cluster.key");
    std::fs::write(&key, "a-cluster-key-of-more-than-32-bytes-for-the-bench\n")?;
    let sites: Vec<String> = (0..SITES).map(|i| format!("\"{}\"", site(i))).collect();
    let mut nodes = Vec::new();
    for id in 1..=3u64 {
        let ip = format!("127.0.0.{id}");
        let peers: String = (1..=3u64)
            .filter(|m| *m != id)
            .map(|m| format!("\"{m}\" = \"127.0.0.{m}:{CLUSTER_PORT}\"\n"))
            .collect();
        let dir = root.join(format!("{ack}-{id}"));
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("hitvault.toml");
        std::fs::write(
            &config,
            format!(
                "sites = [{}]\ntrusted_proxies = [\"127.0.0.0/8\"]\nlog_level = \"warn\"\n\
                 [cluster]\nenable = true\nnode_id = {id}\nbind = \"{ip}:{CLUSTER_PORT}\"\n\
                 key_file = \"{}\"\nack = \"{ack}\"\ninit = true\n{}[cluster.peers]\n{peers}",
                sites.join(", "),
                key.display(),
                snapshot_every.map_or(String::new(), |n| format!("snapshot_every = {n}\n")),
            ),
        )?;
        nodes.push(Node {
            id,
            dir,
            config,
            child: None,
            http: format!("{ip}:{HTTP_PORT}").parse()?,
        });
    }
    Ok(nodes)
}

fn leader(nodes: &[Node], bin: &Path) -> anyhow::Result<usize> {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(30) {
        for (i, n) in nodes.iter().enumerate() {
            if n.child.is_some() && n.me(bin).is_some_and(|m| m["role"] == "leader") {
                return Ok(i);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("no leader within 30 s")
}

/// Waits until every running node takes hits (`in_quorum`).
fn in_quorum(nodes: &[Node], bin: &Path) -> anyhow::Result<()> {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(30) {
        if nodes
            .iter()
            .filter(|n| n.child.is_some())
            .all(|n| n.status(bin).is_some_and(|s| s["in_quorum"] == true))
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("the nodes did not all join the majority within 30 s")
}

/// Runs `hv-load` against `addrs`; prints its report; returns it.
fn load(addrs: &[SocketAddr], a: &Args) -> anyhow::Result<String> {
    let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    let out = Command::new(exe_dir()?.join("hv-load"))
        .args(["--addr", &list.join(",")])
        .args(["--seconds", &a.seconds.to_string()])
        .args(["--connections", &a.connections.to_string()])
        .args(["--sites", &SITES.to_string()])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{text}");
    if !out.status.success() {
        bail!("hv-load failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(text)
}

/// The line of `hv-load`'s report that starts with `key`, without it.
fn line<'a>(report: &'a str, key: &str) -> &'a str {
    report
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map_or("?", str::trim)
}

/// Samples the replication lag every 200 ms until `stop`: the largest and
/// the mean of (leader's last log index - a node's applied index).
fn sample_lag(nodes: &[Node], bin: &Path, stop: &AtomicBool, lead: usize) -> (u64, f64) {
    let (mut max, mut sum, mut n) = (0u64, 0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        if let Some(s) = nodes[lead].status(bin) {
            let last = s["nodes"][nodes[lead].id.to_string()]["last_log_index"]
                .as_u64()
                .unwrap_or(0);
            for node in s["nodes"].as_object().into_iter().flatten().map(|x| x.1) {
                if let Some(applied) = node["applied_index"].as_u64() {
                    let lag = last.saturating_sub(applied);
                    max = max.max(lag);
                    sum += lag;
                    n += 1;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    (max, sum as f64 / n.max(1) as f64)
}

/// One pageview request to `addr`; its status.
fn post(addr: SocketAddr, i: u64) -> Option<u16> {
    use std::io::{Read, Write};
    let body = format!(
        r#"{{"n":"pageview","u":"https://{}/failover/{i}"}}"#,
        site(0)
    );
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(15))).ok()?;
    write!(
        s,
        "POST /api/collect HTTP/1.1\r\nHost: bench\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let bin = match &a.bin {
        Some(b) => b.clone(),
        None => exe_dir()?.join("hitvault"),
    };
    let tmp = tempfile::Builder::new().prefix("hv-cluster").tempdir()?;
    let mut summary: BTreeMap<&str, String> = BTreeMap::new();

    println!("== single node ==");
    let sites: Vec<String> = (0..SITES).map(site).collect();
    let single_dir = tmp.path().join("single");
    std::fs::create_dir_all(&single_dir)?;
    let sites_env = sites.join(",");
    let (mut single, addr) = start_daemon_on(
        &bin,
        "127.0.0.1:0",
        &single_dir.join("data"),
        &single_dir.join("daemon.log"),
        &[
            ("HITVAULT_SITES", sites_env.as_str()),
            ("HITVAULT_TRUSTED_PROXIES", "127.0.0.1"),
        ],
    )?;
    let r = load(&[addr], &a);
    let _ = single.kill();
    let _ = single.wait();
    let r = r?;
    summary.insert(
        "1 single node",
        format!("{}; {}", line(&r, "sustained"), line(&r, "latency")),
    );

    for ack in ["majority", "local"] {
        println!("\n== three nodes, ack = {ack} ==");
        let mut nodes = cluster(tmp.path(), ack, a.snapshot_every)?;
        for n in &mut nodes {
            n.start(&bin)?;
        }
        let lead = leader(&nodes, &bin)?;
        in_quorum(&nodes, &bin)?;
        let stop = AtomicBool::new(false);
        let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.http).collect();
        let (r, lag) = std::thread::scope(|s| {
            let lag = s.spawn(|| sample_lag(&nodes, &bin, &stop, lead));
            let r = load(&addrs, &a);
            stop.store(true, Ordering::Relaxed);
            (r, lag.join().expect("lag sampler"))
        });
        let r = r?;
        println!(
            "replication lag      max {} entries, mean {:.1} (leader's last log - each node's applied, every 200 ms)",
            lag.0, lag.1
        );
        summary.insert(
            if ack == "majority" {
                "2 three nodes, majority"
            } else {
                "3 three nodes, local"
            },
            format!(
                "{}; {}; lag max {} mean {:.1} entries",
                line(&r, "sustained"),
                line(&r, "latency"),
                lag.0,
                lag.1
            ),
        );
        if ack != "majority" {
            continue;
        }

        // Failover: clients post to the two followers; the leader dies.
        println!("\n== failover and catch-up (ack = majority) ==");
        let followers: Vec<SocketAddr> = nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != lead)
            .map(|(_, n)| n.http)
            .collect();
        let done = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::<(Instant, Instant)>::new()));
        let clients: Vec<_> = (0..8)
            .map(|c| {
                let (done, acked, to) = (done.clone(), acked.clone(), followers[c % 2]);
                std::thread::spawn(move || {
                    let mut i = c as u64 * 1_000_000;
                    while !done.load(Ordering::Relaxed) {
                        let sent = Instant::now();
                        i += 1;
                        if post(to, i) == Some(202) {
                            acked.lock().unwrap().push((sent, Instant::now()));
                        } else {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(3));
        let killed = Instant::now();
        nodes[lead].kill();
        std::thread::sleep(Duration::from_secs(8));
        let first = acked
            .lock()
            .unwrap()
            .iter()
            .filter(|(sent, _)| *sent > killed)
            .map(|(_, at)| *at - killed)
            .min();
        match first {
            Some(d) => {
                println!(
                    "failover             first 202 for a hit sent after the kill: {:.2} s after the kill",
                    d.as_secs_f64()
                );
                summary.insert("4 failover", format!("{:.2} s from SIGKILL of the leader to the first 202 of a hit sent after it", d.as_secs_f64()));
            }
            None => println!("failover             no 202 within 8 s of the kill"),
        }
        // Catch-up: the killed node returns after missing that load.
        let missed = acked
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, at)| *at > killed)
            .count();
        done.store(true, Ordering::Relaxed);
        for c in clients {
            let _ = c.join();
        }
        let new_lead = leader(&nodes, &bin)?;
        let target = nodes[new_lead]
            .me(&bin)
            .and_then(|m| m["last_log_index"].as_u64())
            .unwrap_or(0);
        let t = Instant::now();
        nodes[lead].start(&bin)?;
        let back_from = loop {
            if let Some(a) = nodes[lead]
                .me(&bin)
                .and_then(|m| m["applied_index"].as_u64())
            {
                break a;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        loop {
            let applied = nodes[lead]
                .me(&bin)
                .and_then(|m| m["applied_index"].as_u64())
                .unwrap_or(0);
            if applied >= target {
                let s = t.elapsed().as_secs_f64();
                // From the log, or from a snapshot the leader sent (its
                // log no longer held what the node missed).
                let me = nodes[lead].me(&bin).unwrap_or_default();
                let lead_me = nodes[new_lead].me(&bin).unwrap_or_default();
                let how = match me["snapshot_index"].as_u64() {
                    Some(i) if i > back_from => {
                        format!("installed a snapshot at index {i}, then the log")
                    }
                    _ => "from the log".to_owned(),
                };
                let bytes = |n: &Node, p: &str| {
                    std::fs::metadata(n.dir.join("data").join(p)).map_or(0, |m| m.len())
                };
                let snap_bytes: u64 =
                    std::fs::read_dir(nodes[new_lead].dir.join("data/cluster/snapshots"))
                        .into_iter()
                        .flatten()
                        .flatten()
                        .filter(|e| e.file_name().to_string_lossy().ends_with(".hvsnap"))
                        .filter_map(|e| e.metadata().ok())
                        .map(|m| m.len())
                        .sum();
                println!(
                    "catch-up path        {how}; the leader's log purged to {}, raft.log {} bytes, snapshot {} bytes",
                    lead_me["purged_index"]
                        .as_u64()
                        .map_or("none".into(), |i| i.to_string()),
                    bytes(&nodes[new_lead], "cluster/raft.log"),
                    snap_bytes
                );
                summary.insert("6 catch-up path", how);
                println!(
                    "catch-up             {} entries ({missed} hits acknowledged while it was away) in {s:.2} s from its start: {:.0} entries/s, {:.0} hits/s",
                    target.saturating_sub(back_from),
                    target.saturating_sub(back_from) as f64 / s,
                    missed as f64 / s
                );
                summary.insert(
                    "5 catch-up",
                    format!(
                        "{missed} hits ({} entries) in {s:.2} s from start, {:.0} hits/s",
                        target.saturating_sub(back_from),
                        missed as f64 / s
                    ),
                );
                break;
            }
            if t.elapsed() > Duration::from_secs(120) {
                println!("catch-up             not done in 120 s ({applied} of {target})");
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    println!(
        "\n== summary ({} connections, {} s each) ==",
        a.connections, a.seconds
    );
    for (k, v) in &summary {
        println!("{:<28} {v}", &k[2..]);
    }
    Ok(())
}
