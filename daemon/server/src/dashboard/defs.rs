//! Managing goals and funnels from the settings page: plain HTML forms that
//! post to dashboard routes (no script needed), the same definitions and
//! limits as `/api/v1/sites/{site}/goals` and `/funnels`.
//!
//! | route | form fields |
//! | --- | --- |
//! | `POST /sites/{site}/settings/goals` | `kind` (`event`, `page`), `value`, `name` (optional) |
//! | `POST /sites/{site}/settings/goals/{id}/delete` | none |
//! | `POST /sites/{site}/settings/funnels` | `name`, then `kind` and `value` per step, in order (rows with an empty value are skipped) |
//! | `POST /sites/{site}/settings/funnels/{id}/delete` | none |
//!
//! A success answers `303 See Other` back to the settings page (which then
//! says what was done); a refusal (a limit, a taken name, a bad pattern)
//! renders the settings page again with the reason next to the form and
//! the values as typed, with the status the API gives (400, 409, 413).
//!
//! Cross-site requests are refused before any of this, in the gate (see
//! [`cross_site`]): a page elsewhere cannot make the browser post here.

use std::fmt::Write;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hitvault_store::SiteRow;
use hitvault_store::goals::{
    DefError, FUNNEL_STEPS, Funnel, Goal, GoalKind, MAX_FUNNELS, MAX_GOALS, MAX_VALUE_LEN, Step,
};

use super::explore::step_text;
use super::html::{esc, int};
use super::pages::site_base;
use super::{DashboardState, failed, find_site, html, pages, query};
use crate::audit::{Kind, Recorder};
use crate::stats_api::form_urlencoded;
use serde_json::json;

/// Most bytes of a form body (as the API's definition bodies).
pub const MAX_FORM_BODY: usize = 16 * 1024;

/// Why a request that changes something is refused as cross-site, if it
/// is: `Sec-Fetch-Site` other than `same-origin` or `none` (the browser
/// says another site, even another port of this host, sent it), or an
/// `Origin` whose host and port are not the `Host` the request was sent
/// to. Requests without either header (curl, scripts) are not from a
/// browser page and pass. Reading requests (`GET`, `HEAD`) always pass.
pub(crate) fn cross_site(method: &Method, headers: &HeaderMap) -> Option<String> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    if let Some(v) = headers.get("sec-fetch-site") {
        let site = String::from_utf8_lossy(v.as_bytes());
        if site != "same-origin" && site != "none" {
            return Some(format!(
                "the browser marked this {method} as sent from another site \
                 (Sec-Fetch-Site: {site}); changes are accepted only from this dashboard's pages"
            ));
        }
    }
    if let Some(v) = headers.get(header::ORIGIN) {
        let origin = String::from_utf8_lossy(v.as_bytes());
        let host = headers
            .get(header::HOST)
            .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
            .unwrap_or_default();
        let authority = origin.split_once("://").map(|(_, a)| a);
        if host.is_empty() || authority != Some(host.as_str()) {
            return Some(format!(
                "this {method} comes from a page of {origin:?}, not of this dashboard \
                 ({host}); changes are accepted only from this dashboard's pages"
            ));
        }
    }
    None
}

/// What the goal form held when it was refused.
#[derive(Default)]
pub(crate) struct GoalForm {
    pub kind: String,
    pub value: String,
    pub name: String,
    pub error: Option<String>,
}

/// What the funnel form held when it was refused.
#[derive(Default)]
pub(crate) struct FunnelForm {
    pub name: String,
    pub steps: Vec<(String, String)>,
    pub error: Option<String>,
}

fn kind_select(id: &str, name: &str, chosen: &str) -> String {
    let mut s = format!("<select name=\"{name}\" id=\"{id}\">");
    for (k, label) in [("event", "Custom event"), ("page", "Page (path pattern)")] {
        let sel = if k == chosen { " selected" } else { "" };
        let _ = write!(s, "<option value=\"{k}\"{sel}>{label}</option>");
    }
    s.push_str("</select>");
    s
}

fn alert(error: &Option<String>, id: &str) -> String {
    match error {
        Some(e) => format!(
            "<p class=\"alert\" role=\"alert\" id=\"{id}\"><strong>Not saved:</strong> {}</p>",
            esc(e)
        ),
        None => String::new(),
    }
}

fn delete_button(action: &str, what: &str, name: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{}\" class=\"inline\">{}<button type=\"submit\" \
         class=\"danger\" aria-label=\"Delete {what} {}\">Delete</button></form>",
        esc(action),
        crate::account::csrf_field(),
        esc(name)
    )
}

