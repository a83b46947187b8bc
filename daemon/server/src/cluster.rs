//! The cluster on the edge: `GET /cluster` (every node's role, term, log
//! and lag, as this node sees them and as each node answers for itself),
//! `POST /cluster/add` (`{"id": N, "addr": "host:port"}`: a new node joins
//! as a learner, catches up, then votes) and `POST /cluster/remove`
//! (`{"id": N}`; the id is retired for good). Control routes: the socket's
//! operator, or an admin over `/api/v1/control`. A single node answers
//! `{"enabled": false}` and refuses the changes. Admins see the same status
//! on the dashboard's page `/admin/cluster`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::error::ApiError;
use crate::rules::{Face, Need, Routes};

/// A boxed future, as the traits here return.
pub type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the daemon's cluster node does for these routes.
pub trait ClusterAdmin: Send + Sync + 'static {
    /// This node's status and every member's (JSON).
    fn status(&self) -> Boxed<'_, serde_json::Value>;
    /// Adds node `id` at `addr`; the new status, or why not.
    fn add(&self, id: u64, addr: String) -> Boxed<'_, Result<serde_json::Value, String>>;
    /// Removes node `id`; the new status, or why not.
    fn remove(&self, id: u64) -> Boxed<'_, Result<serde_json::Value, String>>;
}

/// The cluster node, as a request extension; `None` on a single node.
#[derive(Clone)]
pub struct Cluster(pub Option<Arc<dyn ClusterAdmin>>);

pub(crate) fn control_routes() -> Routes {
    Routes::new(Face::Json)
        .get("/cluster", Need::Admin, status)
        .post("/cluster/add", Need::Admin, add)
        .post("/cluster/remove", Need::Admin, remove)
}

/// The dashboard's page.
pub(crate) fn page_routes() -> Routes {
    Routes::new(Face::Page).get("/admin/cluster", Need::Admin, page)
}

async fn page(axum::Extension(Cluster(c)): axum::Extension<Cluster>) -> Response {
    let status = match c {
        Some(c) => Some(c.status().await),
        None => None,
    };
    crate::dashboard::html(axum::http::StatusCode::OK, render(status.as_ref()))
}

/// Every member's role, term, log and lag behind the leader's log.
fn render(status: Option<&serde_json::Value>) -> String {
    use crate::dashboard::html::{esc, page};
    use std::fmt::Write;
    let mut m = String::from("<h1>Cluster</h1>");
    let Some(s) = status.filter(|s| s["enabled"] == true) else {
        m.push_str(
            "<p class=\"empty\" id=\"cluster-none\">This appliance is a single node \
             (<code>cluster.enable</code> is not set).</p>",
        );
        return page("Cluster", None, "page-cluster", &m);
    };
    let nodes = s["nodes"].as_object().cloned().unwrap_or_default();
    // The leader's last log index, as the leader answers for itself.
    let lead = nodes
        .values()
        .find(|n| n["role"] == "leader")
        .and_then(|n| n["last_log_index"].as_u64());
    let _ = write!(
        m,
        "<p>This node: {} (acknowledgement: {}; {}). Each node answers for itself; lag is \
         the leader's last log entry less the entries a node applied.</p>",
        esc(&s["node"].to_string()),
        esc(s["ack"].as_str().unwrap_or("")),
        if s["in_quorum"] == true {
            "in the majority: it takes hits"
        } else {
            "cut off from the majority: it refuses hits"
        }
    );
    m.push_str(
        "<table id=\"cluster-nodes\"><caption class=\"sr-only\">Cluster nodes</caption>\
         <thead><tr><th scope=\"col\">Node</th><th scope=\"col\">Role</th>\
         <th scope=\"col\">Term</th><th scope=\"col\">Leader</th>\
         <th scope=\"col\">Last log</th><th scope=\"col\">Applied</th>\
         <th scope=\"col\">Lag</th></tr></thead><tbody>",
    );
    let num = |v: &serde_json::Value| v.as_u64().map_or("-".to_owned(), |n| n.to_string());
    for (id, n) in &nodes {
        if let Some(e) = n.get("error") {
            let _ = write!(
                m,
                "<tr class=\"cluster-node\" data-role=\"unreachable\"><td>{}</td>\
                 <td colspan=\"6\">unreachable: {}</td></tr>",
                esc(id),
                esc(e.as_str().unwrap_or(""))
            );
            continue;
        }
        let lag = match (lead, n["applied_index"].as_u64()) {
            (Some(l), Some(a)) => l.saturating_sub(a).to_string(),
            _ => "-".to_owned(),
        };
        let role = n["role"].as_str().unwrap_or("");
        let _ = write!(
            m,
            "<tr class=\"cluster-node\" data-role=\"{role}\"><td>{}</td><td>{role}</td>\
             <td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{lag}</td></tr>",
            esc(id),
            num(&n["term"]),
            num(&n["leader"]),
            num(&n["last_log_index"]),
            num(&n["applied_index"]),
            role = esc(role),
        );
    }
    m.push_str(
        "</tbody></table><p>Add or remove a node on the leader with \
         <code>hitvault cluster add ID ADDR</code> and <code>hitvault cluster remove ID</code>.</p>",
    );
    page("Cluster", None, "page-cluster", &m)
}

async fn status(axum::Extension(Cluster(c)): axum::Extension<Cluster>) -> Response {
    match c {
        Some(c) => axum::Json(c.status().await).into_response(),
        None => axum::Json(serde_json::json!({ "enabled": false })).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Add {
    id: u64,
    addr: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Remove {
    id: u64,
}

fn single() -> Response {
    ApiError::exists("this daemon is not a cluster node (`cluster.enable` is not set)")
        .into_response()
}

fn refused(e: String) -> Response {
    ApiError::invalid(e).into_response()
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("the body is not the expected JSON: {e}")))
}

async fn add(
    axum::Extension(Cluster(c)): axum::Extension<Cluster>,
    body: axum::body::Bytes,
) -> Response {
    let Some(c) = c else { return single() };
    let a: Add = match parse(&body) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    match c.add(a.id, a.addr).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => refused(e),
    }
}

async fn remove(
    axum::Extension(Cluster(c)): axum::Extension<Cluster>,
    body: axum::body::Bytes,
) -> Response {
    let Some(c) = c else { return single() };
    let r: Remove = match parse(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match c.remove(r.id).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => refused(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_shows_each_node_its_role_and_its_lag() {
        let s = serde_json::json!({
            "enabled": true, "node": 1, "ack": "majority", "in_quorum": true,
            "nodes": {
                "1": {"role": "leader", "term": 3, "leader": 1, "last_log_index": 120, "applied_index": 120},
                "2": {"role": "follower", "term": 3, "leader": 1, "last_log_index": 118, "applied_index": 111},
                "3": {"node": 3, "error": "unreachable: 10.77.0.3:7400: Connection refused"}
            }
        });
        let html = render(Some(&s));
        assert!(html.contains("data-role=\"leader\"><td>1</td>"), "{html}");
        // Node 2 lags the leader's 120 by 9.
        assert!(
            html.contains("<td class=\"num\">111</td><td class=\"num\">9</td>"),
            "{html}"
        );
        assert!(
            html.contains("data-role=\"unreachable\"><td>3</td>"),
            "{html}"
        );
        assert!(html.contains("in the majority"), "{html}");
        let single = render(Some(&serde_json::json!({"enabled": false})));
        assert!(single.contains("single node"), "{single}");
    }
}
