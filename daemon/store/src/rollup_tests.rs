//! The rollups answer exactly what the raw hits answer: the overview from
//! rollups (whole days), from raw hits derived at query time (partial days,
//! stale days), and from the raw-only path agree on a fixture that crosses
//! UTC midnights, a DST change and zones a quarter or half hour off UTC.

use hitvault_core::{Device, Hit, Kind};
use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::stats::{Dim, Interval, Kpis, Overview, PANELS, Stats, Window};
use crate::{Store, StoreOptions};

const SITE: &str = "r.example";

/// A deterministic spread of hits over 2026-03-26 .. 2026-04-02 (UTC): 40
/// visitors, each with a few visits of a few hits, some events, sources,
/// countries and devices, some visits across a UTC midnight.
fn fixture() -> Vec<Hit> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let start = "2026-03-26T00:00:00Z"
        .parse::<Timestamp>()
        .unwrap()
        .as_millisecond();
    let paths = ["/", "/pricing", "/blog/a", "/blog/b", "/docs", "/signup"];
    let sources = ["", "Google", "news.example", "Mastodon"];
    let countries = ["FR", "DE", "", "IN"];
    let mut hits = Vec::new();
    for v in 0..40u64 {
        for _visit in 0..(1 + next(4)) {
            // Anywhere in 7 days, biased towards midnight for some visits.
            let mut t = start + (next(7 * 24 * 60) as i64) * 60_000;
            if next(5) == 0 {
                t = t - t.rem_euclid(86_400_000) + 86_400_000 - 10 * 60_000;
            }
            for _ in 0..(1 + next(5)) {
                let mut h = crate::tests::hit(SITE, t, paths[next(6) as usize]);
                h.visitor = 1000 + v;
                h.source = sources[next(4) as usize].into();
                h.referrer = if h.source.is_empty() {
                    String::new()
                } else {
                    format!("https://{}/x", h.source.to_lowercase())
                };
                h.country = countries[(v % 4) as usize].into();
                h.device = if v % 3 == 0 {
                    Device::Mobile
                } else {
                    Device::Desktop
                };
                if next(6) == 0 {
                    h.kind = Kind::Event;
                    h.name = ["Signup", "Download"][next(2) as usize].into();
                }
                hits.push(h);
                // Within a visit, or just past the 30-minute gap.
                t += (next(40) as i64) * 60_000 + next(60) as i64 * 1000;
            }
        }
    }
    hits
}

fn store(hits: &[Hit]) -> (tempfile::TempDir, Store, u16) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    s.upsert_site(SITE, &[], "config").unwrap();
    append(&mut s, hits, 1);
    let id = s.sites().unwrap()[0].id;
    (dir, s, id)
}

fn append(s: &mut Store, hits: &[Hit], first_seq: u64) {
    let batch: Vec<(u64, Hit)> = hits
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, h)| (first_seq + i as u64, h))
        .collect();
    s.append(&batch, first_seq + hits.len() as u64 - 1).unwrap();
}

