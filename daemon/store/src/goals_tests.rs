//! Goals, funnels and properties on a fixture whose answers are worked out
//! by hand in the comments.

use hitvault_core::{Hit, Kind};
use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::goals::{DefError, GoalKind, Step};
use crate::stats::{Dim, Filter, Op, Window};
use crate::{Store, StoreOptions};

const SITE: &str = "g.example";

fn at(t: &str) -> i64 {
    format!("2026-01-10T{t}:00Z")
        .parse::<Timestamp>()
        .unwrap()
        .as_millisecond()
}

fn pv(visitor: u64, t: &str, path: &str) -> Hit {
    Hit {
        visitor,
        ..crate::tests::hit(SITE, at(t), path)
    }
}

fn ev(visitor: u64, t: &str, path: &str, name: &str, props: &[(&str, &str)]) -> Hit {
    Hit {
        kind: Kind::Event,
        name: name.into(),
        props: props
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..pv(visitor, t, path)
    }
}

/// - Visitor 1, one session: / 10:00, /pricing 10:05, Signup{plan=pro} 10:06, /thanks 10:10.
/// - Visitor 2 (Chrome), one session: /pricing 11:00, / 11:01, Signup{plan=free} 11:02.
/// - Visitor 3: /blog/a 12:00; 40 minutes later a second session: / 12:40,
///   /pricing 12:45; a third session: Signup 14:00.
/// - Visitor 4: Download{file=a.pdf} on /docs 13:00, no pageview.
fn fixture() -> Vec<Hit> {
    let mut v2 = vec![
        pv(2, "11:00", "/pricing"),
        pv(2, "11:01", "/"),
        ev(2, "11:02", "/", "Signup", &[("plan", "free")]),
    ];
    for h in &mut v2 {
        h.browser = "Chrome".into();
    }
    let mut hits = vec![
        pv(1, "10:00", "/"),
        pv(1, "10:05", "/pricing"),
        ev(1, "10:06", "/pricing", "Signup", &[("plan", "pro")]),
        pv(1, "10:10", "/thanks"),
        pv(3, "12:00", "/blog/a"),
        pv(3, "12:40", "/"),
        pv(3, "12:45", "/pricing"),
        ev(3, "14:00", "/pricing", "Signup", &[]),
        ev(4, "13:00", "/docs", "Download", &[("file", "a.pdf")]),
    ];
    hits.extend(v2);
    hits
}

fn store() -> (tempfile::TempDir, Store, u16) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    s.upsert_site(SITE, &[], "config").unwrap();
    let hits = fixture();
    let n = hits.len() as u64;
    let batch: Vec<(u64, Hit)> = hits
        .into_iter()
        .enumerate()
        .map(|(i, h)| (i as u64 + 1, h))
        .collect();
    s.append(&batch, n).unwrap();
    let id = s.sites().unwrap()[0].id;
    (dir, s, id)
}

fn day(site_id: u16) -> Window {
    Window {
        site_id,
        from: "2026-01-10T00:00:00Z".parse().unwrap(),
        to: "2026-01-11T00:00:00Z".parse().unwrap(),
        tz: TimeZone::UTC,
    }
}

fn step(kind: GoalKind, value: &str) -> Step {
    Step {
        kind,
        value: value.into(),
    }
}

fn chrome() -> Vec<Filter> {
    vec![Filter {
        dim: Dim::Browser,
        op: Op::Is,
        value: "Chrome".into(),
    }]
}

#[test]
fn goals_count_visitors_conversions_and_rates() {
    let (_d, s, id) = store();
    s.add_goal(id, step(GoalKind::Event, "Signup"), "Signed up")
        .unwrap();
    s.add_goal(id, step(GoalKind::Page, "/blog/*"), "Read the blog")
        .unwrap();
    s.add_goal(id, step(GoalKind::Page, "/pricing"), "Saw prices")
        .unwrap();
    s.add_goal(id, step(GoalKind::Event, "Nope"), "Never")
        .unwrap();
    let st = s.stats().unwrap();
    let goals = st.goals_of(id).unwrap();
    // By name.
    let names: Vec<&str> = goals.iter().map(|g| g.display_name.as_str()).collect();
    assert_eq!(names, ["Never", "Read the blog", "Saw prices", "Signed up"]);
    let rows = st.goal_stats(&day(id), &[], &goals).unwrap();
    let got: Vec<(&str, u64, u64, f64)> = rows
        .iter()
        .map(|r| {
            (
                r.goal.display_name.as_str(),
                r.visitors,
                r.conversions,
                r.conversion_rate,
            )
        })
        .collect();
    // 4 visitors in all. Signup: visitors 1, 2, 3, once each. Blog: visitor 3.
    // Pricing pageviews: visitors 1, 2, 3.
    assert_eq!(
        got,
        [
            ("Never", 0, 0, 0.0),
            ("Read the blog", 1, 1, 0.25),
            ("Saw prices", 3, 3, 0.75),
            ("Signed up", 3, 3, 0.75),
        ]
    );
    // Only visitor 2 uses Chrome: every goal's rate is over that one visitor.
    let rows = st.goal_stats(&day(id), &chrome(), &goals).unwrap();
    let got: Vec<(u64, u64, f64)> = rows
        .iter()
        .map(|r| (r.visitors, r.conversions, r.conversion_rate))
        .collect();
    assert_eq!(got, [(0, 0, 0.0), (0, 0, 0.0), (1, 1, 1.0), (1, 1, 1.0)]);
}

