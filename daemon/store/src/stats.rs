//! The stats engine: the numbers a site owner asks for, computed in DuckDB
//! from the raw `hits` rows.
//!
//! # The rules, the same for every number
//!
//! - **Window.** A site, a half-open UTC range `[from, to)`, and an IANA time
//!   zone that only decides where hours, days, weeks and months begin.
//! - **Sessions** are derived here, never stored: a visitor's hits in the
//!   window, ordered by time; a gap of more than 30 minutes starts a new
//!   session. Sessions are always cut from all of the visitor's hits, so a
//!   filter never moves where a session begins or ends. (Visitor ids rotate
//!   daily with the salt, so no session spans a UTC midnight.)
//! - **Bounce**: a session with exactly one pageview and no custom event.
//!   **Duration**: last hit minus first hit of the session.
//! - **Filters** select hits. Hit-level dimensions (page, source, country, ...)
//!   select the hits that match; session-level ones (entry page, exit page)
//!   select every hit of the sessions that match. All filters must hold.
//!   `is` with an empty value selects hits without a value (direct traffic
//!   for `source`), `is_not` with an empty value those with one.
//!   A custom property is hit-level too: `is` selects the hits carrying
//!   the key with that value, `is_not` every other hit (those without the
//!   key included), `contains` the hits whose value of the key contains
//!   the text; with an empty value, `is` selects the hits without the key
//!   and `is_not` those with it.
//!   Hit counts (pageviews, events, breakdown counts) count selected hits;
//!   visitors are the distinct visitors of selected hits; session metrics
//!   (sessions, bounce rate, duration, views per visit) are over the sessions
//!   that hold at least one selected hit.
//! - **Time zones**: local time is UTC plus the zone's offset at that instant;
//!   the offsets in force within the window (with their DST transitions) come
//!   from the time-zone database through `jiff`, and are applied in SQL.
//!
//! # What a query derives
//!
//! Numbering sessions (a window function that sorts the range's hits by
//! visitor and time) is most of a query's cost, so it is done only where
//! the rules need it, and the rules fix what may be skipped: a session
//! belongs to one visitor, so with conditions on hits only the visitors
//! with a matching hit are numbered ([`base`]); and a number about hits
//! alone (a breakdown of a hit dimension, goal conversions, property keys
//! and values) needs no session unless a filter is on one ([`base_hits`]).
//! `selection_tests` holds both to a model of the rules in plain Rust.

use duckdb::{Connection, params_from_iter};
use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::QueryError;

/// The longest window a query may cover.
pub const MAX_WINDOW_DAYS: i64 = 3 * 366;
/// A session ends after this long without a hit.
pub const SESSION_GAP_MINUTES: i64 = 30;

/// What a query covers.
#[derive(Clone, Debug)]
pub struct Window {
    /// `sites.id` of the site.
    pub site_id: u16,
    /// Inclusive start (UTC).
    pub from: Timestamp,
    /// Exclusive end (UTC).
    pub to: Timestamp,
    /// Where local hours, days, weeks and months begin.
    pub tz: TimeZone,
}

/// A dimension hits can be broken down and filtered by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dim {
    Page,
    EntryPage,
    ExitPage,
    Source,
    Referrer,
    UtmSource,
    UtmMedium,
    UtmCampaign,
    UtmTerm,
    UtmContent,
    Country,
    Browser,
    Os,
    Device,
    Language,
    /// Screen size class from the CSS width: mobile (< 576 px), tablet
    /// (< 992), laptop (< 1440), desktop.
    Screen,
    /// Custom event names (pageviews excluded).
    Event,
}

impl Dim {
    /// Every dimension, with the name the API uses.
    pub const ALL: [(Dim, &'static str); 17] = [
        (Dim::Page, "page"),
        (Dim::EntryPage, "entry_page"),
        (Dim::ExitPage, "exit_page"),
        (Dim::Source, "source"),
        (Dim::Referrer, "referrer"),
        (Dim::UtmSource, "utm_source"),
        (Dim::UtmMedium, "utm_medium"),
        (Dim::UtmCampaign, "utm_campaign"),
        (Dim::UtmTerm, "utm_term"),
        (Dim::UtmContent, "utm_content"),
        (Dim::Country, "country"),
        (Dim::Browser, "browser"),
        (Dim::Os, "os"),
        (Dim::Device, "device"),
        (Dim::Language, "language"),
        (Dim::Screen, "screen"),
        (Dim::Event, "event"),
    ];

    pub fn parse(name: &str) -> Option<Dim> {
        Dim::ALL.iter().find(|(_, n)| *n == name).map(|(d, _)| *d)
    }

    pub fn name(self) -> &'static str {
        Dim::ALL
            .iter()
            .find(|(d, _)| *d == self)
            .map(|(_, n)| *n)
            .expect("every dimension is listed")
    }

