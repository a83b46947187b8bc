//! The account pages and their forms: set-up, sign-in (passkey first),
//! the second step, sign-out, and the account page (factors, sessions,
//! and for admins the users).
//!
//! Every handler answers with HTML. After a change, the browser is sent
//! back to the account page (303) with a `done` word the page turns into
//! a notice, so reloading never repeats a change. Password checks run on a
//! blocking thread, at most [`super::PASSWORD_CHECKS`] at once.

use std::fmt::Write;
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use hitvault_accounts::{
    AccountError, AddressKey, NewSession, RECOVERY_CODES, SignIn, SignInError, User, UserId, secret,
};
use serde_json::{Value, json};

use super::common::{
    account_error, account_message, audit_reset, blocking, fmt_time, form, session,
};
use super::{
    AccountState, FORM_COOKIE, SESSION_COOKIE, clear_cookie, cookie, csrf_field, now, now_ms,
    set_cookie,
};
use crate::access::{Caller, Denied, admit, request_host};
use crate::audit::{Actor, Kind, Recorder};
use crate::dashboard::html::{esc, message_page, page};
use crate::dashboard::{cross_site, html, security_headers, see_other};
use crate::rules::{Face, Need, Routes};
use crate::stats_api::form_urlencoded;

/// The account routes; [`crate::app`] puts them behind [`layer`].
pub(crate) fn routes(state: AccountState) -> Routes {
    let own = Need::Session;
    Routes::new(Face::Page)
        .get("/setup/{token}", Need::Anyone, setup_page)
        .post("/setup/{token}", Need::Anyone, setup_submit)
        .get("/login", Need::Anyone, login_page)
        .post("/login", Need::Anyone, login_submit)
        .post("/login/code", Need::Anyone, code_submit)
        .post("/logout", Need::Anyone, logout)
        .get("/account", own, account_page)
        .post("/account/password", own, password_set)
        .post("/account/password/remove", own, password_remove)
        .post("/account/totp", own, totp_begin)
        .post("/account/totp/confirm", own, totp_confirm)
        .post("/account/totp/remove", own, totp_remove)
        .post("/account/recovery", own, recovery_new)
        .post("/account/passkeys/{credential}/rename", own, passkey_rename)
        .post("/account/passkeys/{credential}/remove", own, passkey_remove)
        .post("/account/sessions/{handle}/end", own, session_end)
        .post("/account/sessions/others/end", own, sessions_end_others)
        .post("/account/tokens", own, super::tokens::create)
        .post("/account/tokens/{id}/revoke", own, super::tokens::revoke)
        .post("/account/users", Need::Admin, user_add)
        .post("/account/users/{id}/reset", Need::Admin, user_reset)
        .post("/account/users/{id}/remove", Need::Admin, user_remove)
        .with_state(state)
}

/// The layer of the account routes: the security headers, the
/// cross-site check, the Host rule of [`admit`] (a foreign name is
/// refused; no session is needed to reach these pages), and the CSRF
/// token of every change a session makes.
pub(crate) async fn layer(
    State(state): State<AccountState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let verdict = admit(&peer, request_host(&req), &state.hostnames, || {
        state.session_of(req.headers())
    });
    let mut r = match verdict {
        Err(d @ Denied::ForeignHost(_)) => html(
            StatusCode::FORBIDDEN,
            message_page("Not addressed to this appliance", &d.message()),
        ),
        verdict => match cross_site(req.method(), req.headers()) {
            Some(why) => html(
                StatusCode::FORBIDDEN,
                message_page("Cross-site request refused", &format!("Refused: {why}.")),
            ),
            None => admitted(verdict.ok(), req, next).await,
        },
    };
    security_headers(&mut r);
    r
}

/// Runs a request the layer let through: a change a session makes to its
/// account (or its sign-out) must carry the session's CSRF token.
async fn admitted(caller: Option<Caller>, mut req: Request, next: Next) -> Response {
    if let Some(Caller::Session(s)) = &caller {
        let path = req.uri().path();
        if req.method() == Method::POST && (path.starts_with("/account/") || path == "/logout") {
            req = match super::check_csrf(req, &s.csrf).await {
                Ok(req) => req,
                Err(why) => {
                    return html(
                        StatusCode::FORBIDDEN,
                        message_page("Form refused", &format!("Refused: {why}.")),
                    );
                }
            };
        }
    }
    if let Some(c) = &caller {
        req.extensions_mut().insert(c.clone());
    }
    super::with_caller(caller, crate::dashboard::run_page(req, next)).await
}

fn field<'a>(f: &'a [(String, String)], name: &str) -> Option<&'a str> {
    f.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// A short description of the browser, for the sessions list.
pub(super) fn agent(headers: &HeaderMap) -> String {
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let browser = ["Edg/", "Firefox/", "Chrome/", "Safari/", "curl/"]
        .iter()
        .find(|b| ua.contains(*b))
        .map(|b| b.trim_end_matches('/').replace("Edg", "Edge"))
        .unwrap_or_else(|| "a browser".into());
    let os = [
        "Windows", "Android", "iPhone", "iPad", "Mac OS", "Linux", "CrOS",
    ]
    .iter()
    .find(|o| ua.contains(*o))
    .map(|o| o.replace("Mac OS", "macOS").replace("CrOS", "ChromeOS"))
    .unwrap_or_else(|| "an unknown system".into());
    format!("{browser} on {os}")
}

/// A redirect target from a form: a path on this site only.
pub(super) fn next_path(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_owned(),
        _ => "/sites".to_owned(),
    }
}

