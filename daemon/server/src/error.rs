//! The errors of the server's edge that the daemon's adapters answer with.
//!
//! [`AdminError`] is what an adapter of the control and export traits
//! (`SiteAdmin`, `Maintenance`, `Exporter`) returns: the caller's mistake,
//! a clash with what exists, or a failure of ours. As an answer it is
//! `{"error": "invalid"|"conflict"|"internal", "message": …}` with 400, 409
//! or 500.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Why an operation of the control API or an export failed: the caller's
/// mistake, a clash with what exists, or ours.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Internal(String),
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (code, kind, msg) = match self {
            AdminError::Invalid(m) => (StatusCode::BAD_REQUEST, "invalid", m),
            AdminError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m),
            AdminError::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", m),
        };
        (code, axum::Json(json!({ "error": kind, "message": msg }))).into_response()
    }
}

/// [`AdminError`] as an answer.
pub(crate) fn refuse(e: AdminError) -> Response {
    e.into_response()
}