#[test]
fn funnel_steps_count_only_in_order_within_one_session() {
    let (_d, s, id) = store();
    let steps = vec![
        step(GoalKind::Page, "/"),
        step(GoalKind::Page, "/pricing"),
        step(GoalKind::Event, "Signup"),
    ];
    let f = s.add_funnel(id, "Buy", steps.clone()).unwrap();
    let st = s.stats().unwrap();
    assert_eq!(st.funnels_of(id).unwrap(), vec![f]);
    let rows = st.funnel_stats(&day(id), &[], &steps).unwrap();
    let got: Vec<(u64, u64, u64)> = rows
        .iter()
        .map(|r| (r.visitors, r.sessions, r.dropoff))
        .collect();
    // Step 1 ("/"): visitor 1, visitor 2, visitor 3's second session.
    // Step 2: visitor 2 saw /pricing only before "/"; the others after it.
    // Step 3: visitor 3 signed up in a third session, so only visitor 1.
    assert_eq!(got, [(3, 3, 0), (2, 2, 1), (1, 1, 1)]);
    let rates: Vec<f64> = rows.iter().map(|r| r.conversion_rate).collect();
    assert_eq!(rates, [1.0, 2.0 / 3.0, 1.0 / 3.0]);
    // Filtered to Chrome: visitor 2's session only.
    let rows = st.funnel_stats(&day(id), &chrome(), &steps).unwrap();
    let got: Vec<u64> = rows.iter().map(|r| r.visitors).collect();
    assert_eq!(got, [1, 0, 0]);
    // Reversed order: /pricing then "/": visitor 2 only (11:00 then 11:01).
    let rev = vec![step(GoalKind::Page, "/pricing"), step(GoalKind::Page, "/")];
    let rows = st.funnel_stats(&day(id), &[], &rev).unwrap();
    let got: Vec<u64> = rows.iter().map(|r| r.visitors).collect();
    assert_eq!(got, [3, 1]);
}

#[test]
fn event_properties_break_down_by_key_and_value() {
    let (_d, s, id) = store();
    let st = s.stats().unwrap();
    let keys = st.props(&day(id), &[], None, None, 10).unwrap();
    let got: Vec<(&str, u64, u64)> = keys
        .iter()
        .map(|r| (r.value.as_str(), r.visitors, r.events))
        .collect();
    assert_eq!(got, [("plan", 2, 2), ("file", 1, 1)]);
    let values = st.props(&day(id), &[], None, Some("plan"), 10).unwrap();
    let got: Vec<(&str, u64)> = values
        .iter()
        .map(|r| (r.value.as_str(), r.visitors))
        .collect();
    assert_eq!(got, [("free", 1), ("pro", 1)]);
    let only = st.props(&day(id), &[], Some("Download"), None, 10).unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].value, "file");
    let chrome = st
        .props(&day(id), &chrome(), None, Some("plan"), 10)
        .unwrap();
    assert_eq!(chrome.len(), 1);
    assert_eq!(chrome[0].value, "free");
}

#[test]
fn bad_definitions_are_refused_with_the_reason() {
    let (_d, s, id) = store();
    s.add_goal(id, step(GoalKind::Event, "Signup"), "Signed up")
        .unwrap();
    let e = s
        .add_goal(id, step(GoalKind::Event, "Other"), "Signed up")
        .unwrap_err();
    assert!(matches!(e, DefError::Exists(_)), "{e}");
    let e = s
        .add_goal(id, step(GoalKind::Page, "pricing"), "P")
        .unwrap_err();
    assert!(e.to_string().contains("starts with '/'"), "{e}");
    let e = s
        .add_goal(id, step(GoalKind::Event, ""), "Empty")
        .unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
    let long = "x".repeat(201);
    let e = s
        .add_goal(id, step(GoalKind::Event, &long), "Long")
        .unwrap_err();
    assert!(e.to_string().contains("200 bytes"), "{e}");
    let one = vec![step(GoalKind::Page, "/")];
    let e = s.add_funnel(id, "One", one).unwrap_err();
    assert!(e.to_string().contains("2 to 8 steps"), "{e}");
    let nine = vec![step(GoalKind::Page, "/"); 9];
    assert!(s.add_funnel(id, "Nine", nine).is_err());
    // A pattern's LIKE characters are literal: "/100%" is not "/100anything".
    let g = s
        .add_goal(id, step(GoalKind::Page, "/100%_off"), "Literal")
        .unwrap();
    let st = s.stats().unwrap();
    let rows = st
        .goal_stats(&day(id), &[], std::slice::from_ref(&g))
        .unwrap();
    assert_eq!(rows[0].visitors, 0);
    assert!(s.delete_goal(id, g.id).unwrap());
    assert!(!s.delete_goal(id, g.id).unwrap());
    assert_eq!(st.goals_of(id).unwrap().len(), 1);
}