/// The session cookie of a new session, and where to go.
fn signed_in(state: &AccountState, s: &NewSession, to: &str) -> Response {
    let mut r = see_other(to);
    let age = state.accounts.policy().absolute_secs;
    let h = r.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &s.token, Some(age)),
    );
    h.append(header::SET_COOKIE, clear_cookie(FORM_COOKIE));
    r
}

/// A form shown before a session exists, with its double-submit token.
fn pre_session_page(status: StatusCode, title: &str, main: &str, token: &str) -> Response {
    let mut r = html(status, page(title, None, "page-auth", main));
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(FORM_COOKIE, token, Some(3600)),
    );
    r
}

/// Whether the pre-session form's token matches its cookie.
fn form_token_ok(headers: &HeaderMap, f: &[(String, String)]) -> bool {
    match (cookie(headers, FORM_COOKIE), field(f, "form")) {
        (Some(c), Some(v)) => !c.is_empty() && secret::same(c, v),
        _ => false,
    }
}

fn form_refused() -> Response {
    html(
        StatusCode::FORBIDDEN,
        message_page(
            "Form refused",
            "Refused: this form's token does not match the one this browser was given \
             (cookies off, or the page is old). Reload the page and try again.",
        ),
    )
}

fn too_many(secs: u64) -> Response {
    let mut r = html(
        StatusCode::TOO_MANY_REQUESTS,
        message_page(
            "Too many attempts",
            &format!("Too many failed sign-ins. Try again in {secs} seconds."),
        ),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    r
}

/// Runs a password check, at most [`super::PASSWORD_CHECKS`] at once.
async fn checked<T: Send + 'static>(
    state: &AccountState,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let _permit = state
        .checks
        .acquire()
        .await
        .expect("the semaphore is never closed");
    blocking(f).await
}

/// The audit actor of user `id` (anonymous if they are gone).
pub(super) fn user_actor(state: &AccountState, id: UserId) -> Actor {
    match state.accounts.user(id) {
        Some(u) => Actor::User {
            id: u.id,
            name: u.name,
        },
        None => Actor::Anonymous,
    }
}

/// Records a sign-in that started session `s`.
pub(super) async fn audit_sign_in(state: &AccountState, rec: &Recorder, s: &NewSession) {
    rec.as_actor(user_actor(state, s.user))
        .note(Kind::SignIn, None, json!({ "method": s.method }))
        .await;
}

/// Records a failed sign-in: as the user it was for when known, else as
/// anonymous with the name typed (cut to the longest user name).
pub(super) async fn audit_failed(
    rec: &Recorder,
    user: Option<&User>,
    typed: Option<&str>,
    method: &str,
) {
    let mut detail = json!({ "method": method });
    let actor = match user {
        Some(u) => Actor::User {
            id: u.id,
            name: u.name.clone(),
        },
        None => {
            if let Some(t) = typed {
                let name: String = t.chars().take(hitvault_accounts::MAX_NAME).collect();
                detail["name"] = Value::String(name);
            }
            Actor::Anonymous
        }
    };
    rec.as_actor(actor)
        .note(Kind::SignInFailed, None, detail)
        .await;
}

// ---- set-up -------------------------------------------------------------

async fn setup_page(State(state): State<AccountState>, Path(token): Path<String>) -> Response {
    let Some(invite) = state.accounts.invite_of(&token, now()) else {
        return html(
            StatusCode::NOT_FOUND,
            message_page(
                "This link has expired",
                "This set-up link has expired or was already used. A new one is printed on the \
                 console at every start while no admin exists; an admin can make one with \
                 `hitvault user add NAME` or `hitvault user reset NAME`.",
            ),
        );
    };
    let existing = invite.user.and_then(|id| state.accounts.user(id));
    setup_form(
        &state,
        existing.as_ref(),
        invite.admin,
        None,
        StatusCode::OK,
    )
}

fn setup_form(
    state: &AccountState,
    existing: Option<&User>,
    admin: bool,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let form_token = secret::token();
    let mut m = String::new();
    let title = match existing {
        Some(_) => "Set up your sign-in",
        None if admin => "Set up hitvault",
        None => "Create your account",
    };
    let _ = write!(m, "<section class=\"message auth\"><h1>{}</h1>", esc(title));
    if let Some(fp) = &state.ca_fingerprint {
        let _ = write!(
            m,
            "<p>This appliance's certificate authority has the SHA-256 fingerprint \
             <code class=\"fingerprint\">{}</code>. Compare it with the one on the appliance's \
             console before you trust it; <a href=\"/ca.crt\">download the CA certificate</a>.</p>",
            esc(fp)
        );
    }
    if let Some(e) = error {
        let _ = write!(
            m,
            "<p class=\"alert\" role=\"alert\" id=\"setup-error\">{}</p>",
            esc(e)
        );
    }
    let name = match existing {
        Some(u) => format!("<p>Account: <strong>{}</strong></p>", esc(&u.name)),
        None => "<label for=\"setup-name\">User name<input type=\"text\" name=\"name\" id=\"setup-name\" \
                 required maxlength=\"64\" autocomplete=\"username\" autofocus></label>"
            .to_owned(),
    };
    let _ = write!(
        m,
        "<p>Choose a password now; after this you can add a passkey (recommended) and an \
         authenticator app on your account page.</p>\
         <form method=\"post\" class=\"auth-form\" aria-label=\"{title}\">\
         <input type=\"hidden\" name=\"form\" value=\"{form_token}\">{name}\
         <label for=\"setup-password\">Password (at least {min} characters)<input type=\"password\" \
         name=\"password\" id=\"setup-password\" required minlength=\"{min}\" autocomplete=\"new-password\"></label>\
         <label for=\"setup-confirm\">Password again<input type=\"password\" name=\"confirm\" \
         id=\"setup-confirm\" required minlength=\"{min}\" autocomplete=\"new-password\"></label>\
         <button type=\"submit\">Create and sign in</button></form></section>",
        title = esc(title),
        min = hitvault_accounts::password::MIN_LEN,
    );
    pre_session_page(status, title, &m, &form_token)
}