    /// True for dimensions that belong to a session rather than a hit.
    pub fn is_session(self) -> bool {
        matches!(self, Dim::EntryPage | Dim::ExitPage)
    }

    /// The SQL expression of a hit-level dimension over the `hits` columns,
    /// or over the `sessions` columns for session-level ones.
    pub(crate) fn expr(self) -> &'static str {
        match self {
            Dim::Page => "path",
            Dim::EntryPage => "entry_page",
            Dim::ExitPage => "exit_page",
            Dim::Source => "source",
            Dim::Referrer => "referrer",
            Dim::UtmSource => "utm_source",
            Dim::UtmMedium => "utm_medium",
            Dim::UtmCampaign => "utm_campaign",
            Dim::UtmTerm => "utm_term",
            Dim::UtmContent => "utm_content",
            Dim::Country => "country",
            Dim::Browser => "browser",
            Dim::Os => "os",
            Dim::Device => {
                "CASE device WHEN 1 THEN 'desktop' WHEN 2 THEN 'mobile' WHEN 3 THEN 'tablet' END"
            }
            Dim::Language => "language",
            Dim::Screen => {
                "CASE WHEN screen_width IS NULL THEN NULL WHEN screen_width < 576 THEN 'mobile' \
                 WHEN screen_width < 992 THEN 'tablet' WHEN screen_width < 1440 THEN 'laptop' \
                 ELSE 'desktop' END"
            }
            Dim::Event => "CASE WHEN kind = 1 THEN name END",
        }
    }
}

/// Every panel of the overview page, in the order it shows them.
pub const PANELS: [Dim; 17] = [
    Dim::Page,
    Dim::EntryPage,
    Dim::ExitPage,
    Dim::Source,
    Dim::Referrer,
    Dim::UtmSource,
    Dim::UtmMedium,
    Dim::UtmCampaign,
    Dim::UtmTerm,
    Dim::UtmContent,
    Dim::Country,
    Dim::Browser,
    Dim::Os,
    Dim::Device,
    Dim::Screen,
    Dim::Language,
    Dim::Event,
];

/// How a filter compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Equal to the value; with an empty value: has no value.
    Is,
    /// Not equal to the value (hits without a value match); with an empty
    /// value: has a value.
    IsNot,
    /// Contains the value, ignoring ASCII case.
    Contains,
}

/// What a filter compares: a dimension, or a custom property of the hit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field {
    Dim(Dim),
    /// The value of the hit's custom property with this key (see
    /// [`check_prop_key`] for the keys a filter can name).
    Prop(String),
}

/// One filter; all filters of a query must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    pub field: Field,
    pub op: Op,
    pub value: String,
}

impl Filter {
    /// A filter on a dimension.
    pub fn dim(dim: Dim, op: Op, value: &str) -> Filter {
        Filter {
            field: Field::Dim(dim),
            op,
            value: value.to_owned(),
        }
    }

    /// A filter on the custom property `key`.
    pub fn prop(key: &str, op: Op, value: &str) -> Filter {
        Filter {
            field: Field::Prop(key.to_owned()),
            op,
            value: value.to_owned(),
        }
    }

    /// The dimension filtered, if it is one.
    pub fn dimension(&self) -> Option<Dim> {
        match self.field {
            Field::Dim(d) => Some(d),
            Field::Prop(_) => None,
        }
    }
}

/// Longest property key a filter names: the longest ingest accepts.
pub const MAX_PROP_KEY_BYTES: usize = 64;
/// Longest property value a filter compares with: the longest ingest accepts.
pub const MAX_PROP_VALUE_BYTES: usize = 512;

/// Why a property key cannot be filtered on, if it cannot: empty, longer
/// than [`MAX_PROP_KEY_BYTES`], holding a control character, or holding `:`
/// (which separates the parts of a filter's text form).
pub fn check_prop_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("the property key is empty".into());
    }
    if key.len() > MAX_PROP_KEY_BYTES {
        return Err(format!(
            "the property key is {} bytes; the longest is {MAX_PROP_KEY_BYTES}",
            key.len()
        ));
    }
    if key.chars().any(char::is_control) {
        return Err("the property key holds a control character".into());
    }
    if key.contains(':') {
        return Err(format!(
            "the property key {key:?} holds ':', which a filter cannot name"
        ));
    }
    Ok(())
}

/// The headline numbers of a window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Kpis {
    pub visitors: u64,
    pub pageviews: u64,
    pub events: u64,
    pub sessions: u64,
    pub bounces: u64,
    /// Bounced sessions / sessions, 0..=1 (0 without sessions).
    pub bounce_rate: f64,
    /// Mean session duration in seconds (0 without sessions).
    pub avg_duration_s: f64,
    /// Pageviews of the counted sessions / sessions (0 without sessions).
    pub views_per_visit: f64,
}

/// Time-series bucket size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interval {
    Hour,
    Day,
    /// ISO weeks, starting on Monday.
    Week,
    Month,
}

