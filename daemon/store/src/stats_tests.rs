//! The stats engine on small fixtures whose answers are worked out by hand in
//! the comments.

use hitvault_core::{Hit, Kind};
use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::stats::{Dim, Filter, Interval, Kpis, Op, Point, Row, StatsError, Window};
use crate::{Store, StoreOptions};

const SITE: &str = "a.example";

fn ms(t: &str) -> i64 {
    t.parse::<Timestamp>().unwrap().as_millisecond()
}

/// A pageview of the fixture site (a Firefox desktop visitor in France).
fn pv(visitor: u64, t: &str, path: &str) -> Hit {
    Hit {
        visitor,
        ..crate::tests::hit(SITE, ms(t), path)
    }
}

fn event(visitor: u64, t: &str, path: &str, name: &str) -> Hit {
    Hit {
        kind: Kind::Event,
        name: name.into(),
        ..pv(visitor, t, path)
    }
}

fn store_with(hits: Vec<Hit>) -> (tempfile::TempDir, Store, u16) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    s.upsert_site(SITE, &[], "config").unwrap();
    let n = hits.len() as u64;
    let batch: Vec<(u64, Hit)> = hits
        .into_iter()
        .enumerate()
        .map(|(i, h)| (i as u64 + 1, h))
        .collect();
    s.append(&batch, n).unwrap();
    let id = s
        .sites()
        .unwrap()
        .into_iter()
        .find(|r| r.hostname == SITE)
        .unwrap()
        .id;
    (dir, s, id)
}

fn window(site_id: u16, from: &str, to: &str, tz: &str) -> Window {
    Window {
        site_id,
        from: from.parse().unwrap(),
        to: to.parse().unwrap(),
        tz: TimeZone::get(tz).unwrap(),
    }
}

/// Four sessions on 2026-01-10 (UTC):
/// - visitor 1: 10:00 `/`, 10:05 `/pricing`, 10:20 event `signup` on
///   `/pricing` -> session A (2 pageviews, 1 event, 1200 s, entry `/`, exit
///   `/pricing`); 11:00 `/blog`, 40 minutes later -> session B (bounce, 0 s).
/// - visitor 2: 10:10 `/`, 10:40 `/docs`, exactly 30 minutes later, so the
///   same session C (2 pageviews, 1800 s, entry `/`, exit `/docs`).
/// - visitor 3: 12:00 `/pricing` from Google, in Germany -> session D (bounce).
fn fixture() -> Vec<Hit> {
    let mut d = pv(3, "2026-01-10T12:00:00Z", "/pricing");
    d.source = "Google".into();
    d.country = "DE".into();
    vec![
        pv(1, "2026-01-10T10:00:00Z", "/"),
        pv(1, "2026-01-10T10:05:00Z", "/pricing"),
        event(1, "2026-01-10T10:20:00Z", "/pricing", "signup"),
        pv(1, "2026-01-10T11:00:00Z", "/blog"),
        pv(2, "2026-01-10T10:10:00Z", "/"),
        pv(2, "2026-01-10T10:40:00Z", "/docs"),
        d,
    ]
}

fn f(dim: Dim, op: Op, value: &str) -> Filter {
    Filter::dim(dim, op, value)
}

#[allow(clippy::too_many_arguments)]
fn kpis(
    visitors: u64,
    pageviews: u64,
    events: u64,
    sessions: u64,
    bounces: u64,
    avg_duration_s: f64,
    session_pageviews: u64,
) -> Kpis {
    Kpis {
        visitors,
        pageviews,
        events,
        sessions,
        bounces,
        bounce_rate: bounces as f64 / sessions as f64,
        avg_duration_s,
        views_per_visit: session_pageviews as f64 / sessions as f64,
        engagement: Default::default(),
    }
}

#[test]
fn kpis_sessions_bounces_and_durations_at_the_30_minute_edge() {
    let (_d, s, id) = store_with(fixture());
    let st = s.stats().unwrap();
    let w = window(id, "2026-01-10T00:00:00Z", "2026-01-11T00:00:00Z", "UTC");
    // Sessions A, B, C, D; bounces B and D; durations 1200, 0, 1800, 0.
    assert_eq!(st.kpis(&w, &[]).unwrap(), kpis(3, 6, 1, 4, 2, 750.0, 6));
}

