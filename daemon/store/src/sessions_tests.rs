//! The session numbers the writer stores, held to the rule worked out in
//! plain Rust: every path that stores hits (live hits in order, late hits,
//! history before the horizon, a restart in the middle, a Takeout import)
//! must leave each hit with the number the rule gives it.

use std::collections::BTreeMap;

use hitvault_core::Hit;

use crate::selection_tests::Lcg;
use crate::sessions::{GAP_US, Open, ToNumber};
use crate::stats::model::DAY_US;
use crate::{Store, StoreOptions};

const SITE: &str = "sessions.example";
const MINUTE_MS: i64 = 60_000;

/// `before` minutes ago, moved back when the `span` minutes from there
/// would cross midnight UTC: a session never crosses a day, so a test's
/// visits must not (run just after midnight, they did, and the numbers
/// restarted on the new day). The span still ends in the past.
fn recent_base(now: i64, before: i64, span: i64) -> i64 {
    let base = now - before * MINUTE_MS;
    let day0 = now.div_euclid(86_400_000) * 86_400_000;
    if base < day0 && base + span * MINUTE_MS >= day0 {
        day0 - (span + 1) * MINUTE_MS
    } else {
        base
    }
}

/// What a hit stores of its session: the number, and the referrer, source
/// and campaign of the session's first hit.
type Stored = (Option<u8>, Option<String>, Option<String>, Option<String>);

/// The rule: per visitor and UTC day, hits in (time, id) order; a gap of
/// more than 30 minutes starts the next session, whose first hit decides
/// the acquisition of all of them. id -> what it stores.
fn model(hits: &[(u64, Hit)]) -> BTreeMap<u64, Stored> {
    let by_id: BTreeMap<u64, &Hit> = hits.iter().map(|(id, h)| (*id, h)).collect();
    let mut by_key: BTreeMap<(u64, i64), Vec<(i64, u64)>> = BTreeMap::new();
    for (id, h) in hits {
        let us = h.ts_ms * 1000;
        by_key
            .entry((h.visitor, us.div_euclid(DAY_US)))
            .or_default()
            .push((us, *id));
    }
    let text = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let mut out = BTreeMap::new();
    for (_, mut v) in by_key {
        v.sort();
        let (mut n, mut last, mut first) = (0u8, i64::MIN, 0);
        for (us, id) in v {
            if n == 0 || us - last > GAP_US {
                n += 1;
                first = id;
            }
            last = us;
            let f = by_id[&first];
            out.insert(
                id,
                (
                    Some(n),
                    text(&f.referrer),
                    text(&f.source),
                    text(&f.utm.campaign),
                ),
            );
        }
    }
    out
}

fn stored_all(s: &Store) -> BTreeMap<u64, Stored> {
    s.query_text("SELECT id, sess, referrer, source, utm_campaign FROM hits")
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r[0].as_deref().unwrap().parse().unwrap(),
                (
                    r[1].as_deref().map(|v| v.parse().unwrap()),
                    r[2].clone(),
                    r[3].clone(),
                    r[4].clone(),
                ),
            )
        })
        .collect()
}

fn stored(s: &Store) -> BTreeMap<u64, Option<u8>> {
    stored_all(s).into_iter().map(|(k, v)| (k, v.0)).collect()
}

fn assert_numbers(s: &Store, all: &[(u64, Hit)], what: &str) {
    let want = model(all);
    let got = stored_all(s);
    let wrong: Vec<_> = want
        .iter()
        .filter(|(id, n)| got.get(id) != Some(n))
        .map(|(id, n)| (id, n, got.get(id)))
        .take(5)
        .collect();
    assert!(
        wrong.is_empty() && got.len() == want.len(),
        "{what}: {} stored, {} expected; first wrong (id, want, got): {wrong:?}",
        got.len(),
        want.len()
    );
}

