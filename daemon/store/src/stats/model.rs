//! The stats engine's public vocabulary: what a query covers ([`Window`]),
//! what it breaks down and filters by ([`Dim`], [`Filter`]), the numbers it
//! answers with ([`Kpis`], [`Point`], [`Row`], [`Overview`]) and why it
//! refuses ([`StatsError`]). Plain data, no SQL: the HTTP API and the
//! dashboard speak in these types.

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::QueryError;

/// The longest window a query may cover.
pub const MAX_WINDOW_DAYS: i64 = 3 * 366;
/// A session ends after this long without a hit.
pub const SESSION_GAP_MINUTES: i64 = 30;

/// What a query covers.
#[derive(Clone, Debug)]
pub struct Window {
    /// `sites.id` of the site.
    pub site_id: u16,
    /// Inclusive start (UTC).
    pub from: Timestamp,
    /// Exclusive end (UTC).
    pub to: Timestamp,
    /// Where local hours, days, weeks and months begin.
    pub tz: TimeZone,
}

/// A dimension hits can be broken down and filtered by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dim {
    Page,
    EntryPage,
    ExitPage,
    Source,
    Referrer,
    UtmSource,
    UtmMedium,
    UtmCampaign,
    UtmTerm,
    UtmContent,
    Country,
    Browser,
    Os,
    Device,
    Language,
    /// Screen size class from the CSS width: mobile (< 576 px), tablet
    /// (< 992), laptop (< 1440), desktop.
    Screen,
    /// Custom event names (pageviews excluded).
    Event,
}

impl Dim {
    /// Every dimension, with the name the API uses.
    pub const ALL: [(Dim, &'static str); 17] = [
        (Dim::Page, "page"),
        (Dim::EntryPage, "entry_page"),
        (Dim::ExitPage, "exit_page"),
        (Dim::Source, "source"),
        (Dim::Referrer, "referrer"),
        (Dim::UtmSource, "utm_source"),
        (Dim::UtmMedium, "utm_medium"),
        (Dim::UtmCampaign, "utm_campaign"),
        (Dim::UtmTerm, "utm_term"),
        (Dim::UtmContent, "utm_content"),
        (Dim::Country, "country"),
        (Dim::Browser, "browser"),
        (Dim::Os, "os"),
        (Dim::Device, "device"),
        (Dim::Language, "language"),
        (Dim::Screen, "screen"),
        (Dim::Event, "event"),
    ];

    pub fn parse(name: &str) -> Option<Dim> {
        Dim::ALL.iter().find(|(_, n)| *n == name).map(|(d, _)| *d)
    }

    pub fn name(self) -> &'static str {
        Dim::ALL
            .iter()
            .find(|(d, _)| *d == self)
            .map(|(_, n)| *n)
            .expect("every dimension is listed")
    }

    /// True for dimensions that belong to a session rather than a hit.
    pub fn is_session(self) -> bool {
        matches!(self, Dim::EntryPage | Dim::ExitPage)
    }
}

/// Every panel of the overview page, in the order it shows them.
pub const PANELS: [Dim; 17] = [
    Dim::Page,
    Dim::EntryPage,
    Dim::ExitPage,
    Dim::Source,
    Dim::Referrer,
    Dim::UtmSource,
    Dim::UtmMedium,
    Dim::UtmCampaign,
    Dim::UtmTerm,
    Dim::UtmContent,
    Dim::Country,
    Dim::Browser,
    Dim::Os,
    Dim::Device,
    Dim::Screen,
    Dim::Language,
    Dim::Event,
];

/// How a filter compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Equal to the value; with an empty value: has no value.
    Is,
    /// Not equal to the value (hits without a value match); with an empty
    /// value: has a value.
    IsNot,
    /// Contains the value, ignoring ASCII case.
    Contains,
}

/// What a filter compares: a dimension, or a custom property of the hit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field {
    Dim(Dim),
    /// The value of the hit's custom property with this key (see
    /// [`check_prop_key`] for the keys a filter can name).
    Prop(String),
}

/// One filter; all filters of a query must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    pub field: Field,
    pub op: Op,
    pub value: String,
}

impl Filter {
    /// A filter on a dimension.
    pub fn dim(dim: Dim, op: Op, value: &str) -> Filter {
        Filter {
            field: Field::Dim(dim),
            op,
            value: value.to_owned(),
        }
    }

    /// A filter on the custom property `key`.
    pub fn prop(key: &str, op: Op, value: &str) -> Filter {
        Filter {
            field: Field::Prop(key.to_owned()),
            op,
            value: value.to_owned(),
        }
    }

    /// The dimension filtered, if it is one.
    pub fn dimension(&self) -> Option<Dim> {
        match self.field {
            Field::Dim(d) => Some(d),
            Field::Prop(_) => None,
        }
    }
}

/// Longest property key a filter names: the longest ingest accepts.
pub const MAX_PROP_KEY_BYTES: usize = 64;
/// Longest property value a filter compares with: the longest ingest accepts.
pub const MAX_PROP_VALUE_BYTES: usize = 512;