#[test]
fn filters_select_hits_and_the_sessions_holding_them() {
    let (_d, s, id) = store_with(fixture());
    let st = s.stats().unwrap();
    let w = window(id, "2026-01-10T00:00:00Z", "2026-01-11T00:00:00Z", "UTC");
    // page is /pricing: visitor 1's pageview and event (the event happened on
    // /pricing), visitor 3's pageview; sessions A and D (D bounced).
    let pricing = kpis(2, 2, 1, 2, 1, 600.0, 3);
    assert_eq!(
        st.kpis(&w, &[f(Dim::Page, Op::Is, "/pricing")]).unwrap(),
        pricing
    );
    // contains ignores case and gives the same selection here.
    assert_eq!(
        st.kpis(&w, &[f(Dim::Page, Op::Contains, "PRIC")]).unwrap(),
        pricing
    );
    // entry page is /: every hit of sessions A and C.
    assert_eq!(
        st.kpis(&w, &[f(Dim::EntryPage, Op::Is, "/")]).unwrap(),
        kpis(2, 4, 1, 2, 0, 1500.0, 4)
    );
    // Both at once: the /pricing hits of session A only.
    assert_eq!(
        st.kpis(
            &w,
            &[
                f(Dim::Page, Op::Is, "/pricing"),
                f(Dim::EntryPage, Op::Is, "/")
            ]
        )
        .unwrap(),
        kpis(1, 1, 1, 1, 0, 1200.0, 2)
    );
    // country is not DE: visitors 1 and 2, sessions A, B, C.
    assert_eq!(
        st.kpis(&w, &[f(Dim::Country, Op::IsNot, "DE")]).unwrap(),
        kpis(2, 5, 1, 3, 1, 1000.0, 5)
    );
    // source is not Google keeps the hits without a source.
    assert_eq!(
        st.kpis(&w, &[f(Dim::Source, Op::IsNot, "Google")])
            .unwrap()
            .visitors,
        2
    );
    // A filter that matches nothing gives zeros, not NaN.
    assert_eq!(
        st.kpis(&w, &[f(Dim::Page, Op::Is, "/nowhere")]).unwrap(),
        Kpis::default()
    );
}

#[test]
fn an_empty_value_filters_hits_without_a_value() {
    let (_d, s, id) = store_with(fixture());
    let st = s.stats().unwrap();
    let w = window(id, "2026-01-10T00:00:00Z", "2026-01-11T00:00:00Z", "UTC");
    // source is empty: every hit of visitors 1 and 2 (only visitor 3 came
    // from Google): pageviews /, /pricing, /blog, /, /docs and the signup;
    // sessions A (1200 s), B (bounce, 0 s), C (1800 s): mean 1000 s.
    let direct = [f(Dim::Source, Op::Is, "")];
    assert_eq!(
        st.kpis(&w, &direct).unwrap(),
        kpis(2, 5, 1, 3, 1, 1000.0, 5)
    );
    // The panels count the same hits: of 2 visitors, both viewed /, one
    // each /blog, /docs, /pricing (ties by value).
    assert_eq!(
        st.breakdown(&w, &direct, Dim::Page, 10).unwrap(),
        vec![
            row(Some("/"), 2, 2, 1.0),
            row(Some("/blog"), 1, 1, 0.5),
            row(Some("/docs"), 1, 1, 0.5),
            row(Some("/pricing"), 1, 1, 0.5),
        ]
    );
    // The chart too: 10:00 holds visitor 1 (/, /pricing, signup) and
    // visitor 2 (/, /docs): 2 visitors, 4 pageviews, sessions A and C.
    let hourly = st.timeseries(&w, &direct, Interval::Hour).unwrap();
    assert_eq!(
        (
            hourly[10].visitors,
            hourly[10].pageviews,
            hourly[10].sessions
        ),
        (2, 4, 2)
    );
    assert_eq!((hourly[12].visitors, hourly[12].pageviews), (0, 0));
    // is_not with an empty value: hits with a source, visitor 3's bounce.
    assert_eq!(
        st.kpis(&w, &[f(Dim::Source, Op::IsNot, "")]).unwrap(),
        kpis(1, 1, 0, 1, 1, 0.0, 1)
    );
    // Every session has an entry page: "entry page is empty" selects none,
    // and combined with another filter all must hold.
    assert_eq!(
        st.kpis(&w, &[f(Dim::EntryPage, Op::Is, "")]).unwrap(),
        Kpis::default()
    );
    assert_eq!(
        st.kpis(
            &w,
            &[f(Dim::Source, Op::Is, ""), f(Dim::Page, Op::Is, "/docs")]
        )
        .unwrap(),
        kpis(1, 1, 0, 1, 0, 1800.0, 2)
    );
    // Custom event is empty: the pageviews (6), of all 3 visitors.
    let k = st.kpis(&w, &[f(Dim::Event, Op::Is, "")]).unwrap();
    assert_eq!((k.visitors, k.pageviews, k.events), (3, 6, 0));
}

