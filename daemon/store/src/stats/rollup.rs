//! Per-day rollups: the unfiltered dashboard answered from small tables
//! instead of every raw hit, with the same numbers.
//!
//! # Why it is exact
//!
//! The stats engine counts a visitor per UTC day (see `sql::hits_in`), and
//! sessions never cross a UTC midnight. So every number of the overview is a
//! sum over UTC days: visitors (of the window, of a panel row, of a chart
//! bucket), hits, sessions, bounces and durations. The rollups keep, per site
//! and UTC day:
//!
//! - `rollup_visitors`: each visitor with the quarter hours it was active in,
//!   so the visitors of any stretch of the day (a local hour, the part of a
//!   local day that falls into this UTC day) are counted exactly;
//! - `rollup_slots`: pageviews and events per quarter hour, and the sessions
//!   that began in it with their bounces, durations and pageviews;
//! - `rollup_values`: distinct visitors and the panel count per value of
//!   every dimension (for entry and exit pages: per session).
//!
//! A window is cut into whole UTC days and the partial days at its ends.
//! Whole days whose rollup is still valid come from the rollups; the ends,
//! and days without a valid rollup, are derived from the raw hits at query
//! time by the very same SQL that builds the rollups, restricted to the
//! window (so a session cut by the window's edge is cut the same way).
//!
//! # Validity
//!
//! `rollup_days` records, for each built (site, day), the count and the sum
//! of the ids of the day's hits. A query uses a day's rollup only if the
//! hits still have that count and sum; anything that adds or removes hits of
//! a past day (batch ingest of history, an import, retention) makes the
//! query fall back to the raw hits for that day until the writer rebuilds
//! it ([`refresh`]). Filtered queries always read the raw hits.
//!
//! # The readers' cache
//!
//! Each stats reader keeps its last plans and the tables it derived for the
//! raw part of its last windows (`cache`), so that a page reloaded or opened
//! by a second person does not scan and derive the same hits again.
//!
//! Quarter hours are the resolution: a time zone whose offset is not a whole
//! number of quarter hours (none in use today) makes the overview use the raw
//! hits.

use std::cell::RefCell;
use std::sync::atomic::Ordering;

use duckdb::{Connection, params_from_iter};
use jiff::Timestamp;

use crate::stats::cache::Cache;
use crate::stats::model::{
    DAY_US, Dim, Field, Filter, Interval, Kpis, Overview, Point, Row, StatsError, Window,
    check_window,
};
use crate::stats::sql::{Sql, bucket_bounds, buckets, hits_in};
use crate::{Changes, QueryError};

/// How rollups are derived. Raise it with any change to what [`derive`]
/// computes: rollups of another version are neither used nor kept.
pub const VERSION: u32 = 2;

/// Microseconds in a quarter hour, the rollups' time resolution.
pub(crate) const SLOT_US: i64 = 900_000_000;
/// The masks of a whole day: quarter hours 0..63 and 64..95.
const ALL_LO: u64 = u64::MAX;
const ALL_HI: u64 = (1 << 32) - 1;

/// The temporary tables a derivation fills (on the connection that runs
/// it): two helpers, and the three results under the prefix it is given.
const HELPERS: [&str; 2] = ["hv_rh", "hv_rs"];
const RESULTS: [&str; 3] = ["rv", "rq", "rval"];

