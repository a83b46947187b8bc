//! `hitvault cluster status|add|remove`: the cluster's members, through the
//! running daemon's control socket (`GET /cluster`, `POST /cluster/add`,
//! `POST /cluster/remove`). Membership changes are run on the leader; a
//! follower refuses them naming the leader.

use std::time::Duration;

use super::client;
use crate::config::Config;
use crate::datadir::CONTROL_SOCKET;
use crate::exit::{Exit, Failure, OrExit};

/// `hitvault cluster ...`.
#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// Every node's role, term, log and lag, as each answers for itself.
    Status {
        /// Print the JSON the daemon answers.
        #[arg(long)]
        json: bool,
    },
    /// Add node ID at ADDR (host:port of its `cluster.bind`): it joins as a
    /// learner, catches up on the log, then votes. ID must never have been
    /// used in this cluster, and ADDR's port must be one of `cluster.peers`'.
    Add { id: u64, addr: String },
    /// Remove node ID from the voters; its id is retired for good.
    Remove { id: u64 },
}

/// How long `hitvault cluster` waits for the daemon (`add` waits until the
/// new node caught up, which may take a snapshot's transfer and install).
pub const ADD_WAIT: Duration = Duration::from_secs(15 * 60);

fn call(
    cfg: &Config,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Result<serde_json::Value, Failure> {
    let socket = cfg.data_dir.join(CONTROL_SOCKET);
    // Adding a node waits until it caught up: a snapshot of the whole
    // store may have to be sent and installed first.
    let conn = client::connect_waiting(&socket, ADD_WAIT).ok_or_else(|| {
        Failure::runtime(format!(
            "no daemon answers on {}: the cluster commands need the running node",
            socket.display()
        ))
    })?;
    let reply = client::request(conn, method, path, body).or_exit(Exit::Runtime)?;
    if reply.status != 200 {
        return Err(client::refusal(
            reply.status,
            &reply.body,
            "the daemon refused",
        ));
    }
    serde_json::from_slice(&reply.body)
        .or_exit_with(Exit::Runtime, |e| format!("bad reply from the daemon: {e}"))
}

fn opt(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "-".into(),
        v => v.to_string(),
    }
}

/// `hitvault cluster`.
pub fn run(cfg: &Config, c: &ClusterCommand) -> Result<(), Failure> {
    let v = match c {
        ClusterCommand::Status { json } => {
            let v = call(cfg, "GET", "/cluster", None)?;
            if *json {
                println!("{v}");
                return Ok(());
            }
            v
        }
        ClusterCommand::Add { id, addr } => {
            let body = serde_json::json!({ "id": id, "addr": addr }).to_string();
            call(cfg, "POST", "/cluster/add", Some(body.as_bytes()))?;
            println!("node {id} added at {addr}");
            call(cfg, "GET", "/cluster", None)?
        }
        ClusterCommand::Remove { id } => {
            let body = serde_json::json!({ "id": id }).to_string();
            call(cfg, "POST", "/cluster/remove", Some(body.as_bytes()))?;
            println!("node {id} removed; its id is retired");
            call(cfg, "GET", "/cluster", None)?
        }
    };
    if v["enabled"] != true {
        println!("this daemon is a single node (cluster.enable is not set)");
        return Ok(());
    }
    println!(
        "this node: {}  ack: {}  in quorum: {}",
        v["node"], v["ack"], v["in_quorum"]
    );
    println!(
        "{:>6}  {:<9}  {:>6}  {:>6}  {:>10}  {:>10}  {:>14}",
        "NODE", "ROLE", "TERM", "LEADER", "LAST LOG", "APPLIED", "ACKED SEQ"
    );
    for (id, n) in v["nodes"].as_object().into_iter().flatten() {
        if let Some(e) = n.get("error") {
            println!("{id:>6}  unreachable: {}", e.as_str().unwrap_or_default());
            continue;
        }
        println!(
            "{id:>6}  {:<9}  {:>6}  {:>6}  {:>10}  {:>10}  {:>14}",
            n["role"].as_str().unwrap_or("-"),
            opt(&n["term"]),
            opt(&n["leader"]),
            opt(&n["last_log_index"]),
            opt(&n["applied_index"]),
            opt(&n["acked_seq"]),
        );
    }
    Ok(())
}
