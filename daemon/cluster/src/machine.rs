//! The state machine: what applying the committed log does on a node.
//!
//! The machine's [`State`] is small: the last applied log id, the last
//! membership, each origin node's highest hit seq, and the retired node ids.
//! Everything else is the store. [`StateMachine::apply`] turns a stretch of
//! committed entries into one [`Batch`] (the hits not applied before, and
//! the state after them) and hands it to [`Apply::store`], which commits
//! both in one transaction. Replaying an entry at or below the stored
//! applied index is skipped, and a hit at or below its origin's highest seq
//! is a duplicate (a proposal sent again after its answer was lost), so every
//! hit is applied exactly once, in the log's order, on every node.
//!
//! An accounts change ([`Command::Accounts`]) is applied through
//! [`Apply::accounts`], and a definitions change ([`Command::Definitions`])
//! through [`Apply::definitions`], in log order and before the stretch's
//! batch is handed over: each keeps its own applied index (the accounts'
//! journal, the store's row beside the state), so a replay skips what it
//! holds, and a stored state never covers a change not applied.
//!
//! Snapshots ([`Apply::snapshot`], [`Apply::install`]): every
//! [`crate::Snapshots::every`] applied entries openraft asks for one. The
//! daemon writes a consistent copy of its store and accounts into one file
//! in `<cluster dir>/snapshots/`; the machine's [`State`] the copy holds
//! gives the snapshot's log id, so a snapshot never claims more than it
//! holds. openraft then purges the log it covers (all but the last
//! [`crate::Snapshots::keep`] entries), and a follower too far behind (the
//! entries it needs are purged) or a new node is sent the file in chunks
//! and installs it: the daemon replaces what its store and accounts hold
//! with the copy, and the log is applied from the snapshot on. The current
//! snapshot is named by `current.json`, replaced atomically after the file
//! is on disk; older files are then deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use serde::{Deserialize, Serialize};

use crate::{Applied, BasicNode, Command, NodeId, Types};

/// The machine's state, stored with the rows it covers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub applied: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, BasicNode>,
    /// Origin node → the highest hit seq applied from it.
    pub origins: BTreeMap<NodeId, u64>,
    /// Node ids that were members once and were removed: never again.
    pub retired: BTreeSet<NodeId>,
}

/// `(seq, record)` pairs, as the queue holds them.
pub type Records = Vec<(u64, Vec<u8>)>;

/// One stretch of the log to commit: every record it adds, and the state
/// after it.
#[derive(Debug)]
pub struct Batch {
    /// Records to store, each once: `(seq, record)`, in log order.
    pub records: Vec<(u64, Vec<u8>)>,
    /// The highest seq of this node's own hits now applied: the position
    /// up to which its queue may be freed.
    pub own: u64,
    /// The state after this batch, as [`State::encode`] gives it.
    pub state: Vec<u8>,
}

impl State {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("the state serialises")
    }

    pub fn decode(b: &[u8]) -> Result<State, String> {
        serde_json::from_slice(b)
            .map_err(|e| format!("the stored cluster state is unreadable: {e}"))
    }
}

