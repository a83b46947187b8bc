//! The control service, served only on the Unix socket `<data dir>/control.sock`
//! (mode 0600, inside the 0700 data dir): how `hitvault site add|list` reach a
//! running daemon. Whoever can open the socket owns the data dir anyway.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A site as the control API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteInfo {
    pub hostname: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub origin: String,
}

/// Why a site operation failed: the caller's mistake, or ours.
#[derive(Debug)]
pub enum AdminError {
    Invalid(String),
    Conflict(String),
    Internal(String),
}

/// Site management, implemented by the daemon (it owns the store and the registry).
/// Methods block (they write DuckDB); the control service calls them off the runtime.
pub trait SiteAdmin: Send + Sync + 'static {
    fn list(&self) -> Result<Vec<SiteInfo>, AdminError>;
    fn add(&self, site: SiteInfo) -> Result<SiteInfo, AdminError>;
}

type Admin = Arc<dyn SiteAdmin>;

/// Routes of the control socket.
pub fn control_router(admin: Admin) -> Router {
    Router::new()
        .route("/sites", get(list).post(add))
        .with_state(admin)
}

fn error(e: AdminError) -> Response {
    let (code, kind, msg) = match e {
        AdminError::Invalid(m) => (StatusCode::BAD_REQUEST, "invalid", m),
        AdminError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m),
        AdminError::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", m),
    };
    (code, axum::Json(json!({ "error": kind, "message": msg }))).into_response()
}

async fn list(State(admin): State<Admin>) -> Response {
    match tokio::task::spawn_blocking(move || admin.list()).await {
        Ok(Ok(sites)) => axum::Json(sites).into_response(),
        Ok(Err(e)) => error(e),
        Err(e) => error(AdminError::Internal(e.to_string())),
    }
}

async fn add(State(admin): State<Admin>, body: axum::body::Bytes) -> Response {
    let site: SiteInfo = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => {
            return error(AdminError::Invalid(format!(
                "body must be {{\"hostname\":..,\"aliases\":[..]}}: {e}"
            )));
        }
    };
    match tokio::task::spawn_blocking(move || admin.add(site)).await {
        Ok(Ok(s)) => (StatusCode::CREATED, axum::Json(s)).into_response(),
        Ok(Err(e)) => error(e),
        Err(e) => error(AdminError::Internal(e.to_string())),
    }
}
