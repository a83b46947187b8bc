//! The cluster's RPC over TCP: Raft's own calls (append entries, vote, a
//! snapshot's chunks), a follower's proposals forwarded to the leader, and
//! a node's status.
//!
//! A client keeps one connection per peer and sends one request at a time
//! on it; any error drops the connection and the next call dials again. The
//! server answers each connection's requests in order. Both speak
//! [`crate::wire`] frames, so both ends must hold the cluster key.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use tokio::io::BufStream;
use tokio::net::{TcpListener, TcpStream};

use crate::wire::{self, ANSWER, Key, REQUEST};
use crate::{BasicNode, Command, NodeId, Raft, Status, Types};

/// A request between nodes.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    Append(AppendEntriesRequest<Types>),
    Vote(VoteRequest<NodeId>),
    /// A proposal from a follower, for the leader to write.
    Forward(Command),
    Status,
    /// Would you vote in an election now (you know no live leader)?
    PreVote,
    /// A chunk of a snapshot from the leader (the last one installs it).
    Snapshot(InstallSnapshotRequest<Types>),
}

/// What a forwarded proposal became.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Forwarded {
    /// Committed on a majority and applied on the leader, at this index
    /// (`refused`: an accounts change the state no longer fit).
    Committed {
        index: u64,
        refused: Option<String>,
    },
    /// This node is not the leader; here is the one it knows.
    NotLeader {
        leader: Option<NodeId>,
    },
    Failed(String),
}

/// An answer.
#[derive(Debug, Serialize, Deserialize)]
pub enum Answer {
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Forward(Forwarded),
    Status(Box<Status>),
    PreVote(bool),
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
}

/// When this node last heard from a leader (an append entries request,
/// heartbeats included): a follower that has not for a while is not in the
/// majority.
#[derive(Clone, Debug)]
pub struct Contact {
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Default for Contact {
    fn default() -> Self {
        Contact {
            start: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(u64::MAX)),
        }
    }
}

impl Contact {
    fn heard(&self) {
        self.last_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Milliseconds since a leader was last heard (`u64::MAX`: never).
    pub fn millis_since(&self) -> u64 {
        match self.last_ms.load(Ordering::Relaxed) {
            u64::MAX => u64::MAX,
            t => (self.start.elapsed().as_millis() as u64).saturating_sub(t),
        }
    }
}

/// How long a dial may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A connection to one peer.
pub struct Peer {
    target: NodeId,
    addr: String,
    key: Arc<Key>,
    conn: Option<BufStream<TcpStream>>,
}

impl Peer {
    pub fn new(target: NodeId, addr: String, key: Arc<Key>) -> Peer {
        Peer {
            target,
            addr,
            key,
            conn: None,
        }
    }

    /// Sends `req` and reads the answer within `ttl`.
    pub async fn call(&mut self, req: &Request, ttl: Duration) -> Result<Answer, CallError> {
        let r = tokio::time::timeout(ttl, self.exchange(req)).await;
        match r {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(e)) => {
                self.conn = None;
                Err(e)
            }
            Err(_) => {
                self.conn = None;
                Err(CallError::Timeout)
            }
        }
    }

    async fn exchange(&mut self, req: &Request) -> Result<Answer, CallError> {
        if self.conn.is_none() {
            let s = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.addr))
                .await
                .map_err(|_| CallError::Unreachable(format!("dialling {} timed out", self.addr)))?
                .map_err(|e| CallError::Unreachable(format!("{}: {e}", self.addr)))?;
            let _ = s.set_nodelay(true);
            self.conn = Some(BufStream::new(s));
        }
        let c = self.conn.as_mut().expect("connected");
        wire::write(c, &self.key, REQUEST, req)
            .await
            .map_err(|e| CallError::Network(format!("to node {}: {e}", self.target)))?;
        wire::read(c, &self.key, ANSWER)
            .await
            .map_err(|e| CallError::Network(format!("from node {}: {e}", self.target)))
    }
}