/// Where the machine's batches are committed: the daemon's writer.
pub trait Apply: Send + Sync + 'static {
    /// Hands `batch` over to be committed, its records and its state in one
    /// transaction, after every batch handed over before it, retrying as
    /// long as the store refuses. It may return before the commit (the
    /// daemon's writer queues a few batches): openraft then counts the
    /// entries applied before the store holds them, which is safe because
    /// after a crash [`Apply::load`] gives what the store holds and the log
    /// is applied again from there. `Err` only when the store is closing.
    /// Blocking.
    fn store(&self, batch: Batch) -> Result<(), String>;
    /// The state the last [`Apply::store`] committed, if any. Blocking.
    fn load(&self) -> Result<Option<Vec<u8>>, String>;
    /// Applies the accounts change `record` the log holds at `index`, made
    /// durable before it returns, and skipped when an earlier run applied
    /// it (the accounts keep their own applied index). `Ok(Some(reason))`:
    /// it does not fit the accounts, decided alike on every node. `Err`
    /// only when it cannot be written. Called before the [`Apply::store`]
    /// of the stretch that holds it, so a stored state never covers an
    /// accounts change not applied. Blocking.
    fn accounts(&self, index: u64, record: &[u8]) -> Result<Option<String>, String>;
    /// Applies the definitions change `change` the log holds at `index` to
    /// the store, committed before it returns, with its index (a replay
    /// skips it). `Ok(Some(reason))`: it does not fit the store, decided
    /// alike on every node. `Err` only when it cannot be written. Called
    /// before the [`Apply::store`] of the stretch that holds it. Blocking.
    fn definitions(&self, index: u64, change: &[u8]) -> Result<Option<String>, String>;
    /// Runs the retention pass `prune` the log holds at `index`: after
    /// every batch handed over before it (the machine hands it a stretch of
    /// its own, so the hits before it are stored first), and before any
    /// after it. A replay may run it again (the state stored after it
    /// covers it, so only a crash in between does): a second run finds
    /// nothing more to delete. `Err` when it cannot run here (an archive
    /// that cannot be written): this node stops applying the log until
    /// it can, as every other node deletes those hits. Blocking.
    fn retention(&self, index: u64, prune: &[u8]) -> Result<(), String>;
    /// Writes a consistent copy of everything the log built on this node
    /// (the store with the state it holds, the accounts) to `file`, which
    /// does not exist, and returns the [`State`] the copy holds (as
    /// [`State::encode`] gives it). The accounts are copied after the
    /// store, so they cover at least the log the store covers (they skip
    /// what they hold when the log is applied again). Blocking.
    fn snapshot(&self, file: &Path) -> Result<Vec<u8>, String>;
    /// Replaces everything the log built on this node with the copy in
    /// `file` (made by [`Apply::snapshot`] on some node), after every batch
    /// handed over before it, and returns the [`State`] it holds. Blocking.
    fn install(&self, file: &Path) -> Result<Vec<u8>, String>;
}

/// A change a stretch of the log holds besides hits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Accounts(Vec<u8>),
    Definitions(Vec<u8>),
    Retention(Vec<u8>),
}

/// The changes of a stretch of the log besides hits: `(position among the
/// stretch's answers, log id, change)`, in log order.
pub type Changes = Vec<(usize, LogId<NodeId>, Change)>;

/// The state, shared with the forwarder and the status.
pub type Shared = Arc<RwLock<State>>;

/// The state machine of one node.
pub struct StateMachine {
    me: NodeId,
    state: Shared,
    apply: Arc<dyn Apply>,
    snapshots: Arc<SnapshotDir>,
    /// The file a snapshot being received is written to.
    receiving: Option<PathBuf>,
}

impl StateMachine {
    /// The machine of node `me`, from the state `apply` stored; its
    /// snapshots are kept in `dir` (created if missing).
    pub fn open(me: NodeId, apply: Arc<dyn Apply>, dir: &Path) -> Result<StateMachine, String> {
        let state = match apply.load()? {
            Some(b) => State::decode(&b)?,
            None => State::default(),
        };
        let snapshots = SnapshotDir::open(dir)
            .map_err(|e| format!("the snapshots in {}: {e}", dir.display()))?;
        Ok(StateMachine {
            me,
            state: Arc::new(RwLock::new(state)),
            apply,
            snapshots: Arc::new(snapshots),
            receiving: None,
        })
    }

    /// The current snapshot's meta, if any.
    pub fn current_snapshot(&self) -> Option<SnapshotMeta<NodeId, BasicNode>> {
        self.snapshots.current().map(|c| c.meta)
    }

    pub fn shared(&self) -> Shared {
        self.state.clone()
    }

    /// Folds `entries` into a copy of the state; returns it, the batch, the
    /// answers, and the other changes to apply.
    pub fn fold(
        start: &State,
        entries: impl IntoIterator<Item = openraft::Entry<Types>>,
    ) -> (State, Records, Vec<Applied>, Changes) {
        let mut st = start.clone();
        let mut records = Vec::new();
        let mut out = Vec::new();
        let mut changes = Vec::new();
        for e in entries {
            if st.applied.is_some_and(|a| e.log_id.index <= a.index) {
                // Applied before (a replay after a restart).
                out.push(Applied::default());
                continue;
            }
            st.applied = Some(e.log_id);
            match e.payload {
                EntryPayload::Blank => out.push(Applied::default()),
                EntryPayload::Normal(Command::Hits {
                    origin,
                    records: rs,
                }) => {
                    let hw = st.origins.entry(origin).or_insert(0);
                    let mut a = Applied::default();
                    for (seq, r) in rs {
                        if seq > *hw {
                            *hw = seq;
                            records.push((seq, r));
                            a.stored += 1;
                        } else {
                            a.duplicates += 1;
                        }
                    }
                    out.push(a);
                }
                EntryPayload::Normal(Command::Accounts { record, .. }) => {
                    changes.push((out.len(), e.log_id, Change::Accounts(record)));
                    out.push(Applied::default());
                }
                EntryPayload::Normal(Command::Definitions { change, .. }) => {
                    changes.push((out.len(), e.log_id, Change::Definitions(change)));
                    out.push(Applied::default());
                }
                EntryPayload::Normal(Command::Retention { prune, .. }) => {
                    changes.push((out.len(), e.log_id, Change::Retention(prune)));
                    out.push(Applied::default());
                }
                EntryPayload::Membership(m) => {
                    let new: BTreeSet<NodeId> = m.nodes().map(|(n, _)| *n).collect();
                    st.retired.extend(
                        st.membership
                            .nodes()
                            .map(|(n, _)| *n)
                            .filter(|n| !new.contains(n)),
                    );
                    st.membership = StoredMembership::new(Some(e.log_id), m);
                    out.push(Applied::default());
                }
            }
        }
        (st, records, out, changes)
    }
}

