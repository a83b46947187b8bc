//! Accounts through the real daemon: the first-run set-up link, sign-in
//! with a password and a second factor, the session cookie, CSRF, the
//! limits against guessing, the Host rule and `hitvault user`.
//!
//! The "browser" here is a client sending `Host: hitvault.test` (a
//! configured hostname): the daemon treats such a request like one from
//! another machine of the LAN (a session is needed), while the connection
//! stays on loopback, where plain HTTP is allowed. Other client addresses
//! are other loopback addresses (127.0.0.2, 127.0.0.3).

use std::collections::BTreeMap;
use std::net::IpAddr;

use hitvault_tests::{Daemon, Reply, hitvault, request_from};

const HOST: &str = "hitvault.test";
const PASSWORD: &str = "correct horse battery";

fn start() -> Daemon {
    Daemon::start(&[
        ("HITVAULT_HOSTNAMES", HOST),
        ("HITVAULT_SITES", "stats.test"),
    ])
}

/// A client with its own address and cookie jar.
struct Browser<'a> {
    d: &'a Daemon,
    from: IpAddr,
    cookies: BTreeMap<String, String>,
}

impl<'a> Browser<'a> {
    fn new(d: &'a Daemon, from: &str) -> Browser<'a> {
        Browser {
            d,
            from: from.parse().unwrap(),
            cookies: BTreeMap::new(),
        }
    }

    fn send(&mut self, method: &str, path: &str, body: &str) -> Reply {
        let host = format!("{HOST}:{}", self.d.addr.port());
        let origin = format!("http://{host}");
        let cookie: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let cookie = cookie.join("; ");
        let mut headers = vec![
            ("Host", host.as_str()),
            ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0"),
        ];
        if !cookie.is_empty() {
            headers.push(("Cookie", &cookie));
        }
        if method == "POST" {
            headers.push(("Origin", &origin));
            headers.push(("Content-Type", "application/x-www-form-urlencoded"));
        }
        let r = request_from(
            self.from,
            self.d.addr,
            method,
            path,
            &headers,
            body.as_bytes(),
        )
        .expect("request");
        for (k, v) in &r.headers {
            if k.eq_ignore_ascii_case("set-cookie") {
                let (pair, _) = v.split_once(';').unwrap_or((v, ""));
                let (name, value) = pair.split_once('=').unwrap();
                if value.is_empty() || v.contains("Max-Age=0") {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_owned(), value.to_owned());
                }
            }
        }
        r
    }

    fn get(&mut self, path: &str) -> Reply {
        self.send("GET", path, "")
    }

    fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{k}={}", enc(v)))
            .collect();
        self.send("POST", path, &body.join("&"))
    }

    /// Signs in with a password on the sign-in page's form.
    fn sign_in(&mut self, name: &str, password: &str) -> Reply {
        let page = self.get("/login");
        let form = hidden(&text(&page), "form").expect("the sign-in form has its token");
        self.post(
            "/login",
            &[
                ("form", &form),
                ("name", name),
                ("password", password),
                ("next", "/sites"),
            ],
        )
    }
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

