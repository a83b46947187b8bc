//! Commits what the durable queue holds past the store's position, as the
//! daemon's writer does when it starts: for commands that work on a data dir
//! no daemon runs on (a backup copies what is stored, so it first commits
//! every hit that was acknowledged before a crash).
//!
//! A leaf for the CLI. The daemon's own loop, with its retries, reopening
//! and watchdog, is `daemon::writer`; both append through
//! `Store::append_refs`, which records the batch's last position in the same
//! transaction, so a replay cut short is resumed, never doubled.

use std::time::Duration;

use hitvault_core::Record;
use hitvault_queue::{Queue, QueueConfig};
use hitvault_store::Store;

use crate::config::Config;
use crate::datadir::QUEUE_DIR;

/// Replays the queue of `cfg`'s data dir into `store`, checkpoints, and
/// returns the position reached, or `None` when there was nothing to replay.
///
/// A cluster node's queue is never replayed here: its hits reach the store
/// only through the replicated log, in the cluster's order (the daemon's
/// forwarder proposes them at its next start).
pub fn drain(cfg: &Config, store: &mut Store) -> Result<Option<u64>, String> {
    let dir = cfg.data_dir.join(QUEUE_DIR);
    if !dir.exists()
        || cfg.cluster.is_some()
        || store.cluster_state().map_err(|e| e.to_string())?.is_some()
    {
        return Ok(None);
    }
    let mut after = store.committed_seq().map_err(|e| e.to_string())?;
    let floor = store.max_hit_id().map_err(|e| e.to_string())?.max(after) + 1;
    let qcfg = QueueConfig {
        dir,
        segment_bytes: cfg.queue_segment_bytes,
        max_bytes: cfg.queue_max_bytes,
        ..QueueConfig::default()
    };
    let queue = Queue::open(qcfg, after, floor, None).map_err(|e| e.to_string())?;
    if queue.stats().last_seq <= after {
        queue.close();
        return Ok(None);
    }
    let replayed = commit_all(store, &queue, &mut after, cfg.batch_max_rows);
    queue.close();
    replayed?;
    store.checkpoint().map_err(|e| e.to_string())?;
    Ok(Some(after))
}

fn commit_all(
    store: &mut Store,
    queue: &Queue,
    after: &mut u64,
    max_rows: usize,
) -> Result<(), String> {
    loop {
        let records = queue
            .read_after(*after, max_rows, Duration::ZERO)
            .map_err(|e| e.to_string())?;
        let Some(last) = records.last().map(|r| r.0) else {
            return Ok(());
        };
        let mut hits = Vec::with_capacity(records.len());
        let mut engagements = Vec::new();
        for (seq, bytes) in &records {
            match Record::decode(bytes) {
                Ok(Record::Hit(h)) => hits.push((*seq, h)),
                Ok(Record::Engagement(e)) => engagements.push((*seq, e)),
                Err(e) => {
                    eprintln!("skipping queue record {seq}, which cannot be decoded: {e}")
                }
            }
        }
        store
            .append_batch(&hits, &engagements, last)
            .map_err(|e| format!("replaying the queue: {e}"))?;
        *after = last;
        queue.mark_committed(last).map_err(|e| e.to_string())?;
    }
}
