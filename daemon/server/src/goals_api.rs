//! Goals, funnels and event properties over HTTP, and their definitions.
//!
//! Numbers (the common parameters of `/api/v1/stats/overview`: `site`,
//! `from`, `to`, `tz`, `filter`, `limit`):
//!
//! - `GET /api/v1/stats/goals`: every goal of the site with visitors,
//!   conversions and conversion rate.
//! - `GET /api/v1/stats/funnel?funnel=ID`: a stored funnel's steps with
//!   visitors, sessions, conversion rate from the first step and drop-off;
//!   or an ad-hoc funnel with `step=page:/pattern` / `step=event:Name`,
//!   repeated 2 to 8 times in order.
//! - `GET /api/v1/stats/props[?event=Name][&key=K]`: the property keys of
//!   custom events, or the values of key `K`.
//!
//! Definitions (JSON bodies; answers 201, 204, or 400/404/409 with a reason):
//!
//! - `GET|POST /api/v1/sites/{site}/goals`, `DELETE /api/v1/sites/{site}/goals/{id}`;
//!   a goal is `{"kind": "event"|"page", "value": "...", "name": "..."}`
//!   (`name` defaults to the value).
//! - `GET|POST /api/v1/sites/{site}/funnels`, `DELETE /api/v1/sites/{site}/funnels/{id}`;
//!   a funnel is `{"name": "...", "steps": [{"kind": ..., "value": ...}, ...]}`.
//!
//! `GET /api/v1/openapi.json` serves the OpenAPI document of every route.
//!
//! Writes go to DuckDB's only writer through [`DefAdmin`]; reads use the
//! stats readers. Every route is behind the access layer ([`crate::access`]).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hitvault_store::QueryError;
use hitvault_store::goals::{DefError, Funnel, Goal, GoalKind, Step};
use hitvault_store::stats::Stats;
use serde_json::{Value, json};

use crate::error::{ApiError, RETRY_AFTER_UNAVAILABLE};
use crate::rules::{Face, Need, Routes, SiteIn};
use crate::stats_api::{StatsState, admit, bad, blocking, site_id, stats_error};
use hitvault_accounts::Right;

/// Writes definitions; the daemon runs them on DuckDB's one writer.
pub trait DefAdmin: Send + Sync + 'static {
    fn add_goal(&self, site_id: u16, step: Step, name: String) -> Result<Goal, DefError>;
    fn delete_goal(&self, site_id: u16, id: u32) -> Result<bool, DefError>;
    fn add_funnel(&self, site_id: u16, name: String, steps: Vec<Step>) -> Result<Funnel, DefError>;
    fn delete_funnel(&self, site_id: u16, id: u32) -> Result<bool, DefError>;
}

#[derive(Clone)]
struct GoalsState {
    stats: StatsState,
    admin: Arc<dyn DefAdmin>,
}

/// The routes above, on the stats readers and a definitions writer;
/// [`crate::app`] puts them behind the access layer.
pub(crate) fn routes(stats: StatsState, admin: Arc<dyn DefAdmin>) -> Routes {
    let read = Need::site(Right::View, SiteIn::Query);
    let view = Need::site(Right::View, SiteIn::Path);
    let edit = Need::site(Right::Edit, SiteIn::Path);
    Routes::new(Face::Json)
        .get("/api/v1/stats/goals", read, goal_stats)
        .get("/api/v1/stats/funnel", read, funnel_stats)
        .get("/api/v1/stats/props", read, props)
        .get("/api/v1/sites/{site}/goals", view, list_goals)
        .post("/api/v1/sites/{site}/goals", edit, add_goal)
        .delete("/api/v1/sites/{site}/goals/{id}", edit, delete_goal)
        .get("/api/v1/sites/{site}/funnels", view, list_funnels)
        .post("/api/v1/sites/{site}/funnels", edit, add_funnel)
        .delete("/api/v1/sites/{site}/funnels/{id}", edit, delete_funnel)
        .get("/api/v1/openapi.json", Need::Admitted, openapi)
        .with_state(GoalsState { stats, admin })
}

/// The OpenAPI 3.1 document of every route, embedded in the binary.
pub const OPENAPI: &str = include_str!("assets/openapi.json");

async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response()
}

fn step_json(s: &Step) -> Value {
    json!({ "kind": s.kind.name(), "value": s.value })
}

fn goal_json(g: &Goal) -> Value {
    json!({ "id": g.id, "name": g.display_name, "kind": g.step.kind.name(), "value": g.step.value })
}

fn funnel_json(f: &Funnel) -> Value {
    json!({ "id": f.id, "name": f.name, "steps": f.steps.iter().map(step_json).collect::<Vec<_>>() })
}

/// A definition the store refused, as the API answers it.
fn def_error(e: DefError) -> Response {
    match &e {
        DefError::Invalid(_) => ApiError::invalid(e.to_string()),
        DefError::Exists(_) => ApiError::exists(e.to_string()),
        DefError::Unavailable(_) => ApiError::unavailable(e.to_string(), RETRY_AFTER_UNAVAILABLE),
        DefError::Query(q) => ApiError::internal("a definition query", q),
    }
    .into_response()
}

