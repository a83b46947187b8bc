//! The dashboard's pages, rendered from the store's numbers into HTML
//! strings. Pure functions: the handlers in `dashboard` fetch, these draw.

use std::fmt::Write;

use hitvault_store::SiteRow;
use hitvault_store::imported::ImportedInfo;
use hitvault_store::live::{LIVE_MINUTES, RECENT_MINUTES, Realtime, RecentRow, SiteSummary};
use hitvault_store::stats::{Dim, Field, Kpis, Op, Overview, Row};
use jiff::Timestamp;

use super::chart;
use super::html::{SiteNav, duration, esc, int, monogram, page, percent};
use super::view::{INTERVALS, Period, View, encode, filter_text, interval_name};

/// Title of a dimension's panel and the name of its value column.
pub(crate) fn dim_title(dim: Dim) -> (&'static str, &'static str) {
    match dim {
        Dim::Page => ("Pages", "Page"),
        Dim::EntryPage => ("Entry pages", "Entry page"),
        Dim::ExitPage => ("Exit pages", "Exit page"),
        Dim::Source => ("Sources", "Source"),
        Dim::Referrer => ("Referrers", "Referrer"),
        Dim::UtmSource => ("UTM sources", "UTM source"),
        Dim::UtmMedium => ("UTM mediums", "UTM medium"),
        Dim::UtmCampaign => ("UTM campaigns", "UTM campaign"),
        Dim::UtmTerm => ("UTM terms", "UTM term"),
        Dim::UtmContent => ("UTM contents", "UTM content"),
        Dim::Country => ("Countries", "Country"),
        Dim::Browser => ("Browsers", "Browser"),
        Dim::Os => ("Operating systems", "Operating system"),
        Dim::Device => ("Devices", "Device"),
        Dim::Screen => ("Screen sizes", "Screen size"),
        Dim::Language => ("Languages", "Language"),
        Dim::Event => ("Events", "Event"),
    }
}

/// What a breakdown row's `count` counts, for a dimension.
pub(crate) fn count_title(dim: Dim) -> &'static str {
    match dim {
        Dim::EntryPage | Dim::ExitPage => "Visits",
        Dim::Event => "Events",
        _ => "Pageviews",
    }
}

/// How a row without a value reads.
pub(crate) fn none_label(dim: Dim) -> &'static str {
    match dim {
        Dim::Source | Dim::Referrer => "Direct / none",
        _ => "(not set)",
    }
}

fn has_icon(dim: Dim) -> bool {
    matches!(dim, Dim::Source | Dim::Referrer | Dim::UtmSource)
}

pub(crate) fn site_base(host: &str) -> String {
    format!("/sites/{}", encode(host))
}

/// `/`: every site with its last 30 days.
pub(crate) fn sites(list: &[SiteSummary]) -> String {
    let mut m = String::from("<h1>Sites</h1>");
    if list.is_empty() {
        m.push_str(
            "<section class=\"card\"><p>No sites yet. Declare them in the configuration \
             (<code>sites</code>, or <code>HITVAULT_SITES=example.org</code>) or add one at run \
             time with <code>hitvault site add example.org</code>.</p></section>",
        );
        return page("Sites", None, "page-sites", &m);
    }
    m.push_str(
        "<section class=\"card\"><table class=\"sites\"><caption class=\"sr-only\">Sites and \
         their last 30 days</caption><thead><tr><th scope=\"col\">Site</th>\
         <th scope=\"col\" class=\"num\">Visitors <span class=\"hide-small\">(30 days)</span></th>\
         <th scope=\"col\" class=\"num\">Pageviews <span class=\"hide-small\">(30 days)</span></th>\
         <th scope=\"col\" class=\"hide-small\">Links</th></tr></thead><tbody>",
    );
    for s in list {
        let base = site_base(&s.site.hostname);
        let aliases = if s.site.aliases.is_empty() {
            String::new()
        } else {
            format!(
                "<div class=\"aliases\">also {}</div>",
                esc(&s.site.aliases.join(", "))
            )
        };
        let _ = write!(
            m,
            "<tr><th scope=\"row\"><a href=\"{b}\">{icon}{h}</a>{aliases}</th>\
             <td class=\"num\">{v}</td><td class=\"num\">{p}</td>\
             <td class=\"hide-small\"><a href=\"{b}/realtime\">Realtime</a>{settings}</td></tr>",
            settings =
                if crate::account::current_may(hitvault_accounts::Right::Edit, &s.site.hostname) {
                    format!(" · <a href=\"{}/settings\">Settings</a>", esc(&base))
                } else {
                    String::new()
                },
            b = esc(&base),
            icon = monogram(&s.site.hostname),
            h = esc(&s.site.hostname),
            v = int(s.visitors_30d),
            p = int(s.pageviews_30d),
        );
    }
    m.push_str("</tbody></table></section>");
    page("Sites", None, "page-sites", &m)
}

