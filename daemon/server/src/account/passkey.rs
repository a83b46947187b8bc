//! The passkey ceremonies on the HTTP edge: JSON in and out, for
//! `assets/passkey.js` (the sign-in page's `#passkey-signin` button and
//! the account page's `#passkey-add`). The checks are
//! `hitvault_accounts::passkey`'s.
//!
//! | route | caller | body | answer |
//! | --- | --- | --- | --- |
//! | `POST /login/passkey/start` | anyone | `{}` | `{ceremony, options}` |
//! | `POST /login/passkey/finish` | anyone | `{ceremony, credential, next?}` | `{redirect}` and the session cookie |
//! | `POST /account/passkeys/start` | a session (CSRF header) | `{}` | `{ceremony, options}` |
//! | `POST /account/passkeys/finish` | a session (CSRF header) | `{ceremony, credential, name?}` | `{credential, name, redirect}` |
//!
//! `options` is what `navigator.credentials.get()` / `.create()` takes
//! (binary fields in base64url), `credential` what it gave back. Refusals
//! are [`ApiError`]s: 400 `invalid` naming the failed check (a bad
//! signature, a counter that did not increase, no user verification where
//! it is required, another origin...), 400 `invalid` for an expired or
//! used ceremony, 401 without a session, 409 for a passkey registered
//! already, 429 after too many failures (the sign-in limiter, shared with
//! passwords), 503 when every sign-in slot is taken. The account page's
//! routes sit under `/account/`, where the account layer checks the
//! session's CSRF token; all of them under its Origin / `Sec-Fetch-Site`
//! check.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use hitvault_accounts::passkey::{MAX_ANSWER_BYTES, PasskeyError, Started};
use hitvault_accounts::{AccountError, AddressKey, Passkeys};
use serde_json::{Value, json};

use super::{AccountState, FORM_COOKIE, SESSION_COOKIE, clear_cookie, now, now_ms, set_cookie};
use crate::access::Caller;
use crate::audit::{Kind, Recorder};
use crate::error::ApiError;
use crate::rules::{Face, Need, Routes};

/// The passkey routes, under the account layer like the account pages.
pub(crate) fn routes(state: AccountState) -> Routes {
    Routes::new(Face::Json)
        .post("/login/passkey/start", Need::Anyone, sign_in_start)
        .post("/login/passkey/finish", Need::Anyone, sign_in_finish)
        .post("/account/passkeys/start", Need::Session, register_start)
        .post("/account/passkeys/finish", Need::Session, register_finish)
        .with_state(state)
}

/// The relying party of `hostnames`, logged; `None` (logged why) when
/// passkeys cannot work there.
pub(crate) fn relying_party(hostnames: &[String]) -> Option<Arc<Passkeys>> {
    match hitvault_accounts::passkey::relying_party(hostnames) {
        Ok((rp_id, origins, outside)) => {
            let origins: Vec<&str> = origins.iter().map(|o| o.as_str()).collect();
            tracing::info!(rp_id = %rp_id, origins = ?origins, "passkeys: relying party");
            if !outside.is_empty() {
                tracing::warn!(
                    hostnames = ?outside,
                    "passkeys do not work on these hostnames: browsers bind a passkey to \
                     the first hostname, {rp_id}, and the names under it"
                );
            }
            Passkeys::new(hostnames).ok().map(Arc::new)
        }
        Err(e) => {
            tracing::warn!("passkeys are unavailable: {e}");
            None
        }
    }
}

fn passkeys(state: &AccountState) -> Result<Arc<Passkeys>, ApiError> {
    state.passkeys.clone().ok_or_else(|| {
        ApiError::invalid(
            "passkeys are unavailable: the first of the setting `hostnames` is not a DNS \
             name (a passkey needs one; the daemon's log says why)",
        )
    })
}

fn refusal(e: PasskeyError) -> ApiError {
    match e {
        PasskeyError::Refused(m) => ApiError::invalid(m),
        e @ PasskeyError::Expired => ApiError::invalid(e.to_string()),
        e @ PasskeyError::TooMany(secs) => {
            ApiError::too_many_attempts(e.to_string(), Duration::from_secs(secs))
        }
        e @ PasskeyError::Busy(secs) => {
            ApiError::unavailable(e.to_string(), Duration::from_secs(secs))
        }
        PasskeyError::Account(e) if e.unconfirmed().is_some() => {
            ApiError::unavailable(e.to_string(), super::control::CLUSTER_RETRY)
        }
        PasskeyError::Account(AccountError::Unavailable(m)) => {
            ApiError::unavailable(m, super::control::CLUSTER_RETRY)
        }
        PasskeyError::Account(AccountError::Conflict(m)) => ApiError::exists(m),
        PasskeyError::Account(AccountError::Invalid(m)) => ApiError::invalid(m),
        PasskeyError::Account(AccountError::NotFound(m)) => ApiError::not_found(m),
        PasskeyError::Account(e @ AccountError::Journal(_)) => {
            ApiError::internal("recording a passkey", e)
        }
    }
}

