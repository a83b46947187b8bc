//! A cluster node's wiring: the cluster crate's parts joined to this
//! daemon's queue, writer and ingest.
//!
//! - Before confinement, [`prepare`] binds the cluster RPC on `cluster.bind`
//!   and reads the key file.
//! - Confined, the Raft log opens in `<data dir>/cluster/`, the state machine
//!   from the state the store holds ([`WriterApply`]: each applied stretch of
//!   the log goes to the writer thread as a [`Replicated`], stored in one
//!   transaction with the machine's state).
//! - On the runtime, [`start`] starts Raft, serves the RPC, forms the cluster
//!   on a first start with `cluster.init`, and starts the forwarder, which
//!   reads this node's queue in place of the writer.
//! - Ingest asks the [`Gate`] before it queues a hit (in `majority` mode a
//!   node cut off from the majority refuses with 503) and before it answers
//!   202 (in `majority` mode, once a majority holds the hit).
//! - The accounts propose every change through the [`Gate`] (a
//!   [`Replicator`]) and the state machine applies each on every node's
//!   accounts ([`WriterApply`]'s `accounts`), so users, sessions, tokens,
//!   roles and share links are the same on every node.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use hitvault_accounts::{Accounts, Replicator};
use hitvault_cluster::log::LogStore;
use hitvault_cluster::machine::{Apply, Batch, StateMachine};
use hitvault_cluster::net::{self, Contact};
use hitvault_cluster::wire::Key;
use hitvault_cluster::{Acks, BasicNode, Command, Forwarder, Node};
use hitvault_queue::Queue;
use hitvault_server::ingest::Replication;

use hitvault_store::Store;
use hitvault_store::goals::{DefError, GoalKind, Made, Step};

use super::writer::{Replicated, Unavailable, Writer};
use crate::config::{Ack, ClusterConfig, Config};
use crate::exit::Failure;
use crate::retention;

/// The Raft log's directory in the data dir.
pub const CLUSTER_DIR: &str = "cluster";

/// The snapshots' directory in [`CLUSTER_DIR`].
pub const SNAPSHOTS_DIR: &str = "snapshots";

/// How many applied stretches of the log may wait for the writer.
pub const APPLY_DEPTH: usize = 8;

/// How long `majority`-mode ingest waits for a majority before it answers
/// 503 (the hits stay queued and are proposed again).
pub const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// What [`prepare`] got before confinement.
pub struct Prepared {
    pub cfg: ClusterConfig,
    listener: std::net::TcpListener,
    key: Arc<Key>,
}

