//! Reading everything out for Takeout, and loading a Takeout back in.
//!
//! Export runs on a [`Reader`], a second connection to the same database
//! (DuckDB allows readers beside its one writer in a process): one read
//! transaction, so sites, hits, props, goals, funnels and the imported
//! aggregates are one consistent snapshot while ingest keeps committing.
//! Rows stream out as Arrow record batches. Goals and funnels are
//! definitions: the site filter applies to them, the time range does not.
//! Imported aggregates are per day: a day is selected when the whole UTC
//! day lies inside the time range ([`ExportFilter::days`]).
//!
//! Import runs in one transaction: sites, props, goals and funnels are
//! staged in temporary tables (in memory, spilled to the temp directory past
//! `memory_limit`; never written to the database file) and merged at the
//! end; hits are appended to `hits` as they arrive, keyed by hit id: hits
//! already present (the same id, site, time and visitor) are left alone, so
//! a second import of the same Takeout changes nothing. A hit whose id the
//! instance gave to another hit of its own (a Takeout of another instance)
//! is staged and, at the end, stored under a new id above every id in use,
//! unless a hit with its content is stored already (it was imported before
//! under a new id). Any failure rolls the whole import back. Goals and funnels are
//! keyed by (site, name): one that is present with the same content is left
//! alone; one whose name is taken by a different definition keeps the
//! instance's and is reported in [`ImportStats::conflicts`], never merged.
//! Imported aggregates are keyed by (site, day), a day being every row of
//! `imported_days` and `imported_values` of that site and day: a day the
//! Takeout holds replaces the instance's rows of that site and day unless
//! they are the same already (then it is present and nothing is written);
//! days the Takeout does not hold are left alone. This is what
//! `import-plausible` does for the days of its range: the import brought
//! last wins, and a day's rows always come from one source, never a mix.

use std::sync::Arc;

use duckdb::arrow::array::{ArrayRef, AsArray, BooleanArray, UInt8Array, UInt16Array};
use duckdb::arrow::compute::filter_record_batch;
use duckdb::arrow::datatypes::{TimestampMicrosecondType, UInt16Type, UInt64Type};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::{Connection, OptionalExt};

use crate::append::hits_schema;
use crate::feed::{Converter, Feed};
use crate::goals::{
    DefError, FUNNEL_STEPS, GoalKind, MAX_FUNNELS, MAX_GOALS, Step, check_step, check_text,
};
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

/// A read-only connection for long reads beside the writer.
pub struct Reader {
    pub(crate) conn: Connection,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reader")
    }
}

/// A table of the export, in the order they are streamed.
pub const EXPORT_TABLES: [&str; 7] = [
    "sites",
    "hits",
    "props",
    "goals",
    "funnels",
    "imported_days",
    "imported_values",
];

const DAY_US: i64 = 86_400_000_000;

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

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

/// An export or import statement failed.
#[derive(Debug, thiserror::Error)]
pub enum TakeoutError {
    #[error("DuckDB: {0}")]
    Db(#[from] duckdb::Error),
    #[error("{0}")]
    Sink(String),
    #[error("{0}")]
    Invalid(String),
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

    /// Streams sites, hits, props, goals, funnels and the imported aggregates
    /// matching `filter`, from one snapshot.
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

/// Counts of what an import changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportStats {
    pub sites_added: u64,
    pub hits_added: u64,
    /// Of `hits_added`, those stored under a new id: the instance had given
    /// theirs to other hits.
    pub hits_renumbered: u64,
    pub hits_present: u64,
    pub props_added: u64,
    pub goals_added: u64,
    /// Goals already stored with the same name and content.
    pub goals_present: u64,
    pub funnels_added: u64,
    pub funnels_present: u64,
    /// Imported days (a site's rows of one day in `imported_days` and
    /// `imported_values`) the instance did not have.
    pub imported_days_added: u64,
    /// Imported days the instance had with other rows: replaced.
    pub imported_days_replaced: u64,
    /// Imported days the instance had with the same rows: left alone.
    pub imported_days_present: u64,
    /// Goals and funnels whose name the instance already gives to a
    /// different definition: the instance's was kept. One sentence each.
    pub conflicts: Vec<String>,
}

/// An import in progress: one open transaction. Dropped without
/// [`Importer::commit`], it rolls back.
///
/// Sites, goals, funnels and props are staged in temporary tables. Hits go
/// straight into `hits`, batch by batch, converted to its columns here (site
/// ids, `kind` and `device` codes): the sites file comes first, so when the
/// first hits arrive the staged sites are checked and merged and their ids
/// known. Each hit's id, site id, `ts` and whether it was added are kept in
/// a temporary table for the checks at the end (ids twice in the file,
/// props without a hit) and for the props.
pub struct Importer<'a> {
    conn: &'a Connection,
    changes: &'a crate::Changes,
    feed: &'a Feed,
    /// Converts the hits for `feed`, a batch ahead (started by the first).
    converter: Option<Converter>,
    done: bool,
    /// Site ids of the hostnames in the sites file, once merged.
    site_ids: Option<std::collections::HashMap<String, u16>>,
    sites_added: u64,
    /// Smallest and largest hit id stored before the import (None: no hits).
    stored: Option<(u64, u64)>,
    hits_total: u64,
    hits_added: u64,
    max_id: u64,
    /// Every hit id so far was above the one before (as a Takeout lists
    /// them): no id can appear twice.
    ids_ascending: bool,
    /// Hits staged in `_import_clash`: their id is stored as another hit.
    clashed: u64,
    /// New ids for those are taken above this (None: above the largest
    /// stored id at commit).
    renumber_above: Option<u64>,
    /// DuckDB's worker threads before the import, restored when it ends.
    threads: u16,
}

