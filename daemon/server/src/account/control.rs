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

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use hitvault_accounts::{AccountError, Accounts, User};
use serde::{Deserialize, Serialize};

use super::now;
use crate::audit::{Kind, Recorder};
use crate::error::ApiError;
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

/// The user routes of the control socket.
pub(crate) fn routes(accounts: Arc<Accounts>) -> Router {
    Router::new()
        .route("/users", get(list).post(add))
        .route("/users/{name}", delete(remove))
        .route("/users/{name}/reset", post(reset))
        .with_state(accounts)
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
    }
}

fn refused(e: AccountError) -> Response {
    match e {
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

fn named(a: &Accounts, name: &str) -> Result<User, AccountError> {
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
            super::pages::audit_reset(&rec, &u, sessions).await;
            axum::Json(i).into_response()
        }
        Err(r) => r,
    }
}
