//! Three real daemons in three network namespaces, joined by veth pairs and
//! a bridge that this test makes and removes, under continuous load from
//! clients that record every 202. It kills the leader (SIGKILL), restarts
//! it, stops the next leader for 10 s (SIGSTOP), cuts a leader and then a
//! follower off with nftables, and heals; then a follower loses its disk,
//! is removed, and its wiped appliance joins again under a new id (the old
//! one refused) and, the log it needs purged by then (a snapshot every
//! 300 entries), installs a snapshot. Then every node is stopped and
//! its store read: every acknowledged hit is stored exactly once on every
//! node, and all nodes hold the same rows. It prints what it injected and
//! what it found. Accounts go through the log too: a user added on one
//! node and a token made on another admit an API call on the third; a
//! change on a node cut off is refused and never appears; the node that
//! joined late holds the same accounts. A goal made on one node is listed
//! with the same id by every node, and a site added at run time on one
//! node takes hits on every node. Needs root (namespaces, nftables),
//! as CI runs it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hitvault_tests::{
    CHROME_UA, Daemon, StoppedDaemon, hitvault, hitvault_ok, request, require_root,
};

const NODES: u64 = 3;
const HTTP_PORT: u16 = 8080;
const CLUSTER_PORT: u16 = 7400;

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The namespaces, the veths and the bridge; removed on drop.
struct Net {
    tag: String,
    bridge: String,
}

impl Net {
    fn new() -> Net {
        let tag = format!("hv{}", std::process::id() % 100_000);
        let bridge = format!("{tag}br");
        let net = Net { tag, bridge };
        net.cleanup();
        sh(&["ip", "link", "add", &net.bridge, "type", "bridge"]);
        sh(&["ip", "addr", "add", "10.77.0.254/24", "dev", &net.bridge]);
        sh(&["ip", "link", "set", &net.bridge, "up"]);
        for n in 1..=NODES {
            let ns = net.ns(n);
            let host = format!("{}v{n}", net.tag);
            sh(&["ip", "netns", "add", &ns]);
            sh(&[
                "ip", "link", "add", &host, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]);
            sh(&["ip", "link", "set", &host, "master", &net.bridge, "up"]);
            sh(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", ip(n)),
                "dev",
                "eth0",
            ]);
            sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        }
        net
    }

    fn ns(&self, n: u64) -> String {
        format!("{}n{n}", self.tag)
    }

    fn wrapper(&self, n: u64) -> Vec<String> {
        vec!["ip".into(), "netns".into(), "exec".into(), self.ns(n)]
    }

    /// Drops every packet between node `n` and the other nodes (the test's
    /// own address, the bridge's, still reaches it).
    fn cut(&self, n: u64) {
        let others: Vec<String> = (1..=NODES).filter(|m| *m != n).map(ip).collect();
        let set = others.join(", ");
        let rules = format!(
            "table inet hvcut {{\n chain i {{ type filter hook input priority 0; policy accept; ip saddr {{ {set} }} drop; }}\n chain o {{ type filter hook output priority 0; policy accept; ip daddr {{ {set} }} drop; }}\n}}\n"
        );
        let mut c = Command::new("ip")
            .args(["netns", "exec", &self.ns(n), "nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        c.stdin.take().unwrap().write_all(rules.as_bytes()).unwrap();
        assert!(c.wait().unwrap().success(), "nft refused the partition");
    }

    fn heal(&self, n: u64) {
        sh(&[
            "ip",
            "netns",
            "exec",
            &self.ns(n),
            "nft",
            "delete",
            "table",
            "inet",
            "hvcut",
        ]);
    }

    fn cleanup(&self) {
        for n in 1..=NODES {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(n)])
                .output();
            let _ = Command::new("ip")
                .args(["link", "del", &format!("{}v{n}", self.tag)])
                .output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.cleanup();
    }
}

fn ip(n: u64) -> String {
    format!("10.77.0.{n}")
}

fn http(n: u64) -> SocketAddr {
    format!("{}:{HTTP_PORT}", ip(n)).parse().unwrap()
}

/// A snapshot every this many log entries (about a second under the
/// test's load, longer than an install), so the run builds many, purges
/// the log, and node 4 (which joins late) must install one.
const SNAPSHOT_EVERY: u64 = 300;

/// Every node keeps a site's hits this long; the test sends hits older
/// than that and prunes them through the log.
const RETENTION_DAYS: u32 = 365;

