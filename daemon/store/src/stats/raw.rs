//! The raw path: every number computed from the window's raw hits, with
//! the SQL of `sql`. Filtered queries always take it; the unfiltered
//! overview takes it where rollups cannot answer (see `rollup`).

use duckdb::{Connection, params_from_iter};

use crate::stats::model::{Dim, Filter, Interval, Kpis, Overview, Point, Row, StatsError, Window};
use crate::stats::sql::{
    LABEL, Sql, base, base_hits, buckets, conds, hits_cte, local_expr, selection_cte,
    touched_sessions,
};

/// The KPIs of the selection `base` makes (`sel`, `sess_sel`), each
/// relation read once (a CTE read more than once is materialised whole).
pub(crate) fn kpis(conn: &Connection, base: &Sql) -> Result<Kpis, StatsError> {
    kpis_with(
        conn,
        base,
        "SELECT count(DISTINCT visitor), count(*) FILTER (WHERE kind = 0),
                count(*) FILTER (WHERE kind = 1) FROM sel",
    )
}

/// The KPIs with the visitors, pageviews and events from `hit_numbers` (a
/// query of one row) and the session numbers from `sess_sel` of `base`.
fn kpis_with(conn: &Connection, base: &Sql, hit_numbers: &str) -> Result<Kpis, StatsError> {
    let text = format!(
        "{}
        SELECT * FROM ({hit_numbers}),
          (SELECT count(*), count(*) FILTER (WHERE pv = 1 AND ev = 0),
                  coalesce(avg(dur_us), 0) / 1e6, coalesce(sum(pv), 0) FROM sess_sel)",
        base.text
    );
    let mut stmt = conn.prepare(&text)?;
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
            engagement: Default::default(),
        })
    })?;
    Ok(k)
}

/// The series of the selection `base` makes, in `w`'s buckets.
pub(crate) fn timeseries(
    conn: &Connection,
    base: &Sql,
    w: &Window,
    interval: Interval,
) -> Result<Vec<Point>, StatsError> {
    let hb = format!(
        "SELECT {} AS b, count(DISTINCT visitor) AS visitors,
                count(*) FILTER (WHERE kind = 0) AS pageviews
         FROM sel GROUP BY b",
        bucket(w, interval, "ts")
    );
    timeseries_with(conn, base, w, interval, &hb)
}

/// The start of the bucket (a local TIMESTAMP) of the TIMESTAMPTZ column `col`.
fn bucket(w: &Window, interval: Interval, col: &str) -> String {
    format!("date_trunc('{}', {})", interval.unit(), local_expr(w, col))
}

/// The series with the visitors and pageviews per bucket from `hb` (columns
/// `b`, `visitors`, `pageviews`) and the sessions from `sess_sel` of `base`.
/// Grouped by the bucket's start and labelled once per bucket (formatting
/// every hit's time was a third of a filtered year's series).
fn timeseries_with(
    conn: &Connection,
    base: &Sql,
    w: &Window,
    interval: Interval,
    hb: &str,
) -> Result<Vec<Point>, StatsError> {
    let sess_bucket = bucket(w, interval, "t0");
    let text = format!(
        "{b}
        , hb AS ({hb}), sb AS (
          SELECT {sess_bucket} AS b, count(*) AS sessions FROM sess_sel GROUP BY b
        )
        SELECT strftime(coalesce(hb.b, sb.b), '{LABEL}'), coalesce(visitors, 0),
               coalesce(pageviews, 0), coalesce(sessions, 0)
        FROM hb FULL OUTER JOIN sb ON hb.b = sb.b",
        b = base.text
    );
    let mut stmt = conn.prepare(&text)?;
    let found: std::collections::HashMap<String, (u64, u64, u64)> = stmt
        .query_map(params_from_iter(base.params.iter()), |r| {
            Ok((r.get::<_, String>(0)?, (r.get(1)?, r.get(2)?, r.get(3)?)))
        })?
        .collect::<Result<_, _>>()?;
    Ok(buckets(w, interval)
        .into_iter()
        .map(|start| {
            let (visitors, pageviews, sessions) = found.get(&start).copied().unwrap_or((0, 0, 0));
            Point {
                start,
                visitors,
                pageviews,
                sessions,
            }
        })
        .collect())
}

