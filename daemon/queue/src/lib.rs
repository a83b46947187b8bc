//! hitvault's durable on-disk queue between HTTP ingest and the DuckDB writer.
//!
//! # What it owns
//! One directory (`QueueConfig::dir`) and everything in it: segment files
//! named by their first sequence number (`00000000000000000001.seg`), spare
//! segments being prepared (`*.seg.tmp`) and a `LOCK` file. It assigns the
//! sequence numbers (from 1, strictly increasing, no gaps in normal
//! operation), makes records durable before acknowledging them, hands them to
//! the store's writer in order, and deletes whole segments once it says
//! they are stored elsewhere.
//!
//! # What it never does
//! It never decides what is committed: the caller passes the committed
//! position in (`Queue::open`, `Queue::mark_committed`); the authoritative
//! copy lives in DuckDB, in the same transaction as the records, and the
//! queue persists no offset of its own. It never interprets payloads, never
//! writes outside its directory, never acknowledges a record before its
//! group's `fdatasync` returned, never shows readers a record whose group
//! fsync has not completed, and never blocks an async caller (appends return
//! futures; only `read_after` and `Append::wait` block, for sync threads).
//!
//! # How
//! Records are CRC-framed (see `frame.rs`: `len u32 | crc32 u32 | seq u64 |
//! payload`, little-endian; `len` = 8 + payload length, 0 = end) in segments
//! that are allocated and zero-filled before use, so an `fdatasync` after a
//! write has no metadata to flush. One writer thread ("hv-queue-writer")
//! drains every waiting request (up to 4 MiB), writes them with one
//! positioned write and one `fdatasync` (group commit: many concurrent HTTP
//! requests share one fsync), then answers each. A helper thread
//! ("hv-queue-prealloc") keeps one spare segment ready so that rolling to a
//! new segment is a rename plus a directory fsync.
//!
//! # Crash behaviour
//! After a crash at any point, `open` yields every acknowledged record, maybe
//! some that were written but not acknowledged, never a corrupt record, and
//! never a gap before an acknowledged one: a bad frame in the last segment is
//! a torn write and becomes the write position (the rest is zeroed); a bad
//! frame anywhere else is [`OpenError::Corrupt`].
//!
//! # Disk use
//! `max_bytes` bounds the frame bytes of records that are appended but not
//! committed; on disk the queue uses at most about `max_bytes` plus three
//! segments (the partly committed oldest one, the current one, the spare).

use std::fmt;
use std::fs::File;
use std::future::Future;
use std::io;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

mod error;
mod frame;
mod message;
mod recover;
mod segment;
mod shared;
mod writer;

pub use error::{AppendError, OpenError, ReadError};

use frame::{Next, RecordReader};
use message::{Reply, Request};
use shared::{ReadCursor, Shared, State, lock, read, write};
use writer::Writer;

/// Default size of one segment file: 64 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// Default bound on the bytes of uncommitted records: 1 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
/// Default largest payload: 1 MiB.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1 << 20;
/// Smallest accepted `segment_bytes`.
pub const MIN_SEGMENT_BYTES: u64 = 4096;

/// Bound on the frame bytes accepted but not yet written (waiting in the
/// writer's channel or in the group being written): the memory the queue may
/// hold for appends in flight. 64 MiB is many groups of 4 MiB, so it is only
/// reached when the disk stalls; then appends get `Full` (short retry).
const MAX_INFLIGHT_BYTES: u64 = 64 << 20;
/// `retry_after` when the backlog is at `max_bytes`: the store's writer has to
/// catch up, which takes a while.
const FULL_RETRY_AFTER: Duration = Duration::from_secs(1);
/// `retry_after` when only the in-flight bound is hit: a disk hiccup.
const BUSY_RETRY_AFTER: Duration = Duration::from_millis(100);
/// Upper bound on the sparse index stride (see `SegMeta::index`).
const MAX_INDEX_STRIDE: u64 = 64 << 10;

