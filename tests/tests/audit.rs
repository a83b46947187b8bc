//! The audit log through the real daemon: every kind of entry is written by
//! the action that should write it, with the right actor, the client's
//! address where the action came over the network, and its detail; the
//! admins' page and export are readable by an admin or the machine's
//! operator and refused (403) to anyone else; `hitvault audit` reads it
//! online and offline; backups carry it and a restore records itself.
//!
//! As in accounts.rs, the "browser" sends `Host: hitvault.test` (a
//! configured name: a session is needed) from another loopback address
//! (127.0.0.x), which is the address the log must show. Entries are read
//! from `<data dir>/accounts/audit.jsonl`, the file the docs describe.

use std::collections::BTreeMap;
use std::net::IpAddr;

use hitvault_tests::{Daemon, Reply, hitvault, request_from};
use serde_json::Value;

const HOST: &str = "hitvault.test";
const SITE: &str = "stats.test";
const PASSWORD: &str = "correct horse battery";

fn start() -> Daemon {
    Daemon::start(&[("HITVAULT_HOSTNAMES", HOST), ("HITVAULT_SITES", SITE)])
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

    /// A form post carrying the session's CSRF token.
    fn change(&mut self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let csrf = hidden(&text(&self.get("/account")), "csrf").expect("a session");
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post(path, &all)
    }

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

    /// Uses a set-up link (its path) to choose a password (and the name,
    /// for a new account).
    fn set_up(&mut self, path: &str, name: Option<&str>) {
        let page = self.get(path);
        assert_eq!(page.status, 200, "{}", text(&page));
        let form = hidden(&text(&page), "form").expect("form token");
        let mut fields = vec![
            ("form", form.as_str()),
            ("password", PASSWORD),
            ("confirm", PASSWORD),
        ];
        if let Some(n) = name {
            fields.push(("name", n));
        }
        let r = self.post(path, &fields);
        assert_eq!(r.status, 303, "{}", text(&r));
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

fn hidden(page: &str, name: &str) -> Option<String> {
    let at = page.find(&format!("name=\"{name}\" value=\""))?;
    let rest = &page[at + name.len() + 15..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// The admin `alice`, set up through the first-run link from 127.0.0.2.
fn set_up_admin(d: &Daemon) -> Browser<'_> {
    let log = d.log_text();
    let at = log.find("/setup/").expect("a set-up link");
    let path = log[at..].split_whitespace().next().unwrap().to_owned();
    let mut b = Browser::new(d, "127.0.0.2");
    b.set_up(&path, Some("alice"));
    b
}

/// A user added by `admin` on the account page, set up from `from`.
fn add_user<'a>(admin: &mut Browser<'a>, name: &str, from: &str) -> Browser<'a> {
    let r = admin.change("/account/users", &[("name", name), ("admin", "no")]);
    assert_eq!(r.status, 200, "{}", text(&r));
    let page = text(&r);
    let at = page.find("/setup/").expect("the link is shown");
    let path: String = page[at..].split('<').next().unwrap().to_owned();
    let mut b = Browser::new(admin.d, from);
    b.set_up(&path, None);
    b
}

/// Every entry of the daemon's audit log, oldest first.
fn entries(d: &Daemon) -> Vec<Value> {
    entries_in(&d.data_dir)
}

fn entries_in(data: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(data.join("accounts").join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

/// The entries of `kind`.
fn of(all: &[Value], kind: &str) -> Vec<Value> {
    all.iter().filter(|e| e["kind"] == kind).cloned().collect()
}

/// The one entry of `kind` (panics with the log otherwise).
fn one(all: &[Value], kind: &str) -> Value {
    let found = of(all, kind);
    assert_eq!(found.len(), 1, "one {kind} entry expected in {all:#?}");
    found[0].clone()
}

fn user(name: &str) -> impl Fn(&Value) -> bool + '_ {
    move |e: &Value| e["actor"]["kind"] == "user" && e["actor"]["name"] == name
}

fn cli(data: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--data-dir", data];
    all.extend_from_slice(args);
    hitvault(&all)
}

fn ok(out: std::process::Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_set_up_link_records_user_added_password_set_and_sign_in() {
    let d = start();
    drop(set_up_admin(&d));
    let all = entries(&d);
    for kind in ["user_added", "password_set", "sign_in"] {
        let e = one(&all, kind);
        assert!(user("alice")(&e), "{e}");
        assert_eq!(e["address"], "127.0.0.2", "{e}");
    }
    assert_eq!(one(&all, "user_added")["detail"]["admin"], true);
    assert_eq!(one(&all, "sign_in")["detail"]["method"], "invite");
    // Numbered in order, times in unix ms.
    let seqs: Vec<u64> = all.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=all.len() as u64).collect::<Vec<_>>());
    assert!(all[0]["at"].as_u64().unwrap() > 1_700_000_000_000);
    // The log is the operator's only: mode 0600.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(d.data_dir.join("accounts/audit.jsonl"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn sign_in_with_a_password_records_the_user_and_the_address() {
    let d = start();
    drop(set_up_admin(&d));
    let mut b = Browser::new(&d, "127.0.0.5");
    assert_eq!(b.sign_in("alice", PASSWORD).status, 303);
    let e = of(&entries(&d), "sign_in").pop().unwrap();
    assert!(user("alice")(&e), "{e}");
    assert_eq!(e["address"], "127.0.0.5");
    assert_eq!(e["detail"]["method"], "password");
}

#[test]
fn sign_in_failed_records_the_address_and_the_user_or_the_name_typed() {
    let d = start();
    drop(set_up_admin(&d));
    let mut b = Browser::new(&d, "127.0.0.6");
    assert_eq!(b.sign_in("alice", "not the password").status, 401);
    assert_eq!(b.sign_in("mallory", "anything at all").status, 401);
    let failed = of(&entries(&d), "sign_in_failed");
    assert_eq!(failed.len(), 2, "{failed:#?}");
    assert!(user("alice")(&failed[0]), "{}", failed[0]);
    assert_eq!(failed[0]["address"], "127.0.0.6");
    assert_eq!(failed[0]["detail"]["method"], "password");
    assert_eq!(failed[1]["actor"]["kind"], "anonymous");
    assert_eq!(failed[1]["detail"]["name"], "mallory");
    assert_eq!(failed[1]["address"], "127.0.0.6");
    let raw = std::fs::read_to_string(d.data_dir.join("accounts/audit.jsonl")).unwrap();
    assert!(!raw.contains("not the password"), "a password in the log");
}

/// Enables TOTP for `b` and returns a fresh set of recovery codes.
fn totp_and_codes(b: &mut Browser<'_>) -> Vec<String> {
    let page = text(&b.change("/account/totp", &[]));
    let at = page.find("id=\"totp-secret\">").expect("the key is shown");
    let secret: String = page[at + 17..].split('<').next().unwrap().replace(' ', "");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let code = hitvault_accounts::totp::code_at(&secret, now).unwrap();
    assert_eq!(
        b.change("/account/totp/confirm", &[("code", &code)]).status,
        303
    );
    let page = text(&b.change("/account/recovery", &[]));
    page.split("<li><code>")
        .skip(1)
        .map(|s| s.split('<').next().unwrap().to_owned())
        .collect()
}

#[test]
fn the_code_step_records_its_sign_in_and_its_failure() {
    let d = start();
    let mut b = set_up_admin(&d);
    let codes = totp_and_codes(&mut b);
    let mut c = Browser::new(&d, "127.0.0.7");
    let step = hidden(&text(&c.sign_in("alice", PASSWORD)), "step").unwrap();
    let r = c.post(
        "/login/code",
        &[("step", &step), ("code", "000000"), ("next", "/sites")],
    );
    assert_eq!(r.status, 401);
    let r = c.post(
        "/login/code",
        &[("step", &step), ("code", &codes[0]), ("next", "/sites")],
    );
    assert_eq!(r.status, 303, "{}", text(&r));
    let all = entries(&d);
    let failed = one(&all, "sign_in_failed");
    assert!(user("alice")(&failed), "{failed}");
    assert_eq!(failed["address"], "127.0.0.7");
    assert_eq!(failed["detail"]["method"], "code");
    let signed = of(&all, "sign_in").pop().unwrap();
    assert_eq!(signed["address"], "127.0.0.7");
    assert_eq!(signed["detail"]["method"], "password+recovery");
}

#[test]
fn totp_set_totp_removed_and_recovery_codes_set_are_recorded() {
    let d = start();
    let mut b = set_up_admin(&d);
    let codes = totp_and_codes(&mut b);
    assert_eq!(b.change("/account/totp/remove", &[]).status, 303);
    let all = entries(&d);
    for kind in ["totp_set", "recovery_codes_set", "totp_removed"] {
        let e = one(&all, kind);
        assert!(user("alice")(&e), "{e}");
        assert_eq!(e["address"], "127.0.0.2");
    }
    assert_eq!(
        one(&all, "recovery_codes_set")["detail"]["codes"],
        codes.len()
    );
    let raw = std::fs::read_to_string(d.data_dir.join("accounts/audit.jsonl")).unwrap();
    assert!(!raw.contains(&codes[0]), "a recovery code in the log");
}

#[test]
fn sign_out_is_recorded() {
    let d = start();
    let mut b = set_up_admin(&d);
    assert_eq!(b.change("/logout", &[]).status, 303);
    let e = one(&entries(&d), "sign_out");
    assert!(user("alice")(&e), "{e}");
    assert_eq!(e["address"], "127.0.0.2");
}

#[test]
fn session_ended_is_recorded_for_one_for_the_others_and_for_a_reset() {
    let d = start();
    let mut b = set_up_admin(&d);
    let mut bob = add_user(&mut b, "bob", "127.0.0.3");
    // Alice elsewhere twice; she ends one, then every other.
    let mut two = Browser::new(&d, "127.0.0.4");
    assert_eq!(two.sign_in("alice", PASSWORD).status, 303);
    let mut three = Browser::new(&d, "127.0.0.4");
    assert_eq!(three.sign_in("alice", PASSWORD).status, 303);
    let page = text(&b.get("/account"));
    let at = page.find("/account/sessions/").unwrap();
    let handle = page[at + 18..at + 34].to_owned();
    let r = b.change(&format!("/account/sessions/{handle}/end"), &[]);
    assert_eq!(r.status, 303, "{}", text(&r));
    assert_eq!(b.change("/account/sessions/others/end", &[]).status, 303);
    // An admin's reset of bob ends his session.
    let id = text(&b.get("/account"))
        .split("/account/users/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        b.change(&format!("/account/users/{id}/reset"), &[]).status,
        200
    );
    assert_eq!(bob.get("/sites").status, 303);
    let ended = of(&entries(&d), "session_ended");
    assert_eq!(ended.len(), 3, "{ended:#?}");
    assert_eq!(ended[0]["detail"]["how"], "one");
    assert_eq!(ended[0]["detail"]["session"], handle);
    assert_eq!(ended[1]["detail"]["how"], "others");
    assert_eq!(ended[1]["detail"]["sessions"], 1);
    assert_eq!(ended[2]["detail"]["how"], "reset");
    assert_eq!(ended[2]["detail"]["name"], "bob");
    assert_eq!(ended[2]["detail"]["sessions"], 1);
    for e in &ended {
        assert!(user("alice")(e), "{e}");
        assert_eq!(e["address"], "127.0.0.2");
    }
}

#[test]
fn password_set_on_the_account_page_is_recorded() {
    let d = start();
    let mut b = set_up_admin(&d);
    let pw = "another long password";
    let r = b.change("/account/password", &[("password", pw), ("confirm", pw)]);
    assert_eq!(r.status, 303);
    let set = of(&entries(&d), "password_set");
    assert_eq!(set.len(), 2, "the set-up's and this one");
    assert!(user("alice")(&set[1]));
    assert_eq!(set[1]["address"], "127.0.0.2");
    assert!(
        !std::fs::read_to_string(d.data_dir.join("accounts/audit.jsonl"))
            .unwrap()
            .contains(pw)
    );
}

#[test]
fn factors_reset_is_recorded_from_the_account_page_and_the_cli() {
    let d = start();
    let mut b = set_up_admin(&d);
    drop(add_user(&mut b, "bob", "127.0.0.3"));
    let id = text(&b.get("/account"))
        .split("/account/users/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        b.change(&format!("/account/users/{id}/reset"), &[]).status,
        200
    );
    let data = d.data_dir.to_str().unwrap().to_owned();
    ok(cli(&data, &["user", "reset", "bob"]));
    let stopped = d.stop();
    ok(cli(&data, &["user", "reset", "bob"]));
    let reset = of(&entries_in(&stopped.data_dir), "factors_reset");
    assert_eq!(reset.len(), 3, "{reset:#?}");
    assert!(user("alice")(&reset[0]));
    assert_eq!(reset[0]["address"], "127.0.0.2");
    for e in &reset[1..] {
        assert_eq!(e["actor"]["kind"], "cli", "{e}");
        assert!(e.get("address").is_none(), "{e}");
    }
    assert!(reset.iter().all(|e| e["detail"]["name"] == "bob"));
}

#[test]
fn user_added_and_user_removed_from_the_account_page_the_socket_and_offline() {
    let d = start();
    let mut b = set_up_admin(&d);
    drop(add_user(&mut b, "bob", "127.0.0.3"));
    let id = text(&b.get("/account"))
        .split("/account/users/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        b.change(&format!("/account/users/{id}/remove"), &[]).status,
        303
    );
    let data = d.data_dir.to_str().unwrap().to_owned();
    ok(cli(&data, &["user", "add", "carol"]));
    ok(cli(&data, &["user", "remove", "carol"]));
    let stopped = d.stop();
    ok(cli(&data, &["user", "add", "dave"]));
    ok(cli(&data, &["user", "remove", "dave"]));
    let all = entries_in(&stopped.data_dir);
    let added = of(&all, "user_added");
    let removed = of(&all, "user_removed");
    let names = |v: &[Value]| -> Vec<String> {
        v.iter()
            .map(|e| e["detail"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&added), ["alice", "bob", "carol", "dave"]);
    assert_eq!(names(&removed), ["bob", "carol", "dave"]);
    assert!(user("alice")(&added[1]) && user("alice")(&removed[0]));
    assert_eq!(added[1]["address"], "127.0.0.2");
    for e in [&added[2], &added[3], &removed[1], &removed[2]] {
        assert_eq!(e["actor"]["kind"], "cli", "{e}");
    }
}

#[test]
fn site_added_is_recorded_through_the_daemon_and_offline() {
    let d = start();
    let data = d.data_dir.to_str().unwrap().to_owned();
    ok(cli(
        &data,
        &["site", "add", "one.test", "--alias", "www.one.test"],
    ));
    let stopped = d.stop();
    ok(cli(&data, &["site", "add", "two.test"]));
    let added = of(&entries_in(&stopped.data_dir), "site_added");
    assert_eq!(added.len(), 2, "{added:#?}");
    assert_eq!(added[0]["site"], "one.test");
    assert_eq!(added[0]["detail"]["aliases"][0], "www.one.test");
    assert_eq!(added[1]["site"], "two.test");
    assert!(added.iter().all(|e| e["actor"]["kind"] == "cli"));
}

#[test]
fn goals_added_and_removed_from_the_dashboard_and_the_api_are_recorded() {
    let d = start();
    let mut b = set_up_admin(&d);
    let base = format!("/sites/{SITE}/settings/goals");
    let r = b.change(&base, &[("kind", "event"), ("value", "Signup")]);
    assert_eq!(r.status, 303, "{}", text(&r));
    let r = d.post_json(
        &format!("/api/v1/sites/{SITE}/goals"),
        r#"{"kind":"page","value":"/pricing"}"#,
    );
    assert_eq!(r.status, 201, "{}", text(&r));
    let api_id = r.json()["id"].as_u64().unwrap();
    let r = d
        .request(
            "DELETE",
            &format!("/api/v1/sites/{SITE}/goals/{api_id}"),
            &[],
            b"",
        )
        .unwrap();
    assert_eq!(r.status, 204);
    let all = entries(&d);
    let added = of(&all, "goal_added");
    assert_eq!(added.len(), 2);
    assert!(user("alice")(&added[0]));
    assert_eq!(added[0]["address"], "127.0.0.2");
    assert_eq!(added[0]["site"], SITE);
    assert_eq!(added[0]["detail"]["value"], "Signup");
    assert_eq!(added[1]["actor"]["kind"], "local");
    assert_eq!(added[1]["address"], "127.0.0.1");
    assert_eq!(added[1]["detail"]["value"], "/pricing");
    let removed = one(&all, "goal_removed");
    assert_eq!(removed["actor"]["kind"], "local");
    assert_eq!(removed["detail"]["id"], api_id);
    // The dashboard's delete form.
    let id = added[0]["detail"]["id"].as_u64().unwrap();
    assert_eq!(b.change(&format!("{base}/{id}/delete"), &[]).status, 303);
    let removed = of(&entries(&d), "goal_removed");
    assert!(user("alice")(&removed[1]));
    assert_eq!(removed[1]["detail"]["id"], id);
}

#[test]
fn funnels_added_and_removed_from_the_dashboard_and_the_api_are_recorded() {
    let d = start();
    let mut b = set_up_admin(&d);
    let base = format!("/sites/{SITE}/settings/funnels");
    let r = b.change(
        &base,
        &[
            ("name", "Checkout"),
            ("kind", "page"),
            ("value", "/cart"),
            ("kind", "page"),
            ("value", "/paid"),
        ],
    );
    assert_eq!(r.status, 303, "{}", text(&r));
    let r = d.post_json(
        &format!("/api/v1/sites/{SITE}/funnels"),
        r#"{"name":"Sign-up","steps":[{"kind":"page","value":"/"},{"kind":"event","value":"Signup"}]}"#,
    );
    assert_eq!(r.status, 201, "{}", text(&r));
    let api_id = r.json()["id"].as_u64().unwrap();
    let r = d
        .request(
            "DELETE",
            &format!("/api/v1/sites/{SITE}/funnels/{api_id}"),
            &[],
            b"",
        )
        .unwrap();
    assert_eq!(r.status, 204);
    let added = of(&entries(&d), "funnel_added");
    assert_eq!(added.len(), 2);
    assert!(user("alice")(&added[0]));
    assert_eq!(added[0]["address"], "127.0.0.2");
    assert_eq!(added[0]["detail"]["name"], "Checkout");
    assert_eq!(added[1]["actor"]["kind"], "local");
    assert_eq!(added[1]["detail"]["name"], "Sign-up");
    let id = added[0]["detail"]["id"].as_u64().unwrap();
    assert_eq!(b.change(&format!("{base}/{id}/delete"), &[]).status, 303);
    let removed = of(&entries(&d), "funnel_removed");
    assert_eq!(removed.len(), 2);
    assert_eq!(removed[0]["actor"]["kind"], "local");
    assert_eq!(removed[0]["detail"]["id"], api_id);
    assert_eq!(removed[0]["site"], SITE);
    assert!(user("alice")(&removed[1]));
    assert_eq!(removed[1]["detail"]["id"], id);
}

#[test]
fn exports_are_recorded_with_who_what_range_and_format() {
    let d = start();
    let mut b = set_up_admin(&d);
    // Takeout over HTTP by the local operator.
    let r = d
        .get(&format!(
            "/api/v1/takeout?format=csv&table=sites&site={SITE}&from=2026-01-01&until=2026-02-01"
        ))
        .unwrap();
    assert_eq!(r.status, 200, "{}", text(&r));
    // A refused export is not one.
    assert_eq!(d.get("/api/v1/takeout?format=xml").unwrap().status, 400);
    // The dashboard's CSV of a panel, by alice.
    let r = b.get(&format!("/sites/{SITE}/export.csv?panel=page&period=30d"));
    assert_eq!(r.status, 200, "{}", text(&r));
    // hitvault takeout, through the daemon and offline.
    let root = tempfile::tempdir().unwrap();
    let data = d.data_dir.to_str().unwrap().to_owned();
    let to = |n: &str| root.path().join(n).to_str().unwrap().to_owned();
    ok(cli(
        &data,
        &["takeout", "--to", &to("a"), "--format", "ndjson"],
    ));
    let stopped = d.stop();
    ok(cli(&data, &["takeout", "--to", &to("b"), "--site", SITE]));
    let ex = of(&entries_in(&stopped.data_dir), "export");
    assert_eq!(ex.len(), 4, "{ex:#?}");
    assert_eq!(ex[0]["actor"]["kind"], "local");
    assert_eq!(ex[0]["address"], "127.0.0.1");
    assert_eq!(ex[0]["site"], SITE);
    let d0 = &ex[0]["detail"];
    assert_eq!(
        (&d0["via"], &d0["format"], &d0["table"]),
        (&"http".into(), &"csv".into(), &"sites".into())
    );
    assert_eq!(
        (&d0["from"], &d0["until"]),
        (&"2026-01-01".into(), &"2026-02-01".into())
    );
    assert!(user("alice")(&ex[1]), "{}", ex[1]);
    assert_eq!(ex[1]["address"], "127.0.0.2");
    assert_eq!(ex[1]["detail"]["via"], "dashboard");
    assert_eq!(ex[1]["detail"]["panel"], "page");
    assert_eq!(ex[1]["detail"]["format"], "csv");
    assert!(ex[1]["detail"]["from"].as_str().unwrap().len() >= 10);
    assert_eq!(ex[2]["actor"]["kind"], "cli");
    assert_eq!(ex[2]["detail"]["via"], "control");
    assert_eq!(ex[2]["detail"]["sites"], "all");
    assert!(ex[2]["detail"]["hits"].is_u64(), "{}", ex[2]);
    assert_eq!(ex[3]["actor"]["kind"], "cli");
    assert_eq!(ex[3]["detail"]["via"], "cli");
    assert_eq!(ex[3]["detail"]["format"], "parquet");
    assert_eq!(ex[3]["site"], SITE);
}

#[test]
fn imports_of_a_takeout_and_of_plausible_are_recorded() {
    let d = start();
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("takeout");
    let data = d.data_dir.to_str().unwrap().to_owned();
    ok(cli(&data, &["takeout", "--to", out.to_str().unwrap()]));
    ok(cli(&data, &["import", out.to_str().unwrap()]));
    let fixture = hitvault_tests::plausible_fixture();
    ok(cli(
        &data,
        &[
            "import-plausible",
            "--site",
            SITE,
            fixture.to_str().unwrap(),
        ],
    ));
    let stopped = d.stop();
    ok(cli(&data, &["import", out.to_str().unwrap()]));
    ok(cli(
        &data,
        &[
            "import-plausible",
            "--site",
            SITE,
            fixture.to_str().unwrap(),
        ],
    ));
    let im = of(&entries_in(&stopped.data_dir), "import");
    assert_eq!(im.len(), 4, "{im:#?}");
    assert!(im.iter().all(|e| e["actor"]["kind"] == "cli"));
    for (e, format) in im
        .iter()
        .zip(["takeout", "plausible", "takeout", "plausible"])
    {
        assert_eq!(e["detail"]["format"], format, "{e}");
    }
    assert!(
        im[0]["detail"]["counts"]["sites_added"].is_u64(),
        "{}",
        im[0]
    );
    assert_eq!(im[1]["site"], SITE);
    assert!(im[1]["detail"]["counts"].is_object(), "{}", im[1]);
    assert!(
        im[3]["detail"]["counts"]["days"].as_u64().unwrap() > 0,
        "{}",
        im[3]
    );
}

#[test]
fn backups_carry_the_log_and_a_restore_records_itself() {
    let d = start();
    drop(set_up_admin(&d));
    let root = tempfile::tempdir().unwrap();
    let data = d.data_dir.to_str().unwrap().to_owned();
    let online = root.path().join("online");
    ok(cli(&data, &["backup", online.to_str().unwrap()]));
    let stopped = d.stop();
    let offline = root.path().join("offline");
    ok(cli(&data, &["backup", offline.to_str().unwrap()]));
    let backups = of(&entries_in(&stopped.data_dir), "backup");
    assert_eq!(backups.len(), 2, "{backups:#?}");
    assert!(backups.iter().all(|e| e["actor"]["kind"] == "cli"));
    assert!(
        backups[0]["detail"]["committed_seq"].is_u64(),
        "{}",
        backups[0]
    );
    // The copy holds the log up to the backup's own entry.
    let manifest = std::fs::read_to_string(offline.join("BACKUP")).unwrap();
    assert!(manifest.contains("audit.jsonl"), "{manifest}");
    let copied = entries_in_file(&offline.join("audit.jsonl"));
    assert_eq!(copied.last().unwrap()["kind"], "backup");
    assert_eq!(copied.len(), entries_in(&stopped.data_dir).len());
    // Restored into a new data dir: the log comes back, and grows by the restore.
    let restored = root.path().join("restored");
    ok(cli(
        restored.to_str().unwrap(),
        &["restore", offline.to_str().unwrap()],
    ));
    let after = entries_in(&restored);
    assert_eq!(after.len(), copied.len() + 1);
    let r = after.last().unwrap();
    assert_eq!(r["kind"], "restore");
    assert_eq!(r["actor"]["kind"], "cli");
    assert_eq!(r["seq"], copied.len() as u64 + 1, "seq goes on");
    assert!(r["detail"]["created_at"].is_string(), "{r}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(restored.join("accounts/audit.jsonl"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

fn entries_in_file(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn prunes_are_recorded_but_not_dry_runs() {
    let d = start();
    let data = d.data_dir.to_str().unwrap().to_owned();
    ok(cli(&data, &["prune", "--dry-run"]));
    ok(cli(&data, &["prune"]));
    let stopped = d.stop();
    ok(cli(&data, &["prune"]));
    let pr = of(&entries_in(&stopped.data_dir), "prune");
    assert_eq!(pr.len(), 2, "{pr:#?}");
    assert!(pr.iter().all(|e| e["actor"]["kind"] == "cli"));
    assert!(pr.iter().all(|e| e["detail"]["hits"] == 0), "{pr:#?}");
}

#[test]
fn the_audit_page_and_export_are_for_admins_and_the_local_operator_only() {
    let d = start();
    let mut alice = set_up_admin(&d);
    let mut bob = add_user(&mut alice, "bob", "127.0.0.3");
    // The admin's account page links to it; bob's does not.
    assert!(text(&alice.get("/account")).contains("href=\"/admin/audit\""));
    assert!(!text(&bob.get("/account")).contains("/admin/audit"));
    // An admin's session reads the page, filtered, newest first.
    let r = alice.get("/admin/audit?actor=alice&kind=user_added");
    assert_eq!(r.status, 200, "{}", text(&r));
    let page = text(&r);
    assert!(page.contains("data-kind=\"user_added\""), "{page}");
    assert!(!page.contains("data-kind=\"sign_in\""), "{page}");
    assert!(
        !page.contains("<style") && !page.contains(" style="),
        "no inline style"
    );
    let r = alice.get("/admin/audit");
    let page = text(&r);
    let first = page.find("data-seq=\"").unwrap();
    let seqs: Vec<u64> = page[first..]
        .split("data-seq=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().parse().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "{seqs:?}");
    // The local operator too.
    assert_eq!(d.get("/admin/audit").unwrap().status, 200);
    // Bob, not an admin, is refused both.
    let r = bob.get("/admin/audit");
    assert_eq!(r.status, 403, "{}", text(&r));
    let r = bob.get("/api/v1/audit?format=ndjson");
    assert_eq!(r.status, 403, "{}", text(&r));
    assert_eq!(r.json()["error"], "forbidden");
    assert!(r.json()["message"].as_str().unwrap().contains("admin"));
    // Without a session: the sign-in page, or 401.
    let mut stranger = Browser::new(&d, "127.0.0.9");
    assert_eq!(stranger.get("/admin/audit").status, 303);
    assert_eq!(stranger.get("/api/v1/audit?format=csv").status, 401);
    // The export, streamed: every entry, oldest first, in NDJSON and CSV.
    let r = alice.get("/api/v1/audit?format=ndjson");
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    let lines: Vec<Value> = text(&r)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let file = entries(&d);
    assert_eq!(lines, file[..lines.len()].to_vec());
    assert!(lines.len() >= 6, "{lines:#?}");
    let r = d
        .get("/api/v1/audit?format=csv&kind=sign_in&actor=bob")
        .unwrap();
    assert_eq!(r.status, 200);
    let csv = text(&r);
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "seq,at,actor_kind,actor,address,kind,site,detail");
    assert_eq!(rows.len(), 2, "{csv}");
    assert!(
        rows[1].contains(",user,user:bob,127.0.0.3,sign_in,"),
        "{csv}"
    );
    // A bad parameter is named.
    let r = d.get("/api/v1/audit?format=csv&kind=nope").unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["parameter"], "kind");
    let r = d.get("/api/v1/audit").unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["parameter"], "format");
}

#[test]
fn the_audit_page_pages_through_older_entries() {
    let d = start();
    drop(set_up_admin(&d));
    let data = d.data_dir.to_str().unwrap().to_owned();
    for i in 0..12 {
        ok(cli(&data, &["site", "add", &format!("s{i}.test")]));
    }
    let seqs = |p: &str| -> Vec<u64> {
        p.split("data-seq=\"")
            .skip(1)
            .map(|s| s.split('"').next().unwrap().parse().unwrap())
            .collect()
    };
    // Pages of 5 of the sites added, newest first, then older ones.
    let site_added: Vec<u64> = of(&entries(&d), "site_added")
        .iter()
        .rev()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(site_added.len(), 12);
    let mut href = "/admin/audit?kind=site_added&limit=5".to_owned();
    let mut seen = Vec::new();
    loop {
        let page = text(&d.get(&href).unwrap());
        let got = seqs(&page);
        assert!(got.len() <= 5, "{href}: {got:?}");
        seen.extend(got);
        let Some(at) = page.find("id=\"audit-older\"") else {
            break;
        };
        let h = page[..at].rsplit("href=\"").next().unwrap();
        href = h.split('"').next().unwrap().replace("&amp;", "&");
        assert!(href.contains("kind=site_added"), "{href}");
    }
    assert_eq!(seen, site_added);
    // Without a limit, a page holds 50.
    assert!(seqs(&text(&d.get("/admin/audit").unwrap())).len() <= 50);
}

#[test]
fn hitvault_audit_reads_the_log_online_and_offline() {
    let d = start();
    drop(set_up_admin(&d));
    let data = d.data_dir.to_str().unwrap().to_owned();
    ok(cli(&data, &["site", "add", "one.test"]));
    let online = ok(cli(
        &data,
        &["audit", "--kind", "site_added", "--format", "ndjson"],
    ));
    let lines: Vec<Value> = online
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{online}");
    assert_eq!(lines[0]["site"], "one.test");
    let table = ok(cli(&data, &["audit", "--actor", "alice", "--limit", "2"]));
    assert_eq!(table.lines().count(), 3, "a header and two rows: {table}");
    assert!(
        table.lines().nth(1).unwrap().contains("user:alice"),
        "{table}"
    );
    let stopped = d.stop();
    let offline = ok(cli(&data, &["audit", "--format", "ndjson"]));
    let all: Vec<Value> = offline
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut file = entries_in(&stopped.data_dir);
    file.reverse();
    assert_eq!(all, file, "newest first, the whole file");
    let since = ok(cli(&data, &["audit", "--since", "2999-01-01"]));
    assert_eq!(since.lines().count(), 1, "{since}");
    let out = cli(&data, &["audit", "--kind", "nope"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--kind"),
        "{out:?}"
    );
}
