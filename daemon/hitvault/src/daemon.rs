//! `hitvault serve`: the startup order, the wiring, and the graceful shutdown.
//!
//! Order, on the one thread that exists: the data dir is created (and, when
//! started as root, handed to `user`), the HTTP listener and the control
//! socket are bound, the GeoIP data and the ingest token are read; then the
//! process confines itself (`confinement::confine`: privileges, Landlock,
//! seccomp with TSYNC); only then are DuckDB opened (it starts its own
//! threads), the queue opened (writer threads), the salts read, and the
//! batcher and the async runtime started, so every thread is born confined.
//! On SIGTERM or SIGINT: stop accepting, let in-flight requests reach their
//! fsync, drain the queue into DuckDB, checkpoint, exit 0.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hitvault_core::bots::SpamList;
use hitvault_core::enrich::Enricher;
use hitvault_core::geo::{BUNDLED_GEOIP, GeoIp};
use hitvault_core::sites::{Sites, normalize_host};
use hitvault_core::ua::UaParser;
use hitvault_queue::{GroupCommit, Queue, QueueConfig};
use hitvault_sandbox::notify::Notifier;
use hitvault_sandbox::privileges::User;
use hitvault_server::ingest::{Ingest, now_ms};
use hitvault_server::metrics::{Gauges, Metrics};
use hitvault_server::salt::SaltKeeper;
use hitvault_server::wire::Limits;
use hitvault_server::{AdminError, AppState, DefAdmin, SiteAdmin, SiteInfo};
use hitvault_store::goals::{DefError, Funnel, Goal, Step};
use hitvault_store::{Store, StoreOptions};

use crate::batcher::{self, BatcherConfig, BatcherHandle, StoreOp};
use crate::config::Config;
use crate::confinement;

/// File name of the control socket inside the data directory.
pub const CONTROL_SOCKET: &str = "control.sock";

/// A failure that stops the daemon, with the exit code systemd sees.
#[derive(Debug, thiserror::Error)]
pub enum Fatal {
    /// Something in the environment is not as configured (exit 3).
    #[error("{0}")]
    Startup(String),
    /// Failed while running (exit 1).
    #[error("{0}")]
    Runtime(String),
}

impl Fatal {
    pub fn exit_code(&self) -> i32 {
        match self {
            Fatal::Startup(_) => 3,
            Fatal::Runtime(_) => 1,
        }
    }
}

fn startup(what: impl std::fmt::Display) -> Fatal {
    Fatal::Startup(what.to_string())
}

/// Creates the data directory (mode 0700) if needed.
pub fn prepare_data_dir(dir: &Path) -> Result<(), Fatal> {
    std::fs::create_dir_all(dir)
        .map_err(|e| startup(format!("cannot create data_dir {}: {e}", dir.display())))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
        startup(format!(
            "cannot set permissions on data_dir {}: {e}",
            dir.display()
        ))
    })
}

/// Takes an exclusive `flock` on the data directory itself, held until the
/// process exits: a second daemon on the same data dir stops here, before it
/// touches the first one's control socket (DuckDB's own lock comes later,
/// after confinement).
pub fn lock_data_dir(dir: &Path) -> Result<std::fs::File, Fatal> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(dir)
        .map_err(|e| startup(format!("cannot open data_dir {}: {e}", dir.display())))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } < 0 {
        let e = std::io::Error::last_os_error();
        return Err(startup(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            format!(
                "another hitvault is already running on data_dir {}",
                dir.display()
            )
        } else {
            format!("cannot lock data_dir {}: {e}", dir.display())
        }));
    }
    Ok(f)
}

/// Builds the in-memory registry from the declared sites and the runtime ones.
pub fn registry(declared: &[(String, Vec<String>)], store: &Store) -> Result<Sites, String> {
    let mut sites = Sites::new();
    for (h, aliases) in declared {
        sites
            .add(h, aliases.clone())
            .map_err(|e| format!("site {h:?}: {e}"))?;
    }
    for row in store.sites().map_err(|e| e.to_string())? {
        if row.origin == "runtime"
            && let Err(e) = sites.add(&row.hostname, row.aliases.clone())
        {
            tracing::warn!(site = %row.hostname, error = %e, "a site added at run time conflicts; skipped");
        }
    }
    Ok(sites)
}

