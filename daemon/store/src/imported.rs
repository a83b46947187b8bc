//! History imported from another analytics product (Plausible's CSV export,
//! read by `hitvault import-plausible`): per-site, per-day aggregates in
//! `imported_days` and `imported_values` (migration `0003_imported.sql`),
//! and how the stats engine adds them to an overview.
//!
//! # Storing
//!
//! [`Store::replace_imported`] deletes every imported row of the site whose
//! day lies in the import's range, then appends the new rows, in one
//! transaction: importing the same files again replaces them, never adds.
//!
//! # Reading
//!
//! [`Stats::overview_with_imported`] is [`Stats::overview`] plus the imported
//! numbers of the days in the window, when the query has no filter (imported
//! aggregates cannot be filtered: they hold no hits). A day is in a window
//! when its local midnight (in the window's zone) is. Then:
//!
//! - KPIs: visitors, pageviews, events, sessions (Plausible's visits) and
//!   bounces are added; bounce rate, mean duration and views per visit are
//!   recomputed over all sessions (imported duration: the visits' total).
//!   The comparison window gets the same treatment.
//! - Series: each imported day is added to the bucket holding its midnight,
//!   for day, week and month buckets; hour buckets get none (the imported
//!   data has no hours), and [`ImportedInfo::in_series`] says so.
//! - Breakdown panels: the imported rows of a dimension are added to the
//!   native rows of the same value, the rows sorted again (visitors, then
//!   count, then value) and cut to the limit; shares are over the merged
//!   visitors. So that a value's native numbers are known however it ranks,
//!   the native panels are read without a limit ([`NATIVE_ROWS`]) then.
//!
//! Visitors add up per day, as hitvault's own visitors do (a visitor counts
//! once per UTC day).

use std::collections::HashMap;

use jiff::civil::Date;
use jiff::tz::TimeZone;

use crate::stats::Stats;
use crate::stats::model::{
    Dim, Filter, Interval, Kpis, Overview, Row, StatsError, Window, check_window,
};
use crate::stats::sql::{LABEL, trunc_local};
use crate::{QueryError, Store};

/// One imported day's totals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportedDay {
    pub day: Date,
    pub visitors: u64,
    pub pageviews: u64,
    pub events: u64,
    pub visits: u64,
    pub bounces: u64,
    pub visit_duration_s: u64,
}

/// One imported day's numbers for one value of a dimension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportedValue {
    pub day: Date,
    pub dim: Dim,
    /// `None`: no value (direct traffic, an unknown country, ...).
    pub value: Option<String>,
    pub visitors: u64,
    /// As a breakdown row's count: pageviews; entrances (`entry_page`),
    /// exits (`exit_page`); events (`event`).
    pub count: u64,
}

/// Everything one import brings for one site: the day range it replaces
/// (inclusive) and its rows, each inside that range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportedSet {
    pub first_day: Date,
    pub last_day: Date,
    pub days: Vec<ImportedDay>,
    pub values: Vec<ImportedValue>,
}

/// What [`Store::replace_imported`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplaceStats {
    /// Rows (days and values) of earlier imports removed from the range.
    pub rows_replaced: u64,
    pub days: u64,
    pub values: u64,
}

/// Why an import was not stored.
#[derive(Debug, thiserror::Error)]
pub enum ImportedError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Query(#[from] QueryError),
}

impl From<duckdb::Error> for ImportedError {
    fn from(e: duckdb::Error) -> Self {
        ImportedError::Query(QueryError::Db(e))
    }
}

fn epoch() -> Date {
    jiff::civil::date(1970, 1, 1)
}

/// Days since 1970-01-01.
pub fn day_number(d: Date) -> i32 {
    (d - epoch()).get_days()
}

fn day_date(n: i32) -> Date {
    epoch()
        .checked_add(jiff::Span::new().days(i64::from(n)))
        .unwrap_or(epoch())
}

