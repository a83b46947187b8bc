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
