//! The Raft log and vote on disk, in `<data dir>/cluster/`:
//!
//! - `raft.log`: one frame per entry, `[len u32][crc32 u32][postcard entry]`
//!   (little-endian), appended and `fdatasync`'d before openraft is told the
//!   entries are flushed. A torn or corrupt tail (a crash mid-append) is cut
//!   at open: nothing after it was ever reported flushed.
//! - `vote.json`: the vote, replaced atomically (written beside, fsync'd,
//!   renamed, directory fsync'd) before it takes effect.
//! - `purged.json`: the last purged log id (entries a snapshot covers,
//!   which openraft purges after building or installing one). It is
//!   written before the file forgets them. The file is rewritten without
//!   the purged frames ([`LogStore::purge_upto`]) once they are at least
//!   half of it or all of it, and at open if a crash came between the two:
//!   the kept frames are copied to `raft.log.new`, fsync'd and renamed over
//!   the log, then the directory is fsync'd, so a crash leaves the old file
//!   or the new one whole.
//!
//! The index (log id, offset, length of every entry) is in memory, about 40
//! bytes an entry; entries are read from the file when asked for.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::{Bound, RangeBounds};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, LogId, StorageError, StorageIOError, Vote};

use crate::{NodeId, Types};

/// Largest entry the log accepts, in bytes (a proposal is bounded by
/// [`crate::MAX_PROPOSAL_BYTES`] plus framing).
pub const MAX_ENTRY: usize = 64 << 20;

const LOG: &str = "raft.log";
const VOTE: &str = "vote.json";
const PURGED: &str = "purged.json";

#[derive(Clone, Copy, Debug)]
struct Slot {
    log_id: LogId<NodeId>,
    offset: u64,
    len: u32,
}

struct Inner {
    dir: PathBuf,
    file: File,
    /// End of the valid frames.
    end: u64,
    /// Entries present, contiguous and ascending.
    slots: VecDeque<Slot>,
    purged: Option<LogId<NodeId>>,
    vote: Option<Vote<NodeId>>,
}

/// The log; clones share it (openraft reads through a clone while it
/// appends through the original).
#[derive(Clone)]
pub struct LogStore(Arc<Mutex<Inner>>);

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogStore")
    }
}

/// What opening the log found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    pub entries: usize,
    /// Bytes cut from a torn or corrupt tail.
    pub cut: u64,
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + payload.len());
    f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    f.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    f.extend_from_slice(payload);
    f
}

