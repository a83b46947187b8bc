//! Accounts on the HTTP edge: the session cookie, CSRF tokens, and the
//! pages to set up an account, sign in and manage one's factors.
//!
//! | path | what |
//! | --- | --- |
//! | `GET /setup/{token}`, `POST` | the one-time link: create the first admin (or the invited user), or enrol factors after a reset |
//! | `GET /login`, `POST` | sign in: passkey first, else name and password |
//! | `POST /login/code` | the second step: a TOTP code or a recovery code |
//! | `POST /logout` | end this session |
//! | `GET /account` | factors (passkeys, password, TOTP, recovery codes) and sessions |
//! | `POST /login/passkey/…`, `POST /account/passkeys/{start,finish}` | the passkey ceremonies, JSON ([`passkey`]) |
//! | `POST /account/…` | the account page's forms ([`pages`]) |
//! | `POST /account/tokens`, `…/{id}/revoke` | the user's API tokens ([`tokens`]) |
//! | `GET /ca.crt`-like TLS material | served by the TLS layer, not here |
//!
//! The session cookie is `__Host-hv_session`: `Secure`, `HttpOnly`,
//! `SameSite=Strict`, `Path=/`, no `Domain` (the `__Host-` prefix makes the
//! browser enforce the last three). Its value is a random token; the server
//! keeps only its SHA-256 (see `hitvault_accounts`).
//!
//! CSRF: every form of a signed-in page carries the session's token in a
//! hidden `csrf` field, and every change a session makes must present it
//! (forms) or send it as `X-CSRF-Token` (scripts); the gate checks this
//! before any handler runs, on top of the Origin / `Sec-Fetch-Site` check.
//! The forms shown before a session exists (sign-in, set-up) carry a
//! random token that must equal the `__Host-hv_form` cookie set with the
//! page (a double-submit token).

mod common;
pub mod control;
pub(crate) mod pages;
pub(crate) mod passkey;
pub(crate) mod tokens;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use hitvault_accounts::Actor;

use crate::audit::{Audit, ControlSocket, Recorder};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, header};
use hitvault_accounts::{Accounts, Passkeys, SessionView, TokenView};
use tokio::sync::Semaphore;

pub use crate::caller::Caller;

impl Caller {
    /// Who the audit log says did what this caller does. The one mapping
    /// from a caller to an audit actor: a new kind of caller gets its
    /// actor here.
    pub fn actor(&self) -> Actor {
        match self {
            Caller::Local => Actor::Local,
            Caller::Session(s) => Actor::User {
                id: s.user.id,
                name: s.user.name.clone(),
            },
            Caller::Token(t) => Actor::Token {
                id: t.token.id.to_string(),
                user: t.user.name.clone(),
            },
        }
    }
}

/// A handler's [`Recorder`]: the request's caller as its actor (the CLI
/// on the control socket, anonymous before a session exists) and the
/// client's address.
impl<S: Send + Sync> FromRequestParts<S> for Recorder {
    type Rejection = axum::response::Response;

    async fn from_request_parts(
        parts: &mut Parts,
        _: &S,
    ) -> Result<Recorder, axum::response::Response> {
        use axum::response::IntoResponse;
        let Some(Audit(log)) = parts.extensions.get::<Audit>().cloned() else {
            return Err(
                crate::error::ApiError::internal("auditing", "the route has no audit log")
                    .into_response(),
            );
        };
        let address = parts
            .extensions
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip().to_canonical().to_string());
        // The socket's caller is the operator, and its actor the CLI.
        let actor = if parts.extensions.get::<ControlSocket>().is_some() {
            Actor::Cli
        } else if let Some(c) = parts.extensions.get::<Caller>() {
            c.actor()
        } else {
            Actor::Anonymous
        };
        Ok(Recorder::new(log, actor, address))
    }
}

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "__Host-hv_session";
/// The cookie of the double-submit token of forms shown before sign-in.
pub const FORM_COOKIE: &str = "__Host-hv_form";
/// Password checks run at once (each holds about 19 MiB for argon2id).
pub const PASSWORD_CHECKS: usize = 2;
/// Most bytes of a form body on these pages.
pub const MAX_FORM: usize = 16 * 1024;

