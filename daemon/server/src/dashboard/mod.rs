//! The dashboard: server-rendered HTML pages with SVG charts, served by the
//! daemon itself, every asset embedded in the binary.
//!
//! Routes (all behind [`gate`], which [`crate::app`] applies):
//!
//! | path | page |
//! | --- | --- |
//! | `/`, `/sites` | every site with its last 30 days |
//! | `/sites/{site}` | overview: KPIs with comparison, chart, every breakdown panel |
//! | `/sites/{site}/goals` | every goal with visitors, conversions, conversion rate |
//! | `/sites/{site}/funnels[?funnel=ID]` | a funnel's steps with visitors, share of step 1, drop-off |
//! | `/sites/{site}/events[?event=E[&key=K]]` | custom events, their property keys, a key's values |
//! | `/sites/{site}/realtime` | the last 30 minutes, updated over `/api/v1/stats/realtime` |
//! | `/sites/{site}/settings` | the tracker snippet; goals and funnels to add and delete |
//! | `POST /sites/{site}/settings/…` | the settings forms (see [`defs`]) |
//! | `/sites/{site}/members`, `/sites/{site}/shares` and their forms | a site's members and share links, for its owners and the admins (see [`members`]) |
//! | `/share/{secret}` | what a share link opens, under the account pages' layer, not [`gate`] (see [`share`]) |
//! | `/sites/{site}/export.csv?panel=…` | CSV of a panel (`page`, `source`, …), `series`, `kpis`, `goals`, `funnel`, `props`, `realtime_pages`, `realtime_sources` |
//! | `/assets/{name}` | the embedded stylesheet, script and icon |
//!
//! The URL holds a view's whole state (see [`view`]); the goals, funnels and
//! events pages read the same view as the overview. The pages work without
//! JavaScript; `assets/dashboard.js` adds the range form's behaviour, chart
//! tooltips, live numbers and copying.
//!
//! Access: [`gate`] is the one check in front of every dashboard route. It
//! admits what [`admit`] admits (see [`crate::access`]): the machine's own
//! loopback clients, and signed-in sessions; a request addressed to a
//! foreign name is refused (403, saying why), and anyone else is sent to
//! the sign-in page (a `GET`) or refused with a 401 page. A session that
//! must enrol a second factor is sent to its account page. A request that
//! changes something (a `POST`) sent from another site's page is refused
//! with a 403 saying why ([`defs::cross_site`]), and one from a session
//! must carry the session's CSRF token ([`crate::account`]). Every answer
//! carries a Content-Security-Policy without `'unsafe-inline'`: no page has
//! an inline script, a `<style>` element or a `style` attribute.
//!
//! A new site page adds a route here, a renderer (in [`pages`] or
//! [`explore`]) and an entry in [`html::SITE_NAV`].

mod assets;
mod chart;
pub(crate) mod csv;
mod defs;
mod explore;
pub(crate) mod html;
pub(crate) mod members;
mod pages;
pub(crate) mod share;
mod view;

use std::net::SocketAddr;
use std::sync::MutexGuard;