fn text(r: &Reply) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// The value of the hidden input `name` in a page.
fn hidden(page: &str, name: &str) -> Option<String> {
    let at = page.find(&format!("name=\"{name}\" value=\""))?;
    let rest = &page[at + name.len() + 15..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// The set-up link's path, from the daemon's console output.
fn setup_path(d: &Daemon) -> String {
    let log = d.log_text();
    let at = log
        .find("/setup/")
        .unwrap_or_else(|| panic!("no set-up link printed:\n{log}"));
    log[at..].split_whitespace().next().unwrap().to_owned()
}

/// Sets up the admin `alice` through the first-run link.
fn set_up_admin(d: &Daemon) -> Browser<'_> {
    let mut b = Browser::new(d, "127.0.0.2");
    let path = setup_path(d);
    let page = b.get(&path);
    assert_eq!(page.status, 200, "{}", text(&page));
    let form = hidden(&text(&page), "form").expect("form token");
    let r = b.post(
        &path,
        &[
            ("form", &form),
            ("name", "alice"),
            ("password", PASSWORD),
            ("confirm", PASSWORD),
        ],
    );
    assert_eq!(r.status, 303, "{}", text(&r));
    assert_eq!(r.header("location"), Some("/account?done=welcome"));
    b
}

#[test]
fn first_run_prints_a_set_up_link_that_makes_the_admin_once() {
    let d = start();
    let path = setup_path(&d);
    assert!(d.log_text().contains("no admin yet"), "{}", d.log_text());
    let mut b = set_up_admin(&d);
    // The session cookie has every flag.
    let r = b.get("/account");
    assert_eq!(r.status, 200);
    assert!(text(&r).contains("Account: alice"));
    // The dashboard is open to the session, and closed without it.
    assert_eq!(b.get("/sites").status, 200);
    let mut stranger = Browser::new(&d, "127.0.0.3");
    let r = stranger.get("/sites");
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/login?next=/sites"));
    let r = stranger.get("/api/v1/stats/overview?site=stats.test");
    assert_eq!(r.status, 401, "{}", text(&r));
    assert_eq!(r.json()["error"], "sign_in_required");
    // The link works once.
    let mut late = Browser::new(&d, "127.0.0.3");
    let r = late.get(&path);
    assert_eq!(r.status, 404);
    assert!(text(&r).contains("expired"));
    // After a restart: no new link (an admin exists), and the session lives on.
    let cookies = b.cookies.clone();
    drop((b, stranger, late));
    let stopped = d.stop();
    let d = Daemon::restart(
        stopped,
        &[
            ("HITVAULT_HOSTNAMES", HOST),
            ("HITVAULT_SITES", "stats.test"),
        ],
    );
    // The log is appended to: the first start's line is the only one.
    assert_eq!(
        d.log_text().matches("no admin yet. Open").count(),
        1,
        "{}",
        d.log_text()
    );
    let mut b = Browser::new(&d, "127.0.0.2");
    b.cookies = cookies;
    assert_eq!(
        b.get("/sites").status,
        200,
        "the session survives a restart"
    );
}

#[test]
fn the_session_cookie_is_host_only_secure_httponly_and_strict() {
    let d = start();
    let mut b = Browser::new(&d, "127.0.0.2");
    let path = setup_path(&d);
    let page = b.get(&path);
    let form = hidden(&text(&page), "form").unwrap();
    let r = b.post(
        &path,
        &[
            ("form", &form),
            ("name", "alice"),
            ("password", PASSWORD),
            ("confirm", PASSWORD),
        ],
    );
    let cookie = r
        .headers
        .iter()
        .find(|(k, v)| k.eq_ignore_ascii_case("set-cookie") && v.starts_with("__Host-hv_session="))
        .map(|(_, v)| v.clone())
        .expect("a session cookie");
    for flag in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(!cookie.contains("Domain"), "{cookie}");
    // Signing out ends the session on the server, not just in the browser.
    let token = b.cookies["__Host-hv_session"].clone();
    let csrf = hidden(&text(&b.get("/account")), "csrf").unwrap();
    let r = b.post("/logout", &[("csrf", &csrf)]);
    assert_eq!(r.status, 303);
    let mut replay = Browser::new(&d, "127.0.0.2");
    replay.cookies.insert("__Host-hv_session".into(), token);
    assert_eq!(
        replay.get("/sites").status,
        303,
        "an ended session still admitted"
    );
}

#[test]
fn every_change_needs_the_sessions_csrf_token() {
    let d = start();
    let mut b = set_up_admin(&d);
    let page = text(&b.get("/account"));
    let csrf = hidden(&page, "csrf").expect("the account page's forms carry the CSRF token");
    let new = "another long password";
    let r = b.post("/account/password", &[("password", new), ("confirm", new)]);
    assert_eq!(r.status, 403, "{}", text(&r));
    assert!(text(&r).contains("CSRF"));
    let r = b.post(
        "/account/password",
        &[("password", new), ("confirm", new), ("csrf", "forged")],
    );
    assert_eq!(r.status, 403);
    let r = b.post(
        "/account/password",
        &[("password", new), ("confirm", new), ("csrf", &csrf)],
    );
    assert_eq!(r.status, 303, "{}", text(&r));
    // The dashboard's own forms too.
    let r = b.post(
        "/sites/stats.test/settings/goals",
        &[("kind", "event"), ("value", "Signup")],
    );
    assert_eq!(r.status, 403);
    let settings = text(&b.get("/sites/stats.test/settings"));
    assert!(
        hidden(&settings, "csrf").is_some(),
        "settings forms lack the token"
    );
    let r = b.post(
        "/sites/stats.test/settings/goals",
        &[("kind", "event"), ("value", "Signup"), ("csrf", &csrf)],
    );
    assert_eq!(r.status, 303, "{}", text(&r));
    // And the JSON API: a change with a session needs the header.
    let cookie = format!("__Host-hv_session={}", b.cookies["__Host-hv_session"]);
    let host = format!("{HOST}:{}", d.addr.port());
    let from: IpAddr = "127.0.0.2".parse().unwrap();
    let body = br#"{"kind":"event","value":"Other"}"#;
    let r = request_from(
        from,
        d.addr,
        "POST",
        "/api/v1/sites/stats.test/goals",
        &[
            ("Host", &host),
            ("Cookie", &cookie),
            ("Content-Type", "application/json"),
        ],
        body,
    )
    .unwrap();
    assert_eq!(r.status, 403, "{}", text(&r));
    let r = request_from(
        from,
        d.addr,
        "POST",
        "/api/v1/sites/stats.test/goals",
        &[
            ("Host", &host),
            ("Cookie", &cookie),
            ("Content-Type", "application/json"),
            ("X-CSRF-Token", &csrf),
        ],
        body,
    )
    .unwrap();
    assert!(r.status == 200 || r.status == 201, "{}", text(&r));
}

#[test]
fn a_request_to_a_foreign_name_is_refused() {
    let d = start();
    for path in [
        "/login",
        "/sites",
        "/api/v1/stats/overview?site=stats.test",
        setup_path(&d).as_str(),
    ] {
        let r = d
            .request("GET", path, &[("Host", "rebound.evil.test")], b"")
            .unwrap();
        assert_eq!(r.status, 403, "{path}: {}", text(&r));
        assert!(text(&r).contains("rebound.evil.test"), "{path}");
    }
}

#[test]
fn a_burst_of_wrong_passwords_gets_429s_and_the_owner_still_signs_in_elsewhere() {
    let d = start();
    drop(set_up_admin(&d));
    let mut attacker = Browser::new(&d, "127.0.0.5");
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(attacker.sign_in("alice", "not the password").status);
    }
    assert_eq!(&statuses[..5], &[401; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    let r = attacker.sign_in("alice", PASSWORD);
    assert_eq!(
        r.status, 429,
        "the right password from the attacker's address waits too"
    );
    let secs: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=900).contains(&secs), "{secs}");
    // An unknown name gets the same answer as a wrong password.
    let mut other = Browser::new(&d, "127.0.0.6");
    let unknown = other.sign_in("nobody-here", "not the password");
    let wrong = other.sign_in("alice", "not the password");
    assert_eq!((unknown.status, wrong.status), (401, 401));
    let msg = |r: &Reply| {
        let t = text(r);
        let at = t.find("class=\"alert\"").unwrap();
        t[at..at + 120].to_owned()
    };
    assert_eq!(msg(&unknown), msg(&wrong));
    // The owner, from their own address, signs in at once.
    let mut owner = Browser::new(&d, "127.0.0.7");
    let r = owner.sign_in("alice", PASSWORD);
    assert_eq!(r.status, 303, "{}", text(&r));
    assert_eq!(owner.get("/sites").status, 200);
}

