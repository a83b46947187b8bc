//! API tokens on the account page: a user makes tokens for themself,
//! sees their last use, and revokes them. A new token is shown once.
//!
//! | path | what |
//! | --- | --- |
//! | `POST /account/tokens` | make one: `name`, `scope` (repeated), `sites` (hostnames, comma-separated; empty: every site of the user), `days` (1 to 366), `never` (admins only) |
//! | `POST /account/tokens/{id}/revoke` | revoke one of one's own |

use std::fmt::Write;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use hitvault_accounts::grants::MAX_LIFETIME_SECS;
use hitvault_accounts::{AccountError, Scope, TokenSpec, User};

use super::common::{account_error, blocking, fmt_time, form, session};
use super::control::{token_detail, token_info};
use super::{AccountState, Caller, csrf_field, now};
use crate::audit::{Kind, Recorder};
use crate::dashboard::html::{esc, page};
use crate::dashboard::{html, see_other};

/// The tokens section of the account page.
pub(crate) fn section(state: &AccountState, u: &User) -> String {
    let csrf = csrf_field();
    let mut m = String::from(
        "<section class=\"card\" aria-labelledby=\"h-tokens\"><h2 id=\"h-tokens\">API tokens</h2>\
         <p>A token lets a script read the stats API, send hits in batches or take a Takeout, \
         as you and never more than you may, limited to its scopes and sites. Send it as \
         <code>Authorization: Bearer</code>.</p>",
    );
    let tokens = state.accounts.tokens(Some(u.id));
    if !tokens.is_empty() {
        m.push_str(
            "<table><thead><tr><th scope=\"col\">Name</th><th scope=\"col\">Scopes</th>\
             <th scope=\"col\">Sites</th><th scope=\"col\">Expires</th><th scope=\"col\">Last used</th>\
             <th scope=\"col\">Actions</th></tr></thead><tbody>",
        );
        for t in &tokens {
            let _ = write!(
                m,
                "<tr><td>{name}</td><td>{scopes}</td><td>{sites}</td><td>{exp}</td><td>{used}</td><td>\
                 <form method=\"post\" action=\"/account/tokens/{id}/revoke\" class=\"inline\">{csrf}\
                 <button type=\"submit\" class=\"danger\" aria-label=\"Revoke token {name}\">Revoke</button>\
                 </form></td></tr>",
                name = esc(&t.name),
                scopes = esc(&t
                    .scopes
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")),
                sites = if t.sites.is_empty() {
                    "all of yours".to_owned()
                } else {
                    esc(&t.sites.join(", "))
                },
                exp = t.expires.map(fmt_time).unwrap_or_else(|| "never".into()),
                used = t
                    .last_used
                    .map(fmt_time)
                    .unwrap_or_else(|| "not yet".into()),
                id = t.id,
            );
        }
        m.push_str("</tbody></table>");
    }
    let _ = write!(
        m,
        "<form method=\"post\" action=\"/account/tokens\" class=\"controls\" aria-label=\"Make a token\">{csrf}\
         <label for=\"tok-name\">Name<input type=\"text\" name=\"name\" id=\"tok-name\" maxlength=\"64\" required></label>\
         <fieldset><legend>Scopes</legend>{scopes}</fieldset>\
         <label for=\"tok-sites\">Sites (hostnames, comma-separated; empty: all of yours)\
         <input type=\"text\" name=\"sites\" id=\"tok-sites\" maxlength=\"2000\"></label>\
         <label for=\"tok-days\">Expires in (days)<input type=\"number\" name=\"days\" id=\"tok-days\" \
         min=\"1\" max=\"{max}\" value=\"90\" required></label>{never}\
         <button type=\"submit\">Make a token</button></form></section>",
        scopes = Scope::ALL
            .iter()
            .map(|s| format!(
                "<label><input type=\"checkbox\" name=\"scope\" value=\"{v}\"> {v}</label>",
                v = s.as_str()
            ))
            .collect::<String>(),
        max = MAX_LIFETIME_SECS / 86_400,
        never = if u.admin {
            "<label><input type=\"checkbox\" name=\"never\" value=\"1\"> never expires (admins only)</label>"
        } else {
            ""
        },
    );
    m
}

/// The token a form asks for, checked against what `u` may name.
fn spec(f: &[(String, String)], u: &User, now: u64) -> Result<TokenSpec, AccountError> {
    let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let scopes = f
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| {
            Scope::parse(v).ok_or_else(|| AccountError::Invalid(format!("no scope {v:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let sites: Vec<String> = get("sites")
        .unwrap_or("")
        .split([',', ' '])
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    if !u.admin
        && let Some(s) = sites.iter().find(|s| !u.roles.contains_key(*s))
    {
        return Err(AccountError::Invalid(format!(
            "you have no role on {s:?}; a token names sites you may reach"
        )));
    }
    let expires = if get("never") == Some("1") {
        None
    } else {
        let days: u64 = get("days")
            .and_then(|d| d.trim().parse().ok())
            .filter(|d| (1..=MAX_LIFETIME_SECS / 86_400).contains(d))
            .ok_or_else(|| {
                AccountError::Invalid(format!(
                    "expires in: 1 to {} days",
                    MAX_LIFETIME_SECS / 86_400
                ))
            })?;
        Some(now + days * 86_400)
    };
    Ok(TokenSpec {
        name: get("name").unwrap_or("").to_owned(),
        sites,
        scopes,
        expires,
    })
}

pub(crate) async fn create(
    State(state): State<AccountState>,
    caller: Option<axum::Extension<Caller>>,
    rec: Recorder,
    body: Bytes,
) -> Response {
    let s = match session(caller) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let f = form(&body);
    let accounts = state.accounts.clone();
    let user = s.user.clone();
    let made = blocking(move || {
        let now = now();
        let spec = spec(&f, &user, now)?;
        let name = spec.name.clone();
        accounts
            .create_token(user.id, spec, user.admin, now)
            .map(|t| (t, name))
    })
    .await;
    match made {
        Ok((t, name)) => {
            let info = state
                .accounts
                .tokens(Some(s.user.id))
                .into_iter()
                .find(|x| x.id == t.id)
                .map(|x| token_info(&state.accounts, &x));
            if let Some(info) = info {
                rec.note(Kind::TokenCreated, None, token_detail(&info))
                    .await;
            }
            let m = format!(
                "<section class=\"message\"><h1>Your new token</h1>\
                 <p>Token <strong>{}</strong> is below. Copy it now: it is shown only this once, \
                 and only its fingerprint is kept.</p>\
                 <p><code id=\"new-token\">{}</code></p>\
                 <p><a href=\"/account\">Back to your account</a></p></section>",
                esc(&name),
                esc(&t.secret)
            );
            html(StatusCode::OK, page("New token", None, "page-account", &m))
        }
        Err(e) => account_error(e),
    }
}

pub(crate) async fn revoke(
    State(state): State<AccountState>,
    caller: Option<axum::Extension<Caller>>,
    rec: Recorder,
    Path(id): Path<String>,
) -> Response {
    let s = match session(caller) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let Ok(id) = id.parse::<u64>() else {
        return account_error(AccountError::NotFound(format!("no token {id:?}")));
    };
    let (accounts, user) = (state.accounts.clone(), s.user.id);
    let a = state.accounts.clone();
    match blocking(move || accounts.revoke_token(id, Some(user))).await {
        Ok(t) => {
            rec.note(Kind::TokenRevoked, None, token_detail(&token_info(&a, &t)))
                .await;
            see_other("/account?done=token-revoked")
        }
        Err(e) => account_error(e),
    }
}