/// The current snapshot, as `current.json` names it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Current {
    meta: SnapshotMeta<NodeId, BasicNode>,
    /// The file's name in the snapshots' directory.
    file: String,
}

const CURRENT: &str = "current.json";

/// The snapshots' directory: the current one, and the files being built
/// or received (`*.part`, removed at open).
pub struct SnapshotDir {
    dir: PathBuf,
    /// Serialises replacing the current snapshot (a build and an install
    /// may finish at once).
    lock: Mutex<()>,
    next: AtomicU64,
}

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl SnapshotDir {
    fn open(dir: &Path) -> std::io::Result<SnapshotDir> {
        std::fs::create_dir_all(dir)?;
        let s = SnapshotDir {
            dir: dir.to_owned(),
            lock: Mutex::new(()),
            next: AtomicU64::new(0),
        };
        // What a crash left being built or received goes too.
        let keep = s.current().map(|c| c.file).unwrap_or_default();
        s.remove_all_but(&keep, false)?;
        Ok(s)
    }

    /// Deletes every file but `current.json` and `keep` (and, with
    /// `parts`, the `.part` files being built or received).
    fn remove_all_but(&self, keep: &str, parts: bool) -> std::io::Result<()> {
        for e in std::fs::read_dir(&self.dir)? {
            let name = e?.file_name().to_string_lossy().into_owned();
            if name != CURRENT && name != keep && !(parts && name.ends_with(".part")) {
                let _ = std::fs::remove_file(self.dir.join(&name));
            }
        }
        Ok(())
    }

    fn current(&self) -> Option<Current> {
        let b = std::fs::read(self.dir.join(CURRENT)).ok()?;
        match serde_json::from_slice::<Current>(&b) {
            Ok(c) if self.dir.join(&c.file).is_file() => Some(c),
            Ok(c) => {
                tracing::warn!(file = %c.file, "the current snapshot's file is missing");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "the current snapshot's record is unreadable");
                None
            }
        }
    }

    /// A new file name: `<stem>-<unique>.hvsnap`.
    fn name(&self, stem: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        format!(
            "{stem}-{now}-{}.hvsnap",
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Makes `file` (in the directory, synced) the current snapshot unless
    /// the current one is as new, then deletes the others' files. Whether
    /// it became current.
    fn set_current(
        &self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        file: &str,
    ) -> std::io::Result<bool> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = self.current()
            && c.meta.last_log_id >= meta.last_log_id
        {
            let _ = std::fs::remove_file(self.dir.join(file));
            return Ok(false);
        }
        let c = Current {
            meta: meta.clone(),
            file: file.to_owned(),
        };
        let tmp = self.dir.join(format!("{CURRENT}.new"));
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&serde_json::to_vec(&c).map_err(io_err)?)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, self.dir.join(CURRENT))?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        self.remove_all_but(file, true)?;
        Ok(true)
    }

    /// Builds a snapshot through `apply` (blocking): its meta and file.
    fn build(
        &self,
        apply: &dyn Apply,
    ) -> Result<(SnapshotMeta<NodeId, BasicNode>, PathBuf), String> {
        let name = self.name("snap");
        let part = self.dir.join(format!("{name}.part"));
        let _ = std::fs::remove_file(&part);
        let made = (|| {
            let st = State::decode(&apply.snapshot(&part)?)?;
            let Some(last) = st.applied else {
                return Err("nothing is applied yet".to_owned());
            };
            std::fs::File::open(&part)
                .and_then(|f| f.sync_all())
                .map_err(|e| e.to_string())?;
            std::fs::rename(&part, self.dir.join(&name)).map_err(|e| e.to_string())?;
            Ok(SnapshotMeta {
                last_log_id: Some(last),
                last_membership: st.membership,
                snapshot_id: format!("{}-{}-{name}", last.leader_id.term, last.index),
            })
        })();
        let meta = made.inspect_err(|_| {
            let _ = std::fs::remove_file(&part);
        })?;
        self.set_current(&meta, &name).map_err(|e| e.to_string())?;
        Ok((meta, self.dir.join(name)))
    }

    /// The current snapshot, opened for reading.
    async fn open_current(&self) -> std::io::Result<Option<Snapshot<Types>>> {
        let Some(c) = self.current() else {
            return Ok(None);
        };
        let f = tokio::fs::File::open(self.dir.join(&c.file)).await?;
        Ok(Some(Snapshot {
            meta: c.meta,
            snapshot: Box::new(f),
        }))
    }
}

