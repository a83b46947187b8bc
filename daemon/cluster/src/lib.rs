//! Clustering: every node ingests, a majority holds every acknowledged hit.
//!
//! Consensus is openraft (the pinned 0.9 line). What it orders is a
//! [`Command`]: a batch of hits from one node's durable queue, or one change
//! to the accounts or to the goal and funnel definitions ([`Node::propose`]). Each node applies the committed log
//! through an [`Apply`] implementation (the daemon's): hits to its own store,
//! recording the machine's [`State`] (the applied log id, the membership,
//! each origin's highest hit) in the same transaction, and accounts changes
//! to its accounts journal with their log index, so a replay is
//! exactly-once.
//!
//! The pieces:
//! - [`log`]: the Raft log and vote on disk, fsync'd before openraft hears
//!   they are flushed;
//! - [`machine`]: the state machine: deduplicates hits by origin and hands
//!   each applied stretch of the log to [`Apply`]; builds and installs
//!   snapshots through it, after which openraft purges the log;
//! - [`wire`] and [`net`]: the cluster's own RPC, length-prefixed postcard
//!   frames authenticated with HMAC-SHA256 under the cluster key, over TCP on
//!   the cluster address only;
//! - [`forward`]: reads this node's queue and proposes its hits, to the
//!   leader directly or through it, and tells ingest which hits a majority
//!   holds ([`Acks`]).
//!
//! The crate does no HTTP and opens no database; the daemon wires it.

pub mod forward;
pub mod log;
pub mod machine;
pub mod net;
pub mod wire;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use forward::{Acks, Forwarder};
pub use machine::{Apply, Batch, State, StateMachine};
pub use openraft::BasicNode;

/// A node's id: unique in the cluster's life, never reused.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// hitvault's Raft types.
    pub Types:
        D = Command,
        R = Applied,
        NodeId = NodeId,
        Node = BasicNode,
        SnapshotData = tokio::fs::File,
);

/// A Raft handle of hitvault's types.
pub type Raft = openraft::Raft<Types>;

/// What the log orders.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Hits from `origin`'s queue: `(seq, record)` in ascending seq, each
    /// record as the queue holds it. A seq is a hit's id: the queue of node
    /// `n` numbers from [`id_floor`]`(n)`, so ids are unique across nodes.
    Hits {
        origin: NodeId,
        records: Vec<(u64, Vec<u8>)>,
    },
    /// One change to the accounts (an accounts `Record` as JSON), applied
    /// on every node's accounts alike.
    Accounts { origin: NodeId, record: Vec<u8> },
    /// One change to the goal and funnel definitions (the daemon's
    /// `DefChange` as JSON), applied on every node's store alike.
    Definitions { origin: NodeId, change: Vec<u8> },
    /// A retention pass (the daemon's `Prune` as JSON: the proposer's
    /// clock and periods), applied on every node's store at this point of
    /// the log: after every hit before it, before any after it.
    Retention { origin: NodeId, prune: Vec<u8> },
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Hits { origin, records } => write!(
                f,
                "hits from node {origin}: {} records, seq {}..={}",
                records.len(),
                records.first().map_or(0, |r| r.0),
                records.last().map_or(0, |r| r.0)
            ),
            Command::Accounts { origin, record } => {
                write!(
                    f,
                    "an accounts change from node {origin}: {} bytes",
                    record.len()
                )
            }
            Command::Definitions { origin, change } => write!(
                f,
                "a definitions change from node {origin}: {} bytes",
                change.len()
            ),
            Command::Retention { origin, prune } => write!(
                f,
                "a retention pass from node {origin}: {} bytes",
                prune.len()
            ),
        }
    }
}

/// What applying a log entry did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// Records handed to the store.
    pub stored: u32,
    /// Records an earlier entry had applied already (a proposal sent again
    /// after its answer was lost).
    pub duplicates: u32,
    /// An accounts or definitions change the state no longer fits (every
    /// node refuses it alike): why.
    pub refused: Option<String>,
}

/// Bits of a hit id below the node id: node `n`'s queue numbers from
/// `n << ID_SHIFT`, which leaves 2^48 hits to each node.
pub const ID_SHIFT: u32 = 48;

/// The first hit id of node `node`.
pub fn id_floor(node: NodeId) -> u64 {
    node << ID_SHIFT
}

/// The highest node id: ids must leave the top bits of a hit id to the node.
pub const MAX_NODE_ID: NodeId = (1 << (64 - ID_SHIFT)) - 1;

