//! The listener's edge: one port, TLS or plain HTTP chosen per connection.
//!
//! Each accepted connection is sniffed: a first byte of `0x16` is a TLS
//! handshake record (a ClientHello), served over TLS with the configured
//! certificate; anything else is plain HTTP/1.1. Then:
//!
//! | connection | served |
//! | --- | --- |
//! | TLS | every route; each response carries `Strict-Transport-Security`, but those to a loopback name |
//! | plain, from a loopback peer | every route |
//! | plain, `allow_plain_http = true` | every route (a TLS proxy in front speaks plain HTTP to us) |
//! | plain, from any other peer | a `308` to `https://` + the same host and path |
//! | TLS when TLS is off | closed |
//!
//! Each request carries the peer's address (`ConnectInfo<SocketAddr>`) and
//! how it came ([`Transport`]). A connection that has not sent its first
//! byte, or finished its TLS handshake, within [`HANDSHAKE_TIMEOUT`] is
//! closed. On shutdown the edge stops accepting, asks every connection to
//! finish its request in flight and close, and returns when all are closed.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::rustls::ServerConfig;
use tower::ServiceExt;

use crate::error::ApiError;

/// The longest wait for a connection's first byte and for its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The `Strict-Transport-Security` value of every TLS response: one year,
/// this host only (the appliance's name may share a domain with others).
/// Not sent to a request addressed to a loopback name: a browser would then
/// force https on every port of `localhost`, other local servers included.
pub const HSTS: &str = "max-age=31536000";

/// The first byte of a TLS record carrying a handshake message.
const TLS_HANDSHAKE: u8 = 0x16;

/// How a request reached the daemon, in each request's extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Over TLS, from this listener's certificate.
    Tls,
    /// Plain HTTP (loopback, or behind a TLS proxy with `allow_plain_http`).
    Plain,
}

/// What the edge serves on each kind of connection.
#[derive(Clone)]
pub struct Edge {
    /// TLS, when `tls.mode` is not `off`.
    pub tls: Option<Arc<ServerConfig>>,
    /// Plain HTTP is served to any peer (`allow_plain_http`), not only to
    /// loopback ones.
    pub allow_plain_http: bool,
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("tls", &self.tls.is_some())
            .field("allow_plain_http", &self.allow_plain_http)
            .finish()
    }
}

