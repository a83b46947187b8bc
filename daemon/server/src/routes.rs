//! The public ingest, tracker, health and metrics routes, each with its
//! handler. Ingest routes are open to any client (they are what browsers
//! call); the routes that read data are in `stats_api`, `realtime` and
//! `dashboard`, each behind the one authorization check.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::AppState;
use crate::error::ApiError;
use crate::ingest::{IngestError, Outcome, client_ip, now_ms};
use crate::metrics::{Endpoint, Refusal};
use crate::rules::{Face, Need, Routes};
use crate::tracker;
use crate::wire::{self, WireError};

/// The public service: tracker, ingest, health, metrics.
///
/// The state goes behind one `Arc`: axum clones it for every request, and
/// one reference count is cheaper than the dozen in `AppState` and `Ingest`
/// (each a cache line the HTTP threads would pass back and forth).
pub fn router(state: AppState) -> Router {
    routes(state).into_parts().0
}

/// [`router`] with its access rules: every route is open to anyone
/// (batch ingest checks its bearer token itself).
pub(crate) fn routes(state: AppState) -> Routes {
    let state = Arc::new(state);
    Routes::new(Face::Json)
        .get("/hv.js", Need::Anyone, script)
        .post("/api/collect", Need::Anyone, collect)
        .options("/api/collect", Need::Anyone, preflight)
        .post("/api/event", Need::Anyone, event)
        .options("/api/event", Need::Anyone, preflight)
        .post("/api/ingest/batch", Need::Anyone, batch)
        .get("/healthz", Need::Anyone, healthz)
        .get("/readyz", Need::Anyone, readyz)
        .get("/metrics", Need::Anyone, metrics)
        .map(|r| r.fallback(not_found))
        .with_state(state)
}

