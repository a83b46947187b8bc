//! `GET /api/v1/stats/realtime?site=…`: a Server-Sent Events stream of a
//! site's last minutes, pushed as batches commit.
//!
//! The writer publishes the sites of every committed batch ([`Commits`]);
//! each stream listens, and when its site was touched it reads the numbers
//! again ([`LiveStats::realtime`]) and sends them as one `data:` line of JSON:
//!
//! ```json
//! {"site":"example.org","at":"2026-11-28T10:00:00Z","live_minutes":5,
//!  "recent_minutes":30,"live_visitors":3,"pageviews":41,"per_minute":[0,2,…],
//!  "top_pages":[{"value":"/","visitors":2,"pageviews":9}],"top_sources":[…]}
//! ```
//!
//! Limits, all constants below: one event on connect, then at most one per
//! [`MIN_EVENT_GAP`] per stream, at least one per [`REFRESH`] (the windows
//! slide even without hits); a `: keep-alive` comment every [`KEEP_ALIVE`];
//! at most [`MAX_STREAMS`] streams at once (a 503 beyond). Streams end when
//! the daemon shuts down, so they never hold up a graceful stop.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hitvault_store::SiteRow;
use hitvault_store::live::{LIVE_MINUTES, LiveStats, RECENT_MINUTES, Realtime, RecentRow};
use jiff::Timestamp;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, broadcast, mpsc, watch};
use tokio::time::Instant;

use crate::error::ApiError;
use crate::rules::{Face, Need, Routes, SiteIn};
use crate::stats_api::{BadParam, bad, form_urlencoded};
use hitvault_accounts::Right;

/// Most realtime streams served at once; more get a 503.
pub const MAX_STREAMS: usize = 32;
/// Shortest time between two events of one stream.
pub const MIN_EVENT_GAP: Duration = Duration::from_secs(1);
/// Longest time between two events of one stream.
pub const REFRESH: Duration = Duration::from_secs(30);
/// A comment line this often keeps proxies and browsers from timing out.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Rows in each top list of an event.
pub const TOP_ROWS: usize = 10;
/// Commits a slow stream may fall behind by before it is told it lagged
/// (it then simply reads the numbers again).
const COMMIT_BACKLOG: usize = 64;

/// The sites one committed batch touched (canonical hostnames).
#[derive(Clone, Debug)]
pub struct Commit {
    pub sites: Arc<[String]>,
}

/// The writer's side of the realtime streams: it publishes each commit.
#[derive(Clone, Debug)]
pub struct Commits {
    /// Bounded by [`COMMIT_BACKLOG`]; a publish never blocks the writer.
    tx: broadcast::Sender<Commit>,
}

impl Default for Commits {
    fn default() -> Self {
        Commits {
            tx: broadcast::channel(COMMIT_BACKLOG).0,
        }
    }
}

impl Commits {
    /// True while any stream listens (the writer skips the work otherwise).
    pub fn has_listeners(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Tells every stream that `sites` changed.
    pub fn publish(&self, sites: Vec<String>) {
        // No listener is not an error.
        let _ = self.tx.send(Commit {
            sites: sites.into(),
        });
    }
}

/// Shared state of the realtime streams (and the dashboard's small reads).
#[derive(Clone)]
pub struct RealtimeState {
    commits: Commits,
    /// One permit per open stream: bounds them to [`MAX_STREAMS`].
    streams: Arc<Semaphore>,
    /// Flips to true when the daemon shuts down: every stream ends.
    shutdown: watch::Receiver<bool>,
    /// The reader for sites and realtime numbers; queries are short, so one
    /// connection serves every stream and page.
    live: Arc<Mutex<LiveStats>>,
}

impl RealtimeState {
    pub fn new(
        commits: Commits,
        live: Arc<Mutex<LiveStats>>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        RealtimeState {
            commits,
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
            shutdown,
            live,
        }
    }

