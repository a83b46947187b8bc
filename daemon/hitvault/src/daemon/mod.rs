//! `hitvault serve`: the daemon's startup order, its wiring and its
//! graceful shutdown.
//!
//! [`serve`] runs four phases whose types keep their order: [`Prepared`]
//! does, on the one thread that exists, everything that needs a path outside
//! the sandbox or a privilege (the data dir created and, when started as
//! root, handed to `user`; the HTTP listener and the control socket bound;
//! the GeoIP data and the ingest token read); then the process confines
//! itself ([`confine::confine`]: privileges, Landlock, seccomp with TSYNC);
//! [`Opened`] then opens DuckDB (it starts its own threads), the queue
//! (writer threads), the salts and the TLS certificate ([`tls`]); [`Wired`] builds the ingest service, the
//! adapters and the routes; [`Wired::run`] starts the writer thread and the
//! async runtime. So every thread is born confined.
//!
//! On SIGTERM or SIGINT: stop accepting, let in-flight requests reach their
//! fsync, drain the queue into DuckDB, checkpoint, exit 0. On SIGHUP: reload
//! the TLS certificate files (or renew the local CA's certificate if due).
//!
//! The rooms: [`writer`] (the one thread that writes DuckDB, and the one
//! handle to it), [`adapters`] (the server crate's traits, done through the
//! writer), [`confine`] (configuration to sandbox rules), [`tls`] (the
//! listener's certificate, loaded confined and kept fresh).

pub mod adapters;
pub mod cluster;
pub mod confine;
pub mod tls;
pub mod writer;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hitvault_core::bots::SpamList;
use hitvault_core::enrich::Enricher;
use hitvault_core::geo::{BUNDLED_GEOIP, GeoIp};
use hitvault_core::sites::Sites;
use hitvault_core::ua::UaParser;
use hitvault_queue::{GroupCommit, Queue, QueueConfig};
use hitvault_sandbox::notify::Notifier;
use hitvault_sandbox::privileges::User;
use hitvault_server::ingest::{Ingest, now_ms};
use hitvault_server::metrics::{Gauges, Metrics};
use hitvault_server::salt::SaltKeeper;
use hitvault_server::wire::Limits;
use hitvault_server::{AppState, Commits, StatsState};
use hitvault_store::{Store, StoreOptions};

use self::adapters::{DaemonDefs, DaemonExporter, DaemonMaintenance, DaemonSites};
use self::writer::{ExportsRunning, Position, Writer, WriterConfig};
use crate::config::Config;
use crate::datadir::{
    self, CONTROL_SOCKET, QUEUE_DIR, RUN_FILE, SALTS_DIR, SNAPSHOT_PREFIX, TMP_DIR,
};
use crate::exit::{Exit, Failure, OrExit};

/// Runs the daemon until SIGTERM/SIGINT. `notifier` speaks sd-notify to systemd
/// (a disabled one outside systemd; it is connected before confinement).
/// `owner` is the account to hand the data dir to when started as root
/// ([`confine::resolve_user`]).
pub fn serve(cfg: Config, owner: Option<User>, notifier: Notifier) -> Result<(), Failure> {
    let prepared = Prepared::before_confinement(&cfg, owner.as_ref())?;
    confine::confine(&cfg)?;
    // Confined from here on: every thread started below inherits it.
    let opened = Opened::open(&cfg, &prepared)?;
    let wired = Wired::wire(cfg, prepared, opened)?;
    wired.run(Arc::new(notifier))
}

/// Phase 1, before confinement: everything that needs a path outside the
/// sandbox or a privilege.
struct Prepared {
    /// The data dir's lock, held until the process exits.
    lock: std::fs::File,
    listener: std::net::TcpListener,
    local: std::net::SocketAddr,
    control: std::os::unix::net::UnixListener,
    geo: GeoIp,
    token: Option<Arc<str>>,
    ua_key: [u8; 16],
    /// A cluster node's RPC listener and key.
    cluster: Option<cluster::Prepared>,
}

