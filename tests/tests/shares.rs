//! A site's members and share links through the real daemon (seccomp in
//! enforce mode, as every test): owners manage members under the
//! last-owner rule, viewers and editors are refused both pages, and a
//! share link shows one site's numbers read-only, behind its password,
//! until it is revoked or expires. One test opens a protected link in
//! headless Chromium (the pass cookie in a real browser, a clean page).
//!
//! The "browsers" send `Host: hitvault.test` (a configured hostname) from
//! other loopback addresses, so the daemon treats them as LAN clients that
//! need a session (see tests/tests/accounts.rs).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hitvault_tests::{Daemon, IngestToken, Reply, hitvault, request_from};
use serde_json::json;

const HOST: &str = "hitvault.test";
const SITE: &str = "stats.test";
const OTHER: &str = "other.test";
const PASSWORD: &str = "correct horse battery";
const TOKEN: &str = "shares-token-0123456789";
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0";
/// The form limit docs/reference/limits.md gives (16 KiB).
const MAX_FORM: usize = 16 * 1024;

fn start() -> (Daemon, IngestToken) {
    let token = IngestToken::new(TOKEN);
    let d = Daemon::start(&[
        ("HITVAULT_HOSTNAMES", HOST),
        ("HITVAULT_SITES", &format!("{SITE},{OTHER}")),
        token.env(),
    ]);
    (d, token)
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
        let mut headers = vec![("Host", host.as_str()), ("User-Agent", FIREFOX)];
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

    /// Posts a form of `page`, with the session's CSRF token from it.
    fn submit(&mut self, page: &str, path: &str, fields: &[(&str, &str)]) -> Reply {
        let csrf = hidden(&text(&self.get(page)), "csrf").expect("a CSRF field");
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post(path, &all)
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

/// The path of a `/setup/` link in `out`.
fn setup_path(out: &str) -> String {
    let at = out
        .find("/setup/")
        .unwrap_or_else(|| panic!("no set-up link in:\n{out}"));
    out[at..].split_whitespace().next().unwrap().to_owned()
}

/// Sets up a user through their set-up link and signs them in.
fn set_up<'a>(d: &'a Daemon, from: &str, path: &str, name: Option<&str>) -> Browser<'a> {
    let mut b = Browser::new(d, from);
    let page = b.get(path);
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
    let r = b.post(path, &fields);
    assert_eq!(r.status, 303, "{}", text(&r));
    b
}

/// The admin `alice` (the first-run link).
fn admin(d: &Daemon) -> Browser<'_> {
    set_up(d, "127.0.0.2", &setup_path(&d.log_text()), Some("alice"))
}

/// A user `name` added with `hitvault user add`, signed in from `from`.
fn user<'a>(d: &'a Daemon, name: &str, from: &str) -> Browser<'a> {
    let data = d.data_dir.to_str().unwrap();
    let out = hitvault(&["--data-dir", data, "user", "add", name]);
    assert!(out.status.success(), "{out:?}");
    set_up(
        d,
        from,
        &setup_path(&String::from_utf8_lossy(&out.stdout)),
        None,
    )
}

/// The `data-kpi` tile `key`'s value in a page.
fn kpi(html: &str, key: &str) -> String {
    let tile = html
        .split(&format!("data-kpi=\"{key}\""))
        .nth(1)
        .unwrap_or_else(|| panic!("no KPI {key} in:\n{html}"));
    let value = tile.split("class=\"value\"").nth(1).unwrap();
    let value = &value[value.find('>').unwrap() + 1..];
    value[..value.find('<').unwrap()].to_owned()
}

/// The role shown for `name` on a members page.
fn role_of(page: &str, name: &str) -> Option<String> {
    let row = page.split(&format!("data-member=\"{name}\"")).nth(1)?;
    let row = &row[..row.find("</tr>")?];
    let sel = row.split("\" selected>").next()?;
    Some(sel[sel.rfind('"')? + 1..].to_owned())
}

fn hit(site: &str, ip: &str, ts: &str, path: &str) -> String {
    json!({
        "name": "pageview",
        "url": format!("https://{site}{path}"),
        "user_agent": FIREFOX,
        "ip": ip,
        "timestamp": ts,
    })
    .to_string()
}

