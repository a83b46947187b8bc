//! The control service, served only on the Unix socket `<data dir>/control.sock`
//! (mode 0600, inside the 0700 data dir): how `hitvault site add|list` reach a
//! running daemon. Whoever can open the socket owns the data dir anyway.
//! The public `GET /api/v1/takeout` is [`crate::export`]'s.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::audit::{Kind, Recorder};
use crate::error::{AdminError, ApiError};
use crate::export::{ExportQuery, Exporter, Prepared};
use crate::rules::{Face, Need, Routes};
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

/// Site management, implemented by the daemon (it owns the store and the registry).
/// Methods block (they write DuckDB); the control service calls them off the runtime.
pub trait SiteAdmin: Send + Sync + 'static {
    fn list(&self) -> Result<Vec<SiteInfo>, AdminError>;
    fn add(&self, site: SiteInfo) -> Result<SiteInfo, AdminError>;
}

type Admin = Arc<dyn SiteAdmin>;

/// Backups and retention, implemented by the daemon. Methods block.
pub trait Maintenance: Send + Sync + 'static {
    /// A consistent snapshot of the database as the body (the raw DuckDB
    /// file), described by the `x-hitvault-backup` header (JSON).
    fn backup(&self) -> Result<Prepared, AdminError>;
    /// Expired hits per site; unless `dry_run`, archived then deleted. JSON.
    fn prune(&self, dry_run: bool) -> Result<serde_json::Value, AdminError>;
    /// Imports a Takeout sent as Arrow frames (`hitvault_takeout::stream`)
    /// whose hit ids are all `<= max_id`; returns the counts (JSON).
    fn import(
        &self,
        max_id: u64,
        body: &mut dyn std::io::Read,
    ) -> Result<serde_json::Value, AdminError>;
    /// Stores imported history (Plausible's CSV export, as parsed and
    /// checked by the CLI: JSON), replacing the site's imported days in its
    /// range; returns the counts (JSON).
    fn import_plausible(&self, body: &[u8]) -> Result<serde_json::Value, AdminError>;
}

/// Largest `POST /import-plausible` body.
pub const PLAUSIBLE_BODY_MAX: usize = 1 << 30;

/// Routes of the control socket: sites, `GET /takeout` (an export as
/// Arrow frames, or one file when `format=` is given), `POST /backup` (a
/// snapshot of the database), `POST /prune[?dry_run=1]`, `POST /import` and
/// `POST /import-plausible`; [`crate::control_app`] serves them.
/// Every route needs an instance admin: on the socket the caller is the
/// operator; over the network ([`crate::app`] serves them under
/// `/api/v1/control`) an admin's session or an admin's token.
pub(crate) fn routes(
    admin: Admin,
    exporter: Arc<dyn Exporter>,
    maintenance: Arc<dyn Maintenance>,
) -> Routes {
    let a = Need::Admin;
    Routes::new(Face::Json)
        .get("/sites", a, list)
        .post("/sites", a, add)
        .with_state(admin)
        .merge(
            Routes::new(Face::Json)
                .get("/takeout", a, takeout)
                .with_state(exporter),
        )
        .merge(
            Routes::new(Face::Json)
                .post("/backup", a, backup)
                .post("/prune", a, prune)
                .post("/import", a, import)
                .with_state(maintenance.clone()),
        )
        .merge(
            Routes::new(Face::Json)
                .post("/import-plausible", a, import_plausible)
                .map(|r| r.layer(axum::extract::DefaultBodyLimit::max(PLAUSIBLE_BODY_MAX)))
                .with_state(maintenance),
        )
}

async fn backup(State(m): State<Arc<dyn Maintenance>>, rec: Recorder) -> Response {
    // Recorded once the snapshot is made, before it is sent.
    let prepared = match tokio::task::spawn_blocking(move || m.backup()).await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return e.into_response(),
        Err(e) => return ApiError::internal("a backup task", e).into_response(),
    };
    let described = prepared
        .headers
        .iter()
        .find(|(k, _)| *k == "x-hitvault-backup")
        .and_then(|(_, v)| serde_json::from_str::<serde_json::Value>(v).ok())
        .unwrap_or_default();
    if let Err(r) = rec.before(Kind::Backup, None, described).await {
        return r;
    }
    crate::export::stream_prepared(move || Ok(prepared)).await
}

/// Chunks of a request body in flight to the blocking import: with the
/// client's chunk sizes, a few hundred KiB at most.
const IMPORT_DEPTH: usize = 4;

/// A request body, read as `std::io::Read` on a blocking thread.
struct ChannelRead {
    rx: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, String>>,
    cur: bytes::Bytes,
}

