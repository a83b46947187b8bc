//! Black-box test of the stats API: hits with known times go in through the
//! server-side batch endpoint, and `GET /api/v1/stats/overview` must give the
//! numbers worked out by hand below.

use std::time::{Duration, Instant};

use hitvault_tests::Daemon;
use serde_json::{Value, json};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0";

/// Visitor 1 (203.0.113.1): 10:00 `/`, 10:05 `/pricing`, 10:20 event `signup`
/// with property plan = pro, 11:00 `/blog` (40 minutes later: a second
/// session, a bounce). Visitor 2:
/// 10:10 `/`, 10:40 `/docs` (30 minutes: one session). Visitor 3: 12:00
/// `/pricing` (a bounce). All on 2026-01-10 UTC.
/// Sessions 4, bounces 2, durations 1200 + 0 + 1800 + 0 s.
fn batch() -> String {
    let hit = |ip: &str, t: &str, name: &str, path: &str| {
        let mut h = json!({
            "name": name,
            "url": format!("https://stats.test{path}"),
            "user_agent": FIREFOX,
            "ip": ip,
            "timestamp": format!("2026-01-10T{t}:00Z"),
        });
        if name == "signup" {
            h["props"] = json!({"plan": "pro"});
        }
        h.to_string()
    };
    [
        hit("203.0.113.1", "10:00", "pageview", "/"),
        hit("203.0.113.1", "10:05", "pageview", "/pricing"),
        hit("203.0.113.1", "10:20", "signup", "/pricing"),
        hit("203.0.113.1", "11:00", "pageview", "/blog"),
        hit("203.0.113.2", "10:10", "pageview", "/"),
        hit("203.0.113.2", "10:40", "pageview", "/docs"),
        hit("203.0.113.3", "12:00", "pageview", "/pricing"),
    ]
    .join("\n")
}

fn overview(d: &Daemon, query: &str) -> (u16, Value) {
    let r = d
        .get(&format!("/api/v1/stats/overview?{query}"))
        .expect("stats request");
    (r.status, r.json())
}