/// Site management for the control socket: the batcher writes the store (it
/// is DuckDB's one writer), then the registry is swapped.
struct DaemonSites {
    ops: Sender<StoreOp>,
    sites: Arc<RwLock<Arc<Sites>>>,
    declared: Vec<(String, Vec<String>)>,
}

/// Goal and funnel definitions, written by the batcher (DuckDB's one writer).
struct DaemonDefs {
    ops: Sender<StoreOp>,
}

impl DaemonDefs {
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, DefError> + Send + 'static,
    ) -> Result<T, DefError> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.ops
            .send(StoreOp::Run(Box::new(move |store| {
                let _ = tx.send(f(store));
            })))
            .map_err(|_| DefError::Unavailable("the store is closed"))?;
        rx.recv_timeout(OP_TIMEOUT)
            .map_err(|_| DefError::Unavailable("the store did not answer"))?
    }
}

impl DefAdmin for DaemonDefs {
    fn add_goal(&self, site_id: u16, step: Step, name: String) -> Result<Goal, DefError> {
        self.run(move |s| s.add_goal(site_id, step, &name))
    }
    fn delete_goal(&self, site_id: u16, id: u32) -> Result<bool, DefError> {
        self.run(move |s| Ok(s.delete_goal(site_id, id)?))
    }
    fn add_funnel(&self, site_id: u16, name: String, steps: Vec<Step>) -> Result<Funnel, DefError> {
        self.run(move |s| s.add_funnel(site_id, &name, steps))
    }
    fn delete_funnel(&self, site_id: u16, id: u32) -> Result<bool, DefError> {
        self.run(move |s| Ok(s.delete_funnel(site_id, id)?))
    }
}

/// How long a control request waits for the batcher (which serves it between batches).
const OP_TIMEOUT: Duration = Duration::from_secs(30);

