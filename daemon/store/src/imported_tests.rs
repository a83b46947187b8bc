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
        engagement: None,
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
    let f = [Filter::dim(Dim::Page, Op::Is, "/")];
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

fn day(d: u8, visitors: u64) -> ImportedDay {
    ImportedDay {
        day: date(2024, 3, d as i8),
        visitors,
        pageviews: 2 * visitors,
        events: 1,
        visits: visitors + 1,
        bounces: 1,
        visit_duration_s: 60 * visitors,
    }
}

/// Every imported row of the store, by site hostname, as text.
fn imported_rows(s: &Store) -> Vec<Vec<Option<String>>> {
    let mut rows = s.query_text(
        "SELECT 'd', h.hostname, d.day, d.visitors, d.pageviews, d.events, d.visits, d.bounces, \
                d.visit_duration_s, NULL, NULL \
         FROM imported_days d JOIN sites h ON h.id = d.site_id \
         UNION ALL \
         SELECT 'v', h.hostname, v.day, v.visitors, v.count, NULL, NULL, NULL, NULL, v.dim, v.value \
         FROM imported_values v JOIN sites h ON h.id = v.site_id",
    )
    .unwrap();
    rows.sort();
    rows
}

/// Every batch of an export, with its table.
fn export(s: &Store, filter: &crate::ExportFilter) -> Vec<(&'static str, crate::RecordBatch)> {
    let mut out = Vec::new();
    s.reader()
        .unwrap()
        .export(filter, &mut |t, b| {
            out.push((t, b));
            Ok(())
        })
        .unwrap();
    out
}

