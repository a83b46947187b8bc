//! `GET /ca.crt`: the local CA's certificate, for clients to trust, and
//! [`TlsInfo`], what the rest of the server knows of the listener's TLS
//! (the setup page shows the fingerprint to compare with the console's).

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::rules::{Face, Need, Routes};

/// The media type of `/ca.crt`: browsers offer to import a CA served so
/// (the body is PEM, which they read as well as DER).
pub const CA_CONTENT_TYPE: &str = "application/x-x509-ca-cert";

/// The listener's TLS, as the routes may show it.
#[derive(Clone, Debug)]
pub struct TlsInfo {
    /// `tls.mode`: `local-ca`, `files` or `off`.
    pub mode: &'static str,
    /// The local CA, in `local-ca` mode.
    pub ca: Option<CaInfo>,
}

impl TlsInfo {
    /// No TLS (the listener serves plain HTTP only).
    pub fn off() -> TlsInfo {
        TlsInfo {
            mode: "off",
            ca: None,
        }
    }
}

/// The local CA's certificate.
#[derive(Clone, Debug)]
pub struct CaInfo {
    /// PEM text.
    pub pem: Arc<str>,
    /// SHA-256 of the DER certificate, `AB:CD:...`.
    pub fingerprint: Arc<str>,
}

/// The public `/ca.crt` route.
pub(crate) fn routes(info: TlsInfo) -> Routes {
    Routes::new(Face::Json)
        .get("/ca.crt", Need::Anyone, ca_crt)
        .with_state(Arc::new(info))
}

async fn ca_crt(State(info): State<Arc<TlsInfo>>) -> Response {
    match &info.ca {
        Some(ca) => (
            [
                (header::CONTENT_TYPE, CA_CONTENT_TYPE),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            ca.pem.to_string(),
        )
            .into_response(),
        None => ApiError::not_found(format!(
            "this appliance has no local CA: tls.mode is `{}`{}",
            info.mode,
            if info.mode == "files" {
                " (it serves its organisation's certificate; ask its administrators for their CA)"
            } else {
                ""
            }
        ))
        .into_response(),
    }
}