/// `&k=v…` of the parameters a page keeps besides the view (its selection).
pub(crate) fn keep_query(keep: &[(&str, &str)]) -> String {
    keep.iter()
        .map(|(k, v)| format!("&{k}={}", encode(v)))
        .collect()
}

/// The range form; `keep` are further parameters the page keeps (hidden).
pub(crate) fn range_form(action: &str, v: &View, keep: &[(&str, &str)]) -> String {
    let mut f = format!(
        "<form class=\"range controls\" method=\"get\" action=\"{}\" aria-label=\"Date range\">\
         <label for=\"period\">Period<select name=\"period\" id=\"period\">",
        esc(action)
    );
    for (p, name, label) in Period::ALL {
        let sel = if p == v.period { " selected" } else { "" };
        let _ = write!(f, "<option value=\"{name}\"{sel}>{label}</option>");
    }
    let _ = write!(
        f,
        "</select></label><span class=\"custom-dates\">\
         <label for=\"from\">From<input type=\"date\" name=\"from\" id=\"from\" value=\"{}\"></label>\
         <label for=\"to\">To<input type=\"date\" name=\"to\" id=\"to\" value=\"{}\"></label></span>\
         <label for=\"interval\">Interval<select name=\"interval\" id=\"interval\">\
         <option value=\"\">Auto ({})</option>",
        v.first_day,
        v.last_day,
        interval_name(v.interval)
    );
    for (i, name) in INTERVALS {
        let sel = if v.interval_given() == Some(i) {
            " selected"
        } else {
            ""
        };
        let _ = write!(f, "<option value=\"{name}\"{sel}>{name}</option>");
    }
    let _ = write!(
        f,
        "</select></label><label for=\"tz\">Time zone<input type=\"text\" name=\"tz\" id=\"tz\" \
         value=\"{}\" placeholder=\"UTC\" autocomplete=\"off\" spellcheck=\"false\"></label>",
        esc(v.tz_given().unwrap_or(""))
    );
    for flt in &v.filters {
        let _ = write!(
            f,
            "<input type=\"hidden\" name=\"f\" value=\"{}\">",
            esc(&filter_text(flt))
        );
    }
    for (k, val) in keep {
        let _ = write!(
            f,
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            esc(k),
            esc(val)
        );
    }
    f.push_str("<button type=\"submit\" id=\"apply\">Apply</button></form>");
    f
}

/// The active filters, each with a link that removes it (keeping `keep`).
pub(crate) fn chips(action: &str, v: &View, keep: &[(&str, &str)]) -> String {
    if v.filters.is_empty() {
        return String::new();
    }
    let mut c = String::from("<ul class=\"chips\" aria-label=\"Active filters\">");
    for (i, f) in v.filters.iter().enumerate() {
        let (col, none) = match &f.field {
            Field::Dim(d) => (dim_title(*d).1.to_owned(), none_label(*d)),
            Field::Prop(k) => (format!("Property {k}"), "(not set)"),
        };
        let op = match f.op {
            Op::Is => "is",
            Op::IsNot => "is not",
            Op::Contains => "contains",
        };
        // An empty value means "has no value" (see `stats::Op`).
        let value = if f.value.is_empty() && f.op != Op::Contains {
            none
        } else {
            &f.value
        };
        let text = format!("{col} {op} {value}");
        let _ = write!(
            c,
            "<li class=\"chip\" data-filter=\"{}\"><span>{} <span class=\"op\">{op}</span> \
             <strong>{}</strong></span><a href=\"{}?{}{}\" aria-label=\"Remove filter: {}\" \
             title=\"Remove filter\">×</a></li>",
            esc(&filter_text(f)),
            esc(&col),
            esc(value),
            esc(action),
            esc(&v.without_filter(i)),
            esc(&keep_query(keep)),
            esc(&text),
        );
    }
    c.push_str("</ul>");
    c
}