/// Binds the cluster RPC and reads the key (before confinement).
pub fn prepare(cfg: &Config) -> Result<Option<Prepared>, Failure> {
    let Some(c) = &cfg.cluster else {
        return Ok(None);
    };
    let key = Key::read(&c.key_file)
        .map_err(|e| Failure::startup(format!("invalid setting `cluster.key_file`: {e}")))?;
    let listener = std::net::TcpListener::bind(c.bind).map_err(|e| {
        Failure::startup(format!(
            "invalid setting `cluster.bind`: cannot bind {}: {e}",
            c.bind
        ))
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Failure::startup(format!("cluster listener: {e}")))?;
    Ok(Some(Prepared {
        cfg: c.clone(),
        listener,
        key: Arc::new(key),
    }))
}

/// The state machine's way to the writer thread, and to the accounts.
pub struct WriterApply {
    tx: Mutex<SyncSender<Replicated>>,
    /// The state the store held at start.
    initial: Option<Vec<u8>>,
    accounts: Arc<Accounts>,
    /// For definitions changes, applied at once (between the log's batches).
    writer: Writer,
    /// Ingest's registry of sites, which a site added through the log joins.
    sites: Arc<std::sync::RwLock<Arc<hitvault_core::sites::Sites>>>,
    /// `<data dir>/tmp/`: the store's copy while a snapshot is built or
    /// installed.
    tmp: std::path::PathBuf,
    /// The last retention pass's report (the [`Gate`]'s).
    passes: Passes,
}

/// The last retention pass applied here: its time (which names it) and
/// what it archived and deleted on this node.
pub type Passes = Arc<Mutex<Option<(i64, retention::Report)>>>;

/// How long `hitvault prune` waits for its pass to be applied here.
pub const PRUNE_TIMEOUT: Duration = retention::PASS_TIMEOUT;

/// A snapshot file's first bytes; then the accounts' length (u64,
/// little-endian), the accounts as whole records (JSON lines), and the
/// store's copy (a DuckDB file) to the end.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"HVSNAP1\n";

impl WriterApply {
    pub fn new(
        tx: SyncSender<Replicated>,
        initial: Option<Vec<u8>>,
        accounts: Arc<Accounts>,
        writer: Writer,
        sites: Arc<std::sync::RwLock<Arc<hitvault_core::sites::Sites>>>,
        tmp: std::path::PathBuf,
        passes: Passes,
    ) -> WriterApply {
        WriterApply {
            tx: Mutex::new(tx),
            initial,
            accounts,
            writer,
            sites,
            tmp,
            passes,
        }
    }

    /// Hands `r` to the writer thread, after everything handed over before.
    fn hand_over(&self, r: Replicated) -> Result<(), String> {
        self.tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(r)
            .map_err(|_| "the writer has stopped".to_owned())
    }

    /// Hands over what `make` builds around a reply channel, and waits for
    /// the writer's answer.
    fn in_order<T>(
        &self,
        make: impl FnOnce(std::sync::mpsc::SyncSender<Result<T, String>>) -> Replicated,
    ) -> Result<Result<T, String>, String> {
        let (done, answer) = std::sync::mpsc::sync_channel(1);
        self.hand_over(make(done))?;
        answer
            .recv()
            .map_err(|_| "the writer has stopped".to_owned())
    }

    /// `f` on the writer thread, waiting through its long turns (the log
    /// waits for them).
    fn on_writer<T: Send + 'static>(
        &self,
        f: impl Fn(&mut Store) -> Result<T, String> + Send + Clone + 'static,
    ) -> Result<T, String> {
        loop {
            let g = f.clone();
            match self.writer.call(move |s, _| g(s)) {
                Ok(r) => return r,
                Err(Unavailable::Busy) => continue,
                Err(Unavailable::Closed) => return Err("the store is closed".into()),
            }
        }
    }

    /// A file in `<data dir>/tmp/` no one else uses.
    fn tmp_file(&self, what: &str) -> std::path::PathBuf {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.tmp.join(format!("cluster-{what}-{n}.duckdb"))
    }
}

/// Copies `r` to `w` through a buffer, with `read` and `write` only:
/// `std::io::copy` between files asks the kernel (`copy_file_range`),
/// which the seccomp policy does not allow.
fn copy_plain(r: &mut impl std::io::Read, w: &mut impl std::io::Write) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(k) => {
                w.write_all(&buf[..k])?;
                n += k as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Removes a file when dropped.
struct Scratch(std::path::PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let mut wal = self.0.as_os_str().to_owned();
        wal.push(".wal");
        let _ = std::fs::remove_file(wal);
    }
}

impl Apply for WriterApply {
    fn store(&self, batch: Batch) -> Result<(), String> {
        // Queued for the writer, at most APPLY_DEPTH batches ahead (then
        // this waits: the store's pace holds the log back).
        self.hand_over(Replicated::Batch(batch))
    }

    fn load(&self) -> Result<Option<Vec<u8>>, String> {
        Ok(self.initial.clone())
    }

    fn accounts(&self, index: u64, record: &[u8]) -> Result<Option<String>, String> {
        self.accounts
            .apply_logged(index, record)
            .map_err(|e| format!("applying an accounts change: {e}"))
    }

