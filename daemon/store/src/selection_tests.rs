//! Filtered numbers checked against a second implementation: a model in
//! plain Rust of the rules the SQL follows (a visitor is an id within one UTC
//! day, a session ends after 30 minutes without a hit, `sel` is the matching
//! hits of the sessions that pass the session filters). The fixture is
//! generated, with gaps of exactly 30 and 31 minutes, hits on both sides of
//! the window and of UTC midnight, empty values, events and properties, so
//! that every shortcut the SQL takes for filtered queries (grouping only the
//! sessions with a matching hit, skipping sessions for numbers about hits)
//! and the session numbers the writer stored are held to what the rules say.

use std::collections::{BTreeMap, BTreeSet};

use hitvault_core::{Hit, Kind};
use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::goals::{Goal, GoalKind, Step};
use crate::stats::{Dim, Filter, Interval, Kpis, Op, Window};
use crate::{Store, StoreOptions};

const SITE: &str = "model.example";
const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;
/// 2026-03-01T00:00:00Z, the start of the window.
const DAY0_MS: i64 = 1_772_323_200_000;

/// A small deterministic generator (64-bit LCG, high bits).
pub(crate) struct Lcg(pub(crate) u64);

impl Lcg {
    pub(crate) fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }

    fn pick<'a>(&mut self, of: &[&'a str]) -> &'a str {
        of[self.next(of.len() as u64) as usize]
    }
}

/// Visitors over five UTC days (the window's three and one on each side),
/// each with a run of hits whose gaps straddle the session rule.
fn fixture() -> Vec<Hit> {
    let mut r = Lcg(7);
    let mut hits = Vec::new();
    for visitor in 1..=60u64 {
        for run in 0..4 {
            let day = r.next(5) as i64 - 1;
            // Late starts run over UTC midnight. Each run of a visitor has
            // its own second within the minute, so no two hits of a visitor
            // share a time (the first pageview of a session is then one).
            let mut t = DAY0_MS + day * DAY_MS + r.next(24 * 60) as i64 * MINUTE_MS + run * 1000;
            let country = r.pick(&["DE", "FR", "US", ""]);
            let browser = r.pick(&["Firefox", "Chrome"]);
            for _ in 0..1 + r.next(8) {
                let path = r.pick(&["/", "/pricing", "/docs/a", "/docs/b", "/blog"]);
                let mut h = Hit {
                    visitor,
                    country: country.into(),
                    browser: browser.into(),
                    ..crate::tests::hit(SITE, t, path)
                };
                match r.next(4) {
                    0 => {
                        h.kind = Kind::Event;
                        h.name = r.pick(&["signup", "download", "play"]).into();
                        let plan = r.pick(&["pro", "free", "Pro+", ""]);
                        if !plan.is_empty() {
                            h.props.push(("plan".into(), plan.into()));
                        }
                        if r.next(2) == 0 {
                            h.props.push(("size".into(), r.pick(&["s", "m"]).into()));
                        }
                        h.props.sort();
                    }
                    1 if r.next(3) == 0 => h.props.push(("author".into(), "ann".into())),
                    _ => {}
                }
                hits.push(h);
                // Whole minutes, so a gap of 30 is exactly the limit.
                t += MINUTE_MS * [1, 5, 29, 30, 31, 45, 120][r.next(7) as usize];
            }
        }
    }
    hits
}

fn store_with(hits: &[Hit]) -> (tempfile::TempDir, Store, u16) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    s.upsert_site(SITE, &[], "config").unwrap();
    let batch: Vec<(u64, Hit)> = hits
        .iter()
        .enumerate()
        .map(|(i, h)| (i as u64 + 1, h.clone()))
        .collect();
    s.append(&batch, hits.len() as u64).unwrap();
    let id = s.sites().unwrap()[0].id;
    (dir, s, id)
}

fn window(site_id: u16, from_day: i64, to_day: i64) -> Window {
    let at = |d: i64| Timestamp::from_millisecond(DAY0_MS + d * DAY_MS).unwrap();
    Window {
        site_id,
        from: at(from_day),
        to: at(to_day),
        tz: TimeZone::get("Europe/Berlin").unwrap(),
    }
}