/// A KPI's change against the comparison period.
fn delta(now: f64, before: f64, higher_is_better: bool) -> String {
    if before == 0.0 {
        return if now == 0.0 {
            "<p class=\"delta\">no change</p>".into()
        } else {
            "<p class=\"delta\">none before</p>".into()
        };
    }
    let d = (now - before) / before;
    if d.abs() < 0.0005 {
        return "<p class=\"delta\">no change</p>".into();
    }
    let up = d > 0.0;
    let class = if up == higher_is_better {
        "good"
    } else {
        "bad"
    };
    format!(
        "<p class=\"delta {class}\"><span aria-hidden=\"true\">{}</span> {} \
         <span class=\"sr-only\">{}</span> vs before</p>",
        if up { "▲" } else { "▼" },
        percent(d.abs()),
        if up { "up" } else { "down" },
    )
}

fn kpis(v_site: &str, k: &Kpis, p: &Kpis, live: u64) -> String {
    let mut s = format!(
        "<section class=\"kpis\" aria-label=\"Key figures\" data-live-site=\"{site}\">\
         <div class=\"kpi live\" data-kpi=\"live\"><h2><a href=\"{base}/realtime\">Live now</a></h2>\
         <p class=\"value\" data-live=\"live_visitors\">{live}</p>\
         <p class=\"delta\">visitors in the last {LIVE_MINUTES} minutes</p></div>",
        site = esc(v_site),
        base = esc(&site_base(v_site)),
        live = int(live),
    );
    let tiles: [(&str, &str, String, f64, f64, bool); 7] = [
        (
            "visitors",
            "Visitors",
            int(k.visitors),
            k.visitors as f64,
            p.visitors as f64,
            true,
        ),
        (
            "pageviews",
            "Pageviews",
            int(k.pageviews),
            k.pageviews as f64,
            p.pageviews as f64,
            true,
        ),
        (
            "sessions",
            "Visits",
            int(k.sessions),
            k.sessions as f64,
            p.sessions as f64,
            true,
        ),
        (
            "views_per_visit",
            "Views per visit",
            format!("{:.2}", k.views_per_visit),
            k.views_per_visit,
            p.views_per_visit,
            true,
        ),
        (
            "bounce_rate",
            "Bounce rate",
            percent(k.bounce_rate),
            k.bounce_rate,
            p.bounce_rate,
            false,
        ),
        (
            "avg_duration",
            "Visit duration",
            duration(k.avg_duration_s),
            k.avg_duration_s,
            p.avg_duration_s,
            true,
        ),
        (
            "events",
            "Events",
            int(k.events),
            k.events as f64,
            p.events as f64,
            true,
        ),
    ];
    for (key, label, value, now, before, better) in tiles {
        let _ = write!(
            s,
            "<div class=\"kpi\" data-kpi=\"{key}\"><h2>{label}</h2><p class=\"value\">{value}</p>{}</div>",
            delta(now, before, better)
        );
    }
    // Engagement figures exist only where a tracker reported them.
    let (e, pe) = (&k.engagement, &p.engagement);
    let engaged = [
        (
            "time_on_page",
            "Time on page",
            e.time_on_page_s().map(duration),
            e.time_on_page_s(),
            pe.time_on_page_s(),
        ),
        (
            "scroll_depth",
            "Scroll depth",
            e.scroll_depth().map(|d| percent(d / 100.0)),
            e.scroll_depth(),
            pe.scroll_depth(),
        ),
    ];
    for (key, label, value, now, before) in engaged {
        let change = match (now, before) {
            (Some(n), Some(b)) => delta(n, b, true),
            _ => String::new(),
        };
        let _ = write!(
            s,
            "<div class=\"kpi\" data-kpi=\"{key}\"><h2>{label}</h2><p class=\"value\">{}</p>{change}</div>",
            value.unwrap_or_else(|| "\u{2014}".to_owned()),
        );
    }
    s.push_str("</section>");
    s
}

