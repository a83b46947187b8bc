//! The goals, funnels and events pages: like the overview, they read the
//! view (range, time zone, filters) from the URL, and every number honours
//! its filters. Rendering is pure; [`load_events`] gathers what the events
//! explorer shows (the page and its CSV files use the same numbers).

use std::fmt::Write;

use hitvault_store::SiteRow;
use hitvault_store::goals::{Funnel, FunnelRow, GoalKind, GoalRow, PropRow, Step};
use hitvault_store::stats::{Dim, Filter, Row, Stats, StatsError, Window};

use super::html::{SiteNav, esc, int, page, percent};
use super::pages::{chips, keep_query, range_form, site_base};
use super::view::{View, filter_text};

/// Rows of each list of the events explorer.
pub const EXPLORER_ROWS: usize = 100;

/// `a / b`, 0 when `b` is 0.
pub(crate) fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// The heading, range form, filter chips and range line of a view page.
fn head(title: &str, action: &str, v: &View, keep: &[(&str, &str)]) -> String {
    format!(
        "<h1>{}</h1>{}{}<p class=\"status\">{}, {}.</p>",
        esc(title),
        range_form(action, v, keep),
        chips(action, v, keep),
        if v.first_day == v.last_day {
            v.first_day.to_string()
        } else {
            format!("{} to {}", v.first_day, v.last_day)
        },
        esc(v.tz_label()),
    )
}

/// A share as a bar behind a row's label (the number is in the row too).
fn bar(share: f64) -> String {
    format!(
        "<svg class=\"bar\" viewBox=\"0 0 100 10\" preserveAspectRatio=\"none\" aria-hidden=\"true\" \
         focusable=\"false\"><rect width=\"{:.1}\" height=\"10\" rx=\"0.8\"/></svg>",
        (share * 100.0).clamp(0.0, 100.0)
    )
}

/// `event Signup` or `page /pricing*`, as a step or goal reads.
pub(crate) fn step_text(s: &Step) -> String {
    format!(
        "<span class=\"kind\">{}</span> <code>{}</code>",
        s.kind.name(),
        esc(&s.value)
    )
}

/// The overview filter that selects a goal's hits, when one exists (a path
/// pattern with `*` has none).
fn goal_filter(s: &Step) -> Option<Filter> {
    match s.kind {
        GoalKind::Event => Some(View::row_filter(Dim::Event, &s.value)),
        GoalKind::Page if !s.value.contains('*') => Some(View::row_filter(Dim::Page, &s.value)),
        GoalKind::Page => None,
    }
}

fn nav<'a>(site: &'a SiteRow, active: &'static str, q: &'a str) -> Option<SiteNav<'a>> {
    Some(SiteNav {
        hostname: &site.hostname,
        active,
        query: q,
    })
}

/// `/sites/{site}/goals`: every goal with visitors, conversions and rate.
pub(crate) fn goals(site: &SiteRow, v: &View, rows: &[GoalRow]) -> String {
    let base = site_base(&site.hostname);
    let action = format!("{base}/goals");
    let q = v.query();
    let mut m = head("Goals", &action, v, &[]);
    let _ = write!(
        m,
        "<section class=\"card\" aria-labelledby=\"goals-h\"><div class=\"chart-head\">\
         <h2 id=\"goals-h\">Conversions</h2><a class=\"csv\" href=\"{b}/export.csv?panel=goals&amp;{q}\" \
         download aria-label=\"Download goals as CSV\">CSV</a></div>",
        b = esc(&base),
        q = esc(&q),
    );
    if rows.is_empty() {
        let _ = write!(
            m,
            "<p class=\"empty\">No goals yet. A goal is a custom event or a page pattern; \
             <a href=\"{}/settings#goals\">add one in Settings</a>.</p></section>",
            esc(&base)
        );
    } else {
        m.push_str(
            "<table class=\"goals\"><caption class=\"sr-only\">Goals with their visitors, \
             conversions and conversion rate</caption><thead><tr><th scope=\"col\">Goal</th>\
             <th scope=\"col\" class=\"hide-small\">Matches</th>\
             <th scope=\"col\" class=\"num\">Visitors</th><th scope=\"col\" class=\"num\">Conversions</th>\
             <th scope=\"col\" class=\"num\">Conversion rate</th></tr></thead><tbody>",
        );
        for r in rows {
            let name = esc(&r.goal.display_name);
            let label = match goal_filter(&r.goal.step) {
                Some(f) => format!(
                    "<a href=\"{}?{}\" data-filter=\"{}\" title=\"Overview filtered by this goal\">{name}</a>",
                    esc(&base),
                    esc(&v.with_filter(f.clone())),
                    esc(&filter_text(&f)),
                ),
                None => format!("<span class=\"v\">{name}</span>"),
            };
            let _ = write!(
                m,
                "<tr data-goal=\"{id}\"><td class=\"label\">{bar}{label}</td>\
                 <td class=\"hide-small\">{step}</td><td class=\"num\" data-col=\"visitors\">{vis}</td>\
                 <td class=\"num\" data-col=\"conversions\">{conv}</td>\
                 <td class=\"num\" data-col=\"rate\">{rate}</td></tr>",
                id = r.goal.id,
                bar = bar(r.conversion_rate),
                step = step_text(&r.goal.step),
                vis = int(r.visitors),
                conv = int(r.conversions),
                rate = percent(r.conversion_rate),
            );
        }
        m.push_str("</tbody></table>");
        let _ = write!(
            m,
            "<p class=\"status\">Conversion rate: visitors who reached the goal over all visitors \
             of the period with the same filters. <a href=\"{}/settings#goals\">Manage goals</a></p>\
             </section>",
            esc(&base)
        );
    }
    page(
        &format!("Goals · {}", site.hostname),
        nav(site, "/goals", &q),
        "page-goals",
        &m,
    )
}

