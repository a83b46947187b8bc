//! The "hv-queue-writer" thread: the only code that writes records.
//!
//! It takes every request waiting in the channel (up to [`GROUP_MAX_BYTES`]),
//! writes their frames with one positioned write, makes them durable with one
//! `fdatasync`, publishes them to readers, and only then answers each request.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, MutexGuard};
use std::time::Instant;

use crate::error::AppendError;
use crate::frame;
use crate::message::Request;
use crate::segment::{TMP_SUFFIX, prepare_file, segment_name, sync_dir};
use crate::shared::{SegMeta, Shared, State, lock};
use crate::{GroupCommit, GroupObserver};

/// A group stops taking requests once it holds this many frame bytes (a
/// single request may be larger). Bounds the write buffer and how long one
/// write + fdatasync can take (4 MiB is a few ms to tens of ms on a disk), so
/// requests that arrive meanwhile wait for at most one group ahead of them.
pub(crate) const GROUP_MAX_BYTES: u64 = 4 << 20;

/// The segment being written.
struct Current {
    first_seq: u64,
    file: Arc<File>,
    /// End of the durable records: the next group is written here.
    pos: u64,
    /// Usable bytes (the file size, or less after a failed undo truncated it).
    cap: u64,
    /// Offset of the last index entry.
    last_index_off: Option<u64>,
}

/// A request placed in the group being built, with its seqs.
struct Placed {
    req: Request,
    first: u64,
    last: u64,
}

pub(crate) struct Writer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) rx: Receiver<Request>,
    pub(crate) dir: PathBuf,
    pub(crate) segment_bytes: u64,
    pub(crate) index_stride: u64,
    pub(crate) observer: Option<GroupObserver>,
    /// Wakes the preparer thread. Capacity 1: one pending "make a spare" is
    /// enough, extra wake-ups are dropped (try_send).
    pub(crate) prep: SyncSender<()>,
    pub(crate) next_seq: u64,
    cur: Option<Current>,
    buf: Vec<u8>,
    inline_tmp: u64,
}

