//! The one authorization decision in front of the dashboard, the stats and
//! definitions API, the realtime stream and the Takeout route.
//!
//! [`admit`] decides, in this order:
//!
//! 1. A request addressed to a name that is neither a configured hostname
//!    (setting `hostnames`) nor a loopback name is refused
//!    ([`Denied::ForeignHost`]). This stops DNS rebinding: a page on
//!    another site whose name its DNS server later resolves to this
//!    machine runs in a user's browser and could otherwise talk to the
//!    dashboard as if it were its own page; its requests still carry its
//!    own name in `Host`. (Its requests carry no session cookie either:
//!    the browser keeps that for this appliance's own names.)
//! 2. A client on this machine (a loopback address) addressing a loopback
//!    name (`localhost`, a name under `.localhost`, 127.0.0.0/8, `::1`)
//!    is the machine's operator ([`Caller::Local`]), as whoever can open
//!    the control socket is: the SSH tunnel of the docs, and the tests.
//! 3. Anyone else needs a live session ([`Caller::Session`]): its cookie
//!    names a server-side session record (see [`crate::account`]).
//!
//! A request without any host (no browser sends one) is judged by its
//! address and cookie alone. [`api_gate`] is the layer of the JSON routes
//! (401 or 403 with a JSON reason); the dashboard's own gate calls
//! [`admit`] and answers with a page or a redirect to the sign-in page.
//! Ingest, the tracker script, health and metrics are not behind it: they
//! are served to any client.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hitvault_accounts::SessionView;

pub use crate::account::Caller;
use crate::account::{self, AccountState};
use crate::error::ApiError;

/// Why a request was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    /// The client is not on this machine and has no live session.
    NotLoopback,
    /// The request names a host that is neither a configured hostname nor
    /// a loopback name (the value).
    ForeignHost(String),
    /// It sends a bearer token that is unknown, expired or revoked.
    BadToken,
}

impl Denied {
    /// The reason, for the 403's message.
    pub fn message(&self) -> String {
        match self {
            Denied::NotLoopback => "sign in first: open /login in a browser (the session \
                 cookie admits the request), or call from this machine itself"
                .to_owned(),
            Denied::BadToken => "the bearer token is unknown, expired or revoked".to_owned(),
            Denied::ForeignHost(host) => format!(
                "the request is addressed to {host:?}, which is not one of this appliance's \
                 names (setting `hostnames`) nor localhost, 127.0.0.1 or [::1] (this refuses \
                 pages of other sites that resolve their name to this machine)"
            ),
        }
    }
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Denied::NotLoopback | Denied::BadToken => ApiError::sign_in_required(self.message()),
            Denied::ForeignHost(_) => ApiError::forbidden(self.message()),
        }
        .into_response()
    }
}

/// The decision of the module doc for a client at `peer` whose request
/// names `host`; `session` looks a session cookie up (called only when
/// the request is not [`Caller::Local`]).
pub fn admit(
    peer: &SocketAddr,
    host: Option<&str>,
    hostnames: &[String],
    session: impl FnOnce() -> Option<SessionView>,
) -> Result<Caller, Denied> {
    if let Some(d) = foreign_host(host, hostnames) {
        return Err(d);
    }
    if authorize(peer, host).is_ok() {
        return Ok(Caller::Local);
    }
    session()
        .map(|s| Caller::Session(Arc::new(s)))
        .ok_or(Denied::NotLoopback)
}

/// The refusal of a request addressed to a name that is neither one of
/// `hostnames` nor a loopback name (step 1 of the module doc).
fn foreign_host(host: Option<&str>, hostnames: &[String]) -> Option<Denied> {
    host.filter(|h| !loopback_host(h) && !configured_host(h, hostnames))
        .map(|h| Denied::ForeignHost(h.to_owned()))
}

/// Whether `host` (`name` or `name:port`) is one of `hostnames`.
pub fn configured_host(host: &str, hostnames: &[String]) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, p)) if port(&format!(":{p}")) => name,
        Some(_) if !host.starts_with('[') => return false,
        _ => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    hostnames.iter().any(|h| h.eq_ignore_ascii_case(name))
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

