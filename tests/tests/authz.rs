//! Who may do what, through the real daemon: every route of its router
//! (read from `GET /api/v1/routes`, the table the router is built from, so
//! a new route cannot escape) against every kind of caller, each cell
//! expected from the rules written here, not from the daemon's table.
//! Also: API tokens expire at the edge of their second, revocation takes
//! effect on the next request and ends an open realtime stream, and batch
//! ingest takes a token with the `ingest` scope.
//!
//! Callers speak plain HTTP from 127.0.0.2 with `Host: hitvault.test` (a
//! configured hostname), which the daemon treats as a client of the LAN;
//! the operator is 127.0.0.1 addressing `localhost`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hitvault_tests::{Daemon, Reply, connect_from, hitvault, request_from};

const HOST: &str = "hitvault.test";
const PASSWORD: &str = "correct horse battery";
const LAN: &str = "127.0.0.2";

fn start() -> Daemon {
    Daemon::start(&[
        ("HITVAULT_HOSTNAMES", HOST),
        ("HITVAULT_SITES", "a.test,b.test"),
    ])
}

#[derive(Clone, Debug)]
enum Auth {
    /// No credential, from the LAN.
    Nothing,
    /// The operator: loopback, addressing `localhost`.
    Local,
    /// A session cookie and its CSRF token.
    Session { cookie: String, csrf: String },
    /// `Authorization: Bearer`.
    Bearer(String),
    /// A share link's pass cookie (`__Host-hv_share`), nothing else.
    SharePass(String),
}

/// Sends one request as `auth`; returns the status and headers (the body
/// is read only when `body` is asked for: streams never end).
fn send(d: &Daemon, auth: &Auth, method: &str, path: &str, body: &str, json: bool) -> Reply {
    let port = d.addr.port();
    let (from, host) = match auth {
        Auth::Local => ("127.0.0.1", format!("localhost:{port}")),
        _ => (LAN, format!("{HOST}:{port}")),
    };
    let origin = format!("http://{host}");
    let mut headers: Vec<(String, String)> = vec![
        ("Host".into(), host.clone()),
        ("User-Agent".into(), "Mozilla/5.0 Chrome/156.0".into()),
        ("Connection".into(), "close".into()),
    ];
    match auth {
        Auth::Session { cookie, csrf } => {
            headers.push(("Cookie".into(), format!("__Host-hv_session={cookie}")));
            headers.push(("X-CSRF-Token".into(), csrf.clone()));
        }
        Auth::Bearer(t) => headers.push(("Authorization".into(), format!("Bearer {t}"))),
        Auth::SharePass(p) => headers.push(("Cookie".into(), format!("__Host-hv_share={p}"))),
        Auth::Nothing | Auth::Local => {}
    }
    if method != "GET" {
        headers.push(("Origin".into(), origin));
        headers.push((
            "Content-Type".into(),
            if json {
                "application/json"
            } else {
                "application/x-www-form-urlencoded"
            }
            .into(),
        ));
    }
    let mut s = connect_from(from.parse().unwrap(), d.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    for (k, v) in &headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).expect("status line");
    if line.is_empty() {
        // Closed without an answer (metrics refuse clients off this machine).
        return Reply {
            status: 0,
            headers: Vec::new(),
            body: Vec::new(),
        };
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: bad status line {line:?}"));
    let mut hs = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            hs.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let streamed = hs
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("content-type") && v.starts_with("text/event-stream"))
        || hs
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let mut body = Vec::new();
    if !streamed {
        let _ = r.read_to_end(&mut body);
    }
    Reply {
        status,
        headers: hs,
        body,
    }
}

fn text(r: &Reply) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

fn hidden(page: &str, name: &str) -> Option<String> {
    let at = page.find(&format!("name=\"{name}\" value=\""))?;
    let rest = &page[at + name.len() + 15..];
    Some(rest[..rest.find('"')?].to_owned())
}

fn set_cookie(r: &Reply, name: &str) -> Option<String> {
    r.headers.iter().find_map(|(k, v)| {
        let (pair, _) = v.split_once(';').unwrap_or((v, ""));
        let (n, value) = pair.split_once('=')?;
        (k.eq_ignore_ascii_case("set-cookie") && n == name && !value.is_empty())
            .then(|| value.to_owned())
    })
}

