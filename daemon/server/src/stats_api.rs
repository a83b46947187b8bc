//! The stats API under `/api/v1/stats`: the numbers of the stats engine
//! (`hitvault_store::stats`) as JSON.
//!
//! `GET /api/v1/stats/overview` answers one dashboard page: KPIs with the
//! previous period of the same length and the deltas, the live visitors (the
//! last 5 minutes, whatever the range and filters), the time series, and the
//! top rows of every breakdown panel, with imported history (Plausible's
//! CSV export) added when there is no filter (`imported` in the answer says
//! whether it was; `hitvault_store::imported` has the rules). Parameters:
//!
//! | name | meaning | default |
//! | --- | --- | --- |
//! | `site` | the site's hostname | required |
//! | `from`, `to` | RFC 3339 instants, or dates `YYYY-MM-DD` (local midnight in `tz`); `to` is exclusive | the last 30 days |
//! | `tz` | IANA time zone for buckets and dates | `UTC` |
//! | `interval` | `hour`, `day`, `week` or `month` | `day` |
//! | `filter` | `dimension:op:value`, op `is`, `is_not` or `contains`; repeatable, all must hold; an empty value means "has no value" (`is`) or "has one" (`is_not`); `prop:key:op:value` filters by a custom property (`hitvault_store::stats` has the rules) | none |
//! | `limit` | rows per panel, 1 to 1000 | 10 |
//!
//! Any bad parameter is a 400 `{"error":"bad_parameter","parameter":…,"message":…}`
//! ([`crate::error::ApiError`], like every refusal of the JSON routes).
//!
//! Access: every route here is behind the one authorization layer
//! ([`crate::access`]); until accounts exist it admits requests from and to
//! loopback only, and answers 403 with the reason to anyone else.

use std::sync::{Arc, Mutex};

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use hitvault_store::imported::ImportedInfo;
use hitvault_store::live::LiveStats;
use hitvault_store::stats::{
    Dim, Filter, Interval, Kpis, MAX_PROP_VALUE_BYTES, Op, Overview, PANELS, Stats, StatsError,
    Window, check_prop_key,
};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::rules::{Face, Need, Routes, SiteIn};
pub(crate) use crate::urlencoded::form_urlencoded;
use hitvault_accounts::Right;

/// The stats readers the API runs queries on (each its own DuckDB connection).
#[derive(Clone)]
pub struct StatsState {
    pub readers: Arc<Vec<Mutex<Stats>>>,
    /// The reader of live visitors (shared with the realtime streams).
    pub live: Arc<Mutex<LiveStats>>,
}

impl StatsState {
    pub fn new(readers: Vec<Stats>, live: Arc<Mutex<LiveStats>>) -> StatsState {
        StatsState {
            readers: Arc::new(readers.into_iter().map(Mutex::new).collect()),
            live,
        }
    }
}

/// The stats API's routes; [`crate::app`] puts them behind the access layer.
pub(crate) fn routes(state: StatsState) -> Routes {
    Routes::new(Face::Json)
        .get(
            "/api/v1/stats/overview",
            Need::site(Right::View, SiteIn::Query),
            overview,
        )
        .with_state(state)
}

/// A parameter the API cannot use: answered 400, naming it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BadParam {
    pub(crate) parameter: String,
    pub(crate) message: String,
}

impl From<BadParam> for ApiError {
    fn from(e: BadParam) -> Self {
        ApiError::bad_parameter(&e.parameter, e.message)
    }
}

pub(crate) fn bad(parameter: &str, message: impl Into<String>) -> BadParam {
    BadParam {
        parameter: parameter.to_owned(),
        message: message.into(),
    }
}

/// The parsed parameters of an overview request.
#[derive(Debug)]
pub(crate) struct Params {
    pub(crate) site: String,
    pub(crate) from: Timestamp,
    pub(crate) to: Timestamp,
    pub(crate) tz: TimeZone,
    pub(crate) interval: Interval,
    pub(crate) filters: Vec<Filter>,
    pub(crate) limit: usize,
    /// Every pair of the query, for parameters particular to a route.
    pub(crate) pairs: Vec<(String, String)>,
}

impl Params {
    /// The first value of a route's own parameter.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn window(&self, site_id: u16) -> Window {
        Window {
            site_id,
            from: self.from,
            to: self.to,
            tz: self.tz.clone(),
        }
    }
}