impl Prepared {
    fn before_confinement(cfg: &Config, owner: Option<&User>) -> Result<Prepared, Failure> {
        confine::prepare(cfg, owner)?;
        let lock = datadir::lock(&cfg.data_dir)?;
        let listener = std::net::TcpListener::bind(cfg.listen).map_err(|e| {
            Failure::startup(format!(
                "invalid setting `listen`: cannot bind {}: {e}",
                cfg.listen
            ))
        })?;
        listener.set_nonblocking(true).or_exit(Exit::Startup)?;
        let local = listener.local_addr().or_exit(Exit::Startup)?;
        let control = bind_control(&cfg.data_dir.join(CONTROL_SOCKET), owner)?;
        let cluster = cluster::prepare(cfg)?;
        Ok(Prepared {
            lock,
            listener,
            local,
            control,
            geo: load_geoip(cfg)?,
            token: cfg
                .ingest_token_file
                .as_deref()
                .map(read_token)
                .transpose()?,
            ua_key: random_key()?,
            cluster,
        })
    }
}

/// Phase 2, confined: the store, its readers, the queue and the salts.
struct Opened {
    store: Store,
    opts: StoreOptions,
    /// The reader of the dashboard's small queries (sites, live visitors, realtime).
    live: Arc<std::sync::Mutex<hitvault_store::live::LiveStats>>,
    stats: StatsState,
    declared: Vec<(String, Vec<String>)>,
    sites: Arc<RwLock<Arc<Sites>>>,
    committed: u64,
    queue: Queue,
    metrics: Arc<Metrics>,
    salts: Arc<SaltKeeper>,
    accounts: Arc<hitvault_accounts::Accounts>,
    audit: Arc<hitvault_accounts::AuditLog>,
    tls: tls::Tls,
    /// A cluster node's Raft log and the state its store holds.
    cluster: Option<(hitvault_cluster::log::LogStore, Option<Vec<u8>>)>,
}

impl Opened {
    fn open(cfg: &Config, prepared: &Prepared) -> Result<Opened, Failure> {
        let opts = StoreOptions {
            threads: cfg.store_threads,
            memory_limit: cfg.store_memory_limit.clone(),
        };
        let mut store = Store::open(&cfg.data_dir, &opts).or_exit(Exit::Startup)?;
        remove_stale_snapshots(&cfg.data_dir.join(TMP_DIR));
        let live = Arc::new(std::sync::Mutex::new(store.live().or_exit(Exit::Startup)?));
        // Readers for the stats API, each its own connection to the same database.
        let stats = StatsState::new(
            (0..2)
                .map(|_| store.stats())
                .collect::<Result<Vec<_>, _>>()
                .or_exit(Exit::Startup)?,
            live.clone(),
        );
        let declared = cfg.declared_sites();
        for (h, aliases) in &declared {
            store
                .upsert_site(h, aliases, "config")
                .map_err(|e| Failure::startup(format!("declaring site {h:?}: {e}")))?;
        }
        let sites = Arc::new(RwLock::new(Arc::new(
            crate::sites::registry(&declared, &store).or_exit(Exit::Startup)?,
        )));
        let committed = store.committed_seq().or_exit(Exit::Startup)?;
        let floor = match &cfg.cluster {
            // A node numbers its hits in its own range (ids are unique
            // across the cluster), above the largest it stored.
            Some(c) => {
                let lo = hitvault_cluster::id_floor(c.node_id);
                let hi = hitvault_cluster::id_floor(c.node_id + 1) - 1;
                store
                    .max_hit_id_in(lo, hi)
                    .or_exit(Exit::Startup)?
                    .max(committed)
                    .max(lo)
                    + 1
            }
            None => store.max_hit_id().or_exit(Exit::Startup)?.max(committed) + 1,
        };
        let metrics = Arc::new(Metrics::default());
        let m = metrics.clone();
        let observer: hitvault_queue::GroupObserver =
            Arc::new(move |g: GroupCommit| m.observe_fsync(g.fsync, g.records));
        let qcfg = QueueConfig {
            dir: cfg.data_dir.join(QUEUE_DIR),
            segment_bytes: cfg.queue_segment_bytes,
            max_bytes: cfg.queue_max_bytes,
            ..QueueConfig::default()
        };
        let queue = Queue::open(qcfg, committed, floor, Some(observer)).or_exit(Exit::Startup)?;
        let replay = queue.stats().last_seq.saturating_sub(committed);
        tracing::info!(committed, replay, "queue opened");
        let salts = Arc::new(
            SaltKeeper::open(&cfg.data_dir.join(SALTS_DIR), now_ms()).or_exit(Exit::Startup)?,
        );
        let tls = tls::start(cfg)?;
        let cluster = match &cfg.cluster {
            Some(_) => {
                let (log, opened) =
                    hitvault_cluster::log::LogStore::open(&cfg.data_dir.join(cluster::CLUSTER_DIR))
                        .map_err(|e| Failure::startup(format!("opening the Raft log: {e}")))?;
                let state = store.cluster_state().or_exit(Exit::Startup)?;
                tracing::info!(
                    entries = opened.entries,
                    cut = opened.cut,
                    "Raft log opened"
                );
                Some((log, state))
            }
            None => None,
        };
        let accounts = Arc::new(crate::links::open_accounts(cfg)?);
        let audit = Arc::new(crate::links::open_audit(cfg)?);
        if accounts.replicated() && accounts.made_alone() {
            return Err(Failure::startup(format!(
                "{} holds accounts made before this node was a cluster node: a cluster's \
                 accounts are its log's, the same on every node. Move that directory away \
                 (and make its users again on the cluster) or turn `cluster.enable` off",
                cfg.data_dir.join(crate::datadir::ACCOUNTS_DIR).display()
            )));
        }
        // A cluster node makes its set-up link once it has joined
        // (`cluster::start`): the link is an accounts change.
        if !accounts.replicated() {
            announce_setup_link(cfg, prepared.local, &accounts)?;
        }
        Ok(Opened {
            store,
            opts,
            live,
            stats,
            declared,
            sites,
            committed,
            queue,
            metrics,
            salts,
            accounts,
            audit,
            tls,
            cluster,
        })
    }
}

