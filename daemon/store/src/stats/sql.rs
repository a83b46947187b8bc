//! The SQL the stats engine is built from: the window's hits with their
//! sessions ([`hits_in`]), what the filters
//! select ([`conds`], [`base`], [`base_hits`]), local time in the window's
//! zone and the chart's buckets ([`buckets`], [`bucket_bounds`]).
//!
//! Both ways of answering build on it: the raw path (`raw`) and the rollup
//! path (`rollup`), which derives its per-day tables with the very same SQL;
//! so do goals and imported history. It runs no query itself.

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::stats::model::{
    DAY_US, Dim, Field, Filter, Interval, Op, StatsError, Window, check_window,
};

impl Dim {
    /// The SQL expression of a hit-level dimension over the `hits` columns,
    /// or over the `sessions` columns for session-level ones.
    pub(crate) fn expr(self) -> &'static str {
        match self {
            Dim::Page => "path",
            Dim::EntryPage => "entry_page",
            Dim::ExitPage => "exit_page",
            Dim::Source => "source",
            Dim::Referrer => "referrer",
            Dim::UtmSource => "utm_source",
            Dim::UtmMedium => "utm_medium",
            Dim::UtmCampaign => "utm_campaign",
            Dim::UtmTerm => "utm_term",
            Dim::UtmContent => "utm_content",
            Dim::Country => "country",
            Dim::Browser => "browser",
            Dim::Os => "os",
            Dim::Device => {
                "CASE device WHEN 1 THEN 'desktop' WHEN 2 THEN 'mobile' WHEN 3 THEN 'tablet' END"
            }
            Dim::Language => "language",
            Dim::Screen => {
                "CASE WHEN screen_width IS NULL THEN NULL WHEN screen_width < 576 THEN 'mobile' \
                 WHEN screen_width < 992 THEN 'tablet' WHEN screen_width < 1440 THEN 'laptop' \
                 ELSE 'desktop' END"
            }
            Dim::Event => "CASE WHEN kind = 1 THEN name END",
        }
    }
}

impl Interval {
    /// The unit DuckDB's `date_trunc` calls the bucket.
    pub(crate) fn unit(self) -> &'static str {
        match self {
            Interval::Hour => "hour",
            Interval::Day => "day",
            Interval::Week => "week",
            Interval::Month => "month",
        }
    }
}

/// SQL text and its parameters.
pub(crate) struct Sql {
    pub(crate) text: String,
    pub(crate) params: Vec<duckdb::types::Value>,
}

/// The common part of every query: the window's hits with their session,
/// the sessions, and the selection the filters make (`sel`, `sess_sel`).
pub(crate) fn base(w: &Window, filters: &[Filter]) -> Result<Sql, StatsError> {
    let c = conds(w, filters);
    let (h, sel) = (hits_cte(w, &c)?, selection_cte(&c));
    let mut params = h.params;
    params.extend(sel.params);
    Ok(Sql {
        text: format!("WITH {}, {}", h.text, sel.text),
        params,
    })
}

/// Like [`base`], but for numbers about hits only (visitors, counts,
/// property values): `sel` without the session columns. When no filter is
/// on a session dimension, every hit that matches the filters is selected
/// whatever its session, so the sessions are not computed at all (they are
/// most of the cost of a query); otherwise this is [`base`].
pub(crate) fn base_hits(w: &Window, filters: &[Filter]) -> Result<Sql, StatsError> {
    let c = conds(w, filters);
    if !c.sess.is_empty() {
        return base(w, filters);
    }
    check_window(w)?;
    let scan = window_hits(
        "w",
        w.site_id,
        &[(w.from.as_microsecond(), w.to.as_microsecond())],
    );
    Ok(Sql {
        text: format!(
            "WITH {}, sel AS (SELECT * FROM w WHERE {})",
            scan.text,
            and(&c.hit)
        ),
        params: c.hit_params,
    })
}

/// CTEs `w` and `h`: the window's hits, each with its session (`visitor`,
/// `sess`). When the filters have conditions on hits, only the hits of
/// sessions with at least one matching hit: no other session can be
/// selected, and grouping the few sessions is much cheaper than all.
pub(crate) fn hits_cte(w: &Window, c: &Conds) -> Result<Sql, StatsError> {
    check_window(w)?;
    let ranges = [(w.from.as_microsecond(), w.to.as_microsecond())];
    Ok(hits_cte_in(w.site_id, &ranges, c))
}

