//! The one refusal of every JSON route, and the error the daemon's adapters
//! answer with.
//!
//! [`ApiError`] is every JSON error body the HTTP edge sends, on the public
//! listener and on the control socket alike:
//! `{"error": CODE, "message": …}`, plus `"parameter"` naming the bad
//! parameter (`bad_parameter`) or `"field"` naming the field of a refused
//! hit (the ingest reasons, `null` when no field is to blame), and a
//! `Retry-After` header on every 503. [`Code`] is the closed list of codes,
//! each with its one status. The ingest reasons are public and documented;
//! they are [`Refusal`]'s codes, unchanged.
//!
//! A failure of ours (`internal`, 500) is logged here, with its cause, and
//! answered with a fixed message: no database or system error text reaches
//! a client.
//!
//! [`AdminError`] is what an adapter of the control and export traits
//! (`SiteAdmin`, `Maintenance`, `Exporter`) returns; it answers as an
//! [`ApiError`].

use std::fmt::Display;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use crate::metrics::Refusal;
use crate::wire::WireError;

/// What a refusal is, as its `error` code says it. Closed: a new kind of
/// refusal is a new variant here, with its status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// A hit refused by ingest, for a documented reason (`invalid_json`,
    /// `field_too_long`, …, `queue_full`); its body names the field.
    Hit(Refusal),
    /// 400 `bad_parameter`: a parameter (query, path or body field) the
    /// route cannot use; the body names it in `parameter`.
    BadParameter,
    /// 400 `invalid`: a request the route understood but refuses (a goal
    /// whose page pattern does not start with `/`, an unknown query key on
    /// the control socket).
    Invalid,
    /// 401 `sign_in_required`: the route needs a signed-in session (or
    /// the request's session has ended).
    SignInRequired,
    /// 403 `forbidden`: the access layer did not admit the request.
    Forbidden,
    /// 404 `not_found`: no such route or thing.
    NotFound,
    /// 409 `exists`: what the request would create exists already.
    Exists,
    /// 429 `too_many_attempts`: too many failed sign-ins; try again after
    /// `Retry-After`.
    TooManyAttempts,
    /// 503 `too_many_streams`: every realtime stream is taken.
    TooManyStreams,
    /// 503 `unavailable`: the store cannot answer now (the daemon is
    /// stopping, say); try again after `Retry-After`.
    Unavailable,
    /// 500 `internal`: a failure of ours; the daemon's log says why.
    Internal,
}

impl Code {
    /// Every code but the ingest reasons (which are [`Refusal::ALL`]).
    pub const OTHERS: [Code; 10] = [
        Code::BadParameter,
        Code::Invalid,
        Code::SignInRequired,
        Code::Forbidden,
        Code::NotFound,
        Code::Exists,
        Code::TooManyAttempts,
        Code::TooManyStreams,
        Code::Unavailable,
        Code::Internal,
    ];

    /// The `error` of the body.
    pub fn wire(self) -> &'static str {
        match self {
            Code::Hit(r) => r.code(),
            Code::BadParameter => "bad_parameter",
            Code::Invalid => "invalid",
            Code::SignInRequired => "sign_in_required",
            Code::Forbidden => "forbidden",
            Code::NotFound => "not_found",
            Code::Exists => "exists",
            Code::TooManyAttempts => "too_many_attempts",
            Code::TooManyStreams => "too_many_streams",
            Code::Unavailable => "unavailable",
            Code::Internal => "internal",
        }
    }

    /// Every `error` a body can hold, each once, sorted.
    pub fn wire_names() -> Vec<&'static str> {
        let mut names: Vec<&'static str> = Refusal::ALL
            .iter()
            .map(|r| Code::Hit(*r))
            .chain(Code::OTHERS)
            .map(Code::wire)
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// The status of every answer with this code.
    pub fn status(self) -> StatusCode {
        match self {
            Code::Hit(Refusal::BodyTooLarge) => StatusCode::PAYLOAD_TOO_LARGE,
            Code::Hit(Refusal::Unauthorized) => StatusCode::UNAUTHORIZED,
            Code::Hit(Refusal::Forbidden) => StatusCode::FORBIDDEN,
            Code::Hit(Refusal::QueueFull | Refusal::DiskFull | Refusal::Unavailable) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Code::Hit(_) | Code::BadParameter | Code::Invalid => StatusCode::BAD_REQUEST,
            Code::SignInRequired => StatusCode::UNAUTHORIZED,
            Code::Forbidden => StatusCode::FORBIDDEN,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::Exists => StatusCode::CONFLICT,
            Code::TooManyAttempts => StatusCode::TOO_MANY_REQUESTS,
            Code::TooManyStreams | Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The message of every `internal` answer.
pub const INTERNAL_MESSAGE: &str = "the request failed on our side; the daemon's log says why";

/// A 503 without a stated wait is retried after this long.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// A refusal of a JSON route (see the module doc).
#[derive(Debug)]
pub struct ApiError {
    pub code: Code,
    /// For a person: what was wrong and, where it helps, what would do.
    pub message: String,
    /// The parameter (`bad_parameter`) or hit field (ingest reasons) to blame.
    pub field: Option<String>,
    /// How long to wait before retrying (503 only).
    pub retry_after: Option<Duration>,
}

impl ApiError {
    fn new(code: Code, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    /// The status the answer carries.
    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// 400 `bad_parameter`, naming `parameter`.
    pub fn bad_parameter(parameter: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            field: Some(parameter.to_owned()),
            ..ApiError::new(Code::BadParameter, message)
        }
    }

    /// 400 `invalid`.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(Code::Invalid, message)
    }

    /// 401 `sign_in_required`.
    pub fn sign_in_required(message: impl Into<String>) -> ApiError {
        ApiError::new(Code::SignInRequired, message)
    }

    /// 429 `too_many_attempts`, to be retried after `retry_after`.
    pub fn too_many_attempts(message: impl Into<String>, retry_after: Duration) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(Code::TooManyAttempts, message)
        }
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(Code::Forbidden, message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(Code::NotFound, message)
    }

    /// 409 `exists`.
    pub fn exists(message: impl Into<String>) -> ApiError {
        ApiError::new(Code::Exists, message)
    }

    /// 503 `too_many_streams`, to be retried after `retry_after`.
    pub fn too_many_streams(message: impl Into<String>, retry_after: Duration) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(Code::TooManyStreams, message)
        }
    }

    /// 503 `unavailable`, to be retried after `retry_after`.
    pub fn unavailable(message: impl Into<String>, retry_after: Duration) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(Code::Unavailable, message)
        }
    }

    /// A hit refused by ingest for `reason`, to be retried after
    /// `retry_after` (the queue or the disk is full).
    pub fn hit_unavailable(
        reason: Refusal,
        message: impl Into<String>,
        retry_after: Duration,
    ) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(Code::Hit(reason), message)
        }
    }

    /// 500 `internal`: logs `cause` with `what` failed, and answers with
    /// [`INTERNAL_MESSAGE`] only.
    pub fn internal(what: &str, cause: impl Display) -> ApiError {
        tracing::error!(error = %cause, "{what} failed");
        ApiError::new(Code::Internal, INTERNAL_MESSAGE)
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("error".into(), self.code.wire().into());
        body.insert("message".into(), self.message.clone().into());
        match self.code {
            Code::BadParameter => {
                body.insert("parameter".into(), self.field.clone().into());
            }
            Code::Hit(_) => {
                body.insert("field".into(), self.field.clone().into());
            }
            _ => {}
        }
        Value::Object(body)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut r = (status, axum::Json(self.body())).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            let wait = self.retry_after.unwrap_or(DEFAULT_RETRY_AFTER);
            r.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(wait.as_secs().max(1)),
            );
        }
        r
    }
}