impl std::io::Read for ChannelRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use bytes::Buf;
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur.advance(n);
        Ok(n)
    }
}

async fn import(
    State(m): State<Arc<dyn Maintenance>>,
    rec: Recorder,
    uri: Uri,
    body: axum::body::Body,
) -> Response {
    let max_id = match uri
        .query()
        .unwrap_or("")
        .strip_prefix("max_id=")
        .and_then(|v| v.parse::<u64>().ok())
    {
        Some(v) if v <= hitvault_store::MAX_HIT_ID => v,
        Some(v) => {
            return ApiError::invalid(format!(
                "max_id={v} is above {}, the largest hit id",
                hitvault_store::MAX_HIT_ID
            ))
            .into_response();
        }
        None => {
            return ApiError::invalid("max_id=N (the largest hit id sent) is required")
                .into_response();
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel(IMPORT_DEPTH);
    tokio::spawn(async move {
        use http_body::Body as _;
        let mut body = body;
        loop {
            match std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await {
                None => break,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data()
                        && tx.send(Ok(data)).await.is_err()
                    {
                        break;
                    }
                }
                Some(Err(e)) => {
                    let _ = tx.send(Err(e.to_string())).await;
                    break;
                }
            }
        }
    });
    let run = tokio::task::spawn_blocking(move || {
        let mut r = ChannelRead {
            rx,
            cur: bytes::Bytes::new(),
        };
        m.import(max_id, &mut r)
    });
    match run.await {
        Ok(Ok(v)) => {
            rec.note(
                Kind::Import,
                None,
                json!({ "format": "takeout", "counts": v }),
            )
            .await;
            axum::Json(v).into_response()
        }
        Ok(Err(e)) => e.into_response(),
        Err(e) => ApiError::internal("a control task", e).into_response(),
    }
}

async fn import_plausible(
    State(m): State<Arc<dyn Maintenance>>,
    rec: Recorder,
    body: axum::body::Bytes,
) -> Response {
    let site = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["site"].as_str().map(str::to_owned));
    match tokio::task::spawn_blocking(move || m.import_plausible(&body)).await {
        Ok(Ok(v)) => {
            rec.note(
                Kind::Import,
                site.as_deref(),
                json!({ "format": "plausible", "counts": v }),
            )
            .await;
            axum::Json(v).into_response()
        }
        Ok(Err(e)) => e.into_response(),
        Err(e) => ApiError::internal("a control task", e).into_response(),
    }
}

async fn prune(State(m): State<Arc<dyn Maintenance>>, rec: Recorder, uri: Uri) -> Response {
    let dry_run = match uri.query().unwrap_or("") {
        "" => false,
        "dry_run=1" | "dry_run=true" => true,
        other => {
            return ApiError::invalid(format!("unknown parameters {other:?} (only dry_run=1)"))
                .into_response();
        }
    };
    match tokio::task::spawn_blocking(move || m.prune(dry_run)).await {
        Ok(Ok(v)) => {
            if !dry_run {
                rec.note(Kind::Prune, None, crate::audit::prune_detail(&v))
                    .await;
            }
            axum::Json(v).into_response()
        }
        Ok(Err(e)) => e.into_response(),
        Err(e) => ApiError::internal("a control task", e).into_response(),
    }
}

async fn takeout(State(exporter): State<Arc<dyn Exporter>>, rec: Recorder, uri: Uri) -> Response {
    match ExportQuery::parse(uri.query()) {
        Ok(q) => crate::export::audited_stream(exporter, q, &rec, "control").await,
        Err(m) => ApiError::invalid(m).into_response(),
    }
}

async fn list(State(admin): State<Admin>) -> Response {
    match tokio::task::spawn_blocking(move || admin.list()).await {
        Ok(Ok(sites)) => axum::Json(sites).into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(e) => ApiError::internal("a control task", e).into_response(),
    }
}

async fn add(State(admin): State<Admin>, rec: Recorder, body: axum::body::Bytes) -> Response {
    let site: SiteInfo = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => {
            return ApiError::invalid(format!(
                "body must be {{\"hostname\":..,\"aliases\":[..]}}: {e}"
            ))
            .into_response();
        }
    };
    match tokio::task::spawn_blocking(move || admin.add(site)).await {
        Ok(Ok(s)) => {
            rec.note(
                Kind::SiteAdded,
                Some(&s.hostname),
                json!({ "aliases": s.aliases }),
            )
            .await;
            (StatusCode::CREATED, axum::Json(s)).into_response()
        }
        Ok(Err(e)) => e.into_response(),
        Err(e) => ApiError::internal("a control task", e).into_response(),
    }
}
