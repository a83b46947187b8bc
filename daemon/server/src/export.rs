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
use axum::extract::State;
use axum::http::{HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::error::{AdminError, ApiError};
use crate::rules::{Face, Need, Routes, SiteIn};
use hitvault_accounts::Right;

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
    /// `table=`: a Takeout table (default hits), for a one-file HTTP export.
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
    /// Writes the export into `out` and ends it with [`BodyWriter::finish`].
    /// On a failure after bytes were sent, the body ends in a way the reader
    /// detects: an error frame, or (when `out` is dropped unfinished) a
    /// chunked body cut before its last chunk.
    fn export(&self, q: ExportQuery, out: BodyWriter) -> Result<(), AdminError>;
}

/// Chunks in flight between the export thread and the connection: with
/// [`CHUNK`] bytes each, at most about 1 MiB is buffered per export.
const DEPTH: usize = 4;
/// Bytes gathered before a chunk is sent.
const CHUNK: usize = 256 * 1024;

/// A blocking writer whose bytes become an HTTP body (see the module doc).
///
/// The body ends cleanly only through [`BodyWriter::finish`]. Dropped
/// without it (an error returned early, a panic), it ends the body with an
/// error: the connection is cut before the last chunk, so the client sees
/// an incomplete response, never a short one that looks whole.
pub struct BodyWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, io::Error>>,
    buf: Vec<u8>,
    done: bool,
}

impl BodyWriter {
    fn new(tx: tokio::sync::mpsc::Sender<Result<Bytes, io::Error>>) -> Self {
        BodyWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
            done: false,
        }
    }

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

    /// Sends the rest and ends the body as complete.
    pub fn finish(mut self) -> io::Result<()> {
        self.send()?;
        self.done = true;
        Ok(())
    }

    /// Ends the body with an error: the connection is cut without the final
    /// chunk, so the reader sees an incomplete body.
    pub fn abort(mut self, why: &str) {
        self.cut(why);
    }

    fn cut(&mut self, why: &str) {
        self.done = true;
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
        if !self.done {
            self.cut("the body ended before it was complete");
        }
    }
}

/// The receiving end of a [`BodyWriter`]. An error is handed to hyper one
/// poll late: hyper drops whatever it has not flushed yet when a body fails
/// (the status line and headers too, if the failure comes first), so the
/// first poll that sees the error yields, letting hyper flush the head and
/// every chunk before it; the client then sees the status, the bytes sent,
/// and a chunked body cut before its last chunk.
struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, io::Error>>,
    failed: Option<io::Error>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, io::Error>>> {
        if let Some(e) = self.failed.take() {
            return Poll::Ready(Some(Err(e)));
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Err(e))) => {
                self.failed = Some(e);
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            other => other.map(|o| o.map(|r| r.map(http_body::Frame::data))),
        }
    }
}

/// Runs `write` on a blocking thread with a [`BodyWriter`] that feeds the
/// returned body. A failure, or a panic, ends the body with an error.
fn spawn_body(
    what: &'static str,
    write: impl FnOnce(BodyWriter) -> Result<(), AdminError> + Send + 'static,
) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel(DEPTH);
    tokio::task::spawn_blocking(move || {
        let out = BodyWriter::new(tx.clone());
        let msg = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write(out))) {
            Ok(Ok(())) => return,
            Ok(Err(
                AdminError::Invalid(m)
                | AdminError::Conflict(m)
                | AdminError::Unavailable(m)
                | AdminError::Internal(m),
            )) => m,
            Err(_) => "the export thread panicked".to_owned(),
        };
        tracing::warn!(error = %msg, "{what} failed after the response began");
        // The writer's drop has cut the body already; this names the cause
        // if the body is still open (it is not, unless `write` leaked it).
        let _ = tx.blocking_send(Err(io::Error::other(msg)));
    });
    Body::new(ChannelBody { rx, failed: None })
}

/// Runs an export on a blocking thread and streams it as the response body.
pub async fn stream(exporter: Arc<dyn Exporter>, q: ExportQuery) -> Response {
    let (rows, media) = {
        let (e, q) = (exporter.clone(), q.clone());
        match tokio::task::spawn_blocking(move || e.prepare(&q)).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return e.into_response(),
            Err(e) => return ApiError::internal("an export task", e).into_response(),
        }
    };
    let body = spawn_body("export", move |out| exporter.export(q, out));
    let mut r = Response::new(body);
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
        Ok(Err(e)) => return e.into_response(),
        Err(e) => return ApiError::internal("a streamed reply's task", e).into_response(),
    };
    let body = spawn_body("streamed reply", p.write);
    let mut r = Response::new(body);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(p.media));
    for (k, v) in p.headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            r.headers_mut().insert(k, v);
        }
    }
    r
}