fn window(site_id: u16, from: &str, to: &str, tz: &str) -> Window {
    Window {
        site_id,
        from: from.parse().unwrap(),
        to: to.parse().unwrap(),
        tz: TimeZone::get(tz).unwrap(),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn same_kpis(a: &Kpis, b: &Kpis, what: &str) {
    assert_eq!(
        (a.visitors, a.pageviews, a.events, a.sessions, a.bounces),
        (b.visitors, b.pageviews, b.events, b.sessions, b.bounces),
        "{what}"
    );
    assert!(close(a.bounce_rate, b.bounce_rate), "{what}: {a:?} {b:?}");
    assert!(
        close(a.avg_duration_s, b.avg_duration_s),
        "{what}: {a:?} {b:?}"
    );
    assert!(
        close(a.views_per_visit, b.views_per_visit),
        "{what}: {a:?} {b:?}"
    );
}

fn same(a: &Overview, b: &Overview, what: &str) {
    same_kpis(&a.kpis, &b.kpis, what);
    same_kpis(&a.previous, &b.previous, what);
    assert_eq!(a.series, b.series, "{what}: series");
    assert_eq!(a.breakdowns.len(), b.breakdowns.len());
    for ((da, ra), (db, rb)) in a.breakdowns.iter().zip(&b.breakdowns) {
        assert_eq!(da, db);
        assert_eq!(ra.len(), rb.len(), "{what}: {da:?}");
        for (x, y) in ra.iter().zip(rb) {
            assert_eq!(
                (&x.value, x.visitors, x.count),
                (&y.value, y.visitors, y.count),
                "{what}: {da:?}"
            );
            assert!(close(x.share, y.share), "{what}: {da:?}");
        }
    }
}

const CASES: [(&str, &str, &str, Interval); 8] = [
    (
        "2026-03-26T00:00:00Z",
        "2026-04-02T00:00:00Z",
        "UTC",
        Interval::Day,
    ),
    (
        "2026-03-26T00:00:00Z",
        "2026-04-02T00:00:00Z",
        "UTC",
        Interval::Hour,
    ),
    // Berlin: local midnights at 23:00 / 22:00 UTC, DST from 2026-03-29.
    (
        "2026-03-25T23:00:00Z",
        "2026-04-01T22:00:00Z",
        "Europe/Berlin",
        Interval::Day,
    ),
    (
        "2026-03-28T23:00:00Z",
        "2026-03-29T22:00:00Z",
        "Europe/Berlin",
        Interval::Hour,
    ),
    (
        "2026-03-25T23:00:00Z",
        "2026-04-01T22:00:00Z",
        "Europe/Berlin",
        Interval::Week,
    ),
    (
        "2026-03-25T23:00:00Z",
        "2026-04-01T22:00:00Z",
        "Europe/Berlin",
        Interval::Month,
    ),
    // Half and three-quarter hours off UTC.
    (
        "2026-03-26T18:30:00Z",
        "2026-04-01T18:30:00Z",
        "Asia/Kolkata",
        Interval::Day,
    ),
    (
        "2026-03-26T18:15:00Z",
        "2026-04-01T18:15:00Z",
        "Asia/Kathmandu",
        Interval::Hour,
    ),
];

fn check_all(st: &Stats, id: u16, label: &str) {
    for (from, to, tz, interval) in CASES {
        let w = window(id, from, to, tz);
        let len = w.to.as_microsecond() - w.from.as_microsecond();
        let prev = Window {
            from: Timestamp::from_microsecond(w.from.as_microsecond() - len).unwrap(),
            to: w.from,
            ..w.clone()
        };
        let fast = st.overview(&w, &prev, &[], interval, &PANELS, 10).unwrap();
        let raw = st
            .overview_raw(&w, &prev, &[], interval, &PANELS, 10)
            .unwrap();
        same(
            &fast,
            &raw,
            &format!("{label}: {from}..{to} {tz} {interval:?}"),
        );
        assert!(
            fast.kpis.visitors > 0,
            "{label}: the fixture covers {from}..{to}"
        );
    }
}

fn count(s: &Store, sql: &str) -> u64 {
    s.query_text(sql).unwrap()[0][0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn rollups_answer_what_the_raw_hits_answer() {
    let hits = fixture();
    let (_d, s, id) = store(&hits);
    let st = s.stats().unwrap();
    // No rollups yet: every day is derived at query time.
    check_all(&st, id, "no rollups");
    // Build them all (every fixture day is before today).
    let r = s.refresh_rollups(10_000, u64::MAX).unwrap();
    assert_eq!((r.days, r.more), (8, false), "2026-03-26 .. 2026-04-02");
    assert!(count(&s, "SELECT count(*) FROM rollup_visitors") > 40);
    assert_eq!(
        s.refresh_rollups(10_000, u64::MAX).unwrap().days,
        0,
        "nothing stale"
    );
    check_all(&st, id, "rollups");
}

#[test]
fn a_day_that_changes_is_read_raw_until_rebuilt() {
    let hits = fixture();
    let (_d, mut s, id) = store(&hits);
    let st = s.stats().unwrap();
    s.refresh_rollups(10_000, u64::MAX).unwrap();
    let w = window(id, "2026-03-26T00:00:00Z", "2026-04-02T00:00:00Z", "UTC");
    let prev = window(id, "2026-03-19T00:00:00Z", "2026-03-26T00:00:00Z", "UTC");
    let before = st
        .overview(&w, &prev, &[], Interval::Day, &PANELS, 10)
        .unwrap();
    // History arrives for 2026-03-28 (a batch import, say): a new visitor.
    let mut late = crate::tests::hit(SITE, 0, "/late");
    late.ts_ms = "2026-03-28T12:00:00Z"
        .parse::<Timestamp>()
        .unwrap()
        .as_millisecond();
    late.visitor = 99_999;
    append(&mut s, &[late], hits.len() as u64 + 1);
    let after = st
        .overview(&w, &prev, &[], Interval::Day, &PANELS, 10)
        .unwrap();
    assert_eq!(after.kpis.visitors, before.kpis.visitors + 1);
    assert_eq!(after.kpis.pageviews, before.kpis.pageviews + 1);
    let raw = st
        .overview_raw(&w, &prev, &[], Interval::Day, &PANELS, 10)
        .unwrap();
    same(&after, &raw, "stale day");
    assert_eq!(
        s.refresh_rollups(10_000, u64::MAX).unwrap().days,
        1,
        "only that day"
    );
    same(
        &st.overview(&w, &prev, &[], Interval::Day, &PANELS, 10)
            .unwrap(),
        &raw,
        "rebuilt day",
    );
    // Hits deleted (retention, say) are noticed the same way.
    s.conn
        .execute_batch("DELETE FROM hits WHERE ts < TIMESTAMPTZ '2026-03-27 00:00:00+00'")
        .unwrap();
    // (Behind the store's back, so the readers' caches are told by hand.)
    s.hits_changed();
    let raw = st
        .overview_raw(&w, &prev, &[], Interval::Day, &PANELS, 10)
        .unwrap();
    same(
        &st.overview(&w, &prev, &[], Interval::Day, &PANELS, 10)
            .unwrap(),
        &raw,
        "deleted day",
    );
    assert_eq!(s.refresh_rollups(10_000, u64::MAX).unwrap().days, 1);
    assert_eq!(
        s.refresh_rollups(10_000, u64::MAX).unwrap().days,
        0,
        "an empty day stays built"
    );
    // Rollups of another builder version are neither used nor kept.
    s.conn
        .execute_batch("UPDATE rollup_days SET version = version + 1 WHERE day = 20540")
        .unwrap();
    s.hits_changed();
    same(
        &st.overview(&w, &prev, &[], Interval::Day, &PANELS, 10)
            .unwrap(),
        &raw,
        "other version",
    );
    assert_eq!(s.refresh_rollups(10_000, u64::MAX).unwrap().days, 1);
    assert_eq!(
        count(&s, "SELECT count(*) FROM rollup_values WHERE day = 20538"),
        0,
        "2026-03-26 has no hits left"
    );
}

#[test]
fn refresh_stays_within_its_budget_and_skips_today() {
    let mut hits = fixture();
    let mut today = crate::tests::hit(SITE, Timestamp::now().as_millisecond(), "/now");
    today.visitor = 7;
    hits.push(today);
    let (_d, s, _id) = store(&hits);
    let r = s.refresh_rollups(3, u64::MAX).unwrap();
    assert_eq!((r.days, r.more), (3, true));
    // The hit budget: one day at least, then only while within it.
    let r = s.refresh_rollups(100, 1).unwrap();
    assert_eq!((r.days, r.more), (1, true), "one day even over budget");
    let r = s.refresh_rollups(100, u64::MAX).unwrap();
    assert_eq!((r.days, r.more), (4, false), "today is never rolled up");
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM rollup_values WHERE value = '/now'"
        ),
        0
    );
}

#[test]
fn a_visitor_counts_once_per_utc_day() {
    // Visitor 5 at 23:50 and 00:10 UTC: two visitors, two sessions.
    let mut a = crate::tests::hit(SITE, 0, "/");
    a.ts_ms = "2026-03-27T23:50:00Z"
        .parse::<Timestamp>()
        .unwrap()
        .as_millisecond();
    let mut b = a.clone();
    b.ts_ms += 20 * 60_000;
    let (_d, s, id) = store(&[a, b]);
    let st = s.stats().unwrap();
    let w = window(id, "2026-03-27T00:00:00Z", "2026-03-29T00:00:00Z", "UTC");
    let k = st.kpis(&w, &[]).unwrap();
    assert_eq!((k.visitors, k.sessions, k.bounces), (2, 2, 2));
    s.refresh_rollups(100, u64::MAX).unwrap();
    let o = st
        .overview(&w, &w, &[], Interval::Day, &[Dim::Page], 10)
        .unwrap();
    assert_eq!((o.kpis.visitors, o.kpis.sessions), (2, 2));
    assert_eq!(o.breakdowns[0].1[0].visitors, 2);
}

/// A hit of visitor `visitor` at `ts` on `path`.
fn hit_at(ts: Timestamp, visitor: u64, path: &str) -> Hit {
    let mut h = crate::tests::hit(SITE, ts.as_millisecond(), path);
    h.visitor = visitor;
    h
}

#[test]
fn cached_ranges_and_plans_follow_every_change() {
    let hits = fixture();
    let (_d, mut s, id) = store(&hits);
    let st = s.stats().unwrap();
    s.refresh_rollups(10_000, u64::MAX).unwrap();
    // Partial days at both ends (derived from raw hits, then cached).
    let w = window(id, "2026-03-27T07:15:00Z", "2026-04-01T13:45:00Z", "UTC");
    let prev = window(id, "2026-03-22T00:45:00Z", "2026-03-27T07:15:00Z", "UTC");
    let raw = |st: &Stats| {
        st.overview_raw(&w, &prev, &[], Interval::Day, &PANELS, 10)
            .unwrap()
    };
    let first = st
        .overview(&w, &prev, &[], Interval::Day, &PANELS, 10)
        .unwrap();
    same(&first, &raw(&st), "first");
    let again = st
        .overview(&w, &prev, &[], Interval::Day, &PANELS, 10)
        .unwrap();
    same(&again, &first, "from the cache");
    // Late history inside the cached partial day at the window's end, and
    // inside a rolled-up day: both are seen at once.
    let mut seq = hits.len() as u64 + 1;
    for (ts, v) in [
        ("2026-04-01T09:00:00Z", 70_001),
        ("2026-03-29T09:00:00Z", 70_002),
    ] {
        append(&mut s, &[hit_at(ts.parse().unwrap(), v, "/late")], seq);
        seq += 1;
        let o = st
            .overview(&w, &prev, &[], Interval::Day, &PANELS, 10)
            .unwrap();
        same(&o, &raw(&st), ts);
    }
    let o = st
        .overview(&w, &prev, &[], Interval::Day, &PANELS, 10)
        .unwrap();
    assert_eq!(o.kpis.visitors, first.kpis.visitors + 2);
    // A window ending now: today's range changes with every live hit.
    let now = Timestamp::now();
    let live = Window {
        site_id: id,
        from: now
            .checked_sub(jiff::SignedDuration::from_hours(48))
            .unwrap(),
        to: now
            .checked_add(jiff::SignedDuration::from_hours(1))
            .unwrap(),
        tz: TimeZone::UTC,
    };
    let k0 = st
        .overview(&live, &live, &[], Interval::Hour, &PANELS, 10)
        .unwrap()
        .kpis;
    append(&mut s, &[hit_at(now, 70_003, "/live")], seq);
    let o = st
        .overview(&live, &live, &[], Interval::Hour, &PANELS, 10)
        .unwrap();
    assert_eq!(o.kpis.pageviews, k0.pageviews + 1, "a live hit is seen");
    same(
        &o,
        &st.overview_raw(&live, &live, &[], Interval::Hour, &PANELS, 10)
            .unwrap(),
        "live",
    );
    // Retention deletes through the store: seen too.
    let reader = s.reader().unwrap();
    let before = "2026-03-30T00:00:00Z"
        .parse::<Timestamp>()
        .unwrap()
        .as_microsecond();
    let expired = reader.expired(SITE, before).unwrap();
    assert!(expired.hits > 0);
    s.delete_expired(SITE, before, &expired).unwrap();
    same(
        &st.overview(&w, &prev, &[], Interval::Day, &PANELS, 10)
            .unwrap(),
        &raw(&st),
        "after retention",
    );
    // And a cleared cache gives the same answer.
    st.clear_cache();
    same(
        &st.overview(&w, &prev, &[], Interval::Day, &PANELS, 10)
            .unwrap(),
        &raw(&st),
        "cold",
    );
}
