//! Black-box test of goals, funnels and event properties over HTTP: hits
//! with known times go in through the batch endpoint, definitions are made
//! with the JSON API, and the numbers must be the ones worked out below.

use std::time::{Duration, Instant};

use hitvault_tests::Daemon;
use serde_json::{Value, json};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0";
const TOKEN: &str = "goals-token-0123456789";

/// Visitor 1: 10:00 `/`, 10:05 `/pricing`, 10:06 `signup` {plan: pro}.
/// Visitor 2: 11:00 `/pricing`, 11:01 `/`, 11:02 `signup` {plan: free}.
/// Visitor 3: 12:00 `/blog/a`, 12:40 `/` and 12:45 `/pricing` (a second
/// session), 14:00 `signup` (a third session). All on 2026-01-10 UTC.
fn batch() -> String {
    let hit = |ip: &str, t: &str, name: &str, path: &str, props: Value| {
        json!({
            "name": name,
            "url": format!("https://goals.test{path}"),
            "user_agent": FIREFOX,
            "ip": ip,
            "timestamp": format!("2026-01-10T{t}:00Z"),
            "props": props,
        })
        .to_string()
    };
    let none = || json!({});
    [
        hit("203.0.113.1", "10:00", "pageview", "/", none()),
        hit("203.0.113.1", "10:05", "pageview", "/pricing", none()),
        hit(
            "203.0.113.1",
            "10:06",
            "signup",
            "/pricing",
            json!({"plan": "pro"}),
        ),
        hit("203.0.113.2", "11:00", "pageview", "/pricing", none()),
        hit("203.0.113.2", "11:01", "pageview", "/", none()),
        hit(
            "203.0.113.2",
            "11:02",
            "signup",
            "/",
            json!({"plan": "free"}),
        ),
        hit("203.0.113.3", "12:00", "pageview", "/blog/a", none()),
        hit("203.0.113.3", "12:40", "pageview", "/", none()),
        hit("203.0.113.3", "12:45", "pageview", "/pricing", none()),
        hit("203.0.113.3", "14:00", "signup", "/pricing", none()),
    ]
    .join("\n")
}

const WINDOW: &str = "site=goals.test&from=2026-01-10&to=2026-01-11&tz=UTC";

fn get(d: &Daemon, path: &str) -> (u16, Value) {
    let r = d.get(path).expect("request");
    let body = if r.body.is_empty() {
        Value::Null
    } else {
        r.json()
    };
    (r.status, body)
}