/// Hits of `site` older than their period on node `n`, as its own dry run
/// counts them (a dry run changes nothing, so it runs on the node alone).
fn expired(nodes: &[Node], n: u64) -> u64 {
    let out = hitvault_ok(&["prune", "--dry-run", "--data-dir", &data_dir(nodes, n)]);
    out.lines()
        .filter(|l| l.starts_with("shop.test"))
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let at = w.iter().position(|x| *x == "hits")?;
            w.get(at - 1)?.parse::<u64>().ok()
        })
        .sum()
}

/// Writes the configuration of node `id` in namespace `slot`; returns its
/// path. The founding nodes form the cluster (`init`); a node that joins
/// later waits to be added.
fn config(dir: &Path, id: u64, slot: u64, key: &Path, init: bool) -> PathBuf {
    let peers: String = (1..=NODES)
        .filter(|m| *m != slot)
        .map(|m| format!("\"{m}\" = \"{}:{CLUSTER_PORT}\"\n", ip(m)))
        .collect();
    let text = format!(
        "sites = [\"shop.test\"]\nallow_plain_http = true\nhostnames = [\"{ip}\"]\n\
         [tls]\nmode = \"off\"\n[retention]\ndays = {RETENTION_DAYS}\n\
         [cluster]\nenable = true\nnode_id = {id}\nbind = \"{ip}:{CLUSTER_PORT}\"\n\
         key_file = \"{key}\"\ninit = {init}\nsnapshot_every = {SNAPSHOT_EVERY}\n\
         [cluster.peers]\n{peers}",
        ip = ip(slot),
        key = key.display()
    );
    let path = dir.join(format!("node{id}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

struct Node {
    /// The node's id.
    n: u64,
    config: PathBuf,
    daemon: Option<Daemon>,
    stopped: Option<StoppedDaemon>,
}

fn start(net: &Net, n: u64, config: &Path, data: PathBuf) -> Daemon {
    let w = net.wrapper(n);
    let w: Vec<&str> = w.iter().map(String::as_str).collect();
    let cfg = config.to_str().unwrap();
    Daemon::start_in(
        &http(n).to_string(),
        None,
        data,
        &[("HITVAULT_CONFIG", cfg)],
        &w,
    )
}

fn status(data_dir: &Path) -> Option<serde_json::Value> {
    let out = hitvault(&[
        "cluster",
        "status",
        "--json",
        "--data-dir",
        data_dir.to_str().unwrap(),
    ]);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// The leader, as the running nodes in `among` see it (waits up to 30 s).
fn leader(nodes: &[Node], among: &[u64]) -> u64 {
    let t = Instant::now();
    loop {
        for node in nodes.iter().filter(|x| among.contains(&x.n)) {
            if let Some(d) = &node.daemon
                && let Some(s) = status(&d.data_dir)
                && s["nodes"][node.n.to_string()]["role"] == "leader"
            {
                return node.n;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no leader within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Clients posting pageviews with unique paths to every node; each keeps
/// the paths answered 202.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
    refused: Arc<Mutex<BTreeMap<u16, u64>>>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start() -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(BTreeMap::new()));
        let mut workers = Vec::new();
        for n in 1..=NODES {
            for w in 0..2 {
                let (stop, acked, refused) = (stop.clone(), acked.clone(), refused.clone());
                workers.push(std::thread::spawn(move || {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let path = format!("/n{n}w{w}/{i}");
                        i += 1;
                        let body = format!(r#"{{"n":"pageview","u":"https://shop.test{path}"}}"#);
                        match request(
                            http(n),
                            "POST",
                            "/api/collect",
                            &[("User-Agent", CHROME_UA)],
                            body.as_bytes(),
                        ) {
                            Ok(r) if r.status == 202 => acked.lock().unwrap().push(path),
                            Ok(r) => {
                                *refused.lock().unwrap().entry(r.status).or_default() += 1;
                                std::thread::sleep(Duration::from_millis(50));
                            }
                            Err(_) => {
                                *refused.lock().unwrap().entry(0).or_default() += 1;
                                std::thread::sleep(Duration::from_millis(50));
                            }
                        }
                    }
                }));
            }
        }
        Load {
            stop,
            acked,
            refused,
            workers,
        }
    }

    fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    fn finish(self) -> (Vec<String>, BTreeMap<u16, u64>) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            w.join().unwrap();
        }
        let a = self.acked.lock().unwrap().clone();
        let r = self.refused.lock().unwrap().clone();
        (a, r)
    }
}

/// Runs the load for `d`, printing how many hits were acknowledged.
fn under_load(load: &Load, what: &str, d: Duration) {
    let before = load.acked();
    std::thread::sleep(d);
    eprintln!(
        "  {what}: {} hits acknowledged in {:?}",
        load.acked() - before,
        d
    );
}

fn data_dir(nodes: &[Node], n: u64) -> String {
    let d = nodes
        .iter()
        .find(|x| x.n == n)
        .unwrap()
        .daemon
        .as_ref()
        .unwrap();
    d.data_dir.to_str().unwrap().to_owned()
}

/// What `read` gives once it equals `want`, or after 10 s: a change is
/// applied on the node that made it before it answers, and on the others
/// as each applies the log (a few milliseconds later).
fn applied<T: PartialEq>(read: impl Fn() -> T, want: &T) -> T {
    let t = Instant::now();
    loop {
        let got = read();
        if got == *want || t.elapsed() > Duration::from_secs(10) {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A token of user `ops` named `name` with `scopes`, made through the node
/// whose data dir is `dir`; its secret.
fn token(dir: &str, name: &str, scopes: &[&str]) -> String {
    let mut args = vec!["token", "create", "--user", "ops", "--name", name];
    for s in scopes {
        args.extend(["--scope", s]);
    }
    args.extend(["--expires", "1d", "--data-dir", dir]);
    let out = hitvault_ok(&args);
    out.split_whitespace()
        .find(|w| w.starts_with(hitvault_accounts::TOKEN_PREFIX))
        .unwrap_or_else(|| panic!("no token in {out:?}"))
        .to_owned()
}

/// The users as node `n` lists them (names, admin flags).
fn users(nodes: &[Node], n: u64) -> Vec<(String, bool)> {
    let out = hitvault_ok(&["user", "list", "--json", "--data-dir", &data_dir(nodes, n)]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut u: Vec<(String, bool)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["name"].as_str().unwrap().to_owned(), u["admin"] == true))
        .collect();
    u.sort();
    u
}

/// An API call to node `slot` with the token `secret`: its status and
/// body (JSON, or null).
fn api(slot: u64, method: &str, path: &str, secret: &str, body: &str) -> (u16, serde_json::Value) {
    let auth = format!("Bearer {secret}");
    match request(
        http(slot),
        method,
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    ) {
        Ok(r) => (
            r.status,
            serde_json::from_slice(&r.body).unwrap_or_default(),
        ),
        Err(_) => (0, serde_json::Value::Null),
    }
}

/// The status of a stats API call to node `slot` with the token `secret`.
fn api_status(slot: u64, secret: &str) -> u16 {
    api(
        slot,
        "GET",
        "/api/v1/stats/overview?site=shop.test",
        secret,
        "",
    )
    .0
}

/// The sites node `n` lists: (origin, hostname).
fn sites(nodes: &[Node], n: u64) -> Vec<(String, String)> {
    let out = hitvault_ok(&["site", "list", "--json", "--data-dir", &data_dir(nodes, n)]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut s: Vec<(String, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let origin = s["origin"].as_str().unwrap_or_default().to_owned();
            (origin, s["hostname"].as_str().unwrap().to_owned())
        })
        .collect();
    s.sort();
    s
}

/// The goals node `slot` lists for the shop: (id, name).
fn goals(slot: u64, secret: &str) -> Vec<(u64, String)> {
    let (status, v) = api(slot, "GET", "/api/v1/sites/shop.test/goals", secret, "");
    assert_eq!(status, 200, "{v}");
    let list = v.get("goals").unwrap_or(&v);
    let mut g: Vec<(u64, String)> = list
        .as_array()
        .unwrap_or_else(|| panic!("no goals in {v}"))
        .iter()
        .map(|g| {
            let name = g["name"].as_str().unwrap_or_default().to_owned();
            (g["id"].as_u64().unwrap(), name)
        })
        .collect();
    g.sort();
    g
}

/// Waits until every node applied the same log index and stays there.
fn converged(nodes: &[Node]) -> u64 {
    let t = Instant::now();
    let mut last = None;
    loop {
        let applied: BTreeSet<Option<u64>> = nodes
            .iter()
            .map(|x| {
                let d = x.daemon.as_ref().unwrap();
                status(&d.data_dir)
                    .and_then(|s| s["nodes"][x.n.to_string()]["applied_index"].as_u64())
            })
            .collect();
        if applied.len() == 1
            && let Some(Some(i)) = applied.first()
        {
            if last == Some(*i) {
                return *i;
            }
            last = Some(*i);
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "nodes did not converge: applied {applied:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn every_acknowledged_hit_is_stored_once_on_every_node_through_kills_stops_and_partitions() {
    require_root("it makes network namespaces, veth pairs, a bridge and nftables rules");
    let tmp = tempfile::Builder::new()
        .prefix("hv-cluster")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .unwrap();
    let key = tmp.path().join("cluster.key");
    std::fs::write(&key, "a-cluster-key-of-more-than-32-bytes-for-the-test\n").unwrap();
    let net = Net::new();
    let mut nodes: Vec<Node> = (1..=NODES)
        .map(|n| {
            let config = config(tmp.path(), n, n, &key, true);
            let dir = tmp.path().join(format!("n{n}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o711))
                .unwrap();
            let daemon = start(&net, n, &config, dir.join("data"));
            Node {
                n,
                config,
                daemon: Some(daemon),
                stopped: None,
            }
        })
        .collect();
    let all: Vec<u64> = (1..=NODES).collect();
    let t = Instant::now();
    let first = leader(&nodes, &all);
    eprintln!("cluster formed; node {first} leads after {:?}", t.elapsed());
    let load = Load::start();
    under_load(&load, "steady", Duration::from_secs(5));

    // With no admin yet, each founding node prints a set-up link once it
    // follows a leader (the link's invite is itself an accounts change).
    let t = Instant::now();
    while !nodes.iter().all(|x| {
        x.daemon
            .as_ref()
            .unwrap()
            .log_text()
            .contains("no admin yet")
    }) {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "no set-up link printed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Accounts through the log: a user added on one node, a token made for
    // them on another, used on the third.
    let others: Vec<u64> = all.iter().copied().filter(|n| *n != first).collect();
    let out = hitvault_ok(&[
        "user",
        "add",
        "ops",
        "--admin",
        "--data-dir",
        &data_dir(&nodes, others[0]),
    ]);
    assert!(out.contains("ops"), "{out}");
    // The node that made the change answered once it applied it; the
    // others apply it a moment later.
    let t = Instant::now();
    let ops = vec![("ops".to_owned(), true)];
    assert_eq!(applied(|| users(&nodes, others[1]), &ops), ops);
    eprintln!(
        "  user on node {} known on node {} after {:?}",
        others[0],
        others[1],
        t.elapsed()
    );
    let secret = token(
        &data_dir(&nodes, others[1]),
        "dash",
        &["stats:read", "admin"],
    );
    assert_eq!(
        applied(|| api_status(first, &secret), &200),
        200,
        "the token made on node {} is not known on node {first}",
        others[1]
    );
    assert_eq!(api_status(first, "hv_not-a-token"), 401);
    let want_users = vec![("ops".to_owned(), true)];
    for n in &all {
        assert_eq!(
            applied(|| users(&nodes, *n), &want_users),
            want_users,
            "node {n}"
        );
    }
    eprintln!(
        "accounts: user added on node {}, token made on node {}, admitted by node {first}",
        others[0], others[1]
    );

    // Goals through the log: made on one node, listed with the same id by
    // every node; the same name again, on another node, is refused.
    let goal = r#"{"kind":"event","value":"Signup","name":"Signups"}"#;
    let (status, made) = api(
        others[0],
        "POST",
        "/api/v1/sites/shop.test/goals",
        &secret,
        goal,
    );
    assert_eq!(status, 201, "{made}");
    let want_goals = goals(others[0], &secret);
    assert_eq!(
        want_goals,
        vec![(made["id"].as_u64().unwrap(), "Signups".to_owned())]
    );
    for n in &all {
        assert_eq!(
            applied(|| goals(*n, &secret), &want_goals),
            want_goals,
            "node {n}"
        );
    }
    let (status, again) = api(
        first,
        "POST",
        "/api/v1/sites/shop.test/goals",
        &secret,
        goal,
    );
    assert_eq!(status, 409, "{again}");
    eprintln!(
        "definitions: goal {want_goals:?} made on node {}, listed alike by every node",
        others[0]
    );

    // A site added at run time on one node: every node lists it with the
    // same id and takes its hits.
    hitvault_ok(&[
        "site",
        "add",
        "blog.test",
        "--data-dir",
        &data_dir(&nodes, others[1]),
    ]);
    let want_sites = sites(&nodes, others[1]);
    assert!(
        want_sites.iter().any(|s| s.1 == "blog.test"),
        "{want_sites:?}"
    );
    for n in &all {
        let listed = applied(|| sites(&nodes, *n), &want_sites);
        assert_eq!(listed, want_sites, "node {n}");
        let r = request(
            http(*n),
            "POST",
            "/api/collect",
            &[("User-Agent", CHROME_UA)],
            format!(r#"{{"n":"pageview","u":"https://blog.test/from-node-{n}"}}"#).as_bytes(),
        )
        .unwrap();
        assert_eq!(r.status, 202, "node {n} refused a hit for the new site");
    }
    eprintln!(
        "sites: blog.test added on node {}, known to every node",
        others[1]
    );

    // 1. SIGKILL the leader.
    eprintln!("inject: SIGKILL leader {first}");
    let killed = nodes[first as usize - 1].daemon.take().unwrap().kill();
    let t = Instant::now();
    let rest: Vec<u64> = all.iter().copied().filter(|n| *n != first).collect();
    let second = leader(&nodes, &rest);
    eprintln!("  node {second} leads {:?} after the kill", t.elapsed());
    under_load(&load, "two nodes", Duration::from_secs(4));

    // 2. The killed node comes back and catches up.
    eprintln!("inject: restart node {first}");
    {
        let node = &mut nodes[first as usize - 1];
        let w = net.wrapper(first);
        let w: Vec<&str> = w.iter().map(String::as_str).collect();
        let cfg = node.config.to_str().unwrap().to_owned();
        node.daemon = Some(Daemon::restart_in(
            killed,
            &http(first).to_string(),
            &[("HITVAULT_CONFIG", &cfg)],
            &w,
        ));
    }
    under_load(&load, "three nodes again", Duration::from_secs(4));

    // 3. SIGSTOP the leader for 10 s.
    let l = leader(&nodes, &all);
    eprintln!("inject: SIGSTOP leader {l} for 10 s");
    let pid = nodes[l as usize - 1].daemon.as_ref().unwrap().pid();
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    under_load(&load, "leader stopped", Duration::from_secs(10));
    unsafe { libc::kill(pid, libc::SIGCONT) };
    under_load(&load, "leader resumed", Duration::from_secs(4));

    // 4. Cut the leader off from the others for 8 s.
    let l = leader(&nodes, &all);
    eprintln!("inject: partition leader {l} from the majority for 8 s");
    net.cut(l);
    under_load(&load, "leader cut off", Duration::from_secs(8));
    net.heal(l);
    under_load(&load, "healed", Duration::from_secs(4));

    // 5. Cut a follower off for 8 s.
    let l = leader(&nodes, &all);
    let f = all.iter().copied().find(|n| *n != l).unwrap();
    eprintln!("inject: partition follower {f} for 8 s");
    net.cut(f);
    let t = Instant::now();
    // An accounts change on the cut-off node: not confirmed, nothing made.
    let cut_off = hitvault(&["user", "add", "late", "--data-dir", &data_dir(&nodes, f)]);
    let err = String::from_utf8_lossy(&cut_off.stderr).into_owned();
    assert!(
        !cut_off.status.success() && err.contains("did not confirm"),
        "a change on a node cut off: {err}"
    );
    eprintln!(
        "  node {f} refused an accounts change while cut off ({:?})",
        t.elapsed()
    );
    under_load(
        &load,
        "follower cut off",
        Duration::from_secs(8).saturating_sub(t.elapsed()),
    );
    net.heal(f);
    under_load(&load, "healed", Duration::from_secs(4));

    // 6. A follower's disk dies: the node is removed, and its appliance,
    // wiped, comes back under a new id; the log it needs is purged by
    // then, so it installs a snapshot and replays the log after it.
    let l = leader(&nodes, &all);
    let slot = all.iter().copied().find(|n| *n != l).unwrap();
    let old = nodes[slot as usize - 1].n;
    eprintln!("inject: follower {old} loses its disk; removed; its appliance re-added as node 4");
    drop(nodes[slot as usize - 1].daemon.take().unwrap().kill());
    let lead_dir = nodes[l as usize - 1]
        .daemon
        .as_ref()
        .unwrap()
        .data_dir
        .clone();
    let lead_dir = lead_dir.to_str().unwrap();
    hitvault_ok(&[
        "cluster",
        "remove",
        &old.to_string(),
        "--data-dir",
        lead_dir,
    ]);
    let addr = format!("{}:{CLUSTER_PORT}", ip(slot));
    let again = hitvault(&[
        "cluster",
        "add",
        &old.to_string(),
        &addr,
        "--data-dir",
        lead_dir,
    ]);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        !again.status.success() && err.contains("never reused"),
        "a removed id was taken again: {err}"
    );
    let dir = tmp.path().join("n4");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
    let config4 = config(tmp.path(), 4, slot, &key, false);
    let fresh = start(&net, slot, &config4, dir.join("data"));
    let t = Instant::now();
    let added = hitvault(&["cluster", "add", "4", &addr, "--data-dir", lead_dir]);
    if !added.status.success() {
        let tail = |t: String| t.lines().rev().take(40).collect::<Vec<_>>().join("\n");
        panic!(
            "adding node 4 failed: {}\nnode 4's log, last lines first:\n{}\nthe leader's:\n{}",
            String::from_utf8_lossy(&added.stderr),
            tail(fresh.log_text()),
            tail(nodes[l as usize - 1].daemon.as_ref().unwrap().log_text())
        );
    }
    eprintln!("  node 4 caught up and votes after {:?}", t.elapsed());
    nodes[slot as usize - 1] = Node {
        n: 4,
        config: config4,
        daemon: Some(fresh),
        stopped: None,
    };
    under_load(&load, "node 4 in", Duration::from_secs(4));

    // 7. Retention through the log: hits older than the period reach every
    // node; a prune asked of one node deletes them on every node, each
    // archiving them first, while the load goes on.
    let ingest = token(lead_dir, "history", &["ingest"]);
    const OLD: u64 = 40;
    let then = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        - 400 * 86_400_000;
    let batch: String = (0..OLD)
        .map(|i| {
            format!(
                "{{\"name\":\"pageview\",\"url\":\"https://shop.test/old/{i}\",\"user_agent\":\"Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0\",\"ip\":\"192.0.2.9\",\"timestamp\":{}}}\n",
                then + i * 1000
            )
        })
        .collect();
    let r = request(
        http(slot),
        "POST",
        "/api/ingest/batch",
        &[
            ("Authorization", &format!("Bearer {ingest}")),
            ("Content-Type", "application/x-ndjson"),
        ],
        batch.as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let ids: Vec<u64> = nodes.iter().map(|x| x.n).collect();
    for n in &ids {
        assert_eq!(
            applied(|| expired(&nodes, *n), &OLD),
            OLD,
            "node {n}: the old hits"
        );
    }
    let other = ids.iter().copied().find(|n| *n != 4).unwrap();
    eprintln!("inject: {OLD} hits of 400 days ago; `hitvault prune` on node {other}");
    let out = hitvault_ok(&["prune", "--data-dir", &data_dir(&nodes, other)]);
    assert!(out.contains("archived and deleted"), "{out}");
    for n in &ids {
        assert_eq!(
            applied(|| expired(&nodes, *n), &0),
            0,
            "node {n} kept expired hits"
        );
    }
    under_load(&load, "pruned", Duration::from_secs(2));

    let (acked, refused) = load.finish();
    let index = converged(&nodes);
    // Every node, node 4 too (it installed a snapshot), holds the same
    // accounts; the change refused while cut off is nowhere.
    for n in nodes.iter().map(|x| x.n).collect::<Vec<_>>() {
        assert_eq!(users(&nodes, n), want_users, "node {n}");
    }
    assert_eq!(
        api_status(slot, &secret),
        200,
        "node 4 does not know the token"
    );
    assert_eq!(goals(slot, &secret), want_goals, "node 4 lists other goals");
    assert_eq!(sites(&nodes, 4), want_sites, "node 4 lists other sites");
    eprintln!(
        "load stopped: {} acknowledged; refusals by status (0: no answer): {refused:?}; all nodes applied log index {index}",
        acked.len()
    );
    let mut rows = Vec::new();
    let mut site_rows = Vec::new();
    for node in &mut nodes {
        let stopped = node.daemon.take().unwrap().stop();
        // For a look at what each node did: HV_TEST_CLUSTER_LOGS=DIR.
        if let Some(dir) = std::env::var_os("HV_TEST_CLUSTER_LOGS") {
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::copy(
                &stopped.log,
                Path::new(&dir).join(format!("node{}.log", node.n)),
            );
        }
        rows.push(stopped.query("SELECT id, path FROM hits ORDER BY id"));
        // The same site ids everywhere: each hit names the same hostname.
        site_rows.push(stopped.query(
            "SELECT h.id, s.id, s.hostname FROM hits h JOIN sites s ON s.id = h.site_id \
             ORDER BY h.id",
        ));
        node.stopped = Some(stopped);
    }
    // Snapshots were built and the log they cover purged; node 4 joined
    // after the log it needed was gone, so it caught up from one.
    let logs: Vec<(u64, String)> = nodes
        .iter()
        .map(|n| {
            let s = n.stopped.as_ref().unwrap();
            (n.n, std::fs::read_to_string(&s.log).unwrap_or_default())
        })
        .collect();
    for (n, log) in &logs {
        eprintln!(
            "node {n}: built {} snapshots, installed {}, rewrote its log {} times",
            log.matches("built a snapshot").count(),
            log.matches("installed a snapshot's copy").count(),
            log.matches("dropped purged entries").count()
        );
    }
    assert!(
        logs.iter().any(|(_, l)| l.contains("built a snapshot")),
        "no node built a snapshot"
    );
    let (_, log4) = logs.iter().find(|(n, _)| *n == 4).unwrap();
    assert!(
        log4.contains("installed a snapshot's copy"),
        "node 4 caught up without a snapshot"
    );
    // Every node archived the pruned hits itself, under the same name.
    let archives: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            let d = n
                .stopped
                .as_ref()
                .unwrap()
                .data_dir
                .join("archive/shop.test");
            let mut v: Vec<String> = std::fs::read_dir(&d)
                .unwrap_or_else(|e| panic!("node {}: {}: {e}", n.n, d.display()))
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        })
        .collect();
    assert_eq!(archives[0].len(), 1, "{archives:?}");
    assert!(archives.iter().all(|a| *a == archives[0]), "{archives:?}");
    // A node added later makes no first-admin link: the cluster has admins.
    assert!(
        !log4.contains("no admin yet"),
        "node 4 made a set-up link in a cluster that has an admin"
    );
    let want: BTreeSet<&str> = acked.iter().map(String::as_str).collect();
    assert_eq!(want.len(), acked.len(), "a path was acknowledged twice");
    for (i, r) in rows.iter().enumerate() {
        assert!(
            !r.iter().any(|row| row[1].starts_with("/old/")),
            "node {}: pruned hits are still stored",
            i + 1
        );
        let mut seen = BTreeMap::<&str, u32>::new();
        for row in r {
            *seen.entry(row[1].as_str()).or_default() += 1;
        }
        let twice: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).collect();
        assert!(twice.is_empty(), "node {}: stored twice: {twice:?}", i + 1);
        let lost: Vec<_> = want.iter().filter(|p| !seen.contains_key(*p)).collect();
        assert!(
            lost.is_empty(),
            "node {}: {} acknowledged hits lost, e.g. {:?}",
            i + 1,
            lost.len(),
            &lost[..lost.len().min(5)]
        );
        eprintln!(
            "node {}: {} rows; every acknowledged hit once; {} stored without a 202 (refused or cut off, then sent on)",
            i + 1,
            r.len(),
            r.len() - want.len()
        );
    }
    for (i, r) in rows.iter().enumerate().skip(1) {
        assert_eq!(r, &rows[0], "node {} holds other rows than node 1", i + 1);
    }
    for (i, r) in site_rows.iter().enumerate().skip(1) {
        assert_eq!(r, &site_rows[0], "node {} gives hits other sites", i + 1);
    }
    let blog = site_rows[0].iter().filter(|r| r[2] == "blog.test").count();
    assert_eq!(blog, NODES as usize, "the new site's hits, one per node");
    // Ids carry their node: every node took hits, the new one too.
    let origins: BTreeSet<u64> = rows[0]
        .iter()
        .map(|r| r[0].parse::<u64>().unwrap() >> 48)
        .collect();
    assert_eq!(origins, BTreeSet::from([1, 2, 3, 4]));
}

#[test]
fn sandbox_check_of_a_cluster_node_allows_its_peers_ports_and_refuses_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("node.toml");
    std::fs::write(
        &config,
        "[cluster]\nenable = true\nnode_id = 1\nbind = \"127.0.0.1:17431\"\n\
         key_file = \"/nonexistent/key\"\n[cluster.peers]\n\"2\" = \"127.0.0.2:17432\"\n",
    )
    .unwrap();
    let data = tmp.path().join("data");
    let mut cmd = Command::new(hitvault_tests::binary());
    cmd.args([
        "--config",
        config.to_str().unwrap(),
        "sandbox",
        "check",
        "--data-dir",
    ])
    .arg(&data);
    if let Some(u) = hitvault_tests::test_user() {
        cmd.env("HITVAULT_USER", u);
    }
    let out = cmd.output().unwrap();
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    eprintln!("{report}");
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(!report.contains("FAIL"), "{report}");
    for probe in [
        // The peer's port: TCP sockets and connect (seccomp's cluster
        // section, Landlock's rule).
        "ok   connect to TCP port 17432 (configured peer)",
        // Any other port, and UDP, still refused.
        "(not a configured peer): must be blocked",
        "ok   send a UDP datagram",
    ] {
        assert!(report.contains(probe), "missing {probe:?} in:\n{report}");
    }
    let shown = hitvault(&[
        "--config",
        config.to_str().unwrap(),
        "sandbox",
        "show",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("connect to TCP ports 17432")
            && shown.contains("bind TCP ports 8080, 17431"),
        "{shown}"
    );
}

#[test]
fn a_node_with_accounts_made_alone_does_not_start_as_a_cluster_node_and_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .unwrap();
    let data = tmp.path().join("data");
    let data_s = data.to_str().unwrap();
    // A user made while the appliance stood alone (no daemon: the CLI
    // writes the journal).
    hitvault_ok(&["user", "add", "alone", "--data-dir", data_s]);
    let key = tmp.path().join("cluster.key");
    std::fs::write(&key, "a-cluster-key-of-more-than-32-bytes-for-the-test\n").unwrap();
    let config = tmp.path().join("node.toml");
    let port = hitvault_tests::free_port();
    std::fs::write(
        &config,
        format!(
            "[cluster]\nenable = true\nnode_id = 1\nbind = \"127.0.0.1:{port}\"\n\
             key_file = \"{}\"\ninit = true\n",
            key.display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(hitvault_tests::binary());
    cmd.args([
        "--config",
        config.to_str().unwrap(),
        "serve",
        "--listen",
        "127.0.0.1:0",
    ])
    .args(["--data-dir", data_s]);
    if let Some(u) = hitvault_tests::test_user() {
        cmd.env("HITVAULT_USER", u);
    }
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it started: {err}");
    assert!(
        err.contains("holds accounts made before this node was a cluster node")
            && err.contains(&format!("{}/accounts", data.display())),
        "{err}"
    );
    // Nothing was changed: the user is still there, alone.
    let mut cmd = Command::new(hitvault_tests::binary());
    let listed = cmd
        .args(["user", "list", "--json", "--data-dir", data_s])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&listed.stdout).contains("\"alone\""));
}

#[test]
fn a_cluster_node_refuses_imports_and_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("cluster.key");
    std::fs::write(&key, "a-cluster-key-of-more-than-32-bytes-for-the-test\n").unwrap();
    let config = tmp.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[cluster]\nenable = true\nnode_id = 1\nbind = \"127.0.0.1:{}\"\nkey_file = \"{}\"\n",
            hitvault_tests::free_port(),
            key.display()
        ),
    )
    .unwrap();
    let data = tmp.path().join("data");
    let cfg = config.to_str().unwrap();
    let fixture = hitvault_tests::plausible_fixture();
    for args in [
        vec!["import", tmp.path().to_str().unwrap()],
        vec![
            "import-plausible",
            "--site",
            "shop.test",
            fixture.to_str().unwrap(),
        ],
    ] {
        let mut full = vec!["--config", cfg];
        full.extend(args.iter().copied());
        full.extend(["--data-dir", data.to_str().unwrap()]);
        let out = hitvault(&full);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was taken: {err}");
        assert!(
            err.contains("a cluster node takes no imports yet")
                && err.contains("nothing was imported"),
            "{args:?}: {err}"
        );
    }
    // Nothing was written: no store was even made.
    assert!(!data.join("hitvault.duckdb").exists());
}