/// Where and how large the queue is.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// The queue's directory; created (with its parents) if missing.
    pub dir: PathBuf,
    /// Size of each pre-allocated segment file (at least [`MIN_SEGMENT_BYTES`]).
    pub segment_bytes: u64,
    /// Bound on the frame bytes (payload + 16) of appended, uncommitted
    /// records; beyond it appends get [`AppendError::Full`].
    pub max_bytes: u64,
    /// Largest payload accepted by `append`; larger gives
    /// [`AppendError::TooLarge`]. Also capped so one frame fits in a segment
    /// and in `max_bytes`.
    pub max_record_bytes: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            dir: PathBuf::from("queue"),
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            max_bytes: DEFAULT_MAX_BYTES,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        }
    }
}

/// Called on the writer thread after each group commit, before the group's
/// appends are answered and before the next group starts: an acknowledged
/// append has always been observed. Keep it cheap (update metrics; it delays
/// the acknowledgements) and do not panic in it.
pub type GroupObserver = Arc<dyn Fn(GroupCommit) + Send + Sync>;

/// What one group commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommit {
    /// Records made durable by this group.
    pub records: usize,
    /// Bytes written (frames, including headers).
    pub bytes: usize,
    /// Time spent in `fdatasync`.
    pub fsync: Duration,
}

/// A snapshot of the queue's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Durable records with a seq above the committed position.
    pub pending_records: u64,
    /// Size of the segment files, including the spare being kept ready.
    pub bytes_on_disk: u64,
    /// Number of segment files (the spare being kept ready not counted).
    pub segments: usize,
    /// Seq of the last durable record (0 if none since the queue was created).
    pub last_seq: u64,
    /// The committed position.
    pub committed: u64,
    /// fsync/fdatasync calls since open: group commits, segment rolls,
    /// directory syncs, recovery.
    pub fsyncs: u64,
}

/// A handle to the queue; clones share it. Dropping the last handle closes it.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("dir", &self.inner.shared.dir)
            .finish_non_exhaustive()
    }
}

struct Threads {
    writer: JoinHandle<()>,
    preparer: JoinHandle<()>,
}

struct Inner {
    shared: Arc<Shared>,
    /// Effective payload limit of one record.
    record_limit: usize,
    /// Limit on the frame bytes of one `append_all` (one segment, and `max_bytes`).
    batch_limit: u64,
    max_bytes: u64,
    threads: Mutex<Option<Threads>>,
    /// Holds the directory's flock until close.
    lock_file: Mutex<Option<File>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.close();
    }
}