/// Builds a snapshot through the daemon (see the module doc).
pub struct Builder {
    apply: Arc<dyn Apply>,
    snapshots: Arc<SnapshotDir>,
}

impl RaftSnapshotBuilder<Types> for Builder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<Types>, StorageError<NodeId>> {
        let (apply, snapshots) = (self.apply.clone(), self.snapshots.clone());
        let t = std::time::Instant::now();
        let built = tokio::task::spawn_blocking(move || snapshots.build(&*apply))
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        let (meta, path) = built.map_err(|e| {
            tracing::warn!(error = %e, "building a snapshot failed");
            StorageIOError::write_snapshot(None, &io_err(e))
        })?;
        let f = tokio::fs::File::open(&path)
            .await
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        let bytes = f.metadata().await.map_or(0, |m| m.len());
        tracing::info!(
            index = meta.last_log_id.map_or(0, |l| l.index),
            bytes,
            ms = t.elapsed().as_millis() as u64,
            "built a snapshot"
        );
        Ok(Snapshot {
            meta,
            snapshot: Box::new(f),
        })
    }
}

impl StateMachine {
    /// Applies one stretch of the log (see [`RaftStateMachine::apply`]).
    async fn apply_stretch(
        &mut self,
        entries: Vec<openraft::Entry<Types>>,
    ) -> Result<Vec<Applied>, StorageError<NodeId>> {
        let start = self.state.read().unwrap_or_else(|p| p.into_inner()).clone();
        let (st, records, mut out, changes) = StateMachine::fold(&start, entries);
        if st == start {
            return Ok(out);
        }
        if !changes.is_empty() {
            let apply = self.apply.clone();
            let done = tokio::task::spawn_blocking(move || {
                let mut done = Vec::with_capacity(changes.len());
                for (at, id, change) in changes {
                    let r = match change {
                        Change::Accounts(r) => apply.accounts(id.index, &r),
                        Change::Definitions(c) => apply.definitions(id.index, &c),
                        Change::Retention(p) => apply.retention(id.index, &p).map(|()| None),
                    };
                    done.push((at, id, r));
                }
                done
            })
            .await
            .map_err(|e| StorageIOError::apply(st.applied.expect("applied"), &e))?;
            for (at, id, r) in done {
                out[at].refused =
                    r.map_err(|e| StorageIOError::apply(id, &std::io::Error::other(e)))?;
            }
        }
        let batch = Batch {
            records,
            own: st.origins.get(&self.me).copied().unwrap_or(0),
            state: st.encode(),
        };
        let apply = self.apply.clone();
        let applied = st.applied;
        tokio::task::spawn_blocking(move || apply.store(batch))
            .await
            .map_err(|e| StorageIOError::apply(applied.expect("applied"), &e))?
            .map_err(|e| {
                StorageIOError::apply(applied.expect("applied"), &std::io::Error::other(e))
            })?;
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = st;
        Ok(out)
    }
}

