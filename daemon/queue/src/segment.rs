//! Segment files: names, preparation (pre-allocated and pre-zeroed), directory
//! fsync, the directory lock, and the background thread that keeps one spare
//! segment ready so that rolling never waits for zero-filling.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::Receiver;

use crate::message::Spare;
use crate::shared::{Shared, lock};

/// Suffix of segment files; the stem is the first seq, zero-padded to 20 digits.
const SEG_SUFFIX: &str = ".seg";
/// Suffix of segments being prepared; removed at open (a crash may leave one).
pub(crate) const TMP_SUFFIX: &str = ".seg.tmp";
/// Name of the lock file inside the queue directory.
pub(crate) const LOCK_NAME: &str = "LOCK";
/// Zero-filling writes this many bytes at a time (bounds the zero buffer).
const ZERO_CHUNK: usize = 1 << 20;

/// `00000000000000000001.seg` for first seq 1.
pub(crate) fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}{SEG_SUFFIX}")
}

/// The first seq encoded in a segment file name, if it is one.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(SEG_SUFFIX)?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// fsync a directory so that creations, renames and deletions in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Takes an exclusive, non-blocking `flock` on `dir/LOCK`: two queues on one
/// directory (two processes, or two `open`s in one process) would corrupt it.
pub(crate) fn lock_dir(dir: &Path) -> io::Result<File> {
    let path = dir.join(LOCK_NAME);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    // SAFETY: flock on a valid, owned file descriptor has no memory effects.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "the queue directory is in use by another open queue (LOCK is held)",
            ));
        }
        return Err(e);
    }
    Ok(file)
}

/// Creates `path` (which must not exist) with `len` bytes allocated and
/// written with zeros, then fsyncs it. Allocating up front makes ENOSPC show
/// up here rather than mid-group; writing the zeros turns the file system's
/// unwritten extents into written ones, so a later `fdatasync` after
/// overwriting them has no metadata to flush. On error the file is removed.
pub(crate) fn prepare_file(path: &Path, len: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)?;
    let result = (|| {
        allocate(&file, len)?;
        let zeros = vec![0u8; ZERO_CHUNK.min(len as usize)];
        let mut off = 0u64;
        while off < len {
            let n = (len - off).min(zeros.len() as u64) as usize;
            file.write_all_at(&zeros[..n], off)?;
            off += n as u64;
        }
        file.sync_all()
    })();
    match result {
        Ok(()) => Ok(file),
        Err(e) => {
            drop(file);
            let _ = fs::remove_file(path);
            Err(e)
        }
    }
}

/// `fallocate(2)`, falling back to `ftruncate` on file systems without it (the
/// zero-fill that follows then allocates, and reports ENOSPC itself).
fn allocate(file: &File, len: u64) -> io::Result<()> {
    let off_len = libc::off_t::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "segment size too large"))?;
    loop {
        // SAFETY: fallocate on a valid, owned descriptor; no memory is passed.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, off_len) };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => return file.set_len(len),
            _ => return Err(e),
        }
    }
}

/// Body of the "hv-queue-prealloc" thread: each message on `wake` asks for a
/// spare segment if there is none. Exits when the writer drops the sender.
pub(crate) fn run_preparer(shared: Arc<Shared>, wake: Receiver<()>, segment_bytes: u64) {
    let mut n = 0u64;
    while wake.recv().is_ok() {
        if lock(&shared.spare).is_some() {
            continue;
        }
        n += 1;
        let path = shared.dir.join(format!("spare-{n}{TMP_SUFFIX}"));
        match prepare_file(&path, segment_bytes) {
            Ok(file) => {
                let spare = Spare {
                    file,
                    path,
                    len: segment_bytes,
                };
                *lock(&shared.spare) = Some(spare);
            }
            Err(e) => {
                tracing::debug!(error = %e, "could not prepare a spare queue segment; the writer will make one when it needs it");
            }
        }
    }
    if let Some(spare) = lock(&shared.spare).take() {
        drop(spare.file);
        let _ = fs::remove_file(&spare.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip() {
        assert_eq!(segment_name(1), "00000000000000000001.seg");
        assert_eq!(parse_segment_name("00000000000000000001.seg"), Some(1));
        assert_eq!(parse_segment_name(&segment_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_segment_name("1.seg"), None);
        assert_eq!(parse_segment_name("0000000000000000000a.seg"), None);
        assert_eq!(parse_segment_name("00000000000000000001.seg.tmp"), None);
    }

    #[test]
    fn prepared_file_is_zeroed_and_sized() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.seg.tmp");
        let f = prepare_file(&p, 3 * 4096 + 5).unwrap();
        assert_eq!(f.metadata().unwrap().len(), 3 * 4096 + 5);
        assert!(fs::read(&p).unwrap().iter().all(|b| *b == 0));
        // create_new: preparing over an existing file fails.
        assert!(prepare_file(&p, 10).is_err());
    }
}