/// The top `limit` values of `dim` in the selection `base` makes. `visitors`
/// is the selection's visitors if the caller knows them already (the share's
/// denominator; counting them is a third of a panel's cost).
pub(crate) fn breakdown(
    conn: &Connection,
    base: &Sql,
    dim: Dim,
    limit: usize,
    visitors: Option<u64>,
) -> Result<Vec<Row>, StatsError> {
    let (from, value, count, extra) = if dim.is_session() {
        ("sess_sel", dim.expr(), "count(*)", "")
    } else if dim == Dim::Event {
        ("sel", dim.expr(), "count(*)", "WHERE kind = 1")
    } else {
        ("sel", dim.expr(), "count(*) FILTER (WHERE kind = 0)", "")
    };
    let total = match visitors {
        Some(n) => format!("SELECT {n}::BIGINT AS n"),
        None => "SELECT count(DISTINCT visitor) AS n FROM sel".to_owned(),
    };
    let text = format!(
        "{b}
        , total AS ({total})
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
    panel_rows(conn, &text, params_from_iter(base.params.iter()))
}

/// The custom events the filters select (the `events` of [`super::Stats::kpis`],
/// without deriving sessions where no filter needs them).
pub(crate) fn event_count(
    conn: &Connection,
    w: &Window,
    filters: &[Filter],
) -> Result<u64, StatsError> {
    let b = base_hits(w, filters)?;
    let text = format!("{} SELECT count(*) FROM sel WHERE kind = 1", b.text);
    let mut stmt = conn.prepare(&text)?;
    Ok(stmt.query_row(params_from_iter(b.params.iter()), |r| r.get(0))?)
}

/// [`super::Stats::overview`] from the raw hits only, whatever the filters.
/// `whole` and `whole_prev` are the days of `w` and `prev` on which the
/// filters select whole visitors (`rollup::whole_visitor_days`; none is
/// always right, only slower).
#[allow(clippy::too_many_arguments)]
pub(crate) fn overview(
    conn: &Connection,
    w: &Window,
    prev: &Window,
    filters: &[Filter],
    interval: Interval,
    panels: &[Dim],
    limit: usize,
    (whole, whole_prev): (&[i32], &[i32]),
) -> Result<Overview, StatsError> {
    let c = conds(w, filters);
    let result = if c.sess_free() {
        overview_hit_filters(conn, w, filters, interval, panels, limit, whole)
    } else {
        overview_sess_filters(conn, w, filters, interval, panels, limit)
    }
    .and_then(|(kpis, series, breakdowns)| {
        let previous = if c.sess_free() {
            let (hits, sess) = (
                base_hits(prev, filters)?,
                touched_sessions(prev, &conds(prev, filters), whole_prev)?,
            );
            let mut params = hits.params;
            params.extend(sess.params);
            self::kpis(
                conn,
                &Sql {
                    text: format!("{}, sess_sel AS ({})", hits.text, sess.text),
                    params,
                },
            )?
        } else {
            self::kpis(conn, &base(prev, filters)?)?
        };
        Ok(Overview {
            kpis,
            previous,
            series,
            breakdowns,
        })
    });
    let _ = conn.execute_batch(
        "DROP TABLE IF EXISTS hv_h; DROP TABLE IF EXISTS hv_sel; DROP TABLE IF EXISTS hv_sess;
         DROP TABLE IF EXISTS hv_r; DROP TABLE IF EXISTS hv_rm",
    );
    result
}

/// The KPIs, series and panels of an overview.
type Parts = (Kpis, Vec<Point>, Vec<(Dim, Vec<Row>)>);

/// True for the panels [`overview_hit_filters`] answers from its
/// per-visitor table: the hit dimensions a visitor mostly keeps (all but
/// the page and the event name).
fn per_visitor(d: Dim) -> bool {
    !d.is_session() && !matches!(d, Dim::Page | Dim::Event)
}

/// The overview's own window when every filter is on hits.
///
/// Grouping the selected hits by (value, visitor) once per panel was most
/// of a filtered year's cost. Here they are grouped once, into `hv_r`:
/// one row per visitor, chart bucket and combination of the values of the
/// [`per_visitor`] panels, with its pageviews and events. A visitor with a
/// single row (`hv_rm` lists the others) has one value of every such
/// dimension, so its row adds one visitor to that value and a panel is a
/// plain count over those rows; the few visitors with several rows are
/// grouped by (value, visitor) as before. The KPIs and the chart come from
/// `hv_r` too, the session numbers from `hv_sess` (the sessions with a
/// selected hit, from the selected hits alone on the `whole` days: see
/// [`touched_sessions`]), the page and event panels from the filtered scan.
fn overview_hit_filters(
    conn: &Connection,
    w: &Window,
    filters: &[Filter],
    interval: Interval,
    panels: &[Dim],
    limit: usize,
    whole: &[i32],
) -> Result<Parts, StatsError> {
    let c = conds(w, filters);
    let hits = base_hits(w, filters)?;
    let dims: Vec<Dim> = panels.iter().copied().filter(|d| per_visitor(*d)).collect();
    let cols: String = dims
        .iter()
        .enumerate()
        .map(|(i, d)| format!("({}) AS d{i}, ", d.expr()))
        .collect();
    conn.execute(
        &format!(
            "CREATE OR REPLACE TEMP TABLE hv_r AS {}
             SELECT visitor, {} AS b, {cols}
                    count(*) FILTER (WHERE kind = 0) AS pv, count(*) FILTER (WHERE kind = 1) AS ev
             FROM sel GROUP BY ALL",
            hits.text,
            bucket(w, interval, "ts"),
        ),
        params_from_iter(hits.params.iter()),
    )?;
    conn.execute_batch(
        "CREATE OR REPLACE TEMP TABLE hv_rm AS
         SELECT visitor FROM hv_r GROUP BY visitor HAVING count(*) > 1",
    )?;
    // The sessions need only the few columns they are grouped from (DuckDB
    // reads no other column of the hits for them).
    let sess = touched_sessions(w, &c, whole)?;
    conn.execute(
        &format!("CREATE OR REPLACE TEMP TABLE hv_sess AS {}", sess.text),
        params_from_iter(sess.params.iter()),
    )?;
    let sessions = Sql {
        text: "WITH sess_sel AS (SELECT * FROM hv_sess)".into(),
        params: Vec::new(),
    };
    let current = kpis_with(
        conn,
        &sessions,
        "SELECT count(DISTINCT visitor), coalesce(sum(pv), 0)::UBIGINT,
                coalesce(sum(ev), 0)::UBIGINT FROM hv_r",
    )?;
    let series = timeseries_with(
        conn,
        &sessions,
        w,
        interval,
        "SELECT b, count(DISTINCT visitor) AS visitors, sum(pv)::UBIGINT AS pageviews
         FROM hv_r GROUP BY b",
    )?;
    let visitors = current.visitors;
    let breakdowns = panels
        .iter()
        .map(|&d| {
            let rows = if let Some(i) = dims.iter().position(|x| *x == d) {
                per_visitor_panel(conn, i, limit, visitors)?
            } else if d.is_session() {
                breakdown(conn, &sessions, d, limit, Some(visitors))?
            } else {
                breakdown(conn, &hits, d, limit, Some(visitors))?
            };
            Ok((d, rows))
        })
        .collect::<Result<Vec<_>, StatsError>>()?;
    Ok((current, series, breakdowns))
}

/// The top `limit` values of the `i`th dimension of `hv_r` (see
/// [`overview_hit_filters`]), `visitors` being the selection's.
fn per_visitor_panel(
    conn: &Connection,
    i: usize,
    limit: usize,
    visitors: u64,
) -> Result<Vec<Row>, StatsError> {
    let text = format!(
        "WITH per AS (
          SELECT d{i} AS v, count(*) AS n, sum(pv) AS c
          FROM hv_r ANTI JOIN hv_rm USING (visitor) GROUP BY v
          UNION ALL
          SELECT v, count(*), sum(c) FROM (
            SELECT d{i} AS v, visitor, sum(pv) AS c
            FROM hv_r SEMI JOIN hv_rm USING (visitor) GROUP BY v, visitor
          ) GROUP BY v
        )
        SELECT v, sum(n)::UBIGINT AS visitors, sum(c)::UBIGINT AS c,
               CASE WHEN {visitors} = 0 THEN 0 ELSE sum(n) / {visitors} END
        FROM per
        GROUP BY v
        ORDER BY visitors DESC, c DESC, v NULLS LAST
        LIMIT {limit}"
    );
    panel_rows(conn, &text, [])
}