async fn goal_stats(State(st): State<GoalsState>, RawQuery(query): RawQuery) -> Response {
    let p = match admit(query.as_deref(), &[]) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    blocking(move || {
        let r = st.stats.reader()?;
        let w = p.window(site_id(&r, &p.site)?);
        let goals = r
            .goals_of(w.site_id)
            .map_err(|e| ApiError::internal("a goals query", e))?;
        let rows = r.goal_stats(&w, &p.filters, &goals).map_err(stats_error)?;
        Ok(axum::Json(json!({
            "site": p.site,
            "from": p.from.to_string(),
            "to": p.to.to_string(),
            "goals": rows.iter().map(|g| {
                let mut v = goal_json(&g.goal);
                v["visitors"] = json!(g.visitors);
                v["conversions"] = json!(g.conversions);
                v["conversion_rate"] = json!(g.conversion_rate);
                v
            }).collect::<Vec<_>>(),
        }))
        .into_response())
    })
    .await
}

/// `kind:value` of an ad-hoc funnel step.
fn parse_step(v: &str) -> Result<Step, ApiError> {
    let (k, value) = v
        .split_once(':')
        .ok_or_else(|| bad("step", format!("{v:?} is not kind:value")))?;
    let kind = GoalKind::parse(k).ok_or_else(|| {
        bad(
            "step",
            format!("unknown step kind {k:?}; known: event, page"),
        )
    })?;
    Ok(Step {
        kind,
        value: value.to_owned(),
    })
}

async fn funnel_stats(State(st): State<GoalsState>, RawQuery(query): RawQuery) -> Response {
    let p = match admit(query.as_deref(), &["funnel", "step"]) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    blocking(move || {
        let r = st.stats.reader()?;
        let w = p.window(site_id(&r, &p.site)?);
        let adhoc: Vec<Step> = p
            .pairs
            .iter()
            .filter(|(k, _)| k == "step")
            .map(|(_, v)| parse_step(v))
            .collect::<Result<_, _>>()?;
        let (funnel, steps) = match (p.get("funnel"), adhoc.is_empty()) {
            (Some(id), true) => {
                let id: u32 = id
                    .parse()
                    .map_err(|_| bad("funnel", format!("{id:?} is not a funnel id")))?;
                let f = r
                    .funnels_of(w.site_id)
                    .map_err(|e| ApiError::internal("a goals query", e))?
                    .into_iter()
                    .find(|f| f.id == id)
                    .ok_or_else(|| bad("funnel", format!("the site has no funnel {id}")))?;
                let steps = f.steps.clone();
                (Some(f), steps)
            }
            (None, false) => {
                if !hitvault_store::goals::FUNNEL_STEPS.contains(&adhoc.len()) {
                    return Err(bad("step", "a funnel has 2 to 8 steps").into());
                }
                (None, adhoc)
            }
            _ => {
                return Err(
                    bad("funnel", "give either funnel=ID or 2 to 8 step=kind:value").into(),
                );
            }
        };
        let rows = r
            .funnel_stats(&w, &p.filters, &steps)
            .map_err(stats_error)?;
        Ok(axum::Json(json!({
            "site": p.site,
            "from": p.from.to_string(),
            "to": p.to.to_string(),
            "funnel": funnel.as_ref().map(funnel_json),
            "steps": rows.iter().map(|s| {
                let mut v = step_json(&s.step);
                v["visitors"] = json!(s.visitors);
                v["sessions"] = json!(s.sessions);
                v["conversion_rate"] = json!(s.conversion_rate);
                v["dropoff"] = json!(s.dropoff);
                v
            }).collect::<Vec<_>>(),
        }))
        .into_response())
    })
    .await
}

async fn props(State(st): State<GoalsState>, RawQuery(query): RawQuery) -> Response {
    let p = match admit(query.as_deref(), &["event", "key"]) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    blocking(move || {
        let r = st.stats.reader()?;
        let w = p.window(site_id(&r, &p.site)?);
        let rows = r
            .props(&w, &p.filters, p.get("event"), p.get("key"), p.limit)
            .map_err(stats_error)?;
        Ok(axum::Json(json!({
            "site": p.site,
            "event": p.get("event"),
            "key": p.get("key"),
            "rows": rows.iter().map(|r| json!({
                "value": r.value, "visitors": r.visitors, "events": r.events,
            })).collect::<Vec<_>>(),
        }))
        .into_response())
    })
    .await
}

/// Lists a site's goals or funnels as `{key: [...]}`.
async fn list_defs(
    st: GoalsState,
    site: String,
    key: &'static str,
    list: fn(&Stats, u16) -> Result<Vec<Value>, QueryError>,
) -> Response {
    blocking(move || {
        let r = st.stats.reader()?;
        let id = site_id(&r, &site)?;
        let items = list(&r, id).map_err(|e| ApiError::internal("a goals query", e))?;
        Ok(axum::Json(json!({ key: items })).into_response())
    })
    .await
}