/// When snapshots are built and how much log they leave (see
/// [`machine`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshots {
    /// A snapshot is built after this many entries were applied since the
    /// last one (`cluster.snapshot_every`).
    pub every: u64,
    /// Entries a snapshot covers that the log still keeps: a follower a
    /// little behind catches up from the log rather than a whole snapshot,
    /// and one that installs a snapshot finds the log after it (an install
    /// must end before the leader purged past it, or the follower is sent
    /// the next snapshot, and so on).
    pub keep: u64,
}

impl Default for Snapshots {
    fn default() -> Self {
        Snapshots {
            every: 20_000,
            keep: 20_000,
        }
    }
}

/// How long sending a snapshot's chunk may take, the last one with its
/// installation (the receiving node copies the whole store).
pub const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);

/// How the cluster's timing is set: elections after 0.75 to 1.5 s without
/// a leader's heartbeat (sent every 200 ms), called by [`elections`] after a
/// pre-vote; a follower also refuses to vote while it heard from a leader
/// within 1.5 s (openraft's leader lease), so a dead leader is replaced
/// within about 2.5 s.
pub fn raft_config(snapshots: Snapshots) -> openraft::Config {
    openraft::Config {
        cluster_name: "hitvault".into(),
        heartbeat_interval: HEARTBEAT.as_millis() as u64,
        election_timeout_min: 750,
        election_timeout_max: ELECTION_TIMEOUT_MAX.as_millis() as u64,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(snapshots.every),
        max_in_snapshot_log_to_keep: snapshots.keep,
        // A follower further behind than this is sent a snapshot.
        replication_lag_threshold: snapshots.every,
        install_snapshot_timeout: INSTALL_TIMEOUT.as_millis() as u64,
        // An entry holds at most MAX_PROPOSAL_BYTES; this bounds a frame.
        max_payload_entries: 16,
        // Elections are called by `elections`, after a pre-vote.
        enable_elect: false,
        ..Default::default()
    }
}

/// The leader's heartbeat.
pub const HEARTBEAT: Duration = Duration::from_millis(200);
/// A follower that heard nothing from its leader for this long stops
/// taking hits in `majority` mode (an election is due by then).
pub const ELECTION_TIMEOUT_MAX: Duration = Duration::from_millis(1500);

/// Largest record bytes in one proposal; with `max_payload_entries` it
/// bounds a replication frame (16 × 4 MiB, under [`wire::MAX_FRAME`]).
pub const MAX_PROPOSAL_BYTES: usize = 4 << 20;

/// The cluster's peers: node id to `host:port` on the cluster network.
pub type Peers = BTreeMap<NodeId, String>;

/// What a node says about itself (`hitvault cluster status`, the
/// dashboard).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Status {
    pub node: NodeId,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: String,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
    /// Voters and learners, with their addresses.
    pub voters: BTreeMap<NodeId, String>,
    pub learners: BTreeMap<NodeId, String>,
    /// Node ids removed from the cluster: never accepted again.
    pub retired: Vec<NodeId>,
    /// On the leader: each follower's matched log index.
    pub matched: BTreeMap<NodeId, Option<u64>>,
    /// This node's hits a majority holds (its queue's seq).
    pub acked_seq: u64,
    /// The log index of this node's current snapshot (built here or
    /// installed), if any.
    #[serde(default)]
    pub snapshot_index: Option<u64>,
    /// The log index up to which this node purged its log.
    #[serde(default)]
    pub purged_index: Option<u64>,
}

/// A node's status from its Raft metrics and state machine.
pub fn status(raft: &Raft, state: &machine::Shared, acks: &Acks) -> Status {
    let m = raft.metrics().borrow().clone();
    let role = match m.state {
        openraft::ServerState::Leader => "leader",
        openraft::ServerState::Follower => "follower",
        openraft::ServerState::Candidate => "candidate",
        openraft::ServerState::Learner => "learner",
        openraft::ServerState::Shutdown => "shutdown",
    };
    let mem = m.membership_config.membership();
    let voters: std::collections::BTreeSet<NodeId> = mem.voter_ids().collect();
    let mut s = Status {
        node: m.id,
        role: role.into(),
        term: m.current_term,
        leader: m.current_leader,
        last_log_index: m.last_log_index,
        applied_index: m.last_applied.map(|l| l.index),
        retired: state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .retired
            .iter()
            .copied()
            .collect(),
        acked_seq: acks.acked(),
        snapshot_index: m.snapshot.map(|l| l.index),
        purged_index: m.purged.map(|l| l.index),
        ..Status::default()
    };
    for (id, n) in mem.nodes() {
        if voters.contains(id) {
            s.voters.insert(*id, n.addr.clone());
        } else {
            s.learners.insert(*id, n.addr.clone());
        }
    }
    if let Some(r) = &m.replication {
        for (id, l) in r.iter() {
            s.matched.insert(*id, l.map(|l| l.index));
        }
    }
    s
}

