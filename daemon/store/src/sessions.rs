//! Sessions, decided once when hits are stored.
//!
//! # The rule
//!
//! A visitor is a visitor id within one UTC day (the ids are keyed with a
//! salt that rotates at UTC midnight). A visitor's hits of that day, in
//! order of time (then id), fall into sessions: a gap of more than
//! [`SESSION_GAP_MINUTES`] starts a new one. Each hit stores its session's
//! number within the visitor's day in `hits.sess` (1, 2, ...; at most 49,
//! since a day holds at most 48 gaps of more than 30 minutes), so a session
//! is the key `(site_id, visitor, day, sess)`.
//!
//! A session's **acquisition** is that of its first hit: the referrer, the
//! source and the five UTM fields ([`ACQUISITION`]). Every hit of the
//! session stores it, so a panel or filter on a source counts whole visits
//! and agrees with itself (a custom event sent without a referrer belongs
//! to the visit's source, not to "Direct"). The original values of a later
//! hit of a visit are not kept.
//!
//! Queries never derive sessions: they group by that key. A window that
//! starts or ends within a session sees the part of it inside the window,
//! exactly as if sessions were cut from the window's hits alone (the
//! window's hits of a visitor are consecutive among all of them, so the
//! gaps between them are the same).
//!
//! # How the writer keeps it
//!
//! - **In memory, for live traffic.** [`Open`] holds, for every visitor of
//!   the current and the previous UTC day (the horizon), the number and
//!   time of its latest session. A hit at or after that time continues the
//!   session or opens the next one; a visitor not held opens session 1.
//!   That is most of the writer's hits, and costs a hash lookup each.
//! - **History alone, in memory too.** A hit dated before the horizon
//!   (batch ingest of history) marks its visitor's day dirty; [`mixed`]
//!   asks the table (key columns only) which of those days have hits
//!   stored already. A day that has none holds only the batch's hits, which
//!   [`Open::assign`] numbered by the same rule: nothing more to do. History
//!   sent in random order thus costs one narrow scan per batch, not a
//!   renumbering of every day it touches.
//! - **In SQL, for everything else.** A dirty visitor-day with stored
//!   hits, or one with a hit before the latest already held for its visitor
//!   (a late hit): after the batch is
//!   appended, [`renumber`] numbers every hit of the dirty visitor-days
//!   again with the window functions below, in the same transaction, and
//!   writes only the numbers that changed.
//! - **Imports** (Takeout) store hits without a number (NULL) and call
//!   [`renumber`] over [`Keys::Unnumbered`] before they commit; so does the
//!   migration that added the column.
//! - **After a restart** [`Open::load`] reads the horizon's latest sessions
//!   back from the table: what a crash loses in memory is rebuilt from
//!   what was committed, and the queue's replay goes through the same path.
//!
//! Memory: one entry of about 60 bytes per visitor of the current and the
//! previous day, plus about 150 bytes and the texts for each session that
//! came with a referrer or UTM values (100,000 visitors a day, half of them
//! referred: about 25 MB).

use std::collections::HashMap;
use std::sync::Arc;

use duckdb::Connection;

use crate::stats::model::{DAY_US, SESSION_GAP_MINUTES};

/// The largest gap within a session, in microseconds.
pub(crate) const GAP_US: i64 = SESSION_GAP_MINUTES * 60_000_000;

/// A visitor within a UTC day of a site: `(site_id, visitor, day number)`.
pub(crate) type Key = (u16, u64, i64);

/// The columns of `hits` that a session takes from its first hit.
pub(crate) const ACQUISITION: [&str; 7] = [
    "referrer",
    "source",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
];

/// A session's acquisition, in the order of [`ACQUISITION`] (empty: NULL).
pub(crate) type Acquisition = Arc<[Box<str>; 7]>;

/// The latest session of a visitor-day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Last {
    pub(crate) sess: u8,
    pub(crate) us: i64,
    /// Its acquisition.
    pub(crate) acq: Acquisition,
}

/// The latest session of every visitor of the horizon's days.
#[derive(Debug)]
pub(crate) struct Open {
    /// The first day (UTC day number) held; hits before it are numbered in SQL.
    horizon: i64,
    last: HashMap<Key, Last>,
}