fn row(value: Option<&str>, visitors: u64, count: u64, share: f64) -> Row {
    Row {
        value: value.map(str::to_owned),
        visitors,
        count,
        share,
        engagement: None,
    }
}

#[test]
fn breakdowns_count_visitors_and_pageviews_with_shares() {
    let (_d, s, id) = store_with(fixture());
    let st = s.stats().unwrap();
    let w = window(id, "2026-01-10T00:00:00Z", "2026-01-11T00:00:00Z", "UTC");
    let third = 1.0 / 3.0;
    assert_eq!(
        st.breakdown(&w, &[], Dim::Page, 10).unwrap(),
        vec![
            row(Some("/"), 2, 2, 2.0 * third),
            row(Some("/pricing"), 2, 2, 2.0 * third),
            row(Some("/blog"), 1, 1, third),
            row(Some("/docs"), 1, 1, third),
        ]
    );
    // Entry and exit pages count sessions.
    assert_eq!(
        st.breakdown(&w, &[], Dim::EntryPage, 10).unwrap(),
        vec![
            row(Some("/"), 2, 2, 2.0 * third),
            row(Some("/blog"), 1, 1, third),
            row(Some("/pricing"), 1, 1, third),
        ]
    );
    // Exits: A /pricing, B /blog, C /docs, D /pricing.
    assert_eq!(
        st.breakdown(&w, &[], Dim::ExitPage, 10).unwrap(),
        vec![
            row(Some("/pricing"), 2, 2, 2.0 * third),
            row(Some("/blog"), 1, 1, third),
            row(Some("/docs"), 1, 1, third),
        ]
    );
    // Direct traffic (no source) is its own row, listed after named ones on ties.
    assert_eq!(
        st.breakdown(&w, &[], Dim::Source, 10).unwrap(),
        vec![
            row(None, 2, 5, 2.0 * third),
            row(Some("Google"), 1, 1, third)
        ]
    );
    assert_eq!(
        st.breakdown(&w, &[], Dim::Event, 10).unwrap(),
        vec![row(Some("signup"), 1, 1, third)]
    );
    // The limit applies; filters apply to breakdowns and their shares.
    assert_eq!(st.breakdown(&w, &[], Dim::Page, 1).unwrap().len(), 1);
    assert_eq!(
        st.breakdown(&w, &[f(Dim::Country, Op::Is, "DE")], Dim::Page, 10)
            .unwrap(),
        vec![row(Some("/pricing"), 1, 1, 1.0)]
    );
}

fn point(start: &str, visitors: u64, pageviews: u64, sessions: u64) -> Point {
    Point {
        start: start.into(),
        visitors,
        pageviews,
        sessions,
    }
}

#[test]
fn time_series_fill_empty_buckets() {
    let (_d, s, id) = store_with(fixture());
    let st = s.stats().unwrap();
    let w = window(id, "2026-01-09T00:00:00Z", "2026-01-12T00:00:00Z", "UTC");
    assert_eq!(
        st.timeseries(&w, &[], Interval::Day).unwrap(),
        vec![
            point("2026-01-09T00:00:00", 0, 0, 0),
            point("2026-01-10T00:00:00", 3, 6, 4),
            point("2026-01-11T00:00:00", 0, 0, 0),
        ]
    );
    let w = window(id, "2026-01-10T09:00:00Z", "2026-01-10T13:00:00Z", "UTC");
    assert_eq!(
        st.timeseries(&w, &[], Interval::Hour).unwrap(),
        vec![
            point("2026-01-10T09:00:00", 0, 0, 0),
            // 10:00 /, 10:05, 10:20 (event), 10:10, 10:40: sessions A and C.
            point("2026-01-10T10:00:00", 2, 4, 2),
            point("2026-01-10T11:00:00", 1, 1, 1),
            point("2026-01-10T12:00:00", 1, 1, 1),
        ]
    );
}

