//! The batcher: the one thread that owns the DuckDB store and writes to it.
//!
//! It reads the queue in order from the committed position, appends each batch
//! with the Appender in one transaction that also records the batch's last
//! sequence number, and only then lets the queue free the space. A crash
//! anywhere in this loop replays from the position DuckDB holds, so nothing
//! acknowledged is lost and nothing is stored twice.
//!
//! Site changes from the control socket arrive as [`StoreOp`]s and run here,
//! between batches, so DuckDB has exactly one writer. When DuckDB invalidates
//! its database after a fatal error (a full disk during a commit or a
//! checkpoint does that), the batcher drops the store and opens it again: the
//! WAL replay tells it what was committed, and the queue still holds the rest.
//!
//! Retention runs here too (it deletes, so it needs the one writer): at
//! start, every [`crate::retention::INTERVAL`], and on request (`StoreOp::Prune`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use hitvault_core::HitRef;
use hitvault_queue::Queue;
use hitvault_server::metrics::Metrics;
use hitvault_store::{ImportStats, Reader, RecordBatch, SiteRow, Store};

use crate::retention::{self, Policy, Report};

/// Knobs of the batcher loop.
#[derive(Clone, Debug)]
pub struct BatcherConfig {
    pub max_rows: usize,
    pub max_wait: Duration,
}

/// Shared with the rest of the daemon.
#[derive(Clone, Debug)]
pub struct BatcherHandle {
    /// Last sequence number committed to DuckDB.
    pub committed: Arc<AtomicU64>,
    /// Set to ask the batcher to drain what is durable and stop.
    pub stop: Arc<AtomicBool>,
}

/// Work for the store's owner, with where to send the answer.
pub enum StoreOp {
    ListSites(Sender<Result<Vec<SiteRow>, String>>),
    /// A new read connection to the current database, for one export. Made
    /// here so that it always belongs to the store the batcher has open
    /// (after a reopen too).
    Reader(Sender<Result<Reader, String>>),
    AddSite {
        hostname: String,
        aliases: Vec<String>,
        reply: Sender<Result<SiteRow, hitvault_store::QueryError>>,
    },
    /// Any other write, run on the store between batches; the closure sends
    /// its own answer.
    Run(Box<dyn FnOnce(&mut Store) + Send>),
    /// Stage the batches that arrive, then merge them (`hitvault import`
    /// through the daemon). The queue reserved the ids above `renumber_above`
    /// (which is at least `max_id`), for imported hits whose id this instance
    /// gave to another hit, and everything numbered before was committed
    /// before this op was sent.
    Import {
        batches: Receiver<ImportMsg>,
        max_id: u64,
        renumber_above: u64,
        reply: Sender<Result<ImportStats, String>>,
    },
    /// Find (and unless `dry_run`, archive and delete) expired hits.
    Prune {
        dry_run: bool,
        reply: Sender<Result<Report, String>>,
    },
}

/// What the control socket feeds an import running on the batcher.
pub enum ImportMsg {
    Batch(&'static str, RecordBatch),
    /// Every batch was sent: merge and commit.
    End,
    /// The stream failed: roll back.
    Abort(String),
}

/// Longest pause between two messages of an import before it is rolled back.
const IMPORT_IDLE: Duration = Duration::from_secs(60);

fn import(
    store: &mut Store,
    rx: &Receiver<ImportMsg>,
    max_id: u64,
    renumber_above: u64,
    heartbeat: &mut Heartbeat,
) -> Result<ImportStats, String> {
    use std::sync::mpsc::RecvTimeoutError;
    let mut imp = store.begin_import().map_err(|e| e.to_string())?;
    imp.renumber_above(renumber_above);
    let mut idle = Instant::now();
    loop {
        heartbeat();
        match rx.recv_timeout(HEARTBEAT_EVERY) {
            Ok(ImportMsg::Batch(table, batch)) => {
                imp.append(table, batch).map_err(|e| e.to_string())?;
                idle = Instant::now();
            }
            Ok(ImportMsg::End) => break,
            Ok(ImportMsg::Abort(m)) => return Err(m),
            Err(RecvTimeoutError::Timeout) if idle.elapsed() < IMPORT_IDLE => {}
            Err(RecvTimeoutError::Timeout) => {
                return Err(format!(
                    "no data for {} s; nothing imported",
                    IMPORT_IDLE.as_secs()
                ));
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err("the import stream ended early; nothing imported".into());
            }
        }
    }
    let staged = imp.staged_max_id().map_err(|e| e.to_string())?;
    if staged > max_id {
        return Err(format!(
            "the import holds hit id {staged}, above the announced max_id {max_id}; nothing imported"
        ));
    }
    imp.commit().map_err(|e| e.to_string())
}

/// Called at every turn of the loop and at least every [`HEARTBEAT_EVERY`]
/// while a batch waits or fills (whatever `batch.max_wait_ms` is), but not
/// during a DuckDB commit: the daemon sends systemd's watchdog keep-alive
/// from here, so a stuck writer gets the daemon restarted.
pub type Heartbeat = Box<dyn FnMut() + Send>;

/// Longest stretch the batcher waits for the queue without a heartbeat.
pub const HEARTBEAT_EVERY: Duration = Duration::from_millis(250);

/// Called with every batch once it is committed (and visible to readers):
/// the daemon tells the realtime streams which sites changed.
pub type OnCommit = Box<dyn for<'a> FnMut(&[(u64, HitRef<'a>)]) + Send>;