impl Queue {
    /// Opens or creates the queue in `cfg.dir`.
    ///
    /// Scans the segments in order and validates every record's CRC. In the
    /// last segment the first zero length or bad frame is a torn tail: writing
    /// continues there and the rest is zeroed. A bad frame in any other
    /// segment is [`OpenError::Corrupt`] naming the file and offset.
    ///
    /// `committed` is the caller's committed position (from DuckDB): readers
    /// skip records `<= committed`, and segments holding only such records are
    /// deleted. `next_seq_floor`: the next seq assigned is at least this (pass
    /// the store's max committed seq + 1), and always above `committed` and
    /// every seq on disk. `observer` is called after each group commit.
    ///
    /// Spawns the threads "hv-queue-writer" and "hv-queue-prealloc". Fails
    /// with `WouldBlock` if another open queue holds the directory.
    pub fn open(
        cfg: QueueConfig,
        committed: u64,
        next_seq_floor: u64,
        observer: Option<GroupObserver>,
    ) -> Result<Queue, OpenError> {
        let dir = cfg.dir.clone();
        let invalid = |msg: String| OpenError::Io {
            path: dir.clone(),
            source: io::Error::new(io::ErrorKind::InvalidInput, msg),
        };
        if cfg.segment_bytes < MIN_SEGMENT_BYTES {
            return Err(invalid(format!(
                "segment_bytes {} is below the minimum {MIN_SEGMENT_BYTES}",
                cfg.segment_bytes
            )));
        }
        if cfg.max_bytes <= frame::HEADER as u64 {
            return Err(invalid(format!("max_bytes {} is too small", cfg.max_bytes)));
        }
        let io_err = |path: &std::path::Path| {
            let path = path.to_path_buf();
            move |source| OpenError::Io { path, source }
        };

        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        segment::sync_dir(&parent).map_err(io_err(&parent))?;
        let lock_file = segment::lock_dir(&dir).map_err(io_err(&dir))?;

        let index_stride = (cfg.segment_bytes / 1024).clamp(1, MAX_INDEX_STRIDE);
        let rec = recover::recover(&dir, committed, index_stride)?;
        let next_seq = (rec.last_seq + 1)
            .max(next_seq_floor)
            .max(committed.saturating_add(1))
            .max(1);
        if let Some(first) = rec.segments.front().map(|s| s.first_seq)
            && committed.saturating_add(1) < first
        {
            tracing::warn!(
                committed,
                first_on_disk = first,
                "queue: records between the committed position and the oldest segment are missing"
            );
        }
        tracing::info!(
            dir = %dir.display(),
            segments = rec.segments.len(),
            last_seq = rec.last_seq,
            committed,
            next_seq,
            "queue opened"
        );

        let (tx, rx) = mpsc::channel::<Request>();
        let mut state = State {
            stopped: false,
            segments: rec.segments,
            durable_seq: rec.last_seq,
            committed,
            runs: rec.runs.into_iter().collect(),
            backlog_bytes: 0,
            fsyncs: rec.fsyncs,
            cursor: None,
        };
        state.backlog_bytes = state.computed_backlog();
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            sender: RwLock::new(Some(tx)),
            reserved: AtomicU64::new(state.backlog_bytes),
            inflight: AtomicU64::new(0),
            state: Mutex::new(state),
            durable: Condvar::new(),
            spare: Mutex::new(None),
            poisoned: AtomicBool::new(false),
            // The seqs below the first one this run assigns (the store's
            // stored ids among them) count as in use for a reservation.
            floor: AtomicU64::new(next_seq),
            numbering: Mutex::new(()),
            #[cfg(test)]
            fail_next_write: Mutex::new(None),
            #[cfg(test)]
            fail_next_sync: Mutex::new(None),
        });

        // Capacity 1: see `Writer::prep`.
        let (prep_tx, prep_rx) = mpsc::sync_channel::<()>(1);
        let preparer = {
            let shared = Arc::clone(&shared);
            let segment_bytes = cfg.segment_bytes;
            std::thread::Builder::new()
                .name("hv-queue-prealloc".into())
                .spawn(move || segment::run_preparer(shared, prep_rx, segment_bytes))
                .map_err(io_err(&dir))?
        };
        let w = Writer::new(
            Arc::clone(&shared),
            rx,
            dir.clone(),
            cfg.segment_bytes,
            index_stride,
            observer,
            prep_tx,
            next_seq,
        );
        let writer = match std::thread::Builder::new()
            .name("hv-queue-writer".into())
            .spawn(move || w.run())
        {
            Ok(h) => h,
            Err(e) => {
                // The preparer exits once the (dropped) writer's sender is gone.
                let _ = preparer.join();
                return Err(io_err(&dir)(e));
            }
        };

        let seg_payload = cfg.segment_bytes - frame::HEADER as u64;
        let max_payload = cfg.max_bytes - frame::HEADER as u64;
        let record_limit = (cfg.max_record_bytes as u64)
            .min(seg_payload)
            .min(max_payload)
            .min(u64::from(u32::MAX) - 8) as usize;
        Ok(Queue {
            inner: Arc::new(Inner {
                shared,
                record_limit,
                batch_limit: cfg.segment_bytes.min(cfg.max_bytes),
                max_bytes: cfg.max_bytes,
                threads: Mutex::new(Some(Threads { writer, preparer })),
                lock_file: Mutex::new(Some(lock_file)),
            }),
        })
    }

    /// Appends one record. The future resolves once the record is fsync'd,
    /// to its seq; dropping it does not cancel the write. Refusals (`Full`,
    /// `TooLarge`, `Closed`) are immediate and do no I/O.
    pub fn append(&self, payload: Vec<u8>) -> Append {
        if payload.len() > self.inner.record_limit {
            return Append(Pending::Ready(Some(Err(AppendError::TooLarge {
                limit: self.inner.record_limit,
            }))));
        }
        let frame_bytes = frame::frame_len(payload.len());
        let (tx, rx) = oneshot::channel();
        match self
            .inner
            .submit(vec![payload], frame_bytes, Reply::One(tx))
        {
            Ok(()) => Append(Pending::Waiting(rx)),
            Err(e) => Append(Pending::Ready(Some(Err(e)))),
        }
    }

    /// Appends several records in one group commit, all or nothing, with
    /// contiguous seqs; resolves to their seq range. Each payload is subject
    /// to the record limit, and the whole batch must fit in one segment and in
    /// `max_bytes` (`TooLarge { limit }` then names the batch limit in frame
    /// bytes, 16 per record plus payloads). An empty batch resolves at once to
    /// an empty range (`1..=0`).
    pub fn append_all(&self, payloads: Vec<Vec<u8>>) -> AppendAll {
        if payloads.is_empty() {
            return AppendAll(Pending::Ready(Some(Ok(RangeInclusive::new(1, 0)))));
        }
        if payloads.iter().any(|p| p.len() > self.inner.record_limit) {
            return AppendAll(Pending::Ready(Some(Err(AppendError::TooLarge {
                limit: self.inner.record_limit,
            }))));
        }
        let frame_bytes: u64 = payloads.iter().map(|p| frame::frame_len(p.len())).sum();
        if frame_bytes > self.inner.batch_limit {
            return AppendAll(Pending::Ready(Some(Err(AppendError::TooLarge {
                limit: self.inner.batch_limit as usize,
            }))));
        }
        let (tx, rx) = oneshot::channel();
        match self.inner.submit(payloads, frame_bytes, Reply::Many(tx)) {
            Ok(()) => AppendAll(Pending::Waiting(rx)),
            Err(e) => AppendAll(Pending::Ready(Some(Err(e)))),
        }
    }

    /// Blocking read for the store's writer: up to `max_records` durable records with
    /// seq > `after` (and > the committed position), in order. Waits at most
    /// `max_wait` for the first one; returns an empty Vec on timeout, or at
    /// once when the queue is closed and nothing more is durable. After
    /// `close` it still returns what was durable, so the store's writer can drain.
    pub fn read_after(
        &self,
        after: u64,
        max_records: usize,
        max_wait: Duration,
    ) -> Result<Vec<(u64, Vec<u8>)>, ReadError> {
        self.inner.read_after(after, max_records, max_wait)
    }

    /// Everything `<= seq` is durably stored elsewhere: deletes the segments
    /// whose records are all `<= seq` (never the one being written) and
    /// updates the stats. Persists nothing: DuckDB holds the committed
    /// position. A `seq` at or below the current committed position is a
    /// no-op; one above the last durable seq is `InvalidInput`. After `close`
    /// it records the position but deletes nothing (another queue may own
    /// the directory by then).
    pub fn mark_committed(&self, seq: u64) -> Result<(), io::Error> {
        self.inner.mark_committed(seq)
    }

    /// Makes every seq assigned from now on at least `next` (seqs never go
    /// down). Returns the durable position at the raise: every record
    /// numbered before it that will ever be durable is at or below that
    /// position, and every record numbered after it is `>= next` (or above
    /// the seqs already used, whichever is higher). Waits for the group being
    /// written, if any.
    pub fn raise_floor(&self, next: u64) -> u64 {
        let shared = &self.inner.shared;
        let _numbering = lock(&shared.numbering);
        shared.floor.fetch_max(next, Ordering::SeqCst);
        lock(&shared.state).durable_seq
    }

    /// Reserves `count` seqs that the queue will never assign, above
    /// `at_least` and above every seq assigned or reserved so far: returns
    /// `base` (the reserved seqs are `base + 1 ..= base + count`) and the
    /// durable position at the reservation, as [`Queue::raise_floor`] does.
    pub fn reserve_above(&self, at_least: u64, count: u64) -> (u64, u64) {
        let (base, _, durable) = self.reserve_above_with(at_least, |_| count);
        (base, durable)
    }

    /// [`Queue::reserve_above`] with the count decided, under the numbering
    /// lock, from the highest seq assigned or reserved so far (or below the
    /// floor): returns `(base, count, durable)`.
    pub fn reserve_above_with(
        &self,
        at_least: u64,
        count: impl FnOnce(u64) -> u64,
    ) -> (u64, u64, u64) {
        let shared = &self.inner.shared;
        let _numbering = lock(&shared.numbering);
        let durable = lock(&shared.state).durable_seq;
        let floor = shared.floor.load(Ordering::SeqCst);
        let in_use = durable.max(floor.saturating_sub(1));
        let count = count(in_use);
        let base = at_least.max(in_use);
        shared.floor.fetch_max(
            base.saturating_add(count).saturating_add(1),
            Ordering::SeqCst,
        );
        (base, count, durable)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> QueueStats {
        let shared = &self.inner.shared;
        let spare = lock(&shared.spare).as_ref().map_or(0, |s| s.len);
        let st = lock(&shared.state);
        QueueStats {
            pending_records: st.pending_records(),
            bytes_on_disk: st.segments.iter().map(|s| s.len).sum::<u64>() + spare,
            segments: st.segments.len(),
            last_seq: st.durable_seq,
            committed: st.committed,
            fsyncs: st.fsyncs,
        }
    }

    /// Stops accepting appends (they get [`AppendError::Closed`]), lets the
    /// writer finish every request already accepted, joins the threads and
    /// releases the directory lock. Idempotent; also done when the last
    /// handle is dropped.
    pub fn close(&self) {
        self.inner.close();
    }
}