/// Derives the rollup rows of `site_id`'s hits within `ranges` into the
/// temporary tables `{out}_rv`, `{out}_rq` and `{out}_rval` (with the
/// helpers `hv_rh` and `hv_rs`), replacing earlier ones. False (and no
/// tables but `hv_rh`) if the ranges hold no hits. Without `values`,
/// `{out}_rval` is left empty (the KPIs do not need it).
fn derive(
    conn: &Connection,
    site_id: u16,
    ranges: &[(i64, i64)],
    values: bool,
    out: &str,
) -> Result<bool, duckdb::Error> {
    if ranges.is_empty() {
        return Ok(false);
    }
    let h = hits_in(site_id, ranges);
    conn.execute(
        &format!(
            "CREATE OR REPLACE TEMP TABLE hv_rh AS WITH {} SELECT dn, v64, visitor, us, id, kind,
               name, path, referrer, source, utm_source, utm_medium, utm_campaign, utm_term,
               utm_content, country, browser, os, device, language, screen_width, sess FROM w",
            h.text
        ),
        params_from_iter(h.params.iter()),
    )?;
    let n: u64 = conn.query_row("SELECT count(*) FROM hv_rh", [], |r| r.get(0))?;
    if n == 0 {
        return Ok(false);
    }
    conn.execute_batch(
        "CREATE OR REPLACE TEMP TABLE hv_rs AS
           SELECT dn, visitor, sess, min(us) AS t0, max(us) - min(us) AS dur_us,
                  count(*) FILTER (WHERE kind = 0) AS pv,
                  count(*) FILTER (WHERE kind = 1) AS ev,
                  arg_min(path, us) FILTER (WHERE kind = 0) AS entry_page,
                  arg_max(path, us) FILTER (WHERE kind = 0) AS exit_page
           FROM hv_rh GROUP BY dn, visitor, sess",
    )?;
    conn.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE {out}_rv AS
           SELECT dn AS day, v64 AS visitor,
                  bit_or(CASE WHEN q < 64 THEN 1::UBIGINT << q ELSE 0::UBIGINT END) AS q_lo,
                  bit_or(CASE WHEN q >= 64 THEN 1::UBIGINT << (q - 64) ELSE 0::UBIGINT END) AS q_hi
           FROM (SELECT dn, v64, ((us - dn * {DAY_US}) // {SLOT_US})::UBIGINT AS q FROM hv_rh)
           GROUP BY dn, v64"
    ))?;
    conn.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE {out}_rq AS
           SELECT dn AS day, slot, sum(pv)::UBIGINT AS pageviews, sum(ev)::UBIGINT AS events,
                  sum(s)::UBIGINT AS sessions, sum(b)::UBIGINT AS bounces,
                  sum(d)::HUGEINT AS dur_us, sum(spv)::UBIGINT AS sess_pv
           FROM (
             SELECT dn, us // {SLOT_US} AS slot, count(*) FILTER (WHERE kind = 0) AS pv,
                    count(*) FILTER (WHERE kind = 1) AS ev, 0 AS s, 0 AS b, 0 AS d, 0 AS spv
             FROM hv_rh GROUP BY dn, slot
             UNION ALL
             SELECT dn, t0 // {SLOT_US} AS slot, 0, 0, count(*),
                    count(*) FILTER (WHERE pv = 1 AND ev = 0), sum(dur_us), sum(pv)
             FROM hv_rs GROUP BY dn, slot
           ) GROUP BY dn, slot"
    ))?;
    if !values {
        conn.execute_batch(&format!(
            "CREATE OR REPLACE TEMP TABLE {out}_rval AS SELECT * FROM rollup_values LIMIT 0"
        ))?;
        return Ok(true);
    }
    // Every dimension in one pass: each hit unnested into one (dim, value)
    // row per dimension, counted per visitor first and then per value (a
    // plain count is cheaper than count(DISTINCT), and one aggregate is
    // cheaper than seventeen). Visitors are distinct per day (`v64` within
    // `dn`); entry and exit pages count sessions.
    let (mut hit_dims, mut sess_dims) = (Vec::new(), Vec::new());
    for (dim, name) in Dim::ALL {
        let pair = format!("{{'d': '{name}', 'v': ({})::VARCHAR}}", dim.expr());
        match dim {
            Dim::EntryPage | Dim::ExitPage => sess_dims.push(pair),
            Dim::Event => {}
            _ => hit_dims.push(pair),
        }
    }
    conn.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE {out}_rval AS
           SELECT dn AS day, d AS dim, v AS value, count(*)::UBIGINT AS visitors,
                  sum(c)::UBIGINT AS count
           FROM (
             SELECT dn, x.d AS d, x.v AS v, v64, count(*) FILTER (WHERE kind = 0) AS c
             FROM (SELECT dn, v64, kind, unnest([{hit}]) AS x FROM hv_rh) GROUP BY ALL
             UNION ALL
             SELECT dn, 'event', ({event})::VARCHAR, v64, count(*)
             FROM hv_rh WHERE kind = 1 GROUP BY ALL
             UNION ALL
             SELECT dn, x.d, x.v, visitor // 65536, count(*)
             FROM (SELECT dn, visitor, unnest([{sess}]) AS x FROM hv_rs) GROUP BY ALL
           ) GROUP BY dn, d, v",
        hit = hit_dims.join(", "),
        event = Dim::Event.expr(),
        sess = sess_dims.join(", "),
    ))?;
    Ok(true)
}