/// On 2026-01-10: 5 pageviews on stats.test by 2 visitors (three on
/// `/pricing`), and 3 on other.test, on a page named only there.
fn fill(d: &Daemon) {
    let hits = [
        hit(SITE, "203.0.113.1", "2026-01-10T10:00:00Z", "/"),
        hit(SITE, "203.0.113.1", "2026-01-10T10:05:00Z", "/pricing"),
        hit(SITE, "203.0.113.1", "2026-01-10T10:07:00Z", "/pricing"),
        hit(SITE, "203.0.113.2", "2026-01-10T11:00:00Z", "/"),
        hit(SITE, "203.0.113.2", "2026-01-10T11:03:00Z", "/pricing"),
        hit(
            OTHER,
            "203.0.113.3",
            "2026-01-10T10:00:00Z",
            "/other-only-page",
        ),
        hit(
            OTHER,
            "203.0.113.3",
            "2026-01-10T10:01:00Z",
            "/other-only-page",
        ),
        hit(OTHER, "203.0.113.4", "2026-01-10T10:02:00Z", "/"),
    ]
    .join("\n");
    d.ingest(TOKEN, &hits);
    let t = Instant::now();
    for (site, want) in [(SITE, 5), (OTHER, 3)] {
        loop {
            let r = d
                .get(&format!(
                    "/api/v1/stats/overview?site={site}&from=2026-01-10&to=2026-01-11"
                ))
                .unwrap();
            if r.status == 200 && r.json()["kpis"]["pageviews"] == want {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "the hits did not arrive: {}",
                text(&r)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

const DAY: &str = "period=custom&from=2026-01-10&to=2026-01-10";

/// The path of the share URL shown once on the page that made it.
fn share_path(d: &Daemon, made: &Reply) -> String {
    assert_eq!(made.status, 201, "{}", text(made));
    let page = text(made);
    let at = page
        .find("id=\"share-url\">")
        .unwrap_or_else(|| panic!("no share URL in:\n{page}"));
    let url = &page[at + 15..];
    let url = &url[..url.find('<').unwrap()];
    let prefix = format!("https://{HOST}:{}/share/", d.addr.port());
    assert!(url.starts_with(&prefix), "{url}");
    url["https://".len() + HOST.len() + 1 + d.addr.port().to_string().len()..].to_owned()
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

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn owners_manage_members_and_viewers_and_editors_are_refused() {
    let (d, _tok) = start();
    let mut alice = admin(&d);
    let mut bob = user(&d, "bob", "127.0.0.3");
    let mut carol = user(&d, "carol", "127.0.0.4");
    let mut dave = user(&d, "dave", "127.0.0.5");
    let members = format!("/sites/{SITE}/members");
    let shares = format!("/sites/{SITE}/shares");
    // Before any role, bob reaches nothing of the site.
    assert_eq!(bob.get(&members).status, 403);
    // The admin makes bob the owner.
    let r = alice.submit(&members, &members, &[("name", "bob"), ("role", "owner")]);
    assert_eq!(r.status, 303, "{}", text(&r));
    assert_eq!(
        r.header("location"),
        Some(&*format!("{members}?done=added"))
    );
    // The owner sees the page, and its links in the site's navigation.
    let page = text(&bob.get(&members));
    assert_eq!(role_of(&page, "bob").as_deref(), Some("owner"), "{page}");
    let overview = text(&bob.get(&format!("/sites/{SITE}")));
    assert!(
        overview.contains(&format!("href=\"{members}\"")),
        "{overview}"
    );
    assert!(overview.contains(&format!("href=\"{shares}\"")));
    let settings = text(&bob.get(&format!("/sites/{SITE}/settings")));
    assert!(settings.contains("Who sees this site"), "{settings}");
    // He adds a viewer and an editor.
    for (who, role) in [("carol", "viewer"), ("dave", "editor")] {
        let r = bob.submit(&members, &members, &[("name", who), ("role", role)]);
        assert_eq!(r.status, 303, "{}", text(&r));
    }
    let page = text(&bob.get(&members));
    assert_eq!(role_of(&page, "carol").as_deref(), Some("viewer"));
    assert_eq!(role_of(&page, "dave").as_deref(), Some("editor"));
    // Bad input gets the page again with the reason.
    let r = bob.submit(
        &members,
        &members,
        &[("name", "nobody"), ("role", "viewer")],
    );
    assert_eq!(r.status, 404);
    assert!(
        text(&r).contains("there is no user named &quot;nobody&quot;"),
        "{}",
        text(&r)
    );
    let r = bob.submit(&members, &members, &[("name", "carol"), ("role", "boss")]);
    assert_eq!(r.status, 400);
    assert!(text(&r).contains("is not a role"), "{}", text(&r));
    let r = bob.submit(&members, &members, &[("name", "carol"), ("role", "owner")]);
    assert_eq!(r.status, 409, "already a member");
    // An unknown site, and a site bob does not own.
    assert_eq!(bob.get("/sites/nowhere.test/members").status, 403);
    assert_eq!(alice.get("/sites/nowhere.test/members").status, 404);
    assert_eq!(bob.get(&format!("/sites/{OTHER}/members")).status, 403);
    // A viewer and an editor reach the numbers but not these pages, nor
    // see their links.
    for b in [&mut carol, &mut dave] {
        let overview = b.get(&format!("/sites/{SITE}"));
        assert_eq!(overview.status, 200);
        assert!(!text(&overview).contains(&members));
        assert!(!text(&overview).contains(&shares));
        let settings = b.get(&format!("/sites/{SITE}/settings"));
        assert!(!text(&settings).contains(&members), "{}", text(&settings));
        for path in [&members, &shares] {
            let r = b.get(path);
            assert_eq!(r.status, 403, "{path}");
            assert!(text(&r).contains("the manage right"), "{}", text(&r));
        }
        let csrf = hidden(&text(&b.get("/account")), "csrf").unwrap();
        let r = b.post(
            &members,
            &[("csrf", &csrf), ("name", "carol"), ("role", "owner")],
        );
        assert_eq!(r.status, 403);
        let r = b.post(&shares, &[("csrf", &csrf), ("name", "mine"), ("days", "3")]);
        assert_eq!(r.status, 403);
    }
    // The owner changes a role and removes a member.
    let page = text(&bob.get(&members));
    let dave_id = id_in(&page, "dave");
    let carol_id = id_in(&page, "carol");
    let bob_id = id_in(&page, "bob");
    let r = bob.submit(
        &members,
        &format!("{members}/{dave_id}/role"),
        &[("role", "viewer")],
    );
    assert_eq!(r.status, 303, "{}", text(&r));
    assert_eq!(
        role_of(&text(&bob.get(&members)), "dave").as_deref(),
        Some("viewer")
    );
    let r = bob.submit(&members, &format!("{members}/{carol_id}/remove"), &[]);
    assert_eq!(r.status, 303);
    assert_eq!(
        carol.get(&format!("/sites/{SITE}")).status,
        403,
        "carol is out"
    );
    // The last owner stays, unless an admin says otherwise.
    for (path, fields) in [
        (format!("{members}/{bob_id}/role"), vec![("role", "editor")]),
        (format!("{members}/{bob_id}/remove"), vec![]),
    ] {
        let r = bob.submit(&members, &path, &fields);
        assert_eq!(r.status, 409, "{path}");
        assert!(text(&r).contains("last owner"), "{}", text(&r));
    }
    let r = alice.submit(
        &members,
        &format!("{members}/{bob_id}/role"),
        &[("role", "editor")],
    );
    assert_eq!(r.status, 303, "an admin may: {}", text(&r));
    assert_eq!(bob.get(&members).status, 403, "bob is an editor now");
    // Past the form limit: refused with the reason, nothing changed.
    let csrf = hidden(&text(&alice.get(&members)), "csrf").unwrap();
    let big = format!(
        "csrf={csrf}&name=dave&role=owner&pad={}",
        "x".repeat(MAX_FORM)
    );
    for path in [&members, &shares] {
        let r = alice.send("POST", path, &big);
        assert_eq!(r.status, 403, "{path}");
        assert!(text(&r).contains("larger than 16384 bytes"), "{}", text(&r));
    }
    assert_eq!(
        role_of(&text(&alice.get(&members)), "dave").as_deref(),
        Some("viewer")
    );
    // The operator on this machine has no CSRF token to send; the
    // handlers bound the body themselves.
    let big = format!("name=dave&role=owner&pad={}", "x".repeat(MAX_FORM));
    for path in [&members, &shares] {
        let r = d
            .request(
                "POST",
                path,
                &[("Content-Type", "application/x-www-form-urlencoded")],
                big.as_bytes(),
            )
            .unwrap();
        assert_eq!(r.status, 413, "{path}: {}", text(&r));
        assert!(text(&r).contains("larger than 16384 bytes"), "{}", text(&r));
    }
}

/// The user id in the forms of `name`'s row on a members page.
fn id_in(page: &str, name: &str) -> String {
    let row = page
        .split(&format!("data-member=\"{name}\""))
        .nth(1)
        .unwrap_or_else(|| panic!("{name} is not listed:\n{page}"));
    let at = row.find("/members/").unwrap() + "/members/".len();
    row[at..at + row[at..].find('/').unwrap()].to_owned()
}

#[test]
fn a_share_link_shows_one_site_read_only_until_revoked_or_expired() {
    let (d, _tok) = start();
    fill(&d);
    let mut alice = admin(&d);
    let shares = format!("/sites/{SITE}/shares");
    let made = alice.submit(&shares, &shares, &[("name", "the board"), ("days", "7")]);
    let link = share_path(&d, &made);
    // Listed with who made it, its end and no password; the URL is not.
    let list = text(&alice.get(&shares));
    assert!(
        list.contains("the board") && list.contains("<td>alice</td>"),
        "{list}"
    );
    assert!(list.contains("<td>no</td>"));
    assert!(!list.contains(&link), "the URL is shown once");
    // Anyone with the link sees the site's numbers, and nothing else.
    let mut stranger = Browser::new(&d, "127.0.0.9");
    let r = stranger.get(&format!("{link}?{DAY}"));
    assert_eq!(r.status, 200, "{}", text(&r));
    let page = text(&r);
    assert_eq!(kpi(&page, "pageviews"), "5");
    assert_eq!(kpi(&page, "visitors"), "2");
    assert!(
        page.contains("share-banner") && page.contains(SITE),
        "{page}"
    );
    assert!(page.contains("shared with you, until "), "{page}");
    for never in [
        "/sites",
        "/api/",
        "export.csv",
        "/account",
        "/logout",
        "other-only-page",
        OTHER,
        "data-live-site",
    ] {
        assert!(
            !page.contains(never),
            "the shared page holds {never:?}:\n{page}"
        );
    }
    // A panel's row filters the view within the link.
    assert!(page.contains(&format!("href=\"{link}?")), "{page}");
    assert!(r.header("content-security-policy").is_some());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    // Naming another site, or any bad parameter, gets a reason and nothing else.
    let r = stranger.get(&format!("{link}?{DAY}&site={OTHER}"));
    assert_eq!(r.status, 400);
    assert!(text(&r).contains("unknown parameter"), "{}", text(&r));
    assert!(!text(&r).contains("/sites") && !text(&r).contains("data-kpi"));
    let r = stranger.get(&format!("{link}?{DAY}&f=page:is:/pricing"));
    assert_eq!(r.status, 200);
    assert_eq!(kpi(&text(&r), "pageviews"), "3");
    // The link opens neither the dashboard nor the API.
    assert_eq!(stranger.get(&format!("/sites/{SITE}")).status, 303);
    assert_eq!(
        stranger
            .get(&format!("/api/v1/stats/overview?site={SITE}"))
            .status,
        401
    );
    // An unknown, a revoked and an expired link get one answer.
    let unknown = stranger.get("/share/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    assert_eq!(unknown.status, 404);
    assert!(text(&unknown).contains("This link is not valid"));
    let id = {
        let list = text(&alice.get(&shares));
        let at = list.find("data-share=\"").unwrap() + 12;
        list[at..at + list[at..].find('"').unwrap()].to_owned()
    };
    let r = alice.submit(&shares, &format!("{shares}/{id}/revoke"), &[]);
    assert_eq!(r.status, 303);
    let r = stranger.get(&link);
    assert_eq!(r.status, 404, "revoked: next request");
    assert_eq!(text(&r), text(&unknown), "the same answer");
    let soon = unix_now() + 3;
    let made = alice.submit(
        &shares,
        &shares,
        &[("name", "brief"), ("until", &rfc3339(soon))],
    );
    let brief = share_path(&d, &made);
    assert_eq!(stranger.get(&brief).status, 200, "live until {soon}");
    while unix_now() < soon {
        std::thread::sleep(Duration::from_millis(200));
    }
    let r = stranger.get(&brief);
    assert_eq!(r.status, 404, "expired");
    assert_eq!(text(&r), text(&unknown));
    // A date: the link works through that day (UTC).
    let day = (unix_now() / 86_400 + 10) * 86_400;
    let r = alice.submit(
        &shares,
        &shares,
        &[("name", "dated"), ("until", &rfc3339(day)[..10])],
    );
    assert_eq!(r.status, 201, "{}", text(&r));
    let end = format!("{} 00:00 UTC", &rfc3339(day + 86_400)[..10]);
    assert!(text(&r).contains(&end), "expires at {end}: {}", text(&r));
    // Bad expiries are refused with the reason.
    let r = alice.submit(&shares, &shares, &[("name", "x"), ("days", "400")]);
    assert_eq!(r.status, 400);
    assert!(text(&r).contains("from 1 to 366"), "{}", text(&r));
    let r = alice.submit(&shares, &shares, &[("name", "x"), ("until", "2020-01-01")]);
    assert_eq!(r.status, 400);
    assert!(text(&r).contains("in the future"), "{}", text(&r));
}

#[test]
fn a_password_protected_link_needs_its_password() {
    let (d, _tok) = start();
    fill(&d);
    let mut alice = admin(&d);
    let shares = format!("/sites/{SITE}/shares");
    let pw = "the shared secret words";
    let made = alice.submit(
        &shares,
        &shares,
        &[("name", "investors"), ("days", "30"), ("password", pw)],
    );
    let link = share_path(&d, &made);
    assert!(text(&alice.get(&shares)).contains("<td>yes</td>"));
    let mut guest = Browser::new(&d, "127.0.0.9");
    let r = guest.get(&format!("{link}?{DAY}"));
    assert_eq!(r.status, 200);
    let form = text(&r);
    assert!(form.contains("name=\"password\""), "{form}");
    assert!(!form.contains("data-kpi"), "no numbers before the password");
    let r = guest.post(&link, &[("password", "not the words")]);
    assert_eq!(r.status, 401);
    assert!(text(&r).contains("not right"));
    assert!(!guest.cookies.contains_key("__Host-hv_share"));
    // Past the form limit.
    let r = guest.send("POST", &link, &format!("password={}", "x".repeat(MAX_FORM)));
    assert_eq!(r.status, 413);
    assert!(text(&r).contains("larger than 16384 bytes"), "{}", text(&r));
    let r = guest.post(&format!("{link}?{DAY}"), &[("password", pw)]);
    assert_eq!(r.status, 303, "{}", text(&r));
    assert_eq!(
        r.header("location"),
        Some(&*format!("{link}?{DAY}")),
        "back to the view"
    );
    let set = r.header("set-cookie").unwrap().to_owned();
    for flag in [
        "__Host-hv_share=",
        "Secure",
        "HttpOnly",
        "SameSite=Lax",
        "Path=/",
    ] {
        assert!(set.contains(flag), "{set}");
    }
    let r = guest.get(&format!("{link}?{DAY}"));
    assert_eq!(r.status, 200);
    assert_eq!(kpi(&text(&r), "pageviews"), "5");
    // The pass opens that link only.
    let other = share_path(
        &d,
        &alice.submit(
            &shares,
            &shares,
            &[("name", "others"), ("days", "30"), ("password", pw)],
        ),
    );
    let r = guest.get(&other);
    assert!(text(&r).contains("name=\"password\""), "{}", text(&r));
    // Wrong guesses slow down like sign-in.
    let mut guesser = Browser::new(&d, "127.0.0.10");
    let mut last = 0;
    for _ in 0..7 {
        last = guesser
            .post(&link, &[("password", "wrong words here")])
            .status;
    }
    assert_eq!(last, 429);
}

/// The password form and the shared view in headless Chromium: the pass
/// cookie is taken and sent back by a real browser, the page loads nothing
/// from elsewhere and logs no error, and a panel row filters within the link.
#[test]
fn a_protected_link_in_headless_chromium() -> Result<(), Box<dyn std::error::Error>> {
    use hitvault_tests::webdriver::{Browser as Chromium, Options};
    let (d, _tok) = start();
    fill(&d);
    let mut alice = admin(&d);
    let shares = format!("/sites/{SITE}/shares");
    let pw = "the shared secret words";
    let link = share_path(
        &d,
        &alice.submit(
            &shares,
            &shares,
            &[("name", "browser"), ("days", "1"), ("password", pw)],
        ),
    );
    // localhost is a loopback name, and a secure context for the browser.
    let origin = format!("http://localhost:{}", d.addr.port());
    let b = Chromium::start(Options::default())?;
    b.navigate(&format!("{origin}{link}?{DAY}"))?;
    assert_eq!(b.title()?, "Password · hitvault");
    b.execute(
        "document.getElementById('share-password').value = arguments[0];
         document.querySelector('main form button').click();",
        &[json!(pw)],
    )?;
    let kpi = |key: &str| -> Result<String, Box<dyn std::error::Error>> {
        let v = b.execute(
            "const e = document.querySelector('[data-kpi=\"' + arguments[0] + '\"] .value');
             return e ? e.textContent : null;",
            &[json!(key)],
        )?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    };
    let t = Instant::now();
    while kpi("pageviews")? != "5" {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "no numbers after the password"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(b.current_url()?, format!("{origin}{link}?{DAY}"));
    b.click(&b.find_css("[data-panel=page] a[data-filter='page:is:/pricing']")?)?;
    let t = Instant::now();
    while !b.current_url()?.contains("f=page") {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "the filter did not apply"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(b.current_url()?.starts_with(&format!("{origin}{link}?")));
    assert_eq!(kpi("pageviews")?, "3");
    let v = b.execute(
        "return [document.documentElement.getAttribute('data-js-errors'),
                 performance.getEntriesByType('resource').map(e => e.name),
                 [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'))]",
        &[],
    )?;
    assert!(v[0].is_null(), "script errors: {v}");
    for r in v[1].as_array().unwrap() {
        assert!(r.as_str().unwrap().starts_with(&origin), "loaded {r}");
    }
    for href in v[2].as_array().unwrap() {
        let href = href.as_str().unwrap();
        assert!(
            href.starts_with(&link) || href.starts_with('#'),
            "a link out of the shared view: {href}"
        );
    }
    let severe: Vec<_> = b
        .console_log()?
        .into_iter()
        .filter(|e| e.level == "SEVERE")
        .collect();
    assert!(severe.is_empty(), "console errors: {severe:#?}");
    b.quit()?;
    Ok(())
}

/// The documented limits of share links, at and past their edge: 50 links
/// per site, names of 64 characters, 366 days.
#[test]
fn share_link_limits_hold_at_their_edge() {
    let (d, _tok) = start();
    let mut alice = admin(&d);
    let shares = format!("/sites/{SITE}/shares");
    let csrf = hidden(&text(&alice.get(&shares)), "csrf").unwrap();
    let make = |b: &mut Browser, name: &str, days: &str| {
        b.post(&shares, &[("csrf", &csrf), ("name", name), ("days", days)])
    };
    let long = "n".repeat(64);
    assert_eq!(make(&mut alice, &long, "366").status, 201, "at the limits");
    let r = make(&mut alice, &format!("{long}n"), "30");
    assert_eq!(r.status, 400);
    assert!(
        text(&r).contains("1 to 64 printable characters"),
        "{}",
        text(&r)
    );
    let r = make(&mut alice, "x", "367");
    assert_eq!(r.status, 400);
    for i in 1..50 {
        let r = make(&mut alice, &format!("link {i}"), "30");
        assert_eq!(r.status, 201, "link {i}: {}", text(&r));
    }
    let r = make(&mut alice, "one too many", "30");
    assert_eq!(r.status, 409);
    assert!(
        text(&r).contains("at most 50 share links; revoke one first"),
        "{}",
        text(&r)
    );
    // Another site has its own 50.
    let other = format!("/sites/{OTHER}/shares");
    let r = alice.post(&other, &[("csrf", &csrf), ("name", "a"), ("days", "1")]);
    assert_eq!(r.status, 201);
    // A revoked link frees its place.
    let list = text(&alice.get(&shares));
    let at = list.find("data-share=\"").unwrap() + 12;
    let id = &list[at..at + list[at..].find('"').unwrap()];
    let r = alice.post(&format!("{shares}/{id}/revoke"), &[("csrf", &csrf)]);
    assert_eq!(r.status, 303);
    assert_eq!(make(&mut alice, "in its place", "30").status, 201);
}
