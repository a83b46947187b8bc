//! Three nodes in one process, over real TCP on loopback, with real queues
//! and Raft logs on disk, and an in-memory model of the store (rows in log
//! order, the state committed with them). Proves the glue: every hit a
//! node's queue took and a majority acknowledged is applied exactly once, in
//! the same order, on every node, across a leader's death and a restart;
//! and every accounts change, proposed on any node, is applied once on
//! every node in the log's order.
//! The daemon-level test (tests/tests/cluster.rs) does the same with three
//! real daemons in network namespaces.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hitvault_cluster::machine::{Apply, Batch, State, StateMachine};
use hitvault_cluster::net::{self, Contact};
use hitvault_cluster::wire::Key;
use hitvault_cluster::{
    Acks, BasicNode, Command, Forwarder, NodeId, Raft, Snapshots, id_floor, log::LogStore,
};
use hitvault_queue::{Queue, QueueConfig};

/// The model store: what a node's DuckDB would hold.
#[derive(Default)]
struct Mem {
    rows: Mutex<Vec<(u64, Vec<u8>)>>,
    state: Mutex<Option<Vec<u8>>>,
    queue: Mutex<Option<Queue>>,
    /// The model accounts: the highest index applied and the changes, in
    /// log order; a change equal to one applied before does not fit.
    accounts: Mutex<(u64, Vec<Vec<u8>>)>,
    /// Snapshots installed.
    installed: Mutex<u32>,
    /// Retention passes run.
    passes: Mutex<u32>,
}

/// What the model's snapshot file holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct Copy {
    rows: Vec<(u64, Vec<u8>)>,
    state: Vec<u8>,
    accounts: (u64, Vec<Vec<u8>>),
}