/// Drops the helpers of a derivation and its results under `out`.
pub(crate) fn drop_derived(conn: &Connection, out: Option<&str>) {
    for t in HELPERS {
        let _ = conn.execute_batch(&format!("DROP TABLE IF EXISTS {t}"));
    }
    for t in out
        .into_iter()
        .flat_map(|o| RESULTS.map(|r| format!("{o}_{r}")))
    {
        let _ = conn.execute_batch(&format!("DROP TABLE IF EXISTS {t}"));
    }
}

/// What one [`refresh`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Refreshed {
    /// (site, day) rollups built or rebuilt.
    pub days: usize,
    /// True if stale days remain (the budget ran out).
    pub more: bool,
}

/// A (site, day) whose rollup is missing or no longer matches its hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stale {
    pub site_id: u16,
    /// UTC day number.
    pub day: i32,
    /// Its hits now.
    pub hits: u64,
}

/// Builds the rollups of up to `max_days` (site, day) pairs before the
/// current UTC day whose rollup is missing or no longer matches its hits,
/// oldest first, each contiguous stretch of days in one transaction.
/// Must run on the connection of DuckDB's only writer.
pub(crate) fn refresh(
    conn: &Connection,
    now: Timestamp,
    max_days: usize,
    max_hits: u64,
) -> Result<Refreshed, QueryError> {
    let stale = stale(conn, now)?;
    let take = step(&stale, max_days, max_hits);
    build(conn, &stale[..take])?;
    Ok(Refreshed {
        days: take,
        more: stale.len() > take,
    })
}

/// How many of `stale`'s first days fit in `max_days` and `max_hits`
/// together (but always one, if any).
pub fn step(stale: &[Stale], max_days: usize, max_hits: u64) -> usize {
    let mut take = 0;
    let mut hits = 0u64;
    while take < stale.len().min(max_days.max(1)) {
        hits += stale[take].hits;
        if take > 0 && hits > max_hits {
            break;
        }
        take += 1;
    }
    take
}

