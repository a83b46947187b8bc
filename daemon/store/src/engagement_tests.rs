//! Engagement (time on page, scroll depth): how the writer's append
//! attributes it to pageviews, and what the stats engine makes of it.
//! Answers are worked out by hand in the comments.

use hitvault_core::{Engagement, EngagementRef, Hit, HitRef};
use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::goals::{GoalKind, Step};
use crate::stats::{Dim, EngagementSums, Filter, Interval, Op, PANELS, Window};
use crate::{AppendStats, Store, StoreOptions};

const SITE: &str = "a.example";

fn ms(t: &str) -> i64 {
    t.parse::<Timestamp>().unwrap().as_millisecond()
}

fn pv(visitor: u64, t: &str, path: &str) -> Hit {
    Hit {
        visitor,
        ..crate::tests::hit(SITE, ms(t), path)
    }
}

fn eng(visitor: u64, t: &str, path: &str, engaged_ms: u32, sd: Option<u8>) -> Engagement {
    Engagement {
        ts_ms: ms(t),
        site: SITE.into(),
        path: path.into(),
        visitor,
        engaged_ms,
        scroll_depth: sd,
    }
}

/// A store with the site and an append helper that numbers records on.
struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    site_id: u16,
    next: u64,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        store.upsert_site(SITE, &[], "config").unwrap();
        let site_id = store.sites().unwrap()[0].id;
        Fixture {
            _dir: dir,
            store,
            site_id,
            next: 1,
        }
    }

    /// One batch, as the writer commits it: hits first, then engagements.
    fn batch(&mut self, hits: &[Hit], engagements: &[Engagement]) -> AppendStats {
        let mut h: Vec<(u64, HitRef<'_>)> = Vec::new();
        for x in hits {
            h.push((self.next, x.as_ref()));
            self.next += 1;
        }
        let mut e: Vec<(u64, EngagementRef<'_>)> = Vec::new();
        for x in engagements {
            e.push((self.next, x.as_ref()));
            self.next += 1;
        }
        self.store.append_batch(&h, &e, self.next - 1).unwrap()
    }

    fn window(&self) -> Window {
        Window {
            site_id: self.site_id,
            from: "2026-01-10T00:00:00Z".parse().unwrap(),
            to: "2026-01-11T00:00:00Z".parse().unwrap(),
            tz: TimeZone::UTC,
        }
    }

    fn prev(&self) -> Window {
        Window {
            from: "2026-01-09T00:00:00Z".parse().unwrap(),
            to: "2026-01-10T00:00:00Z".parse().unwrap(),
            ..self.window()
        }
    }

    fn stored(&self) -> u64 {
        self.store
            .conn
            .query_row("SELECT count(*) FROM engagements", [], |r| r.get(0))
            .unwrap()
    }
}

fn sums(engaged_ms: u64, pageviews: u64, scroll_sum: u64, scrolled: u64) -> EngagementSums {
    EngagementSums {
        engaged_ms,
        pageviews,
        scroll_sum,
        scrolled,
    }
}

/// The case measured on a Plausible-tracked site: four one-page visits,
/// two of them read (an engagement each). Every visit bounced, no custom
/// event happened, and no goal can be reached by an engagement.
#[test]
fn engaged_one_page_visits_still_bounce_and_are_no_events() {
    let mut fx = Fixture::new();
    let hits: Vec<Hit> = (1..=4)
        .map(|v| pv(v, &format!("2026-01-10T1{v}:00:00Z"), "/post"))
        .collect();
    let engagements = [
        eng(1, "2026-01-10T11:02:00Z", "/post", 95_000, Some(100)),
        eng(2, "2026-01-10T12:00:30Z", "/post", 25_000, Some(40)),
    ];
    let st = fx.batch(&hits, &engagements);
    assert_eq!((st.hits, st.engagements, st.unattributed), (4, 2, 0));
    let goal = fx
        .store
        .add_goal(
            fx.site_id,
            Step {
                kind: GoalKind::Event,
                value: "engagement".into(),
            },
            "Engagement",
        )
        .unwrap();
    let stats = fx.store.stats().unwrap();
    let (w, prev) = (fx.window(), fx.prev());
    // Unfiltered (the rollup path) and filtered (the raw path) agree.
    let filters = [vec![], vec![Filter::dim(Dim::Page, Op::Is, "/post")]];
    for f in &filters {
        let o = stats
            .overview(&w, &prev, f, Interval::Day, &PANELS, 10)
            .unwrap();
        let k = &o.kpis;
        assert_eq!((k.visitors, k.pageviews, k.events), (4, 4, 0), "{f:?}");
        assert_eq!((k.sessions, k.bounces, k.bounce_rate), (4, 4, 1.0), "{f:?}");
        assert_eq!(k.avg_duration_s, 0.0);
        let events = &o
            .breakdowns
            .iter()
            .find(|(d, _)| *d == Dim::Event)
            .unwrap()
            .1;
        assert!(events.is_empty(), "events panel: {events:?}");
        // (95 + 25) s over the 2 read pageviews; (100 + 40) % over 2.
        assert_eq!(k.engagement, sums(120_000, 2, 140, 2));
        assert_eq!(k.engagement.time_on_page_s(), Some(60.0));
        assert_eq!(k.engagement.scroll_depth(), Some(70.0));
        let goals = stats
            .goal_stats(&w, f, std::slice::from_ref(&goal))
            .unwrap();
        assert_eq!((goals[0].visitors, goals[0].conversions), (0, 0));
    }
    assert_eq!(
        stats.breakdown(&w, &[], Dim::Event, 10).unwrap(),
        Vec::new()
    );
    assert_eq!(stats.event_count(&w, &[]).unwrap(), 0);
}

/// Time on page and scroll depth per page and overall.
///
/// - visitor 1 views `/a` at 10:00 and reports 20 s (40 %) at 10:01 and
///   10 s (80 %) at 10:03: one pageview, 30 s, deepest 80 %;
/// - visitor 2 views `/a` at 10:00 and reports 60 s (20 %): 60 s, 20 %;
/// - visitor 1 views `/b` at 10:05 and reports 12 s, no scroll depth;
/// - visitor 1 views `/a` again at 10:10 and reports 6 s (100 %) at 10:11,
///   which belongs to that later pageview, not to the first;
/// - visitor 3 views `/b` and reports nothing: not a read pageview.
///
/// `/a`: (30 + 60 + 6) / 3 = 32 s, (80 + 20 + 100) / 3 = 66.7 %.
/// `/b`: 12 s, no scroll depth. Overall: 108 s / 4 = 27 s, 200 / 3 %.
/// Country DE (visitor 2 only): 60 s, 20 %.
#[test]
fn time_on_page_and_scroll_depth_per_page_and_overall() {
    let mut fx = Fixture::new();
    let mut v2 = pv(2, "2026-01-10T10:00:00Z", "/a");
    v2.country = "DE".into();
    fx.batch(
        &[
            pv(1, "2026-01-10T10:00:00Z", "/a"),
            v2,
            pv(3, "2026-01-10T10:00:00Z", "/b"),
        ],
        &[eng(1, "2026-01-10T10:01:00Z", "/a", 20_000, Some(40))],
    );
    // Later batches: the pageviews are found in the table.
    fx.batch(
        &[pv(1, "2026-01-10T10:05:00Z", "/b")],
        &[
            eng(1, "2026-01-10T10:03:00Z", "/a", 10_000, Some(80)),
            eng(2, "2026-01-10T10:04:00Z", "/a", 60_000, Some(20)),
            eng(1, "2026-01-10T10:06:00Z", "/b", 12_000, None),
        ],
    );
    fx.batch(
        &[pv(1, "2026-01-10T10:10:00Z", "/a")],
        &[eng(1, "2026-01-10T10:11:00Z", "/a", 6_000, Some(100))],
    );
    // Each engagement belongs to its pageview (ids: hits 1, 2, 3, 5, 9).
    let pairs: Vec<(u64, u64)> = fx
        .store
        .conn
        .prepare("SELECT id, hit_id FROM engagements ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(pairs, [(4, 1), (6, 1), (7, 2), (8, 5), (10, 9)]);
    let stats = fx.store.stats().unwrap();
    let (w, prev) = (fx.window(), fx.prev());
    let o = stats
        .overview(&w, &prev, &[], Interval::Day, &[Dim::Page], 10)
        .unwrap();
    assert_eq!(o.kpis.engagement, sums(108_000, 4, 200, 3));
    assert_eq!(o.kpis.engagement.time_on_page_s(), Some(27.0));
    assert_eq!(o.previous.engagement, EngagementSums::default());
    assert_eq!(o.previous.engagement.time_on_page_s(), None);
    let pages = &o.breakdowns[0].1;
    let of = |p: &str| {
        pages
            .iter()
            .find(|r| r.value.as_deref() == Some(p))
            .unwrap()
            .engagement
    };
    assert_eq!(of("/a"), Some(sums(96_000, 3, 200, 3)));
    assert_eq!(of("/a").unwrap().time_on_page_s(), Some(32.0));
    assert_eq!(of("/b"), Some(sums(12_000, 1, 0, 0)));
    assert_eq!(of("/b").unwrap().scroll_depth(), None);
    // The page breakdown on its own says the same.
    let rows = stats.breakdown(&w, &[], Dim::Page, 10).unwrap();
    assert_eq!(rows, *pages);
    // Filters select pageviews, and their engagement with them.
    let de = [Filter::dim(Dim::Country, Op::Is, "DE")];
    let k = stats.kpis(&w, &de).unwrap();
    assert_eq!(k.engagement, sums(60_000, 1, 20, 1));
    let b = [Filter::dim(Dim::Page, Op::Is, "/b")];
    assert_eq!(
        stats.kpis(&w, &b).unwrap().engagement,
        sums(12_000, 1, 0, 0)
    );
    // Engagement is not a hit: counts are the pageviews'.
    assert_eq!((o.kpis.pageviews, o.kpis.events), (5, 0));
}

/// The documented rule for engagements without a pageview: the latest
/// pageview of the same site, visitor and path at or before it, on the same
/// UTC day; none, and it is not stored (and counted as unattributed).
#[test]
fn engagements_without_their_pageview_are_not_stored() {
    let mut fx = Fixture::new();
    fx.batch(&[pv(1, "2026-01-10T23:50:00Z", "/a")], &[]);
    let st = fx.batch(
        &[],
        &[
            // Another path, another visitor, before the pageview, next UTC day.
            eng(1, "2026-01-10T23:55:00Z", "/b", 1_000, Some(10)),
            eng(2, "2026-01-10T23:55:00Z", "/a", 1_000, Some(10)),
            eng(1, "2026-01-10T23:49:59Z", "/a", 1_000, Some(10)),
            eng(1, "2026-01-11T00:00:01Z", "/a", 1_000, Some(10)),
            // A site that is gone.
            Engagement {
                site: "gone.example".into(),
                ..eng(1, "2026-01-10T23:55:00Z", "/a", 1_000, Some(10))
            },
        ],
    );
    assert_eq!(
        (st.engagements, st.unattributed, st.unknown_site),
        (0, 4, 1)
    );
    assert_eq!(fx.stored(), 0);
    // The committed position moved past them all the same.
    assert_eq!(fx.store.committed_seq().unwrap(), fx.next - 1);
    // Its own pageview, sent later in the same second, is found.
    let st = fx.batch(
        &[],
        &[eng(1, "2026-01-10T23:50:00Z", "/a", 5_000, Some(50))],
    );
    assert_eq!((st.engagements, st.unattributed), (1, 0));
}

/// Migration 4 removes what older versions stored for engagements: custom
/// events named `engagement` (and their properties), and nothing else.
#[test]
fn migration_removes_engagements_stored_as_events() {
    let mut fx = Fixture::new();
    let old = |v, t| Hit {
        kind: hitvault_core::Kind::Event,
        name: "engagement".into(),
        props: vec![("k".into(), "v".into())],
        ..pv(v, t, "/post")
    };
    let signup = Hit {
        kind: hitvault_core::Kind::Event,
        name: "signup".into(),
        ..pv(1, "2026-01-10T10:03:00Z", "/post")
    };
    fx.batch(
        &[
            pv(1, "2026-01-10T10:00:00Z", "/post"),
            old(1, "2026-01-10T10:02:00Z"),
            signup,
            old(2, "2026-01-10T10:04:00Z"),
        ],
        &[],
    );
    let sql = crate::MIGRATIONS.iter().find(|m| m.0 == 4).unwrap().2;
    // Its statements after the table (already created by opening the store).
    let deletes: Vec<&str> = sql.lines().filter(|l| l.starts_with("DELETE")).collect();
    assert_eq!(deletes.len(), 2);
    fx.store.conn.execute_batch(&deletes.join("\n")).unwrap();
    let names = fx
        .store
        .query_text("SELECT name FROM hits ORDER BY id")
        .unwrap();
    assert_eq!(
        names,
        vec![vec![Some("pageview".into())], vec![Some("signup".into())]]
    );
    let props = fx
        .store
        .query_text("SELECT count(*) FROM hit_props")
        .unwrap();
    assert_eq!(props, vec![vec![Some("0".into())]]);
}

/// Every batch of an export of the whole store, with its table.
fn export_all(s: &Store) -> Vec<(&'static str, crate::RecordBatch)> {
    let mut out = Vec::new();
    s.reader()
        .unwrap()
        .export(&crate::ExportFilter::default(), &mut |t, b| {
            out.push((t, b));
            Ok(())
        })
        .unwrap();
    out
}

fn import(
    s: &mut Store,
    batches: &[(&'static str, crate::RecordBatch)],
) -> Result<crate::ImportStats, crate::TakeoutError> {
    let mut imp = s.begin_import()?;
    for (t, b) in batches {
        imp.append(t, b.clone())?;
    }
    imp.commit()
}

/// The engagement of a day of `site_id` (2026-01-10): overall and per
/// page, from the overview.
fn engagement_of(s: &Store, site_id: u16) -> (EngagementSums, Vec<(String, EngagementSums)>) {
    let w = Window {
        site_id,
        from: "2026-01-10T00:00:00Z".parse().unwrap(),
        to: "2026-01-11T00:00:00Z".parse().unwrap(),
        tz: TimeZone::UTC,
    };
    let prev = Window {
        from: "2026-01-09T00:00:00Z".parse().unwrap(),
        to: "2026-01-10T00:00:00Z".parse().unwrap(),
        ..w.clone()
    };
    let o = s
        .stats()
        .unwrap()
        .overview(&w, &prev, &[], Interval::Day, &[Dim::Page], 10)
        .unwrap();
    let mut pages: Vec<(String, EngagementSums)> = o.breakdowns[0]
        .1
        .iter()
        .filter_map(|r| Some((r.value.clone()?, r.engagement?)))
        .collect();
    pages.sort_by(|a, b| a.0.cmp(&b.0));
    (o.kpis.engagement, pages)
}

/// The day of `time_on_page_and_scroll_depth_per_page_and_overall`, in
/// one batch: `/a` 96 s over 3 pageviews (200 % over 3), `/b` 12 s, no
/// scroll depth; 108 s over 4 overall.
fn read_day(fx: &mut Fixture) {
    fx.batch(
        &[
            pv(1, "2026-01-10T10:00:00Z", "/a"),
            pv(2, "2026-01-10T10:00:00Z", "/a"),
            pv(3, "2026-01-10T10:00:00Z", "/b"),
            pv(1, "2026-01-10T10:05:00Z", "/b"),
            pv(1, "2026-01-10T10:10:00Z", "/a"),
        ],
        &[
            eng(1, "2026-01-10T10:01:00Z", "/a", 20_000, Some(40)),
            eng(1, "2026-01-10T10:03:00Z", "/a", 10_000, Some(80)),
            eng(2, "2026-01-10T10:04:00Z", "/a", 60_000, Some(20)),
            eng(1, "2026-01-10T10:06:00Z", "/b", 12_000, None),
            eng(1, "2026-01-10T10:11:00Z", "/a", 6_000, Some(100)),
        ],
    );
}

/// A Takeout of a store, imported into an empty one, gives the same time
/// on page and scroll depth per page and overall; imported again, it adds
/// nothing.
#[test]
fn a_takeout_round_trip_keeps_time_on_page_and_scroll_depth() {
    let mut a = Fixture::new();
    read_day(&mut a);
    let before = engagement_of(&a.store, a.site_id);
    assert_eq!(before.0, sums(108_000, 4, 200, 3));
    assert_eq!(
        before.1,
        [
            ("/a".to_owned(), sums(96_000, 3, 200, 3)),
            ("/b".to_owned(), sums(12_000, 1, 0, 0)),
        ]
    );
    let batches = export_all(&a.store);
    let exported: usize = batches
        .iter()
        .filter(|(t, _)| *t == "engagements")
        .map(|(_, b)| b.num_rows())
        .sum();
    assert_eq!(exported, 5);

    let dir = tempfile::tempdir().unwrap();
    let mut b = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    let st = import(&mut b, &batches).unwrap();
    assert_eq!((st.hits_added, st.engagements_added), (5, 5));
    let site = b.sites().unwrap()[0].id;
    assert_eq!(engagement_of(&b, site), before);
    // Each engagement is stored as it was: id, pageview, time, path, numbers.
    let rows = |s: &Store| {
        s.query_text(
            "SELECT id, hit_id, ts, path, engaged_ms, scroll_depth FROM engagements ORDER BY id",
        )
        .unwrap()
    };
    assert_eq!(rows(&b), rows(&a.store));
    let again = import(&mut b, &batches).unwrap();
    assert_eq!(
        (
            again.hits_added,
            again.engagements_added,
            again.engagements_present
        ),
        (0, 0, 5)
    );
    assert_eq!(engagement_of(&b, site), before);
}

/// Import into an instance that holds hits of its own under the same ids:
/// the imported pageviews get new ids and their engagements follow them. A
/// later Takeout of the same source, with engagements that arrived since,
/// adds those and only those: nothing lost, nothing counted twice, and the
/// instance's own engagement unchanged.
#[test]
fn merged_engagements_follow_renumbered_pageviews_and_are_not_counted_twice() {
    let mut a = Fixture::new();
    read_day(&mut a);
    let first = export_all(&a.store);
    // Later: another read of visitor 2's `/a` and visitor 3's `/b`.
    a.batch(
        &[],
        &[
            eng(2, "2026-01-10T10:20:00Z", "/a", 30_000, Some(90)),
            eng(3, "2026-01-10T10:20:00Z", "/b", 8_000, Some(10)),
        ],
    );
    let second = export_all(&a.store);
    let source = engagement_of(&a.store, a.site_id);
    // Visitor 2's `/a` now 90 s, deepest 90 %; visitor 3's `/b` 8 s, 10 %:
    // 30 + 90 + 8 + 12 + 6 s over 5 pageviews, 80 + 90 + 10 + 100 % over 4.
    assert_eq!(source.0, sums(146_000, 5, 280, 4));

    // The other instance: its own site and hits numbered 1.. too.
    let dir = tempfile::tempdir().unwrap();
    let mut b = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    b.upsert_site("b.example", &[], "config").unwrap();
    let own: Vec<Hit> = (0..7)
        .map(|i| Hit {
            visitor: 9,
            ..crate::tests::hit("b.example", ms("2026-01-10T09:00:00Z") + i, "/own")
        })
        .collect();
    let own_refs: Vec<(u64, HitRef<'_>)> = own
        .iter()
        .enumerate()
        .map(|(i, h)| (i as u64 + 1, h.as_ref()))
        .collect();
    let own_eng = Engagement {
        site: "b.example".into(),
        ..eng(9, "2026-01-10T09:30:00Z", "/own", 4_000, Some(60))
    };
    let st = b
        .append_batch(&own_refs, &[(8, own_eng.as_ref())], 8)
        .unwrap();
    assert_eq!(st.engagements, 1);
    let b_site = |b: &Store, host: &str| {
        b.sites()
            .unwrap()
            .into_iter()
            .find(|s| s.hostname == host)
            .unwrap()
            .id
    };
    let own_before = engagement_of(&b, b_site(&b, "b.example"));
    assert_eq!(own_before.0, sums(4_000, 1, 60, 1));

    let st = import(&mut b, &first).unwrap();
    assert_eq!((st.hits_renumbered, st.engagements_added), (5, 5));
    let st = import(&mut b, &second).unwrap();
    assert_eq!(
        (st.hits_added, st.engagements_added, st.engagements_present),
        (0, 2, 5)
    );
    assert_eq!(engagement_of(&b, b_site(&b, "a.example")), source);
    assert_eq!(engagement_of(&b, b_site(&b, "b.example")), own_before);
    // Each imported engagement belongs to an a.example pageview of its path.
    let wrong = b
        .query_text(
            "SELECT count(*) FROM engagements e JOIN hits h ON h.id = e.hit_id \
             WHERE h.site_id <> e.site_id OR h.path <> e.path OR h.ts <> e.ts OR h.kind <> 0",
        )
        .unwrap();
    assert_eq!(wrong, vec![vec![Some("0".into())]]);
    // The second Takeout on its own, into a third instance, says the same.
    let dir = tempfile::tempdir().unwrap();
    let mut c = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    import(&mut c, &second).unwrap();
    assert_eq!(engagement_of(&c, c.sites().unwrap()[0].id), source);
}

/// An engagement must name a pageview of the same Takeout; anything else
/// is refused, naming the engagement, and nothing is imported.
#[test]
fn engagements_of_missing_hits_or_of_events_are_refused() {
    use duckdb::arrow::array::{ArrayRef, UInt16Array, UInt64Array};
    use std::sync::Arc;
    let mut a = Fixture::new();
    let signup = Hit {
        kind: hitvault_core::Kind::Event,
        name: "signup".into(),
        ..pv(1, "2026-01-10T10:00:30Z", "/a")
    };
    a.batch(&[pv(1, "2026-01-10T10:00:00Z", "/a"), signup], &[]);
    let base = export_all(&a.store);
    let one = |id: u64, hit: u64| {
        let cols: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from(vec![id])),
            Arc::new(UInt64Array::from(vec![hit])),
            Arc::new(UInt64Array::from(vec![1_000u64])),
            Arc::new(UInt16Array::from(vec![Some(50u16)])),
        ];
        let b = crate::RecordBatch::try_from_iter(
            ["id", "hit_id", "engaged_ms", "scroll_depth"]
                .into_iter()
                .zip(cols),
        )
        .unwrap();
        let mut all = base.clone();
        all.push(("engagements", b));
        all
    };
    let dir = tempfile::tempdir().unwrap();
    let mut b = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    for (batches, why) in [
        (
            one(10, 7),
            "engagements: id 10 names hit 7, which is not in the hits file",
        ),
        (
            one(10, 2),
            "engagements: id 10 names hit 2, which is an event, not a pageview",
        ),
    ] {
        let e = import(&mut b, &batches).unwrap_err();
        assert!(e.to_string().contains(why), "{e}");
        assert_eq!(
            b.query_text("SELECT count(*) FROM hits").unwrap(),
            vec![vec![Some("0".into())]]
        );
    }
    let st = import(&mut b, &one(10, 1)).unwrap();
    assert_eq!((st.hits_added, st.engagements_added), (2, 1));
}