use axum::extract::{ConnectInfo, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hitvault_store::SiteRow;
use hitvault_store::goals::{Funnel, FunnelRow};
use hitvault_store::imported::ImportedInfo;
use hitvault_store::stats::{Dim, Overview, PANELS, Stats, StatsError, Window};
use jiff::Timestamp;
use std::sync::Arc;

use crate::DefAdmin;
use crate::access::{Caller, Denied, admit, request_host};
use crate::account::AccountState;
use crate::realtime::{RealtimeState, TOP_ROWS};
use crate::rules::{Face, Need, Routes, SiteIn};
use crate::stats_api::{BadParam, StatsState};
pub(crate) use defs::cross_site;
use hitvault_accounts::Right;
use view::View;

/// Rows of each panel on the overview.
pub const PANEL_ROWS: usize = 10;
/// Rows of a panel's CSV download.
pub const EXPORT_ROWS: usize = 1000;

/// The policy of every dashboard answer: same-origin scripts, styles,
/// images and connections only; no inline code; no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// What the dashboard reads from.
#[derive(Clone)]
pub struct DashboardState {
    pub stats: StatsState,
    pub realtime: RealtimeState,
    /// Writes goal and funnel definitions (the settings forms).
    pub defs: Arc<dyn DefAdmin>,
}

/// The dashboard's pages; [`crate::app`] puts them behind [`gate`] (the
/// realtime stream they read is a JSON API route).
pub(crate) fn routes(state: DashboardState) -> Routes<()> {
    let view = Need::site(Right::View, SiteIn::Path);
    let edit = Need::site(Right::Edit, SiteIn::Path);
    Routes::new(Face::Page)
        .get("/", Need::Admitted, sites)
        .get("/sites", Need::Admitted, sites)
        .get("/sites/{site}", view, overview)
        .get("/sites/{site}/goals", view, goals)
        .get("/sites/{site}/funnels", view, funnels)
        .get("/sites/{site}/events", view, events)
        .get("/sites/{site}/realtime", view, realtime)
        .get("/sites/{site}/export.csv", view, export)
        .get("/sites/{site}/settings", edit, defs::settings)
        .post("/sites/{site}/settings/goals", edit, defs::add_goal)
        .post(
            "/sites/{site}/settings/goals/{id}/delete",
            edit,
            defs::delete_goal,
        )
        .post("/sites/{site}/settings/funnels", edit, defs::add_funnel)
        .post(
            "/sites/{site}/settings/funnels/{id}/delete",
            edit,
            defs::delete_funnel,
        )
        .with_state(state)
}

/// The embedded stylesheet, script and icon: served without a session (the
/// sign-in page uses them), under the account pages' layer.
pub(crate) fn asset_routes() -> Routes<()> {
    Routes::new(Face::Page).get("/assets/{name}", Need::Anyone, asset)
}

/// The one access check of the dashboard (see the module doc), and the
/// security headers of every answer.
pub(crate) async fn gate(
    State(state): State<AccountState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let verdict = admit(&peer, request_host(&req), &state.hostnames, || {
        state.session_of(req.headers())
    });
    let mut r = match verdict {
        Err(d @ Denied::ForeignHost(_)) => html(StatusCode::FORBIDDEN, denied_page(&d)),
        Err(Denied::NotLoopback | Denied::BadToken) => sign_in_first(&req),
        Ok(caller) => match defs::cross_site(req.method(), req.headers()) {
            Some(why) => html(
                StatusCode::FORBIDDEN,
                html::message_page("Cross-site request refused", &format!("Refused: {why}.")),
            ),
            None => admitted(caller, req, next).await,
        },
    };
    security_headers(&mut r);
    r
}

/// Runs an admitted request: a session that must enrol goes to its
/// account page, and its changes must carry its CSRF token.
async fn admitted(caller: Caller, mut req: Request, next: Next) -> Response {
    if let Caller::Session(s) = &caller {
        if s.must_enrol {
            return see_other("/account");
        }
        if !matches!(
            *req.method(),
            axum::http::Method::GET | axum::http::Method::HEAD
        ) {
            req = match crate::account::check_csrf(req, &s.csrf).await {
                Ok(req) => req,
                Err(why) => {
                    return html(
                        StatusCode::FORBIDDEN,
                        html::message_page("Form refused", &format!("Refused: {why}.")),
                    );
                }
            };
        }
    }
    req.extensions_mut().insert(caller.clone());
    crate::account::with_caller(Some(caller), run_page(req, next)).await
}

/// Runs a page's route and renders a refusal of its rule
/// ([`crate::rules::PageRefusal`]): the sign-in redirect, or a 403 page.
pub(crate) async fn run_page(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let here = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let r = next.run(req).await;
    match r.extensions().get::<crate::rules::PageRefusal>() {
        None => r,
        Some(p) if p.sign_in => sign_in_first_at(&method, &here),
        Some(p) => html(
            StatusCode::FORBIDDEN,
            html::message_page("Not allowed", &format!("Refused: {}.", p.message)),
        ),
    }
}

/// The answer to a request that needs a session and has none: the
/// sign-in page for a page view, a 401 page for anything else.
pub(crate) fn sign_in_first(req: &Request) -> Response {
    sign_in_first_at(
        req.method(),
        req.uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/"),
    )
}

/// [`sign_in_first`] for a request by its method and path (and query).
fn sign_in_first_at(method: &axum::http::Method, here: &str) -> Response {
    if method == axum::http::Method::GET {
        let next: String = here
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        return see_other(&format!("/login?next={next}"));
    }
    html(
        StatusCode::UNAUTHORIZED,
        html::message_page("Sign in first", &Denied::NotLoopback.message()),
    )
}

pub(crate) fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// The security headers of every page: the Content-Security-Policy, no
/// sniffing, no framing, no referrer to other sites, no caching unless
/// the handler chose otherwise.
pub(crate) fn security_headers(r: &mut Response) {
    let h = r.headers_mut();
    for (name, value) in [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
        ("x-frame-options", "DENY"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// The page of a request addressed to a foreign name.
fn denied_page(d: &Denied) -> String {
    html::message_page(
        "Not addressed to this appliance",
        &format!("Refused: {}", d.message()),
    )
}

pub(crate) fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

fn bad_request(e: BadParam) -> Response {
    html(
        StatusCode::BAD_REQUEST,
        html::message_page(
            "Bad request",
            &format!("Parameter {:?}: {}", e.parameter, e.message),
        ),
    )
}

fn failed(what: &str, e: &str) -> Response {
    tracing::error!(error = %e, "dashboard: {what} failed");
    html(
        StatusCode::INTERNAL_SERVER_ERROR,
        html::message_page(
            "Something went wrong",
            &format!("{what} failed; the daemon's log says why."),
        ),
    )
}

fn no_site(name: &str) -> Response {
    html(
        StatusCode::NOT_FOUND,
        html::message_page("No such site", &format!("There is no site named {name:?}.")),
    )
}

/// The site named in the path (hostname or alias), or the answer to give.
async fn find_site(state: &DashboardState, name: &str) -> Result<SiteRow, Response> {
    let lookup = name.to_owned();
    match state.realtime.read(move |l| l.site(&lookup)).await {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(no_site(name)),
        Err(e) => Err(failed("reading the sites", &e)),
    }
}

/// Any free stats reader; waits on the first when all are busy.
fn reader(state: &StatsState) -> Option<MutexGuard<'_, Stats>> {
    state
        .readers
        .iter()
        .find_map(|m| m.try_lock().ok())
        .or_else(|| {
            state
                .readers
                .first()
                .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
        })
}

/// Runs a stats query on a blocking thread.
async fn query<T: Send + 'static>(
    state: &DashboardState,
    f: impl FnOnce(&Stats) -> Result<T, StatsError> + Send + 'static,
) -> Result<T, Response> {
    let stats = state.stats.clone();
    let done = tokio::task::spawn_blocking(move || {
        let guard = reader(&stats).ok_or_else(|| "no stats reader is configured".to_owned());
        guard.map(|g| f(&g))
    })
    .await;
    match done {
        Ok(Ok(Ok(v))) => Ok(v),
        Ok(Ok(Err(e @ (StatsError::TooLong | StatsError::Inverted)))) => {
            Err(bad_request(crate::stats_api::bad("from", e.to_string())))
        }
        Ok(Ok(Err(e))) => Err(failed("the stats query", &e.to_string())),
        Ok(Err(e)) => Err(failed("the stats query", &e)),
        Err(e) => Err(failed("the stats query", &e.to_string())),
    }
}

fn window(site: &SiteRow, v: &View) -> (Window, Window) {
    let w = Window {
        site_id: site.id,
        from: v.from,
        to: v.to,
        tz: v.tz.clone(),
    };
    let prev = Window {
        from: v.prev_from,
        to: v.from,
        ..w.clone()
    };
    (w, prev)
}

async fn sites(State(state): State<DashboardState>) -> Response {
    let now = Timestamp::now();
    let caller = crate::account::current();
    match state.realtime.read(move |l| l.sites(now)).await {
        Ok(mut list) => {
            // Only the sites the caller may read.
            list.retain(|s| {
                caller
                    .as_ref()
                    .is_some_and(|c| c.may(Right::View, Some(&s.site.hostname)))
            });
            html(StatusCode::OK, pages::sites(&list))
        }
        Err(e) => failed("reading the sites", &e),
    }
}

async fn overview(
    State(state): State<DashboardState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let site = match find_site(&state, &name).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match overview_numbers(&state, &site, q.as_deref()).await {
        Ok((v, o, imported, live)) => html(
            StatusCode::OK,
            pages::overview(&site, &v, &o, &imported, live, None),
        ),
        Err(r) => r,
    }
}

/// What the overview of `site` shows for the view in query `q`: the view,
/// the numbers, what they include of imported history, the live visitors.
async fn overview_numbers(
    state: &DashboardState,
    site: &SiteRow,
    q: Option<&str>,
) -> Result<(View, Overview, ImportedInfo, u64), Response> {
    let now = Timestamp::now();
    let v = match View::parse(q, now, &[]) {
        Ok((v, _)) => v,
        Err(e) => return Err(bad_request(e)),
    };
    let id = site.id;
    let live = match state.realtime.read(move |l| l.live_visitors(id, now)).await {
        Ok(n) => n,
        Err(e) => return Err(failed("reading live visitors", &e)),
    };
    let (w, prev) = window(site, &v);
    let (filters, interval) = (v.filters.clone(), v.interval);
    let (o, imported) = query(state, move |s| {
        s.overview_with_imported(&w, &prev, &filters, interval, &PANELS, PANEL_ROWS)
    })
    .await?;
    Ok((v, o, imported, live))
}

async fn realtime(State(state): State<DashboardState>, Path(name): Path<String>) -> Response {
    let site = match find_site(&state, &name).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (id, now) = (site.id, Timestamp::now());
    match state
        .realtime
        .read(move |l| l.realtime(id, now, TOP_ROWS))
        .await
    {
        Ok(r) => html(StatusCode::OK, pages::realtime(&site, &r, now)),
        Err(e) => failed("reading the realtime numbers", &e),
    }
}

/// The one parameter `name` among `rest`, empty taken as absent.
fn param<'a>(rest: &'a [(String, String)], name: &str) -> Option<&'a str> {
    rest.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// A `funnel=ID` parameter.
fn funnel_param(rest: &[(String, String)]) -> Result<Option<u32>, BadParam> {
    param(rest, "funnel")
        .map(|id| {
            id.parse::<u32>()
                .map_err(|_| crate::stats_api::bad("funnel", format!("{id:?} is not a funnel id")))
        })
        .transpose()
}

/// A site's funnels and the numbers of funnel `id` (else of the first).
type Funnels = (Vec<Funnel>, Option<(Funnel, Vec<FunnelRow>)>);

fn funnel_numbers(
    s: &Stats,
    w: &Window,
    filters: &[hitvault_store::stats::Filter],
    id: Option<u32>,
) -> Result<Funnels, StatsError> {
    let list = s.funnels_of(w.site_id)?;
    let chosen = match id {
        Some(id) => list.iter().find(|f| f.id == id),
        None => list.first(),
    };
    let numbers = match chosen {
        Some(f) => Some((f.clone(), s.funnel_stats(w, filters, &f.steps)?)),
        None => None,
    };
    Ok((list, numbers))
}

fn no_funnel(id: u32) -> Response {
    html(
        StatusCode::NOT_FOUND,
        html::message_page(
            "No such funnel",
            &format!("The site has no funnel {id}; it may have been deleted."),
        ),
    )
}

async fn goals(
    State(state): State<DashboardState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let v = match View::parse(q.as_deref(), Timestamp::now(), &[]) {
        Ok((v, _)) => v,
        Err(e) => return bad_request(e),
    };
    let site = match find_site(&state, &name).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (w, _) = window(&site, &v);
    let filters = v.filters.clone();
    match query(&state, move |s| {
        let goals = s.goals_of(w.site_id)?;
        s.goal_stats(&w, &filters, &goals)
    })
    .await
    {
        Ok(rows) => html(StatusCode::OK, explore::goals(&site, &v, &rows)),
        Err(r) => r,
    }
}

async fn funnels(
    State(state): State<DashboardState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let (v, rest) = match View::parse(q.as_deref(), Timestamp::now(), &["funnel"]) {
        Ok(x) => x,
        Err(e) => return bad_request(e),
    };
    let id = match funnel_param(&rest) {
        Ok(id) => id,
        Err(e) => return bad_request(e),
    };
    let site = match find_site(&state, &name).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (w, _) = window(&site, &v);
    let filters = v.filters.clone();
    let (list, chosen) = match query(&state, move |s| funnel_numbers(s, &w, &filters, id)).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let (Some(id), None) = (id, &chosen) {
        return no_funnel(id);
    }
    let chosen = chosen.as_ref().map(|(f, rows)| (f, rows.as_slice()));
    html(StatusCode::OK, explore::funnels(&site, &v, &list, chosen))
}

async fn events(
    State(state): State<DashboardState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let (v, rest) = match View::parse(q.as_deref(), Timestamp::now(), &["event", "key"]) {
        Ok(x) => x,
        Err(e) => return bad_request(e),
    };
    let event = param(&rest, "event").map(str::to_owned);
    let key = param(&rest, "key").map(str::to_owned);
    let site = match find_site(&state, &name).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (w, _) = window(&site, &v);
    let filters = v.filters.clone();
    match query(&state, move |s| {
        explore::load_events(s, &w, &filters, event, key, explore::EXPLORER_ROWS)
    })
    .await
    {
        Ok(x) => html(StatusCode::OK, explore::events(&site, &v, &x)),
        Err(r) => r,
    }
}

/// `scheme://host` the browser used, for the snippet.
fn origin(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("127.0.0.1:8080");
    let https = headers
        .get("x-forwarded-proto")
        .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"));
    format!("{}://{host}", if https { "https" } else { "http" })
}

/// What an export covers.
enum Panel {
    Kpis,
    Series,
    Breakdown(Dim),
    Goals,
    Funnel,
    Props,
    RealtimePages,
    RealtimeSources,
}

async fn export(
    State(state): State<DashboardState>,
    rec: crate::audit::Recorder,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let now = Timestamp::now();
    let (v, rest) = match View::parse(q.as_deref(), now, &["panel", "funnel", "event", "key"]) {
        Ok(x) => x,
        Err(e) => return bad_request(e),
    };
    let panel_name = param(&rest, "panel").unwrap_or("");
    let panel = match panel_name {
        "kpis" => Panel::Kpis,
        "series" => Panel::Series,
        "goals" => Panel::Goals,
        "funnel" => Panel::Funnel,
        "props" => Panel::Props,
        "realtime_pages" => Panel::RealtimePages,
        "realtime_sources" => Panel::RealtimeSources,
        other => match Dim::parse(other) {
            Some(d) => Panel::Breakdown(d),
            None => {
                let dims: Vec<&str> = Dim::ALL.iter().map(|(_, n)| *n).collect();
                return bad_request(crate::stats_api::bad(
                    "panel",
                    format!(
                        "{other:?} is not kpis, series, goals, funnel, props, realtime_pages, \
                         realtime_sources or a dimension ({})",
                        dims.join(", ")
                    ),
                ));
            }
        },
    };
    let funnel_id = match funnel_param(&rest) {
        Ok(id) => id,
        Err(e) => return bad_request(e),
    };
    let event = param(&rest, "event").map(str::to_owned);
    let key = param(&rest, "key").map(str::to_owned);
    let site = match find_site(&state, &name).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (w, prev) = window(&site, &v);
    let (filters, interval) = (v.filters.clone(), v.interval);
    let body = match panel {
        Panel::Kpis => query(&state, move |s| {
            Ok((s.kpis(&w, &filters)?, s.kpis(&prev, &filters)?))
        })
        .await
        .map(|(k, p)| {
            let row = |m: &str, a: String, b: String| vec![csv::field(m), a, b];
            csv::file(
                &["metric", "value", "previous"],
                [
                    row("visitors", k.visitors.to_string(), p.visitors.to_string()),
                    row(
                        "pageviews",
                        k.pageviews.to_string(),
                        p.pageviews.to_string(),
                    ),
                    row("visits", k.sessions.to_string(), p.sessions.to_string()),
                    row("bounces", k.bounces.to_string(), p.bounces.to_string()),
                    row(
                        "bounce_rate",
                        csv::share(k.bounce_rate),
                        csv::share(p.bounce_rate),
                    ),
                    row(
                        "avg_visit_duration_s",
                        format!("{:.1}", k.avg_duration_s),
                        format!("{:.1}", p.avg_duration_s),
                    ),
                    row(
                        "views_per_visit",
                        format!("{:.2}", k.views_per_visit),
                        format!("{:.2}", p.views_per_visit),
                    ),
                    row("events", k.events.to_string(), p.events.to_string()),
                    row(
                        "time_on_page_s",
                        opt1(k.engagement.time_on_page_s()),
                        opt1(p.engagement.time_on_page_s()),
                    ),
                    row(
                        "scroll_depth",
                        opt1(k.engagement.scroll_depth()),
                        opt1(p.engagement.scroll_depth()),
                    ),
                ],
            )
        }),
        Panel::Series => query(&state, move |s| s.timeseries(&w, &filters, interval))
            .await
            .map(|series| {
                csv::file(
                    &["start", "visitors", "pageviews", "visits"],
                    series.iter().map(|p| {
                        vec![
                            p.start.clone(),
                            p.visitors.to_string(),
                            p.pageviews.to_string(),
                            p.sessions.to_string(),
                        ]
                    }),
                )
            }),
        Panel::Breakdown(dim) => {
            query(&state, move |s| s.breakdown(&w, &filters, dim, EXPORT_ROWS))
                .await
                .map(|rows| {
                    let count = pages::count_title(dim).to_ascii_lowercase();
                    let mut header = vec![dim.name(), "visitors", &count, "share"];
                    if dim == Dim::Page {
                        header.extend(["time_on_page_s", "scroll_depth"]);
                    }
                    csv::file(
                        &header,
                        rows.iter().map(|r| {
                            let mut f = vec![
                                csv::text_field(r.value.as_deref().unwrap_or("")),
                                r.visitors.to_string(),
                                r.count.to_string(),
                                csv::share(r.share),
                            ];
                            if dim == Dim::Page {
                                let e = r.engagement.unwrap_or_default();
                                f.push(opt1(e.time_on_page_s()));
                                f.push(opt1(e.scroll_depth()));
                            }
                            f
                        }),
                    )
                })
        }
        Panel::Goals => query(&state, move |s| {
            let goals = s.goals_of(w.site_id)?;
            s.goal_stats(&w, &filters, &goals)
        })
        .await
        .map(|rows| {
            csv::file(
                &[
                    "goal",
                    "kind",
                    "value",
                    "visitors",
                    "conversions",
                    "conversion_rate",
                ],
                rows.iter().map(|r| {
                    vec![
                        csv::text_field(&r.goal.display_name),
                        r.goal.step.kind.name().to_owned(),
                        csv::text_field(&r.goal.step.value),
                        r.visitors.to_string(),
                        r.conversions.to_string(),
                        csv::share(r.conversion_rate),
                    ]
                }),
            )
        }),
        Panel::Funnel => {
            match query(&state, move |s| funnel_numbers(s, &w, &filters, funnel_id)).await {
                Err(r) => Err(r),
                Ok((_, None)) => Err(match funnel_id {
                    Some(id) => no_funnel(id),
                    None => bad_request(crate::stats_api::bad(
                        "funnel",
                        "the site has no funnel yet",
                    )),
                }),
                Ok((_, Some((_, rows)))) => Ok(csv::file(
                    &[
                        "step",
                        "kind",
                        "value",
                        "visitors",
                        "visits",
                        "share_of_step_1",
                        "dropoff",
                        "dropoff_rate",
                    ],
                    rows.iter().enumerate().map(|(i, r)| {
                        let before = if i == 0 { 0 } else { rows[i - 1].visitors };
                        vec![
                            (i + 1).to_string(),
                            r.step.kind.name().to_owned(),
                            csv::text_field(&r.step.value),
                            r.visitors.to_string(),
                            r.sessions.to_string(),
                            csv::share(r.conversion_rate),
                            r.dropoff.to_string(),
                            csv::share(explore::ratio(r.dropoff, before)),
                        ]
                    }),
                )),
            }
        }
        Panel::Props => query(&state, move |s| {
            explore::load_events(s, &w, &filters, event, key, EXPORT_ROWS)
        })
        .await
        .map(|x| {
            let (col, rows, of) = match &x.key {
                Some(_) => ("value", &x.values, x.values_of),
                None => ("key", &x.keys, x.keys_of),
            };
            csv::file(
                &[col, "visitors", "events", "share"],
                rows.iter().map(|r| {
                    vec![
                        csv::text_field(&r.value),
                        r.visitors.to_string(),
                        r.events.to_string(),
                        csv::share(explore::ratio(r.events, of)),
                    ]
                }),
            )
        }),
        Panel::RealtimePages | Panel::RealtimeSources => {
            let pages = matches!(panel, Panel::RealtimePages);
            let id = site.id;
            match state
                .realtime
                .read(move |l| l.realtime(id, now, EXPORT_ROWS))
                .await
            {
                Err(e) => Err(failed("reading the realtime numbers", &e)),
                Ok(r) => {
                    let rows = if pages { &r.top_pages } else { &r.top_sources };
                    Ok(csv::file(
                        &[
                            if pages { "page" } else { "source" },
                            "visitors",
                            "pageviews",
                        ],
                        rows.iter().map(|r| {
                            vec![
                                csv::text_field(r.value.as_deref().unwrap_or("")),
                                r.visitors.to_string(),
                                r.pageviews.to_string(),
                            ]
                        }),
                    ))
                }
            }
        }
    };
    let body = match body {
        Ok(b) => b,
        Err(r) => return r,
    };
    // Recorded before the file leaves; a file that cannot be recorded does not.
    let detail = serde_json::json!({
        "via": "dashboard", "format": "csv", "panel": panel_name,
        "from": v.from.to_string(), "until": v.to.to_string(),
    });
    if let Err(r) = rec
        .before(crate::audit::Kind::Export, Some(&site.hostname), detail)
        .await
    {
        return r;
    }
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let span = match panel {
        // The realtime lists cover the minutes before `now` (UTC).
        Panel::RealtimePages | Panel::RealtimeSources => now.strftime("%Y%m%dT%H%M%SZ").to_string(),
        _ => format!("{}-{}", v.first_day, v.last_day),
    };
    let file = format!("{}-{}-{span}.csv", safe(&site.hostname), safe(panel_name),);
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{file}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    let mut r = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
        body,
    )
        .into_response();
    r.headers_mut()
        .insert(header::CONTENT_DISPOSITION, disposition);
    r
}