/// Hits of 40 visitors: runs with gaps straddling 30 minutes, on today,
/// yesterday (the days held in memory) and three days of history.
fn fixture(now_ms: i64) -> Vec<(u64, Hit)> {
    let mut r = Lcg(11);
    let mut hits = Vec::new();
    let today0 = now_ms.div_euclid(86_400_000) * 86_400_000;
    for visitor in 1..=40u64 {
        for run in 0..3 {
            let day = -(r.next(5) as i64);
            let mut t = today0 + day * 86_400_000 + r.next(20 * 60) as i64 * MINUTE_MS + run;
            for _ in 0..1 + r.next(6) {
                if t < now_ms {
                    let mut h = Hit {
                        visitor,
                        ..crate::tests::hit(SITE, t, "/")
                    };
                    // Acquisition that differs within a session.
                    match r.next(4) {
                        0 => {
                            h.referrer = "https://www.google.com/".into();
                            h.source = "Google".into();
                        }
                        1 => {
                            h.source = "newsletter".into();
                            h.utm.source = "newsletter".into();
                            h.utm.campaign = format!("c{}", r.next(3));
                        }
                        _ => {}
                    }
                    hits.push(h);
                }
                t += MINUTE_MS * [1, 29, 30, 31, 90][r.next(5) as usize];
            }
        }
    }
    hits.into_iter()
        .enumerate()
        .map(|(i, h)| (i as u64 + 1, h))
        .collect()
}

fn open(dir: &std::path::Path) -> Store {
    let mut s = Store::open(dir, &StoreOptions::default()).unwrap();
    s.upsert_site(SITE, &[], "config").unwrap();
    s
}

#[test]
fn live_batches_in_time_order_are_numbered_in_memory() {
    let now = jiff::Timestamp::now().as_millisecond();
    let mut all = fixture(now);
    // Only today's and yesterday's hits, in time order, as the tracker
    // sends them: none of them needs the SQL.
    let horizon_ms = (now.div_euclid(86_400_000) - 1) * 86_400_000;
    all.retain(|(_, h)| h.ts_ms >= horizon_ms);
    all.sort_by_key(|(id, h)| (h.ts_ms, *id));
    let all: Vec<(u64, Hit)> = all
        .into_iter()
        .enumerate()
        .map(|(i, (_, h))| (i as u64 + 1, h))
        .collect();
    assert!(all.len() > 50, "fixture too small: {}", all.len());
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    let site = s.sites().unwrap()[0].id;
    for chunk in all.chunks(7) {
        if let Some(held) = &s.open {
            // In order, nothing is left for the SQL: the state alone decides.
            let to: Vec<ToNumber> = chunk
                .iter()
                .map(|(id, h)| ToNumber {
                    key: (site, h.visitor, (h.ts_ms * 1000).div_euclid(DAY_US)),
                    us: h.ts_ms * 1000,
                    id: *id,
                    acq: Default::default(),
                })
                .collect();
            assert!(held.assign(&to).dirty.is_empty());
        }
        let end = chunk.last().unwrap().0;
        s.append(chunk, end).unwrap();
    }
    assert_numbers(&s, &all, "live, in order");
    assert!(s.open.as_ref().unwrap().len() > 0);
}

#[test]
fn every_path_stores_the_rule_s_numbers() {
    let now = jiff::Timestamp::now().as_millisecond();
    let all = fixture(now);
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    // Shuffled batches: history before the horizon, hits later than the
    // latest held, hits of a visitor-day split over batches.
    let mut order: Vec<usize> = (0..all.len()).collect();
    let mut r = Lcg(5);
    for i in (1..order.len()).rev() {
        order.swap(i, r.next(i as u64 + 1) as usize);
    }
    let shuffled: Vec<(u64, Hit)> = order.iter().map(|&i| all[i].clone()).collect();
    let (first, rest) = shuffled.split_at(shuffled.len() / 2);
    let mut seq = 0;
    for chunk in first.chunks(13) {
        seq += 1;
        s.append(chunk, seq).unwrap();
    }
    assert_numbers(&s, first, "first half, shuffled");
    // A restart: the state is read back from the table.
    drop(s);
    let mut s = open(dir.path());
    for chunk in rest.chunks(17) {
        seq += 1;
        s.append(chunk, seq).unwrap();
    }
    assert_numbers(&s, &all, "after a restart, shuffled");

    // A Takeout of it imported into an empty store numbers the same.
    let filter = crate::ExportFilter {
        sites: Vec::new(),
        from_us: None,
        until_us: None,
    };
    let mut batches = Vec::new();
    s.reader()
        .unwrap()
        .export(&filter, &mut |t, b| {
            batches.push((t, b));
            Ok(())
        })
        .unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    let mut s2 = Store::open(dir2.path(), &StoreOptions::default()).unwrap();
    let mut imp = s2.begin_import().unwrap();
    for (t, b) in batches {
        imp.append(t, b).unwrap();
    }
    imp.commit().unwrap();
    assert_numbers(&s2, &all, "Takeout import");
}

