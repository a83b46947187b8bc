//! The state of a dashboard view, all of it in the URL's query string, so a
//! view can be bookmarked and shared:
//!
//! | parameter | meaning | default |
//! | --- | --- | --- |
//! | `period` | `today`, `7d`, `30d`, `month`, `12mo` or `custom` | `30d` (`custom` when `from`/`to` are given) |
//! | `from`, `to` | first and last day (`YYYY-MM-DD`, both included) of a `custom` period | required for `custom` |
//! | `tz` | IANA time zone of days and hours | `UTC` |
//! | `interval` | `hour`, `day`, `week`, `month` | by the period's length |
//! | `f` | a filter `dimension:op:value` or `prop:key:op:value` (as the API's `filter`); repeatable | none |
//!
//! The periods end with the current local day (`7d` is today and the six
//! days before it), `month` is the current calendar month, `12mo` the current
//! month and the eleven before it. The comparison is the period of the same
//! length just before.

use hitvault_store::stats::{Dim, Field, Filter, Interval, MAX_WINDOW_DAYS, Op, check_prop_key};
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};

use crate::stats_api::{BadParam, bad, form_urlencoded, parse_filter};

/// A preset or custom range of days.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Period {
    Today,
    Days7,
    Days30,
    Month,
    Months12,
    Custom,
}

impl Period {
    pub(crate) const ALL: [(Period, &'static str, &'static str); 6] = [
        (Period::Today, "today", "Today"),
        (Period::Days7, "7d", "Last 7 days"),
        (Period::Days30, "30d", "Last 30 days"),
        (Period::Month, "month", "This month"),
        (Period::Months12, "12mo", "Last 12 months"),
        (Period::Custom, "custom", "Custom range"),
    ];

    pub(crate) fn name(self) -> &'static str {
        Period::ALL
            .iter()
            .find(|(p, _, _)| *p == self)
            .map(|(_, n, _)| *n)
            .expect("every period is listed")
    }

    fn parse(s: &str) -> Option<Period> {
        Period::ALL
            .iter()
            .find(|(_, n, _)| *n == s)
            .map(|(p, _, _)| *p)
    }
}

pub(crate) const INTERVALS: [(Interval, &str); 4] = [
    (Interval::Hour, "hour"),
    (Interval::Day, "day"),
    (Interval::Week, "week"),
    (Interval::Month, "month"),
];

pub(crate) fn interval_name(i: Interval) -> &'static str {
    INTERVALS
        .iter()
        .find(|(v, _)| *v == i)
        .map(|(_, n)| *n)
        .expect("every interval is listed")
}

/// Hourly series cover at most this many days (as in the API).
const MAX_HOURLY_DAYS: i64 = 31;

pub(crate) fn op_name(op: Op) -> &'static str {
    match op {
        Op::Is => "is",
        Op::IsNot => "is_not",
        Op::Contains => "contains",
    }
}

/// The text form of a filter, as in the URL.
pub(crate) fn filter_text(f: &Filter) -> String {
    match &f.field {
        Field::Dim(d) => format!("{}:{}:{}", d.name(), op_name(f.op), f.value),
        Field::Prop(k) => format!("prop:{k}:{}:{}", op_name(f.op), f.value),
    }
}

/// A view as the URL states it, with the window it stands for.
#[derive(Clone, Debug)]
pub(crate) struct View {
    pub period: Period,
    /// Given `tz` (None: UTC, and left out of links).
    tz_name: Option<String>,
    pub tz: TimeZone,
    /// Given `interval` (None: chosen by the period's length).
    interval_given: Option<Interval>,
    pub interval: Interval,
    pub filters: Vec<Filter>,
    /// First and last local day of the window.
    pub first_day: Date,
    pub last_day: Date,
    /// The window, `[from, to)` in UTC.
    pub from: Timestamp,
    pub to: Timestamp,
    /// The comparison window just before, of the same length.
    pub prev_from: Timestamp,
}

/// Percent-encodes a query value; keeps what reads well and is safe in a
/// query (`:` and `/` included).
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn midnight(d: Date, tz: &TimeZone, param: &str) -> Result<Timestamp, BadParam> {
    d.to_zoned_datetime(tz.clone())
        .map(|z| z.timestamp())
        .map_err(|e| bad(param, format!("{d} has no midnight in this time zone: {e}")))
}

