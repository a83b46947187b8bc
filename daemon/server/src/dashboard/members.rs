//! A site's members and share links, managed from two dashboard pages by
//! its owners and the admins (the routes need [`Right::Manage`] on the
//! site; the site navigation shows them only to callers who have it).
//!
//! | route | form fields |
//! | --- | --- |
//! | `GET /sites/{site}/members` | the members and their roles, the forms below |
//! | `POST /sites/{site}/members` | `name` (a user), `role` (`viewer`, `editor`, `owner`) |
//! | `POST /sites/{site}/members/{id}/role` | `role` |
//! | `POST /sites/{site}/members/{id}/remove` | none |
//! | `GET /sites/{site}/shares` | the share links, the form to make one |
//! | `POST /sites/{site}/shares` | `name`, `days` (1 to 366) or `until` (a date, or an RFC 3339 instant), `password` (optional) |
//! | `POST /sites/{site}/shares/{id}/revoke` | none |
//!
//! A change answers `303 See Other` back to its page, which says what was
//! done; a refusal renders the page again with the reason, with the status
//! it deserves (400 bad input, 404 unknown user, 409 a rule, 413 a body
//! over [`MAX_FORM_BODY`]). A new share link's URL is shown on the answer
//! to the form that made it, once: only its SHA-256 is kept.
//!
//! The last owner: an owner cannot remove or demote the site's last owner
//! (themself, in practice): the site would be left to the admins alone,
//! and the owner would lose the page they are on. An admin (or the
//! operator on this machine) may: they manage every site anyway.

use std::fmt::Write;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use hitvault_accounts::grants::{MAX_LABEL, MAX_LIFETIME_SECS, MAX_SHARES_PER_SITE};
use hitvault_accounts::{AccountError, Right, SiteRole, UserId};
use hitvault_store::SiteRow;
use jiff::Timestamp;

use super::defs::MAX_FORM_BODY;
use super::html::{SiteNav, esc, page};
use super::pages::site_base;
use super::{DashboardState, find_site, html, see_other};
use crate::access::Caller;
use crate::account::{AccountState, csrf_field, now};
use crate::audit::{Kind, Recorder};
use crate::rules::{Face, Need, Routes, SiteIn};
use crate::stats_api::form_urlencoded;
use serde_json::json;

/// What the members and share-link pages need.
#[derive(Clone)]
pub(crate) struct PeopleState {
    pub dash: DashboardState,
    pub accounts: AccountState,
}

/// The members and share-link pages; [`crate::app`] puts them behind the
/// dashboard's gate.
pub(crate) fn routes(dash: DashboardState, accounts: AccountState) -> Routes<()> {
    let manage = Need::site(Right::Manage, SiteIn::Path);
    Routes::new(Face::Page)
        .get("/sites/{site}/members", manage, members_page)
        .post("/sites/{site}/members", manage, member_add)
        .post("/sites/{site}/members/{id}/role", manage, member_role)
        .post("/sites/{site}/members/{id}/remove", manage, member_remove)
        .get("/sites/{site}/shares", manage, shares_page)
        .post("/sites/{site}/shares", manage, share_create)
        .post("/sites/{site}/shares/{id}/revoke", manage, share_revoke)
        .with_state(PeopleState { dash, accounts })
}

/// The fields of a form body; `None` past [`MAX_FORM_BODY`].
fn fields(body: &Bytes) -> Option<Vec<(String, String)>> {
    (body.len() <= MAX_FORM_BODY).then(|| form_urlencoded(&String::from_utf8_lossy(body)))
}

/// The answer to a form past [`MAX_FORM_BODY`].
fn too_large() -> Response {
    html(
        StatusCode::PAYLOAD_TOO_LARGE,
        super::html::message_page(
            "Form too large",
            &format!("Refused: the form is larger than {MAX_FORM_BODY} bytes."),
        ),
    )
}