impl std::fmt::Debug for Importer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Importer")
    }
}

const STAGING: &str = "
CREATE TEMP TABLE _import_sites (hostname VARCHAR, aliases VARCHAR, origin VARCHAR, created_at TIMESTAMPTZ);
CREATE TEMP TABLE _import_ids (id UBIGINT, site_id USMALLINT, ts TIMESTAMPTZ, added BOOLEAN);
CREATE TEMP TABLE _import_clash AS SELECT * FROM hits LIMIT 0;
CREATE TEMP TABLE _import_renum (old_id UBIGINT, new_id UBIGINT);
CREATE TEMP TABLE _import_props (id UBIGINT, key VARCHAR, value VARCHAR);
CREATE TEMP TABLE _import_goals (site VARCHAR, name VARCHAR, kind VARCHAR, value VARCHAR, created_at TIMESTAMPTZ);
CREATE TEMP TABLE _import_funnels (
    site VARCHAR, name VARCHAR, step USMALLINT, kind VARCHAR, value VARCHAR, created_at TIMESTAMPTZ);
CREATE TEMP TABLE _import_imported_days (
    site VARCHAR, day DATE, visitors UBIGINT, pageviews UBIGINT, events UBIGINT, visits UBIGINT,
    bounces UBIGINT, visit_duration_s UBIGINT);
CREATE TEMP TABLE _import_imported_values (
    site VARCHAR, day DATE, dim VARCHAR, value VARCHAR, visitors UBIGINT, count UBIGINT);
";

impl Store {
    /// Starts an import: a transaction with empty staging tables.
    pub fn begin_import(&mut self) -> Result<Importer<'_>, TakeoutError> {
        if self.feed.is_none() {
            self.feed = Some(Feed::register(&self.conn, hits_schema())?);
        }
        // One DuckDB thread while importing: each statement of an import is
        // one pipeline, and with a second thread running it (compressing
        // the full row groups) this one spun waiting, a quarter of its CPU
        // under `perf`. Other connections' queries run on one thread until
        // the import ends.
        let threads = self.threads()?;
        self.conn
            .execute_batch("SET threads = 1; BEGIN TRANSACTION")?;
        let mut imp = Importer {
            conn: &self.conn,
            changes: &self.changes,
            feed: self.feed.as_ref().expect("registered above"),
            converter: None,
            done: false,
            site_ids: None,
            sites_added: 0,
            stored: None,
            hits_total: 0,
            hits_added: 0,
            max_id: 0,
            ids_ascending: true,
            clashed: 0,
            renumber_above: None,
            threads,
        };
        imp.conn.execute_batch(STAGING)?;
        imp.stored = imp
            .conn
            .query_row(
                "SELECT min(id), max(id) FROM hits HAVING count(*) > 0",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(imp)
    }
}

