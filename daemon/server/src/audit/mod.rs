//! The audit log on the HTTP edge: the [`Recorder`] a handler takes to
//! write an entry, the details of the entries, and the routes that read
//! the log.
//!
//! | route | kind | who |
//! | --- | --- | --- |
//! | `GET /admin/audit` | dashboard page: filter by actor, kind, from, until; newest first, 50 a page | an instance admin's session, or a local caller (`Need::Admin`) |
//! | `GET /api/v1/audit?format=ndjson\|csv&…` | the export, streamed, oldest first | the same |
//! | `GET /audit?…` (control socket) | JSON array, newest first (`hitvault audit`) | whoever can open the socket |
//!
//! Parameters of all three ([`AuditQuery::parse`]): `actor` (an actor
//! kind: `local`, `user`, `token`, `share`, `system`, `cli`, `anonymous`, or
//! a user name), `kind` (repeatable), `from` and `until` (RFC 3339, or a
//! date: midnight UTC; `since` is `from`), `site`, `before` (a `seq`: the
//! next page), `limit` (1 to [`MAX_LIMIT`]) and, for the export, `format`.
//!
//! The reading routes are [`read`]'s. Who the actor of a request is
//! (`Caller::actor`, the one mapping) and how a handler gets its
//! [`Recorder`] are [`crate::account`]'s, where the callers are.
//!
//! [`assembly`](crate::assembly) puts the [`Audit`] handle on every route
//! as a request extension, and marks the control socket's requests
//! ([`ControlSocket`]), so any handler can take a [`Recorder`].

pub mod read;

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use hitvault_accounts::audit::{self, AuditError, AuditLog, Entry};
pub use hitvault_accounts::audit::{Actor, Kind};
pub use read::{AuditQuery, CONTROL_DEFAULT_LIMIT, detail_text, parse_time, time_text};
use serde_json::{Map, Value};

use crate::error::ApiError;

/// The audit log, as a request extension of every route.
#[derive(Clone, Debug)]
pub struct Audit(pub Arc<AuditLog>);

/// Marks a request that came through the control socket: its actor is the CLI.
#[derive(Clone, Copy, Debug)]
pub struct ControlSocket;

/// What a handler writes entries with: the request's actor and address.
#[derive(Clone, Debug)]
pub struct Recorder {
    log: Arc<AuditLog>,
    pub actor: Actor,
    /// The client's address (none on the control socket).
    pub address: Option<String>,
}

impl Recorder {
    /// The recorder of a request (see `FromRequestParts` in
    /// [`crate::account`], which finds the actor).
    pub fn new(log: Arc<AuditLog>, actor: Actor, address: Option<String>) -> Recorder {
        Recorder {
            log,
            actor,
            address,
        }
    }
}

/// Unix milliseconds now.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `detail` as an object (anything else is wrapped as `{"value": …}`).
fn object(detail: Value) -> Map<String, Value> {
    match detail {
        Value::Object(m) => m,
        Value::Null => Map::new(),
        v => Map::from_iter([("value".to_owned(), v)]),
    }
}

impl Recorder {
    /// The same request, acting as `actor` (a sign-in: the user signing in).
    pub fn as_actor(&self, actor: Actor) -> Recorder {
        Recorder {
            actor,
            ..self.clone()
        }
    }

    /// Writes an entry and waits until it is on disk.
    pub async fn record(
        &self,
        kind: Kind,
        site: Option<&str>,
        detail: Value,
    ) -> Result<Entry, AuditError> {
        let e = audit::NewEntry {
            at: now_ms(),
            actor: self.actor.clone(),
            address: self.address.clone(),
            kind,
            site: site.map(str::to_owned),
            detail: object(detail),
        };
        let log = self.log.clone();
        tokio::task::spawn_blocking(move || log.append(e))
            .await
            .unwrap_or_else(|e| {
                Err(AuditError::Io {
                    path: "audit.jsonl".into(),
                    source: std::io::Error::other(e.to_string()),
                })
            })
    }

    /// [`Recorder::record`] for an action already done: a failure is
    /// logged (the action cannot be undone by then).
    pub async fn note(&self, kind: Kind, site: Option<&str>, detail: Value) {
        if let Err(e) = self.record(kind, site, detail).await {
            tracing::error!(error = %e, kind = %kind, "writing the audit log failed");
        }
    }

    /// [`Recorder::record`] before an action that must not happen
    /// unaudited (an export): its failure refuses the action.
    pub async fn before(
        &self,
        kind: Kind,
        site: Option<&str>,
        detail: Value,
    ) -> Result<(), Response> {
        self.record(kind, site, detail)
            .await
            .map(drop)
            .map_err(|e| ApiError::internal("writing the audit log", e).into_response())
    }
}

/// The detail of a prune's entry, from its report (JSON, as
/// `Maintenance::prune` gives it): the hits deleted, and per site the
/// hits, the cutoff and the archive written.
pub fn prune_detail(report: &Value) -> Value {
    let sites: Vec<Value> = report["sites"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|s| s["hits"].as_u64().unwrap_or(0) > 0)
                .map(|s| {
                    serde_json::json!({
                        "site": s["site"], "hits": s["hits"], "cutoff": s["cutoff"],
                        "archive": s["archive"],
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let hits: u64 = sites.iter().filter_map(|s| s["hits"].as_u64()).sum();
    serde_json::json!({ "hits": hits, "sites": sites })
}

/// An entry a handler asks for from a blocking closure, carried out on
/// its response's extensions and written by [`Recorder::flush`].
#[derive(Clone, Debug)]
pub struct Pending {
    pub kind: Kind,
    pub site: Option<String>,
    pub detail: Value,
}

/// `r` carrying the entry to write once it is back on the runtime.
pub fn pending(mut r: Response, kind: Kind, site: &str, detail: Value) -> Response {
    r.extensions_mut().insert(Pending {
        kind,
        site: Some(site.to_owned()),
        detail,
    });
    r
}

impl Recorder {
    /// Writes the entry `r` carries ([`pending`]), if any.
    pub async fn flush(&self, mut r: Response) -> Response {
        if let Some(p) = r.extensions_mut().remove::<Pending>() {
            self.note(p.kind, p.site.as_deref(), p.detail).await;
        }
        r
    }
}
