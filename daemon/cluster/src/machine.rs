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
//! Snapshots: none are built (`SnapshotPolicy::Never`, and the log is never
//! purged), so a node that was away catches up by replaying the log from
//! where its store stands, and a new node replays it from the start.
//! Receiving a snapshot is refused for the same reason; a snapshot taken as
//! a backup makes is the next step (docs/internals/cluster.md).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::sync::{Arc, RwLock};

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
}

/// A change a stretch of the log holds besides hits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Accounts(Vec<u8>),
    Definitions(Vec<u8>),
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
}

impl StateMachine {
    /// The machine of node `me`, from the state `apply` stored.
    pub fn open(me: NodeId, apply: Arc<dyn Apply>) -> Result<StateMachine, String> {
        let state = match apply.load()? {
            Some(b) => State::decode(&b)?,
            None => State::default(),
        };
        Ok(StateMachine {
            me,
            state: Arc::new(RwLock::new(state)),
            apply,
        })
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

/// Refuses to build a snapshot: the cluster keeps its whole log.
pub struct NoSnapshots;

impl RaftSnapshotBuilder<Types> for NoSnapshots {
    async fn build_snapshot(&mut self) -> Result<Snapshot<Types>, StorageError<NodeId>> {
        Err(StorageIOError::write_snapshot(
            None,
            &std::io::Error::other(
                "hitvault's cluster keeps its whole log and builds no snapshots",
            ),
        )
        .into())
    }
}

impl RaftStateMachine<Types> for StateMachine {
    type SnapshotBuilder = NoSnapshots;

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

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        NoSnapshots
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Err(StorageIOError::read_snapshot(
            None,
            &std::io::Error::other("hitvault's cluster installs no snapshots: it replays the log"),
        )
        .into())
    }

    async fn install_snapshot(
        &mut self,
        _meta: &SnapshotMeta<NodeId, BasicNode>,
        _snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        Err(StorageIOError::read_snapshot(
            None,
            &std::io::Error::other("hitvault's cluster installs no snapshots: it replays the log"),
        )
        .into())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<Types>>, StorageError<NodeId>> {
        Ok(None)
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
