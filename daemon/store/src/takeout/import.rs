//! Import: a Takeout loaded back in one transaction ([`Importer`]).
//!
//! Sites, props, goals and funnels are staged in temporary tables (in
//! memory, spilled to the temp directory past `memory_limit`; never written
//! to the database file) and merged at the end; hits are appended to `hits`
//! as they arrive, keyed by hit id: hits already present (the same id, site,
//! time and visitor) are left alone, so a second import of the same Takeout
//! changes nothing. A hit whose id the instance gave to another hit of its
//! own (a Takeout of another instance) is staged and, at the end, stored
//! under a new id above every id in use, unless a hit with its content is
//! stored already (it was imported before under a new id). Any failure
//! rolls the whole import back. How definitions, imported aggregates and
//! engagements are merged is `merge`'s.

use std::sync::Arc;

use duckdb::arrow::array::{ArrayRef, AsArray, BooleanArray, UInt8Array, UInt16Array};
use duckdb::arrow::compute::filter_record_batch;
use duckdb::arrow::datatypes::{TimestampMicrosecondType, UInt16Type, UInt64Type};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::{Connection, OptionalExt};

use crate::Store;
use crate::append::hits_schema;
use crate::feed::{Converter, Feed};
use crate::takeout::merge::{merge_definitions, merge_engagements, merge_imported};
use crate::takeout::{ImportStats, TakeoutError, quote};

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
CREATE TEMP TABLE _import_engagements (
    id UBIGINT, hit_id UBIGINT, engaged_ms UBIGINT, scroll_depth USMALLINT);
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
        // Imported hits may fall on the days the writer keeps sessions of
        // in memory: it reads them again at its next batch.
        self.open = None;
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
            "engagements" => "_import_engagements",
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
            "SELECT 'engagements: id ' || e.id || ' names hit ' || e.hit_id || ', which is not in the hits file' \
                 FROM _import_engagements e ANTI JOIN _import_ids i ON i.id = e.hit_id LIMIT 1",
            "SELECT 'engagements: id ' || id || ' appears ' || count(*) || ' times' \
                 FROM _import_engagements GROUP BY id HAVING count(*) > 1 LIMIT 1",
            "SELECT 'engagements: id ' || id || ' has engaged_ms ' || engaged_ms || ', above 86400000 (one day)' \
                 FROM _import_engagements WHERE engaged_ms > 86400000 LIMIT 1",
            "SELECT 'engagements: id ' || id || ' has scroll_depth ' || scroll_depth || ', above 100 (percent)' \
                 FROM _import_engagements WHERE scroll_depth > 100 LIMIT 1",
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
        // Sessions of the visitor-days that gained hits, numbered again
        // with their stored hits.
        crate::sessions::renumber(c, crate::sessions::Keys::Unnumbered)?;
        merge_definitions(c, &mut stats)?;
        merge_imported(c, &mut stats)?;
        merge_engagements(c, &mut stats)?;
        c.execute_batch(
            "DROP TABLE _import_ids; DROP TABLE _import_props; DROP TABLE _import_engagements; \
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
    // Numbered with the rest of their visitor-days at commit.
    cols.push(Arc::new(UInt8Array::new_null(batch.num_rows())));
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