#[test]
fn the_overview_answers_with_hand_computed_numbers_and_names_bad_parameters() {
    let tok = tempfile::tempdir().unwrap();
    let token = tok.path().join("token");
    std::fs::write(&token, "stats-token-0123456789\n").unwrap();
    let d = Daemon::start(&[
        ("HITVAULT_SITES", "stats.test"),
        ("HITVAULT_INGEST_TOKEN_FILE", token.to_str().unwrap()),
    ]);
    let r = d
        .request(
            "POST",
            "/api/ingest/batch",
            &[
                ("Authorization", "Bearer stats-token-0123456789"),
                ("Content-Type", "application/x-ndjson"),
            ],
            batch().as_bytes(),
        )
        .unwrap();
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));

    let q = "site=stats.test&from=2026-01-09&to=2026-01-12&tz=UTC&interval=day";
    // The batch is durable at 202; it reaches DuckDB with the next batch commit.
    let t = Instant::now();
    let o = loop {
        let (status, o) = overview(&d, q);
        assert_eq!(status, 200, "{o}");
        if o["kpis"]["visitors"] == 3 || t.elapsed() > Duration::from_secs(20) {
            break o;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        o["kpis"],
        json!({
            "visitors": 3, "pageviews": 6, "events": 1, "sessions": 4,
            "bounce_rate": 0.5, "avg_visit_duration_s": 750.0, "views_per_visit": 1.5,
            // No engagement was sent: no time on page, no scroll depth.
            "time_on_page": null, "scroll_depth": null,
        })
    );
    // The comparison period is the three days before, with nothing in it.
    assert_eq!(o["previous"]["from"], "2026-01-06T00:00:00Z");
    assert_eq!(o["previous"]["kpis"]["visitors"], 0);
    assert_eq!(o["deltas"]["visitors"], Value::Null);
    assert_eq!(
        o["series"],
        json!([
            {"start": "2026-01-09T00:00:00", "visitors": 0, "pageviews": 0, "sessions": 0},
            {"start": "2026-01-10T00:00:00", "visitors": 3, "pageviews": 6, "sessions": 4},
            {"start": "2026-01-11T00:00:00", "visitors": 0, "pageviews": 0, "sessions": 0},
        ])
    );
    assert_eq!(o["breakdowns"]["entry_page"][0]["value"], "/");
    assert_eq!(o["breakdowns"]["entry_page"][0]["visitors"], 2);
    assert_eq!(
        o["breakdowns"]["event"],
        json!([{"value": "signup", "visitors": 1, "count": 1, "share": 1.0 / 3.0}])
    );
    assert_eq!(o["breakdowns"]["browser"][0]["value"], "Firefox");

    // A filter applies to every number: /pricing was seen by visitors 1 and 3,
    // in sessions A (1200 s) and D (a bounce).
    let (status, f) = overview(&d, &format!("{q}&filter=page:is:%2Fpricing"));
    assert_eq!(status, 200, "{f}");
    assert_eq!(
        f["kpis"],
        json!({
            "visitors": 2, "pageviews": 2, "events": 1, "sessions": 2,
            "bounce_rate": 0.5, "avg_visit_duration_s": 600.0, "views_per_visit": 1.5,
            "time_on_page": null, "scroll_depth": null,
        })
    );
    assert_eq!(f["breakdowns"]["page"][0]["value"], "/pricing");
    assert_eq!(f["breakdowns"]["page"].as_array().unwrap().len(), 1);

    // A property filter applies to every number too: plan is pro is visitor
    // 1's signup alone, in session A (1200 s, 2 pageviews, not a bounce).
    let (status, p) = overview(&d, &format!("{q}&filter=prop:plan:is:pro"));
    assert_eq!(status, 200, "{p}");
    assert_eq!(
        p["kpis"],
        json!({
            "visitors": 1, "pageviews": 0, "events": 1, "sessions": 1,
            "bounce_rate": 0.0, "avg_visit_duration_s": 1200.0, "views_per_visit": 2.0,
            "time_on_page": null, "scroll_depth": null,
        })
    );
    assert_eq!(p["series"][1]["visitors"], 1);
    assert_eq!(
        p["breakdowns"]["event"],
        json!([{"value": "signup", "visitors": 1, "count": 1, "share": 1.0}])
    );
    // Without plan (every hit but the signup): all four sessions, 6 pageviews.
    let (status, n) = overview(&d, &format!("{q}&filter=prop:plan:is:"));
    assert_eq!(status, 200, "{n}");
    assert_eq!(
        (
            &n["kpis"]["visitors"],
            &n["kpis"]["pageviews"],
            &n["kpis"]["events"],
            &n["kpis"]["sessions"]
        ),
        (&json!(3), &json!(6), &json!(0), &json!(4))
    );
    // Combined with a dimension: the signup happened on /pricing, not on /.
    let (_, both) = overview(
        &d,
        &format!("{q}&filter=prop:plan:contains:PR&filter=page:is:%2F"),
    );
    assert_eq!(both["kpis"]["visitors"], 0, "{both}");

    // Hours in another zone: Berlin is UTC+1 in January.
    let (status, h) = overview(
        &d,
        "site=stats.test&from=2026-01-10T11:00:00%2B01:00&to=2026-01-10T14:00:00%2B01:00&tz=Europe/Berlin&interval=hour",
    );
    assert_eq!(status, 200, "{h}");
    let starts: Vec<&str> = h["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["start"].as_str().unwrap())
        .collect();
    assert_eq!(
        starts,
        [
            "2026-01-10T11:00:00",
            "2026-01-10T12:00:00",
            "2026-01-10T13:00:00"
        ]
    );
    assert_eq!(h["series"][0]["pageviews"], 4);

    for (query, parameter) in [
        ("site=nowhere.test", "site"),
        ("site=stats.test&tz=Mars/Olympus", "tz"),
        ("site=stats.test&from=2026-01-12&to=2026-01-09", "from"),
        ("site=stats.test&from=2016-01-01&to=2026-01-01", "from"),
        ("site=stats.test&filter=planet:is:mars", "filter"),
        ("site=stats.test&filter=prop::is:pro", "filter"),
        ("site=stats.test&filter=prop:plan:like:pro", "filter"),
        ("site=stats.test&interval=fortnight", "interval"),
        ("site=stats.test&colour=blue", "colour"),
    ] {
        let (status, e) = overview(&d, query);
        assert_eq!(status, 400, "{query}: {e}");
        assert_eq!(e["error"], "bad_parameter", "{query}");
        assert_eq!(e["parameter"], parameter, "{query}: {e}");
    }
    // A property key longer than ingest accepts: the reason says so.
    let long = format!("site=stats.test&filter=prop:{}:is:x", "k".repeat(65));
    let (status, e) = overview(&d, &long);
    assert_eq!((status, &e["parameter"]), (400, &json!("filter")), "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("65 bytes; the longest is 64"),
        "{e}"
    );
    // The daemon is still healthy and nothing stored changed.
    assert_eq!(d.get("/healthz").unwrap().status, 200);
    let s = d.stop();
    assert_eq!(s.count("SELECT count(*) FROM hits"), 7);
}