/// Enables TOTP for the signed-in `b` and returns its secret.
fn enable_totp(b: &mut Browser<'_>) -> String {
    let csrf = hidden(&text(&b.get("/account")), "csrf").unwrap();
    let page = text(&b.post("/account/totp", &[("csrf", &csrf)]));
    let at = page.find("id=\"totp-secret\">").expect("the key is shown");
    let secret: String = page[at + 17..].split('<').next().unwrap().replace(' ', "");
    let code = hitvault_accounts::totp::code_at(&secret, now()).unwrap();
    let r = b.post("/account/totp/confirm", &[("csrf", &csrf), ("code", &code)]);
    assert_eq!(r.status, 303, "{}", text(&r));
    secret
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn totp_is_asked_after_the_password_and_a_code_works_once() {
    let d = start();
    let mut b = set_up_admin(&d);
    let secret = enable_totp(&mut b);
    let mut c = Browser::new(&d, "127.0.0.8");
    let r = c.sign_in("alice", PASSWORD);
    assert_eq!(r.status, 200, "the second step is a page");
    let step = hidden(&text(&r), "step").expect("the step token");
    // The code used to confirm the app is spent: wait for a fresh step.
    let t = now();
    let code = hitvault_accounts::totp::code_at(&secret, t + 30).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(30 - t % 30));
    let r = c.post(
        "/login/code",
        &[("step", &step), ("code", &code), ("next", "/sites")],
    );
    assert_eq!(r.status, 303, "{}", text(&r));
    assert_eq!(c.get("/sites").status, 200);
    // The same code on a new sign-in is a replay.
    let mut e = Browser::new(&d, "127.0.0.9");
    let step = hidden(&text(&e.sign_in("alice", PASSWORD)), "step").unwrap();
    let r = e.post(
        "/login/code",
        &[("step", &step), ("code", &code), ("next", "/sites")],
    );
    assert_eq!(r.status, 401, "{}", text(&r));
    assert_eq!(e.get("/sites").status, 303);
}

