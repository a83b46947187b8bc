//! The forwarder: this node's durable queue, proposed to the cluster.
//!
//! It reads the queue in order from the highest of this node's hits the
//! state machine applied, proposes what it read as one [`Command::Hits`]
//! (at most [`crate::MAX_PROPOSAL_BYTES`]), to its own Raft when it leads and
//! to the leader otherwise, and proposes the same records again until one
//! proposal is committed. Only then does it move on and raise [`Acks`], which
//! `majority`-mode ingest waits on before its 202.
//!
//! A proposal sent again after its answer was lost can be committed twice;
//! the state machine applies each hit once (it keeps each origin's highest
//! seq). After a restart the forwarder starts from the applied position, so
//! it may propose hits the log already holds; they are duplicates the same
//! way.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hitvault_queue::Queue;
use tokio::sync::watch;

use crate::net::{Answer, Forwarded, Peer, Request, propose_here};
use crate::wire::Key;
use crate::{Command, MAX_PROPOSAL_BYTES, NodeId, Raft};

/// Which of this node's hits a majority holds: every seq at or below
/// [`Acks::acked`].
#[derive(Clone, Debug)]
pub struct Acks(Arc<watch::Sender<u64>>);

impl Acks {
    pub fn new(start: u64) -> Acks {
        Acks(Arc::new(watch::channel(start).0))
    }

    pub fn acked(&self) -> u64 {
        *self.0.borrow()
    }

    fn raise(&self, seq: u64) {
        self.0.send_if_modified(|v| {
            let up = seq > *v;
            if up {
                *v = seq;
            }
            up
        });
    }

    /// Waits until `seq` is held by a majority; `false` after `timeout`.
    pub async fn wait(&self, seq: u64, timeout: Duration) -> bool {
        let mut rx = self.0.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|v| *v >= seq))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// How long a forwarded proposal may take before it is sent again.
pub const FORWARD_TTL: Duration = Duration::from_secs(10);
/// Most records in one proposal.
pub const MAX_PROPOSAL_RECORDS: usize = 10_000;

/// This node's forwarder.
pub struct Forwarder {
    pub me: NodeId,
    pub raft: Raft,
    pub queue: Queue,
    pub acks: Acks,
    pub key: Arc<Key>,
    /// Set to stop after the current proposal.
    pub stop: Arc<AtomicBool>,
    peers: BTreeMap<NodeId, Peer>,
}

impl Forwarder {
    pub fn new(
        me: NodeId,
        raft: Raft,
        queue: Queue,
        acks: Acks,
        key: Arc<Key>,
        stop: Arc<AtomicBool>,
    ) -> Forwarder {
        Forwarder {
            me,
            raft,
            queue,
            acks,
            key,
            stop,
            peers: BTreeMap::new(),
        }
    }

    /// Proposes the queue from `after` on, until stopped.
    pub async fn run(mut self, mut after: u64) {
        let mut backoff = Duration::from_millis(50);
        while !self.stop.load(Ordering::Acquire) {
            let q = self.queue.clone();
            let read = tokio::task::spawn_blocking(move || {
                q.read_after(after, MAX_PROPOSAL_RECORDS, Duration::from_millis(200))
            })
            .await;
            let mut records = match read {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "reading the queue for the cluster failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Err(_) => return,
            };
            if records.is_empty() {
                continue;
            }
            let mut bytes = 0;
            let keep = records
                .iter()
                .position(|r| {
                    bytes += r.1.len();
                    bytes > MAX_PROPOSAL_BYTES
                })
                .unwrap_or(records.len())
                .max(1);
            records.truncate(keep);
            let last = records.last().expect("non-empty").0;
            let cmd = Command::Hits {
                origin: self.me,
                records,
            };
            loop {
                match self.propose(&cmd).await {
                    Ok(_) => {
                        backoff = Duration::from_millis(50);
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "a proposal was not committed; sending it again");
                        if self.stop.load(Ordering::Acquire) {
                            return;
                        }
                        tokio::time::sleep(backoff).await;
                        // Short: a new leader is usually known within a
                        // second or two, and every hit waiting here waits.
                        backoff = (backoff * 2).min(Duration::from_millis(300));
                    }
                }
            }
            after = last;
            self.acks.raise(last);
        }
    }

    /// One attempt: the log index it was committed at.
    async fn propose(&mut self, cmd: &Command) -> Result<u64, String> {
        let Some(leader) = self.raft.current_leader().await else {
            return Err("no leader".into());
        };
        let answer = if leader == self.me {
            propose_here(&self.raft, cmd.clone()).await
        } else {
            let addr = {
                let m = self.raft.metrics().borrow().membership_config.clone();
                m.membership()
                    .get_node(&leader)
                    .map(|n| n.addr.clone())
                    .ok_or_else(|| format!("leader {leader} has no address"))?
            };
            let key = self.key.clone();
            let peer = self
                .peers
                .entry(leader)
                .or_insert_with(|| Peer::new(leader, addr, key));
            // A leader cut off answers nothing: give up on it as soon as
            // another one is known (the proposal may still be committed;
            // the state machine then skips the copy sent next).
            let mut metrics = self.raft.metrics();
            let moved = metrics.wait_for(|m| m.current_leader.is_some_and(|l| l != leader));
            let req = Request::Forward(cmd.clone());
            let answer = tokio::select! {
                r = peer.call(&req, FORWARD_TTL) => Some(r),
                _ = moved => None,
            };
            match answer {
                Some(Ok(Answer::Forward(f))) => f,
                Some(Ok(_)) => return Err("unexpected answer".into()),
                Some(Err(e)) => return Err(e.to_string()),
                None => {
                    // The connection may hold a late answer: drop it.
                    self.peers.remove(&leader);
                    return Err(format!("leader {leader} was replaced"));
                }
            }
        };
        match answer {
            Forwarded::Committed { index, .. } => Ok(index),
            Forwarded::NotLeader { leader } => Err(format!("not the leader (leader: {leader:?})")),
            Forwarded::Failed(e) => Err(e),
        }
    }
}