/// Shared by the daemon's parts of one node.
#[derive(Clone)]
pub struct Node {
    pub id: NodeId,
    pub raft: Raft,
    pub state: machine::Shared,
    pub acks: Acks,
    pub contact: net::Contact,
    pub key: Arc<wire::Key>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("id", &self.id).finish()
    }
}

impl Node {
    /// Whether this node may take a hit in `majority` mode now: it is the
    /// leader and a majority answered within [`ELECTION_TIMEOUT_MAX`], or
    /// it follows a leader it heard from that recently.
    pub fn in_quorum(&self) -> bool {
        // Borrowed, not cloned: this runs on every ingest request.
        let rx = self.raft.metrics();
        let m = rx.borrow();
        let limit = ELECTION_TIMEOUT_MAX.as_millis() as u64;
        match m.state {
            openraft::ServerState::Leader => m.millis_since_quorum_ack.is_some_and(|ms| ms < limit),
            _ => m.current_leader.is_some() && self.contact.millis_since() < limit,
        }
    }

    /// This node's status.
    pub fn status(&self) -> Status {
        status(&self.raft, &self.state, &self.acks)
    }

    /// Every member's status as it answers for itself (this node's own
    /// without a call), or why it did not answer within a second.
    pub async fn statuses(&self) -> BTreeMap<NodeId, Result<Status, String>> {
        let m = self.raft.metrics().borrow().membership_config.clone();
        let calls = m
            .membership()
            .nodes()
            .filter(|(id, _)| **id != self.id)
            .map(|(id, n)| {
                let mut peer = net::Peer::new(*id, n.addr.clone(), self.key.clone());
                let id = *id;
                async move {
                    let r = match peer
                        .call(&net::Request::Status, Duration::from_secs(1))
                        .await
                    {
                        Ok(net::Answer::Status(s)) => Ok(*s),
                        Ok(_) => Err("unexpected answer".to_owned()),
                        Err(e) => Err(e.to_string()),
                    };
                    (id, r)
                }
            })
            .collect::<Vec<_>>();
        let mut out = BTreeMap::new();
        for c in calls {
            let (id, r) = c.await;
            out.insert(id, r);
        }
        out.insert(self.id, Ok(self.status()));
        out
    }
}

impl Node {
    /// Proposes `cmd` (an accounts or definitions change) through the
    /// leader and waits,
    /// at most `ttl`, until this node applied it: `Ok(None)` when it
    /// applied, `Ok(Some(reason))` when the log refused it on every node
    /// (the state no longer fit it). Sent again only while no leader took
    /// it (none known, or the one asked is not the leader any more); `Err`
    /// when it was not confirmed in time: it may still be applied later.
    pub async fn propose(&self, cmd: Command, ttl: Duration) -> Result<Option<String>, String> {
        let deadline = tokio::time::Instant::now() + ttl;
        let pause = Duration::from_millis(100);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(format!("no leader took it within {} s", ttl.as_secs()));
            }
            let leader = self.raft.metrics().borrow().current_leader;
            let answer = match leader {
                None => {
                    tokio::time::sleep(pause.min(left)).await;
                    continue;
                }
                Some(l) if l == self.id => net::propose_here(&self.raft, cmd.clone()).await,
                Some(l) => {
                    let addr = self
                        .raft
                        .metrics()
                        .borrow()
                        .membership_config
                        .membership()
                        .get_node(&l)
                        .map(|n| n.addr.clone())
                        .ok_or_else(|| format!("leader {l} has no address"))?;
                    let mut peer = net::Peer::new(l, addr, self.key.clone());
                    match peer.call(&net::Request::Forward(cmd.clone()), left).await {
                        Ok(net::Answer::Forward(f)) => f,
                        Ok(_) => return Err("unexpected answer".into()),
                        // Not sent: ask again when a leader is known.
                        Err(net::CallError::Unreachable(_)) => {
                            tokio::time::sleep(pause.min(left)).await;
                            continue;
                        }
                        Err(e) => return Err(format!("leader {l}: {e}")),
                    }
                }
            };
            match answer {
                net::Forwarded::Committed { index, refused } => {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    self.raft
                        .wait(Some(left))
                        .applied_index_at_least(Some(index), "a change")
                        .await
                        .map_err(|e| {
                            format!("committed at log index {index}, not applied here yet: {e}")
                        })?;
                    return Ok(refused);
                }
                net::Forwarded::NotLeader { .. } => tokio::time::sleep(pause.min(left)).await,
                net::Forwarded::Failed(e) => return Err(e),
            }
        }
    }
}