impl Importer<'_> {
    /// New ids for hits whose id is stored as another hit are taken above
    /// `id` (by default, above the largest id stored at commit): for an
    /// import beside a running queue, which reserved the ids above it.
    pub fn renumber_above(&mut self, id: u64) {
        self.renumber_above = Some(id);
    }

    /// Adds a batch of `table` (one of [`EXPORT_TABLES`]), in the Takeout
    /// schema. The sites come before the hits, the hits before the props.
    pub fn append(&mut self, table: &str, batch: RecordBatch) -> Result<(), TakeoutError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let staging = match table {
            "sites" if self.site_ids.is_some() => {
                return Err(TakeoutError::Invalid(
                    "sites: the sites come before the hits".into(),
                ));
            }
            "sites" => "_import_sites",
            "hits" => return self.append_hits(&batch),
            "props" => "_import_props",
            "goals" => "_import_goals",
            "funnels" => "_import_funnels",
            "imported_days" => "_import_imported_days",
            "imported_values" => "_import_imported_values",
            other => return Err(TakeoutError::Invalid(format!("no table {other:?}"))),
        };
        let mut app = self.conn.appender(staging)?;
        app.append_record_batch(batch)?;
        app.flush()?;
        Ok(())
    }

    /// Checks the staged sites and adds those not stored yet (once).
    fn merge_sites(&mut self) -> Result<(), TakeoutError> {
        if self.site_ids.is_some() {
            return Ok(());
        }
        if let Some(problem) = self.one(
            "SELECT 'sites: ' || hostname || ' appears twice' FROM _import_sites \
             GROUP BY hostname HAVING count(*) > 1 LIMIT 1",
        )? {
            return Err(TakeoutError::Invalid(problem));
        }
        self.sites_added = self.conn.execute(
            "INSERT INTO sites \
             SELECT (SELECT coalesce(max(id), 0) FROM sites) + row_number() OVER (ORDER BY i.hostname), \
                    i.hostname, \
                    CASE WHEN i.aliases = '' THEN []::VARCHAR[] ELSE string_split(i.aliases, ',') END, \
                    'runtime', i.created_at \
             FROM _import_sites i WHERE i.hostname NOT IN (SELECT hostname FROM sites)",
            [],
        )? as u64;
        let conn = self.conn;
        let mut stmt = conn.prepare(
            "SELECT s.hostname, s.id FROM sites s SEMI JOIN _import_sites i ON i.hostname = s.hostname",
        )?;
        let ids: std::collections::HashMap<String, u16> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        self.site_ids = Some(ids);
        Ok(())
    }

    /// Adds the hits of a batch whose id is not stored yet.
    fn append_hits(&mut self, batch: &RecordBatch) -> Result<(), TakeoutError> {
        self.merge_sites()?;
        let site_ids = self.site_ids.as_ref().expect("merged above");
        let rows = hits_rows(batch, site_ids)?;
        let (lo, hi) = rows.id_range;
        if hi > crate::MAX_HIT_ID {
            return Err(TakeoutError::Invalid(format!(
                "hits: id {hi} is above {}, the largest hit id",
                crate::MAX_HIT_ID
            )));
        }
        let ids = rows.all.column(0).as_primitive::<UInt64Type>().values();
        self.ids_ascending = self.ids_ascending
            && (self.hits_total == 0 || ids[0] > self.max_id)
            && ids.windows(2).all(|w| w[0] < w[1]);
        self.max_id = self.max_id.max(hi);
        self.hits_total += batch.num_rows() as u64;
        // Only ids in the range stored before can be stored already; a
        // repeated id within the import is refused at the end.
        let present: std::collections::HashMap<u64, Stamp> = match self.stored {
            Some((a, b)) if lo <= b && a <= hi => {
                let conn = self.conn;
                let mut stmt = conn.prepare_cached(
                    "SELECT id, site_id, epoch_us(ts), visitor FROM hits WHERE id BETWEEN ? AND ?",
                )?;
                stmt.query_map([lo, hi], |r| {
                    Ok((
                        r.get(0)?,
                        Stamp {
                            site_id: r.get(1)?,
                            ts_us: r.get(2)?,
                            visitor: r.get(3)?,
                        },
                    ))
                })?
                .collect::<Result<_, _>>()?
            }
            _ => Default::default(),
        };
        let (hits, ids, clash) = rows.into_batches(&present);
        self.hits_added += hits.num_rows() as u64;
        if clash.num_rows() > 0 {
            self.clashed += clash.num_rows() as u64;
            let mut app = self.conn.appender("_import_clash")?;
            app.append_record_batch(clash)?;
            app.flush()?;
        }
        let mut app = self.conn.appender("_import_ids")?;
        app.append_record_batch(ids)?;
        app.flush()?;
        drop(app);
        if hits.num_rows() > 0 {
            let converter = match &mut self.converter {
                Some(c) => c,
                None => self
                    .converter
                    .insert(Converter::start(self.feed).map_err(|e| {
                        TakeoutError::Invalid(format!("cannot start the chunk converter: {e}"))
                    })?),
            };
            converter.send(hits).map_err(TakeoutError::Invalid)?;
            // This batch is converted while the one before is inserted.
            self.insert_converted(1)?;
        }
        Ok(())
    }

    /// Inserts converted hits until at most `keep` batches are pending.
    fn insert_converted(&mut self, keep: usize) -> Result<(), TakeoutError> {
        if let Some(converter) = &mut self.converter {
            while converter.pending() > keep {
                let chunks = converter.take().map_err(TakeoutError::Invalid)?;
                self.feed
                    .insert(self.conn, "hits", chunks)
                    .map_err(TakeoutError::Invalid)?;
            }
        }
        Ok(())
    }

    /// The largest hit id seen so far (0 when none).
    pub fn staged_max_id(&self) -> Result<u64, TakeoutError> {
        Ok(self.max_id)
    }

    fn one(&self, sql: &str) -> Result<Option<String>, TakeoutError> {
        let mut stmt = self.conn.prepare(sql)?;
        let mut rows = stmt.query([])?;
        Ok(match rows.next()? {
            Some(r) => Some(r.get::<_, String>(0)?),
            None => None,
        })
    }

    /// Stores the hits of `_import_clash` (their id is another stored hit's)
    /// under new ids, except those whose content (site, time, visitor,
    /// kind, name, path) is stored already: they were imported before under
    /// a new id. Fills `_import_renum` (old_id, new_id); returns how many.
    fn renumber(&mut self) -> Result<u64, TakeoutError> {
        if self.clashed == 0 {
            return Ok(0);
        }
        let c = self.conn;
        let base: u64 = match self.renumber_above {
            Some(id) => {
                // Reserved for this import: none of them may be stored (hits
                // numbered after the reservation lie above the range).
                let taken: Option<u64> = c.query_row(
                    &format!(
                        "SELECT min(id) FROM hits WHERE id > {id} AND id <= {}",
                        id.saturating_add(self.clashed)
                    ),
                    [],
                    |r| r.get(0),
                )?;
                if let Some(t) = taken {
                    return Err(TakeoutError::Invalid(format!(
                        "hits: id {t}, reserved for the new ids of this import, is stored already"
                    )));
                }
                id
            }
            None => c.query_row("SELECT coalesce(max(id), 0) FROM hits", [], |r| r.get(0))?,
        };
        c.execute_batch(&format!(
            "INSERT INTO _import_renum
             SELECT k.id, {base} + row_number() OVER (ORDER BY k.id)
             FROM _import_clash k
             WHERE NOT EXISTS (
               SELECT 1 FROM hits h
               WHERE h.site_id = k.site_id AND h.ts = k.ts AND h.visitor = k.visitor
                 AND h.kind = k.kind AND h.name IS NOT DISTINCT FROM k.name
                 AND h.path IS NOT DISTINCT FROM k.path)"
        ))?;
        Ok(c.execute(
            "INSERT INTO hits SELECT r.new_id, k.* EXCLUDE (id) \
             FROM _import_clash k JOIN _import_renum r ON r.old_id = k.id",
            [],
        )? as u64)
    }

    /// Checks the rows against each other and the database, merges the
    /// rest, and commits. Hits stored already were skipped, and so are their
    /// props; hits whose id is another stored hit's get new ids here.
    pub fn commit(mut self) -> Result<ImportStats, TakeoutError> {
        self.merge_sites()?;
        self.insert_converted(0)?;
        // Ids in ascending order (as a Takeout lists them) cannot repeat;
        // others are counted.
        if !self.ids_ascending
            && let Some(problem) = self.one(
                "SELECT 'hits: id ' || id || ' appears ' || count(*) || ' times' \
                 FROM _import_ids GROUP BY id HAVING count(*) > 1 LIMIT 1",
            )?
        {
            return Err(TakeoutError::Invalid(problem));
        }
        let checks = [
            "SELECT 'props: id ' || p.id || ' has no hit in the hits file' \
                 FROM _import_props p ANTI JOIN _import_ids i ON i.id = p.id LIMIT 1",
            "SELECT 'goals: ' || site || ' has two goals named ' || name FROM _import_goals \
                 GROUP BY site, name HAVING count(*) > 1 LIMIT 1",
            "SELECT 'goals: goal ' || i.name || ' names site ' || i.site || ', which is not in the sites file' \
                 FROM _import_goals i ANTI JOIN _import_sites s ON s.hostname = i.site LIMIT 1",
            "SELECT 'funnels: funnel ' || i.name || ' names site ' || i.site || ', which is not in the sites file' \
                 FROM _import_funnels i ANTI JOIN _import_sites s ON s.hostname = i.site LIMIT 1",
            "SELECT 'funnels: ' || site || ' funnel ' || name || ' has step ' || step || ' twice' \
                 FROM _import_funnels GROUP BY site, name, step HAVING count(*) > 1 LIMIT 1",
            "SELECT 'funnels: ' || site || ' funnel ' || name || ' has steps ' || \
                    string_agg(step::VARCHAR, ',' ORDER BY step) || ', not 1 to ' || count(*) \
                 FROM _import_funnels GROUP BY site, name HAVING max(step) <> count(*) LIMIT 1",
            "SELECT 'funnels: ' || site || ' funnel ' || name || ' has rows with different created_at' \
                 FROM _import_funnels GROUP BY site, name HAVING count(DISTINCT created_at) > 1 LIMIT 1",
            "SELECT 'imported_days: site ' || i.site || ' day ' || i.day || ' names a site that is not in the sites file' \
                 FROM _import_imported_days i ANTI JOIN _import_sites s ON s.hostname = i.site LIMIT 1",
            "SELECT 'imported_values: site ' || i.site || ' day ' || i.day || ' names a site that is not in the sites file' \
                 FROM _import_imported_values i ANTI JOIN _import_sites s ON s.hostname = i.site LIMIT 1",
            "SELECT 'imported_days: site ' || site || ' has day ' || day || ' ' || count(*) || ' times' \
                 FROM _import_imported_days GROUP BY site, day HAVING count(*) > 1 LIMIT 1",
            "SELECT 'imported_values: site ' || site || ' day ' || day || ' has ' || dim || ' ' || \
                    coalesce('\"' || value || '\"', 'NULL') || ' ' || count(*) || ' times' \
                 FROM _import_imported_values GROUP BY site, day, dim, value HAVING count(*) > 1 LIMIT 1",
        ];
        for sql in checks {
            if let Some(problem) = self.one(sql)? {
                return Err(TakeoutError::Invalid(problem));
            }
        }
        let dims: Vec<String> = crate::stats::Dim::ALL
            .iter()
            .map(|(_, n)| quote(n))
            .collect();
        if let Some(problem) = self.one(&format!(
            "SELECT 'imported_values: site ' || site || ' day ' || day || ': dim ' || dim || \
                    ' is not a dimension of the stats API' \
             FROM _import_imported_values WHERE dim NOT IN ({}) LIMIT 1",
            dims.join(",")
        ))? {
            return Err(TakeoutError::Invalid(problem));
        }
        let c = self.conn;
        let renumbered = self.renumber()?;
        let props_added = c.execute(
            "INSERT INTO hit_props \
             SELECT p.id, i.site_id, i.ts, p.key, p.value \
             FROM _import_props p JOIN _import_ids i ON i.id = p.id WHERE i.added \
             UNION ALL \
             SELECT r.new_id, k.site_id, k.ts, p.key, p.value \
             FROM _import_props p JOIN _import_renum r ON r.old_id = p.id \
             JOIN _import_clash k ON k.id = p.id",
            [],
        )? as u64;
        let hits_added = self.hits_added + renumbered;
        let mut stats = ImportStats {
            sites_added: self.sites_added,
            hits_added,
            hits_renumbered: renumbered,
            hits_present: self.hits_total - hits_added,
            props_added,
            ..Default::default()
        };
        merge_definitions(c, &mut stats)?;
        merge_imported(c, &mut stats)?;
        c.execute_batch(
            "DROP TABLE _import_ids; DROP TABLE _import_props; \
             DROP TABLE _import_clash; DROP TABLE _import_renum; \
             DROP TABLE _import_sites; DROP TABLE _import_goals; DROP TABLE _import_funnels; \
             DROP TABLE _import_imported_days; DROP TABLE _import_imported_values; COMMIT",
        )?;
        self.done = true;
        if hits_added > 0 {
            self.changes.any();
        }
        Ok(stats)
    }
}