/// The JSON body: an object of at most [`MAX_ANSWER_BYTES`].
fn body(bytes: &Bytes) -> Result<Value, ApiError> {
    if bytes.len() > MAX_ANSWER_BYTES {
        return Err(ApiError::invalid(format!(
            "the body is larger than {MAX_ANSWER_BYTES} bytes"
        )));
    }
    if bytes.is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(ApiError::invalid("the body is not a JSON object")),
        Err(e) => Err(ApiError::invalid(format!("the body is not JSON: {e}"))),
    }
}

fn text<'a>(v: &'a Value, field: &str) -> Result<&'a str, ApiError> {
    v[field]
        .as_str()
        .ok_or_else(|| ApiError::bad_parameter(field, format!("`{field}` (a string) is missing")))
}

fn started(s: Started) -> Response {
    Json(json!({ "ceremony": s.ceremony, "options": s.options })).into_response()
}

fn agent(headers: &HeaderMap) -> String {
    super::pages::agent(headers)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("account work does not panic")
}

async fn sign_in_start(
    State(state): State<AccountState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    body(&bytes)?;
    let p = passkeys(&state)?;
    let accounts = state.accounts.clone();
    let addr = AddressKey::from(peer.ip());
    blocking(move || p.start_sign_in(&accounts, addr, now()))
        .await
        .map(started)
        .map_err(refusal)
}

async fn sign_in_finish(
    State(state): State<AccountState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    rec: Recorder,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let v = body(&bytes)?;
    let ceremony = text(&v, "ceremony")?.to_owned();
    let next = super::pages::next_path(v["next"].as_str());
    let p = passkeys(&state)?;
    let accounts = state.accounts.clone();
    let addr = AddressKey::from(peer.ip());
    let agent = agent(&headers);
    let credential = v["credential"].clone();
    // Whose passkey it claims to be, for the audit log of a failure.
    let claimed = credential["id"]
        .as_str()
        .and_then(|id| state.accounts.passkey_owner(id))
        .map(|(u, _)| u);
    let s = match blocking(move || {
        p.finish_sign_in(&accounts, &ceremony, &credential, addr, &agent, now_ms())
    })
    .await
    {
        Ok(s) => s,
        Err(e) => {
            // Only for a passkey some user holds: an answer naming no known
            // credential costs the sender nothing and is no one's sign-in,
            // so it would only grow the log.
            if matches!(e, PasskeyError::Refused(_) | PasskeyError::Expired) && claimed.is_some() {
                super::pages::audit_failed(&rec, claimed.as_ref(), None, "passkey").await;
            }
            return Err(refusal(e));
        }
    };
    super::pages::audit_sign_in(&state, &rec, &s).await;
    let mut r = Json(json!({ "redirect": next })).into_response();
    let age = state.accounts.policy().absolute_secs;
    let h = r.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &s.token, Some(age)),
    );
    h.append(header::SET_COOKIE, clear_cookie(FORM_COOKIE));
    Ok(r)
}

/// The signed-in user of the request.
fn user_of(caller: Option<axum::Extension<Caller>>) -> Result<hitvault_accounts::UserId, ApiError> {
    match caller {
        Some(axum::Extension(Caller::Session(s))) => Ok(s.user.id),
        _ => Err(ApiError::sign_in_required(
            "sign in first: a passkey is added to a signed-in account",
        )),
    }
}

async fn register_start(
    State(state): State<AccountState>,
    caller: Option<axum::Extension<Caller>>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    body(&bytes)?;
    let user = user_of(caller)?;
    let p = passkeys(&state)?;
    let accounts = state.accounts.clone();
    blocking(move || p.start_registration(&accounts, user, now()))
        .await
        .map(started)
        .map_err(refusal)
}

async fn register_finish(
    State(state): State<AccountState>,
    caller: Option<axum::Extension<Caller>>,
    rec: Recorder,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let v = body(&bytes)?;
    let user = user_of(caller)?;
    let ceremony = text(&v, "ceremony")?.to_owned();
    let name = v["name"].as_str().unwrap_or("").to_owned();
    let p = passkeys(&state)?;
    let accounts = state.accounts.clone();
    let credential = v["credential"].clone();
    let (id, accounts) = blocking(move || {
        p.finish_registration(&accounts, user, &ceremony, &credential, &name, now())
            .map(|id| (id, accounts))
    })
    .await
    .map_err(refusal)?;
    let name = accounts
        .user(user)
        .and_then(|u| u.passkeys.into_iter().find(|p| p.credential == id))
        .map(|p| p.name)
        .unwrap_or_default();
    rec.note(
        Kind::PasskeyAdded,
        None,
        json!({ "name": name, "credential": id }),
    )
    .await;
    Ok(Json(json!({
        "credential": id,
        "name": name,
        "redirect": "/account?done=passkey",
    }))
    .into_response())
}