#[test]
fn a_year_of_history_in_random_order_is_numbered_in_memory_unless_it_mixes() {
    let now = jiff::Timestamp::now().as_millisecond();
    let today0 = now.div_euclid(86_400_000) * 86_400_000;
    let mut r = Lcg(23);
    // A year of history before the horizon: 8 visitor-days a day, each of
    // one to six hits with gaps straddling 30 minutes (several sessions)
    // and acquisition that differs from hit to hit.
    let mut days: Vec<Vec<Hit>> = Vec::new();
    for day in 2..368i64 {
        for v in 0..8u64 {
            // Started by 14:00, ended before midnight: one visitor-day.
            let mut t = today0 - day * 86_400_000 + r.next(14 * 60) as i64 * MINUTE_MS;
            let mut hits = Vec::new();
            for _ in 0..1 + r.next(6) {
                let mut h = Hit {
                    visitor: day as u64 * 100 + v,
                    ..crate::tests::hit(SITE, t, "/")
                };
                if r.next(3) == 0 {
                    h.referrer = format!("https://r{}.example/", r.next(4));
                    h.source = format!("r{}", r.next(4));
                    h.utm.campaign = format!("c{}", r.next(3));
                }
                hits.push(h);
                t += MINUTE_MS * [1, 29, 30, 31, 90][r.next(5) as usize];
            }
            days.push(hits);
        }
    }
    for i in (1..days.len()).rev() {
        days.swap(i, r.next(i as u64 + 1) as usize);
    }
    // Batches of 25 visitor-days in random order; every 40th visitor-day
    // of more than one hit has its first hit sent in the next batch: it
    // mixes with hits stored before and is numbered again in SQL.
    let mut batches: Vec<Vec<Hit>> = Vec::new();
    let mut split = 0;
    for (i, chunk) in days.chunks(25).enumerate() {
        let (mut batch, mut late) = (Vec::new(), Vec::new());
        for (j, d) in chunk.iter().enumerate() {
            if (i * 25 + j) % 40 == 0 && d.len() > 1 {
                late.push(d[0].clone());
                batch.extend(d[1..].iter().cloned());
                split += 1;
            } else {
                batch.extend(d.iter().cloned());
            }
        }
        batches.push(batch);
        if !late.is_empty() {
            batches.push(late);
        }
    }
    let (mut all, mut seq) = (Vec::new(), 0u64);
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    for b in batches {
        let batch: Vec<(u64, Hit)> = b
            .into_iter()
            .map(|h| {
                seq += 1;
                (seq, h)
            })
            .collect();
        s.append(&batch, seq).unwrap();
        all.extend(batch);
    }
    assert_numbers(&s, &all, "a year of history, shuffled");
    let w = s.session_work();
    assert!(split > 20, "too few split visitor-days: {split}");
    assert_eq!(
        (w.history_in_memory, w.keys_in_sql),
        (days.len() as u64, split),
        "every visitor-day is numbered in memory when its batch holds all of it \
         stored so far; only the split ones, when their first hit comes, in SQL"
    );
    assert!(
        w.hits_rewritten > 0 && w.hits_rewritten <= 5 * split,
        "only the hits of the split visitor-days are rewritten: {w:?}"
    );
}