/// A hit to number: its key, time in microseconds, id and own acquisition.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ToNumber<'a> {
    pub(crate) key: Key,
    pub(crate) us: i64,
    pub(crate) id: u64,
    pub(crate) acq: [&'a str; 7],
}

/// What [`Open::assign`] decided for a batch, applied by [`Open::keep`]
/// once the batch is committed.
#[derive(Debug, Default)]
pub(crate) struct Assigned {
    /// The session number of each hit, in the batch's order.
    pub(crate) sess: Vec<u8>,
    /// The acquisition each hit stores: None, its own (it opens a session,
    /// or the SQL decides); Some, its session's.
    pub(crate) acq: Vec<Option<Acquisition>>,
    /// Visitor-days to number again in SQL (history, late hits).
    pub(crate) dirty: Vec<Key>,
    /// The latest sessions after the batch, for the keys it touched within
    /// the horizon.
    pub(crate) latest: HashMap<Key, Last>,
}

impl Open {
    /// Reads the latest session of every visitor-day from the day before
    /// `today` (a UTC day number) on.
    pub(crate) fn load(conn: &Connection, today: i64) -> duckdb::Result<Open> {
        let horizon = today - 1;
        let from = horizon * DAY_US;
        let last = latest(
            conn,
            &format!(
                "FROM hits WHERE ts >= make_timestamp({from}::BIGINT)::TIMESTAMPTZ
                   AND sess IS NOT NULL"
            ),
        )?;
        Ok(Open { horizon, last })
    }

    /// Visitor-days held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.last.len()
    }

    /// Moves the horizon to the day before `today`, forgetting older days.
    pub(crate) fn advance(&mut self, today: i64) {
        if today - 1 > self.horizon {
            self.horizon = today - 1;
            let h = self.horizon;
            self.last.retain(|k, _| k.2 >= h);
        }
    }

    /// Numbers the sessions of `hits` (any order) from what is held, without
    /// changing it: a batch that fails to commit leaves no trace.
    pub(crate) fn assign(&self, hits: &[ToNumber<'_>]) -> Assigned {
        let mut order: Vec<usize> = (0..hits.len()).collect();
        order.sort_unstable_by_key(|&i| (hits[i].key, hits[i].us, hits[i].id));
        let mut out = Assigned {
            sess: vec![0; hits.len()],
            acq: vec![None; hits.len()],
            ..Assigned::default()
        };
        // The provisional state of keys the SQL numbers again: numbered
        // here as if alone, fixed by `renumber`.
        let mut scratch: HashMap<Key, Last> = HashMap::new();
        for i in order {
            let h = hits[i];
            let dirty = out.dirty.last() == Some(&h.key);
            let held = h.key.2 >= self.horizon && !dirty;
            let before = if held {
                out.latest.get(&h.key).or_else(|| self.last.get(&h.key))
            } else {
                scratch.get(&h.key)
            };
            let next = match before {
                None => Last {
                    sess: 1,
                    us: h.us,
                    acq: own(&h.acq),
                },
                Some(b) if h.us >= b.us && h.us - b.us > GAP_US => Last {
                    sess: b.sess.saturating_add(1),
                    us: h.us,
                    acq: own(&h.acq),
                },
                Some(b) if h.us >= b.us => {
                    out.acq[i] = Some(b.acq.clone());
                    Last {
                        sess: b.sess,
                        us: h.us,
                        acq: b.acq.clone(),
                    }
                }
                Some(b) => {
                    // A late hit: its visitor's day is numbered in SQL.
                    let b = b.clone();
                    if !dirty {
                        out.dirty.push(h.key);
                    }
                    out.sess[i] = b.sess;
                    scratch.insert(h.key, b);
                    continue;
                }
            };
            out.sess[i] = next.sess;
            if held {
                out.latest.insert(h.key, next);
            } else {
                if !dirty {
                    out.dirty.push(h.key);
                }
                scratch.insert(h.key, next);
            }
        }
        for k in &out.dirty {
            out.latest.remove(k);
        }
        out
    }

    /// Keeps what a committed batch decided (its `latest`, with the keys
    /// numbered again in SQL read back by [`reload`]).
    pub(crate) fn keep(&mut self, latest: HashMap<Key, Last>) {
        let h = self.horizon;
        self.last
            .extend(latest.into_iter().filter(|(k, _)| k.2 >= h));
    }

    /// The first day held.
    pub(crate) fn horizon(&self) -> i64 {
        self.horizon
    }
}