impl Inner {
    fn submit(
        &self,
        payloads: Vec<Vec<u8>>,
        frame_bytes: u64,
        reply: Reply,
    ) -> Result<(), AppendError> {
        if self.shared.poisoned.load(Ordering::Acquire) {
            return Err(AppendError::poisoned());
        }
        // No mutex here: 64 appenders woken by one group commit would queue
        // on it. Reserve with atomics, undo if over a bound.
        let reserved = self
            .shared
            .reserved
            .fetch_add(frame_bytes, Ordering::AcqRel);
        if reserved + frame_bytes > self.max_bytes {
            self.shared
                .reserved
                .fetch_sub(frame_bytes, Ordering::AcqRel);
            return Err(AppendError::Full {
                retry_after: FULL_RETRY_AFTER,
            });
        }
        let inflight = self
            .shared
            .inflight
            .fetch_add(frame_bytes, Ordering::AcqRel);
        if inflight > 0 && inflight + frame_bytes > MAX_INFLIGHT_BYTES {
            self.shared.unreserve(frame_bytes);
            return Err(AppendError::Full {
                retry_after: BUSY_RETRY_AFTER,
            });
        }
        let req = Request {
            payloads,
            frame_bytes,
            reply,
        };
        let sent = match read(&self.shared.sender).as_ref() {
            Some(sender) => sender.send(req).is_ok(),
            None => false,
        };
        if !sent {
            self.shared.unreserve(frame_bytes);
            return Err(AppendError::Closed);
        }
        Ok(())
    }