fn post(d: &Daemon, path: &str, body: &str) -> (u16, Value) {
    let r = d
        .request(
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .expect("request");
    (r.status, r.json())
}

#[test]
fn goals_funnels_and_properties_over_http() {
    let tok = tempfile::tempdir().unwrap();
    let token = tok.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let d = Daemon::start(&[
        ("HITVAULT_SITES", "goals.test"),
        ("HITVAULT_INGEST_TOKEN_FILE", token.to_str().unwrap()),
    ]);
    let auth = format!("Bearer {TOKEN}");
    let r = d
        .request(
            "POST",
            "/api/ingest/batch",
            &[
                ("Authorization", auth.as_str()),
                ("Content-Type", "application/x-ndjson"),
            ],
            batch().as_bytes(),
        )
        .unwrap();
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));

    // Definitions.
    let (s, g) = post(
        &d,
        "/api/v1/sites/goals.test/goals",
        r#"{"kind":"event","value":"signup","name":"Signed up"}"#,
    );
    assert_eq!(s, 201, "{g}");
    let (s, blog) = post(
        &d,
        "/api/v1/sites/goals.test/goals",
        r#"{"kind":"page","value":"/blog/*"}"#,
    );
    assert_eq!((s, blog["name"].as_str()), (201, Some("/blog/*")), "{blog}");
    let (s, e) = post(
        &d,
        "/api/v1/sites/goals.test/goals",
        r#"{"kind":"event","value":"other","name":"Signed up"}"#,
    );
    assert_eq!((s, e["error"].as_str()), (409, Some("exists")), "{e}");
    for (body, parameter) in [
        ("not json", "body"),
        (r#"{"kind":"click","value":"x"}"#, "goal"),
        (r#"{"kind":"page"}"#, "goal"),
    ] {
        let (s, e) = post(&d, "/api/v1/sites/goals.test/goals", body);
        assert_eq!(
            (s, e["parameter"].as_str()),
            (400, Some(parameter)),
            "{body}: {e}"
        );
    }
    let (s, e) = post(
        &d,
        "/api/v1/sites/goals.test/goals",
        r#"{"kind":"page","value":"no-slash"}"#,
    );
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid")), "{e}");
    let (s, e) = post(
        &d,
        "/api/v1/sites/nowhere.test/goals",
        r#"{"kind":"page","value":"/"}"#,
    );
    assert_eq!((s, e["parameter"].as_str()), (400, Some("site")), "{e}");
    let funnel = r#"{"name":"Buy","steps":[{"kind":"page","value":"/"},{"kind":"page","value":"/pricing"},{"kind":"event","value":"signup"}]}"#;
    let (s, f) = post(&d, "/api/v1/sites/goals.test/funnels", funnel);
    assert_eq!(s, 201, "{f}");
    let (s, e) = post(
        &d,
        "/api/v1/sites/goals.test/funnels",
        r#"{"name":"One","steps":[{"kind":"page","value":"/"}]}"#,
    );
    assert_eq!(s, 400, "{e}");
    assert!(e["message"].as_str().unwrap().contains("2 to 8"), "{e}");
    let (s, list) = get(&d, "/api/v1/sites/goals.test/funnels");
    assert_eq!(
        (s, list["funnels"][0]["steps"].as_array().map(Vec::len)),
        (200, Some(3))
    );

    // Numbers, once the batch is in DuckDB.
    let t = Instant::now();
    let goals = loop {
        let (s, v) = get(&d, &format!("/api/v1/stats/goals?{WINDOW}"));
        assert_eq!(s, 200, "{v}");
        if v["goals"][1]["conversions"] == 3 || t.elapsed() > Duration::from_secs(20) {
            break v;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // By name: "/blog/*" (visitor 3 of 3), "Signed up" (all three, once each).
    let got: Vec<(String, u64, u64, f64)> = goals["goals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["name"].as_str().unwrap().to_owned(),
                g["visitors"].as_u64().unwrap(),
                g["conversions"].as_u64().unwrap(),
                g["conversion_rate"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("/blog/*".to_owned(), 1, 1, 1.0 / 3.0),
            ("Signed up".to_owned(), 3, 3, 1.0)
        ]
    );
    // The stored funnel: step 1 "/" in three sessions; /pricing after it for
    // visitors 1 and 3; signup after that in the same session: visitor 1.
    let id = f["id"].as_u64().unwrap();
    let (s, v) = get(&d, &format!("/api/v1/stats/funnel?{WINDOW}&funnel={id}"));
    assert_eq!(s, 200, "{v}");
    let steps: Vec<(u64, u64)> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["visitors"].as_u64().unwrap(),
                s["dropoff"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(steps, [(3, 0), (2, 1), (1, 1)], "{v}");
    assert_eq!(v["funnel"]["name"], "Buy");
    // Ad hoc, reversed: /pricing then "/": visitor 2 only.
    let (s, v) = get(
        &d,
        &format!("/api/v1/stats/funnel?{WINDOW}&step=page:/pricing&step=page:/"),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["steps"][1]["visitors"], 1, "{v}");
    for (q, parameter) in [
        ("&step=page:/", "step"),
        ("&step=click:/&step=page:/", "step"),
        ("&funnel=999", "funnel"),
        ("", "funnel"),
    ] {
        let (s, e) = get(&d, &format!("/api/v1/stats/funnel?{WINDOW}{q}"));
        assert_eq!(
            (s, e["parameter"].as_str()),
            (400, Some(parameter)),
            "{q}: {e}"
        );
    }
    // Properties: key "plan" on two signups; its values.
    let (s, v) = get(&d, &format!("/api/v1/stats/props?{WINDOW}&event=signup"));
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["rows"],
        json!([{"value": "plan", "visitors": 2, "events": 2}])
    );
    let (_, v) = get(&d, &format!("/api/v1/stats/props?{WINDOW}&key=plan"));
    let values: Vec<&str> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["value"].as_str().unwrap())
        .collect();
    assert_eq!(values, ["free", "pro"]);
    let (s, e) = get(&d, &format!("/api/v1/stats/props?{WINDOW}&colour=red"));
    assert_eq!((s, e["parameter"].as_str()), (400, Some("colour")), "{e}");

    // Deleting: 204, then 404.
    let gid = g["id"].as_u64().unwrap();
    let path = format!("/api/v1/sites/goals.test/goals/{gid}");
    let r = d.request("DELETE", &path, &[], b"").unwrap();
    assert_eq!(r.status, 204);
    let r = d.request("DELETE", &path, &[], b"").unwrap();
    assert_eq!(r.status, 404);
    let (_, list) = get(&d, "/api/v1/sites/goals.test/goals");
    assert_eq!(list["goals"].as_array().map(Vec::len), Some(1), "{list}");
    // Definitions are stored in DuckDB, and survive a restart.
    let stopped = d.stop();
    assert_eq!(stopped.count("SELECT count(*) FROM funnels"), 1);
    assert_eq!(stopped.count("SELECT count(*) FROM goals"), 1);
}

/// Every route of the daemon, as (method, path template).
const ROUTES: [(&str, &str); 20] = [
    ("get", "/hv.js"),
    ("post", "/api/collect"),
    ("post", "/api/event"),
    ("post", "/api/ingest/batch"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/api/v1/stats/overview"),
    ("get", "/api/v1/stats/realtime"),
    ("get", "/api/v1/stats/goals"),
    ("get", "/api/v1/stats/funnel"),
    ("get", "/api/v1/stats/props"),
    ("get", "/api/v1/sites/{site}/goals"),
    ("post", "/api/v1/sites/{site}/goals"),
    ("delete", "/api/v1/sites/{site}/goals/{id}"),
    ("get", "/api/v1/sites/{site}/funnels"),
    ("post", "/api/v1/sites/{site}/funnels"),
    ("delete", "/api/v1/sites/{site}/funnels/{id}"),
    ("get", "/api/v1/takeout"),
];

#[test]
fn the_openapi_document_describes_every_route_and_only_routes_that_exist() {
    let d = Daemon::start(&[("HITVAULT_SITES", "goals.test")]);
    let (s, doc) = get(&d, "/api/v1/openapi.json");
    assert_eq!(s, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    for (method, path) in ROUTES {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} is not in the document"
        );
    }
    // Each documented operation reaches a handler: the router's own 404 has
    // no body, and a wrong method is a 405.
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let concrete = path.replace("{site}", "goals.test").replace("{id}", "1");
            let r = d
                .request(&method.to_uppercase(), &concrete, &[], b"")
                .expect("request");
            assert!(
                !(r.status == 404 && r.body.is_empty()) && r.status != 405,
                "{method} {path}: {} (no such route)",
                r.status
            );
        }
    }
}