/// One breakdown panel; every row with a value links to the view filtered by it.
fn panel(action: &str, v: &View, dim: Dim, rows: &[Row]) -> String {
    let (title, col) = dim_title(dim);
    let id = format!("panel-{}", dim.name());
    let mut s = format!(
        "<section class=\"panel\" aria-labelledby=\"{id}\" data-panel=\"{name}\"><header>\
         <h2 id=\"{id}\">{title}</h2><a class=\"csv\" href=\"{action}/export.csv?panel={name}&amp;{q}\" \
         download aria-label=\"Download {title} as CSV\">CSV</a></header>",
        name = dim.name(),
        action = esc(action),
        q = esc(&v.query()),
    );
    if rows.is_empty() {
        s.push_str("<p class=\"empty\">Nothing in this period.</p></section>");
        return s;
    }
    // The pages panel also shows how long each page was read and how far.
    let engaged = dim == Dim::Page;
    let _ = write!(
        s,
        "<table><thead><tr><th scope=\"col\">{col}</th><th scope=\"col\" class=\"num\">Visitors</th>\
         <th scope=\"col\" class=\"num\">{}</th>{}</tr></thead><tbody>",
        count_title(dim),
        if engaged {
            "<th scope=\"col\" class=\"num\" title=\"Mean engaged time of the page's read pageviews\">Time on page</th>\
             <th scope=\"col\" class=\"num\" title=\"Mean of the deepest scroll of each pageview\">Scroll depth</th>"
        } else {
            ""
        }
    );
    for r in rows {
        let bar = format!(
            "<svg class=\"bar\" viewBox=\"0 0 100 10\" preserveAspectRatio=\"none\" aria-hidden=\"true\" \
             focusable=\"false\"><rect width=\"{:.1}\" height=\"10\" rx=\"0.8\"/></svg>",
            (r.share * 100.0).clamp(0.0, 100.0)
        );
        // A row without a value filters by "is empty" (`dim:is:`).
        let f = View::row_filter(dim, r.value.as_deref().unwrap_or(""));
        let (label, shown, class) = match &r.value {
            Some(value) => {
                let icon = if has_icon(dim) {
                    monogram(value)
                } else {
                    String::new()
                };
                (value.as_str(), format!("{icon}{}", esc(value)), "")
            }
            None => (
                none_label(dim),
                none_label(dim).to_owned(),
                " class=\"none\"",
            ),
        };
        let cell = format!(
            "<a href=\"{}?{}\"{class} data-filter=\"{}\" title=\"Filter by {}\">{shown}</a>",
            esc(action),
            esc(&v.with_filter(f.clone())),
            esc(&filter_text(&f)),
            esc(label),
        );
        let extra = if engaged {
            let e = r.engagement.unwrap_or_default();
            let dash = || "\u{2014}".to_owned();
            format!(
                "<td class=\"num\" data-col=\"time_on_page\">{}</td><td class=\"num\" data-col=\"scroll_depth\">{}</td>",
                e.time_on_page_s().map(duration).unwrap_or_else(dash),
                e.scroll_depth()
                    .map(|d| percent(d / 100.0))
                    .unwrap_or_else(dash),
            )
        } else {
            String::new()
        };
        let _ = write!(
            s,
            "<tr><td class=\"label\">{bar}{cell}</td><td class=\"num\" title=\"{} of visitors\">{}</td>\
             <td class=\"num\">{}</td>{extra}</tr>",
            percent(r.share),
            int(r.visitors),
            int(r.count)
        );
    }
    s.push_str("</tbody></table></section>");
    s
}