impl From<WireError> for ApiError {
    fn from(e: WireError) -> Self {
        ApiError {
            field: e.field,
            ..ApiError::new(Code::Hit(e.reason), e.message)
        }
    }
}

/// Why an operation of the control API or an export failed: the caller's
/// mistake, a clash with what exists, the store not answering now, or ours.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Answered 400 `invalid` with the message.
    #[error("{0}")]
    Invalid(String),
    /// Answered 409 `exists` with the message.
    #[error("{0}")]
    Conflict(String),
    /// Answered 503 `unavailable`: the store cannot answer now (its writer
    /// is stopping or busy past the wait); the client may retry.
    #[error("{0}")]
    Unavailable(String),
    /// Answered 500 `internal`; the message is logged, not sent.
    #[error("{0}")]
    Internal(String),
}

/// How long a client waits before retrying what the store could not take.
pub const RETRY_AFTER_UNAVAILABLE: Duration = Duration::from_secs(5);

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Invalid(m) => ApiError::invalid(m),
            AdminError::Conflict(m) => ApiError::exists(m),
            AdminError::Unavailable(m) => ApiError::unavailable(m, RETRY_AFTER_UNAVAILABLE),
            AdminError::Internal(m) => ApiError::internal("a control or export operation", m),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_one_wire_name_and_the_ingest_reasons_keep_theirs() {
        for r in Refusal::ALL {
            assert_eq!(Code::Hit(r).wire(), r.code());
        }
        let names = Code::wire_names();
        // "unavailable" and "forbidden" are both ingest reasons and the
        // API's 503 and 403: one name each.
        assert_eq!(names.len(), Refusal::ALL.len() + Code::OTHERS.len() - 2);
        for c in Code::OTHERS {
            assert!(names.contains(&c.wire()), "{c:?}");
        }
    }

    #[test]
    fn an_internal_error_sends_no_cause() {
        let e = ApiError::internal("a test", "IO Error: /secret/path: no space");
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = e.body().to_string();
        assert!(!body.contains("secret"), "{body}");
        assert_eq!(e.body()["error"], "internal");
    }

    #[test]
    fn a_503_always_says_when_to_retry() {
        for e in [
            ApiError::unavailable("stopping", Duration::from_secs(5)),
            ApiError::too_many_streams("busy", Duration::from_secs(10)),
            ApiError::from(WireError::new(Refusal::QueueFull, "full")),
        ] {
            let r = e.into_response();
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert!(r.headers().contains_key(header::RETRY_AFTER));
        }
    }

    #[test]
    fn the_field_is_named_as_each_api_names_it() {
        let b = ApiError::bad_parameter("from", "bad").body();
        assert_eq!(
            (b["error"].as_str(), b["parameter"].as_str()),
            (Some("bad_parameter"), Some("from"))
        );
        let b = ApiError::from(WireError::new(Refusal::InvalidJson, "bad")).body();
        assert_eq!(b["error"], "invalid_json");
        assert!(b.get("field").is_some_and(Value::is_null), "{b}");
        assert!(ApiError::exists("x").body().get("field").is_none());
    }

    #[test]
    fn the_openapi_document_lists_every_code() {
        let doc: Value = serde_json::from_str(crate::goals_api::OPENAPI).expect("JSON");
        let listed: Vec<&str> =
            doc["components"]["schemas"]["Error"]["properties"]["error"]["enum"]
                .as_array()
                .expect("an enum of codes")
                .iter()
                .filter_map(Value::as_str)
                .collect();
        assert_eq!(listed, Code::wire_names());
    }
}