/// Opens the store again after DuckDB invalidated it.
pub type Reopen = Box<dyn Fn() -> Result<Store, hitvault_store::OpenError> + Send>;

/// What the batcher did, for the shutdown log.
#[derive(Debug)]
pub struct Finished {
    pub committed: u64,
    pub checkpoint: Result<(), String>,
}

fn serve_ops(
    store: &mut Store,
    ops: &Receiver<StoreOp>,
    policy: &Policy,
    heartbeat: &mut Heartbeat,
) {
    while let Ok(op) = ops.try_recv() {
        match op {
            StoreOp::Import {
                batches,
                max_id,
                renumber_above,
                reply,
            } => {
                let r = import(store, &batches, max_id, renumber_above, heartbeat);
                if let Err(e) = &r {
                    tracing::warn!(error = %e, "import refused");
                }
                let _ = reply.send(r);
            }
            StoreOp::Prune { dry_run, reply } => {
                let r = retention::run(store, policy, retention::now_us(), dry_run, heartbeat);
                if let Err(e) = &r {
                    tracing::error!(error = %e, "prune failed");
                }
                let _ = reply.send(r);
            }
            StoreOp::ListSites(reply) => {
                let _ = reply.send(store.sites().map_err(|e| e.to_string()));
            }
            StoreOp::Reader(reply) => {
                let _ = reply.send(store.reader().map_err(|e| e.to_string()));
            }
            StoreOp::AddSite {
                hostname,
                aliases,
                reply,
            } => {
                let _ = reply.send(store.upsert_site(&hostname, &aliases, "runtime"));
            }
            StoreOp::Run(f) => f(store),
        }
    }
}

/// Records for one transaction: waits for the first one (at most `max_wait`),
/// then keeps collecting for up to `max_wait` more or until `max_rows`.
/// A DuckDB commit has a fixed cost (it syncs its WAL), so committing every
/// few hundred rows as they trickle in spends the CPU that ingest needs;
/// batches that fill for a moment cost a fraction of it per row.
fn read_batch(
    queue: &Queue,
    after: u64,
    cfg: &BatcherConfig,
    stop: &AtomicBool,
    heartbeat: &mut Heartbeat,
) -> Result<Vec<(u64, Vec<u8>)>, hitvault_queue::ReadError> {
    // Wait for the first record in slices, so that the watchdog hears from
    // an idle batcher however long `max_wait` is.
    let waiting = Instant::now() + cfg.max_wait;
    let mut records = loop {
        let left = waiting.saturating_duration_since(Instant::now());
        let got = queue.read_after(after, cfg.max_rows, left.min(HEARTBEAT_EVERY))?;
        heartbeat();
        if !got.is_empty() || left <= HEARTBEAT_EVERY || stop.load(Ordering::Acquire) {
            break got;
        }
    };
    if records.is_empty() {
        return Ok(records);
    }
    let deadline = Instant::now() + cfg.max_wait;
    while records.len() < cfg.max_rows && !stop.load(Ordering::Acquire) {
        heartbeat();
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(20)));
        let last = records.last().map(|r| r.0).expect("non-empty");
        let more = queue.read_after(last, cfg.max_rows - records.len(), Duration::ZERO)?;
        records.extend(more);
    }
    Ok(records)
}