impl SiteAdmin for DaemonSites {
    fn list(&self) -> Result<Vec<SiteInfo>, AdminError> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.ops
            .send(StoreOp::ListSites(tx))
            .map_err(|_| AdminError::Internal("the store is closed".into()))?;
        let rows = rx
            .recv_timeout(OP_TIMEOUT)
            .map_err(|_| AdminError::Internal("the store did not answer".into()))?
            .map_err(AdminError::Internal)?;
        Ok(site_infos(rows, &self.declared))
    }

    fn add(&self, site: SiteInfo) -> Result<SiteInfo, AdminError> {
        let host = normalize_host(&site.hostname)
            .map_err(|e| AdminError::Invalid(format!("{:?}: {e}", site.hostname)))?;
        let aliases = site
            .aliases
            .iter()
            .map(|a| normalize_host(a).map_err(|e| AdminError::Invalid(format!("{a:?}: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let current = self.sites.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut next = (*current).clone();
        next.add(&host, aliases.clone())
            .map_err(|e| AdminError::Conflict(e.to_string()))?;
        let (tx, rx) = std::sync::mpsc::channel();
        self.ops
            .send(StoreOp::AddSite {
                hostname: host,
                aliases,
                reply: tx,
            })
            .map_err(|_| AdminError::Internal("the store is closed".into()))?;
        let row = rx
            .recv_timeout(OP_TIMEOUT)
            .map_err(|_| AdminError::Internal("the store did not answer".into()))?
            .map_err(|e| match e {
                hitvault_store::QueryError::SiteExists(h) => {
                    AdminError::Conflict(format!("site {h:?} already exists"))
                }
                other => AdminError::Internal(other.to_string()),
            })?;
        *self.sites.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        tracing::info!(site = %row.hostname, "site added");
        Ok(SiteInfo {
            hostname: row.hostname,
            aliases: row.aliases,
            origin: row.origin,
        })
    }
}

fn site_infos(
    rows: Vec<hitvault_store::SiteRow>,
    declared: &[(String, Vec<String>)],
) -> Vec<SiteInfo> {
    let mut out: Vec<SiteInfo> = declared
        .iter()
        .map(|(h, a)| SiteInfo {
            hostname: h.clone(),
            aliases: a.clone(),
            origin: "config".into(),
        })
        .collect();
    for row in rows {
        if row.origin == "runtime" {
            out.push(SiteInfo {
                hostname: row.hostname,
                aliases: row.aliases,
                origin: row.origin,
            });
        }
    }
    out
}

/// Sites as `site list` shows them: declared ones first, then runtime ones.
pub fn list_sites(
    store: &Store,
    declared: &[(String, Vec<String>)],
) -> Result<Vec<SiteInfo>, String> {
    Ok(site_infos(
        store.sites().map_err(|e| e.to_string())?,
        declared,
    ))
}

/// A random key for the UA cache's hasher, so crafted User-Agents cannot all
/// land in one cache shard.
fn random_key() -> Result<[u8; 16], Fatal> {
    let mut k = [0u8; 16];
    getrandom::fill(&mut k).map_err(|e| startup(format!("no randomness from the kernel: {e}")))?;
    Ok(k)
}

fn read_token(path: &Path) -> Result<Arc<str>, Fatal> {
    let t = std::fs::read_to_string(path).map_err(|e| {
        startup(format!(
            "invalid setting `ingest_token_file`: cannot read {}: {e}",
            path.display()
        ))
    })?;
    let t = t.trim();
    if t.len() < 16 {
        return Err(startup(format!(
            "invalid setting `ingest_token_file`: the token in {} is shorter than 16 characters",
            path.display()
        )));
    }
    Ok(Arc::from(t))
}

fn load_geoip(cfg: &Config) -> Result<GeoIp, Fatal> {
    let (bytes, origin) = match &cfg.geoip_database {
        Some(p) => (
            std::fs::read(p).map_err(|e| {
                startup(format!(
                    "invalid setting `geoip_database`: cannot read {}: {e}",
                    p.display()
                ))
            })?,
            p.display().to_string(),
        ),
        None => (BUNDLED_GEOIP.to_vec(), "bundled DB-IP Lite".to_owned()),
    };
    let geo = GeoIp::from_bytes(bytes)
        .map_err(|e| startup(format!("invalid setting `geoip_database`: {origin}: {e}")))?;
    tracing::info!(database = %origin, "country database loaded");
    Ok(geo)
}

/// Runs the daemon until SIGTERM/SIGINT. `notifier` speaks sd-notify to systemd
/// (a disabled one outside systemd; it is connected before confinement).
/// `owner` is the account to hand the data dir to when started as root
/// (`confinement::resolve_user`).
pub fn serve(cfg: Config, owner: Option<User>, notifier: Notifier) -> Result<(), Fatal> {
    let notifier = Arc::new(notifier);
    // Before confinement: everything that needs a path outside the sandbox
    // or a privilege.
    confinement::prepare(&cfg, owner.as_ref())?;
    let _lock = lock_data_dir(&cfg.data_dir)?;
    let listener = std::net::TcpListener::bind(cfg.listen).map_err(|e| {
        startup(format!(
            "invalid setting `listen`: cannot bind {}: {e}",
            cfg.listen
        ))
    })?;
    listener.set_nonblocking(true).map_err(startup)?;
    let local = listener.local_addr().map_err(startup)?;
    let control_path = cfg.data_dir.join(CONTROL_SOCKET);
    let control = bind_control(&control_path, owner.as_ref())?;
    let geo = load_geoip(&cfg)?;
    let token = cfg
        .ingest_token_file
        .as_deref()
        .map(read_token)
        .transpose()?;
    let ua_key = random_key()?;

    confinement::confine(&cfg)?;

    // Confined from here on: every thread started below inherits it.
    let opts = StoreOptions {
        threads: cfg.store_threads,
        memory_limit: cfg.store_memory_limit.clone(),
    };
    let mut store = Store::open(&cfg.data_dir, &opts).map_err(startup)?;
    // A backup snapshot left by a crash mid-stream.
    if let Ok(entries) = std::fs::read_dir(cfg.data_dir.join("tmp")) {
        for e in entries.flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with(crate::backup::SNAPSHOT_PREFIX)
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    // The reader of the dashboard's small queries (sites, live visitors, realtime).
    let live = Arc::new(std::sync::Mutex::new(store.live().map_err(startup)?));
    // Readers for the stats API, each its own connection to the same database.
    let stats = hitvault_server::StatsState::new(
        (0..2)
            .map(|_| store.stats())
            .collect::<Result<Vec<_>, _>>()
            .map_err(startup)?,
        live.clone(),
    );
    // Committed batches tell the realtime streams which sites changed.
    let commits = hitvault_server::Commits::default();
    if !hitvault_server::dashboard::served_on(&local) {
        tracing::warn!("{}", hitvault_server::dashboard::refusal_reason(&local));
    }
    let declared = cfg.declared_sites();
    for (h, aliases) in &declared {
        store
            .upsert_site(h, aliases, "config")
            .map_err(|e| startup(format!("declaring site {h:?}: {e}")))?;
    }
    let sites = Arc::new(RwLock::new(Arc::new(
        registry(&declared, &store).map_err(startup)?,
    )));
    let committed = store.committed_seq().map_err(startup)?;
    let floor = store.max_hit_id().map_err(startup)?.max(committed) + 1;

    let metrics = Arc::new(Metrics::default());
    let m = metrics.clone();
    let observer: hitvault_queue::GroupObserver =
        Arc::new(move |g: GroupCommit| m.observe_fsync(g.fsync, g.records));
    let qcfg = QueueConfig {
        dir: cfg.data_dir.join("queue"),
        segment_bytes: cfg.queue_segment_bytes,
        max_bytes: cfg.queue_max_bytes,
        ..QueueConfig::default()
    };
    let queue = Queue::open(qcfg, committed, floor, Some(observer)).map_err(startup)?;
    let replay = queue.stats().last_seq.saturating_sub(committed);
    tracing::info!(committed, replay, "queue opened");
    let salts = Arc::new(SaltKeeper::open(&cfg.data_dir.join("salts"), now_ms()).map_err(startup)?);

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
    };
    let handle = BatcherHandle {
        committed: Arc::new(AtomicU64::new(committed)),
        stop: Arc::new(AtomicBool::new(false)),
    };
    let ready = Arc::new(AtomicBool::new(false));
    let gauges = {
        let (queue, committed) = (queue.clone(), handle.committed.clone());
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
    };
    let (ops_tx, ops_rx) = std::sync::mpsc::channel();
    let busy = batcher::Busy::default();
    // Exports read on their own connections beside the batcher's.
    let exporter: Arc<dyn hitvault_server::Exporter> = Arc::new(
        crate::takeout::DaemonExporter::new(ops_tx.clone(), busy.clone()),
    );
    let defs: Arc<dyn hitvault_server::DefAdmin> = Arc::new(DaemonDefs {
        ops: ops_tx.clone(),
    });
    let maintenance: Arc<dyn hitvault_server::Maintenance> =
        Arc::new(crate::backup::DaemonMaintenance {
            ops: ops_tx.clone(),
            queue: queue.clone(),
            committed: handle.committed.clone(),
            tmp: cfg.data_dir.join("tmp"),
            sites: sites.clone(),
        });
    let admin = Arc::new(DaemonSites {
        ops: ops_tx,
        sites,
        declared,
    });
    let reopen: batcher::Reopen = {
        let (dir, opts) = (cfg.data_dir.clone(), opts.clone());
        Box::new(move || Store::open(&dir, &opts))
    };

    // Threads and the runtime.
    let heartbeat: batcher::Heartbeat = {
        let notifier = notifier.clone();
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
    };
    let batcher = {
        let (queue, metrics, handle) = (queue.clone(), metrics.clone(), handle.clone());
        let retention = crate::retention::Policy::from_config(&cfg);
        let bcfg = BatcherConfig {
            max_rows: cfg.batch_max_rows,
            max_wait: Duration::from_millis(cfg.batch_max_wait_ms),
        };
        let on_commit: batcher::OnCommit = {
            let commits = commits.clone();
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
        };
        std::thread::Builder::new()
            .name("hv-batcher".into())
            .spawn(move || {
                batcher::run(batcher::Parts {
                    queue,
                    store,
                    reopen,
                    ops: ops_rx,
                    metrics,
                    cfg: bcfg,
                    handle,
                    heartbeat,
                    retention,
                    on_commit,
                    busy,
                })
            })
            .map_err(startup)?
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("hv-http")
        .build()
        .map_err(startup)?;
    let result = rt.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener).map_err(startup)?;
        let control = tokio::net::UnixListener::from_std(control).map_err(startup)?;
        let (tx, rx) = tokio::sync::watch::channel(false);
        let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|v| *v).await;
        };
        let control_task = tokio::spawn({
            let shutdown = wait(rx.clone());
            let app = hitvault_server::control_app(admin, exporter.clone(), maintenance);
            async move {
                axum::serve(control, app)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
        });
        write_run_file(&cfg.data_dir, local).map_err(startup)?;
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
        let signals = async move {
            shutdown_signal().await;
            tracing::info!("shutting down: no new connections; draining the queue");
            let _ = stopping.stopping();
            let _ = tx.send(true);
        };
        tokio::spawn(signals);
        let dashboard = hitvault_server::DashboardState {
            stats: stats.clone(),
            realtime: hitvault_server::RealtimeState::new(commits, live, rx.clone()),
            listen: local,
            defs: defs.clone(),
        };
        let app = hitvault_server::app(hitvault_server::Services {
            public: state,
            dashboard,
            exporter,
        });
        let served = hitvault_server::serve(listener, app, wait(rx)).await;
        ready.store(false, Ordering::Release);
        let _ = control_task.await;
        served.map_err(|e| Fatal::Runtime(format!("HTTP server failed: {e}")))
    });
    // In-flight requests are done: every acknowledged hit is in the queue.
    handle.stop.store(true, Ordering::Release);
    let finished = batcher
        .join()
        .map_err(|_| Fatal::Runtime("the batcher thread panicked".into()))?;
    queue.close();
    finished
        .checkpoint
        .map_err(|e| Fatal::Runtime(format!("final checkpoint failed: {e}")))?;
    let last = finished.committed;
    let _ = std::fs::remove_file(&control_path);
    let _ = std::fs::remove_file(cfg.data_dir.join(RUN_FILE));
    rt.shutdown_timeout(Duration::from_secs(5));
    tracing::info!(committed = last, "stopped cleanly");
    result
}