/// The columns [`last_of`] reads: a visitor-day's latest session number,
/// time and acquisition (every hit of a session holds the same).
const LATEST: &str = "max(sess), max(epoch_us(ts)),
    arg_max(coalesce(referrer, ''), (epoch_us(ts), id)),
    arg_max(coalesce(source, ''), (epoch_us(ts), id)),
    arg_max(coalesce(utm_source, ''), (epoch_us(ts), id)),
    arg_max(coalesce(utm_medium, ''), (epoch_us(ts), id)),
    arg_max(coalesce(utm_campaign, ''), (epoch_us(ts), id)),
    arg_max(coalesce(utm_term, ''), (epoch_us(ts), id)),
    arg_max(coalesce(utm_content, ''), (epoch_us(ts), id))";

/// A [`Last`] from columns 3.. of a row selecting [`LATEST`].
fn last_of(r: &duckdb::Row<'_>) -> duckdb::Result<Last> {
    let mut texts: [String; 7] = Default::default();
    for (i, a) in texts.iter_mut().enumerate() {
        *a = r.get(5 + i)?;
    }
    Ok(Last {
        sess: r.get(3)?,
        us: r.get(4)?,
        acq: own(&texts.each_ref().map(String::as_str)),
    })
}

/// A hit's own acquisition, as a session's. Direct visits (none of it)
/// share one value.
fn own(acq: &[&str; 7]) -> Acquisition {
    static NONE: std::sync::LazyLock<Acquisition> =
        std::sync::LazyLock::new(|| Arc::new(Default::default()));
    if acq.iter().all(|a| a.is_empty()) {
        NONE.clone()
    } else {
        Arc::new(acq.map(Box::from))
    }
}

/// Which visitor-days [`renumber`] numbers.
pub(crate) enum Keys<'a> {
    /// Those listed (the writer's dirty keys).
    Listed(&'a [Key]),
    /// Every visitor-day with a hit that has no number yet (imports, the
    /// migration that added the column), a stretch of whole UTC days at a
    /// time ([`MAX_RENUMBER_HITS`]).
    Unnumbered,
    /// Those with a hit without a number in the whole UTC days `[lo, hi)`
    /// (microseconds).
    Range { lo: i64, hi: i64 },
}

/// The most hits one statement of [`renumber`] numbers over
/// [`Keys::Unnumbered`] (more when one UTC day holds more): the window
/// functions and the update of a statement must fit DuckDB's memory limit.
pub(crate) const MAX_RENUMBER_HITS: u64 = 1_000_000;