async fn setup_submit(
    State(state): State<AccountState>,
    Path(token): Path<String>,
    rec: Recorder,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = form(&body);
    if !form_token_ok(&headers, &f) {
        return form_refused();
    }
    let Some(invite) = state.accounts.invite_of(&token, now()) else {
        return setup_page(State(state), Path(token)).await;
    };
    let existing = invite.user.and_then(|id| state.accounts.user(id));
    let password = field(&f, "password").unwrap_or("").to_owned();
    if field(&f, "confirm") != Some(password.as_str()) {
        return setup_form(
            &state,
            existing.as_ref(),
            invite.admin,
            Some("The two passwords differ."),
            StatusCode::BAD_REQUEST,
        );
    }
    let name = field(&f, "name").map(str::to_owned);
    let (accounts, t, agent) = (state.accounts.clone(), token.clone(), agent(&headers));
    let done = checked(&state, move || {
        accounts.accept_invite(&t, name.as_deref(), Some(&password), &agent, now())
    })
    .await;
    match done {
        Ok(s) => {
            let me = rec.as_actor(user_actor(&state, s.user));
            if existing.is_none() {
                let name = state.accounts.user(s.user).map(|u| u.name);
                me.note(
                    Kind::UserAdded,
                    None,
                    json!({ "name": name, "admin": invite.admin, "via": "set-up link" }),
                )
                .await;
            }
            me.note(Kind::PasswordSet, None, json!({ "via": "set-up link" }))
                .await;
            audit_sign_in(&state, &rec, &s).await;
            signed_in(&state, &s, "/account?done=welcome")
        }
        Err(AccountError::Journal(e)) => account_error(AccountError::Journal(e)),
        Err(e) => setup_form(
            &state,
            existing.as_ref(),
            invite.admin,
            Some(&e.to_string()),
            StatusCode::BAD_REQUEST,
        ),
    }
}

// ---- sign-in ------------------------------------------------------------

async fn login_page(RawQuery(q): RawQuery) -> Response {
    let next = q
        .as_deref()
        .map(form_urlencoded)
        .and_then(|f| field(&f, "next").map(str::to_owned));
    login_form(next.as_deref(), None, StatusCode::OK)
}

fn login_form(next: Option<&str>, error: Option<&str>, status: StatusCode) -> Response {
    let form_token = secret::token();
    let mut m = String::from("<section class=\"message auth\"><h1>Sign in</h1>");
    if let Some(e) = error {
        let _ = write!(m, "<p class=\"alert\" role=\"alert\">{}</p>", esc(e));
    }
    let _ = write!(
        m,
        "<p><button type=\"button\" id=\"passkey-signin\" class=\"passkey\">Sign in with a passkey</button></p>\
         <p class=\"passkey-status\" id=\"passkey-status\" role=\"status\" aria-live=\"polite\"></p>\
         <h2>Or with your password</h2>\
         <form method=\"post\" action=\"/login\" class=\"auth-form\" aria-label=\"Sign in with a password\">\
         <input type=\"hidden\" name=\"form\" value=\"{form_token}\">\
         <input type=\"hidden\" name=\"next\" value=\"{next}\">\
         <label for=\"login-name\">User name<input type=\"text\" name=\"name\" id=\"login-name\" required \
         maxlength=\"64\" autocomplete=\"username webauthn\"></label>\
         <label for=\"login-password\">Password<input type=\"password\" name=\"password\" \
         id=\"login-password\" required autocomplete=\"current-password\"></label>\
         <button type=\"submit\">Sign in</button></form></section>",
        next = esc(&next_path(next)),
    );
    pre_session_page(status, "Sign in", &m, &form_token)
}

async fn login_submit(
    State(state): State<AccountState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    rec: Recorder,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = form(&body);
    if !form_token_ok(&headers, &f) {
        return form_refused();
    }
    let next = next_path(field(&f, "next"));
    let name = field(&f, "name").unwrap_or("").to_owned();
    let password = field(&f, "password").unwrap_or("").to_owned();
    let (accounts, agent) = (state.accounts.clone(), agent(&headers));
    let addr = AddressKey::from(peer.ip());
    let typed = name.clone();
    let done = checked(&state, move || {
        accounts.sign_in_password(&name, &password, addr, &agent, now_ms())
    })
    .await;
    match done {
        Ok(SignIn::Done(s)) => {
            audit_sign_in(&state, &rec, &s).await;
            signed_in(&state, &s, &next)
        }
        Ok(SignIn::SecondStep(step)) => code_form(&step, &next, None, StatusCode::OK),
        Err(e) => {
            if matches!(e, SignInError::Failed) {
                let user = state.accounts.user_named(&typed);
                audit_failed(&rec, user.as_ref(), Some(&typed), "password").await;
            }
            sign_in_refused(e, &next)
        }
    }
}