    fn retention(&self, index: u64, prune: &[u8]) -> Result<(), String> {
        let pass: retention::Pass = serde_json::from_slice(prune)
            .map_err(|e| format!("the retention pass at log index {index} is unreadable: {e}"))?;
        let report = self
            .in_order(|done| Replicated::Retention {
                pass: pass.clone(),
                done,
            })?
            .map_err(|e| format!("the retention pass at log index {index}: {e}"))?;
        *self.passes.lock().unwrap_or_else(|p| p.into_inner()) = Some((pass.now_us, report));
        Ok(())
    }

    fn snapshot(&self, file: &std::path::Path) -> Result<Vec<u8>, String> {
        use std::io::Write;
        // The store first, from a reader while the writer goes on; then
        // the accounts, which then cover at least as much of the log.
        let db = Scratch(self.tmp_file("snapshot"));
        let _ = std::fs::remove_file(&db.0);
        let reader = self.on_writer(|s| s.reader().map_err(|e| e.to_string()))?;
        let info = reader
            .snapshot(&db.0)
            .map_err(|e| format!("copying the store: {e}"))?;
        drop(reader);
        let state = info
            .cluster_state
            .ok_or("the store holds no cluster state yet")?;
        let accounts = self.accounts.snapshot_records();
        let write = || -> std::io::Result<()> {
            let mut out = std::io::BufWriter::new(std::fs::File::create_new(file)?);
            out.write_all(SNAPSHOT_MAGIC)?;
            out.write_all(&(accounts.len() as u64).to_le_bytes())?;
            out.write_all(&accounts)?;
            copy_plain(&mut std::fs::File::open(&db.0)?, &mut out)?;
            out.into_inner().map_err(|e| e.into_error())?.sync_all()
        };
        write().map_err(|e| format!("writing the snapshot {}: {e}", file.display()))?;
        tracing::info!(
            hits = info.hits,
            sites = info.sites,
            accounts_bytes = accounts.len(),
            "copied the store and the accounts for a snapshot"
        );
        Ok(state)
    }

    fn install(&self, file: &std::path::Path) -> Result<Vec<u8>, String> {
        use std::io::Read;
        let db = Scratch(self.tmp_file("install"));
        let _ = std::fs::remove_file(&db.0);
        let read = || -> std::io::Result<Vec<u8>> {
            let mut f = std::io::BufReader::new(std::fs::File::open(file)?);
            let mut head = [0u8; 16];
            f.read_exact(&mut head)?;
            if &head[..8] != SNAPSHOT_MAGIC {
                return Err(std::io::Error::other("not a hitvault cluster snapshot"));
            }
            let len = u64::from_le_bytes(head[8..].try_into().expect("8 bytes"));
            let mut accounts = Vec::new();
            (&mut f).take(len).read_to_end(&mut accounts)?;
            if accounts.len() as u64 != len {
                return Err(std::io::Error::other(
                    "the snapshot ends inside its accounts",
                ));
            }
            let mut out = std::fs::File::create_new(&db.0)?;
            copy_plain(&mut f, &mut out)?;
            Ok(accounts)
        };
        let accounts =
            read().map_err(|e| format!("reading the snapshot {}: {e}", file.display()))?;
        // The store, after every batch handed over before it.
        let state = self
            .in_order(|done| Replicated::Install {
                file: db.0.clone(),
                done,
            })?
            .map_err(|e| format!("installing the store's copy: {e}"))?;
        let replaced = self
            .accounts
            .install_records(&accounts)
            .map_err(|e| format!("installing the accounts: {e}"))?;
        // Ingest learns the copy's sites.
        let rows = self.on_writer(|s| s.sites().map_err(|e| e.to_string()))?;
        crate::sites::add_runtime(&self.sites, rows);
        tracing::info!(accounts_replaced = replaced, "installed a snapshot");
        Ok(state)
    }