#[test]
fn a_late_hit_joins_two_sessions_into_one() {
    let now = jiff::Timestamp::now().as_millisecond();
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    let base = recent_base(now, 120, 100);
    let t = |m: i64| Hit {
        visitor: 9,
        ..crate::tests::hit(SITE, base + m * MINUTE_MS, "/")
    };
    // 0 and 40 minutes: two sessions.
    s.append(&[(1, t(0)), (2, t(40))], 2).unwrap();
    assert_eq!(
        stored(&s).into_values().collect::<Vec<_>>(),
        [Some(1), Some(2)]
    );
    // A hit at 20 minutes arrives late: one session of three hits.
    s.append(&[(3, t(20))], 3).unwrap();
    assert_eq!(
        stored(&s).into_values().collect::<Vec<_>>(),
        [Some(1), Some(1), Some(1)]
    );
    // The state was read back: a hit 29 minutes after the last continues it.
    s.append(&[(4, t(69))], 4).unwrap();
    assert_eq!(stored(&s)[&4], Some(1));
    s.append(&[(5, t(100))], 5).unwrap();
    assert_eq!(stored(&s)[&5], Some(2));
}

#[test]
fn assign_does_not_change_what_is_held() {
    let today = jiff::Timestamp::now().as_microsecond().div_euclid(DAY_US);
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let held = Open::load(&s.conn, today).unwrap();
    let us = today * DAY_US + 1;
    let a = held.assign(&[
        ToNumber {
            key: (1, 7, today),
            us,
            id: 1,
            acq: Default::default(),
        },
        ToNumber {
            key: (1, 7, today - 3),
            us: us - 3 * DAY_US,
            id: 2,
            acq: Default::default(),
        },
    ]);
    assert_eq!(a.sess, [1, 1]);
    assert_eq!(a.dirty, [(1, 7, today - 3)], "history is numbered in SQL");
    assert_eq!(held.len(), 0, "assign keeps nothing until the commit");
}

#[test]
fn the_migration_numbers_every_stored_hit() {
    let now = jiff::Timestamp::now().as_millisecond();
    let all = fixture(now);
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = open(dir.path());
        s.append(&all, all.len() as u64).unwrap();
        // Back to schema version 4: no column, no numbers (and none of
        // the later migrations).
        s.conn
            .execute_batch(
                "ALTER TABLE hits DROP COLUMN sess;
                 DROP TABLE cluster_state;
                 DELETE FROM schema_migrations WHERE version >= 5",
            )
            .unwrap();
    }
    let s = open(dir.path());
    assert_numbers(&s, &all, "migration 5");
}

/// Issue: a custom event sent without a referrer showed a source of its own
/// ("Direct"), so the Sources panel and a source filter disagreed with the
/// visits. A visit's source is its first hit's, on every hit of it.
#[test]
fn a_visit_counts_once_under_the_source_it_came_from() {
    use crate::stats::{Dim, Filter, Op, Window};
    use hitvault_core::Kind;
    let now = jiff::Timestamp::now().as_millisecond();
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    let base = recent_base(now, 100, 48);
    let from_newsletter = |v: u64, m: i64| {
        let mut h = crate::tests::hit(SITE, base + m * MINUTE_MS, "/post");
        h.visitor = v;
        h.source = "newsletter".into();
        h.utm.source = "newsletter".into();
        h.utm.campaign = "spring".into();
        h
    };
    let plain = |v: u64, m: i64, kind: Kind| {
        let mut h = crate::tests::hit(SITE, base + m * MINUTE_MS, "/pricing");
        h.visitor = v;
        if kind == Kind::Event {
            h.kind = Kind::Event;
            h.name = "signup".into();
        }
        h
    };
    // Visitor 1: a visit from the newsletter with a second page and a
    // server-side event (no referrer, no UTM); then, 45 minutes later, a
    // direct visit. Visitor 2: one direct pageview.
    let hits = [
        (1, from_newsletter(1, 0)),
        (2, plain(1, 2, Kind::Pageview)),
        (3, plain(1, 3, Kind::Event)),
        (4, plain(1, 48, Kind::Pageview)),
        (5, plain(2, 10, Kind::Pageview)),
    ];
    // Live, in two batches.
    s.append(&hits[..2], 2).unwrap();
    s.append(&hits[2..], 5).unwrap();
    let site = s.sites().unwrap()[0].id;
    let st = s.stats().unwrap();
    let w = Window {
        site_id: site,
        from: jiff::Timestamp::from_millisecond(base - 60 * MINUTE_MS).unwrap(),
        to: jiff::Timestamp::from_millisecond(now + 60_000).unwrap(),
        tz: jiff::tz::TimeZone::UTC,
    };
    let rows = st.breakdown(&w, &[], Dim::Source, 10).unwrap();
    let got: Vec<(Option<&str>, u64, u64)> = rows
        .iter()
        .map(|r| (r.value.as_deref(), r.visitors, r.count))
        .collect();
    assert_eq!(
        got,
        [(None, 2, 2), (Some("newsletter"), 1, 2)],
        "direct: visitors 1 and 2, a pageview each; newsletter: visitor 1, two pageviews"
    );
    let k = st
        .kpis(&w, &[Filter::dim(Dim::Source, Op::Is, "newsletter")])
        .unwrap();
    assert_eq!(
        (k.sessions, k.pageviews, k.events, k.views_per_visit),
        (1, 2, 1, 2.0),
        "the newsletter's visit: both pages and the event"
    );
    let k = st
        .kpis(&w, &[Filter::dim(Dim::UtmCampaign, Op::Is, "spring")])
        .unwrap();
    assert_eq!((k.sessions, k.events), (1, 1));
}

