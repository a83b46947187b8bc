//! The stats engine: the numbers a site owner asks for, computed in DuckDB
//! from the raw `hits` rows.
//!
//! # The rules, the same for every number
//!
//! - **Window.** A site, a half-open UTC range `[from, to)`, and an IANA time
//!   zone that only decides where hours, days, weeks and months begin.
//! - **Sessions**: a visitor's hits of a UTC day, ordered by time; a gap of
//!   more than 30 minutes starts a new session. They are decided when the
//!   hits are stored (`hits.sess`, see [`crate::sessions`]), never here;
//!   a window sees the part of each session inside it. Sessions are always
//!   cut from all of the visitor's hits, so a filter never moves where a
//!   session begins or ends. (Visitor ids rotate daily with the salt, so no
//!   session spans a UTC midnight.) A visit's source, referrer and UTM
//!   values are its first hit's, stored on each of its hits.
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
//! Grouping hits into their sessions is most of a query's cost, so it is
//! done only where the rules need it, and the rules fix what may be
//! skipped: with conditions on hits only the sessions with a matching hit
//! are grouped ([`sql::base`]); and a number about hits alone (a breakdown
//! of a hit dimension, goal conversions, property keys and values) needs no
//! session unless a filter is on one ([`sql::base_hits`]).
//! The filtered overview goes further (`raw`): its panels of dimensions a
//! visitor mostly keeps (source, country, browser, ...), its chart and its
//! KPIs come from one grouping of the selected hits by visitor, bucket and
//! those values; and on the days where the rollups show that every visitor
//! had one value of each filtered dimension, the filters select whole
//! visitors, so the sessions with a selected hit are grouped from the
//! selected hits alone, without joining the window's other hits
//! (`rollup::whole_visitor_days`).
//! `selection_tests` holds all of these to a model of the rules in plain Rust.
//!
//! # Where things are
//!
//! - [`model`]: the public vocabulary (windows, dimensions, filters, the
//!   numbers), re-exported here;
//! - `sql`: the SQL every number is built from;
//! - `raw`: numbers from the raw hits;
//! - [`rollup`]: per-day rollups and the unfiltered overview answered from
//!   them;
//! - `cache`: what a reader keeps between queries.
//!
//! This module holds the reader, [`Stats`], and decides for each query
//! whether the rollups or the raw hits answer it.

pub(crate) mod cache;
pub(crate) mod engagement;
pub mod model;
pub(crate) mod raw;
pub mod rollup;
pub(crate) mod sql;

use std::cell::RefCell;
use std::sync::Arc;

use duckdb::Connection;

use crate::{Changes, QueryError};

pub use model::{
    Dim, EngagementSums, Field, Filter, Interval, Kpis, MAX_PROP_KEY_BYTES, MAX_PROP_VALUE_BYTES,
    MAX_WINDOW_DAYS, Op, Overview, PANELS, Point, Row, SESSION_GAP_MINUTES, StatsError, Window,
    check_prop_key,
};

use cache::Cache;
use sql::{base, base_hits};

/// A reader over the store: its own DuckDB connection, so queries run beside
/// the writer's appends and see every committed batch.
pub struct Stats {
    pub(crate) conn: Connection,
    /// The writer's change counters, which say what of `cache` is stale.
    pub(crate) changes: Arc<Changes>,
    /// What this reader planned and derived for unfiltered windows.
    pub(crate) cache: RefCell<Cache>,
}

impl Stats {
    pub(crate) fn new(conn: Connection, changes: Arc<Changes>) -> Stats {
        Stats {
            conn,
            changes,
            cache: Default::default(),
        }
    }

    /// This reader as the rollup path sees it.
    pub(crate) fn rollups(&self) -> rollup::ReaderRef<'_> {
        rollup::ReaderRef {
            conn: &self.conn,
            changes: &self.changes,
            cache: &self.cache,
        }
    }

    /// Forgets every plan and derived range this reader cached (see
    /// [`rollup`]), so that the next overview is computed from
    /// scratch. For benchmarks that measure the cold path.
    pub fn clear_cache(&self) {
        let conn = &self.conn;
        self.cache
            .borrow_mut()
            .clear(|tables| rollup::drop_derived(conn, tables));
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
        let mut k = raw::kpis(&self.conn, &base(w, filters)?)?;
        engagement::attach(&self.conn, w, filters, &mut k, None)?;
        Ok(k)
    }

    /// Visitors, pageviews and sessions per local hour, day, week or month.
    pub fn timeseries(
        &self,
        w: &Window,
        filters: &[Filter],
        interval: Interval,
    ) -> Result<Vec<Point>, StatsError> {
        raw::timeseries(&self.conn, &base(w, filters)?, w, interval)
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
        let mut rows = raw::breakdown(&self.conn, &b, dim, limit, None)?;
        if dim == Dim::Page {
            let mut k = Kpis::default();
            engagement::attach(&self.conn, w, filters, &mut k, Some(&mut rows))?;
        }
        Ok(rows)
    }

    /// The custom events the filters select (the `events` of [`Stats::kpis`],
    /// without deriving sessions where no filter needs them).
    pub fn event_count(&self, w: &Window, filters: &[Filter]) -> Result<u64, StatsError> {
        raw::event_count(&self.conn, w, filters)
    }

    /// Everything one dashboard page shows, computing the window's sessions
    /// and selection once (into temporary tables of this connection) instead
    /// of once per number: the KPIs of `w` and of `prev` (the comparison), the
    /// time series, and the top `limit` rows of each of `panels`.
    ///
    /// Without filters, from the rollups where they are valid; otherwise
    /// (or where the zone's buckets are not on quarter hours) from the raw
    /// hits.
    pub fn overview(
        &self,
        w: &Window,
        prev: &Window,
        filters: &[Filter],
        interval: Interval,
        panels: &[Dim],
        limit: usize,
    ) -> Result<Overview, StatsError> {
        let rolled = match filters.is_empty() {
            true => rollup::overview_unfiltered(&self.rollups(), w, prev, interval, panels, limit)?,
            false => None,
        };
        let mut o = match rolled {
            Some(o) => o,
            None => {
                let r = self.rollups();
                let whole = rollup::whole_visitor_days(&r, w, filters)?;
                let whole_prev = rollup::whole_visitor_days(&r, prev, filters)?;
                raw::overview(
                    &self.conn,
                    w,
                    prev,
                    filters,
                    interval,
                    panels,
                    limit,
                    (&whole, &whole_prev),
                )?
            }
        };
        engagement::attach_overview(&self.conn, w, prev, filters, &mut o)?;
        Ok(o)
    }

    /// [`Stats::overview`] from the raw hits only, whatever the filters
    /// (what the rollup tests compare the rollups with).
    #[cfg(test)]
    pub(crate) fn overview_raw(
        &self,
        w: &Window,
        prev: &Window,
        filters: &[Filter],
        interval: Interval,
        panels: &[Dim],
        limit: usize,
    ) -> Result<Overview, StatsError> {
        let mut o = raw::overview(
            &self.conn,
            w,
            prev,
            filters,
            interval,
            panels,
            limit,
            (&[], &[]),
        )?;
        engagement::attach_overview(&self.conn, w, prev, filters, &mut o)?;
        Ok(o)
    }
}