#[test]
fn a_recovery_code_signs_in_once() {
    let d = start();
    let mut b = set_up_admin(&d);
    enable_totp(&mut b);
    let csrf = hidden(&text(&b.get("/account")), "csrf").unwrap();
    let page = text(&b.post("/account/recovery", &[("csrf", &csrf)]));
    let codes: Vec<String> = page
        .split("<li><code>")
        .skip(1)
        .map(|s| s.split('<').next().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10, "{page}");
    for attempt in 0..2 {
        let mut c = Browser::new(&d, "127.0.0.10");
        let step = hidden(&text(&c.sign_in("alice", PASSWORD)), "step").unwrap();
        let r = c.post(
            "/login/code",
            &[("step", &step), ("code", &codes[0]), ("next", "/sites")],
        );
        assert_eq!(
            r.status,
            if attempt == 0 { 303 } else { 401 },
            "attempt {attempt}: {}",
            text(&r)
        );
    }
}

#[test]
fn signing_out_everywhere_else_ends_the_other_sessions() {
    let d = start();
    let mut b = set_up_admin(&d);
    let mut other = Browser::new(&d, "127.0.0.11");
    assert_eq!(other.sign_in("alice", PASSWORD).status, 303);
    assert_eq!(other.get("/sites").status, 200);
    let csrf = hidden(&text(&b.get("/account")), "csrf").unwrap();
    assert_eq!(
        b.post("/account/sessions/others/end", &[("csrf", &csrf)])
            .status,
        303
    );
    assert_eq!(other.get("/sites").status, 303, "the other session is over");
    assert_eq!(b.get("/sites").status, 200, "this one lives on");
}