/// A backup snapshot left in `tmp` by a crash mid-stream.
fn remove_stale_snapshots(tmp: &Path) {
    if let Ok(entries) = std::fs::read_dir(tmp) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(SNAPSHOT_PREFIX) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Phase 3: the ingest service, the writer's handle and parts, the adapters
/// and the routes, nothing running yet.
struct Wired {
    cfg: Config,
    /// The data dir's lock, held until the daemon has stopped.
    lock: std::fs::File,
    listener: std::net::TcpListener,
    local: std::net::SocketAddr,
    control: std::os::unix::net::UnixListener,
    queue: Queue,
    metrics: Arc<Metrics>,
    position: Position,
    ready: Arc<AtomicBool>,
    writer: writer::WriterParts,
    /// What the routes serve.
    routes: Routes,
    /// A cluster node's parts, started on the runtime.
    cluster: Option<cluster::Parts>,
}

/// Everything the HTTP routes and the control socket are built from.
struct Routes {
    state: AppState,
    stats: StatsState,
    live: Arc<std::sync::Mutex<hitvault_store::live::LiveStats>>,
    commits: Commits,
    adapters: Adapters,
    accounts: hitvault_server::AccountState,
    audit: Arc<hitvault_accounts::AuditLog>,
    /// The record of USB Takeouts, in the data dir.
    usb: Arc<hitvault_server::usb::Runs>,
    /// The cluster node's admin routes (`None` on a single node).
    cluster: hitvault_server::cluster::Cluster,
    tls: tls::Tls,
    hostnames: hitvault_server::hosts::Hostnames,
}

impl Wired {
    fn wire(cfg: Config, prepared: Prepared, opened: Opened) -> Result<Wired, Failure> {
        let Opened {
            store,
            opts,
            live,
            stats,
            declared,
            sites,
            committed,
            queue,
            metrics,
            salts,
            accounts,
            audit,
            tls,
            cluster: cluster_log,
        } = opened;
        let Prepared {
            lock,
            listener,
            local,
            control,
            geo,
            token,
            ua_key,
            cluster: cluster_prepared,
        } = prepared;
        let (handle, inbox) = writer::channel();
        let gate = cfg
            .cluster
            .as_ref()
            .map(|c| Arc::new(cluster::Gate::new(c)));
        // A cluster node's writer stores the committed log, not the queue.
        let (replicated, cluster) = match (cluster_prepared, cluster_log, &gate) {
            (Some(prepared), Some((log, state)), Some(gate)) => {
                let (tx, rx) = std::sync::mpsc::sync_channel(cluster::APPLY_DEPTH);
                let parts = cluster::Parts {
                    prepared,
                    log,
                    apply: cluster::WriterApply::new(
                        tx,
                        state,
                        accounts.clone(),
                        handle.clone(),
                        sites.clone(),
                        cfg.data_dir.join(crate::datadir::TMP_DIR),
                        gate.passes(),
                    ),
                    retention: crate::retention::Policy::from_config(&cfg),
                    accounts: accounts.clone(),
                    setup: (cfg.clone(), local),
                    queue: queue.clone(),
                    gate: gate.clone(),
                    stop: Arc::new(AtomicBool::new(false)),
                };
                (Some(rx), Some(parts))
            }
            _ => (None, None),
        };
        let ingest = Ingest {
            limits: Arc::new(Limits::default()),
            enricher: Arc::new(Enricher::new(
                UaParser::new(ua_key),
                Some(geo),
                SpamList::new(&cfg.referrer_spam),
            )),
            sites: sites.clone(),
            salts,
            queue: queue.clone(),
            metrics: metrics.clone(),
            trusted_proxies: Arc::new(cfg.trusted_proxies.clone()),
            excluded: Arc::new(cfg.excluded_addresses.clone()),
            batch_token: token,
            replication: gate
                .clone()
                .map(|g| g as Arc<dyn hitvault_server::ingest::Replication>),
        };
        let position = Position {
            committed: Arc::new(AtomicU64::new(committed)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let ready = Arc::new(AtomicBool::new(false));
        let gauges = {
            let (queue, committed) = (queue.clone(), position.committed.clone());
            Arc::new(move || {
                let s = queue.stats();
                Gauges {
                    queue_pending_records: s.pending_records,
                    queue_bytes: s.bytes_on_disk,
                    queue_segments: s.segments as u64,
                    committed_seq: committed.load(Ordering::Relaxed),
                }
            })
        };
        let state = AppState {
            ingest,
            metrics: metrics.clone(),
            ready: ready.clone(),
            gauges,
            accounts: Some(accounts.clone()),
        };
        let hostnames = hitvault_server::hosts::Hostnames::new(cfg.hostnames.clone());
        let exports = ExportsRunning::default();
        let retention = crate::retention::Policy::from_config(&cfg);
        let adapters = Adapters::new(
            &handle,
            &exports,
            &cfg,
            &queue,
            &position,
            sites,
            declared,
            retention.clone(),
            gate.clone(),
        );
        // Committed batches tell the realtime streams which sites changed.
        let commits = Commits::default();
        let reopen: writer::Reopen = {
            let (dir, opts) = (cfg.data_dir.clone(), opts);
            Box::new(move || Store::open(&dir, &opts))
        };
        let writer = writer::WriterParts {
            queue: queue.clone(),
            store,
            reopen,
            inbox,
            metrics: metrics.clone(),
            cfg: WriterConfig {
                max_rows: cfg.batch_max_rows,
                max_wait: Duration::from_millis(cfg.batch_max_wait_ms),
            },
            position: position.clone(),
            // Set in `run`, where the notifier is.
            heartbeat: Box::new(|| {}),
            retention,
            on_commit: on_commit(commits.clone()),
            exports,
            audit: audit.clone(),
            replicated,
        };
        let usb = Arc::new(hitvault_server::usb::Runs::new(&cfg.data_dir));
        Ok(Wired {
            cfg,
            lock,
            listener,
            local,
            control,
            queue,
            metrics,
            position,
            ready,
            writer,
            routes: Routes {
                state,
                stats,
                live,
                commits,
                adapters,
                accounts: hitvault_server::AccountState {
                    // The set-up page shows it, to compare with the console's.
                    ca_fingerprint: tls.info.ca.as_ref().map(|ca| ca.fingerprint.clone()),
                    ..hitvault_server::AccountState::new(accounts, hostnames.names().to_vec())
                },
                audit,
                usb,
                hostnames,
                tls,
                cluster: hitvault_server::cluster::Cluster(
                    gate.map(|g| g as Arc<dyn hitvault_server::cluster::ClusterAdmin>),
                ),
            },
            cluster,
        })
    }

    /// Phase 4: the writer thread and the runtime, until a signal; then the
    /// drain and the checkpoint.
    fn run(self, notifier: Arc<Notifier>) -> Result<(), Failure> {
        let Wired {
            cfg,
            lock,
            listener,
            local,
            control,
            queue,
            metrics,
            position,
            ready,
            mut writer,
            routes,
            cluster,
        } = self;
        writer.heartbeat = heartbeat(notifier.clone());
        let writer_thread = std::thread::Builder::new()
            .name("hv-writer".into())
            .spawn(move || writer::run(writer))
            .or_exit(Exit::Startup)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("hv-http")
            .build()
            .or_exit(Exit::Startup)?;
        let result = rt.block_on(async {
            let listener =
                tokio::net::TcpListener::from_std(listener).or_exit(Exit::Startup)?;
            let control =
                tokio::net::UnixListener::from_std(control).or_exit(Exit::Startup)?;
            let mut term = signal(tokio::signal::unix::SignalKind::terminate())?;
            let mut int = signal(tokio::signal::unix::SignalKind::interrupt())?;
            let hup = signal(tokio::signal::unix::SignalKind::hangup())?;
            let (tx, rx) = tokio::sync::watch::channel(false);
            let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
                let _ = rx.wait_for(|v| *v).await;
            };
            let (public, control_app, tls) = routes.build(rx.clone());
            let node = match cluster {
                Some(parts) => {
                    let stop = parts.stop.clone();
                    Some((cluster::start(parts).await?, stop))
                }
                None => None,
            };
            tokio::spawn(tls::Tls::keep(tls.certs(), hup, rx.clone()));
            let control_task = tokio::spawn({
                let shutdown = wait(rx.clone());
                async move {
                    axum::serve(control, control_app)
                        .with_graceful_shutdown(shutdown)
                        .await
                }
            });
            write_run_file(&cfg.data_dir, local).or_exit(Exit::Startup)?;
            ready.store(true, Ordering::Release);
            tracing::info!(listen = %local, data_dir = %cfg.data_dir.display(), "hitvault is ready");
            if let Err(e) = notifier.ready() {
                tracing::warn!(error = %e, "sd-notify READY failed");
            }
            tokio::spawn(report_status(
                notifier.clone(),
                metrics.clone(),
                queue.clone(),
            ));
            let stopping = notifier.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
                tracing::info!("shutting down: no new connections; draining the queue");
                let _ = stopping.stopping();
                let _ = tx.send(true);
            });
            let served = hitvault_server::serve(listener, public, tls.edge, wait(rx)).await;
            ready.store(false, Ordering::Release);
            let _ = control_task.await;
            if let Some((node, stop)) = node {
                // The forwarder stops after its current proposal; Raft stops
                // handing batches to the writer.
                stop.store(true, Ordering::Release);
                if let Err(e) = node.raft.shutdown().await {
                    tracing::warn!(error = %e, "stopping the cluster node");
                }
            }
            served.map_err(|e| Failure::runtime(format!("HTTP server failed: {e}")))
        });
        // In-flight requests are done: every acknowledged hit is in the queue.
        position.stop.store(true, Ordering::Release);
        let finished = writer_thread
            .join()
            .map_err(|_| Failure::runtime("the writer thread panicked"))?;
        queue.close();
        finished
            .checkpoint
            .map_err(|e| Failure::runtime(format!("final checkpoint failed: {e}")))?;
        let _ = std::fs::remove_file(cfg.data_dir.join(CONTROL_SOCKET));
        let _ = std::fs::remove_file(cfg.data_dir.join(RUN_FILE));
        rt.shutdown_timeout(Duration::from_secs(5));
        tracing::info!(committed = finished.committed, "stopped cleanly");
        drop(lock);
        result
    }
}

