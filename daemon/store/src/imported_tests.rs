//! Imported history merged into overviews, on a fixture whose answers are
//! worked out by hand in the comments.

use hitvault_core::Hit;
use jiff::Timestamp;
use jiff::civil::date;
use jiff::tz::TimeZone;

use crate::imported::{ImportedDay, ImportedSet, ImportedValue};
use crate::stats::{Dim, Filter, Interval, Op, Overview, Row, Window};
use crate::{Store, StoreOptions};

const SITE: &str = "imp.example";

fn pv(visitor: u64, t: &str, path: &str) -> Hit {
    Hit {
        visitor,
        ..crate::tests::hit(SITE, t.parse::<Timestamp>().unwrap().as_millisecond(), path)
    }
}

/// Native hits on 2024-03-02 (UTC): visitor 100 views `/` at 10:00 and
/// `/pricing` at 10:10 (one session, 600 s, 2 pageviews); visitor 101 views
/// `/` at 11:00 (a bounce, 0 s). So: 2 visitors, 3 pageviews, 2 sessions,
/// 1 bounce, mean duration 300 s, 1.5 views per visit.
fn store() -> (tempfile::TempDir, Store, u16) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    s.upsert_site(SITE, &[], "config").unwrap();
    let hits = vec![
        pv(100, "2024-03-02T10:00:00Z", "/"),
        pv(100, "2024-03-02T10:10:00Z", "/pricing"),
        pv(101, "2024-03-02T11:00:00Z", "/"),
    ];
    let batch: Vec<(u64, Hit)> = hits
        .into_iter()
        .enumerate()
        .map(|(i, h)| (i as u64 + 1, h))
        .collect();
    s.append(&batch, 3).unwrap();
    let id = s.sites().unwrap()[0].id;
    (dir, s, id)
}

fn value(d: (i16, i8, i8), dim: Dim, v: Option<&str>, visitors: u64, count: u64) -> ImportedValue {
    ImportedValue {
        day: date(d.0, d.1, d.2),
        dim,
        value: v.map(str::to_owned),
        visitors,
        count,
    }
}

/// Imported 2024-03-01: 10 visitors, 30 pageviews, 3 events, 12 visits,
/// 4 bounces, 600 s in all; pages `/` (7 visitors, 20 pageviews),
/// `/pricing` (3, 10), `/docs` (1, 1); sources none (6, 18), Google (4, 12).
/// The range is 2024-02-29 to 2024-03-01 (the 29th has no rows).
fn imported() -> ImportedSet {
    ImportedSet {
        first_day: date(2024, 2, 29),
        last_day: date(2024, 3, 1),
        days: vec![ImportedDay {
            day: date(2024, 3, 1),
            visitors: 10,
            pageviews: 30,
            events: 3,
            visits: 12,
            bounces: 4,
            visit_duration_s: 600,
        }],
        values: vec![
            value((2024, 3, 1), Dim::Page, Some("/"), 7, 20),
            value((2024, 3, 1), Dim::Page, Some("/pricing"), 3, 10),
            value((2024, 3, 1), Dim::Page, Some("/docs"), 1, 1),
            value((2024, 3, 1), Dim::Source, None, 6, 18),
            value((2024, 3, 1), Dim::Source, Some("Google"), 4, 12),
        ],
    }
}

fn window(site_id: u16, from: &str, to: &str, tz: &str) -> Window {
    Window {
        site_id,
        from: from.parse().unwrap(),
        to: to.parse().unwrap(),
        tz: TimeZone::get(tz).unwrap(),
    }
}

fn row(v: Option<&str>, visitors: u64, count: u64, share: f64) -> Row {
    Row {
        value: v.map(str::to_owned),
        visitors,
        count,
        share,
    }
}

