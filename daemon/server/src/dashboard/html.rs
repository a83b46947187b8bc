//! HTML building blocks: escaping, number formats, the page shell with its
//! navigation, and the generated monogram icons.
//!
//! Pages are strings built here; every value that did not come from this
//! file goes through [`esc`]. No markup carries a `style` attribute or an
//! inline script: the Content-Security-Policy forbids both.

use std::fmt::Write;

/// Escapes text for HTML content and double-quoted attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `12345` as `12,345`.
pub(crate) fn int(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A share 0..=1 as a percentage with one decimal below 10 %.
pub(crate) fn percent(x: f64) -> String {
    let p = x * 100.0;
    if p > 0.0 && p < 10.0 {
        format!("{p:.1}%")
    } else {
        format!("{p:.0}%")
    }
}

/// Seconds as `1h 02m`, `3m 05s` or `42s`.
pub(crate) fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// One entry of a site's navigation: a label and the path after `/sites/{site}`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NavEntry {
    pub label: &'static str,
    pub suffix: &'static str,
    /// Whether the page reads the view (range, filters) from the URL: its
    /// link carries the current view's query.
    pub view: bool,
}

/// The site navigation, in order. A new site page adds its entry here and
/// a route in `dashboard::routes`.
pub(crate) const SITE_NAV: &[NavEntry] = &[
    NavEntry {
        label: "Overview",
        suffix: "",
        view: true,
    },
    NavEntry {
        label: "Goals",
        suffix: "/goals",
        view: true,
    },
    NavEntry {
        label: "Funnels",
        suffix: "/funnels",
        view: true,
    },
    NavEntry {
        label: "Events",
        suffix: "/events",
        view: true,
    },
    NavEntry {
        label: "Realtime",
        suffix: "/realtime",
        view: false,
    },
    NavEntry {
        label: "Settings",
        suffix: "/settings",
        view: false,
    },
];

/// The site a page belongs to, for the header and navigation.
pub(crate) struct SiteNav<'a> {
    pub hostname: &'a str,
    /// The [`NavEntry::suffix`] of the current page.
    pub active: &'static str,
    /// Query string carried by the links of the pages that read the view.
    pub query: &'a str,
}

/// Versioned URL of an embedded asset (the version changes with its bytes).
pub(crate) fn asset_url(name: &str) -> String {
    format!(
        "/assets/{name}?v={}",
        super::assets::version(name).unwrap_or_default()
    )
}

/// A whole page: head with the embedded stylesheet and script, the header
/// with the site's navigation, and `main`.
pub(crate) fn page(title: &str, site: Option<SiteNav<'_>>, body_class: &str, main: &str) -> String {
    let mut h = String::with_capacity(main.len() + 4096);
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"color-scheme\" content=\"light dark\">\
         <title>{title} · hitvault</title>\
         <link rel=\"icon\" href=\"{icon}\" type=\"image/svg+xml\">\
         <link rel=\"stylesheet\" href=\"{css}\">\
         <script defer src=\"{js}\"></script>{passkey}</head>\
         <body class=\"{body_class}\"><a class=\"skip\" href=\"#main\">Skip to content</a>\
         <header class=\"top\"><div class=\"top-inner\">\
         <a class=\"brand\" href=\"/sites\">{logo}<span>hitvault</span></a>",
        title = esc(title),
        icon = esc(&asset_url("favicon.svg")),
        css = esc(&asset_url("dashboard.css")),
        js = esc(&asset_url("dashboard.js")),
        // The passkey buttons' script, on the pages that have one.
        passkey = if main.contains("id=\"passkey-") {
            format!(
                "<script defer src=\"{}\"></script>",
                esc(&asset_url("passkey.js"))
            )
        } else {
            String::new()
        },
        body_class = esc(body_class),
        logo = LOGO,
    );
    if let Some(s) = site {
        let base = format!("/sites/{}", super::view::encode(s.hostname));
        let _ = write!(
            h,
            "<span class=\"crumb\" aria-hidden=\"true\">/</span>\
             <a class=\"site-name\" href=\"{base}\">{}</a>\
             <nav class=\"site-nav\" aria-label=\"Site\"><ul>",
            esc(s.hostname),
            base = esc(&base),
        );
        let edit = crate::account::current_may(hitvault_accounts::Right::Edit, s.hostname);
        for e in SITE_NAV.iter().filter(|e| e.suffix != "/settings" || edit) {
            let href = if e.view && !s.query.is_empty() {
                format!("{base}{}?{}", e.suffix, s.query)
            } else {
                format!("{base}{}", e.suffix)
            };
            let current = if e.suffix == s.active {
                " aria-current=\"page\""
            } else {
                ""
            };
            let _ = write!(
                h,
                "<li><a href=\"{}\"{current}>{}</a></li>",
                esc(&href),
                esc(e.label)
            );
        }
        h.push_str("</ul></nav>");
    }
    if let Some(crate::access::Caller::Session(v)) = crate::account::current() {
        let _ = write!(
            h,
            "<div class=\"who\"><a href=\"/account\">{}</a>\
             <form method=\"post\" action=\"/logout\" class=\"inline\">{}\
             <button type=\"submit\">Sign out</button></form></div>",
            esc(&v.user.name),
            crate::account::csrf_field()
        );
    }
    let _ = writeln!(
        h,
        "</div></header><main id=\"main\" tabindex=\"-1\">{main}</main>\
         <footer class=\"foot\">hitvault · served from this machine, no external requests</footer>\
         </body></html>"
    );
    h
}