impl Store {
    /// Replaces the imported rows of site `hostname` (or alias) for the days
    /// `set.first_day..=set.last_day` with `set`, in one transaction.
    pub fn replace_imported(
        &mut self,
        hostname: &str,
        set: &ImportedSet,
    ) -> Result<ReplaceStats, ImportedError> {
        if set.first_day > set.last_day {
            return Err(ImportedError::Invalid(format!(
                "the range {} to {} is empty",
                set.first_day, set.last_day
            )));
        }
        let outside = set
            .days
            .iter()
            .map(|d| d.day)
            .chain(set.values.iter().map(|v| v.day))
            .find(|d| *d < set.first_day || *d > set.last_day);
        if let Some(d) = outside {
            return Err(ImportedError::Invalid(format!(
                "{d} is outside the imported range {} to {}",
                set.first_day, set.last_day
            )));
        }
        let h = hostname.trim().to_ascii_lowercase();
        let site: Option<u16> = {
            let mut stmt = self.conn.prepare(
                "SELECT id FROM sites WHERE hostname = ? OR list_contains(aliases, ?) ORDER BY id LIMIT 1",
            )?;
            let mut rows = stmt.query(duckdb::params![h, h])?;
            match rows.next()? {
                Some(r) => Some(r.get(0)?),
                None => None,
            }
        };
        let site = site.ok_or_else(|| {
            ImportedError::Invalid(format!(
                "no site named {hostname:?} (add it first: hitvault site add {hostname})"
            ))
        })?;
        let (lo, hi) = (day_number(set.first_day), day_number(set.last_day));
        self.conn.execute_batch("BEGIN TRANSACTION")?;
        let result = (|| -> Result<ReplaceStats, ImportedError> {
            let mut removed = 0u64;
            for table in ["imported_days", "imported_values"] {
                removed += self.conn.execute(
                    &format!("DELETE FROM {table} WHERE site_id = ? AND day BETWEEN ? AND ?"),
                    duckdb::params![site, lo, hi],
                )? as u64;
            }
            {
                let mut app = self.conn.appender("imported_days")?;
                for d in &set.days {
                    app.append_row(duckdb::params![
                        site,
                        day_number(d.day),
                        d.visitors,
                        d.pageviews,
                        d.events,
                        d.visits,
                        d.bounces,
                        d.visit_duration_s
                    ])?;
                }
                app.flush()?;
                let mut app = self.conn.appender("imported_values")?;
                for v in &set.values {
                    app.append_row(duckdb::params![
                        site,
                        day_number(v.day),
                        v.dim.name(),
                        v.value,
                        v.visitors,
                        v.count
                    ])?;
                }
                app.flush()?;
            }
            Ok(ReplaceStats {
                rows_replaced: removed,
                days: set.days.len() as u64,
                values: set.values.len() as u64,
            })
        })();
        match result {
            Ok(s) => {
                self.conn.execute_batch("COMMIT")?;
                Ok(s)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }
}

/// Native rows read per panel when imported rows are merged into it (all of
/// them, in practice: see the module doc).
pub const NATIVE_ROWS: usize = 1_000_000;

/// Whether an overview holds imported numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportedInfo {
    /// Imported numbers were added (the query had no filter and the window
    /// holds imported days).
    pub included: bool,
    /// Imported days in the window.
    pub days: u64,
    /// They were added to the time series too (not for hour buckets).
    pub in_series: bool,
}

/// The imported days whose local midnight lies in `w`, as a day-number range.
fn days_in(w: &Window) -> Option<(i32, i32)> {
    let first = w.from.to_zoned_datetime(w.tz.clone()).date();
    let last = w.to.to_zoned_datetime(w.tz.clone()).date();
    let midnight_in = |d: Date| {
        d.to_datetime(jiff::civil::Time::midnight())
            .to_zoned_datetime(w.tz.clone())
            .map(|z| z.timestamp() >= w.from && z.timestamp() < w.to)
            .unwrap_or(false)
    };
    let mut lo = first;
    while lo <= last && !midnight_in(lo) {
        lo = lo.tomorrow().ok()?;
    }
    let mut hi = last;
    while hi >= lo && !midnight_in(hi) {
        hi = hi.yesterday().ok()?;
    }
    (lo <= hi && midnight_in(lo)).then(|| (day_number(lo), day_number(hi)))
}

/// The sums of the imported days of a window.
#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    days: u64,
    visitors: u64,
    pageviews: u64,
    events: u64,
    visits: u64,
    bounces: u64,
    duration_s: u64,
}