impl Writer {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        shared: Arc<Shared>,
        rx: Receiver<Request>,
        dir: PathBuf,
        segment_bytes: u64,
        index_stride: u64,
        observer: Option<GroupObserver>,
        prep: SyncSender<()>,
        next_seq: u64,
    ) -> Writer {
        // The current segment, if recovery kept one, is the last in the state.
        let cur = {
            let st = lock(&shared.state);
            st.segments.back().map(|s| Current {
                first_seq: s.first_seq,
                file: Arc::clone(&s.file),
                pos: s.durable_end,
                cap: s.len,
                last_index_off: s.index.last().map(|e| e.1),
            })
        };
        Writer {
            shared,
            rx,
            dir,
            segment_bytes,
            index_stride,
            observer,
            prep,
            next_seq,
            cur,
            buf: Vec::new(),
            inline_tmp: 0,
        }
    }

    /// Runs until every sender is gone (close) and the channel is drained.
    pub(crate) fn run(mut self) {
        let _ = self.prep.try_send(());
        while let Ok(first) = self.rx.recv() {
            let mut bytes = first.frame_bytes;
            let mut batch = vec![first];
            while bytes < GROUP_MAX_BYTES {
                match self.rx.try_recv() {
                    Ok(r) => {
                        bytes += r.frame_bytes;
                        batch.push(r);
                    }
                    Err(_) => break,
                }
            }
            let numbering = Arc::clone(&self.shared);
            let _numbering = lock(&numbering.numbering);
            let floor = self.shared.floor.load(Ordering::SeqCst);
            self.next_seq = self.next_seq.max(floor);
            self.process(batch);
        }
        // Release the buffer's memory before the thread ends.
        self.buf = Vec::new();
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.shared.state)
    }

    /// Fails requests that were reserved but will not be written.
    fn fail_all(&self, reqs: impl IntoIterator<Item = Request>, e: &AppendError) {
        let reqs: Vec<Request> = reqs.into_iter().collect();
        let bytes: u64 = reqs.iter().map(|r| r.frame_bytes).sum();
        self.shared.unreserve(bytes);
        for r in reqs {
            r.fail(e.duplicate());
        }
    }

    fn process(&mut self, batch: Vec<Request>) {
        let mut group: Vec<Placed> = Vec::new();
        self.buf.clear();
        let mut reqs = batch.into_iter();
        while let Some(req) = reqs.next() {
            if self.shared.poisoned.load(Ordering::Acquire) {
                let e = AppendError::poisoned();
                self.fail_all(std::iter::once(req).chain(reqs), &e);
                break;
            }
            let need = req.frame_bytes;
            let fits =
                matches!(&self.cur, Some(c) if c.pos + self.buf.len() as u64 + need <= c.cap);
            if !fits {
                // Records never straddle segments: make the group so far
                // durable in the current segment, then roll.
                if !group.is_empty() {
                    self.commit(std::mem::take(&mut group));
                    self.buf.clear();
                    if self.shared.poisoned.load(Ordering::Acquire) {
                        let e = AppendError::poisoned();
                        self.fail_all(std::iter::once(req).chain(reqs), &e);
                        break;
                    }
                }
                if let Err(e) = self.roll() {
                    tracing::warn!(error = %e, "queue could not start a new segment; failing the group");
                    self.fail_all(std::iter::once(req).chain(reqs), &e);
                    break;
                }
            }
            let first = self.next_seq;
            for p in &req.payloads {
                frame::encode(&mut self.buf, self.next_seq, p);
                self.next_seq += 1;
            }
            let last = self.next_seq - 1;
            group.push(Placed { req, first, last });
        }
        if !group.is_empty() {
            self.commit(group);
        }
    }

    /// Writes `self.buf` (the frames of `group`) at the end of the current
    /// segment, fdatasyncs, publishes, answers.
    fn commit(&mut self, group: Vec<Placed>) {
        let Some(cur) = self.cur.as_mut() else {
            // Unreachable: a group is only built after a segment exists.
            let e = AppendError::Io(io::Error::other("queue writer has no segment"));
            self.fail_all(group.into_iter().map(|p| p.req), &e);
            return;
        };
        let start = cur.pos;
        let len = self.buf.len() as u64;
        let group_first = group[0].first;
        let group_last = group[group.len() - 1].last;

        #[cfg(test)]
        let injected = lock(&self.shared.fail_next_write)
            .take()
            .map(io::Error::from_raw_os_error);
        #[cfg(not(test))]
        let injected: Option<io::Error> = None;
        let written = match injected {
            Some(e) => {
                // Simulate a write that got half-way before failing.
                let half = &self.buf[..self.buf.len() / 2];
                let _ = cur.file.write_all_at(half, start);
                Err(e)
            }
            None => cur.file.write_all_at(&self.buf, start),
        };
        if let Err(e) = written {
            let err = AppendError::from_io(e);
            tracing::warn!(error = %err, records = group_last - group_first + 1, "queue group write failed; undoing it");
            self.undo(start, len, group_first);
            self.fail_all(group.into_iter().map(|p| p.req), &err);
            return;
        }

        let t = Instant::now();
        #[cfg(test)]
        let synced = match lock(&self.shared.fail_next_sync).take() {
            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
            None => cur.file.sync_data(),
        };
        #[cfg(not(test))]
        let synced = cur.file.sync_data();
        if let Err(e) = synced {
            // After a failed fsync the page cache may claim clean pages that
            // never reached the disk: nothing more can be trusted. The group
            // stays invisible to readers; a restart rescans the file.
            tracing::error!(error = %e, "queue fdatasync failed; refusing further appends until reopened");
            self.shared.poisoned.store(true, Ordering::Release);
            self.state().fsyncs += 1;
            self.fail_all(group.into_iter().map(|p| p.req), &AppendError::Io(e));
            return;
        }
        let fsync = t.elapsed();

        cur.pos = start + len;
        let add_index = match cur.last_index_off {
            None => true,
            Some(off) => start >= off + self.index_stride,
        };
        if add_index {
            cur.last_index_off = Some(start);
        }
        {
            let mut st = self.state();
            st.fsyncs += 1;
            // The bytes stay reserved: they move from in-flight to backlog.
            self.shared.inflight.fetch_sub(len, Ordering::AcqRel);
            st.backlog_bytes += len;
            st.durable_seq = group_last;
            st.push_run(group_first, group_last);
            if let Some(seg) = st.segments.back_mut() {
                seg.durable_end = start + len;
                seg.last_seq = group_last;
                if add_index {
                    seg.index.push((group_first, start));
                }
            }
        }
        self.shared.durable.notify_all();

        // The observer sees the group before any of its appenders hears back:
        // whoever holds an acknowledgement finds it counted (metrics included).
        if let Some(obs) = &self.observer {
            obs(GroupCommit {
                records: (group_last - group_first + 1) as usize,
                bytes: len as usize,
                fsync,
            });
        }
        for p in group {
            p.req.succeed(p.first, p.last);
        }
    }

    /// Takes back a failed write so that nothing of it can ever be read:
    /// zero the range, or failing that cut the file there, or failing that
    /// stop accepting appends. Seqs are reused only when the bytes are gone.
    fn undo(&mut self, start: u64, len: u64, group_first: u64) {
        let Some(cur) = self.cur.as_mut() else { return };
        let zeros = vec![0u8; len as usize];
        let zeroed = cur
            .file
            .write_all_at(&zeros, start)
            .and_then(|()| cur.file.sync_data());
        let mut fsyncs = 1;
        match zeroed {
            Ok(()) => self.next_seq = group_first,
            Err(e) => {
                tracing::warn!(error = %e, "zeroing a failed queue write failed; truncating the segment instead");
                fsyncs += 1;
                match cur.file.set_len(start).and_then(|()| cur.file.sync_all()) {
                    Ok(()) => {
                        cur.cap = start;
                        self.next_seq = group_first;
                        if let Some(seg) = lock(&self.shared.state).segments.back_mut() {
                            seg.len = start;
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "truncating after a failed queue write failed; refusing further appends until reopened");
                        self.shared.poisoned.store(true, Ordering::Release);
                    }
                }
            }
        }
        self.state().fsyncs += fsyncs;
    }

    /// Starts a new segment named after `next_seq`: takes the spare the
    /// preparer made (or makes one here), renames it into place, fsyncs the
    /// directory.
    fn roll(&mut self) -> Result<(), AppendError> {
        let first = self.next_seq;
        let path = self.dir.join(segment_name(first));

        // A current segment without records (only after a failed write was
        // undone by truncation) would be left empty and could even have this
        // very name: remove it.
        if let Some(c) = &self.cur
            && c.pos == 0
        {
            let mut st = self.state();
            let old = match st.segments.back() {
                Some(seg) if seg.first_seq == c.first_seq => st.segments.pop_back(),
                _ => None,
            };
            drop(st);
            self.cur = None;
            if let Some(old) = old
                && let Err(e) = fs::remove_file(&old.path)
            {
                // Harmless: recovery deletes segments without records.
                tracing::warn!(error = %e, path = %old.path.display(), "could not remove an empty queue segment");
            }
        }

        let spare = lock(&self.shared.spare).take();
        let (file, len, mut fsyncs) = match spare {
            Some(s) => {
                if let Err(e) = fs::rename(&s.path, &path) {
                    let _ = fs::remove_file(&s.path);
                    return Err(AppendError::from_io(e));
                }
                (s.file, s.len, 0)
            }
            None => {
                self.inline_tmp += 1;
                let tmp = self
                    .dir
                    .join(format!("inline-{}{TMP_SUFFIX}", self.inline_tmp));
                let file = prepare_file(&tmp, self.segment_bytes).map_err(AppendError::from_io)?;
                if let Err(e) = fs::rename(&tmp, &path) {
                    let _ = fs::remove_file(&tmp);
                    return Err(AppendError::from_io(e));
                }
                (file, self.segment_bytes, 1)
            }
        };
        let file = Arc::new(file);
        let synced = sync_dir(&self.dir);
        fsyncs += 1;
        if let Err(e) = synced {
            let _ = fs::remove_file(&path);
            self.state().fsyncs += fsyncs;
            return Err(AppendError::from_io(e));
        }
        {
            let mut st = self.state();
            st.fsyncs += fsyncs;
            st.segments.push_back(SegMeta {
                first_seq: first,
                path,
                file: Arc::clone(&file),
                len,
                durable_end: 0,
                last_seq: 0,
                index: Vec::new(),
            });
        }
        self.cur = Some(Current {
            first_seq: first,
            file,
            pos: 0,
            cap: len,
            last_index_off: None,
        });
        // Ask for the next spare now, while this segment fills.
        let _ = self.prep.try_send(());
        Ok(())
    }
}
