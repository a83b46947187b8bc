//! Export: every table of a Takeout as Arrow record batches, from one
//! read transaction on a [`Reader`].
//!
//! Sites, hits, props, goals, funnels, the imported aggregates and the
//! engagements are one consistent snapshot while ingest keeps committing. Rows stream out as
//! Arrow record batches. Goals and funnels are definitions: the site filter
//! applies to them, the time range does not. Imported aggregates are per
//! day: a day is selected when the whole UTC day lies inside the time range
//! ([`ExportFilter::days`]). Engagements are selected with their pageview
//! (by its site and time), so each names a hit of the same export.

use duckdb::Connection;
use duckdb::arrow::record_batch::RecordBatch;

use crate::stats::model::DAY_US;
use crate::takeout::{Reader, TakeoutError, quote};
use crate::{QueryError, Store};

/// What an export selects.
#[derive(Clone, Debug, Default)]
pub struct ExportFilter {
    /// Hostnames; empty means every site.
    pub sites: Vec<String>,
    /// Microseconds since the epoch, inclusive.
    pub from_us: Option<i64>,
    /// Microseconds since the epoch, exclusive.
    pub until_us: Option<i64>,
}

/// A table of the export, in the order they are streamed.
pub const EXPORT_TABLES: [&str; 8] = [
    "sites",
    "hits",
    "props",
    "goals",
    "funnels",
    "imported_days",
    "imported_values",
    "engagements",
];

impl ExportFilter {
    /// The imported days the time range selects: those whose whole UTC day
    /// (midnight to the next midnight) lies inside `[from_us, until_us)`, as
    /// the first day and the end day (exclusive), in days since 1970-01-01.
    /// `None`: unbounded on that side.
    pub fn days(&self) -> (Option<i64>, Option<i64>) {
        (
            // The first midnight at or after `from`.
            self.from_us
                .map(|f| f.div_euclid(DAY_US) + i64::from(f.rem_euclid(DAY_US) != 0)),
            // A day is inside when its next midnight is at or before `until`.
            self.until_us.map(|u| u.div_euclid(DAY_US)),
        )
    }

    /// SQL conditions on `s` (sites) and a day number column.
    fn days_sql(&self, day: &str) -> String {
        let mut w = vec![self.sites_sql()];
        let (first, end) = self.days();
        if let Some(f) = first {
            w.push(format!("{day} >= {f}"));
        }
        if let Some(e) = end {
            w.push(format!("{day} < {e}"));
        }
        w.join(" AND ")
    }

    /// SQL condition on `s` (sites).
    fn sites_sql(&self) -> String {
        if self.sites.is_empty() {
            "TRUE".to_owned()
        } else {
            let list: Vec<String> = self.sites.iter().map(|s| quote(s)).collect();
            format!("s.hostname IN ({})", list.join(","))
        }
    }

    /// SQL conditions on `s` (sites) and a timestamp column.
    fn where_sql(&self, ts: &str) -> String {
        let mut w = vec![self.sites_sql()];
        if let Some(f) = self.from_us {
            w.push(format!("{ts} >= make_timestamp({f}::BIGINT)::TIMESTAMPTZ"));
        }
        if let Some(u) = self.until_us {
            w.push(format!("{ts} < make_timestamp({u}::BIGINT)::TIMESTAMPTZ"));
        }
        w.join(" AND ")
    }
}

impl Store {
    /// A second connection to this database, for exports beside the writer.
    pub fn reader(&self) -> Result<Reader, QueryError> {
        Ok(Reader {
            conn: self.conn.try_clone()?,
        })
    }
}

impl Reader {
    /// Another connection like this one (one per concurrent export).
    pub fn try_clone(&self) -> Result<Reader, QueryError> {
        Ok(Reader {
            conn: self.conn.try_clone()?,
        })
    }

    /// Hits matching `filter`.
    pub fn count_hits(&self, filter: &ExportFilter) -> Result<u64, QueryError> {
        count_hits(&self.conn, filter)
    }