fn add_kpis(k: &mut Kpis, t: &Totals) {
    if t.days == 0 {
        return;
    }
    let native = k.sessions as f64;
    let sessions = k.sessions + t.visits;
    let over = |native_sum: f64, imported: u64| {
        if sessions == 0 {
            0.0
        } else {
            (native_sum + imported as f64) / sessions as f64
        }
    };
    k.avg_duration_s = over(k.avg_duration_s * native, t.duration_s);
    k.views_per_visit = over(k.views_per_visit * native, t.pageviews);
    k.visitors += t.visitors;
    k.pageviews += t.pageviews;
    k.events += t.events;
    k.bounces += t.bounces;
    k.sessions = sessions;
    k.bounce_rate = if sessions == 0 {
        0.0
    } else {
        k.bounces as f64 / sessions as f64
    };
}

impl Stats {
    fn imported_totals(
        &self,
        site_id: u16,
        range: Option<(i32, i32)>,
    ) -> Result<Totals, StatsError> {
        let Some((lo, hi)) = range else {
            return Ok(Totals::default());
        };
        let t = self.conn.query_row(
            "SELECT count(*), coalesce(sum(visitors), 0)::UBIGINT, coalesce(sum(pageviews), 0)::UBIGINT,
                    coalesce(sum(events), 0)::UBIGINT, coalesce(sum(visits), 0)::UBIGINT,
                    coalesce(sum(bounces), 0)::UBIGINT, coalesce(sum(visit_duration_s), 0)::UBIGINT
             FROM imported_days WHERE site_id = ? AND day BETWEEN ? AND ?",
            duckdb::params![site_id, lo, hi],
            |r| {
                Ok(Totals {
                    days: r.get(0)?,
                    visitors: r.get(1)?,
                    pageviews: r.get(2)?,
                    events: r.get(3)?,
                    visits: r.get(4)?,
                    bounces: r.get(5)?,
                    duration_s: r.get(6)?,
                })
            },
        )?;
        Ok(t)
    }