/// How often the batcher looks for days whose stats rollups are missing or
/// stale, when it is idle; under sustained ingest it looks at least every
/// [`ROLLUP_BUSY_EVERY`]. Each turn builds at most [`ROLLUP_DAYS_PER_TURN`]
/// (site, day) rollups and [`ROLLUP_HITS_PER_TURN`] hits, so ingest waits
/// for one short turn at most.
const ROLLUP_EVERY: Duration = Duration::from_secs(60);
const ROLLUP_BUSY_EVERY: Duration = Duration::from_secs(300);
const ROLLUP_DAYS_PER_TURN: usize = 31;
/// At most this many hits are derived in one turn (but always one day), which
/// bounds the memory and the pause a turn costs on a large store.
const ROLLUP_HITS_PER_TURN: u64 = 50_000;

/// When the batcher last refreshed the rollups, whether work was left, and
/// how many site-days a turn may take: halved after a failure (a turn that
/// did not fit in `store.memory_limit`, say), and from then on never as many
/// as failed; doubled back towards that after a success.
struct Rollups {
    last: Instant,
    more: bool,
    days: usize,
    cap: usize,
}

impl Default for Rollups {
    fn default() -> Self {
        // The first idle turn after start looks at once.
        Rollups {
            last: Instant::now() - ROLLUP_BUSY_EVERY,
            more: true,
            days: ROLLUP_DAYS_PER_TURN,
            cap: ROLLUP_DAYS_PER_TURN,
        }
    }
}

impl Rollups {
    fn turn(&mut self, store: &Store, idle: bool) {
        let since = self.last.elapsed();
        let due = if idle {
            self.more || since >= ROLLUP_EVERY
        } else {
            since >= ROLLUP_BUSY_EVERY
        };
        if !due {
            return;
        }
        self.last = Instant::now();
        match store.refresh_rollups(self.days, ROLLUP_HITS_PER_TURN) {
            Ok(r) => {
                self.more = r.more;
                self.days = (self.days * 2).min(self.cap);
                if r.days > 0 {
                    tracing::debug!(days = r.days, more = r.more, "stats rollups refreshed");
                }
            }
            Err(e) => {
                // Retry smaller at the next turn; at one day, only after a while.
                self.more = self.days > 1;
                self.cap = (self.days - 1).max(1);
                self.days = (self.days / 2).max(1);
                tracing::warn!(error = %e, next_days = self.days, "refreshing the stats rollups failed; will retry");
            }
        }
    }
}

/// DuckDB marks its database invalid after a fatal error; every later statement fails.
fn invalidated(e: &hitvault_store::AppendError) -> bool {
    let m = e.to_string();
    m.contains("invalidated") || m.contains("FATAL") || m.contains("Fatal")
}

/// Everything the batcher thread owns or shares.
pub struct Parts {
    pub queue: Queue,
    pub store: Store,
    pub reopen: Reopen,
    pub ops: Receiver<StoreOp>,
    pub metrics: Arc<Metrics>,
    pub cfg: BatcherConfig,
    pub handle: BatcherHandle,
    pub heartbeat: Heartbeat,
    pub retention: Policy,
    pub on_commit: OnCommit,
    /// Exports in progress; rollups wait while there are any (see [`Busy`]).
    pub busy: Busy,
}

/// Counts exports in progress. Building rollups is background work that
/// competes for `store.memory_limit` with an export's scan; it waits until
/// none is running, so an export's memory stays what it is alone.
#[derive(Clone, Default)]
pub struct Busy(Arc<std::sync::atomic::AtomicUsize>);

impl Busy {
    /// Marks one export as running until the guard is dropped.
    pub fn enter(&self) -> BusyGuard {
        self.0.fetch_add(1, Ordering::AcqRel);
        BusyGuard(self.0.clone())
    }

    fn any(&self) -> bool {
        self.0.load(Ordering::Acquire) > 0
    }
}