fn parse_instant(name: &str, v: &str, tz: &TimeZone) -> Result<Timestamp, BadParam> {
    if let Ok(t) = v.parse::<Timestamp>() {
        return Ok(t);
    }
    match v.parse::<jiff::civil::Date>() {
        Ok(d) => d
            .to_zoned_datetime(tz.clone())
            .map(|z| z.timestamp())
            .map_err(|e| {
                bad(
                    name,
                    format!("{v:?} has no midnight in this time zone: {e}"),
                )
            }),
        Err(_) => Err(bad(
            name,
            format!("{v:?} is neither an RFC 3339 instant nor a date YYYY-MM-DD"),
        )),
    }
}

#[cfg(test)]
fn parse_params(query: Option<&str>) -> Result<Params, BadParam> {
    parse_params_with(query, &[])
}

/// The common parameters, and `extra` ones a route has besides.
pub(crate) fn parse_params_with(query: Option<&str>, extra: &[&str]) -> Result<Params, BadParam> {
    let pairs: Vec<(String, String)> = form_urlencoded(query.unwrap_or(""));
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    for (k, _) in &pairs {
        if !["site", "from", "to", "tz", "interval", "filter", "limit"].contains(&k.as_str())
            && !extra.contains(&k.as_str())
        {
            return Err(bad(k, format!("unknown parameter {k:?}")));
        }
    }
    let site = get("site")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("site", "the site's hostname is required"))?
        .to_owned();
    let tz = match get("tz") {
        None => TimeZone::UTC,
        Some(name) => TimeZone::get(name)
            .map_err(|_| bad("tz", format!("{name:?} is not an IANA time zone")))?,
    };
    let to = match get("to") {
        Some(v) => parse_instant("to", v, &tz)?,
        None => Timestamp::now(),
    };
    let from = match get("from") {
        Some(v) => parse_instant("from", v, &tz)?,
        None => to
            .checked_sub((30 * 24).hours())
            .map_err(|e| bad("to", e.to_string()))?,
    };
    if from >= to {
        return Err(bad("from", "'from' must be before 'to'"));
    }
    let interval = match get("interval").unwrap_or("day") {
        "hour" => Interval::Hour,
        "day" => Interval::Day,
        "week" => Interval::Week,
        "month" => Interval::Month,
        other => {
            return Err(bad(
                "interval",
                format!("{other:?} is not one of hour, day, week, month"),
            ));
        }
    };
    if interval == Interval::Hour && to.as_second() - from.as_second() > 31 * 86_400 {
        return Err(bad("interval", "hourly series cover at most 31 days"));
    }
    let limit = match get("limit") {
        None => 10,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                return Err(bad(
                    "limit",
                    format!("{v:?} is not a number from 1 to 1000"),
                ));
            }
        },
    };
    let mut filters = Vec::new();
    for (k, v) in &pairs {
        if k != "filter" {
            continue;
        }
        filters.push(parse_filter(v)?);
    }
    Ok(Params {
        site,
        from,
        to,
        tz,
        interval,
        filters,
        limit,
        pairs,
    })
}

/// One filter, `dimension:op:value`, or `prop:key:op:value` for a custom
/// property (the value may contain `:`, the key may not).
pub(crate) fn parse_filter(v: &str) -> Result<Filter, BadParam> {
    if let Some(rest) = v.strip_prefix("prop:") {
        let mut parts = rest.splitn(3, ':');
        let (Some(key), Some(o), Some(value)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("filter", format!("{v:?} is not prop:key:op:value")));
        };
        check_prop_key(key).map_err(|m| bad("filter", format!("{v:?}: {m}")))?;
        if value.len() > MAX_PROP_VALUE_BYTES {
            return Err(bad(
                "filter",
                format!(
                    "the value of {key:?} is {} bytes; property values have at most {MAX_PROP_VALUE_BYTES}",
                    value.len()
                ),
            ));
        }
        return Ok(Filter::prop(key, parse_op(o)?, value));
    }
    let mut parts = v.splitn(3, ':');
    let (Some(d), Some(o), Some(value)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("filter", format!("{v:?} is not dimension:op:value")));
    };
    let dim = Dim::parse(d).ok_or_else(|| {
        let names: Vec<&str> = Dim::ALL.iter().map(|(_, n)| *n).collect();
        bad(
            "filter",
            format!(
                "unknown dimension {d:?}; known: {}, or prop:KEY for a custom property",
                names.join(", ")
            ),
        )
    })?;
    Ok(Filter::dim(dim, parse_op(o)?, value))
}

fn parse_op(o: &str) -> Result<Op, BadParam> {
    match o {
        "is" => Ok(Op::Is),
        "is_not" => Ok(Op::IsNot),
        "contains" => Ok(Op::Contains),
        _ => Err(bad(
            "filter",
            format!("unknown operator {o:?}; known: is, is_not, contains"),
        )),
    }
}