/// [`hits_cte`] over the half-open UTC `ranges` of the site's hits.
fn hits_cte_in(site_id: u16, ranges: &[(i64, i64)], c: &Conds) -> Sql {
    if c.hit.is_empty() {
        hits_in(site_id, ranges)
    } else {
        // Two scans of the window, each read once: the sessions with a
        // matching hit (a few narrow columns), then their hits. A CTE read
        // twice is materialised whole, every column of every hit, which
        // spilled to disk on a year of a large site (10x slower); `m` is
        // narrow. The hits are first narrowed by the stored visitor id
        // alone (a probe of 8 bytes instead of 17: half the join's time on
        // a year), then joined by session.
        let (m, all) = (
            window_hits("w_m", site_id, ranges),
            window_hits("w_all", site_id, ranges),
        );
        Sql {
            text: format!(
                "{}, m AS (
                  SELECT DISTINCT visitor, v64, sess FROM w_m WHERE {}
                ), {}, w AS (
                  SELECT * FROM (SELECT * FROM w_all WHERE v64 IN (SELECT v64 FROM m))
                  SEMI JOIN m USING (visitor, sess)
                ), h AS (SELECT * FROM w)",
                m.text,
                and(&c.hit),
                all.text,
            ),
            params: c.hit_params.clone(),
        }
    }
}

/// The most stretches of a window [`touched_sessions`] splits it into.
const MAX_PIECES: usize = 32;

/// A query of the sessions with a selected hit (the columns of `sessions`)
/// in `w`, for conditions on hits only (`c.sess_free()`). On the `whole`
/// days (UTC day numbers of whole days of `w`, in order; see
/// `rollup::whole_visitor_days`) a session with a selected hit has only
/// selected hits, so its numbers are grouped from the selected hits alone;
/// on the rest of the window from every hit of the sessions with a
/// selected hit ([`hits_cte`]), which takes a join of all the window's
/// hits. Sessions never cross a UTC midnight, so the two parts are
/// disjoint.
pub(crate) fn touched_sessions(w: &Window, c: &Conds, whole: &[i32]) -> Result<Sql, StatsError> {
    check_window(w)?;
    let (from, to) = (w.from.as_microsecond(), w.to.as_microsecond());
    // The whole days as ranges, and the rest of the window.
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for &d in whole {
        let (a, b) = (i64::from(d) * DAY_US, (i64::from(d) + 1) * DAY_US);
        match runs.last_mut() {
            Some((_, end)) if *end == a => *end = b,
            _ => runs.push((a, b)),
        }
    }
    let mut rest: Vec<(i64, i64)> = Vec::new();
    let mut cur = from;
    for &(a, b) in &runs {
        if cur < a {
            rest.push((cur, a));
        }
        cur = b;
    }
    if cur < to || runs.is_empty() {
        rest.push((cur, to));
    }
    // Each piece is a scan of its own (two for the rest); whole days
    // scattered over a long window are not worth hundreds of them.
    if rest.len() > MAX_PIECES {
        return touched_sessions(w, c, &[]);
    }
    let mut parts = Vec::new();
    let mut params = Vec::new();
    if !runs.is_empty() {
        let scan = window_hits("ws", w.site_id, &runs);
        parts.push(format!(
            "SELECT * FROM (WITH {}, h AS (SELECT * FROM ws WHERE {}), {} SELECT * FROM sessions)",
            scan.text,
            and(&c.hit),
            SESSIONS
        ));
        params.extend(c.hit_params.iter().cloned());
    }
    if !rest.is_empty() {
        let h = hits_cte_in(w.site_id, &rest, c);
        parts.push(format!(
            "SELECT * FROM (WITH {}, {} SELECT * FROM sessions)",
            h.text, SESSIONS
        ));
        params.extend(h.params);
    }
    Ok(Sql {
        text: parts.join(" UNION ALL "),
        params,
    })
}