/// Every (site, day) before the current UTC day whose rollup is missing or
/// no longer matches its hits, by site and day: one scan of the key columns
/// of the hits.
pub(crate) fn stale(conn: &Connection, now: Timestamp) -> Result<Vec<Stale>, QueryError> {
    let today = now.as_microsecond().div_euclid(DAY_US);
    let mut stmt = conn.prepare(&format!(
        "WITH c AS (
           SELECT site_id, (epoch_us(ts) // {DAY_US})::INTEGER AS day, count(*) AS n,
                  sum(id)::HUGEINT AS s
           FROM hits WHERE ts < make_timestamp(?::BIGINT)::TIMESTAMPTZ GROUP BY ALL
         )
         SELECT coalesce(c.site_id, d.site_id), coalesce(c.day, d.day), coalesce(c.n, 0)
         FROM c FULL OUTER JOIN rollup_days d ON c.site_id = d.site_id AND c.day = d.day
         WHERE d.hits IS DISTINCT FROM coalesce(c.n, 0)
            OR d.id_sum IS DISTINCT FROM coalesce(c.s, 0)
            OR d.version IS DISTINCT FROM {VERSION}
         ORDER BY 1, 2"
    ))?;
    let stale = stmt
        .query_map([today * DAY_US], |r| {
            Ok(Stale {
                site_id: r.get(0)?,
                day: r.get(1)?,
                hits: r.get(2)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(stale)
}

/// Builds (or rebuilds) the rollups of `days` (from [`stale`]), each
/// contiguous stretch of a site's days in one transaction. A day whose hits
/// changed since [`stale`] saw it is built from its hits now.
pub(crate) fn build(conn: &Connection, days: &[Stale]) -> Result<(), QueryError> {
    // Contiguous stretches per site.
    let mut runs: Vec<(u16, i32, i32)> = Vec::new();
    for &Stale {
        site_id: site, day, ..
    } in days
    {
        match runs.last_mut() {
            Some((s, _, last)) if *s == site && *last + 1 == day => *last = day,
            _ => runs.push((site, day, day)),
        }
    }
    for (site, first, last) in &runs {
        let run = (|| -> Result<(), duckdb::Error> {
            conn.execute_batch("BEGIN TRANSACTION")?;
            for t in [
                "rollup_days",
                "rollup_visitors",
                "rollup_slots",
                "rollup_values",
            ] {
                conn.execute(
                    &format!("DELETE FROM {t} WHERE site_id = ? AND day BETWEEN ? AND ?"),
                    duckdb::params![site, first, last],
                )?;
            }
            let range = (i64::from(*first) * DAY_US, (i64::from(*last) + 1) * DAY_US);
            if derive(conn, *site, &[range], true, "hv")? {
                conn.execute(
                    "INSERT INTO rollup_visitors SELECT ?, day, visitor, q_lo, q_hi FROM hv_rv",
                    [site],
                )?;
                conn.execute(
                    "INSERT INTO rollup_slots SELECT ?, day, slot, pageviews, events, sessions,
                       bounces, dur_us, sess_pv FROM hv_rq",
                    [site],
                )?;
                conn.execute(
                    "INSERT INTO rollup_values
                     SELECT ?, day, dim, value, visitors, count FROM hv_rval",
                    [site],
                )?;
            }
            // The checksums of the very hits derived above (same transaction).
            conn.execute(
                &format!(
                    "INSERT INTO rollup_days
                     SELECT ?, d.day, {VERSION}, coalesce(c.n, 0), coalesce(c.s, 0), now()
                     FROM range(?, ? + 1) d(day)
                     LEFT JOIN (SELECT epoch_us(ts) // {DAY_US} AS day, count(*) AS n,
                                       sum(id)::HUGEINT AS s
                                FROM hits WHERE site_id = {site}
                                  AND ts >= make_timestamp({a}::BIGINT)::TIMESTAMPTZ
                                  AND ts < make_timestamp({b}::BIGINT)::TIMESTAMPTZ
                                GROUP BY 1) c ON c.day = d.day",
                    a = range.0,
                    b = range.1,
                ),
                duckdb::params![site, first, last],
            )?;
            conn.execute_batch("COMMIT")
        })();
        drop_derived(conn, Some("hv"));
        if let Err(e) = run {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e.into());
        }
    }
    Ok(())
}

/// How a window is answered: whole UTC days from valid rollups, the rest
/// from raw hits.
struct Plan {
    /// Days answered by rollups, in order.
    rolled: Vec<i32>,
    /// UTC ranges (microseconds) derived from raw hits.
    raw: Vec<(i64, i64)>,
}

/// The whole UTC days of `w`: `[first, end)` as day numbers.
fn full_days(w: &Window) -> (i64, i64) {
    let (from, to) = (w.from.as_microsecond(), w.to.as_microsecond());
    let first = from.div_euclid(DAY_US) + i64::from(from.rem_euclid(DAY_US) != 0);
    (first, to.div_euclid(DAY_US))
}

/// The days of `[first_full, end_full)` whose rollup matches the site's
/// hits, in order.
fn rolled_days(
    conn: &Connection,
    site_id: u16,
    first_full: i64,
    end_full: i64,
) -> Result<Vec<i32>, duckdb::Error> {
    if first_full >= end_full {
        return Ok(Vec::new());
    }
    // Bounds written into the text, so that DuckDB prunes by them.
    let mut stmt = conn.prepare(&format!(
        "SELECT d.day FROM rollup_days d
         LEFT JOIN (SELECT epoch_us(ts) // {DAY_US} AS day, count(*) AS n,
                           sum(id)::HUGEINT AS s
                    FROM hits WHERE site_id = {site_id}
                      AND ts >= make_timestamp({a}::BIGINT)::TIMESTAMPTZ
                      AND ts < make_timestamp({b}::BIGINT)::TIMESTAMPTZ
                    GROUP BY 1) c ON c.day = d.day
         WHERE d.site_id = {site_id} AND d.day >= {first_full} AND d.day < {end_full}
           AND d.version = {VERSION}
           AND d.hits = coalesce(c.n, 0) AND d.id_sum = coalesce(c.s, 0)
         ORDER BY 1",
        a = first_full * DAY_US,
        b = end_full * DAY_US,
    ))?;
    stmt.query_map([], |r| r.get::<_, i32>(0))?
        .collect::<Result<_, _>>()
}

impl Plan {
    /// `w` cut into the `rolled` days and the ranges around them.
    fn new(w: &Window, rolled: Vec<i32>) -> Plan {
        let (from, to) = (w.from.as_microsecond(), w.to.as_microsecond());
        let mut raw: Vec<(i64, i64)> = Vec::new();
        let mut cur = from;
        for &d in &rolled {
            let (a, b) = (i64::from(d) * DAY_US, (i64::from(d) + 1) * DAY_US);
            if cur < a {
                raw.push((cur, a));
            }
            cur = b;
        }
        if cur < to {
            raw.push((cur, to));
        }
        Plan { rolled, raw }
    }
}

/// A stats reader as the rollup path sees it: its connection, the store's
/// change counters, and its cache.
pub(crate) struct ReaderRef<'a> {
    pub(crate) conn: &'a Connection,
    pub(crate) changes: &'a Changes,
    pub(crate) cache: &'a RefCell<Cache>,
}

/// Plans `w`, reusing this reader's last plan of the same days while no
/// past day has changed since.
fn plan(r: &ReaderRef, w: &Window) -> Result<Plan, duckdb::Error> {
    let (first_full, end_full) = full_days(w);
    let key = (w.site_id, first_full, end_full);
    let seen = r.changes.past.load(Ordering::Acquire);
    let rolled = r.cache.borrow_mut().plan(key, seen, || {
        rolled_days(r.conn, w.site_id, first_full, end_full)
    })?;
    Ok(Plan::new(w, rolled))
}

/// The whole UTC days of `w` (in order) on which the hit-level `filters`
/// select whole visitors: days with a valid rollup on which every visitor
/// had a single value of each filtered dimension (the day's distinct
/// visitors of the dimension's values add up to its visitors). There a
/// visitor's hits of the day are all selected or none, so a session with a
/// selected hit has only selected hits, and the raw path groups the
/// sessions from the selected hits alone (see `sql::touched_sessions`).
/// None where a filter is on a property, an event name or a session, or
/// without filters.
pub(crate) fn whole_visitor_days(
    r: &ReaderRef,
    w: &Window,
    filters: &[Filter],
) -> Result<Vec<i32>, StatsError> {
    let mut names: Vec<&str> = Vec::new();
    for f in filters {
        let name = match &f.field {
            Field::Dim(d) if !d.is_session() && *d != Dim::Event => {
                Dim::ALL.iter().find(|(x, _)| x == d).map(|(_, n)| *n)
            }
            _ => None,
        };
        match name {
            Some(n) => names.push(n),
            None => return Ok(Vec::new()),
        }
    }
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    check_window(w)?;
    let p = plan(r, w)?;
    let (Some(first), Some(last)) = (p.rolled.first(), p.rolled.last()) else {
        return Ok(Vec::new());
    };
    let site = w.site_id;
    let dims = names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut stmt = r.conn.prepare(&format!(
        "WITH days AS (
           SELECT day, count(*) AS n FROM rollup_visitors
           WHERE site_id = {site} AND day BETWEEN {first} AND {last} GROUP BY day
         ), per AS (
           SELECT day, dim, sum(visitors) AS s FROM rollup_values
           WHERE site_id = {site} AND day BETWEEN {first} AND {last} AND dim IN ({dims})
           GROUP BY day, dim
         )
         SELECT day FROM days JOIN per USING (day)
         GROUP BY day HAVING count(*) FILTER (WHERE s = n) = {count}
         ORDER BY day",
        count = names.len()
    ))?;
    let uniform: std::collections::HashSet<i32> = stmt
        .query_map([], |row| row.get::<_, i32>(0))?
        .collect::<Result<_, _>>()?;
    Ok(p.rolled
        .into_iter()
        .filter(|d| uniform.contains(d))
        .collect())
}

/// The tables of `ranges` derived from `site_id`'s raw hits (with the panel
/// values if `values`), from this reader's cache while nothing that could
/// change them was committed since; `None` if the ranges hold no hits.
fn derived(
    r: &ReaderRef,
    site_id: u16,
    ranges: &[(i64, i64)],
    values: bool,
) -> Result<Option<String>, duckdb::Error> {
    let conn = r.conn;
    r.cache.borrow_mut().derived(
        r.changes,
        site_id,
        ranges,
        values,
        |out| {
            let found = derive(conn, site_id, ranges, values, out);
            drop_derived(conn, None);
            if found.is_err() {
                drop_derived(conn, Some(out));
            }
            found
        },
        |tables| drop_derived(conn, tables),
    )
}

/// The relations of a planned window as CTEs `av`, `aq`, `aval` over the
/// rollups of the `rolled` days and the derived tables (prefixes) `raw`.
fn union_ctes(site_id: u16, p: &Plan, raw: &[String]) -> Sql {
    // Rolled-up days as ranges (they are mostly one stretch).
    let mut ranges: Vec<(i32, i32)> = Vec::new();
    for &d in &p.rolled {
        match ranges.last_mut() {
            Some((_, last)) if *last + 1 == d => *last = d,
            _ => ranges.push((d, d)),
        }
    }
    let days = if ranges.is_empty() {
        "FALSE".to_owned()
    } else {
        ranges
            .iter()
            .map(|(a, b)| format!("day BETWEEN {a} AND {b}"))
            .collect::<Vec<_>>()
            .join(" OR ")
    };
    let pick = format!("site_id = {site_id} AND ({days})");
    let (mut rv, mut rq, mut rval) = (String::new(), String::new(), String::new());
    for t in raw {
        rv += &format!(" UNION ALL SELECT day, visitor, q_lo, q_hi FROM {t}_rv");
        rq += &format!(
            " UNION ALL SELECT day, slot, pageviews, events, sessions, bounces, dur_us, sess_pv \
             FROM {t}_rq"
        );
        rval += &format!(" UNION ALL SELECT day, dim, value, visitors, count FROM {t}_rval");
    }
    Sql {
        text: format!(
            "WITH av AS (
               SELECT day, visitor, q_lo, q_hi FROM rollup_visitors WHERE {pick} {rv}
             ), aq AS (
               SELECT day, slot, pageviews, events, sessions, bounces, dur_us, sess_pv
               FROM rollup_slots WHERE {pick} {rq}
             ), aval AS (
               SELECT day, dim, value, visitors, count FROM rollup_values WHERE {pick} {rval}
             )"
        ),
        params: Vec::new(),
    }
}

