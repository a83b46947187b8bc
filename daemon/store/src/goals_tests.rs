//! Goals, funnels and properties on a fixture whose answers are worked out
//! by hand in the comments.

use hitvault_core::{Hit, Kind};
use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::goals::{DefError, GoalKind, Step};
use crate::stats::{Dim, Filter, Interval, Op, Window};
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
    vec![Filter::dim(Dim::Browser, Op::Is, "Chrome")]
}

/// (name, visitors, conversions, conversion rate) of each goal row.
fn goal_figures(rows: &[crate::goals::GoalRow]) -> Vec<(&str, u64, u64, f64)> {
    rows.iter()
        .map(|r| {
            (
                r.goal.display_name.as_str(),
                r.visitors,
                r.conversions,
                r.conversion_rate,
            )
        })
        .collect()
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
    let got = goal_figures(&rows);
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

/// (visitors, pageviews, events, sessions, bounces, mean duration in s,
/// views per visit) of a window with `filters`.
fn figures(
    st: &crate::stats::Stats,
    id: u16,
    filters: &[Filter],
) -> (u64, u64, u64, u64, u64, f64, f64) {
    let k = st.kpis(&day(id), filters).unwrap();
    (
        k.visitors,
        k.pageviews,
        k.events,
        k.sessions,
        k.bounces,
        k.avg_duration_s,
        k.views_per_visit,
    )
}

fn plan(op: Op, value: &str) -> Filter {
    Filter::prop("plan", op, value)
}

#[test]
fn property_filters_select_hits_for_every_number() {
    let (_d, s, id) = store();
    let st = s.stats().unwrap();
    // The sessions: visitor 1's S1 (3 pageviews, 600 s), visitor 2's S2 (2
    // pageviews, 120 s), visitor 3's S3a (/blog/a, a bounce), S3b (2
    // pageviews, 300 s) and S3c (the Signup alone, no pageview: not a
    // bounce, 0 s), visitor 4's S4 (the Download alone, 0 s).
    //
    // plan is pro: visitor 1's Signup; session S1.
    assert_eq!(
        figures(&st, id, &[plan(Op::Is, "pro")]),
        (1, 0, 1, 1, 0, 600.0, 3.0)
    );
    // plan is not pro: the other 11 hits, every session; 8 pageviews,
    // 3 events; bounce S3a; durations 600 + 120 + 0 + 300 + 0 + 0 = 1020 s
    // over 6 sessions; their pageviews 3 + 2 + 1 + 2 = 8.
    assert_eq!(
        figures(&st, id, &[plan(Op::IsNot, "pro")]),
        (4, 8, 3, 6, 1, 170.0, 8.0 / 6.0)
    );
    // plan is empty (no plan): all but the two Signups with a plan, which
    // here leaves every session as well, and 2 events (visitor 3's Signup,
    // the Download).
    assert_eq!(
        figures(&st, id, &[plan(Op::Is, "")]),
        (4, 8, 2, 6, 1, 170.0, 8.0 / 6.0)
    );
    // plan is not empty (has a plan): the two Signups, sessions S1 and S2,
    // (600 + 120) / 2 s, (3 + 2) / 2 pageviews per visit.
    assert_eq!(
        figures(&st, id, &[plan(Op::IsNot, "")]),
        (2, 0, 2, 2, 0, 360.0, 2.5)
    );
    // contains ignores case: file contains "PDF" is the Download, S4.
    assert_eq!(
        figures(&st, id, &[Filter::prop("file", Op::Contains, "PDF")]),
        (1, 0, 1, 1, 0, 0.0, 0.0)
    );
    // Combined with a dimension: Chrome (visitor 2) and plan free; Chrome
    // and plan pro hold nothing, and zeros are zeros.
    assert_eq!(
        figures(&st, id, &[chrome()[0].clone(), plan(Op::Is, "free")]),
        (1, 0, 1, 1, 0, 120.0, 2.0)
    );
    assert_eq!(
        figures(&st, id, &[chrome()[0].clone(), plan(Op::Is, "pro")]),
        (0, 0, 0, 0, 0, 0.0, 0.0)
    );
    // A key nobody sent: `is` a value selects nothing, `is` empty everything.
    assert_eq!(figures(&st, id, &[Filter::prop("none", Op::Is, "x")]).0, 0);
    assert_eq!(figures(&st, id, &[Filter::prop("none", Op::Is, "")]).1, 8);

    // Goals over the hits with a plan (2 visitors): both signed up, neither
    // of those hits is a /pricing pageview.
    s.add_goal(id, step(GoalKind::Event, "Signup"), "Signed up")
        .unwrap();
    s.add_goal(id, step(GoalKind::Page, "/pricing"), "Saw prices")
        .unwrap();
    let goals = st.goals_of(id).unwrap();
    let rows = st
        .goal_stats(&day(id), &[plan(Op::IsNot, "")], &goals)
        .unwrap();
    assert_eq!(
        goal_figures(&rows),
        [("Saw prices", 0, 0, 0.0), ("Signed up", 2, 2, 1.0)]
    );

    // Funnels over the sessions holding a selected hit: with plan pro, S1
    // (/ then /pricing then Signup); with plan free, S2, whose /pricing came
    // before its "/".
    let steps = vec![
        step(GoalKind::Page, "/"),
        step(GoalKind::Page, "/pricing"),
        step(GoalKind::Event, "Signup"),
    ];
    let reached = |f: Filter| -> Vec<u64> {
        st.funnel_stats(&day(id), &[f], &steps)
            .unwrap()
            .iter()
            .map(|r| r.visitors)
            .collect()
    };
    assert_eq!(reached(plan(Op::Is, "pro")), [1, 1, 1]);
    assert_eq!(reached(plan(Op::Is, "free")), [1, 0, 0]);

    // Breakdowns and properties: the events with a plan are two Signups;
    // the values of plan under plan is pro are pro alone.
    let events = st
        .breakdown(&day(id), &[plan(Op::IsNot, "")], Dim::Event, 10)
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (
            events[0].value.as_deref(),
            events[0].visitors,
            events[0].count,
            events[0].share
        ),
        (Some("Signup"), 2, 2, 1.0)
    );
    let values = st
        .props(&day(id), &[plan(Op::Is, "pro")], None, Some("plan"), 10)
        .unwrap();
    let got: Vec<(&str, u64, u64)> = values
        .iter()
        .map(|r| (r.value.as_str(), r.visitors, r.events))
        .collect();
    assert_eq!(got, [("pro", 1, 1)]);

    // The overview (temporary tables, and its comparison window) gives the
    // same numbers as the single queries.
    let prev = Window {
        from: "2026-01-09T00:00:00Z".parse().unwrap(),
        to: "2026-01-10T00:00:00Z".parse().unwrap(),
        ..day(id)
    };
    let filters = [plan(Op::IsNot, "pro")];
    let panels = [Dim::Page, Dim::Event, Dim::EntryPage];
    let o = st
        .overview(&day(id), &prev, &filters, Interval::Hour, &panels, 10)
        .unwrap();
    assert_eq!(o.kpis, st.kpis(&day(id), &filters).unwrap());
    assert_eq!(o.previous, st.kpis(&prev, &filters).unwrap());
    assert_eq!(o.previous.visitors, 0);
    assert_eq!(
        o.series,
        st.timeseries(&day(id), &filters, Interval::Hour).unwrap()
    );
    for (d, rows) in &o.breakdowns {
        assert_eq!(rows, &st.breakdown(&day(id), &filters, *d, 10).unwrap());
    }
}