fn cors(mut r: Response) -> Response {
    // Beacons ignore the answer; Plausible's script reads it with fetch in CORS
    // mode, so let any page see the status. No credentials are ever involved.
    r.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

fn refuse(state: &AppState, e: WireError) -> Response {
    state.metrics.refused(e.reason);
    cors(ApiError::from(e).into_response())
}

fn ingest_error(state: &AppState, e: IngestError) -> Response {
    match e {
        IngestError::Bad(w) => refuse(state, w),
        IngestError::Unavailable {
            reason,
            retry_after,
            message,
        } => {
            state.metrics.refused(reason);
            cors(ApiError::hit_unavailable(reason, message, retry_after).into_response())
        }
    }
}

fn outcome(o: Outcome) -> Response {
    match o {
        // The answer to nearly every request: built from static parts, so the
        // hot path serializes nothing.
        Outcome::Stored(1) => cors(
            (
                StatusCode::ACCEPTED,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                r#"{"accepted":1}"#,
            )
                .into_response(),
        ),
        Outcome::Stored(n) => {
            cors((StatusCode::ACCEPTED, axum::Json(json!({ "accepted": n }))).into_response())
        }
        Outcome::Dropped(reason) => {
            let mut r = cors(
                (
                    StatusCode::OK,
                    axum::Json(json!({ "accepted": 0, "dropped": reason.code() })),
                )
                    .into_response(),
            );
            r.headers_mut().insert(
                "x-hitvault-dropped",
                HeaderValue::from_static(reason.code()),
            );
            r
        }
    }
}

/// Reads the whole body, refusing it as soon as it passes `limit` bytes.
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<axum::body::Bytes, WireError> {
    let too_large = || {
        WireError::new(
            Refusal::BodyTooLarge,
            format!("the body is larger than {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())
}

fn user_agent(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
}

fn forwarded_for(headers: &HeaderMap) -> Option<String> {
    let all: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if all.is_empty() {
        None
    } else {
        Some(all.join(","))
    }
}

async fn browser_hit(
    state: Arc<AppState>,
    endpoint: Endpoint,
    peer: SocketAddr,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let bytes = match read_body(&headers, body, state.ingest.limits.body_bytes).await {
        Ok(b) => b,
        Err(e) => return refuse(&state, e),
    };
    let hit = match wire::parse_browser(&bytes, &state.ingest.limits) {
        Ok(h) => h,
        Err(e) => return refuse(&state, e),
    };
    let ip = client_ip(
        peer.ip(),
        forwarded_for(&headers).as_deref(),
        &state.ingest.trusted_proxies,
    );
    match state
        .ingest
        .browser(endpoint, hit, user_agent(&headers), ip)
        .await
    {
        Ok(Outcome::Dropped(reason)) => {
            state.metrics.dropped(reason);
            outcome(Outcome::Dropped(reason))
        }
        Ok(o) => outcome(o),
        Err(e) => ingest_error(&state, e),
    }
}

/// `POST /api/collect`: the hitvault tracker's beacon.
///
/// The handlers take the request whole (not the `HeaderMap` extractor, which
/// copies every header): this is the hottest path of the daemon.
async fn collect(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: axum::extract::Request,
) -> Response {
    let (parts, body) = req.into_parts();
    browser_hit(state, Endpoint::Collect, peer, parts.headers, body).await
}

/// `POST /api/event`: Plausible's Events API, so Plausible's script works unchanged.
async fn event(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: axum::extract::Request,
) -> Response {
    let (parts, body) = req.into_parts();
    browser_hit(state, Endpoint::Event, peer, parts.headers, body).await
}

async fn preflight() -> Response {
    let mut r = cors(StatusCode::NO_CONTENT.into_response());
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    r
}

/// Constant-time comparison, so the token cannot be guessed byte by byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `POST /api/ingest/batch`: server-side ingest with a bearer token.
async fn batch(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(token) = state.ingest.batch_token.clone() else {
        return refuse(
            &state,
            WireError::new(
                Refusal::Unauthorized,
                "server-side ingest is disabled: no ingest token is configured",
            ),
        );
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !same(given.trim().as_bytes(), token.as_bytes()) {
        let mut r = refuse(
            &state,
            WireError::new(Refusal::Unauthorized, "missing or wrong bearer token"),
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    let bytes = match read_body(&headers, body, state.ingest.limits.batch_body_bytes).await {
        Ok(b) => b,
        Err(e) => return refuse(&state, e),
    };
    let hits = match wire::parse_batch(&bytes, &state.ingest.limits, now_ms()) {
        Ok(h) => h,
        Err(e) => return refuse(&state, e),
    };
    let caller = client_ip(
        peer.ip(),
        forwarded_for(&headers).as_deref(),
        &state.ingest.trusted_proxies,
    );
    match state.ingest.batch(hits, caller).await {
        Ok((n, dropped)) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({ "accepted": n, "dropped": dropped })),
        )
            .into_response(),
        Err(e) => ingest_error(&state, e),
    }
}

/// `GET /hv.js`: the tracker, gzip when the client accepts it.
async fn script(headers: HeaderMap) -> Response {
    let etag = tracker::ETAG.as_str();
    let mut r = if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let gzip = headers
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|e| e.trim().split(';').next() == Some("gzip"))
            });
        let mut r = if gzip {
            let mut r = tracker::SCRIPT_GZ.clone().into_response();
            r.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            r
        } else {
            tracker::SCRIPT.clone().into_response()
        };
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/javascript; charset=utf-8"),
        );
        r
    };
    let h = r.headers_mut();
    h.insert(
        header::ETAG,
        HeaderValue::from_str(etag).expect("ascii etag"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// `GET /healthz`: the process is alive and serving HTTP.
async fn healthz() -> Response {
    (StatusCode::OK, axum::Json(json!({ "status": "ok" }))).into_response()
}

/// `GET /readyz`: the store is open, the writer runs, and the queue has room.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let g = (state.gauges)();
    let ready = state.ready.load(Ordering::Acquire);
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "queue_depth": g.queue_pending_records,
        "queue_bytes": g.queue_bytes,
        "committed_seq": g.committed_seq,
    });
    (code, axum::Json(body)).into_response()
}

/// `GET /metrics`: Prometheus text format.
async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let text = state.metrics.render((state.gauges)());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn not_found() -> Response {
    ApiError::not_found("no such route").into_response()
}