/// What the overview says about imported history (see
/// `hitvault_store::imported`) when the numbers include some.
fn imported_note(info: &ImportedInfo) -> String {
    if !info.included {
        return String::new();
    }
    let what = match (info.days, info.in_series) {
        (0, _) => "Includes history imported from Plausible in the panels.".to_owned(),
        (n, true) => format!(
            "Includes {} imported from Plausible, added to the figures, the chart and the panels.",
            days(n)
        ),
        (n, false) => format!(
            "Includes {} imported from Plausible, added to the figures and the panels; \
             the hourly chart leaves them out (imported days have no hours).",
            days(n)
        ),
    };
    format!(
        "<p class=\"imported-note\" role=\"note\" data-imported-days=\"{}\">\
         <strong>Imported history.</strong> {what} Filters leave imported history out.</p>",
        info.days
    )
}

fn days(n: u64) -> String {
    if n == 1 {
        "1 day".to_owned()
    } else {
        format!("{} days", int(n))
    }
}

/// `/sites/{site}`: KPIs, the chart, every panel; `imported` says whether
/// the numbers include imported history.
pub(crate) fn overview(
    site: &SiteRow,
    v: &View,
    o: &Overview,
    imported: &ImportedInfo,
    live: u64,
) -> String {
    let action = site_base(&site.hostname);
    let q = v.query();
    let mut m = format!(
        "<h1 class=\"sr-only\">{} overview</h1>{}{}",
        esc(&site.hostname),
        range_form(&action, v, &[]),
        chips(&action, v, &[])
    );
    let _ = write!(
        m,
        "<p class=\"status\">{}, {}; compared with {}.</p>",
        if v.first_day == v.last_day {
            v.first_day.to_string()
        } else {
            format!("{} to {}", v.first_day, v.last_day)
        },
        esc(v.tz_label()),
        match ((v.to.as_second() - v.from.as_second()) as f64 / 86_400.0).round() as i64 {
            1 => "the day before".to_owned(),
            n => format!("the {n} days before"),
        }
    );
    m.push_str(&imported_note(imported));
    m.push_str(&kpis(&site.hostname, &o.kpis, &o.previous, live));
    let _ = write!(
        m,
        "<section class=\"card chart-card\" aria-labelledby=\"chart-h\"><div class=\"chart-head\">\
         <h2 id=\"chart-h\">Visitors and pageviews</h2><ul class=\"legend\" aria-hidden=\"true\">\
         <li><span class=\"swatch pageviews\"></span>Pageviews</li>\
         <li><span class=\"swatch visitors\"></span>Visitors</li></ul>\
         <span class=\"downloads\"><a class=\"csv\" href=\"{a}/export.csv?panel=series&amp;{q}\" download>Chart CSV</a> · \
         <a class=\"csv\" href=\"{a}/export.csv?panel=kpis&amp;{q}\" download>Figures CSV</a></span></div>{svg}\
         <details class=\"data\"><summary>Show the numbers as a table</summary>{table}</details></section>",
        a = esc(&action),
        q = esc(&q),
        svg = chart::svg(&o.series, v.interval),
        table = chart::table(&o.series, v.interval),
    );
    m.push_str("<div class=\"panels\">");
    for (dim, rows) in &o.breakdowns {
        m.push_str(&panel(&action, v, *dim, rows));
    }
    m.push_str("</div>");
    page(
        &site.hostname,
        Some(SiteNav {
            hostname: &site.hostname,
            active: "",
            query: &q,
        }),
        "page-overview",
        &m,
    )
}

fn recent_rows(rows: &[RecentRow], none: &str, icons: bool) -> String {
    if rows.is_empty() {
        return format!(
            "<tr><td colspan=\"3\" class=\"empty\">Nothing in the last {RECENT_MINUTES} minutes.</td></tr>"
        );
    }
    let mut s = String::new();
    for r in rows {
        let label = match &r.value {
            Some(v) => format!(
                "<span class=\"v\">{}{}</span>",
                if icons { monogram(v) } else { String::new() },
                esc(v)
            ),
            None => format!("<span class=\"v none\">{none}</span>"),
        };
        let _ = write!(
            s,
            "<tr><td class=\"label\">{label}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            int(r.visitors),
            int(r.pageviews)
        );
    }
    s
}

