//! Appending a batch of hits with DuckDB's Appender, in one transaction with
//! the queue position the batch covers.

use std::sync::Arc;

use duckdb::arrow::array::{
    ArrayRef, StringBuilder, TimestampMicrosecondBuilder, UInt8Builder, UInt16Builder,
    UInt32Builder, UInt64Builder,
};
use duckdb::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use duckdb::arrow::record_batch::RecordBatch;
use hitvault_core::{EngagementRef, Hit, HitRef};

use std::collections::HashMap;

use crate::sessions::{self, Key, Last, Open, ToNumber};
use crate::stats::model::DAY_US;
use crate::{QueryError, Store};

/// Appending a batch failed; nothing of it is stored and the committed position
/// is unchanged, so the batch can be retried as it is.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("DuckDB: {0}")]
    Db(#[from] duckdb::Error),
    #[error("building the record batch: {0}")]
    Arrow(#[from] duckdb::arrow::error::ArrowError),
    #[error("reading sites: {0}")]
    Sites(#[from] QueryError),
    #[error(
        "queue positions must increase: batch ends at {batch_end}, already committed {committed}"
    )]
    Stale { batch_end: u64, committed: u64 },
}

/// What one append stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppendStats {
    pub hits: usize,
    pub props: usize,
    /// Hits naming a site that no longer exists; skipped, never stored.
    pub unknown_site: usize,
    /// Engagements stored, each with the pageview it belongs to.
    pub engagements: usize,
    /// Engagements whose pageview was not found (see
    /// [`Store::append_batch`]); not stored.
    pub unattributed: usize,
}

/// The columns of `hits`, in order, as appends and imports hand them to DuckDB.
pub(crate) fn hits_schema() -> Arc<Schema> {
    let s = |n: &str| Field::new(n, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::UInt64, false),
        Field::new("site_id", DataType::UInt16, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("kind", DataType::UInt8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("path", DataType::Utf8, false),
        s("referrer"),
        s("source"),
        s("utm_source"),
        s("utm_medium"),
        s("utm_campaign"),
        s("utm_term"),
        s("utm_content"),
        s("browser"),
        s("browser_version"),
        s("os"),
        s("os_version"),
        Field::new("device", DataType::UInt8, false),
        s("country"),
        s("language"),
        Field::new("screen_width", DataType::UInt16, true),
        Field::new("visitor", DataType::UInt64, false),
        // The session's number within the visitor's day; NULL until
        // numbered (see `crate::sessions`).
        Field::new("sess", DataType::UInt8, true),
    ]))
}

fn props_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("hit_id", DataType::UInt64, false),
        Field::new("site_id", DataType::UInt16, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, false),
    ]))
}

/// What an engagement is matched by, before it is attributed to a pageview
/// (a temporary table of the writer's connection, emptied after each batch).
const ENGAGED_IN: &str = "CREATE TEMP TABLE IF NOT EXISTS hv_engaged_in (
    id UBIGINT, site_id USMALLINT, ts TIMESTAMPTZ, visitor UBIGINT, path VARCHAR,
    engaged_ms UINTEGER, scroll_depth UTINYINT)";

fn engaged_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::UInt64, false),
        Field::new("site_id", DataType::UInt16, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("visitor", DataType::UInt64, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("engaged_ms", DataType::UInt32, false),
        Field::new("scroll_depth", DataType::UInt8, true),
    ]))
}