    fn definitions(&self, index: u64, change: &[u8]) -> Result<Option<String>, String> {
        let change: DefChange = match serde_json::from_slice(change) {
            Ok(c) => c,
            Err(e) => return Ok(Some(format!("the change is unreadable: {e}"))),
        };
        let site = matches!(change, DefChange::AddSite { .. });
        let (r, rows) = self.on_writer(move |s| {
            let mut applied = || {
                let r = s.cluster_def_change(index, |s| change.apply(s))?;
                // A new site: ingest's registry learns it here.
                let rows = match (&r, site) {
                    (Some(Ok(())), true) => Some(s.sites()?),
                    _ => None,
                };
                Ok::<_, hitvault_store::QueryError>((r, rows))
            };
            applied().map_err(|e| format!("applying a definitions change: {e}"))
        })?;
        if let Some(rows) = rows {
            crate::sites::add_runtime(&self.sites, rows);
        }
        Ok(match r {
            None | Some(Ok(())) => None,
            Some(Err(e)) => Some(e.to_string()),
        })
    }
}

/// How long an accounts change may wait for the cluster to order and
/// apply it.
pub const PROPOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Ingest's and the accounts' view of the cluster (see the module doc).
pub struct Gate {
    ack: Ack,
    /// The configured peers: a node may be added on their ports only
    /// (Landlock lets this node connect to those ports and no others).
    peers: BTreeMap<u64, std::net::SocketAddr>,
    node: OnceLock<(Node, tokio::runtime::Handle)>,
    passes: Passes,
}

impl Gate {
    pub fn new(cfg: &ClusterConfig) -> Gate {
        Gate {
            ack: cfg.ack,
            peers: cfg.peers.clone(),
            node: OnceLock::new(),
            passes: Passes::default(),
        }
    }

    /// Where the state machine leaves each retention pass's report.
    pub fn passes(&self) -> Passes {
        self.passes.clone()
    }

    /// A retention pass of `policy` now, through the log: every node
    /// archives and deletes the same hits. This node's report, once it
    /// applied it.
    pub fn prune(&self, policy: &retention::Policy) -> Result<retention::Report, String> {
        let pass = retention::Pass::of(policy, retention::now_us());
        let at = pass.now_us;
        match self.propose_within(|origin| pass_command(&pass, origin), PRUNE_TIMEOUT) {
            Ok(None) => {}
            Ok(Some(reason)) => return Err(reason),
            Err(e) => return Err(format!("the cluster did not confirm the pass: {e}")),
        }
        match &*self.passes.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((t, r)) if *t == at => Ok(r.clone()),
            _ => Err("the pass was applied, but a later one replaced its report".into()),
        }
    }

    fn node(&self) -> Option<&Node> {
        self.node.get().map(|n| &n.0)
    }
}

impl Gate {
    /// Proposes the command `make` builds (given this node's id) on the
    /// runtime and waits, on the caller's (blocking) thread, until this
    /// node applied it: see [`Node::propose`].
    pub fn propose_blocking(
        &self,
        make: impl FnOnce(u64) -> Command,
    ) -> Result<Option<String>, String> {
        self.propose_within(make, PROPOSE_TIMEOUT)
    }

    /// [`Gate::propose_blocking`], waiting at most `ttl`.
    fn propose_within(
        &self,
        make: impl FnOnce(u64) -> Command,
        ttl: Duration,
    ) -> Result<Option<String>, String> {
        let Some((n, rt)) = self.node.get() else {
            return Err("this cluster node is starting".into());
        };
        let cmd = make(n.id);
        let (tx, rx) = std::sync::mpsc::channel();
        let n = n.clone();
        rt.spawn(async move {
            let _ = tx.send(n.propose(cmd, ttl).await);
        });
        rx.recv_timeout(ttl + Duration::from_secs(1))
            .unwrap_or_else(|_| Err("no answer in time".into()))
    }
}

/// The accounts' changes go through the log.
impl Replicator for Gate {
    fn propose(&self, record: &[u8]) -> Result<Option<String>, String> {
        self.propose_blocking(|origin| Command::Accounts {
            origin,
            record: record.to_vec(),
        })
    }
}