/// The goals and funnels sections of the settings page.
pub(crate) fn sections(
    site: &SiteRow,
    goals: &[Goal],
    funnels: &[Funnel],
    gf: &GoalForm,
    ff: &FunnelForm,
) -> String {
    let base = site_base(&site.hostname);
    let mut s = format!(
        "<section class=\"card\" aria-labelledby=\"goals-h\" id=\"goals\"><h2 id=\"goals-h\">Goals</h2>\
         <p>A goal is reached by a custom event of a name, or by a pageview whose path matches a \
         pattern (<code>*</code> matches any run of characters: <code>/blog/*</code>). \
         Their numbers are on the <a href=\"{b}/goals\">Goals</a> page. At most {MAX_GOALS} goals.</p>",
        b = esc(&base)
    );
    if goals.is_empty() {
        s.push_str("<p class=\"empty\">No goals yet.</p>");
    } else {
        s.push_str(
            "<table class=\"defs\"><caption class=\"sr-only\">Goals</caption><thead><tr>\
             <th scope=\"col\">Name</th><th scope=\"col\">Matches</th><th scope=\"col\">\
             <span class=\"sr-only\">Actions</span></th></tr></thead><tbody>",
        );
        for g in goals {
            let _ = write!(
                s,
                "<tr data-goal=\"{}\"><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
                g.id,
                esc(&g.display_name),
                step_text(&g.step),
                delete_button(
                    &format!("{base}/settings/goals/{}/delete", g.id),
                    "goal",
                    &g.display_name
                ),
            );
        }
        s.push_str("</tbody></table>");
    }
    let kind = if gf.kind.is_empty() {
        "event"
    } else {
        &gf.kind
    };
    let _ = write!(
        s,
        "<h3>Add a goal</h3>{alert}<form method=\"post\" action=\"{b}/settings/goals\" class=\"controls def-form\" \
         aria-label=\"Add a goal\"{described}>{csrf}\
         <label for=\"goal-kind\">Reached by{kinds}</label>\
         <label for=\"goal-value\">Event name or path pattern<input type=\"text\" name=\"value\" \
         id=\"goal-value\" required maxlength=\"{MAX_VALUE_LEN}\" value=\"{value}\" \
         placeholder=\"Signup or /pricing\" autocomplete=\"off\" spellcheck=\"false\"></label>\
         <label for=\"goal-name\">Name (optional)<input type=\"text\" name=\"name\" id=\"goal-name\" \
         maxlength=\"{MAX_VALUE_LEN}\" value=\"{name}\" autocomplete=\"off\"></label>\
         <button type=\"submit\">Add goal</button></form></section>",
        alert = alert(&gf.error, "goal-error"),
        csrf = crate::account::csrf_field(),
        b = esc(&base),
        described = if gf.error.is_some() {
            " aria-describedby=\"goal-error\""
        } else {
            ""
        },
        kinds = kind_select("goal-kind", "kind", kind),
        value = esc(&gf.value),
        name = esc(&gf.name),
    );

    let _ = write!(
        s,
        "<section class=\"card\" aria-labelledby=\"funnels-h\" id=\"funnels\"><h2 id=\"funnels-h\">Funnels</h2>\
         <p>A funnel is {lo} to {hi} steps, each like a goal, that a visit passes in order. \
         Their numbers are on the <a href=\"{b}/funnels\">Funnels</a> page. At most {MAX_FUNNELS} funnels.</p>",
        lo = FUNNEL_STEPS.start(),
        hi = FUNNEL_STEPS.end(),
        b = esc(&base)
    );
    if funnels.is_empty() {
        s.push_str("<p class=\"empty\">No funnels yet.</p>");
    } else {
        s.push_str(
            "<table class=\"defs\"><caption class=\"sr-only\">Funnels</caption><thead><tr>\
             <th scope=\"col\">Name</th><th scope=\"col\">Steps</th><th scope=\"col\">\
             <span class=\"sr-only\">Actions</span></th></tr></thead><tbody>",
        );
        for f in funnels {
            let steps: Vec<String> = f.steps.iter().map(step_text).collect();
            let _ = write!(
                s,
                "<tr data-funnel=\"{}\"><td><a href=\"{}/funnels?funnel={}\">{}</a></td>\
                 <td><ol class=\"steps\"><li>{}</li></ol></td><td class=\"num\">{}</td></tr>",
                f.id,
                esc(&base),
                f.id,
                esc(&f.name),
                steps.join("</li><li>"),
                delete_button(
                    &format!("{base}/settings/funnels/{}/delete", f.id),
                    "funnel",
                    &f.name
                ),
            );
        }
        s.push_str("</tbody></table>");
    }
    let _ = write!(
        s,
        "<h3>Add a funnel</h3>{alert}<form method=\"post\" action=\"{b}/settings/funnels\" class=\"def-form funnel-form\" \
         aria-label=\"Add a funnel\"{described}>{csrf}<div class=\"controls\">\
         <label for=\"funnel-name\">Name<input type=\"text\" name=\"name\" id=\"funnel-name\" required \
         maxlength=\"{MAX_VALUE_LEN}\" value=\"{name}\" autocomplete=\"off\"></label></div>\
         <fieldset><legend>Steps, in order ({lo} to {hi}; leave the ones you do not need empty)</legend><ol class=\"step-rows\">",
        alert = alert(&ff.error, "funnel-error"),
        csrf = crate::account::csrf_field(),
        b = esc(&base),
        described = if ff.error.is_some() {
            " aria-describedby=\"funnel-error\""
        } else {
            ""
        },
        name = esc(&ff.name),
        lo = FUNNEL_STEPS.start(),
        hi = FUNNEL_STEPS.end(),
    );
    for i in 0..*FUNNEL_STEPS.end() {
        let (kind, value) = ff
            .steps
            .get(i)
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .unwrap_or((if i == 0 { "page" } else { "" }, ""));
        let required = if i < *FUNNEL_STEPS.start() {
            " required"
        } else {
            ""
        };
        let _ = write!(
            s,
            "<li class=\"controls\"><label for=\"step-kind-{n}\">Step {n} kind{kinds}</label>\
             <label for=\"step-value-{n}\">Step {n} event or path<input type=\"text\" name=\"value\" \
             id=\"step-value-{n}\" maxlength=\"{MAX_VALUE_LEN}\" value=\"{value}\"{required} \
             autocomplete=\"off\" spellcheck=\"false\"></label></li>",
            n = i + 1,
            kinds = kind_select(&format!("step-kind-{}", i + 1), "kind", kind),
            value = esc(value),
        );
    }
    s.push_str("</ol></fieldset><button type=\"submit\">Add funnel</button></form></section>");
    s
}