    /// Runs `f` on the live reader on a blocking thread.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&LiveStats) -> Result<T, hitvault_store::QueryError> + Send + 'static,
    ) -> Result<T, String> {
        let live = self.live.clone();
        tokio::task::spawn_blocking(move || {
            let guard = live.lock().unwrap_or_else(|e| e.into_inner());
            f(&guard).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| format!("the query task failed: {e}"))?
    }
}

/// The realtime stream's route; [`crate::app`] puts it behind the access
/// layer.
pub(crate) fn routes(state: RealtimeState) -> Routes {
    Routes::new(Face::Json)
        .get(
            "/api/v1/stats/realtime",
            Need::site(Right::View, SiteIn::Query),
            stream,
        )
        .with_state(state)
}

fn rows_json(rows: &[RecentRow]) -> Value {
    json!(
        rows.iter()
            .map(|r| json!({ "value": r.value, "visitors": r.visitors, "pageviews": r.pageviews }))
            .collect::<Vec<_>>()
    )
}

/// The JSON of one event.
pub fn event_json(site: &str, at: Timestamp, r: &Realtime) -> Value {
    json!({
        "site": site,
        "at": at.to_string(),
        "live_minutes": LIVE_MINUTES,
        "recent_minutes": RECENT_MINUTES,
        "live_visitors": r.live_visitors,
        "pageviews": r.pageviews,
        "per_minute": r.per_minute,
        "top_pages": rows_json(&r.top_pages),
        "top_sources": rows_json(&r.top_sources),
    })
}

fn parse_site(query: Option<&str>) -> Result<String, BadParam> {
    let mut site = None;
    for (k, v) in form_urlencoded(query.unwrap_or("")) {
        match k.as_str() {
            "site" => site = Some(v),
            _ => return Err(bad(&k, format!("unknown parameter {k:?}"))),
        }
    }
    site.filter(|s| !s.is_empty())
        .ok_or_else(|| bad("site", "the site's hostname is required"))
}

async fn stream(State(state): State<RealtimeState>, RawQuery(query): RawQuery) -> Response {
    let name = match parse_site(query.as_deref()) {
        Ok(s) => s,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let lookup = name.clone();
    let site = match state.read(move |l| l.site(&lookup)).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return ApiError::from(bad("site", format!("no site named {name:?}"))).into_response();
        }
        Err(e) => return ApiError::internal("a realtime query", e).into_response(),
    };
    let Ok(permit) = state.streams.clone().try_acquire_owned() else {
        return ApiError::too_many_streams(
            format!("at most {MAX_STREAMS} realtime streams are served at once"),
            Duration::from_secs(10),
        )
        .into_response();
    };
    // Subscribed before the first read, so no commit after it is missed.
    let commits = state.commits.tx.subscribe();
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let _permit = permit;
        feed(state, site, commits, tx).await;
    });
    let mut r = Body::new(ChannelBody(rx)).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

/// Writes one stream's events until the client leaves or the daemon stops.
async fn feed(
    state: RealtimeState,
    site: SiteRow,
    mut commits: broadcast::Receiver<Commit>,
    tx: mpsc::Sender<Bytes>,
) {
    let mut shutdown = state.shutdown.clone();
    if tx
        .send(Bytes::from_static(b"retry: 3000\n\n"))
        .await
        .is_err()
    {
        return;
    }
    let mut dirty = true;
    let mut last_sent: Option<Instant> = None;
    let mut keep_alive = tokio::time::interval_at(Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let due = |gap| last_sent.map_or_else(Instant::now, |t| t + gap);
        if dirty && due(MIN_EVENT_GAP) <= Instant::now() {
            let (id, host) = (site.id, site.hostname.clone());
            let now = Timestamp::now();
            let event = match state.read(move |l| l.realtime(id, now, TOP_ROWS)).await {
                Ok(r) => format!("data: {}\n\n", event_json(&host, now, &r)),
                Err(e) => {
                    tracing::warn!(site = %site.hostname, error = %e, "realtime query failed");
                    format!(": error {}\n\n", e.replace(['\r', '\n'], " "))
                }
            };
            if tx.send(Bytes::from(event)).await.is_err() {
                return;
            }
            last_sent = Some(Instant::now());
            dirty = false;
            keep_alive.reset();
            continue;
        }
        let next = if dirty {
            due(MIN_EVENT_GAP)
        } else {
            due(REFRESH)
        };
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tx.closed() => return,
            got = commits.recv() => match got {
                Ok(c) => dirty |= c.sites.contains(&site.hostname),
                Err(broadcast::error::RecvError::Lagged(_)) => dirty = true,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = tokio::time::sleep_until(next) => dirty = true,
            _ = keep_alive.tick() => {
                if tx.send(Bytes::from_static(b": keep-alive\n\n")).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// An HTTP body fed by a channel; it ends when the sender is dropped.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(http_body::Frame::data(b))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_site_is_the_only_parameter() {
        assert_eq!(parse_site(Some("site=a.test")).unwrap(), "a.test");
        assert_eq!(parse_site(None).unwrap_err().parameter, "site");
        assert_eq!(parse_site(Some("site=")).unwrap_err().parameter, "site");
        assert_eq!(
            parse_site(Some("site=a.test&limit=3"))
                .unwrap_err()
                .parameter,
            "limit"
        );
    }

    #[test]
    fn events_carry_every_number() {
        let r = Realtime {
            live_visitors: 2,
            pageviews: 5,
            per_minute: vec![0; 30],
            top_pages: vec![RecentRow {
                value: Some("/".into()),
                visitors: 2,
                pageviews: 5,
            }],
            top_sources: vec![RecentRow {
                value: None,
                visitors: 2,
                pageviews: 5,
            }],
        };
        let at = Timestamp::from_second(1_800_000_000).unwrap();
        let v = event_json("a.test", at, &r);
        assert_eq!(v["live_visitors"], 2);
        assert_eq!(v["pageviews"], 5);
        assert_eq!(v["top_pages"][0]["value"], "/");
        assert_eq!(v["top_sources"][0]["value"], Value::Null);
        assert_eq!(v["per_minute"].as_array().unwrap().len(), 30);
        assert_eq!(v["at"], "2027-01-15T08:00:00Z");
    }
}