/// A panel's rows from `text`, whose columns are value, visitors, count and
/// share.
fn panel_rows(
    conn: &Connection,
    text: &str,
    params: impl duckdb::Params,
) -> Result<Vec<Row>, StatsError> {
    let mut stmt = conn.prepare(text)?;
    let rows = stmt
        .query_map(params, |r| {
            Ok(Row {
                value: r.get(0)?,
                visitors: r.get(1)?,
                count: r.get(2)?,
                share: r.get(3)?,
                engagement: None,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// The overview's own window when a filter is on sessions (entry or exit
/// page): the window's hits with their sessions, then the selection and
/// the selected sessions, each into a temporary table read by every number.
fn overview_sess_filters(
    conn: &Connection,
    w: &Window,
    filters: &[Filter],
    interval: Interval,
    panels: &[Dim],
    limit: usize,
) -> Result<Parts, StatsError> {
    let c = conds(w, filters);
    let h = hits_cte(w, &c)?;
    conn.execute(
        &format!(
            "CREATE OR REPLACE TEMP TABLE hv_h AS WITH {} SELECT * FROM h",
            h.text
        ),
        params_from_iter(h.params.iter()),
    )?;
    let sel = selection_cte(&c);
    for (table, rel) in [("hv_sel", "sel"), ("hv_sess", "sess_sel")] {
        conn.execute(
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
    let current = kpis(conn, &cached)?;
    let series = timeseries(conn, &cached, w, interval)?;
    let breakdowns = panels
        .iter()
        .map(|d| {
            Ok((
                *d,
                breakdown(conn, &cached, *d, limit, Some(current.visitors))?,
            ))
        })
        .collect::<Result<Vec<_>, StatsError>>()?;
    Ok((current, series, breakdowns))
}