/// The layer of the JSON routes: [`admit`], or a 401/403 saying why. A
/// request that changes something with a session must carry the session's
/// CSRF token in `X-CSRF-Token`; a session that must enrol a second factor
/// reaches no API route.
pub async fn api_gate(State(state): State<AccountState>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let token = state.token_of(req.headers());
    let verdict = match (peer, token) {
        // A token decides alone (from this machine too), once the Host is ours.
        (Some(_), Some(token)) => match foreign_host(request_host(&req), &state.hostnames) {
            Some(d) => Err(d),
            None => token
                .map(|t| Caller::Token(Arc::new(t)))
                .ok_or(Denied::BadToken),
        },
        (Some(peer), None) => admit(&peer, request_host(&req), &state.hostnames, || {
            state.session_of(req.headers())
        }),
        // Served without connection info: nothing to judge the client by.
        (None, _) => Err(Denied::NotLoopback),
    };
    let caller = match verdict {
        Ok(c) => c,
        Err(d) => return d.into_response(),
    };
    if let Caller::Session(s) = &caller {
        if s.must_enrol {
            return ApiError::forbidden(
                "this instance requires a second factor: add a passkey or TOTP at /account first",
            )
            .into_response();
        }
        let reading = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
        if !reading && !account::csrf_header_ok(req.headers(), &s.csrf) {
            return ApiError::forbidden(
                "a signed-in change needs the session's CSRF token in the X-CSRF-Token header",
            )
            .into_response();
        }
    }
    req.extensions_mut().insert(Fresh {
        accounts: state.clone(),
        caller: caller.clone(),
    });
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// The caller of a request, re-read: a long answer (the realtime stream)
/// asks it before each event, so a session ended or a token revoked stops
/// the stream too.
#[derive(Clone)]
pub struct Fresh {
    accounts: AccountState,
    caller: Caller,
}

impl Fresh {
    /// Whether the caller, as it stands now, still has `right` on `site`.
    pub fn still_may(&self, right: hitvault_accounts::Right, site: &str) -> bool {
        self.accounts
            .fresh(&self.caller)
            .is_some_and(|c| c.may(right, Some(site)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn configured_hostnames_pass_with_any_port_and_others_are_foreign() {
        let names = vec!["stats.clinic.lan".to_owned()];
        let peer: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        for ok in [
            "stats.clinic.lan",
            "STATS.clinic.lan:8443",
            "stats.clinic.lan.",
        ] {
            assert!(configured_host(ok, &names), "{ok}");
            // A configured name from the LAN still needs a session.
            assert_eq!(
                admit(&peer, Some(ok), &names, || None).unwrap_err(),
                Denied::NotLoopback
            );
        }
        for no in [
            "evil.test",
            "stats.clinic.lan.evil.test",
            "x.stats.clinic.lan:1",
        ] {
            assert!(!configured_host(no, &names), "{no}");
            assert_eq!(
                admit(&peer, Some(no), &names, || panic!("not asked")).unwrap_err(),
                Denied::ForeignHost(no.to_owned())
            );
        }
        // Loopback clients addressing loopback names need no session.
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert!(matches!(
            admit(&local, Some("localhost:8080"), &names, || panic!(
                "not asked"
            )),
            Ok(Caller::Local)
        ));
        // A loopback client addressing the configured name (a browser on a
        // name mapped to 127.0.0.1) is treated as the LAN: it needs a session.
        assert_eq!(
            admit(&local, Some("stats.clinic.lan"), &names, || None).unwrap_err(),
            Denied::NotLoopback
        );
    }

    #[test]
    fn only_loopback_clients_are_authorized_until_accounts_exist() {
        for ok in ["127.0.0.1:1", "[::1]:1", "[::ffff:127.0.0.1]:1"] {
            assert_eq!(authorize(&ok.parse().unwrap(), None), Ok(()), "{ok}");
        }
        for no in ["192.168.1.20:1", "10.0.0.1:1", "[fe80::1]:1"] {
            let d = authorize(&no.parse().unwrap(), Some("127.0.0.1")).expect_err(no);
            assert_eq!(d, Denied::NotLoopback);
            assert_eq!(d.into_response().status(), StatusCode::UNAUTHORIZED);
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
            m.contains("evil.test:8080") && m.contains("localhost") && m.contains("hostnames"),
            "{m}"
        );
    }
}