/// Writes `bytes` to `dir/name` so that a crash leaves the old or the new
/// file whole.
fn replace(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.new"));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, cutting a torn tail.
    pub fn open(dir: &Path) -> io::Result<(LogStore, Opened)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(LOG);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let size = file.metadata()?.len();
        let purged: Option<LogId<NodeId>> = read_json(&dir.join(PURGED))?;
        let vote: Option<Vote<NodeId>> = read_json(&dir.join(VOTE))?;
        let mut slots = VecDeque::new();
        let mut end = 0u64;
        // Frame by frame through one buffer: the log holds up to two
        // snapshot intervals, so it is never read into memory at once; only each entry's log id (the
        // first field of its encoding) is decoded.
        let mut r = std::io::BufReader::with_capacity(1 << 20, &file);
        let mut payload = Vec::new();
        loop {
            let mut head = [0u8; 8];
            if r.read_exact(&mut head).is_err() {
                break;
            }
            let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
            let crc = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
            if len > MAX_ENTRY || end + 8 + len as u64 > size {
                break;
            }
            payload.resize(len, 0);
            if r.read_exact(&mut payload).is_err() || crc32fast::hash(&payload) != crc {
                break;
            }
            let Ok((log_id, _)) = postcard::take_from_bytes::<LogId<NodeId>>(&payload) else {
                break;
            };
            if let Some(prev) = slots.back().map(|s: &Slot| s.log_id.index)
                && log_id.index != prev + 1
            {
                // Entries are contiguous: a gap is corruption.
                break;
            }
            slots.push_back(Slot {
                log_id,
                offset: end,
                len: len as u32,
            });
            end += 8 + len as u64;
        }
        drop(r);
        let cut = size - end;
        if cut > 0 {
            tracing::warn!(bytes = cut, "cut a torn tail from the Raft log");
            file.set_len(end)?;
            file.sync_all()?;
        }
        if let Some(p) = purged {
            while slots.front().is_some_and(|s| s.log_id.index <= p.index) {
                slots.pop_front();
            }
        }
        let entries = slots.len();
        let mut inner = Inner {
            dir: dir.to_path_buf(),
            file,
            end,
            slots,
            purged,
            vote,
        };
        // Purged frames still at the head (a crash between `purged.json`
        // and the rewrite): drop them now, or the next entry appended after
        // them would leave a gap in the file.
        if inner.slots.front().map_or(inner.end, |s| s.offset) > 0 {
            inner.compact()?;
        }
        Ok((
            LogStore(Arc::new(Mutex::new(inner))),
            Opened { entries, cut },
        ))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The entries with index in `range`, read from the file.
    pub fn entries(&self, range: impl RangeBounds<u64>) -> io::Result<Vec<Entry<Types>>> {
        let inner = self.lock();
        let Some(first) = inner.slots.front().map(|s| s.log_id.index) else {
            return Ok(vec![]);
        };
        let last = inner
            .slots
            .back()
            .map(|s| s.log_id.index)
            .expect("non-empty");
        let lo = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => first,
        }
        .max(first);
        let hi = match range.end_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => match i.checked_sub(1) {
                Some(i) => i,
                None => return Ok(vec![]),
            },
            Bound::Unbounded => last,
        }
        .min(last);
        let mut out = Vec::new();
        let mut i = lo;
        while i <= hi {
            let s = inner.slots[(i - first) as usize];
            let mut buf = vec![0u8; s.len as usize];
            inner.file.read_exact_at(&mut buf, s.offset + 8)?;
            let e = postcard::from_bytes::<Entry<Types>>(&buf)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            out.push(e);
            i += 1;
        }
        Ok(out)
    }

    /// Appends `entries` and syncs them.
    pub fn append_entries(
        &self,
        entries: impl IntoIterator<Item = Entry<Types>>,
    ) -> io::Result<()> {
        let mut inner = self.lock();
        let mut buf = Vec::new();
        let mut new = Vec::new();
        let mut next = inner
            .slots
            .back()
            .map(|s| s.log_id.index + 1)
            .or(inner.purged.map(|p| p.index + 1));
        for e in entries {
            if let Some(n) = next
                && e.log_id.index != n
            {
                return Err(io::Error::other(format!(
                    "log entry {} appended where {n} was due",
                    e.log_id.index
                )));
            }
            next = Some(e.log_id.index + 1);
            let payload = postcard::to_allocvec(&e).map_err(io::Error::other)?;
            if payload.len() > MAX_ENTRY {
                return Err(io::Error::other(format!(
                    "log entry {} is {} bytes, more than {MAX_ENTRY}",
                    e.log_id.index,
                    payload.len()
                )));
            }
            new.push(Slot {
                log_id: e.log_id,
                offset: inner.end + buf.len() as u64,
                len: payload.len() as u32,
            });
            buf.extend_from_slice(&frame(&payload));
        }
        if new.is_empty() {
            return Ok(());
        }
        inner.file.write_all_at(&buf, inner.end)?;
        inner.file.sync_data()?;
        inner.end += buf.len() as u64;
        inner.slots.extend(new);
        Ok(())
    }

    /// Deletes the entries from `index` on, and syncs.
    pub fn truncate_from(&self, index: u64) -> io::Result<()> {
        let mut inner = self.lock();
        let Some(pos) = inner.slots.iter().position(|s| s.log_id.index >= index) else {
            return Ok(());
        };
        let offset = inner.slots[pos].offset;
        inner.file.set_len(offset)?;
        inner.file.sync_all()?;
        inner.end = offset;
        inner.slots.truncate(pos);
        Ok(())
    }

    /// Forgets the entries up to `log_id` (which may be past the last one:
    /// a snapshot installed covers more than the log held). The file is
    /// rewritten without them once they are half of it or more.
    pub fn purge_upto(&self, log_id: LogId<NodeId>) -> io::Result<()> {
        let mut inner = self.lock();
        replace(
            &inner.dir,
            PURGED,
            &serde_json::to_vec(&log_id).map_err(io::Error::other)?,
        )?;
        inner.purged = Some(log_id);
        while inner
            .slots
            .front()
            .is_some_and(|s| s.log_id.index <= log_id.index)
        {
            inner.slots.pop_front();
        }
        let head = inner.slots.front().map_or(inner.end, |s| s.offset);
        if head > 0 && (inner.slots.is_empty() || head >= inner.end - head) {
            inner.compact()?;
        }
        Ok(())
    }

    /// Stores the vote durably.
    pub fn store_vote(&self, vote: &Vote<NodeId>) -> io::Result<()> {
        let mut inner = self.lock();
        replace(
            &inner.dir,
            VOTE,
            &serde_json::to_vec(vote).map_err(io::Error::other)?,
        )?;
        inner.vote = Some(*vote);
        Ok(())
    }

    /// The last purged and the last present log ids.
    pub fn state(&self) -> LogState<Types> {
        let inner = self.lock();
        LogState {
            last_purged_log_id: inner.purged,
            last_log_id: inner.slots.back().map(|s| s.log_id).or(inner.purged),
        }
    }

    /// Bytes of the log file.
    pub fn bytes(&self) -> u64 {
        self.lock().end
    }
}