/// Refusals of the cluster's admin actions.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("node id {0} was removed from this cluster once; node ids are never reused")]
    Retired(NodeId),
    #[error("node id {0} is already a member")]
    Member(NodeId),
    #[error("node id {0} is not a member")]
    NotMember(NodeId),
    #[error("node id must be between 1 and {MAX_NODE_ID}")]
    BadId,
    #[error("this node is not the leader (the leader is {0:?}); run it there")]
    NotLeader(Option<NodeId>),
    #[error("{0}")]
    Raft(String),
}

impl Node {
    /// Adds `id` at `addr` as a learner, waits until it caught up, then
    /// makes it a voter.
    pub async fn add(&self, id: NodeId, addr: String) -> Result<Status, AdminError> {
        if id == 0 || id > MAX_NODE_ID {
            return Err(AdminError::BadId);
        }
        if self
            .state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .retired
            .contains(&id)
        {
            return Err(AdminError::Retired(id));
        }
        let m = self.raft.metrics().borrow().clone();
        if m.membership_config
            .membership()
            .voter_ids()
            .any(|v| v == id)
        {
            return Err(AdminError::Member(id));
        }
        self.raft
            .add_learner(id, BasicNode { addr }, true)
            .await
            .map_err(|e| self.admin_error(e))?;
        let mut voters: std::collections::BTreeSet<NodeId> =
            m.membership_config.membership().voter_ids().collect();
        voters.insert(id);
        self.raft
            .change_membership(voters, false)
            .await
            .map_err(|e| self.admin_error(e))?;
        Ok(self.status())
    }

    /// Removes `id` from the voters and learners; its id is retired.
    pub async fn remove(&self, id: NodeId) -> Result<Status, AdminError> {
        let m = self.raft.metrics().borrow().clone();
        let mem = m.membership_config.membership();
        if !mem.nodes().any(|(n, _)| *n == id) {
            return Err(AdminError::NotMember(id));
        }
        let voters: std::collections::BTreeSet<NodeId> =
            mem.voter_ids().filter(|v| *v != id).collect();
        self.raft
            .change_membership(voters, false)
            .await
            .map_err(|e| self.admin_error(e))?;
        Ok(self.status())
    }

    fn admin_error(
        &self,
        e: openraft::error::RaftError<NodeId, openraft::error::ClientWriteError<NodeId, BasicNode>>,
    ) -> AdminError {
        match e {
            openraft::error::RaftError::APIError(
                openraft::error::ClientWriteError::ForwardToLeader(f),
            ) => AdminError::NotLeader(f.leader_id),
            other => AdminError::Raft(other.to_string()),
        }
    }
}