impl Replication for Gate {
    fn admit(&self) -> Result<(), String> {
        let Some(n) = self.node() else {
            return Err("this cluster node is starting".into());
        };
        if self.ack == Ack::Majority && !n.in_quorum() {
            return Err(format!(
                "this cluster node is cut off from the majority (no leader heard from within {} \
                 ms); send the hit to another node or retry",
                hitvault_cluster::ELECTION_TIMEOUT_MAX.as_millis()
            ));
        }
        Ok(())
    }

    fn acked(&self, seq: u64) -> Pin<Box<dyn Future<Output = bool> + Send + '_>> {
        Box::pin(async move {
            match (self.ack, self.node()) {
                (Ack::Local, _) => true,
                (Ack::Majority, Some(n)) => n.acks.wait(seq, ACK_TIMEOUT).await,
                (Ack::Majority, None) => false,
            }
        })
    }

    fn timeout(&self) -> Duration {
        ACK_TIMEOUT
    }
}

/// A change to the goal and funnel definitions, as the log holds it: whole,
/// with its creation time decided by the node that proposed it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DefChange {
    AddGoal {
        site_id: u16,
        /// The step's kind (`event`, `page`) and value.
        step: (String, String),
        name: String,
        at_ms: i64,
    },
    DeleteGoal {
        site_id: u16,
        id: u32,
    },
    AddFunnel {
        site_id: u16,
        name: String,
        steps: Vec<(String, String)>,
        at_ms: i64,
    },
    DeleteFunnel {
        site_id: u16,
        id: u32,
    },
    /// A site added at run time (its hostname and aliases normalised).
    AddSite {
        hostname: String,
        aliases: Vec<String>,
        at_ms: i64,
    },
}

fn step_of((kind, value): &(String, String)) -> Result<Step, DefError> {
    let kind =
        GoalKind::parse(kind).ok_or_else(|| DefError::Invalid(format!("no step kind {kind:?}")))?;
    Ok(Step {
        kind,
        value: value.clone(),
    })
}

/// A step as [`DefChange`] holds it.
pub fn step_pair(s: &Step) -> (String, String) {
    (s.kind.name().to_owned(), s.value.clone())
}

impl DefChange {
    /// Makes the change in `s` (inside the caller's transaction).
    pub fn apply(&self, s: &mut Store) -> Result<(), DefError> {
        match self {
            DefChange::AddGoal {
                site_id,
                step,
                name,
                at_ms,
            } => {
                let g = s.add_goal(*site_id, step_of(step)?, name)?;
                s.set_created(Made::Goal, g.id, *at_ms)?;
            }
            DefChange::DeleteGoal { site_id, id } => {
                if !s.delete_goal(*site_id, *id)? {
                    return Err(DefError::Invalid(format!(
                        "site {site_id} has no goal {id}"
                    )));
                }
            }
            DefChange::AddFunnel {
                site_id,
                name,
                steps,
                at_ms,
            } => {
                let steps = steps.iter().map(step_of).collect::<Result<Vec<_>, _>>()?;
                let f = s.add_funnel(*site_id, name, steps)?;
                s.set_created(Made::Funnel, f.id, *at_ms)?;
            }
            DefChange::DeleteFunnel { site_id, id } => {
                if !s.delete_funnel(*site_id, *id)? {
                    return Err(DefError::Invalid(format!(
                        "site {site_id} has no funnel {id}"
                    )));
                }
            }
            DefChange::AddSite {
                hostname,
                aliases,
                at_ms,
            } => {
                let row = s
                    .upsert_site(hostname, aliases, "runtime")
                    .map_err(|e| match e {
                        hitvault_store::QueryError::SiteExists(h) => {
                            DefError::Exists(format!("site {h:?}"))
                        }
                        e @ hitvault_store::QueryError::TooManySites(_) => {
                            DefError::Invalid(e.to_string())
                        }
                        other => DefError::Query(other),
                    })?;
                s.set_created(Made::Site, u32::from(row.id), *at_ms)?;
            }
        }
        Ok(())
    }
}