fn sign_in_refused(e: SignInError, next: &str) -> Response {
    match e {
        SignInError::TooMany(secs) => too_many(secs),
        SignInError::Failed => {
            login_form(Some(next), Some(&e.to_string()), StatusCode::UNAUTHORIZED)
        }
        SignInError::Expired => login_form(
            Some(next),
            Some("That sign-in took too long or was already used; start again."),
            StatusCode::UNAUTHORIZED,
        ),
        SignInError::Journal(j) => account_error(AccountError::Journal(j)),
    }
}

fn code_form(step: &str, next: &str, error: Option<&str>, status: StatusCode) -> Response {
    let mut m = String::from("<section class=\"message auth\"><h1>Your code</h1>");
    if let Some(e) = error {
        let _ = write!(m, "<p class=\"alert\" role=\"alert\">{}</p>", esc(e));
    }
    let _ = write!(
        m,
        "<form method=\"post\" action=\"/login/code\" class=\"auth-form\" aria-label=\"Second step\">\
         <input type=\"hidden\" name=\"step\" value=\"{step}\">\
         <input type=\"hidden\" name=\"next\" value=\"{next}\">\
         <label for=\"login-code\">The 6-digit code of your authenticator app, or a recovery code\
         <input type=\"text\" name=\"code\" id=\"login-code\" required maxlength=\"20\" \
         autocomplete=\"one-time-code\" inputmode=\"text\" autofocus></label>\
         <button type=\"submit\">Continue</button></form></section>",
        step = esc(step),
        next = esc(next),
    );
    html(status, page("Your code", None, "page-auth", &m))
}

async fn code_submit(
    State(state): State<AccountState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    rec: Recorder,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = form(&body);
    let next = next_path(field(&f, "next"));
    let step = field(&f, "step").unwrap_or("").to_owned();
    let code = field(&f, "code").unwrap_or("").to_owned();
    let (accounts, agent) = (state.accounts.clone(), agent(&headers));
    let addr = AddressKey::from(peer.ip());
    let s2 = step.clone();
    let user = state.accounts.second_step_user(&step, now());
    let done = blocking(move || accounts.sign_in_second(&s2, &code, addr, &agent, now_ms())).await;
    match done {
        Ok(s) => {
            audit_sign_in(&state, &rec, &s).await;
            signed_in(&state, &s, &next)
        }
        Err(SignInError::Failed) => {
            audit_failed(&rec, user.as_ref(), None, "code").await;
            code_form(
                &step,
                &next,
                Some("That code is not right (or was used already)."),
                StatusCode::UNAUTHORIZED,
            )
        }
        Err(e) => sign_in_refused(e, &next),
    }
}

async fn logout(
    State(state): State<AccountState>,
    caller: Option<axum::Extension<Caller>>,
    rec: Recorder,
) -> Response {
    if let Some(axum::Extension(Caller::Session(s))) = caller {
        let (accounts, digest) = (state.accounts.clone(), s.digest.clone());
        if let Err(e) = blocking(move || accounts.end_session(&digest)).await {
            return account_error(e);
        }
        rec.note(Kind::SignOut, None, json!({ "session": &s.digest[..16] }))
            .await;
    }
    let mut r = see_other("/login");
    r.headers_mut()
        .append(header::SET_COOKIE, clear_cookie(SESSION_COOKIE));
    r
}

// ---- the account page ---------------------------------------------------

fn done_notice(done: &str) -> Option<&'static str> {
    Some(match done {
        "welcome" => {
            "Your account is ready. Add a passkey next: it signs you in without a password."
        }
        "password" => "Your password is set.",
        "password-removed" => "Your password is removed; you sign in with a passkey.",
        "totp" => {
            "Your authenticator app is set up: sign-ins with a password now ask for its code."
        }
        "totp-removed" => "The authenticator app is removed.",
        "passkey" => "The passkey is saved.",
        "passkey-removed" => "The passkey is removed.",
        "session-ended" => "That session has ended.",
        "others-ended" => "Every other session has ended.",
        "user-removed" => "The user is removed.",
        "token-revoked" => "The token is revoked: the next request that sends it is refused.",
        _ => return None,
    })
}

async fn account_page(
    State(state): State<AccountState>,
    caller: Option<axum::Extension<Caller>>,
    RawQuery(q): RawQuery,
) -> Response {
    let s = match session(caller) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let done = q
        .as_deref()
        .map(form_urlencoded)
        .and_then(|f| field(&f, "done").and_then(done_notice));
    let Some(user) = state.accounts.user(s.user.id) else {
        return see_other("/login");
    };
    html(
        StatusCode::OK,
        account_html(&state, &user, &s.digest, s.must_enrol, done, None),
    )
}