impl Interval {
    fn unit(self) -> &'static str {
        match self {
            Interval::Hour => "hour",
            Interval::Day => "day",
            Interval::Week => "week",
            Interval::Month => "month",
        }
    }
}

/// One bucket of a time series. Buckets without hits are present with zeros.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Point {
    /// Local start of the bucket, `YYYY-MM-DDTHH:MM:SS` in the window's zone.
    pub start: String,
    pub visitors: u64,
    pub pageviews: u64,
    /// Sessions that began in this bucket.
    pub sessions: u64,
}

/// One row of a breakdown.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The dimension's value; `None` for hits without one (direct traffic, say).
    pub value: Option<String>,
    pub visitors: u64,
    /// Pageviews (for `event`, the count of that event; for entry and exit
    /// pages, the sessions that entered or left there).
    pub count: u64,
    /// `visitors` / all visitors of the window with the same filters, 0..=1.
    pub share: f64,
}

/// One dashboard page: see [`Stats::overview`].
#[derive(Clone, Debug, PartialEq)]
pub struct Overview {
    pub kpis: Kpis,
    /// The same numbers for the comparison window.
    pub previous: Kpis,
    pub series: Vec<Point>,
    pub breakdowns: Vec<(Dim, Vec<Row>)>,
}

/// Why a query was not run.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("'from' must be before 'to'")]
    Inverted,
    #[error("the range covers more than {MAX_WINDOW_DAYS} days")]
    TooLong,
    #[error(transparent)]
    Query(#[from] QueryError),
}

impl From<duckdb::Error> for StatsError {
    fn from(e: duckdb::Error) -> Self {
        StatsError::Query(QueryError::Db(e))
    }
}

/// A reader over the store: its own DuckDB connection, so queries run beside
/// the batcher's appends and see every committed batch.
pub struct Stats {
    pub(crate) conn: Connection,
    /// The writer's change counters, which say what of `cache` is stale.
    pub(crate) changes: std::sync::Arc<crate::Changes>,
    /// What this reader planned and derived for unfiltered windows.
    pub(crate) cache: std::cell::RefCell<crate::rollup::Cache>,
}

/// SQL text and its parameters.
pub(crate) struct Sql {
    pub(crate) text: String,
    pub(crate) params: Vec<duckdb::types::Value>,
}

impl Stats {
    pub(crate) fn new(conn: Connection, changes: std::sync::Arc<crate::Changes>) -> Stats {
        Stats {
            conn,
            changes,
            cache: Default::default(),
        }
    }

    /// Forgets every plan and derived range this reader cached (see
    /// [`crate::rollup`]), so that the next overview is computed from
    /// scratch. For benchmarks that measure the cold path.
    pub fn clear_cache(&self) {
        self.cache.borrow_mut().clear(&self.conn);
    }

    /// The id of the site named `hostname` (or one of its aliases).
    pub fn site_id(&self, hostname: &str) -> Result<Option<u16>, QueryError> {
        let h = hostname.trim().to_ascii_lowercase();
        let mut stmt = self.conn.prepare(
            "SELECT id FROM sites WHERE hostname = ? OR list_contains(aliases, ?) ORDER BY id LIMIT 1",
        )?;
        let mut rows = stmt.query(duckdb::params![h, h])?;
        Ok(match rows.next()? {
            Some(r) => Some(r.get(0)?),
            None => None,
        })
    }

    /// Visitors, pageviews, events, sessions, bounce rate, duration, views per visit.
    pub fn kpis(&self, w: &Window, filters: &[Filter]) -> Result<Kpis, StatsError> {
        self.kpis_on(&base(w, filters)?)
    }

    fn kpis_on(&self, base: &Sql) -> Result<Kpis, StatsError> {
        let text = format!(
            "{}
            SELECT
              (SELECT count(DISTINCT visitor) FROM sel),
              (SELECT count(*) FILTER (WHERE kind = 0) FROM sel),
              (SELECT count(*) FILTER (WHERE kind = 1) FROM sel),
              (SELECT count(*) FROM sess_sel),
              (SELECT count(*) FILTER (WHERE pv = 1 AND ev = 0) FROM sess_sel),
              (SELECT coalesce(avg(dur_us), 0) / 1e6 FROM sess_sel),
              (SELECT coalesce(sum(pv), 0) FROM sess_sel)",
            base.text
        );
        let mut stmt = self.conn.prepare(&text)?;
        let k = stmt.query_row(params_from_iter(base.params.iter()), |r| {
            let sessions: u64 = r.get(3)?;
            let bounces: u64 = r.get(4)?;
            let session_pv: u64 = r.get::<_, i64>(6)? as u64;
            let ratio = |n: u64| {
                if sessions == 0 {
                    0.0
                } else {
                    n as f64 / sessions as f64
                }
            };
            Ok(Kpis {
                visitors: r.get(0)?,
                pageviews: r.get(1)?,
                events: r.get(2)?,
                sessions,
                bounces,
                bounce_rate: ratio(bounces),
                avg_duration_s: if sessions == 0 { 0.0 } else { r.get(5)? },
                views_per_visit: ratio(session_pv),
            })
        })?;
        Ok(k)
    }