impl Apply for Mem {
    fn store(&self, b: Batch) -> Result<(), String> {
        // The rows and their state change together (a snapshot reads both).
        let mut rows = self.rows.lock().unwrap();
        rows.extend(b.records);
        *self.state.lock().unwrap() = Some(b.state);
        drop(rows);
        if b.own > 0
            && let Some(q) = &*self.queue.lock().unwrap()
        {
            let _ = q.mark_committed(b.own);
        }
        Ok(())
    }
    fn load(&self) -> Result<Option<Vec<u8>>, String> {
        Ok(self.state.lock().unwrap().clone())
    }
    fn accounts(&self, index: u64, record: &[u8]) -> Result<Option<String>, String> {
        let mut a = self.accounts.lock().unwrap();
        if index <= a.0 {
            return Ok(None);
        }
        if a.1.iter().any(|r| r == record) {
            return Ok(Some("taken".into()));
        }
        a.0 = index;
        a.1.push(record.to_vec());
        Ok(None)
    }
    fn definitions(&self, index: u64, change: &[u8]) -> Result<Option<String>, String> {
        // The model keeps accounts and definitions in one ordered list.
        self.accounts(index, change)
    }
    fn retention(&self, _index: u64, prune: &[u8]) -> Result<(), String> {
        self.rows
            .lock()
            .unwrap()
            .retain(|r| !r.1.starts_with(prune));
        *self.passes.lock().unwrap() += 1;
        Ok(())
    }
    fn snapshot(&self, file: &Path) -> Result<Vec<u8>, String> {
        let (rows, state) = {
            let rows = self.rows.lock().unwrap();
            let state = self.state.lock().unwrap().clone();
            (rows.clone(), state.ok_or("nothing stored")?)
        };
        // The accounts after the store, as the daemon copies them.
        let accounts = self.accounts.lock().unwrap().clone();
        let copy = Copy {
            rows,
            state: state.clone(),
            accounts,
        };
        std::fs::write(file, serde_json::to_vec(&copy).unwrap()).map_err(|e| e.to_string())?;
        Ok(state)
    }
    fn install(&self, file: &Path) -> Result<Vec<u8>, String> {
        let copy: Copy = serde_json::from_slice(&std::fs::read(file).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        let mut rows = self.rows.lock().unwrap();
        *rows = copy.rows;
        *self.state.lock().unwrap() = Some(copy.state.clone());
        drop(rows);
        let mut a = self.accounts.lock().unwrap();
        if copy.accounts.0 > a.0 {
            *a = copy.accounts;
        }
        *self.installed.lock().unwrap() += 1;
        Ok(copy.state)
    }
}

impl Mem {
    fn state(&self) -> State {
        self.load()
            .unwrap()
            .map(|b| State::decode(&b).unwrap())
            .unwrap_or_default()
    }
}

struct TestNode {
    id: NodeId,
    log: LogStore,
    node: hitvault_cluster::Node,
    raft: Raft,
    queue: Queue,
    acks: Acks,
    mem: Arc<Mem>,
    stop: Arc<AtomicBool>,
    server: tokio::task::JoinHandle<()>,
}

fn key() -> Arc<Key> {
    Arc::new(Key::from_file_bytes(&[b'k'; 32]).unwrap())
}

async fn start(
    id: NodeId,
    dir: &Path,
    listener: tokio::net::TcpListener,
    mem: Arc<Mem>,
    snapshots: Snapshots,
) -> TestNode {
    let (log, _) = LogStore::open(&dir.join("raft")).unwrap();
    let own = mem.state().origins.get(&id).copied().unwrap_or(0);
    let queue = Queue::open(
        QueueConfig {
            dir: dir.join("queue"),
            ..QueueConfig::default()
        },
        own,
        (own + 1).max(id_floor(id) + 1),
        None,
    )
    .unwrap();
    *mem.queue.lock().unwrap() = Some(queue.clone());
    let sm = StateMachine::open(id, mem.clone(), &dir.join("snapshots")).unwrap();
    let shared = sm.shared();
    let key = key();
    let raft = hitvault_cluster::start(id, log.clone(), sm, key.clone(), snapshots)
        .await
        .unwrap();
    let acks = Acks::new(own);
    let contact = Contact::default();
    let (r, s, a) = (raft.clone(), shared.clone(), acks.clone());
    let node = hitvault_cluster::Node {
        id,
        raft: raft.clone(),
        state: shared.clone(),
        acks: acks.clone(),
        contact: contact.clone(),
        key: key.clone(),
    };
    let server = tokio::spawn(net::serve(
        listener,
        raft.clone(),
        key.clone(),
        contact,
        Arc::new(move || hitvault_cluster::status(&r, &s, &a)),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    tokio::spawn(hitvault_cluster::elections(node.clone()));
    tokio::spawn(
        Forwarder::new(
            id,
            raft.clone(),
            queue.clone(),
            acks.clone(),
            key,
            stop.clone(),
        )
        .run(own),
    );
    TestNode {
        id,
        log,
        node,
        raft,
        queue,
        acks,
        mem,
        stop,
        server,
    }
}

/// Stops `n` as a killed daemon stops (its forwarder, RPC server, Raft and
/// queue); returns its id and its model store, to start it again with.
async fn kill(n: TestNode) -> (NodeId, Arc<Mem>) {
    n.stop.store(true, std::sync::atomic::Ordering::Release);
    n.server.abort();
    n.raft.shutdown().await.unwrap();
    n.queue.close();
    *n.mem.queue.lock().unwrap() = None;
    (n.id, n.mem.clone())
}

async fn leader(nodes: &[&TestNode]) -> NodeId {
    let t = Instant::now();
    loop {
        for n in nodes {
            let leads = {
                let m = n.raft.metrics();
                let m = m.borrow();
                m.state == openraft::ServerState::Leader && m.current_leader == Some(n.id)
            };
            if leads {
                return n.id;
            }
        }
        assert!(t.elapsed() < Duration::from_secs(20), "no leader elected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Appends `count` hits to `n`'s queue in groups of 10 and waits until a
/// majority holds each; returns their seqs.
async fn send(n: &TestNode, count: usize) -> Vec<u64> {
    send_as(n, count, "node").await
}

/// [`send`], each payload starting with `prefix`.
async fn send_as(n: &TestNode, count: usize, prefix: &str) -> Vec<u64> {
    let mut seqs = Vec::new();
    for g in 0..count / 10 {
        let payloads: Vec<Vec<u8>> = (0..10)
            .map(|i| format!("{prefix} {} hit {}", n.id, g * 10 + i).into_bytes())
            .collect();
        let r = n.queue.append_all(payloads).await.unwrap();
        assert!(
            n.acks.wait(*r.end(), Duration::from_secs(20)).await,
            "node {}: hits up to {} not acknowledged",
            n.id,
            r.end()
        );
        seqs.extend(r);
    }
    seqs
}

async fn applied_equal(nodes: &[&TestNode], want: usize) {
    let t = Instant::now();
    loop {
        let lens: Vec<usize> = nodes
            .iter()
            .map(|n| n.mem.rows.lock().unwrap().len())
            .collect();
        if lens.iter().all(|l| *l >= want) {
            return;
        }
        if t.elapsed() > Duration::from_secs(30) {
            for n in nodes {
                eprintln!("node {}: {:?}", n.id, *n.raft.metrics().borrow());
            }
            panic!("rows applied: {lens:?}, want {want} on each");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_hits_are_applied_once_everywhere_across_a_leader_death_and_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = (1..=3).map(|i| tmp.path().join(format!("n{i}"))).collect();
    let (mut nodes, members) = formed(&dirs, Snapshots::default()).await;
    let all: Vec<&TestNode> = nodes.iter().collect();
    let first = leader(&all).await;
    let mut acked = Vec::new();
    for n in &nodes {
        acked.extend(send(n, 100).await);
    }
    applied_equal(&all, 300).await;

    // Accounts changes from every node, leader and followers, while hits
    // flow; two nodes propose the same change at once: the log orders
    // them, the first applies and the second is refused, on every node.
    let changes = async {
        for n in &nodes {
            let record = format!("user of node {}", n.id).into_bytes();
            let c = Command::Accounts {
                origin: n.id,
                record: record.clone(),
            };
            assert_eq!(n.node.propose(c, Duration::from_secs(10)).await, Ok(None));
            // Applied here before the call returned.
            assert!(n.mem.accounts.lock().unwrap().1.contains(&record));
        }
        // (One as an accounts change, one as a definitions change: the
        // model keeps both in one list, so they clash.)
        let one = Command::Accounts {
            origin: nodes[0].id,
            record: b"one name".to_vec(),
        };
        let other = Command::Definitions {
            origin: nodes[1].id,
            change: b"one name".to_vec(),
        };
        let (a, b) = tokio::join!(
            nodes[0].node.propose(one, Duration::from_secs(10)),
            nodes[1].node.propose(other, Duration::from_secs(10)),
        );
        let mut outcomes = [a.unwrap(), b.unwrap()];
        outcomes.sort();
        assert_eq!(outcomes, [None, Some("taken".to_owned())]);
    };
    let (_, more) = tokio::join!(changes, send(&nodes[2], 100));
    acked.extend(more);
    applied_equal(&all, 400).await;
    let accounts_equal = |nodes: &[&TestNode]| {
        let want = nodes[0].mem.accounts.lock().unwrap().1.clone();
        assert_eq!(want.len(), 4, "{want:?}");
        for n in nodes {
            assert_eq!(n.mem.accounts.lock().unwrap().1, want, "node {}", n.id);
        }
    };
    let t = Instant::now();
    while all
        .iter()
        .any(|n| n.mem.accounts.lock().unwrap().1.len() < 4)
    {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "accounts changes not applied everywhere"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    accounts_equal(&all);

    // The leader dies.
    let dead = nodes.iter().position(|n| n.id == first).unwrap();
    let (gone_id, gone_mem) = kill(nodes.remove(dead)).await;
    let t = Instant::now();
    let rest: Vec<&TestNode> = nodes.iter().collect();
    let second = leader(&rest).await;
    eprintln!(
        "leader {first} died; {second} leads after {:?}",
        t.elapsed()
    );
    assert_ne!(first, second);
    for n in &nodes {
        acked.extend(send(n, 100).await);
    }
    applied_equal(&rest, 600).await;

    // It comes back with its log, queue and store, and catches up.
    // The forwarder's last read returns within its 200 ms wait.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let l = tokio::net::TcpListener::bind(&members[&gone_id].addr)
        .await
        .unwrap();
    let back = start(
        gone_id,
        &dirs[gone_id as usize - 1],
        l,
        gone_mem,
        Snapshots::default(),
    )
    .await;
    nodes.push(back);
    let all: Vec<&TestNode> = nodes.iter().collect();
    acked.extend(send(nodes.last().unwrap(), 50).await);
    applied_equal(&all, 650).await;
    // The node that came back applied no accounts change twice.
    accounts_equal(&all);

    // A retention pass through the log, while hits flow: every node
    // deletes the same rows (the model deletes the rows whose payload
    // starts with the pass's prefix), at the same point of the log.
    let old = send_as(&nodes[0], 30, "old").await;
    let pass = Command::Retention {
        origin: nodes[1].id,
        prune: b"old".to_vec(),
    };
    let (pruned, more) = tokio::join!(
        nodes[1].node.propose(pass, Duration::from_secs(10)),
        send(&nodes[2], 20)
    );
    assert_eq!(pruned, Ok(None));
    acked.extend(more);
    let t = Instant::now();
    while all.iter().any(|n| {
        let rows = n.mem.rows.lock().unwrap();
        rows.len() != 650 + 20 || rows.iter().any(|r| r.1.starts_with(b"old"))
    }) {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the pass did not reach every node"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(all.iter().all(|n| *n.mem.passes.lock().unwrap() == 1));
    drop(old);

    acked.sort_unstable();
    let reference = nodes[0].mem.rows.lock().unwrap().clone();
    let mut ids: Vec<u64> = reference.iter().map(|r| r.0).collect();
    ids.sort_unstable();
    assert_eq!(
        ids, acked,
        "the stored ids are not exactly the acknowledged ones"
    );
    for n in &nodes {
        assert_eq!(
            *n.mem.rows.lock().unwrap(),
            reference,
            "node {} holds other rows or another order",
            n.id
        );
        // Ids carry their node.
        assert!(ids.iter().all(|id| (id >> hitvault_cluster::ID_SHIFT) >= 1));
    }
    for n in &nodes {
        n.stop.store(true, std::sync::atomic::Ordering::Release);
        n.raft.shutdown().await.unwrap();
    }
}

/// Three nodes formed on loopback, each building a snapshot after `every`
/// entries and keeping `keep` of the log it covers.
async fn formed(
    dirs: &[PathBuf],
    snapshots: Snapshots,
) -> (Vec<TestNode>, BTreeMap<u64, BasicNode>) {
    let mut listeners = Vec::new();
    let mut members = BTreeMap::new();
    for i in 1..=3u64 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        members.insert(i, BasicNode::new(l.local_addr().unwrap().to_string()));
        listeners.push(l);
    }
    let mut nodes = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let mem = Arc::new(Mem::default());
        nodes.push(start(i as u64 + 1, &dirs[i], l, mem, snapshots).await);
    }
    // Every node initialises with the same members: allowed, and what the
    // daemon does on a first start.
    // NotAllowed: another node's election reached this one first.
    for n in &nodes {
        match n.raft.initialize(members.clone()).await {
            Ok(()) => {}
            Err(openraft::error::RaftError::APIError(
                openraft::error::InitializeError::NotAllowed(_),
            )) => {}
            Err(e) => panic!("initialising node {}: {e}", n.id),
        }
    }
    (nodes, members)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_the_purged_log_left_behind_and_a_new_node_catch_up_from_a_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = (1..=4).map(|i| tmp.path().join(format!("n{i}"))).collect();
    let snapshots = Snapshots { every: 20, keep: 5 };
    let (mut nodes, members) = formed(&dirs, snapshots).await;
    let all: Vec<&TestNode> = nodes.iter().collect();
    let first = leader(&all).await;
    let mut acked = Vec::new();
    for n in &nodes {
        acked.extend(send(n, 50).await);
    }
    applied_equal(&all, 150).await;

    // A follower stops; the others go on for many snapshots' worth of log.
    let away = nodes.iter().position(|n| n.id != first).unwrap();
    let away_at = nodes[away].log.state().last_log_id.unwrap().index;
    let (gone_id, gone_mem) = kill(nodes.remove(away)).await;
    for n in &nodes {
        acked.extend(send(n, 300).await);
    }
    let c = Command::Accounts {
        origin: nodes[0].id,
        record: b"made while node was away".to_vec(),
    };
    assert_eq!(
        nodes[0].node.propose(c, Duration::from_secs(10)).await,
        Ok(None)
    );
    acked.extend(send(&nodes[1], 100).await);
    let rest: Vec<&TestNode> = nodes.iter().collect();
    applied_equal(&rest, 850).await;
    // The live nodes built snapshots and purged the log the away node
    // needs (the purge follows the build: wait for it).
    let t = Instant::now();
    loop {
        let purged: Vec<u64> = nodes
            .iter()
            .map(|n| n.log.state().last_purged_log_id.map_or(0, |l| l.index))
            .collect();
        if purged.iter().all(|p| *p > away_at + 1) {
            eprintln!(
                "node {gone_id} stopped at log {away_at}; the others purged up to {purged:?}"
            );
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no purge past {away_at}: {purged:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for n in &nodes {
        assert!(
            dirs[n.id as usize - 1]
                .join("snapshots/current.json")
                .is_file(),
            "node {} has no current snapshot",
            n.id
        );
    }

    // It comes back: the log it needs is gone, so it is sent a snapshot.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let l = tokio::net::TcpListener::bind(&members[&gone_id].addr)
        .await
        .unwrap();
    let back = start(gone_id, &dirs[gone_id as usize - 1], l, gone_mem, snapshots).await;
    nodes.push(back);
    // And a new node joins, as a learner then a voter.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let fourth = start(4, &dirs[3], l, Arc::new(Mem::default()), snapshots).await;
    let lead = leader(&nodes.iter().collect::<Vec<_>>()).await;
    let lead = nodes.iter().find(|n| n.id == lead).unwrap();
    lead.raft
        .add_learner(4, BasicNode::new(addr), true)
        .await
        .unwrap();
    lead.raft
        .change_membership([1, 2, 3, 4], false)
        .await
        .unwrap();
    nodes.push(fourth);
    let all: Vec<&TestNode> = nodes.iter().collect();
    acked.extend(send(&nodes[0], 20).await);
    applied_equal(&all, 870).await;
    for id in [gone_id, 4] {
        let n = nodes.iter().find(|n| n.id == id).unwrap();
        assert!(
            *n.mem.installed.lock().unwrap() >= 1,
            "node {id} caught up without a snapshot"
        );
    }

    acked.sort_unstable();
    let reference = nodes[0].mem.rows.lock().unwrap().clone();
    let mut ids: Vec<u64> = reference.iter().map(|r| r.0).collect();
    ids.sort_unstable();
    assert_eq!(
        ids, acked,
        "the stored ids are not exactly the acknowledged ones"
    );
    let accounts = nodes[0].mem.accounts.lock().unwrap().1.clone();
    assert_eq!(accounts.len(), 1);
    for n in &nodes {
        assert_eq!(
            *n.mem.rows.lock().unwrap(),
            reference,
            "node {} holds other rows or another order",
            n.id
        );
        assert_eq!(n.mem.accounts.lock().unwrap().1, accounts, "node {}", n.id);
    }
    for n in &nodes {
        n.stop.store(true, std::sync::atomic::Ordering::Release);
        n.raft.shutdown().await.unwrap();
    }
}