impl Edge {
    /// Plain HTTP only, to every peer: what the tests of single routes use.
    pub fn plain() -> Edge {
        Edge {
            tls: None,
            allow_plain_http: true,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting
/// and waits for in-flight requests (each of which waits for its fsync).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    edge: Edge,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Connections watch `stop`; each holds a `done` receiver until it closes.
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, done_rx) = watch::channel(());
    let edge = Arc::new(edge);
    let mut shutdown = pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Beacons are small: send the 202 at once instead of waiting for Nagle.
        let _ = tcp.set_nodelay(true);
        let (app, edge, stop, done) = (app.clone(), edge.clone(), stop_rx.clone(), done_rx.clone());
        tokio::spawn(async move {
            connection(tcp, peer, app, &edge, stop).await;
            drop(done);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(done_rx);
    done_tx.closed().await;
    Ok(())
}

/// An error of `accept`: a connection that died before it was accepted is
/// nothing; running out of descriptors or memory waits a little, so the
/// loop does not spin while connections close.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock
    ) {
        return;
    }
    tracing::warn!(error = %e, "accepting a connection failed; retrying in 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// `fut`, unless it takes longer than [`HANDSHAKE_TIMEOUT`] or the edge
/// shuts down first.
async fn before_http<T>(
    fut: impl Future<Output = std::io::Result<T>>,
    stop: &mut watch::Receiver<bool>,
) -> Option<T> {
    tokio::select! {
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, fut) => match r {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "connection closed before its first request");
                None
            }
            Err(_) => None,
        },
        _ = stop.wait_for(|s| *s) => None,
    }
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Router,
    edge: &Edge,
    mut stop: watch::Receiver<bool>,
) {
    let mut first = [0u8; 1];
    if before_http(tcp.peek(&mut first), &mut stop).await != Some(1) {
        return;
    }
    if first[0] == TLS_HANDSHAKE {
        let Some(tls) = &edge.tls else {
            tracing::debug!("a TLS handshake on a listener without TLS (tls.mode = off); closed");
            return;
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
        let Some(stream) = before_http(acceptor.accept(tcp), &mut stop).await else {
            return;
        };
        serve_http(stream, stop, move |req| {
            let app = app.clone();
            let loopback = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .is_some_and(crate::access::loopback_host);
            async move {
                let mut r = app.oneshot(with_info(req, peer, Transport::Tls)).await?;
                if !loopback {
                    r.headers_mut().insert(
                        header::STRICT_TRANSPORT_SECURITY,
                        HeaderValue::from_static(HSTS),
                    );
                }
                Ok(r)
            }
        })
        .await;
    } else if edge.allow_plain_http || peer.ip().to_canonical().is_loopback() {
        serve_http(tcp, stop, move |req| {
            app.clone().oneshot(with_info(req, peer, Transport::Plain))
        })
        .await;
    } else {
        let tls = edge.tls.is_some();
        serve_http(tcp, stop, move |req| async move {
            Ok::<_, Infallible>(to_https(&req, tls))
        })
        .await;
    }
}

fn with_info(req: Request<Incoming>, peer: SocketAddr, t: Transport) -> Request<Body> {
    let mut req = req.map(Body::new);
    req.extensions_mut().insert(ConnectInfo(peer));
    req.extensions_mut().insert(t);
    req
}

/// HTTP/1.1 on `io` with keep-alive, until the peer closes or `stop` asks
/// the connection to finish its request in flight.
async fn serve_http<I, F, Fut>(io: I, mut stop: watch::Receiver<bool>, handle: F)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), hyper::service::service_fn(handle));
    let mut conn = pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::trace!(error = %e, "connection ended with an error");
            }
            return;
        }
        _ = stop.wait_for(|s| *s) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// The answer to a plain request from a peer that is not on this machine:
/// a permanent redirect to the same host and path over https (`308` keeps
/// the method and body), or a refusal when there is nowhere to send it.
fn to_https(req: &Request<Incoming>, tls: bool) -> Response<Body> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| valid_authority(h));
    let target = match (tls, host) {
        (true, Some(host)) => {
            let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
            format!("https://{host}{path}")
        }
        (true, None) => {
            return ApiError::invalid(
                "plain HTTP is served to this machine only: send the request over https \
                 (this request has no valid Host header to redirect to)",
            )
            .into_response();
        }
        (false, _) => {
            return ApiError::forbidden(
                "plain HTTP is served to this machine only, and TLS is off (tls.mode = off)",
            )
            .into_response();
        }
    };
    let mut r = Response::new(Body::from(format!(
        "plain HTTP is served to this machine only; use {target}\n"
    )));
    *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
    if let Ok(v) = HeaderValue::from_str(&target) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// `host` or `host:port` as a request's `Host` may carry it: a name of
/// letters, digits, `-` and `.`, or a bracketed IPv6 address, and an
/// optional numeric port. Nothing that could end the URL's authority.
fn valid_authority(h: &str) -> bool {
    let (name, port) = match h.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, after)) => {
                if v6.parse::<std::net::Ipv6Addr>().is_err() {
                    return false;
                }
                (None, after.strip_prefix(':'))
            }
            None => return false,
        },
        None => match h.split_once(':') {
            Some((n, p)) => (Some(n), Some(p)),
            None => (Some(h), None),
        },
    };
    let name_ok = name.is_none_or(|n| {
        !n.is_empty()
            && n.len() <= 253
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    });
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok());
    name_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_authorities_are_redirected_to() {
        for ok in [
            "analytics.clinic.lan",
            "analytics.clinic.lan:8443",
            "192.0.2.7:80",
            "[2001:db8::1]:443",
            "[::1]",
        ] {
            assert!(valid_authority(ok), "{ok}");
        }
        for no in [
            "",
            "evil.test/path",
            "a@b",
            "host:port",
            "host:99999",
            "[nope]",
            "a b",
            "x\\y",
        ] {
            assert!(!valid_authority(no), "{no}");
        }
    }
}
