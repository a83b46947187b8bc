//! The page a share link opens: `GET /share/{secret}`, a read-only
//! overview of one site, to anyone who has the link (no account).
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /share/{secret}[?period=…&f=…]` | the site's overview (the view's parameters work as on the dashboard), or the password form |
//! | `POST /share/{secret}` | `password`: checks it, sets the pass cookie, back to the page (303) |
//!
//! The secret is checked on every request: an unknown, expired or revoked
//! link gets the same 404 page ("this link is not valid"), so revocation
//! and expiry take effect on the next request. The page is the overview's
//! numbers (figures, chart, panels; a panel row filters the view within
//! the link) under a banner naming the site and the link's end. It has no
//! link into the dashboard: no site navigation, no realtime page or stream,
//! no CSV, no raw events, settings, Takeout or other site.
//!
//! A link with a password: without the pass cookie the page is the password
//! form. The password is checked with argon2id, at most
//! [`crate::account::PASSWORD_CHECKS`] at once, under the sign-in limits
//! (growing delays per link and address, 429 with `Retry-After`). A right
//! one sets `__Host-hv_share` (`Secure`, `HttpOnly`, `SameSite=Lax`, until
//! the link's end) to a pass that only the server can make and that
//! opens that link only (see `Accounts::share_pass`): it keeps no state, a
//! restart keeps it good, and it stops with the link. A browser holds one
//! pass at a time: opening a second protected link asks its password, and
//! the first one's again after. `Lax`, not `Strict` like the session: a
//! share link is opened from a mail or a chat, a navigation from another
//! site, which a `Strict` cookie would not follow (the password would be
//! asked at every visit); the pass only reads, and a `Lax` cookie is not
//! sent with another site's subresources or forms.
//!
//! These routes are under the account pages' layer (named hosts, security
//! headers, cross-site check), not the dashboard's gate: no session needed.

use std::fmt::Write;
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use hitvault_accounts::{Accounts, AddressKey, Share, SignInError};
use jiff::Timestamp;

use super::html::{bare_page, esc};
use super::members::PeopleState;
use super::pages::{Shared, overview};
use super::{DashboardState, html, overview_numbers, see_other};
use crate::account::{AccountState, MAX_FORM, cookie, now, now_ms};
use crate::rules::{Face, Need, Routes};
use crate::stats_api::form_urlencoded;

/// The cookie holding a share link's pass.
pub const SHARE_COOKIE: &str = "__Host-hv_share";

/// The share link routes; [`crate::app`] puts them behind the account
/// pages' layer.
pub(crate) fn routes(dash: DashboardState, accounts: AccountState) -> Routes<()> {
    // Anyone: the handler checks the link's secret (and password).
    Routes::new(Face::Page)
        .get("/share/{secret}", Need::Anyone, shared)
        .post("/share/{secret}", Need::Anyone, password)
        .with_state(PeopleState { dash, accounts })
}

/// The one answer to a link that is unknown, expired or revoked.
fn not_valid() -> Response {
    html(
        StatusCode::NOT_FOUND,
        bare_page(
            "Link not valid",
            "page-message",
            "",
            "<section class=\"message\"><h1>This link is not valid</h1>\
             <p>This share link does not exist, has expired or was revoked. Ask the person who \
             sent it for a new one.</p></section>",
        ),
    )
}

fn until(share: &Share) -> String {
    Timestamp::from_second(share.expires as i64)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

fn banner(share: &Share) -> String {
    format!(
        "<div class=\"share-banner\" role=\"note\"><p><strong>{site}</strong>: a read-only \
         view shared with you, until {until}.</p></div>",
        site = esc(&share.site),
        until = until(share),
    )
}

fn password_form(share: &Share, status: StatusCode, error: Option<&str>) -> Response {
    let mut m = String::from("<section class=\"message auth\"><h1>Password</h1>");
    if let Some(e) = error {
        let _ = write!(m, "<p class=\"alert\" role=\"alert\">{}</p>", esc(e));
    }
    let _ = write!(
        m,
        "<p>This view of {site} needs the password its sender gave you.</p>\
         <form method=\"post\" class=\"auth-form\" aria-label=\"Password of the shared view\">\
         <label for=\"share-password\">Password<input type=\"password\" name=\"password\" \
         id=\"share-password\" required autocomplete=\"current-password\" autofocus></label>\
         <button type=\"submit\">Open</button></form></section>",
        site = esc(&share.site),
    );
    html(
        status,
        bare_page("Password", "page-auth", &banner(share), &m),
    )
}

async fn shared(
    State(state): State<PeopleState>,
    Path(secret): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some(share) = state.accounts.accounts.share(&secret, now()) else {
        return not_valid();
    };
    if !Accounts::share_pass_ok(&share, cookie(&headers, SHARE_COOKIE)) {
        return password_form(&share, StatusCode::OK, None);
    }
    // A bad view parameter gets its reason on a page without links.
    if let Err(e) = super::view::View::parse(q.as_deref(), Timestamp::now(), &[]) {
        return html(
            StatusCode::BAD_REQUEST,
            bare_page(
                "Bad request",
                "page-message",
                &banner(&share),
                &format!(
                    "<section class=\"message\"><h1>Bad request</h1><p>Parameter {}: {}</p>\
                     <p><a href=\"/share/{}\">The shared view</a></p></section>",
                    esc(&format!("{:?}", e.parameter)),
                    esc(&e.message),
                    esc(&super::view::encode(&secret)),
                ),
            ),
        );
    }
    let lookup = share.site.clone();
    let site = match state.dash.realtime.read(move |l| l.site(&lookup)).await {
        Ok(Some(s)) if s.hostname == share.site => s,
        // The site was removed (or renamed): the link has nothing to show.
        Ok(_) => return not_valid(),
        Err(e) => return super::failed("reading the sites", &e),
    };
    match overview_numbers(&state.dash, &site, q.as_deref()).await {
        Ok((v, o, imported, live)) => {
            let base = format!("/share/{}", super::view::encode(&secret));
            let banner = banner(&share);
            let sh = Shared {
                base: &base,
                banner: &banner,
            };
            html(
                StatusCode::OK,
                overview(&site, &v, &o, &imported, live, Some(&sh)),
            )
        }
        Err(r) => r,
    }
}

/// The `Set-Cookie` of a pass good for `secs` seconds (see the module doc
/// for `SameSite=Lax`).
fn pass_cookie(pass: &str, secs: u64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{SHARE_COOKIE}={pass}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={secs}"
    ))
    .expect("a pass is an id and hex")
}

/// The shared view's path, with the view of `query` when it has one.
fn back(secret: &str, query: Option<&str>) -> String {
    let base = format!("/share/{}", super::view::encode(secret));
    match query {
        Some(q) if !q.is_empty() => format!("{base}?{q}"),
        _ => base,
    }
}

async fn password(
    State(state): State<PeopleState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(secret): Path<String>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let Some(share) = state.accounts.accounts.share(&secret, now()) else {
        return not_valid();
    };
    if body.len() > MAX_FORM {
        return password_form(
            &share,
            StatusCode::PAYLOAD_TOO_LARGE,
            Some(&format!("The form is larger than {MAX_FORM} bytes.")),
        );
    }
    if share.password.is_none() {
        return see_other(&back(&secret, q.as_deref()));
    }
    let typed = form_urlencoded(&String::from_utf8_lossy(&body))
        .into_iter()
        .find(|(k, _)| k == "password")
        .map(|(_, v)| v)
        .unwrap_or_default();
    let (accounts, s) = (state.accounts.accounts.clone(), share.clone());
    let addr = AddressKey::from(peer.ip());
    let checked = {
        let _permit = state
            .accounts
            .checks
            .acquire()
            .await
            .expect("the semaphore is never closed");
        tokio::task::spawn_blocking(move || accounts.share_password(&s, &typed, addr, now_ms()))
            .await
            .expect("a password check does not panic")
    };
    match checked {
        Ok(pass) => {
            let mut r = see_other(&back(&secret, q.as_deref()));
            let age = share.expires.saturating_sub(now());
            r.headers_mut()
                .append(header::SET_COOKIE, pass_cookie(&pass, age));
            r
        }
        Err(SignInError::TooMany(secs)) => {
            let mut r = password_form(
                &share,
                StatusCode::TOO_MANY_REQUESTS,
                Some(&format!(
                    "Too many wrong passwords. Try again in {secs} seconds."
                )),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            r
        }
        Err(_) => password_form(
            &share,
            StatusCode::UNAUTHORIZED,
            Some("That password is not right."),
        ),
    }
}