fn kpis_json(k: &Kpis) -> Value {
    json!({
        "visitors": k.visitors,
        "pageviews": k.pageviews,
        "events": k.events,
        "sessions": k.sessions,
        "bounce_rate": k.bounce_rate,
        "avg_visit_duration_s": k.avg_duration_s,
        "views_per_visit": k.views_per_visit,
        "time_on_page": round1(k.engagement.time_on_page_s()),
        "scroll_depth": round1(k.engagement.scroll_depth()),
    })
}

/// An optional figure with one decimal (null when absent).
fn round1(x: Option<f64>) -> Value {
    x.map_or(Value::Null, |x| json!((x * 10.0).round() / 10.0))
}

/// Relative change of optional figures (null when either is absent).
fn delta_opt(now: Option<f64>, before: Option<f64>) -> Value {
    match (now, before) {
        (Some(n), Some(b)) => delta(n, b),
        _ => Value::Null,
    }
}

/// Relative change from `before` to `now` (null when `before` is 0).
fn delta(now: f64, before: f64) -> Value {
    if before == 0.0 {
        Value::Null
    } else {
        json!((now - before) / before)
    }
}

fn overview_json(
    p: &Params,
    prev_from: Timestamp,
    o: &Overview,
    imported: &ImportedInfo,
    live: u64,
) -> Value {
    let (k, b) = (&o.kpis, &o.previous);
    json!({
        "site": p.site,
        "imported": {
            "included": imported.included,
            "days": imported.days,
            "in_series": imported.in_series,
        },
        "live_visitors": live,
        "from": p.from.to_string(),
        "to": p.to.to_string(),
        "tz": p.tz.iana_name(),
        "kpis": kpis_json(k),
        "previous": {
            "from": prev_from.to_string(),
            "to": p.from.to_string(),
            "kpis": kpis_json(b),
        },
        "deltas": {
            "visitors": delta(k.visitors as f64, b.visitors as f64),
            "pageviews": delta(k.pageviews as f64, b.pageviews as f64),
            "sessions": delta(k.sessions as f64, b.sessions as f64),
            "bounce_rate": delta(k.bounce_rate, b.bounce_rate),
            "avg_visit_duration_s": delta(k.avg_duration_s, b.avg_duration_s),
            "views_per_visit": delta(k.views_per_visit, b.views_per_visit),
            "time_on_page": delta_opt(k.engagement.time_on_page_s(), b.engagement.time_on_page_s()),
            "scroll_depth": delta_opt(k.engagement.scroll_depth(), b.engagement.scroll_depth()),
        },
        "series": o.series.iter().map(|pt| json!({
            "start": pt.start, "visitors": pt.visitors,
            "pageviews": pt.pageviews, "sessions": pt.sessions,
        })).collect::<Vec<_>>(),
        "breakdowns": o.breakdowns.iter().map(|(d, rows)| (d.name().to_owned(), json!(
            rows.iter().map(|r| {
                let mut row = json!({
                    "value": r.value, "visitors": r.visitors, "count": r.count, "share": r.share,
                });
                if *d == Dim::Page {
                    let e = r.engagement.unwrap_or_default();
                    row["time_on_page"] = round1(e.time_on_page_s());
                    row["scroll_depth"] = round1(e.scroll_depth());
                }
                row
            }).collect::<Vec<_>>()
        ))).collect::<serde_json::Map<String, Value>>(),
    })
}

impl StatsState {
    /// Any free reader; waits on the first when all are busy.
    pub(crate) fn reader(&self) -> Result<std::sync::MutexGuard<'_, Stats>, ApiError> {
        self.readers
            .iter()
            .find_map(|m| m.try_lock().ok())
            .or_else(|| {
                self.readers
                    .first()
                    .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
            })
            .ok_or_else(|| ApiError::internal("a stats query", "no stats reader is configured"))
    }
}

/// The id of the site named `site`, or a 400 naming the parameter.
pub(crate) fn site_id(reader: &Stats, site: &str) -> Result<u16, ApiError> {
    reader
        .site_id(site)
        .map_err(|e| ApiError::internal("looking up a site", e))?
        .ok_or_else(|| bad("site", format!("no site named {site:?}")).into())
}

/// Runs `work` on the blocking pool and answers with what it returns.
pub(crate) async fn blocking(
    work: impl FnOnce() -> Result<Response, ApiError> + Send + 'static,
) -> Response {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => e.into_response(),
        Err(e) => ApiError::internal("a stats query task", e).into_response(),
    }
}

/// A stats error as the API answers it.
pub(crate) fn stats_error(e: StatsError) -> ApiError {
    match e {
        e @ (StatsError::TooLong | StatsError::Inverted) => bad("from", e.to_string()).into(),
        e => ApiError::internal("a stats query", e),
    }
}