/// File written once the daemon is ready: `{"pid": .., "listen": "host:port"}`.
/// Tools and tests read it to find a daemon started on port 0.
pub const RUN_FILE: &str = "run.json";

fn write_run_file(dir: &Path, listen: std::net::SocketAddr) -> std::io::Result<()> {
    let body =
        serde_json::json!({ "pid": std::process::id(), "listen": listen.to_string() }).to_string();
    let tmp = dir.join("run.json.tmp");
    std::fs::write(&tmp, body)?;
    std::fs::rename(tmp, dir.join(RUN_FILE))
}

/// Binds the control socket (mode 0600; owned by `owner` when started as
/// root, so that the service account's own CLI can use it too).
fn bind_control(
    path: &PathBuf,
    owner: Option<&User>,
) -> Result<std::os::unix::net::UnixListener, Fatal> {
    // The store's file lock already guarantees one daemon per data dir, so a
    // socket file left here is stale.
    let _ = std::fs::remove_file(path);
    let l = std::os::unix::net::UnixListener::bind(path).map_err(|e| {
        startup(format!(
            "cannot bind control socket {}: {e}",
            path.display()
        ))
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(startup)?;
    if let Some(u) = owner {
        std::os::unix::fs::lchown(path, Some(u.uid), Some(u.gid)).map_err(startup)?;
    }
    l.set_nonblocking(true).map_err(startup)?;
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

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}