fn account_html(
    state: &AccountState,
    u: &User,
    this_session: &str,
    must_enrol: bool,
    notice: Option<&str>,
    extra: Option<&str>,
) -> String {
    let csrf = csrf_field();
    let mut m = format!("<h1>Account: {}</h1>", esc(&u.name));
    if must_enrol {
        m.push_str(
            "<p class=\"alert\" role=\"alert\">This instance requires a second factor. Add a passkey \
             or an authenticator app before you can use the dashboard.</p>",
        );
    }
    if let Some(n) = notice {
        let _ = write!(m, "<p class=\"notice\" role=\"status\">{}</p>", esc(n));
    }
    if let Some(x) = extra {
        m.push_str(x);
    }
    // Passkeys.
    let _ = write!(
        m,
        "<section class=\"card\" aria-labelledby=\"h-passkeys\"><h2 id=\"h-passkeys\">Passkeys</h2>"
    );
    if u.passkeys.is_empty() {
        m.push_str("<p>No passkey yet. A passkey signs you in with this device's screen lock or a security key, and cannot be phished.</p>");
    } else {
        m.push_str("<table><thead><tr><th scope=\"col\">Name</th><th scope=\"col\">Added</th><th scope=\"col\">Last used</th><th scope=\"col\">Actions</th></tr></thead><tbody>");
        for p in &u.passkeys {
            let c = esc(&p.credential);
            let _ = write!(
                m,
                "<tr><td>{name}</td><td>{added}</td><td>{used}</td><td>\
                 <form method=\"post\" action=\"/account/passkeys/{c}/rename\" class=\"inline\">{csrf}\
                 <label class=\"visually-hidden\" for=\"rename-{c}\">New name for {name}</label>\
                 <input type=\"text\" name=\"name\" id=\"rename-{c}\" maxlength=\"64\" required value=\"{name}\">\
                 <button type=\"submit\">Rename</button></form> \
                 <form method=\"post\" action=\"/account/passkeys/{c}/remove\" class=\"inline\">{csrf}\
                 <button type=\"submit\" class=\"danger\" aria-label=\"Remove passkey {name}\">Remove</button></form>\
                 </td></tr>",
                name = esc(&p.name),
                added = fmt_time(p.created),
                used = p.last_used.map(fmt_time).unwrap_or_else(|| "never".into()),
            );
        }
        m.push_str("</tbody></table>");
    }
    let _ = write!(
        m,
        "<div class=\"controls\" data-csrf=\"{token}\" id=\"passkey-add-form\">\
         <label for=\"passkey-name\">Name of the new passkey<input type=\"text\" id=\"passkey-name\" \
         maxlength=\"64\" value=\"Passkey\"></label>\
         <button type=\"button\" id=\"passkey-add\">Add a passkey</button></div>\
         <p class=\"passkey-status\" id=\"passkey-status\" role=\"status\" aria-live=\"polite\"></p></section>",
        token = esc(current_csrf().as_deref().unwrap_or("")),
    );
    // Password.
    let _ = write!(
        m,
        "<section class=\"card\" aria-labelledby=\"h-password\"><h2 id=\"h-password\">Password</h2><p>{}</p>\
         <form method=\"post\" action=\"/account/password\" class=\"controls\" aria-label=\"Set password\">{csrf}\
         <label for=\"pw-new\">New password<input type=\"password\" name=\"password\" id=\"pw-new\" required \
         minlength=\"{min}\" autocomplete=\"new-password\"></label>\
         <label for=\"pw-confirm\">Again<input type=\"password\" name=\"confirm\" id=\"pw-confirm\" required \
         minlength=\"{min}\" autocomplete=\"new-password\"></label>\
         <button type=\"submit\">{verb} password</button></form>{remove}</section>",
        match &u.password {
            Some((_, at)) => format!("Set on {}.", fmt_time(*at)),
            None => "No password: you sign in with a passkey.".into(),
        },
        min = hitvault_accounts::password::MIN_LEN,
        verb = if u.password.is_some() {
            "Change"
        } else {
            "Set"
        },
        remove = if u.password.is_some() && !u.passkeys.is_empty() {
            format!(
                "<form method=\"post\" action=\"/account/password/remove\" class=\"inline\">{csrf}\
                 <button type=\"submit\" class=\"danger\">Remove password</button></form>"
            )
        } else {
            String::new()
        },
    );
    // TOTP and recovery codes.
    let _ = write!(
        m,
        "<section class=\"card\" aria-labelledby=\"h-totp\"><h2 id=\"h-totp\">Authenticator app</h2>{}</section>",
        match &u.totp {
            Some(t) => format!(
                "<p>Set up on {}. Sign-ins with a password ask for its code.</p>\
                 <form method=\"post\" action=\"/account/totp/remove\" class=\"inline\">{csrf}\
                 <button type=\"submit\" class=\"danger\">Remove authenticator app</button></form>",
                fmt_time(t.at)
            ),
            None => format!(
                "<p>Not set up. An authenticator app (TOTP) adds a 6-digit code to password sign-ins.</p>\
                 <form method=\"post\" action=\"/account/totp\" class=\"inline\">{csrf}\
                 <button type=\"submit\">Set up an authenticator app</button></form>"
            ),
        }
    );
    let _ = write!(
        m,
        "<section class=\"card\" aria-labelledby=\"h-recovery\"><h2 id=\"h-recovery\">Recovery codes</h2>\
         <p>{}</p><form method=\"post\" action=\"/account/recovery\" class=\"inline\">{csrf}\
         <button type=\"submit\">Make {RECOVERY_CODES} new codes</button></form></section>",
        match u.recovery_created {
            Some(at) => format!(
                "{} of {RECOVERY_CODES} codes left, made on {}. Each works once, in place of an app's code.",
                u.recovery.len(),
                fmt_time(at)
            ),
            None =>
                "None yet. Recovery codes sign you in when your authenticator app is lost.".into(),
        }
    );
    m.push_str(&super::tokens::section(state, u));
    // Sessions.
    m.push_str(
        "<section class=\"card\" aria-labelledby=\"h-sessions\"><h2 id=\"h-sessions\">Sessions</h2>\
         <table><thead><tr><th scope=\"col\">Browser</th><th scope=\"col\">Signed in</th>\
         <th scope=\"col\">Last used</th><th scope=\"col\">How</th><th scope=\"col\">Actions</th></tr></thead><tbody>",
    );
    for s in state.accounts.sessions_of(u.id) {
        let this = this_session.starts_with(&s.handle);
        let _ = write!(
            m,
            "<tr><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&s.agent),
            if this { " (this one)" } else { "" },
            fmt_time(s.created),
            fmt_time(s.last_seen),
            esc(&s.method),
            if this {
                format!(
                    "<form method=\"post\" action=\"/logout\" class=\"inline\">{csrf}\
                     <button type=\"submit\">Sign out</button></form>"
                )
            } else {
                format!(
                    "<form method=\"post\" action=\"/account/sessions/{h}/end\" class=\"inline\">{csrf}\
                     <button type=\"submit\" class=\"danger\">End</button></form>",
                    h = esc(&s.handle)
                )
            },
        );
    }
    let _ = write!(
        m,
        "</tbody></table><form method=\"post\" action=\"/account/sessions/others/end\" class=\"inline\">{csrf}\
         <button type=\"submit\" class=\"danger\">Sign out everywhere else</button></form></section>"
    );
    if u.admin {
        m.push_str(&users_html(state, u));
    }
    page("Account", None, "page-account", &m)
}

