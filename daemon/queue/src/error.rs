//! The queue's error types.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Why an append was refused or failed. Only `Ok` means "fsync'd": on any
/// error the record is not acknowledged (it may or may not be replayed after a
/// crash, see the crate docs).
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The backlog of uncommitted records is at `QueueConfig::max_bytes` (or
    /// too many bytes are waiting for the writer). Refused at once, without
    /// I/O; answer "try later" (HTTP 503 with `Retry-After`).
    #[error(
        "queue is full: the backlog of uncommitted records is at its limit; retry after {retry_after:?}"
    )]
    Full {
        /// How long the caller should wait before trying again.
        retry_after: Duration,
    },
    /// The file system answered ENOSPC (or EDQUOT). Nothing of the failed
    /// group is visible to readers; the queue keeps working once space frees.
    #[error("no space left on the queue's file system")]
    DiskFull,
    /// The payload (or, for `append_all`, the whole batch) exceeds `limit` bytes.
    #[error("record too large: the limit is {limit} bytes")]
    TooLarge {
        /// The limit in bytes that was exceeded.
        limit: usize,
    },
    /// The queue was closed (`Queue::close` or the last handle dropped).
    #[error("queue is closed")]
    Closed,
    /// Any other I/O failure. After a failed fsync the queue refuses every
    /// further append with this error until it is reopened.
    #[error("queue I/O error: {0}")]
    Io(#[source] io::Error),
}

impl AppendError {
    /// A copy for each request of a failed group (io::Error is not Clone).
    pub(crate) fn duplicate(&self) -> AppendError {
        match self {
            AppendError::Full { retry_after } => AppendError::Full {
                retry_after: *retry_after,
            },
            AppendError::DiskFull => AppendError::DiskFull,
            AppendError::TooLarge { limit } => AppendError::TooLarge { limit: *limit },
            AppendError::Closed => AppendError::Closed,
            AppendError::Io(e) => AppendError::Io(io::Error::new(e.kind(), e.to_string())),
        }
    }

    /// The error of every append after the queue stopped writing (a failed
    /// fsync, or a failed write that could not be undone).
    pub(crate) fn poisoned() -> AppendError {
        AppendError::Io(io::Error::other(
            "the queue stopped writing after an fsync or undo failed; reopen it (restart the daemon)",
        ))
    }

    /// Maps an I/O error from writing or allocating: ENOSPC and EDQUOT become
    /// `DiskFull`, everything else `Io`.
    pub(crate) fn from_io(e: io::Error) -> AppendError {
        if is_out_of_space(&e) {
            AppendError::DiskFull
        } else {
            AppendError::Io(e)
        }
    }
}

/// True for "no space" errors (ENOSPC, EDQUOT).
pub(crate) fn is_out_of_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        || e.kind() == io::ErrorKind::StorageFull
        || e.kind() == io::ErrorKind::QuotaExceeded
}

/// Why `Queue::open` failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// An I/O error on `path` (also: an invalid configuration, as
    /// `InvalidInput`, or the directory being locked by another queue, as
    /// `WouldBlock`).
    #[error("queue I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory the operation was on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A bad record in a segment that is not the last one: this is not a torn
    /// write from a crash but damaged data, so the queue refuses to guess.
    #[error("corrupt queue segment {} at offset {offset}: {reason}", path.display())]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the bad record in that file.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
}

/// Why `Queue::read_after` failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Reading a segment failed.
    #[error("queue read error: {0}")]
    Io(#[from] io::Error),
    /// A durable record no longer checks out (damaged on disk after it was written).
    #[error("corrupt queue segment {} at offset {offset}: {reason}", path.display())]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the bad record in that file.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
}