    /// Streams sites, hits, props, goals, funnels, the imported aggregates
    /// and the engagements matching `filter`, from one snapshot.
    pub fn export(
        &self,
        filter: &ExportFilter,
        sink: &mut dyn FnMut(&'static str, RecordBatch) -> Result<(), String>,
    ) -> Result<(), TakeoutError> {
        export(&self.conn, filter, sink)
    }
}

fn count_hits(conn: &Connection, filter: &ExportFilter) -> Result<u64, QueryError> {
    Ok(conn.query_row(
        &format!(
            "SELECT count(*) FROM hits h JOIN sites s ON s.id = h.site_id WHERE {}",
            filter.where_sql("h.ts")
        ),
        [],
        |r| r.get(0),
    )?)
}

fn export(
    conn: &Connection,
    filter: &ExportFilter,
    sink: &mut dyn FnMut(&'static str, RecordBatch) -> Result<(), String>,
) -> Result<(), TakeoutError> {
    let sites_where = filter.sites_sql();
    let queries = [
        (
            "sites",
            format!(
                "SELECT s.hostname, array_to_string(s.aliases, ',') AS aliases, s.origin, s.created_at \
                 FROM sites s WHERE {sites_where} ORDER BY s.id"
            ),
        ),
        (
            "hits",
            format!(
                "SELECT h.id, s.hostname AS site, h.ts, \
                 CASE h.kind WHEN 0 THEN 'pageview' ELSE 'event' END AS kind, \
                 h.name, h.path, h.referrer, h.source, \
                 h.utm_source, h.utm_medium, h.utm_campaign, h.utm_term, h.utm_content, \
                 h.browser, h.browser_version, h.os, h.os_version, \
                 CASE h.device WHEN 1 THEN 'desktop' WHEN 2 THEN 'mobile' WHEN 3 THEN 'tablet' END AS device, \
                 h.country, h.language, h.screen_width, h.visitor \
                 FROM hits h JOIN sites s ON s.id = h.site_id WHERE {}",
                filter.where_sql("h.ts")
            ),
        ),
        (
            "props",
            format!(
                "SELECT p.hit_id AS id, p.key, p.value \
                 FROM hit_props p JOIN sites s ON s.id = p.site_id WHERE {}",
                filter.where_sql("p.ts")
            ),
        ),
        (
            "goals",
            format!(
                "SELECT s.hostname AS site, g.display_name AS name, g.kind, g.value, g.created_at \
                 FROM goals g JOIN sites s ON s.id = g.site_id WHERE {sites_where} \
                 ORDER BY s.hostname, g.display_name"
            ),
        ),
        (
            "funnels",
            format!(
                "SELECT site, name, i::USMALLINT AS step, kinds[i] AS kind, vals[i] AS value, created_at \
                 FROM (SELECT s.hostname AS site, f.name, f.step_kinds AS kinds, \
                              f.step_values AS vals, f.created_at, \
                              unnest(generate_series(1, len(f.step_kinds))) AS i \
                       FROM funnels f JOIN sites s ON s.id = f.site_id WHERE {sites_where}) \
                 ORDER BY site, name, step"
            ),
        ),
        (
            "imported_days",
            format!(
                "SELECT s.hostname AS site, DATE '1970-01-01' + d.day AS day, d.visitors, \
                 d.pageviews, d.events, d.visits, d.bounces, d.visit_duration_s \
                 FROM imported_days d JOIN sites s ON s.id = d.site_id WHERE {} \
                 ORDER BY site, d.day",
                filter.days_sql("d.day")
            ),
        ),
        (
            "imported_values",
            format!(
                "SELECT s.hostname AS site, DATE '1970-01-01' + v.day AS day, v.dim, v.value, \
                 v.visitors, v.count \
                 FROM imported_values v JOIN sites s ON s.id = v.site_id WHERE {} \
                 ORDER BY site, v.day, v.dim, v.value NULLS FIRST",
                filter.days_sql("v.day")
            ),
        ),
        (
            "engagements",
            format!(
                "SELECT e.id, e.hit_id, e.engaged_ms::UBIGINT AS engaged_ms, \
                 e.scroll_depth::USMALLINT AS scroll_depth \
                 FROM engagements e JOIN sites s ON s.id = e.site_id WHERE {}",
                filter.where_sql("e.ts")
            ),
        ),
    ];
    conn.execute_batch("BEGIN TRANSACTION")?;
    let result = (|| -> Result<(), TakeoutError> {
        for (table, sql) in &queries {
            let mut stmt = conn.prepare(sql)?;
            for batch in stmt.stream_arrow([])? {
                sink(table, batch?).map_err(TakeoutError::Sink)?;
            }
        }
        Ok(())
    })();
    let _ = conn.execute_batch("COMMIT");
    result
}