/// Issue: a year of a large site answered "Out of Memory" until its rollups
/// were built. With sessions stored, the raw path groups instead of sorting
/// windows: a year of hits with no rollups, under a 64 MB limit (a sixteenth
/// of the default), answers every overview, filtered or not.
#[test]
fn a_year_without_rollups_answers_inside_a_small_memory_limit() {
    use crate::stats::{Dim, Filter, Interval, Op, PANELS, Window};
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        threads: 2,
        memory_limit: "64MB".into(),
    };
    let mut s = Store::open(dir.path(), &opts).unwrap();
    s.upsert_site(SITE, &[], "config").unwrap();
    let now = jiff::Timestamp::now().as_millisecond();
    let start = now - 365 * 86_400_000;
    let mut r = Lcg(3);
    let countries = ["DE", "FR", "US", "GB", ""];
    let pages = ["/", "/pricing", "/docs", "/blog/a", "/blog/b", "/about"];
    let mut seq = 0u64;
    let mut hits = Vec::new();
    for visit in 0..200_000u64 {
        let mut t = start + (visit as i64) * (365 * 86_400_000 / 200_000);
        for _ in 0..1 + r.next(3) {
            seq += 1;
            let mut h = crate::tests::hit(SITE, t, pages[r.next(6) as usize]);
            h.visitor = visit % 50_000;
            h.country = countries[(visit % 5) as usize].into();
            if r.next(3) == 0 {
                h.source = "Google".into();
            }
            hits.push((seq, h));
            t += MINUTE_MS * (1 + r.next(20) as i64);
        }
        if hits.len() >= 50_000 {
            s.append(&hits, seq).unwrap();
            hits.clear();
        }
    }
    s.append(&hits, seq).unwrap();
    let st = s.stats().unwrap();
    let at = |ms: i64| jiff::Timestamp::from_millisecond(ms).unwrap();
    let w = Window {
        site_id: s.sites().unwrap()[0].id,
        from: at(start - 86_400_000),
        // The last visits run up to an hour past now.
        to: at(now + 2 * 60 * MINUTE_MS),
        tz: jiff::tz::TimeZone::get("Europe/Berlin").unwrap(),
    };
    let prev = Window {
        from: at(start - 400 * 86_400_000),
        to: w.from,
        ..w.clone()
    };
    for filters in [
        vec![],
        vec![Filter::dim(Dim::Country, Op::Is, "DE")],
        vec![Filter::dim(Dim::EntryPage, Op::Is, "/pricing")],
        vec![Filter::dim(Dim::Source, Op::IsNot, "Google")],
    ] {
        let o = st
            .overview(&w, &prev, &filters, Interval::Month, &PANELS, 10)
            .unwrap_or_else(|e| panic!("{filters:?}: {e}"));
        assert!(o.kpis.pageviews > 0, "{filters:?}: nothing counted");
        assert_eq!(o.breakdowns.len(), PANELS.len());
    }
    let all = st.kpis(&w, &[]).unwrap();
    assert_eq!(all.pageviews, seq, "every hit of the year counted");
}