/// CTEs `w` and `h` over the site's hits in the half-open UTC ranges
/// `ranges` (microseconds; no range, no hits), each with its session.
///
/// A visitor is a visitor id *within one UTC day*: the ids are keyed with a
/// salt that rotates at UTC midnight, so a person's hits on two days carry
/// two ids anyway, and the rule makes it exact for batch-ingested history
/// too. `visitor` here is that pair folded into one key (`id * 2^16 + day`),
/// `v64` the stored id and `dn` the day number; sessions never cross a UTC
/// midnight. Counts of visitors are therefore sums over UTC days, which is
/// what lets [`crate::stats::rollup`] answer from per-day rollups exactly.
/// A session is `(visitor, sess)`, numbered when the hits were stored
/// ([`crate::sessions`]).
pub(crate) fn hits_in(site_id: u16, ranges: &[(i64, i64)]) -> Sql {
    let scan = window_hits("w", site_id, ranges);
    Sql {
        text: format!("{}, h AS (SELECT * FROM w)", scan.text),
        params: scan.params,
    }
}

/// CTE `name`: the site's hits in the half-open UTC ranges `ranges`, with
/// the visitor key, the day number and the time in microseconds (see
/// [`hits_in`]).
fn window_hits(name: &str, site_id: u16, ranges: &[(i64, i64)]) -> Sql {
    // The bounds are integers, written into the text so that DuckDB can
    // prune row groups by them (it does not for parameters).
    let scan = if ranges.is_empty() {
        "SELECT * FROM hits WHERE FALSE".to_owned()
    } else {
        ranges
            .iter()
            .map(|&(from, to)| {
                format!(
                    "SELECT * FROM hits WHERE site_id = {site_id}
                       AND ts >= make_timestamp({from}::BIGINT)::TIMESTAMPTZ
                       AND ts < make_timestamp({to}::BIGINT)::TIMESTAMPTZ"
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ")
    };
    let text = format!(
        "{name} AS (
          SELECT id, visitor AS v64, epoch_us(ts) // {DAY_US} AS dn,
                 visitor::UHUGEINT * 65536 + (epoch_us(ts) // {DAY_US})::UHUGEINT AS visitor,
                 ts, epoch_us(ts) AS us, kind, name, path, referrer, source,
                 utm_source, utm_medium, utm_campaign, utm_term, utm_content,
                 country, browser, os, device, language, screen_width, sess
          FROM ({scan})
        )"
    );
    Sql {
        text,
        params: Vec::new(),
    }
}

/// A condition on a hit (its `id`) of `w` for a filter on the custom
/// property `key`, with its parameters: membership in the ids of the
/// window's hits whose property matches. The window's bounds are written
/// into the text so that DuckDB prunes `hit_props` row groups by `ts`.
fn prop_cond(w: &Window, key: &str, op: Op, value: &str) -> (String, Vec<duckdb::types::Value>) {
    use duckdb::types::Value as V;
    let (site, from, to) = (w.site_id, w.from.as_microsecond(), w.to.as_microsecond());
    // (hits whose value matches are members, the value condition, its parameter)
    let (member, cond, param) = match (op, value.is_empty()) {
        (Op::Is, true) => (false, "hp.value <> ''", None),
        (Op::IsNot, true) => (true, "hp.value <> ''", None),
        (Op::Is, false) => (true, "hp.value = ?", Some(value)),
        (Op::IsNot, false) => (false, "hp.value = ?", Some(value)),
        (Op::Contains, _) => (true, "contains(lower(hp.value), lower(?))", Some(value)),
    };
    let text = format!(
        "(id {not}IN (SELECT hp.hit_id FROM hit_props hp WHERE hp.site_id = {site}
           AND hp.ts >= make_timestamp({from}::BIGINT)::TIMESTAMPTZ
           AND hp.ts < make_timestamp({to}::BIGINT)::TIMESTAMPTZ
           AND hp.key = ? AND {cond}))",
        not = if member { "" } else { "NOT " },
    );
    let mut params = vec![V::Text(key.to_owned())];
    params.extend(param.map(|v| V::Text(v.to_owned())));
    (text, params)
}

/// What the filters ask: conditions on a hit (over the columns of `w` of
/// [`window_hits`]) and on a session (over the columns of `sessions`), each
/// with its parameters in text order.
pub(crate) struct Conds {
    hit: Vec<String>,
    hit_params: Vec<duckdb::types::Value>,
    sess: Vec<String>,
    sess_params: Vec<duckdb::types::Value>,
}

impl Conds {
    /// True when no filter is on a session dimension (entry or exit page).
    pub(crate) fn sess_free(&self) -> bool {
        self.sess.is_empty()
    }
}

/// The conditions of `filters` within the window `w`.
pub(crate) fn conds(w: &Window, filters: &[Filter]) -> Conds {
    use duckdb::types::Value as V;
    let mut c = Conds {
        hit: Vec::new(),
        hit_params: Vec::new(),
        sess: Vec::new(),
        sess_params: Vec::new(),
    };
    for f in filters {
        let dim = match &f.field {
            Field::Dim(d) => *d,
            Field::Prop(key) => {
                let (cond, params) = prop_cond(w, key, f.op, &f.value);
                c.hit.push(cond);
                c.hit_params.extend(params);
                continue;
            }
        };
        let e = dim.expr();
        // An empty value asks for hits without a value (stored as NULL):
        // `is` with nothing, `is_not` with anything.
        let (cond, param) = match (f.op, f.value.is_empty()) {
            (Op::Is, true) => (format!("(({e}) IS NULL OR ({e}) = '')"), None),
            (Op::IsNot, true) => (format!("(({e}) IS NOT NULL AND ({e}) <> '')"), None),
            (Op::Is, false) => (format!("({e}) = ?"), Some(&f.value)),
            (Op::IsNot, false) => (format!("(({e}) IS NULL OR ({e}) <> ?)"), Some(&f.value)),
            (Op::Contains, _) => (format!("contains(lower({e}), lower(?))"), Some(&f.value)),
        };
        let (conds, params) = if dim.is_session() {
            (&mut c.sess, &mut c.sess_params)
        } else {
            (&mut c.hit, &mut c.hit_params)
        };
        conds.push(cond);
        params.extend(param.map(|v| V::Text(v.clone())));
    }
    c
}

/// The conditions joined by AND (TRUE for none).
fn and(c: &[String]) -> String {
    if c.is_empty() {
        "TRUE".to_owned()
    } else {
        c.join(" AND ")
    }
}

/// CTEs `sessions`, `sess_ok`, `sel` and `sess_sel` over a relation `h`
/// (hits with `visitor` and `sess`, as [`hits_cte`] makes it): what the
/// conditions select.
///
/// Without session conditions every session of `h` holds a selected hit
/// ([`hits_cte`] keeps only the sessions with a matching hit), so the
/// selected sessions are all of them and the selected hits need no join.
pub(crate) fn selection_cte(c: &Conds) -> Sql {
    if c.sess.is_empty() {
        return Sql {
            text: format!(
                "{SESSIONS}, sel AS (
                  SELECT * FROM h WHERE {hit}
                ), sess_sel AS (SELECT * FROM sessions)",
                hit = and(&c.hit),
            ),
            params: c.hit_params.clone(),
        };
    }
    let text = format!(
        "{SESSIONS}, sess_ok AS (
          SELECT * FROM sessions WHERE {sess}
        ), sel AS (
          SELECT h.* FROM h SEMI JOIN sess_ok USING (visitor, sess) WHERE {hit}
        ), sess_sel AS (
          SELECT * FROM sess_ok SEMI JOIN (SELECT DISTINCT visitor, sess FROM sel) USING (visitor, sess)
        )",
        sess = and(&c.sess),
        hit = and(&c.hit),
    );
    // Bound in text order: the session conditions come first in the text.
    let mut params = c.sess_params.clone();
    params.extend(c.hit_params.iter().cloned());
    Sql { text, params }
}