async fn list_goals(State(st): State<GoalsState>, Path(site): Path<String>) -> Response {
    list_defs(st, site, "goals", |r, id| {
        Ok(r.goals_of(id)?.iter().map(goal_json).collect())
    })
    .await
}

async fn list_funnels(State(st): State<GoalsState>, Path(site): Path<String>) -> Response {
    list_defs(st, site, "funnels", |r, id| {
        Ok(r.funnels_of(id)?.iter().map(funnel_json).collect())
    })
    .await
}

/// The JSON object of a request body, or a 400 naming what is wrong.
fn body_object(body: &[u8]) -> Result<serde_json::Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(bad("body", "the body must be a JSON object").into()),
        Err(e) => Err(bad("body", format!("invalid JSON: {e}")).into()),
    }
}

fn text_field(m: &serde_json::Map<String, Value>, name: &str) -> Result<String, ApiError> {
    match m.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(bad(name, format!("{name} must be a string")).into()),
        None => Err(bad(name, format!("{name} is required")).into()),
    }
}

fn step_of(m: &serde_json::Map<String, Value>, at: &str) -> Result<Step, ApiError> {
    let k = text_field(m, "kind").map_err(|_| bad(at, "kind must be \"event\" or \"page\""))?;
    let kind = GoalKind::parse(&k)
        .ok_or_else(|| bad(at, format!("unknown kind {k:?}; known: event, page")))?;
    Ok(Step {
        kind,
        value: text_field(m, "value").map_err(|_| bad(at, "value must be a string"))?,
    })
}

/// Most bytes of a definition's body.
const MAX_DEF_BODY: usize = 16 * 1024;

async fn add_goal(State(st): State<GoalsState>, Path(site): Path<String>, body: Bytes) -> Response {
    blocking(move || {
        if body.len() > MAX_DEF_BODY {
            return Err(bad("body", format!("larger than {MAX_DEF_BODY} bytes")).into());
        }
        let m = body_object(&body)?;
        let step = step_of(&m, "goal")?;
        let name = match m.get("name") {
            None | Some(Value::Null) => step.value.clone(),
            Some(_) => text_field(&m, "name")?,
        };
        let id = site_id(&*st.stats.reader()?, &site)?;
        Ok(match st.admin.add_goal(id, step, name) {
            Ok(g) => (StatusCode::CREATED, axum::Json(goal_json(&g))).into_response(),
            Err(e) => def_error(e),
        })
    })
    .await
}

async fn add_funnel(
    State(st): State<GoalsState>,
    Path(site): Path<String>,
    body: Bytes,
) -> Response {
    blocking(move || {
        if body.len() > MAX_DEF_BODY {
            return Err(bad("body", format!("larger than {MAX_DEF_BODY} bytes")).into());
        }
        let m = body_object(&body)?;
        let name = text_field(&m, "name")?;
        let Some(Value::Array(items)) = m.get("steps") else {
            return Err(bad("steps", "steps must be an array of {kind, value}").into());
        };
        let steps = items
            .iter()
            .enumerate()
            .map(|(i, s)| match s {
                Value::Object(o) => step_of(o, &format!("steps[{i}]")),
                _ => Err(bad(&format!("steps[{i}]"), "a step is an object {kind, value}").into()),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let id = site_id(&*st.stats.reader()?, &site)?;
        Ok(match st.admin.add_funnel(id, name, steps) {
            Ok(f) => (StatusCode::CREATED, axum::Json(funnel_json(&f))).into_response(),
            Err(e) => def_error(e),
        })
    })
    .await
}

/// Removes a goal or a funnel with `remove`; 204, or 404 naming `what`.
async fn delete_def(
    st: GoalsState,
    site: String,
    id: u32,
    what: &'static str,
    remove: fn(&dyn DefAdmin, u16, u32) -> Result<bool, DefError>,
) -> Response {
    blocking(move || {
        let sid = site_id(&*st.stats.reader()?, &site)?;
        Ok(match remove(&*st.admin, sid, id) {
            Ok(true) => StatusCode::NO_CONTENT.into_response(),
            Ok(false) => {
                ApiError::not_found(format!("the site has no {what} {id}")).into_response()
            }
            Err(e) => def_error(e),
        })
    })
    .await
}

async fn delete_goal(
    State(st): State<GoalsState>,
    Path((site, id)): Path<(String, u32)>,
) -> Response {
    delete_def(st, site, id, "goal", |a, s, i| a.delete_goal(s, i)).await
}

async fn delete_funnel(
    State(st): State<GoalsState>,
    Path((site, id)): Path<(String, u32)>,
) -> Response {
    delete_def(st, site, id, "funnel", |a, s, i| a.delete_funnel(s, i)).await
}