/// What says that a stored hit and an imported one with the same id are
/// the same hit: its site, time and visitor.
#[derive(Debug, PartialEq, Eq)]
struct Stamp {
    site_id: u16,
    ts_us: i64,
    visitor: u64,
}

/// A batch of Takeout hits converted to the columns of `hits`.
struct HitsRows {
    /// In the columns of `hits` ([`hits_schema`]).
    all: RecordBatch,
    id_range: (u64, u64),
}

/// Converts a batch in the Takeout's hits schema (checked by the reader:
/// `kind` and `device` hold allowed values) into the columns of `hits`:
/// the site's id for its hostname, `kind` and `device` as codes.
fn hits_rows(
    batch: &RecordBatch,
    site_ids: &std::collections::HashMap<String, u16>,
) -> Result<HitsRows, TakeoutError> {
    let bad = |what: String| TakeoutError::Invalid(format!("hits: {what}"));
    if batch.num_columns() != 22 {
        return Err(bad(format!("{} columns, expected 22", batch.num_columns())));
    }
    let col = |i: usize| batch.column(i);
    let ids = col(0)
        .as_primitive_opt::<UInt64Type>()
        .ok_or_else(|| bad("id is not UBIGINT".into()))?;
    if col(2)
        .as_primitive_opt::<TimestampMicrosecondType>()
        .is_none()
    {
        return Err(bad("ts is not a timestamp in microseconds".into()));
    }
    if col(21).as_primitive_opt::<UInt64Type>().is_none() {
        return Err(bad("visitor is not UBIGINT".into()));
    }
    let strings = |i: usize| {
        col(i)
            .as_string_opt::<i32>()
            .ok_or_else(|| bad(format!("column {} is not text", i + 1)))
    };
    let sites = strings(1)?;
    let mut site_col = Vec::with_capacity(batch.num_rows());
    let mut last: Option<(&str, u16)> = None;
    for (r, host) in sites.iter().enumerate() {
        let host = host.unwrap_or("");
        let id = match last {
            Some((h, id)) if h == host => id,
            _ => {
                let id = *site_ids.get(host).ok_or_else(|| {
                    bad(format!(
                        "id {} names site {host}, which is not in the sites file",
                        ids.value(r)
                    ))
                })?;
                last = Some((host, id));
                id
            }
        };
        site_col.push(id);
    }
    let kind: UInt8Array = strings(3)?
        .iter()
        .map(|k| Some(u8::from(k != Some("pageview"))))
        .collect();
    let device: UInt8Array = strings(17)?
        .iter()
        .map(|d| {
            use hitvault_core::Device;
            let known = [Device::Desktop, Device::Mobile, Device::Tablet];
            let dev = known.into_iter().find(|k| d == Some(k.as_str()));
            Some(dev.unwrap_or(Device::Unknown) as u8)
        })
        .collect();
    let lo = ids.values().iter().copied().min().unwrap_or(0);
    let hi = ids.values().iter().copied().max().unwrap_or(0);
    let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
    cols[1] = Arc::new(UInt16Array::from(site_col));
    cols[3] = Arc::new(kind);
    cols[17] = Arc::new(device);
    let all = RecordBatch::try_new(hits_schema(), cols).map_err(|e| bad(e.to_string()))?;
    Ok(HitsRows {
        all,
        id_range: (lo, hi),
    })
}

