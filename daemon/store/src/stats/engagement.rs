//! Time on page and scroll depth: the `engagements` rows of the selected
//! pageviews, added to numbers computed elsewhere (the rollups, the raw
//! hits, imported history).
//!
//! Each row belongs to one pageview (attributed by the writer, see
//! `append`) and carries that pageview's time and path, so a window's
//! engagement is a range scan of `engagements`; filters select the
//! pageviews as they select hits (`sql::base_hits`) and keep the
//! engagement of those.

use std::collections::HashMap;

use duckdb::{Connection, params_from_iter};

use crate::stats::model::{Dim, EngagementSums, Filter, Overview, Row, StatsError, Window};
use crate::stats::sql::base_hits;

/// The engagement of the pageviews `filters` select in `w`: in total, and
/// for each of `paths`.
pub(crate) fn sums(
    conn: &Connection,
    w: &Window,
    filters: &[Filter],
    paths: &[&str],
) -> Result<(EngagementSums, HashMap<String, EngagementSums>), StatsError> {
    use duckdb::types::Value as V;
    let (site, from, to) = (w.site_id, w.from.as_microsecond(), w.to.as_microsecond());
    let scan = format!(
        "SELECT * FROM engagements WHERE site_id = {site}
           AND ts >= make_timestamp({from}::BIGINT)::TIMESTAMPTZ
           AND ts < make_timestamp({to}::BIGINT)::TIMESTAMPTZ"
    );
    let (with, selected, mut params) = if filters.is_empty() {
        crate::stats::model::check_window(w)?;
        ("WITH ".to_owned(), "TRUE".to_owned(), Vec::new())
    } else {
        let b = base_hits(w, filters)?;
        (
            format!("{}, ", b.text),
            "hit_id IN (SELECT id FROM sel WHERE kind = 0)".to_owned(),
            b.params,
        )
    };
    let wanted = if paths.is_empty() {
        "FALSE".to_owned()
    } else {
        format!("path IN ({})", vec!["?"; paths.len()].join(", "))
    };
    params.extend(paths.iter().map(|p| V::Text((*p).to_owned())));
    let text = format!(
        "{with} pv AS (
          SELECT hit_id, any_value(path) AS path, sum(engaged_ms) AS ms, max(scroll_depth) AS sd
          FROM ({scan}) WHERE {selected} GROUP BY hit_id
        )
        SELECT path, grouping(path) AS total, sum(ms)::UBIGINT, count(*)::UBIGINT,
               coalesce(sum(sd), 0)::UBIGINT, count(sd)::UBIGINT
        FROM pv GROUP BY ROLLUP (path)
        HAVING grouping(path) = 1 OR {wanted}"
    );
    let mut stmt = conn.prepare(&text)?;
    let mut total = EngagementSums::default();
    let mut per = HashMap::new();
    let rows = stmt.query_map(params_from_iter(params.iter()), |r| {
        Ok((
            r.get::<_, Option<String>>(0)?,
            r.get::<_, i64>(1)?,
            EngagementSums {
                engaged_ms: r.get::<_, Option<u64>>(2)?.unwrap_or(0),
                pageviews: r.get(3)?,
                scroll_sum: r.get(4)?,
                scrolled: r.get(5)?,
            },
        ))
    })?;
    for row in rows {
        let (path, grouped, s) = row?;
        match (grouped, path) {
            (1, _) => total = s,
            (_, Some(p)) => {
                per.insert(p, s);
            }
            (_, None) => {}
        }
    }
    Ok((total, per))
}

/// Sets the engagement of `kpis` and of the page rows in `rows`.
pub(crate) fn attach(
    conn: &Connection,
    w: &Window,
    filters: &[Filter],
    kpis: &mut crate::stats::model::Kpis,
    rows: Option<&mut Vec<Row>>,
) -> Result<(), StatsError> {
    let paths: Vec<String> = rows
        .as_ref()
        .map(|rs| rs.iter().filter_map(|r| r.value.clone()).collect())
        .unwrap_or_default();
    let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    let (total, per) = sums(conn, w, filters, &refs)?;
    kpis.engagement = total;
    if let Some(rows) = rows {
        for r in rows {
            r.engagement = r.value.as_ref().and_then(|v| per.get(v)).copied();
        }
    }
    Ok(())
}

/// Sets the engagement of an overview: its KPIs, the comparison's, and the
/// page panel's rows.
pub(crate) fn attach_overview(
    conn: &Connection,
    w: &Window,
    prev: &Window,
    filters: &[Filter],
    o: &mut Overview,
) -> Result<(), StatsError> {
    let pages = o
        .breakdowns
        .iter_mut()
        .find(|(d, _)| *d == Dim::Page)
        .map(|(_, rows)| rows);
    attach(conn, w, filters, &mut o.kpis, pages)?;
    attach(conn, prev, filters, &mut o.previous, None)
}
