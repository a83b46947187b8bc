//! Streaming exports out of the daemon: the query a caller sends, the
//! [`Exporter`] the daemon implements, and [`BodyWriter`], a blocking
//! `std::io::Write` whose bytes become a chunked HTTP body. The body is fed
//! through a bounded channel, so a slow reader slows the export down instead
//! of making the daemon buffer it: memory stays flat whatever the size.

use std::io::{self, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;

use crate::control::AdminError;

/// What to export, as the caller wrote it (times and sites are checked by the daemon).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportQuery {
    /// Hostnames (`site=`, repeatable); empty: every site.
    pub sites: Vec<String>,
    /// `from=`: RFC 3339 or a date; inclusive.
    pub from: Option<String>,
    /// `until=` (also `to=`): RFC 3339 or a date; exclusive.
    pub until: Option<String>,
    /// `format=`: parquet, csv, json or ndjson. `None` on the control socket: Arrow frames.
    pub format: Option<String>,
    /// `table=`: hits (default), props or sites, for a one-file HTTP export.
    pub table: Option<String>,
    /// `bundle=zip`: every table and the MANIFEST as one zip stream.
    pub bundle: Option<String>,
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl ExportQuery {
    /// Parses a URL query string; unknown keys are refused.
    pub fn parse(q: Option<&str>) -> Result<ExportQuery, String> {
        let mut out = ExportQuery::default();
        for pair in q.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = unescape(v);
            match k {
                "site" => out.sites.push(v),
                "from" => out.from = Some(v),
                "until" | "to" => out.until = Some(v),
                "format" => out.format = Some(v),
                "table" => out.table = Some(v),
                "bundle" => out.bundle = Some(v),
                other => return Err(format!("unknown parameter {other:?}")),
            }
        }
        Ok(out)
    }

    /// The query string form (for the CLI).
    pub fn to_query(&self) -> String {
        let esc = |s: &str| {
            s.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b':' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect::<String>()
        };
        let mut parts: Vec<String> = self
            .sites
            .iter()
            .map(|s| format!("site={}", esc(s)))
            .collect();
        for (k, v) in [
            ("from", &self.from),
            ("until", &self.until),
            ("format", &self.format),
            ("table", &self.table),
            ("bundle", &self.bundle),
        ] {
            if let Some(v) = v {
                parts.push(format!("{k}={}", esc(v)));
            }
        }
        parts.join("&")
    }
}

/// What the daemon runs for an export (it owns the store). Methods block.
pub trait Exporter: Send + Sync + 'static {
    /// Checks the query and counts the hits it selects (for progress);
    /// returns the media type of the body.
    fn prepare(&self, q: &ExportQuery) -> Result<(u64, &'static str), AdminError>;
    /// Writes the export into `out`. On failure after bytes were sent, the
    /// daemon ends the body in a way the reader detects (an error frame, or
    /// a cut that leaves the file invalid).
    fn export(&self, q: ExportQuery, out: BodyWriter) -> Result<(), AdminError>;
}

/// Chunks in flight between the export thread and the connection: with
/// [`CHUNK`] bytes each, at most about 1 MiB is buffered per export.
const DEPTH: usize = 4;
/// Bytes gathered before a chunk is sent.
const CHUNK: usize = 256 * 1024;

/// A blocking writer whose bytes become an HTTP body (see the module doc).
pub struct BodyWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, io::Error>>,
    buf: Vec<u8>,
}

impl BodyWriter {
    /// Sends what is buffered; fails when the reader went away.
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the reader went away"))
    }

    /// Ends the body with an error: the connection is cut without the final
    /// chunk, so the reader sees an incomplete body.
    pub fn abort(mut self, why: &str) {
        let _ = self.send();
        let _ = self.tx.blocking_send(Err(io::Error::other(why.to_owned())));
    }
}

impl Write for BodyWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(buf);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

impl Drop for BodyWriter {
    fn drop(&mut self) {
        let _ = self.send();
    }
}

struct ChannelBody(tokio::sync::mpsc::Receiver<Result<Bytes, io::Error>>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, io::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|o| o.map(|r| r.map(http_body::Frame::data)))
    }
}

fn error(code: StatusCode, msg: String) -> Response {
    (
        code,
        axum::Json(json!({ "error": "export", "message": msg })),
    )
        .into_response()
}

/// Runs an export on a blocking thread and streams it as the response body.
pub async fn stream(exporter: Arc<dyn Exporter>, q: ExportQuery) -> Response {
    let (rows, media) = {
        let (e, q) = (exporter.clone(), q.clone());
        match tokio::task::spawn_blocking(move || e.prepare(&q)).await {
            Ok(Ok(v)) => v,
            Ok(Err(AdminError::Invalid(m))) => return error(StatusCode::BAD_REQUEST, m),
            Ok(Err(AdminError::Conflict(m) | AdminError::Internal(m))) => {
                return error(StatusCode::INTERNAL_SERVER_ERROR, m);
            }
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel(DEPTH);
    tokio::task::spawn_blocking(move || {
        let out = BodyWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        if let Err(e) = exporter.export(q, out) {
            let msg = match e {
                AdminError::Invalid(m) | AdminError::Conflict(m) | AdminError::Internal(m) => m,
            };
            tracing::warn!(error = %msg, "export failed");
            let _ = tx.blocking_send(Err(io::Error::other(msg)));
        }
    });
    let mut r = Response::new(Body::new(ChannelBody(rx)));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    r.headers_mut()
        .insert("x-hitvault-rows", HeaderValue::from(rows));
    r
}

/// A body whose headers are known before its bytes: what [`stream_prepared`]
/// sends. `write` runs on a blocking thread.
pub struct Prepared {
    pub media: &'static str,
    /// Extra response headers (lower-case names).
    pub headers: Vec<(&'static str, String)>,
    pub write: Box<dyn FnOnce(BodyWriter) -> Result<(), AdminError> + Send>,
}

/// Runs `prepare` on a blocking thread, then streams what it prepared; a
/// failure while writing cuts the body (the reader sees it incomplete).
pub async fn stream_prepared(
    prepare: impl FnOnce() -> Result<Prepared, AdminError> + Send + 'static,
) -> Response {
    let p = match tokio::task::spawn_blocking(prepare).await {
        Ok(Ok(p)) => p,
        Ok(Err(AdminError::Invalid(m))) => return error(StatusCode::BAD_REQUEST, m),
        Ok(Err(AdminError::Conflict(m))) => return error(StatusCode::CONFLICT, m),
        Ok(Err(AdminError::Internal(m))) => return error(StatusCode::INTERNAL_SERVER_ERROR, m),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(DEPTH);
    let write = p.write;
    tokio::task::spawn_blocking(move || {
        let out = BodyWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        if let Err(e) = write(out) {
            let msg = match e {
                AdminError::Invalid(m) | AdminError::Conflict(m) | AdminError::Internal(m) => m,
            };
            tracing::warn!(error = %msg, "streamed reply failed");
            let _ = tx.blocking_send(Err(io::Error::other(msg)));
        }
    });
    let mut r = Response::new(Body::new(ChannelBody(rx)));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(p.media));
    for (k, v) in p.headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            r.headers_mut().insert(k, v);
        }
    }
    r
}