/// Everything [`start`] needs, gathered while the daemon is wired.
pub struct Parts {
    pub prepared: Prepared,
    pub log: LogStore,
    pub apply: WriterApply,
    pub queue: Queue,
    pub gate: Arc<Gate>,
    /// Stops the forwarder.
    pub stop: Arc<AtomicBool>,
    /// The accounts, whose changes go through the log from now on.
    pub accounts: Arc<Accounts>,
    /// What the first admin's set-up link is made from.
    pub setup: (Config, std::net::SocketAddr),
    /// Retention periods: the leader proposes a pass at start and daily.
    pub retention: retention::Policy,
}

/// Starts this node: Raft, the RPC server, the cluster's formation on a
/// first start with `cluster.init`, and the forwarder.
pub async fn start(p: Parts) -> Result<Node, Failure> {
    let Parts {
        prepared,
        log,
        apply,
        queue,
        gate,
        stop,
        accounts,
        setup,
        retention,
    } = p;
    let Prepared { cfg, listener, key } = prepared;
    let me = cfg.node_id;
    let snapshots_dir = setup.0.data_dir.join(CLUSTER_DIR).join(SNAPSHOTS_DIR);
    let sm = StateMachine::open(me, Arc::new(apply), &snapshots_dir)
        .map_err(|e| Failure::startup(format!("the cluster's state: {e}")))?;
    let state = sm.shared();
    let own = state
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .origins
        .get(&me)
        .copied()
        .unwrap_or(0);
    let raft = hitvault_cluster::start(me, log, sm, key.clone(), cfg.snapshots())
        .await
        .map_err(|e| Failure::startup(format!("starting the cluster node: {e}")))?;
    let acks = Acks::new(own);
    let contact = Contact::default();
    let node = Node {
        id: me,
        raft: raft.clone(),
        state: state.clone(),
        acks: acks.clone(),
        contact: contact.clone(),
        key: key.clone(),
    };
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|e| Failure::startup(format!("cluster listener: {e}")))?;
    let status = {
        let n = node.clone();
        Arc::new(move || n.status())
    };
    tokio::spawn(net::serve(
        listener,
        raft.clone(),
        key.clone(),
        contact,
        status,
    ));
    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| Failure::startup(format!("the cluster node: {e}")))?;
    if cfg.init && !initialized {
        let members: BTreeMap<u64, BasicNode> = std::iter::once((me, cfg.bind))
            .chain(cfg.peers.iter().map(|(id, a)| (*id, *a)))
            .map(|(id, a)| (id, BasicNode::new(a.to_string())))
            .collect();
        match hitvault_cluster::form(&raft, members).await {
            Ok(true) => tracing::info!(node = me, "formed the cluster"),
            Ok(false) => tracing::info!(node = me, "the cluster was formed by another node"),
            Err(e) => return Err(Failure::startup(format!("forming the cluster: {e}"))),
        }
    } else if !initialized {
        tracing::info!(
            node = me,
            "not a member yet: waiting to be added (`hitvault cluster add {me} {}` on the leader)",
            cfg.bind
        );
    }
    tokio::spawn(hitvault_cluster::elections(node.clone()));
    tokio::spawn(retention_passes(node.clone(), retention));
    tokio::spawn(hitvault_cluster::report(raft.clone()));
    tokio::spawn(Forwarder::new(me, raft, queue, acks, key, stop).run(own));
    let _ = gate
        .node
        .set((node.clone(), tokio::runtime::Handle::current()));
    accounts.replicate_through(gate.clone());
    // The first admin's set-up link, once this node follows a leader (it
    // is an accounts change, made through the log). Only a founding node
    // makes one: a node added later has not yet applied the log when it
    // hears its leader, so it cannot tell whether the cluster has an admin
    // (`hitvault user add NAME --admin` works on any node).
    let raft = node.raft.clone();
    let founding = cfg.init;
    tokio::spawn(async move {
        if !founding {
            return;
        }
        let joined = raft
            .wait(None)
            .metrics(|m| m.current_leader.is_some(), "a leader")
            .await;
        if joined.is_err() {
            return;
        }
        let (cfg, local) = setup;
        let made =
            tokio::task::spawn_blocking(move || super::announce_setup_link(&cfg, local, &accounts))
                .await;
        if let Ok(Err(e)) = made {
            tracing::warn!(error = %e.message, "no set-up link made; run `hitvault user add NAME --admin`");
        }
    });
    tracing::info!(node = me, bind = %cfg.bind, own, "cluster node started");
    Ok(node)
}