    fn close(&self) {
        let sender = write(&self.shared.sender).take();
        drop(sender);
        let threads = lock(&self.threads).take();
        if let Some(t) = threads {
            // The observer may hold the last handle and drop it on the writer
            // thread itself: never join a thread from inside it.
            let me = std::thread::current().id();
            if t.writer.thread().id() != me {
                if t.writer.join().is_err() {
                    tracing::error!("queue writer thread panicked");
                }
                if t.preparer.join().is_err() {
                    tracing::error!("queue preallocation thread panicked");
                }
            }
        }
        lock(&self.shared.state).stopped = true;
        self.shared.durable.notify_all();
        drop(lock(&self.lock_file).take());
    }

    fn read_after(
        &self,
        after: u64,
        max_records: usize,
        max_wait: Duration,
    ) -> Result<Vec<(u64, Vec<u8>)>, ReadError> {
        if max_records == 0 {
            return Ok(Vec::new());
        }
        let deadline = Instant::now().checked_add(max_wait);
        let mut st = lock(&self.shared.state);
        let from = loop {
            let from = after.max(st.committed);
            if st.durable_seq > from {
                break from;
            }
            if st.stopped {
                return Ok(Vec::new());
            }
            st = match deadline {
                None => self
                    .shared
                    .durable
                    .wait(st)
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(Vec::new());
                    }
                    self.shared
                        .durable
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0
                }
            };
        };

        // Snapshot the segments from the one holding `from + 1`, then read
        // without the lock (the writer never rewrites durable bytes, and a
        // deleted segment stays readable through its open handle).
        let target = from.saturating_add(1);
        let cursor = st
            .cursor
            .as_ref()
            .filter(|c| c.after == from)
            .and_then(|c| {
                st.segments
                    .iter()
                    .position(|s| s.first_seq == c.seg_first)
                    .map(|i| (i, c.offset))
            });
        let (start_idx, start_off) = match cursor {
            Some(x) => x,
            None => {
                let i = st
                    .segments
                    .partition_point(|s| s.first_seq <= target)
                    .saturating_sub(1);
                let off = st.segments.get(i).map_or(0, |s| s.offset_before(target));
                (i, off)
            }
        };
        let snapshot: Vec<SnapSeg> = st
            .segments
            .iter()
            .skip(start_idx)
            .enumerate()
            .map(|(j, s)| SnapSeg {
                first_seq: s.first_seq,
                path: s.path.clone(),
                file: Arc::clone(&s.file),
                start: if j == 0 { start_off } else { 0 },
                durable_end: s.durable_end,
            })
            .filter(|s| s.start < s.durable_end)
            .collect();
        drop(st);

        let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut resume: Option<ReadCursor> = None;
        let mut prev = from;
        'segments: for seg in &snapshot {
            let (path, durable_end) = (&seg.path, &seg.durable_end);
            let mut r = RecordReader::new(&seg.file, seg.start, *durable_end);
            loop {
                if out.len() >= max_records {
                    break 'segments;
                }
                match r.next()? {
                    Next::Record {
                        seq,
                        offset,
                        payload,
                    } => {
                        if seq <= from {
                            continue;
                        }
                        if seq <= prev {
                            return Err(ReadError::Corrupt {
                                path: path.clone(),
                                offset,
                                reason: format!("seq {seq} does not follow seq {prev}"),
                            });
                        }
                        prev = seq;
                        out.push((seq, payload.to_vec()));
                        resume = Some(ReadCursor {
                            after: seq,
                            seg_first: seg.first_seq,
                            offset: r.pos(),
                        });
                    }
                    Next::End => {
                        if r.pos() < *durable_end {
                            return Err(ReadError::Corrupt {
                                path: path.clone(),
                                offset: r.pos(),
                                reason: "zero length inside the durable records".into(),
                            });
                        }
                        break;
                    }
                    Next::Bad { offset, reason } => {
                        return Err(ReadError::Corrupt {
                            path: path.clone(),
                            offset,
                            reason,
                        });
                    }
                }
            }
        }
        if let Some(c) = resume {
            lock(&self.shared.state).cursor = Some(c);
        }
        Ok(out)
    }

    fn mark_committed(&self, seq: u64) -> Result<(), io::Error> {
        let mut st = lock(&self.shared.state);
        if seq <= st.committed {
            return Ok(());
        }
        if seq > st.durable_seq {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "mark_committed({seq}) is beyond the last durable seq {}",
                    st.durable_seq
                ),
            ));
        }
        st.committed = seq;
        st.trim_runs();
        let mut doomed = Vec::new();
        if read(&self.shared.sender).is_some() {
            while st.segments.len() > 1 && st.segments[0].last_seq <= seq {
                if let Some(s) = st.segments.pop_front() {
                    doomed.push(s.path);
                }
            }
        }
        let backlog = st.computed_backlog();
        self.shared.set_backlog(&mut st, backlog);
        drop(st);

        if doomed.is_empty() {
            return Ok(());
        }
        let mut first_err = None;
        for path in &doomed {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(error = %e, path = %path.display(), "could not delete a committed queue segment");
                    first_err.get_or_insert(e);
                }
            }
        }
        let synced = segment::sync_dir(&self.shared.dir);
        lock(&self.shared.state).fsyncs += 1;
        match first_err {
            Some(e) => Err(e),
            None => synced,
        }
    }
}