fn users_html(state: &AccountState, me: &User) -> String {
    let csrf = csrf_field();
    let mut m = String::from(
        "<section class=\"card\" aria-labelledby=\"h-users\"><h2 id=\"h-users\">Users</h2>\
         <table><thead><tr><th scope=\"col\">Name</th><th scope=\"col\">Role</th><th scope=\"col\">Factors</th>\
         <th scope=\"col\">Actions</th></tr></thead><tbody>",
    );
    for u in state.accounts.users() {
        let mut factors = Vec::new();
        if !u.passkeys.is_empty() {
            factors.push(format!("{} passkey(s)", u.passkeys.len()));
        }
        if u.password.is_some() {
            factors.push("password".to_owned());
        }
        if u.totp.is_some() {
            factors.push("app".to_owned());
        }
        let actions = if u.id == me.id {
            String::new()
        } else {
            format!(
                "<form method=\"post\" action=\"/account/users/{id}/reset\" class=\"inline\">{csrf}\
                 <button type=\"submit\" class=\"danger\" aria-label=\"Reset the factors of {n}\">Reset factors</button></form> \
                 <form method=\"post\" action=\"/account/users/{id}/remove\" class=\"inline\">{csrf}\
                 <button type=\"submit\" class=\"danger\" aria-label=\"Remove {n}\">Remove</button></form>",
                id = u.id,
                n = esc(&u.name)
            )
        };
        let _ = write!(
            m,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{actions}</td></tr>",
            esc(&u.name),
            if u.admin { "admin" } else { "user" },
            if factors.is_empty() {
                "none yet".into()
            } else {
                esc(&factors.join(", "))
            },
        );
    }
    let _ = write!(
        m,
        "</tbody></table><h3>Add a user</h3>\
         <form method=\"post\" action=\"/account/users\" class=\"controls\" aria-label=\"Add a user\">{csrf}\
         <label for=\"user-name\">User name<input type=\"text\" name=\"name\" id=\"user-name\" required maxlength=\"64\"></label>\
         <label for=\"user-admin\">Role<select name=\"admin\" id=\"user-admin\"><option value=\"no\">user</option>\
         <option value=\"yes\">admin</option></select></label>\
         <button type=\"submit\">Add and make a set-up link</button></form>\
         <p><a href=\"/admin/audit\" id=\"audit-link\">The audit log</a>: who signed in, changed or exported what.</p>\
         <p><a href=\"/admin/usb-takeouts\" id=\"usb-takeouts-link\">USB Takeout</a>: the Takeouts written onto USB sticks, and why one failed.</p></section>"
    );
    m
}

fn current_csrf() -> Option<String> {
    super::current().and_then(|c| c.csrf().map(str::to_owned))
}

/// The absolute link of an invite token, from the request's own host.
fn invite_link(headers: &HeaderMap, token: &str) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    let scheme = if crate::access::loopback_host(host) {
        "http"
    } else {
        "https"
    };
    format!("{scheme}://{host}/setup/{token}")
}

/// A change of the signed-in user's own account, recorded as `kind`
/// with the detail `f` returns, then back to the page.
async fn own_change(
    state: &AccountState,
    caller: Option<axum::Extension<Caller>>,
    rec: &Recorder,
    done: &str,
    kind: Option<Kind>,
    f: impl FnOnce(&hitvault_accounts::Accounts, UserId) -> Result<Value, AccountError> + Send + 'static,
) -> Response {
    let s = match session(caller) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let (accounts, id) = (state.accounts.clone(), s.user.id);
    match blocking(move || f(&accounts, id)).await {
        Ok(detail) => {
            if let Some(k) = kind {
                rec.note(k, None, detail).await;
            }
            see_other(&format!("/account?done={done}"))
        }
        Err(e) => account_error(e),
    }
}

async fn password_set(
    State(state): State<AccountState>,
    caller: Option<axum::Extension<Caller>>,
    rec: Recorder,
    body: Bytes,
) -> Response {
    let f = form(&body);
    let pw = field(&f, "password").unwrap_or("").to_owned();
    if field(&f, "confirm") != Some(pw.as_str()) {
        return account_error(AccountError::Invalid("The two passwords differ.".into()));
    }
    let _permit = state.checks.clone().acquire_owned().await;
    own_change(
        &state,
        caller,
        &rec,
        "password",
        Some(Kind::PasswordSet),
        move |a, id| a.set_password(id, &pw, now()).map(|()| Value::Null),
    )
    .await
}