/// What the account routes and the gates need.
#[derive(Clone)]
pub struct AccountState {
    pub accounts: Arc<Accounts>,
    /// The names this appliance answers to (setting `hostnames`); the
    /// access rule admits requests addressed to them.
    pub hostnames: Arc<[String]>,
    /// Bounds the password checks running at once ([`PASSWORD_CHECKS`]).
    pub checks: Arc<Semaphore>,
    /// The SHA-256 fingerprint of the appliance's own CA, shown on the
    /// set-up page to compare with the console's (when TLS uses it).
    pub ca_fingerprint: Option<Arc<str>>,
    /// The passkey relying party and its ceremonies in progress; `None`
    /// when the first hostname cannot be one (an IP address), which the
    /// log says at start.
    pub passkeys: Option<Arc<Passkeys>>,
}

impl std::fmt::Debug for AccountState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountState")
            .field("hostnames", &self.hostnames)
            .finish_non_exhaustive()
    }
}

impl AccountState {
    pub fn new(accounts: Arc<Accounts>, hostnames: Vec<String>) -> AccountState {
        let passkeys = passkey::relying_party(&hostnames);
        AccountState {
            accounts,
            hostnames: hostnames.into(),
            checks: Arc::new(Semaphore::new(PASSWORD_CHECKS)),
            ca_fingerprint: None,
            passkeys,
        }
    }

    /// The live session the request's cookie names, if any.
    pub fn session_of(&self, headers: &HeaderMap) -> Option<SessionView> {
        let token = cookie(headers, SESSION_COOKIE)?;
        self.accounts.session(token, now())
    }

    /// The live API token of the request's `Authorization: Bearer`, if it
    /// sends one (`Some(None)`: it sends one that does not admit). A use
    /// is journaled off the request's thread when due.
    pub fn token_of(&self, headers: &HeaderMap) -> Option<Option<TokenView>> {
        Some(token_lookup(&self.accounts, bearer(headers)?))
    }

    /// The caller as it stands now, for a long answer (a stream) that
    /// re-checks it: `None` once its session ended or its token was
    /// revoked or expired.
    pub fn fresh(&self, caller: &Caller) -> Option<Caller> {
        match caller {
            Caller::Local => Some(Caller::Local),
            Caller::Session(s) => self
                .accounts
                .session_by_digest(&s.digest, now())
                .map(|v| Caller::Session(Arc::new(v))),
            Caller::Token(t) => self
                .accounts
                .token_by_id(t.token.id, now())
                .map(|v| Caller::Token(Arc::new(v))),
        }
    }
}

/// The live token whose secret is `secret`; its use is journaled off the
/// request's thread when due ([`hitvault_accounts::TOKEN_USE_SECS`]).
pub(crate) fn token_lookup(accounts: &Arc<Accounts>, secret: &str) -> Option<TokenView> {
    let now = now();
    let view = accounts.token(secret, now)?;
    if Accounts::token_use_due(&view.token, now) {
        let (accounts, id) = (accounts.clone(), view.token.id);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = accounts.token_used(id, now) {
                tracing::warn!(error = %e, token = id, "recording a token's use failed");
            }
        });
    }
    Some(view)
}

/// The secret of an `Authorization: Bearer` header.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// Unix seconds now.
pub(crate) fn now() -> u64 {
    now_ms() / 1000
}

/// Unix milliseconds now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value for a `__Host-` cookie (`max_age` `None`: ends with
/// the browser session).
pub(crate) fn set_cookie(name: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
    let age = max_age
        .map(|a| format!("; Max-Age={a}"))
        .unwrap_or_default();
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict{age}"
    ))
    .expect("cookie values are base64url")
}

/// A `Set-Cookie` value that removes cookie `name`.
pub(crate) fn clear_cookie(name: &str) -> HeaderValue {
    set_cookie(name, "", Some(0))
}