#[test]
fn hitvault_user_adds_lists_resets_and_removes_users_online_and_offline() {
    let d = start();
    drop(set_up_admin(&d));
    let data = d.data_dir.to_str().unwrap().to_owned();
    let run = |args: &[&str]| {
        let mut all = vec!["--data-dir", data.as_str()];
        all.extend_from_slice(args);
        hitvault(&all)
    };
    let out = run(&["user", "add", "bob"]);
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    let link = printed
        .split_whitespace()
        .find(|w| w.contains("/setup/"))
        .expect("a link");
    let path = &link[link.find("/setup/").unwrap()..];
    // Bob sets up his sign-in with it.
    let mut bob = Browser::new(&d, "127.0.0.12");
    let page = bob.get(path);
    assert_eq!(page.status, 200);
    assert!(text(&page).contains("bob"));
    let form = hidden(&text(&page), "form").unwrap();
    let pw = "bobs long password";
    assert_eq!(
        bob.post(path, &[("form", &form), ("password", pw), ("confirm", pw)])
            .status,
        303
    );
    let list = String::from_utf8_lossy(&run(&["user", "list", "--json"]).stdout).into_owned();
    let users: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(users.as_array().unwrap().len(), 2, "{list}");
    assert_eq!(users[1]["name"], "bob");
    assert_eq!(users[1]["password"], true);
    // An admin's reset ends his sessions and factors.
    let out = run(&["user", "reset", "bob"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(bob.get("/sites").status, 303);
    // The last admin stays.
    let out = run(&["user", "remove", "alice"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("last admin"),
        "{out:?}"
    );
    // Offline, on the journal itself.
    let stopped = d.stop();
    let out = run(&["user", "remove", "bob"]);
    assert!(out.status.success(), "{out:?}");
    let list = String::from_utf8_lossy(&run(&["user", "list", "--json"]).stdout).into_owned();
    assert!(!list.contains("bob"), "{list}");
    drop(stopped);
}

#[test]
fn accounts_are_in_backups_and_come_back_with_a_restore() {
    let d = start();
    drop(set_up_admin(&d));
    let root = tempfile::tempdir().unwrap();
    let backup = root.path().join("backup");
    let data = d.data_dir.to_str().unwrap().to_owned();
    let out = hitvault(&["--data-dir", &data, "backup", backup.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let manifest = std::fs::read_to_string(backup.join("BACKUP")).unwrap();
    assert!(manifest.contains("accounts.jsonl"), "{manifest}");
    let journal = std::fs::read_to_string(backup.join("accounts.jsonl")).unwrap();
    assert!(journal.contains("\"name\":\"alice\""));
    assert!(
        !journal.contains(PASSWORD),
        "a password in clear in the journal"
    );
    d.stop();
    let restored = root.path().join("restored");
    let out = hitvault(&[
        "--data-dir",
        restored.to_str().unwrap(),
        "restore",
        backup.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let out = hitvault(&[
        "--data-dir",
        restored.to_str().unwrap(),
        "user",
        "list",
        "--json",
    ]);
    let list = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        list.contains("\"alice\"") && list.contains("\"admin\": true"),
        "{list}"
    );
}

#[test]
fn with_a_second_factor_required_a_password_only_session_reaches_only_its_account_page() {
    let d = Daemon::start(&[
        ("HITVAULT_HOSTNAMES", HOST),
        ("HITVAULT_SITES", "stats.test"),
        ("HITVAULT_REQUIRE_SECOND_FACTOR", "true"),
    ]);
    let mut b = set_up_admin(&d);
    let r = b.get("/sites");
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/account"));
    let page = text(&b.get("/account"));
    assert!(page.contains("requires a second factor"), "{page}");
    enable_totp(&mut b);
    assert_eq!(b.get("/sites").status, 200, "enrolled: the dashboard opens");
}

#[test]
fn the_set_up_page_shows_the_local_cas_fingerprint_as_the_log_does() {
    let d = Daemon::start(&[
        ("HITVAULT_HOSTNAMES", HOST),
        ("HITVAULT_TLS_MODE", "local-ca"),
    ]);
    let log = d.log_text();
    let at = log
        .find("SHA-256 fingerprint is ")
        .expect("the fingerprint is logged");
    let logged: String = log[at + 23..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || *c == ':')
        .collect();
    assert!(logged.len() >= 64, "{logged:?}");
    let mut b = Browser::new(&d, "127.0.0.2");
    let page = text(&b.get(&setup_path(&d)));
    assert!(
        page.contains(&logged),
        "the set-up page lacks {logged}:\n{page}"
    );
    assert!(page.contains("href=\"/ca.crt\""), "{page}");
}