fn kpis(conn: &Connection, u: &Sql) -> Result<Kpis, duckdb::Error> {
    let text = format!(
        "{}
        SELECT (SELECT count(*) FROM av), coalesce(sum(pageviews), 0)::UBIGINT,
               coalesce(sum(events), 0)::UBIGINT, coalesce(sum(sessions), 0)::UBIGINT,
               coalesce(sum(bounces), 0)::UBIGINT, coalesce(sum(dur_us), 0)::DOUBLE,
               coalesce(sum(sess_pv), 0)::UBIGINT
        FROM aq",
        u.text
    );
    let mut stmt = conn.prepare(&text)?;
    stmt.query_row(params_from_iter(u.params.iter()), |r| {
        let sessions: u64 = r.get(3)?;
        let bounces: u64 = r.get(4)?;
        let dur_us: f64 = r.get(5)?;
        let sess_pv: u64 = r.get(6)?;
        let per = |x: f64| {
            if sessions == 0 {
                0.0
            } else {
                x / sessions as f64
            }
        };
        Ok(Kpis {
            visitors: r.get(0)?,
            pageviews: r.get(1)?,
            events: r.get(2)?,
            sessions,
            bounces,
            bounce_rate: per(bounces as f64),
            avg_duration_s: per(dur_us) / 1e6,
            views_per_visit: per(sess_pv as f64),
            engagement: Default::default(),
        })
    })
}