/// Europe/Berlin moves from CET (+1) to CEST (+2) at 2026-03-29T01:00Z.
/// - 2026-03-28T22:30Z is 23:30 on the 28th in Berlin (UTC: the 28th);
/// - 2026-03-28T23:30Z is 00:30 on the 29th (UTC: the 28th);
/// - 2026-03-29T00:30Z is 01:30 CET, 2026-03-29T01:30Z is 03:30 CEST;
/// - 2026-03-29T21:30Z is 23:30 on the 29th (UTC: the 29th);
/// - 2026-03-29T22:30Z is 00:30 on the 30th (UTC: the 29th).
#[test]
fn days_and_hours_follow_the_time_zone_across_a_dst_change() {
    let hits = vec![
        pv(1, "2026-03-28T22:30:00Z", "/a"),
        pv(2, "2026-03-28T23:30:00Z", "/a"),
        pv(3, "2026-03-29T00:30:00Z", "/a"),
        pv(4, "2026-03-29T01:30:00Z", "/a"),
        pv(5, "2026-03-29T21:30:00Z", "/a"),
        pv(6, "2026-03-29T22:30:00Z", "/a"),
    ];
    let (_d, s, id) = store_with(hits);
    let st = s.stats().unwrap();
    // Berlin's 28th to the end of its 30th.
    let w = window(
        id,
        "2026-03-27T23:00:00Z",
        "2026-03-30T22:00:00Z",
        "Europe/Berlin",
    );
    assert_eq!(
        st.timeseries(&w, &[], Interval::Day).unwrap(),
        vec![
            point("2026-03-28T00:00:00", 1, 1, 1),
            point("2026-03-29T00:00:00", 4, 4, 4),
            point("2026-03-30T00:00:00", 1, 1, 1),
        ]
    );
    // The same hits by UTC day.
    let w = window(id, "2026-03-28T00:00:00Z", "2026-03-30T00:00:00Z", "UTC");
    assert_eq!(
        st.timeseries(&w, &[], Interval::Day).unwrap(),
        vec![
            point("2026-03-28T00:00:00", 2, 2, 2),
            point("2026-03-29T00:00:00", 4, 4, 4),
        ]
    );
    // Hours around the change: 02:00 does not exist in Berlin that night.
    let w = window(
        id,
        "2026-03-29T00:00:00Z",
        "2026-03-29T02:00:00Z",
        "Europe/Berlin",
    );
    assert_eq!(
        st.timeseries(&w, &[], Interval::Hour).unwrap(),
        vec![
            point("2026-03-29T01:00:00", 1, 1, 1),
            point("2026-03-29T03:00:00", 1, 1, 1),
        ]
    );
}

#[test]
fn weeks_start_on_monday_and_months_on_the_first() {
    let hits = vec![
        pv(1, "2026-01-04T12:00:00Z", "/"), // Sunday
        pv(2, "2026-01-05T12:00:00Z", "/"), // Monday
        pv(3, "2026-02-01T12:00:00Z", "/"),
    ];
    let (_d, s, id) = store_with(hits);
    let st = s.stats().unwrap();
    let w = window(id, "2026-01-01T00:00:00Z", "2026-01-12T00:00:00Z", "UTC");
    assert_eq!(
        st.timeseries(&w, &[], Interval::Week).unwrap(),
        vec![
            point("2025-12-29T00:00:00", 1, 1, 1),
            point("2026-01-05T00:00:00", 1, 1, 1),
        ]
    );
    let w = window(id, "2026-01-01T00:00:00Z", "2026-03-01T00:00:00Z", "UTC");
    assert_eq!(
        st.timeseries(&w, &[], Interval::Month).unwrap(),
        vec![
            point("2026-01-01T00:00:00", 2, 2, 2),
            point("2026-02-01T00:00:00", 1, 1, 1),
        ]
    );
}