fn enc(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Runs the CLI on the daemon's data dir; asserts success; its stdout.
fn cli(d: &Daemon, args: &[&str]) -> String {
    let data = d.data_dir.to_str().unwrap().to_owned();
    let mut all = vec!["--data-dir", data.as_str()];
    all.extend_from_slice(args);
    let out = hitvault(&all);
    assert!(
        out.status.success(),
        "hitvault {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Follows a set-up link (a path): sets the password (and the name, for
/// the first admin); returns the session it starts.
fn set_up(d: &Daemon, path: &str, name: Option<&str>) -> Auth {
    let page = send(d, &Auth::Nothing, "GET", path, "", false);
    assert_eq!(page.status, 200, "{}", text(&page));
    let form_cookie = set_cookie(&page, "__Host-hv_form").expect("form cookie");
    let form = hidden(&text(&page), "form").expect("form token");
    let mut body = format!(
        "form={}&password={}&confirm={}",
        enc(&form),
        enc(PASSWORD),
        enc(PASSWORD)
    );
    if let Some(n) = name {
        body.push_str(&format!("&name={n}"));
    }
    let port = d.addr.port();
    let host = format!("{HOST}:{port}");
    let r = request_from(
        LAN.parse().unwrap(),
        d.addr,
        "POST",
        path,
        &[
            ("Host", host.as_str()),
            ("Origin", &format!("http://{host}")),
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", &format!("__Host-hv_form={form_cookie}")),
            ("User-Agent", "Mozilla/5.0 Chrome/156.0"),
        ],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 303, "{}", text(&r));
    let cookie = set_cookie(&r, "__Host-hv_session").expect("a session");
    let mut auth = Auth::Session {
        cookie,
        csrf: String::new(),
    };
    let account = send(d, &auth, "GET", "/account", "", false);
    let csrf = hidden(&text(&account), "csrf").expect("the account page's CSRF token");
    if let Auth::Session { csrf: c, .. } = &mut auth {
        *c = csrf;
    }
    auth
}

/// The set-up link's path in `printed` (the CLI's or the daemon's log).
fn link_in(printed: &str) -> String {
    let at = printed
        .find("/setup/")
        .unwrap_or_else(|| panic!("no set-up link in:\n{printed}"));
    printed[at..].split_whitespace().next().unwrap().to_owned()
}

/// A user made with the CLI, given `role` on `site`, signed in.
fn user(d: &Daemon, name: &str, role: Option<(&str, &str)>) -> Auth {
    let printed = cli(d, &["user", "add", name]);
    let auth = set_up(d, &link_in(&printed), None);
    if let Some((site, role)) = role {
        cli(d, &["user", "role", name, site, role]);
    }
    auth
}

/// A token made with the CLI; its secret.
fn token(d: &Daemon, user: &str, name: &str, scopes: &[&str], sites: &[&str], exp: &str) -> String {
    let mut args = vec![
        "token",
        "create",
        "--user",
        user,
        "--name",
        name,
        "--expires",
        exp,
    ];
    for s in scopes {
        args.extend(["--scope", s]);
    }
    for s in sites {
        args.extend(["--site", s]);
    }
    let printed = cli(d, &args);
    printed
        .split_whitespace()
        .find(|w| w.starts_with("hvt_"))
        .unwrap_or_else(|| panic!("no token printed:\n{printed}"))
        .to_owned()
}

fn token_id(d: &Daemon, name: &str) -> u64 {
    let list: serde_json::Value =
        serde_json::from_str(&cli(d, &["token", "list", "--json"])).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .and_then(|t| t["id"].as_u64())
        .unwrap_or_else(|| panic!("no token {name}: {list}"))
}

/// What the test expects of a route, written here from the rules.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Class {
    /// Open to anyone: not asserted in the matrix.
    Anyone,
    /// A signed-in user's own pages.
    Session,
    /// Anyone admitted: operator, session, token (on JSON routes).
    Admitted,
    View,
    Edit,
    Export,
    /// A site's members and share links: its owners, the admins.
    Manage,
    /// An instance admin: an admin's session, the operator, an admin's
    /// token with the admin scope and no sites (on JSON routes).
    Admin,
    /// An admin's own session (user management pages).
    AdminSession,
}

/// The class of each route, by `METHOD path`. A route of the daemon's
/// table that is missing here fails the test: decide its rule and add it.
fn classes() -> BTreeMap<&'static str, Class> {
    use Class::*;
    BTreeMap::from([
        ("GET /hv.js", Anyone),
        ("POST /api/collect", Anyone),
        ("OPTIONS /api/collect", Anyone),
        ("POST /api/event", Anyone),
        ("OPTIONS /api/event", Anyone),
        ("POST /api/ingest/batch", Anyone),
        ("GET /healthz", Anyone),
        ("GET /readyz", Anyone),
        ("GET /metrics", Anyone),
        ("GET /ca.crt", Anyone),
        ("GET /api/v1/stats/overview", View),
        ("GET /api/v1/stats/goals", View),
        ("GET /api/v1/stats/funnel", View),
        ("GET /api/v1/stats/props", View),
        ("GET /api/v1/stats/realtime", View),
        ("GET /api/v1/sites/{site}/goals", View),
        ("POST /api/v1/sites/{site}/goals", Edit),
        ("DELETE /api/v1/sites/{site}/goals/{id}", Edit),
        ("GET /api/v1/sites/{site}/funnels", View),
        ("POST /api/v1/sites/{site}/funnels", Edit),
        ("DELETE /api/v1/sites/{site}/funnels/{id}", Edit),
        ("GET /api/v1/openapi.json", Admitted),
        ("GET /api/v1/routes", Admitted),
        ("GET /api/v1/takeout", Export),
        ("GET /api/v1/audit", Admin),
        // The control API over the network: an instance admin.
        ("GET /api/v1/control/sites", Admin),
        ("POST /api/v1/control/sites", Admin),
        ("GET /api/v1/control/takeout", Admin),
        ("POST /api/v1/control/backup", Admin),
        ("POST /api/v1/control/prune", Admin),
        ("POST /api/v1/control/import", Admin),
        ("POST /api/v1/control/import-plausible", Admin),
        ("GET /api/v1/control/users", Admin),
        ("POST /api/v1/control/users", Admin),
        ("DELETE /api/v1/control/users/{name}", Admin),
        ("POST /api/v1/control/users/{name}/reset", Admin),
        ("POST /api/v1/control/users/{name}/admin", Admin),
        ("POST /api/v1/control/users/{name}/role", Admin),
        ("GET /api/v1/control/tokens", Admin),
        ("POST /api/v1/control/tokens", Admin),
        ("DELETE /api/v1/control/tokens/{id}", Admin),
        ("GET /api/v1/control/audit", Admin),
        ("GET /api/v1/control/usb-takeouts", Admin),
        ("POST /api/v1/control/usb-takeouts", Admin),
        ("GET /api/v1/control/cluster", Admin),
        ("POST /api/v1/control/cluster/add", Admin),
        ("POST /api/v1/control/cluster/remove", Admin),
        ("GET /admin/audit", Admin),
        ("GET /admin/usb-takeouts", Admin),
        ("GET /admin/cluster", Admin),
        ("GET /", Admitted),
        ("GET /sites", Admitted),
        ("GET /sites/{site}", View),
        ("GET /sites/{site}/goals", View),
        ("GET /sites/{site}/funnels", View),
        ("GET /sites/{site}/events", View),
        ("GET /sites/{site}/realtime", View),
        ("GET /sites/{site}/export.csv", View),
        ("GET /sites/{site}/settings", Edit),
        ("POST /sites/{site}/settings/goals", Edit),
        ("POST /sites/{site}/settings/goals/{id}/delete", Edit),
        ("POST /sites/{site}/settings/funnels", Edit),
        ("POST /sites/{site}/settings/funnels/{id}/delete", Edit),
        ("GET /assets/{name}", Anyone),
        ("GET /setup/{token}", Anyone),
        ("POST /setup/{token}", Anyone),
        ("GET /login", Anyone),
        ("POST /login", Anyone),
        ("POST /login/code", Anyone),
        ("POST /logout", Anyone),
        ("POST /login/passkey/start", Anyone),
        ("POST /login/passkey/finish", Anyone),
        ("GET /account", Session),
        ("POST /account/password", Session),
        ("POST /account/password/remove", Session),
        ("POST /account/totp", Session),
        ("POST /account/totp/confirm", Session),
        ("POST /account/totp/remove", Session),
        ("POST /account/recovery", Session),
        ("POST /account/passkeys/start", Session),
        ("POST /account/passkeys/finish", Session),
        ("POST /account/passkeys/{credential}/rename", Session),
        ("POST /account/passkeys/{credential}/remove", Session),
        ("POST /account/sessions/{handle}/end", Session),
        ("POST /account/sessions/others/end", Session),
        ("POST /account/users", AdminSession),
        ("POST /account/users/{id}/reset", AdminSession),
        ("POST /account/users/{id}/remove", AdminSession),
        ("POST /account/tokens", Session),
        ("POST /account/tokens/{id}/revoke", Session),
        ("GET /sites/{site}/members", Manage),
        ("POST /sites/{site}/members", Manage),
        ("POST /sites/{site}/members/{id}/role", Manage),
        ("POST /sites/{site}/members/{id}/remove", Manage),
        ("GET /sites/{site}/shares", Manage),
        ("POST /sites/{site}/shares", Manage),
        ("POST /sites/{site}/shares/{id}/revoke", Manage),
        // The handler checks the link's secret (tests/tests/shares.rs).
        ("GET /share/{secret}", Anyone),
        ("POST /share/{secret}", Anyone),
    ])
}

/// The kinds of caller.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    Anonymous,
    Operator,
    Viewer,
    Editor,
    OtherOwner,
    Owner,
    Admin,
    /// Tokens of the owner of a.test, narrowed to a.test.
    ReadToken,
    IngestToken,
    ExportToken,
    /// The admin's token with the admin scope and no sites.
    AdminToken,
    ExpiredToken,
    RevokedToken,
    SignedOut,
    /// The pass of a live, password-protected share link of a.test.
    ShareLink,
    /// The pass of a share link that has expired.
    ExpiredShareLink,
}