/// A segment to read, captured under the lock.
struct SnapSeg {
    first_seq: u64,
    path: PathBuf,
    file: Arc<File>,
    /// Offset to start reading at (a frame boundary).
    start: u64,
    durable_end: u64,
}

/// The state behind [`Append`] and [`AppendAll`].
enum Pending<T> {
    Ready(Option<Result<T, AppendError>>),
    Waiting(oneshot::Receiver<Result<T, AppendError>>),
}

impl<T> Pending<T> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, AppendError>> {
        match self {
            Pending::Ready(r) => Poll::Ready(r.take().unwrap_or(Err(AppendError::Closed))),
            // A dropped sender means the writer is gone without answering.
            Pending::Waiting(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or(Err(AppendError::Closed))),
        }
    }

    fn wait(self) -> Result<T, AppendError> {
        match self {
            Pending::Ready(r) => r.unwrap_or(Err(AppendError::Closed)),
            Pending::Waiting(rx) => rx.blocking_recv().unwrap_or(Err(AppendError::Closed)),
        }
    }
}

/// Future of [`Queue::append`]: the record's seq once it is fsync'd.
#[must_use = "the append is only acknowledged when this resolves"]
pub struct Append(Pending<u64>);

impl Append {
    /// Blocks the current thread until the append resolves. For sync callers
    /// only: panics if called from within an async runtime (await there).
    pub fn wait(self) -> Result<u64, AppendError> {
        self.0.wait()
    }
}