    /// Visitors, pageviews and sessions per local hour, day, week or month.
    pub fn timeseries(
        &self,
        w: &Window,
        filters: &[Filter],
        interval: Interval,
    ) -> Result<Vec<Point>, StatsError> {
        self.timeseries_on(&base(w, filters)?, w, interval)
    }

    fn timeseries_on(
        &self,
        base: &Sql,
        w: &Window,
        interval: Interval,
    ) -> Result<Vec<Point>, StatsError> {
        let (local_hit, local_sess) = (local_expr(w, "ts"), local_expr(w, "t0"));
        let unit = interval.unit();
        let text = format!(
            "{b}
            , hb AS (
              SELECT strftime(date_trunc('{unit}', {local_hit}), '%Y-%m-%dT%H:%M:%S') AS b,
                     count(DISTINCT visitor) AS visitors,
                     count(*) FILTER (WHERE kind = 0) AS pageviews
              FROM sel GROUP BY b
            ), sb AS (
              SELECT strftime(date_trunc('{unit}', {local_sess}), '%Y-%m-%dT%H:%M:%S') AS b,
                     count(*) AS sessions
              FROM sess_sel GROUP BY b
            )
            SELECT coalesce(hb.b, sb.b), coalesce(visitors, 0), coalesce(pageviews, 0),
                   coalesce(sessions, 0)
            FROM hb FULL OUTER JOIN sb ON hb.b = sb.b",
            b = base.text
        );
        let mut stmt = self.conn.prepare(&text)?;
        let found: std::collections::HashMap<String, (u64, u64, u64)> = stmt
            .query_map(params_from_iter(base.params.iter()), |r| {
                Ok((r.get::<_, String>(0)?, (r.get(1)?, r.get(2)?, r.get(3)?)))
            })?
            .collect::<Result<_, _>>()?;
        Ok(buckets(w, interval)
            .into_iter()
            .map(|start| {
                let (visitors, pageviews, sessions) =
                    found.get(&start).copied().unwrap_or((0, 0, 0));
                Point {
                    start,
                    visitors,
                    pageviews,
                    sessions,
                }
            })
            .collect())
    }

    /// The top `limit` values of a dimension, by visitors then count.
    pub fn breakdown(
        &self,
        w: &Window,
        filters: &[Filter],
        dim: Dim,
        limit: usize,
    ) -> Result<Vec<Row>, StatsError> {
        let b = if dim.is_session() {
            base(w, filters)?
        } else {
            base_hits(w, filters)?
        };
        self.breakdown_on(&b, dim, limit)
    }

    /// The custom events the filters select (the `events` of [`Stats::kpis`],
    /// without deriving sessions where no filter needs them).
    pub fn event_count(&self, w: &Window, filters: &[Filter]) -> Result<u64, StatsError> {
        let b = base_hits(w, filters)?;
        let text = format!("{} SELECT count(*) FROM sel WHERE kind = 1", b.text);
        let mut stmt = self.conn.prepare(&text)?;
        Ok(stmt.query_row(params_from_iter(b.params.iter()), |r| r.get(0))?)
    }

    /// Everything one dashboard page shows, computing the window's sessions
    /// and selection once (into temporary tables of this connection) instead
    /// of once per number: the KPIs of `w` and of `prev` (the comparison), the
    /// time series, and the top `limit` rows of each of `panels`.
    pub fn overview(
        &self,
        w: &Window,
        prev: &Window,
        filters: &[Filter],
        interval: Interval,
        panels: &[Dim],
        limit: usize,
    ) -> Result<Overview, StatsError> {
        if filters.is_empty()
            && let Some(o) =
                crate::rollup::overview_unfiltered(self, w, prev, interval, panels, limit)?
        {
            return Ok(o);
        }
        self.overview_raw(w, prev, filters, interval, panels, limit)
    }

