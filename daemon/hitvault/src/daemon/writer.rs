//! The writer: the one thread that owns DuckDB's write connection, and
//! [`Writer`], the one way to ask it for work.
//!
//! The loop reads the queue in order from the committed position, appends
//! each batch with the Appender in one transaction that also records the
//! batch's last sequence number, and only then lets the queue free the space.
//! A crash anywhere in this loop replays from the position DuckDB holds, so
//! nothing acknowledged is lost and nothing is stored twice.
//!
//! Every other write (sites, goals and funnels, imports, prunes) and every
//! new read connection is a closure sent through [`Writer::call`] (or
//! [`Writer::feed`] for work that takes a stream of messages); the loop runs
//! them between batches, so DuckDB has exactly one writer. A call the writer
//! has not taken up within [`OP_TIMEOUT`] is withdrawn and answered
//! [`Unavailable`]; once taken up it runs to its end. Nothing outside this
//! module holds a channel to the writer.
//!
//! On a cluster node the loop does not read the queue (the cluster's
//! forwarder does): it stores the committed log as the state machine hands
//! it over ([`Replicated`]), each stretch with the machine's state in the
//! same transaction, and serves calls and rollups between them.
//!
//! When DuckDB invalidates its database after a fatal error (a full disk
//! during a commit or a checkpoint does that), the writer drops the store and
//! opens it again: the WAL replay tells it what was committed, and the queue
//! still holds the rest.
//!
//! Retention runs here too (it deletes, so it needs the one writer): at
//! start, every [`crate::retention::INTERVAL`], and on request (a prune
//! through [`Writer::call`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::time::{Duration, Instant};

use hitvault_core::{HitRef, Record};
use hitvault_queue::Queue;
use hitvault_server::metrics::Metrics;
use hitvault_store::Store;

pub use std::sync::mpsc::RecvTimeoutError;

use crate::retention::{self, Policy};

/// Knobs of the writer loop.
#[derive(Clone, Debug)]
pub struct WriterConfig {
    pub max_rows: usize,
    pub max_wait: Duration,
}

/// The writer's position, shared with the rest of the daemon.
#[derive(Clone, Debug)]
pub struct Position {
    /// Last sequence number committed to DuckDB.
    pub committed: Arc<AtomicU64>,
    /// Set to ask the writer to drain what is durable and stop.
    pub stop: Arc<AtomicBool>,
}

/// How long a call waits for the writer to take it up (it serves calls
/// between batches, so this bounds how long a batch commit or a rollup turn
/// may keep a caller waiting before it is told [`Unavailable`]).
pub const OP_TIMEOUT: Duration = Duration::from_secs(30);

/// Work for the writer: runs on its thread with the store and the heartbeat
/// (call it between long steps: it keeps systemd's watchdog fed).
type Op = Box<dyn FnOnce(&mut Store, &mut dyn FnMut()) + Send>;

/// Why the writer did not do a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    /// The writer thread has stopped (the daemon is shutting down, or it died).
    #[error("the store is closed")]
    Closed,
    /// The writer did not take the call up within [`OP_TIMEOUT`]; it was
    /// withdrawn and will not run.
    #[error("the store did not answer within {} s", OP_TIMEOUT.as_secs())]
    Busy,
}

/// The one handle to the writer. Cheap to clone.
#[derive(Clone)]
pub struct Writer {
    ops: Sender<Op>,
    /// Calls sent and not yet taken from the inbox.
    waiting: Arc<AtomicUsize>,
}

/// The writer's end of [`Writer`]: handed to [`run`].
pub struct Inbox(Receiver<Op>, Arc<AtomicUsize>);

impl Inbox {
    /// The next call waiting, if any.
    fn try_recv(&self) -> Option<Op> {
        let op = self.0.try_recv().ok()?;
        self.1.fetch_sub(1, Ordering::AcqRel);
        Some(op)
    }

    /// True if a call waits (long background work stops for it).
    fn waiting(&self) -> bool {
        self.1.load(Ordering::Acquire) > 0
    }
}

/// A new writer handle and the inbox its loop serves.
pub fn channel() -> (Writer, Inbox) {
    let (ops, rx) = std::sync::mpsc::channel();
    let waiting = Arc::new(AtomicUsize::new(0));
    (
        Writer {
            ops,
            waiting: waiting.clone(),
        },
        Inbox(rx, waiting),
    )
}