/// The product mark, drawn inline (no external asset needed).
const LOGO: &str = "<svg class=\"logo\" viewBox=\"0 0 24 24\" aria-hidden=\"true\" focusable=\"false\">\
<rect x=\"1\" y=\"1\" width=\"22\" height=\"22\" rx=\"6\" class=\"logo-bg\"/>\
<path d=\"M6 16 L10 11 L13 14 L18 7\" class=\"logo-line\"/></svg>";

/// A square icon with the first letter of `name` on a colour derived from
/// it: stands in for a site's favicon, which would need a request to it.
pub(crate) fn monogram(name: &str) -> String {
    let host = name
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_start_matches("www.");
    let letter = host
        .chars()
        .find(|c| c.is_alphanumeric())
        .map(|c| c.to_uppercase().collect::<String>())
        .unwrap_or_else(|| "?".into());
    let hue = host.bytes().fold(2166136261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16777619)
    }) % 360;
    format!(
        "<svg class=\"mono\" viewBox=\"0 0 16 16\" aria-hidden=\"true\" focusable=\"false\">\
         <rect width=\"16\" height=\"16\" rx=\"4\" fill=\"hsl({hue} 55% 42%)\"/>\
         <text x=\"8\" y=\"11.5\" text-anchor=\"middle\" font-size=\"10\" font-weight=\"600\" \
         fill=\"#fff\">{}</text></svg>",
        esc(&letter)
    )
}

/// A page that says what went wrong.
pub(crate) fn message_page(title: &str, message: &str) -> String {
    page(
        title,
        None,
        "page-message",
        &format!(
            "<section class=\"message\"><h1>{}</h1><p>{}</p>\
             <p><a href=\"/sites\">All sites</a></p></section>",
            esc(title),
            esc(message)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_content_and_attributes() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(int(0), "0");
        assert_eq!(int(999), "999");
        assert_eq!(int(1000), "1,000");
        assert_eq!(int(1234567), "1,234,567");
        assert_eq!(percent(0.5), "50%");
        assert_eq!(percent(0.0123), "1.2%");
        assert_eq!(duration(42.4), "42s");
        assert_eq!(duration(185.0), "3m 05s");
        assert_eq!(duration(3720.0), "1h 02m");
    }

    #[test]
    fn monograms_are_stable_and_escaped() {
        assert_eq!(monogram("https://www.google.com"), monogram("google.com"));
        assert!(monogram("google.com").contains(">G</text>"));
        assert!(monogram("<script>").contains(">S</text>"));
        assert!(monogram("").contains(">?</text>"));
    }
}