    /// [`Stats::overview`] from the raw hits only, whatever the filters.
    pub(crate) fn overview_raw(
        &self,
        w: &Window,
        prev: &Window,
        filters: &[Filter],
        interval: Interval,
        panels: &[Dim],
        limit: usize,
    ) -> Result<Overview, StatsError> {
        let c = conds(w, filters);
        let h = hits_cte(w, &c)?;
        self.conn.execute(
            &format!(
                "CREATE OR REPLACE TEMP TABLE hv_h AS WITH {} SELECT * FROM h",
                h.text
            ),
            params_from_iter(h.params.iter()),
        )?;
        let sel = selection_cte(&c);
        for (table, rel) in [("hv_sel", "sel"), ("hv_sess", "sess_sel")] {
            self.conn.execute(
                &format!(
                    "CREATE OR REPLACE TEMP TABLE {table} AS
                     WITH h AS (SELECT * FROM hv_h), {} SELECT * FROM {rel}",
                    sel.text
                ),
                params_from_iter(sel.params.iter()),
            )?;
        }
        let cached = Sql {
            text: "WITH sel AS (SELECT * FROM hv_sel), sess_sel AS (SELECT * FROM hv_sess)".into(),
            params: Vec::new(),
        };
        let result = (|| {
            let kpis = self.kpis_on(&cached)?;
            let previous = self.kpis_on(&base(prev, filters)?)?;
            let series = self.timeseries_on(&cached, w, interval)?;
            let breakdowns = panels
                .iter()
                .map(|d| Ok((*d, self.breakdown_on(&cached, *d, limit)?)))
                .collect::<Result<Vec<_>, StatsError>>()?;
            Ok(Overview {
                kpis,
                previous,
                series,
                breakdowns,
            })
        })();
        let _ = self.conn.execute_batch(
            "DROP TABLE IF EXISTS hv_h; DROP TABLE IF EXISTS hv_sel; DROP TABLE IF EXISTS hv_sess",
        );
        result
    }