impl Inner {
    /// Rewrites the file without the frames before the first kept entry.
    fn compact(&mut self) -> io::Result<()> {
        let head = self.slots.front().map_or(self.end, |s| s.offset);
        let tmp = self.dir.join(format!("{LOG}.new"));
        let mut out = File::create(&tmp)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut at = head;
        while at < self.end {
            let n = buf.len().min((self.end - at) as usize);
            self.file.read_exact_at(&mut buf[..n], at)?;
            out.write_all(&buf[..n])?;
            at += n as u64;
        }
        out.sync_all()?;
        drop(out);
        let path = self.dir.join(LOG);
        std::fs::rename(&tmp, &path)?;
        File::open(&self.dir)?.sync_all()?;
        self.file = OpenOptions::new().read(true).write(true).open(&path)?;
        for s in self.slots.iter_mut() {
            s.offset -= head;
        }
        self.end -= head;
        tracing::info!(
            bytes = head,
            kept = self.end,
            "dropped purged entries from the Raft log"
        );
        Ok(())
    }
}

impl RaftLogReader<Types> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<Types>>, StorageError<NodeId>> {
        self.entries(range)
            .map_err(|e| StorageIOError::read_logs(&e).into())
    }
}

impl RaftLogStorage<Types> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<Types>, StorageError<NodeId>> {
        Ok(self.state())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.store_vote(vote)
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.lock().vote)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<Types>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<Types>> + Send,
        I::IntoIter: Send,
    {
        match self.append_entries(entries) {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let msg = e.to_string();
                callback.log_io_completed(Err(io::Error::other(msg)));
                Err(StorageIOError::write_logs(&e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.truncate_from(log_id.index)
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.purge_upto(log_id)
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(term: u64, index: u64, n: u8) -> Entry<Types> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(crate::Command::Hits {
                origin: 1,
                records: vec![(index, vec![n; 10])],
            }),
        }
    }

    #[test]
    fn entries_survive_a_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (log, o) = LogStore::open(dir.path()).unwrap();
        assert_eq!(o.entries, 0);
        log.append_entries((1..=5).map(|i| entry(1, i, i as u8)))
            .unwrap();
        log.store_vote(&Vote::new(3, 2)).unwrap();
        drop(log);
        // A crash mid-append: half a frame at the end.
        let f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(LOG))
            .unwrap();
        (&f).write_all(&frame(b"whatever")[..6]).unwrap();
        let (log, o) = LogStore::open(dir.path()).unwrap();
        assert_eq!(o, Opened { entries: 5, cut: 6 });
        assert_eq!(log.lock().vote, Some(Vote::new(3, 2)));
        let got = log.entries(2..4).unwrap();
        assert_eq!(got, vec![entry(1, 2, 2), entry(1, 3, 3)]);
        assert_eq!(log.state().last_log_id.unwrap().index, 5);
        // Appending goes on after the cut.
        log.append_entries([entry(2, 6, 6)]).unwrap();
        drop(log);
        let (log, _) = LogStore::open(dir.path()).unwrap();
        assert_eq!(log.entries(6..).unwrap(), vec![entry(2, 6, 6)]);
    }

    #[test]
    fn a_corrupt_frame_ends_the_log_there() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = LogStore::open(dir.path()).unwrap();
        log.append_entries((1..=4).map(|i| entry(1, i, i as u8)))
            .unwrap();
        let third = log.lock().slots[2].offset;
        drop(log);
        let f = OpenOptions::new()
            .write(true)
            .open(dir.path().join(LOG))
            .unwrap();
        f.write_all_at(b"\xff", third + 12).unwrap();
        let (log, o) = LogStore::open(dir.path()).unwrap();
        assert_eq!(o.entries, 2);
        assert!(o.cut > 0);
        assert_eq!(log.state().last_log_id.unwrap().index, 2);
    }

    #[test]
    fn truncate_and_purge_keep_the_index_true() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = LogStore::open(dir.path()).unwrap();
        log.append_entries((1..=10).map(|i| entry(1, i, i as u8)))
            .unwrap();
        log.truncate_from(7).unwrap();
        assert_eq!(log.state().last_log_id.unwrap().index, 6);
        // A new leader's entries replace the cut ones.
        log.append_entries([entry(2, 7, 70)]).unwrap();
        log.purge_upto(LogId::new(CommittedLeaderId::new(1, 1), 3))
            .unwrap();
        assert_eq!(log.entries(..).unwrap().first().unwrap().log_id.index, 4);
        assert!(
            log.append_entries([entry(2, 9, 9)]).is_err(),
            "a gap in the log was accepted"
        );
        drop(log);
        let (log, o) = LogStore::open(dir.path()).unwrap();
        assert_eq!(o.entries, 4);
        let s = log.state();
        assert_eq!(s.last_purged_log_id.unwrap().index, 3);
        assert_eq!(s.last_log_id.unwrap(), entry(2, 7, 70).log_id);
        assert_eq!(log.entries(7..=7).unwrap(), vec![entry(2, 7, 70)]);
    }

    #[test]
    fn a_purge_frees_the_file_and_a_purge_past_the_end_leaves_no_gap() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = LogStore::open(dir.path()).unwrap();
        log.append_entries((1..=10).map(|i| entry(1, i, i as u8)))
            .unwrap();
        let whole = log.bytes();
        // Under half of the file: kept in place.
        log.purge_upto(LogId::new(CommittedLeaderId::new(1, 1), 2))
            .unwrap();
        assert_eq!(log.bytes(), whole);
        // Half or more: the file is rewritten without them.
        log.purge_upto(LogId::new(CommittedLeaderId::new(1, 1), 6))
            .unwrap();
        assert!(log.bytes() < whole / 2, "{} of {whole}", log.bytes());
        assert_eq!(
            log.entries(..).unwrap(),
            (7..=10).map(|i| entry(1, i, i as u8)).collect::<Vec<_>>()
        );
        // A snapshot installed covers more than the log holds: everything
        // goes, and the next entry follows the snapshot.
        log.purge_upto(LogId::new(CommittedLeaderId::new(3, 1), 50))
            .unwrap();
        assert_eq!(log.bytes(), 0);
        log.append_entries([entry(3, 51, 51), entry(3, 52, 52)])
            .unwrap();
        drop(log);
        let (log, o) = LogStore::open(dir.path()).unwrap();
        assert_eq!((o.entries, o.cut), (2, 0));
        assert_eq!(log.state().last_purged_log_id.unwrap().index, 50);
        assert_eq!(
            log.entries(..).unwrap(),
            vec![entry(3, 51, 51), entry(3, 52, 52)]
        );
    }

    #[test]
    fn a_crash_between_the_purge_record_and_the_rewrite_is_mended_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = LogStore::open(dir.path()).unwrap();
        log.append_entries((1..=5).map(|i| entry(1, i, i as u8)))
            .unwrap();
        drop(log);
        // `purged.json` says 20; the file still holds 1..=5.
        replace(
            dir.path(),
            PURGED,
            &serde_json::to_vec(&LogId::new(CommittedLeaderId::new(2, 1), 20)).unwrap(),
        )
        .unwrap();
        let (log, o) = LogStore::open(dir.path()).unwrap();
        assert_eq!(o.entries, 0);
        assert_eq!(log.bytes(), 0);
        log.append_entries([entry(2, 21, 21)]).unwrap();
        drop(log);
        let (log, o) = LogStore::open(dir.path()).unwrap();
        assert_eq!(o.entries, 1);
        assert_eq!(log.entries(..).unwrap(), vec![entry(2, 21, 21)]);
    }
}
