//! The names this appliance answers to, and the check that refuses a
//! request addressed to any other (DNS rebinding).
//!
//! A page of another site whose DNS name is later pointed at this
//! appliance's address runs in a LAN user's browser with that site's
//! origin, yet reaches this appliance: its requests still carry its own
//! name in `Host`. [`gate`] refuses them on every route that reads or
//! changes data (the JSON API and the dashboard). A request is admitted
//! when its `Host` (any port) is one of the configured `hostnames`, or a
//! loopback name (`localhost`, `*.localhost`, 127.0.0.0/8, `::1`). A request
//! without any host (no browser sends one) is not a browser's and is
//! admitted.
//!
//! The public routes (ingest, the tracker, health, metrics, `/ca.crt`) are
//! not behind it: they are served to any client anyway, whatever name or
//! address it uses, so a rebound page gains nothing there. So tracked sites
//! and server-side callers may reach ingest by any name or by IP address.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::access::{loopback_host, request_host};
use crate::error::ApiError;

/// The configured `hostnames`, normalised (lower case, no trailing dot; IP
/// addresses in canonical text).
#[derive(Clone, Debug, Default)]
pub struct Hostnames(Arc<[String]>);

impl Hostnames {
    pub fn new(names: impl IntoIterator<Item = String>) -> Hostnames {
        Hostnames(names.into_iter().map(|n| normalize(&n)).collect())
    }

    /// The configured names.
    pub fn names(&self) -> &[String] {
        &self.0
    }

    /// Whether a request whose `Host` is `host` (`name`, `name:port`,
    /// `[v6]`, `[v6]:port`) is addressed to this appliance.
    pub fn admits(&self, host: &str) -> bool {
        if loopback_host(host) {
            return true;
        }
        let Some(name) = host_name(host) else {
            return false;
        };
        let name = normalize(name);
        self.0.contains(&name)
    }
}

/// The name part of a `Host` value, without its port and brackets.
fn host_name(host: &str) -> Option<&str> {
    if let Some(rest) = host.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        return (after.is_empty() || port(after)).then_some(inside);
    }
    match host.rsplit_once(':') {
        Some((name, p)) if port(&format!(":{p}")) => Some(name),
        Some(_) => None,
        None => Some(host),
    }
}

fn port(s: &str) -> bool {
    s.strip_prefix(':')
        .is_some_and(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

fn normalize(n: &str) -> String {
    match n.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.to_canonical().to_string(),
        Err(_) => n.trim_end_matches('.').to_ascii_lowercase(),
    }
}

/// The refusal of a request addressed to another name.
pub fn refusal(host: &str, names: &Hostnames) -> ApiError {
    let configured = if names.names().is_empty() {
        "none is configured".to_owned()
    } else {
        names.names().join(", ")
    };
    ApiError::forbidden(format!(
        "the request is addressed to {host:?}, which is not a name of this appliance (setting \
         `hostnames`: {configured}; loopback names are always served): requests to other names \
         are refused so that a page of another site cannot reach this appliance through DNS \
         rebinding"
    ))
}

/// The layer of the routes that read or change data: [`Hostnames::admits`],
/// or a 403 naming the host.
pub async fn gate(State(names): State<Hostnames>, req: Request, next: Next) -> Response {
    match request_host(&req) {
        Some(h) if !names.admits(h) => refusal(h, &names).into_response(),
        _ => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_and_loopback_names_are_admitted_on_any_port() {
        let h = Hostnames::new([
            "Analytics.Clinic.LAN.".to_owned(),
            "192.0.2.7".to_owned(),
            "2001:db8::7".to_owned(),
        ]);
        for ok in [
            "analytics.clinic.lan",
            "ANALYTICS.clinic.lan:8443",
            "analytics.clinic.lan.",
            "192.0.2.7:80",
            "[2001:db8::7]:443",
            "localhost:8080",
            "127.0.0.1",
            "[::1]:1",
        ] {
            assert!(h.admits(ok), "{ok}");
        }
        for no in [
            "rebound.evil.test",
            "analytics.clinic.lan.evil.test",
            "clinic.lan",
            "192.0.2.8",
            "analytics.clinic.lan:x",
            "[2001:db8::7",
            "",
        ] {
            assert!(!h.admits(no), "{no}");
        }
        assert!(!Hostnames::default().admits("analytics.clinic.lan"));
    }
}