impl HitsRows {
    /// The rows whose id is not stored (`present` holds the stored hits of
    /// the batch's id range), for `hits`; every row's (id, site id, ts,
    /// added) for `_import_ids`; and the rows whose id is stored as another
    /// hit (another site, time or visitor), for `_import_clash`.
    fn into_batches(
        self,
        present: &std::collections::HashMap<u64, Stamp>,
    ) -> (RecordBatch, RecordBatch, RecordBatch) {
        let all = self.all;
        let n = all.num_rows();
        let ids = all.column(0).as_primitive::<UInt64Type>();
        let (added, clash): (BooleanArray, BooleanArray) = if present.is_empty() {
            (
                BooleanArray::from(vec![true; n]),
                BooleanArray::from(vec![false; n]),
            )
        } else {
            let sites = all.column(1).as_primitive::<UInt16Type>();
            let ts = all.column(2).as_primitive::<TimestampMicrosecondType>();
            let visitors = all.column(21).as_primitive::<UInt64Type>();
            let (added, clash): (Vec<bool>, Vec<bool>) = (0..n)
                .map(|r| match present.get(&ids.value(r)) {
                    None => (true, false),
                    Some(stored) => {
                        let row = Stamp {
                            site_id: sites.value(r),
                            ts_us: ts.value(r),
                            visitor: visitors.value(r),
                        };
                        (false, *stored != row)
                    }
                })
                .unzip();
            (BooleanArray::from(added), BooleanArray::from(clash))
        };
        let keyed = RecordBatch::try_from_iter([
            ("id", all.column(0).clone()),
            ("site_id", all.column(1).clone()),
            ("ts", all.column(2).clone()),
            ("added", Arc::new(added.clone()) as ArrayRef),
        ])
        .expect("same lengths");
        if present.is_empty() {
            let none = all.slice(0, 0);
            return (all, keyed, none);
        }
        let hits = filter_record_batch(&all, &added).expect("same lengths");
        let clash = filter_record_batch(&all, &clash).expect("same lengths");
        (hits, keyed, clash)
    }
}