const QUEUED: u8 = 0;
const TAKEN: u8 = 1;
const WITHDRAWN: u8 = 2;

/// A call sent to the writer; [`Pending::wait`] gets its answer.
pub struct Pending<T> {
    answer: Receiver<T>,
    state: Arc<AtomicU8>,
}

impl<T> Pending<T> {
    /// Waits up to [`OP_TIMEOUT`] for the writer to take the call up (and
    /// withdraws it if it did not), then for as long as the call runs.
    pub fn wait(self) -> Result<T, Unavailable> {
        self.wait_at_most(OP_TIMEOUT)
    }

    /// [`Pending::wait`] with another time to be taken up in.
    fn wait_at_most(self, timeout: Duration) -> Result<T, Unavailable> {
        match self.answer.recv_timeout(timeout) {
            Ok(t) => return Ok(t),
            Err(RecvTimeoutError::Disconnected) => return Err(Unavailable::Closed),
            Err(RecvTimeoutError::Timeout) => {}
        }
        if self
            .state
            .compare_exchange(QUEUED, WITHDRAWN, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return Err(Unavailable::Busy);
        }
        // Taken up: it runs to its end.
        self.answer.recv().map_err(|_| Unavailable::Closed)
    }
}

/// The sending end of a [`Writer::feed`] call's messages.
pub struct Feeder<M>(SyncSender<M>);

impl<M> Feeder<M> {
    /// Sends one message, waiting while the call is [`Writer::feed`]'s
    /// `depth` behind; `false` once the call has stopped reading.
    pub fn send(&self, m: M) -> bool {
        self.0.send(m).is_ok()
    }
}

/// The call's end of a [`Writer::feed`]: the messages, as they arrive.
pub struct Feed<M>(Receiver<M>);

impl<M> Feed<M> {
    /// The next message, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<M, RecvTimeoutError> {
        self.0.recv_timeout(timeout)
    }
}

impl Writer {
    /// Runs `f` on the writer, between batches, and returns its answer.
    pub fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store, &mut dyn FnMut()) -> T + Send + 'static,
    ) -> Result<T, Unavailable> {
        self.submit(f)?.wait()
    }

    /// Sends `f` to the writer and returns at once.
    pub fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store, &mut dyn FnMut()) -> T + Send + 'static,
    ) -> Result<Pending<T>, Unavailable> {
        let (tx, answer) = std::sync::mpsc::channel();
        let state = Arc::new(AtomicU8::new(QUEUED));
        let mine = state.clone();
        let op: Op = Box::new(move |store, heartbeat| {
            if mine
                .compare_exchange(QUEUED, TAKEN, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                let _ = tx.send(f(store, heartbeat));
            }
        });
        self.waiting.fetch_add(1, Ordering::AcqRel);
        if self.ops.send(op).is_err() {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Unavailable::Closed);
        }
        Ok(Pending { answer, state })
    }

    /// [`Writer::submit`] for work that reads a stream of messages (an
    /// import's record batches): `f` gets them from its [`Feed`] as the
    /// caller sends them through the [`Feeder`], at most `depth` ahead.
    pub fn feed<M: Send + 'static, T: Send + 'static>(
        &self,
        depth: usize,
        f: impl FnOnce(&mut Store, &mut dyn FnMut(), Feed<M>) -> T + Send + 'static,
    ) -> Result<(Feeder<M>, Pending<T>), Unavailable> {
        let (tx, rx) = std::sync::mpsc::sync_channel(depth);
        let feed = Feed(rx);
        let pending = self.submit(move |store, heartbeat| f(store, heartbeat, feed))?;
        Ok((Feeder(tx), pending))
    }
}

/// Called at every turn of the loop and at least every [`HEARTBEAT_EVERY`]
/// while a batch waits or fills (whatever `batch.max_wait_ms` is), but not
/// during a DuckDB commit: the daemon sends systemd's watchdog keep-alive
/// from here, so a stuck writer gets the daemon restarted.
pub type Heartbeat = Box<dyn FnMut() + Send>;

/// Longest stretch the writer waits for the queue without a heartbeat.
pub const HEARTBEAT_EVERY: Duration = Duration::from_millis(250);

/// Called with every batch once it is committed (and visible to readers):
/// the daemon tells the realtime streams which sites changed.
pub type OnCommit = Box<dyn for<'a> FnMut(&[(u64, HitRef<'a>)]) + Send>;