fn field<'a>(f: &'a [(String, String)], name: &str) -> &'a str {
    f.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim())
        .unwrap_or("")
}

fn role_select(id: &str, chosen: Option<SiteRole>) -> String {
    let mut s = format!("<select name=\"role\" id=\"{id}\">");
    for r in SiteRole::ALL {
        let sel = if Some(r) == chosen { " selected" } else { "" };
        let _ = write!(s, "<option value=\"{0}\"{sel}>{0}</option>", r.as_str());
    }
    s.push_str("</select>");
    s
}

fn alert(error: Option<&str>) -> String {
    match error {
        Some(e) => format!(
            "<p class=\"alert\" role=\"alert\"><strong>Not changed:</strong> {}</p>",
            esc(e)
        ),
        None => String::new(),
    }
}

/// What a `done=` parameter reports.
fn notice(query: Option<&str>) -> Option<&'static str> {
    let q = form_urlencoded(query.unwrap_or(""));
    let done = q.iter().find(|(k, _)| k == "done")?.1.as_str();
    Some(match done {
        "added" => "Member added.",
        "changed" => "Role changed.",
        "removed" => "Member removed.",
        "revoked" => "Share link revoked: it no longer opens.",
        _ => return None,
    })
}

fn site_page(site: &SiteRow, title: &str, active: &'static str, main: &str) -> String {
    page(
        &format!("{title} · {}", site.hostname),
        Some(SiteNav {
            hostname: &site.hostname,
            active,
            query: "",
        }),
        &format!("page-{}", active.trim_start_matches('/')),
        main,
    )
}

// ---- members ------------------------------------------------------------

fn render_members(
    state: &PeopleState,
    site: &SiteRow,
    status: StatusCode,
    done: Option<&str>,
    error: Option<&str>,
    typed: (&str, Option<SiteRole>),
) -> Response {
    let base = site_base(&site.hostname);
    let members = state.accounts.accounts.members(&site.hostname);
    let mut m = format!(
        "<h1>Members</h1>\
         <p>A <strong>viewer</strong> reads the site's numbers; an <strong>editor</strong> also \
         changes its goals, funnels and settings; an <strong>owner</strong> also manages its \
         members and share links and may take its data out (Takeout). Instance admins manage \
         every site. The last owner stays an owner unless an admin changes that.</p>{}{}",
        done.map(|d| format!("<p class=\"notice\" role=\"status\">{}</p>", esc(d)))
            .unwrap_or_default(),
        alert(error),
    );
    m.push_str(
        "<section class=\"card\" aria-labelledby=\"members-h\"><h2 id=\"members-h\">Members</h2>",
    );
    if members.is_empty() {
        m.push_str("<p class=\"empty\">No members yet: only the admins reach this site.</p>");
    } else {
        m.push_str(
            "<table class=\"members\"><thead><tr><th scope=\"col\">User</th>\
             <th scope=\"col\">Role</th><th scope=\"col\">Remove</th></tr></thead><tbody>",
        );
        for (u, role) in &members {
            let action = format!("{base}/members/{}", u.id);
            let _ = write!(
                m,
                "<tr data-member=\"{name}\"><th scope=\"row\">{name}{admin}</th><td>\
                 <form method=\"post\" action=\"{a}/role\" class=\"inline controls\">{csrf}\
                 <label for=\"role-{id}\" class=\"sr-only\">Role of {name}</label>{select}\
                 <button type=\"submit\">Change</button></form></td><td>\
                 <form method=\"post\" action=\"{a}/remove\" class=\"inline\">{csrf}\
                 <button type=\"submit\" class=\"danger\" aria-label=\"Remove {name}\">Remove</button>\
                 </form></td></tr>",
                name = esc(&u.name),
                admin = if u.admin {
                    " <span class=\"kind\">admin</span>"
                } else {
                    ""
                },
                a = esc(&action),
                csrf = csrf_field(),
                id = u.id,
                select = role_select(&format!("role-{}", u.id), Some(*role)),
            );
        }
        m.push_str("</tbody></table>");
    }
    m.push_str("</section>");
    let _ = write!(
        m,
        "<section class=\"card\" aria-labelledby=\"add-h\"><h2 id=\"add-h\">Add a member</h2>\
         <p>The user must exist (an admin adds users on the account page or with \
         <code>hitvault user add</code>).</p>\
         <form method=\"post\" action=\"{a}/members\" class=\"controls\">{csrf}\
         <label for=\"member-name\">User name<input type=\"text\" name=\"name\" id=\"member-name\" \
         required maxlength=\"64\" value=\"{typed}\" autocomplete=\"off\" spellcheck=\"false\"></label>\
         <label for=\"member-role\">Role{select}</label>\
         <button type=\"submit\">Add</button></form></section>",
        a = esc(&base),
        csrf = csrf_field(),
        typed = esc(typed.0),
        select = role_select("member-role", typed.1.or(Some(SiteRole::Viewer))),
    );
    html(status, site_page(site, "Members", "/members", &m))
}