/// Plans `w`, derives its raw part, and runs `f` with the union CTEs.
fn with_window<T>(
    r: &ReaderRef,
    w: &Window,
    values: bool,
    f: impl FnOnce(&Sql) -> Result<T, StatsError>,
) -> Result<T, StatsError> {
    check_window(w)?;
    let p = plan(r, w)?;
    tracing::debug!(rolled = p.rolled.len(), raw = ?p.raw, "stats window planned");
    let tables = derived(r, w.site_id, &p.raw, values)?;
    f(&union_ctes(w.site_id, &p, tables.as_slice()))
}

/// The KPIs of an unfiltered window, from rollups where they are valid.
fn kpis_unfiltered(r: &ReaderRef, w: &Window) -> Result<Kpis, StatsError> {
    with_window(r, w, false, |u| Ok(kpis(r.conn, u)?))
}

/// [`crate::stats::Stats::overview`] without filters, from rollups where they
/// are valid. `None` if the zone's bucket edges are not on quarter hours.
pub(crate) fn overview_unfiltered(
    r: &ReaderRef,
    w: &Window,
    prev: &Window,
    interval: Interval,
    panels: &[Dim],
    limit: usize,
) -> Result<Option<Overview>, StatsError> {
    check_window(w)?;
    let labels = buckets(w, interval);
    let bounds = bucket_bounds(w, interval, &labels);
    if bounds.iter().any(|&(_, a, b)| {
        a.rem_euclid(SLOT_US) != 0 && a != w.from.as_microsecond()
            || b.rem_euclid(SLOT_US) != 0 && b != w.to.as_microsecond()
    }) {
        return Ok(None);
    }
    let conn = r.conn;
    let previous = kpis_unfiltered(r, prev)?;
    let current = with_window(r, w, true, |u| {
        let kpis = kpis(conn, u)?;
        let series = series(conn, u, &labels, &bounds)?;
        let breakdowns = breakdowns(conn, u, panels, limit, kpis.visitors)?;
        Ok((kpis, series, breakdowns))
    })?;
    let (kpis, series, breakdowns) = current;
    Ok(Some(Overview {
        kpis,
        previous,
        series,
        breakdowns,
    }))
}

