//! The overview's chart, drawn on the server as SVG: pageviews as an area,
//! visitors as a line, a y axis with round ticks, x labels that fit, and one
//! transparent column per bucket that carries the bucket's numbers (a
//! `<title>` for every browser, `data-` attributes for the script's
//! tooltip). A data table beside it gives the same numbers in text.

use std::fmt::Write;

use hitvault_store::stats::{Interval, Point};

use super::html::{esc, int};

const W: f64 = 800.0;
const H: f64 = 260.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 30.0;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A bucket start (`YYYY-MM-DDTHH:MM:SS`) as a short label for the interval.
pub(crate) fn label(start: &str, interval: Interval, long: bool) -> String {
    let num = |a: usize, b: usize| start.get(a..b).and_then(|s| s.parse::<usize>().ok());
    let (Some(y), Some(m), Some(d)) = (num(0, 4), num(5, 7), num(8, 10)) else {
        return start.to_owned();
    };
    let month = MONTHS.get(m.wrapping_sub(1)).copied().unwrap_or("?");
    let hour = start.get(11..16).unwrap_or("00:00");
    match (interval, long) {
        (Interval::Hour, false) => hour.to_owned(),
        (Interval::Hour, true) => format!("{month} {d}, {y} {hour}"),
        (Interval::Day, false) => format!("{month} {d}"),
        (Interval::Day, true) => format!("{month} {d}, {y}"),
        (Interval::Week, false) => format!("{month} {d}"),
        (Interval::Week, true) => format!("Week of {month} {d}, {y}"),
        (Interval::Month, _) => format!("{month} {y}"),
    }
}

/// A round upper bound for the y axis and its tick step (1, 2 or 5 × 10^k).
fn scale(max: u64) -> (f64, f64) {
    if max == 0 {
        return (4.0, 1.0);
    }
    let raw = max as f64 / 4.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
        .max(1.0);
    ((max as f64 / step).ceil() * step, step)
}

/// The chart of `series` as an SVG element (with its accessible name).
pub(crate) fn svg(series: &[Point], interval: Interval) -> String {
    let n = series.len();
    let max = series
        .iter()
        .map(|p| p.pageviews.max(p.visitors))
        .max()
        .unwrap_or(0);
    let (top, step) = scale(max);
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let x = |i: usize| {
        if n <= 1 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + plot_w * i as f64 / (n - 1) as f64
        }
    };
    let y = |v: u64| TOP + plot_h * (1.0 - v as f64 / top);
    let total_pv: u64 = series.iter().map(|p| p.pageviews).sum();
    let mut s = String::with_capacity(4096 + n * 300);
    let _ = write!(
        s,
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" role=\"img\" tabindex=\"0\" \
         aria-labelledby=\"chart-title chart-desc\" data-points=\"{n}\">\
         <title id=\"chart-title\">Visitors and pageviews per {unit}</title>\
         <desc id=\"chart-desc\">{n} {unit}s, {pv} pageviews in all; the table below the \
         chart lists every value. Use the arrow keys to step through the {unit}s.</desc>",
        unit = super::view::interval_name(interval),
        pv = int(total_pv),
    );
    // Grid and y axis.
    s.push_str("<g class=\"grid\" aria-hidden=\"true\">");
    let mut v = 0.0;
    while v <= top + 0.5 {
        let yy = y(v as u64);
        let _ = write!(
            s,
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\"/>\
             <text class=\"ytick\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - RIGHT,
            LEFT - 8.0,
            yy + 4.0,
            int(v as u64)
        );
        v += step;
    }
    s.push_str("</g>");
    // X labels: at most 8, evenly spaced.
    s.push_str("<g class=\"xaxis\" aria-hidden=\"true\">");
    if n > 0 {
        let every = n.div_ceil(8).max(1);
        for (i, p) in series.iter().enumerate() {
            if i % every != 0 {
                continue;
            }
            let anchor = if n > 1 && i == 0 {
                "start"
            } else if n > 1 && i + every >= n && i == n - 1 {
                "end"
            } else {
                "middle"
            };
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{}</text>",
                x(i),
                H - 10.0,
                esc(&label(&p.start, interval, false))
            );
        }
    }
    s.push_str("</g>");
    if n > 0 {
        // Pageviews: area and its edge.
        let mut line = String::new();
        for (i, p) in series.iter().enumerate() {
            let _ = write!(
                line,
                "{}{:.1},{:.1}",
                if i == 0 { "M" } else { " L" },
                x(i),
                y(p.pageviews)
            );
        }
        let base = y(0);
        let _ = write!(
            s,
            "<path class=\"area-pageviews\" d=\"{line} L{:.1},{base:.1} L{:.1},{base:.1} Z\"/>\
             <path class=\"line-pageviews\" d=\"{line}\"/>",
            x(n - 1),
            x(0)
        );
        let mut vline = String::new();
        for (i, p) in series.iter().enumerate() {
            let _ = write!(
                vline,
                "{}{:.1},{:.1}",
                if i == 0 { "M" } else { " L" },
                x(i),
                y(p.visitors)
            );
        }
        let _ = write!(s, "<path class=\"line-visitors\" d=\"{vline}\"/>");
        if n == 1 {
            let p = &series[0];
            let _ = write!(
                s,
                "<circle class=\"dot-visitors\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\"/>",
                x(0),
                y(p.visitors)
            );
        }
        // The marker the script moves, and one hover column per bucket.
        let _ = write!(
            s,
            "<line class=\"cursor\" x1=\"0\" x2=\"0\" y1=\"{TOP}\" y2=\"{:.1}\" visibility=\"hidden\"/>",
            TOP + plot_h
        );
        let col = if n <= 1 {
            plot_w
        } else {
            plot_w / (n - 1) as f64
        };
        s.push_str("<g class=\"hot\">");
        for (i, p) in series.iter().enumerate() {
            let left = (x(i) - col / 2.0).max(LEFT - col / 2.0);
            let long = label(&p.start, interval, true);
            let _ = write!(
                s,
                "<rect x=\"{left:.1}\" y=\"{TOP}\" width=\"{col:.1}\" height=\"{plot_h:.1}\" \
                 data-x=\"{:.1}\" data-label=\"{l}\" data-visitors=\"{v}\" data-pageviews=\"{pv}\">\
                 <title>{l}: {v} visitors, {pv} pageviews</title></rect>",
                x(i),
                l = esc(&long),
                v = int(p.visitors),
                pv = int(p.pageviews),
            );
        }
        s.push_str("</g>");
    }
    s.push_str("</svg>");
    s
}