#[test]
fn property_filters_hold_at_the_edges_of_a_window() {
    // Visitor 1's Signup {plan: pro} is at 10:06: in [00:00, 10:06:30),
    // not in [10:06:30, 24:00); there, visitor 1 is only /thanks (10:10).
    let (_d, s, id) = store();
    let st = s.stats().unwrap();
    let cut: jiff::Timestamp = "2026-01-10T10:06:30Z".parse().unwrap();
    let (before, after) = (
        Window { to: cut, ..day(id) },
        Window {
            from: cut,
            ..day(id)
        },
    );
    let pro = [plan(Op::Is, "pro")];
    let k = st.kpis(&before, &pro).unwrap();
    assert_eq!((k.visitors, k.events), (1, 1));
    assert_eq!(st.kpis(&after, &pro).unwrap().visitors, 0);
    // plan is not pro, before the cut: visitor 1's pageviews of / and
    // /pricing (10:00, 10:05).
    let k = st.kpis(&before, &[plan(Op::IsNot, "pro")]).unwrap();
    assert_eq!((k.visitors, k.pageviews, k.events), (1, 2, 0));
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

#[test]
fn a_cluster_definitions_change_applies_once_with_its_index_and_a_refusal_changes_nothing_else() {
    let (_d, mut s, site) = store();
    assert_eq!(s.cluster_defs_applied().unwrap(), 0);
    let add = |s: &mut Store| {
        let g = s.add_goal(
            site,
            Step {
                kind: GoalKind::Event,
                value: "Signup".into(),
            },
            "Signups",
        )?;
        s.set_created(crate::goals::Made::Goal, g.id, 1_700_000_000_000)?;
        Ok(g.id)
    };
    let id = s.cluster_def_change(5, add).unwrap().unwrap().unwrap();
    assert_eq!(s.cluster_defs_applied().unwrap(), 5);
    assert_eq!(s.def_named(false, site, "Signups").unwrap(), Some(id));
    let created: i64 = s
        .conn
        .query_row(
            "SELECT epoch_ms(created_at) FROM goals WHERE id = ?",
            [id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        created, 1_700_000_000_000,
        "the proposer's time, not this node's clock"
    );
    // A replay of index 5 is skipped; nothing is added twice.
    assert!(s.cluster_def_change(5, add).unwrap().is_none());
    // The same goal again at index 6 is refused: only the index moves.
    match s.cluster_def_change(6, add).unwrap() {
        Some(Err(DefError::Exists(_))) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(s.cluster_defs_applied().unwrap(), 6);
    let n: u64 = s
        .conn
        .query_row("SELECT count(*) FROM goals", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
    // A dry run checks without making anything.
    let other = |s: &mut Store| {
        s.add_goal(
            site,
            Step {
                kind: GoalKind::Page,
                value: "/x".into(),
            },
            "X",
        )
        .map(|g| g.id)
    };
    assert!(s.def_dry_run(other).is_ok());
    assert_eq!(s.def_named(false, site, "X").unwrap(), None);
    assert_eq!(s.def_named(false, site, "Signups").unwrap(), Some(id));
}