/// A staged goal or funnel: site, name, steps (one for a goal), created_at (µs).
struct Def {
    site: String,
    name: String,
    steps: Vec<Step>,
    created_us: i64,
}

fn steps_text(steps: &[Step]) -> String {
    steps
        .iter()
        .map(|s| format!("{} {:?}", s.kind.name(), s.value))
        .collect::<Vec<_>>()
        .join(" -> ")
}

/// Reads staged definitions: `sql` returns site, name, kind, value,
/// created_at (µs), ordered so that a funnel's steps are together and in order.
fn staged_defs(c: &Connection, sql: &str) -> Result<Vec<Def>, TakeoutError> {
    let mut stmt = c.prepare(sql)?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, i64>(4)?,
        ))
    })?;
    let mut defs: Vec<Def> = Vec::new();
    for row in rows {
        let (site, name, kind, value, created_us) = row?;
        let kind = GoalKind::parse(&kind)
            .ok_or_else(|| TakeoutError::Invalid(format!("{site} {name:?}: kind {kind:?}")))?;
        let step = Step { kind, value };
        match defs.last_mut() {
            Some(d) if d.site == site && d.name == name => d.steps.push(step),
            _ => defs.push(Def {
                site,
                name,
                steps: vec![step],
                created_us,
            }),
        }
    }
    Ok(defs)
}