/// Attributes the engagements in `hv_engaged_in` to their pageviews and
/// stores them; returns how many were stored. The rule (documented in
/// `docs/internals/engagement.md`): an engagement belongs to the latest
/// pageview of the same site, visitor and path at or before it, on the same
/// UTC day (a visitor id lasts one day). The hits scanned are bounded by the
/// batch's days, written into the text so DuckDB prunes row groups by `ts`,
/// and narrowed to the batch's visitors before the join sorts them: with a
/// million pageviews in the day this is 6 times faster (`engage_bench`).
fn attribute(conn: &duckdb::Connection, lo_us: i64, hi_us: i64) -> duckdb::Result<usize> {
    let day = crate::stats::model::DAY_US;
    let from = lo_us.div_euclid(day) * day;
    conn.execute(
        &format!(
            "INSERT INTO engagements
             SELECT e.id, h.id, h.site_id, h.ts, h.path, e.engaged_ms, e.scroll_depth
             FROM (SELECT *, epoch_us(ts) // {day} AS dn FROM hv_engaged_in) e
             ASOF JOIN (
               SELECT id, site_id, visitor, path, ts, epoch_us(ts) // {day} AS dn FROM hits
               WHERE kind = 0
                 AND ts >= make_timestamp({from}::BIGINT)::TIMESTAMPTZ
                 AND ts <= make_timestamp({hi_us}::BIGINT)::TIMESTAMPTZ
                 AND visitor IN (SELECT visitor FROM hv_engaged_in)
             ) h
             ON e.site_id = h.site_id AND e.visitor = h.visitor AND e.path = h.path
                AND e.dn = h.dn AND e.ts >= h.ts"
        ),
        [],
    )
}

/// The `i`th acquisition column of a hit: its session's, or its own.
fn pick<'x>(session: &'x Option<sessions::Acquisition>, i: usize, own: &'x str) -> &'x str {
    session.as_ref().map_or(own, |a| &a[i])
}

/// Appends an optional string: empty means unknown and is stored as NULL.
fn opt(b: &mut StringBuilder, v: &str) {
    if v.is_empty() {
        b.append_null()
    } else {
        b.append_value(v)
    }
}

impl Store {
    /// Stores `hits` (each with its queue sequence number) and sets the committed
    /// position to `committed_seq`, atomically. A batch whose end is not above the
    /// current position is refused (it was stored already).
    pub fn append(
        &mut self,
        hits: &[(u64, Hit)],
        committed_seq: u64,
    ) -> Result<AppendStats, AppendError> {
        let refs: Vec<(u64, HitRef<'_>)> = hits.iter().map(|(s, h)| (*s, h.as_ref())).collect();
        self.append_refs(&refs, committed_seq)
    }

    /// [`Store::append`] for hits that borrow their texts (the writer decodes
    /// queue records into these without copying).
    pub fn append_refs(
        &mut self,
        hits: &[(u64, HitRef<'_>)],
        committed_seq: u64,
    ) -> Result<AppendStats, AppendError> {
        self.append_batch(hits, &[], committed_seq)
    }

    /// Stores a batch of queue records: the hits, then the engagements, each
    /// attributed to its pageview (the latest pageview of the same site,
    /// visitor and path at or before it, on the same UTC day, this batch's
    /// hits included). An engagement without such a pageview (it arrived
    /// after midnight, or its pageview was dropped or never sent) is not
    /// stored and is counted in [`AppendStats::unattributed`]. All of it and
    /// `committed_seq` in one transaction, as [`Store::append`].
    pub fn append_batch(
        &mut self,
        hits: &[(u64, HitRef<'_>)],
        engagements: &[(u64, EngagementRef<'_>)],
        committed_seq: u64,
    ) -> Result<AppendStats, AppendError> {
        let current = self.committed_seq()?;
        if committed_seq <= current {
            return Err(AppendError::Stale {
                batch_end: committed_seq,
                committed: current,
            });
        }
        self.append_with(hits, engagements, committed_seq, None)
    }

    /// A stretch of the cluster's replicated log: its hits and engagements
    /// (each id unique across the cluster, each applied once: the cluster's
    /// state machine decided which), the position up to which this node's
    /// own queue is now stored (`own`, kept if lower than the stored one),
    /// and the machine's `state` after the stretch, all in one transaction,
    /// as [`Store::append_batch`] does. The cluster's state machine skips
    /// entries at or below the applied index that `state` records, which is
    /// what makes a replay exactly-once.
    pub fn append_replicated(
        &mut self,
        hits: &[(u64, HitRef<'_>)],
        engagements: &[(u64, EngagementRef<'_>)],
        own: u64,
        state: &[u8],
    ) -> Result<AppendStats, AppendError> {
        let current = self.committed_seq()?;
        self.append_with(hits, engagements, own.max(current), Some(state))
    }

    /// The cluster state the last [`Store::append_replicated`] stored.
    pub fn cluster_state(&self) -> Result<Option<Vec<u8>>, QueryError> {
        let mut st = self
            .conn
            .prepare("SELECT state FROM cluster_state WHERE id = 1")?;
        let mut rows = st.query([])?;
        Ok(match rows.next()? {
            Some(r) => Some(r.get(0)?),
            None => None,
        })
    }

    fn append_with(
        &mut self,
        hits: &[(u64, HitRef<'_>)],
        engagements: &[(u64, EngagementRef<'_>)],
        committed_seq: u64,
        cluster: Option<&[u8]>,
    ) -> Result<AppendStats, AppendError> {
        if hits
            .iter()
            .any(|(_, h)| !self.site_ids.contains_key(h.site))
            || engagements
                .iter()
                .any(|(_, e)| !self.site_ids.contains_key(e.site))
        {
            self.refresh_sites()?;
        }
        let n = hits.len();
        let mut stats = AppendStats::default();
        // Sessions first: each hit's number is one of its columns.
        let today = jiff::Timestamp::now().as_microsecond().div_euclid(DAY_US);
        let open = match self.open.take() {
            Some(mut o) => {
                o.advance(today);
                o
            }
            None => Open::load(&self.conn, today)?,
        };
        let sids: Vec<Option<u16>> = hits
            .iter()
            .map(|(_, h)| self.site_ids.get(h.site).copied())
            .collect();
        let to_number: Vec<ToNumber> = hits
            .iter()
            .zip(&sids)
            .filter_map(|((seq, h), sid)| {
                let us = h.ts_ms.saturating_mul(1000);
                sid.map(|s| ToNumber {
                    key: (s, h.visitor, us.div_euclid(DAY_US)),
                    us,
                    id: *seq,
                    acq: [
                        h.referrer,
                        h.source,
                        h.utm.source,
                        h.utm.medium,
                        h.utm.campaign,
                        h.utm.term,
                        h.utm.content,
                    ],
                })
            })
            .collect();
        let assigned = open.assign(&to_number);
        self.open = Some(open);
        let mut numbers = assigned.sess.iter().zip(&assigned.acq);
        let mut min_ts = i64::MAX;
        let mut id = UInt64Builder::with_capacity(n);
        let mut site = UInt16Builder::with_capacity(n);
        let mut ts = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut kind = UInt8Builder::with_capacity(n);
        let mut name = StringBuilder::new();
        let mut path = StringBuilder::new();
        let mut strs: Vec<StringBuilder> = (0..11).map(|_| StringBuilder::new()).collect();
        let mut device = UInt8Builder::with_capacity(n);
        let mut country = StringBuilder::new();
        let mut language = StringBuilder::new();
        let mut width = UInt16Builder::with_capacity(n);
        let mut visitor = UInt64Builder::with_capacity(n);
        let mut sess = UInt8Builder::with_capacity(n);
        let (mut p_id, mut p_site, mut p_key, mut p_val) = (
            UInt64Builder::new(),
            UInt16Builder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
        );
        let mut p_ts = TimestampMicrosecondBuilder::new().with_timezone("UTC");

        for ((seq, h), sid) in hits.iter().zip(&sids) {
            let Some(sid) = *sid else {
                stats.unknown_site += 1;
                continue;
            };
            let (number, session_acq) = numbers.next().expect("one number per stored hit");
            sess.append_value(*number);
            let micros = h.ts_ms.saturating_mul(1000);
            min_ts = min_ts.min(micros);
            id.append_value(*seq);
            site.append_value(sid);
            ts.append_value(micros);
            kind.append_value(h.kind as u8);
            name.append_value(h.name);
            path.append_value(h.path);
            // A hit that continues a session stores the session's
            // acquisition (see `crate::sessions`).
            let acq = |i, own| pick(session_acq, i, own);
            let texts = [
                acq(0, h.referrer),
                acq(1, h.source),
                acq(2, h.utm.source),
                acq(3, h.utm.medium),
                acq(4, h.utm.campaign),
                acq(5, h.utm.term),
                acq(6, h.utm.content),
                h.browser,
                h.browser_version,
                h.os,
                h.os_version,
            ];
            for (b, v) in strs.iter_mut().zip(texts) {
                opt(b, v);
            }
            device.append_value(h.device as u8);
            opt(&mut country, h.country);
            opt(&mut language, h.language);
            if h.screen_width == 0 {
                width.append_null()
            } else {
                width.append_value(h.screen_width)
            }
            visitor.append_value(h.visitor);
            for (k, v) in &h.props {
                p_id.append_value(*seq);
                p_site.append_value(sid);
                p_ts.append_value(micros);
                p_key.append_value(k);
                p_val.append_value(v);
                stats.props += 1;
            }
            stats.hits += 1;
        }

        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(id.finish()),
            Arc::new(site.finish()),
            Arc::new(ts.finish()),
            Arc::new(kind.finish()),
            Arc::new(name.finish()),
            Arc::new(path.finish()),
        ];
        cols.extend(strs.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        cols.extend([
            Arc::new(device.finish()) as ArrayRef,
            Arc::new(country.finish()),
            Arc::new(language.finish()),
            Arc::new(width.finish()),
            Arc::new(visitor.finish()),
            Arc::new(sess.finish()),
        ]);
        let hits_batch = RecordBatch::try_new(hits_schema(), cols)?;
        let props_batch = RecordBatch::try_new(
            props_schema(),
            vec![
                Arc::new(p_id.finish()),
                Arc::new(p_site.finish()),
                Arc::new(p_ts.finish()),
                Arc::new(p_key.finish()),
                Arc::new(p_val.finish()),
            ],
        )?;

        let (mut e_lo, mut e_hi) = (i64::MAX, i64::MIN);
        let engaged_batch = if engagements.is_empty() {
            None
        } else {
            let n = engagements.len();
            let mut id = UInt64Builder::with_capacity(n);
            let mut site = UInt16Builder::with_capacity(n);
            let mut ts = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
            let mut visitor = UInt64Builder::with_capacity(n);
            let mut path = StringBuilder::new();
            let mut ms = UInt32Builder::with_capacity(n);
            let mut sd = UInt8Builder::with_capacity(n);
            for (seq, e) in engagements {
                let Some(&sid) = self.site_ids.get(e.site) else {
                    stats.unknown_site += 1;
                    continue;
                };
                let micros = e.ts_ms.saturating_mul(1000);
                (e_lo, e_hi) = (e_lo.min(micros), e_hi.max(micros));
                id.append_value(*seq);
                site.append_value(sid);
                ts.append_value(micros);
                visitor.append_value(e.visitor);
                path.append_value(e.path);
                ms.append_value(e.engaged_ms);
                sd.append_option(e.scroll_depth.map(|d| d.min(100)));
            }
            let b = RecordBatch::try_new(
                engaged_schema(),
                vec![
                    Arc::new(id.finish()),
                    Arc::new(site.finish()),
                    Arc::new(ts.finish()),
                    Arc::new(visitor.finish()),
                    Arc::new(path.finish()),
                    Arc::new(ms.finish()),
                    Arc::new(sd.finish()),
                ],
            )?;
            (b.num_rows() > 0).then_some(b)
        };
        let to_attribute = engaged_batch.as_ref().map_or(0, |b| b.num_rows());

        self.conn.execute_batch("BEGIN TRANSACTION")?;
        let horizon = self.open.as_ref().map_or(today - 1, |o| o.horizon());
        let result =
            (|| -> Result<(usize, HashMap<Key, Last>, sessions::SessionWork), AppendError> {
                // Before the batch is stored: which dirty visitor-days mix
                // with hits stored earlier (the others are numbered already).
                let sql = if assigned.dirty.is_empty() {
                    Vec::new()
                } else {
                    sessions::mixed(&self.conn, &assigned.dirty, horizon)?
                };
                if hits_batch.num_rows() > 0 {
                    let mut app = self.conn.appender("hits")?;
                    app.append_record_batch(hits_batch)?;
                    app.flush()?;
                }
                let mut latest = assigned.latest;
                let mut work = sessions::SessionWork {
                    history_in_memory: (assigned.dirty.len() - sql.len()) as u64,
                    keys_in_sql: sql.len() as u64,
                    hits_rewritten: 0,
                };
                if !sql.is_empty() {
                    let (l, written) = sessions::renumber_dirty(&self.conn, &sql, horizon)?;
                    latest.extend(l);
                    work.hits_rewritten = written as u64;
                }
                if props_batch.num_rows() > 0 {
                    let mut app = self.conn.appender("hit_props")?;
                    app.append_record_batch(props_batch)?;
                    app.flush()?;
                }
                let mut attributed = 0;
                if let Some(b) = engaged_batch {
                    self.conn.execute_batch(ENGAGED_IN)?;
                    let mut app = self.conn.appender("hv_engaged_in")?;
                    app.append_record_batch(b)?;
                    app.flush()?;
                    drop(app);
                    attributed = attribute(&self.conn, e_lo, e_hi)?;
                    self.conn.execute_batch("DELETE FROM hv_engaged_in")?;
                }
                self.conn.execute(
                    "UPDATE ingest_state SET committed_seq = ? WHERE id = 1",
                    [committed_seq],
                )?;
                if let Some(state) = cluster {
                    self.conn.execute(
                        "INSERT OR REPLACE INTO cluster_state VALUES (1, ?)",
                        [state],
                    )?;
                }
                self.conn.execute_batch("COMMIT")?;
                Ok((attributed, latest, work))
            })();
        match result {
            Ok((attributed, latest, work)) => {
                let w = &mut self.session_work;
                w.history_in_memory += work.history_in_memory;
                w.keys_in_sql += work.keys_in_sql;
                w.hits_rewritten += work.hits_rewritten;
                if let Some(o) = &mut self.open {
                    o.keep(latest);
                }
                stats.engagements = attributed;
                stats.unattributed = to_attribute - attributed;
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
        if stats.hits > 0 {
            self.changes.added(min_ts);
        }
        Ok(stats)
    }
}