const WHO: [Who; 16] = [
    Who::Anonymous,
    Who::Operator,
    Who::Viewer,
    Who::Editor,
    Who::OtherOwner,
    Who::Owner,
    Who::Admin,
    Who::ReadToken,
    Who::IngestToken,
    Who::ExportToken,
    Who::AdminToken,
    Who::ExpiredToken,
    Who::RevokedToken,
    Who::SignedOut,
    Who::ShareLink,
    Who::ExpiredShareLink,
];

/// The expected decision: `true` admitted (the handler answers), `false`
/// refused by the rules (401, 403, or a redirect to sign in).
fn expected(class: Class, who: Who, json_route: bool) -> bool {
    use Class as C;
    use Who::*;
    let role = |least: u8| match who {
        Viewer => least <= 1,
        Editor => least <= 2,
        Owner => least <= 3,
        Admin | Operator => true,
        _ => false,
    };
    match who {
        // A share link opens its own page (`/share/{secret}`, open to
        // anyone and checked by its handler), and nothing of the router.
        Anonymous | ExpiredToken | RevokedToken | SignedOut | ShareLink | ExpiredShareLink => false,
        ReadToken | IngestToken | ExportToken | AdminToken if !json_route => false,
        ReadToken => matches!(class, C::Admitted | C::View),
        IngestToken => matches!(class, C::Admitted),
        ExportToken => matches!(class, C::Admitted | C::Export),
        AdminToken => matches!(class, C::Admitted | C::Edit | C::Admin),
        Operator => !matches!(class, C::Session | C::AdminSession),
        _ => match class {
            C::Anyone | C::Session | C::Admitted => true,
            C::View => role(1),
            C::Edit => role(2),
            C::Export | C::Manage => role(3),
            C::Admin | C::AdminSession => who == Admin,
        },
    }
}