#[test]
fn the_window_is_half_open_and_bad_windows_are_refused() {
    let (_d, s, id) = store_with(fixture());
    let st = s.stats().unwrap();
    // 12:00 is the end: visitor 3's hit at 12:00 is outside.
    let w = window(id, "2026-01-10T10:00:00Z", "2026-01-10T12:00:00Z", "UTC");
    assert_eq!(st.kpis(&w, &[]).unwrap().visitors, 2);
    let inverted = window(id, "2026-01-11T00:00:00Z", "2026-01-10T00:00:00Z", "UTC");
    assert!(matches!(st.kpis(&inverted, &[]), Err(StatsError::Inverted)));
    let long = window(id, "2016-01-01T00:00:00Z", "2026-01-01T00:00:00Z", "UTC");
    assert!(matches!(st.kpis(&long, &[]), Err(StatsError::TooLong)));
}

#[test]
fn dimension_names_round_trip() {
    for (d, name) in Dim::ALL {
        assert_eq!(Dim::parse(name), Some(d));
        assert_eq!(d.name(), name);
    }
    assert_eq!(Dim::parse("nope"), None);
}

#[test]
fn the_overview_gives_the_same_numbers_as_the_single_queries() {
    let (_d, s, id) = store_with(fixture());
    let st = s.stats().unwrap();
    let w = window(id, "2026-01-10T00:00:00Z", "2026-01-11T00:00:00Z", "UTC");
    let prev = window(id, "2026-01-09T00:00:00Z", "2026-01-10T00:00:00Z", "UTC");
    let panels = [Dim::Page, Dim::EntryPage, Dim::Source, Dim::Event];
    for filters in [vec![], vec![f(Dim::Page, Op::Is, "/pricing")]] {
        let o = st
            .overview(&w, &prev, &filters, Interval::Hour, &panels, 10)
            .unwrap();
        assert_eq!(o.kpis, st.kpis(&w, &filters).unwrap());
        assert_eq!(o.previous, Kpis::default());
        assert_eq!(
            o.series,
            st.timeseries(&w, &filters, Interval::Hour).unwrap()
        );
        for (d, rows) in &o.breakdowns {
            assert_eq!(rows, &st.breakdown(&w, &filters, *d, 10).unwrap());
        }
        assert_eq!(o.breakdowns.len(), panels.len());
    }
    // The temporary tables do not outlive the call.
    assert!(
        st.kpis(&w, &[]).is_ok()
            && s.query_text("SELECT count(*) FROM duckdb_tables() WHERE temporary")
                .unwrap()[0][0]
                .as_deref()
                == Some("0")
    );
}

#[test]
fn screen_sizes_fall_into_four_classes() {
    // Widths 375 and 575: mobile; 576 and 991: tablet; 1439: laptop; 1440:
    // desktop; 0 (not sent): no value. One visitor each.
    let widths = [375u16, 575, 576, 991, 1439, 1440, 0];
    let hits = widths
        .iter()
        .enumerate()
        .map(|(i, &w)| Hit {
            screen_width: w,
            ..pv(i as u64 + 1, "2026-01-10T10:00:00Z", "/")
        })
        .collect();
    let (_d, s, id) = store_with(hits);
    let st = s.stats().unwrap();
    let w = window(id, "2026-01-10T00:00:00Z", "2026-01-11T00:00:00Z", "UTC");
    let rows = st.breakdown(&w, &[], Dim::Screen, 10).unwrap();
    let got: Vec<(Option<&str>, u64)> = rows
        .iter()
        .map(|r| (r.value.as_deref(), r.visitors))
        .collect();
    assert_eq!(
        got,
        [
            (Some("mobile"), 2),
            (Some("tablet"), 2),
            (Some("desktop"), 1),
            (Some("laptop"), 1),
            (None, 1)
        ]
    );
    let only = st.kpis(&w, &[f(Dim::Screen, Op::Is, "tablet")]).unwrap();
    assert_eq!(only.visitors, 2);
}