/// `pass` as the log holds it, proposed by node `origin`.
fn pass_command(pass: &retention::Pass, origin: u64) -> Command {
    let prune = serde_json::to_vec(pass).expect("a pass serialises");
    Command::Retention { origin, prune }
}

/// The cluster's scheduled retention: whichever node leads proposes a pass
/// of its periods once it leads and then every [`retention::INTERVAL`];
/// every node applies it at the same point of the log.
async fn retention_passes(node: Node, policy: retention::Policy) {
    if !policy.is_active() {
        return;
    }
    let me = node.id;
    loop {
        let leading = node
            .raft
            .wait(None)
            .metrics(|m| m.current_leader == Some(me), "leading")
            .await;
        if leading.is_err() {
            return;
        }
        let pass = retention::Pass::of(&policy, retention::now_us());
        let pause = match node.propose(pass_command(&pass, me), PRUNE_TIMEOUT).await {
            Ok(_) => retention::INTERVAL,
            Err(e) => {
                tracing::warn!(error = %e, "the cluster did not confirm a retention pass; next try in a minute");
                Duration::from_secs(60)
            }
        };
        tokio::time::sleep(pause).await;
    }
}

impl hitvault_server::cluster::ClusterAdmin for Gate {
    fn status(&self) -> hitvault_server::cluster::Boxed<'_, serde_json::Value> {
        Box::pin(async move {
            let Some(n) = self.node() else {
                return serde_json::json!({ "enabled": true, "starting": true });
            };
            let nodes: BTreeMap<String, serde_json::Value> = n
                .statuses()
                .await
                .into_iter()
                .map(|(id, r)| {
                    let v = match r {
                        Ok(s) => serde_json::to_value(s).unwrap_or_default(),
                        Err(e) => serde_json::json!({ "node": id, "error": e }),
                    };
                    (id.to_string(), v)
                })
                .collect();
            serde_json::json!({
                "enabled": true,
                "node": n.id,
                "ack": self.ack,
                "in_quorum": n.in_quorum(),
                "nodes": nodes,
            })
        })
    }

    fn add(
        &self,
        id: u64,
        addr: String,
    ) -> hitvault_server::cluster::Boxed<'_, Result<serde_json::Value, String>> {
        Box::pin(async move {
            let n = self.node().ok_or("this cluster node is starting")?;
            // Landlock lets this node connect to its peers' ports only.
            let ports: std::collections::BTreeSet<u16> =
                self.peers.values().map(|a| a.port()).collect();
            let port = addr
                .parse::<std::net::SocketAddr>()
                .map_err(|_| format!("{addr:?} is not host:port with a numeric IP"))?
                .port();
            if !ports.contains(&port) {
                return Err(format!(
                    "this node may connect to the ports of its `cluster.peers` only ({ports:?}), \
                     not {port}: list node {id} there on every node first (a restart each)"
                ));
            }
            // On a task of its own: if the caller stops waiting (the CLI
            // gives up after a while), the node still becomes a voter once
            // it caught up.
            let n = n.clone();
            let s = tokio::spawn(async move { n.add(id, addr).await })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            Ok(serde_json::to_value(s).unwrap_or_default())
        })
    }

    fn remove(
        &self,
        id: u64,
    ) -> hitvault_server::cluster::Boxed<'_, Result<serde_json::Value, String>> {
        Box::pin(async move {
            let n = self.node().ok_or("this cluster node is starting")?;
            let s = n.remove(id).await.map_err(|e| e.to_string())?;
            Ok(serde_json::to_value(s).unwrap_or_default())
        })
    }
}