impl Routes {
    /// The public router (ingest, stats API, goals, dashboard, Takeout), the
    /// control socket's, and the listener's TLS. `shutdown` ends the
    /// realtime streams.
    fn build(
        self,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> (axum::Router, axum::Router, tls::Tls) {
        let Routes {
            state,
            stats,
            live,
            commits,
            adapters,
            accounts,
            audit,
            usb,
            tls,
            hostnames,
            cluster,
        } = self;
        let control = hitvault_server::control_app(
            adapters.sites.clone(),
            adapters.exporter.clone(),
            adapters.maintenance.clone(),
            accounts.accounts.clone(),
            audit.clone(),
            usb.clone(),
            cluster.clone(),
        );
        let dashboard = hitvault_server::DashboardState {
            stats,
            realtime: hitvault_server::RealtimeState::new(commits, live, shutdown),
            defs: adapters.defs,
        };
        let public = hitvault_server::app(hitvault_server::Services {
            accounts,
            public: state,
            dashboard,
            exporter: adapters.exporter,
            hostnames,
            tls: tls.info.clone(),
            audit,
            sites: adapters.sites,
            maintenance: adapters.maintenance,
            usb,
            cluster,
        });
        (public, control, tls)
    }
}

/// The server crate's four traits, done by the daemon through its writer.
struct Adapters {
    sites: Arc<dyn hitvault_server::SiteAdmin>,
    defs: Arc<dyn hitvault_server::DefAdmin>,
    exporter: Arc<dyn hitvault_server::Exporter>,
    maintenance: Arc<dyn hitvault_server::Maintenance>,
}

impl Adapters {
    #[allow(clippy::too_many_arguments)] // one field each, named at the one call site
    fn new(
        writer: &Writer,
        exports: &ExportsRunning,
        cfg: &Config,
        queue: &Queue,
        position: &Position,
        sites: Arc<RwLock<Arc<Sites>>>,
        declared: Vec<(String, Vec<String>)>,
        retention: crate::retention::Policy,
        gate: Option<Arc<cluster::Gate>>,
    ) -> Adapters {
        Adapters {
            // Exports read on their own connections beside the writer.
            exporter: Arc::new(DaemonExporter {
                writer: writer.clone(),
                exports: exports.clone(),
            }),
            defs: Arc::new(DaemonDefs {
                writer: writer.clone(),
                cluster: gate.clone(),
            }),
            maintenance: Arc::new(DaemonMaintenance {
                writer: writer.clone(),
                queue: queue.clone(),
                committed: position.committed.clone(),
                tmp: cfg.data_dir.join(TMP_DIR),
                sites: sites.clone(),
                retention,
                cluster: gate.clone(),
            }),
            sites: Arc::new(DaemonSites {
                writer: writer.clone(),
                sites,
                declared,
                cluster: gate,
            }),
        }
    }
}

/// Tells the realtime streams which sites a committed batch touched.
fn on_commit(commits: Commits) -> writer::OnCommit {
    Box::new(move |hits| {
        if !commits.has_listeners() {
            return;
        }
        let mut sites: Vec<String> = Vec::new();
        for (_, h) in hits {
            if !sites.iter().any(|s| s == h.site) {
                sites.push(h.site.to_owned());
            }
        }
        commits.publish(sites);
    })
}

/// systemd's watchdog keep-alive, sent from the writer's loop (so a stuck
/// writer gets the daemon restarted).
fn heartbeat(notifier: Arc<Notifier>) -> writer::Heartbeat {
    let every = notifier.watchdog_interval();
    let mut last = std::time::Instant::now();
    Box::new(move || {
        if let Some(every) = every
            && last.elapsed() >= every
        {
            if let Err(e) = notifier.watchdog() {
                tracing::warn!(error = %e, "sd-notify WATCHDOG failed");
            }
            last = std::time::Instant::now();
        }
    })
}

/// A signal handler, installed before the daemon says it is ready.
fn signal(kind: tokio::signal::unix::SignalKind) -> Result<tokio::signal::unix::Signal, Failure> {
    tokio::signal::unix::signal(kind)
        .or_exit_with(Exit::Startup, |e| format!("cannot handle signals: {e}"))
}

fn write_run_file(dir: &Path, listen: std::net::SocketAddr) -> std::io::Result<()> {
    let body =
        serde_json::json!({ "pid": std::process::id(), "listen": listen.to_string() }).to_string();
    let tmp = dir.join("run.json.tmp");
    std::fs::write(&tmp, body)?;
    std::fs::rename(tmp, dir.join(RUN_FILE))
}

/// A random key for the UA cache's hasher, so crafted User-Agents cannot all
/// land in one cache shard.
fn random_key() -> Result<[u8; 16], Failure> {
    let mut k = [0u8; 16];
    getrandom::fill(&mut k)
        .map_err(|e| Failure::startup(format!("no randomness from the kernel: {e}")))?;
    Ok(k)
}

fn read_token(path: &Path) -> Result<Arc<str>, Failure> {
    let t = std::fs::read_to_string(path).map_err(|e| {
        Failure::startup(format!(
            "invalid setting `ingest_token_file`: cannot read {}: {e}",
            path.display()
        ))
    })?;
    let t = t.trim();
    if t.len() < 16 {
        return Err(Failure::startup(format!(
            "invalid setting `ingest_token_file`: the token in {} is shorter than 16 characters",
            path.display()
        )));
    }
    Ok(Arc::from(t))
}

fn load_geoip(cfg: &Config) -> Result<GeoIp, Failure> {
    let (bytes, origin) = match &cfg.geoip_database {
        Some(p) => (
            std::fs::read(p).map_err(|e| {
                Failure::startup(format!(
                    "invalid setting `geoip_database`: cannot read {}: {e}",
                    p.display()
                ))
            })?,
            p.display().to_string(),
        ),
        None => (BUNDLED_GEOIP.to_vec(), "bundled DB-IP Lite".to_owned()),
    };
    let geo = GeoIp::from_bytes(bytes).map_err(|e| {
        Failure::startup(format!("invalid setting `geoip_database`: {origin}: {e}"))
    })?;
    tracing::info!(database = %origin, "country database loaded");
    Ok(geo)
}

/// Binds the control socket (mode 0600; owned by `owner` when started as
/// root, so that the service account's own CLI can use it too).
fn bind_control(
    path: &Path,
    owner: Option<&User>,
) -> Result<std::os::unix::net::UnixListener, Failure> {
    // The store's file lock already guarantees one daemon per data dir, so a
    // socket file left here is stale.
    let _ = std::fs::remove_file(path);
    let l = std::os::unix::net::UnixListener::bind(path).map_err(|e| {
        Failure::startup(format!(
            "cannot bind control socket {}: {e}",
            path.display()
        ))
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .or_exit(Exit::Startup)?;
    if let Some(u) = owner {
        std::os::unix::fs::lchown(path, Some(u.uid), Some(u.gid)).or_exit(Exit::Startup)?;
    }
    l.set_nonblocking(true).or_exit(Exit::Startup)?;
    Ok(l)
}

/// Every 5 s: `STATUS=` with the queue depth and the recent ingest rate.
async fn report_status(notifier: Arc<Notifier>, metrics: Arc<Metrics>, queue: Queue) {
    if !notifier.is_enabled() {
        return;
    }
    let total = |m: &Metrics| {
        use hitvault_server::metrics::Endpoint;
        Endpoint::ALL
            .iter()
            .map(|e| m.accepted_count(*e))
            .sum::<u64>()
    };
    let mut before = total(&metrics);
    let period = Duration::from_secs(5);
    loop {
        tokio::time::sleep(period).await;
        let now = total(&metrics);
        let rate = (now - before) as f64 / period.as_secs_f64();
        before = now;
        let text = format!(
            "queue depth {}, {rate:.0} hits/s",
            queue.stats().pending_records
        );
        if let Err(e) = notifier.status(&text) {
            tracing::debug!(error = %e, "sd-notify STATUS failed");
        }
    }
}

/// With no admin yet, makes the set-up link and prints it.
pub(crate) fn announce_setup_link(
    cfg: &Config,
    local: std::net::SocketAddr,
    accounts: &hitvault_accounts::Accounts,
) -> Result<(), Failure> {
    if let Some(token) = accounts
        .setup_link(now_ms().max(0) as u64 / 1000)
        .map_err(|e| Failure::startup(format!("making the set-up link: {e}")))?
    {
        let url = crate::links::setup_url(cfg, local, &token);
        // On the console (stderr) and in the log, for whoever starts it.
        eprintln!(
            "hitvault: no admin yet. Open {url} within an hour to create one \
             (or run `hitvault user add NAME --admin`)."
        );
        tracing::warn!(url = %url, "no admin yet: open the set-up link within an hour");
    }
    Ok(())
}