    fn breakdown_on(&self, base: &Sql, dim: Dim, limit: usize) -> Result<Vec<Row>, StatsError> {
        let (from, value, count, extra) = if dim.is_session() {
            ("sess_sel", dim.expr(), "count(*)", "")
        } else if dim == Dim::Event {
            ("sel", dim.expr(), "count(*)", "WHERE kind = 1")
        } else {
            ("sel", dim.expr(), "count(*) FILTER (WHERE kind = 0)", "")
        };
        let text = format!(
            "{b}
            , total AS (SELECT count(DISTINCT visitor) AS n FROM sel)
            , per AS (
              SELECT {value} AS v, visitor, {count} AS c FROM {from} {extra} GROUP BY v, visitor
            )
            SELECT v, count(*) AS visitors, sum(c)::UBIGINT AS c,
                   CASE WHEN (SELECT n FROM total) = 0 THEN 0
                        ELSE count(*) / (SELECT n FROM total) END
            FROM per
            GROUP BY v
            ORDER BY visitors DESC, c DESC, v NULLS LAST
            LIMIT {limit}",
            b = base.text
        );
        let mut stmt = self.conn.prepare(&text)?;
        let rows = stmt
            .query_map(params_from_iter(base.params.iter()), |r| {
                Ok(Row {
                    value: r.get(0)?,
                    visitors: r.get(1)?,
                    count: r.get(2)?,
                    share: r.get(3)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }
}

/// The common part of every query: the window's hits with their session,
/// the sessions, and the selection the filters make (`sel`, `sess_sel`).
pub(crate) fn base(w: &Window, filters: &[Filter]) -> Result<Sql, StatsError> {
    let c = conds(w, filters);
    let (h, sel) = (hits_cte(w, &c)?, selection_cte(&c));
    let mut params = h.params;
    params.extend(sel.params);
    Ok(Sql {
        text: format!("WITH {}, {}", h.text, sel.text),
        params,
    })
}

/// Like [`base`], but for numbers about hits only (visitors, counts,
/// property values): `sel` without the session columns. When no filter is
/// on a session dimension, every hit that matches the filters is selected
/// whatever its session, so the sessions are not computed at all (they are
/// most of the cost of a query); otherwise this is [`base`].
pub(crate) fn base_hits(w: &Window, filters: &[Filter]) -> Result<Sql, StatsError> {
    let c = conds(w, filters);
    if !c.sess.is_empty() {
        return base(w, filters);
    }
    check_window(w)?;
    let scan = window_hits(
        "w",
        w.site_id,
        &[(w.from.as_microsecond(), w.to.as_microsecond())],
    );
    Ok(Sql {
        text: format!(
            "WITH {}, sel AS (SELECT * FROM w WHERE {})",
            scan.text,
            and(&c.hit)
        ),
        params: c.hit_params,
    })
}

/// CTEs `w`, `marked`, `sn` and `h`: the window's hits, each with its session
/// number `sess` (per visitor). When the filters have conditions on hits,
/// only the hits of visitors with at least one matching hit: a session
/// belongs to one visitor, so no other visitor's session can be selected,
/// and numbering the sessions of the few is much cheaper than of all.
fn hits_cte(w: &Window, c: &Conds) -> Result<Sql, StatsError> {
    check_window(w)?;
    let ranges = [(w.from.as_microsecond(), w.to.as_microsecond())];
    Ok(if c.hit.is_empty() {
        hits_in(w.site_id, &ranges)
    } else {
        let scan = window_hits("w_all", w.site_id, &ranges);
        Sql {
            text: format!(
                "{}, w AS (
                  SELECT * FROM w_all
                  WHERE visitor IN (SELECT visitor FROM w_all WHERE {})
                ), {}",
                scan.text,
                and(&c.hit),
                numbered("w"),
            ),
            params: c.hit_params.clone(),
        }
    })
}

/// Refuses inverted and overlong windows.
pub(crate) fn check_window(w: &Window) -> Result<(), StatsError> {
    if w.from >= w.to {
        return Err(StatsError::Inverted);
    }
    if (w.to.as_second() - w.from.as_second()) > MAX_WINDOW_DAYS * 86_400 {
        return Err(StatsError::TooLong);
    }
    Ok(())
}

/// Microseconds in a UTC day.
pub(crate) const DAY_US: i64 = 86_400_000_000;

/// CTEs `w`, `marked`, `sn` and `h` over the site's hits in the half-open UTC
/// ranges `ranges` (microseconds; no range, no hits).
///
/// A visitor is a visitor id *within one UTC day*: the ids are keyed with a
/// salt that rotates at UTC midnight, so a person's hits on two days carry
/// two ids anyway, and the rule makes it exact for batch-ingested history
/// too. `visitor` here is that pair folded into one key (`id * 2^16 + day`),
/// `v64` the stored id and `dn` the day number; sessions never cross a UTC
/// midnight. Counts of visitors are therefore sums over UTC days, which is
/// what lets [`crate::rollup`] answer from per-day rollups exactly.
pub(crate) fn hits_in(site_id: u16, ranges: &[(i64, i64)]) -> Sql {
    let scan = window_hits("w", site_id, ranges);
    Sql {
        text: format!("{}, {}", scan.text, numbered("w")),
        params: scan.params,
    }
}

/// CTE `name`: the site's hits in the half-open UTC ranges `ranges`, with
/// the visitor key, the day number and the time in microseconds (see
/// [`hits_in`]).
fn window_hits(name: &str, site_id: u16, ranges: &[(i64, i64)]) -> Sql {
    // The bounds are integers, written into the text so that DuckDB can
    // prune row groups by them (it does not for parameters).
    let scan = if ranges.is_empty() {
        "SELECT * FROM hits WHERE FALSE".to_owned()
    } else {
        ranges
            .iter()
            .map(|&(from, to)| {
                format!(
                    "SELECT * FROM hits WHERE site_id = {site_id}
                       AND ts >= make_timestamp({from}::BIGINT)::TIMESTAMPTZ
                       AND ts < make_timestamp({to}::BIGINT)::TIMESTAMPTZ"
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ")
    };
    let text = format!(
        "{name} AS (
          SELECT id, visitor AS v64, epoch_us(ts) // {DAY_US} AS dn,
                 visitor::UHUGEINT * 65536 + (epoch_us(ts) // {DAY_US})::UHUGEINT AS visitor,
                 ts, epoch_us(ts) AS us, kind, name, path, referrer, source,
                 utm_source, utm_medium, utm_campaign, utm_term, utm_content,
                 country, browser, os, device, language, screen_width
          FROM ({scan})
        )"
    );
    Sql {
        text,
        params: Vec::new(),
    }
}

/// CTEs `marked`, `sn` and `h`: the hits of `rel` (shaped like `w` of
/// [`window_hits`]) with their session number `sess`.
fn numbered(rel: &str) -> String {
    // The session number is computed on a narrow projection and joined
    // back: DuckDB's window operator sorts its whole input, and sorting
    // every column of the hits twice cost more than the rest of the query.
    format!(
        "{sessions}, h AS (
          SELECT {rel}.*, sn.sess FROM {rel} JOIN sn USING (id)
        )",
        sessions = session_numbers(rel),
    )
}

/// CTEs `marked` and `sn`: the session number `sess` of every hit (`id`)
/// of `rel`, which has `id`, `visitor` and `us`. The one place that defines
/// a session: a visitor's hits with at most [`SESSION_GAP_MINUTES`] between
/// each and the next.
pub(crate) fn session_numbers(rel: &str) -> String {
    format!(
        "marked AS (
          SELECT id, visitor, us,
                 CASE WHEN us - lag(us) OVER (PARTITION BY visitor ORDER BY us, id)
                      <= {gap} THEN 0 ELSE 1 END AS starts
          FROM {rel}
        ), sn AS (
          SELECT id, sum(starts) OVER (PARTITION BY visitor ORDER BY us, id
                                       ROWS UNBOUNDED PRECEDING) AS sess
          FROM marked
        )",
        gap = SESSION_GAP_MINUTES * 60_000_000,
    )
}

/// A condition on a hit (its `id`) of `w` for a filter on the custom
/// property `key`, with its parameters: membership in the ids of the
/// window's hits whose property matches. The window's bounds are written
/// into the text so that DuckDB prunes `hit_props` row groups by `ts`.
fn prop_cond(w: &Window, key: &str, op: Op, value: &str) -> (String, Vec<duckdb::types::Value>) {
    use duckdb::types::Value as V;
    let (site, from, to) = (w.site_id, w.from.as_microsecond(), w.to.as_microsecond());
    // (hits whose value matches are members, the value condition, its parameter)
    let (member, cond, param) = match (op, value.is_empty()) {
        (Op::Is, true) => (false, "hp.value <> ''", None),
        (Op::IsNot, true) => (true, "hp.value <> ''", None),
        (Op::Is, false) => (true, "hp.value = ?", Some(value)),
        (Op::IsNot, false) => (false, "hp.value = ?", Some(value)),
        (Op::Contains, _) => (true, "contains(lower(hp.value), lower(?))", Some(value)),
    };
    let text = format!(
        "(id {not}IN (SELECT hp.hit_id FROM hit_props hp WHERE hp.site_id = {site}
           AND hp.ts >= make_timestamp({from}::BIGINT)::TIMESTAMPTZ
           AND hp.ts < make_timestamp({to}::BIGINT)::TIMESTAMPTZ
           AND hp.key = ? AND {cond}))",
        not = if member { "" } else { "NOT " },
    );
    let mut params = vec![V::Text(key.to_owned())];
    params.extend(param.map(|v| V::Text(v.to_owned())));
    (text, params)
}

/// What the filters ask: conditions on a hit (over the columns of `w` of
/// [`window_hits`]) and on a session (over the columns of `sessions`), each
/// with its parameters in text order.
pub(crate) struct Conds {
    hit: Vec<String>,
    hit_params: Vec<duckdb::types::Value>,
    sess: Vec<String>,
    sess_params: Vec<duckdb::types::Value>,
}

/// The conditions of `filters` within the window `w`.
pub(crate) fn conds(w: &Window, filters: &[Filter]) -> Conds {
    use duckdb::types::Value as V;
    let mut c = Conds {
        hit: Vec::new(),
        hit_params: Vec::new(),
        sess: Vec::new(),
        sess_params: Vec::new(),
    };
    for f in filters {
        let dim = match &f.field {
            Field::Dim(d) => *d,
            Field::Prop(key) => {
                let (cond, params) = prop_cond(w, key, f.op, &f.value);
                c.hit.push(cond);
                c.hit_params.extend(params);
                continue;
            }
        };
        let e = dim.expr();
        // An empty value asks for hits without a value (stored as NULL):
        // `is` with nothing, `is_not` with anything.
        let (cond, param) = match (f.op, f.value.is_empty()) {
            (Op::Is, true) => (format!("(({e}) IS NULL OR ({e}) = '')"), None),
            (Op::IsNot, true) => (format!("(({e}) IS NOT NULL AND ({e}) <> '')"), None),
            (Op::Is, false) => (format!("({e}) = ?"), Some(&f.value)),
            (Op::IsNot, false) => (format!("(({e}) IS NULL OR ({e}) <> ?)"), Some(&f.value)),
            (Op::Contains, _) => (format!("contains(lower({e}), lower(?))"), Some(&f.value)),
        };
        let (conds, params) = if dim.is_session() {
            (&mut c.sess, &mut c.sess_params)
        } else {
            (&mut c.hit, &mut c.hit_params)
        };
        conds.push(cond);
        params.extend(param.map(|v| V::Text(v.clone())));
    }
    c
}

/// The conditions joined by AND (TRUE for none).
fn and(c: &[String]) -> String {
    if c.is_empty() {
        "TRUE".to_owned()
    } else {
        c.join(" AND ")
    }
}

/// CTEs `sessions`, `sess_ok`, `sel` and `sess_sel` over a relation `h`
/// (hits with `visitor` and `sess`): what the conditions select.
fn selection_cte(c: &Conds) -> Sql {
    let text = format!(
        "sessions AS (
          SELECT visitor, sess, min(ts) AS t0, max(us) - min(us) AS dur_us,
                 count(*) FILTER (WHERE kind = 0) AS pv,
                 count(*) FILTER (WHERE kind = 1) AS ev,
                 arg_min(path, us) FILTER (WHERE kind = 0) AS entry_page,
                 arg_max(path, us) FILTER (WHERE kind = 0) AS exit_page
          FROM h GROUP BY visitor, sess
        ), sess_ok AS (
          SELECT * FROM sessions WHERE {sess}
        ), sel AS (
          SELECT h.* FROM h SEMI JOIN sess_ok USING (visitor, sess) WHERE {hit}
        ), sess_sel AS (
          SELECT * FROM sess_ok SEMI JOIN (SELECT DISTINCT visitor, sess FROM sel) USING (visitor, sess)
        )",
        sess = and(&c.sess),
        hit = and(&c.hit),
    );
    // Bound in text order: the session conditions come first in the text.
    let mut params = c.sess_params.clone();
    params.extend(c.hit_params.iter().cloned());
    Sql { text, params }
}

/// Offsets in force during the window: `(from_us, offset_us)` pieces, the
/// first starting at the window's start.
fn offsets(w: &Window) -> Vec<(i64, i64)> {
    let mut out = vec![(
        w.from.as_microsecond(),
        i64::from(w.tz.to_offset(w.from).seconds()) * 1_000_000,
    )];
    for t in w.tz.following(w.from) {
        if t.timestamp() >= w.to {
            break;
        }
        out.push((
            t.timestamp().as_microsecond(),
            i64::from(t.offset().seconds()) * 1_000_000,
        ));
    }
    out
}

/// SQL for the local wall-clock time (a TIMESTAMP) of the TIMESTAMPTZ column `col`.
fn local_expr(w: &Window, col: &str) -> String {
    let pieces = offsets(w);
    if let [(_, only)] = pieces.as_slice() {
        return format!("make_timestamp(epoch_us({col}) + {only})");
    }
    let mut case = String::from("CASE");
    for pair in pieces.windows(2) {
        case.push_str(&format!(
            " WHEN epoch_us({col}) < {} THEN {}",
            pair[1].0, pair[0].1
        ));
    }
    case.push_str(&format!(
        " ELSE {} END",
        pieces.last().expect("one piece").1
    ));
    format!("make_timestamp(epoch_us({col}) + {case})")
}

/// The start of the bucket holding the local wall-clock time `dt`.
pub(crate) fn trunc_local(dt: jiff::civil::DateTime, interval: Interval) -> jiff::civil::DateTime {
    match interval {
        Interval::Hour => dt.date().at(dt.hour(), 0, 0, 0),
        Interval::Day => dt.date().at(0, 0, 0, 0),
        Interval::Week => {
            let d = dt.date();
            let back = i64::from(d.weekday().to_monday_zero_offset());
            d.checked_sub(jiff::Span::new().days(back))
                .unwrap_or(d)
                .at(0, 0, 0, 0)
        }
        Interval::Month => dt.date().first_of_month().at(0, 0, 0, 0),
    }
}

fn step(interval: Interval) -> jiff::Span {
    match interval {
        Interval::Hour => jiff::Span::new().hours(1),
        Interval::Day => jiff::Span::new().days(1),
        Interval::Week => jiff::Span::new().weeks(1),
        Interval::Month => jiff::Span::new().months(1),
    }
}

pub(crate) const LABEL: &str = "%Y-%m-%dT%H:%M:%S";

/// Local starts of every bucket that overlaps the window, in order. Walks in
/// zoned time, so an hour skipped by a DST change is not listed and an hour
/// that repeats is listed once (SQL groups by wall-clock time too).
pub(crate) fn buckets(w: &Window, interval: Interval) -> Vec<String> {
    let first = trunc_local(w.from.to_zoned_datetime(w.tz.clone()).datetime(), interval);
    let Ok(mut cur) = first.to_zoned_datetime(w.tz.clone()) else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    while cur.timestamp() < w.to {
        // Truncate again: a bucket start that fell into a DST gap was moved
        // forward; the label is the wall-clock start of its bucket.
        let label = trunc_local(cur.datetime(), interval)
            .strftime(LABEL)
            .to_string();
        if out.last() != Some(&label) {
            out.push(label);
        }
        match cur.checked_add(step(interval)) {
            Ok(next) => cur = next,
            Err(_) => break,
        }
    }
    out
}

/// The UTC stretches `(bucket index in labels, from_us, to_us)` that make up
/// each bucket within the window, by the same rule as the SQL: an instant
/// belongs to the bucket of its local time (UTC plus the offset in force).
/// A bucket can have several stretches (a repeated hour, a DST change).
pub(crate) fn bucket_bounds(
    w: &Window,
    interval: Interval,
    labels: &[String],
) -> Vec<(usize, i64, i64)> {
    let index: std::collections::HashMap<&str, usize> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    let civil = |us: i64| {
        Timestamp::from_microsecond(us)
            .map(|t| t.to_zoned_datetime(TimeZone::UTC).datetime())
            .ok()
    };
    let pieces = offsets(w);
    let end = w.to.as_microsecond();
    let mut out = Vec::new();
    for (i, &(start, off)) in pieces.iter().enumerate() {
        let stop = pieces.get(i + 1).map_or(end, |p| p.0).min(end);
        let mut t = start;
        while t < stop {
            let Some(local) = civil(t + off) else { break };
            let bucket = trunc_local(local, interval);
            let next = bucket
                .checked_add(step(interval))
                .ok()
                .and_then(|n| n.to_zoned_datetime(TimeZone::UTC).ok())
                .map(|z| z.timestamp().as_microsecond() - off)
                .unwrap_or(stop);
            let until = next.min(stop).max(t + 1);
            if let Some(&b) = index.get(bucket.strftime(LABEL).to_string().as_str()) {
                out.push((b, t, until));
            }
            t = until;
        }
    }
    out
}
