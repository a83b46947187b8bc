//! What travels between the threads: a [`Request`] from a handle to the
//! writer thread with the [`Reply`] that answers it, and the [`Spare`]
//! segment the preparer thread hands to the writer. Data only; the threads
//! that send and take them are `writer` and `segment`.

use std::fs::File;
use std::ops::RangeInclusive;
use std::path::PathBuf;

use tokio::sync::oneshot;

use crate::error::AppendError;

/// Where the answer to a request goes. A oneshot needs no runtime on either
/// side, so async handlers await it and sync callers block on it.
pub(crate) enum Reply {
    One(oneshot::Sender<Result<u64, AppendError>>),
    Many(oneshot::Sender<Result<RangeInclusive<u64>, AppendError>>),
}

/// One `append` or `append_all`: all its records go into one group.
pub(crate) struct Request {
    pub(crate) payloads: Vec<Vec<u8>>,
    /// Frame bytes of all payloads, reserved in `Shared::inflight` and `Shared::reserved`.
    pub(crate) frame_bytes: u64,
    pub(crate) reply: Reply,
}

impl Request {
    /// Answers with the seqs its records got.
    pub(crate) fn succeed(self, first: u64, last: u64) {
        // A dropped receiver (caller gave up waiting) is fine: the record is durable.
        match self.reply {
            Reply::One(tx) => {
                let _ = tx.send(Ok(first));
            }
            Reply::Many(tx) => {
                let _ = tx.send(Ok(first..=last));
            }
        }
    }

    /// Answers with the failure that kept its records out.
    pub(crate) fn fail(self, e: AppendError) {
        match self.reply {
            Reply::One(tx) => {
                let _ = tx.send(Err(e));
            }
            Reply::Many(tx) => {
                let _ = tx.send(Err(e));
            }
        }
    }
}

/// A prepared segment waiting to be renamed into place.
pub(crate) struct Spare {
    pub(crate) file: File,
    pub(crate) path: PathBuf,
    pub(crate) len: u64,
}