fn series(
    conn: &Connection,
    u: &Sql,
    labels: &[String],
    bounds: &[(usize, i64, i64)],
) -> Result<Vec<Point>, duckdb::Error> {
    // Each bucket cut into its pieces per UTC day, as quarter-hour masks.
    conn.execute_batch(
        "CREATE OR REPLACE TEMP TABLE hv_seg (b INTEGER, day INTEGER, lo UBIGINT, hi UBIGINT);
         CREATE OR REPLACE TEMP TABLE hv_bk (b INTEGER, s0 BIGINT, s1 BIGINT)",
    )?;
    {
        // One mask per bucket and day, so that a visitor counts once per
        // bucket however many stretches of it fall into the day.
        let mut masks: std::collections::BTreeMap<(usize, i64), (u64, u64)> = Default::default();
        let mut bk = conn.appender("hv_bk")?;
        for &(b, a, z) in bounds {
            // Slots of the stretch, the window's ends rounded outwards (the
            // raw part only holds hits inside the window anyway).
            let (s0, s1) = (a.div_euclid(SLOT_US), (z + SLOT_US - 1).div_euclid(SLOT_US));
            bk.append_row(duckdb::params![b as i32, s0, s1])?;
            let mut day = a.div_euclid(DAY_US);
            while day * DAY_US < z {
                let (d0, d1) = (day * DAY_US, (day + 1) * DAY_US);
                let q0 = (a.max(d0) - d0).div_euclid(SLOT_US);
                let q1 = (z.min(d1) - d0 + SLOT_US - 1).div_euclid(SLOT_US);
                let m = masks.entry((b, day)).or_default();
                for q in q0..q1 {
                    if q < 64 {
                        m.0 |= 1 << q;
                    } else {
                        m.1 |= 1 << (q - 64);
                    }
                }
                day += 1;
            }
        }
        drop(bk);
        let mut seg = conn.appender("hv_seg")?;
        for ((b, day), (lo, hi)) in masks {
            seg.append_row(duckdb::params![b as i32, day as i32, lo, hi])?;
        }
    }
    // A piece that is a whole UTC day takes the day's visitor count; only
    // the pieces of days that several buckets share need the masks.
    let text = format!(
        "{}
        , whole AS (SELECT * FROM hv_seg WHERE lo = {ALL_LO} AND hi = {ALL_HI})
        , part AS (SELECT * FROM hv_seg WHERE NOT (lo = {ALL_LO} AND hi = {ALL_HI}))
        , per_day AS (
          SELECT day, count(*) AS n FROM av WHERE day IN (SELECT day FROM whole) GROUP BY day
        ), v AS (
          SELECT b, sum(n) AS n FROM (
            SELECT w.b, d.n FROM whole w JOIN per_day d ON d.day = w.day
            UNION ALL
            SELECT s.b, count(*) FROM av JOIN part s ON av.day = s.day
            WHERE (av.q_lo & s.lo) <> 0 OR (av.q_hi & s.hi) <> 0 GROUP BY s.b
          ) GROUP BY b
        ), q AS (
          SELECT k.b, sum(pageviews) AS pv, sum(sessions) AS se
          FROM aq JOIN hv_bk k ON aq.slot >= k.s0 AND aq.slot < k.s1 GROUP BY k.b
        )
        SELECT k.b, coalesce(v.n, 0)::UBIGINT, coalesce(q.pv, 0)::UBIGINT, coalesce(q.se, 0)::UBIGINT
        FROM hv_bk k LEFT JOIN v ON v.b = k.b LEFT JOIN q ON q.b = k.b",
        u.text
    );
    let mut stmt = conn.prepare(&text)?;
    let found: std::collections::HashMap<i32, (u64, u64, u64)> = stmt
        .query_map(params_from_iter(u.params.iter()), |r| {
            Ok((r.get::<_, i32>(0)?, (r.get(1)?, r.get(2)?, r.get(3)?)))
        })?
        .collect::<Result<_, _>>()?;
    let _ = conn.execute_batch("DROP TABLE IF EXISTS hv_seg; DROP TABLE IF EXISTS hv_bk");
    Ok(labels
        .iter()
        .enumerate()
        .map(|(i, start)| {
            let (visitors, pageviews, sessions) =
                found.get(&(i as i32)).copied().unwrap_or((0, 0, 0));
            Point {
                start: start.clone(),
                visitors,
                pageviews,
                sessions,
            }
        })
        .collect())
}