/// Opens the store again after DuckDB invalidated it.
pub type Reopen = Box<dyn Fn() -> Result<Store, hitvault_store::OpenError> + Send>;

/// What the writer did, for the shutdown log.
#[derive(Debug)]
pub struct Finished {
    pub committed: u64,
    pub checkpoint: Result<(), String>,
}

/// Runs the calls waiting in the inbox.
fn serve_calls(store: &mut Store, inbox: &Inbox, heartbeat: &mut Heartbeat) {
    while let Some(op) = inbox.try_recv() {
        op(store, &mut *heartbeat);
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
    cfg: &WriterConfig,
    stop: &AtomicBool,
    heartbeat: &mut Heartbeat,
) -> Result<Vec<(u64, Vec<u8>)>, hitvault_queue::ReadError> {
    // Wait for the first record in slices, so that the watchdog hears from
    // an idle writer however long `max_wait` is.
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

/// How often the writer looks for days whose stats rollups are missing or
/// stale: every [`ROLLUP_EVERY`] when idle, at least every
/// [`ROLLUP_BUSY_EVERY`] under sustained ingest.
///
/// An idle turn builds every stale day, in steps: a step holds at most
/// [`ROLLUP_DAYS_PER_STEP`] site-days and as many hits as
/// `store.memory_limit` allows at [`ROLLUP_BYTES_PER_HIT`] each (at least
/// [`ROLLUP_HITS_PER_TURN`], at most [`ROLLUP_HITS_PER_STEP`]). Between
/// steps it stops as soon as an export starts, a call waits in the inbox or
/// hits arrive in the queue: bulk history is summarised at the machine's
/// speed, and ingest, calls and exports wait for one step at most (an
/// export's memory is never shared with more than one step). It comes back
/// at the next idle moment. A busy turn builds one step of at most
/// [`ROLLUP_DAYS_PER_TURN`] site-days and [`ROLLUP_HITS_PER_TURN`] hits.
const ROLLUP_EVERY: Duration = Duration::from_secs(60);
const ROLLUP_BUSY_EVERY: Duration = Duration::from_secs(300);
const ROLLUP_DAYS_PER_TURN: usize = 31;
/// At most this many hits are derived in a busy turn (but always one day),
/// which bounds the memory and the pause a turn costs on a large store.
const ROLLUP_HITS_PER_TURN: u64 = 50_000;
const ROLLUP_DAYS_PER_STEP: usize = 366;
/// The memory a step counts on per hit it derives: 50,000 hits within
/// 64 MB (measured: the 5M-hit export test), about 780,000 within the
/// default 1 GB (a million was measured to fit).
const ROLLUP_BYTES_PER_HIT: u64 = 1_280;
const ROLLUP_HITS_PER_STEP: u64 = 1_000_000;

/// When the writer last refreshed the rollups, whether work was left, and
/// how many site-days a busy turn may take: halved after a failure (a turn
/// that did not fit in `store.memory_limit`, say), and from then on never as
/// many as failed; doubled back towards that after a success. An idle
/// turn's steps take the same share of their own budget.
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
    /// A turn, if one is due; an idle one stops between steps when
    /// `interrupt` says so.
    fn turn(
        &mut self,
        store: &Store,
        idle: bool,
        interrupt: &mut dyn FnMut() -> bool,
        heartbeat: &mut Heartbeat,
    ) {
        let since = self.last.elapsed();
        let due = if idle {
            self.more || since >= ROLLUP_EVERY
        } else {
            since >= ROLLUP_BUSY_EVERY
        };
        if !due {
            return;
        }
        let t = Instant::now();
        let done = if idle {
            self.catch_up(store, interrupt, heartbeat)
        } else {
            store
                .refresh_rollups(self.days, ROLLUP_HITS_PER_TURN)
                .map(|r| (r.days, r.more))
        };
        self.last = Instant::now();
        match done {
            Ok((days, more)) => {
                self.more = more;
                self.days = (self.days * 2).min(self.cap);
                if days > 0 {
                    tracing::debug!(
                        days,
                        more,
                        ms = t.elapsed().as_millis() as u64,
                        "stats rollups refreshed"
                    );
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

    /// Builds every stale day, a step at a time, until none is left or
    /// `interrupt` says to stop. The site-days built, and whether any are
    /// left.
    fn catch_up(
        &self,
        store: &Store,
        interrupt: &mut dyn FnMut() -> bool,
        heartbeat: &mut Heartbeat,
    ) -> Result<(usize, bool), hitvault_store::QueryError> {
        let stale = store.stale_rollups()?;
        let share = |full: u64| (full * self.days as u64 / ROLLUP_DAYS_PER_TURN as u64).max(1);
        let budget = store
            .memory_limit_bytes()?
            .map_or(ROLLUP_HITS_PER_TURN, |b| b / ROLLUP_BYTES_PER_HIT)
            .clamp(ROLLUP_HITS_PER_TURN, ROLLUP_HITS_PER_STEP);
        let (days, hits) = (share(ROLLUP_DAYS_PER_STEP as u64) as usize, share(budget));
        let mut rest = &stale[..];
        while !rest.is_empty() {
            let n = hitvault_store::rollup::step(rest, days, hits);
            store.build_rollups(&rest[..n])?;
            rest = &rest[n..];
            heartbeat();
            if !rest.is_empty() && interrupt() {
                break;
            }
        }
        Ok((stale.len() - rest.len(), !rest.is_empty()))
    }
}

/// DuckDB marks its database invalid after a fatal error; every later statement fails.
fn invalidated(e: &hitvault_store::AppendError) -> bool {
    let m = e.to_string();
    m.contains("invalidated") || m.contains("FATAL") || m.contains("Fatal")
}

/// Everything the writer thread owns or shares.
pub struct WriterParts {
    pub queue: Queue,
    pub store: Store,
    pub reopen: Reopen,
    pub inbox: Inbox,
    pub metrics: Arc<Metrics>,
    pub cfg: WriterConfig,
    pub position: Position,
    pub heartbeat: Heartbeat,
    pub retention: Policy,
    pub on_commit: OnCommit,
    /// Exports in progress; rollups wait while there are any.
    pub exports: ExportsRunning,
    /// Where a scheduled prune is recorded (actor `system`).
    pub audit: Arc<hitvault_accounts::AuditLog>,
    /// On a cluster node, the committed log's batches: the writer stores
    /// these instead of reading the queue (the forwarder reads it).
    pub replicated: Option<Receiver<Replicated>>,
}

/// What the cluster's state machine hands the writer, in the log's order.
pub enum Replicated {
    /// A stretch of the committed log to store.
    Batch(hitvault_cluster::Batch),
    /// A snapshot's copy of a store to install in place of this one
    /// (`Store::install_copy`), after every batch handed over before it;
    /// the answer is the cluster state the copy holds.
    Install {
        file: std::path::PathBuf,
        done: std::sync::mpsc::SyncSender<Result<Vec<u8>, String>>,
    },
    /// A retention pass the log holds, run after every batch handed over
    /// before it (archived to this node's `archive_dir`, then deleted).
    Retention {
        pass: retention::Pass,
        done: std::sync::mpsc::SyncSender<Result<retention::Report, String>>,
    },
}

/// Records a scheduled prune that deleted hits.
fn audit_prune(log: &hitvault_accounts::AuditLog, r: &retention::Report) {
    let report = serde_json::to_value(r).unwrap_or_default();
    let mut e = hitvault_accounts::NewEntry::new(
        crate::links::now_ms(),
        hitvault_accounts::Actor::System,
        hitvault_accounts::Kind::Prune,
    );
    if let serde_json::Value::Object(m) = hitvault_server::audit::prune_detail(&report) {
        e.detail = m;
    }
    if let Err(e) = log.append(e) {
        tracing::error!(error = %e, "writing the audit log failed");
    }
}

/// Counts exports in progress. Building rollups is background work that
/// competes for `store.memory_limit` with an export's scan; it waits until
/// none is running, so an export's memory stays what it is alone.
#[derive(Clone, Default)]
pub struct ExportsRunning(Arc<std::sync::atomic::AtomicUsize>);

impl ExportsRunning {
    /// Marks one export as running until the guard is dropped.
    pub fn enter(&self) -> ExportGuard {
        self.0.fetch_add(1, Ordering::AcqRel);
        ExportGuard(self.0.clone())
    }

    fn any(&self) -> bool {
        self.0.load(Ordering::Acquire) > 0
    }
}

/// One export running, until dropped.
pub struct ExportGuard(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for ExportGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Runs until `position.stop` is set and every durable record is committed,
/// then checkpoints.
pub fn run(mut parts: WriterParts) -> Finished {
    if let Some(log) = parts.replicated.take() {
        let mut w = Loop::new(parts);
        w.clustered = true;
        return w.run_replicated(log);
    }
    let mut w = Loop::new(parts);
    loop {
        w.maintenance_turn();
        let Some(records) = w.next_batch() else {
            return w.finish();
        };
        if records.is_empty() {
            continue;
        }
        if let Err(stopped) = w.commit(&records) {
            return stopped;
        }
    }
}

/// The writer loop's state between turns.
struct Loop {
    parts: WriterParts,
    /// The last position committed.
    after: u64,
    /// Pause before retrying a failed read or commit; doubled up to 5 s.
    backoff: Duration,
    next_prune: Instant,
    rollups: Rollups,
    /// A cluster node's: retention passes come through the log.
    clustered: bool,
}

impl Loop {
    fn new(parts: WriterParts) -> Loop {
        Loop {
            after: parts.position.committed.load(Ordering::Acquire),
            parts,
            backoff: Duration::from_millis(100),
            next_prune: Instant::now(),
            rollups: Rollups::default(),
            clustered: false,
        }
    }

    fn stopping(&self) -> bool {
        self.parts.position.stop.load(Ordering::Acquire)
    }

    fn pause(&mut self) {
        std::thread::sleep(self.backoff);
        self.backoff = (self.backoff * 2).min(Duration::from_secs(5));
    }

    fn set_committed(&mut self, at: u64) {
        self.after = at;
        self.parts.position.committed.store(at, Ordering::Release);
    }

    /// The work between batches: the calls waiting, and the retention pass
    /// when one is due.
    fn maintenance_turn(&mut self) {
        let p = &mut self.parts;
        (p.heartbeat)();
        serve_calls(&mut p.store, &p.inbox, &mut p.heartbeat);
        // On a cluster node, retention passes come through the log.
        if !self.clustered && p.retention.is_active() && Instant::now() >= self.next_prune {
            match retention::run(
                &mut p.store,
                &p.retention,
                retention::now_us(),
                false,
                &mut p.heartbeat,
            ) {
                Ok(r) => {
                    let hits: u64 = r.sites.iter().map(|s| s.hits).sum();
                    tracing::info!(hits, "retention pass done");
                    if hits > 0 {
                        audit_prune(&p.audit, &r);
                    }
                }
                Err(e) => tracing::error!(error = %e, "retention pass failed; next try in a day"),
            }
            self.next_prune = Instant::now() + retention::INTERVAL;
        }
    }

    /// The next records to commit (none after a failed read, or while idle,
    /// when the rollups get their turn); `None` once asked to stop with
    /// everything durable committed.
    fn next_batch(&mut self) -> Option<Vec<(u64, Vec<u8>)>> {
        let p = &mut self.parts;
        let read = read_batch(
            &p.queue,
            self.after,
            &p.cfg,
            &p.position.stop,
            &mut p.heartbeat,
        );
        let records = match read {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "reading the queue failed; retrying");
                if self.stopping() {
                    return None;
                }
                self.pause();
                return Some(vec![]);
            }
        };
        let idle = records.is_empty();
        if idle && self.stopping() && self.parts.queue.stats().last_seq <= self.after {
            return None;
        }
        if !self.parts.exports.any() {
            let p = &mut self.parts;
            let after = self.after;
            let (exports, inbox, queue) = (&p.exports, &p.inbox, &p.queue);
            let mut interrupt =
                || exports.any() || inbox.waiting() || queue.stats().last_seq > after;
            self.rollups
                .turn(&p.store, idle, &mut interrupt, &mut p.heartbeat);
        }
        Some(records)
    }

    /// A cluster node's loop: stores each stretch of the committed log as
    /// the state machine hands it over, serves calls and rollups between
    /// them, and stops once asked (after the Raft node stopped, so nothing
    /// is handed over any more).
    fn run_replicated(mut self, log: Receiver<Replicated>) -> Finished {
        // A batch taken from the log while the rollups had their turn.
        let mut early: Option<Replicated> = None;
        loop {
            self.maintenance_turn();
            let next = match early.take() {
                Some(r) => Ok(r),
                None => log.recv_timeout(HEARTBEAT_EVERY),
            };
            match next {
                Ok(Replicated::Retention { pass, done }) => {
                    let p = &mut self.parts;
                    let policy = pass.policy(p.retention.archive_dir.clone());
                    let r =
                        retention::run(&mut p.store, &policy, pass.now_us, false, &mut p.heartbeat);
                    match &r {
                        Ok(r) => {
                            let hits: u64 = r.sites.iter().map(|s| s.hits).sum();
                            tracing::info!(hits, "retention pass of the cluster's log done");
                            if hits > 0 {
                                audit_prune(&p.audit, r);
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "a retention pass of the cluster's log failed")
                        }
                    }
                    let _ = done.send(r);
                }
                Ok(Replicated::Install { file, done }) => {
                    let t = Instant::now();
                    // One transaction over the whole store: the watchdog
                    // hears from this thread while another runs it.
                    let (store, heartbeat) = (&mut self.parts.store, &mut self.parts.heartbeat);
                    let r = std::thread::scope(|sc| {
                        let job = sc.spawn(|| store.install_copy(&file));
                        while !job.is_finished() {
                            heartbeat();
                            std::thread::sleep(Duration::from_millis(200));
                        }
                        job.join().expect("the install does not panic")
                    });
                    match &r {
                        Ok(_) => {
                            // The copy's days may lack rollups: look at once.
                            self.rollups.more = true;
                            tracing::info!(
                                ms = t.elapsed().as_millis() as u64,
                                "installed a snapshot's copy of the store"
                            );
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "installing a snapshot's copy failed")
                        }
                    }
                    let _ = done.send(r.map_err(|e| e.to_string()));
                }
                Ok(Replicated::Batch(mut batch)) => {
                    // What else waits is stored in the same transaction (one
                    // DuckDB commit for many of the log's entries), up to
                    // `batch.max_rows` records: the last state covers them all.
                    while batch.records.len() < self.parts.cfg.max_rows {
                        match log.try_recv() {
                            Ok(Replicated::Batch(more)) => {
                                batch.records.extend(more.records);
                                batch.own = batch.own.max(more.own);
                                batch.state = more.state;
                            }
                            // An install waits for this batch's commit.
                            Ok(install) => {
                                early = Some(install);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    let cluster = (batch.own, batch.state.as_slice());
                    if let Err(stopped) = self.commit_with(&batch.records, Some(cluster)) {
                        return stopped;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    if self.stopping() {
                        return self.finish();
                    }
                    let p = &mut self.parts;
                    if !p.exports.any() {
                        let (exports, inbox) = (&p.exports, &p.inbox);
                        // A step ends early for an export, a call or the log.
                        let mut interrupt = || {
                            exports.any()
                                || inbox.waiting()
                                || early.is_some()
                                || match log.try_recv() {
                                    Ok(r) => {
                                        early = Some(r);
                                        true
                                    }
                                    Err(_) => false,
                                }
                        };
                        self.rollups
                            .turn(&p.store, true, &mut interrupt, &mut p.heartbeat);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return self.finish(),
            }
        }
    }

    /// Commits `records` in one transaction, retrying until DuckDB takes
    /// them: the queue keeps them meanwhile, and fills up (503) rather than
    /// losing anything. `Err` when asked to stop with them uncommitted.
    fn commit(&mut self, records: &[(u64, Vec<u8>)]) -> Result<(), Finished> {
        self.commit_with(records, None)
    }

    /// [`Loop::commit`]; on a cluster node with `cluster`: this node's own
    /// position in its queue and the state machine's state, stored with the
    /// records (which may be none: a membership change, say).
    fn commit_with(
        &mut self,
        records: &[(u64, Vec<u8>)],
        cluster: Option<(u64, &[u8])>,
    ) -> Result<(), Finished> {
        let last = match cluster {
            Some((own, _)) => own.max(self.after),
            None => records.last().map(|r| r.0).expect("non-empty"),
        };
        let mut hits = Vec::with_capacity(records.len());
        let mut engagements = Vec::new();
        for (seq, bytes) in records {
            match Record::decode(bytes) {
                Ok(Record::Hit(h)) => hits.push((*seq, h)),
                Ok(Record::Engagement(e)) => engagements.push((*seq, e)),
                Err(e) => {
                    self.parts
                        .metrics
                        .undecodable
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::error!(seq, error = %e, "skipping a queue record that cannot be decoded");
                }
            }
        }
        loop {
            (self.parts.heartbeat)();
            let t = Instant::now();
            let metrics = &self.parts.metrics;
            let appended = match cluster {
                Some((own, state)) => {
                    self.parts
                        .store
                        .append_replicated(&hits, &engagements, own, state)
                }
                None => self.parts.store.append_batch(&hits, &engagements, last),
            };
            match appended {
                Ok(stats) => {
                    metrics
                        .batch_commit_seconds
                        .observe(t.elapsed().as_secs_f64());
                    metrics.batch_rows.observe(stats.hits as f64);
                    metrics
                        .stored
                        .fetch_add(stats.hits as u64, Ordering::Relaxed);
                    metrics
                        .engagements_stored
                        .fetch_add(stats.engagements as u64, Ordering::Relaxed);
                    metrics
                        .engagements_unattributed
                        .fetch_add(stats.unattributed as u64, Ordering::Relaxed);
                    if stats.unknown_site > 0 {
                        tracing::warn!(
                            count = stats.unknown_site,
                            "hits for removed sites were not stored"
                        );
                    }
                    self.backoff = Duration::from_millis(100);
                    break;
                }
                Err(hitvault_store::AppendError::Stale { committed, .. }) => {
                    // Committed already (e.g. the commit landed before DuckDB failed).
                    tracing::warn!(last, committed, "batch was already committed");
                    self.set_committed(committed);
                    return Ok(());
                }
                Err(e) => {
                    metrics.batch_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, rows = hits.len(), "DuckDB refused a batch; retrying");
                    if self.stopping() {
                        tracing::warn!(
                            "stopping with uncommitted hits; they stay in the queue for the next start"
                        );
                        return Err(Finished {
                            committed: self.after,
                            checkpoint: Err("not attempted".into()),
                        });
                    }
                    self.pause();
                    if invalidated(&e) && self.reopen() {
                        let Some((_, state)) = cluster else {
                            return Ok(());
                        };
                        // The commit may have landed before DuckDB failed:
                        // then the stored state is this batch's.
                        if self.parts.store.cluster_state().ok().flatten().as_deref() == Some(state)
                        {
                            break;
                        }
                    }
                }
            }
        }
        self.set_committed(last);
        (self.parts.on_commit)(&hits);
        if last > 0
            && let Err(e) = self.parts.queue.mark_committed(last)
        {
            tracing::warn!(error = %e, "could not free committed queue segments");
        }
        Ok(())
    }

    /// Opens the store again after DuckDB invalidated it, and resumes from
    /// what it committed; `false` if that failed (the commit is retried).
    fn reopen(&mut self) -> bool {
        match (self.parts.reopen)() {
            Ok(mut s) => {
                s.replace(&self.parts.store);
                self.parts.store = s;
                let c = self.parts.store.committed_seq().unwrap_or(self.after);
                tracing::warn!(
                    committed = c,
                    "reopened the store after DuckDB invalidated it"
                );
                self.set_committed(c);
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "reopening the store failed; will retry");
                false
            }
        }
    }

    /// The last calls, then the checkpoint.
    fn finish(mut self) -> Finished {
        let p = &mut self.parts;
        serve_calls(&mut p.store, &p.inbox, &mut p.heartbeat);
        Finished {
            committed: self.after,
            checkpoint: p.store.checkpoint().map_err(|e| e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &hitvault_store::StoreOptions::default()).unwrap();
        (dir, store)
    }

    fn no_heartbeat() -> Heartbeat {
        Box::new(|| {})
    }

    #[test]
    fn a_call_runs_on_the_thread_that_serves_the_inbox_and_answers() {
        let (_dir, mut store) = store();
        let (writer, inbox) = channel();
        let served = std::thread::spawn(move || {
            // Serves calls until every handle is dropped.
            while let Ok(op) = inbox.0.recv() {
                op(&mut store, &mut no_heartbeat());
            }
        });
        let caller = std::thread::current().id();
        let (sites, ran_on) = writer
            .call(|s, beat| {
                beat();
                (s.sites().unwrap().len(), std::thread::current().id())
            })
            .unwrap();
        assert_eq!(sites, 0);
        assert_ne!(ran_on, caller, "the call ran on the caller's thread");
        drop(writer);
        served.join().unwrap();
    }

    #[test]
    fn a_call_not_taken_up_in_time_is_withdrawn_and_never_runs() {
        let (_dir, mut store) = store();
        let (writer, inbox) = channel();
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        let pending = writer
            .submit(move |_, _| flag.store(true, Ordering::SeqCst))
            .unwrap();
        assert_eq!(
            pending.wait_at_most(Duration::from_millis(50)),
            Err(Unavailable::Busy)
        );
        // The writer gets to its inbox only now.
        serve_calls(&mut store, &inbox, &mut no_heartbeat());
        assert!(!ran.load(Ordering::SeqCst), "a withdrawn call ran");
    }

    #[test]
    fn a_call_taken_up_runs_to_its_end_however_long_it_takes() {
        let (_dir, mut store) = store();
        let (writer, inbox) = channel();
        let (started, taken_up) = std::sync::mpsc::channel();
        let pending = writer
            .submit(move |_, _| {
                started.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(300));
                7
            })
            .unwrap();
        let served = std::thread::spawn(move || {
            serve_calls(&mut store, &inbox, &mut no_heartbeat());
        });
        taken_up.recv().unwrap();
        // Taken up: the caller's time to be taken up in (far shorter than
        // the call) no longer matters; it waits for the end.
        assert_eq!(pending.wait_at_most(Duration::from_millis(10)), Ok(7));
        served.join().unwrap();
    }

    #[test]
    fn a_writer_that_stopped_answers_closed() {
        let (writer, inbox) = channel();
        drop(inbox);
        assert_eq!(
            writer.call(|_, _| ()).map_err(|e| e.to_string()),
            Err("the store is closed".to_owned())
        );
    }

    #[test]
    fn an_idle_rollup_turn_builds_in_steps_and_stops_between_them_when_asked() {
        let (_dir, mut store) = store();
        store.upsert_site("steps.example", &[], "config").unwrap();
        // One hit on each of the 30 days before yesterday.
        let today_ms = (crate::links::now_ms() as i64).div_euclid(86_400_000) * 86_400_000;
        let hits: Vec<(u64, hitvault_core::Hit)> = (2..32u64)
            .map(|d| {
                let h = hitvault_core::Hit {
                    ts_ms: today_ms - d as i64 * 86_400_000 + 3_600_000,
                    site: "steps.example".into(),
                    kind: hitvault_core::Kind::Pageview,
                    name: "pageview".into(),
                    path: "/".into(),
                    referrer: String::new(),
                    source: String::new(),
                    utm: Default::default(),
                    browser: String::new(),
                    browser_version: String::new(),
                    os: String::new(),
                    os_version: String::new(),
                    device: hitvault_core::Device::Desktop,
                    country: String::new(),
                    language: String::new(),
                    screen_width: 0,
                    visitor: d,
                    props: Vec::new(),
                };
                (d, h)
            })
            .collect();
        store.append(&hits, 31).unwrap();
        assert_eq!(store.stale_rollups().unwrap().len(), 30);
        // After a failure at full size: steps of 366 / 31 = 11 site-days.
        let mut r = Rollups {
            days: 1,
            cap: 1,
            ..Rollups::default()
        };
        let mut asked = 0;
        let mut stop = || {
            asked += 1;
            true
        };
        let (days, more) = r.catch_up(&store, &mut stop, &mut no_heartbeat()).unwrap();
        assert_eq!(
            (days, more, asked),
            (11, true, 1),
            "one step, then it stopped"
        );
        assert_eq!(store.stale_rollups().unwrap().len(), 19);
        // Not interrupted, a turn builds the rest (two more steps).
        r.turn(&store, true, &mut || false, &mut no_heartbeat());
        assert!(!r.more);
        assert_eq!(store.stale_rollups().unwrap(), []);
    }

    #[test]
    fn a_waiting_call_is_seen_until_it_is_taken() {
        let (_dir, mut store) = store();
        let (writer, inbox) = channel();
        assert!(!inbox.waiting());
        let pending = writer.submit(|_, _| 7).unwrap();
        assert!(inbox.waiting());
        serve_calls(&mut store, &inbox, &mut no_heartbeat());
        assert!(!inbox.waiting());
        assert_eq!(pending.wait(), Ok(7));
    }

    #[test]
    fn a_fed_call_reads_what_the_caller_sends() {
        let (_dir, mut store) = store();
        let (writer, inbox) = channel();
        let (feeder, pending) = writer
            .feed(2, |_, _, feed: Feed<u32>| {
                let mut sum = 0;
                while let Ok(n) = feed.recv_timeout(Duration::from_secs(5)) {
                    sum += n;
                }
                sum
            })
            .unwrap();
        let served = std::thread::spawn(move || {
            serve_calls(&mut store, &inbox, &mut no_heartbeat());
        });
        for n in 1..=10 {
            assert!(feeder.send(n));
        }
        drop(feeder);
        assert_eq!(pending.wait(), Ok(55));
        served.join().unwrap();
    }
}