/// Forms the cluster from `members` on a pristine node (every founding
/// node may do so with the same members: openraft allows it). `Ok(false)`
/// when the cluster was formed already, by this node or another.
pub async fn form(raft: &Raft, members: BTreeMap<NodeId, BasicNode>) -> Result<bool, String> {
    match raft.initialize(members).await {
        Ok(()) => Ok(true),
        Err(openraft::error::RaftError::APIError(
            openraft::error::InitializeError::NotAllowed(_),
        )) => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}

/// The shortest wait for a leader before a voter asks for an election.
pub const ELECTION_TIMEOUT_MIN: Duration = Duration::from_millis(750);

/// Whether this node would vote in an election now (the pre-vote's
/// answer): it is not a leader a majority answered recently, and it heard
/// from no leader within [`ELECTION_TIMEOUT_MIN`].
pub fn would_vote(raft: &Raft, contact: &net::Contact) -> bool {
    let rx = raft.metrics();
    let m = rx.borrow();
    match m.state {
        openraft::ServerState::Leader => m
            .millis_since_quorum_ack
            .is_none_or(|ms| ms >= ELECTION_TIMEOUT_MAX.as_millis() as u64),
        _ => contact.millis_since() >= ELECTION_TIMEOUT_MIN.as_millis() as u64,
    }
}

/// A wait drawn anew for each round: 0.75 to 1.5 s.
fn election_wait() -> Duration {
    use std::hash::BuildHasher;
    let spread = (ELECTION_TIMEOUT_MAX - ELECTION_TIMEOUT_MIN).as_millis() as u64;
    let jitter =
        std::collections::hash_map::RandomState::new().hash_one(std::time::Instant::now()) % spread;
    ELECTION_TIMEOUT_MIN + Duration::from_millis(jitter)
}

/// Calls this node's elections, with a pre-vote: openraft's own election
/// timer is off ([`raft_config`]). A voter that heard from no leader for a
/// wait drawn anew each round (0.75 to 1.5 s) asks the other voters whether
/// they would vote; only when a majority (itself included) would does it
/// start an election. So a node cut off from the others never raises its
/// term, and coming back it disturbs no leader (openraft 0.9 has no
/// pre-vote of its own); and two voters never tie round after round
/// (openraft 0.9 draws one election timeout per process and keeps it).
pub async fn elections(node: Node) {
    let mut wait = election_wait();
    let mut last = std::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (state, term, voters) = {
            let rx = node.raft.metrics();
            let m = rx.borrow();
            let mem = m.membership_config.membership();
            let voters: Vec<(NodeId, String)> = mem
                .voter_ids()
                .filter_map(|v| mem.get_node(&v).map(|n| (v, n.addr.clone())))
                .collect();
            (m.state, m.current_term, voters)
        };
        if state == openraft::ServerState::Shutdown {
            return;
        }
        if state == openraft::ServerState::Leader || !voters.iter().any(|(v, _)| *v == node.id) {
            continue;
        }
        let quiet = Duration::from_millis(node.contact.millis_since());
        if quiet < wait || last.elapsed() < wait {
            continue;
        }
        let calls = voters
            .iter()
            .filter(|(v, _)| *v != node.id)
            .map(|(v, addr)| {
                let mut peer = net::Peer::new(*v, addr.clone(), node.key.clone());
                async move {
                    matches!(
                        peer.call(&net::Request::PreVote, Duration::from_millis(300))
                            .await,
                        Ok(net::Answer::PreVote(true))
                    )
                }
            })
            .collect::<Vec<_>>();
        let mut granted = 1;
        for c in calls {
            granted += usize::from(c.await);
        }
        if granted * 2 > voters.len() {
            tracing::info!(
                node = node.id,
                term,
                granted,
                voters = voters.len(),
                "no leader heard from: a majority would vote; calling an election"
            );
            let _ = node.raft.trigger().elect().await;
        }
        last = std::time::Instant::now();
        wait = election_wait();
    }
}

/// Logs this node's changes of role, leader and term, and why Raft stopped
/// if it did: the operator's record of the cluster (openraft's own lines are
/// left out of the log by default: it logs every failed heartbeat to an
/// absent node).
pub async fn report(raft: Raft) {
    let mut rx = raft.metrics();
    let mut last = None;
    loop {
        let m = rx.borrow_and_update().clone();
        let now = (m.state, m.current_leader, m.current_term);
        if last != Some(now) {
            match &m.running_state {
                Err(e) => {
                    tracing::error!(node = m.id, error = %e, "the cluster node stopped");
                    return;
                }
                Ok(()) => tracing::info!(
                    node = m.id,
                    role = ?m.state,
                    leader = ?m.current_leader,
                    term = m.current_term,
                    "cluster role"
                ),
            }
            last = Some(now);
        }
        if m.state == openraft::ServerState::Shutdown || rx.changed().await.is_err() {
            return;
        }
    }
}

/// Starts this node's Raft on `dir` (the log) and `sm`.
pub async fn start(
    id: NodeId,
    log: log::LogStore,
    sm: StateMachine,
    key: Arc<wire::Key>,
    snapshots: Snapshots,
) -> Result<Raft, openraft::error::Fatal<NodeId>> {
    let config = Arc::new(
        raft_config(snapshots)
            .validate()
            .expect("the built-in Raft configuration is valid"),
    );
    let network = net::Network::new(key);
    openraft::Raft::new(id, config, network, log, sm).await
}