/// The chart's numbers as a table (inside a disclosure under the chart).
pub(crate) fn table(series: &[Point], interval: Interval) -> String {
    let mut s = String::from(
        "<table class=\"data\"><caption class=\"sr-only\">Visitors, pageviews and visits per period</caption>\
         <thead><tr><th scope=\"col\">Period</th><th scope=\"col\" class=\"num\">Visitors</th>\
         <th scope=\"col\" class=\"num\">Pageviews</th><th scope=\"col\" class=\"num\">Visits</th></tr></thead><tbody>",
    );
    for p in series {
        let _ = write!(
            s,
            "<tr><th scope=\"row\">{}</th><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&label(&p.start, interval, true)),
            int(p.visitors),
            int(p.pageviews),
            int(p.sessions)
        );
    }
    s.push_str("</tbody></table>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(start: &str, visitors: u64, pageviews: u64) -> Point {
        Point {
            start: start.into(),
            visitors,
            pageviews,
            sessions: visitors,
        }
    }

    #[test]
    fn the_axis_ends_on_a_round_number() {
        assert_eq!(scale(0), (4.0, 1.0));
        assert_eq!(scale(3), (3.0, 1.0));
        assert_eq!(scale(7), (8.0, 2.0));
        assert_eq!(scale(95), (100.0, 50.0));
        assert_eq!(scale(1234), (1500.0, 500.0));
    }

    #[test]
    fn labels_follow_the_interval() {
        assert_eq!(label("2026-01-10T13:00:00", Interval::Hour, false), "13:00");
        assert_eq!(label("2026-01-10T00:00:00", Interval::Day, false), "Jan 10");
        assert_eq!(
            label("2026-01-10T00:00:00", Interval::Day, true),
            "Jan 10, 2026"
        );
        assert_eq!(
            label("2026-12-01T00:00:00", Interval::Month, false),
            "Dec 2026"
        );
    }

    #[test]
    fn every_bucket_has_a_hover_column_with_its_numbers() {
        let s = svg(
            &[
                pt("2026-01-09T00:00:00", 0, 0),
                pt("2026-01-10T00:00:00", 3, 6),
                pt("2026-01-11T00:00:00", 1, 1),
            ],
            Interval::Day,
        );
        assert_eq!(s.matches("<rect ").count(), 3);
        assert!(s.contains("data-label=\"Jan 10, 2026\" data-visitors=\"3\" data-pageviews=\"6\""));
        assert!(s.contains("role=\"img\""));
        assert!(!s.contains("style="));
        // Empty series still draw axes.
        let e = svg(&[], Interval::Day);
        assert!(e.contains("<svg") && e.ends_with("</svg>"));
    }
}