async fn password_remove(
    State(state): State<AccountState>,
    caller: Option<axum::Extension<Caller>>,
    rec: Recorder,
) -> Response {
    own_change(
        &state,
        caller,
        &rec,
        "password-removed",
        Some(Kind::PasswordRemoved),
        |a, id| a.remove_password(id).map(|()| Value::Null),
    )
    .await
}

async fn totp_begin(
    State(state): State<AccountState>,
    caller: Option<axum::Extension<Caller>>,
) -> Response {
    let s = match session(caller) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let issuer = state
        .hostnames
        .first()
        .cloned()
        .unwrap_or_else(|| "hitvault".into());
    match state.accounts.begin_totp(s.user.id, &issuer, now()) {
        Ok((secret, uri)) => totp_confirm_page(&secret, &uri, None, StatusCode::OK),
        Err(e) => account_error(e),
    }
}

fn totp_confirm_page(secret: &str, uri: &str, error: Option<&str>, status: StatusCode) -> Response {
    let csrf = csrf_field();
    let grouped: Vec<String> = secret
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    let mut m = String::from("<section class=\"message\"><h1>Set up an authenticator app</h1>");
    if let Some(e) = error {
        let _ = write!(m, "<p class=\"alert\" role=\"alert\">{}</p>", esc(e));
    }
    let _ = write!(
        m,
        "<p>In your authenticator app, add an account with this key (time-based, 6 digits, 30 seconds):</p>\
         <p><code class=\"totp-secret\" id=\"totp-secret\">{key}</code></p>\
         <p>or open this link on the device that has the app: <a href=\"{uri}\">{uri_text}</a></p>\
         <form method=\"post\" action=\"/account/totp/confirm\" class=\"controls\" aria-label=\"Confirm the app\">{csrf}\
         <label for=\"totp-code\">The code the app shows now<input type=\"text\" name=\"code\" id=\"totp-code\" \
         required maxlength=\"6\" inputmode=\"numeric\" autocomplete=\"one-time-code\" autofocus></label>\
         <button type=\"submit\">Confirm</button></form>\
         <p><a href=\"/account\">Cancel</a></p></section>",
        key = esc(&grouped.join(" ")),
        uri = esc(uri),
        uri_text = esc(uri),
    );
    html(status, page("Authenticator app", None, "page-account", &m))
}

async fn totp_confirm(
    State(state): State<AccountState>,
    caller: Option<axum::Extension<Caller>>,
    rec: Recorder,
    body: Bytes,
) -> Response {
    let f = form(&body);
    let code = field(&f, "code").unwrap_or("").to_owned();
    own_change(
        &state,
        caller,
        &rec,
        "totp",
        Some(Kind::TotpSet),
        move |a, id| a.confirm_totp(id, &code, now()).map(|()| Value::Null),
    )
    .await
}

async fn totp_remove(
    State(state): State<AccountState>,
    caller: Option<axum::Extension<Caller>>,
    rec: Recorder,
) -> Response {
    own_change(
        &state,
        caller,
        &rec,
        "totp-removed",
        Some(Kind::TotpRemoved),
        |a, id| a.remove_totp(id).map(|()| Value::Null),
    )
    .await
}

async fn recovery_new(
    State(state): State<AccountState>,
    caller: Option<axum::Extension<Caller>>,
    rec: Recorder,
) -> Response {
    let s = match session(caller) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let (accounts, id) = (state.accounts.clone(), s.user.id);
    match blocking(move || accounts.new_recovery_codes(id, now())).await {
        Ok(codes) => {
            rec.note(
                Kind::RecoveryCodesSet,
                None,
                json!({ "codes": codes.len() }),
            )
            .await;
            let mut m = String::from(
                "<section class=\"message\"><h1>Your recovery codes</h1>\
                 <p>Keep these somewhere safe, away from this device. Each code works once, in place of \
                 your authenticator app's code. They are shown only now; your old codes no longer work.</p>\
                 <ol class=\"recovery-codes\" id=\"recovery-codes\">",
            );
            for c in &codes {
                let _ = write!(m, "<li><code>{}</code></li>", esc(c));
            }
            m.push_str("</ol><p><a href=\"/account\">Back to your account</a></p></section>");
            html(
                StatusCode::OK,
                page("Recovery codes", None, "page-account", &m),
            )
        }
        Err(e) => account_error(e),
    }
}

async fn passkey_rename(
    State(state): State<AccountState>,
    caller: Option<axum::Extension<Caller>>,
    rec: Recorder,
    Path(credential): Path<String>,
    body: Bytes,
) -> Response {
    let f = form(&body);
    let name = field(&f, "name").unwrap_or("").to_owned();
    own_change(&state, caller, &rec, "passkey", None, move |a, id| {
        a.rename_passkey(id, &credential, &name)
            .map(|()| Value::Null)
    })
    .await
}

async fn passkey_remove(
    State(state): State<AccountState>,
    caller: Option<axum::Extension<Caller>>,
    rec: Recorder,
    Path(credential): Path<String>,
) -> Response {
    own_change(
        &state,
        caller,
        &rec,
        "passkey-removed",
        Some(Kind::PasskeyRemoved),
        move |a, id| {
            let name = a
                .user(id)
                .and_then(|u| u.passkeys.into_iter().find(|p| p.credential == credential))
                .map(|p| p.name);
            a.remove_passkey(id, &credential)?;
            Ok(json!({ "name": name, "credential": credential }))
        },
    )
    .await
}