pub struct BusyGuard(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Runs until `handle.stop` is set and every durable record is committed,
/// then checkpoints.
pub fn run(parts: Parts) -> Finished {
    let Parts {
        queue,
        mut store,
        reopen,
        ops,
        metrics,
        cfg,
        handle,
        mut heartbeat,
        retention,
        mut on_commit,
        busy,
    } = parts;
    let mut next_prune = Instant::now();
    let mut after = handle.committed.load(Ordering::Acquire);
    let mut backoff = Duration::from_millis(100);
    let mut rollups = Rollups::default();
    'outer: loop {
        heartbeat();
        serve_ops(&mut store, &ops, &retention, &mut heartbeat);
        if retention.is_active() && Instant::now() >= next_prune {
            match retention::run(
                &mut store,
                &retention,
                retention::now_us(),
                false,
                &mut heartbeat,
            ) {
                Ok(r) => {
                    let hits: u64 = r.sites.iter().map(|s| s.hits).sum();
                    tracing::info!(hits, "retention pass done");
                }
                Err(e) => tracing::error!(error = %e, "retention pass failed; next try in a day"),
            }
            next_prune = Instant::now() + retention::INTERVAL;
        }
        let records = match read_batch(&queue, after, &cfg, &handle.stop, &mut heartbeat) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "reading the queue failed; retrying");
                if handle.stop.load(Ordering::Acquire) {
                    break;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if records.is_empty() {
            if handle.stop.load(Ordering::Acquire) && queue.stats().last_seq <= after {
                break;
            }
            if !busy.any() {
                rollups.turn(&store, true);
            }
            continue;
        }
        if !busy.any() {
            rollups.turn(&store, false);
        }
        let last = records.last().map(|r| r.0).expect("non-empty");
        let mut hits = Vec::with_capacity(records.len());
        for (seq, bytes) in &records {
            match HitRef::decode(bytes) {
                Ok(h) => hits.push((*seq, h)),
                Err(e) => {
                    metrics.undecodable.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(seq, error = %e, "skipping a queue record that cannot be decoded");
                }
            }
        }
        // Retry the same batch until DuckDB takes it; the queue keeps it meanwhile,
        // and fills up (503) rather than losing anything.
        loop {
            heartbeat();
            let t = Instant::now();
            match store.append_refs(&hits, last) {
                Ok(stats) => {
                    metrics
                        .batch_commit_seconds
                        .observe(t.elapsed().as_secs_f64());
                    metrics.batch_rows.observe(stats.hits as f64);
                    metrics
                        .stored
                        .fetch_add(stats.hits as u64, Ordering::Relaxed);
                    if stats.unknown_site > 0 {
                        tracing::warn!(
                            count = stats.unknown_site,
                            "hits for removed sites were not stored"
                        );
                    }
                    backoff = Duration::from_millis(100);
                    break;
                }
                Err(hitvault_store::AppendError::Stale { committed, .. }) => {
                    // Committed already (e.g. the commit landed before DuckDB failed).
                    tracing::warn!(last, committed, "batch was already committed");
                    after = committed;
                    handle.committed.store(after, Ordering::Release);
                    continue 'outer;
                }
                Err(e) => {
                    metrics.batch_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, rows = hits.len(), "DuckDB refused a batch; retrying");
                    if handle.stop.load(Ordering::Acquire) {
                        tracing::warn!(
                            "stopping with uncommitted hits; they stay in the queue for the next start"
                        );
                        return Finished {
                            committed: after,
                            checkpoint: Err("not attempted".into()),
                        };
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    if invalidated(&e) {
                        match reopen() {
                            Ok(mut s) => {
                                s.replace(&store);
                                store = s;
                                let c = store.committed_seq().unwrap_or(after);
                                tracing::warn!(
                                    committed = c,
                                    "reopened the store after DuckDB invalidated it"
                                );
                                after = c;
                                handle.committed.store(after, Ordering::Release);
                                continue 'outer;
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "reopening the store failed; will retry")
                            }
                        }
                    }
                }
            }
        }
        after = last;
        handle.committed.store(after, Ordering::Release);
        on_commit(&hits);
        if let Err(e) = queue.mark_committed(after) {
            tracing::warn!(error = %e, "could not free committed queue segments");
        }
    }
    serve_ops(&mut store, &ops, &retention, &mut heartbeat);
    let checkpoint = store.checkpoint().map_err(|e| e.to_string());
    Finished {
        committed: after,
        checkpoint,
    }
}