/// Why a property key cannot be filtered on, if it cannot: empty, longer
/// than [`MAX_PROP_KEY_BYTES`], holding a control character, or holding `:`
/// (which separates the parts of a filter's text form).
pub fn check_prop_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("the property key is empty".into());
    }
    if key.len() > MAX_PROP_KEY_BYTES {
        return Err(format!(
            "the property key is {} bytes; the longest is {MAX_PROP_KEY_BYTES}",
            key.len()
        ));
    }
    if key.chars().any(char::is_control) {
        return Err("the property key holds a control character".into());
    }
    if key.contains(':') {
        return Err(format!(
            "the property key {key:?} holds ':', which a filter cannot name"
        ));
    }
    Ok(())
}

/// Time on page and scroll depth of a set of pageviews, kept as sums so
/// that parts (pages, imported history) add up. A pageview counts once
/// however many engagements it received: its engaged time is their sum,
/// its scroll depth their maximum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngagementSums {
    /// Engaged milliseconds of the pageviews that reported engagement.
    pub engaged_ms: u64,
    /// Pageviews that reported engagement.
    pub pageviews: u64,
    /// Sum over the pageviews that reported a scroll depth of the deepest one (percent).
    pub scroll_sum: u64,
    /// Pageviews that reported a scroll depth.
    pub scrolled: u64,
}

impl EngagementSums {
    /// Mean engaged time per engaged pageview, in seconds (Plausible's
    /// `time_on_page`); `None` without engagement.
    pub fn time_on_page_s(&self) -> Option<f64> {
        (self.pageviews > 0).then(|| self.engaged_ms as f64 / 1000.0 / self.pageviews as f64)
    }

    /// Mean of the pageviews' deepest scroll, in percent (Plausible's
    /// `scroll_depth`); `None` without a reported scroll depth.
    pub fn scroll_depth(&self) -> Option<f64> {
        (self.scrolled > 0).then(|| self.scroll_sum as f64 / self.scrolled as f64)
    }

    /// Adds `o` to these sums.
    pub fn add(&mut self, o: &EngagementSums) {
        self.engaged_ms += o.engaged_ms;
        self.pageviews += o.pageviews;
        self.scroll_sum += o.scroll_sum;
        self.scrolled += o.scrolled;
    }
}

/// The headline numbers of a window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Kpis {
    pub visitors: u64,
    pub pageviews: u64,
    pub events: u64,
    pub sessions: u64,
    pub bounces: u64,
    /// Bounced sessions / sessions, 0..=1 (0 without sessions).
    pub bounce_rate: f64,
    /// Mean session duration in seconds (0 without sessions).
    pub avg_duration_s: f64,
    /// Pageviews of the counted sessions / sessions (0 without sessions).
    pub views_per_visit: f64,
    /// Time on page and scroll depth of the selected pageviews.
    pub engagement: EngagementSums,
}

/// Time-series bucket size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interval {
    Hour,
    Day,
    /// ISO weeks, starting on Monday.
    Week,
    Month,
}

/// One bucket of a time series. Buckets without hits are present with zeros.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Point {
    /// Local start of the bucket, `YYYY-MM-DDTHH:MM:SS` in the window's zone.
    pub start: String,
    pub visitors: u64,
    pub pageviews: u64,
    /// Sessions that began in this bucket.
    pub sessions: u64,
}

/// One row of a breakdown.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The dimension's value; `None` for hits without one (direct traffic, say).
    pub value: Option<String>,
    pub visitors: u64,
    /// Pageviews (for `event`, the count of that event; for entry and exit
    /// pages, the sessions that entered or left there).
    pub count: u64,
    /// `visitors` / all visitors of the window with the same filters, 0..=1.
    pub share: f64,
    /// For the `page` dimension: time on page and scroll depth of the
    /// page's selected pageviews; `None` for other dimensions and for pages
    /// without engagement.
    pub engagement: Option<EngagementSums>,
}

/// One dashboard page: see [`super::Stats::overview`].
#[derive(Clone, Debug, PartialEq)]
pub struct Overview {
    pub kpis: Kpis,
    /// The same numbers for the comparison window.
    pub previous: Kpis,
    pub series: Vec<Point>,
    pub breakdowns: Vec<(Dim, Vec<Row>)>,
}

/// Why a query was not run.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("'from' must be before 'to'")]
    Inverted,
    #[error("the range covers more than {MAX_WINDOW_DAYS} days")]
    TooLong,
    #[error(transparent)]
    Query(#[from] QueryError),
}

impl From<duckdb::Error> for StatsError {
    fn from(e: duckdb::Error) -> Self {
        StatsError::Query(QueryError::Db(e))
    }
}

/// Refuses inverted and overlong windows.
pub(crate) fn check_window(w: &Window) -> Result<(), StatsError> {
    if w.from >= w.to {
        return Err(StatsError::Inverted);
    }
    if (w.to.as_second() - w.from.as_second()) > MAX_WINDOW_DAYS * 86_400 {
        return Err(StatsError::TooLong);
    }
    Ok(())
}

/// Microseconds in a UTC day.
pub(crate) const DAY_US: i64 = 86_400_000_000;