/// Width and height of the funnel chart's view box, and its plot's edges.
const FW: f64 = 800.0;
const FH: f64 = 250.0;
const FTOP: f64 = 34.0;
const FBOTTOM: f64 = 196.0;

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// The funnel as SVG: one bar per step, its height the share of step 1,
/// with the numbers written above it and the step below (the table beside
/// it has every number as text too).
pub(crate) fn funnel_svg(name: &str, rows: &[FunnelRow]) -> String {
    let n = rows.len().max(1);
    let slot = FW / n as f64;
    let width = (slot * 0.62).min(150.0);
    let chars = ((slot / 8.0) as usize).max(6);
    let mut s = format!(
        "<svg class=\"funnel-chart\" viewBox=\"0 0 {FW} {FH}\" role=\"img\" aria-labelledby=\"funnel-t\">\
         <title id=\"funnel-t\">Funnel {}: visitors at each step</title>",
        esc(name)
    );
    for (i, r) in rows.iter().enumerate() {
        let x = i as f64 * slot + (slot - width) / 2.0;
        let h = (FBOTTOM - FTOP) * r.conversion_rate.clamp(0.0, 1.0);
        let cx = x + width / 2.0;
        let drop = if i == 0 {
            String::new()
        } else {
            format!(", {} dropped off", int(r.dropoff))
        };
        let _ = write!(
            s,
            "<g class=\"f-step\" data-step=\"{k}\"><title>Step {k}, {kind} {value}: {vis} visitors, \
             {pct} of step 1{drop}</title>\
             <rect class=\"f-bg\" x=\"{x:.1}\" y=\"{FTOP}\" width=\"{width:.1}\" height=\"{full:.1}\" rx=\"4\"/>\
             <rect class=\"f-bar\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{width:.1}\" height=\"{h:.1}\" rx=\"4\"/>\
             <text class=\"f-num\" x=\"{cx:.1}\" y=\"{ty:.1}\" text-anchor=\"middle\">{vis} · {pct}</text>\
             <text x=\"{cx:.1}\" y=\"{l1}\" text-anchor=\"middle\">Step {k}</text>\
             <text class=\"f-value\" x=\"{cx:.1}\" y=\"{l2}\" text-anchor=\"middle\">{short}</text></g>",
            k = i + 1,
            kind = r.step.kind.name(),
            value = esc(&r.step.value),
            vis = int(r.visitors),
            pct = percent(r.conversion_rate),
            full = FBOTTOM - FTOP,
            y = FBOTTOM - h,
            ty = (FBOTTOM - h - 8.0).clamp(FTOP - 10.0, FBOTTOM - 8.0),
            l1 = FBOTTOM + 20.0,
            l2 = FBOTTOM + 38.0,
            short = esc(&short(&r.step.value, chars)),
        );
    }
    s.push_str("</svg>");
    s
}

