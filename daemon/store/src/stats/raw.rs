//! The raw path: every number computed from the window's raw hits, with
//! the SQL of `sql`. Filtered queries always take it; the unfiltered
//! overview takes it where rollups cannot answer (see `rollup`).

use duckdb::{Connection, params_from_iter};

use crate::stats::model::{Dim, Filter, Interval, Kpis, Overview, Point, Row, StatsError, Window};
use crate::stats::sql::{
    LABEL, Sql, base, base_hits, buckets, conds, hits_cte, local_expr, selection_cte,
};

/// The KPIs of the selection `base` makes (`sel`, `sess_sel`), each
/// relation read once (a CTE read more than once is materialised whole).
pub(crate) fn kpis(conn: &Connection, base: &Sql) -> Result<Kpis, StatsError> {
    let text = format!(
        "{}
        SELECT * FROM
          (SELECT count(DISTINCT visitor), count(*) FILTER (WHERE kind = 0),
                  count(*) FILTER (WHERE kind = 1) FROM sel),
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
    let (local_hit, local_sess) = (local_expr(w, "ts"), local_expr(w, "t0"));
    let unit = interval.unit();
    // Grouped by the bucket's start, labelled once per bucket (formatting
    // every hit's time was a third of a filtered year's series).
    let text = format!(
        "{b}
        , hb AS (
          SELECT date_trunc('{unit}', {local_hit}) AS b,
                 count(DISTINCT visitor) AS visitors,
                 count(*) FILTER (WHERE kind = 0) AS pageviews
          FROM sel GROUP BY b
        ), sb AS (
          SELECT date_trunc('{unit}', {local_sess}) AS b, count(*) AS sessions
          FROM sess_sel GROUP BY b
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
    let mut stmt = conn.prepare(&text)?;
    let rows = stmt
        .query_map(params_from_iter(base.params.iter()), |r| {
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
pub(crate) fn overview(
    conn: &Connection,
    w: &Window,
    prev: &Window,
    filters: &[Filter],
    interval: Interval,
    panels: &[Dim],
    limit: usize,
) -> Result<Overview, StatsError> {
    let c = conds(w, filters);
    if c.sess_free() {
        // The selected hits are a filtered scan, and the sessions need
        // only the few columns they are grouped from (DuckDB reads no
        // other column of the hits for them).
        let hits = base_hits(w, filters)?;
        conn.execute(
            &format!(
                "CREATE OR REPLACE TEMP TABLE hv_sel AS {} SELECT * FROM sel",
                hits.text
            ),
            params_from_iter(hits.params.iter()),
        )?;
        let (h, sel) = (hits_cte(w, &c)?, selection_cte(&c));
        conn.execute(
            &format!(
                "CREATE OR REPLACE TEMP TABLE hv_sess AS WITH {}, {} SELECT * FROM sess_sel",
                h.text, sel.text
            ),
            params_from_iter(h.params.iter().chain(sel.params.iter())),
        )?;
    } else {
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
    }
    let cached = Sql {
        text: "WITH sel AS (SELECT * FROM hv_sel), sess_sel AS (SELECT * FROM hv_sess)".into(),
        params: Vec::new(),
    };
    let result = (|| {
        let current = kpis(conn, &cached)?;
        let previous = kpis(conn, &base(prev, filters)?)?;
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
        Ok(Overview {
            kpis: current,
            previous,
            series,
            breakdowns,
        })
    })();
    let _ = conn.execute_batch(
        "DROP TABLE IF EXISTS hv_h; DROP TABLE IF EXISTS hv_sel; DROP TABLE IF EXISTS hv_sess",
    );
    result
}