/// Whether the `X-CSRF-Token` header equals `csrf`.
pub(crate) fn csrf_header_ok(headers: &HeaderMap, csrf: &str) -> bool {
    headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| hitvault_accounts::secret::same(v, csrf))
}

tokio::task_local! {
    /// The caller of the request being answered, for the page shell (who
    /// is signed in) and every form (the CSRF field).
    static CALLER: Option<Caller>;
}

/// Runs `f` with `caller` as the request's caller (see [`current`]).
pub(crate) async fn with_caller<F: std::future::Future>(caller: Option<Caller>, f: F) -> F::Output {
    CALLER.scope(caller, f).await
}

/// The caller of the request being answered ([`with_caller`]), if any.
pub(crate) fn current() -> Option<Caller> {
    CALLER.try_with(|c| c.clone()).ok().flatten()
}

/// Whether the request's caller has `right` on `site` (no caller: no).
/// Pages use it to show only what the caller may do; the routes' rules
/// enforce it.
pub(crate) fn current_may(right: hitvault_accounts::Right, site: &str) -> bool {
    current().is_some_and(|c| c.may(right, Some(site)))
}

/// The hidden field that every form of a signed-in page carries (empty
/// for a local caller, which has no session).
pub(crate) fn csrf_field() -> String {
    match current().as_ref().and_then(|c| c.csrf().map(str::to_owned)) {
        Some(t) => format!("<input type=\"hidden\" name=\"csrf\" value=\"{t}\">"),
        None => String::new(),
    }
}

/// Checks the CSRF token of a change a session makes: the `X-CSRF-Token`
/// header, or the `csrf` field of a form body (read here, up to
/// [`MAX_FORM`] bytes, and put back). `Err` carries the reason.
pub(crate) async fn check_csrf(req: Request, csrf: &str) -> Result<Request, String> {
    if csrf_header_ok(req.headers(), csrf) {
        return Ok(req);
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM)
        .await
        .map_err(|_| format!("the form is larger than {MAX_FORM} bytes"))?;
    let form = std::str::from_utf8(&bytes).unwrap_or("");
    let ok = crate::urlencoded::form_urlencoded(form)
        .iter()
        .any(|(k, v)| k == "csrf" && hitvault_accounts::secret::same(v, csrf));
    if !ok {
        return Err(
            "the form's CSRF token is missing or stale (reload the page and try again)".into(),
        );
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-hv_session=tok"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("tok"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn the_session_cookie_has_every_flag() {
        let c = set_cookie(SESSION_COOKIE, "tok", None);
        let c = c.to_str().unwrap();
        for flag in [
            "__Host-hv_session=tok",
            "Path=/",
            "Secure",
            "HttpOnly",
            "SameSite=Strict",
        ] {
            assert!(c.contains(flag), "{c}");
        }
        assert!(!c.contains("Domain"), "{c}");
        assert!(
            clear_cookie(SESSION_COOKIE)
                .to_str()
                .unwrap()
                .contains("Max-Age=0")
        );
    }

    #[tokio::test]
    async fn a_form_needs_its_csrf_token() {
        let req = |body: &'static str| {
            Request::builder()
                .method("POST")
                .body(Body::from(body))
                .unwrap()
        };
        assert!(check_csrf(req("a=1&csrf=right"), "right").await.is_ok());
        assert!(check_csrf(req("a=1&csrf=wrong"), "right").await.is_err());
        assert!(check_csrf(req("a=1"), "right").await.is_err());
        let with_header = Request::builder()
            .method("POST")
            .header("x-csrf-token", "right")
            .body(Body::empty())
            .unwrap();
        assert!(check_csrf(with_header, "right").await.is_ok());
        // The body is put back for the handler.
        let r = check_csrf(req("x=2&csrf=right"), "right").await.unwrap();
        let b = axum::body::to_bytes(r.into_body(), 100).await.unwrap();
        assert_eq!(&b[..], b"x=2&csrf=right");
    }
}