fn add_days(d: Date, n: i64, param: &str) -> Result<Date, BadParam> {
    d.checked_add(Span::new().days(n))
        .map_err(|e| bad(param, e.to_string()))
}

fn add_months(d: Date, n: i64, param: &str) -> Result<Date, BadParam> {
    d.checked_add(Span::new().months(n))
        .map_err(|e| bad(param, e.to_string()))
}

impl View {
    /// Parses a view from a query string at `now`. `extra` names further
    /// parameters the caller reads itself (they are returned, in order).
    pub(crate) fn parse(
        query: Option<&str>,
        now: Timestamp,
        extra: &[&str],
    ) -> Result<(View, Vec<(String, String)>), BadParam> {
        let pairs = form_urlencoded(query.unwrap_or(""));
        let mut rest = Vec::new();
        let (mut period, mut from, mut to, mut tz_name, mut interval_given) =
            (None, None, None, None, None);
        let mut filters = Vec::new();
        for (k, v) in pairs {
            match k.as_str() {
                "period" => {
                    period = Some(Period::parse(&v).ok_or_else(|| {
                        bad(
                            "period",
                            format!("{v:?} is not one of today, 7d, 30d, month, 12mo, custom"),
                        )
                    })?)
                }
                "from" | "to" => {
                    let d = if v.is_empty() {
                        None
                    } else {
                        Some(
                            v.parse::<Date>()
                                .map_err(|_| bad(&k, format!("{v:?} is not a date YYYY-MM-DD")))?,
                        )
                    };
                    if k == "from" { from = d } else { to = d }
                }
                "tz" => {
                    if !v.is_empty() {
                        tz_name = Some(v)
                    }
                }
                "interval" => {
                    if !v.is_empty() {
                        interval_given = Some(
                            INTERVALS
                                .iter()
                                .find(|(_, n)| *n == v)
                                .map(|(i, _)| *i)
                                .ok_or_else(|| {
                                    bad(
                                        "interval",
                                        format!("{v:?} is not one of hour, day, week, month"),
                                    )
                                })?,
                        )
                    }
                }
                "f" => filters.push(parse_filter(&v).map_err(|e| bad("f", e.message))?),
                other if extra.contains(&other) => rest.push((k, v)),
                other => return Err(bad(other, format!("unknown parameter {other:?}"))),
            }
        }
        let tz = match &tz_name {
            None => TimeZone::UTC,
            Some(n) => TimeZone::get(n)
                .map_err(|_| bad("tz", format!("{n:?} is not an IANA time zone")))?,
        };
        let period = period.unwrap_or(if from.is_some() || to.is_some() {
            Period::Custom
        } else {
            Period::Days30
        });
        let today = now.to_zoned_datetime(tz.clone()).date();
        let (first_day, last_day) = match period {
            Period::Today => (today, today),
            Period::Days7 => (add_days(today, -6, "period")?, today),
            Period::Days30 => (add_days(today, -29, "period")?, today),
            Period::Month => {
                let first = today.first_of_month();
                (
                    first,
                    add_days(add_months(first, 1, "period")?, -1, "period")?,
                )
            }
            Period::Months12 => {
                let first = today.first_of_month();
                (
                    add_months(first, -11, "period")?,
                    add_days(add_months(first, 1, "period")?, -1, "period")?,
                )
            }
            Period::Custom => {
                let from = from.ok_or_else(|| bad("from", "a custom period needs a first day"))?;
                let to = to.ok_or_else(|| bad("to", "a custom period needs a last day"))?;
                if to < from {
                    return Err(bad("from", "the first day is after the last day"));
                }
                (from, to)
            }
        };
        let span = first_day
            .until(last_day)
            .map_err(|e| bad("from", e.to_string()))?;
        let days = i64::from(span.get_days()) + 1;
        if days > MAX_WINDOW_DAYS {
            return Err(bad(
                "from",
                format!("the range covers more than {MAX_WINDOW_DAYS} days"),
            ));
        }
        let interval = match interval_given {
            Some(Interval::Hour) if days > MAX_HOURLY_DAYS => {
                return Err(bad(
                    "interval",
                    format!("hourly series cover at most {MAX_HOURLY_DAYS} days"),
                ));
            }
            Some(i) => i,
            None if period == Period::Months12 => Interval::Month,
            None if days <= 2 => Interval::Hour,
            None if days <= 92 => Interval::Day,
            None if days <= 366 => Interval::Week,
            None => Interval::Month,
        };
        let from_ts = midnight(first_day, &tz, "from")?;
        let to_ts = midnight(add_days(last_day, 1, "to")?, &tz, "to")?;
        let len = to_ts.as_microsecond() - from_ts.as_microsecond();
        let prev_from = Timestamp::from_microsecond(from_ts.as_microsecond() - len)
            .map_err(|_| bad("from", "the comparison period starts before year -9999"))?;
        Ok((
            View {
                period,
                tz_name,
                tz,
                interval_given,
                interval,
                filters,
                first_day,
                last_day,
                from: from_ts,
                to: to_ts,
                prev_from,
            },
            rest,
        ))
    }