/// `/sites/{site}/realtime`: the last minutes, kept current by the stream.
pub(crate) fn realtime(site: &SiteRow, r: &Realtime, at: Timestamp) -> String {
    let (top, bottom, width) = (10.0, 160.0, 1200.0);
    let n = r.per_minute.len().max(1);
    let slot = width / n as f64;
    let max = r.per_minute.iter().copied().max().unwrap_or(0).max(1) as f64;
    let mut bars = format!(
        "<svg class=\"rt-bars chart\" viewBox=\"0 0 {width} 184\" role=\"img\" aria-labelledby=\"rt-bars-t\" \
         data-top=\"{top}\" data-bottom=\"{bottom}\"><title id=\"rt-bars-t\">Pageviews per minute, \
         last {RECENT_MINUTES} minutes</title>"
    );
    for (i, v) in r.per_minute.iter().enumerate() {
        let h = (bottom - top) * *v as f64 / max;
        let _ = write!(
            bars,
            "<rect data-i=\"{i}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" rx=\"2\">\
             <title>{} pageviews, {} minutes ago</title></rect>",
            i as f64 * slot + 2.0,
            bottom - h,
            (slot - 4.0).max(1.0),
            int(*v),
            n - i,
        );
    }
    let _ = write!(
        bars,
        "<text x=\"2\" y=\"178\">{RECENT_MINUTES} min ago</text>\
         <text x=\"{}\" y=\"178\" text-anchor=\"end\">now</text></svg>",
        width - 2.0
    );
    let m = format!(
        "<h1>Realtime</h1><p class=\"status\" data-live-status>Snapshot of {at} (UTC). \
         With JavaScript, this page updates as hits arrive.</p>\
         <section class=\"rt-numbers\" aria-label=\"Live figures\" data-live-site=\"{site}\">\
         <div class=\"kpi live\" data-kpi=\"live\"><h2>Visitors now</h2>\
         <p class=\"value\" data-live=\"live_visitors\">{live}</p>\
         <p class=\"delta\">seen in the last {LIVE_MINUTES} minutes</p></div>\
         <div class=\"kpi\" data-kpi=\"recent_pageviews\"><h2>Pageviews</h2>\
         <p class=\"value\" data-live=\"pageviews\">{pv}</p>\
         <p class=\"delta\">in the last {RECENT_MINUTES} minutes</p></div></section>\
         <section class=\"card\" aria-label=\"Pageviews per minute\">{bars}</section>\
         <div class=\"panels\">\
         <section class=\"panel\" aria-labelledby=\"rt-pages-h\"><header><h2 id=\"rt-pages-h\">Top pages</h2>\
         <a class=\"csv\" href=\"{base}/export.csv?panel=realtime_pages\" download \
         aria-label=\"Download top pages as CSV\">CSV</a></header>\
         <table><thead><tr><th scope=\"col\">Page</th><th scope=\"col\" class=\"num\">Visitors</th>\
         <th scope=\"col\" class=\"num\">Pageviews</th></tr></thead><tbody id=\"rt-pages\">{pages}</tbody></table></section>\
         <section class=\"panel\" aria-labelledby=\"rt-sources-h\"><header><h2 id=\"rt-sources-h\">Top sources</h2>\
         <a class=\"csv\" href=\"{base}/export.csv?panel=realtime_sources\" download \
         aria-label=\"Download top sources as CSV\">CSV</a></header>\
         <table><thead><tr><th scope=\"col\">Source</th><th scope=\"col\" class=\"num\">Visitors</th>\
         <th scope=\"col\" class=\"num\">Pageviews</th></tr></thead><tbody id=\"rt-sources\">{sources}</tbody></table></section>\
         </div>",
        at = at.strftime("%Y-%m-%d %H:%M:%S"),
        site = esc(&site.hostname),
        base = esc(&site_base(&site.hostname)),
        live = int(r.live_visitors),
        pv = int(r.pageviews),
        pages = recent_rows(&r.top_pages, "(none)", false),
        sources = recent_rows(&r.top_sources, "Direct / none", true),
    );
    page(
        &format!("Realtime · {}", site.hostname),
        Some(SiteNav {
            hostname: &site.hostname,
            active: "/realtime",
            query: "",
        }),
        "page-realtime",
        &m,
    )
}