fn panel(o: &Overview, dim: Dim) -> Vec<Row> {
    o.breakdowns.iter().find(|b| b.0 == dim).unwrap().1.clone()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn imported_days_add_to_the_unfiltered_overview() {
    let (_dir, mut s, id) = store();
    s.replace_imported(SITE, &imported()).unwrap();
    let stats = s.stats().unwrap();
    let w = window(id, "2024-03-01T00:00:00Z", "2024-03-03T00:00:00Z", "UTC");
    let prev = window(id, "2024-02-28T00:00:00Z", "2024-03-01T00:00:00Z", "UTC");
    let panels = [Dim::Page, Dim::Source, Dim::Country];
    let (o, info) = stats
        .overview_with_imported(&w, &prev, &[], Interval::Day, &panels, 2)
        .unwrap();
    assert!(info.included && info.in_series);
    assert_eq!(info.days, 1);
    // Visitors 2 + 10, pageviews 3 + 30, events 0 + 3, sessions 2 + 12,
    // bounces 1 + 4; duration (2 x 300 + 600) / 14; views (2 x 1.5 + 30) / 14.
    let k = &o.kpis;
    assert_eq!(
        (k.visitors, k.pageviews, k.events, k.sessions, k.bounces),
        (12, 33, 3, 14, 5)
    );
    assert!(close(k.bounce_rate, 5.0 / 14.0), "{k:?}");
    assert!(close(k.avg_duration_s, 1200.0 / 14.0), "{k:?}");
    assert!(close(k.views_per_visit, 33.0 / 14.0), "{k:?}");
    // The comparison window (02-28, 02-29) has nothing.
    assert_eq!((o.previous.visitors, o.previous.sessions), (0, 0));
    // Series: 03-01 is all imported, 03-02 all native.
    let series: Vec<(&str, u64, u64, u64)> = o
        .series
        .iter()
        .map(|p| (p.start.as_str(), p.visitors, p.pageviews, p.sessions))
        .collect();
    assert_eq!(
        series,
        [
            ("2024-03-01T00:00:00", 10, 30, 12),
            ("2024-03-02T00:00:00", 2, 3, 2)
        ]
    );
    // Pages: `/` 2 + 7 visitors, 2 + 20 views; `/pricing` 1 + 3, 1 + 10;
    // `/docs` (1, 1) is cut by the limit of 2. Shares over 12 visitors.
    assert_eq!(
        panel(&o, Dim::Page),
        [
            row(Some("/"), 9, 22, 9.0 / 12.0),
            row(Some("/pricing"), 4, 11, 4.0 / 12.0)
        ]
    );
    // Sources: the native hits have none (2 visitors, 3 views) and join
    // the imported none (6, 18); Google is imported only.
    assert_eq!(
        panel(&o, Dim::Source),
        [
            row(None, 8, 21, 8.0 / 12.0),
            row(Some("Google"), 4, 12, 4.0 / 12.0)
        ]
    );
    // No imported countries: the native row, its share over all 12 visitors.
    assert_eq!(panel(&o, Dim::Country), [row(Some("FR"), 2, 3, 2.0 / 12.0)]);

    // The same window a day later: 03-01 becomes the comparison.
    let w2 = window(id, "2024-03-02T00:00:00Z", "2024-03-04T00:00:00Z", "UTC");
    let p2 = window(id, "2024-02-29T00:00:00Z", "2024-03-02T00:00:00Z", "UTC");
    let (o2, info2) = stats
        .overview_with_imported(&w2, &p2, &[], Interval::Day, &panels, 10)
        .unwrap();
    assert!(!info2.included);
    assert_eq!((o2.kpis.visitors, o2.previous.visitors), (2, 10));
    assert_eq!((o2.previous.sessions, o2.previous.bounces), (12, 4));
}

#[test]
fn filters_hours_and_zones_decide_what_is_added() {
    let (_dir, mut s, id) = store();
    s.replace_imported(SITE, &imported()).unwrap();
    let stats = s.stats().unwrap();
    let w = window(id, "2024-03-01T00:00:00Z", "2024-03-03T00:00:00Z", "UTC");
    let prev = window(id, "2024-02-28T00:00:00Z", "2024-03-01T00:00:00Z", "UTC");
    let panels = [Dim::Page];
    // A filter: imported aggregates hold no hits to filter, so none are added.
    let f = [Filter {
        dim: Dim::Page,
        op: Op::Is,
        value: "/".into(),
    }];
    let (o, info) = stats
        .overview_with_imported(&w, &prev, &f, Interval::Day, &panels, 10)
        .unwrap();
    assert!(!info.included);
    assert_eq!(
        o,
        stats
            .overview(&w, &prev, &f, Interval::Day, &panels, 10)
            .unwrap()
    );
    assert_eq!((o.kpis.visitors, o.kpis.pageviews), (2, 2));
    // Hour buckets: the KPIs hold the imported day, the series does not.
    let (o, info) = stats
        .overview_with_imported(&w, &prev, &[], Interval::Hour, &panels, 10)
        .unwrap();
    assert!(info.included && !info.in_series);
    assert_eq!(o.kpis.visitors, 12);
    assert_eq!(o.series.iter().map(|p| p.visitors).sum::<u64>(), 2);
    // A day counts when its local midnight is in the window: from noon UTC
    // on 03-01 it is not; in New York, 03-01 00:00 local is 05:00 UTC.
    let late = window(id, "2024-03-01T12:00:00Z", "2024-03-03T00:00:00Z", "UTC");
    let (o, info) = stats
        .overview_with_imported(&late, &prev, &[], Interval::Day, &panels, 10)
        .unwrap();
    assert!(!info.included);
    assert_eq!(o.kpis.visitors, 2);
    let ny = window(
        id,
        "2024-03-01T05:00:00Z",
        "2024-03-03T05:00:00Z",
        "America/New_York",
    );
    let (o, info) = stats
        .overview_with_imported(&ny, &prev, &[], Interval::Week, &panels, 10)
        .unwrap();
    assert!(info.included);
    assert_eq!(o.kpis.visitors, 12);
    // 2024-03-01 is a Friday: its week starts Monday 02-26, the bucket of
    // every hit here too.
    assert_eq!(o.series.len(), 1);
    assert_eq!(o.series[0].start, "2024-02-26T00:00:00");
    assert_eq!((o.series[0].visitors, o.series[0].sessions), (12, 14));
}

#[test]
fn importing_again_replaces_the_range_and_never_doubles() {
    let (_dir, mut s, id) = store();
    let first = s.replace_imported(SITE, &imported()).unwrap();
    assert_eq!((first.rows_replaced, first.days, first.values), (0, 1, 5));
    let again = s.replace_imported(SITE, &imported()).unwrap();
    assert_eq!(again.rows_replaced, 6, "the day and its five values");
    let w = window(id, "2024-03-01T00:00:00Z", "2024-03-03T00:00:00Z", "UTC");
    let prev = window(id, "2024-02-28T00:00:00Z", "2024-03-01T00:00:00Z", "UTC");
    let visitors = |s: &Store| {
        s.stats()
            .unwrap()
            .overview_with_imported(&w, &prev, &[], Interval::Day, &[Dim::Page], 10)
            .unwrap()
            .0
            .kpis
            .visitors
    };
    assert_eq!(visitors(&s), 12);
    // A later export of 03-01 alone replaces that day; 03-02 (native) stays.
    let mut smaller = imported();
    smaller.first_day = date(2024, 3, 1);
    smaller.days[0].visitors = 4;
    smaller.values.clear();
    s.replace_imported(SITE, &smaller).unwrap();
    assert_eq!(visitors(&s), 6);
    // Rows outside the range, or an unknown site, are refused; nothing changes.
    let mut outside = imported();
    outside.values[0].day = date(2024, 3, 2);
    let e = s.replace_imported(SITE, &outside).unwrap_err().to_string();
    assert!(e.contains("2024-03-02 is outside"), "{e}");
    let e = s
        .replace_imported("nope.example", &imported())
        .unwrap_err()
        .to_string();
    assert!(e.contains("no site named \"nope.example\""), "{e}");
    assert_eq!(visitors(&s), 6);
}