/// Merges the staged goals and funnels (the sites are merged already):
/// new ones are added; one with the same (site, name) and the same content
/// is present; one with the same name and other content is a conflict, and
/// the stored one stays. The rules of [`Store::add_goal`] and
/// [`Store::add_funnel`] apply to what is added.
fn merge_definitions(c: &Connection, stats: &mut ImportStats) -> Result<(), TakeoutError> {
    let invalid = |what: String, e: DefError| TakeoutError::Invalid(format!("{what}: {e}"));
    let goals = staged_defs(
        c,
        "SELECT site, name, kind, value, epoch_us(created_at) FROM _import_goals ORDER BY site, name",
    )?;
    for g in goals {
        let what = format!("goals: site {} goal {:?}", g.site, g.name);
        let step = &g.steps[0];
        check_text("the name", &g.name).map_err(|e| invalid(what.clone(), e))?;
        check_step("the value", step).map_err(|e| invalid(what.clone(), e))?;
        let site_id: u16 =
            c.query_row("SELECT id FROM sites WHERE hostname = ?", [&g.site], |r| {
                r.get(0)
            })?;
        let stored: Option<(String, String)> = c
            .query_row(
                "SELECT kind, value FROM goals WHERE site_id = ? AND display_name = ?",
                duckdb::params![site_id, g.name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match stored {
            Some((kind, value)) if kind == step.kind.name() && value == step.value => {
                stats.goals_present += 1;
            }
            Some((kind, value)) => stats.conflicts.push(format!(
                "site {} goal {:?}: the import has {}, this instance has {kind} {value:?}; kept this instance's",
                g.site,
                g.name,
                steps_text(&g.steps)
            )),
            None => {
                let n: u64 = c.query_row(
                    "SELECT count(*) FROM goals WHERE site_id = ?",
                    [site_id],
                    |r| r.get(0),
                )?;
                if n as usize >= MAX_GOALS {
                    return Err(TakeoutError::Invalid(format!(
                        "{what}: site {} would have more than {MAX_GOALS} goals",
                        g.site
                    )));
                }
                c.execute(
                    "INSERT INTO goals SELECT (SELECT coalesce(max(id), 0) + 1 FROM goals), ?, ?, ?, ?, \
                     make_timestamp(?::BIGINT)::TIMESTAMPTZ",
                    duckdb::params![site_id, step.kind.name(), step.value, g.name, g.created_us],
                )?;
                stats.goals_added += 1;
            }
        }
    }
    let funnels = staged_defs(
        c,
        "SELECT site, name, kind, value, epoch_us(created_at) FROM _import_funnels \
         ORDER BY site, name, step",
    )?;
    for f in funnels {
        let what = format!("funnels: site {} funnel {:?}", f.site, f.name);
        check_text("the name", &f.name).map_err(|e| invalid(what.clone(), e))?;
        if !FUNNEL_STEPS.contains(&f.steps.len()) {
            return Err(TakeoutError::Invalid(format!(
                "{what}: {} steps, a funnel has {} to {}",
                f.steps.len(),
                FUNNEL_STEPS.start(),
                FUNNEL_STEPS.end()
            )));
        }
        for (i, s) in f.steps.iter().enumerate() {
            check_step(&format!("step {}", i + 1), s).map_err(|e| invalid(what.clone(), e))?;
        }
        let site_id: u16 =
            c.query_row("SELECT id FROM sites WHERE hostname = ?", [&f.site], |r| {
                r.get(0)
            })?;
        let stored: Option<(String, String)> = c
            .query_row(
                "SELECT array_to_string(step_kinds, chr(31)), array_to_string(step_values, chr(31)) \
                 FROM funnels WHERE site_id = ? AND name = ?",
                duckdb::params![site_id, f.name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let kinds: Vec<&str> = f.steps.iter().map(|s| s.kind.name()).collect();
        let values: Vec<&str> = f.steps.iter().map(|s| s.value.as_str()).collect();
        let (kinds, values) = (kinds.join("\u{1f}"), values.join("\u{1f}"));
        match stored {
            Some((k, v)) if k == kinds && v == values => stats.funnels_present += 1,
            Some((k, v)) => {
                let theirs: Vec<Step> = k
                    .split('\u{1f}')
                    .zip(v.split('\u{1f}'))
                    .map(|(k, v)| Step {
                        kind: GoalKind::parse(k).unwrap_or(GoalKind::Event),
                        value: v.to_owned(),
                    })
                    .collect();
                stats.conflicts.push(format!(
                    "site {} funnel {:?}: the import has {}, this instance has {}; kept this instance's",
                    f.site,
                    f.name,
                    steps_text(&f.steps),
                    steps_text(&theirs)
                ));
            }
            None => {
                let n: u64 = c.query_row(
                    "SELECT count(*) FROM funnels WHERE site_id = ?",
                    [site_id],
                    |r| r.get(0),
                )?;
                if n as usize >= MAX_FUNNELS {
                    return Err(TakeoutError::Invalid(format!(
                        "{what}: site {} would have more than {MAX_FUNNELS} funnels",
                        f.site
                    )));
                }
                c.execute(
                    "INSERT INTO funnels SELECT (SELECT coalesce(max(id), 0) + 1 FROM funnels), ?, ?, \
                     string_split(?, chr(31)), string_split(?, chr(31)), make_timestamp(?::BIGINT)::TIMESTAMPTZ",
                    duckdb::params![site_id, f.name, kinds, values, f.created_us],
                )?;
                stats.funnels_added += 1;
            }
        }
    }
    Ok(())
}

/// Merges the staged imported aggregates (the sites are merged already) by
/// (site, day), as the module doc says: a day whose rows differ from the
/// instance's in either table, or that the instance lacks, is written whole
/// (the instance's rows of that site and day deleted first); a day with the
/// same rows is present.
fn merge_imported(c: &Connection, stats: &mut ImportStats) -> Result<(), TakeoutError> {
    c.execute_batch(
        "CREATE TEMP TABLE _import_d AS \
             SELECT s.id AS site_id, (i.day - DATE '1970-01-01')::INTEGER AS day, i.visitors, \
                    i.pageviews, i.events, i.visits, i.bounces, i.visit_duration_s \
             FROM _import_imported_days i JOIN sites s ON s.hostname = i.site; \
         CREATE TEMP TABLE _import_v AS \
             SELECT s.id AS site_id, (i.day - DATE '1970-01-01')::INTEGER AS day, i.dim, i.value, \
                    i.visitors, i.count \
             FROM _import_imported_values i JOIN sites s ON s.hostname = i.site; \
         CREATE TEMP TABLE _import_keys AS \
             SELECT DISTINCT site_id, day FROM (SELECT site_id, day FROM _import_d \
                                                UNION ALL SELECT site_id, day FROM _import_v); \
         CREATE TEMP TABLE _import_stored_d AS \
             SELECT d.* FROM imported_days d SEMI JOIN _import_keys k USING (site_id, day); \
         CREATE TEMP TABLE _import_stored_v AS \
             SELECT v.* FROM imported_values v SEMI JOIN _import_keys k USING (site_id, day); \
         CREATE TEMP TABLE _import_changed AS SELECT DISTINCT site_id, day FROM ( \
             SELECT site_id, day FROM (SELECT * FROM _import_d EXCEPT ALL SELECT * FROM _import_stored_d) \
             UNION ALL SELECT site_id, day FROM (SELECT * FROM _import_stored_d EXCEPT ALL SELECT * FROM _import_d) \
             UNION ALL SELECT site_id, day FROM (SELECT * FROM _import_v EXCEPT ALL SELECT * FROM _import_stored_v) \
             UNION ALL SELECT site_id, day FROM (SELECT * FROM _import_stored_v EXCEPT ALL SELECT * FROM _import_v));",
    )?;
    let (keys, changed, replaced): (u64, u64, u64) = c.query_row(
        "SELECT (SELECT count(*) FROM _import_keys), (SELECT count(*) FROM _import_changed), \
                (SELECT count(*) FROM _import_changed ch WHERE EXISTS \
                    (SELECT 1 FROM _import_stored_d s WHERE s.site_id = ch.site_id AND s.day = ch.day) \
                  OR EXISTS \
                    (SELECT 1 FROM _import_stored_v s WHERE s.site_id = ch.site_id AND s.day = ch.day))",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    if changed > 0 {
        c.execute_batch(
            "DELETE FROM imported_days d USING _import_changed ch \
                 WHERE d.site_id = ch.site_id AND d.day = ch.day; \
             DELETE FROM imported_values v USING _import_changed ch \
                 WHERE v.site_id = ch.site_id AND v.day = ch.day; \
             INSERT INTO imported_days SELECT i.* FROM _import_d i SEMI JOIN _import_changed USING (site_id, day); \
             INSERT INTO imported_values SELECT i.* FROM _import_v i SEMI JOIN _import_changed USING (site_id, day);",
        )?;
    }
    c.execute_batch(
        "DROP TABLE _import_d; DROP TABLE _import_v; DROP TABLE _import_keys; \
         DROP TABLE _import_stored_d; DROP TABLE _import_stored_v; DROP TABLE _import_changed;",
    )?;
    stats.imported_days_added = changed - replaced;
    stats.imported_days_replaced = replaced;
    stats.imported_days_present = keys - changed;
    Ok(())
}

impl Drop for Importer<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        let threads = self.threads;
        if let Err(e) = self.conn.execute_batch(&format!("SET threads = {threads}")) {
            tracing::error!(error = %e, threads, "cannot restore DuckDB's threads after an import");
        }
    }
}