    /// The IANA name of the view's zone.
    pub(crate) fn tz_label(&self) -> &str {
        self.tz.iana_name().unwrap_or("UTC")
    }

    fn base_pairs(&self) -> Vec<(&'static str, String)> {
        let mut p = vec![("period", self.period.name().to_owned())];
        if self.period == Period::Custom {
            p.push(("from", self.first_day.to_string()));
            p.push(("to", self.last_day.to_string()));
        }
        if let Some(tz) = &self.tz_name {
            p.push(("tz", tz.clone()));
        }
        if let Some(i) = self.interval_given {
            p.push(("interval", interval_name(i).to_owned()));
        }
        p
    }

    fn render(pairs: &[(&str, String)], filters: &[Filter]) -> String {
        let mut parts: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect();
        parts.extend(
            filters
                .iter()
                .map(|f| format!("f={}", encode(&filter_text(f)))),
        );
        parts.join("&")
    }

    /// The query string of this view.
    pub(crate) fn query(&self) -> String {
        View::render(&self.base_pairs(), &self.filters)
    }

    /// This view with `f` added; an `is` filter replaces the `is` filter of
    /// the same dimension or property (both cannot hold at once).
    pub(crate) fn with_filter(&self, f: Filter) -> String {
        let mut filters: Vec<Filter> = self
            .filters
            .iter()
            .filter(|g| !(f.op == Op::Is && g.op == Op::Is && g.field == f.field))
            .cloned()
            .collect();
        if !filters.contains(&f) {
            filters.push(f);
        }
        View::render(&self.base_pairs(), &filters)
    }

