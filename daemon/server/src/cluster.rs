//! The cluster on the edge: `GET /cluster` (every node's role, term, log
//! and lag, as this node sees them and as each node answers for itself),
//! `POST /cluster/add` (`{"id": N, "addr": "host:port"}`: a new node joins
//! as a learner, catches up, then votes) and `POST /cluster/remove`
//! (`{"id": N}`; the id is retired for good). Control routes: the socket's
//! operator, or an admin over `/api/v1/control`. A single node answers
//! `{"enabled": false}` and refuses the changes.

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