/// What a `done=` parameter of the settings page reports.
fn notice(query: Option<&str>) -> Option<&'static str> {
    let done = form_urlencoded(query.unwrap_or(""))
        .into_iter()
        .find(|(k, _)| k == "done")?
        .1;
    Some(match done.as_str() {
        "goal_added" => "Goal added.",
        "goal_deleted" => "Goal deleted.",
        "funnel_added" => "Funnel added.",
        "funnel_deleted" => "Funnel deleted.",
        _ => return None,
    })
}

/// Renders the settings page, with the forms as given.
async fn render(
    state: &DashboardState,
    site: &SiteRow,
    headers: &HeaderMap,
    status: StatusCode,
    done: Option<&str>,
    gf: GoalForm,
    ff: FunnelForm,
) -> Response {
    let id = site.id;
    let defs = query(state, move |s| Ok((s.goals_of(id)?, s.funnels_of(id)?))).await;
    let (goals, funnels) = match defs {
        Ok(d) => d,
        Err(r) => return r,
    };
    let mut manage = String::new();
    if let Some(n) = done {
        let _ = write!(manage, "<p class=\"notice\" role=\"status\">{}</p>", esc(n));
    }
    manage.push_str(&sections(site, &goals, &funnels, &gf, &ff));
    html(
        status,
        pages::settings(site, &super::origin(headers), &manage),
    )
}

/// `GET /sites/{site}/settings`.
pub(crate) async fn settings(
    State(state): State<DashboardState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let site = match find_site(&state, &name).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let done = notice(q.as_deref());
    render(
        &state,
        &site,
        &headers,
        StatusCode::OK,
        done,
        GoalForm::default(),
        FunnelForm::default(),
    )
    .await
}