/// The common parameters and `extra` ones: what every stats route reads
/// first (the access layer has admitted the request).
pub(crate) fn admit(query: Option<&str>, extra: &[&str]) -> Result<Params, Box<Response>> {
    parse_params_with(query, extra).map_err(|e| Box::new(ApiError::from(e).into_response()))
}

async fn overview(State(state): State<StatsState>, RawQuery(query): RawQuery) -> Response {
    let p = match admit(query.as_deref(), &[]) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    blocking(move || {
        let guard = state.reader()?;
        let w = p.window(site_id(&guard, &p.site)?);
        let len = p.to.as_microsecond() - p.from.as_microsecond();
        let prev_from = Timestamp::from_microsecond(p.from.as_microsecond() - len)
            .map_err(|_| bad("from", "the comparison period starts before year -9999"))?;
        let prev = Window {
            from: prev_from,
            to: p.from,
            ..w.clone()
        };
        let live = state
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .live_visitors(w.site_id, Timestamp::now())
            .map_err(|e| ApiError::internal("reading live visitors", e))?;
        let (o, imported) = guard
            .overview_with_imported(&w, &prev, &p.filters, p.interval, &PANELS, p.limit)
            .map_err(stats_error)?;
        Ok(axum::Json(overview_json(&p, prev_from, &o, &imported, live)).into_response())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param_error(q: &str) -> BadParam {
        match parse_params(Some(q)) {
            Ok(p) => panic!("{q:?} parsed: {p:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn parameters_parse_with_defaults() {
        let p = parse_params(Some(
            "site=a.example&from=2026-03-01&to=2026-04-01&tz=Europe%2FBerlin&filter=page:is:%2Fa+b&limit=5",
        ))
        .unwrap();
        assert_eq!(p.site, "a.example");
        assert_eq!(p.from.to_string(), "2026-02-28T23:00:00Z");
        assert_eq!(p.to.to_string(), "2026-03-31T22:00:00Z");
        assert_eq!(p.interval, Interval::Day);
        assert_eq!(p.limit, 5);
        assert_eq!(p.filters, vec![Filter::dim(Dim::Page, Op::Is, "/a b")]);
        let p = parse_params(Some("site=a.example")).unwrap();
        assert_eq!(p.to.as_second() - p.from.as_second(), 30 * 86_400);
    }

    #[test]
    fn property_filters_parse_and_bad_ones_say_why() {
        let p = parse_params(Some(
            "site=a&filter=prop:plan:is:pro&filter=prop:url:contains:https%3A%2F%2Fx&filter=prop:seats:is_not:",
        ))
        .unwrap();
        assert_eq!(
            p.filters,
            vec![
                Filter::prop("plan", Op::Is, "pro"),
                Filter::prop("url", Op::Contains, "https://x"),
                Filter::prop("seats", Op::IsNot, ""),
            ]
        );
        let long_key = format!("site=a&filter=prop:{}:is:x", "k".repeat(65));
        let long_value = format!("site=a&filter=prop:k:is:{}", "v".repeat(513));
        for (q, says) in [
            ("site=a&filter=prop:plan", "is not prop:key:op:value"),
            ("site=a&filter=prop::is:pro", "key is empty"),
            (long_key.as_str(), "the longest is 64"),
            ("site=a&filter=prop:a%01b:is:x", "control character"),
            ("site=a&filter=prop:plan:like:pro", "unknown operator"),
            (long_value.as_str(), "at most 512"),
            ("site=a&filter=props:plan:is:pro", "prop:KEY"),
        ] {
            let e = param_error(q);
            assert_eq!(e.parameter, "filter", "{q}");
            assert!(e.message.contains(says), "{q}: {}", e.message);
        }
    }

    #[test]
    fn bad_parameters_are_named() {
        for (q, parameter) in [
            ("", "site"),
            ("site=a&tz=Mars%2FOlympus", "tz"),
            ("site=a&from=2026-02-01&to=2026-01-01", "from"),
            ("site=a&from=yesterday", "from"),
            ("site=a&interval=fortnight", "interval"),
            (
                "site=a&from=2026-01-01&to=2026-03-01&interval=hour",
                "interval",
            ),
            ("site=a&filter=planet:is:mars", "filter"),
            ("site=a&filter=page:like:x", "filter"),
            ("site=a&filter=page", "filter"),
            ("site=a&limit=0", "limit"),
            ("site=a&colour=blue", "colour"),
        ] {
            let e = param_error(q);
            assert_eq!(e.parameter, parameter, "{q}: {}", e.message);
            assert!(!e.message.is_empty());
        }
    }
}