async fn asset(Path(name): Path<String>, RawQuery(q): RawQuery, headers: HeaderMap) -> Response {
    let (Some((media, bytes)), Some(version)) = (assets::get(&name), assets::version(&name)) else {
        return html(
            StatusCode::NOT_FOUND,
            html::message_page("Not found", "There is no such file."),
        );
    };
    let etag = format!("\"{version}\"");
    // A URL naming the current version never changes; others revalidate.
    let cache = if q.as_deref() == Some(&format!("v={version}")) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut r = if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, media)], bytes).into_response()
    };
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    r
}

/// An optional figure with one decimal; empty when absent.
fn opt1(x: Option<f64>) -> String {
    x.map(|x| format!("{x:.1}")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::{get, post};
    use tower::ServiceExt;

    fn accounts() -> (tempfile::TempDir, AccountState) {
        let dir = tempfile::tempdir().unwrap();
        let a = hitvault_accounts::Accounts::open(
            dir.path(),
            hitvault_accounts::Policy::default(),
            hitvault_accounts::Limits::default(),
            crate::account::now(),
        )
        .unwrap();
        let state = AccountState::new(Arc::new(a), vec!["stats.clinic.lan".into()]);
        (dir, state)
    }

    fn gated(state: AccountState) -> Router {
        Router::new()
            .route("/sites", get(|| async { "the dashboard" }))
            .route("/sites/x/settings/goals", post(|| async { "stored" }))
            .layer(axum::middleware::from_fn_with_state(state, gate))
    }

    async fn send(
        app: &Router,
        method: &str,
        peer: &str,
        headers: &[(&str, &str)],
        body: &'static str,
    ) -> Response {
        let mut req = Request::builder().method(method).uri(if method == "GET" {
            "/sites"
        } else {
            "/sites/x/settings/goals"
        });
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut req = req.body(Body::from(body)).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        app.clone().oneshot(req).await.unwrap()
    }

    async fn through_gate(peer: &str) -> Response {
        let (_dir, state) = accounts();
        send(&gated(state), "GET", peer, &[], "").await
    }

    async fn text(r: Response) -> String {
        let b = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn the_gate_admits_loopback_clients() {
        let r = through_gate("127.0.0.1:5000").await;
        assert_eq!(r.status(), StatusCode::OK);
        let csp = r.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"));
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        assert_eq!(text(r).await, "the dashboard");
    }

    #[tokio::test]
    async fn the_gate_sends_other_clients_to_sign_in() {
        let r = through_gate("192.168.1.9:5000").await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()["location"], "/login?next=/sites");
        assert!(r.headers().contains_key("content-security-policy"));
        let (_dir, state) = accounts();
        let r = send(&gated(state), "POST", "192.168.1.9:5000", &[], "").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(text(r).await.contains("Sign in first"));
    }

    #[tokio::test]
    async fn the_gate_admits_a_session_and_wants_its_csrf_token_on_changes() {
        let (_dir, state) = accounts();
        let link = state
            .accounts
            .setup_link(crate::account::now())
            .unwrap()
            .unwrap();
        let s = state
            .accounts
            .accept_invite(
                &link,
                Some("alice"),
                Some("correct horse battery"),
                "t",
                crate::account::now(),
            )
            .unwrap();
        let app = gated(state);
        let cookie = format!("__Host-hv_session={}", s.token);
        let lan = "192.168.1.9:5000";
        let r = send(&app, "GET", lan, &[("cookie", &cookie)], "").await;
        assert_eq!(r.status(), StatusCode::OK);
        let r = send(
            &app,
            "POST",
            lan,
            &[("cookie", &cookie)],
            "kind=event&value=x",
        )
        .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(text(r).await.contains("CSRF"));
        let body: &'static str = Box::leak(format!("kind=event&csrf={}", s.csrf).into_boxed_str());
        let r = send(&app, "POST", lan, &[("cookie", &cookie)], body).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(text(r).await, "stored");
        // A made-up cookie is no session.
        let r = send(
            &app,
            "GET",
            lan,
            &[("cookie", "__Host-hv_session=made-up")],
            "",
        )
        .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
    }

    #[tokio::test]
    async fn the_gate_refuses_requests_addressed_to_another_name() {
        let (_dir, state) = accounts();
        let app = gated(state);
        let r = send(
            &app,
            "GET",
            "127.0.0.1:5000",
            &[("host", "rebound.evil.test:8080")],
            "",
        )
        .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(r.headers().contains_key("content-security-policy"));
        let body = text(r).await;
        assert!(body.contains("rebound.evil.test:8080"), "{body}");
        for host in ["127.0.0.1:8080", "localhost:8080", "[::1]:8080"] {
            let r = send(&app, "GET", "127.0.0.1:5000", &[("host", host)], "").await;
            assert_eq!(r.status(), StatusCode::OK, "{host}");
        }
        // The configured name is no foreign name: it is sent to sign in.
        let r = send(
            &app,
            "GET",
            "127.0.0.1:5000",
            &[("host", "stats.clinic.lan:8443")],
            "",
        )
        .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
    }

    #[tokio::test]
    async fn the_gate_refuses_cross_site_posts_with_a_reason() {
        let (_dir, state) = accounts();
        let app = Router::new()
            .route("/sites/x/settings/goals", post(|| async { "stored" }))
            .layer(axum::middleware::from_fn_with_state(state, gate));
        let send = |origin: &'static str| {
            let mut req = Request::builder()
                .method("POST")
                .uri("/sites/x/settings/goals")
                .header("host", "127.0.0.1:8080")
                .header("origin", origin)
                .body(Body::empty())
                .unwrap();
            req.extensions_mut()
                .insert(ConnectInfo("127.0.0.1:5000".parse::<SocketAddr>().unwrap()));
            app.clone().oneshot(req)
        };
        let r = send("http://evil.test").await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(r.headers().contains_key("content-security-policy"));
        let body = text(r).await;
        assert!(
            body.contains("evil.test") && body.contains("Refused"),
            "{body}"
        );
        let r = send("http://127.0.0.1:8080").await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(text(r).await, "stored");
    }

    #[test]
    fn the_snippet_origin_comes_from_the_request() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("stats.lan:8080"));
        assert_eq!(origin(&h), "http://stats.lan:8080");
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert_eq!(origin(&h), "https://stats.lan:8080");
        h.insert(header::HOST, HeaderValue::from_static("evil\"><x"));
        assert_eq!(origin(&h), "https://127.0.0.1:8080");
    }
}