async fn session_end(
    State(state): State<AccountState>,
    caller: Option<axum::Extension<Caller>>,
    rec: Recorder,
    Path(handle): Path<String>,
) -> Response {
    own_change(
        &state,
        caller,
        &rec,
        "session-ended",
        Some(Kind::SessionEnded),
        move |a, id| {
            a.end_session_handle(id, &handle)?;
            Ok(json!({ "how": "one", "session": handle, "sessions": 1 }))
        },
    )
    .await
}

async fn sessions_end_others(
    State(state): State<AccountState>,
    caller: Option<axum::Extension<Caller>>,
    rec: Recorder,
) -> Response {
    let keep = match &caller {
        Some(axum::Extension(Caller::Session(s))) => s.digest.clone(),
        _ => return see_other("/login?next=/account"),
    };
    own_change(
        &state,
        caller,
        &rec,
        "others-ended",
        Some(Kind::SessionEnded),
        move |a, id| {
            let n = a.end_sessions_of(id, Some(&keep))?;
            Ok(json!({ "how": "others", "sessions": n }))
        },
    )
    .await
}

/// The signed-in admin, or the answer to send instead.
fn admin(
    state: &AccountState,
    caller: Option<axum::Extension<Caller>>,
) -> Result<std::sync::Arc<hitvault_accounts::SessionView>, Box<Response>> {
    let s = session(caller)?;
    match state.accounts.user(s.user.id) {
        Some(u) if u.admin => Ok(s),
        _ => Err(Box::new(html(
            StatusCode::FORBIDDEN,
            account_message("Admins only", "Only an admin manages users."),
        ))),
    }
}

fn link_page(headers: &HeaderMap, title: &str, text: &str, token: &str) -> Response {
    let link = invite_link(headers, token);
    let m = format!(
        "<section class=\"message\"><h1>{}</h1><p>{}</p>\
         <p><code class=\"invite-link\" id=\"invite-link\">{}</code></p>\
         <p>The link works once, for one hour. Send it over a channel you trust.</p>\
         <p><a href=\"/account\">Back to your account</a></p></section>",
        esc(title),
        esc(text),
        esc(&link)
    );
    html(StatusCode::OK, page(title, None, "page-account", &m))
}

async fn user_add(
    State(state): State<AccountState>,
    caller: Option<axum::Extension<Caller>>,
    rec: Recorder,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = admin(&state, caller) {
        return *r;
    }
    let f = form(&body);
    let name = field(&f, "name").unwrap_or("").to_owned();
    let is_admin = field(&f, "admin") == Some("yes");
    let accounts = state.accounts.clone();
    let n = name.clone();
    let made = blocking(move || {
        let id = accounts.add_user(&n, is_admin, now())?;
        accounts.invite(Some(id), is_admin, now())
    })
    .await;
    match made {
        Ok(token) => {
            rec.note(
                Kind::UserAdded,
                None,
                json!({ "name": name, "admin": is_admin }),
            )
            .await;
            link_page(
                &headers,
                "User added",
                &format!("{name} sets up their sign-in with this link:"),
                &token,
            )
        }
        Err(e) => account_error(e),
    }
}

async fn user_reset(
    State(state): State<AccountState>,
    caller: Option<axum::Extension<Caller>>,
    rec: Recorder,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Response {
    if let Err(r) = admin(&state, caller) {
        return *r;
    }
    let accounts = state.accounts.clone();
    let target = state.accounts.user(id);
    let sessions = state.accounts.sessions_of(id).len();
    match blocking(move || accounts.reset_factors(id, now())).await {
        Ok(token) => {
            if let Some(u) = &target {
                audit_reset(&rec, u, sessions).await;
            }
            link_page(
                &headers,
                "Factors reset",
                "Every factor and session of this user has ended. They set up their sign-in again with this link:",
                &token,
            )
        }
        Err(e) => account_error(e),
    }
}

async fn user_remove(
    State(state): State<AccountState>,
    caller: Option<axum::Extension<Caller>>,
    rec: Recorder,
    Path(id): Path<u64>,
) -> Response {
    let me = match admin(&state, caller) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    if me.user.id == id {
        return account_error(AccountError::Conflict(
            "remove your own account from another admin's".into(),
        ));
    }
    let accounts = state.accounts.clone();
    let name = state.accounts.user(id).map(|u| u.name);
    match blocking(move || accounts.remove_user(id)).await {
        Ok(()) => {
            rec.note(Kind::UserRemoved, None, json!({ "name": name, "id": id }))
                .await;
            see_other("/account?done=user-removed")
        }
        Err(e) => account_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_stay_on_this_site() {
        assert_eq!(next_path(Some("/sites/a?x=1")), "/sites/a?x=1");
        for bad in [
            "//evil.test",
            "https://evil.test",
            "/\\evil.test",
            "",
            "sites",
        ] {
            assert_eq!(next_path(Some(bad)), "/sites", "{bad}");
        }
        assert_eq!(next_path(None), "/sites");
    }

    #[test]
    fn agents_are_summarised() {
        let mut h = HeaderMap::new();
        h.insert(
            header::USER_AGENT,
            HeaderValue::from_static(
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/156.0 Safari/537.36",
            ),
        );
        assert_eq!(agent(&h), "Chrome on Linux");
        assert_eq!(agent(&HeaderMap::new()), "a browser on an unknown system");
    }
}