/// `/sites/{site}/funnels`: pick a funnel, see its steps.
pub(crate) fn funnels(
    site: &SiteRow,
    v: &View,
    list: &[Funnel],
    chosen: Option<(&Funnel, &[FunnelRow])>,
) -> String {
    let base = site_base(&site.hostname);
    let action = format!("{base}/funnels");
    let q = v.query();
    let id_text = chosen.map(|(f, _)| f.id.to_string());
    let keep: Vec<(&str, &str)> = id_text.iter().map(|id| ("funnel", id.as_str())).collect();
    let mut m = head("Funnels", &action, v, &keep);
    let Some((funnel, rows)) = chosen else {
        let _ = write!(
            m,
            "<section class=\"card\"><p class=\"empty\">No funnels yet. A funnel is 2 to 8 steps \
             (pages or custom events) that a visit passes in order; \
             <a href=\"{}/settings#funnels\">add one in Settings</a>.</p></section>",
            esc(&base)
        );
        return page(
            &format!("Funnels · {}", site.hostname),
            nav(site, "/funnels", &q),
            "page-funnels",
            &m,
        );
    };
    m.push_str("<nav class=\"picker\" aria-label=\"Funnels\"><ul>");
    for f in list {
        let current = if f.id == funnel.id {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(
            m,
            "<li><a href=\"{}?{}&amp;funnel={}\"{current}>{}</a></li>",
            esc(&action),
            esc(&q),
            f.id,
            esc(&f.name)
        );
    }
    m.push_str("</ul></nav>");
    let _ = write!(
        m,
        "<section class=\"card\" aria-labelledby=\"funnel-h\" data-funnel=\"{id}\"><div class=\"chart-head\">\
         <h2 id=\"funnel-h\">{name}</h2><a class=\"csv\" href=\"{b}/export.csv?panel=funnel&amp;funnel={id}&amp;{q}\" \
         download aria-label=\"Download funnel {name} as CSV\">CSV</a></div>{svg}\
         <table class=\"funnel-table\"><caption class=\"sr-only\">Steps of funnel {name}</caption>\
         <thead><tr><th scope=\"col\">Step</th><th scope=\"col\" class=\"num\">Visitors</th>\
         <th scope=\"col\" class=\"num\">Of step 1</th><th scope=\"col\" class=\"num\">Drop-off</th>\
         <th scope=\"col\" class=\"num hide-small\">Visits</th></tr></thead><tbody>",
        id = funnel.id,
        name = esc(&funnel.name),
        b = esc(&base),
        q = esc(&q),
        svg = funnel_svg(&funnel.name, rows),
    );
    for (i, r) in rows.iter().enumerate() {
        let drop = if i == 0 {
            "<span aria-label=\"not applicable\">–</span>".to_owned()
        } else {
            format!(
                "{} ({})",
                int(r.dropoff),
                percent(ratio(r.dropoff, rows[i - 1].visitors))
            )
        };
        let _ = write!(
            m,
            "<tr data-step=\"{k}\"><th scope=\"row\">{k}. {step}</th>\
             <td class=\"num\" data-col=\"visitors\">{vis}</td><td class=\"num\" data-col=\"share\">{pct}</td>\
             <td class=\"num\" data-col=\"dropoff\">{drop}</td>\
             <td class=\"num hide-small\" data-col=\"visits\">{sess}</td></tr>",
            k = i + 1,
            step = step_text(&r.step),
            vis = int(r.visitors),
            pct = percent(r.conversion_rate),
            sess = int(r.sessions),
        );
    }
    let _ = write!(
        m,
        "</tbody></table><p class=\"status\">A visit reaches a step when it holds a matching hit \
         after reaching the step before. Drop-off: visitors of the step before who did not reach \
         this one. <a href=\"{}/settings#funnels\">Manage funnels</a></p></section>",
        esc(&base)
    );
    page(
        &format!("Funnels · {}", site.hostname),
        nav(site, "/funnels", &q),
        "page-funnels",
        &m,
    )
}

/// What the events explorer shows.
pub(crate) struct Explorer {
    /// Custom event names, by visitors.
    pub events: Vec<Row>,
    /// Custom events of the view (the event list's shares are of these).
    pub total_events: u64,
    pub event: Option<String>,
    /// Property keys of the selected event (or of all custom events).
    pub keys: Vec<PropRow>,
    /// The events the keys' shares are of.
    pub keys_of: u64,
    pub key: Option<String>,
    /// Values of the selected key.
    pub values: Vec<PropRow>,
    /// The events the values' shares are of (those carrying the key).
    pub values_of: u64,
}

/// Reads what the explorer shows: the event names, the keys of `event`
/// (or of every custom event), the values of `key`.
pub(crate) fn load_events(
    s: &Stats,
    w: &Window,
    filters: &[Filter],
    event: Option<String>,
    key: Option<String>,
    limit: usize,
) -> Result<Explorer, StatsError> {
    let events = s.breakdown(w, filters, Dim::Event, limit)?;
    let total_events = s.event_count(w, filters)?;
    let keys = s.props(w, filters, event.as_deref(), None, limit)?;
    let keys_of = match &event {
        Some(e) => events
            .iter()
            .find(|r| r.value.as_deref() == Some(e.as_str()))
            .map_or(0, |r| r.count),
        None => total_events,
    };
    let (values, values_of) = match &key {
        Some(k) => {
            let values = s.props(w, filters, event.as_deref(), Some(k), limit)?;
            let of = keys
                .iter()
                .find(|r| &r.value == k)
                .map_or_else(|| values.iter().map(|r| r.events).sum(), |r| r.events);
            (values, of)
        }
        None => (Vec::new(), 0),
    };
    Ok(Explorer {
        events,
        total_events,
        event,
        keys,
        keys_of,
        key,
        values,
        values_of,
    })
}

fn list_head(id: &str, title: &str, csv: &str, col: &str) -> String {
    format!(
        "<section class=\"panel\" aria-labelledby=\"{id}-h\" data-list=\"{id}\"><header>\
         <h2 id=\"{id}-h\">{title}</h2><a class=\"csv\" href=\"{csv}\" download \
         aria-label=\"Download {title} as CSV\">CSV</a></header>\
         <table><thead><tr><th scope=\"col\">{col}</th><th scope=\"col\" class=\"num\">Visitors</th>\
         <th scope=\"col\" class=\"num\">Events</th><th scope=\"col\" class=\"num\">Share</th></tr></thead><tbody>",
        id = esc(id),
        title = esc(title),
        csv = esc(csv),
        col = esc(col),
    )
}

fn list_row(cell: &str, share: f64, visitors: u64, events: u64, current: bool) -> String {
    format!(
        "<tr{}><td class=\"label\">{}{cell}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
         <td class=\"num\" data-col=\"share\">{}</td></tr>",
        if current { " class=\"current\"" } else { "" },
        bar(share),
        int(visitors),
        int(events),
        percent(share),
    )
}

fn list_end(rows: usize, empty: &str) -> String {
    if rows == 0 {
        format!(
            "<tr><td colspan=\"4\" class=\"empty\">{}</td></tr></tbody></table></section>",
            esc(empty)
        )
    } else {
        "</tbody></table></section>".to_owned()
    }
}

/// `/sites/{site}/events`: custom events, then the property keys of the
/// chosen event, then the values of the chosen key.
pub(crate) fn events(site: &SiteRow, v: &View, x: &Explorer) -> String {
    let base = site_base(&site.hostname);
    let action = format!("{base}/events");
    let q = v.query();
    let mut keep: Vec<(&str, &str)> = Vec::new();
    if let Some(e) = &x.event {
        keep.push(("event", e));
    }
    if let Some(k) = &x.key {
        keep.push(("key", k));
    }
    let mut m = head("Events", &action, v, &keep);
    m.push_str("<div class=\"panels explorer\">");
    let csv = format!("{base}/export.csv?panel=event&{q}");
    m.push_str(&list_head("events", "Custom events", &csv, "Event"));
    for r in &x.events {
        let Some(name) = &r.value else { continue };
        let current = x.event.as_deref() == Some(name);
        let f = View::row_filter(Dim::Event, name);
        let cell = format!(
            "<a href=\"{a}?{q}{sel}\"{cur} data-event=\"{n}\" title=\"Properties of {n}\">{n}</a> \
             <a class=\"row-filter\" href=\"{a}?{fq}{sel}\" data-filter=\"{ft}\" \
             aria-label=\"Filter the view by event {n}\" title=\"Filter the view by this event\">filter</a>",
            a = esc(&action),
            q = esc(&q),
            sel = esc(&keep_query(&[("event", name)])),
            cur = if current {
                " aria-current=\"true\""
            } else {
                ""
            },
            n = esc(name),
            fq = esc(&v.with_filter(f.clone())),
            ft = esc(&filter_text(&f)),
        );
        m.push_str(&list_row(
            &cell,
            ratio(r.count, x.total_events),
            r.visitors,
            r.count,
            current,
        ));
    }
    m.push_str(&list_end(
        x.events.len(),
        "No custom events in this period.",
    ));

    let ev_keep: Vec<(&str, &str)> = x.event.iter().map(|e| ("event", e.as_str())).collect();
    let title = match &x.event {
        Some(e) => format!("Properties of {e}"),
        None => "Properties of all events".to_owned(),
    };
    let csv = format!("{base}/export.csv?panel=props&{q}{}", keep_query(&ev_keep));
    m.push_str(&list_head("keys", &title, &csv, "Property"));
    for r in &x.keys {
        let current = x.key.as_deref() == Some(r.value.as_str());
        let mut sel = ev_keep.clone();
        sel.push(("key", &r.value));
        let cell = format!(
            "<a href=\"{}?{}{}\"{} data-key=\"{}\" title=\"Values of {}\">{}</a>",
            esc(&action),
            esc(&q),
            esc(&keep_query(&sel)),
            if current {
                " aria-current=\"true\""
            } else {
                ""
            },
            esc(&r.value),
            esc(&r.value),
            esc(&r.value),
        );
        m.push_str(&list_row(
            &cell,
            ratio(r.events, x.keys_of),
            r.visitors,
            r.events,
            current,
        ));
    }
    m.push_str(&list_end(x.keys.len(), "No properties on these events."));

    if let Some(k) = &x.key {
        let csv = format!("{base}/export.csv?panel=props&{q}{}", keep_query(&keep));
        m.push_str(&list_head(
            "values",
            &format!("Values of {k}"),
            &csv,
            "Value",
        ));
        for r in &x.values {
            // Each value filters the view (this page, the same selection) by
            // `prop:key:is:value`; an empty value or a key that a filter
            // cannot name is plain text.
            let f = if r.value.is_empty() {
                None
            } else {
                View::prop_filter(k, &r.value)
            };
            let cell = match f {
                Some(f) => format!(
                    "<a href=\"{}?{}{}\" data-filter=\"{}\" title=\"Filter the view by {} = {}\">{}</a>",
                    esc(&action),
                    esc(&v.with_filter(f.clone())),
                    esc(&keep_query(&keep)),
                    esc(&filter_text(&f)),
                    esc(k),
                    esc(&r.value),
                    esc(&r.value),
                ),
                None => format!("<span class=\"v\">{}</span>", esc(&r.value)),
            };
            m.push_str(&list_row(
                &cell,
                ratio(r.events, x.values_of),
                r.visitors,
                r.events,
                false,
            ));
        }
        m.push_str(&list_end(x.values.len(), "No values in this period."));
    }
    m.push_str(
        "</div><p class=\"status\">Share: of the custom events in the view (events), of the \
         chosen event's occurrences (properties), of the events carrying the property (values).</p>",
    );
    page(
        &format!("Events · {}", site.hostname),
        nav(site, "/events", &q),
        "page-events",
        &m,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: GoalKind, value: &str, visitors: u64, share: f64, dropoff: u64) -> FunnelRow {
        FunnelRow {
            step: Step {
                kind,
                value: value.into(),
            },
            visitors,
            sessions: visitors,
            conversion_rate: share,
            dropoff,
        }
    }

    #[test]
    fn the_funnel_chart_writes_its_numbers_as_text() {
        let svg = funnel_svg(
            "Buy <now>",
            &[
                row(GoalKind::Page, "/", 4, 1.0, 0),
                row(GoalKind::Event, "Signup", 1, 0.25, 3),
            ],
        );
        assert!(svg.contains("Funnel Buy &lt;now&gt;"), "{svg}");
        assert!(svg.contains(">4 · 100%</text>"), "{svg}");
        assert!(svg.contains(">1 · 25%</text>"), "{svg}");
        assert!(svg.contains("3 dropped off"), "{svg}");
        // The second bar is a quarter of the plot's height.
        let h = (FBOTTOM - FTOP) * 0.25;
        assert!(svg.contains(&format!("height=\"{h:.1}\"")), "{svg}");
    }

    #[test]
    fn long_step_values_are_shortened_on_the_chart_only() {
        assert_eq!(short("/a/very/long/path", 8), "/a/very…");
        assert_eq!(short("/short", 8), "/short");
    }

    #[test]
    fn only_exact_goals_have_an_overview_filter() {
        let s = |kind, value: &str| Step {
            kind,
            value: value.into(),
        };
        assert_eq!(
            goal_filter(&s(GoalKind::Event, "Signup")).map(|f| filter_text(&f)),
            Some("event:is:Signup".into())
        );
        assert_eq!(
            goal_filter(&s(GoalKind::Page, "/pricing")).map(|f| filter_text(&f)),
            Some("page:is:/pricing".into())
        );
        assert!(goal_filter(&s(GoalKind::Page, "/blog/*")).is_none());
    }
}
