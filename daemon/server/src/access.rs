//! The one authorization decision in front of the dashboard, the stats and
//! definitions API, the realtime stream and the Takeout route.
//!
//! Until accounts exist, a request is admitted when both hold:
//!
//! - the client connects from a loopback address (the machine itself, or an
//!   SSH tunnel ending on it);
//! - the request is addressed to a loopback name: its `Host` (or HTTP/2
//!   `:authority`) is `localhost`, a name under `.localhost`, an address in
//!   127.0.0.0/8 or `::1`, with or without a port.
//!
//! The second rule stops DNS rebinding: a page on another site whose name
//! its DNS server later resolves to 127.0.0.1 runs in the operator's browser,
//! connects from loopback, and could otherwise read the dashboard and the
//! API as if it were this machine's own page. Its requests still carry its
//! own name in `Host`, so they are refused. A request without any host (no
//! browser sends one) is judged by its address alone.
//!
//! [`api_gate`] is the layer of the JSON routes (403 with a JSON reason);
//! the dashboard's own gate calls [`authorize`] and answers with a page.
//! Ingest, the tracker script, health and metrics are not behind it: they
//! are served to any client.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Why a request was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    /// The client is not on this machine.
    NotLoopback,
    /// The request names a host that is not a loopback name (the value).
    ForeignHost(String),
}

impl Denied {
    /// The reason, for the 403's message.
    pub fn message(&self) -> String {
        match self {
            Denied::NotLoopback => {
                "served to loopback clients only until accounts are configured; \
                 reach it through an SSH tunnel (ssh -L 8080:127.0.0.1:8080 <server>)"
                    .to_owned()
            }
            Denied::ForeignHost(host) => format!(
                "the request is addressed to {host:?}, not to this machine: until accounts are \
                 configured only requests to localhost, 127.0.0.1 or [::1] are served (this \
                 refuses pages of other sites that resolve their name to this machine)"
            ),
        }
    }
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        ApiError::forbidden(self.message()).into_response()
    }
}

/// The authorization decision for a client at `peer` whose request names
/// `host` (see the module doc).
pub fn authorize(peer: &SocketAddr, host: Option<&str>) -> Result<(), Denied> {
    if !peer.ip().to_canonical().is_loopback() {
        return Err(Denied::NotLoopback);
    }
    match host {
        Some(h) if !loopback_host(h) => Err(Denied::ForeignHost(h.to_owned())),
        _ => Ok(()),
    }
}

/// The host a request is addressed to: its `Host` header, else the URI's
/// authority (HTTP/2). A `Host` that is not text is returned as `"?"`, which
/// no rule admits.
pub fn request_host(req: &Request) -> Option<&str> {
    match req.headers().get(header::HOST) {
        Some(v) => Some(v.to_str().unwrap_or("?")),
        None => req.uri().authority().map(|a| a.as_str()),
    }
}

/// Whether `host` (`name`, `name:port`, `[v6]` or `[v6]:port`) names this
/// machine's loopback interface.
pub fn loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inside, after)) if after.is_empty() || port(after) => inside,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, p)) if port(&format!(":{p}")) => name,
            Some(_) => return false,
            None => host,
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    name.parse::<IpAddr>()
        .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// `:` followed by a decimal port number.
fn port(s: &str) -> bool {
    s.strip_prefix(':')
        .is_some_and(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The layer of the JSON routes: [`authorize`], or a 403 saying why.
pub async fn api_gate(req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let verdict = match peer {
        Some(peer) => authorize(&peer, request_host(&req)),
        // Served without connection info: nothing to judge the client by.
        None => Err(Denied::NotLoopback),
    };
    match verdict {
        Ok(()) => next.run(req).await,
        Err(d) => d.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn only_loopback_clients_are_authorized_until_accounts_exist() {
        for ok in ["127.0.0.1:1", "[::1]:1", "[::ffff:127.0.0.1]:1"] {
            assert_eq!(authorize(&ok.parse().unwrap(), None), Ok(()), "{ok}");
        }
        for no in ["192.168.1.20:1", "10.0.0.1:1", "[fe80::1]:1"] {
            let d = authorize(&no.parse().unwrap(), Some("127.0.0.1")).expect_err(no);
            assert_eq!(d, Denied::NotLoopback);
            assert_eq!(d.into_response().status(), StatusCode::FORBIDDEN);
        }
    }

    #[test]
    fn only_requests_addressed_to_loopback_names_are_authorized() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        for ok in [
            "localhost",
            "LOCALHOST:8080",
            "localhost.",
            "hitvault.localhost:8080",
            "127.0.0.1",
            "127.0.0.1:8080",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:8080",
            "[::ffff:127.0.0.1]:8080",
        ] {
            assert_eq!(authorize(&peer, Some(ok)), Ok(()), "{ok}");
        }
        for no in [
            "evil.test",
            "evil.test:8080",
            "localhost.evil.test",
            "127.0.0.1.nip.io:8080",
            "192.168.1.2:8080",
            "[fe80::1]:8080",
            "[::1]x",
            "localhost:80:80",
            "localhost:",
            "?",
            "",
        ] {
            assert_eq!(
                authorize(&peer, Some(no)),
                Err(Denied::ForeignHost(no.to_owned())),
                "{no}"
            );
        }
    }

    #[test]
    fn a_foreign_host_is_refused_with_the_reason() {
        let m = Denied::ForeignHost("evil.test:8080".into()).message();
        assert!(
            m.contains("evil.test:8080") && m.contains("localhost"),
            "{m}"
        );
    }
}