/// The routes served to anyone (the tracker posts from other sites' pages).
const PUBLIC: [&str; 7] = [
    "/hv.js",
    "/api/collect",
    "/api/event",
    "/api/ingest/batch",
    "/healthz",
    "/readyz",
    "/metrics",
];

#[test]
fn every_protected_route_refuses_requests_addressed_to_another_name() {
    let d = Daemon::start(&[("HITVAULT_SITES", "goals.test")]);
    let foreign = format!("rebound.evil.test:{}", d.addr.port());
    let local = format!("localhost:{}", d.addr.port());
    let dashboard = ["/", "/sites/goals.test", "/assets/dashboard.js"];
    let api = ROUTES
        .iter()
        .filter(|(_, p)| !PUBLIC.contains(p))
        .map(|&(m, p)| (m, p));
    for (method, path) in api.chain(dashboard.iter().map(|&p| ("get", p))) {
        let concrete = path.replace("{site}", "goals.test").replace("{id}", "1");
        let method = method.to_uppercase();
        let r = d
            .request(&method, &concrete, &[("Host", &foreign)], b"")
            .expect("request");
        let body = String::from_utf8_lossy(&r.body);
        assert_eq!(r.status, 403, "{method} {path}: {body}");
        assert!(body.contains(&foreign), "{method} {path}: {body}");
        // The same request addressed to a loopback name passes the check
        // (whatever the route then makes of it).
        let r = d
            .request(&method, &concrete, &[("Host", &local)], b"")
            .expect("request");
        assert_ne!(r.status, 403, "{method} {path} to {local}");
    }
    // Ingest is served whatever the request is addressed to.
    let r = d
        .request(
            "POST",
            "/api/event",
            &[
                ("Host", "stats.goals.test"),
                ("User-Agent", FIREFOX),
                ("Content-Type", "text/plain"),
            ],
            br#"{"n":"pageview","u":"https://goals.test/x"}"#,
        )
        .expect("request");
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    for path in ["/hv.js", "/healthz"] {
        let r = d.request("GET", path, &[("Host", &foreign)], b"").unwrap();
        assert_eq!(r.status, 200, "{path}");
    }
}
