//! The access rule of every route, stated where the route is added.
//!
//! A module adds its routes to a [`Routes`], whose methods take the
//! route's [`Need`] next to its handler: a route without a rule does not
//! compile. [`Routes`] keeps the table of every route and its need, which
//! [`crate::app`] serves at `GET /api/v1/routes` (the authorization matrix
//! of the test suite reads it, so a new route cannot escape the matrix),
//! and a last layer over the whole router refuses any request whose route
//! is not in the table (default deny).
//!
//! The need of a route is checked after its kind's gate admitted the
//! caller ([`crate::access`]) and before its handler runs. Rights on sites
//! are [`hitvault_accounts::rights`]: a site is named by the `{site}` path
//! parameter or every `site` query parameter; a rule that needs a right on
//! a site refuses a request that names none.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::handler::Handler;
use axum::http::{Method, StatusCode};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use hitvault_accounts::{Right, may};
use serde::Serialize;

use crate::caller::Caller;
pub use crate::caller::principal;
use crate::error::ApiError;

/// Where a route finds the site it acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteIn {
    /// The `{site}` path parameter.
    Path,
    /// Every `site` query parameter; at least one.
    Query,
    /// Every `site` query parameter; none means every site.
    QueryOrAll,
}

/// What a caller needs to reach a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "need", rename_all = "snake_case")]
pub enum Need {
    /// Anyone: ingest, the tracker, health, sign-in.
    Anyone,
    /// A signed-in user's session (their own account).
    Session,
    /// Anyone the kind's gate admitted: the operator, a session, a token.
    Admitted,
    /// A right on the site the request names.
    Site { right: Right, site: SiteIn },
    /// An instance admin (or the operator).
    Admin,
}

impl Need {
    pub const fn site(right: Right, site: SiteIn) -> Need {
        Need::Site { right, site }
    }
}

/// How a refusal is answered: a page or JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    Page,
    Json,
}

/// One row of the table: a route and what it needs.
#[derive(Debug, Clone, Serialize)]
pub struct Rule {
    pub method: &'static str,
    pub path: String,
    #[serde(flatten)]
    pub need: Need,
}

/// A router whose every route carries its [`Need`].
pub struct Routes<S = ()> {
    router: Router<S>,
    table: Vec<Rule>,
    face: Face,
}

#[derive(Clone, Copy)]
struct Guard {
    need: Need,
    face: Face,
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    /// Routes whose refusals are pages (`Face::Page`) or JSON.
    pub fn new(face: Face) -> Self {
        Routes {
            router: Router::new(),
            table: Vec::new(),
            face,
        }
    }

    pub fn get<H: Handler<T, S>, T: 'static>(self, path: &'static str, need: Need, h: H) -> Self {
        self.add(Method::GET, path, need, axum::routing::get(h))
    }

    pub fn post<H: Handler<T, S>, T: 'static>(self, path: &'static str, need: Need, h: H) -> Self {
        self.add(Method::POST, path, need, axum::routing::post(h))
    }

    pub fn delete<H: Handler<T, S>, T: 'static>(
        self,
        path: &'static str,
        need: Need,
        h: H,
    ) -> Self {
        self.add(Method::DELETE, path, need, axum::routing::delete(h))
    }

    pub fn options<H: Handler<T, S>, T: 'static>(
        self,
        path: &'static str,
        need: Need,
        h: H,
    ) -> Self {
        self.add(Method::OPTIONS, path, need, axum::routing::options(h))
    }

    fn add(mut self, method: Method, path: &'static str, need: Need, mr: MethodRouter<S>) -> Self {
        let mr = match need {
            Need::Anyone => mr,
            need => mr.route_layer(from_fn_with_state(
                Guard {
                    need,
                    face: self.face,
                },
                guard,
            )),
        };
        self.router = self.router.route(path, mr);
        self.table.push(Rule {
            method: method_name(&method),
            path: path.to_owned(),
            need,
        });
        self
    }

    /// Gives the routes their state.
    pub fn with_state<S2>(self, state: S) -> Routes<S2> {
        Routes {
            router: self.router.with_state(state),
            table: self.table,
            face: self.face,
        }
    }

    /// `other`'s routes under `prefix` (their rules keep their needs).
    pub fn nest(mut self, prefix: &'static str, other: Routes<S>) -> Self {
        self.router = self.router.nest(prefix, other.router);
        self.table.extend(other.table.into_iter().map(|r| Rule {
            path: format!("{prefix}{}", r.path),
            ..r
        }));
        self
    }

    pub fn merge(mut self, other: Routes<S>) -> Self {
        self.router = self.router.merge(other.router);
        self.table.extend(other.table);
        self
    }

    /// Applies `f` to the router (a kind's layers), keeping the table.
    pub fn map(mut self, f: impl FnOnce(Router<S>) -> Router<S>) -> Self {
        self.router = f(self.router);
        self
    }

    pub fn into_parts(self) -> (Router<S>, Vec<Rule>) {
        (self.router, self.table)
    }
}

fn method_name(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Why the rule refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No caller: sign in (or send a token).
    SignIn,
    /// The caller lacks the right (the reason).
    Forbidden(String),
    /// The request does not name its site.
    NoSite,
}