    /// This view without its `i`-th filter.
    pub(crate) fn without_filter(&self, i: usize) -> String {
        let filters: Vec<Filter> = self
            .filters
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, f)| f.clone())
            .collect();
        View::render(&self.base_pairs(), &filters)
    }

    /// The filter a row of a `dim` panel adds.
    pub(crate) fn row_filter(dim: Dim, value: &str) -> Filter {
        Filter::dim(dim, Op::Is, value)
    }

    /// The filter a value of the property `key` adds; none when the key
    /// cannot be named in a filter (see `stats::check_prop_key`).
    pub(crate) fn prop_filter(key: &str, value: &str) -> Option<Filter> {
        check_prop_key(key).ok()?;
        Some(Filter::prop(key, Op::Is, value))
    }

    /// Whether the chosen interval was given (else derived).
    pub(crate) fn interval_given(&self) -> Option<Interval> {
        self.interval_given
    }

    /// The given zone name, if any.
    pub(crate) fn tz_given(&self) -> Option<&str> {
        self.tz_name.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-03-15T10:30:00Z".parse().unwrap()
    }

    fn view(q: &str) -> View {
        View::parse(Some(q), now(), &[]).unwrap().0
    }

    #[test]
    fn presets_end_with_the_current_local_day() {
        let v = view("");
        assert_eq!(v.period, Period::Days30);
        assert_eq!(v.first_day.to_string(), "2026-02-14");
        assert_eq!(v.last_day.to_string(), "2026-03-15");
        assert_eq!(v.to.to_string(), "2026-03-16T00:00:00Z");
        assert_eq!(v.interval, Interval::Day);
        let v = view("period=today&tz=Pacific%2FAuckland");
        // 10:30 UTC is 23:30 in Auckland (UTC+13 in March).
        assert_eq!(v.first_day.to_string(), "2026-03-15");
        assert_eq!(v.from.to_string(), "2026-03-14T11:00:00Z");
        assert_eq!(v.interval, Interval::Hour);
        assert_eq!(v.prev_from.to_string(), "2026-03-13T11:00:00Z");
        let v = view("period=12mo");
        assert_eq!(v.first_day.to_string(), "2025-04-01");
        assert_eq!(v.last_day.to_string(), "2026-03-31");
        assert_eq!(v.interval, Interval::Month);
        let v = view("period=month");
        assert_eq!(
            (v.first_day.to_string(), v.last_day.to_string()),
            ("2026-03-01".into(), "2026-03-31".into())
        );
    }

    #[test]
    fn custom_ranges_include_their_last_day() {
        let v = view("from=2026-01-10&to=2026-01-10");
        assert_eq!(v.period, Period::Custom);
        assert_eq!(v.from.to_string(), "2026-01-10T00:00:00Z");
        assert_eq!(v.to.to_string(), "2026-01-11T00:00:00Z");
        assert_eq!(v.interval, Interval::Hour);
        assert_eq!(v.query(), "period=custom&from=2026-01-10&to=2026-01-10");
    }

    #[test]
    fn filters_round_trip_and_replace_each_other() {
        let v = view("period=7d&f=page:is:%2Fa%20b&f=country:is_not:DE");
        assert_eq!(v.filters.len(), 2);
        assert_eq!(v.query(), "period=7d&f=page:is:/a%20b&f=country:is_not:DE");
        let q = v.with_filter(View::row_filter(Dim::Page, "/c&d"));
        assert_eq!(q, "period=7d&f=country:is_not:DE&f=page:is:/c%26d");
        assert_eq!(v.without_filter(0), "period=7d&f=country:is_not:DE");
        let again = view(&q);
        assert_eq!(again.filters[1].value, "/c&d");
    }

    #[test]
    fn property_filters_round_trip_and_replace_each_other() {
        let v = view("f=prop:plan:is:pro&f=prop:seats:is_not:3");
        assert_eq!(v.filters[0], Filter::prop("plan", Op::Is, "pro"));
        assert_eq!(
            v.query(),
            "period=30d&f=prop:plan:is:pro&f=prop:seats:is_not:3"
        );
        // Another value of the same key replaces the `is` filter; another key adds.
        let free = View::prop_filter("plan", "free & more").unwrap();
        assert_eq!(
            v.with_filter(free),
            "period=30d&f=prop:seats:is_not:3&f=prop:plan:is:free%20%26%20more"
        );
        let url = View::prop_filter("url", "https://x/?a=1").unwrap();
        let q = v.with_filter(url);
        assert_eq!(
            view(&q).filters[2],
            Filter::prop("url", Op::Is, "https://x/?a=1")
        );
        // A key a filter cannot name gets no filter.
        assert_eq!(View::prop_filter("a:b", "x"), None);
        assert_eq!(View::prop_filter("", "x"), None);
    }

    #[test]
    fn bad_parameters_are_named() {
        for (q, parameter) in [
            ("period=fortnight", "period"),
            ("period=custom&from=2026-01-10", "to"),
            ("from=2026-02-10&to=2026-01-10", "from"),
            ("from=2016-01-01&to=2026-01-01", "from"),
            ("from=yesterday&to=2026-01-01", "from"),
            ("tz=Mars%2FOlympus", "tz"),
            ("interval=fortnight", "interval"),
            ("period=12mo&interval=hour", "interval"),
            ("f=planet:is:mars", "f"),
            ("colour=blue", "colour"),
        ] {
            let e = View::parse(Some(q), now(), &[]).unwrap_err();
            assert_eq!(e.parameter, parameter, "{q}: {}", e.message);
        }
        let (_, rest) = View::parse(Some("panel=page"), now(), &["panel"]).unwrap();
        assert_eq!(rest, [("panel".to_owned(), "page".to_owned())]);
    }
}
