//! Users on the control socket: what `hitvault user list|add|remove|reset`
//! ask a running daemon. Whoever can open the socket owns the data dir,
//! so these routes need no session.
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /users` | every user ([`UserInfo`]) |
//! | `POST /users` `{"name", "admin"}` | 201: the user and a set-up link token ([`Invited`]) |
//! | `DELETE /users/{name}` | 204 (refused for the last admin) |
//! | `POST /users/{name}/reset` | every factor and session ended; a new set-up link token ([`Invited`]) |
//! | `POST /users/{name}/role` `{"site", "role"}` | the role on a site (`viewer`, `editor`, `owner`, or `none`); the user ([`UserInfo`]) |
//! | `POST /users/{name}/admin` `{"admin"}` | the instance role; the user |
//! | `GET /tokens[?user=NAME]` | API tokens ([`TokenInfo`], never their secret) |
//! | `POST /tokens` ([`NewToken`]) | 201: the token and its secret, shown once ([`CreatedToken`]) |
//! | `DELETE /tokens/{id}` | the revoked token |
//!
//! The command line's offline path calls the same functions on the
//! journal ([`set_role`], [`create_token`]), so both check alike.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hitvault_accounts::{AccountError, Accounts, Scope, SiteRole, Token, TokenSpec, User};
use serde::{Deserialize, Serialize};

use super::now;
use crate::SiteAdmin;
use crate::audit::{Kind, Recorder};
use crate::error::ApiError;
use crate::rules::{Face, Need, Routes};
use serde_json::json;

/// A user as the control API lists them (no secret in it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub id: u64,
    pub name: String,
    pub admin: bool,
    pub passkeys: usize,
    pub password: bool,
    pub totp: bool,
    pub recovery_codes_left: usize,
    pub sessions: usize,
    /// Roles on sites: hostname to `viewer`, `editor` or `owner`.
    #[serde(default)]
    pub roles: std::collections::BTreeMap<String, String>,
}

/// An API token as the control API lists it (no secret in it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: u64,
    pub user: String,
    pub name: String,
    pub scopes: Vec<String>,
    /// Empty: every site its user may reach.
    pub sites: Vec<String>,
    /// Unix seconds; `None`: never.
    pub expires: Option<u64>,
    pub created: u64,
    /// Unix seconds, to [`hitvault_accounts::TOKEN_USE_SECS`].
    pub last_used: Option<u64>,
}

/// What `POST /tokens` makes.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// Whose token it is.
    pub user: String,
    pub name: String,
    /// `stats:read`, `ingest`, `export`, `admin`.
    pub scopes: Vec<String>,
    #[serde(default)]
    pub sites: Vec<String>,
    /// Unix seconds; `None` (`null`): never (the operator is an admin).
    pub expires: Option<u64>,
}

/// A token just made; `secret` is shown once.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CreatedToken {
    pub token: TokenInfo,
    pub secret: String,
}

/// What `POST /users/{name}/role` sets.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleChange {
    pub site: String,
    /// `viewer`, `editor`, `owner` or `none`.
    pub role: String,
}

/// A user and the token of their one-time set-up link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invited {
    pub user: UserInfo,
    pub token: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    #[serde(default)]
    admin: bool,
}

/// The user and token routes of the control socket.
pub(crate) fn routes(accounts: Arc<Accounts>, sites: Arc<dyn SiteAdmin>) -> Routes {
    let a = Need::Admin;
    Routes::new(Face::Json)
        .get("/users", a, list)
        .post("/users", a, add)
        .delete("/users/{name}", a, remove)
        .post("/users/{name}/reset", a, reset)
        .post("/users/{name}/admin", a, admin)
        .delete("/tokens/{id}", a, revoke)
        .with_state(accounts.clone())
        .merge(
            Routes::new(Face::Json)
                .post("/users/{name}/role", a, role)
                .get("/tokens", a, tokens)
                .post("/tokens", a, new_token)
                .with_state((accounts, sites)),
        )
}

type WithSites = (Arc<Accounts>, Arc<dyn SiteAdmin>);

/// The hostnames of every site.
fn hostnames(sites: &dyn SiteAdmin) -> Result<Vec<String>, AccountError> {
    sites
        .list()
        .map(|l| l.into_iter().map(|s| s.hostname).collect())
        .map_err(|e| AccountError::Invalid(format!("the sites could not be listed: {e}")))
}

fn json_body<T: serde::de::DeserializeOwned>(body: &[u8], shape: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("body must be {shape}: {e}")))
}

async fn role(
    State((a, sites)): State<WithSites>,
    rec: Recorder,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let change: RoleChange = match json_body(&body, "{\"site\":..,\"role\":..}") {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let (site, role) = (change.site.clone(), change.role.clone());
    match run(move || set_role(&a, &hostnames(sites.as_ref())?, &name, &change)).await {
        Ok(u) => {
            audit_role(&rec, &u.name, &site, &role).await;
            axum::Json(u).into_response()
        }
        Err(r) => r,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminChange {
    admin: bool,
}

async fn admin(
    State(a): State<Arc<Accounts>>,
    rec: Recorder,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let change: AdminChange = match json_body(&body, "{\"admin\":bool}") {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    match run(move || {
        let u = named(&a, &name)?;
        a.set_admin(u.id, change.admin)?;
        Ok(info(&a, &a.user(u.id).expect("still there")))
    })
    .await
    {
        Ok(u) => {
            rec.note(
                Kind::RoleSet,
                None,
                json!({ "user": u.name, "instance_role": if u.admin { "admin" } else { "user" } }),
            )
            .await;
            axum::Json(u).into_response()
        }
        Err(r) => r,
    }
}

async fn tokens(
    State((a, _)): State<WithSites>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Response {
    let pairs = crate::stats_api::form_urlencoded(q.as_deref().unwrap_or(""));
    let user = pairs
        .iter()
        .find(|(k, _)| k == "user")
        .map(|(_, v)| v.clone());
    match run(move || {
        let id = match &user {
            Some(name) => Some(named(&a, name)?.id),
            None => None,
        };
        Ok(a.tokens(id)
            .iter()
            .map(|t| token_info(&a, t))
            .collect::<Vec<_>>())
    })
    .await
    {
        Ok(list) => axum::Json(list).into_response(),
        Err(r) => r,
    }
}

async fn new_token(
    State((a, sites)): State<WithSites>,
    rec: Recorder,
    body: axum::body::Bytes,
) -> Response {
    let new: NewToken = match json_body(
        &body,
        "{\"user\":..,\"name\":..,\"scopes\":[..],\"sites\":[..],\"expires\":unix seconds or null}",
    ) {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    match run(move || create_token(&a, &hostnames(sites.as_ref())?, &new, now())).await {
        Ok(c) => {
            rec.note(Kind::TokenCreated, None, token_detail(&c.token))
                .await;
            (StatusCode::CREATED, axum::Json(c)).into_response()
        }
        Err(r) => r,
    }
}

async fn revoke(State(a): State<Arc<Accounts>>, rec: Recorder, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return ApiError::invalid(format!("{id:?} is not a token id")).into_response();
    };
    match run(move || {
        let t = a.revoke_token(id, None)?;
        Ok(token_info(&a, &t))
    })
    .await
    {
        Ok(t) => {
            rec.note(Kind::TokenRevoked, None, token_detail(&t)).await;
            axum::Json(t).into_response()
        }
        Err(r) => r,
    }
}

/// The control API's view of `u`.
pub fn info(accounts: &Accounts, u: &User) -> UserInfo {
    UserInfo {
        id: u.id,
        name: u.name.clone(),
        admin: u.admin,
        passkeys: u.passkeys.len(),
        password: u.password.is_some(),
        totp: u.totp.is_some(),
        recovery_codes_left: u.recovery.len(),
        sessions: accounts.sessions_of(u.id).len(),
        roles: u
            .roles
            .iter()
            .map(|(s, r)| (s.clone(), r.as_str().to_owned()))
            .collect(),
    }
}

/// The control API's view of token `t`.
pub fn token_info(accounts: &Accounts, t: &Token) -> TokenInfo {
    TokenInfo {
        id: t.id,
        user: accounts
            .user(t.user)
            .map(|u| u.name)
            .unwrap_or_else(|| format!("#{}", t.user)),
        name: t.name.clone(),
        scopes: t.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        sites: t.sites.clone(),
        expires: t.expires,
        created: t.created,
        last_used: t.last_used,
    }
}

fn known_site(sites: &[String], site: &str) -> Result<(), AccountError> {
    if sites.iter().any(|s| s == site) {
        Ok(())
    } else {
        Err(AccountError::NotFound(format!(
            "no site named {site:?} (roles and tokens name a site by its hostname, not an alias)"
        )))
    }
}

/// What the audit log keeps of a token (never its secret).
pub fn token_detail(t: &TokenInfo) -> serde_json::Value {
    json!({
        "token": t.id, "user": t.user, "name": t.name, "scopes": t.scopes,
        "sites": t.sites, "expires": t.expires,
    })
}

/// The entry of a role given (`role_set`) or taken (`role_removed`).
pub fn role_entry(user: &str, role: &str) -> (Kind, serde_json::Value) {
    if role == "none" {
        (Kind::RoleRemoved, json!({ "user": user }))
    } else {
        (Kind::RoleSet, json!({ "user": user, "role": role }))
    }
}

async fn audit_role(rec: &Recorder, user: &str, site: &str, role: &str) {
    let (kind, detail) = role_entry(user, role);
    rec.note(kind, Some(site), detail).await;
}

/// Sets `name`'s role on a site of `sites` (the hostnames that exist).
pub fn set_role(
    a: &Accounts,
    sites: &[String],
    name: &str,
    change: &RoleChange,
) -> Result<UserInfo, AccountError> {
    let u = named(a, name)?;
    known_site(sites, &change.site)?;
    let role = match change.role.as_str() {
        "none" => None,
        r => Some(SiteRole::parse(r).ok_or_else(|| {
            AccountError::Invalid(format!("role {r:?} is none of viewer, editor, owner, none"))
        })?),
    };
    a.set_role(u.id, &change.site, role)?;
    Ok(info(a, &a.user(u.id).expect("still there")))
}

/// Makes the token `new` asks for, by the operator (an admin: it may
/// never expire).
pub fn create_token(
    a: &Accounts,
    sites: &[String],
    new: &NewToken,
    now: u64,
) -> Result<CreatedToken, AccountError> {
    let u = named(a, &new.user)?;
    let scopes = new
        .scopes
        .iter()
        .map(|s| {
            Scope::parse(s).ok_or_else(|| {
                AccountError::Invalid(format!(
                    "scope {s:?} is none of stats:read, ingest, export, admin"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    for s in &new.sites {
        known_site(sites, s)?;
    }
    let made = a.create_token(
        u.id,
        TokenSpec {
            name: new.name.clone(),
            sites: new.sites.clone(),
            scopes,
            expires: new.expires,
        },
        true,
        now,
    )?;
    let t = a
        .tokens(Some(u.id))
        .into_iter()
        .find(|t| t.id == made.id)
        .expect("just made");
    Ok(CreatedToken {
        token: token_info(a, &t),
        secret: made.secret,
    })
}

/// When a cluster node may try an accounts change again.
pub(crate) const CLUSTER_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

fn refused(e: AccountError) -> Response {
    if let Some(m) = e.unconfirmed() {
        return ApiError::unavailable(m, CLUSTER_RETRY).into_response();
    }
    match e {
        AccountError::Unavailable(m) => ApiError::unavailable(m, CLUSTER_RETRY),
        AccountError::Invalid(m) => ApiError::invalid(m),
        AccountError::Conflict(m) => ApiError::exists(m),
        AccountError::NotFound(m) => ApiError::not_found(m),
        AccountError::Journal(j) => ApiError::internal("writing the accounts journal", j),
    }
    .into_response()
}

async fn run<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AccountError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(refused(e)),
        Err(e) => Err(ApiError::internal("a control task", e).into_response()),
    }
}

async fn list(State(a): State<Arc<Accounts>>) -> Response {
    let users: Vec<UserInfo> = a.users().iter().map(|u| info(&a, u)).collect();
    axum::Json(users).into_response()
}

pub fn named(a: &Accounts, name: &str) -> Result<User, AccountError> {
    a.user_named(name)
        .ok_or_else(|| AccountError::NotFound(format!("no user named {name:?}")))
}

async fn add(State(a): State<Arc<Accounts>>, rec: Recorder, body: axum::body::Bytes) -> Response {
    let new: NewUser = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => {
            return ApiError::invalid(format!("body must be {{\"name\":..,\"admin\":bool}}: {e}"))
                .into_response();
        }
    };
    match run(move || {
        let id = a.add_user(&new.name, new.admin, now())?;
        let token = a.invite(Some(id), new.admin, now())?;
        let u = a.user(id).expect("just added");
        Ok(Invited {
            user: info(&a, &u),
            token,
        })
    })
    .await
    {
        Ok(i) => {
            rec.note(
                Kind::UserAdded,
                None,
                json!({ "name": i.user.name, "admin": i.user.admin }),
            )
            .await;
            (StatusCode::CREATED, axum::Json(i)).into_response()
        }
        Err(r) => r,
    }
}

async fn remove(
    State(a): State<Arc<Accounts>>,
    rec: Recorder,
    Path(name): Path<String>,
) -> Response {
    match run(move || {
        let u = named(&a, &name)?;
        a.remove_user(u.id)?;
        Ok(u)
    })
    .await
    {
        Ok(u) => {
            rec.note(
                Kind::UserRemoved,
                None,
                json!({ "name": u.name, "id": u.id }),
            )
            .await;
            StatusCode::NO_CONTENT.into_response()
        }
        Err(r) => r,
    }
}

async fn reset(
    State(a): State<Arc<Accounts>>,
    rec: Recorder,
    Path(name): Path<String>,
) -> Response {
    match run(move || {
        let u = named(&a, &name)?;
        let sessions = a.sessions_of(u.id).len();
        let token = a.reset_factors(u.id, now())?;
        let u = a.user(u.id).expect("still there");
        Ok((
            Invited {
                user: info(&a, &u),
                token,
            },
            u,
            sessions,
        ))
    })
    .await
    {
        Ok((i, u, sessions)) => {
            super::common::audit_reset(&rec, &u, sessions).await;
            axum::Json(i).into_response()
        }
        Err(r) => r,
    }
}