fn is_denial(r: &Reply) -> bool {
    matches!(r.status, 401 | 403)
        || (r.status == 303
            && r.header("location")
                .is_some_and(|l| l.starts_with("/login")))
}

/// A concrete request for a route of the table.
fn concrete(method: &str, path: &str) -> (String, String, bool) {
    let mut p = path
        .replace("{site}", "a.test")
        .replace("{id}", "999999")
        .replace("{credential}", "nope")
        .replace("{handle}", "0000000000000000")
        .replace("{token}", "nope")
        .replace("{secret}", "nope")
        .replace("{name}", "dashboard.css");
    let json =
        p.starts_with("/api/") || p.starts_with("/login/passkey") || p.contains("/passkeys/");
    if [
        "/api/v1/stats/overview",
        "/api/v1/stats/goals",
        "/api/v1/stats/funnel",
        "/api/v1/stats/props",
        "/api/v1/stats/realtime",
    ]
    .contains(&p.as_str())
    {
        p.push_str("?site=a.test");
    }
    if p == "/api/v1/takeout" {
        p.push_str("?site=a.test&format=csv");
    }
    let body = if json && method != "GET" { "{}" } else { "" };
    (p, body.to_owned(), json)
}

#[test]
fn every_route_answers_every_kind_of_caller_as_the_rules_say() {
    let d = start();
    // The first admin, through the daemon's own set-up link.
    let admin = set_up(&d, &link_in(&d.log_text()), Some("alice"));
    let viewer = user(&d, "vera", Some(("a.test", "viewer")));
    let editor = user(&d, "eddie", Some(("a.test", "editor")));
    let owner = user(&d, "olga", Some(("a.test", "owner")));
    let other = user(&d, "otto", Some(("b.test", "owner")));
    let signed_out = user(&d, "sam", Some(("a.test", "owner")));
    let r = send(&d, &signed_out, "POST", "/logout", "", false);
    assert_eq!(r.status, 303);
    let read = token(&d, "olga", "read", &["stats:read"], &["a.test"], "1d");
    let ingest = token(&d, "olga", "ingest", &["ingest"], &["a.test"], "1d");
    let export = token(&d, "olga", "export", &["export"], &["a.test"], "1d");
    let admin_token = token(&d, "alice", "admin", &["admin"], &[], "never");
    // Two seconds ahead: the CLI's clock and the daemon's may read seconds
    // apart around an edge, and a past expiry is refused at creation.
    let expired = token(&d, "olga", "short", &["stats:read", "export"], &[], "2s");
    let revoked = token(&d, "olga", "gone", &["stats:read", "export"], &[], "1d");
    cli(&d, &["token", "revoke", &token_id(&d, "gone").to_string()]);
    // Share links of a.test with a password, and their passes: one for a
    // day, one for the next 2 to 3 seconds.
    let soon = unix_now() as u64 + 3;
    let (live_link, live_pass) = share(&d, &admin, &[("days", "1")]);
    let (brief_link, brief_pass) = share(&d, &admin, &[("until", &rfc3339(soon))]);
    std::thread::sleep(Duration::from_millis(3100));
    while unix_now() < soon as f64 {
        std::thread::sleep(Duration::from_millis(100));
    }
    for (link, pass, want) in [
        (&live_link, &live_pass, 200),
        (&brief_link, &brief_pass, 404),
    ] {
        let r = send(&d, &Auth::SharePass(pass.clone()), "GET", link, "", false);
        assert_eq!(r.status, want, "{link}: {}", text(&r));
    }
    let auth = |w: Who| match w {
        Who::Anonymous => Auth::Nothing,
        Who::Operator => Auth::Local,
        Who::Viewer => viewer.clone(),
        Who::Editor => editor.clone(),
        Who::OtherOwner => other.clone(),
        Who::Owner => owner.clone(),
        Who::Admin => admin.clone(),
        Who::ReadToken => Auth::Bearer(read.clone()),
        Who::IngestToken => Auth::Bearer(ingest.clone()),
        Who::ExportToken => Auth::Bearer(export.clone()),
        Who::AdminToken => Auth::Bearer(admin_token.clone()),
        Who::ExpiredToken => Auth::Bearer(expired.clone()),
        Who::RevokedToken => Auth::Bearer(revoked.clone()),
        Who::SignedOut => signed_out.clone(),
        Who::ShareLink => Auth::SharePass(live_pass.clone()),
        Who::ExpiredShareLink => Auth::SharePass(brief_pass.clone()),
    };

    // Before the matrix (whose last row signs every session out).
    // Every site's Takeout: an admin (or the operator) only.
    let all = "/api/v1/takeout?format=csv";
    for (w, ok) in [
        (Who::Owner, false),
        (Who::ExportToken, false),
        (Who::Admin, true),
        (Who::Operator, true),
    ] {
        let r = send(&d, &auth(w), "GET", all, "", false);
        assert_eq!(!is_denial(&r), ok, "{w:?} {}: {}", r.status, text(&r));
    }
    // A site-scoped token is refused on another site, whatever its user may.
    let r = send(
        &d,
        &Auth::Bearer(read.clone()),
        "GET",
        "/api/v1/stats/overview?site=b.test",
        "",
        false,
    );
    assert_eq!(r.status, 403, "{}", text(&r));
    assert!(text(&r).contains("b.test"), "{}", text(&r));
    // A site named twice must be allowed both times.
    let r = send(
        &d,
        &viewer,
        "GET",
        "/api/v1/stats/overview?site=a.test&site=b.test",
        "",
        false,
    );
    assert_eq!(r.status, 403, "{}", text(&r));
    // The viewer's site list holds their site only, without settings links.
    let r = send(&d, &viewer, "GET", "/sites", "", false);
    let page = text(&r);
    assert!(
        page.contains("/sites/a.test") && !page.contains("/sites/b.test"),
        "{page}"
    );
    assert!(!page.contains("/settings"), "{page}");
    let r = send(&d, &editor, "GET", "/sites", "", false);
    assert!(text(&r).contains("/sites/a.test/settings"));

    // The table the router is built from.
    let table = send(&d, &Auth::Local, "GET", "/api/v1/routes", "", false);
    assert_eq!(table.status, 200, "{}", text(&table));
    let routes = table.json()["routes"].as_array().unwrap().clone();
    let classes = classes();
    let mut rows: Vec<(String, String, Class)> = Vec::new();
    for r in &routes {
        let (m, p) = (r["method"].as_str().unwrap(), r["path"].as_str().unwrap());
        let key = format!("{m} {p}");
        let class = *classes.get(key.as_str()).unwrap_or_else(|| {
            panic!("route {key} ({r}) is not in this test's matrix: decide who may call it")
        });
        rows.push((m.to_owned(), p.to_owned(), class));
    }
    // Sign-out ends the session it is sent with: last.
    rows.sort_by_key(|(m, p, _)| (m == "POST" && p == "/logout", p.clone(), m.clone()));

    let mut printed = format!("{:<52}", "route \\ caller");
    for w in WHO {
        printed.push_str(&format!(" {:>13}", format!("{w:?}")));
    }
    printed.push('\n');
    let (mut wrong, mut unexpected_2xx, mut cells) = (Vec::new(), 0, 0);
    for (m, p, class) in &rows {
        let (path, body, json) = concrete(m, p);
        printed.push_str(&format!("{:<52}", format!("{m} {p}")));
        for w in WHO {
            let r = send(&d, &auth(w), m, &path, &body, json);
            let mark = if *class == Class::Anyone {
                ' '
            } else {
                cells += 1;
                let want = expected(*class, w, path.starts_with("/api/"));
                let got = !is_denial(&r);
                if want != got {
                    if !want && (200..300).contains(&r.status) {
                        unexpected_2xx += 1;
                    }
                    wrong.push(format!(
                        "{m} {path} as {w:?}: got {} (expected {}): {}",
                        r.status,
                        if want { "admitted" } else { "refused" },
                        text(&r).chars().take(200).collect::<String>()
                    ));
                    '!'
                } else if want {
                    '+'
                } else {
                    '-'
                }
            };
            printed.push_str(&format!(" {:>12}{mark}", r.status));
        }
        printed.push('\n');
    }
    println!("{printed}");
    println!(
        "{} routes x {} callers: {cells} cells asserted, {} wrong, {unexpected_2xx} unexpected 2xx \
         (+ admitted as expected, - refused as expected, ! wrong, blank: open to anyone)",
        rows.len(),
        WHO.len(),
        wrong.len()
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A password-protected share link of a.test made by `admin` with the
/// expiry `fields`, and the pass its password gives: (path, pass).
fn share(d: &Daemon, admin: &Auth, fields: &[(&str, &str)]) -> (String, String) {
    let mut body = format!("name=matrix&password={}", enc(PASSWORD));
    for (k, v) in fields {
        body.push_str(&format!("&{k}={}", enc(v)));
    }
    let r = send(d, admin, "POST", "/sites/a.test/shares", &body, false);
    assert_eq!(r.status, 201, "{}", text(&r));
    let page = text(&r);
    let at = page.find("/share/").expect("the link, shown once");
    let link = page[at..at + page[at..].find('<').unwrap()].to_owned();
    let body = format!("password={}", enc(PASSWORD));
    let r = send(d, &Auth::Nothing, "POST", &link, &body, false);
    assert_eq!(r.status, 303, "{}", text(&r));
    let pass = set_cookie(&r, "__Host-hv_share").expect("a pass");
    (link, pass)
}

/// `secs` (Unix) as RFC 3339 in UTC.
fn rfc3339(secs: u64) -> String {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Days to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn tokens_expire_at_the_edge_of_their_second_and_revocation_is_immediate() {
    let d = start();
    drop(set_up(&d, &link_in(&d.log_text()), Some("alice")));
    let t = token(&d, "alice", "edge", &["stats:read"], &[], "3s");
    let list: serde_json::Value =
        serde_json::from_str(&cli(&d, &["token", "list", "--json"])).unwrap();
    let expires = list[0]["expires"].as_u64().unwrap() as f64;
    let auth = Auth::Bearer(t);
    let path = "/api/v1/stats/overview?site=a.test";
    let (mut before, mut after) = (0, 0);
    while unix_now() < expires + 1.0 {
        let sent = unix_now();
        let r = send(&d, &auth, "GET", path, "", false);
        let back = unix_now();
        // Only answers wholly on one side of the edge say anything.
        if back < expires {
            assert_eq!(r.status, 200, "before the edge: {}", text(&r));
            before += 1;
        } else if sent >= expires {
            assert_eq!(r.status, 401, "after the edge: {}", text(&r));
            assert_eq!(r.json()["error"], "sign_in_required");
            after += 1;
        }
    }
    println!("expiry edge: {before} answers admitted before it, {after} refused after it");
    assert!(before > 0 && after > 0, "{before} {after}");

    // Revocation: the next request is refused.
    let t = token(&d, "alice", "gone", &["stats:read"], &[], "1d");
    let auth = Auth::Bearer(t);
    assert_eq!(send(&d, &auth, "GET", path, "", false).status, 200);
    cli(&d, &["token", "revoke", &token_id(&d, "gone").to_string()]);
    let r = send(&d, &auth, "GET", path, "", false);
    assert_eq!(r.status, 401, "{}", text(&r));
}

/// Opens the realtime stream as `auth`; the reader past the headers.
fn open_stream(d: &Daemon, auth: &Auth) -> BufReader<std::net::TcpStream> {
    let port = d.addr.port();
    let mut s = connect_from(LAN.parse::<IpAddr>().unwrap(), d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let credential = match auth {
        Auth::Bearer(t) => format!("Authorization: Bearer {t}\r\n"),
        Auth::Session { cookie, .. } => format!("Cookie: __Host-hv_session={cookie}\r\n"),
        _ => String::new(),
    };
    write!(
        s,
        "GET /api/v1/stats/realtime?site=a.test HTTP/1.1\r\nHost: {HOST}:{port}\r\n{credential}\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.contains(" 200 "), "{line}");
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
    }
    r
}

/// Reads the stream until `needle` shows; the time it took.
fn read_until(r: &mut BufReader<std::net::TcpStream>, needle: &str) -> Duration {
    let t = Instant::now();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains(needle) {
        let n = r
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("waiting for {needle:?}: {e}; got {seen:?}"));
        assert!(n > 0, "the stream ended before {needle:?}: {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    t.elapsed()
}

#[test]
fn an_open_realtime_stream_ends_when_its_token_or_session_goes() {
    let d = start();
    let admin = set_up(&d, &link_in(&d.log_text()), Some("alice"));
    let t = token(&d, "alice", "live", &["stats:read"], &["a.test"], "1d");
    let mut by_token = open_stream(&d, &Auth::Bearer(t));
    read_until(&mut by_token, "data: ");
    let mut by_session = open_stream(&d, &admin);
    read_until(&mut by_session, "data: ");
    cli(&d, &["token", "revoke", &token_id(&d, "live").to_string()]);
    let took = read_until(&mut by_token, "event: revoked");
    println!("token revoked: its stream ended {took:?} later");
    // The session's stream is still alive; signing out ends it.
    assert_eq!(send(&d, &admin, "POST", "/logout", "", false).status, 303);
    let took = read_until(&mut by_session, "event: revoked");
    println!("signed out: the stream ended {took:?} later");
}

#[test]
fn batch_ingest_takes_a_token_with_the_ingest_scope_for_its_sites() {
    let d = start();
    drop(set_up(&d, &link_in(&d.log_text()), Some("alice")));
    drop(user(&d, "eddie", Some(("a.test", "editor"))));
    drop(user(&d, "vera", Some(("a.test", "viewer"))));
    let ingest = token(&d, "eddie", "ingest", &["ingest"], &[], "1d");
    let read = token(&d, "eddie", "read", &["stats:read"], &[], "1d");
    let viewers = token(&d, "vera", "v", &["ingest"], &[], "1d");
    let hit = |site: &str| {
        format!(
            "{{\"name\":\"pageview\",\"url\":\"https://{site}/x\",\"domain\":\"{site}\",\
             \"user_agent\":\"Mozilla/5.0 Chrome/156.0\",\"ip\":\"192.0.2.1\"}}\n"
        )
    };
    let post = |t: &str, body: &str| {
        send(
            &d,
            &Auth::Bearer(t.to_owned()),
            "POST",
            "/api/ingest/batch",
            body,
            true,
        )
    };
    let r = post(&ingest, &hit("a.test"));
    assert_eq!(r.status, 202, "{}", text(&r));
    let r = post(&ingest, &format!("{}{}", hit("a.test"), hit("b.test")));
    assert_eq!(r.status, 403, "{}", text(&r));
    assert!(text(&r).contains("b.test"), "{}", text(&r));
    let r = post(&read, &hit("a.test"));
    assert_eq!(r.status, 403, "{}", text(&r));
    assert!(text(&r).contains("ingest scope"), "{}", text(&r));
    let r = post(&viewers, &hit("a.test"));
    assert_eq!(r.status, 403, "a viewer's token may not send: {}", text(&r));
    let r = post("hvt_not_a_token", &hit("a.test"));
    assert_eq!(r.status, 401, "{}", text(&r));
}

/// The audit entries of `kind`, newest first, through the CLI.
fn audit(d: &Daemon, kind: &str) -> Vec<serde_json::Value> {
    cli(d, &["audit", "--kind", kind, "--format", "ndjson"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn roles_tokens_and_share_links_are_audited_with_who_did_it() {
    let d = start();
    let admin = set_up(&d, &link_in(&d.log_text()), Some("alice"));
    drop(user(&d, "olga", None));
    // The CLI through the daemon: roles and tokens, actor `cli`.
    cli(&d, &["user", "role", "olga", "a.test", "owner"]);
    let e = &audit(&d, "role_set")[0];
    assert_eq!(e["actor"]["kind"], "cli", "{e}");
    assert_eq!(
        (e["site"].as_str(), e["detail"]["user"].as_str()),
        (Some("a.test"), Some("olga"))
    );
    assert_eq!(e["detail"]["role"], "owner");
    cli(&d, &["user", "role", "olga", "a.test", "none"]);
    let e = &audit(&d, "role_removed")[0];
    assert_eq!(
        (e["site"].as_str(), e["detail"]["user"].as_str()),
        (Some("a.test"), Some("olga"))
    );
    let secret = token(&d, "olga", "ci", &["stats:read"], &["a.test"], "1d");
    let e = &audit(&d, "token_created")[0];
    assert_eq!(e["detail"]["name"], "ci", "{e}");
    assert_eq!(e["detail"]["scopes"], serde_json::json!(["stats:read"]));
    assert!(
        !e.to_string().contains(&secret[4..]),
        "the secret is never logged: {e}"
    );
    cli(&d, &["token", "revoke", &token_id(&d, "ci").to_string()]);
    assert_eq!(audit(&d, "token_revoked")[0]["detail"]["name"], "ci");
    // The dashboard: members and share links, actor the signed-in admin.
    let r = send(
        &d,
        &admin,
        "POST",
        "/sites/a.test/members",
        "name=olga&role=editor",
        false,
    );
    assert_eq!(r.status, 303, "{}", text(&r));
    assert_eq!(
        r.header("location"),
        Some("/sites/a.test/members?done=added")
    );
    let all = audit(&d, "role_set");
    let e = &all[0];
    assert_eq!(e["actor"]["name"], "alice", "{all:?}");
    assert_eq!(e["detail"]["role"], "editor");
    let (link, _) = share(&d, &admin, &[("days", "1")]);
    let e = &audit(&d, "share_created")[0];
    assert_eq!(
        (e["actor"]["name"].as_str(), e["site"].as_str()),
        (Some("alice"), Some("a.test"))
    );
    assert_eq!(e["detail"]["password"], true, "{e}");
    assert!(
        !e.to_string().contains(&link[7..]),
        "the link is never logged: {e}"
    );
    let id = e["detail"]["share"].as_u64().unwrap();
    let r = send(
        &d,
        &admin,
        "POST",
        &format!("/sites/a.test/shares/{id}/revoke"),
        "",
        false,
    );
    assert_eq!(r.status, 303, "{}", text(&r));
    assert_eq!(audit(&d, "share_revoked")[0]["detail"]["share"], id);
}