/// [`Keys::Unnumbered`]: the days holding hits without a number, cut into
/// stretches of at most [`MAX_RENUMBER_HITS`] hits (sessions never cross a
/// UTC midnight, so each stretch is numbered on its own).
fn renumber_unnumbered(conn: &Connection) -> duckdb::Result<usize> {
    let mut stmt = conn.prepare(&format!(
        "SELECT epoch_us(ts) // {DAY_US} AS dn, count(*) FROM hits
         WHERE epoch_us(ts) // {DAY_US} IN
               (SELECT DISTINCT epoch_us(ts) // {DAY_US} FROM hits WHERE sess IS NULL)
         GROUP BY dn ORDER BY dn"
    ))?;
    let days: Vec<(i64, u64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut done = 0;
    let mut i = 0;
    while i < days.len() {
        let (first, mut n) = (days[i].0, days[i].1);
        let mut j = i + 1;
        while j < days.len() && n + days[j].1 <= MAX_RENUMBER_HITS {
            n += days[j].1;
            j += 1;
        }
        let last = days[j - 1].0;
        done += renumber(
            conn,
            Keys::Range {
                lo: first * DAY_US,
                hi: (last + 1) * DAY_US,
            },
        )?;
        i = j;
    }
    Ok(done)
}

/// The temporary table the writer lists its dirty keys in.
const DIRTY: &str = "CREATE TEMP TABLE IF NOT EXISTS hv_dirty (
    site_id USMALLINT, visitor UBIGINT, dn BIGINT)";

/// Numbers every hit of the visitor-days `keys` again, by the rule above,
/// and gives each its session's acquisition, writing only the hits where
/// either changed. Runs in the caller's transaction.
/// Returns the number of hits whose number was written.
pub(crate) fn renumber(conn: &Connection, keys: Keys<'_>) -> duckdb::Result<usize> {
    let (keys_sql, lo, hi) = match keys {
        Keys::Listed([]) => return Ok(0),
        Keys::Listed(list) => {
            fill_dirty(conn, list)?;
            let (lo, hi) = day_span(list);
            ("SELECT * FROM hv_dirty".to_owned(), lo, hi)
        }
        Keys::Unnumbered => return renumber_unnumbered(conn),
        Keys::Range { lo, hi } => (
            format!(
                "SELECT DISTINCT site_id, visitor, epoch_us(ts) // {DAY_US} AS dn
                 FROM hits WHERE sess IS NULL
                   AND ts >= make_timestamp({lo}::BIGINT)::TIMESTAMPTZ
                   AND ts < make_timestamp({hi}::BIGINT)::TIMESTAMPTZ"
            ),
            lo,
            hi,
        ),
    };
    let range = |t: &str| {
        format!(
            "{t}ts >= make_timestamp({lo}::BIGINT)::TIMESTAMPTZ
             AND {t}ts < make_timestamp({hi}::BIGINT)::TIMESTAMPTZ"
        )
    };
    let (inner, outer) = (range(""), range("hits."));
    let cols = ACQUISITION.join(", ");
    let firsts = ACQUISITION
        .map(|c| format!("first_value({c}) OVER s AS {c}"))
        .join(", ");
    let olds = ACQUISITION.map(|c| format!("{c} AS o_{c}")).join(", ");
    let changed = ACQUISITION
        .map(|c| format!("o_{c} IS DISTINCT FROM {c}"))
        .join(" OR ");
    let set = ACQUISITION.map(|c| format!("{c} = n.{c}")).join(", ");
    let n = conn.execute(
        &format!(
            "UPDATE hits SET sess = n.sess, {set} FROM (
               WITH keys AS ({keys_sql}), x AS (
                 SELECT id, site_id, visitor, epoch_us(ts) AS us,
                        epoch_us(ts) // {DAY_US} AS dn, sess AS old, {cols}
                 FROM hits WHERE {inner}
               ), d AS (
                 SELECT x.* FROM x SEMI JOIN keys USING (site_id, visitor, dn)
               ), marked AS (
                 SELECT *,
                        CASE WHEN us - lag(us) OVER (PARTITION BY site_id, visitor, dn
                                                     ORDER BY us, id) <= {GAP_US}
                             THEN 0 ELSE 1 END AS starts
                 FROM d
               ), numbered AS (
                 SELECT *, sum(starts) OVER (PARTITION BY site_id, visitor, dn
                                             ORDER BY us, id
                                             ROWS UNBOUNDED PRECEDING)::UTINYINT AS sess
                 FROM marked
               ), f AS (
                 SELECT id, sess, old, {olds}, {firsts} FROM numbered
                 WINDOW s AS (PARTITION BY site_id, visitor, dn, sess ORDER BY us, id)
               )
               SELECT id, sess, {cols} FROM f
               WHERE old IS DISTINCT FROM sess OR {changed}
             ) n
             WHERE hits.id = n.id AND {outer}"
        ),
        [],
    )?;
    Ok(n)
}