/// `/sites/{site}/settings`: the tracker snippet to copy, then `manage`
/// (the goals and funnels sections, see `defs`).
pub(crate) fn settings(site: &SiteRow, origin: &str, manage: &str) -> String {
    let snippet = format!(
        "<script defer src=\"{origin}/hv.js\" data-domain=\"{}\"></script>",
        site.hostname
    );
    let batch = format!(
        "curl -X POST {origin}/api/ingest/batch \\\n  -H 'Authorization: Bearer <ingest token>' \\\n  \
         -H 'Content-Type: application/x-ndjson' \\\n  --data-binary \
         '{{\"name\":\"pageview\",\"url\":\"https://{}/\",\"user_agent\":\"…\",\"ip\":\"…\"}}'",
        site.hostname
    );
    let aliases = if site.aliases.is_empty() {
        "none".to_owned()
    } else {
        site.aliases.join(", ")
    };
    let m = format!(
        "<h1>Settings</h1>\
         <section class=\"card\" aria-labelledby=\"snippet-h\"><h2 id=\"snippet-h\">Tracker snippet</h2>\
         <p>Add this to the <code>&lt;head&gt;</code> of every page of {host}. It sets no cookie, \
         stores nothing in the browser and sends one small request per pageview to this server.</p>\
         <pre class=\"snippet\"><code id=\"snippet\">{snippet}</code></pre>\
         <button type=\"button\" data-copy=\"snippet\">Copy snippet</button>\
         <p>Custom events: <code>hitvault('event', 'Signup', {{plan: 'pro'}})</code>. \
         Outbound links are tracked with <code>data-outbound</code> on the script tag.</p></section>\
         {manage}\
         <section class=\"card\" aria-labelledby=\"server-h\"><h2 id=\"server-h\">From your servers</h2>\
         <p>Hits can also be sent in batches, with the ingest token (setting <code>ingest_token_file</code>):</p>\
         <pre class=\"snippet\"><code id=\"batch\">{batch}</code></pre>\
         <button type=\"button\" data-copy=\"batch\">Copy command</button></section>\
         <section class=\"card\" aria-labelledby=\"site-h\"><h2 id=\"site-h\">Site</h2>\
         <dl><dt>Hostname</dt><dd>{host}</dd><dt>Aliases</dt><dd>{aliases}</dd>\
         <dt>Declared</dt><dd>{origin_kind}</dd></dl></section>",
        host = esc(&site.hostname),
        snippet = esc(&snippet),
        batch = esc(&batch),
        aliases = esc(&aliases),
        origin_kind = if site.origin == "config" {
            "in the configuration"
        } else {
            "at run time (hitvault site add)"
        },
    );
    page(
        &format!("Settings · {}", site.hostname),
        Some(SiteNav {
            hostname: &site.hostname,
            active: "/settings",
            query: "",
        }),
        "page-settings",
        &m,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_say_whether_a_change_is_good() {
        assert!(delta(12.0, 10.0, true).contains("good"));
        assert!(delta(12.0, 10.0, true).contains("20%"));
        assert!(delta(0.6, 0.5, false).contains("bad"));
        assert!(delta(5.0, 0.0, true).contains("none before"));
    }

    #[test]
    fn the_imported_note_gives_the_days_and_where_they_are() {
        let none = ImportedInfo::default();
        assert_eq!(imported_note(&none), "");
        let daily = ImportedInfo {
            included: true,
            days: 2,
            in_series: true,
        };
        let n = imported_note(&daily);
        assert!(n.contains("Includes 2 days imported from Plausible"), "{n}");
        assert!(
            n.contains("the chart and the panels") && n.contains("role=\"note\""),
            "{n}"
        );
        let hourly = ImportedInfo {
            in_series: false,
            days: 1,
            ..daily
        };
        let n = imported_note(&hourly);
        assert!(
            n.contains("Includes 1 day imported") && n.contains("hourly chart leaves them out"),
            "{n}"
        );
    }

    #[test]
    fn every_dimension_has_a_title() {
        for (d, _) in Dim::ALL {
            assert!(!dim_title(d).0.is_empty());
        }
    }
}