/// A visitor: its id and UTC day number.
type Key = (u64, i64);

/// Per value: the visitors seen with it and a count.
type Tally<V> = BTreeMap<V, (BTreeSet<Key>, u64)>;

/// A session as the rules define it.
struct Session {
    key: Key,
    /// Indexes into the fixture, in time order.
    hits: Vec<usize>,
    entry: Option<String>,
    exit: Option<String>,
}

/// What the filters select in a window, worked out hit by hit.
struct Model<'a> {
    hits: &'a [Hit],
    sel: Vec<usize>,
    sessions: Vec<Session>,
    /// Indexes into `sessions` of the selected sessions.
    sess_sel: Vec<usize>,
}

fn text(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn dim_value(h: &Hit, d: Dim) -> Option<&str> {
    match d {
        Dim::Page => text(&h.path),
        Dim::Country => text(&h.country),
        Dim::Browser => text(&h.browser),
        Dim::Event => (h.kind == Kind::Event).then_some(h.name.as_str()),
        other => panic!("the model has no rule for {other:?}"),
    }
}

/// The rule of one filter on a value (None: no value, stored as NULL).
fn matches(op: Op, want: &str, v: Option<&str>) -> bool {
    match (op, want.is_empty()) {
        (Op::Is, true) => v.is_none(),
        (Op::IsNot, true) => v.is_some(),
        (Op::Is, false) => v == Some(want),
        (Op::IsNot, false) => v != Some(want),
        (Op::Contains, _) => v.is_some_and(|v| v.to_lowercase().contains(&want.to_lowercase())),
    }
}

fn prop_matches(h: &Hit, key: &str, op: Op, want: &str) -> bool {
    let vals = || h.props.iter().filter(|(k, _)| k == key).map(|(_, v)| v);
    match (op, want.is_empty()) {
        (Op::Is, true) => !vals().any(|v| !v.is_empty()),
        (Op::IsNot, true) => vals().any(|v| !v.is_empty()),
        (Op::Is, false) => vals().any(|v| v == want),
        (Op::IsNot, false) => !vals().any(|v| v == want),
        (Op::Contains, _) => vals().any(|v| v.to_lowercase().contains(&want.to_lowercase())),
    }
}

impl<'a> Model<'a> {
    fn new(hits: &'a [Hit], w: &Window, filters: &[Filter]) -> Model<'a> {
        let (from, to) = (w.from.as_millisecond(), w.to.as_millisecond());
        let mut by_key: BTreeMap<Key, Vec<usize>> = BTreeMap::new();
        for (i, h) in hits.iter().enumerate() {
            if h.ts_ms >= from && h.ts_ms < to {
                let day = h.ts_ms.div_euclid(DAY_MS);
                by_key.entry((h.visitor, day)).or_default().push(i);
            }
        }
        let mut sessions = Vec::new();
        for (_, mut idx) in by_key {
            idx.sort_by_key(|&i| (hits[i].ts_ms, i));
            let mut cur: Vec<usize> = Vec::new();
            for i in idx {
                if let Some(&last) = cur.last()
                    && hits[i].ts_ms - hits[last].ts_ms > 30 * MINUTE_MS
                {
                    sessions.push(std::mem::take(&mut cur));
                }
                cur.push(i);
            }
            sessions.push(cur);
        }
        let sessions: Vec<Session> = sessions
            .into_iter()
            .map(|s| {
                let pages: Vec<&str> = s
                    .iter()
                    .filter(|&&i| hits[i].kind == Kind::Pageview)
                    .map(|&i| hits[i].path.as_str())
                    .collect();
                let h = &hits[s[0]];
                Session {
                    key: (h.visitor, h.ts_ms.div_euclid(DAY_MS)),
                    entry: pages.first().map(|p| p.to_string()),
                    exit: pages.last().map(|p| p.to_string()),
                    hits: s,
                }
            })
            .collect();
        let sess_ok = |s: &Session| {
            filters.iter().all(|f| match &f.field {
                crate::stats::Field::Dim(Dim::EntryPage) => {
                    matches(f.op, &f.value, s.entry.as_deref())
                }
                crate::stats::Field::Dim(Dim::ExitPage) => {
                    matches(f.op, &f.value, s.exit.as_deref())
                }
                _ => true,
            })
        };
        let hit_ok = |h: &Hit| {
            filters.iter().all(|f| match &f.field {
                crate::stats::Field::Dim(d) if d.is_session() => true,
                crate::stats::Field::Dim(d) => matches(f.op, &f.value, dim_value(h, *d)),
                crate::stats::Field::Prop(k) => prop_matches(h, k, f.op, &f.value),
            })
        };
        let (mut sel, mut sess_sel) = (Vec::new(), Vec::new());
        for (n, s) in sessions.iter().enumerate() {
            if !sess_ok(s) {
                continue;
            }
            let before = sel.len();
            sel.extend(s.hits.iter().copied().filter(|&i| hit_ok(&hits[i])));
            if sel.len() > before {
                sess_sel.push(n);
            }
        }
        Model {
            hits,
            sel,
            sessions,
            sess_sel,
        }
    }

    fn visitors_of(&self, idx: impl Iterator<Item = usize>) -> u64 {
        idx.map(|i| (self.hits[i].visitor, self.hits[i].ts_ms.div_euclid(DAY_MS)))
            .collect::<BTreeSet<_>>()
            .len() as u64
    }

    fn kpis(&self) -> Kpis {
        let kind = |k: Kind| self.sel.iter().filter(|&&i| self.hits[i].kind == k).count() as u64;
        let (mut bounces, mut pv, mut dur_ms) = (0u64, 0u64, 0i64);
        for &n in &self.sess_sel {
            let s = &self.sessions[n].hits;
            let p = s
                .iter()
                .filter(|&&i| self.hits[i].kind == Kind::Pageview)
                .count() as u64;
            if p == 1 && p == s.len() as u64 {
                bounces += 1;
            }
            pv += p;
            dur_ms += self.hits[*s.last().unwrap()].ts_ms - self.hits[s[0]].ts_ms;
        }
        let sessions = self.sess_sel.len() as u64;
        let per = |x: f64| {
            if sessions == 0 {
                0.0
            } else {
                x / sessions as f64
            }
        };
        Kpis {
            visitors: self.visitors_of(self.sel.iter().copied()),
            pageviews: kind(Kind::Pageview),
            events: kind(Kind::Event),
            sessions,
            bounces,
            bounce_rate: per(bounces as f64),
            avg_duration_s: per(dur_ms as f64 / 1000.0),
            views_per_visit: per(pv as f64),
            engagement: Default::default(),
        }
    }

    /// Value -> (visitors, pageviews) of a hit dimension; for event names,
    /// (visitors, events) over the custom events.
    fn breakdown(&self, d: Dim) -> BTreeMap<Option<String>, (u64, u64)> {
        let mut per: Tally<Option<String>> = BTreeMap::new();
        for &i in &self.sel {
            let h = &self.hits[i];
            if d == Dim::Event && h.kind != Kind::Event {
                continue;
            }
            let e = per.entry(dim_value(h, d).map(str::to_owned)).or_default();
            e.0.insert((h.visitor, h.ts_ms.div_euclid(DAY_MS)));
            e.1 += u64::from(d == Dim::Event || h.kind == Kind::Pageview);
        }
        per.into_iter()
            .map(|(v, (vis, c))| (v, (vis.len() as u64, c)))
            .collect()
    }

    /// Entry page -> (visitors, sessions).
    fn entries(&self) -> BTreeMap<Option<String>, (u64, u64)> {
        let mut per: Tally<Option<String>> = BTreeMap::new();
        for &n in &self.sess_sel {
            let s = &self.sessions[n];
            let e = per.entry(s.entry.clone()).or_default();
            e.0.insert(s.key);
            e.1 += 1;
        }
        per.into_iter()
            .map(|(v, (vis, c))| (v, (vis.len() as u64, c)))
            .collect()
    }

    /// Property key -> (visitors, events) over the selected custom events.
    fn prop_keys(&self) -> BTreeMap<String, (u64, u64)> {
        let mut per: Tally<String> = BTreeMap::new();
        for &i in &self.sel {
            let h = &self.hits[i];
            if h.kind != Kind::Event {
                continue;
            }
            for (k, _) in &h.props {
                let e = per.entry(k.clone()).or_default();
                e.0.insert((h.visitor, h.ts_ms.div_euclid(DAY_MS)));
                e.1 += 1;
            }
        }
        per.into_iter()
            .map(|(v, (vis, c))| (v, (vis.len() as u64, c)))
            .collect()
    }

    /// (visitors, conversions, conversion rate) of each goal.
    fn goals(&self, goals: &[Goal]) -> Vec<(u64, u64, f64)> {
        let all = self.visitors_of(self.sel.iter().copied());
        goals
            .iter()
            .map(|g| {
                let hit: Vec<usize> = self
                    .sel
                    .iter()
                    .copied()
                    .filter(|&i| {
                        let h = &self.hits[i];
                        match g.step.kind {
                            GoalKind::Event => h.kind == Kind::Event && h.name == g.step.value,
                            GoalKind::Page => {
                                h.kind == Kind::Pageview
                                    && h.path.starts_with(g.step.value.trim_end_matches('*'))
                            }
                        }
                    })
                    .collect();
                let v = self.visitors_of(hit.iter().copied());
                let rate = if all == 0 { 0.0 } else { v as f64 / all as f64 };
                (v, hit.len() as u64, rate)
            })
            .collect()
    }

    /// (visitors, sessions) that reached each step, in order within a session.
    fn funnel(&self, steps: &[Step]) -> Vec<(u64, u64)> {
        let reached = |h: &Hit, s: &Step| match s.kind {
            GoalKind::Event => h.kind == Kind::Event && h.name == s.value,
            GoalKind::Page => h.kind == Kind::Pageview && h.path == s.value,
        };
        let mut out = vec![(BTreeSet::new(), 0u64); steps.len()];
        for &n in &self.sess_sel {
            let s = &self.sessions[n];
            let mut at = 0;
            for (k, step) in steps.iter().enumerate() {
                match s.hits[at..]
                    .iter()
                    .position(|&i| reached(&self.hits[i], step))
                {
                    Some(p) => {
                        at += p + 1;
                        out[k].0.insert(s.key);
                        out[k].1 += 1;
                    }
                    None => break,
                }
            }
        }
        out.into_iter().map(|(v, s)| (v.len() as u64, s)).collect()
    }
}

fn same_kpis(got: &Kpis, want: &Kpis, what: &str) {
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    assert_eq!(
        (
            got.visitors,
            got.pageviews,
            got.events,
            got.sessions,
            got.bounces
        ),
        (
            want.visitors,
            want.pageviews,
            want.events,
            want.sessions,
            want.bounces
        ),
        "{what}: counts"
    );
    assert!(
        close(got.bounce_rate, want.bounce_rate)
            && close(got.avg_duration_s, want.avg_duration_s)
            && close(got.views_per_visit, want.views_per_visit),
        "{what}: ratios {got:?} against {want:?}"
    );
}

fn f(dim: Dim, op: Op, value: &str) -> Filter {
    Filter::dim(dim, op, value)
}

fn p(key: &str, op: Op, value: &str) -> Filter {
    Filter::prop(key, op, value)
}

#[test]
fn filtered_numbers_follow_the_rules_hit_by_hit() {
    let hits = fixture();
    let (_dir, s, id) = store_with(&hits);
    let st = s.stats().unwrap();
    let (w, prev) = (window(id, 0, 3), window(id, -1, 0));
    let filter_sets: Vec<Vec<Filter>> = vec![
        vec![f(Dim::Country, Op::Is, "DE")],
        vec![f(Dim::Country, Op::IsNot, "DE")],
        vec![f(Dim::Country, Op::Is, "")],
        vec![f(Dim::Country, Op::IsNot, "")],
        vec![f(Dim::Page, Op::Contains, "DOCS")],
        vec![f(Dim::Page, Op::IsNot, "/")],
        vec![f(Dim::Event, Op::Is, "signup")],
        vec![f(Dim::EntryPage, Op::Is, "/")],
        vec![f(Dim::ExitPage, Op::IsNot, "/blog")],
        vec![f(Dim::EntryPage, Op::Is, "")],
        vec![
            f(Dim::EntryPage, Op::Is, "/"),
            f(Dim::Country, Op::Is, "FR"),
        ],
        vec![
            f(Dim::Browser, Op::Is, "Chrome"),
            f(Dim::Page, Op::Is, "/pricing"),
            f(Dim::ExitPage, Op::Contains, "pric"),
        ],
        vec![p("plan", Op::Is, "pro")],
        vec![p("plan", Op::IsNot, "pro")],
        vec![p("plan", Op::Is, "")],
        vec![p("plan", Op::IsNot, "")],
        vec![
            p("plan", Op::Contains, "PRO"),
            f(Dim::Country, Op::IsNot, "US"),
        ],
        vec![
            p("author", Op::Is, "ann"),
            f(Dim::EntryPage, Op::IsNot, "/blog"),
        ],
    ];
    let goal = |n: u32, kind: GoalKind, value: &str| Goal {
        id: n,
        site_id: id,
        step: Step {
            kind,
            value: value.into(),
        },
        display_name: value.into(),
    };
    let goals = [
        goal(1, GoalKind::Event, "signup"),
        goal(2, GoalKind::Page, "/docs/*"),
    ];
    let funnel = [
        Step {
            kind: GoalKind::Page,
            value: "/".into(),
        },
        Step {
            kind: GoalKind::Page,
            value: "/pricing".into(),
        },
        Step {
            kind: GoalKind::Event,
            value: "signup".into(),
        },
    ];
    let all_visitors = Model::new(&hits, &w, &[]).kpis().visitors;
    let mut nonzero = 0;
    for filters in &filter_sets {
        let what = format!("{filters:?}");
        let model = Model::new(&hits, &w, filters);
        let want = model.kpis();
        nonzero += usize::from(want.visitors > 0 && want.visitors < all_visitors);
        same_kpis(&st.kpis(&w, filters).unwrap(), &want, &what);
        assert_eq!(st.event_count(&w, filters).unwrap(), want.events, "{what}");
        for d in [Dim::Page, Dim::Country, Dim::Event] {
            let got: BTreeMap<Option<String>, (u64, u64)> = st
                .breakdown(&w, filters, d, 1000)
                .unwrap()
                .into_iter()
                .map(|r| (r.value, (r.visitors, r.count)))
                .collect();
            assert_eq!(got, model.breakdown(d), "{what}: {d:?} breakdown alone");
        }
        let o = st
            .overview(
                &w,
                &prev,
                filters,
                Interval::Day,
                &[Dim::Page, Dim::EntryPage, Dim::Country],
                1000,
            )
            .unwrap();
        same_kpis(&o.kpis, &want, &format!("{what} overview"));
        same_kpis(
            &o.previous,
            &Model::new(&hits, &prev, filters).kpis(),
            &format!("{what} comparison"),
        );
        for (d, rows) in &o.breakdowns {
            let want = if *d == Dim::EntryPage {
                model.entries()
            } else {
                model.breakdown(*d)
            };
            let got: BTreeMap<Option<String>, (u64, u64)> = rows
                .iter()
                .map(|r| (r.value.clone(), (r.visitors, r.count)))
                .collect();
            assert_eq!(got, want, "{what}: {d:?} breakdown");
        }
        let series_sessions: u64 = o.series.iter().map(|p| p.sessions).sum();
        assert_eq!(series_sessions, want.sessions, "{what}: series sessions");
        let got: BTreeMap<String, (u64, u64)> = st
            .props(&w, filters, None, None, 1000)
            .unwrap()
            .into_iter()
            .map(|r| (r.value, (r.visitors, r.events)))
            .collect();
        assert_eq!(got, model.prop_keys(), "{what}: property keys");
        let got: Vec<(u64, u64)> = st
            .funnel_stats(&w, filters, &funnel)
            .unwrap()
            .iter()
            .map(|r| (r.visitors, r.sessions))
            .collect();
        assert_eq!(got, model.funnel(&funnel), "{what}: funnel");
        let got: Vec<(u64, u64, f64)> = st
            .goal_stats(&w, filters, &goals)
            .unwrap()
            .iter()
            .map(|r| (r.visitors, r.conversions, r.conversion_rate))
            .collect();
        assert_eq!(got, model.goals(&goals), "{what}: goals");
    }
    // The filters are not vacuous: most select some visitors but not all.
    assert!(
        nonzero >= filter_sets.len() - 2,
        "{nonzero} filters select a part"
    );
}

/// The overview answers panels of dimensions a visitor mostly keeps from
/// one row per visitor, bucket and combination of values, and only the
/// visitors with several such rows by (value, visitor). The fixture's
/// visitors change country and browser between runs, often within a day
/// and an hour: every panel, the chart and the KPIs are held to the model,
/// by day and by hour, with and without filters.
#[test]
fn overview_panels_per_visitor_follow_the_rules() {
    let hits = fixture();
    let (_dir, s, id) = store_with(&hits);
    let st = s.stats().unwrap();
    let (w, prev) = (window(id, 0, 3), window(id, -1, 0));
    let panels = [
        Dim::Country,
        Dim::Browser,
        Dim::Page,
        Dim::Event,
        Dim::EntryPage,
    ];
    let filter_sets: Vec<Vec<Filter>> = vec![
        vec![],
        vec![f(Dim::Country, Op::Is, "DE")],
        vec![f(Dim::Browser, Op::IsNot, "Chrome")],
        vec![f(Dim::Page, Op::Contains, "docs")],
        vec![p("plan", Op::IsNot, "pro")],
    ];
    // Visitors (per UTC day) with more than one country or browser in the
    // window: the rows the panels group by (value, visitor).
    let mut seen: BTreeMap<Key, BTreeSet<(&str, &str)>> = BTreeMap::new();
    for &i in &Model::new(&hits, &w, &[]).sel {
        let h = &hits[i];
        let key = (h.visitor, h.ts_ms.div_euclid(DAY_MS));
        seen.entry(key)
            .or_default()
            .insert((h.country.as_str(), h.browser.as_str()));
    }
    let mixed = seen.values().filter(|v| v.len() > 1).count();
    assert!(
        mixed >= 5 && mixed < seen.len() / 2,
        "{mixed} of {}",
        seen.len()
    );
    let tz = w.tz.clone();
    for interval in [Interval::Day, Interval::Hour] {
        for filters in &filter_sets {
            let what = format!("{filters:?} by {interval:?}");
            let model = Model::new(&hits, &w, filters);
            let o = st
                .overview(&w, &prev, filters, interval, &panels, 1000)
                .unwrap();
            same_kpis(&o.kpis, &model.kpis(), &what);
            for (d, rows) in &o.breakdowns {
                let want = if *d == Dim::EntryPage {
                    model.entries()
                } else {
                    model.breakdown(*d)
                };
                let got: BTreeMap<Option<String>, (u64, u64)> = rows
                    .iter()
                    .map(|r| (r.value.clone(), (r.visitors, r.count)))
                    .collect();
                assert_eq!(got, want, "{what}: {d:?} breakdown");
            }
            // The chart: visitors (per UTC day) and pageviews per local bucket.
            let mut per: BTreeMap<String, (BTreeSet<Key>, u64)> = BTreeMap::new();
            for &i in &model.sel {
                let h = &hits[i];
                let local = Timestamp::from_millisecond(h.ts_ms)
                    .unwrap()
                    .to_zoned_datetime(tz.clone())
                    .datetime();
                let start = match interval {
                    Interval::Hour => local.date().at(local.hour(), 0, 0, 0),
                    _ => local.date().at(0, 0, 0, 0),
                };
                let e = per
                    .entry(start.strftime("%Y-%m-%dT%H:%M:%S").to_string())
                    .or_default();
                e.0.insert((h.visitor, h.ts_ms.div_euclid(DAY_MS)));
                e.1 += u64::from(h.kind == Kind::Pageview);
            }
            let got: BTreeMap<String, (u64, u64)> = o
                .series
                .iter()
                .filter(|p| p.visitors > 0 || p.pageviews > 0)
                .map(|p| (p.start.clone(), (p.visitors, p.pageviews)))
                .collect();
            let want: BTreeMap<String, (u64, u64)> = per
                .into_iter()
                .map(|(b, (v, pv))| (b, (v.len() as u64, pv)))
                .collect();
            assert_eq!(got, want, "{what}: series");
        }
    }
}

/// With rollups built, the overview groups the sessions of the days on
/// which the filters select whole visitors (each visitor had one value of
/// each filtered dimension that day) from the selected hits alone, and
/// those of the other days from all hits of the sessions with a selected
/// hit. Here UTC days 0 and 1 give each visitor one country and browser a
/// day, day 2 and the comparison's day keep the fixture's mix: the days are
/// found as such, and every number is held to the model.
#[test]
fn sessions_of_days_with_whole_visitors_follow_the_rules() {
    use crate::stats::rollup::whole_visitor_days;
    let mut hits = fixture();
    let d0 = DAY0_MS / DAY_MS;
    for h in &mut hits {
        let day = h.ts_ms.div_euclid(DAY_MS) - d0;
        if day == 0 || day == 1 {
            let k = h.visitor + day as u64;
            h.country = ["DE", "FR", "US", ""][(k % 4) as usize].into();
            h.browser = ["Firefox", "Chrome"][(k / 4 % 2) as usize].into();
        }
    }
    let (_dir, s, id) = store_with(&hits);
    s.refresh_rollups(10_000, u64::MAX).unwrap();
    let st = s.stats().unwrap();
    let (w, prev) = (window(id, 0, 3), window(id, -1, 0));
    let whole = |w: &Window, filters: &[Filter]| whole_visitor_days(&st.rollups(), w, filters);
    let days = [d0 as i32, d0 as i32 + 1];
    let by_country = [f(Dim::Country, Op::Is, "DE")];
    assert_eq!(whole(&w, &by_country).unwrap(), days);
    assert_eq!(
        whole(
            &w,
            &[
                f(Dim::Browser, Op::IsNot, "Chrome"),
                f(Dim::Country, Op::Is, "")
            ]
        )
        .unwrap(),
        days
    );
    assert_eq!(whole(&prev, &by_country).unwrap(), Vec::<i32>::new());
    for other in [
        f(Dim::Event, Op::Is, "signup"),
        f(Dim::EntryPage, Op::Is, "/"),
        p("plan", Op::Is, "pro"),
    ] {
        let filters = [by_country[0].clone(), other];
        assert_eq!(
            whole(&w, &filters).unwrap(),
            Vec::<i32>::new(),
            "{filters:?}"
        );
    }
    let filter_sets: Vec<Vec<Filter>> = vec![
        vec![f(Dim::Country, Op::Is, "DE")],
        vec![f(Dim::Country, Op::IsNot, "")],
        vec![
            f(Dim::Browser, Op::Is, "Firefox"),
            f(Dim::Country, Op::Contains, "u"),
        ],
        vec![f(Dim::Page, Op::Is, "/pricing")],
    ];
    let panels = [
        Dim::Page,
        Dim::EntryPage,
        Dim::Country,
        Dim::Browser,
        Dim::Event,
    ];
    for filters in &filter_sets {
        let what = format!("{filters:?}");
        let model = Model::new(&hits, &w, filters);
        let want = model.kpis();
        assert!(want.sessions > 0, "{what}");
        let o = st
            .overview(&w, &prev, filters, Interval::Day, &panels, 1000)
            .unwrap();
        same_kpis(&o.kpis, &want, &what);
        same_kpis(
            &o.previous,
            &Model::new(&hits, &prev, filters).kpis(),
            &format!("{what} comparison"),
        );
        for (d, rows) in &o.breakdowns {
            let want = if *d == Dim::EntryPage {
                model.entries()
            } else {
                model.breakdown(*d)
            };
            let got: BTreeMap<Option<String>, (u64, u64)> = rows
                .iter()
                .map(|r| (r.value.clone(), (r.visitors, r.count)))
                .collect();
            assert_eq!(got, want, "{what}: {d:?} breakdown");
        }
        let series_sessions: u64 = o.series.iter().map(|p| p.sessions).sum();
        assert_eq!(series_sessions, want.sessions, "{what}: series sessions");
    }
}