fn import(s: &mut Store, batches: &[(&'static str, crate::RecordBatch)]) -> crate::ImportStats {
    let mut imp = s.begin_import().unwrap();
    for (t, b) in batches {
        imp.append(t, b.clone()).unwrap();
    }
    imp.commit().unwrap()
}

/// The days of a table's batches, as text.
fn days_of(batches: &[(&'static str, crate::RecordBatch)], table: &str) -> Vec<String> {
    use duckdb::arrow::array::{Array, AsArray};
    use duckdb::arrow::datatypes::Date32Type;
    let mut days = Vec::new();
    for (_, b) in batches.iter().filter(|(t, _)| *t == table) {
        let col = b.column_by_name("day").unwrap();
        assert_eq!(col.data_type(), &duckdb::arrow::datatypes::DataType::Date32);
        for d in col.as_primitive::<Date32Type>().iter() {
            let d = date(1970, 1, 1)
                .checked_add(jiff::Span::new().days(i64::from(d.unwrap())))
                .unwrap();
            days.push(d.to_string());
        }
    }
    days
}

/// The Takeout side of imported history: a time range selects the days that
/// lie whole inside it; an import merges by (site, day): a day the Takeout
/// holds replaces the instance's rows of that day unless they are the same
/// (present), days it does not hold stay; a second import changes nothing.
#[test]
fn takeout_selects_whole_days_and_import_merges_by_site_and_day() {
    let (_dir, mut src, _) = store();
    src.replace_imported(
        SITE,
        &ImportedSet {
            first_day: date(2024, 3, 1),
            last_day: date(2024, 3, 3),
            days: vec![day(1, 10), day(2, 20)],
            values: vec![
                value((2024, 3, 1), Dim::Page, Some("/"), 7, 20),
                value((2024, 3, 2), Dim::Source, None, 6, 18),
                // The 3rd has a value and no totals.
                value((2024, 3, 3), Dim::Event, Some("Signup"), 1, 2),
            ],
        },
    )
    .unwrap();

    let micros = |t: &str| t.parse::<Timestamp>().unwrap().as_microsecond();
    let f = |from: Option<&str>, until: Option<&str>| crate::ExportFilter {
        sites: vec![],
        from_us: from.map(micros),
        until_us: until.map(micros),
    };
    let all = export(&src, &f(None, None));
    assert_eq!(days_of(&all, "imported_days"), ["2024-03-01", "2024-03-02"]);
    assert_eq!(
        days_of(&all, "imported_values"),
        ["2024-03-01", "2024-03-02", "2024-03-03"]
    );
    // From noon on the 1st: the 1st does not lie inside; until midnight
    // starting the 3rd: the 2nd does, the 3rd does not.
    let part = export(
        &src,
        &f(Some("2024-03-01T12:00:00Z"), Some("2024-03-03T00:00:00Z")),
    );
    assert_eq!(days_of(&part, "imported_days"), ["2024-03-02"]);
    assert_eq!(days_of(&part, "imported_values"), ["2024-03-02"]);
    // Until a second after that midnight: the 3rd still does not lie inside.
    let part = export(
        &src,
        &f(Some("2024-03-01T00:00:00Z"), Some("2024-03-03T00:00:01Z")),
    );
    assert_eq!(
        days_of(&part, "imported_values"),
        ["2024-03-01", "2024-03-02"]
    );
    // A site filter naming another site selects none.
    let other = export(
        &src,
        &crate::ExportFilter {
            sites: vec!["other.example".into()],
            ..Default::default()
        },
    );
    assert!(days_of(&other, "imported_values").is_empty());

    // The target has the 1st the same, the 2nd otherwise (its value row
    // differs), the 5th that the Takeout lacks, and not the 3rd.
    let (_dir2, mut dst, _) = store();
    dst.replace_imported(
        SITE,
        &ImportedSet {
            first_day: date(2024, 3, 1),
            last_day: date(2024, 3, 5),
            days: vec![day(1, 10), day(2, 20), day(5, 50)],
            values: vec![
                value((2024, 3, 1), Dim::Page, Some("/"), 7, 20),
                value((2024, 3, 2), Dim::Source, Some("Google"), 6, 18),
                value((2024, 3, 2), Dim::Page, Some("/x"), 1, 1),
            ],
        },
    )
    .unwrap();
    let before = imported_rows(&dst);
    let stats = import(&mut dst, &all);
    assert_eq!(
        (
            stats.imported_days_added,
            stats.imported_days_replaced,
            stats.imported_days_present
        ),
        (1, 1, 1)
    );
    // The 1st to the 3rd are the source's; the 5th is the target's.
    let mut want: Vec<_> = imported_rows(&src);
    want.extend(
        before
            .into_iter()
            .filter(|r| r[2].as_deref() == Some(day_number_text(5).as_str())),
    );
    want.sort();
    assert_eq!(imported_rows(&dst), want);
    let again = import(&mut dst, &all);
    assert_eq!(
        (
            again.imported_days_added,
            again.imported_days_replaced,
            again.imported_days_present
        ),
        (0, 0, 3)
    );
    assert_eq!(imported_rows(&dst), want);
}

fn day_number_text(d: i8) -> String {
    crate::imported::day_number(date(2024, 3, d)).to_string()
}

/// Repeated keys and unknown dimensions are refused, and nothing is merged.
#[test]
fn takeout_import_refuses_repeated_days_and_unknown_dimensions() {
    let (_dir, mut src, _) = store();
    src.replace_imported(
        SITE,
        &ImportedSet {
            first_day: date(2024, 3, 1),
            last_day: date(2024, 3, 1),
            days: vec![day(1, 10)],
            values: vec![value((2024, 3, 1), Dim::Page, None, 7, 20)],
        },
    )
    .unwrap();
    let all = export(&src, &crate::ExportFilter::default());
    let (_dir2, mut dst, _) = store();
    let refused = |extra: &str, dst: &mut Store| {
        let mut imp = dst.begin_import().unwrap();
        for (t, b) in &all {
            imp.append(t, b.clone()).unwrap();
            if *t == extra {
                imp.append(t, b.clone()).unwrap();
            }
        }
        imp.commit().unwrap_err().to_string()
    };
    let e = refused("imported_days", &mut dst);
    assert!(
        e.contains("imported_days: site imp.example has day 2024-03-01 2 times"),
        "{e}"
    );
    let e = refused("imported_values", &mut dst);
    assert!(
        e.contains("imported_values: site imp.example day 2024-03-01 has page NULL 2 times"),
        "{e}"
    );
    // A dimension the stats API does not have.
    let mut imp = dst.begin_import().unwrap();
    for (t, b) in &all {
        let b = if *t == "imported_values" {
            let mut cols = b.columns().to_vec();
            cols[2] = std::sync::Arc::new(duckdb::arrow::array::StringArray::from(vec!["bogus"]));
            crate::RecordBatch::try_new(b.schema(), cols).unwrap()
        } else {
            b.clone()
        };
        imp.append(t, b).unwrap();
    }
    let e = imp.commit().unwrap_err().to_string();
    assert!(
        e.contains("day 2024-03-01: dim bogus is not a dimension of the stats API"),
        "{e}"
    );
    assert!(imported_rows(&dst).is_empty());
    assert_eq!(
        dst.query_text("SELECT count(*) FROM hits").unwrap()[0][0].as_deref(),
        Some("3")
    );
}

/// A Takeout of another instance that gave some of the same ids to other
/// hits: those hits are stored under new ids above every id in use, with
/// their props, the others keep theirs, and nothing of the instance's own
/// changes; a second import finds every hit present.
#[test]
fn takeout_import_gives_new_ids_to_hits_whose_id_is_taken() {
    let open = |dir: &std::path::Path, hits: Vec<(u64, Hit)>| {
        let mut s = Store::open(dir, &StoreOptions::default()).unwrap();
        s.upsert_site(SITE, &[], "config").unwrap();
        let last = hits.last().unwrap().0;
        s.append(&hits, last).unwrap();
        s
    };
    let signup = Hit {
        kind: hitvault_core::Kind::Event,
        name: "Signup".into(),
        props: vec![("plan".into(), "pro".into())],
        ..pv(7, "2024-03-02T10:05:00Z", "/pricing")
    };
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let src = open(
        d1.path(),
        vec![
            (1, signup),
            (2, pv(7, "2024-03-02T10:00:00Z", "/")),
            (3, pv(8, "2024-03-02T11:00:00Z", "/docs")),
        ],
    );
    let mut dst = open(
        d2.path(),
        vec![
            (1, pv(9, "2024-04-01T09:00:00Z", "/own")),
            (2, pv(9, "2024-04-01T09:01:00Z", "/own2")),
        ],
    );
    let all = export(&src, &crate::ExportFilter::default());
    let first = import(&mut dst, &all);
    assert_eq!(
        (first.hits_added, first.hits_renumbered, first.hits_present),
        (3, 2, 0)
    );
    assert_eq!(first.props_added, 1);
    let rows = |s: &Store, sql: &str| s.query_text(sql).unwrap();
    let hits = "SELECT id, visitor, path, name FROM hits_v ORDER BY id";
    let text = |v: &[&str]| v.iter().map(|x| Some(x.to_string())).collect::<Vec<_>>();
    assert_eq!(
        rows(&dst, hits),
        vec![
            text(&["1", "9", "/own", "pageview"]),
            text(&["2", "9", "/own2", "pageview"]),
            text(&["3", "8", "/docs", "pageview"]),
            text(&["4", "7", "/pricing", "Signup"]),
            text(&["5", "7", "/", "pageview"]),
        ]
    );
    assert_eq!(
        rows(&dst, "SELECT id, key, value FROM props_v"),
        vec![text(&["4", "plan", "pro"])]
    );
    let again = import(&mut dst, &all);
    assert_eq!(
        (
            again.hits_added,
            again.hits_renumbered,
            again.hits_present,
            again.props_added
        ),
        (0, 0, 3, 0)
    );
    assert_eq!(rows(&dst, "SELECT count(*) FROM hits")[0], text(&["5"]));
}

#[test]
fn takeout_import_refuses_a_hit_id_twice_in_any_order() {
    let d1 = tempfile::tempdir().unwrap();
    let mut src = Store::open(d1.path(), &StoreOptions::default()).unwrap();
    src.upsert_site(SITE, &[], "config").unwrap();
    let hits: Vec<(u64, Hit)> = (1..=4)
        .map(|id| (id, pv(id, "2024-03-02T10:00:00Z", "/")))
        .collect();
    src.append(&hits, 4).unwrap();
    let all = export(&src, &crate::ExportFilter::default());
    let sites = all.iter().find(|(t, _)| *t == "sites").unwrap().clone();
    let batch = all.iter().find(|(t, _)| *t == "hits").unwrap().1.clone();
    let take = |rows: &[usize]| -> (&'static str, crate::RecordBatch) {
        let idx = duckdb::arrow::array::UInt32Array::from(
            rows.iter().map(|&r| r as u32).collect::<Vec<_>>(),
        );
        (
            "hits",
            duckdb::arrow::compute::take_record_batch(&batch, &idx).unwrap(),
        )
    };
    let d2 = tempfile::tempdir().unwrap();
    let mut dst = Store::open(d2.path(), &StoreOptions::default()).unwrap();
    let attempt = |dst: &mut Store, batches: &[(&'static str, crate::RecordBatch)]| {
        let mut imp = dst.begin_import().unwrap();
        for (t, b) in batches {
            imp.append(t, b.clone()).unwrap();
        }
        imp.commit()
            .map(|s| s.hits_added)
            .map_err(|e| e.to_string())
    };
    // Ids 1..4 are rows 0..3.
    for (batches, repeated) in [
        (vec![take(&[0, 1, 1, 2])], Some(2)),
        (vec![take(&[0, 1, 2]), take(&[2, 3])], Some(3)),
        (vec![take(&[2, 3]), take(&[0, 3])], Some(4)),
        (vec![take(&[3, 0]), take(&[2, 1])], None),
    ] {
        let mut all = vec![sites.clone()];
        all.extend(batches);
        match (attempt(&mut dst, &all), repeated) {
            (Err(e), Some(id)) => {
                assert!(e.contains(&format!("hits: id {id} appears 2 times")), "{e}")
            }
            (Ok(added), None) => assert_eq!(added, 4),
            (got, want) => panic!("{got:?}, expected id {want:?} refused"),
        }
        if repeated.is_some() {
            assert!(dst.query_text("SELECT id FROM hits").unwrap().is_empty());
        }
    }
}