async fn members_page(
    State(state): State<PeopleState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    match find_site(&state.dash, &name).await {
        Ok(site) => render_members(
            &state,
            &site,
            StatusCode::OK,
            notice(q.as_deref()),
            None,
            ("", None),
        ),
        Err(r) => r,
    }
}

/// Whether the caller is an admin or the operator (who may change the
/// last owner).
fn instance_admin(caller: &Option<Extension<Caller>>) -> bool {
    caller.as_ref().is_some_and(|c| c.may(Right::Admin, None))
}

/// Why changing `id`'s role on `site` to `to` is refused by the last-owner
/// rule, if it is.
fn last_owner(
    state: &PeopleState,
    site: &str,
    id: UserId,
    to: Option<SiteRole>,
    admin: bool,
) -> Option<String> {
    if admin || to == Some(SiteRole::Owner) {
        return None;
    }
    let members = state.accounts.accounts.members(site);
    let owners: Vec<UserId> = members
        .iter()
        .filter(|(_, r)| *r == SiteRole::Owner)
        .map(|(u, _)| u.id)
        .collect();
    (owners == [id]).then(|| {
        "this is the site's last owner; make another member an owner first, \
         or ask an admin"
            .to_owned()
    })
}

fn account_status(e: &AccountError) -> StatusCode {
    match e {
        e if e.unconfirmed().is_some() => StatusCode::SERVICE_UNAVAILABLE,
        AccountError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        AccountError::Invalid(_) => StatusCode::BAD_REQUEST,
        AccountError::Conflict(_) => StatusCode::CONFLICT,
        AccountError::NotFound(_) => StatusCode::NOT_FOUND,
        AccountError::Journal(j) => {
            tracing::error!(error = %j, "writing the accounts journal failed");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

fn account_message(e: &AccountError) -> String {
    match e {
        e if e.unconfirmed().is_some() => e.to_string(),
        AccountError::Journal(_) => crate::error::INTERNAL_MESSAGE.to_owned(),
        e => e.to_string(),
    }
}

fn parse_role(f: &[(String, String)]) -> Result<SiteRole, String> {
    let r = field(f, "role");
    SiteRole::parse(r).ok_or_else(|| format!("{r:?} is not a role: viewer, editor or owner"))
}

async fn member_add(
    State(state): State<PeopleState>,
    rec: Recorder,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let site = match find_site(&state.dash, &name).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(f) = fields(&body) else {
        return too_large();
    };
    let user = field(&f, "name").to_owned();
    let refuse = |status, why: &str, role| {
        render_members(&state, &site, status, None, Some(why), (&user, role))
    };
    let role = match parse_role(&f) {
        Ok(r) => r,
        Err(why) => return refuse(StatusCode::BAD_REQUEST, &why, None),
    };
    if user.is_empty() {
        return refuse(StatusCode::BAD_REQUEST, "give a user name", Some(role));
    }
    let Some(u) = state.accounts.accounts.user_named(&user) else {
        return refuse(
            StatusCode::NOT_FOUND,
            &format!("there is no user named {user:?}; an admin adds users first"),
            Some(role),
        );
    };
    if let Some(had) = u.roles.get(&site.hostname) {
        return refuse(
            StatusCode::CONFLICT,
            &format!(
                "{user} is already a member ({}); change their role in the list",
                had.as_str()
            ),
            Some(role),
        );
    }
    let (accounts, host) = (state.accounts.accounts.clone(), site.hostname.clone());
    let who = u.name.clone();
    match blocking(move || accounts.set_role(u.id, &host, Some(role))).await {
        Ok(()) => {
            rec.note(
                Kind::RoleSet,
                Some(&site.hostname),
                json!({ "user": who, "role": role.as_str() }),
            )
            .await;
            see_other(&format!("{}/members?done=added", site_base(&site.hostname)))
        }
        Err(e) => refuse(account_status(&e), &account_message(&e), Some(role)),
    }
}

async fn member_role(
    State(state): State<PeopleState>,
    caller: Option<Extension<Caller>>,
    rec: Recorder,
    Path((name, id)): Path<(String, UserId)>,
    body: Bytes,
) -> Response {
    let Some(f) = fields(&body) else {
        return too_large();
    };
    let role = parse_role(&f);
    change(state, caller, rec, name, id, role.map(Some), "changed").await
}

async fn member_remove(
    State(state): State<PeopleState>,
    caller: Option<Extension<Caller>>,
    rec: Recorder,
    Path((name, id)): Path<(String, UserId)>,
) -> Response {
    change(state, caller, rec, name, id, Ok(None), "removed").await
}

/// Sets (or takes, `None`) member `id`'s role, under the last-owner rule.
async fn change(
    state: PeopleState,
    caller: Option<Extension<Caller>>,
    rec: Recorder,
    name: String,
    id: UserId,
    role: Result<Option<SiteRole>, String>,
    done: &str,
) -> Response {
    let site = match find_site(&state.dash, &name).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let refuse =
        |status, why: &str| render_members(&state, &site, status, None, Some(why), ("", None));
    let role = match role {
        Ok(r) => r,
        Err(why) => return refuse(StatusCode::BAD_REQUEST, &why),
    };
    let is_member = state
        .accounts
        .accounts
        .user(id)
        .is_some_and(|u| u.roles.contains_key(&site.hostname));
    if !is_member {
        return refuse(
            StatusCode::NOT_FOUND,
            &format!("user {id} is not a member of this site"),
        );
    }
    if let Some(why) = last_owner(&state, &site.hostname, id, role, instance_admin(&caller)) {
        return refuse(StatusCode::CONFLICT, &why);
    }
    let (accounts, host) = (state.accounts.accounts.clone(), site.hostname.clone());
    let who = state.accounts.accounts.user(id).map(|u| u.name);
    match blocking(move || accounts.set_role(id, &host, role)).await {
        Ok(()) => {
            let (kind, detail) = match role {
                Some(r) => (Kind::RoleSet, json!({ "user": who, "role": r.as_str() })),
                None => (Kind::RoleRemoved, json!({ "user": who })),
            };
            rec.note(kind, Some(&site.hostname), detail).await;
            see_other(&format!(
                "{}/members?done={done}",
                site_base(&site.hostname)
            ))
        }
        Err(e) => refuse(account_status(&e), &account_message(&e)),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("account work does not panic")
}

// ---- share links --------------------------------------------------------

/// A share link just made, to show once.
struct Made {
    url: String,
    name: String,
}

/// What the share form held when it was refused.
#[derive(Default)]
struct ShareForm {
    name: String,
    days: String,
    until: String,
}

fn day_time(secs: u64) -> String {
    Timestamp::from_second(secs as i64)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

#[allow(clippy::too_many_arguments)]
fn render_shares(
    state: &PeopleState,
    site: &SiteRow,
    status: StatusCode,
    done: Option<&str>,
    error: Option<&str>,
    made: Option<&Made>,
    typed: &ShareForm,
) -> Response {
    let base = site_base(&site.hostname);
    let now = now();
    let mut m = format!(
        "<h1>Share links</h1>\
         <p>A share link opens a read-only overview of this site's numbers to anyone who has \
         it, without an account: no raw events, no downloads, no settings, no other site. \
         Every link expires (at most {max} days ahead), may need a password, and stops working \
         when revoked. At most {MAX_SHARES_PER_SITE} links per site.</p>{}{}",
        done.map(|d| format!("<p class=\"notice\" role=\"status\">{}</p>", esc(d)))
            .unwrap_or_default(),
        alert(error),
        max = MAX_LIFETIME_SECS / 86_400,
    );
    if let Some(made) = made {
        let _ = write!(
            m,
            "<section class=\"card made\" aria-labelledby=\"made-h\"><h2 id=\"made-h\">Link \
             {name} made</h2><p>Copy it now: it is shown only this once (the server keeps only a \
             hash of it).</p><pre class=\"snippet\"><code id=\"share-url\">{url}</code></pre>\
             <button type=\"button\" data-copy=\"share-url\">Copy link</button></section>",
            name = esc(&made.name),
            url = esc(&made.url),
        );
    }
    let mut shares = state.accounts.accounts.shares(Some(&site.hostname));
    shares.sort_by_key(|s| std::cmp::Reverse(s.created));
    m.push_str(
        "<section class=\"card\" aria-labelledby=\"shares-h\"><h2 id=\"shares-h\">Links</h2>",
    );
    if shares.is_empty() {
        m.push_str("<p class=\"empty\">No share links.</p>");
    } else {
        m.push_str(
            "<table class=\"shares\"><thead><tr><th scope=\"col\">Name</th>\
             <th scope=\"col\">Made by</th><th scope=\"col\">Made</th>\
             <th scope=\"col\">Expires</th><th scope=\"col\">Password</th>\
             <th scope=\"col\">Revoke</th></tr></thead><tbody>",
        );
        for s in &shares {
            let by = state
                .accounts
                .accounts
                .user(s.user)
                .map(|u| u.name)
                .unwrap_or_else(|| "(a removed user)".into());
            let _ = write!(
                m,
                "<tr data-share=\"{id}\"><th scope=\"row\">{name}</th><td>{by}</td><td>{made}</td>\
                 <td>{expires}{expired}</td><td>{pw}</td><td>\
                 <form method=\"post\" action=\"{a}/shares/{id}/revoke\" class=\"inline\">{csrf}\
                 <button type=\"submit\" class=\"danger\" aria-label=\"Revoke {name}\">Revoke</button>\
                 </form></td></tr>",
                id = s.id,
                name = esc(&s.name),
                by = esc(&by),
                made = day_time(s.created),
                expires = day_time(s.expires),
                expired = if s.live(now) { "" } else { " (expired)" },
                pw = if s.password.is_some() { "yes" } else { "no" },
                a = esc(&base),
                csrf = csrf_field(),
            );
        }
        m.push_str("</tbody></table>");
    }
    m.push_str("</section>");
    let _ = write!(
        m,
        "<section class=\"card\" aria-labelledby=\"new-h\"><h2 id=\"new-h\">New share link</h2>\
         <form method=\"post\" action=\"{a}/shares\" class=\"controls def-form\">{csrf}\
         <label for=\"share-name\">Name (who it is for)<input type=\"text\" name=\"name\" \
         id=\"share-name\" required maxlength=\"{MAX_LABEL}\" value=\"{name}\" autocomplete=\"off\"></label>\
         <label for=\"share-days\">Expires in days<input type=\"number\" name=\"days\" id=\"share-days\" \
         min=\"1\" max=\"{max}\" value=\"{days}\"></label>\
         <label for=\"share-until\">or on a date (UTC, through that day)<input type=\"date\" \
         name=\"until\" id=\"share-until\" value=\"{until}\"></label>\
         <label for=\"share-password\">Password (optional, at least {min} characters)\
         <input type=\"password\" name=\"password\" id=\"share-password\" autocomplete=\"new-password\" \
         minlength=\"{min}\"></label>\
         <button type=\"submit\">Make link</button></form></section>",
        a = esc(&base),
        csrf = csrf_field(),
        name = esc(&typed.name),
        days = esc(if typed.days.is_empty() && typed.until.is_empty() {
            "30"
        } else {
            &typed.days
        }),
        until = esc(&typed.until),
        max = MAX_LIFETIME_SECS / 86_400,
        min = hitvault_accounts::password::MIN_LEN,
    );
    html(status, site_page(site, "Share links", "/shares", &m))
}

async fn shares_page(
    State(state): State<PeopleState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    match find_site(&state.dash, &name).await {
        Ok(site) => render_shares(
            &state,
            &site,
            StatusCode::OK,
            notice(q.as_deref()),
            None,
            None,
            &ShareForm::default(),
        ),
        Err(r) => r,
    }
}

/// The expiry a share form asks for (Unix seconds): `days` from now, or
/// `until`, a date (the link works through that day, UTC) or an RFC 3339
/// instant. Exactly one of them.
pub(crate) fn share_expiry(days: &str, until: &str, now: u64) -> Result<u64, String> {
    let max = MAX_LIFETIME_SECS / 86_400;
    match (days.is_empty(), until.is_empty()) {
        (true, true) => Err("give an expiry: a number of days or a date".into()),
        (false, false) => Err("give either a number of days or a date, not both".into()),
        (false, true) => match days.parse::<u64>() {
            Ok(d) if (1..=max).contains(&d) => Ok(now + d * 86_400),
            _ => Err(format!(
                "the expiry in days is a whole number from 1 to {max}, not {days:?}"
            )),
        },
        (true, false) => {
            if let Ok(t) = until.parse::<Timestamp>() {
                return u64::try_from(t.as_second())
                    .map_err(|_| format!("{until:?} is before 1970"));
            }
            let day: jiff::civil::Date = until.parse().map_err(|_| {
                format!("{until:?} is not a date (YYYY-MM-DD) or an instant (RFC 3339)")
            })?;
            let end = day
                .tomorrow()
                .and_then(|d| {
                    jiff::tz::Offset::UTC.to_timestamp(d.to_datetime(jiff::civil::Time::midnight()))
                })
                .map_err(|_| format!("{until:?} is out of range"))?;
            u64::try_from(end.as_second()).map_err(|_| format!("{until:?} is before 1970"))
        }
    }
}

/// The link's absolute URL: the appliance's first name (with the port the
/// request used, if any), else the request's host.
fn share_url(state: &PeopleState, headers: &HeaderMap, secret: &str) -> String {
    let asked = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let port = asked
        .rsplit_once(':')
        .filter(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        .map(|(_, p)| format!(":{p}"))
        .unwrap_or_default();
    let host = match state.accounts.hostnames.first() {
        Some(h) if h.contains(':') => format!("[{h}]{port}"),
        Some(h) => format!("{h}{port}"),
        None if !asked.is_empty() => asked.to_owned(),
        None => "127.0.0.1".to_owned(),
    };
    format!("https://{host}/share/{secret}")
}

async fn share_create(
    State(state): State<PeopleState>,
    caller: Option<Extension<Caller>>,
    rec: Recorder,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let site = match find_site(&state.dash, &name).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(f) = fields(&body) else {
        return too_large();
    };
    let typed = ShareForm {
        name: field(&f, "name").to_owned(),
        days: field(&f, "days").to_owned(),
        until: field(&f, "until").to_owned(),
    };
    let refuse =
        |status, why: &str| render_shares(&state, &site, status, None, Some(why), None, &typed);
    let now = now();
    let expires = match share_expiry(&typed.days, &typed.until, now) {
        Ok(e) => e,
        Err(why) => return refuse(StatusCode::BAD_REQUEST, &why),
    };
    // The rule admitted the operator too, but a link records who made it.
    let user = match caller.as_deref() {
        Some(Caller::Session(s)) => s.user.id,
        _ => {
            return refuse(
                StatusCode::FORBIDDEN,
                "a share link records who made it: sign in to make one",
            );
        }
    };
    // Not trimmed: a password is what was typed.
    let password = f
        .iter()
        .find(|(k, _)| k == "password")
        .map(|(_, v)| v.clone())
        .filter(|p| !p.is_empty());
    let typed_password = password.is_some();
    let (accounts, host, label) = (
        state.accounts.accounts.clone(),
        site.hostname.clone(),
        typed.name.clone(),
    );
    // Hashing a password takes argon2's time and memory: bounded like a check.
    let made = {
        let _permit = state
            .accounts
            .checks
            .acquire()
            .await
            .expect("the semaphore is never closed");
        blocking(move || {
            accounts.create_share(user, &host, &label, password.as_deref(), expires, now)
        })
        .await
    };
    match made {
        Ok(s) => {
            rec.note(
                Kind::ShareCreated,
                Some(&site.hostname),
                json!({ "share": s.id, "name": typed.name, "password": typed_password, "expires": expires }),
            )
            .await;
            let made = Made {
                url: share_url(&state, &headers, &s.secret),
                name: typed.name.clone(),
            };
            render_shares(
                &state,
                &site,
                StatusCode::CREATED,
                None,
                None,
                Some(&made),
                &ShareForm::default(),
            )
        }
        Err(e) => refuse(account_status(&e), &account_message(&e)),
    }
}

async fn share_revoke(
    State(state): State<PeopleState>,
    rec: Recorder,
    Path((name, id)): Path<(String, u64)>,
) -> Response {
    let site = match find_site(&state.dash, &name).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (accounts, host) = (state.accounts.accounts.clone(), site.hostname.clone());
    match blocking(move || accounts.revoke_share(id, &host)).await {
        Ok(s) => {
            rec.note(
                Kind::ShareRevoked,
                Some(&site.hostname),
                json!({ "share": s.id, "name": s.name }),
            )
            .await;
            see_other(&format!(
                "{}/shares?done=revoked",
                site_base(&site.hostname)
            ))
        }
        Err(e) => render_shares(
            &state,
            &site,
            account_status(&e),
            None,
            Some(&account_message(&e)),
            None,
            &ShareForm::default(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expiry_is_days_a_date_or_an_instant() {
        let now = 1_765_000_000; // 2025-12-06T05:46:40Z
        assert_eq!(share_expiry("7", "", now), Ok(now + 7 * 86_400));
        assert!(share_expiry("0", "", now).is_err());
        assert!(share_expiry("367", "", now).is_err());
        assert!(share_expiry("", "", now).is_err());
        assert!(share_expiry("3", "2025-12-31", now).is_err());
        // A date: through that day, UTC.
        let end = share_expiry("", "2025-12-31", now).unwrap();
        assert_eq!(
            Timestamp::from_second(end as i64).unwrap().to_string(),
            "2026-01-01T00:00:00Z"
        );
        let at = share_expiry("", "2025-12-06T06:00:00Z", now).unwrap();
        assert_eq!(at, 1_765_000_800);
        assert!(share_expiry("", "next week", now).is_err());
    }

    #[test]
    fn only_known_notices_are_shown() {
        assert_eq!(
            notice(Some("done=revoked")),
            Some("Share link revoked: it no longer opens.")
        );
        assert_eq!(notice(Some("done=%3Cb%3E")), None);
    }
}