/// Of the writer's dirty visitor-days `keys`, those that must be numbered
/// in SQL: every late one (within the horizon), and those of history (before
/// `horizon`) that already have stored hits. Called before the batch is
/// appended, so "stored" means stored by earlier batches. A history
/// visitor-day left out holds only this batch's hits, which
/// [`Open::assign`] numbered from nothing in the same order and by the same
/// rule as the SQL: their numbers and acquisitions are final.
///
/// The query reads only the key columns, of the batch's visitors: history
/// sent in random order (a visitor-day per batch spread over a year) costs a
/// narrow scan, not a renumbering of every hit of the year.
pub(crate) fn mixed(conn: &Connection, keys: &[Key], horizon: i64) -> duckdb::Result<Vec<Key>> {
    let history: Vec<Key> = keys.iter().copied().filter(|k| k.2 < horizon).collect();
    if history.is_empty() {
        return Ok(keys.to_vec());
    }
    fill_dirty(conn, &history)?;
    let (lo, hi) = day_span(&history);
    let mut stmt = conn.prepare(&format!(
        "SELECT DISTINCT site_id, visitor, dn FROM (
           SELECT site_id, visitor, epoch_us(ts) // {DAY_US} AS dn FROM hits
           WHERE ts >= make_timestamp({lo}::BIGINT)::TIMESTAMPTZ
             AND ts < make_timestamp({hi}::BIGINT)::TIMESTAMPTZ
             AND visitor IN (SELECT visitor FROM hv_dirty)
         ) SEMI JOIN hv_dirty USING (site_id, visitor, dn)"
    ))?;
    let stored: std::collections::HashSet<Key> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    conn.execute_batch("DROP TABLE IF EXISTS hv_dirty")?;
    Ok(keys
        .iter()
        .copied()
        .filter(|k| k.2 >= horizon || stored.contains(k))
        .collect())
}

/// Lists `keys` in the temporary table `hv_dirty`.
fn fill_dirty(conn: &Connection, keys: &[Key]) -> duckdb::Result<()> {
    conn.execute_batch(DIRTY)?;
    conn.execute_batch("DELETE FROM hv_dirty")?;
    let mut app = conn.appender("hv_dirty")?;
    for &(s, v, d) in keys {
        app.append_row(duckdb::params![s, v, d])?;
    }
    app.flush()
}

/// The whole UTC days `keys` span, `[lo, hi)` in microseconds (not empty).
fn day_span(keys: &[Key]) -> (i64, i64) {
    let lo = keys.iter().map(|k| k.2).min().expect("not empty") * DAY_US;
    let hi = (keys.iter().map(|k| k.2).max().expect("not empty") + 1) * DAY_US;
    (lo, hi)
}

/// Numbers the writer's dirty visitor-days `keys` again ([`renumber`]) and
/// returns the latest session of those within the horizon starting at
/// `horizon`, read back in the same transaction, and the number of hits
/// whose number or acquisition was written.
pub(crate) fn renumber_dirty(
    conn: &Connection,
    keys: &[Key],
    horizon: i64,
) -> duckdb::Result<(HashMap<Key, Last>, usize)> {
    let written = renumber(conn, Keys::Listed(keys))?;
    let latest = reload(conn, keys, horizon)?;
    conn.execute_batch("DROP TABLE IF EXISTS hv_dirty")?;
    Ok((latest, written))
}

/// What the writer's numbering has cost so far (since the store was
/// opened): how the visitor-days its batches touched were decided.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionWork {
    /// History visitor-days (before the horizon) numbered in memory: the
    /// batch held all their hits.
    pub history_in_memory: u64,
    /// Visitor-days numbered in SQL: late hits, and history mixed with
    /// hits stored before.
    pub keys_in_sql: u64,
    /// Hits whose number or acquisition the SQL wrote.
    pub hits_rewritten: u64,
}

/// The latest sessions of `keys` (listed in `hv_dirty`) within the horizon
/// starting at `horizon`.
fn reload(conn: &Connection, keys: &[Key], horizon: i64) -> duckdb::Result<HashMap<Key, Last>> {
    if !keys.iter().any(|k| k.2 >= horizon) {
        return Ok(HashMap::new());
    }
    let lo = horizon * DAY_US;
    latest(
        conn,
        &format!(
            "FROM hits SEMI JOIN hv_dirty d
                  ON d.site_id = hits.site_id AND d.visitor = hits.visitor
                     AND d.dn = epoch_us(hits.ts) // {DAY_US}
             WHERE ts >= make_timestamp({lo}::BIGINT)::TIMESTAMPTZ"
        ),
    )
}

/// The latest session of each visitor-day among the hits `from` selects
/// (a `FROM ... WHERE ...` over `hits`).
fn latest(conn: &Connection, from: &str) -> duckdb::Result<HashMap<Key, Last>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT site_id, visitor, epoch_us(ts) // {DAY_US} AS dn, {LATEST} {from} GROUP BY ALL"
    ))?;
    let rows = stmt.query_map([], |r| {
        let key: Key = (r.get(0)?, r.get(1)?, r.get(2)?);
        Ok((key, last_of(r)?))
    })?;
    rows.collect()
}