fn see_other(site: &SiteRow, done: &str, anchor: &str) -> Response {
    let to = format!(
        "{}/settings?done={done}#{anchor}",
        site_base(&site.hostname)
    );
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(&to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// The status a refused definition gets, as the API gives it, and whether
/// it is the caller's to fix (shown on the form) or the daemon's.
fn refusal(e: &DefError) -> Result<StatusCode, StatusCode> {
    match e {
        DefError::Invalid(_) => Ok(StatusCode::BAD_REQUEST),
        DefError::Exists(_) => Ok(StatusCode::CONFLICT),
        DefError::Unavailable(_) => Ok(StatusCode::SERVICE_UNAVAILABLE),
        DefError::Query(_) => Err(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

/// Runs a definitions write on a blocking thread (the writer answers
/// through a channel).
async fn write<T: Send + 'static>(
    state: &DashboardState,
    f: impl FnOnce(&dyn crate::DefAdmin) -> Result<T, DefError> + Send + 'static,
) -> Result<T, DefError> {
    let defs = state.defs.clone();
    tokio::task::spawn_blocking(move || f(&*defs))
        .await
        .unwrap_or(Err(DefError::Unavailable("the write task failed")))
}

/// The form's fields, or the refusal of an overlong body.
fn fields(body: &Bytes) -> Result<Vec<(String, String)>, String> {
    if body.len() > MAX_FORM_BODY {
        return Err(format!(
            "the form is larger than {} bytes",
            int(MAX_FORM_BODY as u64)
        ));
    }
    Ok(form_urlencoded(&String::from_utf8_lossy(body)))
}

/// `POST /sites/{site}/settings/goals`.
pub(crate) async fn add_goal(
    State(state): State<DashboardState>,
    rec: Recorder,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let site = match find_site(&state, &name).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut form = GoalForm::default();
    let pairs = match fields(&body) {
        Ok(p) => p,
        Err(e) => {
            form.error = Some(e);
            let ff = FunnelForm::default();
            return render(
                &state,
                &site,
                &headers,
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                form,
                ff,
            )
            .await;
        }
    };
    for (k, v) in pairs {
        match k.as_str() {
            "kind" => form.kind = v,
            "value" => form.value = v,
            "name" => form.name = v,
            _ => {}
        }
    }
    let Some(kind) = GoalKind::parse(&form.kind) else {
        form.error = Some(format!(
            "{:?} is not a kind of goal; pick a custom event or a page",
            form.kind
        ));
        return render(
            &state,
            &site,
            &headers,
            StatusCode::BAD_REQUEST,
            None,
            form,
            FunnelForm::default(),
        )
        .await;
    };
    let step = Step {
        kind,
        value: form.value.clone(),
    };
    let display = if form.name.trim().is_empty() {
        form.value.clone()
    } else {
        form.name.clone()
    };
    let id = site.id;
    match write(&state, move |d| d.add_goal(id, step, display)).await {
        Ok(g) => {
            rec.note(
                Kind::GoalAdded,
                Some(&site.hostname),
                json!({ "id": g.id, "name": g.display_name, "kind": g.step.kind.name(),
                        "value": g.step.value, "via": "dashboard" }),
            )
            .await;
            see_other(&site, "goal_added", "goals")
        }
        Err(e) => match refusal(&e) {
            Ok(status) => {
                form.error = Some(e.to_string());
                render(
                    &state,
                    &site,
                    &headers,
                    status,
                    None,
                    form,
                    FunnelForm::default(),
                )
                .await
            }
            Err(_) => failed("saving the goal", &e.to_string()),
        },
    }
}

/// `POST /sites/{site}/settings/funnels`.
pub(crate) async fn add_funnel(
    State(state): State<DashboardState>,
    rec: Recorder,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let site = match find_site(&state, &name).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut form = FunnelForm::default();
    let pairs = match fields(&body) {
        Ok(p) => p,
        Err(e) => {
            form.error = Some(e);
            return render(
                &state,
                &site,
                &headers,
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                GoalForm::default(),
                form,
            )
            .await;
        }
    };
    // Kinds and values pair up in order.
    let mut kinds = Vec::new();
    let mut values = Vec::new();
    for (k, v) in pairs {
        match k.as_str() {
            "name" => form.name = v,
            "kind" => kinds.push(v),
            "value" => values.push(v),
            _ => {}
        }
    }
    form.steps = kinds
        .into_iter()
        .zip(values)
        .filter(|(_, v)| !v.trim().is_empty())
        .collect();
    let mut steps = Vec::new();
    for (i, (k, v)) in form.steps.iter().enumerate() {
        match GoalKind::parse(k) {
            Some(kind) => steps.push(Step {
                kind,
                value: v.clone(),
            }),
            None => {
                form.error = Some(format!(
                    "step {}: {k:?} is not a kind of step; pick a custom event or a page",
                    i + 1
                ));
                break;
            }
        }
    }
    if form.error.is_none() {
        let (id, name) = (site.id, form.name.clone());
        match write(&state, move |d| d.add_funnel(id, name, steps)).await {
            Ok(f) => {
                rec.note(
                    Kind::FunnelAdded,
                    Some(&site.hostname),
                    json!({ "id": f.id, "name": f.name, "steps": f.steps.len(), "via": "dashboard" }),
                )
                .await;
                return see_other(&site, "funnel_added", "funnels");
            }
            Err(e) => match refusal(&e) {
                Ok(status) => {
                    form.error = Some(e.to_string());
                    return render(
                        &state,
                        &site,
                        &headers,
                        status,
                        None,
                        GoalForm::default(),
                        form,
                    )
                    .await;
                }
                Err(_) => return failed("saving the funnel", &e.to_string()),
            },
        }
    }
    render(
        &state,
        &site,
        &headers,
        StatusCode::BAD_REQUEST,
        None,
        GoalForm::default(),
        form,
    )
    .await
}

fn gone(what: &str, id: u32) -> Response {
    html(
        StatusCode::NOT_FOUND,
        super::html::message_page(
            &format!("No such {what}"),
            &format!("The site has no {what} {id}; it may have been deleted already."),
        ),
    )
}

/// `POST /sites/{site}/settings/goals/{id}/delete`.
pub(crate) async fn delete_goal(
    State(state): State<DashboardState>,
    rec: Recorder,
    Path((name, id)): Path<(String, u32)>,
) -> Response {
    let site = match find_site(&state, &name).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let sid = site.id;
    match write(&state, move |d| d.delete_goal(sid, id)).await {
        Ok(true) => {
            rec.note(
                Kind::GoalRemoved,
                Some(&site.hostname),
                json!({ "id": id, "via": "dashboard" }),
            )
            .await;
            see_other(&site, "goal_deleted", "goals")
        }
        Ok(false) => gone("goal", id),
        Err(e) => failed("deleting the goal", &e.to_string()),
    }
}

/// `POST /sites/{site}/settings/funnels/{id}/delete`.
pub(crate) async fn delete_funnel(
    State(state): State<DashboardState>,
    rec: Recorder,
    Path((name, id)): Path<(String, u32)>,
) -> Response {
    let site = match find_site(&state, &name).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let sid = site.id;
    match write(&state, move |d| d.delete_funnel(sid, id)).await {
        Ok(true) => {
            rec.note(
                Kind::FunnelRemoved,
                Some(&site.hostname),
                json!({ "id": id, "via": "dashboard" }),
            )
            .await;
            see_other(&site, "funnel_deleted", "funnels")
        }
        Ok(false) => gone("funnel", id),
        Err(e) => failed("deleting the funnel", &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn reads_always_pass() {
        let h = headers(&[
            ("sec-fetch-site", "cross-site"),
            ("origin", "http://evil.test"),
        ]);
        assert!(cross_site(&Method::GET, &h).is_none());
    }

    #[test]
    fn same_origin_posts_pass() {
        let h = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "same-origin"),
        ]);
        assert!(cross_site(&Method::POST, &h).is_none());
        // No browser headers at all: not a browser page (curl, a script).
        assert!(cross_site(&Method::POST, &headers(&[("host", "127.0.0.1:8080")])).is_none());
    }

    #[test]
    fn cross_site_posts_are_refused_with_a_reason() {
        for (h, needle) in [
            (
                headers(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "cross-site")]),
                "cross-site",
            ),
            // Another port of the same host is the same site, not the same origin.
            (
                headers(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "same-site")]),
                "same-site",
            ),
            (
                headers(&[("host", "127.0.0.1:8080"), ("origin", "http://evil.test")]),
                "evil.test",
            ),
            (
                headers(&[
                    ("host", "127.0.0.1:8080"),
                    ("origin", "http://127.0.0.1:3000"),
                ]),
                "127.0.0.1:3000",
            ),
            (
                headers(&[("host", "127.0.0.1:8080"), ("origin", "null")]),
                "null",
            ),
        ] {
            let why = cross_site(&Method::POST, &h).expect("refused");
            assert!(why.contains(needle), "{why}");
        }
    }

    #[test]
    fn only_known_notices_are_shown() {
        assert_eq!(notice(Some("done=goal_added")), Some("Goal added."));
        assert_eq!(notice(Some("done=%3Cscript%3E")), None);
        assert_eq!(notice(None), None);
    }
}