/// CTE `sessions`: the sessions of `h`, with what the numbers need.
const SESSIONS: &str = "sessions AS (
          SELECT visitor, sess, min(ts) AS t0, max(us) - min(us) AS dur_us,
                 count(*) FILTER (WHERE kind = 0) AS pv,
                 count(*) FILTER (WHERE kind = 1) AS ev,
                 arg_min(path, us) FILTER (WHERE kind = 0) AS entry_page,
                 arg_max(path, us) FILTER (WHERE kind = 0) AS exit_page
          FROM h GROUP BY visitor, sess
        )";

/// Offsets in force during the window: `(from_us, offset_us)` pieces, the
/// first starting at the window's start.
fn offsets(w: &Window) -> Vec<(i64, i64)> {
    let mut out = vec![(
        w.from.as_microsecond(),
        i64::from(w.tz.to_offset(w.from).seconds()) * 1_000_000,
    )];
    for t in w.tz.following(w.from) {
        if t.timestamp() >= w.to {
            break;
        }
        out.push((
            t.timestamp().as_microsecond(),
            i64::from(t.offset().seconds()) * 1_000_000,
        ));
    }
    out
}

/// SQL for the local wall-clock time (a TIMESTAMP) of the TIMESTAMPTZ column `col`.
pub(crate) fn local_expr(w: &Window, col: &str) -> String {
    let pieces = offsets(w);
    if let [(_, only)] = pieces.as_slice() {
        return format!("make_timestamp(epoch_us({col}) + {only})");
    }
    let mut case = String::from("CASE");
    for pair in pieces.windows(2) {
        case.push_str(&format!(
            " WHEN epoch_us({col}) < {} THEN {}",
            pair[1].0, pair[0].1
        ));
    }
    case.push_str(&format!(
        " ELSE {} END",
        pieces.last().expect("one piece").1
    ));
    format!("make_timestamp(epoch_us({col}) + {case})")
}