/// The decision of a rule for `caller`; `path_site` and `query_sites`
/// are what the request names.
pub fn check(
    need: Need,
    caller: Option<&Caller>,
    path_site: Option<&str>,
    query_sites: &[String],
) -> Result<(), Refusal> {
    let caller = match (need, caller) {
        (Need::Anyone, _) => return Ok(()),
        (_, None) => return Err(Refusal::SignIn),
        (_, Some(c)) => c,
    };
    match need {
        Need::Anyone => Ok(()),
        Need::Admitted => Ok(()),
        Need::Session => match caller {
            Caller::Session(_) => Ok(()),
            Caller::Local => Err(Refusal::Forbidden(
                "this page is a signed-in user's own: sign in at /login".into(),
            )),
            Caller::Token(_) => Err(Refusal::Forbidden(
                "API tokens do not reach account pages".into(),
            )),
        },
        Need::Admin => {
            if may(principal(caller), Right::Admin, None) {
                Ok(())
            } else {
                Err(Refusal::Forbidden(
                    "this needs an instance admin (for a token: an admin's token with the \
                     admin scope and no sites)"
                        .into(),
                ))
            }
        }
        Need::Site { right, site } => {
            let names: Vec<&str> = match site {
                SiteIn::Path => path_site.into_iter().collect(),
                SiteIn::Query | SiteIn::QueryOrAll => {
                    query_sites.iter().map(String::as_str).collect()
                }
            };
            if names.is_empty() && site != SiteIn::QueryOrAll {
                return Err(Refusal::NoSite);
            }
            let p = principal(caller);
            if names.is_empty() {
                return if may(p, right, None) {
                    Ok(())
                } else {
                    Err(Refusal::Forbidden(format!(
                        "this needs the {} right on every site (an admin); name a site \
                         with site=",
                        right.as_str()
                    )))
                };
            }
            match names.iter().find(|s| !may(p, right, Some(s))) {
                None => Ok(()),
                Some(s) => Err(Refusal::Forbidden(format!(
                    "this needs the {} right on {s:?} ({}){}",
                    right.as_str(),
                    match right.role() {
                        Some(r) => format!("the {} role or more, or an admin", r.as_str()),
                        None => "an admin".into(),
                    },
                    match caller {
                        Caller::Token(_) => format!(
                            "; a token also needs the {} scope and the site among its sites",
                            right.scope().as_str()
                        ),
                        _ => String::new(),
                    }
                ))),
            }
        }
    }
}

/// Every value of the `site` query parameter.
pub fn query_sites(query: Option<&str>) -> Vec<String> {
    crate::urlencoded::form_urlencoded(query.unwrap_or(""))
        .into_iter()
        .filter(|(k, _)| k == "site")
        .map(|(_, v)| v)
        .collect()
}

async fn guard(
    State(g): State<Guard>,
    params: Result<RawPathParams, axum::extract::rejection::RawPathParamsRejection>,
    req: Request,
    next: Next,
) -> Response {
    let path_site = params.ok().and_then(|p| {
        p.iter()
            .find(|(k, _)| *k == "site")
            .map(|(_, v)| v.to_owned())
    });
    let verdict = check(
        g.need,
        req.extensions().get::<Caller>(),
        path_site.as_deref(),
        &query_sites(req.uri().query()),
    );
    match verdict {
        Ok(()) => next.run(req).await,
        Err(r) => refuse(g.face, r),
    }
}

/// A page's refusal, for the layer of its kind to render (a page with the
/// site's look, or the sign-in redirect): an empty answer carrying this.
#[derive(Debug, Clone)]
pub struct PageRefusal {
    /// No caller: to the sign-in page.
    pub sign_in: bool,
    /// The reason, for a 403 page.
    pub message: String,
}

fn refuse(face: Face, r: Refusal) -> Response {
    let page = |sign_in: bool, message: String| {
        let mut r = StatusCode::FORBIDDEN.into_response();
        r.extensions_mut().insert(PageRefusal { sign_in, message });
        r
    };
    match (face, r) {
        (Face::Json, Refusal::SignIn) => ApiError::sign_in_required(
            "sign in first (a session cookie), or send an API token as `Authorization: Bearer`",
        )
        .into_response(),
        (Face::Json, Refusal::Forbidden(why)) => ApiError::forbidden(why).into_response(),
        (_, Refusal::NoSite) => {
            ApiError::bad_parameter("site", "the site's hostname is required").into_response()
        }
        (Face::Page, Refusal::SignIn) => page(true, String::new()),
        (Face::Page, Refusal::Forbidden(why)) => page(false, why),
    }
}

/// The last layer of the whole router: a matched route must be in the
/// table (default deny). A method the table lacks on a path it has is a
/// `405` with `Allow`, as the router itself would answer.
pub(crate) async fn known(
    State(known): State<Arc<Known>>,
    path: Option<MatchedPath>,
    req: Request,
    next: Next,
) -> Response {
    if let Some(p) = path {
        let method = match *req.method() {
            Method::HEAD => "GET",
            ref m => method_name(m),
        };
        match known.get(p.as_str()) {
            Some(methods) if methods.contains(&method) => {}
            Some(methods) => {
                let mut r = StatusCode::METHOD_NOT_ALLOWED.into_response();
                if let Ok(v) = methods.join(", ").parse() {
                    r.headers_mut().insert(axum::http::header::ALLOW, v);
                }
                return r;
            }
            None => {
                tracing::error!(
                    method = %req.method(),
                    path = p.as_str(),
                    "a route without an access rule was refused"
                );
                return ApiError::forbidden("this route has no access rule, so it is refused")
                    .into_response();
            }
        }
    }
    next.run(req).await
}

/// The methods of each path of the table.
pub(crate) type Known = HashMap<String, Vec<&'static str>>;

/// The map [`known`] checks against.
pub(crate) fn known_set(table: &[Rule]) -> Arc<Known> {
    let mut m: Known = HashMap::new();
    for r in table {
        m.entry(r.path.clone()).or_default().push(r.method);
    }
    Arc::new(m)
}