/// `GET /api/v1/takeout?format=..&site=..&from=..&until=..[&table=..]` for the
/// public listener: one table (hits by default) as one streamed file, behind
/// the access layer ([`crate::access`]), which [`crate::app`] applies:
/// loopback only until accounts exist.
pub(crate) fn routes(exporter: Arc<dyn Exporter>) -> Routes {
    Routes::new(Face::Json)
        .get(
            "/api/v1/takeout",
            Need::site(Right::Export, SiteIn::QueryOrAll),
            public_takeout,
        )
        .with_state(exporter)
}

async fn public_takeout(State(exporter): State<Arc<dyn Exporter>>, uri: Uri) -> Response {
    match ExportQuery::parse(uri.query()) {
        Ok(q) if q.format.is_some() => crate::export::stream(exporter, q).await,
        Ok(_) => {
            ApiError::invalid("format= is required: parquet, csv, json or ndjson").into_response()
        }
        Err(m) => ApiError::invalid(m).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Serves `GET /` with `stream_prepared(write)` on a real socket and
    /// returns everything the client received.
    async fn fetch(
        write: impl Fn(BodyWriter) -> Result<(), AdminError> + Send + Sync + Clone + 'static,
    ) -> Vec<u8> {
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(move || {
                let write = write.clone();
                stream_prepared(move || {
                    Ok(Prepared {
                        media: "application/zip",
                        headers: vec![],
                        write: Box::new(write),
                    })
                })
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
                .unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut raw = Vec::new();
            // A cut connection may end in a reset: keep what arrived.
            let _ = s.read_to_end(&mut raw);
            raw
        })
        .await
        .unwrap()
    }

    fn text(raw: &[u8]) -> String {
        String::from_utf8_lossy(raw).into_owned()
    }

    const END: &[u8] = b"\r\n0\r\n\r\n";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_finished_body_ends_with_the_last_chunk() {
        let raw = fetch(|mut out| {
            out.write_all(b"PK whole").unwrap();
            out.finish()
                .map_err(|e| AdminError::Internal(e.to_string()))
        })
        .await;
        let t = text(&raw);
        assert!(t.starts_with("HTTP/1.1 200"), "{t}");
        assert!(t.contains("PK whole") && raw.ends_with(END), "{t}");
    }

    /// An export that fails after the headers: the client gets the status,
    /// the bytes sent so far, and a chunked body without its last chunk,
    /// whether the failure comes at once or after data, as an error or a
    /// panic, or as a writer dropped without `finish`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_body_is_cut_before_the_last_chunk() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "error at once",
                fetch(|_out| Err(AdminError::Internal("boom".into()))).await,
            ),
            (
                "error after data",
                fetch(|mut out| {
                    out.write_all(b"PK partial").unwrap();
                    out.flush().unwrap();
                    Err(AdminError::Internal("boom".into()))
                })
                .await,
            ),
            (
                "buffered data, then an error",
                fetch(|mut out| {
                    out.write_all(b"PK partial").unwrap();
                    Err(AdminError::Internal("boom".into()))
                })
                .await,
            ),
            (
                "panic",
                fetch(|mut out| {
                    out.write_all(b"PK partial").unwrap();
                    panic!("an export bug");
                })
                .await,
            ),
            (
                "dropped unfinished",
                fetch(|mut out| {
                    out.write_all(b"PK partial").unwrap();
                    Ok(())
                })
                .await,
            ),
        ];
        for (case, raw) in cases {
            let t = text(&raw);
            assert!(
                t.starts_with("HTTP/1.1 200"),
                "{case}: the head arrives: {t:?}"
            );
            assert!(
                t.to_ascii_lowercase()
                    .contains("transfer-encoding: chunked"),
                "{case}: {t:?}"
            );
            assert!(
                !raw.ends_with(END),
                "{case}: the body must not end complete: {t:?}"
            );
            if case != "error at once" {
                assert!(
                    t.contains("PK partial"),
                    "{case}: what was sent arrives: {t:?}"
                );
            }
        }
    }
}