/// Why a call got no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("{0}")]
    Network(String),
    #[error("no answer in time")]
    Timeout,
    #[error("unexpected answer")]
    Unexpected,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

fn rpc_error<E: std::error::Error>(e: CallError) -> RPCError<NodeId, BasicNode, E> {
    match e {
        CallError::Unreachable(m) => RPCError::Unreachable(Unreachable::new(&Msg(m))),
        other => RPCError::Network(NetworkError::new(&Msg(other.to_string()))),
    }
}

/// Makes a [`Peer`] for each target openraft replicates to.
pub struct Network {
    key: Arc<Key>,
}

impl Network {
    pub fn new(key: Arc<Key>) -> Network {
        Network { key }
    }
}

impl RaftNetworkFactory<Types> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer::new(target, node.addr.clone(), self.key.clone())
    }
}

impl RaftNetwork<Types> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<Types>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.call(&Request::Append(rpc), option.hard_ttl()).await {
            Ok(Answer::Append(Ok(r))) => Ok(r),
            Ok(Answer::Append(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(rpc_error(CallError::Unexpected)),
            Err(e) => Err(rpc_error(e)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<Types>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        match self.call(&Request::Snapshot(rpc), option.hard_ttl()).await {
            Ok(Answer::Snapshot(Ok(r))) => Ok(r),
            Ok(Answer::Snapshot(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(rpc_error(CallError::Unexpected)),
            Err(e) => Err(rpc_error(e)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.call(&Request::Vote(rpc), option.hard_ttl()).await {
            Ok(Answer::Vote(Ok(r))) => Ok(r),
            Ok(Answer::Vote(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(rpc_error(CallError::Unexpected)),
            Err(e) => Err(rpc_error(e)),
        }
    }
}

/// How the server answers a [`Request::Status`].
pub type StatusFn = Arc<dyn Fn() -> Status + Send + Sync>;

/// Serves the cluster RPC on `listener` until the runtime stops or this
/// future is dropped (its connections are closed with it: a peer that
/// still holds one then dials again).
pub async fn serve(
    listener: TcpListener,
    raft: Raft,
    key: Arc<Key>,
    contact: Contact,
    status: StatusFn,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let (sock, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a cluster connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        let (raft, key, contact, status) =
            (raft.clone(), key.clone(), contact.clone(), status.clone());
        conns.spawn(async move {
            let mut s = BufStream::new(sock);
            loop {
                let req: Request = match wire::read(&mut s, &key, REQUEST).await {
                    Ok(r) => r,
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return,
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "dropped a cluster connection");
                        return;
                    }
                };
                let answer = match req {
                    Request::Append(a) => {
                        let from_leader = a.vote.is_committed();
                        let r = raft.append_entries(a).await;
                        if from_leader && r.as_ref().is_ok_and(|r| r.is_success()) {
                            contact.heard();
                        }
                        Answer::Append(r)
                    }
                    Request::Vote(v) => Answer::Vote(raft.vote(v).await),
                    Request::Forward(c) => Answer::Forward(propose_here(&raft, c).await),
                    Request::Status => Answer::Status(Box::new(status())),
                    Request::PreVote => Answer::PreVote(crate::would_vote(&raft, &contact)),
                    Request::Snapshot(c) => {
                        let r = raft.install_snapshot(c).await;
                        if r.is_ok() {
                            contact.heard();
                        }
                        Answer::Snapshot(r)
                    }
                };
                if let Err(e) = wire::write(&mut s, &key, ANSWER, &answer).await {
                    tracing::debug!(%peer, error = %e, "a cluster answer was not sent");
                    return;
                }
            }
        });
    }
}

/// Writes `c` through this node's Raft if it leads.
pub async fn propose_here(raft: &Raft, c: Command) -> Forwarded {
    use openraft::error::ClientWriteError;
    match raft.client_write(c).await {
        Ok(r) => Forwarded::Committed {
            index: r.log_id.index,
            refused: r.data.refused,
        },
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Forwarded::NotLeader {
            leader: f.leader_id,
        },
        Err(e) => Forwarded::Failed(e.to_string()),
    }
}