impl Future for Append {
    type Output = Result<u64, AppendError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().0.poll(cx)
    }
}

/// Future of [`Queue::append_all`]: the seq range once all records are fsync'd.
#[must_use = "the append is only acknowledged when this resolves"]
pub struct AppendAll(Pending<RangeInclusive<u64>>);

impl AppendAll {
    /// Blocks the current thread until the append resolves. For sync callers
    /// only: panics if called from within an async runtime (await there).
    pub fn wait(self) -> Result<RangeInclusive<u64>, AppendError> {
        self.0.wait()
    }
}

impl Future for AppendAll {
    type Output = Result<RangeInclusive<u64>, AppendError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().0.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &std::path::Path) -> QueueConfig {
        QueueConfig {
            dir: dir.join("q"),
            segment_bytes: 64 << 10,
            max_bytes: 1 << 20,
            max_record_bytes: 4096,
        }
    }

    fn read_all(q: &Queue) -> Vec<(u64, Vec<u8>)> {
        q.read_after(0, 10_000, Duration::ZERO).unwrap()
    }

    fn inject(q: &Queue, errno: i32) {
        *lock(&q.inner.shared.fail_next_write) = Some(errno);
    }

    #[test]
    fn failed_group_write_is_undone_and_seqs_reused() {
        let tmp = tempfile::tempdir().unwrap();
        let q = Queue::open(cfg(tmp.path()), 0, 0, None).unwrap();
        for i in 1..=3u64 {
            assert_eq!(q.append(vec![i as u8; 10]).wait().unwrap(), i);
        }
        // ENOSPC half-way through the write of a batch: DiskFull, and none of
        // the batch becomes visible.
        inject(&q, libc::ENOSPC);
        let batch: Vec<Vec<u8>> = (0..5).map(|_| vec![0xEE; 200]).collect();
        assert!(matches!(
            q.append_all(batch).wait(),
            Err(AppendError::DiskFull)
        ));
        assert_eq!(read_all(&q).len(), 3);
        assert_eq!(q.stats().last_seq, 3);
        // Any other write error is Io.
        inject(&q, libc::EIO);
        assert!(matches!(
            q.append(vec![0xEE; 50]).wait(),
            Err(AppendError::Io(_))
        ));
        // The queue keeps working, with no gap in seqs.
        assert_eq!(q.append(b"four".to_vec()).wait().unwrap(), 4);
        let expect: Vec<(u64, Vec<u8>)> = vec![
            (1, vec![1; 10]),
            (2, vec![2; 10]),
            (3, vec![3; 10]),
            (4, b"four".to_vec()),
        ];
        assert_eq!(read_all(&q), expect);
        assert_eq!(q.inner.shared.inflight.load(Ordering::Relaxed), 0);
        assert_eq!(
            q.inner.shared.reserved.load(Ordering::Relaxed),
            4 * 16 + 3 * 10 + 4
        );
        drop(q);
        // On disk too: the half-written batch left nothing behind.
        let q = Queue::open(cfg(tmp.path()), 0, 0, None).unwrap();
        assert_eq!(read_all(&q), expect);
        let seg = tmp.path().join("q").join(segment::segment_name(1));
        let bytes = std::fs::read(seg).unwrap();
        let end: usize = 3 * (16 + 10) + 16 + 4;
        assert!(bytes[end..].iter().all(|b| *b == 0));
    }

    #[test]
    fn failed_fsync_stops_appends_and_hides_the_group() {
        let tmp = tempfile::tempdir().unwrap();
        let q = Queue::open(cfg(tmp.path()), 0, 0, None).unwrap();
        assert_eq!(q.append(b"one".to_vec()).wait().unwrap(), 1);
        *lock(&q.inner.shared.fail_next_sync) = Some(libc::EIO);
        assert!(matches!(
            q.append(b"two".to_vec()).wait(),
            Err(AppendError::Io(_))
        ));
        // Not acknowledged, so not visible.
        assert_eq!(read_all(&q), vec![(1, b"one".to_vec())]);
        assert_eq!(q.stats().last_seq, 1);
        // Poisoned: refused without reaching the writer.
        match q.append(b"three".to_vec()).wait() {
            Err(AppendError::Io(e)) => assert!(e.to_string().contains("reopen"), "{e}"),
            other => panic!("expected the poisoned error, got {other:?}"),
        }
        drop(q);
        // After reopen the unacknowledged record may be there (it was
        // written); the acknowledged one must be, and appends work again.
        let q = Queue::open(cfg(tmp.path()), 0, 0, None).unwrap();
        let all = read_all(&q);
        assert_eq!(all[0], (1, b"one".to_vec()));
        assert!(all.len() == 1 || all[1] == (2, b"two".to_vec()), "{all:?}");
        let next = q.append(b"four".to_vec()).wait().unwrap();
        assert_eq!(next, all.len() as u64 + 1);
    }

    #[test]
    fn backlog_accounting_returns_to_zero() {
        let tmp = tempfile::tempdir().unwrap();
        let q = Queue::open(cfg(tmp.path()), 0, 0, None).unwrap();
        for _ in 0..10 {
            q.append(vec![0; 100]).wait().unwrap();
        }
        assert_eq!(lock(&q.inner.shared.state).backlog_bytes, 10 * 116);
        assert_eq!(q.inner.shared.inflight.load(Ordering::Relaxed), 0);
        assert_eq!(q.inner.shared.reserved.load(Ordering::Relaxed), 10 * 116);
        q.mark_committed(10).unwrap();
        assert_eq!(lock(&q.inner.shared.state).backlog_bytes, 0);
        assert_eq!(q.inner.shared.reserved.load(Ordering::Relaxed), 0);
    }
}