    /// True if the site has imported values for some day of the range.
    fn has_imported_values(&self, site_id: u16, (lo, hi): (i32, i32)) -> Result<bool, StatsError> {
        let n: u64 = self.conn.query_row(
            "SELECT count(*) FROM (SELECT 1 FROM imported_values WHERE site_id = ? AND day BETWEEN ? AND ? LIMIT 1)",
            duckdb::params![site_id, lo, hi],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    /// [`Stats::overview`] with the imported numbers of the window's days
    /// added when `filters` is empty (the module doc gives the rules), and
    /// whether they were.
    pub fn overview_with_imported(
        &self,
        w: &Window,
        prev: &Window,
        filters: &[Filter],
        interval: Interval,
        panels: &[Dim],
        limit: usize,
    ) -> Result<(Overview, ImportedInfo), StatsError> {
        check_window(w)?;
        let (cur, before) = if filters.is_empty() {
            (days_in(w), days_in(prev))
        } else {
            (None, None)
        };
        let totals = self.imported_totals(w.site_id, cur)?;
        let prev_totals = self.imported_totals(w.site_id, before)?;
        let values = match cur {
            Some(r) => self.has_imported_values(w.site_id, r)?,
            None => false,
        };
        if totals.days == 0 && prev_totals.days == 0 && !values {
            let o = self.overview(w, prev, filters, interval, panels, limit)?;
            return Ok((o, ImportedInfo::default()));
        }
        let native_limit = if values { NATIVE_ROWS } else { limit };
        let mut o = self.overview(w, prev, filters, interval, panels, native_limit)?;
        add_kpis(&mut o.kpis, &totals);
        add_kpis(&mut o.previous, &prev_totals);
        let in_series = interval != Interval::Hour && totals.days > 0;
        if in_series && let Some((lo, hi)) = cur {
            self.add_series(&mut o, w, interval, lo, hi)?;
        }
        let merged_visitors = o.kpis.visitors;
        for (dim, rows) in &mut o.breakdowns {
            if values && let Some((lo, hi)) = cur {
                let imported = self.imported_rows(w.site_id, *dim, lo, hi)?;
                merge_rows(rows, imported);
            }
            for r in rows.iter_mut() {
                r.share = if merged_visitors == 0 {
                    0.0
                } else {
                    r.visitors as f64 / merged_visitors as f64
                };
            }
            rows.truncate(limit);
        }
        Ok((
            o,
            ImportedInfo {
                included: totals.days > 0 || values,
                days: totals.days,
                in_series,
            },
        ))
    }

    fn add_series(
        &self,
        o: &mut Overview,
        w: &Window,
        interval: Interval,
        lo: i32,
        hi: i32,
    ) -> Result<(), StatsError> {
        let mut stmt = self.conn.prepare(
            "SELECT day, visitors, pageviews, visits FROM imported_days
             WHERE site_id = ? AND day BETWEEN ? AND ?",
        )?;
        let rows: Vec<(i32, u64, u64, u64)> = stmt
            .query_map(duckdb::params![w.site_id, lo, hi], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect::<Result<_, _>>()?;
        let index: HashMap<String, usize> = o
            .series
            .iter()
            .enumerate()
            .map(|(i, p)| (p.start.clone(), i))
            .collect();
        for (day, visitors, pageviews, visits) in rows {
            let label = bucket_label(day_date(day), &w.tz, interval);
            if let Some(&i) = index.get(&label) {
                let p = &mut o.series[i];
                p.visitors += visitors;
                p.pageviews += pageviews;
                p.sessions += visits;
            }
        }
        Ok(())
    }

    /// The imported rows of a dimension over days `lo..=hi`, summed by value.
    fn imported_rows(
        &self,
        site_id: u16,
        dim: Dim,
        lo: i32,
        hi: i32,
    ) -> Result<Vec<Row>, StatsError> {
        let mut stmt = self.conn.prepare(
            "SELECT value, sum(visitors)::UBIGINT, sum(count)::UBIGINT FROM imported_values
             WHERE site_id = ? AND dim = ? AND day BETWEEN ? AND ? GROUP BY value",
        )?;
        let rows = stmt
            .query_map(duckdb::params![site_id, dim.name(), lo, hi], |r| {
                Ok(Row {
                    value: r.get(0)?,
                    visitors: r.get(1)?,
                    count: r.get(2)?,
                    share: 0.0,
                    engagement: None,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }
}

/// The series label of the bucket holding day `d`'s local midnight.
fn bucket_label(d: Date, tz: &TimeZone, interval: Interval) -> String {
    let midnight = d
        .to_datetime(jiff::civil::Time::midnight())
        .to_zoned_datetime(tz.clone())
        .map(|z| z.datetime())
        .unwrap_or_else(|_| d.at(0, 0, 0, 0));
    trunc_local(midnight, interval).strftime(LABEL).to_string()
}

/// Adds `imported` to `rows` by value and sorts as a breakdown does:
/// visitors, then count (both descending), then value (none last).
fn merge_rows(rows: &mut Vec<Row>, imported: Vec<Row>) {
    let mut at: HashMap<Option<String>, usize> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (r.value.clone(), i))
        .collect();
    for r in imported {
        match at.get(&r.value) {
            Some(&i) => {
                rows[i].visitors += r.visitors;
                rows[i].count += r.count;
                if let Some(e) = r.engagement {
                    rows[i].engagement.get_or_insert_default().add(&e);
                }
            }
            None => {
                at.insert(r.value.clone(), rows.len());
                rows.push(r);
            }
        }
    }
    rows.sort_by(|a, b| {
        b.visitors
            .cmp(&a.visitors)
            .then(b.count.cmp(&a.count))
            .then_with(|| match (&a.value, &b.value) {
                (Some(x), Some(y)) => x.cmp(y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            })
    });
}
