//! State shared by the handles, the writer thread and the preparer thread.

use std::collections::VecDeque;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};

use crate::message::{Request, Spare};

/// Locks a mutex, ignoring poisoning: every critical section leaves the data
/// consistent, so a panic elsewhere is no reason to stop the queue.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    /// Requests go to the writer thread through this channel. It is unbounded
    /// in count but bounded in bytes: before sending, `append` reserves the
    /// request's frame bytes in `inflight` (kept under `MAX_INFLIGHT_BYTES`)
    /// and in `reserved` (kept under `max_bytes`). `None` once closing. A
    /// RwLock so that concurrent appends only share a read lock.
    pub(crate) sender: RwLock<Option<Sender<Request>>>,
    /// Bytes counted against `max_bytes`: `State::backlog_bytes` plus
    /// `inflight`. Atomic so that `append` takes no mutex.
    pub(crate) reserved: AtomicU64,
    /// Frame bytes of accepted requests not yet written (or failed).
    pub(crate) inflight: AtomicU64,
    pub(crate) state: Mutex<State>,
    /// Signalled when records become durable and when the writer stops.
    pub(crate) durable: Condvar,
    /// The spare segment made by the preparer thread, if ready.
    pub(crate) spare: Mutex<Option<Spare>>,
    /// Set after an fsync failed (or undoing a failed write failed): the state
    /// of the file is unknown, so no further appends are accepted.
    pub(crate) poisoned: AtomicBool,
    /// The next seq is at least this: raised at run time by
    /// [`crate::Queue::raise_floor`], applied by the writer before each group.
    pub(crate) floor: AtomicU64,
    /// Held by the writer while it numbers, writes and publishes a group, and
    /// by `raise_floor`: so that a raise sees every seq assigned before it
    /// settled (durable or failed) and every later group sees the raise.
    pub(crate) numbering: Mutex<()>,
    /// Test hook: the next group write fails with this errno.
    #[cfg(test)]
    pub(crate) fail_next_write: Mutex<Option<i32>>,
    /// Test hook: the next group fdatasync fails with this errno.
    #[cfg(test)]
    pub(crate) fail_next_sync: Mutex<Option<i32>>,
}

/// What one segment holds, as far as readers may see.
pub(crate) struct SegMeta {
    /// Seq of its first record (and its name).
    pub(crate) first_seq: u64,
    pub(crate) path: PathBuf,
    /// Shared with the writer (for the current segment) and with readers,
    /// which use positioned reads only.
    pub(crate) file: Arc<File>,
    /// Size of the file.
    pub(crate) len: u64,
    /// End of the fsync'd records; readers never read past it.
    pub(crate) durable_end: u64,
    /// Seq of the last durable record; 0 when it has none.
    pub(crate) last_seq: u64,
    /// Sparse (seq, offset) of frame starts, ascending; about one entry per
    /// `index_stride` bytes, so at most ~1024 per segment whatever the record
    /// size. Lets readers and the backlog estimate find a seq without a scan.
    pub(crate) index: Vec<(u64, u64)>,
}

impl SegMeta {
    /// Offset of a frame at or before the first record with seq >= `seq`.
    pub(crate) fn offset_before(&self, seq: u64) -> u64 {
        let i = self.index.partition_point(|(s, _)| *s <= seq);
        if i == 0 { 0 } else { self.index[i - 1].1 }
    }
}

/// A reader's resume point: the record after `after` starts at `offset` in
/// the segment named `seg_first`.
pub(crate) struct ReadCursor {
    pub(crate) after: u64,
    pub(crate) seg_first: u64,
    pub(crate) offset: u64,
}

pub(crate) struct State {
    /// The writer has stopped: readers stop waiting.
    pub(crate) stopped: bool,
    /// Segments in seq order; the last one is the writer's current segment.
    pub(crate) segments: VecDeque<SegMeta>,
    /// Seq of the last record whose group fsync completed.
    pub(crate) durable_seq: u64,
    pub(crate) committed: u64,
    /// Ranges of durable seqs not yet committed (gaps come only from
    /// `next_seq_floor`); gives an exact pending count.
    pub(crate) runs: VecDeque<(u64, u64)>,
    /// Frame bytes of durable records after the committed position (an upper
    /// estimate within one index stride). Changes go through
    /// [`Shared::set_backlog`] so that `Shared::reserved` follows.
    pub(crate) backlog_bytes: u64,
    pub(crate) fsyncs: u64,
    pub(crate) cursor: Option<ReadCursor>,
}

impl State {
    /// Records durable seqs `first..=last`.
    pub(crate) fn push_run(&mut self, first: u64, last: u64) {
        if let Some(back) = self.runs.back_mut()
            && back.1 + 1 == first
        {
            back.1 = last;
            return;
        }
        self.runs.push_back((first, last));
    }

    /// Durable records with seq > committed.
    pub(crate) fn pending_records(&self) -> u64 {
        self.runs
            .iter()
            .map(|&(a, b)| {
                let a = a.max(self.committed + 1);
                if b >= a { b - a + 1 } else { 0 }
            })
            .sum()
    }

    /// Drops runs at or below the committed position.
    pub(crate) fn trim_runs(&mut self) {
        while let Some(front) = self.runs.front_mut() {
            if front.1 <= self.committed {
                self.runs.pop_front();
            } else {
                front.0 = front.0.max(self.committed + 1);
                break;
            }
        }
    }

    /// The backlog computed from the segments and the committed position.
    pub(crate) fn computed_backlog(&self) -> u64 {
        let committed = self.committed;
        self.segments
            .iter()
            .filter(|s| s.last_seq > committed)
            .map(|s| {
                if s.first_seq > committed {
                    s.durable_end
                } else {
                    s.durable_end - s.offset_before(committed + 1)
                }
            })
            .sum()
    }
}

impl Shared {
    /// Sets the backlog (under the state lock) and moves `reserved` with it.
    pub(crate) fn set_backlog(&self, st: &mut State, new: u64) {
        let old = st.backlog_bytes;
        st.backlog_bytes = new;
        if new >= old {
            self.reserved.fetch_add(new - old, Ordering::AcqRel);
        } else {
            self.reserved.fetch_sub(old - new, Ordering::AcqRel);
        }
    }

    /// Releases the reservation of requests that failed or were refused.
    pub(crate) fn unreserve(&self, bytes: u64) {
        self.inflight.fetch_sub(bytes, Ordering::AcqRel);
        self.reserved.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// Read-locks a RwLock, ignoring poisoning (see [`lock`]).
pub(crate) fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

/// Write-locks a RwLock, ignoring poisoning (see [`lock`]).
pub(crate) fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}