fn breakdowns(
    conn: &Connection,
    u: &Sql,
    panels: &[Dim],
    limit: usize,
    total: u64,
) -> Result<Vec<(Dim, Vec<Row>)>, duckdb::Error> {
    if panels.is_empty() {
        return Ok(Vec::new());
    }
    let names = panels
        .iter()
        .map(|d| format!("'{}'", d.name()))
        .collect::<Vec<_>>()
        .join(",");
    let text = format!(
        "{}
        SELECT dim, value, v, c FROM (
          SELECT dim, value, sum(visitors)::UBIGINT AS v, sum(count)::UBIGINT AS c,
                 row_number() OVER (PARTITION BY dim
                   ORDER BY sum(visitors) DESC, sum(count) DESC, value NULLS LAST) AS rn
          FROM aval WHERE dim IN ({names}) GROUP BY dim, value
        ) WHERE rn <= {limit} ORDER BY dim, rn",
        u.text
    );
    let mut stmt = conn.prepare(&text)?;
    let mut by_dim: std::collections::HashMap<String, Vec<Row>> = Default::default();
    let rows = stmt.query_map(params_from_iter(u.params.iter()), |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<String>>(1)?,
            r.get::<_, u64>(2)?,
            r.get::<_, u64>(3)?,
        ))
    })?;
    for row in rows {
        let (dim, value, visitors, count) = row?;
        by_dim.entry(dim).or_default().push(Row {
            value,
            visitors,
            count,
            share: if total == 0 {
                0.0
            } else {
                visitors as f64 / total as f64
            },
            engagement: None,
        });
    }
    Ok(panels
        .iter()
        .map(|d| (*d, by_dim.remove(d.name()).unwrap_or_default()))
        .collect())
}
