//! What the account pages and the token forms share: reading a form,
//! running account work off the runtime, and the pages that answer a
//! refused change.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use hitvault_accounts::{AccountError, User};
use serde_json::json;

use super::Caller;
use crate::audit::{Kind, Recorder};
use crate::dashboard::html::{esc, message_page, page};
use crate::dashboard::{html, see_other};
use crate::urlencoded::form_urlencoded;

pub(super) fn form(body: &Bytes) -> Vec<(String, String)> {
    form_urlencoded(std::str::from_utf8(body).unwrap_or(""))
}

pub(super) fn account_error(e: AccountError) -> Response {
    let (status, title) = match &e {
        e if e.unconfirmed().is_some() => (StatusCode::SERVICE_UNAVAILABLE, "Not changed"),
        AccountError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "Not changed"),
        AccountError::Invalid(_) => (StatusCode::BAD_REQUEST, "Not changed"),
        AccountError::Conflict(_) => (StatusCode::CONFLICT, "Not changed"),
        AccountError::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
        AccountError::Journal(j) => {
            tracing::error!(error = %j, "writing the accounts journal failed");
            return html(
                StatusCode::INTERNAL_SERVER_ERROR,
                message_page("Not changed", crate::error::INTERNAL_MESSAGE),
            );
        }
    };
    html(status, account_message(title, &e.to_string()))
}

pub(super) fn account_message(title: &str, text: &str) -> String {
    page(
        title,
        None,
        "page-message",
        &format!(
            "<section class=\"message\"><h1>{}</h1><p>{}</p><p><a href=\"/account\">Back to your account</a></p></section>",
            esc(title),
            esc(text)
        ),
    )
}

/// Runs blocking account work (a password hash, an fsync) off the runtime.
pub(super) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("account work does not panic")
}

/// The signed-in session of a request to an account page, or the answer
/// to send instead (a redirect to sign in).
pub(super) fn session(
    caller: Option<axum::Extension<Caller>>,
) -> Result<std::sync::Arc<hitvault_accounts::SessionView>, Box<Response>> {
    match caller {
        Some(axum::Extension(Caller::Session(s))) => Ok(s),
        _ => Err(Box::new(see_other("/login?next=/account"))),
    }
}

pub(super) fn fmt_time(secs: u64) -> String {
    jiff::Timestamp::from_second(secs as i64)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// Records an admin's (or the CLI's) reset of `u`'s factors: the reset,
/// and the sessions it ended.
pub(crate) async fn audit_reset(rec: &Recorder, u: &User, sessions: usize) {
    rec.note(
        Kind::FactorsReset,
        None,
        json!({ "name": u.name, "id": u.id }),
    )
    .await;
    rec.note(
        Kind::SessionEnded,
        None,
        json!({ "how": "reset", "name": u.name, "sessions": sessions }),
    )
    .await;
}