impl RaftStateMachine<Types> for StateMachine {
    type SnapshotBuilder = Builder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>>
    {
        let s = self.state.read().unwrap_or_else(|p| p.into_inner());
        Ok((s.applied, s.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = openraft::Entry<Types>> + Send,
        I::IntoIter: Send,
    {
        // A retention pass is a stretch of its own: the hits before it are
        // stored first (with a state that does not cover it), then it runs,
        // then the state that covers it is stored.
        let mut stretches: Vec<Vec<openraft::Entry<Types>>> = vec![vec![]];
        for e in entries {
            if matches!(e.payload, EntryPayload::Normal(Command::Retention { .. })) {
                stretches.push(vec![e]);
                stretches.push(vec![]);
            } else {
                stretches.last_mut().expect("one at least").push(e);
            }
        }
        let mut out = Vec::new();
        for s in stretches.into_iter().filter(|s| !s.is_empty()) {
            out.extend(self.apply_stretch(s).await?);
        }
        Ok(out)
    }
    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        Builder {
            apply: self.apply.clone(),
            snapshots: self.snapshots.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<tokio::fs::File>, StorageError<NodeId>> {
        let part = self
            .snapshots
            .dir
            .join(format!("{}.part", self.snapshots.name("received")));
        let f = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&part)
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        if let Some(old) = self.receiving.replace(part) {
            let _ = std::fs::remove_file(old);
        }
        Ok(Box::new(f))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError<NodeId>> {
        let sig = Some(meta.signature());
        let err =
            |e: std::io::Error| StorageError::from(StorageIOError::read_snapshot(sig.clone(), &e));
        snapshot.sync_all().await.map_err(err)?;
        drop(snapshot);
        let part = self
            .receiving
            .take()
            .ok_or_else(|| err(io_err("no snapshot was being received")))?;
        let name = self.snapshots.name("snap");
        let path = self.snapshots.dir.join(&name);
        std::fs::rename(&part, &path).map_err(err)?;
        let t = std::time::Instant::now();
        let apply = self.apply.clone();
        let file = path.clone();
        let installed = tokio::task::spawn_blocking(move || apply.install(&file))
            .await
            .map_err(|e| err(io_err(e)))?;
        let st = installed.and_then(|b| State::decode(&b)).map_err(|e| {
            tracing::error!(error = %e, "installing a snapshot failed");
            err(io_err(e))
        })?;
        if st.applied != meta.last_log_id {
            return Err(err(io_err(format!(
                "the snapshot holds log {:?}, its meta says {:?}",
                st.applied, meta.last_log_id
            ))));
        }
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = st;
        self.snapshots.set_current(meta, &name).map_err(err)?;
        tracing::info!(
            index = meta.last_log_id.map_or(0, |l| l.index),
            ms = t.elapsed().as_millis() as u64,
            "installed a snapshot"
        );
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<Types>>, StorageError<NodeId>> {
        self.snapshots
            .open_current()
            .await
            .map_err(|e| StorageIOError::read_snapshot(None, &e).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, Entry};

    fn hits(index: u64, origin: NodeId, seqs: &[u64]) -> Entry<Types> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Command::Hits {
                origin,
                records: seqs.iter().map(|s| (*s, vec![*s as u8])).collect(),
            }),
        }
    }

    #[test]
    fn a_proposal_sent_again_is_applied_once_and_a_replay_is_skipped() {
        let s0 = State::default();
        let (s1, recs, out, _) = StateMachine::fold(
            &s0,
            [
                hits(1, 1, &[1, 2, 3]),
                hits(2, 2, &[10, 11]),
                // Node 1's answer was lost; it sent 2..=5 again.
                hits(3, 1, &[2, 3, 4, 5]),
            ],
        );
        let seqs: Vec<u64> = recs.iter().map(|r| r.0).collect();
        assert_eq!(seqs, vec![1, 2, 3, 10, 11, 4, 5]);
        assert_eq!(
            out[2],
            Applied {
                stored: 2,
                duplicates: 2,
                refused: None,
            }
        );
        assert_eq!(s1.origins, BTreeMap::from([(1, 5), (2, 11)]));
        assert_eq!(s1.applied.unwrap().index, 3);
        // A restart replays entries the store holds: nothing again.
        let (s2, recs, _, _) = StateMachine::fold(&s1, [hits(2, 2, &[10, 11]), hits(3, 1, &[5])]);
        assert!(recs.is_empty());
        assert_eq!(s2, s1);
        assert_eq!(State::decode(&s1.encode()).unwrap(), s1);
    }

    #[test]
    fn a_removed_node_is_retired() {
        use openraft::Membership;
        let m = |ids: &[u64]| {
            let nodes: BTreeMap<u64, BasicNode> = ids
                .iter()
                .map(|i| (*i, BasicNode::new(format!("n{i}"))))
                .collect();
            Membership::new(vec![ids.iter().copied().collect()], nodes)
        };
        let e = |i, ids: &[u64]| Entry::<Types> {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), i),
            payload: EntryPayload::Membership(m(ids)),
        };
        let (s, _, _, _) = StateMachine::fold(&State::default(), [e(1, &[1, 2, 3]), e(2, &[1, 3])]);
        assert_eq!(s.retired, BTreeSet::from([2]));
        assert_eq!(s.membership.voter_ids().collect::<Vec<_>>(), vec![1, 3]);
    }
}