/// The start of the bucket holding the local wall-clock time `dt`.
pub(crate) fn trunc_local(dt: jiff::civil::DateTime, interval: Interval) -> jiff::civil::DateTime {
    match interval {
        Interval::Hour => dt.date().at(dt.hour(), 0, 0, 0),
        Interval::Day => dt.date().at(0, 0, 0, 0),
        Interval::Week => {
            let d = dt.date();
            let back = i64::from(d.weekday().to_monday_zero_offset());
            d.checked_sub(jiff::Span::new().days(back))
                .unwrap_or(d)
                .at(0, 0, 0, 0)
        }
        Interval::Month => dt.date().first_of_month().at(0, 0, 0, 0),
    }
}

fn step(interval: Interval) -> jiff::Span {
    match interval {
        Interval::Hour => jiff::Span::new().hours(1),
        Interval::Day => jiff::Span::new().days(1),
        Interval::Week => jiff::Span::new().weeks(1),
        Interval::Month => jiff::Span::new().months(1),
    }
}

pub(crate) const LABEL: &str = "%Y-%m-%dT%H:%M:%S";

/// Local starts of every bucket that overlaps the window, in order. Walks in
/// zoned time, so an hour skipped by a DST change is not listed and an hour
/// that repeats is listed once (SQL groups by wall-clock time too).
pub(crate) fn buckets(w: &Window, interval: Interval) -> Vec<String> {
    let first = trunc_local(w.from.to_zoned_datetime(w.tz.clone()).datetime(), interval);
    let Ok(mut cur) = first.to_zoned_datetime(w.tz.clone()) else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    while cur.timestamp() < w.to {
        // Truncate again: a bucket start that fell into a DST gap was moved
        // forward; the label is the wall-clock start of its bucket.
        let label = trunc_local(cur.datetime(), interval)
            .strftime(LABEL)
            .to_string();
        if out.last() != Some(&label) {
            out.push(label);
        }
        match cur.checked_add(step(interval)) {
            Ok(next) => cur = next,
            Err(_) => break,
        }
    }
    out
}

/// The UTC stretches `(bucket index in labels, from_us, to_us)` that make up
/// each bucket within the window, by the same rule as the SQL: an instant
/// belongs to the bucket of its local time (UTC plus the offset in force).
/// A bucket can have several stretches (a repeated hour, a DST change).
pub(crate) fn bucket_bounds(
    w: &Window,
    interval: Interval,
    labels: &[String],
) -> Vec<(usize, i64, i64)> {
    let index: std::collections::HashMap<&str, usize> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    let civil = |us: i64| {
        Timestamp::from_microsecond(us)
            .map(|t| t.to_zoned_datetime(TimeZone::UTC).datetime())
            .ok()
    };
    let pieces = offsets(w);
    let end = w.to.as_microsecond();
    let mut out = Vec::new();
    for (i, &(start, off)) in pieces.iter().enumerate() {
        let stop = pieces.get(i + 1).map_or(end, |p| p.0).min(end);
        let mut t = start;
        while t < stop {
            let Some(local) = civil(t + off) else { break };
            let bucket = trunc_local(local, interval);
            let next = bucket
                .checked_add(step(interval))
                .ok()
                .and_then(|n| n.to_zoned_datetime(TimeZone::UTC).ok())
                .map(|z| z.timestamp().as_microsecond() - off)
                .unwrap_or(stop);
            let until = next.min(stop).max(t + 1);
            if let Some(&b) = index.get(bucket.strftime(LABEL).to_string().as_str()) {
                out.push((b, t, until));
            }
            t = until;
        }
    }
    out
}
